// keel::Timer: run a callable once after an interval unless cancelled first
// (Python's threading.Timer).
//
// Contract: start() launches the timer thread (a second start() throws
// MisuseError, as Python's "threads can only be started once"). After the
// interval the callable runs once on that thread, unless cancel() was called
// first. cancel() is idempotent and a no-op once the callable has started.
// join() waits for the timer thread; any number of threads may join, also
// while start() is still running on another (the thread handle is published
// before anyone joins it, and joiners take turns). join() before start()
// returns at once (there is nothing to wait for). join() from the timer's own
// callable would wait for itself: it throws MisuseError (Python's
// RuntimeError "cannot join current thread"), which, if the callable lets it
// escape, is kept as error(). The destructor cancels and joins, so a Timer
// never outlives the objects its callable uses; from the timer's own callable
// (the callable deletes its Timer) it cannot join, so it detaches the thread,
// which then touches nothing of the Timer (an exception the callable throws
// after that has no Timer to be kept in and is dropped). An exception thrown
// by the callable is caught and kept (error()) rather than terminating the
// program.
//
// Invariants: SYNC-11 (the callable runs at most once, and never when cancel()
// returned before it started), also over restarts (SYNC-14: a watchdog
// cancels its Timer and starts a new one, round after round, with the
// superseded timers still firing; a repeated cancel() keeps its answer, and
// join() returns only once the thread ended, cancelled or not); LIFE-10
// (join from the timer's own thread is a MisuseError, never a race on the
// handle or a self-join; a Timer destroyed by its own callable is never
// touched again).
#pragma once

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/thread.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {

/// Python's threading.Timer: runs a callable once, on its own thread, after an interval.
class Timer {
 public:
  /// A timer that runs fn once, `interval` after start() (ValueError if negative or fn is empty).
  template <class Rep, class Period>
  Timer(std::chrono::duration<Rep, Period> interval, std::function<void()> fn)
      : interval_(platform::saturating_nanoseconds(interval)), fn_(std::move(fn)) {
    if (interval_.count() < 0) throw ValueError("keel::Timer: interval must be >= 0");
    if (!fn_) throw ValueError("keel::Timer: no callable");
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  /// Cancels a timer that has not fired, and joins its thread (unless fn destroys its own timer).
  ~Timer();

  /// Throws MisuseError if called twice.
  void start();
  /// Stops the timer if it has not fired yet. Returns true if this call (or an
  /// earlier one) prevented the callable from running.
  bool cancel();
  /// Waits until the timer thread ended. MisuseError from the timer's own thread.
  void join();

  /// The callable has started (it runs exactly once from then on).
  /// Acquire: who sees the callable started also sees what preceded start().
  bool fired() const {
    const auto order = KEEL_INJECTED(timer_fired_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire;
    return phase_.load(order) == fired_phase;
  }
  /// Whether cancel() stopped it before the callable started. No order: a
  /// cancel publishes nothing (see cancel()).
  bool cancelled() const { return phase_.load(std::memory_order_relaxed) == cancelled_phase; }
  /// Set once the timer thread has nothing more to do (fired and returned, or cancelled).
  bool finished() const { return done_.is_set(); }
  /// The callable's exception, if it threw (valid after join()).
  std::exception_ptr error() const { return error_; }

 private:
  static constexpr std::int32_t waiting_phase = 0;
  static constexpr std::int32_t fired_phase = 1;
  static constexpr std::int32_t cancelled_phase = 2;

  void run();
  bool on_own_thread() const;
  void publish();
  bool wait_published();  // false: not started

  std::chrono::nanoseconds interval_;
  std::function<void()> fn_;  // moved out by the timer thread before it calls it
  Event cancel_requested_;
  Event done_;
  // waiting -> fired or waiting -> cancelled, decided by one CAS so cancel and
  // fire cannot both win.
  platform::Atomic<std::int32_t> phase_{waiting_phase};
  // not_started -> starting (start() won; thread_ being written) ->
  // published (thread_ written, and start() touches *this no more). A thread
  // that must read thread_ waits for published, marking starting_waited so
  // start() wakes it. Joiners and the timer thread (before its callable may
  // delete the Timer) wait for it.
  static constexpr std::int32_t not_started = 0;
  static constexpr std::int32_t starting = 1;
  static constexpr std::int32_t starting_waited = 2;
  static constexpr std::int32_t published = 3;
  platform::FutexWord start_state_{not_started};
  Mutex join_lock_;  // joiners take turns on thread_
  platform::Thread thread_;
  // thread_'s accesses, for the model: the handle is plain data published by
  // start_state_ (LIFE-10), which Relacy sees only through this mark.
  [[no_unique_address]] platform::RaceMark thread_mark_;
  // The timer thread's id, stored before the callable runs (0 until then):
  // "am I the timer thread?"
  platform::Atomic<std::uint64_t> runner_{0};
  // Points at a flag on the timer thread's stack while the callable runs; the
  // destructor, called by the callable, sets it so the thread lets go of *this.
  // Read and written only by the timer thread.
  bool* destroyed_flag_ = nullptr;
  std::exception_ptr error_;
};

}  // namespace keel
