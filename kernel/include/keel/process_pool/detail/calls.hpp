// keel::detail::PoolCall and its two kinds: the ProcessPool supervisor's
// record of one submitted task (one call, or a map chunk of calls), which
// holds what is sent to a worker and the future states its answer settles
// (a call's own; a chunk's one state, which keeps its calls' answers encoded
// until they are read or it is split into a future per call: a chunked map
// costs no future per call), and the helpers both pools' templates share to
// build them (make_call, submit_chunks, submit_star_chunks, map_deadline,
// watch_progress; ClusterPool's too). Not part of the API: the driver
// (kernel/src/process_pool/driver.cpp) alone uses the calls afterwards, and
// ProcessMapResults reads and splits the chunks.
//
// Contract: dispatch()/undispatch() move a call's futures into and out of
// FutureCore's `dispatched` phase, tied to a start slot, so cancel() reaches
// a task until its worker starts it; every settle path takes a future out of
// its slot first. A call's futures each get exactly one outcome. A call
// settles its states as a Promise would (a state still open when the call is
// discarded fails with BrokenPromiseError), but makes no stop state: a task
// in another process never receives a std::stop_token, so request_stop() on
// its future answers false, as Future documents for a task that takes none.
// A call is owned through OwnedCall / PoolCallPtr, whose deleter discards
// it: a single call and its future's state are one task block (CallBlock,
// from the task-block cache, with a short payload inside it), which lives
// until the owner discarded the call and the last Future handle is gone.
//
// Invariants: POOL-1 (one outcome per future, and per call of a chunk),
// POOL-2 (a cancelled call of a chunk is cut from its payload and never
// runs), POOL-7 (cancel until start, for a chunk and, once split, for each
// of its calls), EXEC-15 (a call's block, from the task-block cache, has
// one owner at a time: its state's reference count decides who frees it).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
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
#include "keel/executor/task_heap.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/inject.hpp"
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
  // Its owner is done with it (PoolCallPtr's deleter): a future still open
  // fails with BrokenPromiseError, and the call is destroyed, or (a
  // SingleCall) gives up the owner's reference to the block it shares with
  // its future's state.
  virtual void discard() noexcept = 0;
  // What the worker receives: the task's name (a u32 count, then its bytes),
  // then the call's encoded arguments (or a chunk's list of them). Read
  // only until discard().
  virtual std::string_view payload() const noexcept = 0;
  // The task's name, from the payload's head; empty if the payload is too
  // short to hold one (a malformed payload from another rank).
  std::string_view name() const noexcept {
    const std::string_view p = payload();
    std::uint32_t n = 0;
    if (p.size() < sizeof n) return {};
    std::memcpy(&n, p.data(), sizeof n);
    n = little_endian(n);
    return p.size() - sizeof n < n ? std::string_view{} : p.substr(sizeof n, n);
  }
  bool chunk = false;             // a chunk of calls (a map) rather than one call
  std::uint32_t slot_worker = 0;  // where it was last dispatched (driver's bookkeeping)
  std::uint32_t slot = 0;

 protected:
  PoolCall() = default;
  // Only through discard(): a SingleCall is not a heap object of its own.
  virtual ~PoolCall() = default;
};

// Who owns a call owns it through one of these: releasing it discards the call.
struct PoolCallDiscard {
  void operator()(PoolCall* c) const noexcept { c->discard(); }
};
template <class C>
using OwnedCall = std::unique_ptr<C, PoolCallDiscard>;
using PoolCallPtr = OwnedCall<PoolCall>;

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
class CallBlock;

// One call: its future's state lives in the same heap block, a CallBlock from
// the task-block cache (task_heap.hpp), as a thread pool's task does, so a
// submit allocates no state of its own and a burst of calls that follows
// another takes its blocks from the cache instead of malloc. The owner's
// reference (OwnedCall) is one of the state's; the caller's Future another.
template <class R>
class SingleCall final : public PoolCall {
 public:
  SingleCall(const SingleCall&) = delete;
  SingleCall& operator=(const SingleCall&) = delete;

  // A handle to the call's future, for its caller.
  Future<R> future() const { return make_future<R>(state_, true); }

