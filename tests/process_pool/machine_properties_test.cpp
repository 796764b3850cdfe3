// RapidCheck stateful test of keel::pool::Machine against a sequential model
// of the pool's contract.
//
// The test plays the driver and every worker process. Its World keeps what a
// driver can see from the actions alone: the tasks (queued in the parent's
// FIFO, or held by a worker, and whether each is final), the live workers
// (spawned, ready, closed, killed, the tasks sent to each in order) and the
// clock. Workers behave only as real ones can: a worker reports the result of
// the first task it holds (also after a Kill, as one written before the signal
// landed), dies at any moment with any exit code, and otherwise exits only
// when it was killed (-signal), failed its initializer (1) or was closed with
// nothing left to run (0). A faulty worker may report a task that is not its
// first (the machine must refuse it and kill the worker). A cancelled future
// is the StartGate's "no".
//
// Commands name their worker or task by a selector that is resolved against
// the World when the command runs (the n-th candidate, modulo their number),
// so every generated sequence is runnable and shrinks freely; the rc::state
// model only tracks whether the edge is closed to submissions, and a step
// count that lets the pool fill up before a shutdown is generated.
//
// Each action is checked as it comes out against what the event that produced
// it allows (a value only for the reporting worker's first task; lost only for
// a dying worker's first task, with its exit code, once its runs exceed the
// retries or while terminating; timed out only for a task whose clock ran
// out; cancelled only for queued tasks at shutdown(cancel_futures) or
// terminate, or for the dying worker's later tasks while terminating; sends
// only the parent queue's front task, to a ready worker that is neither
// closed nor killed, within depth and max_tasks_per_child, a timed task alone).
// Where the contract fixes the outcome the test predicts it: retry or lost,
// a replacement or BROKEN by the restart limit (the test keeps its own
// record of replacement times), timed-out heads, BROKEN on an initializer
// failure with every task resolved and every worker killed. After every
// command: the machine's counts agree with the World (queued, in flight, live
// and active workers), active workers equal the target while running or
// while work is queued during shutdown (a worker killed for a bad report
// excepted, until a tick or its exit replaces it), no idle worker is left
// open during a drained shutdown, next_deadline() is the earliest timed
// head. At the end the test shuts down, lets every worker finish and exit,
// and requires every task resolved exactly once, Terminated once, no worker
// left.
//
// Invariants: POOL-1, POOL-2, POOL-3, POOL-5, POOL-6 (proofs/INVARIANTS.md).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/process_pool/machine.hpp"

namespace {

using keel::pool::Action;
using keel::pool::Machine;
using keel::pool::MachineConfig;
using keel::pool::Nanos;
using keel::pool::Outcome;
using keel::pool::TaskId;
using keel::pool::WorkerId;
using Phase = Machine::Phase;

Nanos ms(long n) { return std::chrono::milliseconds(n); }

// ---------------------------------------------------------------- the World

struct SimTask {
  Nanos timeout{0};
  bool user_cancelled = false;  // its future was cancelled while it was pending
  bool started = false;         // the gate said yes
  int finals = 0;               // Resolve actions + gate refusals: must end at exactly 1
  Outcome outcome = Outcome::value;
  bool dropped = false;  // refused by the gate
  int runs = 0;          // times it was first in a worker that reported or died
  WorkerId at = 0;       // the live worker holding it, 0 while in the parent queue
  Nanos sent_at{0};
};

struct SimWorker {
  bool ready = false;
  bool closed = false;  // Close received: retiring or closing
  bool killed = false;
  int signal = 0;
  bool init_failed = false;
  std::deque<TaskId> tasks;  // sent and not yet reported, in order (a worker runs them in order)
  unsigned sent = 0;
  bool faulty = false;  // killed, while active, for reporting a task that was not its first
  bool active() const { return !closed && !killed; }
};

// What the event being processed allows the machine to do.
struct EventContext {
  enum Kind { submit, ready, result, exit, tick, shutdown, terminate, init_failed } kind = submit;
  TaskId value_task = 0;  // result: the reported task, if it is not final yet
  WorkerId dying = 0;     // exit
  int code = 0;
  TaskId dying_head = 0;
  std::set<TaskId> dying_rest;
  std::set<TaskId> timeouts;  // tick: heads whose clock ran out
};

class World;

class Gate final : public keel::pool::StartGate {
 public:
  explicit Gate(World& w) : w_(w) {}
  bool try_start(TaskId t) override;

