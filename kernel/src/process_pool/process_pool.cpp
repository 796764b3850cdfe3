// keel::ProcessPool: the submitting side. Everything that touches a worker is
// the supervisor's (driver.hpp); this file checks and hands over.
#include "keel/process_pool/process_pool.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "driver.hpp"
#include "protocol.hpp"

namespace keel {

namespace {

const char* policy_name(RejectPolicy p) {
  switch (p) {
    case RejectPolicy::abort:
      return "abort";
    case RejectPolicy::caller_runs:
      return "caller_runs";
    case RejectPolicy::discard:
      return "discard";
    case RejectPolicy::discard_oldest:
      return "discard_oldest";
    case RejectPolicy::block:
      return "block";
  }
  return nullptr;
}

// The bound of ProcessPoolOptions, checked: a setting that could never take
// effect is a mistake worth a ValueError, not a silent default.
pool::Bound checked_bound(const ProcessPoolOptions& o) {
  const char* name = policy_name(o.reject);
  if (name == nullptr) {
    throw ValueError("ProcessPool: reject is not a RejectPolicy (" + std::to_string(static_cast<int>(o.reject)) + ")");
  }
  if (o.queue_capacity == 0 && o.reject != RejectPolicy::abort) {
    throw ValueError(std::string("ProcessPool: reject = ") + name +
                     " needs a bounded queue (queue_capacity > 0); an unbounded queue never rejects");
  }
  if (o.block_timeout && o.reject != RejectPolicy::block) {
    throw ValueError(std::string("ProcessPool: block_timeout applies only to reject = block, not ") + name);
  }
  if (o.rejection_handler && o.reject != RejectPolicy::abort) {
    throw ValueError("ProcessPool: a rejection_handler decides instead of the reject policy: leave reject as abort");
  }
  if (o.rejection_handler && o.queue_capacity == 0) {
    throw ValueError(
        "ProcessPool: a rejection_handler needs a bounded queue (queue_capacity > 0); an unbounded queue never "
        "rejects");
  }
  // The edge's Nanos::max() waits for ever; <= 0 refuses at once (keel/timeout.hpp).
  return pool::Bound{o.queue_capacity, o.reject, o.block_timeout.value_or(pool::Nanos::max()),
                     static_cast<bool>(o.rejection_handler)};
}

// RejectPolicy::caller_runs: the task runs here, in the submitting thread,
// and its future is answered exactly as a worker's answer would answer it
// (kernel/src/process_pool/worker.cpp): ok with the encoded result, or the
// task's error encoded, so the future holds the value or a RemoteError; a
// result above max_message is a ProtocolError there as here. The future goes
// pending -> running (start_here) -> final; a future cancelled first stays
// cancelled and the task does not run.
// Returns whether anything ran (false: every future was cancelled first).
bool run_in_caller(detail::PoolCall& call, std::size_t max) {
  if (!call.start_here()) return false;
  auto error_now = [max] { return detail::encode_error(std::current_exception(), max); };
  auto oversized = [max](const std::string& what, std::size_t size) {
    return detail::encode_error(std::make_exception_ptr(ProtocolError(
                                    "keel: " + what + " is " + std::to_string(size) +
                                    " bytes encoded, above the pool's max_message of " + std::to_string(max))),
                                max);
  };
  bool ok = true;
  std::string bytes;
  if (!call.chunk) {
    try {
      Decoder d(call.payload());
      const std::size_t n = d.get<std::uint32_t>();
      const std::string_view name = d.get_view(n);
      const std::string_view args = d.get_view(d.remaining());
      bytes = detail::invoke_task(name, args);
      if (bytes.size() > max) {
        ok = false;
        bytes = oversized("the result of task '" + std::string(name) + "'", bytes.size());
      }
    } catch (...) {
      ok = false;
      bytes = error_now();
    }
  } else {
    try {
      bytes = pool::proto::run_chunk(call.payload(), max);
      if (bytes.size() > max) {
        ok = false;
        bytes = oversized("the results of a chunk", bytes.size());
      }
    } catch (...) {
      ok = false;
      bytes = error_now();
    }
  }
  call.complete(ok, bytes);
  return true;
}

// The number of workers, checked against the documented maximum and against
// what this process may open and start: a pool the limits cannot hold would
// otherwise fail worker by worker (EMFILE showed as "exited with status 127").
unsigned checked_workers(const ProcessPoolOptions& o) {
  const unsigned workers = o.workers ? o.workers : detail::usable_cpus();
  if (workers > max_pool_workers) {
    throw ValueError("ProcessPool: workers must be at most " + std::to_string(max_pool_workers) + ", not " +
                     std::to_string(workers));
  }
  if (o.spare_workers > max_pool_workers) {
    throw ValueError("ProcessPool: spare_workers must be at most " + std::to_string(max_pool_workers) + ", not " +
                     std::to_string(o.spare_workers));
  }
  // A spare holds what a worker holds: the limits below count both.
  const unsigned n = workers + o.spare_workers;
  const std::string them = std::to_string(workers) + " workers" +
                           (o.spare_workers ? " and " + std::to_string(o.spare_workers) + " spares" : std::string());
  // Each worker holds three fds here (its channel, its answer pipe and its
  // pidfd); a spawn briefly needs a few more. Room is counted above the fds
  // already open.
  rlimit fds{};
  if (::getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur != RLIM_INFINITY) {
    std::size_t open_now = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (const dirent* e = ::readdir(d)) open_now += e->d_name[0] != '.';
      ::closedir(d);
    }
    const std::size_t need = open_now + 3 * static_cast<std::size_t>(n) + 16;
    if (need > fds.rlim_cur) {
      throw OsError(EMFILE, "ProcessPool: " + them + " need about " + std::to_string(need) + " file descriptors (" +
                                std::to_string(open_now) +
                                " open now), above RLIMIT_NOFILE = " + std::to_string(fds.rlim_cur) +
                                "; raise it (ulimit -n, setrlimit) or use fewer workers");
    }
  }
  // RLIMIT_NPROC counts every process and thread of this user; root is not
  // held to it.
  rlimit procs{};
  if (::geteuid() != 0 && ::getrlimit(RLIMIT_NPROC, &procs) == 0 && procs.rlim_cur != RLIM_INFINITY &&
      n >= procs.rlim_cur) {
    throw OsError(EAGAIN, "ProcessPool: " + them + " are more processes than RLIMIT_NPROC = " +
                              std::to_string(procs.rlim_cur) + " allows this user; raise it (ulimit -u) or use fewer");
  }
  return workers;
}

}  // namespace

