// keel::platform::Deadline: absolute monotonic deadlines built from durations
// and from time points of any clock.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>

#include "../support/test_support.hpp"
#include "keel/platform/clock.hpp"

using namespace std::chrono_literals;
using keel::platform::Deadline;
using keel::platform::SteadyClock;

namespace {

// A user clock whose now() the test sets.
struct ManualClock {
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<ManualClock>;
  static constexpr bool is_steady = false;
  static inline std::atomic<rep> now_ns{1'000'000'000'000};
  static time_point now() { return time_point(duration(now_ns.load())); }
};
static_assert(!ManualClock::is_steady);

}  // namespace

TEST(Deadline, NeverNeverExpires) {
  const Deadline d = Deadline::never();
  EXPECT_TRUE(d.is_never());
  EXPECT_FALSE(d.expired());
  constexpr Deadline c = Deadline::never();  // usable in constant expressions
  EXPECT_TRUE(c.is_never());
}

TEST(Deadline, ZeroAndNegativeDurationsExpireImmediately) {
  for (const Deadline d :
       {Deadline::after(0ns), Deadline::after(-1ns), Deadline::after(-5s), Deadline::after(0h),
        Deadline::after(std::chrono::nanoseconds::min()), Deadline::after(std::chrono::hours::min()),
        Deadline::after(std::chrono::duration<double>(-0.5)), Deadline::after(std::chrono::duration<double>(0.0))}) {
    EXPECT_FALSE(d.is_never());
    EXPECT_TRUE(d.expired());
  }
}

// "Does not wait" means the waits see a point before the clock's epoch and
// make no sleeping call at all (futex_wait and RobustMutex check the sign),
// not a deadline of "now" that a syscall then finds passed.
TEST(Deadline, ZeroAndNegativeDurationsArePointsBeforeTheEpoch) {
  for (const Deadline d :
       {Deadline::after(0ns), Deadline::after(-1ns), Deadline::after(std::chrono::duration<double>(0.0)),
        Deadline::after(std::chrono::duration<double>(-0.0))}) {
    EXPECT_EQ(d.point(), SteadyClock::time_point::min());
  }
  EXPECT_GT(Deadline::after(1ns).point(), SteadyClock::time_point{});
}

// TIME-1's "a time point at or before now has expired", at the exact tick:
// the real clock cannot be read twice on one tick, so the reading is given.
TEST(Deadline, ExpiresAtItsOwnTickNotOneBefore) {
  const SteadyClock::time_point tp = SteadyClock::now() + 1h;
  const Deadline d = Deadline::at(tp);
  EXPECT_FALSE(d.expired_at(tp - 1ns));
  EXPECT_TRUE(d.expired_at(tp));
  EXPECT_TRUE(d.expired_at(tp + 1ns));
  EXPECT_FALSE(Deadline::never().expired_at(SteadyClock::time_point::max()));
  EXPECT_TRUE(Deadline::after(0ns).expired_at(SteadyClock::time_point::min()));
}

TEST(Deadline, HugeDurationsSaturateToNever) {
  EXPECT_TRUE(Deadline::after(std::chrono::hours::max()).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::seconds::max()).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::milliseconds::max()).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::nanoseconds::max()).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::duration<double>(1e30)).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::duration<double>(std::numeric_limits<double>::infinity())).is_never());
  EXPECT_FALSE(Deadline::after(std::chrono::hours::max()).expired());
}

TEST(Deadline, LargeButRepresentableDurationIsNotNever) {
  // 100 years fits in steady_clock's nanoseconds.
  const Deadline d = Deadline::after(std::chrono::hours(24 * 365 * 100));
  EXPECT_FALSE(d.is_never());
  EXPECT_FALSE(d.expired());
  EXPECT_GT(d.point(), SteadyClock::now() + std::chrono::hours(24 * 365 * 99));
}

