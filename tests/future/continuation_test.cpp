// Continuations and combinators: the contracts of keel/future/then.hpp
// (then, then_future, inline and on an executor, refusal and drops),
// keel/future/when.hpp (when_all, when_any over mixed types and vectors) and
// keel/future/any_future.hpp (wait and as_completed over mixed types), and
// stresses of the races CONT-1 and CONT-2 are about.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../support/test_support.hpp"
#include "future_test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/any_future.hpp"
#include "keel/future/future.hpp"
#include "keel/future/then.hpp"
#include "keel/future/wait.hpp"
#include "keel/future/when.hpp"

namespace {

using keel_future_test::Gate;
using keel_future_test::holds;
using keel_future_test::Opts;

static_assert(keel::Executor<keel::ThreadPoolExecutor>);
static_assert(!keel::Executor<int>);

keel::Future<int> ready(int v) {
  keel::Promise<int> p;
  p.set_result(v);
  return p.get_future();
}

// ---- then: inline -------------------------------------------------------

TEST(Then, RunsInTheCompletingThreadWithTheValue) {
  keel::Promise<int> p;
  std::thread::id ran_on;
  auto g = p.get_future().then([&](int v) {
    ran_on = std::this_thread::get_id();
    return v * 2;
  });
  EXPECT_EQ(g.status(), keel::FutureStatus::pending);
  std::thread t([&] { p.set_result(21); });
  const auto completer = t.get_id();
  t.join();
  EXPECT_EQ(g.result(), 42);
  EXPECT_EQ(ran_on, completer);
}

TEST(Then, OnADoneFutureRunsAtOnceInTheCaller) {
  std::thread::id ran_on;
  auto g = ready(1).then([&](const int& v) {
    ran_on = std::this_thread::get_id();
    return std::to_string(v);
  });
  static_assert(std::is_same_v<decltype(g), keel::Future<std::string>>);
  EXPECT_TRUE(g.done());
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(g.result(), "1");
}

TEST(Then, SourceExceptionSkipsFnAndIsPassedOn) {
  keel::Promise<int> p;
  bool ran = false;
  auto g = p.get_future().then([&](int v) {
    ran = true;
    return v;
  });
  p.set_exception(std::runtime_error("source failed"));
  EXPECT_FALSE(ran);
  EXPECT_TRUE(holds<std::runtime_error>(g.exception()));
}

TEST(Then, CancelledSourceSkipsFnAndCancelsTheContinuation) {
  keel::Promise<int> p;
  auto f = p.get_future();
  bool ran = false;
  auto g = f.then([&](int) { ran = true; });
  ASSERT_TRUE(f.cancel());
  EXPECT_FALSE(ran);
  EXPECT_TRUE(g.cancelled());
  EXPECT_THROW(g.result(), keel::CancelledError);
}

TEST(Then, ExceptionFromFnGoesIntoItsFuture) {
  auto g = ready(1).then([](int) -> int { throw std::logic_error("fn failed"); });
  EXPECT_THROW(g.result(), std::logic_error);
}

TEST(Then, CancellingTheContinuationBeforeTheSourceCompletesMeansFnNeverRunsAndTheSourceGoesOn) {
  keel::Promise<int> p;
  auto f = p.get_future();
  bool ran = false;
  auto g = f.then([&](int) { ran = true; });
  EXPECT_TRUE(g.cancel());
  EXPECT_FALSE(f.cancelled());  // not propagated to the source
  p.set_result(3);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(g.cancelled());
  EXPECT_EQ(f.result(), 3);
}

TEST(Then, AContinuationThatStartedCannotBeCancelled) {
  Gate in_fn;
  Gate release;
  keel::Promise<int> p;
  auto g = p.get_future().then([&](int v) {
    in_fn.open();
    release.wait();
    return v;
  });
  std::thread t([&] { p.set_result(5); });
  ASSERT_TRUE(in_fn.wait());
  EXPECT_EQ(g.status(), keel::FutureStatus::running);
  EXPECT_FALSE(g.cancel());
  release.open();
  t.join();
  EXPECT_EQ(g.result(), 5);
}

TEST(Then, VoidSourcesAndResultsChain) {
  keel::Promise<void> p;
  int steps = 0;
  keel::Future<void> g = p.get_future().then([&] { ++steps; }).then([&] { ++steps; });
  keel::Future<int> h = g.then([&] { return steps; });
  p.set_result();
  EXPECT_EQ(h.result(), 2);
}

TEST(Then, MoveOnlyValueIsMovedIntoFnAndOutOfTheSource) {
  keel::Promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  auto g = f.then([](std::unique_ptr<int>&& v) { return std::make_unique<long>(*v + 1); });
  p.set_result(std::make_unique<int>(41));
  std::unique_ptr<long> out = g.take();
  EXPECT_EQ(*out, 42);
  EXPECT_THROW((void)f.result(), keel::InvalidStateError);  // moved out, as take() does
}

TEST(Then, FnReturningAFutureIsUnwrapped) {
  keel::Promise<int> inner;
  auto inner_f = inner.get_future();
  auto g = ready(1).then([&](int) { return inner_f; });
  static_assert(std::is_same_v<decltype(g), keel::Future<int>>);
  EXPECT_EQ(g.status(), keel::FutureStatus::running);
  EXPECT_FALSE(g.cancel());
  inner.set_result(9);
  EXPECT_EQ(g.result(), 9);
}

TEST(Then, UnwrappedFutureFailureAndCancelAreItsOutcome) {
  keel::Promise<int> failing;
  auto g = ready(1).then([&](int) { return failing.get_future(); });
  failing.set_exception(std::runtime_error("inner failed"));
  EXPECT_THROW(g.result(), std::runtime_error);

  keel::Promise<int> cancelled;
  auto cf = cancelled.get_future();
  auto h = ready(1).then([&](int) { return cf; });
  ASSERT_TRUE(cf.cancel());
  EXPECT_THROW(h.result(), keel::CancelledError);
  EXPECT_FALSE(h.cancelled());  // it was running: the cancel of the inner future is its error
}

TEST(ThenFuture, GetsTheFinalFutureWhateverItsOutcome) {
  keel::Promise<int> failing;
  auto g = failing.get_future().then_future([](keel::Future<int> f) { return f.exception() != nullptr; });
  failing.set_exception(std::runtime_error("x"));
  EXPECT_TRUE(g.result());

  keel::Promise<int> p;
  auto f = p.get_future();
  auto h = f.then_future([](const keel::Future<int>& src) { return src.cancelled(); });
  ASSERT_TRUE(f.cancel());
  EXPECT_TRUE(h.result());
}

TEST(ThenFuture, MoveOnlyValueIsTakenFromTheFuture) {
  keel::Promise<std::unique_ptr<int>> p;
  auto g = p.get_future().then_future([](keel::Future<std::unique_ptr<int>> f) { return *f.take(); });
  p.set_result(std::make_unique<int>(7));
  EXPECT_EQ(g.result(), 7);
}

TEST(Then, ValueFnTakingAFutureIsACompileTimeChoice) {
  // then() takes the value; the future shape is then_future (checked at
  // compile time: then([](keel::Future<int>) {}) fails its static_assert).
  auto a = ready(2).then([](int v) { return v; });
  auto b = ready(2).then_future([](keel::Future<int> f) { return f.result(); });
  EXPECT_EQ(a.result(), b.result());
}

// ---- then: on an executor -----------------------------------------------

TEST(ThenOnExecutor, RunsOnAPoolThread) {
  keel::ThreadPoolExecutor pool(Opts().max(2).name("cont"));
  keel::Promise<int> p;
  auto g = p.get_future().then(pool, [](int v) { return std::make_pair(v, keel_future_test::os_thread_name()); });
  p.set_result(3);
  const auto [v, name] = g.result(keel_test::hang_limit);
  EXPECT_EQ(v, 3);
  EXPECT_EQ(name.rfind("cont", 0), 0u) << name;
  // A source already done is handed over too, never run in the caller.
  auto h = ready(4).then_future(pool, [](keel::Future<int>) { return keel_future_test::os_thread_name(); });
  EXPECT_EQ(h.result(keel_test::hang_limit).rfind("cont", 0), 0u);
}

TEST(ThenOnExecutor, RefusedByAShutDownPoolFailsTheFutureWithTheRejection) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  pool.shutdown();
  bool ran = false;
  auto g = ready(1).then(pool, [&](int v) {
    ran = true;
    return v;
  });
  ASSERT_TRUE(g.done());
  EXPECT_TRUE(holds<keel::RejectedError>(g.exception()));
  EXPECT_FALSE(ran);
}

