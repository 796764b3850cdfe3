// keel::ThreadPoolExecutor under racing threads, with checked post-conditions:
// submissions racing shutdown, cancel racing start, keep-alive retirement
// racing submissions, saturation, shutdown_now, a breaking pool, callbacks
// and statistics sampled while the pool runs. Each test names the invariants
// (proofs/INVARIANTS.md) whose post-conditions it checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../future/future_test_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/sync/event.hpp"

namespace {

using namespace std::chrono_literals;
using keel::FutureStatus;
using keel::QueueKind;
using keel::RejectedError;
using keel::RejectPolicy;
using keel_future_test::holds;
using keel_future_test::Opts;
using keel_test::hang_limit;

// Like keel_test::eventually, but yields instead of sleeping between polls,
// so that a racing action starts as soon as the condition holds.
template <class Pred>
bool spin_until(Pred pred) {
  const auto end = std::chrono::steady_clock::now() + hang_limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::yield();
  }
  return true;
}

// What one submitting thread saw.
struct Submitted {
  std::vector<keel::Future<int>> futures;
  int rejected_shutdown = 0;
  int rejected_other = 0;
  int broken = 0;
};

// Submits tasks until the pool refuses one because it shut down (or
// hang_limit passes, which fails the test).
void submit_until_shutdown(keel::ThreadPoolExecutor& pool, std::atomic<int>& ran, Submitted& out) {
  const auto end = std::chrono::steady_clock::now() + hang_limit;
  for (int i = 0;; ++i) {
    try {
      out.futures.push_back(pool.submit([&ran, i] {
        ran.fetch_add(1);
        if (i % 16 == 0) std::this_thread::yield();
        return i;
      }));
    } catch (const RejectedError& e) {
      if (e.reason() == RejectedError::Reason::shutdown) {
        ++out.rejected_shutdown;
        return;
      }
      ++out.rejected_other;
    }
    if (std::chrono::steady_clock::now() > end) {
      ADD_FAILURE() << "submissions were never refused after shutdown";
      return;
    }
  }
}

// Many threads submit while the main thread shuts the pool down; checks
// EXEC-1 (one final state each), EXEC-3 (accepted and completed, or refused
// with RejectedError) and EXEC-4 (shutdown(wait) returned after every
// accepted, not cancelled task finished; cancel_futures cancelled only tasks
// that never ran).
void race_submitters_with_shutdown(const keel::ThreadPoolOptions& options, keel::ShutdownOptions how) {
  const int rounds = keel_test::scaled(6, 2);
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> ran{0};
    keel::ThreadPoolExecutor pool(options);
    constexpr int kSubmitters = 4;
    std::vector<Submitted> seen(kSubmitters);
    {
      keel_test::Threads submitters;
      for (int t = 0; t < kSubmitters; ++t) {
        submitters.spawn(
            [&pool, &ran, &out = seen[static_cast<std::size_t>(t)]] { submit_until_shutdown(pool, ran, out); });
      }
      ASSERT_TRUE(spin_until([&] { return pool.stats().submitted >= 40; }));
      pool.shutdown(how);
      if (!how.wait) {
        ASSERT_TRUE(pool.await_termination(hang_limit));
      }
      submitters.join();
    }
    ASSERT_TRUE(pool.is_terminated());
    std::size_t total = 0;
    int finished = 0;
    int cancelled = 0;
    int refused = 0;
    int saturated = 0;
    for (const auto& s : seen) {
      EXPECT_EQ(s.rejected_shutdown, 1);
      refused += s.rejected_shutdown;
      saturated += s.rejected_other;
      total += s.futures.size();
      for (const auto& f : s.futures) {
        ASSERT_TRUE(f.done()) << "an accepted task was not final when shutdown(wait) returned";
        if (f.cancelled()) {
          ++cancelled;
        } else {
          ++finished;
          EXPECT_EQ(f.exception(), nullptr);
        }
      }
    }
    if (!how.cancel_futures) {
      EXPECT_EQ(cancelled, 0);
    }
    EXPECT_EQ(ran.load(), finished);  // every finished task ran once; no cancelled one ran
    const auto st = pool.stats();
    EXPECT_EQ(st.threads, 0u);
    EXPECT_EQ(st.queued, 0u);
    EXPECT_EQ(st.submitted, total);
    EXPECT_EQ(st.rejected, static_cast<std::uint64_t>(refused + saturated));
    EXPECT_LE(st.largest, pool.max_threads());
  }
}

}  // namespace

