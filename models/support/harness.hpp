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
// contains <text>. For verify, which runs each row as a job of its own so
// that two cores (or sixteen) share a model's rows: KEEL_MODEL_LIST=1 prints
// the mode's rows (KEEL-ROW|<name>) and runs none, and KEEL_MODEL_ROW=<name>
// runs the row of exactly that name.
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
#include <new>
#include <sstream>
#include <string>
#include <typeinfo>

// Relacy switches between its simulated threads (fibers) with _setjmp and
// _longjmp, several times per simulated atomic operation. glibc's _longjmp is
// siglongjmp: it first unwinds the thread's pthread cleanup handlers
// (__pthread_cleanup_upto) and goes through the pointer-mangled jump, about
// 14% of an exhaustive Condition row's profile (2026-12-06). A fiber switch
// needs only the callee-saved registers, the stack pointer and the return
// address, so a model binary defines the pair itself: the definitions in the
// executable bind Relacy's calls at link time, and glibc's are never reached.
// Nothing else in a model binary calls them (the kernel does not; glibc's own
// users call its internal __sigsetjmp). Measured on the Condition model's
// context-bound(5) row: 28.5-32.3 CPU-s against 34.7-35.0 with glibc's.
// The jmp_buf's first eight words hold rbx, rbp, r12-r15, rsp after the
// return, and the return address; the signal mask fields are unused, as
// _setjmp (which never saves the mask) leaves them.
#if defined(__x86_64__) && defined(__linux__)
asm(R"(
	.pushsection .text
	.globl _setjmp
	.type _setjmp, @function
_setjmp:
	movq %rbx, 0(%rdi)
	movq %rbp, 8(%rdi)
	movq %r12, 16(%rdi)
	movq %r13, 24(%rdi)
	movq %r14, 32(%rdi)
	movq %r15, 40(%rdi)
	leaq 8(%rsp), %rdx
	movq %rdx, 48(%rdi)
	movq (%rsp), %rdx
	movq %rdx, 56(%rdi)
	xorl %eax, %eax
	ret
	.size _setjmp, .-_setjmp
	.globl _longjmp
	.type _longjmp, @function
_longjmp:
	movl %esi, %eax
	testl %eax, %eax
	jnz 1f
	incl %eax
1:
	movq 0(%rdi), %rbx
	movq 8(%rdi), %rbp
	movq 16(%rdi), %r12
	movq 24(%rdi), %r13
	movq 32(%rdi), %r14
	movq 40(%rdi), %r15
	movq 48(%rdi), %rsp
	jmpq *56(%rdi)
	.size _longjmp, .-_longjmp
	.popsection
)");
#endif

