// ThreadPoolExecutor: one lock (m_) guards the queue, the worker lists and the
// counters; a worker sleeps on its own futex word, so a submitter wakes
// exactly the worker it hands a task to, and only if that worker is asleep.
// What a submission or an idle worker does next is decided by the pure
// functions of decisions.hpp over a view read under m_; the code here only
// reads that view and carries the answer out.
//
// Idle protocol (the worker's `signal` word): idle (0, spinning, on the idle
// stack), asleep (1, in futex_wait), claimed (2). A claimer, holding m_, pops
// the worker from the idle stack, stores the task in `handed`, exchanges the
// word to claimed and wakes it if the old value was asleep. The wake is issued
// under m_: a claimed worker needs m_ before it can exit, so the word it
// sleeps on outlives the wake. A worker that wakes unclaimed (timeout,
// spurious) takes m_, sees the word is not claimed, and removes itself from
// the idle stack. Because a worker goes idle only after finding the queue
// empty under m_, and a submission prefers an idle worker, an idle worker and
// a queued task never coexist (EXEC-12: no task waits behind a running one
// while a worker idles).
//
// Ring mode (FIFO pools with an unbounded queue, the default): once every
// core thread has started, submissions stop taking m_. A submitter passes the
// gate (SubmitGate), pushes its task into a ring (TaskRing), leaves the gate,
// and wakes a worker only if one sleeps and none took the task within a short
// spin. Workers pop the ring without m_; one of them at a time spins on it
// when it is empty, the others sleep on an event count (EventCount). This is
// proofs/design/executor_ring.pml's protocol with its "spin, then wake"
// policy, which keeps EXEC-12: a task is never left in the ring while a
// worker sleeps. The pool leaves ring mode, under m_, when anything would
// start or stop a thread or needs the whole queue: shutdown, shutdown_now, a
// break, a resize, core timeouts, and a full ring (the locked queue then takes
// new tasks behind the ring's). Leaving closes the gate, which waits for the
// submitters inside, and wakes every sleeper; workers come back to m_ and
// drain the ring before the locked queue. A worker that finds the locked
// queue empty enters ring mode again when the pool allows it.
//
// The counts of a snapshot (stats(), shutdown_now()'s running tasks) are
// exact in ring mode too (EXEC-8): the snapshot, under m_, closes the gate
// and sets `frozen_`. A ring worker announces (a seq_cst store of its phase)
// before it pops from idle and before it counts a finished task, looks at
// `frozen_`, and parks while it is set; the snapshot waits until no worker is
// between such an announcement and its next phase. A Dekker pair, as the
// ring's push against the event count.
//
// Lifetimes (LIFE-8): everything above lives in a heap ThreadPoolCore, counted
// by refs_: one reference for the ThreadPoolExecutor object, one for each
// worker thread from its start until its very last touch of the core. The
// object's destructor, on any other thread, shuts down with wait (every worker
// joined) and frees the core. On one of the pool's own threads it cannot wait
// for itself: it shuts down without waiting and gives up its reference. The
// thread that then gives up the last one (always a pool thread: each worker
// holds its own until it leaves) joins every other worker, whose only work left
// is to return, detaches itself and frees the core.
#include "keel/executor/thread_pool.hpp"

#include <memory>

#include "keel/executor/decisions.hpp"
#include "keel/executor/submit_gate.hpp"
#include "keel/executor/task_ring.hpp"
#include "keel/sync/event_count.hpp"

namespace keel {

namespace detail {

// The pool's state and logic; ThreadPoolExecutor forwards to it. See the
// lifetime notes at the top of this file.
class ThreadPoolCore {
 public:
  explicit ThreadPoolCore(ThreadPoolOptions validated);
  ThreadPoolCore(const ThreadPoolCore&) = delete;
  ThreadPoolCore& operator=(const ThreadPoolCore&) = delete;

  void enqueue(detail::Task* task, bool has_priority, ThreadPoolExecutor& self);
  void shutdown(ShutdownOptions options);
  std::vector<PendingTask> shutdown_now();
  bool await_by(const platform::Deadline& deadline);
  bool is_shutdown() const;
  bool is_terminated() const { return terminated_.is_set(); }
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

  // The ThreadPoolExecutor's destructor on one of the pool's own threads:
  // shut down without waiting and give up the object's reference. Returns
  // false (and does nothing) on any other thread.
  bool abandon_from_own_thread() noexcept;
  // After shutdown(wait): no worker holds a reference any more.
  void destroy() noexcept;

 private:
  struct Worker;
  enum class Run { running, shutdown, stop };
  enum class Fast { taken, closed, full };

  ~ThreadPoolCore() = default;  // through destroy() or drop_ref()

  detail::Admit place(detail::Task* task, const platform::Deadline& block_deadline, detail::Task*& victim)
      KEEL_REQUIRES(m_);
  Fast submit_fast(detail::Task* task);
  void wake_after_push();
  void maybe_enter_ring() KEEL_REQUIRES(m_);
  void leave_ring() KEEL_REQUIRES(m_);
  void ring_loop(Worker* w);
  void monitor_main();
  void stop_monitor();
  detail::Task* ring_wait(Worker* w);
  void announce(Worker* w, std::int32_t phase);
  void freeze() const KEEL_REQUIRES(m_);
  void thaw() const KEEL_REQUIRES(m_);
  bool queue_empty() const KEEL_REQUIRES(m_);
  std::size_t queued() const;  // the caller holds m_ (read_stats(), below, as for it)
  detail::Task* take_locked() KEEL_REQUIRES(m_);
  std::vector<detail::Task*> drain_all() KEEL_REQUIRES(m_);
  void refused(detail::Task* task, detail::Admit done, const std::string& broken_why, ThreadPoolExecutor& self);
  void worker_main(Worker* w, detail::Task* first) KEEL_NO_TSA;
  bool run_initializer(Worker* w, detail::Task* first);
  void work_on(Worker* w, detail::Task* task) KEEL_NO_TSA;
  detail::Task* wait_idle(Worker* w, bool timed, bool& expired) KEEL_NO_TSA;
  bool run_task(detail::Task* task);
  bool try_add_worker(detail::Task* first) KEEL_REQUIRES(m_);
  bool claim_idle(detail::Task* task) KEEL_REQUIRES(m_);
  void release_idle_workers() KEEL_REQUIRES(m_);
  void remove_idle(Worker* w) KEEL_REQUIRES(m_);
  void notify_space() KEEL_REQUIRES(m_);
  bool worker_exit(Worker* w) KEEL_REQUIRES(m_);
  bool claim_termination() KEEL_REQUIRES(m_);
  void begin_finalizing() KEEL_REQUIRES(m_);
  bool end_finalizing();
  void break_pool(const std::exception_ptr& why, std::vector<detail::Task*>& failed) KEEL_REQUIRES(m_);
  void finish_termination();
  void join_exited();
  bool is_own_thread() const KEEL_REQUIRES(m_);
  ThreadPoolStats read_stats() const;  // the caller holds m_
  void check_not_worker(const char* what) KEEL_REQUIRES(m_);
  void drop_ref() noexcept;
  void free_orphaned() noexcept;

  // Immutable after construction.
  const std::string name_prefix_;
  const std::function<void()> initializer_;
  const ThreadFactory factory_;
  const RejectPolicy reject_;
  const RejectionHandler handler_;                               // empty: reject_ decides
  const std::optional<std::chrono::nanoseconds> block_timeout_;  // nullopt: wait for ever
  const std::function<void(const TaskInfo&)> before_task_;
  const std::function<void(const TaskInfo&, std::exception_ptr)> after_task_;
  const std::function<void()> on_terminated_;

