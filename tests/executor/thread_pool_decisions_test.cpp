// The thread pool's two pure decisions (keel/executor/decisions.hpp), checked
// exhaustively over small bounds against Java ThreadPoolExecutor's documented
// rules and keel's own additions, and the one-allocation task of
// keel/executor/task.hpp (count and size of what submit allocates); and,
// with the same count of operator new, that a chunked ProcessPool map
// allocates per chunk, not per call (its calls have no future each).
//
// Java's execute() (ThreadPoolExecutor class documentation, "Queuing"):
//   J1 "If fewer than corePoolSize threads are running, the Executor always
//      prefers adding a new thread rather than queuing."
//   J2 "If corePoolSize or more threads are running, the Executor always
//      prefers queuing a request rather than adding a new thread."
//   J3 "If a request cannot be queued, a new thread is created unless this
//      would exceed maximumPoolSize, in which case, the task will be
//      rejected." (then the RejectedExecutionHandler decides)
//   J4 "New tasks submitted in method execute(Runnable) will be rejected
//      when the Executor has been shut down".
//   J5 a SynchronousQueue (keel's handoff) holds nothing: every offer fails.
// keel's own: K1 a broken pool refuses with BrokenThreadPool before anything
// else; K2 an idle worker takes the task before any other rule (Python's
// reuse of idle threads); K3 a task queued while no worker is alive gets one
// (EXEC-5), core_threads may be 0; K4 a thread start that failed sends the
// submission on to the next rule (Java's addWorker returning false); K5
// saturated with no worker alive is RejectedError(no_thread), whatever the
// policy; K6 block waits for room, and refuses once its wait timed out.
//
// Java's getTask() for a worker between tasks: it exits when the pool is
// stopping, or shut down with an empty queue; or when more than
// maximumPoolSize are alive, or its timed poll (allowCoreThreadTimeOut or
// more than corePoolSize alive) already timed out, provided it is not the
// last worker while work is queued. keel's differences, stated: a broken
// pool retires every worker (its queue was failed), and a worker whose
// keep-alive passed still takes a queued task rather than leaving it to
// another (the queue is checked first).
//
// Invariants: EXEC-3, EXEC-5, EXEC-6.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/decisions.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using keel::RejectPolicy;
using keel::detail::Admit;
using keel::detail::AdmitView;
using keel::detail::WorkerStep;
using keel::detail::WorkerView;

constexpr RejectPolicy kPolicies[] = {RejectPolicy::abort, RejectPolicy::caller_runs, RejectPolicy::discard,
                                      RejectPolicy::discard_oldest, RejectPolicy::block};

std::string show(const AdmitView& v) {
  return "broken=" + std::to_string(v.broken) + " shut_down=" + std::to_string(v.shut_down) +
         " live=" + std::to_string(v.live) + " idle=" + std::to_string(v.idle) + " core=" + std::to_string(v.core) +
         " max=" + std::to_string(v.max) + " queue_full=" + std::to_string(v.queue_full) +
         " policy=" + std::to_string(static_cast<int>(v.policy)) + " block_expired=" + std::to_string(v.block_expired) +
         " core_start_failed=" + std::to_string(v.core_start_failed) +
         " extra_start_failed=" + std::to_string(v.extra_start_failed);
}

// The rules above, each applied as the documentation states it.
Admit documented_admission(const AdmitView& v) {
  if (v.broken) return Admit::refuse_broken;       // K1
  if (v.shut_down) return Admit::refuse_shutdown;  // J4
  if (v.idle != 0) return Admit::hand_to_idle;     // K2
  const bool fewer_than_core = v.live < v.core;    // J1, unless that start failed (K4)
  if (fewer_than_core && !v.core_start_failed) return Admit::start_core;
  const bool can_queue = !v.queue_full;  // J2; J5 makes queue_full true for handoff
  if (can_queue) return v.live == 0 ? Admit::queue_and_start : Admit::queue;  // K3
  const bool would_exceed_max = v.live + 1 > v.max;                           // J3
  if (!would_exceed_max && !v.extra_start_failed) return Admit::start_extra;
  if (v.live == 0) return Admit::refuse_no_thread;  // K5
  // J3's rejection, by the handler the pool was given.
  static const std::map<RejectPolicy, Admit> handler = {{RejectPolicy::abort, Admit::refuse_saturated},
                                                        {RejectPolicy::caller_runs, Admit::run_in_caller},
                                                        {RejectPolicy::discard, Admit::discard_new},
                                                        {RejectPolicy::discard_oldest, Admit::discard_oldest}};
  if (v.policy == RejectPolicy::block) return v.block_expired ? Admit::refuse_timed_out : Admit::wait_for_room;  // K6
  return handler.at(v.policy);
}

