// Cluster checks that end within their own bounds, at the exact limits of
// the machine, the loopback transport, the node agent and the supervisor's
// end (CLUSTER-2..5, CLUSTER-7).
//
// This file's name sorts first in tests/cluster, so its checks run before
// the directory's other tests: a fault that would crash the test binary or
// hang a later test without bound (every pool's destructor waits for its
// nodes) fails one of these by name first. Code that may read past a table
// runs in a child process (forked, for the single-threaded machine and an
// empty fabric; a fresh process for a whole pool, before any pool runs in
// this one), each with its own time limit; waits here have deadlines.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../../kernel/src/cluster/machine.hpp"
#include "../../kernel/src/cluster/protocol.hpp"
#include "../../kernel/src/cluster/transport.hpp"
#include "../support/test_support.hpp"
#include "keel/cluster/cluster_pool.hpp"
#include "keel/process/process.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using namespace std::chrono_literals;
using keel::cluster::Action;
using keel::cluster::Machine;
using keel::cluster::MachineConfig;
using keel::cluster::NodeId;
using keel::cluster::TaskId;
using keel::cluster::proto::Kind;
using keel::cluster::proto::Message;

int clb_square(int x) { return x * x; }
inline const auto clb_square_t = keel::register_task("clb.square", clb_square);
// Waits (up to 60 s) until the file `path` exists: a task that ends when the
// test says so. Bounded, so a test that fails early cannot leave it for ever.
int clb_wait_for_file(std::string path) {
  struct stat st {};
  for (int i = 0; i < 6000 && ::stat(path.c_str(), &st) != 0; ++i) ::usleep(10000);
  return 1;
}
// A whole pool of two local nodes, run in the process this is called in;
// throws on a wrong result.
void clb_pool_of_two_nodes() {
  keel::ClusterOptions o;
  o.local_nodes = 2;
  o.workers_per_node = 1;
  keel::ClusterPool pool(o);
  if (pool.nodes() != 2) throw std::runtime_error("the pool has " + std::to_string(pool.nodes()) + " nodes, not 2");
  std::vector<keel::Future<int>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(pool.submit(clb_square_t, i));
  for (int i = 0; i < 8; ++i) {
    if (fs[static_cast<std::size_t>(i)].result(keel_test::hang_limit) != i * i) {
      throw std::runtime_error("a wrong result for " + std::to_string(i));
    }
  }
  pool.shutdown({.wait = false});
  if (!pool.await_termination(keel_test::hang_limit)) {
    // Its destructor would wait for ever: this child ends here, and says why.
    std::fprintf(stderr, "clb.pool_of_two_nodes: the pool did not end after shutdown\n");
    std::_Exit(3);
  }
  const keel::ClusterStats s = pool.stats();
  if (s.submitted != 8 || s.answered != 8) throw std::runtime_error("the counters do not add up");
  if (s.nodes.size() != 2) throw std::runtime_error("the stats have " + std::to_string(s.nodes.size()) + " nodes");
  for (unsigned n = 0; n < 2; ++n) {
    if (s.nodes[n].node != n || s.nodes[n].capacity != 1) throw std::runtime_error("node " + std::to_string(n));
    if (s.nodes[n].name.find("local node " + std::to_string(n)) == std::string::npos) {
      throw std::runtime_error("node " + std::to_string(n) + " is named '" + s.nodes[n].name + "'");
    }
  }
}

inline const auto clb_wait_for_file_t = keel::register_task("clb.wait_for_file", clb_wait_for_file);
inline const auto clb_pool_of_two_nodes_t = keel::register_task("clb.pool_of_two_nodes", clb_pool_of_two_nodes);

// Runs fn in a forked child under a time limit (SIGALRM after `seconds`):
// its return value, or 128 + the signal that ended it.
template <class F>
int bounded_child(F fn, unsigned seconds = 20) {
  return keel_test::exit_code_in_child([fn = std::move(fn), seconds]() mutable {
    ::alarm(seconds);
    return fn();
  });
}

// ---------------------------------------------------------------- the machine

// Lets every task start: nobody cancels in these tests.
struct ClbGate final : keel::cluster::Gate {
  bool arm(TaskId, NodeId) override { return true; }
  Start start(TaskId, NodeId) override { return Start::started; }
  void revoke(TaskId, NodeId) override {}
};

// Whether every action that names a node names one of the first `nodes`.
bool clb_nodes_in_range(const std::vector<Action>& actions, unsigned nodes) {
  for (const Action& a : actions) {
    if (a.kind != Action::resolve && a.kind != Action::terminated && a.node >= nodes) return false;
  }
  return true;
}

