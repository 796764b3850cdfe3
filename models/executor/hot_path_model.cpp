// Relacy models of the pieces a thread pool's lock-free hot path is built
// from (proofs/design/executor_ring.pml): the task ring, the event count that
// workers sleep on, and the submission gate. The real code, through the shim.
//
// Items are plain objects with a platform::Var payload, written before their
// push and read after their pop: a pop that does not see its pusher's writes
// is reported as a data race at the kernel's line.
//
// KEEL-TWIN task_ring_publish_relaxed task-ring.two-pushers.3t
// KEEL-TWIN task_ring_free_relaxed task-ring.two-poppers-wrap.3t
// KEEL-TWIN task_ring_pop_unpublished task-ring.two-pushers.3t
// KEEL-TWIN task_ring_publish_release event-count.ring-wake.2t
// KEEL-TWIN task_ring_look_acquire event-count.ring-wake.2t
// KEEL-TWIN event_count_register_relaxed event-count.ring-wake.2t
// KEEL-TWIN event_count_notify_relaxed event-count.ring-wake.2t
// KEEL-TWIN event_count_key_read_late event-count.ring-wake.2t
// KEEL-TWIN event_count_wake_without_advance event-count.ring-wake.2t
// KEEL-TWIN gate_close_skips_wait submit-gate.close-drains.2t
// KEEL-TWIN gate_enter_ignores_closed submit-gate.close-drains.2t
// KEEL-TWIN gate_leave_relaxed submit-gate.close-drains.2t
// KEEL-TWIN gate_leave_skips_wake submit-gate.close-drains.2t
#include "harness.hpp"
#include "keel/executor/submit_gate.hpp"
#include "keel/executor/task_ring.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/event_count.hpp"

