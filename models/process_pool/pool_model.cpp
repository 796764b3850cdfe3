// Relacy models of the ProcessPool supervisor: the real keel::pool::Edge (the
// threads that submit vs the supervisor thread) and the real
// keel::pool::Machine (the supervisor's decisions), through the shim.
//
// The driver is played by the model: a World owns the Machine, acts as its
// StartGate (the start slots), carries out its actions (spawn, send, close,
// kill, resolve, terminated) on simulated workers, and checks each gate
// question and each action against what the event that produced it allows.
// It is the world of fuzz/pool_machine.cpp and the RapidCheck property test
// (tests/process_pool/machine_properties_test.cpp), one copy in
// tests/support/sim_pool_world.hpp, which this model extends with the
// submitters' records and an event chooser for Relacy: simulated workers take
// their frames in order, win a frame's start slot before running it or find
// it dead and skip it, write `started` before running and the result after;
// the driver reads those messages in order, maybe later (so the parent's
// revoke can lose to a start it has not heard of). A worker dies at any
// moment (also just after winning a slot, before saying so; the driver reads
// its channel to the end before the exit), and otherwise exits only when
// killed, after a failed initializer, or closed with nothing left. A faulty
// worker reports a task that is not its first. The user cancels a queued or
// a sent task (by winning its slot). After every step: POOL-1 (each task
// resolved exactly once, with an outcome the event allows), POOL-2 (runs <=
// 1 + retries; a cancelled task never starts; the gate is asked about the
// queue's front, and each yes is sent), POOL-3 (active workers at the
// target), POOL-5 (restart limit, initializer failure), POOL-6 (depth,
// max_tasks_per_child, nothing behind a timed task, timeouts from the start,
// next_deadline), POOL-7 (the machine knows a task started exactly when the
// world told it; lost or retried only if started; legitimate notices never
// refused), POOL-8 (after a death, every held task that had not started is
// queued again, uncounted), POOL-9 (no ready worker idles while the queue or
// another worker's unstarted pipeline holds work for it). Each model ends by
// driving the pool to Terminated and requires every task resolved exactly
// once.
//
// Search: random (Relacy's full search of even two threads does not finish
// in minutes once the machine's choices are explored too; see each row).
//
// KEEL-TWIN pool_edge_submit_after_close pool.edge-client.2t
// KEEL-TWIN pool_edge_ring_when_nonempty pool.edge-client.2t
// KEEL-TWIN pool_retry_unbounded pool.edge-race.4t
// KEEL-TWIN pool_respawn_unlimited pool.machine.deaths-vs-results.3t
// KEEL-TWIN pool_no_replace_in_shutdown pool.edge-client.2t
// KEEL-TWIN pool_result_accepts_non_head pool.machine.deaths-vs-results.3t
// KEEL-TWIN pool_late_result_resolved pool.edge-client.2t
// KEEL-TWIN pool_gate_not_consulted pool.edge-client.2t
// KEEL-TWIN pool_no_close_at_max_tasks pool.edge-race.4t
// KEEL-TWIN pool_notice_restarts_clock pool.machine.steals-and-revokes.3t
// KEEL-TWIN pool_revoke_without_gate pool.edge-race.4t
// KEEL-TWIN pool_exit_loses_unstarted pool.edge-client.2t
// KEEL-TWIN pool_cancel_spares_sent pool.edge-race.4t
// KEEL-TWIN pool_send_behind_timed pool.edge-race.4t
// KEEL-TWIN pool_no_steal pool.edge-race.4t
// KEEL-TWIN pool_break_published_after_resolve pool.break-order.3t
// KEEL-TWIN pool_edge_closes_after_command pool.break-order.3t
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../../kernel/src/process_pool/edge.hpp"
#include "../../kernel/src/process_pool/machine.hpp"
#include "harness.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/semaphore.hpp"
#include "pool_unity.hpp"

// The world's checks; what they would say is left to the failing history.
#define POOL_CHECK(invariant, cond, what) RL_ASSERT(cond)

#include "../../tests/support/sim_pool_world.hpp"

