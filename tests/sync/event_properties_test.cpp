// RapidCheck stateful test of Event against a one-bit model, including a
// background waiter whose wake-up the model predicts.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <chrono>
#include <memory>
#include <thread>

#include "../support/test_support.hpp"
#include "keel/sync/event.hpp"

using namespace std::chrono_literals;

namespace {

struct EventModel {
  bool set = false;
  bool waiter = false;  // a background thread is blocked in wait()
};

struct EventSut {
  keel::Event event;
  std::thread waiter;
  std::atomic<bool> waiter_returned{false};
  ~EventSut() {
    // Never leave a thread behind, whatever failed.
    event.set();
    if (waiter.joinable()) waiter.join();
  }
};

using EventCommand = rc::state::Command<EventModel, EventSut>;

struct Set : EventCommand {
  void apply(EventModel& m) const override {
    m.set = true;
    m.waiter = false;  // set() releases the waiter
  }
  void run(const EventModel& m, EventSut& s) const override {
    s.event.set();
    RC_ASSERT(s.event.is_set());
    if (m.waiter) {
      s.waiter.join();
      RC_ASSERT(s.waiter_returned.load());
    }
  }
  void show(std::ostream& os) const override { os << "set()"; }
};

struct Clear : EventCommand {
  void apply(EventModel& m) const override { m.set = false; }
  void run(const EventModel&, EventSut& s) const override {
    s.event.clear();
    RC_ASSERT(!s.event.is_set());
  }
  void show(std::ostream& os) const override { os << "clear()"; }
};

struct IsSet : EventCommand {
  void run(const EventModel& m, EventSut& s) const override { RC_ASSERT(s.event.is_set() == m.set); }
  void show(std::ostream& os) const override { os << "is_set()"; }
};

struct WaitForZero : EventCommand {
  bool until = *rc::gen::arbitrary<bool>();
  void run(const EventModel& m, EventSut& s) const override {
    const bool r = until ? s.event.wait_until(std::chrono::system_clock::now() - 1s) : s.event.wait_for(0ms);
    RC_ASSERT(r == m.set);
  }
  void show(std::ostream& os) const override { os << (until ? "wait_until(past)" : "wait_for(0)"); }
};

// A real (short) timed wait on a clear event returns false.
struct WaitForShortWhenClear : EventCommand {
  void checkPreconditions(const EventModel& m) const override { RC_PRE(!m.set); }
  void run(const EventModel&, EventSut& s) const override { RC_ASSERT(!s.event.wait_for(1ms)); }
  void show(std::ostream& os) const override { os << "wait_for(1ms) while clear"; }
};

// A background thread waits; it must stay blocked until the next set().
struct StartEventWaiter : EventCommand {
  void checkPreconditions(const EventModel& m) const override { RC_PRE(!m.set && !m.waiter); }
  void apply(EventModel& m) const override { m.waiter = true; }
  void run(const EventModel&, EventSut& s) const override {
    if (s.waiter.joinable()) s.waiter.join();
    s.waiter_returned.store(false);
    std::atomic<pid_t> tid{0};
    s.waiter = std::thread([&s, &tid] {
      tid.store(keel_test::this_tid());
      s.event.wait();
      s.waiter_returned.store(true);
    });
    while (tid.load() == 0) std::this_thread::yield();
    keel_test::wait_blocked_in_futex(tid.load(), &s.event);
    RC_ASSERT(!s.waiter_returned.load());
  }
  void show(std::ostream& os) const override { os << "start waiter"; }
};

}  // namespace

TEST(EventProperties, StatefulAgainstModel) {
  EXPECT_TRUE(keel_test::rc_check("Event matches the flag model", 60, 30, [] {
    EventModel model;
    EventSut sut;
    rc::state::check(
        model, sut,
        rc::state::gen::execOneOfWithArgs<Set, Clear, IsSet, WaitForZero, WaitForShortWhenClear, StartEventWaiter>());
  }));
}
