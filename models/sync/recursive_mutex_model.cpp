// Relacy models of keel::RecursiveMutex: the real code, through the shim.
//
// KEEL-TWIN rmutex_skip_owner_check rmutex.non-owner.2t
#include "harness.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/recursive_mutex.hpp"

namespace {

// SYNC-9, SYNC-1: each thread takes the lock twice (nested) and increments a
// race-checked counter; another thread cannot enter until the depth is 0.
struct Nested : rl::test_suite<Nested, 2> {
  keel::RecursiveMutex m;
  keel::platform::Var<int> counter;
  void thread(unsigned) {
    m.lock();
    m.lock();
    RL_ASSERT(m.depth() == 2);
    counter.store(counter.load() + 1);
    m.unlock();
    RL_ASSERT(m.is_owned());
    counter.store(counter.load() + 1);
    m.unlock();
    RL_ASSERT(!m.is_owned());
  }
  void after() { RL_ASSERT(counter.load() == 4); }
};

// SYNC-9, SYNC-3: a thread that does not own the lock tries to release it
// while the owner holds it: the release is refused (NotOwnerError) and the
// owner's critical section stays exclusive.
struct NonOwnerRelease : rl::test_suite<NonOwnerRelease, 2> {
  keel::RecursiveMutex m;
  keel::platform::Var<int> counter;
  rl::atomic<int> refused{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      m.lock();
      counter.store(counter.load() + 1);
      counter.store(counter.load() + 1);
      m.unlock();
    } else {
      try {
        m.unlock();
      } catch (const keel::NotOwnerError&) {
        refused($).store(1, rl::mo_relaxed);
      }
      m.lock();
      counter.store(counter.load() + 1);
      m.unlock();
    }
  }
  void after() { RL_ASSERT(counter.load() == 3 && refused($).load(rl::mo_relaxed) == 1); }
};

}  // namespace

int main() {
  using namespace keel::model;
  // Full search of two nested lockers exceeds 80 million interleavings (200 s):
  // context bound 6 is exhaustive up to six preemptions.
  check<Nested>("rmutex.nested.2t", "SYNC-1,SYNC-9", bounded(6));
  check<Nested>("rmutex.nested.2t", "SYNC-1,SYNC-9", random(100000));
  check<NonOwnerRelease>("rmutex.non-owner.2t", "SYNC-3,SYNC-9", full());
  return exit_code();
}
