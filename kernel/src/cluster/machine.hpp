// keel::cluster::Machine: every decision of the ClusterPool supervisor (rank
// 0), as a state machine with no I/O, no clock, no threads and no MPI.
//
// Contract: the driver feeds events (node ready, node failed, claim, answer,
// node closed, submit, shutdown, terminate, supervisor failed) and carries
// out the actions they produce, in order (open, offer, go, drop, withdraw,
// terminate, close, resolve, terminated).
//
// The protocol with a node, and why: a node (an MPI rank serving a local
// ProcessPool of `capacity` workers) is offered tasks, and buffers them. It
// never starts one on its own: when one of its workers is free it claims the
// oldest offer, and rank 0 answers go or drop. The start is decided here, by
// the gate (a start slot on rank 0, which the user's cancel() can win
// first), so a task is running only once rank 0 let its node run it on a
// free worker, cancel() succeeds until then, and a task offered to a node is
// still rank 0's to move: taking it back (withdraw) needs no reply.
// So:
// - every submitted task resolves exactly once (CLUSTER-1);
// - a task is let run (go) at most once, only while its gate says nobody
//   cancelled it, and only to a node that claimed it (CLUSTER-2);
// - a node never holds more running tasks than it has workers, nor more
//   offers than its free workers plus `ahead` (CLUSTER-3);
// - work conservation: while a ready node has a free worker with nothing
//   offered to it, no task waits in the queue, and none waits offered to a
//   node whose workers are all busy: the youngest such offer is moved
//   (CLUSTER-4);
// - shutdown lets every accepted task finish (or cancels the unstarted ones
//   with cancel_futures), then closes every node; terminate cancels the
//   unstarted ones and has every node terminate its workers; either ends
//   with every node closed (CLUSTER-5);
// - a node that cannot serve (its local pool broke, or would not open)
//   breaks the cluster, as a failed initializer breaks a ProcessPool: every
//   unresolved task resolves broken and every node is terminated and closed
//   (CLUSTER-6).
// What happens on a node once a task runs there (a worker that dies, a
// timeout, retries) is its local ProcessPool's business (POOL-1..9): the
// node answers every task it was let run exactly once.
//
// What the machine relies on (the node agent guarantees it): a node claims
// only tasks offered to it, at most one claim per worker it has free, and
// answers every task it was let run; it discards an offer that was withdrawn
// or dropped; it reports closed once, after close, with nothing running.
//
// Invariants: CLUSTER-1..6 (proofs/INVARIANTS.md).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "keel/platform/inject.hpp"

namespace keel::cluster {

using TaskId = std::uint64_t;
using NodeId = std::uint32_t;

struct MachineConfig {
  unsigned nodes = 1;  // nodes 0 .. nodes-1 (>= 1)
  unsigned ahead = 1;  // offers a node may hold beyond its free workers
};

enum class Outcome : std::uint8_t {
  answered,   // its node answered it (a value, a remote error, WorkerLost, TimeoutError, ...)
  cancelled,  // cancelled by its user, or by shutdown(cancel_futures)/terminate before it ran
  broken,     // the cluster broke before it was answered
};

enum class BrokenReason : std::uint8_t { none, node_failed, supervisor_failed };

struct Action {
  enum Kind : std::uint8_t {
    open,        // node: start serving (its local pool)
    offer,       // node, task: send the task's payload; it may be claimed
    go,          // node, task: the claim won; run it
    drop,        // node, task: the claim lost (cancelled or moved); discard it
    withdraw,    // node, task: the offer was moved or cancelled; discard it unclaimed
    terminate,   // node: kill its workers now (their running tasks fail)
    close,       // node: finish and report closed
    resolve,     // task, outcome
    terminated,  // every node closed: the cluster is done
  };
  Kind kind;
  NodeId node = 0;
  TaskId task = 0;
  Outcome outcome = Outcome::answered;
};

// The start slots on rank 0, as the machine sees them (the driver owns the
// futures; the tests simulate them).
class Gate {
 public:
  enum class Start : std::uint8_t { started, cancelled, again };
  // `task` is about to be offered to `node`: arm its start slot. False if
  // nothing of it is wanted any more (its user cancelled it).
  virtual bool arm(TaskId task, NodeId node) = 0;
  // `node` claimed `task`: start it (slot armed -> started). cancelled: its
  // user cancelled it first; again: part of it was cancelled (a chunk of
  // calls) and the rest must be offered again without it.
  virtual Start start(TaskId task, NodeId node) = 0;
  // Take back an armed, unstarted `task` (it will be armed again or
  // resolved). Only rank 0 starts tasks, so this always succeeds.
  virtual void revoke(TaskId task, NodeId node) = 0;

