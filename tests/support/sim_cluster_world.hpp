// One simulated world for keel::cluster::Machine, the ClusterPool
// supervisor's pure state machine (rank 0's decisions): the world plays the
// driver's start slots (the machine's Gate), the users and every node agent
// over two FIFO channels per node, carries out the machine's actions and
// checks each gate call, each action and the state after every event. Its
// users: the exhaustive explorer models/cluster/cluster_machine_explore.cpp
// (every event order within a row's bounds, the world's state hashed) and the
// RapidCheck test tests/cluster/machine_properties_test.cpp (random
// configurations beyond those bounds); what it simulates and checks is
// described at the top of each. One copy, so they cannot drift.
//
// Contract: the includer defines CLUSTER_CHECK(invariant, cond, what) first,
// its way of failing (a thrown keel::explore::Violation, RC_FAIL); `what` is
// a std::string expression evaluated only when the check fails. Everything
// sits in an unnamed namespace, so each translation unit has its own copy
// built on its own CLUSTER_CHECK (no ODR clash in one binary). The world is
// copyable (the explorer copies it at every branch), so the machine's Gate
// is not the world itself: the includer passes one (GateFor, pointed at the
// world that plays the next event). Events are named by node and task;
// choosing them (every enabled one, or a random selector) is the includer's.
// Each event checks what it can see at once; the includer calls check()
// after it, and at_end() once nothing but faults and cancels can happen.
//
// Invariants: CLUSTER-1, CLUSTER-2, CLUSTER-3, CLUSTER-4, CLUSTER-5,
// CLUSTER-6 (proofs/INVARIANTS.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "../../kernel/src/cluster/machine.hpp"

#ifndef CLUSTER_CHECK
#error "define CLUSTER_CHECK(invariant, cond, what) before including sim_cluster_world.hpp"
#endif

namespace keel::cluster_sim {
namespace {

using keel::cluster::Action;
using keel::cluster::Machine;
using keel::cluster::MachineConfig;
using keel::cluster::NodeId;
using keel::cluster::Outcome;
using keel::cluster::TaskId;
using Phase = Machine::Phase;
using MState = Machine::NodeState;
using Start = keel::cluster::Gate::Start;

std::string str(std::uint64_t n) { return std::to_string(n); }
std::string tn(TaskId t) { return "t" + str(t); }
std::string nn(NodeId n) { return "n" + str(n); }

const char* name_of(Outcome o) {
  static const char* const names[] = {"answered", "cancelled", "broken"};
  return names[static_cast<int>(o)];
}

// A message on one of a node's two channels.
struct Msg {
  enum Kind : std::uint8_t {
    // rank 0 -> node
    open,
    offer,
    go,
    drop,
    withdraw,
    terminate,
    close,
    // node -> rank 0
    ready,
    broken,
    claim,
    answer,
    closed,
  } kind;
  TaskId t = 0;
  unsigned cap = 0;  // ready: the capacity
};

// A task as its user and the gate see it.
struct Tk {
  enum Slot : std::uint8_t { idle, armed, started } slot = idle;
  bool resolved = false;
  Outcome outcome = Outcome::answered;
  unsigned parts = 1;      // calls in it
  unsigned cancelled = 0;  // calls its users cancelled
  bool killed = false;     // a cancel won its armed slot
  NodeId armed_on = 0;
  unsigned gos = 0;  // times it was let run
  NodeId ran_on = 0;
  bool all_cancelled() const { return cancelled == parts; }
};

// A node as the node itself sees it.
struct Nd {
  enum State : std::uint8_t { unopened, opening, ready, dead, closed } st = unopened;
  unsigned cap = 0;
  std::deque<TaskId> offers;                     // buffered, in the order received
  std::vector<TaskId> claimed;                   // claims sent, go or drop not read yet
  std::vector<TaskId> running;                   // let run, not answered
  bool terminated = false, said_broken = false;  // told to terminate its workers; said it broke
  std::deque<Msg> in;                            // rank 0 -> node, not read yet
  std::deque<Msg> out;                           // node -> rank 0, not read yet
  bool free_worker() const { return claimed.size() + running.size() < cap; }
};

struct Ev {
  enum Kind : std::uint8_t {
    submit,
    cancel,
    recv,      // node n reads its next message
    deliver,   // rank 0 reads node n's next message
    ready,     // node n: its pool opened with capacity x
    claim,     // node n claims its oldest offer (x: 1 if faulty, beyond its free workers)
    answer,    // node n answers task t
    fail,      // node n: its pool broke (x = 0) or its agent died (x = 1)
    shutdown,  // x: cancel_futures
    terminate,
    supervisor_failed
  } kind;
  NodeId n = 0;
  TaskId t = 0;
  unsigned x = 0;
};

class World;

// The machine's Gate: it answers for the world playing an event now. The
// explorer shares one among all copies of its world and points it at the
// copy it plays; the property test owns one per world.
struct GateFor final : keel::cluster::Gate {
  World* world = nullptr;
  bool arm(TaskId t, NodeId n) override;
  Start start(TaskId t, NodeId n) override;
  void revoke(TaskId t, NodeId n) override;
};

class World {
 public:
  // Starts the machine: it opens every node.
  World(const MachineConfig& cfg, keel::cluster::Gate& gate) : cfg_(cfg), m_(cfg, gate), nodes_(cfg.nodes) {
    tasks_.emplace_back();  // task t is tasks_[t]
    begin(Ev::submit);
    starting_ = true;
    m_.start();
    settle();
    starting_ = false;
    for (const Nd& x : nodes_) CLUSTER_CHECK("CLUSTER-5", x.in.size() == 1, "start did not open every node");
    check();
  }

