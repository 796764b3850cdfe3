// keel::ProcessPool: runs registered tasks in worker processes and survives
// those workers dying (Python's ProcessPoolExecutor and multiprocessing.Pool).
//
// Contract:
// - submit(task, args...) returns a keel::Future of the task's result type.
//   The future always resolves (POOL-1): with the value, a RemoteError (the
//   task threw in the worker: its type and message), WorkerLost (its worker
//   died while running it: pid, exit code or signal; after `retries` extra
//   runs if configured), TimeoutError (it ran past its timeout, counted from
//   its start: the worker is killed and replaced; a task whose timeout is
//   <= 0 has no time at all and fails at submit, never sent to a worker, so
//   no worker is killed for it: keel/timeout.hpp), CancelledError (cancelled
//   before it started, by shutdown(cancel_futures), or never started before
//   terminate_workers), or BrokenProcessPool (the initializer failed, or
//   workers died faster than the restart limit allows).
// - A task is running only once it started in its worker (POOL-7), and
//   cancel() succeeds until then, wherever the task is: queued in the parent
//   or already sent to a worker (the worker starts a task only by winning its
//   start slot, which cancel() can win first). A cancelled task never runs.
//   shutdown(cancel_futures), dropping a map, terminate_workers and
//   kill_workers cancel exactly the tasks that have not started.
// - A worker that dies costs only the task it had started (POOL-8): the
//   tasks it held and had not started run elsewhere, uncounted.
// - Work conservation (POOL-9): tasks go to idle workers first, one each;
//   about a millisecond of expected work (from measured run times, at most
//   max_in_flight tasks) is sent ahead of each worker's running task, and
//   while a worker is idle no task waits unstarted behind another worker's:
//   it is taken back and moved. So n tasks on n workers run in parallel.
// - Once a future reported BrokenProcessPool, every later submit throws it
//   (POOL-11): the break reaches submitters before any future.
// - Workers start from a fresh image of this program (keel::bootstrap must be
//   the first call in main), or by fork() when options.start says so (only
//   for single-threaded parents). They die with the parent. A process in
//   secure-execution mode (setuid, setgid, file capabilities) cannot start
//   spawned workers, which would refuse to run there (SEC-2): the constructor
//   throws MisuseError unless options.start is fork.
// - No lock or queue is shared with a worker: each has its own channel, and
//   one supervisor thread owns every channel and the state machine
//   (kernel/src/process_pool/machine.hpp) that decides everything; the only thing
//   shared with a worker is its page of start slots (one word per task sent,
//   compare-and-swapped, never locked), so a worker that dies cannot wedge
//   anything.
// - shutdown({.wait, .cancel_futures}) refuses later submissions
//   (RejectedError(shutdown)); queued work still runs unless cancel_futures.
//   With wait, and in terminate_workers/kill_workers and the destructor, it
//   returns once every worker was reaped and every fd closed (POOL-4).
// - The parent's queue is bounded by queue_capacity (0: unbounded, the
//   default). What counts: tasks accepted and still waiting in the parent,
//   not yet sent to a worker; a map chunk is one task. A submission that
//   finds queue_capacity waiting follows `reject`, with the thread pool's
//   meanings (keel/executor/reject_policy.hpp): abort throws
//   RejectedError(saturated); caller_runs runs the task in the submitting
//   thread, in this process, and returns its future final (value or
//   RemoteError, as a worker's answer); discard returns its future
//   cancelled; discard_oldest cancels the oldest waiting task and queues the
//   new one; block waits for room up to block_timeout (then
//   RejectedError(timed_out)), and a blocked submitter is refused by
//   shutdown, terminate_workers, kill_workers (RejectedError(shutdown)) or a
//   break (BrokenProcessPool). After shutdown every submission is
//   RejectedError(shutdown), whatever the policy (POOL-10). A submission that
//   would block in a done callback (on the supervisor thread) is a
//   MisuseError. A rejection_handler instead of the policy is called on the
//   submitting thread with a ProcessRejectedCall, which it runs here,
//   cancels, or leaves to fail with RejectedError(saturated); an exception
//   it throws reaches the submitter (EXEC-11).
// - Done callbacks of these futures run on the supervisor thread; they must
//   not wait for the pool (shutdown(wait) from there is a MisuseError). So
//   does a map's progress callback (keel/executor/map_progress.hpp, MAP-1).
// - starmap(task, tuples) encodes each tuple (or pair, array, keel::zip
//   element) as the task's parameters; map_unordered's results object, when
//   dropped, stops the progress callback and leaves its calls running.
// - terminate_workers always returns: SIGTERM, then SIGKILL after
//   terminate_grace. Each worker leads its own process group (unless
//   own_process_group is false): a Ctrl-C to this process's group does not
//   reach it, and its descendants die with it.
// - spare_workers processes start ahead and wait, each to become the
//   replacement of a worker that exits; until then a spare runs no task and
//   is no worker, its own death is none either, and it is killed when the
//   pool shuts down or breaks (POOL-14).
// - More than max_pool_workers workers (or spares) is ValueError; fd or
//   process limits that cannot hold the pool are OsError naming the limit. A
//   pool may be held by a global, or still be working when exit() runs.
//
// Invariants: POOL-1 .. POOL-12, POOL-14, IPC-1, SEC-2, SEC-3, LIFE-5, LIFE-6, LIFE-7,
// MAP-1 (see proofs/INVARIANTS.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keel/detail/next_iterator.hpp"
#include "keel/error.hpp"
#include "keel/executor/reject_policy.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/process/child.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/frame.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/detail/calls.hpp"
#include "keel/shutdown.hpp"
#include "keel/timeout.hpp"