namespace {

struct Item {
  keel::platform::Var<int> payload;
};

using Ring = keel::detail::TaskRing<Item>;

void push_until_taken(Ring& ring, Item* item) {
  while (!ring.try_push(item)) rl::yield(1, $);
}

// The consumer's side of a worker: pop, or sleep on the event count until a
// push may have come, looking at the ring again after registering.
Item* pop_or_sleep(Ring& ring, keel::detail::EventCount& ec) {
  for (;;) {
    if (Item* it = ring.try_pop()) return it;
    const auto key = ec.prepare_wait();
    if (Item* it = ring.try_pop()) {
      ec.cancel_wait();
      return it;
    }
    ec.wait(key);
  }
}

// EXEC-13: two pushers fill a ring of two cells, which is full at times, and
// one popper takes all four items: each once, each pusher's in its order,
// each with the payload its pusher wrote.
struct TwoPushers : rl::test_suite<TwoPushers, 3> {
  Ring ring{2};
  Item items[4];
  void thread(unsigned idx) {
    if (idx < 2) {
      for (int k = 0; k < 2; ++k) {
        Item& it = items[idx * 2 + k];
        it.payload.store(static_cast<int>(idx * 2 + k) + 1);
        push_until_taken(ring, &it);
      }
      return;
    }
    int next[2] = {0, 0};
    for (int got = 0; got < 4;) {
      Item* it = ring.try_pop();
      if (it == nullptr) {
        rl::yield(1, $);
        continue;
      }
      const int i = static_cast<int>(it - items);
      RL_ASSERT(i >= 0 && i < 4);
      RL_ASSERT(it->payload.load() == i + 1);
      RL_ASSERT(i % 2 == next[i / 2]);  // each pusher's items in its order, each once
      ++next[i / 2];
      ++got;
    }
  }
  void after() { RL_ASSERT(ring.try_pop() == nullptr); }
};

// EXEC-13: one pusher sends four items through a ring of two cells, so the
// cells are reused a lap later; two poppers share them: each item is taken
// once, each popper sees them in push order, and a cell is written again only
// after its last popper read it.
struct TwoPoppersWrap : rl::test_suite<TwoPoppersWrap, 3> {
  Ring ring{2};
  Item items[4];
  rl::atomic<int> taken[4];
  rl::atomic<int> total;
  void before() {
    for (auto& t : taken) t($).store(0, rl::mo_relaxed);
    total($).store(0, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      for (int k = 0; k < 4; ++k) {
        items[k].payload.store(k + 1);
        push_until_taken(ring, &items[k]);
      }
      return;
    }
    int last = -1;
    while (total($).load(rl::mo_relaxed) < 4) {
      Item* it = ring.try_pop();
      if (it == nullptr) {
        rl::yield(1, $);
        continue;
      }
      const int i = static_cast<int>(it - items);
      RL_ASSERT(i >= 0 && i < 4 && i > last);
      RL_ASSERT(it->payload.load() == i + 1);
      last = i;
      taken[i]($).fetch_add(1, rl::mo_relaxed);
      total($).fetch_add(1, rl::mo_relaxed);
    }
  }
  void after() {
    for (auto& t : taken) RL_ASSERT(t($).load(rl::mo_relaxed) == 1);
  }
};

// SYNC-16 with EXEC-13: a worker that finds the ring empty sleeps on the
// event count; the pusher notifies after its push. The worker never sleeps
// through it (Relacy reports a deadlock).
struct RingWake : rl::test_suite<RingWake, 2> {
  Ring ring{2};
  keel::detail::EventCount ec;
  Item item;
  void thread(unsigned idx) {
    if (idx == 0) {
      item.payload.store(1);
      push_until_taken(ring, &item);
      ec.notify(1);
    } else {
      Item* it = pop_or_sleep(ring, ec);
      RL_ASSERT(it == &item && it->payload.load() == 1);
    }
  }
  void after() { RL_ASSERT(ec.waiters() == 0); }
};

// SYNC-16: two workers, two items, a notify(1) after each push: both workers
// get one, however the wakes and the workers' looks interleave (a wake meant
// for one may be taken by the other's look).
struct TwoSleepers : rl::test_suite<TwoSleepers, 3> {
  Ring ring{2};
  keel::detail::EventCount ec;
  Item items[2];
  void thread(unsigned idx) {
    if (idx == 0) {
      for (auto& it : items) {
        it.payload.store(1);
        push_until_taken(ring, &it);
        ec.notify(1);
      }
    } else {
      Item* it = pop_or_sleep(ring, ec);
      RL_ASSERT(it->payload.load() == 1);
    }
  }
  void after() { RL_ASSERT(ec.waiters() == 0 && ring.try_pop() == nullptr); }
};

// EXEC-14: N - 1 submitters race a closer. Each submitter that got in wrote
// its item inside the gate; the closer, once close() returned, sees every
// such write, and no submitter gets in after that. A refused submitter wrote
// nothing.
template <unsigned N>
struct CloseDrains : rl::test_suite<CloseDrains<N>, N> {
  static constexpr unsigned submitters = N - 1;
  keel::detail::SubmitGate gate;
  keel::platform::Var<int> written[submitters];
  rl::atomic<int> entered[submitters];
  rl::atomic<int> closed;
  void before() {
    for (auto& e : entered) e($).store(0, rl::mo_relaxed);
    closed($).store(0, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    if (idx < submitters) {
      if (!gate.enter()) return;
      entered[idx]($).store(1, rl::mo_relaxed);
      // A submitter inside the gate never finds the close finished.
      RL_ASSERT(closed($).load(rl::mo_relaxed) == 0);
      written[idx].store(1);
      gate.leave();
      return;
    }
    gate.close();
    closed($).store(1, rl::mo_relaxed);
    RL_ASSERT(gate.is_closed());
    for (unsigned i = 0; i < submitters; ++i) {
      if (entered[i]($).load(rl::mo_relaxed) == 1) RL_ASSERT(written[i].load() == 1);
    }
  }
};

// EXEC-14 over rounds: the closer closes, looks, reopens, twice, while a
// submitter tries twice. Whatever got in during a round is seen by the next
// close, and reopening lets submitters in again.
struct Reopen : rl::test_suite<Reopen, 2> {
  keel::detail::SubmitGate gate;
  keel::platform::Var<int> written;
  rl::atomic<int> entered;
  void before() { entered($).store(0, rl::mo_relaxed); }
  void thread(unsigned idx) {
    if (idx == 0) {
      for (int k = 1; k <= 2; ++k) {
        if (!gate.enter()) continue;
        written.store(k);
        entered($).store(k, rl::mo_relaxed);
        gate.leave();
      }
      return;
    }
    for (int round = 0; round < 2; ++round) {
      gate.close();
      const int k = entered($).load(rl::mo_relaxed);
      if (k != 0) RL_ASSERT(written.load() >= k);
      gate.open();
    }
  }
  void after() {
    RL_ASSERT(!gate.is_closed());
    RL_ASSERT(gate.enter());
    gate.leave();
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<TwoPushers>("task-ring.two-pushers.3t", "EXEC-13", random(100000));
  check<TwoPoppersWrap>("task-ring.two-poppers-wrap.3t", "EXEC-13", random(100000));
  check<RingWake>("event-count.ring-wake.2t", "SYNC-16,EXEC-13", full());
  check<TwoSleepers>("event-count.two-sleepers.3t", "SYNC-16", random(100000));
  check<CloseDrains<2>>("submit-gate.close-drains.2t", "EXEC-14", full());
  check<CloseDrains<3>>("submit-gate.close-drains.3t", "EXEC-14", random(100000));
  check<Reopen>("submit-gate.reopen.2t", "EXEC-14", full());
  deep_check<TwoPushers>("task-ring.two-pushers.3t", "EXEC-13", random(1000000));
  deep_check<TwoPoppersWrap>("task-ring.two-poppers-wrap.3t", "EXEC-13", random(1000000));
  deep_check<CloseDrains<3>>("submit-gate.close-drains.3t", "EXEC-14", random(1000000));
  deep_check<TwoSleepers>("event-count.two-sleepers.3t", "SYNC-16", random(1000000));
  return exit_code();
}
