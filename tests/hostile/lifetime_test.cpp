// Lifetimes that a Python user takes for granted (LIFE-8..LIFE-10): a map over
// a temporary range, a thread pool whose last owner is one of its own tasks or
// done callbacks, a Timer joined or deleted by its own callable. Before the
// fixes these read freed memory, threw from a destructor (std::terminate),
// deadlocked or raced; the parts that could crash or hang run in a forked
// child (except under ThreadSanitizer, which cannot start threads in a child
// of a multi-threaded process: there they run in this process), whose exit
// code says which check failed, and a child still running after hang_limit is
// killed and reported as a hang.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#if !defined(__clang__)
#include <ranges>  // clang 14 cannot compile libstdc++ 12's
#endif
#include <string>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/timer.hpp"

namespace {

using namespace std::chrono_literals;
using keel::Future;
using keel::ThreadPoolExecutor;
using keel::ThreadPoolOptions;
using keel_test::eventually;
using keel_test::hang_limit;

// ---- helpers ----

constexpr int hung = -2;

// Runs fn in a forked child (in this process under TSan) and returns its
// result: fn's return value, 128 + a signal that ended the child, 101 if fn
// threw, or `hung` if the child was still running after hang_limit.
int isolated(const std::function<int()>& fn) {
  if (KEEL_TEST_TSAN) {
    try {
      return fn();
    } catch (...) {
      return 101;
    }
  }
  const pid_t pid = keel_test::fork_child(fn);
  if (pid < 0) return -1;
  int status = 0;
  if (!eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; })) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return hung;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// Inputs long enough to live on the heap, numbered so a wrong one is seen.
std::string nth_input(std::size_t i) {
  return "input-" + std::string(40, static_cast<char>('a' + i % 26)) + "-" + std::to_string(i);
}

std::vector<std::string> inputs(std::size_t n) {
  std::vector<std::string> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i) v.push_back(nth_input(i));
  return v;
}

// Reuses memory the inputs would have freed: the same sizes, other bytes.
std::size_t churn(std::size_t n) {
  std::vector<std::vector<std::string>> keep;
  for (int round = 0; round < 4; ++round) {
    std::vector<std::string> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) v.emplace_back(nth_input(i).size(), 'X');
    keep.push_back(std::move(v));
  }
  return keep.size();
}

// A view-like range, as std::views::filter makes: iterable only when not
// const, its iterators point into it, and its end is a sentinel of another
// type. (Written out: clang 14 cannot compile libstdc++ 12's <ranges>.)
class Evens {
 public:
  explicit Evens(int n) {
    for (int i = 0; i < n; ++i) all_.push_back(i);
  }
  struct Sentinel {};
  class Iterator {
   public:
    Iterator(Evens* owner, std::size_t i) : owner_(owner), i_(i) {}
    int operator*() const { return owner_->all_.at(i_); }
    Iterator& operator++() {
      i_ += 2;
      return *this;
    }
    bool operator==(Sentinel) const { return i_ >= owner_->all_.size(); }

   private:
    Evens* owner_;
    std::size_t i_;
  };
  Iterator begin() { return Iterator(this, 0); }
  Sentinel end() { return {}; }

 private:
  std::vector<int> all_;
};

std::string tagged(std::string s) { return s + "!"; }
inline const auto tagged_t = keel::register_task("hostile.tagged", tagged);
int twice(int x) { return 2 * x; }
inline const auto twice_t = keel::register_task("hostile.twice", twice);

// ---- LIFE-9: a map owns an rvalue range ----

// pool.map(fn, make_vector()): the vector dies at the end of the statement,
// while the map (lookahead 3) still has most inputs to submit.
TEST(HostileMap, ThreadPoolMapOwnsATemporaryVector) {
  const int code = isolated([] {
    constexpr std::size_t n = 4096;
    ThreadPoolExecutor pool(ThreadPoolOptions{.max_threads = 2});
    auto results = pool.map([](const std::string& s) { return s; }, inputs(n), {.lookahead = 3});
    if (churn(n) == 0) return 3;
    std::size_t i = 0;
    for (const std::string& s : results) {
      if (s != nth_input(i)) return 1;
      ++i;
    }
    return i == n ? 0 : 2;
  });
  EXPECT_EQ(code, 0) << "1: a wrong result, 2: a wrong count, 128+n: signal n (freed inputs read), -2: hung";
}

