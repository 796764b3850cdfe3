// keel::detail::PoolCall and its two kinds: the ProcessPool supervisor's
// record of one submitted task (one call, or a map chunk of calls), which
// holds what is sent to a worker and the future states its answer settles
// (one state per call, and nothing more per call: a map's per-call cost is
// what its calls' futures cost), and the helpers both pools' templates
// share to build them (make_call, submit_chunks, submit_star_chunks,
// map_deadline, watch_progress; ClusterPool's too). Not part of the API: the driver
// (kernel/src/process_pool/driver.cpp) alone uses the calls afterwards.
//
// Contract: dispatch()/undispatch() move a call's futures into and out of
// FutureCore's `dispatched` phase, tied to a start slot, so cancel() reaches
// a task until its worker starts it; every settle path takes a future out of
// its slot first. A call's futures each get exactly one outcome. A call
// settles its states as a Promise would (a state still open when the call is
// destroyed fails with BrokenPromiseError), but makes no stop state: a task
// in another process never receives a std::stop_token, so request_stop() on
// its future answers false, as Future documents for a task that takes none.
//
// Invariants: POOL-1 (one outcome per future), POOL-2 (a cancelled call of a
// chunk is cut from its payload and never runs), POOL-7 (cancel until start).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/error.hpp"
#include "keel/executor/map_progress.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/platform/clock.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/task.hpp"

namespace keel::detail {

// The driver's record of one task: what it sends and how it resolves.
// dispatch/undispatch move its futures in and out of `dispatched` (see
// FutureCore::dispatch): only the supervisor calls them, and it takes every
// future out of a slot before that slot is reused or unmapped.
class PoolCall {
 public:
  using StartSlot = FutureCore::StartSlot;
  virtual ~PoolCall() = default;
  // About to be sent with this start slot: false if nothing of it is wanted
  // any more (every future cancelled). May cut the payload down to the calls
  // still wanted.
  virtual bool dispatch(const StartSlot& slot) = 0;
  // Its slot was won by the worker (true: running) or is dead (false:
  // pending again, or cancelled by its user).
  virtual bool undispatch() = 0;
  // Runs in this process instead (RejectPolicy::caller_runs): pending ->
  // running, for the calls nobody cancelled (the payload is cut to them);
  // false if none is left.
  virtual bool start_here() = 0;
  // The worker's answer: ok with the encoded result, or an encoded error.
  virtual void complete(bool ok, std::string_view bytes) = 0;
  virtual void fail(std::exception_ptr e) = 0;
  virtual void cancel() = 0;
  bool chunk = false;             // a chunk of calls (a map) rather than one call
  std::string name;               // the task's registered name
  std::string payload;            // what the worker receives
  std::uint32_t slot_worker = 0;  // where it was last dispatched (driver's bookkeeping)
  std::uint32_t slot = 0;
};

// Fails a promise unless its future is already final: a queued task the user
// cancelled can still be resolved by the pool (broken, shut down) after the
// cancel won; that answer has nobody to go to.
template <class R>
void settle(Promise<R>& p, std::exception_ptr e) noexcept {
  try {
    p.set_exception(std::move(e));
  } catch (const InvalidStateError&) {
  }
}

// What a Promise does, on a bare state (the calls below hold their futures'
// states directly: no Promise, no stop state; see the top).
//
// settle_state: fails s unless it is already final (see settle above).
template <class R>
void settle_state(FutureState<R>& s, const std::exception_ptr& e) noexcept {
  if (s.begin_completion()) s.finish(e);
}
// Python's set_running_or_notify_cancel: pending -> running, or false if the
// future was cancelled; InvalidStateError in any other phase.
template <class R>
bool start_state(FutureState<R>& s) {
  switch (s.start()) {
    case FutureCore::Start::started:
      return true;
    case FutureCore::Start::was_cancelled:
      return false;
    default:
      throw InvalidStateError("set_running_or_notify_cancel on a future that is not pending");
  }
}
// A worker's answer (ok: the encoded result, else an encoded error), unless s
// is already final. Whatever the bytes hold, s gets exactly one outcome: a
// result that does not decode (or a user codec that throws) is its error.
template <class R>
void answer_state(FutureState<R>& s, bool ok, std::string_view bytes) {
  if (!s.begin_completion()) return;
  if (ok) {
    complete_with(s, [&]() -> R { return decode_result<R>(bytes); });
    return;
  }
  std::exception_ptr e;
  try {
    e = std::make_exception_ptr(decode_error(bytes));
  } catch (...) {
    e = std::current_exception();
  }
  s.finish(std::move(e));
}
// A call destroyed with its future still open, as a Promise destroyed unset.
template <class R>
void abandon_state(FutureState<R>& s) noexcept {
  if (s.begin_completion())
    s.finish(std::make_exception_ptr(BrokenPromiseError("promise destroyed without setting a result")));
}

template <class R>
class SingleCall final : public PoolCall {
 public:
  SingleCall() : future(make_future<R>(new FutureState<R>(), false)) {}
  ~SingleCall() override { abandon_state(state()); }
  SingleCall(const SingleCall&) = delete;
  SingleCall& operator=(const SingleCall&) = delete;

