// keel::Event. See keel/sync/event.hpp for the word's layout.
#include "keel/sync/event.hpp"

#include "keel/platform/thread.hpp"

namespace keel {

void Event::set() {
  std::int32_t v = state_.load(std::memory_order_relaxed);
  std::int32_t next;
  do {
    if ((v & flag_bit) != 0) return;  // already set: nothing changes, nobody sleeps
    if (KEEL_INJECTED(event_generation_one_bit)) {
      // Planted bug: a one-bit generation (a "sense" flag): two set/clear
      // rounds bring the word back to what a sleeper saw.
      next = ((v & ~sleepers_bit) ^ generation_one) | flag_bit;
    } else {
      // Unsigned arithmetic: the generation wraps instead of overflowing.
      next = static_cast<std::int32_t>((static_cast<std::uint32_t>(v & ~sleepers_bit) + generation_one) | flag_bit);
    }
    // Release pairs with the waiters' acquire loads.
  } while (!state_.compare_exchange_weak(v, next, std::memory_order_release, std::memory_order_relaxed));
  if ((v & sleepers_bit) != 0) {
    if (!KEEL_INJECTED(event_set_skip_wake)) platform::futex_wake(state_, platform::wake_all);
  }
}

bool Event::wait_impl(const platform::Deadline& deadline) {
  std::int32_t v = state_.load(std::memory_order_acquire);
  if ((v & flag_bit) != 0) return true;
  const std::int32_t generation = generation_of(v);
  // A set() is often imminent (hand-offs): wait for it briefly before
  // announcing a sleeper, which would cost the setter a wake syscall.
  platform::spin_then_yield_until([&] {
    v = state_.load(std::memory_order_acquire);
    return set_since(v, generation);
  });
  for (;;) {
    if (set_since(v, generation)) return true;
    if (KEEL_INJECTED(event_wait_skips_mark)) {
      // Planted bug: sleep without announcing a sleeper.
    } else if ((v & sleepers_bit) == 0) {
      if (!state_.compare_exchange_weak(v, v | sleepers_bit, std::memory_order_acquire, std::memory_order_acquire)) {
        continue;
      }
      v |= sleepers_bit;
    }
    const platform::WaitResult r = platform::futex_wait(state_, v, deadline);
    const std::int32_t now = state_.load(std::memory_order_acquire);
    if (r == platform::WaitResult::timed_out) return set_since(now, generation);
    v = now;
  }
}

}  // namespace keel
