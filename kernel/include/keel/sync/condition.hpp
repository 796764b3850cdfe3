// keel::Condition: a condition variable bound to its lock (Python's Condition).
//
// Contract: constructed over a Mutex or a RecursiveMutex (or, by default, over
// a RecursiveMutex of its own, as Python's Condition() uses an RLock). It is
// itself Lockable, forwarding to that lock, so `std::unique_lock lk(cond)` and
// `LockGuard` work. wait* and notify* must be called with the lock held;
// otherwise they throw LockNotHeldError and change nothing (for a Mutex, which
// has no owner, "held" means locked by someone). wait releases the lock fully
// (a RecursiveMutex held at depth d is released and restored at depth d),
// sleeps until notified or the deadline, and re-acquires before returning.
// Timed forms return false when the deadline passed without a notification;
// forms with a predicate return its last value. There are no spurious
// returns: wait returns true only when a notify chose this waiter.
// notify(n) wakes the n longest waiting threads (FIFO), at most n; a waiter
// that timed out is never counted, and a notify that races a timeout is
// delivered (wait then returns true), so no notification is lost.
//
// Protocol: each waiter links a record with its own futex word into a FIFO
// list guarded by the lock; notify unlinks up to n records, sets each word
// and wakes it. A waiter's record lives on its stack; the notifier touches it
// only while holding the lock, and the waiter cannot return before it has the
// lock back, so the record outlives every touch.
//
// Invariants: SYNC-2 (no lost wake-up), SYNC-9 (RLock depth restored),
// SYNC-10 (notify(n) wakes at most n), SYNC-3 (misuse reported).
#pragma once

#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/recursive_mutex.hpp"

namespace keel {

/// Python's threading.Condition: a lock and the waits and notifications that go with it.
class KEEL_CAPABILITY("mutex") Condition {
 public:
  /// A condition over its own RecursiveMutex (Python's Condition() default).
  Condition() : lock_(&own_), is_recursive_(true) {}
  /// A condition over `m`, which must outlive it.
  explicit Condition(Mutex& m) : lock_(&m), is_recursive_(false) {}
  /// A condition over the recursive `m`, which must outlive it.
  explicit Condition(RecursiveMutex& m) : lock_(&m), is_recursive_(true) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;
  /// The lock it uses is not destroyed with it (unless it is its own).
  ~Condition() = default;

  /// Lockable, forwarding to the underlying lock.
  void lock() KEEL_ACQUIRE() KEEL_NO_TSA {
    if (is_recursive_) {
      rlock()->lock();
    } else {
      mlock()->lock();
    }
  }
  /// Lockable: try_lock of the underlying lock.
  bool try_lock() KEEL_TRY_ACQUIRE(true) KEEL_NO_TSA {
    return is_recursive_ ? rlock()->try_lock() : mlock()->try_lock();
  }
  /// Lockable: unlock of the underlying lock.
  void unlock() KEEL_RELEASE() KEEL_NO_TSA {
    if (is_recursive_) {
      rlock()->unlock();
    } else {
      mlock()->unlock();
    }
  }

  /// Releases the lock (held by the caller), sleeps until notified, and takes it again.
  void wait() { wait_impl(platform::Deadline::never()); }
  /// wait(), for at most `timeout`; false if it timed out (the lock is held again either way).
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_impl(platform::Deadline::after(timeout));
  }
  /// wait(), until `deadline` at most; false if it timed out (the lock is held again either way).
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) {
    return wait_impl(platform::Deadline::at(deadline));
  }

  /// Waits until pred() is true, checking it under the lock before each sleep.
  template <class Pred>
  void wait(Pred pred) {
    while (!pred()) wait_impl(platform::Deadline::never());
  }
  /// wait(pred), for at most `timeout`; returns pred()'s last value.
  template <class Rep, class Period, class Pred>
  bool wait_for(std::chrono::duration<Rep, Period> timeout, Pred pred) {
    return wait_pred(platform::Deadline::after(timeout), pred);
  }
  /// wait(pred), until `deadline` at most; returns pred()'s last value.
  template <class Clock, class Duration, class Pred>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline, Pred pred) {
    return wait_pred(platform::Deadline::at(deadline), pred);
  }

  /// The same waits against a platform deadline, for kernel code that has
  /// already converted its caller's timeout once.
  bool wait_deadline(const platform::Deadline& deadline) { return wait_impl(deadline); }
  /// wait_deadline with a predicate, as wait_until(deadline, pred).
  template <class Pred>
  bool wait_deadline(const platform::Deadline& deadline, Pred pred) {
    return wait_pred(deadline, pred);
  }

  /// Wakes up to n waiters, longest waiting first. n < 0 throws ValueError.
  void notify(int n = 1);
  /// Wakes every waiter.
  void notify_all();

  /// Number of threads currently waiting (lock must be held). Walks the
  /// waiter list: a diagnostic, so wait and notify keep no count for it.
  std::size_t waiting() const;

 private:
  struct Waiter {
    platform::FutexWord signaled{0};
    platform::Var<Waiter*> prev;
    platform::Var<Waiter*> next;
  };

  template <class Pred>
  bool wait_pred(const platform::Deadline& deadline, Pred& pred) {
    while (!pred()) {
      if (!wait_impl(deadline)) return pred();
    }
    return true;
  }

  // Releases and re-takes the lock, which the analysis cannot follow through
  // the Mutex/RecursiveMutex dispatch.
  bool wait_impl(const platform::Deadline& deadline) KEEL_NO_TSA;
  void check_held(const char* op) const;
  void push_back(Waiter* w);
  void unlink(Waiter* w);
  Mutex* mlock() const { return static_cast<Mutex*>(lock_); }
  RecursiveMutex* rlock() const { return static_cast<RecursiveMutex*>(lock_); }

  RecursiveMutex own_;
  void* lock_;
  bool is_recursive_;
  // The FIFO of waiters, guarded by the lock.
  platform::Var<Waiter*> head_{nullptr};
  platform::Var<Waiter*> tail_{nullptr};
};

}  // namespace keel
