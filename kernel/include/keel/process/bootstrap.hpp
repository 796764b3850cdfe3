// keel::bootstrap: the hook that lets keel start children as fresh images of
// this program (Python's multiprocessing "spawn" start method).
//
// Contract: call it first thing in main(), before anything reads argv, starts
// threads or produces output. In a normal process it records argv[0], opens
// this process's lifeline pipe (two O_CLOEXEC fds, kept for the process's
// life) and returns. In a child started by keel (KEEL_CHILD in the
// environment, removed at once so that grandchildren are not confused) it never
// returns: it runs the child's role (a registered task, a pool worker) and
// exits with its status. Tasks and roles must be registered by static
// initializers (namespace scope), or in main before this call, so that the
// parent and every fresh image agree on them. Spawning a child without having
// called it is a MisuseError.
//
// Invariants: POOL-4 (daemon children die with their parent: the lifeline).
#pragma once

namespace keel {

void bootstrap(int argc, char** argv);

}  // namespace keel