// Six flags (as the bits of `bits`) x max 1..3 x core 0..max x live
// min_live..4 (live above max: max_threads was lowered while they were busy).
template <class F>
void every_pool(std::size_t min_live, F&& f) {
  for (int bits = 0; bits < 64; ++bits) {
    for (std::size_t max = 1; max <= 3; ++max) {
      for (std::size_t core = 0; core <= max; ++core) {
        for (std::size_t live = min_live; live <= 4; ++live) f(bits, max, core, live);
      }
    }
  }
}

template <class F>
void every_admit_view(F&& f) {
  every_pool(0, [&](int bits, std::size_t max, std::size_t core, std::size_t live) {
    for (std::size_t idle = 0; idle <= live; ++idle) {
      for (RejectPolicy policy : kPolicies) {
        AdmitView v;
        v.broken = bits & 1;
        v.shut_down = bits & 2;
        v.queue_full = bits & 4;
        v.block_expired = bits & 8;
        v.core_start_failed = bits & 16;
        v.extra_start_failed = bits & 32;
        v.live = live;
        v.idle = idle;
        v.core = core;
        v.max = max;
        v.policy = policy;
        f(v);
      }
    }
  });
}

TEST(ThreadPoolDecisions, AdmissionFollowsJavasRulesAndKeelsOwnInEveryState) {
  std::size_t states = 0;
  std::map<Admit, std::size_t> seen;
  every_admit_view([&](const AdmitView& v) {
    ++states;
    const Admit got = keel::detail::decide_admission(v);
    ++seen[got];
    ASSERT_EQ(static_cast<int>(got), static_cast<int>(documented_admission(v))) << show(v);
  });
  EXPECT_EQ(states, 64u * 9 * 15 * 5);  // flag sets x (core, max) pairs x (live, idle) pairs x policies
  // Every answer is reachable: none of the rules is dead.
  EXPECT_EQ(seen.size(), 14u);
}

// The invariants the pool relies on, stated apart from the rule list.
TEST(ThreadPoolDecisions, AdmissionNeverBreaksTheBoundsItServes) {
  every_admit_view([&](const AdmitView& v) {
    const Admit a = keel::detail::decide_admission(v);
    const bool starts = a == Admit::start_core || a == Admit::start_extra || a == Admit::queue_and_start;
    // EXEC-6: a thread starts only below max_threads.
    EXPECT_TRUE(!starts || v.live < v.max) << show(v);
    // EXEC-5: a task is queued only with a worker alive or one starting.
    EXPECT_TRUE(a != Admit::queue || v.live > 0) << show(v);
    EXPECT_TRUE((a != Admit::queue && a != Admit::queue_and_start) || !v.queue_full) << show(v);
    // EXEC-3: after shutdown every submission is refused with a reason, whatever the policy.
    EXPECT_TRUE(!v.shut_down || v.broken || a == Admit::refuse_shutdown) << show(v);
    // A policy acts only when saturated: queue full, no thread may or could start, a worker alive.
    const bool by_policy = a == Admit::refuse_saturated || a == Admit::run_in_caller || a == Admit::discard_new ||
                           a == Admit::discard_oldest || a == Admit::wait_for_room || a == Admit::refuse_timed_out;
    if (by_policy) {
      EXPECT_TRUE(v.queue_full && v.live > 0 && v.idle == 0) << show(v);
      EXPECT_TRUE(v.live >= v.max || v.extra_start_failed) << show(v);
    }
    // An idle worker is always used first (no thread starts and nothing queues past it).
    EXPECT_TRUE(v.broken || v.shut_down || v.idle == 0 || a == Admit::hand_to_idle) << show(v);
  });
}

WorkerStep documented_worker_step(const WorkerView& v) {
  // Java: runState >= STOP, or SHUTDOWN with an empty queue -> exit. keel: broken too.
  if (v.stopping || v.broken) return WorkerStep::retire;
  if (v.shut_down && v.queue_empty) return WorkerStep::retire;
  const bool timed = v.core_timeout || v.live > v.core;
  // Java: (wc > max || (timed && timedOut)) && (wc > 1 || queue empty) -> exit.
  // keel takes a queued task even after its keep-alive passed.
  if (v.live > v.max && (v.live > 1 || v.queue_empty)) return WorkerStep::retire;
  if (timed && v.idle_expired && v.queue_empty) return WorkerStep::retire;
  if (!v.queue_empty) return WorkerStep::take_task;
  return timed ? WorkerStep::wait_timed : WorkerStep::wait;
}

