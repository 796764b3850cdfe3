// Bounded submission for ProcessPool (POOL-10): queue_capacity and the
// thread pool's rejection policies, with the same names, errors and meanings.
//
// Two parts. The edge (keel::pool::Edge) alone, with a fake doorbell and the
// test playing the supervisor (take, set_queued): every policy, the counting
// of what waits, and the blocked submitter woken by room, shutdown,
// terminate and a break; no processes. Then end to end with real workers:
// one worker that takes one task at a time (max_in_flight 1), held by a task
// that waits for a gate file, so what the test submits next waits in the
// parent, where the bound applies; then fill and overflow. Time bounds are
// generous (keel_test::hang_limit) and only lower bounds on elapsed time
// are asserted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/executor/reject_policy.hpp"
#include "keel/process/process.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "kernel/src/process_pool/edge.hpp"
#include "kernel/src/process_pool/machine.hpp"

namespace {

using namespace std::chrono_literals;
using keel::Future;
using keel::ProcessPool;
using keel::ProcessPoolOptions;
using keel::RejectedError;
using keel::RejectPolicy;
using keel::pool::Admission;
using keel::pool::Bound;
using keel::pool::Command;
using keel::pool::Edge;
using keel::pool::Nanos;
using keel_test::eventually;
using Reason = RejectedError::Reason;

template <class F>
std::optional<Reason> rejected_reason(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const RejectedError& e) {
    return e.reason();
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- the edge

struct FakeBell final : keel::pool::Doorbell {
  std::atomic<int> rings{0};
  void ring() override { rings.fetch_add(1); }
};

// What a supervisor's take() hands over, by kind.
struct Taken {
  std::vector<Command> cmds;
  std::size_t count(Command::Kind k) const {
    std::size_t n = 0;
    for (const auto& c : cmds) n += c.kind == k ? 1 : 0;
    return n;
  }
};
Taken take(Edge& e) {
  Taken t;
  e.take(t.cmds);
  return t;
}

Command shutdown_command(bool cancel_futures = false) {
  Command c;
  c.kind = Command::shutdown;
  c.cancel_futures = cancel_futures;
  return c;
}

Bound bound(std::size_t capacity, RejectPolicy p, Nanos block_timeout = Nanos::max()) {
  return Bound{capacity, p, block_timeout};
}

// A submitter thread whose outcome the test reads once it has returned.
class Submitter {
 public:
  explicit Submitter(Edge& e) : t_([this, &e] { run(e); }) {}
  ~Submitter() {
    if (t_.joinable()) t_.join();
  }
  bool finished() const { return done_.load(); }
  // Joins, failing the test instead of hanging if the submission never returns.
  bool join() {
    if (!eventually([&] { return finished(); })) {
      ADD_FAILURE() << "a blocked submission never returned";
      return false;
    }
    t_.join();
    return true;
  }
  std::optional<Admission> admitted;
  std::optional<Reason> rejected;
  bool broken = false;

 private:
  void run(Edge& e) {
    try {
      admitted = e.submit(Nanos::zero(), nullptr);
    } catch (const RejectedError& x) {
      rejected = x.reason();
    } catch (const keel::BrokenProcessPool&) {
      broken = true;
    }
    done_.store(true);
  }
  std::atomic<bool> done_{false};
  std::thread t_;
};

TEST(EdgeBound, UnboundedAcceptsEverythingAndRingsOncePerEmptyInbox) {
  FakeBell bell;
  Edge e(bell);
  for (int i = 1; i <= 100; ++i) {
    const Admission a = e.submit(Nanos::zero(), nullptr);
    EXPECT_EQ(a.kind, Admission::queued);
    EXPECT_EQ(a.task, static_cast<keel::pool::TaskId>(i));
  }
  EXPECT_EQ(bell.rings.load(), 1);
  EXPECT_EQ(e.waiting(), 100u);
  EXPECT_EQ(take(e).count(Command::submit), 100u);
  EXPECT_EQ(e.rejected(), 0u);
}

TEST(EdgeBound, AbortRefusesBeyondCapacityWithSaturated) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(2, RejectPolicy::abort));
  EXPECT_EQ(e.submit(Nanos::zero(), nullptr).task, 1u);
  EXPECT_EQ(e.submit(Nanos::zero(), nullptr).task, 2u);
  EXPECT_EQ(rejected_reason([&] { e.submit(Nanos::zero(), nullptr); }), Reason::saturated);
  EXPECT_EQ(e.rejected(), 1u);
  EXPECT_EQ(e.waiting(), 2u);
  // Nothing of the refused one was queued, and it used no id.
  EXPECT_EQ(take(e).count(Command::submit), 2u);
  // Taken, the two still count (as queued) until the supervisor reports.
  EXPECT_EQ(e.waiting(), 2u);
  EXPECT_EQ(rejected_reason([&] { e.submit(Nanos::zero(), nullptr); }), Reason::saturated);
  e.set_queued(1);  // a worker took one
  EXPECT_EQ(e.submit(Nanos::zero(), nullptr).task, 3u);
  EXPECT_EQ(e.rejected(), 2u);
}

// The edge's view never runs below the truth: submits taken and not yet
// reported are counted, so a submission between take() and the report
// cannot get past the bound.
TEST(EdgeBound, SubmitsTakenAreCountedUntilTheNextReport) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(1, RejectPolicy::abort));
  e.submit(Nanos::zero(), nullptr);
  EXPECT_EQ(take(e).count(Command::submit), 1u);
  EXPECT_EQ(e.waiting(), 1u);
  EXPECT_EQ(rejected_reason([&] { e.submit(Nanos::zero(), nullptr); }), Reason::saturated);
  e.set_queued(0);
  EXPECT_EQ(e.waiting(), 0u);
  EXPECT_EQ(e.submit(Nanos::zero(), nullptr).kind, Admission::queued);
}

