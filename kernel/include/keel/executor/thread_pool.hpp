// keel::ThreadPoolExecutor: Python's ThreadPoolExecutor with Java's controls.
//
// Contract: submit(fn, args...) returns a Future of fn's result; the task runs
// at most once, on a worker thread, unless it is cancelled first. A callable
// whose first parameter is std::stop_token receives one, and
// Future::request_stop() (or shutdown_now()) sets it. Options:
//   - max_threads (default min(32, cpus + 4), as Python), core_threads
//     (default: equal to max_threads), keep_alive and allow_core_timeout:
//     a worker idle for keep_alive retires while more than core_threads are
//     alive, or always with allow_core_timeout;
//   - the queue: fifo, lifo, priority or handoff, bounded by queue_capacity
//     (0: unbounded; handoff holds nothing);
//   - what happens when saturated (queue full and max_threads busy): abort
//     (RejectedError), caller_runs (the submitting thread runs it), discard
//     (the returned future is cancelled), discard_oldest (the longest-waiting
//     queued task is cancelled to make room) or block (wait up to
//     block_timeout for room, then RejectedError(timed_out); no
//     block_timeout waits for ever, one <= 0 refuses at once: the rule of
//     keel/timeout.hpp);
//   - thread_name_prefix (threads are named "<prefix>_<n>" for the OS), an
//     initializer run by each new worker (if it throws, the pool is broken:
//     queued and later submissions fail with BrokenThreadPool), a thread
//     factory, and hooks before and after each task and on termination.
// When a thread is created (Java's rule, stated): a submission is handed to
// an idle worker if one exists; otherwise a new thread starts while fewer
// than core_threads are alive; otherwise the task is queued; only if the
// queue is full does a thread beyond core start, up to max_threads. With the
// default core_threads == max_threads this is Python's rule: a new thread
// only when none is idle. A queued task when no thread is alive always gets
// one (core_threads may be 0).
// shutdown({.wait, .cancel_futures}) refuses new work (RejectedError), lets
// queued work finish or cancels exactly the queued tasks, and with wait
// returns after every worker exited. shutdown_now() also hands back the
// queued tasks and asks running ones to stop (a task already handed to a
// worker counts as started: it runs, and is not asked to stop).
// Lifetimes: the pool's state lives in a heap core that its worker threads
// share with the ThreadPoolExecutor object. The destructor never throws. From
// any thread but the pool's own it is shutdown(wait): it returns once every
// worker exited and was joined. From one of the pool's own threads (a task, a
// done callback or hook running on a worker: the last owner of a
// shared_ptr<ThreadPoolExecutor> may be one of its tasks) waiting would wait
// for itself, so it is shutdown(wait = false) instead, as Python's: queued
// tasks still run, later submissions are refused, and the last worker to
// leave joins the others, detaches itself and frees the core; nothing touches
// the core after that. Called explicitly from the pool's own threads,
// shutdown(wait) and the untimed await_termination() would wait for
// themselves and throw MisuseError instead; the timed await_termination(d)
// returns false once d has passed.
// map(fn, inputs) iterates an lvalue range in place (it must outlive the
// results) and moves an rvalue range (a temporary vector, a view) into the
// results object, so pool.map(fn, make_vector()) is safe.
//
// Invariants: EXEC-1..EXEC-8 (proofs/INVARIANTS.md): one final state per
// accepted task; at most one run, none after cancel; no silent drop at
// shutdown; shutdown(wait) waits for all; no stranded work; threads never
// exceed max_threads; callbacks once; statistics add up. LIFE-8 (no
// destructor throws; a pool dropped by its own task still runs its queued
// tasks, its threads end and its core is freed by the last one), LIFE-9 (a
// map owns an rvalue range). EXEC-10: once a future said BrokenThreadPool
// (or cancelled by shutdown), every later submit throws BrokenThreadPool (or
// RejectedError): the state is published under the lock before any future
// is resolved.
#pragma once

#include <deque>
#include <memory>
#include <tuple>
#include <variant>

#include "keel/executor/reject_policy.hpp"
#include "keel/executor/task_queue.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/timeout.hpp"

