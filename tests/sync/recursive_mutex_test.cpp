// keel::RecursiveMutex semantics (Python's RLock): recursion depth, ownership,
// misuse by non-owners, timed forms, release_all/restore.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "../support/test_support.hpp"
#include "keel/sync/recursive_mutex.hpp"

// Locks taken in one thread and released in another, and misuse on purpose.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;
using keel_test::Stopwatch;
using keel_test::TidThread;

namespace {

// Runs fn on a fresh thread and waits for it.
template <class F>
void in_other_thread(F fn) {
  std::thread(fn).join();
}

}  // namespace

TEST(RecursiveMutex, RecursionTracksDepth) {
  keel::RecursiveMutex m;
  EXPECT_FALSE(m.is_owned());
  EXPECT_EQ(m.depth(), 0u);
  m.lock();
  EXPECT_TRUE(m.is_owned());
  EXPECT_EQ(m.depth(), 1u);
  m.lock();
  m.lock();
  EXPECT_EQ(m.depth(), 3u);
  m.unlock();
  EXPECT_EQ(m.depth(), 2u);
  EXPECT_TRUE(m.is_owned());
  m.unlock();
  m.unlock();
  EXPECT_EQ(m.depth(), 0u);
  EXPECT_FALSE(m.is_owned());
}

TEST(RecursiveMutex, TryLockRecursesForTheOwner) {
  keel::RecursiveMutex m;
  EXPECT_TRUE(m.try_lock());
  EXPECT_TRUE(m.try_lock());
  EXPECT_TRUE(m.try_lock_for(0ms));
  EXPECT_TRUE(m.try_lock_until(std::chrono::steady_clock::now() - 1s));
  EXPECT_TRUE(m.try_lock_until(std::chrono::system_clock::now() - 1s));
  EXPECT_EQ(m.depth(), 5u);
  for (int i = 0; i < 5; ++i) m.unlock();
  EXPECT_EQ(m.depth(), 0u);
}

TEST(RecursiveMutex, UnlockWhenNotHeldThrowsNotOwner) {
  keel::RecursiveMutex m;
  EXPECT_THROW(m.unlock(), keel::NotOwnerError);
  EXPECT_EQ(m.depth(), 0u);
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  EXPECT_THROW(m.unlock(), keel::NotOwnerError);
}

TEST(RecursiveMutex, NotOwnerErrorIsAMisuseError) {
  keel::RecursiveMutex m;
  try {
    m.unlock();
    FAIL() << "no exception";
  } catch (const keel::MisuseError& e) {
    EXPECT_NE(dynamic_cast<const keel::NotOwnerError*>(&e), nullptr);
  }
}

TEST(RecursiveMutex, NonOwnerUnlockThrowsAndChangesNothing) {
  keel::RecursiveMutex m;
  m.lock();
  m.lock();
  bool threw = false;
  bool other_owned = true;
  std::uint32_t other_depth = 99;
  bool other_try = true;
  in_other_thread([&] {
    try {
      m.unlock();
    } catch (const keel::NotOwnerError&) {
      threw = true;
    }
    other_owned = m.is_owned();
    other_depth = m.depth();
    other_try = m.try_lock();
  });
  EXPECT_TRUE(threw);
  EXPECT_FALSE(other_owned);
  EXPECT_EQ(other_depth, 0u);
  EXPECT_FALSE(other_try);
  EXPECT_TRUE(m.is_owned());
  EXPECT_EQ(m.depth(), 2u);
  m.unlock();
  m.unlock();
  EXPECT_EQ(m.depth(), 0u);
}

TEST(RecursiveMutex, ReleaseFromAThreadThatDidNotAcquireThrows) {
  // CPython's RLockTests.test_different_thread.
  keel::RecursiveMutex m;
  in_other_thread([&] { m.lock(); });  // that thread exits still owning it
  EXPECT_FALSE(m.is_owned());
  EXPECT_THROW(m.unlock(), keel::NotOwnerError);
  EXPECT_FALSE(m.try_lock());
  EXPECT_THROW(m.release_all(), keel::NotOwnerError);
}

TEST(RecursiveMutex, OtherThreadBlocksUntilFullRelease) {
  keel::RecursiveMutex m;
  std::atomic<bool> acquired{false};
  std::atomic<std::uint32_t> their_depth{0};
  m.lock();
  m.lock();
  TidThread t([&] {
    m.lock();
    their_depth.store(m.depth());
    acquired.store(true);
    m.unlock();
  });
  t.wait_blocked();
  EXPECT_FALSE(acquired.load());
  m.unlock();  // depth 1: still held
  std::this_thread::sleep_for(10ms);
  t.wait_blocked();
  EXPECT_FALSE(acquired.load());
  m.unlock();  // depth 0: released
  t.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(their_depth.load(), 1u);
  EXPECT_FALSE(m.is_owned());
}

TEST(RecursiveMutex, TryLockForTimesOutInAnotherThread) {
  keel::RecursiveMutex m;
  m.lock();
  bool got = true;
  std::chrono::nanoseconds waited{};
  in_other_thread([&] {
    const Stopwatch sw;
    got = m.try_lock_for(20ms);
    waited = sw.elapsed();
  });
  EXPECT_FALSE(got);
  EXPECT_GE(waited, 20ms);
  EXPECT_EQ(m.depth(), 1u);
  m.unlock();
}

