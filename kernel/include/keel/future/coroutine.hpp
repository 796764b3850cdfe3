// C++20 coroutines over keel futures: `co_await` a Future<T>, resume on an
// executor, and run a coroutine (keel::Coro<T>) on a ThreadPoolExecutor.
//
// Contract:
// - `co_await fut` (any Future<T>, lvalue or rvalue) does not suspend if fut
//   is done; otherwise the coroutine resumes on the thread that completes fut
//   (or at once, in the caller, if fut completed while it was suspending). It
//   yields a copy of the value (moved out with take() for a move-only T),
//   rethrows the task's exception, and throws CancelledError if fut was
//   cancelled.
// - `co_await resume_on(ex, fut)` continues on one of ex's threads instead,
//   also when fut is already done (it always suspends). If ex refuses the
//   continuation (shut down, saturated) the coroutine resumes in the
//   completing thread (or at once) with ex's error (RejectedError,
//   BrokenThreadPool);
//   if ex accepts it and then drops it unrun (shutdown with cancel_futures, a
//   dropped shutdown_now task) it resumes there with CancelledError. Never
//   lost, never twice.
// - Coro<T> is lazy: its body starts only through spawn(ex, coro), as a task
//   of ex, and the returned Future<T> completes with what the body returned
//   or threw, after the coroutine frame was destroyed (on whichever thread
//   ran the body to its end). cancel() succeeds until the body starts (it then
//   never runs); afterwards it returns false, as for any running task. A Coro
//   destroyed without being spawned destroys its frame; a spawned one the
//   pool drops unrun (cancel_futures, a dropped shutdown_now task) leaves its
//   future cancelled.
// - Stop: request_stop() on a spawned coroutine's future sets the token
//   `co_await this_coro::stop_token` returns, and reaches a suspended
//   awaiter: a coroutine suspended in `co_await fut` (or resume_on) then
//   resumes at once, in the requesting thread (or on the resume_on executor),
//   with CancelledError; fut is cancelled if still pending and asked to stop
//   (request_stop) otherwise. A stop already requested when the coroutine
//   awaits a future that is not done gives CancelledError without waiting
//   for it. Any coroutine type may co_await a Future; the stop reaches the
//   awaits of those whose promise has keel_stop_token() (Coro's does).
//
// The handshake (ResumeOnce): await_suspend registers the future's done
// callback (and a stop callback), then tries to move the word from idle to
// suspended; each callback tries to move it to "fired" with its reason. Only
// a firer that finds `suspended` resumes the coroutine; a suspend that finds
// it fired continues inline. So the coroutine is resumed exactly once, never
// before its suspension is complete, and never lost, however the callbacks
// race it and each other.
//
// Invariants: CORO-1 (resumed exactly once, after suspension, never lost; the
// resumer sees what the suspender wrote), CORO-2 (a stop reaches a suspended
// awaiter; a spawned coroutine's frame is destroyed exactly once, before its
// future completes).
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "keel/error.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/future.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/stop.hpp"
#include "keel/platform/var.hpp"

namespace keel {

namespace detail {

// The suspension/resumption handshake of one co_await. The word is idle,
// suspended, or fired with the reason of the first firer; it never leaves a
// fired value, so the reason is stable once set.
class ResumeOnce {
 public:
  static constexpr std::int32_t idle = 0;
  static constexpr std::int32_t suspended = 1;
  // Fired reasons (the first firer's wins).
  static constexpr std::int32_t completed = 2;
  static constexpr std::int32_t stopped = 3;

  // Called once by await_suspend, after everything a resumer reads was
  // written. True: the coroutine stays suspended (a firer will resume it);
  // false: a firer came first, and the caller continues the coroutine itself.
  bool suspend() {
    std::int32_t expected = idle;
    if (KEEL_INJECTED(coro_suspend_blind_store)) {
      // The mistake: check, then store. A fire between the two finds idle
      // (so does not resume) and is overwritten: a lost resume.
      expected = state_.load(std::memory_order_acquire);
      if (expected != idle) return false;
      state_.store(suspended, std::memory_order_release);
      return true;
    }
    // Success is a release: the firer that finds `suspended` resumes the
    // coroutine and must see the handle and frame written before it.
    // Failure is an acquire: continuing inline, the coroutine must see what
    // the firer wrote before it fired.
    return state_.compare_exchange_strong(expected, suspended, std::memory_order_acq_rel, std::memory_order_acquire);
  }