  bool dispatch(const StartSlot& slot) override { return state_->dispatch(slot); }
  bool undispatch() override { return state_->undispatch(); }
  bool start_here() override { return start_state(*state_); }
  void complete(bool ok, std::string_view bytes) override {
    (void)state_->undispatch();  // an answer means it started (no-op after its notice)
    answer_state(*state_, ok, bytes);
  }
  void fail(std::exception_ptr e) override {
    (void)state_->undispatch();
    settle_state(*state_, e);
  }
  void cancel() override {
    (void)state_->undispatch();
    if (!state_->cancel())
      settle_state(*state_, std::make_exception_ptr(CancelledError("task cancelled before it started")));
  }
  void discard() noexcept override {
    abandon_state(*state_);
    heap_.reset();  // the future may be kept long after: a long payload goes now
    size_ = 0;
    state_->release();  // may destroy this call, with its block
  }
  std::string_view payload() const noexcept override { return {heap_ ? heap_.get() : inline_, size_}; }

  // Writes the payload (see PoolCall::payload) of a call of `name` with
  // these encoded arguments, in the call's block when it fits there: a
  // submit then allocates its block and nothing else. The bytes are
  // call_payload(name, args)'s.
  void set_payload(std::string_view name, std::string_view args) {
    const std::uint32_t n = little_endian(checked_count(name.size()));
    const std::size_t size = sizeof n + name.size() + args.size();
    char* out = inline_;
    if (size > sizeof inline_) {
      heap_ = std::make_unique_for_overwrite<char[]>(size);
      out = heap_.get();
    } else {
      heap_.reset();  // a payload written before (payload() reads heap_ when it is set)
    }
    std::memcpy(out, &n, sizeof n);
    if (!name.empty()) std::memcpy(out + sizeof n, name.data(), name.size());
    if (!args.empty()) std::memcpy(out + sizeof n + name.size(), args.data(), args.size());
    size_ = size;
  }

 private:
  friend class CallBlock<R>;
  explicit SingleCall(FutureState<R>* state) : state_(state) {}
  ~SingleCall() override = default;

  static std::uint32_t checked_count(std::size_t n) {
    if (n > std::numeric_limits<std::uint32_t>::max()) codec_error("a task name of " + std::to_string(n) + " bytes");
    return static_cast<std::uint32_t>(n);
  }

  FutureState<R>* const state_;  // the block's state, this call's neighbour
  std::size_t size_ = 0;
  std::unique_ptr<char[]> heap_;  // the payload, when longer than inline_
  // 96 bytes: a name of 60 and arguments of 32 fit, and a call returning
  // an int or a std::string still fits a 256-byte block (task_heap.hpp).
  char inline_[96];
};

