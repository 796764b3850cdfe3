// RapidCheck stateful tests of ThreadPoolExecutor against a sequential model.
//
// Determinism: every task the test submits blocks on its own gate (a
// keel::Event owned by the test) until a Finish command opens it, so between
// commands the pool rests in a state the model predicts exactly: which tasks
// run (one per busy worker), which wait in the queue and in what order, how
// many workers are alive and idle. Workers never retire on their own (the
// default 60 s keep-alive, no core timeout); only set_max_threads below the
// live count retires them (idle ones at once, busy ones after their task).
//
// The model follows the header's contract: a submission goes to an idle
// worker if one exists; else a new thread while fewer than core_threads are
// alive; else the queue unless it is full (and a thread is started if none is
// alive); else a new thread below max_threads; else the reject policy (abort,
// caller_runs, discard, discard_oldest, or block with a zero timeout, which
// rejects as abort does). A freed worker takes the next queued task in the
// queue's order (fifo, lifo, priority: lowest value then oldest), dropping
// tasks cancelled while queued; a cancelled task still holds its queue slot
// until then (stats().queued counts it).
//
// After each command the test polls (bounded, never a fixed sleep) until the
// pool matches the model: every future's state and run count, which tasks sit
// inside their gates, stats(), is_shutdown(), is_terminated(). A mismatch that
// persists while the pool is quiescent (every live worker idle or inside a
// closed gate, so nothing can change until the test acts) fails after 200 ms;
// anything else fails after keel_test::hang_limit (2 s once a case has
// failed, so that RapidCheck can shrink a hang in reasonable time). Checked on
// every poll: no task runs twice, a cancelled or refused task never runs, and
// live threads never exceed max_threads (or the live count when max_threads
// was lowered below it). shutdown(wait) is also a command where nothing runs (it must
// return with every worker gone). The run ends with shutdown(wait) after
// opening every gate: every future is then final, exactly the tasks the
// model says ran, ran, and stats().completed counts just the ones workers ran.
//
// Invariants: EXEC-1, EXEC-2, EXEC-3, EXEC-6, EXEC-8 (proofs/INVARIANTS.md).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/sync/event.hpp"

using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------- the model

enum class TaskState { pending, running, finished, cancelled };
enum class PoolState { running, shutdown, stop };

const char* name_of(TaskState s) {
  switch (s) {
    case TaskState::pending:
      return "pending";
    case TaskState::running:
      return "running";
    case TaskState::finished:
      return "finished";
    default:
      return "cancelled";
  }
}

const char* name_of(keel::FutureStatus s) {
  switch (s) {
    case keel::FutureStatus::pending:
      return "pending";
    case keel::FutureStatus::running:
      return "running";
    case keel::FutureStatus::finished:
      return "finished";
    default:
      return "cancelled";
  }
}

const char* name_of(keel::QueueKind k) {
  switch (k) {
    case keel::QueueKind::fifo:
      return "fifo";
    case keel::QueueKind::lifo:
      return "lifo";
    case keel::QueueKind::priority:
      return "priority";
    default:
      return "handoff";
  }
}

const char* name_of(keel::RejectPolicy p) {
  switch (p) {
    case keel::RejectPolicy::abort:
      return "abort";
    case keel::RejectPolicy::caller_runs:
      return "caller_runs";
    case keel::RejectPolicy::discard:
      return "discard";
    case keel::RejectPolicy::discard_oldest:
      return "discard_oldest";
    default:
      return "block(0)";
  }
}

// A task that has a future (accepted, discarded, or run by the caller).
struct ModelTask {
  int priority = 0;
  std::uint64_t seq = 0;  // the pool's submission number (PendingTask::id)
  TaskState state = TaskState::pending;
  bool by_caller = false;       // ran in the test thread (caller_runs, PendingTask::run)
  bool stop_requested = false;  // running when shutdown_now() was called
  bool held = false;            // a PendingTask from shutdown_now() that the test keeps
  bool throws = false;          // the task ends with an exception (still "run to the end")
};

enum class SubmitOutcome { value_error, rejected_shutdown, rejected_saturated, accepted, discarded, caller_ran };

// What the test does with each task shutdown_now() hands back.
enum class Dispose { run, cancel, drop, keep };

struct ExecModel {
  // Configuration.
  std::size_t max = 1;
  std::size_t core = 1;
  keel::QueueKind kind = keel::QueueKind::fifo;
  std::size_t capacity = 0;  // 0: unbounded
  keel::RejectPolicy policy = keel::RejectPolicy::abort;

  PoolState pool = PoolState::running;
  std::size_t threads = 0;  // live workers: running a task, or idle
  std::size_t largest = 0;
  std::size_t max_ever = 1;        // the largest max_threads ever in force
  std::vector<ModelTask> tasks;    // by task index (the order futures were returned)
  std::vector<std::size_t> queue;  // task indices, in submission order
  std::uint64_t seq = 0;           // submissions that reached the pool's decision
  std::uint64_t submitted = 0;     // accepted by the pool
  std::uint64_t completed = 0;     // run to the end by workers
  std::uint64_t rejected = 0;      // refused, discarded, run by the caller, discard_oldest victims
  std::size_t refused = 0;         // submissions that threw: their callables never run

