// One simulated world for keel::pool::Machine, the ProcessPool supervisor's
// pure state machine: the world plays the driver, the start slots (the
// machine's StartGate) and every worker process, carries out the machine's
// actions, and checks each gate question, each action and the state after
// every event against what the event allows. Its users: the fuzz target
// fuzz/pool_machine.cpp, the RapidCheck property test
// tests/process_pool/machine_properties_test.cpp and the Relacy model
// models/process_pool/pool_model.cpp; what the world simulates and checks is
// described at the top of each of them. One copy, so they cannot drift.
//
// Contract: the includer defines POOL_CHECK(invariant, cond, what) first,
// its way of failing (RC_FAIL, KEEL_FUZZ_CHECK, RL_ASSERT, which never builds
// the message); `what` is a std::string expression, evaluated only when the
// check fails. Because each includer fails in its own way, everything here
// but the vocabulary (sim_pool.hpp) sits in an unnamed namespace: each
// translation unit has its own World, and the fuzz target and the property
// test link into one test binary without an ODR clash. No GoogleTest,
// RapidCheck or Relacy dependency; only standard headers and the machine,
// which a Relacy model has included before relacy.hpp.
//
// Hooks (where the users differ on purpose): on_resolve() (the Relacy model
// counts resolves in shared records), on_broken() (it closes the real Edge
// there, as the driver does), and the protected members a derived
// world reads to choose its own events (the Relacy model's chooser).
//
// Invariants: POOL-1, POOL-2, POOL-3, POOL-5, POOL-6, POOL-7, POOL-8, POOL-9,
// POOL-11 (proofs/INVARIANTS.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../../kernel/src/process_pool/machine.hpp"
#include "sim_pool.hpp"

#ifndef POOL_CHECK
#error "define POOL_CHECK(invariant, cond, what) before including sim_pool_world.hpp"
#endif

namespace keel::pool_sim {
namespace {

struct SimTask {
  Nanos timeout{0};
  bool cancelled = false;  // its user's cancel succeeded: the gate says no
  bool final = false;      // resolved, or dropped by the gate
  bool dropped = false;    // dropped by the gate
  Outcome outcome = Outcome::value;
  int starts = 0;        // slots it won: its runs
  int lost_starts = 0;   // runs on a worker that died holding it (the machine's count)
  bool running = false;  // its future says running: a start notice was accepted
};

// A task the machine holds for a worker, as the machine must see it.
struct Held {
  TaskId task = 0;
  bool known = false;    // the machine knows it started (a notice, a failed revoke)
  bool noticed = false;  // its notice arrived
  Nanos known_at{0};     // since when
};
struct SimWorker {
  bool ready = false;
  bool closed = false;  // Close received: retiring or closing
  bool killed = false;
  int signal = 0;
  bool init_failed = false;
  bool mute = false;  // it broke the protocol: the driver stopped reading it
  unsigned sent = 0;
  std::map<TaskId, Slot> slots;  // of the frames it holds (at most one per task)
  // Vectors, not deques: a few entries each, and a deque allocates even
  // empty, which under Relacy (whose allocator is instrumented) was much of
  // the pool models' time.
  std::vector<TaskId> frames;  // frames it has not taken yet, in order
  TaskId running = 0;          // the task whose slot it won and that it has not answered
  bool noticed = false;        // and whose notice it wrote
  std::vector<Msg> channel;    // written, not read by the driver yet
  std::vector<Held> held;      // the machine's in-flight list for it
  std::vector<TaskId> stale;   // taken back by the machine; the worker has not said it skipped them
  TaskId timed_out = 0;        // resolved timed out; its late messages are no fault
  bool active() const { return !closed && !killed; }
  bool holds(TaskId t) const {
    return std::any_of(held.begin(), held.end(), [&](const Held& h) { return h.task == t; });
  }
  bool has_stale(TaskId t) const { return std::find(stale.begin(), stale.end(), t) != stale.end(); }
};

// The event being processed, and what it allows the machine to do.
struct Event {
  enum Kind {
    start,
    submit,
    ready,
    deliver,
    bad_report,
    exit,
    tick,
    shutdown,
    terminate,
    init_failed,
    discard
  } kind = start;
  int index = -1;
  WorkerId worker = 0;
  TaskId task = 0;
  int code = 0;
  bool cancel_futures = false;
  TaskId value_task = 0;       // deliver: the reported first task
  std::set<TaskId> lost;       // exit: started tasks out of runs (or terminating)
  std::set<TaskId> cancel;     // tasks this event may resolve cancelled
  std::set<TaskId> timeouts;   // tick: started tasks past their timeout
  std::set<WorkerId> to_kill;  // tick: their workers
  Phase phase_before = Phase::running;
};

const char* kind_name(Event::Kind k) {
  static const char* const names[] = {"start", "submit",   "ready",     "deliver",     "bad_report", "exit",
                                      "tick",  "shutdown", "terminate", "init_failed", "discard"};
  return names[k];
}

class World;

class Gate final : public keel::pool::StartGate {
 public:
  explicit Gate(World& w) : w_(w) {}
  bool dispatch(TaskId t, WorkerId w) override;
  bool revoke(TaskId t, WorkerId w) override;

 private:
  World& w_;
};

class World {
 public:
  World(const MachineConfig& cfg, Nanos t0) : cfg_(cfg), gate_(*this), m_(cfg_, gate_), now_(t0) {
    begin(Event::start);
    m_.start(now_);
    settle();
    POOL_CHECK("POOL-3", live_.size() == cfg_.workers,
               where() + ": start spawned " + str(live_.size()) + " workers, target " + str(cfg_.workers));
    check();
  }
  virtual ~World() = default;
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  bool closed() const { return closed_; }
  Nanos now() const { return now_; }
  const Machine& machine() const { return m_; }
  std::size_t task_count() const { return tasks_.size(); }

  void set_clock(Nanos t) { now_ = std::max(now_, std::min(t, kClockMax)); }

  // ---- events

  void submit(Nanos timeout) {
    const TaskId id = static_cast<TaskId>(tasks_.size() + 1);
    SimTask t;
    t.timeout = timeout;
    tasks_.push_back(t);
    queue_.push_back(id);
    const bool was_broken = m_.phase() == Phase::broken;
    begin(Event::submit, 0, id);
    m_.submit(id, timeout, now_);
    settle();
    if (was_broken) {
      POOL_CHECK("POOL-1", task(id).final && task(id).outcome == Outcome::broken,
                 where() + ": a task submitted to a broken pool was not resolved broken at once");
    }
    check();
  }

