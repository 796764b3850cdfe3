// Unit tests of keel::pool::Machine, the ProcessPool supervisor's decisions as
// a pure state machine: each test plays the driver (events in, the exact
// actions out, in order), so a scenario's whole effect is asserted, not just
// a sample of it.
//
// Actions are compared as text ("spawn w1; send w1 t2; resolve t2 value"),
// which keeps each expected sequence readable and a mismatch easy to see.
//
// Invariants: POOL-1, POOL-2, POOL-3, POOL-5, POOL-6, POOL-7, POOL-8, POOL-9
// (proofs/INVARIANTS.md).
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../support/sim_pool.hpp"
#include "kernel/src/process_pool/machine.hpp"

namespace {

using keel::pool::Action;
using keel::pool::Machine;
using keel::pool::MachineConfig;
using keel::pool::Nanos;
using keel::pool::Outcome;
using keel::pool::TaskId;
using keel::pool::WorkerId;
using Phase = Machine::Phase;
using State = Machine::WorkerState;

// Times in the tests are milliseconds since the pool started.
Nanos at(long ms) { return std::chrono::milliseconds(ms); }
constexpr Nanos none{0};

using keel::pool_sim::name_of;  // tests/support/sim_pool.hpp

std::string show(const Action& a) {
  const std::string w = "w" + std::to_string(a.worker);
  const std::string t = "t" + std::to_string(a.task);
  switch (a.kind) {
    case Action::spawn:
      return "spawn " + w;
    case Action::send:
      return "send " + w + " " + t;
    case Action::close:
      return "close " + w;
    case Action::kill:
      return "kill " + w + " " + std::to_string(a.code);
    case Action::resolve: {
      std::string s = "resolve " + t + " " + name_of(a.outcome);
      if (a.outcome == Outcome::lost) s += " " + w + " " + std::to_string(a.code);
      return s;
    }
    case Action::broken:
      return "broken";
    case Action::terminated:
      return "terminated";
  }
  return "?";
}

// The start slots, simulated: dispatch arms one (and says no for a future the
// test cancelled), revoke takes it back unless the test said the worker won
// it (a start notice, a result, or win() for a start not yet reported).
// Every question is recorded, in order.
struct ScriptGate : keel::pool::StartGate {
  std::set<TaskId> cancelled;
  std::set<std::pair<TaskId, WorkerId>> won;
  std::vector<std::string> asked;  // "dispatch t1 w1", "revoke t2 w1 yes"
  bool dispatch(TaskId t, WorkerId w) override {
    asked.push_back("dispatch t" + std::to_string(t) + " w" + std::to_string(w));
    won.erase({t, w});  // a fresh slot
    return cancelled.count(t) == 0;
  }
  bool revoke(TaskId t, WorkerId w) override {
    const bool ok = won.count({t, w}) == 0;
    asked.push_back("revoke t" + std::to_string(t) + " w" + std::to_string(w) + (ok ? " yes" : " no"));
    return ok;
  }
  std::string take() {
    std::string s;
    for (const auto& a : asked) s += (s.empty() ? "" : "; ") + a;
    asked.clear();
    return s;
  }
};

// The driver's side: feeds events and takes the actions they produced.
struct Rig {
  ScriptGate gate;
  Machine m;
  explicit Rig(const MachineConfig& c) : m(c, gate) {}

  std::string take() {
    std::string s;
    for (const Action& a : m.actions()) s += (s.empty() ? "" : "; ") + show(a);
    m.actions().clear();
    return s;
  }
  std::string start(long now = 0) {
    m.start(at(now));
    return take();
  }
  std::string submit(TaskId t, long now = 0, long timeout_ms = 0) {
    m.submit(t, timeout_ms > 0 ? at(timeout_ms) : none, at(now));
    return take();
  }
  std::string ready(WorkerId w, long now = 0) {
    m.worker_ready(w, at(now));
    return take();
  }
  // The worker won t's slot and has not said so yet.
  void win(WorkerId w, TaskId t) { gate.won.insert({t, w}); }
  // The worker won t's slot and its notice arrives.
  std::string started(WorkerId w, TaskId t, long now = 0) {
    win(w, t);
    last_result = m.started(w, t, at(now));
    return take();
  }
  // The worker lost t's slot (taken back, or cancelled by its user) and says so.
  std::string skipped(WorkerId w, TaskId t, long now = 0) {
    last_result = m.skipped(w, t, at(now));
    return take();
  }
  std::string result(WorkerId w, TaskId t, long now = 0) {
    last_result = m.result(w, t, at(now));
    return take();
  }
  std::string exited(WorkerId w, int code, long now = 0) {
    m.worker_exited(w, code, at(now));
    return take();
  }
  std::string tick(long now) {
    m.tick(at(now));
    return take();
  }
  std::string shutdown(bool cancel_futures, long now = 0) {
    m.shutdown(cancel_futures, at(now));
    return take();
  }
  std::string terminate(int signal, long now = 0) {
    m.terminate(signal, at(now));
    return take();
  }
  std::string init_failed(WorkerId w, long now = 0) {
    m.init_failed(w, at(now));
    return take();
  }
  bool last_result = false;
};

TEST(PoolMachine, StartSpawnsTheTargetNumberOfWorkers) {
  Rig r({.workers = 3});
  EXPECT_EQ(r.start(), "spawn w1; spawn w2; spawn w3");
  EXPECT_EQ(r.m.active_workers(), 3u);
  EXPECT_EQ(r.m.live_workers(), 3u);
  EXPECT_EQ(r.m.state_of(2), State::starting);
  // No worker is ready: the task waits in the queue.
  EXPECT_EQ(r.submit(1), "");
  EXPECT_EQ(r.m.queued(), 1u);
  EXPECT_EQ(r.m.counters().spawned, 3u);
}

TEST(PoolMachine, ZeroWorkersOrDepthIsRaisedToOne) {
  Rig r({.workers = 0, .depth = 0});
  EXPECT_EQ(r.start(), "spawn w1");
  EXPECT_EQ(r.ready(1), "");
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "");
}

TEST(PoolMachine, DispatchSendsOnlyToReadyWorkersUpToDepth) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  EXPECT_EQ(r.ready(1), "");
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "send w1 t2");
  EXPECT_EQ(r.submit(3), "");  // w1 is full, w2 is still starting
  EXPECT_EQ(r.m.in_flight(1), 2u);
  EXPECT_EQ(r.ready(2), "send w2 t3");
  EXPECT_EQ(r.submit(4), "send w2 t4");
  EXPECT_EQ(r.submit(5), "");
  EXPECT_EQ(r.result(1, 1), "resolve t1 value; send w1 t5");
  EXPECT_EQ(r.m.in_flight(), 4u);
  EXPECT_EQ(r.m.depth_now(), 2u);  // no pipeline target: always depth
}

