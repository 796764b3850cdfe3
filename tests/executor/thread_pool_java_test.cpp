// keel::ThreadPoolExecutor, the Java side of its contract
// (keel/executor/thread_pool.hpp; behaviours from JSR-166's
// ThreadPoolExecutorTest): core and max sizes and when threads start,
// prestarting, resizing at run time, keep-alive and core time-out, the
// statistics, the queue disciplines, every reject policy, the hooks, and
// thread factories that fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel::QueueKind;
using keel::RejectedError;
using keel::RejectPolicy;
using keel_future_test::Gate;
using keel_future_test::holds;
using keel_future_test::Opts;
using keel_future_test::rejected_reason;
using keel_future_test::ReporterCapture;
using keel_future_test::what_of;
using keel_test::eventually;
using keel_test::hang_limit;
using keel_test::Stopwatch;

// A thread-safe log of strings.
class Log {
 public:
  void add(std::string s) {
    std::lock_guard<std::mutex> l(m_);
    v_.push_back(std::move(s));
  }
  std::vector<std::string> get() const {
    std::lock_guard<std::mutex> l(m_);
    return v_;
  }

 private:
  mutable std::mutex m_;
  std::vector<std::string> v_;
};

// Shuts the pool down without waiting and fails (instead of hanging) if it
// does not terminate within hang_limit; then joins its workers.
void stop_and_join(keel::ThreadPoolExecutor& pool) {
  pool.shutdown({.wait = false});
  ASSERT_TRUE(pool.await_termination(hang_limit)) << "the pool never terminated";
  pool.shutdown();
}

// Submits a task that waits on the gate, and waits until it runs.
keel::Future<void> occupy_worker(keel::ThreadPoolExecutor& pool, Gate& gate, std::atomic<int>& started) {
  const int before = started.load();
  auto f = pool.submit([&] {
    started.fetch_add(1);
    gate.wait();
  });
  EXPECT_TRUE(eventually([&] { return started.load() > before; }));
  return f;
}

// A factory that starts the first `good` threads and then fails with `how`:
// 0 throws, 1 returns without starting the thread, 2 starts it and throws.
keel::ThreadFactory flaky_factory(std::atomic<int>& calls, int good, int how) {
  return [&calls, good, how](keel::platform::Thread& t, std::function<void()> body) {
    const int n = calls.fetch_add(1);
    if (n < good) {
      t.start(std::move(body));
      return;
    }
    if (how == 0) throw std::runtime_error("no thread for you");
    if (how == 2) {
      t.start(std::move(body));
      throw std::runtime_error("started, then threw");
    }
  };
}

}  // namespace

// ---------------------------------------------------------------- sizes

TEST(ThreadPoolJava, ConstructorRejectsInconsistentOptions) {
  EXPECT_THROW(keel::ThreadPoolExecutor(Opts().max(2).core(3)), keel::ValueError);
  EXPECT_THROW(keel::ThreadPoolExecutor(Opts().max(2).keep_alive(-1ms)), keel::ValueError);
  // A negative block_timeout is zero (keel/timeout.hpp): refuse at once, no ValueError.
  EXPECT_NO_THROW(keel::ThreadPoolExecutor(Opts().max(2).block_timeout(-1ms)));
  EXPECT_THROW(keel::ThreadPoolExecutor(Opts().max(2).queue(QueueKind::handoff, 4)), keel::ValueError);
  EXPECT_NO_THROW(keel::ThreadPoolExecutor(Opts().max(2).core(0).keep_alive(0ms).block_timeout(0ms)));
}

TEST(ThreadPoolJava, CoreAndMaxAreReportedAsConfigured) {
  keel::ThreadPoolExecutor pool(Opts().max(3).core(2));
  EXPECT_EQ(pool.core_threads(), 2u);
  EXPECT_EQ(pool.max_threads(), 3u);
  keel::ThreadPoolExecutor only_max(Opts().max(5));
  EXPECT_EQ(only_max.core_threads(), 5u);
}

TEST(ThreadPoolJava, ThreadsBeyondCoreStartOnlyWhenTheQueueIsFull) {
  // Java's rule: core threads first, then the queue, then threads up to max,
  // then the reject policy.
  Gate gate;
  std::atomic<int> started{0};
  Log order;
  keel::ThreadPoolExecutor pool(Opts().max(3).core(1).queue(QueueKind::fifo, 2));
  auto open = gate.open_at_exit();
  auto task = [&](std::string name) {
    return pool.submit([&, name] {
      started.fetch_add(1);
      gate.wait();
      order.add(name);
    });
  };
  auto a = task("A");
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  auto b = task("B");
  auto c = task("C");
  auto s = pool.stats();
  EXPECT_EQ(s.threads, 1u);  // B and C wait in the queue: no thread beyond core yet
  EXPECT_EQ(s.queued, 2u);
  auto d = task("D");  // the queue is full: a second thread starts with D
  EXPECT_EQ(pool.stats().threads, 2u);
  auto e = task("E");
  EXPECT_EQ(pool.stats().threads, 3u);
  ASSERT_TRUE(eventually([&] { return started.load() == 3; }));  // A, D and E run; B and C still wait
  EXPECT_EQ(pool.stats().queued, 2u);
  EXPECT_EQ(rejected_reason([&] { task("F"); }), RejectedError::Reason::saturated);
  s = pool.stats();
  EXPECT_EQ(s.threads, 3u);
  EXPECT_EQ(s.largest, 3u);
  EXPECT_EQ(s.submitted, 5u);
  EXPECT_EQ(s.rejected, 1u);
  gate.open();
  for (auto* f : {&a, &b, &c, &d, &e}) EXPECT_NO_THROW(f->result(hang_limit));
  stop_and_join(pool);
  const auto log = order.get();
  ASSERT_EQ(log.size(), 5u);
  EXPECT_EQ(std::count(log.begin(), log.end(), "F"), 0);
}

