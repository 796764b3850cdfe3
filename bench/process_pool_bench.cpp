// keel ProcessPool benchmarks: keel::ProcessPool against CPython's
// ProcessPoolExecutor and multiprocessing.Pool, against the raw cost of
// moving frames through sockets to worker processes (the ceiling), and how
// fast a killed worker is replaced, and the makespan of heterogeneous
// workloads against the ideal; a summary table with ratios from the same run
// closes it.
//
// Benchmarks (names are what --benchmark_filter matches), in the order they run:
//   throughput/keel/submit/workers:2      one thread submits N tiny tasks (square
//   throughput/keel/submit/workers:default  an int64), keeps every future, then
//                                    reads each result in order; time = wall
//                                    time / N. Workers are started and ready,
//                                    and one untimed round of N has warmed the
//                                    heap, before the clock starts;
//                                    max_in_flight is the default (64 per
//                                    worker).
//   throughput/keel/map/chunksize:{1,256}  pool.map over N inputs, results read
//                                    in order (2 workers).
//   throughput/keel/map_unordered/chunksize:1  pool.map_unordered, each result
//                                    read as it completes (one repetition).
//   ceiling/frames/in_flight:{1,16,256} N (N/10 for 1) raw 16-byte frames (frame.hpp headers,
//                                    no payload, no futures, no codec, no
//                                    supervisor thread) from one thread to 2
//                                    echo processes over socketpairs, with
//                                    that many frames outstanding per process.
//                                    The echo answers each frame with its own
//                                    write(), as a pool worker answers each
//                                    task.
//   ceiling/frames_batched/in_flight:256  the same, but the echo answers all
//                                    the frames one read() brought with one
//                                    write() (the transport's own limit).
//   throughput/cpython/{executor_submit,apply_async,map_chunk1,map_chunk256}
//                                    bench/cpython_process_pool.py run by
//                                    popen() with 2 workers (its own clock,
//                                    reported as manual time; --cpython_tasks
//                                    tasks per case, same per-task unit).
//   scaling/keel/submit/workers:W    the submit row with --scale_tasks tasks
//                                    (default 20000) on W workers, W = 1, 2,
//                                    4, 8 (doubling up to KEEL_BENCH_SCALE_MAX,
//                                    default 8).
//   replace/idle                     SIGKILL to an idle worker of a 2-worker
//                                    pool; one sample = the time until the
//                                    pool has 2 ready workers again, one of
//                                    them new (stats().ready and
//                                    worker_pids(), polled every 20 us).
//                                    Counters: p50_ms, p90_ms, max_ms, and
//                                    seen_* (until the dead pid left
//                                    worker_pids(): the supervisor saw the
//                                    death and published it).
//   replace/idle_spare               the same with spare_workers = 1, each
//                                    kill once a spare was started and had
//                                    50 ms to come up: the replacement is
//                                    the spare's process.
//   replace/mid_task                 a task that stamps the time and SIGKILLs
//                                    its own worker; one sample = the time
//                                    from that stamp until the task's future
//                                    failed with WorkerLost (fail_* counters)
//                                    and until the replacement was ready
//                                    (p50_ms, p90_ms, max_ms).
//   replace/spawn_floor              the floor under both: spawn_child of this
//                                    program (a fresh image, as the pool
//                                    starts workers) until its first echo.
//
//   makespan/{a,b,c}/{keel,cpython_executor,cpython_apply_async}
//                                    heterogeneous workloads, each on a fresh
//                                    pool (warmed with two 10 ms sleeps per
//                                    worker), one submit per task (CPython:
//                                    ProcessPoolExecutor.submit, and
//                                    multiprocessing.Pool.apply_async), time =
//                                    from the first submit until every result
//                                    was read; the summary compares it with
//                                    the ideal and across the three:
//                                    a: n tasks of 1 s on n workers (n = the
//                                       pool's default workers); ideal 1 s
//                                    b: one 2 s task, then ten 100 ms tasks,
//                                       on 2 workers; ideal makespan
//                                       max(longest, work / workers) = 2 s,
//                                       and the ten short ones all done (read
//                                       first) at 10 x 100 ms / (workers - 1)
//                                       = 1 s
//                                    c: 2000 tasks of exponentially
//                                       distributed durations (mean 1 ms,
//                                       splitmix64 from kMakespanSeed; the
//                                       script derives the same list) on n
//                                       workers; ideal max(longest,
//                                       work / workers)
//                                    a and b sleep (nanosleep, time.sleep); c
//                                    busy-waits on the monotonic clock.
//
// Flags besides --benchmark_*: --tasks=N (default 100000), --cpython_tasks=N
// (default 100000), --samples=N (replacement samples, default 50),
// --python=CMD (default python3; "none" skips CPython), --makespan=LIST (of
// a,b,c; default all; "none" skips them), --makespan_scale=X (alias
// --makespan-scale; default 1: multiplies the durations of a and b and the
// task count of c), --makespan_runs=N (repetitions of each makespan row,
// default 3), --makespan_workers=N (n of a and c; default the CPUs this
// process may use), --quick (or env KEEL_BENCH_QUICK=1: 10000 tasks, 2000
// CPython tasks, 10 samples, one repetition, makespan scale 0.1 and one run;
// a smoke run of a few seconds). Defaults:
// --benchmark_repetitions=3 --benchmark_display_aggregates_only=true (the
// summary uses medians); CPython, map_unordered and the replacement
// benchmarks run once.
// The exit status is 0 unless a benchmark reported an error (a wrong result
// sum, a wrong error, a pool that did not recover) or an argument was not
// recognized; targets never set it.

#include <benchmark/benchmark.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench_support.hpp"
#include "keel/process/bootstrap.hpp"
#include "keel/process/child.hpp"
#include "keel/process/frame.hpp"
#include "keel/process/shared_memory.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------
// Tasks and child roles. Registered by static initializers, so that every
// fresh worker image (spawned from this program) holds the same table.

std::int64_t square(std::int64_t x) { return x * x; }

// Stamps the time (steady_clock is CLOCK_MONOTONIC: one clock for every
// process) into the shared list named `stamp`, then kills its own worker.
std::int64_t stamp_and_die(std::string stamp) {
  auto list = keel::SharedList<std::int64_t>::attach(stamp);
  list.set(0, now_ns());
  ::raise(SIGKILL);
  return 0;
}

// The makespan workloads' tasks: each takes `ns` and returns it (the parent
// checks the sum). sleep_ns sleeps (nanosleep); spin_ns busy-waits on the
// monotonic clock, keeping its CPU the whole time.
std::int64_t sleep_ns(std::int64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return ns;
}
std::int64_t spin_ns(std::int64_t ns) {
  const std::int64_t end = now_ns() + ns;
  while (now_ns() < end) {
  }
  return ns;
}

