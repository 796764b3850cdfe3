// RapidCheck stateful test of keel::cluster::Machine against a simulated
// world that plays the driver's start slots (the Gate), the users and every
// node agent, with random configurations (1..3 nodes, 1..3 workers each,
// ahead 0..2) beyond the exhaustive explorer's bounds
// (models/cluster/cluster_machine_explore.cpp); both drive the one simulated
// world in tests/support/sim_cluster_world.hpp.
//
// Each node has two FIFO channels (rank 0 to node, node to rank 0), read one
// message at a time in random order across nodes, so claims cross withdraws
// and answers cross breaks. Nodes are honest (they claim their oldest offer
// only with a free worker, run what they are let run, answer it, stop
// claiming once told to terminate, answer and report closed on close), but
// may fail: their pool breaks (they say broken and serve on) or their agent
// dies (broken, closed, deaf). Users cancel a task (or one call of a chunk)
// until it starts. Commands name their node or task by a selector resolved
// when they run, so every sequence runs and shrinks freely; the rc::state
// model only tracks whether the edge is closed and a step count. After the
// sequence the world is driven to quiet (no faults, no cancels), which must
// end every task and every node.
//
// Checked as each gate call and action comes out, and after every event:
// - CLUSTER-1: a task resolves once, answered only on its node's answer of
//   its one run, cancelled only if cancelled, broken only once broken; at
//   the end every task resolved, every node closed, the machine terminated;
// - CLUSTER-2: go only for the task the node just claimed and the gate just
//   started, once, never after its user's cancel succeeded; the gate armed
//   before each offer, revoked before a withdraw or resolution;
// - CLUSTER-3: running <= capacity on both sides, offers <= free + ahead;
// - CLUSTER-4: unless terminating or broken, a ready node with a free
//   worker and nothing offered means nothing queued and nothing offered
//   behind busy workers;
// - CLUSTER-5: close only with nothing left (unless broken); nothing queued
//   or offered after a cancelling shutdown; without one (or a break) every
//   task nobody cancelled is answered;
// - CLUSTER-6: a break needs a failure, and resolves every task and closes
//   every node.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "../support/test_support.hpp"

// A broken invariant fails the property with its ID and what was seen.
#define CLUSTER_CHECK(invariant, cond, what)                      \
  do {                                                            \
    if (!(cond)) RC_FAIL(std::string(invariant) + ": " + (what)); \
  } while (0)

#include "../support/sim_cluster_world.hpp"

namespace {

using namespace keel::cluster_sim;

// Base-from-member: the machine's Gate exists before the world that holds
// the machine is built.
struct GateHolder {
  GateFor gate;
};

// The shared world, with the commands' selectors: each names its node or
// task as the n-th candidate (modulo their number), and is a no-op where
// nothing selected can happen.
class Sim final : private GateHolder, public World {
 public:
  Sim(const MachineConfig& c, unsigned max_cap) : World(c, gate), max_cap_(max_cap) { gate.world = this; }
  Sim(const Sim&) = delete;
  Sim& operator=(const Sim&) = delete;

  void submit(bool chunk) {
    if (closed_) return;
    World::submit(chunk ? 2 : 1);
    check();
  }

  void cancel(unsigned sel) {
    std::vector<TaskId> c;
    for (TaskId t = 1; t <= submitted(); ++t) {
      const Tk& k = task(t);
      if (!k.resolved && k.slot != Tk::started && !k.all_cancelled()) c.push_back(t);
    }
    if (!c.empty()) World::cancel(c[sel % c.size()]);
  }

  void node_reads(unsigned sel) {
    NodeId n = 0;
    if (pick_node(sel, can_recv, n)) World::node_reads(n);
  }

  void rank0_reads(unsigned sel) {
    NodeId n = 0;
    if (!pick_node(sel, can_deliver, n)) return;
    World::rank0_reads(n);
    check();
  }

  void ready(unsigned sel, unsigned cap) {
    NodeId n = 0;
    if (pick_node(sel, can_ready, n)) World::ready(n, 1 + cap % max_cap_);
  }

  void claim(unsigned sel) {
    NodeId n = 0;
    if (pick_node(sel, can_claim, n)) World::claim(n);
  }

  void answer(unsigned sel, unsigned which) {
    NodeId n = 0;
    if (!pick_node(sel, can_answer, n)) return;
    const std::vector<TaskId>& r = node(n).running;
    World::answer(n, r[which % r.size()]);
  }

  void fail(unsigned sel, bool agent_dies) {
    NodeId n = 0;
    if (pick_node(sel, can_fail, n)) World::fail(n, agent_dies);
  }

  void shutdown(bool cancel_futures) {
    if (shut_ || terminate_) return;
    closed_ = shut_ = true;
    World::shutdown(cancel_futures);
    check();
  }

  void terminate() {
    if (terminate_) return;
    closed_ = terminate_ = true;
    World::terminate();
    check();
  }

