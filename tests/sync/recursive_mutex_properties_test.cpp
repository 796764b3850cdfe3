// RapidCheck properties of RecursiveMutex depth: random sequences of lock,
// try_lock, timed locks, unlock (including misuse at depth 0), release_all/
// restore and probes from another thread, against a model that is just the
// owner's depth.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/sync/recursive_mutex.hpp"

// Commands lock in one call and unlock in another.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;

namespace {

struct DepthModel {
  std::uint32_t depth = 0;
};

struct RmSut {
  keel::RecursiveMutex m;
  ~RmSut() {
    // Leave it unlocked whatever failed (the test thread is the owner).
    while (m.depth() > 0) m.unlock();
  }
};

using RmCommand = rc::state::Command<DepthModel, RmSut>;

struct Lock : RmCommand {
  void checkPreconditions(const DepthModel& m) const override { RC_PRE(m.depth < 64); }
  void apply(DepthModel& m) const override { ++m.depth; }
  void run(const DepthModel& m, RmSut& s) const override {
    s.m.lock();
    RC_ASSERT(s.m.depth() == m.depth + 1);
    RC_ASSERT(s.m.is_owned());
  }
  void show(std::ostream& os) const override { os << "lock()"; }
};

// try_lock and the timed forms always succeed for the owner or a free lock.
struct TryLock : RmCommand {
  int form = *rc::gen::inRange(0, 4);
  void checkPreconditions(const DepthModel& m) const override { RC_PRE(m.depth < 64); }
  void apply(DepthModel& m) const override { ++m.depth; }
  void run(const DepthModel& m, RmSut& s) const override {
    bool got = false;
    switch (form) {
      case 0:
        got = s.m.try_lock();
        break;
      case 1:
        got = s.m.try_lock_for(0ms);
        break;
      case 2:
        got = s.m.try_lock_until(std::chrono::steady_clock::now() - 1ms);
        break;
      default:
        got = s.m.try_lock_until(std::chrono::system_clock::now() + 10s);
        break;
    }
    RC_ASSERT(got);
    RC_ASSERT(s.m.depth() == m.depth + 1);
  }
  void show(std::ostream& os) const override {
    static const char* names[] = {"try_lock()", "try_lock_for(0)", "try_lock_until(steady past)",
                                  "try_lock_until(system +10s)"};
    os << names[form];
  }
};

struct Unlock : RmCommand {
  void apply(DepthModel& m) const override {
    if (m.depth > 0) --m.depth;
  }
  void run(const DepthModel& m, RmSut& s) const override {
    if (m.depth == 0) {
      RC_ASSERT_THROWS_AS(s.m.unlock(), keel::NotOwnerError);
      RC_ASSERT(s.m.depth() == 0u);
      RC_ASSERT(!s.m.is_owned());
    } else {
      s.m.unlock();
      RC_ASSERT(s.m.depth() == m.depth - 1);
      RC_ASSERT(s.m.is_owned() == (m.depth > 1));
    }
  }
  void show(std::ostream& os) const override { os << "unlock()"; }
};

// release_all, let another thread take and drop the lock, then restore.
struct ReleaseAllRestore : RmCommand {
  void run(const DepthModel& m, RmSut& s) const override {
    if (m.depth == 0) {
      RC_ASSERT_THROWS_AS(s.m.release_all(), keel::NotOwnerError);
      return;
    }
    const std::uint32_t d = s.m.release_all();
    RC_ASSERT(d == m.depth);
    RC_ASSERT(s.m.depth() == 0u);
    bool other_got = false;
    std::uint32_t other_depth = 0;
    std::thread([&] {
      other_got = s.m.try_lock();
      if (other_got) {
        other_depth = s.m.depth();
        s.m.unlock();
      }
    }).join();
    RC_ASSERT(other_got);
    RC_ASSERT(other_depth == 1u);
    s.m.restore(d);
    RC_ASSERT(s.m.depth() == m.depth);
  }
  void show(std::ostream& os) const override { os << "release_all(); other thread locks; restore()"; }
};

// Another thread: try_lock fails iff the test thread holds it, its unlock is
// refused with NotOwnerError when it does not own it, and nothing changes.
struct ProbeFromOtherThread : RmCommand {
  void run(const DepthModel& m, RmSut& s) const override {
    bool got = true;
    bool unlock_refused = false;
    std::uint32_t seen_depth = 99;
    std::thread([&] {
      seen_depth = s.m.depth();
      got = s.m.try_lock_for(1ms);
      if (got) {
        s.m.unlock();
      }
      try {
        s.m.unlock();
      } catch (const keel::NotOwnerError&) {
        unlock_refused = true;
      }
    }).join();
    RC_ASSERT(seen_depth == 0u);
    RC_ASSERT(got == (m.depth == 0));
    RC_ASSERT(unlock_refused);
    RC_ASSERT(s.m.depth() == m.depth);
  }
  void show(std::ostream& os) const override { os << "probe from another thread"; }
};

}  // namespace

TEST(RecursiveMutexProperties, DepthMatchesModel) {
  EXPECT_TRUE(keel_test::rc_check("RecursiveMutex depth follows lock/unlock sequences", 100, 50, [] {
    DepthModel model;
    RmSut sut;
    rc::state::check(
        model, sut,
        rc::state::gen::execOneOfWithArgs<Lock, TryLock, Unlock, ReleaseAllRestore, ProbeFromOtherThread>());
  }));
}

TEST(RecursiveMutexProperties, BalancedSequencesEndUnowned) {
  // Any interleaving of k locks and k unlocks that never dips below zero
  // leaves the lock free, with the depth tracking the running balance.
  EXPECT_TRUE(keel_test::rc_check("balanced lock/unlock sequences end unowned", 100, 60, [] {
    const auto ops = *rc::gen::container<std::vector<bool>>(rc::gen::arbitrary<bool>());
    keel::RecursiveMutex m;
    std::uint32_t depth = 0;
    for (bool is_lock : ops) {
      if (is_lock) {
        m.lock();
        ++depth;
      } else if (depth > 0) {
        m.unlock();
        --depth;
      } else {
        RC_ASSERT_THROWS_AS(m.unlock(), keel::NotOwnerError);
      }
      RC_ASSERT(m.depth() == depth);
    }
    while (depth > 0) {
      m.unlock();
      --depth;
    }
    RC_ASSERT(!m.is_owned());
    bool other_got = false;
    std::thread([&] {
      other_got = m.try_lock();
      if (other_got) m.unlock();
    }).join();
    RC_ASSERT(other_got);
  }));
}
