// keel::bootstrap: the hook that lets keel start children as fresh images of
// this program (Python's multiprocessing "spawn" start method).
//
// Contract: call it first thing in main(), before anything reads argv, starts
// threads or produces output. In a normal process it records argv[0], opens
// this process's lifeline pipe (two O_CLOEXEC fds, kept for the process's
// life) and returns. With KEEL_CHILD in the environment (removed at once so
// that grandchildren are not confused) it never returns: in a child that keel
// spawned it runs the child's role (a registered task, a pool worker) and
// exits with its status. KEEL_CHILD alone is not believed: the process exits
// with detail::refused_child_status (77) and a one-line reason on stderr,
// running no role, when it is in secure-execution mode (setuid, setgid, file
// capabilities) or cannot prove that its parent spawned it (the handshake in
// keel/process/child.hpp). Tasks and roles must be registered by static
// initializers (namespace scope), or in main before this call, so that the
// parent and every fresh image agree on them. Spawning a child without having
// called it is a MisuseError.
//
// Invariants: POOL-4 (daemon children die with their parent: the lifeline),
// SEC-1 (a role runs only after the handshake), SEC-2 (no role in
// secure-execution mode).
#pragma once

namespace keel {

/// The first call in main of a program that starts keel processes (the contract above).
void bootstrap(int argc, char** argv);

}  // namespace keel