TEST(ExecutorStress, SubmittersRacingShutdownFifo) { race_submitters_with_shutdown(Opts().max(3), {.wait = true}); }

TEST(ExecutorStress, SubmittersRacingShutdownBoundedAbort) {
  race_submitters_with_shutdown(Opts().max(3).core(1).queue(QueueKind::fifo, 4), {.wait = true});
}

TEST(ExecutorStress, SubmittersRacingShutdownHandoffBlock) {
  race_submitters_with_shutdown(Opts().max(2).queue(QueueKind::handoff).reject(RejectPolicy::block), {.wait = true});
}

TEST(ExecutorStress, SubmittersRacingShutdownWithCancelFutures) {
  race_submitters_with_shutdown(Opts().max(2), {.wait = true, .cancel_futures = true});
}

TEST(ExecutorStress, SubmittersRacingShutdownWithoutWaitLifo) {
  race_submitters_with_shutdown(Opts().max(3).queue(QueueKind::lifo), {.wait = false});
}

TEST(ExecutorStress, CancelRacingStartRunsXorCancels) {
  // EXEC-2: each task runs at most once, a cancelled one never, and when
  // cancel() races the worker starting it exactly one of them wins.
  const int n = keel_test::scaled(3000, 300);
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
  std::vector<keel::Future<void>> fs;
  std::vector<char> cancel_won(static_cast<std::size_t>(n), 0);
  fs.reserve(static_cast<std::size_t>(n));
  {
    keel::ThreadPoolExecutor pool(Opts().max(2));
    for (int i = 0; i < n; ++i) {
      fs.push_back(pool.submit([&runs, i] { runs[static_cast<std::size_t>(i)].fetch_add(1); }));
      if (i % 3 == 1) std::this_thread::yield();
      // Cancel this one or the previous one, so both fresh and nearly started tasks are hit.
      const int victim = (i % 2 == 0) ? i : i - 1;
      if (victim >= 0 && !cancel_won[static_cast<std::size_t>(victim)]) {
        cancel_won[static_cast<std::size_t>(victim)] = fs[static_cast<std::size_t>(victim)].cancel() ? 1 : 0;
      }
    }
  }  // the destructor waits for everything
  int cancelled = 0;
  for (int i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    ASSERT_TRUE(fs[k].done());
    const int r = runs[k].load();
    ASSERT_LE(r, 1) << "task " << i << " ran twice";
    ASSERT_EQ(fs[k].cancelled(), cancel_won[k] != 0) << "task " << i;
    ASSERT_EQ(r == 1, !fs[k].cancelled()) << "task " << i << ": ran xor cancelled";
    cancelled += cancel_won[k];
  }
  EXPECT_GT(cancelled, 0);
}

TEST(ExecutorStress, CancelFromAnotherThreadRacingStartRunsXorCancels) {
  // EXEC-2, with the cancelling thread apart from the submitting one.
  const int n = keel_test::scaled(2000, 200);
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
  std::vector<keel::Future<void>> fs(static_cast<std::size_t>(n));
  std::vector<char> cancel_won(static_cast<std::size_t>(n), 0);
  std::atomic<int> published{0};
  {
    keel::ThreadPoolExecutor pool(Opts().max(3));
    // Warm, idle workers: each task is handed to one at once, so the worker
    // starting it really races the canceller.
    ASSERT_EQ(pool.prestart_core_threads(), 3u);
    ASSERT_TRUE(keel_test::eventually([&] { return pool.stats().idle == 3; }));
    std::thread canceller([&] {
      for (int i = 0; i < n; ++i) {
        // Cancel as soon as the task is published: the worker it was handed
        // to is waking up to start it at that very moment.
        while (published.load(std::memory_order_acquire) <= i) std::this_thread::yield();
        cancel_won[static_cast<std::size_t>(i)] = fs[static_cast<std::size_t>(i)].cancel() ? 1 : 0;
      }
    });
    for (int i = 0; i < n; ++i) {
      fs[static_cast<std::size_t>(i)] = pool.submit([&runs, i] { runs[static_cast<std::size_t>(i)].fetch_add(1); });
      published.store(i + 1, std::memory_order_release);
      if (i % 2 == 1) std::this_thread::yield();
    }
    canceller.join();
  }
  for (int i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    ASSERT_TRUE(fs[k].done());
    ASSERT_LE(runs[k].load(), 1);
    ASSERT_EQ(runs[k].load() == 1, cancel_won[k] == 0) << "task " << i << ": ran xor cancelled";
  }
}

