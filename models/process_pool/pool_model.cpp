// Relacy models of the ProcessPool supervisor: the real keel::pool::Edge (the
// threads that submit vs the supervisor thread) and the real
// keel::pool::Machine (the supervisor's decisions), through the shim.
//
// The driver is played by the model: a PoolWorld owns the Machine, acts as its
// StartGate, carries out its actions (spawn, send, close, kill, resolve,
// terminated) on simulated workers, and checks each action against what the
// event that produced it allows. Simulated workers behave as real ones can: a
// worker reports the result of the first task it holds (also after a Kill: a
// result written before the signal landed), dies at any moment, and otherwise
// exits only when killed (-signal), after a failed initializer (1), or when
// closed with nothing left (0). A faulty worker may report a task that is not
// its first. After every step: POOL-1 (no task resolved twice; nothing sent
// after it is final), POOL-2 (runs <= 1 + retries; lost only for a dying
// worker's first task, and only once out of runs or while terminating;
// untouched tasks go back to the front of the queue in order), POOL-3 (active
// workers at the target while running), POOL-5 (a death past the restart
// limit breaks the pool, otherwise it is replaced; BROKEN resolves everything
// and kills every worker), POOL-6 (depth, timed tasks alone, at most
// max_tasks_per_child sends). Each model ends by driving the pool to
// Terminated and requires every task resolved exactly once.
//
// Search: random (Relacy's full search of even two threads does not finish
// in minutes once the machine's choices are explored too; see each row).
//
// KEEL-TWIN pool_edge_submit_after_close
// KEEL-TWIN pool_edge_ring_when_nonempty
// KEEL-TWIN pool_requeue_only_head
// KEEL-TWIN pool_retry_unbounded
// KEEL-TWIN pool_respawn_unlimited
// KEEL-TWIN pool_no_replace_in_shutdown
// KEEL-TWIN pool_result_accepts_non_head
// KEEL-TWIN pool_late_result_resolved
// KEEL-TWIN pool_gate_not_consulted
// KEEL-TWIN pool_no_close_at_max_tasks
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "harness.hpp"
#include "keel/platform/var.hpp"
#include "keel/process_pool/edge.hpp"
#include "keel/process_pool/machine.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/semaphore.hpp"
#include "pool_unity.hpp"

namespace {

using keel::pool::Action;
using keel::pool::Command;
using keel::pool::Machine;
using keel::pool::MachineConfig;
using keel::pool::Nanos;
using keel::pool::Outcome;
using keel::pool::TaskId;
using keel::pool::WorkerId;
using Phase = Machine::Phase;

Nanos ms(long n) { return std::chrono::milliseconds(n); }

// What a submitter keeps of one submission; the supervisor counts its Resolves.
struct Record {
  keel::platform::Var<int> resolved;
};

// ---------------------------------------------------------------- the driver

class PoolWorld final : public keel::pool::StartGate {
 public:
  struct Task {
    Nanos timeout{0};
    bool cancelled = false;  // its future was cancelled while pending
    bool started = false;    // the gate said yes
    int finals = 0;          // Resolves + gate refusals
    Outcome outcome = Outcome::value;
    int runs = 0;  // times it was first in a worker that reported or died
    Nanos sent_at{0};
    Record* record = nullptr;
  };
  struct Worker {
    bool ready = false;
    bool closed = false;
    bool killed = false;
    bool faulty = false;  // killed while active for a bad report
    bool init_failed = false;
    int signal = 0;
    std::deque<TaskId> tasks;  // sent, not reported, in order
    unsigned sent = 0;
    bool active() const { return !closed && !killed; }
  };

  explicit PoolWorld(const MachineConfig& c) : cfg_(c), m_(c, *this) {}

  const Machine& machine() const { return m_; }
  bool terminated() const { return m_.terminated(); }

  void start() {
    begin(Kind::other);
    m_.start(now_);
    settle();
    check();
  }

  bool try_start(TaskId id) override {
    Task& t = task(id);
    RL_ASSERT(!t.started && t.finals == 0);
    const auto pos = std::find(queue_.begin(), queue_.end(), id);
    RL_ASSERT(pos != queue_.end());
    // FIFO: what is ahead of it is being sent by this same event.
    RL_ASSERT(std::all_of(queue_.begin(), pos, [&](TaskId o) { return task(o).started; }));
    if (t.cancelled) {
      t.finals = 1;
      queue_.erase(pos);
      return false;
    }
    t.started = true;
    return true;
  }

