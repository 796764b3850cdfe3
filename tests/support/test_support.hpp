// Helpers shared by keel's tests: iteration scaling, "wait until that thread is
// asleep in a futex", bounded polling, a joining thread group, a forked child
// whose exit code is the result, and a RapidCheck runner with per-property test
// counts. Helpers for tests across processes are in process_support.hpp.
//
// Timing rules every test follows: timeouts are short (10-50 ms), only lower
// bounds on elapsed time are asserted, and every wait that could hang on a bug
// has a generous bound (hang_limit) after which the test fails instead.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEL_TEST_SANITIZED 1
#endif
#endif
#if !defined(KEEL_TEST_SANITIZED) && (defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__))
#define KEEL_TEST_SANITIZED 1
#endif
#if !defined(KEEL_TEST_SANITIZED)
#define KEEL_TEST_SANITIZED 0
#endif

// ThreadSanitizer alone: it reports some misuse (a pthread mutex unlocked by a
// non-owner) before the call returns its error, and cannot start threads in a
// child forked from a multi-threaded process; tests of those skip under it.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_TEST_TSAN 1
#endif
#endif
#if !defined(KEEL_TEST_TSAN) && defined(__SANITIZE_THREAD__)
#define KEEL_TEST_TSAN 1
#endif
#if !defined(KEEL_TEST_TSAN)
#define KEEL_TEST_TSAN 0
#endif

namespace keel_test {

using namespace std::chrono_literals;

// The longest any test waits for something that must happen; reaching it is a
// failure (a hang), never a timing assertion.
inline constexpr std::chrono::seconds hang_limit{20};

// Stress and property sizes scale with KEEL_TEST_SCALE (a positive number,
// default 1); sanitizer builds halve it.
inline double scale() {
  static const double s = [] {
    double v = 1.0;
    if (const char* e = std::getenv("KEEL_TEST_SCALE")) {
      const double parsed = std::atof(e);
      if (parsed > 0) v = parsed;
    }
    return KEEL_TEST_SANITIZED ? v / 2 : v;
  }();
  return s;
}

// Joins the child process `p` within `limit`, or kills and reaps it.
// Returns whether it ended. The default is within the mutation tool's
// per-test limit (60 s), so a child that never ends fails its test by name
// rather than as a watchdog timeout.
template <class Process>
bool joined_within(Process& p, std::chrono::milliseconds limit = hang_limit * 2) {
  if (p.join(limit)) return true;
  p.kill();
  p.join();
  return false;
}

// n scaled, at least `floor`.
inline int scaled(int n, int floor = 1) { return std::max(floor, static_cast<int>(n * scale())); }

inline pid_t this_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

// Polls pred every millisecond until it holds or `limit` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = hang_limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Reads the thread's current system call from /proc: the syscall number and
// its first argument, or nothing when the thread runs or /proc cannot tell.
struct SyscallState {
  bool known = false;    // /proc answered
  bool blocked = false;  // in a system call
  long number = -1;
  unsigned long long arg0 = 0;
};

inline SyscallState syscall_state(pid_t tid) {
  SyscallState st;
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/syscall");
  std::string first;
  if (!f || !(f >> first)) return st;
  st.known = true;
  if (first == "running" || first.empty() || !std::isdigit(static_cast<unsigned char>(first[0]))) return st;
  st.blocked = true;
  st.number = std::strtol(first.c_str(), nullptr, 10);
  std::string a0;
  if (f >> a0) st.arg0 = std::strtoull(a0.c_str(), nullptr, 16);
  return st;
}

// Waits until thread `tid` sleeps in a futex wait (on `word`, when given),
// seen twice in a row 2 ms apart. Where /proc cannot say, it falls back to a
// 50 ms sleep and returns false ("not confirmed"); a confirmed block returns
// true. A thread that never blocks fails the calling test after hang_limit.
inline bool wait_blocked_in_futex(pid_t tid, const void* word = nullptr) {
  const auto end = std::chrono::steady_clock::now() + hang_limit;
  int seen = 0;
  for (;;) {
    const SyscallState st = syscall_state(tid);
    if (!st.known) {
      std::this_thread::sleep_for(50ms);
      return false;
    }
    const bool match =
        st.blocked && st.number == SYS_futex && (word == nullptr || st.arg0 == reinterpret_cast<std::uintptr_t>(word));
    seen = match ? seen + 1 : 0;
    if (seen >= 2) return true;
    if (std::chrono::steady_clock::now() >= end) {
      ADD_FAILURE() << "thread " << tid << " never blocked in a futex wait";
      return false;
    }
    std::this_thread::sleep_for(2ms);
  }
}

// Starts a thread that records its kernel thread id before running fn, and
// returns once that id is known, so the caller can watch it block.
class TidThread {
 public:
  TidThread() = default;
  template <class F>
  explicit TidThread(F fn) {
    start(std::move(fn));
  }
  template <class F>
  void start(F fn) {
    t_ = std::thread([this, fn = std::move(fn)]() mutable {
      tid_.store(this_tid());
      fn();
    });
    while (tid_.load() == 0) std::this_thread::yield();
  }
  TidThread(const TidThread&) = delete;
  TidThread& operator=(const TidThread&) = delete;
  ~TidThread() { join(); }
  pid_t tid() const { return tid_.load(); }
  // Waits until the thread sleeps in a futex (see wait_blocked_in_futex).
  bool wait_blocked(const void* word = nullptr) const { return wait_blocked_in_futex(tid(), word); }
  void join() {
    if (t_.joinable()) t_.join();
  }

