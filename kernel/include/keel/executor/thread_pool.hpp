// keel::ThreadPoolExecutor: Python's ThreadPoolExecutor with Java's controls
// (core and maximum threads, keep-alive, fifo/lifo/priority/hand-off queues,
// rejection policies, hooks, shutdown_now, statistics). README.md's thread
// pool section is the guide; each option is documented where it is declared.
//
// Contract: submit() returns a Future; the task runs at most once, on a
// worker thread, unless it is cancelled first (a callable taking a
// std::stop_token gets one, set by request_stop() or shutdown_now()). Threads
// start by Java's rule: an idle worker takes the task, else a new thread
// while fewer than core_threads live, else the queue, else a thread up to
// max_threads, else the rejection policy (detail::decide_admission is that
// rule, tested exhaustively), or a rejection_handler the user gave, which
// decides on the submitting thread what becomes of the refused task
// (RejectedTask). shutdown() refuses new work and lets queued work finish or
// cancels it; shutdown_now() also hands it back. The destructor never
// throws: it is shutdown(wait), or shutdown(wait = false) when it runs on one
// of the pool's own threads (LIFE-8). map and starmap submit lazily, keep
// input order, and report progress (keel/executor/map_progress.hpp). A pool
// with an unbounded fifo queue (the default) stops taking its lock on
// submission once its core threads have started (ring mode, EXEC-13,
// EXEC-14, SYNC-16): it then has one more thread, a monitor that wakes a
// sleeping worker when queued tasks stop moving, ended at shutdown.
//
// Invariants: EXEC-1..EXEC-10 (one final state per task; at most one run,
// none after cancel; no silent drop at shutdown; shutdown(wait) waits for
// all; no stranded work; threads never exceed max_threads; callbacks once;
// statistics add up; a final state publishes the task's writes; once a
// future said BrokenThreadPool or cancelled-by-shutdown, later submits are
// refused the same way, since the state is published under the lock first),
// LIFE-8, LIFE-9 (a map owns an rvalue range), EXEC-11 (a rejection
// handler never leaves a future pending), EXEC-12 (n tasks on n workers run
// at once: no task waits behind a running one while a worker idles, in ring
// mode for longer than the monitor's tick),
// MAP-1 (progress).
#pragma once

#include <algorithm>
#include <deque>
#include <iterator>
#include <memory>
#include <tuple>
#include <variant>
#include <vector>

#include "keel/detail/next_iterator.hpp"
#include "keel/executor/map_progress.hpp"
#include "keel/executor/reject_policy.hpp"
#include "keel/executor/task.hpp"
#include "keel/executor/task_queue.hpp"
#include "keel/future/future.hpp"
#include "keel/shutdown.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/timeout.hpp"

