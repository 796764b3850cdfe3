// keel::Timer semantics (Python's threading.Timer).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

#include "../support/test_support.hpp"
#include "keel/sync/timer.hpp"

using namespace std::chrono_literals;
using keel_test::eventually;
using keel_test::Stopwatch;

TEST(Timer, FiresOnceAfterTheInterval) {
  std::atomic<int> calls{0};
  std::atomic<std::int64_t> fired_after_ns{0};
  const Stopwatch sw;
  keel::Timer t(20ms, [&] {
    fired_after_ns.store(sw.elapsed().count());
    calls.fetch_add(1);
  });
  EXPECT_FALSE(t.fired());
  EXPECT_FALSE(t.finished());
  t.start();
  t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_GE(std::chrono::nanoseconds(fired_after_ns.load()), 20ms);
  EXPECT_TRUE(t.fired());
  EXPECT_FALSE(t.cancelled());
  EXPECT_TRUE(t.finished());
  EXPECT_FALSE(t.error());
}

TEST(Timer, ZeroIntervalFiresPromptly) {
  std::atomic<int> calls{0};
  keel::Timer t(0ms, [&] { calls.fetch_add(1); });
  t.start();
  t.join();
  EXPECT_EQ(calls.load(), 1);
}

TEST(Timer, DoesNotFireBeforeStart) {
  std::atomic<int> calls{0};
  {
    keel::Timer t(0ms, [&] { calls.fetch_add(1); });
    std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(t.fired());
  }
  EXPECT_EQ(calls.load(), 0);
}

TEST(Timer, CancelBeforeFiringPreventsIt) {
  std::atomic<int> calls{0};
  keel::Timer t(keel_test::hang_limit, [&] { calls.fetch_add(1); });
  t.start();
  EXPECT_TRUE(t.cancel());
  EXPECT_TRUE(t.cancelled());
  t.join();  // the timer thread ends promptly: it does not sleep out the interval
  EXPECT_EQ(calls.load(), 0);
  EXPECT_FALSE(t.fired());
  EXPECT_TRUE(t.finished());
  EXPECT_TRUE(t.cancel());  // idempotent: still reports the prevention
}

TEST(Timer, CancelBeforeStartPreventsFiring) {
  std::atomic<int> calls{0};
  keel::Timer t(0ms, [&] { calls.fetch_add(1); });
  EXPECT_TRUE(t.cancel());
  EXPECT_TRUE(t.cancelled());
  EXPECT_TRUE(t.finished());
  t.start();
  t.join();
  EXPECT_EQ(calls.load(), 0);
  EXPECT_FALSE(t.fired());
}

TEST(Timer, CancelAfterFireIsANoOp) {
  std::atomic<int> calls{0};
  keel::Timer t(0ms, [&] { calls.fetch_add(1); });
  t.start();
  t.join();
  EXPECT_FALSE(t.cancel());
  EXPECT_FALSE(t.cancelled());
  EXPECT_TRUE(t.fired());
  EXPECT_EQ(calls.load(), 1);
}

TEST(Timer, CancelWhileTheCallableRunsDoesNotStopIt) {
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};
  keel::Timer t(0ms, [&] {
    started.store(true);
    while (!release.load()) std::this_thread::sleep_for(1ms);
    finished.store(true);
  });
  t.start();
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  EXPECT_TRUE(t.fired());
  EXPECT_FALSE(t.cancel());
  EXPECT_FALSE(t.finished());
  release.store(true);
  t.join();
  EXPECT_TRUE(finished.load());
  EXPECT_TRUE(t.finished());
}

TEST(Timer, DestructorCancelsAPendingTimer) {
  std::atomic<int> calls{0};
  {
    keel::Timer t(keel_test::hang_limit, [&] { calls.fetch_add(1); });
    t.start();
  }  // returns promptly: cancelled, joined
  EXPECT_EQ(calls.load(), 0);
}

TEST(Timer, DestructorJoinsARunningCallable) {
  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  {
    keel::Timer t(0ms, [&] {
      started.store(true);
      std::this_thread::sleep_for(20ms);
      finished.store(true);
    });
    t.start();
    ASSERT_TRUE(eventually([&] { return started.load(); }));
  }
  EXPECT_TRUE(finished.load());  // the destructor waited for the callable
}

TEST(Timer, StartTwiceThrowsMisuseError) {
  keel::Timer t(0ms, [] {});
  t.start();
  EXPECT_THROW(t.start(), keel::MisuseError);
  t.join();
  EXPECT_THROW(t.start(), keel::MisuseError);  // also once it has finished
}

TEST(Timer, CallableExceptionIsKeptInError) {
  keel::Timer t(0ms, [] { throw std::runtime_error("boom"); });
  t.start();
  t.join();
  EXPECT_TRUE(t.fired());
  EXPECT_TRUE(t.finished());
  ASSERT_TRUE(t.error());
  try {
    std::rethrow_exception(t.error());
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
}

TEST(Timer, InvalidArgumentsThrowValueError) {
  EXPECT_THROW(keel::Timer(-1ms, [] {}), keel::ValueError);
  EXPECT_THROW(keel::Timer(1ms, std::function<void()>{}), keel::ValueError);
}

TEST(Timer, JoinWithoutStartReturns) {
  keel::Timer t(1s, [] {});
  t.join();
  EXPECT_FALSE(t.fired());
}

TEST(Timer, CallableRunsOnAnotherThread) {
  std::thread::id ran_on;
  keel::Timer t(0ms, [&] { ran_on = std::this_thread::get_id(); });
  t.start();
  t.join();
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_NE(ran_on, std::thread::id());
}

TEST(Timer, CancelRacingTheExpiryRunsTheCallableAtMostOnce) {
  const int rounds = keel_test::scaled(100, 10);
  for (int r = 0; r < rounds; ++r) {
    std::atomic<int> calls{0};
    keel::Timer t(std::chrono::microseconds(r % 50), [&] { calls.fetch_add(1); });
    t.start();
    if (r % 3) std::this_thread::sleep_for(std::chrono::microseconds(r % 40));
    const bool prevented = t.cancel();
    t.join();
    ASSERT_EQ(calls.load(), prevented ? 0 : 1) << "round " << r;
    ASSERT_EQ(t.fired(), !prevented);
    ASSERT_EQ(t.cancelled(), prevented);
    ASSERT_TRUE(t.finished());
  }
}

// An interval too long to express in nanoseconds still means "a long time"
// (Python's Timer accepts any float, and keel's Deadline saturates huge
// durations to never). The constructor's conversion to nanoseconds is checked
// in a child process first, so that a UBSan abort on signed overflow fails
// this test only; the timer is started in this process only once that passed.
TEST(Timer, HugeIntervalIsAcceptedAndCancellable) {
  const auto huge = std::chrono::hours(24 * 365 * 1000);  // 1000 years: more than int64 nanoseconds hold
  const int code = keel_test::exit_code_in_child([huge] {
    try {
      keel::Timer t(huge, [] {});
    } catch (const keel::ValueError&) {
      return 2;
    }
    return 0;
  });
  ASSERT_EQ(code, 0)
      << "2: the constructor threw ValueError; other: the child died (UBSan reports the signed overflow and exits 1)";
  std::atomic<int> calls{0};
  keel::Timer t(huge, [&] { calls.fetch_add(1); });
  t.start();
  std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(t.fired());
  EXPECT_TRUE(t.cancel());
  t.join();
  EXPECT_EQ(calls.load(), 0);
}
