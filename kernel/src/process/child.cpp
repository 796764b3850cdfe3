// Child processes: role table, spawn/fork, the daemon lifeline, reaping.
//
// Fd layout in every child (spawned or forked): the request's fds at 3, 4, ...
// (n of them), then, for a spawned child, the payload (a sealed memfd) at 3+n
// and the hello socket at 4+n, then, for a daemon, the lifeline's read end
// after that. KEEL_CHILD tells the fresh image "<n>,<daemon 0|1>,<role>"; the
// handshake (child.hpp) decides whether it may believe it.
#include "keel/process/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "fd.hpp"
#include "keel/error.hpp"
#include "keel/sync/mutex.hpp"

extern char** environ;

namespace keel::detail {
namespace {

constexpr const char* child_env = "KEEL_CHILD";
constexpr int first_child_fd = 3;

struct Roles {
  Mutex mutex;
  std::map<std::string, ChildRole, std::less<>> table;
};
// Built on first use (static initializers of other files register into it)
// and never destroyed: a pool's supervisor thread may still spawn a worker
// while exit() runs the static destructors (a pool held by a global).
Roles& roles() {
  static Roles* const r = new Roles;
  return *r;
}

// Process-wide state. argv0 and `booted` are written once by bootstrap, before
// any thread exists; the lifeline is created under its own lock.
struct ProcessState {
  std::string argv0 = "keel";
  bool booted = false;
  bool forked_child = false;
  Mutex lifeline_mutex;
  int lifeline_read = -1;   // passed to daemon children
  int lifeline_write = -1;  // never passed on: closes only when this process dies
};
ProcessState& state() {
  static ProcessState& s = *new ProcessState;  // never destroyed, as roles()
  return s;
}

// As for the task registry: both locks are held across every fork(), so a
// forked child never inherits one locked by a thread that does not exist
// there (its first spawn would hang looking up its role, or opening its
// lifeline). Neither lock is ever taken while the other is held.
void lock_for_fork() KEEL_NO_TSA {
  roles().mutex.lock();
  state().lifeline_mutex.lock();
}
void unlock_after_fork() KEEL_NO_TSA {
  state().lifeline_mutex.unlock();
  roles().mutex.unlock();
}
// Built, and the handlers registered, while the program starts, so no fork()
// can meet a thread inside their first construction (see task.cpp).
const int child_fork_handlers =
    (roles(), state(), ::pthread_atfork(&lock_for_fork, &unlock_after_fork, &unlock_after_fork));

// The lifeline pipe, created once. Both ends are O_CLOEXEC: the write end must
// reach no child at all (a child holding it would keep its siblings alive).
int lifeline_read_end() {
  ProcessState& s = state();
  LockGuard lock(s.lifeline_mutex);
  if (s.lifeline_read < 0) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_os("keel", "cannot create the lifeline pipe", errno);
    s.lifeline_read = p[0];
    s.lifeline_write = p[1];
  }
  return s.lifeline_read;
}

// The watcher of a daemon child. Nobody ever writes to the lifeline, so any
// event on it means the parent is gone, and the child goes too, at once: the
// raw exit_group skips what a sanitizer's _exit does first (TSan sleeps a
// second at exit while other threads run). A byte on the stop pipe ends the
// watcher instead: the child is exiting by itself.
struct Watcher {
  int lifeline = -1;
  int stop_read = -1;
  int stop_write = -1;
  pthread_t thread{};
  bool running = false;
};
Watcher& watcher() {
  static Watcher& w = *new Watcher;  // never destroyed: the watcher thread reads it until exit
  return w;
}

void* lifeline_watcher(void*) {
  const Watcher& w = watcher();
  for (;;) {
    pollfd p[2] = {{w.lifeline, POLLIN, 0}, {w.stop_read, POLLIN, 0}};
    const int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r > 0 && p[0].revents == 0 && p[1].revents != 0) return nullptr;
    // A child that leads its own group (SpawnRequest::new_process_group)
    // takes its descendants with it; one in its parent's group must not
    // signal that group.
    if (::getpgrp() == ::getpid()) ::kill(0, SIGKILL);
    ::syscall(SYS_exit_group, 1);
    ::_exit(1);  // not reached
  }
}

