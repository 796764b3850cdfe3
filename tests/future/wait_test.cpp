// keel::wait and keel::as_completed: the contract of keel/future/wait.hpp
// (Python's concurrent.futures.wait with FIRST_COMPLETED, FIRST_EXCEPTION and
// ALL_COMPLETED, and as_completed), driven by Promises so that completion
// order is chosen by the test, plus pool futures for racing completions.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "future_test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"

namespace {

using namespace std::chrono_literals;
using keel::ReturnWhen;
using keel_future_test::Opts;
using keel_test::hang_limit;
using keel_test::Stopwatch;

using Futures = std::vector<keel::Future<int>>;

// n promises and their futures.
struct Promises {
  explicit Promises(int n) : ps(static_cast<std::size_t>(n)) {
    for (auto& p : ps) fs.push_back(p.get_future());
  }
  std::vector<keel::Promise<int>> ps;
  Futures fs;
};

// Runs fn on a thread once the calling thread's next blocking wait has begun
// (observed through /proc; see keel_test::wait_blocked_in_futex).
class AfterBlocked {
 public:
  template <class F>
  AfterBlocked(F fn) : waiter_(keel_test::this_tid()) {
    t_ = std::thread([this, fn = std::move(fn)]() mutable {
      keel_test::wait_blocked_in_futex(waiter_);
      fn();
    });
  }
  AfterBlocked(const AfterBlocked&) = delete;
  AfterBlocked& operator=(const AfterBlocked&) = delete;
  ~AfterBlocked() { join(); }
  void join() {
    if (t_.joinable()) t_.join();
  }

 private:
  pid_t waiter_;
  std::thread t_;
};

}  // namespace

// ---------------------------------------------------------------- wait

TEST(Wait, AllCompletedReturnsOnceEveryFutureIsDone) {
  Promises pr(3);
  pr.ps[0].set_result(0);
  AfterBlocked later([&] {
    pr.ps[2].set_result(2);
    pr.ps[1].set_exception(std::runtime_error("x"));
  });
  const auto r = keel::wait(pr.fs, hang_limit, ReturnWhen::all_completed);
  later.join();
  EXPECT_EQ(r.done, pr.fs);  // input order kept
  EXPECT_TRUE(r.not_done.empty());
}

// The one test of the overload without a timeout that really blocks (the
// watchdog bounds it).
TEST(Wait, AllCompletedIsTheDefault) {
  Promises pr(2);
  AfterBlocked later([&] {
    pr.ps[1].set_result(1);
    pr.ps[0].set_result(0);
  });
  const auto r = keel::wait(pr.fs);
  EXPECT_EQ(r.done.size(), 2u);
  EXPECT_TRUE(r.not_done.empty());
}

TEST(Wait, FirstCompletedReturnsOnTheFirstCompletion) {
  Promises pr(3);
  AfterBlocked later([&] { pr.ps[1].set_result(1); });
  const auto r = keel::wait(pr.fs, hang_limit, ReturnWhen::first_completed);
  later.join();
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_TRUE(r.done[0] == pr.fs[1]);
  EXPECT_EQ(r.not_done, (Futures{pr.fs[0], pr.fs[2]}));
}

TEST(Wait, FirstCompletedCountsACancellation) {
  Promises pr(2);
  AfterBlocked later([&] { pr.fs[0].cancel(); });
  const auto r = keel::wait(pr.fs, hang_limit, ReturnWhen::first_completed);
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_TRUE(r.done[0].cancelled());
}

TEST(Wait, FirstCompletedWithADoneFutureReturnsAtOnce) {
  Promises pr(3);
  pr.ps[2].set_result(2);
  ASSERT_TRUE(pr.fs[0].cancel());
  const auto r = keel::wait(pr.fs, ReturnWhen::first_completed);
  EXPECT_EQ(r.done, (Futures{pr.fs[0], pr.fs[2]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[1]}));
}

TEST(Wait, FirstExceptionReturnsOnTheFirstFailure) {
  Promises pr(3);
  pr.ps[0].set_result(0);  // a normal result does not end a first_exception wait
  AfterBlocked later([&] { pr.ps[2].set_exception(std::runtime_error("fail")); });
  const auto r = keel::wait(pr.fs, hang_limit, ReturnWhen::first_exception);
  later.join();
  EXPECT_EQ(r.done, (Futures{pr.fs[0], pr.fs[2]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[1]}));
}

