// keel::ThreadPoolExecutor, the Python side of its contract
// (keel/executor/thread_pool.hpp): submit and its futures, default sizes,
// thread names, idle-thread reuse, shutdown in all its forms, shutdown_now,
// await_termination, the destructor, initializers and the broken pool, and
// map with timeout and lookahead. The Java controls are in
// thread_pool_java_test.cpp, the racing stress tests in
// thread_pool_stress_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/wait.hpp"

namespace {

using namespace std::chrono_literals;
using keel::FutureStatus;
using keel::RejectedError;
using keel_future_test::Gate;
using keel_future_test::holds;
using keel_future_test::Opts;
using keel_future_test::os_thread_name;
using keel_future_test::rejected_reason;
using keel_future_test::what_of;
using keel_test::eventually;
using keel_test::hang_limit;
using keel_test::Stopwatch;

int mul(int a, int b) { return a * b; }

// Counts copies and moves of itself.
struct Tracked {
  explicit Tracked(int v, std::atomic<int>* copies) : value(v), copies(copies) {}
  Tracked(const Tracked& o) : value(o.value), copies(o.copies) { copies->fetch_add(1); }
  Tracked(Tracked&& o) noexcept = default;
  Tracked& operator=(const Tracked&) = delete;
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() = default;
  int value;
  std::atomic<int>* copies;
};

// Shuts the pool down without waiting and fails (instead of hanging) if it
// does not terminate within hang_limit.
void shutdown_and_await(keel::ThreadPoolExecutor& pool) {
  pool.shutdown({.wait = false});
  ASSERT_TRUE(pool.await_termination(hang_limit)) << "the pool never terminated";
  pool.shutdown();  // joins the exited workers
}

bool is_number(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

}  // namespace

// ---------------------------------------------------------------- submit

TEST(ThreadPool, SubmitReturnsTheResult) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  auto f = pool.submit(mul, 21, 2);
  EXPECT_EQ(f.result(hang_limit), 42);
  auto g = pool.submit([](int a, int b) { return a + b; }, 40, 2);
  EXPECT_EQ(g.result(hang_limit), 42);
  EXPECT_EQ(g.status(), FutureStatus::finished);
}

TEST(ThreadPool, SubmitCopiesLvalueArgumentsAndMovesRvalues) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  std::atomic<int> copies{0};
  Tracked lvalue(5, &copies);
  auto f = pool.submit([](Tracked t) { return t.value; }, lvalue);
  EXPECT_EQ(f.result(hang_limit), 5);
  EXPECT_EQ(copies.load(), 1);  // stored once, then moved into the call
  EXPECT_EQ(lvalue.value, 5);

  copies.store(0);
  auto g = pool.submit([](Tracked t) { return t.value * 2; }, Tracked(6, &copies));
  EXPECT_EQ(g.result(hang_limit), 12);
  EXPECT_EQ(copies.load(), 0);

  copies.store(0);
  Tracked captured(7, &copies);
  auto h = pool.submit([t = std::move(captured)] { return t.value; });
  EXPECT_EQ(h.result(hang_limit), 7);
  EXPECT_EQ(copies.load(), 0);
}

TEST(ThreadPool, SubmitTakesMoveOnlyArgumentsAndResults) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto f = pool.submit([](std::unique_ptr<int> p) { return std::make_unique<int>(*p + 1); }, std::make_unique<int>(41));
  std::unique_ptr<int> r = f.take();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
  EXPECT_THROW(f.take(), keel::InvalidStateError);
}

TEST(ThreadPool, VoidTasksComplete) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  std::atomic<int> ran{0};
  auto f = pool.submit([&] { ran.fetch_add(1); });
  EXPECT_NO_THROW(f.result(hang_limit));
  EXPECT_EQ(ran.load(), 1);
}

TEST(ThreadPool, TaskExceptionPropagatesThroughItsFuture) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  auto f = pool.submit([]() -> int { throw std::invalid_argument("bad input"); });
  ASSERT_TRUE(f.wait_for(hang_limit));
  EXPECT_EQ(f.status(), FutureStatus::finished);
  EXPECT_TRUE(holds<std::invalid_argument>(f.exception()));
  EXPECT_EQ(what_of(f.exception()), "bad input");
  EXPECT_THROW((void)f.result(), std::invalid_argument);
  // The worker survives a throwing task.
  EXPECT_EQ(pool.submit(mul, 3, 3).result(hang_limit), 9);
}

TEST(ThreadPool, TasksRunOnWorkerThreadsNotTheCaller) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  auto f = pool.submit([] { return keel_test::this_tid(); });
  EXPECT_NE(f.result(hang_limit), keel_test::this_tid());
}

TEST(ThreadPool, WritesInATaskAreVisibleAfterResult) {
  keel::ThreadPoolExecutor pool(Opts().max(3));
  for (int it = 0; it < keel_test::scaled(100, 10); ++it) {
    std::vector<int> data;
    int plain = 0;
    auto f = pool.submit([&data, &plain, it] {
      data.assign(32, it);
      plain = it + 1;
    });
    f.result(hang_limit);
    EXPECT_EQ(plain, it + 1);
    ASSERT_EQ(data.size(), 32u);
    EXPECT_EQ(data.back(), it);
  }
}

