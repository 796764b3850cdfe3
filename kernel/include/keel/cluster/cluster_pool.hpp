// keel::ClusterPool: keel's registered tasks on many hosts, over MPI ranks
// (mpi4py.futures' MPIPoolExecutor), with the ProcessPool's futures, maps and
// shutdown, and each node's crashes kept on that node.
//
// Contract:
// - Launch with `mpirun -n N ./prog args`; main calls keel::cluster::init
//   (keel/cluster/mpi.hpp) first. Rank 0 returns from it and runs main; every
//   other rank is a node: it serves the pools rank 0 opens, each with a local
//   keel::ProcessPool of workers_per_node workers, and exits 0 when rank 0's
//   program ends. Without MPI, local_nodes > 0 runs that many nodes inside
//   this process (each with its own ProcessPool), for tests and development.
// - submit, map (chunksize, timeout, progress), starmap and map_unordered take the same
//   registered tasks and codec as ProcessPool, and their futures resolve as
//   a ProcessPool's do (POOL-1, CLUSTER-1): with the value, a RemoteError,
//   WorkerLost (the node's worker died running it: the node replaces the
//   worker, after `retries` extra runs if set), TimeoutError (task_timeout,
//   counted from its start on the node), CancelledError, or
//   BrokenProcessPool (a node's pool broke: its initializer failed, or its
//   workers died faster than its restart limit; the cluster breaks as a
//   ProcessPool does, and every later submit throws it).
// - A task is running only once rank 0 let a node run it on a free worker
//   (its node claims it, rank 0 decides), and cancel() succeeds until then,
//   wherever the task waits; a cancelled task never runs (CLUSTER-2).
// - Work conservation (CLUSTER-4): tasks go to nodes with free workers first;
//   each node holds at most `ahead` tasks beyond its free workers, and while
//   a node has a free worker no task waits behind another node's busy ones.
// - shutdown({.wait, .cancel_futures}) refuses later submissions
//   (RejectedError(shutdown)); accepted work still runs unless
//   cancel_futures; then every node's pool closes (CLUSTER-5).
//   terminate_workers cancels what has not started and kills every node's
//   workers (their running tasks fail with WorkerLost). The destructor
//   shuts down and waits. One ClusterPool at a time is open (MisuseError for
//   a second): the nodes serve one pool at a time.
// - MPI is driven by one thread (rank 0's supervisor, a node's agent): init
//   asks for MPI_THREAD_SERIALIZED, and no thread busy-polls a core: an idle
//   agent sleeps between polls (up to idle_poll).
// - A rank that dies (killed, out of memory) is beyond what Open MPI 4.1 can
//   recover (no ULFM): mpirun ends the whole job within seconds and says
//   which rank died; nothing hangs. Tasks that crash a worker never kill a
//   rank: the worker is a separate process of the node's pool.
//
// Invariants: CLUSTER-1..7, and the ProcessPool's POOL-1..9 on every node
// (proofs/INVARIANTS.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keel/process_pool/process_pool.hpp"

namespace keel {

/// How a ClusterPool is laid out: its nodes, each node's ProcessPool, and the supervisor's polling.
struct ClusterOptions {
  unsigned workers_per_node = 0;  ///< each node's pool; 0: the CPUs that node's rank may run on
  bool rank0_runs_work = false;   ///< rank 0 is a node too (in this process, beside main)
  unsigned local_nodes = 0;       ///< without MPI (no cluster::init): nodes inside this process
  unsigned ahead = 1;             ///< tasks offered to a node beyond its free workers (<= 1024)
  /// Each node's ProcessPool: as ProcessPoolOptions::max_tasks_per_child (and below, likewise).
  unsigned max_tasks_per_child = 0;
  unsigned retries = 0;                                                ///< as ProcessPoolOptions::retries
  unsigned restart_limit = 32;                                         ///< as ProcessPoolOptions::restart_limit
  std::chrono::nanoseconds restart_window = std::chrono::seconds(10);  ///< as ProcessPoolOptions::restart_window
  std::optional<std::chrono::nanoseconds> task_timeout{};              ///< as ProcessPoolOptions::task_timeout
  std::optional<BoundCall> initializer{};                              ///< as ProcessPoolOptions::initializer
  std::size_t max_message = default_max_frame;                         ///< as ProcessPoolOptions::max_message
  std::chrono::nanoseconds terminate_grace = std::chrono::seconds(3);  ///< as ProcessPoolOptions::terminate_grace
  unsigned spare_workers = 0;                                          ///< as ProcessPoolOptions::spare_workers
  /// The longest an idle supervisor or agent sleeps between polls of MPI
  /// (it polls sooner while messages flow). Bounds the latency an idle
  /// cluster adds; must be in (0, 1 s].
  std::chrono::nanoseconds idle_poll = std::chrono::milliseconds(2);
};

/// One node in a ClusterStats snapshot.
struct ClusterNodeStats {
  unsigned node = 0;         ///< 0 .. nodes()-1
  std::string name{};        ///< "rank 2 on host (pid 123)", or "local node 1 (pid 123)"
  unsigned capacity = 0;     ///< its workers (0 until it is ready)
  std::size_t offered = 0;   ///< tasks offered to it, not yet claimed
  std::size_t running = 0;   ///< tasks it was let run, not yet answered
  ProcessPoolStats local{};  ///< its ProcessPool's, as last reported
};

/// One snapshot of a cluster, taken by its supervisor at one instant. An
/// answer is counted in it by the time its future is done (a node's `local`
/// stats come with that node's reports, and may lag).
struct ClusterStats {
  /// One entry per node, by node number.
  std::vector<ClusterNodeStats> nodes{};
  std::size_t queued = 0;       ///< waiting on rank 0
  std::uint64_t submitted = 0;  ///< tasks accepted (a map chunk is one task)
  std::uint64_t answered = 0;   ///< answered by a node (value, remote error, WorkerLost, TimeoutError)
  std::uint64_t cancelled = 0;  ///< cancelled before they ran
  std::uint64_t broken = 0;     ///< failed with BrokenProcessPool when the cluster broke
  std::uint64_t moved = 0;      ///< offers taken back from a busy node and given to an idle one
};

namespace detail {
class ClusterDriver;
}  // namespace detail

/// The same futures as a ProcessPool's, run on MPI ranks (the contract above).
class ClusterPool {
 public:
  /// Starts the nodes (MPI ranks, or local nodes without MPI), each with its own ProcessPool.
  explicit ClusterPool(const ClusterOptions& options = {});
  /// Shuts down with wait, then closes every node's pool.
  ~ClusterPool();
  ClusterPool(const ClusterPool&) = delete;
  ClusterPool& operator=(const ClusterPool&) = delete;

