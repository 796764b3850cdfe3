// Relacy models of keel::Future, keel::Promise, wait() and as_completed():
// the real code, through the shim.
//
// KEEL-TWIN future_cancel_blind_store future.cancel-vs-start.2t
// KEEL-TWIN future_start_blind_store future.cancel-vs-start.2t
// KEEL-TWIN future_finish_drops_flags future.result-wait.2t
// KEEL-TWIN multiwait_push_skips_signal future.wait-any.3t
// KEEL-TWIN multiwait_push_relaxed future.wait-any.3t
// KEEL-TWIN future_cancel_ignores_slot future.remote-cancel-vs-start.2t
// KEEL-TWIN future_remove_hook_unlocked future.wait-any.3t
// KEEL-TWIN future_release_without_acquire future.handles-dropped-on-two-threads.2t
// KEEL-TWIN future_done_relaxed future.done-publishes.2t
// KEEL-TWIN future_phase_relaxed future.cancelled-publishes.2t
// KEEL-TWIN future_move_phase_relaxed future.remote-cancelled-publishes.2t
// KEEL-TWIN future_wait_relaxed future.wait-publishes.2t
// KEEL-TWIN future_wake_one_waiter future.result-two-waiters.3t
// KEEL-TWIN future_add_hook_relaxed future.callback-publishes.2t
// KEEL-TWIN multiwait_clear_by_store future.as-completed-two-pushes.3t
// KEEL-TWIN multiwait_signal_relaxed future.as-completed-two-pushes.3t
// KEEL-TWIN future_observed_blind future.error-retrieved-by-two.2t
#include <optional>

#include "executor_unity.hpp"
#include "harness.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/platform/var.hpp"

namespace {

// EXEC-2: cancel() races the start of the work. Exactly one wins: either the
// work starts (and cancel returns false) or cancel returns true (and the work
// never starts); the future ends finished or cancelled accordingly.
struct CancelVsStart : rl::test_suite<CancelVsStart, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  rl::atomic<int> started{0};
  rl::atomic<int> cancelled{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      if (p.set_running_or_notify_cancel()) {
        started($).store(1, rl::mo_relaxed);
        p.set_result(1);
      }
    } else if (f.cancel()) {
      cancelled($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    const int s = started($).load(rl::mo_relaxed);
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(s + c == 1);
    RL_ASSERT(f.done());
    RL_ASSERT(f.cancelled() == (c == 1));
  }
};

// The completer of the publication rows: thread 0 writes `payload`, then
// sets the result; thread 1 runs the row's observe().
template <class Row>
struct PublishRow : rl::test_suite<Row, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::platform::Var<int> payload;
  void thread(unsigned idx) {
    if (idx == 0) {
      payload.store(1);
      p.set_result(5);
    } else {
      static_cast<Row*>(this)->observe();
    }
  }
};

// EXEC-1, SYNC-2: a waiter blocked in result() is woken by completion (a lost
// wake-up is a deadlock here) and sees what the producer wrote before it.
struct ResultWait : PublishRow<ResultWait> {
  void observe() {
    RL_ASSERT(f.result() == 5);
    RL_ASSERT(payload.load() == 1);
  }
};

// EXEC-1: two completions race; exactly one takes effect, the other gets
// InvalidStateError, and the stored value is the winner's.
struct SetTwice : rl::test_suite<SetTwice, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  rl::atomic<int> wins{0};
  rl::atomic<int> winner{0};
  void thread(unsigned idx) {
    try {
      p.set_result(static_cast<int>(idx) + 10);
      wins($).fetch_add(1, rl::mo_relaxed);
      winner($).store(static_cast<int>(idx) + 10, rl::mo_relaxed);
    } catch (const keel::InvalidStateError&) {
    }
  }
  void after() {
    RL_ASSERT(wins($).load(rl::mo_relaxed) == 1);
    RL_ASSERT(f.result() == winner($).load(rl::mo_relaxed));
  }
};

