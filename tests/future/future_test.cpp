// keel::Future and keel::Promise: the contract of keel/future/future.hpp
// (Python's concurrent.futures.Future: states, cancel, result/exception with
// timeouts, done callbacks, set_running_or_notify_cancel, InvalidStateError),
// plus what C++ adds: void and move-only results, take(), broken promises and
// cooperative stop.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "future_test_support.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"

namespace {

using namespace std::chrono_literals;
using keel::FutureStatus;
using keel_future_test::holds;
using keel_future_test::ReporterCapture;
using keel_future_test::what_of;
using keel_test::hang_limit;
using keel_test::Stopwatch;

}  // namespace

// ---------------------------------------------------------------- states

TEST(Future, StartsPendingAndNotDone) {
  keel::Promise<int> p;
  auto f = p.get_future();
  EXPECT_TRUE(f.valid());
  EXPECT_EQ(f.status(), FutureStatus::pending);
  EXPECT_FALSE(f.running());
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.cancelled());
}

TEST(Future, SetRunningOrNotifyCancelMovesPendingToRunning) {
  keel::Promise<int> p;
  auto f = p.get_future();
  EXPECT_TRUE(p.set_running_or_notify_cancel());
  EXPECT_EQ(f.status(), FutureStatus::running);
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.cancelled());
  // Not pending any more: a second start is misuse and changes nothing.
  EXPECT_THROW(p.set_running_or_notify_cancel(), keel::InvalidStateError);
  EXPECT_EQ(f.status(), FutureStatus::running);
  p.set_result(3);
  EXPECT_EQ(f.status(), FutureStatus::finished);
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_THROW(p.set_running_or_notify_cancel(), keel::InvalidStateError);
}

TEST(Future, SetRunningOrNotifyCancelReportsACancelledFuture) {
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(f.cancel());
  EXPECT_FALSE(p.set_running_or_notify_cancel());
  EXPECT_EQ(f.status(), FutureStatus::cancelled);
}

TEST(Future, CancelSucceedsWhilePending) {
  keel::Promise<int> p;
  auto f = p.get_future();
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_EQ(f.status(), FutureStatus::cancelled);
  // keel's cancel() succeeds only while pending (Python's returns True again
  // on a cancelled future); the future stays cancelled either way.
  EXPECT_FALSE(f.cancel());
  EXPECT_TRUE(f.cancelled());
}

TEST(Future, CancelFailsWhileRunning) {
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  EXPECT_FALSE(f.cancel());
  EXPECT_FALSE(f.cancelled());
  EXPECT_EQ(f.status(), FutureStatus::running);
  p.set_result(5);
  EXPECT_EQ(f.result(), 5);
}

TEST(Future, CancelFailsOnceFinished) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_result(5);
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.status(), FutureStatus::finished);
  EXPECT_EQ(f.result(), 5);

  keel::Promise<int> q;
  auto g = q.get_future();
  q.set_exception(std::runtime_error("x"));
  EXPECT_FALSE(g.cancel());
  EXPECT_EQ(g.status(), FutureStatus::finished);
}

// ---------------------------------------------------------------- result and exception

TEST(Future, ResultAndExceptionTimeOutWhilePending) {
  keel::Promise<int> p;
  auto f = p.get_future();
  {
    const Stopwatch sw;
    EXPECT_THROW(f.result(10ms), keel::TimeoutError);
    EXPECT_GE(sw.elapsed(), 10ms);
  }
  {
    const Stopwatch sw;
    EXPECT_THROW(f.exception(10ms), keel::TimeoutError);
    EXPECT_GE(sw.elapsed(), 10ms);
  }
  {
    const Stopwatch sw;
    EXPECT_THROW(f.result_until(std::chrono::steady_clock::now() + 10ms), keel::TimeoutError);
    EXPECT_GE(sw.elapsed(), 10ms);
  }
  EXPECT_FALSE(f.wait_for(5ms));
  EXPECT_FALSE(f.wait_until(std::chrono::system_clock::now() + 5ms));
  EXPECT_THROW(f.result(0ms), keel::TimeoutError);
  EXPECT_EQ(f.status(), FutureStatus::pending);  // a timeout changes nothing
  p.set_result(1);
  EXPECT_EQ(f.result(0ms), 1);
}

