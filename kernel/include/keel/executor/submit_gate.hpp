// keel::detail::SubmitGate: lets submitters onto a thread pool's lock-free
// path while it is open, and lets one thread close it and then know that no
// submitter is still on that path (proofs/design/executor_ring.pml's gate).
//
// Contract. A submitter calls enter(); if it returns true, the submitter is
// inside and must call leave() when done (it pushes its task in between).
// enter() returns false once the gate is closed: the submitter takes the
// locked path instead. close() closes the gate and returns once every
// submitter that got in has left. Whatever those submitters did inside
// happens before close() returns, and no enter() succeeds until open(). Only
// one thread at a time may close and open a gate (the pool's, holding its
// lock); open() is only for the gate's closer, once it is closed.
//
// One word holds the closed bit and the count of submitters inside, so that
// enter() and close() are read-modify-writes of the same word: an enter()
// either comes before the close in that word's order (close() waits for it)
// or sees the bit. A refused enter() counts itself in and out again. The
// closer sets a second bit before it sleeps, and the last submitter to leave
// wakes it only then: a refused enter() on a closed gate (every submission
// while a pool runs on its lock) makes no system call.
//
// Invariants: EXEC-14.
#pragma once

#include <cstdint>

#include "keel/platform/atomic.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/inject.hpp"

namespace keel::detail {

class SubmitGate {
 public:
  SubmitGate() = default;
  SubmitGate(const SubmitGate&) = delete;
  SubmitGate& operator=(const SubmitGate&) = delete;

  bool enter() {
    const std::int32_t was = word_.fetch_add(1, std::memory_order_acquire);
    if ((was & closed_bit) == 0 || KEEL_INJECTED(gate_enter_ignores_closed)) return true;
    leave();
    return false;
  }

  void leave() {
    const std::int32_t was =
        word_.fetch_sub(1, KEEL_INJECTED(gate_leave_relaxed) ? std::memory_order_relaxed : std::memory_order_release);
    if ((was & sleeper_bit) != 0 && (was & count_mask) == 1 && !KEEL_INJECTED(gate_leave_skips_wake)) {
      platform::futex_wake(word_, platform::wake_all);
    }
  }

  void close() {
    word_.fetch_or(closed_bit, std::memory_order_relaxed);
    if (KEEL_INJECTED(gate_close_skips_wait)) return;
    // Acquire, here and below: pairs with each leave(), so what a submitter
    // did inside happens before the closer goes on.
    std::int32_t now = word_.load(std::memory_order_acquire);
    while ((now & count_mask) != 0) {
      if ((now & sleeper_bit) == 0) {
        // Says it sleeps before it does: the last to leave then sees the bit.
        now = word_.fetch_or(sleeper_bit, std::memory_order_acq_rel) | sleeper_bit;
        continue;
      }
      platform::futex_wait(word_, now);
      now = word_.load(std::memory_order_acquire);
    }
    if ((now & sleeper_bit) != 0) word_.fetch_sub(sleeper_bit, std::memory_order_relaxed);
  }

  void open() { word_.fetch_sub(closed_bit, std::memory_order_release); }

  bool is_closed() const { return (word_.load(std::memory_order_relaxed) & closed_bit) != 0; }

 private:
  static constexpr std::int32_t closed_bit = std::int32_t{1} << 30;
  static constexpr std::int32_t sleeper_bit = std::int32_t{1} << 29;  // the closer sleeps in close()
  static constexpr std::int32_t count_mask = sleeper_bit - 1;
  platform::FutexWord word_{0};
};

}  // namespace keel::detail
