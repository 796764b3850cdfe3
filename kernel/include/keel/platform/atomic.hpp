// keel::platform::Atomic<T>: the kernel's only atomic type.
//
// Contract: the subset of std::atomic<T> the kernel uses, with the same
// names and memory-order semantics, and no default orders: every operation
// names its order (and a CAS both of its orders), so each one is a reviewed
// choice, and a mutant of an order is a mutant of a call site that the models
// run, never of a default nothing reads (make mutate). Natively it is std::atomic<T>
// (lock-free for the integral types the kernel uses, so it also works in
// memory shared between processes). Under KEEL_MODEL_RELACY it is
// rl::atomic<T>, and every operation carries the caller's source location so
// Relacy's histories name the kernel's own lines.
//
// Invariants: PLAT-1 (the only door to atomics for kernel code).
#pragma once

#include "keel/platform/config.hpp"

#if !KEEL_MODEL
#include <atomic>
#endif

namespace keel::platform {

using MemoryOrder = std::memory_order;

#if KEEL_MODEL

namespace detail {
inline rl::memory_order to_rl(std::memory_order mo) {
  switch (mo) {
    case std::memory_order_relaxed:
      return rl::mo_relaxed;
    case std::memory_order_consume:
      return rl::mo_consume;
    case std::memory_order_acquire:
      return rl::mo_acquire;
    case std::memory_order_release:
      return rl::mo_release;
    case std::memory_order_acq_rel:
      return rl::mo_acq_rel;
    default:
      return rl::mo_seq_cst;
  }
}
inline rl::debug_info info(const std::source_location& l) {
  return rl::debug_info(l.function_name(), l.file_name(), l.line());
}
}  // namespace detail

#define KEEL_LOC , std::source_location loc = std::source_location::current()
#define KEEL_LOC_ARG detail::info(loc)

template <class T>
class Atomic {
 public:
  Atomic() : a_(T{}) {}
  explicit Atomic(T v) : a_(v) {}
  Atomic(const Atomic&) = delete;
  Atomic& operator=(const Atomic&) = delete;

  T load(MemoryOrder mo KEEL_LOC) const { return a_.load(detail::to_rl(mo), KEEL_LOC_ARG); }
  void store(T v, MemoryOrder mo KEEL_LOC) { a_.store(v, detail::to_rl(mo), KEEL_LOC_ARG); }
  T exchange(T v, MemoryOrder mo KEEL_LOC) { return a_.exchange(v, detail::to_rl(mo), KEEL_LOC_ARG); }
  bool compare_exchange_strong(T& expected, T desired, MemoryOrder success, MemoryOrder failure KEEL_LOC) {
    return a_.compare_exchange_strong(expected, desired, detail::to_rl(success), KEEL_LOC_ARG, detail::to_rl(failure),
                                      KEEL_LOC_ARG);
  }
  bool compare_exchange_weak(T& expected, T desired, MemoryOrder success, MemoryOrder failure KEEL_LOC) {
    return a_.compare_exchange_weak(expected, desired, detail::to_rl(success), KEEL_LOC_ARG, detail::to_rl(failure),
                                    KEEL_LOC_ARG);
  }
  T fetch_add(T v, MemoryOrder mo KEEL_LOC) { return a_.fetch_add(v, detail::to_rl(mo), KEEL_LOC_ARG); }
  T fetch_sub(T v, MemoryOrder mo KEEL_LOC) { return a_.fetch_sub(v, detail::to_rl(mo), KEEL_LOC_ARG); }
  T fetch_or(T v, MemoryOrder mo KEEL_LOC) { return a_.fetch_or(v, detail::to_rl(mo), KEEL_LOC_ARG); }

  // The futex shim needs the underlying object; nothing else may use it.
  rl::atomic<T>& model_object() { return a_; }

 private:
  rl::atomic<T> a_;
};

#undef KEEL_LOC
#undef KEEL_LOC_ARG

#else  // native

template <class T>
class Atomic {
 public:
  constexpr Atomic() noexcept : a_(T{}) {}
  constexpr explicit Atomic(T v) noexcept : a_(v) {}
  Atomic(const Atomic&) = delete;
  Atomic& operator=(const Atomic&) = delete;

  T load(MemoryOrder mo) const noexcept { return a_.load(mo); }
  void store(T v, MemoryOrder mo) noexcept { a_.store(v, mo); }
  T exchange(T v, MemoryOrder mo) noexcept { return a_.exchange(v, mo); }
  bool compare_exchange_strong(T& expected, T desired, MemoryOrder success, MemoryOrder failure) noexcept {
    return a_.compare_exchange_strong(expected, desired, success, failure);
  }
  bool compare_exchange_weak(T& expected, T desired, MemoryOrder success, MemoryOrder failure) noexcept {
    return a_.compare_exchange_weak(expected, desired, success, failure);
  }
  T fetch_add(T v, MemoryOrder mo) noexcept { return a_.fetch_add(v, mo); }
  T fetch_sub(T v, MemoryOrder mo) noexcept { return a_.fetch_sub(v, mo); }
  T fetch_or(T v, MemoryOrder mo) noexcept { return a_.fetch_or(v, mo); }

  // The futex shim needs the word's address; nothing else may use it.
  std::atomic<T>& native_object() noexcept { return a_; }

 private:
  static_assert(std::atomic<T>::is_always_lock_free, "keel atomics must be lock-free (process-shared use)");
  std::atomic<T> a_;
};

#endif

}  // namespace keel::platform