TEST(ThreadPool, DoneCallbackRunsOnceOnTheWorker) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  std::atomic<int> calls{0};
  std::atomic<pid_t> cb_tid{0};
  std::atomic<pid_t> task_tid{0};
  auto f = pool.submit([&] {
    task_tid.store(keel_test::this_tid());
    gate.wait();
    return 1;
  });
  f.add_done_callback([&](const keel::Future<int>& done) {
    EXPECT_EQ(done.result(), 1);
    cb_tid.store(keel_test::this_tid());
    calls.fetch_add(1);
  });
  gate.open();
  ASSERT_TRUE(f.wait_for(hang_limit));
  ASSERT_TRUE(eventually([&] { return calls.load() == 1; }));
  EXPECT_EQ(cb_tid.load(), task_tid.load());
  shutdown_and_await(pool);
  EXPECT_EQ(calls.load(), 1);
}

TEST(ThreadPool, RunningTaskCannotBeCancelledButCanBeAskedToStop) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  std::atomic<bool> started{false};
  auto f = pool.submit(
      [&](std::stop_token st, int base) {
        started.store(true);
        const auto end = std::chrono::steady_clock::now() + hang_limit;
        while (!st.stop_requested() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
        return st.stop_requested() ? base : -1;
      },
      7);
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  EXPECT_EQ(f.status(), FutureStatus::running);
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.cancel());
  EXPECT_FALSE(f.stop_requested());
  EXPECT_TRUE(f.request_stop());
  EXPECT_FALSE(f.request_stop());
  EXPECT_TRUE(f.stop_requested());
  EXPECT_EQ(f.result(hang_limit), 7);
}

TEST(ThreadPool, RequestStopOnATaskWithoutAStopTokenDoesNothing) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto f = pool.submit([&] {
    gate.wait();
    return 3;
  });
  auto open = gate.open_at_exit();
  EXPECT_FALSE(f.request_stop());
  EXPECT_FALSE(f.stop_requested());
  gate.open();
  EXPECT_EQ(f.result(hang_limit), 3);
}

TEST(ThreadPool, CancelledQueuedTaskNeverRuns) {
  // EXEC-2: a task cancelled while queued never runs; its future is cancelled.
  Gate gate;
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  auto queued = pool.submit([&] {
    ran.fetch_add(1);
    return 1;
  });
  EXPECT_EQ(queued.status(), FutureStatus::pending);
  EXPECT_TRUE(queued.cancel());
  gate.open();
  blocker.result(hang_limit);
  EXPECT_EQ(pool.submit(mul, 1, 1).result(hang_limit), 1);  // runs after the cancelled one was dropped
  shutdown_and_await(pool);
  EXPECT_EQ(ran.load(), 0);
  EXPECT_TRUE(queued.cancelled());
  EXPECT_THROW((void)queued.result(), keel::CancelledError);
}

TEST(ThreadPool, PriorityForANonPriorityQueueIsAValueError) {
  for (auto kind : {keel::QueueKind::fifo, keel::QueueKind::lifo, keel::QueueKind::handoff}) {
    keel::ThreadPoolExecutor pool(Opts().max(1).queue(kind));
    std::atomic<int> ran{0};
    EXPECT_THROW(pool.submit(keel::Priority{1}, [&] { ran.fetch_add(1); }), keel::ValueError);
    const auto s = pool.stats();
    EXPECT_EQ(s.submitted, 0u);
    EXPECT_EQ(s.queued, 0u);
    EXPECT_EQ(s.threads, 0u);
    EXPECT_EQ(pool.submit(mul, 2, 2).result(hang_limit), 4);  // nothing changed
    shutdown_and_await(pool);
    EXPECT_EQ(ran.load(), 0);
  }
}

// ---------------------------------------------------------------- sizes, names, reuse

TEST(ThreadPool, DefaultMaxThreadsIsMinOf32AndCpusPlus4) {
  const std::size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t expected = std::min<std::size_t>(32, cpus + 4);
  EXPECT_EQ(keel::ThreadPoolExecutor::default_max_threads(), expected);
  keel::ThreadPoolExecutor pool;
  EXPECT_EQ(pool.max_threads(), expected);
  EXPECT_EQ(pool.core_threads(), expected);  // core defaults to max: Python's rule
  EXPECT_EQ(pool.stats().threads, 0u);       // threads start lazily
}

TEST(ThreadPool, ThreadNamePrefixIsVisibleToTheOs) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(3).name("htpool"));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<std::string>> names;
  for (int i = 0; i < 3; ++i) {
    names.push_back(pool.submit([&] {
      gate.wait();
      return os_thread_name();
    }));
  }
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 3; }));
  gate.open();
  std::set<std::string> distinct;
  for (auto& f : names) {
    const std::string n = f.result(hang_limit);
    ASSERT_EQ(n.rfind("htpool_", 0), 0u) << n;
    EXPECT_TRUE(is_number(n.substr(7))) << n;
    distinct.insert(n);
  }
  EXPECT_EQ(distinct.size(), 3u);
}

TEST(ThreadPool, DefaultThreadNamePrefixIsKeelPool) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  const std::string n = pool.submit(os_thread_name).result(hang_limit);
  ASSERT_EQ(n.rfind("keel-pool_", 0), 0u) << n;
  EXPECT_TRUE(is_number(n.substr(10))) << n;
}

TEST(ThreadPool, IdleThreadIsReusedBeforeANewOneStarts) {
  // Python's test_idle_thread_reuse: sequential tasks on a pool that may grow
  // to 4 threads use one, because an idle worker takes each new task.
  keel::ThreadPoolExecutor pool(Opts().max(4));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(pool.submit(mul, i, 2).result(hang_limit), 2 * i);
    ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  }
  const auto s = pool.stats();
  EXPECT_EQ(s.threads, 1u);
  EXPECT_EQ(s.largest, 1u);
}

