// RapidCheck stateful test of keel::cluster::Machine against a simulated
// world that plays the driver's start slots (the Gate), the users and every
// node agent, with random configurations (1..3 nodes, 1..3 workers each,
// ahead 0..2) beyond the exhaustive explorer's bounds
// (models/cluster/cluster_machine_explore.cpp, whose world this one follows).
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
#include "kernel/src/cluster/machine.hpp"

namespace {

using keel::cluster::Action;
using keel::cluster::Gate;
using keel::cluster::Machine;
using keel::cluster::MachineConfig;
using keel::cluster::NodeId;
using keel::cluster::Outcome;
using keel::cluster::TaskId;
using Phase = Machine::Phase;
using MState = Machine::NodeState;

#define CHECK_THAT(invariant, cond, what) \
  if (!(cond)) RC_FAIL(std::string(invariant) + ": " + (what))

std::string tn(TaskId t) { return "t" + std::to_string(t); }
std::string nn(NodeId n) { return "n" + std::to_string(n); }

struct Msg {
  enum Kind : std::uint8_t { open, offer, go, drop, withdraw, terminate, close, ready, broken, claim, answer, closed };
  Kind kind;
  TaskId t = 0;
  unsigned cap = 0;
};

struct Tk {
  enum Slot : std::uint8_t { idle, armed, started } slot = idle;
  bool resolved = false;
  Outcome outcome = Outcome::answered;
  unsigned parts = 1, cancelled = 0, gos = 0;
  bool killed = false;
  NodeId armed_on = 0, ran_on = 0;
  bool all_cancelled() const { return cancelled == parts; }
};

struct Nd {
  enum State : std::uint8_t { unopened, opening, ready, dead, closed } st = unopened;
  unsigned cap = 0;
  std::deque<TaskId> offers;
  std::vector<TaskId> claimed, running;
  bool terminated = false, said_broken = false;
  std::deque<Msg> in, out;
  bool free_worker() const { return claimed.size() + running.size() < cap; }
};

class World final : public Gate {
 public:
  World(const MachineConfig& c, unsigned max_cap) : cfg_(c), max_cap_(max_cap), m_(c, *this), nodes_(c.nodes) {
    tasks_.emplace_back();  // ids from 1
    m_.start();
    starting_ = true;
    settle();
    starting_ = false;
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // ---- commands (each a no-op where the selected thing cannot happen)

  void submit(bool chunk) {
    if (closed_) return;
    tasks_.emplace_back();
    tasks_.back().parts = chunk ? 2 : 1;
    const TaskId t = tasks_.size() - 1;
    begin(Ev::other);
    ev_ = Ev::submit;
    m_.submit(t);
    settle();
    check();
  }

  void cancel(unsigned sel) {
    std::vector<TaskId> c;
    for (TaskId t = 1; t < tasks_.size(); ++t) {
      const Tk& k = tasks_[t];
      if (!k.resolved && k.slot != Tk::started && !k.all_cancelled()) c.push_back(t);
    }
    if (c.empty()) return;
    Tk& k = tasks_[c[sel % c.size()]];
    ++k.cancelled;
    if (k.slot == Tk::armed) k.killed = true;
  }

  void node_reads(unsigned sel) {
    NodeId n = 0;
    if (!pick_node(
            sel, [](const Nd& x) { return !x.in.empty(); }, n))
      return;
    Nd& x = nodes_[n];
    const Msg m = x.in.front();
    x.in.pop_front();
    if (x.st == Nd::closed || x.st == Nd::dead) return;
    switch (m.kind) {
      case Msg::open:
        if (x.st == Nd::unopened) x.st = Nd::opening;
        break;
      case Msg::offer:
        x.offers.push_back(m.t);
        break;
      case Msg::withdraw:
        x.offers.erase(std::remove(x.offers.begin(), x.offers.end(), m.t), x.offers.end());
        break;
      case Msg::go: {
        auto it = std::find(x.claimed.begin(), x.claimed.end(), m.t);
        if (it == x.claimed.end()) break;
        x.claimed.erase(it);
        x.running.push_back(m.t);
        CHECK_THAT("CLUSTER-3", x.running.size() <= x.cap, nn(n) + " runs more tasks than it has workers");
        break;
      }
      case Msg::drop:
        x.claimed.erase(std::remove(x.claimed.begin(), x.claimed.end(), m.t), x.claimed.end());
        break;
      case Msg::terminate:
        x.terminated = true;
        break;
      case Msg::close:
        for (TaskId t : x.running) x.out.push_back({Msg::answer, t});
        x.running.clear();
        x.offers.clear();
        x.claimed.clear();
        x.out.push_back({Msg::closed});
        x.st = Nd::closed;
        break;
      default:
        RC_FAIL("world: a rank-0-bound message on a node's channel");
    }
  }

  void rank0_reads(unsigned sel) {
    NodeId n = 0;
    if (!pick_node(
            sel, [](const Nd& x) { return !x.out.empty(); }, n))
      return;
    Nd& x = nodes_[n];
    const Msg m = x.out.front();
    x.out.pop_front();
    begin(Ev::deliver);
    ev_node_ = n;
    ev_msg_ = m.kind;
    ev_task_ = m.t;
    switch (m.kind) {
      case Msg::ready:
        m_.node_ready(n, m.cap);
        break;
      case Msg::broken:
        may_break_ = true;
        m_.node_failed(n);
        break;
      case Msg::claim:
        m_.claim(n, m.t);
        break;
      case Msg::answer:
        m_.answer(n, m.t);
        break;
      case Msg::closed:
        if (m_.state_of(n) != MState::closing) may_break_ = true;
        m_.node_closed(n);
        break;
      default:
        RC_FAIL("world: a node-bound message on rank 0's channel");
    }
    settle();
    check();
  }

  void ready(unsigned sel, unsigned cap) {
    NodeId n = 0;
    if (!pick_node(
            sel, [](const Nd& x) { return x.st == Nd::opening && !x.said_broken; }, n))
      return;
    nodes_[n].st = Nd::ready;
    nodes_[n].cap = 1 + cap % max_cap_;
    nodes_[n].out.push_back({Msg::ready, 0, nodes_[n].cap});
  }

  void claim(unsigned sel) {
    NodeId n = 0;
    if (!pick_node(
            sel, [](const Nd& x) { return x.st == Nd::ready && !x.terminated && !x.offers.empty() && x.free_worker(); },
            n))
      return;
    Nd& x = nodes_[n];
    const TaskId t = x.offers.front();
    x.offers.pop_front();
    x.claimed.push_back(t);
    x.out.push_back({Msg::claim, t});
  }

  void answer(unsigned sel, unsigned which) {
    NodeId n = 0;
    if (!pick_node(
            sel, [](const Nd& x) { return x.st == Nd::ready && !x.running.empty(); }, n))
      return;
    Nd& x = nodes_[n];
    const auto it = x.running.begin() + static_cast<long>(which % x.running.size());
    x.out.push_back({Msg::answer, *it});
    x.running.erase(it);
  }

  void fail(unsigned sel, bool agent_dies) {
    NodeId n = 0;
    if (!pick_node(
            sel, [](const Nd& x) { return (x.st == Nd::opening || x.st == Nd::ready) && !x.said_broken; }, n))
      return;
    Nd& x = nodes_[n];
    x.said_broken = true;
    x.out.push_back({Msg::broken});
    if (agent_dies) {
      x.out.push_back({Msg::closed});
      x.st = Nd::dead;
      x.in.clear();
      x.offers.clear();
      x.claimed.clear();
      x.running.clear();
    }
  }

  void shutdown(bool cancel_futures) {
    if (shut_ || terminate_) return;
    closed_ = shut_ = true;
    begin(Ev::shutdown);
    if (cancel_futures && m_.phase() != Phase::broken) cancel_all_ = true;
    m_.shutdown(cancel_futures);
    settle();
    check();
  }

  void terminate() {
    if (terminate_) return;
    closed_ = terminate_ = true;
    begin(Ev::terminate);
    if (m_.phase() != Phase::broken) cancel_all_ = terminating_ = true;
    m_.terminate();
    settle();
    for (NodeId n = 0; n < nodes_.size(); ++n)
      if (m_.state_of(n) == MState::ready && m_.running_on(n) > 0)
        CHECK_THAT("CLUSTER-5", term_sent_[n], "terminate left " + nn(n) + "'s running tasks alone");
    check();
  }

  void supervisor_failed() {
    begin(Ev::other);
    may_break_ = true;
    m_.supervisor_failed();
    settle();
    check();
  }

  // With no more faults or cancels: the user shuts down (if not yet) and
  // every message is read and every task answered, as long as anything can
  // happen; then everything must be over.
  void drive_to_quiet(bool cancel_futures) {
    shutdown(cancel_futures);
    for (unsigned guard = 0; guard < 100000; ++guard) {
      bool moved = false;
      for (NodeId n = 0; n < nodes_.size(); ++n) {
        Nd& x = nodes_[n];
        if (!x.in.empty()) {
          node_reads(pos(n, [](const Nd& y) { return !y.in.empty(); }));
          moved = true;
        } else if (x.st == Nd::opening && !x.said_broken) {
          ready(pos(n, [](const Nd& y) { return y.st == Nd::opening && !y.said_broken; }), guard);
          moved = true;
        } else if (x.st == Nd::ready && !x.running.empty()) {
          answer(pos(n, [](const Nd& y) { return y.st == Nd::ready && !y.running.empty(); }), guard);
          moved = true;
        } else if (x.st == Nd::ready && !x.terminated && !x.offers.empty() && x.free_worker()) {
          claim(pos(n, [](const Nd& y) {
            return y.st == Nd::ready && !y.terminated && !y.offers.empty() && y.free_worker();
          }));
          moved = true;
        }
        if (!nodes_[n].out.empty()) {
          rank0_reads(pos(n, [](const Nd& y) { return !y.out.empty(); }));
          moved = true;
        }
      }
      if (!moved) break;
    }
    for (TaskId t = 1; t < tasks_.size(); ++t) CHECK_THAT("CLUSTER-1", tasks_[t].resolved, tn(t) + " never resolved");
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      CHECK_THAT("CLUSTER-5", nodes_[n].st == Nd::closed || nodes_[n].st == Nd::dead, nn(n) + " never closed");
      CHECK_THAT("CLUSTER-5", m_.state_of(n) == MState::closed, "rank 0 never saw " + nn(n) + " closed");
    }
    CHECK_THAT("CLUSTER-5", m_.terminated() && terminated_seen_, "the cluster never terminated");
    if (!cancel_all_ && m_.phase() != Phase::broken) {
      for (TaskId t = 1; t < tasks_.size(); ++t)
        if (tasks_[t].cancelled == 0)
          CHECK_THAT("CLUSTER-5", tasks_[t].outcome == Outcome::answered,
                     tn(t) + ", which nobody cancelled, was not answered after shutdown(wait)");
    }
  }