TEST(EdgeBound, CallerRunsAndDiscardHandTheTaskBackAndQueueNothing) {
  for (const auto p : {RejectPolicy::caller_runs, RejectPolicy::discard}) {
    FakeBell bell;
    Edge e(bell);
    e.set_bound(bound(1, p));
    EXPECT_EQ(e.submit(Nanos::zero(), nullptr).kind, Admission::queued);
    const Admission a = e.submit(Nanos::zero(), nullptr);
    EXPECT_EQ(a.kind, p == RejectPolicy::caller_runs ? Admission::run_here : Admission::discard);
    EXPECT_EQ(a.task, 0u);
    EXPECT_EQ(e.rejected(), 1u);
    EXPECT_EQ(e.waiting(), 1u);
    const Taken t = take(e);
    EXPECT_EQ(t.cmds.size(), 1u);
    EXPECT_EQ(bell.rings.load(), 1);
  }
}

// The discard goes in before the new submit: the supervisor takes commands
// in order, so it reaches the machine after every earlier submit.
TEST(EdgeBound, DiscardOldestQueuesTheDiscardBeforeTheNewSubmit) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(2, RejectPolicy::discard_oldest));
  e.submit(Nanos::zero(), nullptr);
  e.submit(Nanos::zero(), nullptr);
  const Admission a = e.submit(Nanos::zero(), nullptr);
  EXPECT_EQ(a.kind, Admission::queued);
  EXPECT_EQ(a.task, 3u);
  EXPECT_EQ(e.rejected(), 1u);
  const Taken t = take(e);
  ASSERT_EQ(t.cmds.size(), 4u);
  EXPECT_EQ(t.cmds[0].kind, Command::submit);
  EXPECT_EQ(t.cmds[1].kind, Command::submit);
  EXPECT_EQ(t.cmds[2].kind, Command::discard_oldest);
  EXPECT_EQ(t.cmds[3].kind, Command::submit);
  EXPECT_EQ(t.cmds[3].task, 3u);
  // Until the supervisor reports, the view counts the new task on top of
  // the one it will discard (documented): the next submit discards again.
  EXPECT_EQ(e.waiting(), 3u);
  e.set_queued(2);
  EXPECT_EQ(e.submit(Nanos::zero(), nullptr).kind, Admission::queued);
  EXPECT_EQ(take(e).count(Command::discard_oldest), 1u);
  EXPECT_EQ(e.rejected(), 2u);
  EXPECT_EQ(bell.rings.load(), 2);
}

TEST(EdgeBound, BlockedSubmitterIsWokenByRoomAndNotBefore) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(1, RejectPolicy::block));
  e.submit(Nanos::zero(), nullptr);
  Submitter s(e);
  ASSERT_TRUE(eventually([&] { return e.blocked() == 1; }));
  take(e);
  e.set_queued(1);  // still full: it stays blocked
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(s.finished());
  EXPECT_EQ(e.blocked(), 1u);
  e.set_queued(0);  // a worker took it: room
  ASSERT_TRUE(s.join());
  ASSERT_TRUE(s.admitted.has_value());
  EXPECT_EQ(s.admitted->kind, Admission::queued);
  EXPECT_EQ(s.admitted->task, 2u);
  EXPECT_EQ(e.blocked(), 0u);
  EXPECT_EQ(e.rejected(), 0u);
}

TEST(EdgeBound, OneSlotWakesTheBlockedSubmittersAndAdmitsOneAtATime) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(1, RejectPolicy::block));
  e.submit(Nanos::zero(), nullptr);
  take(e);
  Submitter s1(e), s2(e);
  ASSERT_TRUE(eventually([&] { return e.blocked() == 2; }));
  e.set_queued(0);
  ASSERT_TRUE(eventually([&] { return s1.finished() || s2.finished(); }));
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(s1.finished() && s2.finished());  // one slot, one admission
  EXPECT_TRUE(eventually([&] { return e.blocked() == 1; }));
  take(e);
  e.set_queued(0);
  ASSERT_TRUE(s1.join());
  ASSERT_TRUE(s2.join());
  ASSERT_TRUE(s1.admitted && s2.admitted);
  EXPECT_NE(s1.admitted->task, s2.admitted->task);
}

TEST(EdgeBound, BlockTimesOutWithRejectedTimedOut) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(1, RejectPolicy::block, 30ms));
  e.submit(Nanos::zero(), nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(rejected_reason([&] { e.submit(Nanos::zero(), nullptr); }), Reason::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
  EXPECT_EQ(e.rejected(), 1u);
  EXPECT_EQ(e.blocked(), 0u);
  // A zero timeout looks once and gives up at once.
  Edge z(bell);
  z.set_bound(bound(1, RejectPolicy::block, 0ns));
  z.submit(Nanos::zero(), nullptr);
  EXPECT_EQ(rejected_reason([&] { z.submit(Nanos::zero(), nullptr); }), Reason::timed_out);
}

TEST(EdgeBound, BlockedSubmitterIsRefusedByShutdownAndTerminate) {
  for (int kind = 0; kind < 3; ++kind) {
    FakeBell bell;
    Edge e(bell);
    e.set_bound(bound(1, RejectPolicy::block));
    e.submit(Nanos::zero(), nullptr);
    Submitter s(e);
    ASSERT_TRUE(eventually([&] { return e.blocked() == 1; }));
    Command c = shutdown_command(kind == 1);
    if (kind == 2) {
      c.kind = Command::terminate;
      c.signal = 9;
    }
    e.request(c);
    ASSERT_TRUE(s.join());
    EXPECT_EQ(s.rejected, Reason::shutdown) << "closer " << kind;
    // The first submit and the closing command, nothing else.
    const Taken t = take(e);
    EXPECT_EQ(t.count(Command::submit), 1u);
    EXPECT_EQ(t.cmds.size(), 2u);
  }
}

TEST(EdgeBound, BlockedSubmitterFailsWithBrokenProcessPoolWhenThePoolBreaks) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(1, RejectPolicy::block));
  e.submit(Nanos::zero(), nullptr);
  Submitter s(e);
  ASSERT_TRUE(eventually([&] { return e.blocked() == 1; }));
  e.set_broken("ProcessPool is broken: test");
  ASSERT_TRUE(s.join());
  EXPECT_TRUE(s.broken);
  EXPECT_THROW(e.submit(Nanos::zero(), nullptr), keel::BrokenProcessPool);
}

