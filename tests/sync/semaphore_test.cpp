// keel::Semaphore and keel::BoundedSemaphore semantics (Python's Semaphore and
// BoundedSemaphore).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/sync/semaphore.hpp"

using namespace std::chrono_literals;
using keel_test::eventually;
using keel_test::Stopwatch;
using keel_test::TidThread;

static_assert(!std::is_copy_constructible_v<keel::Semaphore>);
static_assert(std::is_base_of_v<keel::Semaphore, keel::BoundedSemaphore>);

TEST(Semaphore, InitialValue) {
  EXPECT_EQ(keel::Semaphore().value(), 1);
  EXPECT_EQ(keel::Semaphore(0).value(), 0);
  EXPECT_EQ(keel::Semaphore(3).value(), 3);
  EXPECT_EQ(keel::Semaphore(keel::Semaphore::max_value).value(), keel::Semaphore::max_value);
  EXPECT_EQ(keel::BoundedSemaphore().value(), 1);
  EXPECT_EQ(keel::BoundedSemaphore(4).value(), 4);
  EXPECT_EQ(keel::BoundedSemaphore(4).limit(), 4);
}

TEST(Semaphore, NegativeInitialValueThrowsValueError) {
  EXPECT_THROW(keel::Semaphore{-1}, keel::ValueError);
  EXPECT_THROW(keel::Semaphore{std::numeric_limits<std::int32_t>::min()}, keel::ValueError);
  EXPECT_THROW(keel::BoundedSemaphore{-1}, keel::ValueError);
}

TEST(Semaphore, TryAcquireTakesUnitsUntilZero) {
  keel::Semaphore s(2);
  EXPECT_TRUE(s.try_acquire());
  EXPECT_EQ(s.value(), 1);
  EXPECT_TRUE(s.try_acquire());
  EXPECT_EQ(s.value(), 0);
  EXPECT_FALSE(s.try_acquire());
  EXPECT_EQ(s.value(), 0);
}

TEST(Semaphore, AcquireTakesAUnitWithoutBlockingWhenPositive) {
  keel::Semaphore s(3);
  s.acquire();
  s.acquire();
  EXPECT_EQ(s.value(), 1);
}

TEST(Semaphore, ReleaseAddsUnits) {
  keel::Semaphore s(0);
  s.release();
  EXPECT_EQ(s.value(), 1);
  s.release(3);
  EXPECT_EQ(s.value(), 4);
}

TEST(Semaphore, ReleaseOfLessThanOneThrowsAndAddsNothing) {
  keel::Semaphore s(2);
  EXPECT_THROW(s.release(0), keel::ValueError);
  EXPECT_THROW(s.release(-1), keel::ValueError);
  EXPECT_THROW(s.release(std::numeric_limits<std::int32_t>::min()), keel::ValueError);
  EXPECT_EQ(s.value(), 2);
  keel::BoundedSemaphore b(2);
  EXPECT_TRUE(b.try_acquire());
  EXPECT_THROW(b.release(0), keel::ValueError);
  EXPECT_EQ(b.value(), 1);
}

TEST(Semaphore, ReleasePastTheMaximumThrowsAndAddsNothing) {
  keel::Semaphore s(keel::Semaphore::max_value);
  EXPECT_THROW(s.release(), keel::ValueError);
  EXPECT_EQ(s.value(), keel::Semaphore::max_value);
  keel::Semaphore t(keel::Semaphore::max_value - 1);
  EXPECT_THROW(t.release(2), keel::ValueError);
  EXPECT_EQ(t.value(), keel::Semaphore::max_value - 1);
  t.release(1);
  EXPECT_EQ(t.value(), keel::Semaphore::max_value);
}

