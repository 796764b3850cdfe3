// keel executor benchmarks: keel::ThreadPoolExecutor against boost::asio's
// thread_pool, oneTBB's task_group, Robert Vaser's thread_pool (Debian's
// libthread-pool-dev) and CPython's ThreadPoolExecutor, with a summary table
// (ns per task and ratios) measured in the same run.
//
// Benchmarks (names are what --benchmark_filter matches), in the order they run:
//   memory/{keel,boost_promise,thread_pool,tbb}
//                                  one worker blocked on a gate (tbb: an arena
//                                    with no worker), 100k tiny tasks queued
//                                    behind it, each future held. Counters:
//                                    heap_B (malloc heap delta / task, from
//                                    mallinfo2; not tbb, which uses its own
//                                    allocator), rss_B (resident-set delta /
//                                    task, /proc/self/statm), new_B and
//                                    new_allocs (operator new bytes and calls per
//                                    task: new_B is the task object's size when
//                                    one allocation holds it). Time = the cost of
//                                    one submission that only queues.
//   throughput/H/keel/hw_threads   H is cold or warm (the heap, see Heap below;
//   throughput/H/keel/default        cold runs before CPython, warm after).
//                                    One thread submits N tiny tasks (each
//   throughput/H/boost_promise       returns its index) to a pool, keeps every
//   throughput/H/tbb                 future, then reads each result in
//   throughput/H/tbb_promise         submission order. Time = wall time / N,
//   throughput/H/thread_pool
//   throughput/cpython/hw_threads    from the first submission until the last
//   throughput/cpython/default       result is read and the futures are freed.
//                                    keel: submit() + Future (max_threads =
//                                    hardware threads, and the default
//                                    min(32, cpus + 4)); boost: asio::post of a
//                                    lambda that sets a std::promise; tbb:
//                                    task_group::run, no future (the floor), and
//                                    one std::promise per task; thread_pool:
//                                    ThreadPool::Submit, whose std::future
//                                    comes from a std::packaged_task; cpython:
//                                    bench/cpython_executor.py run by popen()
//                                    (its own clock, reported as manual time;
//                                    fewer tasks, same per-task unit).
//   latency/{keel,boost,thread_pool}/gap_us:G
//                                  submit-to-start latency, one task at a time:
//                                    timestamp before submit, timestamp when the
//                                    task starts; the next submission follows
//                                    G us after the previous task finished
//                                    (0: the worker is still spinning; 200: it
//                                    has gone to sleep). Counters p50_ns, p99_ns.
//   latency/{keel,boost,thread_pool}/burst
//                                  the same latency for bursts of 1000
//                                    back-to-back submissions to a sleeping pool.
//   scaling/{keel,boost_promise,thread_pool,tbb}/threads:T
//                                  the warm throughput round with --scale_tasks
//                                    tasks (default 200000) on a pool of T
//                                    threads, T = 1, 2, 4, 8 (doubling up to
//                                    KEEL_BENCH_SCALE_MAX, default 8).
//   floor/{claim,ring,ring_fenced}  one tiny task handed from the submitting
//                                    thread to a spinning consumer with no
//                                    allocation, future or lock: by a claim
//                                    (an exchange on an idle consumer's word,
//                                    keel's way), by a ring (plain stores), and
//                                    by a ring with a seq_cst fence per task.
//
// Flags besides --benchmark_*: --tasks=N (default 1000000), --cpython_tasks=N
// (default 200000), --scale_tasks=N (default 200000), --python=CMD (default
// python3; "none" skips CPython), --json_out=PATH (bench_support.hpp).
// Defaults: --benchmark_repetitions=3 --benchmark_display_aggregates_only=true
// (the summary uses medians); the CPython and memory benchmarks run once.
// The exit status is 0 unless a benchmark reported an error (a wrong result
// sum) or an argument was not recognized; targets never set it.

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <latch>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bench_support.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/platform/thread.hpp"

// Debian's libthread-pool-dev (rvaser/thread_pool 4.0.0) names std::result_of,
// which C++20 deprecates.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <thread_pool/thread_pool.hpp>
#pragma GCC diagnostic pop

// ---------------------------------------------------------------------------
// operator new, counted on request: the memory benchmarks turn counting on for
// the submitting thread only, so it tells the bytes and allocations one queued
// task costs. Otherwise this is the library's own operator new (malloc).

namespace {
struct AllocCount {
  bool on = false;
  std::size_t bytes = 0;
  std::size_t calls = 0;
};
constinit thread_local AllocCount t_alloc;
}  // namespace