TEST(PoolMachine, DispatchPicksTheLeastLoadedReadyWorker) {
  Rig r({.workers = 3, .depth = 3});
  r.start();
  r.ready(1);
  r.ready(2);
  r.ready(3);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "send w2 t2");
  EXPECT_EQ(r.submit(3), "send w3 t3");
  EXPECT_EQ(r.submit(4), "send w1 t4");
  r.gate.take();
  // w2 is idle: it takes w1's unstarted t4 at once.
  EXPECT_EQ(r.result(2, 2), "resolve t2 value; send w2 t4");
  EXPECT_EQ(r.gate.take(), "revoke t4 w1 yes; dispatch t4 w2");
  EXPECT_EQ(r.submit(5), "send w1 t5");  // one each: w1 comes first
  EXPECT_EQ(r.submit(6), "send w2 t6");  // w2 and w3 have one each; w2 comes first
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  // w1 reaches t4's frame, lost its slot, says so: nothing more to do.
  EXPECT_EQ(r.skipped(1, 4), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.m.counters().stolen, 1u);
  EXPECT_EQ(r.m.counters().skipped, 0u);
}

// Replaces "a timed task runs alone": a timed task may be pipelined behind
// others (its clock starts at its own start), but nothing is sent behind it,
// so its timeout kill costs no other task.
TEST(PoolMachine, NothingIsSentBehindATimedTask) {
  Rig r({.workers = 1, .depth = 3});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1, 0), "send w1 t1");
  EXPECT_EQ(r.submit(2, 0, 10), "send w1 t2");   // timed, behind an untimed one
  EXPECT_EQ(r.submit(3, 0), "");                 // not behind the timed one
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());  // t2 has not started
  EXPECT_EQ(r.started(1, 1, 0), "");
  EXPECT_EQ(r.result(1, 1, 5), "resolve t1 value");
  EXPECT_EQ(r.m.in_flight(1), 1u);
  EXPECT_EQ(r.started(1, 2, 6), "");
  EXPECT_EQ(r.m.next_deadline(), at(16));
  EXPECT_EQ(r.result(1, 2, 8), "resolve t2 value; send w1 t3");
  EXPECT_EQ(r.submit(4, 8), "send w1 t4");
}

TEST(PoolMachine, ResultsResolveTheHeadInOrder) {
  Rig r({.workers = 1, .depth = 3});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.submit(3);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.result(1, 2), "resolve t2 value");
  EXPECT_EQ(r.result(1, 3), "resolve t3 value");
  EXPECT_EQ(r.m.in_flight(1), 0u);
  EXPECT_EQ(r.m.counters().completed, 3u);
  EXPECT_EQ(r.m.counters().resolved, 3u);
}

TEST(PoolMachine, AResultForANonHeadTaskKillsTheWorker) {
  Rig r({.workers = 1, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  EXPECT_EQ(r.started(1, 1), "");
  // Killed, and its replacement starts at once (as for a timeout).
  EXPECT_EQ(r.result(1, 2), "kill w1 9; spawn w2");
  EXPECT_FALSE(r.last_result);
  EXPECT_EQ(r.m.state_of(1), State::killing);
  // A second wrong result from a worker already being killed kills nothing more.
  EXPECT_EQ(r.result(1, 2), "");
  // The started head is lost; the unstarted one is taken back and goes back
  // to the queue. Our own kill is not counted as a death.
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9");
  EXPECT_EQ(r.m.counters().deaths, 0u);
  EXPECT_EQ(r.ready(2), "send w2 t2");
  // A result for a task the worker never had is just as wrong.
  EXPECT_EQ(r.result(2, 77), "kill w2 9; spawn w3");
  EXPECT_FALSE(r.last_result);
}

TEST(PoolMachine, AStartNoticeOrASkipForTheWrongTaskKillsTheWorker) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  r.ready(1);
  r.ready(2);
  r.submit(1);
  r.submit(2);
  r.submit(3);
  ASSERT_EQ(r.m.in_flight(1), 2u);  // t1, t3
  // t3 is not the first task w1 holds: it cannot have started it.
  EXPECT_EQ(r.started(1, 3), "kill w1 9; spawn w3");
  EXPECT_FALSE(r.last_result);
  EXPECT_EQ(r.started(2, 2), "");
  EXPECT_TRUE(r.last_result);
  // A worker cannot skip a task it started.
  EXPECT_EQ(r.skipped(2, 2), "kill w2 9; spawn w4");
  EXPECT_FALSE(r.last_result);
  // Nor one it was never sent.
  r.ready(3);
  EXPECT_EQ(r.skipped(3, 42), "kill w3 9; spawn w5");
  EXPECT_FALSE(r.last_result);
}

TEST(PoolMachine, DeathMidTaskWithoutRetriesResolvesLostWithTheExitCode) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.started(1, 1), "");
  EXPECT_EQ(r.exited(1, -11), "resolve t1 lost w1 -11; spawn w2");
  EXPECT_EQ(r.m.counters().deaths, 1u);
  EXPECT_EQ(r.m.counters().replacements, 1u);
  EXPECT_EQ(r.m.counters().lost, 1u);
  EXPECT_EQ(r.m.active_workers(), 1u);
}

// kill-then-submit: a worker killed from outside while it holds a task it
// has not started (here: idle, the task just sent) loses nothing.
TEST(PoolMachine, AWorkerThatDiesBeforeStartingItsTaskPassesItToItsReplacement) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.exited(1, -9), "spawn w2");
  EXPECT_EQ(r.gate.take(), "dispatch t1 w1; revoke t1 w1 yes");
  const auto& c = r.m.counters();
  EXPECT_EQ(c.lost, 0u);
  EXPECT_EQ(c.retried, 0u);
  EXPECT_EQ(c.requeued, 1u);
  EXPECT_EQ(c.revoked, 1u);
  EXPECT_EQ(c.deaths, 1u);
  EXPECT_EQ(r.m.queued(), 1u);
  EXPECT_EQ(r.ready(2), "send w2 t1");
  EXPECT_EQ(r.started(2, 1), "");
  EXPECT_EQ(r.result(2, 1), "resolve t1 value");
  EXPECT_EQ(c.resolved, 1u);
}

TEST(PoolMachine, ADeathLosesOnlyTheTaskThatStarted) {
  Rig r({.workers = 1, .depth = 3});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.submit(3);
  EXPECT_EQ(r.started(1, 1), "");
  r.gate.take();
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9; spawn w2");
  // Only the tasks not known to have started are asked about.
  EXPECT_EQ(r.gate.take(), "revoke t2 w1 yes; revoke t3 w1 yes");
  EXPECT_EQ(r.m.counters().lost, 1u);
  EXPECT_EQ(r.m.counters().requeued, 2u);
  EXPECT_EQ(r.m.counters().retried, 0u);
  EXPECT_EQ(r.ready(2), "send w2 t2; send w2 t3");
}