  // Called by each callback that may end the wait. True: this caller won
  // while the coroutine was suspended and must resume it; false: another
  // firer won, or the suspend has not happened yet (it will see this reason
  // and continue inline). After false the caller touches nothing of the
  // await.
  bool fire(std::int32_t reason) {
    // No plain load first: the callback may be the first access of this
    // thread to the word, and only a read-modify-write is sure to read its
    // latest value (the registration that made the callback reachable may be
    // ordered by a lock the model does not see, std::stop_callback's).
    std::int32_t cur = idle;
    for (;;) {
      if (cur != idle && cur != suspended) return false;
      bool won;
      if (KEEL_INJECTED(coro_fire_relaxed)) {
        won = state_.compare_exchange_weak(cur, reason, std::memory_order_relaxed, std::memory_order_relaxed);
      } else {
        // acq_rel on success: the acquire pairs with suspend()'s release
        // (the winner reads the handle next); the release publishes this
        // firer's writes to a suspend() that fails. Relaxed on failure: the
        // loop only re-reads the word.
        won = state_.compare_exchange_weak(cur, reason, std::memory_order_acq_rel, std::memory_order_relaxed);
      }
      if (won) return cur == suspended;
    }
  }

  // The winning reason; read by the coroutine after it was resumed (or after
  // suspend() returned false), so after the firer's release.
  std::int32_t reason() const { return state_.load(std::memory_order_acquire); }

 private:
  platform::Atomic<std::int32_t> state_{idle};
};

// What one suspended co_await shares with its callbacks. The done callback
// may outlive the await (a stop resumed it first), so this is counted.
class AwaitShared {
 public:
  ResumeOnce once;
  // resume_on: the continuation task and the done callback of its future
  // race to resume; the one that takes this resumes (the task if it ran).
  platform::Atomic<bool> continuation_taken{false};

  // Written by await_suspend before suspend(); read by the winning firer.
  void set_handle(std::coroutine_handle<> h) { frame_.store(h.address()); }
  void resume() { std::coroutine_handle<>::from_address(frame_.load()).resume(); }

  // The resumer's error instead of the future's outcome (the executor
  // refused or dropped the continuation): set by the resumer before it
  // resumes, read by the coroutine after.
  void set_error(std::exception_ptr e) {
    error_mark_.written();
    error_ = std::move(e);
  }
  std::exception_ptr error() const {
    error_mark_.read();
    return error_;
  }

 private:
  platform::Var<void*> frame_{nullptr};
  std::exception_ptr error_;
  [[no_unique_address]] platform::RaceMark error_mark_;
};

inline bool take_continuation(AwaitShared& s) {
  // acq_rel: whoever takes it resumes the coroutine, after what the other
  // side (the task that ran, or the pool that dropped it) did before.
  return !s.continuation_taken.exchange(true, std::memory_order_acq_rel);
}

// The continuation handed to an executor by resume_on.
struct ResumeTask {
  std::shared_ptr<AwaitShared> s;
  void operator()() {
    if (take_continuation(*s)) s->resume();
  }
};

// Hands the suspended coroutine to `ex`, which resumes it on one of its
// threads. False: ex refused it; the error is set and the caller resumes it.
inline bool hand_to(std::shared_ptr<AwaitShared> s, ThreadPoolExecutor& ex) {
  Future<void> task;
  try {
    task = ex.submit(ResumeTask{s});
  } catch (...) {
    s->set_error(std::current_exception());
    return false;
  }
  // A task the pool accepted but never ran (cancelled at shutdown, dropped
  // by shutdown_now's caller, failed by a broken pool) must not strand the
  // coroutine: its future's final state resumes it with the reason.
  task.add_done_callback([s](const Future<void>& f) {
    if (!take_continuation(*s)) return;
    if (f.cancelled()) {
      s->set_error(std::make_exception_ptr(CancelledError("the executor dropped the coroutine's continuation")));
    } else {
      s->set_error(f.exception());
    }
    s->resume();
  });
  return true;
}

// Resumes the coroutine the winning firer found suspended: inline, or on
// `ex` (inline with ex's error when it refuses).
inline void resume_after_fire(const std::shared_ptr<AwaitShared>& s, ThreadPoolExecutor* ex) {
  if (ex == nullptr || !hand_to(s, *ex)) s->resume();
}

template <class P>
concept KeelCoroPromise = requires(const P& p) {
  { p.keel_stop_token() } -> std::same_as<platform::StopToken>;
};

// The awaiter of `co_await fut` and `co_await resume_on(ex, fut)`.
template <class T>
class FutureAwaiter {
 public:
  FutureAwaiter(Future<T> f, ThreadPoolExecutor* ex) : f_(std::move(f)), ex_(ex) {
    if (!f_.valid()) throw InvalidStateError("co_await on a future that has no state");
  }
  // Not movable (it holds a registered stop callback): operator co_await and
  // resume_on return it as a prvalue, which the coroutine keeps in place.
  FutureAwaiter(const FutureAwaiter&) = delete;
  FutureAwaiter& operator=(const FutureAwaiter&) = delete;
  ~FutureAwaiter() = default;

