// C++20 coroutines over keel futures: the contract of
// keel/future/coroutine.hpp (co_await a Future, resume_on an executor,
// Coro<T> run by spawn, cancellation and stop reaching a suspended awaiter,
// frame lifetime), and a stress of the suspend/resume handshake (CORO-1).
#include <gtest/gtest.h>

#include <atomic>
#include <coroutine>
#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "future_test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/coroutine.hpp"
#include "keel/future/future.hpp"

namespace {

using keel_future_test::Gate;
using keel_test::eventually;

// A plain eager coroutine (not a keel::Coro): it starts in the caller and
// frees its own frame at its end, so these tests see where co_await resumes
// it without an executor in between.
struct CoroTestEager {
  struct promise_type {
    CoroTestEager get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// What an eager test coroutine reports back.
struct CoroTestProbe {
  std::atomic<int> resumed{0};
  std::atomic<int> value{0};
  std::atomic<bool> cancelled{false};
  std::atomic<bool> rejected{false};
  std::atomic<bool> failed{false};
  std::string error;
  std::thread::id thread;
};

CoroTestEager coro_test_await_int(keel::Future<int> f, CoroTestProbe* probe) {
  try {
    const int v = co_await f;
    probe->value.store(v);
  } catch (const keel::CancelledError&) {
    probe->cancelled.store(true);
  } catch (const keel::RejectedError&) {
    probe->rejected.store(true);
  } catch (const std::exception& e) {
    probe->error = e.what();
    probe->failed.store(true);
  }
  probe->thread = std::this_thread::get_id();
  probe->resumed.fetch_add(1);
}

CoroTestEager coro_test_await_on(keel::ThreadPoolExecutor* ex, keel::Future<int> f, CoroTestProbe* probe) {
  try {
    const int v = co_await keel::resume_on(*ex, f);
    probe->value.store(v);
  } catch (const keel::CancelledError&) {
    probe->cancelled.store(true);
  } catch (const keel::RejectedError&) {
    probe->rejected.store(true);
  }
  probe->thread = std::this_thread::get_id();
  probe->resumed.fetch_add(1);
}

// Counts the destruction of the frame it lives in.
struct CoroTestFrameMark {
  std::atomic<int>* destroyed;
  explicit CoroTestFrameMark(std::atomic<int>* d) : destroyed(d) {}
  CoroTestFrameMark(const CoroTestFrameMark&) = delete;
  CoroTestFrameMark& operator=(const CoroTestFrameMark&) = delete;
  ~CoroTestFrameMark() { destroyed->fetch_add(1); }
};

// A pool whose workers record their thread ids.
class CoroTestPool {
 public:
  explicit CoroTestPool(std::size_t threads)
      : pool_({.max_threads = threads, .initializer = [this] {
                 std::lock_guard<std::mutex> l(m_);
                 ids_.insert(std::this_thread::get_id());
               }}) {}
  keel::ThreadPoolExecutor& get() { return pool_; }
  bool owns(std::thread::id id) const {
    std::lock_guard<std::mutex> l(m_);
    return ids_.count(id) != 0;
  }