namespace keel {

// The priority of a submission to a priority queue: lower values run first.
struct Priority {
  int value = 0;
};

// What the before/after hooks are told about a task.
struct TaskInfo {
  std::uint64_t id;  // submission order, from 1
  int priority;
};

// Starts `thread` running `body` (it may wrap body, e.g. to set affinity). It
// runs with the pool's lock held, so it must not call back into the pool; if
// it throws, or returns without starting the thread, no worker is added.
using ThreadFactory = std::function<void(platform::Thread& thread, std::function<void()> body)>;

struct ThreadPoolOptions {
  std::size_t max_threads = 0;                // 0: min(32, cpus + 4)
  std::optional<std::size_t> core_threads{};  // default: max_threads
  std::chrono::nanoseconds keep_alive = std::chrono::seconds(60);
  bool allow_core_timeout = false;
  std::string thread_name_prefix = "keel-pool";
  std::function<void()> initializer{};
  ThreadFactory thread_factory{};  // default: start the thread as is
  QueueKind queue = QueueKind::fifo;
  std::size_t queue_capacity = 0;  // 0: unbounded
  RejectPolicy reject = RejectPolicy::abort;
  std::optional<std::chrono::nanoseconds> block_timeout{};  // reject = block; nullopt: wait for ever
  std::function<void(const TaskInfo&)> before_task{};
  std::function<void(const TaskInfo&, std::exception_ptr)> after_task{};
  std::function<void()> on_terminated{};
};

struct ShutdownOptions {
  bool wait = true;
  bool cancel_futures = false;
};

struct ThreadPoolStats {
  std::size_t threads = 0;      // live workers
  std::size_t idle = 0;         // waiting for work
  std::size_t active = 0;       // running a task
  std::size_t largest = 0;      // most live workers ever
  std::size_t queued = 0;       // waiting in the queue (cancelled ones until a worker drops them)
  std::uint64_t submitted = 0;  // accepted by the pool (handed, queued or given a new thread)
  std::uint64_t completed = 0;  // run to the end (value or exception) by workers
  std::uint64_t rejected = 0;   // refused, discarded or run by the caller; plus discard_oldest's victims
};

// A task shutdown_now() took from the queue. run() runs it in the calling
// thread and completes its future; dropping it unrun cancels the future.
class PendingTask {
 public:
  explicit PendingTask(detail::FutureCore* t) noexcept : t_(t) {}
  PendingTask(PendingTask&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  PendingTask& operator=(PendingTask&& o) noexcept {
    if (this != &o) {
      reset();
      t_ = std::exchange(o.t_, nullptr);
    }
    return *this;
  }
  ~PendingTask() { reset(); }
  // Returns false if the task was cancelled meanwhile (it did not run).
  bool run();
  bool cancel() { return t_ && t_->cancel(); }
  std::uint64_t id() const { return t_ ? t_->seq : 0; }
  int priority() const { return t_ ? t_->priority : 0; }

 private:
  void reset() noexcept;
  detail::FutureCore* t_;
};

struct MapOptions {
  std::optional<std::chrono::nanoseconds> timeout{};  // for the whole map, from the call
  std::size_t lookahead = 0;                          // tasks submitted ahead of the consumer; 0: all at once (Python)
};

namespace detail {

// The callable and its bound arguments are destroyed as soon as the task has
// run (Python frees them then too), not when the last Future handle goes.
// The callable lives in raw storage with its own flag rather than in a
// std::optional: the flag then fits in the padding at the end of
// FutureState<R>, where the optional's would have cost eight more bytes.
template <class R, class Fn>
class Task final : public FutureState<R> {
 public:
  explicit Task(Fn fn) {
    ::new (static_cast<void*>(fn_)) Fn(std::move(fn));
    live_ = true;
  }
  ~Task() override {
    if (live_) callable().~Fn();
  }
  void execute() override {
    complete_with(*this, [this]() -> R { return callable()(this->stop_token()); });
    live_ = false;
    callable().~Fn();
  }

 private:
  Fn& callable() { return *std::launder(reinterpret_cast<Fn*>(fn_)); }

  bool live_ = false;  // fn_ holds the callable
  alignas(Fn) unsigned char fn_[sizeof(Fn)];
};

}  // namespace detail

namespace detail {
class ThreadPoolCore;
}  // namespace detail

template <class R, class F, class It, class Sent = It>
class MapResults;

class ThreadPoolExecutor {
 public:
  explicit ThreadPoolExecutor(ThreadPoolOptions options = {});
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;
  ~ThreadPoolExecutor();

  template <class F, class... A>
  auto submit(F&& fn, A&&... args) {
    return submit_impl(0, false, std::forward<F>(fn), std::forward<A>(args)...);
  }
  // Only for a priority queue (ValueError otherwise).
  template <class F, class... A>
  auto submit(Priority p, F&& fn, A&&... args) {
    return submit_impl(p.value, true, std::forward<F>(fn), std::forward<A>(args)...);
  }

  // fn(x) for every x of inputs, results in input order; destroying the
  // returned sequence cancels the tasks not yet started. An lvalue range is
  // iterated in place and must outlive the sequence; an rvalue range (a
  // temporary container or view) is moved into the sequence, which owns it.
  template <class F, class Range>
  auto map(F fn, Range&& inputs, MapOptions options = {});

  void shutdown(ShutdownOptions options = {});
  std::vector<PendingTask> shutdown_now();
  bool await_termination() { return await_by(platform::Deadline::never()); }
  template <class Rep, class Period>
  bool await_termination(std::chrono::duration<Rep, Period> timeout) {
    return await_by(platform::Deadline::after(timeout));
  }

