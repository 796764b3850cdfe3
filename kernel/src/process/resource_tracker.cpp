// keel's shared-memory resource tracker. See resource_tracker.hpp for the
// design; this file holds the registry layout, the creator's side (under one
// lock) and the two helper processes (raw system calls only).
#include "resource_tracker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/process/shared_memory.hpp"
#include "keel/sync/mutex.hpp"

// Code that runs in the helper processes: sanitizer runtimes there still
// believe in the creator's other threads, so memory accesses stay
// uninstrumented (atomics are read relaxed, which takes no runtime lock).
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define KEEL_HELPER_CODE __attribute__((no_sanitize("thread")))
#else
#define KEEL_HELPER_CODE
#endif

namespace keel::detail::shm_tracker {

namespace {

constexpr std::size_t name_capacity = 232;  // a normalized name is at most 201 characters and a NUL
constexpr char shm_dir[] = "/dev/shm";      // where glibc's shm_open keeps "/name"
constexpr char tracker_comm[] = "keel-shm-track";

// One registered name. Written only by the creator, under State::mu: the
// fields first, then `state` = registered. The tracker reads slots only after
// the creator is gone, so a slot it sees registered was written whole.
struct Slot {
  platform::Atomic<std::uint32_t> state{0};  // free or registered
  std::uint32_t length = 0;
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::uint64_t ino = 0;
  char name[name_capacity] = {};
};
static_assert(sizeof(Slot) == 256);
constexpr std::uint32_t slot_free = 0;
constexpr std::uint32_t slot_registered = 1;

// At offset 0 of the registry; slots follow at slots_offset. Slots are built
// one by one as `used` grows, so untouched pages of the reservation stay
// unallocated (MAP_NORESERVE).
struct Header {
  platform::Atomic<std::uint32_t> used{0};    // slots [0, used) have been built
  platform::Atomic<std::int32_t> tracker{0};  // the tracker's pid, stored by the middle process
  platform::FutexWord ready{0};               // 1 once the tracker is in its own session, waiting
  std::uint32_t capacity = 0;                 // slots there is room for; set before any helper exists
};
constexpr std::size_t slots_offset = 64;
static_assert(sizeof(Header) <= slots_offset);

constexpr std::size_t registry_bytes(std::uint32_t capacity) { return slots_offset + capacity * sizeof(Slot); }

KEEL_HELPER_CODE Slot* slot_at(Header* h, std::size_t i) {
  return reinterpret_cast<Slot*>(reinterpret_cast<char*>(h) + slots_offset + i * sizeof(Slot));
}

// This process's tracker. `registry` is null until the first start and in a
// fork()ed child (whose copy of the parent's state the atfork handler drops).
// The registry ends against a PROT_NONE guard page: a pass that ran past its
// last slot faults at once instead of reading whatever is mapped next.
struct State {
  Mutex mu;
  Header* registry KEEL_GUARDED_BY(mu) = nullptr;
  void* mapping KEEL_GUARDED_BY(mu) = nullptr;  // the registry's pages, guard page included
  std::size_t mapping_bytes KEEL_GUARDED_BY(mu) = 0;
  int tracker KEEL_GUARDED_BY(mu) = 0;
};
State& state() {
  static State* const s = new State;  // never destroyed: a create may run during static destruction
  return *s;
}

// The lock is held across every fork() (as keel's other process-wide
// registries do), so a child never inherits it held by a thread it lacks; the
// child forgets the parent's registry, which MADV_DONTFORK kept from it.
void lock_tracker_for_fork() KEEL_NO_TSA { state().mu.lock(); }
void unlock_in_parent() KEEL_NO_TSA { state().mu.unlock(); }
void unlock_in_child() KEEL_NO_TSA {
  State& s = state();
  s.registry = nullptr;
  s.mapping = nullptr;  // never mapped here: MADV_DONTFORK
  s.mapping_bytes = 0;
  s.tracker = 0;
  s.mu.unlock();
}

// Built, and the handlers registered, while the program starts, so no fork()
// can meet a thread inside the state's first construction (see task.cpp).
const int tracker_fork_handlers =
    (state(), ::pthread_atfork(&lock_tracker_for_fork, &unlock_in_parent, &unlock_in_child));

[[noreturn]] void fail(int code, const std::string& what) {
  throw OsError(code, "keel::SharedMemory: cannot start the cleanup tracker (" + what + ": " + std::strerror(code) +
                          "); nothing was created; create with track = false for a segment without cleanup");
}

// ---- the helper processes: raw system calls only ----

[[noreturn]] KEEL_HELPER_CODE void exit_now(int code) {
  ::syscall(SYS_exit_group, code);
  for (;;) {
  }
}

KEEL_HELPER_CODE void close_all_but(int keep) {
  if (keep > 0) ::syscall(SYS_close_range, 0u, static_cast<unsigned>(keep - 1), 0u);
  if (::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0u, 0u) == 0) return;
  for (int fd = 0; fd < 65536; ++fd) {  // before Linux 5.9
    if (fd != keep) ::syscall(SYS_close, fd);
  }
}

// Removes every registered name whose segment is still the one the creator
// made: a name that was unlinked and re-created by anyone has another inode.
KEEL_HELPER_CODE void remove_registered(Header* h) {
  const std::uint32_t used = std::min<std::uint32_t>(h->used.load(std::memory_order_relaxed), h->capacity);
  char path[sizeof shm_dir + name_capacity];
  for (std::uint32_t i = 0; i < used; ++i) {
    Slot* s = slot_at(h, i);
    if (s->state.load(std::memory_order_relaxed) != slot_registered) continue;
    if (s->length == 0 || s->length >= name_capacity) continue;
    std::memcpy(path, shm_dir, sizeof shm_dir - 1);
    std::memcpy(path + sizeof shm_dir - 1, s->name, s->length);
    path[sizeof shm_dir - 1 + s->length] = '\0';
    struct statx st {};
    if (::syscall(SYS_statx, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_INO, &st) != 0) continue;
    if (st.stx_ino != s->ino || st.stx_dev_major != s->dev_major || st.stx_dev_minor != s->dev_minor) continue;
    ::syscall(SYS_unlinkat, AT_FDCWD, path, 0);
  }
}

[[noreturn]] KEEL_HELPER_CODE void run_tracker(Header* h, int pidfd) {
  ::syscall(SYS_setsid);  // no controlling terminal, outside the job's process group
  ::syscall(SYS_prctl, PR_SET_NAME, tracker_comm, 0ul, 0ul, 0ul);
  ::syscall(SYS_chdir, "/");  // pins no file system
  close_all_but(pidfd);
  h->ready.store(1, std::memory_order_relaxed);  // the futex wake orders it for the waiter
  platform::futex_wake(h->ready, platform::wake_all);
  // Every signal is still blocked (see start_locked): Ctrl-C, SIGTERM and
  // SIGHUP stay pending and never end the tracker; SIGKILL still does.
  for (;;) {
    pollfd p{pidfd, POLLIN, 0};
    const long r = ::syscall(SYS_ppoll, &p, 1ul, nullptr, nullptr, 0ul);
    if (r > 0) break;
    if (r < 0 && errno != EINTR) {
      const timespec pause{1, 0};  // a pidfd that cannot be polled: never spin
      ::syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &pause, nullptr);
    }
  }
  remove_registered(h);
  exit_now(0);
}

