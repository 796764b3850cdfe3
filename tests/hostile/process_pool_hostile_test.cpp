// The process pool, tried as a careless user and as an attacker would
// (hardening issue, points 5, 7, 8, 9, 10 and 11): absurd worker counts and
// limits too low for the pool, an exception whose what() is null, a task
// that ignores SIGTERM, Ctrl-C sent to the parent's process group, tasks that
// leave children of their own, and a pool that is still working when exit()
// runs the static destructors (LIFE-5, LIFE-6, LIFE-7, SEC-3).
//
// Scenarios that change process-wide state (the process group, signal
// handlers, resource limits) or that end a process run in a child: a fresh
// image started by keel::Process, whose task throws to fail (exit status 1,
// the reason on stderr). Grandchildren are observed by making this process a
// subreaper, so an orphan becomes our child and its death can be waited for.
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <optional>
#include <string>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/process.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/timer.hpp"

namespace {

using namespace std::chrono_literals;
using keel::ProcessPool;
using keel::ProcessPoolOptions;

// ---- tasks (registered in every image of this binary) ----

int hostile_pid() { return static_cast<int>(::getpid()); }

int hostile_sleep(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}

// An exception type whose what() is a null pointer: legal C++, and a worker
// that formatted it died of SIGSEGV.
struct NullWhat : std::exception {
  const char* what() const noexcept override { return nullptr; }
};
int hostile_throw_null_what() { throw NullWhat(); }

// Ignores SIGTERM, then sleeps far longer than any test.
int hostile_ignore_sigterm() {
  ::signal(SIGTERM, SIG_IGN);
  ::sleep(600);
  return 0;
}

// Starts a child of its own that sleeps, and returns its pid.
int hostile_spawn_sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return static_cast<int>(pid);
}

// The same, but the child leaves the worker's group (a new session), as a
// daemonizing program does: out of the group's reach.
int hostile_spawn_escaping_sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    ::execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return static_cast<int>(pid);
}

// Starts a child of its own, writes its pid to `path`, then sleeps past any
// timeout.
int hostile_spawn_sleeper_then_hang(std::string path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fprintf(f, "%d\n", static_cast<int>(pid));
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  }
  ::sleep(600);
  return 0;
}

[[noreturn]] void fail(const std::string& why) { throw std::runtime_error(why); }

// In a child: this process leads its own group and catches SIGINT, as a
// program that shuts down gracefully on Ctrl-C does; a task is running in a
// worker when SIGINT is sent to the whole group. With own_process_group the
// task finishes with its value; without, the worker dies of SIGINT.
void hostile_ctrl_c(bool own_group) {
  if (::setpgid(0, 0) != 0) fail("setpgid failed");
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  ::sigaction(SIGINT, &sa, nullptr);
  ProcessPool pool({.workers = 1, .own_process_group = own_group});
  auto f = pool.submit(keel::TaskRef<int(int)>::lookup("hostile.sleep"), 400);
  if (!keel_test::eventually([&] { return f.running(); })) fail("the task never started");
  ::kill(0, SIGINT);
  try {
    const int v = f.result();
    if (!own_group) fail("the worker survived SIGINT to its group without own_process_group");
    if (v != 400) fail("wrong result " + std::to_string(v));
  } catch (const keel::WorkerLost& e) {
    if (own_group) fail(std::string("Ctrl-C to the parent's group killed a worker: ") + e.what());
    if (e.signal() != SIGINT) fail(std::string("lost, but not to SIGINT: ") + e.what());
  }
}

// In a child: a pool held by a global, still spawning workers (one task per
// child) when main returns and exit() runs the static destructors.
std::optional<ProcessPool> global_pool;  // NOLINT: a global is the point
void hostile_global_pool_at_exit(int tasks) {
  global_pool.emplace(ProcessPoolOptions{.workers = 2, .max_tasks_per_child = 1});
  for (int i = 0; i < tasks; ++i) (void)global_pool->submit(keel::TaskRef<int(int)>::lookup("hostile.sleep"), 1);
}

// In a child: a pool that is never destroyed, busy when exit() runs (held
// by a global pointer, so LeakSanitizer sees it as reachable, not leaked).
ProcessPool* leaked_pool = nullptr;  // NOLINT
void hostile_leaked_pool_at_exit(int tasks) {
  leaked_pool = new ProcessPool({.workers = 2, .max_tasks_per_child = 1});
  for (int i = 0; i < tasks; ++i) (void)leaked_pool->submit(keel::TaskRef<int(int)>::lookup("hostile.sleep"), 1);
  std::exit(0);
}