TEST(Wait, FirstExceptionWithAnAlreadyFailedFutureReturnsAtOnce) {
  Promises pr(3);
  pr.ps[1].set_exception(std::runtime_error("early"));
  const auto r = keel::wait(pr.fs, ReturnWhen::first_exception);
  EXPECT_EQ(r.done, (Futures{pr.fs[1]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[0], pr.fs[2]}));
}

TEST(Wait, FirstExceptionWithoutFailuresWaitsForAll) {
  Promises pr(3);
  std::atomic<int> set{0};
  AfterBlocked later([&] {
    pr.ps[0].set_result(0);
    set.fetch_add(1);
    pr.ps[1].set_result(1);
    set.fetch_add(1);
    std::this_thread::sleep_for(5ms);
    set.fetch_add(1);
    pr.ps[2].set_result(2);
  });
  const auto r = keel::wait(pr.fs, hang_limit, ReturnWhen::first_exception);
  EXPECT_EQ(set.load(), 3);  // it did not return before the last completion
  EXPECT_EQ(r.done.size(), 3u);
  EXPECT_TRUE(r.not_done.empty());
}

TEST(Wait, FirstExceptionDoesNotTreatACancellationAsAnException) {
  Promises pr(2);
  ASSERT_TRUE(pr.fs[0].cancel());
  const Stopwatch sw;
  const auto r = keel::wait(pr.fs, 20ms, ReturnWhen::first_exception);
  EXPECT_GE(sw.elapsed(), 20ms);  // it waited out the timeout
  EXPECT_EQ(r.done, (Futures{pr.fs[0]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[1]}));
}

TEST(Wait, TimeoutReturnsThePartitionAtThatMoment) {
  Promises pr(3);
  pr.ps[1].set_result(1);
  const Stopwatch sw;
  const auto r = keel::wait(pr.fs, 20ms, ReturnWhen::all_completed);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_EQ(r.done, (Futures{pr.fs[1]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[0], pr.fs[2]}));
}

TEST(Wait, FirstCompletedTimesOutWhenNothingCompletes) {
  Promises pr(2);
  const Stopwatch sw;
  const auto r = keel::wait(pr.fs, 15ms, ReturnWhen::first_completed);
  EXPECT_GE(sw.elapsed(), 15ms);
  EXPECT_TRUE(r.done.empty());
  EXPECT_EQ(r.not_done, pr.fs);
}

TEST(Wait, ZeroTimeoutPollsWithoutBlocking) {
  Promises pr(2);
  pr.ps[0].set_result(0);
  const auto r = keel::wait(pr.fs, 0ms);
  EXPECT_EQ(r.done, (Futures{pr.fs[0]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[1]}));
}

TEST(Wait, DuplicatesAreCollapsedInInputOrder) {
  Promises pr(2);
  pr.ps[1].set_result(1);
  const Futures input{pr.fs[1], pr.fs[0], pr.fs[1], pr.fs[0], pr.fs[1]};
  auto r = keel::wait(input, 0ms);
  EXPECT_EQ(r.done, (Futures{pr.fs[1]}));
  EXPECT_EQ(r.not_done, (Futures{pr.fs[0]}));
  pr.ps[0].set_result(0);
  r = keel::wait(input);
  EXPECT_EQ(r.done, (Futures{pr.fs[1], pr.fs[0]}));
  EXPECT_TRUE(r.not_done.empty());
}

TEST(Wait, EmptyListReturnsAtOnce) {
  for (auto when : {ReturnWhen::first_completed, ReturnWhen::first_exception, ReturnWhen::all_completed}) {
    const auto r = keel::wait(Futures{}, when);
    EXPECT_TRUE(r.done.empty());
    EXPECT_TRUE(r.not_done.empty());
  }
}

TEST(Wait, AFutureWithoutStateIsInvalidState) {
  Promises pr(1);
  EXPECT_THROW(keel::wait(Futures{pr.fs[0], keel::Future<int>()}), keel::InvalidStateError);
  EXPECT_THROW(keel::as_completed(Futures{keel::Future<int>()}), keel::InvalidStateError);
}

TEST(Wait, CompletionAfterATimedOutWaitTouchesNothingOfIt) {
  // wait() unregisters its hooks before returning: a later completion must
  // not reach them (ASan reports it if it does), and user callbacks still run.
  Promises pr(4);
  for (int round = 0; round < 3; ++round) {
    const auto r = keel::wait(pr.fs, 1ms, ReturnWhen::first_completed);
    EXPECT_TRUE(r.done.empty());
  }
  std::atomic<int> calls{0};
  for (auto& f : pr.fs) f.add_done_callback([&](const keel::Future<int>&) { calls.fetch_add(1); });
  for (int i = 0; i < 4; ++i) pr.ps[static_cast<std::size_t>(i)].set_result(i);
  EXPECT_EQ(calls.load(), 4);
}