 private:
  World& w_;
};

class World {
 public:
  explicit World(const MachineConfig& cfg) : cfg_(cfg), gate_(*this), m_(cfg, gate_) {
    ctx_.kind = EventContext::submit;
    m_.start(now_);
    settle();
    RC_ASSERT(live_.size() == cfg_.workers);
    check();
  }

  const MachineConfig& config() const { return cfg_; }
  const Machine& machine() const { return m_; }

  // ---- events

  void submit(Nanos timeout) {
    const TaskId id = static_cast<TaskId>(tasks_.size() + 1);
    const bool was_broken = m_.phase() == Phase::broken;
    SimTask t;
    t.timeout = timeout;
    tasks_.emplace(id, t);
    queue_.push_back(id);
    begin(EventContext::submit);
    m_.submit(id, timeout, now_);
    settle();
    if (was_broken) RC_ASSERT(tasks_[id].finals == 1 && tasks_[id].outcome == Outcome::broken);
    check();
  }

  // Cancels the future of a task that has not started; false if none.
  bool cancel(unsigned sel) {
    std::vector<TaskId> c;
    for (auto& [id, t] : tasks_) {
      if (!t.started && t.finals == 0 && !t.user_cancelled) c.push_back(id);
    }
    if (c.empty()) return false;
    tasks_[c[sel % c.size()]].user_cancelled = true;
    check();
    return true;
  }