// In a child: keel's other objects held by globals, busy when exit() runs
// the static destructors: a thread pool with queued work and a callback, a
// started timer, a running daemon child.
std::optional<keel::ThreadPoolExecutor> global_threads;  // NOLINT
std::optional<keel::Timer> global_timer;                 // NOLINT
std::optional<keel::Process> global_child;               // NOLINT
void hostile_globals_at_exit() {
  global_threads.emplace(keel::ThreadPoolOptions{.max_threads = 2});
  for (int i = 0; i < 50; ++i) {
    auto f = global_threads->submit([] { ::usleep(1000); });
    if (i % 10 == 0)
      f.add_done_callback([](const keel::Future<void>&) { throw std::runtime_error("reported at exit"); });
  }
  global_timer.emplace(std::chrono::hours(1), [] {});
  global_timer->start();
  global_child.emplace(keel::ProcessOptions{.daemon = true}, keel::TaskRef<int(int)>::lookup("hostile.sleep"), 60'000);
  global_child->start();
}

// In a child: RLIMIT_NOFILE leaves room for this pool but not for a
// replacement worker's channel: the pool breaks, and says why.
void hostile_spawn_fails_for_lack_of_fds() {
  ProcessPool pool({.workers = 1, .max_tasks_per_child = 1, .restart_limit = 2});
  auto pid = keel::TaskRef<int()>::lookup("hostile.pid");
  (void)pool.submit(pid).result();
  // Room for what is open now and one more: a new worker's channel (a
  // socketpair, two fds) cannot be made. (Not below what is open: poll()
  // refuses more fds than RLIMIT_NOFILE.)
  std::size_t open_now = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) open_now += e->d_name[0] != '.';
    ::closedir(d);
  }
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = open_now;  // the directory stream counted above is closed again: one free
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) fail("setrlimit failed");
  try {
    (void)pool.submit(pid).result();
    (void)pool.submit(pid).result();
    fail("the pool kept working without fds");
  } catch (const keel::BrokenProcessPool& e) {
    const std::string m = e.what();
    if (m.find("could not be started") == std::string::npos || m.find("Too many open files") == std::string::npos) {
      fail("the break does not say why: " + m);
    }
  }
}

// In a child: RLIMIT_NOFILE drops below the fds the supervisor polls, so
// poll() itself fails (EINVAL). The pool breaks and says why; the process
// neither aborts nor hangs, and the destructor still reaps every worker.
void hostile_supervisor_cannot_poll() {
  ProcessPool pool({.workers = 2});
  auto pid = keel::TaskRef<int()>::lookup("hostile.pid");
  (void)pool.submit(pid).result();
  auto slow = pool.submit(keel::TaskRef<int(int)>::lookup("hostile.sleep"), 200);
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = 3;  // poll() refuses more fds than this
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) fail("setrlimit failed");
  // Wakes the supervisor (a submission rings its eventfd; no new fd needed).
  try {
    (void)pool.submit(pid).result();
  } catch (const keel::BrokenProcessPool&) {
  }
  try {
    (void)slow.result();
    fail("the pool kept working without poll");
  } catch (const keel::BrokenProcessPool& e) {
    const std::string m = e.what();
    if (m.find("supervisor could not go on") == std::string::npos || m.find("poll") == std::string::npos) {
      fail("the break does not say why: " + m);
    }
  }
  try {
    (void)pool.submit(pid);
    fail("a broken pool accepted a task");
  } catch (const keel::BrokenProcessPool&) {
  }
}