// Submits n tasks that each wait, up to hang_limit, until all n have
// started; returns how many saw all n (n when they ran at once).
std::size_t rendezvous(keel::ThreadPoolExecutor& pool, std::size_t n) {
  auto arrived = std::make_shared<std::atomic<std::size_t>>(0);
  std::vector<keel::Future<bool>> fs;
  for (std::size_t i = 0; i < n; ++i) {
    fs.push_back(pool.submit([arrived, n] {
      arrived->fetch_add(1);
      return eventually([&] { return arrived->load() == n; }, hang_limit);
    }));
  }
  std::size_t together = 0;
  for (auto& f : fs) together += f.result(hang_limit * 2) ? 1 : 0;
  return together;
}

// EXEC-12: a task never waits behind a running one while a worker idles, so
// n tasks on a pool of n run at once, as CPython's and the TCK's tests with a
// barrier of n expect, whichever way each task reaches its worker.
TEST(ThreadPool, NTasksOnNWorkersRunAtOnce) {
  // Each task starts a core thread of its own.
  keel::ThreadPoolExecutor pool(Opts().max(4));
  EXPECT_EQ(rendezvous(pool, 4), 4u);
}

TEST(ThreadPool, NTasksOnNIdleWorkersRunAtOnce) {
  // Each task is handed to an idle worker: prestarted, then reused.
  for (auto kind : {keel::QueueKind::fifo, keel::QueueKind::lifo, keel::QueueKind::priority}) {
    keel::ThreadPoolExecutor pool(Opts().max(4).queue(kind));
    ASSERT_EQ(pool.prestart_core_threads(), 4u);
    ASSERT_TRUE(eventually([&] { return pool.stats().idle == 4; }));
    EXPECT_EQ(rendezvous(pool, 4), 4u) << "queue kind " << static_cast<int>(kind);
    ASSERT_TRUE(eventually([&] { return pool.stats().idle == 4; }));
    EXPECT_EQ(rendezvous(pool, 4), 4u) << "queue kind " << static_cast<int>(kind) << ", reused";
  }
}

TEST(ThreadPool, TasksBesideABusyWorkerRunAtOnceOnTheIdleOnes) {
  // One worker runs a long task; the next three go to the three idle
  // workers, not into the queue behind it.
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(4));
  auto open = gate.open_at_exit();
  ASSERT_EQ(pool.prestart_core_threads(), 4u);
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 4; }));
  auto busy = pool.submit([&] { gate.wait(); });
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 1 && pool.stats().idle == 3; }));
  EXPECT_EQ(rendezvous(pool, 3), 3u);
  EXPECT_EQ(pool.stats().queued, 0u);
  gate.open();
  busy.result(hang_limit);
}

TEST(ThreadPool, SaturationStartsExactlyMaxThreads) {
  // Python's test_saturation: many blocked tasks, at most max_threads threads.
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(4));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<void>> fs;
  for (int i = 0; i < 60; ++i) fs.push_back(pool.submit([&] { gate.wait(); }));
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 4; }));
  auto s = pool.stats();
  EXPECT_EQ(s.threads, 4u);
  EXPECT_EQ(s.largest, 4u);
  EXPECT_EQ(s.queued, 56u);
  EXPECT_EQ(s.submitted, 60u);
  gate.open();
  for (auto& f : fs) EXPECT_NO_THROW(f.result(hang_limit));
  s = pool.stats();
  EXPECT_EQ(s.largest, 4u);
}

// ---------------------------------------------------------------- shutdown

TEST(ThreadPoolShutdown, SubmitAfterShutdownIsRejectedWithReasonShutdown) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  EXPECT_EQ(pool.submit(mul, 2, 3).result(hang_limit), 6);
  EXPECT_FALSE(pool.is_shutdown());
  pool.shutdown();
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_TRUE(pool.is_terminated());
  std::atomic<int> ran{0};
  EXPECT_EQ(rejected_reason([&] { pool.submit([&] { ran.fetch_add(1); }); }), RejectedError::Reason::shutdown);
  EXPECT_EQ(rejected_reason([&] { pool.submit(mul, 1, 1); }), RejectedError::Reason::shutdown);
  EXPECT_EQ(pool.stats().rejected, 2u);
  EXPECT_EQ(pool.stats().submitted, 1u);
  EXPECT_EQ(ran.load(), 0);
}

TEST(ThreadPoolShutdown, ShutdownWaitReturnsAfterEveryTaskAndWorker) {
  // EXEC-4: shutdown(wait) returns only after every accepted task finished
  // and every worker exited.
  std::atomic<int> finished{0};
  keel::ThreadPoolExecutor pool(Opts().max(3));
  std::vector<keel::Future<void>> fs;
  for (int i = 0; i < 9; ++i) {
    fs.push_back(pool.submit([&] {
      std::this_thread::sleep_for(2ms);
      finished.fetch_add(1);
    }));
  }
  pool.shutdown();
  EXPECT_EQ(finished.load(), 9);
  for (auto& f : fs) EXPECT_TRUE(f.done());
  const auto s = pool.stats();
  EXPECT_EQ(s.threads, 0u);
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.completed, 9u);
  EXPECT_TRUE(pool.is_terminated());
}