// Out of line, so the compiler does not pair a visible malloc with a free.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (t_alloc.on) {
    t_alloc.bytes += n;
    ++t_alloc.calls;
  }
  if (n == 0) n = 1;
  for (;;) {
    if (void* p = std::malloc(n)) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

std::int64_t g_tasks = 1'000'000;          // --tasks
std::int64_t g_cpython_tasks = 200'000;    // --cpython_tasks
std::int64_t g_scale_tasks = 200'000;      // --scale_tasks
std::string g_python = "python3";          // --python
std::string g_cpython_script;              // found in main
constexpr std::int64_t kQueued = 100'000;  // memory benchmarks
constexpr int kBurst = 1000;
constexpr int kBursts = 40;
constexpr int kGapSamples = 2000;    // gap 0
constexpr int kSleepSamples = 1000;  // gap 200 us

std::size_t hw_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

keel::ThreadPoolOptions max_threads(std::size_t n) {
  keel::ThreadPoolOptions o;
  o.max_threads = n;
  return o;
}

std::int64_t expected_sum(std::int64_t n) { return n * (n - 1) / 2; }

void check_sum(benchmark::State& state, std::int64_t got, std::int64_t n) {
  if (got != expected_sum(n)) state.SkipWithError("wrong sum of task results");
}

void set_rate(benchmark::State& state) { state.SetItemsProcessed(state.iterations()); }

// ---------------------------------------------------------------------------
// Throughput: N tasks, each with a future

// Cold heap: glibc's defaults, under which the ~150 MB that a round of 1M
// tasks frees goes back to the kernel, so every round faults fresh pages in.
// Warm heap: the allocator keeps what it freed (no trimming, big blocks from
// the heap rather than mmap) and one untimed round runs first, so rounds reuse
// resident memory; oneTBB's own allocator (its tasks) behaves so anyway.
enum class Heap { cold, warm };

class WarmHeap {
 public:
  WarmHeap() {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  }
  WarmHeap(const WarmHeap&) = delete;
  WarmHeap& operator=(const WarmHeap&) = delete;
  ~WarmHeap() {
    // glibc's initial values (its dynamic thresholds stay off from here on).
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    malloc_trim(0);
  }
};

// Times round() (n tasks from submission to the last result read and the
// futures freed; it returns the sum of the results) once per repetition.
template <class Round>
void run_rounds(benchmark::State& state, Heap heap, std::int64_t n, Round round) {
  std::optional<WarmHeap> warm;
  if (heap == Heap::warm) {
    warm.emplace();
    round();
  }
  std::int64_t sum = 0;
  while (state.KeepRunningBatch(n)) sum = round();
  check_sum(state, sum, n);
  set_rate(state);
}

// threads: the pool's threads (0: each peer's default); n: tasks per round.
void bm_keel(benchmark::State& state, Heap heap, std::size_t threads, std::int64_t n) {
  keel::ThreadPoolExecutor pool(max_threads(threads));
  pool.prestart_core_threads();
  run_rounds(state, heap, n, [&] {
    std::vector<keel::Future<std::int64_t>> fs;
    fs.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) fs.push_back(pool.submit([i] { return i; }));
    std::int64_t sum = 0;
    for (auto& f : fs) sum += f.result();
    return sum;
  });
  state.counters["threads"] = static_cast<double>(pool.stats().largest);
}

void bm_boost_promise(benchmark::State& state, Heap heap, std::size_t threads, std::int64_t n) {
  boost::asio::thread_pool pool(threads);
  run_rounds(state, heap, n, [&] {
    std::vector<std::future<std::int64_t>> fs;
    fs.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      std::promise<std::int64_t> p;
      fs.push_back(p.get_future());
      boost::asio::post(pool, [p = std::move(p), i]() mutable { p.set_value(i); });
    }
    std::int64_t sum = 0;
    for (auto& f : fs) sum += f.get();
    return sum;
  });
  pool.join();
  state.counters["threads"] = static_cast<double>(threads);
}

void bm_thread_pool(benchmark::State& state, Heap heap, std::size_t threads, std::int64_t n) {
  thread_pool::ThreadPool pool(threads);
  run_rounds(state, heap, n, [&] {
    std::vector<std::future<std::int64_t>> fs;
    fs.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) fs.push_back(pool.Submit([i] { return i; }));
    std::int64_t sum = 0;
    for (auto& f : fs) sum += f.get();
    return sum;
  });
  state.counters["threads"] = static_cast<double>(pool.num_threads());
}

// The tbb round: task_group::run writing into an array, no future.
std::int64_t tbb_round(std::int64_t n) {
  // Results land in an array, the cheapest "future" there is.
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  tbb::task_group tg;
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t* slot = &out[static_cast<std::size_t>(i)];
    tg.run([slot, i] { *slot = i; });
  }
  tg.wait();
  std::int64_t sum = 0;
  for (std::int64_t v : out) sum += v;
  return sum;
}

// threads 0: oneTBB's default arena. Otherwise an arena of that many slots
// (this thread and threads - 1 workers), with the global worker limit raised
// so that counts above the CPUs get their workers too.
void bm_tbb(benchmark::State& state, Heap heap, std::size_t threads, std::int64_t n) {
  if (threads == 0) {
    run_rounds(state, heap, n, [&] { return tbb_round(n); });
    state.counters["threads"] = static_cast<double>(tbb::this_task_arena::max_concurrency());
    return;
  }
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  tbb::task_arena arena(static_cast<int>(threads));
  arena.execute([&] { run_rounds(state, heap, n, [&] { return tbb_round(n); }); });
  state.counters["threads"] = static_cast<double>(arena.max_concurrency());
}

void bm_tbb_promise(benchmark::State& state, Heap heap) {
  const std::int64_t n = g_tasks;
  run_rounds(state, heap, n, [&] {
    // task_group stores its functor const, so the promise stays in a vector.
    std::vector<std::promise<std::int64_t>> ps(static_cast<std::size_t>(n));
    std::vector<std::future<std::int64_t>> fs;
    fs.reserve(static_cast<std::size_t>(n));
    tbb::task_group tg;
    for (std::int64_t i = 0; i < n; ++i) {
      std::promise<std::int64_t>* p = &ps[static_cast<std::size_t>(i)];
      fs.push_back(p->get_future());
      tg.run([p, i] { p->set_value(i); });
    }
    std::int64_t sum = 0;
    for (auto& f : fs) sum += f.get();
    tg.wait();
    return sum;
  });
  state.counters["threads"] = static_cast<double>(tbb::this_task_arena::max_concurrency());
}