  // The user cancels a pending future that has not started: a queued one
  // (the gate will say no), or a sent one, by winning its slot. `chunk`: one
  // call of a chunk is cancelled: the slot dies, the rest is still wanted.
  void cancel(unsigned sel, bool all, bool chunk) {
    std::vector<TaskId> c;
    for (TaskId id = 1; id <= tasks_.size(); ++id) {
      if (cancellable(id, chunk)) c.push_back(id);
    }
    if (c.empty()) return;
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (all || i == sel % c.size()) cancel_task(c[i], chunk);
    }
  }

  bool cancellable(TaskId id, bool chunk) const {
    if (!known(id)) return false;
    const SimTask& t = task(id);
    if (t.final || t.cancelled) return false;
    const WorkerId w = holder(id);
    if (w != 0 && live_.at(w).slots.at(id) == Slot::started) return false;  // too late
    return !chunk || w != 0;
  }

  void cancel_task(TaskId id, bool chunk) {
    if (!cancellable(id, chunk)) return;
    const WorkerId w = holder(id);
    if (w != 0) live_.at(w).slots.at(id) = Slot::dead;
    if (!chunk) task(id).cancelled = true;
  }

  // A worker's `ready` frame: once per worker, also from a closed or killed
  // one (written before the close or the signal arrived).
  static bool can_ready(const SimWorker& w) { return !w.ready && !w.init_failed && !w.mute; }
  bool ready(unsigned sel) {
    const auto c = workers_where(can_ready);
    if (c.empty()) return false;
    ready_at(c[sel % c.size()]);
    return true;
  }
  void ready_at(WorkerId id) {
    live_.at(id).ready = true;
    begin(Event::ready, id);
    m_.worker_ready(id, now_);
    settle();
    check();
  }

  void ready_all() {
    for (int guard = 0; guard < 16; ++guard) {
      const auto c =
          workers_where([](const SimWorker& w) { return !w.ready && !w.init_failed && !w.mute && w.active(); });
      if (c.empty()) return;
      ready(0);
    }
  }

  // The worker's first task runs to its report (or its dead frame is
  // skipped), and the driver reads everything the worker wrote.
  static bool can_advance(const SimWorker& w) {
    return !w.mute && (w.running != 0 || !w.frames.empty() || !w.channel.empty());
  }
  bool advance(unsigned sel) {
    const auto c = workers_where(can_advance);
    if (c.empty()) return false;
    advance_at(c[sel % c.size()]);
    return true;
  }
  void advance_at(WorkerId id) {
    SimWorker& w = live_.at(id);
    if (w.running == 0) take(id, w);
    if (w.running != 0) {
      if (!w.noticed) notice(w);
      finish(w);
    }
    while (deliver(id)) {
    }
  }

  // The worker wins its next frame's slot (or finds it dead) and says so;
  // the driver reads everything it wrote.
  static bool can_start_next(const SimWorker& w) { return !w.mute && w.running == 0 && !w.frames.empty(); }
  bool start_next(unsigned sel) {
    const auto c = workers_where(can_start_next);
    if (c.empty()) return false;
    start_next_at(c[sel % c.size()]);
    return true;
  }
  void start_next_at(WorkerId id) {
    SimWorker& w = live_.at(id);
    take(id, w);
    if (w.running != 0) notice(w);
    while (deliver(id)) {
    }
  }

  // The worker moves one step, the driver reads nothing: it takes its next
  // frame, or writes the notice of the task it runs, or its result.
  static bool can_step(const SimWorker& w) { return w.running != 0 || !w.frames.empty(); }
  bool step_silently(unsigned sel) {
    const auto c = workers_where(can_step);
    if (c.empty()) return false;
    step_at(c[sel % c.size()]);
    return true;
  }
  void step_at(WorkerId id) {
    SimWorker& w = live_.at(id);
    if (w.running == 0) {
      take(id, w);
    } else if (!w.noticed) {
      notice(w);
    } else {
      finish(w);
    }
  }

  // The driver reads one message of some worker.
  static bool can_read(const SimWorker& w) { return !w.channel.empty(); }
  bool read_one(unsigned sel) {
    const auto c = workers_where(can_read);
    if (c.empty()) return false;
    deliver(c[sel % c.size()]);
    return true;
  }

  // A faulty worker reports a task that is not its first (kind 0: a result,
  // 1: a start, 2: a skip; of another worker's task, a queued one, a finished
  // one, one never submitted, 0): refused, nothing resolved, the worker
  // killed; a broken pool just ignores it.
  bool bad_report(unsigned sel, unsigned which, int kind) {
    const auto c = workers_where([](const SimWorker& w) { return !w.mute; });
    if (c.empty()) return false;
    bad_report_at(c[sel % c.size()], which, kind);
    return true;
  }
  void bad_report_at(WorkerId id, unsigned which, int kind) {
    SimWorker& w = live_.at(id);
    TaskId bogus = 0;
    switch (which % 5) {
      case 0:
        bogus = w.held.size() >= 2 ? w.held[1].task : !w.held.empty() ? w.held.front().task : 0;
        break;
      case 1:
        bogus = tasks_.empty() ? 0 : static_cast<TaskId>(1 + which / 5 % tasks_.size());
        break;
      case 2:
        bogus = queue_.empty() ? 0 : queue_.back();
        break;
      case 3:
        bogus = static_cast<TaskId>(tasks_.size() + 1 + which);
        break;
      default:
        bogus = std::numeric_limits<TaskId>::max();
        break;
    }
    // Not a report the machine must accept.
    const bool first = !w.held.empty() && bogus == w.held.front().task;
    const bool legit = kind == 2 ? (w.has_stale(bogus) || (first && !w.held.front().known))
                                 : (first || (bogus != 0 && bogus == w.timed_out));
    if (legit) bogus = static_cast<TaskId>(tasks_.size() + 7);
    const bool broken = m_.phase() == Phase::broken;
    const bool was_killed = w.killed;
    begin(Event::bad_report, id, bogus);
    const bool accepted = kind == 0   ? m_.result(id, bogus, now_)
                          : kind == 1 ? m_.started(id, bogus, now_)
                                      : m_.skipped(id, bogus, now_);
    static const char* const what[] = {"a result", "a start notice", "a skip"};
    POOL_CHECK("POOL-7", accepted == broken,
               where() + ": " + what[kind] + " of a task that is not the worker's first was " +
                   (accepted ? "accepted" : "refused") + " (pool " + (broken ? "broken" : "not broken") + ")");
    settle();
    if (!broken) {
      POOL_CHECK("POOL-7", w.killed && (was_killed || w.signal == 9),
                 where() + ": a worker that reported a task not its first was not killed with signal 9");
      w.mute = true;
      w.channel.clear();
    }
    check();
  }