  // The ThreadPoolExecutor object's reference plus one per worker thread that
  // has not yet made its last touch of the core (LIFE-8).
  platform::Atomic<std::size_t> refs_{1};

  // What every submission and every worker writes under m_ (the lock word,
  // the counters they bump, the idle list they pop and push) sits in m_'s
  // cache line, and the queue in the next one: each hand-off moves the lines
  // a critical section wrote to the other CPU, so the fewer lines the hot
  // path writes, the fewer cross-CPU transfers per task. What it only reads
  // (configuration, flags, live_) lies apart and stays shared.
  KEEL_CACHE_ALIGNED mutable Mutex m_;
  platform::Var<std::size_t> active_{0};       // guarded by m_
  platform::Var<std::uint64_t> submitted_{0};  // guarded by m_
  platform::Var<std::uint64_t> completed_{0};  // guarded by m_
  // The idle workers, a stack through Worker::next_idle (the most recently
  // idle on top): a claimer reads the next one from the worker line it
  // writes anyway, where a vector's buffer would be one more line to move.
  platform::Var<Worker*> idle_top_{nullptr};                 // guarded by m_
  platform::Var<std::size_t> idle_count_{0};                 // guarded by m_
  KEEL_CACHE_ALIGNED detail::TaskQueue queue_;               // guarded by m_
  KEEL_CACHE_ALIGNED platform::Var<Run> run_{Run::running};  // guarded by m_
  platform::Var<bool> broken_{false};                        // guarded by m_
  std::string broken_why_;                                   // guarded by m_
  // Guarded by m_: threads cancelling or failing tasks taken from the queue.
  platform::Var<std::size_t> finalizing_{0};
  platform::Var<bool> terminating_{false};        // guarded by m_
  platform::Var<std::size_t> core_;               // guarded by m_
  platform::Var<std::size_t> max_;                // guarded by m_
  std::chrono::nanoseconds keep_alive_;           // guarded by m_
  platform::Var<bool> core_timeout_;              // guarded by m_
  std::vector<Worker*> live_;                     // guarded by m_
  std::vector<Worker*> exited_;                   // guarded by m_; to be joined
  platform::Var<std::size_t> largest_{0};         // guarded by m_
  platform::Var<std::uint64_t> threads_made_{0};  // guarded by m_
  platform::Var<std::uint64_t> rejected_{0};      // guarded by m_
  Condition room_{m_};                            // blocked submitters wait here for room (RejectPolicy::block)

  // Ring mode (see the top of this file). What submitters write on the fast
  // path (the gate, the numbers) shares a line; what workers read
  // on every task (the mode, the freeze flag) lies on another, read-mostly.
  const std::unique_ptr<detail::TaskRing<detail::Task>> ring_;  // null: not a ring pool
  KEEL_CACHE_ALIGNED mutable detail::SubmitGate gate_;          // open only in ring mode, outside snapshots
  platform::Atomic<std::uint64_t> seq_{0};                      // submission numbers, both paths
  KEEL_CACHE_ALIGNED platform::Atomic<bool> ring_mode_{false};  // written under m_
  mutable platform::FutexWord frozen_{0};                       // a snapshot is being taken
  platform::Atomic<std::int32_t> ring_workers_{0};              // live workers when it entered ring mode
  detail::EventCount sleep_;                                    // ring workers that found it empty
  KEEL_CACHE_ALIGNED platform::Atomic<bool> spinner_{false};    // a ring worker spins: written often
  // The monitor: started with the first entry into ring mode, stopped at
  // termination, joined before the core is freed. It holds no reference.
  KEEL_CACHE_ALIGNED platform::FutexWord mon_awake_{0};  // 1: it watches the ring; submitters read it
  platform::FutexWord mon_tick_{0};                      // its timed sleep; never changes
  platform::Atomic<bool> mon_stop_{false};
  platform::Thread monitor_;  // started under m_; joined by destroy(), free_orphaned(), join_exited()
  Event terminated_;
  Mutex join_lock_;  // one thread joins the workers at a time
};

}  // namespace detail

using detail::ThreadPoolCore;

// A line of its own: the worker and its claimer write `signal` and `handed` in
// turn, and another worker's words next to them would move with every claim.
struct KEEL_CACHE_ALIGNED ThreadPoolCore::Worker {
  static constexpr std::int32_t idle = 0;
  static constexpr std::int32_t asleep = 1;
  static constexpr std::int32_t claimed = 2;

  // Ring mode: what the worker does, announced for a snapshot.
  static constexpr std::int32_t outside = 0;  // not in ring_loop: m_ guards what it does
  static constexpr std::int32_t waiting = 1;  // in ring_loop with no task (spinning, asleep)
  static constexpr std::int32_t taking = 2;   // about to pop, from waiting
  static constexpr std::int32_t running = 3;
  static constexpr std::int32_t finishing = 4;  // about to count its task and pop the next
  static constexpr std::int32_t parked = 8;     // added to taking or finishing: stopped for a snapshot