  bool ready(unsigned sel) {
    const auto c = workers_where([](const SimWorker& w) { return !w.ready && !w.killed && !w.init_failed; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    SimWorker& w = live_[id];
    w.ready = true;
    begin(EventContext::ready);
    m_.worker_ready(id, now_);
    settle();
    if (w.active()) RC_ASSERT(m_.state_of(id) == Machine::WorkerState::ready);
    check();
    return true;
  }

  // The worker reports the first task it holds.
  bool result(unsigned sel) {
    const auto c = workers_where([](const SimWorker& w) { return !w.tasks.empty(); });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    SimWorker& w = live_[id];
    const TaskId head = w.tasks.front();
    w.tasks.pop_front();
    SimTask& t = tasks_[head];
    ++t.runs;
    t.at = 0;
    const bool was_final = t.finals != 0;
    begin(EventContext::result);
    ctx_.value_task = was_final ? 0 : head;
    RC_ASSERT(m_.result(id, head, now_));
    settle();
    if (!was_final) RC_ASSERT(t.finals == 1 && t.outcome == Outcome::value);
    check();
    return true;
  }

  // A faulty worker reports its second task, not its first: the machine must
  // refuse it (false), resolve nothing, and kill the worker.
  bool bad_result(unsigned sel) {
    const auto c = workers_where([](const SimWorker& w) { return w.tasks.size() >= 2 && !w.killed; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    SimWorker& w = live_[id];
    begin(EventContext::result);
    const bool broken = m_.phase() == Phase::broken;
    const bool was_active = w.active();
    RC_ASSERT(m_.result(id, w.tasks[1], now_) == broken);
    settle();
    if (!broken) {
      RC_ASSERT(w.killed && w.signal == 9);
      w.faulty = was_active;
    }
    check();
    return true;
  }

  // A worker that was told to go (killed, closed with nothing left) or whose
  // initializer failed exits with the status that implies.
  bool natural_exit(unsigned sel) {
    const auto c =
        workers_where([](const SimWorker& w) { return w.killed || w.init_failed || (w.closed && w.tasks.empty()); });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    const SimWorker& w = live_[id];
    exited(id, w.killed ? -w.signal : w.init_failed ? 1 : 0);
    return true;
  }

  // A live worker dies now, with any status; `busy`: one of those that hold
  // the most tasks (the deaths that matter most), if any holds one.
  bool crash(unsigned sel, int code, bool busy) {
    std::size_t most = 0;
    for (const auto& [id, w] : live_) most = std::max(most, w.tasks.size());
    auto c = workers_where([&](const SimWorker& w) { return busy && most > 0 && w.tasks.size() == most; });
    if (c.empty()) c = workers_where([](const SimWorker&) { return true; });
    if (c.empty()) return false;
    exited(c[sel % c.size()], code);
    return true;
  }

  void tick(Nanos dt) {
    now_ += dt;
    begin(EventContext::tick);
    std::set<WorkerId> to_kill;
    if (m_.phase() != Phase::broken) {
      for (auto& [id, w] : live_) {
        if (w.killed || w.tasks.empty()) continue;
        const SimTask& h = tasks_[w.tasks.front()];
        if (h.finals == 0 && h.timeout > Nanos::zero() && h.sent_at + h.timeout <= now_) {
          ctx_.timeouts.insert(w.tasks.front());
          to_kill.insert(id);
        }
      }
    }
    m_.tick(now_);
    settle();
    for (TaskId t : ctx_.timeouts) RC_ASSERT(tasks_[t].finals == 1 && tasks_[t].outcome == Outcome::timed_out);
    for (WorkerId id : to_kill) RC_ASSERT(live_[id].killed && live_[id].signal == 9);
    check();
  }

  void shutdown(bool cancel_futures) {
    closed_ = true;
    begin(EventContext::shutdown);
    const std::deque<TaskId> queued = queue_;
    m_.shutdown(cancel_futures, now_);
    settle();
    if (cancel_futures) {
      for (TaskId t : queued) RC_ASSERT(tasks_[t].finals == 1);
      RC_ASSERT(queue_.empty());
    }
    RC_ASSERT(m_.phase() != Phase::running);
    check();
  }

  void terminate(int signal) {
    closed_ = true;
    terminating_ = true;
    begin(EventContext::terminate);
    m_.terminate(signal, now_);
    settle();
    RC_ASSERT(queue_.empty());
    for (auto& [id, w] : live_) RC_ASSERT(w.killed);
    check();
  }

  bool init_failed(unsigned sel) {
    if (!cfg_.has_initializer) return false;
    const auto c = workers_where([](const SimWorker& w) { return !w.ready && !w.killed && !w.init_failed; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    live_[id].init_failed = true;
    begin(EventContext::init_failed);
    m_.init_failed(id, now_);
    settle();
    RC_ASSERT(m_.phase() == Phase::broken);  // POOL-5: at once
    check();
    return true;
  }

  // The end of a run: no more submissions; every worker runs what it holds
  // and exits as told, until the machine says Terminated.
  void drive_to_termination() {
    if (!closed_) shutdown(false);
    for (int step = 0; !m_.terminated(); ++step) {
      RC_ASSERT(step < 100000);
      if (natural_exit(0)) continue;
      if (result(0)) continue;
      if (ready(0)) continue;
      RC_FAIL("stuck: nothing left to do, but the machine has not terminated");
    }
    RC_ASSERT(terminated_ == 1);
    RC_ASSERT(live_.empty());
    RC_ASSERT(queue_.empty());
    for (auto& [id, t] : tasks_) {
      RC_ASSERT(t.finals == 1);  // POOL-1
      RC_ASSERT(t.runs <= 1 + static_cast<int>(cfg_.retries));
    }
    RC_ASSERT(m_.counters().resolved + m_.counters().cancelled - count_resolved_cancelled() == tasks_.size());
  }

  bool try_start(TaskId id) {
    auto it = tasks_.find(id);
    RC_ASSERT(it != tasks_.end());
    SimTask& t = it->second;
    RC_ASSERT(!t.started);     // asked once per task
    RC_ASSERT(t.finals == 0);  // never about a task that is final
    // FIFO: it is asked about when it comes to the front. The actions of the
    // current event are applied after it returns, so the tasks ahead of it in
    // the queue here are the ones this event is sending: all started.
    const auto pos = std::find(queue_.begin(), queue_.end(), id);
    RC_ASSERT(pos != queue_.end());
    RC_ASSERT(std::all_of(queue_.begin(), pos, [&](TaskId o) { return tasks_[o].started; }));
    if (t.user_cancelled) {
      t.finals = 1;
      t.dropped = true;
      queue_.erase(pos);
      return false;
    }
    t.started = true;
    return true;
  }

 private:
  template <class Pred>
  std::vector<WorkerId> workers_where(Pred p) const {
    std::vector<WorkerId> v;
    for (const auto& [id, w] : live_) {
      if (p(w)) v.push_back(id);
    }
    return v;
  }

  std::size_t count_resolved_cancelled() const {
    // counters().cancelled counts Resolve(cancelled) and gate refusals; the
    // refusals are the ones without a Resolve.
    std::size_t n = 0;
    for (const auto& [id, t] : tasks_) n += t.finals == 1 && t.outcome == Outcome::cancelled && !t.dropped ? 1 : 0;
    return n;
  }

  void begin(EventContext::Kind k) {
    ctx_ = EventContext{};
    ctx_.kind = k;
    phase_before_ = m_.phase();
  }

  unsigned sim_active() const {
    unsigned n = 0;
    for (const auto& [id, w] : live_) n += w.active() ? 1 : 0;
    return n;
  }

  void exited(WorkerId id, int code) {
    SimWorker w = live_[id];
    live_.erase(id);
    begin(EventContext::exit);
    ctx_.dying = id;
    ctx_.code = code;
    const bool broken_before = m_.phase() == Phase::broken;
    bool expect_break = false;
    bool expect_replacement = false;
    bool expect_lost = false;
    // The tasks it held, first one first: the first may have started.
    std::vector<TaskId> back_to_queue;
    if (!w.tasks.empty()) {
      ++tasks_[w.tasks.front()].runs;
      for (TaskId t : w.tasks) tasks_[t].at = 0;
    }
    if (!broken_before) {
      if (!w.ready && w.active() && !w.init_failed && cfg_.has_initializer) {
        expect_break = true;  // it died in its initializer
      } else {
        if (!w.tasks.empty()) {
          const TaskId head = w.tasks.front();
          SimTask& h = tasks_[head];
          if (h.finals == 0) {
            ctx_.dying_head = head;
            expect_lost = terminating_ || h.runs > static_cast<int>(cfg_.retries);
            if (!expect_lost) back_to_queue.push_back(head);
          } else {
            // A head already final (timed out) runs alone: nothing is behind it.
            RC_ASSERT(w.tasks.size() == 1);
          }
          for (std::size_t i = 1; i < w.tasks.size(); ++i) {
            RC_ASSERT(tasks_[w.tasks[i]].finals == 0);
            if (terminating_) {
              ctx_.dying_rest.insert(w.tasks[i]);
            } else {
              back_to_queue.push_back(w.tasks[i]);
            }
          }
        }
        const bool planned = w.closed && !w.killed && w.tasks.empty() && code == 0;
        const bool unplanned_active = !planned && w.active();
        const std::size_t queued_after = queue_.size() + back_to_queue.size();
        const bool spawn_useful = !terminating_ && (m_.phase() == Phase::running || queued_after > 0);
        if (unplanned_active && spawn_useful && sim_active() < cfg_.workers) {
          while (!restarts_.empty() && restarts_.front() + cfg_.restart_window <= now_) restarts_.pop_front();
          if (restarts_.size() >= cfg_.restart_limit) {
            expect_break = true;
          } else {
            expect_replacement = true;
            restarts_.push_back(now_);
          }
        }
      }
    }
    // Untouched tasks go back to the front of the queue, in their order.
    queue_.insert(queue_.begin(), back_to_queue.begin(), back_to_queue.end());
    const auto replacements = m_.counters().replacements;
    m_.worker_exited(id, code, now_);
    settle();
    if (!broken_before) RC_ASSERT((m_.phase() == Phase::broken) == expect_break);
    if (!expect_break) {
      RC_ASSERT(m_.counters().replacements - replacements == (expect_replacement ? 1u : 0u));
      if (ctx_.dying_head != 0) {
        const SimTask& h = tasks_[ctx_.dying_head];
        RC_ASSERT((h.finals == 1) == expect_lost);  // POOL-2: retried, or lost once out of runs
        if (expect_lost) RC_ASSERT(h.outcome == Outcome::lost);
      }
      for (TaskId t : ctx_.dying_rest) RC_ASSERT(tasks_[t].finals == 1 && tasks_[t].outcome == Outcome::cancelled);
    }
    check();
  }

  // Applies and checks the actions the last event produced.
  void settle() {
    std::vector<Action> acts = std::move(m_.actions());
    m_.actions().clear();
    bool any_broken = false;
    for (const Action& a : acts) {
      switch (a.kind) {
        case Action::spawn: {
          RC_ASSERT(ever_.insert(a.worker).second);  // a fresh id
          RC_ASSERT(!terminating_);
          live_[a.worker] = SimWorker{};
          break;
        }
        case Action::send: {
          auto it = live_.find(a.worker);
          RC_ASSERT(it != live_.end());
          SimWorker& w = it->second;
          RC_ASSERT(w.ready && w.active());
          auto tt = tasks_.find(a.task);
          RC_ASSERT(tt != tasks_.end());
          SimTask& t = tt->second;
          RC_ASSERT(t.started && t.finals == 0 && t.at == 0);
          RC_ASSERT(!queue_.empty() && queue_.front() == a.task);  // the parent queue's front
          queue_.pop_front();
          // POOL-6
          RC_ASSERT(w.tasks.size() < cfg_.depth);
          if (t.timeout > Nanos::zero()) RC_ASSERT(w.tasks.empty());
          for (TaskId o : w.tasks) RC_ASSERT(tasks_[o].timeout <= Nanos::zero());
          if (cfg_.max_tasks_per_child != 0) RC_ASSERT(w.sent < cfg_.max_tasks_per_child);
          w.tasks.push_back(a.task);
          ++w.sent;
          t.at = a.worker;
          t.sent_at = now_;
          break;
        }
        case Action::close: {
          auto it = live_.find(a.worker);
          RC_ASSERT(it != live_.end());
          RC_ASSERT(it->second.active());
          it->second.closed = true;
          break;
        }
        case Action::kill: {
          auto it = live_.find(a.worker);
          RC_ASSERT(it != live_.end());
          RC_ASSERT(!it->second.killed);
          it->second.killed = true;
          it->second.signal = a.code;
          break;
        }
        case Action::resolve: {
          auto tt = tasks_.find(a.task);
          RC_ASSERT(tt != tasks_.end());
          SimTask& t = tt->second;
          RC_ASSERT(t.finals == 0);  // POOL-1: at most once
          t.finals = 1;
          t.outcome = a.outcome;
          const bool queued = std::find(queue_.begin(), queue_.end(), a.task) != queue_.end();
          switch (a.outcome) {
            case Outcome::value:
              RC_ASSERT(ctx_.kind == EventContext::result && a.task == ctx_.value_task);
              break;
            case Outcome::lost:
              RC_ASSERT(ctx_.kind == EventContext::exit && a.task == ctx_.dying_head);
              RC_ASSERT(a.worker == ctx_.dying && a.code == ctx_.code);
              break;
            case Outcome::timed_out:
              RC_ASSERT(ctx_.kind == EventContext::tick && ctx_.timeouts.count(a.task) == 1);
              break;
            case Outcome::cancelled: {
              const bool at_shutdown =
                  queued && (ctx_.kind == EventContext::shutdown || ctx_.kind == EventContext::terminate);
              const bool behind_dead_head = ctx_.kind == EventContext::exit && ctx_.dying_rest.count(a.task) == 1;
              RC_ASSERT(at_shutdown || behind_dead_head);
              break;
            }
            case Outcome::broken:
              any_broken = true;
              break;
          }
          if (queued) queue_.erase(std::find(queue_.begin(), queue_.end(), a.task));
          break;
        }
        case Action::terminated:
          ++terminated_;
          RC_ASSERT(terminated_ == 1);
          RC_ASSERT(live_.empty());
          RC_ASSERT(queue_.empty());
          for (auto& [id, t] : tasks_) RC_ASSERT(t.finals == 1);
          break;
      }
    }
    if (any_broken) RC_ASSERT(m_.phase() == Phase::broken);
    if (m_.phase() == Phase::broken && phase_before_ != Phase::broken) {
      // BROKEN resolves everything at once and kills every worker.
      for (auto& [id, t] : tasks_) RC_ASSERT(t.finals == 1);
      for (auto& [id, w] : live_) RC_ASSERT(w.killed);
    }
  }

  // The invariants that hold between any two events.
  void check() {
    const Phase ph = m_.phase();
    for (const auto& [id, t] : tasks_) {
      RC_ASSERT(t.finals <= 1);
      RC_ASSERT(t.runs <= 1 + static_cast<int>(cfg_.retries));  // POOL-2
    }
    RC_ASSERT(m_.live_workers() == live_.size());
    RC_ASSERT(m_.active_workers() == sim_active());
    RC_ASSERT(m_.queued() == queue_.size());
    std::size_t held = 0;
    for (const auto& [id, w] : live_) {
      for (TaskId t : w.tasks) held += tasks_.at(t).finals == 0 ? 1 : 0;
      RC_ASSERT(w.tasks.size() <= cfg_.depth);  // POOL-6
    }
    RC_ASSERT(m_.in_flight() == held);
    // POOL-3: back at the target after any event while running, and while
    // queued work waits during a shutdown. A worker killed for breaking the
    // protocol is replaced by the next event that refills (a tick) or when it
    // has exited, whichever comes first.
    unsigned faulty = 0;
    for (const auto& [id, w] : live_) faulty += w.faulty ? 1 : 0;
    if (ph == Phase::running || (ph == Phase::shutting_down && !terminating_ && !queue_.empty())) {
      RC_ASSERT(m_.active_workers() <= cfg_.workers);
      RC_ASSERT(m_.active_workers() + faulty >= cfg_.workers);
    }
    if (ph == Phase::shutting_down && queue_.empty()) {
      // Drained: no worker is left open with nothing to do.
      for (const auto& [id, w] : live_) RC_ASSERT(!(w.active() && w.tasks.empty()));
    }
    if (ph == Phase::broken) {
      for (const auto& [id, t] : tasks_) RC_ASSERT(t.finals == 1);
      for (const auto& [id, w] : live_) RC_ASSERT(w.killed);
    }
    Nanos deadline = Nanos::max();
    for (const auto& [id, w] : live_) {
      if (w.killed || w.tasks.empty()) continue;
      const SimTask& h = tasks_.at(w.tasks.front());
      if (h.finals == 0 && h.timeout > Nanos::zero()) deadline = std::min(deadline, h.sent_at + h.timeout);
    }
    RC_ASSERT(m_.next_deadline() == deadline);
    RC_ASSERT(m_.terminated() == (terminated_ == 1));
  }

  MachineConfig cfg_;
  Gate gate_;
  Machine m_;
  Nanos now_{0};
  std::map<TaskId, SimTask> tasks_;
  std::deque<TaskId> queue_;  // the parent's FIFO as the contract predicts it
  std::map<WorkerId, SimWorker> live_;
  std::set<WorkerId> ever_;
  std::deque<Nanos> restarts_;  // the test's own record of replacement times
  bool closed_ = false;
  bool terminating_ = false;
  int terminated_ = 0;
  Phase phase_before_ = Phase::running;
  EventContext ctx_;
};

bool Gate::try_start(TaskId t) { return w_.try_start(t); }

// ---------------------------------------------------------------- commands

struct Model {
  MachineConfig cfg;
  bool closed = false;  // shutdown or terminate sent: the edge refuses submissions
  unsigned steps = 0;   // commands so far: the pool is given time to fill up before it closes
};

using PoolCommand = rc::state::Command<Model, World>;

// Every command counts a step; shutdown and terminate also close the edge.
struct Step : PoolCommand {
  void apply(Model& m) const override {
    ++m.steps;
    close(m);
  }
  virtual void close(Model&) const {}
};

unsigned selector() { return *rc::gen::inRange(0u, 64u); }

struct Submit : Step {
  long timeout_ms = *rc::gen::weightedOneOf<long>({{2, rc::gen::just(0L)}, {1, rc::gen::inRange(1L, 25L)}});
  void checkPreconditions(const Model& m) const override { RC_PRE(!m.closed); }
  void run(const Model&, World& w) const override { w.submit(ms(timeout_ms)); }
  void show(std::ostream& os) const override { os << "submit(timeout=" << timeout_ms << "ms)"; }
};

struct Cancel : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.cancel(sel); }
  void show(std::ostream& os) const override { os << "cancel(#" << sel << ")"; }
};

struct Ready : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.ready(sel); }
  void show(std::ostream& os) const override { os << "worker_ready(#" << sel << ")"; }
};

struct Result : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.result(sel); }
  void show(std::ostream& os) const override { os << "result(#" << sel << ")"; }
};

struct BadResult : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.bad_result(sel); }
  void show(std::ostream& os) const override { os << "result of the second task(#" << sel << ")"; }
};

