// RapidCheck stateful test of Barrier against a sequential model.
//
// The model is the barrier as seen between commands: how many threads wait in
// the filling generation (each of which will get its arrival index), and
// whether the barrier is broken. Commands start background waiters (with a
// long timeout, so only the test decides when they leave), arrive from the
// test thread (completing the generation, timing out, or bouncing off a broken
// barrier), abort, reset, and observe n_waiting() and broken(). Every command
// that releases background waiters joins them and checks each one's outcome
// against the model's prediction; the SUT aborts and joins any still waiting
// at the end of a run.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/sync/barrier.hpp"

using namespace std::chrono_literals;

namespace {

constexpr long broken_outcome = -1;
constexpr long pending_outcome = -2;
constexpr long other_error_outcome = -3;

struct BarrierModel {
  std::size_t parties = 1;
  std::size_t count = 0;  // threads waiting in the filling generation
  bool broken = false;
  int actions = 0;  // completed generations (the action counts them)
};

struct Waiter {
  std::thread thread;
  std::atomic<long> outcome{pending_outcome};
};

struct BarrierSut {
  explicit BarrierSut(std::size_t parties) : barrier(parties, [this] { actions.fetch_add(1); }) {}
  BarrierSut(const BarrierSut&) = delete;
  BarrierSut& operator=(const BarrierSut&) = delete;
  ~BarrierSut() {
    barrier.abort();  // release whoever still waits, whatever failed
    for (auto& w : pending) {
      if (w->thread.joinable()) w->thread.join();
    }
  }

  // Joins every pending waiter and checks each outcome: arrival index i for
  // the i-th waiter when the generation completed, broken otherwise.
  void join_pending(bool completed) {
    for (std::size_t i = 0; i < pending.size(); ++i) {
      pending[i]->thread.join();
      const long got = pending[i]->outcome.load();
      const long want = completed ? static_cast<long>(i) : broken_outcome;
      RC_ASSERT(got == want);
    }
    pending.clear();
  }

  std::atomic<int> actions{0};
  keel::Barrier barrier;
  std::vector<std::unique_ptr<Waiter>> pending;  // in arrival order
};

using BarrierCommand = rc::state::Command<BarrierModel, BarrierSut>;

// Records what one wait produced.
template <class F>
long outcome_of(F wait_fn) {
  try {
    return static_cast<long>(wait_fn());
  } catch (const keel::BrokenBarrierError&) {
    return broken_outcome;
  } catch (...) {
    return other_error_outcome;
  }
}

// A background thread arrives and blocks (not the last party).
struct StartWaiter : BarrierCommand {
  void checkPreconditions(const BarrierModel& m) const override { RC_PRE(!m.broken && m.count + 1 < m.parties); }
  void apply(BarrierModel& m) const override { ++m.count; }
  void run(const BarrierModel& m, BarrierSut& s) const override {
    auto w = std::make_unique<Waiter>();
    Waiter* wp = w.get();
    keel::Barrier* b = &s.barrier;
    w->thread = std::thread([wp, b] { wp->outcome.store(outcome_of([b] { return b->wait_for(60s); })); });
    s.pending.push_back(std::move(w));
    // Wait until it is counted, so arrival order (and so its index) is known.
    RC_ASSERT(keel_test::eventually([&] { return s.barrier.n_waiting() == m.count + 1; }));
    RC_ASSERT(wp->outcome.load() == pending_outcome);
  }
  void show(std::ostream& os) const override { os << "start waiter"; }
};

// The test thread arrives as the last party: the generation completes.
struct ArriveLast : BarrierCommand {
  void checkPreconditions(const BarrierModel& m) const override { RC_PRE(!m.broken && m.count + 1 == m.parties); }
  void apply(BarrierModel& m) const override {
    m.count = 0;
    ++m.actions;
  }
  void run(const BarrierModel& m, BarrierSut& s) const override {
    const long got = outcome_of([&] { return s.barrier.wait_for(60s); });
    RC_ASSERT(got == static_cast<long>(m.parties - 1));
    RC_ASSERT(s.actions.load() == m.actions + 1);
    s.join_pending(true);
  }
  void show(std::ostream& os) const override { os << "arrive last"; }
};

// The test thread arrives early with a short timeout: it times out and
// breaks the barrier for everyone.
struct ArriveAndTimeOut : BarrierCommand {
  void checkPreconditions(const BarrierModel& m) const override { RC_PRE(!m.broken && m.count + 1 < m.parties); }
  void apply(BarrierModel& m) const override {
    m.count = 0;
    m.broken = true;
  }
  void run(const BarrierModel&, BarrierSut& s) const override {
    RC_ASSERT(outcome_of([&] { return s.barrier.wait_for(1ms); }) == broken_outcome);
    s.join_pending(false);
    RC_ASSERT(s.barrier.broken());
  }
  void show(std::ostream& os) const override { os << "arrive with 1ms timeout"; }
};

// Arriving at a broken barrier fails at once, whatever the timeout.
struct ArriveBroken : BarrierCommand {
  void checkPreconditions(const BarrierModel& m) const override { RC_PRE(m.broken); }
  void run(const BarrierModel&, BarrierSut& s) const override {
    RC_ASSERT(outcome_of([&] { return s.barrier.wait_for(60s); }) == broken_outcome);
    RC_ASSERT(outcome_of([&] { return s.barrier.wait(); }) == broken_outcome);
  }
  void show(std::ostream& os) const override { os << "arrive at broken barrier"; }
};

struct Abort : BarrierCommand {
  void apply(BarrierModel& m) const override {
    m.count = 0;
    m.broken = true;
  }
  void run(const BarrierModel&, BarrierSut& s) const override {
    s.barrier.abort();
    s.join_pending(false);
    RC_ASSERT(s.barrier.broken());
    RC_ASSERT(s.barrier.n_waiting() == 0);
  }
  void show(std::ostream& os) const override { os << "abort()"; }
};

struct Reset : BarrierCommand {
  void apply(BarrierModel& m) const override {
    m.count = 0;
    m.broken = false;
  }
  void run(const BarrierModel&, BarrierSut& s) const override {
    s.barrier.reset();
    s.join_pending(false);  // waiters of the reset generation see BrokenBarrierError
    RC_ASSERT(!s.barrier.broken());
  }
  void show(std::ostream& os) const override { os << "reset()"; }
};

struct Observe : BarrierCommand {
  void run(const BarrierModel& m, BarrierSut& s) const override {
    RC_ASSERT(s.barrier.broken() == m.broken);
    RC_ASSERT(s.barrier.n_waiting() == (m.broken ? 0 : m.count));
    RC_ASSERT(s.barrier.parties() == m.parties);
    RC_ASSERT(s.pending.size() == m.count);
  }
  void show(std::ostream& os) const override { os << "observe n_waiting/broken"; }
};

}  // namespace

TEST(BarrierProperties, StatefulAgainstModel) {
  EXPECT_TRUE(keel_test::rc_check("Barrier matches the sequential model", 40, 25, [] {
    const auto parties = *rc::gen::inRange<std::size_t>(1, 5);
    BarrierModel model;
    model.parties = parties;
    BarrierSut sut(parties);
    rc::state::check(model, sut,
                     rc::state::gen::execOneOfWithArgs<StartWaiter, ArriveLast, ArriveAndTimeOut, ArriveBroken, Abort,
                                                       Reset, Observe>());
  }));
}