TEST(ThreadPoolJava, QueuedTaskGetsAThreadWhenNoneIsAlive) {
  // core_threads == 0: the first task is queued and still gets a thread; a
  // second one waits in the queue for that thread (no thread beyond core
  // while the unbounded queue has room).
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).core(0));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  EXPECT_EQ(pool.stats().threads, 1u);
  auto b = pool.submit([] { return 2; });
  auto s = pool.stats();
  EXPECT_EQ(s.threads, 1u);
  EXPECT_EQ(s.queued, 1u);
  gate.open();
  EXPECT_EQ(b.result(hang_limit), 2);
  EXPECT_EQ(pool.stats().largest, 1u);
}

TEST(ThreadPoolJava, HandoffQueueHoldsNothing) {
  // Java's SynchronousQueue: a task goes to an idle or a new worker, or is
  // rejected.
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).core(0).queue(QueueKind::handoff));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = occupy_worker(pool, gate, started);
  EXPECT_EQ(pool.stats().threads, 2u);
  EXPECT_EQ(pool.stats().queued, 0u);
  EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::saturated);
  gate.open();
  a.result(hang_limit);
  b.result(hang_limit);
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 2; }));
  EXPECT_EQ(pool.submit([] { return 5; }).result(hang_limit), 5);  // an idle worker takes it
  EXPECT_EQ(pool.stats().largest, 2u);
}

TEST(ThreadPoolJava, IdleWorkerTakesATaskBeforeACoreThreadStarts) {
  // keel's stated rule (unlike Java's): an idle worker is preferred even
  // while fewer than core_threads are alive.
  keel::ThreadPoolExecutor pool(Opts().max(3));
  ASSERT_TRUE(pool.prestart_core_thread());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
    EXPECT_EQ(pool.submit([i] { return i; }).result(hang_limit), i);
  }
  EXPECT_EQ(pool.stats().largest, 1u);
}

// ---------------------------------------------------------------- prestart

TEST(ThreadPoolJava, PrestartCoreThreadStartsOneUpToCore) {
  keel::ThreadPoolExecutor pool(Opts().max(4).core(2));
  EXPECT_EQ(pool.stats().threads, 0u);
  EXPECT_TRUE(pool.prestart_core_thread());
  EXPECT_EQ(pool.stats().threads, 1u);
  EXPECT_TRUE(pool.prestart_core_thread());
  EXPECT_EQ(pool.stats().threads, 2u);
  EXPECT_FALSE(pool.prestart_core_thread());
  EXPECT_EQ(pool.prestart_core_threads(), 0u);
  EXPECT_EQ(pool.stats().threads, 2u);
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 2; }));
  EXPECT_EQ(pool.stats().submitted, 0u);
}

TEST(ThreadPoolJava, PrestartCoreThreadsStartsAllOfThem) {
  keel::ThreadPoolExecutor pool(Opts().max(3));
  EXPECT_EQ(pool.prestart_core_threads(), 3u);
  EXPECT_EQ(pool.stats().threads, 3u);
  EXPECT_EQ(pool.prestart_core_threads(), 0u);
  EXPECT_EQ(pool.stats().threads, 3u);
  EXPECT_EQ(pool.stats().largest, 3u);
}

TEST(ThreadPoolJava, PrestartAfterShutdownStartsNothing) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  pool.shutdown();
  EXPECT_FALSE(pool.prestart_core_thread());
  EXPECT_EQ(pool.prestart_core_threads(), 0u);
  EXPECT_EQ(pool.stats().threads, 0u);
}

// ---------------------------------------------------------------- resizing

TEST(ThreadPoolJava, SetCoreThreadsAboveMaxIsAValueErrorAndChangesNothing) {
  keel::ThreadPoolExecutor pool(Opts().max(2).core(1));
  EXPECT_THROW(pool.set_core_threads(3), keel::ValueError);
  EXPECT_EQ(pool.core_threads(), 1u);
  pool.set_core_threads(2);
  EXPECT_EQ(pool.core_threads(), 2u);
  pool.set_core_threads(0);
  EXPECT_EQ(pool.core_threads(), 0u);
}

TEST(ThreadPoolJava, SetMaxThreadsBelowCoreOrZeroIsAValueErrorAndChangesNothing) {
  keel::ThreadPoolExecutor pool(Opts().max(3).core(2));
  EXPECT_THROW(pool.set_max_threads(0), keel::ValueError);
  EXPECT_THROW(pool.set_max_threads(1), keel::ValueError);
  EXPECT_EQ(pool.max_threads(), 3u);
  EXPECT_EQ(pool.core_threads(), 2u);
  pool.set_max_threads(5);
  EXPECT_EQ(pool.max_threads(), 5u);
  pool.set_max_threads(2);
  EXPECT_EQ(pool.max_threads(), 2u);
}

