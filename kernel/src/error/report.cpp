// The error reporter (keel/error.hpp): where exceptions that nobody can be
// given end up, and how keel names an exception in a message.
#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/sync/mutex.hpp"

#if !KEEL_MODEL
#include <pthread.h>

#include <cstdio>
#endif

namespace keel {

namespace {

// Never destroyed outside the model: a callback that throws on a pool's
// thread while exit() runs the static destructors still reports through them.
// (Relacy would count a never-freed allocation as a leak; the model has no
// exit() to race.)
#if KEEL_MODEL
Mutex& reporter_lock() {
  static Mutex m;
  return m;
}
ErrorReporter& reporter_slot() {
  static ErrorReporter r;
  return r;
}
#else
Mutex& reporter_lock() {
  static Mutex& m = *new Mutex;
  return m;
}
ErrorReporter& reporter_slot() {
  static ErrorReporter& r = *new ErrorReporter;
  return r;
}

// The lock is held across every fork(), so a child never inherits it held by
// a thread it lacks (its first report, or set_error_reporter, would hang).
// Built, and the handlers registered, while the program starts, so no fork()
// meets a thread inside their first construction.
void lock_reporter_for_fork() KEEL_NO_TSA { reporter_lock().lock(); }
void unlock_reporter_after_fork() KEEL_NO_TSA { reporter_lock().unlock(); }
const int reporter_fork_handlers =
    (reporter_lock(), reporter_slot(),
     ::pthread_atfork(&lock_reporter_for_fork, &unlock_reporter_after_fork, &unlock_reporter_after_fork));
#endif

void default_report(std::string_view where, const std::exception_ptr& error) noexcept {
#if KEEL_MODEL
  (void)where;
  (void)error;
#else
  std::string what;
  try {
    what = detail::describe_exception(error);
  } catch (...) {
    what = "(no memory to describe it)";
  }
  std::fprintf(stderr, "keel: exception in %.*s: %s\n", static_cast<int>(where.size()), where.data(), what.c_str());
#endif
}

}  // namespace

void set_error_reporter(ErrorReporter reporter) {
  LockGuard g(reporter_lock());
  reporter_slot() = std::move(reporter);
}

void report_error(std::string_view where, const std::exception_ptr& error) noexcept {
  ErrorReporter r;
  {
    LockGuard g(reporter_lock());
    try {
      r = reporter_slot();
    } catch (...) {
    }
  }
  if (r) {
    try {
      r(where, error);
      return;
    } catch (...) {
      // A reporter that throws breaks its contract; fall back to stderr.
    }
  }
  default_report(where, error);
}

#if KEEL_MODEL
// The models never turn the report on: a plain flag keeps a static atomic
// out of Relacy's per-iteration state.
void set_report_unobserved_exceptions(bool) noexcept {}
bool report_unobserved_exceptions() noexcept { return false; }
#else
namespace {
platform::Atomic<std::int32_t>& unobserved_flag() {
  static platform::Atomic<std::int32_t> on{0};
  return on;
}
}  // namespace
// relaxed: a switch set once at start-up; a future dropped on another thread
// at the moment it changes may go either way.
void set_report_unobserved_exceptions(bool on) noexcept {
  unobserved_flag().store(on ? 1 : 0, std::memory_order_relaxed);
}
bool report_unobserved_exceptions() noexcept { return unobserved_flag().load(std::memory_order_relaxed) != 0; }
#endif

namespace detail {

std::string describe_exception(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return what_of(x);
  } catch (...) {
  }
  return "unknown exception";
}

}  // namespace detail

}  // namespace keel
