// Fuzz target pool_machine: keel::pool::Machine, the ProcessPool supervisor's
// pure state machine, driven by long, strange event sequences that a real
// driver could produce, with every action carried out in a simulated world.
//
// The target plays the driver and every worker process. Its world knows what
// the actions said: which workers live, which sent `ready`, which were closed
// or killed, the tasks sent to each in order, each task's runs and finality,
// the parent's FIFO queue and the clock. Workers behave as real ones can: a
// worker reports the first task it holds (also after a kill or a break, as a
// result written before the signal landed), sends `ready` once, may fail its
// initializer, and dies at any moment with any status; a faulty one reports a
// task that is not its first, after which the driver stops reading it. Time
// never goes back and stays below Nanos::max() (a steady clock cannot get
// there); timeouts include 0, negatives, 1 ns and values up to Nanos::max().
// A cancelled future is the StartGate's "no" for a task the script cancelled.
//
// Input: config bytes (workers 1-4, depth 1-4, max_tasks_per_child 0-3,
// retries 0-2, restart_limit 0-4, restart_window small/large/max/any,
// initializer, start time, how the run ends), then up to 400 operations, one
// opcode byte each plus operands: submit, submit burst, ready, ready all,
// result, bad result, exit as told, crash, tick, advance clock, init failed,
// cancel, shutdown, terminate. At the end the pool is shut down or terminated
// and every worker finishes and exits as told until the machine terminates.
//
// Checked as each action is applied, after every event and at the end:
// - POOL-1: every resolve names a known, pending task, with an outcome the
//   event allows (value only for the reporting worker's first task, lost only
//   for a dying worker's first, timed out only for an expired head, cancelled
//   only for queued tasks at shutdown/terminate or those behind a dead head
//   while terminating, broken only when the pool broke); nothing resolves after
//   Terminated; Terminated once, only with no worker and no queue; the machine
//   terminates once shut down and drained, never strands queued work that a
//   ready worker could take, and at the end every task is final exactly once.
// - POOL-2: a send takes the queue's front, never a cancelled or final task,
//   and only while the task has a run left (fewer than 1 + retries); on a death
//   the head is retried or lost as the retries say and the tasks behind it go
//   back to the queue's front uncounted; the gate is asked once per task.
// - POOL-3: active workers never exceed the target and equal it after every
//   event while running or while work is queued during a shutdown; an idle
//   worker is closed once a shutdown has drained the queue.
// - POOL-5: an initializer failure, or a death before ready with an
//   initializer, breaks the pool at once; each unplanned death is replaced or
//   breaks the pool exactly as an independent record of replacement times
//   within restart_window says; broken resolves every task and kills every
//   worker.
// - POOL-6: sends go to ready, open workers, below depth and
//   max_tasks_per_child (closed after the last); a timed task goes only to an
//   idle worker and nothing goes behind it; an expired head resolves
//   timed_out and its worker is killed; next_deadline() is the earliest
//   timed head.
// The machine's counts (queued, in flight, workers, state_of, sent_to,
// counters) must agree with the world throughout. Why a fuzzer next to the
// RapidCheck model test: coverage guidance reaches long, rare interleavings
// (a break while killed workers still report, an initializer failure during
// terminate, retirements racing deaths), and the clock and timeouts go to
// their limits, where the deadline and restart-window sums once overflowed.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
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
using WState = Machine::WorkerState;
using keel::pool::BrokenReason;

constexpr Nanos kMax = Nanos::max();
// The driver's clock is steady_clock since boot: it never reaches Nanos::max().
constexpr Nanos kClockMax = Nanos::max() - Nanos(1);
constexpr int kMaxEvents = 400;
constexpr std::size_t kMaxTasks = 256;

Nanos ms(std::int64_t n) { return std::chrono::milliseconds(n); }

// now + d (d >= 0), clamped to the clock's range.
Nanos clock_add(Nanos now, Nanos d) { return d >= kClockMax - now ? kClockMax : now + d; }

const char* name_of(Outcome o) {
  switch (o) {
    case Outcome::value:
      return "value";
    case Outcome::lost:
      return "lost";
    case Outcome::timed_out:
      return "timed_out";
    case Outcome::cancelled:
      return "cancelled";
    case Outcome::broken:
      return "broken";
  }
  return "?";
}

struct SimTask {
  Nanos timeout{0};
  bool user_cancelled = false;  // the script cancelled its future while it was pending
  bool started = false;         // the gate said yes
  bool asked = false;           // the gate was asked
  bool final = false;           // resolved, or refused by the gate
  bool dropped = false;         // refused by the gate
  Outcome outcome = Outcome::value;
  int runs = 0;     // times it was the first task of a worker that reported or died
  WorkerId at = 0;  // the live worker holding it; 0 while queued or done
  Nanos sent_at{0};
};

struct SimWorker {
  bool ready = false;
  bool closed = false;  // Close received: retiring or closing
  bool killed = false;
  int signal = 0;
  bool init_failed = false;
  bool faulty = false;       // reported a task that was not its first: the driver stops reading it
  std::deque<TaskId> tasks;  // sent and not yet reported, in order
  unsigned sent = 0;
  bool active() const { return !closed && !killed; }
};

