// The ClusterPool over real MPI ranks: a program that mpirun starts on every
// rank (tests/cluster/mpi_test.cpp runs it, one scenario per test). Rank 0
// runs the scenario named by argv[1] against the other ranks as nodes and
// prints "scenario <name>: ok" when every check held; the other ranks are
// nodes inside keel::cluster::init and never reach the scenario.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../cluster_tasks.hpp"
#include "keel/cluster/cluster_pool.hpp"
#include "keel/cluster/mpi.hpp"
#include "keel/process/task.hpp"

namespace {

using namespace std::chrono_literals;

// The MPI rank of the node whose worker runs the call (workers inherit it).
int where_am_i(int) {
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  return r ? std::atoi(r) : -1;
}
using cluster_tasks::marks_in;
// Kills the node agent that runs this worker: its MPI rank dies.
int kill_my_rank(int) {
  ::kill(::getppid(), SIGKILL);
  ::pause();
  return 0;
}
void refuse() { throw std::runtime_error("initializer refuses"); }

const auto where_t = keel::register_task("mpi.where", where_am_i);
const auto square_t = keel::register_task("mpi.square", cluster_tasks::square);
const auto sleep_t = keel::register_task("mpi.sleep_ms", cluster_tasks::sleep_ms);
const auto mark_sleep_t = keel::register_task("mpi.mark_and_sleep", cluster_tasks::mark_and_sleep);
const auto die_t = keel::register_task("mpi.die", cluster_tasks::die);
const auto kill_rank_t = keel::register_task("mpi.kill_my_rank", kill_my_rank);
const auto refuse_t = keel::register_task("mpi.refuse", refuse);

int failures = 0;
#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond); \
      ++failures;                                                             \
    }                                                                         \
  } while (0)

keel::ClusterOptions one_worker() {
  keel::ClusterOptions o;
  o.workers_per_node = 1;
  return o;
}

void basic() {
  keel::ClusterPool pool(one_worker());
  CHECK(pool.nodes() == static_cast<unsigned>(keel::cluster::size() - 1));
  std::vector<keel::Future<int>> fs;
  for (int i = 0; i < 40; ++i) fs.push_back(pool.submit(square_t, i));
  for (int i = 0; i < 40; ++i) CHECK(fs[i].result() == i * i);
  std::vector<int> in(200);
  for (int i = 0; i < 200; ++i) in[i] = i;
  const auto r = pool.map(square_t, in, {.chunksize = 16}).get();
  CHECK(r.size() == 200);
  for (int i = 0; i < 200 && i < static_cast<int>(r.size()); ++i) CHECK(r[i] == i * i);
  // One slow task per node at once: each lands on a different rank.
  std::set<int> ranks;
  std::vector<keel::Future<int>> w;
  for (unsigned i = 0; i < pool.nodes(); ++i) w.push_back(pool.submit(where_t, 0));
  for (auto& f : w) ranks.insert(f.result());
  CHECK(ranks.count(0) == 0);
  pool.shutdown();
  const auto s = pool.stats();
  CHECK(s.answered == s.submitted);
  for (const auto& n : s.nodes) {
    CHECK(n.capacity == 1);
    CHECK(n.local.completed > 0);
  }
}

