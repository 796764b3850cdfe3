// keel::ThreadPoolExecutor in ring mode (FIFO pools with an unbounded queue,
// once every core thread has started): the lock-free hot path of
// kernel/src/executor/thread_pool.cpp. Order across the ring and the locked
// queue it overflows into, exact statistics while ring workers count without
// the lock, shutdown_now with ring workers busy, resizing out of ring mode
// and back, and the monitor thread's life. The rest of the pool's contract
// runs in ring mode too, in every other test of a default pool.
#include <gtest/gtest.h>

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel_future_test::Gate;
using keel_future_test::Opts;
using keel_test::eventually;
using keel_test::hang_limit;

// Threads of this process whose name is `name`.
int threads_named(const std::string& name) {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string comm;
    std::getline(f, comm);
    n += comm == name;
  }
  closedir(d);
  return n;
}

// FIFO (EXEC-13 through the pool): one worker, blocked while more tasks are
// submitted than the ring holds, so that the locked queue takes the rest.
// They run in submission order, across the ring and the queue, and the pool
// goes back to its ring afterwards.
TEST(ThreadPoolRing, TasksRunInSubmissionOrderAcrossTheRingAndTheQueueItOverflowsInto) {
  keel::ThreadPoolExecutor pool(Opts().max(1).o);
  Gate gate;
  auto open = gate.open_at_exit();
  std::vector<int> order;  // written by the one worker only
  auto blocker = pool.submit([&] { gate.wait(); });
  constexpr int n = 10000;  // more than the ring's 4096 cells
  std::vector<keel::Future<void>> fs;
  fs.reserve(n);
  for (int i = 0; i < n; ++i) fs.push_back(pool.submit([&order, i] { order.push_back(i); }));
  EXPECT_EQ(pool.stats().queued, static_cast<std::size_t>(n));
  gate.open();
  for (auto& f : fs) f.result(hang_limit);
  ASSERT_EQ(order.size(), static_cast<std::size_t>(n));
  int out_of_order = 0;
  for (int i = 0; i < n; ++i) out_of_order += order[static_cast<std::size_t>(i)] != i;
  EXPECT_EQ(out_of_order, 0);
  // And again, now that the locked queue is empty.
  order.clear();
  fs.clear();
  for (int i = 0; i < 1000; ++i) fs.push_back(pool.submit([&order, i] { order.push_back(i); }));
  for (auto& f : fs) f.result(hang_limit);
  for (int i = 0; i < 1000; ++i) out_of_order += order[static_cast<std::size_t>(i)] != i;
  EXPECT_EQ(out_of_order, 0);
}

// EXEC-8 made exact: while a stream of tiny tasks runs on ring workers, which
// count without the pool's lock, every snapshot adds up with no slack:
// submitted == completed + active + queued.
TEST(ThreadPoolRing, EverySnapshotAddsUpExactlyWhileRingWorkersCount) {
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  pool.prestart_core_threads();
  std::atomic<bool> stop{false};
  std::atomic<int> inexact{0};
  std::atomic<int> snapshots{0};
  std::thread sampler([&] {
    while (!stop.load()) {
      const keel::ThreadPoolStats s = pool.stats();
      if (s.submitted != s.completed + s.active + s.queued || s.idle + s.active > s.threads) inexact.fetch_add(1);
      snapshots.fetch_add(1);
    }
  });
  const int n = keel_test::scaled(200000, 5000);
  std::atomic<int> ran{0};
  std::vector<keel::Future<void>> fs;
  fs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) fs.push_back(pool.submit([&ran] { ran.fetch_add(1); }));
  for (auto& f : fs) f.result(hang_limit);
  stop = true;
  sampler.join();
  EXPECT_EQ(inexact.load(), 0) << "of " << snapshots.load() << " snapshots";
  EXPECT_GT(snapshots.load(), 0);
  ASSERT_TRUE(eventually([&] { return pool.stats().completed == static_cast<std::uint64_t>(n); }));
  const keel::ThreadPoolStats s = pool.stats();
  EXPECT_EQ(s.submitted, static_cast<std::uint64_t>(n));
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.threads, 2u);
}

