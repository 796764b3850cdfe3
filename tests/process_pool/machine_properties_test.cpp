// RapidCheck stateful test of keel::pool::Machine against a simulated world
// that plays the driver, the start slots (the StartGate) and every worker.
//
// The world keeps what a driver can know from the actions and what the
// workers really did: the parent's FIFO queue, the clock, each task's runs
// and finality, and for each worker the frames it was sent in order, the
// start slot of each (sent, started, dead), the task it runs, the messages
// it wrote that the driver has not read yet, and the list the machine must
// hold for it (which of those it knows to have started, since when) and the
// frames it took back. Workers behave as real ones can: a worker takes its
// frames in order, wins a frame's slot (sent -> started) before running it
// or finds it dead and writes `skipped`, writes `started` before it runs the
// task and the result after; the driver reads those messages in order, maybe
// much later, so the parent's revoke can lose to a start it has not heard
// of. A worker sends `ready` once, may fail its initializer, dies at any
// moment with any status (also just after winning a slot, before saying so;
// the driver reads its channel to the end before it reports the exit), and
// otherwise exits only when killed, after a failed initializer, or when
// closed with nothing left. A faulty worker reports a result, a start or a
// skip of a task that is not its first; the machine must refuse it and kill
// the worker, and the driver stops reading it. The user cancels futures: a
// queued one (the gate says no when it comes to the front), a sent one by
// winning its slot, or one call of a chunk (the slot dies, the rest is still
// wanted: the gate says yes again). `pipeline` is random too (0: fixed depth).
//
// Commands name their worker or task by a selector resolved against the
// world when the command runs (the n-th candidate, modulo their number), so
// every generated sequence is runnable and shrinks freely; the rc::state
// model only tracks whether the edge is closed, and a step count.
//
// Checked as each gate question and each action comes out, and after every
// event (the world is tests/support/sim_pool_world.hpp, shared with
// fuzz/pool_machine.cpp, whose header has the full list, and the Relacy
// pool model):
// - POOL-1: each task resolved exactly once, with an outcome the event
//   allows; the machine's counts agree with the world;
// - POOL-2: runs <= 1 + retries; a task whose user's cancel succeeded never
//   starts; the gate is asked about the queue's front only, and each yes is
//   followed by the send;
// - POOL-3, POOL-5: active workers at the target; restart limit and
//   initializer failure exactly as an independent record says;
// - POOL-6: depth (the adaptive one too, from the world's own mean),
//   max_tasks_per_child, nothing behind a timed task or a straggler,
//   timeouts from the start, next_deadline();
// - POOL-7: the machine knows a task started exactly when the world told it
//   (notice, failed revoke); a task resolved lost or retried had started; one
//   that never started is never lost nor retried; a future is running only
//   after its start notice; legitimate notices are never refused;
// - POOL-8: after a death every held task that had not started is queued
//   again at the front, in order, uncounted;
// - POOL-9: after every event, a ready worker with room and nothing in
//   flight means an empty queue and no worker (not being killed) with two or
//   more in flight whose youngest is not known to have started, except where
//   the idle workers hold a stale frame of that task;
// - POOL-11: the machine publishes a break (its `broken` action, once, when
//   it breaks) before any task is resolved broken.
// At the end the test shuts down, lets every worker finish and exit, and
// requires every task resolved exactly once, Terminated once, no worker left.
//
// Invariants: POOL-1, POOL-2, POOL-3, POOL-5, POOL-6, POOL-7, POOL-8, POOL-9,
// POOL-11 (proofs/INVARIANTS.md).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../support/test_support.hpp"

// A broken invariant fails the property with its ID and what was seen.
#define POOL_CHECK(invariant, cond, what)                         \
  do {                                                            \
    if (!(cond)) RC_FAIL(std::string(invariant) + ": " + (what)); \
  } while (0)

#include "../support/sim_pool_world.hpp"

namespace {

// The world: tests/support/sim_pool_world.hpp.
using namespace keel::pool_sim;

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
  int how = *rc::gen::weightedElement<int>({{4, 0}, {1, 1}, {2, 2}});  // one, all, one call of a chunk
  void run(const Model&, World& w) const override { w.cancel(sel, how == 1, how == 2); }
  void show(std::ostream& os) const override {
    os << (how == 1 ? "cancel all" : how == 2 ? "cancel a call of chunk" : "cancel") << "(#" << sel << ")";
  }
};

