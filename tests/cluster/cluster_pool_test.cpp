// ClusterPool end to end with nodes inside this process (local_nodes): each
// node is a thread with its own real ProcessPool of worker processes, and
// speaks the same messages an MPI rank does (tests/cluster/mpi_test.cpp runs
// them over mpirun). Every future resolves; a worker that dies costs only the
// task it ran; cancel works until the node was let run the task; shutdown and
// terminate end every node (CLUSTER-1..6).
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "cluster_tasks.hpp"
#include "keel/cluster/cluster_pool.hpp"
#include "keel/process/task.hpp"

namespace {

using namespace std::chrono_literals;
using keel::ClusterOptions;
using keel::ClusterPool;
using keel::Future;

using cluster_tasks::marks_in;
// Dies (exit 9) the first time it runs with this `dir`, then returns 1.
int cl_die_once(std::string dir) {
  const std::string mark = dir + "/ran";
  if (::access(mark.c_str(), F_OK) != 0) {
    if (FILE* f = std::fopen(mark.c_str(), "w")) std::fclose(f);
    std::_Exit(9);
  }
  return 1;
}
int cl_exit(int code) { std::_Exit(code); }
int cl_throw(int) { throw keel::ValueError("cluster task failed on purpose"); }
std::string cl_echo(std::string s) { return s; }
// Leaves a mark in `dir` and waits (up to 20 s) until `n` marks are there:
// returns how many it saw, so n tasks return n only if they ran at once.
int cl_rendezvous(std::string dir, int n) {
  const std::string mine = dir + "/" + std::to_string(::getpid());
  if (FILE* f = std::fopen(mine.c_str(), "w")) std::fclose(f);
  int seen = 0;
  for (int i = 0; i < 2000; ++i) {
    seen = 0;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d)) seen += e->d_name[0] != '.';
      ::closedir(d);
    }
    if (seen >= n) break;
    std::this_thread::sleep_for(10ms);
  }
  return seen;
}
void cl_init_fails() { throw std::runtime_error("initializer refuses"); }
int cl_length(std::string s) { return static_cast<int>(s.size()); }
// Waits (up to 60 s) until the file `path` exists: a task the test lets end
// when it chooses, where a sleep would end on the machine's schedule.
int cl_wait_for_file(std::string path) {
  for (int i = 0; i < 6000 && ::access(path.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(10ms);
  return 1;
}

inline const auto square_t = keel::register_task("cl.square", cluster_tasks::square);
inline const auto sleep_t = keel::register_task("cl.sleep_ms", cluster_tasks::sleep_ms);
inline const auto die_t = keel::register_task("cl.die", cluster_tasks::die);
inline const auto throw_t = keel::register_task("cl.throw", cl_throw);
inline const auto echo_t = keel::register_task("cl.echo", cl_echo);
inline const auto rendezvous_t = keel::register_task("cl.rendezvous", cl_rendezvous);
inline const auto mark_sleep_t = keel::register_task("cl.mark_and_sleep", cluster_tasks::mark_and_sleep);
inline const auto die_once_t = keel::register_task("cl.die_once", cl_die_once);
inline const auto exit_t = keel::register_task("cl.exit", cl_exit);
inline const auto init_fails_t = keel::register_task("cl.init_fails", cl_init_fails);
inline const auto wait_for_file_t = keel::register_task("cl.wait_for_file", cl_wait_for_file);
inline const auto length_t = keel::register_task("cl.length", cl_length);

ClusterOptions local(unsigned nodes, unsigned workers) {
  ClusterOptions o;
  o.local_nodes = nodes;
  o.workers_per_node = workers;
  return o;
}

TEST(ClusterPool, SubmitRunsOnTheNodesWorkersAndReturnsTheValue) {
  ClusterPool pool(local(2, 1));
  EXPECT_EQ(pool.nodes(), 2u);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(pool.submit(square_t, i));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(fs[i].result(), i * i);
  pool.shutdown();
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, 20u);
  EXPECT_EQ(s.answered, 20u);
  ASSERT_EQ(s.nodes.size(), 2u);
  EXPECT_EQ(s.nodes[0].capacity, 1u);
}

// An answer is in stats() by the time its future is done: seen by the woken
// caller and by a done-callback, which runs on rank 0's supervisor.
TEST(ClusterPool, AnAnswerIsCountedByTheTimeItsFutureIsDone) {
  ClusterPool pool(local(1, 1));
  // The count a done-callback saw, plus one: 0 until it ran.
  std::atomic<std::uint64_t> seen_in_callback{0};
  for (std::uint64_t i = 0; i < 40; ++i) {
    auto f = i % 2 == 0 ? pool.submit(square_t, 3) : pool.submit(throw_t, 0);
    f.add_done_callback([&](const auto&) { seen_in_callback = pool.stats().answered + 1; });
    f.wait();
    EXPECT_EQ(pool.stats().answered, i + 1) << "round " << i;
    EXPECT_TRUE(keel_test::eventually([&] { return seen_in_callback.load() != 0; }));
    EXPECT_EQ(seen_in_callback.exchange(0), i + 2) << "round " << i;
  }
}

TEST(ClusterPool, MapKeepsInputOrderAcrossNodesAndChunks) {
  ClusterPool pool(local(3, 1));
  std::vector<int> in(101);
  for (int i = 0; i < 101; ++i) in[i] = i;
  auto results = pool.map(square_t, in, {.chunksize = 7}).get();
  ASSERT_EQ(results.size(), 101u);
  for (int i = 0; i < 101; ++i) EXPECT_EQ(results[i], i * i);
  std::multiset<int> unordered;
  for (auto& f : pool.map_unordered(square_t, std::vector<int>{1, 2, 3, 4})) unordered.insert(f.result());
  EXPECT_EQ(unordered, (std::multiset<int>{1, 4, 9, 16}));
}

TEST(ClusterPool, NTasksOnNNodesRunInParallel) {
  // Three nodes of one worker each: three tasks that each wait for the
  // others to have started see all three only if they run at once.
  char tmpl[] = "/tmp/keel-cluster-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    ClusterPool pool(local(3, 1));
    std::vector<Future<int>> fs;
    for (int i = 0; i < 3; ++i) fs.push_back(pool.submit(rendezvous_t, dir, 3));
    for (auto& f : fs) EXPECT_EQ(f.result(), 3);
    pool.shutdown();
    const auto s = pool.stats();
    EXPECT_EQ(s.answered, 3u);
    // A node's last report can predate its local pool counting the call it
    // just answered (that supervisor counts after it answers), so a node may
    // report 0 here; it never reports a second call. That each node ran one
    // is what the rendezvous showed: three tasks at once on three 1-worker
    // nodes.
    for (const auto& n : s.nodes) EXPECT_LE(n.local.completed, 1u) << n.name;
  }
  (void)std::system(("rm -rf '" + dir + "'").c_str());
}