  const Machine& machine() const { return m_; }
  unsigned submitted() const { return static_cast<unsigned>(tasks_.size() - 1); }
  const Tk& task(TaskId t) const { return tasks_[t]; }
  const Nd& node(NodeId n) const { return nodes_[n]; }
  std::size_t nodes() const { return nodes_.size(); }
  std::string log() const { return log_; }

  // ---- events (the includer checks that each can happen now)

  // The user submits the next task, a chunk of `parts` calls.
  void submit(unsigned parts) {
    tasks_.emplace_back();
    tasks_.back().parts = parts;
    const TaskId t = submitted();
    begin(Ev::submit, 0, t);
    m_.submit(t);
    settle();
  }

  // Its user cancels one call of task t, which has not started.
  void cancel(TaskId t) {
    begin(Ev::cancel, 0, t);
    Tk& k = tasks_[t];
    ++k.cancelled;
    if (k.slot == Tk::armed) k.killed = true;  // the user's CAS wins the slot
  }

  // Node n reads the next message rank 0 sent it.
  void node_reads(NodeId n) {
    begin(Ev::recv, n);
    node_reads_now(n);
  }

  // Rank 0 reads node n's next message.
  void rank0_reads(NodeId n) {
    begin(Ev::deliver, n);
    rank0_reads_now(n);
  }

  // Node n's pool opened with cap workers.
  void ready(NodeId n, unsigned cap) {
    begin(Ev::ready, n);
    Nd& x = nodes_[n];
    x.st = Nd::ready;
    x.cap = cap;
    x.out.push_back({Msg::ready, 0, cap});
  }

  // Node n claims its oldest offer (a faulty node: with no free worker).
  void claim(NodeId n) {
    begin(Ev::claim, n);
    Nd& x = nodes_[n];
    const TaskId t = x.offers.front();
    x.offers.pop_front();
    x.claimed.push_back(t);
    x.out.push_back({Msg::claim, t});
  }

  // Node n answers task t, which it runs.
  void answer(NodeId n, TaskId t) {
    begin(Ev::answer, n, t);
    Nd& x = nodes_[n];
    x.running.erase(std::find(x.running.begin(), x.running.end(), t));
    x.out.push_back({Msg::answer, t});
  }

  // Node n fails: its pool breaks (it says so and serves on) or its agent dies.
  void fail(NodeId n, bool agent_dies) {
    begin(Ev::fail, n);
    Nd& x = nodes_[n];
    x.said_broken = true;
    x.out.push_back({Msg::broken});
    if (agent_dies) {
      // serve_node's last words: broken, then closed; it hears nothing more.
      x.out.push_back({Msg::closed});
      x.st = Nd::dead;
      x.in.clear();
      x.offers.clear();
      x.claimed.clear();
      x.running.clear();
    }
  }