  // A worker that was told to go (killed, closed with nothing left) or whose
  // initializer failed exits with the status that implies.
  static bool can_exit(const SimWorker& w) {
    return w.killed || w.init_failed || (w.closed && w.frames.empty() && w.running == 0);
  }
  bool natural_exit(unsigned sel) {
    const auto c = workers_where(can_exit);
    if (c.empty()) return false;
    exit_at(c[sel % c.size()]);
    return true;
  }
  void exit_at(WorkerId id) {
    const SimWorker& w = live_.at(id);
    exited(id, w.killed ? -w.signal : w.init_failed ? 1 : 0);
  }

  // A live worker dies now with any status; `how` bit 0: one of those
  // holding the most tasks, if any holds one; bit 1: it won its next slot
  // first; bit 2: and wrote its notice.
  bool crash(unsigned sel, int code, unsigned how) {
    std::size_t most = 0;
    for (const auto& [id, w] : live_) most = std::max(most, w.held.size());
    auto c = workers_where([&](const SimWorker& w) { return (how & 1) != 0 && most > 0 && w.held.size() == most; });
    if (c.empty()) c = workers_where([](const SimWorker&) { return true; });
    if (c.empty()) return false;
    crash_at(c[sel % c.size()], code, how);
    return true;
  }
  void crash_at(WorkerId id, int code, unsigned how) {
    SimWorker& w = live_.at(id);
    if ((how & 2) != 0 && w.running == 0) take(id, w);
    if ((how & 4) != 0 && w.running != 0 && !w.noticed) notice(w);
    exited(id, code);
  }

  void tick() {
    begin(Event::tick);
    if (m_.phase() != Phase::broken) {
      for (const auto& [id, w] : live_) {
        if (w.killed || !(w.ready || w.closed)) continue;
        for (const Held& h : w.held) {
          const SimTask& t = task(h.task);
          if (!h.known || t.timeout <= Nanos::zero() || sat_add(h.known_at, t.timeout) > now_) continue;
          ev_.timeouts.insert(h.task);
          ev_.to_kill.insert(id);
          break;
        }
      }
    }
    m_.tick(now_);
    settle();
    for (TaskId t : ev_.timeouts) {
      POOL_CHECK("POOL-6", task(t).final && task(t).outcome == Outcome::timed_out,
                 where() + ": task " + str(t) + " ran past its timeout but was not resolved timed_out");
    }
    for (WorkerId id : ev_.to_kill) {
      POOL_CHECK("POOL-6", live_.at(id).killed && live_.at(id).signal == 9,
                 where() + ": the worker of a timed-out task, w" + str(id) + ", was not killed (9)");
    }
    check();
  }

  void shutdown(bool cancel_futures) {
    closed_ = true;
    begin(Event::shutdown, 0, 0, cancel_futures ? 1 : 0);
    ev_.cancel_futures = cancel_futures;
    if (cancel_futures) take_queue_for_cancel();
    m_.shutdown(cancel_futures, now_);
    settle();
    if (cancel_futures) check_cancelled_all();
    POOL_CHECK("POOL-1", m_.phase() != Phase::running, where() + ": still running after shutdown");
    check();
  }

  void terminate(int signal) {
    closed_ = true;
    terminating_ = true;
    begin(Event::terminate, 0, 0, signal);
    ev_.cancel_futures = true;
    take_queue_for_cancel();
    m_.terminate(signal, now_);
    settle();
    check_cancelled_all();
    for (const auto& [id, w] : live_) {
      POOL_CHECK("POOL-1", w.killed, where() + ": w" + str(id) + " not killed by terminate");
    }
    check();
  }

  // RejectPolicy::discard_oldest: the oldest queued task is cancelled.
  void discard_oldest() {
    begin(Event::discard);
    TaskId front = 0;
    if (!queue_.empty() && m_.phase() != Phase::broken) {
      front = queue_.front();
      queue_.pop_front();
      ev_.cancel.insert(front);
    }
    m_.discard_oldest(now_);
    settle();
    if (front != 0) {
      POOL_CHECK("POOL-1", task(front).final && task(front).outcome == Outcome::cancelled,
                 where() + ": discard_oldest did not cancel the oldest queued task t" + str(front));
    }
    check();
  }

  bool init_failed(unsigned sel) {
    if (!cfg_.has_initializer) return false;
    const auto c = workers_where(can_ready);
    if (c.empty()) return false;
    init_failed_at(c[sel % c.size()]);
    return true;
  }
  void init_failed_at(WorkerId id) {
    live_.at(id).init_failed = true;
    const bool broken_before = m_.phase() == Phase::broken;
    begin(Event::init_failed, id);
    m_.init_failed(id, now_);
    settle();
    POOL_CHECK("POOL-5", m_.phase() == Phase::broken, where() + ": an initializer failure did not break the pool");
    if (!broken_before) {
      POOL_CHECK("POOL-5", m_.broken_reason() == BrokenReason::initializer_failed && m_.broken_worker() == id,
                 where() + ": broken for the wrong reason or worker");
    }
    check();
  }

  // The end: no more submissions; every worker runs what it holds and exits
  // as told, until the machine says Terminated.
  void drive_to_termination(int finale) {
    if (!closed_) {
      if (finale < 2) {
        shutdown(finale == 1);
      } else {
        terminate(finale == 2 ? 15 : 9);
      }
    }
    for (int step = 0; !m_.terminated(); ++step) {
      POOL_CHECK("POOL-1", step < 100000, "the drain does not end");
      if (natural_exit(0)) continue;
      if (advance(0)) continue;
      if (ready(0)) continue;
      POOL_CHECK("POOL-1", false,
                 "stuck after the last event: nothing left to do, but the machine has not terminated (" +
                     str(live_.size()) + " workers, " + str(queue_.size()) + " queued)");
    }
    POOL_CHECK("POOL-1", terminated_ == 1 && live_.empty() && queue_.empty(),
               "terminated with workers or queued tasks left");
    const auto& k = m_.counters();
    std::uint64_t cancelled = 0, lost = 0, timed_out = 0, broken = 0;
    for (TaskId id = 1; id <= tasks_.size(); ++id) {
      const SimTask& t = task(id);
      POOL_CHECK("POOL-1", t.final, "task " + str(id) + " never resolved");
      POOL_CHECK("POOL-2", t.starts <= 1 + static_cast<int>(cfg_.retries),
                 "task " + str(id) + " ran " + str(t.starts) + " times");
      cancelled += t.outcome == Outcome::cancelled ? 1 : 0;
      lost += t.outcome == Outcome::lost ? 1 : 0;
      timed_out += t.outcome == Outcome::timed_out ? 1 : 0;
      broken += t.outcome == Outcome::broken ? 1 : 0;
    }
    POOL_CHECK("POOL-1",
               k.submitted == tasks_.size() && k.resolved == resolves_ && k.sent == sends_ && k.spawned == spawns_ &&
                   k.cancelled == cancelled && k.lost == lost && k.timed_out == timed_out && k.broken == broken,
               "the machine's counters disagree with the actions it emitted");
    POOL_CHECK("POOL-7", k.revoked == revoked_ && k.stolen == stolen_ && k.skipped == skipped_,
               "revoked/stolen/skipped " + str(k.revoked) + "/" + str(k.stolen) + "/" + str(k.skipped) + ", expected " +
                   str(revoked_) + "/" + str(stolen_) + "/" + str(skipped_));
    POOL_CHECK("POOL-5", k.replacements == replacements_,
               "replacements " + str(k.replacements) + ", expected " + str(replacements_));
  }