// A crash: SIGSEGV, or SIGKILL under a sanitizer (which would catch SIGSEGV
// and exit instead).
constexpr int crash_signal = KEEL_TEST_SANITIZED ? SIGKILL : SIGSEGV;

TEST(ClusterPool, AWorkerThatDiesCostsOnlyItsTaskAndTheNodeLivesOn) {
  ClusterPool pool(local(2, 1));
  auto dead = pool.submit(die_t, crash_signal);
  std::vector<Future<int>> ok;
  for (int i = 0; i < 10; ++i) ok.push_back(pool.submit(square_t, i));
  try {
    (void)dead.result();
    FAIL() << "expected WorkerLost";
  } catch (const keel::WorkerLost& e) {
    EXPECT_EQ(e.signal(), crash_signal);
    EXPECT_NE(std::string(e.what()).find("local node"), std::string::npos) << e.what();
  }
  for (int i = 0; i < 10; ++i) EXPECT_EQ(ok[i].result(), i * i);
  // Both nodes still serve.
  EXPECT_EQ(pool.submit(square_t, 9).result(), 81);
}

TEST(ClusterPool, ARemoteExceptionComesBackTyped) {
  ClusterPool pool(local(1, 1));
  auto f = pool.submit(throw_t, 1);
  try {
    (void)f.result();
    FAIL();
  } catch (const keel::RemoteError& e) {
    EXPECT_NE(e.message().find("on purpose"), std::string::npos);
  }
}

