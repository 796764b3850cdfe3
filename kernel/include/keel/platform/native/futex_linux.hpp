// Native futex backend (Linux), included by keel/platform/futex.hpp in native
// builds. It lives in the shim's own directory because it is the only kernel
// code allowed to call the futex syscall (PLAT-1).
//
// Invariants: PLAT-1 (the only futex syscall in the kernel), PLAT-3 (a wake
// of n <= 0 wakes nobody, as in the models).
#pragma once

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace keel::platform {

static_assert(sizeof(std::atomic<std::int32_t>) == sizeof(std::int32_t), "a futex word is exactly 32 bits");

inline WaitResult futex_wait(FutexWord& word, std::int32_t expected,
                             const Deadline& deadline = Deadline::never()) noexcept {
  timespec ts{};
  const timespec* tsp = nullptr;
  if (!deadline.is_never()) {
    const auto since_epoch = deadline.point().time_since_epoch();
    if (since_epoch.count() < 0) return WaitResult::timed_out;  // time_point::min(): already expired
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    ts.tv_sec = static_cast<time_t>(secs.count());
    ts.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, which is what
  // steady_clock measures on Linux, so re-waiting never stretches a timeout.
  const long r = syscall(SYS_futex, reinterpret_cast<std::int32_t*>(&word.native_object()), FUTEX_WAIT_BITSET, expected,
                         tsp, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (r == 0) return WaitResult::woken;
  switch (errno) {
    case ETIMEDOUT:
      return WaitResult::timed_out;
    case EAGAIN:
      return WaitResult::mismatch;
    default:  // EINTR and anything else: the caller re-checks
      return WaitResult::woken;
  }
}

inline int futex_wake(FutexWord& word, int n) noexcept {
  // Linux's FUTEX_WAKE wakes one waiter when asked for none; Relacy's futex,
  // which the models run, wakes none. A count of zero must mean the same in
  // the code that ships as in the code that is checked.
  if (n <= 0) return 0;
  const long r =
      syscall(SYS_futex, reinterpret_cast<std::int32_t*>(&word.native_object()), FUTEX_WAKE, n, nullptr, nullptr, 0);
  return r < 0 ? 0 : static_cast<int>(r);
}

}  // namespace keel::platform