// ---------------------------------------------------------------------------
// CPython, through bench/cpython_executor.py

// The value of " key=" in line, or nothing.
std::optional<double> field(const std::string& line, const char* key) {
  const std::string k = std::string(" ") + key + "=";
  const auto at = line.find(k);
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(line.c_str() + at + k.size(), nullptr);
}

std::string g_cpython_line[2];  // hw_threads, default: the script's output

void bm_cpython(benchmark::State& state, bool hw) {
  const std::int64_t n = g_cpython_tasks;
  const std::size_t workers = hw ? hw_threads() : 0;
  const std::string cmd = g_python + " '" + g_cpython_script + "' --tasks " + std::to_string(n) + " --workers " +
                          std::to_string(workers) + " 2>&1";
  while (state.KeepRunningBatch(n)) {
    std::string out;
    if (std::FILE* p = popen(cmd.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      if (pclose(p) != 0) out = "failed: " + out;
    }
    const auto line_at = out.find("cpython_executor ");
    const auto seconds = line_at == std::string::npos ? std::nullopt : field(out, "seconds");
    if (!seconds) {
      state.SkipWithError(("python run failed: " + cmd + ": " + out).c_str());
      return;
    }
    std::string line = out.substr(line_at);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    g_cpython_line[hw ? 0 : 1] = line;
    state.SetIterationTime(*seconds);
    state.counters["threads"] = field(line, "threads").value_or(0);
  }
  set_rate(state);
}

// ---------------------------------------------------------------------------
// Latency from submission to task start

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct KeelPool {
  keel::ThreadPoolExecutor pool{max_threads(hw_threads())};
  KeelPool() { pool.prestart_core_threads(); }
  template <class F>
  keel::Future<void> submit(F f) {
    return pool.submit(std::move(f));
  }
  static void wait(keel::Future<void>& f) { f.result(); }
};

struct BoostPool {
  boost::asio::thread_pool pool{hw_threads()};
  ~BoostPool() { pool.join(); }
  template <class F>
  std::future<void> submit(F f) {
    std::promise<void> p;
    auto fut = p.get_future();
    boost::asio::post(pool, [p = std::move(p), f = std::move(f)]() mutable {
      f();
      p.set_value();
    });
    return fut;
  }
  static void wait(std::future<void>& f) { f.get(); }
};

struct ThreadPoolPeer {
  thread_pool::ThreadPool pool{hw_threads()};
  template <class F>
  std::future<void> submit(F f) {
    return pool.Submit(std::move(f));
  }
  static void wait(std::future<void>& f) { f.get(); }
};

void record_percentiles(benchmark::State& state, std::vector<std::int64_t>& lat) {
  if (lat.empty()) return;
  std::sort(lat.begin(), lat.end());
  const auto at = [&lat](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(lat.size() - 1) + 0.5);
    return static_cast<double>(lat[std::min(i, lat.size() - 1)]);
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p99_ns"] = at(0.99);
  state.counters["max_ns"] = static_cast<double>(lat.back());
}

// state.range(0): microseconds between a task's completion and the next submission.
template <class Pool>
void bm_latency_gap(benchmark::State& state) {
  const auto gap = std::chrono::microseconds(state.range(0));
  const int samples = gap.count() == 0 ? kGapSamples : kSleepSamples;
  Pool pool;
  std::vector<std::int64_t> lat;
  while (state.KeepRunningBatch(samples)) {
    lat.clear();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the workers go to sleep
    for (int i = 0; i < samples; ++i) {
      std::int64_t started = 0;
      const std::int64_t t0 = now_ns();
      auto f = pool.submit([&started] { started = now_ns(); });
      Pool::wait(f);  // orders the task's write before this read
      lat.push_back(started - t0);
      if (gap.count() > 0) std::this_thread::sleep_for(gap);
    }
  }
  record_percentiles(state, lat);
}

template <class Pool>
void bm_latency_burst(benchmark::State& state) {
  Pool pool;
  std::vector<std::int64_t> submitted(kBurst), started(kBurst), lat;
  using Handle = decltype(pool.submit([] {}));
  std::vector<Handle> hs;
  hs.reserve(kBurst);
  while (state.KeepRunningBatch(static_cast<std::int64_t>(kBurst) * kBursts)) {
    lat.clear();
    for (int b = 0; b < kBursts; ++b) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // workers asleep at the start of each burst
      hs.clear();
      for (int i = 0; i < kBurst; ++i) {
        std::int64_t* slot = &started[static_cast<std::size_t>(i)];
        submitted[static_cast<std::size_t>(i)] = now_ns();
        hs.push_back(pool.submit([slot] { *slot = now_ns(); }));
      }
      for (auto& h : hs) Pool::wait(h);
      for (int i = 0; i < kBurst; ++i) {
        lat.push_back(started[static_cast<std::size_t>(i)] - submitted[static_cast<std::size_t>(i)]);
      }
    }
  }
  record_percentiles(state, lat);
}

// ---------------------------------------------------------------------------
// Memory per queued task