namespace keel::model {

// A row's search, its kind in the type: a row instantiates Relacy's
// execution engine (context_impl) for its own scheduler only. rl::simulate
// takes the kind at run time and so instantiates all three for every suite:
// two thirds of each model's compile time went to engines no row ran.
template <rl::scheduler_type_e Type>
struct Search {
  unsigned long iterations;  // random: iterations; bound: the context bound; full: unused
  std::string describe() const {
    if constexpr (Type == rl::sched_full) return "full (no spurious wake-ups)";
    if constexpr (Type == rl::sched_bound) return "context-bound(" + std::to_string(iterations) + ")";
    return "random(" + std::to_string(iterations) + ")";
  }
};
inline Search<rl::sched_full> full() { return {0}; }
inline Search<rl::sched_bound> bounded(unsigned bound) { return {bound}; }
inline Search<rl::sched_random> random(unsigned long iterations) { return {iterations}; }

template <rl::scheduler_type_e Type, unsigned Threads>
struct SchedulerOf;
template <unsigned Threads>
struct SchedulerOf<rl::sched_random, Threads> {
  using type = rl::random_scheduler<Threads>;
};
template <unsigned Threads>
struct SchedulerOf<rl::sched_bound, Threads> {
  using type = rl::context_bound_scheduler<Threads>;
};
template <unsigned Threads>
struct SchedulerOf<rl::sched_full, Threads> {
  using type = rl::full_search_scheduler<Threads>;
};

// One engine per thread layout, not per suite. rl::run_test instantiates
// Relacy's whole execution engine (context_impl: scheduler, memory model,
// fibers) for the suite type it is given, and generating that code was
// nearly all of a model binary's compile: the sync group's binary held 51
// engines, and code generation was 52 of its 56 CPU-s at -O2 (parsing, 2).
// The engine uses a suite only to construct it, call before, thread(i),
// invariant and after, and destroy it, so every row runs an ErasedSuite of
// its thread counts, which makes those calls through its row's table: the
// rows of one layout and scheduler share one engine. The row's suite lives
// in storage taken once per row, outside the simulated heap as Relacy's own
// suite storage is, so it has the same address in every iteration, as it had
// there (a replayed failure must meet the same addresses).
struct SuiteOps {
  std::size_t size;
  std::size_t align;
  void (*construct)(void*);
  void (*destroy)(void*);
  void (*before)(void*);
  void (*thread)(void*, unsigned);
  void (*invariant)(void*);
  void (*after)(void*);
};

template <class Suite>
inline constexpr SuiteOps suite_ops{
    sizeof(Suite),
    alignof(Suite),
    [](void* s) { new (s) Suite(); },
    [](void* s) { static_cast<Suite*>(s)->~Suite(); },
    [](void* s) { static_cast<Suite*>(s)->before(); },
    [](void* s, unsigned i) { static_cast<Suite*>(s)->thread(i); },
    [](void* s) { static_cast<Suite*>(s)->invariant(); },
    [](void* s) { static_cast<Suite*>(s)->after(); },
};

// The row being simulated: its suite's table and storage.
struct ErasedRow {
  const SuiteOps* ops = nullptr;
  void* storage = nullptr;
};
inline ErasedRow& erased_row() {
  static ErasedRow r;
  return r;
}

template <rl::thread_id_t Static, rl::thread_id_t Dynamic, rl::test_result_e Expected>
struct ErasedSuite : rl::test_suite<ErasedSuite<Static, Dynamic, Expected>, Static, Expected> {
  static const rl::thread_id_t dynamic_thread_count = Dynamic;
  ErasedSuite() { erased_row().ops->construct(erased_row().storage); }
  ~ErasedSuite() { erased_row().ops->destroy(erased_row().storage); }
  ErasedSuite(const ErasedSuite&) = delete;
  ErasedSuite& operator=(const ErasedSuite&) = delete;
  void before() { erased_row().ops->before(erased_row().storage); }
  void thread(unsigned index) { erased_row().ops->thread(erased_row().storage, index); }
  void invariant() { erased_row().ops->invariant(erased_row().storage); }
  void after() { erased_row().ops->after(erased_row().storage); }
};

template <class Suite>
using ErasedOf = ErasedSuite<Suite::params::static_thread_count, Suite::params::dynamic_thread_count,
                             Suite::params::expected_result>;

// Sets the row's table and takes its storage; gives both back when the row ends.
template <class Suite>
class ErasedRowScope {
 public:
  ErasedRowScope() {
    const SuiteOps& ops = suite_ops<Suite>;
    const std::size_t align = ops.align < alignof(std::max_align_t) ? alignof(std::max_align_t) : ops.align;
    // Parenthesised: Relacy defines malloc and free as macros for the simulated heap.
    void* storage = (std::aligned_alloc)(align, (ops.size + align - 1) / align * align);
    if (storage == nullptr) throw std::bad_alloc();
    erased_row() = {&ops, storage};
  }
  ~ErasedRowScope() {
    (std::free)(erased_row().storage);
    erased_row() = {};
  }
  ErasedRowScope(const ErasedRowScope&) = delete;
  ErasedRowScope& operator=(const ErasedRowScope&) = delete;
};

// rl::simulate's steps for one scheduler: the search, then, when it failed,
// the failing iteration replayed from its recorded state with the history
// collected, which Relacy prints with the failure. Run as the suite's
// ErasedSuite (above).
template <class Suite, rl::scheduler_type_e Type>
bool simulate(rl::test_params& p) {
  using Scheduler = typename SchedulerOf<Type, Suite::params::thread_count>::type;
  using Erased = ErasedOf<Suite>;
  static_assert(Erased::params::thread_count == Suite::params::thread_count);
  const ErasedRowScope<Suite> row;
  const char* mangled = typeid(Suite).name();
  while (*mangled >= '0' && *mangled <= '9') ++mangled;
  p.test_name = mangled;
  *p.output_stream << p.test_name << std::endl;
  // Relacy's own stream type: its buffer is written while the simulated
  // world's operator new is Relacy's, and must not come from that heap.
  rl::ostringstream state;
  const rl::test_result_e res = rl::run_test<Erased, Scheduler>(p, state, false);
  if (res == rl::test_result_success) {
    *p.output_stream << "iterations: " << p.stop_iteration << std::endl;
  } else if (!p.output_history && !p.collect_history) {
    p.initial_state = state.str();
    p.final_state = state.str();
    p.collect_history = true;
    const rl::iteration_t failed_at = p.stop_iteration;
    rl::ostringstream replay;
    const rl::test_result_e again = rl::run_test<Erased, Scheduler>(p, replay, true);
    // The replay must fail the same way at the same iteration, or the model
    // is not deterministic (rand(), statics, addresses used as values).
    RL_VERIFY(again == res);
    RL_VERIFY(p.stop_iteration == failed_at);
  }
  return Erased::params::expected_result == res;
}

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

template <class Suite, rl::scheduler_type_e Type>
bool run_check(const char* name, const char* invariants, Search<Type> search) {
  // NOLINTBEGIN(concurrency-mt-unsafe): single-threaded main
  const char* rows = std::getenv("KEEL_MODEL_ROWS");
  const char* row = std::getenv("KEEL_MODEL_ROW");
  const char* list = std::getenv("KEEL_MODEL_LIST");
  // NOLINTEND(concurrency-mt-unsafe)
  if (rows != nullptr && std::string_view(name).find(rows) == std::string_view::npos) return true;
  if (row != nullptr && std::string_view(name) != row) return true;
  if (list != nullptr && std::string_view(list) == "1") {
    std::cout << "KEEL-ROW|" << name << std::endl;
    return true;
  }
  current_row() = {name, invariants, search.describe(), std::chrono::steady_clock::now()};
  std::set_terminate(terminate_in_row);
  rl::test_params p;
  p.search_type = Type;
  if (Type == rl::sched_random) p.iteration_count = search.iterations;
  if (Type == rl::sched_bound) p.context_bound = static_cast<unsigned>(search.iterations);
  std::ostringstream progress;
  p.progress_stream = std::getenv("KEEL_MODEL_PROGRESS") ? &std::cerr : &progress;
  p.output_stream = &std::cout;
  platform::model_spurious_wakeups() = Type != rl::sched_full;
  const auto t0 = std::chrono::steady_clock::now();
  const bool ok = simulate<Suite, Type>(p);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "KEEL-CHECK|" << name << '|' << invariants << '|' << search.describe() << '|' << p.stop_iteration << '|'
            << secs << '|' << (ok ? "pass" : "FAIL") << '|' << rl::test_result_str(p.test_result) << std::endl;
  if (!ok) ++failures();
  return ok;
}

// A `make verify` row (skipped under KEEL_MODEL_DEEP=1).
template <class Suite, rl::scheduler_type_e Type>
bool check(const char* name, const char* invariants, Search<Type> search) {
  if (deep_mode()) return true;
  if (failures() > 0 && stop_at_first_failure()) return false;
  return run_check<Suite, Type>(name, invariants, search);
}

// A `make verify-deep` row (skipped unless KEEL_MODEL_DEEP=1).
template <class Suite, rl::scheduler_type_e Type>
bool deep_check(const char* name, const char* invariants, Search<Type> search) {
  if (!deep_mode()) return true;
  if (failures() > 0 && stop_at_first_failure()) return false;
  return run_check<Suite, Type>(name, invariants, search);
}

inline int exit_code() { return failures() == 0 ? 0 : 1; }

}  // namespace keel::model
