// keel::RobustMutex (IPC-2): a process or thread that dies holding it does not
// wedge the others; the next locker takes it over and is told.
//
// The mutex lives in an anonymous MAP_SHARED mapping (or a named segment)
// shared with fork()ed children. Children only touch the shared memory and
// leave with _exit; the parent reaps every child, and a guard kills and reaps
// whatever is left if a test fails early.
#include "keel/process/robust_mutex.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/process/shared_memory.hpp"
#include "keel/sync/mutex.hpp"

// Locks taken in one process and left to die there, and misuse on purpose:
// beyond what the static analysis can follow.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;

namespace {

struct Shared {
  keel::RobustMutex mutex;
  std::atomic<int> holding{0};  // a child says "I hold it"
  std::atomic<int> go{0};       // the parent says "start"
  long a = 0;                   // guarded by mutex; a == b whenever nobody died mid-update
  long b = 0;
  long counter = 0;  // guarded by mutex
};

using keel_test::Children;
using keel_test::SharedMapping;

// A child that takes the lock, says so, and sleeps until killed.
int hold_until_killed(Shared* s) {
  s->mutex.lock();
  s->holding.store(1);
  for (;;) ::pause();
}

}  // namespace

TEST(RobustMutex, LocksUnlocksAndTryLocksLikeAMutex) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  keel::RobustMutex& m = shm->mutex;
  EXPECT_EQ(m.lock(), keel::LockResult::acquired);
  EXPECT_FALSE(m.owner_died());
  bool other_got_it = true;
  std::thread([&] { other_got_it = m.try_lock(); }).join();
  EXPECT_FALSE(other_got_it);
  m.unlock();
  EXPECT_TRUE(m.try_lock());
  EXPECT_FALSE(m.owner_died());
  m.unlock();
  EXPECT_EQ(m.recoveries(), 0u);
}

TEST(RobustMutex, WorksWithStandardLockGuards) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  {
    std::unique_lock<keel::RobustMutex> lock(shm->mutex, std::defer_lock);
    EXPECT_TRUE(lock.try_lock_for(10ms));
    ++shm->counter;
  }
  {
    std::scoped_lock lock(shm->mutex);
    ++shm->counter;
  }
  { keel::LockGuard<keel::RobustMutex> lock(shm->mutex); }
  EXPECT_TRUE(shm->mutex.try_lock());
  shm->mutex.unlock();
  EXPECT_EQ(shm->counter, 2);
}

TEST(RobustMutex, UnlockByANonOwnerThrowsAndChangesNothing) {
  if (KEEL_TEST_TSAN) GTEST_SKIP() << "ThreadSanitizer reports the misuse itself";
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  keel::RobustMutex& m = shm->mutex;
  EXPECT_THROW(m.unlock(), keel::LockNotHeldError);  // not held at all
  m.lock();
  bool threw = false;
  std::thread([&] {
    try {
      m.unlock();
    } catch (const keel::LockNotHeldError&) {
      threw = true;
    }
  }).join();
  EXPECT_TRUE(threw);
  bool other_got_it = true;
  std::thread([&] { other_got_it = m.try_lock(); }).join();
  EXPECT_FALSE(other_got_it) << "a failed unlock by a non-owner released the mutex";
  m.unlock();
}

TEST(RobustMutex, RelockingFromTheHoldingThreadThrowsInsteadOfDeadlocking) {
  if (KEEL_TEST_TSAN) GTEST_SKIP() << "ThreadSanitizer reports the misuse itself";
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  keel::RobustMutex& m = shm->mutex;
  m.lock();
  EXPECT_THROW(m.lock(), keel::MisuseError);
  EXPECT_THROW((void)m.try_lock_for(10ms), keel::MisuseError);
  EXPECT_THROW((void)m.try_lock(), keel::MisuseError);
  m.unlock();  // held once, released once
  EXPECT_THROW(m.unlock(), keel::LockNotHeldError);
}

