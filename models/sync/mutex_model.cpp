// Relacy models of keel::Mutex: the real lock code, through the shim.
//
// KEEL-TWIN mutex_unlock_skip_wake mutex.exclusion.2t
// KEEL-TWIN mutex_lock_relaxed mutex.exclusion.2t
// KEEL-TWIN mutex_woken_marks_locked mutex.exclusion.3t
#include "harness.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/mutex.hpp"

namespace {

// SYNC-1, SYNC-2: N threads each increment a plain (race-checked) counter
// under the lock. A data race means mutual exclusion or its happens-before
// failed; a deadlock means a wake-up was lost; the final count checks no
// increment was lost.
template <int Threads, int Rounds>
struct MutexCounter : rl::test_suite<MutexCounter<Threads, Rounds>, Threads> {
  keel::Mutex m;
  keel::platform::Var<int> counter;

  void thread(unsigned) {
    for (int i = 0; i < Rounds; ++i) {
      m.lock();
      counter.store(counter.load() + 1);
      m.unlock();
    }
  }
  void after() { RL_ASSERT(counter.load() == Threads * Rounds); }
};

// SYNC-1 with timed acquisition: a timed-out try_lock_for must not hold the
// lock, and a successful one must exclude the others.
struct MutexTimed : rl::test_suite<MutexTimed, 2> {
  keel::Mutex m;
  keel::platform::Var<int> counter;
  rl::atomic<int> acquired{0};

  void thread(unsigned idx) {
    if (idx == 0) {
      m.lock();
      counter.store(counter.load() + 1);
      m.unlock();
      acquired($).fetch_add(1, rl::mo_relaxed);
    } else if (m.try_lock_for(std::chrono::milliseconds(1))) {
      counter.store(counter.load() + 1);
      m.unlock();
      acquired($).fetch_add(1, rl::mo_relaxed);
    }
  }
  void after() { RL_ASSERT(counter.load() == acquired($).load(rl::mo_relaxed)); }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<MutexCounter<2, 2>>("mutex.exclusion.2t", "SYNC-1,SYNC-2", full());
  check<MutexTimed>("mutex.timed.2t", "SYNC-1,SYNC-2", full());
  check<MutexCounter<3, 2>>("mutex.exclusion.3t", "SYNC-1,SYNC-2", random(200000));
  // make verify-deep: the 3-thread mutex exhaustively up to 3 preemptions.
  deep_check<MutexCounter<3, 2>>("mutex.exclusion.3t", "SYNC-1,SYNC-2", random(1000000));
  deep_check<MutexCounter<3, 2>>("mutex.exclusion.3t", "SYNC-1,SYNC-2", bounded(3));
  return exit_code();
}