  void supervisor_failed() {
    World::supervisor_failed();
    check();
  }

  // With no more faults or cancels: the user shuts down (if not yet) and
  // every message is read and every task answered, as long as anything can
  // happen; then everything must be over.
  void drive_to_quiet(bool cancel_futures) {
    shutdown(cancel_futures);
    for (unsigned guard = 0; guard < 100000; ++guard) {
      bool moved = false;
      for (NodeId n = 0; n < nodes(); ++n) {
        const Nd& x = node(n);
        if (can_recv(x)) {
          node_reads(pos(n, can_recv));
          moved = true;
        } else if (can_ready(x)) {
          ready(pos(n, can_ready), guard);
          moved = true;
        } else if (can_answer(x)) {
          answer(pos(n, can_answer), guard);
          moved = true;
        } else if (can_claim(x)) {
          claim(pos(n, can_claim));
          moved = true;
        }
        if (can_deliver(node(n))) {
          rank0_reads(pos(n, can_deliver));
          moved = true;
        }
      }
      if (!moved) break;
    }
    at_end();
  }

 private:
  static bool can_recv(const Nd& x) { return !x.in.empty(); }
  static bool can_deliver(const Nd& x) { return !x.out.empty(); }
  static bool can_ready(const Nd& x) { return x.st == Nd::opening && !x.said_broken; }
  // Honest nodes only: a claim needs a free worker.
  static bool can_claim(const Nd& x) {
    return x.st == Nd::ready && !x.terminated && !x.offers.empty() && x.free_worker();
  }
  static bool can_answer(const Nd& x) { return x.st == Nd::ready && !x.running.empty(); }
  static bool can_fail(const Nd& x) { return (x.st == Nd::opening || x.st == Nd::ready) && !x.said_broken; }

  bool pick_node(unsigned sel, bool (*p)(const Nd&), NodeId& out) const {
    std::vector<NodeId> c;
    for (NodeId n = 0; n < nodes(); ++n)
      if (p(node(n))) c.push_back(n);
    if (c.empty()) return false;
    out = c[sel % c.size()];
    return true;
  }
  // The selector that picks node n among those p holds for.
  unsigned pos(NodeId n, bool (*p)(const Nd&)) const {
    unsigned i = 0;
    for (NodeId m = 0; m < n; ++m)
      if (p(node(m))) ++i;
    return i;
  }