TEST(Wait, WorksOnPoolFuturesOfVoid) {
  keel::ThreadPoolExecutor pool(Opts().max(3));
  std::vector<keel::Future<void>> fs;
  std::atomic<int> ran{0};
  for (int i = 0; i < 12; ++i) fs.push_back(pool.submit([&] { ran.fetch_add(1); }));
  const auto r = keel::wait(fs, hang_limit);
  EXPECT_EQ(r.done.size(), 12u);
  EXPECT_EQ(ran.load(), 12);
}

TEST(Wait, RepeatedFirstCompletedOverRacingCompletionsSeesEachOnce) {
  // EXEC-7 for wait's hooks: pool tasks complete while the caller repeatedly
  // waits for the first completion among the rest; every round makes
  // progress and the done sets partition the input.
  keel::ThreadPoolExecutor pool(Opts().max(4));
  const int n = keel_test::scaled(200, 40);
  Futures fs;
  for (int i = 0; i < n; ++i) {
    fs.push_back(pool.submit([i] {
      if (i % 7 == 0) std::this_thread::yield();
      return i;
    }));
  }
  Futures rest = fs;
  std::multiset<int> seen;
  int rounds = 0;
  while (!rest.empty()) {
    auto r = keel::wait(rest, hang_limit, ReturnWhen::first_completed);
    ASSERT_FALSE(r.done.empty()) << "a round timed out";
    for (auto& f : r.done) {
      ASSERT_TRUE(f.done());
      seen.insert(f.result());
    }
    for (auto& f : r.not_done) EXPECT_NE(std::find(rest.begin(), rest.end(), f), rest.end());
    rest = std::move(r.not_done);
    ++rounds;
  }
  EXPECT_LE(rounds, n);
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(n));
  int expect = 0;
  for (int v : seen) EXPECT_EQ(v, expect++);
}

// ---------------------------------------------------------------- as_completed

TEST(AsCompleted, DoneFuturesComeFirstInInputOrder) {
  Promises pr(4);
  pr.ps[3].set_result(3);
  pr.ps[1].set_result(1);
  auto seq = keel::as_completed(pr.fs);
  auto a = seq.next();
  auto b = seq.next();
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(*a == pr.fs[1]);
  EXPECT_TRUE(*b == pr.fs[3]);
  pr.ps[2].set_result(2);
  pr.ps[0].set_result(0);
  auto c = seq.next();
  auto d = seq.next();
  ASSERT_TRUE(c && d);
  EXPECT_TRUE(*c == pr.fs[2]);
  EXPECT_TRUE(*d == pr.fs[0]);
  EXPECT_FALSE(seq.next());
}

TEST(AsCompleted, YieldsInCompletionOrder) {
  Promises pr(5);
  auto seq = keel::as_completed(pr.fs);
  const std::vector<int> order{2, 0, 4, 1, 3};
  for (int i : order) pr.ps[static_cast<std::size_t>(i)].set_result(i);
  std::vector<int> got;
  while (auto f = seq.next()) got.push_back(f->result());
  EXPECT_EQ(got, order);
}

TEST(AsCompleted, WaitsForCompletionsFromAnotherThread) {
  Promises pr(3);
  auto seq = keel::as_completed(pr.fs, hang_limit);
  std::vector<int> got;
  for (int k : {1, 2, 0}) {
    AfterBlocked later([&, k] { pr.ps[static_cast<std::size_t>(k)].set_result(k); });
    auto f = seq.next();
    ASSERT_TRUE(f);
    got.push_back(f->result());
  }
  EXPECT_EQ(got, (std::vector<int>{1, 2, 0}));
  EXPECT_FALSE(seq.next());
}

TEST(AsCompleted, TimeoutThrowsTimeoutErrorAfterTheDoneOnes) {
  Promises pr(2);
  pr.ps[1].set_result(1);
  const Stopwatch sw;
  auto seq = keel::as_completed(pr.fs, 20ms);
  auto first = seq.next();
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first == pr.fs[1]);
  EXPECT_THROW(seq.next(), keel::TimeoutError);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_THROW(seq.next(), keel::TimeoutError);  // still unfinished, still past the deadline
}