TEST(ClusterPool, CancelWorksUntilTheNodeIsLetRunTheTask) {
  ClusterPool pool(local(1, 1));
  auto busy = pool.submit(sleep_t, 400);
  std::vector<Future<int>> waiting;
  for (int i = 0; i < 5; ++i) waiting.push_back(pool.submit(square_t, i));
  ASSERT_TRUE(keel_test::eventually([&] { return busy.running(); }));
  for (auto& f : waiting) EXPECT_TRUE(f.cancel());
  EXPECT_FALSE(busy.cancel()) << "it runs: too late";
  EXPECT_EQ(busy.result(), 400);
  for (auto& f : waiting) EXPECT_TRUE(f.cancelled());
  pool.shutdown();
  const auto s = pool.stats();
  EXPECT_EQ(s.nodes[0].local.submitted, 1u) << "no cancelled task reached the node's pool";
}

TEST(ClusterPool, ShutdownCancelFuturesCancelsWhatHasNotStarted) {
  ClusterPool pool(local(1, 1));
  auto busy = pool.submit(sleep_t, 300);
  ASSERT_TRUE(keel_test::eventually([&] { return busy.running(); }));
  std::vector<Future<int>> rest;
  for (int i = 0; i < 5; ++i) rest.push_back(pool.submit(square_t, i));
  pool.shutdown({.wait = true, .cancel_futures = true});
  EXPECT_EQ(busy.result(), 300);
  for (auto& f : rest) EXPECT_TRUE(f.cancelled());
  EXPECT_THROW(pool.submit(square_t, 1), keel::RejectedError);
}

TEST(ClusterPool, TerminateWorkersEndsRunningTasksWithWorkerLost) {
  char tmpl[] = "/tmp/keel-cluster-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    ClusterPool pool(local(2, 1));
    auto a = pool.submit(mark_sleep_t, dir, 60000);
    auto b = pool.submit(mark_sleep_t, dir, 60000);
    ASSERT_TRUE(keel_test::eventually([&] { return marks_in(dir) == 2; })) << "both started on their workers";
    EXPECT_TRUE(a.running() && b.running());
    auto queued = pool.submit(square_t, 3);
    pool.terminate_workers();
    EXPECT_THROW(a.result(), keel::WorkerLost);
    EXPECT_THROW(b.result(), keel::WorkerLost);
    EXPECT_TRUE(queued.cancelled());
    EXPECT_THROW(pool.submit(square_t, 1), keel::RejectedError);
  }
  (void)std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(ClusterPool, AFailingInitializerBreaksTheClusterAndSubmitSaysSo) {
  ClusterOptions o = local(2, 1);
  o.initializer = keel::bind_task(init_fails_t);
  ClusterPool pool(o);
  auto f = pool.submit(square_t, 2);
  EXPECT_THROW(f.result(), keel::BrokenProcessPool);
  EXPECT_THROW(pool.submit(square_t, 1), keel::BrokenProcessPool);
}

TEST(ClusterPool, MisuseAndBadOptionsAreTypedErrors) {
  EXPECT_THROW(ClusterPool(ClusterOptions{}), keel::MisuseError) << "no MPI and no local nodes";
  ClusterOptions o = local(1, 1);
  o.idle_poll = 0ns;
  EXPECT_THROW(ClusterPool{o}, keel::ValueError);
  o = local(1, 1);
  o.max_message = 10;
  EXPECT_THROW(ClusterPool{o}, keel::ValueError);
  ClusterPool one(local(1, 1));
  EXPECT_THROW(ClusterPool(local(1, 1)), keel::MisuseError) << "one pool at a time";
  EXPECT_THROW(one.map(square_t, std::vector<int>{1}, {.chunksize = 0}), keel::ValueError);
}