  void shutdown(bool cancel_futures) {
    begin(Ev::shutdown);
    if (cancel_futures && m_.phase() != Phase::broken) cancel_all_ = true;
    m_.shutdown(cancel_futures);
    settle();
  }

  void terminate() {
    begin(Ev::terminate);
    if (m_.phase() != Phase::broken) cancel_all_ = terminating_ = true;
    m_.terminate();
    settle();
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      if (m_.state_of(n) == MState::ready && m_.running_on(n) > 0)
        CLUSTER_CHECK("CLUSTER-5", term_sent_[n],
                      "terminate did not tell " + nn(n) + ", which runs tasks, to kill them");
    }
  }

  void supervisor_failed() {
    begin(Ev::supervisor_failed);
    may_break_ = true;
    m_.supervisor_failed();
    settle();
  }

  // Nothing but faults and cancels can happen: the world is quiet.
  void at_end() const {
    for (TaskId t = 1; t <= submitted(); ++t) CLUSTER_CHECK("CLUSTER-1", tasks_[t].resolved, tn(t) + " never resolved");
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      CLUSTER_CHECK("CLUSTER-5", nodes_[n].st == Nd::closed || nodes_[n].st == Nd::dead, nn(n) + " never closed");
      CLUSTER_CHECK("CLUSTER-5", m_.state_of(n) == MState::closed, "rank 0 never saw " + nn(n) + " closed");
    }
    CLUSTER_CHECK("CLUSTER-5", m_.terminated() && terminated_seen_,
                  "every node closed, but the cluster never terminated");
    if (!cancel_all_ && m_.phase() != Phase::broken) {
      for (TaskId t = 1; t <= submitted(); ++t) {
        const Tk& k = tasks_[t];
        if (k.cancelled == 0)
          CLUSTER_CHECK("CLUSTER-5", k.outcome == Outcome::answered,
                        tn(t) + ", which nobody cancelled, ended " + name_of(k.outcome) + " after shutdown(wait)");
      }
    }
  }

  // ---- the gate (the driver's start slots)

  bool gate_arm(TaskId t, NodeId n) {
    CLUSTER_CHECK("CLUSTER-2", t >= 1 && t <= submitted(), "armed " + tn(t) + ", never submitted");
    Tk& k = tasks_[t];
    CLUSTER_CHECK("CLUSTER-1", !k.resolved, "armed " + tn(t) + ", resolved already");
    CLUSTER_CHECK(
        "CLUSTER-2", k.slot == Tk::idle,
        "armed " + tn(t) + " for " + nn(n) + " while its slot was still " +
            (k.slot == Tk::armed ? "armed for " + nn(k.armed_on) + " (never revoked)" : std::string("started")));
    if (k.all_cancelled()) return false;  // nothing of it is wanted: its future is final
    k.slot = Tk::armed;
    k.armed_on = n;
    k.killed = false;
    armed_now_.emplace_back(t, n);
    return true;
  }

  Start gate_start(TaskId t, NodeId n) {
    CLUSTER_CHECK("CLUSTER-2", t >= 1 && t <= submitted(), "started " + tn(t) + ", never submitted");
    Tk& k = tasks_[t];
    CLUSTER_CHECK("CLUSTER-2", k.slot == Tk::armed && k.armed_on == n,
                  "asked to start " + tn(t) + " on " + nn(n) + ", for which its slot was not armed");
    CLUSTER_CHECK("CLUSTER-2", ev_ == Ev::deliver && ev_msg_ == Msg::claim && ev_node_ == n && ev_task_ == t,
                  "asked to start " + tn(t) + " on " + nn(n) + " with no claim of it from there");
    if (k.killed) {
      k.slot = Tk::idle;
      return k.parts > 1 ? Start::again : Start::cancelled;
    }
    k.slot = Tk::started;
    started_now_ = t;
    return Start::started;
  }