// The worker won the slot and died before its notice: the slot says started,
// so the task is lost (or retried), never run again silently.
TEST(PoolMachine, ATaskWhoseWorkerWonItsSlotButDiedBeforeSayingSoIsLost) {
  Rig r({.workers = 1, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.win(1, 1);
  r.gate.take();
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9; spawn w2");
  EXPECT_EQ(r.gate.take(), "revoke t1 w1 no; revoke t2 w1 yes");
  EXPECT_EQ(r.m.counters().revoked, 1u);
  EXPECT_EQ(r.ready(2), "send w2 t2");
}

TEST(PoolMachine, RetriesRunATaskAtMostOnePlusRetriesTimes) {
  Rig r({.workers = 1, .retries = 2});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  r.started(1, 1);
  EXPECT_EQ(r.exited(1, 1), "spawn w2");
  EXPECT_EQ(r.ready(2), "send w2 t1");
  r.started(2, 1);
  EXPECT_EQ(r.exited(2, 1), "spawn w3");
  EXPECT_EQ(r.ready(3), "send w3 t1");
  r.started(3, 1);
  EXPECT_EQ(r.exited(3, 1), "resolve t1 lost w3 1; spawn w4");
  EXPECT_EQ(r.ready(4), "");
  EXPECT_EQ(r.m.counters().retried, 2u);
  EXPECT_EQ(r.m.counters().sent, 3u);
  // Each send arms a fresh slot; a task known to have started is not revoked.
  EXPECT_EQ(r.gate.take(), "dispatch t1 w1; dispatch t1 w2; dispatch t1 w3");
}

TEST(PoolMachine, TasksBehindADeadHeadGoBackToTheFrontInOrderUncounted) {
  Rig r({.workers = 1, .depth = 3, .retries = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.submit(3);
  EXPECT_EQ(r.submit(4), "");
  r.started(1, 1);
  EXPECT_EQ(r.exited(1, -9), "spawn w2");  // t1 retried; t2, t3 never started
  EXPECT_EQ(r.m.counters().requeued, 2u);
  EXPECT_EQ(r.m.counters().retried, 1u);
  EXPECT_EQ(r.m.queued(), 4u);
  EXPECT_EQ(r.ready(2), "send w2 t1; send w2 t2; send w2 t3");
  r.started(2, 1);
  EXPECT_EQ(r.exited(2, -9), "resolve t1 lost w2 -9; spawn w3");
  EXPECT_EQ(r.ready(3), "send w3 t2; send w3 t3; send w3 t4");
  // t2 starts on a dying worker for the first time: it is retried, because
  // its earlier returns to the queue were not counted as runs.
  r.started(3, 2);
  EXPECT_EQ(r.exited(3, -9), "spawn w4");
  EXPECT_EQ(r.ready(4), "send w4 t2; send w4 t3; send w4 t4");
  EXPECT_EQ(r.result(4, 2), "resolve t2 value");
  EXPECT_EQ(r.m.counters().requeued, 6u);
  EXPECT_EQ(r.m.counters().retried, 2u);
}

TEST(PoolMachine, TimeoutResolvesTimedOutKillsAndReplacesAtOnce) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1, 0, 10), "send w1 t1");
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
  EXPECT_EQ(r.started(1, 1, 0), "");
  EXPECT_EQ(r.m.next_deadline(), at(10));
  EXPECT_EQ(r.tick(9), "");
  EXPECT_EQ(r.tick(10), "resolve t1 timed_out; kill w1 9; spawn w2");
  EXPECT_EQ(r.m.state_of(1), State::killing);
  // The late result of the timed-out task changes nothing.
  EXPECT_EQ(r.result(1, 1, 11), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.exited(1, -9, 12), "");
  const auto& c = r.m.counters();
  EXPECT_EQ(c.timed_out, 1u);
  EXPECT_EQ(c.resolved, 1u);
  EXPECT_EQ(c.deaths, 0u);
  EXPECT_EQ(c.replacements, 0u);
  EXPECT_EQ(c.spawned, 2u);
  EXPECT_EQ(r.ready(2), "");
  EXPECT_EQ(r.submit(2), "send w2 t2");
}

TEST(PoolMachine, ATimeoutCountsFromTheStartNoticeNotFromTheSend) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1, 0, 10), "send w1 t1");
  EXPECT_EQ(r.tick(20), "");  // sent long ago, but not started
  EXPECT_EQ(r.started(1, 1, 20), "");
  EXPECT_EQ(r.m.next_deadline(), at(30));
  EXPECT_EQ(r.tick(29), "");
  EXPECT_EQ(r.tick(30), "resolve t1 timed_out; kill w1 9; spawn w2");
}

TEST(PoolMachine, ATimedTaskPipelinedBehindAnotherIsNotChargedItsWait) {
  Rig r({.workers = 1, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1, 0);
  EXPECT_EQ(r.submit(2, 0, 10), "send w1 t2");
  r.started(1, 1, 0);
  EXPECT_EQ(r.tick(50), "");  // waiting behind t1: never timed out
  EXPECT_EQ(r.result(1, 1, 60), "resolve t1 value");
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
  EXPECT_EQ(r.started(1, 2, 61), "");
  EXPECT_EQ(r.m.next_deadline(), at(71));
  EXPECT_EQ(r.tick(70), "");
  EXPECT_EQ(r.tick(71), "resolve t2 timed_out; kill w1 9; spawn w2");
}

// A revoke that fails says the task had started: its clock starts then, and
// the notice that arrives later does not restart it.
TEST(PoolMachine, ATimeoutCountsFromAFailedRevokeNotFromTheLaterNotice) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1, 0), "send w1 t1");
  EXPECT_EQ(r.submit(2, 0, 10), "send w1 t2");
  // w1 answered t1 (its result not read yet) and won t2's slot; idle w2 tries
  // to take t2 and cannot.
  r.win(1, 2);
  EXPECT_EQ(r.ready(2, 5), "");
  EXPECT_TRUE(r.m.known_started(1, 2));
  EXPECT_EQ(r.m.next_deadline(), at(15));
  EXPECT_EQ(r.result(1, 1, 6), "resolve t1 value");
  EXPECT_EQ(r.started(1, 2, 12), "");
  EXPECT_EQ(r.m.next_deadline(), at(15));
  EXPECT_EQ(r.tick(14), "");
  EXPECT_EQ(r.tick(15), "resolve t2 timed_out; kill w1 9; spawn w3");
}

