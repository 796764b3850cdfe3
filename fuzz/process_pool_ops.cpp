// Fuzz target process_pool_ops: the real keel::ProcessPool (spawned worker
// processes) driven by an operation sequence: submits of tasks that return,
// sleep, throw, abort, exit(7) or hang past a timeout; map and map_unordered
// with chunks; cancels; SIGKILLs of workers; bounded waits; shutdown (wait or
// not, cancel_futures), terminate_workers and kill_workers; submits after
// shutdown; stats snapshots. Every task appends a record (worker pid, call id,
// task unit) to a per-input file before it does anything, so runs are counted
// across processes.
//
// Input: 8 header bytes (workers 1-3, max_tasks_per_child, retries 0-2, pool
// timeout, restart limit and window and a spare worker, max_in_flight, initializer none/ok/throws/
// exits, final action: shutdown(wait), destructor, terminate_workers,
// kill_workers or shutdown(wait, cancel_futures)), then up to 20 operations,
// an opcode byte (mod 20) and its argument bytes each: submit echo/sleep/throw/
// abort/exit/hang, a submit with a per-task timeout, map, map_unordered, cancel,
// SIGKILL one or every worker, a bounded or a liveness wait, the shutdowns,
// terminate/kill, stats(), a short sleep, and a wait for the pool to recover.
//
// Checks, during the run and once everything is reaped at the end:
// - POOL-1: after a shutdown(wait)/terminate/kill/destructor returns every
//   future is final (and a liveness wait sees any one final within 10 s), and its outcome is one the script allows for
//   its task (the value for echo/sleep, RemoteError for throw, WorkerLost with a fitting exit code only for
//   self-killing tasks or after kills/terminate, TimeoutError only for timed tasks, CancelledError only after a winning
//   cancel, cancel_futures, terminate or a dropped map, BrokenProcessPool only
//   with an initializer or after deaths); a submit after shutdown is refused;
//   the pool's counters account for every accepted task exactly once.
// - POOL-2: a task whose cancel won never ran; an answered task ran once (at
//   most 1 + retries times if workers were killed from outside); any task ran
//   at most 1 + retries times; a self-killing task lost with no outside
//   interference ran exactly 1 + retries times; refused tasks never ran.
// - POOL-3: after kills, the ready workers return to the target while the pool
//   runs (bounded polling), unless it broke.
// - POOL-4: no child process (zombies included) and no fd of this process is
//   left once the pool is finished and destroyed.
// - POOL-14: a pool keeps at most spare_workers spares, none is left once
//   shutdown(wait)/terminate/kill returned, a spare leaves no process
//   behind either (POOL-4's check), and no spare's death is a worker's
//   (POOL-5's bound).
// - POOL-5: with a long restart window, replacements never exceed the restart
//   limit; a failing initializer breaks the pool with no respawn and no task run.
// - POOL-6: a task past its timeout fails with TimeoutError, never before its
//   timeout elapsed; a hanging task never returns a value; no worker is sent
//   more than max_tasks_per_child tasks.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/error.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Nanos = std::chrono::nanoseconds;

// ---- tasks (namespace scope: the worker images register the same table) ----

// Set by the initializer in a worker: tasks add it to their value, so a value
// also proves the initializer ran in that worker first.
int g_init = 0;
constexpr int init_value = 1000;

struct RunRecord {
  std::int32_t pid;
  std::uint32_t id;    // the call
  std::uint32_t unit;  // the task sent to a worker (a map chunk holds several calls)
};
static_assert(sizeof(RunRecord) == 12);

// One O_APPEND write of a fixed-size record: whole even with several writers.
void note_run(const std::string& path, std::uint32_t id, std::uint32_t unit) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return;
  const RunRecord r{static_cast<std::int32_t>(::getpid()), id, unit};
  [[maybe_unused]] const auto n = ::write(fd, &r, sizeof r);
  ::close(fd);
}

int task_echo(std::string path, std::uint32_t id, std::int32_t v) {
  note_run(path, id, id);
  return v + g_init;
}
int task_sleep(std::string path, std::uint32_t id, std::int32_t ms) {
  note_run(path, id, id);
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms + g_init;
}
std::string throw_message(std::uint32_t id) { return "fuzz task " + std::to_string(id) + " threw"; }
int task_throw(std::string path, std::uint32_t id, std::int32_t) {
  note_run(path, id, id);
  throw std::runtime_error(throw_message(id));
}
int task_abort(std::string path, std::uint32_t id, std::int32_t) {
  note_run(path, id, id);
  std::abort();
}
int task_exit(std::string path, std::uint32_t id, std::int32_t) {
  note_run(path, id, id);
  std::exit(7);
}
// Only ever submitted with a timeout far below its sleep.
int task_hang(std::string path, std::uint32_t id, std::int32_t v) {
  note_run(path, id, id);
  ::usleep(2'000'000);
  return v;
}
using MapArg = std::tuple<std::string, std::uint32_t, std::uint32_t, std::int32_t>;  // path, id, unit, v
int task_map(MapArg a) {
  note_run(std::get<0>(a), std::get<1>(a), std::get<2>(a));
  if (std::get<3>(a) < 0) throw std::runtime_error(throw_message(std::get<1>(a)));
  return std::get<3>(a) + g_init;
}
void init_ok(int v) { g_init = v; }
void init_throws(int) { throw std::logic_error("fuzz initializer refused"); }
void init_exits(int) { std::exit(3); }

