// keel::wait and keel::as_completed: block on many futures at once (Python's
// concurrent.futures.wait and as_completed).
//
// Contract: wait(futures, [timeout], return_when) returns when the condition
// holds (first_completed: any future is done; first_exception: any finished
// with an exception, or all are done; all_completed: all are done) or the
// timeout passes, with the futures split into done and not_done (duplicates
// collapsed, input order kept). as_completed(futures, [timeout]) yields each
// distinct future once: those already done first, in input order, then the
// others as they complete; if the timeout (measured from the call) passes
// first, next() throws TimeoutError. Neither polls: both register an internal
// hook on every pending future, which the completing thread fires, and both
// unregister every hook before returning or being destroyed.
//
// Invariants: EXEC-7 (a hook fires exactly once, and never after it is
// unregistered), SYNC-2 (no lost wake-up of the waiting thread).
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <unordered_set>
#include <vector>

#include "keel/detail/next_iterator.hpp"
#include "keel/future/future.hpp"

namespace keel {

/// When wait() returns: at the first future done, the first to fail (or all done), or once all are done.
enum class ReturnWhen { first_completed, first_exception, all_completed };

namespace detail {

// One waiting thread and the hooks it placed on many futures. Completers push
// their hook onto a lock-free stack and signal; the waiter takes the whole
// stack at once.
class MultiWait {
 public:
  explicit MultiWait(std::size_t n);
  MultiWait(const MultiWait&) = delete;
  MultiWait& operator=(const MultiWait&) = delete;
  ~MultiWait() { unregister_all(); }

  // Registers hook i on core; returns false if the core was already final.
  bool watch(std::size_t i, FutureCore* core);
  void unregister_all();
  // Indices of hooks fired since the last call, in completion order; empty
  // once the deadline passed with nothing fired.
  std::vector<std::size_t> take(const platform::Deadline& deadline);
  // Indices of hooks fired since the last call, without waiting (empty if
  // none).
  std::vector<std::size_t> take_ready();

 private:
  struct Slot final : Hook {
    MultiWait* owner = nullptr;
    FutureCore* core = nullptr;
    std::size_t index = 0;
    // Written by a completer, read by the waiter after it took the stack.
    platform::Var<Slot*> next_ready{nullptr};
    bool internal() const noexcept override { return true; }
    void fire(FutureCore&) override { owner->push(this); }
  };
  void push(Slot* s);

  std::unique_ptr<Slot[]> slots_;
  std::size_t n_;
  platform::Atomic<Slot*> ready_{nullptr};
  // 0: nothing new; 1: something was pushed; 2: the waiter sleeps.
  platform::FutexWord signal_{0};
};

// The condition of wait() over cores (distinct, non-null).
std::vector<bool> wait_cores(const std::vector<FutureCore*>& cores, const platform::Deadline& deadline,
                             ReturnWhen when);

// The order as_completed yields n watched futures in, by index: those done
// at the start first, in input order, then the others as they complete.
// AsCompleted and AnyAsCompleted (any_future.hpp) keep the futures; this
// keeps the waiting.
class CompletionOrder {
 public:
  CompletionOrder(const std::vector<FutureCore*>& cores, const platform::Deadline& deadline);
  CompletionOrder(const CompletionOrder&) = delete;
  CompletionOrder& operator=(const CompletionOrder&) = delete;
  // The next index; nullopt after the last; TimeoutError past the deadline.
  std::optional<std::size_t> next();