namespace {

// Submitters with small pauses against workers that retire after
// `keep_alive`: every future must complete (EXEC-5: no stranded work).
void retirement_racing_submissions(const keel::ThreadPoolOptions& options) {
  std::atomic<int> ran{0};
  keel::ThreadPoolExecutor pool(options);
  constexpr int kSubmitters = 3;
  const int per = keel_test::scaled(150, 30);
  std::vector<std::vector<keel::Future<int>>> fs(kSubmitters);
  std::atomic<std::size_t> max_threads_seen{0};
  {
    keel_test::Threads submitters;
    for (int t = 0; t < kSubmitters; ++t) {
      submitters.spawn([&, t] {
        auto& mine = fs[static_cast<std::size_t>(t)];
        for (int i = 0; i < per; ++i) {
          mine.push_back(pool.submit([&ran, i] {
            ran.fetch_add(1);
            return i;
          }));
          // Pauses of 0 to ~300 us let workers reach (and race) their keep-alive.
          if ((i + t) % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(((i * 37 + t) % 7) * 50));
          const std::size_t th = pool.stats().threads;
          std::size_t prev = max_threads_seen.load();
          while (th > prev && !max_threads_seen.compare_exchange_weak(prev, th)) {
          }
        }
      });
    }
  }
  for (auto& mine : fs) {
    for (auto& f : mine) ASSERT_TRUE(f.wait_for(hang_limit)) << "a task was stranded";
  }
  EXPECT_EQ(ran.load(), kSubmitters * per);
  EXPECT_LE(max_threads_seen.load(), pool.max_threads());
  pool.shutdown();
  EXPECT_EQ(pool.stats().completed, static_cast<std::uint64_t>(kSubmitters * per));
}

}  // namespace

TEST(ExecutorStress, KeepAliveZeroRetirementRacingSubmissionsStrandsNothing) {
  retirement_racing_submissions(Opts().max(2).core(0).keep_alive(0ns));
  retirement_racing_submissions(Opts().max(2).keep_alive(0ns).core_timeout());
}

TEST(ExecutorStress, KeepAliveOneMsRetirementRacingSubmissionsStrandsNothing) {
  retirement_racing_submissions(Opts().max(3).core(1).keep_alive(1ms).core_timeout());
  retirement_racing_submissions(
      Opts().max(2).core(0).keep_alive(1ms).queue(QueueKind::handoff).reject(RejectPolicy::block));
}

TEST(ExecutorStress, LiveThreadsNeverExceedMaxThreads) {
  // EXEC-6: the number of workers running a task at once, and the number of
  // live workers in any snapshot, never pass max_threads, under saturation
  // with threads beyond core, caller-runs and short keep-alive.
  constexpr std::size_t kMax = 3;
  std::atomic<int> in_workers{0};
  std::atomic<int> peak{0};
  std::atomic<bool> over{false};
  keel::ThreadPoolExecutor pool(
      Opts()
          .max(kMax)
          .core(1)
          .keep_alive(200us)
          .queue(QueueKind::fifo, 2)
          .reject(RejectPolicy::caller_runs)
          .before([&](const keel::TaskInfo&) {
            const int now = in_workers.fetch_add(1) + 1;
            int p = peak.load();
            while (now > p && !peak.compare_exchange_weak(p, now)) {
            }
          })
          .after([&](const keel::TaskInfo&, std::exception_ptr) { in_workers.fetch_sub(1); }));
  std::atomic<bool> stop{false};
  std::thread sampler([&] {
    while (!stop.load()) {
      const auto s = pool.stats();
      if (s.threads > kMax || s.largest > kMax || s.idle + s.active > s.threads) over.store(true);
      std::this_thread::yield();
    }
  });
  {
    keel_test::Threads submitters;
    for (int t = 0; t < 3; ++t) {
      submitters.spawn([&] {
        for (int i = 0; i < keel_test::scaled(300, 40); ++i) {
          pool.submit([i] {
                if (i % 5 == 0) std::this_thread::sleep_for(50us);
              })
              .wait_for(i % 7 == 0 ? hang_limit : 0s);
        }
      });
    }
  }
  pool.shutdown();
  stop.store(true);
  sampler.join();
  EXPECT_FALSE(over.load()) << "a snapshot had more than max_threads threads, or idle + active > threads";
  EXPECT_LE(peak.load(), static_cast<int>(kMax));
  EXPECT_GE(peak.load(), 1);
  EXPECT_LE(pool.stats().largest, kMax);
}