TEST(Semaphore, TryAcquireForTimesOutAtZero) {
  keel::Semaphore s(0);
  const Stopwatch sw;
  EXPECT_FALSE(s.try_acquire_for(20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_EQ(s.value(), 0);
}

TEST(Semaphore, TryAcquireUntilTimesOutWithSteadyAndSystemClocks) {
  keel::Semaphore s(0);
  Stopwatch sw;
  EXPECT_FALSE(s.try_acquire_until(std::chrono::steady_clock::now() + 20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  sw = Stopwatch();
  EXPECT_FALSE(s.try_acquire_until(std::chrono::system_clock::now() + 20ms));
  EXPECT_GE(sw.elapsed(), 19ms);
}

TEST(Semaphore, ZeroAndNegativeTimeoutsDoNotWait) {
  keel::Semaphore s(1);
  EXPECT_TRUE(s.try_acquire_for(0ms));
  EXPECT_FALSE(s.try_acquire_for(0ms));
  EXPECT_FALSE(s.try_acquire_for(-1s));
  EXPECT_FALSE(s.try_acquire_until(std::chrono::steady_clock::now() - 1s));
  s.release();
  EXPECT_TRUE(s.try_acquire_for(-1s));  // a free unit is taken whatever the timeout
}

TEST(Semaphore, BlockingAcquireIsReleasedByAnotherThread) {
  keel::Semaphore s(0);
  std::atomic<bool> acquired{false};
  TidThread t([&] {
    s.acquire();
    acquired.store(true);
  });
  t.wait_blocked();
  EXPECT_FALSE(acquired.load());
  s.release();
  t.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(s.value(), 0);
}

TEST(Semaphore, TimedAcquireGetsAUnitReleasedWhileItWaits) {
  keel::Semaphore s(0);
  std::atomic<int> result{-1};
  TidThread t([&] { result.store(s.try_acquire_for(keel_test::hang_limit) ? 1 : 0); });
  t.wait_blocked();
  s.release();
  t.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(s.value(), 0);
}

TEST(Semaphore, ReleaseNWakesNWaiters) {
  constexpr int k = 4;
  keel::Semaphore s(0);
  std::atomic<int> passed{0};
  std::vector<std::unique_ptr<TidThread>> ts;
  for (int i = 0; i < k; ++i) {
    ts.push_back(std::make_unique<TidThread>([&] {
      s.acquire();
      passed.fetch_add(1);
    }));
  }
  for (auto& t : ts) t->wait_blocked();
  EXPECT_EQ(passed.load(), 0);
  s.release(2);
  ASSERT_TRUE(eventually([&] { return passed.load() == 2; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(passed.load(), 2);  // two units, two threads through
  EXPECT_EQ(s.value(), 0);
  s.release(2);
  for (auto& t : ts) t->join();
  EXPECT_EQ(passed.load(), k);
  EXPECT_EQ(s.value(), 0);
}

TEST(Semaphore, ReleaseManyAtOnceWakesEveryWaiter) {
  // CPython's test_multirelease / test_acquire_contended.
  constexpr int k = 6;
  keel::Semaphore s(0);
  std::atomic<int> passed{0};
  std::vector<std::unique_ptr<TidThread>> ts;
  for (int i = 0; i < k; ++i) {
    ts.push_back(std::make_unique<TidThread>([&] {
      EXPECT_TRUE(s.try_acquire_for(keel_test::hang_limit));
      passed.fetch_add(1);
    }));
  }
  for (auto& t : ts) t->wait_blocked();
  s.release(k + 2);
  for (auto& t : ts) t->join();
  EXPECT_EQ(passed.load(), k);
  EXPECT_EQ(s.value(), 2);
}

TEST(Semaphore, WritesBeforeReleaseAreVisibleAfterAcquire) {
  keel::Semaphore s(0);
  int data = 0;
  std::thread t([&] {
    s.acquire();
    EXPECT_EQ(data, 11);
  });
  data = 11;
  s.release();
  t.join();
}

TEST(Semaphore, HandOffsBetweenTwoThreadsOnOneCpuAllArrive) {
  // Both threads pinned to one CPU: each waiter then finds the latest release
  // came from its own CPU and yields instead of spinning (see the header).
  // Every hand-off must still arrive, and none twice.
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &set)) ++cpu;
  const auto pin = [cpu] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
  };
  constexpr int rounds = 2000;
  keel::Semaphore ping(0);
  keel::Semaphore pong(0);
  int partner_rounds = 0;
  std::thread partner([&] {
    if (!pin()) return;
    for (int i = 0; i < rounds; ++i) {
      if (!ping.try_acquire_for(keel_test::hang_limit)) return;
      ++partner_rounds;
      pong.release();
    }
  });
  bool pinned = false;
  std::thread main_side([&] {
    pinned = pin();
    for (int i = 0; i < rounds; ++i) {
      ping.release();
      if (!pong.try_acquire_for(keel_test::hang_limit)) return;
    }
  });
  main_side.join();
  partner.join();
  ASSERT_TRUE(pinned);
  EXPECT_EQ(partner_rounds, rounds);
  EXPECT_EQ(ping.value(), 0);
  EXPECT_EQ(pong.value(), 0);
}

TEST(BoundedSemaphore, ReleaseAboveInitialThrowsAndChangesNothing) {
  // CPython's test_release_unacquired.
  keel::BoundedSemaphore b(2);
  EXPECT_THROW(b.release(), keel::ValueError);
  EXPECT_EQ(b.value(), 2);
  EXPECT_TRUE(b.try_acquire());
  EXPECT_THROW(b.release(2), keel::ValueError);
  EXPECT_EQ(b.value(), 1);
  b.release();
  EXPECT_EQ(b.value(), 2);
  EXPECT_THROW(b.release(), keel::ValueError);
  EXPECT_EQ(b.value(), 2);
}

TEST(BoundedSemaphore, BoundOfZeroRejectsEveryRelease) {
  keel::BoundedSemaphore b(0);
  EXPECT_EQ(b.limit(), 0);
  EXPECT_THROW(b.release(), keel::ValueError);
  EXPECT_EQ(b.value(), 0);
  EXPECT_FALSE(b.try_acquire());
}

TEST(BoundedSemaphore, AcquireAndReleaseWithinTheBound) {
  keel::BoundedSemaphore b(3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.try_acquire());
  EXPECT_FALSE(b.try_acquire_for(5ms));
  b.release(3);
  EXPECT_EQ(b.value(), 3);
  EXPECT_THROW(b.release(1), keel::ValueError);
}

TEST(BoundedSemaphore, BlockedAcquirerIsWokenByARelease) {
  keel::BoundedSemaphore b(1);
  b.acquire();
  std::atomic<bool> acquired{false};
  TidThread t([&] {
    b.acquire();
    acquired.store(true);
  });
  t.wait_blocked();
  EXPECT_FALSE(acquired.load());
  b.release();
  t.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(b.value(), 0);
  b.release();
  EXPECT_THROW(b.release(), keel::ValueError);
}

TEST(BoundedSemaphore, ConcurrentOverReleasesNeverPassTheBound) {
  // Only one of many racing releases into a bound of one free slot may win.
  const int rounds = keel_test::scaled(200, 20);
  for (int r = 0; r < rounds; ++r) {
    keel::BoundedSemaphore b(4);
    ASSERT_TRUE(b.try_acquire());
    std::atomic<int> ok{0};
    std::atomic<int> rejected{0};
    std::atomic<bool> go{false};
    keel_test::Threads ts;
    for (int i = 0; i < 3; ++i) {
      ts.spawn([&] {
        while (!go.load()) std::this_thread::yield();
        try {
          b.release();
          ok.fetch_add(1);
        } catch (const keel::ValueError&) {
          rejected.fetch_add(1);
        }
      });
    }
    go.store(true);
    ts.join();
    ASSERT_EQ(ok.load(), 1);
    ASSERT_EQ(rejected.load(), 2);
    ASSERT_EQ(b.value(), 4);
  }
}
