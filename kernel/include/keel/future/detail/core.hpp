// keel::detail::FutureCore and FutureState<T>: the shared state behind every
// Future handle (keel/future/future.hpp), its one-word state machine, the
// hook list that done callbacks and waiters hang on, and the typed value slot.
// Not part of the API: Future, Promise, the executor's tasks
// (keel/executor/task.hpp), wait()/as_completed() and the process pool's calls
// reach it; a user never names it. Kept in a header because FutureState<T>
// is a template and the hot reads (phase, done, release) inline into every
// caller; the transitions live in kernel/src/future/future.cpp.
//
// Contract: every transition is one atomic operation on the state word; the
// thread that moves it to completing owns the result slot (value, error,
// flags) until its exchange makes the word final. Hooks are linked only while
// the phase is not final, under the hook lock, and each fires exactly once.
//
// Invariants: EXEC-1 (exactly one final state), EXEC-2 (cancel racing start:
// exactly one wins), EXEC-7 (callbacks run exactly once), SYNC-2 (no lost
// wake-up of a result waiter), POOL-7 (cancel racing a remote start through
// its slot: exactly one wins).
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

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

enum class FutureStatus;  // defined, with its meaning, in keel/future/future.hpp

template <class T>
class Future;

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

// The state is one futex word: bits 0-2 the phase, bit 3 says a thread may
// sleep on the word (sleepers_bit), bit 4 says the hook list is not empty
// (hooked_bit). The thread that moves the word to completing owns the result
// slot until it moves it to a final phase with one exchange, which also tells
// it, atomically, whether to wake sleepers and whether to run hooks; hooks are
// appended only while the phase is not final, under the hook lock, so none is
// missed and none runs twice.
//
// A task sent to another process is `dispatched`: it reads as pending, and
// its start is decided by a start slot in memory both processes share (the
// worker starts it only by moving the slot from sent to started; cancel()
// here only by moving it from sent to dead first). Both happen under the hook
// lock on this side, and the owner takes a future out of dispatched
// (undispatch) under the same lock before it reuses or unmaps the slot, so a
// cancel never touches a slot that is not its own.
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
  // Set (once final) when the error was handed to user code: a finished
  // word with an error and without this bit is reported when the state dies
  // (set_report_unobserved_exceptions).
  static constexpr std::int32_t observed_bit = 32;
  static constexpr bool is_final(std::int32_t word) {
    return (word & phase_mask) == cancelled || (word & phase_mask) == finished;
  }

  FutureCore() = default;
  FutureCore(const FutureCore&) = delete;
  FutureCore& operator=(const FutureCore&) = delete;
  // Destroying the error is a write to it: the last release() must order
  // after every thread's use of the state (its acq_rel), which the model
  // checks through this mark.
  virtual ~FutureCore() {
    error_mark_.written();
    // relaxed: the last release() (acq_rel) ordered every handle's use,
    // observed_bit's fetch_or included, before this.
    if (error_ && (word_.load(std::memory_order_relaxed) & observed_bit) == 0 && report_unobserved_exceptions()) {
      report_error(unobserved_exception_where, error_);
    }
  }

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
  // The stored exception, handed to user code: it counts as retrieved and
  // is not reported as unobserved. relaxed: only this state's destructor
  // reads the bit, after the last release() ordered this.
  std::exception_ptr observed_error() const {
    std::exception_ptr e = error();
    if (e) {
      if (KEEL_INJECTED(future_observed_blind)) {
        word_.exchange(observed_bit, std::memory_order_relaxed);
      } else {
        word_.fetch_or(observed_bit, std::memory_order_relaxed);
      }
    }
    return e;
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

// Future's blocking reads: wait until final or the deadline (TimeoutError),
// then CancelledError or InvalidStateError unless finished.
inline void await_finished(const FutureCore& core, const platform::Deadline& d, const char* what) {
  if (!core.wait_until(d)) throw TimeoutError(std::string("future not done before the timeout (") + what + ")");
  core.throw_unless_finished(what);
}
inline void rethrow_error(const FutureCore& core) {
  if (auto e = core.observed_error()) std::rethrow_exception(e);
}
// Future::result: the value as a const reference (nothing for void), or the
// task's exception rethrown.
template <class T>
decltype(auto) result_by(FutureState<T>& state, const platform::Deadline& d) {
  await_finished(state, d, "result");
  rethrow_error(state);
  if constexpr (std::is_void_v<T>) {
    return;
  } else {
    return static_cast<const T&>(state.ref());
  }
}
inline std::exception_ptr exception_by(const FutureCore& core, const platform::Deadline& d) {
  await_finished(core, d, "exception");
  return core.observed_error();
}

// The kernel's ways in and out of a Future's handle (defined after Future).
template <class T>
FutureState<T>* state_of(const Future<T>& f) noexcept;
template <class T>
Future<T> make_future(FutureState<T>* s, bool add_ref) noexcept;

// A done callback: fn(const Future<T>&), linked to the state until it fires.
template <class T, class Fn>
class CallbackHook final : public Hook {
 public:
  explicit CallbackHook(Fn fn) : fn_(std::move(fn)) {}
  bool internal() const noexcept override { return false; }
  void fire(FutureCore& core) override { fn_(make_future<T>(static_cast<FutureState<T>*>(&core), true)); }

 private:
  Fn fn_;
};

// Links `fn` to `state`, or runs it at once (in this thread) if the state is
// already final; a callback that throws then is reported, as the completer's
// are (EXEC-7).
template <class T, class F>
void add_done_callback(FutureState<T>& state, F&& fn) {
  auto hook = std::make_unique<CallbackHook<T, std::decay_t<F>>>(std::forward<F>(fn));
  if (state.add_hook(hook.get())) {
    hook.release();
    return;
  }
  try {
    hook->fire(state);
  } catch (...) {
    report_error("done callback", std::current_exception());
  }
}

}  // namespace detail
}  // namespace keel