TEST(ThenOnExecutor, ATaskTheBrokenPoolFailsUnrunFailsTheContinuationWithThatError) {
  // The submission is accepted (it starts the worker); the worker's
  // initializer then fails, breaking the pool, and the task it was handed
  // fails with BrokenThreadPool without running.
  keel::ThreadPoolExecutor pool(Opts().max(1).init([] { throw std::runtime_error("no init"); }));
  bool ran = false;
  auto g = ready(1).then(pool, [&](int v) {
    ran = true;
    return v;
  });
  ASSERT_TRUE(g.wait_for(keel_test::hang_limit));
  EXPECT_TRUE(holds<keel::BrokenThreadPool>(g.exception()));
  EXPECT_FALSE(ran);
}

TEST(ThenOnExecutor, AFailedOrCancelledSourceIsPassedOnWithoutATask) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  pool.shutdown();  // a task would be refused: the outcomes below are the sources'
  keel::Promise<int> failing;
  failing.set_exception(std::runtime_error("src"));
  auto g = failing.get_future().then(pool, [](int v) { return v; });
  EXPECT_TRUE(holds<std::runtime_error>(g.exception()));
  keel::Promise<int> p;
  auto f = p.get_future();
  ASSERT_TRUE(f.cancel());
  EXPECT_TRUE(f.then(pool, [](int v) { return v; }).cancelled());
}

