// A map with chunksize > 1 keeps one future per chunk and reads each call's
// result out of its chunk's answer (calls.hpp, ChunkState); futures() gives
// every call its own future in the phase its chunk has reached. These tests
// hold a chunk at each phase (queued is in process_pool_test.cpp's
// CancelledCallsOfAQueuedMapChunkNeverRun) and check what a reader gets
// without futures(), what futures() gives there, and that cancel() reaches
// one call of a chunk exactly until the chunk starts (POOL-2, POOL-7).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using keel::Future;
using keel::ProcessPool;
using keel_test::eventually;
using keel_test::RunFile;
using namespace std::chrono_literals;

// 2x, or a RemoteError naming x when x is negative.
int cr_double(int x) {
  if (x < 0) throw std::runtime_error("negative input " + std::to_string(x));
  return 2 * x;
}
// Notes its run in `path` (one byte), waits until `gate` exists (at most a
// minute), then returns x.
int cr_gated(std::pair<std::string, std::string> files, int x) {
  keel_test::note_run(files.first);
  struct stat st {};
  for (int i = 0; i < 60000 && ::stat(files.second.c_str(), &st) != 0; ++i) ::usleep(1000);
  return x;
}

// Sleeps ms milliseconds, returns ms.
int cr_sleep(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}

inline const auto cr_double_t = keel::register_task("cr.double", cr_double);
inline const auto cr_sleep_t = keel::register_task("cr.sleep", cr_sleep);
inline const auto cr_gated_t = keel::register_task("cr.gated", cr_gated);