// shutdown_now() with ring workers busy: their tasks get a stop request, and
// the tasks still in the ring come back in submission order, unrun.
TEST(ThreadPoolRing, ShutdownNowStopsTheRingWorkersTasksAndReturnsTheRingsInOrder) {
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  pool.prestart_core_threads();
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::vector<keel::Future<void>> busy;
  for (int i = 0; i < 2; ++i) {
    busy.push_back(pool.submit([&](std::stop_token st) {
      started.fetch_add(1);
      const keel_test::Stopwatch sw;
      while (!st.stop_requested() && sw.elapsed() < hang_limit) std::this_thread::sleep_for(1ms);
      if (st.stop_requested()) stopped.fetch_add(1);
    }));
  }
  ASSERT_TRUE(eventually([&] { return started.load() == 2; }));
  std::vector<keel::Future<int>> waiting;
  for (int i = 0; i < 5; ++i) waiting.push_back(pool.submit([i] { return i; }));
  std::vector<keel::PendingTask> pending = pool.shutdown_now();
  ASSERT_EQ(pending.size(), 5u);
  for (auto& f : busy) f.result(hang_limit);
  EXPECT_EQ(stopped.load(), 2);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(waiting[static_cast<std::size_t>(i)].status(), keel::FutureStatus::pending);
    EXPECT_TRUE(pending[static_cast<std::size_t>(i)].run());
    EXPECT_EQ(waiting[static_cast<std::size_t>(i)].result(hang_limit), i);
  }
  EXPECT_TRUE(pool.await_termination(hang_limit));
}

// Resizing takes the pool out of ring mode (threads start and retire under
// the lock) and a worker takes it back in once the pool allows it; no task
// is lost or run twice on the way, and the counts add up.
TEST(ThreadPoolRing, ResizingLeavesRingModeAndTheWorkersTakeItBack) {
  keel::ThreadPoolExecutor pool(Opts().max(4).core(2).o);
  pool.prestart_core_threads();
  std::atomic<int> ran{0};
  std::vector<keel::Future<void>> fs;
  const int rounds = keel_test::scaled(40, 5);
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < 200; ++i) fs.push_back(pool.submit([&ran] { ran.fetch_add(1); }));
    pool.set_core_threads(r % 2 == 0 ? 3 : 2);
    if (r % 5 == 0) pool.set_max_threads(r % 10 == 0 ? 3 : 4);
  }
  for (auto& f : fs) f.result(hang_limit);
  EXPECT_EQ(ran.load(), rounds * 200);
  ASSERT_TRUE(eventually([&] { return pool.stats().completed == static_cast<std::uint64_t>(rounds * 200); }));
  const keel::ThreadPoolStats s = pool.stats();
  EXPECT_EQ(s.submitted, static_cast<std::uint64_t>(rounds * 200));
  EXPECT_EQ(s.queued, 0u);
}

// A pool in ring mode has one more thread than its workers: the monitor,
// named after the pool. It is gone once the pool is shut down; a pool whose
// queue is not an unbounded FIFO never has one.
TEST(ThreadPoolRing, TheMonitorThreadLivesWhileThePoolTakesWork) {
  {
    keel::ThreadPoolExecutor pool(Opts().max(2).name("ringmon").o);
    EXPECT_EQ(threads_named("ringmon_monitor"), 0);  // no worker yet: no ring mode
    pool.prestart_core_threads();
    // It names itself once it runs.
    EXPECT_TRUE(eventually([] { return threads_named("ringmon_monitor") == 1; }));
    EXPECT_EQ(pool.stats().threads, 2u);  // workers only
    pool.submit([] {}).result(hang_limit);
    pool.shutdown({.wait = false});
    EXPECT_TRUE(eventually([] { return threads_named("ringmon_monitor") == 0; }));
  }
  keel::ThreadPoolExecutor lifo(Opts().max(2).name("lifomon").queue(keel::QueueKind::lifo).o);
  lifo.prestart_core_threads();
  lifo.submit([] {}).result(hang_limit);
  EXPECT_EQ(threads_named("lifomon_monitor"), 0);
}

