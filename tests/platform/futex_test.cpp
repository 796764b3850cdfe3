// keel::platform futex_wait / futex_wake (native Linux backend).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/thread.hpp"

using namespace std::chrono_literals;
using keel::platform::Deadline;
using keel::platform::futex_wait;
using keel::platform::futex_wake;
using keel::platform::FutexWord;
using keel::platform::WaitResult;

TEST(Futex, WordIsExactlyThirtyTwoBits) {
  static_assert(sizeof(FutexWord) == sizeof(std::int32_t));
  SUCCEED();
}

TEST(Futex, WaitReturnsMismatchWhenTheValueDiffers) {
  FutexWord w{5};
  EXPECT_EQ(futex_wait(w, 4), WaitResult::mismatch);
  EXPECT_EQ(futex_wait(w, 4, Deadline::after(10s)), WaitResult::mismatch);
  EXPECT_EQ(futex_wait(w, -5, Deadline::after(10s)), WaitResult::mismatch);
  EXPECT_EQ(w.load(std::memory_order_seq_cst), 5);
}

TEST(Futex, WaitTimesOutAfterAShortDeadline) {
  FutexWord w{0};
  const keel_test::Stopwatch sw;
  const Deadline d = Deadline::after(20ms);
  WaitResult r;
  // May return early (woken) for any reason; only timed_out ends the wait.
  do {
    r = futex_wait(w, 0, d);
  } while (r == WaitResult::woken);
  EXPECT_EQ(r, WaitResult::timed_out);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_TRUE(d.expired());
}

TEST(Futex, ExpiredDeadlineTimesOutWithoutSleeping) {
  FutexWord w{0};
  EXPECT_EQ(futex_wait(w, 0, Deadline::after(0ns)), WaitResult::timed_out);
  EXPECT_EQ(futex_wait(w, 0, Deadline::after(-1s)), WaitResult::timed_out);
  EXPECT_EQ(futex_wait(w, 0, Deadline::at(keel::platform::SteadyClock::now() - 1s)), WaitResult::timed_out);
}

TEST(Futex, WakeWithoutWaitersWakesNobody) {
  FutexWord w{0};
  EXPECT_EQ(futex_wake(w, 1), 0);
  EXPECT_EQ(futex_wake(w, keel::platform::wake_all), 0);
}

TEST(Futex, WakeWakesASleeper) {
  FutexWord w{0};
  std::atomic<bool> done{false};
  keel_test::TidThread t([&] {
    while (w.load(std::memory_order_acquire) == 0) futex_wait(w, 0);
    done.store(true);
  });
  const bool confirmed = t.wait_blocked(&w.native_object());
  EXPECT_FALSE(done.load());
  w.store(1, std::memory_order_release);
  const int woken = futex_wake(w, 1);
  if (confirmed) {
    EXPECT_EQ(woken, 1);
  }
  t.join();
  EXPECT_TRUE(done.load());
}

TEST(Futex, WakeCountsAndBoundsTheWokenThreads) {
  constexpr int k = 3;
  FutexWord w{0};
  std::atomic<int> returned{0};
  std::vector<std::unique_ptr<keel_test::TidThread>> ts;
  for (int i = 0; i < k; ++i) {
    ts.push_back(std::make_unique<keel_test::TidThread>([&] {
      // Sleeps until woken with the value still 0, or the value changes.
      while (futex_wait(w, 0) != WaitResult::woken && w.load(std::memory_order_seq_cst) == 0) {
      }
      returned.fetch_add(1);
    }));
  }
  bool confirmed = true;
  for (auto& t : ts) confirmed = t->wait_blocked(&w.native_object()) && confirmed;
  if (confirmed) {
    EXPECT_EQ(futex_wake(w, 2), 2);
    ASSERT_TRUE(keel_test::eventually([&] { return returned.load() >= 2; }));
    std::this_thread::sleep_for(10ms);
    EXPECT_EQ(returned.load(), 2);  // the third still sleeps
    EXPECT_EQ(futex_wake(w, keel::platform::wake_all), 1);
  } else {
    w.store(1, std::memory_order_seq_cst);
    futex_wake(w, keel::platform::wake_all);
  }
  for (auto& t : ts) t->join();
  EXPECT_EQ(returned.load(), k);
}

// A count of zero wakes nobody, as in the models' futex (Linux's syscall
// would wake one): a wake count reduced to zero is a wake dropped, and shows.
TEST(Futex, WakeOfZeroOrFewerWakesNobody) {
  FutexWord w{0};
  std::atomic<int> returned{0};
  keel_test::TidThread t([&] {
    while (w.load(std::memory_order_seq_cst) == 0) {
      futex_wait(w, 0);
      returned.fetch_add(1);
    }
  });
  if (t.wait_blocked(&w.native_object())) {
    EXPECT_EQ(futex_wake(w, 0), 0);
    EXPECT_EQ(futex_wake(w, -1), 0);
    std::this_thread::sleep_for(10ms);
    EXPECT_EQ(returned.load(), 0);
    EXPECT_EQ(futex_wake(w, 1), 1);  // it was asleep all along
  }
  w.store(1, std::memory_order_seq_cst);
  futex_wake(w, keel::platform::wake_all);
  t.join();
}

TEST(Futex, TimedWaitIsWokenBeforeItsDeadline) {
  FutexWord w{0};
  std::atomic<int> result{-1};
  keel_test::TidThread t([&] {
    const Deadline d = Deadline::after(keel_test::hang_limit);
    WaitResult r = WaitResult::woken;
    while (w.load(std::memory_order_seq_cst) == 0 && (r = futex_wait(w, 0, d)) != WaitResult::timed_out) {
    }
    result.store(w.load(std::memory_order_seq_cst) == 1 ? 1 : 0);
  });
  t.wait_blocked(&w.native_object());
  w.store(1, std::memory_order_seq_cst);
  futex_wake(w, 1);
  t.join();
  EXPECT_EQ(result.load(), 1);
}

TEST(PlatformThread, IdsAreNonZeroAndDistinctAmongLiveThreads) {
  const auto mine = keel::platform::current_thread_id();
  EXPECT_NE(mine, 0u);
  EXPECT_EQ(mine, keel::platform::current_thread_id());
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::thread ta([&] { a = keel::platform::current_thread_id(); });
  std::thread tb([&] { b = keel::platform::current_thread_id(); });
  ta.join();
  tb.join();
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_NE(a, b);
  EXPECT_NE(a, mine);
  EXPECT_NE(b, mine);
}

TEST(PlatformThread, ThreadRunsAndJoins) {
  int ran = 0;
  keel::platform::Thread t([&] { ran = 1; });
  EXPECT_TRUE(t.joinable());
  t.join();
  EXPECT_FALSE(t.joinable());
  EXPECT_EQ(ran, 1);
}