TEST(RecursiveMutex, TryLockUntilTimesOutWithSteadyAndSystemClocks) {
  keel::RecursiveMutex m;
  m.lock();
  bool got_steady = true;
  bool got_system = true;
  std::chrono::nanoseconds waited_steady{};
  std::chrono::nanoseconds waited_system{};
  in_other_thread([&] {
    Stopwatch sw;
    got_steady = m.try_lock_until(std::chrono::steady_clock::now() + 20ms);
    waited_steady = sw.elapsed();
    sw = Stopwatch();
    got_system = m.try_lock_until(std::chrono::system_clock::now() + 20ms);
    waited_system = sw.elapsed();
  });
  EXPECT_FALSE(got_steady);
  EXPECT_FALSE(got_system);
  EXPECT_GE(waited_steady, 20ms);
  EXPECT_GE(waited_system, 19ms);
  m.unlock();
}

TEST(RecursiveMutex, TimedLockSucceedsWhenReleasedInTime) {
  keel::RecursiveMutex m;
  m.lock();
  std::atomic<int> result{-1};
  std::atomic<std::uint32_t> their_depth{0};
  TidThread t([&] {
    const bool got = m.try_lock_for(keel_test::hang_limit);
    result.store(got ? 1 : 0);
    if (got) {
      their_depth.store(m.depth());
      m.unlock();
    }
  });
  t.wait_blocked();
  m.unlock();
  t.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(their_depth.load(), 1u);
}

TEST(RecursiveMutex, ReleaseAllAndRestoreKeepTheDepth) {
  keel::RecursiveMutex m;
  m.lock();
  m.lock();
  m.lock();
  const std::uint32_t d = m.release_all();
  EXPECT_EQ(d, 3u);
  EXPECT_EQ(m.depth(), 0u);
  EXPECT_FALSE(m.is_owned());
  bool other_got = false;
  in_other_thread([&] {
    other_got = m.try_lock();
    if (other_got) m.unlock();
  });
  EXPECT_TRUE(other_got);
  m.restore(d);
  EXPECT_EQ(m.depth(), 3u);
  EXPECT_TRUE(m.is_owned());
  for (int i = 0; i < 3; ++i) m.unlock();
  EXPECT_THROW(m.unlock(), keel::NotOwnerError);
}

TEST(RecursiveMutex, ReleaseAllWhenNotOwnedThrowsAndChangesNothing) {
  // CPython's test_release_save_unacquired.
  keel::RecursiveMutex m;
  EXPECT_THROW(m.release_all(), keel::NotOwnerError);
  m.lock();
  bool threw = false;
  in_other_thread([&] {
    try {
      m.release_all();
    } catch (const keel::NotOwnerError&) {
      threw = true;
    }
  });
  EXPECT_TRUE(threw);
  EXPECT_EQ(m.depth(), 1u);
  m.unlock();
}

TEST(RecursiveMutex, WorksWithStandardAdaptors) {
  keel::RecursiveMutex m;
  {
    std::scoped_lock outer(m);
    {
      std::unique_lock inner(m);
      EXPECT_EQ(m.depth(), 2u);
      std::unique_lock timed(m, 10ms);
      EXPECT_TRUE(timed.owns_lock());
      EXPECT_EQ(m.depth(), 3u);
    }
    EXPECT_EQ(m.depth(), 1u);
  }
  EXPECT_EQ(m.depth(), 0u);
  keel::RecursiveMutex n;
  {
    std::scoped_lock both(m, n);
    EXPECT_TRUE(m.is_owned());
    EXPECT_TRUE(n.is_owned());
  }
  EXPECT_FALSE(m.is_owned());
  EXPECT_FALSE(n.is_owned());
}

TEST(RecursiveMutex, OwnershipIsPerThread) {
  keel::RecursiveMutex m;
  m.lock();
  bool other_owned = true;
  in_other_thread([&] { other_owned = m.is_owned(); });
  EXPECT_FALSE(other_owned);
  m.unlock();
  // A later thread that takes it owns it; this one does not.
  std::atomic<bool> locked{false};
  std::atomic<bool> release{false};
  std::thread t([&] {
    m.lock();
    locked.store(true);
    while (!release.load()) std::this_thread::sleep_for(1ms);
    m.unlock();
  });
  ASSERT_TRUE(keel_test::eventually([&] { return locked.load(); }));
  EXPECT_FALSE(m.is_owned());
  EXPECT_EQ(m.depth(), 0u);
  release.store(true);
  t.join();
}

TEST(RecursiveMutex, MutualExclusionWithNestedLocking) {
  keel::RecursiveMutex m;
  long counter = 0;
  int inside = 0;
  bool overlap = false;
  const int rounds = keel_test::scaled(2000, 100);
  keel_test::Threads ts;
  for (int t = 0; t < 3; ++t) {
    ts.spawn([&] {
      for (int i = 0; i < rounds; ++i) {
        m.lock();
        m.lock();
        if (++inside != 1) overlap = true;
        ++counter;
        --inside;
        m.unlock();
        m.unlock();
      }
    });
  }
  ts.join();
  EXPECT_FALSE(overlap);
  EXPECT_EQ(counter, 3L * rounds);
}
