// keel's task-block cache: where a ThreadPoolExecutor's task objects (each a
// task and its future's state in one block, detail::TaskOf) come from and go
// back to. Freed blocks are kept for the next submissions instead of going
// back to malloc, so a burst of a million tasks that follows another one does
// not fault a hundred megabytes of fresh pages in again (oneTBB's allocator
// keeps its tasks' memory the same way).
//
// Contract.
// - Blocks of up to task_block_max bytes come in size classes of 64 bytes;
//   larger or over-aligned tasks use operator new directly.
// - Each thread keeps a small cache per class (at most two batches), with no
//   lock; batches of task_block_batch blocks move between the threads'
//   caches and a process-wide depot under one mutex. A block freed on another
//   thread than the one that took it is fine: the task's own reference count
//   orders the two.
// - The depot keeps at most its limit (256 MiB by default,
//   set_task_cache_limit) and gives back to malloc the batches that lay
//   unused for a whole period of about a second, at the next batch that moves
//   in or out after it. A process that goes quiet keeps what it cached until
//   it submits again; trim_task_cache() gives every cached batch back at once.
//   A thread's own cache goes to the depot when the thread exits.
// - Never destroyed: a block freed during static destruction, or after its
//   thread's cache was flushed, goes straight back to operator delete.
// - fork() holds the depot's lock (pthread_atfork), so a child never inherits
//   it locked.
// - Under AddressSanitizer tasks bypass the cache, so that a use after free
//   of a task is still reported; so they do under the models, which check
//   the cache on its own.
//
// Invariants: EXEC-15 (a cached block is handed out to one owner at a time,
// and every block taken from the heap is in exactly one place: with its
// owner, in one thread's cache, in the depot, or given back), LIFE-11 (the
// depot's lock is held across fork(), registered when the program starts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/var.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {

/// What the task-block cache holds now, and what it did since the process started.
struct TaskCacheStats {
  std::size_t cached_bytes = 0;  ///< in the process-wide depot (threads' own caches not counted)
  std::size_t limit_bytes = 0;   ///< the depot's limit
  std::uint64_t fresh = 0;       ///< blocks taken from operator new
  std::uint64_t returned = 0;    ///< blocks given back to operator delete
  std::uint64_t refills = 0;     ///< batches a thread took from the depot
};

/// The task-block cache's state (the depot's bytes are exact; the counters are totals).
TaskCacheStats task_cache_stats();
/// Gives every batch in the depot back to operator delete; returns the bytes given back.
std::size_t trim_task_cache();
/// Sets the depot's limit in bytes (0: cache nothing beyond the threads' own
/// caches); a lower limit than before empties the depot at once. Returns the
/// previous limit.
std::size_t set_task_cache_limit(std::size_t bytes);