// Each option's limit, exactly. With a pool already open, options that pass
// the checks are refused next with MisuseError (one pool at a time) before
// anything starts, so a limit is shown accepted without starting 4096
// workers or 256 nodes; one step past it is ValueError.
TEST(ClusterPool, EachOptionLimitIsAcceptedExactlyAndRefusedOnePast) {
  ClusterPool open(local(1, 1));
  const auto verdict = [](const std::function<void(ClusterOptions&)>& set) -> std::string {
    ClusterOptions o = local(1, 1);
    set(o);
    try {
      ClusterPool p(o);
      return "accepted";
    } catch (const keel::MisuseError&) {
      return "passes the checks";
    } catch (const keel::ValueError& e) {
      return std::string("ValueError: ") + e.what();
    }
  };
  const std::string ok = "passes the checks";
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.workers_per_node = keel::max_pool_workers; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.workers_per_node = keel::max_pool_workers + 1; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.ahead = 1024; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.ahead = 1025; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.max_message = keel::min_max_message; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.max_message = keel::min_max_message - 1; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.max_message = 0xFFFFFFF0u; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.max_message = 0xFFFFFFF1u; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.restart_window = 1ns; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.restart_window = 0ns; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.idle_poll = 1ns; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.idle_poll = 0ns; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.idle_poll = std::chrono::seconds(1); }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.idle_poll = std::chrono::seconds(1) + 1ns; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.local_nodes = 256; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.local_nodes = 257; }), ok);
  EXPECT_EQ(verdict([](ClusterOptions& o) { o.spare_workers = keel::max_pool_workers; }), ok);
  EXPECT_NE(verdict([](ClusterOptions& o) { o.spare_workers = keel::max_pool_workers + 1; }), ok);
}

// spare_workers reaches each node's ProcessPool: every node keeps a spare,
// and a worker that dies on a node is replaced by it (that node's count of
// spares comes back once a new one started behind it).
TEST(ClusterPool, EachNodesPoolKeepsItsSpareWorkers) {
  auto o = local(2, 1);
  o.spare_workers = 1;
  ClusterPool pool(o);
  auto spares_everywhere = [&] {
    const auto s = pool.stats();
    if (s.nodes.size() != 2) return false;
    for (const auto& n : s.nodes) {
      if (n.local.spares != 1) return false;
    }
    return true;
  };
  EXPECT_TRUE(keel_test::eventually(spares_everywhere)) << "a node's pool has no spare";
  EXPECT_THROW(pool.submit(die_t, SIGKILL).result(), keel::WorkerLost);
  EXPECT_TRUE(keel_test::eventually([&] {
    const auto s = pool.stats();
    std::uint64_t deaths = 0;
    for (const auto& n : s.nodes) deaths += n.local.deaths;
    return deaths == 1 && spares_everywhere();
  }));
  EXPECT_EQ(pool.submit(square_t, 7).result(), 49);
}

TEST(ClusterPool, LargeArgumentsAndResultsTravel) {
  ClusterPool pool(local(2, 1));
  const std::string big(1 << 20, 'x');
  EXPECT_EQ(pool.submit(echo_t, big).result(), big);
}

std::string temp_dir() {
  char tmpl[] = "/tmp/keel-cluster-XXXXXX";
  return ::mkdtemp(tmpl) ? std::string(tmpl) : std::string();
}
void remove_dir(const std::string& dir) { (void)std::system(("rm -rf '" + dir + "'").c_str()); }

TEST(ClusterPool, ATaskThatExitsIsWorkerLostAndRetriesRunItAgain) {
  const std::string dir = temp_dir();
  ASSERT_FALSE(dir.empty());
  {
    ClusterPool plain(local(1, 1));
    try {
      (void)plain.submit(exit_t, 3).result();
      FAIL() << "expected WorkerLost";
    } catch (const keel::WorkerLost& e) {
      EXPECT_EQ(e.exit_code(), 3);
    }
    EXPECT_EQ(plain.submit(square_t, 5).result(), 25) << "the node replaced its worker";
  }
  {
    ClusterOptions o = local(1, 1);
    o.retries = 1;
    ClusterPool pool(o);
    EXPECT_EQ(pool.submit(die_once_t, dir).result(), 1) << "its second run, on a fresh worker";
  }
  remove_dir(dir);
}