// The middle process: starts the tracker and exits, so the tracker is
// nobody's child but init's (or a subreaper's).
[[noreturn]] KEEL_HELPER_CODE void run_middle(Header* h, int pidfd) {
  const long pid = ::syscall(SYS_clone, static_cast<unsigned long>(SIGCHLD), 0ul, 0ul, 0ul, 0ul);
  if (pid == 0) run_tracker(h, pidfd);
  if (pid < 0) exit_now(errno > 0 && errno < 256 ? errno : 1);
  h->tracker.store(static_cast<std::int32_t>(pid), std::memory_order_relaxed);  // read after our exit was reaped
  exit_now(0);
}

// ---- the creator's side ----

// Whether pid is still a live tracker: a session leader (the tracker made
// itself one; a recycled pid almost never is), and not a zombie waiting for
// init to reap it.
bool alive(int pid, bool session_leader = true) {
  if (pid <= 0) return false;
  if (session_leader ? ::getsid(pid) != pid : ::kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;  // no /proc: trust getsid
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return true;
  buf[n] = '\0';
  const char* close_paren = std::strrchr(buf, ')');
  if (close_paren == nullptr || close_paren[1] == '\0' || close_paren[2] == '\0') return true;
  return close_paren[2] != 'Z' && close_paren[2] != 'X';
}

void start_locked(State& s) KEEL_REQUIRES(s.mu) {
  if (s.registry == nullptr) {
    const std::uint32_t capacity =
        shared_memory_test_tracker_capacity != 0 && shared_memory_test_tracker_capacity < max_tracked
            ? shared_memory_test_tracker_capacity
            : static_cast<std::uint32_t>(max_tracked);
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t data_bytes = (registry_bytes(capacity) + page - 1) / page * page;
    const std::size_t bytes = data_bytes + page;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fail(errno, "cannot map its registry");
    // A fork() of this process must not share the registry. No fork() runs
    // while the lock is held (the atfork handler takes it).
    if (::mprotect(static_cast<char*>(p) + data_bytes, page, PROT_NONE) != 0 ||
        ::madvise(p, bytes, MADV_DONTFORK) != 0) {
      const int e = errno;
      ::munmap(p, bytes);
      fail(e, "cannot guard its registry");
    }
    s.mapping = p;
    s.mapping_bytes = bytes;
    s.registry = new (static_cast<char*>(p) + data_bytes - registry_bytes(capacity)) Header;
    s.registry->capacity = capacity;
  }
  Header* h = s.registry;
  h->tracker.store(0, std::memory_order_relaxed);
  h->ready.store(0, std::memory_order_relaxed);
  // A pidfd of this process: it becomes readable when the process ends.
  // Opened here and handed to the tracker; closed here right after the fork.
  const long pidfd = ::syscall(SYS_pidfd_open, ::getpid(), 0u);
  if (pidfd < 0) fail(errno, "pidfd_open");
  // The helpers start with every signal blocked, so no handler of this
  // process ever runs in them.
  sigset_t all;
  sigset_t old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  ::madvise(s.mapping, s.mapping_bytes, MADV_DOFORK);
  const long middle = ::syscall(SYS_clone, static_cast<unsigned long>(SIGCHLD), 0ul, 0ul, 0ul, 0ul);
  if (middle == 0) run_middle(h, static_cast<int>(pidfd));
  const int fork_errno = errno;
  ::madvise(s.mapping, s.mapping_bytes, MADV_DONTFORK);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(static_cast<int>(pidfd));
  if (middle < 0) fail(fork_errno, "fork");
  int status = 0;
  pid_t r;
  while ((r = ::waitpid(static_cast<pid_t>(middle), &status, 0)) < 0 && errno == EINTR) {
  }
  // ECHILD: another thread reaped it, or SIGCHLD is ignored; either way it
  // has exited, and the pid it stored tells whether the tracker started.
  if (r == static_cast<pid_t>(middle) && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    fail(WIFEXITED(status) ? WEXITSTATUS(status) : ECHILD, "fork of the tracker");
  }
  const int pid = h->tracker.load(std::memory_order_relaxed);
  if (pid <= 0) fail(ECHILD, "the tracker did not start");
  // Back to the caller only once the tracker is in place (own session,
  // descriptors closed), bounded by its death rather than by a timeout.
  while (h->ready.load(std::memory_order_acquire) == 0) {
    if (!alive(pid, false)) fail(ECHILD, "the tracker died while starting");
    platform::futex_wait(h->ready, 0, platform::Deadline::after(std::chrono::milliseconds(50)));
  }
  s.tracker = pid;
}

}  // namespace