void rank0_works() {
  keel::ClusterOptions o = one_worker();
  o.rank0_runs_work = true;
  keel::ClusterPool pool(o);
  CHECK(pool.nodes() == static_cast<unsigned>(keel::cluster::size()));
  std::vector<keel::Future<int>> fs;
  for (int i = 0; i < 30; ++i) fs.push_back(pool.submit(sleep_t, 20));
  for (auto& f : fs) CHECK(f.result() == 20);
  pool.shutdown();
  const auto s = pool.stats();
  CHECK(s.nodes.size() == static_cast<std::size_t>(keel::cluster::size()));
  CHECK(s.nodes[0].local.completed > 0);  // rank 0's own node ran some
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif
// A crash: SIGSEGV, or SIGKILL under a sanitizer (which catches SIGSEGV).
constexpr int crash_signal = SANITIZED ? SIGKILL : SIGSEGV;

void crash() {
  keel::ClusterPool pool(one_worker());
  auto bad = pool.submit(die_t, crash_signal);
  std::vector<keel::Future<int>> ok;
  for (int i = 0; i < 20; ++i) ok.push_back(pool.submit(square_t, i));
  try {
    (void)bad.result();
    CHECK(false);
  } catch (const keel::WorkerLost& e) {
    CHECK(e.signal() == crash_signal);
    CHECK(std::strstr(e.what(), "rank ") != nullptr);
  }
  for (int i = 0; i < 20; ++i) CHECK(ok[i].result() == i * i);
  CHECK(pool.submit(square_t, 7).result() == 49);
}

void cancel() {
  keel::ClusterPool pool(one_worker());
  std::vector<keel::Future<int>> busy;
  for (unsigned i = 0; i < pool.nodes(); ++i) busy.push_back(pool.submit(sleep_t, 500));
  for (auto& f : busy) {
    for (int i = 0; i < 1000 && !f.running(); ++i) std::this_thread::sleep_for(5ms);
    CHECK(f.running());
  }
  std::vector<keel::Future<int>> waiting;
  for (int i = 0; i < 10; ++i) waiting.push_back(pool.submit(square_t, i));
  for (auto& f : waiting) CHECK(f.cancel());
  for (auto& f : busy) CHECK(f.result() == 500);
  pool.shutdown();
  std::uint64_t ran = 0;
  for (const auto& n : pool.stats().nodes) ran += n.local.submitted;
  CHECK(ran == pool.nodes());
}

void two_pools() {
  for (int round = 0; round < 2; ++round) {
    keel::ClusterPool pool(one_worker());
    CHECK(pool.submit(square_t, round + 3).result() == (round + 3) * (round + 3));
  }
}

void terminate() {
  char tmpl[] = "/tmp/keel-mpi-XXXXXX";
  CHECK(::mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  {
    keel::ClusterPool pool(one_worker());
    std::vector<keel::Future<int>> busy;
    for (unsigned i = 0; i < pool.nodes(); ++i) busy.push_back(pool.submit(mark_sleep_t, dir, 60000));
    for (int i = 0; i < 2000 && marks_in(dir) < static_cast<int>(pool.nodes()); ++i) std::this_thread::sleep_for(5ms);
    CHECK(marks_in(dir) == static_cast<int>(pool.nodes()));  // every one started on its worker
    const auto t0 = std::chrono::steady_clock::now();
    pool.terminate_workers();
    CHECK(std::chrono::steady_clock::now() - t0 < 30s);
    for (auto& f : busy) {
      try {
        (void)f.result();
        CHECK(false);
      } catch (const keel::WorkerLost&) {
      } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected: %s\n", e.what());
        CHECK(false);
      }
    }
  }
  (void)std::system(("rm -rf '" + dir + "'").c_str());
}

void broken() {
  keel::ClusterOptions o = one_worker();
  o.initializer = keel::bind_task(refuse_t);
  keel::ClusterPool pool(o);
  auto f = pool.submit(square_t, 1);
  try {
    (void)f.result();
    CHECK(false);
  } catch (const keel::BrokenProcessPool&) {
  }
  try {
    (void)pool.submit(square_t, 1);
    CHECK(false);
  } catch (const keel::BrokenProcessPool&) {
  }
}

// mpirun -n 1: no node ranks. A pool without rank0_runs_work has nowhere to
// run work (ValueError); with it, rank 0 is the one node.
void alone() {
  try {
    keel::ClusterPool pool(one_worker());
    CHECK(false);
  } catch (const keel::ValueError&) {
  }
  keel::ClusterOptions o = one_worker();
  o.rank0_runs_work = true;
  keel::ClusterPool pool(o);
  CHECK(pool.nodes() == 1);
  CHECK(pool.submit(square_t, 8).result() == 64);
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// With a pool open and nothing to do, rank 0's supervisor sleeps between
// MPI polls: a second of idling costs a small fraction of a core.
void idle() {
  keel::ClusterPool pool(one_worker());
  CHECK(pool.submit(square_t, 3).result() == 9);
  const double before = cpu_seconds();
  std::this_thread::sleep_for(1s);
  const double used = cpu_seconds() - before;
  if (used >= 0.3) std::fprintf(stderr, "rank 0 used %.3f s of CPU while idle\n", used);
  CHECK(used < 0.3);
}

// main returns while a leaked pool still runs a task: the exit handler
// terminates it and the job ends cleanly.
void leak_at_exit() {
  auto* pool = new keel::ClusterPool(one_worker());
  (void)pool->submit(sleep_t, 60000);
  std::this_thread::sleep_for(200ms);
}

// A node's rank dies: mpirun ends the job (the test checks how fast and what
// it says); rank 0 must not hang meanwhile.
void rank_dies() {
  keel::ClusterPool pool(one_worker());
  auto f = pool.submit(kill_rank_t, 0);
  (void)f.wait_for(120s);
  std::fprintf(stderr, "scenario rank-dies: rank 0 was not ended by mpirun\n");
  ++failures;
}

}  // namespace

int main(int argc, char** argv) {
  keel::cluster::init(argc, argv);
  const std::string which = argc > 1 ? argv[1] : "";
  if (which == "basic") {
    basic();
  } else if (which == "rank0") {
    rank0_works();
  } else if (which == "crash") {
    crash();
  } else if (which == "cancel") {
    cancel();
  } else if (which == "two-pools") {
    two_pools();
  } else if (which == "terminate") {
    terminate();
  } else if (which == "broken") {
    broken();
  } else if (which == "alone") {
    alone();
  } else if (which == "idle") {
    idle();
  } else if (which == "leak-at-exit") {
    leak_at_exit();
  } else if (which == "rank-dies") {
    rank_dies();
  } else {
    std::fprintf(stderr, "usage: mpirun -n N %s SCENARIO\n", argv[0]);
    return 2;
  }
  if (failures != 0) {
    std::printf("scenario %s: %d checks failed\n", which.c_str(), failures);
    return 1;
  }
  std::printf("scenario %s: ok\n", which.c_str());
  return 0;
}
