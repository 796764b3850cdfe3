// ThreadPoolExecutor: one lock (m_) guards the queue, the worker lists and the
// counters; a worker sleeps on its own futex word, so a submitter wakes
// exactly the worker it hands a task to, and only if that worker is asleep.
//
// Idle protocol (the worker's `signal` word): idle (0, spinning, on idle_),
// asleep (1, in futex_wait), claimed (2). A claimer, holding m_, pops the
// worker from idle_, stores the task in `handed`, exchanges the word to
// claimed and wakes it if the old value was asleep. The wake is issued under
// m_: a claimed worker needs m_ before it can exit, so the word it sleeps on
// outlives the wake. A worker that wakes unclaimed (timeout, spurious) takes
// m_, sees the word is not claimed, and removes itself from idle_. Because a
// worker goes idle only after finding the queue empty under m_, and a
// submission prefers an idle worker, an idle worker and a queued task never
// coexist.
#include "keel/executor/thread_pool.hpp"

namespace keel {

struct ThreadPoolExecutor::Worker {
  static constexpr std::int32_t idle = 0;
  static constexpr std::int32_t asleep = 1;
  static constexpr std::int32_t claimed = 2;

  platform::FutexWord signal{idle};
  platform::Var<detail::FutureCore*> handed;  // written by the claimer before the claim
  detail::FutureCore* current = nullptr;      // guarded by m_: the running task
  std::uint64_t tid = 0;                      // guarded by m_
  std::uint64_t number = 0;
  platform::Thread thread;
};

namespace {

platform::Deadline idle_deadline(bool timed, std::chrono::nanoseconds keep_alive) {
  return timed ? platform::Deadline::after(keep_alive) : platform::Deadline::never();
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
  if (!o.thread_factory) {
    o.thread_factory = [](platform::Thread& t, std::function<void()> body) { t.start(std::move(body)); };
  }
  return o;
}

ThreadPoolExecutor::ThreadPoolExecutor(ThreadPoolOptions options)
    : ThreadPoolExecutor(validated(std::move(options)), 0) {}

ThreadPoolExecutor::ThreadPoolExecutor(ThreadPoolOptions o, int)
    : name_prefix_(std::move(o.thread_name_prefix)),
      initializer_(std::move(o.initializer)),
      factory_(std::move(o.thread_factory)),
      reject_(o.reject),
      block_timeout_(o.block_timeout),
      before_task_(std::move(o.before_task)),
      after_task_(std::move(o.after_task)),
      on_terminated_(std::move(o.on_terminated)),
      queue_(o.queue, o.queue_capacity),
      core_(*o.core_threads),
      max_(o.max_threads),
      keep_alive_(o.keep_alive),
      core_timeout_(o.allow_core_timeout) {}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown({.wait = true, .cancel_futures = false}); }

// ---------------------------------------------------------------- submission

void ThreadPoolExecutor::enqueue(detail::FutureCore* task, bool has_priority) {
  if (has_priority && queue_.kind() != QueueKind::priority) {
    task->release();
    throw ValueError("a priority was given, but the pool's queue is not a priority queue");
  }
  std::vector<Worker*> reap;
  detail::FutureCore* victim = nullptr;  // discard_oldest's, cancelled after unlock
  enum class Then { done, cancel_task, run_here } then = Then::done;
  bool block_timed_out = false;
  const platform::Deadline block_deadline = reject_ == RejectPolicy::block && block_timeout_
                                                ? platform::Deadline::after(*block_timeout_)
                                                : platform::Deadline::never();
  {
    LockGuard g(m_);
    for (;;) {
      if (broken_) {
        task->release();
        throw BrokenThreadPool("thread pool is broken: " + broken_why_);
      }
      if (run_ != Run::running && !KEEL_INJECTED(executor_submit_ignores_shutdown)) {
        ++rejected_;
        task->release();
        throw rejected_shutdown();
      }
      task->seq = ++seq_;
      if (claim_idle(task)) break;
      if (live_.size() < core_ && try_add_worker(task)) break;
      if (queue_.offer(task)) {
        if (live_.empty() && !KEEL_INJECTED(executor_queue_without_worker) && !try_add_worker(nullptr)) {
          queue_.remove(task);
          ++rejected_;
          task->release();
          throw RejectedError(RejectedError::Reason::no_thread, "no worker thread could be started");
        }
        break;
      }
      const bool below_max = KEEL_INJECTED(executor_max_off_by_one) ? live_.size() <= max_ : live_.size() < max_;
      if (below_max && try_add_worker(task)) break;
      // Saturated: the queue is full and no thread may (or could) be added.
      if (live_.empty()) {
        ++rejected_;
        task->release();
        throw RejectedError(RejectedError::Reason::no_thread, "no worker thread could be started");
      }
      if (reject_ == RejectPolicy::block) {
        // Wait for room (or shutdown) and look again; once the timeout has
        // passed, the look after it is the last.
        if (!block_timed_out) {
          block_timed_out = !room_.wait_deadline(block_deadline);
          continue;
        }
        ++rejected_;
        task->release();
        throw RejectedError(RejectedError::Reason::timed_out, "no room in the pool before the block timeout");
      }
      ++rejected_;
      if (reject_ == RejectPolicy::abort) {
        task->release();
        throw RejectedError(RejectedError::Reason::saturated,
                            "thread pool is saturated (queue full, max_threads busy)");
      }
      if (reject_ == RejectPolicy::discard_oldest) {
        victim = queue_.pop_oldest();
        if (victim) begin_finalizing();
        if (victim && queue_.offer(task)) break;  // accepted; the victim is the rejection
        then = Then::cancel_task;                 // nothing to discard (handoff): the new one goes
        break;
      }
      then = reject_ == RejectPolicy::caller_runs ? Then::run_here : Then::cancel_task;
      break;
    }
    if (then == Then::done) {
      ++submitted_;
      if (!exited_.empty()) reap.swap(exited_);
    }
  }
  // Outside the lock: user code (callbacks, the task itself) and joins.
  if (victim) {
    victim->cancel();
    victim->release();
    if (end_finalizing()) finish_termination();
  }
  if (then == Then::cancel_task) {
    task->cancel();
    task->release();
  } else if (then == Then::run_here) {
    task->run();
    task->release();
  }
  for (Worker* w : reap) {
    w->thread.join();
    delete w;
  }
}

bool ThreadPoolExecutor::claim_idle(detail::FutureCore* task) {
  if (idle_.empty()) return false;
  Worker* w = idle_.back();
  idle_.pop_back();
  w->handed.store(task);
  if constexpr (KEEL_INJECTED(executor_claim_skips_wake)) {
    w->signal.store(Worker::claimed, std::memory_order_release);
  } else {
    // Release publishes `handed`; the worker reads it after seeing claimed.
    if (w->signal.exchange(Worker::claimed, std::memory_order_acq_rel) == Worker::asleep) {
      platform::futex_wake(w->signal, 1);
    }
  }
  return true;
}

void ThreadPoolExecutor::release_idle_workers() {
  while (!idle_.empty()) claim_idle(nullptr);
}

void ThreadPoolExecutor::notify_space() {
  if constexpr (!KEEL_INJECTED(executor_room_not_notified)) room_.notify_all();
}

// The caller checked that a thread may be added (live_ below core or max).
bool ThreadPoolExecutor::try_add_worker(detail::FutureCore* first) {
  auto* w = new Worker;
  w->number = ++threads_made_;
  live_.push_back(w);
  try {
    factory_(w->thread, [this, w, first] { worker_main(w, first); });
  } catch (...) {
    if (!w->thread.joinable()) {
      live_.pop_back();
      delete w;
      return false;
    }
    // The factory started the thread and then threw: the worker runs anyway.
  }
  if (!w->thread.joinable()) {
    live_.pop_back();
    delete w;
    return false;
  }
  largest_ = std::max(largest_, live_.size());
  return true;
}

// ---------------------------------------------------------------- workers

void ThreadPoolExecutor::worker_main(Worker* w, detail::FutureCore* task) {
  platform::set_current_thread_name(name_prefix_ + "_" + std::to_string(w->number));
  if (initializer_) {
    std::exception_ptr failed;
    try {
      initializer_();
    } catch (...) {
      failed = std::current_exception();
    }
    if (failed) {
      std::vector<detail::FutureCore*> to_fail;
      if (task) to_fail.push_back(task);
      bool terminate;
      {
        LockGuard g(m_);
        break_pool(failed, to_fail);
        if (!to_fail.empty()) begin_finalizing();
        terminate = worker_exit(w);
      }
      if (!to_fail.empty()) {
        const auto error = std::make_exception_ptr(
            BrokenThreadPool("a worker initializer failed: " + detail::describe_exception(failed)));
        for (auto* t : to_fail) {
          t->fail(error);
          t->release();
        }
        terminate = end_finalizing() || terminate;
      }
      if (terminate) finish_termination();
      return;
    }
  }
  bool timed_out = false;
  m_.lock();
  w->tid = platform::current_thread_id();
  for (;;) {
    if (task) {
      w->current = task;
      ++active_;
      m_.unlock();
      const bool ran = run_task(task);
      m_.lock();
      --active_;
      if (ran) ++completed_;
      w->current = nullptr;
      task->release();
      task = nullptr;
      timed_out = false;
    }
    if (run_ == Run::stop || broken_) break;
    if (live_.size() > max_) break;  // resized down: the others stay
    if ((task = queue_.pop()) != nullptr) {
      notify_space();
      continue;
    }
    if (run_ == Run::shutdown) break;
    const bool timed = core_timeout_ || live_.size() > core_;
    if (timed && timed_out) break;  // keep-alive expired with the queue empty (checked above, under m_)
    // Idle: on idle_ until claimed, or until the keep-alive passes.
    w->handed.store(nullptr);
    w->signal.store(Worker::idle, std::memory_order_relaxed);
    idle_.push_back(w);
    notify_space();  // a handoff or blocked submitter can use an idle worker
    const platform::Deadline deadline = idle_deadline(timed, keep_alive_);
    m_.unlock();
    platform::WaitResult r = platform::WaitResult::woken;
    if (!platform::spin_then_yield_until(
            [&] { return w->signal.load(std::memory_order_acquire) == Worker::claimed; })) {
      std::int32_t expected = Worker::idle;
      if (w->signal.compare_exchange_strong(expected, Worker::asleep, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
        r = platform::futex_wait(w->signal, Worker::asleep, deadline);
      }
    }
    m_.lock();
    timed_out = r == platform::WaitResult::timed_out || (timed && deadline.expired());
    // A claim that raced the timeout wins: the claimer already took us off
    // idle_ and handed us a task (or asked us to re-check).
    const bool seen_claim = !(KEEL_INJECTED(executor_timeout_ignores_claim) && timed_out);
    if (seen_claim && w->signal.load(std::memory_order_acquire) == Worker::claimed) {
      task = w->handed.load();
      timed_out = false;
      continue;
    }
    if (auto it = std::find(idle_.begin(), idle_.end(), w); it != idle_.end()) idle_.erase(it);
  }
  const bool terminate = worker_exit(w);
  m_.unlock();
  if (terminate) finish_termination();
}

// Returns whether the task ran (false: it was cancelled while queued).
bool ThreadPoolExecutor::run_task(detail::FutureCore* task) {
  if (task->start(true) != detail::FutureCore::Start::started) return false;
  const TaskInfo info{task->seq, task->priority};
  if (before_task_) {
    try {
      before_task_(info);
    } catch (...) {
      // The task does not run; its future carries the hook's exception.
      task->finish(std::current_exception());
      return false;
    }
  }
  task->execute();
  if (after_task_) {
    try {
      after_task_(info, task->phase() == detail::FutureCore::finished ? task->error() : nullptr);
    } catch (...) {
      report_error("after_task hook", std::current_exception());
    }
  }
  return true;
}

// Called with m_ held by a worker that leaves. Returns whether it was the
// last one of a shut-down pool (the caller then finishes termination).
bool ThreadPoolExecutor::worker_exit(Worker* w) {
  live_.erase(std::find(live_.begin(), live_.end(), w));
  exited_.push_back(w);
  notify_space();  // a thread slot is free
  return claim_termination();
}

// Called with m_ held. Termination is due once the pool refuses work, no
// worker is alive, nothing is queued, and no thread still holds tasks it took
// from the queue to cancel or fail outside the lock: "terminated" promises
// that every accepted future is final (EXEC-4). Returns true exactly once.
bool ThreadPoolExecutor::claim_termination() {
  const bool closed = run_ != Run::running || broken_;
  if (terminating_ || !closed || !live_.empty() || !queue_.empty() || finalizing_ != 0) return false;
  terminating_ = true;
  return true;
}

// Called with m_ held, before tasks taken from the queue are finalized
// outside the lock, and then (with m_ held again) after.
void ThreadPoolExecutor::begin_finalizing() {
  if constexpr (!KEEL_INJECTED(executor_terminate_before_cancel)) ++finalizing_;
}
bool ThreadPoolExecutor::end_finalizing() {
  LockGuard g(m_);
  if constexpr (!KEEL_INJECTED(executor_terminate_before_cancel)) --finalizing_;
  return claim_termination();
}

void ThreadPoolExecutor::break_pool(const std::exception_ptr& why, std::vector<detail::FutureCore*>& failed) {
  if (!broken_) {
    broken_ = true;
    broken_why_ = detail::describe_exception(why);
  }
  for (auto* t : queue_.drain()) failed.push_back(t);
  release_idle_workers();
  notify_space();
}

void ThreadPoolExecutor::finish_termination() {
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

void ThreadPoolExecutor::check_not_worker(const char* what) {
  const std::uint64_t me = platform::current_thread_id();
  for (const Worker* w : live_) {
    if (w->tid == me) {
      throw MisuseError(std::string(what) + " called from one of the pool's own workers would wait for itself");
    }
  }
}

void ThreadPoolExecutor::shutdown(ShutdownOptions options) {
  std::vector<detail::FutureCore*> drained;
  bool terminate = false;
  {
    LockGuard g(m_);
    if (options.wait) check_not_worker("shutdown(wait)");
    if (run_ == Run::running) run_ = Run::shutdown;
    if (options.cancel_futures && !KEEL_INJECTED(executor_cancel_futures_skips_drain)) drained = queue_.drain();
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

std::vector<PendingTask> ThreadPoolExecutor::shutdown_now() {
  std::vector<detail::FutureCore*> drained;
  std::vector<detail::FutureCore*> running;
  bool terminate = false;
  {
    LockGuard g(m_);
    run_ = Run::stop;
    drained = queue_.drain();
    for (Worker* w : live_) {
      if (w->current) {
        w->current->add_ref();
        running.push_back(w->current);
      }
    }
    release_idle_workers();
    notify_space();
    terminate = claim_termination();
  }
  // Stop callbacks are user code: outside the lock.
  for (auto* t : running) {
    t->request_stop();
    t->release();
  }
  if (terminate) finish_termination();
  std::vector<PendingTask> out;
  out.reserve(drained.size());
  for (auto* t : drained) out.emplace_back(t);
  return out;
}

bool ThreadPoolExecutor::await_by(const platform::Deadline& deadline) {
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

void ThreadPoolExecutor::join_exited() {
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
}

// ---------------------------------------------------------------- control

bool ThreadPoolExecutor::is_shutdown() const {
  LockGuard g(m_);
  return run_ != Run::running || broken_;
}

bool ThreadPoolExecutor::is_broken() const {
  LockGuard g(m_);
  return broken_;
}

bool ThreadPoolExecutor::prestart_core_thread() {
  LockGuard g(m_);
  return run_ == Run::running && !broken_ && live_.size() < core_ && try_add_worker(nullptr);
}

std::size_t ThreadPoolExecutor::prestart_core_threads() {
  std::size_t n = 0;
  while (prestart_core_thread()) ++n;
  return n;
}

void ThreadPoolExecutor::set_core_threads(std::size_t n) {
  LockGuard g(m_);
  if (n > max_) {
    throw ValueError("core_threads (" + std::to_string(n) + ") exceeds max_threads (" + std::to_string(max_) + ")");
  }
  const std::size_t old = core_;
  core_ = n;
  if (n < old) {
    release_idle_workers();  // they re-check and now wait with the keep-alive
  } else if (run_ == Run::running && !broken_) {
    // Java's rule: start threads for queued work, up to the new core size.
    std::size_t k = std::min(n - std::min(n, live_.size()), queue_.size());
    while (k-- > 0 && try_add_worker(nullptr)) {
    }
  }
}

void ThreadPoolExecutor::set_max_threads(std::size_t n) {
  LockGuard g(m_);
  if (n == 0) throw ValueError("max_threads must be at least 1");
  if (n < core_) {
    throw ValueError("max_threads (" + std::to_string(n) + ") is below core_threads (" + std::to_string(core_) + ")");
  }
  max_ = n;
  if (live_.size() > n) release_idle_workers();  // they retire; busy ones after their task
  notify_space();
}

void ThreadPoolExecutor::set_keep_alive(std::chrono::nanoseconds d) {
  if (d < std::chrono::nanoseconds::zero()) throw ValueError("keep_alive must not be negative");
  LockGuard g(m_);
  keep_alive_ = d;
  release_idle_workers();  // re-arm their waits with the new keep-alive
}

void ThreadPoolExecutor::allow_core_timeout(bool allow) {
  LockGuard g(m_);
  core_timeout_ = allow;
  if (allow) release_idle_workers();
}

std::size_t ThreadPoolExecutor::core_threads() const {
  LockGuard g(m_);
  return core_;
}

std::size_t ThreadPoolExecutor::max_threads() const {
  LockGuard g(m_);
  return max_;
}

ThreadPoolStats ThreadPoolExecutor::stats() const {
  LockGuard g(m_);
  ThreadPoolStats s;
  s.threads = live_.size();
  s.idle = idle_.size();
  s.active = active_;
  s.largest = largest_;
  s.queued = queue_.size();
  s.submitted = submitted_;
  s.completed = completed_;
  s.rejected = rejected_;
  return s;
}

// ---------------------------------------------------------------- PendingTask

bool PendingTask::run() {
  if (!t_) throw InvalidStateError("PendingTask has no task (already run or moved from)");
  detail::FutureCore* t = std::exchange(t_, nullptr);
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