 private:
  std::atomic<pid_t> tid_{0};
  std::thread t_;
};

// A group of threads joined on destruction (also when a test assertion fails).
class Threads {
 public:
  Threads() = default;
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;
  ~Threads() { join(); }
  template <class F>
  void spawn(F&& f) {
    ts_.emplace_back(std::forward<F>(f));
  }
  void join() {
    for (auto& t : ts_) {
      if (t.joinable()) t.join();
    }
    ts_.clear();
  }
  std::size_t size() const { return ts_.size(); }

 private:
  std::vector<std::thread> ts_;
};

// Forks a child that runs fn and leaves with _exit(fn's return value), 101 when
// fn throws: no gtest, destructors or atexit handlers run in the child.
// Buffered output is flushed first so the child cannot repeat it. Returns the
// child's pid, or -1 when fork fails.
template <class F>
pid_t fork_child(F fn) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 100;
    try {
      code = fn();
    } catch (...) {
      code = 101;
    }
    ::_exit(code);
  }
  return pid;
}

// A wait status as exit_code_in_child reports it: the exit code, 128 + the
// signal that ended the child, or -1.
inline int child_exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Runs fn in a forked child and returns its exit code (fn's return value), or
// 128 + the signal that ended it. For checks that may hit undefined behaviour
// in kernel code: under UBSan the child aborts and the calling test fails,
// instead of the whole test binary. fn must not start threads.
template <class F>
int exit_code_in_child(F fn) {
  const pid_t pid = fork_child(std::move(fn));
  if (pid < 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return child_exit_code(status);
}

// What a bounded child run ended with (see exit_code_in_child_within).
inline constexpr int child_did_not_end = -2;

// exit_code_in_child with a bound: a child still running after `limit` is
// SIGKILLed and reaped, and the result is child_did_not_end. For kernel calls
// that a bug could make crash or never return (a draw from getrandom that
// loops, a read past a vector): either one then fails the calling test by
// name, where the test binary would crash or hang the suite until the
// watchdog ends it. fn must not start threads.
template <class F>
int exit_code_in_child_within(std::chrono::milliseconds limit, F fn) {
  const pid_t pid = fork_child(std::move(fn));
  if (pid < 0) return -1;
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return child_exit_code(status);
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= end) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return child_did_not_end;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// A bounded child run's result in words, for a failure message.
inline std::string child_outcome(int code) {
  if (code == child_did_not_end) return "did not end in time (killed)";
  if (code > 128) return "was killed by signal " + std::to_string(code - 128);
  return "exited with " + std::to_string(code);
}

// fork() copies only the calling thread. Two threads run `busy` again and
// again (it takes some process-wide lock of keel's) while this one forks
// `rounds` times; each child runs `in_child`, which takes the same lock and
// must return 0 within two seconds. A lock that is not held across fork()
// shows up as a hung child: it inherited the lock held by a thread it lacks.
// Returns how many children hung (it stops at the first); other failures of a
// child fail the calling test.
template <class Busy, class Child>
int children_hung_while_forking(Busy busy, Child in_child, int rounds) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy_threads;
  for (int i = 0; i < 2; ++i) {
    busy_threads.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) busy();
    });
  }
  int hung = 0;
  for (int i = 0; i < rounds && hung == 0; ++i) {
    const int code = exit_code_in_child_within(std::chrono::milliseconds(2000), in_child);
    if (code == child_did_not_end) {
      ++hung;
    } else {
      EXPECT_EQ(code, 0) << "a forked child " << child_outcome(code);
    }
  }
  stop = true;
  for (auto& t : busy_threads) t.join();
  return hung;
}