  // ---- events

  void submit(TaskId id, Nanos timeout, Record* r = nullptr) {
    RL_ASSERT(tasks_.count(id) == 0);
    Task t;
    t.timeout = timeout;
    t.record = r;
    tasks_[id] = t;
    queue_.push_back(id);
    const bool was_broken = m_.phase() == Phase::broken;
    begin(Kind::other);
    m_.submit(id, timeout, now_);
    settle();
    if (was_broken) RL_ASSERT(task(id).finals == 1 && task(id).outcome == Outcome::broken);
    check();
  }
  void cancel(TaskId id) {
    auto it = tasks_.find(id);
    if (it != tasks_.end() && !it->second.started && it->second.finals == 0) it->second.cancelled = true;
  }
  void shutdown(bool cancel_futures) {
    begin(Kind::closing);
    m_.shutdown(cancel_futures, now_);
    settle();
    if (cancel_futures) RL_ASSERT(queue_.empty());
    check();
  }
  void terminate(int signal) {
    terminating_ = true;
    begin(Kind::closing);
    m_.terminate(signal, now_);
    settle();
    RL_ASSERT(queue_.empty());
    for (auto& [id, w] : live_) RL_ASSERT(w.killed);
    check();
  }

  enum class Ev { ready, result, bad_result, crash, exit, init_failed, tick };
  struct Choice {
    Ev ev;
    WorkerId w;
  };
  // Every event of the kinds in `allowed` (a bit per Ev) that could happen now.
  std::vector<Choice> choices(unsigned allowed) const {
    std::vector<Choice> c;
    auto on = [&](Ev e) { return (allowed >> static_cast<unsigned>(e) & 1u) != 0; };
    for (const auto& [id, w] : live_) {
      if (on(Ev::ready) && !w.ready && !w.killed && !w.init_failed) c.push_back({Ev::ready, id});
      if (on(Ev::result) && !w.tasks.empty()) c.push_back({Ev::result, id});
      if (on(Ev::bad_result) && w.tasks.size() >= 2 && !w.killed) c.push_back({Ev::bad_result, id});
      if (on(Ev::crash)) c.push_back({Ev::crash, id});
      if (on(Ev::exit) && (w.killed || w.init_failed || (w.closed && w.tasks.empty()))) c.push_back({Ev::exit, id});
      if (on(Ev::init_failed) && cfg_.has_initializer && !w.ready && !w.killed && !w.init_failed) {
        c.push_back({Ev::init_failed, id});
      }
    }
    if (on(Ev::tick) && m_.next_deadline() != Nanos::max()) c.push_back({Ev::tick, 0});
    return c;
  }
  static unsigned bit(Ev e) { return 1u << static_cast<unsigned>(e); }

  // Picks one of the possible events (Relacy chooses) and plays it.
  bool play_one(unsigned allowed) {
    const auto c = choices(allowed);
    if (c.empty()) return false;
    play(c[c.size() == 1 ? 0 : rl::rand(static_cast<unsigned>(c.size()))]);
    return true;
  }

  void play(const Choice& c) {
    switch (c.ev) {
      case Ev::ready:
        ready(c.w);
        break;
      case Ev::result:
        result(c.w);
        break;
      case Ev::bad_result:
        bad_result(c.w);
        break;
      case Ev::crash:
        exited(c.w, -9);
        break;
      case Ev::exit: {
        const Worker& w = live_.at(c.w);
        exited(c.w, w.killed ? -w.signal : w.init_failed ? 1 : 0);
        break;
      }
      case Ev::init_failed:
        init_failed(c.w);
        break;
      case Ev::tick:
        tick(std::max(now_, m_.next_deadline()));
        break;
    }
  }

