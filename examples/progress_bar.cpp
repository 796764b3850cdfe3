// A terminal progress bar on a long ProcessPool map: the map's progress
// callback gets (done, total) as each call finishes, one call at a time, on
// the pool's supervisor thread, and redraws one line with '\r'. The results
// are taken in input order meanwhile; starmap shows the same with two
// arguments per call, zipped from two ranges.
//
// Usage: progress_bar [calls] [ms per call]   (default 200 calls of 10 ms)
#include <keel/process/bootstrap.hpp>
#include <keel/process_pool/process_pool.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

// Some work that takes a while: sleeps `ms`, then returns n's digit sum.
int slow_digit_sum(int n, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  int sum = 0;
  for (; n > 0; n /= 10) sum += n % 10;
  return sum;
}

const auto digit_sum_task = keel::register_task("slow_digit_sum", slow_digit_sum);

// Redraws the bar in place: "[#####.....]  50% (100/200)".
void draw(std::size_t done, std::size_t total) {
  constexpr std::size_t width = 40;
  const std::size_t filled = total ? done * width / total : 0;
  const std::size_t percent = total ? done * 100 / total : 0;
  std::string bar(filled, '#');
  bar.append(width - filled, '.');
  std::printf("\r[%s] %3zu%% (%zu/%zu)", bar.c_str(), percent, done, total);
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  // First thing: in a worker process this runs the worker and never returns.
  keel::bootstrap(argc, argv);
  const int calls = argc > 1 ? std::atoi(argv[1]) : 200;
  const int ms = argc > 2 ? std::atoi(argv[2]) : 10;
  if (calls <= 0 || ms < 0) {
    std::fprintf(stderr, "usage: %s [calls > 0] [ms per call >= 0]\n", argv[0]);
    return 2;
  }

  keel::ProcessPool pool({.workers = 4});
  std::vector<int> numbers(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) numbers[static_cast<std::size_t>(i)] = 1000 + i;
  const std::vector<int> delays(numbers.size(), ms);

  // starmap over zip: slow_digit_sum(numbers[i], delays[i]) for each i.
  long total = 0;
  for (int s : pool.starmap(digit_sum_task, keel::zip(numbers, delays), {.chunksize = 2, .progress = draw})) {
    total += s;
  }
  std::printf("\nsum of digit sums: %ld\n", total);
  return 0;
}