  // ---- the start slots (the machine's StartGate)

  bool gate_dispatch(TaskId id, WorkerId wid) {
    POOL_CHECK("POOL-2", known(id), where() + ": the gate was asked about unknown task " + str(id));
    SimTask& t = task(id);
    POOL_CHECK("POOL-1", !t.final, where() + ": the gate was asked about final task " + str(id));
    const WorkerId h = holder(id);
    POOL_CHECK("POOL-2", h == 0,
               where() + ": task " + str(id) + " dispatched to w" + str(wid) + " while w" + str(h) + " holds it");
    POOL_CHECK("POOL-2", !queue_.empty() && queue_.front() == id,
               where() + ": the gate was asked about task " + str(id) + ", which is not the queue's front");
    auto it = live_.find(wid);
    POOL_CHECK("POOL-6", it != live_.end() && it->second.ready,
               where() + ": task " + str(id) + " dispatched to w" + str(wid) + ", which is not alive and ready");
    SimWorker& w = it->second;
    POOL_CHECK("POOL-7", w.slots.count(id) == 0,
               where() + ": task " + str(id) + " dispatched to w" + str(wid) +
                   ", which still holds a frame of it (its skip would be ambiguous)");
    POOL_CHECK("POOL-6", w.held.size() < depth_now() && w.held.size() + w.stale.size() < cfg_.depth,
               where() + ": send to w" + str(wid) + " holding " + str(w.held.size()) + " (and " + str(w.stale.size()) +
                   " frames taken back), depth now " + str(depth_now()));
    POOL_CHECK("POOL-6", w.held.empty() || task(w.held.back().task).timeout <= Nanos::zero(),
               where() + ": task " + str(id) + " sent behind timed task " + str(w.held.back().task));
    POOL_CHECK("POOL-6", w.held.empty() || !straggler(w),
               where() + ": task " + str(id) + " pipelined behind straggler " + str(w.held.front().task));
    POOL_CHECK("POOL-2", t.lost_starts <= static_cast<int>(cfg_.retries),
               where() + ": task " + str(id) + " sent for a run beyond 1 + retries");
    queue_.pop_front();
    touch(wid);
    if (t.cancelled) {
      t.final = true;
      t.dropped = true;
      t.outcome = Outcome::cancelled;
      return false;
    }
    w.slots[id] = Slot::sent;
    w.frames.push_back(id);
    w.held.push_back(Held{id});
    expected_sends_.push_back({wid, id});
    return true;
  }

  bool gate_revoke(TaskId id, WorkerId wid) {
    SimWorker* w = nullptr;
    if (dying_ != nullptr && dying_id_ == wid) {
      w = dying_;
    } else if (auto it = live_.find(wid); it != live_.end()) {
      w = &it->second;
    }
    POOL_CHECK("POOL-7", w != nullptr, where() + ": revoke of t" + str(id) + " at w" + str(wid) + ", gone");
    auto s = w->slots.find(id);
    auto h = std::find_if(w->held.begin(), w->held.end(), [&](const Held& x) { return x.task == id; });
    POOL_CHECK("POOL-7", s != w->slots.end() && h != w->held.end(),
               where() + ": revoke of t" + str(id) + " at w" + str(wid) + ", which it does not hold");
    POOL_CHECK("POOL-7", !h->known,
               where() + ": revoke of t" + str(id) + " at w" + str(wid) + ", known to have started");
    touch(wid);
    if (s->second == Slot::started) {
      // It started (what came before it was answered or skipped: unknown).
      h->known = true;
      h->known_at = now_;
      return false;
    }
    s->second = Slot::dead;
    w->held.erase(h);
    ++revoked_;
    if (w == dying_) return true;  // its fate was predicted with the exit
    w->stale.push_back(id);
    if (m_.phase() == Phase::broken) return true;  // resolved broken next
    if (ev_.cancel_futures) {
      ev_.cancel.insert(id);
      return true;
    }
    // Work conservation: it goes to an idle worker at once.
    POOL_CHECK("POOL-9", queue_.empty(),
               where() + ": t" + str(id) + " taken back from w" + str(wid) + " while tasks are queued");
    queue_.push_front(id);
    ++stolen_;
    return true;
  }

 protected:
  // Called once for each task the machine resolves, after the world marked
  // it final: the Relacy model counts resolves in the submitter's record
  // (shared state the race detector watches); the other worlds need nothing.
  virtual void on_resolve(TaskId) {}
  // Called when the machine says the pool broke (its `broken` action): the
  // Relacy model closes the real Edge here, as the driver does.
  virtual void on_broken() {}

  // Protected rather than private: the Relacy model's world derives from
  // this one to add its own event chooser (which reads the workers and the
  // clock) and the submitters' records.
  SimTask& task(TaskId id) { return tasks_[static_cast<std::size_t>(id - 1)]; }
  const SimTask& task(TaskId id) const { return tasks_[static_cast<std::size_t>(id - 1)]; }
  bool known(TaskId id) const { return id >= 1 && id <= tasks_.size(); }

  template <class Pred>
  std::vector<WorkerId> workers_where(Pred p) const {
    std::vector<WorkerId> v;
    for (const auto& [id, w] : live_) {
      if (p(w)) v.push_back(id);
    }
    return v;
  }

  WorkerId holder(TaskId t) const {
    for (const auto& [id, w] : live_) {
      if (w.holds(t)) return id;
    }
    return 0;
  }

  unsigned sim_active() const {
    unsigned n = 0;
    for (const auto& [id, w] : live_) n += w.active() ? 1 : 0;
    return n;
  }