TEST(ThreadPoolJava, SetKeepAliveNegativeIsAValueError) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  EXPECT_THROW(pool.set_keep_alive(-1ns), keel::ValueError);
  EXPECT_NO_THROW(pool.set_keep_alive(0ns));
}

TEST(ThreadPoolJava, RaisingCoreThreadsStartsThreadsForQueuedWork) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(4).core(1));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<void>> fs;
  fs.push_back(occupy_worker(pool, gate, started));
  for (int i = 0; i < 3; ++i) {
    fs.push_back(pool.submit([&] {
      started.fetch_add(1);
      gate.wait();
    }));
  }
  EXPECT_EQ(pool.stats().queued, 3u);
  pool.set_core_threads(3);
  EXPECT_EQ(pool.stats().threads, 3u);
  ASSERT_TRUE(eventually([&] { return started.load() == 3; }));
  EXPECT_EQ(pool.stats().queued, 1u);
  gate.open();
  for (auto& f : fs) EXPECT_NO_THROW(f.result(hang_limit));
}

TEST(ThreadPoolJava, LoweringCoreThreadsLetsTheExtraWorkersTimeOut) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).keep_alive(5ms));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<void>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(occupy_worker(pool, gate, started));
  gate.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 3; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pool.stats().threads, 3u);  // all core: no time-out
  pool.set_core_threads(1);
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 1; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pool.stats().threads, 1u);
}

TEST(ThreadPoolJava, LoweringMaxThreadsRetiresIdleWorkers) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).core(1).queue(QueueKind::handoff));
  auto open = gate.open_at_exit();
  for (int i = 0; i < 3; ++i) occupy_worker(pool, gate, started);
  EXPECT_EQ(pool.stats().threads, 3u);
  gate.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 3; }));
  pool.set_max_threads(1);
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 1; }));
  // A handoff needs an idle worker: the survivor was woken to re-check and
  // goes back to idle.
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  EXPECT_EQ(pool.submit([] { return 1; }).result(hang_limit), 1);
}

TEST(ThreadPoolJava, LoweringMaxThreadsRetiresBusyWorkersAfterTheirTask) {
  // EXEC-6 with resizing: busy workers above the new max finish their task,
  // then leave; meanwhile no thread is added.
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).core(1).queue(QueueKind::handoff));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<void>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(occupy_worker(pool, gate, started));
  pool.set_max_threads(1);
  EXPECT_EQ(pool.stats().threads, 3u);
  EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::saturated);
  gate.open();
  for (auto& f : fs) EXPECT_NO_THROW(f.result(hang_limit));
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 1 && pool.stats().idle == 1; }));
  EXPECT_EQ(pool.submit([] { return 2; }).result(hang_limit), 2);
  EXPECT_LE(pool.stats().threads, 1u);
}

TEST(ThreadPoolJava, RaisingMaxThreadsLetsASaturatedPoolGrow) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return 1; });
  EXPECT_EQ(rejected_reason([&] { pool.submit([] { return 2; }); }), RejectedError::Reason::saturated);
  pool.set_max_threads(2);
  auto c = pool.submit([] { return 3; });
  EXPECT_EQ(c.result(hang_limit), 3);  // ran on a new thread while A still blocks
  EXPECT_EQ(pool.stats().largest, 2u);
  gate.open();
  EXPECT_EQ(b.result(hang_limit), 1);
}

// ---------------------------------------------------------------- keep-alive

TEST(ThreadPoolJava, KeepAliveRetiresThreadsAboveCoreOnly) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).core(1).keep_alive(5ms).queue(QueueKind::handoff));
  auto open = gate.open_at_exit();
  for (int i = 0; i < 3; ++i) occupy_worker(pool, gate, started);
  gate.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 1; }));
  std::this_thread::sleep_for(20ms);
  const auto s = pool.stats();
  EXPECT_EQ(s.threads, 1u);  // the core thread stays
  EXPECT_EQ(s.largest, 3u);
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  EXPECT_EQ(pool.submit([] { return 4; }).result(hang_limit), 4);
}

TEST(ThreadPoolJava, AllowCoreTimeoutRetiresCoreThreadsAndThePoolStillWorks) {
  keel::ThreadPoolExecutor pool(Opts().max(2).keep_alive(5ms).core_timeout());
  EXPECT_EQ(pool.submit([] { return 1; }).result(hang_limit), 1);
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 0; }));
  EXPECT_EQ(pool.submit([] { return 2; }).result(hang_limit), 2);  // a new thread
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 0; }));
  EXPECT_EQ(pool.stats().completed, 2u);
}

TEST(ThreadPoolJava, AllowCoreTimeoutAtRunTime) {
  keel::ThreadPoolExecutor pool(Opts().max(1).keep_alive(5ms));
  EXPECT_EQ(pool.submit([] { return 1; }).result(hang_limit), 1);
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pool.stats().threads, 1u);
  pool.allow_core_timeout(true);
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 0; }));
  pool.allow_core_timeout(false);
  EXPECT_EQ(pool.submit([] { return 2; }).result(hang_limit), 2);
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pool.stats().threads, 1u);
}

TEST(ThreadPoolJava, ShorterKeepAliveAppliesToWorkersAlreadyIdle) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).core(1).queue(QueueKind::handoff));  // keep-alive 60 s
  auto open = gate.open_at_exit();
  for (int i = 0; i < 3; ++i) occupy_worker(pool, gate, started);
  gate.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 3; }));
  pool.set_keep_alive(2ms);
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 1; }));
}

