// Fuzz target sync_ops: keel's synchronization primitives (Mutex, RecursiveMutex,
// Condition over each, Semaphore, BoundedSemaphore, Event, Barrier, Timer) driven
// by 1-4 threads, each running its own script of operations with interleaving
// hints (yield, spin, sleep), including every public entry point and misuse.
//
// Input: a 7-byte header (threads, semaphore initial value, bounded-semaphore
// bound, barrier parties, barrier default timeout, barrier action failure
// period, shared timers' intervals and failure flags), then per thread a length
// byte (at most 64 ops) and that many 3-byte ops: opcode, a, b.
//
// Nothing blocks without a bound: timed waits draw from a per-thread time
// budget; untimed waits (acquire(), wait(), Barrier::wait()) announce
// themselves as "parked", and the target's thread, when it sees no progress,
// releases them (release, set, notify_all under try_lock, Barrier::reset).
// Untimed lock acquisition (lock(), restore(), a Condition's re-acquire) only
// happens while the thread holds no other lock, so locks cannot deadlock.
//
// Checked during the run (recorded, reported on the target's thread) and once
// quiet at the end:
// - SYNC-1: an atomic holder count is never above 1 inside a critical section;
//   plain counters bumped under the lock equal the atomic count of entries;
//   a plain value stays put while its holder spins; try_lock of a Mutex the
//   thread holds fails; TSan sees any missing happens-before.
// - SYNC-3: every misuse (unlock of an unlocked Mutex, non-owner release of a
//   RecursiveMutex, Condition use without its lock, notify(n<0), Semaphore
//   release(n<1), BoundedSemaphore release past the bound, bad constructor
//   arguments) throws exactly the documented type and changes nothing.
// - SYNC-4/5: semaphore values stay in [0, bound] and at the end equal
//   initial + released - acquired; a release within what a thread holds is
//   never refused while no unbacked release was attempted.
// - SYNC-6: a wait after the thread's own set() (no clear in between) is true;
//   a wait after its own clear() (no set in between) is false.
// - SYNC-7/8: indices are below parties; each index was returned once per
//   generation whose action completed (exactly, unless abort() ran); the
//   action saw all parties inside wait(); a throwing action reaches its thread;
//   a long wait ends by a break, not its own timeout; nobody is left waiting.
// - SYNC-9: a RecursiveMutex's depth after a Condition wait or release_all /
//   restore is the depth before it.
// - SYNC-10: with the lock held, notify(n) removes exactly min(n, waiting)
//   waiters and notify_all all of them; a timed wait nobody notifies is false.
// - SYNC-11: a Timer's callable runs at most once, never after a cancel() that
//   returned true, always after one that returned false; fired()/cancelled()/
//   finished()/error() agree after join.
// - Liveness: every thread finishes (a lost wake-up would be a hang).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/error.hpp"
#include "keel/sync/barrier.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/recursive_mutex.hpp"
#include "keel/sync/semaphore.hpp"
#include "keel/sync/timer.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ns = std::chrono::nanoseconds;

constexpr std::size_t kMaxThreads = 4;
constexpr std::size_t kMaxOps = 64;
constexpr int kMaxTimerStarts = 4;  // per thread: each start is a thread
constexpr auto kLongWait = 10s;     // far beyond any rescue, far below libFuzzer's 25 s

enum Opcode : std::uint8_t {
  kYield,
  kSpin,
  kSleep,
  kMLock,
  kMTryLock,
  kMTryLockFor,
  kMTryLockUntil,
  kMUnlock,
  kMWork,
  kRLock,
  kRTryLock,
  kRTryLockFor,
  kRTryLockUntil,
  kRUnlock,
  kRReleaseAll,
  kRWork,
  kCMWaitFor,
  kCMWaitUntil,
  kCMWaitPred,
  kCMWait,
  kCMNotify,
  kCMNotifyAll,
  kCMWaiting,
  kCMNotifyNeg,
  kCRWaitFor,
  kCRWaitUntil,
  kCRWaitPred,
  kCRWait,
  kCRNotify,
  kCRNotifyAll,
  kCRWaiting,
  kCRNotifyNeg,
  kSAcquire,
  kSTryAcquire,
  kSTryAcquireFor,
  kSTryAcquireUntil,
  kSRelease,
  kSReleaseBad,
  kSValue,
  kBAcquire,
  kBTryAcquire,
  kBTryAcquireFor,
  kBTryAcquireUntil,
  kBReleaseHeld,
  kBReleaseWild,
  kBReleaseOver,
  kBValue,
  kESet,
  kEClear,
  kEIsSet,
  kEWaitFor,
  kEWaitUntil,
  kEWait,
  kESetThenWait,
  kEClearThenWait,
  kBarWaitFor,
  kBarWaitLong,
  kBarWait,
  kBarWaitUntil,
  kBarAbort,
  kBarReset,
  kBarQuery,
  kTNew,
  kTStart,
  kTCancel,
  kTJoin,
  kGStart,
  kGCancel,
  kMisuse,
  kOpCount
};

struct Op {
  std::uint8_t code, a, b;
};

struct Config {
  std::size_t threads;
  std::int32_t sem_initial;
  std::int32_t bsem_bound;
  std::size_t parties;
  std::optional<Ns> barrier_default;
  int action_throw_every;  // 0: the barrier action never throws
  std::array<Ns, 2> timer_interval;
  std::array<bool, 2> timer_throws;
};

constexpr std::array<std::int64_t, 8> kTimeoutNs = {0, 0, 1'000, 10'000, 50'000, 200'000, 1'000'000, 3'000'000};
// Long intervals are only reached through cancel (join cancels them first).
constexpr std::array<std::int64_t, 8> kTimerNs = {0,       1'000,     20'000,     100'000,
                                                  500'000, 2'000'000, 50'000'000, 1'000'000'000};

struct ActionFault : std::runtime_error {
  ActionFault() : std::runtime_error("sync_ops: barrier action fault") {}
};
struct TimerFault : std::runtime_error {
  TimerFault() : std::runtime_error("sync_ops: timer callable fault") {}
};

// A begun count (high half) and a done count (low half) in one word, so one
// load says whether a call was in flight.
struct InFlight {
  std::atomic<std::uint64_t> word{0};
  void begin() { word.fetch_add(std::uint64_t{1} << 32); }
  void end() { word.fetch_add(1); }
  static std::uint32_t begun(std::uint64_t w) { return static_cast<std::uint32_t>(w >> 32); }
  static bool idle(std::uint64_t w) { return begun(w) == static_cast<std::uint32_t>(w); }
};

struct LocalTimer {
  std::unique_ptr<keel::Timer> timer;
  std::atomic<int> runs{0};
  Ns interval{0};
  bool throws = false;
  bool started = false;
  bool cancel_true = false;   // some cancel() returned true
  bool cancel_false = false;  // some cancel() returned false
};

// What one script thread knows about itself.
struct Local {
  std::size_t id = 0;
  std::vector<Op> ops;
  bool holds_m = false;
  std::uint32_t r_depth = 0;
  std::int64_t b_held = 0;
  std::int64_t budget_ns = 0;
  int timer_starts = 0;
  // Private objects: misuse on them has a certain outcome.
  keel::Mutex pm;
  keel::Condition pc{pm};
  keel::Condition own;  // over its own RecursiveMutex
  std::array<LocalTimer, 2> timers;
};