TEST(ClusterPool, ATaskPastItsTimeoutFailsWithTimeoutErrorAndTheNodeGoesOn) {
  ClusterOptions o = local(1, 1);
  o.task_timeout = 200ms;
  ClusterPool pool(o);
  EXPECT_THROW(pool.submit(sleep_t, 30000).result(), keel::TimeoutError);
  EXPECT_EQ(pool.submit(square_t, 6).result(), 36);
  EXPECT_EQ(pool.submit(keel::SubmitOptions{.timeout = std::chrono::nanoseconds::max()}, sleep_t, 300).result(), 300)
      << "a task's own timeout overrides the pool's";
  EXPECT_THROW(pool.submit(keel::SubmitOptions{.timeout = 0ns}, square_t, 1).result(), keel::TimeoutError);
}

// A task whose timeout is exactly zero is failed at submit and never sent: it
// is not counted as submitted. The count is read once a later task's answer
// is in the stats, which the supervisor publishes after it took both.
TEST(ClusterPool, ATimeoutOfZeroFailsTheTaskWithoutSendingIt) {
  ClusterPool pool(local(1, 1));
  EXPECT_EQ(pool.submit(square_t, 2).result(), 4);
  ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().answered == 1u; }));
  EXPECT_THROW(pool.submit(keel::SubmitOptions{.timeout = 0ns}, square_t, 1).result(), keel::TimeoutError);
  EXPECT_EQ(pool.submit(square_t, 3).result(), 9);
  ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().answered == 2u; }));
  EXPECT_EQ(pool.stats().submitted, 2u) << "the zero-timeout task was sent";
}

// The arguments' limit, exactly: a call whose encoded arguments are
// max_message bytes is sent and runs; one byte more is ProtocolError at
// submit, and nothing is sent. The encoding's overhead is read off the error
// for a larger string (same length-prefix size), not hard-coded here.
TEST(ClusterPool, ArgumentsOfExactlyMaxMessageBytesAreSentAndOneMoreIsRefused) {
  ClusterOptions o = local(1, 1);
  o.max_message = 4096;
  ClusterPool pool(o);
  const std::size_t big = 8000;
  std::size_t payload_of_big = 0;
  try {
    (void)pool.submit(length_t, std::string(big, 'x'));
    FAIL() << "8000 bytes of arguments above a max_message of 4096 were accepted";
  } catch (const keel::ProtocolError& e) {
    const std::string what = e.what();
    const auto at = what.find(" are ");
    ASSERT_NE(at, std::string::npos) << what;
    payload_of_big = std::stoul(what.substr(at + 5));
  }
  ASSERT_GT(payload_of_big, big);
  const std::size_t fits = o.max_message - (payload_of_big - big);
  EXPECT_EQ(pool.submit(length_t, std::string(fits, 'x')).result(), static_cast<int>(fits));
  EXPECT_THROW((void)pool.submit(length_t, std::string(fits + 1, 'x')), keel::ProtocolError);
  ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().answered == 1u; }));
  EXPECT_EQ(pool.stats().submitted, 1u);
}

TEST(ClusterPool, ACancelledOfferIsNeverRunWhenItsNodeClaimsIt) {
  // One node of one worker, busy with A until the test opens A's gate. B is
  // offered to the node behind A, and its user cancels it there: when A
  // ends and the node claims B, rank 0 must say drop, and B never runs.
  const std::string dir = temp_dir();
  ASSERT_FALSE(dir.empty());
  const std::string gate = dir + "-gate";
  {
    ClusterPool pool(local(1, 1));
    auto a = pool.submit(wait_for_file_t, gate);
    ASSERT_TRUE(keel_test::eventually([&] { return a.running(); }));
    auto b = pool.submit(mark_sleep_t, dir, 0);
    ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().nodes[0].offered == 1u; })) << "B is offered behind A";
    EXPECT_TRUE(b.cancel()) << "offered, not let run: cancel wins";
    if (FILE* f = std::fopen(gate.c_str(), "w")) std::fclose(f);
    EXPECT_EQ(a.result(keel_test::hang_limit), 1);
    pool.shutdown();
    EXPECT_TRUE(b.cancelled());
    const auto s = pool.stats();
    EXPECT_EQ(s.cancelled, 1u);
    EXPECT_EQ(s.answered, 1u);
    EXPECT_EQ(s.nodes[0].local.submitted, 1u) << "the cancelled task reached the node's pool";
  }
  EXPECT_EQ(marks_in(dir), 0) << "the cancelled task ran";
  ::unlink(gate.c_str());
  remove_dir(dir);
}