 private:
  std::size_t n_;
  MultiWait wait_;
  platform::Deadline deadline_;
  std::vector<std::size_t> ready_;  // next to yield at the back
  std::size_t yielded_ = 0;
};

// The cores of distinct futures, in order.
template <class F, class Core>
std::vector<FutureCore*> cores_of(const std::vector<F>& fs, Core core) {
  std::vector<FutureCore*> cores;
  cores.reserve(fs.size());
  for (const auto& f : fs) cores.push_back(core(f));
  return cores;
}

// The futures in input order, each state once. Linear: a set of the states
// seen (as_completed over a 100k-task map must not cost 100k^2 compares).
template <class T>
std::vector<Future<T>> distinct(const std::vector<Future<T>>& fs) {
  std::vector<Future<T>> out;
  out.reserve(fs.size());
  std::unordered_set<const void*> seen;
  seen.reserve(fs.size());
  for (const auto& f : fs) {
    if (!f.valid()) throw InvalidStateError("wait/as_completed given a future with no state");
    if (seen.insert(state_of(f)).second) out.push_back(f);
  }
  return out;
}

}  // namespace detail

/// wait()'s answer: the futures split by whether they were final when it returned.
template <class T>
struct DoneAndNotDone {
  std::vector<Future<T>> done;      ///< the futures final when wait returned
  std::vector<Future<T>> not_done;  ///< the others
};

namespace detail {
template <class T>
DoneAndNotDone<T> wait_impl(const std::vector<Future<T>>& futures, const platform::Deadline& deadline,
                            ReturnWhen when) {
  auto fs = distinct(futures);
  const std::vector<bool> done =
      wait_cores(cores_of(fs, [](const Future<T>& f) { return state_of(f); }), deadline, when);
  DoneAndNotDone<T> r;
  for (std::size_t i = 0; i < fs.size(); ++i) (done[i] ? r.done : r.not_done).push_back(std::move(fs[i]));
  return r;
}
}  // namespace detail

/// Waits for `futures` (duplicates count once) until `when` holds.
template <class T>
DoneAndNotDone<T> wait(const std::vector<Future<T>>& futures, ReturnWhen when = ReturnWhen::all_completed) {
  return detail::wait_impl(futures, platform::Deadline::never(), when);
}
/// wait(), returning after `timeout` at the latest (then some may be not_done).
template <class T, class Rep, class Period>
DoneAndNotDone<T> wait(const std::vector<Future<T>>& futures, std::chrono::duration<Rep, Period> timeout,
                       ReturnWhen when = ReturnWhen::all_completed) {
  return detail::wait_impl(futures, platform::Deadline::after(timeout), when);
}

/// The sequence as_completed returns: call next() until it returns nullopt, or
/// iterate it with a range-for.
template <class T>
class AsCompleted {
 public:
  /// Watches `futures` (duplicates once each) until `deadline`; as_completed makes one.
  AsCompleted(const std::vector<Future<T>>& futures, const platform::Deadline& deadline)
      : fs_(detail::distinct(futures)),
        order_(detail::cores_of(fs_, [](const Future<T>& f) { return detail::state_of(f); }), deadline) {}
  AsCompleted(const AsCompleted&) = delete;
  AsCompleted& operator=(const AsCompleted&) = delete;

  /// What next() yields: each future, done.
  using value_type = Future<T>;
  /// The next future to be done (those done before the call first, in input order); nullopt after the last;
  /// TimeoutError past the deadline.
  std::optional<Future<T>> next() {
    const auto i = order_.next();
    if (!i) return std::nullopt;
    return fs_[*i];
  }

  /// An input iterator over the futures, as next() gives them.
  using iterator = detail::NextIterator<AsCompleted>;
  /// The first future to be done (blocks for it).
  iterator begin() { return iterator(this); }
  /// The end of the sequence.
  iterator end() { return iterator(); }

 private:
  std::vector<Future<T>> fs_;
  detail::CompletionOrder order_;
};

/// The futures in the order they become done (those done already first).
template <class T>
AsCompleted<T> as_completed(const std::vector<Future<T>>& futures) {
  return AsCompleted<T>(futures, platform::Deadline::never());
}
/// as_completed, whose next() throws TimeoutError once `timeout` (from this call) passes.
template <class T, class Rep, class Period>
AsCompleted<T> as_completed(const std::vector<Future<T>>& futures, std::chrono::duration<Rep, Period> timeout) {
  return AsCompleted<T>(futures, platform::Deadline::after(timeout));
}

}  // namespace keel
