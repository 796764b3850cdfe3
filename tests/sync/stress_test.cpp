// Multi-thread stress tests with checked post-conditions. Sizes scale with
// KEEL_TEST_SCALE (and shrink under sanitizers); every wait that could hang on
// a bug is bounded by keel_test::hang_limit.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/sync/barrier.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/recursive_mutex.hpp"
#include "keel/sync/semaphore.hpp"

// Locks taken and released inside lambdas and through Condition forwarding.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;
using keel_test::scaled;
using keel_test::Threads;

namespace {

constexpr int threads_n = 4;

// Plain (non-atomic) state guarded by the lock under test: a lost update or an
// overlap shows as a wrong count, and TSan sees any missing happens-before.
struct Guarded {
  long counter = 0;
  int inside = 0;
  long overlaps = 0;
  void enter() {
    if (++inside != 1) ++overlaps;
    ++counter;
    --inside;
  }
};

}  // namespace

TEST(Stress, MutexCounterWithMixedAcquireForms) {
  keel::Mutex m;
  Guarded g;
  const int rounds = scaled(20000, 500);
  std::atomic<long> timed_out{0};
  Threads ts;
  for (int t = 0; t < threads_n; ++t) {
    ts.spawn([&, t] {
      for (int i = 0; i < rounds; ++i) {
        switch ((i + t) % 4) {
          case 0:
            m.lock();
            break;
          case 1:
            while (!m.try_lock()) std::this_thread::yield();
            break;
          case 2:
            while (!m.try_lock_for(std::chrono::microseconds(50))) timed_out.fetch_add(1);
            break;
          default:
            while (!m.try_lock_until(std::chrono::steady_clock::now() + 100us)) timed_out.fetch_add(1);
            break;
        }
        g.enter();
        m.unlock();
      }
    });
  }
  ts.join();
  EXPECT_EQ(g.counter, static_cast<long>(threads_n) * rounds);
  EXPECT_EQ(g.overlaps, 0);
  EXPECT_FALSE(m.is_locked());
  EXPECT_THROW(m.unlock(), keel::LockNotHeldError);  // not left locked or half-locked
}

TEST(Stress, RecursiveMutexCounterAtVaryingDepths) {
  keel::RecursiveMutex m;
  Guarded g;
  const int rounds = scaled(10000, 300);
  std::atomic<int> depth_errors{0};
  Threads ts;
  for (int t = 0; t < threads_n; ++t) {
    ts.spawn([&, t] {
      for (int i = 0; i < rounds; ++i) {
        const std::uint32_t depth = 1 + static_cast<std::uint32_t>((i + t) % 3);
        for (std::uint32_t d = 0; d < depth; ++d) {
          if (d % 2 == 0) {
            m.lock();
          } else {
            while (!m.try_lock_for(100us)) {
            }
          }
        }
        if (m.depth() != depth) depth_errors.fetch_add(1);
        g.enter();
        for (std::uint32_t d = 0; d < depth; ++d) m.unlock();
        if (m.is_owned()) depth_errors.fetch_add(1);
      }
    });
  }
  ts.join();
  EXPECT_EQ(g.counter, static_cast<long>(threads_n) * rounds);
  EXPECT_EQ(g.overlaps, 0);
  EXPECT_EQ(depth_errors.load(), 0);
}