namespace keel {

/// The priority of a submission to a priority queue: lower values run first.
struct Priority {
  /// Lower values run first (FIFO among equals).
  int value = 0;
};

/// What the before/after hooks are told about a task.
struct TaskInfo {
  std::uint64_t id;  ///< submission order, from 1
  int priority;      ///< the submission's Priority value (0 without one)
};

/// Starts `thread` running `body` (it may wrap body, e.g. to set affinity). It
/// runs with the pool's lock held, so it must not call back into the pool; if
/// it throws, or returns without starting the thread, no worker is added.
using ThreadFactory = std::function<void(platform::Thread& thread, std::function<void()> body)>;

class RejectedTask;
class ThreadPoolExecutor;

/// Decides what becomes of a submission the pool refused for want of room,
/// on the submitting thread, instead of RejectPolicy (Java's
/// RejectedExecutionHandler; RejectedTask says what it may do). Not called
/// after shutdown: those submissions throw RejectedError(shutdown) whatever
/// the handler (EXEC-10), nor for a broken pool (BrokenThreadPool).
using RejectionHandler = std::function<void(RejectedTask& task, ThreadPoolExecutor& pool)>;

/// A ThreadPoolExecutor's configuration, as designated initializers (Java's ThreadPoolExecutor arguments).
struct ThreadPoolOptions {
  std::size_t max_threads = 0;                ///< 0: min(32, cpus + 4)
  std::optional<std::size_t> core_threads{};  ///< default: max_threads
  /// How long a thread above core_threads (or any, with allow_core_timeout) waits idle before it exits.
  std::chrono::nanoseconds keep_alive = std::chrono::seconds(60);
  /// Whether core threads also exit after keep_alive idle (Java's allowCoreThreadTimeOut).
  bool allow_core_timeout = false;
  /// The start of each worker thread's name, as the OS shows it.
  std::string thread_name_prefix = "keel-pool";
  /// Runs in each new worker before its first task; if it throws, the pool breaks (BrokenThreadPool).
  std::function<void()> initializer{};
  ThreadFactory thread_factory{};  ///< default: start the thread as is
  /// The queue's order: fifo, lifo, priority (lower value first) or handoff (holds nothing).
  QueueKind queue = QueueKind::fifo;
  std::size_t queue_capacity = 0;  ///< 0: unbounded
  /// What a submission that finds the pool saturated gets (keel/executor/reject_policy.hpp).
  RejectPolicy reject = RejectPolicy::abort;
  /// Decides instead of `reject` (which must then stay abort; ValueError otherwise): see RejectedTask.
  RejectionHandler rejection_handler{};
  std::optional<std::chrono::nanoseconds> block_timeout{};  ///< reject = block; nullopt: wait for ever
  /// Runs in the worker before each task (Java's beforeExecute).
  std::function<void(const TaskInfo&)> before_task{};
  /// Runs in the worker after each task, with its exception or null (Java's afterExecute).
  std::function<void(const TaskInfo&, std::exception_ptr)> after_task{};
  /// Runs once when the pool has terminated, on one of its threads (Java's terminated).
  std::function<void()> on_terminated{};
};

/// One snapshot of a pool, taken under its lock (and, in ring mode, with its workers' counts held
/// still): the fields agree with one another.
struct ThreadPoolStats {
  std::size_t threads = 0;      ///< live workers
  std::size_t idle = 0;         ///< waiting for work
  std::size_t active = 0;       ///< running a task
  std::size_t largest = 0;      ///< most live workers ever
  std::size_t queued = 0;       ///< waiting in the queue (cancelled ones until a worker drops them)
  std::uint64_t submitted = 0;  ///< accepted by the pool (handed, queued or given a new thread)
  std::uint64_t completed = 0;  ///< run to the end (value or exception) by workers
  std::uint64_t rejected = 0;   ///< refused, discarded or run by the caller; plus discard_oldest's victims
};

/// A task shutdown_now() took from the queue. run() runs it in the calling
/// thread and completes its future; dropping it unrun cancels the future.
class PendingTask {
 public:
  /// Takes over a task the pool's queue gave up (made by shutdown_now()).
  explicit PendingTask(detail::Task* t) noexcept : t_(t) {}
  /// Takes o's task; o is left empty.
  PendingTask(PendingTask&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  /// Cancels this handle's task if unrun, then takes o's.
  PendingTask& operator=(PendingTask&& o) noexcept {
    if (this != &o) {
      reset();
      t_ = std::exchange(o.t_, nullptr);
    }
    return *this;
  }
  /// Cancels the task's future if it was not run.
  ~PendingTask() { reset(); }
  /// Returns false if the task was cancelled meanwhile (it did not run).
  bool run();
  /// Cancels the task's future; false if it is empty or no longer pending.
  bool cancel() { return t_ && t_->cancel(); }
  /// The task's submission number (from 1); 0 when empty.
  std::uint64_t id() const { return t_ ? t_->seq : 0; }
  /// The task's priority (0 without one, or when empty).
  int priority() const { return t_ ? t_->priority : 0; }

 private:
  void reset() noexcept;
  detail::Task* t_;
};

/// Options of ThreadPoolExecutor::map and starmap.
struct MapOptions {
  std::optional<std::chrono::nanoseconds> timeout{};  ///< for the whole map, from the call
  std::size_t lookahead = 0;  ///< tasks submitted ahead of the consumer; 0: all at once (Python)
  /// Called with (done, total or 0) as each call becomes final (keel/executor/map_progress.hpp).
  MapProgress progress{};
};

namespace detail {
class ThreadPoolCore;
}  // namespace detail

template <class R, class F, class It, class Sent = It, bool Star = false>
class MapResults;

/// A submission the pool refused for want of room (saturated, or no thread
/// could start), as a RejectionHandler sees it. The handler settles it: run()
/// it here, cancel() it, take() it to run or drop later, or throw (the
/// submitter gets the exception). A task the handler leaves unsettled fails
/// with RejectedError(reason()) before submit returns its future (EXEC-3).
class RejectedTask {
 public:
  RejectedTask(const RejectedTask&) = delete;
  RejectedTask& operator=(const RejectedTask&) = delete;
  /// Fails the task with RejectedError(reason()) if the handler left it unsettled.
  ~RejectedTask();
  /// Why the pool refused it: saturated or no_thread.
  RejectedError::Reason reason() const { return reason_; }
  /// Runs it on this (the submitting) thread, as caller_runs; false if it was cancelled first or is settled.
  bool run();
  /// Cancels its future; false if it is already settled.
  bool cancel();
  /// Hands it over as a PendingTask (run it later, or drop it to cancel it); empty if it is already settled.
  PendingTask take();
  /// Whether the handler has not yet run, cancelled or taken it.
  bool pending() const { return t_ != nullptr; }

