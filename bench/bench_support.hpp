// What keel's benchmark programs share: command-line defaults, a reporter that
// records each benchmark's result for the program's own summary table, the
// main() steps around it (initialize, pick the reporter the user asked for,
// run, print the summary where it does not spoil machine-readable output),
// the peers' versions and the load average printed under every summary, and
// the JSON file (--json_out=PATH) that tools/bench_plots.py plots.
//
// Contract: every target line a summary prints goes through target(), so the
// console and the JSON file say the same OK or MISSED; no target sets the
// exit status. Each bench/*.cpp is its own program and includes this once.

#pragma once

#include <benchmark/benchmark.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace keel_bench {

// ---------------------------------------------------------------------------
// Arguments

// Whether args holds `flag` alone or as `flag=value`.
inline bool has_flag(const std::vector<char*>& args, std::string_view flag) {
  for (const char* a : args) {
    std::string_view s(a);
    if (s.substr(0, flag.size()) == flag && (s.size() == flag.size() || s[flag.size()] == '=')) return true;
  }
  return false;
}

// The value of the last `flag=value` in args, or "".
inline std::string flag_value(const std::vector<char*>& args, std::string_view flag) {
  std::string v;
  for (const char* a : args) {
    std::string_view s(a);
    if (s.size() > flag.size() && s.substr(0, flag.size()) == flag && s[flag.size()] == '=') {
      v = std::string(s.substr(flag.size() + 1));
    }
  }
  return v;
}

// The defaults both programs use: 3 repetitions, aggregates only (summaries
// use the median). Each applies only where the command line does not set it.
inline void add_repetition_defaults(std::vector<char*>& args) {
  static char rep[] = "--benchmark_repetitions=3";
  static char agg[] = "--benchmark_display_aggregates_only=true";
  if (!has_flag(args, "--benchmark_repetitions")) args.push_back(rep);
  if (!has_flag(args, "--benchmark_display_aggregates_only") && !has_flag(args, "--benchmark_report_aggregates_only"))
    args.push_back(agg);
}

// ---------------------------------------------------------------------------
// Recording reporter: forwards to the reporter the user asked for, and keeps,
// per benchmark, its real time per iteration (ns) and its counters: the median
// aggregate when repetitions ran, else the mean of the plain runs.

inline double to_ns(double t, benchmark::TimeUnit unit) {
  switch (unit) {
    case benchmark::kNanosecond:
      return t;
    case benchmark::kMicrosecond:
      return t * 1e3;
    case benchmark::kMillisecond:
      return t * 1e6;
    case benchmark::kSecond:
      return t * 1e9;
  }
  return t;
}

class RecordingReporter : public benchmark::BenchmarkReporter {
 public:
  explicit RecordingReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner) : inner_(std::move(inner)) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      // The registered name plus its argument, e.g. "contended/keel/64".
      std::string key = r.run_name.function_name;
      if (!r.run_name.args.empty()) key += "/" + r.run_name.args;
      Entry& e = entries_[key];
      if (r.error_occurred) {
        e.error = true;
        ++errors_;
        continue;
      }
      const double ns = to_ns(r.GetAdjustedRealTime(), r.time_unit);
      if (r.run_type == Run::RT_Aggregate) {
        if (r.aggregate_name != "median") continue;
        e.median = ns;
        for (const auto& [k, c] : r.counters) e.median_counters[k] = c.value;
      } else {
        e.sum += ns;
        ++e.count;
        for (const auto& [k, c] : r.counters) e.counter_sums[k] += c.value;
      }
    }
    inner_->ReportRuns(runs);
  }
  void Finalize() override { inner_->Finalize(); }

  // Real time per iteration in ns, or nothing when the benchmark did not run
  // or reported an error.
  std::optional<double> real_ns(const std::string& name) const {
    const Entry* e = find(name);
    if (!e) return std::nullopt;
    if (e->median) return e->median;
    return e->sum / e->count;
  }
  // Counter c of benchmark name, or nothing when either is missing.
  std::optional<double> counter(const std::string& name, const std::string& c) const {
    const Entry* e = find(name);
    if (!e) return std::nullopt;
    if (e->median) {
      auto it = e->median_counters.find(c);
      if (it != e->median_counters.end()) return it->second;
      return std::nullopt;
    }
    auto it = e->counter_sums.find(c);
    if (it == e->counter_sums.end()) return std::nullopt;
    // Rate counters were already turned into rates per run; the mean is fine here.
    return it->second / e->count;
  }
  // How many runs reported an error.
  int errors() const { return errors_; }
  // Calls f(name, real ns, counters) for every benchmark that ran without an
  // error, in name order; the values are those real_ns and counter give.
  template <class F>
  void each(F f) const {
    for (const auto& [name, e] : entries_) {
      if (!find(name)) continue;
      std::map<std::string, double> counters = e.median_counters;
      if (!e.median) {
        for (const auto& [k, sum] : e.counter_sums) counters[k] = sum / e.count;
      }
      f(name, *real_ns(name), counters);
    }
  }

 private:
  struct Entry {
    std::optional<double> median;
    std::map<std::string, double> median_counters;
    double sum = 0;
    int count = 0;
    std::map<std::string, double> counter_sums;
    bool error = false;
  };
  const Entry* find(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end() || it->second.error) return nullptr;
    if (!it->second.median && it->second.count == 0) return nullptr;
    return &it->second;
  }
  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::map<std::string, Entry> entries_;
  int errors_ = 0;
};

