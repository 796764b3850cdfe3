// Exhaustive exploration of the shipped keel::cluster::Machine: every order of
// the events a ClusterPool supervisor (rank 0) and its node ranks can see, up
// to the bounds each row states, with the machine's and the world's state
// hashed (models/support/explore.hpp), and every check below after every
// event.
//
// The world plays the driver, the users and the node agents. It is the
// machine's Gate (one start slot per task, armed for one node at a time,
// which a claim and the user's cancel() race for; a chunk of two calls whose
// slot lost to a cancel of one call is started again without it). Each node
// has two FIFO channels (rank 0 to node, node to rank 0: MPI keeps order per
// pair), so the node's view and rank 0's view differ by what is in flight: a
// claim for an offer rank 0 withdrew meanwhile, an answer for a task the
// cluster resolved broken meanwhile, a ready from a node rank 0 already
// closed. A node is honest, as node_agent.cpp: it reports ready with one of
// the capacities the row allows (or cannot open), buffers offers, claims its
// oldest offer only while it has a free worker, runs what rank 0 lets it run
// (go), discards what is dropped or withdrawn, answers every task it runs,
// stops claiming once told to terminate its workers, and on close answers
// what it still runs and reports closed. Within the row's bounds it may also
// fail at any point: its pool breaks (it says so and serves on), or its agent
// dies (it says broken and closed and hears nothing more); and one faulty
// claim beyond its free workers. Events, each enabled whenever it could
// happen: submit, the user's cancel of a task (or of one call of a chunk) not
// yet started, a node reading its next message, rank 0 reading a node's next
// message, ready, claim, answer, a node's failure, shutdown(wait),
// shutdown(cancel_futures), terminate (also after a shutdown) and the
// supervisor failing.
//
// Checks (invariant IDs from proofs/INVARIANTS.md), against the world's own
// record, after every event:
// - CLUSTER-1: a task resolves at most once, only with an outcome the event
//   allows (answered: its node's answer of the run it was let make; broken:
//   the cluster broke; cancelled: its user cancelled all of it, or a
//   cancelling shutdown); at every end state every task resolved, every node
//   closed and the machine terminated;
// - CLUSTER-2: go only in answer to that node's claim of that task, only if
//   the gate started it there, at most once per task, never for a task its
//   user cancelled; the gate is armed for a node before each offer, never
//   twice, and revoked before a withdraw or a resolution;
// - CLUSTER-3: running <= capacity (rank 0's view and the node's), offers <=
//   free workers + ahead;
// - CLUSTER-4: whenever the machine has decided (every event) and is neither
//   terminating nor broken, while a ready node has a free worker with nothing
//   offered to it, no task waits in the queue and none waits offered to a
//   node whose workers are all busy;
// - CLUSTER-5: close only with nothing left to run (unless broken); after
//   shutdown(cancel_futures) or terminate nothing is queued or offered;
//   terminate reaches every node that runs something; without a cancelling
//   shutdown or a break every task nobody cancelled is answered;
// - CLUSTER-6: the cluster breaks only when a node failed or the supervisor
//   did, and then every submitted task is resolved and every node closing.
//
// The world is tests/support/sim_cluster_world.hpp, shared with the
// RapidCheck test tests/cluster/machine_properties_test.cpp; this file adds
// the bounds, the enabled events and the state's encoding.
//
// The file is not machine_explore.cpp: verify names a model's binary and logs
// after its file name, which models/process_pool/ already uses.
//
// The twins: every injection point of machine.cpp, each caught by the row
// named (verify runs it there first).
// KEEL-TWIN cluster_claim_beyond_capacity cluster.explore.n1-faulty
// KEEL-TWIN cluster_go_without_gate cluster.explore.n1-chunk
// KEEL-TWIN cluster_late_answer_resolves cluster.explore.n1-chunk
// KEEL-TWIN cluster_no_balance cluster.explore.n2
// KEEL-TWIN cluster_cancel_skips_offers cluster.explore.n1-chunk
// KEEL-TWIN cluster_close_with_running cluster.explore.n1-chunk
// KEEL-TWIN cluster_terminate_skips_close cluster.explore.n1-chunk
// KEEL-TWIN cluster_break_keeps_offers cluster.explore.n1-chunk
// KEEL-TWIN cluster_withdraw_skips_revoke cluster.explore.n2
// KEEL-TWIN cluster_pick_ignores_ahead cluster.explore.n1-faulty
// KEEL-TWIN cluster_again_loses_task cluster.explore.n1-chunk
// KEEL-TWIN cluster_ready_reopens_closing cluster.explore.n1-chunk
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "../../kernel/src/cluster/machine.cpp"
#include "explore.hpp"