TEST(ThreadPoolDecisions, WorkerStepFollowsJavasGetTaskInEveryState) {
  std::size_t states = 0;
  std::map<WorkerStep, std::size_t> seen;
  every_pool(1, [&](int bits, std::size_t max, std::size_t core, std::size_t live) {  // the asking worker is alive
    WorkerView v;
    v.stopping = bits & 1;
    v.broken = bits & 2;
    v.shut_down = (bits & 4) || v.stopping;  // shutdown_now also shuts down
    v.core_timeout = bits & 8;
    v.queue_empty = bits & 16;
    v.idle_expired = bits & 32;
    v.live = live;
    v.core = core;
    v.max = max;
    ++states;
    const WorkerStep got = keel::detail::decide_worker_step(v);
    ++seen[got];
    ASSERT_EQ(static_cast<int>(got), static_cast<int>(documented_worker_step(v)))
        << "stopping=" << v.stopping << " broken=" << v.broken << " shut_down=" << v.shut_down
        << " core_timeout=" << v.core_timeout << " queue_empty=" << v.queue_empty << " idle_expired=" << v.idle_expired
        << " live=" << v.live << " core=" << v.core << " max=" << v.max;
    // EXEC-6: above max a worker never waits for more work.
    EXPECT_TRUE(v.live <= v.max || got == WorkerStep::retire);
  });
  EXPECT_EQ(states, 64u * 9 * 4);
  EXPECT_EQ(seen.size(), 4u);
}

// ---------------------------------------------------------------- one allocation per task

// operator new counted on request, on the asking thread only (the pool's
// workers allocate too). The test binary has no other replacement; the
// sanitizer builds keep their own allocator's checks.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEEL_TEST_COUNTS_NEW 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEL_TEST_COUNTS_NEW 0
#endif
#endif
#ifndef KEEL_TEST_COUNTS_NEW
#define KEEL_TEST_COUNTS_NEW 1
#endif

struct NewCount {
  bool on = false;
  std::size_t calls = 0;
  std::size_t bytes = 0;
  std::size_t size = 0;   // counted apart in `sized`, when not 0
  std::size_t sized = 0;  // calls for exactly `size` bytes
};
constinit thread_local NewCount t_new;

}  // namespace

#if KEEL_TEST_COUNTS_NEW
void* operator new(std::size_t n) {
  if (t_new.on) {
    ++t_new.calls;
    t_new.bytes += n;
    if (n == t_new.size) ++t_new.sized;
  }
  for (;;) {
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}
#endif

namespace {

TEST(ThreadPoolTask, OneSubmitIsOneAllocationOfTheTaskAndItsFutureState) {
  // The size the layout note of keel/executor/task.hpp promises, for an
  // 8-byte result and an 8-byte callable.
  auto probe = [x = std::int64_t{1}](keel::platform::StopToken) mutable { return x; };
  using Probe = keel::detail::TaskOf<std::int64_t, decltype(probe)>;
  static_assert(sizeof(Probe) <= 120, "a thread-pool task outgrew 120 bytes");
  if (!KEEL_TEST_COUNTS_NEW) GTEST_SKIP() << "operator new is the sanitizer's in this build";

  keel::ThreadPoolExecutor pool({.max_threads = 1});
  keel_future_test::Gate gate;
  auto opener = gate.open_at_exit();
  auto blocker = pool.submit([&gate] { gate.wait(); });
  // Warm: the worker exists and is busy, so every submission below only queues.
  ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().active == 1; }));
  constexpr std::size_t kTasks = 64;
  std::vector<keel::Future<std::int64_t>> futures;
  futures.reserve(kTasks);
  t_new = NewCount{.on = true};
  for (std::size_t i = 0; i < kTasks; ++i) {
    const std::int64_t v = static_cast<std::int64_t>(i);
    futures.push_back(pool.submit([v] { return v; }));
  }
  const NewCount counted = t_new;
  t_new = NewCount{};
  gate.open();
  for (std::size_t i = 0; i < kTasks; ++i) EXPECT_EQ(futures[i].result(), static_cast<std::int64_t>(i));
  // Each submission takes one block, from the task-block cache or, when the
  // cache is empty, from operator new: nothing else is allocated.
  const std::size_t block = keel::detail::task_block_size(keel::detail::task_block_class(sizeof(Probe)));
  EXPECT_EQ(block, sizeof(Probe));
  EXPECT_LE(counted.calls, kTasks);
  EXPECT_EQ(counted.bytes, counted.calls * block);
  // With the process's cache emptied and this thread's cache drained, every
  // submission is one call of operator new.
  keel::trim_task_cache();
  keel_future_test::Gate gate2;
  auto opener2 = gate2.open_at_exit();
  auto blocker2 = pool.submit([&gate2] { gate2.wait(); });
  ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().active == 1; }));
  std::vector<keel::Future<std::int64_t>> more;
  more.reserve(3 * kTasks);
  for (std::size_t i = 0; i < 2 * kTasks; ++i) {
    const std::int64_t v = static_cast<std::int64_t>(i);
    more.push_back(pool.submit([v] { return v; }));
  }
  t_new = NewCount{.on = true};
  for (std::size_t i = 0; i < kTasks; ++i) {
    const std::int64_t v = static_cast<std::int64_t>(i);
    more.push_back(pool.submit([v] { return v; }));
  }
  const NewCount fresh = t_new;
  t_new = NewCount{};
  gate2.open();
  EXPECT_EQ(fresh.calls, kTasks);
  EXPECT_EQ(fresh.bytes, kTasks * sizeof(Probe));
}