// A SingleCall and its future's state in one task block. The state's
// reference count covers both: the block goes when the owner has discarded
// the call and the last Future handle is gone.
template <class R>
class CallBlock final : public FutureState<R> {
 public:
  CallBlock() : call(this) {}
  CallBlock(const CallBlock&) = delete;
  CallBlock& operator=(const CallBlock&) = delete;
  static void* operator new(std::size_t n) { return task_block_allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { task_block_deallocate(p, n); }
  static void* operator new(std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
  static void operator delete(void* p, std::size_t, std::align_val_t a) noexcept { ::operator delete(p, a); }

  SingleCall<R> call;
};

// A new call, owned by the caller (its state's first reference).
template <class R>
OwnedCall<SingleCall<R>> new_call() {
  return OwnedCall<SingleCall<R>>(&(new CallBlock<R>())->call);
}

// What a chunk's own future holds: nothing. Its calls' results stay encoded
// in the ChunkState until a reader decodes each in turn.
struct ChunkDone {};

// Where a reader is in a chunk's answer: the next call's index and where its
// entry starts (0: at the first, after the count). Calls are read in order.
struct ChunkCursor {
  std::size_t call = 0;
  std::size_t offset = 0;
};

// A chunk of calls of one task: one frame to the worker, one answer back (a
// list of per-call answers). Until it is split, the whole chunk is one future
// (this state) and its answer stays here, encoded: a map's reader decodes
// each call's result when it reaches it (take_call), so a call costs no
// future state, no atomic step and no cache line moved between threads of
// its own. split_into() gives every call its own future, in the phase the chunk
// has reached (pending, dispatched to its slot, running, or its outcome),
// and from then on each call is dispatched, started and settled as its own:
// a user's cancel of one call kills the shared slot, so the worker skips the
// whole frame, and the calls nobody cancelled are sent again without it.
//
// lock_ orders split_into() (any thread holding the map's results) against the
// supervisor's steps and caller_runs; futures are settled only after it is
// released, so no user code (a done callback, a map's progress) runs under
// it. Once `over_`, the outcome and the calls are written for good: readers
// read them without the lock after the chunk's future is final, or after
// `split_` (acquire).
template <class R>
class ChunkState final : public FutureState<ChunkDone> {
 public:
  using StartSlot = FutureCore::StartSlot;
  // n >= 1 calls (submit_chunks never makes an empty chunk).
  explicit ChunkState(std::size_t n) : n_(n) {}
  ~ChunkState() override {
    calls_mark_.read();
    answer_mark_.written();  // destroying them writes them (as ~FutureCore's error)
    for (FutureState<R>* s : calls_) {
      abandon_state(*s);
      s->release();
    }
  }
  ChunkState(const ChunkState&) = delete;
  ChunkState& operator=(const ChunkState&) = delete;

  std::size_t size() const { return n_; }

  // Call i's result (at.call <= i < size()), for a reader of an unsplit
  // chunk whose future it saw final, `at` its place in the answer: the
  // chunk's error, CancelledError, the call's RemoteError, or its value
  // decoded here.
  R take_call(std::size_t i, ChunkCursor& at) {
    throw_unless_finished("result");
    if (auto e = observed_error()) std::rethrow_exception(e);
    answer_mark_.read();
    const auto [ok, bytes] = entry(i, at);
    if (ok) return decode_result<R>(bytes);
    throw decode_error(bytes);
  }

  // Appends one future per call to `out`, in call order, splitting the chunk
  // first if it is not yet split.
  void split_into(std::vector<Future<R>>& out) {
    bool settle = false;
    if (!split_.load(std::memory_order_acquire)) {
      std::vector<FutureState<R>*> made;
      made.reserve(n_);
      try {
        for (std::size_t i = 0; i < n_; ++i) made.push_back(new FutureState<R>());
      } catch (...) {
        for (FutureState<R>* s : made) s->release();
        throw;
      }
      LockGuard g(lock_);
      if (!is_split()) {
        calls_mark_.written();
        sent_mark_.written();
        calls_ = std::move(made);
        made.clear();
        sent_.resize(n_);
        for (std::size_t i = 0; i < n_; ++i) sent_[i] = i;
        mirror_stage();
        settle = over_.load();  // the supervisor settled only this future: the calls are settled below
        split_.store(true, std::memory_order_release);
      }
      for (FutureState<R>* s : made) s->release();  // another thread split it meanwhile
    }
    if (settle) settle_calls();
    calls_mark_.read();
    for (FutureState<R>* s : calls_) out.push_back(make_future<R>(s, true));
  }

  // PoolCall's steps (the supervisor's, and start_here the submitter's);
  // `payload` is the chunk's frame, cut when calls of a split chunk were
  // cancelled (POOL-2: a cancelled call never runs).
  bool dispatch(const StartSlot& slot, std::string& payload) {
    bool split = false;
    {
      LockGuard g(lock_);
      if (over_.load()) return false;
      if (!is_split()) {
        if (!FutureCore::dispatch(slot)) return false;
        stage_.store(phase() == running ? Stage::running : Stage::sent);
        sent_slot_.store(slot);
        return true;
      }
      calls_mark_.read();
      sent_mark_.read();
      std::vector<std::size_t> keep;
      keep.reserve(sent_.size());
      for (std::size_t i : sent_) {
        if (calls_[i]->dispatch(slot)) keep.push_back(i);
      }
      cut_to(keep, payload);
      if (!sent_.empty()) return true;
      split = end_locked(Outcome::cancelled);  // every call was cancelled: so is the chunk
    }
    settle_all(split);
    return false;
  }
  bool undispatch() {
    LockGuard g(lock_);
    return undispatch_locked();
  }
  bool start_here(std::string& payload) {
    bool split = false;
    {
      LockGuard g(lock_);
      if (over_.load()) return false;
      if (!is_split()) {
        if (!start_state(*this)) return false;
        stage_.store(Stage::running);
        return true;
      }
      calls_mark_.read();
      sent_mark_.read();
      std::vector<std::size_t> keep;
      for (std::size_t i : sent_) {
        if (start_state(*calls_[i])) keep.push_back(i);
      }
      cut_to(keep, payload);
      if (!sent_.empty()) return true;
      split = end_locked(Outcome::cancelled);  // every call was cancelled: so is the chunk
    }
    settle_all(split);
    return false;
  }
  // The worker's answer: a std::vector<std::pair<bool, std::string>>
  // encoded, a u32 count, then per call a bool and a string. All of it is
  // checked before any call is settled (a malformed answer fails every call);
  // the answers stay in one copy of `bytes`, each call's a slice of it.
  void complete(bool ok, std::string_view bytes) {
    bool split = false;
    {
      LockGuard g(lock_);
      (void)undispatch_locked();  // an answer means it started (no-op after its notice)
      if (over_.load()) return;
      Outcome outcome = Outcome::answered;
      sent_mark_.read();
      answer_mark_.written();
      try {
        if (!ok) throw decode_error(bytes);
        Decoder d(bytes);
        const std::size_t n = d.get_size(codec_min_size<std::pair<bool, std::string>>());
        if (n != (is_split() ? sent_.size() : n_)) throw ProtocolError("chunk answer has the wrong number of results");
        for (std::size_t j = 0; j < n; ++j) {
          (void)d.get<bool>();
          (void)d.get_view(d.get_size(1));
        }
        d.expect_end();
        answer_.assign(bytes);
      } catch (...) {
        failure_ = std::current_exception();
        outcome = Outcome::failed;
      }
      split = end_locked(outcome);
    }
    settle_all(split);
  }
  void fail(std::exception_ptr e) {
    bool split = false;
    {
      LockGuard g(lock_);
      (void)undispatch_locked();
      if (over_.load()) return;
      answer_mark_.written();
      failure_ = std::move(e);
      split = end_locked(Outcome::failed);
    }
    settle_all(split);
  }
  void cancel_all() {
    bool split = false;
    {
      LockGuard g(lock_);
      (void)undispatch_locked();
      if (over_.load()) return;
      split = end_locked(Outcome::cancelled);
    }
    settle_all(split);
  }
  // The call is destroyed: whatever is still open fails, as a Promise
  // destroyed unset.
  void abandon() noexcept {
    bool split = false;
    {
      LockGuard g(lock_);
      if (over_.load()) return;
      answer_mark_.written();
      failure_ = std::make_exception_ptr(BrokenPromiseError("promise destroyed without setting a result"));
      split = end_locked(Outcome::failed);
    }
    settle_all(split);
  }

 private:
  enum class Stage : std::uint8_t { queued, sent, running };
  enum class Outcome : std::uint8_t { answered, failed, cancelled };

  // Whether the chunk was split, for a holder of lock_ (which orders it).
  bool is_split() const KEEL_REQUIRES(lock_) { return split_.load(std::memory_order_relaxed); }
  // The answer's entry for call i (in sent_ order), at or after `at`, which
  // moves past it: whether the call succeeded, and its encoded result or
  // error (a view into answer_, which complete() checked whole).
  std::pair<bool, std::string_view> entry(std::size_t i, ChunkCursor& at) const {
    if (at.offset == 0) at.offset = 4;  // the count
    Decoder d(std::string_view(answer_).substr(at.offset));
    for (;;) {
      const bool ok = d.get<bool>();
      const std::string_view bytes = d.get_view(d.get_size(1));
      at.offset = static_cast<std::size_t>(bytes.data() + bytes.size() - answer_.data());
      if (at.call++ == i) return {ok, bytes};
    }
  }
  // Takes the chunk (and each call of a split one) out of its slot: running
  // if the worker started it, else pending (a slot still sent is killed
  // first). Returns whether it started.
  bool undispatch_locked() KEEL_REQUIRES(lock_) {
    bool started = FutureCore::undispatch();
    if (is_split()) {
      calls_mark_.read();
      sent_mark_.read();
      started = false;
      for (std::size_t i : sent_) started = calls_[i]->undispatch() || started;
    } else {
      stage_.store(started ? Stage::running : Stage::queued);
    }
    return started;
  }
  // New calls take the phase the chunk has reached (its outcome, if over,
  // is given by settle_calls once the lock is released).
  void mirror_stage() KEEL_REQUIRES(lock_) {
    if (!over_.load() && phase() == cancelled) {  // its reader cancelled it
      for (FutureState<R>* s : calls_) (void)s->cancel();
      return;
    }
    switch (stage_.load()) {
      case Stage::queued:
        break;
      case Stage::sent:
        if (KEEL_INJECTED(chunk_split_ignores_sent)) break;  // the calls would read pending: cancel() wins unseen
        for (FutureState<R>* s : calls_) (void)s->dispatch(sent_slot_.load());
        break;
      case Stage::running:
        for (FutureState<R>* s : calls_) (void)s->start();
        break;
    }
  }
  // The chunk is over with `outcome`; returns whether its calls are the
  // caller's to settle (split before this; a later split settles them itself).
  bool end_locked(Outcome outcome) KEEL_REQUIRES(lock_) {
    over_.store(true);
    outcome_.store(outcome);
    return !KEEL_INJECTED(chunk_settle_skips_split) && is_split();
  }
  // Gives the outcome (over_, so written for good) to the chunk's future,
  // and to its calls if `split` (end_locked's answer).
  void settle_all(bool split) noexcept {
    if (split) settle_calls();
    answer_mark_.read();
    switch (outcome_.load()) {
      case Outcome::answered:
        if (begin_completion()) {
          emplace();
          finish(nullptr);
        }
        break;
      case Outcome::failed:
        settle_state(*this, failure_);
        break;
      case Outcome::cancelled:
        if (!cancel()) settle_state(*this, std::make_exception_ptr(CancelledError("task cancelled before it started")));
        break;
    }
  }
  void settle_calls() noexcept {
    calls_mark_.read();
    sent_mark_.read();
    answer_mark_.read();
    switch (outcome_.load()) {
      case Outcome::answered: {
        ChunkCursor at;
        for (std::size_t j = 0; j < sent_.size(); ++j) {
          try {
            const auto [ok, bytes] = entry(j, at);
            answer_state(*calls_[sent_[j]], ok, bytes);
          } catch (...) {  // complete() checked every entry, and answer_state settles its state whatever the bytes
          }
        }
        break;
      }
      case Outcome::failed:
        for (FutureState<R>* s : calls_) settle_state(*s, failure_);
        break;
      case Outcome::cancelled:
        for (FutureState<R>* s : calls_) {
          if (!s->cancel())
            settle_state(*s, std::make_exception_ptr(CancelledError("task cancelled before it started")));
        }
        break;
    }
  }
  // Keeps only the calls `keep` (a subsequence of `sent_`) in the payload.
  void cut_to(std::vector<std::size_t>& keep, std::string& payload) KEEL_REQUIRES(lock_) {
    if (!KEEL_INJECTED(chunk_cut_keeps_cancelled) && !keep.empty() && keep.size() != sent_.size()) {
      Decoder d(payload);
      auto task = d.get<std::string>();
      auto args = d.get<std::vector<std::string>>();
      std::vector<std::string> cut;
      cut.reserve(keep.size());
      // keep is a subsequence of sent_: walk sent_ once, to each kept call.
      std::size_t j = 0;
      for (std::size_t call : keep) {
        while (sent_[j] != call) ++j;
        cut.push_back(std::move(args[j++]));
      }
      payload = encode(task, cut);
    }
    sent_mark_.written();
    sent_ = std::move(keep);
  }

  const std::size_t n_;
  Mutex lock_;
  // Written once, under lock_; read under it (relaxed) or, outside it, with
  // acquire (split_into's fast path).
  platform::Atomic<bool> split_{false};
  platform::Var<Stage> stage_;          // guarded by lock_; unsplit: where the chunk is
  platform::Var<StartSlot> sent_slot_;  // guarded by lock_; unsplit, Stage::sent: its slot
  // Written under lock_ until over_, read-only from then on (see the top).
  platform::Var<bool> over_;
  platform::Var<Outcome> outcome_;
  std::exception_ptr failure_;                            // Outcome::failed
  std::string answer_;                                    // Outcome::answered: the worker's answer
  [[no_unique_address]] platform::RaceMark answer_mark_;  // failure_ and answer_
  // Written by split_into under lock_, then read-only.
  std::vector<FutureState<R>*> calls_;  // split: one reference to each call's state
  [[no_unique_address]] platform::RaceMark calls_mark_;
  // Written by split_into and cut by the supervisor, under lock_ until over_.
  std::vector<std::size_t> sent_;  // split: the calls in the payload, in its order
  [[no_unique_address]] platform::RaceMark sent_mark_;
};

// The supervisor's record of one chunk: it holds one reference to the
// chunk's state, whose future the map's reader holds.
template <class R>
class ChunkCall final : public PoolCall {
 public:
  // n >= 1 calls; payload is chunk_payload's.
  ChunkCall(std::size_t n, std::string payload) : state_(new ChunkState<R>(n)), payload_(std::move(payload)) {
    chunk = true;
  }
  ~ChunkCall() override {
    state_->abandon();
    state_->release();
  }
  void discard() noexcept override { delete this; }
  std::string_view payload() const noexcept override { return payload_; }
  ChunkCall(const ChunkCall&) = delete;
  ChunkCall& operator=(const ChunkCall&) = delete;

  // The chunk's future (ChunkState's, for its reader).
  Future<ChunkDone> future() const { return make_future<ChunkDone>(state_, true); }
  std::size_t size() const { return state_->size(); }

  bool dispatch(const StartSlot& slot) override { return state_->dispatch(slot, payload_); }
  bool undispatch() override { return state_->undispatch(); }
  bool start_here() override { return state_->start_here(payload_); }
  void complete(bool ok, std::string_view bytes) override { state_->complete(ok, bytes); }
  void fail(std::exception_ptr e) override { state_->fail(std::move(e)); }
  void cancel() override { state_->cancel_all(); }

 private:
  ChunkState<R>* state_;  // one reference, released on destruction
  std::string payload_;   // cut to the calls still wanted, as the chunk is sent again
};

// A chunk's state, from its future.
template <class R>
ChunkState<R>& chunk_state(const Future<ChunkDone>& f) {
  return static_cast<ChunkState<R>&>(*state_of(f));
}

// A map's chunks, as both pools' maps hand them to their results: each
// chunk's future in input order, every chunk `chunksize` calls but the last.
// With chunksize 1 every call is a call of its own, and `calls` holds their
// futures instead.
template <class R>
struct MapChunks {
  std::vector<Future<ChunkDone>> chunks;  // chunksize > 1
  std::vector<Future<R>> calls;           // chunksize 1
  std::size_t chunksize = 1;
  std::size_t total = 0;  // calls in all
  // The calls of chunk c.
  std::size_t size_of(std::size_t c) const { return chunk_state<R>(chunks[c]).size(); }
  // Every call's own future, in input order (splits every chunk).
  std::vector<Future<R>> split() const {
    if (chunks.empty()) return calls;
    std::vector<Future<R>> out;
    out.reserve(total);
    for (const auto& c : chunks) chunk_state<R>(c).split_into(out);
    return out;
  }
};

// What a worker receives for one call of `name`, and for a chunk of calls.
std::string call_payload(const std::string& name, const std::string& args);
std::string chunk_payload(const std::string& name, const std::vector<std::string>& args);

// One call of the task `name` with its arguments already encoded.
template <class R>
OwnedCall<SingleCall<R>> call_with(const std::string& name, const std::string& encoded_args) {
  auto call = new_call<R>();
  call->set_payload(name, encoded_args);
  return call;
}

// One call of `task` with `args`, encoded (both pools' submit, ClusterPool's too).
template <class R, class... P, class... A>
OwnedCall<SingleCall<R>> make_call(const TaskRef<R(P...)>& task, A&&... args) {
  return call_with<R>(task.name(), encode_args<std::decay_t<P>...>(static_cast<std::decay_t<P>>(args)...));
}

// A map's deadline, counted from the call (before its inputs are read).
inline platform::Deadline map_deadline(const std::optional<std::chrono::nanoseconds>& timeout) {
  return timeout ? platform::Deadline::after(*timeout) : platform::Deadline::never();
}

// A map's calls in chunks of `chunksize` (both pools' map, map_unordered
// and starmap): every input is read (encoded by encode_one) before this
// returns, and each chunk goes to `enqueue` as one call (a SingleCall with
// chunksize 1: a call of its own, as submit() makes; else a ChunkCall). If
// an enqueue throws, the futures made so far are cancelled and it rethrows.
template <class R, class... P, class Range, class EncodeOne, class Enqueue>
MapChunks<R> submit_chunks_with(const TaskRef<R(P...)>& task, Range& inputs, std::size_t chunksize, const char* who,
                                EncodeOne&& encode_one, Enqueue&& enqueue) {
  if (chunksize == 0) throw ValueError(std::string(who) + ": chunksize must be at least 1");
  MapChunks<R> out;
  out.chunksize = chunksize;
  // One allocation for the whole map where the count is known, rather than
  // a dozen regrowths that each move every future made so far.
  if constexpr (std::ranges::sized_range<Range>) {
    const auto n = static_cast<std::size_t>(std::ranges::size(inputs));
    if (chunksize == 1) {
      out.calls.reserve(n);
    } else {
      out.chunks.reserve(n / chunksize + 1);
    }
  }
  const auto enqueue_or_cancel = [&](PoolCallPtr call) {
    try {
      enqueue(std::move(call));
    } catch (...) {
      for (auto& f : out.calls) f.cancel();
      for (auto& f : out.chunks) f.cancel();
      throw;
    }
  };
  auto it = std::begin(inputs);
  const auto end = std::end(inputs);
  std::vector<std::string> args;  // one chunk's, its buffer reused by the next
  if (chunksize > 1) args.reserve(std::min<std::size_t>(chunksize, 4096));
  while (it != end) {
    if (chunksize == 1) {
      auto call = call_with<R>(task.name(), encode_one(*it));
      ++it;
      out.calls.push_back(call->future());
      ++out.total;
      enqueue_or_cancel(std::move(call));
      continue;
    }
    args.clear();
    for (std::size_t i = 0; i < chunksize && it != end; ++i, ++it) {
      args.push_back(encode_one(*it));
    }
    OwnedCall<ChunkCall<R>> call(new ChunkCall<R>(args.size(), chunk_payload(task.name(), args)));
    out.chunks.push_back(call->future());
    out.total += args.size();
    enqueue_or_cancel(std::move(call));
  }
  return out;
}

// map's calls: one argument each.
template <class R, class P, class Range, class Enqueue>
MapChunks<R> submit_chunks(const TaskRef<R(P)>& task, Range& inputs, std::size_t chunksize, const char* who,
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
MapChunks<R> submit_star_chunks(const TaskRef<R(P...)>& task, Range& inputs, std::size_t chunksize, const char* who,
                                Enqueue&& enqueue) {
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

// A map's progress callback (if any) watching every call: a chunk counts
// for its calls when it is final, less those its split calls counted on
// their own (ProcessMapResults::futures()).
template <class R>
std::shared_ptr<ProgressTracker> watch_progress(const MapProgress& fn, const MapChunks<R>& m) {
  auto tracker = make_progress(fn, m.total, m.chunks.size());
  if (tracker) {
    for (const Future<R>& f : m.calls) ProgressTracker::watch(tracker, f);
    for (std::size_t c = 0; c < m.chunks.size(); ++c)
      ProgressTracker::watch_chunk(tracker, m.chunks[c], c, m.size_of(c));
  }
  return tracker;
}
// As above, for calls each with its own future (map_unordered's, split).
template <class R>
std::shared_ptr<ProgressTracker> watch_progress(const MapProgress& fn, const std::vector<Future<R>>& fs) {
  auto tracker = make_progress(fn, fs.size());
  if (tracker) {
    for (const Future<R>& f : fs) ProgressTracker::watch(tracker, f);
  }
  return tracker;
}

}  // namespace keel::detail