TEST(Future, ResultTimesOutWhileRunning) {
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  EXPECT_THROW(f.result(5ms), keel::TimeoutError);
  EXPECT_THROW(f.exception(5ms), keel::TimeoutError);
}

TEST(Future, CancelledFutureThrowsCancelledErrorFromEveryAccessor) {
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(f.cancel());
  EXPECT_THROW(f.result(), keel::CancelledError);
  EXPECT_THROW(f.result(10ms), keel::CancelledError);
  EXPECT_THROW(f.exception(), keel::CancelledError);
  EXPECT_THROW(f.exception(10ms), keel::CancelledError);
  EXPECT_THROW(f.take(), keel::CancelledError);
  EXPECT_TRUE(f.wait_for(0ms));

  keel::Promise<void> pv;
  auto fv = pv.get_future();
  ASSERT_TRUE(fv.cancel());
  EXPECT_THROW(fv.result(), keel::CancelledError);
}

TEST(Future, ResultSetByAnotherThreadWakesTheWaiter) {
  keel::Promise<int> p;
  auto f = p.get_future();
  keel_test::TidThread setter;
  std::atomic<bool> go{false};
  setter.start([&] {
    while (!go.load()) std::this_thread::sleep_for(1ms);
    p.set_result(42);
  });
  keel_test::TidThread waiter;
  std::atomic<int> got{0};
  waiter.start([&] { got.store(f.result(hang_limit)); });
  waiter.wait_blocked();
  EXPECT_FALSE(f.done());
  go.store(true);
  waiter.join();
  setter.join();
  EXPECT_EQ(got.load(), 42);
}

TEST(Future, CancelByAnotherThreadWakesTheWaiterWithCancelledError) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::atomic<bool> cancelled_error{false};
  keel_test::TidThread waiter([&] {
    try {
      (void)f.result(hang_limit);
    } catch (const keel::CancelledError&) {
      cancelled_error.store(true);
    }
  });
  waiter.wait_blocked();
  EXPECT_TRUE(f.cancel());
  waiter.join();
  EXPECT_TRUE(cancelled_error.load());
}

TEST(Future, ManyWaitersAllWakeOnOneResult) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::atomic<int> sum{0};
  std::vector<std::unique_ptr<keel_test::TidThread>> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.push_back(std::make_unique<keel_test::TidThread>([&sum, f] { sum.fetch_add(f.result(hang_limit)); }));
  }
  for (auto& w : waiters) w->wait_blocked();
  p.set_result(10);
  for (auto& w : waiters) w->join();
  EXPECT_EQ(sum.load(), 40);
}

TEST(Future, ExceptionIsStoredAndResultRethrowsIt) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_exception(std::runtime_error("boom"));
  EXPECT_EQ(f.status(), FutureStatus::finished);
  EXPECT_FALSE(f.cancelled());
  const auto e = f.exception();
  ASSERT_TRUE(e);
  EXPECT_TRUE(holds<std::runtime_error>(e));
  EXPECT_EQ(what_of(e), "boom");
  EXPECT_EQ(what_of(f.exception(0ms)), "boom");
  try {
    (void)f.result();
    ADD_FAILURE() << "result() did not rethrow";
  } catch (const std::runtime_error& x) {
    EXPECT_STREQ(x.what(), "boom");
  }
}

TEST(Future, ExceptionIsNullForANormalResult) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_result(1);
  EXPECT_EQ(f.exception(), nullptr);
  EXPECT_EQ(f.exception(5ms), nullptr);
}

TEST(Future, SetExceptionTakesAnExceptionPtr) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_exception(std::make_exception_ptr(std::logic_error("lp")));
  EXPECT_TRUE(holds<std::logic_error>(f.exception()));
  EXPECT_THROW((void)f.result(), std::logic_error);
}

