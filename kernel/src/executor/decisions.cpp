// The thread pool's admission and worker decisions (see decisions.hpp). The
// injection points here plant their mistakes in the decision itself, so a
// twin means the same wrong choice whichever caller carries it out.
#include "keel/executor/decisions.hpp"

#include "keel/platform/inject.hpp"

namespace keel::detail {

Admit decide_admission(const AdmitView& v) {
  if (v.broken) return Admit::refuse_broken;
  if (v.shut_down && !KEEL_INJECTED(executor_submit_ignores_shutdown)) return Admit::refuse_shutdown;
  if (v.idle > 0) return Admit::hand_to_idle;
  if (v.live < v.core && !v.core_start_failed) return Admit::start_core;
  if (!v.queue_full) {
    // A queued task needs a worker to run it (EXEC-5): with none alive, one starts.
    const bool needs_worker = v.live == 0 && !KEEL_INJECTED(executor_queue_without_worker);
    return needs_worker ? Admit::queue_and_start : Admit::queue;
  }
  const bool below_max = KEEL_INJECTED(executor_max_off_by_one) ? v.live <= v.max : v.live < v.max;
  if (below_max && !v.extra_start_failed) return Admit::start_extra;
  // Saturated: the queue is full and no thread may (or could) be added.
  if (v.live == 0) return Admit::refuse_no_thread;
  switch (v.policy) {
    case RejectPolicy::block:
      return v.block_expired ? Admit::refuse_timed_out : Admit::wait_for_room;
    case RejectPolicy::discard_oldest:
      return Admit::discard_oldest;
    case RejectPolicy::caller_runs:
      return Admit::run_in_caller;
    case RejectPolicy::discard:
      return Admit::discard_new;
    case RejectPolicy::abort:
      break;
  }
  return Admit::refuse_saturated;
}

WorkerStep decide_worker_step(const WorkerView& v) {
  if (v.stopping || v.broken) return WorkerStep::retire;
  if (v.live > v.max) return WorkerStep::retire;
  if (!v.queue_empty) return WorkerStep::take_task;
  if (v.shut_down) return WorkerStep::retire;
  const bool timed = v.core_timeout || v.live > v.core;
  if (timed && v.idle_expired) return WorkerStep::retire;  // the keep-alive passed with the queue empty
  return timed ? WorkerStep::wait_timed : WorkerStep::wait;
}

}  // namespace keel::detail