TEST(ThreadPoolJava, AWorkerThatRetiresFromUnderOtherIdleOnesLeavesThemClaimable) {
  // Three workers go idle one after another, so the first is the deepest of
  // the idle ones; it times out first and retires from under the other two
  // (core 2 keeps them). Those two must still be handed work, at once and
  // without a new thread: the idle list must come out of that removal whole.
  Gate first, second, third, both;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).core(2).keep_alive(200ms).queue(QueueKind::handoff));
  auto open1 = first.open_at_exit();
  auto open2 = second.open_at_exit();
  auto open3 = third.open_at_exit();
  auto open_both = both.open_at_exit();
  occupy_worker(pool, first, started);
  occupy_worker(pool, second, started);
  occupy_worker(pool, third, started);
  first.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  std::this_thread::sleep_for(20ms);
  second.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 2; }));
  std::this_thread::sleep_for(20ms);
  third.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 2; }));
  EXPECT_EQ(pool.stats().idle, 2u);
  auto a = occupy_worker(pool, both, started);
  auto b = occupy_worker(pool, both, started);  // a handoff queue: an idle worker, or a new thread
  const auto s = pool.stats();
  EXPECT_EQ(s.active, 2u);
  EXPECT_EQ(s.threads, 2u) << "a new thread started: an idle worker was lost";
  EXPECT_EQ(s.largest, 3u);
  both.open();
  a.result(hang_limit);
  b.result(hang_limit);
}

// ---------------------------------------------------------------- statistics

TEST(ThreadPoolStats, CountsWhileATaskRuns) {
  // Java's testGetActiveCount, testGetPoolSize, testGetTaskCount and
  // testGetCompletedTaskCount.
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(2));
  auto open = gate.open_at_exit();
  auto s = pool.stats();
  EXPECT_EQ(s.threads, 0u);
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.submitted, 0u);
  EXPECT_EQ(s.completed, 0u);
  keel::ThreadPoolStats inside;
  auto f = pool.submit([&] {
    inside = pool.stats();
    started.fetch_add(1);
    gate.wait();
  });
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  EXPECT_EQ(inside.active, 1u);
  EXPECT_EQ(inside.threads, 1u);
  EXPECT_EQ(inside.submitted, 1u);
  EXPECT_EQ(inside.completed, 0u);
  s = pool.stats();
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.threads, 1u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.completed, 0u);
  gate.open();
  f.result(hang_limit);
  ASSERT_TRUE(eventually([&] { return pool.stats().completed == 1; }));
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.threads, 1u);
  EXPECT_EQ(s.submitted, 1u);
  EXPECT_EQ(s.largest, 1u);
}

TEST(ThreadPoolStats, LargestRemembersThePeakAfterRetirement) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).keep_alive(2ms).core_timeout());
  auto open = gate.open_at_exit();
  EXPECT_EQ(pool.stats().largest, 0u);
  for (int i = 0; i < 3; ++i) occupy_worker(pool, gate, started);
  EXPECT_EQ(pool.stats().largest, 3u);
  gate.open();
  ASSERT_TRUE(eventually([&] { return pool.stats().threads == 0; }));
  EXPECT_EQ(pool.stats().largest, 3u);
}

TEST(ThreadPoolStats, CountersAddUpAtQuiescence) {
  // EXEC-8: accepted tasks are completed; every refusal is counted once.
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 2));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return 1; });
  auto c = pool.submit([]() -> int { throw std::runtime_error("counted as completed"); });
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::saturated);
  }
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::shutdown);
  EXPECT_EQ(b.result(0ms), 1);
  EXPECT_THROW((void)c.result(0ms), std::runtime_error);
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, 3u);
  EXPECT_EQ(s.completed, 3u);
  EXPECT_EQ(s.rejected, 4u);
  EXPECT_EQ(s.threads, 0u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.largest, 1u);
}

TEST(ThreadPoolStats, CancelledQueuedTasksAreNotCountedAsCompleted) {
  // EXEC-8: `completed` counts tasks "run to the end (value or exception) by
  // workers" (thread_pool.hpp). A task cancelled while queued never runs, so
  // at quiescence submitted == completed + cancelled.
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  std::vector<keel::Future<void>> queued;
  for (int i = 0; i < 4; ++i) queued.push_back(pool.submit([&] { ran.fetch_add(1); }));
  EXPECT_TRUE(queued[1].cancel());
  EXPECT_TRUE(queued[3].cancel());
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(ran.load(), 2);
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, 5u);
  EXPECT_EQ(s.completed, 3u) << "cancelled tasks that never ran were counted as completed";
}

TEST(ThreadPoolStats, LargestCountsOnlyThreadsThatStarted) {
  // EXEC-8: `largest` is the most live workers ever; a thread the factory
  // failed to start never was one.
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(4).factory(flaky_factory(calls, 1, 0)));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return 1; });  // a core thread is tried and fails; b is queued
  EXPECT_GE(calls.load(), 2);
  EXPECT_EQ(pool.stats().threads, 1u);
  EXPECT_EQ(pool.stats().largest, 1u) << "a thread that never started was counted in largest";
  gate.open();
  EXPECT_EQ(b.result(hang_limit), 1);
}

