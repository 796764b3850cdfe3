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
// The timeout rule every public API follows is stated once, in
// keel/timeout.hpp; this header is where it is carried out:
// - after(d): d <= 0 (and NaN) has expired at once: the caller checks once
//   and does not wait. A d the steady clock cannot reach from now is never.
// - at(tp), of any clock, unit and representation: a time point beyond what
//   the steady clock can represent is never; one at or before now (including
//   time_point::min() of any unit) has expired.
// - No conversion overflows or wraps: values are compared and converted as a
//   count of nanoseconds in long double (64 mantissa bits, so every 64-bit
//   integer count of nanoseconds is exact) and range-checked before they
//   become integers again. A fraction of a nanosecond rounds up, so a wait
//   never ends before its deadline.
//
// Invariants: PLAT-1 (the only door to the clock for kernel code), TIME-1
// (deadlines saturate, never wrap).
#pragma once

#include "keel/platform/config.hpp"

namespace keel::platform {

using SteadyClock = std::chrono::steady_clock;

namespace detail {

static_assert(std::numeric_limits<long double>::digits >= 64,
              "Deadline's overflow-free arithmetic needs a long double that holds any 64-bit count exactly");
static_assert(std::is_same_v<SteadyClock::duration, std::chrono::nanoseconds>, "steady_clock counts nanoseconds");

using WideNanoseconds = std::chrono::duration<long double, std::nano>;

// d as a count of nanoseconds in long double: chrono converts in the wide
// type (count * num / den), so nothing overflows on the way; NaN stays NaN.
template <class Rep, class Period>
constexpr long double wide_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  return std::chrono::duration_cast<WideNanoseconds>(d).count();
}

// The smallest integer >= n. Precondition: n is strictly inside
// (int64 min, int64 max), so the result fits.
constexpr std::int64_t ceil_count(long double n) noexcept {
  auto k = static_cast<std::int64_t>(n);  // toward zero: already >= n when n < 0
  if (static_cast<long double>(k) < n) ++k;
  return k;
}

constexpr long double max_count = static_cast<long double>(std::numeric_limits<std::int64_t>::max());
constexpr long double min_count = static_cast<long double>(std::numeric_limits<std::int64_t>::min());

}  // namespace detail

// Converts any duration to nanoseconds, saturating instead of overflowing
// (hours::max() becomes nanoseconds::max(), about 292 years: "for ever").
// NaN becomes zero: not a time to wait.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
  using Ns = std::chrono::nanoseconds;
  const long double n = detail::wide_nanoseconds(d);
  if (n != n) return Ns::zero();
  if (n >= detail::max_count) return Ns::max();
  if (n <= detail::min_count) return Ns::min();
  return Ns(detail::ceil_count(n));
}

class Deadline {
 public:
  // No deadline: wait for ever.
  static constexpr Deadline never() noexcept { return Deadline(); }

  // d from now. d <= 0 or NaN: expired at once; beyond the steady clock's
  // reach: never.
  template <class Rep, class Period>
  static Deadline after(std::chrono::duration<Rep, Period> d) noexcept {
    return after_nanoseconds(detail::wide_nanoseconds(d));
  }

  // The time point tp of any clock and unit, saturated (see the top).
  template <class Clock, class Dur>
  static Deadline at(std::chrono::time_point<Clock, Dur> tp) noexcept {
    const long double t = detail::wide_nanoseconds(tp.time_since_epoch());
    if (t != t) return expired_now();
    if constexpr (std::is_same_v<Clock, SteadyClock>) {
      if (t >= detail::max_count) return never();
      if (t <= detail::min_count) return expired_now();
      return Deadline(SteadyClock::time_point(SteadyClock::duration(detail::ceil_count(t))));
    } else {
      // In long double the difference cannot overflow, whatever the units.
      const long double now = detail::wide_nanoseconds(Clock::now().time_since_epoch());
      return after_nanoseconds(t - now);
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
    return expired_at(SteadyClock::now());
#endif
  }
  // Whether it has passed at the steady-clock reading `now`: a deadline at
  // or before now has (expired() with the clock read for it; tests give the
  // reading, since two reads of the real clock never land on one tick).
  bool expired_at(SteadyClock::time_point now) const noexcept { return !never_ && now >= tp_; }

 private:
  constexpr Deadline() noexcept = default;
  explicit Deadline(SteadyClock::time_point tp) noexcept : tp_(tp), never_(false) {}
  // Already passed: futex_wait and the robust mutex see a negative point and
  // do not sleep.
  static Deadline expired_now() noexcept { return Deadline(SteadyClock::time_point::min()); }
  static Deadline after_nanoseconds(long double ns) noexcept {
    if (!(ns > 0)) return expired_now();  // zero, negative or NaN: do not wait
    const auto now = now_point();
    // The room left before the steady clock's max (now is never past it).
    const long double room = static_cast<long double>((SteadyClock::time_point::max() - now).count());
    if (ns >= room) return never();
    return Deadline(now + SteadyClock::duration(detail::ceil_count(ns)));
  }
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
