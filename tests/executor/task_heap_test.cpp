// Tests of the task-block cache (keel/executor/task_heap.hpp, EXEC-15): a
// depot of its own with one cache, the process-wide cache with real threads,
// and a thread pool whose second burst of tasks reuses the first one's
// blocks. Its Relacy model is models/executor/task_heap_model.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/executor/task.hpp"
#include "keel/executor/task_heap.hpp"
#include "keel/executor/thread_pool.hpp"

using namespace std::chrono_literals;

// operator new(size, nothrow) fails on demand, on the thread that asks, in
// the g++ build (the sanitizers' runtimes own operator new in theirs): the
// depot's only allocation that may fail without throwing is its batch node.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEEL_TEST_FAILS_NEW 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEL_TEST_FAILS_NEW 0
#endif
#endif
#ifndef KEEL_TEST_FAILS_NEW
#define KEEL_TEST_FAILS_NEW 1
#endif

namespace {
constinit thread_local bool t_fail_nothrow_new = false;
}  // namespace

#if KEEL_TEST_FAILS_NEW
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (t_fail_nothrow_new) return nullptr;
  try {
    return ::operator new(n);
  } catch (...) {
    return nullptr;
  }
}
#endif

namespace {

using keel::detail::task_block_allocate;
using keel::detail::task_block_class;
using keel::detail::task_block_deallocate;
using keel::detail::task_block_size;
using keel::detail::TaskBlockCache;
using keel::detail::TaskBlockDepot;

constexpr unsigned cls = 1;
constexpr std::size_t block = task_block_size(cls);

TEST(TaskHeap, SizeClassesCoverEveryTaskSizeUpToTheLargest) {
  for (std::size_t n = 1; n <= keel::detail::task_block_max; ++n) {
    const unsigned c = task_block_class(n);
    ASSERT_LT(c, keel::detail::task_block_classes) << n;
    ASSERT_GE(task_block_size(c), n) << n;
    if (c > 0) {
      ASSERT_LT(task_block_size(c - 1), n) << n;
    }
  }
}

TEST(TaskHeap, BlocksComeBackInOrderAndGoBackAboveTheLimit) {
  // Batches of 4; the depot holds two; the cache two batches (8 blocks).
  TaskBlockDepot depot(2 * 4 * block, 4, 0s);
  TaskBlockCache cache{};
  std::vector<void*> v;
  for (int i = 0; i < 20; ++i) v.push_back(depot.allocate(cache, cls));
  EXPECT_EQ(depot.stats().fresh, 20u);
  for (void* p : v) depot.deallocate(cache, p, cls);
  // 8 in the cache, two batches in the depot, the fifth batch given back.
  keel::TaskCacheStats s = depot.stats();
  EXPECT_EQ(s.cached_bytes, 2 * 4 * block);
  EXPECT_EQ(s.returned, 4u);

  // The newest first: the last block freed is the first taken.
  std::vector<void*> again;
  for (int i = 0; i < 16; ++i) again.push_back(depot.allocate(cache, cls));
  EXPECT_EQ(again.front(), v.back());
  s = depot.stats();
  EXPECT_EQ(s.fresh, 20u) << "16 blocks: 8 from the cache and two batches from the depot";
  EXPECT_EQ(s.refills, 2u);
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(std::set<void*>(again.begin(), again.end()).size(), 16u) << "no block handed out twice";
  again.push_back(depot.allocate(cache, cls));
  EXPECT_EQ(depot.stats().fresh, 21u);

  for (void* p : again) depot.deallocate(cache, p, cls);
  EXPECT_EQ(depot.set_limit(0), 2 * 4 * block);  // a lower limit trims at once
  EXPECT_EQ(depot.stats().cached_bytes, 0u);
  depot.flush(cache);  // as at thread exit: at limit 0, everything goes back
  s = depot.stats();
  EXPECT_EQ(s.fresh, s.returned);
}

// Every size class moves: a cache that holds blocks of each class is
// flushed whole, trim() gives every class's batches back, and the counters
// add up block by block (EXEC-15: each block in exactly one place). The
// largest class is the one a loop bound one short would miss.
TEST(TaskHeap, EveryClassIsFlushedAndTrimmedAndEveryBlockCountedBack) {
  TaskBlockDepot depot(std::size_t{1} << 30, 4, 0s);
  TaskBlockCache cache{};
  std::vector<std::pair<void*, unsigned>> v;
  for (unsigned c = 0; c < keel::detail::task_block_classes; ++c) {
    for (int i = 0; i < 15; ++i) v.emplace_back(depot.allocate(cache, c), c);
  }
  const std::uint64_t fresh = depot.stats().fresh;
  ASSERT_EQ(fresh, 15u * keel::detail::task_block_classes);
  for (auto [p, c] : v) depot.deallocate(cache, p, c);
  depot.flush(cache);  // per class: three batches stay, three blocks go back
  std::size_t expect_bytes = 0;
  for (unsigned c = 0; c < keel::detail::task_block_classes; ++c) {
    EXPECT_EQ(cache.lists[c].count, 0u) << "class " << c << " was not flushed";
    expect_bytes += 3 * 4 * task_block_size(c);
  }
  keel::TaskCacheStats s = depot.stats();
  EXPECT_EQ(s.cached_bytes, expect_bytes);
  EXPECT_EQ(s.returned, 3u * keel::detail::task_block_classes) << "the partial batches go back block by block";
  EXPECT_EQ(depot.trim(), expect_bytes);
  s = depot.stats();
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.returned, s.fresh) << "every block taken from operator new went back";
}