  bool is_shutdown() const;
  bool is_terminated() const;
  bool is_broken() const;

  std::size_t prestart_core_threads();
  bool prestart_core_thread();
  void set_core_threads(std::size_t n);
  void set_max_threads(std::size_t n);
  void set_keep_alive(std::chrono::nanoseconds d);
  void allow_core_timeout(bool allow);
  std::size_t core_threads() const;
  std::size_t max_threads() const;
  ThreadPoolStats stats() const;

  static std::size_t default_max_threads();

 private:
  template <class F, class... A>
  auto submit_impl(int priority, bool has_priority, F&& fn, A&&... args) {
    using Fn = std::decay_t<F>;
    constexpr bool takes_token = std::is_invocable_v<Fn&&, platform::StopToken, std::decay_t<A>&&...>;
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
    auto* task = new detail::Task<R, std::decay_t<Bound>>(std::forward<Bound>(bound));
    if constexpr (TakesToken) task->enable_stop();
    task->priority = priority;
    Future<R> future = detail::make_future<R>(task, false);
    task->add_ref();  // the executor's reference, given up after the task ran or was dropped
    enqueue(task, has_priority);
    return future;
  }

  void enqueue(detail::FutureCore* task, bool has_priority);
  bool await_by(const platform::Deadline& deadline);

  // Owned by this object, until the destructor runs on one of the pool's own
  // threads: then the workers own it, and the last to leave frees it.
  detail::ThreadPoolCore* core_;
};

// The lazily submitted results of ThreadPoolExecutor::map. When the inputs
// were an rvalue range, `owned` keeps that range alive, at a fixed address
// (cur_ and end_ point into it, so this object never moves).
template <class R, class F, class It, class Sent>
class MapResults {
 public:
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  MapResults(ThreadPoolExecutor& ex, F fn, It first, Sent last, MapOptions o, std::shared_ptr<void> owned = {})
      : ex_(ex),
        owned_(std::move(owned)),
        fn_(std::move(fn)),
        cur_(std::move(first)),
        end_(std::move(last)),
        deadline_(o.timeout ? platform::Deadline::after(*o.timeout) : platform::Deadline::never()),
        lookahead_(o.lookahead) {
    try {
      refill();
    } catch (...) {
      cancel_rest();
      throw;
    }
  }
  MapResults(const MapResults&) = delete;
  MapResults& operator=(const MapResults&) = delete;
  ~MapResults() { cancel_rest(); }

  // The next result in input order; nullopt at the end. Rethrows a task's
  // exception (and ends the sequence, as a Python generator does); throws
  // TimeoutError if the map's timeout passes first.
  std::optional<value_type> next() {
    if (inflight_.empty()) return std::nullopt;
    Future<R> f = std::move(inflight_.front());
    inflight_.pop_front();
    try {
      if (!detail::state_of(f)->wait_until(deadline_)) throw TimeoutError("map result not ready before the timeout");
      refill();
      if constexpr (std::is_void_v<R>) {
        f.result();
        return value_type{};
      } else {
        return f.take();
      }
    } catch (...) {
      f.cancel();
      cancel_rest();
      throw;
    }
  }

  using iterator = detail::NextIterator<MapResults>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  void refill() {
    while (!done_ && (lookahead_ == 0 || inflight_.size() < lookahead_)) {
      if (cur_ == end_) {
        done_ = true;
        break;
      }
      inflight_.push_back(ex_.submit(fn_, *cur_));
      ++cur_;
    }
  }
  void cancel_rest() noexcept {
    for (auto& f : inflight_) f.cancel();
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
};

template <class F, class Range>
auto ThreadPoolExecutor::map(F fn, Range&& inputs, MapOptions options) {
  if constexpr (std::is_lvalue_reference_v<Range>) {
    using It = decltype(std::begin(inputs));
    using Sent = decltype(std::end(inputs));
    using R = std::remove_cvref_t<std::invoke_result_t<F&, decltype(*std::declval<It&>())>>;
    return MapResults<R, F, It, Sent>(*this, std::move(fn), std::begin(inputs), std::end(inputs), options);
  } else {
    // An rvalue (a temporary): the results own it, on the heap, so iterators
    // into it stay valid for as long as the results need them.
    using Owned = std::remove_cvref_t<Range>;
    static_assert(!std::is_array_v<Owned>, "ThreadPoolExecutor::map: pass a temporary array as a std::array or vector");
    auto owned = std::make_shared<Owned>(std::forward<Range>(inputs));
    using It = decltype(std::begin(*owned));
    using Sent = decltype(std::end(*owned));
    using R = std::remove_cvref_t<std::invoke_result_t<F&, decltype(*std::declval<It&>())>>;
    It first = std::begin(*owned);
    Sent last = std::end(*owned);
    return MapResults<R, F, It, Sent>(*this, std::move(fn), std::move(first), std::move(last), options,
                                      std::move(owned));
  }
}

}  // namespace keel
