// Relacy models of a ProcessPool start slot: the real moves out of sent
// (proto::try_start, the worker's; proto::try_revoke, the supervisor's, as
// PoolDriver::revoke makes it) and the real FutureCore cancel, through the
// shim. The word lives in shared memory between two processes; here the
// worker is a thread, which is what the word sees (its RMWs are the same
// atomic operations on the same location).
//
// Checks: POOL-7 (the first move decides: a started task was never revoked
// or cancelled, a revoked or cancelled task never starts) and POOL-2 (a task
// runs at most once: a revoke that lost to a start must say so, or the
// machine sends the task again and it runs twice).
//
// KEEL-TWIN pool_revoke_blind pool.slot.revoke-vs-start.2t
// KEEL-TWIN pool_start_blind pool.slot.revoke-vs-start.2t
#include <cstdint>

#include "executor_unity.hpp"  // the futures' out-of-line code
#include "harness.hpp"
// After the harness (the shim's Relacy backend first), as every model.
#include "../../kernel/src/process_pool/protocol.hpp"
#include "keel/future/future.hpp"

namespace {

namespace proto = keel::pool::proto;

constexpr std::uint64_t kTask = 7;

// The worker's start against the supervisor's revoke (a steal, a death, a
// shutdown that cancels): exactly one moves the word, and the loser sees
// the winner's move.
struct RevokeVsStart : rl::test_suite<RevokeVsStart, 2> {
  proto::Slot word{proto::slot_sent(kTask)};
  rl::atomic<int> ran{0};
  rl::atomic<int> revoked{0};
  rl::atomic<std::uint64_t> revoke_saw{0};

  void thread(unsigned idx) {
    if (idx == 0) {
      if (proto::try_start(word, kTask)) ran($).store(1, rl::mo_relaxed);
    } else {
      std::uint64_t seen = 0;
      if (proto::try_revoke(word, kTask, seen)) revoked($).store(1, rl::mo_relaxed);
      revoke_saw($).store(seen, rl::mo_relaxed);
    }
  }
  void after() {
    const int r = ran($).load(rl::mo_relaxed);
    const int v = revoked($).load(rl::mo_relaxed);
    RL_ASSERT(r + v == 1);
    const std::uint64_t end = word.load(std::memory_order_relaxed);
    RL_ASSERT(end == (r ? proto::slot_started(kTask) : proto::slot_dead(kTask)));
    // A revoke that lost read the start it lost to (the driver's verdict
    // rests on it).
    if (!v) RL_ASSERT(revoke_saw($).load(rl::mo_relaxed) == proto::slot_started(kTask));
  }
};

// The same race with the user's cancel() as a third party (the real
// FutureCore, dispatched on the word as PoolDriver::dispatch does). The
// supervisor's revoke is followed by its undispatch, as in PoolDriver::revoke.
// A started task is neither revoked nor cancelled; an unstarted one was
// moved to dead by exactly one of the others, and its future is cancelled
// or pending again, never running.
struct RevokeStartCancel : rl::test_suite<RevokeStartCancel, 3> {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  proto::Slot word{proto::slot_sent(kTask)};
  rl::atomic<int> ran{0};
  rl::atomic<int> revoked{0};
  rl::atomic<int> cancelled{0};

  void before() {
    RL_ASSERT(keel::detail::state_of(f)->dispatch({&word, proto::slot_sent(kTask), proto::slot_dead(kTask)}));
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      if (proto::try_start(word, kTask)) ran($).store(1, rl::mo_relaxed);
    } else if (idx == 1) {
      std::uint64_t seen = 0;
      const bool won = proto::try_revoke(word, kTask, seen);
      if (won) revoked($).store(1, rl::mo_relaxed);
      const bool running = keel::detail::state_of(f)->undispatch();
      // The future runs exactly when the worker's start beat the revoke.
      RL_ASSERT(running == (!won && seen == proto::slot_started(kTask)));
    } else if (f.cancel()) {
      cancelled($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    const int r = ran($).load(rl::mo_relaxed);
    const int v = revoked($).load(rl::mo_relaxed);
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(r + v <= 1);
    RL_ASSERT(!(r && c));
    RL_ASSERT(r || v || c);
    const std::uint64_t end = word.load(std::memory_order_relaxed);
    RL_ASSERT(end == (r ? proto::slot_started(kTask) : proto::slot_dead(kTask)));
    if (c) RL_ASSERT(f.cancelled());
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<RevokeVsStart>("pool.slot.revoke-vs-start.2t", "POOL-2,POOL-7", full());
  // Full search of three threads with the hook lock does not end in
  // minutes: random, as the future model's remote-cancel rows.
  check<RevokeStartCancel>("pool.slot.revoke-start-cancel.3t", "POOL-2,POOL-7", random(200000));
  return exit_code();
}