// README: lowering the limit empties the depot; setting it to what it is
// changes nothing.
TEST(TaskHeap, LoweringTheLimitEmptiesTheDepotAndTheSameLimitKeepsIt) {
  constexpr std::size_t limit = std::size_t{1} << 20;
  TaskBlockDepot depot(limit, 4, 0s);
  TaskBlockCache cache{};
  std::vector<void*> v;
  for (int i = 0; i < 16; ++i) v.push_back(depot.allocate(cache, cls));
  for (void* p : v) depot.deallocate(cache, p, cls);  // two batches in the depot
  ASSERT_EQ(depot.stats().cached_bytes, 2 * 4 * block);
  EXPECT_EQ(depot.set_limit(limit), limit);
  EXPECT_EQ(depot.stats().cached_bytes, 2 * 4 * block) << "the same limit keeps the depot";
  EXPECT_EQ(depot.stats().returned, 0u);
  EXPECT_EQ(depot.set_limit(limit - 1), limit);
  EXPECT_EQ(depot.stats().cached_bytes, 0u) << "a lower limit, though still above what is cached, empties it";
  EXPECT_EQ(depot.stats().returned, 2u * 4);
  depot.flush(cache);
  depot.trim();
  EXPECT_EQ(depot.stats().returned, depot.stats().fresh);
}

// The process-wide depot's batch size, with a thread's cache full (two
// batches): spills and refills move whole batches of task_block_batch, and
// no block is handed out twice.
TEST(TaskHeap, WholeBatchesMoveAtTheProcessWideBatchSize) {
  constexpr std::size_t batch = keel::detail::task_block_batch;
  TaskBlockDepot depot(std::size_t{1} << 30, batch, 0s);
  TaskBlockCache cache{};
  std::vector<void*> v;
  for (std::size_t i = 0; i < 4 * batch; ++i) v.push_back(depot.allocate(cache, cls));
  for (void* p : v) depot.deallocate(cache, p, cls);
  EXPECT_EQ(cache.lists[cls].count, 2 * batch);
  EXPECT_EQ(depot.stats().cached_bytes, 2 * batch * block);
  std::vector<void*> again;
  for (std::size_t i = 0; i < 4 * batch; ++i) again.push_back(depot.allocate(cache, cls));
  EXPECT_EQ(std::set<void*>(again.begin(), again.end()), std::set<void*>(v.begin(), v.end()))
      << "the same blocks, each once";
  const keel::TaskCacheStats s = depot.stats();
  EXPECT_EQ(s.fresh, 4 * batch);
  EXPECT_EQ(s.refills, 2u);
  for (void* p : again) depot.deallocate(cache, p, cls);
  depot.flush(cache);
  depot.trim();
  EXPECT_EQ(depot.stats().returned, depot.stats().fresh);
}

