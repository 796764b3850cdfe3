// keel::Barrier. See keel/sync/barrier.hpp for its states.
#include "keel/sync/barrier.hpp"

namespace keel {

Barrier::Barrier(std::size_t parties, std::function<void()> action,
                 std::optional<std::chrono::nanoseconds> default_timeout)
    : parties_(parties), action_(std::move(action)), default_timeout_(default_timeout) {
  if (parties < 1) throw ValueError("keel::Barrier: parties must be >= 1");
}

std::size_t Barrier::wait() {
  return wait_impl(default_timeout_ ? platform::Deadline::after(*default_timeout_) : platform::Deadline::never());
}

std::size_t Barrier::wait_impl(const platform::Deadline& deadline) {
  LockGuard<Mutex> guard(mutex_);
  // A thread of the next generation waits for the last one to drain.
  cond_.wait([&] {
    const State s = state_.load();
    return s != State::draining && s != State::resetting;
  });
  if (state_.load() == State::broken) throw BrokenBarrierError("keel::Barrier: the barrier is broken");

  const std::size_t index = count_.load();
  count_.store(index + 1);
  const std::size_t last = KEEL_INJECTED(barrier_release_early) ? parties_ - 2 : parties_ - 1;
  try {
    if (index == last) {
      if (action_) action_();
      state_.store(State::draining);
      cond_.notify_all();
    } else {
      const bool released = cond_.wait_deadline(deadline, [&] { return state_.load() != State::filling; });
      if (!released) {
        break_locked();
        throw BrokenBarrierError("keel::Barrier: timed out waiting for the other parties");
      }
      const State s = state_.load();
      if (s == State::broken || s == State::resetting) {
        throw BrokenBarrierError("keel::Barrier: the barrier was broken, aborted or reset while waiting");
      }
    }
  } catch (...) {
    if (index == last && state_.load() == State::filling) break_locked();  // the action threw
    leave_locked();
    throw;
  }
  leave_locked();
  return index;
}

void Barrier::leave_locked() {
  const std::size_t n = count_.load() - 1;
  count_.store(n);
  if (n == 0) {
    const State s = state_.load();
    if (s == State::draining || s == State::resetting) {
      state_.store(State::filling);
      // Arrivals for the next generation sleep in wait_impl's first wait
      // until this refill; only a reused barrier has any.
      if (!KEEL_INJECTED(barrier_refill_skips_notify)) cond_.notify_all();
    }
  }
}

void Barrier::break_locked() {
  state_.store(State::broken);
  // Every waiter: each must leave with BrokenBarrierError (SYNC-8).
  if (KEEL_INJECTED(barrier_break_notifies_one)) {
    cond_.notify(1);
  } else if (!KEEL_INJECTED(barrier_break_skip_notify)) {
    cond_.notify_all();
  }
}

void Barrier::reset() {
  LockGuard<Mutex> guard(mutex_);
  if (count_.load() > 0) {
    // Waiters leave with BrokenBarrierError and the last to leave refills. A
    // draining generation already passed the barrier: let it finish.
    const State s = state_.load();
    if (s == State::filling || s == State::broken) {
      state_.store(State::resetting);
      if (KEEL_INJECTED(barrier_reset_notifies_one)) {
        cond_.notify(1);
      } else {
        cond_.notify_all();
      }
    }
  } else {
    state_.store(State::filling);
  }
}

void Barrier::abort() {
  LockGuard<Mutex> guard(mutex_);
  break_locked();
}

std::size_t Barrier::n_waiting() {
  LockGuard<Mutex> guard(mutex_);
  return state_.load() == State::filling ? count_.load() : 0;
}

bool Barrier::broken() {
  LockGuard<Mutex> guard(mutex_);
  return state_.load() == State::broken;
}

}  // namespace keel
