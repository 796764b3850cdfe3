// keel::cluster::Machine. See machine.hpp for the contract and what it relies
// on from the node agents.
#include "machine.hpp"

#include <algorithm>

namespace keel::cluster {

namespace {
template <class C>
auto find_id(C& c, TaskId t) {
  return std::find(c.begin(), c.end(), t);
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
}  // namespace

Machine::Machine(const MachineConfig& config, Gate& gate) : cfg_(config), gate_(gate) {
  cfg_.nodes = std::max(1u, cfg_.nodes);
  nodes_.resize(cfg_.nodes);
}

std::size_t Machine::offered() const {
  std::size_t n = 0;
  for (const auto& x : nodes_) n += x.offered.size();
  return n;
}
std::size_t Machine::running() const {
  std::size_t n = 0;
  for (const auto& x : nodes_) n += x.running.size();
  return n;
}
Machine::NodeState Machine::state_of(NodeId n) const {
  const Node* x = node(n);
  return x ? x->state : NodeState::closed;
}
unsigned Machine::capacity_of(NodeId n) const {
  const Node* x = node(n);
  return x ? x->capacity : 0;
}
std::size_t Machine::offered_to(NodeId n) const {
  const Node* x = node(n);
  return x ? x->offered.size() : 0;
}
std::size_t Machine::running_on(NodeId n) const {
  const Node* x = node(n);
  return x ? x->running.size() : 0;
}

std::size_t Machine::free_workers(const Node& n) {
  return n.capacity > n.running.size() ? n.capacity - n.running.size() : 0;
}

void Machine::start() {
  for (NodeId n = 0; n < nodes_.size(); ++n) emit({Action::open, n});
}

void Machine::submit(TaskId t) {
  ++c_.submitted;
  if (phase_ != Phase::running) {
    // The driver refuses these first; a late one still resolves once.
    resolve(t, phase_ == Phase::broken ? Outcome::broken : Outcome::cancelled);
    return;
  }
  queue_.push_back(t);
  dispatch();
}

void Machine::node_ready(NodeId n, unsigned capacity) {
  Node* x = node(n);
  // Closing already (a break, or a shutdown before it was ready): its ready
  // crossed rank 0's close, which the node will obey.
  if (!x || x->state == NodeState::closed) return;
  if (x->state != NodeState::opening && !KEEL_INJECTED(cluster_ready_reopens_closing)) return;
  x->state = NodeState::ready;
  x->capacity = std::max(1u, capacity);
  dispatch();
}

void Machine::node_failed(NodeId n) { break_cluster(BrokenReason::node_failed, n); }

void Machine::supervisor_failed() { break_cluster(BrokenReason::supervisor_failed, 0); }

void Machine::claim(NodeId n, TaskId t) {
  Node* x = node(n);
  if (!x || x->state == NodeState::closed) {
    ++c_.ignored;
    return;
  }
  auto it = find_id(x->offered, t);
  if (it == x->offered.end()) {
    // Withdrawn (moved or cancelled) while the claim was on its way, or
    // never offered here: the node discards it.
    ++c_.dropped;
    emit({Action::drop, n, t});
    return;
  }
  x->offered.erase(it);
  if (!KEEL_INJECTED(cluster_claim_beyond_capacity) && x->running.size() >= x->capacity) {
    // More claims than workers: not an honest node. Its task goes to the
    // front of the queue, unstarted, and runs where a worker is free.
    gate_.revoke(t, n);
    ++c_.dropped;
    emit({Action::drop, n, t});
    queue_.push_front(t);
    dispatch();
    return;
  }
  const Gate::Start s = KEEL_INJECTED(cluster_go_without_gate) ? Gate::Start::started : gate_.start(t, n);
  switch (s) {
    case Gate::Start::started:
      x->running.push_back(t);
      ++c_.started;
      emit({Action::go, n, t});
      break;
    case Gate::Start::cancelled:
      ++c_.dropped;
      emit({Action::drop, n, t});
      resolve(t, Outcome::cancelled);
      break;
    case Gate::Start::again:
      ++c_.dropped;
      emit({Action::drop, n, t});
      if (!KEEL_INJECTED(cluster_again_loses_task)) queue_.push_front(t);
      break;
  }
  dispatch();
}

bool Machine::answer(NodeId n, TaskId t) {
  Node* x = node(n);
  if (!x) {
    ++c_.ignored;
    return false;
  }
  auto it = find_id(x->running, t);
  if (it == x->running.end()) {
    // Resolved already (the cluster broke), or a node that never ran it.
    ++c_.ignored;
    if (KEEL_INJECTED(cluster_late_answer_resolves)) resolve(t, Outcome::answered);
    return false;
  }
  x->running.erase(it);
  resolve(t, Outcome::answered);
  dispatch();
  return true;
}

void Machine::node_closed(NodeId n) {
  Node* x = node(n);
  if (!x || x->state == NodeState::closed) return;
  if (x->state != NodeState::closing) {
    // It stopped serving unasked: whatever it held has nowhere to go.
    break_cluster(BrokenReason::node_failed, n);
  }
  x->state = NodeState::closed;
  check_terminated();
}

void Machine::shutdown(bool cancel_futures) {
  if (phase_ == Phase::broken) return;
  if (cancel_futures) cancel_unstarted();
  phase_ = Phase::shutting_down;
  maybe_close();
}

void Machine::terminate() {
  if (phase_ == Phase::broken) return;
  terminating_ = true;
  cancel_unstarted();
  phase_ = Phase::shutting_down;
  for (NodeId n = 0; n < nodes_.size(); ++n) {
    Node& x = nodes_[n];
    if (x.state == NodeState::ready && !x.running.empty() && !x.terminating) {
      x.terminating = true;
      emit({Action::terminate, n});
    }
  }
  maybe_close();
}

// ---------------------------------------------------------------- decisions

// The ready node with the most free workers that nothing is offered to yet
// (lowest id on a tie), among those that can take one more offer.
Machine::Node* Machine::pick() {
  Node* best = nullptr;
  long best_idle = 0;
  for (auto& x : nodes_) {
    if (x.state != NodeState::ready) continue;
    if (!KEEL_INJECTED(cluster_pick_ignores_ahead) &&
        x.offered.size() + x.running.size() >= std::size_t{x.capacity} + cfg_.ahead)
      continue;
    const long idle = static_cast<long>(free_workers(x)) - static_cast<long>(x.offered.size());
    if (!best || idle > best_idle) {
      best = &x;
      best_idle = idle;
    }
  }
  return best;
}

bool Machine::offer(NodeId n, TaskId t) {
  if (!gate_.arm(t, n)) {
    resolve(t, Outcome::cancelled);  // its future is already final
    return false;
  }
  nodes_[n].offered.push_back(t);
  ++c_.offered;
  emit({Action::offer, n, t});
  return true;
}

void Machine::dispatch() {
  if (phase_ == Phase::broken) return;
  if (terminating_) {
    // Nothing more is offered; the nodes close once their running tasks are
    // answered, which is an event that ends here.
    if (!KEEL_INJECTED(cluster_terminate_skips_close)) maybe_close();
    return;
  }
  while (!queue_.empty()) {
    Node* x = pick();
    if (!x) break;
    const TaskId t = queue_.front();
    queue_.pop_front();
    offer(static_cast<NodeId>(x - nodes_.data()), t);
  }
  if (queue_.empty() && !KEEL_INJECTED(cluster_no_balance)) balance();
  maybe_close();
}

// While a ready node has a free worker with nothing offered to it, an offer
// that waits behind another node's busy workers is moved to it: the youngest
// of the node that has the most of them waiting.
void Machine::balance() {
  for (;;) {
    NodeId idle = 0;
    bool found = false;
    for (NodeId n = 0; n < nodes_.size() && !found; ++n) {
      const Node& x = nodes_[n];
      if (x.state == NodeState::ready && free_workers(x) > x.offered.size()) {
        idle = n;
        found = true;
      }
    }
    if (!found) return;
    Node* donor = nullptr;
    std::size_t most = 0;
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      Node& x = nodes_[n];
      const std::size_t f = free_workers(x);
      const std::size_t waiting = x.offered.size() > f ? x.offered.size() - f : 0;
      if (n != idle && waiting > most) {
        donor = &x;
        most = waiting;
      }
    }
    if (!donor) return;
    const NodeId from = static_cast<NodeId>(donor - nodes_.data());
    const TaskId t = donor->offered.back();
    donor->offered.pop_back();
    if (!KEEL_INJECTED(cluster_withdraw_skips_revoke)) gate_.revoke(t, from);
    emit({Action::withdraw, from, t});
    ++c_.moved;
    offer(idle, t);
  }
}

// Every task that has not been let run: queued ones and offers.
void Machine::cancel_unstarted() {
  for (TaskId t : queue_) resolve(t, Outcome::cancelled);
  queue_.clear();
  for (NodeId n = 0; n < nodes_.size(); ++n) {
    Node& x = nodes_[n];
    if (KEEL_INJECTED(cluster_cancel_skips_offers)) continue;
    for (TaskId t : x.offered) {
      gate_.revoke(t, n);
      emit({Action::withdraw, n, t});
      resolve(t, Outcome::cancelled);
    }
    x.offered.clear();
  }
}

void Machine::break_cluster(BrokenReason why, NodeId n) {
  if (phase_ == Phase::broken) return;
  phase_ = Phase::broken;
  broken_reason_ = why;
  broken_node_ = n;
  for (TaskId t : queue_) resolve(t, Outcome::broken);
  queue_.clear();
  for (NodeId i = 0; i < nodes_.size(); ++i) {
    Node& x = nodes_[i];
    if (!KEEL_INJECTED(cluster_break_keeps_offers)) {
      for (TaskId t : x.offered) {
        gate_.revoke(t, i);
        resolve(t, Outcome::broken);
      }
    }
    x.offered.clear();
    for (TaskId t : x.running) resolve(t, Outcome::broken);  // their late answers are ignored
    const bool had_running = !x.running.empty();
    x.running.clear();
    if (x.state == NodeState::opening || x.state == NodeState::ready) {
      if (had_running && !x.terminating) {
        x.terminating = true;
        emit({Action::terminate, i});
      }
      x.state = NodeState::closing;
      emit({Action::close, i});
    }
  }
  check_terminated();
}

// Once shutting down and nothing is left to run anywhere, every node closes.
void Machine::maybe_close() {
  if (phase_ != Phase::shutting_down || !queue_.empty()) return;
  if (!KEEL_INJECTED(cluster_close_with_running)) {
    for (const auto& x : nodes_) {
      if (!x.offered.empty() || !x.running.empty()) return;
    }
  }
  for (NodeId n = 0; n < nodes_.size(); ++n) {
    Node& x = nodes_[n];
    if (x.state == NodeState::opening || x.state == NodeState::ready) {
      x.state = NodeState::closing;
      emit({Action::close, n});
    }
  }
  check_terminated();
}

void Machine::check_terminated() {
  if (terminated_ || phase_ == Phase::running) return;
  for (const auto& x : nodes_) {
    if (x.state != NodeState::closed) return;
  }
  terminated_ = true;
  emit({Action::terminated});
}

void Machine::resolve(TaskId t, Outcome o) {
  switch (o) {
    case Outcome::answered:
      ++c_.answered;
      break;
    case Outcome::cancelled:
      ++c_.cancelled;
      break;
    case Outcome::broken:
      ++c_.broken;
      break;
  }
  emit({Action::resolve, 0, t, o});
}

void Machine::encode_state(std::string& out) const {
  out.push_back(static_cast<char>(phase_));
  out.push_back(static_cast<char>(terminating_ | (terminated_ << 1)));
  put_u64(out, queue_.size());
  for (TaskId t : queue_) put_u64(out, t);
  for (const auto& x : nodes_) {
    out.push_back(static_cast<char>(x.state));
    out.push_back(static_cast<char>(x.terminating));
    put_u64(out, x.capacity);
    put_u64(out, x.offered.size());
    for (TaskId t : x.offered) put_u64(out, t);
    std::vector<TaskId> r = x.running;  // no decision reads their order
    std::sort(r.begin(), r.end());
    put_u64(out, r.size());
    for (TaskId t : r) put_u64(out, t);
  }
}

}  // namespace keel::cluster
