// keel::Mutex cold paths. See keel/sync/mutex.hpp for the state machine.
#include "keel/sync/mutex.hpp"

namespace keel {

std::int32_t Mutex::spin() {
  // Spin only while the lock is held with nobody asleep: a short critical
  // section then ends without a sleep/wake round trip. Once sleepers exist
  // (state 2), spinning only delays us joining them.
  int budget = platform::spin_limit;
  for (;;) {
    const std::int32_t s = state_.load(std::memory_order_relaxed);
    if (s != locked || budget-- == 0) return s;
    platform::spin_pause();
  }
}

bool Mutex::lock_contended(const platform::Deadline& deadline) {
  std::int32_t s = spin();
  if (s == unlocked) {
    // Nobody sleeps: take it as 'locked' so our unlock needs no wake.
    if (state_.compare_exchange_strong(s, locked, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
  for (bool slept = false;; slept = true) {
    // Taking the lock through 'contended' is conservative: we cannot know
    // whether others sleep, so our unlock will wake one if any do. (A woken
    // thread that took it as 'locked' would strand the remaining sleepers.)
    const std::int32_t mark = KEEL_INJECTED(mutex_woken_marks_locked) && slept ? locked : contended;
    if (s != contended && state_.exchange(mark, std::memory_order_acquire) == unlocked) return true;
    if (platform::futex_wait(state_, contended, deadline) == platform::WaitResult::timed_out) {
      // The word may stay 'contended' though we leave: that costs at most one
      // spare wake later, while clearing it could strand a real sleeper.
      return false;
    }
    s = spin();
  }
}

void Mutex::unlock_slow(std::int32_t prev) {
  if (prev == unlocked) {
    // The swap stored 'unlocked' over 'unlocked': nothing changed.
    throw LockNotHeldError("keel::Mutex::unlock: the mutex is not locked");
  }
  if (!KEEL_INJECTED(mutex_unlock_skip_wake)) {
    platform::futex_wake(state_, 1);
  }
}

}  // namespace keel
