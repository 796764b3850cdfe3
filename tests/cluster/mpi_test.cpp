// The ClusterPool over real MPI ranks: each test starts
// build/<tc>/keel_mpi_scenarios under mpirun (3 ranks on this host: rank 0
// and two nodes) and checks what it printed and how it ended
// (CLUSTER-1..7 over Open MPI; tests/cluster/mpi/scenarios.cpp).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "../support/test_support.hpp"
#include "../support/watchdog.hpp"

namespace {

struct MpiRun {
  int status = -1;  // as waitpid's
  std::string out;  // stdout and stderr
  double seconds = 0;
};

// A program built beside this test binary (build/<tc>/...).
std::string built(const std::string& name) {
  char buf[4096] = {};
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  return self.substr(0, self.rfind('/') + 1) + name;
}
std::string scenarios_binary() { return built("keel_mpi_scenarios"); }

// Each scenario takes seconds (about 3 under TSan); the job's limit is
// generous for a loaded machine, but below the test's own watchdog limit
// when that is shorter (make mutate runs with 60 s), so a rank that never
// ends fails the test that started it, with what the ranks printed.
int mpirun_limit_seconds() {
  const int watchdog = keel::test::watchdog_limit_seconds();
  return watchdog > 0 ? std::clamp(watchdog - 15, 10, 180) : 180;
}

// mpirun -n `ranks` on this host only: loopback TCP and shared memory, as
// many ranks as asked whatever the cores (oversubscribed ranks yield).
MpiRun mpirun(const std::string& scenario, int ranks = 3, int limit_s = mpirun_limit_seconds(),
              const std::string& prog = scenarios_binary()) {
  std::string cmd = "timeout -k 5 " + std::to_string(limit_s) + " mpirun --oversubscribe -n " + std::to_string(ranks) +
                    " --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo"
                    " --mca btl_vader_single_copy_mechanism none --mca mpi_yield_when_idle 1 " +
                    prog + " " + scenario + " 2>&1";
  if (::geteuid() == 0) cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + cmd;
  // Open MPI does not free what MPI_Init allocated (some of it in components
  // it unloads, so no suppression can name them): no leak check of the
  // scenario processes. The same driver and agents run under LeakSanitizer in
  // this binary (ClusterPool.*, in-process nodes).
  cmd = "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" " + cmd;
  // Under TSan: Open MPI's own reports are suppressed (tools/tsan_mpi.supp
  // says which and why); keel's code in those processes is still checked.
  cmd = "TSAN_OPTIONS=\"$TSAN_OPTIONS suppressions=" KEEL_SOURCE_DIR "/tools/tsan_mpi.supp\" " + cmd;
  MpiRun r;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, got);
  r.status = ::pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void expect_ok(const std::string& scenario, int ranks = 3) {
  ASSERT_EQ(::access(scenarios_binary().c_str(), X_OK), 0)
      << scenarios_binary() << " is missing: `make test` builds it";
  const MpiRun r = mpirun(scenario, ranks);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << "status " << r.status << "\n" << r.out;
  EXPECT_NE(r.out.find("scenario " + scenario + ": ok"), std::string::npos) << r.out;
}

TEST(ClusterMpi, TasksRunOnEveryNodeRankAndResolve) { expect_ok("basic"); }
TEST(ClusterMpi, RankZeroCanServeAsANodeToo) { expect_ok("rank0"); }
TEST(ClusterMpi, ASegfaultingTaskCostsOneWorkerNotTheRank) { expect_ok("crash"); }
TEST(ClusterMpi, CancelWorksUntilANodeIsLetRunTheTask) { expect_ok("cancel"); }
TEST(ClusterMpi, PoolsOpenOneAfterAnotherOnTheSameRanks) { expect_ok("two-pools"); }
TEST(ClusterMpi, TerminateWorkersEndsRunningTasksOnEveryRank) { expect_ok("terminate"); }
TEST(ClusterMpi, AFailingInitializerBreaksTheClusterAndSubmitSaysSo) { expect_ok("broken"); }
TEST(ClusterMpi, OneRankAloneNeedsRankZeroToServe) { expect_ok("alone", 1); }
TEST(ClusterMpi, AnIdleRankZeroSleepsBetweenPolls) { expect_ok("idle"); }
TEST(ClusterMpi, APoolLeftOpenAtExitIsTerminatedAndEveryRankExits) { expect_ok("leak-at-exit"); }

TEST(ClusterMpi, TheClusterExampleRunsAndItsCrashStaysOnItsNode) {
  const std::string example = built("examples/cluster");
  ASSERT_EQ(::access(example.c_str(), X_OK), 0) << example << " is missing: `make test` builds it";
  const MpiRun r = mpirun("", 3, mpirun_limit_seconds(), example);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << "status " << r.status << "\n" << r.out;
  EXPECT_NE(r.out.find("2 nodes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("longest Collatz run below 2001: 181 steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a task ran on rank 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a task ran on rank 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("crash: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("after the crash: 111"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cancelled 4 of 4 waiting tasks"), std::string::npos) << r.out;
}

TEST(ClusterMpi, ADeadRankEndsTheJobPromptlyWithAMessageNeverAHang) {
  const MpiRun r = mpirun("rank-dies", 3, std::min(120, mpirun_limit_seconds()));
  EXPECT_FALSE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.out;
  EXPECT_LT(r.seconds, 60.0) << "the job must end promptly\n" << r.out;
  EXPECT_EQ(r.out.find("scenario rank-dies: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank"), std::string::npos) << "mpirun names the rank that died\n" << r.out;
}

}  // namespace
