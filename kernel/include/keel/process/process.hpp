// keel::Process: run a registered task in a child process (Python's
// multiprocessing.Process).
//
// Contract:
// - A Process names a registered task and its arguments (encoded at
//   construction, converted to the task's parameter types), plus options:
//   name, daemon, start method, connections to hand to the child. start()
//   starts the child once (MisuseError the second time).
// - spawn (default) runs the task in a fresh image of this program (see
//   keel::bootstrap), safe from a multi-threaded parent; fork is an opt-in for
//   single-threaded parents, and Process::fork_call runs any callable in a
//   forked child.
// - The child exits 0 when the task returns, or 1 after printing the task's
//   error to stderr (as Python); its own exit()/abort()/signals show as they
//   are. exitcode() follows Python: the exit status, or minus the signal
//   number; nullopt while running or before start.
// - join() waits for the child; join(timeout) returns whether it ended. No
//   busy wait: it sleeps on the child's pidfd. Once reaped, no zombie and no
//   fd of this Process is left.
// - ProcessOptions::connections are passed to the child as fd copies; the
//   child reads them with keel::this_process::connection(i). The parent's
//   Connection objects are untouched (close your copy of the child's end).
// - A daemon child dies with its parent (POOL-4's lifeline), and a still
//   running daemon child is killed (SIGKILL) and reaped when its Process is
//   destroyed; a non-daemon child is joined instead (like std::jthread).
// - Threads: every member may be called from several threads at once (join
//   racing terminate is safe: the pid cannot be reused before the Process
//   reaps it). Destruction needs exclusive access, as for any object.
//
// Invariants: POOL-4 (no child, zombie or fd left; daemon children die with
// their parent).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keel/platform/clock.hpp"
#include "keel/process/child.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/task.hpp"

namespace keel {

/// How a child starts: spawn (a fresh image of this program) or fork.
using StartMethod = detail::StartMethod;

/// A Process's name, daemon flag, start method and the connections its child gets.
struct ProcessOptions {
  std::string name{};   ///< default: "Process-<n>"
  bool daemon = false;  ///< true: the child dies with this process, and is killed when its Process is destroyed
  /// How the child starts: spawn (a fresh image of this program) or fork.
  StartMethod start = StartMethod::spawn;
  /// Handed to the child, in order, as this_process::connection(0), (1), ...;
  /// they must be open when start() runs.
  std::vector<std::reference_wrapper<const Connection>> connections{};
};

/// A child process running a registered task (Python's multiprocessing.Process).
class Process {
 public:
  /// A child that will run task(args...) once started (Python's Process(target, args)).
  template <class R, class... A, class... Args>
  explicit Process(const TaskRef<R(A...)>& task, Args&&... args)
      : Process(ProcessOptions{}, task, std::forward<Args>(args)...) {}

  /// As above, with options (name, daemon, start method, connections).
  template <class R, class... A, class... Args>
  Process(ProcessOptions options, const TaskRef<R(A...)>& task, Args&&... args)
      : Process(std::move(options), task.name(), TaskRef<R(A...)>::encode_args(std::forward<Args>(args)...)) {
    static_assert(sizeof...(Args) == sizeof...(A), "keel::Process: wrong number of arguments for the task");
  }

  /// A task by name with arguments already encoded (detail::encode_args / TaskRef::encode_args).
  /// ValueError if no task has that name in this program.
  Process(ProcessOptions options, const std::string& task_name, const std::string& encoded_args);

  /// A Process whose forked child runs fn and exits with its result (an
  /// exception from fn: exit status 1). Always forks, whatever options.start
  /// says: a callable cannot cross into a fresh image.
  static Process fork_call(std::function<int()> fn, ProcessOptions options = {});

  /// Takes other's child; other is left empty.
  Process(Process&&) noexcept;
  Process& operator=(Process&&) = delete;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  /// Kills and reaps a running daemon child; joins a non-daemon one.
  ~Process();

  /// Starts the child (MisuseError if called twice).
  void start();

  /// Blocks until the child has ended and is reaped.
  void join() { join_until(platform::Deadline::never()); }
  /// join(), for at most `timeout`; whether the child ended.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(platform::Deadline::after(timeout));
  }
  /// join(), until `deadline` at most; whether the child ended.
  template <class Clock, class Duration>
  bool join_until(std::chrono::time_point<Clock, Duration> deadline) {
    return join_until(platform::Deadline::at(deadline));
  }

  /// Whether the child was started and has not ended.
  bool is_alive();
  /// The exit status, or minus the signal number that killed it; nullopt while running or before start().
  std::optional<int> exitcode();
  /// SIGTERM / SIGKILL to a running child; nothing once it has been reaped.
  /// MisuseError before start().
  void terminate();
  /// As terminate(), with SIGKILL.
  void kill();
  /// The child's pid (kept after it ended), or -1 before start().
  int pid() const;
  /// Its name (ProcessOptions::name, or "Process-<n>").
  const std::string& name() const;
  /// Whether it is a daemon child.
  bool daemon() const;

 private:
  struct State;
  Process() = default;
  bool join_until(const platform::Deadline& deadline);
  void send_signal(int sig, const char* op);
  State& state(const char* op) const;

  std::unique_ptr<State> state_;
};

// What a process knows about itself.
namespace this_process {
/// The i-th connection its parent passed (ProcessOptions::connections).
/// ValueError if there is none with that index (always, in a process keel did
/// not start).
Connection& connection(std::size_t i);
/// How many connections its parent passed.
std::size_t connection_count() noexcept;
/// The Process name the parent gave it; "MainProcess" otherwise.
const std::string& name() noexcept;
}  // namespace this_process

}  // namespace keel