TEST(ThenOnExecutor, DroppedByShutdownWithCancelFuturesIsCancelledAndNeverRuns) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto opener = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  bool ran = false;
  auto g = ready(1).then(pool, [&](int) { ran = true; });  // queued behind the blocker
  pool.shutdown({.wait = false, .cancel_futures = true});
  gate.open();
  pool.shutdown();
  EXPECT_TRUE(g.cancelled());
  EXPECT_FALSE(ran);
}

TEST(ThenOnExecutor, ShutdownNowTasksDroppedUnrunCancelTheContinuation) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto opener = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  auto g = ready(1).then(pool, [](int v) { return v; });
  auto pending = pool.shutdown_now();
  EXPECT_EQ(pending.size(), 1u);
  pending.clear();  // dropped unrun
  gate.open();
  EXPECT_TRUE(g.cancelled());
}

TEST(ThenOnExecutor, ExceptionFromFnGoesIntoItsFuture) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto g = ready(1).then(pool, [](int) -> int { throw std::out_of_range("fn"); });
  EXPECT_THROW(g.result(keel_test::hang_limit), std::out_of_range);
}

TEST(ThenOnExecutor, CancelledBeforeThePoolRunsItNeverRuns) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1));
  auto opener = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  std::atomic<bool> ran{false};
  auto g = ready(1).then(pool, [&](int) { ran = true; });
  EXPECT_TRUE(g.cancel());
  gate.open();
  pool.shutdown();
  EXPECT_FALSE(ran.load());
  EXPECT_TRUE(g.cancelled());
}

TEST(ThenOnExecutor, MoveOnlyFnAndValue) {
  keel::ThreadPoolExecutor pool(Opts().max(1));
  keel::Promise<std::unique_ptr<int>> p;
  auto captured = std::make_unique<int>(2);
  auto g = p.get_future().then(pool, [c = std::move(captured)](std::unique_ptr<int>&& v) { return *v * *c; });
  p.set_result(std::make_unique<int>(21));
  EXPECT_EQ(g.result(keel_test::hang_limit), 42);
}

// ---- when_all, when_any -------------------------------------------------

TEST(WhenAll, MixedTypesFinishOnceEveryInputIsFinalWithTheInputs) {
  keel::Promise<int> pi;
  keel::Promise<std::string> ps;
  keel::Promise<void> pv;
  auto w = keel::when_all(pi.get_future(), ps.get_future(), pv.get_future());
  static_assert(
      std::is_same_v<decltype(w),
                     keel::Future<std::tuple<keel::Future<int>, keel::Future<std::string>, keel::Future<void>>>>);
  pi.set_result(1);
  ps.set_result("two");
  EXPECT_FALSE(w.done());
  pv.set_result();
  ASSERT_TRUE(w.done());
  const auto& [fi, fs, fv] = w.result();
  EXPECT_EQ(fi.result(), 1);
  EXPECT_EQ(fs.result(), "two");
  EXPECT_TRUE(fv.done());
}

TEST(WhenAll, NeverFailsWhateverTheInputsHold) {
  keel::Promise<int> failing;
  keel::Promise<int> cancelled;
  auto fc = cancelled.get_future();
  auto w = keel::when_all(failing.get_future(), fc);
  failing.set_exception(std::runtime_error("x"));
  ASSERT_TRUE(fc.cancel());
  ASSERT_TRUE(w.done());
  EXPECT_EQ(w.exception(), nullptr);
  EXPECT_TRUE(holds<std::runtime_error>(std::get<0>(w.result()).exception()));
  EXPECT_TRUE(std::get<1>(w.result()).cancelled());
}

