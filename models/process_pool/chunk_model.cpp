// Relacy model of a map chunk split into a future per call while it is in
// flight: the real keel::detail::ChunkState (calls.hpp), the real FutureCore
// and the real start-slot moves of kernel/src/process_pool/protocol.hpp,
// through the shim. The worker (a thread here; a process in the pool, which
// is what the slot word sees) starts the frame by winning its slot; the
// supervisor takes the chunk out of the slot (undispatch, as on the worker's
// notice or a revoke), then completes it if it started and sends it again
// otherwise (with a fresh slot, its payload cut to the calls still wanted);
// the user splits the chunk (ProcessMapResults::futures) and cancels one call.
//
// Checks: POOL-7 (the chunk and each call of it are running exactly when the
// worker won the slot), POOL-2 (a call whose cancel() returned true never
// runs: not in the frame the worker started, and not in a frame sent again
// with a live slot), POOL-1 (once answered, every call's future holds its
// own result, whichever of the split and the answer came first; a call of a
// frame that never started is not final).
//
// KEEL-TWIN chunk_split_ignores_sent pool.chunk.split-vs-start.3t
// KEEL-TWIN chunk_settle_skips_split pool.chunk.split-vs-start.3t
// KEEL-TWIN chunk_cut_keeps_cancelled pool.chunk.split-vs-start.3t
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "executor_unity.hpp"  // the futures' out-of-line code
#include "harness.hpp"
// After the harness (the shim's Relacy backend first), as every model.
#include "../../kernel/src/process_pool/protocol.hpp"
#include "keel/process_pool/detail/calls.hpp"

namespace {

namespace proto = keel::pool::proto;
using Chunk = keel::detail::ChunkState<int>;

constexpr std::uint64_t kTask = 7;
constexpr std::uint64_t kAgain = 9;  // the task's slot when sent again

// The calls in a chunk's payload.
std::size_t calls_in(const std::string& payload) {
  keel::Decoder d(payload);
  (void)d.get<std::string>();
  return d.get<std::vector<std::string>>().size();
}

struct SplitVsStart : rl::test_suite<SplitVsStart, 3> {
  Chunk* chunk = nullptr;  // the supervisor's reference (ChunkCall's)
  std::string payload;     // the supervisor's
  proto::Slot word{proto::slot_sent(kTask)};
  proto::Slot again{proto::slot_sent(kAgain)};
  std::vector<keel::Future<int>> fs;  // the user's
  rl::atomic<int> ran{0};
  rl::atomic<int> cancelled{0};
  rl::atomic<int> started{0};
  rl::atomic<int> resent_calls{0};  // calls in the frame sent again (0: not sent again)

  void before() {
    chunk = new Chunk(2);
    payload = keel::encode(std::string("t"), std::vector<std::string>{keel::encode(1), keel::encode(2)});
    RL_ASSERT(chunk->dispatch({&word, proto::slot_sent(kTask), proto::slot_dead(kTask)}, payload));
  }
  void thread(unsigned idx) {
    if (idx == 0) {  // the worker: the frame it starts holds both calls
      if (proto::try_start(word, kTask)) ran($).store(1, rl::mo_relaxed);
    } else if (idx == 1) {  // the supervisor
      if (chunk->undispatch()) {
        started($).store(1, rl::mo_relaxed);
        using Answers = std::vector<std::pair<bool, std::string>>;
        chunk->complete(true, keel::encode(Answers{{true, keel::encode(10)}, {true, keel::encode(20)}}));
      } else if (chunk->dispatch({&again, proto::slot_sent(kAgain), proto::slot_dead(kAgain)}, payload)) {
        resent_calls($).store(static_cast<int>(calls_in(payload)), rl::mo_relaxed);
      }
    } else {  // the user
      keel::detail::MapChunks<int> m;
      m.chunks.push_back(keel::detail::make_future<keel::detail::ChunkDone>(chunk, true));
      m.chunksize = 2;
      m.total = 2;
      fs = m.split();
      if (fs[1].cancel()) cancelled($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    const int r = ran($).load(rl::mo_relaxed);
    const int c = cancelled($).load(rl::mo_relaxed);
    RL_ASSERT(started($).load(rl::mo_relaxed) == r);
    RL_ASSERT(!(r && c));
    if (r) {
      RL_ASSERT(fs[0].done() && fs[0].result() == 10);
      RL_ASSERT(fs[1].done() && fs[1].result() == 20);
    } else {
      RL_ASSERT(!fs[0].done());
      const int resent = resent_calls($).load(rl::mo_relaxed);
      RL_ASSERT(resent >= 1);
      if (c) {
        RL_ASSERT(fs[1].cancelled());
        // Sent again with the cancelled call in it: only with its slot dead.
        if (resent == 2) RL_ASSERT(again.load(std::memory_order_relaxed) == proto::slot_dead(kAgain));
      }
    }
    fs.clear();
    (void)chunk->undispatch();  // the slots are the test's: no future keeps one
    chunk->abandon();
    chunk->release();
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  // Three threads with two locks (the chunk's and each future's hook lock):
  // random, as the slot model's three-thread row.
  check<SplitVsStart>("pool.chunk.split-vs-start.3t", "POOL-1,POOL-2,POOL-7", random(300000));
  return exit_code();
}