namespace keel {

/// How workers start: spawn (a fresh image of this program) or fork.
using StartMethod = detail::StartMethod;

/// A registered task with its arguments, encoded: how an initializer is given.
struct BoundCall {
  /// The task's registered name.
  std::string task{};
  /// Its arguments, encoded as the task's parameter types.
  std::string args{};
};
/// task with its arguments encoded now, to run later (an initializer).
template <class R, class... P, class... A>
BoundCall bind_task(const TaskRef<R(P...)>& task, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "keel::bind_task: wrong number of arguments for this task");
  if constexpr (sizeof...(P) == sizeof...(A)) {  // else only the line above: no cascade
    return BoundCall{task.name(), detail::encode_args<std::decay_t<P>...>(static_cast<std::decay_t<P>>(args)...)};
  } else {
    return {};
  }
}

class ProcessPool;
class ProcessRejectedCall;
/// Decides what becomes of a submission refused because the parent's queue
/// is full (ProcessPoolOptions::rejection_handler; ProcessRejectedCall says
/// what it may do). Called on the submitting thread, not after shutdown.
using ProcessRejectionHandler = std::function<void(ProcessRejectedCall& call, ProcessPool& pool)>;

/// A ProcessPool's configuration, as designated initializers.
struct ProcessPoolOptions {
  unsigned workers = 0;              ///< 0: the CPUs this process may run on
  unsigned max_tasks_per_child = 0;  ///< 0: unlimited
  unsigned max_in_flight = 0;        ///< most tasks sent ahead to one worker (<= 256); 0: 64 (adaptive below it)
  /// Runs in each worker before its first task; a failure breaks the pool (BrokenProcessPool).
  std::optional<BoundCall> initializer{};
  /// The time each task may run; nullopt: none (keel/timeout.hpp). Per task with SubmitOptions.
  std::optional<std::chrono::nanoseconds> task_timeout{};
  unsigned retries = 0;         ///< 0: a task whose worker died fails with WorkerLost
  unsigned restart_limit = 32;  ///< more unplanned replacements than this ...
  std::chrono::nanoseconds restart_window = std::chrono::seconds(10);  ///< ... within this breaks the pool
  /// Worker processes started ahead, beyond `workers`, each ready (its
  /// initializer run) to replace a worker that exits: died, killed, timed
  /// out or retired by max_tasks_per_child. The replacement then costs no
  /// process start, and a new spare starts behind it. A spare runs no task
  /// until it replaces a worker, is not in worker_pids(), and is killed when
  /// the pool shuts down or breaks; one that dies unused is not a worker's
  /// death (no restart_limit count) and is started again a second later;
  /// after three in a row died unused (an initializer that raises in a
  /// spare, say), none starts any more and the error reporter says why.
  /// 0: none (a replacement starts a fresh process when it is needed).
  unsigned spare_workers = 0;
  /// How workers start: spawn (a fresh image of this program) or fork (single-threaded parents only).
  StartMethod start = StartMethod::spawn;
  std::size_t max_message = default_max_frame;  ///< bytes of one task's arguments or result (>= min_max_message)
  /// terminate_workers() sends SIGTERM, then SIGKILL to every worker still
  /// alive this long after (a task may ignore SIGTERM), so it always returns.
  /// <= 0: SIGKILL at once, as kill_workers().
  std::chrono::nanoseconds terminate_grace = std::chrono::seconds(3);
  /// Each worker leads its own process group, with stdin from /dev/null:
  /// signals sent to this process's group (Ctrl-C at a terminal) do not reach
  /// the workers, so this process decides what happens to their tasks; and a
  /// worker's descendants are killed with it (when it exits, is killed, or
  /// this process dies). false: workers stay in this process's group, as
  /// before (a Ctrl-C kills them, their tasks fail with WorkerLost, and their
  /// descendants outlive them).
  bool own_process_group = true;
  /// The bound on tasks waiting in the parent (accepted, not yet sent to a
  /// worker; a map chunk is one task), as ThreadPoolOptions: 0 is unbounded.
  std::size_t queue_capacity = 0;
  RejectPolicy reject = RejectPolicy::abort;  ///< a submission that finds it full (needs queue_capacity)
  /// reject = block: how long to wait for room; nullopt: for ever (keel/timeout.hpp).
  std::optional<std::chrono::nanoseconds> block_timeout{};
  /// Decides instead of `reject` (which must then stay abort; ValueError
  /// otherwise, and without a queue_capacity): see ProcessRejectedCall.
  ProcessRejectionHandler rejection_handler{};
};

