// Relacy models of the ProcessPool's bounded submission (POOL-10): the real
// keel::pool::Edge, through the shim, between submitting threads and a
// supervisor thread. The supervisor is played by the model as the driver
// plays it: it sleeps on the doorbell only when it has nothing to do, takes
// the edge's commands in order, applies them to a simulated parent queue
// (what Machine::queued() counts: submit appends, discard_oldest cancels the
// front, shutdown(cancel_futures) and terminate empty it), may let a worker
// take the front task, and reports the queue's length with set_queued() after
// every turn. After every turn it checks POOL-10's bound: once it has taken
// every submission, at most capacity tasks wait; and POOL-1's order: no
// submit reaches it after a shutdown.
//
// Search: random, 200k schedules per check (about 1-3 s each). Relacy's full
// search of even the two-thread blocked-vs-room did not end in 10 minutes
// here (every edge call is a lock, a condition and a semaphore, and the
// supervisor's choices multiply them); every twin below is caught within
// 100 random schedules, most within ten.
//
// KEEL-TWIN pool_edge_room_not_notified pool.edge.blocked-vs-room.2t
// KEEL-TWIN pool_edge_take_uncounted pool.edge.blocked-vs-room.2t
// KEEL-TWIN pool_edge_close_not_notified pool.edge.blocked-vs-shutdown.3t
// KEEL-TWIN pool_edge_blocked_skips_recheck pool.edge.blocked-vs-break.2t
// KEEL-TWIN pool_edge_break_not_notified pool.edge.blocked-vs-break.2t
// KEEL-TWIN pool_edge_close_wakes_one pool.edge.two-blocked-vs-shutdown.4t
// KEEL-TWIN pool_edge_break_wakes_one pool.edge.two-blocked-vs-break.3t
#include <deque>
#include <vector>

#include "../../kernel/src/process_pool/edge.hpp"
#include "harness.hpp"
#include "keel/sync/semaphore.hpp"
// The edge's out-of-line code (not pool_unity.hpp: the models here need no
// Machine, only its task and command types).
#include "../../kernel/src/process_pool/edge.cpp"

namespace {

using keel::RejectedError;
using keel::RejectPolicy;
using keel::pool::Admission;
using keel::pool::Bound;
using keel::pool::Command;
using keel::pool::Edge;
using keel::pool::Nanos;
using keel::pool::TaskId;

struct Bell final : keel::pool::Doorbell {
  keel::Semaphore sem{0};
  void ring() override { sem.release(); }
};

// The supervisor's side: the parent queue the machine would hold, fed by the
// edge's commands.
class Supervisor {
 public:
  Supervisor(Edge& edge, Bell& bell, std::size_t capacity) : edge_(edge), bell_(bell), capacity_(capacity) {}

  // One turn: takes and applies what the edge holds; then, with `workers`,
  // a worker may take the front task (Relacy chooses; it always does when
  // the turn took nothing, so the model makes progress). Reports the queue's
  // length. Returns whether anything was taken.
  bool turn(bool workers) {
    cmds_.clear();
    edge_.take(cmds_);
    for (const Command& c : cmds_) apply(c);
    // POOL-10: every submission so far is taken, so the bound holds.
    RL_ASSERT(queue_.size() <= capacity_);
    if (workers && !queue_.empty() && (cmds_.empty() || rl::rand(2) == 0)) {
      queue_.pop_front();
      ++sent_;
    }
    edge_.set_queued(queue_.size());
    return !cmds_.empty();
  }
  // Sleeps on the doorbell (only when a turn found nothing to do).
  void sleep() { bell_.sem.acquire(); }

  const std::deque<TaskId>& queue() const { return queue_; }
  const std::vector<TaskId>& cancelled() const { return cancelled_; }
  int seen() const { return seen_; }
  int sent() const { return sent_; }
  bool closed() const { return closed_; }

 private:
  void apply(const Command& c) {
    switch (c.kind) {
      case Command::submit:
        RL_ASSERT(!closed_);  // POOL-1: every accepted submission comes before the shutdown
        queue_.push_back(c.task);
        ++seen_;
        break;
      case Command::discard_oldest:
        RL_ASSERT(!closed_);
        if (!queue_.empty()) {
          cancelled_.push_back(queue_.front());
          queue_.pop_front();
        }
        break;
      case Command::shutdown:
        closed_ = true;
        if (c.cancel_futures) queue_.clear();
        break;
      case Command::terminate:
        closed_ = true;
        queue_.clear();
        break;
    }
  }