const auto echo_t = keel::register_task("fuzz.process_pool_ops.echo", task_echo);
const auto sleep_t = keel::register_task("fuzz.process_pool_ops.sleep", task_sleep);
const auto throw_t = keel::register_task("fuzz.process_pool_ops.throw", task_throw);
const auto abort_t = keel::register_task("fuzz.process_pool_ops.abort", task_abort);
const auto exit_t = keel::register_task("fuzz.process_pool_ops.exit", task_exit);
const auto hang_t = keel::register_task("fuzz.process_pool_ops.hang", task_hang);
const auto map_t = keel::register_task("fuzz.process_pool_ops.map", task_map);
const auto init_ok_t = keel::register_task("fuzz.process_pool_ops.init_ok", init_ok);
const auto init_throws_t = keel::register_task("fuzz.process_pool_ops.init_throws", init_throws);
const auto init_exits_t = keel::register_task("fuzz.process_pool_ops.init_exits", init_exits);

using SingleTask = keel::TaskRef<int(std::string, std::uint32_t, std::int32_t)>;

// ---- process-wide observations (POOL-4) ----

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

// The parent pid of `pid` from /proc, or -1; `comm` gets its command name.
int ppid_of(int pid, std::string* comm = nullptr) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  const char* close_paren = nullptr;
  for (ssize_t i = 0; i < n; ++i)
    if (buf[i] == ')') close_paren = buf + i;
  if (close_paren == nullptr) return -1;
  if (comm != nullptr) {
    const char* open_paren = std::strchr(buf, '(');
    if (open_paren != nullptr && open_paren < close_paren) comm->assign(open_paren + 1, close_paren);
  }
  char state = 0;
  int ppid = -1;
  if (std::sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

// Every process whose parent is this one, zombies included, except the
// sanitizer's symbolizer (a child it starts to symbolize a report or to match
// a suppression, and keeps, with two pipes to it); `symbolizer` says whether
// one is there.
std::set<int> children(bool* symbolizer = nullptr) {
  std::set<int> out;
  if (symbolizer != nullptr) *symbolizer = false;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  const int self = static_cast<int>(::getpid());
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid <= 0) continue;
    std::string comm;
    if (ppid_of(static_cast<int>(pid), &comm) != self) continue;
    if (comm.rfind("llvm-symbolize", 0) == 0) {
      if (symbolizer != nullptr) *symbolizer = true;
    } else {
      out.insert(static_cast<int>(pid));
    }
  }
  ::closedir(d);
  return out;
}

// This process's open fds, with what they point to.
std::map<int, std::string> open_fds() {
  std::map<int, std::string> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return out;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == own) continue;
    char target[256] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    out[static_cast<int>(fd)] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
  }
  ::closedir(d);
  return out;
}

std::string describe_set(const std::set<int>& s) {
  std::string out;
  for (int x : s) out += (out.empty() ? "" : ",") + std::to_string(x);
  return "{" + out + "}";
}

// ---- the script's model ----

enum class Kind : std::uint8_t { echo, sleep, raise, abort, exit, hang, map_value, map_throw };
const char* kind_name(Kind k) {
  static const char* const names[] = {"echo", "sleep", "throw", "abort", "exit", "hang", "map value", "map throw"};
  return names[static_cast<int>(k)];
}

struct Tracked {
  keel::Future<int> f;
  std::uint32_t id = 0;
  Kind kind = Kind::echo;
  std::int32_t arg = 0;
  Nanos timeout{0};  // effective; zero: none
  std::int64_t submitted_ns = 0;
  std::shared_ptr<std::atomic<std::int64_t>> done_ns;
  bool cancel_won = false;
  std::uint32_t unit = 0;  // the task it travels in: itself, or its map chunk
  bool in_dropped_map = false;
  bool taken = false;  // its value was moved out by ProcessMapResults::next()
};

// The calls of one map_unordered, matched to its futures by value or message
// once they are all final.
struct UnorderedMap {
  std::unique_ptr<keel::ProcessUnorderedResults<int>> results;
  std::map<std::uint32_t, bool> calls;  // id -> whether it throws
  std::vector<keel::Future<int>> yielded;
};

enum class Outcome { value, remote, lost, timeout, cancelled, cancelled_error, broken, other };
const char* outcome_name(Outcome o) {
  static const char* const names[] = {"a value",   "RemoteError",    "WorkerLost",        "TimeoutError",
                                      "cancelled", "CancelledError", "BrokenProcessPool", "an unexpected error"};
  return names[static_cast<int>(o)];
}

struct Observed {
  Outcome outcome = Outcome::other;
  int value = 0;
  bool value_known = false;  // false once ProcessMapResults::next() moved it out (checked then)
  int exit_code = 0;
  std::string type, message;
};

// What a final future holds. The future stays alive in its owner while the
// exception is inspected (the exception object is shared with its state).
Observed observe(const keel::Future<int>& f, bool taken) {
  Observed o;
  if (f.cancelled()) {
    o.outcome = Outcome::cancelled;
    return o;
  }
  const std::exception_ptr e = f.exception(0ns);
  if (!e) {
    o.outcome = Outcome::value;
    if (!taken) {
      o.value = f.result(0ns);
      o.value_known = true;
    }
    return o;
  }
  try {
    std::rethrow_exception(e);
  } catch (const keel::RemoteError& r) {
    o.outcome = Outcome::remote;
    o.type = r.type();
    o.message = r.message();
  } catch (const keel::WorkerLost& w) {
    o.outcome = Outcome::lost;
    o.exit_code = w.exit_code();
    o.message = w.what();
  } catch (const keel::TimeoutError& t) {
    o.outcome = Outcome::timeout;
    o.message = t.what();
  } catch (const keel::CancelledError& c) {
    o.outcome = Outcome::cancelled_error;
    o.message = c.what();
  } catch (const keel::BrokenProcessPool& b) {
    o.outcome = Outcome::broken;
    o.message = b.what();
  } catch (const std::exception& x) {
    o.outcome = Outcome::other;
    o.message = x.what();
  } catch (...) {
    o.outcome = Outcome::other;
    o.message = "a non-std exception";
  }
  return o;
}