struct DiscardOldest : Step {
  void checkPreconditions(const Model& m) const override { RC_PRE(!m.closed); }
  void run(const Model&, World& w) const override { w.discard_oldest(); }
  void show(std::ostream& os) const override { os << "discard_oldest"; }
};

struct Ready : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.ready(sel); }
  void show(std::ostream& os) const override { os << "worker_ready(#" << sel << ")"; }
};

struct Advance : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.advance(sel); }
  void show(std::ostream& os) const override { os << "first task runs to its report(#" << sel << ")"; }
};

struct StartNext : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.start_next(sel); }
  void show(std::ostream& os) const override { os << "next slot won and said(#" << sel << ")"; }
};

struct StepSilently : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.step_silently(sel); }
  void show(std::ostream& os) const override { os << "worker step, unread(#" << sel << ")"; }
};

struct ReadOne : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.read_one(sel); }
  void show(std::ostream& os) const override { os << "driver reads a message(#" << sel << ")"; }
};

struct BadReport : Step {
  unsigned sel = selector();
  unsigned which = *rc::gen::inRange(0u, 64u);
  int kind = *rc::gen::inRange(0, 3);
  void run(const Model&, World& w) const override { w.bad_report(sel, which, kind); }
  void show(std::ostream& os) const override {
    os << (kind == 0 ? "bad result" : kind == 1 ? "bad start" : "bad skip") << "(#" << sel << ", " << which << ")";
  }
};

struct Exit : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.natural_exit(sel); }
  void show(std::ostream& os) const override { os << "exit as told(#" << sel << ")"; }
};

struct Crash : Step {
  unsigned sel = selector();
  int code = *rc::gen::element(0, 1, -9, -11);
  unsigned how = *rc::gen::inRange(0u, 8u);
  void run(const Model&, World& w) const override { w.crash(sel, code, how); }
  void show(std::ostream& os) const override {
    os << "dies(#" << sel << ((how & 1) != 0 ? " of the busiest" : "") << ((how & 2) != 0 ? ", won a slot" : "")
       << ((how & 4) != 0 ? " and said so" : "") << ", code " << code << ")";
  }
};

struct Tick : Step {
  long dt = *rc::gen::element(0L, 1L, 4L, 10L, 40L);
  void run(const Model&, World& w) const override {
    w.set_clock(w.now() + ms(dt));
    w.tick();
  }
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
      {2, make<Cancel>()},
      {m.closed ? 0u : 1u, make<DiscardOldest>()},
      {5, make<Ready>()},
      {5, make<Advance>()},
      {2, make<StartNext>()},
      {3, make<StepSilently>()},
      {2, make<ReadOne>()},
      {1, make<BadReport>()},
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
  c.pipeline = ms(*rc::gen::weightedElement<long>({{2, 0L}, {1, 5L}, {1, 20L}}));
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
           << "ms initializer=" << c.has_initializer
           << " pipeline=" << std::chrono::duration_cast<std::chrono::milliseconds>(c.pipeline).count() << "ms\n";
  World world(initial.cfg, Nanos::zero());
  if (allow_terminate_early) {
    rc::state::check(initial, world, [](const Model& m) {
      return rc::gen::weightedOneOf<std::shared_ptr<const PoolCommand>>(
          {{30, next_command(m)}, {m.closed || m.steps < 10 ? 0u : 1u, make<Terminate>()}});
    });
  } else {
    rc::state::check(initial, world, &next_command);
  }
  world.drive_to_termination(0);
  const auto& k = world.machine().counters();
  // One label per run, the rarest thing it reached, to show the spread.
  const char* what = world.machine().phase() == Phase::broken ? "broken"
                     : k.stolen > 0                           ? "stolen"
                     : k.skipped > 0                          ? "skipped after a cancel"
                     : k.requeued > 0                         ? "requeued after a death"
                     : k.retried > 0                          ? "retried"
                     : k.lost > 0                             ? "lost"
                     : k.timed_out > 0                        ? "timed out"
                     : k.deaths > 0                           ? "deaths"
                                                              : "no deaths";
  RC_TAG(what);
}

TEST(PoolMachineProperties, StatefulAgainstModel) {
  EXPECT_TRUE(
      keel_test::rc_check("pool Machine matches the simulated world", 1000, 100, [] { check_against_model(false); }));
}

// The same, with terminate() also possible before any shutdown.
TEST(PoolMachineProperties, StatefulAgainstModelWithEarlyTerminate) {
  EXPECT_TRUE(keel_test::rc_check("pool Machine matches the simulated world (terminate any time)", 300, 100,
                                  [] { check_against_model(true); }));
}

}  // namespace