TEST(ThreadPoolShutdown, ShutdownWaitJoinsEveryOsThread) {
  // Python's test_threads_terminate: after shutdown(wait) no worker thread
  // exists any more, as the OS sees it (also those retired by keep-alive).
  // A joined thread can linger in /proc/self/task for a moment while the
  // kernel finishes its exit (pthread_join returns at the tid-clear, before
  // the task is released), hence `eventually`; a worker still alive fails.
  const auto none_named = [](const char* prefix) {
    return eventually([&] { return keel_future_test::os_threads_named(prefix) == 0; });
  };
  Gate gate;
  {
    keel::ThreadPoolExecutor pool(Opts().max(3).core(1).keep_alive(1ms).queue(keel::QueueKind::handoff).name("hjoin"));
    auto open = gate.open_at_exit();
    std::vector<keel::Future<void>> fs;
    for (int i = 0; i < 3; ++i) fs.push_back(pool.submit([&] { gate.wait(); }));
    ASSERT_TRUE(eventually([&] { return pool.stats().active == 3; }));
    EXPECT_EQ(keel_future_test::os_threads_named("hjoin_"), 3);
    gate.open();
    ASSERT_TRUE(eventually([&] { return pool.stats().threads == 1; }));  // two retired, not yet joined
    pool.shutdown();
    EXPECT_TRUE(none_named("hjoin_"));
  }
  {
    keel::ThreadPoolExecutor pool(Opts().max(2).name("hjoin2"));
    pool.submit([] {}).result(hang_limit);  // the worker names itself before its first task
    EXPECT_GE(keel_future_test::os_threads_named("hjoin2_"), 1);
    pool.submit([] {});
  }
  EXPECT_TRUE(none_named("hjoin2_"));  // the destructor joined them
}

TEST(ThreadPoolShutdown, ShutdownWithoutWaitLetsQueuedWorkFinish) {
  // Python's test_shutdown_no_wait / test_cancel_futures_wait_false without
  // cancel: shutdown(wait=false) returns at once, the work still completes.
  Gate gate;
  std::atomic<int> finished{0};
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<int>> fs;
  for (int i = 0; i < 4; ++i) {
    fs.push_back(pool.submit([&, i] {
      gate.wait();
      finished.fetch_add(1);
      return i;
    }));
  }
  pool.shutdown({.wait = false});
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_FALSE(pool.is_terminated());
  EXPECT_EQ(finished.load(), 0);
  EXPECT_EQ(rejected_reason([&] { pool.submit(mul, 1, 1); }), RejectedError::Reason::shutdown);
  gate.open();
  ASSERT_TRUE(pool.await_termination(hang_limit));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(0ms), i);
  EXPECT_EQ(finished.load(), 4);
}

TEST(ThreadPoolShutdown, CancelFuturesCancelsExactlyTheQueuedTasks) {
  // EXEC-4: cancel_futures cancels exactly the tasks that had not started;
  // the running one finishes with its value.
  Gate gate;
  std::atomic<int> ran{0};
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(2));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<int>> running;
  for (int i = 0; i < 2; ++i) {
    running.push_back(pool.submit([&, i] {
      started.fetch_add(1);
      gate.wait();
      ran.fetch_add(1);
      return i;
    }));
  }
  // Observed from inside the tasks: `active` counts a worker from the moment
  // it holds a task, a little before its future reads running.
  ASSERT_TRUE(eventually([&] { return started.load() == 2; }));
  std::vector<keel::Future<int>> queued;
  for (int i = 0; i < 5; ++i) {
    queued.push_back(pool.submit([&, i] {
      ran.fetch_add(1);
      return 100 + i;
    }));
  }
  pool.shutdown({.wait = false, .cancel_futures = true});
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  for (auto& f : running) EXPECT_EQ(f.status(), FutureStatus::running);
  EXPECT_EQ(pool.stats().queued, 0u);
  gate.open();
  ASSERT_TRUE(pool.await_termination(hang_limit));
  EXPECT_EQ(running[0].result(0ms), 0);
  EXPECT_EQ(running[1].result(0ms), 1);
  EXPECT_EQ(ran.load(), 2);
}

TEST(ThreadPoolShutdown, NotTerminatedBeforeCancelFuturesFinalizedEveryQueuedTask) {
  // EXEC-4: "terminated" means every accepted future is final. shutdown with
  // cancel_futures cancels the drained tasks outside the pool's lock; the
  // last worker exiting meanwhile must not declare the pool terminated while
  // one of them is still pending. The first cancellation's callback lets the
  // worker finish and exit, then looks.
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  auto running = pool.submit([&] { gate.wait(); });
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 1; }));
  auto first = pool.submit([] { return 1; });
  auto second = pool.submit([] { return 2; });
  std::atomic<bool> looked{false};
  std::atomic<bool> terminated_with_pending{false};
  first.add_done_callback([&](const keel::Future<int>&) {
    gate.open();
    EXPECT_TRUE(eventually([&] { return pool.stats().threads == 0; }));
    std::this_thread::sleep_for(2ms);  // room for a (wrong) termination to happen
    terminated_with_pending.store(pool.is_terminated() && !second.done());
    looked.store(true);
  });
  pool.shutdown({.wait = false, .cancel_futures = true});
  EXPECT_TRUE(looked.load());
  EXPECT_FALSE(terminated_with_pending.load()) << "terminated while a drained task was still pending";
  ASSERT_TRUE(pool.await_termination(hang_limit));
  EXPECT_TRUE(first.cancelled());
  EXPECT_TRUE(second.cancelled());
}