  bool dispatch(const StartSlot& slot) override { return state().dispatch(slot); }
  bool undispatch() override { return state().undispatch(); }
  bool start_here() override { return start_state(state()); }
  void complete(bool ok, std::string_view bytes) override {
    (void)state().undispatch();  // an answer means it started (no-op after its notice)
    answer_state(state(), ok, bytes);
  }
  void fail(std::exception_ptr e) override {
    (void)state().undispatch();
    settle_state(state(), e);
  }
  void cancel() override {
    (void)state().undispatch();
    if (!future.cancel())
      settle_state(state(), std::make_exception_ptr(CancelledError("task cancelled before it started")));
  }
  Future<R> future;  // the call's own handle; callers get copies

 private:
  FutureState<R>& state() { return *state_of(future); }
};

// A chunk of calls of one task: one frame to the worker, one answer back
// (a list of per-call answers), each call with its own future. The calls
// share one start slot: a user's cancel of one call kills the slot, so the
// worker skips the whole frame, and the calls nobody cancelled are sent
// again without it. The chunk holds one reference to each call's state.
template <class R>
class ChunkCall final : public PoolCall {
 public:
  // n >= 1 calls (submit_chunks never makes an empty chunk).
  explicit ChunkCall(std::size_t n) {
    states_.reserve(n);
    sent.reserve(n);
    try {
      for (std::size_t i = 0; i < n; ++i) {
        states_.push_back(new FutureState<R>());
        sent.push_back(i);
      }
    } catch (...) {
      for (FutureState<R>* s : states_) s->release();
      throw;
    }
  }
  ~ChunkCall() override {
    for (FutureState<R>* s : states_) {
      abandon_state(*s);
      s->release();
    }
  }
  ChunkCall(const ChunkCall&) = delete;
  ChunkCall& operator=(const ChunkCall&) = delete;

  // The future of call i (0 <= i < size()).
  Future<R> future(std::size_t i) const { return make_future<R>(states_[i], true); }
  std::size_t size() const { return states_.size(); }

