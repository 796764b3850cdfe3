// The per-test time limit (TEST-1): a hung test ends the run red, named, with
// its threads' stacks, instead of running until CI's job timeout.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>

#include "tests/support/watchdog.hpp"

namespace {

// Blocks for ever; its name is what the dump must show.
[[noreturn]] __attribute__((noinline)) void hang_for_the_watchdog() {
  std::mutex m;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(m);
  for (;;) cv.wait(lock);
}

struct ChildRun {
  int status;
  std::string output;
};

// This test binary, re-run on one test with the given KEEL_TEST_TIMEOUT (and
// without the shard of the run this test is in: GoogleTest would apply it to
// the one test and might run none).
ChildRun run_self(const std::string& timeout, const std::string& filter, const std::string& prefix = "") {
  const std::string cmd = prefix +
                          " env -u GTEST_TOTAL_SHARDS -u GTEST_SHARD_INDEX -u GTEST_SHARD_STATUS_FILE "
                          "KEEL_TEST_TIMEOUT='" +
                          timeout + "' /proc/" + std::to_string(::getpid()) +
                          "/exe --gtest_also_run_disabled_tests --gtest_filter=" + filter + " 2>&1";
  ChildRun r{-1, {}};
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p) != nullptr) r.output += buf;
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return r;
}

}  // namespace

// Run only by the tests below, in a child test process.
TEST(TestWatchdogTarget, DISABLED_Hangs) { hang_for_the_watchdog(); }
TEST(TestWatchdogTarget, DISABLED_Passes) { SUCCEED(); }
TEST(TestWatchdogTarget, DISABLED_PrintsItsLimit) {
  std::printf("watchdog limit: %d s\n", keel::test::watchdog_limit_seconds());
}

TEST(TestWatchdog, HangIsANamedFailureWithStacks) {
  const ChildRun r = run_self("1", "TestWatchdogTarget.DISABLED_Hangs");
  EXPECT_EQ(r.status, keel::test::timeout_status) << r.output;
  EXPECT_NE(r.output.find("[  TIMEOUT ] TestWatchdogTarget.DISABLED_Hangs did not end within 1 s"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[  FAILED  ] TestWatchdogTarget.DISABLED_Hangs (timed out)"), std::string::npos) << r.output;
  // The hung thread's stack, symbolized: the function it is stuck in.
  EXPECT_NE(r.output.find("hang_for_the_watchdog"), std::string::npos) << r.output;
}

TEST(TestWatchdog, TestWithinItsLimitPasses) {
  const ChildRun r = run_self("30", "TestWatchdogTarget.DISABLED_Passes");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find("TIMEOUT"), std::string::npos) << r.output;
}

TEST(TestWatchdog, BadLimitEndsTheRunNamingTheVariable) {
  for (const char* bad : {"abc", "-5", "10s", "", "99999999999999999999"}) {
    const ChildRun r = run_self(bad, "TestWatchdogTarget.DISABLED_Passes");
    EXPECT_EQ(r.status, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("KEEL_TEST_TIMEOUT"), std::string::npos) << r.output;
  }
}

TEST(TestWatchdog, ZeroTurnsTheLimitOff) {
  // With the limit off the hung test stays hung until timeout(1) kills it (status 137).
  const ChildRun r = run_self("0", "TestWatchdogTarget.DISABLED_Hangs", "timeout -s KILL 3");
  EXPECT_EQ(r.status, 137) << r.output;
  EXPECT_EQ(r.output.find("TIMEOUT"), std::string::npos) << r.output;
}

TEST(TestWatchdog, TestsKnowTheLimitInForce) {
  // Tests that give a child process a limit keep it below this one
  // (tests/cluster/mpi_test.cpp), so a hung child fails its test by name.
  for (const auto& [env, want] :
       {std::pair<std::string, std::string>{"45", "watchdog limit: 45 s"}, {"0", "watchdog limit: 0 s"}}) {
    const ChildRun r = run_self(env, "TestWatchdogTarget.DISABLED_PrintsItsLimit");
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(want), std::string::npos) << env << ": " << r.output;
  }
}
