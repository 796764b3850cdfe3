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
// A task sent to another process (a ProcessPool worker) is `dispatched`: it
// reads as pending, and its start is decided by a start slot, a word the two
// processes share: the worker starts the task only by moving the slot from
// sent to started; cancel() here succeeds only by moving it from sent to dead
// first. Both happen under the hook lock on this side, and the owner takes a
// future out of dispatched (undispatch) under the same lock before it reuses
// or unmaps the slot, so a cancel never touches a slot that is not its own.
//
// The state is one futex word: bits 0-2 the phase (pending, running,
// completing, cancelled, finished, dispatched), bit 3 says a thread may sleep on the word,
// bit 4 says the hook list is not empty. The thread that moves the word to
// completing owns the result slot until it moves it to a final phase with one
// exchange, which also tells it, atomically, whether to wake sleepers and
// whether to run hooks; hooks are appended only while the phase is not final,
// under the hook lock, so none is missed and none runs twice.
//
// Invariants: EXEC-1 (exactly one final state), EXEC-2 (cancel racing start:
// exactly one wins), EXEC-7 (callbacks run exactly once), SYNC-2 (no lost
// wake-up of a result waiter), POOL-7 (cancel racing a remote start through
// its slot: exactly one wins).
#pragma once

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/stop.hpp"
#include "keel/platform/thread.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {

enum class FutureStatus { pending, running, cancelled, finished };

template <class T>
class Future;
template <class T>
class Promise;

namespace detail {

class FutureCore;

// Something to do when a future becomes final. Internal hooks (the waiters of
// wait() and as_completed()) fire under the hook lock, so their owner can
// unlink them safely at any time; user callbacks run after it is released.
class Hook {
 public:
  virtual ~Hook() = default;
  virtual bool internal() const noexcept = 0;
  virtual void fire(FutureCore& core) = 0;

 private:
  friend class FutureCore;
  // Guarded by the hook lock of the future the hook is linked to (a user
  // callback's next_ is read after it, by the completer that unlinked it).
  platform::Var<Hook*> next_{nullptr};
  platform::Var<Hook*> prev_{nullptr};
  platform::Var<bool> linked_{false};
};

class FutureCore {
 public:
  static constexpr std::int32_t pending = 0;
  static constexpr std::int32_t running = 1;
  static constexpr std::int32_t completing = 2;
  static constexpr std::int32_t cancelled = 3;
  static constexpr std::int32_t finished = 4;
  static constexpr std::int32_t dispatched = 5;
  static constexpr std::int32_t phase_mask = 7;
  static constexpr std::int32_t sleepers_bit = 8;
  static constexpr std::int32_t hooked_bit = 16;
  static constexpr bool is_final(std::int32_t word) {
    return (word & phase_mask) == cancelled || (word & phase_mask) == finished;
  }

  FutureCore() = default;
  FutureCore(const FutureCore&) = delete;
  FutureCore& operator=(const FutureCore&) = delete;
  // Destroying the error is a write to it: the last release() must order
  // after every thread's use of the state (its acq_rel), which the model
  // checks through this mark.
  virtual ~FutureCore() { error_mark_.written(); }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // acq_rel: each release publishes this thread's use of the state, and the
  // last one, which deletes it, must see all of them.
  void release() noexcept {
    std::int32_t before;
    if (KEEL_INJECTED(future_release_without_acquire)) {
      before = refs_.fetch_sub(1, std::memory_order_release);
    } else {
      before = refs_.fetch_sub(1, std::memory_order_acq_rel);
    }
    if (before == 1) delete this;
  }

