// Hostile inputs to every timed call: deadlines at the ends of every clock
// and unit (TIME-1), and the one timeout rule of keel/timeout.hpp (TIME-2):
// "no timeout" is explicit (nullopt / keel::no_timeout), a timeout <= 0 checks
// once and never blocks, a negative timeout is exactly a zero one (never a
// ValueError), and a process-pool task with no time at all fails with
// TimeoutError without being sent to a worker.
//
// "Blocked" is observed (the waiting thread sleeps in a futex), never timed;
// every wait that a bug could make endless is bounded by hang_limit.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/process.hpp"
#include "keel/process/queue.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "keel/sync/barrier.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/recursive_mutex.hpp"
#include "keel/sync/semaphore.hpp"
#include "keel/timeout.hpp"

// The lock cases lock in one function and unlock in another on purpose.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;
using keel_test::eventually;
using keel_test::hang_limit;

namespace {

// ---------------------------------------------------------------- clocks and units

// A user clock that is not steady, with its own epoch (about 100 years before
// the steady clock's) and its own unit (microseconds).
struct CenturyClock {
  using rep = std::int64_t;
  using period = std::micro;
  using duration = std::chrono::microseconds;
  using time_point = std::chrono::time_point<CenturyClock>;
  static constexpr bool is_steady = false;
  static time_point now() {
    return time_point(std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch()) +
                      std::chrono::hours(24 * 365 * 100));
  }
};
static_assert(!CenturyClock::is_steady);

// A coarse custom unit: 64-bit years.
using Years = std::chrono::duration<std::int64_t, std::ratio<31556952>>;
using DoubleSeconds = std::chrono::duration<double>;

template <class T>
struct Tag {
  using type = T;
};

constexpr int clock_count = 3;
const char* const clock_names[clock_count] = {"steady_clock", "system_clock", "a user clock"};
constexpr int unit_count = 7;
const char* const unit_names[unit_count] = {"ns", "us", "ms", "s", "h", "years", "double s"};

template <class F>
decltype(auto) with_unit(int unit, F&& f) {
  switch (unit) {
    case 0:
      return f(Tag<std::chrono::nanoseconds>{});
    case 1:
      return f(Tag<std::chrono::microseconds>{});
    case 2:
      return f(Tag<std::chrono::milliseconds>{});
    case 3:
      return f(Tag<std::chrono::seconds>{});
    case 4:
      return f(Tag<std::chrono::hours>{});
    case 5:
      return f(Tag<Years>{});
    default:
      return f(Tag<DoubleSeconds>{});
  }
}

template <class F>
decltype(auto) with_clock(int clock, F&& f) {
  switch (clock) {
    case 0:
      return f(Tag<std::chrono::steady_clock>{});
    case 1:
      return f(Tag<std::chrono::system_clock>{});
    default:
      return f(Tag<CenturyClock>{});
  }
}

// The extreme values a deadline can take, in any clock and unit.
enum class When {
  max,          // time_point::max()
  max_less_1,   // one unit below max(): no equality test with max() catches it
  huge_future,  // 150 billion years after the epoch (or 3/4 of max() where that does not fit)
  just_ahead,   // about an hour from now, rounded up to the unit (a year for years)
  epoch,        // time_point{}: long past on every clock here
  just_before,  // now rounded down to the unit, less one unit
  huge_past,    // the mirror of huge_future
  min_plus_1,
  min,
};
constexpr When all_whens[] = {When::max,         When::max_less_1, When::huge_future, When::just_ahead, When::epoch,
                              When::just_before, When::huge_past,  When::min_plus_1,  When::min};
const char* when_name(When w) {
  static const char* const names[] = {"max",         "max - 1 unit", "150e9 years ahead", "just ahead", "epoch",
                                      "just before", "huge past",    "min + 1 unit",      "min"};
  return names[static_cast<int>(w)];
}
bool in_future(When w) { return w <= When::just_ahead; }