 private:
  mutable std::mutex m_;
  std::set<std::thread::id> ids_;
  keel::ThreadPoolExecutor pool_;  // last: its workers use m_ and ids_
};

}  // namespace

// ---------------------------------------------------------------- co_await

TEST(Coroutine, AwaitingADoneFutureContinuesWithoutSuspending) {
  keel::Promise<int> p;
  p.set_result(4);
  CoroTestProbe probe;
  coro_test_await_int(p.get_future(), &probe);
  // Still inside the call: the coroutine never suspended.
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_EQ(probe.value.load(), 4);
  EXPECT_EQ(probe.thread, std::this_thread::get_id());
}

TEST(Coroutine, ResumesOnTheThreadThatCompletesTheFuture) {
  keel::Promise<int> p;
  CoroTestProbe probe;
  coro_test_await_int(p.get_future(), &probe);
  EXPECT_EQ(probe.resumed.load(), 0);  // suspended: the future is pending
  std::thread::id completer;
  std::thread t([&] {
    completer = std::this_thread::get_id();
    p.set_result(9);
  });
  t.join();
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_EQ(probe.value.load(), 9);
  EXPECT_EQ(probe.thread, completer);
}

TEST(Coroutine, AwaitRethrowsTheTasksException) {
  keel::Promise<int> p;
  CoroTestProbe probe;
  coro_test_await_int(p.get_future(), &probe);
  p.set_exception(std::runtime_error("boom"));
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_TRUE(probe.failed.load());
  EXPECT_EQ(probe.error, "boom");
}

TEST(Coroutine, AwaitOfAFutureCancelledWhileSuspendedThrowsCancelledError) {
  keel::Promise<int> p;
  auto f = p.get_future();
  CoroTestProbe probe;
  coro_test_await_int(f, &probe);
  EXPECT_EQ(probe.resumed.load(), 0);
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_TRUE(probe.cancelled.load());
}

namespace {
CoroTestEager coro_test_void_and_move_only(keel::Future<void> v, keel::Future<std::unique_ptr<int>> m,
                                           CoroTestProbe* probe) {
  co_await v;
  std::unique_ptr<int> got = co_await std::move(m);
  probe->value.store(*got);
  probe->resumed.fetch_add(1);
}
}  // namespace

TEST(Coroutine, AwaitsVoidAndMoveOnlyResults) {
  keel::Promise<void> pv;
  keel::Promise<std::unique_ptr<int>> pm;
  CoroTestProbe probe;
  coro_test_void_and_move_only(pv.get_future(), pm.get_future(), &probe);
  pv.set_result();
  EXPECT_EQ(probe.resumed.load(), 0);
  pm.set_result(std::make_unique<int>(11));
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_EQ(probe.value.load(), 11);
}

// ---------------------------------------------------------------- resume_on

TEST(Coroutine, ResumeOnContinuesOnAThreadOfTheExecutor) {
  CoroTestPool pool(2);
  keel::Promise<int> p;
  CoroTestProbe probe;
  coro_test_await_on(&pool.get(), p.get_future(), &probe);
  p.set_result(3);  // completed here, on the test thread
  ASSERT_TRUE(eventually([&] { return probe.resumed.load() == 1; }));
  EXPECT_EQ(probe.value.load(), 3);
  EXPECT_NE(probe.thread, std::this_thread::get_id());
  EXPECT_TRUE(pool.owns(probe.thread));
}

TEST(Coroutine, ResumeOnADoneFutureStillContinuesOnTheExecutor) {
  CoroTestPool pool(1);
  keel::Promise<int> p;
  p.set_result(6);
  CoroTestProbe probe;
  coro_test_await_on(&pool.get(), p.get_future(), &probe);
  ASSERT_TRUE(eventually([&] { return probe.resumed.load() == 1; }));
  EXPECT_EQ(probe.value.load(), 6);
  EXPECT_TRUE(pool.owns(probe.thread));
}

TEST(Coroutine, ResumeOnADoneFutureAndAShutDownExecutorContinuesAtOnceWithItsError) {
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  pool.shutdown();
  keel::Promise<int> p;
  p.set_result(6);
  CoroTestProbe probe;
  coro_test_await_on(&pool, p.get_future(), &probe);
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_TRUE(probe.rejected.load());
  EXPECT_EQ(probe.thread, std::this_thread::get_id());
}

TEST(Coroutine, ResumeOnAShutDownExecutorResumesWithItsErrorInTheCompletingThread) {
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  keel::Promise<int> p;
  CoroTestProbe probe;
  coro_test_await_on(&pool, p.get_future(), &probe);
  pool.shutdown();
  p.set_result(3);
  // Resumed inline, before set_result returned: not lost, no hang.
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_TRUE(probe.rejected.load());
  EXPECT_EQ(probe.thread, std::this_thread::get_id());
}

TEST(Coroutine, ResumeOnWhoseContinuationTheExecutorDropsResumesWithCancelledError) {
  Gate gate;
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  auto guard = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  keel::Promise<int> p;
  CoroTestProbe probe;
  coro_test_await_on(&pool, p.get_future(), &probe);
  p.set_result(3);  // the continuation queues behind the blocker
  EXPECT_EQ(probe.resumed.load(), 0);
  {
    auto dropped = pool.shutdown_now();
    EXPECT_EQ(dropped.size(), 1u);
  }  // dropping the continuation unrun resumes the coroutine here
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_TRUE(probe.cancelled.load());
  gate.open();
}

TEST(Coroutine, ResumeOnWhoseContinuationShutdownCancelsResumesWithCancelledError) {
  Gate gate;
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  auto guard = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  keel::Promise<int> p;
  CoroTestProbe probe;
  coro_test_await_on(&pool, p.get_future(), &probe);
  p.set_result(3);
  EXPECT_EQ(probe.resumed.load(), 0);
  pool.shutdown({.wait = false, .cancel_futures = true});
  EXPECT_EQ(probe.resumed.load(), 1);
  EXPECT_TRUE(probe.cancelled.load());
  gate.open();
}

// ---------------------------------------------------------------- spawn

namespace {
keel::Coro<int> coro_test_sum(keel::ThreadPoolExecutor* ex, const CoroTestPool* pool, std::atomic<int>* on_pool) {
  if (pool->owns(std::this_thread::get_id())) on_pool->fetch_add(1);
  const int a = co_await ex->submit([] { return 20; });
  if (pool->owns(std::this_thread::get_id())) on_pool->fetch_add(1);
  auto b = ex->submit([] { return 22; });
  const int c = co_await b;
  if (pool->owns(std::this_thread::get_id())) on_pool->fetch_add(1);
  co_return a + c;
}
}  // namespace

namespace {
// README.md's example, as printed there.
keel::Coro<int> total(keel::ThreadPoolExecutor& pool) {
  int a = co_await pool.submit([] { return 20; });                         // resumes on the thread that completes it
  int b = co_await keel::resume_on(pool, pool.submit([] { return 22; }));  // resumes on a pool thread
  auto stop = co_await keel::this_coro::stop_token;                        // set by f.request_stop()
  co_return stop.stop_requested() ? -1 : a + b;
}
}  // namespace

TEST(CoroSpawn, TheReadmeExampleRuns) {
  keel::ThreadPoolExecutor pool({.max_threads = 2});
  keel::Future<int> f = keel::spawn(pool, total(pool));
  EXPECT_EQ(f.result(keel_test::hang_limit), 42);
}

TEST(CoroSpawn, RunsOnThePoolThroughNestedAwaitsAndCompletesItsFuture) {
  CoroTestPool pool(2);
  std::atomic<int> on_pool{0};
  auto f = keel::spawn(pool.get(), coro_test_sum(&pool.get(), &pool, &on_pool));
  EXPECT_EQ(f.result(keel_test::hang_limit), 42);
  EXPECT_EQ(on_pool.load(), 3);  // started on the pool, resumed by pool workers
}

namespace {
keel::Coro<> coro_test_throws(std::atomic<int>* destroyed) {
  CoroTestFrameMark mark(destroyed);
  if (destroyed != nullptr) throw std::logic_error("from the body");
  co_return;
}
}  // namespace

TEST(CoroSpawn, ExceptionOfTheBodyCompletesTheFutureAfterTheFrameIsGone) {
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  std::atomic<int> destroyed{0};
  auto f = keel::spawn(pool, coro_test_throws(&destroyed));
  EXPECT_THROW(f.result(keel_test::hang_limit), std::logic_error);
  EXPECT_EQ(destroyed.load(), 1);
}

namespace {
// `held` is copied into the frame: its use count tells whether the frame
// still exists, also when the body never ran.
keel::Coro<int> coro_test_marked(std::atomic<int>* ran, std::atomic<int>* destroyed, std::shared_ptr<int> held) {
  CoroTestFrameMark mark(destroyed);
  ran->fetch_add(1);
  co_return *held;
}
}  // namespace

TEST(CoroSpawn, FrameIsDestroyedExactlyOnceBeforeTheFutureCompletes) {
  keel::ThreadPoolExecutor pool({.max_threads = 2});
  for (int i = 0; i < 50; ++i) {
    std::atomic<int> ran{0};
    std::atomic<int> destroyed{0};
    auto held = std::make_shared<int>(5);
    auto f = keel::spawn(pool, coro_test_marked(&ran, &destroyed, held));
    EXPECT_EQ(f.result(keel_test::hang_limit), 5);
    EXPECT_EQ(ran.load(), 1);
    // Already: the frame goes before the future completes.
    EXPECT_EQ(destroyed.load(), 1);
    EXPECT_EQ(held.use_count(), 1);
  }
}

TEST(CoroSpawn, ACoroNeverSpawnedDestroysItsFrameWithoutRunning) {
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  auto held = std::make_shared<int>(5);
  {
    auto c = coro_test_marked(&ran, &destroyed, held);
    auto moved = std::move(c);
    EXPECT_EQ(held.use_count(), 2);  // the frame's copy
  }
  EXPECT_EQ(held.use_count(), 1);  // the frame was destroyed
  EXPECT_EQ(ran.load(), 0);
}

TEST(CoroSpawn, CancelBeforeStartPreventsTheBody) {
  Gate gate;
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  auto guard = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  auto held = std::make_shared<int>(5);
  auto f = keel::spawn(pool, coro_test_marked(&ran, &destroyed, held));
  EXPECT_TRUE(f.cancel());
  gate.open();
  pool.shutdown();
  EXPECT_TRUE(f.cancelled());
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(held.use_count(), 1);  // the frame was destroyed unrun
}

TEST(CoroSpawn, DroppedByShutdownWithCancelFuturesLeavesTheFutureCancelled) {
  Gate gate;
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  auto guard = gate.open_at_exit();
  auto blocker = pool.submit([&] { gate.wait(); });
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  auto held = std::make_shared<int>(5);
  auto f = keel::spawn(pool, coro_test_marked(&ran, &destroyed, held));
  pool.shutdown({.wait = false, .cancel_futures = true});
  EXPECT_TRUE(f.cancelled());
  gate.open();
  pool.shutdown();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(held.use_count(), 1);
}

TEST(CoroSpawn, SpawnOnAShutDownPoolThrowsRejectedError) {
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  pool.shutdown();
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  auto held = std::make_shared<int>(5);
  EXPECT_THROW(keel::spawn(pool, coro_test_marked(&ran, &destroyed, held)), keel::RejectedError);
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(held.use_count(), 1);
}

namespace {
// Awaits `awaited`; -1 if the await ends with CancelledError (a stop).
keel::Coro<int> coro_test_awaits_until_cancelled(keel::Future<int> awaited, std::atomic<bool>* awaiting) {
  awaiting->store(true);
  try {
    co_return co_await awaited;
  } catch (const keel::CancelledError&) {
    co_return -1;
  }
}
}  // namespace

TEST(CoroSpawn, CancelOfARunningCoroutineFailsButAStopReachesItsSuspendedAwait) {
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  keel::Promise<int> never;
  auto awaited = never.get_future();
  std::atomic<bool> awaiting{false};
  auto f = keel::spawn(pool, coro_test_awaits_until_cancelled(awaited, &awaiting));
  ASSERT_TRUE(eventually([&] { return awaiting.load(); }));
  ASSERT_TRUE(eventually([&] { return f.running(); }));
  EXPECT_FALSE(f.cancel());  // running: not cancelled, as for any task
  EXPECT_TRUE(f.request_stop());
  EXPECT_EQ(f.result(keel_test::hang_limit), -1);  // the await ended with CancelledError
  EXPECT_TRUE(awaited.cancelled());                // and the pending awaited future was cancelled
}

TEST(CoroSpawn, AStopWhileAwaitingARunningTaskAsksThatTaskToStop) {
  keel::ThreadPoolExecutor pool({.max_threads = 2});
  std::atomic<bool> task_started{false};
  auto task = pool.submit([&](std::stop_token tok) {
    task_started.store(true);
    return eventually([&] { return tok.stop_requested(); }) ? 1 : 0;
  });
  ASSERT_TRUE(eventually([&] { return task_started.load(); }));
  std::atomic<bool> awaiting{false};
  auto f = keel::spawn(pool, coro_test_awaits_until_cancelled(task, &awaiting));
  ASSERT_TRUE(eventually([&] { return awaiting.load(); }));
  EXPECT_TRUE(f.request_stop());
  EXPECT_EQ(f.result(keel_test::hang_limit), -1);    // not held up by the running task
  EXPECT_EQ(task.result(keel_test::hang_limit), 1);  // which was asked to stop
}

namespace {
keel::Coro<bool> coro_test_polls_its_token(std::atomic<bool>* started) {
  keel::platform::StopToken tok = co_await keel::this_coro::stop_token;
  started->store(true);
  co_return eventually([&] { return tok.stop_requested(); });
}
}  // namespace

TEST(CoroSpawn, ThisCoroStopTokenIsSetByRequestStopOnTheFuture) {
  keel::ThreadPoolExecutor pool({.max_threads = 1});
  std::atomic<bool> started{false};
  auto f = keel::spawn(pool, coro_test_polls_its_token(&started));
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  EXPECT_TRUE(f.request_stop());
  EXPECT_TRUE(f.result(keel_test::hang_limit));
}

// ---------------------------------------------------------------- stress

namespace {
keel::Coro<int> coro_test_counted(keel::Future<int> f, std::atomic<int>* resumes, std::atomic<int>* destroyed) {
  CoroTestFrameMark mark(destroyed);
  int v = -1;
  try {
    v = co_await f;
  } catch (const keel::CancelledError&) {
    v = -1;
  }
  resumes->fetch_add(1);
  co_return v;
}
}  // namespace

// CORO-1: many coroutines suspend on futures that other threads complete
// while they suspend (the callback runs before, during or after the
// handshake); each is resumed exactly once and its frame freed once.
TEST(CoroutineStress, ManyCoroutinesAwaitingFuturesCompletedElsewhereAreEachResumedOnce) {
  constexpr int n = 1000;
  constexpr int completers = 4;
  keel::ThreadPoolExecutor pool({.max_threads = 4});
  std::vector<keel::Promise<int>> promises(n);
  std::vector<std::atomic<int>> resumes(n);
  std::atomic<int> destroyed{0};
  std::vector<keel::Future<int>> results;
  results.reserve(n);
  std::vector<std::thread> threads;
  std::atomic<int> next{0};
  for (int c = 0; c < completers; ++c) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) promises[i].set_result(i);
    });
  }
  for (int i = 0; i < n; ++i) {
    results.push_back(keel::spawn(pool, coro_test_counted(promises[i].get_future(), &resumes[i], &destroyed)));
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < n; ++i) EXPECT_EQ(results[i].result(keel_test::hang_limit), i);
  for (int i = 0; i < n; ++i) EXPECT_EQ(resumes[i].load(), 1) << i;
  EXPECT_EQ(destroyed.load(), n);
}