  const Machine& machine() const { return m_; }

  // ---- the Gate

  bool arm(TaskId t, NodeId n) override {
    RC_ASSERT(t >= 1 && t < tasks_.size());
    Tk& k = tasks_[t];
    CHECK_THAT("CLUSTER-1", !k.resolved, "armed " + tn(t) + ", resolved already");
    CHECK_THAT("CLUSTER-2", k.slot == Tk::idle, "armed " + tn(t) + " while its slot was live");
    if (k.all_cancelled()) return false;
    k.slot = Tk::armed;
    k.armed_on = n;
    k.killed = false;
    armed_now_.emplace_back(t, n);
    return true;
  }

  Start start(TaskId t, NodeId n) override {
    RC_ASSERT(t >= 1 && t < tasks_.size());
    Tk& k = tasks_[t];
    CHECK_THAT("CLUSTER-2", k.slot == Tk::armed && k.armed_on == n, "started " + tn(t) + " on " + nn(n) + " unarmed");
    CHECK_THAT("CLUSTER-2", ev_ == Ev::deliver && ev_msg_ == Msg::claim && ev_node_ == n && ev_task_ == t,
               "started " + tn(t) + " with no claim of it");
    if (k.killed) {
      k.slot = Tk::idle;
      return k.parts > 1 ? Start::again : Start::cancelled;
    }
    k.slot = Tk::started;
    started_now_ = t;
    return Start::started;
  }