// A temporary view-like range (Evens: iterable only when not const, its
// iterators point into it, a sentinel end) is owned by the results; a const
// lvalue is iterated in place.
TEST(HostileMap, ThreadPoolMapTakesViewsAndConstRanges) {
  ThreadPoolExecutor pool(ThreadPoolOptions{.max_threads = 2});
  std::vector<int> got;
  for (int v : pool.map([](int x) { return x * 10; }, Evens(10), {.lookahead = 2})) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{0, 20, 40, 60, 80}));
  const std::vector<int> numbers{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  got.clear();
  for (int v : pool.map([](int x) { return -x; }, numbers, {.lookahead = 4})) got.push_back(v);
  EXPECT_EQ(got.size(), numbers.size());
  EXPECT_EQ(got.back(), -10);
#if !defined(__clang__)
  got.clear();
  for (int v : pool.map([](int x) { return x + 1; }, std::views::iota(0) | std::views::take(5), {.lookahead = 2})) {
    got.push_back(v);
  }
  EXPECT_EQ(got, (std::vector<int>{1, 2, 3, 4, 5}));
#endif
}

TEST(HostileMap, ProcessPoolMapOverATemporaryVector) {
  constexpr std::size_t n = 1000;
  keel::ProcessPool pool({.workers = 2});
  auto results = pool.map(tagged_t, inputs(n), {.chunksize = 7});
  auto unordered = pool.map_unordered(tagged_t, inputs(n), {.chunksize = 5});
  ASSERT_GT(churn(n), 0u);
  std::size_t i = 0;
  for (const std::string& s : results) {
    ASSERT_EQ(s, nth_input(i) + "!");
    ++i;
  }
  EXPECT_EQ(i, n);
  std::vector<std::string> seen;
  for (Future<std::string>& f : unordered) seen.push_back(f.result(hang_limit));
  std::sort(seen.begin(), seen.end());
  std::vector<std::string> want;
  for (std::size_t k = 0; k < n; ++k) want.push_back(nth_input(k) + "!");
  std::sort(want.begin(), want.end());
  EXPECT_EQ(seen, want);
  pool.shutdown();
}

TEST(HostileMap, ProcessPoolMapTakesATemporaryView) {
  keel::ProcessPool pool({.workers = 2});
  std::vector<int> got = pool.map(twice_t, Evens(7), {.chunksize = 2}).get();
  EXPECT_EQ(got, (std::vector<int>{0, 4, 8, 12}));
  std::vector<int> unordered;
  for (Future<int>& f : pool.map_unordered(twice_t, Evens(5))) unordered.push_back(f.result(hang_limit));
  std::sort(unordered.begin(), unordered.end());
  EXPECT_EQ(unordered, (std::vector<int>{0, 4, 8}));
  pool.shutdown();
}

// ---- LIFE-8: a pool whose last owner is one of its own threads ----