namespace detail {

inline constexpr std::size_t task_block_granule = 64;
inline constexpr std::size_t task_block_classes = 8;
inline constexpr std::size_t task_block_max = task_block_granule * task_block_classes - 8;
inline constexpr std::size_t task_block_batch = 32;

// The bytes asked of operator new for a block of class cls: a class spans
// granules of the heap including malloc's 8-byte header, so that blocks of
// one class lie one class apart, as they would without the cache.
inline constexpr std::size_t task_block_header = 8;
constexpr std::size_t task_block_size(unsigned cls) noexcept {
  return (cls + 1) * task_block_granule - task_block_header;
}
// The class of a block of n bytes (n <= task_block_max).
constexpr unsigned task_block_class(std::size_t n) noexcept {
  return static_cast<unsigned>((n + task_block_header + task_block_granule - 1) / task_block_granule) - 1;
}

// One thread's cache of one class: up to two batches of block addresses,
// which that thread alone touches. Addresses, not links in the blocks: taking
// a block then reads nothing from it, so a cold block costs no load that the
// next allocation waits for, and a freed block is not written at all.
struct TaskBlockList {
  void* blocks[2 * task_block_batch];
  std::size_t count;
};
struct TaskBlockCache {
  TaskBlockList lists[task_block_classes];
};

// A batch in the depot: batch_ block addresses in a node of its own. Empty
// nodes are kept for the next batch. Vars: a node's contents reach another
// thread only through the depot's lock, and the model reports any other way
// as a race.
struct TaskBlockBatch {
  platform::Var<TaskBlockBatch*> below;
  platform::Var<void*> blocks[task_block_batch];
};

#if KEEL_MODEL
#define KEEL_TASK_HEAP_CONSTEXPR
#else
#define KEEL_TASK_HEAP_CONSTEXPR constexpr
#endif

// The depot, and the moves between it and the threads' caches. The caches
// are passed in (thread-local in the process, one per thread in the model).
class TaskBlockDepot {
 public:
  // batch: blocks per batch, 1 to task_block_batch; decay: how long a batch
  // may lie unused before it goes back (zero: never by time).
  // constexpr natively: the process's depot is constant-initialized, so that
  // no thread is ever inside its construction (a fork() then would leave the
  // child waiting on that construction for ever). Not under the models, whose
  // Vars are Relacy's.
  KEEL_TASK_HEAP_CONSTEXPR TaskBlockDepot(std::size_t limit_bytes, std::size_t batch,
                                          platform::SteadyClock::duration decay)
      : batch_(batch < 1 ? 1 : (batch > task_block_batch ? task_block_batch : batch)),
        decay_(decay),
        limit_(limit_bytes) {}
  TaskBlockDepot(const TaskBlockDepot&) = delete;
  TaskBlockDepot& operator=(const TaskBlockDepot&) = delete;
  // Gives the depot's batches back; the caches' blocks are their owners' to flush.
  ~TaskBlockDepot() { trim(); }

  void* allocate(TaskBlockCache& cache, unsigned cls) {
    TaskBlockList& l = cache.lists[cls];
    if (l.count == 0 && !refill(l, cls)) return allocate_uncached(cls);
    return l.blocks[--l.count];
  }

  void deallocate(TaskBlockCache& cache, void* p, unsigned cls) noexcept {
    TaskBlockList& l = cache.lists[cls];
    if (l.count == 2 * batch_) spill(l, cls);
    l.blocks[l.count++] = p;
  }

  // A block for, or from, a thread whose cache is gone (it is exiting).
  void* allocate_uncached(unsigned cls) {
    fresh_.fetch_add(1, std::memory_order_relaxed);
    return ::operator new(task_block_size(cls));
  }
  void deallocate_uncached(void* p) noexcept { release(p); }

  // Moves every block of the cache to the depot (a thread that exits).
  void flush(TaskBlockCache& cache) noexcept {
    for (unsigned cls = 0; cls < task_block_classes; ++cls) {
      TaskBlockList& l = cache.lists[cls];
      while (l.count != 0) spill(l, cls);
    }
  }

  std::size_t trim() noexcept {
    TaskBlockBatch* give[task_block_classes];
    TaskBlockBatch* spare;
    std::size_t bytes;
    {
      LockGuard<Mutex> g(m_);
      bytes = bytes_.load();
      for (unsigned cls = 0; cls < task_block_classes; ++cls) {
        give[cls] = top_[cls].load();
        top_[cls].store(nullptr);
        batches_[cls].store(0);
        low_[cls].store(0);
      }
      bytes_.store(0);
      spare = spare_.load();
      spare_.store(nullptr);
    }
    for (unsigned cls = 0; cls < task_block_classes; ++cls) give_back(give[cls]);
    free_nodes(spare);
    return bytes;
  }

  std::size_t set_limit(std::size_t bytes) noexcept {
    std::size_t was;
    {
      LockGuard<Mutex> g(m_);
      was = limit_.load();
      limit_.store(bytes);
    }
    if (bytes < was) trim();
    return was;
  }

  TaskCacheStats stats() const {
    TaskCacheStats s;
    {
      LockGuard<Mutex> g(m_);
      s.cached_bytes = bytes_.load();
      s.limit_bytes = limit_.load();
    }
    s.fresh = fresh_.load(std::memory_order_relaxed);
    s.returned = returned_.load(std::memory_order_relaxed);
    s.refills = refills_.load(std::memory_order_relaxed);
    return s;
  }

