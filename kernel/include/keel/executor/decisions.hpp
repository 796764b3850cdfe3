// keel::detail::decide_admission and decide_worker_step: the thread pool's
// two decisions, as pure functions of what the pool's lock guards (no lock,
// no clock, no allocation), so they can be checked exhaustively on their own;
// ThreadPoolCore reads the view under its lock and carries the answer out.
//
// Contract, admission (a submission, in this order; Java's execute() rules
// with Python's idle hand-off first):
//   broken pool               -> refuse_broken (BrokenThreadPool)
//   shut down                 -> refuse_shutdown (RejectedError(shutdown))
//   an idle worker            -> hand_to_idle
//   fewer than core alive     -> start_core, unless that start just failed
//   queue not full            -> queue, or queue_and_start when no worker is
//                                alive (a queued task always has a worker)
//   fewer than max alive      -> start_extra, unless that start just failed
//   no worker alive           -> refuse_no_thread
//   saturated                 -> by policy: abort -> refuse_saturated;
//                                block -> wait_for_room, then refuse_timed_out
//                                once the wait timed out; discard_oldest,
//                                caller_runs, discard.
// A handoff queue is always full. A failed thread start sends the submission
// on down the list, as a start refused by the thread factory does in Java.
//
// Contract, a worker between tasks (Java's getTask()):
//   shutdown_now or broken    -> retire
//   more than max alive       -> retire (resized down; the others stay)
//   a task queued             -> take_task
//   shut down                 -> retire (the queue is drained)
//   timed wait and the keep-alive already passed -> retire
//   otherwise                 -> wait (timed while above core or with core
//                                timeout allowed)
//
// Invariants: EXEC-5 (a queued task always has a live worker), EXEC-3 (a
// refused submission is an error or a cancelled future), EXEC-6 (never more
// than max_threads workers).
#pragma once

#include <cstddef>

#include "keel/executor/reject_policy.hpp"

namespace keel::detail {

// What a submission meets, read under the pool's lock.
struct AdmitView {
  bool broken = false;
  bool shut_down = false;  // shutdown() or shutdown_now() was called
  std::size_t live = 0;    // live workers
  std::size_t idle = 0;    // of them, waiting for work
  std::size_t core = 0;
  std::size_t max = 0;
  bool queue_full = false;  // always for a handoff queue
  RejectPolicy policy = RejectPolicy::abort;
  bool block_expired = false;       // block: the wait for room timed out
  bool core_start_failed = false;   // this look, start_core was tried and failed
  bool extra_start_failed = false;  // this look, start_extra was tried and failed
};

enum class Admit {
  refuse_broken,
  refuse_shutdown,
  hand_to_idle,
  start_core,
  queue,
  queue_and_start,
  start_extra,
  refuse_no_thread,
  wait_for_room,
  refuse_timed_out,
  refuse_saturated,
  discard_oldest,
  run_in_caller,
  discard_new,
};

Admit decide_admission(const AdmitView& v);

// What a worker between tasks meets, read under the pool's lock.
struct WorkerView {
  bool stopping = false;  // shutdown_now() was called
  bool broken = false;
  bool shut_down = false;  // shutdown() or shutdown_now() was called
  std::size_t live = 0;    // live workers, this one included
  std::size_t core = 0;
  std::size_t max = 0;
  bool core_timeout = false;  // allow_core_timeout
  bool queue_empty = true;
  bool idle_expired = false;  // its last idle wait ended by the keep-alive
};

enum class WorkerStep { retire, take_task, wait, wait_timed };

WorkerStep decide_worker_step(const WorkerView& v);

}  // namespace keel::detail