// The largest task the cache takes (task_block_max bytes) is cached, and
// one byte more is not: a block of each, taken and freed on a thread of its
// own (an empty cache) after a trim, moves the counters by exactly that.
TEST(TaskHeap, TheLargestCachedSizeIsCachedAndOneByteMoreIsNot) {
  if (keel::detail::task_heap_bypassed()) GTEST_SKIP() << "tasks bypass the cache under AddressSanitizer";
  constexpr std::size_t largest = keel::detail::task_block_max;
  for (const std::size_t n : {largest, largest + 1}) {
    keel::trim_task_cache();
    const keel::TaskCacheStats before = keel::task_cache_stats();
    std::thread([n] { task_block_deallocate(task_block_allocate(n), n); }).join();
    const keel::TaskCacheStats after = keel::task_cache_stats();
    const std::uint64_t cached = n == largest ? 1 : 0;
    EXPECT_EQ(after.fresh - before.fresh, cached) << n << " bytes: taken from operator new by the cache";
    EXPECT_EQ(after.returned - before.returned, cached) << n << " bytes: given back by the exiting thread's flush";
  }
}

TEST(TaskHeap, BatchesUnusedForAPeriodGoBack) {
  constexpr auto period = 50ms;
  TaskBlockDepot depot(std::size_t{1} << 30, 4, period);
  TaskBlockCache filler{};
  TaskBlockCache taker{};
  std::vector<void*> v;
  for (int i = 0; i < 40; ++i) v.push_back(depot.allocate(filler, cls));
  for (void* p : v) depot.deallocate(filler, p, cls);
  depot.flush(filler);  // ten batches in the depot
  ASSERT_EQ(depot.stats().cached_bytes, 10 * 4 * block);

  // Batches taken out and put back within each period stay.
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(period + 10ms);
    std::vector<void*> all;
    for (int i = 0; i < 40; ++i) all.push_back(depot.allocate(taker, cls));
    for (void* p : all) depot.deallocate(taker, p, cls);
    depot.flush(taker);
    EXPECT_EQ(depot.stats().cached_bytes, 10 * 4 * block) << round;
  }
  // Then one batch a period is used: the rest, idle a whole period, go back
  // at the first move after it.
  const std::uint64_t returned = depot.stats().returned;
  std::this_thread::sleep_for(period + 10ms);
  void* p = depot.allocate(taker, cls);  // starts a period, takes one batch
  std::this_thread::sleep_for(period + 10ms);
  depot.deallocate(taker, p, cls);
  depot.flush(taker);  // the first move after the period: nine idle batches go
  const keel::TaskCacheStats s = depot.stats();
  EXPECT_EQ(s.returned - returned, 9u * 4) << "the nine batches that lay unused";
  EXPECT_EQ(s.cached_bytes, 4 * block) << "the batch just flushed stays";
}

TEST(TaskHeap, ThreadsThatExitFlushTheirCachesToTheDepot) {
  if (keel::detail::task_heap_bypassed()) GTEST_SKIP() << "tasks bypass the cache under AddressSanitizer";
  const std::size_t size = task_block_size(task_block_class(120));
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) v.push_back(task_block_allocate(120));
  keel::trim_task_cache();
  const keel::TaskCacheStats before = keel::task_cache_stats();
  ASSERT_EQ(before.cached_bytes, 0u);

  // A thread_local destroyed after the cache's flush (made before it, so
  // destroyed after it) frees its block straight to operator delete.
  struct Late {
    void* block = nullptr;
    ~Late() {
      if (block != nullptr) task_block_deallocate(block, 120);
    }
  };
  void* late_block = v.back();
  v.pop_back();
  std::thread t([&v, late_block] {
    static thread_local Late late;
    late.block = nullptr;  // constructed here, before the thread's cache
    for (void* p : v) task_block_deallocate(p, 120);
    late.block = late_block;
  });
  t.join();
  const keel::TaskCacheStats after = keel::task_cache_stats();
  // 199 freed: six whole batches reach the depot, the other seven blocks
  // go back at the flush, and the late block after it.
  constexpr std::size_t batch = keel::detail::task_block_batch;
  EXPECT_EQ(after.cached_bytes, (199 / batch) * batch * size);
  EXPECT_EQ(after.returned - before.returned, 199 % batch + 1);
}