TEST(Future, NullptrLiteralAsExceptionIsAValueErrorAndChangesNothing) {
  // set_exception(nullptr) is the same request as set_exception of a null
  // exception_ptr: a ValueError, not an exception of type std::nullptr_t.
  keel::Promise<int> p;
  auto f = p.get_future();
  EXPECT_THROW(p.set_exception(nullptr), keel::ValueError);
  EXPECT_EQ(f.status(), FutureStatus::pending) << "set_exception(nullptr) completed the future";
}

TEST(Future, NullExceptionIsAValueErrorAndChangesNothing) {
  keel::Promise<int> p;
  auto f = p.get_future();
  EXPECT_THROW(p.set_exception(std::exception_ptr()), keel::ValueError);
  EXPECT_EQ(f.status(), FutureStatus::pending);
  p.set_result(2);
  EXPECT_EQ(f.result(), 2);
}

TEST(Future, ResultReturnsAReferenceSharedByCopies) {
  keel::Promise<std::string> p;
  auto f = p.get_future();
  auto g = f;
  p.set_result("shared");
  EXPECT_EQ(&f.result(), &g.result());
  EXPECT_EQ(g.result(), "shared");
}

TEST(Future, CopiesShareOneState) {
  keel::Promise<int> p;
  auto f = p.get_future();
  auto g = f;
  auto h = p.get_future();
  EXPECT_TRUE(f == g);
  EXPECT_TRUE(f == h);
  keel::Promise<int> other;
  EXPECT_FALSE(f == other.get_future());
  EXPECT_TRUE(g.cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(h.cancelled());
}

TEST(Future, DefaultConstructedHasNoState) {
  keel::Future<int> f;
  EXPECT_FALSE(f.valid());
  EXPECT_THROW(f.status(), keel::InvalidStateError);
  EXPECT_THROW(f.done(), keel::InvalidStateError);
  EXPECT_THROW(f.cancel(), keel::InvalidStateError);
  EXPECT_THROW((void)f.result(), keel::InvalidStateError);
  keel::Promise<int> p;
  auto g = p.get_future();
  auto moved = std::move(g);
  EXPECT_FALSE(g.valid());  // NOLINT(bugprone-use-after-move): moved-from is specified
  EXPECT_TRUE(moved.valid());
}

TEST(Future, VoidFutureCompletesAndReportsErrors) {
  keel::Promise<void> p;
  auto f = p.get_future();
  p.set_result();
  EXPECT_NO_THROW(f.result());
  EXPECT_NO_THROW(f.result(0ms));
  EXPECT_NO_THROW(f.take());
  EXPECT_EQ(f.exception(), nullptr);

  keel::Promise<void> q;
  auto g = q.get_future();
  q.set_exception(std::runtime_error("v"));
  EXPECT_THROW(g.result(), std::runtime_error);
  EXPECT_THROW(q.set_result(), keel::InvalidStateError);
}

TEST(Future, MoveOnlyResultIsTakenExactlyOnce) {
  keel::Promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  p.set_result(std::make_unique<int>(5));
  ASSERT_TRUE(f.result());
  EXPECT_EQ(*f.result(), 5);
  std::unique_ptr<int> v = f.take();
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 5);
  EXPECT_THROW(f.take(), keel::InvalidStateError);
  EXPECT_THROW((void)f.result(), keel::InvalidStateError);
  EXPECT_TRUE(f.done());  // the future stays finished
}

TEST(Future, TakeRethrowsTheStoredException) {
  keel::Promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  p.set_exception(std::out_of_range("oor"));
  EXPECT_THROW(f.take(), std::out_of_range);
  EXPECT_THROW(f.take(), std::out_of_range);  // nothing was taken
}