std::int64_t rss_bytes() {
  long size = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<std::int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

std::int64_t heap_bytes() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<std::int64_t>(mi.uordblks + mi.hblkhd);
}

struct Snapshot {
  std::int64_t rss, heap;
};

Snapshot snapshot_start() {
  malloc_trim(0);  // hand freed pages back, so new tasks fault fresh ones in
  const Snapshot s{rss_bytes(), heap_bytes()};
  t_alloc = AllocCount{.on = true};
  return s;
}

void snapshot_end(benchmark::State& state, const Snapshot& s, bool heap) {
  const AllocCount a = t_alloc;
  t_alloc = AllocCount{};
  const double n = static_cast<double>(kQueued);
  state.counters["rss_B"] = static_cast<double>(rss_bytes() - s.rss) / n;
  if (heap) state.counters["heap_B"] = static_cast<double>(heap_bytes() - s.heap) / n;
  state.counters["new_B"] = static_cast<double>(a.bytes) / n;
  state.counters["new_allocs"] = static_cast<double>(a.calls) / n;
}

void bm_memory_keel(benchmark::State& state) {
  keel::ThreadPoolExecutor pool(max_threads(1));
  std::int64_t sum = 0;
  while (state.KeepRunningBatch(kQueued)) {
    std::latch started(1), gate(1);
    auto blocker = pool.submit([&] {
      started.count_down();
      gate.wait();
    });
    started.wait();
    std::vector<keel::Future<std::int64_t>> fs;
    fs.reserve(kQueued);
    const Snapshot s = snapshot_start();
    for (std::int64_t i = 0; i < kQueued; ++i) fs.push_back(pool.submit([i] { return i; }));
    state.PauseTiming();
    snapshot_end(state, s, true);
    state.counters["queued"] = static_cast<double>(pool.stats().queued);
    gate.count_down();
    sum = 0;
    for (auto& f : fs) sum += f.result();
    blocker.result();
    state.ResumeTiming();
  }
  check_sum(state, sum, kQueued);
}

void bm_memory_boost(benchmark::State& state) {
  boost::asio::thread_pool pool(1);
  std::int64_t sum = 0;
  while (state.KeepRunningBatch(kQueued)) {
    std::latch started(1), gate(1);
    boost::asio::post(pool, [&] {
      started.count_down();
      gate.wait();
    });
    started.wait();
    std::vector<std::future<std::int64_t>> fs;
    fs.reserve(kQueued);
    const Snapshot s = snapshot_start();
    for (std::int64_t i = 0; i < kQueued; ++i) {
      std::promise<std::int64_t> p;
      fs.push_back(p.get_future());
      boost::asio::post(pool, [p = std::move(p), i]() mutable { p.set_value(i); });
    }
    state.PauseTiming();
    snapshot_end(state, s, true);
    gate.count_down();
    sum = 0;
    for (auto& f : fs) sum += f.get();
    state.ResumeTiming();
  }
  pool.join();
  check_sum(state, sum, kQueued);
}

void bm_memory_thread_pool(benchmark::State& state) {
  thread_pool::ThreadPool pool(1);
  std::int64_t sum = 0;
  while (state.KeepRunningBatch(kQueued)) {
    std::latch started(1), gate(1);
    auto blocker = pool.Submit([&] {
      started.count_down();
      gate.wait();
    });
    started.wait();
    std::vector<std::future<std::int64_t>> fs;
    fs.reserve(kQueued);
    const Snapshot s = snapshot_start();
    for (std::int64_t i = 0; i < kQueued; ++i) fs.push_back(pool.Submit([i] { return i; }));
    state.PauseTiming();
    snapshot_end(state, s, true);
    gate.count_down();
    sum = 0;
    for (auto& f : fs) sum += f.get();
    blocker.get();
    state.ResumeTiming();
  }
  check_sum(state, sum, kQueued);
}

void bm_memory_tbb(benchmark::State& state) {
  // One slot, reserved for this thread: no worker joins, so every spawned
  // task stays queued until wait() runs them here.
  tbb::task_arena arena(1);
  std::vector<std::int64_t> out(kQueued);
  std::int64_t sum = 0;
  while (state.KeepRunningBatch(kQueued)) {
    arena.execute([&] {
      tbb::task_group tg;
      const Snapshot s = snapshot_start();
      for (std::int64_t i = 0; i < kQueued; ++i) {
        std::int64_t* slot = &out[static_cast<std::size_t>(i)];
        tg.run([slot, i] { *slot = i; });
      }
      state.PauseTiming();
      snapshot_end(state, s, false);  // tbbmalloc, not malloc: no heap figure
      tg.wait();
      state.ResumeTiming();
    });
    sum = 0;
    for (std::int64_t v : out) sum += v;
  }
  check_sum(state, sum, kQueued);
}

// ---------------------------------------------------------------------------
// Hand-off floors: what moving one tiny task from the submitting thread to a
// worker costs on this host at the least, with no allocation, no future and
// no lock, by the two ways a pool can hand work over. They bound what a
// redesign of keel's hand-off could reach in the same run.

