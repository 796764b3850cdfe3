// ProcessPoolOptions::spare_workers: processes started ahead, each ready to
// replace a worker that exits. A spare runs the initializer when it starts,
// is not a worker (not in worker_pids(), no task) until it replaces one,
// becomes the worker the pool asked for when one dies or retires (the
// replacement is the spare's process), is started again behind it, is not a
// worker's death when it dies unused (three in a row stop the spares, said
// once through the error reporter), and is killed when the pool shuts down
// or breaks (the suite's listener fails a test that leaves a child behind).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using keel::ProcessPool;
using keel_future_test::ReporterCapture;
using keel_test::eventually;
using keel_test::RunFile;

// The initializer: appends this process's pid, one per line, to `path`.
void sw_note_pid(std::string path) {
  const std::string line = std::to_string(::getpid()) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    [[maybe_unused]] auto n = ::write(fd, line.data(), line.size());
    ::close(fd);
  }
}
void sw_refuse(int) { throw std::logic_error("spare initializer refused"); }
// As sw_note_pid, then raises if the file `flag` exists.
void sw_note_pid_unless(std::string path, std::string flag) {
  sw_note_pid(path);
  if (::access(flag.c_str(), F_OK) == 0) throw std::logic_error("no process may start any more");
}
int sw_pid(int) { return static_cast<int>(::getpid()); }

inline const auto sw_note_pid_t = keel::register_task("sw.note_pid", sw_note_pid);
inline const auto sw_refuse_t = keel::register_task("sw.refuse", sw_refuse);
inline const auto sw_pid_t = keel::register_task("sw.pid", sw_pid);
inline const auto sw_note_pid_unless_t = keel::register_task("sw.note_pid_unless", sw_note_pid_unless);

// The pids whose initializer ran, in order.
std::vector<int> sw_initialized(const RunFile& f) {
  std::vector<int> pids;
  std::ifstream in(f.path());
  for (int pid = 0; in >> pid;) pids.push_back(pid);
  return pids;
}

// The initialized processes that are not workers: the spares.
std::vector<int> sw_spares(const ProcessPool& pool, const RunFile& f) {
  const std::vector<int> workers = pool.worker_pids();
  std::vector<int> out;
  for (int pid : sw_initialized(f)) {
    const bool gone = ::kill(pid, 0) != 0 && errno == ESRCH;
    if (!gone && std::find(workers.begin(), workers.end(), pid) == workers.end()) out.push_back(pid);
  }
  return out;
}

bool sw_gone(int pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

keel::ProcessPoolOptions sw_options(const RunFile& f, unsigned workers, unsigned spares) {
  keel::ProcessPoolOptions o;
  o.workers = workers;
  o.spare_workers = spares;
  o.initializer = keel::bind_task(sw_note_pid_t, f.path());
  return o;
}

TEST(ProcessPoolSpare, ASpareIsReadyOutsideTheWorkersAndBecomesTheReplacementOfAKilledOne) {
  RunFile inits;
  ProcessPool pool(sw_options(inits, 2, 1));
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 2 && pool.stats().spares == 1; }));
  ASSERT_TRUE(eventually([&] { return sw_initialized(inits).size() == 3; })) << "the spare ran no initializer";
  const std::vector<int> spare = sw_spares(pool, inits);
  ASSERT_EQ(spare.size(), 1u);
  EXPECT_EQ(pool.worker_pids().size(), 2u) << "a spare counts as a worker";
  // No task reaches the spare while it waits.
  std::set<int> ran;
  for (int i = 0; i < 40; ++i) ran.insert(pool.submit(sw_pid_t, i).result());
  EXPECT_EQ(ran.count(spare[0]), 0u) << "the spare ran a task";

  const int victim = pool.worker_pids().front();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    const auto p = pool.worker_pids();
    return pool.stats().ready == 2 && std::find(p.begin(), p.end(), victim) == p.end();
  }));
  const auto workers = pool.worker_pids();
  EXPECT_NE(std::find(workers.begin(), workers.end(), spare[0]), workers.end())
      << "the replacement is not the spare's process";
  // A new spare starts behind it.
  EXPECT_TRUE(eventually([&] { return pool.stats().spares == 1 && sw_initialized(inits).size() == 4; }));
  EXPECT_EQ(pool.stats().deaths, 1u);
  // Four processes started; three were workers (a spare counts once it is one).
  EXPECT_EQ(pool.stats().spawned, 3u);
  for (int i = 0; i < 10; ++i) EXPECT_NE(pool.submit(sw_pid_t, i).result(), victim);
}