void ensure_started() {
  State& s = state();
  LockGuard lock(s.mu);
  if (s.registry != nullptr && alive(s.tracker)) return;
  start_locked(s);
}

void track(const std::string& name, int fd) {
  if (name.empty() || name.size() >= name_capacity) {
    throw ValueError("keel::SharedMemory: the name '" + name + "' cannot be tracked");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    throw OsError(e, "keel::SharedMemory: cannot stat " + name + ": " + std::strerror(e));
  }
  State& s = state();
  LockGuard lock(s.mu);
  if (s.registry == nullptr) start_locked(s);
  Header* h = s.registry;
  const std::uint32_t used = h->used.load(std::memory_order_relaxed);
  // The name's own slot if it is registered already (this process created it
  // before, and someone else unlinked it since: that identity is stale),
  // else the first free one.
  Slot* slot = nullptr;
  Slot* free_slot = nullptr;
  for (std::uint32_t i = 0; i < used && slot == nullptr; ++i) {
    Slot* candidate = slot_at(h, i);
    const std::uint32_t st_now = candidate->state.load(std::memory_order_relaxed);
    if (st_now == slot_registered && candidate->length == name.size() &&
        std::memcmp(candidate->name, name.data(), name.size()) == 0) {
      slot = candidate;
    } else if (st_now == slot_free && free_slot == nullptr) {
      free_slot = candidate;
    }
  }
  if (slot != nullptr) {
    slot->state.store(slot_free, std::memory_order_relaxed);  // rewritten below
  } else {
    slot = free_slot;
  }
  if (slot == nullptr) {
    if (used >= h->capacity) {
      throw OsError(ENOSPC, "keel::SharedMemory: the cleanup tracker already holds " + std::to_string(h->capacity) +
                                " names; create with track = false for a segment without cleanup");
    }
    slot = new (slot_at(h, used)) Slot;
    h->used.store(used + 1, std::memory_order_release);
  }
  slot->length = static_cast<std::uint32_t>(name.size());
  std::memcpy(slot->name, name.data(), name.size());
  slot->name[name.size()] = '\0';
  slot->dev_major = major(st.st_dev);
  slot->dev_minor = minor(st.st_dev);
  slot->ino = st.st_ino;
  slot->state.store(slot_registered, std::memory_order_release);
}