template <class Clock, class Unit>
std::chrono::time_point<Clock, Unit> time_point_at(When w) {
  using Tp = std::chrono::time_point<Clock, Unit>;
  constexpr bool floating = std::chrono::treat_as_floating_point_v<typename Unit::rep>;
  auto huge = [] {
    using Wide = std::chrono::duration<long double, std::nano>;
    const Years far(150'000'000'000);
    if (std::chrono::duration_cast<Wide>(far) < std::chrono::duration_cast<Wide>(Unit::max())) {
      return std::chrono::duration_cast<Unit>(far);
    }
    return Unit::max() - Unit::max() / 4;
  };
  const auto now = Clock::now();
  switch (w) {
    case When::max:
      return Tp::max();
    case When::max_less_1:
      return Tp::max() - Unit(1);
    case When::huge_future:
      return Tp(huge());
    case When::just_ahead:
      if constexpr (floating) {
        return std::chrono::time_point_cast<Unit>(now + 1h);
      } else {
        return std::chrono::ceil<Unit>(now + 1h);
      }
    case When::epoch:
      return Tp{};
    case When::just_before:
      if constexpr (floating) {
        return std::chrono::time_point_cast<Unit>(now) - Unit(1);
      } else {
        return std::chrono::floor<Unit>(now) - Unit(1);
      }
    case When::huge_past:
      return Tp(-huge());
    case When::min_plus_1:
      return Tp::min() + Unit(1);
    case When::min:
      break;
  }
  return Tp::min();
}

// ---------------------------------------------------------------- the _until entry points

// Each case is a thing that is not ready, one `_until` call that waits for
// it on another thread (true: it got it; false: it reported the timeout),
// and the test thread's way to make it ready.
struct MutexCase {
  keel::Mutex m;
  MutexCase() { m.lock(); }
  template <class Tp>
  bool call(Tp tp) {
    if (!m.try_lock_until(tp)) return false;
    m.unlock();
    return true;
  }
  void release() { m.unlock(); }
  void cleanup(bool released) {
    if (!released) m.unlock();
  }
};

struct RecursiveMutexCase {
  keel::RecursiveMutex m;  // held by the test thread, which releases it
  RecursiveMutexCase() { m.lock(); }
  template <class Tp>
  bool call(Tp tp) {
    if (!m.try_lock_until(tp)) return false;
    m.unlock();
    return true;
  }
  void release() { m.unlock(); }
  void cleanup(bool released) {
    if (!released) m.unlock();
  }
};

struct ConditionCase {
  keel::Condition c;
  template <class Tp>
  bool call(Tp tp) {
    c.lock();
    const bool r = c.wait_until(tp);
    c.unlock();
    return r;
  }
  void release() {
    c.lock();
    c.notify_all();
    c.unlock();
  }
  void cleanup(bool) {}
};

struct ConditionPredicateCase {
  keel::Mutex m;
  keel::Condition c{m};
  bool ready = false;  // guarded by m
  template <class Tp>
  bool call(Tp tp) {
    c.lock();
    const bool r = c.wait_until(tp, [&] { return ready; });
    c.unlock();
    return r;
  }
  void release() {
    c.lock();
    ready = true;
    c.notify_all();
    c.unlock();
  }
  void cleanup(bool) {}
};

struct SemaphoreCase {
  keel::Semaphore s{0};
  template <class Tp>
  bool call(Tp tp) {
    return s.try_acquire_until(tp);
  }
  void release() { s.release(); }
  void cleanup(bool) {}
};

struct EventCase {
  keel::Event e;
  template <class Tp>
  bool call(Tp tp) {
    return e.wait_until(tp);
  }
  void release() { e.set(); }
  void cleanup(bool) {}
};

struct BarrierCase {
  keel::Barrier b{2};
  template <class Tp>
  bool call(Tp tp) {
    try {
      b.wait_until(tp);
      return true;
    } catch (const keel::BrokenBarrierError&) {
      return false;  // its timeout passed: the barrier broke
    }
  }
  void release() {
    try {
      b.wait_for(hang_limit);
    } catch (const keel::BrokenBarrierError&) {
    }
  }
  void cleanup(bool) {}
};

struct FutureWaitCase {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  template <class Tp>
  bool call(Tp tp) {
    return f.wait_until(tp);
  }
  void release() { p.set_result(7); }
  void cleanup(bool) {}
};

struct FutureResultCase {
  keel::Promise<int> p;
  keel::Future<int> f = p.get_future();
  template <class Tp>
  bool call(Tp tp) {
    try {
      return f.result_until(tp) == 7;
    } catch (const keel::TimeoutError&) {
      return false;
    }
  }
  void release() { p.set_result(7); }
  void cleanup(bool) {}
};

constexpr int entry_count = 9;
const char* const entry_names[entry_count] = {"Mutex::try_lock_until",        "RecursiveMutex::try_lock_until",
                                              "Condition::wait_until",        "Condition::wait_until(pred)",
                                              "Semaphore::try_acquire_until", "Event::wait_until",
                                              "Barrier::wait_until",          "Future::wait_until",
                                              "Future::result_until"};

template <class F>
decltype(auto) with_entry(int entry, F&& f) {
  switch (entry) {
    case 0:
      return f(Tag<MutexCase>{});
    case 1:
      return f(Tag<RecursiveMutexCase>{});
    case 2:
      return f(Tag<ConditionCase>{});
    case 3:
      return f(Tag<ConditionPredicateCase>{});
    case 4:
      return f(Tag<SemaphoreCase>{});
    case 5:
      return f(Tag<EventCase>{});
    case 6:
      return f(Tag<BarrierCase>{});
    case 7:
      return f(Tag<FutureWaitCase>{});
    default:
      return f(Tag<FutureResultCase>{});
  }
}

// Waits until the thread sleeps in a futex (seen twice, 2 ms apart) while
// `done` is still false. False when it finished first: it did not block.
// Where /proc cannot tell, a 50 ms pause decides.
bool sleeps_without_returning(const keel_test::TidThread& t, const std::atomic<bool>& done) {
  const auto end = std::chrono::steady_clock::now() + hang_limit;
  int seen = 0;
  for (;;) {
    if (done.load()) return false;
    const keel_test::SyscallState st = keel_test::syscall_state(t.tid());
    if (!st.known) {
      std::this_thread::sleep_for(50ms);
      return !done.load();
    }
    seen = st.blocked && st.number == SYS_futex ? seen + 1 : 0;
    if (seen >= 2) return !done.load();
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(2ms);
  }
}

// Runs one entry point with one deadline. Returns "" when it behaved (a
// future deadline: blocked until released, then succeeded; a past one:
// returned at once with a timeout), else what went wrong. Always leaves the
// waiting thread joined.
template <class Case, class Tp>
std::string check_until(Tp tp, bool future) {
  Case c;
  std::atomic<bool> done{false};
  std::atomic<bool> got{false};
  keel_test::TidThread waiter([&] {
    got.store(c.call(tp));
    done.store(true);
  });
  std::string problem;
  bool released = false;
  if (future) {
    if (!sleeps_without_returning(waiter, done)) problem = "did not block for a deadline in the future";
    c.release();
    released = true;
    if (!eventually([&] { return done.load(); })) {
      problem += " / never returned after it was made ready";
    } else if (!got.load()) {
      problem += " / reported a timeout although it was made ready";
    }
  } else {
    if (!eventually([&] { return done.load(); })) {
      problem = "blocked for a deadline in the past";
      c.release();  // let it go, so the thread can be joined
      released = true;
      (void)eventually([&] { return done.load(); });
    } else if (got.load()) {
      problem = "succeeded although nothing was ready";
    }
  }
  waiter.join();
  c.cleanup(released);
  return problem;
}

std::string check_until(int entry, int clock, int unit, When when) {
  return with_entry(entry, [&](auto entry_tag) {
    using Case = typename decltype(entry_tag)::type;
    return with_clock(clock, [&](auto clock_tag) {
      using Clock = typename decltype(clock_tag)::type;
      return with_unit(unit, [&](auto unit_tag) {
        using Unit = typename decltype(unit_tag)::type;
        return check_until<Case>(time_point_at<Clock, Unit>(when), in_future(when));
      });
    });
  });
}

std::string describe(int entry, int clock, int unit, When when) {
  return std::string(entry_names[entry]) + " on " + clock_names[clock] + " in " + unit_names[unit] + " at " +
         when_name(when);
}

}  // namespace