TEST(ThreadPoolShutdown, CancelFuturesWithWaitWaitsForTheRunningTasks) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  std::atomic<bool> started{false};
  auto run = pool.submit([&] {
    started.store(true);
    gate.wait();
    return 1;
  });
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  auto queued = pool.submit(mul, 2, 2);
  std::atomic<bool> returned{false};
  std::thread closer([&] {
    pool.shutdown({.wait = true, .cancel_futures = true});
    returned.store(true);
  });
  EXPECT_TRUE(eventually([&] { return queued.cancelled(); }));  // no ASSERT: closer must be joined
  std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(returned.load());  // the running task still holds it
  gate.open();
  closer.join();
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(run.result(0ms), 1);
  EXPECT_TRUE(pool.is_terminated());
  EXPECT_EQ(pool.stats().threads, 0u);
}

TEST(ThreadPoolShutdown, ShutdownNowReturnsTheNeverStartedTasksAndStopsRunningOnes) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  std::atomic<bool> started{false};
  std::atomic<int> queued_ran{0};
  auto running = pool.submit([&](std::stop_token st) {
    started.store(true);
    const auto end = std::chrono::steady_clock::now() + hang_limit;
    while (!st.stop_requested() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
    return st.stop_requested() ? 1 : -1;
  });
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  std::vector<keel::Future<int>> queued;
  for (int i = 0; i < 4; ++i) {
    queued.push_back(pool.submit([&, i] {
      queued_ran.fetch_add(1);
      return 10 + i;
    }));
  }
  auto pending = pool.shutdown_now();
  ASSERT_EQ(pending.size(), 4u);
  for (std::size_t i = 1; i < pending.size(); ++i) EXPECT_LT(pending[i - 1].id(), pending[i].id());  // fifo order
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_EQ(rejected_reason([&] { pool.submit(mul, 1, 1); }), RejectedError::Reason::shutdown);
  for (auto& f : queued) EXPECT_EQ(f.status(), FutureStatus::pending);  // handed back, not cancelled
  EXPECT_EQ(running.result(hang_limit), 1);                             // it saw the stop request
  ASSERT_TRUE(pool.await_termination(hang_limit));

  // Run the first one here; drop the rest: their futures are cancelled.
  EXPECT_TRUE(pending[0].run());
  EXPECT_THROW(pending[0].run(), keel::InvalidStateError);
  EXPECT_EQ(queued[0].result(0ms), 10);
  EXPECT_TRUE(pending[1].cancel());
  EXPECT_FALSE(pending[1].run());  // cancelled meanwhile: it does not run
  pending.clear();
  EXPECT_TRUE(queued[1].cancelled());
  EXPECT_TRUE(queued[2].cancelled());
  EXPECT_TRUE(queued[3].cancelled());
  EXPECT_EQ(queued_ran.load(), 1);
}

TEST(ThreadPoolShutdown, ShutdownNowOnAnIdlePoolTerminatesIt) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  EXPECT_EQ(pool.submit(mul, 1, 2).result(hang_limit), 2);
  auto pending = pool.shutdown_now();
  EXPECT_TRUE(pending.empty());
  EXPECT_TRUE(pool.await_termination(hang_limit));
  EXPECT_TRUE(pool.is_terminated());
}

TEST(ThreadPoolShutdown, PendingTaskKeepsPriorityAndId) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1).queue(keel::QueueKind::priority));
  auto open = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 1; }));
  auto a = pool.submit(keel::Priority{5}, mul, 1, 1);
  auto b = pool.submit(keel::Priority{-2}, mul, 2, 2);
  auto pending = pool.shutdown_now();
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].priority(), -2);  // the order they would have run in
  EXPECT_EQ(pending[1].priority(), 5);
  EXPECT_EQ(pending[0].id(), 3u);  // submission order, from 1
  EXPECT_EQ(pending[1].id(), 2u);
  gate.open();
  EXPECT_TRUE(pending[1].run());
  EXPECT_EQ(a.result(0ms), 1);
  pending.clear();
  EXPECT_TRUE(b.cancelled());
}

TEST(ThreadPoolShutdown, AwaitTerminationTimesOutUntilShutdown) {
  // Java's testAwaitTermination_timesOut.
  keel::ThreadPoolExecutor pool(Opts().max(1));
  EXPECT_EQ(pool.submit(mul, 1, 1).result(hang_limit), 1);
  EXPECT_FALSE(pool.is_terminated());
  EXPECT_FALSE(pool.await_termination(0ms));
  EXPECT_FALSE(pool.await_termination(-1ms));
  const Stopwatch sw;
  EXPECT_FALSE(pool.await_termination(10ms));
  EXPECT_GE(sw.elapsed(), 10ms);
  EXPECT_FALSE(pool.is_terminated());
  pool.shutdown({.wait = false});
  EXPECT_TRUE(pool.await_termination(hang_limit));
  EXPECT_TRUE(pool.is_terminated());
  EXPECT_TRUE(pool.await_termination());
}

TEST(ThreadPoolShutdown, UnusedPoolTerminatesAtShutdown) {
  std::atomic<int> terminated{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).terminated([&] { terminated.fetch_add(1); }));
  pool.shutdown({.wait = false});
  EXPECT_TRUE(pool.is_terminated());
  EXPECT_EQ(terminated.load(), 1);
  pool.shutdown();
  pool.shutdown({.wait = false, .cancel_futures = true});
  EXPECT_EQ(terminated.load(), 1);
}

TEST(ThreadPoolShutdown, DestructorWaitsForQueuedAndRunningTasks) {
  // Python's test_del_shutdown / context-manager shutdown: leaving the scope
  // runs everything already accepted, then joins the workers.
  std::atomic<int> finished{0};
  std::vector<keel::Future<int>> fs;
  {
    keel::ThreadPoolExecutor pool(Opts().max(2));
    for (int i = 0; i < 8; ++i) {
      fs.push_back(pool.submit([&, i] {
        std::this_thread::sleep_for(2ms);
        finished.fetch_add(1);
        return i;
      }));
    }
  }
  EXPECT_EQ(finished.load(), 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(0ms), i);
}

