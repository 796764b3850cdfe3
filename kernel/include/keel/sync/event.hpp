// keel::Event: a flag threads wait for (Python's threading.Event).
//
// Contract: starts clear. set() sets the flag and wakes every waiter;
// clear() resets it; is_set() reads it. wait() blocks until the flag is set;
// wait_for/wait_until return the flag as it was when they returned (true:
// set; false: the deadline passed while it was clear), as Python's wait
// returns the internal flag. Whatever a thread wrote before set() is visible
// to a waiter that returns true. Works between processes when placed in
// shared memory.
//
// The word: 0 clear; 1 set; 2 clear and a waiter may sleep. Waiters move
// 0 -> 2 before sleeping on 2, so set() (a swap to 1) knows from the old value
// whether a wake syscall is needed. All transitions are on one word, so their
// order is total and no wake can be missed.
//
// Invariants: SYNC-2 (no lost wake-up), SYNC-6 (waiters return true iff set).
#pragma once

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"

namespace keel {

class Event {
 public:
  constexpr Event() noexcept = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void set() {
    // Release pairs with the waiters' acquire loads.
    if (state_.exchange(set_flag, std::memory_order_release) == clear_sleeping) {
      if constexpr (!KEEL_INJECTED(event_set_skip_wake)) platform::futex_wake(state_, platform::wake_all);
    }
  }
  void clear() {
    std::int32_t expected = set_flag;
    // 2 (clear, sleepers) stays 2: they still need a wake from the next set().
    state_.compare_exchange_strong(expected, clear_flag, std::memory_order_relaxed);
  }
  bool is_set() const { return state_.load(std::memory_order_acquire) == set_flag; }

  void wait() { wait_impl(platform::Deadline::never()); }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_impl(platform::Deadline::after(timeout));
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) {
    return wait_impl(platform::Deadline::at(deadline));
  }

 private:
  static constexpr std::int32_t clear_flag = 0;
  static constexpr std::int32_t set_flag = 1;
  static constexpr std::int32_t clear_sleeping = 2;

  bool wait_impl(const platform::Deadline& deadline);

  platform::FutexWord state_{clear_flag};
};

}  // namespace keel
