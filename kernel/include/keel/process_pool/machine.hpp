// keel::pool::Machine: every decision of the ProcessPool supervisor, as a
// state machine with no I/O, no clock and no threads.
//
// Contract: the driver feeds events (submit, worker ready, result, worker
// exited, tick, shutdown, terminate, initializer failed) and carries out the
// actions they produce, in order (spawn, send, close, kill, resolve,
// terminated). Time comes in with the events. Whether a queued task was
// cancelled is asked through StartGate at the moment it would be sent: that
// answer is the "cancel" event in pull form, and it is exact because the same
// call marks the task's future running.
//
// What the machine relies on (the worker loop guarantees it): a worker runs the
// tasks sent to it in order and writes each result before it starts the next,
// so of a worker's in-flight tasks only the head can have started; and the
// driver reports a worker's exit only after reading its channel to the end, so
// every result the worker wrote is seen before its death.
//
// A task's timeout counts from the moment it is sent: a timed task is only
// sent to a worker with nothing in flight and nothing is sent behind it, so
// the clock includes the microseconds of delivery but never another task's
// run time.
//
// Invariants: POOL-1 (every submitted task resolves exactly once), POOL-2 (runs
// at most 1 + retries times; tasks behind a dead head are re-queued, not
// counted), POOL-3 (active workers return to the target), POOL-5 (restart limit,
// initializer failure breaks the pool), POOL-6 (depth, timed tasks alone,
// max_tasks_per_child). See proofs/INVARIANTS.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "keel/platform/inject.hpp"

namespace keel::pool {

using TaskId = std::uint64_t;
using WorkerId = std::uint32_t;
using Nanos = std::chrono::nanoseconds;  // since any fixed epoch the driver picks

struct MachineConfig {
  unsigned workers = 1;                             // target number of active workers (>= 1)
  unsigned depth = 1;                               // tasks in flight per worker (>= 1)
  unsigned max_tasks_per_child = 0;                 // 0: unlimited
  unsigned retries = 0;                             // extra runs of a task whose worker died
  unsigned restart_limit = 32;                      // more than this many unplanned replacements ...
  Nanos restart_window = std::chrono::seconds(10);  // ... within this window breaks the pool
  bool has_initializer = false;                     // a death before `ready` is then an initializer failure
};

enum class Outcome : std::uint8_t {
  value,      // the worker reported it (a result or a remote error)
  lost,       // its worker died while it was at the head: WorkerLost
  timed_out,  // ran past its timeout; its worker is being killed
  cancelled,  // shutdown(cancel_futures), terminate, or never started before a terminate
  broken,     // the pool broke: BrokenProcessPool
};

enum class BrokenReason : std::uint8_t { none, initializer_failed, initializer_died, restart_limit };

struct Action {
  enum Kind : std::uint8_t { spawn, send, close, kill, resolve, terminated };
  Kind kind;
  WorkerId worker = 0;  // spawn/send/close/kill; for resolve(lost): the dead worker
  TaskId task = 0;      // send/resolve
  Outcome outcome = Outcome::value;
  int code = 0;  // kill: the signal; resolve(lost): the worker's exit code (negative: signal)
};

// Answers, once per task and at the moment it is about to be sent, whether it
// may start: true marks its future running; false means it was cancelled.
class StartGate {
 public:
  virtual bool try_start(TaskId task) = 0;

 protected:
  ~StartGate() = default;
};

struct MachineCounters {
  std::uint64_t submitted = 0;
  std::uint64_t sent = 0;          // sends, re-sends included
  std::uint64_t resolved = 0;      // every Resolve action
  std::uint64_t completed = 0;     // resolved with a worker's answer
  std::uint64_t lost = 0;          // resolved WorkerLost
  std::uint64_t timed_out = 0;     // resolved TimedOut
  std::uint64_t cancelled = 0;     // resolved Cancelled, or dropped as cancelled by the gate
  std::uint64_t broken = 0;        // resolved BrokenProcessPool
  std::uint64_t retried = 0;       // runs repeated after a lost head
  std::uint64_t requeued = 0;      // untouched tasks put back after their worker died
  std::uint64_t spawned = 0;       // Spawn actions
  std::uint64_t deaths = 0;        // unplanned worker exits
  std::uint64_t replacements = 0;  // spawns that replaced an unplanned death
  std::uint64_t retirements = 0;   // planned exits (max_tasks_per_child, shutdown)
};

class Machine {
 public:
  enum class Phase : std::uint8_t { running, shutting_down, broken };
  enum class WorkerState : std::uint8_t { starting, ready, retiring, closing, killing, exited };

