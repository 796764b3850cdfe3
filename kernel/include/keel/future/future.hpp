// keel::Future<T> and keel::Promise<T>: the result of work that finishes later
// (Python's concurrent.futures.Future, with C++ value types).
//
// Contract: a future is pending, running, cancelled or finished (with a value
// or an exception). cancel() succeeds only while pending, and returns true
// only to the call that cancelled (Python also answers True for a future that
// is already cancelled; keel does not, so "my cancel won" is unambiguous for
// exactly one caller, which EXEC-2 relies on); a running task can
// instead be asked to stop through its std::stop_token (request_stop()).
// result() and exception() block until the future is final and accept a
// timeout (TimeoutError when it passes); on a cancelled future both throw
// CancelledError. add_done_callback runs each callback exactly once, in the
// order added, in the completing thread (or at once, in the caller, if the
// future is already final); a callback that throws is reported through the
// error reporter and does not stop the others. Setting a result or exception
// on a final future is an InvalidStateError and changes nothing. Futures are
// shared handles: copies refer to one state, and every copy sees the result.
// result() returns a reference for T; take() moves the value out once.
// Whatever the completing thread wrote before completion is visible to any
// thread that observes the future done.
//
// A future whose task was sent to another process (a ProcessPool worker)
// reads as pending until the worker starts it, and cancel() succeeds until
// then; the start slot that decides it is described in detail/core.hpp,
// beside the state word's encoding.
//
// then(fn) and then_future(fn) chain a continuation (its contract, and the
// definitions, are in keel/future/then.hpp, which a caller includes).
//
// Invariants: EXEC-1 (exactly one final state), EXEC-2 (cancel racing start:
// exactly one wins), EXEC-7 (callbacks run exactly once), SYNC-2 (no lost
// wake-up of a result waiter), POOL-7 (cancel racing a remote start through
// its slot: exactly one wins), CONT-1 (a continuation runs at most once).
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "keel/error.hpp"
#include "keel/future/detail/core.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/stop.hpp"

namespace keel {

/// Where a future stands: status() of a Future.
enum class FutureStatus {
  pending,    ///< not started (or sent to a worker process that has not started it)
  running,    ///< started, not final: cancel() fails from here on
  cancelled,  ///< final: cancelled before it started
  finished,   ///< final: a value or an exception is stored
};

template <class T>
class Promise;

namespace detail {
// then() and then_future() are defined in keel/future/then.hpp (keel.hpp
// brings it): a call without it fails to compile with "use of ... before
// deduction of auto". InlineExecutor marks a continuation run inline.
struct InlineExecutor;
template <bool AsFuture, class T, class E, class F>
auto then_impl(const Future<T>& src, E* ex, F&& fn);
}  // namespace detail

/// A shared handle to the result of work that finishes later (the contract above).
template <class T>
class Future {
 public:
  /// The result type (void for work that returns nothing).
  using value_type = T;

