// A tour of keel's executor, the way concurrent.futures is used, with Java's
// controls: a bounded priority queue that makes the submitter wait when full,
// futures with callbacks, wait/as_completed, map with a look-ahead, a
// cooperative stop, and a clean shutdown.
#include <keel/keel.hpp>

#include <chrono>
#include <cstdio>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

int main() {
  keel::ThreadPoolExecutor pool({
      .max_threads = 4,
      .thread_name_prefix = "demo",
      .queue = keel::QueueKind::priority,
      .queue_capacity = 64,
      .reject = keel::RejectPolicy::block,
      .block_timeout = 5s,
      .after_task =
          [](const keel::TaskInfo& t, std::exception_ptr e) {
            if (e) std::printf("task %llu failed\n", static_cast<unsigned long long>(t.id));
          },
  });

  // Futures with arguments, priorities and a done-callback.
  std::vector<keel::Future<long>> squares;
  for (long i = 1; i <= 8; ++i) {
    squares.push_back(pool.submit(
        keel::Priority{static_cast<int>(8 - i)}, [](long x) { return x * x; }, i));
  }
  squares.back().add_done_callback([](const keel::Future<long>& f) { std::printf("last square: %ld\n", f.result()); });

  long total = 0;
  for (const auto& f : keel::as_completed(squares)) total += f.result();
  std::printf("sum of squares 1..8 = %ld\n", total);

  // Exceptions travel through the future.
  auto failing = pool.submit([]() -> int { throw std::runtime_error("no such file"); });
  auto r = keel::wait(std::vector{failing}, 1s, keel::ReturnWhen::first_exception);
  try {
    failing.result();
  } catch (const std::exception& e) {
    std::printf("done=%zu, error: %s\n", r.done.size(), e.what());
  }

  // map keeps results in input order and at most 3 tasks in flight.
  std::vector<std::string> words{"futex", "relacy", "spin", "keel"};
  for (std::size_t n : pool.map([](const std::string& w) { return w.size(); }, words, {.lookahead = 3})) {
    std::printf("%zu ", n);
  }
  std::printf("\n");

  // A long task that stops when asked.
  auto ticker = pool.submit([](std::stop_token st) {
    int ticks = 0;
    while (!st.stop_requested()) {
      ++ticks;
      std::this_thread::sleep_for(1ms);
    }
    return ticks;
  });
  std::this_thread::sleep_for(10ms);
  ticker.request_stop();
  std::printf("ticker stopped after %d ticks\n", ticker.result());

  auto s = pool.stats();
  std::printf("threads=%zu largest=%zu submitted=%llu completed=%llu rejected=%llu\n", s.threads, s.largest,
              static_cast<unsigned long long>(s.submitted), static_cast<unsigned long long>(s.completed),
              static_cast<unsigned long long>(s.rejected));
  pool.shutdown({.wait = true, .cancel_futures = false});
  std::printf("terminated: %s\n", pool.is_terminated() ? "yes" : "no");
}
