// keel::Timer. See keel/sync/timer.hpp.
//
// Who touches what (LIFE-10): start() writes thread_ and then publishes it
// (start_state_ = published), its last touch of *this. Joiners and the timer
// thread read thread_ only after that, and joiners take join_lock_ in turn.
// Before the callable, the timer thread records its id in runner_, so join()
// and the destructor can tell they run on it, and it calls the callable from a local
// copy, with destroyed_flag_ pointing at a flag on its own stack that the
// destructor (called by the callable) sets, after which the thread returns
// without touching *this.
#include "keel/sync/timer.hpp"

namespace keel {

Timer::~Timer() {
  // Only the callable runs user code on the timer thread: unless it started,
  // this is not the timer thread.
  const bool callable_started = !cancel();  // false only once the callable started
  if (callable_started && on_own_thread()) {
    // The callable destroys its own Timer: a thread cannot join itself. The
    // handle was published before the callable ran (run() waited for it).
    thread_mark_.written();
    thread_.detach();
    if (destroyed_flag_ != nullptr) *destroyed_flag_ = true;
    return;
  }
  // No wait for the handle, no join_lock_: nobody may use a Timer while it is
  // destroyed, so a start() or join() on another thread happened before.
  thread_mark_.written();
  if (thread_.joinable()) thread_.join();
}

void Timer::start() {
  std::int32_t expected = not_started;
  // relaxed: only who wins matters (the loser throws and reads nothing);
  // the winner's writes are published by publish()'s release.
  if (KEEL_INJECTED(timer_start_check_then_set)) {
    // Planted bug: look, then claim; two starts can both see not_started.
    if (start_state_.load(std::memory_order_relaxed) != not_started) {
      throw MisuseError("keel::Timer::start: already started");
    }
    start_state_.store(starting, std::memory_order_relaxed);
  } else if (!start_state_.compare_exchange_strong(expected, starting, std::memory_order_relaxed,
                                                   std::memory_order_relaxed)) {
    throw MisuseError("keel::Timer::start: already started");
  }
  try {
    thread_.start([this] { run(); });
    thread_mark_.written();
  } catch (...) {
    // No thread: nothing will ever run; joiners must not wait for one.
    done_.set();
    publish();
    throw;
  }
  publish();  // start()'s last touch of *this
}

void Timer::publish() {
  // Release: thread_ is written before anyone reads it (no acquire: the
  // waiters publish nothing through the word). After the exchange only the
  // word's address is used (the wake), so a callable that deletes the Timer
  // as soon as it sees `published` frees nothing start() reads.
  if (start_state_.exchange(published, std::memory_order_release) == starting_waited) {
    platform::futex_wake(start_state_, KEEL_INJECTED(timer_publish_wakes_one) ? 1 : platform::wake_all);
  }
}

bool Timer::wait_published() {
  std::int32_t s = start_state_.load(KEEL_INJECTED(timer_wait_published_relaxed) ? std::memory_order_relaxed
                                                                                 : std::memory_order_acquire);
  if (s == not_started) return false;
  while (s != published) {
    if (s == starting && !start_state_.compare_exchange_strong(s, starting_waited, std::memory_order_acquire,
                                                               std::memory_order_acquire)) {
      continue;  // s now holds the new value
    }
    platform::futex_wait(start_state_, starting_waited);
    s = start_state_.load(std::memory_order_acquire);
  }
  return true;
}

bool Timer::cancel() {
  cancel_requested_.set();
  std::int32_t expected = waiting_phase;
  // Acquire on failure: a cancel() that finds the timer fired (and returns
  // false) sees what preceded start(), as fired() does (SYNC-15). (The cancel
  // event's futex wake above already orders it on Linux: the fired timer
  // thread slept on that word. See proofs/mutate-equivalent.txt.) A win
  // publishes nothing (cancelled() promises no order), but C++11 and Relacy
  // forbid a success order weaker than the failure order.
  const bool won =
      phase_.compare_exchange_strong(expected, cancelled_phase, std::memory_order_acquire, std::memory_order_acquire);
  // relaxed: only whether done_ is set here depends on the value (an Event,
  // ordered by itself); cancel() reads nothing start() wrote.
  if (won && start_state_.load(std::memory_order_relaxed) == not_started) done_.set();
  // Idempotent: a repeated cancel() of a timer an earlier one stopped must
  // not read as "too late, it fired" (a watchdog that cancels every timer it
  // still holds on each restart would count timeouts that never happened).
  if (KEEL_INJECTED(timer_cancel_reports_own_win)) return won;
  return won || expected == cancelled_phase;
}

bool Timer::on_own_thread() const {
  // Ids are never 0, and only the timer thread stores its own. relaxed:
  // only the timer thread can find its own id here, and it reads its own
  // earlier store, so no order is needed.
  return runner_.load(std::memory_order_relaxed) == platform::current_thread_id();
}

void Timer::join() {
  if (on_own_thread()) {
    throw MisuseError("keel::Timer::join: called from the timer's own thread, it would wait for itself");
  }
  // Not started: nothing to wait for. Started: start() may still be writing
  // thread_ on another thread.
  if (!wait_published()) return;
  // A cancelled timer's thread may still be waking from its interval:
  // "nothing left to run" is not "ended", and a caller may free what the
  // Timer uses once join returns.
  if (KEEL_INJECTED(timer_join_skips_cancelled)) {
    if (cancelled()) return;
  }
  LockGuard g(join_lock_);
  thread_mark_.written();  // join() changes the handle
  if (thread_.joinable()) thread_.join();
}

void Timer::run() {
  // wait_for returns true when cancel() set the event (before or as the
  // interval ran out): the timer was cancelled while waiting, and cancel()'s
  // CAS, which then finds phase_ still waiting, settles it. Only an expiry
  // with no cancel seen races cancel() through the phase CAS below. Had this
  // thread also tried the CAS after a cancel woke it, it could win before
  // cancel()'s own CAS and run the callable because of the cancel (a
  // 1000-year Timer fired as it was cancelled, under load).
  const bool cancel_seen = cancel_requested_.wait_for(interval_);
  std::int32_t expected = waiting_phase;
  bool fire = false;
  if (KEEL_INJECTED(timer_fire_ignores_cancel)) {
    phase_.store(fired_phase, std::memory_order_release);
    fire = true;
  } else if (!cancel_seen || KEEL_INJECTED(timer_fire_on_cancel_wake)) {
    // Release: fired() (and a cancel() that loses) sees what preceded
    // start() (SYNC-15). No acquire: the callable and what it uses were
    // published to this thread by its start, and a loss reads nothing.
    fire = phase_.compare_exchange_strong(expected, fired_phase, std::memory_order_release, std::memory_order_relaxed);
  }
  if (fire) {
    // The callable may join or delete this Timer: it must find out that it
    // runs on the timer thread, and start() must be done with the Timer.
    runner_.store(platform::current_thread_id(), std::memory_order_relaxed);  // see on_own_thread()
    wait_published();
    // A local copy: the callable may destroy the Timer, and fn_ with it.
    std::function<void()> fn = std::move(fn_);
    bool destroyed = false;
    destroyed_flag_ = &destroyed;
    std::exception_ptr error;
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
    if (destroyed) return;  // the Timer is gone: touch nothing of it
    destroyed_flag_ = nullptr;
    error_ = error;
  }
  done_.set();
}

}  // namespace keel