  void revoke(TaskId t, NodeId n) override {
    RC_ASSERT(t >= 1 && t < tasks_.size());
    Tk& k = tasks_[t];
    CHECK_THAT("CLUSTER-2", k.slot == Tk::armed && k.armed_on == n, "revoked " + tn(t) + " unarmed");
    k.slot = Tk::idle;
  }

 private:
  enum class Ev : std::uint8_t { other, submit, deliver, shutdown, terminate };

  template <class Pred>
  bool pick_node(unsigned sel, Pred p, NodeId& out) const {
    std::vector<NodeId> c;
    for (NodeId n = 0; n < nodes_.size(); ++n)
      if (p(nodes_[n])) c.push_back(n);
    if (c.empty()) return false;
    out = c[sel % c.size()];
    return true;
  }
  // The selector that picks node n among those p holds for.
  template <class Pred>
  unsigned pos(NodeId n, Pred p) const {
    unsigned i = 0;
    for (NodeId m = 0; m < n; ++m)
      if (p(nodes_[m])) ++i;
    return i;
  }

  void begin(Ev e) {
    ev_ = e;
    ev_node_ = 0;
    ev_task_ = 0;
    ev_msg_ = Msg::open;
    armed_now_.clear();
    started_now_ = 0;
  }

  void settle() {
    auto& acts = m_.actions();
    for (const Action& a : acts) {
      switch (a.kind) {
        case Action::open:
          CHECK_THAT("CLUSTER-5", starting_, "opened " + nn(a.node) + " again");
          nodes_[a.node].in.push_back({Msg::open});
          break;
        case Action::offer: {
          const auto it = std::find(armed_now_.begin(), armed_now_.end(), std::make_pair(a.task, a.node));
          CHECK_THAT("CLUSTER-2", it != armed_now_.end(), "offered " + tn(a.task) + " unarmed");
          armed_now_.erase(it);
          nodes_[a.node].in.push_back({Msg::offer, a.task});
          break;
        }
        case Action::go: {
          Tk& k = tasks_[a.task];
          CHECK_THAT("CLUSTER-2",
                     ev_ == Ev::deliver && ev_msg_ == Msg::claim && ev_node_ == a.node && ev_task_ == a.task,
                     "go " + tn(a.task) + " without its claim");
          CHECK_THAT("CLUSTER-2", started_now_ == a.task && k.slot == Tk::started, "go " + tn(a.task) + " ungated");
          CHECK_THAT("CLUSTER-2", k.gos == 0, "go " + tn(a.task) + " twice");
          CHECK_THAT("CLUSTER-2", !k.all_cancelled() && (k.parts > 1 || k.cancelled == 0),
                     "go " + tn(a.task) + " after its user's cancel succeeded");
          ++k.gos;
          k.ran_on = a.node;
          nodes_[a.node].in.push_back({Msg::go, a.task});
          break;
        }
        case Action::drop:
          nodes_[a.node].in.push_back({Msg::drop, a.task});
          break;
        case Action::withdraw: {
          const Tk& k = tasks_[a.task];
          CHECK_THAT("CLUSTER-2", !(k.slot == Tk::armed && k.armed_on == a.node),
                     "withdrew " + tn(a.task) + " unrevoked");
          nodes_[a.node].in.push_back({Msg::withdraw, a.task});
          break;
        }
        case Action::terminate:
          term_sent_[a.node] = true;
          nodes_[a.node].in.push_back({Msg::terminate});
          break;
        case Action::close:
          CHECK_THAT("CLUSTER-5",
                     m_.phase() == Phase::broken || (m_.queued() == 0 && m_.offered() == 0 && m_.running() == 0),
                     "closed " + nn(a.node) + " with work left");
          nodes_[a.node].in.push_back({Msg::close});
          break;
        case Action::resolve:
          resolved(a.task, a.outcome);
          break;
        case Action::terminated:
          CHECK_THAT("CLUSTER-5", !terminated_seen_, "terminated twice");
          terminated_seen_ = true;
          for (NodeId n = 0; n < nodes_.size(); ++n)
            CHECK_THAT("CLUSTER-5", m_.state_of(n) == MState::closed, "terminated before " + nn(n) + " closed");
          for (TaskId t = 1; t < tasks_.size(); ++t)
            CHECK_THAT("CLUSTER-1", tasks_[t].resolved, "terminated with " + tn(t) + " unresolved");
          break;
      }
    }
    acts.clear();
    CHECK_THAT("CLUSTER-2", armed_now_.empty(), "armed a task and never offered it");
  }