const auto square_task = keel::register_task("bench.square", square);
const auto stamp_and_die_task = keel::register_task("bench.stamp_and_die", stamp_and_die);
const auto sleep_task = keel::register_task("bench.sleep_ns", sleep_ns);
const auto spin_task = keel::register_task("bench.spin_ns", spin_ns);

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// The ceiling's worker: echoes 16-byte frames back. batched: one write() for
// every whole frame a read() brought; otherwise one write() per frame.
int echo_loop(const keel::detail::ChildContext& ctx, bool batched) {
  if (ctx.fds.empty()) return 2;
  const int fd = ctx.fds[0];
  static char buf[64 * 1024];
  std::size_t have = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf + have, sizeof buf - have);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    have += static_cast<std::size_t>(n);
    const std::size_t whole = have - have % keel::frame_header_size;
    if (batched) {
      if (!write_all(fd, buf, whole)) return 0;
    } else {
      for (std::size_t off = 0; off < whole; off += keel::frame_header_size) {
        if (!write_all(fd, buf + off, keel::frame_header_size)) return 0;
      }
    }
    std::memmove(buf, buf + whole, have - whole);
    have -= whole;
  }
}
int echo_each(const keel::detail::ChildContext& ctx) { return echo_loop(ctx, false); }
int echo_batched(const keel::detail::ChildContext& ctx) { return echo_loop(ctx, true); }

const bool echo_roles_registered = [] {
  keel::detail::register_child_role("bench.echo", &echo_each);
  keel::detail::register_child_role("bench.echo_batched", &echo_batched);
  return true;
}();

// ---------------------------------------------------------------------------
// Settings

std::int64_t g_tasks = 100'000;          // --tasks
std::int64_t g_cpython_tasks = 100'000;  // --cpython_tasks
std::int64_t g_samples = 50;             // --samples
std::int64_t g_scale_tasks = 20'000;     // --scale_tasks
std::string g_python = "python3";        // --python
std::string g_cpython_script;            // found in main
bool g_quick = false;                    // --quick / KEEL_BENCH_QUICK
constexpr unsigned kWorkers = 2;
constexpr std::int64_t kChunk = 256;
// Makespan workloads
std::string g_makespan = "abc";       // --makespan: which of a, b, c run, in order ("none": no makespan rows)
double g_makespan_scale = 1.0;        // --makespan_scale (--quick: 0.1)
std::int64_t g_makespan_runs = 3;     // --makespan_runs: repetitions of each makespan row (--quick: 1)
std::int64_t g_makespan_workers = 0;  // --makespan_workers: workers of a and c (0: the CPUs this process may use)
// The seed of workload c's durations; bench/cpython_process_pool.py has the
// same default (MAKESPAN_SEED), and is given it explicitly.
constexpr std::uint64_t kMakespanSeed = 20261127;
constexpr std::int64_t kMakespanCTasks = 2000;
constexpr double kMakespanCMeanNs = 1e6;

std::int64_t expected_sum(std::int64_t n) { return (n - 1) * n * (2 * n - 1) / 6; }

void check_sum(benchmark::State& state, std::int64_t got, std::int64_t n) {
  if (got != expected_sum(n)) state.SkipWithError("wrong sum of task results");
}

// Sleeps about `us` microseconds (the bench thread's timer slack is 1 ns).
void nap_us(long us) {
  timespec ts{0, us * 1000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// Waits until `pool` has `n` ready workers; false after 10 s.
bool wait_ready(const keel::ProcessPool& pool, unsigned n) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    const auto s = pool.stats();
    if (s.ready >= n && s.workers == n) return true;
    nap_us(200);
  }
  return false;
}

// ---------------------------------------------------------------------------
// keel throughput

// CPU time consumed so far by a clock, or by the processes `pids` together
// (their CPU clocks, clock_getcpuclockid); -1 if one cannot be read.
std::int64_t cpu_ns(clockid_t clock) {
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return -1;
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
std::int64_t cpu_ns(const std::vector<int>& pids) {
  std::int64_t total = 0;
  for (int pid : pids) {
    clockid_t c;
    if (::clock_getcpuclockid(pid, &c) != 0) return -1;
    const std::int64_t t = cpu_ns(c);
    if (t < 0) return -1;
    total += t;
  }
  return total;
}

// Counters: CPU ns per item in this process (submitting thread and
// supervisor) and in the worker processes, summed over all of them. They
// tell what a task costs whatever else the machine runs.
void set_cpu(benchmark::State& state, std::int64_t parent_ns, std::int64_t workers_ns) {
  const double n = static_cast<double>(state.iterations());
  state.counters["parent_cpu_ns"] = static_cast<double>(parent_ns) / n;
  if (workers_ns >= 0) state.counters["worker_cpu_ns"] = static_cast<double>(workers_ns) / n;
}

// n: tasks per round; warm: tasks of the untimed first round.
template <class Round>
void run_rounds(benchmark::State& state, keel::ProcessPool& pool, Round round, std::int64_t warm = g_tasks,
                std::int64_t n = g_tasks) {
  if (!wait_ready(pool, pool.workers())) {
    state.SkipWithError("the pool's workers did not start within 10 s");
    return;
  }
  // One untimed round of the same size first: a process's first round faults
  // its heap in (page clearing is then the top kernel symbol). Rows measure a
  // warm heap, as a long-running program has.
  round(std::min(warm, n));
  const auto pids = pool.worker_pids();
  const std::int64_t parent0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), workers0 = cpu_ns(pids);
  std::int64_t sum = 0;
  while (state.KeepRunningBatch(n)) sum = round(n);
  const std::int64_t parent1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), workers1 = cpu_ns(pids);
  check_sum(state, sum, n);
  state.SetItemsProcessed(state.iterations());
  set_cpu(state, parent1 - parent0, workers0 < 0 || workers1 < 0 ? -1 : workers1 - workers0);
  state.counters["workers"] = pool.workers();
}