  // For pthread_atfork: the depot is free on both sides of a fork.
  void lock_for_fork() KEEL_ACQUIRE(m_) { m_.lock(); }
  void unlock_after_fork() KEEL_RELEASE(m_) { m_.unlock(); }

 private:
  // Fills the empty list l with the depot's top batch of this class, if it has one.
  bool refill(TaskBlockList& l, unsigned cls) {
    TaskBlockBatch* give = nullptr;
    bool got = false;
    {
      LockGuard<Mutex> g(m_);
      give = decay(cls);
      if (TaskBlockBatch* top = top_[cls].load()) {
        if (!KEEL_INJECTED(task_heap_refill_keeps_top)) top_[cls].store(top->below.load());
        const std::size_t n = batches_[cls].load() - 1;
        batches_[cls].store(n);
        if (n < low_[cls].load()) low_[cls].store(n);
        bytes_.store(bytes_.load() - batch_ * task_block_size(cls));
        for (std::size_t i = 0; i < batch_; ++i) l.blocks[i] = top->blocks[i].load();
        l.count = batch_;
        top->below.store(spare_.load());
        spare_.store(top);
        got = true;
      }
    }
    if (got) refills_.fetch_add(1, std::memory_order_relaxed);
    give_back(give);
    return got;
  }

  // Moves the oldest batch_ blocks of l (or all, if fewer) to the depot as
  // one batch, or gives them back above the limit. A batch in the depot
  // always holds batch_ blocks: fewer go back at once. The newest stay: they
  // are the likeliest to be in this thread's cache lines.
  void spill(TaskBlockList& l, unsigned cls) noexcept {
    const std::size_t n = l.count < batch_ ? l.count : batch_;
    TaskBlockBatch* give = nullptr;
    if (n == batch_) {
      if (KEEL_INJECTED(task_heap_spill_unlocked)) {
        push_batch_unlocked(l, cls, give);
      } else {
        LockGuard<Mutex> g(m_);
        push_batch(l, cls, give);
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) release(l.blocks[i]);
    }
    const std::size_t keep = KEEL_INJECTED(task_heap_spill_keeps_one_more) ? l.count - n + 1 : l.count - n;
    for (std::size_t i = 0; i < keep; ++i) l.blocks[i] = l.blocks[l.count - keep + i];
    l.count = keep;
    give_back(give);
  }

  // The twin's way in: the same push without the lock.
  void push_batch_unlocked(TaskBlockList& l, unsigned cls, TaskBlockBatch*& give) noexcept KEEL_NO_TSA {
    push_batch(l, cls, give);
  }

  // Under m_: copies the oldest batch_ blocks of l into a node and pushes it
  // (or, above the limit, chains it onto give for the caller to give back).
  void push_batch(TaskBlockList& l, unsigned cls, TaskBlockBatch*& give) noexcept KEEL_REQUIRES(m_) {
    give = decay(cls);
    TaskBlockBatch* node = spare_.load();
    if (node != nullptr) {
      spare_.store(node->below.load());
    } else {
      node = new (std::nothrow) TaskBlockBatch;
      if (node == nullptr) {  // no memory for a node: the blocks go back
        for (std::size_t i = 0; i < batch_; ++i) release(l.blocks[i]);
        return;
      }
    }
    for (std::size_t i = 0; i < batch_; ++i) node->blocks[i].store(l.blocks[i]);
    const std::size_t size = batch_ * task_block_size(cls);
    if (bytes_.load() + size > limit_.load()) {
      node->below.store(give);
      give = node;
      return;
    }
    node->below.store(top_[cls].load());
    top_[cls].store(node);
    batches_[cls].store(batches_[cls].load() + 1);
    bytes_.store(bytes_.load() + size);
  }