// The event being processed, and what it allows the machine to do.
struct Event {
  enum Kind { start, submit, ready, result, bad_result, exit, tick, shutdown, terminate, init_failed } kind = start;
  int index = -1;
  WorkerId worker = 0;
  TaskId task = 0;
  int code = 0;
  TaskId value_task = 0;  // result: the reported task, if it was pending
  TaskId dying_head = 0;  // exit: the dead worker's pending first task
  std::set<TaskId> dying_rest;
  std::set<TaskId> timeouts;   // tick: expired heads
  std::set<WorkerId> to_kill;  // tick: their workers
  Phase phase_before = Phase::running;
};

const char* kind_name(Event::Kind k) {
  static const char* const names[] = {"start", "submit", "ready",    "result",    "bad_result",
                                      "exit",  "tick",   "shutdown", "terminate", "init_failed"};
  return names[k];
}

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
  World(const MachineConfig& cfg, Nanos t0) : cfg_(cfg), gate_(*this), m_(cfg_, gate_), now_(t0) {
    begin(Event::start);
    m_.start(now_);
    settle();
    KEEL_FUZZ_CHECK("POOL-3", live_.size() == cfg_.workers,
                    where() + ": start spawned " + std::to_string(live_.size()) + " workers, target " +
                        std::to_string(cfg_.workers));
    check();
  }

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
      KEEL_FUZZ_CHECK("POOL-1", task(id).final && task(id).outcome == Outcome::broken,
                      where() + ": a task submitted to a broken pool was not resolved broken at once");
    }
    check();
  }

  // The script cancels a pending future that has not started; the gate will say no.
  void cancel(unsigned sel, bool all) {
    std::vector<TaskId> c;
    for (TaskId id = 1; id <= tasks_.size(); ++id) {
      const SimTask& t = task(id);
      if (!t.started && !t.final && !t.user_cancelled) c.push_back(id);
    }
    if (c.empty()) return;
    if (all) {
      for (TaskId id : c) task(id).user_cancelled = true;
    } else {
      task(c[sel % c.size()]).user_cancelled = true;
    }
  }

  // A worker's `ready` frame: once per worker, also from a closed or killed
  // one (written before the close or the signal arrived).
  bool ready(unsigned sel) {
    const auto c = workers_where([](const SimWorker& w) { return !w.ready && !w.init_failed && !w.faulty; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    SimWorker& w = live_[id];
    w.ready = true;
    begin(Event::ready, id);
    m_.worker_ready(id, now_);
    settle();
    check();
    return true;
  }

  void ready_all() {
    for (int guard = 0; guard < 16; ++guard) {
      const auto c =
          workers_where([](const SimWorker& w) { return !w.ready && !w.init_failed && !w.faulty && w.active(); });
      if (c.empty()) return;
      ready(0);
    }
  }

  // The worker reports the first task it holds.
  bool result(unsigned sel) {
    const auto c = workers_where([](const SimWorker& w) { return !w.tasks.empty() && !w.faulty; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    SimWorker& w = live_[id];
    const TaskId head = w.tasks.front();
    w.tasks.pop_front();
    SimTask& t = task(head);
    ++t.runs;
    t.at = 0;
    const bool was_final = t.final;
    begin(Event::result, id, head);
    ev_.value_task = was_final ? 0 : head;
    const bool accepted = m_.result(id, head, now_);
    KEEL_FUZZ_CHECK("POOL-1", accepted, where() + ": the machine refused a worker's report of its first task");
    settle();
    if (!was_final) {
      KEEL_FUZZ_CHECK("POOL-1", t.final && t.outcome == Outcome::value,
                      where() + ": a pending first task reported by its worker was not resolved value");
    }
    check();
    return true;
  }

  // A faulty worker reports a task that is not its first (another worker's,
  // a queued one, a finished one, one never submitted, 0): refused, nothing
  // resolved, the worker killed; a broken pool just ignores it.
  bool bad_result(unsigned sel, unsigned which) {
    const auto c = workers_where([](const SimWorker& w) { return !w.faulty; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    SimWorker& w = live_[id];
    const TaskId head = w.tasks.empty() ? 0 : w.tasks.front();
    TaskId bogus = 0;
    switch (which % 5) {
      case 0:
        bogus = w.tasks.size() >= 2 ? w.tasks[1] : 0;
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
    if (bogus == head) bogus = static_cast<TaskId>(tasks_.size() + 7);
    const bool broken = m_.phase() == Phase::broken;
    const bool was_killed = w.killed;
    begin(Event::bad_result, id, bogus);
    const bool accepted = m_.result(id, bogus, now_);
    KEEL_FUZZ_CHECK("POOL-2", accepted == broken,
                    where() + ": result() returned " + (accepted ? "true" : "false") + " for a task that is not the " +
                        "worker's first (pool " + (broken ? "broken" : "not broken") + ")");
    settle();
    if (!broken) {
      KEEL_FUZZ_CHECK("POOL-2", w.killed && (was_killed || w.signal == 9),
                      where() + ": a worker that reported a task not its first was not killed with signal 9");
      w.faulty = true;
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

  // A live worker dies now with any status; `busy`: one of those holding the
  // most tasks, if any holds one.
  bool crash(unsigned sel, int code, bool busy) {
    std::size_t most = 0;
    for (const auto& [id, w] : live_) most = std::max(most, w.tasks.size());
    auto c = workers_where([&](const SimWorker& w) { return busy && most > 0 && w.tasks.size() == most; });
    if (c.empty()) c = workers_where([](const SimWorker&) { return true; });
    if (c.empty()) return false;
    exited(c[sel % c.size()], code);
    return true;
  }

  void tick() {
    begin(Event::tick);
    if (m_.phase() != Phase::broken) {
      for (const auto& [id, w] : live_) {
        if (w.killed || w.tasks.empty()) continue;
        const SimTask& h = task(w.tasks.front());
        // now >= sent_at >= 0: the difference cannot overflow.
        if (!h.final && h.timeout > Nanos::zero() && now_ - h.sent_at >= h.timeout) {
          ev_.timeouts.insert(w.tasks.front());
          ev_.to_kill.insert(id);
        }
      }
    }
    m_.tick(now_);
    settle();
    for (TaskId t : ev_.timeouts) {
      KEEL_FUZZ_CHECK("POOL-6", task(t).final && task(t).outcome == Outcome::timed_out,
                      where() + ": task " + std::to_string(t) + " ran past its timeout but was not resolved timed_out");
    }
    for (WorkerId id : ev_.to_kill) {
      KEEL_FUZZ_CHECK("POOL-6", live_[id].killed && live_[id].signal == 9,
                      where() + ": the worker of a timed-out task, w" + std::to_string(id) + ", was not killed (9)");
    }
    check();
  }

  void shutdown(bool cancel_futures) {
    closed_ = true;
    begin(Event::shutdown, 0, 0, cancel_futures ? 1 : 0);
    const std::deque<TaskId> queued = queue_;
    m_.shutdown(cancel_futures, now_);
    settle();
    if (cancel_futures) {
      for (TaskId t : queued) {
        KEEL_FUZZ_CHECK("POOL-1", task(t).final,
                        where() + ": queued task " + std::to_string(t) + " not final after shutdown(cancel_futures)");
      }
    }
    KEEL_FUZZ_CHECK("POOL-1", m_.phase() != Phase::running, where() + ": still running after shutdown");
    check();
  }

  void terminate(int signal) {
    closed_ = true;
    terminating_ = true;
    begin(Event::terminate, 0, 0, signal);
    m_.terminate(signal, now_);
    settle();
    KEEL_FUZZ_CHECK("POOL-1", queue_.empty(), where() + ": tasks still queued after terminate");
    for (const auto& [id, w] : live_) {
      KEEL_FUZZ_CHECK("POOL-1", w.killed, where() + ": w" + std::to_string(id) + " not killed by terminate");
    }
    check();
  }

  bool init_failed(unsigned sel) {
    if (!cfg_.has_initializer) return false;
    const auto c = workers_where([](const SimWorker& w) { return !w.ready && !w.init_failed && !w.faulty; });
    if (c.empty()) return false;
    const WorkerId id = c[sel % c.size()];
    live_[id].init_failed = true;
    const bool broken_before = m_.phase() == Phase::broken;
    begin(Event::init_failed, id);
    m_.init_failed(id, now_);
    settle();
    KEEL_FUZZ_CHECK("POOL-5", m_.phase() == Phase::broken, where() + ": an initializer failure did not break the pool");
    if (!broken_before) {
      KEEL_FUZZ_CHECK("POOL-5", m_.broken_reason() == BrokenReason::initializer_failed && m_.broken_worker() == id,
                      where() + ": broken for the wrong reason or worker");
    }
    check();
    return true;
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
      KEEL_FUZZ_CHECK("POOL-1", step < 100000, "the drain does not end");
      if (natural_exit(0)) continue;
      if (result(0)) continue;
      if (ready(0)) continue;
      KEEL_FUZZ_CHECK("POOL-1", false,
                      "stuck after the last event: nothing left to do, but the machine has not terminated (" +
                          std::to_string(live_.size()) + " workers, " + std::to_string(queue_.size()) + " queued)");
    }
    KEEL_FUZZ_CHECK("POOL-1", terminated_ == 1 && live_.empty() && queue_.empty(),
                    "terminated with workers or queued tasks left");
    const auto& k = m_.counters();
    std::uint64_t cancelled = 0, lost = 0, timed_out = 0, broken = 0;
    for (TaskId id = 1; id <= tasks_.size(); ++id) {
      const SimTask& t = task(id);
      KEEL_FUZZ_CHECK("POOL-1", t.final, "task " + std::to_string(id) + " never resolved");
      KEEL_FUZZ_CHECK("POOL-2", t.runs <= 1 + static_cast<int>(cfg_.retries),
                      "task " + std::to_string(id) + " ran " + std::to_string(t.runs) + " times");
      cancelled += t.outcome == Outcome::cancelled || t.dropped ? 1 : 0;
      lost += t.outcome == Outcome::lost && !t.dropped ? 1 : 0;
      timed_out += t.outcome == Outcome::timed_out && !t.dropped ? 1 : 0;
      broken += t.outcome == Outcome::broken && !t.dropped ? 1 : 0;
    }
    KEEL_FUZZ_CHECK("POOL-1",
                    k.submitted == tasks_.size() && k.resolved == resolves_ && k.sent == sends_ &&
                        k.spawned == spawns_ && k.cancelled == cancelled && k.lost == lost &&
                        k.timed_out == timed_out && k.broken == broken,
                    "the machine's counters disagree with the actions it emitted");
    KEEL_FUZZ_CHECK("POOL-2", k.retried == retried_ && k.requeued == requeued_,
                    "retried/requeued " + std::to_string(k.retried) + "/" + std::to_string(k.requeued) + ", expected " +
                        std::to_string(retried_) + "/" + std::to_string(requeued_));
    KEEL_FUZZ_CHECK("POOL-5", k.replacements == replacements_,
                    "replacements " + std::to_string(k.replacements) + ", expected " + std::to_string(replacements_));
  }

  bool try_start(TaskId id) {
    KEEL_FUZZ_CHECK("POOL-2", id >= 1 && id <= tasks_.size(),
                    where() + ": the gate was asked about unknown task " + std::to_string(id));
    SimTask& t = task(id);
    KEEL_FUZZ_CHECK("POOL-2", !t.asked, where() + ": the gate was asked twice about task " + std::to_string(id));
    KEEL_FUZZ_CHECK("POOL-1", !t.final, where() + ": the gate was asked about final task " + std::to_string(id));
    t.asked = true;
    // FIFO: asked when it reaches the front; the tasks still ahead of it in
    // the world's queue are those this event is sending (actions are applied
    // after the event returns), all started.
    const auto pos = std::find(queue_.begin(), queue_.end(), id);
    KEEL_FUZZ_CHECK("POOL-2", pos != queue_.end(),
                    where() + ": the gate was asked about task " + std::to_string(id) + ", which is not queued");
    KEEL_FUZZ_CHECK("POOL-2", std::all_of(queue_.begin(), pos, [&](TaskId o) { return task(o).started; }),
                    where() + ": the gate was asked about task " + std::to_string(id) + " out of FIFO order");
    if (t.user_cancelled) {
      t.final = true;
      t.dropped = true;
      t.outcome = Outcome::cancelled;
      queue_.erase(pos);
      return false;
    }
    t.started = true;
    return true;
  }

 private:
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

  unsigned sim_active() const {
    unsigned n = 0;
    for (const auto& [id, w] : live_) n += w.active() ? 1 : 0;
    return n;
  }

  std::string where() const {
    std::string s = "event " + std::to_string(ev_.index) + " (" + kind_name(ev_.kind);
    if (ev_.worker != 0) s += " w" + std::to_string(ev_.worker);
    if (ev_.task != 0) s += " t" + std::to_string(ev_.task);
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
    if (w != 0) touched_.insert(w);
  }

  void exited(WorkerId id, int code) {
    SimWorker w = live_[id];
    live_.erase(id);
    begin(Event::exit, id, 0, code);
    const bool broken_before = m_.phase() == Phase::broken;
    bool expect_break = false, expect_replacement = false, expect_lost = false;
    BrokenReason reason = BrokenReason::none;
    std::vector<TaskId> back_to_queue;
    if (!w.tasks.empty()) {
      ++task(w.tasks.front()).runs;  // the only one that can have started
      for (TaskId t : w.tasks) task(t).at = 0;
    }
    if (!broken_before) {
      if (!w.ready && w.active() && cfg_.has_initializer) {
        expect_break = true;  // it died in its initializer
        reason = BrokenReason::initializer_died;
      } else {
        if (!w.tasks.empty()) {
          const TaskId head = w.tasks.front();
          const SimTask& h = task(head);
          if (!h.final) {
            ev_.dying_head = head;
            expect_lost = terminating_ || h.runs > static_cast<int>(cfg_.retries);
            if (!expect_lost) back_to_queue.push_back(head);
          } else {
            KEEL_FUZZ_CHECK("POOL-6", w.tasks.size() == 1,
                            where() + ": a timed-out task did not run alone on its worker");
          }
          for (std::size_t i = 1; i < w.tasks.size(); ++i) {
            KEEL_FUZZ_CHECK("POOL-1", !task(w.tasks[i]).final,
                            where() + ": a task behind the head was final before its worker died");
            if (terminating_) {
              ev_.dying_rest.insert(w.tasks[i]);
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
    // Untouched tasks go back to the front of the queue, in their order.
    queue_.insert(queue_.begin(), back_to_queue.begin(), back_to_queue.end());
    if (ev_.dying_head != 0 && !expect_lost) {
      ++retried_;
      requeued_ += back_to_queue.size() - 1;
    } else {
      requeued_ += back_to_queue.size();
    }
    const auto replacements = m_.counters().replacements;
    m_.worker_exited(id, code, now_);
    settle();
    KEEL_FUZZ_CHECK("POOL-3", m_.state_of(id) == WState::exited && m_.in_flight(id) == 0,
                    where() + ": the machine still holds the worker that exited");
    if (!broken_before) {
      KEEL_FUZZ_CHECK(
          "POOL-5", (m_.phase() == Phase::broken) == expect_break,
          where() + (expect_break ? ": the pool should have broken (" : ": the pool broke (") +
              (reason == BrokenReason::initializer_died ? "death before ready with an initializer" : "restart limit") +
              ", " + std::to_string(restarts_.size()) + " replacements within the window, limit " +
              std::to_string(cfg_.restart_limit) + ")");
    }
    if (expect_break) {
      KEEL_FUZZ_CHECK("POOL-5", m_.broken_reason() == reason && m_.broken_worker() == id && m_.broken_code() == code,
                      where() + ": broken with the wrong reason, worker or exit code");
    } else if (!broken_before) {
      KEEL_FUZZ_CHECK("POOL-5", m_.counters().replacements - replacements == (expect_replacement ? 1u : 0u),
                      where() + (expect_replacement ? ": no replacement for an unplanned death"
                                                    : ": a replacement nothing called for"));
      if (ev_.dying_head != 0) {
        const SimTask& h = task(ev_.dying_head);
        KEEL_FUZZ_CHECK("POOL-2", h.final == expect_lost && (!expect_lost || h.outcome == Outcome::lost),
                        where() + ": the dead worker's first task t" + std::to_string(ev_.dying_head) + " (runs " +
                            std::to_string(h.runs) + ", retries " + std::to_string(cfg_.retries) + ") was " +
                            (h.final ? std::string("resolved ") + name_of(h.outcome) : "not resolved") +
                            (expect_lost ? ", expected lost" : ", expected a retry"));
      }
      for (TaskId t : ev_.dying_rest) {
        KEEL_FUZZ_CHECK("POOL-1", task(t).final && task(t).outcome == Outcome::cancelled,
                        where() + ": a task behind a dead head while terminating was not cancelled");
      }
    }
    check();
  }

  // Applies and checks the actions the last event produced.
  void settle() {
    std::vector<Action> acts = std::move(m_.actions());
    m_.actions().clear();
    bool any_broken = false;
    const bool broke_now = m_.phase() == Phase::broken && ev_.phase_before != Phase::broken;
    for (const Action& a : acts) {
      if (a.worker != 0) touched_.insert(a.worker);
      switch (a.kind) {
        case Action::spawn: {
          KEEL_FUZZ_CHECK("POOL-3", ever_.insert(a.worker).second,
                          where() + ": spawn reused worker id " + std::to_string(a.worker));
          KEEL_FUZZ_CHECK("POOL-3", !terminating_ && ev_.phase_before != Phase::broken,
                          where() + ": spawn while terminating or broken");
          live_[a.worker] = SimWorker{};
          ++spawns_;
          break;
        }
        case Action::send: {
          ++sends_;
          auto it = live_.find(a.worker);
          KEEL_FUZZ_CHECK("POOL-6", it != live_.end(), where() + ": send to a worker that is not alive");
          SimWorker& w = it->second;
          KEEL_FUZZ_CHECK("POOL-6", w.ready && w.active(),
                          where() + ": send to w" + std::to_string(a.worker) + ", which is not ready and open");
          KEEL_FUZZ_CHECK("POOL-2", known(a.task), where() + ": send of unknown task " + std::to_string(a.task));
          SimTask& t = task(a.task);
          KEEL_FUZZ_CHECK("POOL-2", t.started && !t.final && !t.user_cancelled && t.at == 0,
                          where() + ": send of task " + std::to_string(a.task) +
                              (t.user_cancelled ? ", which was cancelled" : ", which is not a pending started task"));
          KEEL_FUZZ_CHECK("POOL-2", !queue_.empty() && queue_.front() == a.task,
                          where() + ": send of task " + std::to_string(a.task) + ", which is not the queue's front");
          KEEL_FUZZ_CHECK("POOL-2", t.runs <= static_cast<int>(cfg_.retries),
                          where() + ": task " + std::to_string(a.task) + " sent for a run beyond 1 + retries");
          queue_.pop_front();
          KEEL_FUZZ_CHECK("POOL-6", w.tasks.size() < cfg_.depth,
                          where() + ": send beyond depth " + std::to_string(cfg_.depth));
          KEEL_FUZZ_CHECK("POOL-6", t.timeout <= Nanos::zero() || w.tasks.empty(),
                          where() + ": a timed task sent to a busy worker");
          for (TaskId o : w.tasks) {
            KEEL_FUZZ_CHECK("POOL-6", task(o).timeout <= Nanos::zero(),
                            where() + ": a task sent behind timed task " + std::to_string(o));
          }
          KEEL_FUZZ_CHECK("POOL-6", cfg_.max_tasks_per_child == 0 || w.sent < cfg_.max_tasks_per_child,
                          where() + ": send beyond max_tasks_per_child");
          w.tasks.push_back(a.task);
          ++w.sent;
          t.at = a.worker;
          t.sent_at = now_;
          break;
        }
        case Action::close: {
          auto it = live_.find(a.worker);
          KEEL_FUZZ_CHECK("POOL-3", it != live_.end() && it->second.active(),
                          where() + ": close of a worker that is not alive and open");
          SimWorker& w = it->second;
          const bool retire = cfg_.max_tasks_per_child != 0 && w.sent >= cfg_.max_tasks_per_child;
          const bool idle_at_shutdown = m_.phase() == Phase::shutting_down && w.tasks.empty();
          KEEL_FUZZ_CHECK("POOL-3", retire || idle_at_shutdown,
                          where() + ": close of w" + std::to_string(a.worker) + " with no reason to retire it");
          w.closed = true;
          break;
        }
        case Action::kill: {
          auto it = live_.find(a.worker);
          KEEL_FUZZ_CHECK("POOL-6", it != live_.end() && !it->second.killed,
                          where() + ": kill of a worker that is not alive or already killed");
          const bool why = ev_.kind == Event::terminate || broke_now ||
                           (ev_.kind == Event::tick && ev_.to_kill.count(a.worker) == 1) ||
                           (ev_.kind == Event::bad_result && ev_.worker == a.worker);
          KEEL_FUZZ_CHECK("POOL-6", why, where() + ": kill of w" + std::to_string(a.worker) + " for no reason");
          KEEL_FUZZ_CHECK("POOL-6", a.code == (ev_.kind == Event::terminate ? ev_.code : 9),
                          where() + ": kill with signal " + std::to_string(a.code));
          it->second.killed = true;
          it->second.signal = a.code;
          break;
        }
        case Action::resolve: {
          ++resolves_;
          KEEL_FUZZ_CHECK("POOL-1", known(a.task), where() + ": resolve of unknown task " + std::to_string(a.task));
          SimTask& t = task(a.task);
          KEEL_FUZZ_CHECK("POOL-1", !t.final,
                          where() + ": task " + std::to_string(a.task) + " resolved " + name_of(a.outcome) +
                              " but it was already final (" + (t.dropped ? "cancelled" : name_of(t.outcome)) + ")");
          KEEL_FUZZ_CHECK("POOL-1", terminated_ == 0 || ev_.kind == Event::submit,
                          where() + ": resolve after Terminated");
          t.final = true;
          t.outcome = a.outcome;
          const auto q = std::find(queue_.begin(), queue_.end(), a.task);
          const bool queued = q != queue_.end();
          bool allowed = false;
          switch (a.outcome) {
            case Outcome::value:
              allowed = ev_.kind == Event::result && a.task == ev_.value_task;
              break;
            case Outcome::lost:
              allowed =
                  ev_.kind == Event::exit && a.task == ev_.dying_head && a.worker == ev_.worker && a.code == ev_.code;
              break;
            case Outcome::timed_out:
              allowed = ev_.kind == Event::tick && ev_.timeouts.count(a.task) == 1;
              break;
            case Outcome::cancelled:
              allowed = (queued && (ev_.kind == Event::terminate || (ev_.kind == Event::shutdown && ev_.code == 1))) ||
                        (ev_.kind == Event::exit && ev_.dying_rest.count(a.task) == 1);
              break;
            case Outcome::broken:
              allowed = true;
              any_broken = true;
              break;
          }
          KEEL_FUZZ_CHECK("POOL-1", allowed,
                          where() + ": task " + std::to_string(a.task) + " resolved " + name_of(a.outcome) +
                              ", which this event does not allow");
          if (queued) queue_.erase(q);
          break;
        }
        case Action::terminated:
          ++terminated_;
          KEEL_FUZZ_CHECK("POOL-1", terminated_ == 1, where() + ": Terminated twice");
          KEEL_FUZZ_CHECK("POOL-1", live_.empty() && queue_.empty(),
                          where() + ": Terminated with " + std::to_string(live_.size()) + " workers and " +
                              std::to_string(queue_.size()) + " tasks queued");
          for (const SimTask& t : tasks_)
            KEEL_FUZZ_CHECK("POOL-1", t.final, where() + ": Terminated before all tasks resolved");
          break;
      }
    }
    if (any_broken)
      KEEL_FUZZ_CHECK("POOL-5", m_.phase() == Phase::broken, where() + ": resolved broken while not broken");
  }

  // What holds between any two events.
  void check() {
    const Phase ph = m_.phase();
    std::size_t held = 0;
    for (const auto& [id, w] : live_) {
      KEEL_FUZZ_CHECK("POOL-6", w.tasks.size() <= cfg_.depth, where() + ": a worker holds more than depth tasks");
      std::size_t pending = 0;
      for (TaskId t : w.tasks) pending += task(t).final ? 0 : 1;
      held += pending;
      // Per-worker lookups are linear in the machine, and closed or killed
      // workers that have not exited pile up: look at the workers this event
      // named, and at all of them while few or every 64 events (the totals
      // below cover the rest every time).
      if (live_.size() > 8 && ev_.index % 64 != 0 && touched_.count(id) == 0) continue;
      KEEL_FUZZ_CHECK("POOL-6", m_.in_flight(id) == pending && m_.sent_to(id) == w.sent,
                      where() + ": w" + std::to_string(id) + " in flight/sent " + std::to_string(m_.in_flight(id)) +
                          "/" + std::to_string(m_.sent_to(id)) + ", the world says " + std::to_string(pending) + "/" +
                          std::to_string(w.sent));
      const WState s = m_.state_of(id);
      const bool state_ok = w.killed   ? s == WState::killing
                            : w.closed ? (s == WState::retiring || s == WState::closing)
                            : w.ready  ? s == WState::ready
                                       : s == WState::starting;
      KEEL_FUZZ_CHECK("POOL-3", state_ok, where() + ": state_of(w" + std::to_string(id) + ") disagrees with the world");
    }
    KEEL_FUZZ_CHECK("POOL-1",
                    m_.live_workers() == live_.size() && m_.active_workers() == sim_active() &&
                        m_.queued() == queue_.size() && m_.in_flight() == held,
                    where() + ": machine live/active/queued/in-flight " + std::to_string(m_.live_workers()) + "/" +
                        std::to_string(m_.active_workers()) + "/" + std::to_string(m_.queued()) + "/" +
                        std::to_string(m_.in_flight()) + ", the world says " + std::to_string(live_.size()) + "/" +
                        std::to_string(sim_active()) + "/" + std::to_string(queue_.size()) + "/" +
                        std::to_string(held));
    KEEL_FUZZ_CHECK("POOL-3", m_.active_workers() <= cfg_.workers,
                    where() + ": " + std::to_string(m_.active_workers()) + " active workers, above the target");
    if (ph == Phase::running || (ph == Phase::shutting_down && !terminating_ && !queue_.empty())) {
      KEEL_FUZZ_CHECK("POOL-3", m_.active_workers() == cfg_.workers,
                      where() + ": " + std::to_string(m_.active_workers()) + " active workers, target " +
                          std::to_string(cfg_.workers) + (ph == Phase::running ? " (running)" : " (work queued)"));
    }
    if (ph == Phase::shutting_down && queue_.empty()) {
      for (const auto& [id, w] : live_) {
        KEEL_FUZZ_CHECK("POOL-3", !(w.active() && w.tasks.empty()),
                        where() + ": idle w" + std::to_string(id) + " left open after the shutdown drained the queue");
      }
    }
    if (ph == Phase::broken) {
      for (const SimTask& t : tasks_) KEEL_FUZZ_CHECK("POOL-5", t.final, where() + ": broken with a task pending");
      for (const auto& [id, w] : live_) {
        KEEL_FUZZ_CHECK("POOL-5", w.killed, where() + ": broken with w" + std::to_string(id) + " not killed");
      }
    }
    if (!queue_.empty() && ph != Phase::broken) {
      // Nothing stranded: the front task fits no ready worker.
      const SimTask& front = task(queue_.front());
      for (const auto& [id, w] : live_) {
        if (!w.ready || !w.active() || w.tasks.size() >= cfg_.depth) continue;
        const bool fits =
            w.tasks.empty() || (front.timeout <= Nanos::zero() && task(w.tasks.back()).timeout <= Nanos::zero());
        KEEL_FUZZ_CHECK("POOL-1", !fits,
                        where() + ": task " + std::to_string(queue_.front()) + " stays queued while w" +
                            std::to_string(id) + " could take it");
      }
    }
    if (ph != Phase::running && live_.empty() && queue_.empty()) {
      KEEL_FUZZ_CHECK("POOL-1", terminated_ == 1, where() + ": drained with no worker left but not Terminated");
    }
    KEEL_FUZZ_CHECK("POOL-1", m_.terminated() == (terminated_ == 1), where() + ": terminated() disagrees");
    Nanos deadline = kMax;
    for (const auto& [id, w] : live_) {
      if (w.killed || w.tasks.empty()) continue;
      const SimTask& h = task(w.tasks.front());
      if (h.final || h.timeout <= Nanos::zero()) continue;
      // The contract's saturation: a deadline past the clock's range is "none".
      const Nanos d = h.timeout >= kMax - h.sent_at ? kMax : h.sent_at + h.timeout;
      deadline = std::min(deadline, d);
    }
    KEEL_FUZZ_CHECK("POOL-6", m_.next_deadline() == deadline,
                    where() + ": next_deadline() " + std::to_string(m_.next_deadline().count()) + ", expected " +
                        std::to_string(deadline.count()));
  }

  MachineConfig cfg_;
  Gate gate_;
  Machine m_;
  Nanos now_;
  std::vector<SimTask> tasks_;  // task id i is tasks_[i - 1]
  std::deque<TaskId> queue_;    // the parent's FIFO as the contract predicts it
  std::map<WorkerId, SimWorker> live_;
  std::set<WorkerId> ever_;
  std::deque<Nanos> restarts_;  // the world's own record of replacement times
  std::set<WorkerId> touched_;  // workers the current event or its actions named
  bool closed_ = false;
  bool terminating_ = false;
  int terminated_ = 0;
  std::uint64_t resolves_ = 0, sends_ = 0, spawns_ = 0, retried_ = 0, requeued_ = 0, replacements_ = 0;
  Event ev_;
};

bool Gate::try_start(TaskId t) { return w_.try_start(t); }

Nanos pick_timeout(keel::fuzz::Input& in, Nanos now) {
  const std::uint8_t b = in.byte();
  if (b < 128) return Nanos::zero();  // most tasks are untimed
  switch (b % 14) {
    case 0:
      return Nanos(-1);
    case 1:
      return Nanos::min();
    case 2:
      return Nanos(1);
    case 3:
      return ms(1);
    case 4:
      return ms(5);
    case 5:
      return ms(20);
    case 6:
      return std::chrono::seconds(1);
    case 7:
      return kMax;
    case 8:
      return kMax - Nanos(1);
    case 9:
      return kMax - now;  // the deadline is exactly Nanos::max()
    case 10:
      return kMax - now - Nanos(1);
    case 11:
      return Nanos(in.integral<std::uint32_t>());
    case 12:
      return Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>()));
    default:
      return ms(in.below(100));
  }
}

Nanos pick_time(keel::fuzz::Input& in, const World& w, const MachineConfig& cfg) {
  const Nanos now = w.now();
  const Nanos deadline = w.machine().next_deadline();
  switch (in.byte() % 16) {
    case 0:
      return now;
    case 1:
      return clock_add(now, Nanos(1));
    case 2:
    case 3:
      return clock_add(now, ms(1));
    case 4:
    case 5:
      return clock_add(now, ms(10));
    case 6:
      return clock_add(now, std::chrono::seconds(1));
    case 7:
      return clock_add(now, std::chrono::hours(1));
    case 8:
      return deadline == kMax ? clock_add(now, ms(5)) : deadline - Nanos(1);
    case 9:
    case 10:
      return deadline == kMax ? clock_add(now, ms(5)) : deadline;
    case 11:
      return deadline == kMax ? clock_add(now, ms(5)) : clock_add(deadline, Nanos(1));
    case 12:
      return kClockMax;
    case 13:
      return clock_add(now, cfg.restart_window);
    case 14:
      return clock_add(now, cfg.restart_window - Nanos(1));
    default:
      return clock_add(now, Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>() >> 1)));
  }
}

int pick_code(keel::fuzz::Input& in) {
  static constexpr int codes[] = {0, 1, -9, -11, -15, 127, 255, -6};
  const std::uint8_t b = in.byte();
  return b < 200 ? codes[b % std::size(codes)] : static_cast<int>(static_cast<std::int8_t>(in.byte()));
}

}  // namespace

KEEL_FUZZ_TARGET(pool_machine) {
  MachineConfig cfg;
  cfg.workers = static_cast<unsigned>(in.in_range(1, 4));
  cfg.depth = static_cast<unsigned>(in.in_range(1, 4));
  cfg.max_tasks_per_child = static_cast<unsigned>(in.below(4));
  cfg.retries = static_cast<unsigned>(in.below(3));
  cfg.restart_limit = static_cast<unsigned>(in.below(5));
  switch (in.byte() % 5) {
    case 0:
      cfg.restart_window = ms(10);
      break;
    case 1:
      cfg.restart_window = std::chrono::seconds(10);
      break;
    case 2:
      cfg.restart_window = kMax;
      break;
    case 3:
      cfg.restart_window = Nanos(1);
      break;
    default:
      cfg.restart_window = Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>() >> 2) + 1);
      break;
  }
  cfg.has_initializer = in.boolean();
  Nanos t0{0};
  switch (in.byte() % 5) {
    case 1:
      t0 = std::chrono::hours(24 * 365);
      break;
    case 2:
      t0 = kClockMax - std::chrono::seconds(1);
      break;
    case 3:
      t0 = kClockMax;
      break;
    case 4:
      t0 = Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>() >> 1));
      break;
    default:
      break;
  }
  const int finale = static_cast<int>(in.below(4));

  World world(cfg, std::min(t0, kClockMax));
  for (int n = 0; n < kMaxEvents && !in.empty(); ++n) {
    const std::uint8_t op = in.byte();
    switch (op % 16) {
      case 0:
      case 1:
        if (!world.closed() && world.task_count() < kMaxTasks) world.submit(pick_timeout(in, world.now()));
        break;
      case 2: {
        const std::size_t burst = in.in_range(1, 8);
        const Nanos timeout = pick_timeout(in, world.now());
        for (std::size_t i = 0; i < burst && !world.closed() && world.task_count() < kMaxTasks; ++i) {
          world.submit(timeout);
        }
        break;
      }
      case 3:
        world.ready(in.byte());
        break;
      case 4:
      case 5:
        world.result(in.byte());
        break;
      case 6: {
        const unsigned sel = in.byte();
        world.bad_result(sel, in.byte());
        break;
      }
      case 7:
        world.natural_exit(in.byte());
        break;
      case 8: {
        const unsigned sel = in.byte();
        const int code = pick_code(in);
        world.crash(sel, code, in.boolean());
        break;
      }
      case 9:
        world.set_clock(pick_time(in, world, cfg));
        world.tick();
        break;
      case 10:
        world.set_clock(pick_time(in, world, cfg));
        break;
      case 11:
        world.init_failed(in.byte());
        break;
      case 12: {
        const unsigned sel = in.byte();
        world.cancel(sel, (sel & 0xc0) == 0xc0);
        break;
      }
      case 13:
        // Rare: the script runs long before the pool closes.
        if ((op & 0x30) == 0x30) world.shutdown(in.boolean());
        break;
      case 14:
        if ((op & 0x30) == 0x30) world.terminate(in.boolean() ? 9 : 15);
        break;
      default:
        world.ready_all();
        break;
    }
  }
  world.drive_to_termination(finale);
}