TEST(AsCompleted, TimeoutIsMeasuredFromTheCall) {
  Promises pr(1);
  const Stopwatch sw;
  auto seq = keel::as_completed(pr.fs, 15ms);
  std::this_thread::sleep_for(20ms);
  EXPECT_THROW(seq.next(), keel::TimeoutError);
  EXPECT_GE(sw.elapsed(), 15ms);
}

TEST(AsCompleted, DuplicatesAreYieldedOnce) {
  Promises pr(2);
  pr.ps[0].set_result(0);
  pr.ps[1].set_result(1);
  std::vector<int> got;
  for (const auto& f : keel::as_completed(Futures{pr.fs[0], pr.fs[1], pr.fs[0], pr.fs[1], pr.fs[0]})) {
    got.push_back(f.result());
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1}));
}

TEST(AsCompleted, EmptyListYieldsNothing) {
  auto seq = keel::as_completed(Futures{});
  EXPECT_FALSE(seq.next());
  int n = 0;
  for (const auto& f : keel::as_completed(Futures{}, 1ms)) {
    (void)f;
    ++n;
  }
  EXPECT_EQ(n, 0);
}

TEST(AsCompleted, RangeForVisitsEveryPoolFutureOnce) {
  keel::ThreadPoolExecutor pool(Opts().max(4));
  Futures fs;
  const int n = 40;
  for (int i = 0; i < n; ++i) fs.push_back(pool.submit([i] { return i * i; }));
  std::multiset<int> got;
  for (const auto& f : keel::as_completed(fs, hang_limit)) {
    EXPECT_TRUE(f.done());
    got.insert(f.result());
  }
  ASSERT_EQ(got.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) EXPECT_EQ(got.count(i * i), 1u);
}

TEST(AsCompleted, DestroyedEarlyUnregistersItsHooks) {
  // A sequence dropped before its end must leave nothing behind on the
  // futures it watched (ASan reports a use after free otherwise).
  Promises pr(3);
  {
    auto seq = keel::as_completed(pr.fs);
    pr.ps[1].set_result(1);
    auto f = seq.next();
    ASSERT_TRUE(f);
  }
  std::atomic<int> calls{0};
  pr.fs[0].add_done_callback([&](const keel::Future<int>&) { calls.fetch_add(1); });
  pr.ps[0].set_result(0);
  pr.ps[2].set_result(2);
  EXPECT_EQ(calls.load(), 1);
}

TEST(AsCompleted, UnregisteringTheFirstAMiddleAndTheLastHookKeepsTheRestInOrder) {
  // A future's hooks are a circular list headed by one pointer (future/detail/core.hpp):
  // sequences dropped at its head, in its middle and at its end must leave
  // the callbacks and the sequence still watching linked in the order added.
  keel::Promise<int> p;
  Futures fs{p.get_future()};
  std::vector<int> order;
  auto append = [&order](int i) { return [&order, i](const keel::Future<int>&) { order.push_back(i); }; };
  std::optional<keel::AsCompleted<int>> first, middle, kept, last;
  first.emplace(fs, keel::platform::Deadline::never());
  fs[0].add_done_callback(append(0));
  middle.emplace(fs, keel::platform::Deadline::never());
  fs[0].add_done_callback(append(1));
  kept.emplace(fs, keel::platform::Deadline::never());
  fs[0].add_done_callback(append(2));
  last.emplace(fs, keel::platform::Deadline::never());
  middle.reset();
  first.reset();
  last.reset();
  fs[0].add_done_callback(append(3));
  p.set_result(7);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
  auto f = kept->next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->result(), 7);
  EXPECT_FALSE(kept->next());
}

TEST(AsCompleted, RacingCompletionsAreEachYieldedExactlyOnce) {
  // EXEC-7 for as_completed's hooks: many tasks complete while the consumer
  // takes them; each future comes out once, none is lost.
  for (int round = 0; round < keel_test::scaled(10, 2); ++round) {
    keel::ThreadPoolExecutor pool(Opts().max(4));
    const int n = 100;
    Futures fs;
    for (int i = 0; i < n; ++i) fs.push_back(pool.submit([i] { return i; }));
    std::vector<int> count(n, 0);
    for (const auto& f : keel::as_completed(fs, hang_limit)) ++count[static_cast<std::size_t>(f.result())];
    for (int i = 0; i < n; ++i) ASSERT_EQ(count[static_cast<std::size_t>(i)], 1) << "future " << i;
  }
}