// ---------------------------------------------------------------- reject policies

TEST(ThreadPoolReject, AbortThrowsSaturatedAndTheTaskNeverRuns) {
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::abort));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([&] { ran.fetch_add(1); });
  EXPECT_EQ(rejected_reason([&] { pool.submit([&] { ran.fetch_add(10); }); }), RejectedError::Reason::saturated);
  EXPECT_EQ(pool.stats().rejected, 1u);
  EXPECT_EQ(pool.stats().submitted, 2u);
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(ran.load(), 1);
}

TEST(ThreadPoolReject, CallerRunsRunsTheTaskInTheSubmittingThread) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::caller_runs));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return keel_test::this_tid(); });
  auto c = pool.submit([] { return keel_test::this_tid(); });
  EXPECT_TRUE(c.done());  // it already ran, here
  EXPECT_EQ(c.result(0ms), keel_test::this_tid());
  auto d = pool.submit([]() -> int { throw std::runtime_error("caller-run failure"); });
  ASSERT_TRUE(d.done());
  EXPECT_EQ(what_of(d.exception()), "caller-run failure");  // in the future, not thrown by submit
  EXPECT_EQ(pool.stats().rejected, 2u);
  gate.open();
  EXPECT_NE(b.result(hang_limit), keel_test::this_tid());
}

TEST(ThreadPoolReject, DiscardReturnsACancelledFuture) {
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::discard));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([&] { ran.fetch_add(1); });
  auto c = pool.submit([&] { ran.fetch_add(10); });
  EXPECT_TRUE(c.cancelled());
  EXPECT_THROW(c.result(0ms), keel::CancelledError);
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(ran.load(), 1);
  EXPECT_TRUE(b.done());
}

TEST(ThreadPoolReject, DiscardOldestCancelsTheLongestWaitingTask) {
  Gate gate;
  std::atomic<int> started{0};
  Log order;
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 2).reject(RejectPolicy::discard_oldest));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([&] { order.add("B"); });
  auto c = pool.submit([&] { order.add("C"); });
  auto d = pool.submit([&] { order.add("D"); });
  EXPECT_TRUE(b.cancelled());
  EXPECT_FALSE(c.cancelled());
  EXPECT_FALSE(d.cancelled());
  auto s = pool.stats();
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(s.submitted, 4u);
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(order.get(), (std::vector<std::string>{"C", "D"}));
}

TEST(ThreadPoolReject, DiscardOldestOnALifoQueueDropsTheOldestAndRunsTheRestNewestFirst) {
  // A lifo queue keeps its newest task at the head: the oldest, the victim,
  // is its last node, and every other task stays linked around it.
  Gate gate;
  std::atomic<int> started{0};
  Log order;
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::lifo, 3).reject(RejectPolicy::discard_oldest));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([&] { order.add("B"); });
  auto c = pool.submit([&] { order.add("C"); });
  auto d = pool.submit([&] { order.add("D"); });
  auto e = pool.submit([&] { order.add("E"); });  // full: B, the oldest, goes
  auto f = pool.submit([&] { order.add("F"); });  // and then C
  EXPECT_TRUE(b.cancelled());
  EXPECT_TRUE(c.cancelled());
  EXPECT_EQ(pool.stats().rejected, 2u);
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(order.get(), (std::vector<std::string>{"F", "E", "D"}));
}

TEST(ThreadPoolReject, DiscardOldestOnAPriorityQueueDropsTheOldestSubmission) {
  Gate gate;
  std::atomic<int> started{0};
  Log order;
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::priority, 2).reject(RejectPolicy::discard_oldest));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto p5 = pool.submit(keel::Priority{5}, [&] { order.add("p5"); });
  auto p1 = pool.submit(keel::Priority{1}, [&] { order.add("p1"); });
  auto p3 = pool.submit(keel::Priority{3}, [&] { order.add("p3"); });
  EXPECT_TRUE(p5.cancelled());  // the oldest, not the lowest priority
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(order.get(), (std::vector<std::string>{"p1", "p3"}));
}

TEST(ThreadPoolReject, DiscardOldestWithAHandoffQueueCancelsTheNewTask) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::handoff).reject(RejectPolicy::discard_oldest));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return 1; });
  EXPECT_TRUE(b.cancelled());
  EXPECT_FALSE(a.cancelled());
  EXPECT_EQ(pool.stats().rejected, 1u);
}

TEST(ThreadPoolReject, BlockTimesOutWithReasonTimedOut) {
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(
      Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::block).block_timeout(20ms));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([&] { ran.fetch_add(1); });
  const Stopwatch sw;
  EXPECT_EQ(rejected_reason([&] { pool.submit([&] { ran.fetch_add(10); }); }), RejectedError::Reason::timed_out);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  stop_and_join(pool);
  EXPECT_EQ(ran.load(), 1);
}

TEST(ThreadPoolReject, BlockWithZeroTimeoutRejectsAtOnce) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::block).block_timeout(0ms));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] {});
  EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::timed_out);
}

