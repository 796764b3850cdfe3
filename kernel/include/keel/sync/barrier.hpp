// keel::Barrier: a fixed number of threads meet before any goes on (Python's
// threading.Barrier).
//
// Contract: wait() blocks until `parties` threads have called it, then all
// return; each gets a distinct arrival index in [0, parties), in arrival
// order. The optional action runs once per generation, in the last arriving
// thread, before any thread is released; if it throws, the barrier breaks and
// that thread gets the action's exception. A wait whose timeout (its own, or
// the barrier's default) passes breaks the barrier. Once broken, every waiter
// and every later arrival gets BrokenBarrierError until reset(). abort()
// breaks it; reset() returns it to the empty state, and threads waiting at
// that moment get BrokenBarrierError. The barrier is reusable: a thread
// arriving for the next generation waits until the previous one has drained.
// As in Python, the action runs while the barrier's own lock is held, so an
// action must not call this barrier's methods (that would deadlock).
//
// States (guarded by the mutex): filling -> draining (last arrival) ->
// filling (when the last thread of the generation leaves); broken and
// resetting likewise end when the last waiter leaves.
//
// Invariants: SYNC-7 (no thread leaves a generation before all parties
// arrived), SYNC-8 (a break reaches every waiter).
#pragma once

#include "keel/error.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {

/// Python's threading.Barrier: parties threads wait until all have arrived.
class Barrier {
 public:
  /// parties < 1 throws ValueError. A default timeout applies to wait(); as
  /// every timeout (keel/timeout.hpp), one <= 0 does not wait: unless this
  /// arrival completes the generation, it breaks the barrier at once.
  explicit Barrier(std::size_t parties, std::function<void()> action = {},
                   std::optional<std::chrono::nanoseconds> default_timeout = std::nullopt);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  /// Returns the arrival index; throws BrokenBarrierError when broken.
  std::size_t wait();
  /// wait(), breaking the barrier if the generation is not complete within `timeout`.
  template <class Rep, class Period>
  std::size_t wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_impl(platform::Deadline::after(timeout));
  }
  /// wait(), breaking the barrier if the generation is not complete by `deadline`.
  template <class Clock, class Duration>
  std::size_t wait_until(std::chrono::time_point<Clock, Duration> deadline) {
    return wait_impl(platform::Deadline::at(deadline));
  }

  /// Returns the barrier to its empty state; threads waiting now get BrokenBarrierError.
  void reset();
  /// Breaks the barrier: current and later waits throw BrokenBarrierError until reset().
  void abort();

  /// The number of threads each generation needs.
  std::size_t parties() const { return parties_; }
  /// The number of threads waiting now (a snapshot).
  std::size_t n_waiting();
  /// Whether the barrier is broken.
  bool broken();

 private:
  enum class State { filling, draining, resetting, broken };

  std::size_t wait_impl(const platform::Deadline& deadline);
  void break_locked();
  void leave_locked();

  const std::size_t parties_;
  std::function<void()> action_;
  std::optional<std::chrono::nanoseconds> default_timeout_;
  Mutex mutex_;
  Condition cond_{mutex_};
  platform::Var<State> state_{State::filling};
  platform::Var<std::size_t> count_{0};  // threads inside wait() for this generation
};

}  // namespace keel