  Edge& edge_;
  Bell& bell_;
  std::size_t capacity_;
  std::vector<Command> cmds_;
  std::deque<TaskId> queue_;
  std::vector<TaskId> cancelled_;
  int seen_ = 0;
  int sent_ = 0;
  bool closed_ = false;
};

Bound block_forever(std::size_t capacity) { return Bound{capacity, RejectPolicy::block, Nanos::max()}; }

// The pieces the blocked-submitter suites share.
// Capacity 1, block with no timeout, filled by a first task before the
// threads start: every submission of the suite blocks.
void fill_capacity_one(Edge& edge) {
  edge.set_bound(block_forever(1));
  RL_ASSERT(edge.submit(Nanos::zero(), nullptr).kind == Admission::queued);
}
// A supervisor with no free worker: it takes commands until a shutdown
// arrives, then takes once more (a submit accepted after it would show), and
// ends the edge.
void supervise_until_closed(Edge& edge, Bell& bell) {
  Supervisor s(edge, bell, 1);
  while (!s.closed()) {
    if (!s.turn(false)) s.sleep();
  }
  s.turn(false);
  RL_ASSERT(s.seen() <= 1);  // no room ever appeared: at most the first task was accepted
  edge.set_terminated();
}
// A supervisor with no free worker that breaks the pool once it has seen the
// first task.
void supervise_then_break(Edge& edge, Bell& bell) {
  Supervisor s(edge, bell, 1);
  while (s.seen() == 0) {
    if (!s.turn(false)) s.sleep();
  }
  edge.set_broken("ProcessPool is broken");
}
// A submission that finds no room, ever: only a shutdown ends its wait.
void submit_refused_by_shutdown(Edge& edge) {
  try {
    edge.submit(Nanos::zero(), nullptr);
    RL_ASSERT(false);
  } catch (const RejectedError& e) {
    RL_ASSERT(e.reason() == RejectedError::Reason::shutdown);
  }
}
// A submission that finds no room, ever: only the break ends its wait.
void submit_failed_by_break(Edge& edge) {
  try {
    edge.submit(Nanos::zero(), nullptr);
    RL_ASSERT(false);
  } catch (const keel::BrokenProcessPool&) {
  }
}

// POOL-10, SYNC-2: capacity 1, block with no timeout. The submitter's second
// task finds the first waiting and blocks; the supervisor, which may let a
// worker take a task on any turn (and must when it has nothing else to do),
// reports the room, which must wake it: a lost wake-up leaves both asleep
// (Relacy: DEADLOCK). Both tasks are accepted and reach the supervisor, and
// the bound holds after every turn.
struct BlockedVsRoom : rl::test_suite<BlockedVsRoom, 2> {
  Bell bell;
  Edge edge{bell};
  void before() { edge.set_bound(block_forever(1)); }
  void thread(unsigned idx) {
    if (idx == 0) {
      Supervisor s(edge, bell, 1);
      for (;;) {
        if (s.turn(true) || !s.queue().empty()) continue;
        if (s.seen() == 2) break;
        s.sleep();
      }
      RL_ASSERT(s.sent() == 2);
    } else {
      const Admission a = edge.submit(Nanos::zero(), nullptr);
      RL_ASSERT(a.kind == Admission::queued && a.task == 1);
      const Admission b = edge.submit(Nanos::zero(), nullptr);
      RL_ASSERT(b.kind == Admission::queued && b.task == 2);
      RL_ASSERT(edge.rejected() == 0);
    }
  }
};

// POOL-10, SYNC-2: two submitters block for one slot (capacity 1, each
// submits once after the first task): each report of room must wake them
// (notify_all), the one that loses the race waits again, and both end up
// accepted in some order; the bound holds after every turn.
struct TwoBlockedVsRoom : rl::test_suite<TwoBlockedVsRoom, 3> {
  Bell bell;
  Edge edge{bell};
  void before() { edge.set_bound(block_forever(1)); }
  void thread(unsigned idx) {
    if (idx == 0) {
      Supervisor s(edge, bell, 1);
      for (;;) {
        if (s.turn(true) || !s.queue().empty()) continue;
        if (s.seen() == 3) break;
        s.sleep();
      }
      RL_ASSERT(s.sent() == 3);
    } else {
      if (idx == 1) RL_ASSERT(edge.submit(Nanos::zero(), nullptr).kind == Admission::queued);
      RL_ASSERT(edge.submit(Nanos::zero(), nullptr).kind == Admission::queued);
    }
  }
};

// POOL-10, POOL-1, EXEC-3: capacity 1, block with no timeout, and no worker
// ever free: the submitter's second task can only leave by refusal. A closer
// asks for shutdown, shutdown(cancel_futures) or terminate; the blocked
// submitter must be woken and refused with RejectedError(shutdown), never
// stranded (DEADLOCK) and never accepted after the shutdown.
struct BlockedVsShutdown : rl::test_suite<BlockedVsShutdown, 3> {
  Bell bell;
  Edge edge{bell};
  void before() { edge.set_bound(block_forever(1)); }
  void thread(unsigned idx) {
    if (idx == 0) {
      supervise_until_closed(edge, bell);
    } else if (idx == 1) {
      bool first = false;
      try {
        first = edge.submit(Nanos::zero(), nullptr).kind == Admission::queued;
      } catch (const RejectedError& e) {
        RL_ASSERT(e.reason() == RejectedError::Reason::shutdown);
      }
      submit_refused_by_shutdown(edge);
      RL_ASSERT(edge.rejected() == (first ? 1u : 2u));
      RL_ASSERT(edge.blocked() == 0);
    } else {
      Command c;
      switch (rl::rand(3)) {
        case 0:
          c.kind = Command::shutdown;
          break;
        case 1:
          c.kind = Command::shutdown;
          c.cancel_futures = true;
          break;
        default:
          c.kind = Command::terminate;
          c.signal = 9;
          break;
      }
      edge.request(c);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
    }
  }
};

// POOL-10, EXEC-3: capacity 1, block with no timeout; the supervisor breaks
// the pool (set_broken) once it has seen the first task. The blocked second
// submission must be woken and fail with BrokenProcessPool, never stranded.
struct BlockedVsBreak : rl::test_suite<BlockedVsBreak, 2> {
  Bell bell;
  Edge edge{bell};
  void before() { edge.set_bound(block_forever(1)); }
  void thread(unsigned idx) {
    if (idx == 0) {
      supervise_then_break(edge, bell);
    } else {
      RL_ASSERT(edge.submit(Nanos::zero(), nullptr).kind == Admission::queued);
      submit_failed_by_break(edge);
      RL_ASSERT(edge.blocked() == 0);
    }
  }
};

// POOL-10, POOL-1, EXEC-3: as blocked-vs-shutdown, with two submitters
// blocked at once (the first task, submitted before the threads start,
// fills capacity 1 and no worker ever takes it). A shutdown must wake both:
// each woken one leaves with its refusal and wakes nobody, so a wake of one
// strands the other (Relacy: DEADLOCK).
struct TwoBlockedVsShutdown : rl::test_suite<TwoBlockedVsShutdown, 4> {
  Bell bell;
  Edge edge{bell};
  void before() { fill_capacity_one(edge); }
  void thread(unsigned idx) {
    if (idx == 0) {
      supervise_until_closed(edge, bell);
    } else if (idx == 3) {
      Command c;
      c.kind = rl::rand(2) == 0 ? Command::shutdown : Command::terminate;
      c.signal = 9;
      edge.request(c);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
    } else {
      submit_refused_by_shutdown(edge);
    }
  }
  void after() {
    RL_ASSERT(edge.rejected() == 2);
    RL_ASSERT(edge.blocked() == 0);
  }
};

// POOL-10, EXEC-3: as blocked-vs-break, with two submitters blocked at once
// behind a first task that no worker takes; the supervisor breaks the pool
// once it has seen that task. Both must be woken and fail with
// BrokenProcessPool; a wake of one strands the other.
struct TwoBlockedVsBreak : rl::test_suite<TwoBlockedVsBreak, 3> {
  Bell bell;
  Edge edge{bell};
  void before() { fill_capacity_one(edge); }
  void thread(unsigned idx) {
    if (idx == 0) {
      supervise_then_break(edge, bell);
    } else {
      submit_failed_by_break(edge);
    }
  }
  void after() { RL_ASSERT(edge.blocked() == 0); }
};

// POOL-10: block with a timeout (a timed futex wait may time out at any
// point here), while the supervisor may let a worker take the first task on
// any turn. The second submission is accepted (room came) or refused with
// RejectedError(timed_out), counted once; then the submitter shuts down.
struct BlockTimeout : rl::test_suite<BlockTimeout, 2> {
  Bell bell;
  Edge edge{bell};
  void before() { edge.set_bound(Bound{1, RejectPolicy::block, std::chrono::milliseconds(1)}); }
  void thread(unsigned idx) {
    if (idx == 0) {
      Supervisor s(edge, bell, 1);
      while (!s.closed()) {
        if (!s.turn(true) && s.queue().empty()) s.sleep();
      }
      edge.set_terminated();
    } else {
      RL_ASSERT(edge.submit(Nanos::zero(), nullptr).kind == Admission::queued);
      bool accepted = false;
      try {
        accepted = edge.submit(Nanos::zero(), nullptr).kind == Admission::queued;
      } catch (const RejectedError& e) {
        RL_ASSERT(e.reason() == RejectedError::Reason::timed_out);
      }
      RL_ASSERT(edge.rejected() == (accepted ? 0u : 1u));
      Command c;
      c.kind = Command::shutdown;
      edge.request(c);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
    }
  }
};

// POOL-10: capacity 1, discard_oldest, no worker ever free, against a
// supervisor taking commands at any moment. Each task after the first
// evicts the oldest one still waiting: the supervisor sees the discard after
// every earlier submit, so it cancels 1 then 2, and 3 is left queued; no
// task is lost without a trace (each is queued or cancelled).
struct DiscardOldestOrder : rl::test_suite<DiscardOldestOrder, 2> {
  Bell bell;
  Edge edge{bell};
  void before() { edge.set_bound(Bound{1, RejectPolicy::discard_oldest, Nanos::max()}); }
  void thread(unsigned idx) {
    if (idx == 0) {
      Supervisor s(edge, bell, 1);
      while (!s.closed()) {
        if (!s.turn(false)) s.sleep();
      }
      RL_ASSERT(s.seen() == 3);
      RL_ASSERT(s.queue().size() == 1 && s.queue().front() == 3);
      RL_ASSERT(s.cancelled().size() == 2 && s.cancelled()[0] == 1 && s.cancelled()[1] == 2);
      edge.set_terminated();
    } else {
      for (TaskId t = 1; t <= 3; ++t) {
        const Admission a = edge.submit(Nanos::zero(), nullptr);
        RL_ASSERT(a.kind == Admission::queued && a.task == t);
      }
      RL_ASSERT(edge.rejected() == 2);
      Command c;
      c.kind = Command::shutdown;
      edge.request(c);
      RL_ASSERT(edge.wait_terminated(keel::platform::Deadline::never()));
    }
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<BlockedVsRoom>("pool.edge.blocked-vs-room.2t", "POOL-10,SYNC-2", random(200000));
  check<BlockedVsBreak>("pool.edge.blocked-vs-break.2t", "POOL-10,EXEC-3", random(200000));
  check<BlockTimeout>("pool.edge.block-timeout.2t", "POOL-10", random(200000));
  check<DiscardOldestOrder>("pool.edge.discard-oldest.2t", "POOL-10", random(200000));
  check<BlockedVsShutdown>("pool.edge.blocked-vs-shutdown.3t", "POOL-10,POOL-1,EXEC-3", random(200000));
  check<TwoBlockedVsRoom>("pool.edge.two-blocked-vs-room.3t", "POOL-10,SYNC-2", random(200000));
  check<TwoBlockedVsShutdown>("pool.edge.two-blocked-vs-shutdown.4t", "POOL-10,POOL-1,EXEC-3", random(200000));
  check<TwoBlockedVsBreak>("pool.edge.two-blocked-vs-break.3t", "POOL-10,EXEC-3", random(200000));
  return exit_code();
}