  /// A handle with no state: valid() is false, and every other call throws InvalidStateError.
  Future() noexcept = default;
  /// Another handle to the same state.
  Future(const Future& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  /// Takes o's state; o is left without one.
  Future(Future&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  /// Refers to o's state from now on (copy or move).
  Future& operator=(Future o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  /// Drops this handle; the state lives while any handle or its producer holds it.
  ~Future() {
    if (s_) s_->release();
  }

  /// Whether this handle has a state (false when default-constructed or moved from).
  bool valid() const noexcept { return s_ != nullptr; }
  /// The phase now: pending, running, cancelled or finished.
  FutureStatus status() const { return state().status(); }
  /// Cancels a future that has not started; true only to the one call that cancelled it.
  bool cancel() { return state().cancel(); }
  /// Whether it was cancelled (then it is final).
  bool cancelled() const { return state().phase() == detail::FutureCore::cancelled; }
  /// Whether its work has started and the future is not final yet.
  bool running() const {
    const auto p = state().phase();
    return p == detail::FutureCore::running || p == detail::FutureCore::completing;
  }
  /// Whether it is final (cancelled or finished); what the completer wrote is then visible.
  bool done() const { return state().done(); }

  /// Blocks until the future is final.
  void wait() const { state().wait_until(platform::Deadline::never()); }
  /// Blocks until final or the timeout passes; returns whether it is final.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return state().wait_until(platform::Deadline::after(timeout));
  }
  /// Blocks until final or the deadline passes; returns whether it is final.
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return state().wait_until(platform::Deadline::at(deadline));
  }

  /// The value (a reference to it for non-void T), or the task's exception rethrown; CancelledError if cancelled.
  decltype(auto) result() const { return detail::result_by(state(), platform::Deadline::never()); }
  /// result(), or TimeoutError if the future is not final before the timeout passes.
  template <class Rep, class Period>
  decltype(auto) result(std::chrono::duration<Rep, Period> timeout) const {
    return detail::result_by(state(), platform::Deadline::after(timeout));
  }
  /// result(), or TimeoutError if the future is not final by the deadline.
  template <class Clock, class Duration>
  decltype(auto) result_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return detail::result_by(state(), platform::Deadline::at(deadline));
  }
  /// Moves the value out, once (a second take() or a later result() throws InvalidStateError); for move-only T.
  T take() {
    detail::await_finished(state(), platform::Deadline::never(), "take");
    detail::rethrow_error(*s_);
    return s_->take();
  }

  /// The task's exception (null if it returned normally); CancelledError if cancelled.
  std::exception_ptr exception() const { return detail::exception_by(state(), platform::Deadline::never()); }
  /// exception(), or TimeoutError if the future is not final before the timeout passes.
  template <class Rep, class Period>
  std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    return detail::exception_by(state(), platform::Deadline::after(timeout));
  }

  /// Runs fn(const Future<T>&) exactly once when the future is final (at once, here, if it already is).
  template <class F>
  void add_done_callback(F&& fn) {
    static_assert(std::is_invocable_v<std::decay_t<F>&, const Future<T>&>, "callback must accept const Future<T>&");
    detail::add_done_callback(state(), std::forward<F>(fn));
  }

  /// A future of fn(value) run in the thread that finishes this one (here, if done); keel/future/then.hpp.
  template <class F>
  auto then(F&& fn) const {
    return detail::then_impl<false>(*this, static_cast<detail::InlineExecutor*>(nullptr), std::forward<F>(fn));
  }
  /// A future of fn(value) run as a task of ex (any keel::Executor); keel/future/then.hpp.
  template <class E, class F>
  auto then(E& ex, F&& fn) const {
    return detail::then_impl<false>(*this, &ex, std::forward<F>(fn));
  }
  /// A future of fn(Future<T>) (this future, final) run in the thread that finishes it; keel/future/then.hpp.
  template <class F>
  auto then_future(F&& fn) const {
    return detail::then_impl<true>(*this, static_cast<detail::InlineExecutor*>(nullptr), std::forward<F>(fn));
  }
  /// A future of fn(Future<T>) run as a task of ex (any keel::Executor); keel/future/then.hpp.
  template <class E, class F>
  auto then_future(E& ex, F&& fn) const {
    return detail::then_impl<true>(*this, &ex, std::forward<F>(fn));
  }

  /// Asks a running task that takes a std::stop_token to stop; whether this call made the request.
  bool request_stop() { return state().request_stop(); }
  /// Whether a stop was requested (the future's state is not changed by it).
  bool stop_requested() const { return state().stop_requested(); }

  /// Whether both handles refer to the same state.
  friend bool operator==(const Future& a, const Future& b) noexcept { return a.s_ == b.s_; }

 private:
  template <class>
  friend class Promise;
  friend detail::FutureState<T>* detail::state_of<T>(const Future<T>&) noexcept;
  friend Future detail::make_future<T>(detail::FutureState<T>*, bool) noexcept;

