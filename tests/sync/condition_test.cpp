// keel::Condition semantics (Python's Condition): over a Mutex, over a
// RecursiveMutex at any depth, and over its own lock; timeouts, predicates,
// notify(n) counts, FIFO order, misuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/sync/condition.hpp"

// Tests lock and unlock across gtest macros and threads, and misuse on purpose.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;
using keel_test::eventually;
using keel_test::Stopwatch;

namespace {

// Reads cond.waiting() under the lock.
std::size_t waiting(keel::Condition& c) {
  std::unique_lock lk(c);
  return c.waiting();
}

bool await_waiting(keel::Condition& c, std::size_t n) {
  return eventually([&] { return waiting(c) == n; });
}

// Which lock a Condition is built over, for the typed tests.
enum class Over { mutex, rmutex, own };

struct Fixture {
  explicit Fixture(Over o) {
    switch (o) {
      case Over::mutex:
        cond = std::make_unique<keel::Condition>(m);
        break;
      case Over::rmutex:
        cond = std::make_unique<keel::Condition>(rm);
        break;
      case Over::own:
        cond = std::make_unique<keel::Condition>();
        break;
    }
  }
  keel::Mutex m;
  keel::RecursiveMutex rm;
  std::unique_ptr<keel::Condition> cond;
};

class ConditionOver : public ::testing::TestWithParam<Over> {
 protected:
  Fixture f{GetParam()};
  keel::Condition& c = *f.cond;
};

std::string over_name(const ::testing::TestParamInfo<Over>& info) {
  switch (info.param) {
    case Over::mutex:
      return "Mutex";
    case Over::rmutex:
      return "RecursiveMutex";
    case Over::own:
      return "OwnLock";
  }
  return "?";
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Locks, ConditionOver, ::testing::Values(Over::mutex, Over::rmutex, Over::own), over_name);

TEST_P(ConditionOver, IsLockableThroughItsLock) {
  {
    std::unique_lock lk(c);
    if (GetParam() == Over::mutex) {
      EXPECT_TRUE(f.m.is_locked());
    }
    if (GetParam() == Over::rmutex) {
      EXPECT_TRUE(f.rm.is_owned());
    }
    EXPECT_EQ(c.waiting(), 0u);
  }
  EXPECT_FALSE(f.m.is_locked());
  EXPECT_FALSE(f.rm.is_owned());
  EXPECT_TRUE(c.try_lock());
  c.unlock();
}

TEST_P(ConditionOver, NotifyWakesAWaiter) {
  bool ready = false;
  int data = 0;
  std::thread t([&] {
    std::unique_lock lk(c);
    while (!ready) c.wait();
    EXPECT_EQ(data, 7);
  });
  ASSERT_TRUE(await_waiting(c, 1));
  {
    std::unique_lock lk(c);
    data = 7;
    ready = true;
    c.notify();
  }
  t.join();
  EXPECT_EQ(waiting(c), 0u);
}

TEST_P(ConditionOver, WaitForTimesOutReturningFalseWithTheLockHeld) {
  std::unique_lock lk(c);
  const Stopwatch sw;
  EXPECT_FALSE(c.wait_for(20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_EQ(c.waiting(), 0u);  // the timed-out waiter left the queue
  if (GetParam() == Over::mutex) {
    EXPECT_TRUE(f.m.is_locked());
  }
  if (GetParam() == Over::rmutex) {
    EXPECT_EQ(f.rm.depth(), 1u);
  }
}

TEST_P(ConditionOver, WaitUntilTimesOutWithSteadyAndSystemClocks) {
  std::unique_lock lk(c);
  Stopwatch sw;
  EXPECT_FALSE(c.wait_until(std::chrono::steady_clock::now() + 20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  sw = Stopwatch();
  EXPECT_FALSE(c.wait_until(std::chrono::system_clock::now() + 20ms));
  EXPECT_GE(sw.elapsed(), 19ms);
  EXPECT_FALSE(c.wait_for(0ms));
  EXPECT_FALSE(c.wait_for(-1s));
  EXPECT_FALSE(c.wait_until(std::chrono::system_clock::now() - 1s));
}

TEST_P(ConditionOver, PredicateFormsReturnThePredicatesLastValue) {
  std::unique_lock lk(c);
  int calls = 0;
  // Already true: no wait, even with a zero timeout.
  EXPECT_TRUE(c.wait_for(0ms, [&] { return ++calls > 0; }));
  EXPECT_EQ(calls, 1);
  c.wait([] { return true; });
  EXPECT_TRUE(c.wait_until(std::chrono::system_clock::now() - 1s, [] { return true; }));
  // Never true: false after the timeout.
  const Stopwatch sw;
  EXPECT_FALSE(c.wait_for(20ms, [] { return false; }));
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_FALSE(c.wait_until(std::chrono::steady_clock::now() + 10ms, [] { return false; }));
}

TEST_P(ConditionOver, PredicateWaitReturnsOnceTheConditionHolds) {
  // Two notifies find the predicate still false: both forms wait again, and
  // return only at the third, with the predicate true. (A form that
  // returned after one wake-up would be seen here, not as a hang: the
  // notifier stops as soon as the waiter is done.)
  for (const bool timed : {true, false}) {
    SCOPED_TRACE(timed ? "wait_for(timeout, pred)" : "wait(pred)");
    int stage = 0;
    int seen = -1;
    std::atomic<bool> done{false};
    std::thread t([&] {
      std::unique_lock lk(c);
      const auto reached = [&] { return stage == 3; };
      if (timed) {
        EXPECT_TRUE(c.wait_for(keel_test::hang_limit, reached));
      } else {
        c.wait(reached);
      }
      seen = stage;
      done.store(true);
    });
    for (int s = 1; s <= 3; ++s) {
      EXPECT_TRUE(eventually([&] { return waiting(c) == 1 || done.load(); }));
      if (done.load()) break;
      std::unique_lock lk(c);
      stage = s;
      c.notify_all();
    }
    t.join();
    EXPECT_EQ(seen, 3);
  }
}

TEST_P(ConditionOver, NotifyNWakesExactlyNOfKWaiters) {
  constexpr int k = 5;
  int woken = 0;
  keel_test::Threads ts;
  for (int i = 0; i < k; ++i) {
    ts.spawn([&] {
      std::unique_lock lk(c);
      c.wait();  // no spurious returns: only a notify ends this wait
      ++woken;
    });
  }
  ASSERT_TRUE(await_waiting(c, k));
  {
    std::unique_lock lk(c);
    c.notify(2);
    EXPECT_EQ(c.waiting(), static_cast<std::size_t>(k - 2));
  }
  ASSERT_TRUE(eventually([&] {
    std::unique_lock lk(c);
    return woken == 2;
  }));
  std::this_thread::sleep_for(20ms);
  {
    std::unique_lock lk(c);
    EXPECT_EQ(woken, 2);
    EXPECT_EQ(c.waiting(), static_cast<std::size_t>(k - 2));
    c.notify(1);
    EXPECT_EQ(c.waiting(), static_cast<std::size_t>(k - 3));
  }
  ASSERT_TRUE(eventually([&] {
    std::unique_lock lk(c);
    return woken == 3;
  }));
  {
    std::unique_lock lk(c);
    c.notify_all();
    EXPECT_EQ(c.waiting(), 0u);
  }
  ts.join();
  EXPECT_EQ(woken, k);
}

TEST_P(ConditionOver, NotifyMoreThanWaitingWakesAll) {
  constexpr int k = 3;
  int woken = 0;
  keel_test::Threads ts;
  for (int i = 0; i < k; ++i) {
    ts.spawn([&] {
      std::unique_lock lk(c);
      c.wait();
      ++woken;
    });
  }
  ASSERT_TRUE(await_waiting(c, k));
  {
    std::unique_lock lk(c);
    c.notify(10);
    EXPECT_EQ(c.waiting(), 0u);
  }
  ts.join();
  EXPECT_EQ(woken, k);
}

TEST_P(ConditionOver, NotifyAllWakesAllWaiters) {
  constexpr int k = 4;
  std::atomic<int> woken{0};
  keel_test::Threads ts;
  for (int i = 0; i < k; ++i) {
    ts.spawn([&, i] {
      std::unique_lock lk(c);
      if (i % 2 == 0) {
        c.wait();
      } else {
        EXPECT_TRUE(c.wait_for(keel_test::hang_limit));
      }
      woken.fetch_add(1);
    });
  }
  ASSERT_TRUE(await_waiting(c, k));
  {
    std::unique_lock lk(c);
    c.notify_all();
  }
  ts.join();
  EXPECT_EQ(woken.load(), k);
}

TEST_P(ConditionOver, NotifyWithoutWaitersIsANoOp) {
  std::unique_lock lk(c);
  c.notify();
  c.notify(0);
  c.notify(5);
  c.notify_all();
  EXPECT_EQ(c.waiting(), 0u);
  // A notify before the wait is not remembered.
  EXPECT_FALSE(c.wait_for(10ms));
}

TEST_P(ConditionOver, NotifyZeroWakesNobody) {
  std::atomic<int> woken{0};
  std::thread t([&] {
    std::unique_lock lk(c);
    c.wait();
    woken.fetch_add(1);
  });
  ASSERT_TRUE(await_waiting(c, 1));
  {
    std::unique_lock lk(c);
    // A throw here would unwind past the joinable waiter (std::terminate):
    // report it as this test's failure instead.
    EXPECT_NO_THROW(c.notify(0));
    EXPECT_EQ(c.waiting(), 1u);
  }
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(woken.load(), 0);
  {
    std::unique_lock lk(c);
    c.notify();
  }
  t.join();
  EXPECT_EQ(woken.load(), 1);
}

TEST_P(ConditionOver, WakeupsAreFifo) {
  constexpr int k = 5;
  std::vector<int> order;
  keel_test::Threads ts;
  for (int i = 0; i < k; ++i) {
    ts.spawn([&, i] {
      std::unique_lock lk(c);
      c.wait();
      order.push_back(i);
    });
    ASSERT_TRUE(await_waiting(c, static_cast<std::size_t>(i + 1)));  // queue in a known order
  }
  for (int i = 0; i < k; ++i) {
    {
      std::unique_lock lk(c);
      c.notify(1);
    }
    ASSERT_TRUE(eventually([&] {
      std::unique_lock lk(c);
      return order.size() == static_cast<std::size_t>(i + 1);
    }));
  }
  ts.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST_P(ConditionOver, NotifyTwoWakesTheTwoOldestWaiters) {
  constexpr int k = 4;
  std::vector<int> woken;
  keel_test::Threads ts;
  for (int i = 0; i < k; ++i) {
    ts.spawn([&, i] {
      std::unique_lock lk(c);
      c.wait();
      woken.push_back(i);
    });
    ASSERT_TRUE(await_waiting(c, static_cast<std::size_t>(i + 1)));
  }
  {
    std::unique_lock lk(c);
    c.notify(2);
  }
  ASSERT_TRUE(eventually([&] {
    std::unique_lock lk(c);
    return woken.size() == 2;
  }));
  {
    std::unique_lock lk(c);
    std::vector<int> first = woken;
    std::sort(first.begin(), first.end());
    EXPECT_EQ(first, (std::vector<int>{0, 1}));
    c.notify_all();
  }
  ts.join();
}

TEST_P(ConditionOver, WaitingCountsWaitersAndDropsTimedOutOnes) {
  std::atomic<int> timed_out{0};
  keel_test::Threads ts;
  ts.spawn([&] {
    std::unique_lock lk(c);
    c.wait();
  });
  ASSERT_TRUE(await_waiting(c, 1));
  ts.spawn([&] {
    std::unique_lock lk(c);
    if (!c.wait_for(30ms)) timed_out.fetch_add(1);
  });
  ASSERT_TRUE(eventually([&] { return timed_out.load() == 1; }));
  EXPECT_EQ(waiting(c), 1u);
  {
    std::unique_lock lk(c);
    c.notify();
    EXPECT_EQ(c.waiting(), 0u);
  }
  ts.join();
}

TEST_P(ConditionOver, TimedOutWaiterDoesNotSwallowANotify) {
  // The notify after a timeout must reach the waiter still waiting.
  std::atomic<int> a_result{-1};
  std::atomic<bool> b_woken{false};
  keel_test::Threads ts;
  ts.spawn([&] {
    std::unique_lock lk(c);
    a_result.store(c.wait_for(20ms) ? 1 : 0);
  });
  ASSERT_TRUE(await_waiting(c, 1));
  ts.spawn([&] {
    std::unique_lock lk(c);
    c.wait();
    b_woken.store(true);
  });
  ASSERT_TRUE(eventually([&] { return a_result.load() != -1; }));
  EXPECT_EQ(a_result.load(), 0);
  ASSERT_TRUE(await_waiting(c, 1));
  {
    std::unique_lock lk(c);
    c.notify(1);
  }
  ASSERT_TRUE(eventually([&] { return b_woken.load(); }));
  ts.join();
}

TEST_P(ConditionOver, NotifyAndWaitWithoutTheLockThrowAndChangeNothing) {
  EXPECT_THROW(c.notify(), keel::LockNotHeldError);
  EXPECT_THROW(c.notify(3), keel::LockNotHeldError);
  EXPECT_THROW(c.notify_all(), keel::LockNotHeldError);
  EXPECT_THROW(c.wait(), keel::LockNotHeldError);
  EXPECT_THROW(c.wait_for(10ms), keel::LockNotHeldError);
  EXPECT_THROW(c.wait_until(std::chrono::steady_clock::now() + 10ms), keel::LockNotHeldError);
  EXPECT_THROW(c.wait_for(10ms, [] { return false; }), keel::LockNotHeldError);
  EXPECT_THROW(c.waiting(), keel::LockNotHeldError);
  // Nothing was taken or queued.
  EXPECT_FALSE(f.m.is_locked());
  EXPECT_FALSE(f.rm.is_owned());
  std::unique_lock lk(c);
  EXPECT_EQ(c.waiting(), 0u);
}

TEST_P(ConditionOver, NotifyNegativeThrowsValueError) {
  std::unique_lock lk(c);
  EXPECT_THROW(c.notify(-1), keel::ValueError);
  EXPECT_THROW(c.notify(std::numeric_limits<int>::min()), keel::ValueError);
  EXPECT_EQ(c.waiting(), 0u);
}

TEST_P(ConditionOver, NotifyWhileHoldingTheLockDelaysTheWaiterUntilUnlock) {
  std::atomic<bool> returned{false};
  std::thread t([&] {
    std::unique_lock lk(c);
    c.wait();
    returned.store(true);
  });
  ASSERT_TRUE(await_waiting(c, 1));
  {
    std::unique_lock lk(c);
    c.notify();
    std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(returned.load());  // it needs the lock back first
  }
  t.join();
  EXPECT_TRUE(returned.load());
}

// A Condition over a RecursiveMutex held by another thread: not held by us.
TEST(Condition, OverRecursiveMutexOwnedByAnotherThreadThrows) {
  keel::RecursiveMutex rm;
  keel::Condition c(rm);
  std::atomic<bool> locked{false};
  std::atomic<bool> release{false};
  std::thread owner([&] {
    rm.lock();
    locked.store(true);
    while (!release.load()) std::this_thread::sleep_for(1ms);
    rm.unlock();
  });
  ASSERT_TRUE(eventually([&] { return locked.load(); }));
  EXPECT_THROW(c.notify(), keel::LockNotHeldError);
  EXPECT_THROW(c.wait_for(1ms), keel::LockNotHeldError);
  release.store(true);
  owner.join();
}

// Over a Mutex, which has no owner, "held" means locked by anyone: a thread
// may notify while another thread holds the lock (documented contract).
TEST(Condition, OverMutexHeldByAnotherThreadCountsAsHeld) {
  keel::Mutex m;
  keel::Condition c(m);
  std::atomic<bool> locked{false};
  std::atomic<bool> release{false};
  std::thread holder([&] {
    m.lock();
    locked.store(true);
    while (!release.load()) std::this_thread::sleep_for(1ms);
    m.unlock();
  });
  ASSERT_TRUE(eventually([&] { return locked.load(); }));
  EXPECT_NO_THROW(c.notify());
  EXPECT_NO_THROW(c.notify_all());
  EXPECT_EQ(c.waiting(), 0u);
  release.store(true);
  holder.join();
  EXPECT_THROW(c.notify(), keel::LockNotHeldError);
}

TEST(Condition, WaitRestoresARecursiveMutexHeldAtDepthThree) {
  keel::RecursiveMutex rm;
  keel::Condition c(rm);
  bool ready = false;
  std::atomic<std::uint32_t> depth_after{0};
  std::atomic<int> result{-1};
  std::thread t([&] {
    rm.lock();
    rm.lock();
    rm.lock();
    bool ok = true;
    while (!ready && ok) ok = c.wait_for(keel_test::hang_limit);
    result.store(ok ? 1 : 0);
    depth_after.store(rm.depth());
    rm.unlock();
    rm.unlock();
    rm.unlock();
  });
  ASSERT_TRUE(await_waiting(c, 1));
  // The waiter released all three levels, so this thread can take the lock.
  ASSERT_TRUE(rm.try_lock_for(keel_test::hang_limit));
  EXPECT_EQ(rm.depth(), 1u);
  ready = true;
  c.notify();
  rm.unlock();
  t.join();
  EXPECT_EQ(result.load(), 1);
  EXPECT_EQ(depth_after.load(), 3u);
  EXPECT_FALSE(rm.is_owned());
}

TEST(Condition, TimedOutWaitRestoresRecursiveDepth) {
  keel::RecursiveMutex rm;
  keel::Condition c(rm);
  rm.lock();
  rm.lock();
  rm.lock();
  EXPECT_FALSE(c.wait_for(10ms));
  EXPECT_EQ(rm.depth(), 3u);
  EXPECT_FALSE(c.wait_for(5ms, [] { return false; }));
  EXPECT_EQ(rm.depth(), 3u);
  rm.unlock();
  rm.unlock();
  rm.unlock();
  EXPECT_FALSE(rm.is_owned());
}

TEST(Condition, DefaultConstructedUsesItsOwnRecursiveLock) {
  keel::Condition c;
  c.lock();
  c.lock();  // recursive, like Python's Condition() over an RLock
  EXPECT_TRUE(c.try_lock());
  c.unlock();
  c.unlock();
  EXPECT_FALSE(c.wait_for(5ms));  // still held once: a valid wait
  c.unlock();
  EXPECT_THROW(c.notify(), keel::LockNotHeldError);
  bool other_got = false;
  std::thread([&] {
    other_got = c.try_lock();
    if (other_got) c.unlock();
  }).join();
  EXPECT_TRUE(other_got);
}

TEST(Condition, OverMutexWithScopedLockAndSharedLock) {
  keel::Mutex m;
  keel::Condition c1(m);
  keel::Condition c2(m);  // two conditions over one lock, as in a bounded queue
  int items = 0;
  std::thread consumer([&] {
    std::unique_lock lk(m);
    c1.wait([&] { return items > 0; });
    --items;
    c2.notify();
  });
  ASSERT_TRUE(await_waiting(c1, 1));
  {
    std::scoped_lock lk(m);
    ++items;
    c1.notify();
    EXPECT_TRUE(c2.wait_for(keel_test::hang_limit, [&] { return items == 0; }));
  }
  consumer.join();
  EXPECT_EQ(items, 0);
}
