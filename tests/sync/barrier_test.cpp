// keel::Barrier semantics (Python's threading.Barrier).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/sync/barrier.hpp"

using namespace std::chrono_literals;
using keel_test::eventually;
using keel_test::Stopwatch;

namespace {

// What one wait() produced.
struct Outcome {
  long index = -1;  // arrival index, or -1
  bool broken = false;
  bool other_error = false;
};

// Runs wait_fn (which calls some form of Barrier::wait) and records the outcome.
template <class F>
Outcome run_wait(F wait_fn) {
  Outcome o;
  try {
    o.index = static_cast<long>(wait_fn());
  } catch (const keel::BrokenBarrierError&) {
    o.broken = true;
  } catch (...) {
    o.other_error = true;
  }
  return o;
}

struct ActionError : std::runtime_error {
  ActionError() : std::runtime_error("action failed") {}
};

}  // namespace

TEST(Barrier, ZeroPartiesThrowsValueError) {
  EXPECT_THROW(keel::Barrier(0), keel::ValueError);
  // A negative default timeout is a timeout of zero, not an error (keel/timeout.hpp).
  EXPECT_NO_THROW(keel::Barrier(2, {}, std::chrono::nanoseconds(-1)));
  keel::Barrier b(3);
  EXPECT_EQ(b.parties(), 3u);
  EXPECT_EQ(b.n_waiting(), 0u);
  EXPECT_FALSE(b.broken());
}

TEST(Barrier, SinglePartyNeverWaits) {
  // CPython's test_single_thread.
  int actions = 0;
  keel::Barrier b(1, [&] { ++actions; });
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.wait(), 0u);
  EXPECT_EQ(b.wait_for(0ms), 0u);
  EXPECT_EQ(actions, 6);
  EXPECT_FALSE(b.broken());
}

TEST(Barrier, IndicesAreDistinctAndCoverAllParties) {
  constexpr int parties = 4;
  const int generations = keel_test::scaled(20, 3);
  keel::Barrier b(parties);
  std::mutex mu;
  std::vector<std::vector<std::size_t>> seen(generations);
  keel_test::Threads ts;
  for (int t = 0; t < parties; ++t) {
    ts.spawn([&] {
      for (int g = 0; g < generations; ++g) {
        const std::size_t idx = b.wait();
        std::scoped_lock lk(mu);
        seen[g].push_back(idx);
      }
    });
  }
  ts.join();
  for (int g = 0; g < generations; ++g) {
    std::vector<std::size_t> v = seen[g];
    std::sort(v.begin(), v.end());
    EXPECT_EQ(v, (std::vector<std::size_t>{0, 1, 2, 3})) << "generation " << g;
  }
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, IndexIsTheArrivalOrder) {
  keel::Barrier b(3);
  std::atomic<long> first{-1};
  std::atomic<long> second{-1};
  std::thread t1([&] { first.store(static_cast<long>(b.wait())); });
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == 1; }));
  std::thread t2([&] { second.store(static_cast<long>(b.wait())); });
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == 2; }));
  EXPECT_EQ(b.wait(), 2u);  // the last arrival
  t1.join();
  t2.join();
  EXPECT_EQ(first.load(), 0);
  EXPECT_EQ(second.load(), 1);
}

TEST(Barrier, ActionRunsOncePerGenerationInTheLastArrivingThreadBeforeRelease) {
  constexpr int parties = 3;
  const int generations = keel_test::scaled(10, 3);
  std::mutex mu;
  int actions = 0;
  std::thread::id action_thread;
  keel::Barrier b(parties, [&] {
    std::scoped_lock lk(mu);
    ++actions;
    action_thread = std::this_thread::get_id();
  });
  std::atomic<int> early{0};
  std::atomic<int> wrong_thread{0};
  keel_test::Threads ts;
  for (int t = 0; t < parties; ++t) {
    ts.spawn([&] {
      for (int g = 0; g < generations; ++g) {
        // Generation g+1's action needs this thread's next arrival, so on
        // return the count is exactly this generation's.
        const std::size_t idx = b.wait();
        std::scoped_lock lk(mu);
        if (actions != g + 1) early.fetch_add(1);
        if (idx == parties - 1 && action_thread != std::this_thread::get_id()) wrong_thread.fetch_add(1);
      }
    });
  }
  ts.join();
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(actions, generations);
}