 protected:
  ~Gate() = default;
};

struct MachineCounters {
  std::uint64_t submitted = 0;
  std::uint64_t offered = 0;    // offers, repeated ones included
  std::uint64_t started = 0;    // go actions
  std::uint64_t answered = 0;   // resolved with a node's answer
  std::uint64_t cancelled = 0;  // resolved cancelled
  std::uint64_t broken = 0;     // resolved broken
  std::uint64_t moved = 0;      // offers withdrawn and given to an idle node
  std::uint64_t dropped = 0;    // claims answered drop
  std::uint64_t ignored = 0;    // events that named a task the node did not hold (late or faulty)
};

class Machine {
 public:
  enum class Phase : std::uint8_t { running, shutting_down, broken };
  enum class NodeState : std::uint8_t { opening, ready, closing, closed };

  Machine(const MachineConfig& config, Gate& gate);

  // Opens every node. Call once, first.
  void start();

  void submit(TaskId task);
  // `node` serves, with `capacity` workers (>= 1; 0 is taken as 1).
  void node_ready(NodeId node, unsigned capacity);
  // `node` cannot serve (its pool would not open, or broke): the cluster breaks.
  void node_failed(NodeId node);
  // `node` has a free worker and asks to run `task`, an offer it holds.
  void claim(NodeId node, TaskId task);
  // `node` answered `task`, which it was let run. False if it could not have
  // (not running there): ignored.
  bool answer(NodeId node, TaskId task);
  void node_closed(NodeId node);
  void shutdown(bool cancel_futures);
  void terminate();
  // The driver cannot go on: the cluster breaks (a no-op once broken).
  void supervisor_failed();

  std::vector<Action>& actions() { return out_; }

  Phase phase() const { return phase_; }
  bool terminated() const { return terminated_; }
  BrokenReason broken_reason() const { return broken_reason_; }
  NodeId broken_node() const { return broken_node_; }
  std::size_t queued() const { return queue_.size(); }
  std::size_t offered() const;
  std::size_t running() const;
  NodeState state_of(NodeId node) const;
  unsigned capacity_of(NodeId node) const;
  std::size_t offered_to(NodeId node) const;
  std::size_t running_on(NodeId node) const;
  unsigned nodes() const { return static_cast<unsigned>(nodes_.size()); }
  const MachineCounters& counters() const { return c_; }
  const MachineConfig& config() const { return cfg_; }

  // A canonical encoding of every field a later decision reads, for the
  // exhaustive explorer (models/cluster/machine_explore.cpp); the counters
  // and broken_* details are left out (no decision reads them).
  void encode_state(std::string& out) const;

 private:
  struct Node {
    NodeState state = NodeState::opening;
    unsigned capacity = 0;
    std::deque<TaskId> offered;   // in the order offered
    std::vector<TaskId> running;  // let run, not answered
    bool terminating = false;     // terminate sent
  };

  Node* node(NodeId n) { return n < nodes_.size() ? &nodes_[n] : nullptr; }
  const Node* node(NodeId n) const { return n < nodes_.size() ? &nodes_[n] : nullptr; }
  static std::size_t free_workers(const Node& n);
  void dispatch();
  void balance();
  Node* pick();
  bool offer(NodeId n, TaskId t);
  void cancel_unstarted();
  void break_cluster(BrokenReason why, NodeId n);
  void maybe_close();
  void check_terminated();
  void resolve(TaskId t, Outcome o);
  void emit(Action a) { out_.push_back(a); }

  MachineConfig cfg_;
  Gate& gate_;
  Phase phase_ = Phase::running;
  bool terminating_ = false;
  bool terminated_ = false;
  BrokenReason broken_reason_ = BrokenReason::none;
  NodeId broken_node_ = 0;
  std::deque<TaskId> queue_;
  std::vector<Node> nodes_;
  std::vector<Action> out_;
  MachineCounters c_;
};

}  // namespace keel::cluster
