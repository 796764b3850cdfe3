// keel::when_all and keel::when_any: one future for many, of any mix of
// types (the Concurrency TS's when_all/when_any; folly's collectAll and
// collectAny, which return Try's, map to the futures these return).
//
// Contract:
// - when_all(f1, f2, ...) returns a Future<std::tuple<Future<T1>, Future<T2>,
//   ...>> that finishes once every input is final (finished or cancelled),
//   with the inputs themselves, all done: it never fails, whatever they hold.
//   when_all(std::vector<Future<T>>) does the same with a vector. No inputs:
//   a future already finished with the empty tuple or vector.
// - when_any(f1, f2, ...) returns a Future<WhenAnyResult<std::tuple<...>>>
//   that finishes as soon as one input is final, with that input's index
//   (the first in argument order if several already are, else the first to
//   complete) and every input (the others may still be pending); the vector
//   form likewise. No inputs: finished at once with index
//   WhenAnyResult::npos and an empty sequence.
// - Inputs may repeat; an input with no state is an InvalidStateError.
// - The returned future can be cancelled while it is pending; that cancels
//   none of the inputs, and the combinator then finishes nothing. It keeps a
//   small block alive until every input is final (each input holds a
//   callback into it).
//
// Invariants: CONT-2 (when_all finishes exactly once, after every input is
// final, and a thread that sees it done sees every input done; when_any
// finishes exactly once, with the index of a final input).
#pragma once

#include <cstddef>
#include <tuple>
#include <utility>
#include <vector>

#include "keel/error.hpp"
#include "keel/future/future.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/inject.hpp"

namespace keel {

/// when_any's answer: which input was final first, and all the inputs.
template <class Sequence>
struct WhenAnyResult {
  /// index when there were no inputs.
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t index = npos;  ///< the position of a final input (npos: no inputs)
  Sequence futures;          ///< every input, in argument order
};

namespace detail {

template <class T>
FutureState<T>& checked_state(const Future<T>& f) {
  FutureState<T>* s = state_of(f);
  if (!s) throw InvalidStateError("when_all/when_any given a future with no state");
  return *s;
}

// Calls fn(index, future) for each future of a tuple or a vector.
template <class... Ts, class F>
void for_each_input(const std::tuple<Future<Ts>...>& fs, F&& fn) {
  std::size_t i = 0;
  std::apply([&](const auto&... f) { (fn(i++, f), ...); }, fs);
}
template <class T, class F>
void for_each_input(const std::vector<Future<T>>& fs, F&& fn) {
  for (std::size_t i = 0; i < fs.size(); ++i) fn(i, fs[i]);
}

// The block every input's callback shares. `left` counts the callbacks yet
// to arrive, plus one for the registering call (so the block outlives the
// registration); the last to arrive finishes `out` and frees the block.
// Out is the result type; done(i) says what one arrival does.
template <class Out, class Sequence>
class WhenBlock {
 public:
  WhenBlock(std::size_t n, Sequence inputs) : left_(n + 1), inputs_(std::move(inputs)) {}
  WhenBlock(const WhenBlock&) = delete;
  WhenBlock& operator=(const WhenBlock&) = delete;
  ~WhenBlock() { out_->release(); }

  Future<Out> future() { return make_future<Out>(out_, true); }
  FutureState<Out>& out() { return *out_; }
  Sequence& inputs() { return inputs_; }

  // One arrival; true for the last, which then owns the block (and frees it).
  bool arrive() {
    std::size_t before;
    if (KEEL_INJECTED(when_all_count_split)) {
      // Seeded bug: a read and a write instead of one RMW: two arrivals can
      // read the same count, and the last arrival is lost (or seen twice).
      before = left_.load(std::memory_order_acquire);
      left_.store(before - 1, std::memory_order_release);
    } else {
      // acq_rel: the last arrival sees every earlier one, which arrived after
      // its input was final, and so the finish of `out` below publishes every
      // input final to whoever sees `out` done (CONT-2).
      before = left_.fetch_sub(
          1, KEEL_INJECTED(when_all_count_relaxed) ? std::memory_order_relaxed : std::memory_order_acq_rel);
    }
    return before == 1;
  }

