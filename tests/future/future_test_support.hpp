// Helpers for the future, wait and executor tests: a gate that blocked tasks
// wait on (bounded by hang_limit), a capture for the error reporter, typed
// checks for keel's errors, and the OS name of the calling thread.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/future.hpp"

namespace keel_future_test {

// A one-shot gate. wait() returns true once open() was called; a gate that
// never opens fails the test after hang_limit instead of hanging it.
// Declare the gate before the pool whose tasks wait on it, and the guard that
// open_at_exit() returns after the pool: the gate then opens before the pool's
// destructor waits for those tasks, also when an assertion ends the test early.
class Gate {
 public:
  Gate() = default;
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void open() {
    {
      std::lock_guard<std::mutex> l(m_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool is_open() const {
    std::lock_guard<std::mutex> l(m_);
    return open_;
  }
  bool wait() const {
    std::unique_lock<std::mutex> l(m_);
    if (!cv_.wait_for(l, keel_test::hang_limit, [&] { return open_; })) {
      ADD_FAILURE() << "a gate was never opened";
      return false;
    }
    return true;
  }

  class Opener {
   public:
    explicit Opener(Gate& g) : g_(&g) {}
    Opener(const Opener&) = delete;
    Opener& operator=(const Opener&) = delete;
    ~Opener() { g_->open(); }

   private:
    Gate* g_;
  };
  [[nodiscard]] Opener open_at_exit() { return Opener(*this); }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool open_ = false;
};

// The message of an exception (or a placeholder).
inline std::string what_of(const std::exception_ptr& e) {
  if (!e) return "<null>";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
  }
  return "<not a std::exception>";
}

// Whether e holds an exception of type E.
template <class E>
bool holds(const std::exception_ptr& e) {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
  }
  return false;
}

// Runs f and returns the reason of the RejectedError it threw, or nothing if
// it threw no RejectedError (any other exception propagates).
template <class F>
std::optional<keel::RejectedError::Reason> rejected_reason(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const keel::RejectedError& e) {
    return e.reason();
  }
  return std::nullopt;
}

// Installs a reporter that records every report; restores the default (an
// empty function) when destroyed.
class ReporterCapture {
 public:
  struct Entry {
    std::string where;
    std::string what;
  };
  ReporterCapture() {
    keel::set_error_reporter([this](std::string_view where, std::exception_ptr e) {
      std::lock_guard<std::mutex> l(m_);
      entries_.push_back({std::string(where), what_of(e)});
    });
  }
  ReporterCapture(const ReporterCapture&) = delete;
  ReporterCapture& operator=(const ReporterCapture&) = delete;
  ~ReporterCapture() { keel::set_error_reporter({}); }
  std::vector<Entry> entries() const {
    std::lock_guard<std::mutex> l(m_);
    return entries_;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> l(m_);
    return entries_.size();
  }

