// Relacy models of keel::Barrier (built on keel::Mutex and keel::Condition):
// the real code, through the shim.
//
// KEEL-TWIN barrier_release_early
// KEEL-TWIN barrier_break_skip_notify
#include "harness.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/barrier.hpp"

namespace {

// SYNC-7: no thread leaves the barrier before all parties arrived; arrival
// indices are distinct.
template <int Parties>
struct AllArrive : rl::test_suite<AllArrive<Parties>, Parties> {
  keel::Barrier b{static_cast<std::size_t>(Parties)};
  rl::atomic<int> arrived{0};
  rl::atomic<int> index_mask{0};
  void thread(unsigned) {
    arrived($).fetch_add(1, rl::mo_relaxed);
    const std::size_t i = b.wait();
    RL_ASSERT(arrived($).load(rl::mo_relaxed) == Parties);
    RL_ASSERT(i < static_cast<std::size_t>(Parties));
    const int bit = 1 << i;
    RL_ASSERT((index_mask($).fetch_or(bit, rl::mo_relaxed) & bit) == 0);
  }
};

// SYNC-8: one party's wait times out (possibly) while the other waits without
// a timeout: either both pass, or both get BrokenBarrierError; the untimed
// waiter is never left waiting (that would be a deadlock).
struct TimeoutBreaksAll : rl::test_suite<TimeoutBreaksAll, 2> {
  keel::Barrier b{2};
  rl::atomic<int> broken{0};
  rl::atomic<int> passed{0};
  void thread(unsigned idx) {
    try {
      if (idx == 0) {
        b.wait_for(std::chrono::milliseconds(1));
      } else {
        b.wait();
      }
      passed($).fetch_add(1, rl::mo_relaxed);
    } catch (const keel::BrokenBarrierError&) {
      broken($).fetch_add(1, rl::mo_relaxed);
    }
  }
  void after() {
    const int p = passed($).load(rl::mo_relaxed);
    const int k = broken($).load(rl::mo_relaxed);
    RL_ASSERT((p == 2 && k == 0) || (p == 0 && k == 2));
  }
};

// SYNC-8 with abort racing a waiter: the waiter gets BrokenBarrierError
// (never hangs), and the barrier reports broken.
struct AbortReachesWaiter : rl::test_suite<AbortReachesWaiter, 2> {
  keel::Barrier b{2};
  void thread(unsigned idx) {
    if (idx == 0) {
      b.abort();
    } else {
      bool threw = false;
      try {
        b.wait();
      } catch (const keel::BrokenBarrierError&) {
        threw = true;
      }
      RL_ASSERT(threw);
    }
  }
  void after() { RL_ASSERT(b.broken()); }
};

}  // namespace

int main() {
  using namespace keel::model;
  // Barrier runs on Mutex + Condition; as for Condition, full search of two
  // threads does not finish, so 2-thread checks use the deepest context bound
  // that finishes in seconds (exhaustive up to that many preemptions).
  check<AllArrive<2>>("barrier.all-arrive.2t", "SYNC-7", bounded(5));
  check<AllArrive<2>>("barrier.all-arrive.2t", "SYNC-7", random(100000));
  check<TimeoutBreaksAll>("barrier.timeout-breaks-all.2t", "SYNC-8", bounded(5));
  check<TimeoutBreaksAll>("barrier.timeout-breaks-all.2t", "SYNC-8", random(100000));
  check<AbortReachesWaiter>("barrier.abort.2t", "SYNC-8", bounded(5));
  check<AbortReachesWaiter>("barrier.abort.2t", "SYNC-8", random(100000));
  check<AllArrive<3>>("barrier.all-arrive.3t", "SYNC-7", random(100000));
  return exit_code();
}
