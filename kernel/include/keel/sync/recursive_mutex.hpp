// keel::RecursiveMutex: a lock its owner may take again (Python's RLock).
//
// Contract: the owning thread may lock it any number of times and must unlock
// it as many times; another thread blocks until the depth returns to zero.
// Unlocking from a thread that does not own it throws NotOwnerError and
// changes nothing (Python raises RuntimeError). Satisfies Lockable and
// TimedLockable. Condition uses release_all/restore to drop a lock held at
// any depth across a wait and to restore exactly that depth, as Python's
// Condition does with RLock._release_save/_acquire_restore.
//
// Clang's thread-safety analysis cannot express re-entry: nest through
// function calls, not two guards on the same RecursiveMutex in one scope.
//
// Invariants: SYNC-1 (through Mutex), SYNC-3 (misuse reported, state
// unchanged), SYNC-9 (only the owner holds or releases; depth restored).
#pragma once

#include "keel/platform/thread.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {

/// Python's RLock: the owner may lock it again, and must unlock it as many times.
class KEEL_CAPABILITY("mutex") RecursiveMutex {
 public:
  /// An unlocked mutex.
  RecursiveMutex() = default;
  RecursiveMutex(const RecursiveMutex&) = delete;
  RecursiveMutex& operator=(const RecursiveMutex&) = delete;

  /// Blocks until the calling thread holds the lock; an owner's lock() only counts one level deeper.
  void lock() KEEL_ACQUIRE() {
    const auto me = platform::current_thread_id();
    if (relock(me)) return;
    inner_.lock();
    take(me, 1);
  }

  /// As lock(), but never blocks: false if another thread holds it.
  bool try_lock() KEEL_TRY_ACQUIRE(true) {
    return lock_with([this] { return inner_.try_lock(); });
  }

  /// As lock(), waiting at most `timeout`; whether it was taken.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) KEEL_TRY_ACQUIRE(true) {
    return lock_with([&] { return inner_.try_lock_for(timeout); });
  }

  /// As lock(), waiting until `deadline` at most; whether it was taken.
  template <class Clock, class Duration>
  bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) KEEL_TRY_ACQUIRE(true) {
    return lock_with([&] { return inner_.try_lock_until(deadline); });
  }

  /// Drops one level; the last releases the lock. NotOwnerError (changing nothing) from a non-owner.
  void unlock() KEEL_RELEASE() {
    check_owner("unlock");
    const std::uint32_t d = depth_.load() - 1;
    depth_.store(d);
    if (d == 0) {
      owner_.store(0, std::memory_order_relaxed);
      inner_.unlock();
    }
  }

  /// True when the calling thread holds the lock (Python's RLock._is_owned).
  bool is_owned() const { return owner_.load(std::memory_order_relaxed) == platform::current_thread_id(); }
  /// How many times the calling thread holds it; 0 when it is not the owner.
  std::uint32_t depth() const { return is_owned() ? depth_.load() : 0; }

  /// Drops the lock at whatever depth the owner holds it and returns that depth.
  /// Throws NotOwnerError (changing nothing) when the caller is not the owner.
  std::uint32_t release_all() KEEL_RELEASE() {
    check_owner("release_all");
    const std::uint32_t d = depth_.load();
    depth_.store(0);
    owner_.store(0, std::memory_order_relaxed);
    inner_.unlock();
    return d;
  }
  /// Takes the lock back at the depth release_all returned.
  void restore(std::uint32_t depth) KEEL_ACQUIRE() {
    inner_.lock();
    take(platform::current_thread_id(), depth);
  }

 private:
  // Re-enters for the owner, otherwise takes the inner lock through
  // acquire_inner (which reports success) and becomes the owner at depth 1.
  template <class AcquireInner>
  bool lock_with(AcquireInner acquire_inner) KEEL_NO_TSA {
    const auto me = platform::current_thread_id();
    if (relock(me)) return true;
    if (!acquire_inner()) return false;
    take(me, 1);
    return true;
  }

  bool relock(std::uint64_t me) {
    // Relaxed is enough: only this thread ever stores its own id here, so it
    // reads back its own latest store, and any other value is "not me".
    if (owner_.load(std::memory_order_relaxed) != me) return false;
    const std::uint32_t d = depth_.load();
    if (d == std::numeric_limits<std::uint32_t>::max()) {
      throw MisuseError("keel::RecursiveMutex: recursion depth overflow");
    }
    depth_.store(d + 1);
    return true;
  }
  void take(std::uint64_t me, std::uint32_t depth) {
    owner_.store(me, std::memory_order_relaxed);
    depth_.store(depth);
  }
  void check_owner(const char* op) const {
    const bool owner = KEEL_INJECTED(rmutex_skip_owner_check) || is_owned();
    if (!owner) {
      throw NotOwnerError(std::string("keel::RecursiveMutex::") + op + ": the calling thread does not own the lock");
    }
  }

  Mutex inner_;
  platform::Atomic<std::uint64_t> owner_{0};  // 0: no owner
  platform::Var<std::uint32_t> depth_{0};     // touched only by the owner
};

}  // namespace keel
