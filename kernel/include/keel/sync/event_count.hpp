// keel::detail::EventCount: lets threads sleep until a condition kept
// elsewhere (a lock-free ring that is not empty) may hold, at no cost to the
// thread that makes it hold while nobody sleeps
// (proofs/design/executor_ring.pml's event count).
//
// Contract. A waiter calls prepare_wait(), looks at its condition again, and
// then either calls cancel_wait() (it holds) or wait(key) (it does not). A
// notifier makes the condition hold and then calls notify(n), which wakes up
// to n threads in wait() and returns at once when none is registered. Both
// the notifier's publication and the waiter's second look must be seq_cst
// operations (TaskRing's push and pop are): with the registration and the
// notifier's read of it, also seq_cst, they are a Dekker pair. Either the
// waiter's look sees the condition, or the notifier sees the waiter.
//
// The waiter reads the epoch before it registers, and notify() advances the
// epoch before it wakes. So a notify that comes between the waiter's second
// look and its futex_wait changes the word, and the wait returns at once.
// wait() may return for any reason (a spurious wake-up, a notify meant for
// another thread); callers look at the condition again in a loop, as with
// every futex.
//
// Invariants: SYNC-16 (no waiter sleeps through a notify issued after its
// condition held).
#pragma once

#include <cstdint>

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/config.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"

namespace keel::detail {

class EventCount {
 public:
  using Key = std::int32_t;

  EventCount() = default;
  EventCount(const EventCount&) = delete;
  EventCount& operator=(const EventCount&) = delete;

  Key prepare_wait() {
    // Acquire: a later read of the epoch never moves before this one, so a
    // notify after the registration below always changes what the key says.
    const Key key = epoch_.load(std::memory_order_acquire);
    waiters_.fetch_add(
        1, KEEL_INJECTED(event_count_register_relaxed) ? std::memory_order_relaxed : std::memory_order_seq_cst);
    return key;
  }

  void cancel_wait() { waiters_.fetch_sub(1, std::memory_order_relaxed); }

  platform::WaitResult wait(Key key, const platform::Deadline& deadline = platform::Deadline::never()) {
    // Planted bug: the key is read again here, after the caller's second look,
    // so a notify between the two is lost.
    if (KEEL_INJECTED(event_count_key_read_late)) key = epoch_.load(std::memory_order_acquire);
    const platform::WaitResult r = platform::futex_wait(epoch_, key, deadline);
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    return r;
  }

  // How many threads are registered, read seq_cst: the notifier's half of the
  // Dekker pair, for a notifier that decides something (whom else to wake)
  // before it calls notify().
  std::int32_t waiting() const {
    return waiters_.load(KEEL_INJECTED(event_count_notify_relaxed) ? std::memory_order_relaxed
                                                                   : std::memory_order_seq_cst);
  }

  // Returns how many threads it woke.
  int notify(int n) {
    if (waiting() == 0) return 0;
    // Planted bug: a waiter between its second look and futex_wait keeps
    // sleeping, since the word it waits on did not change.
    if (!KEEL_INJECTED(event_count_wake_without_advance)) epoch_.fetch_add(1, std::memory_order_release);
    return platform::futex_wake(epoch_, n);
  }

  // Threads between prepare_wait() and the end of wait() or cancel_wait().
  std::int32_t waiters() const { return waiters_.load(std::memory_order_relaxed); }

 private:
  // Apart: notifiers read waiters_ on every publication, and waiters write
  // it only when they are about to sleep.
  platform::Atomic<std::int32_t> waiters_{0};
  KEEL_CACHE_ALIGNED platform::FutexWord epoch_{0};
};

}  // namespace keel::detail