  void gate_revoke(TaskId t, NodeId n) {
    CLUSTER_CHECK("CLUSTER-2", t >= 1 && t <= submitted(), "revoked " + tn(t) + ", never submitted");
    Tk& k = tasks_[t];
    CLUSTER_CHECK("CLUSTER-2", k.slot == Tk::armed && k.armed_on == n,
                  "revoked " + tn(t) + " on " + nn(n) + ", for which its slot was not armed");
    k.slot = Tk::idle;
  }

  // After every event: what must hold whenever the machine has decided.
  void check() const {
    const Phase ph = m_.phase();
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      const unsigned cap = m_.capacity_of(n);
      CLUSTER_CHECK(
          "CLUSTER-3", m_.running_on(n) <= cap,
          "rank 0 has " + str(m_.running_on(n)) + " tasks running on " + nn(n) + " of " + str(cap) + " workers");
      CLUSTER_CHECK("CLUSTER-3", m_.offered_to(n) + m_.running_on(n) <= cap + cfg_.ahead,
                    nn(n) + " holds " + str(m_.offered_to(n)) + " offers with " + str(cap - m_.running_on(n)) +
                        " free workers and ahead " + str(cfg_.ahead));
    }
    if (ph != Phase::broken && !terminating_) {
      for (NodeId i = 0; i < nodes_.size(); ++i) {
        if (m_.state_of(i) != MState::ready) continue;
        const std::size_t free_i = m_.capacity_of(i) - m_.running_on(i);
        if (free_i <= m_.offered_to(i)) continue;
        CLUSTER_CHECK(
            "CLUSTER-4", m_.queued() == 0,
            nn(i) + " has a free worker with nothing offered while " + str(m_.queued()) + " tasks are queued");
        for (NodeId j = 0; j < nodes_.size(); ++j) {
          const std::size_t free_j = m_.capacity_of(j) - std::min<std::size_t>(m_.capacity_of(j), m_.running_on(j));
          CLUSTER_CHECK("CLUSTER-4", j == i || m_.offered_to(j) <= free_j,
                        nn(i) + " has a free worker with nothing offered while " + str(m_.offered_to(j) - free_j) +
                            " offers wait behind " + nn(j) + "'s busy workers");
        }
      }
    }
    if (cancel_all_)
      CLUSTER_CHECK("CLUSTER-5", m_.queued() == 0 && m_.offered() == 0,
                    "after a cancelling shutdown " + str(m_.queued()) + " tasks are queued and " + str(m_.offered()) +
                        " offered");
    if (ph == Phase::broken) {
      CLUSTER_CHECK("CLUSTER-6", may_break_, "the cluster broke with no node failing");
      for (TaskId t = 1; t <= submitted(); ++t)
        CLUSTER_CHECK("CLUSTER-6", tasks_[t].resolved, "the cluster broke, but " + tn(t) + " is unresolved");
      for (NodeId n = 0; n < nodes_.size(); ++n)
        CLUSTER_CHECK("CLUSTER-6", m_.state_of(n) == MState::closing || m_.state_of(n) == MState::closed,
                      "the cluster broke, but " + nn(n) + " is not closing");
    }
  }

 protected:
  void begin(Ev::Kind k, NodeId n = 0, TaskId t = 0) {
    ev_ = k;
    ev_node_ = n;
    ev_task_ = t;
    ev_msg_ = Msg::open;
    log_.clear();
    armed_now_.clear();
    started_now_ = 0;
  }

  // The node reads the next message rank 0 sent it (node_agent.cpp's handle()).
  void node_reads_now(NodeId n) {
    Nd& x = nodes_[n];
    const Msg m = x.in.front();
    x.in.pop_front();
    if (x.st == Nd::closed || x.st == Nd::dead) return;  // served its pool; hears nothing more
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
        if (it == x.claimed.end()) break;  // never claimed: not rank 0's to give
        x.claimed.erase(it);
        x.running.push_back(m.t);
        CLUSTER_CHECK("CLUSTER-3", x.running.size() <= x.cap,
                      nn(n) + " runs " + str(x.running.size()) + " tasks on " + str(x.cap) + " workers");
        break;
      }
      case Msg::drop:
        x.claimed.erase(std::remove(x.claimed.begin(), x.claimed.end(), m.t), x.claimed.end());
        break;
      case Msg::terminate:
        x.terminated = true;  // its running tasks fail (WorkerLost): answered in their own events
        break;
      case Msg::close:
        // Its pool closes: what still runs is killed and answered, then closed.
        for (TaskId t : x.running) x.out.push_back({Msg::answer, t});
        x.running.clear();
        x.offers.clear();
        x.claimed.clear();
        x.out.push_back({Msg::closed});
        x.st = Nd::closed;
        break;
      default:
        CLUSTER_CHECK("world", false, "a node-bound message of kind " + str(m.kind));
    }
  }

  // Rank 0 reads the next message from node n (driver.cpp's handle()).
  void rank0_reads_now(NodeId n) {
    Nd& x = nodes_[n];
    const Msg m = x.out.front();
    x.out.pop_front();
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
        if (m_.state_of(n) != MState::closing) may_break_ = true;  // closed unasked: its agent died
        m_.node_closed(n);
        break;
      default:
        CLUSTER_CHECK("world", false, "a rank-0-bound message of kind " + str(m.kind));
    }
    settle();
  }

  // Carries out the machine's actions, checking each.
  void settle() {
    std::vector<Action>& acts = m_.actions();
    for (const Action& a : acts) {
      switch (a.kind) {
        case Action::open:
          log_ += "; open " + nn(a.node);
          CLUSTER_CHECK("CLUSTER-5", starting_ && nodes_[a.node].in.empty(), "opened " + nn(a.node) + " again");
          nodes_[a.node].in.push_back({Msg::open});
          break;
        case Action::offer: {
          log_ += "; offer " + tn(a.task) + " to " + nn(a.node);
          const auto it = std::find(armed_now_.begin(), armed_now_.end(), std::make_pair(a.task, a.node));
          CLUSTER_CHECK("CLUSTER-2", it != armed_now_.end(),
                        "offered " + tn(a.task) + " to " + nn(a.node) + " unarmed");
          armed_now_.erase(it);
          nodes_[a.node].in.push_back({Msg::offer, a.task});
          break;
        }
        case Action::go: {
          log_ += "; go " + tn(a.task) + " on " + nn(a.node);
          CLUSTER_CHECK("CLUSTER-2",
                        ev_ == Ev::deliver && ev_msg_ == Msg::claim && ev_node_ == a.node && ev_task_ == a.task,
                        "go " + tn(a.task) + " to " + nn(a.node) + ", which did not just claim it");
          Tk& k = tasks_[a.task];
          CLUSTER_CHECK("CLUSTER-2", started_now_ == a.task && k.slot == Tk::started,
                        "go " + tn(a.task) + " although the gate did not start it");
          CLUSTER_CHECK("CLUSTER-2", k.gos == 0, "go " + tn(a.task) + " a second time");
          CLUSTER_CHECK("CLUSTER-2", !k.all_cancelled() && (k.parts > 1 || k.cancelled == 0),
                        "go " + tn(a.task) + ", whose user's cancel succeeded");
          CLUSTER_CHECK("CLUSTER-1", !k.resolved, "go " + tn(a.task) + ", resolved already");
          ++k.gos;
          k.ran_on = a.node;
          nodes_[a.node].in.push_back({Msg::go, a.task});
          break;
        }
        case Action::drop:
          log_ += "; drop " + tn(a.task) + " on " + nn(a.node);
          nodes_[a.node].in.push_back({Msg::drop, a.task});
          break;
        case Action::withdraw: {
          log_ += "; withdraw " + tn(a.task) + " from " + nn(a.node);
          const Tk& k = tasks_[a.task];
          CLUSTER_CHECK(
              "CLUSTER-2", !(k.slot == Tk::armed && k.armed_on == a.node),
              "withdrew " + tn(a.task) + " from " + nn(a.node) + " with its slot still armed there (no revoke)");
          nodes_[a.node].in.push_back({Msg::withdraw, a.task});
          break;
        }
        case Action::terminate:
          log_ += "; terminate " + nn(a.node);
          term_sent_[a.node] = true;
          nodes_[a.node].in.push_back({Msg::terminate});
          break;
        case Action::close:
          log_ += "; close " + nn(a.node);
          CLUSTER_CHECK("CLUSTER-5",
                        m_.phase() == Phase::broken || (m_.queued() == 0 && m_.offered() == 0 && m_.running() == 0),
                        "closed " + nn(a.node) + " with " + str(m_.queued()) + " queued, " + str(m_.offered()) +
                            " offered, " + str(m_.running()) + " running");
          nodes_[a.node].in.push_back({Msg::close});
          break;
        case Action::resolve:
          log_ += "; resolve " + tn(a.task) + " " + name_of(a.outcome);
          resolved(a.task, a.outcome);
          break;
        case Action::terminated:
          log_ += "; terminated";
          CLUSTER_CHECK("CLUSTER-5", !terminated_seen_, "terminated twice");
          terminated_seen_ = true;
          for (NodeId n = 0; n < nodes_.size(); ++n)
            CLUSTER_CHECK("CLUSTER-5", m_.state_of(n) == MState::closed, "terminated before " + nn(n) + " closed");
          for (TaskId t = 1; t <= submitted(); ++t)
            CLUSTER_CHECK("CLUSTER-1", tasks_[t].resolved, "terminated with " + tn(t) + " unresolved");
          break;
      }
    }
    acts.clear();
    CLUSTER_CHECK("CLUSTER-2", armed_now_.empty(),
                  "armed " + tn(armed_now_.empty() ? 0 : armed_now_[0].first) + " and never offered it");
  }

  void resolved(TaskId t, Outcome o) {
    CLUSTER_CHECK("CLUSTER-1", t >= 1 && t <= submitted(), "resolved " + tn(t) + ", never submitted");
    Tk& k = tasks_[t];
    CLUSTER_CHECK("CLUSTER-1", !k.resolved,
                  tn(t) + " resolved twice (" + name_of(k.outcome) + ", then " + name_of(o) + ")");
    CLUSTER_CHECK("CLUSTER-2", k.slot != Tk::armed, tn(t) + " resolved with its start slot still armed");
    switch (o) {
      case Outcome::answered:
        CLUSTER_CHECK(
            "CLUSTER-1",
            ev_ == Ev::deliver && ev_msg_ == Msg::answer && k.gos == 1 && k.ran_on == ev_node_ && ev_task_ == t,
            tn(t) + " resolved answered without its node's answer");
        break;
      case Outcome::cancelled: {
        CLUSTER_CHECK("CLUSTER-2", k.gos == 0, tn(t) + " resolved cancelled after it was let run");
        const bool cancelling = ev_ == Ev::terminate || (ev_ == Ev::shutdown && cancel_all_) ||
                                (ev_ == Ev::submit && m_.phase() != Phase::running);
        CLUSTER_CHECK("CLUSTER-1", k.all_cancelled() || cancelling,
                      tn(t) + " resolved cancelled, which nobody cancelled");
        break;
      }
      case Outcome::broken:
        CLUSTER_CHECK("CLUSTER-6", m_.phase() == Phase::broken,
                      tn(t) + " resolved broken, but the cluster is not broken");
        break;
    }
    k.resolved = true;
    k.outcome = o;
  }

  MachineConfig cfg_;
  Machine m_;
  std::vector<Tk> tasks_;  // task t is tasks_[t]
  std::vector<Nd> nodes_;
  bool cancel_all_ = false;   // a shutdown(cancel_futures) or terminate took effect
  bool terminating_ = false;  // a terminate took effect
  bool may_break_ = false;    // a node failed, or the supervisor did
  bool terminated_seen_ = false;
  bool starting_ = false;
  std::vector<bool> term_sent_ = std::vector<bool>(8);

  // The event being played; not part of the state.
  Ev::Kind ev_ = Ev::submit;
  NodeId ev_node_ = 0;
  TaskId ev_task_ = 0;
  Msg::Kind ev_msg_ = Msg::open;
  std::vector<std::pair<TaskId, NodeId>> armed_now_;
  TaskId started_now_ = 0;
  std::string log_;
};

bool GateFor::arm(TaskId t, NodeId n) { return world->gate_arm(t, n); }
Start GateFor::start(TaskId t, NodeId n) { return world->gate_start(t, n); }
void GateFor::revoke(TaskId t, NodeId n) { world->gate_revoke(t, n); }

}  // namespace
}  // namespace keel::cluster_sim