bool untrack(const std::string& name) noexcept {
  State& s = state();
  LockGuard lock(s.mu);
  if (s.registry == nullptr) return false;
  Header* h = s.registry;
  const std::uint32_t used = h->used.load(std::memory_order_relaxed);
  bool found = false;
  for (std::uint32_t i = 0; i < used; ++i) {
    Slot* slot = slot_at(h, i);
    if (slot->state.load(std::memory_order_relaxed) == slot_registered && slot->length == name.size() &&
        std::memcmp(slot->name, name.data(), name.size()) == 0) {
      slot->state.store(slot_free, std::memory_order_release);
      found = true;
    }
  }
  return found;
}

bool tracked(const std::string& name) noexcept {
  State& s = state();
  LockGuard lock(s.mu);
  if (s.registry == nullptr) return false;
  Header* h = s.registry;
  const std::uint32_t used = h->used.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < used; ++i) {
    const Slot* slot = slot_at(h, i);
    if (slot->state.load(std::memory_order_relaxed) == slot_registered && slot->length == name.size() &&
        std::memcmp(slot->name, name.data(), name.size()) == 0) {
      return true;
    }
  }
  return false;
}

int tracker_pid() noexcept {
  State& s = state();
  LockGuard lock(s.mu);
  return s.registry == nullptr ? 0 : s.tracker;
}

}  // namespace keel::detail::shm_tracker