  // The contract's adaptive depth, from the world's own mean.
  unsigned depth_now() const {
    if (cfg_.pipeline <= Nanos::zero()) return std::max(1u, cfg_.depth);
    if (mean_ <= Nanos::zero()) return 1;
    const std::int64_t p = cfg_.pipeline.count(), m = mean_.count();
    const std::int64_t ahead = p / m + (p % m != 0 ? 1 : 0);  // ceil, without overflow
    const unsigned depth = std::max(1u, cfg_.depth);
    if (ahead >= static_cast<std::int64_t>(depth)) return depth;
    return std::min(depth, std::max(2u, 1u + static_cast<unsigned>(ahead)));
  }

  // It can be sent one more: below the depth now, and frames taken back
  // still fill its buffer until it skips them.
  bool room(const SimWorker& w) const {
    return w.held.size() < depth_now() && w.held.size() + w.stale.size() < std::max(1u, cfg_.depth);
  }

  // Its first task has run far longer than the mean: nothing is pipelined behind it.
  bool straggler(const SimWorker& w) const {
    if (cfg_.pipeline <= Nanos::zero() || w.held.empty() || !w.held.front().known) return false;
    return sat_add(w.held.front().known_at, sat_add(cfg_.pipeline, sat_add(mean_, mean_))) < now_;
  }

  void write(SimWorker& w, Msg m) {
    if (!w.mute) w.channel.push_back(m);
  }

  // The worker takes its next frame: wins its slot and starts the task, or
  // finds the slot dead and writes `skipped`.
  void take(WorkerId id, SimWorker& w) {
    if (w.running != 0 || w.frames.empty()) return;
    const TaskId t = w.frames.front();
    w.frames.erase(w.frames.begin());
    Slot& s = w.slots.at(t);
    if (s != Slot::sent) {
      write(w, {Msg::skipped, t});
      return;
    }
    s = Slot::started;
    SimTask& k = task(t);
    ++k.starts;
    POOL_CHECK("POOL-7", !k.final,
               where() + ": t" + str(t) + " started at w" + str(id) + " after its future was final (" +
                   (k.dropped ? "dropped" : name_of(k.outcome)) + ")");
    POOL_CHECK("POOL-2", !k.cancelled,
               where() + ": t" + str(t) + " started at w" + str(id) + " after its user's cancel succeeded");
    POOL_CHECK("POOL-2", k.starts <= 1 + static_cast<int>(cfg_.retries),
               where() + ": t" + str(t) + " started " + str(k.starts) + " times");
    w.running = t;
    w.noticed = false;
  }
  void notice(SimWorker& w) {
    write(w, {Msg::started, w.running});
    w.noticed = true;
  }
  void finish(SimWorker& w) {
    write(w, {Msg::result, w.running});
    w.running = 0;
  }

  // The driver reads w's next message and hands it to the machine.
  bool deliver(WorkerId id) {
    SimWorker& w = live_.at(id);
    if (w.channel.empty()) return false;
    const Msg msg = w.channel.front();
    w.channel.erase(w.channel.begin());
    const TaskId t = msg.task;
    begin(Event::deliver, id, t);
    const bool broken = m_.phase() == Phase::broken;
    const bool first = !w.held.empty() && w.held.front().task == t;
    bool accepted = false;
    switch (msg.kind) {
      case Msg::started:
        if (first) {
          Held& h = w.held.front();
          if (!h.known) {
            h.known = true;
            h.known_at = now_;
          }
          h.noticed = true;
          task(t).running = true;
        } else {
          POOL_CHECK("POOL-7", broken || t == w.timed_out,
                     where() + ": w" + str(id) + " started t" + str(t) + ", which the machine should hold first");
        }
        accepted = m_.started(id, t, now_);
        POOL_CHECK("POOL-7", accepted, where() + ": the machine refused a legitimate start notice");
        break;
      case Msg::skipped:
        if (auto st = std::find(w.stale.begin(), w.stale.end(), t); st != w.stale.end()) {
          w.stale.erase(st);
        } else if (!broken) {
          POOL_CHECK("POOL-7", first && !w.held.front().known,
                     where() + ": w" + str(id) + " skipped t" + str(t) + ", which the machine should hold first");
          w.held.erase(w.held.begin());
          queue_.push_front(t);  // its user won the slot: back to the front, the gate decides
          ++skipped_;
        }
        w.slots.erase(t);
        accepted = m_.skipped(id, t, now_);
        POOL_CHECK("POOL-7", accepted, where() + ": the machine refused a legitimate skip");
        break;
      case Msg::result:
        if (first) {
          const Held h = w.held.front();
          w.held.erase(w.held.begin());
          if (h.noticed && now_ > h.known_at) {
            const Nanos ran = now_ - h.known_at;
            mean_ = mean_ == Nanos::zero() ? ran : mean_ + (ran - mean_) / 8;
            if (mean_ <= Nanos::zero()) mean_ = Nanos(1);
          }
          ev_.value_task = task(t).final ? 0 : t;
        } else if (t != 0 && t == w.timed_out) {
          w.timed_out = 0;
        } else {
          POOL_CHECK("POOL-7", broken,
                     where() + ": w" + str(id) + " answered t" + str(t) + ", which the machine should hold first");
        }
        w.slots.erase(t);
        accepted = m_.result(id, t, now_);
        POOL_CHECK("POOL-1", accepted, where() + ": the machine refused a worker's report of its first task");
        break;
    }
    settle();
    if (ev_.value_task != 0) {
      POOL_CHECK("POOL-1", task(t).final && task(t).outcome == Outcome::value,
                 where() + ": a pending first task reported by its worker was not resolved value");
    }
    check();
    return true;
  }

  std::string where() const {
    std::string s = "event " + std::to_string(ev_.index) + " (" + kind_name(ev_.kind);
    if (ev_.worker != 0) s += " w" + str(ev_.worker);
    if (ev_.task != 0) s += " t" + str(ev_.task);
    if (ev_.code != 0) s += " code " + std::to_string(ev_.code);
    return s + " at " + std::to_string(now_.count()) + "ns)";
  }

  void begin(Event::Kind k, WorkerId w = 0, TaskId t = 0, int code = 0) {
    const int index = ev_.index + 1;
    ev_ = Event{};
    ev_.kind = k;
    ev_.index = index;
    ev_.worker = w;
    ev_.task = t;
    ev_.code = code;
    ev_.phase_before = m_.phase();
    touched_.clear();
    if (w != 0) touch(w);
  }
  bool touched(WorkerId w) const { return std::find(touched_.begin(), touched_.end(), w) != touched_.end(); }
  void touch(WorkerId w) {
    if (!touched(w)) touched_.push_back(w);
  }

