// keel::pool::Edge: where the threads that use a ProcessPool hand work to its
// supervisor thread, the only thread that touches the state machine.
//
// Contract: submit() either accepts a task (gives it an id and queues a
// command for the supervisor), answers that the caller must run it itself or
// cancel it (the bound's caller_runs and discard), or refuses it: with
// RejectedError(shutdown) once a shutdown or terminate was requested, with
// BrokenProcessPool once the pool broke, or as the bound's policy says
// (abort: RejectedError(saturated); block: RejectedError(timed_out) after
// block_timeout). Exactly one of these, never silently. Commands reach the
// supervisor in the order they were accepted, so every submit accepted before
// a shutdown is seen before it. The doorbell is rung only when the inbox turns
// non-empty: a supervisor that emptied it is always rung again for the next
// command, and a busy one is not rung once per task. set_terminated() wakes
// every thread in wait_terminated().
//
// The bound (set_bound; capacity 0 is unbounded). What waits in the parent,
// as the edge sees it: the submits still in its inbox plus the queued count
// the supervisor last reported (set_queued, after every turn), plus the
// submits take() handed out since that report (each is counted as queued
// until the supervisor says otherwise, so the view never runs below the
// truth). A submission that finds capacity or more waiting follows the
// policy. discard_oldest queues a discard_oldest command and then the submit:
// the supervisor takes commands in order, so the discard reaches the machine
// after every earlier submit and cancels the oldest task still queued there.
// Until the supervisor has taken both, the view counts the new task on top
// of the one it will discard, so it may transiently exceed the capacity by
// the discard_oldest submits not yet taken; each of them discards one.
// Blocked submitters wait on a Condition over the edge's lock (never poll)
// and are woken when a report shows room, and by shutdown, terminate and
// set_broken, which refuse them.
//
// Invariants: POOL-1 (no accepted task is stranded: it reaches the machine
// before the shutdown that follows it), POOL-10 (at most capacity tasks wait
// in the parent once the supervisor has seen every submission; a submission
// beyond it follows the policy, never silently dropped; after shutdown every
// submission is refused), EXEC-3 (refusal is an error), POOL-11 (the edge is
// closed before a shutdown command is queued, so no future says cancelled by
// it while submit still accepts). See proofs/INVARIANTS.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "keel/executor/reject_policy.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "machine.hpp"

namespace keel::pool {

// How the supervisor is woken: natively an eventfd it polls along with the
// workers' channels; in the models a semaphore.
class Doorbell {
 public:
  virtual void ring() = 0;

 protected:
  ~Doorbell() = default;
};

struct Command {
  enum Kind : std::uint8_t { submit, shutdown, terminate, discard_oldest };
  Kind kind = submit;
  TaskId task = 0;
  Nanos timeout{0};
  bool cancel_futures = false;  // shutdown
  int signal = 0;               // terminate
  void* payload = nullptr;      // the driver's record of the task
};

// How many tasks may wait in the parent, and what a submission beyond that
// does (ProcessPoolOptions::queue_capacity, reject, block_timeout).
struct Bound {
  std::size_t capacity = 0;  // 0: unbounded (the policy never applies)
  RejectPolicy policy = RejectPolicy::abort;
  Nanos block_timeout = Nanos::max();  // block: how long to wait for room; max: for ever
  // A rejection handler decides instead of abort (policy is then abort):
  // a saturated submission is counted and handed back (Admission::handle).
  bool handler = false;
};

// What submit() did with a task it did not refuse.
struct Admission {
  enum Kind : std::uint8_t {
    queued,    // accepted: a submit command with this id is on its way
    run_here,  // caller_runs: nothing queued; the caller runs the task
    discard,   // discard: nothing queued; the caller cancels the task
    handle,    // saturated with a rejection handler: nothing queued; the caller's handler decides
  };
  Kind kind = queued;
  TaskId task = 0;  // queued: its id (from 1)
};

// Commands the inbox holds before it grows. The supervisor swaps its own
// command vector with the inbox at every turn (take()), so both keep their
// capacity and a submit pushes without allocating until a burst between two
// turns outgrows it. Without a start, how often the inbox grew depended on
// how the first submissions happened to meet the supervisor's turns: one
// command per turn leaves both vectors tiny, and a later burst then grows
// them again, 1, 2, 4, ... (a 40-byte command: 10 KiB each here).
inline constexpr std::size_t inbox_reserve = 256;

class Edge {
 public:
  explicit Edge(Doorbell& bell) : bell_(bell) { inbox_.reserve(inbox_reserve); }
  Edge(const Edge&) = delete;
  Edge& operator=(const Edge&) = delete;

