// keel::platform::Thread, thread identity and spinning: the kernel's only way to
// start a thread or name the current one.
//
// Contract: Thread runs a callable on a new thread; join() waits for it; a
// joinable Thread must be joined or detached before destruction (destroying
// one unjoined is a bug and terminates, as std::thread does). detach() lets
// the thread run on alone; it is for a thread that must let go of its own
// handle (a thread cannot join itself), and that thread must then touch
// nothing that the handle's owner frees. current_thread_id() is a
// non-zero integer unique among live threads of this process. spin_pause() is
// one step of a bounded spin, and spin_limit is how many steps a primitive
// spins before it sleeps; spin_then_yield_until adds a few yields after the
// spin. current_cpu() is the CPU the caller runs on, or -1 when unknown: a
// hint only (the thread may move at once), used to skip spinning for a thread
// that cannot be running meanwhile. Natively Thread is std::thread; under
// KEEL_MODEL_RELACY it is rl::dyn_thread (the model declares
// dynamic_thread_count), and spinning is one scheduler yield with a limit of
// one, which keeps the spin path explored without multiplying interleavings;
// current_cpu() is -1 there, so the spin path is the one explored.
//
// Invariants: PLAT-1 (the only door to threads for kernel code).
#pragma once

#include "keel/platform/config.hpp"

#if !KEEL_MODEL
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <thread>
#endif

namespace keel::platform {

#if KEEL_MODEL

inline constexpr int spin_limit = 1;
inline constexpr int yield_limit = 0;
inline void spin_pause(std::source_location loc = std::source_location::current()) {
  rl::yield(1, rl::debug_info(loc.function_name(), loc.file_name(), loc.line()));
}
inline void yield_now(std::source_location loc = std::source_location::current()) { spin_pause(loc); }
inline std::uint64_t current_thread_id() { return static_cast<std::uint64_t>(rl::thread_index()) + 1; }
inline int current_cpu() noexcept { return -1; }
inline void set_current_thread_name(std::string_view) noexcept {}

class Thread {
 public:
  Thread() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, Thread>>>
  explicit Thread(F&& f) {
    start(std::forward<F>(f));
  }
  template <class F>
  void start(F&& f) {
    RL_ASSERT(!started_);
    fn_ = new std::function<void()>(std::forward<F>(f));
    thread_.start(&Thread::trampoline, fn_);
    started_ = true;
  }
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;
  ~Thread() { RL_ASSERT(!started_); }
  bool joinable() const { return started_; }
  static unsigned hardware_concurrency() noexcept { return 2; }
  void join() {
    thread_.join();
    started_ = false;
    fn_ = nullptr;
  }
  // The thread owns its callable (the trampoline frees it), so it may run on
  // after this handle is gone.
  void detach() {
    RL_ASSERT(started_);
    started_ = false;
    fn_ = nullptr;
  }

 private:
  static void* trampoline(void* p) {
    auto* fn = static_cast<std::function<void()>*>(p);
    (*fn)();
    delete fn;
    return nullptr;
  }
  rl::dyn_thread thread_;
  std::function<void()>* fn_ = nullptr;
  bool started_ = false;
};

#else

inline constexpr int spin_limit = 100;
// After spinning, a waiter whose partner is likely about to act gives up its
// time slice a few times before it sleeps: a sleep/wake round trip costs tens
// of microseconds here, a yield about one.
inline constexpr int yield_limit = 4;
inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
inline std::uint64_t current_thread_id() noexcept {
  // Ids come from one process-wide counter and are never reused, so an owner
  // field can never mistake a new thread for one that exited holding a lock.
  static std::atomic<std::uint64_t> next_id{1};
  thread_local const std::uint64_t id = next_id.fetch_add(1, std::memory_order_relaxed);
  return id;
}
// Gives the rest of this time slice to another runnable thread.
inline void yield_now() noexcept { sched_yield(); }
// glibc answers from the restartable-sequences area the kernel keeps current
// (a thread-local load), falling back to the vDSO: cheap enough for a hot path.
inline int current_cpu() noexcept { return sched_getcpu(); }
// Sets the calling thread's name as the OS shows it (truncated to 15 bytes on Linux).
inline void set_current_thread_name(std::string_view name) noexcept {
  char buf[16] = {};
  const auto n = std::min<std::size_t>(name.size(), sizeof buf - 1);
  std::copy_n(name.data(), n, buf);
  pthread_setname_np(pthread_self(), buf);
}

class Thread {
 public:
  Thread() noexcept = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, Thread>>>
  explicit Thread(F&& f) : t_(std::forward<F>(f)) {}
  // Starts the thread; the Thread must not be running one already.
  template <class F>
  void start(F&& f) {
    t_ = std::thread(std::forward<F>(f));
  }
  Thread(Thread&&) noexcept = default;
  Thread& operator=(Thread&&) noexcept = default;
  bool joinable() const noexcept { return t_.joinable(); }
  void join() { t_.join(); }
  void detach() { t_.detach(); }
  static unsigned hardware_concurrency() noexcept { return std::thread::hardware_concurrency(); }

 private:
  std::thread t_;
};

#endif

// Waits briefly for ready() to hold without sleeping: `spins` pauses (at most
// spin_limit), then yield_limit yields. Returns ready()'s last value. Used
// before a futex sleep when the awaited event is typically imminent (ping-pong
// hand-offs). A caller that knows its partner shares this CPU passes spins = 0:
// spinning cannot help then, and the yields are what let the partner run.
template <class Ready>
bool spin_then_yield_until(Ready ready, int spins = spin_limit) {
  for (int i = 0; i < spins && i < spin_limit; ++i) {
    if (ready()) return true;
    spin_pause();
  }
  for (int i = 0; i < yield_limit; ++i) {
    if (ready()) return true;
    yield_now();
  }
  return ready();
}

}  // namespace keel::platform