// EXEC-7: add_done_callback races completion. The callback runs exactly once
// (in the completer or in the registrar) and sees the result.
struct CallbackVsComplete : rl::test_suite<CallbackVsComplete, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  rl::atomic<int> calls{0};
  void thread(unsigned idx) {
    if (idx == 0) {
      p.set_result(3);
    } else {
      f.add_done_callback([this](const keel::Future<int>& g) {
        RL_ASSERT(g.result() == 3);
        calls($).fetch_add(1, rl::mo_relaxed);
      });
    }
  }
  void after() { RL_ASSERT(calls($).load(rl::mo_relaxed) == 1); }
};

// The waiter rows over two futures: threads 0 and 1 complete one each (1
// and 2), thread 2 runs the row's wait_for_both().
template <class Row>
struct TwoCompleters : rl::test_suite<Row, 3> {
  keel::Promise<int> a;
  keel::Promise<int> b;
  std::vector<keel::Future<int>> fs{a.get_future(), b.get_future()};
  void thread(unsigned idx) {
    if (idx == 0) {
      a.set_result(1);
    } else if (idx == 1) {
      b.set_result(2);
    } else {
      static_cast<Row*>(this)->wait_for_both();
    }
  }
};

// EXEC-7, SYNC-2: wait(first_completed) and as_completed register hooks on
// two futures completed by two other threads; the waiter is never left asleep,
// wait returns at least one done future, as_completed yields each exactly once.
struct WaitAny : TwoCompleters<WaitAny> {
  void wait_for_both() {
    auto r = keel::wait(fs, keel::ReturnWhen::first_completed);
    RL_ASSERT(!r.done.empty());
    RL_ASSERT(r.done.size() + r.not_done.size() == 2);
    int sum = 0;
    int n = 0;
    for (const auto& f : keel::as_completed(fs)) {
      sum += f.result();
      ++n;
    }
    RL_ASSERT(n == 2 && sum == 3);
  }
};

// EXEC-7, SYNC-2: as_completed() alone over the two futures. Its waiter
// takes the first, then must not sleep through the second: a completion that
// lands while the waiter clears a consumed signal is still seen (a lost
// wake-up is a deadlock here).
struct AsCompletedTwoPushes : TwoCompleters<AsCompletedTwoPushes> {
  void wait_for_both() {
    int sum = 0;
    for (const auto& f : keel::as_completed(fs)) sum += f.result();
    RL_ASSERT(sum == 3);
  }
};

// EXEC-7, SYNC-2: wait() for every future, untimed, while another thread
// completes them: the waiter must be told of each (a future it forgot to
// watch is a deadlock here, where a timed wait would only return late).
struct WaitAll : rl::test_suite<WaitAll, 2> {
  keel::Promise<int> a;
  keel::Promise<int> b;
  std::vector<keel::Future<int>> fs{a.get_future(), b.get_future()};
  void thread(unsigned idx) {
    if (idx == 0) {
      a.set_result(1);
      b.set_result(2);
    } else {
      const auto r = keel::wait(fs);
      RL_ASSERT(r.done.size() == 2 && r.not_done.empty());
    }
  }
};

// EXEC-1: cancel() races a waiter with a timeout: the waiter either times out
// (TimeoutError) or sees CancelledError; it never hangs or sees a value.
struct CancelWakesWaiter : rl::test_suite<CancelWakesWaiter, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  void thread(unsigned idx) {
    if (idx == 0) {
      RL_ASSERT(f.cancel());
    } else {
      try {
        (void)f.result();
        RL_ASSERT(false);
      } catch (const keel::CancelledError&) {
      }
    }
  }
};

}  // namespace