std::vector<NodeId> clb_nodes_of(const std::vector<Action>& actions, Action::Kind kind) {
  std::vector<NodeId> out;
  for (const Action& a : actions) {
    if (a.kind == kind) out.push_back(a.node);
  }
  return out;
}

TEST(ClusterMachineBounds, ATaskGoesToTheNodeWithTheMostIdleWorkersAndTiesToTheLowest) {
  // In a child, as every machine test here: a ready node makes the machine
  // look for offers to move, a pass over the whole node table.
  const int code = bounded_child([] {
    ClbGate gate;
    Machine m(MachineConfig{3, 1}, gate);
    m.start();
    for (NodeId n = 0; n < 3; ++n) m.node_ready(n, 1);
    m.actions().clear();
    m.submit(1);
    if (clb_nodes_of(m.actions(), Action::offer) != std::vector<NodeId>{0}) return 1;
    Machine w(MachineConfig{3, 1}, gate);
    w.start();
    w.node_ready(0, 1);
    w.node_ready(1, 2);
    w.node_ready(2, 2);
    w.actions().clear();
    w.submit(1);
    if (clb_nodes_of(w.actions(), Action::offer) != std::vector<NodeId>{1}) return 2;
    return 0;
  });
  EXPECT_EQ(code, 0) << "1: a three-way tie did not go to node 0; 2: one free worker beat two; 128 + n: signal n";
}

TEST(ClusterMachineBounds, AnOfferBehindBusyWorkersStaysWhenNoNodeHasAFreeWorker) {
  // Both nodes' only workers run; a third task is offered ahead to node 0.
  // Node 1 has no free worker either, so nothing is moved (a node whose
  // free workers are all offered is not idle: moving to it would move the
  // offer back and forth for ever).
  const int code = bounded_child([] {
    ClbGate gate;
    Machine m(MachineConfig{2, 1}, gate);
    m.start();
    m.node_ready(0, 1);
    m.node_ready(1, 1);
    m.submit(1);
    m.claim(0, 1);
    m.submit(2);
    m.claim(1, 2);
    if (m.running_on(0) != 1 || m.running_on(1) != 1) return 1;
    m.actions().clear();
    m.submit(3);
    if (clb_nodes_of(m.actions(), Action::offer) != std::vector<NodeId>{0}) return 2;
    if (m.counters().moved != 0 || !clb_nodes_of(m.actions(), Action::withdraw).empty()) return 3;
    return 0;
  });
  EXPECT_EQ(code, 0) << "1: claims; 2: the offer; 3: a move to a busy node; 128 + n: signal n (14: it looped)";
}

TEST(ClusterMachineBounds, EveryPassOverTheNodesStaysWithinThem) {
  // Each loop over the node table (open, pick, balance's two passes,
  // terminate, cancel, close, a break) runs, and events naming the node one
  // past the last are ignored. In a child: a pass that read one past the
  // table would crash or act on a node the cluster does not have.
  const int code = bounded_child([] {
    ClbGate gate;
    Machine m(MachineConfig{2, 1}, gate);
    m.start();
    // Node 0 alone ready: balance looks for a donor among the others.
    m.node_ready(0, 1);
    m.node_ready(2, 1);  // one past the last
    m.submit(1);
    m.claim(0, 1);
    m.submit(2);  // offered ahead to node 0, behind task 1
    if (m.offered_to(0) != 1 || m.queued() != 0) return 1;
    m.claim(2, 2);
    if (m.answer(2, 1)) return 2;
    m.node_closed(2);
    if (m.counters().ignored != 2) return 3;
    // Node 1 comes up idle: task 2 is moved to it.
    m.node_ready(1, 1);
    if (m.offered_to(1) != 1 || m.offered_to(0) != 0 || m.counters().moved != 1) return 4;
    m.submit(3);  // offered ahead to node 0
    if (m.offered_to(0) != 1) return 5;
    // Terminate: node 0 runs task 1 (told to terminate); the offers are cancelled.
    m.terminate();
    if (clb_nodes_of(m.actions(), Action::terminate) != std::vector<NodeId>{0}) return 6;
    if (m.counters().cancelled != 2 || m.offered() != 0) return 7;
    m.answer(0, 1);
    if (clb_nodes_of(m.actions(), Action::close) != std::vector<NodeId>{0, 1}) return 8;
    m.node_closed(0);
    m.node_closed(1);
    if (!m.terminated()) return 9;
    if (!clb_nodes_in_range(m.actions(), 2)) return 10;
    // A break closes every node, opening or ready, and resolves what it held.
    Machine b(MachineConfig{2, 1}, gate);
    b.start();
    b.node_ready(0, 1);
    b.submit(1);
    b.submit(2);
    b.node_failed(0);
    if (clb_nodes_of(b.actions(), Action::close) != std::vector<NodeId>{0, 1}) return 11;
    if (b.counters().broken != 2) return 12;
    if (!clb_nodes_in_range(b.actions(), 2)) return 13;
    return 0;
  });
  EXPECT_EQ(code, 0) << "the check that failed (see the child), or 128 + the signal that ended it";
}