struct Exit : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.natural_exit(sel); }
  void show(std::ostream& os) const override { os << "exit as told(#" << sel << ")"; }
};

struct Crash : Step {
  unsigned sel = selector();
  int code = *rc::gen::element(0, 1, -9, -11);
  bool busy = *rc::gen::weightedElement<bool>({{3, true}, {1, false}});
  void run(const Model&, World& w) const override { w.crash(sel, code, busy); }
  void show(std::ostream& os) const override {
    os << "dies(#" << sel << (busy ? " of the busiest" : "") << ", code " << code << ")";
  }
};

struct Tick : Step {
  long dt = *rc::gen::element(1L, 4L, 10L, 40L);
  void run(const Model&, World& w) const override { w.tick(ms(dt)); }
  void show(std::ostream& os) const override { os << "tick(+" << dt << "ms)"; }
};

struct InitFailed : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.init_failed(sel); }
  void show(std::ostream& os) const override { os << "init_failed(#" << sel << ")"; }
};

struct Shutdown : Step {
  bool cancel_futures = *rc::gen::arbitrary<bool>();
  void close(Model& m) const override { m.closed = true; }
  void run(const Model&, World& w) const override { w.shutdown(cancel_futures); }
  void show(std::ostream& os) const override { os << "shutdown(cancel_futures=" << cancel_futures << ")"; }
};

