// Continuations: Future<T>::then and then_future (declared in future.hpp,
// defined here), and the Executor concept they submit to.
//
// Contract:
// - `f.then(fn)` returns a Future<U> of fn(value): fn runs once f finishes
//   with a value, in the thread that finishes f (or at once, in the caller,
//   if f is already final). fn gets the value as a const T& (a copy for a
//   parameter taken by value); for a move-only T it gets T&& moved out of
//   f, as take() does (f's other handles then read InvalidStateError); for
//   T = void it gets nothing. If f fails, fn does not run and the new future
//   fails with f's exception; if f is cancelled, fn does not run and the
//   new future is cancelled (the value shape: folly's thenValue).
// - `f.then_future(fn)` passes f itself, final, to fn, whatever its outcome
//   (the Concurrency TS shape, folly's thenTry): fn reads result(),
//   exception() or cancelled() there.
// - `f.then(ex, fn)` and `f.then_future(ex, fn)` run fn as a task of `ex`,
//   any keel::Executor (a ThreadPoolExecutor), submitted when f becomes
//   final; the value shape does not submit for a failed or cancelled f (no
//   user code runs; the outcome is passed on in the completing thread). If
//   ex refuses the task (shut down, saturated) its error (RejectedError,
//   BrokenThreadPool) becomes the new future's; if ex accepts it and drops it
//   unrun (shutdown with cancel_futures, discard_oldest) the new future is
//   cancelled; if ex fails it unrun (a broken pool), with that error. ex
//   must outlive f's completion.
// - U is fn's result; if fn returns a Future<V>, the new future is a
//   Future<V> that takes that future's outcome (unwrapped; a cancelled inner
//   future gives CancelledError, as the new future was already running).
// - An exception thrown by fn is the new future's. Cancelling the new future
//   before fn starts means fn never runs; cancelling it never cancels f
//   (f may have other users; folly's default). fn and its captures live
//   until f is final (a cancel of the new future does not free them early)
//   and are destroyed once fn ran or was skipped: by the thread that ran
//   the hook, or with the executor's task. The new future is pending until
//   fn starts, running while it runs.
//
// Invariants: CONT-1 (a continuation runs at most once, exactly once iff its
// future was not cancelled before it started and its executor accepted and
// ran it; its future always ends final, never lost), EXEC-9 (fn sees what
// the completer of f wrote).
#pragma once

#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "keel/error.hpp"
#include "keel/future/future.hpp"
#include "keel/platform/inject.hpp"

