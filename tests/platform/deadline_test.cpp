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