  void resolved(TaskId t, Outcome o) {
    RC_ASSERT(t >= 1 && t < tasks_.size());
    Tk& k = tasks_[t];
    CHECK_THAT("CLUSTER-1", !k.resolved, tn(t) + " resolved twice");
    CHECK_THAT("CLUSTER-2", k.slot != Tk::armed, tn(t) + " resolved with its slot armed");
    switch (o) {
      case Outcome::answered:
        CHECK_THAT("CLUSTER-1",
                   ev_ == Ev::deliver && ev_msg_ == Msg::answer && ev_task_ == t && k.gos == 1 && k.ran_on == ev_node_,
                   tn(t) + " answered without its node's answer");
        break;
      case Outcome::cancelled:
        CHECK_THAT("CLUSTER-2", k.gos == 0, tn(t) + " cancelled after it was let run");
        CHECK_THAT("CLUSTER-1",
                   k.all_cancelled() || ev_ == Ev::terminate || (ev_ == Ev::shutdown && cancel_all_) ||
                       (ev_ == Ev::submit && m_.phase() != Phase::running),
                   tn(t) + " cancelled, which nobody cancelled");
        break;
      case Outcome::broken:
        CHECK_THAT("CLUSTER-6", m_.phase() == Phase::broken, tn(t) + " broken, but the cluster is not");
        break;
    }
    k.resolved = true;
    k.outcome = o;
  }