TEST(WhenAll, NoInputsIsFinishedAtOnce) {
  auto w = keel::when_all();
  static_assert(std::is_same_v<decltype(w), keel::Future<std::tuple<>>>);
  EXPECT_TRUE(w.done());
  auto v = keel::when_all(std::vector<keel::Future<int>>{});
  ASSERT_TRUE(v.done());
  EXPECT_TRUE(v.result().empty());
}

TEST(WhenAll, VectorFormKeepsOrderAndRepeats) {
  keel::Promise<int> a;
  keel::Promise<int> b;
  auto fa = a.get_future();
  auto w = keel::when_all(std::vector{fa, b.get_future(), fa});
  a.set_result(1);
  EXPECT_FALSE(w.done());
  b.set_result(2);
  ASSERT_TRUE(w.done());
  const auto& v = w.result();
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].result(), 1);
  EXPECT_EQ(v[1].result(), 2);
  EXPECT_TRUE(v[2] == fa);
}

TEST(WhenAll, CancellingItCancelsNoInput) {
  keel::Promise<int> a;
  auto fa = a.get_future();
  auto w = keel::when_all(fa);
  EXPECT_TRUE(w.cancel());
  EXPECT_FALSE(fa.cancelled());
  a.set_result(1);
  EXPECT_TRUE(w.cancelled());
  EXPECT_EQ(fa.result(), 1);
}

TEST(WhenAll, AnInputWithNoStateIsAnError) {
  EXPECT_THROW((void)keel::when_all(ready(1), keel::Future<int>()), keel::InvalidStateError);
  EXPECT_THROW((void)keel::when_any(std::vector<keel::Future<int>>{keel::Future<int>()}), keel::InvalidStateError);
}

TEST(WhenAny, FirstToCompleteGivesItsIndexAndEveryInput) {
  keel::Promise<int> pi;
  keel::Promise<std::string> ps;
  auto w = keel::when_any(pi.get_future(), ps.get_future());
  EXPECT_FALSE(w.done());
  ps.set_result("s");
  ASSERT_TRUE(w.done());
  const auto& r = w.result();
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(std::get<1>(r.futures).result(), "s");
  EXPECT_FALSE(std::get<0>(r.futures).done());
  pi.set_result(1);  // later completions change nothing
  EXPECT_EQ(w.result().index, 1u);
}

TEST(WhenAny, InputsAlreadyFinalGiveTheFirstInArgumentOrder) {
  keel::Promise<int> pending;
  auto w = keel::when_any(pending.get_future(), ready(1), ready(2));
  ASSERT_TRUE(w.done());
  EXPECT_EQ(w.result().index, 1u);
  pending.set_result(0);
}

TEST(WhenAny, NoInputsIsFinishedAtOnceWithNpos) {
  auto w = keel::when_any();
  ASSERT_TRUE(w.done());
  EXPECT_EQ(w.result().index, keel::WhenAnyResult<std::tuple<>>::npos);
  auto v = keel::when_any(std::vector<keel::Future<int>>{});
  ASSERT_TRUE(v.done());
  EXPECT_EQ(v.result().index, keel::WhenAnyResult<std::vector<keel::Future<int>>>::npos);
  EXPECT_TRUE(v.result().futures.empty());
}

TEST(WhenAny, VectorFormAndAFailureCountsAsFinal) {
  keel::Promise<int> a;
  keel::Promise<int> b;
  auto w = keel::when_any(std::vector{a.get_future(), b.get_future()});
  b.set_exception(std::runtime_error("b"));
  ASSERT_TRUE(w.done());
  EXPECT_EQ(w.result().index, 1u);
  a.set_result(1);
}

TEST(WhenAny, CancellingItCancelsNoInput) {
  keel::Promise<int> a;
  auto fa = a.get_future();
  auto w = keel::when_any(fa);
  EXPECT_TRUE(w.cancel());
  a.set_result(1);
  EXPECT_TRUE(w.cancelled());
  EXPECT_EQ(fa.result(), 1);
}

