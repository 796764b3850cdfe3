// Unit tests of keel::pool::Machine, the ProcessPool supervisor's decisions as
// a pure state machine: each test plays the driver (events in, the exact
// actions out, in order), so a scenario's whole effect is asserted, not just
// a sample of it.
//
// Actions are compared as text ("spawn w1; send w1 t2; resolve t2 value"),
// which keeps each expected sequence readable and a mismatch easy to see.
//
// Invariants: POOL-1, POOL-2, POOL-3, POOL-5, POOL-6 (proofs/INVARIANTS.md).
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

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
using State = Machine::WorkerState;

// Times in the tests are milliseconds since the pool started.
Nanos at(long ms) { return std::chrono::milliseconds(ms); }
constexpr Nanos none{0};

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
    default:
      return "broken";
  }
}

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
    default:
      return "terminated";
  }
}

// Says yes to every task except the ones the test cancelled, and records
// every question (each task is asked at most once).
struct Gate : keel::pool::StartGate {
  std::set<TaskId> cancelled;
  std::vector<TaskId> asked;
  bool try_start(TaskId t) override {
    asked.push_back(t);
    return cancelled.count(t) == 0;
  }
};

// The driver's side: feeds events and takes the actions they produced.
struct Rig {
  Gate gate;
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
  EXPECT_EQ(r.result(2, 2), "resolve t2 value");
  EXPECT_EQ(r.submit(5), "send w2 t5");  // w2 has none in flight now
  EXPECT_EQ(r.submit(6), "send w2 t6");  // w2 and w3 have one each; w2 comes first
}

TEST(PoolMachine, ATimedTaskRunsAloneOnItsWorker) {
  Rig r({.workers = 1, .depth = 3});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1, 0), "send w1 t1");
  EXPECT_EQ(r.submit(2, 0, 10), "");  // timed: waits for an idle worker
  EXPECT_EQ(r.submit(3, 0), "");      // FIFO: behind the timed one
  EXPECT_EQ(r.result(1, 1, 5), "resolve t1 value; send w1 t2");
  // Nothing is queued behind a timed task; its clock started when it was sent.
  EXPECT_EQ(r.m.next_deadline(), at(15));
  EXPECT_EQ(r.m.in_flight(1), 1u);
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
  // Killed, and its replacement starts at once (as for a timeout).
  EXPECT_EQ(r.result(1, 2), "kill w1 9; spawn w2");
  EXPECT_FALSE(r.last_result);
  EXPECT_EQ(r.m.state_of(1), State::killing);
  // A second wrong result from a worker already being killed kills nothing more.
  EXPECT_EQ(r.result(1, 2), "");
  // The head is charged a run (it may have started); the untouched one goes
  // back to the queue. Our own kill is not counted as a death.
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9");
  EXPECT_EQ(r.m.counters().deaths, 0u);
  EXPECT_EQ(r.ready(2), "send w2 t2");
  // A result for a task the worker never had is just as wrong.
  EXPECT_EQ(r.result(2, 77), "kill w2 9; spawn w3");
  EXPECT_FALSE(r.last_result);
}

TEST(PoolMachine, DeathMidTaskWithoutRetriesResolvesLostWithTheExitCode) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.exited(1, -11), "resolve t1 lost w1 -11; spawn w2");
  EXPECT_EQ(r.m.counters().deaths, 1u);
  EXPECT_EQ(r.m.counters().replacements, 1u);
  EXPECT_EQ(r.m.counters().lost, 1u);
  EXPECT_EQ(r.m.active_workers(), 1u);
}

TEST(PoolMachine, RetriesRunATaskAtMostOnePlusRetriesTimes) {
  Rig r({.workers = 1, .retries = 2});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.exited(1, 1), "spawn w2");
  EXPECT_EQ(r.ready(2), "send w2 t1");
  EXPECT_EQ(r.exited(2, 1), "spawn w3");
  EXPECT_EQ(r.ready(3), "send w3 t1");
  EXPECT_EQ(r.exited(3, 1), "resolve t1 lost w3 1; spawn w4");
  EXPECT_EQ(r.ready(4), "");
  EXPECT_EQ(r.m.counters().retried, 2u);
  EXPECT_EQ(r.m.counters().sent, 3u);
  // A re-sent task is not asked about again: its future is already running.
  EXPECT_EQ(r.gate.asked, std::vector<TaskId>{1});
}