struct Terminate : Step {
  int signal = *rc::gen::element(9, 15);
  void close(Model& m) const override { m.closed = true; }
  void run(const Model&, World& w) const override { w.terminate(signal); }
  void show(std::ostream& os) const override { os << "terminate(" << signal << ")"; }
};

template <class Cmd>
rc::Gen<std::shared_ptr<const PoolCommand>> make() {
  return rc::gen::exec([]() -> std::shared_ptr<const PoolCommand> { return std::make_shared<Cmd>(); });
}

rc::Gen<std::shared_ptr<const PoolCommand>> next_command(const Model& m) {
  return rc::gen::weightedOneOf<std::shared_ptr<const PoolCommand>>({
      {m.closed ? 0u : 12u, make<Submit>()},
      {1, make<Cancel>()},
      {5, make<Ready>()},
      {6, make<Result>()},
      {1, make<BadResult>()},
      {3, make<Exit>()},
      {2, make<Crash>()},
      {4, make<Tick>()},
      {m.cfg.has_initializer && m.steps > 10 ? 1u : 0u, make<InitFailed>()},
      {m.steps > 20 ? 1u : 0u, make<Shutdown>()},
      {m.closed ? 1u : 0u, make<Terminate>()},
  });
}

MachineConfig random_config() {
  MachineConfig c;
  c.workers = *rc::gen::inRange(1u, 4u);
  c.depth = *rc::gen::inRange(1u, 4u);
  c.max_tasks_per_child = *rc::gen::inRange(0u, 4u);
  c.retries = *rc::gen::inRange(0u, 3u);
  c.restart_limit = *rc::gen::inRange(1u, 5u);
  c.restart_window = ms(*rc::gen::element(5L, 20L, 100L));
  c.has_initializer = *rc::gen::weightedElement<bool>({{1, true}, {3, false}});
  return c;
}