// Ends the watcher thread (at the child's normal exit), so that exit runs in a
// process with no thread of keel's left. Called from atexit and before _exit.
void stop_lifeline_watcher() {
  Watcher& w = watcher();
  if (!w.running) return;
  const char c = 0;
  while (::write(w.stop_write, &c, 1) < 0 && errno == EINTR) {
  }
  pthread_join(w.thread, nullptr);
  w.running = false;
}

void start_lifeline_watcher(int fd) {
  Watcher& w = watcher();
  int stop[2];
  if (::pipe2(stop, O_CLOEXEC) != 0) {
    // A daemon that cannot watch its parent could outlive it: refuse to run.
    std::fprintf(stderr, "keel child: cannot create the watcher's pipe: %s\n", std::strerror(errno));
    ::_exit(1);
  }
  w.lifeline = fd;
  w.stop_read = stop[0];
  w.stop_write = stop[1];
  // The watcher takes no signals: they belong to the role's threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const int rc = pthread_create(&w.thread, nullptr, &lifeline_watcher, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    std::fprintf(stderr, "keel child: cannot start the lifeline watcher: %s\n", std::strerror(rc));
    ::_exit(1);
  }
  w.running = true;
  std::atexit(&stop_lifeline_watcher);
}

void set_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// Runs a role in the child, once its fds are in place. The inherited fds get
// FD_CLOEXEC so that they do not leak into grandchildren.
int run_role(ChildRole fn, const ChildContext& ctx, int lifeline_fd) {
  if (lifeline_fd >= 0) {
    set_cloexec(lifeline_fd);
    start_lifeline_watcher(lifeline_fd);
  }
  for (int fd : ctx.fds) set_cloexec(fd);
  try {
    lifeline_read_end();  // this child's own lifeline, for its daemon children
    return fn(ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel child (role %s): %s\n", ctx.role.c_str(), what_of(e));
  } catch (...) {
    std::fprintf(stderr, "keel child (role %s): unknown exception\n", ctx.role.c_str());
  }
  return 1;
}

// Closes every fd >= first.
void close_from(int first) {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0u, 0u) == 0) return;
#endif
  const long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = first; fd < (max > 0 ? max : 1024); ++fd) ::close(static_cast<int>(fd));
}

void validate(const SpawnRequest& req, ChildRole& fn) {
  fn = find_child_role(req.role);
  if (fn == nullptr) throw ValueError("keel: no child role named '" + req.role + "' is registered");
  for (int fd : req.fds) {
    if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) throw ValueError("keel: fd " + std::to_string(fd) + " is not open");
  }
}

int open_pidfd(int pid) {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) return static_cast<int>(fd);  // pidfds are always close-on-exec
#endif
  (void)pid;
  return -1;  // old kernel: callers fall back to polling waitpid
}