  // acquire: a caller that sees a final phase (done(), cancelled()) sees what
  // the completing or cancelling thread wrote before it, as result() does.
  std::int32_t phase() const {
    return word_.load(KEEL_INJECTED(future_phase_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire) &
           phase_mask;
  }
  FutureStatus status() const;
  bool done() const {
    return is_final(
        word_.load(KEEL_INJECTED(future_done_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire));
  }

  // pending -> cancelled. False (and nothing changes) in any other phase.
  bool cancel();
  enum class Start { started, was_cancelled, not_pending };
  // pending -> running; with `owned`, pending -> completing directly: an
  // executor's task is completed only by the worker that started it, so the
  // worker takes the result slot in the same step (one atomic per start).
  Start start(bool owned = false);
  // pending or running -> completing: the caller now owns the result slot and
  // must call finish(). False when another completion won or it is final.
  bool begin_completion();
  // completing -> finished, storing `error` if not null.
  void finish(std::exception_ptr error);

  // A start slot in memory shared with the process that may start the task:
  // `sent` there means not started; the starter moves it to another value
  // (started); cancel moves it to `dead`.
  struct StartSlot {
    platform::Atomic<std::uint64_t>* word = nullptr;
    std::uint64_t sent = 0;
    std::uint64_t dead = 0;
    // The model checker prints every value a watched variable takes.
    template <class Os>
    friend Os& operator<<(Os& os, const StartSlot& s) {
      return os << s.sent;
    }
  };
  // pending (or dispatched to a slot that is dead) -> dispatched to `slot`.
  // A running future (a task sent again after its worker died) stays
  // running: true, and cancel cannot reach it. False if cancelled or final.
  bool dispatch(const StartSlot& slot);
  // dispatched -> running if its slot says started (or anything but sent or
  // dead), else -> pending (a slot still sent is moved to dead first, so the
  // task can never start there). Returns whether it started. A future that
  // is not dispatched is left alone: true if running or final but not
  // cancelled.
  bool undispatch();

  // Blocks until final or the deadline passes; returns whether final.
  bool wait_until(const platform::Deadline& deadline) const;

  // Appends a hook unless the future is final (then returns false and the
  // caller runs it). remove_hook unlinks one that has not fired; it is a
  // no-op for a fired one, and after it returns the hook is never touched.
  bool add_hook(Hook* hook);
  void remove_hook(Hook* hook);

  // The stored exception; valid once the phase is finished.
  std::exception_ptr error() const {
    error_mark_.read();
    return error_;
  }
  // Throws CancelledError or InvalidStateError unless final and finished.
  void throw_unless_finished(const char* what) const;

  // Cooperative cancellation of a running task: a real source exists only for
  // tasks that accept a std::stop_token.
  void enable_stop() { stop_ = platform::StopSource(); }
  platform::StopToken stop_token() const { return stop_.get_token(); }
  bool request_stop() { return stop_.request_stop(); }
  bool stop_requested() const { return stop_.stop_requested(); }

 protected:
  // What a completer does once its exchange made the word final.
  void after_final(std::int32_t old);
  void run_hooks();
  void unlink(Hook* hook);  // the caller holds hook_lock_
  int cancel_dispatched();
  // Moves the phase bits from `from` to `to`, keeping the flag bits; the
  // caller holds the hook lock, so only the flags can change meanwhile.
  std::int32_t move_phase(std::int32_t from, std::int32_t to);

  mutable platform::FutexWord word_{pending};
  platform::Atomic<std::int32_t> refs_{1};
  Mutex hook_lock_;
  // FutureState<T>'s value flags, kept here in the hole after the lock so the
  // typed state ends without padding and an executor task packs right after
  // it (keel/executor/task.hpp). Owned by the completer, like the value.
  bool has_value_ = false;
  bool taken_ = false;
  // A circular doubly linked list: the head's prev_ is the tail, which saves
  // the tail pointer's 8 bytes in every future and executor task.
  platform::Var<Hook*> hooks_head_{nullptr};  // guarded by hook_lock_
  std::exception_ptr error_;                  // owned by the completer, read once final
  [[no_unique_address]] platform::RaceMark error_mark_;
  [[no_unique_address]] platform::RaceMark flags_mark_;  // has_value_ and taken_
  platform::StopSource stop_ = platform::no_stop_state();
  platform::Var<StartSlot> slot_;  // guarded by hook_lock_; meaningful while dispatched
};

// The typed state: FutureCore plus the value slot.
template <class T>
class FutureState : public FutureCore {
 public:
  ~FutureState() override {
    value_mark_.written();  // as in ~FutureCore: destroying the value writes it
    this->flags_mark_.read();
    if (this->has_value_) value()->~T();
  }
  // Only the thread that won begin_completion() calls this.
  template <class... A>
  void emplace(A&&... a) {
    ::new (static_cast<void*>(slot_)) T(std::forward<A>(a)...);
    this->has_value_ = true;
    this->flags_mark_.written();
    value_mark_.written();
  }
  T& ref() {
    value_mark_.read();
    this->flags_mark_.read();
    if (this->taken_) throw InvalidStateError("future result was already taken by take()");
    return *value();
  }
  T take() {
    value_mark_.written();
    this->flags_mark_.written();
    if (this->taken_) throw InvalidStateError("future result was already taken by take()");
    this->taken_ = true;
    return std::move(*value());
  }

 private:
  T* value() { return std::launder(reinterpret_cast<T*>(slot_)); }
  // Before the slot: an empty mark there takes no byte (after it, it would
  // add one, padded to eight: it may not share FutureCore's marks' addresses).
  [[no_unique_address]] platform::RaceMark value_mark_;
  alignas(T) unsigned char slot_[sizeof(T)];
};

template <>
class FutureState<void> : public FutureCore {
 public:
  void emplace() {}
  void ref() {}
  void take() {}
};

// Completes `state` with the value of `fn()` or the exception it threw. The
// caller has won begin_completion().
template <class T, class F>
void complete_with(FutureState<T>& state, F&& fn) {
  try {
    if constexpr (std::is_void_v<T>) {
      std::forward<F>(fn)();
      state.finish(nullptr);
    } else {
      state.emplace(std::forward<F>(fn)());
      state.finish(nullptr);
    }
  } catch (...) {
    state.finish(std::current_exception());
  }
}

// The kernel's ways in and out of a Future's handle.
template <class T>
FutureState<T>* state_of(const Future<T>& f) noexcept;
template <class T>
Future<T> make_future(FutureState<T>* s, bool add_ref) noexcept;

}  // namespace detail

template <class T>
class Future {
 public:
  using value_type = T;