 private:
  friend class detail::ThreadPoolCore;
  RejectedTask(detail::Task* t, RejectedError::Reason why) noexcept : t_(t), reason_(why) {}
  detail::Task* t_;  // the executor's reference, until settled
  RejectedError::Reason reason_;
};

/// A pool of threads that runs submitted callables and returns their futures (the contract above).
class ThreadPoolExecutor {
 public:
  /// Starts no thread until work arrives (see prestart_core_threads).
  /// ValueError for options that contradict each other.
  explicit ThreadPoolExecutor(ThreadPoolOptions options = {});
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;
  /// shutdown(wait), or shutdown(wait = false) on one of the pool's threads.
  ~ThreadPoolExecutor();

  /// fn(args...) on a worker: its Future, or RejectedError / BrokenThreadPool
  /// as the policy and the pool's state say (EXEC-3).
  template <class F, class... A>
  auto submit(F&& fn, A&&... args) {
    return submit_impl(0, false, std::forward<F>(fn), std::forward<A>(args)...);
  }
  /// Only for a priority queue (ValueError otherwise).
  template <class F, class... A>
  auto submit(Priority p, F&& fn, A&&... args) {
    return submit_impl(p.value, true, std::forward<F>(fn), std::forward<A>(args)...);
  }

  /// fn(x) for every x of inputs, results in input order; destroying the
  /// returned sequence cancels the tasks not yet started. An lvalue range is
  /// iterated in place and must outlive the sequence; an rvalue range (a
  /// temporary container or view) is moved into the sequence, which owns it.
  template <class F, class Range>
  auto map(F fn, Range&& inputs, MapOptions options = {});

  /// map for callables of several arguments: std::apply(fn, t) for every
  /// tuple, pair or array t of inputs, with map's order, laziness, timeout,
  /// progress and ownership rules; starmap(fn, keel::zip(a, b)) calls
  /// fn(a[i], b[i]) up to the shortest range (Python's starmap over zip).
  template <class F, class Range>
  auto starmap(F fn, Range&& inputs, MapOptions options = {});

  /// Refuses new work; queued work runs, or is cancelled with cancel_futures;
  /// with wait, returns once every worker exited (EXEC-4). MisuseError with
  /// wait on one of the pool's own threads.
  void shutdown(ShutdownOptions options = {});
  /// shutdown() that also takes the queued tasks back (never started, not
  /// cancelled: run or drop them) and requests a stop of the running ones.
  std::vector<PendingTask> shutdown_now();
  /// Waits until shut down and every worker exited: true then. The untimed
  /// form throws MisuseError on one of the pool's own threads.
  bool await_termination() { return await_by(platform::Deadline::never()); }
  /// As above, false once timeout passed (the rule of keel/timeout.hpp).
  template <class Rep, class Period>
  bool await_termination(std::chrono::duration<Rep, Period> timeout) {
    return await_by(platform::Deadline::after(timeout));
  }