TEST(TaskHeap, ConcurrentTakersAndFreersNeverShareABlock) {
  // Each block carries its owner's token while owned; half of them are freed
  // by another thread than the one that took them.
  constexpr int threads = 4;
  const int per_thread = keel_test::scaled(20000, 2000);
  std::mutex mu;
  std::deque<std::pair<void*, std::uint64_t>> handed;
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  auto check_and_free = [&bad](void* p, std::uint64_t token) {
    std::uint64_t got;
    std::memcpy(&got, p, sizeof got);
    if (got != token) bad.fetch_add(1);
    std::memset(p, 0xdd, 120);
    task_block_deallocate(p, 120);
  };
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<std::pair<void*, std::uint64_t>> mine;
      for (int i = 0; i < per_thread; ++i) {
        void* p = task_block_allocate(120);
        const std::uint64_t token = (std::uint64_t(t) << 32) | std::uint64_t(i);
        std::memcpy(p, &token, sizeof token);
        if (i % 2 == 0) {
          std::lock_guard<std::mutex> g(mu);
          handed.emplace_back(p, token);
        } else {
          mine.emplace_back(p, token);
        }
        if (mine.size() > 100 || i + 1 == per_thread) {
          for (auto [q, tok] : mine) check_and_free(q, tok);
          mine.clear();
        }
        std::pair<void*, std::uint64_t> other{nullptr, 0};
        {
          std::lock_guard<std::mutex> g(mu);
          if (!handed.empty() && i % 3 == 0) {
            other = handed.front();
            handed.pop_front();
          }
        }
        if (other.first != nullptr) check_and_free(other.first, other.second);
      }
    });
  }
  for (auto& t : ts) t.join();
  for (auto [p, tok] : handed) check_and_free(p, tok);
  EXPECT_EQ(bad.load(), 0);
}

TEST(TaskHeap, ASecondBurstOfTasksReusesTheFirstBurstsBlocks) {
  if (keel::detail::task_heap_bypassed()) GTEST_SKIP() << "tasks bypass the cache under AddressSanitizer";
  keel::ThreadPoolExecutor pool(keel::ThreadPoolOptions{.max_threads = 2});
  const int n = 10000;
  auto burst = [&] {
    std::vector<keel::Future<std::int64_t>> fs;
    for (std::int64_t i = 0; i < n; ++i) fs.push_back(pool.submit([i] { return i; }));
    std::int64_t sum = 0;
    for (auto& f : fs) sum += f.result();
    EXPECT_EQ(sum, std::int64_t{n} * (n - 1) / 2);
  };
  burst();
  const keel::TaskCacheStats first = keel::task_cache_stats();
  burst();
  const keel::TaskCacheStats second = keel::task_cache_stats();
  // The second burst's blocks come from the first's. A few are new: the
  // blocks a worker freed (it dropped the last reference) wait in its own
  // cache, at most two batches each.
  EXPECT_LE(second.fresh - first.fresh, std::uint64_t(n) / 10);
  EXPECT_GE(second.refills - first.refills, std::uint64_t(n) / keel::detail::task_block_batch / 2);
}

TEST(TaskHeap, TheProcessCacheHoldsAtMost256MiBUnlessToldOtherwise) {
  const keel::TaskCacheStats s = keel::task_cache_stats();
  EXPECT_EQ(s.limit_bytes, std::size_t{256} << 20);
  EXPECT_EQ(keel::set_task_cache_limit(1 << 20), std::size_t{256} << 20);
  EXPECT_EQ(keel::task_cache_stats().limit_bytes, std::size_t{1} << 20);
  EXPECT_LE(keel::task_cache_stats().cached_bytes, std::size_t{1} << 20) << "a lower limit trims at once";
  EXPECT_EQ(keel::set_task_cache_limit(std::size_t{256} << 20), std::size_t{1} << 20);
}

TEST(TaskHeap, TheProcessCacheGivesBackWhatLayUnusedForAboutASecond) {
  if (keel::detail::task_heap_bypassed()) GTEST_SKIP() << "tasks bypass the cache under AddressSanitizer";
  // A thread fills the depot with whole batches and exits; nothing uses
  // them. The first move after a second starts a period, the first after
  // the next second gives back what lay unused all that period.
  keel::trim_task_cache();
  std::thread([] {
    std::vector<void*> v;
    for (int i = 0; i < 640; ++i) v.push_back(task_block_allocate(120));
    for (void* p : v) task_block_deallocate(p, 120);
  }).join();
  const std::size_t filled = keel::task_cache_stats().cached_bytes;
  ASSERT_GE(filled, 16 * keel::detail::task_block_batch * block);
  const auto move_a_batch = [] {
    // On a thread of its own, whose empty cache takes a batch from the
    // depot and whose exit puts it back.
    std::thread([] { task_block_deallocate(task_block_allocate(120), 120); }).join();
  };
  std::this_thread::sleep_for(1100ms);
  EXPECT_EQ(keel::task_cache_stats().cached_bytes, filled) << "nothing goes back without a move";
  move_a_batch();
  std::this_thread::sleep_for(1100ms);
  move_a_batch();
  EXPECT_LE(keel::task_cache_stats().cached_bytes, keel::detail::task_block_batch * block)
      << "at most the batch moved last stays";
}

