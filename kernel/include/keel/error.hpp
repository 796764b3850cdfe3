// keel's error types: every failure a caller can see is one of these.
//
// Contract: misuse and bad input are reported by throwing a typed error that
// names what went wrong, after leaving the object exactly as it was (nothing is
// lost or half-changed). The hierarchy mirrors Python's exceptions so users can
// map them one to one: keel::Error is the root, MisuseError is Python's
// RuntimeError for lock misuse, ValueError is Python's ValueError,
// BrokenBarrierError and TimeoutError are Python's threading names;
// CancelledError, InvalidStateError, BrokenExecutor and BrokenThreadPool are
// concurrent.futures' names, and RejectedError is Java's
// RejectedExecutionException.
//
// The process layer adds OsError (an operating-system call failed, with its
// errno), ProtocolError (a malformed or oversized frame or encoding: bad input
// from another process is an error, never a crash), RemoteError (a task raised
// in a worker process: its type and message), WorkerLost (the worker running a
// task died: pid and exit status or signal) and BrokenProcessPool.
//
// Errors nobody can be given (a done-callback or an executor hook threw on a
// pool's thread) go to one reporter, set with set_error_reporter: never lost,
// never thrown into the pool.
//
// Invariants: SYNC-3 (misuse is reported with a typed error, state unchanged),
// EXEC-3 (a refused submission is an error, never a silent drop), EXEC-7 (a
// throwing callback is reported and does not stop the others), LIFE-11 (the
// reporter's lock is held across fork(), so a forked child can report).
#pragma once

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace keel {

/// Root of every error keel throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An operation used against the object's contract (Python: RuntimeError).
class MisuseError : public Error {
 public:
  using Error::Error;
};

/// Releasing a lock that is not held: Mutex::unlock on an unlocked Mutex, or a
/// Condition operation without its lock.
class LockNotHeldError : public MisuseError {
 public:
  using MisuseError::MisuseError;
};

/// Releasing a RecursiveMutex from a thread that does not own it.
class NotOwnerError : public MisuseError {
 public:
  using MisuseError::MisuseError;
};

/// A bad argument (Python: ValueError): a negative semaphore value, a
/// BoundedSemaphore released above its initial value, zero barrier parties.
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A Barrier was aborted, reset, timed out or its action failed while the
/// caller waited on it, or it was already broken when the caller arrived.
class BrokenBarrierError : public Error {
 public:
  using Error::Error;
};

/// A blocking operation's deadline passed.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// A future's result was asked for, but the future was cancelled.
class CancelledError : public Error {
 public:
  using Error::Error;
};

/// An operation the future's state does not allow: setting a result twice,
/// starting a future that is not pending, using a future that has no state.
class InvalidStateError : public MisuseError {
 public:
  using MisuseError::MisuseError;
};

/// The result of a Promise destroyed before it set one.
class BrokenPromiseError : public Error {
 public:
  using Error::Error;
};

/// An executor can no longer run work (Python: BrokenExecutor).
class BrokenExecutor : public Error {
 public:
  using Error::Error;
};

/// A ThreadPoolExecutor whose worker initializer failed: queued work and every
/// later submission fail with this (Python: BrokenThreadPool).
class BrokenThreadPool : public BrokenExecutor {
 public:
  using BrokenExecutor::BrokenExecutor;
};

/// An executor refused a submission (Java: RejectedExecutionException): it was
/// shut down, it is saturated under the abort policy, a blocking submission
/// timed out, or no worker thread could be started. The task was not accepted
/// and will never run.
class RejectedError : public Error {
 public:
  /// Why it was refused: shut down, saturated (abort policy), a blocking submission timed out, or no thread could
  /// start.
  enum class Reason { shutdown, saturated, timed_out, no_thread };
  /// A refusal for `reason`, with its message.
  RejectedError(Reason reason, const std::string& what) : Error(what), reason_(reason) {}
  /// Why the submission was refused.
  Reason reason() const noexcept { return reason_; }

 private:
  Reason reason_;
};

/// An operating-system call failed (Python: OSError). code() is the errno.
class OsError : public Error {
 public:
  /// A failed call: `code` is its errno, `what` names the call.
  OsError(int code, const std::string& what) : Error(what), code_(code) {}
  /// The errno of the failed call.
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// Bytes from another process that are not a valid frame or encoding: bad
/// magic, a length above the limit, a truncated value, trailing garbage.
class ProtocolError : public ValueError {
 public:
  using ValueError::ValueError;
};

/// A task raised in a worker process. type() is the exception's C++ type as the
/// worker saw it (demangled), message() its what().
class RemoteError : public Error {
 public:
  /// The error of a task that threw `type` (demangled) with what() `message` in a worker.
  RemoteError(std::string type, std::string message)
      : Error(type + ": " + message), type_(std::move(type)), message_(std::move(message)) {}
  /// The C++ type of the exception the task threw, as the worker saw it (demangled).
  const std::string& type() const noexcept { return type_; }
  /// That exception's what().
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_;
  std::string message_;
};

/// The worker process running a task died before reporting its outcome.
/// exit_code() follows Python's Process.exitcode: the exit status, or minus the
/// signal number that killed it.
class WorkerLost : public Error {
 public:
  /// Worker `pid` died with `exit_code` (minus the signal number if a signal killed it).
  WorkerLost(int pid, int exit_code, const std::string& what) : Error(what), pid_(pid), exit_code_(exit_code) {}
  /// The pid of the worker that died.
  int pid() const noexcept { return pid_; }
  /// Its exit status, or minus the signal number that killed it (Python's Process.exitcode).
  int exit_code() const noexcept { return exit_code_; }
  /// Whether a signal killed it.
  bool signaled() const noexcept { return exit_code_ < 0; }
  /// The signal that killed it; 0 if it exited.
  int signal() const noexcept { return exit_code_ < 0 ? -exit_code_ : 0; }

 private:
  int pid_;
  int exit_code_;
};

/// A ProcessPool that can no longer run work: a worker initializer failed, or
/// workers died faster than the restart limit allows (Python: BrokenProcessPool).
class BrokenProcessPool : public BrokenExecutor {
 public:
  using BrokenExecutor::BrokenExecutor;
};

/// Receives exceptions that escaped a done-callback or an executor hook, with a
/// short description of where. The default writes one line to stderr (Python
/// logs "exception calling callback for future"). Passing an empty function
/// restores the default. The reporter must not throw; one that does falls back
/// to the default for that error.
using ErrorReporter = std::function<void(std::string_view where, std::exception_ptr error)>;
/// Installs `reporter` (an empty one restores the default).
void set_error_reporter(ErrorReporter reporter);
/// Hands error to the reporter. Never throws, also when the reporter does.
void report_error(std::string_view where, const std::exception_ptr& error) noexcept;
/// Opt-in (off by default): a future that holds an exception nobody retrieved
/// (no result(), no exception(), no after-task hook saw it) reports it through
/// the error reporter, once, when its last handle is dropped.
void set_report_unobserved_exceptions(bool on) noexcept;
/// Whether unobserved exceptions are reported (see set_report_unobserved_exceptions).
bool report_unobserved_exceptions() noexcept;
/// The `where` an unobserved exception is reported with.
inline constexpr std::string_view unobserved_exception_where = "a future dropped with an exception nobody retrieved";

namespace detail {

// The what() of the exception e holds ("unknown exception" for one that is
// not a std::exception, "" for null): how keel names an error in a report.
std::string describe_exception(const std::exception_ptr& e);

// e.what(), or a fixed text when it returns nullptr: a user's exception type
// may override what() that way, and a null char* reaching a std::string or
// printf is undefined behaviour (a worker that did so died of SIGSEGV).
inline const char* what_of(const std::exception& e) noexcept {
  const char* w = e.what();
  return w != nullptr ? w : "(what() returned a null pointer)";
}

}  // namespace detail

}  // namespace keel
