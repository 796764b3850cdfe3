// What keel's benchmark programs share: command-line defaults, a reporter that
// records each benchmark's result for the program's own summary table, and the
// main() steps around it (initialize, pick the reporter the user asked for,
// run, print the summary where it does not spoil machine-readable output).
//
// Each bench/*.cpp is its own program and includes this once.

#pragma once

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
template <class Setup, class Summary>
int run_benchmarks(std::vector<char*> args, Setup setup, Summary summary) {
  const std::string format = flag_value(args, "--benchmark_format");
  const std::string color = flag_value(args, "--benchmark_color");
  args.push_back(nullptr);
  int n = static_cast<int>(args.size()) - 1;

  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  setup();

  bool console = false;
  RecordingReporter rec(make_reporter(format, color, console));
  benchmark::RunSpecifiedBenchmarks(&rec);
  std::fflush(stdout);
  summary(console ? stdout : stderr, static_cast<const RecordingReporter&>(rec));
  benchmark::Shutdown();
  return rec.errors() == 0 ? 0 : 1;
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
  const std::string probe = python + " -c 'import " + imports + "' >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) {
    peer.why = "'" + python + "' cannot run (not installed?)";
    return peer;
  }
  peer.ok = true;
  return peer;
}

}  // namespace keel_bench