TEST(Future, TakeWaitsForTheResult) {
  keel::Promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  keel_test::TidThread taker;
  std::atomic<int> got{0};
  taker.start([&] { got.store(*f.take()); });
  taker.wait_blocked();
  p.set_result(std::make_unique<int>(9));
  taker.join();
  EXPECT_EQ(got.load(), 9);
}

TEST(Future, WritesBeforeSetResultAreVisibleToTheReader) {
  // Plain (non-atomic) data written by the completing thread must be visible
  // to whoever sees the future done; TSan checks the ordering.
  for (int iter = 0; iter < keel_test::scaled(100, 10); ++iter) {
    keel::Promise<int> p;
    auto f = p.get_future();
    std::vector<int> data;
    int plain = 0;
    std::thread t([&] {
      data.assign(64, iter);
      plain = iter + 1;
      p.set_result(iter);
    });
    const bool done = f.wait_for(hang_limit);
    t.join();
    ASSERT_TRUE(done);
    EXPECT_EQ(f.result(), iter);
    EXPECT_EQ(plain, iter + 1);
    ASSERT_EQ(data.size(), 64u);
    EXPECT_EQ(data[63], iter);
  }
}

// ---------------------------------------------------------------- Promise

TEST(Promise, SetResultTwiceIsInvalidStateAndKeepsTheFirstValue) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_result(1);
  EXPECT_THROW(p.set_result(2), keel::InvalidStateError);
  EXPECT_THROW(p.set_exception(std::runtime_error("late")), keel::InvalidStateError);
  EXPECT_EQ(f.result(), 1);
  EXPECT_EQ(f.exception(), nullptr);
}

TEST(Promise, SetExceptionTwiceIsInvalidStateAndKeepsTheFirstError) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_exception(std::runtime_error("first"));
  EXPECT_THROW(p.set_exception(std::runtime_error("second")), keel::InvalidStateError);
  EXPECT_THROW(p.set_result(7), keel::InvalidStateError);
  EXPECT_EQ(what_of(f.exception()), "first");
}

TEST(Promise, SettingACancelledFutureIsInvalidState) {
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(f.cancel());
  EXPECT_THROW(p.set_result(1), keel::InvalidStateError);
  EXPECT_THROW(p.set_exception(std::runtime_error("x")), keel::InvalidStateError);
  EXPECT_TRUE(f.cancelled());
}

TEST(Promise, InvalidStateErrorIsAMisuseError) {
  keel::Promise<int> p;
  p.set_result(1);
  EXPECT_THROW(p.set_result(2), keel::MisuseError);
}

TEST(Promise, DestroyedWithoutAResultBreaksItsFuture) {
  keel::Future<int> f;
  {
    keel::Promise<int> p;
    f = p.get_future();
  }
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.status(), FutureStatus::finished);
  EXPECT_THROW((void)f.result(), keel::BrokenPromiseError);
  EXPECT_TRUE(holds<keel::BrokenPromiseError>(f.exception()));
}

TEST(Promise, DestroyedWhileAThreadWaitsWakesItWithBrokenPromise) {
  auto p = std::make_unique<keel::Promise<int>>();
  auto f = p->get_future();
  std::atomic<bool> broken{false};
  keel_test::TidThread waiter([&] {
    try {
      (void)f.result(hang_limit);
    } catch (const keel::BrokenPromiseError&) {
      broken.store(true);
    }
  });
  waiter.wait_blocked();
  p.reset();
  waiter.join();
  EXPECT_TRUE(broken.load());
}

TEST(Promise, DestroyedAfterSettingKeepsTheResult) {
  keel::Future<int> f;
  {
    keel::Promise<int> p;
    f = p.get_future();
    p.set_result(8);
  }
  EXPECT_EQ(f.result(), 8);
}

TEST(Promise, DestroyedAfterCancelLeavesItCancelled) {
  keel::Future<int> f;
  {
    keel::Promise<int> p;
    f = p.get_future();
    ASSERT_TRUE(f.cancel());
  }
  EXPECT_TRUE(f.cancelled());
}

