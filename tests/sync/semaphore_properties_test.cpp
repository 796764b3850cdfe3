// RapidCheck stateful tests of Semaphore and BoundedSemaphore against a
// sequential model: the value is an integer in [0, bound]; try_acquire takes
// one iff it is positive; release(n) adds n iff n >= 1 and the bound allows
// it, and otherwise throws ValueError and changes nothing.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "../support/test_support.hpp"
#include "keel/sync/semaphore.hpp"

using namespace std::chrono_literals;

namespace {

struct SemModel {
  std::int32_t value = 0;
  std::int32_t bound = keel::Semaphore::max_value;
};

// The system under test: either kind, through the common base.
struct SemSut {
  std::unique_ptr<keel::Semaphore> sem;
};

using SemCommand = rc::state::Command<SemModel, SemSut>;

struct TryAcquire : SemCommand {
  void apply(SemModel& m) const override {
    if (m.value > 0) --m.value;
  }
  void run(const SemModel& m, SemSut& s) const override {
    RC_ASSERT(s.sem->try_acquire() == (m.value > 0));
    RC_ASSERT(s.sem->value() == (m.value > 0 ? m.value - 1 : 0));
  }
  void show(std::ostream& os) const override { os << "try_acquire()"; }
};

// A timed acquire whose deadline has already passed behaves as try_acquire.
struct TryAcquireForZero : SemCommand {
  bool until = *rc::gen::arbitrary<bool>();
  void apply(SemModel& m) const override {
    if (m.value > 0) --m.value;
  }
  void run(const SemModel& m, SemSut& s) const override {
    const bool got =
        until ? s.sem->try_acquire_until(std::chrono::steady_clock::now() - 1ms) : s.sem->try_acquire_for(0ms);
    RC_ASSERT(got == (m.value > 0));
  }
  void show(std::ostream& os) const override { os << (until ? "try_acquire_until(past)" : "try_acquire_for(0)"); }
};

// A short real timeout on an empty semaphore: false, and nothing changes.
struct TryAcquireForShortWhenEmpty : SemCommand {
  void checkPreconditions(const SemModel& m) const override { RC_PRE(m.value == 0); }
  void run(const SemModel&, SemSut& s) const override {
    RC_ASSERT(!s.sem->try_acquire_for(1ms));
    RC_ASSERT(s.sem->value() == 0);
  }
  void show(std::ostream& os) const override { os << "try_acquire_for(1ms) on empty"; }
};

// acquire() only where it cannot block.
struct Acquire : SemCommand {
  void checkPreconditions(const SemModel& m) const override { RC_PRE(m.value > 0); }
  void apply(SemModel& m) const override { --m.value; }
  void run(const SemModel& m, SemSut& s) const override {
    s.sem->acquire();
    RC_ASSERT(s.sem->value() == m.value - 1);
  }
  void show(std::ostream& os) const override { os << "acquire()"; }
};

struct Release : SemCommand {
  std::int32_t n;
  // Mostly small n, sometimes zero or negative, sometimes past the bound.
  Release()
      : n(*rc::gen::weightedOneOf<std::int32_t>({{8, rc::gen::inRange<std::int32_t>(1, 4)},
                                                 {1, rc::gen::inRange<std::int32_t>(-3, 1)},
                                                 {1, rc::gen::inRange<std::int32_t>(4, 12)}})) {}
  bool accepted(const SemModel& m) const { return n >= 1 && m.value <= m.bound - n; }
  void apply(SemModel& m) const override {
    if (accepted(m)) m.value += n;
  }
  void run(const SemModel& m, SemSut& s) const override {
    if (accepted(m)) {
      s.sem->release(n);
      RC_ASSERT(s.sem->value() == m.value + n);
    } else {
      RC_ASSERT_THROWS_AS(s.sem->release(n), keel::ValueError);
      RC_ASSERT(s.sem->value() == m.value);  // unchanged
    }
  }
  void show(std::ostream& os) const override { os << "release(" << n << ")"; }
};

struct ObserveCount : SemCommand {
  void run(const SemModel& m, SemSut& s) const override { RC_ASSERT(s.sem->value() == m.value); }
  void show(std::ostream& os) const override { os << "value()"; }
};

auto commands() {
  return rc::state::gen::execOneOfWithArgs<TryAcquire, TryAcquireForZero, TryAcquireForShortWhenEmpty, Acquire, Release,
                                           ObserveCount>();
}

}  // namespace

TEST(SemaphoreProperties, StatefulAgainstModel) {
  EXPECT_TRUE(keel_test::rc_check("Semaphore matches the counter model", 100, 40, [] {
    const auto initial = *rc::gen::inRange<std::int32_t>(0, 6);
    SemModel model{initial, keel::Semaphore::max_value};
    SemSut sut{std::make_unique<keel::Semaphore>(initial)};
    rc::state::check(model, sut, commands());
  }));
}

TEST(SemaphoreProperties, BoundedStatefulAgainstModel) {
  EXPECT_TRUE(keel_test::rc_check("BoundedSemaphore matches the bounded counter model", 100, 40, [] {
    const auto bound = *rc::gen::inRange<std::int32_t>(0, 6);
    // Start anywhere in [0, bound] by taking some units first.
    const auto taken = *rc::gen::inRange<std::int32_t>(0, bound + 1);
    auto b = std::make_unique<keel::BoundedSemaphore>(bound);
    RC_ASSERT(b->limit() == bound);
    for (std::int32_t i = 0; i < taken; ++i) RC_ASSERT(b->try_acquire());
    SemModel model{bound - taken, bound};
    SemSut sut{std::move(b)};
    rc::state::check(model, sut, commands());
  }));
}

TEST(SemaphoreProperties, ReleaseThenAcquireRoundTrips) {
  EXPECT_TRUE(keel_test::rc_check("release(n) then n try_acquires return to the start", 100, 100, [] {
    const auto initial = *rc::gen::inRange<std::int32_t>(0, 100);
    const auto n = *rc::gen::inRange<std::int32_t>(1, 100);
    keel::Semaphore s(initial);
    s.release(n);
    for (std::int32_t i = 0; i < n; ++i) RC_ASSERT(s.try_acquire());
    RC_ASSERT(s.value() == initial);
  }));
}