// The same race, with the timeout before the notice: the notice of a task
// already resolved timed out is no fault of the worker's.
TEST(PoolMachine, ALateNoticeOfATimedOutTaskIsIgnored) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1, 0);
  r.submit(2, 0, 10);
  r.win(1, 2);
  EXPECT_EQ(r.ready(2, 5), "");
  EXPECT_EQ(r.tick(15), "resolve t2 timed_out; kill w1 9; spawn w3");
  EXPECT_EQ(r.result(1, 1, 16), "resolve t1 value");
  EXPECT_EQ(r.started(1, 2, 16), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.result(1, 2, 17), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.exited(1, -9, 18), "");
  EXPECT_EQ(r.m.counters().resolved, 2u);
}

TEST(PoolMachine, MaxTasksPerChildClosesAfterTheMthSendAndRetires) {
  Rig r({.workers = 1, .depth = 2, .max_tasks_per_child = 2});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "send w1 t2; close w1; spawn w2");
  EXPECT_EQ(r.m.state_of(1), State::retiring);
  EXPECT_EQ(r.m.active_workers(), 1u);
  EXPECT_EQ(r.submit(3), "");  // not to the retiring worker
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  EXPECT_EQ(r.result(1, 2), "resolve t2 value");
  EXPECT_EQ(r.exited(1, 0), "");  // planned: no replacement, no death
  EXPECT_EQ(r.m.counters().retirements, 1u);
  EXPECT_EQ(r.m.counters().deaths, 0u);
  EXPECT_EQ(r.m.sent_to(1), 0u);  // gone
  EXPECT_EQ(r.ready(2), "send w2 t3");
  EXPECT_EQ(r.m.sent_to(2), 1u);
}

TEST(PoolMachine, ARetiringWorkerThatDiesWithWorkLeftIsADeath) {
  Rig r({.workers = 1, .depth = 2, .max_tasks_per_child = 2, .retries = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  EXPECT_EQ(r.submit(2), "send w1 t2; close w1; spawn w2");
  r.started(1, 1);
  // Already replaced when it began to retire: no second replacement.
  EXPECT_EQ(r.exited(1, 0), "");
  EXPECT_EQ(r.m.counters().deaths, 1u);
  EXPECT_EQ(r.m.counters().retirements, 0u);
  EXPECT_EQ(r.m.counters().retried, 1u);
  EXPECT_EQ(r.m.counters().requeued, 1u);
  EXPECT_EQ(r.m.queued(), 2u);
  EXPECT_EQ(r.ready(2), "send w2 t1; send w2 t2; close w2; spawn w3");
}

TEST(PoolMachine, RestartLimitBreaksThePoolAfterRReplacementsWithinTheWindow) {
  Rig r({.workers = 1, .restart_limit = 2, .restart_window = std::chrono::milliseconds(100)});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  r.started(1, 1, 5);
  EXPECT_EQ(r.exited(1, 1, 10), "resolve t1 lost w1 1; spawn w2");
  EXPECT_EQ(r.exited(2, 1, 20), "spawn w3");
  EXPECT_EQ(r.submit(2, 25), "");
  EXPECT_EQ(r.exited(3, 1, 30), "broken; resolve t2 broken; terminated");
  EXPECT_EQ(r.m.phase(), Phase::broken);
  EXPECT_EQ(r.m.broken_reason(), keel::pool::BrokenReason::restart_limit);
  EXPECT_EQ(r.m.broken_worker(), 3u);
  EXPECT_EQ(r.m.broken_code(), 1);
  EXPECT_EQ(r.m.counters().replacements, 2u);
  // A submission that raced the break fails like the rest.
  EXPECT_EQ(r.submit(3, 31), "resolve t3 broken");
}

TEST(PoolMachine, RestartLimitIsNotReachedWhenDeathsAreSpreadBeyondTheWindow) {
  Rig r({.workers = 1, .restart_limit = 2, .restart_window = std::chrono::milliseconds(100)});
  r.start();
  WorkerId w = 1;
  // One death every 60 ms: never more than two replacements in 100 ms.
  for (long t = 10; t <= 610; t += 60) {
    EXPECT_EQ(r.exited(w, 1, t), "spawn w" + std::to_string(w + 1)) << "at " << t;
    ++w;
  }
  EXPECT_EQ(r.m.phase(), Phase::running);
  EXPECT_EQ(r.m.counters().replacements, 11u);
  // Replacements at 550 and 610 are both inside the window at 615: a third
  // would be more than the limit.
  EXPECT_EQ(r.exited(w, 1, 615), "broken; terminated");
  EXPECT_EQ(r.m.phase(), Phase::broken);
}

TEST(PoolMachine, InitializerFailureBreaksThePoolAndResolvesEveryTask) {
  Rig r({.workers = 2, .depth = 2, .has_initializer = true});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "send w1 t2");
  EXPECT_EQ(r.submit(3), "");
  r.started(1, 1);
  r.gate.take();
  EXPECT_EQ(r.init_failed(2), "broken; resolve t3 broken; resolve t1 broken; resolve t2 broken; kill w1 9; kill w2 9");
  // The unstarted task is taken back first, so it never starts after its
  // future said broken.
  EXPECT_EQ(r.gate.take(), "revoke t2 w1 yes");
  EXPECT_EQ(r.m.phase(), Phase::broken);
  EXPECT_EQ(r.m.broken_reason(), keel::pool::BrokenReason::initializer_failed);
  EXPECT_EQ(r.m.broken_worker(), 2u);
  EXPECT_EQ(r.m.queued(), 0u);
  EXPECT_EQ(r.m.in_flight(), 0u);
  // What the killed workers still report changes nothing; no replacement.
  EXPECT_EQ(r.result(1, 1), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.skipped(1, 2), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.init_failed(1), "");
  EXPECT_EQ(r.tick(1000), "");
  EXPECT_EQ(r.exited(2, 1), "");
  EXPECT_EQ(r.exited(1, -9), "terminated");
  EXPECT_EQ(r.m.counters().broken, 3u);
  EXPECT_EQ(r.submit(4), "resolve t4 broken");
  EXPECT_EQ(r.shutdown(true), "");
}

TEST(PoolMachine, DeathBeforeReadyWithAnInitializerBreaksThePool) {
  Rig r({.workers = 2, .has_initializer = true});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "");
  EXPECT_EQ(r.exited(2, 3), "broken; resolve t2 broken; resolve t1 broken; kill w1 9");
  EXPECT_EQ(r.m.broken_reason(), keel::pool::BrokenReason::initializer_died);
  EXPECT_EQ(r.m.broken_code(), 3);
  EXPECT_EQ(r.exited(1, -9), "terminated");
}