TEST(RobustMutex, TimedLocksTimeOutWhileAnotherProcessHoldsIt) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  Children children;
  const pid_t pid = children.spawn([s] {
    s->mutex.lock();
    s->holding.store(1);
    while (s->go.load() == 0) ::usleep(1000);
    s->mutex.unlock();
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return s->holding.load() == 1; }));
  keel_test::Stopwatch sw;
  EXPECT_FALSE(s->mutex.try_lock_for(20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_FALSE(s->mutex.try_lock_until(std::chrono::system_clock::now() + 10ms));
  EXPECT_FALSE(s->mutex.try_lock_for(0ms));
  EXPECT_FALSE(s->mutex.try_lock_for(-5ms));
  EXPECT_FALSE(s->mutex.try_lock_until(std::chrono::steady_clock::time_point::min()));
  EXPECT_FALSE(s->mutex.try_lock());
  s->go.store(1);
  EXPECT_TRUE(s->mutex.try_lock_for(keel_test::hang_limit));
  EXPECT_FALSE(s->mutex.owner_died());
  s->mutex.unlock();
  EXPECT_EQ(children.reap(pid), 0);
  EXPECT_EQ(s->mutex.recoveries(), 0u);
}

TEST(RobustMutex, AChildKilledHoldingItIsReportedToTheNextLockWhichThenWorks) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  Children children;
  const pid_t pid = children.spawn([s] { return hold_until_killed(s); });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return s->holding.load() == 1; }));
  EXPECT_FALSE(s->mutex.try_lock_for(10ms));  // really held
  ASSERT_TRUE(children.kill(pid));
  EXPECT_EQ(s->mutex.lock(), keel::LockResult::owner_died);
  EXPECT_TRUE(s->mutex.owner_died());
  EXPECT_EQ(s->mutex.recoveries(), 1u);
  s->mutex.unlock();
  // Taken over for good: the next acquisitions are ordinary ones.
  EXPECT_EQ(s->mutex.lock(), keel::LockResult::acquired);
  EXPECT_FALSE(s->mutex.owner_died());
  s->mutex.unlock();
  EXPECT_TRUE(s->mutex.try_lock());
  EXPECT_FALSE(s->mutex.owner_died());
  s->mutex.unlock();
  EXPECT_EQ(s->mutex.recoveries(), 1u);
}

TEST(RobustMutex, TryLockAndTimedLockAlsoReportADeadOwner) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  Children children;
  for (int round = 0; round < 2; ++round) {
    s->holding.store(0);
    const pid_t pid = children.spawn([s] { return hold_until_killed(s); });
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(keel_test::eventually([&] { return s->holding.load() == 1; }));
    ASSERT_TRUE(children.kill(pid));
    if (round == 0) {
      ASSERT_TRUE(s->mutex.try_lock());
    } else {
      ASSERT_TRUE(s->mutex.try_lock_for(keel_test::hang_limit));
    }
    EXPECT_TRUE(s->mutex.owner_died()) << "round " << round;
    s->mutex.unlock();
  }
  EXPECT_EQ(s->mutex.recoveries(), 2u);
}

TEST(RobustMutex, AWaiterBlockedInLockIsHandedTheMutexWhenTheHolderIsKilled) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  Children children;
  const pid_t holder = children.spawn([s] { return hold_until_killed(s); });
  ASSERT_GT(holder, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return s->holding.load() == 1; }));
  // A second child blocks in lock() and reports what it got.
  const pid_t waiter = children.spawn([s] {
    s->go.store(1);
    if (!s->mutex.try_lock_for(keel_test::hang_limit)) return 2;
    const bool died = s->mutex.owner_died();
    s->mutex.unlock();
    return died ? 0 : 3;
  });
  ASSERT_GT(waiter, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return s->go.load() == 1; }));
  std::this_thread::sleep_for(20ms);  // let it block
  ASSERT_TRUE(children.kill(holder));
  EXPECT_EQ(children.reap(waiter), 0);
  EXPECT_EQ(s->mutex.recoveries(), 1u);
  EXPECT_EQ(s->mutex.lock(), keel::LockResult::acquired);
  s->mutex.unlock();
}

