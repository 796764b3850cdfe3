// Process: the parent's bookkeeping around one child, and the child roles
// "process" (run a registered task) and "keel-fork-call" (run a callable in a
// forked child).
#include "keel/process/process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/process/codec.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {
namespace {

constexpr const char* task_role = "process";
constexpr const char* fork_call_role = "keel-fork-call";

struct ThisProcess {
  std::string name = "MainProcess";
  std::vector<Connection> connections;
};
ThisProcess& this_proc() {
  static ThisProcess& t = *new ThisProcess;  // never destroyed: read by threads that outlive exit()
  return t;
}

std::string next_default_name() {
  static platform::Atomic<int> counter{0};  // only uniqueness matters: relaxed
  return "Process-" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed) + 1);
}

// The child side of both roles: name and connections for this_process.
void adopt_context(std::string name, const detail::ChildContext& ctx) {
  ThisProcess& t = this_proc();
  // A forked child holds the parent's Connection objects, whose fd numbers now
  // name other files (or this child's own connections): forget them unclosed.
  for (Connection& c : t.connections) (void)c.detach();
  t.connections.clear();
  t.name = std::move(name);
  for (int fd : ctx.fds) t.connections.emplace_back(fd);
}

void report_task_error(const std::string& task, const std::exception_ptr& e) {
  std::string type = "unknown", message = "unknown exception";
  try {
    const RemoteError r = detail::decode_error(detail::encode_error(e));
    type = r.type();
    message = r.message();
  } catch (...) {
  }
  std::fprintf(stderr, "Process %s (pid %d): task '%s' raised %s: %s\n", this_proc().name.c_str(),
               static_cast<int>(::getpid()), task.c_str(), type.c_str(), message.c_str());
  std::fflush(stderr);
}

int run_task_role(const detail::ChildContext& ctx) {
  Decoder d(ctx.payload);
  std::string name = d.get<std::string>();
  const std::string task = d.get<std::string>();
  const std::string args = d.get<std::string>();
  d.expect_end();
  adopt_context(std::move(name), ctx);
  try {
    (void)detail::invoke_task(task, args);
  } catch (...) {
    report_task_error(task, std::current_exception());
    return 1;
  }
  return 0;
}

int run_fork_call_role(const detail::ChildContext& ctx) {
  // The payload holds the address of a std::function in the parent's memory:
  // meaningful only in a forked copy of that memory.
  if (!detail::in_forked_child()) {
    std::fprintf(stderr, "keel: role %s only runs in a forked child\n", fork_call_role);
    return 127;
  }
  Decoder d(ctx.payload);
  std::string name = d.get<std::string>();
  const auto address = d.get<std::uint64_t>();
  d.expect_end();
  adopt_context(std::move(name), ctx);
  // The forked child runs on a copy of the parent's memory, so the parent's
  // address of the callable is valid here.
  const auto* fn = reinterpret_cast<const std::function<int()>*>(  // NOLINT(performance-no-int-to-ptr)
      static_cast<std::uintptr_t>(address));
  try {
    return (*fn)();
  } catch (...) {
    report_task_error("<fork_call>", std::current_exception());
    return 1;
  }
}

const bool roles_registered = [] {
  detail::register_child_role(task_role, &run_task_role);
  detail::register_child_role(fork_call_role, &run_fork_call_role);
  return true;
}();

}  // namespace

struct Process::State {
  std::string name;
  bool daemon = false;
  StartMethod start = StartMethod::spawn;
  std::string role;
  std::string payload;
  std::vector<std::reference_wrapper<const Connection>> connections;
  std::function<int()> fn;  // fork_call only

  Mutex mutex;
  bool started = false;
  int pid = -1;  // kept after the child is reaped
  int pidfd = -1;
  std::optional<int> exitcode;  // set once reaped
  int waiters = 0;              // joiners polling pidfd: it stays open while there are any

  // Under mutex. The pid stays ours until waitpid succeeds here, so a signal
  // sent under the same lock can never reach a recycled pid.
  void try_reap() {
    if (!started || exitcode) return;
    detail::ChildHandle h{pid, -1};
    const int code = detail::reap_child(h, false);
    if (code != detail::still_running) {
      exitcode = code;
      release_pidfd();
    }
  }
  void release_pidfd() {
    if (exitcode && waiters == 0 && pidfd >= 0) {
      ::close(pidfd);
      pidfd = -1;
    }
  }
};

Process::Process(ProcessOptions options, const std::string& task_name, const std::string& encoded_args)
    : state_(std::make_unique<State>()) {
  (void)roles_registered;
  if (!detail::task_registered(task_name)) {
    throw ValueError("keel::Process: no task named '" + task_name + "' is registered");
  }
  State& s = *state_;
  s.name = options.name.empty() ? next_default_name() : std::move(options.name);
  s.daemon = options.daemon;
  s.start = options.start;
  s.connections = std::move(options.connections);
  s.role = task_role;
  s.payload = keel::encode(s.name, task_name, encoded_args);
}