// Elapsed time since construction.
class Stopwatch {
 public:
  std::chrono::nanoseconds elapsed() const { return std::chrono::steady_clock::now() - start_; }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Runs a RapidCheck property with its own test count and size cap (scaled by
// KEEL_TEST_SCALE), keeping the RC_PARAMS seed so failures reproduce. Returns
// whether it passed; the caller EXPECT_TRUEs it.
template <class Property>
bool rc_check(const std::string& name, int max_success, int max_size, Property&& property) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = scaled(max_success, 5);
  params.maxSize = max_size;
  rc::detail::TestMetadata meta;
  meta.id = name;
  meta.description = name;
  std::cerr << "- " << name << "\n";
  const auto result = rc::detail::checkTestable(std::forward<Property>(property), meta, params);
  rc::detail::printResultMessage(result, std::cerr);
  std::cerr << "\n";
  return result.template is<rc::detail::SuccessResult>();
}

// A child process of this one, as /proc/<pid>/stat shows it.
struct ChildProcess {
  pid_t pid;
  char state;
  std::string comm;
};

// Children the test runner had before the first test: under TSan, the
// sanitizer's own symbolizer (tests/main.cpp starts it), which no test
// started, none may kill, and none counts as its own.
inline std::vector<pid_t>& runner_children() {
  static std::vector<pid_t> pids;
  return pids;
}

// Every process whose parent is this one, zombies included, except the
// runner's (from /proc/<pid>/stat: "pid (comm) state ppid ...", where comm may
// itself hold spaces and parentheses).
inline std::vector<ChildProcess> child_processes() {
  std::vector<ChildProcess> out;
  const long self = static_cast<long>(::getpid());
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!f || !std::getline(f, line)) continue;  // it ended meanwhile
    const auto open = line.find('(');
    const auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = '?';
    long ppid = -1;
    if (!(rest >> state >> ppid) || ppid != self) continue;
    const auto pid = static_cast<pid_t>(std::atol(e->d_name));
    const std::vector<pid_t>& runner = runner_children();
    if (std::find(runner.begin(), runner.end(), pid) != runner.end()) continue;
    out.push_back(ChildProcess{pid, state, line.substr(open + 1, close - open - 1)});
  }
  ::closedir(d);
  return out;
}

// Reaps every child that has ended; true when none but the runner's is left.
inline bool no_children_left() {
  int st = 0;
  while (::waitpid(-1, &st, WNOHANG) > 0) {
  }
  return child_processes().empty();
}

}  // namespace keel_test
