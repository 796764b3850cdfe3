// Relacy models of co_await on a keel::Future: real C++20 coroutines (their
// frames go through Relacy's operator new, so a frame leaked or freed twice
// is reported) running the shipped FutureAwaiter, ResumeOnce, Promise and
// done-callback code through the shim.
//
// KEEL-TWIN coro_suspend_blind_store coro.await-vs-complete.2t
// KEEL-TWIN coro_await_ignores_stop coro.stop-reaches-suspended.2t
// KEEL-TWIN coro_fire_relaxed coro.resume-once-two-firers.3t
#include <coroutine>
#include <stop_token>

#include "executor_unity.hpp"
#include "harness.hpp"
#include "keel/future/coroutine.hpp"
#include "keel/platform/var.hpp"

namespace {

// An eager coroutine the suite owns: it starts in the thread that calls it,
// and stays suspended at its end until the suite destroys it in after(),
// where the model checks that it got there. Its stop token is the suite's,
// so a stop reaches its awaits as it reaches a spawned keel::Coro's.
struct ModelCoro {
  struct promise_type {
    const std::stop_source* stop = nullptr;
    template <class Suite>
    explicit promise_type(Suite* s) : stop(&s->stop) {}
    ModelCoro get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { RL_ASSERT(!"unexpected exception in the model's coroutine"); }
    keel::platform::StopToken keel_stop_token() const { return stop->get_token(); }
  };
  std::coroutine_handle<promise_type> h;
};

// CORO-1: thread 0 runs a coroutine that writes `written`, then awaits a
// future that thread 1 completes. Whichever order the completion and the
// suspension take (the callback running inline in add_done_callback, or
// firing on thread 1 before, during or after suspend()), the coroutine is
// resumed exactly once, reads the value, and sees `written` from the thread
// that resumes it (a resume before the suspension was published, or through
// a relaxed handshake, is a data race on it or on the handle).
struct AwaitVsComplete : rl::test_suite<AwaitVsComplete, 2> {
  std::stop_source stop{std::nostopstate};
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::platform::Var<int> written{0};
  keel::platform::Var<int> resumed{0};
  keel::platform::Var<int> got{0};
  std::coroutine_handle<ModelCoro::promise_type> h;

  static ModelCoro body(AwaitVsComplete* self) {
    self->written.store(1);
    const int v = co_await self->f;
    RL_ASSERT(self->written.load() == 1);
    self->resumed.store(self->resumed.load() + 1);
    self->got.store(v);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      h = body(this).h;
    } else {
      p.set_result(7);
    }
  }
  void after() {
    RL_ASSERT(h.done());  // a lost resume leaves it suspended in the co_await
    RL_ASSERT(resumed.load() == 1);
    RL_ASSERT(got.load() == 7);
    h.destroy();
  }
};

// CORO-2: a stop requested (thread 1) while the coroutine awaits a future
// nobody completes reaches it: it resumes with CancelledError, exactly once,
// and the awaited future, still pending, ends cancelled. Without the stop
// callback the coroutine stays suspended for ever.
struct StopReachesSuspended : rl::test_suite<StopReachesSuspended, 2> {
  std::stop_source stop;
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  keel::platform::Var<int> resumed{0};
  keel::platform::Var<int> cancelled{0};
  std::coroutine_handle<ModelCoro::promise_type> h;

  static ModelCoro body(StopReachesSuspended* self) {
    try {
      (void)co_await self->f;
    } catch (const keel::CancelledError&) {
      self->cancelled.store(1);
    }
    self->resumed.store(self->resumed.load() + 1);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      h = body(this).h;
    } else {
      stop.request_stop();
    }
  }
  void after() {
    RL_ASSERT(h.done());
    RL_ASSERT(resumed.load() == 1);
    RL_ASSERT(cancelled.load() == 1);
    RL_ASSERT(f.cancelled());
    h.destroy();
  }
};

// CORO-1, CORO-2: the handshake itself with two firers (the future's
// completion and a stop) racing the suspension: exactly one of the three
// resumes (suspend() returning false means the suspender does), the reason
// read afterwards is the winner's, and the resumer sees what the suspender
// wrote before suspending. The resume is recorded instead of run.
struct ResumeOnceTwoFirers : rl::test_suite<ResumeOnceTwoFirers, 3> {
  keel::detail::ResumeOnce once;
  keel::platform::Var<int> frame{0};
  keel::platform::Var<int> resumes{0};
  rl::atomic<int> winner{0};
  void resume(int reason) {
    RL_ASSERT(frame.load() == 1);
    resumes.store(resumes.load() + 1);
    winner($).store(reason, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      frame.store(1);
      if (!once.suspend()) resume(once.reason());
    } else {
      const int reason = idx == 1 ? keel::detail::ResumeOnce::completed : keel::detail::ResumeOnce::stopped;
      if (once.fire(reason)) resume(reason);
    }
  }
  void after() {
    RL_ASSERT(resumes.load() == 1);
    RL_ASSERT(once.reason() == winner($).load(rl::mo_relaxed));
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<AwaitVsComplete>("coro.await-vs-complete.2t", "CORO-1", bounded(3));
  check<StopReachesSuspended>("coro.stop-reaches-suspended.2t", "CORO-2", full());
  check<ResumeOnceTwoFirers>("coro.resume-once-two-firers.3t", "CORO-1,CORO-2", full());
  // make verify-deep: the same searches (each is already exhaustive), so
  // that every twin is caught in the deep table too.
  deep_check<AwaitVsComplete>("coro.await-vs-complete.2t", "CORO-1", full());
  deep_check<StopReachesSuspended>("coro.stop-reaches-suspended.2t", "CORO-2", full());
  deep_check<ResumeOnceTwoFirers>("coro.resume-once-two-firers.3t", "CORO-1,CORO-2", full());
  return exit_code();
}
