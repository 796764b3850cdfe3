// ThreadPoolExecutor::starmap, keel::zip and the maps' progress callback
// (keel/executor/map_progress.hpp): tuples of arguments applied in input
// order, zip ending at the shortest range, rvalue ranges owned (LIFE-9),
// laziness, timeout and errors as map's; progress counts each call once, in
// order, one call at a time, never after the results are gone, and a
// throwing callback is reported without breaking the map (MAP-1).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel_future_test::Gate;
using keel_future_test::Opts;
using keel_future_test::ReporterCapture;
using keel_test::eventually;
using keel_test::hang_limit;

// Every (done, total) a progress callback was given, in call order.
struct ProgressLog {
  std::mutex m;
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  keel::MapProgress callback() {
    return [this](std::size_t done, std::size_t total) {
      std::lock_guard<std::mutex> l(m);
      calls.emplace_back(done, total);
    };
  }
  std::vector<std::pair<std::size_t, std::size_t>> get() {
    std::lock_guard<std::mutex> l(m);
    return calls;
  }
};

// The even numbers below n: a range with no size, as std::views::filter
// makes (written out: clang 14 cannot compile libstdc++ 12's <ranges>).
class EvenNumbers {
 public:
  explicit EvenNumbers(int n) : n_(n) {}
  struct End {};
  class Iterator {
   public:
    using difference_type = std::ptrdiff_t;
    using value_type = int;
    Iterator() = default;
    explicit Iterator(int at, int n) : at_(at), n_(n) {}
    int operator*() const { return at_; }
    Iterator& operator++() {
      at_ += 2;
      return *this;
    }
    void operator++(int) { at_ += 2; }
    bool operator==(End) const { return at_ >= n_; }

   private:
    int at_ = 0;
    int n_ = 0;
  };
  Iterator begin() const { return Iterator(0, n_); }
  End end() const { return {}; }

 private:
  int n_;
};

// The calls 1..n, each once and in order, all with `total`.
void expect_counts(const std::vector<std::pair<std::size_t, std::size_t>>& calls, std::size_t n, std::size_t total) {
  ASSERT_EQ(calls.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(calls[i].first, i + 1) << "call " << i;
    EXPECT_EQ(calls[i].second, total) << "call " << i;
  }
}

TEST(ThreadPoolStarmap, AppliesEachTuplePairOrArrayInInputOrder) {
  keel::ThreadPoolExecutor pool(Opts().max(3).o);
  const std::vector<std::tuple<int, std::string>> tuples{{1, "a"}, {2, "b"}, {3, "c"}};
  std::vector<std::string> out;
  for (auto& s :
       pool.starmap([](int n, std::string s) { return std::string(static_cast<std::size_t>(n), s[0]); }, tuples)) {
    out.push_back(s);
  }
  EXPECT_EQ(out, (std::vector<std::string>{"a", "bb", "ccc"}));

  std::vector<int> sums;
  for (int s : pool.starmap([](int a, int b) { return a - b; }, std::vector<std::pair<int, int>>{{5, 1}, {9, 2}})) {
    sums.push_back(s);
  }
  EXPECT_EQ(sums, (std::vector<int>{4, 7}));

  std::vector<int> products;
  for (int p : pool.starmap([](int a, int b, int c) { return a * b * c; },
                            std::vector<std::array<int, 3>>{{1, 2, 3}, {2, 3, 4}})) {
    products.push_back(p);
  }
  EXPECT_EQ(products, (std::vector<int>{6, 24}));
}

TEST(ThreadPoolStarmap, ZipStopsAtTheShortestRangeAndOwnsItsTemporaries) {
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  const std::vector<int> xs{1, 2, 3, 4, 5};
  std::list<std::string> names{"one", "two", "three"};  // not random access
  std::vector<std::string> out;
  // Both an lvalue (used in place) and temporaries (moved into the results).
  auto results = pool.starmap([](int x, std::string name, int y) { return name + ":" + std::to_string(x * y); },
                              keel::zip(xs, names, std::vector<int>{10, 20, 30, 40}));
  for (auto& s : results) out.push_back(s);
  EXPECT_EQ(out, (std::vector<std::string>{"one:10", "two:40", "three:90"}));

  std::vector<int> squares;
  for (int s :
       pool.starmap([](int a, int b) { return a * b; }, keel::zip(std::vector<int>{0, 1, 2, 3}, EvenNumbers(12)))) {
    squares.push_back(s);
  }
  EXPECT_EQ(squares, (std::vector<int>{0, 2, 8, 18}));
}

TEST(ThreadPoolStarmap, TheTaskKeepsCopiesNotReferencesIntoTheInputs) {
  Gate gate;
  keel::ThreadPoolExecutor pool(Opts().max(1).o);
  auto open = gate.open_at_exit();
  std::vector<std::string> words{"alpha", "beta"};
  const std::vector<int> ns{1, 2};
  auto results = pool.starmap(
      [&](std::string w, int n) {
        gate.wait();
        return w + std::to_string(n);
      },
      keel::zip(words, ns));
  words[0] = "changed";  // after the submissions, before the tasks run
  words[1] = "changed";
  gate.open();
  std::vector<std::string> out;
  for (auto& s : results) out.push_back(s);
  EXPECT_EQ(out, (std::vector<std::string>{"alpha1", "beta2"}));
}