namespace keel {

namespace detail {
// A callable of the submit shape, for the concept below.
struct ExecutorProbe {
  void operator()() const {}
};
}  // namespace detail

/// Something then() can hand a continuation to: ex.submit(fn) runs fn() later and returns its Future<void>.
template <class E>
concept Executor = requires(E& ex, detail::ExecutorProbe fn) {
  { ex.submit(fn) } -> std::same_as<Future<void>>;
};

namespace detail {

struct InlineExecutor {};

template <class R>
struct Unwrap {
  using type = R;
  static constexpr bool is_future = false;
};
template <class V>
struct Unwrap<Future<V>> {
  using type = V;
  static constexpr bool is_future = true;
};

// How fn is called: with the final future (AsFuture), or with the value.
template <bool AsFuture, class T, class Fn>
struct ThenCall;
template <class T, class Fn>
struct ThenCall<true, T, Fn> {
  static constexpr bool ok = std::is_invocable_v<Fn&, Future<T>>;
  using RT = std::invoke_result<Fn&, Future<T>>;  // ::type only once ok (the static_asserts first)
  static decltype(auto) call(Fn& fn, FutureState<T>& src) { return std::invoke(fn, make_future<T>(&src, true)); }
};
template <class T, class Fn>
struct ThenCall<false, T, Fn> {
  // A copy of the value can be had any number of times; a move-only one is
  // moved out, once.
  using Arg = std::conditional_t<std::is_copy_constructible_v<T>, const T&, T&&>;
  static constexpr bool ok = std::is_invocable_v<Fn&, Arg>;
  using RT = std::invoke_result<Fn&, Arg>;
  static decltype(auto) call(Fn& fn, FutureState<T>& src) {
    if constexpr (std::is_copy_constructible_v<T>) {
      return std::invoke(fn, static_cast<const T&>(src.ref()));
    } else {
      return std::invoke(fn, src.take());
    }
  }
};
template <class Fn>
struct ThenCall<false, void, Fn> {
  static constexpr bool ok = std::is_invocable_v<Fn&>;
  using RT = std::invoke_result<Fn&>;
  static decltype(auto) call(Fn& fn, FutureState<void>&) { return std::invoke(fn); }
};

// Finishes `out` (already claimed: completing) with the outcome of the final
// future `in`: its value (copied, or moved out for a move-only V), its
// exception, or CancelledError.
template <class V>
void finish_from(FutureState<V>& out, FutureState<V>& in) {
  if (in.phase() == FutureCore::cancelled) {
    out.finish(std::make_exception_ptr(CancelledError("the future a continuation returned was cancelled")));
    return;
  }
  if (auto e = in.observed_error()) {
    out.finish(std::move(e));
    return;
  }
  complete_with(out, [&]() -> V {
    if constexpr (std::is_void_v<V>) {
      return;
    } else if constexpr (std::is_copy_constructible_v<V>) {
      return static_cast<const V&>(in.ref());
    } else {
      return in.take();
    }
  });
}

// Runs the continuation of the final future `src` into `out`, unless `out`
// was cancelled first: the one start() on out decides (EXEC-2), so fn runs
// at most once and never after a cancel that returned true.
template <bool AsFuture, class T, class U, class Fn>
void run_continuation(FutureState<T>& src, FutureState<U>& out, Fn& fn) {
  using Call = ThenCall<AsFuture, T, Fn>;
  using W = Unwrap<std::remove_cvref_t<typename Call::RT::type>>;
  if constexpr (W::is_future) {
    // running, not completing: out is finished later, by the inner future.
    if (out.start(false) != FutureCore::Start::started) return;
    Future<U> inner;
    try {
      inner = Call::call(fn, src);
      if (!inner.valid()) throw InvalidStateError("continuation returned a future with no state");
    } catch (...) {
      if (out.begin_completion()) out.finish(std::current_exception());
      return;
    }
    add_done_callback(*state_of(inner), [o = make_future<U>(&out, true)](const Future<U>& f) {
      FutureState<U>& os = *state_of(o);
      if (os.begin_completion()) finish_from(os, *state_of(f));
    });
  } else {
    if (KEEL_INJECTED(then_ignores_cancel)) {
      // Seeded bug: no claim, so fn runs although a cancel already won (and
      // its finish overwrites the cancelled state).
    } else if (out.start(true) != FutureCore::Start::started) {
      return;
    }
    complete_with(out, [&]() -> U { return Call::call(fn, src); });
  }
}

// What the value shape does without calling fn: passes a failure or a
// cancel on (true), or leaves a finished source to fn (false).
template <bool AsFuture, class T, class U>
bool pass_on_failure(FutureState<T>& src, FutureState<U>& out) {
  if constexpr (AsFuture) {
    return false;
  } else {
    if (src.phase() == FutureCore::cancelled) {
      out.cancel();
      return true;
    }
    if (src.error()) {
      if (out.begin_completion()) out.finish(src.observed_error());
      return true;
    }
    return false;
  }
}

// The continuation handed to an executor: runs it when the executor runs it.
template <bool AsFuture, class T, class U, class Fn>
struct ThenTask {
  Future<T> src;
  Future<U> out;
  Fn fn;
  void operator()() { run_continuation<AsFuture>(*state_of(src), *state_of(out), fn); }
};

// Submits the continuation to ex. A refusal fails out with ex's error; a task
// ex drops or fails unrun passes its cancel or error on through its future.
template <bool AsFuture, class T, class U, class Fn, class E>
void submit_continuation(E& ex, FutureState<T>& src, FutureState<U>& out, Fn&& fn) {
  Future<void> task;
  try {
    task = ex.submit(ThenTask<AsFuture, T, U, std::decay_t<Fn>>{make_future<T>(&src, true), make_future<U>(&out, true),
                                                                std::forward<Fn>(fn)});
  } catch (...) {
    if (KEEL_INJECTED(then_drops_refusal)) return;  // seeded bug: the refusal is lost, out stays pending
    if (out.begin_completion()) out.finish(std::current_exception());
    return;
  }
  // A task that ran completed (or, unwrapped, started) out itself, and its
  // future finished without an error: nothing to pass on then.
  task.add_done_callback([o = make_future<U>(&out, true)](const Future<void>& t) {
    FutureState<U>& os = *state_of(o);
    if (KEEL_INJECTED(then_ignores_task_drop)) return;  // seeded bug: a dropped task strands out
    if (t.cancelled()) {
      os.cancel();
    } else if (auto e = t.exception()) {
      if (os.begin_completion()) os.finish(std::move(e));
    }
  });
}

// The hook linked to the source: fires once it is final.
template <bool AsFuture, class T, class U, class Fn, class E>
class ThenHook final : public Hook {
 public:
  ThenHook(FutureState<U>* out, E* ex, Fn fn) : out_(out), ex_(ex), fn_(std::move(fn)) {}
  ThenHook(const ThenHook&) = delete;
  ThenHook& operator=(const ThenHook&) = delete;
  ~ThenHook() override { out_->release(); }
  bool internal() const noexcept override { return false; }
  // Never throws: every outcome goes to out.
  void fire(FutureCore& core) override {
    auto& src = static_cast<FutureState<T>&>(core);
    if (pass_on_failure<AsFuture>(src, *out_)) return;
    if constexpr (std::is_same_v<E, InlineExecutor>) {
      run_continuation<AsFuture>(src, *out_, fn_);
    } else {
      // Not worth a task when the continuation was cancelled already.
      if (out_->done()) return;
      submit_continuation<AsFuture>(*ex_, src, *out_, std::move(fn_));
    }
  }

