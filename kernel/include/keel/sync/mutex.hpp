// keel::Mutex: a non-recursive lock in one 32-bit futex word (Python's Lock).
//
// Contract: lock/try_lock/try_lock_for/try_lock_until/unlock with the standard
// Lockable and TimedLockable requirements, so std::scoped_lock and
// std::unique_lock work. As with Python's Lock, any thread may release a held
// Mutex; unlocking an unlocked Mutex throws LockNotHeldError and leaves it
// unlocked. Not fair: a running thread may take the lock ahead of a woken one
// (barging), which is what keeps the uncontended path at one CAS and one swap.
// Works between processes when placed in shared memory (the word is all the
// state, and the futex is not process-private). The word records no owner, so
// a process that dies holding it leaves it locked for good: between processes
// that may die, use keel::RobustMutex (keel/process/robust_mutex.hpp).
//
// States of the word (after Rust std's futex mutex):
//   0 unlocked; 1 locked, nobody sleeping; 2 locked, sleepers may exist.
//   lock:   0 -> 1 by CAS (fast path); otherwise swap in 2 until the swap
//           returns 0, sleeping on the word while it holds 2.
//   unlock: swap in 0; if it held 2, wake one sleeper.
//
// Invariants: SYNC-1 (mutual exclusion), SYNC-2 (no lost wake-up),
// SYNC-3 (misuse is reported, state unchanged). See proofs/INVARIANTS.md.
#pragma once

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/thread.hpp"

namespace keel {

/// A futex mutex (Python's Lock): not recursive, Lockable and TimedLockable.
class KEEL_CAPABILITY("mutex") Mutex {
 public:
  /// An unlocked mutex; constant-initialised, so a global one needs no start-up order.
  constexpr Mutex() noexcept = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  /// Blocks until the calling thread holds the lock.
  void lock() KEEL_ACQUIRE() {
    std::int32_t expected = unlocked;
    // Acquire pairs with unlock's release: the previous holder's writes are visible.
    const auto order = KEEL_INJECTED(mutex_lock_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire;
    if (KEEL_UNLIKELY(!state_.compare_exchange_strong(expected, locked, order, std::memory_order_relaxed))) {
      lock_contended(platform::Deadline::never());
    }
  }

  /// Takes the lock if it is free; never blocks.
  bool try_lock() KEEL_TRY_ACQUIRE(true) {
    std::int32_t expected = unlocked;
    return state_.compare_exchange_strong(expected, locked, std::memory_order_acquire, std::memory_order_relaxed);
  }

  /// Takes the lock, waiting at most `timeout`; whether it was taken.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) KEEL_TRY_ACQUIRE(true) {
    return try_lock() || lock_contended(platform::Deadline::after(timeout));
  }

  /// Takes the lock, waiting until `deadline` at most; whether it was taken.
  template <class Clock, class Duration>
  bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) KEEL_TRY_ACQUIRE(true) {
    return try_lock() || lock_contended(platform::Deadline::at(deadline));
  }

  /// Releases the lock and wakes one waiter; LockNotHeldError on an unlocked mutex (SYNC-3).
  void unlock() KEEL_RELEASE() {
    // Release pairs with the next locker's acquire.
    const std::int32_t prev = state_.exchange(unlocked, std::memory_order_release);
    if (KEEL_UNLIKELY(prev != locked)) unlock_slow(prev);
  }

  /// True while some thread (or process) holds the lock. A snapshot only:
  /// useful for assertions and for Condition's "lock must be held" check.
  bool is_locked() const { return state_.load(std::memory_order_relaxed) != unlocked; }

 private:
  static constexpr std::int32_t unlocked = 0;
  static constexpr std::int32_t locked = 1;
  static constexpr std::int32_t contended = 2;

  // Cold path: spin briefly, then sleep until the lock is ours or the deadline
  // passes. Returns whether the lock was taken.
  bool lock_contended(const platform::Deadline& deadline);
  void unlock_slow(std::int32_t prev);
  std::int32_t spin();

  platform::FutexWord state_{unlocked};
};

/// The scoped guard kernel code uses (std::scoped_lock lives in `<mutex>`, which
/// kernel code may not include). Works with any Lockable.
template <class L>
class KEEL_TSA(scoped_lockable) LockGuard {
 public:
  /// Locks `l` for this guard's lifetime.
  explicit LockGuard(L& l) KEEL_ACQUIRE(l) : l_(l) { l_.lock(); }
  /// Unlocks it.
  ~LockGuard() KEEL_RELEASE() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  L& l_;
};

}  // namespace keel
