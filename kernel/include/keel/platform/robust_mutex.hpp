// keel::platform::RobustMutexCore: the shim's robust, process-shared mutex.
//
// Contract: a pthread mutex made PTHREAD_PROCESS_SHARED (it may live in memory
// shared between processes), PTHREAD_MUTEX_ROBUST (when its owner thread or
// process dies holding it, the next locker gets it with EOWNERDEAD instead of
// waiting for ever) and PTHREAD_MUTEX_ERRORCHECK (relocking by the owner and
// unlocking by a non-owner are errors, not a deadlock or a silent release).
// Every call returns 0 or an errno; an acquisition after a dead owner returns
// EOWNERDEAD with the mutex already made consistent again, so the caller holds
// it and only needs to know that the guarded state may be half-updated.
// The word lives inside the object: construct it once (in the process that
// creates the shared memory); other processes use the same bytes.
// Under KEEL_MODEL_RELACY (models/process/queue_model.cpp) it is a futex
// word the model checker watches, with the same results. A process's death
// is the model's to simulate: it names the dying thread
// (model_dying_thread()) and unwinds it; that thread's unlock then does what
// Linux does for a robust mutex whose owner exits (marks the owner dead and
// wakes one waiter), and the next locker gets EOWNERDEAD.
//
// Invariants: PLAT-1 (the only door to pthread mutexes for kernel code),
// IPC-2 (a dead owner never wedges the others).
#pragma once

#include "keel/platform/clock.hpp"
#include "keel/platform/config.hpp"

#include <cerrno>
#include <ctime>

#if KEEL_MODEL

#include "keel/platform/atomic.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/thread.hpp"

namespace keel::platform {

// The model thread (current_thread_id()) whose process is dying, 0 for none;
// the model sets it before unwinding that thread and clears it per execution.
inline std::uint64_t& model_dying_thread() {
  static std::uint64_t t = 0;
  return t;
}

class RobustMutexCore {
 public:
  RobustMutexCore() noexcept = default;
  RobustMutexCore(const RobustMutexCore&) = delete;
  RobustMutexCore& operator=(const RobustMutexCore&) = delete;

  int init_error() const noexcept { return 0; }
  int lock() noexcept { return lock_until(Deadline::never()); }
  int try_lock() noexcept {
    const std::uint64_t me = current_thread_id();
    if (owner_.load(std::memory_order_relaxed) == me) return EDEADLK;
    std::int32_t v = free_word;
    if (KEEL_INJECTED(robust_lock_blind)) {
      // Twin: takes the word without looking, so two threads can hold the
      // lock; the second unlock then finds another owner and the kernel's
      // guard ends the process (the harness reports that as the row's
      // failure).
      word_.store(held_word, std::memory_order_seq_cst);
      owner_.store(me, std::memory_order_relaxed);
      return 0;
    }
    if (word_.compare_exchange_strong(v, held_word, std::memory_order_acquire, std::memory_order_relaxed)) {
      owner_.store(me, std::memory_order_relaxed);
      return 0;
    }
    if (v == dead_word &&
        word_.compare_exchange_strong(v, held_word, std::memory_order_acquire, std::memory_order_relaxed)) {
      owner_.store(me, std::memory_order_relaxed);
      return EOWNERDEAD;
    }
    return EBUSY;
  }
  int lock_until(const Deadline& deadline) noexcept {
    for (;;) {
      const int r = try_lock();
      if (r != EBUSY) return r;
      if (deadline.expired()) return ETIMEDOUT;
      if (futex_wait(word_, held_word, deadline) == WaitResult::timed_out) return ETIMEDOUT;
    }
  }
  int unlock() noexcept {
    const std::uint64_t me = current_thread_id();
    if (owner_.load(std::memory_order_relaxed) != me) return EPERM;
    owner_.store(0, std::memory_order_relaxed);
    word_.store(model_dying_thread() == me ? dead_word : free_word, std::memory_order_release);
    futex_wake(word_, 1);
    return 0;
  }

