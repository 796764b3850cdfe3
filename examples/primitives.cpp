// A tour of keel's sync layer, the way Python's threading module is used:
// a bounded work queue on Mutex + Condition, a Semaphore limiting concurrency,
// a Barrier between phases, an Event to stop, and a Timer as a watchdog.
#include <keel/keel.hpp>

#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

int main() {
  keel::Mutex m;
  keel::Condition not_empty(m);
  std::deque<int> queue;
  keel::Semaphore slots(2);  // at most two items "in processing" at once
  keel::Barrier phase(3, [] { std::puts("all three workers reached the barrier"); });
  keel::Event stop;
  int processed = 0;

  keel::Timer watchdog(std::chrono::seconds(10), [&] {
    std::puts("watchdog fired: stopping");
    stop.set();
  });
  watchdog.start();

  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&] {
      phase.wait();  // everyone starts together
      for (;;) {
        int item;
        {
          std::unique_lock lock(not_empty);  // Condition is Lockable: it holds m
          if (!not_empty.wait_for(std::chrono::milliseconds(100), [&] { return !queue.empty() || stop.is_set(); })) {
            continue;
          }
          if (queue.empty()) return;  // stopping and drained
          item = queue.front();
          queue.pop_front();
        }
        slots.acquire();
        std::scoped_lock lock(m);
        processed += item;
        slots.release();
      }
    });
  }

  for (int i = 1; i <= 100; ++i) {
    std::scoped_lock lock(not_empty);
    queue.push_back(i);
    not_empty.notify();
  }
  {
    std::scoped_lock lock(not_empty);
    stop.set();
    not_empty.notify_all();
  }
  for (auto& t : workers) t.join();
  watchdog.cancel();
  std::printf("processed sum = %d (expected 5050)\n", processed);
  return processed == 5050 ? 0 : 1;
}