std::vector<std::int64_t> inputs(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

void bm_submit(benchmark::State& state, unsigned workers, std::int64_t tasks = g_tasks) {
  keel::ProcessPool pool({.workers = workers});
  run_rounds(
      state, pool,
      [&](std::int64_t n) {
        std::vector<keel::Future<std::int64_t>> fs;
        fs.reserve(static_cast<std::size_t>(n));
        for (std::int64_t i = 0; i < n; ++i) fs.push_back(pool.submit(square_task, i));
        std::int64_t sum = 0;
        for (auto& f : fs) sum += f.result();
        return sum;
      },
      tasks, tasks);
}

void bm_map(benchmark::State& state, std::size_t chunksize) {
  keel::ProcessPool pool({.workers = kWorkers});
  run_rounds(state, pool, [&](std::int64_t n) {
    const auto in = inputs(n);
    std::int64_t sum = 0;
    for (std::int64_t v : pool.map(square_task, in, {.chunksize = chunksize})) sum += v;
    return sum;
  });
}

void bm_map_unordered(benchmark::State& state, std::size_t chunksize) {
  keel::ProcessPool pool({.workers = kWorkers});
  run_rounds(
      state, pool,
      [&](std::int64_t n) {
        const auto in = inputs(n);
        std::int64_t sum = 0;
        for (const auto& f : pool.map_unordered(square_task, in, {.chunksize = chunksize})) sum += f.result();
        return sum;
      },
      10'000);  // a full-size warm round would add seconds (see bench/README.md)
}

// ---------------------------------------------------------------------------
// The ceiling: raw frames to echo processes

struct EchoPeer {
  keel::detail::ChildHandle child;
  int fd = -1;
  keel::FrameReader reader;
  std::int64_t sent = 0, received = 0, quota = 0;
};

class EchoPair {
 public:
  explicit EchoPair(const char* role) {
    for (auto& p : peers_) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        error_ = std::string("socketpair: ") + std::strerror(errno);
        return;
      }
      keel::detail::SpawnRequest req;
      req.role = role;
      req.fds = {sv[1]};
      try {
        p.child = keel::detail::spawn_child(req);
      } catch (const std::exception& e) {
        ::close(sv[0]);
        ::close(sv[1]);
        error_ = e.what();
        return;
      }
      ::close(sv[1]);
      p.fd = sv[0];
    }
  }
  EchoPair(const EchoPair&) = delete;
  EchoPair& operator=(const EchoPair&) = delete;
  ~EchoPair() {
    for (auto& p : peers_) {
      if (p.fd >= 0) ::close(p.fd);  // EOF: the echo exits
      if (p.child.pid > 0) keel::detail::reap_child(p.child, true);
    }
  }
  const std::string& error() const { return error_; }
  std::vector<int> pids() const { return {peers_[0].child.pid, peers_[1].child.pid}; }

  // Sends `total` frames split over the two peers, keeping `depth` in flight
  // to each, until every echo came back. False on a broken channel.
  bool run(std::int64_t total, std::int64_t depth) {
    std::string frames;
    for (std::int64_t i = 0; i < depth; ++i) keel::append_frame(frames, 1, 0, {});
    for (std::size_t i = 0; i < 2; ++i) {
      EchoPeer& p = peers_[i];
      p.sent = p.received = 0;
      p.quota = total / 2 + (i == 0 ? total % 2 : 0);
      const std::int64_t k = std::min(depth, p.quota);
      if (!write_all(p.fd, frames.data(), static_cast<std::size_t>(k) * keel::frame_header_size)) return false;
      p.sent = k;
    }
    pollfd pfd[2];
    for (;;) {
      int open = 0;
      for (std::size_t i = 0; i < 2; ++i) {
        const bool more = peers_[i].received < peers_[i].quota;
        pfd[i] = {more ? peers_[i].fd : -1, POLLIN, 0};
        open += more;
      }
      if (open == 0) return true;
      if (::poll(pfd, 2, 10'000) <= 0) return false;
      for (std::size_t i = 0; i < 2; ++i) {
        if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        EchoPeer& p = peers_[i];
        auto span = p.reader.prepare(64 * 1024);
        const ssize_t n = ::read(p.fd, span.data(), span.size());
        if (n <= 0) return false;
        p.reader.commit(static_cast<std::size_t>(n));
        std::int64_t got = 0;
        while (p.reader.next()) ++got;
        p.received += got;
        const std::int64_t k = std::min(got, p.quota - p.sent);
        if (k > 0 && !write_all(p.fd, frames.data(), static_cast<std::size_t>(k) * keel::frame_header_size)) {
          return false;
        }
        p.sent += k;
      }
    }
  }

 private:
  EchoPeer peers_[2];
  std::string error_;
};

void put_ms(benchmark::State& state, const char* prefix, const std::vector<double>& ns);

// The floor under a replacement: start a fresh image of this program
// (spawn_child, as the pool does) and get one echo back from it; then close
// its channel and reap it, untimed.
void bm_spawn_floor(benchmark::State& state) {
  std::vector<double> total;
  std::string frame;
  keel::append_frame(frame, 1, 0, {});
  for (auto _ : state) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return state.SkipWithError("socketpair failed");
    keel::detail::SpawnRequest req;
    req.role = "bench.echo";
    req.fds = {sv[1]};
    const std::int64_t t0 = now_ns();
    keel::detail::ChildHandle child;
    try {
      child = keel::detail::spawn_child(req);
    } catch (const std::exception& e) {
      ::close(sv[0]);
      ::close(sv[1]);
      return state.SkipWithError((std::string("spawn_child: ") + e.what()).c_str());
    }
    ::close(sv[1]);
    char back[keel::frame_header_size];
    std::size_t got = 0;
    const bool sent = write_all(sv[0], frame.data(), frame.size());
    while (sent && got < sizeof back) {
      const ssize_t n = ::read(sv[0], back + got, sizeof back - got);
      if (n <= 0 && !(n < 0 && errno == EINTR)) break;
      if (n > 0) got += static_cast<std::size_t>(n);
    }
    const std::int64_t t1 = now_ns();
    ::close(sv[0]);
    keel::detail::reap_child(child, true);
    if (got != sizeof back) {
      return state.SkipWithError(("the fresh image did not echo (" + std::to_string(got) + " bytes back)").c_str());
    }
    total.push_back(static_cast<double>(t1 - t0));
    state.SetIterationTime(static_cast<double>(t1 - t0) / 1e9);
  }
  put_ms(state, "", total);
}

void bm_frames(benchmark::State& state, const char* role) {
  const std::int64_t depth = state.range(0);
  // One frame in flight is a ping-pong per frame: a tenth of the frames
  // keeps it to a second or two.
  const std::int64_t n = depth == 1 ? std::max<std::int64_t>(g_tasks / 10, 1) : g_tasks;
  EchoPair pair(role);
  if (!pair.error().empty()) {
    state.SkipWithError(("starting the echo processes failed: " + pair.error()).c_str());
    return;
  }
  bool ok = pair.run(std::min<std::int64_t>(n, 2000), depth);  // warm: the children are up
  const std::int64_t parent0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), echo0 = cpu_ns(pair.pids());
  while (ok && state.KeepRunningBatch(n)) ok = pair.run(n, depth);
  const std::int64_t parent1 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID), echo1 = cpu_ns(pair.pids());
  if (!ok) {
    state.SkipWithError("an echo channel broke or stalled for 10 s");
    return;
  }
  state.SetItemsProcessed(state.iterations());
  set_cpu(state, parent1 - parent0, echo0 < 0 || echo1 < 0 ? -1 : echo1 - echo0);
}

// ---------------------------------------------------------------------------
// CPython, through bench/cpython_process_pool.py

// The value of " key=" in line, or nothing.
std::optional<double> field(const std::string& line, const char* key) {
  const std::string k = std::string(" ") + key + "=";
  const auto at = line.find(k);
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(line.c_str() + at + k.size(), nullptr);
}

std::vector<std::string> g_cpython_lines;  // the script's output lines, in order

// Runs the script's command line `cmd`; returns its result line
// ("cpython_process_pool ...", empty if none), and all it printed in *out.
std::string run_cpython(const std::string& cmd, std::string* out) {
  out->clear();
  if (std::FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) *out += buf;
    if (pclose(p) != 0) *out = "failed: " + *out;
  }
  const auto at = out->find("cpython_process_pool ");
  std::string line = at == std::string::npos ? std::string() : out->substr(at);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