 private:
  mutable std::mutex m_;
  std::vector<Entry> entries_;
};

// The calling thread's name as the OS shows it (/proc/self/task/<tid>/comm).
inline std::string os_thread_name() {
  std::ifstream f("/proc/self/task/" + std::to_string(keel_test::this_tid()) + "/comm");
  std::string name;
  std::getline(f, name);
  return name;
}

// ThreadPoolOptions built by chained setters (designated initializers would
// trip g++'s -Wmissing-field-initializers for the members left out).
struct Opts {
  keel::ThreadPoolOptions o;
  Opts& max(std::size_t n) {
    o.max_threads = n;
    return *this;
  }
  Opts& core(std::size_t n) {
    o.core_threads = n;
    return *this;
  }
  Opts& keep_alive(std::chrono::nanoseconds d) {
    o.keep_alive = d;
    return *this;
  }
  Opts& core_timeout(bool allow = true) {
    o.allow_core_timeout = allow;
    return *this;
  }
  Opts& name(std::string prefix) {
    o.thread_name_prefix = std::move(prefix);
    return *this;
  }
  Opts& init(std::function<void()> f) {
    o.initializer = std::move(f);
    return *this;
  }
  Opts& factory(keel::ThreadFactory f) {
    o.thread_factory = std::move(f);
    return *this;
  }
  Opts& queue(keel::QueueKind kind, std::size_t capacity = 0) {
    o.queue = kind;
    o.queue_capacity = capacity;
    return *this;
  }
  Opts& reject(keel::RejectPolicy p) {
    o.reject = p;
    return *this;
  }
  Opts& block_timeout(std::chrono::nanoseconds d) {
    o.block_timeout = d;
    return *this;
  }
  Opts& before(std::function<void(const keel::TaskInfo&)> f) {
    o.before_task = std::move(f);
    return *this;
  }
  Opts& after(std::function<void(const keel::TaskInfo&, std::exception_ptr)> f) {
    o.after_task = std::move(f);
    return *this;
  }
  Opts& terminated(std::function<void()> f) {
    o.on_terminated = std::move(f);
    return *this;
  }
  operator keel::ThreadPoolOptions() const { return o; }  // NOLINT(google-explicit-constructor)
};

// How many threads of this process the OS names with the given prefix.
inline int os_threads_named(const std::string& prefix) {
  int n = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream f(entry.path() / "comm");
    std::string name;
    if (std::getline(f, name) && name.rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

// A per-test watchdog for the future and executor suites. Most waits in
// these tests are bounded by hang_limit, but some are not by nature (a pool's
// destructor, shutdown(wait)): if a test of the watched suites runs longer
// than three hang_limits, the watchdog names it on stderr and aborts the
// binary, so a hang becomes a loud failure instead of a stuck run.
class Watchdog {
 public:
  static void install(std::set<std::string> suites) {
    // The state is never deleted (its thread may outlive main); gtest owns
    // and deletes only the listener that forwards to it. The static pointer
    // keeps it reachable, so LeakSanitizer does not report it in a process
    // that exits without running the tests (a worker: a fresh image of this
    // binary that leaves from keel::bootstrap).
    static Watchdog* const state = [&] {
      auto* w = new Watchdog(std::move(suites));
      testing::UnitTest::GetInstance()->listeners().Append(new Listener(w));
      return w;
    }();
    (void)state;
  }

 private:
  class Listener final : public testing::EmptyTestEventListener {
   public:
    explicit Listener(Watchdog* w) : w_(w) {}
    void OnTestStart(const testing::TestInfo& info) override { w_->start(info); }
    void OnTestEnd(const testing::TestInfo&) override { w_->end(); }

   private:
    Watchdog* w_;
  };

  explicit Watchdog(std::set<std::string> suites) : suites_(std::move(suites)) {}

  void start(const testing::TestInfo& info) {
    if (suites_.count(info.test_suite_name()) == 0) return;
    std::lock_guard<std::mutex> l(m_);
    if (!started_) {
      started_ = true;
      std::thread([this] { watch(); }).detach();
    }
    name_ = std::string(info.test_suite_name()) + "." + info.name();
    deadline_ = std::chrono::steady_clock::now() + 3 * keel_test::hang_limit;
    armed_ = true;
    cv_.notify_all();
  }
  void end() {
    std::lock_guard<std::mutex> l(m_);
    armed_ = false;
    cv_.notify_all();
  }
  void watch() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      if (!armed_) {
        cv_.wait(l);
        continue;
      }
      const auto deadline = deadline_;
      if (cv_.wait_until(l, deadline) == std::cv_status::timeout && armed_ && deadline_ == deadline) {
        std::fprintf(stderr, "\nkeel tests: %s still runs after %lld s: it hangs; aborting\n", name_.c_str(),
                     static_cast<long long>(3 * keel_test::hang_limit.count()));
        std::fflush(stderr);
        std::abort();
      }
    }
  }

  const std::set<std::string> suites_;
  std::mutex m_;
  std::condition_variable cv_;
  bool started_ = false;
  bool armed_ = false;
  std::string name_;
  std::chrono::steady_clock::time_point deadline_;
};

// Installs the watchdog for every suite of the future and executor tests.
inline bool install_watchdog() {
  Watchdog::install({"Future", "Promise", "FutureCallback", "Wait", "AsCompleted", "ThreadPool", "ThreadPoolShutdown",
                     "ThreadPoolInit", "ThreadPoolMap", "ThreadPoolJava", "ThreadPoolStats", "ThreadPoolReject",
                     "ThreadPoolQueue", "ThreadPoolHooks", "ThreadPoolFactory", "ExecutorStress"});
  return true;
}

}  // namespace keel_future_test