ChildHandle fork_child(const SpawnRequest& req, ChildRole fn) {
  const int lifeline = req.daemon ? lifeline_read_end() : -1;
  std::fflush(nullptr);  // buffered output must not be written twice
  const pid_t pid = ::fork();
  if (pid < 0) throw_os("keel", "fork failed", errno);
  if (pid == 0) {
    if (req.new_process_group) {
      ::setpgid(0, 0);
      const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd < 0 || ::dup2(null_fd, 0) < 0) ::_exit(127);
      if (null_fd != 0) ::close(null_fd);
    }
    // The child: the same fd layout as a spawned child, everything else
    // closed (the parent's lifeline write end above all).
    std::vector<int> sources = req.fds;
    if (lifeline >= 0) sources.push_back(lifeline);
    const int total = static_cast<int>(sources.size());
    for (int& fd : sources) fd = ::fcntl(fd, F_DUPFD, first_child_fd + total);
    for (int i = 0; i < total; ++i) {
      if (sources[i] < 0 || ::dup2(sources[i], first_child_fd + i) < 0) ::_exit(127);
    }
    close_from(first_child_fd + total);
    ProcessState& s = state();
    s.lifeline_read = s.lifeline_write = -1;  // closed above; the child makes its own
    watcher() = Watcher{};                    // a watcher of the parent's is no thread here
    s.forked_child = true;
    ChildContext ctx{req.role, {}, req.payload};
    for (int i = 0; i < static_cast<int>(req.fds.size()); ++i) ctx.fds.push_back(first_child_fd + i);
    const int code = run_role(fn, ctx, lifeline >= 0 ? first_child_fd + total - 1 : -1);
    stop_lifeline_watcher();
    std::fflush(nullptr);
    ::_exit(code & 0xff);
  }
  // Both sides set the group, so it is in place whichever runs first.
  if (req.new_process_group) ::setpgid(pid, pid);
  return ChildHandle{pid, open_pidfd(pid)};
}

class SpawnActions {
 public:
  SpawnActions() {
    if (const int rc = posix_spawn_file_actions_init(&fa_); rc != 0)
      throw_os("keel", "posix_spawn_file_actions_init", rc);
    if (const int rc = posix_spawnattr_init(&attr_); rc != 0) {
      posix_spawn_file_actions_destroy(&fa_);
      throw_os("keel", "posix_spawnattr_init", rc);
    }
  }
  ~SpawnActions() {
    posix_spawnattr_destroy(&attr_);
    posix_spawn_file_actions_destroy(&fa_);
  }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
  posix_spawn_file_actions_t fa_;
  posix_spawnattr_t attr_;
};

void write_payload(int fd, std::string_view bytes) {
  if (const int e = write_all(fd, bytes); e != 0) throw_os("keel", "cannot write the child's payload", e);
}

using Nonce = std::array<char, handshake::nonce_bytes>;

constexpr int payload_seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

Nonce fresh_nonce() {
  Nonce n{};
  std::size_t got = 0;
  while (got < n.size()) {
    const ssize_t r = ::getrandom(n.data() + got, n.size() - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_os("keel", "getrandom for the child's nonce", errno);
    }
    got += static_cast<std::size_t>(r);
  }
  return n;
}

std::array<char, handshake::hello_bytes> hello_message(std::int32_t pid, const Nonce& nonce) {
  std::array<char, handshake::hello_bytes> m{};
  std::memcpy(m.data(), handshake::hello_magic, handshake::magic_bytes);
  std::memcpy(m.data() + handshake::magic_bytes, &pid, sizeof pid);
  std::memcpy(m.data() + handshake::magic_bytes + sizeof pid, nonce.data(), nonce.size());
  return m;
}

