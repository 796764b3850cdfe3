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
// The word: bit 0 is the flag, bit 1 says a waiter may sleep, bits 2-31 count
// the clear -> set transitions (the generation). A waiter sleeps on the exact
// word it saw, with bit 1 set, so set() (which bumps the generation) always
// changes the word and knows from bit 1 whether a wake syscall is needed. A
// waiter that wakes to a changed generation returns true even if clear()
// already ran, as Python's Event.wait does: the event was set while it waited.
// All transitions are on one word, so their order is total and no wake can be
// missed. (The generation wraps after 2^30 sets; a waiter would have to sleep
// through exactly that many to be confused.)
//
// Invariants: SYNC-2 (no lost wake-up), SYNC-6 (waiters return true iff the
// event was set during their wait).
#pragma once

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"

namespace keel {

/// Python's threading.Event: a flag that threads can wait for.
class Event {
 public:
  /// An event that is not set.
  constexpr Event() noexcept = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  /// Sets the flag and wakes every waiter.
  void set();
  /// Clears the flag: later waits block until the next set().
  void clear() {
    std::int32_t v = state_.load(std::memory_order_relaxed);
    if (KEEL_INJECTED(event_clear_blind_store)) {
      // Planted bug: check, then store what was seen without the flag: a
      // clear and a set() (with its sleeper mark) between the two are undone.
      if ((v & flag_bit) != 0) state_.store(v & ~flag_bit, std::memory_order_relaxed);
      return;
    }
    // Keep the generation; set() already cleared the sleeper bit.
    while ((v & flag_bit) != 0 &&
           !state_.compare_exchange_weak(v, v & ~flag_bit, std::memory_order_relaxed, std::memory_order_relaxed)) {
    }
  }
  /// Whether the flag is set; a true answer sees what the setter wrote before set().
  bool is_set() const {
    const auto order = KEEL_INJECTED(event_is_set_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire;
    return (state_.load(order) & flag_bit) != 0;
  }
  /// A snapshot: true when some thread may be asleep in wait (for tests and
  /// diagnostics; it may stay true briefly after the last waiter timed out).
  bool has_waiters() const { return (state_.load(std::memory_order_relaxed) & sleepers_bit) != 0; }

  /// Blocks until the flag is set.
  void wait() { wait_impl(platform::Deadline::never()); }
  /// Blocks until the flag is set or `timeout` passes; returns whether it is set.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_impl(platform::Deadline::after(timeout));
  }
  /// Blocks until the flag is set or `deadline` passes; returns whether it is set.
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) {
    return wait_impl(platform::Deadline::at(deadline));
  }

 private:
  static constexpr std::int32_t flag_bit = 1;
  static constexpr std::int32_t sleepers_bit = 2;
  static constexpr std::int32_t generation_one = 4;

  static constexpr std::int32_t generation_of(std::int32_t word) { return word & ~(flag_bit | sleepers_bit); }
  // Whether `word` shows the event set, or set (and maybe cleared) since the
  // waiter saw `generation`: either way the waiter returns true.
  static constexpr bool set_since(std::int32_t word, std::int32_t generation) {
    return (word & flag_bit) != 0 || generation_of(word) != generation;
  }

  bool wait_impl(const platform::Deadline& deadline);

  platform::FutexWord state_{0};
};

}  // namespace keel