void bm_cpython(benchmark::State& state, const char* script_case) {
  const std::int64_t n = g_cpython_tasks;
  const std::string cmd = g_python + " '" + g_cpython_script + "' --tasks " + std::to_string(n) + " --workers " +
                          std::to_string(kWorkers) + " --chunksize " + std::to_string(kChunk) + " --cases " +
                          script_case + " 2>&1";
  while (state.KeepRunningBatch(n)) {
    std::string out;
    const std::string line = run_cpython(cmd, &out);
    const auto seconds = field(line, "seconds");
    if (!seconds || *seconds <= 0) {
      state.SkipWithError(("python run failed: " + cmd + ": " + out).c_str());
      return;
    }
    g_cpython_lines.push_back(line);
    state.SetIterationTime(*seconds);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------------------
// Makespan: heterogeneous workloads, keel against CPython's two pools

// The CPUs this process may run on: what keel::ProcessPool starts by default.
unsigned affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

// Workers of workloads a and c: --makespan_workers, else the pool's default.
unsigned makespan_workers() {
  return g_makespan_workers > 0 ? static_cast<unsigned>(g_makespan_workers) : affinity_cpus();
}

// `count` durations in ns, exponentially distributed with mean `mean_ns`:
// u = the top 53 bits of each splitmix64 output / 2^53, d = -mean * log(1 - u),
// truncated, at least 1. bench/cpython_process_pool.py (exponential_ns) does
// the same arithmetic; each CPython run reports the sum, and a run whose sum
// differs from this list's is an error.
std::vector<std::int64_t> exponential_ns(std::int64_t count, double mean_ns, std::uint64_t seed) {
  std::vector<std::int64_t> v;
  v.reserve(static_cast<std::size_t>(count));
  std::uint64_t state = seed;
  for (std::int64_t i = 0; i < count; ++i) {
    state += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    const double u = static_cast<double>(z >> 11) * 0x1.0p-53;
    const double d = -mean_ns * std::log(1.0 - u);
    v.push_back(std::max<std::int64_t>(1, static_cast<std::int64_t>(d)));
  }
  return v;
}

std::string duration_label(std::int64_t ns) {
  char buf[32];
  if (ns >= 1'000'000'000) {
    std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(ns) / 1e9);
  } else if (ns >= 1'000'000) {
    std::snprintf(buf, sizeof buf, "%g ms", static_cast<double>(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%g us", static_cast<double>(ns) / 1e3);
  }
  return buf;
}

struct Makespan {
  char id = 'a';
  bool spin = false;  // c: busy-waiting tasks; a, b: sleeping ones
  unsigned workers = 0;
  std::vector<std::int64_t> ns;  // task durations, in submission order
  std::size_t short_from = 0;    // results from here on are read first (b: the ten short tasks)
  std::int64_t work_ns = 0, longest_ns = 0;
  double ideal_s = 0;        // max(longest task, work / workers)
  double short_ideal_s = 0;  // b: the ten short tasks' work / (workers - 1)
  std::string label;
};

// Workload a, b or c at --makespan_scale (the durations of a and b, the task
// count of c). The CPython script builds the same from --workers, --scale
// and --seed.
Makespan makespan_workload(char id) {
  Makespan w;
  w.id = id;
  const double scale = g_makespan_scale;
  if (id == 'a') {
    w.workers = makespan_workers();
    w.ns.assign(w.workers, std::max<std::int64_t>(1, static_cast<std::int64_t>(1e9 * scale)));
    w.label = "(a) " + std::to_string(w.workers) + " x " + duration_label(w.ns[0]) + ", sleep";
  } else if (id == 'b') {
    w.workers = kWorkers;
    const std::int64_t long_ns = std::max<std::int64_t>(1, static_cast<std::int64_t>(2e9 * scale));
    const std::int64_t short_ns = std::max<std::int64_t>(1, static_cast<std::int64_t>(1e8 * scale));
    w.ns.push_back(long_ns);
    w.ns.insert(w.ns.end(), 10, short_ns);
    w.short_from = 1;
    w.short_ideal_s = 10.0 * static_cast<double>(short_ns) / std::max(1u, w.workers - 1) / 1e9;
    w.label = "(b) " + duration_label(long_ns) + " + 10 x " + duration_label(short_ns) + ", sleep";
  } else {
    w.spin = true;
    w.workers = makespan_workers();
    const auto count =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(kMakespanCTasks) * scale + 0.5));
    w.ns = exponential_ns(count, kMakespanCMeanNs, kMakespanSeed);
    w.label = "(c) " + std::to_string(count) + " x exp(mean " +
              duration_label(static_cast<std::int64_t>(kMakespanCMeanNs)) + "), busy";
  }
  for (const std::int64_t ns : w.ns) {
    w.work_ns += ns;
    w.longest_ns = std::max(w.longest_ns, ns);
  }
  w.ideal_s = std::max(static_cast<double>(w.longest_ns), static_cast<double>(w.work_ns) / w.workers) / 1e9;
  w.label += ", " + std::to_string(w.workers) + " workers";
  if (w.short_from > 0) w.label += ": all";
  return w;
}

// Counters of a makespan row (seconds): the medians feed the summary.
void set_makespan_counters(benchmark::State& state, const Makespan& w, double seconds, double short_seconds) {
  state.counters["makespan_s"] = seconds;
  state.counters["ideal_s"] = w.ideal_s;
  state.counters["per_ideal"] = seconds / w.ideal_s;
  if (w.short_from > 0) {
    state.counters["short_s"] = short_seconds;
    state.counters["short_ideal_s"] = w.short_ideal_s;
  }
  state.counters["workers"] = w.workers;
}

// keel: a fresh pool of w.workers (started, ready, and warmed with two 10 ms
// sleeps per worker, as the CPython script warms its pools), then one
// submit() per task in order; the results behind short_from are read first,
// then the rest. Time = from the first submit until every result was read.
void bm_makespan_keel(benchmark::State& state, char id) {
  const Makespan w = makespan_workload(id);
  keel::ProcessPool pool({.workers = w.workers});
  if (!wait_ready(pool, w.workers)) return state.SkipWithError("the pool's workers did not start within 10 s");
  const auto& task = w.spin ? spin_task : sleep_task;
  try {
    std::vector<keel::Future<std::int64_t>> warm;
    for (unsigned i = 0; i < 2 * w.workers; ++i) warm.push_back(pool.submit(sleep_task, std::int64_t{10'000'000}));
    for (auto& f : warm) f.result();
    double seconds = 0, short_seconds = 0;
    for (auto _ : state) {
      std::vector<keel::Future<std::int64_t>> fs;
      fs.reserve(w.ns.size());
      std::int64_t sum = 0;
      const std::int64_t t0 = now_ns();
      for (const std::int64_t ns : w.ns) fs.push_back(pool.submit(task, ns));
      for (std::size_t i = w.short_from; i < fs.size(); ++i) sum += fs[i].result();
      const std::int64_t t_short = now_ns();
      for (std::size_t i = 0; i < w.short_from; ++i) sum += fs[i].result();
      const std::int64_t t1 = now_ns();
      if (sum != w.work_ns) return state.SkipWithError("wrong sum of task results");
      seconds = static_cast<double>(t1 - t0) / 1e9;
      short_seconds = static_cast<double>(t_short - t0) / 1e9;
      state.SetIterationTime(seconds);
    }
    set_makespan_counters(state, w, seconds, short_seconds);
  } catch (const std::exception& e) {
    state.SkipWithError((std::string("a task failed: ") + e.what()).c_str());
  }
}

// CPython: the script's makespan_<id>_<peer> case, with the same workers,
// scale and seed (it reports the sum of its durations, checked here).
void bm_makespan_cpython(benchmark::State& state, char id, const char* peer) {
  const Makespan w = makespan_workload(id);
  char scale[40];
  std::snprintf(scale, sizeof scale, "%.17g", g_makespan_scale);
  const std::string cmd = g_python + " '" + g_cpython_script + "' --cases makespan_" + std::string(1, id) + "_" + peer +
                          " --workers " + std::to_string(w.workers) + " --scale " + scale + " --seed " +
                          std::to_string(kMakespanSeed) + " 2>&1";
  double seconds = 0, short_seconds = 0;
  for (auto _ : state) {
    std::string out;
    const std::string line = run_cpython(cmd, &out);
    const auto s = field(line, "seconds"), work = field(line, "work_ns"), tasks = field(line, "tasks");
    if (!s || *s <= 0) return state.SkipWithError(("python run failed: " + cmd + ": " + out).c_str());
    if (!work || !tasks || static_cast<std::int64_t>(*work) != w.work_ns ||
        static_cast<std::size_t>(*tasks) != w.ns.size()) {
      return state.SkipWithError(("the script's workload differs from keel's: " + line).c_str());
    }
    g_cpython_lines.push_back(line);
    seconds = *s;
    short_seconds = field(line, "short_seconds").value_or(*s);
    state.SetIterationTime(seconds);
  }
  set_makespan_counters(state, w, seconds, short_seconds);
}

// ---------------------------------------------------------------------------
// Worker replacement

struct Percentiles {
  double p50 = 0, p90 = 0, max = 0;
};
Percentiles percentiles(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const auto at = [&v](double q) { return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
  return {at(0.5), at(0.9), v.back()};
}

void put_ms(benchmark::State& state, const char* prefix, const std::vector<double>& ns) {
  const Percentiles p = percentiles(ns);
  const std::string s(prefix);
  state.counters[s + "p50_ms"] = p.p50 / 1e6;
  state.counters[s + "p90_ms"] = p.p90 / 1e6;
  state.counters[s + "max_ms"] = p.max / 1e6;
}

bool contains(const std::vector<int>& v, int x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// Polls every 20 us until the pool has kWorkers ready workers and `dead` is
// no longer among them; the time it saw `dead` leave goes to *seen_ns (when
// given). False after 5 s.
bool wait_replaced(const keel::ProcessPool& pool, int dead, std::int64_t* seen_ns) {
  const std::int64_t give_up = now_ns() + 5'000'000'000;
  for (;;) {
    const auto pids = pool.worker_pids();
    const auto s = pool.stats();
    const bool gone = !contains(pids, dead);
    if (gone && seen_ns && *seen_ns == 0) *seen_ns = now_ns();
    if (gone && pids.size() == kWorkers && s.ready == kWorkers && s.workers == kWorkers) return true;
    if (now_ns() > give_up) return false;
    nap_us(20);
  }
}

keel::ProcessPoolOptions replacement_options() {
  // Killing 50 workers in a row is what the restart limit exists to stop:
  // raise it, this benchmark does it on purpose.
  return {.workers = kWorkers, .restart_limit = 1'000'000, .restart_window = std::chrono::seconds(1)};
}

// spares: ProcessPoolOptions::spare_workers. With a spare, each sample
// starts once a spare was started and had 50 ms to come up (ten times the
// spawn floor), as when deaths are further apart than a start.
void bm_replace_idle(benchmark::State& state, unsigned spares) {
  auto o = replacement_options();
  o.spare_workers = spares;
  keel::ProcessPool pool(o);
  if (!wait_ready(pool, kWorkers)) return state.SkipWithError("the pool's workers did not start within 10 s");
  std::vector<double> total, seen;
  std::size_t k = 0;
  for (auto _ : state) {
    if (spares) {
      const std::int64_t give_up = now_ns() + 5'000'000'000;
      while (pool.stats().spares < spares) {
        if (now_ns() > give_up) return state.SkipWithError("no spare started within 5 s");
        nap_us(100);
      }
      nap_us(50'000);
    }
    const auto pids = pool.worker_pids();
    const int victim = pids[k++ % pids.size()];
    const std::int64_t t0 = now_ns();
    ::kill(victim, SIGKILL);
    std::int64_t t_seen = 0;
    if (!wait_replaced(pool, victim, &t_seen)) return state.SkipWithError("no ready replacement within 5 s");
    const std::int64_t t1 = now_ns();
    total.push_back(static_cast<double>(t1 - t0));
    seen.push_back(static_cast<double>(t_seen - t0));
    state.SetIterationTime(static_cast<double>(t1 - t0) / 1e9);
  }
  put_ms(state, "", total);
  put_ms(state, "seen_", seen);
  state.counters["spawned"] = static_cast<double>(pool.stats().spawned);
}

void bm_replace_mid_task(benchmark::State& state) {
  const std::string name = "keel_bench_pp_" + std::to_string(::getpid());
  std::optional<keel::SharedList<std::int64_t>> stamp;
  try {
    stamp.emplace(keel::SharedList<std::int64_t>::create(name, 1));
  } catch (const std::exception& e) {
    return state.SkipWithError((std::string("shared memory: ") + e.what()).c_str());
  }
  struct Unlink {
    keel::SharedList<std::int64_t>& l;
    ~Unlink() { l.unlink(); }
  } unlink{*stamp};
  keel::ProcessPool pool(replacement_options());
  if (!wait_ready(pool, kWorkers)) return state.SkipWithError("the pool's workers did not start within 10 s");
  std::vector<double> failed, ready;
  for (auto _ : state) {
    stamp->set(0, 0);
    auto f = pool.submit(stamp_and_die_task, name);
    f.wait();
    const std::int64_t t_fail = now_ns();
    int dead = -1;
    try {
      f.result();
      return state.SkipWithError("the task returned instead of losing its worker");
    } catch (const keel::WorkerLost& e) {
      if (e.signal() != SIGKILL) {
        return state.SkipWithError((std::string("WorkerLost did not name SIGKILL: ") + e.what()).c_str());
      }
      dead = e.pid();
    } catch (const std::exception& e) {
      return state.SkipWithError((std::string("expected WorkerLost, got: ") + e.what()).c_str());
    }
    const std::int64_t t0 = stamp->get(0);
    if (t0 == 0) return state.SkipWithError("the task did not run");
    if (!wait_replaced(pool, dead, nullptr)) return state.SkipWithError("no ready replacement within 5 s");
    const std::int64_t t1 = now_ns();
    failed.push_back(static_cast<double>(t_fail - t0));
    ready.push_back(static_cast<double>(t1 - t0));
    state.SetIterationTime(static_cast<double>(t1 - t0) / 1e9);
  }
  put_ms(state, "", ready);
  put_ms(state, "fail_", failed);
  state.counters["lost"] = static_cast<double>(pool.stats().lost);
}

// ---------------------------------------------------------------------------
// Registration

bool g_cpython_ok = false;
std::string g_cpython_why;

void register_all() {
  const auto tp = [](const std::string& name, auto fn) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)->Iterations(g_tasks)->UseRealTime()->MeasureProcessCPUTime();
  };
  tp("throughput/keel/submit/workers:2", [](benchmark::State& s) { bm_submit(s, kWorkers); });
  tp("throughput/keel/submit/workers:default", [](benchmark::State& s) { bm_submit(s, 0); });
  tp("throughput/keel/map/chunksize:1", [](benchmark::State& s) { bm_map(s, 1); });
  tp("throughput/keel/map/chunksize:256", [](benchmark::State& s) { bm_map(s, kChunk); });
  // Once: it is by far the slowest keel row (see bench/README.md).
  tp("throughput/keel/map_unordered/chunksize:1", [](benchmark::State& s) { bm_map_unordered(s, 1); })->Repetitions(1);
  benchmark::RegisterBenchmark("ceiling/frames", [](benchmark::State& s) { bm_frames(s, "bench.echo"); })
      ->Iterations(std::max<std::int64_t>(g_tasks / 10, 1))
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->ArgName("in_flight")
      ->Arg(1);
  tp("ceiling/frames", [](benchmark::State& s) { bm_frames(s, "bench.echo"); })
      ->ArgName("in_flight")
      ->Arg(16)
      ->Arg(256);
  tp("ceiling/frames_batched", [](benchmark::State& s) { bm_frames(s, "bench.echo_batched"); })
      ->ArgName("in_flight")
      ->Arg(256);
  if (g_cpython_ok) {
    const auto py = [](const char* name, const char* script_case) {
      benchmark::RegisterBenchmark(name, [script_case](benchmark::State& s) { bm_cpython(s, script_case); })
          ->Iterations(g_cpython_tasks)
          ->UseManualTime()
          ->Repetitions(1);
    };
    py("throughput/cpython/executor_submit", "executor_submit");
    py("throughput/cpython/apply_async", "apply_async");
    py("throughput/cpython/map_chunk1", "map_chunk1");
    py("throughput/cpython/map_chunk256", "map_chunkC");
  }
  for (const std::size_t w : keel_bench::scale_counts()) {
    benchmark::RegisterBenchmark(("scaling/keel/submit/workers:" + std::to_string(w)).c_str(),
                                 [w](benchmark::State& s) { bm_submit(s, static_cast<unsigned>(w), g_scale_tasks); })
        ->Iterations(g_scale_tasks)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
  }
  benchmark::RegisterBenchmark("replace/idle", bm_replace_idle, 0u)
      ->Iterations(g_samples)
      ->UseManualTime()
      ->Repetitions(1);
  benchmark::RegisterBenchmark("replace/idle_spare", bm_replace_idle, 1u)
      ->Iterations(g_samples)
      ->UseManualTime()
      ->Repetitions(1);
  benchmark::RegisterBenchmark("replace/mid_task", bm_replace_mid_task)
      ->Iterations(g_samples)
      ->UseManualTime()
      ->Repetitions(1);
  benchmark::RegisterBenchmark("replace/spawn_floor", bm_spawn_floor)
      ->Iterations(g_samples)
      ->UseManualTime()
      ->Repetitions(1);
  // Makespan rows last: makespan/<a|b|c>/{keel,cpython_executor,cpython_apply_async}.
  for (const char id : g_makespan) {
    if (id < 'a' || id > 'c') continue;
    const std::string base = std::string("makespan/") + id + "/";
    const auto reg = [&](const std::string& name, auto fn) {
      benchmark::RegisterBenchmark(name.c_str(), fn)
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Repetitions(static_cast<int>(g_makespan_runs));
    };
    reg(base + "keel", [id](benchmark::State& s) { bm_makespan_keel(s, id); });
    if (g_cpython_ok) {
      reg(base + "cpython_executor", [id](benchmark::State& s) { bm_makespan_cpython(s, id, "executor"); });
      reg(base + "cpython_apply_async", [id](benchmark::State& s) { bm_makespan_cpython(s, id, "apply_async"); });
    }
  }
}

// ---------------------------------------------------------------------------
// Summary table

using Ns = std::optional<double>;

// One throughput row: time per task and tasks/s, then (keel and the
// ceiling) the CPU per task in this process and in the workers.
void rate_row(std::FILE* out, const char* label, Ns ns, Ns parent_cpu = std::nullopt, Ns worker_cpu = std::nullopt) {
  if (ns && *ns > 0) {
    std::fprintf(out, "  %-52s %10.1f ns %10.0f", label, *ns, 1e9 / *ns);
  } else {
    std::fprintf(out, "  %-52s %13s %10s", label, "not run", "-");
  }
  if (parent_cpu && worker_cpu) std::fprintf(out, " %8.0f ns %8.0f ns", *parent_cpu, *worker_cpu);
  std::fprintf(out, "\n");
}

// Throughput ratio of a over b from their times per task.
Ns speedup(Ns a_ns, Ns b_ns) {
  if (!a_ns || !b_ns || *a_ns <= 0) return std::nullopt;
  return *b_ns / *a_ns;
}

void ratio_row(std::FILE* out, const char* label, Ns r, std::optional<double> at_least = std::nullopt) {
  std::fprintf(out, "  %-60s", label);
  keel_bench::derive(label, r);
  if (!r) {
    std::fprintf(out, " %10s\n", "n/a");
  } else if (at_least) {
    std::fprintf(out, " %9.2fx  %s\n", *r, *keel_bench::target(label, r, true, *at_least) ? "OK" : "MISSED");
  } else {
    std::fprintf(out, " %9.2fx\n", *r);
  }
}

// The makespan table: per workload, the ideal, then keel, ProcessPoolExecutor
// and Pool.apply_async (each with makespan / ideal), keel's makespan over
// each CPython one, and the target (keel within 10% of the ideal).
void print_makespan(std::FILE* out, const keel_bench::RecordingReporter& rec) {
  std::string ids;
  for (const char id : g_makespan) {
    if (id >= 'a' && id <= 'c') ids += id;
  }
  if (ids.empty()) return;
  std::fprintf(out, "Makespan (scale %g; %s): wall time from the first submit until every result was read\n",
               g_makespan_scale,
               g_makespan_runs > 1 ? ("median of " + std::to_string(g_makespan_runs) + " runs").c_str() : "one run");
  std::fprintf(out,
               "  (a), (b): the tasks sleep; (c): they busy-wait on the monotonic clock. One submit per task;\n"
               "  CPython: ProcessPoolExecutor.submit + result() (exec), multiprocessing.Pool.apply_async + get() "
               "(Pool).\n"
               "  keel/exec, keel/Pool: keel's makespan / CPython's (under 1.00x: keel finished sooner)\n");
  std::fprintf(out, "  %-46s %9s %9s %6s %9s %6s %9s %6s %9s %9s  %s\n", "workload", "ideal", "keel", "/ideal", "exec",
               "/ideal", "Pool", "/ideal", "keel/exec", "keel/Pool", "keel <= 1.10 x ideal");
  const auto secs = [](Ns v) {
    char buf[24];
    if (v) {
      std::snprintf(buf, sizeof buf, "%7.3f s", *v);
    } else {
      std::snprintf(buf, sizeof buf, "%9s", "-");
    }
    return std::string(buf);
  };
  const auto ratio = [](Ns a, Ns b, int width) {
    char buf[24];
    if (a && b && *b > 0) {
      std::snprintf(buf, sizeof buf, "%*.2fx", width - 1, *a / *b);
    } else {
      std::snprintf(buf, sizeof buf, "%*s", width, "-");
    }
    return std::string(buf);
  };
  const auto row = [&](const std::string& label, const std::string& base, const char* counter, double ideal) {
    const Ns k = rec.counter(base + "keel", counter), ex = rec.counter(base + "cpython_executor", counter),
             pl = rec.counter(base + "cpython_apply_async", counter);
    const auto met =
        keel_bench::target(label + ": keel makespan / ideal", k ? Ns(*k / ideal) : std::nullopt, false, 1.10);
    const char* verdict = !met ? "not run" : *met ? "OK" : "MISSED";
    std::fprintf(out, "  %-46s %s %s %s %s %s %s %s %s %s  %s\n", label.c_str(), secs(ideal).c_str(), secs(k).c_str(),
                 ratio(k, ideal, 6).c_str(), secs(ex).c_str(), ratio(ex, ideal, 6).c_str(), secs(pl).c_str(),
                 ratio(pl, ideal, 6).c_str(), ratio(k, ex, 9).c_str(), ratio(k, pl, 9).c_str(), verdict);
  };
  for (const char id : ids) {
    const Makespan w = makespan_workload(id);
    const std::string base = std::string("makespan/") + id + "/";
    row(w.label, base, "makespan_s", w.ideal_s);
    if (w.short_from > 0) row("(b)   the ten short tasks done", base, "short_s", w.short_ideal_s);
    if (id == 'c') {
      std::fprintf(out, "  %-46s %s of work in all, longest task %.2f ms, seed %llu\n", "",
                   secs(static_cast<double>(w.work_ns) / 1e9).c_str(), static_cast<double>(w.longest_ns) / 1e6,
                   static_cast<unsigned long long>(kMakespanSeed));
    }
  }
  if (!g_cpython_ok) std::fprintf(out, "  CPython skipped: %s\n", g_cpython_why.c_str());
}

void print_summary(std::FILE* out, const keel_bench::RecordingReporter& rec) {
  const auto t = [&rec](const std::string& n) { return rec.real_ns(n); };
  const Ns k2 = t("throughput/keel/submit/workers:2"), kdef = t("throughput/keel/submit/workers:default");
  const Ns map1 = t("throughput/keel/map/chunksize:1"), map256 = t("throughput/keel/map/chunksize:256");
  const Ns unord = t("throughput/keel/map_unordered/chunksize:1");
  const Ns f1 = t("ceiling/frames/in_flight:1"), f16 = t("ceiling/frames/in_flight:16"),
           f256 = t("ceiling/frames/in_flight:256"), fb = t("ceiling/frames_batched/in_flight:256");
  const Ns py_ex = t("throughput/cpython/executor_submit"), py_apply = t("throughput/cpython/apply_async"),
           py_map1 = t("throughput/cpython/map_chunk1"), py_map256 = t("throughput/cpython/map_chunk256");
  const auto default_workers = rec.counter("throughput/keel/submit/workers:default", "workers");

  std::fprintf(out,
               "\nkeel ProcessPool summary (real time; median of repetitions where they ran; same run; %ld cpus)\n",
               ::sysconf(_SC_NPROCESSORS_ONLN));
  std::fprintf(out, "Throughput: %lld tiny tasks (square an int64) from one thread; CPython: %lld per case\n",
               static_cast<long long>(g_tasks), static_cast<long long>(g_cpython_tasks));
  std::fprintf(out, "  %-52s %13s %10s %11s %11s\n", "", "per task", "tasks/s", "CPU: this", "workers");
  const auto row = [&](const char* label, const char* name, Ns ns) {
    rate_row(out, label, ns, rec.counter(name, "parent_cpu_ns"), rec.counter(name, "worker_cpu_ns"));
  };
  row("keel submit + Future each, 2 workers", "throughput/keel/submit/workers:2", k2);
  const std::string def_label = "keel submit + Future each, default workers (" +
                                (default_workers ? std::to_string(static_cast<int>(*default_workers)) : "?") + ")";
  row(def_label.c_str(), "throughput/keel/submit/workers:default", kdef);
  row("keel map, chunksize 1, 2 workers", "throughput/keel/map/chunksize:1", map1);
  row("keel map, chunksize 256, 2 workers", "throughput/keel/map/chunksize:256", map256);
  row("keel map_unordered, chunksize 1, 2 workers", "throughput/keel/map_unordered/chunksize:1", unord);
  row("ceiling: raw frames, 2 echo procs, 1 in flight each", "ceiling/frames/in_flight:1", f1);
  row("ceiling: raw frames, 16 in flight each", "ceiling/frames/in_flight:16", f16);
  row("ceiling: raw frames, 256 in flight each", "ceiling/frames/in_flight:256", f256);
  row("ceiling: raw frames, 256 in flight, batched echo", "ceiling/frames_batched/in_flight:256", fb);
  if (g_cpython_ok) {
    rate_row(out, "CPython ProcessPoolExecutor.submit, 2 workers", py_ex);
    rate_row(out, "CPython multiprocessing.Pool.apply_async, 2 workers", py_apply);
    rate_row(out, "CPython Pool.map chunksize 1, 2 workers", py_map1);
    rate_row(out, "CPython Pool.map chunksize 256, 2 workers", py_map256);
  } else {
    std::fprintf(out, "  CPython skipped: %s\n", g_cpython_why.c_str());
  }

  std::fprintf(out,
               "Targets (issue 15: map chunksize 256 >= 5x CPython's; submit >= 100x ProcessPoolExecutor and\n"
               "  >= the raw 16-in-flight ceiling; an earlier issue: >= 300,000 tasks/s, >= 7.5x Pool.map)\n");
  ratio_row(out, "keel map 256 / CPython Pool.map chunksize 256", speedup(map256, py_map256), 5.0);
  ratio_row(out, "keel submit / CPython ProcessPoolExecutor.submit", speedup(k2, py_ex), 100.0);
  ratio_row(out, "keel submit / raw frames, 16 in flight", speedup(k2, f16), 1.0);
  ratio_row(out, "keel submit, 2 workers / 300,000 tasks/s", speedup(k2, 1e9 / 300'000.0), 1.0);
  ratio_row(out, "keel submit / CPython Pool.map chunksize 1", speedup(k2, py_map1), 7.5);
  {
    // What the CPU cost per task allows when nothing else runs: every CPU
    // busy with this pool and nothing else (an upper bound, not a measurement).
    const auto pc = rec.counter("throughput/keel/submit/workers:2", "parent_cpu_ns");
    const auto wc = rec.counter("throughput/keel/submit/workers:2", "worker_cpu_ns");
    const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    if (pc && wc && *pc + *wc > 0) {
      std::fprintf(
          out, "  (keel submit costs %.0f ns of CPU per task in all; %ld idle cpus would allow at most %.0f tasks/s)\n",
          *pc + *wc, cpus, static_cast<double>(cpus) * 1e9 / (*pc + *wc));
    }
  }
  std::fprintf(out, "Other ratios (information)\n");
  ratio_row(out, "keel submit / CPython Pool.apply_async", speedup(k2, py_apply));
  ratio_row(out, "keel map chunksize 1 / CPython Pool.map chunksize 1", speedup(map1, py_map1));
  ratio_row(out, "keel map chunksize 256 / raw frames, batched echo", speedup(map256, fb));
  ratio_row(out, "keel submit / raw frames, 1 in flight", speedup(k2, f1));
  ratio_row(out, "keel submit / raw frames, 256 in flight", speedup(k2, f256));
  ratio_row(out, "keel submit default workers / 2 workers", speedup(kdef, k2));

  std::fprintf(out, "Worker replacement after SIGKILL (2 workers, %lld samples) %10s %10s %10s\n",
               static_cast<long long>(g_samples), "p50", "p90", "max");
  const auto lat_row = [&](const char* label, const char* name, const char* prefix) {
    const std::string p(prefix);
    const auto p50 = rec.counter(name, p + "p50_ms"), p90 = rec.counter(name, p + "p90_ms"),
               mx = rec.counter(name, p + "max_ms");
    if (!p50 || !p90 || !mx) {
      std::fprintf(out, "  %-60s %10s\n", label, "not run");
      return;
    }
    std::fprintf(out, "  %-60s %7.2f ms %7.2f ms %7.2f ms\n", label, *p50, *p90, *mx);
  };
  lat_row("idle worker killed: dead pid gone from worker_pids()", "replace/idle", "seen_");
  lat_row("idle worker killed: replacement ready", "replace/idle", "");
  lat_row("idle worker killed, one spare: replacement ready", "replace/idle_spare", "");
  lat_row("killed mid-task: the task's future failed (WorkerLost)", "replace/mid_task", "fail_");
  lat_row("killed mid-task: replacement ready", "replace/mid_task", "");
  lat_row("floor: spawn_child of this program until its first echo", "replace/spawn_floor", "");
  const auto idle_p50 = rec.counter("replace/idle", "p50_ms");
  ratio_row(out, "5 ms / idle replacement p50 (target >= 1x: under 5 ms)",
            idle_p50 && *idle_p50 > 0 ? Ns(5.0 / *idle_p50) : std::nullopt, 1.0);
  const auto spare_p50 = rec.counter("replace/idle_spare", "p50_ms");
  ratio_row(out, "5 ms / idle replacement p50, one spare worker (target >= 1x)",
            spare_p50 && *spare_p50 > 0 ? Ns(5.0 / *spare_p50) : std::nullopt, 1.0);
  std::fprintf(out, "Scaling: keel submit + Future, %lld tasks, ns per task (CPU per task: this / workers)\n",
               static_cast<long long>(g_scale_tasks));
  for (const std::size_t w : keel_bench::scale_counts()) {
    const std::string name = "scaling/keel/submit/workers:" + std::to_string(w);
    row((std::to_string(w) + " workers").c_str(), name.c_str(), t(name));
  }
  print_makespan(out, rec);
  for (const auto& l : g_cpython_lines) std::fprintf(out, "%s\n", l.c_str());
  std::fprintf(out, "Targets are informative: the exit status does not depend on them.\n");
}

// ---------------------------------------------------------------------------
// Arguments

// Removes this program's own flags; false on a bad value.
bool take_own_flags(std::vector<char*>& args) {
  bool ok = true;
  std::vector<char*> rest;
  for (char* a : args) {
    std::string_view s(a);
    const auto num = [&](std::string_view flag, std::int64_t& into) {
      return keel_bench::positive_flag(a, flag, into, ok);
    };
    if (num("--tasks", g_tasks) || num("--cpython_tasks", g_cpython_tasks) || num("--samples", g_samples) ||
        num("--scale_tasks", g_scale_tasks)) {
      continue;
    }
    if (num("--makespan_runs", g_makespan_runs) || num("--makespan_workers", g_makespan_workers)) continue;
    if (keel_bench::positive_real_flag(a, "--makespan_scale", g_makespan_scale, ok) ||
        keel_bench::positive_real_flag(a, "--makespan-scale", g_makespan_scale, ok)) {
      continue;
    }
    if (s.substr(0, 11) == "--makespan=") {
      // A comma-separated subset of a,b,c; "all" or "none".
      const std::string v(s.substr(11));
      const std::string list = v == "all" ? "a,b,c" : v == "none" ? "" : v;
      g_makespan.clear();  // each workload once, in the order given
      for (const char c : list) {
        if (c != ',' && (c < 'a' || c > 'c')) {
          std::fprintf(stderr, "--makespan takes a comma-separated list of a, b, c, or all, or none\n");
          ok = false;
          break;
        }
        if (c != ',' && g_makespan.find(c) == std::string::npos) g_makespan += c;
      }
      continue;
    }
    if (s.substr(0, 9) == "--python=") {
      g_python = std::string(s.substr(9));
      continue;
    }
    if (s == "--quick") continue;  // read before the others
    rest.push_back(a);
  }
  args = rest;
  return ok;
}

void find_cpython(const char* argv0) {
  const auto peer =
      keel_bench::find_python_peer(g_python, "cpython_process_pool.py", "concurrent.futures, multiprocessing", argv0);
  g_cpython_ok = peer.ok;
  g_cpython_script = peer.script;
  g_cpython_why = peer.why;
}

}  // namespace

int main(int argc, char** argv) {
  // First: in a worker image this runs the worker and never returns.
  keel::bootstrap(argc, argv);
  (void)echo_roles_registered;
  // Fine-grained polling: 20 us naps, not 20 us plus the default 50 us slack.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

  std::vector<char*> args(argv, argv + argc);
  const char* env_quick = std::getenv("KEEL_BENCH_QUICK");
  g_quick = keel_bench::has_flag(args, "--quick") || (env_quick && *env_quick && std::string(env_quick) != "0");
  if (g_quick) {
    g_tasks = 10'000;
    g_cpython_tasks = 2'000;
    g_samples = 10;
    g_scale_tasks = 2'000;
    g_makespan_scale = 0.1;
    g_makespan_runs = 1;
  }
  if (!take_own_flags(args)) return 1;
  static char one_rep[] = "--benchmark_repetitions=1";
  if (g_quick && !keel_bench::has_flag(args, "--benchmark_repetitions")) args.push_back(one_rep);
  keel_bench::add_repetition_defaults(args);
  return keel_bench::run_benchmarks(
      std::move(args),
      [argv] {
        find_cpython(argv[0]);
        register_all();
      },
      print_summary);
}
