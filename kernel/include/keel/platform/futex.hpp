// keel::platform futex: wait on and wake a 32-bit word.
//
// Contract: futex_wait(word, expected, deadline) blocks only while word ==
// expected; it may return early for any reason (a wake, a signal, a spurious
// wake-up, a changed value), so callers always re-check their condition in a
// loop. It returns timed_out only when the deadline passed. futex_wake wakes up
// to n waiters and returns how many it woke. Native words are process-shared
// (no FUTEX_PRIVATE_FLAG), so a primitive placed in shared memory synchronizes
// processes; only the contended slow path pays for that. Under
// KEEL_MODEL_RELACY these are Relacy's futex, which explores spurious wake-ups
// and timeouts at every point.
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

inline WaitResult futex_wait(FutexWord& word, std::int32_t expected, const Deadline& deadline = Deadline::never(),
                             std::source_location loc = std::source_location::current()) {
  static const timespec some_timeout{};  // Relacy only looks at whether it is null
  const int r = rl::rl_futex(&word.model_object(), rl::RL_FUTEX_WAIT, expected,
                             deadline.is_never() ? nullptr : &some_timeout, nullptr, 0, detail::info(loc));
  if (r == rl::RL_ETIMEDOUT) return WaitResult::timed_out;
  if (r == rl::RL_EWOULDBLOCK) return WaitResult::mismatch;
  return WaitResult::woken;
}

inline int futex_wake(FutexWord& word, int n, std::source_location loc = std::source_location::current()) {
  return rl::rl_futex(&word.model_object(), rl::RL_FUTEX_WAKE, n, nullptr, nullptr, 0, detail::info(loc));
}

#else

WaitResult futex_wait(FutexWord& word, std::int32_t expected, const Deadline& deadline = Deadline::never()) noexcept;
int futex_wake(FutexWord& word, int n) noexcept;

#endif

}  // namespace keel::platform
