// keel::pool::Edge: where the threads that use a ProcessPool hand work to its
// supervisor thread, the only thread that touches the state machine.
//
// Contract: submit() either accepts a task (gives it an id and queues a
// command for the supervisor) or refuses it with RejectedError(shutdown) once
// a shutdown or terminate was requested, or with BrokenProcessPool once the
// pool broke; never both, never silently. Commands reach the supervisor in
// the order they were accepted, so every submit accepted before a shutdown is
// seen before it. The doorbell is rung only when the inbox turns non-empty:
// a supervisor that emptied it is always rung again for the next command,
// and a busy one is not rung once per task. set_terminated() wakes every
// thread in wait_terminated().
//
// Invariants: POOL-1 (no accepted task is stranded: it reaches the machine
// before the shutdown that follows it), EXEC-3 (refusal is an error). See
// proofs/INVARIANTS.md.
#pragma once

#include <string>
#include <vector>

#include "keel/process_pool/machine.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"

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
  enum Kind : std::uint8_t { submit, shutdown, terminate };
  Kind kind = submit;
  TaskId task = 0;
  Nanos timeout{0};
  bool cancel_futures = false;  // shutdown
  int signal = 0;               // terminate
  void* payload = nullptr;      // the driver's record of the task
};

class Edge {
 public:
  explicit Edge(Doorbell& bell) : bell_(bell) {}
  Edge(const Edge&) = delete;
  Edge& operator=(const Edge&) = delete;

  // Accepts a task and returns its id (from 1), or throws (nothing queued).
  TaskId submit(Nanos timeout, void* payload);
  // Queues a shutdown or terminate command; closes the edge to submissions.
  // Always accepted, so terminate can follow shutdown.
  void request(const Command& c);
  // The supervisor: appends every queued command to `out`, in order.
  void take(std::vector<Command>& out);
  // Later submissions fail with BrokenProcessPool(message).
  void set_broken(std::string message);
  void set_terminated() { terminated_.set(); }
  bool terminated() const { return terminated_.is_set(); }
  bool wait_terminated(const platform::Deadline& d);
  bool closed() const;

 private:
  void push(const Command& c) KEEL_REQUIRES(m_);

  Doorbell& bell_;
  mutable Mutex m_;
  std::vector<Command> inbox_ KEEL_GUARDED_BY(m_);
  bool closed_ KEEL_GUARDED_BY(m_) = false;
  bool broken_ KEEL_GUARDED_BY(m_) = false;
  std::string broken_message_ KEEL_GUARDED_BY(m_);
  TaskId next_id_ KEEL_GUARDED_BY(m_) = 1;
  Event terminated_;
};

}  // namespace keel::pool