  std::size_t active() const {
    return static_cast<std::size_t>(
        std::count_if(tasks.begin(), tasks.end(), [](const ModelTask& t) { return t.state == TaskState::running; }));
  }
  std::size_t idle() const { return threads - active(); }
  bool terminated() const { return pool != PoolState::running && threads == 0 && queue.empty(); }
  bool queue_full() const { return kind == keel::QueueKind::handoff || (capacity != 0 && queue.size() >= capacity); }

  // The position in `queue` of the task the next pop takes.
  std::size_t next_pos() const {
    if (kind == keel::QueueKind::lifo) return queue.size() - 1;
    if (kind == keel::QueueKind::priority) {
      std::size_t best = 0;
      for (std::size_t i = 1; i < queue.size(); ++i) {
        const ModelTask& a = tasks[queue[i]];
        const ModelTask& b = tasks[queue[best]];
        if (a.priority < b.priority || (a.priority == b.priority && a.seq < b.seq)) best = i;
      }
      return best;
    }
    return 0;  // fifo
  }
  std::size_t take_at(std::size_t pos) {
    const std::size_t t = queue[pos];
    queue.erase(queue.begin() + static_cast<std::ptrdiff_t>(pos));
    return t;
  }
  std::size_t pop() { return take_at(next_pos()); }
  std::size_t pop_oldest() { return take_at(0); }

  void add_thread() {
    ++threads;
    largest = std::max(largest, threads);
  }

  // One worker without a task (just finished one, just started without one,
  // or an idle one woken by the pool) decides what to do next.
  void free_worker() {
    if (pool == PoolState::stop || threads > max) {
      --threads;  // shutdown_now, or max_threads lowered below the live count
      return;
    }
    while (!queue.empty()) {
      const std::size_t t = pop();
      if (tasks[t].state == TaskState::pending) {
        tasks[t].state = TaskState::running;
        return;
      }
      // Cancelled while queued: dropped without running. Per the header,
      // stats().completed counts only tasks "run to the end" (EXEC-8), so not this one.
    }
    if (pool == PoolState::shutdown) --threads;  // queue drained: exit
    // otherwise it stays, idle
  }
  void release_idle() {
    for (std::size_t k = idle(); k > 0; --k) free_worker();
  }

  SubmitOutcome submit(bool has_priority, int priority, bool throws) {
    if (has_priority && kind != keel::QueueKind::priority) return SubmitOutcome::value_error;
    if (pool != PoolState::running) {
      ++rejected;
      ++refused;
      return SubmitOutcome::rejected_shutdown;
    }
    const std::size_t t = tasks.size();
    tasks.push_back(ModelTask{.priority = priority, .seq = ++seq, .throws = throws});
    if (idle() > 0) {
      tasks[t].state = TaskState::running;
      ++submitted;
      return SubmitOutcome::accepted;
    }
    if (threads < core) {
      add_thread();
      tasks[t].state = TaskState::running;
      ++submitted;
      return SubmitOutcome::accepted;
    }
    if (!queue_full()) {
      queue.push_back(t);
      ++submitted;
      if (threads == 0) {
        add_thread();
        free_worker();
      }
      return SubmitOutcome::accepted;
    }
    if (threads < max) {
      add_thread();
      tasks[t].state = TaskState::running;
      ++submitted;
      return SubmitOutcome::accepted;
    }
    ++rejected;
    switch (policy) {
      case keel::RejectPolicy::caller_runs:
        tasks[t].state = TaskState::finished;
        tasks[t].by_caller = true;
        return SubmitOutcome::caller_ran;
      case keel::RejectPolicy::discard:
        tasks[t].state = TaskState::cancelled;
        return SubmitOutcome::discarded;
      case keel::RejectPolicy::discard_oldest:
        if (queue.empty()) {  // handoff: nothing to discard, the new one goes
          tasks[t].state = TaskState::cancelled;
          return SubmitOutcome::discarded;
        } else {
          const std::size_t victim = pop_oldest();
          if (tasks[victim].state == TaskState::pending) tasks[victim].state = TaskState::cancelled;
          queue.push_back(t);
          ++submitted;
          return SubmitOutcome::accepted;
        }
      default:  // abort, block with a zero timeout
        tasks.pop_back();
        ++refused;
        return SubmitOutcome::rejected_saturated;
    }
  }

  bool cancel(std::size_t t) {
    if (tasks[t].state != TaskState::pending) return false;
    tasks[t].state = TaskState::cancelled;
    return true;
  }

  void finish(std::size_t t) {
    tasks[t].state = TaskState::finished;
    ++completed;
    free_worker();
  }

  // Returns whether the call is valid (else ValueError, nothing changes).
  bool set_max(std::size_t n) {
    if (n == 0 || n < core) return false;
    max = n;
    max_ever = std::max(max_ever, n);
    if (threads > n) release_idle();
    return true;
  }