  // shutdown(cancel_futures) and terminate cancel everything queued ...
  void take_queue_for_cancel() {
    if (m_.phase() == Phase::broken) return;
    ev_.cancel.insert(queue_.begin(), queue_.end());
    queue_.clear();
  }

  // ... and every sent task that had not started (also on a worker being
  // killed: it may start them until the signal lands).
  void check_cancelled_all() {
    for (TaskId t : ev_.cancel) {
      POOL_CHECK("POOL-1", task(t).final && task(t).outcome == Outcome::cancelled,
                 where() + ": t" + str(t) + " taken back at shutdown(cancel_futures) was not cancelled");
    }
    if (m_.phase() == Phase::broken) return;
    for (const auto& [id, w] : live_) {
      for (const Held& h : w.held) {
        POOL_CHECK("POOL-7", w.slots.at(h.task) == Slot::started,
                   where() + ": t" + str(h.task) + ", sent to w" + str(id) +
                       " and not started, survived shutdown(cancel_futures)");
      }
    }
  }

  void exited(WorkerId id, int code) {
    // The driver reads the channel to the end before it reports the exit.
    while (deliver(id)) {
    }
    dying_store_ = live_.at(id);
    live_.erase(id);
    dying_ = &dying_store_;
    dying_id_ = id;
    const SimWorker& w = dying_store_;
    begin(Event::exit, id, 0, code);
    const bool broken_before = m_.phase() == Phase::broken;
    bool expect_break = false, expect_replacement = false;
    BrokenReason reason = BrokenReason::none;
    std::vector<TaskId> back;
    std::uint64_t retried = 0, requeued = 0;
    if (!broken_before) {
      if (!w.ready && w.active() && cfg_.has_initializer) {
        expect_break = true;  // it died in its initializer
        reason = BrokenReason::initializer_died;
      } else {
        // Each task it held started (lost, or retried) or did not (back to
        // the queue, uncounted): the slot says which.
        for (const Held& h : w.held) {
          SimTask& t = task(h.task);
          const bool started = w.slots.at(h.task) == Slot::started;
          POOL_CHECK("POOL-7", started || !h.known, where() + ": t" + str(h.task) + " known started, slot not");
          if (started) {
            ++t.lost_starts;
            if (!terminating_ && t.lost_starts <= static_cast<int>(cfg_.retries)) {
              back.push_back(h.task);
              ++retried;
            } else {
              ev_.lost.insert(h.task);
            }
          } else if (terminating_) {
            ev_.cancel.insert(h.task);
          } else {
            back.push_back(h.task);
            ++requeued;
          }
        }
        const bool planned = w.closed && !w.killed && w.held.empty() && code == 0;
        const bool unplanned_active = !planned && w.active();
        const std::size_t queued_after = queue_.size() + back.size();
        const bool spawn_useful = !terminating_ && (m_.phase() == Phase::running || queued_after > 0);
        if (unplanned_active && spawn_useful && sim_active() < cfg_.workers) {
          // An independent record: a replacement at r is within the window
          // while now - r < window (both non-negative: no overflow).
          while (!restarts_.empty() && now_ - restarts_.front() >= cfg_.restart_window) restarts_.pop_front();
          if (restarts_.size() >= cfg_.restart_limit) {
            expect_break = true;
            reason = BrokenReason::restart_limit;
          } else {
            expect_replacement = true;
            restarts_.push_back(now_);
            ++replacements_;
          }
        }
      }
    }
    // POOL-8: what did not start goes back to the front of the queue, in order.
    queue_.insert(queue_.begin(), back.begin(), back.end());
    retried_ += retried;
    requeued_ += requeued;
    const auto replacements = m_.counters().replacements;
    m_.worker_exited(id, code, now_);
    settle();
    dying_ = nullptr;
    POOL_CHECK("POOL-3", m_.state_of(id) == WState::exited && m_.in_flight(id) == 0,
               where() + ": the machine still holds the worker that exited");
    if (!broken_before) {
      POOL_CHECK(
          "POOL-5", (m_.phase() == Phase::broken) == expect_break,
          where() + (expect_break ? ": the pool should have broken (" : ": the pool broke (") +
              (reason == BrokenReason::initializer_died ? "death before ready with an initializer" : "restart limit") +
              ", " + str(restarts_.size()) + " replacements within the window, limit " + str(cfg_.restart_limit) + ")");
    }
    if (expect_break) {
      POOL_CHECK("POOL-5", m_.broken_reason() == reason && m_.broken_worker() == id && m_.broken_code() == code,
                 where() + ": broken with the wrong reason, worker or exit code");
    } else if (!broken_before) {
      POOL_CHECK("POOL-5", m_.counters().replacements - replacements == (expect_replacement ? 1u : 0u),
                 where() + (expect_replacement ? ": no replacement for an unplanned death"
                                               : ": a replacement nothing called for"));
      for (TaskId t : ev_.lost) {
        POOL_CHECK("POOL-2", task(t).final && task(t).outcome == Outcome::lost,
                   where() + ": started t" + str(t) + " (runs " + str(task(t).lost_starts) + ", retries " +
                       str(cfg_.retries) + ") was not resolved lost");
      }
      for (TaskId t : ev_.cancel) {
        POOL_CHECK("POOL-1", task(t).final && task(t).outcome == Outcome::cancelled,
                   where() + ": unstarted t" + str(t) + " of a worker dying while terminating was not cancelled");
      }
    }
    POOL_CHECK("POOL-8", m_.counters().retried == retried_ && m_.counters().requeued == requeued_,
               where() + ": retried/requeued " + str(m_.counters().retried) + "/" + str(m_.counters().requeued) +
                   ", expected " + str(retried_) + "/" + str(requeued_) +
                   " (only a started task is retried; every unstarted one is requeued)");
    check();
  }

