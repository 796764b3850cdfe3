// keel::detail::PoolCall and its two kinds: the ProcessPool supervisor's
// record of one submitted task (one call, or a map chunk of calls), which
// holds what is sent to a worker and the promises its answer settles. Not
// part of the API: ProcessPool's templates build them, the driver
// (kernel/src/process_pool/driver.cpp) alone uses them afterwards.
//
// Contract: dispatch()/undispatch() move a call's futures into and out of
// FutureCore's `dispatched` phase, tied to a start slot, so cancel() reaches
// a task until its worker starts it; every settle path takes a future out of
// its slot first. A call's futures each get exactly one outcome.
//
// Invariants: POOL-1 (one outcome per future), POOL-2 (a cancelled call of a
// chunk is cut from its payload and never runs), POOL-7 (cancel until start).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/error.hpp"
#include "keel/future/future.hpp"
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

template <class R>
void set_decoded(Promise<R>& p, std::string_view bytes) {
  if constexpr (std::is_void_v<R>) {
    decode_result<void>(bytes);
    p.set_result();
  } else {
    p.set_result(decode_result<R>(bytes));
  }
}

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

template <class R>
class SingleCall final : public PoolCall {
 public:
  bool dispatch(const StartSlot& slot) override { return core().dispatch(slot); }
  bool undispatch() override { return core().undispatch(); }
  bool start_here() override { return promise.set_running_or_notify_cancel(); }
  void complete(bool ok, std::string_view bytes) override {
    (void)core().undispatch();  // an answer means it started (no-op after its notice)
    // Whatever the bytes hold, the future gets exactly one outcome: a result
    // that does not decode (or a user codec that throws) is its error.
    try {
      if (!ok) {
        promise.set_exception(std::make_exception_ptr(decode_error(bytes)));
        return;
      }
      set_decoded(promise, bytes);
    } catch (...) {
      settle(promise, std::current_exception());
    }
  }
  void fail(std::exception_ptr e) override {
    (void)core().undispatch();
    settle(promise, std::move(e));
  }
  void cancel() override {
    (void)core().undispatch();
    if (!future.cancel()) settle(promise, std::make_exception_ptr(CancelledError("task cancelled before it started")));
  }
  Promise<R> promise;
  Future<R> future = promise.get_future();

 private:
  FutureCore& core() { return *state_of(future); }
};

// A chunk of calls of one task: one frame to the worker, one answer back
// (a list of per-call answers), each call with its own future. The calls
// share one start slot: a user's cancel of one call kills the slot, so the
// worker skips the whole frame, and the calls nobody cancelled are sent
// again without it.
template <class R>
class ChunkCall final : public PoolCall {
 public:
  // Arms the calls nobody cancelled. A cancelled call never runs (POOL-2):
  // when some were cancelled, the payload is cut down to the ones still
  // wanted, and their answers come back in that order.
  bool dispatch(const StartSlot& slot) override {
    std::vector<std::size_t> keep;
    keep.reserve(sent.size());
    for (std::size_t i : sent) {
      if (state_of(futures[i])->dispatch(slot)) keep.push_back(i);
    }
    cut_to(keep);
    return !sent.empty();
  }
  bool start_here() override {
    std::vector<std::size_t> keep;
    for (std::size_t i : sent) {
      if (promises[i].set_running_or_notify_cancel()) keep.push_back(i);
    }
    cut_to(keep);
    return !sent.empty();
  }
  bool undispatch() override {
    bool started = false;
    for (std::size_t i : sent) started = state_of(futures[i])->undispatch() || started;
    return started;
  }
  void complete(bool ok, std::string_view bytes) override {
    (void)undispatch();
    std::vector<std::pair<bool, std::string>> answers;
    try {
      if (!ok) return fail(std::make_exception_ptr(decode_error(bytes)));
      answers = decode<std::vector<std::pair<bool, std::string>>>(bytes);
      if (answers.size() != sent.size()) throw ProtocolError("chunk answer has the wrong number of results");
    } catch (...) {
      return fail(std::current_exception());
    }
    for (std::size_t j = 0; j < sent.size(); ++j) {
      const std::size_t i = sent[j];
      if (futures[i].done()) continue;
      try {
        if (!answers[j].first) {
          promises[i].set_exception(std::make_exception_ptr(decode_error(answers[j].second)));
        } else {
          set_decoded(promises[i], answers[j].second);
        }
      } catch (...) {
        settle(promises[i], std::current_exception());
      }
    }
  }
  void fail(std::exception_ptr e) override {
    (void)undispatch();
    for (auto& p : promises) settle(p, e);
  }
  void cancel() override {
    (void)undispatch();
    for (std::size_t i = 0; i < promises.size(); ++i) {
      if (!futures[i].cancel())
        settle(promises[i], std::make_exception_ptr(CancelledError("task cancelled before it started")));
    }
  }
  std::vector<Promise<R>> promises;
  std::vector<Future<R>> futures;
  std::vector<std::size_t> sent;  // indices of the calls in the payload, in its order (all, until a cut)

 private:
  // Keeps only the calls `keep` (a subsequence of `sent`) in the payload.
  void cut_to(std::vector<std::size_t>& keep) {
    if (!keep.empty() && keep.size() != sent.size()) {
      Decoder d(payload);
      auto task = d.get<std::string>();
      auto args = d.get<std::vector<std::string>>();
      std::vector<std::string> cut;
      cut.reserve(keep.size());
      for (std::size_t j = 0, k = 0; j < sent.size() && k < keep.size(); ++j) {
        if (sent[j] == keep[k]) {
          cut.push_back(std::move(args[j]));
          ++k;
        }
      }
      payload = encode(task, cut);
    }
    sent = std::move(keep);
  }
};

// What a worker receives for one call of `name`, and for a chunk of calls.
std::string call_payload(const std::string& name, const std::string& args);
std::string chunk_payload(const std::string& name, const std::vector<std::string>& args);

// A map's calls in chunks of `chunksize` (both pools' map and map_unordered):
// every input is read (encoded) before this returns, one ChunkCall per chunk
// goes to `enqueue`, and the calls' futures come back in input order. If an
// enqueue throws, the futures made so far are cancelled and it rethrows.
template <class R, class P, class Range, class Enqueue>
std::vector<Future<R>> submit_chunks(const TaskRef<R(P)>& task, Range& inputs, std::size_t chunksize, const char* who,
                                     Enqueue&& enqueue) {
  if (chunksize == 0) throw ValueError(std::string(who) + ": chunksize must be at least 1");
  std::vector<Future<R>> all;
  auto it = std::begin(inputs);
  const auto end = std::end(inputs);
  while (it != end) {
    auto call = std::make_unique<ChunkCall<R>>();
    call->chunk = true;
    call->name = task.name();
    std::vector<std::string> args;
    const std::size_t expect = std::min<std::size_t>(chunksize, 4096);
    args.reserve(expect);
    call->promises.reserve(expect);
    call->futures.reserve(expect);
    for (std::size_t i = 0; i < chunksize && it != end; ++i, ++it) {
      args.push_back(encode_args<std::decay_t<P>>(static_cast<std::decay_t<P>>(*it)));
      call->promises.emplace_back();
      call->futures.push_back(call->promises.back().get_future());
      call->sent.push_back(call->sent.size());
    }
    call->payload = chunk_payload(task.name(), args);
    for (const auto& f : call->futures) all.push_back(f);
    try {
      enqueue(std::unique_ptr<PoolCall>(std::move(call)));
    } catch (...) {
      for (auto& f : all) f.cancel();
      throw;
    }
  }
  return all;
}

}  // namespace keel::detail