  // The end: no more submissions; every worker runs what it holds and exits
  // as told. Every task is then resolved exactly once, Terminated once.
  void drive_to_end() {
    if (m_.phase() == Phase::running) shutdown(false);
    const unsigned orderly = bit(Ev::exit) | bit(Ev::result) | bit(Ev::ready);
    for (int step = 0; !m_.terminated(); ++step) {
      RL_ASSERT(step < 1000);
      const auto c = choices(orderly);
      RL_ASSERT(!c.empty());  // stuck: nothing can happen, yet not terminated
      if (c.empty()) return;
      play(c.front());
    }
    RL_ASSERT(terminated_ == 1);
    RL_ASSERT(live_.empty() && queue_.empty());
    for (auto& [id, t] : tasks_) RL_ASSERT(t.finals == 1);  // POOL-1
  }

 private:
  enum class Kind { other, result, exit, tick, closing };

  Task& task(TaskId id) {
    auto it = tasks_.find(id);
    RL_ASSERT(it != tasks_.end());
    return it->second;
  }

  void begin(Kind k) {
    kind_ = k;
    value_task_ = 0;
    dying_ = 0;
    dying_head_ = 0;
    dying_rest_.clear();
    timeouts_.clear();
    phase_before_ = m_.phase();
  }

  unsigned sim_active() const {
    unsigned n = 0;
    for (const auto& [id, w] : live_) n += w.active() ? 1 : 0;
    return n;
  }

  void ready(WorkerId id) {
    Worker& w = live_.at(id);
    w.ready = true;
    begin(Kind::other);
    m_.worker_ready(id, now_);
    settle();
    check();
  }

  void result(WorkerId id) {
    Worker& w = live_.at(id);
    const TaskId head = w.tasks.front();
    w.tasks.pop_front();
    Task& t = task(head);
    ++t.runs;
    const bool was_final = t.finals != 0;
    begin(Kind::result);
    value_task_ = was_final ? 0 : head;
    RL_ASSERT(m_.result(id, head, now_));
    settle();
    if (!was_final) RL_ASSERT(t.finals == 1 && t.outcome == Outcome::value);
    check();
  }

  // A faulty worker reports its second task: refused, nothing resolved, the
  // worker killed.
  void bad_result(WorkerId id) {
    Worker& w = live_.at(id);
    const bool broken = m_.phase() == Phase::broken;
    const bool was_active = w.active();
    begin(Kind::result);
    RL_ASSERT(m_.result(id, w.tasks[1], now_) == broken);
    settle();
    if (!broken) {
      RL_ASSERT(w.killed);
      w.faulty = was_active;
    }
    check();
  }

  void init_failed(WorkerId id) {
    live_.at(id).init_failed = true;
    begin(Kind::other);
    m_.init_failed(id, now_);
    settle();
    RL_ASSERT(m_.phase() == Phase::broken);  // POOL-5: at once
    check();
  }

  void tick(Nanos to) {
    now_ = to;
    begin(Kind::tick);
    std::set<WorkerId> to_kill;
    if (m_.phase() != Phase::broken) {
      for (auto& [id, w] : live_) {
        if (w.killed || w.tasks.empty()) continue;
        const Task& h = task(w.tasks.front());
        if (h.finals == 0 && h.timeout > Nanos::zero() && h.sent_at + h.timeout <= now_) {
          timeouts_.insert(w.tasks.front());
          to_kill.insert(id);
        }
      }
    }
    m_.tick(now_);
    settle();
    for (TaskId t : timeouts_) RL_ASSERT(task(t).finals == 1 && task(t).outcome == Outcome::timed_out);
    for (WorkerId id : to_kill) RL_ASSERT(live_.at(id).killed);
    check();
  }