/// The smallest max_message a pool accepts: room for a worker's error report
/// (a longer message or type name is cut to fit, never lost).
inline constexpr std::size_t min_max_message = 256;
static_assert(min_max_message >= detail::min_error_bytes);

/// The most workers a pool accepts (ValueError above it). Each costs a process
/// and two fds here; the constructor also checks that RLIMIT_NOFILE and
/// RLIMIT_NPROC leave room for them (OsError naming the limit otherwise).
inline constexpr unsigned max_pool_workers = 4096;

/// Options of one submission.
struct SubmitOptions {
  /// Overrides the pool's task_timeout; nullopt: the pool's. nanoseconds::max()
  /// is for ever: this task has no timeout even where the pool has one.
  std::optional<std::chrono::nanoseconds> timeout{};
};

/// Options of ProcessPool::map, map_unordered and starmap (ClusterPool's too).
struct ProcessMapOptions {
  std::size_t chunksize = 1;                          ///< calls sent to a worker as one task
  std::optional<std::chrono::nanoseconds> timeout{};  ///< for the whole map, from the call
  /// Called with (done, total) as each call becomes final, on the supervisor
  /// thread (keel/executor/map_progress.hpp); total is always known here.
  MapProgress progress{};
};

/// One snapshot, taken by the supervisor at one instant: every field agrees
/// with every other (POOL-12). An outcome the pool decides (an answer, a
/// remote error, a loss, a timeout, a break) is counted in it by the time its
/// future is done; a user's own cancel() once the supervisor takes it.
struct ProcessPoolStats {
  /// Worker processes alive: from their spawn until the supervisor sees them
  /// exit. A retiring worker (max_tasks_per_child, shutdown) or one dying
  /// counts until then; one that exited, reaped or not, does not.
  unsigned workers = 0;
  unsigned ready = 0;              ///< of those, started and ready for tasks
  unsigned spares = 0;             ///< spare workers started and waiting (ProcessPoolOptions::spare_workers)
  std::size_t queued = 0;          ///< waiting in the parent
  std::size_t in_flight = 0;       ///< sent to workers, not yet resolved
  std::uint64_t submitted = 0;     ///< tasks accepted (a map chunk is one task)
  std::uint64_t completed = 0;     ///< answered by a worker (value or remote error)
  std::uint64_t lost = 0;          ///< failed with WorkerLost
  std::uint64_t timed_out = 0;     ///< failed with TimeoutError
  std::uint64_t cancelled = 0;     ///< cancelled before they ran
  std::uint64_t broken = 0;        ///< failed with BrokenProcessPool
  std::uint64_t retried = 0;       ///< runs repeated after a worker died
  std::uint64_t requeued = 0;      ///< sent but never started when their worker died: queued again
  std::uint64_t spawned = 0;       ///< worker processes started (a spare counts once it becomes a worker)
  std::uint64_t deaths = 0;        ///< workers that died unplanned
  std::uint64_t replacements = 0;  ///< workers started to replace those
  std::uint64_t retirements = 0;   ///< planned exits (max_tasks_per_child, shutdown)
  std::uint64_t rejected = 0;      ///< refused, discarded or run by the caller; plus discard_oldest evictions
  /// Sent to a worker, taken back before they started (moved, cancelled, or the worker died).
  std::uint64_t revoked = 0;
  std::uint64_t stolen = 0;   ///< of those, moved to an idle worker
  std::uint64_t skipped = 0;  ///< sent, cancelled by their user before they started: the worker skipped them
  std::vector<int> pids;      ///< the pids of the `workers` processes (pids.size() == workers), in no set order
};

