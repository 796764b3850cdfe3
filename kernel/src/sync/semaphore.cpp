// keel::Semaphore and BoundedSemaphore. See keel/sync/semaphore.hpp.
#include "keel/sync/semaphore.hpp"

#include "keel/platform/thread.hpp"

namespace keel {

namespace {
std::int32_t checked_initial(std::int32_t initial) {
  if (initial < 0) throw ValueError("keel::Semaphore: initial value must be >= 0");
  return initial;
}
}  // namespace

Semaphore::Semaphore(std::int32_t initial, std::int32_t bound) : value_(checked_initial(initial)), bound_(bound) {}

void Semaphore::release(std::int32_t n) {
  if (n < 1) throw ValueError("keel::Semaphore::release: n must be >= 1");
  std::int32_t v = value_.load(std::memory_order_relaxed);
  if (KEEL_INJECTED(bsem_check_then_add)) {
    // Planted bug: the bound is checked against a value read earlier, so two
    // racing releases can both pass the check.
    if (v > bound_ - n) throw ValueError("keel::BoundedSemaphore::release: released too many times");
    value_.fetch_add(n, std::memory_order_seq_cst);
  } else {
    do {
      if (v > bound_ - n) {
        if (bound_ == max_value) throw ValueError("keel::Semaphore::release: value would overflow");
        throw ValueError("keel::BoundedSemaphore::release: released too many times");
      }
    } while (!value_.compare_exchange_weak(v, v + n, std::memory_order_seq_cst, std::memory_order_relaxed));
  }
  // Relaxed: a spinning hint for the next waiter, ordered with nothing.
  if (const int cpu = platform::current_cpu(); cpu >= 0) releaser_cpu_.store(cpu, std::memory_order_relaxed);
  const auto order =
      KEEL_INJECTED(semaphore_relaxed_sleeper_check) ? std::memory_order_relaxed : std::memory_order_seq_cst;
  if (sleepers_.load(order) > 0) {
    if (!KEEL_INJECTED(semaphore_skip_wake)) platform::futex_wake(value_, n);
  }
}

bool Semaphore::acquire_slow(const platform::Deadline& deadline) {
  // A release is often imminent (hand-offs): wait for it briefly before
  // announcing a sleeper, which would cost the releaser a wake syscall. Spin
  // only if the latest releaser ran on another CPU (see the header).
  const int cpu = platform::current_cpu();
  const bool partner_here = cpu >= 0 && releaser_cpu_.load(std::memory_order_relaxed) == cpu;
  if (platform::spin_then_yield_until([this] { return value_.load(std::memory_order_relaxed) > 0; },
                                      partner_here ? 0 : platform::spin_limit) &&
      try_acquire()) {
    return true;
  }
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  bool got = false;
  for (;;) {
    std::int32_t v = value_.load(std::memory_order_seq_cst);
    while (v > 0) {
      if (value_.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        got = true;
        break;
      }
    }
    if (got) break;
    if (platform::futex_wait(value_, 0, deadline) == platform::WaitResult::timed_out) {
      // A release may have landed just as time ran out; take it if so, since
      // the wake it sent (if any) was meant for a sleeper like us.
      got = try_acquire();
      break;
    }
  }
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
  return got;
}

}  // namespace keel
