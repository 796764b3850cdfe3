// keel::Semaphore and keel::BoundedSemaphore (Python's Semaphore and
// BoundedSemaphore; C++'s counting_semaphore with Python's error rules).
//
// Contract: the value starts at `initial` (negative throws ValueError) and is
// never negative. acquire() takes one unit, blocking while the value is 0;
// try_acquire/try_acquire_for/try_acquire_until return whether a unit was
// taken. release(n) adds n units (n < 1 throws ValueError) and wakes up to n
// sleepers. A BoundedSemaphore's value never exceeds its initial value:
// release beyond it throws ValueError and adds nothing. Not FIFO: a running
// thread may take a released unit before a woken one. Works between processes
// when placed in shared memory.
//
// Protocol: the value is the futex word; sleepers wait on it while it is 0. A
// separate sleeper count lets release skip the wake syscall when nobody
// sleeps. Release (add, then read sleepers) and acquire's slow path
// (announce, then read value) form a store-load pair on two words, so both
// sides use seq_cst: then at least one side sees the other, and no wake is
// lost. (A process killed while asleep in acquire leaves the sleeper count
// raised: later releases then make a harmless wake call each. Correctness is
// unaffected.)
//
// Spinning: acquire's slow path spins briefly before it sleeps, hoping for a
// release from a thread running on another CPU. Each release notes the CPU it
// ran on; a waiter on that same CPU skips the spin and goes straight to
// yielding, since the thread it most likely waits for is then not running
// (two threads sharing one CPU: the spin only burns the time slice the
// releaser needs). The note is a hint read relaxed; no correctness depends on
// it, and under the model checker there is none (current_cpu() is -1).
//
// Invariants: SYNC-2 (no lost wake-up), SYNC-3 (misuse reported, nothing
// added), SYNC-4 (count conservation), SYNC-5 (never above the bound).
#pragma once

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"

namespace keel {

/// Python's threading.Semaphore: a count of permits.
class Semaphore {
 public:
  /// The largest value a Semaphore can hold (release past it is a ValueError).
  static constexpr std::int32_t max_value = std::numeric_limits<std::int32_t>::max();

  /// A semaphore holding `initial` permits (ValueError if negative).
  explicit Semaphore(std::int32_t initial = 1) : Semaphore(initial, max_value) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Takes a permit, blocking until one is free.
  void acquire() {
    if (!try_acquire()) acquire_slow(platform::Deadline::never());
  }
  /// Takes a permit if one is free; never blocks.
  bool try_acquire() {
    std::int32_t v = value_.load(std::memory_order_relaxed);
    while (v > 0) {
      // Acquire pairs with release: the releaser's writes are visible.
      if (value_.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    }
    return false;
  }
  /// Takes a permit, waiting at most `timeout`; whether it took one.
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> timeout) {
    return try_acquire() || acquire_slow(platform::Deadline::after(timeout));
  }
  /// Takes a permit, waiting until `deadline` at most; whether it took one.
  template <class Clock, class Duration>
  bool try_acquire_until(std::chrono::time_point<Clock, Duration> deadline) {
    return try_acquire() || acquire_slow(platform::Deadline::at(deadline));
  }

  /// Adds n >= 1 permits and wakes waiters for them; ValueError (nothing added) past the bound.
  void release(std::int32_t n = 1);

  /// The current value: a snapshot, for statistics and tests.
  std::int32_t value() const { return value_.load(std::memory_order_relaxed); }

 protected:
  /// For BoundedSemaphore: release() refuses to go above bound.
  Semaphore(std::int32_t initial, std::int32_t bound);
  /// The largest value release() may reach.
  std::int32_t bound() const { return bound_; }

 private:
  bool acquire_slow(const platform::Deadline& deadline);

  platform::FutexWord value_;
  platform::Atomic<std::int32_t> sleepers_{0};
  platform::Atomic<std::int32_t> releaser_cpu_{-1};  // the CPU of the latest release, or -1
  std::int32_t bound_;
};

/// Python's BoundedSemaphore: a Semaphore whose value never exceeds its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  /// A semaphore whose value never exceeds `initial`: releasing past it is a ValueError (SYNC-5).
  explicit BoundedSemaphore(std::int32_t initial = 1) : Semaphore(initial, initial) {}
  /// The value release may never exceed.
  std::int32_t limit() const { return bound(); }
};

}  // namespace keel