  // Applies and checks the actions the last event produced.
  void settle() {
    std::vector<Action> acts = std::move(m_.actions());
    m_.actions().clear();
    bool any_broken = false;
    const bool broke_now = m_.phase() == Phase::broken && ev_.phase_before != Phase::broken;
    for (const Action& a : acts) {
      if (a.worker != 0) touch(a.worker);
      switch (a.kind) {
        case Action::spawn: {
          POOL_CHECK("POOL-3", ever_.insert(a.worker).second, where() + ": spawn reused worker id " + str(a.worker));
          POOL_CHECK("POOL-3", !terminating_ && ev_.phase_before != Phase::broken,
                     where() + ": spawn while terminating or broken");
          live_[a.worker] = SimWorker{};
          ++spawns_;
          break;
        }
        case Action::send: {
          ++sends_;
          POOL_CHECK("POOL-2", !expected_sends_.empty() && expected_sends_.front() == std::make_pair(a.worker, a.task),
                     where() + ": send of t" + str(a.task) + " to w" + str(a.worker) +
                         " that the gate was not asked about (or out of order)");
          expected_sends_.pop_front();
          auto it = live_.find(a.worker);
          POOL_CHECK("POOL-6", it != live_.end(), where() + ": send to a worker that is not alive");
          SimWorker& w = it->second;
          POOL_CHECK("POOL-6", w.ready && w.active(),
                     where() + ": send to w" + str(a.worker) + ", which is not ready and open");
          POOL_CHECK("POOL-6", cfg_.max_tasks_per_child == 0 || w.sent < cfg_.max_tasks_per_child,
                     where() + ": send beyond max_tasks_per_child");
          ++w.sent;
          break;
        }
        case Action::close: {
          auto it = live_.find(a.worker);
          POOL_CHECK("POOL-3", it != live_.end() && it->second.active(),
                     where() + ": close of a worker that is not alive and open");
          SimWorker& w = it->second;
          const bool retire = cfg_.max_tasks_per_child != 0 && w.sent >= cfg_.max_tasks_per_child;
          const bool idle_at_shutdown = m_.phase() == Phase::shutting_down && w.held.empty();
          POOL_CHECK("POOL-3", retire || idle_at_shutdown,
                     where() + ": close of w" + str(a.worker) + " with no reason to retire it");
          w.closed = true;
          break;
        }
        case Action::kill: {
          auto it = live_.find(a.worker);
          POOL_CHECK("POOL-6", it != live_.end() && !it->second.killed,
                     where() + ": kill of a worker that is not alive or already killed");
          const bool why = ev_.kind == Event::terminate || broke_now ||
                           (ev_.kind == Event::tick && ev_.to_kill.count(a.worker) == 1) ||
                           (ev_.kind == Event::bad_report && ev_.worker == a.worker);
          POOL_CHECK("POOL-6", why, where() + ": kill of w" + str(a.worker) + " for no reason");
          POOL_CHECK("POOL-6", a.code == (ev_.kind == Event::terminate ? ev_.code : 9),
                     where() + ": kill with signal " + std::to_string(a.code));
          it->second.killed = true;
          it->second.signal = a.code;
          break;
        }
        case Action::resolve: {
          ++resolves_;
          POOL_CHECK("POOL-1", known(a.task), where() + ": resolve of unknown task " + str(a.task));
          SimTask& t = task(a.task);
          POOL_CHECK("POOL-1", !t.final,
                     where() + ": task " + str(a.task) + " resolved " + name_of(a.outcome) +
                         " but it was already final (" + (t.dropped ? "dropped" : name_of(t.outcome)) + ")");
          POOL_CHECK("POOL-1", terminated_ == 0 || ev_.kind == Event::submit, where() + ": resolve after Terminated");
          t.final = true;
          t.outcome = a.outcome;
          on_resolve(a.task);
          bool allowed = false;
          switch (a.outcome) {
            case Outcome::value:
              allowed = ev_.kind == Event::deliver && a.task == ev_.value_task;
              break;
            case Outcome::lost:
              allowed = ev_.kind == Event::exit && ev_.lost.count(a.task) == 1 && a.worker == ev_.worker &&
                        a.code == ev_.code;
              break;
            case Outcome::timed_out:
              allowed = ev_.kind == Event::tick && ev_.timeouts.count(a.task) == 1;
              break;
            case Outcome::cancelled:
              allowed = ev_.cancel.count(a.task) == 1;
              break;
            case Outcome::broken:
              allowed = true;
              any_broken = true;
              // POOL-11: submitters were told before this future says so.
              POOL_CHECK("POOL-11", refusing_,
                         where() + ": task " + str(a.task) + " resolved broken before the machine published the break");
              break;
          }
          POOL_CHECK("POOL-1", allowed,
                     where() + ": task " + str(a.task) + " resolved " + name_of(a.outcome) +
                         ", which this event does not allow");
          if (auto q = std::find(queue_.begin(), queue_.end(), a.task); q != queue_.end()) queue_.erase(q);
          for (auto& [id, w] : live_) {
            auto h = std::find_if(w.held.begin(), w.held.end(), [&](const Held& x) { return x.task == a.task; });
            if (h == w.held.end()) continue;
            w.held.erase(h);
            if (a.outcome == Outcome::timed_out) w.timed_out = a.task;
            touch(id);
          }
          break;
        }
        case Action::broken:
          POOL_CHECK("POOL-11", broke_now && !refusing_,
                     where() + ": broken emitted " + (refusing_ ? "twice" : "while the pool did not break"));
          refusing_ = true;
          on_broken();
          break;
        case Action::terminated:
          ++terminated_;
          POOL_CHECK("POOL-1", terminated_ == 1, where() + ": Terminated twice");
          POOL_CHECK("POOL-1", live_.empty() && queue_.empty(),
                     where() + ": Terminated with " + str(live_.size()) + " workers and " + str(queue_.size()) +
                         " tasks queued");
          for (const SimTask& t : tasks_)
            POOL_CHECK("POOL-1", t.final, where() + ": Terminated before all tasks resolved");
          break;
      }
    }
    POOL_CHECK("POOL-2", expected_sends_.empty(), where() + ": the gate said yes, but nothing was sent");
    if (any_broken) POOL_CHECK("POOL-5", m_.phase() == Phase::broken, where() + ": resolved broken while not broken");
    POOL_CHECK("POOL-11", refusing_ == (m_.phase() == Phase::broken),
               where() + ": the pool broke and the machine did not publish it");
  }

