// Tests of the pieces a thread pool's lock-free hot path is built from:
// TaskRing (EXEC-13) and SubmitGate (EXEC-14). Their Relacy models are in
// models/executor/hot_path_model.cpp; these run the native build, with
// RapidCheck against a sequential model and with real threads.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/executor/submit_gate.hpp"
#include "keel/executor/task_ring.hpp"

using namespace std::chrono_literals;

namespace {

using Ring = keel::detail::TaskRing<int>;

// ---------------------------------------------------------------- TaskRing

TEST(TaskRing, PopsInPushOrderAndReportsFullAndEmpty) {
  std::vector<int> v(9);
  Ring r(3);  // rounded up to 4
  EXPECT_EQ(r.capacity(), 4u);
  EXPECT_EQ(r.try_pop(), nullptr);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.try_push(&v[i]));
  EXPECT_FALSE(r.try_push(&v[4]));  // full: nothing changes
  EXPECT_EQ(r.pushed() - r.popped(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.try_pop(), &v[i]);
  EXPECT_EQ(r.try_pop(), nullptr);  // empty: nothing changes
  EXPECT_EQ(r.pushed(), r.popped());
}

TEST(TaskRing, WrapsAroundForManyLaps) {
  std::vector<int> v(3);
  Ring r(2);
  for (int lap = 0; lap < 10000; ++lap) {
    ASSERT_TRUE(r.try_push(&v[lap % 3]));
    ASSERT_TRUE(r.try_push(&v[(lap + 1) % 3]));
    ASSERT_EQ(r.try_pop(), &v[lap % 3]);
    ASSERT_EQ(r.try_pop(), &v[(lap + 1) % 3]);
  }
  EXPECT_EQ(r.popped(), 20000u);
}

TEST(TaskRing, CapacityIsAPowerOfTwoAndAnAbsurdOneIsRefused) {
  EXPECT_EQ(Ring(0).capacity(), 2u);
  EXPECT_EQ(Ring(1).capacity(), 2u);
  EXPECT_EQ(Ring(1000).capacity(), 1024u);
  EXPECT_EQ(Ring(1024).capacity(), 1024u);
  EXPECT_THROW(Ring(Ring::max_capacity + 1), keel::ValueError);
  EXPECT_THROW(Ring(SIZE_MAX), keel::ValueError);
}

struct RingModel {
  std::deque<int> items;  // indices into the SUT's storage
  std::size_t capacity = 0;
  int next = 0;
};
struct RingSut {
  std::unique_ptr<Ring> ring;
  std::vector<int> storage = std::vector<int>(100000);
};
using RingCommand = rc::state::Command<RingModel, RingSut>;

struct Push : RingCommand {
  void apply(RingModel& m) const override {
    if (m.items.size() < m.capacity) m.items.push_back(m.next);
    ++m.next;
  }
  void run(const RingModel& m, RingSut& s) const override {
    const bool room = m.items.size() < m.capacity;
    RC_ASSERT(s.ring->try_push(&s.storage[static_cast<std::size_t>(m.next)]) == room);
  }
  void show(std::ostream& os) const override { os << "try_push"; }
};
struct Pop : RingCommand {
  void apply(RingModel& m) const override {
    if (!m.items.empty()) m.items.pop_front();
  }
  void run(const RingModel& m, RingSut& s) const override {
    int* got = s.ring->try_pop();
    if (m.items.empty()) {
      RC_ASSERT(got == nullptr);
    } else {
      RC_ASSERT(got == &s.storage[static_cast<std::size_t>(m.items.front())]);
    }
  }
  void show(std::ostream& os) const override { os << "try_pop"; }
};
struct Counts : RingCommand {
  void run(const RingModel& m, RingSut& s) const override {
    RC_ASSERT(s.ring->pushed() - s.ring->popped() == m.items.size());
  }
  void show(std::ostream& os) const override { os << "pushed - popped"; }
};

TEST(TaskRingProperties, StatefulAgainstADeque) {
  EXPECT_TRUE(keel_test::rc_check("TaskRing matches a bounded deque", 100, 400, [] {
    const auto log2 = *rc::gen::inRange(1, 5);
    RingModel model;
    model.capacity = std::size_t{1} << log2;
    RingSut sut;
    sut.ring = std::make_unique<Ring>(model.capacity);
    RC_ASSERT(sut.ring->capacity() == model.capacity);
    rc::state::check(model, sut, rc::state::gen::execOneOfWithArgs<Push, Push, Pop, Counts>());
  }));
}

// EXEC-13 with real threads: four pushers and two pops through a small ring
// (full and empty often). Every item comes out once, each pusher's in its
// order, and a pop sees what the pusher wrote before the push.
TEST(TaskRing, ConcurrentPushersAndPoppersHandEachItemOnceInEachPushersOrder) {
  struct Item {
    int pusher = 0;
    int seq = 0;
    std::uint64_t check = 0;
  };
  const int per = keel_test::scaled(50000, 2000);
  constexpr int pushers = 4;
  constexpr int poppers = 2;
  std::vector<Item> items(static_cast<std::size_t>(per) * pushers);
  keel::detail::TaskRing<Item> ring(4);  // small: full and empty often
  std::vector<std::vector<int>> last(poppers, std::vector<int>(pushers, -1));
  std::vector<std::atomic<int>> taken(items.size());
  std::atomic<int> total{0};
  std::atomic<bool> order_ok{true};
  std::atomic<bool> payload_ok{true};
  {
    std::vector<std::jthread> threads;
    for (int p = 0; p < pushers; ++p) {
      threads.emplace_back([&, p] {
        const keel_test::Stopwatch sw;
        for (int k = 0; k < per && sw.elapsed() < keel_test::hang_limit; ++k) {
          Item& it = items[static_cast<std::size_t>(p * per + k)];
          it.pusher = p;
          it.seq = k;
          it.check = static_cast<std::uint64_t>(p) * 1000003u + static_cast<std::uint64_t>(k);
          while (!ring.try_push(&it) && sw.elapsed() < keel_test::hang_limit) std::this_thread::yield();
        }
      });
    }
    for (int c = 0; c < poppers; ++c) {
      threads.emplace_back([&, c] {
        const keel_test::Stopwatch sw;
        while (total.load() < static_cast<int>(items.size()) && sw.elapsed() < keel_test::hang_limit) {
          Item* it = ring.try_pop();
          if (it == nullptr) {
            std::this_thread::yield();
            continue;
          }
          if (it->check != static_cast<std::uint64_t>(it->pusher) * 1000003u + static_cast<std::uint64_t>(it->seq)) {
            payload_ok = false;
          }
          // One popper sees each pusher's items in increasing order.
          int& seen = last[static_cast<std::size_t>(c)][static_cast<std::size_t>(it->pusher)];
          if (it->seq <= seen) order_ok = false;
          seen = it->seq;
          taken[static_cast<std::size_t>(it - items.data())].fetch_add(1);
          total.fetch_add(1);
        }
      });
    }
  }
  EXPECT_EQ(total.load(), static_cast<int>(items.size()));
  EXPECT_TRUE(order_ok.load());
  EXPECT_TRUE(payload_ok.load());
  int wrong = 0;
  for (auto& t : taken) wrong += t.load() != 1;
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(ring.try_pop(), nullptr);
}

// ---------------------------------------------------------------- SubmitGate

TEST(SubmitGate, ClosedGateRefusesAndReopenedAdmits) {
  keel::detail::SubmitGate g;
  EXPECT_FALSE(g.is_closed());
  ASSERT_TRUE(g.enter());
  g.leave();
  g.close();  // nobody inside: returns at once
  EXPECT_TRUE(g.is_closed());
  EXPECT_FALSE(g.enter());
  EXPECT_FALSE(g.enter());  // a refusal leaves nothing behind: close() again does not wait
  g.open();
  EXPECT_FALSE(g.is_closed());
  ASSERT_TRUE(g.enter());
  g.leave();
  g.close();
  EXPECT_TRUE(g.is_closed());
}

TEST(SubmitGate, CloseWaitsForTheSubmittersInside) {
  keel::detail::SubmitGate g;
  ASSERT_TRUE(g.enter());
  ASSERT_TRUE(g.enter());  // two inside
  std::atomic<bool> closed{false};
  std::atomic<pid_t> tid{0};
  std::jthread closer([&] {
    tid = keel_test::this_tid();
    g.close();
    closed = true;
  });
  ASSERT_TRUE(keel_test::eventually([&] { return tid.load() != 0; }));
  keel_test::wait_blocked_in_futex(tid.load());
  EXPECT_TRUE(g.is_closed());
  EXPECT_FALSE(g.enter());  // closed while two are still inside
  EXPECT_FALSE(closed.load());
  g.leave();
  std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(closed.load());  // one still inside
  g.leave();
  EXPECT_TRUE(keel_test::eventually([&] { return closed.load(); }));
}

// EXEC-14 with real threads: submitters write inside the gate while a closer
// closes, reads, and reopens, over and over. After each close, the closer
// sees every write of every submitter that got in, and nobody is inside.
TEST(SubmitGate, CloseSeesEveryWriteOfTheSubmittersThatGotIn) {
  constexpr int submitters = 3;
  keel::detail::SubmitGate g;
  std::vector<std::uint64_t> written(submitters, 0);  // plain: ordered only by the gate
  std::vector<std::atomic<std::uint64_t>> got_in(submitters);
  std::vector<std::atomic<int>> inside(submitters);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  {
    std::vector<std::jthread> threads;
    for (int s = 0; s < submitters; ++s) {
      threads.emplace_back([&, s] {
        const auto i = static_cast<std::size_t>(s);
        while (!stop.load()) {
          if (!g.enter()) continue;
          inside[i].store(1);
          written[i] = written[i] + 1;
          got_in[i].store(written[i]);
          inside[i].store(0);
          g.leave();
        }
      });
    }
    const int rounds = keel_test::scaled(20000, 500);
    const auto all_got_in = [&] {
      for (auto& n : got_in) {
        if (n.load() == 0) return false;
      }
      return true;
    };
    const keel_test::Stopwatch sw;
    for (int r = 0; (r < rounds || !all_got_in()) && sw.elapsed() < keel_test::hang_limit; ++r) {
      g.close();
      for (std::size_t i = 0; i < submitters; ++i) {
        if (inside[i].load() != 0) ++bad;
        if (written[i] != got_in[i].load()) ++bad;
      }
      g.open();
    }
    stop = true;
  }
  EXPECT_EQ(bad.load(), 0);
  for (auto& n : got_in) EXPECT_GT(n.load(), 0u);
}

}  // namespace
