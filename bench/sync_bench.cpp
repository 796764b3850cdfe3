// keel sync benchmarks: keel::Mutex, Semaphore and Event against their
// standard-library and Abseil peers, with a ratio table measured in the same run.
//
// Benchmarks (names are what --benchmark_filter matches):
//   uncontended/{keel,std,absl}    one thread: lock; ++counter; unlock.
//                                  Time = one lock+unlock pair. These run
//                                  first, while the process has one thread:
//                                  glibc then skips the atomic instructions
//                                  in pthread_mutex (std::mutex). Counter
//                                  single_threaded: whether it really was
//                                  (glibc's __libc_single_threaded).
//   uncontended_2t/{keel,std,absl} the same with a second thread alive,
//                                  asleep: what a program with threads pays.
//                                  The target line judges this one.
//   contended/{keel,std,absl}      two threads share one lock and race to
//                                  perform exactly N increments of a shared
//                                  counter, each under the lock. Time = wall
//                                  time / N, i.e. the inverse of the pair's
//                                  total throughput, however unfairly the lock
//                                  splits the work. Counters: main_share (the
//                                  benchmark thread's share of the increments)
//                                  and handoffs (fraction of increments made by
//                                  the other thread than the one before).
//                                  CPU = CPU of the whole process / N.
//   sem_pingpong/{keel,std}        two threads, two semaphores starting at 0:
//                                  main releases A and acquires B, the partner
//                                  acquires A and releases B. Time = one round trip.
//   event_pingpong/{keel,condvar}  the same round trip over two keel::Events
//                                  (set / wait / clear), and over one
//                                  std::mutex + std::condition_variable + turn flag.
//
// After the runs, a ratio table compares each keel primitive with its peer and
// marks the stated targets OK or MISSED. Targets are informative only: the exit
// status is 0 unless a benchmark reported an error (a failed correctness check)
// or an argument was not recognized. All --benchmark_* flags pass through;
// defaults (3 repetitions, aggregates only, 0.4 s minimum time, 0.1 s warm-up;
// the median is used for ratios) apply only where the command line does not
// set the flag.

#include <absl/synchronization/mutex.h>
#include <benchmark/benchmark.h>
#include <sys/single_threaded.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/semaphore.hpp"

namespace {

constexpr std::size_t kLine = 64;  // keep unrelated hot words off each other's cache lines
constexpr int kWorkSteps = 64;     // local_work steps between critical sections in contended/.../64

// absl::Mutex (20220623) spells its methods Lock/Unlock; give it the Lockable names.
class AbslLock {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION(m_) { m_.Lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION(m_) { m_.Unlock(); }

 private:
  absl::Mutex m_;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// ---------------------------------------------------------------------------
// Mutex, uncontended

template <class Lock>
struct alignas(kLine) Guarded {
  Lock m;
  std::int64_t counter = 0;
};

// A second thread that sleeps until destroyed: while it lives, the process
// is multi-threaded, as every program that needs a mutex is.
class Sleeper {
 public:
  Sleeper() : thread_([f = wake_.get_future()] { f.wait(); }) {}
  Sleeper(const Sleeper&) = delete;
  Sleeper& operator=(const Sleeper&) = delete;
  ~Sleeper() {
    wake_.set_value();
    thread_.join();
  }