  void check() const {
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      const unsigned cap = m_.capacity_of(n);
      CHECK_THAT("CLUSTER-3", m_.running_on(n) <= cap, "rank 0 runs more on " + nn(n) + " than its workers");
      CHECK_THAT("CLUSTER-3", m_.offered_to(n) + m_.running_on(n) <= cap + cfg_.ahead,
                 nn(n) + " holds more offers than free workers + ahead");
    }
    if (m_.phase() != Phase::broken && !terminating_) {
      for (NodeId i = 0; i < nodes_.size(); ++i) {
        if (m_.state_of(i) != MState::ready || m_.capacity_of(i) - m_.running_on(i) <= m_.offered_to(i)) continue;
        CHECK_THAT("CLUSTER-4", m_.queued() == 0, nn(i) + " idles while tasks are queued");
        for (NodeId j = 0; j < nodes_.size(); ++j)
          CHECK_THAT("CLUSTER-4", j == i || m_.offered_to(j) + m_.running_on(j) <= m_.capacity_of(j),
                     nn(i) + " idles while offers wait behind " + nn(j) + "'s busy workers");
      }
    }
    if (cancel_all_)
      CHECK_THAT("CLUSTER-5", m_.queued() == 0 && m_.offered() == 0, "work left after a cancelling shutdown");
    if (m_.phase() == Phase::broken) {
      CHECK_THAT("CLUSTER-6", may_break_, "the cluster broke with no failure");
      for (TaskId t = 1; t < tasks_.size(); ++t)
        CHECK_THAT("CLUSTER-6", tasks_[t].resolved, "broken, but " + tn(t) + " is unresolved");
      for (NodeId n = 0; n < nodes_.size(); ++n)
        CHECK_THAT("CLUSTER-6", m_.state_of(n) == MState::closing || m_.state_of(n) == MState::closed,
                   "broken, but " + nn(n) + " is not closing");
    }
  }