  Future(detail::FutureState<T>* s, bool add_ref) noexcept : s_(s) {
    if (add_ref && s_) s_->add_ref();
  }
  detail::FutureState<T>& state() const {
    if (!s_) throw InvalidStateError("future has no state (default-constructed or moved from)");
    return *s_;
  }
  detail::FutureState<T>* s_ = nullptr;
};

namespace detail {
template <class T>
FutureState<T>* state_of(const Future<T>& f) noexcept {
  return f.s_;
}
template <class T>
Future<T> make_future(FutureState<T>* s, bool add_ref) noexcept {
  return Future<T>(s, add_ref);
}
}  // namespace detail

/// The producing side of a Future for work not run by a keel executor.
/// Destroying a Promise whose future is not final finishes it with
/// BrokenPromiseError, so no waiter is left hanging.
template <class T>
class Promise {
 public:
  /// A new pending state, with a stop source its workers can poll.
  Promise() : s_(new detail::FutureState<T>()) { s_->enable_stop(); }
  /// Takes o's state; o is left without one.
  Promise(Promise&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  /// Abandons this promise's state (as the destructor does), then takes o's.
  Promise& operator=(Promise&& o) noexcept {
    if (this != &o) {
      abandon();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  /// Finishes a future that is not final with BrokenPromiseError.
  ~Promise() { abandon(); }

  /// A handle to this promise's future (any number may be taken).
  Future<T> get_future() const { return Future<T>(&state(), true); }

  /// Python's set_running_or_notify_cancel: true moves pending -> running;
  /// false means the future was cancelled (the work should not run).
  /// InvalidStateError if it is already running or finished.
  bool set_running_or_notify_cancel() {
    switch (state().start()) {
      case detail::FutureCore::Start::started:
        return true;
      case detail::FutureCore::Start::was_cancelled:
        return false;
      default:
        throw InvalidStateError("set_running_or_notify_cancel on a future that is not pending");
    }
  }

  /// Finishes the future with T(a...); InvalidStateError if it is already final.
  template <class... A>
  void set_result(A&&... a) {
    claim("set_result");
    detail::complete_with(*s_, [&]() -> T {
      if constexpr (!std::is_void_v<T>) return T(std::forward<A>(a)...);
    });
  }
  /// Finishes the future with exception e (not null: ValueError); InvalidStateError if it is already final.
  void set_exception(std::exception_ptr e) {
    if (!e) throw ValueError("set_exception needs a non-null exception");
    claim("set_exception");
    s_->finish(std::move(e));
  }
  /// ValueError: a future cannot fail with a null exception.
  void set_exception(std::nullptr_t) { throw ValueError("set_exception needs a non-null exception"); }
  /// set_exception(std::make_exception_ptr(e)).
  template <class E>
  requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr> &&
           !std::is_same_v<std::decay_t<E>, std::nullptr_t>) void set_exception(E e) {
    set_exception(std::make_exception_ptr(std::move(e)));
  }

  /// The stop token a cooperative worker polls; request_stop() on any copy of
  /// the future sets it.
  platform::StopToken stop_token() { return state().stop_token(); }

 private:
  detail::FutureState<T>& state() const {
    if (!s_) throw InvalidStateError("promise has no state (moved from)");
    return *s_;
  }
  void claim(const char* what) {
    if (!state().begin_completion()) {
      throw InvalidStateError(std::string(what) + " on a future that is already " +
                              (s_->phase() == detail::FutureCore::cancelled ? "cancelled" : "finished"));
    }
  }
  void abandon() noexcept {
    if (!s_) return;
    if (s_->begin_completion()) {
      s_->finish(std::make_exception_ptr(BrokenPromiseError("promise destroyed without setting a result")));
    }
    s_->release();
    s_ = nullptr;
  }

  detail::FutureState<T>* s_;
};

}  // namespace keel