class World {
 public:
  explicit World(const Config& c)
      : cfg(c),
        s(c.sem_initial),
        b(c.bsem_bound),
        bar(
            c.parties, [this] { action(); }, c.barrier_default) {
    for (std::size_t i = 0; i < 2; ++i) {
      const bool throws = cfg.timer_throws[i];
      std::atomic<int>* runs = &gt_runs[i];
      gt[i] = std::make_unique<keel::Timer>(cfg.timer_interval[i], [runs, throws] {
        runs->fetch_add(1);
        if (throws) throw TimerFault();
      });
    }
  }

  const Config cfg;
  keel::Mutex m;
  keel::RecursiveMutex r;
  keel::Condition cm{m};
  keel::Condition cr{r};
  keel::Semaphore s;
  keel::BoundedSemaphore b;
  keel::Event e;
  keel::Barrier bar;
  std::array<std::unique_ptr<keel::Timer>, 2> gt;

  // SYNC-1: plain state touched only under m / r.
  std::uint64_t crit_m = 0, crit_r = 0, work_m = 0, work_r = 0, ticket_m = 0, ticket_r = 0;
  std::atomic<std::uint64_t> entries_m{0}, entries_r{0};
  std::atomic<int> holders_m{0}, holders_r{0};

  // SYNC-4/5 accounting.
  std::atomic<std::int64_t> s_acquired{0}, s_released{0}, s_release_attempted{0};
  std::atomic<std::int64_t> b_acquired{0}, b_released{0}, b_wild{0};

  InFlight set_calls, clear_calls;

  // Barrier (SYNC-7/8). action_runs is plain: it runs under the barrier's lock.
  std::uint64_t action_runs = 0;
  std::atomic<std::uint64_t> action_ok{0}, action_throws{0}, action_faults_seen{0}, abort_calls{0};
  std::atomic<int> inside{0};
  std::array<std::atomic<std::uint64_t>, kMaxThreads> index_count{};

  // Shared timers (SYNC-11).
  std::array<std::atomic<int>, 2> gt_runs{}, gt_start_ok{}, gt_start_refused{}, gt_cancel_true{}, gt_cancel_false{};

  // Liveness: parked untimed waiters and their rescue.
  std::atomic<int> parked{0}, parked_s{0}, parked_b{0}, parked_e{0}, parked_cm{0}, parked_cr{0}, parked_bar{0};
  std::atomic<std::uint64_t> progress{0};
  std::atomic<std::size_t> ready{0}, done{0};
  std::atomic<bool> go{false};
  Clock::time_point deadline{};

  void violate(const char* id, const std::string& what) {
    std::lock_guard<std::mutex> g(viol_mu_);
    if (viol_id_.empty()) {
      viol_id_ = id;
      viol_what_ = what;
    }
  }
  bool violated(std::string& id, std::string& what) {
    std::lock_guard<std::mutex> g(viol_mu_);
    id = viol_id_;
    what = viol_what_;
    return !id.empty();
  }

 private:
  void action() {
    // Runs in the last arriving thread with the barrier's lock held.
    const int in = inside.load();
    if (in < static_cast<int>(cfg.parties)) {
      violate("SYNC-7", "barrier action ran with " + std::to_string(in) + " threads inside wait(), parties " +
                            std::to_string(cfg.parties));
    }
    ++action_runs;
    if (cfg.action_throw_every != 0 && action_runs % static_cast<std::uint64_t>(cfg.action_throw_every) == 0) {
      action_throws.fetch_add(1);
      throw ActionFault();
    }
    action_ok.fetch_add(1);
  }

  std::mutex viol_mu_;
  std::string viol_id_, viol_what_;
};

// Marks an untimed wait that the rescuer must be able to end.
class Park {
 public:
  Park(World& w, std::atomic<int>& kind) : w_(w), kind_(kind) {
    kind_.fetch_add(1);
    w_.parked.fetch_add(1);
  }
  ~Park() {
    w_.parked.fetch_sub(1);
    kind_.fetch_sub(1);
  }
  Park(const Park&) = delete;
  Park& operator=(const Park&) = delete;

 private:
  World& w_;
  std::atomic<int>& kind_;
};

std::string opname(const Op& op) { return "op " + std::to_string(op.code) + "(" + std::to_string(op.a) + ")"; }

// Misuse on purpose: the analysis rightly rejects these calls, so they go
// through helpers it does not check.
template <class L>
void unlock_unheld(L& l) KEEL_NO_TSA {
  l.unlock();
}
std::uint32_t release_all_unowned(keel::RecursiveMutex& r) KEEL_NO_TSA { return r.release_all(); }

// Runs one script thread, and the rescuer on the target's thread. Lock
// ownership crosses functions here, which the analysis cannot follow.
class Runner {
 public:
  explicit Runner(World& w) : w_(w) {}

  void script(Local& t) KEEL_NO_TSA {
    w_.ready.fetch_add(1);
    while (!w_.go.load()) std::this_thread::yield();
    for (const Op& op : t.ops) {
      if (Clock::now() > w_.deadline) break;
      try {
        exec(t, op);
      } catch (const std::exception& ex) {
        w_.violate("SYNC-3", opname(op) + " of thread " + std::to_string(t.id) + " threw an unexpected " +
                                 typeid(ex).name() + ": " + ex.what());
      }
      w_.progress.fetch_add(1);
    }
    cleanup(t);
    w_.done.fetch_add(1);
  }

  // The target's thread while scripts run: when nothing moves and someone
  // is parked in an untimed wait, release it.
  void rescue_until_done() KEEL_NO_TSA {
    Local me;
    me.id = kMaxThreads;
    while (w_.done.load() < w_.cfg.threads) {
      const std::uint64_t before = w_.progress.load();
      std::this_thread::sleep_for(100us);
      if (w_.parked.load() == 0 || w_.progress.load() != before) continue;
      if (w_.parked_s.load() > 0) {
        w_.s_release_attempted.fetch_add(1);
        w_.s.release(1);
        w_.s_released.fetch_add(1);
      }
      if (w_.parked_b.load() > 0) {
        w_.b_wild.fetch_add(1);
        try {
          w_.b.release(1);
          w_.b_released.fetch_add(1);
        } catch (const keel::ValueError&) {
        }
      }
      if (w_.parked_e.load() > 0) set_event();
      if (w_.parked_cm.load() > 0 && w_.m.try_lock()) {
        m_entered(me);
        ++w_.ticket_m;
        w_.cm.notify_all();
        m_release(me);
      }
      if (w_.parked_cr.load() > 0 && w_.r.try_lock()) {
        r_entered(me);
        ++w_.ticket_r;
        w_.cr.notify_all();
        r_release_one(me);
      }
      if (w_.parked_bar.load() > 0) w_.bar.reset();
    }
  }

 private:
  World& w_;

  Ns take(Local& t, std::uint8_t a) {
    std::int64_t d = kTimeoutNs[a & 7];
    if (d > t.budget_ns) d = 0;
    t.budget_ns -= d;
    return Ns(d);
  }