// The README's promise for map with chunksize > 1: each call's result stays
// encoded in its chunk's answer until read, so the submitting and reading
// thread allocates per chunk, not per call (a future per call would be at
// least one allocation each).
std::int64_t tpd_square(std::int64_t x) { return x * x; }
inline const auto tpd_square_t = keel::register_task("tpd.square", tpd_square);

TEST(ProcessPoolMapCost, AChunkedMapAllocatesPerChunkNotPerCall) {
  if (!KEEL_TEST_COUNTS_NEW) GTEST_SKIP() << "operator new is the sanitizer's in this build";
  keel::ProcessPool pool({.workers = 2});
  constexpr std::size_t kCalls = 4096, kChunk = 256;
  std::vector<std::int64_t> in(kCalls);
  for (std::size_t i = 0; i < kCalls; ++i) in[i] = static_cast<std::int64_t>(i);
  ASSERT_EQ(pool.map(tpd_square_t, in, {.chunksize = kChunk}).get().size(), kCalls);  // warm
  std::int64_t sum = 0, want = 0;
  for (std::int64_t x : in) want += x * x;
  t_new = NewCount{.on = true};
  for (std::int64_t r : pool.map(tpd_square_t, in, {.chunksize = kChunk})) sum += r;
  const NewCount counted = t_new;
  t_new = NewCount{};
  EXPECT_EQ(sum, want);
  // 16 chunks: each its call record, state, arguments and frame, a few
  // allocations apiece; a future per call would be 4096 more.
  EXPECT_LT(counted.calls, kCalls / 16) << counted.calls << " allocations for " << kCalls << " calls";
}

// The README's promise for submit: a process-pool call and its future's
// state are one task block (keel/process_pool/detail/calls.hpp), and a
// payload of up to 96 bytes (the task's name and its encoded arguments) is
// written into that block, so a submit allocates the block and nothing
// else: from the task-block cache, or from operator new when the cache is
// empty, as here.
TEST(ProcessPoolSubmitCost, ASmallSubmitIsOneTaskBlockAndNothingElse) {
  if (!KEEL_TEST_COUNTS_NEW) GTEST_SKIP() << "operator new is the sanitizer's in this build";
  keel::ProcessPool pool({.workers = 1});
  ASSERT_EQ(pool.submit(tpd_square_t, std::int64_t{3}).result(), 9);  // warm: the worker is up
  const std::size_t block =
      keel::detail::task_block_size(keel::detail::task_block_class(sizeof(keel::detail::CallBlock<std::int64_t>)));
  constexpr std::size_t kTasks = 64;
  std::vector<keel::Future<std::int64_t>> futures;
  futures.reserve(3 * kTasks);
  // The process's cache emptied and this thread's drained (the futures
  // kept keep their blocks): every block below is a fresh one.
  keel::trim_task_cache();
  for (std::size_t i = 0; i < 2 * kTasks; ++i) futures.push_back(pool.submit(tpd_square_t, std::int64_t{1}));
  t_new = NewCount{.on = true, .size = block};
  for (std::size_t i = 0; i < kTasks; ++i) futures.push_back(pool.submit(tpd_square_t, static_cast<std::int64_t>(i)));
  const NewCount counted = t_new;
  t_new = NewCount{};
  for (std::size_t i = 0; i < kTasks; ++i) {
    EXPECT_EQ(futures[2 * kTasks + i].result(), static_cast<std::int64_t>(i * i));
  }
  EXPECT_EQ(counted.sized, kTasks);
  // Nothing else: the edge's inbox holds every command of this test without
  // growing (pool::inbox_reserve), however the submissions met the
  // supervisor's turns; a payload or a state allocated apart would be
  // kTasks more each.
  EXPECT_EQ(counted.calls, counted.sized) << counted.calls << " allocations for " << kTasks << " submits";
}

}  // namespace