  // resume_on always suspends: it continues on the executor even when the
  // future is already done.
  bool await_ready() const { return ex_ == nullptr && f_.done(); }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    s_ = std::make_shared<AwaitShared>();
    s_->set_handle(h);
    // The done callback first: if registering it throws, nothing can resume
    // the coroutine behind the exception, which resumes it with that error.
    f_.add_done_callback([s = s_, ex = ex_](const Future<T>&) {
      if (s->once.fire(ResumeOnce::completed)) resume_after_fire(s, ex);
    });
    if constexpr (KeelCoroPromise<P>) {
      platform::StopToken tok = h.promise().keel_stop_token();
      if (KEEL_INJECTED(coro_await_ignores_stop)) {
        // The mistake: no stop callback; a stop cannot reach the suspended
        // coroutine, which waits for the future whatever happens.
      } else if (tok.stop_possible()) {
        // Runs at once (here) if a stop was already requested.
        stop_.emplace(std::move(tok), StopFire{s_, ex_});
      }
    }
    if (s_->once.suspend()) return true;
    // A firer came first (the future completed, or a stop was requested,
    // during the registration). resume_on still moves to the executor; the
    // coroutine may run there at once, so only copies are touched here.
    if (ex_ == nullptr) return false;
    return hand_to(s_, *ex_);
  }

  T await_resume() {
    // Waits for a stop callback still running on another thread (it lost
    // the race, and touches nothing of this awaiter after it returns).
    stop_.reset();
    if (s_) {
      if (auto e = s_->error()) std::rethrow_exception(e);
      if (s_->once.reason() == ResumeOnce::stopped) {
        f_.cancel();
        f_.request_stop();
        throw CancelledError("stop requested while the coroutine awaited a future");
      }
    }
    if constexpr (std::is_void_v<T>) {
      f_.result();
    } else if constexpr (std::is_copy_constructible_v<T>) {
      return f_.result();
    } else {
      return f_.take();
    }
  }

 private:
  struct StopFire {
    std::shared_ptr<AwaitShared> s;
    ThreadPoolExecutor* ex;
    void operator()() noexcept {
      if (s->once.fire(ResumeOnce::stopped)) resume_after_fire(s, ex);
    }
  };

  Future<T> f_;
  ThreadPoolExecutor* ex_;
  std::shared_ptr<AwaitShared> s_;  // set when the coroutine suspends
  std::optional<std::stop_callback<StopFire>> stop_;
};

template <class T>
class CoroPromise;

}  // namespace detail

/// `co_await fut`: see the contract above.
template <class T>
detail::FutureAwaiter<T> operator co_await(Future<T> f) {
  return detail::FutureAwaiter<T>(std::move(f), nullptr);
}

/// `co_await resume_on(ex, fut)`: the coroutine continues on a thread of ex.
template <class T>
detail::FutureAwaiter<T> resume_on(ThreadPoolExecutor& ex, Future<T> f) {
  return detail::FutureAwaiter<T>(std::move(f), &ex);
}

template <class T = void>
class Coro;

template <class T>
/// Runs coro as a task of ex (see the definition below).
Future<T> spawn(ThreadPoolExecutor& ex, Coro<T> coro);

/// A lazy coroutine returning T (co_return), run by spawn().
template <class T>
class Coro {
 public:
  /// The coroutine machinery's promise type.
  using promise_type = detail::CoroPromise<T>;

