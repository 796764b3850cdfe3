// keel::RobustMutex: a lock for processes that share memory, which survives
// the death of its holder.
//
// Contract: place it in shared memory and construct it there once, in the
// process that creates the memory (`new (p) keel::RobustMutex`); every other
// process uses the same bytes (`std::launder(static_cast<RobustMutex*>(p))`)
// and never constructs it again. lock/try_lock/try_lock_for/try_lock_until/
// unlock meet the standard Lockable and TimedLockable requirements, so
// std::unique_lock and keel::LockGuard work with it.
//
// Owner death: when the thread or process holding it dies (any way, SIGKILL
// included), the next locker takes it over instead of waiting for ever. That
// locker is told: lock() returns LockResult::owner_died, and owner_died()
// (asked while holding it, after any of the acquiring calls) is true. The
// takeover is final: the mutex is usable as before, and the new holder decides
// whether the state it guards needs repair. recoveries() counts takeovers over
// the mutex's life (all processes together).
//
// Ownership: it is owned by a thread (unlike keel::Mutex, which any thread may
// release). Unlocking it from a thread that does not hold it throws
// LockNotHeldError and changes nothing; locking it again from the thread that
// holds it (lock, try_lock or a timed lock) throws MisuseError instead of
// deadlocking or answering "busy".
//
// Invariants: IPC-2 (a process killed while holding it does not wedge the
// others: the next locker takes over and is told).
#pragma once

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/robust_mutex.hpp"

namespace keel {

/// What an acquisition found.
enum class LockResult {
  acquired,    // the mutex was free or released normally
  owner_died,  // its holder died holding it: we hold it now; the guarded state may be half-updated
};

/// A mutex in shared memory that a process may die holding: the next locker takes it over.
class KEEL_CAPABILITY("mutex") RobustMutex {
 public:
  /// OsError if the system refuses to create the mutex.
  RobustMutex();
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;

  /// Blocks until the calling thread holds the mutex.
  LockResult lock() KEEL_ACQUIRE() { return result(core_.lock(), "lock"); }

  /// Takes the mutex if it is free (or its holder died); never blocks.
  bool try_lock() KEEL_TRY_ACQUIRE(true) { return taken(core_.try_lock(), "try_lock"); }

  /// Takes the mutex, waiting at most `timeout`; whether it was taken.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) KEEL_TRY_ACQUIRE(true) {
    return taken(core_.lock_until(platform::Deadline::after(timeout)), "try_lock_for");
  }

  /// Takes the mutex, waiting until `deadline` at most; whether it was taken.
  template <class Clock, class Duration>
  bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) KEEL_TRY_ACQUIRE(true) {
    return taken(core_.lock_until(platform::Deadline::at(deadline)), "try_lock_until");
  }

  /// Releases the mutex; LockNotHeldError if the calling thread does not hold it.
  void unlock() KEEL_RELEASE();

  /// Whether the current holding began by taking the mutex over from a holder
  /// that died. Meaningful only to the thread that holds it.
  bool owner_died() const { return owner_died_; }

  /// Takeovers from dead holders so far, in all processes (a snapshot).
  std::uint64_t recoveries() const { return recoveries_.load(std::memory_order_relaxed); }

 private:
  // Maps the core's errno to an acquisition: 0 and EOWNERDEAD hold it; EBUSY
  // and ETIMEDOUT do not; anything else throws (state unchanged).
  LockResult result(int code, const char* op);
  bool taken(int code, const char* op);

  platform::RobustMutexCore core_;
  bool owner_died_ = false;  // written only by the holder, right after acquiring
  platform::Atomic<std::uint64_t> recoveries_{0};
};

}  // namespace keel