// The issue's own example on every entry point and clock: a deadline 150
// billion years ahead, in seconds, blocks until the thing is ready.
TEST(HostileDeadline, FarFutureInSecondsBlocksOnEveryUntilAndClock) {
  for (int entry = 0; entry < entry_count; ++entry) {
    for (int clock = 0; clock < clock_count; ++clock) {
      const std::string problem = check_until(entry, clock, 3, When::huge_future);
      EXPECT_EQ(problem, "") << describe(entry, clock, 3, When::huge_future);
    }
  }
}

// Every `_until` of the sync primitives and futures, on three clocks, in
// seven units, at the extremes: future deadlines block until released,
// past ones return at once with a timeout.
TEST(HostileDeadline, EveryUntilSaturatesOnEveryClockAndUnit) {
  EXPECT_TRUE(keel_test::rc_check("every _until saturates", 250, 100, [] {
    const int entry = *rc::gen::inRange(0, entry_count);
    const int clock = *rc::gen::inRange(0, clock_count);
    const int unit = *rc::gen::inRange(0, unit_count);
    const When when = *rc::gen::elementOf(std::vector<When>(std::begin(all_whens), std::end(all_whens)));
    const std::string problem = check_until(entry, clock, unit, when);
    RC_LOG() << describe(entry, clock, unit, when) << ": " << problem << "\n";
    RC_ASSERT(problem.empty());
  }));
}