// A claim, as keel's pool hands a task to an idle worker: the submitter finds
// a consumer whose word says idle, writes the task beside it and exchanges
// the word (one read-modify-write on a line the spinning consumer reads); the
// consumer takes the task and stores idle. One consumer fewer than the CPUs
// this process may run on (at least one), so no spinner waits for a slice.
void bm_floor_claim(benchmark::State& state) {
  struct alignas(64) Slot {
    std::atomic<int> word{0};  // 0 idle, 1 claimed, 2 quit
    std::int64_t task = 0;
    std::int64_t sum = 0;
  };
  cpu_set_t allowed;
  const int cpus = ::sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 2;
  const std::size_t n = static_cast<std::size_t>(std::max(1, cpus - 1));
  std::vector<Slot> slots(n);
  std::vector<std::thread> consumers;
  for (std::size_t c = 0; c < n; ++c) {
    consumers.emplace_back([&s = slots[c]] {
      for (;;) {
        int w;
        while ((w = s.word.load(std::memory_order_acquire)) == 0) keel::platform::spin_pause();
        if (w == 2) return;
        s.sum += s.task;
        s.word.store(0, std::memory_order_release);
      }
    });
  }
  std::int64_t next = 0;
  std::size_t at = 0;
  while (state.KeepRunningBatch(g_tasks)) {
    for (std::int64_t i = 0; i < g_tasks; ++i) {
      while (slots[at].word.load(std::memory_order_acquire) != 0) at = (at + 1) % n;
      slots[at].task = next++;
      slots[at].word.exchange(1, std::memory_order_acq_rel);
      at = (at + 1) % n;
    }
    for (auto& s : slots) {
      while (s.word.load(std::memory_order_acquire) != 0) keel::platform::spin_pause();
    }
  }
  std::int64_t sum = 0;
  for (auto& s : slots) {
    s.word.store(2, std::memory_order_release);
  }
  for (auto& t : consumers) t.join();
  for (auto& s : slots) sum += s.sum;
  if (sum != expected_sum(next)) state.SkipWithError("wrong sum of task results");
  set_rate(state);
}

// A ring, as a lock-free queue would hand tasks over: the submitter stores the
// task in the next slot and publishes it with a release store of the tail, no
// read-modify-write; one consumer reads every slot up to the tail. `fenced`:
// after each publish a seq_cst fence and a load of a sleepers word, what an
// event count's producer does so that a consumer about to sleep is never
// missed (the fence waits for the tail's line, which the consumer polls).
void bm_floor_ring(benchmark::State& state, bool fenced) {
  constexpr std::int64_t kSlots = 4096;
  std::vector<std::int64_t> ring(kSlots);
  struct alignas(64) Index {
    std::atomic<std::int64_t> v{0};
  };
  Index tail, head, sleepers;
  std::atomic<std::int64_t> end{-1};  // the last tail, once the submitter is done
  std::int64_t sum = 0;
  std::thread consumer([&] {
    std::int64_t h = 0;
    for (;;) {
      const std::int64_t t = tail.v.load(std::memory_order_acquire);
      if (t == h) {
        if (end.load(std::memory_order_acquire) == h) return;
        keel::platform::spin_pause();
        continue;
      }
      for (; h < t; ++h) sum += ring[h % kSlots];
      head.v.store(h, std::memory_order_release);
    }
  });
  std::int64_t next = 0, room_until = kSlots, woken = 0;
  while (state.KeepRunningBatch(g_tasks)) {
    for (std::int64_t i = 0; i < g_tasks; ++i, ++next) {
      while (next >= room_until) room_until = head.v.load(std::memory_order_acquire) + kSlots;
      ring[next % kSlots] = next;
      tail.v.store(next + 1, std::memory_order_release);
      if (fenced) {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        woken += sleepers.v.load(std::memory_order_relaxed);
      }
    }
    while (head.v.load(std::memory_order_acquire) != next) keel::platform::spin_pause();
  }
  end.store(next, std::memory_order_release);
  consumer.join();
  if (sum != expected_sum(next) || woken != 0) state.SkipWithError("wrong sum of task results");
  set_rate(state);
}

// ---------------------------------------------------------------------------
// Registration

bool g_cpython_ok = false;
std::string g_cpython_why;