// POOL-7: a task dispatched to another process starts there only by moving its
// start slot from sent to started; cancel() here wins only by moving it to
// dead first. The worker side is played by a thread doing exactly what the
// worker loop does (one CAS), then what the supervisor does on its notice
// (undispatch, complete) or on its skipped notice (undispatch). Exactly one
// of cancel and start wins; a cancelled task never runs.
constexpr std::uint64_t kSent = (7u << 2) | 1u;
constexpr std::uint64_t kStarted = (7u << 2) | 2u;
constexpr std::uint64_t kDead = (7u << 2) | 3u;

struct RemoteCancelVsStart : rl::test_suite<RemoteCancelVsStart, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::platform::Atomic<std::uint64_t> slot{kSent};
  rl::atomic<int> ran{0};
  rl::atomic<int> cancelled{0};
  void before() { RL_ASSERT(keel::detail::state_of(f)->dispatch({&slot, kSent, kDead})); }
  void thread(unsigned idx) {
    if (idx == 0) {
      std::uint64_t seen = kSent;
      if (slot.compare_exchange_strong(seen, kStarted, std::memory_order_acq_rel, std::memory_order_acquire)) {
        ran($).store(1, rl::mo_relaxed);
        RL_ASSERT(keel::detail::state_of(f)->undispatch());  // the start notice
        p.set_result(1);
      } else {
        RL_ASSERT(!keel::detail::state_of(f)->undispatch());  // the skipped notice
      }
    } else if (f.cancel()) {
      cancelled($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    const int r = ran($).load(rl::mo_relaxed);
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(r + c == 1);
    RL_ASSERT(f.done());
    RL_ASSERT(f.cancelled() == (c == 1));
  }
};

// POOL-7: the supervisor takes a dispatched task back (a steal or a death:
// slot to dead, undispatch) and sends it again on a second slot, which the
// worker then starts, while the user cancels. cancel() must follow the
// future to its new slot: it wins there or loses to that start, never
// answers from the old one.
struct RemoteCancelVsRedispatch : rl::test_suite<RemoteCancelVsRedispatch, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::platform::Atomic<std::uint64_t> slot1{kSent};
  keel::platform::Atomic<std::uint64_t> slot2{0};
  rl::atomic<int> ran{0};
  rl::atomic<int> cancelled{0};
  void before() { RL_ASSERT(keel::detail::state_of(f)->dispatch({&slot1, kSent, kDead})); }
  void thread(unsigned idx) {
    auto* core = keel::detail::state_of(f);
    if (idx == 0) {
      std::uint64_t seen = kSent;
      // The supervisor: revoke from the first worker.
      if (!slot1.compare_exchange_strong(seen, kDead, std::memory_order_acq_rel, std::memory_order_acquire)) {
        RL_ASSERT(seen == kDead);  // only the user can have killed it
      }
      RL_ASSERT(!core->undispatch());
      // Sent again, unless the user cancelled it meanwhile.
      slot2.store(kSent, std::memory_order_release);
      if (!core->dispatch({&slot2, kSent, kDead})) return;
      seen = kSent;
      if (slot2.compare_exchange_strong(seen, kStarted, std::memory_order_acq_rel, std::memory_order_acquire)) {
        ran($).store(1, rl::mo_relaxed);
        RL_ASSERT(core->undispatch());
        p.set_result(2);
      } else {
        RL_ASSERT(!core->undispatch());
      }
    } else if (f.cancel()) {
      cancelled($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    const int r = ran($).load(rl::mo_relaxed);
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(r + c == 1);
    RL_ASSERT(f.done());
  }
};

// EXEC-9: the state is freed once, by whichever handle goes last, and only
// after every other thread's use of it: the promise's thread stores the value
// and drops its handle while the future's thread drops its own. The last
// release() destroys the value (a write, through its race mark), so a release
// that does not order after the other thread's is a data race here.
struct HandlesDroppedOnTwoThreads : rl::test_suite<HandlesDroppedOnTwoThreads, 2> {
  std::optional<keel::Promise<int>> p{std::in_place};
  std::optional<keel::Future<int>> f{p->get_future()};
  void thread(unsigned idx) {
    if (idx == 0) {
      p->set_result(5);
      p.reset();
    } else {
      if (f->done()) RL_ASSERT(f->result() == 5);
      f.reset();
    }
  }
};

// EXEC-9: done() returning true publishes what the completing thread wrote
// before it, without a call to result() (a caller that polls done() and then
// reads shared data the task filled in).
struct DonePublishes : PublishRow<DonePublishes> {
  void observe() {
    if (f.done()) RL_ASSERT(payload.load() == 1);
  }
};

// EXEC-9: cancelled() returning true publishes what the cancelling thread
// wrote before cancel().
struct CancelledPublishes : rl::test_suite<CancelledPublishes, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::Future<int> g = f;
  keel::platform::Var<int> payload;
  void thread(unsigned idx) {
    if (idx == 0) {
      payload.store(1);
      RL_ASSERT(f.cancel());
    } else if (g.cancelled()) {
      RL_ASSERT(payload.load() == 1);
    }
  }
};

// EXEC-9: a wait that returns true publishes what the completing thread
// wrote, to a caller that reads no result. The timed form covers both ways
// out of the wait: woken, and a timeout (which the model may take at any
// point) that finds the future final after all.
struct WaitPublishes : PublishRow<WaitPublishes> {
  void observe() {
    if (f.wait_for(std::chrono::hours(1))) RL_ASSERT(payload.load() == 1);
  }
};

// EXEC-9, POOL-7: a future sent to a worker and cancelled there before it
// started (its slot killed) publishes what the canceller wrote, as a local
// cancel does.
struct RemoteCancelledPublishes : rl::test_suite<RemoteCancelledPublishes, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::Future<int> g = f;
  keel::platform::Atomic<std::uint64_t> slot{kSent};
  keel::platform::Var<int> payload;
  void before() { RL_ASSERT(keel::detail::state_of(f)->dispatch({&slot, kSent, kDead})); }
  void thread(unsigned idx) {
    if (idx == 0) {
      payload.store(1);
      RL_ASSERT(f.cancel());
    } else if (g.cancelled()) {
      RL_ASSERT(payload.load() == 1);
    }
  }
};

