// ThreadPoolOptions::rejection_handler (Java's RejectedExecutionHandler, as
// the JSR-166 TCK tests it): called on the submitting thread with the
// refused task and the pool, for saturation only (never after shutdown:
// EXEC-10); whatever it does, the submitter's future is never left pending
// (EXEC-3): run here, cancelled, taken and run or dropped later, failed with
// RejectedError when the handler does nothing, or the handler's exception
// thrown by submit.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel::QueueKind;
using keel::RejectedError;
using keel::RejectedTask;
using keel::RejectPolicy;
using keel::ThreadPoolExecutor;
using keel_future_test::Gate;
using keel_future_test::Opts;
using keel_future_test::rejected_reason;
using keel_test::eventually;
using keel_test::hang_limit;

// A pool of one worker and a queue of one, with `handler`.
keel::ThreadPoolOptions one_and_one(keel::RejectionHandler handler) {
  keel::ThreadPoolOptions o = Opts().max(1).queue(QueueKind::fifo, 1).o;
  o.rejection_handler = std::move(handler);
  return o;
}

// Fills the pool: its worker waits on the gate and one task waits in the
// queue; returns both futures.
std::vector<keel::Future<int>> saturate(ThreadPoolExecutor& pool, Gate& gate) {
  std::vector<keel::Future<int>> fs;
  auto started = std::make_shared<std::atomic<bool>>(false);
  fs.push_back(pool.submit([&gate, started] {
    started->store(true);
    gate.wait();
    return 1;
  }));
  EXPECT_TRUE(eventually([&] { return started->load(); }));
  fs.push_back(pool.submit([] { return 2; }));
  return fs;
}

TEST(ThreadPoolRejectionHandler, RunsOnTheSubmittingThreadWithThePoolAndTheReason) {
  Gate gate;
  std::atomic<int> calls{0};
  std::optional<RejectedError::Reason> reason;
  std::uint64_t handler_tid = 0;
  ThreadPoolExecutor* seen_pool = nullptr;
  ThreadPoolExecutor pool(one_and_one([&](RejectedTask& t, ThreadPoolExecutor& p) {
    calls.fetch_add(1);
    reason = t.reason();
    handler_tid = keel_test::this_tid();
    seen_pool = &p;
    EXPECT_TRUE(t.pending());
    EXPECT_TRUE(t.run());  // as caller_runs
    EXPECT_FALSE(t.pending());
  }));
  auto open = gate.open_at_exit();
  auto fs = saturate(pool, gate);
  EXPECT_EQ(calls.load(), 0) << "the handler ran for a submission the pool had room for";
  auto f = pool.submit([] { return keel_test::this_tid(); });
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(reason, RejectedError::Reason::saturated);
  EXPECT_EQ(handler_tid, keel_test::this_tid());
  EXPECT_EQ(seen_pool, &pool);
  ASSERT_TRUE(f.done());  // run here, before submit returned
  EXPECT_EQ(f.result(0ms), keel_test::this_tid());
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  EXPECT_EQ(fs[0].result(hang_limit), 1);
  EXPECT_EQ(fs[1].result(hang_limit), 2);
}

TEST(ThreadPoolRejectionHandler, AHandlerThatDoesNothingLeavesTheFutureFailedNeverPending) {
  // EXEC-3: a handler that returns without running, cancelling or taking the
  // task must not leave its future pending for ever (Java's DiscardPolicy does).
  Gate gate;
  std::atomic<int> ran{0};
  ThreadPoolExecutor pool(one_and_one([](RejectedTask&, ThreadPoolExecutor&) {}));
  auto open = gate.open_at_exit();
  auto fs = saturate(pool, gate);
  auto f = pool.submit([&] { return ran.fetch_add(1); });
  ASSERT_TRUE(f.done()) << "the refused task's future was left pending";
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(rejected_reason([&] { f.result(0ms); }), RejectedError::Reason::saturated);
  gate.open();
  pool.shutdown({.wait = true});
  EXPECT_EQ(ran.load(), 0);
}

TEST(ThreadPoolRejectionHandler, CancelReturnsACancelledFutureAndTheTaskNeverRuns) {
  Gate gate;
  std::atomic<int> ran{0};
  ThreadPoolExecutor pool(one_and_one([](RejectedTask& t, ThreadPoolExecutor&) {
    EXPECT_TRUE(t.cancel());
    EXPECT_FALSE(t.cancel());  // settled: a second cancel has nothing to do
    EXPECT_FALSE(t.run());
  }));
  auto open = gate.open_at_exit();
  auto fs = saturate(pool, gate);
  auto f = pool.submit([&] { return ran.fetch_add(1); });
  EXPECT_TRUE(f.cancelled());
  gate.open();
  pool.shutdown({.wait = true});
  EXPECT_EQ(ran.load(), 0);
}