  unsigned max_cap_;
  bool closed_ = false, shut_ = false, terminate_ = false;
};

// ---------------------------------------------------------------- commands

struct Model {
  bool closed = false;  // shutdown or terminate sent: the edge refuses submissions
  unsigned steps = 0;
};

using ClusterCommand = rc::state::Command<Model, Sim>;

struct Step : ClusterCommand {
  void apply(Model& m) const override {
    ++m.steps;
    close(m);
  }
  virtual void close(Model&) const {}
};

unsigned selector() { return *rc::gen::inRange(0u, 64u); }

struct Submit : Step {
  bool chunk = *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
  void checkPreconditions(const Model& m) const override { RC_PRE(!m.closed); }
  void run(const Model&, Sim& w) const override { w.submit(chunk); }
  void show(std::ostream& os) const override { os << (chunk ? "submit(chunk of 2)" : "submit"); }
};
struct Cancel : Step {
  unsigned sel = selector();
  void run(const Model&, Sim& w) const override { w.cancel(sel); }
  void show(std::ostream& os) const override { os << "cancel(#" << sel << ")"; }
};
struct NodeReads : Step {
  unsigned sel = selector();
  void run(const Model&, Sim& w) const override { w.node_reads(sel); }
  void show(std::ostream& os) const override { os << "node reads(#" << sel << ")"; }
};
struct Rank0Reads : Step {
  unsigned sel = selector();
  void run(const Model&, Sim& w) const override { w.rank0_reads(sel); }
  void show(std::ostream& os) const override { os << "rank 0 reads(#" << sel << ")"; }
};
struct Ready : Step {
  unsigned sel = selector(), cap = selector();
  void run(const Model&, Sim& w) const override { w.ready(sel, cap); }
  void show(std::ostream& os) const override { os << "ready(#" << sel << ", cap #" << cap << ")"; }
};
struct Claim : Step {
  unsigned sel = selector();
  void run(const Model&, Sim& w) const override { w.claim(sel); }
  void show(std::ostream& os) const override { os << "claim(#" << sel << ")"; }
};
struct Answer : Step {
  unsigned sel = selector(), which = selector();
  void run(const Model&, Sim& w) const override { w.answer(sel, which); }
  void show(std::ostream& os) const override { os << "answer(#" << sel << ", #" << which << ")"; }
};
struct Fail : Step {
  unsigned sel = selector();
  bool dies = *rc::gen::arbitrary<bool>();
  void run(const Model&, Sim& w) const override { w.fail(sel, dies); }
  void show(std::ostream& os) const override { os << (dies ? "agent dies(#" : "pool breaks(#") << sel << ")"; }
};
struct Shutdown : Step {
  bool cancel_futures = *rc::gen::arbitrary<bool>();
  void close(Model& m) const override { m.closed = true; }
  void run(const Model&, Sim& w) const override { w.shutdown(cancel_futures); }
  void show(std::ostream& os) const override { os << "shutdown(cancel_futures=" << cancel_futures << ")"; }
};
struct Terminate : Step {
  void close(Model& m) const override { m.closed = true; }
  void run(const Model&, Sim& w) const override { w.terminate(); }
  void show(std::ostream& os) const override { os << "terminate"; }
};
struct SupervisorFailed : Step {
  void run(const Model&, Sim& w) const override { w.supervisor_failed(); }
  void show(std::ostream& os) const override { os << "supervisor_failed"; }
};

template <class Cmd>
rc::Gen<std::shared_ptr<const ClusterCommand>> make() {
  return rc::gen::exec([]() -> std::shared_ptr<const ClusterCommand> { return std::make_shared<Cmd>(); });
}

rc::Gen<std::shared_ptr<const ClusterCommand>> next_command(const Model& m, bool faults) {
  return rc::gen::weightedOneOf<std::shared_ptr<const ClusterCommand>>({
      {m.closed ? 0u : 8u, make<Submit>()},
      {2, make<Cancel>()},
      {8, make<NodeReads>()},
      {8, make<Rank0Reads>()},
      {3, make<Ready>()},
      {6, make<Claim>()},
      {5, make<Answer>()},
      {faults ? 1u : 0u, make<Fail>()},
      {m.steps > 30 ? 1u : 0u, make<Shutdown>()},
      {m.steps > 30 ? 1u : 0u, make<Terminate>()},
      {faults && m.steps > 30 ? 1u : 0u, make<SupervisorFailed>()},
  });
}

void check_against_model(bool faults) {
  MachineConfig c;
  c.nodes = *rc::gen::inRange(1u, 4u);
  c.ahead = *rc::gen::inRange(0u, 3u);
  const unsigned max_cap = *rc::gen::inRange(1u, 4u);
  const bool cancel_futures = *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
  RC_LOG() << "config: nodes=" << c.nodes << " ahead=" << c.ahead << " capacity<=" << max_cap << "\n";
  Sim world(c, max_cap);
  rc::state::check(Model{}, world, [faults](const Model& m) { return next_command(m, faults); });
  world.drive_to_quiet(cancel_futures);
  const auto& k = world.machine().counters();
  RC_TAG(world.machine().phase() == Phase::broken ? "broken"
         : k.moved > 0                            ? "moved"
         : k.dropped > 0                          ? "dropped"
         : k.answered > 0                         ? "answered"
                                                  : "nothing answered");
}

TEST(ClusterMachineProperties, StatefulAgainstModel) {
  EXPECT_TRUE(keel_test::rc_check("cluster Machine matches the simulated world", 1000, 200,
                                  [] { check_against_model(false); }));
}

// The same with node failures (a broken pool, a dead agent) and the
// supervisor failing at any point.
TEST(ClusterMachineProperties, StatefulAgainstModelWithFailures) {
  EXPECT_TRUE(keel_test::rc_check("cluster Machine matches the simulated world (failures)", 1000, 200,
                                  [] { check_against_model(true); }));
}

// A node number past the last (a message that names a node the cluster
// does not have) is no node at all: the queries answer as for a closed node
// with nothing on it, and a ready from it is ignored. A bound of <= instead
// of < read the slot one past the node table (found by make mutate).
struct NoopGate final : keel::cluster::Gate {
  bool arm(keel::cluster::TaskId, keel::cluster::NodeId) override { return true; }
  Start start(keel::cluster::TaskId, keel::cluster::NodeId) override { return Start::started; }
  void revoke(keel::cluster::TaskId, keel::cluster::NodeId) override {}
};

TEST(ClusterMachine, ANodeNumberPastTheLastIsNoNode) {
  using keel::cluster::Machine;
  NoopGate gate;
  Machine m(keel::cluster::MachineConfig{2, 1}, gate);
  m.start();
  m.actions().clear();
  EXPECT_EQ(m.state_of(2), Machine::NodeState::closed);
  EXPECT_EQ(m.capacity_of(2), 0u);
  EXPECT_EQ(m.offered_to(2), 0u);
  EXPECT_EQ(m.running_on(2), 0u);
  m.node_ready(2, 4);
  EXPECT_TRUE(m.actions().empty()) << "a ready from a node the cluster does not have did something";
  EXPECT_EQ(m.state_of(2), Machine::NodeState::closed);
  // The real nodes are untouched: still opening, and a ready opens them.
  EXPECT_EQ(m.state_of(1), Machine::NodeState::opening);
  m.node_ready(1, 3);
  EXPECT_EQ(m.state_of(1), Machine::NodeState::ready);
  EXPECT_EQ(m.capacity_of(1), 3u);
}

}  // namespace