void send_hello(int fd, pid_t pid, const Nonce& nonce) {
  const auto m = hello_message(static_cast<std::int32_t>(pid), nonce);
  std::size_t sent = 0;
  while (sent < m.size()) {
    // A fresh socket's buffer holds far more than a hello: this never blocks.
    const ssize_t r = ::send(fd, m.data() + sent, m.size() - sent, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    sent += static_cast<std::size_t>(r);
  }
}

ChildHandle posix_spawn_child(const SpawnRequest& req) {
  ProcessState& s = state();
  if (!s.booted) {
    throw MisuseError(
        "keel: spawning a child needs keel::bootstrap(argc, argv) called first thing in main(): the child is a fresh "
        "image of this program");
  }
  if (secure_execution()) {
    throw MisuseError(
        "keel: this process runs in secure-execution mode (setuid, setgid or file capabilities): a fresh image of it "
        "would refuse to be a child; use StartMethod::fork");
  }
  const Nonce nonce = fresh_nonce();
  // The payload travels in a memfd, so its size never blocks the parent; the
  // seals make it a file the child can read without blocking and that nobody
  // can change after the spawn.
  UniqueFd payload(static_cast<int>(::memfd_create("keel-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (payload.get() < 0) throw_os("keel", "memfd_create", errno);
  write_payload(payload.get(), std::string_view(handshake::payload_magic, handshake::magic_bytes));
  write_payload(payload.get(), std::string_view(nonce.data(), nonce.size()));
  write_payload(payload.get(), req.payload);
  if (::fcntl(payload.get(), F_ADD_SEALS, payload_seals) != 0) throw_os("keel", "sealing the payload", errno);
  // The hello channel: SO_PEERCRED on it names this process, its creator.
  int hello_pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hello_pair) != 0)
    throw_os("keel", "socketpair for the child's hello", errno);
  UniqueFd hello(hello_pair[0]), hello_child(hello_pair[1]);

  std::vector<int> sources = req.fds;
  sources.push_back(payload.get());
  sources.push_back(hello_child.get());
  if (req.daemon) sources.push_back(lifeline_read_end());
  const int total = static_cast<int>(sources.size());

  // Copies above every target number first, so that no dup2 into 3+i can
  // overwrite a source still to be moved (a source may already sit at 3+j).
  std::vector<UniqueFd> copies(sources.size());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    copies[i].reset(::fcntl(sources[i], F_DUPFD_CLOEXEC, first_child_fd + total));
    if (copies[i].get() < 0) throw_os("keel", "cannot duplicate an fd for the child", errno);
  }

  SpawnActions act;
  for (int i = 0; i < total; ++i) {
    if (const int rc = posix_spawn_file_actions_adddup2(&act.fa_, copies[i].get(), first_child_fd + i); rc != 0) {
      throw_os("keel", "posix_spawn_file_actions_adddup2", rc);
    }
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Fds that some other code opened without O_CLOEXEC stay in the parent too.
  if (const int rc = posix_spawn_file_actions_addclosefrom_np(&act.fa_, first_child_fd + total); rc != 0) {
    throw_os("keel", "posix_spawn_file_actions_addclosefrom_np", rc);
  }
#endif
  // The child starts with no signal blocked, whatever the spawning thread blocks.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&act.attr_, &none);
  short flags = POSIX_SPAWN_SETSIGMASK;
  if (req.new_process_group) {
    posix_spawnattr_setpgroup(&act.attr_, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
    if (const int rc = posix_spawn_file_actions_addopen(&act.fa_, 0, "/dev/null", O_RDONLY, 0); rc != 0) {
      throw_os("keel", "posix_spawn_file_actions_addopen", rc);
    }
  }
  posix_spawnattr_setflags(&act.attr_, flags);

  std::string tag =
      std::string(child_env) + "=" + std::to_string(req.fds.size()) + "," + (req.daemon ? "1" : "0") + "," + req.role;
  std::vector<char*> envp;
  const std::size_t prefix = std::strlen(child_env) + 1;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, child_env, prefix - 1) == 0 && (*e)[prefix - 1] == '=') continue;
    envp.push_back(*e);
  }
  envp.push_back(tag.data());
  envp.push_back(nullptr);
  std::string argv0 = s.argv0;
  char* argv[] = {argv0.data(), nullptr};

  pid_t pid = -1;
  // posix_spawn reaps a child whose exec failed itself and reports the error.
  if (const int rc = ::posix_spawn(&pid, "/proc/self/exe", &act.fa_, &act.attr_, argv, envp.data()); rc != 0) {
    throw_os("keel", "posix_spawn of /proc/self/exe failed", rc);
  }
  hello_child.reset();
  // The child exists now, so its pid can go into the hello. A failed send
  // (the child already died) is not an error here: the child, if alive,
  // refuses without its hello, and its exit status tells the caller.
  send_hello(hello.get(), pid, nonce);
  return ChildHandle{pid, open_pidfd(pid)};
}

// Why a fresh image will not be a child (SEC-1, SEC-2). The texts are fixed:
// nothing the environment chose is echoed by a process that may be privileged.
struct Refusal {
  const char* reason;
  int error = 0;                    // an errno worth naming, or 0
  bool parent_may_be_gone = false;  // what a parent that died during the handshake also looks like
};