const auto pid_t_ = keel::register_task("hostile.pid", hostile_pid);
const auto sleep_t = keel::register_task("hostile.sleep", hostile_sleep);
const auto null_what_t = keel::register_task("hostile.throw_null_what", hostile_throw_null_what);
const auto ignore_term_t = keel::register_task("hostile.ignore_sigterm", hostile_ignore_sigterm);
const auto sleeper_t = keel::register_task("hostile.spawn_sleeper", hostile_spawn_sleeper);
const auto escaping_t = keel::register_task("hostile.spawn_escaping_sleeper", hostile_spawn_escaping_sleeper);
const auto sleeper_hang_t = keel::register_task("hostile.spawn_sleeper_then_hang", hostile_spawn_sleeper_then_hang);
const auto ctrl_c_t = keel::register_task("hostile.ctrl_c", hostile_ctrl_c);
const auto global_pool_t = keel::register_task("hostile.global_pool_at_exit", hostile_global_pool_at_exit);
const auto leaked_pool_t = keel::register_task("hostile.leaked_pool_at_exit", hostile_leaked_pool_at_exit);
const auto cannot_poll_t = keel::register_task("hostile.supervisor_cannot_poll", hostile_supervisor_cannot_poll);
const auto globals_t = keel::register_task("hostile.globals_at_exit", hostile_globals_at_exit);
const auto no_fds_t = keel::register_task("hostile.spawn_fails_for_lack_of_fds", hostile_spawn_fails_for_lack_of_fds);

// Runs a registered task in a fresh image and returns its exit code (0: it
// returned; 1: it threw, its reason on stderr).
template <class R, class... P, class... A>
int run_in_child(const keel::TaskRef<R(P...)>& task, A&&... args) {
  keel::Process p(task, std::forward<A>(args)...);
  p.start();
  if (!p.join(keel_test::hang_limit * 3)) {
    p.kill();
    p.join();
    return -1000;
  }
  return p.exitcode().value_or(-2000);
}

// This process adopts orphans while it lives, so a grandchild killed after
// its worker died can be waited for here (and one that was not is killed and
// reaped at the end, so no test leaves a process behind).
class Subreaper {
 public:
  Subreaper() { EXPECT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }
  ~Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  Subreaper(const Subreaper&) = delete;
  Subreaper& operator=(const Subreaper&) = delete;

  // True once `pid` has died and was reaped here, within the hang limit.
  static bool died(int pid) {
    return keel_test::eventually([pid] {
      int st = 0;
      const pid_t r = ::waitpid(pid, &st, WNOHANG);
      return r == pid || (r < 0 && errno == ECHILD && ::kill(pid, 0) != 0);
    });
  }
  // Cleanup of one that was expected to survive.
  static void kill_and_reap(int pid) {
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
  }
};

// ---- point 10: worker counts and limits ----

TEST(HostileProcessPoolLimits, WorkerCountsAboveTheMaximumAreAValueError) {
  for (unsigned n : {keel::max_pool_workers + 1, 100'000u, UINT_MAX}) {
    try {
      ProcessPool pool({.workers = n});
      ADD_FAILURE() << n << " workers were accepted";
    } catch (const keel::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(keel::max_pool_workers)), std::string::npos) << e.what();
    }
  }
}

TEST(HostileProcessPoolLimits, AFileLimitTooLowForThePoolIsAnOsErrorNamingIt) {
  const int code = keel_test::exit_code_in_child([] {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 3;
    try {
      ProcessPool pool({.workers = 100});
      return 1;
    } catch (const keel::OsError& e) {
      const std::string m = e.what();
      return e.code() == EMFILE && m.find("RLIMIT_NOFILE") != std::string::npos ? 0 : 2;
    }
  });
  EXPECT_EQ(code, 0) << "1: accepted; 2: another error or message";
}

// UBSan's vptr check probes memory through a pipe: in a process with no fd
// left it reports every virtual call as an invalid vptr. The plain builds
// run these two.
#if KEEL_TEST_SANITIZED
#define SKIP_WITHOUT_FDS_UNDER_SANITIZERS() \
  GTEST_SKIP() << "a sanitizer needs free fds of its own (UBSan's vptr probe opens a pipe); the g++ build runs this"
#else
#define SKIP_WITHOUT_FDS_UNDER_SANITIZERS() (void)0
#endif

TEST(HostileProcessPoolLimits, AWorkerThatCannotBeStartedBreaksThePoolWithTheReason) {
  SKIP_WITHOUT_FDS_UNDER_SANITIZERS();
  EXPECT_EQ(run_in_child(no_fds_t), 0);
}

TEST(HostileProcessPoolLimits, ASupervisorThatCannotPollBreaksThePoolInsteadOfAbortingTheProcess) {
  SKIP_WITHOUT_FDS_UNDER_SANITIZERS();
  EXPECT_EQ(run_in_child(cannot_poll_t), 0);
}