TEST(EdgeBound, AfterShutdownEverySubmissionIsRefusedWhateverThePolicy) {
  for (const auto p : {RejectPolicy::abort, RejectPolicy::caller_runs, RejectPolicy::discard,
                       RejectPolicy::discard_oldest, RejectPolicy::block}) {
    FakeBell bell;
    Edge e(bell);
    e.set_bound(bound(1, p));
    e.request(shutdown_command());
    // With room, and with the queue full.
    EXPECT_EQ(rejected_reason([&] { e.submit(Nanos::zero(), nullptr); }), Reason::shutdown);
    EXPECT_EQ(rejected_reason([&] { e.submit(Nanos::zero(), nullptr); }), Reason::shutdown);
    EXPECT_EQ(e.rejected(), 2u);
    EXPECT_EQ(take(e).count(Command::submit), 0u);
  }
}

// A submission that would wait for room on the supervisor thread (a done
// callback) would wait for itself: MisuseError, nothing queued, not counted.
TEST(EdgeBound, ABlockThatMayNotWaitIsAMisuseError) {
  FakeBell bell;
  Edge e(bell);
  e.set_bound(bound(1, RejectPolicy::block));
  EXPECT_EQ(e.submit(Nanos::zero(), nullptr, false).kind, Admission::queued);  // room: no wait
  EXPECT_THROW(e.submit(Nanos::zero(), nullptr, false), keel::MisuseError);
  EXPECT_EQ(e.rejected(), 0u);
  EXPECT_EQ(e.blocked(), 0u);
  EXPECT_EQ(take(e).count(Command::submit), 1u);
}

// ---------------------------------------------------------------- faults run in a child first
//
// Arithmetic and indexing mistakes in the supervisor's code do not fail a
// check: they fault (SIGFPE, SIGSEGV) and take the test binary down, in
// whichever test first reaches them, with no test named. These tests reach
// such code in a child process, so the fault is their failure, by name; they
// are placed before the first test that starts a pool in this process (this
// file is the first of the layer's, in the order the tests run).

struct AllowingGate final : keel::pool::StartGate {
  keel::pool::TaskId won = 0;  // the task whose slot its worker won
  bool dispatch(keel::pool::TaskId, keel::pool::WorkerId) override { return true; }
  bool revoke(keel::pool::TaskId t, keel::pool::WorkerId) override { return t != won; }
};

// The machine's depth before any run time was measured (the mean is 0: one
// task each, without dividing by it; machine.cpp depth_now) and
// shutdown(cancel_futures)'s walk back over each worker's tasks (an unsigned
// index counting down to 0; machine.cpp shutdown): POOL-6, POOL-7.
TEST(ProcessPoolFaultsInAChild, TheMachineNeitherDividesByAnUnmeasuredMeanNorWalksPastATaskList) {
  const int code = keel_test::exit_code_in_child([] {
    AllowingGate gate;
    keel::pool::Machine m({.workers = 2, .depth = 2, .pipeline = std::chrono::milliseconds(1)}, gate);
    m.start(Nanos(0));
    m.worker_ready(1, Nanos(0));
    m.worker_ready(2, Nanos(0));
    if (m.depth_now() != 1) return 1;
    for (keel::pool::TaskId t = 1; t <= 3; ++t) m.submit(t, Nanos(0), Nanos(0));
    if (m.in_flight(1) != 1 || m.in_flight(2) != 1 || m.queued() != 1) return 2;
    gate.won = 1;
    if (!m.started(1, 1, Nanos(0))) return 3;
    m.actions().clear();
    // t3 (queued) and t2 (sent, not started) are cancelled; t1 runs on.
    m.shutdown(true, Nanos(1));
    int cancelled = 0;
    for (const auto& a : m.actions()) {
      cancelled += a.kind == keel::pool::Action::resolve && a.outcome == keel::pool::Outcome::cancelled;
    }
    if (cancelled != 2 || m.in_flight() != 1 || m.queued() != 0) return 4;
    return 0;
  });
  EXPECT_EQ(code, 0) << "1: depth before a measured run; 2: dispatch; 3: start; 4: cancel; 128 + n: signal n";
}

int twice(int x) { return 2 * x; }
inline const auto twice_t = keel::register_task("ppb.twice", twice);
// Chunked maps in the process this runs in; throws on a wrong result.
void chunked_maps() {
  ProcessPool pool({.workers = 2});
  std::vector<int> in(23);
  std::iota(in.begin(), in.end(), 0);
  for (std::size_t chunk : {1u, 2u, 5u, 23u}) {
    const auto out = pool.map(twice_t, in, {.chunksize = chunk}).get();
    if (out.size() != in.size()) throw std::runtime_error("a map lost results");
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (out[i] != 2 * in[i]) throw std::runtime_error("a map result is wrong at " + std::to_string(i));
    }
  }
  // An empty map, and its results dropped unread (the drop cancels from
  // the first unread call to the last: process_pool.hpp).
  if (!pool.map(twice_t, std::vector<int>{}).get().empty()) throw std::runtime_error("an empty map had results");
  { auto unread = pool.map(twice_t, std::vector<int>{1, 2, 3}); }
}
inline const auto chunked_maps_t = keel::register_task("ppb.chunked_maps", chunked_maps);