TEST(PoolMachine, TasksBehindADeadHeadGoBackToTheFrontInOrderUncounted) {
  Rig r({.workers = 1, .depth = 3, .retries = 1});
  r.start();
  r.ready(1);
  r.submit(1);
  r.submit(2);
  r.submit(3);
  EXPECT_EQ(r.submit(4), "");
  EXPECT_EQ(r.exited(1, -9), "spawn w2");  // t1 retried; t2, t3 untouched
  EXPECT_EQ(r.m.counters().requeued, 2u);
  EXPECT_EQ(r.m.queued(), 4u);
  EXPECT_EQ(r.ready(2), "send w2 t1; send w2 t2; send w2 t3");
  EXPECT_EQ(r.exited(2, -9), "resolve t1 lost w2 -9; spawn w3");
  EXPECT_EQ(r.ready(3), "send w3 t2; send w3 t3; send w3 t4");
  // t2 reaches the head of a dying worker for the first time: it is retried,
  // because its earlier returns to the queue were not counted as runs.
  EXPECT_EQ(r.exited(3, -9), "spawn w4");
  EXPECT_EQ(r.ready(4), "send w4 t2; send w4 t3; send w4 t4");
  EXPECT_EQ(r.result(4, 2), "resolve t2 value");
}

TEST(PoolMachine, TimeoutResolvesTimedOutKillsAndReplacesAtOnce) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1, 0, 10), "send w1 t1");
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

TEST(PoolMachine, ATimedTaskQueuedBehindOthersStartsItsClockWhenSent) {
  Rig r({.workers = 1, .depth = 2});
  r.start();
  r.ready(1);
  r.submit(1, 0);
  EXPECT_EQ(r.submit(2, 0, 10), "");
  EXPECT_EQ(r.tick(50), "");  // still queued: never timed out while waiting
  EXPECT_EQ(r.result(1, 1, 60), "resolve t1 value; send w1 t2");
  EXPECT_EQ(r.m.next_deadline(), at(70));
  EXPECT_EQ(r.tick(69), "");
  EXPECT_EQ(r.tick(70), "resolve t2 timed_out; kill w1 9; spawn w2");
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
  // Already replaced when it began to retire: no second replacement.
  EXPECT_EQ(r.exited(1, 0), "");
  EXPECT_EQ(r.m.counters().deaths, 1u);
  EXPECT_EQ(r.m.counters().retirements, 0u);
  EXPECT_EQ(r.m.queued(), 2u);
  EXPECT_EQ(r.ready(2), "send w2 t1; send w2 t2; close w2; spawn w3");
}

TEST(PoolMachine, RestartLimitBreaksThePoolAfterRReplacementsWithinTheWindow) {
  Rig r({.workers = 1, .restart_limit = 2, .restart_window = std::chrono::milliseconds(100)});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.exited(1, 1, 10), "resolve t1 lost w1 1; spawn w2");
  EXPECT_EQ(r.exited(2, 1, 20), "spawn w3");
  EXPECT_EQ(r.submit(2, 25), "");
  EXPECT_EQ(r.exited(3, 1, 30), "resolve t2 broken; terminated");
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
  EXPECT_EQ(r.exited(w, 1, 615), "terminated");
  EXPECT_EQ(r.m.phase(), Phase::broken);
}