 private:
  platform::Atomic<std::size_t> left_;
  FutureState<Out>* out_ = new FutureState<Out>();  // one reference, the block's
  Sequence inputs_;                                 // moved out only by the arrival that finishes out
};

// Finishes `out` with make() unless it was cancelled (or finished) first;
// make() runs only for the one caller that claimed out.
template <class Out, class Make>
void finish_when(FutureState<Out>& out, Make&& make) {
  if (KEEL_INJECTED(when_any_check_then_finish)) {
    // Seeded bug: a check, then the finish, without claiming the result
    // slot: two completers can both get past the check.
    if (out.done()) return;
  } else if (!out.begin_completion()) {
    return;
  }
  complete_with(out, std::forward<Make>(make));
}

template <class Sequence>
Future<Sequence> when_all_of(Sequence fs) {
  std::size_t n = 0;
  for_each_input(fs, [&](std::size_t, const auto& f) {
    (void)checked_state(f);
    ++n;
  });
  auto* b = new WhenBlock<Sequence, Sequence>(n, fs);
  Future<Sequence> result = b->future();
  auto last = [b] {
    if (!b->arrive()) return;
    finish_when(b->out(), [b] { return std::move(b->inputs()); });
    delete b;
  };
  // Registered from the caller's copies: the block's are moved out by the
  // last arrival.
  for_each_input(fs,
                 [&](std::size_t, const auto& f) { add_done_callback(*state_of(f), [last](const auto&) { last(); }); });
  last();  // the registering call's own arrival
  return result;
}

template <class Sequence>
Future<WhenAnyResult<Sequence>> when_any_of(Sequence fs) {
  using Out = WhenAnyResult<Sequence>;
  std::size_t n = 0;
  for_each_input(fs, [&](std::size_t, const auto& f) {
    (void)checked_state(f);
    ++n;
  });
  auto* b = new WhenBlock<Out, Sequence>(n, fs);
  Future<Out> result = b->future();
  auto arrive = [b](std::size_t i) {
    // The first final input claims out (finish_when's begin_completion is
    // the decider); the others find it claimed.
    if (i != Out::npos) finish_when(b->out(), [b, i] { return Out{i, b->inputs()}; });
    if (b->arrive()) delete b;
  };
  for_each_input(fs, [&](std::size_t i, const auto& f) {
    add_done_callback(*state_of(f), [arrive, i](const auto&) { arrive(i); });
  });
  if (n == 0) finish_when(b->out(), [] { return Out{Out::npos, Sequence()}; });
  arrive(Out::npos);
  return result;
}

}  // namespace detail

/// A future of all the inputs, finished once every one is final (see the contract above).
template <class... Ts>
Future<std::tuple<Future<Ts>...>> when_all(Future<Ts>... fs) {
  return detail::when_all_of(std::tuple<Future<Ts>...>(std::move(fs)...));
}
/// when_all over a vector of futures of one type.
template <class T>
Future<std::vector<Future<T>>> when_all(std::vector<Future<T>> fs) {
  return detail::when_all_of(std::move(fs));
}

/// A future finished as soon as one input is final, with its index and all the inputs.
template <class... Ts>
Future<WhenAnyResult<std::tuple<Future<Ts>...>>> when_any(Future<Ts>... fs) {
  return detail::when_any_of(std::tuple<Future<Ts>...>(std::move(fs)...));
}
/// when_any over a vector of futures of one type.
template <class T>
Future<WhenAnyResult<std::vector<Future<T>>>> when_any(std::vector<Future<T>> fs) {
  return detail::when_any_of(std::move(fs));
}

}  // namespace keel