ProcessPool::ProcessPool(const ProcessPoolOptions& options)
    : workers_(checked_workers(options)),
      max_message_(options.max_message),
      task_timeout_(options.task_timeout),
      handler_(options.rejection_handler) {
  if (options.max_message < min_max_message) {
    throw ValueError("ProcessPool: max_message must be at least " + std::to_string(min_max_message) +
                     " bytes (room for a worker's error report), not " + std::to_string(options.max_message));
  }
  if (options.max_message > 0xFFFFFFF0u) throw ValueError("ProcessPool: max_message must fit in 32 bits");
  if (options.max_in_flight > pool::proto::max_slots)
    throw ValueError("ProcessPool: max_in_flight must be at most " + std::to_string(pool::proto::max_slots) + ", not " +
                     std::to_string(options.max_in_flight));
  if (options.restart_window <= std::chrono::nanoseconds::zero())
    throw ValueError("ProcessPool: restart_window must be positive");
  if (options.initializer && !detail::task_registered(options.initializer->task))
    throw ValueError("ProcessPool: the initializer '" + options.initializer->task + "' is not a registered task");
  if (!detail::bootstrapped() && options.start == StartMethod::spawn)
    throw MisuseError("ProcessPool: call keel::bootstrap(argc, argv) first thing in main()");
  // Its workers would refuse to start (SEC-2): say so now, not as a crash loop.
  if (detail::secure_execution() && options.start == StartMethod::spawn)
    throw MisuseError(
        "ProcessPool: this process runs in secure-execution mode (setuid, setgid or file capabilities), where spawned "
        "workers refuse to start; use StartMethod::fork");
  const pool::Bound bound = checked_bound(options);
  d_ = std::make_unique<detail::PoolDriver>(options, workers_);
  // Before any submission can reach the edge: the constructor has not returned.
  d_->edge().set_bound(bound);
}

ProcessPool::~ProcessPool() {
  if (!d_) return;
  if (detail::on_pool_supervisor()) {
    // Destroyed from one of its own done callbacks: waiting would deadlock.
    // Nothing better is possible than leaving the supervisor running.
    d_->edge().request(pool::Command{pool::Command::shutdown});
    (void)d_.release();
    return;
  }
  shutdown({.wait = true});
}

std::string detail::call_payload(const std::string& name, const std::string& args) {
  return pool::proto::call_payload(name, args);
}

std::string detail::chunk_payload(const std::string& name, const std::vector<std::string>& args) {
  return pool::proto::chunk_payload(name, args);
}