  // Sets the bound (before the first submit; the caller validated it).
  void set_bound(const Bound& b);
  // Accepts a task, or says the caller must run or cancel it, or throws
  // (nothing queued). `may_block` false: a submission that would wait for
  // room throws MisuseError instead (the supervisor thread, whose turn would
  // make the room, must not wait for it).
  Admission submit(Nanos timeout, void* payload, bool may_block = true);
  // A task with no time at all (a timeout <= 0, keel/timeout.hpp), which is
  // never queued: refused exactly as submit() refuses after a shutdown or a
  // break, otherwise counted (the caller fails its future with TimeoutError).
  // The bound does not apply: the task never waits in the parent.
  void expire();
  // Queues a shutdown or terminate command; closes the edge to submissions
  // and refuses every blocked submitter. Always accepted, so terminate can
  // follow shutdown.
  void request(const Command& c);
  // The supervisor: appends every queued command to `out`, in order.
  void take(std::vector<Command>& out);
  // The supervisor, after every turn: how many tasks the machine holds
  // queued (Machine::queued()). The count must include every command take()
  // handed out so far: report only once all of them were fed to the machine,
  // never from inside that loop (a report that leaves out taken submits lets
  // submitters past the bound). Wakes blocked submitters when it leaves room.
  void set_queued(std::size_t n);
  // Later submissions, and the blocked ones, fail with BrokenProcessPool(message).
  void set_broken(std::string message);
  void set_terminated() { terminated_.set(); }
  bool terminated() const { return terminated_.is_set(); }
  bool wait_terminated(const platform::Deadline& d);
  bool closed() const;
  // The message of set_broken; nullopt until the pool broke.
  std::optional<std::string> broken_message() const;

  // Tasks waiting in the parent, as the edge sees it (see the top).
  std::size_t waiting() const;
  // Submitters waiting for room now (RejectPolicy::block).
  std::size_t blocked() const;
  // Submissions refused (RejectedError, shutdown included), discarded or
  // handed back to run in the caller, plus discard_oldest evictions asked for.
  std::uint64_t rejected() const;
  // Tasks expire() let through.
  std::uint64_t expired() const;

 private:
  void push(const Command& c) KEEL_REQUIRES(m_);
  std::size_t waiting_locked() const KEEL_REQUIRES(m_);
  bool has_room() const KEEL_REQUIRES(m_);

  Doorbell& bell_;
  mutable Mutex m_;
  std::vector<Command> inbox_ KEEL_GUARDED_BY(m_);
  bool closed_ KEEL_GUARDED_BY(m_) = false;
  bool broken_ KEEL_GUARDED_BY(m_) = false;
  std::string broken_message_ KEEL_GUARDED_BY(m_);
  TaskId next_id_ KEEL_GUARDED_BY(m_) = 1;
  Bound bound_ KEEL_GUARDED_BY(m_);
  std::size_t inbox_submits_ KEEL_GUARDED_BY(m_) = 0;  // submit commands in inbox_
  std::size_t queued_ KEEL_GUARDED_BY(m_) = 0;         // last report, plus the submits taken since
  std::size_t blocked_ KEEL_GUARDED_BY(m_) = 0;        // submitters waiting on room_
  std::uint64_t rejected_ KEEL_GUARDED_BY(m_) = 0;
  std::uint64_t expired_ KEEL_GUARDED_BY(m_) = 0;
  Condition room_{m_};  // blocked submitters wait here for room, shutdown or a break
  Event terminated_;
};

}  // namespace keel::pool