// Leaves at once, with _exit: a refused process runs nothing more of the
// program, not even its atexit handlers and static destructors.
[[noreturn]] void refuse(const Refusal& r) {
  if (r.error != 0) {
    std::fprintf(stderr, "keel: refusing to run as a keel child: %s: %s (exit status %d)\n", r.reason,
                 std::strerror(r.error), refused_child_status);
  } else {
    std::fprintf(stderr, "keel: refusing to run as a keel child: %s (exit status %d)\n", r.reason,
                 refused_child_status);
  }
  std::fflush(stderr);
  ::_exit(refused_child_status);
}

bool same_bytes(const char* a, const char* b, std::size_t n) {
  unsigned char diff = 0;  // no early exit: the time taken says nothing about where a forged nonce goes wrong
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Reads the hello: whole, or a refusal. Bounded by hello_timeout, so a peer
// that holds the socket open and never writes cannot hold this process.
std::optional<Refusal> read_hello(int fd, std::array<char, handshake::hello_bytes>& m) {
  const auto deadline = platform::Deadline::after(handshake::hello_timeout);
  std::size_t got = 0;
  while (got < m.size()) {
    if (!wait_fd(fd, POLLIN, deadline)) return Refusal{"no hello from the parent in time"};
    const ssize_t r = ::recv(fd, m.data() + got, m.size() - got, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Refusal{"cannot read the hello", errno};
    }
    if (r == 0) return Refusal{"the hello channel closed before a whole hello", 0, true};
    got += static_cast<std::size_t>(r);
  }
  return std::nullopt;
}

// Reads the whole payload memfd from offset 0 (its offset is shared with
// whoever else holds it, so pread).
std::optional<Refusal> read_sealed_payload(int fd, const char* nonce, std::string& out) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & payload_seals) != payload_seals) return Refusal{"the payload is not a sealed memfd"};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Refusal{"cannot stat the payload", errno};
  if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(handshake::payload_header_bytes))
    return Refusal{"the payload has no handshake header"};
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Refusal{"cannot read the payload", errno};
    if (r == 0) return Refusal{"the payload is shorter than its size"};  // cannot happen: it is sealed
    got += static_cast<std::size_t>(r);
  }
  if (!same_bytes(out.data(), handshake::payload_magic, handshake::magic_bytes))
    return Refusal{"the payload has no handshake header"};
  if (!same_bytes(out.data() + handshake::magic_bytes, nonce, handshake::nonce_bytes))
    return Refusal{"the payload's nonce is not the hello's"};
  out.erase(0, handshake::payload_header_bytes);
  return std::nullopt;
}

// A daemon child whose parent died during the handshake finds itself
// reparented (so the hello's creator is no longer its parent) or its hello cut
// short. That is no forgery: it leaves as its lifeline watcher would have, with
// status 1. The lifeline pipe's write end closes as the parent exits, normally
// before the reparenting, but a multi-threaded parent may be reparented first:
// hence the short bounded wait. Only a pipe that hung up counts, so a forged
// lifeline fd cannot turn a refusal into anything but a refusal or status 1,
// and no role runs either way.
bool lifeline_hung_up(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return false;
  const auto deadline = platform::Deadline::after(std::chrono::seconds(1));
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 10);
    if (r > 0) return (p.revents & POLLHUP) != 0;
    if ((r < 0 && errno != EINTR) || deadline.expired()) return false;
  }
}