void ProcessPool::check_size(const detail::PoolCall& call) const {
  if (call.payload().size() > max_message_) {
    throw ProtocolError("ProcessPool: the arguments of task '" + std::string(call.name()) + "' are " +
                        std::to_string(call.payload().size()) + " bytes, above max_message (" +
                        std::to_string(max_message_) + ")");
  }
}

void ProcessPool::enqueue(detail::PoolCallPtr call, std::optional<std::chrono::nanoseconds> timeout) {
  if (!detail::task_registered(call->name()))
    throw ValueError("ProcessPool: '" + std::string(call->name()) + "' is not a registered task");
  check_size(*call);
  // The task's own timeout, else the pool's; nullopt is none (keel/timeout.hpp).
  const std::optional<std::chrono::nanoseconds> t = timeout ? timeout : default_timeout();
  if (t && *t <= std::chrono::nanoseconds::zero()) {
    // No time at all: refused as any submission is after a shutdown or a
    // break; otherwise it fails here, never queued nor sent, so no worker is
    // killed for it (the machine never sees a timeout <= 0).
    d_->edge().expire();
    call->fail(std::make_exception_ptr(TimeoutError("ProcessPool: task '" + std::string(call->name()) +
                                                    "' has a timeout <= 0: no time to run; it was not sent")));
    return;
  }
  detail::PoolCall* raw = call.get();
  // Throws as the bound's policy says (abort, block), or after shutdown. The
  // machine's timeout is positive, or zero for none.
  // nanoseconds::max() is "for ever" (keel/timeout.hpp): the way to give one
  // task no timeout in a pool that has a task_timeout. The machine then
  // treats it as untimed, so work may be pipelined behind it.
  const std::chrono::nanoseconds for_machine =
      !t || *t == std::chrono::nanoseconds::max() ? std::chrono::nanoseconds::zero() : *t;
  const pool::Admission a = d_->edge().submit(for_machine, raw, !detail::on_pool_supervisor());
  switch (a.kind) {
    case pool::Admission::queued:
      (void)call.release();  // the supervisor owns it now
      return;
    case pool::Admission::run_here:
      (void)run_in_caller(*call, max_message_);
      return;
    case pool::Admission::discard:
      call->cancel();
      return;
    case pool::Admission::handle: {
      // The handler settles the call, or the ProcessRejectedCall's destructor
      // fails it (POOL-10): also when the handler throws, which reaches the
      // submitter. The call outlives both: `call` owns it until we return.
      ProcessRejectedCall rejected(call.get(), max_message_);
      handler_(rejected, *this);
      return;
    }
  }
}

ProcessRejectedCall::~ProcessRejectedCall() {
  if (call_ == nullptr) return;
  call_->fail(std::make_exception_ptr(
      RejectedError(RejectedError::Reason::saturated,
                    "ProcessPool: the queue is full and the rejection handler left the call unsettled")));
}

const std::string& ProcessRejectedCall::task() const {
  static const std::string settled;
  return call_ ? task_ : settled;
}

bool ProcessRejectedCall::run() {
  detail::PoolCall* c = std::exchange(call_, nullptr);
  if (c == nullptr) return false;
  return run_in_caller(*c, max_);
}

bool ProcessRejectedCall::cancel() {
  detail::PoolCall* c = std::exchange(call_, nullptr);
  if (c == nullptr) return false;
  c->cancel();
  return true;
}

void ProcessPool::shutdown(const ShutdownOptions& opts) {
  if (opts.wait && detail::on_pool_supervisor())
    throw MisuseError("ProcessPool::shutdown(wait) from a done callback would deadlock");
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
  if (detail::on_pool_supervisor())
    throw MisuseError("ProcessPool::terminate_workers from a done callback would deadlock");
  pool::Command c;
  c.kind = pool::Command::terminate;
  c.signal = SIGTERM;
  d_->edge().request(c);
  d_->edge().wait_terminated(platform::Deadline::never());
  d_->join();
}

void ProcessPool::kill_workers() {
  if (detail::on_pool_supervisor()) throw MisuseError("ProcessPool::kill_workers from a done callback would deadlock");
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

std::optional<std::string> ProcessPool::broken() const { return d_->edge().broken_message(); }

ProcessPoolStats ProcessPool::stats() const {
  ProcessPoolStats s = d_->stats();
  s.rejected = d_->edge().rejected();  // counted where submissions are refused
  // Tasks with no time at all never reach the machine: counted at the edge.
  const std::uint64_t expired = d_->edge().expired();
  s.submitted += expired;
  s.timed_out += expired;
  return s;
}
std::vector<int> ProcessPool::worker_pids() const { return d_->pids(); }

}  // namespace keel