TEST(PoolMachine, DeathBeforeReadyWithoutAnInitializerIsReplaced) {
  Rig r({.workers = 1});
  r.start();
  EXPECT_EQ(r.exited(1, 1), "spawn w2");
  EXPECT_EQ(r.m.phase(), Phase::running);
  EXPECT_EQ(r.m.counters().replacements, 1u);
}

TEST(PoolMachine, ShutdownDrainsTheQueueThenClosesIdleWorkers) {
  Rig r({.workers = 2});
  r.start();
  r.ready(1);
  r.ready(2);
  r.submit(1);
  r.submit(2);
  EXPECT_EQ(r.submit(3), "");
  EXPECT_EQ(r.shutdown(false), "");  // work is queued: nobody is closed yet
  EXPECT_EQ(r.m.phase(), Phase::shutting_down);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value; send w1 t3");
  EXPECT_EQ(r.result(2, 2), "resolve t2 value; close w2");
  EXPECT_EQ(r.m.state_of(2), State::closing);
  EXPECT_EQ(r.result(1, 3), "resolve t3 value; close w1");
  EXPECT_EQ(r.exited(2, 0), "");
  EXPECT_FALSE(r.m.terminated());
  EXPECT_EQ(r.exited(1, 0), "terminated");
  EXPECT_TRUE(r.m.terminated());
  EXPECT_EQ(r.m.counters().retirements, 2u);
  EXPECT_EQ(r.m.counters().deaths, 0u);
}

TEST(PoolMachine, ShutdownClosesStartingWorkersOfAnIdlePool) {
  Rig r({.workers = 2});
  r.start();
  EXPECT_EQ(r.shutdown(false), "close w1; close w2");
  EXPECT_EQ(r.ready(1), "");  // closed before it was ready: nothing to send
  EXPECT_EQ(r.exited(1, 0), "");
  EXPECT_EQ(r.exited(2, 0), "terminated");
  EXPECT_EQ(r.shutdown(false), "");  // once
}

TEST(PoolMachine, ShutdownWithCancelFuturesCancelsQueuedTasks) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.submit(3);
  r.started(1, 1);
  EXPECT_EQ(r.shutdown(true), "resolve t2 cancelled; resolve t3 cancelled");
  EXPECT_EQ(r.result(1, 1), "resolve t1 value; close w1");
  EXPECT_EQ(r.exited(1, 0), "terminated");
  EXPECT_EQ(r.m.counters().cancelled, 2u);
}

// Sent and not started is not started: shutdown(cancel_futures) takes such
// tasks back, from the back of each worker's list, until one had started.
TEST(PoolMachine, ShutdownWithCancelFuturesRevokesSentTasksAndKeepsStartedOnes) {
  Rig r({.workers = 2, .depth = 3});
  r.start();
  r.ready(1);
  r.ready(2);
  for (TaskId t = 1; t <= 7; ++t) r.submit(t);
  ASSERT_EQ(r.m.in_flight(1), 3u);  // t1 t3 t5
  ASSERT_EQ(r.m.in_flight(2), 3u);  // t2 t4 t6
  r.started(1, 1);
  r.win(2, 2);  // started, not said yet
  r.gate.take();
  EXPECT_EQ(r.shutdown(true),
            "resolve t7 cancelled; resolve t5 cancelled; resolve t3 cancelled; resolve t6 cancelled; "
            "resolve t4 cancelled");
  EXPECT_EQ(r.gate.take(), "revoke t5 w1 yes; revoke t3 w1 yes; revoke t6 w2 yes; revoke t4 w2 yes; revoke t2 w2 no");
  EXPECT_TRUE(r.m.known_started(2, 2));
  EXPECT_EQ(r.m.in_flight(), 2u);
  EXPECT_EQ(r.m.counters().revoked, 4u);
  EXPECT_EQ(r.m.counters().cancelled, 5u);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value; close w1");
  EXPECT_EQ(r.skipped(1, 3), "");
  EXPECT_EQ(r.skipped(1, 5), "");
  EXPECT_EQ(r.started(2, 2), "");
  EXPECT_EQ(r.result(2, 2), "resolve t2 value; close w2");
  EXPECT_EQ(r.skipped(2, 4), "");
  EXPECT_EQ(r.skipped(2, 6), "");
  EXPECT_EQ(r.exited(1, 0), "");
  EXPECT_EQ(r.exited(2, 0), "terminated");
  EXPECT_EQ(r.m.counters().retirements, 2u);
  EXPECT_EQ(r.m.counters().skipped, 0u);
}

TEST(PoolMachine, TerminateKillsEveryWorkerAndCancelsQueuedTasks) {
  Rig r({.workers = 2, .depth = 2, .retries = 2});
  r.start();
  r.ready(1);
  r.ready(2);
  for (TaskId t = 1; t <= 5; ++t) r.submit(t);
  r.started(1, 1);
  r.started(2, 2);
  EXPECT_EQ(r.terminate(15),
            "resolve t5 cancelled; resolve t3 cancelled; resolve t4 cancelled; kill w1 15; kill w2 15");
  EXPECT_EQ(r.m.phase(), Phase::shutting_down);
  // No retries once terminating: the started ones are lost.
  EXPECT_EQ(r.exited(1, -15), "resolve t1 lost w1 -15");
  EXPECT_EQ(r.exited(2, -15), "resolve t2 lost w2 -15; terminated");
}

// terminate(SIGTERM) with a grace: a worker that ignores SIGTERM is sent
// SIGKILL once the grace has passed (and only then), one that already died is
// not, and the deadline is the machine's next one meanwhile, so the driver
// wakes for it (hardening issue, point 7).
TEST(PoolMachine, TerminateEscalatesToSigkillAfterTheGrace) {
  Rig r({.workers = 2, .terminate_grace = std::chrono::milliseconds(100)});
  r.start();
  r.ready(1);
  r.ready(2);
  r.submit(1);
  r.started(1, 1);
  EXPECT_EQ(r.terminate(15, 1000), "close w2; kill w1 15; kill w2 15");
  EXPECT_EQ(r.m.next_deadline(), at(1100));
  EXPECT_EQ(r.exited(2, -15), "");
  EXPECT_EQ(r.tick(1099), "");
  EXPECT_EQ(r.tick(1100), "kill w1 9");
  EXPECT_EQ(r.m.next_deadline(), keel::pool::Nanos::max());
  EXPECT_EQ(r.tick(5000), "");  // once
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9; terminated");
}