Process Process::fork_call(std::function<int()> fn, ProcessOptions options) {
  if (!fn) throw ValueError("keel::Process::fork_call: empty function");
  Process p;
  p.state_ = std::make_unique<State>();
  State& s = *p.state_;
  s.name = options.name.empty() ? next_default_name() : std::move(options.name);
  s.daemon = options.daemon;
  s.start = StartMethod::fork;
  s.connections = std::move(options.connections);
  s.role = fork_call_role;
  s.fn = std::move(fn);
  // The State lives on the heap and never moves, so the address stays valid.
  s.payload = keel::encode(s.name, static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&s.fn)));
  return p;
}

Process::Process(Process&&) noexcept = default;

Process::~Process() {
  if (!state_) return;
  State& s = *state_;
  try {
    if (s.started && !s.exitcode) {
      if (s.daemon) ::kill(s.pid, SIGKILL);
      detail::ChildHandle h{s.pid, -1};
      s.exitcode = detail::reap_child(h, true);
    }
  } catch (...) {
    // Someone else reaped it (waitpid(-1) elsewhere): nothing is left to do.
  }
  if (s.pidfd >= 0) ::close(s.pidfd);
}

Process::State& Process::state(const char* op) const {
  if (!state_) throw MisuseError(std::string("keel::Process::") + op + ": the Process was moved from");
  return *state_;
}

void Process::start() {
  State& s = state("start");
  LockGuard lock(s.mutex);
  if (s.started) throw MisuseError("keel::Process::start: a process can only be started once");
  detail::SpawnRequest req{.role = s.role, .fds = {}, .daemon = s.daemon, .start = s.start, .payload = s.payload};
  for (std::size_t i = 0; i < s.connections.size(); ++i) {
    const Connection& c = s.connections[i].get();
    if (c.closed()) throw ValueError("keel::Process::start: connection " + std::to_string(i) + " is closed");
    req.fds.push_back(c.fileno());
  }
  const detail::ChildHandle h = detail::spawn_child(req);
  s.pid = h.pid;
  s.pidfd = h.pidfd;
  s.started = true;
}

bool Process::join_until(const platform::Deadline& deadline) {
  State& s = state("join");
  int fd;
  {
    LockGuard lock(s.mutex);
    if (!s.started) throw MisuseError("keel::Process::join: the process was not started");
    s.try_reap();
    if (s.exitcode) return true;
    ++s.waiters;
    fd = s.pidfd;
  }
  auto nap = std::chrono::milliseconds(1);
  for (;;) {
    try {
      if (fd >= 0) {
        (void)detail::wait_fd(fd, POLLIN, deadline);
      } else if (!deadline.expired()) {
        // No pidfd (kernel < 5.3): poll waitpid with a growing nap.
        auto step = std::chrono::duration_cast<std::chrono::nanoseconds>(nap);
        if (!deadline.is_never()) {
          const auto now = platform::SteadyClock::now();
          step =
              deadline.point() > now ? std::min(step, std::chrono::nanoseconds(deadline.point() - now)) : step.zero();
        }
        if (step.count() > 0) {
          const timespec ts{static_cast<time_t>(step.count() / 1000000000),
                            static_cast<long>(step.count() % 1000000000)};
          ::nanosleep(&ts, nullptr);
        }
        nap = std::min(nap * 2, std::chrono::milliseconds(20));
      }
      LockGuard lock(s.mutex);
      s.try_reap();
      if (s.exitcode || deadline.expired()) {
        --s.waiters;
        s.release_pidfd();
        return s.exitcode.has_value();
      }
    } catch (...) {
      LockGuard lock(s.mutex);
      --s.waiters;
      s.release_pidfd();
      throw;
    }
  }
}

bool Process::is_alive() {
  State& s = state("is_alive");
  LockGuard lock(s.mutex);
  s.try_reap();
  return s.started && !s.exitcode;
}

std::optional<int> Process::exitcode() {
  State& s = state("exitcode");
  LockGuard lock(s.mutex);
  s.try_reap();
  return s.exitcode;
}

void Process::send_signal(int sig, const char* op) {
  State& s = state(op);
  LockGuard lock(s.mutex);
  if (!s.started) throw MisuseError(std::string("keel::Process::") + op + ": the process was not started");
  if (s.exitcode) return;
  if (::kill(s.pid, sig) != 0 && errno != ESRCH) {
    throw OsError(errno, std::string("keel::Process::") + op + ": kill: " + std::strerror(errno));
  }
}

void Process::terminate() { send_signal(SIGTERM, "terminate"); }
void Process::kill() { send_signal(SIGKILL, "kill"); }

int Process::pid() const {
  State& s = state("pid");
  LockGuard lock(s.mutex);
  return s.pid;
}

const std::string& Process::name() const { return state("name").name; }
bool Process::daemon() const { return state("daemon").daemon; }

namespace this_process {

Connection& connection(std::size_t i) {
  ThisProcess& t = this_proc();
  if (i >= t.connections.size()) {
    throw ValueError("keel::this_process::connection(" + std::to_string(i) + "): this process was given " +
                     std::to_string(t.connections.size()) + " connection(s)");
  }
  return t.connections[i];
}

std::size_t connection_count() noexcept { return this_proc().connections.size(); }

const std::string& name() noexcept { return this_proc().name; }

}  // namespace this_process

}  // namespace keel