namespace detail {

class PoolDriver;
struct PoolAccess;  // the cluster's node agent hands its pool calls it built itself

}  // namespace detail

/// The results of ProcessPool::map, in input order: a range-for (or next())
/// blocks for each in turn and rethrows a failed call's error at its place.
/// Dropping it early cancels the calls that have not started.
///
/// A map with chunksize > 1 keeps one future per chunk, and each call's
/// result stays encoded in its chunk until next() reaches it: the calls cost
/// no future each. futures() gives every call its own future, in the phase
/// its chunk has reached (cancel() then reaches one call until its chunk
/// starts); it is not for concurrent use with the other members.
template <class R>
class ProcessMapResults {
 public:
  /// The map's futures, in input order, the deadline of the whole map, and its progress (null: none).
  ProcessMapResults(std::vector<Future<R>> fs, platform::Deadline d,
                    std::shared_ptr<detail::ProgressTracker> progress = nullptr)
      : fs_(std::move(fs)), deadline_(d), progress_(std::move(progress)) {}
  /// A map's chunks (detail::submit_chunks), its deadline and its progress (null: none).
  ProcessMapResults(detail::MapChunks<R> m, platform::Deadline d, std::shared_ptr<detail::ProgressTracker> progress)
      : fs_(std::move(m.calls)),
        chunks_(std::move(m.chunks)),
        chunksize_(m.chunksize),
        total_(m.total),
        deadline_(d),
        progress_(std::move(progress)) {}
  /// Takes o's results; o is left empty.
  ProcessMapResults(ProcessMapResults&& o) noexcept : deadline_(o.deadline_) { take(o); }
  /// Drops this map's results (as the destructor does), then takes o's; o is left empty.
  ProcessMapResults& operator=(ProcessMapResults&& o) noexcept {
    if (this != &o) {
      drop();
      take(o);
    }
    return *this;
  }
  /// Cancels the calls not yet taken that have not started; the progress callback is not called from then on.
  ~ProcessMapResults() { drop(); }
  /// The next result in input order (blocking for it), its error rethrown; nullopt after the last; TimeoutError past
  /// the map's timeout.
  std::optional<R> next() {
    if (chunked()) {
      if (next_ == total_) return std::nullopt;
      const std::size_t i = next_++;
      const std::size_t c = i / chunksize_;
      if (c != cursor_chunk_) {
        cursor_ = {};
        cursor_chunk_ = c;
      }
      if (!chunks_[c].wait_until(until())) throw_timeout();
      return detail::chunk_state<R>(chunks_[c]).take_call(i % chunksize_, cursor_);
    }
    if (next_ == fs_.size()) return std::nullopt;
    Future<R>& f = fs_[next_++];
    if (!f.wait_until(until())) throw_timeout();
    return f.take();
  }
  /// Every result, in order; the first failure in input order is thrown.
  std::vector<R> get() {
    std::vector<R> out;
    out.reserve(size() - next_);
    while (auto r = next()) out.push_back(std::move(*r));
    return out;
  }
  /// Every call's future, in input order (the first call gives each call of
  /// a chunk its own future, see above).
  const std::vector<Future<R>>& futures() const {
    if (chunked()) {
      std::vector<Future<R>> fs;
      fs.reserve(total_);
      for (std::size_t c = 0; c < chunks_.size(); ++c) {
        const std::size_t first = fs.size();
        detail::chunk_state<R>(chunks_[c]).split_into(fs);
        // From here each call counts for progress at its own final state (a
        // cancel of it included), not when the last call of its chunk ends.
        for (std::size_t i = first; progress_ && i < fs.size(); ++i) {
          detail::ProgressTracker::watch_chunk_call(progress_, fs[i], c, fs.size() - first);
        }
      }
      fs_ = std::move(fs);
      split_ = true;
    }
    return fs_;
  }
  /// An input iterator over the results, as next() gives them.
  auto begin() { return detail::NextIterator<ProcessMapResults>(this); }
  /// The end of the results.
  auto end() { return detail::NextIterator<ProcessMapResults>(); }
  /// The task's result type.
  using value_type = R;