// The child's half of the spawn handshake (SEC-1); on success, the payload.
//
// What passing proves. socketpair records its creator, so SO_PEERCRED says
// that our parent process made the hello socket, under our effective uid and
// gid; the hello names our pid, so it was written for this process after it
// started; the nonce, drawn fresh for each spawn, is the one inside the sealed
// payload beside it, so both fds belong to one spawn (no stale socket, no
// payload of another spawn). Hence KEEL_CHILD alone, or with fds that someone
// other than our parent prepared (an accidentally inherited environment, a
// supervisor passing sockets of its own), is refused: passing needs a parent
// that spawned us on purpose and chose our fds, as our own user. It does not
// prove that the parent is keel or benign: a same-user parent can forge all of
// this, but it could as well ptrace us, so it gains nothing. Where an attacker
// of another user starts us with privileges (setuid, setgid, capabilities),
// secure-execution mode is refused before this runs (SEC-2); the uid and gid
// check applies the same rule to parents that start us under other ids.
std::optional<Refusal> check_handshake(int payload_fd, int hello_fd, std::string& payload) {
  struct stat st {};
  if (::fstat(hello_fd, &st) != 0) return Refusal{"no hello channel at its fd", errno};
  if (!S_ISSOCK(st.st_mode)) return Refusal{"the hello channel is not a socket"};
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(hello_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX)
    return Refusal{"the hello channel is not a Unix socket"};
  ucred cred{};
  len = sizeof cred;
  if (::getsockopt(hello_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return Refusal{"cannot read the hello channel's credentials", errno};
  if (cred.pid != ::getppid()) return Refusal{"the hello channel was not made by the parent process", 0, true};
  if (cred.uid != ::geteuid() || cred.gid != ::getegid())
    return Refusal{"the hello channel was made under another user or group"};
  std::array<char, handshake::hello_bytes> m{};
  if (auto r = read_hello(hello_fd, m)) return r;
  std::int32_t pid = 0;
  std::memcpy(&pid, m.data() + handshake::magic_bytes, sizeof pid);
  if (!same_bytes(m.data(), handshake::hello_magic, handshake::magic_bytes)) return Refusal{"the hello is malformed"};
  if (pid != static_cast<std::int32_t>(::getpid())) return Refusal{"the hello names another process"};
  return read_sealed_payload(payload_fd, m.data() + handshake::magic_bytes + sizeof pid, payload);
}

}  // namespace

void register_child_role(std::string name, ChildRole fn) {
  if (name.empty()) throw ValueError("keel: a child role needs a name");
  if (fn == nullptr) throw ValueError("keel: child role '" + name + "' has no function");
  Roles& r = roles();
  LockGuard lock(r.mutex);
  if (!r.table.emplace(name, fn).second) throw ValueError("keel: child role '" + name + "' is already registered");
}

ChildRole find_child_role(std::string_view name) {
  Roles& r = roles();
  LockGuard lock(r.mutex);
  const auto it = r.table.find(name);
  return it == r.table.end() ? nullptr : it->second;
}

ChildHandle spawn_child(const SpawnRequest& req) {
  ChildRole fn = nullptr;
  validate(req, fn);
  return req.start == StartMethod::fork ? fork_child(req, fn) : posix_spawn_child(req);
}

int exit_code_from_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return still_running;
}

int reap_child(ChildHandle& h, bool block) {
  if (h.pid <= 0) throw OsError(ECHILD, "keel: reap_child: no unreaped child in this handle");
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(h.pid, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return still_running;
  if (r < 0) throw_os("keel", "waitpid", errno);
  if (h.pidfd >= 0) ::close(h.pidfd);
  h.pidfd = -1;
  h.pid = -1;
  return exit_code_from_status(status);
}

void record_bootstrap(int argc, char** argv) {
  ProcessState& s = state();
  if (argc > 0 && argv != nullptr && argv[0] != nullptr) s.argv0 = argv[0];
  s.booted = true;
  // A would-be child opens nothing before its handshake has looked at the fds
  // it was given (its own lifeline would take the first free number, which may
  // be a slot of the layout); run_role opens it once the role may run.
  if (std::getenv(child_env) == nullptr) lifeline_read_end();
}

bool bootstrapped() { return state().booted; }

bool in_forked_child() noexcept { return state().forked_child; }

bool wait_fd(int fd, short events, const platform::Deadline& deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    timespec ts{};
    timespec* tsp = nullptr;
    if (!deadline.is_never()) {
      // Compare before subtracting: an expired deadline may be time_point::min().
      const auto now = platform::SteadyClock::now();
      if (deadline.point() > now) {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.point() - now).count();
        ts.tv_sec = static_cast<time_t>(ns / 1000000000);
        ts.tv_nsec = static_cast<long>(ns % 1000000000);
      }
      tsp = &ts;
    }
    const int r = ::ppoll(&p, 1, tsp, nullptr);
    if (r > 0) return true;
    if (r == 0) {
      if (deadline.expired()) return false;
      continue;  // woke a little early: wait out the rest
    }
    if (errno != EINTR) throw_os("keel", "poll", errno);
  }
}