  // Under m_: once a decay period has passed, detaches the batches of class
  // cls that lay below the period's low-water mark (unused all period) and
  // returns them, chained by below, for the caller to give back outside the
  // lock. Each class has its own period, started at its first move.
  TaskBlockBatch* decay(unsigned cls) noexcept KEEL_REQUIRES(m_) {
    if (decay_ == platform::SteadyClock::duration::zero()) return nullptr;
    const std::int64_t now = platform::SteadyClock::now().time_since_epoch().count();
    if (now - since_[cls].load() < decay_.count()) return nullptr;
    since_[cls].store(now);
    std::size_t idle = low_[cls].load();
    TaskBlockBatch* give = nullptr;
    while (idle-- != 0) {
      TaskBlockBatch* top = top_[cls].load();
      top_[cls].store(top->below.load());
      top->below.store(give);
      give = top;
      batches_[cls].store(batches_[cls].load() - 1);
      bytes_.store(bytes_.load() - batch_ * task_block_size(cls));
    }
    low_[cls].store(batches_[cls].load());
    return give;
  }

  // Gives back the blocks of batches chained by below, and their nodes.
  void give_back(TaskBlockBatch* batch) noexcept {
    for (TaskBlockBatch* b = batch; b != nullptr; b = b->below.load()) {
      for (std::size_t i = 0; i < batch_; ++i) release(b->blocks[i].load());
    }
    free_nodes(batch);
  }

  // Unsized: the models and clang build without sized deallocation, and
  // malloc needs no size. Counted here, block by block, rather than by the
  // callers' loops: stats() then says what was given back, not what a loop
  // meant to give back, and a block a loop skipped shows as fresh - returned
  // - cached blocks that nobody holds.
  void release(void* block) noexcept {
    ::operator delete(block);
    returned_.fetch_add(1, std::memory_order_relaxed);
  }

  static void free_nodes(TaskBlockBatch* node) noexcept {
    while (node != nullptr) {
      TaskBlockBatch* below = node->below.load();
      delete node;
      node = below;
    }
  }

  const std::size_t batch_;
  const platform::SteadyClock::duration decay_;
  mutable Mutex m_;
  platform::Var<TaskBlockBatch*> top_[task_block_classes] KEEL_GUARDED_BY(m_);
  platform::Var<std::size_t> batches_[task_block_classes] KEEL_GUARDED_BY(m_);
  // The fewest batches the class held since its period began.
  platform::Var<std::size_t> low_[task_block_classes] KEEL_GUARDED_BY(m_);
  // When the class's period began (steady clock, nanoseconds).
  platform::Var<std::int64_t> since_[task_block_classes] KEEL_GUARDED_BY(m_);
  platform::Var<TaskBlockBatch*> spare_ KEEL_GUARDED_BY(m_);
  platform::Var<std::size_t> bytes_ KEEL_GUARDED_BY(m_);
  platform::Var<std::size_t> limit_ KEEL_GUARDED_BY(m_);
  platform::Atomic<std::uint64_t> fresh_{0};
  platform::Atomic<std::uint64_t> returned_{0};
  platform::Atomic<std::uint64_t> refills_{0};
};

#if KEEL_MODEL
// Under the models, tasks come from operator new directly, so that the
// executor's models keep Relacy's checks of use after free on every task (and
// Relacy's threads, which share one OS thread, share no thread-local cache).
// The cache has a model of its own, task_heap_model.cpp.
inline bool task_heap_bypassed() noexcept { return true; }
inline void* task_block_allocate(std::size_t n) { return ::operator new(n); }
inline void task_block_deallocate(void* p, std::size_t) noexcept { ::operator delete(p); }
#else
// Whether tasks bypass the cache (an AddressSanitizer build).
bool task_heap_bypassed() noexcept;
// A task block of n bytes for the calling thread (TaskOf's operator new).
void* task_block_allocate(std::size_t n);
// Gives back a block task_block_allocate(n) returned (TaskOf's operator delete).
void task_block_deallocate(void* p, std::size_t n) noexcept;
#endif

}  // namespace detail
}  // namespace keel
