// keel::detail child processes: how keel starts a child, what the child runs,
// and how the parent reaps it. Process and the ProcessPool are built on this.
//
// Contract:
// - A child runs a *role*: a function registered under a name (built in:
//   "process", in process.cpp; "pool", registered by the process pool). The
//   role gets a ChildContext (the inherited fds, at 3, 4, ... in the order the
//   SpawnRequest gave them, and the request's payload bytes) and returns the
//   child's exit status.
// - spawn (the default) starts a fresh image of this program: posix_spawn of
//   /proc/self/exe, which is safe from a multi-threaded parent. The new image's
//   main() calls keel::bootstrap first, which finds the role in the
//   environment (KEEL_CHILD) and never returns. Only the requested fds (plus
//   0, 1, 2) reach the child: every fd keel creates is O_CLOEXEC and the
//   child's other fds are closed before exec.
// - fork (opt-in, for single-threaded parents) runs the role in the forked
//   child directly, with the same fd layout (everything else above 2 closed),
//   then _exit()s.
// - A daemon child dies with its parent, however the parent dies (SIGKILL
//   included) and whichever parent thread started it: it holds the read end of
//   a lifeline pipe whose only write end is in the parent (O_CLOEXEC, never
//   passed on), and a watcher thread _exit()s the child when it reads EOF.
// - spawn_child either returns a started child or throws (OsError, MisuseError)
//   with nothing leaked: no fd, no child process.
//
// Invariants: POOL-4 (when the parent dies, every daemon child exits; no fd of
// the parent leaks into a child).
#pragma once

#include <climits>
#include <optional>

#include <string>
#include <string_view>
#include <vector>
#include "keel/platform/clock.hpp"

namespace keel::detail {

// What a child's role receives.
struct ChildContext {
  std::string role;
  std::vector<int> fds;  // the inherited fds, in request order: 3, 4, ...
  std::string payload;   // the SpawnRequest's payload bytes
};

// A role's entry point; its return value is the child's exit status (0-255).
using ChildRole = int (*)(const ChildContext&);

// Registers a role; called from static initializers (before main), so that a
// fresh image knows the role before keel::bootstrap looks it up. ValueError if
// the name is empty, the function null, or the name already registered.
void register_child_role(std::string name, ChildRole fn);

// The registered role, or nullptr.
ChildRole find_child_role(std::string_view name);

enum class StartMethod { spawn, fork };

struct SpawnRequest {
  std::string role{};
  std::vector<int> fds{};  // open fds of the parent, passed as 3, 4, ... (the parent keeps its own)
  bool daemon = true;      // dies with its parent
  StartMethod start = StartMethod::spawn;
  std::string payload{};
  // The child leads a new process group, with stdin from /dev/null: signals
  // sent to this process's group (a terminal's Ctrl-C) do not reach it, a
  // background group must not read the terminal, and the group can be
  // signalled whole (the child and its descendants). A daemon child that
  // leads its own group takes the group with it when its parent dies.
  bool new_process_group = false;
};

struct ChildHandle {
  int pid = -1;    // -1 once reaped
  int pidfd = -1;  // pollable, readable once the child exited; -1 if the kernel has no pidfd_open (< 5.3)
};

// Starts a child. ValueError for an unregistered role or a bad fd; MisuseError
// when spawning before keel::bootstrap recorded argv (the fresh image would run
// main() as if it were the parent); OsError when the system refuses. On any
// error nothing is left behind.
ChildHandle spawn_child(const SpawnRequest& req);

// Reaps the child if it has exited (block: waits for it). Returns its exit
// status, or minus the signal that killed it (as Python's exitcode), or
// still_running. Once reaped, the pidfd is closed and h.pid is -1. OsError if
// h does not name an unreaped child of this process.
inline constexpr int still_running = INT_MIN;
int reap_child(ChildHandle& h, bool block);

// Exit status -> Python's exitcode convention (negative signal number).
int exit_code_from_status(int wait_status);

// The child side of spawn, called by keel::bootstrap: if this process is a
// keel child (KEEL_CHILD set; it is removed at once), runs its role and returns
// the exit status; otherwise nullopt.
std::optional<int> run_child_from_environment();

// True in a child made by spawn_child with StartMethod::fork (the parent's
// memory is here, so a role may use pointers the parent put in the payload).
bool in_forked_child() noexcept;

// Waits until `fd` is ready for `events` (poll(2) bits), or the deadline
// passes (false). An expired deadline still checks once; EINTR is retried; an
// error or hang-up counts as ready. OsError if poll fails.
bool wait_fd(int fd, short events, const platform::Deadline& deadline);

// Called by keel::bootstrap: records argv[0] and that bootstrap ran (spawn
// refuses to start a fresh image otherwise), and opens this process's lifeline
// pipe up front, so that its two fds exist before any test or user code looks.
void record_bootstrap(int argc, char** argv);
bool bootstrapped();

}  // namespace keel::detail