TEST(ThreadPoolReject, BlockProceedsWhenRoomAppears) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::block));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return 1; });
  keel::Future<int> c;
  keel_test::TidThread submitter([&] { c = pool.submit([] { return 3; }); });
  submitter.wait_blocked();
  EXPECT_EQ(pool.stats().submitted, 2u);  // it waits for room
  gate.open();
  submitter.join();
  ASSERT_TRUE(c.valid());
  EXPECT_EQ(c.result(hang_limit), 3);
  EXPECT_EQ(b.result(hang_limit), 1);
  EXPECT_EQ(pool.stats().rejected, 0u);
  EXPECT_EQ(pool.stats().submitted, 3u);
}

TEST(ThreadPoolReject, BlockProceedsWhenMaxThreadsIsRaised) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::block));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([] { return 1; });
  keel::Future<int> c;
  keel_test::TidThread submitter([&] { c = pool.submit([] { return 3; }); });
  submitter.wait_blocked();
  pool.set_max_threads(2);  // room for a thread beyond core: the blocked submission starts it
  submitter.join();
  ASSERT_TRUE(c.valid());
  EXPECT_EQ(c.result(hang_limit), 3);
  EXPECT_EQ(pool.stats().threads, 2u);
  gate.open();
  EXPECT_EQ(b.result(hang_limit), 1);
}

TEST(ThreadPoolReject, BlockOnAHandoffQueueWaitsForAnIdleWorker) {
  Gate gate;
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::handoff).reject(RejectPolicy::block));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  keel::Future<int> b;
  keel_test::TidThread submitter([&] { b = pool.submit([] { return 2; }); });
  submitter.wait_blocked();
  gate.open();
  submitter.join();
  ASSERT_TRUE(b.valid());
  EXPECT_EQ(b.result(hang_limit), 2);
  EXPECT_EQ(pool.stats().largest, 1u);
}

TEST(ThreadPoolReject, BlockedSubmitterIsRejectedWhenThePoolShutsDown) {
  // EXEC-3: a submission blocked for room when shutdown comes is refused with
  // an error, not left waiting or silently dropped.
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::block));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  auto b = pool.submit([&] { ran.fetch_add(1); });
  std::optional<RejectedError::Reason> reason;
  keel_test::TidThread submitter([&] { reason = rejected_reason([&] { pool.submit([&] { ran.fetch_add(10); }); }); });
  submitter.wait_blocked();
  pool.shutdown({.wait = false});
  submitter.join();
  EXPECT_EQ(reason, RejectedError::Reason::shutdown);
  gate.open();
  ASSERT_TRUE(pool.await_termination(hang_limit));
  EXPECT_EQ(ran.load(), 1);  // the queued task still ran
}

TEST(ThreadPoolReject, EveryPolicyRejectsAfterShutdownWithAnError) {
  // Java's CallerRuns/Discard/DiscardOldest policies drop a task silently
  // after shutdown; keel refuses it with RejectedError (EXEC-3).
  for (auto policy : {RejectPolicy::abort, RejectPolicy::caller_runs, RejectPolicy::discard,
                      RejectPolicy::discard_oldest, RejectPolicy::block}) {
    std::atomic<int> ran{0};
    keel::ThreadPoolExecutor pool(Opts().max(1).queue(QueueKind::fifo, 1).reject(policy));
    pool.shutdown();
    EXPECT_EQ(rejected_reason([&] { pool.submit([&] { ran.fetch_add(1); }); }), RejectedError::Reason::shutdown)
        << static_cast<int>(policy);
    EXPECT_EQ(ran.load(), 0);
  }
}

// ---------------------------------------------------------------- queue order

namespace {

// Runs the submissions on a one-thread pool whose worker is held busy while
// they are queued, and returns the order in which they ran.
template <class Submit>
std::vector<std::string> run_order(keel::ThreadPoolOptions options, Submit submit_all) {
  Gate gate;
  std::atomic<int> started{0};
  Log order;
  keel::ThreadPoolExecutor pool(std::move(options));
  auto open = gate.open_at_exit();
  auto blocker = occupy_worker(pool, gate, started);
  submit_all(pool, order);
  gate.open();
  stop_and_join(pool);
  return order.get();
}

}  // namespace

TEST(ThreadPoolQueue, FifoRunsInSubmissionOrder) {
  const auto order = run_order(Opts().max(1), [](keel::ThreadPoolExecutor& pool, Log& log) {
    for (int i = 1; i <= 5; ++i) pool.submit([&log, i] { log.add(std::to_string(i)); });
  });
  EXPECT_EQ(order, (std::vector<std::string>{"1", "2", "3", "4", "5"}));
}

TEST(ThreadPoolQueue, LifoRunsTheNewestFirst) {
  const auto order = run_order(Opts().max(1).queue(QueueKind::lifo), [](keel::ThreadPoolExecutor& pool, Log& log) {
    for (int i = 1; i <= 5; ++i) pool.submit([&log, i] { log.add(std::to_string(i)); });
  });
  EXPECT_EQ(order, (std::vector<std::string>{"5", "4", "3", "2", "1"}));
}

TEST(ThreadPoolQueue, PriorityRunsLowestValueFirstAndFifoAmongEquals) {
  const auto order = run_order(Opts().max(1).queue(QueueKind::priority), [](keel::ThreadPoolExecutor& pool, Log& log) {
    const std::vector<std::pair<int, std::string>> subs{{3, "a3"}, {1, "b1"}, {2, "c2"},
                                                        {1, "d1"}, {0, "e0"}, {3, "f3"}};
    for (const auto& sub : subs) {
      pool.submit(keel::Priority{sub.first}, [&log, name = sub.second] { log.add(name); });
    }
  });
  EXPECT_EQ(order, (std::vector<std::string>{"e0", "b1", "d1", "c2", "a3", "f3"}));
}