TEST(Deadline, AfterIsNowPlusTheDuration) {
  const auto before = SteadyClock::now();
  const Deadline d = Deadline::after(50ms);
  const auto after = SteadyClock::now();
  EXPECT_FALSE(d.is_never());
  EXPECT_GE(d.point(), before + 50ms);
  EXPECT_LE(d.point(), after + 50ms);
}

TEST(Deadline, FractionalDurationsRoundUp) {
  const auto before = SteadyClock::now();
  const Deadline d = Deadline::after(std::chrono::duration<double, std::micro>(0.5));
  EXPECT_FALSE(d.is_never());
  EXPECT_GE(d.point(), before + 1ns);  // never rounded down to "already expired"
}

TEST(Deadline, ShortDeadlineExpiresAfterItsDuration) {
  const keel_test::Stopwatch sw;
  const Deadline d = Deadline::after(20ms);
  while (!d.expired()) std::this_thread::sleep_for(1ms);
  EXPECT_GE(sw.elapsed(), 20ms);
}

TEST(Deadline, AtSteadyTimePointIsExact) {
  const auto tp = SteadyClock::now() + 30ms;
  const Deadline d = Deadline::at(tp);
  EXPECT_FALSE(d.is_never());
  EXPECT_EQ(d.point(), tp);
  EXPECT_TRUE(Deadline::at(SteadyClock::now() - 1s).expired());
  EXPECT_TRUE(Deadline::at(SteadyClock::time_point::min()).expired());
  EXPECT_TRUE(Deadline::at(SteadyClock::time_point{}).expired());
}

TEST(Deadline, AtSteadyMaxIsNever) {
  EXPECT_TRUE(Deadline::at(SteadyClock::time_point::max()).is_never());
  // max() of a coarser steady time point type too.
  using Coarse = std::chrono::time_point<SteadyClock, std::chrono::seconds>;
  EXPECT_TRUE(Deadline::at(Coarse::max()).is_never());
}

TEST(Deadline, AtCoarseSteadyTimePointConverts) {
  using Ms = std::chrono::time_point<SteadyClock, std::chrono::milliseconds>;
  const Ms tp = std::chrono::time_point_cast<std::chrono::milliseconds>(SteadyClock::now() + 1h);
  const Deadline d = Deadline::at(tp);
  EXPECT_FALSE(d.is_never());
  EXPECT_EQ(d.point(), std::chrono::time_point_cast<SteadyClock::duration>(tp));
}

TEST(Deadline, AtSystemClockConvertsThroughNow) {
  const Deadline far = Deadline::at(std::chrono::system_clock::now() + 1h);
  EXPECT_FALSE(far.is_never());
  EXPECT_FALSE(far.expired());
  EXPECT_LE(far.point(), SteadyClock::now() + 1h);
  EXPECT_GT(far.point(), SteadyClock::now() + 59min);

  const keel_test::Stopwatch sw;
  const Deadline soon = Deadline::at(std::chrono::system_clock::now() + 20ms);
  while (!soon.expired()) std::this_thread::sleep_for(1ms);
  EXPECT_GE(sw.elapsed(), 19ms);  // the clocks are read at slightly different moments
}

TEST(Deadline, AtSystemClockPastExpires) {
  EXPECT_TRUE(Deadline::at(std::chrono::system_clock::now() - 1s).expired());
  EXPECT_TRUE(Deadline::at(std::chrono::system_clock::time_point{}).expired());  // 1970
}

TEST(Deadline, AtSystemClockMaxIsNeverOrCenturiesAway) {
  // system_clock's max is about 240 years from now: far enough to be "never"
  // in practice, whether or not the conversion saturates it.
  const Deadline d = Deadline::at(std::chrono::system_clock::time_point::max());
  EXPECT_FALSE(d.expired());
  if (!d.is_never()) {
    EXPECT_GT(d.point(), SteadyClock::now() + std::chrono::hours(24 * 365 * 200));
  }
}

