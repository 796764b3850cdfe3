// ProcessPool::starmap and the maps' progress callback on a process pool
// (and a ClusterPool of local nodes, which shares the path): tuples and
// keel::zip encoded as the task's parameters, in input order, for every
// chunksize; progress counts each call once, in order, with the total, one
// call at a time, never after the results are gone (ordered, unordered and
// starmap), and a throwing callback is reported (MAP-1). Also runs
// examples/progress_bar and checks that its bar ends at 100%.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/cluster/cluster_pool.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel::ProcessPool;
using keel_future_test::ReporterCapture;
using keel_test::eventually;

std::string sm_label(int n, std::string s) {
  if (n < 0) throw std::invalid_argument("negative count");
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}
int sm_sleep_then(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}
int sm_twice(int x) { return 2 * x; }

inline const auto sm_label_t = keel::register_task("sm.label", sm_label);
inline const auto sm_sleep_then_t = keel::register_task("sm.sleep_then", sm_sleep_then);
inline const auto sm_twice_t = keel::register_task("sm.twice", sm_twice);

// Every (done, total) a progress callback was given, in call order, and
// whether two calls ever overlapped.
struct PoolProgressLog {
  std::mutex m;
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  keel::MapProgress callback() {
    return [this](std::size_t done, std::size_t total) {
      if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
      {
        std::lock_guard<std::mutex> l(m);
        calls.emplace_back(done, total);
      }
      inside.fetch_sub(1);
    };
  }
  std::vector<std::pair<std::size_t, std::size_t>> get() {
    std::lock_guard<std::mutex> l(m);
    return calls;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> l(m);
    return calls.size();
  }
};

// Called once the map's results are gone: every count was given by then.
void expect_each_once(PoolProgressLog& log, std::size_t n) {
  const auto calls = log.get();
  ASSERT_EQ(calls.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(calls[i].first, i + 1);
    EXPECT_EQ(calls[i].second, n);
  }
  EXPECT_EQ(log.overlaps.load(), 0);
}

TEST(ProcessPoolStarmap, TuplesAndZippedRangesInInputOrderForEveryChunksize) {
  ProcessPool pool({.workers = 2});
  const std::vector<std::tuple<int, std::string>> in{{1, "a"}, {0, "b"}, {3, "c"}, {2, "de"}};
  for (std::size_t chunk : {1u, 3u, 100u}) {
    auto out = pool.starmap(sm_label_t, in, {.chunksize = chunk}).get();
    EXPECT_EQ(out, (std::vector<std::string>{"a", "", "ccc", "dede"})) << "chunksize " << chunk;
  }
  // Pairs, and zip of an lvalue and a temporary list, ending at the shortest.
  std::vector<int> counts{2, 1, 3};
  auto zipped = pool.starmap(sm_label_t, keel::zip(counts, std::list<std::string>{"x", "y"}), {.chunksize = 2}).get();
  EXPECT_EQ(zipped, (std::vector<std::string>{"xx", "y"}));
  auto paired = pool.starmap(sm_label_t, std::vector<std::pair<int, const char*>>{{2, "p"}}).get();
  EXPECT_EQ(paired, (std::vector<std::string>{"pp"}));
}

TEST(ProcessPoolStarmap, AFailingCallRaisesAtItsPlaceAndTheTimeoutCoversTheMap) {
  ProcessPool pool({.workers = 1});
  auto results = pool.starmap(sm_label_t, std::vector<std::pair<int, std::string>>{{1, "a"}, {-1, "b"}, {1, "c"}});
  EXPECT_EQ(results.next(), std::optional<std::string>("a"));
  EXPECT_THROW(results.next(), keel::RemoteError);
  EXPECT_THROW(pool.starmap(sm_label_t, std::vector<std::pair<int, std::string>>{{1, "a"}}, {.chunksize = 0}),
               keel::ValueError);
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 1; }));
  auto slow = pool.starmap(sm_sleep_then_t, std::vector<std::pair<int, int>>{{1, 1}, {3000, 2}}, {.timeout = 100ms});
  EXPECT_EQ(slow.next(), std::optional<int>(1));
  EXPECT_THROW(slow.next(), keel::TimeoutError);
  pool.kill_workers();
}