enum class Init : std::uint8_t { none, ok, throws, exits };
enum class Final : std::uint8_t { shutdown_wait, destructor, terminate, kill, shutdown_cancel };

class Script {
 public:
  explicit Script(keel::fuzz::Input& in) : in_(in) {}

  void run() {
    const auto children_before = children();
    const auto fds_before = open_fds();
    configure();
    static std::atomic<unsigned> counter{0};
    path_ = "/tmp/keel-fuzz-ppo-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
    ::unlink(path_.c_str());
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);

    pool_ = std::make_unique<keel::ProcessPool>(opts_);
    for (int ops = 0; ops < 20 && !in_.empty(); ++ops) step();
    finish();
    const auto runs = read_runs();
    ::unlink(path_.c_str());
    check_outcomes(runs);

    // POOL-4: nothing of this run's pool is left in this process.
    std::set<int> left;
    bool symbolizer = false;
    for (int pid : children(&symbolizer))
      if (!children_before.count(pid)) left.insert(pid);
    KEEL_FUZZ_CHECK("POOL-4", left.empty(),
                    "child processes " + describe_set(left) + " left after the pool was finished and destroyed");
    const auto fds_after = open_fds();
    std::string leaked;
    for (const auto& [fd2, target] : fds_after) {
      // The pool makes no pipes (its channels are sockets); the symbolizer's are pipes.
      if (fds_before.count(fd2) || (symbolizer && target.rfind("pipe:", 0) == 0)) continue;
      leaked += " " + std::to_string(fd2) + "->" + target;
    }
    KEEL_FUZZ_CHECK("POOL-4", leaked.empty(), "fds left open after the pool was destroyed:" + leaked);
  }

 private:
  // The pool's task timeout as the tracking here counts it: zero for none.
  Nanos pool_timeout() const { return opts_.task_timeout.value_or(Nanos::zero()); }

  // ---- configuration ----
  void configure() {
    static constexpr unsigned per_child[] = {0, 0, 0, 0, 1, 2, 5, 3};
    // Zero here: none (the option is left empty).
    static constexpr Nanos pool_timeouts[] = {0ms, 0ms, 0ms, 0ms, 0ms, 10ms, 50ms, 100ms};
    static constexpr unsigned limits[] = {0, 1, 2, 32};
    static constexpr unsigned depths[] = {0, 1, 2, 4};
    workers_ = 1 + in_.byte() % 3;
    opts_.workers = workers_;
    opts_.max_tasks_per_child = per_child[in_.byte() % 8];
    opts_.retries = in_.byte() % 3;
    const Nanos pool_timeout = pool_timeouts[in_.byte() % 8];
    if (pool_timeout > Nanos::zero()) opts_.task_timeout = pool_timeout;
    const std::uint8_t r = in_.byte();
    opts_.restart_limit = limits[r & 3];
    long_window_ = (r & 4) == 0;
    opts_.restart_window = long_window_ ? Nanos(60s) : Nanos(20ms);
    // A spare worker (POOL-14): the replacements below are then spares
    // handed out, and none may outlive the pool (POOL-4's check).
    opts_.spare_workers = (r & 8) ? 1 : 0;
    opts_.max_in_flight = depths[in_.byte() & 3];
    const std::uint8_t i = in_.byte() % 8;
    init_ = i < 5 ? Init::none : static_cast<Init>(i - 4);
    if (init_ == Init::ok) opts_.initializer = keel::bind_task(init_ok_t, init_value);
    if (init_ == Init::throws) opts_.initializer = keel::bind_task(init_throws_t, 0);
    if (init_ == Init::exits) opts_.initializer = keel::bind_task(init_exits_t, 0);
    final_ = static_cast<Final>(in_.byte() % 5);
    expect_init_ = init_ == Init::ok ? init_value : 0;
  }

  // ---- operations ----
  void step() {
    const std::uint8_t op = in_.byte() % 20;
    switch (op) {
      case 0:
      case 1:
        submit(Kind::echo, echo_t, static_cast<std::int32_t>(in_.byte()), std::nullopt);
        break;
      case 2:
        submit(Kind::sleep, sleep_t, static_cast<std::int32_t>(in_.byte() % 9), std::nullopt);
        break;
      case 3:
        submit(Kind::raise, throw_t, 0, std::nullopt);
        break;
      case 4:
        submit(Kind::abort, abort_t, 0, std::nullopt);
        break;
      case 5:
        submit(Kind::exit, exit_t, 0, std::nullopt);
        break;
      case 6: {
        static constexpr Nanos hang_timeouts[] = {5ms, 20ms, 50ms, 100ms};
        submit(Kind::hang, hang_t, 0, hang_timeouts[in_.byte() & 3]);
        break;
      }
      case 7: {
        // Nanos::max() overrides the pool's timeout with one that never
        // passes (a timeout <= 0 would mean no time at all: keel/timeout.hpp).
        static constexpr Nanos timeouts[] = {Nanos::max(), 5ms, 20ms, 50ms, 100ms, 100ms, 100ms, 100ms};
        const std::uint8_t b = in_.byte();
        const Nanos t = timeouts[b & 7];
        if (b & 8) {
          submit(Kind::sleep, sleep_t, static_cast<std::int32_t>((b >> 4) % 9), t);
        } else {
          submit(Kind::echo, echo_t, static_cast<std::int32_t>(b >> 4), t);
        }
        break;
      }
      case 8:
        map_ordered();
        break;
      case 9:
        map_unordered();
        break;
      case 10: {
        if (tracked_.empty()) break;
        Tracked& t = tracked_[in_.below(tracked_.size())];
        if (t.f.cancel()) t.cancel_won = true;
        break;
      }
      case 11:
        kill_workers_from_outside(in_.byte());
        break;
      case 12: {
        const std::uint8_t b = in_.byte();
        if (tracked_.empty()) break;
        const Tracked& t = tracked_[b % tracked_.size()];
        if ((b & 0x20) == 0) {
          t.f.wait_for(std::chrono::milliseconds(25 * (1 + (b >> 6))));
          break;
        }
        // Liveness: every task here is short or timed, so an accepted task
        // resolves within seconds whatever else happened (a lost doorbell
        // would leave it queued until the next shutdown).
        KEEL_FUZZ_CHECK(
            "POOL-1", t.f.wait_for(10s),
            std::string(kind_name(t.kind)) + " task " + std::to_string(t.id) + " still not final after waiting 10 s");
        break;
      }
      case 13: {
        const std::uint8_t b = in_.byte();
        pool_->shutdown({.wait = false});
        shut_ = true;
        if (b & 1) (void)pool_->await_termination(std::chrono::milliseconds(b >> 3));
        break;
      }
      case 14: {
        const bool wait = in_.boolean();
        pool_->shutdown({.wait = wait, .cancel_futures = true});
        shut_ = true;
        cancel_futures_ = true;
        if (wait) check_all_final("shutdown(wait, cancel_futures)");
        break;
      }
      case 15:
        terminate(in_.boolean());
        break;
      case 16:
        snapshot();
        break;
      case 17:
        ::usleep(100 + 4u * in_.byte());
        break;
      case 18:
        recover();
        break;
      case 19:
        pool_->shutdown({.wait = true});
        shut_ = true;
        check_all_final("shutdown(wait)");
        break;
      default:
        break;
    }
  }

  std::uint32_t next_id() { return ++last_id_; }

  // A refused submission: RejectedError(shutdown) once shut down, or
  // BrokenProcessPool from a broken pool; never anything else.
  void refused(const std::exception_ptr& e, const std::vector<std::uint32_t>& ids, const char* what) {
    try {
      std::rethrow_exception(e);
    } catch (const keel::RejectedError& r) {
      KEEL_FUZZ_CHECK("POOL-1", shut_ && r.reason() == keel::RejectedError::Reason::shutdown,
                      std::string(what) + " refused with RejectedError (" + r.what() + ") on a pool that was " +
                          (shut_ ? "shut down" : "never shut down"));
    } catch (const keel::BrokenProcessPool&) {
      broken_seen_ = true;
    } catch (const std::exception& x) {
      KEEL_FUZZ_CHECK("POOL-1", false, std::string(what) + " threw an unexpected error: " + x.what());
    }
    for (auto id : ids) rejected_.insert(id);
  }

  void track_done(Tracked& t) {
    t.done_ns = std::make_shared<std::atomic<std::int64_t>>(0);
    t.f.add_done_callback([d = t.done_ns](const keel::Future<int>&) { d->store(now_ns()); });
  }

  void submit(Kind kind, const SingleTask& task, std::int32_t arg, std::optional<Nanos> timeout) {
    const std::uint32_t id = next_id();
    Tracked t;
    t.id = id;
    t.unit = id;
    t.kind = kind;
    t.arg = arg;
    t.timeout = timeout.value_or(pool_timeout());
    if (t.timeout == Nanos::max()) t.timeout = Nanos::zero();  // never passes: as none
    t.submitted_ns = now_ns();
    try {
      t.f = pool_->submit(keel::SubmitOptions{.timeout = timeout}, task, path_, id, arg);
    } catch (...) {
      refused(std::current_exception(), {id}, "submit");
      return;
    }
    KEEL_FUZZ_CHECK("POOL-1", !shut_, std::string("a ") + kind_name(kind) + " task was accepted after shutdown");
    ++accepted_tasks_;
    if (kind == Kind::abort || kind == Kind::exit) self_kill_submitted_ = true;
    track_done(t);
    tracked_.push_back(std::move(t));
  }

  // The calls of one map: ids, arguments, and which of them throw.
  std::vector<MapArg> map_inputs(std::size_t n, std::size_t chunk, std::uint8_t throw_mask,
                                 std::vector<std::uint32_t>& ids) {
    std::vector<MapArg> args;
    std::uint32_t unit = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t id = next_id();
      if (i % chunk == 0) unit = next_id();
      ids.push_back(id);
      const bool throws = (throw_mask >> i) & 1;
      args.emplace_back(path_, id, unit, throws ? -1 : static_cast<std::int32_t>(id));
    }
    return args;
  }

  void map_ordered() {
    const std::uint8_t a = in_.byte(), b = in_.byte();
    static constexpr Nanos map_timeouts[] = {20ms, 200ms, 2000ms, 2000ms};
    const std::size_t n = 1 + a % 5, chunk = 1 + (a >> 3) % 3;
    const bool keep = (b & 0x40) == 0, next_once = (b & 0x80) != 0;
    std::vector<std::uint32_t> ids;
    auto args = map_inputs(n, chunk, b & 0x1f, ids);
    const std::int64_t t0 = now_ns();
    std::optional<keel::ProcessMapResults<int>> results;
    try {
      results.emplace(pool_->map(map_t, args, {.chunksize = chunk, .timeout = map_timeouts[(a >> 5) & 3]}));
    } catch (...) {
      // Refused at the first chunk after shutdown; a pool that broke midway
      // may have run (and cancelled) the chunks it had accepted.
      if (shut_) {
        refused(std::current_exception(), ids, "map");
      } else {
        refused(std::current_exception(), {}, "map");
        for (auto id : ids) limbo_.insert(id);
        maybe_accepted_ += (n + chunk - 1) / chunk;
      }
      return;
    }
    KEEL_FUZZ_CHECK("POOL-1", !shut_, "a map was accepted after shutdown");
    accepted_tasks_ += (n + chunk - 1) / chunk;
    const std::size_t first = tracked_.size();
    for (std::size_t i = 0; i < n; ++i) {
      Tracked t;
      t.f = results->futures()[i];
      t.id = ids[i];
      t.unit = std::get<2>(args[i]);
      t.kind = std::get<3>(args[i]) < 0 ? Kind::map_throw : Kind::map_value;
      t.arg = std::get<3>(args[i]);
      t.timeout = pool_timeout();
      t.submitted_ns = t0;
      track_done(t);
      tracked_.push_back(std::move(t));
    }
    if (next_once) {
      // Its error (or the map's own timeout) is checked with the future at
      // the end; a value is moved out here, so it is checked now.
      std::optional<int> v;
      bool answered = false;
      try {
        v = results->next();
        answered = true;
      } catch (const std::exception&) {
      }
      if (answered) {
        Tracked& t = tracked_[first];
        KEEL_FUZZ_CHECK("POOL-1", v && t.kind == Kind::map_value && *v == t.arg + expect_init_,
                        "map's first result is " + (v ? std::to_string(*v) : std::string("missing")) +
                            " for a call of kind " + kind_name(t.kind) + " with argument " + std::to_string(t.arg));
        t.taken = true;
      }
    }
    if (keep) {
      maps_.push_back(std::move(*results));
    } else {
      // Dropping the results cancels the calls that have not started.
      results.reset();
      for (std::size_t i = first; i < tracked_.size(); ++i) tracked_[i].in_dropped_map = true;
    }
  }

  void map_unordered() {
    const std::uint8_t a = in_.byte(), b = in_.byte();
    const std::size_t n = 1 + a % 5, chunk = 1 + (a >> 3) % 3, early = b >> 6;
    std::vector<std::uint32_t> ids;
    auto args = map_inputs(n, chunk, b & 0x1f, ids);
    UnorderedMap m;
    try {
      // The timeout bounds the early yields; at the end every future is final.
      m.results.reset(new keel::ProcessUnorderedResults<int>(
          pool_->map_unordered(map_t, args, {.chunksize = chunk, .timeout = 10s})));
    } catch (...) {
      if (shut_) {
        refused(std::current_exception(), ids, "map_unordered");
      } else {
        refused(std::current_exception(), {}, "map_unordered");
        for (auto id : ids) limbo_.insert(id);
        maybe_accepted_ += (n + chunk - 1) / chunk;
      }
      return;
    }
    KEEL_FUZZ_CHECK("POOL-1", !shut_, "a map_unordered was accepted after shutdown");
    accepted_tasks_ += (n + chunk - 1) / chunk;
    for (std::size_t i = 0; i < n; ++i) m.calls[ids[i]] = std::get<3>(args[i]) < 0;
    for (std::size_t i = 0; i < early && i < n; ++i) {
      std::optional<keel::Future<int>> f;
      try {
        f = m.results->next();
      } catch (const keel::TimeoutError&) {
        break;  // a slow machine; the end checks that every call resolved
      }
      if (!f) break;
      KEEL_FUZZ_CHECK("POOL-1", f->done(), "map_unordered yielded a future that is not final");
      m.yielded.push_back(std::move(*f));
    }
    unordered_.push_back(std::move(m));
  }

  void kill_workers_from_outside(std::uint8_t b) {
    const auto pids = pool_->worker_pids();
    if (pids.empty()) return;
    const int self = static_cast<int>(::getpid());
    auto kill_one = [&](int pid) {
      // Only a child of this process: a reaped worker's pid may be reused.
      if (ppid_of(pid) == self && ::kill(pid, SIGKILL) == 0) killed_ = true;
    };
    if (b & 0x80) {
      for (int pid : pids) kill_one(pid);
    } else {
      kill_one(pids[b % pids.size()]);
    }
  }

  void terminate(bool with_sigkill) {
    if (with_sigkill) {
      pool_->kill_workers();
      sigkill_terminated_ = true;
    } else {
      pool_->terminate_workers();
      sigterm_terminated_ = true;
    }
    shut_ = true;
    check_all_final(with_sigkill ? "kill_workers" : "terminate_workers");
    const auto s = pool_->stats();
    KEEL_FUZZ_CHECK("POOL-4", s.workers == 0 && pool_->worker_pids().empty(),
                    std::to_string(s.workers) + " workers alive after terminate/kill returned");
  }

  // The pool may break only through its initializer or the restart limit
  // (deaths). After the destructor no counters are left to read.
  bool broken_allowed() const {
    return init_ != Init::none || deaths_ > 0 || (!final_stats_valid_ && (killed_ || self_kill_submitted_));
  }

  void snapshot() {
    const auto s = pool_->stats();
    const auto& p = last_;
    KEEL_FUZZ_CHECK("POOL-1",
                    s.submitted >= p.submitted && s.completed >= p.completed && s.lost >= p.lost &&
                        s.timed_out >= p.timed_out && s.cancelled >= p.cancelled && s.broken >= p.broken &&
                        s.spawned >= p.spawned && s.deaths >= p.deaths && s.replacements >= p.replacements &&
                        s.retirements >= p.retirements,
                    "a stats() counter went backwards");
    KEEL_FUZZ_CHECK("POOL-1", s.submitted <= accepted_tasks_ + maybe_accepted_,
                    "stats().submitted " + std::to_string(s.submitted) + " above the " +
                        std::to_string(accepted_tasks_) + " tasks accepted");
    KEEL_FUZZ_CHECK("POOL-3", s.replacements <= s.spawned && s.retirements + s.deaths <= s.spawned,
                    "stats() counts " + std::to_string(s.replacements) + " replacements, " +
                        std::to_string(s.retirements) + " retirements and " + std::to_string(s.deaths) + " deaths of " +
                        std::to_string(s.spawned) + " workers spawned");
    KEEL_FUZZ_CHECK(
        "POOL-14", s.spares <= opts_.spare_workers,
        std::to_string(s.spares) + " spare workers in a pool that keeps " + std::to_string(opts_.spare_workers));
    check_restart_bound(s);
    last_ = s;
  }

  void check_restart_bound(const keel::ProcessPoolStats& s) {
    if (long_window_) {
      KEEL_FUZZ_CHECK("POOL-5", s.replacements <= opts_.restart_limit,
                      std::to_string(s.replacements) + " replacements within a 60 s window whose limit is " +
                          std::to_string(opts_.restart_limit));
    }
    if (init_ == Init::throws || init_ == Init::exits) {
      KEEL_FUZZ_CHECK("POOL-5", s.spawned <= workers_,
                      std::to_string(s.spawned) + " workers spawned for a pool of " + std::to_string(workers_) +
                          " whose initializer always fails: a respawn loop");
    }
  }

  // POOL-3: the ready workers come back to the target, unless the pool broke.
  void recover() {
    if (shut_) return;
    const auto deadline = Clock::now() + 10s;
    int probes = 0;
    while (Clock::now() < deadline) {
      const auto s = pool_->stats();
      if (s.ready == workers_) return;
      if (s.workers == 0 && s.spawned > 0 && probes < 5) {
        ++probes;
        // A running pool always has a worker process; none left means it
        // broke (its workers were killed), which a probe submission shows.
        const std::uint32_t id = next_id();
        Tracked t;
        t.id = id;
        t.unit = id;
        t.kind = Kind::echo;
        t.arg = 1;
        t.timeout = pool_timeout();
        t.submitted_ns = now_ns();
        try {
          t.f = pool_->submit(echo_t, path_, id, 1);
        } catch (const keel::BrokenProcessPool&) {
          broken_seen_ = true;
          rejected_.insert(id);
          return;
        }
        ++accepted_tasks_;
        track_done(t);
        tracked_.push_back(std::move(t));
      }
      ::usleep(1000);
    }
    const auto s = pool_->stats();
    KEEL_FUZZ_CHECK("POOL-3", false,
                    "the pool did not return to " + std::to_string(workers_) + " ready workers within 10 s: " +
                        std::to_string(s.ready) + " ready, " + std::to_string(s.workers) + " alive, " +
                        std::to_string(s.queued) + " queued, " + std::to_string(s.deaths) + " deaths");
  }

  void check_all_final(const char* after) {
    for (const auto& t : tracked_) {
      KEEL_FUZZ_CHECK("POOL-1", t.f.done(),
                      std::string("the future of ") + kind_name(t.kind) + " task " + std::to_string(t.id) +
                          " is not final after " + after + " returned");
    }
  }

  void finish() {
    const char* what = "the destructor";
    switch (final_) {
      case Final::shutdown_wait:
        pool_->shutdown({.wait = true});
        what = "shutdown(wait)";
        break;
      case Final::shutdown_cancel:
        pool_->shutdown({.wait = true, .cancel_futures = true});
        cancel_futures_ = true;
        what = "shutdown(wait, cancel_futures)";
        break;
      case Final::terminate:
        if (!sigkill_terminated_ && !sigterm_terminated_) terminate(false);
        break;
      case Final::kill:
        if (!sigkill_terminated_ && !sigterm_terminated_) terminate(true);
        break;
      case Final::destructor:
        break;
    }
    if (final_ != Final::destructor) {
      // Final when shutdown(wait)/terminate returns, not only once the pool is gone.
      check_all_final(what);
      final_stats_ = pool_->stats();
      final_stats_valid_ = true;
      KEEL_FUZZ_CHECK("POOL-14", final_stats_.spares == 0,
                      std::to_string(final_stats_.spares) + " spare workers alive after " + what + " returned");
    }
    pool_.reset();
    shut_ = true;
    check_all_final(what);
    maps_.clear();
    for (auto& m : unordered_) {
      try {
        while (auto f = m.results->next()) m.yielded.push_back(std::move(*f));
      } catch (const keel::TimeoutError&) {
        KEEL_FUZZ_CHECK("POOL-1", false, "a map_unordered call never resolved");
      }
      m.results.reset();
    }
    deaths_ = final_stats_.deaths;
  }

  struct Runs {
    std::unordered_map<std::uint32_t, unsigned> by_id;
    std::map<int, std::set<std::uint32_t>> units_by_pid;
  };

  Runs read_runs() const {
    Runs r;
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return r;
    std::string bytes;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      bytes.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    for (std::size_t off = 0; off + sizeof(RunRecord) <= bytes.size(); off += sizeof(RunRecord)) {
      RunRecord rec;
      std::memcpy(&rec, bytes.data() + off, sizeof rec);
      ++r.by_id[rec.id];
      r.units_by_pid[rec.pid].insert(rec.unit);
    }
    return r;
  }

  // ---- the end: every outcome against what the script allows ----
  void check_counters(const keel::ProcessPoolStats& s) {
    KEEL_FUZZ_CHECK("POOL-1", s.submitted >= accepted_tasks_ && s.submitted <= accepted_tasks_ + maybe_accepted_,
                    "stats().submitted is " + std::to_string(s.submitted) + ", " + std::to_string(accepted_tasks_) +
                        " tasks were accepted");
    const auto resolved = s.completed + s.lost + s.timed_out + s.cancelled + s.broken;
    KEEL_FUZZ_CHECK("POOL-1", resolved == s.submitted && s.queued == 0 && s.in_flight == 0 && s.workers == 0,
                    "after the end: " + std::to_string(s.submitted) + " submitted but " + std::to_string(s.completed) +
                        " completed + " + std::to_string(s.lost) + " lost + " + std::to_string(s.timed_out) +
                        " timed out + " + std::to_string(s.cancelled) + " cancelled + " + std::to_string(s.broken) +
                        " broken; " + std::to_string(s.queued) + " queued, " + std::to_string(s.in_flight) +
                        " in flight, " + std::to_string(s.workers) + " workers");
    check_restart_bound(s);
  }

  void check_outcomes(const Runs& runs) {
    const auto& s = final_stats_;
    const unsigned max_runs = 1 + opts_.retries;
    const bool terminated = sigterm_terminated_ || sigkill_terminated_;
    auto runs_of = [&](std::uint32_t id) {
      auto it = runs.by_id.find(id);
      return it == runs.by_id.end() ? 0u : it->second;
    };

    // POOL-1: the pool accounts for every accepted task once.
    if (final_stats_valid_) check_counters(s);
    KEEL_FUZZ_CHECK("POOL-1", !broken_seen_ || broken_allowed(),
                    "a submission was refused as BrokenProcessPool by a pool with no initializer and no deaths");

    // POOL-2: nothing ran that was not accepted, nothing more than 1 + retries times.
    std::set<std::uint32_t> known;
    for (const auto& t : tracked_) known.insert(t.id);
    for (const auto& m : unordered_)
      for (const auto& [id, throws] : m.calls) known.insert(id);
    for (const auto& [id, n] : runs.by_id) {
      KEEL_FUZZ_CHECK(
          "POOL-2", !rejected_.count(id),
          "call " + std::to_string(id) + " ran " + std::to_string(n) + " times but its submission was refused");
      KEEL_FUZZ_CHECK("POOL-2", known.count(id) || limbo_.count(id),
                      "call " + std::to_string(id) + " ran but was never submitted");
      KEEL_FUZZ_CHECK("POOL-2", n <= max_runs,
                      "call " + std::to_string(id) + " ran " + std::to_string(n) +
                          " times with retries = " + std::to_string(opts_.retries));
    }
    // POOL-6: max_tasks_per_child counts tasks sent; each run unit was sent.
    if (opts_.max_tasks_per_child != 0) {
      for (const auto& [pid, units] : runs.units_by_pid) {
        KEEL_FUZZ_CHECK("POOL-6", units.size() <= opts_.max_tasks_per_child,
                        "worker " + std::to_string(pid) + " ran " + std::to_string(units.size()) +
                            " tasks with max_tasks_per_child = " + std::to_string(opts_.max_tasks_per_child));
      }
    }

    for (const auto& t : tracked_) {
      const Observed o = observe(t.f, t.taken);
      check_one(t.id, t.kind, t.arg, t.timeout, o, runs_of(t.id), t.cancel_won, t.in_dropped_map, terminated);
      if (o.outcome == Outcome::timeout && t.done_ns) {
        const std::int64_t done = t.done_ns->load();
        KEEL_FUZZ_CHECK("POOL-6", done == 0 || done - t.submitted_ns >= t.timeout.count(),
                        std::string(kind_name(t.kind)) + " task " + std::to_string(t.id) + " timed out after " +
                            std::to_string((done - t.submitted_ns) / 1000) + " us, its timeout is " +
                            std::to_string(t.timeout.count() / 1000) + " us");
      }
    }

    for (const auto& m : unordered_) {
      KEEL_FUZZ_CHECK("POOL-1", m.yielded.size() == m.calls.size(),
                      "map_unordered yielded " + std::to_string(m.yielded.size()) + " of " +
                          std::to_string(m.calls.size()) + " calls");
      std::set<std::uint32_t> seen;
      for (const auto& f : m.yielded) {
        const Observed o = observe(f, false);
        std::uint32_t id = 0;
        if (o.outcome == Outcome::value) {
          id = static_cast<std::uint32_t>(o.value - expect_init_);
          KEEL_FUZZ_CHECK(
              "POOL-1", m.calls.count(id) != 0,
              "map_unordered yielded the value " + std::to_string(o.value) + ", which none of its calls returns");
        } else if (o.outcome == Outcome::remote) {
          for (const auto& [cid, throws] : m.calls)
            if (o.message == throw_message(cid)) id = cid;
        }
        if (id == 0) {
          // An error that names no call: checked against what every call of the map allows.
          check_one(0, Kind::map_value, 0, pool_timeout(), o, 0, false, false, terminated);
          continue;
        }
        KEEL_FUZZ_CHECK("POOL-1", seen.insert(id).second,
                        "map_unordered yielded call " + std::to_string(id) + " twice");
        const bool throws = m.calls.at(id);
        check_one(id, throws ? Kind::map_throw : Kind::map_value, static_cast<std::int32_t>(id), pool_timeout(), o,
                  runs_of(id), false, false, terminated);
      }
    }
    if (init_ == Init::throws || init_ == Init::exits) {
      KEEL_FUZZ_CHECK("POOL-5", runs.by_id.empty(),
                      std::to_string(runs.by_id.size()) + " calls ran in a pool whose initializer always fails");
    }
  }

  // One call's outcome against its kind and the script; id 0: unknown call.
  void check_one(std::uint32_t id, Kind kind, std::int32_t arg, Nanos timeout, const Observed& o, unsigned runs,
                 bool cancel_won, bool dropped, bool terminated) {
    const unsigned max_runs = 1 + opts_.retries;
    const std::string who = std::string(kind_name(kind)) + " call " + std::to_string(id) + " (ran " +
                            std::to_string(runs) + " times, retries " + std::to_string(opts_.retries) + ")";
    const bool self_kill = kind == Kind::abort || kind == Kind::exit;
    const bool init_fails = init_ == Init::throws || init_ == Init::exits;
    KEEL_FUZZ_CHECK("POOL-1", !cancel_won || o.outcome == Outcome::cancelled,
                    who + ": its cancel() won but it ended with " + outcome_name(o.outcome));
    switch (o.outcome) {
      case Outcome::value: {
        const bool answers = kind == Kind::echo || kind == Kind::sleep || kind == Kind::map_value;
        KEEL_FUZZ_CHECK(kind == Kind::hang ? "POOL-6" : "POOL-1", answers,
                        who + " returned a value (" + std::to_string(o.value) + ")");
        if (id != 0 && answers && o.value_known) {
          KEEL_FUZZ_CHECK(
              "POOL-1", o.value == arg + expect_init_,
              who + " returned " + std::to_string(o.value) + ", expected " + std::to_string(arg + expect_init_));
        }
        break;
      }
      case Outcome::remote:
        KEEL_FUZZ_CHECK("POOL-1", kind == Kind::raise || kind == Kind::map_throw,
                        who + " failed with RemoteError " + o.type + ": " + o.message);
        KEEL_FUZZ_CHECK("POOL-1", o.type == "std::runtime_error" && (id == 0 || o.message == throw_message(id)),
                        who + " failed with RemoteError " + o.type + ": " + o.message);
        break;
      case Outcome::lost: {
        KEEL_FUZZ_CHECK("POOL-1", self_kill || killed_ || terminated,
                        who + " failed with WorkerLost, but no worker was killed: " + o.message);
        const bool code_ok = (kind == Kind::abort && o.exit_code == -SIGABRT) ||
                             (kind == Kind::exit && o.exit_code == 7) ||
                             ((killed_ || sigkill_terminated_) && o.exit_code == -SIGKILL) ||
                             (sigterm_terminated_ && o.exit_code == -SIGTERM);
        KEEL_FUZZ_CHECK("POOL-1", code_ok,
                        who + " failed with WorkerLost, exit code " + std::to_string(o.exit_code) + ": " + o.message);
        if (id != 0 && self_kill && !killed_ && !terminated) {
          KEEL_FUZZ_CHECK("POOL-2", runs == max_runs, who + ": a task that kills its worker was lost untouched");
        }
        break;
      }
      case Outcome::timeout:
        KEEL_FUZZ_CHECK("POOL-6", timeout > Nanos::zero(), who + " failed with TimeoutError without a timeout");
        break;
      case Outcome::cancelled:
        KEEL_FUZZ_CHECK("POOL-1", cancel_won || dropped || cancel_futures_ || terminated,
                        who + " was cancelled, but nothing cancelled it");
        KEEL_FUZZ_CHECK("POOL-2", runs == 0, who + ": cancelled before it started, yet it ran");
        break;
      case Outcome::cancelled_error:
        KEEL_FUZZ_CHECK("POOL-1", cancel_futures_ || terminated,
                        who + " failed with CancelledError, but nothing cancelled it: " + o.message);
        break;
      case Outcome::broken:
        KEEL_FUZZ_CHECK("POOL-1", broken_allowed(),
                        who + " failed with BrokenProcessPool with no initializer and no deaths: " + o.message);
        if (init_ == Init::exits && !killed_) {
          KEEL_FUZZ_CHECK("POOL-5", o.message.find("status 3") != std::string::npos,
                          who + ": the initializer exits with 3, but the pool says: " + o.message);
        }
        break;
      case Outcome::other:
        KEEL_FUZZ_CHECK("POOL-1", false, who + " failed with an unexpected error: " + o.message);
        break;
    }
    if (id == 0) return;
    if (o.outcome == Outcome::value || o.outcome == Outcome::remote) {
      KEEL_FUZZ_CHECK("POOL-2", runs >= 1 && runs <= (killed_ ? max_runs : 1u), who + " answered");
    }
    if (init_fails) {
      KEEL_FUZZ_CHECK("POOL-5", o.outcome == Outcome::broken || o.outcome == Outcome::cancelled,
                      who + " ended with " + outcome_name(o.outcome) + " in a pool whose initializer always fails");
    }
  }

  keel::fuzz::Input& in_;
  keel::ProcessPoolOptions opts_;
  unsigned workers_ = 1;
  bool long_window_ = true;
  Init init_ = Init::none;
  Final final_ = Final::shutdown_wait;
  int expect_init_ = 0;
  std::string path_;
  std::unique_ptr<keel::ProcessPool> pool_;

  std::uint32_t last_id_ = 0;
  std::vector<Tracked> tracked_;
  std::vector<keel::ProcessMapResults<int>> maps_;
  std::vector<UnorderedMap> unordered_;
  std::set<std::uint32_t> rejected_;  // refused: must never run
  std::set<std::uint32_t> limbo_;     // in a map refused midway: only the 1 + retries bound
  std::uint64_t accepted_tasks_ = 0;  // singles and map chunks
  std::uint64_t maybe_accepted_ = 0;  // chunks of maps refused midway: some may have been accepted

  bool shut_ = false;
  bool cancel_futures_ = false;
  bool killed_ = false;  // a SIGKILL from outside reached a worker
  bool sigterm_terminated_ = false;
  bool sigkill_terminated_ = false;
  bool broken_seen_ = false;
  std::uint64_t deaths_ = 0;
  bool self_kill_submitted_ = false;
  bool final_stats_valid_ = false;
  keel::ProcessPoolStats last_{};
  keel::ProcessPoolStats final_stats_{};
};

}  // namespace

KEEL_FUZZ_TARGET(process_pool_ops) {
  Script script(in);
  script.run();
}