// Each free of a full cache and each take from an empty one moves a batch
// under the depot's lock: a child that inherited it held would hang at its
// first batch move (the depot holds it across fork).
TEST(TaskHeap, ForkWhileOtherThreadsMoveBatchesLeavesTheDepotUsableInTheChild) {
  if (keel::detail::task_heap_bypassed()) GTEST_SKIP() << "tasks bypass the cache under AddressSanitizer";
  const auto churn = [] {
    std::vector<void*> v;
    for (int k = 0; k < 100; ++k) v.push_back(task_block_allocate(120));
    for (void* p : v) task_block_deallocate(p, 120);
  };
  const int hung = keel_test::children_hung_while_forking(
      churn,
      [&] {
        keel::trim_task_cache();  // takes the depot's lock
        churn();
        return 0;
      },
      keel_test::scaled(200, 20));
  EXPECT_EQ(hung, 0) << "a forked child hung on the task-block depot's lock";
}

// No memory for a batch's node: the batch goes back to operator delete block
// by block, each counted, and the cache keeps the rest (EXEC-15: every block
// in exactly one place, nothing lost). With memory again, batches move.
TEST(TaskHeap, ABatchWithNoMemoryForItsNodeGoesBackBlockByBlock) {
  if (!KEEL_TEST_FAILS_NEW) GTEST_SKIP() << "operator new is the sanitizer's in this build";
  TaskBlockDepot depot(std::size_t{1} << 30, 4, 0s);
  TaskBlockCache cache{};
  std::vector<void*> v;
  for (int i = 0; i < 12; ++i) v.push_back(depot.allocate(cache, cls));
  t_fail_nothrow_new = true;
  for (void* p : v) depot.deallocate(cache, p, cls);  // the ninth spills the oldest four
  t_fail_nothrow_new = false;
  keel::TaskCacheStats s = depot.stats();
  EXPECT_EQ(s.cached_bytes, 0u) << "a batch without a node is in the depot";
  EXPECT_EQ(s.returned, 4u) << "the oldest batch goes back whole, and only it";
  EXPECT_EQ(cache.lists[cls].count, 8u);

  // The cache's eight are the newest eight, each once.
  std::vector<void*> again;
  for (int i = 0; i < 8; ++i) again.push_back(depot.allocate(cache, cls));
  EXPECT_EQ(depot.stats().fresh, 12u) << "the eight came from the cache";
  EXPECT_EQ(std::set<void*>(again.begin(), again.end()), std::set<void*>(v.begin() + 4, v.end()));

  for (void* p : again) depot.deallocate(cache, p, cls);
  depot.flush(cache);  // memory again: two batches move to the depot
  s = depot.stats();
  EXPECT_EQ(s.cached_bytes, 2 * 4 * block);
  EXPECT_EQ(depot.trim(), 2 * 4 * block);
  s = depot.stats();
  EXPECT_EQ(s.returned, s.fresh) << "every block taken from operator new went back";
}

TEST(TaskHeap, AddressSanitizerBuildsBypassTheCache) {
#if defined(__SANITIZE_ADDRESS__)
  constexpr bool asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  constexpr bool asan = true;
#else
  constexpr bool asan = false;
#endif
#else
  constexpr bool asan = false;
#endif
  EXPECT_EQ(keel::detail::task_heap_bypassed(), asan);
}

TEST(TaskHeap, OverAlignedTasksKeepTheirAlignment) {
  struct alignas(64) Wide {
    std::int64_t v;
  };
  keel::ThreadPoolExecutor pool(keel::ThreadPoolOptions{.max_threads = 1});
  for (int i = 0; i < 50; ++i) {
    Wide w{i};
    auto f = pool.submit([w] { return w.v; });
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(keel::detail::state_of(f)) % alignof(Wide), 0u);
    EXPECT_EQ(f.result(), i);
  }
}

}  // namespace