  void exited(WorkerId id, int code) {
    const Worker w = live_.at(id);
    live_.erase(id);
    begin(Kind::exit);
    dying_ = id;
    code_ = code;
    const bool broken_before = m_.phase() == Phase::broken;
    bool expect_break = false;
    bool expect_replacement = false;
    bool expect_lost = false;
    std::vector<TaskId> back;
    if (!w.tasks.empty()) ++task(w.tasks.front()).runs;
    if (!broken_before) {
      if (!w.ready && w.active() && !w.init_failed && cfg_.has_initializer) {
        expect_break = true;  // died in its initializer
      } else {
        if (!w.tasks.empty()) {
          const TaskId head = w.tasks.front();
          if (task(head).finals == 0) {
            dying_head_ = head;
            expect_lost = terminating_ || task(head).runs > static_cast<int>(cfg_.retries);
            if (!expect_lost) back.push_back(head);
          } else {
            RL_ASSERT(w.tasks.size() == 1);  // a timed-out head ran alone
          }
          for (std::size_t i = 1; i < w.tasks.size(); ++i) {
            if (terminating_) {
              dying_rest_.insert(w.tasks[i]);
            } else {
              back.push_back(w.tasks[i]);
            }
          }
        }
        const bool planned = w.closed && !w.killed && w.tasks.empty() && code == 0;
        const bool useful = !terminating_ && (m_.phase() == Phase::running || queue_.size() + back.size() > 0);
        if (!planned && w.active() && useful && sim_active() < cfg_.workers) {
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
    queue_.insert(queue_.begin(), back.begin(), back.end());
    const auto replacements = m_.counters().replacements;
    m_.worker_exited(id, code, now_);
    settle();
    if (!broken_before) RL_ASSERT((m_.phase() == Phase::broken) == expect_break);  // POOL-5
    if (!expect_break) {
      RL_ASSERT(m_.counters().replacements - replacements == (expect_replacement ? 1u : 0u));  // POOL-3
      if (dying_head_ != 0) {
        RL_ASSERT((task(dying_head_).finals == 1) == expect_lost);  // POOL-2
        if (expect_lost) RL_ASSERT(task(dying_head_).outcome == Outcome::lost);
      }
      for (TaskId t : dying_rest_) RL_ASSERT(task(t).finals == 1 && task(t).outcome == Outcome::cancelled);
    }
    check();
  }

  void settle() {
    for (const Action& a : m_.actions()) {
      switch (a.kind) {
        case Action::spawn:
          RL_ASSERT(live_.count(a.worker) == 0 && a.worker > last_worker_);
          last_worker_ = a.worker;
          live_[a.worker] = Worker{};
          break;
        case Action::send: {
          RL_ASSERT(live_.count(a.worker) == 1);
          Worker& w = live_.at(a.worker);
          Task& t = task(a.task);
          RL_ASSERT(w.ready && w.active());
          RL_ASSERT(t.started && t.finals == 0);                   // POOL-1: never after final
          RL_ASSERT(!queue_.empty() && queue_.front() == a.task);  // FIFO
          queue_.pop_front();
          RL_ASSERT(w.tasks.size() < cfg_.depth);  // POOL-6
          if (t.timeout > Nanos::zero()) RL_ASSERT(w.tasks.empty());
          for (TaskId o : w.tasks) RL_ASSERT(task(o).timeout <= Nanos::zero());
          if (cfg_.max_tasks_per_child != 0) RL_ASSERT(w.sent < cfg_.max_tasks_per_child);
          w.tasks.push_back(a.task);
          ++w.sent;
          t.sent_at = now_;
          break;
        }
        case Action::close:
          RL_ASSERT(live_.count(a.worker) == 1 && live_.at(a.worker).active());
          live_.at(a.worker).closed = true;
          break;
        case Action::kill:
          RL_ASSERT(live_.count(a.worker) == 1 && !live_.at(a.worker).killed);
          live_.at(a.worker).killed = true;
          live_.at(a.worker).signal = a.code;
          break;
        case Action::resolve: {
          Task& t = task(a.task);
          RL_ASSERT(t.finals == 0);  // POOL-1: at most once
          t.finals = 1;
          t.outcome = a.outcome;
          const auto q = std::find(queue_.begin(), queue_.end(), a.task);
          const bool queued = q != queue_.end();
          switch (a.outcome) {
            case Outcome::value:
              RL_ASSERT(kind_ == Kind::result && a.task == value_task_);
              break;
            case Outcome::lost:
              RL_ASSERT(kind_ == Kind::exit && a.task == dying_head_ && a.worker == dying_ && a.code == code_);
              break;
            case Outcome::timed_out:
              RL_ASSERT(kind_ == Kind::tick && timeouts_.count(a.task) == 1);
              break;
            case Outcome::cancelled:
              RL_ASSERT((queued && kind_ == Kind::closing) || (kind_ == Kind::exit && dying_rest_.count(a.task) == 1));
              break;
            case Outcome::broken:
              break;
          }
          if (queued) queue_.erase(q);
          if (t.record) t.record->resolved.store(t.record->resolved.load() + 1);
          break;
        }
        case Action::terminated:
          ++terminated_;
          RL_ASSERT(terminated_ == 1 && live_.empty() && queue_.empty());
          break;
      }
    }
    m_.actions().clear();
    if (m_.phase() == Phase::broken && phase_before_ != Phase::broken) {
      for (auto& [id, t] : tasks_) RL_ASSERT(t.finals == 1);  // BROKEN resolves everything
      for (auto& [id, w] : live_) RL_ASSERT(w.killed);        // and kills every worker
    }
  }

  void check() {
    unsigned faulty = 0;
    std::size_t held = 0;
    for (const auto& [id, w] : live_) {
      faulty += w.faulty ? 1 : 0;
      RL_ASSERT(w.tasks.size() <= cfg_.depth);  // POOL-6
      for (TaskId t : w.tasks) held += task(t).finals == 0 ? 1 : 0;
    }
    for (auto& [id, t] : tasks_) RL_ASSERT(t.runs <= 1 + static_cast<int>(cfg_.retries));  // POOL-2
    RL_ASSERT(m_.queued() == queue_.size());
    RL_ASSERT(m_.in_flight() == held);
    RL_ASSERT(m_.live_workers() == live_.size());
    RL_ASSERT(m_.active_workers() == sim_active());
    if (m_.phase() == Phase::running) {  // POOL-3
      RL_ASSERT(m_.active_workers() <= cfg_.workers && m_.active_workers() + faulty >= cfg_.workers);
    }
    if (m_.phase() == Phase::shutting_down && !terminating_ && !queue_.empty()) {
      RL_ASSERT(m_.active_workers() + faulty >= 1);  // someone will run the queued work
    }
  }

  MachineConfig cfg_;
  Machine m_;
  Nanos now_{0};
  std::map<TaskId, Task> tasks_;
  std::deque<TaskId> queue_;
  std::map<WorkerId, Worker> live_;
  WorkerId last_worker_ = 0;
  std::deque<Nanos> restarts_;
  bool terminating_ = false;
  int terminated_ = 0;
  Phase phase_before_ = Phase::running;
  Kind kind_ = Kind::other;
  TaskId value_task_ = 0;
  WorkerId dying_ = 0;
  int code_ = 0;
  TaskId dying_head_ = 0;
  std::set<TaskId> dying_rest_;
  std::set<TaskId> timeouts_;
};

// ---------------------------------------------------------------- (a) the edge

struct Bell final : keel::pool::Doorbell {
  keel::Semaphore sem{0};
  void ring() override { sem.release(); }
};

// The supervisor thread: sleeps on the doorbell only when it has nothing to
// do, takes the edge's commands in order, drives the real Machine, and plays
// the workers inline (each step one event Relacy picks), until Terminated.
void supervise(keel::pool::Edge& edge, Bell& bell, const MachineConfig& cfg, int deaths) {
  PoolWorld world(cfg);
  world.start();
  std::vector<Command> cmds;
  bool closed = false;
  const unsigned worker_events = PoolWorld::bit(PoolWorld::Ev::ready) | PoolWorld::bit(PoolWorld::Ev::result) |
                                 PoolWorld::bit(PoolWorld::Ev::exit) | PoolWorld::bit(PoolWorld::Ev::tick);
  while (!world.terminated()) {
    cmds.clear();
    edge.take(cmds);
    for (const Command& c : cmds) {
      if (c.kind == Command::submit) {
        RL_ASSERT(!closed);  // every accepted submission comes before the shutdown
        world.submit(c.task, c.timeout, static_cast<Record*>(c.payload));
      } else if (c.kind == Command::shutdown) {
        closed = true;
        world.shutdown(c.cancel_futures);
      } else {
        closed = true;
        world.terminate(c.signal);
      }
    }
    if (world.terminated()) break;
    unsigned allowed = worker_events;
    if (deaths > 0) allowed |= PoolWorld::bit(PoolWorld::Ev::crash);
    const auto choices = world.choices(allowed);
    if (!choices.empty()) {
      const auto& c = choices[choices.size() == 1 ? 0 : rl::rand(static_cast<unsigned>(choices.size()))];
      if (c.ev == PoolWorld::Ev::crash) --deaths;
      world.play(c);
    } else if (cmds.empty()) {
      bell.sem.acquire();  // a lost ring leaves it here for ever: Relacy reports the deadlock
    }
  }
  // Nothing accepted is left behind in the inbox.
  cmds.clear();
  edge.take(cmds);
  for (const Command& c : cmds) RL_ASSERT(c.kind != Command::submit);
  edge.set_terminated();
}

// One submission: accepted (then resolved exactly once by the time the pool
// says terminated) or refused with RejectedError(shutdown); always refused
// once the shutdown request has returned.
void submit_one(keel::pool::Edge& edge, Record& rec, Nanos timeout, rl::atomic<int>& shut) {
  const bool after_shutdown = shut($).load(rl::mo_acquire) == 1;
  bool accepted = false;
  try {
    edge.submit(timeout, &rec);
    accepted = true;
  } catch (const keel::RejectedError& e) {
    RL_ASSERT(e.reason() == keel::RejectedError::Reason::shutdown);
  }
  RL_ASSERT(!(after_shutdown && accepted));
  RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
  RL_ASSERT(rec.resolved.load() == (accepted ? 1 : 0));
}

// POOL-1, EXEC-3: two submitters race a closer (shutdown with or without
// cancel_futures, terminate, or shutdown then terminate) and the supervisor
// thread. Each waits in wait_terminated, which set_terminated must wake.
struct EdgeRace : rl::test_suite<EdgeRace, 4> {
  Bell bell;
  keel::pool::Edge edge{bell};
  Record rec[2];
  rl::atomic<int> shut{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      MachineConfig cfg;
      cfg.workers = 1 + rl::rand(2);
      cfg.depth = 1 + rl::rand(2);
      cfg.max_tasks_per_child = rl::rand(2);
      cfg.retries = rl::rand(2);
      supervise(edge, bell, cfg, 1);
    } else if (idx <= 2) {
      submit_one(edge, rec[idx - 1], idx == 2 ? ms(5) : Nanos::zero(), shut);
    } else {
      Command c;
      switch (rl::rand(4)) {
        case 0:
          c.kind = Command::shutdown;
          break;
        case 1:
          c.kind = Command::shutdown;
          c.cancel_futures = true;
          break;
        case 2:
          c.kind = Command::terminate;
          c.signal = 9;
          break;
        default:
          c.kind = Command::shutdown;
          edge.request(c);
          c.kind = Command::terminate;
          c.signal = 15;
          break;
      }
      edge.request(c);
      shut($).store(1, rl::mo_release);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
      RL_ASSERT(edge.closed());
    }
  }
};

// POOL-1: one client submits two tasks (one timed) and shuts down while the
// supervisor runs one worker that may die once.
struct EdgeClient : rl::test_suite<EdgeClient, 2> {
  Bell bell;
  keel::pool::Edge edge{bell};
  Record rec[2];
  void thread(unsigned idx) {
    if (idx == 0) {
      MachineConfig cfg;
      cfg.depth = 2;
      cfg.retries = 1;
      supervise(edge, bell, cfg, 1);
    } else {
      edge.submit(Nanos::zero(), &rec[0]);
      edge.submit(ms(5), &rec[1]);
      Command c;
      c.kind = Command::shutdown;
      edge.request(c);
      try {
        edge.submit(Nanos::zero(), nullptr);
        RL_ASSERT(false);
      } catch (const keel::RejectedError& e) {
        RL_ASSERT(e.reason() == keel::RejectedError::Reason::shutdown);
      }
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
      RL_ASSERT(rec[0].resolved.load() == 1 && rec[1].resolved.load() == 1);
    }
  }
};

// ---------------------------------------------------------------- (b) the machine

// The machine behind a keel::Mutex, with events posted by three threads: one
// reports results (and readiness), one kills and reaps workers (and moves the
// clock), one is the parent (submits, cancels, shuts down). Relacy picks the
// interleaving and every choice inside a step; after() drives the pool to
// Terminated and checks every task resolved exactly once.
template <class Cfg>
struct MachineRace : rl::test_suite<MachineRace<Cfg>, 3> {
  keel::Mutex mu;
  PoolWorld world{Cfg::config()};
  void before() { world.start(); }
  void step(unsigned allowed) {
    keel::LockGuard<keel::Mutex> g(mu);
    world.play_one(allowed);
  }
  void thread(unsigned idx) {
    using Ev = PoolWorld::Ev;
    if (idx == 0) {
      for (int i = 0; i < Cfg::result_steps; ++i) {
        unsigned allowed = PoolWorld::bit(Ev::ready) | PoolWorld::bit(Ev::result);
        if (Cfg::bad_results) allowed |= PoolWorld::bit(Ev::bad_result);
        step(allowed);
      }
    } else if (idx == 1) {
      for (int i = 0; i < Cfg::death_steps; ++i) {
        unsigned allowed = PoolWorld::bit(Ev::crash) | PoolWorld::bit(Ev::exit) | PoolWorld::bit(Ev::tick);
        if (Cfg::config().has_initializer) allowed |= PoolWorld::bit(Ev::init_failed);
        step(allowed);
      }
    } else {
      for (TaskId t = 1; t <= Cfg::tasks; ++t) {
        keel::LockGuard<keel::Mutex> g(mu);
        world.submit(t, t == Cfg::timed_task ? ms(5) : Nanos::zero());
      }
      if (Cfg::cancel_task != 0) {
        keel::LockGuard<keel::Mutex> g(mu);
        world.cancel(Cfg::cancel_task);
      }
      keel::LockGuard<keel::Mutex> g(mu);
      switch (rl::rand(Cfg::may_terminate ? 3 : 2)) {
        case 0:
          world.shutdown(false);
          break;
        case 1:
          world.shutdown(true);
          break;
        default:
          world.terminate(9);
          break;
      }
    }
  }
  void after() { world.drive_to_end(); }
};

// Deaths racing results on one worker of depth 2 with one retry and a restart
// limit of 1: a dead head is retried once then lost, the task behind it goes
// back untouched, the second death inside the window breaks the pool, a death
// during shutdown with queued work gets a replacement; a faulty worker's
// out-of-order report is refused.
struct DeathsVsResults {
  static MachineConfig config() {
    MachineConfig c;
    c.workers = 1;
    c.depth = 2;
    c.retries = 1;
    c.restart_limit = 1;
    c.restart_window = std::chrono::seconds(1);
    return c;
  }
  static constexpr int result_steps = 3, death_steps = 2;
  static constexpr TaskId tasks = 3, timed_task = 0, cancel_task = 0;
  static constexpr bool bad_results = true, may_terminate = false;
};

// Timeouts, cancellation and retirement on two workers that each take one
// task: a timed task times out (its late result changes nothing), a task
// cancelled while queued is never sent, a worker is closed after its single
// task and replaced; shutdown, shutdown(cancel_futures) or terminate.
struct TimeoutsAndRetirement {
  static MachineConfig config() {
    MachineConfig c;
    c.workers = 2;
    c.depth = 1;
    c.max_tasks_per_child = 1;
    c.restart_limit = 4;
    c.restart_window = std::chrono::seconds(1);
    return c;
  }
  static constexpr int result_steps = 3, death_steps = 2;
  static constexpr TaskId tasks = 3, timed_task = 1, cancel_task = 3;
  static constexpr bool bad_results = false, may_terminate = true;
};

// An initializer fails or dies while results arrive and the parent shuts
// down: BROKEN resolves every task at once and kills every worker.
struct InitializerFails {
  static MachineConfig config() {
    MachineConfig c;
    c.workers = 2;
    c.depth = 2;
    c.has_initializer = true;
    return c;
  }
  static constexpr int result_steps = 3, death_steps = 1;
  static constexpr TaskId tasks = 2, timed_task = 0, cancel_task = 0;
  static constexpr bool bad_results = false, may_terminate = true;
};

}  // namespace

int main() {
  using namespace keel::model;
  check<EdgeClient>("pool.edge-client.2t", "POOL-1,EXEC-3", random(200000));
  check<EdgeRace>("pool.edge-race.4t", "POOL-1,EXEC-3", random(200000));
  check<MachineRace<DeathsVsResults>>("pool.machine.deaths-vs-results.3t", "POOL-1,POOL-2,POOL-3,POOL-5",
                                      random(200000));
  check<MachineRace<TimeoutsAndRetirement>>("pool.machine.timeouts-retirement.3t", "POOL-1,POOL-3,POOL-6",
                                            random(200000));
  check<MachineRace<InitializerFails>>("pool.machine.initializer-fails.3t", "POOL-1,POOL-5", random(100000));
  return exit_code();
}
