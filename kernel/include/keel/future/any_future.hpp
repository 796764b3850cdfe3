// keel::AnyFuture: a handle to a future of any type, and wait() and
// as_completed() over futures of different types (Python's wait and
// as_completed take any mix of futures; keel's typed forms take one
// std::vector<Future<T>>, and stay as they are).
//
// Contract: an AnyFuture is made from any Future<T> (implicitly) and shares
// its state, as a copy of the Future would: status, cancel, done, waits and
// exception() read and act on that state, and the value stays with the typed
// handles. wait(std::vector<AnyFuture>, ...) and as_completed(...) keep the
// contract of their typed forms in keel/future/wait.hpp (duplicates once,
// input order among those already done, the timeout from the call, no
// polling: the same MultiWait hooks), so `keel::wait({fi, fs})` over a
// Future<int> and a Future<std::string> works as Python's does.
//
// Invariants: EXEC-7 (the hooks fire exactly once, never after they were
// unregistered), SYNC-2 (no lost wake-up of the waiting thread), EXEC-9 (a
// future read done is read with what its completer wrote).
#pragma once

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "keel/detail/next_iterator.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"

namespace keel {

/// A shared handle to a future of any type: its state and status, without its value.
class AnyFuture {
 public:
  /// A handle with no state: valid() is false, and every other call throws InvalidStateError.
  AnyFuture() noexcept = default;
  /// Another handle to f's state (f may have no state: then neither has this one).
  template <class T>
  AnyFuture(const Future<T>& f) noexcept  // NOLINT(google-explicit-constructor): mixed lists convert
      : c_(detail::state_of(f)) {
    if (c_) c_->add_ref();
  }
  /// Another handle to the same state.
  AnyFuture(const AnyFuture& o) noexcept : c_(o.c_) {
    if (c_) c_->add_ref();
  }
  /// Takes o's state; o is left without one.
  AnyFuture(AnyFuture&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  /// Refers to o's state from now on (copy or move).
  AnyFuture& operator=(AnyFuture o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  /// Drops this handle.
  ~AnyFuture() {
    if (c_) c_->release();
  }

  /// Whether this handle has a state.
  bool valid() const noexcept { return c_ != nullptr; }
  /// The phase now (as Future::status).
  FutureStatus status() const { return core().status(); }
  /// Cancels the future if it has not started; true only to the call that cancelled it.
  bool cancel() { return core().cancel(); }
  /// Whether it was cancelled.
  bool cancelled() const { return core().phase() == detail::FutureCore::cancelled; }
  /// Whether it is final (cancelled or finished).
  bool done() const { return core().done(); }
  /// Blocks until the future is final.
  void wait() const { core().wait_until(platform::Deadline::never()); }
  /// Blocks until final or the timeout passes; returns whether it is final.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return core().wait_until(platform::Deadline::after(timeout));
  }
  /// The task's exception (null if it returned normally), after waiting; CancelledError if cancelled.
  std::exception_ptr exception() const { return detail::exception_by(core(), platform::Deadline::never()); }

  /// Whether this handle and f share one state.
  template <class T>
  bool refers_to(const Future<T>& f) const noexcept {
    return c_ != nullptr && c_ == detail::state_of(f);
  }
  /// Whether both handles share one state.
  friend bool operator==(const AnyFuture& a, const AnyFuture& b) noexcept { return a.c_ == b.c_; }

 private:
  friend detail::FutureCore* any_core(const AnyFuture& f) noexcept { return f.c_; }
  detail::FutureCore& core() const {
    if (!c_) throw InvalidStateError("future has no state (default-constructed or moved from)");
    return *c_;
  }
  detail::FutureCore* c_ = nullptr;
};

/// wait()'s answer over mixed futures: split by whether they were final when it returned.
struct AnyDoneAndNotDone {
  std::vector<AnyFuture> done;      ///< the futures final when wait returned
  std::vector<AnyFuture> not_done;  ///< the others
};

namespace detail {

// The futures in input order, each state once (as distinct() in wait.hpp).
inline std::vector<AnyFuture> distinct_any(const std::vector<AnyFuture>& fs) {
  std::vector<AnyFuture> out;
  out.reserve(fs.size());
  std::unordered_set<const void*> seen;
  seen.reserve(fs.size());
  for (const auto& f : fs) {
    if (!f.valid()) throw InvalidStateError("wait/as_completed given a future with no state");
    if (seen.insert(any_core(f)).second) out.push_back(f);
  }
  return out;
}

inline AnyDoneAndNotDone wait_any_impl(const std::vector<AnyFuture>& futures, const platform::Deadline& deadline,
                                       ReturnWhen when) {
  auto fs = distinct_any(futures);
  const std::vector<bool> done =
      wait_cores(cores_of(fs, [](const AnyFuture& f) { return any_core(f); }), deadline, when);
  AnyDoneAndNotDone r;
  for (std::size_t i = 0; i < fs.size(); ++i) (done[i] ? r.done : r.not_done).push_back(std::move(fs[i]));
  return r;
}

}  // namespace detail

/// wait() over futures of different types: keel::wait({f_int, f_string}, ReturnWhen::first_completed).
inline AnyDoneAndNotDone wait(const std::vector<AnyFuture>& futures, ReturnWhen when = ReturnWhen::all_completed) {
  return detail::wait_any_impl(futures, platform::Deadline::never(), when);
}
/// wait() over futures of different types, returning after `timeout` at the latest.
template <class Rep, class Period>
AnyDoneAndNotDone wait(const std::vector<AnyFuture>& futures, std::chrono::duration<Rep, Period> timeout,
                       ReturnWhen when = ReturnWhen::all_completed) {
  return detail::wait_any_impl(futures, platform::Deadline::after(timeout), when);
}

/// as_completed's sequence over futures of different types (as AsCompleted<T>).
class AnyAsCompleted {
 public:
  /// Watches `futures` (duplicates once each) until `deadline`; as_completed makes one.
  AnyAsCompleted(const std::vector<AnyFuture>& futures, const platform::Deadline& deadline)
      : fs_(detail::distinct_any(futures)),
        order_(detail::cores_of(fs_, [](const AnyFuture& f) { return any_core(f); }), deadline) {}
  AnyAsCompleted(const AnyAsCompleted&) = delete;
  AnyAsCompleted& operator=(const AnyAsCompleted&) = delete;

  /// What next() yields: each future, done.
  using value_type = AnyFuture;
  /// The next future to be done; nullopt after the last; TimeoutError past the deadline.
  std::optional<AnyFuture> next() {
    const auto i = order_.next();
    if (!i) return std::nullopt;
    return fs_[*i];
  }

  /// An input iterator over the futures, as next() gives them.
  using iterator = detail::NextIterator<AnyAsCompleted>;
  /// The first future to be done (blocks for it).
  iterator begin() { return iterator(this); }
  /// The end of the sequence.
  iterator end() { return iterator(); }

 private:
  std::vector<AnyFuture> fs_;
  detail::CompletionOrder order_;
};

/// The futures, of any types, in the order they become done (those done already first).
inline AnyAsCompleted as_completed(const std::vector<AnyFuture>& futures) {
  return AnyAsCompleted(futures, platform::Deadline::never());
}
/// as_completed over futures of different types, whose next() throws TimeoutError once `timeout` passes.
template <class Rep, class Period>
AnyAsCompleted as_completed(const std::vector<AnyFuture>& futures, std::chrono::duration<Rep, Period> timeout) {
  return AnyAsCompleted(futures, platform::Deadline::after(timeout));
}

}  // namespace keel