TEST(Barrier, ActionThreadIsTheOneWithTheLastIndex) {
  std::thread::id action_tid;
  keel::Barrier b(2, [&] { action_tid = std::this_thread::get_id(); });
  std::thread::id last_tid;
  std::mutex mu;
  auto body = [&] {
    if (b.wait() == 1) {
      std::scoped_lock lk(mu);
      last_tid = std::this_thread::get_id();
    }
  };
  std::thread t1(body);
  std::thread t2(body);
  t1.join();
  t2.join();
  EXPECT_EQ(action_tid, last_tid);
}

TEST(Barrier, ThrowingActionBreaksTheBarrierAndRethrowsInThatThread) {
  constexpr int parties = 3;
  keel::Barrier b(parties, [] { throw ActionError(); });
  std::vector<Outcome> outcomes(parties);
  std::vector<bool> action_error(parties, false);
  keel_test::Threads ts;
  for (int i = 0; i < parties; ++i) {
    ts.spawn([&, i] {
      try {
        outcomes[i].index = static_cast<long>(b.wait());
      } catch (const ActionError&) {
        action_error[i] = true;
      } catch (const keel::BrokenBarrierError&) {
        outcomes[i].broken = true;
      }
    });
  }
  ts.join();
  EXPECT_EQ(std::count(action_error.begin(), action_error.end(), true), 1);
  int broken = 0;
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.index, -1);
    broken += o.broken;
  }
  EXPECT_EQ(broken, parties - 1);
  EXPECT_TRUE(b.broken());
  EXPECT_THROW(b.wait(), keel::BrokenBarrierError);
}

TEST(Barrier, TimeoutBreaksItForAllWaiters) {
  keel::Barrier b(3);
  Outcome patient;
  std::thread t([&] { patient = run_wait([&] { return b.wait(); }); });
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == 1; }));
  const Stopwatch sw;
  const Outcome hasty = run_wait([&] { return b.wait_for(20ms); });
  EXPECT_GE(sw.elapsed(), 20ms);
  t.join();
  EXPECT_TRUE(hasty.broken);
  EXPECT_TRUE(patient.broken);
  EXPECT_TRUE(b.broken());
  EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, WaitUntilWithSystemClockTimesOut) {
  keel::Barrier b(2);
  const Stopwatch sw;
  EXPECT_THROW(b.wait_until(std::chrono::system_clock::now() + 20ms), keel::BrokenBarrierError);
  EXPECT_GE(sw.elapsed(), 19ms);
  EXPECT_TRUE(b.broken());
}

TEST(Barrier, DefaultTimeoutAppliesToWait) {
  keel::Barrier b(2, {}, std::chrono::milliseconds(20));
  const Stopwatch sw;
  EXPECT_THROW(b.wait(), keel::BrokenBarrierError);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_TRUE(b.broken());
}

TEST(Barrier, ExplicitTimeoutOverridesTheDefault) {
  keel::Barrier b(2, {}, std::chrono::milliseconds(5));
  std::atomic<long> other{-1};
  std::thread t([&] { other.store(static_cast<long>(b.wait_for(keel_test::hang_limit))); });
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == 1; }));
  std::this_thread::sleep_for(20ms);  // longer than the default
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.wait(), 1u);
  t.join();
  EXPECT_EQ(other.load(), 0);
}

TEST(Barrier, AbortBreaksWaitersAndLaterArrivals) {
  keel::Barrier b(3);
  Outcome o1;
  Outcome o2;
  std::thread t1([&] { o1 = run_wait([&] { return b.wait(); }); });
  std::thread t2([&] { o2 = run_wait([&] { return b.wait_for(keel_test::hang_limit); }); });
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == 2; }));
  b.abort();
  t1.join();
  t2.join();
  EXPECT_TRUE(o1.broken);
  EXPECT_TRUE(o2.broken);
  EXPECT_TRUE(b.broken());
  EXPECT_THROW(b.wait(), keel::BrokenBarrierError);
  EXPECT_THROW(b.wait_for(10s), keel::BrokenBarrierError);
  EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, AbortWithoutWaitersThenResetMakesItUsable) {
  keel::Barrier b(2);
  b.abort();
  EXPECT_TRUE(b.broken());
  b.reset();
  EXPECT_FALSE(b.broken());
  std::thread t([&] { b.wait(); });
  b.wait();
  t.join();
  EXPECT_FALSE(b.broken());
}