 private:
  static constexpr std::int32_t free_word = 0;
  static constexpr std::int32_t held_word = 1;
  static constexpr std::int32_t dead_word = 2;  // free, its last owner died holding it
  FutexWord word_{free_word};
  Atomic<std::uint64_t> owner_{0};  // current_thread_id() of the holder, 0 for none
};

}  // namespace keel::platform

#else

#include <pthread.h>

#if defined(__SANITIZE_THREAD__)
#define KEEL_ROBUST_MUTEX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_ROBUST_MUTEX_TSAN 1
#endif
#endif
#ifndef KEEL_ROBUST_MUTEX_TSAN
#define KEEL_ROBUST_MUTEX_TSAN 0
#endif

namespace keel::platform {

class RobustMutexCore {
 public:
  // Initialises the pthread mutex; init_error() says whether that failed.
  RobustMutexCore() noexcept {
    pthread_mutexattr_t attr;
    error_ = pthread_mutexattr_init(&attr);
    if (error_ != 0) return;
    error_ = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (error_ == 0) error_ = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (error_ == 0) error_ = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    if (error_ == 0) error_ = pthread_mutex_init(&m_, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~RobustMutexCore() {
    if (error_ == 0) pthread_mutex_destroy(&m_);
  }
  RobustMutexCore(const RobustMutexCore&) = delete;
  RobustMutexCore& operator=(const RobustMutexCore&) = delete;

  int init_error() const noexcept { return error_; }

  // 0, EOWNERDEAD (taken over and made consistent), EDEADLK (held by this
  // thread), ENOTRECOVERABLE, or another errno.
  int lock() noexcept { return recover(pthread_mutex_lock(&m_)); }

  // As lock(), or EBUSY when another thread holds it.
  int try_lock() noexcept { return recover(pthread_mutex_trylock(&m_)); }

  // As lock(), or ETIMEDOUT once the deadline passed (a passed deadline still
  // takes a free mutex, as try_lock does).
  int lock_until(const Deadline& deadline) noexcept {
    if (deadline.is_never()) return lock();
    const auto since_epoch = deadline.point().time_since_epoch();
    if (since_epoch.count() <= 0) {  // time_point::min(): already passed
      const int r = try_lock();
      return r == EBUSY ? ETIMEDOUT : r;
    }
#if KEEL_ROBUST_MUTEX_TSAN
    // ThreadSanitizer (clang 14) does not intercept pthread_mutex_clocklock,
    // and its timedlock interceptor ignores EOWNERDEAD, so either would make
    // it report the next unlock as bogus. Under it, poll try_lock instead.
    for (;;) {
      const int r = try_lock();
      if (r != EBUSY) return r;
      if (SteadyClock::now() >= deadline.point()) return ETIMEDOUT;
      const timespec pause{0, 200'000};
      nanosleep(&pause, nullptr);
    }
#else
    // steady_clock is CLOCK_MONOTONIC on Linux: the same clock as Deadline.
    const timespec ts = to_timespec(since_epoch);
    return recover(pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &ts));
#endif
  }

  // 0, or EPERM when the calling thread does not hold it.
  int unlock() noexcept { return pthread_mutex_unlock(&m_); }

 private:
  template <class Duration>
  static timespec to_timespec(Duration since_epoch) noexcept {
    timespec ts{};
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    ts.tv_sec = static_cast<time_t>(secs.count());
    ts.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    return ts;
  }

  // EOWNERDEAD means we hold it now; marking it consistent at once keeps it
  // usable (unlocking without that would make it unrecoverable for everyone).
  int recover(int r) noexcept {
    if (r == EOWNERDEAD) {
      const int c = pthread_mutex_consistent(&m_);
      if (c != 0) {  // cannot happen for a robust mutex; never return an error while holding it
        pthread_mutex_unlock(&m_);
        return c;
      }
    }
    return r;
  }

  pthread_mutex_t m_{};
  int error_ = 0;
};

}  // namespace keel::platform

#endif  // KEEL_MODEL
