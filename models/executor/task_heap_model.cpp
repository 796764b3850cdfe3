// Relacy model of the task-block cache (keel/executor/task_heap.hpp): the
// real depot, with one cache per model thread (thread-local in the process),
// batches of one block so that every few frees move a batch, and no decay by
// time (the decay's bookkeeping runs under the same lock as every other move;
// gtests cover its timing).
//
// Each block a thread owns carries an Item whose token its owner writes when
// it takes the block and checks before it frees it: a block handed to two
// owners at once shows as a wrong token or as a data race on the token; a
// batch that reaches the depot other than under its lock shows as a race on
// the depot's Vars. At the end both caches are flushed and the depot is
// trimmed: every block taken from operator new must have been given back
// exactly once (a block in two places would be given back twice: Relacy
// reports the double free; one lost shows in the counts and as a leak).
//
// KEEL-TWIN task_heap_spill_unlocked task-heap.cross-free.2t
// KEEL-TWIN task_heap_refill_keeps_top task-heap.cross-free.2t
// KEEL-TWIN task_heap_spill_keeps_one_more task-heap.cross-free.2t
#include "harness.hpp"
#include "keel/executor/task_heap.hpp"
#include "keel/platform/var.hpp"

namespace {

using keel::detail::TaskBlockCache;
using keel::detail::TaskBlockDepot;

constexpr unsigned cls = 1;

struct Item {
  keel::platform::Var<int> token;
};

// Takes a block, builds an Item in it with the owner's token.
Item* take(TaskBlockDepot& depot, TaskBlockCache& cache, int token) {
  auto* it = ::new (depot.allocate(cache, cls)) Item;
  it->token.store(token);
  return it;
}

// Checks that the block is still the owner's, and frees it.
void give(TaskBlockDepot& depot, TaskBlockCache& cache, Item* it, int token) {
  RL_ASSERT(it->token.load() == token);
  it->~Item();
  depot.deallocate(cache, it, cls);
}

void flush_and_count(TaskBlockDepot& depot, TaskBlockCache* caches, int n) {
  for (int i = 0; i < n; ++i) depot.flush(caches[i]);
  depot.trim();
  const keel::TaskCacheStats s = depot.stats();
  RL_ASSERT(s.cached_bytes == 0);
  RL_ASSERT(s.fresh == s.returned);
}

// EXEC-15: blocks cross between threads. Thread 0 takes three blocks and
// hands them to thread 1, which checks and frees them (its cache spills one
// to the depot), then takes and frees two of its own. Meanwhile thread 0
// takes three more, from the depot when thread 1 spilled in time, else fresh,
// and frees them (spilling in turn).
struct CrossFree : rl::test_suite<CrossFree, 2> {
  TaskBlockDepot depot{std::size_t{1} << 20, 1, keel::platform::SteadyClock::duration::zero()};
  TaskBlockCache caches[2]{};
  rl::atomic<Item*> mailbox[3];

  void before() {
    for (auto& m : mailbox) m($).store(nullptr, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    TaskBlockCache& mine = caches[idx];
    if (idx == 0) {
      for (int k = 0; k < 3; ++k) mailbox[k]($).store(take(depot, mine, 10 + k), rl::mo_release);
      Item* own[3];
      for (int k = 0; k < 3; ++k) own[k] = take(depot, mine, 20 + k);
      for (int k = 0; k < 3; ++k) give(depot, mine, own[k], 20 + k);
      return;
    }
    for (int k = 0; k < 3; ++k) {
      Item* it;
      while ((it = mailbox[k]($).load(rl::mo_acquire)) == nullptr) rl::yield(1, $);
      give(depot, mine, it, 10 + k);
    }
    Item* own[2];
    for (int k = 0; k < 2; ++k) own[k] = take(depot, mine, 30 + k);
    for (int k = 0; k < 2; ++k) give(depot, mine, own[k], 30 + k);
  }
  void after() { flush_and_count(depot, caches, 2); }
};

// EXEC-15 with the limit and trim: the depot holds one batch at most, so a
// second spill gives its batch back at once, while the other thread trims
// the depot and reads its stats. Nothing is lost or given back twice.
struct LimitAndTrim : rl::test_suite<LimitAndTrim, 2> {
  TaskBlockDepot depot{keel::detail::task_block_size(cls), 1, keel::platform::SteadyClock::duration::zero()};
  TaskBlockCache caches[2]{};

  void thread(unsigned idx) {
    TaskBlockCache& mine = caches[idx];
    if (idx == 0) {
      Item* own[4];
      for (int k = 0; k < 4; ++k) own[k] = take(depot, mine, 40 + k);
      for (int k = 0; k < 4; ++k) give(depot, mine, own[k], 40 + k);
      Item* again = take(depot, mine, 50);
      give(depot, mine, again, 50);
      return;
    }
    depot.trim();
    Item* own[3];
    for (int k = 0; k < 3; ++k) own[k] = take(depot, mine, 60 + k);
    const keel::TaskCacheStats s = depot.stats();
    RL_ASSERT(s.cached_bytes <= keel::detail::task_block_size(cls));
    for (int k = 0; k < 3; ++k) give(depot, mine, own[k], 60 + k);
    depot.trim();
  }
  void after() { flush_and_count(depot, caches, 2); }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<CrossFree>("task-heap.cross-free.2t", "EXEC-15", random(100000));
  check<LimitAndTrim>("task-heap.limit-and-trim.2t", "EXEC-15", random(100000));
  deep_check<CrossFree>("task-heap.cross-free.2t", "EXEC-15", random(2000000));
  deep_check<LimitAndTrim>("task-heap.limit-and-trim.2t", "EXEC-15", random(2000000));
  return exit_code();
}