  /// shutdown() or shutdown_now() was called.
  bool is_shutdown() const;
  /// Shut down, and every worker exited.
  bool is_terminated() const;
  /// An initializer failed: submissions throw BrokenThreadPool.
  bool is_broken() const;

  /// Starts every core thread not yet alive; returns how many it started.
  std::size_t prestart_core_threads();
  /// Starts one core thread if fewer than core_threads live; whether it did.
  bool prestart_core_thread();
  /// Changes core_threads (ValueError above max_threads). Lowered: idle
  /// workers above it wait with the keep-alive; raised: threads start for
  /// queued work.
  void set_core_threads(std::size_t n);
  /// Changes max_threads (ValueError if 0 or below core_threads); workers
  /// above it retire, busy ones after their task (EXEC-6).
  void set_max_threads(std::size_t n);
  /// Changes keep_alive (ValueError if negative); idle workers re-arm their waits.
  void set_keep_alive(std::chrono::nanoseconds d);
  /// Lets idle core threads retire after keep_alive too.
  void allow_core_timeout(bool allow);
  /// The current core_threads.
  std::size_t core_threads() const;
  /// The current max_threads.
  std::size_t max_threads() const;
  /// A consistent snapshot of the pool's counters (EXEC-8).
  ThreadPoolStats stats() const;

  /// min(32, cpus + 4), as Python's.
  static std::size_t default_max_threads();

 private:
  template <class F, class... A>
  auto submit_impl(int priority, bool has_priority, F&& fn, A&&... args) {
    using Fn = std::decay_t<F>;
    constexpr bool takes_token = std::is_invocable_v<Fn&&, platform::StopToken, std::decay_t<A>&&...>;
    if constexpr (!takes_token && !std::is_invocable_v<Fn&&, std::decay_t<A>&&...>) {
      // One line that says what is wrong; the compiler's "required from"
      // lines above it name F and A. The branch below is then not
      // instantiated, so no cascade of std::invoke_result errors follows.
      static_assert(takes_token,
                    "keel::ThreadPoolExecutor::submit: fn cannot be called with these arguments "
                    "(each is copied, then passed as an rvalue; fn may take a std::stop_token first)");
      return;
    } else {
      return submit_valid<takes_token>(priority, has_priority, std::forward<F>(fn), std::forward<A>(args)...);
    }
  }

  template <bool takes_token, class F, class... A>
  auto submit_valid(int priority, bool has_priority, F&& fn, A&&... args) {
    using Fn = std::decay_t<F>;
    using Raw = std::conditional_t<takes_token, std::invoke_result<Fn&&, platform::StopToken, std::decay_t<A>&&...>,
                                   std::invoke_result<Fn&&, std::decay_t<A>&&...>>;
    using R = std::remove_cvref_t<typename Raw::type>;
    if constexpr (sizeof...(A) == 0) {
      // No arguments: no empty tuple in the closure, whose byte would be
      // padded to eight.
      return submit_bound<R, takes_token>(priority, has_priority,
                                          [fn = Fn(std::forward<F>(fn))](platform::StopToken tok) mutable -> R {
                                            if constexpr (takes_token) {
                                              return std::invoke(std::move(fn), std::move(tok));
                                            } else {
                                              (void)tok;
                                              return std::invoke(std::move(fn));
                                            }
                                          });
    } else {
      return submit_bound<R, takes_token>(
          priority, has_priority,
          [fn = Fn(std::forward<F>(fn)),
           args = std::tuple<std::decay_t<A>...>(std::forward<A>(args)...)](platform::StopToken tok) mutable {
            return std::apply(
                [&](auto&&... xs) -> R {
                  if constexpr (takes_token) {
                    return std::invoke(std::move(fn), std::move(tok), std::move(xs)...);
                  } else {
                    (void)tok;
                    return std::invoke(std::move(fn), std::move(xs)...);
                  }
                },
                std::move(args));
          });
    }
  }

