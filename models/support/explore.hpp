// Exhaustive explicit-state search over a deterministic system driven by
// events: breadth-first over every order of the events a state allows, with a
// visited set of canonical state encodings, the system's own checks after
// every event, and the shortest failing event sequence as the counterexample.
//
// Contract: a system S is copyable and provides
//   std::vector<E> events() const;       // the events enabled now, in a fixed order
//   void apply(const E&);                // plays one; a broken check throws Violation
//   void at_end() const;                 // a state with no events: throws if it is a bad end
//   void encode(std::string&) const;     // canonical: equal encodings behave alike
//   std::string describe(const E&) const;
//   std::string log() const;             // what the last apply did (its actions), for traces
// explore() visits every state reachable from the initial one and stops at
// the first violation; run() prints the result as a KEEL-CHECK row (see
// harness.hpp; verify.py gives it the tool "explore") and, for a violation,
// the counterexample before it, one line per event.
//
// The visited set keeps a 128-bit fingerprint of each encoding (two
// independent 64-bit hashes), as Spin's hash compaction does: a collision
// could merge two states, with odds near n^2 / 2^129 for n states.
//
// Invariants: none of its own; the system's checks name theirs.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace keel::explore {

// A broken check: the invariant ID and what was seen.
struct Violation {
  std::string what;
};

struct Report {
  bool ok = true;
  std::uint64_t states = 0;       // distinct states (by encoding)
  std::uint64_t transitions = 0;  // events played
  std::uint64_t ends = 0;         // states with no event left, checked by at_end()
  unsigned depth = 0;             // the longest shortest path to a state
  double seconds = 0;
  std::string violation;
  std::vector<std::string> trace;  // the counterexample, one line per event (empty for a bad start or end)
};

struct Fingerprint {
  std::uint64_t a, b;
  bool operator==(const Fingerprint&) const = default;
};

// Two independent 64-bit hashes of s, 8 bytes at a time (a byte-at-a-time
// pair of chains took an eighth of a search): MurmurHash64A's round for `a`,
// xxHash64's for `b`, with different seeds, and a final avalanche of each.
// The length is in both seeds, so a short tail's zero padding is not lost.
inline Fingerprint fingerprint(std::string_view s) {
  constexpr std::uint64_t m = 0xc6a4a7935bd1e995ull;
  constexpr std::uint64_t p1 = 0x9e3779b185ebca87ull, p2 = 0xc2b2ae3d27d4eb4full;
  const auto rotl = [](std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  const auto avalanche = [](std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
  };
  std::uint64_t a = 0xcbf29ce484222325ull ^ (s.size() * m);
  std::uint64_t b = 0x27d4eb2f165667c5ull + s.size();
  const auto round = [&](std::uint64_t w) {
    std::uint64_t k = w * m;
    k ^= k >> 47;
    a = (a ^ (k * m)) * m;
    b = rotl(b + w * p2, 31) * p1;
  };
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    round(w);
  }
  if (i < s.size()) {
    std::uint64_t w = 0;
    std::memcpy(&w, s.data() + i, s.size() - i);
    round(w);
  }
  return {avalanche(a), avalanche(b)};
}

// The visited set: fingerprint -> state id, open addressing with linear
// probing in one array (a node-based map spent a tenth of a search in its
// lookups and an allocation per state). Both halves of a fingerprint are
// hashes already; a zero fingerprint (never produced in practice) is stored
// as {0, 1}, so that {0, 0} can mark an empty slot.
class VisitedSet {
 public:
  VisitedSet() : slots_(1u << 16) {}
  // The id stored for f, and whether it was inserted now (with id `fresh`).
  std::pair<std::uint32_t, bool> emplace(Fingerprint f, std::uint32_t fresh) {
    if (f.a == 0 && f.b == 0) f.b = 1;
    if ((size_ + 1) * 2 > slots_.size()) grow();
    Slot& s = find(f);
    if (s.f.a != 0 || s.f.b != 0) return {s.id, false};
    s = {f, fresh};
    ++size_;
    return {fresh, true};
  }

