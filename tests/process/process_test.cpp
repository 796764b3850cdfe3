// keel::Process (Python's multiprocessing.Process): a registered task runs in
// a fresh image of this binary (spawn) or a forked copy (fork, opt-in); exit
// codes follow Python (negative signal numbers); join(timeout), is_alive,
// terminate/kill; connections reach the child; a daemon child dies with its
// parent, even when the parent is SIGKILLed (POOL-4); the destructor kills a
// daemon child and joins a non-daemon one. tests/main.cpp fails any test that
// leaves a child, a zombie or an fd behind.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/process.hpp"

using namespace std::chrono_literals;
using keel_test::hang_limit;

namespace {

// Set by the parent at run time: a spawned child (fresh image) sees 0, a
// forked child sees the parent's value.
int g_marker = 0;

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n < 0 ? std::string() : std::string(buf, static_cast<std::size_t>(n));
}

// What a child reports about itself over connection 0.
using Report = std::tuple<std::int32_t, std::int32_t, std::string, std::string, std::int32_t, std::int64_t>;
//                          pid        ppid          exe          name         marker        argument

void report_task(std::int64_t argument) {
  keel::this_process::connection(0).send(Report{static_cast<std::int32_t>(::getpid()),
                                                static_cast<std::int32_t>(::getppid()), self_exe(),
                                                keel::this_process::name(), g_marker, argument});
}