#define CLUSTER_CHECK(invariant, cond, what)    \
  if (!(cond)) throw keel::explore::Violation { \
      std::string(invariant) + ": " + (what)    \
    }

#include "../../tests/support/sim_cluster_world.hpp"

namespace {

using keel::explore::Violation;
using namespace keel::cluster_sim;

// The bounds of one row.
struct Bounds {
  MachineConfig machine;
  unsigned tasks = 2;       // submissions, ids 1..tasks in order
  unsigned chunks = 0;      // bit t: task t is a chunk of two calls
  unsigned caps = 1;        // bit c-1: a node may report capacity c
  unsigned cancels = 1;     // the users' cancels, in all
  unsigned failures = 0;    // node failures (pool broke, would not open, agent died), in all
  bool faulty = false;      // one claim by a node with no free worker
  bool terminate = true;    // terminate (also after a shutdown)
  bool supervisor = false;  // supervisor_failed
  std::string describe() const {
    std::string s = "exhaustive(nodes=" + str(machine.nodes) + ",capacity=";
    for (unsigned c = 1; c <= 8; ++c)
      if ((caps >> (c - 1) & 1) != 0) s += str(c) + "/";
    s.back() = ',';
    s += "ahead=" + str(machine.ahead) + ",tasks=" + str(tasks);
    for (unsigned t = 1; t <= tasks; ++t)
      if ((chunks >> t & 1) != 0) s += ",t" + str(t) + "=chunk(2)";
    s += ",cancels<=" + str(cancels) + ",failures<=" + str(failures);
    if (faulty) s += ",faulty_claim<=1";
    if (terminate) s += ",terminate";
    if (supervisor) s += ",supervisor_failed";
    return s + ")";
  }
};

// For the counterexamples' steps.
const char* name_of(Msg::Kind k) {
  static const char* const names[] = {"open",  "offer", "go",     "drop",  "withdraw", "terminate",
                                      "close", "ready", "broken", "claim", "answer",   "closed"};
  return names[k];
}

std::string text(const Msg& m) {
  std::string s = name_of(m.kind);
  if (m.kind == Msg::offer || m.kind == Msg::go || m.kind == Msg::drop || m.kind == Msg::withdraw ||
      m.kind == Msg::claim || m.kind == Msg::answer)
    s += " " + tn(m.t);
  if (m.kind == Msg::ready) s += "(" + str(m.cap) + ")";
  return s;
}

// The one Gate every copy of the world's machine holds; it answers for the
// world playing an event now.
GateFor gate;

// The shared world (tests/support/sim_cluster_world.hpp), copyable, with
// what the explorer adds: the row's bounds and what of them is used, every
// event enabled now, and the state's encoding.
class ExploreWorld final : public World {
 public:
  // The machine's start only opens nodes: the gate is not asked before apply().
  explicit ExploreWorld(const Bounds& b) : World(b.machine, gate), b_(&b) { gate.world = this; }

  // ---- the explorer's interface