void register_all() {
  // Memory first: a fresh process, so allocators hold no freed memory that
  // would hide the resident-set growth.
  const auto mem = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)->Iterations(kQueued)->UseRealTime()->Repetitions(1);
  };
  mem("memory/keel", bm_memory_keel);
  mem("memory/boost_promise", bm_memory_boost);
  mem("memory/thread_pool", bm_memory_thread_pool);
  mem("memory/tbb", bm_memory_tbb);
  const auto tp = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->Iterations(g_tasks)->UseRealTime()->MeasureProcessCPUTime();
  };
  const auto throughput = [&tp](Heap h) {
    const std::string p = h == Heap::cold ? "throughput/cold/" : "throughput/warm/";
    tp(p + "keel/hw_threads", [h](benchmark::State& s) { bm_keel(s, h, hw_threads(), g_tasks); });
    tp(p + "keel/default", [h](benchmark::State& s) { bm_keel(s, h, 0, g_tasks); });
    tp(p + "boost_promise", [h](benchmark::State& s) { bm_boost_promise(s, h, hw_threads(), g_tasks); });
    tp(p + "thread_pool", [h](benchmark::State& s) { bm_thread_pool(s, h, hw_threads(), g_tasks); });
    tp(p + "tbb", [h](benchmark::State& s) { bm_tbb(s, h, 0, g_tasks); });
    tp(p + "tbb_promise", [h](benchmark::State& s) { bm_tbb_promise(s, h); });
  };
  // Cold first: WarmHeap leaves glibc's dynamic thresholds off.
  throughput(Heap::cold);
  if (g_cpython_ok) {
    const auto py = [](const char* name, bool hw) {
      benchmark::RegisterBenchmark(name, [hw](benchmark::State& s) { bm_cpython(s, hw); })
          ->Iterations(g_cpython_tasks)
          ->UseManualTime()
          ->Repetitions(1);
    };
    py("throughput/cpython/hw_threads", true);
    py("throughput/cpython/default", false);
  }
  throughput(Heap::warm);
  const auto lat = [](const char* name, auto fn, std::int64_t iters) {
    return benchmark::RegisterBenchmark(name, fn)->Iterations(iters)->UseRealTime();
  };
  lat("latency/keel", bm_latency_gap<KeelPool>, kGapSamples)->ArgName("gap_us")->Arg(0);
  lat("latency/keel", bm_latency_gap<KeelPool>, kSleepSamples)->ArgName("gap_us")->Arg(200);
  lat("latency/boost", bm_latency_gap<BoostPool>, kGapSamples)->ArgName("gap_us")->Arg(0);
  lat("latency/boost", bm_latency_gap<BoostPool>, kSleepSamples)->ArgName("gap_us")->Arg(200);
  lat("latency/thread_pool", bm_latency_gap<ThreadPoolPeer>, kGapSamples)->ArgName("gap_us")->Arg(0);
  lat("latency/thread_pool", bm_latency_gap<ThreadPoolPeer>, kSleepSamples)->ArgName("gap_us")->Arg(200);
  lat("latency/keel/burst", bm_latency_burst<KeelPool>, kBurst * kBursts);
  lat("latency/boost/burst", bm_latency_burst<BoostPool>, kBurst * kBursts);
  lat("latency/thread_pool/burst", bm_latency_burst<ThreadPoolPeer>, kBurst * kBursts);
  // Cost against the number of threads: the warm round, smaller.
  const auto scale = [](const std::string& peer, auto fn) {
    for (const std::size_t t : keel_bench::scale_counts()) {
      benchmark::RegisterBenchmark(("scaling/" + peer + "/threads:" + std::to_string(t)).c_str(),
                                   [fn, t](benchmark::State& s) { fn(s, Heap::warm, t, g_scale_tasks); })
          ->Iterations(g_scale_tasks)
          ->UseRealTime()
          ->MeasureProcessCPUTime();
    }
  };
  scale("keel", bm_keel);
  scale("boost_promise", bm_boost_promise);
  scale("thread_pool", bm_thread_pool);
  scale("tbb", bm_tbb);
  // Spinners sharing one CPU would hand over once per time slice: not a
  // floor. round_trip_cpus() counts the CPUs this process may run on.
  if (!keel_bench::round_trip_cpus()) return;
  const auto floor = [](const char* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)->Iterations(g_tasks)->UseRealTime()->MeasureProcessCPUTime();
  };
  floor("floor/claim", bm_floor_claim);
  floor("floor/ring", [](benchmark::State& s) { bm_floor_ring(s, false); });
  floor("floor/ring_fenced", [](benchmark::State& s) { bm_floor_ring(s, true); });
}

// ---------------------------------------------------------------------------
// Summary table

using Ns = std::optional<double>;

void cell(std::FILE* out, Ns ns) {
  if (ns) {
    std::fprintf(out, " %9.1f ns %10.0f", *ns, 1e9 / *ns);
  } else {
    std::fprintf(out, " %12s %10s", "-", "-");
  }
}

void row(std::FILE* out, const char* label, Ns cold, Ns warm, Ns threads) {
  std::fprintf(out, "  %-48s", label);
  cell(out, cold);
  cell(out, warm);
  if (threads) std::fprintf(out, " %7.0f", *threads);
  std::fprintf(out, "\n");
}

// Throughput ratio a/b from times (b's time over a's), or nothing.
Ns speedup(Ns a_ns, Ns b_ns) {
  if (!a_ns || !b_ns || *a_ns <= 0) return std::nullopt;
  return *b_ns / *a_ns;
}

// One cell of a ratio row; with a target, the line (label and heap) is
// recorded as a target line.
void ratio_cell(std::FILE* out, const std::string& line, Ns r, std::optional<double> at_least) {
  keel_bench::derive(line, r);
  if (!r) {
    std::fprintf(out, " %18s", "n/a");
  } else if (at_least) {
    const bool ok = *keel_bench::target(line, r, true, *at_least);
    std::fprintf(out, " %8.2fx %-8s", *r, ok ? "OK" : "MISSED");
  } else {
    std::fprintf(out, " %8.2fx %8s", *r, "");
  }
}

enum class Judge { both, cold_only };

void ratio_row(std::FILE* out, const char* label, Ns cold, Ns warm, std::optional<double> at_least = std::nullopt,
               Judge judge = Judge::both) {
  std::fprintf(out, "  %-52s", label);
  ratio_cell(out, std::string(label) + ", cold heap", cold, at_least);
  ratio_cell(out, std::string(label) + ", warm heap", warm, judge == Judge::both ? at_least : std::nullopt);
  std::fprintf(out, "\n");
}

