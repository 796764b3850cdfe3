// keel::platform::Deadline and the clock: how kernel code speaks about time.
//
// Contract: every timed kernel operation converts its std::chrono argument to a
// Deadline once, at entry, and hands that Deadline to futex_wait. Deadlines are
// absolute on the monotonic clock (steady_clock), so a wait that is woken early
// and waits again never stretches the caller's timeout. Time points of other
// clocks (system_clock, user clocks) are converted through their own now().
// Under KEEL_MODEL_RELACY time does not pass: a Deadline never expires by
// itself, and a timed futex wait may instead time out at any point, which is
// how Relacy explores every timeout interleaving deterministically.
//
// Invariants: PLAT-1 (the only door to the clock for kernel code).
#pragma once

#include "keel/platform/config.hpp"

namespace keel::platform {

using SteadyClock = std::chrono::steady_clock;

// Converts any duration to nanoseconds, saturating instead of overflowing
// (hours::max() becomes nanoseconds::max(), about 292 years: "for ever").
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  using Ns = std::chrono::nanoseconds;
  using Wide = std::chrono::duration<long double, std::nano>;
  if (Wide(d) >= Wide(Ns::max())) return Ns::max();
  if (Wide(d) <= Wide(Ns::min())) return Ns::min();
  return std::chrono::ceil<Ns>(d);
}

class Deadline {
 public:
  // No deadline: wait for ever.
  static constexpr Deadline never() noexcept { return Deadline(); }

  template <class Rep, class Period>
  static Deadline after(std::chrono::duration<Rep, Period> d) noexcept {
    if (d <= d.zero()) return Deadline(SteadyClock::time_point::min());
    const auto now = now_point();
    // Saturate instead of overflowing for huge durations (e.g. hours::max()).
    using Dur = SteadyClock::duration;
    const auto limit =
        std::chrono::duration_cast<std::chrono::duration<double, Dur::period>>(SteadyClock::time_point::max() - now);
    if (std::chrono::duration<double, Dur::period>(d) >= limit) return never();
    return Deadline(now + std::chrono::ceil<Dur>(d));
  }

  template <class Clock, class Dur>
  static Deadline at(std::chrono::time_point<Clock, Dur> tp) noexcept {
    if constexpr (std::is_same_v<Clock, SteadyClock>) {
      if (tp == std::chrono::time_point<Clock, Dur>::max()) return never();
      return Deadline(std::chrono::time_point_cast<SteadyClock::duration>(tp));
    } else {
      if (tp == std::chrono::time_point<Clock, Dur>::max()) return never();
      const auto now = Clock::now();
      // Subtracting first could overflow for time points near min(): compare.
      if (tp <= now) return Deadline(SteadyClock::time_point::min());
      return after(tp - now);
    }
  }

  bool is_never() const noexcept { return never_; }
  SteadyClock::time_point point() const noexcept { return tp_; }

  // True once the deadline has passed. Always false under the model, where
  // only a timed futex wait decides that time has run out.
  bool expired() const noexcept {
#if KEEL_MODEL
    return false;
#else
    return !never_ && SteadyClock::now() >= tp_;
#endif
  }

 private:
  constexpr Deadline() noexcept = default;
  explicit Deadline(SteadyClock::time_point tp) noexcept : tp_(tp), never_(false) {}
  static SteadyClock::time_point now_point() noexcept {
#if KEEL_MODEL
    return SteadyClock::time_point{};  // the model's time stands still
#else
    return SteadyClock::now();
#endif
  }

  SteadyClock::time_point tp_{};
  bool never_ = true;
};

}  // namespace keel::platform