  bool set_core(std::size_t n) {
    if (n > max) return false;
    const std::size_t old = core;
    if (n == old) return true;  // Java's setCorePoolSize: nothing to do
    core = n;
    if (n < old) {
      release_idle();  // they come back idle: no keep-alive runs out in this test
    } else if (pool == PoolState::running) {
      // Java's rule: threads for queued work (cancelled entries included), up to the new core size.
      const std::size_t k = std::min(n - std::min(n, threads), queue.size());
      for (std::size_t i = 0; i < k; ++i) add_thread();
      for (std::size_t i = 0; i < k; ++i) free_worker();
    }
    return true;
  }

  bool prestart_one() {
    if (pool != PoolState::running || threads >= core) return false;
    add_thread();
    free_worker();
    return true;
  }

  void shutdown(bool cancel_futures) {
    if (pool == PoolState::running) pool = PoolState::shutdown;
    if (cancel_futures) {
      for (std::size_t t : queue) cancel(t);
      queue.clear();
    }
    release_idle();
  }

  // Returns the queued tasks in run order, cancelled ones included.
  std::vector<std::size_t> shutdown_now() {
    pool = PoolState::stop;
    std::vector<std::size_t> drained;
    while (!queue.empty()) drained.push_back(pop());
    for (ModelTask& t : tasks) {
      if (t.state == TaskState::running) t.stop_requested = true;
    }
    release_idle();
    return drained;
  }

  void dispose(std::size_t t, Dispose how) {
    switch (how) {
      case Dispose::run:
        if (tasks[t].state == TaskState::pending) {
          tasks[t].state = TaskState::finished;
          tasks[t].by_caller = true;
        }
        break;
      case Dispose::cancel:
      case Dispose::drop:
        cancel(t);
        break;
      case Dispose::keep:
        tasks[t].held = true;
        break;
    }
  }

  // The end of a run: the kept PendingTasks are dropped (cancelling them),
  // every gate opens, and shutdown(wait) lets the pool drain.
  void wind_down() {
    for (ModelTask& t : tasks) {
      if (t.held && t.state == TaskState::pending) t.state = TaskState::cancelled;
      t.held = false;
    }
    shutdown(false);
    for (;;) {
      const auto it =
          std::find_if(tasks.begin(), tasks.end(), [](const ModelTask& t) { return t.state == TaskState::running; });
      if (it == tasks.end()) break;
      finish(static_cast<std::size_t>(it - tasks.begin()));
    }
  }

  std::string describe() const {
    std::ostringstream os;
    os << "max=" << max << " core=" << core << " queue=" << name_of(kind) << "/" << capacity
       << " policy=" << name_of(policy) << " threads=" << threads << " idle=" << idle() << " queue=[";
    for (std::size_t t : queue) os << " #" << t;
    os << " ] tasks:";
    for (std::size_t i = 0; i < tasks.size(); ++i) os << " #" << i << "=" << name_of(tasks[i].state);
    return os.str();
  }
};

// ---------------------------------------------------------------- the system under test

// Set once a case of the running property has failed: while RapidCheck
// shrinks, a pool that hangs (a lost wake-up, say) is given up on after 2 s
// instead of the full hang_limit, so shrinking a hang stays affordable.
std::atomic<bool> g_failing{false};

std::chrono::milliseconds wait_limit() {
  return g_failing.load() ? std::chrono::milliseconds(2000) : std::chrono::milliseconds(keel_test::hang_limit);
}

struct Shared {
  std::thread::id test_thread = std::this_thread::get_id();
};

struct Probe {
  keel::Event gate;
  bool opened = false;  // the test opened the gate (test thread only)
  std::atomic<int> runs{0};
  std::atomic<int> inside{0};  // between entering the body and leaving the gate
  std::atomic<bool> on_test_thread{false};
  std::atomic<bool> gate_timed_out{false};
  void open() {
    opened = true;
    gate.set();
  }
};

struct ExecSut {
  explicit ExecSut(const ExecModel& m) : model(m), pool(std::make_unique<keel::ThreadPoolExecutor>(options(m))) {}
  ExecSut(const ExecSut&) = delete;
  ExecSut& operator=(const ExecSut&) = delete;
  ~ExecSut() {
    if (std::uncaught_exceptions() > 0) g_failing.store(true);  // this case failed
    open_all();
    held.clear();
    if (pool) {
      pool->shutdown({.wait = false, .cancel_futures = false});
      if (pool->await_termination(wait_limit())) {
        pool.reset();
      } else {
        g_failing.store(true);
        ADD_FAILURE() << "the pool did not terminate after every gate opened; leaking it";
        (void)pool.release();
      }
    }
  }

  static keel::ThreadPoolOptions options(const ExecModel& m) {
    keel::ThreadPoolOptions o;
    o.max_threads = m.max;
    o.core_threads = m.core;
    o.thread_name_prefix = "keel-prop";
    o.queue = m.kind;
    o.queue_capacity = m.capacity;
    o.reject = m.policy;
    o.block_timeout = std::chrono::nanoseconds::zero();  // block: reject at once when saturated
    return o;
  }