  platform::FutexWord signal{idle};
  platform::FutexWord phase{outside};
  platform::Atomic<std::uint64_t> ring_completed{0};  // written by the worker in ring_loop
  platform::Var<detail::Task*> handed;                // written by the claimer before the claim
  platform::Var<detail::Task*> current{nullptr};      // guarded by m_: the running task
  platform::Var<std::uint64_t> tid{0};                // guarded by m_
  platform::Var<Worker*> next_idle{nullptr};          // guarded by m_: the next one down the idle stack
  std::uint64_t number = 0;
  platform::Thread thread;
};

#if KEEL_MODEL
namespace model {
// Model builds only: a row that checks a wake the monitor would otherwise
// make up for, a tick later, switches its ticks off, and the monitor then
// waits for stop_monitor() alone (models/executor).
inline bool monitor_ticks = true;
}  // namespace model
#endif

namespace {

// ++v on a counter guarded by m_; returns the new value.
template <class T>
T bump(platform::Var<T>& v) {
  const T n = v.load() + 1;
  v.store(n);
  return n;
}

platform::Deadline idle_deadline(bool timed, std::chrono::nanoseconds keep_alive) {
  return timed ? platform::Deadline::after(keep_alive) : platform::Deadline::never();
}

// The ring's cells, how long a ring worker spins on the empty ring, and how
// often the monitor looks and how soon it sleeps. Under the model: a ring of
// two, so that it fills and the overflow path is explored too, one pause
// (platform::spin_pause is a yield there) and one quiet tick.
#if KEEL_MODEL
constexpr std::size_t ring_cells = 2;
constexpr int spinner_pauses = 1;
constexpr int monitor_quiet_ticks = 1;
#else
constexpr std::size_t ring_cells = 4096;
constexpr int spinner_pauses = 2000;
constexpr int monitor_quiet_ticks = 20;  // asleep after about a millisecond with nothing queued
#endif
constexpr std::chrono::microseconds monitor_tick{50};

// When the monitor's next tick ends (model::monitor_ticks, above).
platform::Deadline next_tick() {
#if KEEL_MODEL
  if (!model::monitor_ticks) return platform::Deadline::never();
#endif
  return platform::Deadline::after(monitor_tick);
}

RejectedError rejected_shutdown() {
  return RejectedError(RejectedError::Reason::shutdown, "cannot schedule new tasks after shutdown");
}

}  // namespace

std::size_t ThreadPoolExecutor::default_max_threads() {
  const std::size_t cpus = std::max(1u, platform::Thread::hardware_concurrency());
  return std::min<std::size_t>(32, cpus + 4);
}

static ThreadPoolOptions validated(ThreadPoolOptions o) {
  if (o.max_threads == 0) o.max_threads = ThreadPoolExecutor::default_max_threads();
  if (!o.core_threads) o.core_threads = o.max_threads;
  if (*o.core_threads > o.max_threads) {
    throw ValueError("core_threads (" + std::to_string(*o.core_threads) + ") exceeds max_threads (" +
                     std::to_string(o.max_threads) + ")");
  }
  if (o.keep_alive < std::chrono::nanoseconds::zero()) throw ValueError("keep_alive must not be negative");
  if (o.queue == QueueKind::handoff && o.queue_capacity != 0) {
    throw ValueError("a handoff queue holds no tasks: queue_capacity must be 0");
  }
  if (o.rejection_handler && o.reject != RejectPolicy::abort) {
    throw ValueError("a rejection_handler decides instead of the reject policy: leave reject as abort");
  }
  if (!o.thread_factory) {
    o.thread_factory = [](platform::Thread& t, std::function<void()> body) { t.start(std::move(body)); };
  }
  return o;
}

ThreadPoolCore::ThreadPoolCore(ThreadPoolOptions o)
    : name_prefix_(std::move(o.thread_name_prefix)),
      initializer_(std::move(o.initializer)),
      factory_(std::move(o.thread_factory)),
      reject_(o.reject),
      handler_(std::move(o.rejection_handler)),
      block_timeout_(o.block_timeout),
      before_task_(std::move(o.before_task)),
      after_task_(std::move(o.after_task)),
      on_terminated_(std::move(o.on_terminated)),
      queue_(o.queue, o.queue_capacity),
      core_(*o.core_threads),
      max_(o.max_threads),
      keep_alive_(o.keep_alive),
      core_timeout_(o.allow_core_timeout),
      ring_(o.queue == QueueKind::fifo && o.queue_capacity == 0
                ? std::make_unique<detail::TaskRing<detail::Task>>(ring_cells)
                : nullptr) {
  gate_.close();  // until every core thread has started
}

// ---------------------------------------------------------------- the object

ThreadPoolExecutor::ThreadPoolExecutor(ThreadPoolOptions options)
    : core_(new ThreadPoolCore(validated(std::move(options)))) {}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  // On the pool's own thread, waiting would wait for itself (LIFE-8).
  if (core_->abandon_from_own_thread()) return;
  core_->shutdown({.wait = true, .cancel_futures = false});
  core_->destroy();
}

void ThreadPoolExecutor::enqueue(detail::Task* task, bool has_priority) { core_->enqueue(task, has_priority, *this); }
void ThreadPoolExecutor::shutdown(ShutdownOptions options) { core_->shutdown(options); }
std::vector<PendingTask> ThreadPoolExecutor::shutdown_now() { return core_->shutdown_now(); }
bool ThreadPoolExecutor::await_by(const platform::Deadline& deadline) { return core_->await_by(deadline); }
bool ThreadPoolExecutor::is_shutdown() const { return core_->is_shutdown(); }
bool ThreadPoolExecutor::is_terminated() const { return core_->is_terminated(); }
bool ThreadPoolExecutor::is_broken() const { return core_->is_broken(); }
std::size_t ThreadPoolExecutor::prestart_core_threads() { return core_->prestart_core_threads(); }
bool ThreadPoolExecutor::prestart_core_thread() { return core_->prestart_core_thread(); }
void ThreadPoolExecutor::set_core_threads(std::size_t n) { core_->set_core_threads(n); }
void ThreadPoolExecutor::set_max_threads(std::size_t n) { core_->set_max_threads(n); }
void ThreadPoolExecutor::set_keep_alive(std::chrono::nanoseconds d) { core_->set_keep_alive(d); }
void ThreadPoolExecutor::allow_core_timeout(bool allow) { core_->allow_core_timeout(allow); }
std::size_t ThreadPoolExecutor::core_threads() const { return core_->core_threads(); }
std::size_t ThreadPoolExecutor::max_threads() const { return core_->max_threads(); }
ThreadPoolStats ThreadPoolExecutor::stats() const { return core_->stats(); }

// ---------------------------------------------------------------- submission

namespace {

bool accepted(detail::Admit a) {
  using detail::Admit;
  return a == Admit::hand_to_idle || a == Admit::start_core || a == Admit::queue || a == Admit::queue_and_start ||
         a == Admit::start_extra || a == Admit::discard_oldest;
}

}  // namespace

// The decision is decide_admission's; place() carries it out on the pool's
// state under m_, and what is left runs here, outside the lock: user code
// (callbacks of cancelled futures, a task run by the caller), joins, throws.
void ThreadPoolCore::enqueue(detail::Task* task, bool has_priority, ThreadPoolExecutor& self) {
  if (has_priority && queue_.kind() != QueueKind::priority) {
    task->release();
    throw ValueError("a priority was given, but the pool's queue is not a priority queue");
  }
  std::vector<Worker*> reap;
  detail::Task* victim = nullptr;  // discard_oldest's
  std::string broken_why;
  detail::Admit done;
  // block_timeout counts from the call, not from taking the lock.
  const platform::Deadline block_deadline = reject_ == RejectPolicy::block && block_timeout_
                                                ? platform::Deadline::after(*block_timeout_)
                                                : platform::Deadline::never();
  for (bool full = false;;) {
    if (ring_) {
      const Fast f = submit_fast(task);
      if (f == Fast::taken) return;
      full = f == Fast::full;
    }
    LockGuard g(m_);
    if (ring_mode_.load(std::memory_order_relaxed)) {
      if (!full) continue;  // a snapshot closed the gate for a moment: it is open again
      leave_ring();         // the ring is full: the locked queue takes the rest, behind it
    }
    done = place(task, block_deadline, victim);
    if (accepted(done)) {
      bump(submitted_);
      if (!exited_.empty()) reap.swap(exited_);
    } else if (done == detail::Admit::refuse_broken) {
      broken_why = broken_why_;
    }
    break;
  }
  if (victim) {
    victim->cancel();
    victim->release();
    if (end_finalizing()) finish_termination();
  }
  for (Worker* w : reap) {
    w->thread.join();
    delete w;
  }
  if (!accepted(done)) refused(task, done, broken_why, self);
}

// What is left of a submission place() did not accept, outside the lock: a
// discarded task is cancelled, caller_runs runs it here, a rejection handler
// decides for want of room (never for shutdown or a break: EXEC-10), the
// rest throw.
void ThreadPoolCore::refused(detail::Task* task, detail::Admit done, const std::string& broken_why,
                             ThreadPoolExecutor& self) {
  using detail::Admit;
  if (handler_ && (done == Admit::refuse_saturated || done == Admit::refuse_no_thread)) {
    // The handler settles the task, or the RejectedTask's destructor fails it
    // (EXEC-3): also when the handler throws, which reaches the submitter.
    RejectedTask rejected(
        task, done == Admit::refuse_saturated ? RejectedError::Reason::saturated : RejectedError::Reason::no_thread);
    handler_(rejected, self);
    return;
  }
  if (done == Admit::discard_new) {
    task->cancel();
    task->release();
    return;
  }
  if (done == Admit::run_in_caller) {
    task->run();
    task->release();
    return;
  }
  task->release();
  switch (done) {
    case Admit::refuse_broken:
      throw BrokenThreadPool("thread pool is broken: " + broken_why);
    case Admit::refuse_shutdown:
      throw rejected_shutdown();
    case Admit::refuse_timed_out:
      throw RejectedError(RejectedError::Reason::timed_out, "no room in the pool before the block timeout");
    case Admit::refuse_saturated:
      throw RejectedError(RejectedError::Reason::saturated, "thread pool is saturated (queue full, max_threads busy)");
    default:
      throw RejectedError(RejectedError::Reason::no_thread, "no worker thread could be started");
  }
}