 private:
  // Whether the results are read from the chunks (not yet split).
  bool chunked() const { return !chunks_.empty() && !split_; }
  std::size_t size() const { return chunks_.empty() ? fs_.size() : total_; }
  std::chrono::steady_clock::time_point until() const {
    return deadline_.is_never() ? std::chrono::steady_clock::time_point::max() : deadline_.point();
  }
  [[noreturn]] static void throw_timeout() {
    throw TimeoutError("ProcessPool::map: a result was not ready before the timeout");
  }
  void take(ProcessMapResults& o) noexcept {
    fs_ = std::exchange(o.fs_, {});
    chunks_ = std::exchange(o.chunks_, {});
    chunksize_ = o.chunksize_;
    total_ = std::exchange(o.total_, 0);
    split_ = std::exchange(o.split_, false);
    next_ = std::exchange(o.next_, 0);
    cursor_ = std::exchange(o.cursor_, {});
    cursor_chunk_ = std::exchange(o.cursor_chunk_, 0);
    deadline_ = o.deadline_;
    progress_ = std::move(o.progress_);
  }
  void drop() noexcept {
    if (chunked()) {
      if (progress_) {
        std::size_t final_now = 0;
        for (const auto& c : chunks_) final_now += c.done() ? detail::chunk_state<R>(c).size() : 0;
        progress_->stop(final_now);
      }
      for (std::size_t c = next_ / chunksize_; c < chunks_.size(); ++c) chunks_[c].cancel();
      return;
    }
    if (progress_) progress_->stop(detail::count_final(fs_));
    for (std::size_t i = next_; i < fs_.size(); ++i) fs_[i].cancel();
  }

  mutable std::vector<Future<R>> fs_;              // each call's future: chunksize 1, or once split
  std::vector<Future<detail::ChunkDone>> chunks_;  // chunksize > 1: each chunk's
  std::size_t chunksize_ = 1;
  std::size_t total_ = 0;       // calls in all, with chunks_
  mutable bool split_ = false;  // futures() gave each call of chunks_ its own future
  std::size_t next_ = 0;
  detail::ChunkCursor cursor_;  // where next() is in chunk cursor_chunk_'s answer
  std::size_t cursor_chunk_ = 0;
  platform::Deadline deadline_ = platform::Deadline::never();
  std::shared_ptr<detail::ProgressTracker> progress_;  // null without a progress callback
};

/// The results of ProcessPool::map_unordered (and ClusterPool's): each
/// call's future as it becomes done (as keel::as_completed gives them).
/// Dropping it stops the map's progress callback; the calls go on.
template <class R>
class ProcessUnorderedResults {
 public:
  /// Watches fs until deadline; progress (null: none) is stopped by the destructor.
  ProcessUnorderedResults(const std::vector<Future<R>>& fs, const platform::Deadline& deadline,
                          std::shared_ptr<detail::ProgressTracker> progress)
      : done_(fs, deadline), progress_(std::move(progress)) {
    if (progress_) fs_ = fs;
  }
  ProcessUnorderedResults(const ProcessUnorderedResults&) = delete;
  ProcessUnorderedResults& operator=(const ProcessUnorderedResults&) = delete;
  /// The progress callback is not called from then on.
  ~ProcessUnorderedResults() {
    if (progress_) progress_->stop(detail::count_final(fs_));
  }

