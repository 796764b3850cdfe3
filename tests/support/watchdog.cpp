// See watchdog.hpp. The dump runs on the watchdog thread: each other thread is
// asked for its own backtrace with a signal (a thread cannot walk another's
// stack), and the watchdog symbolizes the addresses with addr2line afterwards,
// outside any signal handler.
#include "tests/support/watchdog.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace keel::test {
namespace {

constexpr int max_frames = 48;

// The one thread being asked for its stack, and its answer. Written by the
// handler of that thread only while `asked` names it.
std::atomic<pid_t> asked{0};
std::atomic<int> answered_frames{-1};
void* frames[max_frames];

pid_t thread_id() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

void on_dump_signal(int) {
  const int saved = errno;
  if (asked.load() == thread_id()) answered_frames.store(::backtrace(frames, max_frames));
  errno = saved;
}

int dump_signal() { return SIGRTMIN + 5; }

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// "function at file:line" for each address (return addresses step back one
// byte so the line is the call's), through addr2line on the object that holds it.
void print_frames(void* const* addrs, int n) {
  for (int i = 0; i < n; ++i) {
    auto pc = reinterpret_cast<std::uintptr_t>(addrs[i]);
    if (i > 0) --pc;
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_fname == nullptr) {
      std::fprintf(stderr, "    #%-2d 0x%zx\n", i, static_cast<std::size_t>(pc));
      continue;
    }
    const auto offset = pc - reinterpret_cast<std::uintptr_t>(info.dli_fbase);
    std::string where;
    const std::string cmd = "addr2line -C -f -p -e '" + std::string(info.dli_fname) + "' 0x" + [&] {
      char hex[32];
      std::snprintf(hex, sizeof hex, "%zx", static_cast<std::size_t>(offset));
      return std::string(hex);
    }() + " 2>/dev/null";
    if (std::strchr(info.dli_fname, '\'') == nullptr) {
      if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[1024];
        while (std::fgets(buf, sizeof buf, p) != nullptr) where += buf;
        ::pclose(p);
      }
    }
    while (!where.empty() && (where.back() == '\n' || where.back() == ' ')) where.pop_back();
    if (where.empty() || where.rfind("??", 0) == 0) {
      where = std::string(info.dli_sname != nullptr ? info.dli_sname : "?") + " in " + info.dli_fname;
    }
    std::fprintf(stderr, "    #%-2d %s\n", i, where.c_str());
  }
}

void dump_threads() {
  const pid_t self = thread_id();
  std::vector<pid_t> tids;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] >= '0' && e->d_name[0] <= '9') tids.push_back(static_cast<pid_t>(std::atol(e->d_name)));
    }
    ::closedir(d);
  }
  for (const pid_t tid : tids) {
    if (tid == self) continue;
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    const std::string stat = read_first_line(task + "/stat");
    const auto close = stat.rfind(')');
    const char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
    std::fprintf(stderr, "  thread %d (%s), state %c, syscall %s\n", tid, read_first_line(task + "/comm").c_str(),
                 state, read_first_line(task + "/syscall").c_str());
    answered_frames.store(-1);
    asked.store(tid);
    if (::syscall(SYS_tgkill, ::getpid(), tid, dump_signal()) != 0) {
      std::fprintf(stderr, "    (ended meanwhile)\n");
      continue;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (answered_frames.load() < 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const int n = answered_frames.load();
    asked.store(0);
    if (n < 0) {
      std::fprintf(stderr, "    (no backtrace: the thread blocks signals or cannot take one now)\n");
    } else {
      print_frames(frames, n);
    }
  }
}

// The watchdog's state and thread. Never destroyed: the thread waits on cv_
// until the process ends, and destroying a condition variable with a waiter
// blocks in glibc, so an exit that ran the destructor would hang.
class Watchdog {
 public:
  explicit Watchdog(int limit_seconds) : limit_(limit_seconds) {
    std::thread([this] { run(); }).detach();
  }

  void start(const ::testing::TestInfo& t) {
    const std::lock_guard<std::mutex> lock(m_);
    name_ = std::string(t.test_suite_name()) + "." + t.name();
    deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(limit_);
    armed_ = true;
    cv_.notify_one();
  }

  void end() {
    const std::lock_guard<std::mutex> lock(m_);
    armed_ = false;
    cv_.notify_one();
  }

 private:
  [[noreturn]] void run() {
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      if (cv_.wait_until(lock, deadline_) == std::cv_status::no_timeout || !armed_ ||
          std::chrono::steady_clock::now() < deadline_) {
        continue;
      }
      std::fflush(stdout);
      std::fprintf(stderr, "\n[  TIMEOUT ] %s did not end within %d s (KEEL_TEST_TIMEOUT); its threads:\n",
                   name_.c_str(), limit_);
      dump_threads();
      std::fprintf(stderr, "[  FAILED  ] %s (timed out)\n", name_.c_str());
      std::fflush(stderr);
      std::_Exit(timeout_status);
    }
  }

  const int limit_;
  std::mutex m_;
  std::condition_variable cv_;
  std::string name_;
  std::chrono::steady_clock::time_point deadline_{};
  bool armed_ = false;
};

// What GoogleTest owns (and deletes at exit): forwards to the immortal state.
class Listener : public ::testing::EmptyTestEventListener {
 public:
  explicit Listener(Watchdog* w) : w_(w) {}
  void OnTestStart(const ::testing::TestInfo& t) override { w_->start(t); }
  void OnTestEnd(const ::testing::TestInfo&) override { w_->end(); }

 private:
  Watchdog* w_;
};

}  // namespace

::testing::TestEventListener* install_watchdog() {
  int limit = default_limit_seconds;
  if (const char* text = std::getenv("KEEL_TEST_TIMEOUT")) {  // NOLINT(concurrency-mt-unsafe): before threads
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 7 * 24 * 3600) {
      std::fprintf(stderr, "KEEL_TEST_TIMEOUT=\"%s\": expected a whole number of seconds from 0 (off) to 604800\n",
                   text);
      std::exit(2);
    }
    limit = static_cast<int>(v);
  }
  if (limit == 0) return nullptr;
  // The handler, and backtrace's first use (it may load libgcc), before any
  // test runs: nothing in the dump path should allocate or load lazily.
  struct sigaction sa {};
  sa.sa_handler = on_dump_signal;
  sa.sa_flags = SA_RESTART;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(dump_signal(), &sa, nullptr);
  void* warm[2];
  (void)::backtrace(warm, 2);
  // Reachable from a static, so LeakSanitizer does not report it.
  static Watchdog* const state = new Watchdog(limit);
  return new Listener(state);
}

}  // namespace keel::test