// A deadline at the earliest representable system time has long passed.
// Deadline::at computes tp - Clock::now(), which overflows for
// time_point::min(): undefined behaviour that UBSan reports and that the
// optimizer may or may not fold into the right answer. Checked in a child
// process so that a UBSan abort fails this test only.
TEST(Deadline, AtSystemClockMinExpires) {
  const int code = keel_test::exit_code_in_child([] {
    const Deadline d = Deadline::at(std::chrono::system_clock::time_point::min());
    if (d.is_never()) return 2;
    if (!d.expired()) return 3;
    return 0;
  });
  EXPECT_EQ(code, 0)
      << "2: became never; 3: not expired; other: the child died (UBSan reports the signed overflow and exits 1)";
}

TEST(Deadline, AtUserClockUsesThatClocksNow) {
  const auto now = ManualClock::now();
  const auto before = SteadyClock::now();
  const Deadline d = Deadline::at(now + 5s);
  const auto after = SteadyClock::now();
  EXPECT_FALSE(d.is_never());
  EXPECT_GE(d.point(), before + 5s);
  EXPECT_LE(d.point(), after + 5s);

  EXPECT_TRUE(Deadline::at(now - 1ns).expired());
  EXPECT_TRUE(Deadline::at(now).expired());
  ManualClock::now_ns.fetch_add(10'000'000'000);  // the user clock jumps 10 s
  EXPECT_TRUE(Deadline::at(now + 5s).expired());
}

// ---------------------------------------------------------------- saturation
// A deadline is computed without overflow for every clock, unit and value: a
// time point or duration beyond what the steady clock can hold is "never",
// one before now (time_point::min() of any unit included) has passed. No
// wrap-around turns a far future into the past or the reverse.

namespace {

// A coarse unit of 64-bit years (std::chrono::years counts in int).
using Years64 = std::chrono::duration<std::int64_t, std::ratio<31556952>>;
// An uneven unit: chrono's own conversion to nanoseconds multiplies by 10^9
// before dividing by 3, so it overflows long before the result would.
using Thirds = std::chrono::duration<std::int64_t, std::ratio<1, 3>>;

// 150 billion years after the clock's epoch, in a unit that holds it.
template <class Clock, class Dur>
std::chrono::time_point<Clock, Dur> far_future() {
  return std::chrono::time_point<Clock, Dur>(std::chrono::duration_cast<Dur>(Years64(150'000'000'000)));
}

template <class Clock>
void expect_far_future_is_never(const char* clock) {
  SCOPED_TRACE(clock);
  EXPECT_TRUE((Deadline::at(far_future<Clock, std::chrono::seconds>()).is_never()));
  EXPECT_TRUE((Deadline::at(far_future<Clock, std::chrono::minutes>()).is_never()));
  EXPECT_TRUE((Deadline::at(far_future<Clock, std::chrono::hours>()).is_never()));
  EXPECT_TRUE((Deadline::at(far_future<Clock, Years64>()).is_never()));
  EXPECT_TRUE((Deadline::at(far_future<Clock, std::chrono::duration<double>>()).is_never()));
  // One unit below max(): no equality test with max() saves these.
  using SecTp = std::chrono::time_point<Clock, std::chrono::seconds>;
  using HourTp = std::chrono::time_point<Clock, std::chrono::hours>;
  using YearTp = std::chrono::time_point<Clock, std::chrono::years>;
  EXPECT_TRUE(Deadline::at(SecTp::max() - std::chrono::seconds(1)).is_never());
  EXPECT_TRUE(Deadline::at(HourTp::max() - std::chrono::hours(1)).is_never());
  EXPECT_TRUE(Deadline::at(YearTp::max() - std::chrono::years(1)).is_never());
  EXPECT_TRUE(Deadline::at(YearTp::max()).is_never());
}

template <class Clock>
void expect_min_has_passed(const char* clock) {
  SCOPED_TRACE(clock);
  auto check = [](const Deadline& d) {
    EXPECT_FALSE(d.is_never());
    EXPECT_TRUE(d.expired());
  };
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::nanoseconds>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::microseconds>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::milliseconds>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::seconds>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::hours>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::years>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, Years64>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, Thirds>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::duration<double>>::min()));
  check(Deadline::at(std::chrono::time_point<Clock, std::chrono::duration<double>>(
      std::chrono::duration<double>(-std::numeric_limits<double>::infinity()))));
  check(Deadline::at(-far_future<Clock, std::chrono::seconds>().time_since_epoch() +
                     std::chrono::time_point<Clock, std::chrono::seconds>()));
}

}  // namespace

TEST(Deadline, AtFarFutureInCoarseUnitsIsNeverOnEveryClock) {
  expect_far_future_is_never<SteadyClock>("steady_clock");
  expect_far_future_is_never<std::chrono::system_clock>("system_clock");
  expect_far_future_is_never<ManualClock>("a user clock");
}

TEST(Deadline, AtMinOfEveryUnitHasPassedOnEveryClock) {
  expect_min_has_passed<SteadyClock>("steady_clock");
  expect_min_has_passed<std::chrono::system_clock>("system_clock");
  expect_min_has_passed<ManualClock>("a user clock");
}

TEST(Deadline, AtJustAroundNowInCoarseUnits) {
  using std::chrono::seconds;
  const auto sys_now = std::chrono::system_clock::now();
  EXPECT_TRUE(Deadline::at(std::chrono::floor<seconds>(sys_now) - seconds(1)).expired());
  const Deadline sys_soon = Deadline::at(std::chrono::ceil<seconds>(sys_now) + seconds(2));
  EXPECT_FALSE(sys_soon.is_never());
  EXPECT_FALSE(sys_soon.expired());
  EXPECT_LE(sys_soon.point(), SteadyClock::now() + seconds(4));

  const auto user_now = ManualClock::now();
  EXPECT_TRUE(Deadline::at(std::chrono::floor<seconds>(user_now) - seconds(1)).expired());
  EXPECT_TRUE(Deadline::at(std::chrono::floor<std::chrono::hours>(user_now) - std::chrono::hours(1)).expired());
  const Deadline user_soon = Deadline::at(std::chrono::ceil<seconds>(user_now) + seconds(2));
  EXPECT_FALSE(user_soon.is_never());
  EXPECT_FALSE(user_soon.expired());

  const auto steady_now = SteadyClock::now();
  EXPECT_TRUE(Deadline::at(std::chrono::floor<seconds>(steady_now) - seconds(1)).expired());
  const Deadline steady_soon = Deadline::at(std::chrono::ceil<seconds>(steady_now) + seconds(2));
  EXPECT_FALSE(steady_soon.is_never());
  EXPECT_FALSE(steady_soon.expired());
  EXPECT_GE(steady_soon.point(), steady_now + seconds(2));
}

TEST(Deadline, AtFractionalSteadyTimePointRoundsUp) {
  using FloatMs = std::chrono::duration<double, std::milli>;
  const auto now = SteadyClock::now();
  const auto tp = std::chrono::time_point<SteadyClock, FloatMs>(FloatMs(now.time_since_epoch()) + FloatMs(1000.25));
  EXPECT_GE(Deadline::at(tp).point(), now + std::chrono::microseconds(1000250));
}

TEST(Deadline, AfterExtremesOfEveryRepAndPeriod) {
  // max_fits: D::max() is within the steady clock's reach (picoseconds hold
  // about 106 days, 32-bit seconds 136 years): a real deadline, not never.
  auto check = [](auto unit, const char* name, bool max_fits = false) {
    SCOPED_TRACE(name);
    using D = decltype(unit);
    const Deadline hi = Deadline::after(D::max());
    EXPECT_EQ(hi.is_never(), !max_fits);
    EXPECT_FALSE(hi.expired());
    if (max_fits) {
      EXPECT_GT(hi.point(), SteadyClock::now() + std::chrono::hours(24 * 100));
    }
    const Deadline lo = Deadline::after(D::min());
    EXPECT_FALSE(lo.is_never());
    EXPECT_TRUE(lo.expired());
    const Deadline zero = Deadline::after(D::zero());
    EXPECT_FALSE(zero.is_never());
    EXPECT_TRUE(zero.expired());
  };
  check(std::chrono::nanoseconds{}, "ns");
  check(std::chrono::microseconds{}, "us");
  check(std::chrono::milliseconds{}, "ms");
  check(std::chrono::seconds{}, "s");
  check(std::chrono::minutes{}, "min");
  check(std::chrono::hours{}, "h");
  check(std::chrono::days{}, "days");
  check(std::chrono::years{}, "years");
  check(Years64{}, "64-bit years");
  check(Thirds{}, "thirds of a second");
  check(std::chrono::duration<std::int64_t, std::pico>{}, "ps", true);
  check(std::chrono::duration<double>{}, "double s");
  check(std::chrono::duration<float, std::milli>{}, "float ms");
  check(std::chrono::duration<long double, std::ratio<3600>>{}, "long double h");
  // Unsigned reps have min() == 0.
  check(std::chrono::duration<std::uint64_t, std::milli>{}, "unsigned ms");
  check(std::chrono::duration<std::uint32_t>{}, "unsigned s", true);
}

TEST(Deadline, AfterUnevenPeriodDoesNotOverflowOnTheWay) {
  // 2*10^10 thirds of a second (about 211 years) fit in nanoseconds, but
  // count * 10^9 does not fit in 64 bits.
  const auto before = SteadyClock::now();
  const Deadline d = Deadline::after(Thirds(20'000'000'000));
  EXPECT_FALSE(d.is_never());
  EXPECT_FALSE(d.expired());
  const auto expect = std::chrono::seconds(20'000'000'000 / 3);
  EXPECT_GE(d.point(), before + expect);
  EXPECT_LE(d.point(), SteadyClock::now() + expect + std::chrono::seconds(1));
}

TEST(Deadline, AfterNotANumberDoesNotWait) {
  // NaN compares false with everything: it is neither "for ever" nor a wrap.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Deadline d = Deadline::after(std::chrono::duration<double>(nan));
  EXPECT_FALSE(d.is_never());
  EXPECT_TRUE(d.expired());
  const Deadline t = Deadline::at(std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<double>>(
      std::chrono::duration<double>(nan)));
  EXPECT_FALSE(t.is_never());
  EXPECT_TRUE(t.expired());
  const Deadline s = Deadline::at(
      std::chrono::time_point<SteadyClock, std::chrono::duration<double>>(std::chrono::duration<double>(nan)));
  EXPECT_FALSE(s.is_never());
  EXPECT_TRUE(s.expired());
}

TEST(Deadline, AfterSubNanosecondRoundsUp) {
  const auto before = SteadyClock::now();
  const Deadline d = Deadline::after(std::chrono::duration<std::int64_t, std::pico>(1));
  EXPECT_FALSE(d.is_never());
  EXPECT_GT(d.point(), before);
}

TEST(Deadline, SaturatingNanosecondsNeverOverflows) {
  using keel::platform::saturating_nanoseconds;
  using Ns = std::chrono::nanoseconds;
  EXPECT_EQ(saturating_nanoseconds(std::chrono::hours::max()), Ns::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::hours::min()), Ns::min());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::years::max()), Ns::max());
  EXPECT_EQ(saturating_nanoseconds(Ns::max()), Ns::max());
  EXPECT_EQ(saturating_nanoseconds(Ns::min()), Ns::min());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(1e300)), Ns::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(-1e300)), Ns::min());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::seconds(3)), Ns(3'000'000'000));
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double, std::nano>(0.5)), Ns(1));  // rounds up
  EXPECT_EQ(saturating_nanoseconds(Thirds(3)), Ns(1'000'000'000));
  EXPECT_EQ(saturating_nanoseconds(Thirds(20'000'000'000)), Ns(6'666'666'666'666'666'667));
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())),
            Ns::zero());
}