// SIGKILL needs no escalation, and without a grace (max) there is none.
TEST(PoolMachine, TerminateWithSigkillOrWithoutAGraceNeverEscalates) {
  Rig k({.workers = 1, .terminate_grace = std::chrono::milliseconds(1)});
  k.start();
  EXPECT_EQ(k.terminate(9, 0), "close w1; kill w1 9");
  EXPECT_EQ(k.m.next_deadline(), keel::pool::Nanos::max());
  EXPECT_EQ(k.tick(1000), "");
  Rig n({.workers = 1});
  n.start();
  EXPECT_EQ(n.terminate(15, 0), "close w1; kill w1 15");
  EXPECT_EQ(n.m.next_deadline(), keel::pool::Nanos::max());
  EXPECT_EQ(n.tick(1'000'000), "");
}

// A worker already being killed may still start what it holds until the
// signal lands: terminate takes its unstarted tasks back too, and cancels
// them; the started one is lost at its exit, not retried.
TEST(PoolMachine, TerminateCancelsTheUnstartedTasksOfAWorkerAlreadyBeingKilled) {
  Rig r({.workers = 1, .depth = 3, .retries = 2});
  r.start();
  r.ready(1);
  for (TaskId t = 1; t <= 3; ++t) r.submit(t);
  r.started(1, 1);
  EXPECT_FALSE(r.m.started(1, 3, at(0)));  // faulty: not its first task
  EXPECT_EQ(r.take(), "kill w1 9; spawn w2");
  EXPECT_EQ(r.terminate(9), "resolve t3 cancelled; resolve t2 cancelled; close w2; kill w2 9");
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9");
  EXPECT_EQ(r.exited(2, -9), "terminated");
  EXPECT_EQ(r.m.counters().retried, 0u);
}

// The same with shutdown(cancel_futures): its unstarted tasks are cancelled
// now, not queued again (and run) when the worker's exit is reported.
TEST(PoolMachine, ShutdownWithCancelFuturesTakesBackTheUnstartedTasksOfAWorkerBeingKilled) {
  Rig r({.workers = 1, .depth = 2, .retries = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.started(1, 1);
  EXPECT_FALSE(r.m.started(1, 2, at(0)));  // faulty
  EXPECT_EQ(r.take(), "kill w1 9; spawn w2");
  EXPECT_EQ(r.shutdown(true), "resolve t2 cancelled; close w2");
  // t1 had started: retried (the shutdown did not cancel it), on a new worker.
  EXPECT_EQ(r.exited(1, -9), "spawn w3");
  EXPECT_EQ(r.m.counters().requeued, 0u);
  EXPECT_EQ(r.m.counters().retried, 1u);
  EXPECT_EQ(r.exited(2, 0), "");
  EXPECT_EQ(r.ready(3), "send w3 t1");
  EXPECT_EQ(r.result(3, 1), "resolve t1 value; close w3");
  EXPECT_EQ(r.exited(3, 0), "terminated");
}

TEST(PoolMachine, TerminateLetsAResultAlreadyWrittenResolve) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.started(1, 1);
  EXPECT_EQ(r.terminate(9), "kill w1 9");
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  EXPECT_EQ(r.exited(1, -9), "terminated");
}

TEST(PoolMachine, TerminateAfterShutdownKillsTheWorkersStillDraining) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.started(1, 1);
  EXPECT_EQ(r.shutdown(false), "");
  EXPECT_EQ(r.terminate(9), "resolve t2 cancelled; kill w1 9");
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9; terminated");
}

TEST(PoolMachine, ADeathDuringShutdownWithQueuedWorkSpawnsAReplacement) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.started(1, 1);
  EXPECT_EQ(r.shutdown(false), "");
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9; spawn w2");
  EXPECT_EQ(r.ready(2), "send w2 t2");
  EXPECT_EQ(r.result(2, 2), "resolve t2 value; close w2");
  EXPECT_EQ(r.exited(2, 0), "terminated");
}

TEST(PoolMachine, ADeathDuringShutdownWithNothingQueuedIsNotReplaced) {
  Rig r({.workers = 2});
  r.start();
  r.ready(1);
  r.ready(2);
  r.submit(1);
  r.started(1, 1);
  EXPECT_EQ(r.shutdown(false), "close w2");
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9");
  EXPECT_EQ(r.exited(2, 0), "terminated");
}

TEST(PoolMachine, ARetriedTaskDuringShutdownGetsAReplacementWorker) {
  Rig r({.workers = 1, .retries = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.started(1, 1);
  EXPECT_EQ(r.shutdown(false), "");
  EXPECT_EQ(r.exited(1, -9), "spawn w2");
  EXPECT_EQ(r.ready(2), "send w2 t1");
  EXPECT_EQ(r.result(2, 1), "resolve t1 value; close w2");
  EXPECT_EQ(r.exited(2, 0), "terminated");
}

TEST(PoolMachine, AGateThatRefusesDropsTheCancelledTask) {
  Rig r({.workers = 1});
  r.gate.cancelled = {2};
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  r.submit(2);
  r.submit(3);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value; send w1 t3");
  EXPECT_EQ(r.gate.take(), "dispatch t1 w1; dispatch t2 w1; dispatch t3 w1");
  EXPECT_EQ(r.m.counters().cancelled, 1u);
  EXPECT_EQ(r.m.counters().resolved, 1u);  // t2 is final already: no Resolve
  EXPECT_EQ(r.m.queued(), 0u);
}

// The user cancelled a sent task (won its slot): the worker skips it, it goes
// back to the queue's front, and the gate says nothing of it is wanted.
TEST(PoolMachine, AUserCancelledSentTaskIsSkippedThenDropped) {
  Rig r({.workers = 1, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.gate.cancelled.insert(2);  // cancel() won t2's slot
  r.started(1, 1);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  r.gate.take();
  EXPECT_EQ(r.skipped(1, 2), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.gate.take(), "dispatch t2 w1");
  const auto& c = r.m.counters();
  EXPECT_EQ(c.skipped, 1u);
  EXPECT_EQ(c.cancelled, 1u);
  EXPECT_EQ(c.resolved, 1u);
  EXPECT_EQ(c.sent, 2u);
  EXPECT_EQ(r.m.in_flight(), 0u);
  EXPECT_EQ(r.m.queued(), 0u);
}

// A chunk of calls is one task: cancelling one call wins the slot, but the
// rest of the chunk is still wanted, so the gate says yes and it is sent again.
TEST(PoolMachine, ACancelledCallOfAChunkSendsTheRestAgain) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.skipped(1, 1), "send w1 t1");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.m.counters().skipped, 1u);
  EXPECT_EQ(r.m.counters().sent, 2u);
  EXPECT_EQ(r.started(1, 1), "");
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  EXPECT_EQ(r.m.counters().cancelled, 0u);
}

// Work conservation: a worker that becomes ready takes the youngest
// unstarted task of the busiest worker; the victim skips its frame later.
TEST(PoolMachine, AnIdleWorkerTakesTheYoungestUnstartedTaskOfTheBusiestWorker) {
  Rig r({.workers = 3, .depth = 4});
  r.start();
  r.ready(1);
  for (TaskId t = 1; t <= 4; ++t) EXPECT_EQ(r.submit(t), "send w1 t" + std::to_string(t));
  r.gate.take();
  EXPECT_EQ(r.ready(2), "send w2 t4");
  EXPECT_EQ(r.gate.take(), "revoke t4 w1 yes; dispatch t4 w2");
  EXPECT_EQ(r.ready(3), "send w3 t3");
  EXPECT_EQ(r.m.in_flight(1), 2u);
  EXPECT_EQ(r.m.counters().stolen, 2u);
  EXPECT_EQ(r.m.counters().revoked, 2u);
  r.started(1, 1);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  r.started(1, 2);
  // w1 is idle now, but nobody holds two: nothing to take.
  EXPECT_EQ(r.result(1, 2), "resolve t2 value");
  EXPECT_EQ(r.m.in_flight(1), 0u);
  // The frames it lost: nothing to do, nothing counted.
  EXPECT_EQ(r.skipped(1, 3), "");
  EXPECT_EQ(r.skipped(1, 4), "");
  EXPECT_EQ(r.m.counters().skipped, 0u);
  EXPECT_EQ(r.m.counters().sent, 6u);
}

TEST(PoolMachine, AFailedRevokeMarksTheTaskStarted) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  // w1 answered t1 (its result not read yet) and won t2's slot.
  r.win(1, 2);
  r.gate.take();
  EXPECT_EQ(r.ready(2), "");
  EXPECT_EQ(r.gate.take(), "revoke t2 w1 no");
  EXPECT_TRUE(r.m.known_started(1, 2));
  // t1 was answered or skipped: its message will say which.
  EXPECT_FALSE(r.m.known_started(1, 1));
  EXPECT_EQ(r.m.counters().revoked, 0u);
  EXPECT_EQ(r.m.counters().stolen, 0u);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  EXPECT_EQ(r.started(1, 2), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.result(1, 2), "resolve t2 value");
}