// ---------------------------------------------------------------- the loopback transport

TEST(ClusterLoopbackBounds, AFabricOfNoNodesNamesNoneSendsNowhereAndReceivesNothing) {
  // What a pool constructor that finds no nodes builds (and then refuses).
  const int code = bounded_child([] {
    keel::cluster::Waker w;
    int r = 0;
    {
      keel::cluster::LoopbackFabric f(0, w);
      unsigned n = 7;
      std::string bytes;
      if (f.nodes() != 0) {
        r = 1;
      } else if (f.where(0) != "local node ?") {
        r = 2;
      } else {
        f.send(0, "to nobody");
        if (f.receive(n, bytes) || n != 7) r = 3;
      }
    }
    return r;
  });
  EXPECT_EQ(code, 0) << "1: nodes; 2: where; 3: receive; 128 + n: signal n";
}

TEST(ClusterWaker, ARingWakesItsSleeperAndARingWithNobodyAsleepIsKept) {
  keel::cluster::Waker w;
  std::atomic<int> woke{0};
  // Each sleep's limit is twice the hang limit: a sleep that ends only at
  // its limit fails the eventually() below first.
  const keel::cluster::Nanos max = 2 * keel_test::hang_limit;
  {
    keel_test::TidThread sleeper([&] {
      w.sleep(max);
      woke.store(1);
    });
    sleeper.wait_blocked();
    w.ring();
    EXPECT_TRUE(keel_test::eventually([&] { return woke.load() == 1; })) << "the ring did not wake the sleeper";
  }
  w.ring();  // nobody asleep: kept for the next sleep
  keel_test::TidThread late([&] {
    w.sleep(max);
    woke.store(2);
  });
  EXPECT_TRUE(keel_test::eventually([&] { return woke.load() == 2; })) << "the kept ring was lost";
}

// ---------------------------------------------------------------- the node agent

// The test as rank 0 of one loopback node: what the node sent next, stats
// reports skipped, or nothing within the hang limit.
std::optional<Message> clb_from_node(keel::cluster::LoopbackFabric& f, keel::cluster::Waker& w,
                                     std::vector<Message>* stats = nullptr) {
  const auto end = std::chrono::steady_clock::now() + keel_test::hang_limit;
  while (std::chrono::steady_clock::now() < end) {
    unsigned n = 0;
    std::string bytes;
    if (f.receive(n, bytes)) {
      Message m = keel::cluster::proto::decode(bytes);
      if (m.kind != Kind::stats) return m;
      if (stats) stats->push_back(std::move(m));
      continue;
    }
    w.sleep(10ms);
  }
  return std::nullopt;
}

Message clb_offer(TaskId task, std::uint64_t gen, int arg) {
  Message m;
  m.kind = Kind::offer;
  m.task = task;
  m.gen = gen;
  m.text = keel::detail::call_payload("clb.square", keel::detail::encode_args<int>(arg));
  return m;
}