// EXEC-1, SYNC-2: completion wakes every thread blocked on the future, not
// one of them (a lost wake-up is a deadlock here).
struct ResultTwoWaiters : rl::test_suite<ResultTwoWaiters, 3> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  void thread(unsigned idx) {
    if (idx == 0) {
      p.set_result(5);
    } else {
      RL_ASSERT(f.result() == 5);
    }
  }
};

// EXEC-7, EXEC-9: a callback added to a future that is already final runs
// at once in the adding thread, and sees what the completer wrote before it.
struct CallbackPublishes : PublishRow<CallbackPublishes> {
  void observe() {
    f.add_done_callback([this](const keel::Future<int>&) { RL_ASSERT(payload.load() == 1); });
  }
};

// EXEC-1: retrieving a stored error marks it observed (so it is not reported
// as unobserved) with a read-modify-write of the state word that the phase
// and the waiter bits share. Two threads retrieve it at once, one of them
// while the error is being stored: both get it, and the future stays
// finished with its error, whoever retrieved first.
struct ErrorRetrievedByTwo : rl::test_suite<ErrorRetrievedByTwo, 2> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  void thread(unsigned idx) {
    if (idx == 0) {
      p.set_exception(std::make_exception_ptr(keel::ValueError("boom")));
      RL_ASSERT(f.exception() != nullptr);
    } else {
      RL_ASSERT(f.exception() != nullptr);  // waits for the error
    }
  }
  void after() {
    RL_ASSERT(f.done());
    RL_ASSERT(!f.cancelled());
    RL_ASSERT(f.exception() != nullptr);
  }
};