// One rule for timeouts (point 13): in a pool with a task_timeout, one task
// runs without any with SubmitOptions{.timeout = nanoseconds::max()}, and a
// task sent behind it is not held back as behind a timed one.
TEST(HostileTimeout, ProcessPoolMaxSubmitTimeoutIsForEverInAPoolWithATaskTimeout) {
  ProcessPool pool({.workers = 1, .task_timeout = 50ms});
  auto slow = pool.submit(keel::SubmitOptions{.timeout = std::chrono::nanoseconds::max()}, sleep_t, 300);
  auto timed = pool.submit(sleep_t, 500);
  EXPECT_EQ(slow.result(), 300);
  EXPECT_THROW((void)timed.result(), keel::TimeoutError);
}

// ---- point 11: what() == nullptr ----

TEST(HostileProcessPoolExceptions, AnExceptionWhoseWhatIsNullComesBackAsARemoteError) {
  ProcessPool pool({.workers = 1});
  try {
    (void)pool.submit(null_what_t).result();
    ADD_FAILURE() << "no exception";
  } catch (const keel::RemoteError& e) {
    EXPECT_NE(e.type().find("NullWhat"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("null"), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a RemoteError: " << e.what();
  }
  // The worker survived it.
  EXPECT_EQ(pool.stats().deaths, 0u);
  EXPECT_EQ(pool.submit(sleep_t, 1).result(), 1);
}

// ---- point 7: terminate_workers always returns ----

TEST(HostileProcessPoolStop, TerminateWorkersEscalatesToSigkillWhenATaskIgnoresSigterm) {
  ProcessPool pool({.workers = 1, .terminate_grace = 100ms});
  auto f = pool.submit(ignore_term_t);
  ASSERT_TRUE(keel_test::eventually([&] { return f.running(); }));
  ::usleep(20'000);  // let it install SIG_IGN (it did not start before the notice, but may not have run it yet)
  keel::Event done;
  std::thread t([&] {
    pool.terminate_workers();
    done.set();
  });
  const bool returned = done.wait_for(keel_test::hang_limit);
  if (!returned) pool.kill_workers();  // unblocks the thread so the test can fail instead of hang
  t.join();
  ASSERT_TRUE(returned) << "terminate_workers did not return with a task ignoring SIGTERM";
  try {
    (void)f.result();
    ADD_FAILURE() << "the task finished";
  } catch (const keel::WorkerLost& e) {
    EXPECT_EQ(e.signal(), SIGKILL) << e.what();
  }
}

TEST(HostileProcessPoolStop, ANonPositiveGraceKillsAtOnce) {
  ProcessPool pool({.workers = 1, .terminate_grace = -1s});
  auto f = pool.submit(ignore_term_t);
  ASSERT_TRUE(keel_test::eventually([&] { return f.running(); }));
  ::usleep(20'000);
  pool.terminate_workers();
  EXPECT_THROW((void)f.result(), keel::WorkerLost);
}

// ---- point 8: Ctrl-C to the parent's group ----

TEST(HostileProcessPoolSignals, CtrlCToTheParentsGroupDoesNotReachTheWorkers) {
  EXPECT_EQ(run_in_child(ctrl_c_t, true), 0);
}

TEST(HostileProcessPoolSignals, WithoutOwnProcessGroupCtrlCKillsTheWorkersAsBefore) {
  EXPECT_EQ(run_in_child(ctrl_c_t, false), 0);
}

// ---- point 9: a worker's descendants go with it ----

TEST(HostileProcessPoolDescendants, AWorkersChildDiesWhenThePoolShutsDown) {
  Subreaper reaper;
  int grandchild = -1;
  {
    ProcessPool pool({.workers = 1});
    grandchild = pool.submit(sleeper_t).result();
    ASSERT_GT(grandchild, 0);
    EXPECT_EQ(::kill(grandchild, 0), 0) << "the task's child is not running";
  }
  EXPECT_TRUE(Subreaper::died(grandchild)) << "the task's child outlived the pool";
  Subreaper::kill_and_reap(grandchild);
}

// The pid a task wrote to `path` (renamed into place whole), or -1.
int pid_in(const std::string& path) {
  int pid = -1;
  if (FILE* in = std::fopen(path.c_str(), "r")) {
    if (std::fscanf(in, "%d", &pid) != 1) pid = -1;
    std::fclose(in);
  }
  return pid;
}

// Runs `task` (which starts a child and returns its pid) on a pool of one
// worker, lets the pool end, and says whether that child is still running.
// It is this process's child by then (an orphan of the worker, adopted by
// the subreaper), so a zombie counts as dead: kill(pid, 0) alone would not
// tell. The child is killed and reaped either way.
bool child_outlives_the_pool(ProcessPoolOptions options, const keel::TaskRef<int()>& task) {
  Subreaper reaper;
  int pid = -1;
  {
    ProcessPool pool(options);
    pid = pool.submit(task).result();
  }
  if (pid <= 0) {
    ADD_FAILURE() << "the task started no child";
    return false;
  }
  ::usleep(50'000);
  int st = 0;
  const bool running = ::waitpid(pid, &st, WNOHANG) == 0;
  if (running) Subreaper::kill_and_reap(pid);
  return running;
}

// The documented limit: a descendant that left the worker's group (setsid)
// is beyond the group kill and outlives the pool.
TEST(HostileProcessPoolDescendants, AChildThatLeftTheWorkersGroupOutlivesThePool) {
  EXPECT_TRUE(child_outlives_the_pool({.workers = 1}, escaping_t));
}

// The documented old way: nobody kills it.
TEST(HostileProcessPoolDescendants, WithoutOwnProcessGroupAWorkersChildOutlivesThePool) {
  EXPECT_TRUE(child_outlives_the_pool({.workers = 1, .own_process_group = false}, sleeper_t));
}

TEST(HostileProcessPoolDescendants, ATimedOutTasksChildDiesWithItsWorker) {
  Subreaper reaper;
  const std::string path = "/tmp/keel-hostile-grandchild-" + std::to_string(::getpid());
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(keel::SubmitOptions{.timeout = 300ms}, sleeper_hang_t, path);
  EXPECT_THROW((void)f.result(), keel::TimeoutError);
  int grandchild = -1;
  ASSERT_TRUE(keel_test::eventually([&] {
    grandchild = pid_in(path);
    return grandchild > 0;
  }));
  std::remove(path.c_str());
  EXPECT_TRUE(Subreaper::died(grandchild)) << "the timed-out task's child outlived its killed worker";
  Subreaper::kill_and_reap(grandchild);
}

// The pool's process is killed: each worker's lifeline watcher takes its
// group (its descendants) with it.
void hostile_die_with_a_grandchild(std::string path) {
  ProcessPool pool({.workers = 1});
  (void)pool.submit(keel::TaskRef<int(std::string)>::lookup("hostile.spawn_sleeper_then_hang"), path);
  for (;;) ::pause();  // killed by the test
}
const auto die_with_t = keel::register_task("hostile.die_with_a_grandchild", hostile_die_with_a_grandchild);

TEST(HostileProcessPoolDescendants, AWorkersChildDiesWhenThePoolsProcessIsKilled) {
  Subreaper reaper;
  const std::string path = "/tmp/keel-hostile-orphan-" + std::to_string(::getpid());
  keel::Process middle(die_with_t, path);
  middle.start();
  int grandchild = -1;
  const bool seen = keel_test::eventually([&] {
    grandchild = pid_in(path);
    return grandchild > 0;
  });
  middle.kill();
  middle.join();
  std::remove(path.c_str());
  ASSERT_TRUE(seen);
  EXPECT_TRUE(Subreaper::died(grandchild)) << "a worker's child outlived the killed pool process";
  Subreaper::kill_and_reap(grandchild);
  // The orphaned worker itself is ours now too: reap it once it is gone.
  EXPECT_TRUE(keel_test::eventually(keel_test::no_children_left));
}

// ---- point 5: pools alive at exit() ----

TEST(HostileProcessPoolExit, APoolHeldByAGlobalIsSafeWhileExitRunsTheDestructors) {
  EXPECT_EQ(run_in_child(global_pool_t, 20), 0);
}

TEST(HostileProcessPoolExit, APoolNeverDestroyedIsSafeWhenExitIsCalled) {
  EXPECT_EQ(run_in_child(leaked_pool_t, 20), 0);
}

TEST(HostileProcessPoolExit, KeelObjectsHeldByGlobalsAreSafeWhileExitRunsTheDestructors) {
  EXPECT_EQ(run_in_child(globals_t), 0);
}

}  // namespace