TEST(ExecutorStress, StatisticsSnapshotsStayConsistent) {
  // EXEC-8: in every snapshot idle + active <= threads <= largest <= max and
  // completed + queued + active <= submitted; the counters never go back;
  // at the end submitted == completed == tasks accepted, rejected == refusals.
  constexpr std::size_t kMax = 3;
  keel::ThreadPoolExecutor pool(Opts().max(kMax).core(1).keep_alive(500us).queue(QueueKind::fifo, 3));
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread sampler([&] {
    keel::ThreadPoolStats prev{};
    while (!stop.load()) {
      const auto s = pool.stats();
      const bool ok = s.idle + s.active <= s.threads && s.threads <= s.largest && s.largest <= kMax &&
                      s.completed + s.queued + s.active <= s.submitted && s.submitted >= prev.submitted &&
                      s.completed >= prev.completed && s.rejected >= prev.rejected && s.largest >= prev.largest;
      if (!ok) bad.fetch_add(1);
      prev = s;
      std::this_thread::yield();
    }
  });
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<int> ran{0};
  {
    keel_test::Threads submitters;
    for (int t = 0; t < 3; ++t) {
      submitters.spawn([&] {
        std::vector<keel::Future<void>> mine;
        for (int i = 0; i < keel_test::scaled(300, 40); ++i) {
          try {
            mine.push_back(pool.submit([&ran] { ran.fetch_add(1); }));
            accepted.fetch_add(1);
          } catch (const RejectedError&) {
            refused.fetch_add(1);
          }
          if (i % 50 == 0) std::this_thread::sleep_for(1ms);
        }
        for (auto& f : mine) EXPECT_TRUE(f.wait_for(hang_limit));
      });
    }
  }
  pool.shutdown();
  stop.store(true);
  sampler.join();
  EXPECT_EQ(bad.load(), 0) << "inconsistent statistics snapshots";
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, accepted.load());
  EXPECT_EQ(s.completed, accepted.load());
  EXPECT_EQ(s.rejected, refused.load());
  EXPECT_EQ(static_cast<std::uint64_t>(ran.load()), accepted.load());
  EXPECT_EQ(s.threads + s.idle + s.active + s.queued, 0u);
}

TEST(ExecutorStress, CallbacksAddedWhileTasksCompleteRunExactlyOnce) {
  // EXEC-7: callbacks added from two threads while the tasks complete on the
  // workers each run exactly once.
  const int n = keel_test::scaled(600, 60);
  std::vector<std::atomic<int>> calls(static_cast<std::size_t>(n));
  std::vector<keel::Future<int>> fs(static_cast<std::size_t>(n));
  std::atomic<int> published{0};
  {
    keel::ThreadPoolExecutor pool(Opts().max(3));
    ASSERT_EQ(pool.prestart_core_threads(), 3u);
    std::thread other([&] {
      for (int i = 0; i < n; ++i) {
        while (published.load(std::memory_order_acquire) <= i) std::this_thread::yield();
        auto f = fs[static_cast<std::size_t>(i)];
        f.add_done_callback([&calls, i](const keel::Future<int>&) { calls[static_cast<std::size_t>(i)].fetch_add(1); });
      }
    });
    for (int i = 0; i < n; ++i) {
      auto f = pool.submit([i] { return i; });
      f.add_done_callback([&calls, i](const keel::Future<int>& done) {
        EXPECT_EQ(done.result(), i);
        calls[static_cast<std::size_t>(i)].fetch_add(1);
      });
      fs[static_cast<std::size_t>(i)] = f;
      published.store(i + 1, std::memory_order_release);
      if (i % 3 == 0) std::this_thread::yield();
    }
    other.join();
  }
  for (int i = 0; i < n; ++i) ASSERT_EQ(calls[static_cast<std::size_t>(i)].load(), 2) << "future " << i;
}