namespace {

// The world: tests/support/sim_pool_world.hpp.
using keel::pool::Command;
using namespace keel::pool_sim;

// What a submitter keeps of one submission; the supervisor counts its Resolves.
struct Record {
  keel::platform::Var<int> resolved;
  keel::platform::Var<int> outcome;  // the Outcome it resolved with
  keel::Event* done = nullptr;       // set once it resolved (a submitter waiting for its future)
};

// ---------------------------------------------------------------- the driver's world

// The shared world, plus what only this model needs: the submitters'
// records (each resolve is counted in the submitter's Var, so Relacy sees
// the supervisor's write against the submitter's read) and a chooser that
// lets Relacy pick the next worker or clock event.
class ModelWorld final : public World {
 public:
  using World::World;

  // The edge numbers its tasks from 1 in the order the supervisor takes them.
  void submit_as(TaskId id, Nanos timeout, Record* record) {
    POOL_CHECK("POOL-1", id == task_count() + 1, "task ids out of order");
    records_.resize(id, nullptr);
    records_[id - 1] = record;
    submit(timeout);
  }

  // ---- the model: every event of the kinds in `allowed` that could happen
  // now; Relacy picks one.
  enum class Ev {
    ready,
    advance,
    start_next,
    step,
    read,
    bad_result,
    crash,
    crash_started,
    exit,
    init_failed,
    tick,
    clock
  };
  static constexpr unsigned bit(Ev e) { return 1u << static_cast<unsigned>(e); }
  struct Choice {
    Ev ev;
    WorkerId w;
  };
  std::vector<Choice> choices(unsigned allowed) const {
    std::vector<Choice> c;
    c.reserve(4 * live_.size() + 2);  // one allocation per step, not one per growth
    auto on = [&](Ev e) { return (allowed & bit(e)) != 0; };
    for (const auto& [id, w] : live_) {
      if (on(Ev::ready) && can_ready(w) && !w.killed) c.push_back({Ev::ready, id});
      if (on(Ev::advance) && can_advance(w)) c.push_back({Ev::advance, id});
      if (on(Ev::start_next) && can_start_next(w)) c.push_back({Ev::start_next, id});
      if (on(Ev::step) && can_step(w) && !w.mute) c.push_back({Ev::step, id});
      if (on(Ev::read) && can_read(w)) c.push_back({Ev::read, id});
      if (on(Ev::bad_result) && w.held.size() >= 2 && !w.mute) c.push_back({Ev::bad_result, id});
      if (on(Ev::crash)) c.push_back({Ev::crash, id});
      if (on(Ev::crash_started) && w.running == 0 && !w.frames.empty()) c.push_back({Ev::crash_started, id});
      if (on(Ev::exit) && can_exit(w)) c.push_back({Ev::exit, id});
      if (on(Ev::init_failed) && cfg_.has_initializer && can_ready(w) && !w.killed) {
        c.push_back({Ev::init_failed, id});
      }
    }
    if (on(Ev::tick) && m_.next_deadline() != kMax) c.push_back({Ev::tick, 0});
    if (on(Ev::clock)) c.push_back({Ev::clock, 0});
    return c;
  }
  void play(const Choice& c) {
    switch (c.ev) {
      case Ev::ready:
        ready_at(c.w);
        break;
      case Ev::advance:
        advance_at(c.w);
        break;
      case Ev::start_next:
        start_next_at(c.w);
        break;
      case Ev::step:
        step_at(c.w);
        break;
      case Ev::read:
        deliver(c.w);
        break;
      case Ev::bad_result:
        bad_report_at(c.w, 0, 0);
        break;
      case Ev::crash:
        crash_at(c.w, -9, 0);
        break;
      case Ev::crash_started:
        crash_at(c.w, -9, 2);  // it won its next slot, and died before saying so
        break;
      case Ev::exit:
        exit_at(c.w);
        break;
      case Ev::init_failed:
        init_failed_at(c.w);
        break;
      case Ev::tick:
        set_clock(std::max(now_, m_.next_deadline()));
        tick();
        break;
      case Ev::clock:
        set_clock(now_ + std::chrono::milliseconds(1));
        break;
    }
  }
  bool play_one(unsigned allowed) {
    const auto c = choices(allowed);
    if (c.empty()) return false;
    play(c[c.size() == 1 ? 0 : rl::rand(static_cast<unsigned>(c.size()))]);
    return true;
  }
  bool terminated() const { return m_.terminated(); }