bool secure_execution() noexcept { return ::getauxval(AT_SECURE) != 0; }

std::optional<int> run_child_from_environment() {
  const char* tag = std::getenv(child_env);
  if (tag == nullptr) return std::nullopt;
  const std::string spec = tag;
  ::unsetenv(child_env);  // grandchildren started by other means must not take it for theirs
  // Before anything the caller chose is used: with setuid, setgid or file
  // capabilities, the environment and the fds are another user's (SEC-2).
  if (secure_execution())
    refuse(Refusal{"this program runs in secure-execution mode (setuid, setgid or file capabilities)"});
  // "<n>,<daemon>,<role>"
  const auto c1 = spec.find(',');
  const auto c2 = c1 == std::string::npos ? std::string::npos : spec.find(',', c1 + 1);
  int n = -1;
  if (c2 != std::string::npos) {
    try {
      n = std::stoi(spec.substr(0, c1));
    } catch (const std::exception&) {
      n = -1;
    }
  }
  if (n < 0 || n > 4096 || (spec[c1 + 1] != '0' && spec[c1 + 1] != '1')) {
    std::fprintf(stderr, "keel child: malformed %s=%s\n", child_env, spec.c_str());
    return 127;
  }
  const bool daemon = spec[c1 + 1] == '1';
  ChildContext ctx;
  ctx.role = spec.substr(c2 + 1);
  const int payload_fd = first_child_fd + n;
  const int hello_fd = payload_fd + 1;
  const int lifeline_fd = daemon ? payload_fd + 2 : -1;
  // The handshake comes before the payload is used, the role looked up or a
  // thread started (SEC-1).
  std::optional<Refusal> refusal;
  try {
    refusal = check_handshake(payload_fd, hello_fd, ctx.payload);
  } catch (const OsError& e) {
    refusal = Refusal{"cannot wait for the hello", e.code()};
  } catch (const std::exception&) {
    refusal = Refusal{"cannot hold the payload in memory"};
  }
  ::close(hello_fd);
  ::close(payload_fd);
  if (refusal) {
    if (refusal->parent_may_be_gone && lifeline_fd >= 0 && lifeline_hung_up(lifeline_fd)) return 1;
    refuse(*refusal);
  }
  {
    // Exec'd through /proc/self/exe, the child would show as "exe" in ps and
    // top: give it the program's own name, as the parent has.
    const std::string& a0 = state().argv0;
    const auto slash = a0.rfind('/');
    ::prctl(PR_SET_NAME, (slash == std::string::npos ? a0 : a0.substr(slash + 1)).substr(0, 15).c_str());
  }
  // Watch the parent before running anything: a parent already gone means EOF now.
  if (lifeline_fd >= 0) {
    set_cloexec(lifeline_fd);
    start_lifeline_watcher(lifeline_fd);
  }
  for (int i = 0; i < n; ++i) ctx.fds.push_back(first_child_fd + i);
  const ChildRole fn = find_child_role(ctx.role);
  if (fn == nullptr) {
    std::fprintf(stderr, "keel child: no role named '%s' is registered in this program\n", ctx.role.c_str());
    return 127;
  }
  return run_role(fn, ctx, -1);
}

}  // namespace keel::detail