// The README's example of this section, as written there.
TEST(ContinuationReadme, ExampleRuns) {
  keel::ThreadPoolExecutor pool(Opts().max(2));
  keel::Future<int> n = pool.submit([] { return 20; });
  keel::Future<std::string> s = n.then([](int v) { return std::to_string(v + 1); });
  keel::Future<int> len = s.then(pool, [](const std::string& t) { return int(t.size()); });
  keel::Future<bool> failed = n.then_future([](keel::Future<int> f) { return f.exception() != nullptr; });
  auto all = keel::when_all(n, s);
  auto any = keel::when_any(n, s);
  auto [done, not_done] = keel::wait({n, s}, keel::ReturnWhen::first_completed);
  EXPECT_FALSE(done.empty());
  int yielded = 0;
  for (keel::AnyFuture f : keel::as_completed({n, s, len})) {
    EXPECT_EQ(f.exception(), nullptr);
    ++yielded;
  }
  EXPECT_EQ(yielded, 3);
  EXPECT_EQ(s.result(), "21");
  EXPECT_EQ(len.result(), 2);
  EXPECT_FALSE(failed.result());
  EXPECT_EQ(std::get<1>(all.result(keel_test::hang_limit)).result(), "21");
  EXPECT_LT(any.result(keel_test::hang_limit).index, 2u);
}

// ---- wait and as_completed over mixed types -----------------------------

TEST(AnyFutureWait, WaitOverMixedTypesSplitsDoneAndNotDone) {
  keel::Promise<int> pi;
  keel::Promise<std::string> ps;
  auto fi = pi.get_future();
  auto fs = ps.get_future();
  std::thread t([&] { ps.set_result("x"); });
  auto r = keel::wait({fi, fs}, keel::ReturnWhen::first_completed);
  t.join();
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_TRUE(r.done[0].refers_to(fs));
  ASSERT_EQ(r.not_done.size(), 1u);
  EXPECT_TRUE(r.not_done[0].refers_to(fi));
  auto timed = keel::wait({fi, fs}, std::chrono::milliseconds(1));
  EXPECT_EQ(timed.not_done.size(), 1u);
  pi.set_result(1);
  EXPECT_EQ(keel::wait({fi, fs, fi}).done.size(), 2u);  // duplicates once
}

TEST(AnyFutureWait, AsCompletedOverMixedTypesYieldsEachOnceDoneFirst) {
  keel::Promise<int> pi;
  keel::Promise<void> pv;
  auto fi = pi.get_future();
  auto fv = pv.get_future();
  auto done = ready(3);
  std::vector<keel::AnyFuture> order;
  auto seq = keel::as_completed({fi, done, fv});
  auto first = seq.next();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->refers_to(done));
  pv.set_result();
  auto second = seq.next();
  ASSERT_TRUE(second.has_value());
  EXPECT_TRUE(second->refers_to(fv));
  std::thread t([&] { pi.set_result(1); });
  for (const auto& f : seq) order.push_back(f);
  t.join();
  ASSERT_EQ(order.size(), 1u);
  EXPECT_TRUE(order[0].refers_to(fi));
}

TEST(AnyFutureWait, AsCompletedPastItsTimeoutThrows) {
  keel::Promise<int> pi;
  auto seq = keel::as_completed({pi.get_future()}, std::chrono::milliseconds(1));
  EXPECT_THROW((void)seq.next(), keel::TimeoutError);
}

TEST(AnyFutureWait, TypedFormsAreUnchanged) {
  auto f = ready(1);
  auto r = keel::wait(std::vector{f});
  static_assert(std::is_same_v<decltype(r), keel::DoneAndNotDone<int>>);
  EXPECT_EQ(r.done.size(), 1u);
}

