// See watchdog.hpp. The dump runs on the watchdog thread: each other thread is
// asked for its own backtrace with a signal (a thread cannot walk another's
// stack), and the watchdog symbolizes the addresses afterwards (llvm-symbolizer,
// or addr2line), outside any signal handler.
#include "tests/support/watchdog.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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

// One frame of a dumped thread: where it is, once symbolized.
struct Frame {
  std::uintptr_t pc = 0;
  std::string object;         // the file that holds pc, "" if dladdr knew none
  std::uintptr_t offset = 0;  // pc's offset in that object
  std::string where;          // "function at file:line", or the fallback
};

// One dumped thread: the header line, then its frames (or why it has none).
struct Dumped {
  std::string header;
  std::string no_frames;
  std::vector<Frame> frames;
};

// The symbolizer: llvm-symbolizer where it is installed (it reads only the
// line tables of the units the addresses fall in: half a second on the
// 200 MB ASan test binary, where GNU addr2line parses them all and took 55 s,
// most of the watchdog test's time under the sanitizers), else addr2line.
// Both print "function at file:line", one line per address (no inlined frames).
std::string symbolizer_command(const std::string& object) {
  static const char* const found = [] {
    for (const char* candidate : {"/usr/bin/llvm-symbolizer-14", "/usr/bin/llvm-symbolizer"}) {
      if (::access(candidate, X_OK) == 0) return candidate;
    }
    return static_cast<const char*>(nullptr);
  }();
  if (found != nullptr) return std::string(found) + " --output-style=GNU --no-inlines -C -f -p --obj='" + object + "'";
  return "addr2line -C -f -p -e '" + object + "'";
}

// Fills each frame's `where` with one symbolizer call per object file, all of
// that object's addresses in one call: the symbolizer reads the object's line
// tables once per call, and on a sanitizer build one call per frame made the
// dump of a hung test take minutes.
void symbolize(std::vector<Dumped>& threads) {
  std::vector<std::string> objects;
  for (const Dumped& t : threads) {
    for (const Frame& f : t.frames) {
      if (!f.object.empty() && std::find(objects.begin(), objects.end(), f.object) == objects.end()) {
        objects.push_back(f.object);
      }
    }
  }
  for (const std::string& object : objects) {
    if (object.find('\'') != std::string::npos) continue;
    std::vector<Frame*> asked_for;
    std::string cmd = symbolizer_command(object);
    for (Dumped& t : threads) {
      for (Frame& f : t.frames) {
        if (f.object != object) continue;
        char hex[32];
        std::snprintf(hex, sizeof hex, " 0x%zx", static_cast<std::size_t>(f.offset));
        cmd += hex;
        asked_for.push_back(&f);
      }
    }
    cmd += " 2>/dev/null";
    // One line per address, in order.
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      std::size_t next = 0;
      std::string line;
      char buf[1024];
      while (std::fgets(buf, sizeof buf, p) != nullptr) {
        line += buf;
        if (line.back() != '\n') continue;
        line.pop_back();
        if (next < asked_for.size() && !line.empty() && line.rfind("??", 0) != 0) asked_for[next]->where = line;
        ++next;
        line.clear();
      }
      ::pclose(p);
    }
  }
}

// "function at file:line" for each address (return addresses step back one
// byte so the line is the call's), through the symbolizer on the object that holds it.
std::vector<Frame> frames_of(void* const* addrs, int n) {
  std::vector<Frame> out;
  for (int i = 0; i < n; ++i) {
    Frame f;
    f.pc = reinterpret_cast<std::uintptr_t>(addrs[i]);
    if (i > 0) --f.pc;
    Dl_info info{};
    link_map* map = nullptr;
    if (::dladdr1(reinterpret_cast<void*>(f.pc), &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) != 0 &&
        info.dli_fname != nullptr) {
      f.object = info.dli_fname;
      // The symbolizer reads addresses as the object's file has them: less
      // its load bias (l_addr), which is 0 for a binary linked at a fixed
      // address (the test binary, -no-pie) and its load address otherwise.
      f.offset = f.pc - (map != nullptr ? map->l_addr : reinterpret_cast<std::uintptr_t>(info.dli_fbase));
      f.where = std::string(info.dli_sname != nullptr ? info.dli_sname : "?") + " in " + info.dli_fname;
    }
    out.push_back(std::move(f));
  }
  return out;
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
  std::vector<Dumped> threads;
  for (const pid_t tid : tids) {
    if (tid == self) continue;
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    const std::string stat = read_first_line(task + "/stat");
    const auto close = stat.rfind(')');
    const char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
    Dumped t;
    t.header = "  thread " + std::to_string(tid) + " (" + read_first_line(task + "/comm") + "), state " + state +
               ", syscall " + read_first_line(task + "/syscall");
    answered_frames.store(-1);
    asked.store(tid);
    if (::syscall(SYS_tgkill, ::getpid(), tid, dump_signal()) != 0) {
      t.no_frames = "(ended meanwhile)";
      threads.push_back(std::move(t));
      continue;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (answered_frames.load() < 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const int n = answered_frames.load();
    asked.store(0);
    if (n < 0) {
      t.no_frames = "(no backtrace: the thread blocks signals or cannot take one now)";
    } else {
      t.frames = frames_of(frames, n);
    }
    threads.push_back(std::move(t));
  }
  symbolize(threads);
  for (const Dumped& t : threads) {
    std::fprintf(stderr, "%s\n", t.header.c_str());
    if (!t.no_frames.empty()) std::fprintf(stderr, "    %s\n", t.no_frames.c_str());
    for (std::size_t i = 0; i < t.frames.size(); ++i) {
      const Frame& f = t.frames[i];
      if (f.object.empty()) {
        std::fprintf(stderr, "    #%-2zu 0x%zx\n", i, static_cast<std::size_t>(f.pc));
      } else {
        std::fprintf(stderr, "    #%-2zu %s\n", i, f.where.c_str());
      }
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

namespace {
int installed_limit = 0;  // written once, by install_watchdog before any test
}  // namespace

int watchdog_limit_seconds() { return installed_limit; }

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
  installed_limit = limit;
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
