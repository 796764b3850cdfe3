// keel::Mutex semantics: locking, timeouts, misuse, standard lock adaptors.
#include <gtest/gtest.h>

#include <chrono>
#include <concepts>
#include <mutex>
#include <thread>
#include <type_traits>

#include "../support/test_support.hpp"
#include "keel/sync/mutex.hpp"

// These tests misuse locks on purpose (unlocking from another thread, unlocking
// an unlocked Mutex) and assert on try_lock through gtest macros, none of which
// the static analysis can follow. thread_safety_annotations_test.cpp checks the
// annotations themselves.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;
using keel_test::Stopwatch;
using keel_test::TidThread;

namespace {

template <class M>
concept TimedLockable = requires(M m) {
  m.lock();
  { m.try_lock() } -> std::convertible_to<bool>;
  m.unlock();
  { m.try_lock_for(1ms) } -> std::convertible_to<bool>;
  { m.try_lock_until(std::chrono::steady_clock::now()) } -> std::convertible_to<bool>;
};

static_assert(TimedLockable<keel::Mutex>);
static_assert(std::is_nothrow_default_constructible_v<keel::Mutex>);
static_assert(!std::is_copy_constructible_v<keel::Mutex> && !std::is_move_constructible_v<keel::Mutex>);
// The whole state is one 32-bit futex word (what makes it process-shareable).
static_assert(sizeof(keel::Mutex) == sizeof(std::int32_t));

constinit keel::Mutex global_mutex;  // constant-initialized: safe before main

}  // namespace