// ---------------------------------------------------------------- the timeout rule

namespace {

// What a timed call did, as text, so outcomes compare with EXPECT_EQ.
template <class F>
std::string outcome_of(F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const keel::RejectedError& e) {
    return "RejectedError(" + std::to_string(static_cast<int>(e.reason())) + ")";
  } catch (const keel::TimeoutError&) {
    return "TimeoutError";
  } catch (const keel::BrokenBarrierError&) {
    return "BrokenBarrierError";
  } catch (const keel::ValueError& e) {
    return std::string("ValueError: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("other error: ") + e.what();
  }
}
std::string text(bool b) { return b ? "true" : "false"; }
std::string rejected_text(keel::RejectedError::Reason r) {
  return "RejectedError(" + std::to_string(static_cast<int>(r)) + ")";
}

// Runs `call` on another thread; if it has not returned within hang_limit
// (it blocked: a bug), `unstick` makes its thing ready so it can be joined,
// and the result says so.
std::string bounded(const std::function<std::string()>& call, const std::function<void()>& unstick) {
  std::atomic<bool> done{false};
  std::string r;
  std::thread t([&] {
    r = outcome_of(call);
    done.store(true);
  });
  const bool returned = eventually([&] { return done.load(); });
  if (!returned) unstick();
  t.join();
  return returned ? r : "blocked (then released): " + r;
}

// Calls f with "zero" in several types, then with negative values of every
// kind: f's outcome for each must equal its outcome for zero.
template <class F>
void expect_negative_is_zero(const char* what, const std::string& timed_out, F f) {
  SCOPED_TRACE(what);
  const std::string zero = f(std::chrono::nanoseconds::zero());
  EXPECT_EQ(zero, timed_out) << "zero";
  EXPECT_EQ(f(std::chrono::hours::zero()), zero) << "0h";
  EXPECT_EQ(f(std::chrono::duration<double>(0.0)), zero) << "0.0 s";
  EXPECT_EQ(f(-1ns), zero) << "-1ns";
  EXPECT_EQ(f(-1ms), zero) << "-1ms";
  EXPECT_EQ(f(-1h), zero) << "-1h";
  EXPECT_EQ(f(std::chrono::nanoseconds::min()), zero) << "nanoseconds::min()";
  EXPECT_EQ(f(std::chrono::hours::min()), zero) << "hours::min()";
  EXPECT_EQ(f(std::chrono::duration<double>(-0.5)), zero) << "-0.5 s";
  EXPECT_EQ(f(std::chrono::duration<double>(-std::numeric_limits<double>::infinity())), zero) << "-inf s";
  EXPECT_EQ(f(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())), zero) << "NaN s";
}

