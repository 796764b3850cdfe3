// A tour of keel::ProcessPool, the way Python's ProcessPoolExecutor is used:
// tasks registered by name, futures, an error raised in a worker, map, a
// worker that dies in the middle of a task (its future says who died and
// how, and the pool replaces the worker and keeps working), a timeout, and a
// clean shutdown.
#include <keel/process/bootstrap.hpp>
#include <keel/process_pool/process_pool.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

// Workers are fresh images of this program, so a task is found by name:
// register every task at namespace scope (before main runs), and the parent
// and each worker have the same table.
long square(long x) { return x * x; }

std::string shout(std::string s) {
  if (s.empty()) throw std::invalid_argument("nothing to shout");
  for (char& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return s;
}

// Sleeps, then dies the hard way, as if the OOM killer had picked its worker.
int crash_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  std::raise(SIGKILL);
  return 0;
}

int nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

const auto square_task = keel::register_task("square", square);
const auto shout_task = keel::register_task("shout", shout);
const auto crash_task = keel::register_task("crash_after", crash_after);
const auto nap_task = keel::register_task("nap", nap);

// Waits (bounded) until the pool has all its workers ready again.
bool wait_ready(const keel::ProcessPool& pool) {
  for (int i = 0; i < 500; ++i) {
    const auto s = pool.stats();
    if (s.ready == pool.workers() && s.workers == pool.workers()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

int main(int argc, char** argv) {
  // First thing: in a worker process this runs the worker and never returns.
  keel::bootstrap(argc, argv);

  keel::ProcessPool pool({.workers = 2});

  // A future per task; the value comes back through keel's codec.
  keel::Future<long> f = pool.submit(square_task, 12);
  std::printf("square(12) = %ld\n", f.result());

  // An exception in the worker is a RemoteError here: its type and message.
  try {
    pool.submit(shout_task, std::string()).result();
  } catch (const keel::RemoteError& e) {
    std::printf("shout(\"\") raised %s: %s\n", e.type().c_str(), e.message().c_str());
  }

  // map: results in input order; chunksize sends several calls per message.
  std::vector<long> xs{1, 2, 3, 4, 5, 6, 7, 8};
  long total = 0;
  for (long y : pool.map(square_task, xs, {.chunksize = 4})) total += y;
  std::printf("sum of squares 1..8 = %ld\n", total);

  // A worker dies in the middle of a task. Its future fails with WorkerLost
  // (pid, signal); the other tasks are unaffected, and the pool starts a
  // replacement worker.
  if (!wait_ready(pool)) return 1;
  const std::vector<int> before = pool.worker_pids();
  keel::Future<int> doomed = pool.submit(crash_task, 50);
  keel::Future<int> fine = pool.submit(nap_task, 100);
  int dead = -1;
  try {
    doomed.result();
    std::printf("crash_after returned?\n");
    return 1;
  } catch (const keel::WorkerLost& e) {
    dead = e.pid();
    std::printf("lost: %s\n  (pid %d, signal %d, was a worker: %s)\n", e.what(), e.pid(), e.signal(),
                std::find(before.begin(), before.end(), dead) != before.end() ? "yes" : "no");
  }
  std::printf("the other task finished: nap(100) = %d\n", fine.result());
  if (!wait_ready(pool)) return 1;
  const std::vector<int> after = pool.worker_pids();
  std::printf("workers before: %d %d, after: %d %d\n", before[0], before[1], after[0], after[1]);
  const auto s = pool.stats();
  std::printf("deaths %llu, replacements %llu, lost tasks %llu\n", static_cast<unsigned long long>(s.deaths),
              static_cast<unsigned long long>(s.replacements), static_cast<unsigned long long>(s.lost));
  std::printf("and it keeps working: square(7) = %ld\n", pool.submit(square_task, 7).result());

  // A task past its timeout is a TimeoutError; its worker is killed and replaced.
  try {
    pool.submit(keel::SubmitOptions{.timeout = 50ms}, nap_task, 5000).result();
  } catch (const keel::TimeoutError& e) {
    std::printf("timeout: %s\n", e.what());
  }

  // No more submissions; queued work finishes; every worker is reaped.
  pool.shutdown({.wait = true});
  std::printf("shut down; workers left: %zu\n", pool.worker_pids().size());
  return 0;
}