TEST(ClusterPool, AnOfferWaitingBehindABusyNodeMovesToAnIdleOne) {
  // Two nodes of one worker. A (long) takes node 0, B (short) node 1; C is
  // offered ahead to node 0, behind A. When B ends, node 1 is idle: C must
  // be taken back from node 0 and run there, long before A ends.
  const std::string dir = temp_dir();
  ASSERT_FALSE(dir.empty());
  {
    ClusterPool pool(local(2, 1));
    // Both nodes ready first, so A goes to node 0 (ties go to the lowest).
    ASSERT_TRUE(keel_test::eventually([&] {
      const auto s = pool.stats();
      return s.nodes[0].capacity == 1 && s.nodes[1].capacity == 1;
    }));
    auto a = pool.submit(mark_sleep_t, dir, 60000);
    ASSERT_TRUE(keel_test::eventually([&] { return marks_in(dir) == 1; }));
    // The mark says A started; the node's count reaches the stats when the
    // supervisor next publishes them.
    ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().nodes[0].running == 1u; }));
    // B ends when the test makes its file, not on a timer: a slow machine
    // (ASan, two cores) could otherwise end B before C is offered, and C
    // would go to the idle node without being moved.
    const std::string gate = dir + "-gate";
    auto b = pool.submit(wait_for_file_t, gate);
    ASSERT_TRUE(keel_test::eventually([&] { return b.running(); }));
    auto c = pool.submit(square_t, 4);
    ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().nodes[0].offered == 1u; }))
        << "C is offered to node 0, behind A";
    EXPECT_EQ(pool.stats().moved, 0u);
    if (FILE* f = std::fopen(gate.c_str(), "w")) std::fclose(f);
    EXPECT_EQ(b.result(), 1);
    EXPECT_EQ(c.result(), 16);
    EXPECT_FALSE(a.done()) << "C did not wait for A";
    // The supervisor publishes its counters after it has handled what the
    // nodes sent, so C's answer may reach the test first.
    EXPECT_TRUE(keel_test::eventually([&] { return pool.stats().moved >= 1u; }));
    ::unlink(gate.c_str());
    pool.terminate_workers();
    EXPECT_THROW(a.result(), keel::WorkerLost);
  }
  remove_dir(dir);
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

TEST(ClusterPool, MapTimeoutCountsFromTheCallAndLeavesThePoolUsable) {
  ClusterPool pool(local(1, 1));
  auto results = pool.map(sleep_t, std::vector<int>{5000, 5000}, {.chunksize = 1, .timeout = 200ms});
  EXPECT_THROW((void)results.next(), keel::TimeoutError);
  results = pool.map(square_t, std::vector<int>{}, {});
  EXPECT_FALSE(results.next().has_value());
  pool.terminate_workers();
}

TEST(ClusterPool, AnIdleClusterDoesNotSpin) {
  // The supervisor and both node agents live in this process: over a second
  // with nothing to do they sleep between polls, so the process uses a
  // small fraction of one core (a spinning poller would use all of it).
  ClusterPool pool(local(2, 1));
  EXPECT_EQ(pool.submit(square_t, 2).result(), 4);
  const double before = cpu_seconds();
  std::this_thread::sleep_for(1s);
  EXPECT_LT(cpu_seconds() - before, 0.3);
}

}  // namespace
