// keel::ShutdownOptions: how a pool stops, one type for every pool
// (ThreadPoolExecutor, ProcessPool, ClusterPool), with Python's
// Executor.shutdown(wait, cancel_futures) meaning.
//
// Contract: after shutdown() no submission is accepted (RejectedError with
// reason shutdown). `cancel_futures` cancels the work that has not started;
// started work runs to its end. `wait` makes the call return only once every
// accepted task has a final future and every worker has exited.
//
// Invariants: EXEC-3, EXEC-4 (thread pool), POOL-4 (process pool), CLUSTER-5.
#pragma once

namespace keel {

/// How shutdown() ends a pool.
struct ShutdownOptions {
  bool wait = true;             ///< return once every accepted task is final and every worker exited
  bool cancel_futures = false;  ///< cancel what has not started (its futures report cancelled)
};

}  // namespace keel