// The frames before one whose revoke failed were answered or skipped, not
// necessarily started: here the user cancelled t1 and the worker skipped it.
TEST(PoolMachine, AFailedRevokeSaysNothingOfTheTasksBeforeIt) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.gate.cancelled.insert(1);  // cancel() won t1's slot
  r.win(1, 2);                 // the worker skipped t1 and won t2; nothing read yet
  EXPECT_EQ(r.ready(2), "");
  EXPECT_FALSE(r.m.known_started(1, 1));
  EXPECT_TRUE(r.m.known_started(1, 2));
  EXPECT_EQ(r.skipped(1, 1), "");  // no fault: dropped as cancelled
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.m.counters().cancelled, 1u);
  EXPECT_EQ(r.started(1, 2), "");
  EXPECT_TRUE(r.last_result);
  EXPECT_EQ(r.result(1, 2), "resolve t2 value");
}

// shutdown(cancel_futures) asks about every task not known to have started,
// not only those behind the last started one: a chunk whose slot its user
// won (one call cancelled) is cancelled with the rest, not sent again.
TEST(PoolMachine, ShutdownWithCancelFuturesTakesBackASkippedTaskBeforeAStartedOne) {
  Rig r({.workers = 1, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.win(1, 2);  // t1's slot died (one call of its chunk cancelled), t2 won; nothing read yet
  r.gate.take();
  EXPECT_EQ(r.shutdown(true), "resolve t1 cancelled");
  EXPECT_EQ(r.gate.take(), "revoke t2 w1 no; revoke t1 w1 yes");
  EXPECT_EQ(r.skipped(1, 1), "");
  EXPECT_EQ(r.started(1, 2), "");
  EXPECT_EQ(r.result(1, 2), "resolve t2 value; close w1");
  EXPECT_EQ(r.exited(1, 0), "terminated");
  EXPECT_EQ(r.m.counters().sent, 2u);
}

// A worker is not sent a task while it still holds a frame of it that it
// has not skipped (its skip would be ambiguous); the skip frees it.
TEST(PoolMachine, AStaleFrameSkippedFreesItsWorkerForTheTask) {
  Rig r({.workers = 2, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  EXPECT_EQ(r.ready(2), "send w2 t2");
  // w2 dies before starting t2: it goes back to the queue, but w1 still
  // holds its old frame of t2.
  EXPECT_EQ(r.exited(2, -9), "spawn w3");
  EXPECT_EQ(r.m.queued(), 1u);
  r.started(1, 1);
  EXPECT_EQ(r.result(1, 1), "resolve t1 value");
  EXPECT_EQ(r.m.queued(), 1u);
  EXPECT_EQ(r.skipped(1, 2), "send w1 t2");
  EXPECT_EQ(r.m.counters().requeued, 1u);
  EXPECT_EQ(r.m.counters().lost, 0u);
}

TEST(PoolMachine, AdaptivePipeliningSendsOneUntilARunIsMeasuredThenFollowsTheMean) {
  Rig r({.workers = 1, .depth = 3, .pipeline = std::chrono::milliseconds(10)});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.m.depth_now(), 1u);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "");  // nothing is known of run times yet
  EXPECT_EQ(r.started(1, 1, 0), "");
  // 2 ms runs: 10 ms of work ahead is 5 tasks, capped at depth.
  EXPECT_EQ(r.result(1, 1, 2), "resolve t1 value; send w1 t2");
  EXPECT_EQ(r.m.mean_run(), at(2));
  EXPECT_EQ(r.m.depth_now(), 3u);
  EXPECT_EQ(r.submit(3, 2), "send w1 t3");
  EXPECT_EQ(r.submit(4, 2), "send w1 t4");
  EXPECT_EQ(r.submit(5, 2), "");
  // A 98 ms run moves the mean to 14 ms: one task ahead, two in flight.
  EXPECT_EQ(r.started(1, 2, 2), "");
  EXPECT_EQ(r.result(1, 2, 100), "resolve t2 value");
  EXPECT_EQ(r.m.mean_run(), at(14));
  EXPECT_EQ(r.m.depth_now(), 2u);
  EXPECT_EQ(r.m.in_flight(1), 2u);
  EXPECT_EQ(r.started(1, 3, 100), "");
  EXPECT_EQ(r.result(1, 3, 101), "resolve t3 value; send w1 t5");
}

TEST(PoolMachine, NothingIsPipelinedBehindAStraggler) {
  Rig r({.workers = 1, .depth = 3, .pipeline = std::chrono::milliseconds(10)});
  r.start();
  r.ready(1);
  r.submit(1);
  r.started(1, 1, 0);
  EXPECT_EQ(r.result(1, 1, 4), "resolve t1 value");  // mean 4 ms
  EXPECT_EQ(r.submit(2, 4), "send w1 t2");
  EXPECT_EQ(r.started(1, 2, 100), "");
  // Running for pipeline + 2 * mean = 18 ms is still normal ...
  EXPECT_EQ(r.submit(3, 118), "send w1 t3");
  // ... past that it is a straggler: nothing more waits behind it.
  EXPECT_EQ(r.submit(4, 119), "");
  EXPECT_EQ(r.result(1, 2, 120), "resolve t2 value; send w1 t4");
  EXPECT_EQ(r.m.mean_run(), at(6));
}

TEST(PoolMachine, NextDeadlineIsTheEarliestTimedHead) {
  Rig r({.workers = 2});
  r.start();
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
  r.ready(1);
  r.ready(2);
  r.submit(1, 0, 30);
  r.submit(2, 5, 10);
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());  // neither has started
  r.started(1, 1, 0);
  r.started(2, 2, 5);
  EXPECT_EQ(r.m.next_deadline(), at(15));
  EXPECT_EQ(r.tick(15), "resolve t2 timed_out; kill w2 9; spawn w3");
  // The killed worker's clock no longer counts.
  EXPECT_EQ(r.m.next_deadline(), at(30));
  EXPECT_EQ(r.result(1, 1, 20), "resolve t1 value");
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
}

TEST(PoolMachine, StrayEventsAreIgnored) {
  Rig r({.workers = 1});
  r.start();
  EXPECT_EQ(r.ready(9), "");
  EXPECT_EQ(r.exited(9, 0), "");
  EXPECT_EQ(r.init_failed(9), "");
  EXPECT_EQ(r.result(9, 1), "");
  EXPECT_FALSE(r.last_result);
  EXPECT_EQ(r.started(9, 1), "");
  EXPECT_FALSE(r.last_result);
  EXPECT_EQ(r.skipped(9, 1), "");
  EXPECT_FALSE(r.last_result);
  r.ready(1);
  EXPECT_EQ(r.ready(1), "");  // a second ready
  EXPECT_EQ(r.m.phase(), Phase::running);
  EXPECT_EQ(r.m.live_workers(), 1u);
}

// Durations near Nanos::max() ("no limit") must not overflow the deadline
// arithmetic (start + timeout, restart time + window: signed overflow).
TEST(PoolMachine, ATaskWithTheLargestTimeoutIsNotTimedOutAtOnce) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.m.submit(1, Nanos::max(), at(5));
  EXPECT_EQ(r.take(), "send w1 t1");
  EXPECT_EQ(r.started(1, 1, 5), "");
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
  EXPECT_EQ(r.tick(6), "");
}