// For option fields, which hold nanoseconds.
template <class D>
std::chrono::nanoseconds ns(D d) {
  return keel::platform::saturating_nanoseconds(d);
}

}  // namespace

TEST(HostileTimeout, NegativeIsZeroForEverySyncWait) {
  expect_negative_is_zero("Mutex::try_lock_for", "false", [](auto d) {
    auto m = std::make_shared<keel::Mutex>();
    m->lock();
    const std::string r = bounded([&] { return text(m->try_lock_for(d)); }, [&] { m->unlock(); });
    if (m->is_locked()) m->unlock();
    return r;
  });
  expect_negative_is_zero("RecursiveMutex::try_lock_for", "false", [](auto d) {
    keel::RecursiveMutex m;
    m.lock();  // held here; tried from the bounded thread
    const std::string r = bounded(
        [&] {
          const bool got = m.try_lock_for(d);
          if (got) m.unlock();
          return text(got);
        },
        [&] { m.unlock(); });
    if (m.is_owned()) m.unlock();
    return r;
  });
  expect_negative_is_zero("Condition::wait_for", "false", [](auto d) {
    keel::Condition c;
    return bounded(
        [&] {
          keel::LockGuard<keel::Condition> g(c);
          return text(c.wait_for(d));
        },
        [&] {
          keel::LockGuard<keel::Condition> g(c);
          c.notify_all();
        });
  });
  expect_negative_is_zero("Condition::wait_for(pred)", "false", [](auto d) {
    keel::Condition c;
    std::atomic<bool> ready{false};
    return bounded(
        [&] {
          keel::LockGuard<keel::Condition> g(c);
          return text(c.wait_for(d, [&] { return ready.load(); }));
        },
        [&] {
          keel::LockGuard<keel::Condition> g(c);
          ready.store(true);
          c.notify_all();
        });
  });
  expect_negative_is_zero("Semaphore::try_acquire_for", "false", [](auto d) {
    keel::Semaphore s(0);
    return bounded([&] { return text(s.try_acquire_for(d)); }, [&] { s.release(); });
  });
  expect_negative_is_zero("Event::wait_for", "false", [](auto d) {
    keel::Event e;
    return bounded([&] { return text(e.wait_for(d)); }, [&] { e.set(); });
  });
  expect_negative_is_zero("Barrier::wait_for", "BrokenBarrierError", [](auto d) {
    keel::Barrier b(2);
    return bounded([&] { return std::to_string(b.wait_for(d)); }, [&] { b.abort(); });
  });
  // The barrier's default timeout is a timeout too: no ValueError.
  expect_negative_is_zero("Barrier default timeout", "BrokenBarrierError", [](auto d) {
    return outcome_of([&] {
      keel::Barrier b(2, {}, ns(d));
      return bounded([&] { return std::to_string(b.wait()); }, [&] { b.abort(); });
    });
  });
}

TEST(HostileTimeout, NegativeIsZeroForEveryFutureWait) {
  keel::Promise<int> p;
  const keel::Future<int> f = p.get_future();
  const std::vector<keel::Future<int>> fs{f};
  // A call that blocked (a bug) is let go by deciding the future; the
  // outcomes after that differ from zero's, so the test still fails.
  auto unstick = [&] {
    try {
      p.set_result(0);
    } catch (const keel::InvalidStateError&) {
    }
  };
  expect_negative_is_zero("Future::wait_for", "false",
                          [&](auto d) { return bounded([&] { return text(f.wait_for(d)); }, unstick); });
  expect_negative_is_zero("Future::result(timeout)", "TimeoutError",
                          [&](auto d) { return bounded([&] { return std::to_string(f.result(d)); }, unstick); });
  expect_negative_is_zero("Future::exception(timeout)", "TimeoutError",
                          [&](auto d) { return bounded([&] { return text(f.exception(d) != nullptr); }, unstick); });
  expect_negative_is_zero("keel::wait", "0 done", [&](auto d) {
    return bounded([&] { return std::to_string(keel::wait(fs, d).done.size()) + " done"; }, unstick);
  });
  expect_negative_is_zero("keel::as_completed", "TimeoutError", [&](auto d) {
    return bounded(
        [&] {
          auto it = keel::as_completed(fs, d);
          return text(it.next().has_value());
        },
        unstick);
  });
  unstick();
}

