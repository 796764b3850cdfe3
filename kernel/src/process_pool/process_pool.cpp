// keel::ProcessPool: the I/O driver around the supervisor state machine.
//
// One supervisor thread owns everything that touches the workers: their
// channels (nonblocking stream sockets), their pidfds and the Machine. Each
// turn it polls the doorbell (an eventfd the Edge rings), every channel and
// every pidfd, with the machine's next deadline as the timeout; feeds what it
// saw to the machine as events; carries out the actions; and writes what is
// pending. It reports a worker's exit only once the worker's channel was read
// to its end and its pidfd said it exited, so every answer the worker wrote
// reaches the machine before its death does (the machine relies on it).
#include "keel/process_pool/process_pool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "keel/platform/thread.hpp"
#include "keel/process_pool/edge.hpp"
#include "keel/process_pool/machine.hpp"
#include "keel/sync/mutex.hpp"
#include "protocol.hpp"

namespace keel {

namespace pool {
int pool_worker_main(const detail::ChildContext& ctx);
}

namespace {

const bool worker_role_registered = [] {
  detail::register_child_role("pool", &pool::pool_worker_main);
  return true;
}();

pool::Nanos now_ns() { return std::chrono::steady_clock::now().time_since_epoch(); }

[[noreturn]] void throw_os(const char* what) {
  const int e = errno;
  throw OsError(e, std::string("ProcessPool: ") + what + ": " + std::strerror(e));
}

std::string describe_exit(int code) {
  if (code < 0) {
    const char* name = sigabbrev_np(-code);
    return "was killed by signal " + std::to_string(-code) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited with status " + std::to_string(code);
}

unsigned usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  const unsigned n = platform::Thread::hardware_concurrency();
  return n ? n : 1;
}

// Whether the calling thread is some pool's supervisor (done callbacks run
// there, and must not wait for a pool).
thread_local bool on_supervisor = false;

}  // namespace

namespace detail {

class PoolDriver final : public pool::StartGate, public pool::Doorbell {
 public:
  PoolDriver(const ProcessPoolOptions& o, unsigned workers) : opts_(o) {
    bell_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (bell_fd_ < 0) throw_os("eventfd");
    pool::MachineConfig mc;
    mc.workers = workers;
    mc.depth = o.max_in_flight ? o.max_in_flight : 64;
    mc.max_tasks_per_child = o.max_tasks_per_child;
    mc.retries = o.retries;
    mc.restart_limit = o.restart_limit;
    mc.restart_window = o.restart_window;
    mc.has_initializer = o.initializer.has_value();
    machine_ = std::make_unique<pool::Machine>(mc, *this);
    Encoder e;
    e.put(o.initializer ? o.initializer->task : std::string());
    e.put(o.initializer ? o.initializer->args : std::string());
    e.put(static_cast<std::uint64_t>(o.max_message));
    spawn_payload_ = e.take();
    try {
      thread_.start([this] { run(); });
    } catch (...) {
      ::close(bell_fd_);
      throw;
    }
  }

  ~PoolDriver() {
    if (thread_.joinable()) thread_.join();
    ::close(bell_fd_);
  }

  pool::Edge& edge() { return edge_; }
  void join() {
    LockGuard<Mutex> g(join_m_);
    if (thread_.joinable()) thread_.join();
  }

  ProcessPoolStats stats() const {
    LockGuard<Mutex> g(stats_m_);
    return stats_;
  }
  std::vector<int> pids() const {
    LockGuard<Mutex> g(stats_m_);
    return pids_;
  }