  void open_all() {
    for (auto& p : all_probes) p->open();
  }

  // The task body: count the run, wait at the gate (bounded), then return
  // the index or throw.
  static auto body(std::shared_ptr<Shared> shared, std::shared_ptr<Probe> probe, int index, bool throws) {
    return [shared, probe, index, throws](std::stop_token) -> int {
      probe->runs.fetch_add(1);
      probe->on_test_thread.store(std::this_thread::get_id() == shared->test_thread);
      probe->inside.fetch_add(1);
      if (!probe->gate.wait_for(wait_limit())) probe->gate_timed_out.store(true);
      probe->inside.fetch_sub(1);
      if (throws) throw std::runtime_error("task " + std::to_string(index) + " throws");
      return index;
    };
  }

  // Compares the pool with the model; returns the differences (empty: match)
  // and whether the pool is quiescent. Fails at once on a broken invariant.
  std::string compare(const ExecModel& m, std::size_t thread_bound, bool& quiescent) const {
    std::ostringstream diff;
    // Which tasks are inside their gates, read around the stats snapshot.
    auto count_inside = [this](bool& open_inside) {
      std::size_t n = 0;
      for (const auto& p : probes) {
        if (p->inside.load() > 0) {
          if (p->opened) {
            open_inside = true;
          } else {
            ++n;
          }
        }
      }
      return n;
    };
    bool open_inside = false;
    const std::size_t in_gates_before = count_inside(open_inside);
    const keel::ThreadPoolStats st = pool->stats();
    const bool is_shutdown = pool->is_shutdown();
    const bool is_terminated = pool->is_terminated();
    const std::size_t in_gates_after = count_inside(open_inside);

    // EXEC-6: no thread beyond max_threads (or beyond the live count, when
    // max_threads was lowered below it); the counts are consistent.
    RC_ASSERT(st.threads <= thread_bound);
    RC_ASSERT(st.largest <= m.max_ever);
    RC_ASSERT(st.largest >= st.threads);
    RC_ASSERT(st.idle + st.active <= st.threads);
    RC_ASSERT(st.completed <= st.submitted);

    // EXEC-2: at most one run; a task cancelled before it started, or refused, never runs.
    for (std::size_t i = 0; i < probes.size(); ++i) {
      const int runs = probes[i]->runs.load();
      RC_ASSERT(runs <= 1);
      if (m.tasks[i].state == TaskState::cancelled) RC_ASSERT(runs == 0);
      RC_ASSERT(!probes[i]->gate_timed_out.load());
    }
    for (const auto& p : refused) RC_ASSERT(p->runs.load() == 0);

    quiescent = !open_inside && in_gates_before == in_gates_after && st.threads == st.idle + in_gates_after &&
                (!is_shutdown || st.threads > 0 || is_terminated);

    auto expect = [&diff](const char* what, auto got, auto want) {
      if (got != want) diff << " " << what << "=" << got << " (model " << want << ")";
    };
    expect("threads", st.threads, m.threads);
    expect("idle", st.idle, m.idle());
    expect("active", st.active, m.active());
    expect("queued", st.queued, m.queue.size());
    expect("submitted", st.submitted, m.submitted);
    expect("completed", st.completed, m.completed);
    expect("rejected", st.rejected, m.rejected);
    expect("largest", st.largest, m.largest);
    expect("is_shutdown", is_shutdown, m.pool != PoolState::running);
    expect("is_terminated", is_terminated, m.terminated());
    for (std::size_t i = 0; i < m.tasks.size(); ++i) {
      const ModelTask& t = m.tasks[i];
      const keel::FutureStatus got = futures[i].status();
      const int runs = probes[i]->runs.load();
      const int inside = probes[i]->inside.load();
      const bool ran = t.state == TaskState::running || t.state == TaskState::finished;
      const bool status_ok = std::string(name_of(got)) == name_of(t.state);
      if (!status_ok || runs != (ran ? 1 : 0) || inside != (t.state == TaskState::running ? 1 : 0)) {
        diff << " #" << i << ":" << name_of(got) << "/runs=" << runs << "/inside=" << inside << " (model "
             << name_of(t.state) << ")";
        continue;
      }
      if (futures[i].stop_requested() != t.stop_requested) diff << " #" << i << ":stop_requested mismatch";
      if (t.state == TaskState::finished) {
        if (t.throws) {
          if (futures[i].exception() == nullptr) diff << " #" << i << ":no exception";
        } else if (futures[i].result() != static_cast<int>(i)) {
          diff << " #" << i << ":wrong result";
        }
        if (probes[i]->on_test_thread.load() != t.by_caller) {
          diff << " #" << i << (t.by_caller ? ": ran on a worker, not the caller" : ": ran in the caller");
        }
      }
    }
    return diff.str();
  }