  static Clock::time_point steady_in(Ns d) { return Clock::now() + d; }

  void check(bool ok, const char* id, const std::string& what) {
    if (!ok) w_.violate(id, what);
  }

  // ---- Mutex m ----
  void m_entered(Local& t) {
    const int before = w_.holders_m.fetch_add(1);
    check(before == 0, "SYNC-1", "Mutex acquired while " + std::to_string(before) + " other holder(s) inside");
    ++w_.crit_m;
    w_.entries_m.fetch_add(1);
    t.holds_m = true;
  }
  void m_release(Local& t) KEEL_NO_TSA {
    t.holds_m = false;
    w_.holders_m.fetch_sub(1);
    w_.m.unlock();
  }
  void m_work(std::uint8_t spins) {
    const std::uint64_t mine = ++w_.work_m;
    for (int i = 0; i <= spins % 32; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
    check(w_.work_m == mine, "SYNC-1", "a value written under the Mutex changed while its holder held it");
    check(w_.holders_m.load() == 1, "SYNC-1", "more than one holder inside the Mutex's critical section");
  }

  // ---- RecursiveMutex r ----
  void r_entered(Local& t) {
    if (t.r_depth == 0) {
      const int before = w_.holders_r.fetch_add(1);
      check(before == 0, "SYNC-1",
            "RecursiveMutex acquired while " + std::to_string(before) + " other holder(s) inside");
    }
    ++t.r_depth;
    ++w_.crit_r;
    w_.entries_r.fetch_add(1);
    check(w_.r.depth() == t.r_depth, "SYNC-9",
          "RecursiveMutex depth " + std::to_string(w_.r.depth()) + " after locking, expected " +
              std::to_string(t.r_depth));
  }
  void r_release_one(Local& t) KEEL_NO_TSA {
    if (t.r_depth == 1) w_.holders_r.fetch_sub(1);
    --t.r_depth;
    w_.r.unlock();
    check(w_.r.depth() == t.r_depth, "SYNC-9",
          "RecursiveMutex depth " + std::to_string(w_.r.depth()) + " after unlock, expected " +
              std::to_string(t.r_depth));
  }
  void r_work(std::uint8_t spins) {
    const std::uint64_t mine = ++w_.work_r;
    for (int i = 0; i <= spins % 32; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
    check(w_.work_r == mine, "SYNC-1", "a value written under the RecursiveMutex changed while its owner held it");
    check(w_.holders_r.load() == 1, "SYNC-1", "more than one owner inside the RecursiveMutex's critical section");
  }

  // ---- misuse with a certain outcome ----
  template <class Error, class F>
  void expect_throw(const char* id, const char* what, F f) {
    try {
      f();
    } catch (const Error&) {
      return;
    } catch (const std::exception& ex) {
      w_.violate(id, std::string(what) + ": threw " + typeid(ex).name() + " (" + ex.what() + "), expected " +
                         typeid(Error).name());
      return;
    }
    w_.violate(id, std::string(what) + ": did not throw, expected " + typeid(Error).name());
  }

  // A Condition used without its lock (the private Mutex is never held here).
  void private_condition_misuse(Local& t, std::uint8_t which) KEEL_NO_TSA {
    switch (which % 6) {
      case 0:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition::notify without the lock", [&] { t.pc.notify(1); });
        break;
      case 1:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition::notify_all without the lock",
                                             [&] { t.pc.notify_all(); });
        break;
      case 2:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition::wait_for without the lock",
                                             [&] { t.pc.wait_for(1ms); });
        break;
      case 3:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition::wait_until without the lock",
                                             [&] { t.pc.wait_until(steady_in(1ms)); });
        break;
      case 4:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition::wait_for(pred) without the lock",
                                             [&] { t.pc.wait_for(1ms, [] { return false; }); });
        break;
      default:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition::waiting without the lock",
                                             [&] { (void)t.pc.waiting(); });
        break;
    }
    check(!t.pm.is_locked(), "SYNC-3", "a Condition misuse left its Mutex locked");
    t.pm.lock();
    check(t.pc.waiting() == 0, "SYNC-3", "a Condition misuse queued a waiter");
    t.pm.unlock();
  }

  void shared_rcondition_misuse(std::uint8_t which) {
    switch (which % 5) {
      case 0:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition(RecursiveMutex)::notify by a non-owner",
                                             [&] { w_.cr.notify(which % 4); });
        break;
      case 1:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition(RecursiveMutex)::notify_all by a non-owner",
                                             [&] { w_.cr.notify_all(); });
        break;
      case 2:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition(RecursiveMutex)::wait_for by a non-owner",
                                             [&] { w_.cr.wait_for(1ms); });
        break;
      case 3:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition(RecursiveMutex)::wait by a non-owner",
                                             [&] { w_.cr.wait(); });
        break;
      default:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition(RecursiveMutex)::waiting by a non-owner",
                                             [&] { (void)w_.cr.waiting(); });
        break;
    }
    check(w_.r.depth() == 0 && !w_.r.is_owned(), "SYNC-3", "a Condition misuse gave a non-owner the RecursiveMutex");
  }

  void misuse(Local& t, const Op& op) KEEL_NO_TSA {
    switch (op.a % 9) {
      case 0:
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Mutex::unlock of an unlocked Mutex",
                                             [&] { unlock_unheld(t.pm); });
        check(!t.pm.is_locked(), "SYNC-3", "a refused Mutex::unlock left the Mutex locked");
        break;
      case 1:
        private_condition_misuse(t, op.b);
        break;
      case 2: {
        expect_throw<keel::LockNotHeldError>("SYNC-3", "Condition()::notify without its own lock",
                                             [&] { t.own.notify(); });
        // Its own RecursiveMutex, held at depth 2 across a wait nobody ends.
        t.own.lock();
        t.own.lock();
        check(t.own.waiting() == 0, "SYNC-3", "a refused notify queued a waiter");
        const bool woke = t.own.wait_for(Ns(kTimeoutNs[op.b & 3]));
        check(!woke, "SYNC-10", "Condition::wait_for returned true with no notify");
        t.own.unlock();
        check(t.own.try_lock(), "SYNC-9", "Condition()'s own lock not re-entrant after a wait at depth 2");
        t.own.unlock();
        t.own.unlock();
        expect_throw<keel::NotOwnerError>("SYNC-3", "Condition()::unlock past depth 0", [&] { unlock_unheld(t.own); });
        break;
      }
      case 3: {
        const std::int32_t bad = op.b == 255 ? std::numeric_limits<std::int32_t>::min() : -1 - (op.b % 4);
        expect_throw<keel::ValueError>("SYNC-3", "Semaphore with a negative initial value",
                                       [&] { keel::Semaphore bad_sem(bad); });
        expect_throw<keel::ValueError>("SYNC-3", "BoundedSemaphore with a negative initial value",
                                       [&] { keel::BoundedSemaphore bad_sem(bad); });
        break;
      }
      case 4:
        expect_throw<keel::ValueError>("SYNC-3", "Barrier with 0 parties", [] { keel::Barrier bad_bar(0); });
        // A negative default timeout is a timeout of zero (keel/timeout.hpp),
        // not a ValueError: a lone arrival does not wait, it breaks the barrier.
        expect_throw<keel::BrokenBarrierError>("TIME-2", "Barrier::wait with a negative default timeout", [&] {
          keel::Barrier zero_bar(2 + op.b % 3, {}, Ns(-1 - op.b));
          zero_bar.wait();
        });
        break;
      case 5:
        expect_throw<keel::ValueError>("SYNC-3", "Timer with a negative interval",
                                       [&] { keel::Timer bad_timer(Ns(-1 - op.b), [] {}); });
        expect_throw<keel::ValueError>("SYNC-3", "Timer without a callable",
                                       [] { keel::Timer bad_timer(0ns, std::function<void()>{}); });
        break;
      case 6: {
        // Self-contention on a private Mutex: nothing else can hold it.
        check(t.pm.try_lock(), "SYNC-1", "try_lock of a free private Mutex failed");
        check(!t.pm.try_lock(), "SYNC-1", "try_lock of a Mutex the thread holds succeeded");
        check(!t.pm.try_lock_for(Ns(kTimeoutNs[op.b & 3])), "SYNC-1",
              "try_lock_for of a Mutex the thread holds succeeded");
        const bool woke = t.pc.wait_for(Ns(kTimeoutNs[op.b & 3]));
        check(!woke, "SYNC-10", "Condition::wait_for returned true with no notify");
        check(t.pm.is_locked(), "SYNC-1", "Condition::wait_for returned without the Mutex");
        t.pm.unlock();
        expect_throw<keel::LockNotHeldError>("SYNC-3", "second Mutex::unlock", [&] { unlock_unheld(t.pm); });
        check(t.pm.try_lock(), "SYNC-3", "Mutex unusable after a refused unlock");
        t.pm.unlock();
        break;
      }
      case 7:
        expect_throw<keel::ValueError>("SYNC-3", "Condition(Mutex)::notify(n < 0) with the lock", [&] {
          LockedPrivate lk(t.pm);
          t.pc.notify(-1 - op.b);
        });
        break;
      default:
        if (t.r_depth == 0) {
          expect_throw<keel::NotOwnerError>("SYNC-3", "RecursiveMutex::unlock by a non-owner",
                                            [&] { unlock_unheld(w_.r); });
          expect_throw<keel::NotOwnerError>("SYNC-3", "RecursiveMutex::release_all by a non-owner",
                                            [&] { (void)release_all_unowned(w_.r); });
          check(w_.r.depth() == 0 && !w_.r.is_owned(), "SYNC-3", "a refused release made the thread an owner");
        }
        break;
    }
  }

  class LockedPrivate {
   public:
    explicit LockedPrivate(keel::Mutex& m) KEEL_NO_TSA : m_(m) { m_.lock(); }
    ~LockedPrivate() KEEL_NO_TSA { m_.unlock(); }
    LockedPrivate(const LockedPrivate&) = delete;
    LockedPrivate& operator=(const LockedPrivate&) = delete;

   private:
    keel::Mutex& m_;
  };

  // ---- Condition waits ----
  // `how`: 0 wait_for, 1 wait_until (steady or system clock), 2 wait_for with
  // a predicate, 3 wait_deadline, 4 untimed wait (parked), 5 untimed wait with
  // a predicate (parked).
  bool cond_wait(Local& t, bool over_m, int how, std::uint8_t b, Ns d) KEEL_NO_TSA {
    keel::Condition& c = over_m ? w_.cm : w_.cr;
    std::uint64_t& ticket = over_m ? w_.ticket_m : w_.ticket_r;
    const std::uint64_t seen = ticket;
    const std::uint32_t depth = t.r_depth;
    // Leaving the critical section for the duration of the wait.
    if (over_m) {
      w_.holders_m.fetch_sub(1);
    } else {
      w_.holders_r.fetch_sub(1);
    }
    bool woke = false;
    switch (how) {
      case 0:
        woke = c.wait_for(d);
        break;
      case 1:
        woke = (b & 0x10) != 0 ? c.wait_until(std::chrono::system_clock::now() + d) : c.wait_until(steady_in(d));
        break;
      case 2:
        woke = c.wait_for(d, [&] { return ticket != seen; });
        break;
      case 3:
        woke = c.wait_deadline(keel::platform::Deadline::after(d));
        break;
      case 4: {
        Park p(w_, over_m ? w_.parked_cm : w_.parked_cr);
        c.wait();
        woke = true;
        break;
      }
      default: {
        Park p(w_, over_m ? w_.parked_cm : w_.parked_cr);
        c.wait([&] { return ticket != seen; });
        woke = true;
        break;
      }
    }
    if (over_m) {
      const int before = w_.holders_m.fetch_add(1);
      check(before == 0, "SYNC-1", "Condition wait returned while another thread held its Mutex");
      check(w_.m.is_locked(), "SYNC-1", "Condition wait returned without the Mutex");
      ++w_.crit_m;
      w_.entries_m.fetch_add(1);
    } else {
      const int before = w_.holders_r.fetch_add(1);
      check(before == 0, "SYNC-1", "Condition wait returned while another thread owned its RecursiveMutex");
      check(w_.r.is_owned() && w_.r.depth() == depth, "SYNC-9",
            "RecursiveMutex depth " + std::to_string(w_.r.depth()) + " after a Condition wait, expected " +
                std::to_string(depth));
      ++w_.crit_r;
      w_.entries_r.fetch_add(1);
    }
    if (how == 2) {
      check(woke == (ticket != seen), "SYNC-10", "Condition::wait_for(pred) did not return its predicate's value");
    }
    return woke;
  }

  void cond_op(Local& t, const Op& op, bool over_m, int kind) KEEL_NO_TSA {
    keel::Condition& c = over_m ? w_.cm : w_.cr;
    const bool held = over_m ? t.holds_m : t.r_depth > 0;
    // Waiting re-acquires the lock untimed: only while holding nothing else.
    const bool may_wait = over_m ? (t.holds_m && t.r_depth == 0) : (t.r_depth > 0 && !t.holds_m);
    if (!held) {
      if (over_m) {
        private_condition_misuse(t, op.b);
      } else {
        shared_rcondition_misuse(op.b);
      }
      return;
    }
    std::uint64_t& ticket = over_m ? w_.ticket_m : w_.ticket_r;
    switch (kind) {
      case 0:  // wait_for, or wait_deadline
      case 1:  // wait_until
      case 2:  // wait_for(pred)
      case 3:  // untimed wait, with or without a predicate
        if (!may_wait) {
          ++ticket;
          c.notify(1);
          return;
        }
        if (kind == 3) {
          cond_wait(t, over_m, (op.b & 1) != 0 ? 5 : 4, op.b, Ns(0));
        } else {
          const int how = kind == 0 ? ((op.b & 0x20) != 0 ? 3 : 0) : kind;
          cond_wait(t, over_m, how, op.b, take(t, op.a));
        }
        return;
      case 4:    // notify(n)
      case 5: {  // notify_all
        // With the lock held no waiter can leave the list by itself, so
        // notify(n) takes exactly the first min(n, waiting) records.
        const std::size_t before = c.waiting();
        const int n = op.a % 4;
        ++ticket;
        if (kind == 4) {
          c.notify(n);
        } else {
          c.notify_all();
        }
        const std::size_t want = kind == 4 ? before - std::min<std::size_t>(before, n) : 0;
        const std::size_t after = c.waiting();
        check(after == want, "SYNC-10",
              "notify" + (kind == 4 ? "(" + std::to_string(n) + ")" : std::string("_all()")) + " with " +
                  std::to_string(before) + " waiting left " + std::to_string(after) + ", expected " +
                  std::to_string(want));
        return;
      }
      case 6: {
        const std::size_t n = c.waiting();
        check(n < w_.cfg.threads, "SYNC-10",
              "Condition::waiting() is " + std::to_string(n) + " with " + std::to_string(w_.cfg.threads) +
                  " threads, one of them the caller");
        return;
      }
      default: {
        // The lock is held: the waiter list cannot change under us.
        const std::size_t before = c.waiting();
        const int n = op.b == 255 ? std::numeric_limits<int>::min() : -1 - op.b;
        expect_throw<keel::ValueError>("SYNC-3", "Condition::notify(n < 0)", [&] { c.notify(n); });
        check(c.waiting() == before, "SYNC-3", "a refused notify(n < 0) changed the waiter list");
        return;
      }
    }
  }

  // ---- Event ----
  void set_event() {
    w_.set_calls.begin();
    w_.e.set();
    w_.set_calls.end();
  }
  void clear_event() {
    w_.clear_calls.begin();
    w_.e.clear();
    w_.clear_calls.end();
  }
  bool event_wait(const Op& op, Ns d) {
    if ((op.b & 0x40) != 0) return w_.e.is_set();
    return (op.b & 0x10) != 0 ? w_.e.wait_until(std::chrono::system_clock::now() + d) : w_.e.wait_for(d);
  }

  // ---- Barrier ----
  void barrier_wait(int kind, Ns d) {
    const bool untimed = kind == 2 && !w_.cfg.barrier_default;
    w_.inside.fetch_add(1);
    const auto t0 = Clock::now();
    try {
      std::size_t index = 0;
      if (kind == 0) {
        index = w_.bar.wait_for(d);
      } else if (kind == 1) {
        index = w_.bar.wait_until(steady_in(d));
      } else if (kind == 3) {
        Park p(w_, w_.parked_bar);
        index = w_.bar.wait_for(kLongWait);
      } else if (untimed) {
        Park p(w_, w_.parked_bar);
        index = w_.bar.wait();
      } else {
        index = w_.bar.wait();
      }
      if (index < w_.cfg.parties) {
        w_.index_count[index].fetch_add(1);
      } else {
        w_.violate("SYNC-7", "Barrier::wait returned index " + std::to_string(index) + " with " +
                                 std::to_string(w_.cfg.parties) + " parties");
      }
    } catch (const keel::BrokenBarrierError&) {
      if (kind == 3) {
        check(Clock::now() - t0 < kLongWait, "SYNC-8",
              "a Barrier wait ended by its own 10 s timeout although the barrier was reset while it waited");
      }
    } catch (const ActionFault&) {
      w_.action_faults_seen.fetch_add(1);
    }
    w_.inside.fetch_sub(1);
  }

  // ---- Timers ----
  void timer_new(LocalTimer& lt, std::uint8_t b) {
    timer_destroy(lt);
    lt.runs.store(0);
    lt.interval = Ns(kTimerNs[b & 7]);
    lt.throws = (b & 8) != 0;
    lt.started = lt.cancel_true = lt.cancel_false = false;
    std::atomic<int>* runs = &lt.runs;
    const bool throws = lt.throws;
    lt.timer = std::make_unique<keel::Timer>(lt.interval, [runs, throws] {
      runs->fetch_add(1);
      if (throws) throw TimerFault();
    });
  }
  void timer_cancel(LocalTimer& lt) {
    const bool prevented = lt.timer->cancel();
    (prevented ? lt.cancel_true : lt.cancel_false) = true;
    if (prevented) {
      check(lt.timer->cancelled() && !lt.timer->fired(), "SYNC-11", "Timer::cancel() returned true but not cancelled");
    } else {
      check(lt.timer->fired() && !lt.timer->cancelled(), "SYNC-11",
            "Timer::cancel() returned false but the callable has not fired");
    }
  }
  void timer_outcome(const LocalTimer& lt, const char* when) {
    const int runs = lt.runs.load();
    check(runs <= 1, "SYNC-11", std::string("Timer callable ran ") + std::to_string(runs) + " times " + when);
    if (lt.cancel_true) check(runs == 0, "SYNC-11", std::string("Timer ran after cancel() returned true ") + when);
    if (lt.cancel_false)
      check(runs == 1, "SYNC-11", std::string("Timer did not run though cancel() said it fired ") + when);
    if (!lt.started) check(runs == 0, "SYNC-11", std::string("a Timer that was never started ran ") + when);
  }
  void timer_join(Local& t, LocalTimer& lt) {
    if (lt.started && !lt.cancel_true && (lt.interval > 3ms || lt.interval.count() > t.budget_ns)) timer_cancel(lt);
    if (lt.started && !lt.cancel_true) t.budget_ns -= std::min<std::int64_t>(t.budget_ns, lt.interval.count());
    lt.timer->join();
    timer_outcome(lt, "after join");
    if (!lt.started) return;
    const int runs = lt.runs.load();
    const bool fired = lt.timer->fired();
    check(fired == (runs == 1) && fired != lt.timer->cancelled(), "SYNC-11",
          "after join, fired()/cancelled() disagree with " + std::to_string(runs) + " run(s)");
    check(lt.timer->finished(), "SYNC-11", "after join, finished() is false");
    check((lt.timer->error() != nullptr) == (fired && lt.throws), "SYNC-11",
          "after join, error() does not match whether the callable threw");
  }
  void timer_destroy(LocalTimer& lt) {
    if (!lt.timer) return;
    lt.timer.reset();  // cancels and joins
    timer_outcome(lt, "after destruction");
  }

  void exec(Local& t, const Op& op) KEEL_NO_TSA {
    switch (static_cast<Opcode>(op.code % kOpCount)) {
      case kYield:
        std::this_thread::yield();
        break;
      case kSpin:
        for (int i = 0; i < (op.a + 1) * 8; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
        break;
      case kSleep: {
        const std::int64_t d = std::min<std::int64_t>((op.a % 64) * 1'000, t.budget_ns);
        t.budget_ns -= d;
        std::this_thread::sleep_for(Ns(d));
        break;
      }

      case kMLock:
        if (t.holds_m) {
          check(!w_.m.try_lock(), "SYNC-1", "try_lock of a Mutex the thread holds succeeded");
        } else if (t.r_depth > 0) {
          if (w_.m.try_lock_for(take(t, op.a))) m_entered(t);
        } else {
          w_.m.lock();
          m_entered(t);
        }
        break;
      case kMTryLock:
        if (w_.m.try_lock()) {
          if (t.holds_m) {
            w_.violate("SYNC-1", "try_lock of a Mutex the thread holds succeeded");
          } else {
            m_entered(t);
          }
        }
        break;
      case kMTryLockFor:
      case kMTryLockUntil: {
        const Ns d = t.holds_m ? std::min(take(t, op.a), Ns(50'000)) : take(t, op.a);
        bool got;
        if (op.code % kOpCount == kMTryLockFor) {
          got = w_.m.try_lock_for(d);
        } else {
          got = (op.b & 0x10) != 0 ? w_.m.try_lock_until(std::chrono::system_clock::now() + d)
                                   : w_.m.try_lock_until(steady_in(d));
        }
        if (got) {
          if (t.holds_m) {
            w_.violate("SYNC-1", "a timed try_lock of a Mutex the thread holds succeeded");
          } else {
            m_entered(t);
          }
        }
        break;
      }
      case kMUnlock:
        if (t.holds_m) {
          m_release(t);
        } else {
          expect_throw<keel::LockNotHeldError>("SYNC-3", "Mutex::unlock of an unlocked Mutex",
                                               [&] { unlock_unheld(t.pm); });
          check(!t.pm.is_locked(), "SYNC-3", "a refused Mutex::unlock left the Mutex locked");
        }
        break;
      case kMWork:
        if (t.holds_m) m_work(op.a);
        break;

      case kRLock:
        if (t.r_depth > 0 || !t.holds_m) {
          w_.r.lock();
          r_entered(t);
        } else if (w_.r.try_lock_for(take(t, op.a))) {
          r_entered(t);
        }
        break;
      case kRTryLock:
      case kRTryLockFor:
      case kRTryLockUntil: {
        const Opcode code = static_cast<Opcode>(op.code % kOpCount);
        const Ns d = code == kRTryLock ? Ns(0) : take(t, op.a);
        bool got;
        if (code == kRTryLock) {
          got = w_.r.try_lock();
        } else if (code == kRTryLockFor) {
          got = w_.r.try_lock_for(d);
        } else {
          got = (op.b & 0x10) != 0 ? w_.r.try_lock_until(std::chrono::system_clock::now() + d)
                                   : w_.r.try_lock_until(steady_in(d));
        }
        if (t.r_depth > 0) check(got, "SYNC-9", "the owner of a RecursiveMutex failed to re-enter it");
        if (got) r_entered(t);
        break;
      }
      case kRUnlock:
        if (t.r_depth > 0) {
          r_release_one(t);
        } else {
          expect_throw<keel::NotOwnerError>("SYNC-3", "RecursiveMutex::unlock by a non-owner",
                                            [&] { unlock_unheld(w_.r); });
          check(w_.r.depth() == 0 && !w_.r.is_owned(), "SYNC-3", "a refused unlock made the thread an owner");
        }
        break;
      case kRReleaseAll:
        if (t.r_depth == 0) {
          expect_throw<keel::NotOwnerError>("SYNC-3", "RecursiveMutex::release_all by a non-owner",
                                            [&] { (void)release_all_unowned(w_.r); });
          check(w_.r.depth() == 0 && !w_.r.is_owned(), "SYNC-3", "a refused release_all made the thread an owner");
        } else {
          const std::uint32_t want = t.r_depth;
          w_.holders_r.fetch_sub(1);
          t.r_depth = 0;
          const std::uint32_t got = w_.r.release_all();
          check(got == want, "SYNC-9",
                "release_all returned depth " + std::to_string(got) + ", expected " + std::to_string(want));
          check(!w_.r.is_owned() && w_.r.depth() == 0, "SYNC-9", "still the owner after release_all");
          // restore() re-acquires untimed: only while holding nothing else.
          if ((op.a & 1) != 0 && !t.holds_m) {
            w_.r.restore(got);
            const int before = w_.holders_r.fetch_add(1);
            check(before == 0, "SYNC-1", "RecursiveMutex restored while another thread owned it");
            t.r_depth = got;
            ++w_.crit_r;
            w_.entries_r.fetch_add(1);
            check(w_.r.depth() == got, "SYNC-9",
                  "restore(" + std::to_string(got) + ") left depth " + std::to_string(w_.r.depth()));
          }
        }
        break;
      case kRWork:
        if (t.r_depth > 0) r_work(op.a);
        break;

      case kCMWaitFor:
      case kCMWaitUntil:
      case kCMWaitPred:
      case kCMWait:
      case kCMNotify:
      case kCMNotifyAll:
      case kCMWaiting:
      case kCMNotifyNeg:
        cond_op(t, op, true, op.code % kOpCount - kCMWaitFor);
        break;
      case kCRWaitFor:
      case kCRWaitUntil:
      case kCRWaitPred:
      case kCRWait:
      case kCRNotify:
      case kCRNotifyAll:
      case kCRWaiting:
      case kCRNotifyNeg:
        cond_op(t, op, false, op.code % kOpCount - kCRWaitFor);
        break;

      case kSAcquire: {
        Park p(w_, w_.parked_s);
        w_.s.acquire();
        w_.s_acquired.fetch_add(1);
        break;
      }
      case kSTryAcquire:
      case kSTryAcquireFor:
      case kSTryAcquireUntil: {
        const Opcode code = static_cast<Opcode>(op.code % kOpCount);
        bool got;
        if (code == kSTryAcquire) {
          got = w_.s.try_acquire();
        } else if (code == kSTryAcquireFor) {
          got = w_.s.try_acquire_for(take(t, op.a));
        } else {
          const Ns d = take(t, op.a);
          got = (op.b & 0x10) != 0 ? w_.s.try_acquire_until(std::chrono::system_clock::now() + d)
                                   : w_.s.try_acquire_until(steady_in(d));
        }
        if (got) w_.s_acquired.fetch_add(1);
        break;
      }
      case kSRelease: {
        const std::int32_t n = 1 + op.a % 3;
        w_.s_release_attempted.fetch_add(n);
        w_.s.release(n);
        w_.s_released.fetch_add(n);
        break;
      }
      case kSReleaseBad: {
        const std::int32_t n = op.a == 255 ? std::numeric_limits<std::int32_t>::min() : -(op.a % 3);
        expect_throw<keel::ValueError>("SYNC-3", "Semaphore::release(n < 1)", [&] { w_.s.release(n); });
        break;
      }
      case kSValue: {
        const std::int64_t v = w_.s.value();
        const std::int64_t most = w_.cfg.sem_initial + w_.s_release_attempted.load();
        check(v >= 0 && v <= most, "SYNC-4",
              "Semaphore value " + std::to_string(v) + " outside [0, initial + released " + std::to_string(most) + "]");
        break;
      }

      case kBAcquire: {
        Park p(w_, w_.parked_b);
        w_.b.acquire();
        ++t.b_held;
        w_.b_acquired.fetch_add(1);
        break;
      }
      case kBTryAcquire:
      case kBTryAcquireFor:
      case kBTryAcquireUntil: {
        const Opcode code = static_cast<Opcode>(op.code % kOpCount);
        bool got;
        if (code == kBTryAcquire) {
          got = w_.b.try_acquire();
        } else if (code == kBTryAcquireFor) {
          got = w_.b.try_acquire_for(take(t, op.a));
        } else {
          const Ns d = take(t, op.a);
          got = (op.b & 0x10) != 0 ? w_.b.try_acquire_until(std::chrono::system_clock::now() + d)
                                   : w_.b.try_acquire_until(steady_in(d));
        }
        if (got) {
          ++t.b_held;
          w_.b_acquired.fetch_add(1);
        }
        break;
      }
      case kBReleaseHeld:
        if (t.b_held > 0) {
          const std::int32_t n = static_cast<std::int32_t>(1 + op.a % t.b_held);
          b_release_held(t, n);
          break;
        }
        [[fallthrough]];
      case kBValue: {
        const std::int32_t v = w_.b.value();
        check(
            v >= 0 && v <= w_.cfg.bsem_bound, "SYNC-5",
            "BoundedSemaphore value " + std::to_string(v) + " outside [0, " + std::to_string(w_.cfg.bsem_bound) + "]");
        break;
      }
      case kBReleaseWild: {
        // Not backed by an acquire: may be refused, and from now on so may
        // any release (the accounting above no longer says what is free).
        const std::int32_t n = 1 + op.a % 2;
        w_.b_wild.fetch_add(1);
        try {
          w_.b.release(n);
          w_.b_released.fetch_add(n);
        } catch (const keel::ValueError&) {
        }
        break;
      }
      case kBReleaseOver: {
        check(w_.b.limit() == w_.cfg.bsem_bound, "SYNC-5", "BoundedSemaphore::limit() is not its initial value");
        const std::int32_t n = w_.cfg.bsem_bound + 1 + op.a % 3;
        expect_throw<keel::ValueError>("SYNC-3", "BoundedSemaphore::release above the bound", [&] { w_.b.release(n); });
        break;
      }

      case kESet:
        set_event();
        break;
      case kEClear:
        clear_event();
        break;
      case kEIsSet:
        (void)w_.e.is_set();
        (void)w_.e.has_waiters();
        break;
      case kEWaitFor:
        (void)w_.e.wait_for(take(t, op.a));
        break;
      case kEWaitUntil: {
        const Ns d = take(t, op.a);
        (void)((op.b & 0x10) != 0 ? w_.e.wait_until(std::chrono::system_clock::now() + d)
                                  : w_.e.wait_until(steady_in(d)));
        break;
      }
      case kEWait: {
        Park p(w_, w_.parked_e);
        w_.e.wait();
        break;
      }
      case kESetThenWait: {
        const std::uint64_t clears = w_.clear_calls.word.load();
        set_event();
        if (!event_wait(op, take(t, op.a))) {
          const std::uint64_t later = w_.clear_calls.word.load();
          check(!InFlight::idle(clears) || InFlight::begun(later) != InFlight::begun(clears), "SYNC-6",
                "Event wait/is_set after set() returned false with no clear() in between");
        }
        break;
      }
      case kEClearThenWait: {
        const std::uint64_t sets = w_.set_calls.word.load();
        clear_event();
        if (event_wait(op, take(t, op.a))) {
          const std::uint64_t later = w_.set_calls.word.load();
          check(!InFlight::idle(sets) || InFlight::begun(later) != InFlight::begun(sets), "SYNC-6",
                "Event wait/is_set after clear() returned true with no set() since");
        }
        break;
      }

      case kBarWaitFor:
        barrier_wait(0, take(t, op.a));
        break;
      case kBarWaitLong:
        barrier_wait(3, Ns(0));
        break;
      case kBarWait:
        barrier_wait(2, Ns(0));
        break;
      case kBarWaitUntil:
        barrier_wait(1, take(t, op.a));
        break;
      case kBarAbort:
        w_.abort_calls.fetch_add(1);
        w_.bar.abort();
        break;
      case kBarReset:
        w_.bar.reset();
        break;
      case kBarQuery: {
        const std::size_t n = w_.bar.n_waiting();
        check(n < w_.cfg.parties, "SYNC-7",
              "Barrier::n_waiting() is " + std::to_string(n) + " with " + std::to_string(w_.cfg.parties) + " parties");
        (void)w_.bar.broken();
        check(w_.bar.parties() == w_.cfg.parties, "SYNC-7", "Barrier::parties() changed");
        break;
      }

      case kTNew:
        timer_new(t.timers[op.a & 1], op.b);
        break;
      case kTStart: {
        LocalTimer& lt = t.timers[op.a & 1];
        if (!lt.timer) timer_new(lt, op.b);
        if (lt.started) {
          expect_throw<keel::MisuseError>("SYNC-11", "second Timer::start", [&] { lt.timer->start(); });
        } else if (t.timer_starts < kMaxTimerStarts) {
          ++t.timer_starts;
          lt.timer->start();
          lt.started = true;
        }
        break;
      }
      case kTCancel: {
        LocalTimer& lt = t.timers[op.a & 1];
        if (lt.timer) timer_cancel(lt);
        break;
      }
      case kTJoin: {
        LocalTimer& lt = t.timers[op.a & 1];
        if (lt.timer) timer_join(t, lt);
        break;
      }
      case kGStart: {
        const std::size_t i = op.a & 1;
        try {
          w_.gt[i]->start();
          w_.gt_start_ok[i].fetch_add(1);
        } catch (const keel::MisuseError&) {
          w_.gt_start_refused[i].fetch_add(1);
        }
        break;
      }
      case kGCancel: {
        const std::size_t i = op.a & 1;
        (w_.gt[i]->cancel() ? w_.gt_cancel_true[i] : w_.gt_cancel_false[i]).fetch_add(1);
        break;
      }

      case kMisuse:
        misuse(t, op);
        break;
      case kOpCount:
        break;
    }
  }

  // Releases whatever the script still holds.
  void cleanup(Local& t) KEEL_NO_TSA {
    try {
      for (LocalTimer& lt : t.timers) timer_destroy(lt);
      if (t.holds_m) m_release(t);
      while (t.r_depth > 0) r_release_one(t);
      if (t.b_held > 0) b_release_held(t, static_cast<std::int32_t>(t.b_held));
    } catch (const std::exception& ex) {
      w_.violate("SYNC-3", std::string("releasing what the script held threw ") + typeid(ex).name() + ": " + ex.what());
    }
  }

  void b_release_held(Local& t, std::int32_t n) {
    try {
      w_.b.release(n);
      t.b_held -= n;
      w_.b_released.fetch_add(n);
    } catch (const keel::ValueError&) {
      // Refusing units this thread acquired breaks the bound's accounting,
      // unless an unbacked release was attempted (it may have used the room).
      check(w_.b_wild.load() > 0, "SYNC-5",
            "BoundedSemaphore refused the release of " + std::to_string(n) + " unit(s) the thread had acquired");
      t.b_held = 0;
    }
  }
};

// Both locks are free and nobody waits on their Conditions.
void final_lock_checks(World& w) KEEL_NO_TSA {
  KEEL_FUZZ_CHECK("SYNC-1", w.m.try_lock(), "the Mutex is still locked after every holder released it");
  const std::size_t waiting_m = w.cm.waiting();
  w.m.unlock();
  KEEL_FUZZ_CHECK("SYNC-2", waiting_m == 0, "Condition(Mutex) still has waiters at the end");
  KEEL_FUZZ_CHECK("SYNC-9", w.r.try_lock(), "the RecursiveMutex is still owned at the end");
  const std::uint32_t depth = w.r.depth();
  const std::size_t waiting_r = w.cr.waiting();
  w.r.unlock();
  KEEL_FUZZ_CHECK("SYNC-9", depth == 1, "the RecursiveMutex was taken at depth " + std::to_string(depth) + ", not 1");
  KEEL_FUZZ_CHECK("SYNC-2", waiting_r == 0, "Condition(RecursiveMutex) still has waiters at the end");
}

Config read_config(keel::fuzz::Input& in) {
  Config c{};
  const std::uint8_t h0 = in.byte();
  c.threads = 1 + (h0 & 3);
  c.sem_initial = in.byte() % 4;
  c.bsem_bound = 1 + in.byte() % 4;
  c.parties = 1 + in.byte() % 4;
  static constexpr std::array<std::int64_t, 4> kBarrierDefault = {-1, 0, 100'000, 1'000'000};
  const std::int64_t bd = kBarrierDefault[in.byte() % 4];
  if (bd >= 0) c.barrier_default = Ns(bd);
  c.action_throw_every = in.byte() % 4;
  const std::uint8_t timers = in.byte();
  for (std::size_t i = 0; i < 2; ++i) {
    const std::uint8_t v = static_cast<std::uint8_t>(timers >> (4 * i));
    c.timer_interval[i] = Ns(kTimerNs[v & 7]);
    c.timer_throws[i] = (v & 8) != 0;
  }
  return c;
}

}  // namespace

KEEL_FUZZ_TARGET(sync_ops) {
  const Config cfg = read_config(in);
  World w(cfg);
  std::vector<std::unique_ptr<Local>> locals;
  for (std::size_t i = 0; i < cfg.threads; ++i) {
    auto t = std::make_unique<Local>();
    t->id = i;
    t->budget_ns = keel::fuzz::sanitized() ? 20'000'000 : 10'000'000;
    const std::size_t n = in.byte() % (kMaxOps + 1);
    for (std::size_t k = 0; k < n; ++k) {
      const std::uint8_t code = in.byte();
      const std::uint8_t a = in.byte();
      t->ops.push_back(Op{code, a, in.byte()});
    }
    locals.push_back(std::move(t));
  }

  Runner runner(w);
  w.deadline = Clock::now() + 2s;
  std::vector<std::thread> threads;
  for (auto& t : locals) threads.emplace_back([&runner, &t] { runner.script(*t); });
  while (w.ready.load() < cfg.threads) std::this_thread::yield();
  w.go.store(true);
  runner.rescue_until_done();
  for (std::thread& th : threads) th.join();

  std::string id, what;
  if (w.violated(id, what)) KEEL_FUZZ_CHECK(id.c_str(), false, what);

  // Quiescence: every lock free, every waiter gone, every unit accounted.
  KEEL_FUZZ_CHECK("SYNC-1", w.holders_m.load() == 0 && w.holders_r.load() == 0,
                  "a critical section still has holders after every thread released");
  KEEL_FUZZ_CHECK("SYNC-1", w.crit_m == w.entries_m.load(),
                  "Mutex-guarded counter " + std::to_string(w.crit_m) + " != " + std::to_string(w.entries_m.load()) +
                      " acquisitions");
  KEEL_FUZZ_CHECK("SYNC-1", w.crit_r == w.entries_r.load(),
                  "RecursiveMutex-guarded counter " + std::to_string(w.crit_r) +
                      " != " + std::to_string(w.entries_r.load()) + " acquisitions");
  final_lock_checks(w);

  const std::int64_t s_want = cfg.sem_initial + w.s_released.load() - w.s_acquired.load();
  KEEL_FUZZ_CHECK("SYNC-4", w.s.value() == s_want,
                  "Semaphore value " + std::to_string(w.s.value()) +
                      " != initial + released - acquired = " + std::to_string(s_want));
  const std::int64_t b_want = cfg.bsem_bound + w.b_released.load() - w.b_acquired.load();
  KEEL_FUZZ_CHECK("SYNC-4", w.b.value() == b_want,
                  "BoundedSemaphore value " + std::to_string(w.b.value()) +
                      " != initial + released - acquired = " + std::to_string(b_want));
  KEEL_FUZZ_CHECK("SYNC-5", w.b.value() >= 0 && w.b.value() <= cfg.bsem_bound,
                  "BoundedSemaphore value " + std::to_string(w.b.value()) + " outside [0, bound]");

  // Barrier: one index each per completed generation.
  const std::uint64_t gens = w.action_ok.load();
  KEEL_FUZZ_CHECK("SYNC-7", w.action_runs == gens + w.action_throws.load(), "barrier action runs miscounted");
  KEEL_FUZZ_CHECK("SYNC-8", w.action_faults_seen.load() == w.action_throws.load(),
                  std::to_string(w.action_throws.load()) + " barrier action failures but " +
                      std::to_string(w.action_faults_seen.load()) + " reached a waiter");
  for (std::size_t k = 0; k < cfg.parties; ++k) {
    const std::uint64_t n = w.index_count[k].load();
    // abort() may break a generation that was already released; nothing else may.
    const bool exact = k + 1 == cfg.parties || w.abort_calls.load() == 0;
    KEEL_FUZZ_CHECK("SYNC-7", exact ? n == gens : n <= gens,
                    "barrier index " + std::to_string(k) + " returned " + std::to_string(n) + " times over " +
                        std::to_string(gens) + " completed generations");
  }
  KEEL_FUZZ_CHECK("SYNC-8", w.bar.n_waiting() == 0 && w.inside.load() == 0, "threads left waiting in the Barrier");
  w.bar.reset();
  KEEL_FUZZ_CHECK("SYNC-8", !w.bar.broken() && w.bar.n_waiting() == 0, "Barrier still broken after reset()");

  // Shared timers: the destructor cancels and joins.
  for (std::size_t i = 0; i < 2; ++i) {
    const bool started = w.gt_start_ok[i].load() > 0;
    const bool prevented_now = w.gt[i]->cancel();
    w.gt[i]->join();
    const int runs = w.gt_runs[i].load();
    KEEL_FUZZ_CHECK("SYNC-11", w.gt_start_ok[i].load() <= 1, "Timer::start succeeded more than once");
    KEEL_FUZZ_CHECK("SYNC-11", runs <= 1, "a Timer's callable ran " + std::to_string(runs) + " times");
    KEEL_FUZZ_CHECK("SYNC-11", w.gt_cancel_true[i].load() == 0 || runs == 0,
                    "a Timer's callable ran although cancel() returned true");
    KEEL_FUZZ_CHECK("SYNC-11", w.gt_cancel_false[i].load() == 0 || runs == 1,
                    "cancel() returned false but the Timer's callable never ran");
    KEEL_FUZZ_CHECK("SYNC-11", prevented_now == (runs == 0), "final cancel() disagrees with the callable's runs");
    KEEL_FUZZ_CHECK("SYNC-11", started || runs == 0, "a Timer that was never started ran");
    KEEL_FUZZ_CHECK("SYNC-11", w.gt[i]->finished(), "a cancelled or joined Timer is not finished()");
    KEEL_FUZZ_CHECK("SYNC-11", (w.gt[i]->error() != nullptr) == (runs == 1 && cfg.timer_throws[i]),
                    "Timer::error() does not match whether the callable threw");
    w.gt[i].reset();
  }
}
