// Relacy models of a ClusterPool start slot: the real moves of rank 0's
// supervisor (cluster::slot::arm and try_start, in the order
// ClusterDriver::arm and ClusterDriver::start make them, each followed by
// the future's dispatch or undispatch) against the user's Future::cancel
// (the real FutureCore, dispatched on the word), through the shim.
//
// Checks: CLUSTER-2 (the first move decides: a task its node was let run was
// never cancelled, a cancel that returned true means the task never starts,
// and one of the two always happens, also on a word re-armed after its offer
// was withdrawn and made to another node).
//
// KEEL-TWIN cluster_start_blind cluster.slot.start-vs-cancel.2t
// KEEL-TWIN cluster_arm_keeps_old_word cluster.slot.start-vs-cancel.2t
#include <cstdint>

#include "executor_unity.hpp"  // the futures' out-of-line code
#include "harness.hpp"
// After the harness (the shim's Relacy backend first), as every model.
#include "../../kernel/src/cluster/start_slot.hpp"
#include "keel/future/future.hpp"

namespace {

namespace slot = keel::cluster::slot;
using keel::detail::FutureCore;

// The supervisor's side of one offer numbered `gen`: arm, dispatch, and (if
// the future was still wanted) the node's claim. Returns whether it started.
bool offer_and_claim(slot::Word& word, keel::Future<int>& f, std::uint64_t gen) {
  slot::arm(word, gen);
  if (!keel::detail::state_of(f)->dispatch(FutureCore::StartSlot{&word, gen, gen + 1})) {
    return false;  // cancelled before the offer: ClusterDriver::arm says so, the machine resolves it
  }
  const bool won = slot::try_start(word, gen);
  const bool running = keel::detail::state_of(f)->undispatch();
  // ClusterDriver::start reports the CAS; the future must agree with it.
  RL_ASSERT(running == won);
  return won;
}

// The two sides of a suite: the user's cancel(), and the check that exactly
// one of it and the start happened, the future saying which.
struct Race {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  slot::Word word{0};
  rl::atomic<int> ran{0};
  rl::atomic<int> cancelled{0};

  void user_cancels() {
    if (f.cancel()) cancelled($).store(1, rl::mo_relaxed);
  }
  // Returns whether the task ran.
  bool one_winner() {
    const int r = ran($).load(rl::mo_relaxed);
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(r + c == 1);
    RL_ASSERT(f.cancelled() == (c == 1));
    return r == 1;
  }
};

// A task's first offer: the node's claim against the user's cancel().
struct StartVsCancel : rl::test_suite<StartVsCancel, 2>, Race {
  void thread(unsigned idx) {
    if (idx == 0) {
      if (offer_and_claim(word, f, 2)) ran($).store(1, rl::mo_relaxed);
    } else {
      user_cancels();
    }
  }
  void after() {
    if (one_winner()) RL_ASSERT(word.load(std::memory_order_relaxed) == slot::started);
  }
};

// The offer was withdrawn (the supervisor's revoke: undispatch kills offer
// 2's word) and made again to another node as offer 4, while the user
// cancels: the cancel may land on offer 2's slot, between the offers (the
// future pending) or on offer 4's slot.
struct RearmVsCancel : rl::test_suite<RearmVsCancel, 2>, Race {
  void before() {
    slot::arm(word, 2);
    RL_ASSERT(keel::detail::state_of(f)->dispatch(FutureCore::StartSlot{&word, 2, 3}));
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      // Withdrawn: not started (nobody claimed offer 2), so never running.
      RL_ASSERT(!keel::detail::state_of(f)->undispatch());
      if (offer_and_claim(word, f, 4)) ran($).store(1, rl::mo_relaxed);
    } else {
      user_cancels();
    }
  }
  void after() { (void)one_winner(); }
};

}  // namespace

int main() {
  using namespace keel::model;
  // Full search of two threads through the future's hook lock did not end
  // in ten minutes: the random scheduler, as the process pool's slot rows.
  check<StartVsCancel>("cluster.slot.start-vs-cancel.2t", "CLUSTER-2", random(200000));
  check<RearmVsCancel>("cluster.slot.rearm-vs-cancel.2t", "CLUSTER-2", random(200000));
  return exit_code();
}