TEST(ThreadPoolQueue, PrioritySubmissionWithoutAValueRunsAtZero) {
  const auto order = run_order(Opts().max(1).queue(QueueKind::priority), [](keel::ThreadPoolExecutor& pool, Log& log) {
    pool.submit(keel::Priority{1}, [&log] { log.add("plus1"); });
    pool.submit([&log] { log.add("zero"); });
    pool.submit(keel::Priority{-1}, [&log] { log.add("minus1"); });
  });
  EXPECT_EQ(order, (std::vector<std::string>{"minus1", "zero", "plus1"}));
}

TEST(ThreadPoolQueue, BoundedLifoAndPriorityQueuesSaturate) {
  for (auto kind : {QueueKind::lifo, QueueKind::priority}) {
    Gate gate;
    std::atomic<int> started{0};
    keel::ThreadPoolExecutor pool(Opts().max(1).queue(kind, 2));
    auto open = gate.open_at_exit();
    auto a = occupy_worker(pool, gate, started);
    pool.submit([] {});
    pool.submit([] {});
    EXPECT_EQ(pool.stats().queued, 2u);
    EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::saturated);
  }
}

// ---------------------------------------------------------------- hooks

TEST(ThreadPoolHooks, BeforeAndAfterRunAroundEachTaskOnItsWorker) {
  Log log;
  std::atomic<pid_t> hook_tid{0};
  std::atomic<bool> other_thread{false};
  auto note_tid = [&] {
    const pid_t me = keel_test::this_tid();
    pid_t expected = 0;
    if (!hook_tid.compare_exchange_strong(expected, me) && expected != me) other_thread.store(true);
  };
  keel::ThreadPoolExecutor pool(Opts()
                                    .max(1)
                                    .queue(QueueKind::priority)
                                    .before([&](const keel::TaskInfo& info) {
                                      note_tid();
                                      log.add("before " + std::to_string(info.id) + " p" +
                                              std::to_string(info.priority));
                                    })
                                    .after([&](const keel::TaskInfo& info, std::exception_ptr e) {
                                      note_tid();
                                      log.add("after " + std::to_string(info.id) + (e ? " error" : " ok"));
                                    }));
  for (int i = 0; i < 3; ++i) {
    pool.submit(keel::Priority{7 * i},
                [&, i] {
                  note_tid();
                  log.add("task " + std::to_string(i));
                })
        .result(hang_limit);
  }
  stop_and_join(pool);
  EXPECT_FALSE(other_thread.load());
  EXPECT_NE(hook_tid.load(), keel_test::this_tid());
  EXPECT_EQ(log.get(), (std::vector<std::string>{"before 1 p0", "task 0", "after 1 ok", "before 2 p7", "task 1",
                                                 "after 2 ok", "before 3 p14", "task 2", "after 3 ok"}));
}

TEST(ThreadPoolHooks, AfterTaskSeesTheTaskException) {
  Log log;
  keel::ThreadPoolExecutor pool(Opts().max(1).after(
      [&](const keel::TaskInfo&, std::exception_ptr e) { log.add(e ? what_of(e) : std::string("none")); }));
  auto bad = pool.submit([]() -> int { throw std::runtime_error("task threw"); });
  ASSERT_TRUE(bad.wait_for(hang_limit));
  auto good = pool.submit([] { return 1; });
  good.result(hang_limit);
  stop_and_join(pool);
  EXPECT_EQ(log.get(), (std::vector<std::string>{"task threw", "none"}));
  EXPECT_EQ(what_of(bad.exception()), "task threw");
}

TEST(ThreadPoolHooks, BeforeTaskThatThrowsFailsTheTaskWithoutRunningIt) {
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).before([](const keel::TaskInfo& info) {
    if (info.id == 2) throw std::runtime_error("vetoed by before_task");
  }));
  auto a = pool.submit([&] { return ran.fetch_add(1); });
  a.result(hang_limit);
  auto b = pool.submit([&] { return ran.fetch_add(1); });
  ASSERT_TRUE(b.wait_for(hang_limit));
  EXPECT_EQ(b.status(), keel::FutureStatus::finished);
  EXPECT_EQ(what_of(b.exception()), "vetoed by before_task");
  auto c = pool.submit([&] { return ran.fetch_add(1); });
  EXPECT_EQ(c.result(hang_limit), 1);  // the pool goes on
  EXPECT_EQ(ran.load(), 2);
}

TEST(ThreadPoolHooks, AfterTaskThatThrowsIsReportedAndTheResultStands) {
  ReporterCapture reports;
  keel::ThreadPoolExecutor pool(
      Opts().max(1).after([](const keel::TaskInfo&, std::exception_ptr) { throw std::runtime_error("after failed"); }));
  EXPECT_EQ(pool.submit([] { return 9; }).result(hang_limit), 9);
  EXPECT_EQ(pool.submit([] { return 10; }).result(hang_limit), 10);
  stop_and_join(pool);
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].where, "after_task hook");
  EXPECT_EQ(entries[0].what, "after failed");
}

