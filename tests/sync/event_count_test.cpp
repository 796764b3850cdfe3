// Tests of detail::EventCount (SYNC-16), the sleep of a lock-free thread
// pool's workers. Its Relacy model is in models/executor/hot_path_model.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/executor/task_ring.hpp"
#include "keel/sync/event_count.hpp"

using namespace std::chrono_literals;
using keel::platform::Deadline;
using keel::platform::WaitResult;

namespace {

TEST(EventCount, ANotifyAfterPrepareMakesTheWaitReturn) {
  keel::detail::EventCount ec;
  const auto key = ec.prepare_wait();
  EXPECT_EQ(ec.waiters(), 1);
  EXPECT_EQ(ec.notify(1), 0);  // nobody in futex_wait yet; the epoch moved
  // The word changed since the key was read: the wait does not sleep.
  EXPECT_EQ(ec.wait(key, Deadline::after(keel_test::hang_limit)), WaitResult::mismatch);
  EXPECT_EQ(ec.waiters(), 0);
}

TEST(EventCount, NotifyWithNobodyWaitingWakesNobody) {
  keel::detail::EventCount ec;
  EXPECT_EQ(ec.notify(1), 0);
  EXPECT_EQ(ec.notify(keel::platform::wake_all), 0);
  // Nothing registered, so nothing moved: a key taken now still sleeps.
  const auto key = ec.prepare_wait();
  ec.cancel_wait();
  EXPECT_EQ(ec.waiters(), 0);
  const auto again = ec.prepare_wait();
  EXPECT_EQ(again, key);
  ec.cancel_wait();
}

TEST(EventCount, TimedWaitTimesOut) {
  keel::detail::EventCount ec;
  const auto key = ec.prepare_wait();
  const keel_test::Stopwatch sw;
  EXPECT_EQ(ec.wait(key, Deadline::after(20ms)), WaitResult::timed_out);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_EQ(ec.waiters(), 0);
}

TEST(EventCount, NotifyWakesASleeper) {
  keel::detail::EventCount ec;
  std::atomic<pid_t> tid{0};
  std::atomic<bool> woke{false};
  std::jthread sleeper([&] {
    tid = keel_test::this_tid();
    const auto key = ec.prepare_wait();
    ec.wait(key, Deadline::after(keel_test::hang_limit));
    woke = true;
  });
  ASSERT_TRUE(keel_test::eventually([&] { return tid.load() != 0; }));
  keel_test::wait_blocked_in_futex(tid.load());
  EXPECT_FALSE(woke.load());
  EXPECT_EQ(ec.notify(1), 1);
  EXPECT_TRUE(keel_test::eventually([&] { return woke.load(); }));
}

// SYNC-16 with real threads: consumers sleep on the event count whenever the
// ring is empty; a producer pushes in bursts with pauses, so that consumers
// go to sleep often, and notifies after each push. Every item is taken, and
// nobody is left asleep with items in the ring: a lost wake-up is a consumer
// stuck until its deadline, which the test counts.
TEST(EventCount, SleepingConsumersOverTheRingTakeEveryItem) {
  constexpr int consumers = 3;
  const int items = keel_test::scaled(20000, 1000);
  keel::detail::TaskRing<int> ring(16);
  keel::detail::EventCount ec;
  std::vector<int> storage(static_cast<std::size_t>(items));
  std::atomic<int> taken{0};
  std::atomic<int> stuck{0};
  std::atomic<bool> done{false};
  {
    std::vector<std::jthread> threads;
    for (int c = 0; c < consumers; ++c) {
      threads.emplace_back([&] {
        for (;;) {
          int* item = ring.try_pop();
          if (item == nullptr) {
            // The contract's second look: a seq_cst pop after registering.
            const auto key = ec.prepare_wait();
            item = ring.try_pop();
            if (item == nullptr) {
              if (done.load()) {
                ec.cancel_wait();
                return;
              }
              // Nothing can keep a consumer asleep this long but a lost wake.
              if (ec.wait(key, Deadline::after(keel_test::hang_limit)) == WaitResult::timed_out) ++stuck;
              continue;
            }
            ec.cancel_wait();
          }
          if (taken.fetch_add(1) + 1 == items) {
            done = true;
            ec.notify(keel::platform::wake_all);
          }
        }
      });
    }
    for (int i = 0; i < items; ++i) {
      while (!ring.try_push(&storage[static_cast<std::size_t>(i)])) std::this_thread::yield();
      ec.notify(1);
      if (i % 64 == 63) std::this_thread::sleep_for(100us);  // let the consumers fall asleep
    }
    ASSERT_TRUE(keel_test::eventually([&] { return done.load(); }));
  }
  EXPECT_EQ(taken.load(), items);
  EXPECT_EQ(stuck.load(), 0);
  EXPECT_EQ(ec.waiters(), 0);
}

}  // namespace