namespace {
CoroTestEager coro_test_count_resume(keel::Future<int> f, std::atomic<int>* resumes) {
  (void)co_await f;
  resumes->fetch_add(1);
}
}  // namespace

// CORO-1: one coroutine suspending and one completion, started together
// round after round so that the completion lands inside the handshake (the
// window a check-then-store suspend loses a resume in): every coroutine is
// resumed exactly once.
TEST(CoroutineStress, SuspensionRacingCompletionIsNeitherLostNorDoubled) {
  const int rounds = keel_test::scaled(5000, 500);
  std::vector<keel::Promise<int>> promises(rounds);
  std::vector<std::atomic<int>> resumes(rounds);
  std::atomic<int> arrived{0};
  auto together = [&](int round) {
    arrived.fetch_add(1);
    while (arrived.load() < 2 * (round + 1)) std::this_thread::yield();
  };
  std::thread completer([&] {
    for (int r = 0; r < rounds; ++r) {
      together(r);
      promises[r].set_result(r);
    }
  });
  for (int r = 0; r < rounds; ++r) {
    together(r);
    coro_test_count_resume(promises[r].get_future(), &resumes[r]);
  }
  completer.join();
  int wrong = 0;
  for (int r = 0; r < rounds; ++r) wrong += resumes[r].load() == 1 ? 0 : 1;
  EXPECT_EQ(wrong, 0) << "of " << rounds << " rounds";
}

