// keel::Mutex cold paths. See keel/sync/mutex.hpp for the state machine.
#include "keel/sync/mutex.hpp"

namespace keel {

namespace {
// Pauses a locker spends on a held lock before it sleeps: 20, a fifth of
// the platform's bound (and no more than it: 1 step in the model). The
// sections keel's own code guards (queues, counters) are a few dozen
// instructions, so a holder that has not let go within 20 pauses is likely
// preempted or in a long section, where sleeping costs less; and until
// then each poll of the word takes its cache line away from the holder,
// whose unlock must take it back. Two threads hammering one lock
// (sync_bench contended/0, 2026-12-05, seven runs each): 30.0 to 31.5 ns
// per critical section with 20, against std::mutex's 32.4 to 34.0; 35.4 to
// 37.9 with 100, against 32.1 to 33.7. The thread pool's and the process
// pool's rows did not move beyond their noise.
constexpr int lock_spin_limit = platform::spin_limit < 20 ? platform::spin_limit : 20;
}  // namespace

std::int32_t Mutex::spin() {
  // Spin only while the lock is held with nobody asleep: a short critical
  // section then ends without a sleep/wake round trip. Once sleepers exist
  // (state 2), spinning only delays us joining them.
  int budget = lock_spin_limit;
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