  template <class R, bool TakesToken, class Bound>
  Future<R> submit_bound(int priority, bool has_priority, Bound&& bound) {
    auto* typed = new detail::TaskOf<R, std::decay_t<Bound>>(std::forward<Bound>(bound));
    if constexpr (TakesToken) typed->enable_stop();
    Future<R> future = detail::make_future<R>(typed, false);
    detail::Task* task = typed;
    task->priority = priority;
    task->add_ref();  // the executor's reference, given up after the task ran or was dropped
    enqueue(task, has_priority);
    return future;
  }

  void enqueue(detail::Task* task, bool has_priority);
  template <class R, class Fn, bool Star, class Range>
  auto map_impl(Fn fn, Range&& inputs, MapOptions options);
  bool await_by(const platform::Deadline& deadline);

  // Owned by this object, until the destructor runs on one of the pool's own
  // threads: then the workers own it, and the last to leave frees it.
  detail::ThreadPoolCore* core_;
};

/// The lazily submitted results of ThreadPoolExecutor::map (and starmap:
/// Star, each input a tuple of fn's arguments). When the inputs were an
/// rvalue range, `owned` keeps that range alive, at a fixed address (cur_
/// and end_ point into it, so this object never moves).
template <class R, class F, class It, class Sent, bool Star>
class MapResults {
 public:
  /// The task's result type (std::monostate for void).
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  /// Submits the first `lookahead` calls at once; the rest as results are
  /// taken. `total`: the number of inputs, or 0 if unknown (for progress).
  MapResults(ThreadPoolExecutor& ex, F fn, It first, Sent last, const MapOptions& o, std::size_t total,
             std::shared_ptr<void> owned = {})
      : ex_(ex),
        owned_(std::move(owned)),
        fn_(std::move(fn)),
        cur_(std::move(first)),
        end_(std::move(last)),
        deadline_(o.timeout ? platform::Deadline::after(*o.timeout) : platform::Deadline::never()),
        lookahead_(o.lookahead),
        progress_(detail::make_progress(o.progress, total)) {
    try {
      refill();
    } catch (...) {
      cancel_rest();
      throw;
    }
  }
  MapResults(const MapResults&) = delete;
  MapResults& operator=(const MapResults&) = delete;
  /// Cancels the calls submitted and not yet taken; the progress callback is not called from then on.
  ~MapResults() {
    // The results taken were final; so may be some in flight or dropped.
    if (progress_) progress_->stop(taken_ + detail::count_final(inflight_) + detail::count_final(dropped_));
    cancel_rest();
  }

  /// The next result in input order; nullopt at the end. Rethrows a task's
  /// exception (and ends the sequence, as a Python generator does); throws
  /// TimeoutError if the map's timeout passes first.
  std::optional<value_type> next() {
    if (inflight_.empty()) return std::nullopt;
    Future<R> f = std::move(inflight_.front());
    inflight_.pop_front();
    try {
      if (!detail::state_of(f)->wait_until(deadline_)) throw TimeoutError("map result not ready before the timeout");
      refill();
      if constexpr (std::is_void_v<R>) {
        f.result();
        ++taken_;
        return value_type{};
      } else {
        std::optional<value_type> v(f.take());
        ++taken_;
        return v;
      }
    } catch (...) {
      f.cancel();
      if (progress_) dropped_.push_back(std::move(f));
      cancel_rest();
      throw;
    }
  }

  /// An input iterator over the results, as next() gives them.
  using iterator = detail::NextIterator<MapResults>;
  /// The first result (blocks for it).
  iterator begin() { return iterator(this); }
  /// The end of the results.
  iterator end() { return iterator(); }

