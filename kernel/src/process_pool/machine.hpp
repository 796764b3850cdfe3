// keel::pool::Machine: every decision of the ProcessPool supervisor, as a
// state machine with no I/O, no clock and no threads.
//
// Contract: the driver feeds events (submit, worker ready, started, skipped,
// result, worker exited, tick, shutdown, terminate, initializer failed) and
// carries out the actions they produce, in order (spawn, send, close, kill,
// resolve, broken, terminated). Time comes in with the events.
//
// A break reaches submitters before any future (POOL-11): the machine emits
// `broken` (refuse every later submit) before the first resolve(broken), so a
// driver that performs actions in order has closed its door by the time a
// future says broken, and a thread woken by that future finds submit refusing.
//
// Where a task is, exactly: queued (in the parent), sent (in a worker's
// buffer, not started), running (started at its worker) or final. The start
// is decided at the worker by one compare-and-swap on the task's start slot,
// which the parent can win first (StartGate::revoke, or the user's cancel):
// a task taken back never starts there, and a task whose slot says started
// has started. The machine learns of a start from the worker's notice
// (started), from a revoke that lost, or implicitly from a result; it never
// guesses. So:
// - a future is running only once its task started (the driver marks it at
//   the notice), and cancel succeeds until then, wherever the task is;
// - when a worker dies, each task it held that had not started is taken back
//   and queued again, uncounted; only a started one is lost or retried;
// - work conservation: while a ready worker is idle, nothing waits in the
//   queue, and no other worker holds a task that was not known to start
//   behind another one: the machine takes the youngest back (revoke) and
//   moves it;
// - pipelining adapts: with `pipeline` set, a worker is sent one task plus
//   about `pipeline` of expected work (from measured run times), at most
//   `depth`, and nothing is pipelined behind a task running far longer than
//   the mean (a straggler);
// - a task's timeout counts from its start; nothing is sent behind a timed
//   task, so a timeout kill costs no other task.
//
// What the machine relies on (the worker loop guarantees it): a worker takes
// the frames it is sent in order, starts a task only by winning its slot, says
// so (started) before running it, answers it before it starts the next, and
// says skipped for a frame whose slot it lost; and the driver reports a
// worker's exit only after reading its channel to the end.
//
// Invariants: POOL-1 (every submitted task resolves exactly once), POOL-2 (runs
// at most 1 + retries times; a cancelled task never runs), POOL-3 (active
// workers return to the target), POOL-5 (restart limit, initializer failure
// breaks the pool), POOL-6 (depth, nothing behind a timed task,
// max_tasks_per_child), POOL-7 (a task is running only once started; cancel
// wins until then), POOL-8 (only a started task is lost), POOL-9 (work
// conservation), POOL-11 (a break is published before a future reports it).
// See proofs/INVARIANTS.md.
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
  // Adaptive pipelining: about this much expected work is sent ahead of each
  // worker's running task (at most `depth` in flight). 0: always `depth`.
  Nanos pipeline{0};
  // terminate(signal) with a signal other than SIGKILL: a worker still alive
  // this long after is sent SIGKILL (a task may ignore SIGTERM), so a
  // terminate always ends. max: never (the signal alone).
  Nanos terminate_grace = Nanos::max();
};

enum class Outcome : std::uint8_t {
  value,      // the worker reported it (a result or a remote error)
  lost,       // its worker died while it was at the head: WorkerLost
  timed_out,  // ran past its timeout; its worker is being killed
  cancelled,  // shutdown(cancel_futures) or terminate took it back unstarted, or it was queued then
  broken,     // the pool broke: BrokenProcessPool
};

// supervisor_failed: the driver could not go on (poll or another system call
// failed); it breaks the pool rather than abort the process or hang.
enum class BrokenReason : std::uint8_t { none, initializer_failed, initializer_died, restart_limit, supervisor_failed };

struct Action {
  // broken: the pool broke; every later submit must be refused with
  // BrokenProcessPool. Emitted once, before the first resolve(broken).
  enum Kind : std::uint8_t { spawn, send, close, kill, resolve, terminated, broken };
  Kind kind;
  WorkerId worker = 0;  // spawn/send/close/kill; for resolve(lost): the dead worker
  TaskId task = 0;      // send/resolve
  Outcome outcome = Outcome::value;
  int code = 0;  // kill: the signal; resolve(lost): the worker's exit code (negative: signal)
};