TEST(PoolMachine, InitializerFailureBreaksThePoolAndResolvesEveryTask) {
  Rig r({.workers = 2, .depth = 2, .has_initializer = true});
  r.start();
  r.ready(1);
  EXPECT_EQ(r.submit(1), "send w1 t1");
  EXPECT_EQ(r.submit(2), "send w1 t2");
  EXPECT_EQ(r.submit(3), "");
  EXPECT_EQ(r.init_failed(2), "resolve t3 broken; resolve t1 broken; resolve t2 broken; kill w1 9; kill w2 9");
  EXPECT_EQ(r.m.phase(), Phase::broken);
  EXPECT_EQ(r.m.broken_reason(), keel::pool::BrokenReason::initializer_failed);
  EXPECT_EQ(r.m.broken_worker(), 2u);
  EXPECT_EQ(r.m.queued(), 0u);
  EXPECT_EQ(r.m.in_flight(), 0u);
  // What the killed workers still report changes nothing; no replacement.
  EXPECT_EQ(r.result(1, 1), "");
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
  EXPECT_EQ(r.exited(2, 3), "resolve t2 broken; resolve t1 broken; kill w1 9");
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
  EXPECT_EQ(r.shutdown(true), "resolve t2 cancelled; resolve t3 cancelled");
  EXPECT_EQ(r.result(1, 1), "resolve t1 value; close w1");
  EXPECT_EQ(r.exited(1, 0), "terminated");
  EXPECT_EQ(r.m.counters().cancelled, 2u);
}

TEST(PoolMachine, TerminateKillsEveryWorkerAndCancelsQueuedTasks) {
  Rig r({.workers = 2, .depth = 2, .retries = 2});
  r.start();
  r.ready(1);
  r.ready(2);
  for (TaskId t = 1; t <= 5; ++t) r.submit(t);
  EXPECT_EQ(r.terminate(15), "resolve t5 cancelled; kill w1 15; kill w2 15");
  EXPECT_EQ(r.m.phase(), Phase::shutting_down);
  // No retries once terminating: the heads are lost, the rest cancelled.
  EXPECT_EQ(r.exited(1, -15), "resolve t1 lost w1 -15; resolve t3 cancelled");
  EXPECT_EQ(r.exited(2, -15), "resolve t2 lost w2 -15; resolve t4 cancelled; terminated");
}

TEST(PoolMachine, TerminateLetsAResultAlreadyWrittenResolve) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.submit(1);
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
  EXPECT_EQ(r.shutdown(false), "close w2");
  EXPECT_EQ(r.exited(1, -9), "resolve t1 lost w1 -9");
  EXPECT_EQ(r.exited(2, 0), "terminated");
}

TEST(PoolMachine, ARetriedTaskDuringShutdownGetsAReplacementWorker) {
  Rig r({.workers = 1, .retries = 1});
  r.start();
  r.ready(1);
  r.submit(1);
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
  EXPECT_EQ(r.gate.asked, (std::vector<TaskId>{1, 2, 3}));
  EXPECT_EQ(r.m.counters().cancelled, 1u);
  EXPECT_EQ(r.m.counters().resolved, 1u);  // t2 is final already: no Resolve
  EXPECT_EQ(r.m.queued(), 0u);
}

TEST(PoolMachine, NextDeadlineIsTheEarliestTimedHead) {
  Rig r({.workers = 2});
  r.start();
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
  r.ready(1);
  r.ready(2);
  r.submit(1, 0, 30);
  r.submit(2, 5, 10);
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
  r.ready(1);
  EXPECT_EQ(r.ready(1), "");  // a second ready
  EXPECT_EQ(r.m.phase(), Phase::running);
  EXPECT_EQ(r.m.live_workers(), 1u);
}

// Durations near Nanos::max() ("no limit") must not overflow the deadline
// arithmetic (head_since + timeout, restart time + window: signed overflow).
TEST(PoolMachine, ATaskWithTheLargestTimeoutIsNotTimedOutAtOnce) {
  Rig r({.workers = 1});
  r.start();
  r.ready(1);
  r.m.submit(1, Nanos::max(), at(5));
  EXPECT_EQ(r.take(), "send w1 t1");
  EXPECT_EQ(r.m.next_deadline(), Nanos::max());
  EXPECT_EQ(r.tick(6), "");
}

TEST(PoolMachine, TheLargestRestartWindowRemembersEveryReplacement) {
  Rig r({.workers = 1, .restart_limit = 1, .restart_window = Nanos::max()});
  r.start();
  EXPECT_EQ(r.exited(1, 1, 10), "spawn w2");
  EXPECT_EQ(r.exited(2, 1, 20), "terminated");
  EXPECT_EQ(r.m.phase(), Phase::broken);
}

}  // namespace