  MachineConfig cfg_;
  unsigned max_cap_;
  Machine m_;
  std::vector<Tk> tasks_;
  std::vector<Nd> nodes_;
  std::vector<bool> term_sent_ = std::vector<bool>(8);
  bool closed_ = false, shut_ = false, terminate_ = false, cancel_all_ = false, terminating_ = false;
  bool may_break_ = false, terminated_seen_ = false, starting_ = false;
  Ev ev_ = Ev::other;
  NodeId ev_node_ = 0;
  TaskId ev_task_ = 0;
  Msg::Kind ev_msg_ = Msg::open;
  std::vector<std::pair<TaskId, NodeId>> armed_now_;
  TaskId started_now_ = 0;
};

// ---------------------------------------------------------------- commands

struct Model {
  bool closed = false;  // shutdown or terminate sent: the edge refuses submissions
  unsigned steps = 0;
};

using ClusterCommand = rc::state::Command<Model, World>;

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
  void run(const Model&, World& w) const override { w.submit(chunk); }
  void show(std::ostream& os) const override { os << (chunk ? "submit(chunk of 2)" : "submit"); }
};
struct Cancel : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.cancel(sel); }
  void show(std::ostream& os) const override { os << "cancel(#" << sel << ")"; }
};
struct NodeReads : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.node_reads(sel); }
  void show(std::ostream& os) const override { os << "node reads(#" << sel << ")"; }
};
struct Rank0Reads : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.rank0_reads(sel); }
  void show(std::ostream& os) const override { os << "rank 0 reads(#" << sel << ")"; }
};
struct Ready : Step {
  unsigned sel = selector(), cap = selector();
  void run(const Model&, World& w) const override { w.ready(sel, cap); }
  void show(std::ostream& os) const override { os << "ready(#" << sel << ", cap #" << cap << ")"; }
};
struct Claim : Step {
  unsigned sel = selector();
  void run(const Model&, World& w) const override { w.claim(sel); }
  void show(std::ostream& os) const override { os << "claim(#" << sel << ")"; }
};
struct Answer : Step {
  unsigned sel = selector(), which = selector();
  void run(const Model&, World& w) const override { w.answer(sel, which); }
  void show(std::ostream& os) const override { os << "answer(#" << sel << ", #" << which << ")"; }
};
struct Fail : Step {
  unsigned sel = selector();
  bool dies = *rc::gen::arbitrary<bool>();
  void run(const Model&, World& w) const override { w.fail(sel, dies); }
  void show(std::ostream& os) const override { os << (dies ? "agent dies(#" : "pool breaks(#") << sel << ")"; }
};
struct Shutdown : Step {
  bool cancel_futures = *rc::gen::arbitrary<bool>();
  void close(Model& m) const override { m.closed = true; }
  void run(const Model&, World& w) const override { w.shutdown(cancel_futures); }
  void show(std::ostream& os) const override { os << "shutdown(cancel_futures=" << cancel_futures << ")"; }
};
struct Terminate : Step {
  void close(Model& m) const override { m.closed = true; }
  void run(const Model&, World& w) const override { w.terminate(); }
  void show(std::ostream& os) const override { os << "terminate"; }
};
struct SupervisorFailed : Step {
  void run(const Model&, World& w) const override { w.supervisor_failed(); }
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
  World world(c, max_cap);
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

}  // namespace
