// Native thread identity and naming. See keel/platform/thread.hpp.
#include "keel/platform/thread.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>

namespace keel::platform {

namespace {
std::atomic<std::uint64_t> next_thread_id{1};
}

std::uint64_t current_thread_id() noexcept {
  // Ids are never reused, so an owner field can never mistake a new thread for
  // one that exited while holding a lock.
  thread_local const std::uint64_t id = next_thread_id.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void yield_now() noexcept { sched_yield(); }

void set_current_thread_name(std::string_view name) noexcept {
  char buf[16] = {};
  const auto n = std::min<std::size_t>(name.size(), sizeof buf - 1);
  std::copy_n(name.data(), n, buf);
  pthread_setname_np(pthread_self(), buf);
}

}  // namespace keel::platform