TEST(ClusterNodeAgentBounds, ANodeClaimsOneOfferPerReadyWorkerAndClosesAnIdlePoolWithoutKillingIt) {
  keel::cluster::Waker w;
  keel::cluster::LoopbackFabric f(1, w);
  Message open;
  open.kind = Kind::open;
  open.options.workers_per_node = 1;
  f.send(0, keel::cluster::proto::encode(open));
  auto ready = clb_from_node(f, w);
  ASSERT_TRUE(ready && ready->kind == Kind::ready);
  EXPECT_EQ(ready->capacity, 1u);
  // The offers come once the node's worker is ready (its reports say so), so
  // the node could claim them at once: it claims one, for its one worker.
  bool worker_ready = false;
  const auto end = std::chrono::steady_clock::now() + keel_test::hang_limit;
  while (!worker_ready && std::chrono::steady_clock::now() < end) {
    unsigned n = 0;
    std::string bytes;
    if (!f.receive(n, bytes)) {
      w.sleep(10ms);
      continue;
    }
    const Message m = keel::cluster::proto::decode(bytes);
    ASSERT_EQ(m.kind, Kind::stats) << "nothing was offered: the node has nothing to say but its reports";
    worker_ready = m.stats.ready == 1;
  }
  ASSERT_TRUE(worker_ready) << "the node's worker never became ready";
  // Two offers for one ready worker: one claim, and the second only once
  // the first task's answer is on its way (its worker is free again).
  f.send(0, keel::cluster::proto::encode(clb_offer(1, 2, 3)));
  f.send(0, keel::cluster::proto::encode(clb_offer(2, 2, 4)));
  auto c1 = clb_from_node(f, w);
  ASSERT_TRUE(c1.has_value()) << "no claim: the node has a ready worker and an offer";
  ASSERT_EQ(c1->kind, Kind::claim);
  EXPECT_EQ(c1->task, 1u);
  EXPECT_EQ(c1->gen, 2u);
  Message go;
  go.kind = Kind::go;
  go.task = 1;
  go.gen = 2;
  f.send(0, keel::cluster::proto::encode(go));
  auto a1 = clb_from_node(f, w);
  ASSERT_TRUE(a1.has_value());
  ASSERT_EQ(a1->kind, Kind::answer) << "a second claim (task " << a1->task << ") while the one worker runs task 1";
  EXPECT_EQ(a1->task, 1u);
  EXPECT_TRUE(a1->ok);
  EXPECT_EQ(a1->text, keel::encode(9));
  auto c2 = clb_from_node(f, w);
  ASSERT_TRUE(c2 && c2->kind == Kind::claim);
  EXPECT_EQ(c2->task, 2u);
  go.task = 2;
  f.send(0, keel::cluster::proto::encode(go));
  auto a2 = clb_from_node(f, w);
  ASSERT_TRUE(a2 && a2->kind == Kind::answer);
  EXPECT_EQ(a2->text, keel::encode(16));
  // Nothing runs: the node closes its pool as it is, and its last report
  // (taken before the pool closes) still has the worker, never killed.
  f.send(0, keel::cluster::proto::bare_message(Kind::close));
  std::vector<Message> stats;
  auto closed = clb_from_node(f, w, &stats);
  ASSERT_TRUE(closed && closed->kind == Kind::closed);
  ASSERT_FALSE(stats.empty());
  EXPECT_EQ(stats.back().stats.workers, 1u) << "the idle node's worker was killed at close";
  f.finish();
}

// ---------------------------------------------------------------- a whole pool

// Every part above at once, in a child process, before any pool runs in
// this one: a fault the checks above miss (a supervisor that writes past its
// node table) fails this test by name rather than crash the binary.

TEST(ClusterFaultsInAChild, APoolOfTwoLocalNodesRunsItsTasksAndCloses) {
  keel::Process p(clb_pool_of_two_nodes_t);
  p.start();
  ASSERT_TRUE(keel_test::joined_within(p)) << "the child never ended";
  EXPECT_EQ(p.exitcode().value_or(-2000), 0)
      << "1: a wrong result (on its stderr); 3: the pool never ended; < 0: killed by a signal";
}

// ---------------------------------------------------------------- the supervisor's end

TEST(ClusterPoolEnd, EveryThreadAwaitingTheEndReturnsWhenItComes) {
  char tmpl[] = "/tmp/keel-clb-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string gate = std::string(tmpl) + "/gate";
  std::atomic<int> ended{0};
  std::atomic<int> in_time{0};
  {
    keel::ClusterOptions o;
    o.local_nodes = 1;
    o.workers_per_node = 1;
    keel::ClusterPool pool(o);
    auto a = pool.submit(clb_wait_for_file_t, gate);
    ASSERT_TRUE(keel_test::eventually([&] { return a.running(); }));
    pool.shutdown({.wait = false});
    // Two threads wait for the end, both asleep before it comes; each limit
    // is twice the hang limit, so one that sleeps through the end fails the
    // eventually() below first.
    auto waiter = [&] {
      if (pool.await_termination(2 * keel_test::hang_limit)) in_time.fetch_add(1);
      ended.fetch_add(1);
    };
    keel_test::TidThread w1(waiter);
    keel_test::TidThread w2(waiter);
    w1.wait_blocked();
    w2.wait_blocked();
    EXPECT_EQ(ended.load(), 0) << "a waiter returned before the end";
    if (FILE* fp = std::fopen(gate.c_str(), "w")) std::fclose(fp);
    EXPECT_EQ(a.result(keel_test::hang_limit), 1);
    EXPECT_TRUE(keel_test::eventually([&] { return ended.load() == 2; })) << ended.load() << " of 2 waiters woke";
    w1.join();
    w2.join();
    EXPECT_EQ(in_time.load(), 2) << "a waiter slept until its own limit";
  }
  ::unlink(gate.c_str());
  ::rmdir(tmpl);
}

}  // namespace