// A gate file: open() creates it. Declared before the pool, so the file is
// removed only once the pool is gone (a worker that polls for it cannot miss
// it); a CrOpener declared after the pool opens it before the pool waits for
// its tasks.
class CrGate {
 public:
  void open() const {
    const int fd = ::open(file_.path().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
  }
  const std::string& path() const { return file_.path(); }

 private:
  RunFile file_;
};
struct CrOpener {
  explicit CrOpener(const CrGate& g) : gate(g) {}
  const CrGate& gate;
  CrOpener(const CrOpener&) = delete;
  CrOpener& operator=(const CrOpener&) = delete;
  ~CrOpener() { gate.open(); }
};

// A call of cr_gated (starmap's tuple): runs noted in `runs`, held by `gate`.
std::pair<std::pair<std::string, std::string>, int> cr_call(const RunFile& runs, const CrGate& gate, int x) {
  return {{runs.path(), gate.path()}, x};
}

// The worker holds no more than the task it runs and the one after it.
keel::ProcessPoolOptions cr_one_worker() {
  keel::ProcessPoolOptions o;
  o.workers = 1;
  o.max_in_flight = 2;
  return o;
}

// Runs a task on the only worker that waits for `gate`, and waits until it
// runs. A 300 ms task ran first: the pool sends nothing ahead of a running
// task until it measured a run time, nor behind one running far past the
// mean run time (POOL-9), and these tests need a chunk sent and not started
// while the holding task runs, however slow the build.
Future<int> cr_hold(ProcessPool& pool, const RunFile& runs, const CrGate& gate) {
  EXPECT_EQ(pool.submit(cr_sleep_t, 300).result(), 300);
  Future<int> f = pool.submit(cr_gated_t, std::pair{runs.path(), gate.path()}, -1);
  EXPECT_TRUE(eventually([&] { return runs.runs() == 1 && pool.stats().in_flight == 1; }))
      << "the holding task never started";
  return f;
}

// One worker held by a task waiting for `hold`, with a chunk's calls able to
// be sent behind it (cr_hold); the calls of the test note their runs in
// `runs` and pass `open`, which is open. Members in this order: the pool
// goes before the files, after `opener` has let the held task end.
struct CrHeldWorker {
  RunFile held_runs, runs;
  CrGate hold, open;
  ProcessPool pool{cr_one_worker()};
  CrOpener opener{hold};
  Future<int> held;
  CrHeldWorker() {
    open.open();
    held = cr_hold(pool, held_runs, hold);
  }
};

// One worker whose calls of cr_gated note their runs in `runs` and wait for
// `gate`, which `opener` opens before the pool waits for them.
struct CrGatedWorker {
  RunFile runs;
  CrGate gate;
  ProcessPool pool{{.workers = 1}};
  CrOpener opener{gate};
};

// The message of the RemoteError that `f` throws; "" if it throws none.
template <class F>
std::string remote_message(F f) {
  try {
    f();
  } catch (const keel::RemoteError& e) {
    return e.what();
  }
  return "";
}

TEST(ProcessPoolChunkResults, EachCallGetsItsOwnResultOrErrorAtItsPlace) {
  ProcessPool pool({.workers = 2});
  auto results = pool.map(cr_double_t, std::vector<int>{1, -2, 3, 4, -5, 6, 7}, {.chunksize = 3});
  EXPECT_EQ(results.next(), 2);
  EXPECT_NE(remote_message([&] { (void)results.next(); }).find("negative input -2"), std::string::npos);
  EXPECT_EQ(results.next(), 6);
  EXPECT_EQ(results.next(), 8);
  EXPECT_NE(remote_message([&] { (void)results.next(); }).find("negative input -5"), std::string::npos);
  EXPECT_EQ(results.next(), 12);
  EXPECT_EQ(results.next(), 14);
  EXPECT_EQ(results.next(), std::nullopt);
  EXPECT_EQ(results.next(), std::nullopt);
}

// futures() after the chunks are final: every call's future done with its
// outcome; next() goes on where it was, now from those futures.
TEST(ProcessPoolChunkResults, FuturesOfFinishedChunksHoldEachCallsOutcome) {
  ProcessPool pool({.workers = 2});
  auto results = pool.map(cr_double_t, std::vector<int>{1, -2, 3, 4, 5}, {.chunksize = 2});
  EXPECT_EQ(results.next(), 2);
  const auto& fs = results.futures();
  ASSERT_EQ(fs.size(), 5u);
  for (const auto& f : fs) ASSERT_TRUE(f.wait_for(keel_test::hang_limit));
  EXPECT_EQ(fs[0].result(), 2);
  EXPECT_NE(remote_message([&] { (void)fs[1].result(); }).find("negative input -2"), std::string::npos);
  EXPECT_EQ(fs[2].result(), 6);
  EXPECT_EQ(fs[4].result(), 10);
  EXPECT_THROW((void)results.next(), keel::RemoteError);
  EXPECT_EQ(results.get(), (std::vector<int>{6, 8, 10}));
  EXPECT_EQ(&results.futures(), &fs) << "a second futures() gives the same futures";
}

// futures() while the chunk was sent to the worker and not started: one
// call's cancel() wins, that call never runs, the others do.
TEST(ProcessPoolChunkResults, ACallOfASentChunkCanBeCancelledUntilItStarts) {
  CrHeldWorker w;
  auto results = w.pool.starmap(
      cr_gated_t, std::vector{cr_call(w.runs, w.open, 1), cr_call(w.runs, w.open, 2), cr_call(w.runs, w.open, 3)},
      {.chunksize = 3});
  ASSERT_TRUE(eventually([&] { return w.pool.stats().in_flight == 2; }))
      << "the chunk was never sent: in flight " << w.pool.stats().in_flight << ", queued " << w.pool.stats().queued;
  auto fs = results.futures();
  EXPECT_FALSE(fs[0].running());
  EXPECT_TRUE(fs[1].cancel());
  w.hold.open();
  EXPECT_EQ(w.held.result(), -1);
  EXPECT_EQ(results.next(), 1);
  EXPECT_THROW((void)results.next(), keel::CancelledError);
  EXPECT_EQ(results.next(), 3);
  EXPECT_TRUE(fs[1].cancelled());
  EXPECT_EQ(w.runs.runs(), 2) << "the cancelled call ran";
}

// Every count a map's progress callback was given, in order.
struct CrProgress {
  std::mutex m;
  std::vector<std::size_t> done;
  std::size_t bad_total = 0;  // calls whose total was not `total`
  keel::MapProgress callback(std::size_t total) {
    return [this, total](std::size_t d, std::size_t t) {
      std::lock_guard<std::mutex> l(m);
      done.push_back(d);
      if (t != total) ++bad_total;
    };
  }
  std::vector<std::size_t> get() {
    std::lock_guard<std::mutex> l(m);
    return done;
  }
};

// After futures() split a chunk, each call counts for the map's progress at
// its own final state: a call cancelled on its own counts at its cancel, on
// the cancelling thread, not when the last call of its chunk ends; the
// chunk's end adds only the calls not counted yet (MAP-1).
TEST(ProcessPoolChunkResults, ACallCancelledAfterTheSplitCountsForProgressAtItsCancel) {
  CrProgress progress;
  CrHeldWorker w;
  auto results = w.pool.starmap(
      cr_gated_t, std::vector{cr_call(w.runs, w.open, 1), cr_call(w.runs, w.open, 2), cr_call(w.runs, w.open, 3)},
      {.chunksize = 3, .progress = progress.callback(3)});
  ASSERT_TRUE(eventually([&] { return w.pool.stats().in_flight == 2; })) << "the chunk was never sent";
  auto fs = results.futures();
  EXPECT_TRUE(progress.get().empty());
  ASSERT_TRUE(fs[1].cancel());
  EXPECT_EQ(progress.get(), std::vector<std::size_t>{1}) << "the cancelled call was not counted at its cancel";
  w.hold.open();
  EXPECT_EQ(w.held.result(), -1);
  EXPECT_EQ(results.next(), 1);
  EXPECT_THROW((void)results.next(), keel::CancelledError);
  EXPECT_EQ(results.next(), 3);
  EXPECT_TRUE(eventually([&] { return progress.get().size() >= 3; }));
  EXPECT_EQ(progress.get(), (std::vector<std::size_t>{1, 2, 3}));
  EXPECT_EQ(progress.bad_total, 0u);
}

// Splitting a chunk that is final, or whose calls end afterwards, counts
// each call once: the chunk's count and its calls' own never add up twice.
TEST(ProcessPoolChunkResults, SplittingChunksBeforeOrAfterTheyEndCountsEachCallOnce) {
  CrProgress before, after;
  ProcessPool pool({.workers = 2});
  {
    auto results =
        pool.map(cr_sleep_t, std::vector<int>{20, 20, 20, 20, 20}, {.chunksize = 2, .progress = before.callback(5)});
    const auto& fs = results.futures();  // at once: no chunk has ended
    for (const auto& f : fs) ASSERT_TRUE(f.wait_for(keel_test::hang_limit));
    EXPECT_EQ(results.get().size(), 5u);
    EXPECT_TRUE(eventually([&] { return before.get().size() >= 5; }));
  }
  {
    auto results =
        pool.map(cr_double_t, std::vector<int>{1, 2, 3, 4, 5}, {.chunksize = 2, .progress = after.callback(5)});
    EXPECT_EQ(results.get().size(), 5u);
    EXPECT_TRUE(eventually([&] { return after.get().size() >= 5; }));
    (void)results.futures();  // every chunk ended and counted
  }
  EXPECT_EQ(before.get(), (std::vector<std::size_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(after.get(), (std::vector<std::size_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(before.bad_total + after.bad_total, 0u);
}

// futures() once the chunk runs: every call reads running, and none can be
// cancelled any longer.
TEST(ProcessPoolChunkResults, CallsOfARunningChunkAreRunningAndCannotBeCancelled) {
  CrGatedWorker w;
  auto results =
      w.pool.starmap(cr_gated_t, std::vector{cr_call(w.runs, w.gate, 1), cr_call(w.runs, w.gate, 2)}, {.chunksize = 2});
  ASSERT_TRUE(eventually([&] { return w.runs.runs() == 1; })) << "the chunk never started";
  auto fs = results.futures();
  ASSERT_TRUE(eventually([&] { return fs[0].running() && fs[1].running(); }));
  EXPECT_FALSE(fs[0].cancel());
  EXPECT_FALSE(fs[1].cancel());
  w.gate.open();
  EXPECT_EQ(results.get(), (std::vector<int>{1, 2}));
  EXPECT_EQ(w.runs.runs(), 2);
}

// Without futures(), dropping the map cancels its chunks that have not
// started, the one sent to the worker included: none of their calls runs.
TEST(ProcessPoolChunkResults, DroppingAChunkedMapCancelsItsChunksNotStarted) {
  CrHeldWorker w;
  {
    std::vector<std::pair<std::pair<std::string, std::string>, int>> in;
    for (int i = 0; i < 6; ++i) in.push_back(cr_call(w.runs, w.open, i));
    auto results = w.pool.starmap(cr_gated_t, in, {.chunksize = 2});
    ASSERT_TRUE(eventually([&] { return w.pool.stats().in_flight == 2; })) << "the first chunk was never sent";
  }
  w.hold.open();
  EXPECT_EQ(w.held.result(), -1);
  EXPECT_TRUE(eventually([&] {
    const auto s = w.pool.stats();
    return s.in_flight == 0 && s.queued == 0;
  }));
  EXPECT_EQ(w.runs.runs(), 0) << "a call of a dropped map ran";
  EXPECT_EQ(w.pool.map(cr_double_t, std::vector<int>{1, 2, 3}, {.chunksize = 2}).get(), (std::vector<int>{2, 4, 6}));
}

// A chunked map's timeout bounds the wait for each call's chunk, from the
// map's call: past it, a call whose chunk is not final times out at once. A
// call that timed out is skipped: the next one reads its own result from
// the chunk once it is final.
TEST(ProcessPoolChunkResults, TimeoutCoversAChunkedMap) {
  CrGatedWorker w;
  auto results = w.pool.starmap(
      cr_gated_t, std::vector{cr_call(w.runs, w.gate, 1), cr_call(w.runs, w.gate, 2), cr_call(w.runs, w.gate, 3)},
      {.chunksize = 3, .timeout = 100ms});
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW((void)results.next(), keel::TimeoutError);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
  w.gate.open();
  ASSERT_TRUE(eventually([&] { return w.pool.stats().completed == 1; })) << "the chunk was never answered";
  EXPECT_EQ(results.next(), 2);
  EXPECT_EQ(results.next(), 3);
  EXPECT_EQ(results.next(), std::nullopt);
}

// A moved map goes on where the old one was; the old one is empty.
TEST(ProcessPoolChunkResults, AMovedChunkedMapGoesOnWhereItWas) {
  ProcessPool pool({.workers = 2});
  auto a = pool.map(cr_double_t, std::vector<int>{1, 2, 3, 4, 5}, {.chunksize = 2});
  EXPECT_EQ(a.next(), 2);
  EXPECT_EQ(a.next(), 4);
  EXPECT_EQ(a.next(), 6);
  auto b = std::move(a);
  EXPECT_EQ(b.get(), (std::vector<int>{8, 10}));
  EXPECT_EQ(a.next(), std::nullopt);  // NOLINT(bugprone-use-after-move): a moved-from map is empty
  EXPECT_TRUE(a.futures().empty());   // NOLINT(bugprone-use-after-move)
  a = pool.map(cr_double_t, std::vector<int>{7, 8, 9}, {.chunksize = 2});
  EXPECT_EQ(a.get(), (std::vector<int>{14, 16, 18}));
}

}  // namespace