TEST(RobustMutex, AThreadThatExitsHoldingItIsTreatedAsDead) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  keel::RobustMutex& m = shm->mutex;
  std::thread([&] { m.lock(); }).join();
  EXPECT_EQ(m.lock(), keel::LockResult::owner_died);
  m.unlock();
  EXPECT_EQ(m.recoveries(), 1u);
}

TEST(RobustMutex, ProtectsSharedStateAcrossProcesses) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  constexpr int kids = 4;
  const int rounds = keel_test::scaled(2000, 100);
  Children children;
  std::vector<pid_t> pids;
  for (int k = 0; k < kids; ++k) {
    const pid_t pid = children.spawn([s, rounds] {
      while (s->go.load() == 0) ::usleep(100);
      for (int i = 0; i < rounds; ++i) {
        if (s->mutex.lock() != keel::LockResult::acquired) return 2;
        const long a = s->a;
        s->a = a + 1;
        s->b = s->b + 1;
        ++s->counter;
        s->mutex.unlock();
      }
      return 0;
    });
    ASSERT_GT(pid, 0);
    pids.push_back(pid);
  }
  s->go.store(1);
  for (pid_t pid : pids) EXPECT_EQ(children.reap(pid), 0);
  EXPECT_EQ(s->mutex.lock(), keel::LockResult::acquired);
  EXPECT_EQ(s->counter, static_cast<long>(kids) * rounds);
  EXPECT_EQ(s->a, s->b);
  EXPECT_EQ(s->a, s->counter);
  s->mutex.unlock();
  EXPECT_EQ(s->mutex.recoveries(), 0u);
}

TEST(RobustMutex, ChildrenKilledAtRandomMomentsNeverHideAHalfDoneUpdate) {
  // Children update a == b in two steps under the lock, and are killed at
  // random moments. Whenever the parent then finds a != b, its acquisition
  // must have reported the dead owner (that is how it knows to repair).
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  const int rounds = keel_test::scaled(40, 10);
  Children children;
  int reported = 0;
  int torn = 0;
  for (int round = 0; round < rounds; ++round) {
    s->holding.store(0);
    const pid_t pid = children.spawn([s] {
      for (long i = 0;; ++i) {
        s->mutex.lock();
        s->a = s->a + 1;
        if (i % 7 == 0) s->holding.store(1);  // some progress made
        for (int spin = 0; spin < 50; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
        s->b = s->b + 1;
        s->mutex.unlock();
      }
      return 0;
    });
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(keel_test::eventually([&] { return s->holding.load() == 1; }));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    ASSERT_TRUE(children.kill(pid));
    ASSERT_TRUE(s->mutex.try_lock_for(keel_test::hang_limit));
    const bool died = s->mutex.owner_died();
    if (s->a != s->b) {
      ++torn;
      EXPECT_TRUE(died) << "round " << round << ": a half-done update without an owner-died report";
      s->b = s->a;  // the repair a real user would do
    }
    reported += died ? 1 : 0;
    s->mutex.unlock();
  }
  EXPECT_EQ(s->mutex.recoveries(), static_cast<std::uint64_t>(reported));
  EXPECT_GE(reported, torn);
  std::cerr << "  " << rounds << " kills: " << reported << " while holding, " << torn << " mid-update\n";
}

TEST(RobustMutex, WorksInANamedSegmentAttachedByAnotherProcess) {
  const std::string name = "/keel-rm-test-" + std::to_string(::getpid());
  auto created = keel::SharedMemory::create(name, sizeof(keel::RobustMutex));
  auto* m = new (created.data()) keel::RobustMutex;
  Children children;
  const pid_t pid = children.spawn([&name] {
    auto seg = keel::SharedMemory::attach(name);
    auto* mine = std::launder(static_cast<keel::RobustMutex*>(seg.data()));
    mine->lock();
    for (;;) ::pause();  // dies holding it
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(keel_test::eventually([&] {
    if (!m->try_lock()) return true;  // the child holds it
    m->unlock();
    return false;
  }));
  ASSERT_TRUE(children.kill(pid));
  EXPECT_EQ(m->lock(), keel::LockResult::owner_died);
  m->unlock();
  created.unlink();
}