  // Doorbell: the edge rings when its inbox turns non-empty.
  void ring() override {
    const std::uint64_t one = 1;
    while (::write(bell_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  // StartGate: asked once per task, just before its first send.
  bool try_start(pool::TaskId t) override {
    auto it = calls_.find(t);
    return it != calls_.end() && it->second->try_start();
  }

 private:
  struct WorkerIo {
    pool::WorkerId id = 0;
    ChildHandle child;
    int pid = -1;
    int fd = -1;
    FrameReader reader;
    std::string out;
    std::size_t out_off = 0;
    bool eof = false;     // the channel was read to its end
    bool exited = false;  // the pidfd says the process is gone
    bool faulty = false;  // it broke the protocol and was killed
    explicit WorkerIo(std::size_t max) : reader(max + 64) {}
  };

  void run();
  void turn();
  void take_commands();
  void read_worker(WorkerIo& w);
  void handle_frame(WorkerIo& w, const FrameView& f);
  void flush(WorkerIo& w);
  void apply();
  void spawn(pool::WorkerId id);
  void resolve(const pool::Action& a);
  void reap_exited();
  void publish();
  WorkerIo* io(pool::WorkerId id) {
    auto it = io_.find(id);
    return it == io_.end() ? nullptr : &it->second;
  }
  std::string broken_message() const;

  ProcessPoolOptions opts_;
  std::string spawn_payload_;
  int bell_fd_ = -1;
  pool::Edge edge_{*this};
  std::unique_ptr<pool::Machine> machine_;
  std::unordered_map<pool::TaskId, std::unique_ptr<PoolCall>> calls_;
  std::unordered_map<pool::WorkerId, WorkerIo> io_;
  std::vector<pool::Command> commands_;
  std::vector<pool::WorkerId> failed_spawns_;
  std::string init_error_;  // what a failed initializer raised
  platform::Thread thread_;
  Mutex join_m_;
  mutable Mutex stats_m_;
  ProcessPoolStats stats_ KEEL_GUARDED_BY(stats_m_);
  std::vector<int> pids_ KEEL_GUARDED_BY(stats_m_);
  std::vector<pollfd> pfds_;
};

void PoolDriver::run() {
  on_supervisor = true;
  platform::set_current_thread_name("keel-procpool");
  machine_->start(now_ns());
  apply();
  bool broken = false;
  while (!machine_->terminated()) {
    turn();
    if (!broken && machine_->phase() == pool::Machine::Phase::broken) {
      // Refuse new work at once; what was accepted meanwhile is failed below.
      broken = true;
      edge_.set_broken(broken_message());
    }
  }
  // The edge is closed (shutdown, terminate or broken): anything it accepted
  // before closing and not yet taken is handed to the machine now, which
  // resolves it (only a broken pool can have such stragglers).
  take_commands();
  publish();
  edge_.set_terminated();
}

void PoolDriver::turn() {
  pfds_.clear();
  pfds_.push_back({bell_fd_, POLLIN, 0});
  std::vector<pool::WorkerId> order;
  order.reserve(io_.size());
  for (auto& [id, w] : io_) {
    order.push_back(id);
    short ev = 0;
    if (!w.eof) ev |= POLLIN;
    if (w.out_off < w.out.size()) ev |= POLLOUT;
    pfds_.push_back({w.eof ? -1 : w.fd, ev, 0});
    pfds_.push_back({w.exited ? -1 : w.child.pidfd, POLLIN, 0});
  }
  int timeout = -1;
  const pool::Nanos deadline = machine_->next_deadline();
  if (!failed_spawns_.empty()) {
    timeout = 0;
  } else if (deadline != pool::Nanos::max()) {
    const auto left = deadline - now_ns();
    timeout =
        left <= pool::Nanos::zero() ? 0 : static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
  }
  const int n = ::poll(pfds_.data(), pfds_.size(), timeout);
  if (n < 0 && errno != EINTR) throw_os("poll");

  for (pool::WorkerId id : failed_spawns_) machine_->worker_exited(id, 127, now_ns());
  failed_spawns_.clear();
  apply();

  if (n > 0 && (pfds_[0].revents & POLLIN)) {
    std::uint64_t v;
    while (::read(bell_fd_, &v, sizeof v) < 0 && errno == EINTR) {
    }
  }
  // Commands first: submits queued before a shutdown are seen before it.
  take_commands();
  for (std::size_t i = 0; i < order.size(); ++i) {
    WorkerIo* w = io(order[i]);
    if (!w) continue;
    const pollfd& ch = pfds_[1 + 2 * i];
    const pollfd& pid = pfds_[2 + 2 * i];
    if (ch.revents & (POLLIN | POLLHUP | POLLERR)) read_worker(*w);
    if (w->child.pidfd < 0 && w->eof) w->exited = true;  // no pidfd (old kernel): EOF means gone
    if (pid.revents & POLLIN) {
      w->exited = true;
      // Whatever it wrote before dying is in the socket: read it all now.
      if (!w->eof) read_worker(*w);
    }
    if (ch.revents & POLLOUT) flush(*w);
  }
  apply();
  reap_exited();
  machine_->tick(now_ns());
  apply();
  for (auto& [id, w] : io_) flush(w);
  publish();
}

void PoolDriver::take_commands() {
  commands_.clear();
  edge_.take(commands_);
  for (auto& c : commands_) {
    switch (c.kind) {
      case pool::Command::submit:
        calls_.emplace(c.task, std::unique_ptr<PoolCall>(static_cast<PoolCall*>(c.payload)));
        machine_->submit(c.task, c.timeout, now_ns());
        break;
      case pool::Command::shutdown:
        machine_->shutdown(c.cancel_futures, now_ns());
        break;
      case pool::Command::terminate:
        machine_->terminate(c.signal, now_ns());
        break;
    }
    apply();
  }
}

void PoolDriver::read_worker(WorkerIo& w) {
  char scratch[4096];
  for (;;) {
    // A faulty worker's bytes are drained and dropped (its reader has failed).
    auto span = w.faulty ? std::span<char>(scratch, sizeof scratch) : w.reader.prepare(std::size_t{64} * 1024);
    const ssize_t n = ::read(w.fd, span.data(), span.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      w.eof = true;  // ECONNRESET and the like: nothing more will come
      return;
    }
    if (n == 0) {
      w.eof = true;
      return;
    }
    if (w.faulty) continue;
    w.reader.commit(static_cast<std::size_t>(n));
    try {
      while (auto f = w.reader.next()) {
        handle_frame(w, *f);
        apply();
        if (w.faulty) break;
      }
    } catch (const ProtocolError&) {
      // A worker that writes garbage cannot be trusted with anything more.
      w.faulty = true;
      ::kill(w.pid, SIGKILL);
    }
  }
}

void PoolDriver::handle_frame(WorkerIo& w, const FrameView& f) {
  const auto now = now_ns();
  switch (f.kind) {
    case pool::proto::ready:
      machine_->worker_ready(w.id, now);
      return;
    case pool::proto::init_failed:
      if (init_error_.empty()) init_error_ = decode_error(f.payload).what();
      machine_->init_failed(w.id, now);
      return;
    case pool::proto::ok:
    case pool::proto::error: {
      // The answer is applied here, while the payload view is valid; the
      // machine's resolve action for it finds the call already answered.
      const bool expected = machine_->result(w.id, f.id, now);
      if (!expected) {
        w.faulty = true;
        return;
      }
      auto& acts = machine_->actions();
      for (std::size_t i = 0; i < acts.size(); ++i) {
        if (acts[i].kind == pool::Action::resolve && acts[i].task == f.id && acts[i].outcome == pool::Outcome::value) {
          auto it = calls_.find(f.id);
          if (it != calls_.end()) {
            it->second->complete(f.kind == pool::proto::ok, f.payload);
            calls_.erase(it);
          }
          acts.erase(acts.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        }
      }
      return;
    }
    default:
      throw ProtocolError("ProcessPool: a worker sent an unknown frame kind " + std::to_string(f.kind));
  }
}

void PoolDriver::flush(WorkerIo& w) {
  while (w.out_off < w.out.size() && !w.eof) {
    const ssize_t n = ::send(w.fd, w.out.data() + w.out_off, w.out.size() - w.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      // The worker is gone (EPIPE): what it had not read dies with it.
      w.out.clear();
      w.out_off = 0;
      return;
    }
    w.out_off += static_cast<std::size_t>(n);
  }
  if (w.out_off == w.out.size()) {
    w.out.clear();
    w.out_off = 0;
  }
}

void PoolDriver::apply() {
  auto& acts = machine_->actions();
  // Actions may produce more actions only through events, which this loop
  // does not feed, so a swap is safe.
  std::vector<pool::Action> batch;
  batch.swap(acts);
  // Statistics are published before a death, a timeout or a break is
  // resolved, so a thread woken by that future sees it counted.
  for (const auto& a : batch) {
    if (a.kind == pool::Action::resolve) {
      publish();
      break;
    }
  }
  for (const auto& a : batch) {
    switch (a.kind) {
      case pool::Action::spawn:
        spawn(a.worker);
        break;
      case pool::Action::send: {
        WorkerIo* w = io(a.worker);
        auto it = calls_.find(a.task);
        if (w && it != calls_.end()) {
          append_frame(w->out, it->second->kind, a.task, it->second->payload, opts_.max_message + 64);
        }
        break;
      }
      case pool::Action::close:
        if (WorkerIo* w = io(a.worker)) append_frame(w->out, pool::proto::close, 0, {});
        break;
      case pool::Action::kill:
        if (WorkerIo* w = io(a.worker); w && !w->exited) ::kill(w->pid, a.code);
        break;
      case pool::Action::resolve:
        resolve(a);
        break;
      case pool::Action::terminated:
        break;
    }
  }
}

void PoolDriver::spawn(pool::WorkerId id) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
    failed_spawns_.push_back(id);
    return;
  }
  // The worker's end blocks: it has nothing else to do while it waits.
  const int flags = ::fcntl(sv[1], F_GETFL);
  ::fcntl(sv[1], F_SETFL, flags & ~O_NONBLOCK);
  SpawnRequest req;
  req.role = "pool";
  req.fds = {sv[1]};
  req.daemon = true;
  req.start = opts_.start;
  req.payload = spawn_payload_;
  ChildHandle h;
  try {
    h = spawn_child(req);
  } catch (const Error&) {
    ::close(sv[0]);
    ::close(sv[1]);
    failed_spawns_.push_back(id);
    return;
  }
  ::close(sv[1]);
  auto [it, inserted] = io_.try_emplace(id, opts_.max_message);
  (void)inserted;
  it->second.id = id;
  it->second.child = h;
  it->second.pid = h.pid;
  it->second.fd = sv[0];
}

void PoolDriver::resolve(const pool::Action& a) {
  auto it = calls_.find(a.task);
  if (it == calls_.end()) return;
  PoolCall& c = *it->second;
  switch (a.outcome) {
    case pool::Outcome::value:
      // Answers are applied as they are read (handle_frame); this one came
      // without an answer, which the machine never does.
      c.fail(std::make_exception_ptr(ProtocolError("ProcessPool: task resolved without an answer")));
      break;
    case pool::Outcome::lost: {
      const WorkerIo* w = io(a.worker);
      const int pid = w ? w->pid : -1;
      c.fail(std::make_exception_ptr(WorkerLost(pid, a.code,
                                                "ProcessPool: the worker (pid " + std::to_string(pid) +
                                                    ") running task '" + c.name + "' " + describe_exit(a.code))));
      break;
    }
    case pool::Outcome::timed_out:
      c.fail(std::make_exception_ptr(
          TimeoutError("ProcessPool: task '" + c.name + "' ran past its timeout; its worker was killed")));
      break;
    case pool::Outcome::cancelled:
      c.cancel();
      break;
    case pool::Outcome::broken:
      c.fail(std::make_exception_ptr(BrokenProcessPool(broken_message())));
      break;
  }
  calls_.erase(it);
}

std::string PoolDriver::broken_message() const {
  switch (machine_->broken_reason()) {
    case pool::BrokenReason::initializer_failed:
      return "ProcessPool is broken: the worker initializer raised " + init_error_;
    case pool::BrokenReason::initializer_died:
      return "ProcessPool is broken: a worker " + describe_exit(machine_->broken_code()) + " in its initializer";
    case pool::BrokenReason::restart_limit:
      return "ProcessPool is broken: workers died more than " + std::to_string(opts_.restart_limit) +
             " times within the restart window (the last " + describe_exit(machine_->broken_code()) + ")";
    case pool::BrokenReason::none:
      break;
  }
  return "ProcessPool is broken";
}

void PoolDriver::reap_exited() {
  for (auto it = io_.begin(); it != io_.end();) {
    WorkerIo& w = it->second;
    if (!(w.exited && w.eof)) {
      ++it;
      continue;
    }
    const int code = reap_child(w.child, true);
    machine_->worker_exited(w.id, code, now_ns());
    apply();  // resolutions may name this worker's pid: it is still here
    ::close(w.fd);
    it = io_.erase(it);
  }
}

void PoolDriver::publish() {
  const auto& c = machine_->counters();
  LockGuard<Mutex> g(stats_m_);
  stats_.workers = 0;
  for (const auto& [id, w] : io_) stats_.workers += w.exited ? 0 : 1;
  stats_.ready = machine_->ready_workers();
  stats_.queued = machine_->queued();
  stats_.in_flight = machine_->in_flight();
  stats_.submitted = c.submitted;
  stats_.completed = c.completed;
  stats_.lost = c.lost;
  stats_.timed_out = c.timed_out;
  stats_.cancelled = c.cancelled;
  stats_.broken = c.broken;
  stats_.retried = c.retried;
  stats_.requeued = c.requeued;
  stats_.spawned = c.spawned;
  stats_.deaths = c.deaths;
  stats_.replacements = c.replacements;
  stats_.retirements = c.retirements;
  pids_.clear();
  for (const auto& [id, w] : io_)
    if (!w.exited) pids_.push_back(w.pid);
}

}  // namespace detail

ProcessPool::ProcessPool(const ProcessPoolOptions& options)
    : workers_(options.workers ? options.workers : usable_cpus()),
      max_message_(options.max_message),
      task_timeout_(options.task_timeout) {
  (void)worker_role_registered;
  if (options.max_message < min_max_message) {
    throw ValueError("ProcessPool: max_message must be at least " + std::to_string(min_max_message) +
                     " bytes (room for a worker's error report), not " + std::to_string(options.max_message));
  }
  if (options.max_message > 0xFFFFFFF0u) throw ValueError("ProcessPool: max_message must fit in 32 bits");
  if (options.task_timeout < std::chrono::nanoseconds::zero())
    throw ValueError("ProcessPool: task_timeout must not be negative");
  if (options.restart_window <= std::chrono::nanoseconds::zero())
    throw ValueError("ProcessPool: restart_window must be positive");
  if (options.initializer && !detail::task_registered(options.initializer->task))
    throw ValueError("ProcessPool: the initializer '" + options.initializer->task + "' is not a registered task");
  if (!detail::bootstrapped() && options.start == StartMethod::spawn)
    throw MisuseError("ProcessPool: call keel::bootstrap(argc, argv) first thing in main()");
  d_ = std::make_unique<detail::PoolDriver>(options, workers_);
}

ProcessPool::~ProcessPool() {
  if (!d_) return;
  if (on_supervisor) {
    // Destroyed from one of its own done callbacks: waiting would deadlock.
    // Nothing better is possible than leaving the supervisor running.
    d_->edge().request(pool::Command{pool::Command::shutdown});
    (void)d_.release();
    return;
  }
  shutdown({.wait = true});
}

std::string ProcessPool::call_payload(const std::string& name, const std::string& args) {
  Encoder e;
  e.put(static_cast<std::uint32_t>(name.size()));
  e.put_raw(name.data(), name.size());
  e.put_raw(args.data(), args.size());
  return e.take();
}

std::string ProcessPool::chunk_payload(const std::string& name, const std::vector<std::string>& args) {
  return encode(name, args);
}

void ProcessPool::check_size(const detail::PoolCall& call) const {
  if (call.payload.size() > max_message_) {
    throw ProtocolError("ProcessPool: the arguments of task '" + call.name + "' are " +
                        std::to_string(call.payload.size()) + " bytes, above max_message (" +
                        std::to_string(max_message_) + ")");
  }
}

void ProcessPool::enqueue(std::unique_ptr<detail::PoolCall> call, std::optional<std::chrono::nanoseconds> timeout) {
  if (!detail::task_registered(call->name))
    throw ValueError("ProcessPool: '" + call->name + "' is not a registered task");
  check_size(*call);
  const auto t = timeout.value_or(std::chrono::nanoseconds::zero());
  if (t < std::chrono::nanoseconds::zero()) throw ValueError("ProcessPool: a timeout must not be negative");
  detail::PoolCall* raw = call.get();
  d_->edge().submit(timeout ? t : default_timeout(), raw);
  (void)call.release();  // the supervisor owns it now
}

void ProcessPool::shutdown(const ProcessShutdownOptions& opts) {
  if (opts.wait && on_supervisor) throw MisuseError("ProcessPool::shutdown(wait) from a done callback would deadlock");
  pool::Command c;
  c.kind = pool::Command::shutdown;
  c.cancel_futures = opts.cancel_futures;
  d_->edge().request(c);
  if (opts.wait) {
    d_->edge().wait_terminated(platform::Deadline::never());
    d_->join();
  }
}

void ProcessPool::terminate_workers() {
  if (on_supervisor) throw MisuseError("ProcessPool::terminate_workers from a done callback would deadlock");
  pool::Command c;
  c.kind = pool::Command::terminate;
  c.signal = SIGTERM;
  d_->edge().request(c);
  d_->edge().wait_terminated(platform::Deadline::never());
  d_->join();
}

void ProcessPool::kill_workers() {
  if (on_supervisor) throw MisuseError("ProcessPool::kill_workers from a done callback would deadlock");
  pool::Command c;
  c.kind = pool::Command::terminate;
  c.signal = SIGKILL;
  d_->edge().request(c);
  d_->edge().wait_terminated(platform::Deadline::never());
  d_->join();
}

bool ProcessPool::await(const platform::Deadline& d) {
  if (!d_->edge().wait_terminated(d)) return false;
  d_->join();
  return true;
}

ProcessPoolStats ProcessPool::stats() const { return d_->stats(); }
std::vector<int> ProcessPool::worker_pids() const { return d_->pids(); }

}  // namespace keel