  // The real edge, told of a break as the driver tells it (the machine's
  // `broken` action, in the order the machine emitted it).
  keel::pool::Edge* edge = nullptr;

 private:
  void on_resolve(TaskId t) override {
    if (t > records_.size()) return;
    if (Record* r = records_[t - 1]) {
      r->resolved.store(r->resolved.load() + 1);
      r->outcome.store(static_cast<int>(task(t).outcome));
      if (r->done) r->done->set();  // the future says final: its waiter wakes
    }
  }
  void on_broken() override {
    if (edge) edge->set_broken("ProcessPool is broken");
  }

  std::vector<Record*> records_;  // task id i: records_[i - 1], or null
};

using Ev = ModelWorld::Ev;

// ---------------------------------------------------------------- (a) the edge

struct Bell final : keel::pool::Doorbell {
  keel::Semaphore sem{0};
  void ring() override { sem.release(); }
};

// The supervisor thread: sleeps on the doorbell only when it has nothing to
// do, takes the edge's commands in order, drives the real Machine, and plays
// the workers inline (each step one event Relacy picks), until Terminated.
void supervise(keel::pool::Edge& edge, Bell& bell, const MachineConfig& cfg, int deaths) {
  ModelWorld world(cfg, Nanos::zero());
  world.edge = &edge;
  std::vector<Command> cmds;
  bool closed = false;
  const unsigned worker_events = ModelWorld::bit(Ev::ready) | ModelWorld::bit(Ev::advance) |
                                 ModelWorld::bit(Ev::start_next) | ModelWorld::bit(Ev::exit) |
                                 ModelWorld::bit(Ev::tick);
  while (!world.terminated()) {
    cmds.clear();
    edge.take(cmds);
    for (const Command& c : cmds) {
      switch (c.kind) {
        case Command::submit:
          RL_ASSERT(!closed);  // every accepted submission comes before the shutdown
          world.submit_as(c.task, c.timeout, static_cast<Record*>(c.payload));
          break;
        case Command::shutdown:
          closed = true;
          world.shutdown(c.cancel_futures);
          break;
        case Command::terminate:
          closed = true;
          world.terminate(c.signal);
          break;
        case Command::discard_oldest:
          world.discard_oldest();
          break;
      }
    }
    edge.set_queued(world.machine().queued());
    if (world.terminated()) break;
    unsigned allowed = worker_events;
    if (deaths > 0) allowed |= ModelWorld::bit(Ev::crash);
    const auto choices = world.choices(allowed);
    if (!choices.empty()) {
      const auto& c = choices[choices.size() == 1 ? 0 : rl::rand(static_cast<unsigned>(choices.size()))];
      if (c.ev == Ev::crash) --deaths;
      world.play(c);
    } else if (cmds.empty()) {
      bell.sem.acquire();  // a lost ring leaves it here for ever: Relacy reports the deadlock
    }
  }
  // What the edge accepted and the loop did not take is handed to the
  // machine, as the driver's run() does: only a broken pool can have such
  // stragglers (a submit that raced the break), and it resolves them.
  cmds.clear();
  edge.take(cmds);
  for (const Command& c : cmds) {
    if (c.kind != Command::submit) continue;
    RL_ASSERT(world.machine().phase() == keel::pool::Machine::Phase::broken);
    world.submit_as(c.task, c.timeout, static_cast<Record*>(c.payload));
  }
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

// POOL-11: what a future says is visible to every later call on its pool.
// The supervisor runs one worker whose death breaks the pool (restart limit
// 0); a closer shuts down, with or without cancel_futures, at any point; a
// submitter submits a task, waits for its future, and submits again: after
// a future that said broken, that submit must throw BrokenProcessPool; after
// one cancelled by the shutdown, it must be refused (RejectedError, or
// BrokenProcessPool if the pool broke too). The real Machine orders the
// break (its `broken` action before the first resolve(broken)) and the real
// Edge orders the shutdown (closed before the command is queued).
struct BreakOrder : rl::test_suite<BreakOrder, 3> {
  Bell bell;
  keel::pool::Edge edge{bell};
  keel::Event done;
  Record rec[2];
  void thread(unsigned idx) {
    if (idx == 0) {
      MachineConfig cfg;
      cfg.workers = 1;
      cfg.depth = 1;
      cfg.restart_limit = 0;  // the first unplanned death breaks the pool
      supervise(edge, bell, cfg, 1);
    } else if (idx == 1) {
      rec[0].done = &done;
      try {
        edge.submit(Nanos::zero(), &rec[0]);
      } catch (const keel::Error&) {
        // Refused: the closer or the break came first; no future to wait for.
        RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
        RL_ASSERT(rec[0].resolved.load() == 0);
        return;
      }
      done.wait();
      const auto said = static_cast<keel::pool::Outcome>(rec[0].outcome.load());
      int refused = 0;  // 1: BrokenProcessPool, 2: RejectedError(shutdown)
      try {
        edge.submit(Nanos::zero(), &rec[1]);
      } catch (const keel::BrokenProcessPool&) {
        refused = 1;
      } catch (const keel::RejectedError& e) {
        RL_ASSERT(e.reason() == keel::RejectedError::Reason::shutdown);
        refused = 2;
      }
      if (said == keel::pool::Outcome::broken) RL_ASSERT(refused == 1);
      if (said == keel::pool::Outcome::cancelled) RL_ASSERT(refused != 0);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
      RL_ASSERT(rec[0].resolved.load() == 1 && rec[1].resolved.load() == (refused ? 0 : 1));
    } else {
      Command c;
      c.kind = Command::shutdown;
      c.cancel_futures = rl::rand(2) == 1;
      edge.request(c);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
    }
  }
};

// ---------------------------------------------------------------- (b) the machine

// The machine behind a keel::Mutex, with events posted by three threads: the
// workers' side (readiness, starts, results, what the driver reads), deaths
// and the clock, and the parent (submits, a cancel, shutdown or terminate).
// Relacy picks the interleaving and every choice inside a step; after()
// drives the pool to Terminated and checks every task resolved exactly once.
template <class Cfg>
struct MachineRace : rl::test_suite<MachineRace<Cfg>, 3> {
  keel::Mutex mu;
  std::optional<ModelWorld> world;
  void before() { world.emplace(Cfg::config(), Nanos::zero()); }
  void step(unsigned allowed) {
    keel::LockGuard<keel::Mutex> g(mu);
    world->play_one(allowed);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      for (int i = 0; i < Cfg::worker_steps; ++i) step(Cfg::worker_events);
    } else if (idx == 1) {
      for (int i = 0; i < Cfg::death_steps; ++i) step(Cfg::death_events);
    } else {
      for (TaskId t = 1; t <= Cfg::tasks; ++t) {
        keel::LockGuard<keel::Mutex> g(mu);
        world->submit(t == Cfg::timed_task ? ms(5) : Nanos::zero());
      }
      if (Cfg::cancel_task != 0) {
        keel::LockGuard<keel::Mutex> g(mu);
        world->cancel_task(Cfg::cancel_task, false);
      }
      keel::LockGuard<keel::Mutex> g(mu);
      switch (rl::rand(Cfg::may_terminate ? 3 : 2)) {
        case 0:
          world->shutdown(false);
          break;
        case 1:
          world->shutdown(true);
          break;
        default:
          world->terminate(9);
          break;
      }
    }
  }
  void after() {
    world->drive_to_termination(0);
    world.reset();
  }
};

// Deaths racing results on one worker of depth 2 with one retry and a restart
// limit of 1: a worker dies before, while or just after it starts a task
// (winning its slot, not yet saying so); a started task is retried once then
// lost, unstarted ones go back to the queue uncounted, the second death
// inside the window breaks the pool, a death during shutdown with queued work
// gets a replacement; a faulty worker's out-of-order report is refused.
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
  static constexpr int worker_steps = 3, death_steps = 2;
  static constexpr unsigned worker_events = ModelWorld::bit(Ev::ready) | ModelWorld::bit(Ev::advance) |
                                            ModelWorld::bit(Ev::start_next) | ModelWorld::bit(Ev::bad_result);
  static constexpr unsigned death_events = ModelWorld::bit(Ev::crash) | ModelWorld::bit(Ev::crash_started) |
                                           ModelWorld::bit(Ev::exit) | ModelWorld::bit(Ev::tick);
  static constexpr TaskId tasks = 3, timed_task = 0, cancel_task = 0;
  static constexpr bool may_terminate = false;
};