// ---------------------------------------------------------------------------
// What a run reports besides the benchmarks: peers' versions, the load
// average, numbers the summary derived, and its target lines.

// "0.52 0.58 0.59": the 1, 5 and 15 minute load averages, from /proc/loadavg.
inline std::string load_average() {
  std::string s;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128];
    if (std::fgets(buf, sizeof buf, f)) s = buf;
    std::fclose(f);
  }
  std::size_t cut = 0;
  for (int spaces = 0; cut < s.size() && spaces < 3; ++cut) {
    if (s[cut] == ' ') ++spaces;
  }
  s.resize(cut ? cut - 1 : 0);
  return s;
}

// The two CPUs the round trip below is measured between: the first two this
// process may run on (a container's cpuset need not hold CPUs 0 and 1);
// nullopt with fewer than two.
inline std::optional<std::pair<int, int>> round_trip_cpus() {
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return std::nullopt;
  int found[2] = {-1, -1};
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < 2; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) found[n++] = cpu;
  }
  if (n < 2) return std::nullopt;
  return std::make_pair(found[0], found[1]);
}

// The round trip of one cache line between those two CPUs (two threads
// pinned there, handing a counter back and forth), in ns; 0 without two CPUs
// or if either pin fails, and then no spinning at all: two spinners sharing
// one CPU would take a time slice per hand-off. Every hand-off between a
// submitter and a worker pays this: on the 2-vCPU VMs keel is measured on,
// it was 104-109 ns in some windows and 382-504 ns in others (the host
// placing the vCPUs on near or far cores), which moved the thread-pool rows
// more than 2x. A reader of a run needs it beside the load average. It runs
// in a forked child: a thread started here would end glibc's single-threaded
// mode for good, and sync_bench's one-thread rows measure that mode.
inline double round_trip_in_this_process(int cpu_a, int cpu_b) {
  auto pin = [](int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
  };
  constexpr int kRounds = 200000;
  constexpr int kAbort = -1;
  alignas(64) std::atomic<int> ball{0};
  std::atomic<int> partner_pinned{0};  // 1: pinned, 2: could not pin
  std::thread partner([&] {
    partner_pinned.store(pin(cpu_b) ? 1 : 2);
    for (int i = 0; i < kRounds; ++i) {
      int b;
      while ((b = ball.load(std::memory_order_acquire)) != 2 * i + 1) {
        if (b == kAbort) return;
      }
      ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  const bool pinned = pin(cpu_a);
  int theirs;
  while ((theirs = partner_pinned.load()) == 0) std::this_thread::yield();
  if (!pinned || theirs != 1) {
    ball.store(kAbort, std::memory_order_release);
    partner.join();
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i) {
    ball.store(2 * i + 1, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != 2 * i + 2) {
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  partner.join();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / kRounds;
}
inline double cross_cpu_round_trip_ns() {
  const auto cpus = round_trip_cpus();
  if (!cpus) return 0;
  int fds[2];
  if (::pipe(fds) != 0) return 0;
  std::fflush(nullptr);  // the child must not write out the parent's buffers again
  const pid_t pid = ::fork();
  if (pid == 0) {
    const double ns = round_trip_in_this_process(cpus->first, cpus->second);
    [[maybe_unused]] const ssize_t n = ::write(fds[1], &ns, sizeof ns);
    ::_exit(0);
  }
  ::close(fds[1]);
  double ns = 0;
  if (pid < 0 || ::read(fds[0], &ns, sizeof ns) != static_cast<ssize_t>(sizeof ns)) ns = 0;
  ::close(fds[0]);
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  return ns;
}

struct Target {
  std::string line;
  double value;
  bool at_least;  // value >= goal meets it; else value <= goal does
  double goal;
  bool ok;
};

struct Report {
  std::string load_before = load_average();
  double round_trip_before = cross_cpu_round_trip_ns();
  std::vector<std::pair<std::string, std::string>> versions;  // peer, version
  std::vector<std::pair<std::string, double>> derived;        // key, value
  std::vector<Target> targets;
};
inline Report& report() {
  static Report r;
  return r;
}

// The Debian package versions the Makefile read with dpkg-query when it built
// this program ("pkg=version;pkg=version;..."), or "" without the Makefile.
#ifndef KEEL_BENCH_PKG_VERSIONS
#define KEEL_BENCH_PKG_VERSIONS ""
#endif
inline std::string package_version(std::string_view pkg) {
  const std::string_view all = KEEL_BENCH_PKG_VERSIONS;
  std::size_t at = 0;
  while (at < all.size()) {
    std::size_t end = all.find(';', at);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view item = all.substr(at, end - at);
    const std::size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == pkg && eq + 1 < item.size()) {
      return std::string(item.substr(eq + 1));
    }
    at = end + 1;
  }
  return "unknown (not built by the Makefile, or not installed)";
}

inline void note_version(std::string peer, std::string version) {
  report().versions.emplace_back(std::move(peer), std::move(version));
}
// The toolchain every program shares: compiler (and so libstdc++) and glibc.
inline void note_toolchain() {
  note_version("compiler", __VERSION__);
  note_version("glibc", gnu_get_libc_version());
}

inline void derive(std::string key, std::optional<double> v) {
  if (v) report().derived.emplace_back(std::move(key), *v);
}

// Records a target line and returns whether value meets it; nothing when
// value is missing (the benchmark did not run).
inline std::optional<bool> target(std::string line, std::optional<double> value, bool at_least, double goal) {
  if (!value) return std::nullopt;
  const bool ok = at_least ? *value >= goal : *value <= goal;
  report().targets.push_back({std::move(line), *value, at_least, goal, ok});
  return ok;
}

inline std::string json_string(std::string_view s) {
  std::string o = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}
inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The run as one JSON object: program, time, cpus, load averages, the cache
// line round trips and their two CPUs (0 and []: not measured), versions,
// every benchmark's real ns and counters, derived numbers and target lines.
inline bool write_json(const std::string& path, const std::string& program, const std::string& load_after,
                       double round_trip_after, const RecordingReporter& rec) {
  const Report& r = report();
  std::string o = "{\n";
  char when[40];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  o += "  \"program\": " + json_string(program) + ",\n";
  o += "  \"time_utc\": " + json_string(when) + ",\n";
  o += "  \"cpus\": " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + ",\n";
  o += "  \"load_before\": " + json_string(r.load_before) + ",\n";
  o += "  \"load_after\": " + json_string(load_after) + ",\n";
  const auto cpus = round_trip_cpus();
  o += "  \"cache_round_trip_cpus\": [" +
       (cpus ? std::to_string(cpus->first) + ", " + std::to_string(cpus->second) : std::string()) + "],\n";
  o += "  \"cache_round_trip_ns_before\": " + std::to_string(r.round_trip_before) + ",\n";
  o += "  \"cache_round_trip_ns_after\": " + std::to_string(round_trip_after) + ",\n";
  o += "  \"versions\": {";
  const char* sep = "";
  for (const auto& [k, v] : r.versions) {
    o += sep + std::string("\n    ") + json_string(k) + ": " + json_string(v);
    sep = ",";
  }
  o += "\n  },\n  \"benchmarks\": {";
  sep = "";
  rec.each([&](const std::string& name, double ns, const std::map<std::string, double>& counters) {
    o += sep + std::string("\n    ") + json_string(name) + ": {\"real_ns\": " + json_number(ns) + ", \"counters\": {";
    const char* csep = "";
    for (const auto& [k, v] : counters) {
      o += csep + json_string(k) + ": " + json_number(v);
      csep = ", ";
    }
    o += "}}";
    sep = ",";
  });
  o += "\n  },\n  \"derived\": {";
  sep = "";
  for (const auto& [k, v] : r.derived) {
    o += sep + std::string("\n    ") + json_string(k) + ": " + json_number(v);
    sep = ",";
  }
  o += "\n  },\n  \"targets\": [";
  sep = "";
  for (const Target& t : r.targets) {
    o += sep + std::string("\n    {\"line\": ") + json_string(t.line) + ", \"value\": " + json_number(t.value) +
         ", \"op\": " + json_string(t.at_least ? ">=" : "<=") + ", \"goal\": " + json_number(t.goal) +
         ", \"ok\": " + (t.ok ? "true" : "false") + "}";
    sep = ",";
  }
  o += "\n  ]\n}\n";
  std::ofstream f(path, std::ios::trunc);
  f << o;
  return static_cast<bool>(f.flush());
}

// ---------------------------------------------------------------------------
// main()

// The reporter --benchmark_format and --benchmark_color ask for; console tells
// whether it is the (human-readable) console one.
inline std::unique_ptr<benchmark::BenchmarkReporter> make_reporter(const std::string& format, const std::string& color,
                                                                   bool& console) {
  console = false;
  if (format == "json") return std::make_unique<benchmark::JSONReporter>();
  if (format == "csv") {
    // Deprecated upstream but still what --benchmark_format=csv selects in 1.7.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    return std::make_unique<benchmark::CSVReporter>();
#pragma GCC diagnostic pop
  }
  console = true;
  const bool use_color = color == "true" || color == "yes" || color == "1" ||
                         ((color.empty() || color == "auto") && isatty(STDOUT_FILENO));
  return std::make_unique<benchmark::ConsoleReporter>(use_color ? benchmark::ConsoleReporter::OO_ColorTabular
                                                                : benchmark::ConsoleReporter::OO_Tabular);
}

// The rest of main() once args holds the program's defaults: initializes
// Google Benchmark (1 on an unrecognized argument), calls setup() (which
// registers the benchmarks), runs them, then calls summary(out, recorder).
// Machine-readable formats keep stdout clean, so out is stderr there and
// stdout for the console. Returns 0 unless a benchmark reported an error.
//
// --json_out=PATH (taken out of args here) also writes the run as JSON
// (write_json) to PATH. After the summary it prints the peers' versions and
// the load average before and after the run.
template <class Setup, class Summary>
int run_benchmarks(std::vector<char*> args, Setup setup, Summary summary) {
  const std::string format = flag_value(args, "--benchmark_format");
  const std::string color = flag_value(args, "--benchmark_color");
  note_toolchain();  // also takes the load average before anything runs
  const std::string json_out = flag_value(args, "--json_out");
  std::erase_if(args, [](const char* a) { return std::string_view(a).substr(0, 11) == "--json_out="; });
  const std::string program = args.empty() ? "bench" : std::filesystem::path(args[0]).filename().string();
  args.push_back(nullptr);
  int n = static_cast<int>(args.size()) - 1;

  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  setup();

  bool console = false;
  RecordingReporter rec(make_reporter(format, color, console));
  benchmark::RunSpecifiedBenchmarks(&rec);
  std::fflush(stdout);
  std::FILE* out = console ? stdout : stderr;
  summary(out, static_cast<const RecordingReporter&>(rec));
  const std::string load_after = load_average();
  std::fprintf(out, "Versions:");
  const char* sep = " ";
  for (const auto& [peer, version] : report().versions) {
    std::fprintf(out, "%s%s %s", sep, peer.c_str(), version.c_str());
    sep = "; ";
  }
  std::fprintf(out, "\nLoad average (1, 5, 15 min): %s before, %s after (%ld cpus)\n", report().load_before.c_str(),
               load_after.c_str(), ::sysconf(_SC_NPROCESSORS_ONLN));
  const double round_trip_after = cross_cpu_round_trip_ns();
  if (round_trip_after > 0 && report().round_trip_before > 0) {
    const auto cpus = round_trip_cpus();
    std::fprintf(out, "Cache line round trip, CPU %d <-> CPU %d: %.0f ns before, %.0f ns after\n",
                 cpus ? cpus->first : -1, cpus ? cpus->second : -1, report().round_trip_before, round_trip_after);
  }
  benchmark::Shutdown();
  int rc = rec.errors() == 0 ? 0 : 1;
  if (!json_out.empty()) {
    if (write_json(json_out, program, load_after, round_trip_after, rec)) {
      std::fprintf(out, "Results written to %s\n", json_out.c_str());
    } else {
      std::fprintf(stderr, "cannot write %s\n", json_out.c_str());
      rc = 1;
    }
  }
  return rc;
}

// The thread or worker counts of the scaling rows: 1, 2, 4, ... doubling up
// to KEEL_BENCH_SCALE_MAX (default 8; `make bench BENCH_SCALE_MAX=64` on a
// bigger machine), which ends the list even when it is no power of two.
inline std::vector<std::size_t> scale_counts() {
  std::size_t max = 8;
  if (const char* env = std::getenv("KEEL_BENCH_SCALE_MAX"); env && *env) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && v <= 4096) max = static_cast<std::size_t>(v);
  }
  std::vector<std::size_t> counts;
  for (std::size_t t = 1; t < max; t *= 2) counts.push_back(t);
  counts.push_back(max);
  return counts;
}

// Parses `--flag=N` (N a positive integer) into `into`. Returns whether `arg`
// was that flag at all; a bad value is reported on stderr and clears `ok`.
inline bool positive_flag(const char* arg, std::string_view flag, std::int64_t& into, bool& ok) {
  const std::string_view s(arg);
  if (s.size() <= flag.size() || s.substr(0, flag.size()) != flag || s[flag.size()] != '=') return false;
  const char* digits = arg + flag.size() + 1;
  char* end = nullptr;
  const long long v = std::strtoll(digits, &end, 10);
  if (end == digits || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "%s needs a positive integer\n", std::string(flag).c_str());
    ok = false;
  } else {
    into = v;
  }
  return true;
}

// Parses `--flag=X` (X a positive real number, e.g. 0.1 or 2) into `into`.
// Returns whether `arg` was that flag at all; a bad value is reported on
// stderr and clears `ok`.
inline bool positive_real_flag(const char* arg, std::string_view flag, double& into, bool& ok) {
  const std::string_view s(arg);
  if (s.size() <= flag.size() || s.substr(0, flag.size()) != flag || s[flag.size()] != '=') return false;
  const char* digits = arg + flag.size() + 1;
  char* end = nullptr;
  const double v = std::strtod(digits, &end);
  if (end == digits || *end != '\0' || !(v > 0) || v > 1e6) {
    std::fprintf(stderr, "%s needs a positive number\n", std::string(flag).c_str());
    ok = false;
  } else {
    into = v;
  }
  return true;
}

// A CPython peer script of the benchmarks (bench/<script>) and whether
// `python` can run it. The script is found next to this header when run from
// the repository root (as `make bench` does), else from the executable's
// place, build/<cxx>/bench/<program>.
struct PythonPeer {
  bool ok = false;
  std::string script;
  std::string why;  // when not ok
};
inline PythonPeer find_python_peer(const std::string& python, const std::string& script, const std::string& imports,
                                   const char* argv0) {
  namespace fs = std::filesystem;
  PythonPeer peer;
  if (python == "none") {
    peer.why = "--python=none";
    return peer;
  }
  std::error_code ec;
  const fs::path here = fs::path(__FILE__).parent_path() / script;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) exe = fs::absolute(argv0, ec);
  const fs::path up = exe.parent_path().parent_path().parent_path().parent_path() / "bench" / script;
  if (fs::exists(here, ec)) {
    peer.script = here.string();
  } else if (fs::exists(up, ec)) {
    peer.script = up.string();
  } else {
    peer.why = "bench/" + script + " not found";
    return peer;
  }
  const std::string probe =
      python + " -c 'import platform, " + imports + "; print(platform.python_version())' 2>/dev/null";
  std::string version;
  if (std::FILE* p = popen(probe.c_str(), "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, p)) version += buf;
    if (pclose(p) != 0) version.clear();
  }
  while (!version.empty() && (version.back() == '\n' || version.back() == '\r')) version.pop_back();
  if (version.empty()) {
    peer.why = "'" + python + "' cannot run (not installed?)";
    return peer;
  }
  note_version("CPython", version);
  peer.ok = true;
  return peer;
}

}  // namespace keel_bench