TEST(ThreadPoolRejectionHandler, AnExceptionFromTheHandlerReachesTheSubmitter) {
  Gate gate;
  std::atomic<int> ran{0};
  ThreadPoolExecutor pool(
      one_and_one([](RejectedTask&, ThreadPoolExecutor&) { throw std::runtime_error("refused by the handler"); }));
  auto open = gate.open_at_exit();
  auto fs = saturate(pool, gate);
  try {
    pool.submit([&] { return ran.fetch_add(1); });
    ADD_FAILURE() << "submit returned although the handler threw";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "refused by the handler");
  }
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  pool.shutdown({.wait = true});
  EXPECT_EQ(ran.load(), 0);
}

TEST(ThreadPoolRejectionHandler, ATakenTaskRunsElsewhereOrIsCancelledWhenDropped) {
  // "Enqueue elsewhere": the handler takes the task and hands it to another
  // pool; the submitter's future resolves from there.
  Gate gate;
  ThreadPoolExecutor overflow(Opts().max(1).o);
  std::vector<keel::PendingTask> kept;
  bool keep = false;
  ThreadPoolExecutor pool(one_and_one([&](RejectedTask& t, ThreadPoolExecutor&) {
    if (keep) {
      kept.push_back(t.take());
      EXPECT_FALSE(t.pending());
      return;
    }
    auto task = std::make_shared<keel::PendingTask>(t.take());
    overflow.submit([task] { task->run(); });
  }));
  auto open = gate.open_at_exit();
  auto fs = saturate(pool, gate);
  auto moved = pool.submit([] { return keel_test::this_tid(); });
  EXPECT_NE(moved.result(hang_limit), keel_test::this_tid());  // ran on the overflow pool, the main one is full

  keep = true;
  auto later = pool.submit([] { return 7; });
  auto dropped = pool.submit([] { return 8; });
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_FALSE(later.done());  // in the handler's custody: pending until run or dropped
  EXPECT_TRUE(kept[0].run());
  EXPECT_EQ(later.result(0ms), 7);
  kept.clear();  // dropping the other cancels it
  EXPECT_TRUE(dropped.cancelled());
  gate.open();
}

TEST(ThreadPoolRejectionHandler, NotCalledAfterShutdownWhichRefusesAsEver) {
  // Java calls its handler for shutdown rejections too; keel keeps EXEC-10:
  // after shutdown every submit throws RejectedError(shutdown).
  std::atomic<int> calls{0};
  ThreadPoolExecutor pool(one_and_one([&](RejectedTask& t, ThreadPoolExecutor&) {
    calls.fetch_add(1);
    t.run();
  }));
  pool.shutdown();
  EXPECT_EQ(rejected_reason([&] { pool.submit([] { return 1; }); }), RejectedError::Reason::shutdown);
  EXPECT_EQ(calls.load(), 0);
}

TEST(ThreadPoolRejectionHandler, CalledWhenNoThreadCanStart) {
  // Java: a thread factory that fails makes execute() reject the task.
  std::atomic<int> calls{0};
  keel::ThreadPoolOptions o = Opts().max(1).factory([](keel::platform::Thread&, std::function<void()>) {}).o;
  o.rejection_handler = [&](RejectedTask& t, ThreadPoolExecutor&) {
    calls.fetch_add(1);
    EXPECT_EQ(t.reason(), RejectedError::Reason::no_thread);
  };
  ThreadPoolExecutor pool(std::move(o));
  auto f = pool.submit([] { return 1; });
  EXPECT_EQ(calls.load(), 1);
  ASSERT_TRUE(f.done());
  EXPECT_EQ(rejected_reason([&] { f.result(0ms); }), RejectedError::Reason::no_thread);
}

TEST(ThreadPoolRejectionHandler, ANonAbortPolicyBesideAHandlerIsAValueError) {
  keel::ThreadPoolOptions o = Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::caller_runs).o;
  o.rejection_handler = [](RejectedTask&, ThreadPoolExecutor&) {};
  EXPECT_THROW(ThreadPoolExecutor pool(std::move(o)), keel::ValueError);
}

}  // namespace
