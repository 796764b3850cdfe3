// A main without libFuzzer, for any compiler and sanitizer.
//
//   target FILE...            runs the binary's one target over each file once
//                             (reproducing a finding, under gdb or valgrind);
//   target                    runs it over stdin;
//   target --seconds N [--seed S] [--current PATH] DIR|FILE...
//                             the TSan stage of make fuzz: runs every input
//                             once, then random mutations of them (bytes
//                             flipped, inserted, erased, copied, spliced) until
//                             N seconds have passed. The inputs come from the
//                             ASan stage's coverage-guided corpus; here the
//                             value is in running them again under TSan with
//                             new timings. Before each run the input is written
//                             to PATH, so that a run that dies leaves it behind.
//
// A single input running longer than 25 s is reported as a hang (abort).
// The last lines follow libFuzzer's final statistics, for tools/fuzz.sh.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/process/bootstrap.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds hang_limit{25};
constexpr std::size_t max_len = 4096;  // libFuzzer's default

std::atomic<std::int64_t> run_started{0};  // steady-clock ns; 0 while idle
std::atomic<bool> done{false};

void watchdog() {
  while (!done.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::int64_t t = run_started.load();
    if (t != 0 && Clock::now().time_since_epoch().count() - t > std::chrono::nanoseconds(hang_limit).count()) {
      std::fprintf(stderr, "keel fuzz: an input ran for more than %lld s: a hang\n",
                   static_cast<long long>(hang_limit.count()));
      std::abort();
    }
  }
}

void run_bytes(const std::string& bytes) {
  run_started.store(Clock::now().time_since_epoch().count());
  keel::fuzz::run({}, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  run_started.store(0);
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string mutate(std::string s, const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  const int steps = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < steps; ++i) {
    const std::size_t n = s.size();
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (n != 0) s[rng() % n] = static_cast<char>(s[rng() % n] ^ (1u << (rng() % 8)));
        break;
      case 1:  // a new byte
        if (n != 0) s[rng() % n] = static_cast<char>(rng());
        break;
      case 2:  // insert bytes
        s.insert(n == 0 ? 0 : rng() % (n + 1), std::string(1 + rng() % 4, static_cast<char>(rng())));
        break;
      case 3:  // erase bytes
        if (n != 0) {
          const std::size_t at = rng() % n;
          s.erase(at, 1 + rng() % std::min<std::size_t>(8, n - at));
        }
        break;
      case 4:  // copy a chunk within
        if (n > 1) {
          const std::size_t from = rng() % n, len = 1 + rng() % std::min<std::size_t>(16, n - from);
          s.insert(rng() % (n + 1), s.substr(from, len));
        }
        break;
      default: {  // splice in the tail of another input
        const std::string& other = corpus[rng() % corpus.size()];
        if (!other.empty()) s = s.substr(0, n == 0 ? 0 : rng() % (n + 1)) + other.substr(rng() % other.size());
        break;
      }
    }
  }
  if (s.size() > max_len) s.resize(max_len);
  return s;
}

int timed_run(long seconds, std::uint64_t seed, const std::string& current, const std::vector<std::string>& paths) {
  std::vector<std::string> corpus;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(p)) {
        if (e.is_regular_file() && e.path().filename().string().front() != '.') files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) corpus.push_back(slurp(f));
    } else if (fs::is_regular_file(p)) {
      corpus.push_back(slurp(p));
    }
  }
  if (corpus.empty()) corpus.emplace_back();
  std::mt19937_64 rng(seed);
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  std::uint64_t runs = 0;
  std::fprintf(stderr, "INFO: Seed: %llu\nINFO: %zu inputs loaded\n", static_cast<unsigned long long>(seed),
               corpus.size());
  while (runs < corpus.size() || Clock::now() < end) {
    const std::string input = runs < corpus.size() ? corpus[runs] : mutate(corpus[rng() % corpus.size()], corpus, rng);
    if (!current.empty()) {
      std::ofstream(current, std::ios::binary | std::ios::trunc)
          .write(input.data(), static_cast<std::streamsize>(input.size()));
    }
    run_bytes(input);
    ++runs;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr, "#%llu\tDONE   cov: - ft: - corp: %zu\n", static_cast<unsigned long long>(runs), corpus.size());
  std::fprintf(stderr, "stat::number_of_executed_units: %llu\nstat::average_exec_per_sec:     %llu\n",
               static_cast<unsigned long long>(runs), static_cast<unsigned long long>(secs > 0 ? runs / secs : runs));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  keel::bootstrap(argc, argv);
  long seconds = -1;
  std::uint64_t seed = 1;
  std::string current;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--seconds" || a == "--seed" || a == "--current") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--seconds") seconds = std::strtol(v.c_str(), nullptr, 10);
      if (a == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
      if (a == "--current") current = v;
    } else {
      paths.push_back(a);
    }
  }
  std::thread dog(watchdog);
  int rc = 0;
  if (seconds >= 0) {
    rc = timed_run(seconds, seed, current, paths);
  } else if (paths.empty()) {
    const std::string bytes((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    run_bytes(bytes);
    std::fprintf(stderr, "keel fuzz: ran stdin (%zu bytes)\n", bytes.size());
  } else {
    for (const auto& p : paths) {
      if (!fs::is_regular_file(p)) {
        std::fprintf(stderr, "keel fuzz: cannot read %s\n", p.c_str());
        rc = 2;
        break;
      }
      const std::string bytes = slurp(p);
      run_bytes(bytes);
      std::fprintf(stderr, "keel fuzz: ran %s (%zu bytes)\n", p.c_str(), bytes.size());
    }
  }
  done.store(true);
  dog.join();
  return rc;
}