TEST(ExecutorStress, ShutdownNowRacingSubmittersLeavesEveryFutureFinal) {
  // EXEC-1/EXEC-3 with shutdown_now: accepted tasks either ran, or were handed
  // back (run here or dropped, which cancels them); refused submissions threw.
  for (int round = 0; round < keel_test::scaled(6, 2); ++round) {
    std::atomic<int> ran{0};
    keel::ThreadPoolExecutor pool(Opts().max(2));
    constexpr int kSubmitters = 3;
    std::vector<Submitted> seen(kSubmitters);
    std::vector<keel::PendingTask> handed_back;
    {
      keel_test::Threads submitters;
      for (int t = 0; t < kSubmitters; ++t) {
        submitters.spawn(
            [&pool, &ran, &out = seen[static_cast<std::size_t>(t)]] { submit_until_shutdown(pool, ran, out); });
      }
      ASSERT_TRUE(spin_until([&] { return pool.stats().submitted >= 60; }));
      handed_back = pool.shutdown_now();
      submitters.join();
    }
    ASSERT_TRUE(pool.await_termination(hang_limit));
    int run_here = 0;
    for (std::size_t i = 0; i < handed_back.size(); ++i) {
      if (i % 2 == 0 && handed_back[i].run()) ++run_here;
    }
    handed_back.clear();  // the rest are cancelled
    int finished = 0;
    for (const auto& s : seen) {
      EXPECT_EQ(s.rejected_shutdown, 1);
      for (const auto& f : s.futures) {
        ASSERT_TRUE(f.done());
        if (!f.cancelled()) ++finished;
      }
    }
    EXPECT_EQ(ran.load(), finished);
    EXPECT_EQ(pool.stats().threads, 0u);
    (void)run_here;
  }
}

TEST(ExecutorStress, BlockedSubmittersRacingShutdownAreAcceptedOrRefused) {
  // EXEC-3 under the block policy: a submitter waiting for room when the pool
  // shuts down is refused; one that got in before is completed.
  race_submitters_with_shutdown(Opts().max(1).queue(QueueKind::fifo, 1).reject(RejectPolicy::block), {.wait = true});
}

TEST(ExecutorStress, DiscardOldestUnderContentionLeavesEveryFutureFinal) {
  // EXEC-1: under discard_oldest, every returned future ends finished (it
  // ran) or cancelled (it was a victim, or discarded), never pending.
  std::atomic<int> ran{0};
  std::vector<std::vector<keel::Future<int>>> fs(3);
  {
    keel::ThreadPoolExecutor pool(Opts().max(2).queue(QueueKind::fifo, 2).reject(RejectPolicy::discard_oldest));
    keel_test::Threads submitters;
    for (int t = 0; t < 3; ++t) {
      submitters.spawn([&, t] {
        for (int i = 0; i < keel_test::scaled(300, 40); ++i) {
          fs[static_cast<std::size_t>(t)].push_back(pool.submit([&ran, i] {
            ran.fetch_add(1);
            return i;
          }));
        }
      });
    }
    submitters.join();
    pool.shutdown();
    int finished = 0;
    int cancelled = 0;
    for (auto& mine : fs) {
      for (auto& f : mine) {
        ASSERT_TRUE(f.done());
        (f.cancelled() ? cancelled : finished) += 1;
      }
    }
    EXPECT_EQ(ran.load(), finished);
    EXPECT_EQ(pool.stats().rejected, static_cast<std::uint64_t>(cancelled));
  }
}

TEST(ExecutorStress, BreakingPoolRacingSubmittersFailsEverythingItDoesNotRun) {
  // EXEC-1/EXEC-5 when an initializer fails while submissions race: each
  // accepted task either ran or failed with BrokenThreadPool; later submits
  // throw BrokenThreadPool; nothing hangs.
  for (int round = 0; round < keel_test::scaled(6, 2); ++round) {
    std::atomic<int> inits{0};
    std::atomic<int> ran{0};
    keel::ThreadPoolExecutor pool(Opts().max(4).init([&] {
      if (inits.fetch_add(1) == 2) throw std::runtime_error("third worker cannot start");
    }));
    std::vector<Submitted> seen(3);
    {
      keel_test::Threads submitters;
      for (int t = 0; t < 3; ++t) {
        submitters.spawn([&, t] {
          auto& out = seen[static_cast<std::size_t>(t)];
          for (int i = 0; i < 200; ++i) {
            try {
              out.futures.push_back(pool.submit([&ran] {
                ran.fetch_add(1);
                std::this_thread::sleep_for(20us);
                return 0;
              }));
            } catch (const keel::BrokenThreadPool&) {
              ++out.broken;
            }
          }
        });
      }
    }
    int finished_ok = 0;
    for (auto& s : seen) {
      for (auto& f : s.futures) {
        ASSERT_TRUE(f.wait_for(hang_limit)) << "a task of the broken pool never completed";
        ASSERT_FALSE(f.cancelled());
        if (f.exception()) {
          EXPECT_TRUE(holds<keel::BrokenThreadPool>(f.exception()));
        } else {
          ++finished_ok;
        }
      }
    }
    EXPECT_EQ(ran.load(), finished_ok);
    if (inits.load() >= 3) {
      EXPECT_TRUE(pool.is_broken());
      EXPECT_TRUE(pool.await_termination(hang_limit));
    }
  }
}

