// keel::RejectPolicy: what a bounded executor does with a submission that
// finds its queue full (Java's RejectedExecutionHandler, as an enum).
//
// Contract: shared by ThreadPoolExecutor (thread_pool.hpp) and ProcessPool
// (process_pool.hpp), which give each value the same meaning:
//   abort          the submission throws RejectedError(Reason::saturated);
//   caller_runs    the submitting thread runs the task itself and returns its
//                  future, already final;
//   discard        the returned future is cancelled; nothing is queued;
//   discard_oldest the longest-waiting queued task is cancelled to make room
//                  and the new one is accepted;
//   block          the submitter waits for room, up to the pool's
//                  block_timeout (then RejectedError(Reason::timed_out)).
// After shutdown every submission is RejectedError(Reason::shutdown),
// whatever the policy. Either pool may be given a callable instead, Java's
// RejectedExecutionHandler (ThreadPoolOptions::rejection_handler,
// ProcessPoolOptions::rejection_handler), which is never called after
// shutdown.
//
// Invariants: EXEC-3 (a refused submission is an error or a cancelled
// future, never a silent drop), POOL-10. See proofs/INVARIANTS.md.
#pragma once

namespace keel {

/// What a submission that finds the queue full gets (the table above).
enum class RejectPolicy { abort, caller_runs, discard, discard_oldest, block };

}  // namespace keel