TEST(Promise, MoveAssignmentAbandonsTheOldState) {
  keel::Promise<int> p;
  auto f1 = p.get_future();
  keel::Promise<int> q;
  auto f2 = q.get_future();
  p = std::move(q);
  EXPECT_THROW((void)f1.result(0ms), keel::BrokenPromiseError);
  EXPECT_FALSE(f2.done());
  p.set_result(3);
  EXPECT_EQ(f2.result(), 3);
}

TEST(Promise, MovedFromPromiseHasNoState) {
  keel::Promise<int> p;
  auto f = p.get_future();
  keel::Promise<int> q(std::move(p));
  EXPECT_THROW((void)p.get_future(), keel::InvalidStateError);  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW(p.set_running_or_notify_cancel(), keel::InvalidStateError);
  q.set_result(4);
  EXPECT_EQ(f.result(), 4);
}

TEST(Promise, RequestStopSetsThePromiseStopToken) {
  keel::Promise<int> p;
  auto f = p.get_future();
  auto token = p.stop_token();
  EXPECT_FALSE(token.stop_requested());
  EXPECT_FALSE(f.stop_requested());
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  EXPECT_TRUE(f.request_stop());
  EXPECT_TRUE(token.stop_requested());
  EXPECT_TRUE(f.stop_requested());
  EXPECT_FALSE(f.request_stop());                // already requested
  EXPECT_EQ(f.status(), FutureStatus::running);  // a stop request changes no state
  p.set_result(1);
  EXPECT_EQ(f.result(), 1);
}

TEST(Promise, RequestStopReachesACooperativeWorker) {
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(p.set_running_or_notify_cancel());
  std::thread worker([&p, token = p.stop_token()] {
    const auto end = std::chrono::steady_clock::now() + hang_limit;
    while (!token.stop_requested() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
    p.set_result(token.stop_requested() ? 1 : -1);
  });
  EXPECT_FALSE(f.wait_for(5ms));
  EXPECT_TRUE(f.request_stop());
  const bool done = f.wait_for(hang_limit);
  worker.join();
  ASSERT_TRUE(done);
  EXPECT_EQ(f.result(), 1);
}

// ---------------------------------------------------------------- done callbacks

TEST(FutureCallback, RunsOnceWithTheFinishedFuture) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::atomic<int> calls{0};
  std::atomic<int> seen{0};
  f.add_done_callback([&](const keel::Future<int>& done) {
    calls.fetch_add(1);
    EXPECT_TRUE(done.done());
    seen.store(done.result());
  });
  EXPECT_EQ(calls.load(), 0);
  p.set_result(42);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen.load(), 42);
  f.cancel();  // no-op on a finished future: nothing runs again
  EXPECT_EQ(calls.load(), 1);
}

TEST(FutureCallback, RunInTheOrderAdded) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::vector<int> order;
  for (int i = 0; i < 6; ++i) {
    f.add_done_callback([&order, i](const keel::Future<int>&) { order.push_back(i); });
  }
  p.set_result(0);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(FutureCallback, SeesAnException) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::string what;
  f.add_done_callback([&](const keel::Future<int>& done) { what = what_of(done.exception()); });
  p.set_exception(std::runtime_error("cb-ex"));
  EXPECT_EQ(what, "cb-ex");
}

TEST(FutureCallback, RunsOnCancelInTheCancellingThread) {
  keel::Promise<int> p;
  auto f = p.get_future();
  bool saw_cancel = false;
  pid_t tid = 0;
  f.add_done_callback([&](const keel::Future<int>& done) {
    saw_cancel = done.cancelled();
    tid = keel_test::this_tid();
  });
  ASSERT_TRUE(f.cancel());
  EXPECT_TRUE(saw_cancel);
  EXPECT_EQ(tid, keel_test::this_tid());
}

