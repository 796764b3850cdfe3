// keel::platform futex: wait on and wake a 32-bit word.
//
// Contract: futex_wait(word, expected, deadline) blocks only while word ==
// expected; it may return early for any reason (a wake, a signal, a spurious
// wake-up, a changed value), so callers always re-check their condition in a
// loop. It returns timed_out only when the deadline passed. futex_wake wakes
// up to n waiters (none when n <= 0) and returns how many it woke. Native
// words are process-shared (no FUTEX_PRIVATE_FLAG), so a primitive placed in
// shared memory synchronizes processes; only the contended slow path pays for
// that (measured here: a shared wait or wake syscall costs about 25% more than
// a private one, while the uncontended lock/unlock makes no syscall at all).
// Under KEEL_MODEL_RELACY these are Relacy's futex, which explores spurious
// wake-ups and timeouts at every point.
//
// Invariants: PLAT-1 (the only door to the futex syscall for kernel code),
// PLAT-3 (a wake of n <= 0 wakes nobody, natively as in the models).
#pragma once

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/config.hpp"

namespace keel::platform {

using FutexWord = Atomic<std::int32_t>;

enum class WaitResult {
  woken,      // returned after a wake (or spuriously): re-check the condition
  mismatch,   // the word no longer held the expected value
  timed_out,  // the deadline passed
};

inline constexpr int wake_all = INT_MAX;

#if KEEL_MODEL

// Whether a model futex wait may also return spuriously. The harness sets it
// per check: on for random and context-bound searches, off for full searches,
// where a wait loop that may spin spuriously without bound would make the
// state space infinite. Lost wake-ups are found either way (the search covers
// the executions without spurious returns).
inline bool& model_spurious_wakeups() {
  static bool allowed = true;
  return allowed;
}

inline WaitResult futex_wait(FutexWord& word, std::int32_t expected, const Deadline& deadline = Deadline::never(),
                             std::source_location loc = std::source_location::current()) {
  // Relacy's own futex (rl::rl_futex) with the spurious-return switch exposed.
  const rl::debug_info info = detail::info(loc);
  rl::context& c = rl::ctx();
  c.sched();
  c.atomic_thread_fence_seq_cst();
  std::int32_t current;
  {
    rl::preemption_disabler pd(c);
    // Linux compares the word after a full barrier (futex_wait's
    // smp_mb after counting the waiter), so a wait that follows a seq_cst
    // store to another word sees every seq_cst store before it. C++ gives a
    // seq_cst fence then any load that guarantee, but Relacy (2019) lets
    // such a load read a value older than a seq_cst RMW ordered before the
    // fence; a seq_cst load is the same guarantee in a form it keeps.
    current = word.model_object().load(rl::mo_seq_cst, info);
  }
  if (current != expected) return WaitResult::mismatch;
  const rl::unpark_reason r = word.model_object().wait(c, !deadline.is_never(), model_spurious_wakeups(), info);
  if (r == rl::unpark_reason_timeout) return WaitResult::timed_out;
  return WaitResult::woken;
}

inline int futex_wake(FutexWord& word, int n, std::source_location loc = std::source_location::current()) {
  return rl::rl_futex(&word.model_object(), rl::RL_FUTEX_WAKE, n, nullptr, nullptr, 0, detail::info(loc));
}

#else

#endif

}  // namespace keel::platform

#if !KEEL_MODEL
// futex_wait(word, expected, deadline = Deadline::never()) and futex_wake(word, n).
#include "keel/platform/native/futex_linux.hpp"
#endif
