// keel::Timer: run a callable once after an interval unless cancelled first
// (Python's threading.Timer).
//
// Contract: start() launches the timer thread (a second start() throws
// MisuseError, as Python's "threads can only be started once"). After the
// interval the callable runs once on that thread, unless cancel() was called
// first. cancel() is idempotent and a no-op once the callable has started.
// join() waits for the timer thread. The destructor cancels and joins, so a
// Timer never outlives the objects its callable uses. An exception thrown by
// the callable is caught and kept (error()) rather than terminating the
// program.
//
// Invariants: SYNC-11 (the callable runs at most once, and never when cancel()
// returned before it started).
#pragma once

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/thread.hpp"
#include "keel/sync/event.hpp"

namespace keel {

class Timer {
 public:
  template <class Rep, class Period>
  Timer(std::chrono::duration<Rep, Period> interval, std::function<void()> fn)
      : interval_(platform::saturating_nanoseconds(interval)), fn_(std::move(fn)) {
    if (interval_.count() < 0) throw ValueError("keel::Timer: interval must be >= 0");
    if (!fn_) throw ValueError("keel::Timer: no callable");
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();

  void start();
  // Stops the timer if it has not fired yet. Returns true if this call (or an
  // earlier one) prevented the callable from running.
  bool cancel();
  void join();

  // The callable has started (it runs exactly once from then on).
  bool fired() const { return phase_.load(std::memory_order_acquire) == fired_phase; }
  bool cancelled() const { return phase_.load(std::memory_order_acquire) == cancelled_phase; }
  // Set once the timer thread has nothing more to do (fired and returned, or cancelled).
  bool finished() const { return done_.is_set(); }
  // The callable's exception, if it threw (valid after join()).
  std::exception_ptr error() const { return error_; }

 private:
  static constexpr std::int32_t waiting_phase = 0;
  static constexpr std::int32_t fired_phase = 1;
  static constexpr std::int32_t cancelled_phase = 2;

  void run();

  std::chrono::nanoseconds interval_;
  std::function<void()> fn_;
  Event cancel_requested_;
  Event done_;
  // waiting -> fired or waiting -> cancelled, decided by one CAS so cancel and
  // fire cannot both win.
  platform::Atomic<std::int32_t> phase_{waiting_phase};
  platform::Atomic<bool> started_{false};
  platform::Thread thread_;
  std::exception_ptr error_;
};

}  // namespace keel
