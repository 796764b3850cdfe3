// Relacy models of continuations and combinators: the shipped then(),
// when_all() and when_any() (keel/future/then.hpp, when.hpp) over real
// Promise/Future states, through the shim.
//
// KEEL-TWIN then_lost_when_done cont.then-vs-complete.2t
// KEEL-TWIN then_ignores_cancel cont.cancel-vs-complete.2t
// KEEL-TWIN then_drops_refusal cont.then-refused.2t
// KEEL-TWIN then_ignores_task_drop cont.then-run-vs-drop.2t
// KEEL-TWIN when_any_check_then_finish cont.when-any-two-completers.3t
// KEEL-TWIN when_all_count_split cont.when-all-publishes.3t
// KEEL-TWIN when_all_count_relaxed cont.when-all-publishes.3t
#include <functional>
#include <tuple>

#include "executor_unity.hpp"
#include "harness.hpp"
#include "keel/future/future.hpp"
#include "keel/future/then.hpp"
#include "keel/future/when.hpp"
#include "keel/platform/var.hpp"

namespace {

// CONT-1, EXEC-9: thread 0 chains a continuation while thread 1 completes
// the source, in any order (the hook linked before the completion, or the
// source already final when then() looks): the continuation runs exactly
// once, sees the value and what the completer wrote before it, and its
// future finishes with its result.
struct ThenVsComplete : rl::test_suite<ThenVsComplete, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::Future<int> g;
  keel::platform::Var<int> payload{0};
  keel::platform::Var<int> runs{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      g = f.then([this](int v) {
        RL_ASSERT(payload.load() == 1);
        runs.store(runs.load() + 1);
        return v + 1;
      });
    } else {
      payload.store(1);
      p.set_result(5);
    }
  }
  void after() {
    RL_ASSERT(runs.load() == 1);
    RL_ASSERT(g.done());
    RL_ASSERT(g.result() == 6);
  }
};

// CONT-1: cancelling the continuation's future (thread 0) races the
// completion of the source (thread 1), which runs the continuation. Exactly
// one wins: the continuation runs and cancel() returned false, or cancel()
// returned true and it never runs; its future ends final either way.
struct CancelVsComplete : rl::test_suite<CancelVsComplete, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::Future<int> g;
  keel::platform::Var<int> runs{0};
  rl::atomic<int> cancelled{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      g = f.then([this](int v) {
        runs.store(runs.load() + 1);
        return v;
      });
      if (g.cancel()) cancelled($).store(1, rl::mo_relaxed);
    } else {
      p.set_result(5);
    }
  }
  void after() {
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(runs.load() + c == 1);
    RL_ASSERT(g.done());
    RL_ASSERT(g.cancelled() == (c == 1));
  }
};

// An executor that refuses every submission, as a shut-down pool does.
struct RefusingExecutor {
  template <class F>
  keel::Future<void> submit(F&&) {
    throw keel::RejectedError(keel::RejectedError::Reason::shutdown, "model executor refuses");
  }
};

// CONT-1: a continuation for an executor that refuses it is not lost: its
// future fails with the executor's error, whichever thread (the chaining
// one, finding the source done, or the completer) submits it; fn never runs.
struct ThenRefused : rl::test_suite<ThenRefused, 2> {
  RefusingExecutor ex;
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::Future<int> g;
  keel::platform::Var<int> runs{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      g = f.then(ex, [this](int v) {
        runs.store(runs.load() + 1);
        return v;
      });
    } else {
      p.set_result(5);
    }
  }
  void after() {
    RL_ASSERT(runs.load() == 0);
    RL_ASSERT(g.done());
    bool rejected = false;
    try {
      (void)g.result();
    } catch (const keel::RejectedError&) {
      rejected = true;
    }
    RL_ASSERT(rejected);
  }
};