// Asks decide_admission where `task` goes and carries the answer out, asking
// again after a thread failed to start or a wait for room. Returns the answer
// carried out: discard_new when discard_oldest found nothing to discard
// (handoff), refuse_no_thread when queue_and_start could start no thread.
detail::Admit ThreadPoolCore::place(detail::Task* task, const platform::Deadline& block_deadline,
                                    detail::Task*& victim) {
  using detail::Admit;
  detail::AdmitView v{.policy = reject_};
  bool numbered = false;  // in this look at the pool
  for (;;) {
    v.broken = broken_.load();
    v.shut_down = run_.load() != Run::running;
    v.live = live_.size();
    v.idle = idle_count_.load();
    v.core = core_.load();
    v.max = max_.load();
    v.queue_full = queue_.full();
    const Admit a = detail::decide_admission(v);
    if (a == Admit::refuse_broken) return a;
    if (a != Admit::refuse_shutdown && !numbered) {
      task->seq = seq_.fetch_add(1, std::memory_order_relaxed) + 1;
      numbered = true;
    }
    switch (a) {
      case Admit::hand_to_idle:
        // Planted bug: with another worker busy, the task queues behind it
        // while this one sleeps on (EXEC-12).
        if (KEEL_INJECTED(executor_queue_while_idle) && v.live > v.idle && queue_.offer(task)) return Admit::queue;
        claim_idle(task);
        return a;
      case Admit::start_core:
        if (try_add_worker(task)) return a;
        v.core_start_failed = true;
        continue;
      case Admit::queue:
        queue_.offer(task);
        return a;
      case Admit::queue_and_start:
        queue_.offer(task);
        if (try_add_worker(nullptr)) return a;
        queue_.remove(task);
        bump(rejected_);
        return Admit::refuse_no_thread;
      case Admit::start_extra:
        if (try_add_worker(task)) return a;
        v.extra_start_failed = true;
        continue;
      case Admit::wait_for_room:
        // Look again after the wait (room, shutdown or the timeout); once
        // the timeout has passed, the look after it is the last.
        v.block_expired = !room_.wait_deadline(block_deadline);
        v.core_start_failed = v.extra_start_failed = numbered = false;
        continue;
      case Admit::discard_oldest:
        bump(rejected_);
        victim = queue_.pop_oldest();
        if (victim) begin_finalizing();
        if (victim && queue_.offer(task)) return a;  // accepted; the victim is the rejection
        return Admit::discard_new;                   // nothing to discard (handoff): the new one goes
      default:                                       // the other refusals, run_in_caller, discard_new
        bump(rejected_);
        return a;
    }
  }
}

// ---------------------------------------------------------------- ring mode

ThreadPoolCore::Fast ThreadPoolCore::submit_fast(detail::Task* task) {
  if (!gate_.enter()) return Fast::closed;
  task->seq = seq_.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool pushed = ring_->try_push(task);  // a worker may run and release it at once
  gate_.leave();
  if (!pushed) return Fast::full;
  wake_after_push();
  return Fast::taken;
}

// The wake policy (executor_ring.pml's MONITOR). A worker that is not
// registered to sleep is running a task, spinning, or about to look at the
// ring again after registering, so nothing is done while nobody sleeps. With
// a sleeper beside an awake worker, the submitter wakes nobody: it makes sure
// the monitor watches. With every worker asleep, it wakes one itself and
// leaves the monitor be (below).
// The monitor wakes a sleeper when the ring's head did not move for a tick,
// that is when the awake workers are stuck in their tasks. So n tasks on n
// workers still all start (EXEC-12), the later ones within a tick or two,
// and a stream of short tasks costs no wake-up at all.
void ThreadPoolCore::wake_after_push() {
  const std::int32_t sleepers = sleep_.waiting();
  if (sleepers == 0) return;
  // Every worker asleep: nobody could take the task before the monitor's
  // tick, so wake one now (a submission to an idle pool starts at once). A
  // wake more than the policy needs is always safe: it only lets one more
  // worker look at the ring. The woken worker takes the head, and the next
  // push beside it makes sure of the monitor, so this push leaves the
  // monitor asleep: waking it too cost a second futex call and a thread
  // that competes with the woken worker for a CPU (submit-to-start p50 to
  // an idle pool 7.1-7.3 us with it, 6.3 without; bench/README.md). The
  // count is read without ordering; the design model lets a submitter take
  // either branch whatever the count is, and both stay sound.
  if (sleepers >= ring_workers_.load(std::memory_order_relaxed) &&
      !KEEL_INJECTED(executor_ring_idle_push_wakes_nobody)) {
    sleep_.notify(1);
    return;
  }
  // Seq_cst: the other half of the monitor's Dekker pair (monitor_main).
  if (mon_awake_.load(std::memory_order_seq_cst) != 0) return;
  if (KEEL_INJECTED(executor_ring_monitor_left_asleep)) return;
  if (mon_awake_.exchange(1, std::memory_order_seq_cst) == 0) platform::futex_wake(mon_awake_, 1);
}

// The monitor's loop, without m_. While it watches, it wakes every tick; a
// backlog whose head stood still since the last tick means the awake
// workers are all in their tasks, and it wakes a sleeper (unless a worker
// spins, which takes the head). After a stretch of ticks with no backlog or
// no sleeper (all workers busy: a pool of long tasks costs no ticks) it says
// it sleeps, looks at the ring again, and sleeps until a submitter finds a
// sleeper beside a push.
void ThreadPoolCore::monitor_main() {
  platform::set_current_thread_name(name_prefix_ + "_monitor");
  std::uint64_t last = ring_->popped();
  int quiet = 0;
  while (!mon_stop_.load(std::memory_order_acquire)) {
    platform::futex_wait(mon_tick_, 0, next_tick());
    const std::uint64_t head = ring_->popped();
    const bool backlog = ring_->pushed() != head;
    if (backlog && head == last && !spinner_.load(std::memory_order_relaxed)) sleep_.notify(1);
    last = head;
    // Only a backlog beside a sleeper needs watching: a worker that is not
    // asleep takes the backlog, or looks at the ring again before it sleeps.
    if (backlog && sleep_.waiting() != 0) {
      quiet = 0;
      continue;
    }
    if (++quiet < monitor_quiet_ticks) continue;
    quiet = 0;
    mon_awake_.store(0, std::memory_order_seq_cst);
    const bool look = !KEEL_INJECTED(executor_ring_monitor_sleeps_blind);
    // Planted bug: the monitor does not look at the stop flag before it
    // sleeps, so a stop_monitor() whose wake came first leaves it asleep.
    const bool stop = !KEEL_INJECTED(executor_ring_monitor_misses_stop) && mon_stop_.load(std::memory_order_seq_cst);
    if (stop || (look && !ring_->looks_empty() && sleep_.waiting() != 0)) {
      mon_awake_.store(1, std::memory_order_relaxed);
      continue;
    }
    platform::futex_wait(mon_awake_, 0);
    last = ring_->popped();
  }
}