// The start slots, as the machine sees them. Natively a word in memory the
// parent shares with each worker; in the tests a simulated world.
class StartGate {
 public:
  // `task` is about to be sent to `w`: arm a start slot for it there. False:
  // nothing of it is wanted any more (its future was cancelled); the machine
  // drops it. A task that ran before (a retry) is armed again.
  virtual bool dispatch(TaskId task, WorkerId w) = 0;
  // Take back `task`, sent to `w` and not known to have started. True: it
  // will never start there (its future is pending again, or cancelled by its
  // user); false: it had started.
  virtual bool revoke(TaskId task, WorkerId w) = 0;

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
  std::uint64_t revoked = 0;       // sent tasks taken back unstarted (moved, cancelled, or their worker died)
  std::uint64_t stolen = 0;        // of those, moved to an idle worker
  std::uint64_t skipped = 0;       // sent tasks a worker skipped: their user cancelled them first
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
  // The driver cannot go on: the pool breaks (every task resolves broken,
  // every worker is killed). A no-op once broken.
  void supervisor_failed(Nanos now);
  // The worker won `task`'s start slot and is running it. Returns false if
  // the worker could not have said that (not the first task it holds that
  // was not yet answered): it is faulty and the machine has asked to kill it.
  bool started(WorkerId w, TaskId task, Nanos now);
  // The worker lost `task`'s start slot and dropped the frame (its user
  // cancelled it, or the machine took it back). False as for started().
  bool skipped(WorkerId w, TaskId task, Nanos now);
  // The worker reported the outcome of `task` (which implies it started).
  // Returns false as for started().
  bool result(WorkerId w, TaskId task, Nanos now);
  void worker_exited(WorkerId w, int exit_code, Nanos now);
  void tick(Nanos now);
  // RejectPolicy::discard_oldest: the oldest queued task is cancelled (if any).
  void discard_oldest(Nanos now);
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
  // Whether `task`, held by `w`, is known to have started.
  bool known_started(WorkerId w, TaskId task) const;
  // How many tasks a worker is sent ahead now (1 + the adaptive part).
  unsigned depth_now() const;
  Nanos mean_run() const { return mean_; }
  unsigned active_workers() const;  // starting or ready
  unsigned live_workers() const;    // not exited
  unsigned ready_workers() const;   // ready for tasks (initializer done)
  WorkerState state_of(WorkerId w) const;
  unsigned sent_to(WorkerId w) const;
  const MachineCounters& counters() const { return c_; }
  const MachineConfig& config() const { return cfg_; }

  // Appends a canonical encoding of every field a later decision reads, for
  // the exhaustive explorer's visited set (models/process_pool/
  // machine_explore.cpp). Left out: the counters and the broken_* details,
  // which no decision reads; a time no decision will read (the start time of
  // a task not known to have started, the mean without `pipeline`); a sent
  // count beyond max_tasks_per_child; worker ids (workers are written in spawn
  // order, and no decision reads an id beyond comparing it), so two machines
  // with equal encodings act alike, up to that renaming, on every sequence of
  // events. Not used by the pool itself.
  void encode_state(std::string& out) const;

 private:
  struct Task {
    TaskId id;
    Nanos timeout;
    unsigned lost = 0;     // times it had started on a worker that died
    bool started = false;  // known to have started on the worker that holds it
    bool noticed = false;  // started, and its start time is the worker's notice
    Nanos started_at{0};   // when the machine learned it started
  };
  struct Worker {
    WorkerId id;
    WorkerState state = WorkerState::starting;
    std::vector<Task> in_flight;  // in the order sent; at most depth long
    std::vector<TaskId> stale;    // taken back; the worker has not skipped their frames yet
    unsigned sent = 0;
    TaskId timed_out = 0;         // resolved as timed out: its late answer is ignored
    int signal = 0;               // the last signal the machine sent it (0: none)
    bool counts_restart = false;  // spawned to replace an unplanned death
  };

  Worker* find(WorkerId w);
  const Worker* find(WorkerId w) const;
  void spawn(bool replacement, Nanos now);
  bool spawn_useful() const;
  void fill(Nanos now);
  void dispatch(Nanos now);
  void send_queued(Nanos now);
  void balance(Nanos now);
  bool revoke(Worker& w, Task& t, Nanos now);
  bool faulty(Worker& w, Nanos now);
  Worker* pick(const Task& t, Nanos now);
  void refill_workers(Nanos now);
  void close_idle();
  void resolve(TaskId t, Outcome o, WorkerId w = 0, int code = 0);
  void kill(Worker& w, int signal);
  void break_pool(BrokenReason why, WorkerId w, int code);
  void requeue_front(std::vector<Task>& tasks);
  void check_terminated();
  void emit(Action a) { out_.push_back(a); }

  MachineConfig cfg_;
  StartGate& gate_;
  Phase phase_ = Phase::running;
  bool terminating_ = false;          // terminate(): no retries, no spawns
  Nanos escalate_at_ = Nanos::max();  // terminate's SIGKILL to the workers still alive (terminate_grace)
  bool terminated_ = false;
  BrokenReason broken_reason_ = BrokenReason::none;
  WorkerId broken_worker_ = 0;
  int broken_code_ = 0;
  std::deque<Task> queue_;
  std::vector<Worker> workers_;  // exited ones are erased
  std::vector<Nanos> restarts_;  // times of recent unplanned replacements; at most restart_limit
  WorkerId next_worker_ = 1;
  Nanos mean_{0};  // moving mean of measured run times (notice to answer); 0: none yet
  std::vector<Action> out_;
  MachineCounters c_;
};

}  // namespace keel::pool