  /// Runs task(args...) on some node's worker; its future resolves as a ProcessPool's does.
  template <class R, class... P, class... A>
  Future<R> submit(const TaskRef<R(P...)>& task, A&&... args) {
    return submit(SubmitOptions{}, task, std::forward<A>(args)...);
  }
  /// submit with per-task options (its timeout).
  template <class R, class... P, class... A>
  Future<R> submit(const SubmitOptions& opts, const TaskRef<R(P...)>& task, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "keel::ClusterPool::submit: wrong number of arguments for this task");
    if constexpr (sizeof...(P) == sizeof...(A)) {  // else only the line above: no cascade
      auto call = detail::make_call(task, std::forward<A>(args)...);
      Future<R> f = call->future();
      enqueue(std::move(call), opts.timeout);
      return f;
    } else {
      return {};
    }
  }

  /// Executor.map with chunksize: results in input order (as ProcessPool::map).
  template <class R, class P, class Range>
  ProcessMapResults<R> map(const TaskRef<R(P)>& task, Range&& inputs, const ProcessMapOptions& opts = {}) {
    return detail::ordered_map<R>(opts, [&] { return chunks(task, inputs, opts.chunksize); });
  }
  /// Pool.starmap: each input a tuple of the task's arguments (as ProcessPool::starmap).
  template <class R, class... P, class Range>
  ProcessMapResults<R> starmap(const TaskRef<R(P...)>& task, Range&& inputs, const ProcessMapOptions& opts = {}) {
    using Tuple = std::remove_cvref_t<decltype(*std::begin(inputs))>;
    constexpr bool fits = detail::tuple_fits<Tuple, P...>();
    static_assert(fits,
                  "keel::ClusterPool::starmap: each input must be a tuple of as many elements as the task has "
                  "parameters, each convertible to its parameter");
    if constexpr (fits) {  // else only the line above: no cascade
      return detail::ordered_map<R>(opts, [&] {
        return detail::submit_star_chunks(task, inputs, opts.chunksize, "ClusterPool::starmap",
                                          [this](detail::PoolCallPtr c) { enqueue(std::move(c), std::nullopt); });
      });
    } else {
      return ProcessMapResults<R>({}, platform::Deadline::never());
    }
  }
  /// Results as they complete (each call's future, done).
  template <class R, class P, class Range>
  ProcessUnorderedResults<R> map_unordered(const TaskRef<R(P)>& task, Range&& inputs,
                                           const ProcessMapOptions& opts = {}) {
    const platform::Deadline deadline = detail::map_deadline(opts.timeout);
    auto fs = chunks(task, inputs, opts.chunksize).split();
    auto progress = detail::watch_progress(opts.progress, fs);
    return ProcessUnorderedResults<R>(fs, deadline, std::move(progress));
  }

  /// Refuses new tasks; cancels the queued ones with cancel_futures; with wait, returns once every node's pool closed.
  void shutdown(const ShutdownOptions& opts = {});
  /// Cancels every task that has not started, kills every node's workers
  /// (their running tasks fail with WorkerLost) and returns once every node's
  /// pool closed.
  void terminate_workers();
  /// Waits for the cluster to finish after shutdown; false on timeout.
  template <class Rep, class Period>
  bool await_termination(std::chrono::duration<Rep, Period> timeout) {
    return await(platform::Deadline::after(timeout));
  }

  /// A snapshot of the cluster: its nodes and its tasks.
  ClusterStats stats() const;
  /// The number of nodes that run work.
  unsigned nodes() const { return nodes_; }

 private:
  void enqueue(detail::PoolCallPtr call, std::optional<std::chrono::nanoseconds> timeout);
  bool await(const platform::Deadline& d);

  template <class R, class P, class Range>
  detail::MapChunks<R> chunks(const TaskRef<R(P)>& task, Range& inputs, std::size_t chunksize) {
    return detail::submit_chunks(task, inputs, chunksize, "ClusterPool::map",
                                 [this](detail::PoolCallPtr c) { enqueue(std::move(c), std::nullopt); });
  }

  unsigned nodes_ = 0;
  std::size_t max_message_ = 0;
  std::optional<std::chrono::nanoseconds> task_timeout_;
  std::unique_ptr<detail::ClusterDriver> d_;
};

}  // namespace keel