void print_summary(std::FILE* out, const keel_bench::RecordingReporter& rec) {
  const auto t = [&rec](const std::string& n) { return rec.real_ns(n); };
  const auto th = [&rec](const std::string& n) {
    auto c = rec.counter("throughput/cold/" + n, "threads");
    return c ? c : rec.counter("throughput/warm/" + n, "threads");
  };
  struct Both {
    Ns cold, warm;
  };
  const auto both = [&t](const std::string& n) { return Both{t("throughput/cold/" + n), t("throughput/warm/" + n)}; };
  const Both k_hw = both("keel/hw_threads"), k_def = both("keel/default"), boost = both("boost_promise"),
             tbb = both("tbb"), tbb_p = both("tbb_promise"), tpool = both("thread_pool");
  const Ns py_hw = t("throughput/cpython/hw_threads"), py_def = t("throughput/cpython/default");

  std::fprintf(out, "\nkeel executor summary (real time; median of repetitions where they ran; same run; %zu cpus)\n",
               hw_threads());
  std::fprintf(out, "Throughput: %lld tiny tasks from one thread, each with its future\n",
               static_cast<long long>(g_tasks));
  std::fprintf(out, "  %-48s %23s %23s\n", "", "cold heap", "warm heap");
  std::fprintf(out, "  %-48s %12s %10s %12s %10s %7s\n", "", "per task", "tasks/s", "per task", "tasks/s", "threads");
  row(out, "keel ThreadPoolExecutor, max_threads = cpus", k_hw.cold, k_hw.warm, th("keel/hw_threads"));
  row(out, "keel ThreadPoolExecutor, default max_threads", k_def.cold, k_def.warm, th("keel/default"));
  row(out, "boost::asio::thread_pool(cpus) + std::promise", boost.cold, boost.warm, th("boost_promise"));
  row(out, "thread_pool::ThreadPool(cpus) Submit + std::future", tpool.cold, tpool.warm, th("thread_pool"));
  row(out, "oneTBB task_group, no future (floor)", tbb.cold, tbb.warm, th("tbb"));
  row(out, "oneTBB task_group + std::promise", tbb_p.cold, tbb_p.warm, th("tbb_promise"));
  if (g_cpython_ok) {
    std::fprintf(out, "  CPython 3 ThreadPoolExecutor (%lld tasks, its own process and heap):\n",
                 static_cast<long long>(g_cpython_tasks));
    row(out, "  max_workers = cpus", py_hw, std::nullopt, rec.counter("throughput/cpython/hw_threads", "threads"));
    row(out, "  default max_workers", py_def, std::nullopt, rec.counter("throughput/cpython/default", "threads"));
  } else {
    std::fprintf(out, "  CPython skipped: %s\n", g_cpython_why.c_str());
  }
  std::fprintf(out, "Throughput ratios (keel max_threads = cpus unless said) %19s %18s\n", "cold", "warm");
  // Issue 15: with futures, cold, at least as fast as oneTBB without them.
  ratio_row(out, "keel / tbb no future (target >= 1x cold)", speedup(k_hw.cold, tbb.cold), speedup(k_hw.warm, tbb.warm),
            1.0, Judge::cold_only);
  // An earlier issue's targets: 2x Boost with promises, 385 ns per task.
  ratio_row(out, "keel / boost+promise (target >= 2x)", speedup(k_hw.cold, boost.cold), speedup(k_hw.warm, boost.warm),
            2.0);
  ratio_row(out, "385 ns / keel per task (target >= 1x)", speedup(k_hw.cold, 385.0), speedup(k_hw.warm, 385.0), 1.0);
  ratio_row(out, "keel / thread_pool Submit+future", speedup(k_hw.cold, tpool.cold), speedup(k_hw.warm, tpool.warm));
  ratio_row(out, "keel / tbb+promise", speedup(k_hw.cold, tbb_p.cold), speedup(k_hw.warm, tbb_p.warm));
  ratio_row(out, "keel / CPython (max_workers = cpus)", speedup(k_hw.cold, py_hw), speedup(k_hw.warm, py_hw));
  ratio_row(out, "keel default / CPython default", speedup(k_def.cold, py_def), speedup(k_def.warm, py_def));
  ratio_row(out, "keel default / keel max_threads = cpus", speedup(k_def.cold, k_hw.cold),
            speedup(k_def.warm, k_hw.warm));

  // What the hand-off alone costs at the least on this host, in this run.
  std::fprintf(out, "Hand-off floors: one tiny task to a spinning consumer, no allocation, future or lock\n");
  const auto floor_row = [&](const char* label, const char* name) {
    const Ns v = t(name);
    std::fprintf(out, "  %-60s", label);
    if (v && k_hw.cold) {
      std::fprintf(out, " %9.1f ns   keel (cold) / floor %6.2fx\n", *v, *k_hw.cold / *v);
    } else if (v) {
      std::fprintf(out, " %9.1f ns\n", *v);
    } else {
      std::fprintf(out, " %12s\n", "not run");
    }
  };
  floor_row("claim: exchange on an idle consumer's word (keel's way)", "floor/claim");
  floor_row("ring: slot and tail stored, no read-modify-write", "floor/ring");
  floor_row("ring + seq_cst fence and a sleepers check per task", "floor/ring_fenced");

  std::fprintf(out, "Submit-to-start latency (max_threads = cpus)  %12s %12s %12s\n", "p50", "p99", "max");
  const auto lat_row = [&](const char* label, const char* name) {
    const auto p50 = rec.counter(name, "p50_ns"), p99 = rec.counter(name, "p99_ns"), mx = rec.counter(name, "max_ns");
    if (!p50 || !p99) {
      std::fprintf(out, "  %-44s %12s\n", label, "not run");
      return;
    }
    std::fprintf(out, "  %-44s %9.1f us %9.1f us %9.1f us\n", label, *p50 / 1e3, *p99 / 1e3, mx.value_or(0) / 1e3);
  };
  lat_row("keel, one at a time, no gap (worker spinning)", "latency/keel/gap_us:0");
  lat_row("boost, one at a time, no gap", "latency/boost/gap_us:0");
  lat_row("keel, one at a time, 200 us gap (asleep)", "latency/keel/gap_us:200");
  lat_row("boost, one at a time, 200 us gap", "latency/boost/gap_us:200");
  lat_row("thread_pool, one at a time, no gap", "latency/thread_pool/gap_us:0");
  lat_row("thread_pool, one at a time, 200 us gap", "latency/thread_pool/gap_us:200");
  lat_row("keel, bursts of 1000", "latency/keel/burst");
  lat_row("boost, bursts of 1000", "latency/boost/burst");
  lat_row("thread_pool, bursts of 1000", "latency/thread_pool/burst");

  std::fprintf(out, "Scaling: ns per task against pool threads (warm heap, %lld tasks, futures except tbb)\n",
               static_cast<long long>(g_scale_tasks));
  std::fprintf(out, "  %-14s", "threads");
  const auto counts = keel_bench::scale_counts();
  for (const std::size_t c : counts) std::fprintf(out, " %9zu", c);
  std::fprintf(out, "\n");
  for (const char* peer : {"keel", "boost_promise", "thread_pool", "tbb"}) {
    std::fprintf(out, "  %-14s", peer);
    for (const std::size_t c : counts) {
      const Ns v = t(std::string("scaling/") + peer + "/threads:" + std::to_string(c));
      if (v) {
        std::fprintf(out, " %9.1f", *v);
      } else {
        std::fprintf(out, " %9s", "-");
      }
    }
    std::fprintf(out, "\n");
  }

  std::fprintf(out, "Memory per queued task (%lld queued, futures held)  %8s %8s %8s %8s\n",
               static_cast<long long>(kQueued), "heap", "RSS", "new", "allocs");
  const auto mem_row = [&](const char* label, const char* name) {
    const auto rss = rec.counter(name, "rss_B");
    if (!rss) {
      std::fprintf(out, "  %-50s %8s\n", label, "not run");
      return;
    }
    const auto heap = rec.counter(name, "heap_B");
    std::fprintf(out, "  %-50s", label);
    if (heap) {
      std::fprintf(out, " %6.0f B", *heap);
    } else {
      std::fprintf(out, " %8s", "-");
    }
    std::fprintf(out, " %6.0f B %6.0f B %8.2f\n", *rss, rec.counter(name, "new_B").value_or(0),
                 rec.counter(name, "new_allocs").value_or(0));
  };
  mem_row("keel submit (Task object holds fn, state, result)", "memory/keel");
  mem_row("boost post + std::promise", "memory/boost_promise");
  mem_row("thread_pool Submit (packaged_task, std::function)", "memory/thread_pool");
  mem_row("oneTBB task_group run, no future (tbbmalloc)", "memory/tbb");
  std::fprintf(out,
               "  (future handles not counted: keel::Future %zu B, std::future %zu B; keel's state base is %zu B)\n",
               sizeof(keel::Future<std::int64_t>), sizeof(std::future<std::int64_t>),
               sizeof(keel::detail::FutureState<std::int64_t>));
  for (const auto& l : g_cpython_line) {
    if (!l.empty()) std::fprintf(out, "%s\n", l.c_str());
  }
  std::fprintf(out, "Targets are informative: the exit status does not depend on them.\n");
}