  /// What next() yields: each call's future, done.
  using value_type = Future<R>;
  /// The next future to be done; nullopt after the last; TimeoutError past the map's timeout.
  std::optional<Future<R>> next() { return done_.next(); }
  /// An input iterator over the futures, as next() gives them.
  using iterator = detail::NextIterator<ProcessUnorderedResults>;
  /// The first future to be done (blocks for it).
  iterator begin() { return iterator(this); }
  /// The end of the sequence.
  iterator end() { return iterator(); }

 private:
  AsCompleted<R> done_;
  std::shared_ptr<detail::ProgressTracker> progress_;  // null without a progress callback
  std::vector<Future<R>> fs_;                          // the calls, for progress_ (empty without it)
};

namespace detail {
// The ordered results of a map or starmap of ProcessPool or ClusterPool,
// whose calls submit() returns. Its deadline counts from the call, taken
// before submit() reads the inputs.
template <class R, class Submit>
ProcessMapResults<R> ordered_map(const ProcessMapOptions& opts, Submit submit) {
  const platform::Deadline deadline = map_deadline(opts.timeout);
  MapChunks<R> m = submit();
  auto progress = watch_progress(opts.progress, m);
  return ProcessMapResults<R>(std::move(m), deadline, std::move(progress));
}
}  // namespace detail

/// A submission the pool refused because queue_capacity tasks were already
/// waiting, as a ProcessRejectionHandler sees it (a map chunk is one call of
/// several tasks). The handler settles it: run() it in this process, as
/// caller_runs does, cancel() it, or throw (the submitter gets the
/// exception). A call the handler leaves unsettled fails with
/// RejectedError(saturated) before the submission returns (POOL-10).
class ProcessRejectedCall {
 public:
  ProcessRejectedCall(const ProcessRejectedCall&) = delete;
  ProcessRejectedCall& operator=(const ProcessRejectedCall&) = delete;
  /// Fails the call with RejectedError(saturated) if the handler left it unsettled.
  ~ProcessRejectedCall();
  /// Why the pool refused it: always saturated (after shutdown the handler is not called).
  RejectedError::Reason reason() const { return RejectedError::Reason::saturated; }
  /// The registered name of its task.
  const std::string& task() const;
  /// Runs it here, on the submitting thread, as caller_runs; false if every future was cancelled first or it is
  /// settled.
  bool run();
  /// Cancels its future(s); false if it is already settled.
  bool cancel();
  /// Whether the handler has not yet run or cancelled it.
  bool pending() const { return call_ != nullptr; }

 private:
  friend class ProcessPool;
  ProcessRejectedCall(detail::PoolCall* call, std::size_t max_message)
      : call_(call), max_(max_message), task_(call->name()) {}
  detail::PoolCall* call_;  // owned by the submission that refused it
  std::size_t max_;
  std::string task_;
};