// Called when the pool stops taking work: the monitor returns within a tick.
void ThreadPoolCore::stop_monitor() {
  mon_stop_.store(true, std::memory_order_seq_cst);
  mon_awake_.store(1, std::memory_order_seq_cst);
  platform::futex_wake(mon_awake_, platform::wake_all);
  platform::futex_wake(mon_tick_, platform::wake_all);
}

// Enters ring mode when the pool allows it: running, every core thread
// started (at least one), no core timeouts, nothing in the locked queue.
void ThreadPoolCore::maybe_enter_ring() {
  if (!ring_ || ring_mode_.load(std::memory_order_relaxed)) return;
  if (run_.load() != Run::running || broken_.load() || core_timeout_.load() || core_.load() == 0 ||
      live_.size() != core_.load() || !queue_.empty()) {
    return;
  }
  if (!monitor_.joinable()) {
    try {
      monitor_.start([this] { monitor_main(); });
    } catch (...) {
    }
    if (!monitor_.joinable()) return;  // no thread for it: the pool stays on its lock
  }
  ring_workers_.store(static_cast<std::int32_t>(live_.size()), std::memory_order_relaxed);
  ring_mode_.store(true, std::memory_order_seq_cst);
  release_idle_workers();  // they look again and move to ring_loop
  gate_.open();
}

void ThreadPoolCore::leave_ring() {
  // A pool that refuses work never enters ring mode again: its monitor goes
  // now, not at termination, which may be far off behind a long task.
  if (ring_ && (run_.load() != Run::running || broken_.load())) stop_monitor();
  if (!ring_mode_.load(std::memory_order_relaxed)) return;
  // Seq_cst: a sleeper registers, then reads the mode (ring_wait).
  ring_mode_.store(false, std::memory_order_seq_cst);
  gate_.close();  // the submitters inside push nothing later
  if (!KEEL_INJECTED(executor_ring_leave_skips_wake)) sleep_.notify(platform::wake_all);
}

