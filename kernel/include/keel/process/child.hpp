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
// - The environment only says which role to run; it never makes a process a
//   child by itself. Before it reads the payload or looks up the role, a fresh
//   image proves that its parent spawned it (the handshake below) and refuses
//   to run in secure-execution mode (setuid, setgid, file capabilities: an
//   attacker's environment and fds meet someone else's privileges). A refusal
//   is one line on stderr naming the reason and _exit(refused_child_status):
//   no role runs, nor anything else of the program. A parent in
//   secure-execution mode refuses to spawn fresh images (MisuseError); fork
//   stays allowed, as it reads nothing from the environment.
// - A parent that dies while its child is still in the handshake cannot be
//   told from a forger (the child was reparented): a daemon child then exits
//   with status 1, as through its lifeline; a non-daemon child is refused.
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
// The spawn handshake (SEC-1). A spawned child's fds: the request's n fds at
// 3 .. 2+n, the payload at 3+n, the hello socket at 4+n, for a daemon the
// lifeline at 5+n. The parent makes, per spawn, a random nonce, a payload memfd
// (payload_magic, nonce, payload bytes; sealed against writes, growth,
// shrinking and further seals) and an AF_UNIX socketpair; after posix_spawn it
// sends the hello (hello_magic, the child's pid, the nonce) on its end and
// closes it. The child accepts only if the hello fd is a Unix socket whose
// creator (SO_PEERCRED) is its parent process with its own effective uid and
// gid, the hello arrives within hello_timeout and names its own pid, and the
// payload fd is such a sealed memfd carrying the same nonce.
//
// Invariants: POOL-4 (when the parent dies, every daemon child exits; no fd of
// the parent leaks into a child), SEC-1 (a fresh image runs a role only after
// the handshake proves its parent spawned it), SEC-2 (no child role in
// secure-execution mode; no fresh image spawned from it), LIFE-11 (the role
// table's and the lifeline's locks are held across fork(), so a forked child
// can spawn).
#pragma once

#include <chrono>
#include <climits>
#include <cstddef>
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
// main() as if it were the parent) or, for StartMethod::spawn, in
// secure-execution mode (the child would refuse); OsError when the system
// refuses. On any
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

// The child side of spawn, called by keel::bootstrap: if KEEL_CHILD is set (it
// is removed at once), checks secure-execution mode and the handshake, then runs
// the role and returns its exit status; otherwise nullopt. A refusal writes one
// line on stderr and leaves at once: _exit(refused_child_status).
std::optional<int> run_child_from_environment();

// The exit status of a fresh image that refuses to be a keel child (SEC-1,
// SEC-2): EX_NOPERM of <sysexits.h>. No other status of keel's means this: a
// pool worker uses 70-74, a malformed KEEL_CHILD or an unknown role 127, a
// failed pool initializer 3, a role's exception 1.
inline constexpr int refused_child_status = 77;

// True when this process runs in secure-execution mode: getauxval(AT_SECURE)
// (set for setuid, setgid and file-capability programs, and by LSMs), or real
// and effective ids that differ.
bool secure_execution() noexcept;

// The handshake's wire format (see the top of this file). Public so that tests
// can forge it exactly.
namespace handshake {
inline constexpr std::size_t nonce_bytes = 16;
inline constexpr std::size_t magic_bytes = 8;
inline constexpr const char hello_magic[magic_bytes + 1] = "keel-hi1";
inline constexpr const char payload_magic[magic_bytes + 1] = "keel-pl1";
// magic, the child's pid (int32, host byte order), nonce
inline constexpr std::size_t hello_bytes = magic_bytes + 4 + nonce_bytes;
// magic, nonce; the payload bytes follow
inline constexpr std::size_t payload_header_bytes = magic_bytes + nonce_bytes;
// How long a child waits for its hello. The parent sends it as soon as
// posix_spawn returns, so this only bounds a peer that never writes.
inline constexpr std::chrono::seconds hello_timeout{10};
}  // namespace handshake

// True in a child made by spawn_child with StartMethod::fork (the parent's
// memory is here, so a role may use pointers the parent put in the payload).
bool in_forked_child() noexcept;

// Waits until `fd` is ready for `events` (poll(2) bits), or the deadline
// passes (false). An expired deadline still checks once; EINTR is retried; an
// error or hang-up counts as ready. OsError if poll fails.
bool wait_fd(int fd, short events, const platform::Deadline& deadline);

// Called by keel::bootstrap: records argv[0] and that bootstrap ran (spawn
// refuses to start a fresh image otherwise), and opens this process's lifeline
// pipe up front, so that its two fds exist before any test or user code looks
// (in a would-be child, only once its handshake passed).
void record_bootstrap(int argc, char** argv);
bool bootstrapped();

}  // namespace keel::detail
