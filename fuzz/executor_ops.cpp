// Fuzz target executor_ops: ThreadPoolExecutor driven by long, strange
// operation scripts run by one to three submitter threads at once, against
// counters the tasks, hooks and callbacks keep themselves.
//
// Input: five configuration bytes (max/core threads and the number of script
// threads; queue kind, capacity, keep-alive, core timeout; reject policy,
// block timeout, how the script ends; hooks; initializer and thread factory),
// then up to 64 operations of 5 or 6 bytes (opcode, script thread when there
// are several, four argument bytes): submit (value, throw, gated, sleep,
// stop-token, gated+throw; with or without Priority; optionally followed,
// after a short spin, by a cancel, callback or stop request that races the
// worker starting the task), cancel, release gate,
// add_done_callback, request_stop, result/exception with a timeout, the
// set_* controls with valid and invalid values, prestart, map, wait,
// as_completed, stats, shutdown in its four forms, shutdown_now (run, drop or
// keep the PendingTasks), PendingTask run/cancel/drop, await_termination,
// interleaving hints (yield, spin, sleep) and opening gates.
//
// Nothing blocks without bound: gated tasks wait only on worker threads (in
// the caller, for caller_runs or PendingTask::run, they return at once), every
// wait of the script has a short timeout, and shutdown(wait) opens every gate
// first. Observations from other threads are recorded and checked on the
// target's thread once every thread is joined and the pool has terminated;
// where the interpreter can know the answer it also checks after each
// operation (exactly so when one script thread runs). Invariants:
// EXEC-1 every future is final at the end, with the outcome its task kind
//   implies (value, its exception, CancelledError, BrokenThreadPool, the
//   before-hook's refusal), and result()/exception() agree with status();
// EXEC-2 no task body runs twice, a task whose cancel() won never runs, at
//   most one cancel() wins, no before-hook sees one task twice;
// EXEC-3 every submission is accounted for: a future (accepted, run by the
//   caller only under caller_runs, cancelled only under the discard policies),
//   or RejectedError with a reason the configuration allows, BrokenThreadPool
//   only once the pool broke, ValueError exactly for a Priority on a
//   non-priority queue; after shutdown returned, nothing is accepted;
// EXEC-4 after shutdown(wait) or termination no body runs, no worker is alive
//   and every future is final (except those held in PendingTasks);
//   cancel_futures and shutdown_now leave at most one task per live worker to
//   start; shutdown_now hands back each task once, never one that started,
//   and asks the stop-token tasks running at that moment to stop;
// EXEC-5 the final shutdown terminates (no stranded task) and no gated task
//   waits ten seconds;
// EXEC-6 bodies running at once, stats().threads and largest never exceed the
//   largest max_threads ever set;
// EXEC-7 each done callback runs exactly once, on a final future, at once when
//   added to a final one, in the order one thread added them; every throw of a
//   callback or hook reaches the error reporter; wait() and as_completed()
//   report every future final before the call, yield each future once, and
//   return before their timeout only when their condition holds;
// EXEC-8 snapshots are consistent (idle + active <= threads <= largest,
//   completed <= submitted, counters monotonic, queued within capacity), and
//   at the end completed equals the bodies workers ran, rejected and submitted
//   match the refusals, caller runs, discards and victims counted here;
// SYNC-3 set_core_threads/set_max_threads/set_keep_alive refuse bad values
//   with ValueError and change nothing.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/error.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"

namespace {

using namespace std::chrono_literals;
using Fut = keel::Future<std::uint64_t>;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kMaxOps = 64;
constexpr std::size_t kOps = 24;
// Long enough never to pass on a loaded machine, short enough to end a hang
// well before libFuzzer's 25 s timeout.
constexpr auto kSafetyBound = 10s;

// Which kind of thread runs a task body: the pool's own threads are workers,
// the interpreter's threads are script threads, and those run a body only
// inside submit (caller_runs) or PendingTask::run.
enum class Ctx : int { worker, script, submitting, pending_run };
thread_local Ctx t_ctx = Ctx::worker;

struct TaskRec;
struct CbRec;
thread_local const TaskRec* t_submitting = nullptr;
thread_local const CbRec* t_adding = nullptr;

enum class Kind : std::uint8_t { value, throws, gate, sleep, stop, gate_throw };
enum class Outcome : std::uint8_t { none, future, value_error, broken, rejected, other };

struct TaskError : std::runtime_error {
  explicit TaskError(std::size_t i) : std::runtime_error("task error " + std::to_string(i)), id(i) {}
  std::size_t id;
};
struct MapError : std::runtime_error {
  explicit MapError(int i) : std::runtime_error("map error " + std::to_string(i)), index(i) {}
  int index;
};
struct HookRefused : std::runtime_error {
  explicit HookRefused(std::uint64_t s) : std::runtime_error("before_task refused " + std::to_string(s)), seq(s) {}
  std::uint64_t seq;
};
struct Thrown : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TaskRec {
  std::size_t id = 0;
  Kind kind = Kind::value;
  bool has_priority = false;
  int priority = 0;
  unsigned sleep_us = 0;
  // Written by the body, on whatever thread runs it.
  std::atomic<int> runs{0};
  std::atomic<int> run_ctx{-1};
  std::atomic<std::uint64_t> start_clock{0};
  std::atomic<std::uint64_t> end_clock{0};
  std::atomic<bool> saw_stop{false};
  std::atomic<int> cancel_wins{0};
  bool open = false;  // the gate; guarded by World::gate_mu
  // Written by the submitting thread before the record is published in World::futs.
  Outcome outcome = Outcome::none;
  keel::RejectedError::Reason reason{};
  Fut fut;
  std::uint64_t seq = 0;

  std::uint64_t expected() const { return id * 1000003u + 17u; }
  bool gated() const { return kind == Kind::gate || kind == Kind::gate_throw || kind == Kind::stop; }
  bool throws() const { return kind == Kind::throws || kind == Kind::gate_throw; }
};

struct CbRec {
  std::size_t task = 0;
  std::size_t thread = 0;
  bool throws = false;
  std::atomic<int> fired{0};
  std::atomic<bool> fired_inline{false};
  std::atomic<std::uint64_t> stamp{0};
};

struct MapRec {
  std::uint64_t id = 0;
  int n = 0;
  unsigned throw_mask = 0;
  unsigned sleep_mask = 0;
  std::atomic<int> runs[4] = {};
  std::uint64_t value(int i) const { return id * 7919u + static_cast<std::uint64_t>(i) * 31u + 5u; }
};

// The inputs of a map: each dereference is one submit call (MapResults::refill
// submits fn(*cur_) and dereferences nothing else), which keeps the count of
// submissions exact for EXEC-8.
struct CountingRange {
  struct iterator {
    int i = 0;
    std::atomic<std::uint64_t>* derefs = nullptr;
    int operator*() const {
      derefs->fetch_add(1);
      return i;
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    bool operator==(const iterator& o) const { return i == o.i; }
  };
  int n = 0;
  std::atomic<std::uint64_t>* derefs = nullptr;
  iterator begin() const { return {0, derefs}; }
  iterator end() const { return {n, derefs}; }
};

struct Op {
  std::uint8_t code = 0, a = 0, b = 0, c = 0, d = 0;
};

struct Config {
  std::size_t max = 1;
  std::optional<std::size_t> core;
  std::size_t nthreads = 1;
  keel::QueueKind queue = keel::QueueKind::fifo;
  std::size_t capacity = 0;
  bool bad_capacity = false;
  std::chrono::nanoseconds keep_alive{0};
  bool core_timeout = false;
  keel::RejectPolicy policy = keel::RejectPolicy::abort;
  std::chrono::nanoseconds block_timeout{0};
  unsigned end_mode = 0;
  bool before = false, after = false, terminated = false, after_throws = false, terminated_throws = false;
  unsigned refuse_mod = 0;  // the before hook refuses tasks whose id is a multiple (0: never)
  unsigned init_mode = 0;   // 0 none, 1 ok, 2 fails on call init_fail_at, 3 slow
  unsigned init_fail_at = 1;
  unsigned factory_mode = 0;  // 0 default, 1 counting, 2 fails every k-th, 3 starts then throws every k-th
  unsigned factory_k = 1;