int main() {
  using namespace keel::model;
  check<CancelVsStart>("future.cancel-vs-start.2t", "EXEC-1,EXEC-2", full());
  check<ResultWait>("future.result-wait.2t", "EXEC-1,SYNC-2", full());
  check<SetTwice>("future.set-twice.2t", "EXEC-1", full());
  check<CallbackVsComplete>("future.callback-vs-complete.2t", "EXEC-7", full());
  check<CancelWakesWaiter>("future.cancel-wakes-waiter.2t", "EXEC-1,SYNC-2", full());
  check<HandlesDroppedOnTwoThreads>("future.handles-dropped-on-two-threads.2t", "EXEC-9", full());
  check<DonePublishes>("future.done-publishes.2t", "EXEC-9", full());
  check<CancelledPublishes>("future.cancelled-publishes.2t", "EXEC-9", full());
  check<RemoteCancelledPublishes>("future.remote-cancelled-publishes.2t", "EXEC-9,POOL-7", full());
  check<WaitPublishes>("future.wait-publishes.2t", "EXEC-9", full());
  check<CallbackPublishes>("future.callback-publishes.2t", "EXEC-7,EXEC-9", full());
  check<ErrorRetrievedByTwo>("future.error-retrieved-by-two.2t", "EXEC-1", bounded(3));
  check<ResultTwoWaiters>("future.result-two-waiters.3t", "EXEC-1,SYNC-2", random(20000));
  check<WaitAny>("future.wait-any.3t", "EXEC-7,SYNC-2", random(20000));
  check<WaitAll>("future.wait-all.2t", "EXEC-7,SYNC-2", random(20000));
  check<AsCompletedTwoPushes>("future.as-completed-two-pushes.3t", "EXEC-7,SYNC-2", random(100000));
  // Full search does not end for these two (the hook lock adds many
  // scheduling points); bound 4 does in seconds.
  check<RemoteCancelVsStart>("future.remote-cancel-vs-start.2t", "POOL-7", bounded(4));
  check<RemoteCancelVsRedispatch>("future.remote-cancel-vs-redispatch.2t", "POOL-7", random(100000));
  // make verify-deep: the rows that run random or bounded search above, deeper.
  // CancelVsStart runs the same full search as make verify: its twin needs a
  // deep row to be caught in the deep table too.
  deep_check<CancelVsStart>("future.cancel-vs-start.2t", "EXEC-1,EXEC-2", full());
  deep_check<ErrorRetrievedByTwo>("future.error-retrieved-by-two.2t", "EXEC-1", full());
  // The publication rows are full searches already; the deep run repeats
  // them so that every twin is judged under the deep search as well.
  deep_check<HandlesDroppedOnTwoThreads>("future.handles-dropped-on-two-threads.2t", "EXEC-9", full());
  deep_check<DonePublishes>("future.done-publishes.2t", "EXEC-9", full());
  deep_check<CancelledPublishes>("future.cancelled-publishes.2t", "EXEC-9", full());
  deep_check<RemoteCancelledPublishes>("future.remote-cancelled-publishes.2t", "EXEC-9,POOL-7", full());
  deep_check<WaitPublishes>("future.wait-publishes.2t", "EXEC-9", full());
  deep_check<CallbackPublishes>("future.callback-publishes.2t", "EXEC-7,EXEC-9", full());
  deep_check<ResultTwoWaiters>("future.result-two-waiters.3t", "EXEC-1,SYNC-2", random(1000000));
  deep_check<WaitAny>("future.wait-any.3t", "EXEC-7,SYNC-2", random(1000000));
  deep_check<RemoteCancelVsRedispatch>("future.remote-cancel-vs-redispatch.2t", "POOL-7", random(1000000));
  deep_check<RemoteCancelVsStart>("future.remote-cancel-vs-start.2t", "POOL-7", bounded(5));
  deep_check<RemoteCancelVsRedispatch>("future.remote-cancel-vs-redispatch.2t", "POOL-7", bounded(2));
  return exit_code();
}