// EXEC-12 in ring mode, with the monitor: both workers asleep, a task that
// runs until a second one has started, then the second. The second starts
// on the sleeping worker (woken by the monitor once the first stood still for
// a tick), not after the first ends.
TEST(ThreadPoolRing, ATaskBehindALongOneStartsOnTheSleepingWorker) {
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  pool.prestart_core_threads();
  std::this_thread::sleep_for(20ms);  // both workers spin out and sleep
  keel::Event second_started;
  auto first = pool.submit([&] { return second_started.wait_for(hang_limit); });
  std::this_thread::sleep_for(5ms);  // the first is running; the monitor has gone to sleep long ago
  auto second = pool.submit([&] { second_started.set(); });
  EXPECT_TRUE(first.result(hang_limit * 2)) << "the second task waited behind the first while a worker slept";
  second.result(hang_limit);
}

// Shutdown while every ring worker sleeps on the event count: leaving ring
// mode wakes all of them, not one, or the others sleep on through the pool's
// termination (nothing else wakes a ring sleeper once the monitor is gone).
// Run with the pool sized 1 to 4, and by each way of leaving: shutdown,
// shutdown_now, and a resize that leaves ring mode while the pool keeps
// working (its workers must all take the next tasks).
TEST(ThreadPoolRing, LeavingRingModeWakesEveryWorkerAsleepInIt) {
  for (std::size_t n = 1; n <= 4; ++n) {
    for (int how = 0; how < 3; ++how) {
      SCOPED_TRACE(testing::Message() << n << " workers, left by "
                                      << (how == 0   ? "shutdown"
                                          : how == 1 ? "shutdown_now"
                                                     : "a resize"));
      keel::ThreadPoolExecutor pool(Opts().max(n + 1).core(n).o);
      ASSERT_EQ(pool.prestart_core_threads(), n);
      std::this_thread::sleep_for(20ms);  // every worker spins out and sleeps
      if (how == 0) {
        pool.shutdown({.wait = false});
      } else if (how == 1) {
        EXPECT_TRUE(pool.shutdown_now().empty());
      } else {
        pool.set_core_threads(n + 1);  // leaves ring mode, and a worker takes it back
        // n + 1 tasks on n + 1 workers all start (EXEC-12): each waits for the others.
        std::atomic<std::size_t> started{0};
        std::vector<keel::Future<bool>> fs;
        for (std::size_t i = 0; i <= n; ++i) {
          fs.push_back(pool.submit([&started, n] {
            started.fetch_add(1);
            return eventually([&] { return started.load() == n + 1; });
          }));
        }
        for (auto& f : fs) EXPECT_TRUE(f.result(hang_limit)) << "a worker slept through the resize";
        pool.shutdown({.wait = false});
      }
      EXPECT_TRUE(pool.await_termination(hang_limit)) << "a worker slept through the pool's termination";
    }
  }
}

// The monitor watches for as long as the pool takes work, not for its first
// ticks only: after many quiet ticks and a sleep of its own, it still wakes a
// sleeping worker for a task queued behind a long one (EXEC-12).
TEST(ThreadPoolRing, TheMonitorStillWakesASleeperAfterLongIdleStretches) {
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  pool.prestart_core_threads();
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(30ms);  // both workers and the monitor sleep
    keel::Event second_started;
    auto first = pool.submit([&] { return second_started.wait_for(hang_limit); });
    std::this_thread::sleep_for(5ms);
    auto second = pool.submit([&] { second_started.set(); });
    EXPECT_TRUE(first.result(hang_limit * 2)) << "round " << round << ": the second task waited behind the first";
    second.result(hang_limit);
  }
}

}  // namespace