  Machine(const MachineConfig& config, StartGate& gate);

  // Spawns the initial workers. Call once, first.
  void start(Nanos now);

  void submit(TaskId task, Nanos timeout, Nanos now);  // timeout <= 0: none
  void worker_ready(WorkerId w, Nanos now);
  void init_failed(WorkerId w, Nanos now);
  // The worker reported the outcome of `task`. Returns false if that is not
  // what the worker could have reported (not its head): the driver should
  // treat the worker as faulty (the machine has already asked to kill it).
  bool result(WorkerId w, TaskId task, Nanos now);
  void worker_exited(WorkerId w, int exit_code, Nanos now);
  void tick(Nanos now);
  void shutdown(bool cancel_futures, Nanos now);
  void terminate(int signal, Nanos now);

  // Actions produced since the last take; the driver performs them in order.
  std::vector<Action>& actions() { return out_; }

  Phase phase() const { return phase_; }
  bool terminated() const { return terminated_; }
  BrokenReason broken_reason() const { return broken_reason_; }
  WorkerId broken_worker() const { return broken_worker_; }
  int broken_code() const { return broken_code_; }
  // The earliest time tick() has something to do; Nanos::max() if none.
  Nanos next_deadline() const;

  std::size_t queued() const { return queue_.size(); }
  std::size_t in_flight() const;
  std::size_t in_flight(WorkerId w) const;
  unsigned active_workers() const;  // starting or ready
  unsigned live_workers() const;    // not exited
  unsigned ready_workers() const;   // ready for tasks (initializer done)
  WorkerState state_of(WorkerId w) const;
  unsigned sent_to(WorkerId w) const;
  const MachineCounters& counters() const { return c_; }
  const MachineConfig& config() const { return cfg_; }

 private:
  struct Task {
    TaskId id;
    Nanos timeout;
    unsigned lost = 0;     // times it was the head of a worker that died
    bool started = false;  // the gate said yes once: its future is running
  };
  struct Worker {
    WorkerId id;
    WorkerState state = WorkerState::starting;
    std::deque<Task> in_flight;
    unsigned sent = 0;
    Nanos head_since{0};          // when the head was sent to an idle worker, or its predecessor answered
    TaskId timed_out = 0;         // a head resolved as timed out: its late result is ignored
    bool counts_restart = false;  // spawned to replace an unplanned death
  };

  Worker* find(WorkerId w);
  const Worker* find(WorkerId w) const;
  void spawn(bool replacement, Nanos now);
  bool spawn_useful() const;
  void fill(Nanos now);
  void dispatch(Nanos now);
  Worker* pick(const Task& t);
  void refill_workers(Nanos now);
  void close_idle();
  void resolve(TaskId t, Outcome o, WorkerId w = 0, int code = 0);
  void kill(Worker& w, int signal);
  void break_pool(BrokenReason why, WorkerId w, int code);
  void requeue_front(std::deque<Task>& tasks);
  void check_terminated();
  void emit(Action a) { out_.push_back(a); }

  MachineConfig cfg_;
  StartGate& gate_;
  Phase phase_ = Phase::running;
  bool terminating_ = false;  // terminate(): no retries, no spawns
  bool terminated_ = false;
  BrokenReason broken_reason_ = BrokenReason::none;
  WorkerId broken_worker_ = 0;
  int broken_code_ = 0;
  std::deque<Task> queue_;
  std::vector<Worker> workers_;  // exited ones are erased
  std::deque<Nanos> restarts_;   // times of recent unplanned replacements
  WorkerId next_worker_ = 1;
  std::vector<Action> out_;
  MachineCounters c_;
};

}  // namespace keel::pool