// An executor that takes one task and either runs it (run(), as a worker
// that won its start) or drops it unrun (drop(), as shutdown with
// cancel_futures does): its task future's start decides, as a pool's does.
struct OneTaskExecutor {
  keel::Promise<void> task;
  std::function<void()> fn;
  rl::atomic<int> submitted{0};
  template <class F>
  keel::Future<void> submit(F&& f) {
    fn = std::forward<F>(f);
    submitted($).store(1, rl::mo_release);
    return task.get_future();
  }
  // A worker: waits for the submission, then starts the task unless it was dropped.
  void run() {
    while (submitted($).load(rl::mo_acquire) == 0) rl::yield(1, $);
    if (!task.set_running_or_notify_cancel()) return;
    fn();
    task.set_result();
  }
  void drop() {
    if (submitted($).load(rl::mo_acquire) == 1) task.get_future().cancel();
  }
};

// CONT-1: an accepted continuation that its executor runs (thread 1) or
// drops unrun (thread 0) at the same time: exactly one happens, and the
// continuation's future ends finished (it ran once) or cancelled (it never
// ran), never left pending.
struct ThenRunVsDrop : rl::test_suite<ThenRunVsDrop, 2> {
  OneTaskExecutor ex;
  keel::Promise<int> p;
  keel::Future<int> g;
  keel::platform::Var<int> runs{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      p.set_result(5);
      g = p.get_future().then(ex, [this](int v) {
        runs.store(runs.load() + 1);
        return v;
      });
      ex.drop();
    } else {
      ex.run();
    }
  }
  void after() {
    RL_ASSERT(g.done());
    RL_ASSERT(g.cancelled() ? runs.load() == 0 : runs.load() == 1 && g.result() == 5);
  }
};

// Thread 0 combines two futures and waits for the combination; threads 1
// and 2 complete one input each, racing each other and the registration.
template <class Row>
struct TwoInputs : rl::test_suite<Row, 3> {
  keel::Promise<int> pa;
  keel::Promise<long> pb;
  keel::Future<int> fa = pa.get_future();
  keel::Future<long> fb = pb.get_future();
  void thread(unsigned idx) {
    if (idx == 0) {
      static_cast<Row*>(this)->combine();
    } else if (idx == 1) {
      pa.set_result(1);
    } else {
      pb.set_result(2);
    }
  }
};

// CONT-2: when_any with two completers finishes exactly once (two finishes
// would write its result twice: a data race), with the index of an input
// that is final.
struct WhenAnyTwoCompleters : TwoInputs<WhenAnyTwoCompleters> {
  void combine() {
    auto w = keel::when_any(fa, fb);
    const auto& r = w.result();
    RL_ASSERT(r.index == 0 || r.index == 1);
    RL_ASSERT(r.index == 0 ? std::get<0>(r.futures).done() : std::get<1>(r.futures).done());
  }
};

// CONT-2: when_all finishes once both inputs are final, and the waiter that
// sees it done sees both inputs done (the countdown's acq_rel carries the
// first arrival's completion to the last one, which publishes it).
struct WhenAllPublishes : TwoInputs<WhenAllPublishes> {
  void combine() {
    auto w = keel::when_all(fa, fb);
    w.wait();
    const auto& t = w.result();
    RL_ASSERT(std::get<0>(t).done());
    RL_ASSERT(std::get<1>(t).done());
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<ThenVsComplete>("cont.then-vs-complete.2t", "CONT-1,EXEC-9", full());
  check<CancelVsComplete>("cont.cancel-vs-complete.2t", "CONT-1", bounded(4));
  check<ThenRefused>("cont.then-refused.2t", "CONT-1", bounded(4));
  check<ThenRunVsDrop>("cont.then-run-vs-drop.2t", "CONT-1", random(100000));
  check<WhenAnyTwoCompleters>("cont.when-any-two-completers.3t", "CONT-2", random(100000));
  check<WhenAllPublishes>("cont.when-all-publishes.3t", "CONT-2", random(100000));
  return exit_code();
}