  /// Takes o's frame; o is left empty.
  Coro(Coro&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  /// Destroys this frame (if never spawned), then takes o's.
  Coro& operator=(Coro&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  Coro(const Coro&) = delete;
  Coro& operator=(const Coro&) = delete;
  /// Destroys a frame that was never spawned.
  ~Coro() { reset(); }

 private:
  friend class detail::CoroPromise<T>;
  friend Future<T> spawn<T>(ThreadPoolExecutor& ex, Coro<T> coro);
  explicit Coro(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  void reset() noexcept {
    if (h_) std::exchange(h_, nullptr).destroy();
  }
  std::coroutine_handle<promise_type> h_;
};

namespace this_coro {
/// The tag type of this_coro::stop_token.
struct StopTokenTag {};
/// `co_await this_coro::stop_token` in a Coro: the token request_stop() on
/// the spawned future sets.
inline constexpr StopTokenTag stop_token{};
}  // namespace this_coro

namespace detail {

struct StopTokenAwaiter {
  platform::StopToken tok;
  bool await_ready() const noexcept { return false; }
  template <class P>
  requires KeelCoroPromise<P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    tok = h.promise().keel_stop_token();
    return false;  // never suspends: only reads the promise
  }
  platform::StopToken await_resume() noexcept { return std::move(tok); }
};

}  // namespace detail

namespace this_coro {
/// Awaiting the tag yields the running Coro's stop token without suspending.
inline detail::StopTokenAwaiter operator co_await(StopTokenTag) noexcept { return {}; }
}  // namespace this_coro

namespace detail {

// Where the body's outcome waits while the frame is destroyed.
template <class T>
struct CoroOutcome {
  std::optional<T> value;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
};
template <>
struct CoroOutcome<void> {
  void return_void() noexcept {}
};

template <class T>
class CoroPromise : public CoroOutcome<T> {
 public:
  Coro<T> get_return_object() noexcept { return Coro<T>(std::coroutine_handle<CoroPromise>::from_promise(*this)); }
  std::suspend_always initial_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  // Destroys the frame first, then completes the future: a thread that sees
  // the future done sees every local of the body destroyed.
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<CoroPromise> h) noexcept {
      CoroPromise& p = h.promise();
      Promise<T> out = std::move(*p.out_);
      std::exception_ptr error = std::move(p.error_);
      if constexpr (std::is_void_v<T>) {
        h.destroy();
        if (error) {
          out.set_exception(std::move(error));
        } else {
          out.set_result();
        }
      } else {
        std::optional<T> value;
        if (!error) {
          try {
            value.emplace(std::move(*p.value));
          } catch (...) {
            error = std::current_exception();  // a throwing move of T is the outcome
          }
        }
        h.destroy();
        if (error) {
          out.set_exception(std::move(error));
        } else {
          out.set_result(std::move(*value));
        }
      }
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }

  platform::StopToken keel_stop_token() const { return stop_; }

 private:
  friend Future<T> spawn<T>(ThreadPoolExecutor& ex, Coro<T> coro);
  template <class>
  friend struct CoroStart;
  // Set by spawn() before the frame is handed to the executor.
  std::optional<Promise<T>> out_;
  platform::StopToken stop_;
  std::exception_ptr error_;
};

// The executor task that starts a spawned coroutine. Dropped unrun, it
// cancels the future (the body never started) and destroys the frame.
template <class T>
struct CoroStart {
  std::coroutine_handle<CoroPromise<T>> h;
  Future<T> f;
  CoroStart(std::coroutine_handle<CoroPromise<T>> handle, Future<T> future) noexcept
      : h(handle), f(std::move(future)) {}
  CoroStart(CoroStart&& o) noexcept : h(std::exchange(o.h, nullptr)), f(std::move(o.f)) {}
  CoroStart(const CoroStart&) = delete;
  CoroStart& operator=(const CoroStart&) = delete;
  CoroStart& operator=(CoroStart&&) = delete;
  ~CoroStart() {
    if (!h) return;
    f.cancel();
    std::exchange(h, nullptr).destroy();
  }
  void operator()() {
    auto handle = std::exchange(h, nullptr);
    // false: cancelled before it started; destroying the frame destroys its
    // Promise, which leaves the cancelled future as it is.
    if (!handle.promise().out_->set_running_or_notify_cancel()) {
      handle.destroy();
      return;
    }
    handle.resume();
  }
};

}  // namespace detail

/// Runs coro on ex: its Future completes with what the body returns or
/// throws. Throws what ex.submit throws (RejectedError, BrokenThreadPool);
/// the frame is then destroyed.
template <class T>
Future<T> spawn(ThreadPoolExecutor& ex, Coro<T> coro) {
  if (!coro.h_) throw InvalidStateError("spawn of a Coro that has no coroutine (moved from)");
  Promise<T> p;
  Future<T> f = p.get_future();
  auto& promise = coro.h_.promise();
  promise.stop_ = p.stop_token();
  promise.out_.emplace(std::move(p));
  ex.submit(detail::CoroStart<T>(std::exchange(coro.h_, nullptr), f));
  return f;
}

}  // namespace keel