// A chunk's answer settles its futures by index (calls.hpp, the chunk call's
// complete()), and dropped results cancel the calls left unread
// (process_pool.hpp): a read past either list faults. Run in a process of
// its own.
TEST(ProcessPoolFaultsInAChild, ChunkAnswersSettleEachOfTheirFutures) {
  keel::Process p(chunked_maps_t);
  p.start();
  ASSERT_TRUE(keel_test::joined_within(p)) << "the child never ended";
  EXPECT_EQ(p.exitcode().value_or(-2000), 0) << "1: a wrong result (on its stderr); < 0: killed by a signal";
}

// ---------------------------------------------------------------- end to end

// Waits until the file at `path` exists (the test's gate), then returns the
// worker's pid. Bounded, so a test that fails early cannot leave it for ever.
int wait_for_gate(std::string path) {
  struct stat st {};
  for (int i = 0; i < 60000 && ::stat(path.c_str(), &st) != 0; ++i) ::usleep(1000);
  return static_cast<int>(::getpid());
}
// The same, then the worker dies.
int die_at_gate(std::string path) {
  wait_for_gate(std::move(path));
  ::raise(SIGKILL);
  return 0;
}
int pid_plus(int x) { return static_cast<int>(::getpid()) + x; }
int throws_logic(int) { throw std::logic_error("refused in the task"); }
// Appends one byte to `path` per run, returns x.
int noted(std::string path, int x) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    [[maybe_unused]] auto n = ::write(fd, "x", 1);
    ::close(fd);
  }
  return x;
}
int noted_value(std::pair<std::string, int> p) { return noted(std::move(p.first), p.second); }
std::string text_of(int n) { return std::string(static_cast<std::size_t>(n), 'r'); }

inline const auto gate_t = keel::register_task("ppb.wait_for_gate", wait_for_gate);
inline const auto die_at_gate_t = keel::register_task("ppb.die_at_gate", die_at_gate);
inline const auto pid_plus_t = keel::register_task("ppb.pid_plus", pid_plus);
inline const auto throws_logic_t = keel::register_task("ppb.throws_logic", throws_logic);
inline const auto noted_t = keel::register_task("ppb.noted", noted);
inline const auto noted_value_t = keel::register_task("ppb.noted_value", noted_value);
inline const auto text_t = keel::register_task("ppb.text", text_of);

