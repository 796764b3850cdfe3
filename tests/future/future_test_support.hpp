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

}  // namespace keel_future_test