// CORO-1, CORO-2: the three-way race of suspension, completion and stop:
// each coroutine resumes exactly once, with the value or CancelledError.
TEST(CoroutineStress, StopsRacingCompletionsResumeEachCoroutineOnce) {
  constexpr int n = 1000;
  keel::ThreadPoolExecutor pool({.max_threads = 4});
  std::vector<keel::Promise<int>> promises(n);
  std::vector<std::atomic<int>> resumes(n);
  std::atomic<int> destroyed{0};
  std::vector<keel::Future<int>> results;
  results.reserve(n);
  for (int i = 0; i < n; ++i) {
    results.push_back(keel::spawn(pool, coro_test_counted(promises[i].get_future(), &resumes[i], &destroyed)));
  }
  // A stop that wins cancels the awaited future if it is still pending:
  // set_result then finds it cancelled.
  std::vector<char> refused(n, 0);
  std::thread completer([&] {
    for (int i = 0; i < n; ++i) {
      try {
        promises[i].set_result(i);
      } catch (const keel::InvalidStateError&) {
        refused[i] = 1;
      }
    }
  });
  std::thread stopper([&] {
    for (int i = 0; i < n; ++i) results[i].request_stop();
  });
  completer.join();
  stopper.join();
  int stopped = 0;
  for (int i = 0; i < n; ++i) {
    const int v = results[i].result(keel_test::hang_limit);
    EXPECT_TRUE(v == i || v == -1) << i << ": " << v;
    if (refused[i]) {
      EXPECT_EQ(v, -1) << i;  // cancelled by the stop that resumed it
    }
    stopped += v == -1 ? 1 : 0;
  }
  for (int i = 0; i < n; ++i) EXPECT_EQ(resumes[i].load(), 1) << i;
  EXPECT_EQ(destroyed.load(), n);
  RecordProperty("stopped", stopped);
}