TEST(ThreadPoolStarmap, KeepsMapsLookaheadTimeoutAndErrors) {
  Gate gate;
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  auto open = gate.open_at_exit();
  // Lazy: with lookahead 2, only two calls are submitted before results are taken.
  std::vector<std::pair<int, int>> in(10, {1, 1});
  {
    auto results =
        pool.starmap([&](int a, int b) { return ran.fetch_add(a + b) + 0; }, in, {.timeout = {}, .lookahead = 2});
    ASSERT_TRUE(eventually([&] { return ran.load() == 4; }));
    EXPECT_EQ(pool.stats().submitted, 2u);
    auto first = results.next();
    EXPECT_TRUE(first.has_value());
  }
  // An error is rethrown at its place, and ends the sequence.
  auto failing = pool.starmap(
      [](int a, int b) {
        if (a == 2) throw std::runtime_error("two");
        return a + b;
      },
      std::vector<std::pair<int, int>>{{1, 1}, {2, 2}, {3, 3}});
  EXPECT_EQ(failing.next(), std::optional<int>(2));
  EXPECT_THROW(failing.next(), std::runtime_error);
  EXPECT_EQ(failing.next(), std::nullopt);
  // The timeout is for the whole map.
  auto slow = pool.starmap(
      [&](int a, int) {
        gate.wait();
        return a;
      },
      std::vector<std::pair<int, int>>{{1, 1}}, {.timeout = 20ms});
  EXPECT_THROW(slow.next(), keel::TimeoutError);
}

TEST(ThreadPoolMapProgress, CountsEachCallOnceInOrderWithTheTotal) {
  ProgressLog log;
  ProgressLog star;
  keel::ThreadPoolExecutor pool(Opts().max(4).o);
  std::vector<int> in(50);
  for (int i = 0; i < 50; ++i) in[static_cast<std::size_t>(i)] = i;
  long sum = 0;
  {
    auto results = pool.map([](int x) { return x * 2; }, in, {.progress = log.callback()});
    for (int r : results) sum += r;
  }
  // Every result was taken, so every call was final when the results went:
  // every count was given by then (the last ones perhaps by the destructor).
  EXPECT_EQ(sum, 2450);
  expect_counts(log.get(), 50, 50);

  {
    auto results = pool.starmap([](int a, int b) { return a + b; }, keel::zip(in, in), {.progress = star.callback()});
    for (int r : results) (void)r;
  }
  expect_counts(star.get(), 50, 50);
}

TEST(ThreadPoolMapProgress, VoidCallsCountToo) {
  ProgressLog log;
  std::atomic<int> sum{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  {
    auto results = pool.starmap([&](int a, int b) { sum.fetch_add(a * b); },
                                std::vector<std::pair<int, int>>{{1, 2}, {3, 4}, {5, 6}}, {.progress = log.callback()});
    for (auto unit : results) (void)unit;
  }
  EXPECT_EQ(sum.load(), 44);
  expect_counts(log.get(), 3, 3);
}

TEST(ThreadPoolMapProgress, TotalIsZeroForAnUnsizedRangeAndFailuresCount) {
  ProgressLog log;
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  EvenNumbers evens(10);  // not sized
  {
    auto results = pool.map(
        [](int x) {
          if (x == 4) throw std::runtime_error("four");
          return x;
        },
        evens, {.progress = log.callback()});
    EXPECT_EQ(results.next(), std::optional<int>(0));
    EXPECT_EQ(results.next(), std::optional<int>(2));
    EXPECT_THROW(results.next(), std::runtime_error);
    // The failed call counts; the later ones may have been cancelled by the
    // failure or finished: each is final either way, and counts once.
    ASSERT_TRUE(eventually([&] { return log.get().size() == 5; }));
  }
  expect_counts(log.get(), 5, 0);
}

TEST(ThreadPoolMapProgress, NeverConcurrentWithItself) {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(4).o);
  std::vector<int> in(200, 1);
  {
    auto results = pool.map([](int x) { return x; }, in, {.progress = [&](std::size_t, std::size_t) {
                              if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
                              std::this_thread::yield();
                              inside.fetch_sub(1);
                              calls.fetch_add(1);
                            }});
    for (int r : results) (void)r;
  }
  EXPECT_EQ(calls.load(), 200);
  EXPECT_EQ(overlaps.load(), 0);
}

TEST(ThreadPoolMapProgress, NoCallAfterTheResultsAreDestroyed) {
  Gate gate;
  std::atomic<bool> destroyed{false};
  std::atomic<int> late{0};
  std::atomic<int> calls{0};
  std::atomic<int> started{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  auto open = gate.open_at_exit();
  {
    // Two calls run (blocked on the gate), two wait in the queue.
    auto results = pool.map(
        [&](int x) {
          started.fetch_add(1);
          gate.wait();
          return x;
        },
        std::vector<int>{1, 2, 3, 4}, {.progress = [&](std::size_t, std::size_t) {
          if (destroyed.load()) late.fetch_add(1);
          calls.fetch_add(1);
        }});
    ASSERT_TRUE(eventually([&] { return started.load() == 2; }));
  }
  destroyed.store(true);
  gate.open();  // the two running calls finish now, after the results are gone
  pool.shutdown({.wait = true});
  EXPECT_EQ(late.load(), 0) << "the progress callback ran after the map's results were destroyed";
  EXPECT_EQ(calls.load(), 0);
}

TEST(ThreadPoolMapProgress, AThrowingCallbackIsReportedAndTheMapGoesOn) {
  ReporterCapture reports;
  std::atomic<int> calls{0};
  keel::ThreadPoolExecutor pool(Opts().max(2).o);
  std::vector<int> out;
  {
    auto results =
        pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2, 3}, {.progress = [&](std::size_t, std::size_t) {
                   calls.fetch_add(1);
                   throw std::runtime_error("bar broke");
                 }});
    for (int r : results) out.push_back(r);
  }
  EXPECT_EQ(reports.size(), 3u);
  EXPECT_EQ(out, (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(calls.load(), 3);
  for (const auto& e : reports.entries()) {
    EXPECT_EQ(e.where, "map progress callback");
    EXPECT_EQ(e.what, "bar broke");
  }
}

}  // namespace