  // Polls until the pool matches the model (bounded; a quiescent mismatch
  // fails after 200 ms). Records the model for the end-of-run checks.
  void settle(const ExecModel& m, std::size_t thread_bound) {
    model = m;
    const auto end = std::chrono::steady_clock::now() + wait_limit();
    bool quiet = false;
    auto quiet_since = std::chrono::steady_clock::now();
    for (;;) {
      bool quiescent = false;
      const std::string diff = compare(m, thread_bound, quiescent);
      if (diff.empty()) return;
      const auto now = std::chrono::steady_clock::now();
      if (!quiescent) {
        quiet = false;
      } else if (!quiet) {
        quiet = true;
        quiet_since = now;
      } else if (now - quiet_since >= 200ms) {
        g_failing.store(true);
        RC_FAIL("pool at rest differs from the model:" + diff + "\n  model: " + m.describe());
      }
      if (now >= end) {
        g_failing.store(true);
        RC_FAIL("pool never reached the model's state:" + diff + "\n  model: " + m.describe());
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  // shutdown(wait) on a helper thread, bounded; true if it returned.
  bool shutdown_wait(bool cancel_futures) {
    struct Flags {
      std::atomic<bool> done{false};
      std::atomic<bool> threw{false};
    };
    auto flags = std::make_shared<Flags>();
    keel::ThreadPoolExecutor* p = pool.get();
    std::thread t([p, cancel_futures, flags] {
      try {
        p->shutdown({.wait = true, .cancel_futures = cancel_futures});
      } catch (...) {
        flags->threw.store(true);
      }
      flags->done.store(true);
    });
    if (!keel_test::eventually([&] { return flags->done.load(); }, wait_limit())) {
      // A hang: open every gate and give it one more chance before failing.
      g_failing.store(true);
      open_all();
      if (!keel_test::eventually([&] { return flags->done.load(); }, wait_limit())) {
        t.detach();
        (void)pool.release();  // the detached thread still uses it: leak it
        ADD_FAILURE() << "shutdown(wait) never returned";
        return false;
      }
    }
    t.join();
    return !flags->threw.load();
  }

  ExecModel model;  // after the last command
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  std::vector<std::shared_ptr<Probe>> all_probes;  // every callable submitted
  std::vector<std::shared_ptr<Probe>> probes;      // by task index
  std::vector<keel::Future<int>> futures;          // by task index
  std::vector<std::shared_ptr<Probe>> refused;     // callables of submissions that threw
  std::map<std::size_t, keel::PendingTask> held;
  std::unique_ptr<keel::ThreadPoolExecutor> pool;
};

using ExecCommand = rc::state::Command<ExecModel, ExecSut>;

// Threads may exceed max_threads only when it was lowered below the live count.
std::size_t thread_bound(const ExecModel& before, const ExecModel& after) {
  return std::max(before.threads, after.max);
}

// ---------------------------------------------------------------- commands

struct SubmitTask : ExecCommand {
  bool has_priority = false;
  int priority = 0;
  bool throws = false;
  explicit SubmitTask(const ExecModel& m) : throws(*rc::gen::weightedElement<bool>({{1, true}, {4, false}})) {
    if (m.kind == keel::QueueKind::priority) {
      has_priority = *rc::gen::weightedElement<bool>({{3, true}, {1, false}});
      if (has_priority) priority = *rc::gen::inRange(-2, 3);
    } else {
      has_priority = *rc::gen::weightedElement<bool>({{1, true}, {19, false}});  // ValueError
    }
  }
  void apply(ExecModel& m) const override { m.submit(has_priority, priority, throws); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    const SubmitOutcome want = post.submit(has_priority, priority, throws);
    auto probe = std::make_shared<Probe>();
    s.all_probes.push_back(probe);
    if (want == SubmitOutcome::caller_ran) probe->open();  // it runs in this thread: it must not block
    const int index = static_cast<int>(m.tasks.size());
    std::optional<keel::Future<int>> f;
    std::string got = "accepted";
    try {
      auto fn = ExecSut::body(s.shared, probe, index, throws);
      f = has_priority ? s.pool->submit(keel::Priority{priority}, std::move(fn)) : s.pool->submit(std::move(fn));
    } catch (const keel::ValueError&) {
      got = "ValueError";
    } catch (const keel::RejectedError& e) {
      got = e.reason() == keel::RejectedError::Reason::shutdown    ? "RejectedError(shutdown)"
            : e.reason() == keel::RejectedError::Reason::saturated ? "RejectedError(saturated)"
            : e.reason() == keel::RejectedError::Reason::timed_out ? "RejectedError(timed_out)"
                                                                   : "RejectedError(no_thread)";
    } catch (const std::exception& e) {
      got = std::string("unexpected exception: ") + e.what();
    }
    switch (want) {
      case SubmitOutcome::value_error:
        RC_ASSERT(got == "ValueError");
        break;
      case SubmitOutcome::rejected_shutdown:
        RC_ASSERT(got == "RejectedError(shutdown)");
        break;
      case SubmitOutcome::rejected_saturated:
        RC_ASSERT(got ==
                  (m.policy == keel::RejectPolicy::block ? "RejectedError(timed_out)" : "RejectedError(saturated)"));
        break;
      default:
        RC_ASSERT(got == "accepted");
        break;
    }
    if (f) {
      RC_ASSERT(f->valid());
      if (want == SubmitOutcome::caller_ran) {
        // Run to the end in this thread before submit returned.
        RC_ASSERT(f->status() == keel::FutureStatus::finished);
        RC_ASSERT(probe->on_test_thread.load());
      }
      if (want == SubmitOutcome::discarded) RC_ASSERT(f->status() == keel::FutureStatus::cancelled);
      s.futures.push_back(*f);
      s.probes.push_back(probe);
    } else {
      s.refused.push_back(probe);
    }
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override {
    os << "submit";
    if (has_priority) os << "(Priority{" << priority << "})";
    if (throws) os << " (throws)";
  }
};

struct CancelTask : ExecCommand {
  std::size_t index = 0;
  explicit CancelTask(const ExecModel& m) {
    RC_PRE(!m.tasks.empty());
    std::vector<std::size_t> pending;
    for (std::size_t i = 0; i < m.tasks.size(); ++i) {
      if (m.tasks[i].state == TaskState::pending) pending.push_back(i);
    }
    if (!pending.empty() && *rc::gen::weightedElement<bool>({{3, true}, {1, false}})) {
      index = *rc::gen::elementOf(pending);
    } else {
      index = *rc::gen::inRange<std::size_t>(0, m.tasks.size());
    }
  }
  void checkPreconditions(const ExecModel& m) const override { RC_PRE(index < m.tasks.size()); }
  void apply(ExecModel& m) const override { m.cancel(index); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    const bool want = post.cancel(index);
    RC_ASSERT(s.futures[index].cancel() == want);
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << "cancel #" << index; }
};

struct FinishTask : ExecCommand {
  std::size_t index = 0;
  explicit FinishTask(const ExecModel& m) {
    std::vector<std::size_t> running;
    for (std::size_t i = 0; i < m.tasks.size(); ++i) {
      if (m.tasks[i].state == TaskState::running) running.push_back(i);
    }
    RC_PRE(!running.empty());
    index = *rc::gen::elementOf(running);
  }
  void checkPreconditions(const ExecModel& m) const override {
    // (RapidCheck's captured && does not short-circuit: test the index first.)
    const bool running = index < m.tasks.size() && m.tasks[index].state == TaskState::running;
    RC_PRE(running);
  }
  void apply(ExecModel& m) const override { m.finish(index); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    post.finish(index);
    s.probes[index]->open();
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << "finish #" << index; }
};

struct SetMaxThreads : ExecCommand {
  std::size_t n = 0;
  // Mostly valid sizes, often below the live count (idle workers retire at
  // once, busy ones after their task); sometimes 0 or below core (ValueError).
  explicit SetMaxThreads(const ExecModel& m) {
    const std::size_t low = std::max<std::size_t>(1, m.core);
    if (m.threads > low && *rc::gen::weightedElement<bool>({{3, true}, {1, false}})) {
      n = *rc::gen::inRange<std::size_t>(low, m.threads);
    } else {
      n = *rc::gen::weightedOneOf<std::size_t>(
          {{1, rc::gen::inRange<std::size_t>(0, low)}, {3, rc::gen::inRange<std::size_t>(low, 6)}});
    }
  }
  void apply(ExecModel& m) const override { m.set_max(n); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    if (post.set_max(n)) {
      s.pool->set_max_threads(n);
    } else {
      RC_ASSERT_THROWS_AS(s.pool->set_max_threads(n), keel::ValueError);
    }
    RC_ASSERT(s.pool->max_threads() == post.max);
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << "set_max_threads(" << n << ")"; }
};

struct SetCoreThreads : ExecCommand {
  std::size_t n = 0;
  // Anything from 0 to one above max_threads (ValueError); with queued work,
  // mostly a raise (threads start for the queue).
  explicit SetCoreThreads(const ExecModel& m) {
    if (!m.queue.empty() && m.core < m.max && *rc::gen::weightedElement<bool>({{3, true}, {1, false}})) {
      n = *rc::gen::inRange<std::size_t>(m.core + 1, m.max + 1);
    } else {
      n = *rc::gen::inRange<std::size_t>(0, m.max + 2);
    }
  }
  void apply(ExecModel& m) const override { m.set_core(n); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    if (post.set_core(n)) {
      s.pool->set_core_threads(n);
    } else {
      RC_ASSERT_THROWS_AS(s.pool->set_core_threads(n), keel::ValueError);
    }
    RC_ASSERT(s.pool->core_threads() == post.core);
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << "set_core_threads(" << n << ")"; }
};

struct Prestart : ExecCommand {
  bool all = *rc::gen::arbitrary<bool>();
  void apply(ExecModel& m) const override {
    if (all) {
      while (m.prestart_one()) {
      }
    } else {
      m.prestart_one();
    }
  }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    if (all) {
      std::size_t want = 0;
      while (post.prestart_one()) ++want;
      RC_ASSERT(s.pool->prestart_core_threads() == want);
    } else {
      const bool want = post.prestart_one();
      RC_ASSERT(s.pool->prestart_core_thread() == want);
    }
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << (all ? "prestart_core_threads()" : "prestart_core_thread()"); }
};

struct Shutdown : ExecCommand {
  bool cancel_futures = *rc::gen::arbitrary<bool>();
  void apply(ExecModel& m) const override { m.shutdown(cancel_futures); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    post.shutdown(cancel_futures);
    s.pool->shutdown({.wait = false, .cancel_futures = cancel_futures});
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << "shutdown(wait=false, cancel_futures=" << cancel_futures << ")"; }
};

// shutdown(wait=true) where it cannot block on a gate: no task is running
// (so no worker is busy, and the queue holds nothing runnable).
struct ShutdownWait : ExecCommand {
  bool cancel_futures = *rc::gen::arbitrary<bool>();
  explicit ShutdownWait(const ExecModel& m) { RC_PRE(m.active() == 0); }
  void checkPreconditions(const ExecModel& m) const override { RC_PRE(m.active() == 0); }
  void apply(ExecModel& m) const override { m.shutdown(cancel_futures); }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    post.shutdown(cancel_futures);
    RC_ASSERT(post.terminated());
    RC_ASSERT(s.shutdown_wait(cancel_futures));
    // It returned: every worker has exited (EXEC-4), nothing is left behind.
    RC_ASSERT(s.pool->is_terminated());
    const keel::ThreadPoolStats st = s.pool->stats();
    RC_ASSERT(st.threads == 0u);
    RC_ASSERT(st.queued == 0u);
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override { os << "shutdown(wait=true, cancel_futures=" << cancel_futures << ")"; }
};

struct ShutdownNow : ExecCommand {
  std::vector<Dispose> how;
  ShutdownNow()
      : how(*rc::gen::container<std::vector<Dispose>>(
            4, rc::gen::element(Dispose::run, Dispose::cancel, Dispose::drop, Dispose::keep))) {}
  Dispose action(std::size_t k) const { return how[k % how.size()]; }
  void apply(ExecModel& m) const override {
    const auto drained = m.shutdown_now();
    for (std::size_t k = 0; k < drained.size(); ++k) m.dispose(drained[k], action(k));
  }
  void run(const ExecModel& m, ExecSut& s) const override {
    ExecModel post = m;
    const auto drained = post.shutdown_now();
    std::vector<keel::PendingTask> got = s.pool->shutdown_now();
    // EXEC-3: exactly the queued tasks come back, in the order they would have run.
    std::vector<std::uint64_t> got_ids;
    std::vector<std::uint64_t> want_ids;
    for (const auto& p : got) got_ids.push_back(p.id());
    for (std::size_t t : drained) want_ids.push_back(post.tasks[t].seq);
    RC_ASSERT(got_ids == want_ids);
    for (std::size_t k = 0; k < drained.size(); ++k) {
      const std::size_t t = drained[k];
      RC_ASSERT(got[k].priority() == post.tasks[t].priority);
      const bool was_pending = post.tasks[t].state == TaskState::pending;
      switch (action(k)) {
        case Dispose::run:
          s.probes[t]->open();
          RC_ASSERT(got[k].run() == was_pending);
          RC_ASSERT_THROWS_AS(got[k].run(), keel::InvalidStateError);
          break;
        case Dispose::cancel:
          RC_ASSERT(got[k].cancel() == was_pending);
          break;
        case Dispose::drop: {
          keel::PendingTask dropped = std::move(got[k]);
          RC_ASSERT(got[k].id() == 0u);  // moved from
          break;
        }
        case Dispose::keep:
          s.held.emplace(t, std::move(got[k]));
          break;
      }
      post.dispose(t, action(k));
    }
    got.clear();
    RC_ASSERT(s.pool->shutdown_now().empty());  // a second call finds nothing queued
    s.settle(post, thread_bound(m, post));
  }
  void show(std::ostream& os) const override {
    os << "shutdown_now() then";
    for (Dispose d : how) {
      os << (d == Dispose::run ? " run" : d == Dispose::cancel ? " cancel" : d == Dispose::drop ? " drop" : " keep");
    }
  }
};

struct ObservePool : ExecCommand {
  void run(const ExecModel& m, ExecSut& s) const override {
    RC_ASSERT(s.pool->max_threads() == m.max);
    RC_ASSERT(s.pool->core_threads() == m.core);
    RC_ASSERT(s.pool->is_shutdown() == (m.pool != PoolState::running));
    RC_ASSERT(!s.pool->is_broken());
    RC_ASSERT(s.pool->await_termination(0ms) == m.terminated());
    s.settle(m, thread_bound(m, m));
  }
  void show(std::ostream& os) const override { os << "observe"; }
};

template <class Cmd>
rc::Gen<std::shared_ptr<const ExecCommand>> make(const ExecModel& m) {
  return rc::gen::exec([m]() -> std::shared_ptr<const ExecCommand> {
    if constexpr (std::is_constructible_v<Cmd, const ExecModel&>) {
      return std::make_shared<Cmd>(m);
    } else {
      return std::make_shared<Cmd>();
    }
  });
}

// Submissions and finishes dominate; a shutdown comes in about one run in
// three (every run ends with one anyway), and submitting to a shut-down pool
// is only tried now and then.
rc::Gen<std::shared_ptr<const ExecCommand>> next_command(const ExecModel& m) {
  const bool open = m.pool == PoolState::running;
  const bool started = m.tasks.size() >= 2;
  const unsigned shut = open && started ? (m.queue.empty() ? 1 : 3) : 0;
  const bool any_pending =
      std::any_of(m.tasks.begin(), m.tasks.end(), [](const ModelTask& t) { return t.state == TaskState::pending; });
  const unsigned cancel_weight = m.tasks.empty() ? 0 : any_pending ? 4 : 1;
  return rc::gen::weightedOneOf<std::shared_ptr<const ExecCommand>>({
      {open ? 16u : 1u, make<SubmitTask>(m)},
      {m.active() > 0 ? 10u : 0u, make<FinishTask>(m)},
      {cancel_weight, make<CancelTask>(m)},
      {m.threads > std::max<std::size_t>(1, m.core) ? 4u : 2u, make<SetMaxThreads>(m)},
      {!m.queue.empty() && m.core < m.max ? 4u : 2u, make<SetCoreThreads>(m)},
      {1, make<Prestart>(m)},
      {1, make<ObservePool>(m)},
      {shut, make<Shutdown>(m)},
      {m.active() == 0 ? shut : 0u, make<ShutdownWait>(m)},
      {shut, make<ShutdownNow>(m)},
  });
}

// ---------------------------------------------------------------- the property

// The configuration is drawn as small integers (RapidCheck prints those in a
// counterexample); the log line names them.
ExecModel random_config(bool saturating) {
  constexpr keel::QueueKind kinds[] = {keel::QueueKind::fifo, keel::QueueKind::lifo, keel::QueueKind::priority,
                                       keel::QueueKind::handoff};
  constexpr keel::RejectPolicy policies[] = {keel::RejectPolicy::abort, keel::RejectPolicy::caller_runs,
                                             keel::RejectPolicy::discard, keel::RejectPolicy::discard_oldest,
                                             keel::RejectPolicy::block};
  ExecModel m;
  m.max = *rc::gen::inRange<std::size_t>(1, saturating ? 4 : 5);
  m.core = *rc::gen::weightedOneOf<std::size_t>(
      {{1, rc::gen::just(m.max)}, {2, rc::gen::inRange<std::size_t>(0, m.max + 1)}});
  m.kind = kinds[*rc::gen::inRange(0, 4)];
  if (m.kind != keel::QueueKind::handoff) {
    m.capacity = saturating ? *rc::gen::inRange<std::size_t>(1, 3) : *rc::gen::inRange<std::size_t>(0, 4);
  }
  m.policy = policies[*rc::gen::inRange(0, 5)];
  m.max_ever = m.max;
  return m;
}

void check_against_model(bool saturating) {
  const ExecModel initial = random_config(saturating);
  RC_TAG(name_of(initial.kind), name_of(initial.policy));
  RC_LOG() << "config: " << initial.describe() << "\n";
  ExecSut sut(initial);
  rc::state::check(initial, sut, &next_command);

  // The end of the run: open every gate, drop the kept PendingTasks, and
  // shut down with wait.
  ExecModel end = sut.model;
  end.wind_down();
  sut.open_all();
  sut.held.clear();
  RC_ASSERT(sut.shutdown_wait(false));
  RC_ASSERT(end.terminated());
  RC_ASSERT(sut.pool->is_terminated());
  // EXEC-1 and EXEC-3: every future the pool returned is final; exactly the
  // tasks the model says ran, ran, once each (EXEC-2); EXEC-8: the counts.
  for (std::size_t i = 0; i < end.tasks.size(); ++i) {
    RC_ASSERT(sut.futures[i].done());
    const bool final_state = end.tasks[i].state == TaskState::finished || end.tasks[i].state == TaskState::cancelled;
    RC_ASSERT(final_state);
  }
  sut.settle(end, sut.model.max_ever);
  const keel::ThreadPoolStats st = sut.pool->stats();
  RC_ASSERT(st.threads == 0u);
  RC_ASSERT(st.idle == 0u);
  RC_ASSERT(st.active == 0u);
  RC_ASSERT(st.queued == 0u);
  std::uint64_t ran_on_workers = 0;
  for (const ModelTask& t : end.tasks) ran_on_workers += t.state == TaskState::finished && !t.by_caller ? 1 : 0;
  RC_ASSERT(st.completed == ran_on_workers);
}

}  // namespace

TEST(ThreadPoolExecutorProperties, StatefulAgainstModel) {
  g_failing.store(false);
  EXPECT_TRUE(keel_test::rc_check("ThreadPoolExecutor matches the sequential model", 100, 30,
                                  [] { check_against_model(false); }));
}

// Small pools with small bounded queues: the reject policies fire often.
TEST(ThreadPoolExecutorProperties, SaturatedStatefulAgainstModel) {
  g_failing.store(false);
  EXPECT_TRUE(keel_test::rc_check("ThreadPoolExecutor matches the model when saturated", 100, 30,
                                  [] { check_against_model(true); }));
}