TEST(ThreadPoolHooks, OnTerminatedRunsOnceAfterTheLastWorkerExits) {
  // Java's terminated() hook: once, when the pool is shut down and empty.
  std::atomic<int> calls{0};
  std::atomic<bool> was_shutdown{false};
  std::atomic<std::size_t> threads_then{99};
  {
    keel::ThreadPoolExecutor* self = nullptr;
    keel::ThreadPoolExecutor pool(Opts().max(3).terminated([&] {
      calls.fetch_add(1);
      was_shutdown.store(self->is_shutdown());
      threads_then.store(self->stats().threads);
    }));
    self = &pool;
    for (int i = 0; i < 6; ++i) pool.submit([] { std::this_thread::sleep_for(1ms); });
    EXPECT_EQ(calls.load(), 0);
    pool.shutdown();
    EXPECT_EQ(calls.load(), 1);
    pool.shutdown();
    (void)pool.shutdown_now();
    EXPECT_EQ(calls.load(), 1);
  }
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(was_shutdown.load());
  EXPECT_EQ(threads_then.load(), 0u);
}

TEST(ThreadPoolHooks, OnTerminatedThatThrowsIsReported) {
  ReporterCapture reports;
  keel::ThreadPoolExecutor pool(Opts().max(1).terminated([] { throw std::runtime_error("terminated failed"); }));
  EXPECT_EQ(pool.submit([] { return 1; }).result(hang_limit), 1);
  EXPECT_NO_THROW(pool.shutdown());
  EXPECT_TRUE(pool.is_terminated());
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].where, "on_terminated hook");
}

// ---------------------------------------------------------------- thread factory

TEST(ThreadPoolFactory, CustomFactoryStartsEveryWorker) {
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).name("hfact").factory(flaky_factory(calls, 1000, 0)));
  auto open = gate.open_at_exit();
  for (int i = 0; i < 3; ++i) occupy_worker(pool, gate, started);
  EXPECT_EQ(calls.load(), 3);
  gate.open();
  const std::string name = pool.submit(keel_future_test::os_thread_name).result(hang_limit);
  EXPECT_EQ(name.rfind("hfact_", 0), 0u) << name;  // the pool still names its threads
}

TEST(ThreadPoolFactory, FactoryThatThrowsWithNoWorkerRejectsWithNoThread) {
  // EXEC-5: with no worker alive and none startable, the task is refused,
  // not queued where nobody would run it.
  for (auto kind : {QueueKind::fifo, QueueKind::handoff}) {
    for (int how : {0, 1}) {
      std::atomic<int> calls{0};
      std::atomic<int> ran{0};
      keel::ThreadPoolExecutor pool(Opts().max(2).queue(kind).factory(flaky_factory(calls, 0, how)));
      EXPECT_EQ(rejected_reason([&] { pool.submit([&] { ran.fetch_add(1); }); }), RejectedError::Reason::no_thread)
          << "queue " << static_cast<int>(kind) << " failure " << how;
      const auto s = pool.stats();
      EXPECT_EQ(s.threads, 0u);
      EXPECT_EQ(s.queued, 0u);
      EXPECT_EQ(s.submitted, 0u);
      EXPECT_EQ(s.rejected, 1u);
      EXPECT_GE(calls.load(), 1);
      pool.shutdown({.wait = false});
      EXPECT_TRUE(pool.is_terminated());
      EXPECT_EQ(ran.load(), 0);
    }
  }
}

TEST(ThreadPoolFactory, FactoryThatFailsAfterTheFirstThreadStillRunsEverything) {
  // Java's testFailingThreadFactory: only one thread can be made; every task
  // still runs on it.
  for (int how : {0, 1}) {
    std::atomic<int> calls{0};
    std::atomic<int> ran{0};
    keel::ThreadPoolExecutor pool(Opts().max(4).factory(flaky_factory(calls, 1, how)));
    std::vector<keel::Future<void>> fs;
    for (int i = 0; i < 50; ++i) fs.push_back(pool.submit([&] { ran.fetch_add(1); }));
    for (auto& f : fs) EXPECT_NO_THROW(f.result(hang_limit));
    EXPECT_EQ(ran.load(), 50);
    EXPECT_EQ(pool.stats().threads, 1u);
    stop_and_join(pool);
  }
}

TEST(ThreadPoolFactory, FactoryThatStartsTheThreadAndThenThrowsStillRunsTheWorker) {
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).factory(flaky_factory(calls, 0, 2)));
  auto f = pool.submit([] { return 6; });
  EXPECT_EQ(f.result(hang_limit), 6);
  EXPECT_EQ(pool.stats().threads, 1u);
  stop_and_join(pool);
}

TEST(ThreadPoolFactory, FailingFactoryBeyondCoreAppliesTheRejectPolicy) {
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).core(1).queue(QueueKind::handoff).factory(flaky_factory(calls, 1, 0)));
  auto open = gate.open_at_exit();
  auto a = occupy_worker(pool, gate, started);
  EXPECT_EQ(rejected_reason([&] { pool.submit([] {}); }), RejectedError::Reason::saturated);
  EXPECT_EQ(pool.stats().threads, 1u);
}

TEST(ThreadPoolFactory, PrestartWithAFailingFactoryStartsNothing) {
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).factory(flaky_factory(calls, 0, 0)));
  EXPECT_FALSE(pool.prestart_core_thread());
  EXPECT_EQ(pool.prestart_core_threads(), 0u);
  EXPECT_EQ(pool.stats().threads, 0u);
}