TEST(PoolMachine, TheLargestRestartWindowRemembersEveryReplacement) {
  Rig r({.workers = 1, .restart_limit = 1, .restart_window = Nanos::max()});
  r.start();
  EXPECT_EQ(r.exited(1, 1, 10), "spawn w2");
  EXPECT_EQ(r.exited(2, 1, 20), "broken; terminated");
  EXPECT_EQ(r.m.phase(), Phase::broken);
}

// depth_now() at its ceiling (machine.cpp, depth_now): once pipeline / mean
// reaches depth exactly, the answer is depth itself. The early return there
// is also what keeps 1 + ahead from wrapping when depth is the largest
// unsigned: without it a 1 ns mean and a 2^32 - 1 ns pipeline gave 2.
TEST(PoolMachine, AdaptiveDepthIsExactlyDepthWhenThePipelineHoldsDepthMeans) {
  constexpr unsigned big = std::numeric_limits<unsigned>::max();
  Rig r({.workers = 1, .depth = big, .pipeline = Nanos(big)});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  r.win(1, 1);
  ASSERT_TRUE(r.m.started(1, 1, Nanos(0)));
  ASSERT_TRUE(r.m.result(1, 1, Nanos(1)));
  EXPECT_EQ(r.take(), "resolve t1 value");
  ASSERT_EQ(r.m.mean_run(), Nanos(1));
  EXPECT_EQ(r.m.depth_now(), big);
  // The same boundary at a small depth: 4 ms of pipeline over a 1 ms mean.
  Rig s({.workers = 1, .depth = 4, .pipeline = at(4)});
  s.start();
  s.ready(1);
  s.submit(1);
  s.started(1, 1, 0);
  s.result(1, 1, 1);
  ASSERT_EQ(s.m.mean_run(), at(1));
  EXPECT_EQ(s.m.depth_now(), 4u);
}

// Work stealing's victim (machine.cpp, balance): among workers equally
// loaded, the first in spawn order, as pick() chooses the first among
// equally loaded workers, so a run's actions are the same every time.
TEST(PoolMachine, AnIdleWorkerStealsFromTheFirstOfEquallyLoadedWorkers) {
  Rig r({.workers = 3, .depth = 2});
  r.start();
  r.ready(2);
  r.ready(3);
  EXPECT_EQ(r.submit(1), "send w2 t1");
  EXPECT_EQ(r.submit(2), "send w3 t2");
  EXPECT_EQ(r.submit(3), "send w2 t3");
  EXPECT_EQ(r.submit(4), "send w3 t4");
  r.gate.take();
  // w2 and w3 both hold two, each with an unstarted youngest: w2's goes.
  EXPECT_EQ(r.ready(1), "send w1 t3");
  EXPECT_EQ(r.gate.take(), "revoke t3 w2 yes; dispatch t3 w1");
  EXPECT_EQ(r.m.in_flight(2), 1u);
  EXPECT_EQ(r.m.in_flight(3), 2u);
}

// encode_state's contract (machine.hpp): the mean run time is left out when
// no decision reads it (pipeline 0), so the explorer's visited set does not
// tell apart states that differ only in a measured time; with a pipeline
// target the mean decides the depth and is part of the state.
TEST(PoolMachine, TheStateEncodingHoldsTheMeanOnlyWhenAPipelineTargetReadsIt) {
  const auto encoded = [](Nanos pipeline, long run_ms) {
    Rig r({.workers = 1, .depth = 2, .pipeline = pipeline});
    r.start();
    r.ready(1);
    r.submit(1);
    r.started(1, 1, 0);
    r.result(1, 1, run_ms);
    EXPECT_EQ(r.m.mean_run(), at(run_ms));
    std::string s;
    r.m.encode_state(s);
    return s;
  };
  EXPECT_EQ(encoded(none, 2), encoded(none, 5));
  EXPECT_NE(encoded(at(10), 2), encoded(at(10), 5));
}

}  // namespace