// Timeouts, cancellation and retirement on two workers that each take one
// task: a timed task times out a while after its start (its late result
// changes nothing), a task cancelled while queued is never sent, a worker is
// closed after its single task and replaced; shutdown,
// shutdown(cancel_futures) or terminate.
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
  static constexpr int worker_steps = 3, death_steps = 2;
  static constexpr unsigned worker_events =
      ModelWorld::bit(Ev::ready) | ModelWorld::bit(Ev::advance) | ModelWorld::bit(Ev::start_next);
  static constexpr unsigned death_events =
      ModelWorld::bit(Ev::crash) | ModelWorld::bit(Ev::exit) | ModelWorld::bit(Ev::tick) | ModelWorld::bit(Ev::clock);
  static constexpr TaskId tasks = 3, timed_task = 1, cancel_task = 3;
  static constexpr bool may_terminate = true;
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
  static constexpr int worker_steps = 3, death_steps = 1;
  static constexpr unsigned worker_events = ModelWorld::bit(Ev::ready) | ModelWorld::bit(Ev::advance);
  static constexpr unsigned death_events = ModelWorld::bit(Ev::crash) | ModelWorld::bit(Ev::exit) |
                                           ModelWorld::bit(Ev::tick) | ModelWorld::bit(Ev::init_failed);
  static constexpr TaskId tasks = 2, timed_task = 0, cancel_task = 0;
  static constexpr bool may_terminate = true;
};