  std::vector<Ev> events() const {
    std::vector<Ev> e;
    if (!user_closed() && submitted() < b_->tasks) e.push_back({Ev::submit, 0, submitted() + 1});
    if (cancels_ < b_->cancels) {
      for (TaskId t = 1; t <= submitted(); ++t) {
        const Tk& k = tasks_[t];
        if (!k.resolved && k.slot != Tk::started && !k.all_cancelled()) e.push_back({Ev::cancel, 0, t});
      }
    }
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      const Nd& x = nodes_[n];
      if (!x.in.empty()) e.push_back({Ev::recv, n});
      if (!x.out.empty()) e.push_back({Ev::deliver, n});
      if (x.st == Nd::opening && !x.said_broken) {
        for (unsigned c = 1; c <= 8; ++c)
          if ((b_->caps >> (c - 1) & 1) != 0) e.push_back({Ev::ready, n, 0, c});
      }
      if (x.st == Nd::ready && !x.terminated && !x.offers.empty()) {
        if (x.free_worker())
          e.push_back({Ev::claim, n, 0, 0});
        else if (b_->faulty && !faulty_used_)
          e.push_back({Ev::claim, n, 0, 1});
      }
      if (x.st == Nd::ready)
        for (TaskId t : x.running) e.push_back({Ev::answer, n, t});
      if (failures_ < b_->failures && (x.st == Nd::opening || x.st == Nd::ready) && !x.said_broken) {
        e.push_back({Ev::fail, n, 0, 0});
        e.push_back({Ev::fail, n, 0, 1});
      }
    }
    if (!shut_used_ && !term_used_) {
      e.push_back({Ev::shutdown, 0, 0, 0});
      e.push_back({Ev::shutdown, 0, 0, 1});
    }
    if (b_->terminate && !term_used_) e.push_back({Ev::terminate});
    if (b_->supervisor && !supervisor_used_) e.push_back({Ev::supervisor_failed});
    return e;
  }

  std::string describe(const Ev& e) const {
    switch (e.kind) {
      case Ev::submit:
        return "submit " + tn(e.t) + (tasks_parts(e.t) > 1 ? " (a chunk of 2 calls)" : "");
      case Ev::cancel:
        return "the user cancels " + std::string(tasks_[e.t].parts > 1 ? "a call of " : "") + tn(e.t);
      case Ev::recv:
        return nn(e.n) + " reads " + text(nodes_[e.n].in.front());
      case Ev::deliver:
        return "rank 0 reads " + nn(e.n) + "'s " + text(nodes_[e.n].out.front());
      case Ev::ready:
        return nn(e.n) + "'s pool opens with " + str(e.x) + " workers: sends ready";
      case Ev::claim:
        return nn(e.n) + (e.x != 0 ? " (faulty, no free worker)" : "") + " claims " + tn(nodes_[e.n].offers.front());
      case Ev::answer:
        return nn(e.n) + " answers " + tn(e.t);
      case Ev::fail:
        return e.x == 0 ? nn(e.n) + "'s pool breaks: sends broken" : nn(e.n) + "'s agent dies: sends broken, closed";
      case Ev::shutdown:
        return e.x != 0 ? "shutdown(cancel_futures)" : "shutdown(wait)";
      case Ev::terminate:
        return "terminate";
      case Ev::supervisor_failed:
        return "the supervisor fails";
    }
    return "?";
  }

  void apply(const Ev& e) {
    gate.world = this;
    switch (e.kind) {
      case Ev::submit:
        submit(tasks_parts(e.t));
        break;
      case Ev::cancel:
        ++cancels_;
        cancel(e.t);
        break;
      case Ev::recv:
        node_reads(e.n);
        break;
      case Ev::deliver:
        rank0_reads(e.n);
        break;
      case Ev::ready:
        ready(e.n, e.x);
        break;
      case Ev::claim:
        if (e.x != 0) faulty_used_ = true;
        claim(e.n);
        break;
      case Ev::answer:
        answer(e.n, e.t);
        break;
      case Ev::fail:
        ++failures_;
        fail(e.n, e.x != 0);
        break;
      case Ev::shutdown:
        shut_used_ = true;
        shutdown(e.x != 0);
        break;
      case Ev::terminate:
        term_used_ = true;
        terminate();
        break;
      case Ev::supervisor_failed:
        supervisor_used_ = true;
        supervisor_failed();
        break;
    }
    check();
    // Quiet but for faults and cancels (which may happen, but nothing may
    // wait for): the same as an end.
    const auto evs = events();
    if (std::all_of(evs.begin(), evs.end(), [](const Ev& x) {
          return x.kind == Ev::cancel || x.kind == Ev::fail || x.kind == Ev::supervisor_failed;
        }))
      at_end();
  }