 private:
  struct Slot {
    Fingerprint f{0, 0};
    std::uint32_t id = 0;
  };
  Slot& find(const Fingerprint& f) {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = static_cast<std::size_t>(f.a) & mask;; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if ((s.f.a == 0 && s.f.b == 0) || s.f == f) return s;
    }
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& s : old) {
      if (s.f.a != 0 || s.f.b != 0) find(s.f) = s;
    }
  }
  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

template <class S>
Report explore(const S& initial) {
  const auto t0 = std::chrono::steady_clock::now();
  Report r;
  struct Parent {
    std::uint32_t state;  // the state it was first reached from
    std::uint32_t event;  // that state's event index
  };
  std::vector<Parent> parents;
  VisitedSet seen;
  // Deques: a vector's growth would copy every state in it (a system whose
  // move may throw, as std::deque's does, is copied, not moved).
  std::deque<std::pair<S, std::uint32_t>> frontier, next;
  std::string enc;
  static const bool progress = std::getenv("KEEL_EXPLORE_PROGRESS") != nullptr;  // NOLINT(concurrency-mt-unsafe)

  // The event indices that lead to `id`, then `last` if any.
  const auto path = [&](std::uint32_t id, std::int64_t last) {
    std::vector<std::uint32_t> p;
    if (last >= 0) p.push_back(static_cast<std::uint32_t>(last));
    for (; parents[id].state != id; id = parents[id].state) p.push_back(parents[id].event);
    return std::vector<std::uint32_t>(p.rbegin(), p.rend());
  };
  // Replays a path from the start, describing each event and what it did.
  const auto replay = [&](const std::vector<std::uint32_t>& p) {
    S s = initial;
    for (std::size_t i = 0; i < p.size(); ++i) {
      const auto evs = s.events();
      std::string line = std::to_string(i + 1) + ". " + s.describe(evs[p[i]]);
      try {
        s.apply(evs[p[i]]);
        line += s.log();
      } catch (const Violation&) {
        line += s.log() + "  <-- violation";
      }
      r.trace.push_back(std::move(line));
    }
  };
  const auto fail = [&](const Violation& v, std::vector<std::uint32_t> p) {
    r.ok = false;
    r.violation = v.what;
    replay(p);
  };

  initial.encode(enc);
  seen.emplace(fingerprint(enc), 0);
  parents.push_back({0, 0});
  frontier.emplace_back(initial, 0);
  while (!frontier.empty() && r.ok) {
    for (auto& [s, id] : frontier) {
      const auto evs = s.events();
      if (evs.empty()) {
        ++r.ends;
        try {
          s.at_end();
        } catch (const Violation& v) {
          fail(v, path(id, -1));
          break;
        }
      }
      for (std::uint32_t i = 0; i < evs.size(); ++i) {
        S n = s;
        ++r.transitions;
        try {
          n.apply(evs[i]);
        } catch (const Violation& v) {
          fail(v, path(id, i));
          break;
        }
        enc.clear();
        n.encode(enc);
        const auto [nid, fresh] = seen.emplace(fingerprint(enc), static_cast<std::uint32_t>(parents.size()));
        if (!fresh) continue;
        if (parents.size() >= UINT32_MAX - 1) throw std::length_error("explore: more than 2^32 states");
        parents.push_back({id, i});
        next.emplace_back(std::move(n), nid);
      }
      if (!r.ok) break;
    }
    frontier.swap(next);
    next.clear();
    if (!frontier.empty()) ++r.depth;
    if (progress && !frontier.empty())
      std::cerr << "  depth " << r.depth << ": " << parents.size() << " states, " << frontier.size() << " new\n";
  }
  r.states = parents.size();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

inline int& failures() {
  static int n = 0;
  return n;
}

// Explores from `initial` and prints one KEEL-CHECK row (after the
// counterexample, if any). A violation of the initial state itself is the
// system's constructor throwing: make() builds it inside the try.
template <class Make>
bool run(const char* name, const char* invariants, const std::string& bounds, Make make) {
  Report r;
  try {
    r = explore(make());
  } catch (const Violation& v) {
    r.ok = false;
    r.violation = "at the start: " + v.what;
  }
  std::string verdict;
  if (r.ok) {
    verdict = std::to_string(r.states) + " states, " + std::to_string(r.transitions) + " events, depth " +
              std::to_string(r.depth) + ", " + std::to_string(r.ends) + " ends: no violation";
  } else {
    std::cout << "counterexample for " << name << " (" << r.trace.size() << " events):\n";
    for (const auto& line : r.trace) std::cout << "  " << line << '\n';
    std::cout << "  violated: " << r.violation << '\n';
    verdict = "counterexample of " + std::to_string(r.trace.size()) + " events: " + r.violation;
    for (char& c : verdict)
      if (c == '|' || c == '\n') c = ' ';
    ++failures();
  }
  std::cout << "KEEL-CHECK|" << name << '|' << invariants << '|' << bounds << '|' << r.states << '|' << r.seconds << '|'
            << (r.ok ? "pass" : "FAIL") << '|' << verdict << std::endl;
  return r.ok;
}

// One row of an explorer's table: its name, the invariants it checks and its
// bounds (the explorer's own type, with describe()).
template <class Bounds>
struct Row {
  const char* name;
  const char* invariants;
  Bounds bounds;
};

// Runs an explorer's rows in order and returns main's exit status, the same
// way for every explorer: KEEL_EXPLORE_ONLY=<name> runs that row alone (work
// in progress); KEEL_MODEL_ROWS=<text> only the rows whose name contains it
// (verify runs a twin on the row declared to catch it first, as the Relacy
// harness does); KEEL_MODEL_ROW=<name> that row alone, and KEEL_MODEL_LIST=1
// prints the rows' names (KEEL-ROW|<name>) and runs none (verify runs each
// row as a job of its own, as with the Relacy models); a twin (KEEL_INJECT)
// or mutant (KEEL_MUTANT, make mutate) run stops at its first failing row,
// since the others would only repeat it.
// make_world(bounds) builds the initial state.
template <class Bounds, class MakeWorld>
int run_rows(const std::vector<Row<Bounds>>& rows, MakeWorld make_world) {
  // NOLINTBEGIN(concurrency-mt-unsafe): single-threaded
  const bool stop_at_first = std::getenv("KEEL_INJECT") != nullptr || std::getenv("KEEL_MUTANT") != nullptr;
  const char* only = std::getenv("KEEL_EXPLORE_ONLY");
  const char* some = std::getenv("KEEL_MODEL_ROWS");
  const char* exact = std::getenv("KEEL_MODEL_ROW");
  const char* list = std::getenv("KEEL_MODEL_LIST");
  // NOLINTEND(concurrency-mt-unsafe)
#if defined(__GLIBC__)
  // A search copies its system once per event and frees a whole depth's
  // frontier at a time: with glibc's defaults the heap grows by a page run
  // per brk and is trimmed back after each depth, only to be faulted in
  // again (pool.explore.w1d2: 14.0 s against 11.4 s with the heap kept, in
  // alternating runs). An explorer is a tool process, so it keeps its heap.
  // Its runners (tools/verify.py, tools/mutate.py) also start it with a deep
  // thread cache and huge pages (verify.EXPLORE_TUNABLES): glibc reads those
  // only at process start.
  mallopt(M_TOP_PAD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
#endif
  for (const Row<Bounds>& r : rows) {
    if (only != nullptr && std::string(only) != r.name) continue;
    if (exact != nullptr && std::string(exact) != r.name) continue;
    if (some != nullptr && std::string(r.name).find(some) == std::string::npos) continue;
    if (list != nullptr && std::string(list) == "1") {
      std::cout << "KEEL-ROW|" << r.name << std::endl;
      continue;
    }
    const bool ok = run(r.name, r.invariants, r.bounds.describe(), [&] { return make_world(r.bounds); });
    if (!ok && stop_at_first) break;
  }
  return failures() == 0 ? 0 : 1;
}

}  // namespace keel::explore