TEST(FutureCallback, RunsInTheCompletingThread) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::atomic<pid_t> cb_tid{0};
  f.add_done_callback([&](const keel::Future<int>&) { cb_tid.store(keel_test::this_tid()); });
  std::atomic<pid_t> setter_tid{0};
  std::thread t([&] {
    setter_tid.store(keel_test::this_tid());
    p.set_result(1);
  });
  t.join();
  EXPECT_NE(cb_tid.load(), 0);
  EXPECT_EQ(cb_tid.load(), setter_tid.load());
}

TEST(FutureCallback, AddedToADoneFutureRunsAtOnceInTheCaller) {
  for (int kind = 0; kind < 3; ++kind) {
    keel::Promise<int> p;
    auto f = p.get_future();
    if (kind == 0) p.set_result(1);
    if (kind == 1) p.set_exception(std::runtime_error("e"));
    if (kind == 2) {
      ASSERT_TRUE(f.cancel());
    }
    int calls = 0;
    pid_t tid = 0;
    f.add_done_callback([&](const keel::Future<int>&) {
      ++calls;
      tid = keel_test::this_tid();
    });
    EXPECT_EQ(calls, 1) << "kind " << kind;
    EXPECT_EQ(tid, keel_test::this_tid());
  }
}

TEST(FutureCallback, ThrowingCallbackIsReportedAndTheOthersStillRun) {
  ReporterCapture reports;
  keel::Promise<int> p;
  auto f = p.get_future();
  std::vector<int> ran;
  f.add_done_callback([&](const keel::Future<int>&) { ran.push_back(1); });
  f.add_done_callback([&](const keel::Future<int>&) -> void {
    ran.push_back(2);
    throw std::runtime_error("callback failed");
  });
  f.add_done_callback([&](const keel::Future<int>&) { ran.push_back(3); });
  EXPECT_NO_THROW(p.set_result(0));
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].where, "done callback");
  EXPECT_EQ(entries[0].what, "callback failed");
  EXPECT_EQ(f.result(), 0);  // the future's result is untouched
}

TEST(FutureCallback, ThrowingCallbackOnADoneFutureIsReportedNotThrown) {
  ReporterCapture reports;
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_result(1);
  EXPECT_NO_THROW(f.add_done_callback([](const keel::Future<int>&) { throw std::logic_error("late cb"); }));
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].what, "late cb");
}

TEST(FutureCallback, DefaultReporterWritesOneLineToStderr) {
  keel::set_error_reporter({});
  keel::Promise<int> p;
  auto f = p.get_future();
  f.add_done_callback([](const keel::Future<int>&) { throw std::runtime_error("to-stderr"); });
  testing::internal::CaptureStderr();
  p.set_result(1);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("done callback"), std::string::npos) << err;
  EXPECT_NE(err.find("to-stderr"), std::string::npos) << err;
}

TEST(FutureCallback, ThrowingReporterFallsBackToStderr) {
  keel::set_error_reporter([](std::string_view, std::exception_ptr) { throw std::runtime_error("bad reporter"); });
  testing::internal::CaptureStderr();
  keel::report_error("somewhere", std::make_exception_ptr(std::runtime_error("original")));
  const std::string err = testing::internal::GetCapturedStderr();
  keel::set_error_reporter({});
  EXPECT_NE(err.find("original"), std::string::npos) << err;
}

// report_error copies the reporter under a process-wide lock: a child forked
// while another thread reported must still be able to set and use one.
TEST(FutureCallback, ForkWhileOtherThreadsReportErrorsLeavesTheReporterUsableInTheChild) {
  keel::set_error_reporter([](std::string_view, std::exception_ptr) {});
  const auto error = std::make_exception_ptr(std::runtime_error("fork test"));
  const int hung =
      keel_test::children_hung_while_forking([&] { keel::report_error("fork test", error); },
                                             [&] {
                                               keel::set_error_reporter([](std::string_view, std::exception_ptr) {});
                                               keel::report_error("fork test", error);
                                               return 0;
                                             },
                                             keel_test::scaled(200, 20));
  keel::set_error_reporter({});
  EXPECT_EQ(hung, 0) << "a forked child hung on the error reporter's lock";
}