TEST(ProcessPoolMapProgress, OrderedUnorderedAndStarmapCountEachCallOnceWithTheTotal) {
  PoolProgressLog ordered, unordered, star;
  ProcessPool pool({.workers = 3});
  std::vector<int> in(40);
  for (int i = 0; i < 40; ++i) in[static_cast<std::size_t>(i)] = i;
  {
    auto results = pool.map(sm_twice_t, in, {.chunksize = 3, .progress = ordered.callback()});
    EXPECT_EQ(results.get().size(), 40u);
  }
  expect_each_once(ordered, 40);
  {
    std::multiset<int> got;
    auto results = pool.map_unordered(sm_twice_t, in, {.chunksize = 1, .progress = unordered.callback()});
    for (auto& f : results) got.insert(f.result());
    EXPECT_EQ(got.size(), 40u);
  }
  expect_each_once(unordered, 40);
  {
    // The total is known whatever the range: a process pool reads every input first.
    auto results = pool.starmap(sm_sleep_then_t, keel::zip(std::vector<int>(10, 1), in), {.progress = star.callback()});
    EXPECT_EQ(results.get().size(), 10u);
  }
  expect_each_once(star, 10);
}

TEST(ProcessPoolMapProgress, NoCallAfterTheResultsAreDestroyed) {
  std::atomic<bool> destroyed{false};
  std::atomic<int> late{0};
  const keel::MapProgress watch = [&](std::size_t, std::size_t) {
    if (destroyed.load()) late.fetch_add(1);
  };
  ProcessPool pool({.workers = 2});
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 2; }));
  {
    // Two calls start and run for a while; the results go first.
    auto results = pool.starmap(sm_sleep_then_t, std::vector<std::pair<int, int>>{{300, 1}, {300, 2}, {300, 3}},
                                {.progress = watch});
    auto unordered = pool.map_unordered(sm_twice_t, std::vector<int>{1, 2, 3}, {.progress = watch});
    ASSERT_TRUE(eventually([&] { return pool.stats().in_flight >= 2; }));
    destroyed.store(true);
  }
  pool.shutdown({.wait = true});
  EXPECT_EQ(late.load(), 0) << "the progress callback ran after the map's results were destroyed";
}

TEST(ProcessPoolMapProgress, AThrowingCallbackIsReportedAndTheMapGoesOn) {
  ReporterCapture reports;
  ProcessPool pool({.workers = 2});
  auto out = pool.map(sm_twice_t, std::vector<int>{1, 2, 3},
                      {.progress = [](std::size_t, std::size_t) { throw std::runtime_error("bar broke"); }})
                 .get();
  EXPECT_EQ(out, (std::vector<int>{2, 4, 6}));
  EXPECT_EQ(reports.size(), 3u);
  for (const auto& e : reports.entries()) {
    EXPECT_EQ(e.where, "map progress callback");
    EXPECT_EQ(e.what, "bar broke");
  }
}

TEST(ClusterPoolStarmap, StarmapAndProgressOnLocalNodes) {
  PoolProgressLog log;
  keel::ClusterPool pool({.workers_per_node = 1, .local_nodes = 2});
  auto out = pool.starmap(sm_label_t, keel::zip(std::vector<int>{1, 2, 3}, std::vector<std::string>{"a", "b", "c"}),
                          {.chunksize = 2, .progress = log.callback()})
                 .get();
  EXPECT_EQ(out, (std::vector<std::string>{"a", "bb", "ccc"}));
  expect_each_once(log, 3);
  PoolProgressLog unordered;
  std::multiset<int> got;
  for (auto& f : pool.map_unordered(sm_twice_t, std::vector<int>{1, 2}, {.progress = unordered.callback()})) {
    got.insert(f.result());
  }
  EXPECT_EQ(got, (std::multiset<int>{2, 4}));
  expect_each_once(unordered, 2);
}

TEST(ProgressBarExample, RunsAndItsBarEndsAtOneHundredPercent) {
  char buf[4096] = {};
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  ASSERT_GT(n, 0);
  std::string self(buf, static_cast<std::size_t>(n));
  const std::string example = self.substr(0, self.rfind('/') + 1) + "examples/progress_bar";
  ASSERT_EQ(::access(example.c_str(), X_OK), 0) << example << " is missing: `make test` builds it";
  FILE* p = ::popen((example + " 30 1 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  // One line redrawn with '\r': the last drawing before the newline is the full bar.
  const std::size_t nl = out.find('\n');
  ASSERT_NE(nl, std::string::npos) << out;
  const std::string bar = out.substr(0, nl);
  const std::string last = bar.substr(bar.rfind('\r') + 1);
  EXPECT_EQ(last, "[" + std::string(40, '#') + "] 100% (30/30)") << out;
  EXPECT_NE(bar.find("\r["), std::string::npos) << "the bar is redrawn in place";
  EXPECT_NE(out.find("sum of digit sums: "), std::string::npos) << out;
}

}  // namespace