  bool invalid() const { return (core && *core > max) || bad_capacity; }
  bool discards() const {
    return policy == keel::RejectPolicy::discard || policy == keel::RejectPolicy::discard_oldest;
  }
};

struct Violation {
  std::string inv;
  int line;
  std::string what;
};

// Something shutdown_now() handed back, and what became of it (resolved
// against the task records at the end, when every seq is known).
struct PendingEvent {
  enum Kind { handed, ran_true, ran_false, dropped, cancel_won } kind;
  std::uint64_t seq;
  int priority;
};

// After shutdown(cancel_futures) or shutdown_now returned at clock `after`,
// workers may start at most `bound` tasks: those already handed to them.
struct StartBound {
  std::uint64_t after;
  std::size_t bound;
  const char* what;
};

struct ThreadState {
  std::size_t index = 0;
  std::optional<keel::ThreadPoolStats> last;
};

std::string str(std::uint64_t v) { return std::to_string(v); }

#define NOTE(inv, cond, what)                         \
  do {                                                \
    if (!(cond)) this->note((inv), __LINE__, (what)); \
  } while (0)

class World {
 public:
  explicit World(const Config& c) : cfg(c), single(c.nthreads == 1) {}

  void run(std::vector<std::vector<Op>>& script);
  void report();
  bool stuck() const { return stuck_; }

 private:
  void note(const char* inv, int line, const std::string& what) {
    std::lock_guard g(v_mu_);
    if (violations_.size() < 16) violations_.push_back({inv, line, what});
  }

  keel::ThreadPoolOptions options();
  void run_ops(ThreadState& ts, const std::vector<Op>& ops);
  void exec(ThreadState& ts, const Op& op);

  // Bodies, hooks and callbacks (any thread).
  std::uint64_t run_body(TaskRec& r, const std::stop_token& tok);
  std::uint64_t map_body(MapRec& m, int i);
  void worker_enter(std::uint64_t at, bool record_start);
  void wait_gate(TaskRec& r, const std::stop_token& tok);
  void on_callback(CbRec& cb, const Fut& f);

  // Operations.
  void op_submit(ThreadState& ts, const Op& op, bool with_priority);
  void op_cancel(TaskRec& r);
  void op_release(TaskRec& r);
  void op_callback(ThreadState& ts, TaskRec& r, const Op& op);
  void op_request_stop(TaskRec& r);
  void op_result(TaskRec& r, const Op& op);
  void op_control(const Op& op);
  void op_prestart(const Op& op);
  void op_map(const Op& op);
  void op_wait(const Op& op, bool as_completed);
  void op_shutdown(const Op& op);
  void op_shutdown_now(const Op& op);
  void op_pending(const Op& op);
  void op_await(const Op& op);
  void op_hint(const Op& op);
  void op_open(const Op& op);

  TaskRec* pick(std::uint8_t k);
  void open_all();
  void dispose(keel::PendingTask& p, unsigned how);  // 0 run, 1 drop, 2 keep; pending_mu_ held
  void check_stats(const keel::ThreadPoolStats& s, ThreadState* ts, const char* where);
  void check_outcome(TaskRec& r, const char* where, bool must_be_final);
  void check_terminated(const char* where);
  void final_checks(bool have_stats, const keel::ThreadPoolStats& st);

 public:
  const Config cfg;
  const bool single;

 private:
  std::unique_ptr<keel::ThreadPoolExecutor> pool_;
  std::atomic<std::uint64_t> clock_{0};
  std::atomic<bool> shutdown_done_{false};

  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool all_open_ = false;  // guarded by gate_mu_

  std::mutex table_mu_;
  std::vector<std::unique_ptr<TaskRec>> recs_;  // every direct submission
  std::vector<TaskRec*> futs_;                  // those that returned a future
  std::vector<std::unique_ptr<CbRec>> cbs_;
  std::vector<std::unique_ptr<MapRec>> maps_;

  std::mutex ctl_mu_;
  std::size_t core_ = 0, max_ = 0;  // guarded by ctl_mu_: what the pool must report
  std::atomic<std::size_t> max_ever_{0};

  std::mutex pending_mu_;
  std::vector<keel::PendingTask> held_;
  std::vector<PendingEvent> pevents_;
  std::set<std::uint64_t> handed_back_;

  std::mutex log_mu_;
  std::vector<std::uint64_t> worker_starts_;               // clocks
  std::vector<std::pair<std::uint64_t, int>> before_log_;  // seq, priority
  std::vector<std::pair<std::uint64_t, bool>> after_log_;  // seq, error
  std::vector<StartBound> bounds_;
  std::map<std::string, std::uint64_t> reports_;

  // Counters.
  std::atomic<std::uint64_t> direct_calls_{0}, value_errors_{0}, broken_direct_{0}, rejected_direct_{0};
  std::atomic<std::uint64_t> caller_direct_{0}, discarded_known_{0};
  std::atomic<std::uint64_t> map_ops_{0}, map_derefs_{0}, map_rejected_{0}, map_broken_{0};
  std::atomic<std::uint64_t> worker_bodies_{0}, caller_bodies_{0}, pending_bodies_{0};
  std::atomic<std::uint64_t> worker_running_{0}, max_running_{0};
  std::atomic<std::uint64_t> before_calls_{0}, refusals_{0}, after_calls_{0}, after_throws_{0};
  std::atomic<std::uint64_t> terminated_calls_{0}, terminated_throws_{0};
  std::atomic<std::uint64_t> init_calls_{0}, init_failures_{0};
  std::atomic<std::uint64_t> factory_calls_{0}, factory_starts_{0};
  std::atomic<std::uint64_t> cb_throws_fired_{0};