TEST(FutureCallback, CallbackMayAddAnotherCallbackToTheSameFuture) {
  keel::Promise<int> p;
  auto f = p.get_future();
  std::vector<std::string> log;
  f.add_done_callback([&](const keel::Future<int>& done) {
    log.push_back("outer");
    auto copy = done;
    copy.add_done_callback([&](const keel::Future<int>&) { log.push_back("inner"); });
    log.push_back("outer-end");
  });
  p.set_result(1);
  EXPECT_EQ(log, (std::vector<std::string>{"outer", "inner", "outer-end"}));
}

TEST(FutureCallback, CallbackKeepsTheStateAliveAfterEveryHandleIsGone) {
  std::atomic<int> seen{0};
  keel::Promise<int> p;
  {
    auto f = p.get_future();
    f.add_done_callback([&](const keel::Future<int>& done) { seen.store(done.result()); });
  }
  p.set_result(11);
  EXPECT_EQ(seen.load(), 11);
}

TEST(FutureCallback, AddedConcurrentlyWithCompletionEachRunsExactlyOnce) {
  // EXEC-7: a callback added while another thread completes the future runs
  // exactly once, either in the completer or at once in the adder.
  const int iters = keel_test::scaled(200, 20);
  constexpr int per_iter = 20;
  for (int it = 0; it < iters; ++it) {
    keel::Promise<int> p;
    auto f = p.get_future();
    std::vector<std::atomic<int>> counts(per_iter);
    std::atomic<bool> go{false};
    std::thread adder([&] {
      go.store(true);
      for (int i = 0; i < per_iter; ++i) {
        f.add_done_callback([&counts, i](const keel::Future<int>&) { counts[i].fetch_add(1); });
      }
    });
    while (!go.load()) std::this_thread::yield();
    p.set_result(it);
    adder.join();
    for (int i = 0; i < per_iter; ++i) ASSERT_EQ(counts[i].load(), 1) << "iteration " << it << " callback " << i;
  }
}

TEST(Future, CancelRacingSetRunningExactlyOneWins) {
  // EXEC-2: cancel() and set_running_or_notify_cancel() racing on a pending
  // future: exactly one of them succeeds.
  const int iters = keel_test::scaled(400, 50);
  for (int it = 0; it < iters; ++it) {
    keel::Promise<int> p;
    auto f = p.get_future();
    std::atomic<int> ready{0};
    bool started = false;
    std::thread b([&] {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      started = p.set_running_or_notify_cancel();
    });
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    const bool cancelled = f.cancel();
    b.join();
    ASSERT_NE(cancelled, started) << "iteration " << it;
    EXPECT_EQ(f.cancelled(), cancelled);
    if (started) p.set_result(1);
    EXPECT_TRUE(f.done());
  }
}

TEST(Future, CancelRacingSetResultLeavesExactlyOneFinalState) {
  // EXEC-1: one final state: either cancelled (and set_result throws) or
  // finished with the value (and cancel fails).
  const int iters = keel_test::scaled(1000, 100);
  for (int it = 0; it < iters; ++it) {
    keel::Promise<int> p;
    auto f = p.get_future();
    bool set = false;
    std::thread b([&] {
      try {
        p.set_result(it);
        set = true;
      } catch (const keel::InvalidStateError&) {
      }
    });
    if (it % 2 == 0) std::this_thread::yield();
    const bool cancelled = f.cancel();
    b.join();
    ASSERT_NE(cancelled, set) << "iteration " << it;
    if (set) {
      EXPECT_EQ(f.result(), it);
    } else {
      EXPECT_TRUE(f.cancelled());
    }
  }
}

// ------------------------------------------------ unobserved exceptions