  Future() noexcept = default;
  Future(const Future& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  Future(Future&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Future& operator=(Future o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Future() {
    if (s_) s_->release();
  }

  bool valid() const noexcept { return s_ != nullptr; }
  FutureStatus status() const { return state().status(); }
  bool cancel() { return state().cancel(); }
  bool cancelled() const { return state().phase() == detail::FutureCore::cancelled; }
  bool running() const {
    const auto p = state().phase();
    return p == detail::FutureCore::running || p == detail::FutureCore::completing;
  }
  bool done() const { return state().done(); }

  void wait() const { state().wait_until(platform::Deadline::never()); }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return state().wait_until(platform::Deadline::after(timeout));
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return state().wait_until(platform::Deadline::at(deadline));
  }

  // The value (a reference to it for non-void T), or the task's exception
  // rethrown; CancelledError if cancelled, TimeoutError if the timeout passes.
  decltype(auto) result() const { return result_by(platform::Deadline::never()); }
  template <class Rep, class Period>
  decltype(auto) result(std::chrono::duration<Rep, Period> timeout) const {
    return result_by(platform::Deadline::after(timeout));
  }
  template <class Clock, class Duration>
  decltype(auto) result_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return result_by(platform::Deadline::at(deadline));
  }
  // Moves the value out (once: a second take() or a later result() throws
  // InvalidStateError). Needed for move-only T.
  T take() {
    await(platform::Deadline::never(), "take");
    rethrow_error();
    return state().take();
  }

  // The task's exception (null if it returned normally); CancelledError if
  // cancelled, TimeoutError if the timeout passes.
  std::exception_ptr exception() const { return exception_by(platform::Deadline::never()); }
  template <class Rep, class Period>
  std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    return exception_by(platform::Deadline::after(timeout));
  }

  // fn(const Future<T>&) runs exactly once when the future is final.
  template <class F>
  void add_done_callback(F&& fn) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn&, const Future<T>&>, "callback must accept const Future<T>&");
    struct Callback final : detail::Hook {
      explicit Callback(Fn f) : fn(std::move(f)) {}
      bool internal() const noexcept override { return false; }
      void fire(detail::FutureCore& core) override { fn(Future<T>(static_cast<detail::FutureState<T>*>(&core), true)); }
      Fn fn;
    };
    auto hook = std::make_unique<Callback>(std::forward<F>(fn));
    if (state().add_hook(hook.get())) {
      hook.release();
      return;
    }
    try {
      hook->fire(*s_);
    } catch (...) {
      report_error("done callback", std::current_exception());
    }
  }

  // Asks a running task that accepts a std::stop_token to stop. Returns
  // whether this call made the request (false if the task takes no token or
  // a stop was already requested). Does not change the future's state.
  bool request_stop() { return state().request_stop(); }
  bool stop_requested() const { return state().stop_requested(); }

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
  void await(const platform::Deadline& d, const char* what) const {
    if (!state().wait_until(d)) throw TimeoutError(std::string("future not done before the timeout (") + what + ")");
    s_->throw_unless_finished(what);
  }
  void rethrow_error() const {
    if (auto e = s_->error()) std::rethrow_exception(e);
  }
  decltype(auto) result_by(const platform::Deadline& d) const {
    await(d, "result");
    rethrow_error();
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return static_cast<const T&>(s_->ref());
    }
  }
  std::exception_ptr exception_by(const platform::Deadline& d) const {
    await(d, "exception");
    return s_->error();
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

// The producing side of a Future for work not run by a keel executor.
// Destroying a Promise whose future is not final finishes it with
// BrokenPromiseError, so no waiter is left hanging.
template <class T>
class Promise {
 public:
  Promise() : s_(new detail::FutureState<T>()) { s_->enable_stop(); }
  Promise(Promise&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Promise& operator=(Promise&& o) noexcept {
    if (this != &o) {
      abandon();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  ~Promise() { abandon(); }

  Future<T> get_future() const { return Future<T>(&state(), true); }

  // Python's set_running_or_notify_cancel: true moves pending -> running;
  // false means the future was cancelled (the work should not run).
  // InvalidStateError if it is already running or finished.
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

  template <class... A>
  void set_result(A&&... a) {
    claim("set_result");
    detail::complete_with(*s_, [&]() -> T {
      if constexpr (!std::is_void_v<T>) return T(std::forward<A>(a)...);
    });
  }
  void set_exception(std::exception_ptr e) {
    if (!e) throw ValueError("set_exception needs a non-null exception");
    claim("set_exception");
    s_->finish(std::move(e));
  }
  void set_exception(std::nullptr_t) { throw ValueError("set_exception needs a non-null exception"); }
  template <class E>
  requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr> &&
           !std::is_same_v<std::decay_t<E>, std::nullptr_t>) void set_exception(E e) {
    set_exception(std::make_exception_ptr(std::move(e)));
  }

  // The stop token a cooperative worker polls; request_stop() on any copy of
  // the future sets it.
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