  void encode(std::string& out) const {
    m_.encode_state(out);
    const auto put = [&out](std::uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(submitted() | cancels_ << 4 | failures_ << 8 | faulty_used_ << 12 | shut_used_ << 13 | term_used_ << 14 |
        supervisor_used_ << 15 | cancel_all_ << 16 | terminating_ << 17 | may_break_ << 18 | terminated_seen_ << 19);
    for (TaskId t = 1; t <= submitted(); ++t) {
      const Tk& k = tasks_[t];
      put(k.slot | k.resolved << 2 | static_cast<unsigned>(k.outcome) << 3 | k.cancelled << 5 | k.killed << 7 |
          k.armed_on << 8 | k.gos << 16 | static_cast<std::uint64_t>(k.ran_on) << 24);
    }
    for (NodeId n = 0; n < nodes_.size(); ++n) {
      const Nd& x = nodes_[n];
      put(x.st | x.cap << 4 | x.terminated << 12 | x.said_broken << 13 | term_sent_[n] << 14);
      put(x.offers.size());
      for (TaskId t : x.offers) put(t);
      std::vector<TaskId> c = x.claimed, r = x.running;  // sets: no decision reads their order
      std::sort(c.begin(), c.end());
      std::sort(r.begin(), r.end());
      put(c.size());
      for (TaskId t : c) put(t);
      put(r.size());
      for (TaskId t : r) put(t);
      put(x.in.size());
      for (const Msg& m : x.in) put(m.kind | m.t << 8);
      put(x.out.size());
      for (const Msg& m : x.out) put(m.kind | m.t << 8 | static_cast<std::uint64_t>(m.cap) << 40);
    }
  }

 private:
  bool user_closed() const { return shut_used_ || term_used_; }
  unsigned tasks_parts(TaskId t) const { return (b_->chunks >> t & 1) != 0 ? 2 : 1; }

  const Bounds* b_;
  unsigned cancels_ = 0, failures_ = 0;
  bool faulty_used_ = false, shut_used_ = false, term_used_ = false, supervisor_used_ = false;
};

Bounds row(unsigned nodes, unsigned ahead, unsigned tasks) {
  Bounds b;
  b.machine.nodes = nodes;
  b.machine.ahead = ahead;
  b.tasks = tasks;
  return b;
}

}  // namespace

int main() {
  // The rows run in this order; a twin stops at the first row that catches
  // it, so the small rows come first.
  std::vector<keel::explore::Row<Bounds>> rows;
  const char* const all = "CLUSTER-1,CLUSTER-2,CLUSTER-3,CLUSTER-4,CLUSTER-5,CLUSTER-6";
  {
    // One node of 1 or 2 workers, a chunk among plain tasks: cancels racing
    // claims (a chunk started again without its cancelled call), a node
    // failure of either kind at any point, every shutdown form, the
    // supervisor failing.
    Bounds b = row(1, 1, 2);
    b.chunks = 1u << 2;
    b.caps = 0b11;
    b.cancels = 2;
    b.failures = 1;
    b.supervisor = true;
    rows.push_back({"cluster.explore.n1-chunk", all, b});
  }
  {
    // One node of 1 worker, one ahead, three tasks (more than it may hold), a
    // faulty claim beyond its free workers.
    Bounds b = row(1, 1, 3);
    b.cancels = 1;
    b.faulty = true;
    rows.push_back({"cluster.explore.n1-faulty", all, b});
  }
  {
    // Two nodes of 1 or 2 workers: offers moved to an idle node while their
    // claims are in flight, a cancel, a failure.
    Bounds b = row(2, 1, 2);
    b.caps = 0b01;
    b.cancels = 1;
    b.failures = 1;
    rows.push_back({"cluster.explore.n2", all, b});
  }
  return keel::explore::run_rows(rows, [](const Bounds& b) { return ExploreWorld(b); });
}