TEST(ThreadPoolShutdown, ShutdownWaitFromAWorkerIsMisuseAndChangesNothing) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  auto f = pool.submit([&] {
    try {
      pool.shutdown();
    } catch (const keel::MisuseError&) {
      return 1;
    }
    return 0;
  });
  EXPECT_EQ(f.result(hang_limit), 1);
  EXPECT_FALSE(pool.is_shutdown());
  EXPECT_EQ(pool.submit(mul, 3, 4).result(hang_limit), 12);

  auto g = pool.submit([&] {
    try {
      pool.await_termination();
    } catch (const keel::MisuseError&) {
      return 1;
    }
    return 0;
  });
  EXPECT_EQ(g.result(hang_limit), 1);
  auto timed = pool.submit([&] { return pool.await_termination(1ms); });  // a bounded wait is allowed
  EXPECT_FALSE(timed.result(hang_limit));
  EXPECT_FALSE(pool.is_shutdown());
}

TEST(ThreadPoolShutdown, ShutdownWithoutWaitFromAWorkerIsAllowed) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto f = pool.submit([&] {
    pool.shutdown({.wait = false});
    return pool.is_shutdown();
  });
  EXPECT_TRUE(f.result(hang_limit));
  EXPECT_TRUE(pool.await_termination(hang_limit));
}

// ---------------------------------------------------------------- initializer

TEST(ThreadPoolInit, InitializerRunsOncePerWorkerOnThatWorker) {
  Gate gate;
  std::mutex m;
  std::set<pid_t> init_tids;
  std::atomic<int> inits{0};
  keel::ThreadPoolExecutor pool(Opts().max(3).init([&] {
    inits.fetch_add(1);
    std::lock_guard<std::mutex> l(m);
    init_tids.insert(keel_test::this_tid());
  }));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<pid_t>> fs;
  for (int i = 0; i < 3; ++i) {
    fs.push_back(pool.submit([&] {
      gate.wait();
      return keel_test::this_tid();
    }));
  }
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 3; }));
  gate.open();
  std::set<pid_t> task_tids;
  for (auto& f : fs) task_tids.insert(f.result(hang_limit));
  for (int i = 0; i < 5; ++i) task_tids.insert(pool.submit([] { return keel_test::this_tid(); }).result(hang_limit));
  EXPECT_EQ(inits.load(), 3);
  std::lock_guard<std::mutex> l(m);
  EXPECT_EQ(init_tids, task_tids);
}

TEST(ThreadPoolInit, FailingInitializerBreaksThePool) {
  // Python's FailingInitializerMixin: the pending task fails with
  // BrokenThreadPool, and so does every later submission.
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).init([] { throw std::runtime_error("init failed"); }));
  auto f = pool.submit([&] {
    ran.fetch_add(1);
    return 1;
  });
  ASSERT_TRUE(f.wait_for(hang_limit));
  EXPECT_EQ(f.status(), FutureStatus::finished);
  EXPECT_TRUE(holds<keel::BrokenThreadPool>(f.exception()));
  EXPECT_TRUE(holds<keel::BrokenExecutor>(f.exception()));
  EXPECT_NE(what_of(f.exception()).find("init failed"), std::string::npos) << what_of(f.exception());
  EXPECT_TRUE(pool.is_broken());
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_THROW(pool.submit(mul, 1, 1), keel::BrokenThreadPool);
  ASSERT_TRUE(pool.await_termination(hang_limit));
  pool.shutdown();
  EXPECT_THROW(pool.submit(mul, 1, 1), keel::BrokenThreadPool);
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(pool.stats().threads, 0u);
}

TEST(ThreadPoolInit, FailingInitializerFailsEveryQueuedTask) {
  Gate gate;
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1).init([&] {
    gate.wait();
    throw std::runtime_error("late init failure");
  }));
  auto open = gate.open_at_exit();
  std::vector<keel::Future<int>> fs;
  for (int i = 0; i < 4; ++i) {
    fs.push_back(pool.submit([&] {
      ran.fetch_add(1);
      return 1;
    }));
  }
  EXPECT_EQ(pool.stats().queued, 3u);
  gate.open();
  for (auto& f : fs) {
    ASSERT_TRUE(f.wait_for(hang_limit));
    EXPECT_TRUE(holds<keel::BrokenThreadPool>(f.exception()));
  }
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(pool.stats().queued, 0u);
  EXPECT_THROW(pool.submit(mul, 1, 1), keel::BrokenThreadPool);
  EXPECT_TRUE(pool.await_termination(hang_limit));
}

TEST(ThreadPoolInit, FailingInitializerStopsIdleWorkersToo) {
  // One prestarted worker initialised fine and went idle; a second one's
  // initializer fails: the pool breaks, and the idle worker exits.
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).init([&] {
    if (calls.fetch_add(1) == 1) throw std::runtime_error("second init fails");
  }));
  ASSERT_TRUE(pool.prestart_core_thread());
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  (void)pool.prestart_core_thread();
  ASSERT_TRUE(pool.await_termination(hang_limit));
  EXPECT_TRUE(pool.is_broken());
  EXPECT_EQ(pool.stats().threads, 0u);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_THROW(pool.submit(mul, 1, 1), keel::BrokenThreadPool);
}