void check_against_model(bool allow_terminate_early) {
  Model initial;
  initial.cfg = random_config();
  const MachineConfig& c = initial.cfg;
  RC_LOG() << "config: workers=" << c.workers << " depth=" << c.depth
           << " max_tasks_per_child=" << c.max_tasks_per_child << " retries=" << c.retries
           << " restart_limit=" << c.restart_limit
           << " window=" << std::chrono::duration_cast<std::chrono::milliseconds>(c.restart_window).count()
           << "ms initializer=" << c.has_initializer << "\n";
  World world(initial.cfg);
  if (allow_terminate_early) {
    rc::state::check(initial, world, [](const Model& m) {
      return rc::gen::weightedOneOf<std::shared_ptr<const PoolCommand>>(
          {{30, next_command(m)}, {m.closed || m.steps < 10 ? 0u : 1u, make<Terminate>()}});
    });
  } else {
    rc::state::check(initial, world, &next_command);
  }
  world.drive_to_termination();
  const auto& k = world.machine().counters();
  // One label per run, the rarest thing it reached, to show the spread.
  const char* what = world.machine().phase() == Phase::broken ? "broken"
                     : k.requeued > 0                         ? "requeued behind a dead head"
                     : k.retried > 0                          ? "retried"
                     : k.lost > 0                             ? "lost"
                     : k.timed_out > 0                        ? "timed out"
                     : k.deaths > 0                           ? "deaths"
                                                              : "no deaths";
  RC_TAG(what);
}

TEST(PoolMachineProperties, StatefulAgainstModel) {
  EXPECT_TRUE(
      keel_test::rc_check("pool Machine matches the sequential model", 1000, 100, [] { check_against_model(false); }));
}

// The same, with terminate() also possible before any shutdown.
TEST(PoolMachineProperties, StatefulAgainstModelWithEarlyTerminate) {
  EXPECT_TRUE(keel_test::rc_check("pool Machine matches the sequential model (terminate any time)", 300, 100,
                                  [] { check_against_model(true); }));
}

}  // namespace
