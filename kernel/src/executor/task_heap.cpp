// The process's task-block cache: one depot, and a cache per thread that is
// flushed into it when the thread exits (task_heap.hpp).
#include "keel/executor/task_heap.hpp"

#include <pthread.h>

#include <chrono>

#if defined(__SANITIZE_ADDRESS__)
#define KEEL_TASK_HEAP_BYPASS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_TASK_HEAP_BYPASS 1
#endif
#endif
#ifndef KEEL_TASK_HEAP_BYPASS
#define KEEL_TASK_HEAP_BYPASS 0
#endif

namespace keel {
namespace detail {
namespace {

constexpr std::size_t default_limit = std::size_t{256} << 20;
constexpr auto decay_period = std::chrono::seconds(1);

// Constant-initialized and never destroyed: no thread is ever inside its
// construction (a fork() at that moment would leave the child waiting for
// it), and blocks are freed during static destruction too.
union DepotStorage {
  constexpr DepotStorage() : depot(default_limit, task_block_batch, decay_period) {}
  // Not `= default`, which a union with a non-trivial member would delete.
  // NOLINTNEXTLINE(modernize-use-equals-default)
  ~DepotStorage() {}
  TaskBlockDepot depot;
};
constinit DepotStorage storage;
TaskBlockDepot& depot() { return storage.depot; }

void lock_depot_for_fork() KEEL_NO_TSA { depot().lock_for_fork(); }
void unlock_depot_after_fork() KEEL_NO_TSA { depot().unlock_after_fork(); }
// Registered when the program starts: a fork() from then on holds the
// depot's lock, so a child never inherits it held by a thread it lacks.
const int fork_handlers = ::pthread_atfork(&lock_depot_for_fork, &unlock_depot_after_fork, &unlock_depot_after_fork);

// unused: the thread has not touched its cache; live: its flush at exit is
// registered; dead: flushed (the thread is exiting, or it is the main thread
// after exit() began), so blocks go straight to operator new and delete.
enum class CacheState : unsigned char { unused, live, dead };

// Trivially destructible, so it stays usable while the thread's other
// thread_local objects are destroyed, and needs no guard on each access.
struct ThreadCache {
  TaskBlockCache cache;
  CacheState state = CacheState::unused;
};
constinit thread_local ThreadCache tls_cache{};

struct Flusher {
  void arm() noexcept { tls_cache.state = CacheState::live; }
  ~Flusher() {
    tls_cache.state = CacheState::dead;
    depot().flush(tls_cache.cache);
  }
};
thread_local Flusher tls_flusher;

// Whether the calling thread's cache may be used, registering its flush on first use.
bool cache_usable() noexcept {
  if (KEEL_LIKELY(tls_cache.state == CacheState::live)) return true;
  if (tls_cache.state == CacheState::dead) return false;
  tls_flusher.arm();
  return true;
}

}  // namespace

bool task_heap_bypassed() noexcept { return KEEL_TASK_HEAP_BYPASS; }

void* task_block_allocate(std::size_t n) {
  if (KEEL_TASK_HEAP_BYPASS || n > task_block_max) return ::operator new(n);
  const unsigned cls = task_block_class(n);
  if (!cache_usable()) return depot().allocate_uncached(cls);
  return depot().allocate(tls_cache.cache, cls);
}

void task_block_deallocate(void* p, std::size_t n) noexcept {
  if (KEEL_TASK_HEAP_BYPASS || n > task_block_max) {
    ::operator delete(p);
    return;
  }
  const unsigned cls = task_block_class(n);
  if (!cache_usable()) {
    depot().deallocate_uncached(p);
    return;
  }
  depot().deallocate(tls_cache.cache, p, cls);
}

}  // namespace detail

TaskCacheStats task_cache_stats() { return detail::depot().stats(); }
std::size_t trim_task_cache() { return detail::depot().trim(); }
std::size_t set_task_cache_limit(std::size_t bytes) { return detail::depot().set_limit(bytes); }

}  // namespace keel