namespace {

// Turns the unobserved-exception report on for one test.
class UnobservedReports {
 public:
  UnobservedReports() { keel::set_report_unobserved_exceptions(true); }
  UnobservedReports(const UnobservedReports&) = delete;
  UnobservedReports& operator=(const UnobservedReports&) = delete;
  ~UnobservedReports() { keel::set_report_unobserved_exceptions(false); }
};

keel::Future<int> failed_future(const char* what) {
  keel::Promise<int> p;
  auto f = p.get_future();
  p.set_exception(std::make_exception_ptr(std::runtime_error(what)));
  return f;
}

}  // namespace

TEST(UnobservedException, IsSilentByDefault) {
  ReporterCapture reports;
  EXPECT_FALSE(keel::report_unobserved_exceptions());
  { auto f = failed_future("nobody looked"); }
  EXPECT_EQ(reports.size(), 0u);
}

TEST(UnobservedException, OptInReportsItOnceWhenTheLastHandleIsDropped) {
  ReporterCapture reports;
  UnobservedReports on;
  {
    auto f = failed_future("nobody looked");
    auto g = f;  // a copy: the report waits for the last handle
    f = keel::Future<int>();
    EXPECT_EQ(reports.size(), 0u);
  }
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].where, keel::unobserved_exception_where);
  EXPECT_EQ(entries[0].what, "nobody looked");
}

TEST(UnobservedException, ResultOrExceptionRetrievesIt) {
  ReporterCapture reports;
  UnobservedReports on;
  {
    auto f = failed_future("seen by result");
    EXPECT_THROW((void)f.result(), std::runtime_error);
  }
  {
    auto f = failed_future("seen by exception");
    EXPECT_NE(f.exception(), nullptr);
  }
  {
    auto f = failed_future("seen in a callback");
    f.add_done_callback([](const keel::Future<int>& g) { (void)g.exception(); });
  }
  EXPECT_EQ(reports.size(), 0u);
}

TEST(UnobservedException, ValuesCancellationsAndWaitsAreNotReported) {
  ReporterCapture reports;
  UnobservedReports on;
  {
    keel::Promise<int> p;
    auto f = p.get_future();
    p.set_result(1);
  }
  {
    keel::Promise<int> p;
    auto f = p.get_future();
    EXPECT_TRUE(f.cancel());
  }
  {
    // wait(first_exception) looks at the error to decide, but hands it to
    // nobody: still unobserved.
    std::vector<keel::Future<int>> fs{failed_future("waited on")};
    (void)keel::wait(fs, keel::ReturnWhen::first_exception);
  }
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].what, "waited on");
}

TEST(UnobservedException, APoolTaskThatThrowsIsReportedFromWhicheverThreadDropsItLast) {
  ReporterCapture reports;
  UnobservedReports on;
  {
    keel::ThreadPoolExecutor pool({.max_threads = 2});
    for (int i = 0; i < 20; ++i) (void)pool.submit([] { throw std::runtime_error("task failed"); });
    pool.shutdown({.wait = true});
  }
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 20u);
  for (const auto& e : entries) EXPECT_EQ(e.what, "task failed");
}

TEST(UnobservedException, AnAfterTaskHookThatSawTheErrorRetrievedIt) {
  ReporterCapture reports;
  UnobservedReports on;
  std::atomic<int> seen{0};
  {
    keel::ThreadPoolOptions o;
    o.max_threads = 1;
    o.after_task = [&](const keel::TaskInfo&, std::exception_ptr e) {
      if (e) seen.fetch_add(1);
    };
    keel::ThreadPoolExecutor pool(o);
    (void)pool.submit([] { throw std::runtime_error("hooked"); });
    pool.shutdown({.wait = true});
  }
  EXPECT_EQ(seen.load(), 1);
  EXPECT_EQ(reports.size(), 0u);
}

TEST(UnobservedException, TheDefaultReporterWritesOneLine) {
  keel::set_error_reporter({});
  UnobservedReports on;
  testing::internal::CaptureStderr();
  { auto f = failed_future("to-stderr"); }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "keel: exception in " + std::string(keel::unobserved_exception_where) + ": to-stderr\n");
}