  std::mutex v_mu_;
  std::vector<Violation> violations_;
  bool stuck_ = false;  // the pool hangs: it and this World are left alive
};

// ---------------------------------------------------------------- pool setup

keel::ThreadPoolOptions World::options() {
  keel::ThreadPoolOptions o;
  o.max_threads = cfg.max;
  o.core_threads = cfg.core;
  o.keep_alive = cfg.keep_alive;
  o.allow_core_timeout = cfg.core_timeout;
  o.thread_name_prefix = "fuzz-exec";
  o.queue = cfg.queue;
  o.queue_capacity = cfg.bad_capacity ? 2 : cfg.capacity;
  o.reject = cfg.policy;
  o.block_timeout = cfg.block_timeout;
  if (cfg.init_mode != 0) {
    o.initializer = [this] {
      NOTE("EXEC-5", t_ctx == Ctx::worker, "the initializer ran on a script thread");
      const std::uint64_t n = ++init_calls_;
      if (cfg.init_mode == 2 && n == cfg.init_fail_at) {
        ++init_failures_;
        throw Thrown("initializer fails");
      }
      if (cfg.init_mode == 3) std::this_thread::sleep_for(30us);
    };
  }
  if (cfg.factory_mode != 0) {
    o.thread_factory = [this](keel::platform::Thread& t, std::function<void()> body) {
      const std::uint64_t n = ++factory_calls_;
      const bool odd = n % cfg.factory_k == 0;
      if (cfg.factory_mode == 2 && odd) throw Thrown("factory fails");
      t.start(std::move(body));
      ++factory_starts_;
      if (cfg.factory_mode == 3 && odd) throw Thrown("factory started the thread, then threw");
    };
  }
  if (cfg.before) {
    o.before_task = [this](const keel::TaskInfo& info) {
      NOTE("EXEC-2", t_ctx == Ctx::worker, "before_task ran outside a worker");
      ++before_calls_;
      const std::uint64_t at = ++clock_;
      {
        std::lock_guard g(log_mu_);
        worker_starts_.push_back(at);
        before_log_.emplace_back(info.id, info.priority);
      }
      if (cfg.refuse_mod != 0 && info.id % cfg.refuse_mod == 0) {
        ++refusals_;
        throw HookRefused(info.id);
      }
    };
  }
  if (cfg.after) {
    o.after_task = [this](const keel::TaskInfo& info, std::exception_ptr e) {
      ++after_calls_;
      {
        std::lock_guard g(log_mu_);
        after_log_.emplace_back(info.id, e != nullptr);
      }
      if (cfg.after_throws && info.id % 3 == 0) {
        ++after_throws_;
        throw Thrown("after_task throws");
      }
    };
  }
  if (cfg.terminated) {
    o.on_terminated = [this] {
      ++terminated_calls_;
      if (cfg.terminated_throws) {
        ++terminated_throws_;
        throw Thrown("on_terminated throws");
      }
    };
  }
  return o;
}

// ---------------------------------------------------------------- bodies

void World::worker_enter(std::uint64_t at, bool record_start) {
  ++worker_bodies_;
  const std::uint64_t now = ++worker_running_;
  std::uint64_t seen = max_running_.load();
  while (now > seen && !max_running_.compare_exchange_weak(seen, now)) {
  }
  NOTE("EXEC-6", now <= max_ever_.load(),
       str(now) + " task bodies run at once on workers, above the largest max_threads " + str(max_ever_.load()));
  if (record_start && !cfg.before) {
    std::lock_guard g(log_mu_);
    worker_starts_.push_back(at);
  }
}

std::uint64_t World::run_body(TaskRec& r, const std::stop_token& tok) {
  const Ctx ctx = t_ctx;
  const std::uint64_t at = ++clock_;
  const int before = r.runs.fetch_add(1);
  NOTE("EXEC-2", before == 0, "task " + str(r.id) + " ran twice");
  r.run_ctx.store(static_cast<int>(ctx));
  r.start_clock.store(at);
  switch (ctx) {
    case Ctx::worker:
      worker_enter(at, true);
      break;
    case Ctx::submitting:
      ++caller_bodies_;
      NOTE("EXEC-3", t_submitting == &r, "task " + str(r.id) + " ran in a thread submitting another task");
      NOTE("EXEC-3", cfg.policy == keel::RejectPolicy::caller_runs,
           "task " + str(r.id) + " ran in its submitter although the policy is not caller_runs");
      break;
    case Ctx::pending_run:
      ++pending_bodies_;
      break;
    case Ctx::script:
      NOTE("EXEC-2", false, "task " + str(r.id) + " ran on a script thread outside submit and PendingTask::run");
      break;
  }
  struct Leave {
    World& w;
    TaskRec& r;
    bool worker;
    ~Leave() {
      if (worker) --w.worker_running_;
      r.end_clock.store(++w.clock_);
    }
  } leave{*this, r, ctx == Ctx::worker};
  if (ctx == Ctx::worker && r.gated()) wait_gate(r, tok);
  if (r.kind == Kind::sleep) std::this_thread::sleep_for(std::chrono::microseconds(r.sleep_us));
  if (r.throws()) throw TaskError(r.id);
  return r.expected() + (r.saw_stop.load() ? 1 : 0);
}

void World::wait_gate(TaskRec& r, const std::stop_token& tok) {
  // The callback must not run while this thread holds gate_mu_ (it takes it),
  // and must not be destroyed while it does (its destructor waits for a
  // running callback, which may wait for gate_mu_).
  auto wake = [this] {
    std::lock_guard g(gate_mu_);
    gate_cv_.notify_all();
  };
  std::optional<std::stop_callback<decltype(wake)>> cb;
  const bool stoppable = r.kind == Kind::stop;
  if (stoppable) cb.emplace(tok, wake);
  bool ok;
  {
    std::unique_lock l(gate_mu_);
    ok = gate_cv_.wait_for(l, kSafetyBound, [&] { return r.open || all_open_ || (stoppable && tok.stop_requested()); });
  }
  NOTE("EXEC-5", ok, "gated task " + str(r.id) + " waited 10 s: the script or the pool hangs");
  if (stoppable) r.saw_stop.store(tok.stop_requested());
}

std::uint64_t World::map_body(MapRec& m, int i) {
  const Ctx ctx = t_ctx;
  const std::uint64_t at = ++clock_;
  NOTE("EXEC-2", m.runs[i].fetch_add(1) == 0, "map " + str(m.id) + " input " + str(i) + " ran twice");
  bool worker = false;
  switch (ctx) {
    case Ctx::worker:
      worker = true;
      worker_enter(at, true);
      break;
    case Ctx::submitting:
      ++caller_bodies_;
      NOTE("EXEC-3", cfg.policy == keel::RejectPolicy::caller_runs,
           "a map task ran in its submitter although the policy is not caller_runs");
      break;
    case Ctx::pending_run:
      ++pending_bodies_;
      break;
    case Ctx::script:
      NOTE("EXEC-2", false, "a map task ran on a script thread outside submit and PendingTask::run");
      break;
  }
  struct Leave {
    std::atomic<std::uint64_t>& running;
    bool worker;
    ~Leave() {
      if (worker) --running;
    }
  } leave{worker_running_, worker};
  if ((m.sleep_mask >> i) & 1) std::this_thread::sleep_for(20us);
  if ((m.throw_mask >> i) & 1) throw MapError(i);
  return m.value(i);
}

void World::on_callback(CbRec& cb, const Fut& f) {
  const int before = cb.fired.fetch_add(1);
  NOTE("EXEC-7", before == 0, "a done callback of task " + str(cb.task) + " ran twice");
  NOTE("EXEC-7", f.done(), "a done callback of task " + str(cb.task) + " ran on a future that is not final");
  cb.fired_inline.store(t_adding == &cb);
  cb.stamp.store(++clock_);
  if (cb.throws) {
    ++cb_throws_fired_;
    throw Thrown("done callback throws");
  }
}

// ---------------------------------------------------------------- helpers

TaskRec* World::pick(std::uint8_t k) {
  std::lock_guard g(table_mu_);
  if (futs_.empty()) return nullptr;
  return futs_[k % futs_.size()];
}

void World::open_all() {
  std::lock_guard g(gate_mu_);
  all_open_ = true;
  gate_cv_.notify_all();
}

void World::check_stats(const keel::ThreadPoolStats& s, ThreadState* ts, const char* where) {
  const std::size_t ever = max_ever_.load();
  const std::string at = std::string(" (") + where + ")";
  NOTE("EXEC-8", s.idle + s.active <= s.threads,
       "idle " + str(s.idle) + " + active " + str(s.active) + " above threads " + str(s.threads) + at);
  NOTE("EXEC-6", s.threads <= ever, "threads " + str(s.threads) + " above the largest max_threads " + str(ever) + at);
  NOTE("EXEC-8", s.largest <= ever, "largest " + str(s.largest) + " above the largest max_threads " + str(ever) + at);
  NOTE("EXEC-8", s.threads <= s.largest, "threads " + str(s.threads) + " above largest " + str(s.largest) + at);
  NOTE("EXEC-8", s.completed <= s.submitted,
       "completed " + str(s.completed) + " above submitted " + str(s.submitted) + at);
  if (cfg.queue == keel::QueueKind::handoff) {
    NOTE("EXEC-8", s.queued == 0, "a handoff queue holds " + str(s.queued) + at);
  } else if (cfg.capacity != 0) {
    NOTE("EXEC-8", s.queued <= cfg.capacity,
         "queued " + str(s.queued) + " above the capacity " + str(cfg.capacity) + at);
  }
  if (cfg.factory_mode != 0) {
    const std::uint64_t made = factory_starts_.load();
    NOTE("EXEC-8", s.largest <= made, "largest " + str(s.largest) + " above the threads started " + str(made) + at);
  }
  if (ts != nullptr) {
    if (ts->last) {
      const auto& p = *ts->last;
      NOTE("EXEC-8",
           s.submitted >= p.submitted && s.completed >= p.completed && s.rejected >= p.rejected &&
               s.largest >= p.largest,
           "a counter went down between two snapshots of one thread" + at);
    }
    ts->last = s;
  }
}

// EXEC-1 (and EXEC-2): the outcome a final future shows matches its task.
void World::check_outcome(TaskRec& r, const char* where, bool must_be_final) {
  const std::string who = "task " + str(r.id) + " (seq " + str(r.seq) + ", kind " + str(static_cast<unsigned>(r.kind)) +
                          ") " + where + ": ";
  const keel::FutureStatus st = r.fut.status();
  if (st == keel::FutureStatus::pending || st == keel::FutureStatus::running) {
    NOTE("EXEC-1", !must_be_final, who + "not final");
    return;
  }
  const int runs = r.runs.load();
  NOTE("EXEC-2", runs <= 1, who + "ran " + str(static_cast<std::uint64_t>(runs)) + " times");
  if (st == keel::FutureStatus::cancelled) {
    NOTE("EXEC-2", runs == 0, who + "cancelled, yet its body ran");
    for (int i = 0; i < 2; ++i) {
      bool cancelled_error = false;
      try {
        if (i == 0) {
          (void)r.fut.result(0ns);
        } else {
          (void)r.fut.exception(0ns);
        }
      } catch (const keel::CancelledError&) {
        cancelled_error = true;
      } catch (...) {
      }
      NOTE("EXEC-1", cancelled_error, who + "cancelled, but result()/exception() did not throw CancelledError");
    }
    return;
  }
  NOTE("EXEC-2", r.cancel_wins.load() == 0, who + "finished although a cancel() of it returned true");
  std::exception_ptr e;
  try {
    e = r.fut.exception(0ns);
  } catch (const std::exception& x) {
    NOTE("EXEC-1", false, who + "finished, but exception() threw " + x.what());
    return;
  }
  try {
    const std::uint64_t v = r.fut.result(0ns);
    NOTE("EXEC-1", e == nullptr, who + "result() returned although exception() is not null");
    NOTE("EXEC-1", runs == 1 && !r.throws(), who + "finished with a value without running its body");
    const std::uint64_t want = r.expected() + (r.saw_stop.load() ? 1 : 0);
    NOTE("EXEC-1", v == want, who + "result " + str(v) + ", expected " + str(want));
  } catch (const TaskError& x) {
    NOTE("EXEC-1", e != nullptr, who + "result() threw, exception() is null");
    NOTE("EXEC-1", runs == 1 && r.throws() && x.id == r.id,
         who + "finished with the exception of a body it did not run");
  } catch (const HookRefused& x) {
    NOTE("EXEC-1", runs == 0 && cfg.before && cfg.refuse_mod != 0 && x.seq == r.seq,
         who + "carries a before_task refusal for seq " + str(x.seq));
  } catch (const keel::BrokenThreadPool&) {
    NOTE("EXEC-1", runs == 0 && init_failures_.load() != 0,
         who + "failed with BrokenThreadPool although it ran or no initializer failed");
  } catch (const std::exception& x) {
    NOTE("EXEC-1", false, who + "finished with an unexpected exception: " + x.what());
  }
}

// EXEC-4: a terminated pool has no worker and no running body, and every
// future it accepted is final, except the tasks held in PendingTasks.
void World::check_terminated(const char* where) {
  const std::string at = std::string(" (") + where + ")";
  NOTE("EXEC-4", pool_->is_terminated(), "not terminated" + at);
  NOTE("EXEC-4", pool_->is_shutdown(), "terminated but not shut down" + at);
  NOTE("EXEC-4", worker_running_.load() == 0, str(worker_running_.load()) + " task bodies still run on workers" + at);
  if (cfg.terminated) {
    NOTE("EXEC-4", terminated_calls_.load() == 1,
         "on_terminated ran " + str(terminated_calls_.load()) + " times by the time the pool is terminated" + at);
  }
  const keel::ThreadPoolStats s = pool_->stats();
  NOTE("EXEC-4", s.threads == 0 && s.idle == 0 && s.active == 0 && s.queued == 0,
       "threads " + str(s.threads) + " idle " + str(s.idle) + " active " + str(s.active) + " queued " + str(s.queued) +
           at);
  std::lock_guard p(pending_mu_);
  std::set<std::uint64_t> held;
  for (const auto& t : held_) held.insert(t.id());
  std::lock_guard g(table_mu_);
  for (TaskRec* r : futs_) {
    if (!r->fut.done()) {
      NOTE("EXEC-4", held.count(r->seq) != 0,
           "task " + str(r->id) + " (seq " + str(r->seq) + ") is not final although the pool terminated" + at);
    }
  }
}

void World::dispose(keel::PendingTask& p, unsigned how) {
  const std::uint64_t seq = p.id();
  const int prio = p.priority();
  if (how == 0) {
    keel::PendingTask t(std::move(p));
    t_ctx = Ctx::pending_run;
    bool ran = false;
    try {
      ran = t.run();
    } catch (const std::exception& x) {
      NOTE("EXEC-4", false, std::string("PendingTask::run threw ") + x.what());
    }
    t_ctx = Ctx::script;
    pevents_.push_back({ran ? PendingEvent::ran_true : PendingEvent::ran_false, seq, prio});
  } else if (how == 1) {
    { keel::PendingTask t(std::move(p)); }
    pevents_.push_back({PendingEvent::dropped, seq, prio});
  } else {
    held_.push_back(std::move(p));
  }
}

// ---------------------------------------------------------------- operations

void World::op_submit(ThreadState& ts, const Op& op, bool with_priority) {
  auto owned = std::make_unique<TaskRec>();
  TaskRec& r = *owned;
  r.kind = static_cast<Kind>(op.a % 6);
  r.has_priority = with_priority;
  r.priority = with_priority ? static_cast<int>(op.b % 7) - 3 : 0;
  r.sleep_us = 1 + op.c % 40;
  {
    std::lock_guard g(table_mu_);
    r.id = recs_.size();
    recs_.push_back(std::move(owned));
  }
  ++direct_calls_;
  const bool after_shutdown = shutdown_done_.load();
  const bool wrong_queue = with_priority && cfg.queue != keel::QueueKind::priority;
  std::optional<keel::ThreadPoolStats> pre;
  if (single) pre = pool_->stats();

  World* self = this;
  TaskRec* rp = &r;
  auto plain = [self, rp] { return self->run_body(*rp, std::stop_token{}); };
  auto stoppable = [self, rp](std::stop_token t) { return self->run_body(*rp, t); };
  std::string other;
  t_ctx = Ctx::submitting;
  t_submitting = &r;
  try {
    if (r.kind == Kind::stop) {
      r.fut = with_priority ? pool_->submit(keel::Priority{r.priority}, stoppable) : pool_->submit(stoppable);
    } else {
      r.fut = with_priority ? pool_->submit(keel::Priority{r.priority}, plain) : pool_->submit(plain);
    }
    r.outcome = Outcome::future;
  } catch (const keel::ValueError&) {
    r.outcome = Outcome::value_error;
  } catch (const keel::BrokenThreadPool&) {
    r.outcome = Outcome::broken;
  } catch (const keel::RejectedError& e) {
    r.outcome = Outcome::rejected;
    r.reason = e.reason();
  } catch (const std::exception& e) {
    r.outcome = Outcome::other;
    other = e.what();
  }
  t_submitting = nullptr;
  t_ctx = Ctx::script;
  bool ran_here = false, returned_cancelled = false;
  if (r.outcome == Outcome::future) {
    ran_here = r.runs.load() != 0 && r.run_ctx.load() == static_cast<int>(Ctx::submitting);
    returned_cancelled = r.fut.cancelled();
    r.seq = keel::detail::task_of(r.fut)->seq;
    // Race the worker that starts or completes the task: cancel racing start
    // (EXEC-2), a callback or a stop request racing completion (EXEC-7).
    if (const unsigned race = op.d & 3; race != 0) {
      for (unsigned i = 0; i < (op.d >> 2) * 4u; ++i) keel::platform::spin_pause();
      if (race == 1) {
        op_cancel(r);
      } else if (race == 2) {
        op_callback(ts, r, op);
      } else {
        op_request_stop(r);
      }
    }
  }

  const std::string who = "submit of task " + str(r.id) + ": ";
  NOTE("EXEC-3", r.outcome != Outcome::other, who + "unexpected exception " + other);
  NOTE("EXEC-3", (r.outcome == Outcome::value_error) == wrong_queue,
       who + (wrong_queue ? "a Priority on a non-priority queue was not a ValueError"
                          : "ValueError without a Priority on a non-priority queue"));
  bool discarded = false;
  switch (r.outcome) {
    case Outcome::value_error:
      ++value_errors_;
      break;
    case Outcome::broken:
      ++broken_direct_;
      NOTE("EXEC-3", init_failures_.load() != 0 && pool_->is_broken(),
           who + "BrokenThreadPool from a pool whose initializer never failed");
      break;
    case Outcome::rejected:
      ++rejected_direct_;
      switch (r.reason) {
        case keel::RejectedError::Reason::shutdown:
          NOTE("EXEC-3", pool_->is_shutdown(), who + "RejectedError(shutdown) from a running pool");
          break;
        case keel::RejectedError::Reason::saturated:
          NOTE("EXEC-3", cfg.policy == keel::RejectPolicy::abort, who + "RejectedError(saturated) without abort");
          break;
        case keel::RejectedError::Reason::timed_out:
          NOTE("EXEC-3", cfg.policy == keel::RejectPolicy::block, who + "RejectedError(timed_out) without block");
          break;
        case keel::RejectedError::Reason::no_thread:
          NOTE("EXEC-3", cfg.factory_mode == 2, who + "RejectedError(no_thread) although threads always start");
          break;
      }
      if (after_shutdown) {
        NOTE("EXEC-3", r.reason == keel::RejectedError::Reason::shutdown,
             who + "refused after shutdown with another reason than shutdown");
      }
      break;
    case Outcome::future: {
      NOTE("EXEC-3", !after_shutdown, who + "a future after shutdown() returned");
      if (ran_here) {
        ++caller_direct_;
        NOTE("EXEC-3", r.fut.done(), who + "ran by the caller, but its future is not final");
      } else if (returned_cancelled) {
        // One script thread: nobody else can have cancelled it.
        if (single) {
          NOTE("EXEC-3", cfg.discards(), who + "returned a cancelled future without a discard policy");
          discarded = true;
          ++discarded_known_;
        }
      }
      break;
    }
    default:
      break;
  }
  if (r.outcome == Outcome::future) {
    std::lock_guard g(table_mu_);
    futs_.push_back(&r);
  }
  if (pre) {
    const keel::ThreadPoolStats post = pool_->stats();
    check_stats(post, &ts, "after submit");
    const std::uint64_t ds = post.submitted - pre->submitted, dr = post.rejected - pre->rejected;
    bool ok;
    if (r.outcome == Outcome::value_error || r.outcome == Outcome::broken || r.outcome == Outcome::other) {
      ok = ds == 0 && dr == 0;
    } else if (r.outcome == Outcome::rejected || ran_here || discarded) {
      ok = ds == 0 && dr == 1;
    } else if (cfg.policy == keel::RejectPolicy::discard_oldest) {
      ok = ds == 1 && dr <= 1;  // a victim is the rejection
    } else {
      ok = ds == 1 && dr == 0;
    }
    NOTE("EXEC-8", ok,
         who + "outcome " + str(static_cast<unsigned>(r.outcome)) + (ran_here ? " (caller ran)" : "") +
             (discarded ? " (discarded)" : "") + " moved submitted by " + str(ds) + " and rejected by " + str(dr));
  }
}

void World::op_cancel(TaskRec& r) {
  const int runs_before = r.runs.load();
  const bool won = r.fut.cancel();
  if (!won) return;
  const int wins = ++r.cancel_wins;
  NOTE("EXEC-2", wins == 1, "two cancel() calls on task " + str(r.id) + " returned true");
  NOTE("EXEC-2", runs_before == 0 && r.runs.load() == 0, "cancel() of task " + str(r.id) + " won after it ran");
  NOTE("EXEC-1", r.fut.cancelled(), "cancel() of task " + str(r.id) + " won, but it is not cancelled");
}

void World::op_release(TaskRec& r) {
  std::lock_guard g(gate_mu_);
  r.open = true;
  gate_cv_.notify_all();
}

void World::op_callback(ThreadState& ts, TaskRec& r, const Op& op) {
  auto owned = std::make_unique<CbRec>();
  CbRec& cb = *owned;
  cb.task = r.id;
  cb.thread = ts.index;
  cb.throws = (op.b & 3) == 0;
  {
    std::lock_guard g(table_mu_);
    cbs_.push_back(std::move(owned));
  }
  const bool was_done = r.fut.done();
  World* self = this;
  CbRec* cp = &cb;
  t_adding = &cb;
  r.fut.add_done_callback([self, cp](const Fut& f) { self->on_callback(*cp, f); });
  t_adding = nullptr;
  if (was_done) {
    NOTE("EXEC-7", cb.fired.load() == 1 && cb.fired_inline.load(),
         "a callback added to the final future of task " + str(r.id) + " did not run at once in the caller");
  }
}

void World::op_request_stop(TaskRec& r) {
  const bool made = r.fut.request_stop();
  if (r.kind != Kind::stop) {
    NOTE("EXEC-4", !made && !r.fut.stop_requested(), "request_stop() took effect on a task without a stop token");
  } else {
    NOTE("EXEC-4", r.fut.stop_requested(), "stop_requested() is false after request_stop()");
  }
}

void World::op_result(TaskRec& r, const Op& op) {
  static constexpr std::chrono::nanoseconds timeouts[] = {0ns, 50us, 200us};
  const auto t = timeouts[op.b % 3];
  const bool was_done = r.fut.done();
  try {
    if (op.c & 1) {
      (void)r.fut.exception(t);
    } else {
      (void)r.fut.result(t);
    }
  } catch (const keel::TimeoutError&) {
    NOTE("EXEC-1", !was_done, "result()/exception() of the final future of task " + str(r.id) + " timed out");
    return;
  } catch (...) {
  }
  NOTE("EXEC-1", r.fut.done(), "result()/exception() of task " + str(r.id) + " returned before it was final");
  check_outcome(r, "after result()", true);
}

void World::op_control(const Op& op) {
  std::lock_guard g(ctl_mu_);
  const unsigned which = op.a % 4;
  bool threw = false;
  std::string other;
  bool valid = true;
  try {
    switch (which) {
      case 0: {
        const std::size_t n = op.b % 6;
        valid = n <= max_;
        pool_->set_core_threads(n);
        core_ = n;
        break;
      }
      case 1: {
        const std::size_t n = op.b % 6;
        valid = n >= 1 && n >= core_;
        if (valid && n > max_ever_.load()) max_ever_.store(n);  // before the pool may use it
        pool_->set_max_threads(n);
        max_ = n;
        break;
      }
      case 2: {
        static constexpr std::chrono::nanoseconds ds[] = {-1ns, 0ns, 1ms, 60s, 200us, -5s};
        const auto d = ds[op.b % 6];
        valid = d >= 0ns;
        pool_->set_keep_alive(d);
        break;
      }
      default:
        pool_->allow_core_timeout((op.b & 1) != 0);
        break;
    }
  } catch (const keel::ValueError&) {
    threw = true;
  } catch (const std::exception& e) {
    threw = true;
    other = e.what();
  }
  NOTE("SYNC-3", other.empty(), "a set_* control threw " + other);
  NOTE("SYNC-3", threw != valid,
       std::string("control ") + str(which) + " with argument " + str(op.b) +
           (valid ? " was refused" : " was accepted although invalid"));
  const std::size_t c = pool_->core_threads(), m = pool_->max_threads();
  NOTE("SYNC-3", c == core_ && m == max_,
       "core/max " + str(c) + "/" + str(m) + " after a control, expected " + str(core_) + "/" + str(max_));
}

void World::op_prestart(const Op& op) {
  const bool closed = shutdown_done_.load() || pool_->is_broken();
  std::size_t n;
  if (op.a & 1) {
    n = pool_->prestart_core_threads();
  } else {
    n = pool_->prestart_core_thread() ? 1 : 0;
  }
  NOTE("EXEC-4", !closed || n == 0, "prestart started " + str(n) + " threads in a shut down or broken pool");
}

void World::op_map(const Op& op) {
  auto owned = std::make_unique<MapRec>();
  MapRec& m = *owned;
  m.n = 1 + op.a % 4;
  m.throw_mask = op.c & 15;
  m.sleep_mask = op.d & 15;
  {
    std::lock_guard g(table_mu_);
    m.id = maps_.size();
    maps_.push_back(std::move(owned));
  }
  ++map_ops_;
  static constexpr std::chrono::nanoseconds timeouts[] = {0ns, 0ns, 200us, 2ms};
  const unsigned tsel = (op.a >> 2) & 3;
  keel::MapOptions mo;
  if (tsel != 0) mo.timeout = timeouts[tsel];
  mo.lookahead = (op.a >> 4) % 3;
  bool can_wait = mo.timeout.has_value();
  if (!can_wait && single) {
    // Without a timeout, next() may wait only when nothing can hold a worker.
    std::lock_guard g(gate_mu_);
    can_wait = all_open_;
  }
  const int consume = can_wait ? op.b % (m.n + 2) : 0;
  World* self = this;
  MapRec* mp = &m;
  auto fn = [self, mp](int i) { return self->map_body(*mp, i); };
  const CountingRange range{m.n, &map_derefs_};
  std::vector<std::uint64_t> got;
  std::string error;
  bool ended = false;
  t_ctx = Ctx::submitting;
  try {
    auto results = pool_->map(fn, range, mo);
    for (int k = 0; k < consume; ++k) {
      auto v = results.next();
      if (!v) {
        ended = true;
        break;
      }
      got.push_back(*v);
    }
  } catch (const MapError& e) {
    // The input whose error ends the sequence must be the next one, a
    // throwing one that ran. (MapResults dropped its Future before this
    // handler runs, so a worker may free the exception object meanwhile;
    // libstdc++'s refcount orders that free, and tools/tsan.supp tells TSan,
    // which cannot see the uninstrumented refcount.)
    const std::size_t i = got.size();
    NOTE(
        "EXEC-1", e.index >= 0 && static_cast<std::size_t>(e.index) == i,
        "map " + str(m.id) + " raised the error of input " + std::to_string(e.index) + " after " + str(i) + " results");
    NOTE("EXEC-1", i < 4 && ((m.throw_mask >> i) & 1) && m.runs[i].load() == 1,
         "map " + str(m.id) + " raised a task error after " + str(i) + " results, but input " + str(i) +
             " does not throw or did not run");
    error = "task";
  } catch (const keel::TimeoutError&) {
    NOTE("EXEC-1", mo.timeout.has_value(), "map without a timeout threw TimeoutError");
    error = "timeout";
  } catch (const keel::RejectedError& e) {
    ++map_rejected_;
    NOTE("EXEC-3", e.reason() != keel::RejectedError::Reason::shutdown || pool_->is_shutdown(),
         "map refused with RejectedError(shutdown) by a running pool");
    error = "rejected";
  } catch (const keel::BrokenThreadPool&) {
    ++map_broken_;
    NOTE("EXEC-3", init_failures_.load() != 0, "map got BrokenThreadPool although no initializer failed");
    error = "broken";
  } catch (const keel::CancelledError&) {
    NOTE("EXEC-1", cfg.discards() || pool_->is_shutdown(), "a map task was cancelled without discard or shutdown");
    error = "cancelled";
  } catch (const HookRefused&) {
    NOTE("EXEC-1", cfg.before && cfg.refuse_mod != 0, "a map task carries a refusal no hook made");
    error = "refused";
  } catch (const std::exception& e) {
    NOTE("EXEC-1", false, std::string("map threw an unexpected exception: ") + e.what());
    error = "other";
  }
  t_ctx = Ctx::script;
  for (std::size_t i = 0; i < got.size(); ++i) {
    NOTE("EXEC-1", got[i] == m.value(static_cast<int>(i)),
         "map " + str(m.id) + " result " + str(i) + " is " + str(got[i]) + ", expected " +
             str(m.value(static_cast<int>(i))));
  }
  if (ended) {
    NOTE("EXEC-1", got.size() == static_cast<std::size_t>(m.n),
         "map " + str(m.id) + " ended after " + str(got.size()) + " of " + str(static_cast<std::uint64_t>(m.n)) +
             " results");
  }
}

void World::op_wait(const Op& op, bool as_completed) {
  const std::size_t want = 1 + op.a % 4;
  const std::uint8_t picks[] = {op.b, op.c, op.d, static_cast<std::uint8_t>(op.a >> 2)};
  std::vector<Fut> fs;
  for (std::size_t i = 0; i < want; ++i) {
    if (TaskRec* r = pick(picks[i])) fs.push_back(r->fut);
  }
  if (fs.empty()) return;
  std::set<const void*> distinct;
  std::vector<const void*> pre_done;  // distinct, in input order
  for (const auto& f : fs) {
    const void* s = keel::detail::state_of(f);
    if (distinct.insert(s).second && f.done()) pre_done.push_back(s);
  }
  static constexpr std::chrono::nanoseconds timeouts[] = {0ns, 100us, 1ms};
  const auto timeout = timeouts[(op.a >> 4) % 3];
  const auto t0 = SteadyClock::now();
  if (!as_completed) {
    const auto when = static_cast<keel::ReturnWhen>((op.a >> 6) % 3);
    keel::DoneAndNotDone<std::uint64_t> res;
    try {
      res = keel::wait(fs, timeout, when);
    } catch (const std::exception& e) {
      NOTE("EXEC-7", false, std::string("wait() threw ") + e.what());
      return;
    }
    const bool early = SteadyClock::now() - t0 < timeout;
    NOTE("EXEC-7", res.done.size() + res.not_done.size() == distinct.size(),
         "wait() split " + str(distinct.size()) + " futures into " + str(res.done.size()) + " + " +
             str(res.not_done.size()));
    std::set<const void*> done;
    bool exc = false;
    for (const auto& f : res.done) {
      NOTE("EXEC-7", f.done(), "wait() put a future that is not final among the done ones");
      done.insert(keel::detail::state_of(f));
      if (f.status() == keel::FutureStatus::finished && f.exception(0ns) != nullptr) exc = true;
    }
    for (const void* s : pre_done) NOTE("EXEC-7", done.count(s) != 0, "wait() did not report a future final before");
    if (early) {
      const bool holds = when == keel::ReturnWhen::all_completed     ? res.not_done.empty()
                         : when == keel::ReturnWhen::first_completed ? !res.done.empty()
                                                                     : exc || res.not_done.empty();
      NOTE("EXEC-7", holds,
           "wait() returned before its timeout without its condition " + str(static_cast<unsigned>(when)));
    }
    return;
  }
  std::vector<const void*> order;
  bool timed_out = false;
  const std::size_t limit = (op.b & 1) ? distinct.size() : op.c % (distinct.size() + 1);
  try {
    auto seq = keel::as_completed(fs, timeout);
    while (order.size() < limit) {
      auto f = seq.next();
      if (!f) break;
      NOTE("EXEC-7", f->done(), "as_completed yielded a future that is not final");
      order.push_back(keel::detail::state_of(*f));
    }
    if (order.size() == distinct.size()) NOTE("EXEC-7", !seq.next(), "as_completed yielded more than its futures");
  } catch (const keel::TimeoutError&) {
    timed_out = true;
  } catch (const std::exception& e) {
    NOTE("EXEC-7", false, std::string("as_completed threw ") + e.what());
  }
  std::set<const void*> seen;
  for (const void* s : order) {
    NOTE("EXEC-7", distinct.count(s) != 0 && seen.insert(s).second,
         "as_completed yielded a future twice or a stranger");
  }
  if (timed_out) {
    NOTE("EXEC-7", order.size() >= std::min(limit, pre_done.size()),
         "as_completed timed out before yielding the " + str(pre_done.size()) + " futures final before the call");
  }
  // Those final before the call come first, in input order among themselves.
  std::size_t next = 0;
  for (const void* s : order) {
    auto it = std::find(pre_done.begin(), pre_done.end(), s);
    if (it == pre_done.end()) continue;
    const auto pos = static_cast<std::size_t>(it - pre_done.begin());
    NOTE("EXEC-7", pos == next, "as_completed yielded the futures final before the call out of input order");
    next = pos + 1;
  }
}

void World::op_shutdown(const Op& op) {
  const bool wait = (op.a & 1) != 0, cancel = (op.a & 2) != 0;
  if (wait) open_all();
  const keel::ThreadPoolStats pre = pool_->stats();
  try {
    pool_->shutdown({.wait = wait, .cancel_futures = cancel});
  } catch (const std::exception& e) {
    NOTE("EXEC-4", false, std::string("shutdown threw ") + e.what());
  }
  const std::uint64_t after = ++clock_;
  shutdown_done_.store(true);
  NOTE("EXEC-3", pool_->is_shutdown(), "is_shutdown() is false after shutdown()");
  if (cancel) {
    std::lock_guard g(log_mu_);
    bounds_.push_back({after, single ? pre.threads : max_ever_.load(), "shutdown(cancel_futures)"});
  }
  if (wait) check_terminated("after shutdown(wait)");
}

void World::op_shutdown_now(const Op& op) {
  std::lock_guard p(pending_mu_);
  const keel::ThreadPoolStats pre = pool_->stats();
  const std::uint64_t before = ++clock_;
  std::vector<keel::PendingTask> list;
  try {
    list = pool_->shutdown_now();
  } catch (const std::exception& e) {
    NOTE("EXEC-4", false, std::string("shutdown_now threw ") + e.what());
  }
  const std::uint64_t after = ++clock_;
  shutdown_done_.store(true);
  {
    std::lock_guard g(log_mu_);
    bounds_.push_back({after, single ? pre.threads : max_ever_.load(), "shutdown_now"});
  }
  {
    // A stop-token task whose body ran across the whole call was the
    // worker's current task: it must have been asked to stop.
    std::lock_guard g(table_mu_);
    for (TaskRec* r : futs_) {
      if (r->kind != Kind::stop || r->run_ctx.load() != static_cast<int>(Ctx::worker)) continue;
      const std::uint64_t s = r->start_clock.load(), e = r->end_clock.load();
      if (s != 0 && s < before && (e == 0 || e > after)) {
        NOTE("EXEC-4", r->fut.stop_requested(), "shutdown_now did not ask running task " + str(r->id) + " to stop");
      }
    }
  }
  for (auto& t : list) {
    const std::uint64_t seq = t.id();
    NOTE("EXEC-4", seq != 0 && handed_back_.insert(seq).second,
         "shutdown_now handed back seq " + str(seq) + " twice (or an empty task)");
    pevents_.push_back({PendingEvent::handed, seq, t.priority()});
    const unsigned how = op.a % 4 == 3 ? (op.b >> (seq % 4 * 2)) % 3 : op.a % 4;
    dispose(t, how);
  }
  NOTE("EXEC-3", pool_->is_shutdown(), "is_shutdown() is false after shutdown_now()");
}

void World::op_pending(const Op& op) {
  std::lock_guard p(pending_mu_);
  if (held_.empty()) return;
  const std::size_t i = op.a % held_.size();
  const unsigned action = op.b % 3;
  if (action == 1) {
    const bool won = held_[i].cancel();
    if (won) pevents_.push_back({PendingEvent::cancel_won, held_[i].id(), held_[i].priority()});
    return;
  }
  keel::PendingTask t(std::move(held_[i]));
  held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
  dispose(t, action == 0 ? 0 : 1);
}

void World::op_await(const Op& op) {
  static constexpr std::chrono::nanoseconds timeouts[] = {0ns, 100us, 1ms};
  const bool known = shutdown_done_.load();
  bool term = false;
  try {
    term = pool_->await_termination(timeouts[op.a % 3]);
  } catch (const std::exception& e) {
    NOTE("EXEC-4", false, std::string("await_termination threw ") + e.what());
  }
  // Terminated and broken are sticky and imply shut down: read them first.
  const bool is_term = pool_->is_terminated(), is_broken = pool_->is_broken(), is_shut = pool_->is_shutdown();
  NOTE("EXEC-4", !term || is_term, "await_termination returned true, is_terminated() is false");
  NOTE("EXEC-4", !is_term || is_shut, "terminated but not shut down");
  NOTE("EXEC-4", !is_broken || is_shut, "broken but is_shutdown() is false");
  NOTE("EXEC-4", !known || is_shut, "is_shutdown() is false after shutdown returned");
  if (term) check_terminated("after await_termination");
}

void World::op_hint(const Op& op) {
  const unsigned n = 1 + op.b % 16;
  switch (op.a % 3) {
    case 0:
      for (unsigned i = 0; i < n; ++i) std::this_thread::yield();
      break;
    case 1:
      for (unsigned i = 0; i < n * 32; ++i) keel::platform::spin_pause();
      break;
    default:
      std::this_thread::sleep_for(std::chrono::microseconds(n * 12));
      break;
  }
}

void World::op_open(const Op& op) {
  if (op.a & 1) {
    open_all();
    return;
  }
  std::lock_guard t(table_mu_);
  std::lock_guard g(gate_mu_);
  for (TaskRec* r : futs_) r->open = true;
  gate_cv_.notify_all();
}

void World::exec(ThreadState& ts, const Op& op) {
  switch (op.code) {
    case 0:
    case 1:
    case 2:
      op_submit(ts, op, false);
      return;
    case 3:
      op_submit(ts, op, true);
      return;
    case 9:
    case 10:
    case 11:
    case 12:
      op_control(op);
      return;
    case 13:
      op_prestart(op);
      return;
    case 14:
      op_map(op);
      return;
    case 15:
      op_wait(op, false);
      return;
    case 16:
      op_wait(op, true);
      return;
    case 17:
      check_stats(pool_->stats(), &ts, "stats op");
      return;
    case 18:
      op_shutdown(op);
      return;
    case 19:
      op_shutdown_now(op);
      return;
    case 20:
      op_pending(op);
      return;
    case 21:
      op_await(op);
      return;
    case 22:
      op_hint(op);
      return;
    case 23:
      op_open(op);
      return;
    default:
      break;
  }
  TaskRec* r = pick(op.a);
  if (r == nullptr) return;
  switch (op.code) {
    case 4:
      op_cancel(*r);
      break;
    case 5:
      op_release(*r);
      break;
    case 6:
      op_callback(ts, *r, op);
      break;
    case 7:
      op_request_stop(*r);
      break;
    default:
      op_result(*r, op);
      break;
  }
}

void World::run_ops(ThreadState& ts, const std::vector<Op>& ops) {
  for (const Op& op : ops) exec(ts, op);
}

// ---------------------------------------------------------------- the run

void World::run(std::vector<std::vector<Op>>& script) {
  keel::set_error_reporter([this](std::string_view where, std::exception_ptr) {
    std::lock_guard g(log_mu_);
    ++reports_[std::string(where)];
  });
  try {
    pool_ = std::make_unique<keel::ThreadPoolExecutor>(options());
  } catch (const keel::ValueError&) {
    NOTE("SYNC-3", cfg.invalid(), "a valid configuration was refused");
  }
  if (!pool_) {
    keel::set_error_reporter(nullptr);
    return;
  }
  NOTE("SYNC-3", !cfg.invalid(), "an invalid configuration was accepted");
  core_ = pool_->core_threads();
  max_ = pool_->max_threads();
  max_ever_.store(max_);
  NOTE("SYNC-3", max_ == cfg.max && core_ == cfg.core.value_or(cfg.max), "the pool does not report its configuration");

  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  std::vector<ThreadState> states(cfg.nthreads);
  for (std::size_t t = 0; t < cfg.nthreads; ++t) states[t].index = t;
  for (std::size_t t = 1; t < cfg.nthreads; ++t) {
    threads.emplace_back([this, t, &go, &script, &states] {
      t_ctx = Ctx::script;
      while (!go.load()) std::this_thread::yield();
      run_ops(states[t], script[t]);
      t_ctx = Ctx::worker;
    });
  }
  t_ctx = Ctx::script;
  go.store(true);
  run_ops(states[0], script[0]);
  for (auto& th : threads) th.join();

  // The end: open every gate, settle the held PendingTasks, terminate.
  open_all();
  const unsigned mode = cfg.end_mode;
  {
    std::lock_guard p(pending_mu_);
    std::vector<keel::PendingTask> held(std::move(held_));
    held_.clear();
    for (auto& t : held) dispose(t, mode & 1);
  }
  bool have_stats = true;
  keel::ThreadPoolStats st;
  switch (mode) {
    case 0:
    case 7:
      pool_->shutdown({.wait = true});
      break;
    case 1:
      pool_->shutdown({.wait = true, .cancel_futures = true});
      break;
    case 2:
    case 6:
      pool_->shutdown({.wait = false, .cancel_futures = mode == 6});
      if (!pool_->await_termination(kSafetyBound)) {
        NOTE("EXEC-5", false, "the pool did not terminate 10 s after every gate opened: stranded work");
        // Leave the stuck pool alive rather than hang in its destructor.
        (void)pool_.release();
        stuck_ = true;
        return;
      }
      pool_->shutdown({.wait = true});
      break;
    case 3:
    case 4: {
      Op op;
      op.a = mode == 3 ? 0 : 1;
      op_shutdown_now(op);
      pool_->shutdown({.wait = true});
      break;
    }
    default:
      pool_.reset();
      have_stats = false;
      break;
  }
  shutdown_done_.store(true);
  if (have_stats) {
    check_terminated("at the end");
    st = pool_->stats();
    check_stats(st, nullptr, "at the end");
  }
  final_checks(have_stats, st);
  pool_.reset();
  keel::set_error_reporter(nullptr);
  t_ctx = Ctx::worker;
}

void World::final_checks(bool have_stats, const keel::ThreadPoolStats& st) {
  std::lock_guard p(pending_mu_);
  std::lock_guard t(table_mu_);
  std::lock_guard l(log_mu_);
  std::unordered_map<std::uint64_t, TaskRec*> by_seq;
  for (TaskRec* r : futs_) {
    check_outcome(*r, "at the end", true);
    if (r->seq != 0) by_seq[r->seq] = r;
  }
  NOTE("EXEC-4", worker_running_.load() == 0, "task bodies still run on workers at the end");

  // PendingTasks: never-started tasks, each resolved as the interpreter chose.
  for (const PendingEvent& e : pevents_) {
    auto it = by_seq.find(e.seq);
    if (it == by_seq.end()) {
      NOTE("EXEC-4", map_ops_.load() != 0, "shutdown_now handed back seq " + str(e.seq) + ", which no submit returned");
      continue;
    }
    TaskRec& r = *it->second;
    const std::string who = "PendingTask of task " + str(r.id) + " (seq " + str(e.seq) + "): ";
    switch (e.kind) {
      case PendingEvent::handed:
        NOTE("EXEC-4", r.run_ctx.load() != static_cast<int>(Ctx::worker), who + "it also ran on a worker");
        NOTE("EXEC-4", e.priority == r.priority, who + "priority " + str(static_cast<std::uint64_t>(e.priority)));
        break;
      case PendingEvent::ran_true:
        NOTE("EXEC-4", r.runs.load() == 1 && r.run_ctx.load() == static_cast<int>(Ctx::pending_run),
             who + "run() returned true, but the body did not run there once");
        break;
      case PendingEvent::ran_false:
      case PendingEvent::dropped:
        NOTE("EXEC-4", r.fut.cancelled(), who + "not run, yet its future is not cancelled");
        break;
      case PendingEvent::cancel_won:
        NOTE("EXEC-2", ++r.cancel_wins == 1, who + "PendingTask::cancel() won after another cancel() won");
        break;
    }
  }
  for (TaskRec* r : futs_) {
    NOTE("EXEC-2", r->cancel_wins.load() <= 1 && (r->cancel_wins.load() == 0 || r->runs.load() == 0),
         "task " + str(r->id) + ": a won cancel() and a run, or two won cancels");
  }

  // Hooks: one before_task per worker start, never twice for one task, with its priority.
  std::set<std::uint64_t> started;
  for (const auto& [seq, prio] : before_log_) {
    NOTE("EXEC-2", started.insert(seq).second, "before_task saw seq " + str(seq) + " twice");
    auto it = by_seq.find(seq);
    if (it == by_seq.end()) continue;
    NOTE("EXEC-2",
         it->second->run_ctx.load() != static_cast<int>(Ctx::pending_run) &&
             it->second->run_ctx.load() != static_cast<int>(Ctx::submitting),
         "task " + str(it->second->id) + " started on a worker and ran in a script thread");
    NOTE("EXEC-8", prio == it->second->priority, "before_task was told the wrong priority of seq " + str(seq));
  }
  const std::uint64_t wb = worker_bodies_.load();
  if (cfg.before) {
    NOTE("EXEC-8", before_calls_.load() == wb + refusals_.load(),
         "before_task ran " + str(before_calls_.load()) + " times for " + str(wb) + " worker runs and " +
             str(refusals_.load()) + " refusals");
  }
  if (cfg.after) {
    NOTE("EXEC-8", after_calls_.load() == wb,
         "after_task ran " + str(after_calls_.load()) + " times for " + str(wb) + " worker runs");
    for (const auto& [seq, err] : after_log_) {
      auto it = by_seq.find(seq);
      if (it == by_seq.end()) continue;
      NOTE("EXEC-8", err == it->second->throws(), "after_task got the wrong error state for seq " + str(seq));
    }
  }
  if (cfg.terminated) {
    NOTE("EXEC-4", terminated_calls_.load() == 1, "on_terminated ran " + str(terminated_calls_.load()) + " times");
  }

  // EXEC-7: every callback exactly once; one thread's callbacks fired from the list in the order it added them.
  // cbs_ holds each thread's callbacks in the order it added them.
  std::map<std::pair<std::size_t, std::size_t>, std::uint64_t> last;  // (task, thread) -> stamp
  for (const auto& cb : cbs_) {
    NOTE("EXEC-7", cb->fired.load() == 1,
         "a done callback of task " + str(cb->task) + " ran " + str(static_cast<std::uint64_t>(cb->fired.load())) +
             " times");
    if (cb->fired_inline.load()) continue;
    std::uint64_t& stamp = last[{cb->task, cb->thread}];
    NOTE("EXEC-7", stamp == 0 || cb->stamp.load() > stamp,
         "done callbacks of task " + str(cb->task) + " ran out of the order they were added");
    stamp = cb->stamp.load();
  }
  const auto reported = [&](const char* where) {
    auto it = reports_.find(where);
    return it == reports_.end() ? std::uint64_t{0} : it->second;
  };
  NOTE("EXEC-7", reported("done callback") == cb_throws_fired_.load(),
       str(reported("done callback")) + " callback errors reported for " + str(cb_throws_fired_.load()) + " thrown");
  NOTE("EXEC-7", reported("after_task hook") == after_throws_.load(),
       str(reported("after_task hook")) + " after_task errors reported for " + str(after_throws_.load()) + " thrown");
  NOTE("EXEC-7", reported("on_terminated hook") == terminated_throws_.load(),
       str(reported("on_terminated hook")) + " on_terminated errors reported for " + str(terminated_throws_.load()));

  // EXEC-4: after cancel_futures/shutdown_now, only tasks already handed to a worker start there.
  for (const StartBound& b : bounds_) {
    const auto n = static_cast<std::size_t>(
        std::count_if(worker_starts_.begin(), worker_starts_.end(), [&](std::uint64_t c) { return c > b.after; }));
    NOTE("EXEC-4", n <= b.bound,
         str(n) + " tasks started on workers after " + b.what + " returned, with " + str(b.bound) + " workers");
  }

  NOTE("EXEC-6", max_running_.load() <= max_ever_.load(),
       str(max_running_.load()) + " bodies ran at once, above max_threads " + str(max_ever_.load()));
  if (init_failures_.load() != 0) {
    NOTE("EXEC-1", !have_stats || pool_->is_broken(), "an initializer failed but the pool is not broken");
  }
  if (!have_stats) return;

  // EXEC-8 at quiescence.
  const std::uint64_t calls = direct_calls_.load() + map_derefs_.load();
  const std::uint64_t refused = value_errors_.load() + broken_direct_.load();
  const std::uint64_t lo = calls - refused - map_broken_.load(), hi = calls - refused;
  std::uint64_t victims = 0;
  if (cfg.policy == keel::RejectPolicy::discard_oldest) {
    for (TaskRec* r : futs_) victims += r->fut.cancelled() ? 1 : 0;
    victims += map_derefs_.load();
  }
  const std::uint64_t sum = st.submitted + st.rejected;
  NOTE("EXEC-8", sum >= lo && sum <= hi + victims,
       "submitted " + str(st.submitted) + " + rejected " + str(st.rejected) + " outside [" + str(lo) + ", " +
           str(hi + victims) + "] for " + str(calls) + " submit calls");
  NOTE("EXEC-8", st.completed == wb, "completed " + str(st.completed) + ", workers ran " + str(wb) + " bodies");
  const std::uint64_t known_rejections = rejected_direct_.load() + map_rejected_.load() + caller_bodies_.load();
  if (cfg.discards()) {
    NOTE("EXEC-8", st.rejected >= known_rejections + discarded_known_.load(),
         "rejected " + str(st.rejected) + " below the " + str(known_rejections + discarded_known_.load()) +
             " refusals, caller runs and discards seen");
  } else {
    NOTE("EXEC-8", st.rejected == known_rejections,
         "rejected " + str(st.rejected) + ", but " + str(known_rejections) + " refusals and caller runs were seen");
  }
  const std::uint64_t worker_starts = cfg.before ? before_calls_.load() : wb;
  NOTE("EXEC-8", st.submitted >= worker_starts,
       "submitted " + str(st.submitted) + " below the " + str(worker_starts) + " tasks workers started");
  if (wb != 0) NOTE("EXEC-8", st.largest >= 1, "workers ran tasks but largest is 0");
}

void World::report() {
  std::lock_guard g(v_mu_);
  if (violations_.empty()) return;
  std::string all;
  for (const auto& v : violations_) all += "\n  [" + v.inv + " line " + std::to_string(v.line) + "] " + v.what;
  const Violation first = violations_.front();
  const std::string cfgs = "config: max " + str(cfg.max) + " core " + str(cfg.core.value_or(cfg.max)) + " threads " +
                           str(cfg.nthreads) + " queue " + str(static_cast<unsigned>(cfg.queue)) + " cap " +
                           str(cfg.capacity) + " policy " + str(static_cast<unsigned>(cfg.policy)) + " end " +
                           str(cfg.end_mode);
  KEEL_FUZZ_CHECK(first.inv.c_str(), false, first.what + " (" + cfgs + "); all:" + all);
}

#undef NOTE

Config parse_config(keel::fuzz::Input& in) {
  Config c;
  const std::uint8_t a = in.byte(), b = in.byte(), p = in.byte(), h = in.byte(), f = in.byte();
  c.max = 1 + (a & 3);
  const unsigned core = (a >> 2) & 7;
  if (core <= 4) {
    c.core = std::min<std::size_t>(core, c.max);
  } else if (core == 7) {
    c.core = c.max + 1;  // invalid: ValueError at construction
  }
  c.nthreads = 1 + ((a >> 5) % 3);
  c.queue = static_cast<keel::QueueKind>(b & 3);
  c.capacity = (b >> 2) & 3;
  if (c.queue == keel::QueueKind::handoff) {
    c.capacity = 0;
    c.bad_capacity = ((b >> 2) & 15) == 15;
  }
  static constexpr std::chrono::nanoseconds keep[] = {0ns, 1ms, 60s, 60s};
  c.keep_alive = keep[(b >> 4) & 3];
  c.core_timeout = (b & 0x40) != 0;
  c.policy = static_cast<keel::RejectPolicy>((p & 7) % 5);
  static constexpr std::chrono::nanoseconds block[] = {0ns, 100us, 1ms, 2ms};
  c.block_timeout = block[(p >> 3) & 3];
  c.end_mode = p >> 5;
  c.before = h & 1;
  c.after = (h >> 1) & 1;
  c.terminated = (h >> 2) & 1;
  c.after_throws = (h >> 3) & 1;
  c.terminated_throws = (h >> 4) & 1;
  c.refuse_mod = (h >> 5) == 0 ? 0 : (h >> 5) + 1;
  c.init_mode = f & 3;
  c.init_fail_at = 1 + ((f >> 2) & 3);
  c.factory_mode = (f >> 4) & 3;
  c.factory_k = 1 + (f >> 6);
  return c;
}

}  // namespace

KEEL_FUZZ_TARGET(executor_ops) {
  const Config cfg = parse_config(in);
  std::vector<std::vector<Op>> script(cfg.nthreads);
  for (std::size_t i = 0; i < kMaxOps && !in.empty(); ++i) {
    Op op;
    op.code = static_cast<std::uint8_t>(in.byte() % kOps);
    const std::size_t t = in.below(cfg.nthreads);
    op.a = in.byte();
    op.b = in.byte();
    op.c = in.byte();
    op.d = in.byte();
    script[t].push_back(op);
  }
  auto world = std::make_unique<World>(cfg);
  world->run(script);
  // A pool that never terminated still runs threads that use the World.
  World* w = world->stuck() ? world.release() : world.get();
  w->report();
}