// Checks shared by the two ways of dropping the last owner on a worker. The
// pool has one worker; its first task waits for `go`; eight more are queued.
// Exit codes: 10 the first task never finished, 11 a queued task failed or
// never ran, 12 not every queued task ran, 13 on_terminated never ran, 14 the
// core (which holds the hooks) was never freed, 15 a pool thread never ended.
int last_owner_on_a_worker(bool from_done_callback) {
  const std::size_t threads_before = thread_count();
  std::atomic<int> ran{0};
  keel::Event go;
  keel::Event terminated;
  auto hook_state = std::make_shared<int>(0);
  const std::weak_ptr<int> core_alive = hook_state;
  std::shared_ptr<ThreadPoolExecutor> owner = std::make_shared<ThreadPoolExecutor>(
      ThreadPoolOptions{.max_threads = 1, .on_terminated = [&terminated, hook_state] { terminated.set(); }});
  hook_state.reset();
  std::optional<Future<void>> first;
  if (from_done_callback) {
    first = owner->submit([&go] { go.wait_for(hang_limit); });
    // Runs on the worker when the first task completes: drops the last owner.
    first->add_done_callback([&owner](const Future<void>&) { owner.reset(); });
  } else {
    first = owner->submit([&go, self = owner]() mutable {
      go.wait_for(hang_limit);
      self.reset();  // the last owner: the destructor runs here, on the worker
    });
  }
  std::vector<Future<void>> queued;
  for (int i = 0; i < 8; ++i) queued.push_back(owner->submit([&ran] { ran.fetch_add(1); }));
  if (!from_done_callback) owner.reset();  // the task's copy is now the last
  go.set();                                // from here only the pool touches `owner`
  if (!first->wait_for(hang_limit)) return 10;
  for (auto& f : queued) {
    try {
      f.result(hang_limit);
    } catch (...) {
      return 11;
    }
  }
  if (ran.load() != 8) return 12;
  if (!terminated.wait_for(hang_limit)) return 13;
  if (!eventually([&] { return core_alive.expired(); })) return 14;
  if (!eventually([&] { return thread_count() == threads_before; })) return 15;
  return 0;
}

TEST(HostileThreadPool, LastOwnerIsItsOwnTask) {
  EXPECT_EQ(isolated([] { return last_owner_on_a_worker(false); }), 0)
      << "134: SIGABRT (a destructor threw), -2: hung; else see last_owner_on_a_worker";
}

TEST(HostileThreadPool, LastOwnerDroppedByADoneCallback) {
  EXPECT_EQ(isolated([] { return last_owner_on_a_worker(true); }), 0)
      << "134: SIGABRT (a destructor threw), -2: hung; else see last_owner_on_a_worker";
}

// Two workers: the one that destroys the pool runs the queued tasks and
// leaves while the other is still busy, so the other, the last to leave,
// frees the pool (it joins the first and detaches itself).
TEST(HostileThreadPool, LastWorkerToLeaveIsNotTheDestroyer) {
  const int code = isolated([] {
    const std::size_t threads_before = thread_count();
    std::atomic<int> ran{0};
    keel::Event go;
    keel::Event release_other;
    auto hook_state = std::make_shared<int>(0);
    const std::weak_ptr<int> core_alive = hook_state;
    auto pool = std::make_shared<ThreadPoolExecutor>(
        ThreadPoolOptions{.max_threads = 2, .on_terminated = [hook_state] { (void)hook_state; }});
    hook_state.reset();
    Future<void> other = pool->submit([&release_other] { release_other.wait_for(hang_limit); });
    Future<void> destroyer = pool->submit([&go, self = pool]() mutable {
      go.wait_for(hang_limit);
      self.reset();
    });
    std::vector<Future<void>> queued;
    for (int i = 0; i < 8; ++i) queued.push_back(pool->submit([&ran] { ran.fetch_add(1); }));
    pool.reset();
    go.set();
    if (!destroyer.wait_for(hang_limit)) return 10;
    for (auto& f : queued) {
      if (!f.wait_for(hang_limit)) return 11;
    }
    if (ran.load() != 8) return 12;
    // The destroyer's worker found the queue empty and the pool shut down: it leaves.
    if (!eventually([&] { return thread_count() == threads_before + 1; })) return 13;
    if (core_alive.expired()) return 14;  // the busy worker still uses it
    release_other.set();
    if (!other.wait_for(hang_limit)) return 15;
    if (!eventually([&] { return core_alive.expired(); })) return 16;
    if (!eventually([&] { return thread_count() == threads_before; })) return 17;
    return 0;
  });
  EXPECT_EQ(code, 0) << "134: SIGABRT (a destructor threw), -2: hung; 10..17: see the test";
}