// A scratch path; open() creates the gate file. Removed (and opened, so no
// worker waits on it any longer) at the end of the test.
class TempPath {
 public:
  explicit TempPath(const char* what) {
    static int n = 0;
    path_ = std::string("/tmp/keel-ppb-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    ::unlink(path_.c_str());
  }
  ~TempPath() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  void open() const {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
  }
  long bytes() const {
    struct stat st {};
    return ::stat(path_.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : 0;
  }

 private:
  std::string path_;
};

// Opens the gate when the test ends, however it ends (an ASSERT that returns
// early), before the pool is destroyed: declared after the pool, so the
// worker's task returns and the pool's shutdown can finish.
struct GateOpener {
  const TempPath& gate;
  ~GateOpener() { gate.open(); }
};

ProcessPoolOptions one_at_a_time(std::size_t capacity, RejectPolicy p) {
  ProcessPoolOptions o;
  o.workers = 1;
  o.max_in_flight = 1;  // the worker holds only the task it runs: the rest wait in the parent
  o.queue_capacity = capacity;
  o.reject = p;
  return o;
}

// Submits the task that holds the only worker, and waits until it runs and
// the supervisor has reported nothing queued (the report comes with the
// statistics), so nothing the test submits next is taken by a worker.
Future<int> occupy(ProcessPool& pool, const TempPath& gate) {
  Future<int> f = pool.submit(gate_t, gate.path());
  EXPECT_TRUE(eventually([&] {
    const auto s = pool.stats();
    return f.running() && s.in_flight == 1 && s.queued == 0;
  })) << "the holding task never started";
  return f;
}

template <class E, class T>
bool fails_with(const Future<T>& f) {
  if (!f.wait_for(keel_test::hang_limit)) return false;
  try {
    f.result();
  } catch (const E&) {
    return true;
  } catch (...) {
  }
  return false;
}

TEST(ProcessPoolBound, OptionsAreValidatedWithATypedError) {
  auto make = [](ProcessPoolOptions o) { ProcessPool p(o); };
  ProcessPoolOptions o;
  o.workers = 1;
  o.queue_capacity = 2;
  o.reject = RejectPolicy::block;
  o.block_timeout = -1ms;  // as zero (keel/timeout.hpp): refuse at once, not a ValueError
  EXPECT_NO_THROW(make(o));
  // A policy with an unbounded queue could never apply.
  for (const auto p :
       {RejectPolicy::caller_runs, RejectPolicy::discard, RejectPolicy::discard_oldest, RejectPolicy::block}) {
    ProcessPoolOptions u;
    u.workers = 1;
    u.reject = p;
    EXPECT_THROW(make(u), keel::ValueError);
  }
  // block_timeout means something only to block.
  ProcessPoolOptions t;
  t.workers = 1;
  t.queue_capacity = 2;
  t.block_timeout = 10ms;
  EXPECT_THROW(make(t), keel::ValueError);
  ProcessPoolOptions bad;
  bad.workers = 1;
  bad.queue_capacity = 2;
  bad.reject = static_cast<RejectPolicy>(42);
  EXPECT_THROW(make(bad), keel::ValueError);
  // The defaults (unbounded, abort), and every sensible combination, are fine.
  ProcessPool fine({.workers = 1});
  const int worker = fine.submit(pid_plus_t, 0).result();
  EXPECT_EQ(fine.worker_pids(), std::vector<int>{worker});
  ProcessPoolOptions b = one_at_a_time(1, RejectPolicy::block);
  b.block_timeout = 0ns;
  EXPECT_NO_THROW(make(b));
}

TEST(ProcessPoolBound, UnboundedByDefaultQueuesEverything) {
  TempPath gate("gate");
  ProcessPool pool(one_at_a_time(0, RejectPolicy::abort));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  std::vector<Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(pool.submit(pid_plus_t, 0));
  EXPECT_TRUE(eventually([&] { return pool.stats().queued == 50; }));
  gate.open();
  for (auto& f : fs) EXPECT_TRUE(f.wait_for(keel_test::hang_limit));
  EXPECT_EQ(pool.stats().rejected, 0u);
}

TEST(ProcessPoolBound, AbortRefusesTheSubmissionBeyondCapacity) {
  TempPath gate("gate");
  ProcessPool pool(one_at_a_time(2, RejectPolicy::abort));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(pid_plus_t, 1);
  auto b = pool.submit(pid_plus_t, 2);
  EXPECT_EQ(rejected_reason([&] { pool.submit(pid_plus_t, 3); }), Reason::saturated);
  EXPECT_EQ(rejected_reason([&] { pool.submit(pid_plus_t, 4); }), Reason::saturated);
  EXPECT_TRUE(eventually([&] { return pool.stats().queued == 2; }));
  EXPECT_EQ(pool.stats().rejected, 2u);
  gate.open();
  const int worker = held.result();
  EXPECT_EQ(a.result(), worker + 1);
  EXPECT_EQ(b.result(), worker + 2);
  // With the queue drained there is room again.
  EXPECT_EQ(pool.submit(pid_plus_t, 5).result(), worker + 5);
  EXPECT_EQ(pool.stats().submitted, 4u);  // the refused ones were never accepted
}

TEST(ProcessPoolBound, CallerRunsRunsTheTaskInTheCallersProcess) {
  TempPath gate("gate");
  ProcessPool pool(one_at_a_time(1, RejectPolicy::caller_runs));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(pid_plus_t, 1);
  // The queue is full: this one runs here, now, and comes back final.
  auto here = pool.submit(pid_plus_t, 100);
  EXPECT_TRUE(here.done());
  EXPECT_EQ(here.result(), static_cast<int>(::getpid()) + 100);
  // Its error comes back as a worker's would: a RemoteError with the type.
  auto err = pool.submit(throws_logic_t, 0);
  ASSERT_TRUE(err.done());
  try {
    err.result();
    ADD_FAILURE() << "did not fail";
  } catch (const keel::RemoteError& e) {
    EXPECT_EQ(e.type(), "std::logic_error");
    EXPECT_EQ(e.message(), "refused in the task");
  }
  EXPECT_EQ(pool.stats().rejected, 2u);
  gate.open();
  const int worker = held.result();
  EXPECT_NE(worker, static_cast<int>(::getpid()));
  EXPECT_EQ(a.result(), worker + 1);
  EXPECT_EQ(pool.stats().submitted, 2u);  // the caller's runs never reached the supervisor
}

TEST(ProcessPoolBound, DiscardCancelsTheNewTaskAndQueuesNothing) {
  TempPath gate("gate");
  TempPath runs("runs");
  ProcessPool pool(one_at_a_time(2, RejectPolicy::discard));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(noted_t, runs.path(), 1);
  auto b = pool.submit(noted_t, runs.path(), 2);
  auto c = pool.submit(noted_t, runs.path(), 3);
  EXPECT_TRUE(c.cancelled());
  EXPECT_THROW(c.result(), keel::CancelledError);
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  EXPECT_EQ(a.result(), 1);
  EXPECT_EQ(b.result(), 2);
  EXPECT_EQ(runs.bytes(), 2);  // c never ran
  EXPECT_EQ(pool.stats().submitted, 3u);
}

TEST(ProcessPoolBound, DiscardOldestCancelsExactlyTheOldestWaitingTask) {
  TempPath gate("gate");
  TempPath runs("runs");
  ProcessPool pool(one_at_a_time(2, RejectPolicy::discard_oldest));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(noted_t, runs.path(), 1);
  auto b = pool.submit(noted_t, runs.path(), 2);
  auto c = pool.submit(noted_t, runs.path(), 3);  // evicts a
  EXPECT_TRUE(fails_with<keel::CancelledError>(a));
  EXPECT_FALSE(b.done());
  auto d = pool.submit(noted_t, runs.path(), 4);  // evicts b
  EXPECT_TRUE(fails_with<keel::CancelledError>(b));
  EXPECT_FALSE(c.done());
  EXPECT_FALSE(d.done());
  EXPECT_FALSE(held.done());  // the running task is never the one evicted
  EXPECT_EQ(pool.stats().rejected, 2u);
  gate.open();
  EXPECT_EQ(c.result(), 3);
  EXPECT_EQ(d.result(), 4);
  EXPECT_TRUE(held.wait_for(keel_test::hang_limit));
  EXPECT_EQ(runs.bytes(), 2);  // a and b never ran
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, 5u);
  EXPECT_EQ(s.cancelled, 2u);
}

// POOL-10 under concurrent submitters: with the worker held, 4 threads
// submit 25 tasks each under discard_oldest. Once the supervisor has seen
// every submission, exactly capacity tasks wait; every other one was
// evicted (cancelled), none lost; and only the survivors run.
TEST(ProcessPoolBound, DiscardOldestKeepsTheBoundUnderConcurrentSubmitters) {
  TempPath gate("gate");
  TempPath runs("runs");
  ProcessPool pool(one_at_a_time(2, RejectPolicy::discard_oldest));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  std::vector<std::vector<Future<int>>> fs(4);
  std::vector<std::thread> ts;
  for (int k = 0; k < 4; ++k) {
    ts.emplace_back([&, k] {
      for (int i = 0; i < 25; ++i) fs[static_cast<std::size_t>(k)].push_back(pool.submit(noted_t, runs.path(), i));
    });
  }
  for (auto& t : ts) t.join();
  // Every accepted task reached the supervisor, and each of the 100 is
  // queued or was evicted.
  ASSERT_TRUE(eventually([&] {
    const auto s = pool.stats();
    return s.submitted == 101 && s.queued + s.cancelled == 100;
  }));
  const auto s = pool.stats();
  EXPECT_EQ(s.queued, 2u);
  EXPECT_EQ(s.cancelled, 98u);
  EXPECT_EQ(s.rejected, 98u);
  gate.open();
  int ok = 0, cancelled = 0;
  for (auto& v : fs) {
    for (auto& f : v) {
      ASSERT_TRUE(f.wait_for(keel_test::hang_limit));
      if (f.cancelled()) {
        ++cancelled;
      } else {
        f.result();
        ++ok;
      }
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(cancelled, 98);
  EXPECT_EQ(runs.bytes(), 2);
}

TEST(ProcessPoolBound, BlockWaitsForRoomThenIsAccepted) {
  TempPath gate("gate");
  ProcessPool pool(one_at_a_time(1, RejectPolicy::block));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(pid_plus_t, 1);
  std::atomic<bool> returned{false};
  std::optional<Future<int>> c;
  std::thread t([&] {
    c = pool.submit(pid_plus_t, 3);
    returned.store(true);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load());  // no room can appear while the worker is held
  gate.open();
  const bool came_back = eventually([&] { return returned.load(); });
  EXPECT_TRUE(came_back) << "the blocked submitter was never let in";
  if (!came_back) pool.terminate_workers();
  t.join();
  ASSERT_TRUE(c.has_value());
  const int worker = held.result();
  EXPECT_EQ(a.result(), worker + 1);
  EXPECT_EQ(c->result(), worker + 3);
  EXPECT_EQ(pool.stats().rejected, 0u);
}

TEST(ProcessPoolBound, BlockGivesUpAfterBlockTimeoutWithTimedOut) {
  TempPath gate("gate");
  ProcessPoolOptions o = one_at_a_time(1, RejectPolicy::block);
  o.block_timeout = 50ms;
  ProcessPool pool(o);
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(pid_plus_t, 1);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(rejected_reason([&] { pool.submit(pid_plus_t, 2); }), Reason::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  EXPECT_EQ(a.result(), held.result() + 1);
}

// A submitter blocked for room is woken and refused by shutdown (with and
// without cancel_futures) and by terminate_workers: never stranded.
TEST(ProcessPoolBound, BlockedSubmitterIsRefusedByShutdownAndTerminate) {
  for (int kind = 0; kind < 3; ++kind) {
    TempPath gate("gate");
    ProcessPool pool(one_at_a_time(1, RejectPolicy::block));
    GateOpener opener{gate};
    auto held = occupy(pool, gate);
    auto a = pool.submit(pid_plus_t, 1);
    std::atomic<bool> returned{false};
    std::optional<Reason> reason;
    std::thread t([&] {
      reason = rejected_reason([&] { pool.submit(pid_plus_t, 2); });
      returned.store(true);
    });
    std::this_thread::sleep_for(50ms);  // most likely blocked by now; refused either way
    if (kind == 2) {
      pool.terminate_workers();
    } else {
      pool.shutdown({.wait = false, .cancel_futures = kind == 1});
    }
    EXPECT_TRUE(eventually([&] { return returned.load(); })) << "closer " << kind;
    gate.open();
    t.join();
    EXPECT_EQ(reason, Reason::shutdown) << "closer " << kind;
    EXPECT_EQ(pool.stats().rejected, 1u);
    if (kind == 0) {
      EXPECT_EQ(a.result(), held.result() + 1);
    } else {
      EXPECT_TRUE(fails_with<keel::CancelledError>(a)) << "closer " << kind;
    }
    pool.shutdown();
  }
}

// The only worker dies with restart_limit 0: the pool breaks, and the
// submitter blocked for room fails with BrokenProcessPool.
TEST(ProcessPoolBound, BlockedSubmitterFailsWithBrokenProcessPoolWhenThePoolBreaks) {
  TempPath gate("gate");
  ProcessPoolOptions o = one_at_a_time(1, RejectPolicy::block);
  o.restart_limit = 0;
  ProcessPool pool(o);
  GateOpener opener{gate};
  auto held = pool.submit(die_at_gate_t, gate.path());
  ASSERT_TRUE(eventually([&] {
    const auto s = pool.stats();
    return held.running() && s.in_flight == 1 && s.queued == 0;
  }));
  auto a = pool.submit(pid_plus_t, 1);
  std::atomic<bool> returned{false};
  bool broken = false;
  std::thread t([&] {
    try {
      pool.submit(pid_plus_t, 2);
    } catch (const keel::BrokenProcessPool&) {
      broken = true;
    } catch (...) {
    }
    returned.store(true);
  });
  std::this_thread::sleep_for(50ms);
  gate.open();  // the worker dies
  EXPECT_TRUE(eventually([&] { return returned.load(); }));
  t.join();
  EXPECT_TRUE(broken);
  EXPECT_TRUE(fails_with<keel::BrokenProcessPool>(a));
  EXPECT_TRUE(held.wait_for(keel_test::hang_limit));
  EXPECT_THROW(pool.submit(pid_plus_t, 3), keel::BrokenProcessPool);
}

TEST(ProcessPoolBound, AfterShutdownEverySubmissionIsRefusedWhateverThePolicy) {
  for (const auto p : {RejectPolicy::abort, RejectPolicy::caller_runs, RejectPolicy::discard,
                       RejectPolicy::discard_oldest, RejectPolicy::block}) {
    ProcessPool pool(one_at_a_time(1, p));
    pool.shutdown();
    EXPECT_EQ(rejected_reason([&] { pool.submit(pid_plus_t, 1); }), Reason::shutdown);
    EXPECT_EQ(rejected_reason([&] { pool.map(pid_plus_t, std::vector<int>{1, 2}); }), Reason::shutdown);
    EXPECT_EQ(pool.stats().rejected, 2u);
    EXPECT_EQ(pool.stats().submitted, 0u);
  }
}

// A map chunk is one task: two chunks fill a capacity of 2.
TEST(ProcessPoolBound, AMapChunkCountsAsOneTask) {
  TempPath gate("gate");
  TempPath runs("runs");
  ProcessPool pool(one_at_a_time(2, RejectPolicy::abort));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  std::vector<std::pair<std::string, int>> in;
  for (int i = 0; i < 6; ++i) in.emplace_back(runs.path(), i);
  auto results = pool.map(noted_value_t, std::vector(in.begin(), in.begin() + 4), {.chunksize = 2});
  EXPECT_TRUE(eventually([&] { return pool.stats().queued == 2; }));
  EXPECT_EQ(rejected_reason([&] { pool.submit(pid_plus_t, 0); }), Reason::saturated);
  // A map whose first chunk finds no room is refused as a whole.
  EXPECT_EQ(rejected_reason([&] { pool.map(noted_value_t, in, {.chunksize = 3}); }), Reason::saturated);
  EXPECT_EQ(pool.stats().rejected, 2u);
  gate.open();
  EXPECT_EQ(results.get(), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_TRUE(held.wait_for(keel_test::hang_limit));
  EXPECT_EQ(runs.bytes(), 4);
}

// caller_runs with a map: the chunk that finds no room runs here, each of
// its calls with its own result.
TEST(ProcessPoolBound, CallerRunsRunsAMapChunkInTheCaller) {
  TempPath gate("gate");
  ProcessPool pool(one_at_a_time(1, RejectPolicy::caller_runs));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto results = pool.map(pid_plus_t, std::vector<int>{0, 1, 2, 3}, {.chunksize = 2});
  const auto& fs = results.futures();
  ASSERT_EQ(fs.size(), 4u);
  const int me = static_cast<int>(::getpid());
  // ASSERT: if the caller did not run exactly the second chunk, result()
  // below would wait for the held worker for ever.
  ASSERT_TRUE(fs[2].done() && fs[3].done()) << "the caller did not run the chunk [2, 3]";
  EXPECT_EQ(fs[2].result(), me + 2);
  EXPECT_EQ(fs[3].result(), me + 3);
  EXPECT_FALSE(fs[0].done());
  gate.open();
  const int worker = held.result();
  EXPECT_EQ(results.get(), (std::vector<int>{worker, worker + 1, me + 2, me + 3}));
  EXPECT_EQ(pool.stats().rejected, 1u);
}

// caller_runs at max_message exactly (process_pool.cpp, run_in_caller): an
// encoded result of exactly max_message bytes is the value, one byte more is
// a RemoteError of type keel::ProtocolError, as a worker answers. For a
// map chunk the bound applies to the chunk's whole answer (a u32 count, then
// a bool and the encoded result per call: calls.hpp), computed here with
// the codec, not written down.
TEST(ProcessPoolBound, CallerRunsAcceptsAResultOfExactlyMaxMessageBytes) {
  TempPath gate("gate");
  ProcessPoolOptions o = one_at_a_time(1, RejectPolicy::caller_runs);
  o.max_message = keel::min_max_message;
  const std::size_t max = o.max_message;
  const auto result_size = [](int n) { return keel::encode(text_of(n)).size(); };
  const int single = static_cast<int>(max - result_size(0));
  ASSERT_EQ(result_size(single), max);
  const auto chunk_size = [](int n) {
    using Answers = std::vector<std::pair<bool, std::string>>;
    return keel::encode(Answers{{true, keel::encode(text_of(n))}, {true, keel::encode(text_of(0))}}).size();
  };
  const int in_chunk = static_cast<int>(max - chunk_size(0));
  ASSERT_EQ(chunk_size(in_chunk), max);

  ProcessPool pool(o);
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto queued = pool.submit(pid_plus_t, 1);  // the queue is full from here on
  auto fits = pool.submit(text_t, single);
  ASSERT_TRUE(fits.done());
  EXPECT_EQ(fits.result(), text_of(single));
  auto over = pool.submit(text_t, single + 1);
  ASSERT_TRUE(over.done());
  try {
    over.result();
    ADD_FAILURE() << "a result above max_message was accepted";
  } catch (const keel::RemoteError& e) {
    EXPECT_EQ(e.type(), "keel::ProtocolError");
  }
  auto chunk = pool.map(text_t, std::vector<int>{in_chunk, 0}, {.chunksize = 2});
  ASSERT_TRUE(chunk.futures().at(0).done());
  EXPECT_EQ(chunk.get(), (std::vector<std::string>{text_of(in_chunk), ""}));
  auto big = pool.map(text_t, std::vector<int>{in_chunk + 1, 0}, {.chunksize = 2});
  for (const auto& f : big.futures()) {
    ASSERT_TRUE(f.done());
    try {
      f.result();
      ADD_FAILURE() << "a chunk answer above max_message was accepted";
    } catch (const keel::RemoteError& e) {
      EXPECT_EQ(e.type(), "keel::ProtocolError");
    }
  }
  EXPECT_EQ(pool.stats().rejected, 4u);
  gate.open();
  const int worker = held.result();
  EXPECT_EQ(queued.result(), worker + 1);
}

// ---------------------------------------------------------------- a rejection handler

ProcessPoolOptions with_handler(std::size_t capacity, keel::ProcessRejectionHandler h) {
  ProcessPoolOptions o = one_at_a_time(capacity, RejectPolicy::abort);
  o.rejection_handler = std::move(h);
  return o;
}

TEST(ProcessPoolRejectionHandler, NeedsAbortAndABoundedQueue) {
  auto make = [](ProcessPoolOptions o) { ProcessPool p(o); };
  auto nothing = [](keel::ProcessRejectedCall&, ProcessPool&) {};
  ProcessPoolOptions other = with_handler(2, nothing);
  other.reject = RejectPolicy::caller_runs;
  EXPECT_THROW(make(other), keel::ValueError);
  EXPECT_THROW(make(with_handler(0, nothing)), keel::ValueError);  // an unbounded queue never rejects
  EXPECT_NO_THROW(make(with_handler(2, nothing)));
}

TEST(ProcessPoolRejectionHandler, AHandlerThatDoesNothingLeavesTheFutureFailedNeverPending) {
  TempPath gate("gate");
  int calls = 0;
  ProcessPool pool(with_handler(1, [&](keel::ProcessRejectedCall& c, ProcessPool&) {
    ++calls;
    EXPECT_TRUE(c.pending());
  }));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(pid_plus_t, 1);
  auto refused = pool.submit(pid_plus_t, 2);
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(refused.done());  // failed before submit returned
  try {
    refused.result();
    ADD_FAILURE() << "did not fail";
  } catch (const RejectedError& e) {
    EXPECT_EQ(e.reason(), Reason::saturated);
  }
  EXPECT_EQ(pool.stats().rejected, 1u);
  gate.open();
  EXPECT_EQ(a.result(), held.result() + 1);
}

TEST(ProcessPoolRejectionHandler, RunsOnTheSubmittingThreadAndCanRunTheCallHere) {
  TempPath gate("gate");
  const auto me = std::this_thread::get_id();
  ProcessPool* seen = nullptr;
  ProcessPool pool(with_handler(1, [&](keel::ProcessRejectedCall& c, ProcessPool& p) {
    seen = &p;
    EXPECT_EQ(std::this_thread::get_id(), me);
    EXPECT_EQ(c.reason(), Reason::saturated);
    EXPECT_EQ(c.task(), "ppb.pid_plus");
    EXPECT_TRUE(c.run());
    EXPECT_FALSE(c.pending());
    EXPECT_FALSE(c.run());     // settled: once only
    EXPECT_FALSE(c.cancel());  // and nothing else
  }));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(pid_plus_t, 1);
  auto here = pool.submit(pid_plus_t, 100);
  EXPECT_EQ(seen, &pool);
  ASSERT_TRUE(here.done());
  EXPECT_EQ(here.result(), static_cast<int>(::getpid()) + 100);
  gate.open();
  EXPECT_EQ(a.result(), held.result() + 1);
  EXPECT_EQ(pool.stats().submitted, 2u);  // the handler's run never reached the supervisor
}

TEST(ProcessPoolRejectionHandler, CancelGivesACancelledFutureAndTheCallNeverRuns) {
  TempPath gate("gate");
  TempPath runs("runs");
  ProcessPool pool(with_handler(1, [](keel::ProcessRejectedCall& c, ProcessPool&) { EXPECT_TRUE(c.cancel()); }));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(noted_t, runs.path(), 1);
  auto refused = pool.submit(noted_t, runs.path(), 2);
  EXPECT_TRUE(refused.cancelled());
  gate.open();
  EXPECT_EQ(a.result(), 1);
  pool.shutdown();
  EXPECT_EQ(runs.bytes(), 1);  // only `a` ran
}

TEST(ProcessPoolRejectionHandler, AnExceptionFromTheHandlerReachesTheSubmitterAndNothingRuns) {
  TempPath gate("gate");
  TempPath runs("runs");
  ProcessPool pool(
      with_handler(1, [](keel::ProcessRejectedCall&, ProcessPool&) { throw std::runtime_error("overloaded"); }));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto a = pool.submit(noted_t, runs.path(), 1);
  EXPECT_THROW(pool.submit(noted_t, runs.path(), 2), std::runtime_error);
  gate.open();
  EXPECT_EQ(a.result(), 1);
  pool.shutdown();
  EXPECT_EQ(runs.bytes(), 1);
}

TEST(ProcessPoolRejectionHandler, NotCalledAfterShutdownWhichRefusesAsEver) {
  int calls = 0;
  ProcessPool pool(with_handler(1, [&](keel::ProcessRejectedCall&, ProcessPool&) { ++calls; }));
  pool.shutdown({.wait = false});
  EXPECT_EQ(rejected_reason([&] { pool.submit(pid_plus_t, 1); }), Reason::shutdown);
  EXPECT_EQ(calls, 0);
}

TEST(ProcessPoolRejectionHandler, AMapChunkIsOneCallTheHandlerCanRun) {
  TempPath gate("gate");
  std::vector<std::string> names;
  ProcessPool pool(with_handler(1, [&](keel::ProcessRejectedCall& c, ProcessPool&) {
    names.push_back(c.task());
    EXPECT_TRUE(c.run());
  }));
  GateOpener opener{gate};
  auto held = occupy(pool, gate);
  auto results = pool.map(pid_plus_t, std::vector<int>{0, 1, 2, 3}, {.chunksize = 2});
  EXPECT_EQ(names, std::vector<std::string>{"ppb.pid_plus"});  // the second chunk found the queue full
  gate.open();
  const int worker = held.result();
  const int me = static_cast<int>(::getpid());
  EXPECT_EQ(results.get(), (std::vector<int>{worker, worker + 1, me + 2, me + 3}));
}

}  // namespace