void sleep_task(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

void exit_task(int code) { std::exit(code); }

void throw_task() { throw std::runtime_error("boom from the child"); }

void abort_task() {
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // no core file for an expected abort
  std::abort();
}

void nothing_task() {}

// Echoes every message on connection 0 until the parent closes its end.
void echo_task() {
  keel::Connection& c = keel::this_process::connection(0);
  for (;;) {
    std::string m;
    try {
      m = c.recv_bytes();
    } catch (const keel::OsError&) {
      return;  // the parent closed its end
    }
    c.send_bytes(m);
  }
}

// Starts a daemon grandchild, reports its pid on connection 0, then waits to
// be killed.
void middle_task() {
  keel::Process grandchild(keel::ProcessOptions{.name = "grandchild", .daemon = true},
                           keel::TaskRef<void(int)>::lookup("process_test.sleep"), 20000);
  grandchild.start();
  keel::this_process::connection(0).send(static_cast<std::int32_t>(grandchild.pid()));
  std::this_thread::sleep_for(20s);
}

const auto report = keel::register_task("process_test.report", report_task);
const auto sleep_ms = keel::register_task("process_test.sleep", sleep_task);
const auto exit_with = keel::register_task("process_test.exit", exit_task);
const auto throws = keel::register_task("process_test.throw", throw_task);
const auto aborts = keel::register_task("process_test.abort", abort_task);
const auto nothing = keel::register_task("process_test.nothing", nothing_task);
const auto echo = keel::register_task("process_test.echo", echo_task);
const auto middle = keel::register_task("process_test.middle", middle_task);

// A raw role: sleeps 30 ms, then exits with the payload's number.
int sleep_role(const keel::detail::ChildContext& ctx) {
  std::this_thread::sleep_for(30ms);
  return std::atoi(ctx.payload.c_str());
}
const bool sleep_role_registered = (keel::detail::register_child_role("keel-test-sleep", sleep_role), true);

// A raw role: exits 0 if every fd it was handed is close-on-exec in it (so
// none leaks into what it execs; a pool worker's grandchildren held its pipes
// open when they did), else 3.
int cloexec_role(const keel::detail::ChildContext& ctx) {
  for (const int fd : ctx.fds) {
    if ((::fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0) return 3;
  }
  return ctx.fds.empty() ? 4 : 0;
}
const bool cloexec_role_registered = (keel::detail::register_child_role("keel-test-cloexec", cloexec_role), true);

// Whether pid is a child of this process that has been reaped (or never was one).
bool reaped(int pid) { return ::waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD; }

Report run_report(keel::StartMethod how, std::int64_t argument, const std::string& name = {}) {
  keel::Pipe pipe;
  keel::Process p(keel::ProcessOptions{.name = name, .start = how, .connections = {pipe.second}}, report, argument);
  p.start();
  pipe.second.close();
  Report r = pipe.first.recv<Report>(hang_limit);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(std::get<0>(r), p.pid());
  return r;
}

int exit_code_of(keel::Process p) {
  p.start();
  EXPECT_TRUE(p.join(hang_limit));
  return p.exitcode().value_or(-1000);
}

TEST(Process, SpawnRunsTheTaskInAFreshImageOfThisBinary) {
  g_marker = 42;
  const Report r = run_report(keel::StartMethod::spawn, 1234567890123, "worker-a");
  g_marker = 0;
  EXPECT_NE(std::get<0>(r), ::getpid());
  EXPECT_EQ(std::get<1>(r), ::getpid());
  EXPECT_EQ(std::get<2>(r), self_exe());
  EXPECT_EQ(std::get<3>(r), "worker-a");
  EXPECT_EQ(std::get<4>(r), 0) << "a spawned child must not see the parent's memory";
  EXPECT_EQ(std::get<5>(r), 1234567890123);
}

TEST(Process, ArgumentsAreConvertedToTheTaskParameterTypes) {
  const Report r = run_report(keel::StartMethod::spawn, 7);  // an int for an int64_t parameter
  EXPECT_EQ(std::get<5>(r), 7);
}

TEST(Process, DefaultNamesCountUp) {
  keel::Process a(nothing), b(nothing);
  EXPECT_EQ(a.name().rfind("Process-", 0), 0u);
  EXPECT_NE(a.name(), b.name());
  EXPECT_EQ(a.pid(), -1);
  EXPECT_FALSE(a.is_alive());
  EXPECT_EQ(a.exitcode(), std::nullopt);
}

TEST(Process, ForkIsAnOptInAndSeesTheParentsMemory) {
  g_marker = 42;
  const Report r = run_report(keel::StartMethod::fork, 5, "forked");
  g_marker = 0;
  EXPECT_EQ(std::get<1>(r), ::getpid());
  EXPECT_EQ(std::get<3>(r), "forked");
  EXPECT_EQ(std::get<4>(r), 42);
}

TEST(Process, ForkCallRunsACallableAndExitsWithItsResult) {
  int captured = 3;
  keel::Process p = keel::Process::fork_call([&captured] { return captured * 2 + 1; });
  captured = 4;  // the child was not started yet: it sees 4 once started
  p.start();
  ASSERT_TRUE(p.join(hang_limit));
  EXPECT_EQ(p.exitcode(), 9);
  keel::Process q = keel::Process::fork_call([]() -> int { throw std::logic_error("no"); });
  q.start();
  ASSERT_TRUE(q.join(hang_limit));
  EXPECT_EQ(q.exitcode(), 1);
  EXPECT_THROW(keel::Process::fork_call(nullptr), keel::ValueError);
  // A forked daemon child watches its parent as a spawned one does, and
  // still exits with its own status. Not under TSan: it cannot start the
  // child's watcher thread once the parent has other threads (the executor
  // tests' watchdog, in the whole suite), and kills the child with status 66.
  if (KEEL_TEST_TSAN) return;
  keel::Process d = keel::Process::fork_call([] { return 4; }, {.daemon = true});
  d.start();
  ASSERT_TRUE(d.join(hang_limit));
  EXPECT_EQ(d.exitcode(), 4);
}

TEST(Process, ExitCodesFollowPython) {
  EXPECT_EQ(exit_code_of(keel::Process(nothing)), 0);
  EXPECT_EQ(exit_code_of(keel::Process(throws)), 1);
  EXPECT_EQ(exit_code_of(keel::Process(exit_with, 7)), 7);
  EXPECT_EQ(exit_code_of(keel::Process(aborts)), -SIGABRT);
}

TEST(Process, KillAndTerminateGiveMinusTheSignal) {
  keel::Process a(sleep_ms, 20000), b(sleep_ms, 20000);
  a.start();
  b.start();
  a.kill();
  b.terminate();
  ASSERT_TRUE(a.join(hang_limit));
  ASSERT_TRUE(b.join(hang_limit));
  EXPECT_EQ(a.exitcode(), -SIGKILL);
  EXPECT_EQ(b.exitcode(), -SIGTERM);
  EXPECT_NO_THROW(a.kill());  // reaped: nothing to signal, no error
  EXPECT_FALSE(a.is_alive());
}

TEST(Process, JoinWithTimeoutFalseWhileRunningThenTrue) {
  keel::Process p(sleep_ms, 300);
  p.start();
  EXPECT_TRUE(p.is_alive());
  const keel_test::Stopwatch sw;
  EXPECT_FALSE(p.join(20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_TRUE(p.is_alive());
  EXPECT_EQ(p.exitcode(), std::nullopt);
  EXPECT_FALSE(p.join(0ms));
  EXPECT_TRUE(p.join(hang_limit));
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_TRUE(p.join(0ms));  // joining again is fine
  EXPECT_TRUE(reaped(p.pid()));
}

TEST(Process, SeveralThreadsJoinOneProcess) {
  keel::Process p(sleep_ms, 50);
  p.start();
  std::atomic<int> joined{0};
  {
    keel_test::Threads threads;
    for (int i = 0; i < 4; ++i) {
      threads.spawn([&] {
        if (p.join(hang_limit)) joined.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(joined.load(), 4);
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, SpawnWorksWhileTheParentRunsManyThreads) {
  std::atomic<bool> stop{false};
  keel_test::Threads busy;
  for (int i = 0; i < 16; ++i) {
    busy.spawn([&] {
      std::vector<std::string> churn;
      while (!stop.load(std::memory_order_relaxed)) {
        churn.emplace_back(100, 'x');  // malloc traffic, as a real program has
        if (churn.size() > 64) churn.clear();
        std::this_thread::yield();
      }
    });
  }
  std::atomic<int> ok{0};
  {
    keel_test::Threads starters;
    for (int t = 0; t < 4; ++t) {
      starters.spawn([&] {
        for (int i = 0; i < 2; ++i) {
          keel::Process p(exit_with, 3);
          p.start();
          if (p.join(hang_limit) && p.exitcode() == 3) ok.fetch_add(1);
        }
      });
    }
  }
  stop.store(true);
  busy.join();
  EXPECT_EQ(ok.load(), 8);
}

TEST(Process, ConnectionsReachTheChildWhichEchoesMessages) {
  keel::Pipe pipe;
  keel::Process p(keel::ProcessOptions{.connections = {pipe.second}}, echo);
  p.start();
  pipe.second.close();  // else the child never sees end of stream
  for (int i = 0; i < 50; ++i) {
    const std::string m = "message " + std::to_string(i) + std::string(static_cast<std::size_t>(i) * 37, 'z');
    pipe.first.send_bytes(m);
    ASSERT_TRUE(pipe.first.poll(hang_limit));
    EXPECT_EQ(pipe.first.recv_bytes(), m);
  }
  pipe.first.send(std::vector<std::int32_t>{1, 2, 3});
  EXPECT_EQ(pipe.first.recv<std::vector<std::int32_t>>(hang_limit), (std::vector<std::int32_t>{1, 2, 3}));
  pipe.first.close();
  ASSERT_TRUE(p.join(hang_limit));
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, ThisProcessHasNoConnectionsInTheMainProcess) {
  EXPECT_EQ(keel::this_process::connection_count(), 0u);
  EXPECT_THROW(keel::this_process::connection(0), keel::ValueError);
  EXPECT_EQ(keel::this_process::name(), "MainProcess");
}

// Undoes PR_SET_CHILD_SUBREAPER and reaps a leftover grandchild if the test fails early.
class Subreaper {
 public:
  Subreaper() { ok_ = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0; }
  ~Subreaper() {
    if (orphan_ > 0 && !reaped(orphan_)) {
      ::kill(orphan_, SIGKILL);
      ::waitpid(orphan_, nullptr, 0);
    }
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
  bool ok() const { return ok_; }
  void watch(int pid) { orphan_ = pid; }

 private:
  bool ok_ = false;
  int orphan_ = -1;
};

// Reaps `pid`, an orphan reparented to this subreaper, within `limit`: its
// wait status, or -1 if it still runs then (or is no child of ours).
int orphan_status_within(pid_t pid, std::chrono::milliseconds limit) {
  const keel_test::Stopwatch sw;
  while (sw.elapsed() < limit) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r != 0) return -1;
    std::this_thread::sleep_for(2ms);
  }
  return -1;
}

// How a daemon child leaves when its lifeline watcher sees its parent gone.
bool left_through_lifeline(int status) { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1; }

TEST(Process, ADaemonChildDiesWhenItsParentIsKilled) {
  Subreaper subreaper;  // orphans come to this process, which can then reap them
  ASSERT_TRUE(subreaper.ok());
  keel::Pipe pipe;
  keel::Process mid(keel::ProcessOptions{.connections = {pipe.second}}, middle);
  mid.start();
  pipe.second.close();
  const int grandchild = pipe.first.recv<std::int32_t>(hang_limit);
  subreaper.watch(grandchild);
  ASSERT_GT(grandchild, 0);
  EXPECT_EQ(::kill(grandchild, 0), 0) << "the grandchild runs";
  mid.kill();
  ASSERT_TRUE(mid.join(hang_limit));
  EXPECT_EQ(mid.exitcode(), -SIGKILL);
  // The middle process is reaped, so the grandchild is already ours.
  const int status = orphan_status_within(grandchild, 1000ms);
  ASSERT_NE(status, -1) << "the daemon grandchild outlived its parent by a second";
  EXPECT_TRUE(left_through_lifeline(status)) << "it should leave through its lifeline watcher";
}

int open_fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {  // its own fd is counted every time alike
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// What the middle process of the stdin-closed test reports.
using StdinClosedReport = std::tuple<bool, bool, std::int32_t, std::int32_t>;
//                                   fd 0 is its lifeline, each start opened what a plain one does, two daemons

// Started (spawned) with fd 0 closed, so the lifeline pipe that a child makes
// before its task runs has its read end at 0. Starts a plain child and two
// daemon children by fork, which must each open the same fds (the lifeline is
// made once, fd 0 or not) and must carry the lifeline, reports, and waits to
// be killed.
void stdin_closed_middle_task() {
  struct stat st {};
  const bool lifeline_at_0 = ::fstat(0, &st) == 0 && S_ISFIFO(st.st_mode);
  const int c0 = open_fd_count();
  keel::Process plain(keel::ProcessOptions{.start = keel::StartMethod::fork}, nothing);
  plain.start();
  const int c1 = open_fd_count();
  StdinClosedReport r{lifeline_at_0, true, 0, 0};
  // Not under TSan: a forked daemon's watcher thread (see ForkCallRunsACallableAndExitsWithItsResult).
  std::optional<keel::Process> d1, d2;
  if (!KEEL_TEST_TSAN) {
    const keel::ProcessOptions daemon{.daemon = true, .start = keel::StartMethod::fork};
    d1.emplace(daemon, sleep_ms, 20000);
    d1->start();
    const int c2 = open_fd_count();
    d2.emplace(daemon, sleep_ms, 20000);
    d2->start();
    const int c3 = open_fd_count();
    r = {lifeline_at_0, c2 - c1 == c1 - c0 && c3 - c2 == c1 - c0, d1->pid(), d2->pid()};
  }
  keel::this_process::connection(0).send(r);
  plain.join();
  std::this_thread::sleep_for(20s);
}
const auto stdin_closed_middle = keel::register_task("process_test.stdin_closed_middle", stdin_closed_middle_task);

TEST(Process, AParentWithStdinClosedStartsChildrenAndDaemonsThatWorkAndLeakNothing) {
  // Daemons and programs started with no stdin are common. The first fd
  // keel opens there is 0: a forked child's pidfd, a spawn's payload memfd,
  // the lifeline pipe. Each must work at 0 and be closed again. The child T
  // runs it all (its fd 0 closed) and exits with the first check that failed.
  keel::Process t = keel::Process::fork_call([] {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 2;  // the daemons come to T when their parent dies
    keel::Pipe pipe;
    ::close(0);
    {
      keel::Process p(keel::ProcessOptions{.start = keel::StartMethod::fork}, nothing);
      p.start();  // its pidfd is fd 0
      if (!p.join(hang_limit) || p.exitcode() != 0) return 10;
      if (fd_open(0)) return 15;  // a joined Process still holds its pidfd
    }
    if (fd_open(0)) return 11;  // the reaped child's pidfd leaked
    {
      keel::Process p(keel::ProcessOptions{.start = keel::StartMethod::fork}, nothing);
      p.start();  // its pidfd is fd 0; never joined: the destructor reaps it
    }
    if (fd_open(0)) return 16;  // a Process destroyed unjoined leaked its pidfd
    {
      // A forked child that leads a new group takes /dev/null as its stdin,
      // which there is fd 0 as soon as it is opened.
      keel::detail::ChildHandle h = keel::detail::spawn_child({.role = "keel-test-sleep",
                                                               .daemon = false,
                                                               .start = keel::StartMethod::fork,
                                                               .payload = "0",
                                                               .new_process_group = true});
      if (keel::detail::reap_child(h, true) != 0) return 14;
    }
    keel::Process mid(keel::ProcessOptions{.connections = {pipe.second}}, stdin_closed_middle);
    mid.start();  // spawn: its payload memfd is fd 0, and mid starts with no fd 0
    pipe.second.close();
    const auto [lifeline_at_0, same_fds, d1, d2] = pipe.first.recv<StdinClosedReport>(hang_limit);
    mid.kill();
    if (!mid.join(hang_limit)) return 12;
    const bool d1_gone = d1 == 0 || left_through_lifeline(orphan_status_within(d1, 5000ms));
    const bool d2_gone = d2 == 0 || left_through_lifeline(orphan_status_within(d2, 5000ms));
    for (const pid_t d : {d1, d2}) {
      if (d > 0 && ::kill(d, SIGKILL) == 0) ::waitpid(d, nullptr, 0);
    }
    if (!lifeline_at_0) return 20;        // the test's premise: the middle's lifeline is at 0
    if (!same_fds) return 21;             // a daemon's start made another lifeline pipe
    if (!d1_gone || !d2_gone) return 22;  // a forked daemon did not get the lifeline at 0
    return fd_open(0) ? 13 : 0;
  });
  t.start();
  ASSERT_TRUE(keel_test::joined_within(t));
  // 1: an exception (a start refused); 10-16: fd 0 as a pidfd or payload; 20-22: the lifeline at 0.
  EXPECT_EQ(t.exitcode(), 0);
}

// Reports on connection 0 whether the two connections it inherited are close-on-exec.
void cloexec_task() {
  const auto cloexec = [](int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; };
  keel::this_process::connection(0).send(std::tuple<bool, bool>{cloexec(keel::this_process::connection(0).fileno()),
                                                                cloexec(keel::this_process::connection(1).fileno())});
}
const auto cloexec_report = keel::register_task("process_test.cloexec", cloexec_task);

TEST(Process, TheConnectionsAChildInheritsAreCloseOnExecThere) {
  // They must not leak into whatever the child execs (a shell, a tool).
  for (const auto how : {keel::StartMethod::spawn, keel::StartMethod::fork}) {
    keel::Pipe a, b;
    keel::Process p(keel::ProcessOptions{.start = how, .connections = {a.second, b.second}}, cloexec_report);
    p.start();
    a.second.close();
    b.second.close();
    const auto [first, second] = a.first.recv<std::tuple<bool, bool>>(hang_limit);
    EXPECT_TRUE(first);
    EXPECT_TRUE(second);
    ASSERT_TRUE(keel_test::joined_within(p));
    EXPECT_EQ(p.exitcode(), 0);
  }
}

TEST(Process, AConnectionOnFdZeroWithoutCloseOnExecReachesTheChild) {
  // Both are legal fds to pass: a socket made without SOCK_CLOEXEC in a
  // process whose stdin is closed.
  keel::Process t = keel::Process::fork_call([] {
    ::close(0);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 2;
    if (sv[0] != 0 || ::fcntl(sv[0], F_GETFD) != 0) return 3;
    keel::Connection at0(sv[0]), mine(sv[1]);
    if ((::fcntl(0, F_GETFD) & FD_CLOEXEC) == 0) return 6;  // an adopted fd is made close-on-exec
    keel::Process p(keel::ProcessOptions{.connections = {at0}}, echo);
    p.start();
    at0.close();
    if (fd_open(0)) return 7;  // closing the connection closed fd 0
    mine.send_bytes("through fd 0");
    if (mine.recv_bytes(hang_limit) != "through fd 0") return 4;
    mine.close();
    return p.join(hang_limit) && p.exitcode() == 0 ? 0 : 5;
  });
  t.start();
  ASSERT_TRUE(keel_test::joined_within(t));
  EXPECT_EQ(t.exitcode(), 0);  // 1: the start refused the connection
}

TEST(ChildSpawn, AnEmptyPayloadReachesTheRole) {
  // The payload file is then exactly the handshake header.
  keel::detail::ChildHandle h = keel::detail::spawn_child({.role = "keel-test-sleep", .daemon = false, .payload = ""});
  ASSERT_GT(h.pid, 0);
  EXPECT_EQ(keel::detail::reap_child(h, true), 0);  // atoi("")
}

void ignore_signal(int) {}

TEST(ChildSpawn, ABlockingReapWaitsThroughSignalsThatInterruptIt) {
  // A handler installed without SA_RESTART makes waitpid fail with EINTR.
  struct sigaction interrupting {};
  interrupting.sa_handler = &ignore_signal;
  sigemptyset(&interrupting.sa_mask);
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGUSR2, &interrupting, &old), 0);
  keel::detail::ChildHandle h = keel::detail::spawn_child({.role = "keel-test-sleep", .daemon = false, .payload = "5"});
  ASSERT_GT(h.pid, 0);
  const pthread_t reaper = ::pthread_self();
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread pinger([&] {
    while (!stop.load()) {
      ::pthread_kill(reaper, SIGUSR2);
      sent.fetch_add(1);
      std::this_thread::sleep_for(1ms);
    }
  });
  int code = -1000;
  try {
    code = keel::detail::reap_child(h, true);  // the child sleeps 30 ms: interrupted many times
  } catch (const keel::OsError& e) {
    ADD_FAILURE() << e.what();
  }
  stop = true;
  pinger.join();
  ::sigaction(SIGUSR2, &old, nullptr);
  EXPECT_EQ(code, 5);
  EXPECT_GT(sent.load(), 1);
  if (h.pid > 0) keel::detail::reap_child(h, true);
}

TEST(ChildSpawn, AnFdWithoutCloseOnExecIsPassedAsAnyOtherAndIsCloseOnExecInTheChild) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ASSERT_EQ(::fcntl(sv[0], F_GETFD), 0);  // no flag set
  for (const auto how : {keel::StartMethod::spawn, keel::StartMethod::fork}) {
    keel::detail::ChildHandle h =
        keel::detail::spawn_child({.role = "keel-test-cloexec", .fds = {sv[0]}, .daemon = false, .start = how});
    ASSERT_GT(h.pid, 0);
    EXPECT_EQ(keel::detail::reap_child(h, true), 0) << "3: the fd was not close-on-exec in the child";
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(Process, DestructorJoinsANonDaemonChild) {
  int pid = -1;
  const keel_test::Stopwatch sw;
  {
    keel::Process p(sleep_ms, 100);
    p.start();
    pid = p.pid();
  }
  EXPECT_GE(sw.elapsed(), 100ms);
  EXPECT_TRUE(reaped(pid));
}

TEST(Process, DestructorKillsADaemonChild) {
  int pid = -1;
  const keel_test::Stopwatch sw;
  {
    keel::Process p(keel::ProcessOptions{.daemon = true}, sleep_ms, 20000);
    p.start();
    pid = p.pid();
    EXPECT_TRUE(p.daemon());
  }
  EXPECT_LT(sw.elapsed(), 10s);
  EXPECT_TRUE(reaped(pid));
}

TEST(Process, MisuseIsReported) {
  keel::Process p(nothing);
  EXPECT_THROW(p.join(), keel::MisuseError);
  EXPECT_THROW(p.terminate(), keel::MisuseError);
  p.start();
  EXPECT_THROW(p.start(), keel::MisuseError);
  p.join();
  EXPECT_THROW(keel::Process(keel::ProcessOptions{}, "process_test.no_such_task", ""), keel::ValueError);
  keel::Pipe pipe;
  pipe.second.close();
  keel::Process q(keel::ProcessOptions{.connections = {pipe.second}}, nothing);
  EXPECT_THROW(q.start(), keel::ValueError);
  EXPECT_FALSE(q.is_alive());
}

TEST(Process, BadlyEncodedArgumentsFailInTheChild) {
  // Three bytes cannot be an int: the child reports a ProtocolError and exits 1.
  keel::Process p(keel::ProcessOptions{}, "process_test.sleep", std::string("abc"));
  p.start();
  ASSERT_TRUE(p.join(hang_limit));
  EXPECT_EQ(p.exitcode(), 1);
}

TEST(ChildSpawn, UnknownRolesAndBadFdsAreRefusedWithNothingLeft) {
  EXPECT_THROW(keel::detail::spawn_child({.role = "no such role"}), keel::ValueError);
  EXPECT_THROW(keel::detail::spawn_child({.role = "process", .fds = {1000000}}), keel::ValueError);
}

// Puts fd `from` at number `at` for the scope of a test, then puts back what was there.
class FdAt {
 public:
  FdAt(int from, int at) : at_(at), saved_(::fcntl(at, F_DUPFD_CLOEXEC, 10)) { ::dup3(from, at, O_CLOEXEC); }
  ~FdAt() {
    if (saved_ >= 0) {
      ::dup3(saved_, at_, O_CLOEXEC);
      ::close(saved_);
    } else {
      ::close(at_);
    }
  }
  FdAt(const FdAt&) = delete;
  FdAt& operator=(const FdAt&) = delete;

 private:
  int at_;
  int saved_;
};

void two_ends_task() {
  keel::this_process::connection(0).send_bytes("zero");
  keel::this_process::connection(1).send_bytes("one");
}
const auto two_ends = keel::register_task("process_test.two_ends", two_ends_task);

TEST(ChildSpawn, FdsAlreadyAtTargetNumbersArePassedInOrder) {
  // The request {fd 4, fd 3} must become {3, 4} in the child: dup2(4 -> 3)
  // first would clobber the second source.
  for (const auto how : {keel::StartMethod::spawn, keel::StartMethod::fork}) {
    keel::Pipe a, b;
    {
      FdAt a_at_3(a.second.fileno(), 3), b_at_4(b.second.fileno(), 4);
      keel::Connection at3(3), at4(4);
      keel::Process p(keel::ProcessOptions{.start = how, .connections = {at4, at3}}, two_ends);
      p.start();
      (void)at3.detach();  // FdAt puts the old fds back
      (void)at4.detach();
      a.second.close();
      b.second.close();
      EXPECT_EQ(b.first.recv_bytes(hang_limit), "zero");
      EXPECT_EQ(a.first.recv_bytes(hang_limit), "one");
      ASSERT_TRUE(p.join(hang_limit));
      EXPECT_EQ(p.exitcode(), 0);
    }
  }
}

TEST(ChildSpawn, ReapChildReportsStillRunningThenTheCode) {
  keel::detail::ChildHandle h =
      keel::detail::spawn_child({.role = "keel-test-sleep", .fds = {}, .daemon = true, .payload = "30"});
  ASSERT_GT(h.pid, 0);
  EXPECT_GE(h.pidfd, 0) << "pidfd_open needs Linux 5.3";
  EXPECT_EQ(keel::detail::reap_child(h, false), keel::detail::still_running);
  EXPECT_TRUE(keel::detail::wait_fd(h.pidfd, POLLIN, keel::platform::Deadline::after(hang_limit)));
  EXPECT_EQ(keel::detail::reap_child(h, false), 30);
  EXPECT_EQ(h.pid, -1);
  EXPECT_EQ(h.pidfd, -1);
  EXPECT_THROW(keel::detail::reap_child(h, true), keel::OsError);
}

}  // namespace