TEST(HostileTimeout, ThreadPoolBlockTimeoutNegativeIsZeroAndNoneIsExplicit) {
  EXPECT_EQ(keel::ThreadPoolOptions{}.block_timeout, keel::no_timeout);  // the default: wait for room for ever
  expect_negative_is_zero("ThreadPoolExecutor block_timeout", rejected_text(keel::RejectedError::Reason::timed_out),
                          [](auto d) {
                            return outcome_of([&] {
                              keel::Event gate;
                              keel::ThreadPoolOptions o;
                              o.max_threads = 1;
                              o.queue_capacity = 1;
                              o.reject = keel::RejectPolicy::block;
                              o.block_timeout = ns(d);
                              keel::ThreadPoolExecutor pool(o);
                              std::atomic<bool> started{false};
                              auto held = pool.submit([&] {
                                started.store(true);
                                gate.wait();
                              });
                              EXPECT_TRUE(eventually([&] { return started.load(); }));
                              auto queued = pool.submit([] {});  // fills the queue
                              const std::string r = bounded(
                                  [&] {
                                    pool.submit([] {});
                                    return std::string("accepted");
                                  },
                                  [&] { gate.set(); });
                              gate.set();
                              return r;
                            });
                          });
  expect_negative_is_zero("ThreadPoolExecutor::await_termination", "false", [](auto d) {
    keel::ThreadPoolExecutor pool(keel::ThreadPoolOptions{.max_threads = 1});
    return bounded([&] { return text(pool.await_termination(d)); }, [&] { pool.shutdown({.wait = false}); });
  });
}

// ---------------------------------------------------------------- process pool