  // Arms the calls nobody cancelled. A cancelled call never runs (POOL-2):
  // when some were cancelled, the payload is cut down to the ones still
  // wanted, and their answers come back in that order.
  bool dispatch(const StartSlot& slot) override {
    std::vector<std::size_t> keep;
    keep.reserve(sent.size());
    for (std::size_t i : sent) {
      if (state(i)->dispatch(slot)) keep.push_back(i);
    }
    cut_to(keep);
    return !sent.empty();
  }
  bool start_here() override {
    std::vector<std::size_t> keep;
    for (std::size_t i : sent) {
      if (start_state(*state(i))) keep.push_back(i);
    }
    cut_to(keep);
    return !sent.empty();
  }
  bool undispatch() override {
    bool started = false;
    for (std::size_t i : sent) started = state(i)->undispatch() || started;
    return started;
  }
  void complete(bool ok, std::string_view bytes) override {
    (void)undispatch();
    // The worker encodes a std::vector<std::pair<bool, std::string>>: a u32
    // count, then per call a bool and a string. All of it is checked before
    // any call is settled (a malformed answer fails every call), and each
    // answer stays a view into `bytes` until its own result is decoded.
    std::vector<std::pair<bool, std::string_view>> answers;
    try {
      if (!ok) return fail(std::make_exception_ptr(decode_error(bytes)));
      Decoder d(bytes);
      const std::size_t n = d.get_size(codec_min_size<std::pair<bool, std::string>>());
      if (n != sent.size()) throw ProtocolError("chunk answer has the wrong number of results");
      answers.reserve(n);
      for (std::size_t j = 0; j < n; ++j) {
        const bool good = d.get<bool>();
        const std::size_t len = d.get_size(1);
        answers.emplace_back(good, d.get_view(len));
      }
      d.expect_end();
    } catch (...) {
      return fail(std::current_exception());
    }
    for (std::size_t j = 0; j < sent.size(); ++j) answer_state(*state(sent[j]), answers[j].first, answers[j].second);
  }
  void fail(std::exception_ptr e) override {
    (void)undispatch();
    for (FutureState<R>* s : states_) settle_state(*s, e);
  }
  void cancel() override {
    (void)undispatch();
    for (FutureState<R>* s : states_) {
      if (!s->cancel()) settle_state(*s, std::make_exception_ptr(CancelledError("task cancelled before it started")));
    }
  }
  std::vector<std::size_t> sent;  // indices of the calls in the payload, in its order (all, until a cut)

 private:
  FutureState<R>* state(std::size_t i) const { return states_[i]; }
  // Keeps only the calls `keep` (a subsequence of `sent`) in the payload.
  void cut_to(std::vector<std::size_t>& keep) {
    if (!keep.empty() && keep.size() != sent.size()) {
      Decoder d(payload);
      auto task = d.get<std::string>();
      auto args = d.get<std::vector<std::string>>();
      std::vector<std::string> cut;
      cut.reserve(keep.size());
      // keep is a subsequence of sent: walk sent once, to each kept call.
      std::size_t j = 0;
      for (std::size_t call : keep) {
        while (sent[j] != call) ++j;
        cut.push_back(std::move(args[j++]));
      }
      payload = encode(task, cut);
    }
    sent = std::move(keep);
  }