TEST(ProcessPoolSpare, ASpareKilledUnusedIsNoWorkerDeathAndIsStartedAgain) {
  RunFile inits;
  auto o = sw_options(inits, 1, 1);
  o.restart_limit = 0;  // a single worker's death would break the pool
  ProcessPool pool(o);
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 1 && pool.stats().spares == 1; }));
  std::vector<int> spare;
  ASSERT_TRUE(eventually([&] { return (spare = sw_spares(pool, inits)).size() == 1; }));
  ASSERT_EQ(::kill(spare[0], SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return sw_gone(spare[0]); })) << "the dead spare was not reaped";
  EXPECT_TRUE(eventually([&] { return pool.stats().spares == 1 && sw_initialized(inits).size() == 3; }))
      << "no spare was started again";
  EXPECT_FALSE(pool.broken().has_value()) << *pool.broken();
  EXPECT_EQ(pool.stats().deaths, 0u);
  EXPECT_EQ(pool.submit(sw_pid_t, 0).result(), pool.worker_pids().front());
}

TEST(ProcessPoolSpare, OneTaskPerChildRunsEachTaskInItsOwnProcessThroughTheSpares) {
  RunFile inits;
  auto o = sw_options(inits, 1, 1);
  o.max_tasks_per_child = 1;
  ProcessPool pool(o);
  std::vector<keel::Future<int>> fs;
  for (int i = 0; i < 12; ++i) fs.push_back(pool.submit(sw_pid_t, i));
  std::set<int> pids;
  for (auto& f : fs) pids.insert(f.result());
  EXPECT_EQ(pids.size(), 12u) << "a process ran two tasks";
  EXPECT_EQ(pool.stats().deaths, 0u);
  // A worker's retirement counts once its exit was seen: the last may lag its answer.
  EXPECT_TRUE(eventually([&] { return pool.stats().retirements >= 11; })) << pool.stats().retirements;
}

TEST(ProcessPoolSpare, ShutdownKillsEverySpareAndABrokenPoolStartsNone) {
  RunFile inits;
  std::vector<int> all;
  {
    ProcessPool pool(sw_options(inits, 1, 2));
    ASSERT_TRUE(eventually([&] { return pool.stats().spares == 2 && sw_initialized(inits).size() == 3; }));
    EXPECT_EQ(pool.submit(sw_pid_t, 0).result(), pool.worker_pids().front());
    pool.shutdown({.wait = true});
    EXPECT_EQ(pool.stats().spares, 0u);
    all = sw_initialized(inits);
  }
  for (int pid : all) EXPECT_TRUE(sw_gone(pid)) << pid;

  // Every process runs the refusing initializer: the pool breaks, its spares
  // go, and none is started again.
  ProcessPool broken({.workers = 1, .initializer = keel::bind_task(sw_refuse_t, 0), .spare_workers = 1});
  EXPECT_THROW(broken.submit(sw_pid_t, 0).result(), keel::BrokenProcessPool);
  EXPECT_TRUE(broken.await_termination(keel_test::hang_limit));
  EXPECT_EQ(broken.stats().spares, 0u);
  EXPECT_LE(broken.stats().spawned, 1u);
}

// Spares that keep dying unused stop being started after three in a row,
// and the error reporter says so once, with the last one's initializer
// error; the pool goes on. (The first spare is killed; the next two raise
// in their initializer, which the worker's did not.)
TEST(ProcessPoolSpare, SparesThatKeepDyingUnusedStopAndAreReportedOnce) {
  ReporterCapture reports;
  RunFile inits, flag;
  ProcessPool pool({.workers = 1,
                    .initializer = keel::bind_task(sw_note_pid_unless_t, inits.path(), flag.path()),
                    .spare_workers = 1});
  std::vector<int> spare;
  ASSERT_TRUE(eventually([&] {
    return pool.stats().ready == 1 && pool.stats().spares == 1 && (spare = sw_spares(pool, inits)).size() == 1;
  }));
  keel_test::note_run(flag.path());  // from now on a new process's initializer raises
  ASSERT_EQ(::kill(spare[0], SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return reports.size() >= 1; })) << "no report after spares kept dying";
  const auto e = reports.entries().front();
  EXPECT_EQ(e.where, "process pool spare worker");
  EXPECT_NE(e.what.find("no more spare workers start: 3 in a row"), std::string::npos) << e.what;
  EXPECT_NE(e.what.find("no process may start any more"), std::string::npos) << e.what;
  const auto started = sw_initialized(inits).size();
  EXPECT_EQ(started, 4u) << "the worker, the killed spare and two that raised";
  ::usleep(1'500'000);  // past the next retry, had there been one
  EXPECT_EQ(sw_initialized(inits).size(), started) << "a spare started after they were stopped";
  EXPECT_EQ(reports.size(), 1u);
  EXPECT_EQ(pool.stats().spares, 0u);
  EXPECT_FALSE(pool.broken().has_value());
  EXPECT_EQ(pool.submit(sw_pid_t, 1).result(), pool.worker_pids().front());
}

TEST(ProcessPoolSpare, TooManySparesAreAValueError) {
  EXPECT_THROW(ProcessPool({.workers = 1, .spare_workers = keel::max_pool_workers + 1}), keel::ValueError);
}

}  // namespace