TEST(AnyFuture, SharesTheStateOfItsFuture) {
  keel::Promise<int> p;
  auto f = p.get_future();
  keel::AnyFuture a = f;
  EXPECT_TRUE(a.valid());
  EXPECT_EQ(a.status(), keel::FutureStatus::pending);
  EXPECT_TRUE(a.cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(a.done());
  EXPECT_THROW((void)a.exception(), keel::CancelledError);
  EXPECT_TRUE(a == keel::AnyFuture(f));
  EXPECT_FALSE(keel::AnyFuture().valid());
  EXPECT_THROW((void)keel::AnyFuture().done(), keel::InvalidStateError);
  EXPECT_THROW((void)keel::wait({keel::AnyFuture()}), keel::InvalidStateError);
}

// ---- stresses and lifetimes ---------------------------------------------

TEST(ContinuationStress, CancelRacingTheSourcesCompletionRunsXorCancels) {
  for (int i = 0; i < 300; ++i) {
    keel::Promise<int> p;
    std::atomic<int> runs{0};
    auto g = p.get_future().then([&](int v) {
      runs.fetch_add(1);
      return v;
    });
    std::atomic<bool> go{false};
    bool cancelled = false;
    std::thread a([&] {
      while (!go.load()) {
      }
      p.set_result(i);
    });
    std::thread b([&] {
      while (!go.load()) {
      }
      cancelled = g.cancel();
    });
    go = true;
    a.join();
    b.join();
    ASSERT_TRUE(g.done());
    ASSERT_EQ(runs.load() + (cancelled ? 1 : 0), 1) << "iteration " << i;
    ASSERT_EQ(g.cancelled(), cancelled);
  }
}

TEST(ContinuationStress, CombinatorsWithRacingCompletersFinishOnce) {
  for (int i = 0; i < 300; ++i) {
    keel::Promise<int> a;
    keel::Promise<std::string> b;
    auto any = keel::when_any(a.get_future(), b.get_future());
    auto all = keel::when_all(a.get_future(), b.get_future());
    std::atomic<int> callbacks{0};
    any.add_done_callback([&](const auto&) { callbacks.fetch_add(1); });
    all.add_done_callback([&](const auto&) { callbacks.fetch_add(1); });
    std::thread ta([&] { a.set_result(1); });
    std::thread tb([&] { b.set_result("b"); });
    ta.join();
    tb.join();
    ASSERT_TRUE(any.done());
    ASSERT_TRUE(all.done());
    ASSERT_EQ(callbacks.load(), 2);
    const auto& r = any.result();
    ASSERT_TRUE(r.index == 0 || r.index == 1);
    ASSERT_TRUE(std::get<0>(all.result()).done() && std::get<1>(all.result()).done());
  }
}

TEST(ContinuationStress, ExecutorContinuationsRacingCancelsAndShutdownAreNeverLost) {
  std::vector<keel::Future<int>> conts;
  std::atomic<int> runs{0};
  {
    keel::ThreadPoolExecutor pool(Opts().max(2));
    for (int i = 0; i < 400; ++i) {
      auto src = pool.submit([i] { return i; });
      conts.push_back(src.then(pool, [&](int v) {
        runs.fetch_add(1);
        return v;
      }));
      if (i % 3 == 0) conts.back().cancel();
    }
    pool.shutdown({.wait = true, .cancel_futures = true});
  }
  int ran = 0;
  for (auto& g : conts) {
    ASSERT_TRUE(g.done());  // ran, cancelled, or refused by the shut-down pool
    if (!g.cancelled() && g.exception() == nullptr) ++ran;
  }
  EXPECT_EQ(ran, runs.load());
}

TEST(ContinuationLifetime, ChainDroppedBeforeTheSourceCompletesStillRunsAndFrees) {
  keel::Promise<int> p;
  std::atomic<int> runs{0};
  auto counted = std::make_shared<int>(0);
  {
    auto f = p.get_future();
    (void)
        f.then([&, counted](int v) {
           runs.fetch_add(1);
           return v;
         }).then([&, counted](int) { runs.fetch_add(1); });
  }
  EXPECT_EQ(counted.use_count(), 3);  // both continuations hold their captures until they run
  p.set_result(1);
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(counted.use_count(), 1);  // and free them once they ran
}

TEST(ContinuationLifetime, ContinuationDropsTheLastHandlesFromItsOwnThread) {
  keel::Promise<int> p;
  auto holder = std::make_unique<std::optional<keel::Future<int>>>();
  *holder = p.get_future().then([&](int v) {
    holder.reset();  // the last user handle to this very continuation's future
    return v;
  });
  std::thread t([&] { p.set_result(1); });
  t.join();
  EXPECT_TRUE(holder == nullptr);
}

TEST(ContinuationLifetime, ChainOnAPoolDestroyedWithoutWaiting) {
  std::atomic<int> runs{0};
  keel::Future<int> last;
  {
    keel::ThreadPoolExecutor pool(Opts().max(1));
    last = pool.submit([] { return 1; })
               .then(pool,
                     [&](int v) {
                       runs.fetch_add(1);
                       return v + 1;
                     })
               .then(pool, [&](int v) {
                 runs.fetch_add(1);
                 return v + 1;
               });
  }  // the destructor shuts the pool down: a continuation not yet submitted is refused
  ASSERT_TRUE(last.wait_for(keel_test::hang_limit));
  if (last.exception() == nullptr) {
    EXPECT_EQ(last.result(), 3);
    EXPECT_EQ(runs.load(), 2);
  } else {
    EXPECT_TRUE(holds<keel::RejectedError>(last.exception()));
  }
}

}  // namespace