  std::vector<FutureState<R>*> states_;  // one reference each, released on destruction
};

// What a worker receives for one call of `name`, and for a chunk of calls.
std::string call_payload(const std::string& name, const std::string& args);
std::string chunk_payload(const std::string& name, const std::vector<std::string>& args);

// One call of `task` with `args`, encoded (both pools' submit, ClusterPool's too).
template <class R, class... P, class... A>
std::unique_ptr<SingleCall<R>> make_call(const TaskRef<R(P...)>& task, A&&... args) {
  auto call = std::make_unique<SingleCall<R>>();
  call->name = task.name();
  call->payload = call_payload(task.name(), encode_args<std::decay_t<P>...>(static_cast<std::decay_t<P>>(args)...));
  return call;
}

// A map's deadline, counted from the call (before its inputs are read).
inline platform::Deadline map_deadline(const std::optional<std::chrono::nanoseconds>& timeout) {
  return timeout ? platform::Deadline::after(*timeout) : platform::Deadline::never();
}

// A map's calls in chunks of `chunksize` (both pools' map, map_unordered
// and starmap): every input is read (encoded by encode_one) before this
// returns, one ChunkCall per chunk goes to `enqueue`, and the calls' futures
// come back in input order. If an enqueue throws, the futures made so far
// are cancelled and it rethrows.
template <class R, class... P, class Range, class EncodeOne, class Enqueue>
std::vector<Future<R>> submit_chunks_with(const TaskRef<R(P...)>& task, Range& inputs, std::size_t chunksize,
                                          const char* who, EncodeOne&& encode_one, Enqueue&& enqueue) {
  if (chunksize == 0) throw ValueError(std::string(who) + ": chunksize must be at least 1");
  std::vector<Future<R>> all;
  // One allocation for the whole map where the count is known, rather than
  // a dozen regrowths that each move every future made so far.
  if constexpr (std::ranges::sized_range<Range>) all.reserve(static_cast<std::size_t>(std::ranges::size(inputs)));
  auto it = std::begin(inputs);
  const auto end = std::end(inputs);
  while (it != end) {
    std::vector<std::string> args;
    args.reserve(std::min<std::size_t>(chunksize, 4096));
    for (std::size_t i = 0; i < chunksize && it != end; ++i, ++it) {
      args.push_back(encode_one(*it));
    }
    auto call = std::make_unique<ChunkCall<R>>(args.size());
    call->chunk = true;
    call->name = task.name();
    call->payload = chunk_payload(task.name(), args);
    for (std::size_t i = 0; i < call->size(); ++i) all.push_back(call->future(i));
    try {
      enqueue(std::unique_ptr<PoolCall>(std::move(call)));
    } catch (...) {
      for (auto& f : all) f.cancel();
      throw;
    }
  }
  return all;
}

// map's calls: one argument each.
template <class R, class P, class Range, class Enqueue>
std::vector<Future<R>> submit_chunks(const TaskRef<R(P)>& task, Range& inputs, std::size_t chunksize, const char* who,
                                     Enqueue&& enqueue) {
  return submit_chunks_with(
      task, inputs, chunksize, who,
      [](auto&& x) { return encode_args<std::decay_t<P>>(static_cast<std::decay_t<P>>(std::forward<decltype(x)>(x))); },
      std::forward<Enqueue>(enqueue));
}

// Whether each element of Tuple converts to the task's parameter at its place.
template <class Tuple, class... P, std::size_t... I>
constexpr bool tuple_fits_at(std::index_sequence<I...>) {
  return (std::is_convertible_v<std::tuple_element_t<I, Tuple>, std::decay_t<P>> && ...);
}
template <class Tuple, class... P>
constexpr bool tuple_fits() {
  if constexpr (requires { std::tuple_size<Tuple>::value; }) {
    if constexpr (std::tuple_size_v<Tuple> == sizeof...(P)) {
      return tuple_fits_at<Tuple, P...>(std::index_sequence_for<P...>{});
    } else {
      return false;
    }
  } else {
    return false;
  }
}

// starmap's calls: each input a tuple of the task's arguments (tuple_fits).
template <class R, class... P, class Range, class Enqueue>
std::vector<Future<R>> submit_star_chunks(const TaskRef<R(P...)>& task, Range& inputs, std::size_t chunksize,
                                          const char* who, Enqueue&& enqueue) {
  return submit_chunks_with(
      task, inputs, chunksize, who,
      [](auto&& t) {
        return std::apply(
            [](auto&&... xs) {
              return encode_args<std::decay_t<P>...>(static_cast<std::decay_t<P>>(std::forward<decltype(xs)>(xs))...);
            },
            std::forward<decltype(t)>(t));
      },
      std::forward<Enqueue>(enqueue));
}

// A map's results, with its progress callback (if any) watching every call.
template <class R>
std::shared_ptr<ProgressTracker> watch_progress(const MapProgress& fn, const std::vector<Future<R>>& fs) {
  auto tracker = make_progress(fn, fs.size());
  if (tracker) {
    for (const Future<R>& f : fs) ProgressTracker::watch(tracker, f);
  }
  return tracker;
}

}  // namespace keel::detail