 private:
  FutureState<U>* out_;  // one reference, given up by the destructor
  E* ex_;
  Fn fn_;
};

template <bool AsFuture, class T, class E, class F>
auto then_impl(const Future<T>& src, E* ex, F&& fn) {
  using Fn = std::decay_t<F>;
  using Call = ThenCall<AsFuture, T, Fn>;
  static_assert(std::is_same_v<E, InlineExecutor> || Executor<E>,
                "then(ex, fn): ex must be a keel::Executor (ex.submit(fn) returning Future<void>)");
  static_assert(AsFuture || Call::ok,
                "then(fn): fn must accept the value (const T&, or T&& for a move-only T, nothing for void); "
                "use then_future for fn(Future<T>)");
  static_assert(!AsFuture || Call::ok, "then_future(fn): fn must accept Future<T>");
  using U = typename Unwrap<std::remove_cvref_t<typename Call::RT::type>>::type;
  FutureState<T>* s = state_of(src);
  if (!s) throw InvalidStateError("then on a future that has no state");
  auto* out = new FutureState<U>();  // its one reference goes to the hook
  Future<U> result = make_future<U>(out, true);
  auto hook = std::make_unique<ThenHook<AsFuture, T, U, Fn, E>>(out, ex, Fn(std::forward<F>(fn)));
  if (s->add_hook(hook.get())) {
    (void)hook.release();  // the completer fires and deletes it
    return result;
  }
  if (KEEL_INJECTED(then_lost_when_done)) {
    // Seeded bug: takes a source that became final during the call for
    // linked; nobody will ever fire the hook.
    (void)hook.release();
    return result;
  }
  hook->fire(*s);  // already final: here, now
  return result;
}

}  // namespace detail
}  // namespace keel