// The on_terminated hook runs on the last worker after it left the live set:
// waiting for termination there would wait for itself. It is MisuseError,
// not a deadlock; the timed wait just times out.
TEST(HostileThreadPool, WaitingInTheTerminatedHookIsMisuse) {
  const int code = isolated([] {
    std::atomic<int> outcome{0};  // bits: 1 shutdown(wait) misuse, 2 await misuse, 4 timed await false
    keel::Event hook_done;
    keel::Event release;
    ThreadPoolExecutor* self = nullptr;
    ThreadPoolExecutor pool(ThreadPoolOptions{.max_threads = 1, .on_terminated = [&] {
                                                try {
                                                  self->shutdown({.wait = true});
                                                } catch (const keel::MisuseError&) {
                                                  outcome.fetch_or(1);
                                                }
                                                try {
                                                  self->await_termination();
                                                } catch (const keel::MisuseError&) {
                                                  outcome.fetch_or(2);
                                                }
                                                if (!self->await_termination(1ms)) outcome.fetch_or(4);
                                                hook_done.set();
                                              }});
    self = &pool;
    Future<void> busy = pool.submit([&release] { release.wait_for(hang_limit); });
    pool.shutdown({.wait = false});  // the busy worker will be the one that terminates the pool
    release.set();
    if (!hook_done.wait_for(hang_limit)) return 10;
    return outcome.load() == 7 ? 0 : 20 + outcome.load();
  });
  EXPECT_EQ(code, 0) << "-2: hung (the hook waited for itself); 20+bits: the checks that did not hold";
}

// ---- LIFE-10: a Timer and its own thread ----

TEST(HostileTimer, JoinFromItsOwnCallableIsMisuse) {
  keel::Timer* self = nullptr;
  keel::Timer t(0ms, [&self] { self->join(); });
  self = &t;
  t.start();
  t.join();
  EXPECT_TRUE(t.fired());
  ASSERT_TRUE(t.error()) << "join() from the callable returned";
  EXPECT_THROW(std::rethrow_exception(t.error()), keel::MisuseError);
}

TEST(HostileTimer, DeletedByItsOwnCallable) {
  const int code = isolated([] {
    const std::size_t threads_before = thread_count();
    std::atomic<bool> after_delete{false};
    keel::Timer* t = nullptr;
    t = new keel::Timer(0ms, [&t, &after_delete] {
      delete t;
      after_delete.store(true);
    });
    t->start();
    if (!eventually([&] { return after_delete.load(); })) return 10;
    if (!eventually([&] { return thread_count() == threads_before; })) return 11;
    return 0;
  });
  EXPECT_EQ(code, 0) << "134: SIGABRT (the destructor threw), -2: hung, 10: the callable did not return, 11: the "
                        "timer thread never ended";
}

// Several threads join at once while the callable still runs: they take
// turns on the thread handle (two joins of one thread at once are undefined;
// glibc's second fails), and each returns only once the timer thread ended.
TEST(HostileTimer, ConcurrentJoinersTakeTurns) {
  const int code = isolated([] {
    std::atomic<bool> release{false};
    keel::Timer t(0ms, [&release] {
      while (!release.load()) std::this_thread::yield();
    });
    t.start();
    std::atomic<int> arrived{0};
    std::atomic<int> wrong{0};
    {
      keel_test::Threads joiners;
      for (int j = 0; j < 3; ++j) {
        joiners.spawn([&] {
          arrived.fetch_add(1);
          t.join();
          if (!t.finished()) wrong.fetch_add(1);
        });
      }
      if (!eventually([&] { return arrived.load() == 3; })) return 10;
      std::this_thread::sleep_for(5ms);  // not a bound: lets them reach join() together
      release.store(true);
    }
    return wrong.load() == 0 ? 0 : 11;
  });
  EXPECT_EQ(code, 0) << "134: SIGABRT (a join threw), -2: hung, 11: a join returned before the thread ended";
}

}  // namespace