 private:
  std::promise<void> wake_;
  std::thread thread_;
};

template <class Lock, bool kSecondThread>
void bm_uncontended(benchmark::State& state) {
  std::optional<Sleeper> sleeper;
  if (kSecondThread) sleeper.emplace();
  // glibc never sets it back once a thread was created.
  state.counters["single_threaded"] = __libc_single_threaded ? 1 : 0;
  Guarded<Lock> g;
  for (auto _ : state) {
    g.m.lock();
    ++g.counter;
    benchmark::ClobberMemory();  // the increment and the lock calls stay in order and in the loop
    g.m.unlock();
  }
  benchmark::DoNotOptimize(g.counter);
  if (g.counter != static_cast<std::int64_t>(state.iterations())) state.SkipWithError("counter mismatch");
}

// ---------------------------------------------------------------------------
// Mutex, contended by two threads

// Performs increments under the lock until the counter reaches n; returns how
// many this thread did. The final lock/unlock that sees counter == n is shared
// by both threads, so each run costs n + 2 lock acquisitions in all.
template <class Lock>
struct alignas(kLine) Contended {
  Lock m;
  std::int64_t counter = 0;
  std::int64_t handoffs = 0;  // increments done by a different thread than the previous one
  int last = -1;              // which thread did the previous increment
};

// About `steps` * 4 cycles of private, dependent arithmetic: work a thread does
// between critical sections, which the optimizer cannot drop.
inline void local_work(int steps) {
  std::uint64_t x = static_cast<std::uint64_t>(steps);
  for (int i = 0; i < steps; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    benchmark::DoNotOptimize(x);
  }
}

template <class Lock>
std::int64_t race_to(Contended<Lock>& g, std::int64_t n, int me, int work) {
  std::int64_t mine = 0;
  for (;;) {
    if (work > 0) local_work(work);
    g.m.lock();
    const bool more = g.counter < n;
    if (more) {
      ++g.counter;
      g.handoffs += g.last != me;
      g.last = me;
    }
    g.m.unlock();
    if (!more) return mine;
    ++mine;
  }
}

// state.range(0): steps of local_work before each critical section (0: none).
template <class Lock>
void bm_contended(benchmark::State& state) {
  const int work = static_cast<int>(state.range(0));
  Contended<Lock> g;
  const std::int64_t n = static_cast<std::int64_t>(state.max_iterations);
  // 0: wait, 1: go, 2: partner finished.
  alignas(kLine) std::atomic<int> phase{0};
  alignas(kLine) std::int64_t partner_ops = 0;
  std::thread partner([&] {
    while (phase.load(std::memory_order_acquire) == 0) std::this_thread::yield();
    partner_ops = race_to(g, n, 1, work);
    phase.store(2, std::memory_order_release);
  });
  std::int64_t main_ops = 0;
  while (state.KeepRunningBatch(n)) {
    phase.store(1, std::memory_order_release);
    main_ops = race_to(g, n, 0, work);
    while (phase.load(std::memory_order_acquire) != 2) cpu_relax();
  }
  partner.join();
  if (g.counter != n || main_ops + partner_ops != n) {
    state.SkipWithError("contended counter mismatch: the lock let two increments race");
    return;
  }
  // How the lock split the work, and how often it changed hands: an unfair lock
  // that lets the releasing thread re-take it runs long batches (few handoffs),
  // which is cheap, so compare handoffs before reading throughput as speed.
  const double dn = n > 0 ? static_cast<double>(n) : 1.0;
  state.counters["main_share"] = static_cast<double>(main_ops) / dn;
  state.counters["handoffs"] = static_cast<double>(g.handoffs) / dn;
}

// ---------------------------------------------------------------------------
// Ping-pong: one round trip per iteration

// Runs `serve` on a partner thread, `round_trip` once per iteration on the
// benchmark thread, then `stop` (which must make `serve` return) and joins.
template <class Serve, class RoundTrip, class Stop>
void pingpong(benchmark::State& state, Serve serve, RoundTrip round_trip, Stop stop) {
  std::thread partner(serve);
  for (auto _ : state) round_trip();
  stop();
  partner.join();
}

template <class Sem>
struct alignas(kLine) SemPair {
  alignas(kLine) Sem ping{0};
  alignas(kLine) Sem pong{0};
  alignas(kLine) std::atomic<bool> stop{false};
};

template <class Sem>
void bm_sem_pingpong(benchmark::State& state) {
  auto p = std::make_unique<SemPair<Sem>>();
  pingpong(
      state,
      [&p] {
        for (;;) {
          p->ping.acquire();
          if (p->stop.load(std::memory_order_relaxed)) return;
          p->pong.release();
        }
      },
      [&p] {
        p->ping.release();
        p->pong.acquire();
      },
      [&p] {
        p->stop.store(true, std::memory_order_relaxed);
        p->ping.release();  // ordered before the partner's acquire of it, so it sees stop
      });
}

// Two Events. A round trip: main sets ping and waits for pong; the partner
// waits for ping, clears it, then sets pong; main clears pong. Each clear
// happens before the set that the next round needs (the partner clears ping
// before it sets pong, and main sets ping again only after it saw pong and
// cleared it), so no clear can erase a set meant for a later round.
struct alignas(kLine) EventPair {
  alignas(kLine) keel::Event ping;
  alignas(kLine) keel::Event pong;
  alignas(kLine) std::atomic<bool> stop{false};
};

void bm_event_pingpong_keel(benchmark::State& state) {
  auto p = std::make_unique<EventPair>();
  pingpong(
      state,
      [&p] {
        for (;;) {
          p->ping.wait();
          if (p->stop.load(std::memory_order_relaxed)) return;
          p->ping.clear();
          p->pong.set();
        }
      },
      [&p] {
        p->ping.set();
        p->pong.wait();
        p->pong.clear();
      },
      [&p] {
        p->stop.store(true, std::memory_order_relaxed);
        p->ping.set();  // set() releases, wait() acquires: the partner sees stop
      });
}

// The textbook peer: a turn flag under a std::mutex, one condition variable.
// At most one thread waits at any time, so notify_one always reaches the other.
struct alignas(kLine) CondvarPair {
  std::mutex m;
  std::condition_variable cv;
  int turn = 0;  // 0: main's turn, 1: partner's turn
  bool stop = false;
};

void bm_event_pingpong_condvar(benchmark::State& state) {
  auto p = std::make_unique<CondvarPair>();
  pingpong(
      state,
      [&p] {
        std::unique_lock lk(p->m);
        for (;;) {
          p->cv.wait(lk, [&p] { return p->turn == 1 || p->stop; });
          if (p->stop) return;
          p->turn = 0;
          p->cv.notify_one();
        }
      },
      [&p] {
        std::unique_lock lk(p->m);
        p->turn = 1;
        p->cv.notify_one();
        p->cv.wait(lk, [&p] { return p->turn == 0; });
      },
      [&p] {
        {
          std::lock_guard lk(p->m);
          p->stop = true;
        }
        p->cv.notify_one();
      });
}

// ---------------------------------------------------------------------------
// Registration

void register_all() {
  // The one-thread rows first: no thread has been created yet.
  auto unc = [](const char* name, auto fn) { benchmark::RegisterBenchmark(name, fn); };
  unc("uncontended/keel", bm_uncontended<keel::Mutex, false>);
  unc("uncontended/std", bm_uncontended<std::mutex, false>);
  unc("uncontended/absl", bm_uncontended<AbslLock, false>);
  unc("uncontended_2t/keel", bm_uncontended<keel::Mutex, true>);
  unc("uncontended_2t/std", bm_uncontended<std::mutex, true>);
  unc("uncontended_2t/absl", bm_uncontended<AbslLock, true>);

  // Wall time is what the ratio compares; process CPU shows what spinning costs.
  auto two = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)->UseRealTime()->MeasureProcessCPUTime();
  };
  // Arg 0: back-to-back critical sections, the pure lock/unlock throughput.
  // Arg 64: ~100 ns of private work between them, so the lock changes hands often.
  auto con = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)->Arg(0)->Arg(kWorkSteps)->UseRealTime()->MeasureProcessCPUTime();
  };
  con("contended/keel", bm_contended<keel::Mutex>);
  con("contended/std", bm_contended<std::mutex>);
  con("contended/absl", bm_contended<AbslLock>);
  two("sem_pingpong/keel", bm_sem_pingpong<keel::Semaphore>);
  two("sem_pingpong/std", bm_sem_pingpong<std::counting_semaphore<>>);
  two("event_pingpong/keel", bm_event_pingpong_keel);
  two("event_pingpong/condvar", bm_event_pingpong_condvar);
}