TEST(Barrier, ResetWhileThreadsWaitBreaksThemAndLeavesItUsable) {
  constexpr int parties = 3;
  keel::Barrier b(parties);
  Outcome o1;
  Outcome o2;
  std::thread t1([&] { o1 = run_wait([&] { return b.wait(); }); });
  std::thread t2([&] { o2 = run_wait([&] { return b.wait(); }); });
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == 2; }));
  b.reset();
  t1.join();
  t2.join();
  EXPECT_TRUE(o1.broken);
  EXPECT_TRUE(o2.broken);
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.n_waiting(), 0u);
  // A full generation passes afterwards.
  std::vector<Outcome> outs(parties);
  keel_test::Threads ts;
  for (int i = 0; i < parties; ++i) {
    ts.spawn([&, i] { outs[i] = run_wait([&] { return b.wait_for(keel_test::hang_limit); }); });
  }
  ts.join();
  std::set<long> idx;
  for (const auto& o : outs) {
    EXPECT_FALSE(o.broken);
    idx.insert(o.index);
  }
  EXPECT_EQ(idx, (std::set<long>{0, 1, 2}));
}

TEST(Barrier, AbortThenResetWithWaitersThenReuse) {
  // CPython's test_abort_and_reset, in outline: a broken barrier is reset by
  // one thread while the others leave, then all pass it again.
  constexpr int parties = 3;
  keel::Barrier b(parties);
  std::vector<Outcome> first(parties - 1);
  keel_test::Threads ts;
  for (int i = 0; i < parties - 1; ++i) {
    ts.spawn([&, i] { first[i] = run_wait([&] { return b.wait(); }); });
  }
  ASSERT_TRUE(eventually([&] { return b.n_waiting() == parties - 1; }));
  b.abort();
  b.reset();  // possibly before the aborted waiters have left
  ts.join();
  for (const auto& o : first) EXPECT_TRUE(o.broken);
  EXPECT_FALSE(b.broken());
  std::vector<Outcome> second(parties);
  for (int i = 0; i < parties; ++i) {
    ts.spawn([&, i] { second[i] = run_wait([&] { return b.wait_for(keel_test::hang_limit); }); });
  }
  ts.join();
  std::set<long> idx;
  for (const auto& o : second) idx.insert(o.index);
  EXPECT_EQ(idx, (std::set<long>{0, 1, 2}));
}

TEST(Barrier, NWaitingCountsThreadsOfTheFillingGeneration) {
  keel::Barrier b(4);
  keel_test::Threads ts;
  std::atomic<int> done{0};
  for (int i = 1; i <= 3; ++i) {
    ts.spawn([&] {
      b.wait();
      done.fetch_add(1);
    });
    ASSERT_TRUE(eventually([&] { return b.n_waiting() == static_cast<std::size_t>(i); }));
    EXPECT_FALSE(b.broken());
  }
  EXPECT_EQ(b.wait(), 3u);
  ts.join();
  EXPECT_EQ(done.load(), 3);
  EXPECT_EQ(b.n_waiting(), 0u);
}

TEST(Barrier, ReusableAcrossManyGenerations) {
  constexpr int parties = 3;
  const int generations = keel_test::scaled(200, 20);
  keel::Barrier b(parties);
  std::atomic<int> phase_errors{0};
  std::atomic<int> counter{0};
  keel_test::Threads ts;
  for (int t = 0; t < parties; ++t) {
    ts.spawn([&] {
      for (int g = 0; g < generations; ++g) {
        counter.fetch_add(1);
        b.wait();
        // Everyone of generation g has counted before anyone returns.
        if (counter.load() < (g + 1) * parties) phase_errors.fetch_add(1);
        b.wait();
      }
    });
  }
  ts.join();
  EXPECT_EQ(phase_errors.load(), 0);
  EXPECT_EQ(counter.load(), parties * generations);
}
