// Relacy models of keel::Semaphore and keel::BoundedSemaphore: the real code,
// through the shim.
//
// KEEL-TWIN semaphore_skip_wake semaphore.signal.2t
// KEEL-TWIN semaphore_relaxed_sleeper_check semaphore.signal.2t
// KEEL-TWIN bsem_check_then_add bounded-semaphore.race.2t
#include "harness.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/semaphore.hpp"

namespace {

// SYNC-2, SYNC-4: a consumer blocks on an empty semaphore until a producer
// releases; the producer's plain write is visible; the count ends at 0.
struct SignalWait : rl::test_suite<SignalWait, 2> {
  keel::Semaphore s{0};
  keel::platform::Var<int> payload;

  void thread(unsigned idx) {
    if (idx == 0) {
      payload.store(7);
      s.release();
    } else {
      s.acquire();
      RL_ASSERT(payload.load() == 7);
    }
  }
  void after() { RL_ASSERT(s.value() == 0); }
};

// SYNC-4: two threads acquire and release a binary semaphore used as a lock;
// the critical section is exclusive and the count is conserved.
struct BinaryLock : rl::test_suite<BinaryLock, 2> {
  keel::Semaphore s{1};
  keel::platform::Var<int> counter;

  void thread(unsigned) {
    s.acquire();
    counter.store(counter.load() + 1);
    s.release();
  }
  void after() { RL_ASSERT(counter.load() == 2 && s.value() == 1); }
};

// SYNC-2, SYNC-4 with three threads: two consumers, one producer releasing 2
// at once; both consumers must be woken (release(n) wakes n), count ends 0.
struct ReleaseN : rl::test_suite<ReleaseN, 3> {
  keel::Semaphore s{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      s.release(2);
    } else {
      s.acquire();
    }
  }
  void after() { RL_ASSERT(s.value() == 0); }
};

// SYNC-4 with timeouts: a timed acquire either takes a unit or leaves the count
// untouched; units are conserved whichever way the timeout races the release.
struct TimedAcquire : rl::test_suite<TimedAcquire, 2> {
  keel::Semaphore s{0};
  rl::atomic<int> taken{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      s.release();
    } else if (s.try_acquire_for(std::chrono::milliseconds(1))) {
      taken($).store(1, rl::mo_relaxed);
    }
  }
  void after() { RL_ASSERT(s.value() + taken($).load(rl::mo_relaxed) == 1); }
};

// SYNC-5, SYNC-3: a BoundedSemaphore(2) at value 1 gets two racing releases:
// exactly one succeeds, the other is rejected, and the value never exceeds 2.
struct BoundedRace : rl::test_suite<BoundedRace, 2> {
  keel::BoundedSemaphore s{2};
  rl::atomic<int> rejected{0};
  void before() { s.acquire(); }
  void thread(unsigned) {
    try {
      s.release();
    } catch (const keel::ValueError&) {
      rejected($).fetch_add(1, rl::mo_relaxed);
    }
    RL_ASSERT(s.value() <= 2);
  }
  void after() { RL_ASSERT(s.value() == 2 && rejected($).load(rl::mo_relaxed) == 1); }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<SignalWait>("semaphore.signal.2t", "SYNC-2,SYNC-4", full());
  check<BinaryLock>("semaphore.binary-lock.2t", "SYNC-4", full());
  check<TimedAcquire>("semaphore.timed.2t", "SYNC-4", full());
  check<BoundedRace>("bounded-semaphore.race.2t", "SYNC-3,SYNC-5", full());
  check<ReleaseN>("semaphore.release-n.3t", "SYNC-2,SYNC-4", random(100000));
  // make verify-deep.
  // BoundedRace is already a full search in make verify; it runs here too so
  // that its twin is caught in the deep table.
  deep_check<BoundedRace>("bounded-semaphore.race.2t", "SYNC-3,SYNC-5", full());
  deep_check<ReleaseN>("semaphore.release-n.3t", "SYNC-2,SYNC-4", random(1000000));
  deep_check<ReleaseN>("semaphore.release-n.3t", "SYNC-2,SYNC-4", bounded(1));
  return exit_code();
}
