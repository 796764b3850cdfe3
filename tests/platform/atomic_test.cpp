// keel::platform::Atomic<T>, the native half of the shim's atomics: each
// operation does what std::atomic's does (the value it returns and the value
// it leaves), and read-modify-writes from two threads lose no update. The
// kernel reaches atomics only through this type (PLAT-1), so a wrapper that
// stored where it should add would break every layer above it at once; these
// tests link first in the test binary (Makefile: TEST_LINK_OBJ), so that
// such a break fails here, by name, before the layers' own tests hang on it.
#include "keel/platform/atomic.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>

#include "../support/test_support.hpp"

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
constexpr auto acq_rel = std::memory_order_acq_rel;
constexpr auto acquire = std::memory_order_acquire;
constexpr auto seq_cst = std::memory_order_seq_cst;
}  // namespace

TEST(PlatformAtomic, LoadStoreAndExchangeLeaveAndReturnTheRightValues) {
  keel::platform::Atomic<std::int32_t> a;
  EXPECT_EQ(a.load(seq_cst), 0);  // value-initialised
  a.store(7, relaxed);
  EXPECT_EQ(a.load(acquire), 7);
  EXPECT_EQ(a.exchange(-3, acq_rel), 7);
  EXPECT_EQ(a.load(relaxed), -3);
  keel::platform::Atomic<bool> b(true);
  EXPECT_TRUE(b.exchange(false, seq_cst));
  EXPECT_FALSE(b.load(seq_cst));
}

TEST(PlatformAtomic, ArithmeticReturnsTheOldValueAndLeavesTheNewOne) {
  keel::platform::Atomic<std::uint64_t> a(10);
  EXPECT_EQ(a.fetch_add(5, acq_rel), 10u);
  EXPECT_EQ(a.load(relaxed), 15u);
  EXPECT_EQ(a.fetch_sub(4, acq_rel), 15u);
  EXPECT_EQ(a.load(relaxed), 11u);
  EXPECT_EQ(a.fetch_or(0x100, seq_cst), 11u);
  EXPECT_EQ(a.load(relaxed), 0x10bu);
  EXPECT_EQ(a.fetch_or(0x1, seq_cst), 0x10bu);  // a bit already set stays set, nothing else changes
  EXPECT_EQ(a.load(relaxed), 0x10bu);
  keel::platform::Atomic<std::uint32_t> w(0);
  EXPECT_EQ(w.fetch_sub(1, relaxed), 0u);  // unsigned wrap, as std::atomic
  EXPECT_EQ(w.load(relaxed), 0xffffffffu);
}

TEST(PlatformAtomic, CompareExchangeSwapsOnlyOnAMatchAndReportsTheValueOtherwise) {
  keel::platform::Atomic<std::int32_t> a(1);
  std::int32_t expected = 2;
  EXPECT_FALSE(a.compare_exchange_strong(expected, 5, acq_rel, acquire));
  EXPECT_EQ(expected, 1);  // the value found
  EXPECT_EQ(a.load(relaxed), 1);
  EXPECT_TRUE(a.compare_exchange_strong(expected, 5, acq_rel, acquire));
  EXPECT_EQ(a.load(relaxed), 5);
  expected = 4;
  EXPECT_FALSE(a.compare_exchange_weak(expected, 9, acq_rel, relaxed));
  EXPECT_EQ(expected, 5);
  EXPECT_EQ(a.load(relaxed), 5);
  // A weak CAS may fail spuriously, never succeed wrongly: retried, it swaps.
  while (!a.compare_exchange_weak(expected, 9, acq_rel, relaxed)) {
    ASSERT_EQ(expected, 5);
  }
  EXPECT_EQ(a.load(relaxed), 9);
}

TEST(PlatformAtomic, ReadModifyWritesFromTwoThreadsLoseNoUpdate) {
  keel::platform::Atomic<std::int64_t> sum(0);
  keel::platform::Atomic<std::int64_t> cas_sum(0);
  const int n = keel_test::scaled(100000, 1000);
  auto work = [&] {
    for (int i = 0; i < n; ++i) {
      sum.fetch_add(1, relaxed);
      std::int64_t seen = cas_sum.load(relaxed);
      while (!cas_sum.compare_exchange_weak(seen, seen + 1, relaxed, relaxed)) {
      }
    }
  };
  std::thread t(work);
  work();
  t.join();
  EXPECT_EQ(sum.load(seq_cst), 2 * static_cast<std::int64_t>(n));
  EXPECT_EQ(cas_sum.load(seq_cst), 2 * static_cast<std::int64_t>(n));
}