// A worker's ring mode, without m_, until the pool leaves ring mode. A
// finished task is released (its destructor is user code, which may ask for
// a snapshot) only once the worker is in a phase a snapshot does not wait for.
void ThreadPoolCore::ring_loop(Worker* w) {
  announce(w, Worker::taking);
  detail::Task* task = ring_->try_pop();
  // A task taken at the end of the last turn is already current, in phase
  // running, which a snapshot does not wait for: storing it again would race
  // with a snapshot's read of current (shutdown_now; TSan, executor_ops fuzz).
  bool published = false;
  for (;;) {
    if (task == nullptr) {
      task = ring_wait(w);
      if (task == nullptr) return;
    }
    // Planted bug: the chained task is stored again (the race of 5ef5a43).
    if (!published || KEEL_INJECTED(executor_ring_republishes_chained)) {
      w->current.store(task);
      w->phase.store(Worker::running, std::memory_order_release);
    }
    const bool ran = run_task(task);
    // Parks here, still counted as running, while a snapshot is taken.
    announce(w, Worker::finishing);
    if (ran) w->ring_completed.store(w->ring_completed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    const bool stay = ring_mode_.load(std::memory_order_relaxed);
    detail::Task* next = stay ? ring_->try_pop() : nullptr;
    w->current.store(next);
    w->phase.store(next != nullptr ? Worker::running
                   : stay          ? Worker::waiting
                                   : Worker::outside,
                   std::memory_order_release);
    task->release();
    if (!stay) return;
    task = next;
    published = next != nullptr;
  }
}

// The ring is empty (as far as this worker saw): spin as the one spinner, or
// sleep on the event count. Returns a task it popped (announced as taking),
// or null, in phase outside, once the pool left ring mode.
detail::Task* ThreadPoolCore::ring_wait(Worker* w) {
  for (;;) {
    w->phase.store(Worker::waiting, std::memory_order_release);
    if (!spinner_.load(std::memory_order_relaxed) && !spinner_.exchange(true, std::memory_order_acquire)) {
      bool work = false;
      for (int i = 0; i < spinner_pauses && ring_mode_.load(std::memory_order_relaxed); ++i) {
        if ((work = ring_->pushed() != ring_->popped())) break;
        platform::spin_pause();
      }
      spinner_.store(false, std::memory_order_release);
      if (work) {
        announce(w, Worker::taking);
        if (detail::Task* t = ring_->try_pop()) return t;
        continue;
      }
    }
    const detail::EventCount::Key key = sleep_.prepare_wait();
    announce(w, Worker::taking);
    if (detail::Task* t = KEEL_INJECTED(executor_ring_sleep_without_look) ? nullptr : ring_->try_pop()) {
      sleep_.cancel_wait();
      return t;
    }
    w->phase.store(Worker::waiting, std::memory_order_release);
    if (!ring_mode_.load(std::memory_order_seq_cst)) {
      sleep_.cancel_wait();
      w->phase.store(Worker::outside, std::memory_order_release);
      return nullptr;
    }
    sleep_.wait(key);
  }
}

// Says what the worker is about to do (take or count a task), then looks at
// the freeze flag: a Dekker pair with freeze(). Parks while a snapshot is
// taken, in a phase the snapshot counts as it was.
void ThreadPoolCore::announce(Worker* w, std::int32_t phase) {
  for (;;) {
    w->phase.store(phase, std::memory_order_seq_cst);
    if (frozen_.load(std::memory_order_seq_cst) == 0 || KEEL_INJECTED(executor_ring_ignores_freeze)) return;
    w->phase.store(phase + Worker::parked, std::memory_order_release);
    while (frozen_.load(std::memory_order_acquire) != 0) platform::futex_wait(frozen_, 1);
  }
}

// Called with m_ held (and the gate closed in ring mode): returns once no
// ring worker is between an announcement and its next phase, so that every
// count, every phase and every running task stands still until thaw().
void ThreadPoolCore::freeze() const {
  frozen_.store(1, std::memory_order_seq_cst);
  for (const Worker* w : live_) {
    for (;;) {
      const std::int32_t p = w->phase.load(std::memory_order_seq_cst);
      if ((p != Worker::taking && p != Worker::finishing) || KEEL_INJECTED(executor_ring_snapshot_skips_wait)) break;
      platform::yield_now();
    }
  }
}

void ThreadPoolCore::thaw() const {
  frozen_.store(0, std::memory_order_release);
  platform::futex_wake(frozen_, platform::wake_all);
}

// Nothing in the locked queue or the ring. Only ring workers pop the ring
// without m_, and a pop they claimed counts as taken.
bool ThreadPoolCore::queue_empty() const { return queue_.empty() && (!ring_ || ring_->pushed() == ring_->popped()); }

// In the locked queue and the ring; with the gate closed (no push in flight).
std::size_t ThreadPoolCore::queued() const {
  return queue_.size() + (ring_ ? static_cast<std::size_t>(ring_->pushed() - ring_->popped()) : 0);
}

// The ring's tasks are older than the locked queue's: the queue takes tasks
// only while the gate is closed, and the gate closes only after the
// submitters inside it pushed.
detail::Task* ThreadPoolCore::take_locked() {
  if (ring_) {
    if (detail::Task* t = ring_->try_pop()) return t;
  }
  return queue_.empty() ? nullptr : queue_.pop();
}

std::vector<detail::Task*> ThreadPoolCore::drain_all() {
  std::vector<detail::Task*> out;
  if (ring_) {
    while (detail::Task* t = ring_->try_pop()) out.push_back(t);
  }
  for (auto* t : queue_.drain()) out.push_back(t);
  return out;
}

bool ThreadPoolCore::claim_idle(detail::Task* task) {
  Worker* w = idle_top_.load();
  if (w == nullptr) return false;
  idle_top_.store(w->next_idle.load());
  idle_count_.store(idle_count_.load() - 1);
  w->handed.store(task);
  if (KEEL_INJECTED(executor_claim_skips_wake)) {
    w->signal.store(Worker::claimed, std::memory_order_release);
  } else {
    // Relaxed: m_ (held here, and taken by the worker before it reads
    // `handed`) publishes the task; `signal` only decides whether to wake,
    // and RMWs on one word are ordered whatever their memory orders.
    if (w->signal.exchange(Worker::claimed, std::memory_order_relaxed) == Worker::asleep) {
      platform::futex_wake(w->signal, 1);
    }
  }
  return true;
}

void ThreadPoolCore::release_idle_workers() {
  while (claim_idle(nullptr)) {
  }
}

// Takes `w` off the idle stack if it is there (a worker that woke unclaimed).
void ThreadPoolCore::remove_idle(Worker* w) {
  // Planted bug: the worker stays on the stack, claimable after it left.
  if (KEEL_INJECTED(executor_idle_remove_skipped)) return;
  Worker* prev = nullptr;
  for (Worker* at = idle_top_.load(); at != nullptr; prev = at, at = at->next_idle.load()) {
    if (at != w) continue;
    if (prev == nullptr) {
      idle_top_.store(w->next_idle.load());
    } else {
      prev->next_idle.store(w->next_idle.load());
    }
    idle_count_.store(idle_count_.load() - 1);
    return;
  }
}

void ThreadPoolCore::notify_space() {
  // Every blocked submitter: one change (shutdown, a larger max_threads) can
  // answer them all, and each re-checks under m_.
  if (KEEL_INJECTED(executor_room_wakes_one)) {
    room_.notify(1);
  } else if (!KEEL_INJECTED(executor_room_not_notified)) {
    room_.notify_all();
  }
}

// The caller checked that a thread may be added (live_ below core or max).
bool ThreadPoolCore::try_add_worker(detail::Task* first) {
  auto* w = new Worker;
  w->number = bump(threads_made_);
  live_.push_back(w);
  // The thread's own reference, given up by its last touch of the core.
  // Relaxed: taken while the object's reference keeps refs_ above zero.
  refs_.fetch_add(1, std::memory_order_relaxed);
  try {
    factory_(w->thread, [this, w, first] {
      worker_main(w, first);
      drop_ref();
    });
  } catch (...) {
    // The factory may have started the thread and then thrown: it runs anyway.
  }
  if (!w->thread.joinable()) {
    live_.pop_back();
    delete w;
    refs_.fetch_sub(1, std::memory_order_relaxed);  // never below 1: the object holds one
    return false;
  }
  largest_.store(std::max(largest_.load(), live_.size()));
  maybe_enter_ring();
  return true;
}

// ---------------------------------------------------------------- workers

void ThreadPoolCore::worker_main(Worker* w, detail::Task* task) {
  platform::set_current_thread_name(name_prefix_ + "_" + std::to_string(w->number));
  if (initializer_ && !run_initializer(w, task)) return;
  bool idle_expired = false;
  m_.lock();
  w->tid.store(platform::current_thread_id());
  for (;;) {
    if (task) {
      work_on(w, task);
      task = nullptr;
      idle_expired = false;
    }
    if (ring_mode_.load(std::memory_order_relaxed)) {
      m_.unlock();
      ring_loop(w);
      m_.lock();
      continue;
    }
    const detail::WorkerStep step = detail::decide_worker_step({.stopping = run_.load() == Run::stop,
                                                                .broken = broken_.load(),
                                                                .shut_down = run_.load() != Run::running,
                                                                .live = live_.size(),
                                                                .core = core_.load(),
                                                                .max = max_.load(),
                                                                .core_timeout = core_timeout_.load(),
                                                                .queue_empty = queue_empty(),
                                                                .idle_expired = idle_expired});
    if (step == detail::WorkerStep::retire) break;
    if (step == detail::WorkerStep::take_task) {
      task = take_locked();  // null: a ring worker took the ring's last one meanwhile
      notify_space();
    } else {
      maybe_enter_ring();
      if (ring_mode_.load(std::memory_order_relaxed)) continue;
      task = wait_idle(w, step == detail::WorkerStep::wait_timed, idle_expired);
    }
  }
  const bool terminate = worker_exit(w);
  m_.unlock();
  if (terminate) finish_termination();
}

// Runs the user's initializer on a new worker. If it throws, the pool is
// broken, the worker's first task (if any) fails with it, and the worker
// leaves: returns false.
bool ThreadPoolCore::run_initializer(Worker* w, detail::Task* first) {
  {
    // Known before any user code runs here: is_own_thread() needs it.
    LockGuard g(m_);
    w->tid.store(platform::current_thread_id());
  }
  std::exception_ptr failed;
  try {
    initializer_();
  } catch (...) {
    failed = std::current_exception();
  }
  if (!failed) return true;
  std::vector<detail::Task*> to_fail;
  if (first && KEEL_INJECTED(executor_break_fails_before_publish)) {
    // The old order: its future says broken while submit still accepts.
    first->fail(std::make_exception_ptr(
        BrokenThreadPool("a worker initializer failed: " + detail::describe_exception(failed))));
    first->release();
    first = nullptr;
  }
  // The break is published (broken_, under m_) before any future says so:
  // a thread woken by one finds every later submit refused (EXEC-10).
  if (first) to_fail.push_back(first);
  bool terminate;
  {
    LockGuard g(m_);
    break_pool(failed, to_fail);
    if (!to_fail.empty()) begin_finalizing();
    terminate = worker_exit(w);
  }
  if (!to_fail.empty()) {
    const auto error =
        std::make_exception_ptr(BrokenThreadPool("a worker initializer failed: " + detail::describe_exception(failed)));
    for (auto* t : to_fail) {
      t->fail(error);
      t->release();
    }
    terminate = end_finalizing() || terminate;
  }
  if (terminate) finish_termination();
  return false;
}

// Called with m_ held; runs `task` without it and gives up the pool's reference.
void ThreadPoolCore::work_on(Worker* w, detail::Task* task) {
  w->current.store(task);
  bump(active_);
  m_.unlock();
  const bool ran = run_task(task);
  m_.lock();
  active_.store(active_.load() - 1);
  if (ran) bump(completed_);
  w->current.store(nullptr);
  task->release();
}

// Called with m_ held: waits on the idle stack until claimed or, if `timed`,
// until the keep-alive passes. Returns the task a claimer handed over (null:
// none, or a claim that only asks for a re-check); `expired` says the
// keep-alive passed with no claim.
detail::Task* ThreadPoolCore::wait_idle(Worker* w, bool timed, bool& expired) {
  w->handed.store(nullptr);
  w->signal.store(Worker::idle, std::memory_order_relaxed);
  w->next_idle.store(idle_top_.load());
  idle_top_.store(w);
  bump(idle_count_);
  notify_space();  // a handoff or blocked submitter can use an idle worker
  const platform::Deadline deadline = idle_deadline(timed, keep_alive_);
  m_.unlock();
  platform::WaitResult r = platform::WaitResult::woken;
  // Relaxed throughout: what a claim hands over is read under m_, retaken
  // below, which orders it after the claimer's critical section; the word
  // itself only says whether to sleep.
  if (!platform::spin_then_yield_until([&] { return w->signal.load(std::memory_order_relaxed) == Worker::claimed; })) {
    std::int32_t expected = Worker::idle;
    if (w->signal.compare_exchange_strong(expected, Worker::asleep, std::memory_order_relaxed,
                                          std::memory_order_relaxed)) {
      r = platform::futex_wait(w->signal, Worker::asleep, deadline);
    }
  }
  m_.lock();
  expired = r == platform::WaitResult::timed_out || (timed && deadline.expired());
  // A claim that raced the timeout wins: the claimer already took us off
  // the idle stack and handed us a task (or asked us to re-check).
  const bool seen_claim = !(KEEL_INJECTED(executor_timeout_ignores_claim) && expired);
  if (seen_claim && w->signal.load(std::memory_order_relaxed) == Worker::claimed) {
    expired = false;
    return w->handed.load();
  }
  remove_idle(w);
  return nullptr;
}

// Returns whether the task ran (false: it was cancelled while queued).
bool ThreadPoolCore::run_task(detail::Task* task) {
  detail::FutureCore& f = task->future();
  if (f.start(true) != detail::FutureCore::Start::started) return false;
  const TaskInfo info{task->seq, task->priority};
  if (before_task_) {
    try {
      before_task_(info);
    } catch (...) {
      // The task does not run; its future carries the hook's exception.
      f.finish(std::current_exception());
      return false;
    }
  }
  task->execute();
  if (after_task_) {
    try {
      after_task_(info, f.phase() == detail::FutureCore::finished ? f.observed_error() : nullptr);
    } catch (...) {
      report_error("after_task hook", std::current_exception());
    }
  }
  return true;
}

// Called with m_ held by a worker that leaves. Returns whether it was the
// last one of a shut-down pool (the caller then finishes termination).
bool ThreadPoolCore::worker_exit(Worker* w) {
  live_.erase(std::find(live_.begin(), live_.end(), w));
  // Its ring counts, which a snapshot reads only for live workers.
  completed_.store(completed_.load() + w->ring_completed.load(std::memory_order_relaxed));
  exited_.push_back(w);
  notify_space();  // a thread slot is free
  return claim_termination();
}

// Called with m_ held. Termination is due once the pool refuses work, no
// worker is alive, nothing is queued, and no thread still holds tasks it took
// from the queue to cancel or fail outside the lock: "terminated" promises
// that every accepted future is final (EXEC-4). Returns true exactly once.
bool ThreadPoolCore::claim_termination() {
  const bool closed = run_.load() != Run::running || broken_.load();
  if (terminating_.load() || !closed || !live_.empty() || !queue_empty() || finalizing_.load() != 0) return false;
  terminating_.store(true);
  return true;
}

// Called with m_ held, before tasks taken from the queue are finalized
// outside the lock, and then (with m_ held again) after.
void ThreadPoolCore::begin_finalizing() {
  if (!KEEL_INJECTED(executor_terminate_before_cancel)) bump(finalizing_);
}
bool ThreadPoolCore::end_finalizing() {
  LockGuard g(m_);
  if (!KEEL_INJECTED(executor_terminate_before_cancel)) finalizing_.store(finalizing_.load() - 1);
  return claim_termination();
}

void ThreadPoolCore::break_pool(const std::exception_ptr& why, std::vector<detail::Task*>& failed) {
  if (!broken_.load()) {
    broken_.store(true);
    broken_why_ = detail::describe_exception(why);
  }
  leave_ring();
  for (auto* t : drain_all()) failed.push_back(t);
  release_idle_workers();
  notify_space();
}

void ThreadPoolCore::finish_termination() {
  if (on_terminated_) {
    try {
      on_terminated_();
    } catch (...) {
      report_error("on_terminated hook", std::current_exception());
    }
  }
  terminated_.set();
}

// ---------------------------------------------------------------- shutdown

// A worker thread of this pool that has not been joined: alive (live_), or
// exited but still running its last steps, which may call user code (the
// on_terminated hook, callbacks of tasks failed by a broken initializer).
bool ThreadPoolCore::is_own_thread() const {
  const std::uint64_t me = platform::current_thread_id();
  const auto mine = [me](const Worker* w) { return w->tid.load() == me; };
  return std::any_of(live_.begin(), live_.end(), mine) || std::any_of(exited_.begin(), exited_.end(), mine);
}

void ThreadPoolCore::check_not_worker(const char* what) {
  if (is_own_thread()) {
    throw MisuseError(std::string(what) + " called from one of the pool's own workers would wait for itself");
  }
}

// ---------------------------------------------------------------- lifetime

bool ThreadPoolCore::abandon_from_own_thread() noexcept {
  {
    LockGuard g(m_);
    if (!is_own_thread()) return false;
  }
  // As Python's shutdown(wait=False): queued tasks still run, new ones are
  // refused. The calling thread holds its own reference, so the core
  // outlives this call and the rest of the caller's task.
  shutdown({.wait = false, .cancel_futures = false});
  drop_ref();
  return true;
}

void ThreadPoolCore::destroy() noexcept {
  // shutdown(wait) joined every worker, each after its drop_ref(): only the
  // object's reference is left. The monitor was stopped at termination.
  if (monitor_.joinable()) monitor_.join();
  delete this;
}

void ThreadPoolCore::drop_ref() noexcept {
  // Release: this thread's writes to the core happen before its free;
  // acquire (by the last): every other thread's do too. (The joins in
  // free_orphaned() order them as well; this does not rely on them.)
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1 && !KEEL_INJECTED(executor_orphan_never_freed)) {
    free_orphaned();
  }
}