 private:
  void refill() {
    while (!done_ && (lookahead_ == 0 || inflight_.size() < lookahead_)) {
      if (cur_ == end_) {
        done_ = true;
        break;
      }
      if constexpr (Star) {
        // The task keeps copies of the tuple's elements, not references into the inputs.
        inflight_.push_back(ex_.submit(fn_, detail::copy_tuple(*cur_)));
      } else {
        inflight_.push_back(ex_.submit(fn_, *cur_));
      }
      ++cur_;
      if (progress_) detail::ProgressTracker::watch(progress_, inflight_.back());
    }
  }
  void cancel_rest() noexcept {
    for (auto& f : inflight_) f.cancel();
    // Progress counts them when they are final (a running one may still finish).
    if (progress_) std::move(inflight_.begin(), inflight_.end(), std::back_inserter(dropped_));
    inflight_.clear();
    done_ = true;
  }

  ThreadPoolExecutor& ex_;
  std::shared_ptr<void> owned_;  // the rvalue range iterated, if any (destroyed last)
  F fn_;
  It cur_;
  Sent end_;
  bool done_ = false;  // the inputs are used up (or abandoned): cur_ is not touched again
  platform::Deadline deadline_;
  std::size_t lookahead_;
  std::deque<Future<R>> inflight_;
  std::shared_ptr<detail::ProgressTracker> progress_;  // null without a progress callback
  std::size_t taken_ = 0;                              // results returned by next(): their futures were final
  std::vector<Future<R>> dropped_;                     // with progress_: cancelled (or failed) in next()
};

template <class R, class Fn, bool Star, class Range>
auto ThreadPoolExecutor::map_impl(Fn fn, Range&& inputs, MapOptions options) {
  if constexpr (std::is_lvalue_reference_v<Range>) {
    using It = decltype(std::begin(inputs));
    using Sent = decltype(std::end(inputs));
    const std::size_t total = detail::size_or_zero(inputs);
    return MapResults<R, Fn, It, Sent, Star>(*this, std::move(fn), std::begin(inputs), std::end(inputs), options,
                                             total);
  } else {
    // An rvalue (a temporary): the results own it, on the heap, so iterators
    // into it stay valid for as long as the results need them.
    using Owned = std::remove_cvref_t<Range>;
    static_assert(!std::is_array_v<Owned>, "ThreadPoolExecutor::map: pass a temporary array as a std::array or vector");
    auto owned = std::make_shared<Owned>(std::forward<Range>(inputs));
    using It = decltype(std::begin(*owned));
    using Sent = decltype(std::end(*owned));
    const std::size_t total = detail::size_or_zero(*owned);
    It first = std::begin(*owned);
    Sent last = std::end(*owned);
    return MapResults<R, Fn, It, Sent, Star>(*this, std::move(fn), std::move(first), std::move(last), options, total,
                                             std::move(owned));
  }
}

template <class F, class Range>
auto ThreadPoolExecutor::map(F fn, Range&& inputs, MapOptions options) {
  using It = decltype(std::begin(inputs));
  using R = std::remove_cvref_t<std::invoke_result_t<F&, decltype(*std::declval<It&>())>>;
  return map_impl<R, F, false>(std::move(fn), std::forward<Range>(inputs), std::move(options));
}

template <class F, class Range>
auto ThreadPoolExecutor::starmap(F fn, Range&& inputs, MapOptions options) {
  using Tuple = std::remove_cvref_t<decltype(*std::begin(inputs))>;
  constexpr bool tuples = detail::TupleLike<Tuple>;
  constexpr bool fits = detail::applicable<F&&, Tuple>();
  if constexpr (!tuples) {
    static_assert(tuples, "keel::ThreadPoolExecutor::starmap: each input must be a tuple, pair or array of arguments");
    return;
  } else if constexpr (!fits) {
    // One line, as submit's; the branch below is then not instantiated.
    static_assert(fits,
                  "keel::ThreadPoolExecutor::starmap: fn cannot be called with the elements of an input tuple "
                  "(each is copied, then passed as an rvalue)");
    return;
  } else {
    using Args = decltype(detail::copy_tuple(std::declval<Tuple>()));
    using R = std::remove_cvref_t<decltype(std::apply(std::declval<F>(), std::declval<Args>()))>;
    return map_impl<R, detail::Applied<F>, true>(detail::Applied<F>{std::move(fn)}, std::forward<Range>(inputs),
                                                 std::move(options));
  }
}

}  // namespace keel