/// Runs registered tasks in worker processes and survives them dying (the contract above).
class ProcessPool {
 public:
  /// Starts the workers (options as above); ValueError, OsError or MisuseError when they cannot run.
  explicit ProcessPool(const ProcessPoolOptions& options = {});
  /// Shuts down with wait (queued tasks still run), then reaps every worker (POOL-4).
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  /// Runs task(args...) in a worker; its future resolves with the result or the error (POOL-1).
  template <class R, class... P, class... A>
  Future<R> submit(const TaskRef<R(P...)>& task, A&&... args) {
    return submit(SubmitOptions{}, task, std::forward<A>(args)...);
  }
  /// submit with per-task options (its timeout).
  template <class R, class... P, class... A>
  Future<R> submit(const SubmitOptions& opts, const TaskRef<R(P...)>& task, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "keel::ProcessPool::submit: wrong number of arguments for this task");
    if constexpr (sizeof...(P) == sizeof...(A)) {  // else only the line above: no cascade
      auto call = detail::make_call(task, std::forward<A>(args)...);
      Future<R> f = call->future();
      enqueue(std::move(call), opts.timeout);
      return f;
    } else {
      return {};
    }
  }

  /// Python's Executor.map / Pool.map with chunksize: results in input order.
  /// Both maps read (encode) every input before they return and keep none, so
  /// any range will do, a temporary or a view included (LIFE-9).
  template <class R, class P, class Range>
  ProcessMapResults<R> map(const TaskRef<R(P)>& task, Range&& inputs, const ProcessMapOptions& opts = {}) {
    return detail::ordered_map<R>(opts, [&] { return submit_chunks(task, inputs, opts.chunksize); });
  }

  /// Pool.starmap: task(get<0>(t), get<1>(t), ...) for every tuple, pair or
  /// array t of inputs (keel::zip(a, b) pairs ranges up, to the shortest);
  /// each tuple is encoded as the task's parameters. As map otherwise.
  template <class R, class... P, class Range>
  ProcessMapResults<R> starmap(const TaskRef<R(P...)>& task, Range&& inputs, const ProcessMapOptions& opts = {}) {
    using Tuple = std::remove_cvref_t<decltype(*std::begin(inputs))>;
    constexpr bool fits = detail::tuple_fits<Tuple, P...>();
    static_assert(fits,
                  "keel::ProcessPool::starmap: each input must be a tuple of as many elements as the task has "
                  "parameters, each convertible to its parameter");
    if constexpr (fits) {  // else only the line above: no cascade
      return detail::ordered_map<R>(opts, [&] {
        return detail::submit_star_chunks(task, inputs, opts.chunksize, "ProcessPool::starmap",
                                          [this](detail::PoolCallPtr c) { enqueue(std::move(c), std::nullopt); });
      });
    } else {
      return ProcessMapResults<R>({}, platform::Deadline::never());
    }
  }

  /// Pool.imap_unordered: results as they complete (each call's future, done).
  template <class R, class P, class Range>
  ProcessUnorderedResults<R> map_unordered(const TaskRef<R(P)>& task, Range&& inputs,
                                           const ProcessMapOptions& opts = {}) {
    const platform::Deadline deadline = detail::map_deadline(opts.timeout);
    auto fs = submit_chunks(task, inputs, opts.chunksize).split();
    auto progress = detail::watch_progress(opts.progress, fs);
    return ProcessUnorderedResults<R>(fs, deadline, std::move(progress));
  }

  /// Refuses new tasks; cancels the queued ones with cancel_futures; with wait, returns once every worker was reaped.
  void shutdown(const ShutdownOptions& opts = {});
  /// Shut down at once: queued tasks are cancelled, every worker gets SIGTERM
  /// (SIGKILL for kill_workers); a task that was running fails with
  /// WorkerLost. Returns once every worker was reaped.
  void terminate_workers();
  /// terminate_workers with SIGKILL at once.
  void kill_workers();
  /// Waits for the pool to finish after shutdown; false on timeout.
  template <class Rep, class Period>
  bool await_termination(std::chrono::duration<Rep, Period> timeout) {
    return await(platform::Deadline::after(timeout));
  }

  /// A snapshot of the pool: its workers (with their pids) and its tasks.
  ProcessPoolStats stats() const;
  /// The worker processes alive now: stats().pids, by the same rule as
  /// stats().workers. Two calls are two instants (a worker may exit between
  /// them): take one stats() when the count and the pids must agree.
  std::vector<int> worker_pids() const;
  /// The number of workers the pool keeps.
  unsigned workers() const { return workers_; }
  /// Why the pool broke (what its BrokenProcessPool errors say), once it has:
  /// its submits throw from then on. nullopt while it can run work.
  std::optional<std::string> broken() const;

 private:
  friend struct detail::PoolAccess;
  void enqueue(detail::PoolCallPtr call, std::optional<std::chrono::nanoseconds> timeout);
  void check_size(const detail::PoolCall& call) const;
  bool await(const platform::Deadline& d);

  template <class R, class P, class Range>
  detail::MapChunks<R> submit_chunks(const TaskRef<R(P)>& task, Range& inputs, std::size_t chunksize) {
    return detail::submit_chunks(task, inputs, chunksize, "ProcessPool::map",
                                 [this](detail::PoolCallPtr c) { enqueue(std::move(c), std::nullopt); });
  }

  std::optional<std::chrono::nanoseconds> default_timeout() const { return task_timeout_; }

  unsigned workers_;
  std::size_t max_message_;
  std::optional<std::chrono::nanoseconds> task_timeout_;
  ProcessRejectionHandler handler_;
  std::unique_ptr<detail::PoolDriver> d_;
};

}  // namespace keel