// The last reference went: the object was destroyed on a pool thread and
// every worker made its last touch of the core. The caller is itself a
// worker (the last reference is always a worker's, or the object's given up
// by a worker that already gave up its own): the others only return now, so
// joining them is bounded; the caller detaches itself. Nothing touches the
// core after the delete: the caller's thread returns straight away.
void ThreadPoolCore::free_orphaned() noexcept {
  std::vector<Worker*> reap;
  {
    LockGuard g(m_);
    reap.swap(exited_);
  }
  const std::uint64_t me = platform::current_thread_id();
  for (Worker* w : reap) {
    if (w->tid.load() == me) {
      w->thread.detach();
    } else {
      w->thread.join();
    }
    delete w;
  }
  if (monitor_.joinable()) monitor_.join();  // stopped at termination, before the last worker left
  delete this;
}

void ThreadPoolCore::shutdown(ShutdownOptions options) {
  std::vector<detail::Task*> drained;
  bool terminate = false;
  if (options.cancel_futures && KEEL_INJECTED(executor_cancel_before_close)) {
    // The old order: the queued futures say cancelled while submit still accepts.
    {
      LockGuard g(m_);
      drained = drain_all();
    }
    for (auto* t : drained) {
      t->cancel();
      t->release();
    }
    drained.clear();
  }
  // Closed (run_, under m_) before a drained future is cancelled, outside
  // it: a thread woken by one finds every later submit refused (EXEC-10).
  {
    LockGuard g(m_);
    if (options.wait) check_not_worker("shutdown(wait)");
    if (run_.load() == Run::running) run_.store(Run::shutdown);
    leave_ring();
    if (options.cancel_futures && !KEEL_INJECTED(executor_cancel_futures_skips_drain)) drained = drain_all();
    if (!drained.empty()) begin_finalizing();
    release_idle_workers();
    notify_space();
    terminate = claim_termination();
  }
  if (!drained.empty()) {
    for (auto* t : drained) {
      t->cancel();
      t->release();
    }
    terminate = end_finalizing() || terminate;
  }
  if (terminate) finish_termination();
  if (options.wait) {
    terminated_.wait();
    join_exited();
  }
}