namespace {

// Creates the file at `path`: the task ran.
int mark(std::string path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  return static_cast<int>(::getpid());
}
// Waits (bounded) until the file at `path` exists, then returns the pid.
int wait_for_file(std::string path) {
  struct stat st {};
  for (int i = 0; i < 60000 && ::stat(path.c_str(), &st) != 0; ++i) ::usleep(1000);
  return static_cast<int>(::getpid());
}
int worker_pid(int) { return static_cast<int>(::getpid()); }

inline const auto mark_t = keel::register_task("hostile.timeout.mark", mark);
inline const auto wait_for_file_t = keel::register_task("hostile.timeout.wait_for_file", wait_for_file);
inline const auto worker_pid_t = keel::register_task("hostile.timeout.worker_pid", worker_pid);

// A scratch path, removed at the end of the test. open() creates it.
class Scratch {
 public:
  explicit Scratch(const char* what) {
    static int n = 0;
    path_ = std::string("/tmp/keel-hostile-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    ::unlink(path_.c_str());
  }
  ~Scratch() { ::unlink(path_.c_str()); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }
  bool exists() const {
    struct stat st {};
    return ::stat(path_.c_str(), &st) == 0;
  }
  void open() const { (void)mark(path_); }

 private:
  std::string path_;
};

// Creates the gate file when the test ends, however it ends, so a task
// waiting for it returns and the pool can shut down. Declare after the pool.
struct OpenAtExit {
  const Scratch& gate;
  ~OpenAtExit() { gate.open(); }
};

template <class T>
std::string final_outcome(const keel::Future<T>& f) {
  if (!f.wait_for(hang_limit)) return "still pending";
  return outcome_of([&] { return "value " + std::to_string(f.result()); });
}

}  // namespace

// SubmitOptions{.timeout = 0ns} (or any negative) is no time at all: the
// future fails with TimeoutError and the task is never sent to a worker, so
// no worker is killed or replaced for it.
TEST(HostileTimeout, ProcessPoolZeroSubmitTimeoutFailsWithoutRunning) {
  keel::ProcessPool pool({.workers = 1});
  const int worker = pool.submit(worker_pid_t, 0).result();
  const auto before = pool.stats();
  const std::vector<std::chrono::nanoseconds> nothing{0ns, -1ns, -1h, std::chrono::nanoseconds::min()};
  std::vector<std::unique_ptr<Scratch>> marks;
  for (const auto d : nothing) {
    marks.push_back(std::make_unique<Scratch>("mark"));
    auto f = pool.submit(keel::SubmitOptions{.timeout = d}, mark_t, marks.back()->path());
    EXPECT_EQ(final_outcome(f), "TimeoutError") << d.count() << " ns";
  }
  // A later task on the only worker has run: nothing sent before it is left.
  EXPECT_EQ(pool.submit(worker_pid_t, 0).result(), worker);
  for (const auto& m : marks) EXPECT_FALSE(m->exists()) << "a task with no time ran";
  EXPECT_EQ(pool.worker_pids(), std::vector<int>{worker});
  // Counted as submitted and timed out (the supervisor publishes its part
  // after its turn, so the last task may show up a moment later).
  EXPECT_TRUE(eventually([&] {
    const auto s = pool.stats();
    return s.submitted == before.submitted + nothing.size() + 1 && s.timed_out == before.timed_out + nothing.size();
  })) << "submitted "
      << pool.stats().submitted << ", timed out " << pool.stats().timed_out;
  const auto after = pool.stats();
  EXPECT_EQ(after.spawned, before.spawned);
  EXPECT_EQ(after.deaths, before.deaths);
}

// The pool's task_timeout follows the same rule; a per-task timeout
// overrides it, and keel::no_timeout is none.
TEST(HostileTimeout, ProcessPoolZeroTaskTimeoutFailsWithoutRunning) {
  EXPECT_EQ(keel::ProcessPoolOptions{}.task_timeout, keel::no_timeout);  // the default: none
  EXPECT_EQ(keel::ProcessPoolOptions{}.block_timeout, keel::no_timeout);
  EXPECT_EQ(keel::SubmitOptions{}.timeout, keel::no_timeout);  // the pool's
  for (const std::chrono::nanoseconds d : {0ns, std::chrono::nanoseconds(-1ms)}) {
    keel::ProcessPool pool({.workers = 1, .task_timeout = d});
    const int worker = pool.submit(keel::SubmitOptions{.timeout = hang_limit}, worker_pid_t, 0).result();
    Scratch skipped("skipped");
    EXPECT_EQ(final_outcome(pool.submit(mark_t, skipped.path())), "TimeoutError") << d.count() << " ns";
    Scratch ran("ran");
    EXPECT_EQ(final_outcome(pool.submit(keel::SubmitOptions{.timeout = hang_limit}, mark_t, ran.path())),
              "value " + std::to_string(worker));
    EXPECT_TRUE(ran.exists());
    EXPECT_FALSE(skipped.exists()) << "a task with no time ran";
    EXPECT_EQ(pool.worker_pids(), std::vector<int>{worker});
  }
  // None, explicitly: a task that takes a while is not cut short.
  keel::ProcessPool none({.workers = 1, .task_timeout = keel::no_timeout});
  Scratch gate("gate");
  OpenAtExit opener{gate};
  auto waiting = none.submit(keel::SubmitOptions{.timeout = keel::no_timeout}, wait_for_file_t, gate.path());
  EXPECT_FALSE(waiting.wait_for(20ms));  // still running: no timeout cut it short
  gate.open();
  EXPECT_EQ(final_outcome(waiting), "value " + std::to_string(none.worker_pids().at(0)));
}

// A task with no time is refused like any other after shutdown: the refusal
// comes first (RejectedError(shutdown), not TimeoutError).
TEST(HostileTimeout, ProcessPoolZeroTimeoutAfterShutdownIsRejected) {
  keel::ProcessPool pool({.workers = 1});
  pool.shutdown();
  Scratch m("mark");
  std::optional<keel::RejectedError::Reason> reason;
  try {
    pool.submit(keel::SubmitOptions{.timeout = 0ns}, mark_t, m.path());
  } catch (const keel::RejectedError& e) {
    reason = e.reason();
  }
  EXPECT_EQ(reason, keel::RejectedError::Reason::shutdown);
  EXPECT_FALSE(m.exists());
}

// block_timeout <= 0: a full queue refuses at once, with the same error
// whether it is zero or negative (no ValueError).
TEST(HostileTimeout, ProcessPoolBlockTimeoutNegativeIsZero) {
  std::vector<std::string> outcomes;
  for (const std::chrono::nanoseconds d : {0ns, -1ns, std::chrono::nanoseconds(-1h)}) {
    outcomes.push_back(outcome_of([&] {
      Scratch gate("gate");
      keel::ProcessPoolOptions o;
      o.workers = 1;
      o.max_in_flight = 1;  // the worker holds only the task it runs: the rest wait in the parent
      o.queue_capacity = 1;
      o.reject = keel::RejectPolicy::block;
      o.block_timeout = d;
      keel::ProcessPool pool(o);
      OpenAtExit opener{gate};
      auto held = pool.submit(wait_for_file_t, gate.path());
      EXPECT_TRUE(eventually([&] {
        const auto s = pool.stats();
        return held.running() && s.in_flight == 1 && s.queued == 0;
      })) << "the holding task never started";
      auto queued = pool.submit(worker_pid_t, 1);  // fills the queue
      return bounded(
          [&] {
            pool.submit(worker_pid_t, 2);
            return std::string("accepted");
          },
          [&] { gate.open(); });
    }));
  }
  const std::string timed_out = rejected_text(keel::RejectedError::Reason::timed_out);
  EXPECT_EQ(outcomes, (std::vector<std::string>{timed_out, timed_out, timed_out}));
}

TEST(HostileTimeout, NegativeIsZeroForProcessWaits) {
  {
    keel::ProcessPool pool({.workers = 1});
    expect_negative_is_zero("ProcessPool::await_termination", "false", [&](auto d) {
      return bounded([&] { return text(pool.await_termination(d)); }, [&] { pool.shutdown({.wait = false}); });
    });
  }
  {
    Scratch gate("gate");
    keel::Process child(wait_for_file_t, gate.path());
    child.start();
    OpenAtExit opener{gate};
    expect_negative_is_zero("Process::join(timeout)", "false",
                            [&](auto d) { return bounded([&] { return text(child.join(d)); }, [&] { gate.open(); }); });
    gate.open();
    child.join();
  }
  {
    keel::Pipe p;
    expect_negative_is_zero("Connection::poll(timeout)", "false", [&](auto d) {
      return bounded([&] { return text(p.second.poll(d)); }, [&] { p.first.send_bytes("x"); });
    });
    expect_negative_is_zero("Connection::recv_bytes(timeout)", "TimeoutError", [&](auto d) {
      return bounded([&] { return p.second.recv_bytes(d); }, [&] { p.first.send_bytes("x"); });
    });
  }
  {
    keel_test::ShmName name("hostile-q");
    auto q = keel::ProcessQueue::create(name.str(), {.capacity = 1, .max_message = 16});
    expect_negative_is_zero("ProcessQueue::get(timeout)", "TimeoutError", [&](auto d) {
      return bounded([&] { return std::to_string(q.get<int>(d)); }, [&] { q.put(1); });
    });
    q.put(1);  // full
    expect_negative_is_zero("ProcessQueue::put(timeout)", "TimeoutError", [&](auto d) {
      return bounded(
          [&] {
            q.put(2, d);
            return std::string("put");
          },
          [&] { (void)q.get<int>(); });
    });
  }
}