  // What holds between any two events.
  void check() {
    const Phase ph = m_.phase();
    std::size_t held = 0;
    const bool all = live_.size() <= 8 || ev_.index % 64 == 0;
    for (const auto& [id, w] : live_) {
      POOL_CHECK("POOL-6", w.held.size() <= cfg_.depth, where() + ": a worker holds more than depth tasks");
      held += w.held.size();
      // Per-worker lookups are linear in the machine, and closed or killed
      // workers that have not exited pile up: look at the workers this event
      // named, and at all of them while few or every 64 events (the totals
      // below cover the rest every time).
      if (!all && !touched(id)) continue;
      POOL_CHECK("POOL-6", m_.in_flight(id) == w.held.size() && m_.sent_to(id) == w.sent,
                 where() + ": w" + str(id) + " in flight/sent " + str(m_.in_flight(id)) + "/" + str(m_.sent_to(id)) +
                     ", the world says " + str(w.held.size()) + "/" + str(w.sent));
      for (const Held& h : w.held) {
        POOL_CHECK("POOL-7", m_.known_started(id, h.task) == h.known,
                   where() + ": the machine " + (h.known ? "does not know" : "thinks") + " that t" + str(h.task) +
                       " at w" + str(id) + " started");
      }
      const WState s = m_.state_of(id);
      const bool state_ok = w.killed   ? s == WState::killing
                            : w.closed ? (s == WState::retiring || s == WState::closing)
                            : w.ready  ? s == WState::ready
                                       : s == WState::starting;
      POOL_CHECK("POOL-3", state_ok, where() + ": state_of(w" + str(id) + ") disagrees with the world");
    }
    POOL_CHECK("POOL-1",
               m_.live_workers() == live_.size() && m_.active_workers() == sim_active() &&
                   m_.queued() == queue_.size() && m_.in_flight() == held,
               where() + ": machine live/active/queued/in-flight " + str(m_.live_workers()) + "/" +
                   str(m_.active_workers()) + "/" + str(m_.queued()) + "/" + str(m_.in_flight()) + ", the world says " +
                   str(live_.size()) + "/" + str(sim_active()) + "/" + str(queue_.size()) + "/" + str(held));
    POOL_CHECK("POOL-6", m_.mean_run() == mean_ && m_.depth_now() == depth_now(),
               where() + ": mean run/depth now " + std::to_string(m_.mean_run().count()) + "ns/" + str(m_.depth_now()) +
                   ", the world says " + std::to_string(mean_.count()) + "ns/" + str(depth_now()));
    POOL_CHECK("POOL-8", m_.counters().retried == retried_ && m_.counters().requeued == requeued_,
               where() + ": retried/requeued counters disagree with the world");
    POOL_CHECK("POOL-3", m_.active_workers() <= cfg_.workers,
               where() + ": " + str(m_.active_workers()) + " active workers, above the target");
    if (ph == Phase::running || (ph == Phase::shutting_down && !terminating_ && !queue_.empty())) {
      POOL_CHECK("POOL-3", m_.active_workers() == cfg_.workers,
                 where() + ": " + str(m_.active_workers()) + " active workers, target " + str(cfg_.workers) +
                     (ph == Phase::running ? " (running)" : " (work queued)"));
    }
    if (ph == Phase::shutting_down && queue_.empty()) {
      for (const auto& [id, w] : live_) {
        POOL_CHECK("POOL-3", !(w.active() && w.held.empty()),
                   where() + ": idle w" + str(id) + " left open after the shutdown drained the queue");
      }
    }
    if (ph == Phase::broken) {
      for (const SimTask& t : tasks_) POOL_CHECK("POOL-5", t.final, where() + ": broken with a task pending");
      for (const auto& [id, w] : live_) {
        POOL_CHECK("POOL-5", w.killed, where() + ": broken with w" + str(id) + " not killed");
      }
    }
    if (ph != Phase::broken) check_work_conserved();
    if (ph != Phase::running && live_.empty() && queue_.empty()) {
      POOL_CHECK("POOL-1", terminated_ == 1, where() + ": drained with no worker left but not Terminated");
    }
    POOL_CHECK("POOL-1", m_.terminated() == (terminated_ == 1), where() + ": terminated() disagrees");
    Nanos deadline = kMax;
    for (const auto& [id, w] : live_) {
      if (w.killed || !(w.ready || w.closed)) continue;
      for (const Held& h : w.held) {
        const SimTask& t = task(h.task);
        if (h.known && t.timeout > Nanos::zero()) deadline = std::min(deadline, sat_add(h.known_at, t.timeout));
      }
    }
    POOL_CHECK("POOL-6", m_.next_deadline() == deadline,
               where() + ": next_deadline() " + std::to_string(m_.next_deadline().count()) + ", expected " +
                   std::to_string(deadline.count()));
  }

  // POOL-9: no ready worker waits for work that the queue, or another
  // worker's unstarted pipeline, holds for it.
  void check_work_conserved() {
    if (!queue_.empty()) {
      // The front fits no ready worker (FIFO: the rest waits behind it).
      const TaskId front = queue_.front();
      for (const auto& [id, w] : live_) {
        if (!w.ready || !w.active()) continue;
        const bool fits = room(w) && !w.has_stale(front) &&
                          (w.held.empty() || (task(w.held.back().task).timeout <= Nanos::zero() && !straggler(w)));
        POOL_CHECK("POOL-9", !fits,
                   where() + ": t" + str(front) + " stays queued while w" + str(id) + " could take it");
      }
      return;
    }
    for (const auto& [to, idle] : live_) {
      if (!idle.ready || !idle.active() || !idle.held.empty() || !room(idle)) continue;
      for (const auto& [from, w] : live_) {
        if (w.killed || w.held.size() < 2 || w.held.back().known) continue;
        POOL_CHECK("POOL-9", idle.has_stale(w.held.back().task),
                   where() + ": w" + str(to) + " is idle while w" + str(from) + " holds " + str(w.held.size()) +
                       " with unstarted t" + str(w.held.back().task) + " last");
      }
    }
  }

  MachineConfig cfg_;
  Gate gate_;
  Machine m_;
  Nanos now_;
  std::vector<SimTask> tasks_;  // task id i is tasks_[i - 1]
  std::deque<TaskId> queue_;    // the parent's FIFO as the contract predicts it
  std::map<WorkerId, SimWorker> live_;
  SimWorker dying_store_;  // the worker whose exit is being reported
  SimWorker* dying_ = nullptr;
  WorkerId dying_id_ = 0;
  std::set<WorkerId> ever_;
  std::deque<Nanos> restarts_;  // the world's own record of replacement times
  // Workers the current event or its actions named: one or two, so a vector
  // (a set allocated a node per insert, on every event).
  std::vector<WorkerId> touched_;
  std::deque<std::pair<WorkerId, TaskId>> expected_sends_;  // the gate said yes
  Nanos mean_{0};                                           // the world's own mean run time (notice to result)
  bool closed_ = false;
  bool terminating_ = false;
  int terminated_ = 0;
  bool refusing_ = false;  // the machine emitted `broken`: the driver refuses submits (POOL-11)
  std::uint64_t resolves_ = 0, sends_ = 0, spawns_ = 0, retried_ = 0, requeued_ = 0, replacements_ = 0;
  std::uint64_t revoked_ = 0, stolen_ = 0, skipped_ = 0;
  Event ev_;
};

bool Gate::dispatch(TaskId t, WorkerId w) { return w_.gate_dispatch(t, w); }
bool Gate::revoke(TaskId t, WorkerId w) { return w_.gate_revoke(t, w); }

}  // namespace
}  // namespace keel::pool_sim
