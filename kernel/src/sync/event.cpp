// keel::Event. See keel/sync/event.hpp for the word's states.
#include "keel/sync/event.hpp"

namespace keel {

bool Event::wait_impl(const platform::Deadline& deadline) {
  for (;;) {
    std::int32_t v = state_.load(std::memory_order_acquire);
    if (v == set_flag) return true;
    if (v == clear_flag) {
      if constexpr (KEEL_INJECTED(event_wait_skips_mark)) {
        // Planted bug: sleep on 'clear' without announcing a sleeper.
        if (platform::futex_wait(state_, clear_flag, deadline) == platform::WaitResult::timed_out) return is_set();
        continue;
      }
      if (!state_.compare_exchange_strong(v, clear_sleeping, std::memory_order_relaxed)) continue;
    }
    if (platform::futex_wait(state_, clear_sleeping, deadline) == platform::WaitResult::timed_out) return is_set();
  }
}

}  // namespace keel