TEST(ThreadPoolInit, FailingInitializerLetsTheRunningTaskFinish) {
  std::atomic<int> calls{0};
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(2).init([&] {
    if (calls.fetch_add(1) == 1) throw std::runtime_error("second init fails");
  }));
  auto open = gate.open_at_exit();
  auto a = pool.submit([&] {
    gate.wait();
    return 1;
  });
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 1; }));
  auto b = pool.submit(mul, 2, 2);  // a second thread starts (core == max == 2) and fails
  ASSERT_TRUE(b.wait_for(hang_limit));
  EXPECT_TRUE(holds<keel::BrokenThreadPool>(b.exception()));
  EXPECT_TRUE(pool.is_broken());
  gate.open();
  EXPECT_EQ(a.result(hang_limit), 1);  // the task already running finishes normally
  EXPECT_TRUE(pool.await_termination(hang_limit));
  EXPECT_EQ(pool.stats().threads, 0u);
}

// ---------------------------------------------------------------- map

TEST(ThreadPoolMap, ResultsComeInInputOrder) {
  keel::ThreadPoolExecutor pool(Opts().max(4));
  const std::vector<int> in{5, 4, 3, 2, 1, 0};
  std::vector<int> out;
  for (int v : pool.map(
           [](int x) {
             std::this_thread::sleep_for(std::chrono::milliseconds(x));  // later inputs finish first
             return x * 10;
           },
           in)) {
    out.push_back(v);
  }
  EXPECT_EQ(out, (std::vector<int>{50, 40, 30, 20, 10, 0}));
}

TEST(ThreadPoolMap, EmptyInputYieldsNothing) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  const std::vector<int> in;
  auto results = pool.map([](int x) { return x; }, in);
  EXPECT_FALSE(results.next());
  EXPECT_EQ(pool.stats().submitted, 0u);
}

TEST(ThreadPoolMap, VoidFunctionsYieldOnePlaceholderPerInput) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  std::atomic<int> sum{0};
  const std::vector<int> in{1, 2, 3};
  int n = 0;
  for (auto& unit : pool.map([&](int x) { sum.fetch_add(x); }, in)) {
    (void)unit;
    ++n;
  }
  EXPECT_EQ(n, 3);
  EXPECT_EQ(sum.load(), 6);
}

TEST(ThreadPoolMap, SubmitsEveryInputUpFrontByDefault) {
  // Python's test_map_submits_without_iteration: the tasks run whether or not
  // the results are read (as long as the result sequence is alive).
  keel::ThreadPoolExecutor pool(Opts().max(2));
  std::atomic<int> ran{0};
  const std::vector<int> in{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  auto results = pool.map(
      [&](int x) {
        ran.fetch_add(1);
        return x;
      },
      in);
  EXPECT_EQ(pool.stats().submitted, 10u);
  ASSERT_TRUE(eventually([&] { return ran.load() == 10; }));
  pool.shutdown();
  EXPECT_EQ(ran.load(), 10);
}

TEST(ThreadPoolMap, LookaheadBoundsTheTasksSubmittedAheadOfTheConsumer) {
  // Python's buffersize: at most `lookahead` tasks beyond what was consumed.
  keel::ThreadPoolExecutor pool(Opts().max(4));
  std::atomic<int> started{0};
  const int n = 12;
  const std::size_t lookahead = 3;
  std::vector<int> in(n);
  for (int i = 0; i < n; ++i) in[static_cast<std::size_t>(i)] = i;
  auto results = pool.map(
      [&](int x) {
        started.fetch_add(1);
        return x;
      },
      in, {.timeout = std::nullopt, .lookahead = lookahead});
  EXPECT_EQ(pool.stats().submitted, lookahead);
  ASSERT_TRUE(eventually([&] { return started.load() == static_cast<int>(lookahead); }));
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(started.load(), static_cast<int>(lookahead));  // nothing more without consumption
  for (int k = 1; k <= n; ++k) {
    auto v = results.next();
    ASSERT_TRUE(v);
    EXPECT_EQ(*v, k - 1);
    const auto bound = static_cast<std::uint64_t>(std::min<int>(n, k + static_cast<int>(lookahead)));
    EXPECT_EQ(pool.stats().submitted, bound) << "after consuming " << k;
    EXPECT_LE(started.load(), static_cast<int>(bound));
  }
  EXPECT_FALSE(results.next());
  EXPECT_EQ(started.load(), n);
}

TEST(ThreadPoolMap, LookaheadOverAHugeInputSubmitsOnlyWhatIsConsumed) {
  // Python's test_map_buffersize_on_infinite_iterable, with a range too large
  // to submit at once.
  keel::ThreadPoolExecutor pool(Opts().max(2));
  std::vector<int> huge(1'000'000, 1);
  {
    auto results = pool.map([](int x) { return x + 1; }, huge, {.timeout = std::nullopt, .lookahead = 2});
    for (int k = 0; k < 5; ++k) {
      auto v = results.next();
      ASSERT_TRUE(v);
      EXPECT_EQ(*v, 2);
    }
  }
  EXPECT_LE(pool.stats().submitted, 7u);
  EXPECT_GE(pool.stats().submitted, 5u);
}

TEST(ThreadPoolMap, TimeoutThrowsTimeoutErrorAndCancelsTheRest) {
  // Python's test_map_timeout: results ready before the deadline come out,
  // then TimeoutError; the tasks not yet started never run.
  Gate gate;
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  ASSERT_TRUE(pool.prestart_core_thread());  // a warm worker: input 0 is done well before the deadline
  ASSERT_TRUE(eventually([&] { return pool.stats().idle == 1; }));
  const std::vector<int> in{0, 1, 2, 3, 4, 5};
  const Stopwatch sw;
  auto results = pool.map(
      [&](int x) {
        ran.fetch_add(1);
        if (x == 1) gate.wait();
        return x;
      },
      in, {.timeout = std::chrono::milliseconds(50), .lookahead = 0});
  auto first = results.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, 0);
  ASSERT_TRUE(eventually([&] { return ran.load() == 2; }));  // input 1 started: it cannot be cancelled
  EXPECT_THROW(results.next(), keel::TimeoutError);
  EXPECT_GE(sw.elapsed(), 50ms);
  EXPECT_FALSE(results.next());  // the sequence ended
  gate.open();
  shutdown_and_await(pool);
  EXPECT_EQ(ran.load(), 2);  // 0 and the blocked 1; 2..5 were cancelled
}