// Exact start and work conservation on two workers of depth 2, the first
// ready before the second: a worker that becomes idle takes the youngest
// unstarted task of the other (the revoke can lose to a start the driver has
// not read yet: then the task is known to have started, and its timeout
// counts from then), nothing is sent behind the timed task, a task the user
// cancels after it was sent is skipped and dropped, a worker dies holding
// unstarted tasks (taken back, queued again uncounted), and
// shutdown(cancel_futures) cancels exactly the sent tasks that have not
// started.
struct StealsAndRevokes {
  static MachineConfig config() {
    MachineConfig c;
    c.workers = 2;
    c.depth = 2;
    c.restart_limit = 4;
    c.restart_window = std::chrono::seconds(1);
    return c;
  }
  static constexpr int worker_steps = 5, death_steps = 3;
  static constexpr unsigned worker_events =
      ModelWorld::bit(Ev::step) | ModelWorld::bit(Ev::read) | ModelWorld::bit(Ev::advance) | ModelWorld::bit(Ev::ready);
  static constexpr unsigned death_events = ModelWorld::bit(Ev::ready) | ModelWorld::bit(Ev::crash) |
                                           ModelWorld::bit(Ev::tick) | ModelWorld::bit(Ev::clock) |
                                           ModelWorld::bit(Ev::exit);
  static constexpr TaskId tasks = 3, timed_task = 2, cancel_task = 3;
  static constexpr bool may_terminate = false;
};

}  // namespace

int main() {
  using namespace keel::model;
  check<EdgeClient>("pool.edge-client.2t", "POOL-1,EXEC-3", random(200000));
  check<EdgeRace>("pool.edge-race.4t", "POOL-1,EXEC-3", random(200000));
  check<BreakOrder>("pool.break-order.3t", "POOL-11", random(200000));
  check<MachineRace<DeathsVsResults>>("pool.machine.deaths-vs-results.3t", "POOL-1,POOL-2,POOL-3,POOL-5,POOL-7,POOL-8",
                                      random(200000));
  check<MachineRace<TimeoutsAndRetirement>>("pool.machine.timeouts-retirement.3t", "POOL-1,POOL-3,POOL-6",
                                            random(200000));
  check<MachineRace<InitializerFails>>("pool.machine.initializer-fails.3t", "POOL-1,POOL-5", random(100000));
  check<MachineRace<StealsAndRevokes>>("pool.machine.steals-and-revokes.3t", "POOL-2,POOL-6,POOL-7,POOL-8,POOL-9",
                                       random(200000));
  return exit_code();
}
