// A tour of keel::ClusterPool, the way mpi4py.futures' MPIPoolExecutor is
// used, but with each node's crashes kept on that node. Run it under mpirun:
//
//   mpirun -n 3 build/g++/examples/cluster
//
// Rank 0 runs main; ranks 1 and 2 are nodes, each with a local process pool.
// A map spread over both nodes, a task that crashes its worker (the node
// replaces the worker; the rank and the job go on), a cancel before the task
// is let run, and a clean shutdown that ends every rank.
#include <keel/cluster/cluster_pool.hpp>
#include <keel/cluster/mpi.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

// Tasks are found by name on every rank: register them at namespace scope.
long collatz_steps(long n) {
  long steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}
// Which node ran it (a node's workers inherit its MPI rank), after `ms`.
int node_rank(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  return r ? std::atoi(r) : -1;
}
int crash(int) {
  std::raise(SIGKILL);  // as a segfault would end it
  return 0;
}
int slow(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
const auto collatz_task = keel::register_task("collatz_steps", collatz_steps);
const auto rank_task = keel::register_task("node_rank", node_rank);
const auto crash_task = keel::register_task("crash", crash);
const auto slow_task = keel::register_task("slow", slow);

int main(int argc, char** argv) {
  keel::cluster::init(argc, argv);  // first: only rank 0 returns
  keel::ClusterPool pool({.workers_per_node = 1});
  std::printf("%u nodes\n", pool.nodes());

  std::vector<long> n(2000);
  std::iota(n.begin(), n.end(), 1L);
  long most = 0;
  for (long steps : pool.map(collatz_task, n, {.chunksize = 100})) most = std::max(most, steps);
  std::printf("longest Collatz run below 2001: %ld steps\n", most);

  // One task per node, submitted together: each goes to a node with a free
  // worker, so they run at once, one on each node.
  std::vector<keel::Future<int>> where;
  for (unsigned i = 0; i < pool.nodes(); ++i) where.push_back(pool.submit(rank_task, 200));
  std::vector<int> ranks;
  for (auto& f : where) ranks.push_back(f.result());
  std::sort(ranks.begin(), ranks.end());
  for (int r : ranks) std::printf("a task ran on rank %d\n", r);

  try {
    pool.submit(crash_task, 0).result();
  } catch (const keel::WorkerLost& e) {
    std::printf("crash: %s\n", e.what());
  }
  std::printf("after the crash: %ld\n", pool.submit(collatz_task, 27L).result());

  // Every worker busy: tasks submitted now wait (on rank 0, or offered to a
  // node), and cancel() succeeds until a node is let run one.
  std::vector<keel::Future<int>> busy;
  for (unsigned i = 0; i < pool.nodes(); ++i) busy.push_back(pool.submit(slow_task, 500));
  for (auto& f : busy) {
    while (!f.running()) std::this_thread::sleep_for(1ms);
  }
  std::vector<keel::Future<int>> waiting;
  for (int i = 0; i < 4; ++i) waiting.push_back(pool.submit(slow_task, 300));
  int cancelled = 0;
  for (auto& f : waiting) cancelled += f.cancel() ? 1 : 0;
  std::printf("cancelled %d of 4 waiting tasks; the running ones %s\n", cancelled,
              busy[0].cancel() ? "were cancelled too" : "could not be");

  pool.shutdown();  // every node's pool closes; the nodes exit when main ends
  const keel::ClusterStats s = pool.stats();
  for (const auto& node : s.nodes) {
    std::printf("%s: %llu tasks answered, %llu workers lost\n", node.name.c_str(),
                static_cast<unsigned long long>(node.local.completed),
                static_cast<unsigned long long>(node.local.lost));
  }
  return 0;
}