// EXEC-10: what a future says is visible to every later call on its pool.
// Each future's done callback runs where the future is resolved (the worker
// whose initializer failed) the moment it says broken, and submits there;
// the test thread does the same after waiting. Every such submit must throw
// BrokenThreadPool: the break is published before the first future says so.
TEST(ExecutorStress, AFutureThatSaysBrokenMeansEveryLaterSubmitSaysSo) {
  for (int round = 0; round < keel_test::scaled(200, 20); ++round) {
    keel::ThreadPoolExecutor pool(Opts().max(2).init([] { throw std::runtime_error("initializer failed"); }));
    std::atomic<int> told_broken{0}, accepted_after{0}, refused_after{0};
    auto submit_after = [&] {
      try {
        (void)pool.submit([] { return 0; });
        accepted_after.fetch_add(1);
      } catch (const keel::BrokenThreadPool&) {
        refused_after.fetch_add(1);
      }
    };
    std::vector<keel::Future<int>> fs;
    for (int i = 0; i < 4; ++i) {
      try {
        fs.push_back(pool.submit([] { return 1; }));
      } catch (const keel::BrokenThreadPool&) {
        break;  // the pool already broke: refused, as it must be
      }
      fs.back().add_done_callback([&](const keel::Future<int>& f) {
        if (!holds<keel::BrokenThreadPool>(f.exception())) return;
        told_broken.fetch_add(1);
        submit_after();
      });
    }
    for (auto& f : fs) {
      ASSERT_TRUE(f.wait_for(hang_limit));
      ASSERT_TRUE(holds<keel::BrokenThreadPool>(f.exception()));
      submit_after();
    }
    ASSERT_TRUE(pool.await_termination(hang_limit));
    EXPECT_EQ(told_broken.load(), static_cast<int>(fs.size()));
    EXPECT_EQ(accepted_after.load(), 0) << "round " << round << ": a submit after a future said broken was accepted";
    EXPECT_EQ(refused_after.load(), 2 * static_cast<int>(fs.size()));
  }
}

// EXEC-10: a future cancelled by shutdown(cancel_futures) means every later
// submit is refused with RejectedError(shutdown). The cancelled futures'
// callbacks run on the thread that shuts down, in shutdown(), and submit
// there; the test thread submits after seeing each one cancelled.
TEST(ExecutorStress, AFutureCancelledByShutdownMeansEveryLaterSubmitIsRefused) {
  for (int round = 0; round < keel_test::scaled(200, 20); ++round) {
    keel::Event gate;
    keel::ThreadPoolExecutor pool(Opts().max(1));
    keel::Future<int> first = pool.submit([&] {
      gate.wait();
      return 0;
    });
    std::atomic<int> cancelled{0}, accepted_after{0}, refused_after{0};
    auto submit_after = [&] {
      try {
        (void)pool.submit([] { return 0; });
        accepted_after.fetch_add(1);
      } catch (const RejectedError& e) {
        if (e.reason() == RejectedError::Reason::shutdown) refused_after.fetch_add(1);
      }
    };
    std::vector<keel::Future<int>> queued;
    for (int i = 0; i < 3; ++i) {
      queued.push_back(pool.submit([] { return 1; }));
      queued.back().add_done_callback([&](const keel::Future<int>& f) {
        if (!f.cancelled()) return;
        cancelled.fetch_add(1);
        submit_after();
      });
    }
    std::thread closer([&] {
      pool.shutdown({.wait = false, .cancel_futures = true});
      gate.set();
    });
    for (auto& f : queued) {
      ASSERT_TRUE(f.wait_for(hang_limit));
      ASSERT_TRUE(f.cancelled());
      submit_after();
    }
    closer.join();
    ASSERT_TRUE(pool.await_termination(hang_limit));
    EXPECT_EQ(first.result(), 0);
    EXPECT_EQ(cancelled.load(), 3);
    EXPECT_EQ(accepted_after.load(), 0) << "round " << round << ": a submit after a cancelled future was accepted";
    EXPECT_EQ(refused_after.load(), 6);
  }
}
