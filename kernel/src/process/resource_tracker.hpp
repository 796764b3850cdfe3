// keel's shared-memory resource tracker (internal, not installed): the owner
// that removes the named segments a process created when that process ends,
// however it ends (SIGKILL included), unless it handed them on first
// (CPython's multiprocessing.resource_tracker, without its pipe).
//
// Design. Each process that creates a tracked segment gets one helper process,
// the tracker, started on the first create. The two share a registry: an
// anonymous MAP_SHARED mapping of fixed-size slots, each one name plus the
// segment's identity (device and inode). The creator writes the registry
// (register on create, forget on unlink or keep); the tracker only reads it,
// and only after the creator is gone. The tracker learns of the creator's end
// from a pidfd of the creator, which only the tracker holds: the creator keeps
// no descriptor open (an open SharedMemory holds none, and a stray copy of a
// pipe end in some other child cannot delay the cleanup). When the pidfd turns
// readable, the tracker removes every still-registered name whose identity is
// unchanged (a name someone else unlinked and re-created is left alone), then
// exits.
//
// The tracker is a grandchild (double fork: the middle process exits at once
// and is reaped by the creator), so it is never the creator's child and
// leaves no zombie in it. It runs in its own session, keeps every signal
// blocked (a Ctrl-C, SIGTERM or SIGHUP to the job must not end it before it
// cleaned up, and no handler of the creator may run in it; SIGKILL still
// ends it), closes every descriptor but the pidfd, moves to "/" and is named
// "keel-shm-track"; the create that started it returns only once it is so
// set up (a futex word in the registry, bounded by the tracker's death, not
// by a timeout). Both forks are
// raw clone calls from a possibly multi-threaded process: the children run
// nothing but raw system calls on memory they already hold (no malloc, no
// locks, no atfork handlers, no sanitizer interceptors).
//
// A fork()ed child of a tracked process does not inherit its registry
// (MADV_DONTFORK, and an atfork handler forgets it): the parent's segments
// stay the parent's, removed when the parent ends even if the child still
// uses them, and the child's own creates start the child's own tracker. After
// exec the process keeps its tracker, which then cleans up when the new
// image ends. A tracker that died (someone SIGKILLed it) is noticed by the
// next create and replaced; the new one takes over the same registry.
//
// When no tracker can be started (no pidfd_open before Linux 5.3, fork
// refused) or the registry is full (max_tracked names), a tracked create
// fails with OsError before it creates anything; create with track = false
// still works, without cleanup.
//
// Known limits: a name registered moments after shm_open succeeded is not
// covered if the creator dies in between (a few instructions); the tracker
// removes names under /dev/shm (glibc's shm_open directory); the tracker is a
// copy-on-write image of the creator at its first create, so memory the
// creator changes afterwards may be held twice until the creator ends.
//
// Invariants: LIFE-1 (a named segment is removed when its creator dies unless
// handed on), LIFE-2 (the tracker removes only the segment its creator made),
// LIFE-3 (tracking costs the creator no descriptor and no child process).
#pragma once

#include <cstddef>
#include <string>

namespace keel::detail::shm_tracker {

// Names one registry holds; a tracked create beyond that is OsError ENOSPC.
inline constexpr std::size_t max_tracked = 65536;

// Makes sure this process has a live tracker, starting or replacing it.
// OsError (naming the step that failed) when none can be started.
void ensure_started();
// Registers a segment this process has just created; fd is open on it (for
// its identity). OsError ENOSPC when the registry is full.
void track(const std::string& name, int fd);
// Forgets a name; true when it was registered. Never throws.
bool untrack(const std::string& name) noexcept;
// Whether this process's tracker would remove name.
bool tracked(const std::string& name) noexcept;
// The pid of this process's tracker, 0 when it has none (tests, diagnostics).
int tracker_pid() noexcept;

}  // namespace keel::detail::shm_tracker