// ---------------------------------------------------------------------------
// Ratio table

enum class Want { at_most, at_least, none };

void ratio_line(std::FILE* out, const char* label, std::optional<double> num, std::optional<double> den,
                const char* detail, Want want, double target) {
  if (!num || !den || *den <= 0) {
    std::fprintf(out, "  %-60s   n/a (not run)\n", label);
    return;
  }
  const double r = *num / *den;
  keel_bench::derive(label, r);
  std::fprintf(out, "  %-60s = %5.2fx", label, r);
  if (want == Want::none) {
    std::fprintf(out, "  (info)          ");
  } else {
    const bool ok = *keel_bench::target(label, r, want == Want::at_least, target);
    std::fprintf(out, "  (target %s %.2fx) %-6s", want == Want::at_most ? "<=" : ">=", target, ok ? "OK" : "MISSED");
  }
  std::fprintf(out, "  [%s]\n", detail);
}

std::string ns_pair(const char* a, std::optional<double> x, const char* b, std::optional<double> y) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %.1f ns, %s %.1f ns", a, x.value_or(0), b, y.value_or(0));
  return buf;
}

void print_ratios(std::FILE* out, const keel_bench::RecordingReporter& rec) {
  const auto t = [&rec](const char* n) { return rec.real_ns(n); };
  const auto unc_k = t("uncontended/keel"), unc_s = t("uncontended/std"), unc_a = t("uncontended/absl");
  const auto mt_k = t("uncontended_2t/keel"), mt_s = t("uncontended_2t/std"), mt_a = t("uncontended_2t/absl");
  // Whether the one-thread rows really ran in a one-thread process (they do
  // not when a filter or interleaving ran a two-thread benchmark first).
  const auto single = rec.counter("uncontended/std", "single_threaded");
  const auto con_k = t("contended/keel/0"), con_s = t("contended/std/0"), con_a = t("contended/absl/0");
  const std::string w = std::to_string(kWorkSteps);
  const auto cw_k = t(("contended/keel/" + w).c_str()), cw_s = t(("contended/std/" + w).c_str()),
             cw_a = t(("contended/absl/" + w).c_str());
  const auto sem_k = t("sem_pingpong/keel"), sem_s = t("sem_pingpong/std");
  const auto ev_k = t("event_pingpong/keel"), ev_c = t("event_pingpong/condvar");

  std::fprintf(out, "\nkeel sync ratios (real time, median of repetitions where they ran; same run):\n");
  // Time ratios: below 1 means keel is faster. Throughput ratios are inverse time ratios.
  // Judged with a second thread alive: with one thread glibc's std::mutex
  // skips its atomic instructions, which no program that needs a lock gets.
  ratio_line(out, "uncontended time keel::Mutex / std::mutex, 2 threads alive", mt_k, mt_s,
             ns_pair("keel", mt_k, "std", mt_s).c_str(), Want::at_most, 1.00);
  ratio_line(out, "uncontended time absl::Mutex / keel::Mutex, 2 threads alive", mt_a, mt_k,
             ns_pair("absl", mt_a, "keel", mt_k).c_str(), Want::none, 0);
  ratio_line(out, "uncontended time keel::Mutex / std::mutex, 1 thread", unc_k, unc_s,
             ns_pair("keel", unc_k, "std", unc_s).c_str(), Want::none, 0);
  ratio_line(out, "uncontended time absl::Mutex / keel::Mutex, 1 thread", unc_a, unc_k,
             ns_pair("absl", unc_a, "keel", unc_k).c_str(), Want::none, 0);
  if (single && *single == 0) {
    std::fprintf(out, "  (the 1-thread rows ran after a thread had been created: they are not 1-thread figures)\n");
  }
  ratio_line(out, "contended throughput keel::Mutex / std::mutex", con_s, con_k,
             ns_pair("keel", con_k, "std", con_s).c_str(), Want::at_least, 1.00);
  ratio_line(out, "contended throughput absl::Mutex / keel::Mutex", con_k, con_a,
             ns_pair("absl", con_a, "keel", con_k).c_str(), Want::none, 0);
  ratio_line(out, "contended+work throughput keel::Mutex / std::mutex", cw_s, cw_k,
             ns_pair("keel", cw_k, "std", cw_s).c_str(), Want::none, 0);
  ratio_line(out, "contended+work throughput absl::Mutex / keel::Mutex", cw_k, cw_a,
             ns_pair("absl", cw_a, "keel", cw_k).c_str(), Want::none, 0);
  ratio_line(out, "semaphore ping-pong round trip keel / std", sem_k, sem_s,
             ns_pair("keel", sem_k, "std", sem_s).c_str(), Want::at_most, 1.00);
  ratio_line(out, "event ping-pong round trip keel::Event / condvar", ev_k, ev_c,
             ns_pair("keel", ev_k, "condvar", ev_c).c_str(), Want::at_most, 1.00);
  std::fprintf(out, "Targets are informative: the exit status does not depend on them.\n");
}

}  // namespace

int main(int argc, char** argv) {
  // Defaults that keep the whole program near 30-60 s on two cores while
  // damping noise; any of them given on the command line wins.
  std::vector<char*> args(argv, argv + argc);
  keel_bench::note_version("std::mutex (glibc pthread_mutex)", gnu_get_libc_version());
  keel_bench::note_version("std::counting_semaphore (libstdc++)", std::to_string(_GLIBCXX_RELEASE));
  keel_bench::note_version("absl (libabsl-dev)", keel_bench::package_version("libabsl-dev"));
  keel_bench::add_repetition_defaults(args);
  static char min_time[] = "--benchmark_min_time=0.4";
  static char warmup[] = "--benchmark_min_warmup_time=0.1";
  if (!keel_bench::has_flag(args, "--benchmark_min_time")) args.push_back(min_time);
  // A short unmeasured warm-up settles thread placement and the iteration estimate.
  if (!keel_bench::has_flag(args, "--benchmark_min_warmup_time")) args.push_back(warmup);
  return keel_bench::run_benchmarks(std::move(args), register_all, print_ratios);
}