// ---------------------------------------------------------------------------
// Arguments

// Removes this program's own --name=value flags; false on a bad value.
bool take_own_flags(std::vector<char*>& args) {
  bool ok = true;
  std::vector<char*> rest;
  for (char* a : args) {
    std::string_view s(a);
    const auto num = [&](std::string_view flag, std::int64_t& into) {
      return keel_bench::positive_flag(a, flag, into, ok);
    };
    if (num("--tasks", g_tasks) || num("--cpython_tasks", g_cpython_tasks) || num("--scale_tasks", g_scale_tasks)) {
      continue;
    }
    if (s.substr(0, 9) == "--python=") {
      g_python = std::string(s.substr(9));
      continue;
    }
    rest.push_back(a);
  }
  args = rest;
  return ok;
}

void find_cpython(const char* argv0) {
  const auto peer = keel_bench::find_python_peer(g_python, "cpython_executor.py", "concurrent.futures", argv0);
  g_cpython_ok = peer.ok;
  g_cpython_script = peer.script;
  g_cpython_why = peer.why;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  if (!take_own_flags(args)) return 1;
  keel_bench::note_version("Boost (libboost-dev)", keel_bench::package_version("libboost-dev"));
  keel_bench::note_version("oneTBB (libtbb-dev)", keel_bench::package_version("libtbb-dev"));
  keel_bench::note_version("thread_pool (libthread-pool-dev)", keel_bench::package_version("libthread-pool-dev"));
  keel_bench::add_repetition_defaults(args);
  return keel_bench::run_benchmarks(
      std::move(args),
      [argv] {
        find_cpython(argv[0]);
        register_all();
      },
      print_summary);
}