TEST(Mutex, LockUnlockTryLock) {
  keel::Mutex m;
  EXPECT_FALSE(m.is_locked());
  m.lock();
  EXPECT_TRUE(m.is_locked());
  EXPECT_FALSE(m.try_lock());
  m.unlock();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, UnlockingUnlockedIsAnErrorAndChangesNothing) {
  keel::Mutex m;
  EXPECT_THROW(m.unlock(), keel::LockNotHeldError);
  EXPECT_FALSE(m.is_locked());
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(Mutex, SecondUnlockThrowsAndTheErrorIsAMisuseError) {
  keel::Mutex m;
  m.lock();
  m.unlock();
  try {
    m.unlock();
    FAIL() << "unlock of an unlocked Mutex did not throw";
  } catch (const keel::MisuseError& e) {
    EXPECT_NE(dynamic_cast<const keel::LockNotHeldError*>(&e), nullptr);
    EXPECT_NE(std::string(e.what()), "");
  }
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, GlobalConstinitMutexWorks) {
  global_mutex.lock();
  EXPECT_TRUE(global_mutex.is_locked());
  global_mutex.unlock();
}

TEST(Mutex, TryLockForTimesOutWhileHeld) {
  keel::Mutex m;
  m.lock();
  const Stopwatch sw;
  EXPECT_FALSE(m.try_lock_for(20ms));  // a Mutex is not recursive: the holder waits too
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_TRUE(m.is_locked());
  m.unlock();
}

TEST(Mutex, TryLockUntilSteadyTimesOutWhileHeld) {
  keel::Mutex m;
  m.lock();
  const Stopwatch sw;
  EXPECT_FALSE(m.try_lock_until(std::chrono::steady_clock::now() + 20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  m.unlock();
}

TEST(Mutex, TryLockUntilSystemClockTimesOutWhileHeld) {
  keel::Mutex m;
  m.lock();
  const Stopwatch sw;
  EXPECT_FALSE(m.try_lock_until(std::chrono::system_clock::now() + 20ms));
  EXPECT_GE(sw.elapsed(), 19ms);  // the two clocks are read at slightly different moments
  m.unlock();
}

TEST(Mutex, TimedFormsSucceedAtOnceWhenFree) {
  keel::Mutex m;
  EXPECT_TRUE(m.try_lock_for(0ms));
  m.unlock();
  EXPECT_TRUE(m.try_lock_for(-1s));
  m.unlock();
  EXPECT_TRUE(m.try_lock_for(10s));
  m.unlock();
  EXPECT_TRUE(m.try_lock_until(std::chrono::steady_clock::now() - 1s));
  m.unlock();
  EXPECT_TRUE(m.try_lock_until(std::chrono::system_clock::now() - 1s));
  m.unlock();
  EXPECT_TRUE(m.try_lock_for(std::chrono::hours::max()));
  m.unlock();
}

TEST(Mutex, ZeroAndNegativeTimeoutsDoNotWaitWhenHeld) {
  keel::Mutex m;
  m.lock();
  EXPECT_FALSE(m.try_lock_for(0ms));
  EXPECT_FALSE(m.try_lock_for(-1s));
  EXPECT_FALSE(m.try_lock_until(std::chrono::steady_clock::now() - 1s));
  EXPECT_FALSE(m.try_lock_until(std::chrono::system_clock::time_point{}));
  m.unlock();
}

TEST(Mutex, LockHeldByAnotherThreadBlocksUntilReleased) {
  keel::Mutex m;
  std::atomic<bool> acquired{false};
  m.lock();
  TidThread t([&] {
    m.lock();
    acquired.store(true);
    m.unlock();
  });
  t.wait_blocked(&m);
  EXPECT_FALSE(acquired.load());
  m.unlock();
  t.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, TryLockFromAnotherThreadFailsWhileHeld) {
  keel::Mutex m;
  m.lock();
  bool got = true;
  std::thread([&] { got = m.try_lock(); }).join();
  EXPECT_FALSE(got);
  m.unlock();
  std::thread([&] {
    got = m.try_lock();
    if (got) m.unlock();
  }).join();
  EXPECT_TRUE(got);
}

TEST(Mutex, TimedLockInAnotherThreadSucceedsWhenReleasedInTime) {
  keel::Mutex m;
  std::atomic<int> result{-1};
  m.lock();
  TidThread t([&] {
    const bool got = m.try_lock_for(keel_test::hang_limit);
    result.store(got ? 1 : 0);
    if (got) m.unlock();
  });
  t.wait_blocked(&m);
  EXPECT_EQ(result.load(), -1);
  m.unlock();
  t.join();
  EXPECT_EQ(result.load(), 1);
}

TEST(Mutex, HugeTimeoutWaitsLikeLock) {
  keel::Mutex m;
  std::atomic<int> result{-1};
  m.lock();
  TidThread t([&] {
    const bool got = m.try_lock_for(std::chrono::hours::max());  // saturates to "no deadline"
    result.store(got ? 1 : 0);
    if (got) m.unlock();
  });
  t.wait_blocked(&m);
  EXPECT_EQ(result.load(), -1);
  m.unlock();
  t.join();
  EXPECT_EQ(result.load(), 1);
}

TEST(Mutex, ReleaseByAnotherThreadIsAllowed) {
  // Python's Lock has no owner: any thread may release it.
  keel::Mutex m;
  m.lock();
  bool threw = false;
  std::thread([&] {
    try {
      m.unlock();
    } catch (...) {
      threw = true;
    }
  }).join();
  EXPECT_FALSE(threw);
  EXPECT_FALSE(m.is_locked());
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(Mutex, ReleaseByAnotherThreadWakesABlockedLocker) {
  keel::Mutex m;
  m.lock();  // taken by the test thread ...
  std::atomic<bool> acquired{false};
  TidThread waiter([&] {
    m.lock();
    acquired.store(true);
  });
  waiter.wait_blocked(&m);
  std::thread([&] { m.unlock(); }).join();  // ... released by a third thread
  waiter.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_TRUE(m.is_locked());
  m.unlock();  // and the waiter's hold released here
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, StateIsConsistentAfterATimedOutAcquire) {
  // CPython bpo-11618: a timed-out acquire must not leave the lock half-taken.
  keel::Mutex m;
  m.lock();
  bool got = true;
  std::thread([&] { got = m.try_lock_for(20ms); }).join();
  EXPECT_FALSE(got);
  EXPECT_TRUE(m.is_locked());
  m.unlock();
  EXPECT_FALSE(m.is_locked());
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  EXPECT_THROW(m.unlock(), keel::LockNotHeldError);
  EXPECT_FALSE(m.is_locked());
  // And a blocked locker is still woken afterwards.
  m.lock();
  std::atomic<bool> acquired{false};
  TidThread t([&] {
    m.lock();
    acquired.store(true);
    m.unlock();
  });
  t.wait_blocked(&m);
  m.unlock();
  t.join();
  EXPECT_TRUE(acquired.load());
}

TEST(Mutex, UnlockingUnlockedFromAnotherThreadThrows) {
  keel::Mutex m;
  bool threw = false;
  std::thread([&] {
    try {
      m.unlock();
    } catch (const keel::LockNotHeldError&) {
      threw = true;
    }
  }).join();
  EXPECT_TRUE(threw);
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, WorksWithScopedLock) {
  keel::Mutex a;
  keel::Mutex b;
  {
    std::scoped_lock lk(a);
    EXPECT_TRUE(a.is_locked());
  }
  EXPECT_FALSE(a.is_locked());
  {
    std::scoped_lock lk(a, b);
    EXPECT_TRUE(a.is_locked());
    EXPECT_TRUE(b.is_locked());
  }
  EXPECT_FALSE(a.is_locked());
  EXPECT_FALSE(b.is_locked());
}

TEST(Mutex, WorksWithUniqueLock) {
  keel::Mutex m;
  {
    std::unique_lock lk(m);
    EXPECT_TRUE(lk.owns_lock());
    lk.unlock();
    EXPECT_FALSE(m.is_locked());
    EXPECT_TRUE(lk.try_lock());
    EXPECT_TRUE(m.is_locked());
  }
  EXPECT_FALSE(m.is_locked());
  {
    std::unique_lock lk(m, std::try_to_lock);
    EXPECT_TRUE(lk.owns_lock());
    std::unique_lock lk2(m, std::try_to_lock);
    EXPECT_FALSE(lk2.owns_lock());
    std::unique_lock lk3(m, 10ms);  // timed constructor: try_lock_for
    EXPECT_FALSE(lk3.owns_lock());
    std::unique_lock lk4(m, std::chrono::steady_clock::now() + 10ms);  // try_lock_until
    EXPECT_FALSE(lk4.owns_lock());
  }
  EXPECT_FALSE(m.is_locked());
  {
    m.lock();
    std::unique_lock lk(m, std::adopt_lock);
    EXPECT_TRUE(lk.owns_lock());
  }
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, StdLockOfTwoMutexesTakesBoth) {
  keel::Mutex a;
  keel::Mutex b;
  std::lock(a, b);
  EXPECT_TRUE(a.is_locked());
  EXPECT_TRUE(b.is_locked());
  a.unlock();
  b.unlock();
  EXPECT_EQ(std::try_lock(a, b), -1);
  a.unlock();
  b.unlock();
  b.lock();
  EXPECT_EQ(std::try_lock(a, b), 1);  // index of the one that failed
  EXPECT_FALSE(a.is_locked());        // and the first was given back
  b.unlock();
}

TEST(Mutex, StdLockInOppositeOrdersDoesNotDeadlock) {
  keel::Mutex a;
  keel::Mutex b;
  long counter = 0;
  const int rounds = keel_test::scaled(2000, 50);
  std::thread t1([&] {
    for (int i = 0; i < rounds; ++i) {
      std::lock(a, b);
      ++counter;
      a.unlock();
      b.unlock();
    }
  });
  std::thread t2([&] {
    for (int i = 0; i < rounds; ++i) {
      std::scoped_lock lk(b, a);
      ++counter;
    }
  });
  t1.join();
  t2.join();
  EXPECT_EQ(counter, 2L * rounds);
  EXPECT_FALSE(a.is_locked());
  EXPECT_FALSE(b.is_locked());
}

TEST(Mutex, WritesBeforeUnlockAreVisibleAfterLock) {
  keel::Mutex m;
  int data = 0;
  m.lock();
  std::thread t([&] {
    m.lock();
    EXPECT_EQ(data, 42);  // TSan checks the happens-before edge too
    data = 43;
    m.unlock();
  });
  data = 42;
  m.unlock();
  t.join();
  m.lock();
  EXPECT_EQ(data, 43);
  m.unlock();
}

TEST(Mutex, LockGuardLocksAndUnlocks) {
  keel::Mutex m;
  {
    keel::LockGuard<keel::Mutex> g(m);
    EXPECT_TRUE(m.is_locked());
  }
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, MutualExclusionUnderContention) {
  keel::Mutex m;
  long counter = 0;
  int inside = 0;
  bool overlap = false;
  const int threads = 4;
  const int rounds = keel_test::scaled(5000, 200);
  keel_test::Threads ts;
  for (int t = 0; t < threads; ++t) {
    ts.spawn([&] {
      for (int i = 0; i < rounds; ++i) {
        m.lock();
        if (++inside != 1) overlap = true;
        ++counter;
        --inside;
        m.unlock();
      }
    });
  }
  ts.join();
  EXPECT_FALSE(overlap);
  EXPECT_EQ(counter, static_cast<long>(threads) * rounds);
  EXPECT_FALSE(m.is_locked());
}
