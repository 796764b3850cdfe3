// keel::ClusterPool: the submitting side on rank 0. Everything that touches
// a node is the supervisor's (driver.hpp); this file checks and hands over.
#include "keel/cluster/cluster_pool.hpp"

#include "driver.hpp"

namespace keel {

namespace {

void check(const ClusterOptions& o) {
  if (o.workers_per_node > max_pool_workers) {
    throw ValueError("ClusterPool: workers_per_node must be at most " + std::to_string(max_pool_workers));
  }
  if (o.ahead > 1024) throw ValueError("ClusterPool: ahead must be at most 1024, not " + std::to_string(o.ahead));
  if (o.max_message < min_max_message) {
    throw ValueError("ClusterPool: max_message must be at least " + std::to_string(min_max_message) + " bytes, not " +
                     std::to_string(o.max_message));
  }
  if (o.max_message > 0xFFFFFFF0u) throw ValueError("ClusterPool: max_message must fit in 32 bits");
  if (o.restart_window <= std::chrono::nanoseconds::zero())
    throw ValueError("ClusterPool: restart_window must be positive");
  if (o.idle_poll <= std::chrono::nanoseconds::zero() || o.idle_poll > std::chrono::seconds(1))
    throw ValueError("ClusterPool: idle_poll must be in (0, 1 s]");
  if (o.initializer && !detail::task_registered(o.initializer->task))
    throw ValueError("ClusterPool: the initializer '" + o.initializer->task + "' is not a registered task");
  if (o.local_nodes > 256) throw ValueError("ClusterPool: local_nodes must be at most 256");
  if (o.spare_workers > max_pool_workers) {
    throw ValueError("ClusterPool: spare_workers must be at most " + std::to_string(max_pool_workers) + ", not " +
                     std::to_string(o.spare_workers));
  }
}

}  // namespace

ClusterPool::ClusterPool(const ClusterOptions& options)
    : max_message_(options.max_message), task_timeout_(options.task_timeout) {
  check(options);
  const detail::FabricFactory world = detail::cluster_world();
  if (world && options.local_nodes > 0) {
    throw ValueError(
        "ClusterPool: local_nodes is for programs without MPI; under keel::cluster::init the nodes are "
        "the MPI ranks");
  }
  if (!world && options.local_nodes == 0) {
    throw MisuseError(
        "ClusterPool: call keel::cluster::init(argc, argv) first thing in main (and launch with "
        "mpirun), or set local_nodes to run nodes in this process");
  }
  if (!detail::claim_cluster()) {
    throw MisuseError("ClusterPool: another ClusterPool is open; the nodes serve one pool at a time");
  }
  try {
    d_ = std::make_unique<detail::ClusterDriver>(options, world);
  } catch (...) {
    detail::release_cluster();
    throw;
  }
  nodes_ = d_->nodes();
}

ClusterPool::~ClusterPool() {
  if (!d_) return;
  if (detail::on_cluster_supervisor()) {
    // Destroyed from one of its own done callbacks: waiting would deadlock.
    // The supervisor finishes on its own; the pool stays counted as open.
    d_->shutdown(false);
    (void)d_.release();
    return;
  }
  shutdown({.wait = true});
  d_.reset();
  detail::release_cluster();
}

void ClusterPool::enqueue(detail::PoolCallPtr call, std::optional<std::chrono::nanoseconds> timeout) {
  if (!detail::task_registered(call->name()))
    throw ValueError("ClusterPool: '" + std::string(call->name()) + "' is not a registered task");
  if (call->payload().size() > max_message_) {
    throw ProtocolError("ClusterPool: the arguments of task '" + std::string(call->name()) + "' are " +
                        std::to_string(call->payload().size()) + " bytes, above max_message (" +
                        std::to_string(max_message_) + ")");
  }
  const std::optional<std::chrono::nanoseconds> t = timeout ? timeout : task_timeout_;
  if (t && *t <= std::chrono::nanoseconds::zero()) {
    call->fail(std::make_exception_ptr(TimeoutError("ClusterPool: task '" + std::string(call->name()) +
                                                    "' has a timeout <= 0: no time to run; it was not sent")));
    return;
  }
  std::optional<std::int64_t> ns;
  if (t) ns = static_cast<std::int64_t>(t->count());
  d_->submit(std::move(call), ns);
}

void ClusterPool::shutdown(const ShutdownOptions& opts) {
  if (opts.wait && detail::on_cluster_supervisor())
    throw MisuseError("ClusterPool::shutdown(wait) from a done callback would deadlock");
  d_->shutdown(opts.cancel_futures);
  if (opts.wait) {
    (void)d_->wait_terminated(platform::Deadline::never());
    d_->join();
  }
}

void ClusterPool::terminate_workers() {
  if (detail::on_cluster_supervisor())
    throw MisuseError("ClusterPool::terminate_workers from a done callback would deadlock");
  d_->terminate();
  (void)d_->wait_terminated(platform::Deadline::never());
  d_->join();
}

bool ClusterPool::await(const platform::Deadline& d) {
  if (detail::on_cluster_supervisor())
    throw MisuseError("ClusterPool::await_termination from a done callback would deadlock");
  return d_->wait_terminated(d);
}

ClusterStats ClusterPool::stats() const { return d_->stats(); }

}  // namespace keel