std::vector<PendingTask> ThreadPoolCore::shutdown_now() {
  std::vector<detail::Task*> drained;
  std::vector<detail::Task*> running;
  bool terminate = false;
  {
    LockGuard g(m_);
    run_.store(Run::stop);
    leave_ring();
    drained = drain_all();
    // Ring workers run without m_: the freeze holds their tasks still.
    if (ring_) freeze();
    for (Worker* w : live_) {
      if (w->current.load()) {
        w->current.load()->add_ref();
        running.push_back(w->current.load());
      }
    }
    if (ring_) thaw();
    release_idle_workers();
    notify_space();
    terminate = claim_termination();
  }
  // Stop callbacks are user code: outside the lock.
  for (auto* t : running) {
    t->future().request_stop();
    t->release();
  }
  if (terminate) finish_termination();
  std::vector<PendingTask> out;
  out.reserve(drained.size());
  for (auto* t : drained) out.emplace_back(t);
  return out;
}

bool ThreadPoolCore::await_by(const platform::Deadline& deadline) {
  {
    LockGuard g(m_);
    if (deadline.is_never()) check_not_worker("await_termination()");
  }
  if (deadline.is_never()) {
    terminated_.wait();
    return true;
  }
  return terminated_.wait_until(deadline.point());
}

void ThreadPoolCore::join_exited() {
  LockGuard j(join_lock_);
  std::vector<Worker*> reap;
  {
    LockGuard g(m_);
    reap.swap(exited_);
  }
  for (Worker* w : reap) {
    w->thread.join();
    delete w;
  }
  if (terminated_.is_set() && monitor_.joinable()) monitor_.join();
}

// ---------------------------------------------------------------- control

bool ThreadPoolCore::is_shutdown() const {
  LockGuard g(m_);
  return run_.load() != Run::running || broken_.load();
}

bool ThreadPoolCore::is_broken() const {
  LockGuard g(m_);
  return broken_.load();
}

bool ThreadPoolCore::prestart_core_thread() {
  LockGuard g(m_);
  return run_.load() == Run::running && !broken_.load() && live_.size() < core_.load() && try_add_worker(nullptr);
}

std::size_t ThreadPoolCore::prestart_core_threads() {
  std::size_t n = 0;
  while (prestart_core_thread()) ++n;
  return n;
}

void ThreadPoolCore::set_core_threads(std::size_t n) {
  LockGuard g(m_);
  if (n > max_.load()) {
    throw ValueError("core_threads (" + std::to_string(n) + ") exceeds max_threads (" + std::to_string(max_.load()) +
                     ")");
  }
  const std::size_t old = core_.load();
  if (n == old) return;  // as Java's setCorePoolSize: no change, nothing started or released
  leave_ring();          // threads start or retire; a worker enters it again when it may
  core_.store(n);
  if (n < old) {
    release_idle_workers();  // they re-check and now wait with the keep-alive
  } else if (run_.load() == Run::running && !broken_.load()) {
    // Java's rule: start threads for queued work, up to the new core size.
    std::size_t k = std::min(n - std::min(n, live_.size()), queued());
    while (k-- > 0 && try_add_worker(nullptr)) {
    }
  }
}

void ThreadPoolCore::set_max_threads(std::size_t n) {
  LockGuard g(m_);
  if (n == 0) throw ValueError("max_threads must be at least 1");
  if (n < core_.load()) {
    throw ValueError("max_threads (" + std::to_string(n) + ") is below core_threads (" + std::to_string(core_.load()) +
                     ")");
  }
  max_.store(n);
  if (live_.size() > n) {
    leave_ring();
    release_idle_workers();  // they retire; busy ones after their task
  }
  notify_space();
}

void ThreadPoolCore::set_keep_alive(std::chrono::nanoseconds d) {
  if (d < std::chrono::nanoseconds::zero()) throw ValueError("keep_alive must not be negative");
  LockGuard g(m_);
  keep_alive_ = d;
  release_idle_workers();  // re-arm their waits with the new keep-alive
}

void ThreadPoolCore::allow_core_timeout(bool allow) {
  LockGuard g(m_);
  core_timeout_.store(allow);
  if (allow) {
    leave_ring();  // ring workers never time out
    release_idle_workers();
  }
}

std::size_t ThreadPoolCore::core_threads() const {
  LockGuard g(m_);
  return core_.load();
}

std::size_t ThreadPoolCore::max_threads() const {
  LockGuard g(m_);
  return max_.load();
}

ThreadPoolStats ThreadPoolCore::stats() const {
  if (KEEL_INJECTED(executor_stats_unlocked)) return read_stats();  // seeded bug: counters read without m_
  LockGuard g(m_);
  if (!ring_) return read_stats();
  // Ring workers and submitters count without m_: stop both (EXEC-8).
  const bool open = ring_mode_.load(std::memory_order_relaxed);
  if (open) gate_.close();
  freeze();
  const ThreadPoolStats s = read_stats();
  thaw();
  if (open) gate_.open();
  return s;
}

ThreadPoolStats ThreadPoolCore::read_stats() const {
  ThreadPoolStats s;
  s.threads = live_.size();
  s.idle = idle_count_.load();
  s.active = active_.load();
  s.largest = largest_.load();
  s.queued = queued();
  s.submitted = submitted_.load();
  s.completed = completed_.load();
  s.rejected = rejected_.load();
  if (ring_) {
    s.submitted += ring_->pushed();  // only the fast path pushes: one per accepted task
    for (const Worker* w : live_) {
      const std::int32_t p = w->phase.load(std::memory_order_acquire) & ~Worker::parked;
      if (p == Worker::running || p == Worker::finishing) ++s.active;
      if (p == Worker::waiting || p == Worker::taking) ++s.idle;
      s.completed += w->ring_completed.load(std::memory_order_relaxed);
    }
  }
  return s;
}

// ---------------------------------------------------------------- RejectedTask

RejectedTask::~RejectedTask() {
  if (!t_) return;
  const char* why = reason_ == RejectedError::Reason::saturated
                        ? "thread pool is saturated and its rejection handler left the task unsettled"
                        : "no worker thread could be started and the rejection handler left the task unsettled";
  t_->fail(std::make_exception_ptr(RejectedError(reason_, why)));
  t_->release();
}

bool RejectedTask::run() {
  if (!t_) return false;
  detail::Task* t = std::exchange(t_, nullptr);
  const bool ran = t->run();
  t->release();
  return ran;
}

bool RejectedTask::cancel() {
  if (!t_) return false;
  detail::Task* t = std::exchange(t_, nullptr);
  const bool cancelled = t->cancel();
  t->release();
  return cancelled;
}

PendingTask RejectedTask::take() { return PendingTask(std::exchange(t_, nullptr)); }

// ---------------------------------------------------------------- PendingTask

bool PendingTask::run() {
  if (!t_) throw InvalidStateError("PendingTask has no task (already run or moved from)");
  detail::Task* t = std::exchange(t_, nullptr);
  const bool ran = t->run();
  t->release();
  return ran;
}

void PendingTask::reset() noexcept {
  if (!t_) return;
  t_->cancel();
  t_->release();
  t_ = nullptr;
}

}  // namespace keel