namespace {

// A bounded queue with two Conditions over one lock, as Python's queue.Queue.
template <class Lock>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t cap) : cap_(cap) {}

  // Producers: blocks while full; uses a short timed wait half the time to
  // exercise the timeout/notify race.
  void put(int v, bool timed) {
    std::unique_lock lk(lock_);
    while (q_.size() >= cap_) {
      if (timed) {
        not_full_.wait_for(std::chrono::microseconds(200));
      } else {
        not_full_.wait();
      }
    }
    q_.push_back(v);
    not_empty_.notify();
  }
  // Consumers: false once closed and drained.
  bool get(int& out, bool timed) {
    std::unique_lock lk(lock_);
    while (q_.empty() && !closed_) {
      if (timed) {
        not_empty_.wait_for(std::chrono::microseconds(200));
      } else {
        not_empty_.wait();
      }
    }
    if (q_.empty()) return false;
    out = q_.front();
    q_.pop_front();
    not_full_.notify();
    return true;
  }
  void close() {
    std::unique_lock lk(lock_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  const std::size_t cap_;
  Lock lock_;
  keel::Condition not_empty_{lock_};
  keel::Condition not_full_{lock_};
  std::deque<int> q_;
  bool closed_ = false;
};

template <class Lock>
void producer_consumer(bool timed) {
  constexpr int producers = 3;
  constexpr int consumers = 3;
  const int per_producer = scaled(4000, 200);
  BoundedQueue<Lock> q(4);
  std::vector<std::atomic<int>> seen(static_cast<std::size_t>(producers * per_producer));
  Threads ps;
  Threads cs;
  for (int c = 0; c < consumers; ++c) {
    cs.spawn([&, c] {
      int v = 0;
      while (q.get(v, timed && c % 2 == 0)) seen[static_cast<std::size_t>(v)].fetch_add(1);
    });
  }
  for (int p = 0; p < producers; ++p) {
    ps.spawn([&, p] {
      for (int i = 0; i < per_producer; ++i) q.put(p * per_producer + i, timed && p % 2 == 1);
    });
  }
  ps.join();
  q.close();
  cs.join();
  long missing = 0;
  long duplicated = 0;
  for (auto& s : seen) {
    const int n = s.load();
    if (n == 0) ++missing;
    if (n > 1) ++duplicated;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
}

}  // namespace

TEST(Stress, ProducerConsumerOverMutexEveryItemOnce) { producer_consumer<keel::Mutex>(false); }
TEST(Stress, ProducerConsumerOverMutexWithTimedWaits) { producer_consumer<keel::Mutex>(true); }
TEST(Stress, ProducerConsumerOverRecursiveMutexWithTimedWaits) { producer_consumer<keel::RecursiveMutex>(true); }

TEST(Stress, ConditionNotifyOneHandsEachTokenToOneWaiter) {
  // Tokens are produced one at a time with notify(1) while waiters with short
  // timeouts race the notifications: every token is taken exactly once, and
  // no waiter is left queued at the end.
  keel::Mutex m;
  keel::Condition c(m);
  int tokens = 0;
  long taken = 0;
  bool done = false;
  const int total = scaled(5000, 200);
  Threads ts;
  for (int t = 0; t < threads_n; ++t) {
    ts.spawn([&] {
      std::unique_lock lk(m);
      for (;;) {
        while (tokens == 0 && !done) c.wait_for(std::chrono::microseconds(100 + 50 * (taken % 7)));
        if (tokens == 0 && done) return;
        --tokens;
        ++taken;
      }
    });
  }
  for (int i = 0; i < total; ++i) {
    std::unique_lock lk(m);
    ++tokens;
    c.notify(1);
  }
  {
    std::unique_lock lk(m);
    done = true;
    c.notify_all();
  }
  ts.join();
  EXPECT_EQ(taken, total);
  EXPECT_EQ(tokens, 0);
  std::unique_lock lk(m);
  EXPECT_EQ(c.waiting(), 0u);
}

TEST(Stress, NotifyRacingATimeoutIsDeliveredNotLost) {
  // A waiter with a short timeout races a notifier that, holding the lock,
  // notifies only if it still sees the waiter queued. Contract: wait returns
  // true exactly when a notify chose it, even if its deadline passed at the
  // same moment (no lost and no spurious notification).
  keel::Mutex m;
  keel::Condition c(m);
  const int rounds = scaled(400, 40);
  int mismatches = 0;
  int notified_rounds = 0;
  for (int r = 0; r < rounds; ++r) {
    std::atomic<int> result{-1};
    std::thread w([&] {
      std::unique_lock lk(m);
      result.store(c.wait_for(std::chrono::microseconds(200)) ? 1 : 0);
    });
    std::this_thread::sleep_for(std::chrono::microseconds((r * 37) % 400));
    bool notified = false;
    {
      std::unique_lock lk(m);
      if (c.waiting() == 1) {
        c.notify(1);
        notified = true;
      }
    }
    w.join();
    notified_rounds += notified;
    if ((result.load() == 1) != notified) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0) << "of " << rounds << " rounds, " << notified_rounds << " notified";
}

TEST(Stress, SemaphoreConservesUnits) {
  constexpr int units = 3;
  keel::Semaphore s(units);
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
  std::atomic<long> acquires{0};
  std::atomic<long> releases{0};
  const int rounds = scaled(10000, 300);
  Threads ts;
  for (int t = 0; t < threads_n + 2; ++t) {
    ts.spawn([&, t] {
      for (int i = 0; i < rounds; ++i) {
        switch ((i + t) % 3) {
          case 0:
            s.acquire();
            break;
          case 1:
            while (!s.try_acquire()) std::this_thread::yield();
            break;
          default:
            while (!s.try_acquire_for(100us)) {
            }
            break;
        }
        acquires.fetch_add(1);
        const int h = holders.fetch_add(1) + 1;
        int prev = max_holders.load();
        while (h > prev && !max_holders.compare_exchange_weak(prev, h)) {
        }
        holders.fetch_sub(1);
        releases.fetch_add(1);
        s.release();
      }
    });
  }
  ts.join();
  EXPECT_EQ(acquires.load(), releases.load());
  EXPECT_EQ(acquires.load(), static_cast<long>(threads_n + 2) * rounds);
  EXPECT_LE(max_holders.load(), units);
  EXPECT_EQ(s.value(), units);
}

TEST(Stress, SemaphoreBatchReleasesAreNotLost) {
  // Consumers take single units; producers release in batches. Total taken
  // equals total released, and nobody is left asleep.
  keel::Semaphore s(0);
  constexpr int batch = 3;
  const int batches_per_producer = scaled(2000, 100);
  constexpr int producers = 2;
  constexpr int consumers = 3;
  const long total = static_cast<long>(producers) * batches_per_producer * batch;
  std::atomic<long> taken{0};
  Threads cs;
  Threads ps;
  for (int c = 0; c < consumers; ++c) {
    cs.spawn([&] {
      while (taken.load() < total) {
        if (s.try_acquire_for(1ms)) taken.fetch_add(1);
      }
    });
  }
  for (int p = 0; p < producers; ++p) {
    ps.spawn([&] {
      for (int i = 0; i < batches_per_producer; ++i) s.release(batch);
    });
  }
  ps.join();
  ASSERT_TRUE(keel_test::eventually([&] { return taken.load() == total; }));
  cs.join();
  EXPECT_EQ(taken.load(), total);
  EXPECT_EQ(s.value(), 0);
}

TEST(Stress, BoundedSemaphoreNeverExceedsItsBoundAndConservesUnits) {
  // Threads acquire and release at random, including releases they have no
  // unit for. Refused releases add nothing; every observed value is within
  // [0, bound]; and the final value is bound + accepted releases - acquires.
  constexpr int bound = 2;
  keel::BoundedSemaphore s(bound);
  std::atomic<long> acquired{0};
  std::atomic<long> released{0};
  std::atomic<long> refused{0};
  std::atomic<long> bad_values{0};
  const int rounds = scaled(10000, 300);
  Threads ts;
  for (int t = 0; t < threads_n; ++t) {
    ts.spawn([&, t] {
      std::minstd_rand rng(static_cast<unsigned>(t + 1));
      for (int i = 0; i < rounds; ++i) {
        if (rng() % 2 == 0) {
          if (s.try_acquire()) acquired.fetch_add(1);
        } else {
          try {
            s.release();
            released.fetch_add(1);
          } catch (const keel::ValueError&) {
            refused.fetch_add(1);
          }
        }
        const int v = s.value();
        if (v < 0 || v > bound) bad_values.fetch_add(1);
      }
    });
  }
  ts.join();
  EXPECT_EQ(bad_values.load(), 0);
  EXPECT_GT(refused.load(), 0);
  EXPECT_EQ(s.value(), bound + released.load() - acquired.load());
}

TEST(Stress, EventRoundsReleaseEveryWaiter) {
  constexpr int waiters = threads_n;
  const int rounds = scaled(300, 20);
  keel::Event ev;
  keel::Barrier start(waiters + 1);
  keel::Barrier end(waiters + 1);
  std::atomic<long> released{0};
  std::atomic<long> early{0};
  Threads ts;
  for (int w = 0; w < waiters; ++w) {
    ts.spawn([&, w] {
      for (int r = 0; r < rounds; ++r) {
        start.wait();
        bool ok = true;
        if ((r + w) % 2 == 0) {
          ev.wait();
        } else {
          ok = ev.wait_for(keel_test::hang_limit);
        }
        if (ok) released.fetch_add(1);
        end.wait();
      }
    });
  }
  for (int r = 0; r < rounds; ++r) {
    start.wait();
    if (ev.is_set()) early.fetch_add(1);
    if (r % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    ev.set();
    end.wait();
    ev.clear();
  }
  ts.join();
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(released.load(), static_cast<long>(waiters) * rounds);
}

TEST(Stress, EventSetClearStormNeverStrandsAWaiter) {
  // Setters and clearers race timed waiters; once a final set() stays, every
  // waiter must return true promptly (no wake lost in the 0/1/2 word states).
  keel::Event ev;
  std::atomic<bool> stop{false};
  std::atomic<long> waits{0};
  const int storm = scaled(20000, 500);
  Threads waiters;
  std::atomic<int> finished{0};
  for (int w = 0; w < threads_n; ++w) {
    waiters.spawn([&] {
      while (!stop.load()) {
        ev.wait_for(std::chrono::microseconds(200));
        waits.fetch_add(1);
      }
      // Final wait: the event stays set from here on.
      if (ev.wait_for(keel_test::hang_limit)) finished.fetch_add(1);
    });
  }
  Threads stormers;
  // The storm goes on until the waiters have waited threads_n times in it
  // (on a loaded machine it could end before a waiter was ever scheduled,
  // and race nobody), for at most hang_limit.
  const auto storm_until = std::chrono::steady_clock::now() + keel_test::hang_limit;
  for (int t = 0; t < 2; ++t) {
    stormers.spawn([&, t] {
      for (int i = 0; i < storm || (waits.load() < threads_n && std::chrono::steady_clock::now() < storm_until); ++i) {
        if ((i + t) % 2 == 0) {
          ev.set();
        } else {
          ev.clear();
        }
      }
    });
  }
  stormers.join();
  ev.set();
  stop.store(true);
  waiters.join();
  EXPECT_EQ(finished.load(), threads_n);
  EXPECT_GE(waits.load(), threads_n);
}

TEST(Stress, BarrierGenerationsStayInLockstep) {
  constexpr int parties = threads_n;
  const int generations = scaled(1000, 50);
  keel::Barrier b(parties);
  std::vector<std::atomic<int>> slot(parties);
  std::atomic<long> mismatches{0};
  std::atomic<long> index_errors{0};
  Threads ts;
  for (int t = 0; t < parties; ++t) {
    ts.spawn([&, t] {
      for (int g = 1; g <= generations; ++g) {
        slot[static_cast<std::size_t>(t)].store(g);
        if (b.wait() >= static_cast<std::size_t>(parties)) index_errors.fetch_add(1);
        // Between the barriers every party has published this generation.
        for (int o = 0; o < parties; ++o) {
          if (slot[static_cast<std::size_t>(o)].load() != g) mismatches.fetch_add(1);
        }
        b.wait();
      }
    });
  }
  ts.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(index_errors.load(), 0);
  EXPECT_FALSE(b.broken());
}

TEST(Stress, BarrierWithActionCountsGenerations) {
  constexpr int parties = 3;
  const int generations = scaled(1000, 50);
  int generation = 0;  // written only by the action, under the barrier's lock
  keel::Barrier b(parties, [&] { ++generation; });
  std::atomic<long> errors{0};
  Threads ts;
  for (int t = 0; t < parties; ++t) {
    ts.spawn([&] {
      for (int g = 1; g <= generations; ++g) {
        b.wait();
        // The next action needs this thread's next arrival, so the count is
        // exactly g until then (and TSan checks the read is ordered).
        if (generation != g) errors.fetch_add(1);
      }
    });
  }
  ts.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(generation, generations);
}

TEST(Stress, BarrierAbortAndResetCyclesLeaveNoThreadBehind) {
  // Waiters loop on a barrier that is repeatedly aborted and reset by the
  // test thread; every wait ends (index or BrokenBarrierError), and after the
  // last reset a full generation still passes.
  constexpr int parties = 3;
  keel::Barrier b(parties);
  std::atomic<bool> stop{false};
  std::atomic<long> passes{0};
  std::atomic<long> breaks{0};
  std::atomic<long> other{0};
  const int cycles = scaled(200, 20);
  Threads ts;
  for (int t = 0; t < parties - 1; ++t) {
    ts.spawn([&] {
      while (!stop.load()) {
        try {
          b.wait_for(keel_test::hang_limit);
          passes.fetch_add(1);
        } catch (const keel::BrokenBarrierError&) {
          breaks.fetch_add(1);
          std::this_thread::yield();
        } catch (...) {
          other.fetch_add(1);
        }
      }
    });
  }
  std::mt19937 rng(12345);
  for (int i = 0; i < cycles; ++i) {
    switch (rng() % 3) {
      case 0:
        b.abort();
        break;
      case 1:
        b.reset();
        break;
      default:
        try {
          b.wait_for(std::chrono::microseconds(200));
        } catch (const keel::BrokenBarrierError&) {
        }
        break;
    }
  }
  stop.store(true);
  b.abort();  // release the waiters for good
  ts.join();
  EXPECT_EQ(other.load(), 0);
  b.reset();
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.n_waiting(), 0u);
  Threads full;
  std::atomic<int> ok{0};
  for (int t = 0; t < parties; ++t) {
    full.spawn([&] {
      try {
        b.wait_for(keel_test::hang_limit);
        ok.fetch_add(1);
      } catch (...) {
      }
    });
  }
  full.join();
  EXPECT_EQ(ok.load(), parties);
}