TEST(ThreadPoolMap, TimeoutOnTheFirstResultCancelsEverythingNotStarted) {
  Gate gate;
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  const std::vector<int> in{0, 1, 2, 3};
  const Stopwatch sw;
  auto results = pool.map(
      [&](int x) {
        ran.fetch_add(1);
        gate.wait();
        return x;
      },
      in, {.timeout = std::chrono::milliseconds(10), .lookahead = 0});
  ASSERT_TRUE(eventually([&] { return ran.load() == 1; }));
  EXPECT_THROW(results.next(), keel::TimeoutError);
  EXPECT_GE(sw.elapsed(), 10ms);
  gate.open();
  shutdown_and_await(pool);
  EXPECT_EQ(ran.load(), 1);
}

TEST(ThreadPoolMap, ExceptionIsRethrownAtItsPosition) {
  keel::ThreadPoolExecutor pool(Opts().max(3));
  const std::vector<int> in{0, 1, 2, 3, 4, 5};
  auto results = pool.map(
      [](int x) {
        if (x == 3) throw std::domain_error("three");
        return x;
      },
      in);
  std::vector<int> got;
  try {
    while (auto v = results.next()) got.push_back(*v);
    ADD_FAILURE() << "no exception";
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "three");
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(results.next());  // like a Python generator, it ends there
}

TEST(ThreadPoolMap, DestroyingTheResultsCancelsTasksNotStarted) {
  Gate gate;
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto open = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  ASSERT_TRUE(eventually([&] { return pool.stats().active == 1; }));
  const std::vector<int> in{1, 2, 3, 4};
  {
    auto results = pool.map([&](int x) { return ran.fetch_add(x); }, in);
  }
  gate.open();
  shutdown_and_await(pool);
  EXPECT_EQ(ran.load(), 0);
}

TEST(ThreadPoolMap, MapAfterShutdownIsRejected) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  pool.shutdown();
  const std::vector<int> in{1, 2};
  EXPECT_EQ(rejected_reason([&] { auto r = pool.map([](int x) { return x; }, in); }), RejectedError::Reason::shutdown);
}

namespace {

TEST(ThreadPool, TaskAndItsArgumentsAreFreedOnceItRanWhileTheFutureLives) {
  // Python's test_free_reference: the pool must not keep the callable (and
  // what it captured or was given) alive until the future is dropped.
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto captured = std::make_shared<int>(1);
  auto argument = std::make_shared<int>(2);
  std::weak_ptr<int> weak_captured = captured;
  std::weak_ptr<int> weak_argument = argument;
  auto f =
      pool.submit([c = std::move(captured)](const std::shared_ptr<int>& a) { return *c + *a; }, std::move(argument));
  EXPECT_EQ(f.result(keel_test::hang_limit), 3);
  // The worker frees the callable right after completing the future: allow
  // it the moment between the two.
  const auto until = std::chrono::steady_clock::now() + keel_test::hang_limit;
  while ((!weak_captured.expired() || !weak_argument.expired()) && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(weak_captured.expired()) << "the task's callable outlived its run";
  EXPECT_TRUE(weak_argument.expired()) << "the task's bound argument outlived its run";
  EXPECT_TRUE(f.done());
}

TEST(ThreadPool, CallableWithoutArgumentsIsFreedOnceItRanWhileTheFutureLives) {
  // The same for a submission without arguments (the task holds the callable
  // alone, without an argument tuple).
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto captured = std::make_shared<int>(5);
  std::weak_ptr<int> weak_captured = captured;
  auto f = pool.submit([c = std::move(captured)] { return *c; });
  EXPECT_EQ(f.result(hang_limit), 5);
  const auto until = std::chrono::steady_clock::now() + hang_limit;
  while (!weak_captured.expired() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  EXPECT_TRUE(weak_captured.expired()) << "the task's callable outlived its run";
}

TEST(ThreadPool, CallableOfATaskThatNeverRanIsFreedWithTheTask) {
  // A cancelled task never runs, so its callable is destroyed only with the
  // task itself: once the queue dropped it and the last future is gone.
  Gate gate;
  auto open = gate.open_at_exit();
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto captured = std::make_shared<int>(6);
  std::weak_ptr<int> weak_captured = captured;
  auto blocker = pool.submit([&] { gate.wait(); });
  auto queued = pool.submit([c = std::move(captured)] { return *c; });
  EXPECT_TRUE(queued.cancel());
  gate.open();
  shutdown_and_await(pool);
  EXPECT_FALSE(weak_captured.expired()) << "the future still holds the task";
  queued = keel::Future<int>();
  EXPECT_TRUE(weak_captured.expired()) << "the never-run task leaked its callable";
}

}  // namespace
