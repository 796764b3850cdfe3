// The model-checking harness: runs Relacy test suites over the real kernel code
// and prints one machine-readable row per check for tools/verify.
//
// Contract: a model source defines Relacy test suites that use keel types
// (compiled with KEEL_MODEL_RELACY, so they run on the Relacy shim backend) and
// a main() that calls keel::model::check<Suite>(name, invariants, search) for
// each. Each call prints
//   KEEL-CHECK|<name>|<invariant ids>|<search>|<iterations>|<seconds>|<pass|FAIL>|<relacy verdict>
// and main returns non-zero if any check failed. Relacy's own report (with the
// failing interleaving's history) goes to stdout before the row. A
// std::terminate during a row (the kernel let an exception out of a noexcept
// destructor in some interleaving) prints that row as FAIL, with the
// exception's text as the verdict, and exits 1.
//
// Two depths, one binary: check() rows are `make verify`'s (seconds each);
// deep_check() rows are `make verify-deep`'s (exhaustive context-bounded or
// full searches and 3-thread variants, minutes each), selected by
// KEEL_MODEL_DEEP=1 in the environment. Each mode runs only its own rows. In a
// twin run (KEEL_INJECT set) or mutant run (KEEL_MUTANT set, by make mutate)
// the rows after the first failure are skipped: the twin or mutant is caught,
// and running the rest would only cost minutes.
// For work on one model, KEEL_MODEL_ROWS=<text> runs only the rows whose name
// contains <text>.
#pragma once

#ifndef KEEL_MODEL_RELACY
#error "models build with -DKEEL_MODEL_RELACY"
#endif

#include "keel/platform/config.hpp"
// The kernel's out-of-line code, compiled into this model so the shipped
// source is what Relacy runs.
#include "keel/platform/futex.hpp"
#include "kernel_unity.hpp"

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

namespace keel::model {

struct Search {
  rl::scheduler_type_e type;
  unsigned long iterations;  // random: iterations; bound: the context bound
  std::string describe() const {
    switch (type) {
      case rl::sched_full:
        return "full (no spurious wake-ups)";
      case rl::sched_bound:
        return "context-bound(" + std::to_string(iterations) + ")";
      default:
        return "random(" + std::to_string(iterations) + ")";
    }
  }
};
inline Search full() { return {rl::sched_full, 0}; }
inline Search bounded(unsigned bound) { return {rl::sched_bound, bound}; }
inline Search random(unsigned long iterations) { return {rl::sched_random, iterations}; }

inline int& failures() {
  static int n = 0;
  return n;
}

// Read once, before any check runs.
inline bool deep_mode() {
  static const bool deep = [] {
    const char* v = std::getenv("KEEL_MODEL_DEEP");  // NOLINT(concurrency-mt-unsafe): single-threaded main
    return v != nullptr && std::string_view(v) == "1";
  }();
  return deep;
}

// A twin run (verify sets KEEL_INJECT) or a mutant run (make mutate sets
// KEEL_MUTANT) that already failed: the twin or mutant is caught, and the rows
// after it would only cost time.
inline bool stop_at_first_failure() {
  const bool twin = std::getenv("KEEL_INJECT") != nullptr;    // NOLINT(concurrency-mt-unsafe): single-threaded main
  const bool mutant = std::getenv("KEEL_MUTANT") != nullptr;  // NOLINT(concurrency-mt-unsafe): single-threaded main
  return twin || mutant;
}

// The row being run, for the terminate handler below.
struct CurrentRow {
  const char* name = nullptr;
  const char* invariants = nullptr;
  std::string search;
  std::chrono::steady_clock::time_point start;
};
inline CurrentRow& current_row() {
  static CurrentRow r;
  return r;
}

// The kernel may end the process in some interleaving: an exception out of a
// noexcept destructor (a lock guard whose unlock finds the lock not held, as
// when two threads were let hold it) is std::terminate, which no Relacy
// assertion sees. That is the row's failure, so it is reported as one, with
// the exception, instead of leaving only an abort for the reader to trace.
[[noreturn]] inline void terminate_in_row() {
  std::string what = "no exception";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
      what = "an exception of unknown type";
    }
  }
  const CurrentRow& r = current_row();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
  std::cout << "KEEL-CHECK|" << (r.name ? r.name : "?") << '|' << (r.invariants ? r.invariants : "") << '|' << r.search
            << "|-|" << secs << "|FAIL|std::terminate in the kernel: " << what << std::endl;
  std::_Exit(1);
}

template <class Suite>
bool run_check(const char* name, const char* invariants, Search search) {
  const char* rows = std::getenv("KEEL_MODEL_ROWS");  // NOLINT(concurrency-mt-unsafe): single-threaded main
  if (rows != nullptr && std::string_view(name).find(rows) == std::string_view::npos) return true;
  current_row() = {name, invariants, search.describe(), std::chrono::steady_clock::now()};
  std::set_terminate(terminate_in_row);
  rl::test_params p;
  p.search_type = search.type;
  if (search.type == rl::sched_random) p.iteration_count = search.iterations;
  if (search.type == rl::sched_bound) p.context_bound = search.iterations;
  std::ostringstream progress;
  p.progress_stream = std::getenv("KEEL_MODEL_PROGRESS") ? &std::cerr : &progress;
  p.output_stream = &std::cout;
  platform::model_spurious_wakeups() = search.type != rl::sched_full;
  const auto t0 = std::chrono::steady_clock::now();
  const bool ok = rl::simulate<Suite>(p);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "KEEL-CHECK|" << name << '|' << invariants << '|' << search.describe() << '|' << p.stop_iteration << '|'
            << secs << '|' << (ok ? "pass" : "FAIL") << '|' << rl::test_result_str(p.test_result) << std::endl;
  if (!ok) ++failures();
  return ok;
}

// A `make verify` row (skipped under KEEL_MODEL_DEEP=1).
template <class Suite>
bool check(const char* name, const char* invariants, Search search) {
  if (deep_mode()) return true;
  if (failures() > 0 && stop_at_first_failure()) return false;
  return run_check<Suite>(name, invariants, search);
}

// A `make verify-deep` row (skipped unless KEEL_MODEL_DEEP=1).
template <class Suite>
bool deep_check(const char* name, const char* invariants, Search search) {
  if (!deep_mode()) return true;
  if (failures() > 0 && stop_at_first_failure()) return false;
  return run_check<Suite>(name, invariants, search);
}

inline int exit_code() { return failures() == 0 ? 0 : 1; }

}  // namespace keel::model
