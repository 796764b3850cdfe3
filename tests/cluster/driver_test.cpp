// The ClusterPool's supervisor against nodes played by the test, message by
// message (a scripted Fabric): the races a real node rarely hits on cue. And
// the wire protocol's checks (IPC-1 for the cluster's messages).
#include <chrono>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../../kernel/src/cluster/driver.hpp"
#include "../../kernel/src/cluster/protocol.hpp"
#include "../support/test_support.hpp"
#include "keel/cluster/cluster_pool.hpp"
#include "keel/process/process.hpp"
#include "keel/process/task.hpp"

namespace {

using namespace std::chrono_literals;
using keel::cluster::proto::Kind;
using keel::cluster::proto::Message;

int cd_square(int x) { return x * x; }
inline const auto cd_square_t = keel::register_task("cd.square", cd_square);

// Two nodes whose side of every message is the test's.
class ScriptedFabric final : public keel::cluster::Fabric {
 public:
  explicit ScriptedFabric(keel::cluster::Waker& driver) : driver_(driver) {}
  unsigned nodes() const override { return 2; }
  std::string where(unsigned node) const override { return "scripted node " + std::to_string(node); }
  void send(unsigned node, std::string bytes) override {
    keel::LockGuard<keel::Mutex> g(m_);
    to_nodes_.emplace_back(node, std::move(bytes));
  }
  bool receive(unsigned& node, std::string& bytes) override {
    keel::LockGuard<keel::Mutex> g(m_);
    if (to_driver_.empty()) return false;
    node = to_driver_.front().first;
    bytes = std::move(to_driver_.front().second);
    to_driver_.pop_front();
    return true;
  }
  void idle(keel::cluster::Waker& w, keel::cluster::Nanos max) override { w.sleep(max); }
  void finish() override {}

  // The test, as node `node`.
  void node_says(unsigned node, const Message& m) {
    {
      keel::LockGuard<keel::Mutex> g(m_);
      to_driver_.emplace_back(node, keel::cluster::proto::encode(m));
    }
    driver_.ring();
  }
  void node_sends_raw(unsigned node, std::string bytes) {
    {
      keel::LockGuard<keel::Mutex> g(m_);
      to_driver_.emplace_back(node, std::move(bytes));
    }
    driver_.ring();
  }
  // The next message the driver sent, to whichever node.
  std::optional<std::pair<unsigned, Message>> next(std::chrono::milliseconds limit = 5000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      {
        keel::LockGuard<keel::Mutex> g(m_);
        if (!to_nodes_.empty()) {
          auto [n, b] = std::move(to_nodes_.front());
          to_nodes_.pop_front();
          return std::make_pair(n, keel::cluster::proto::decode(b));
        }
      }
      std::this_thread::sleep_for(1ms);
    }
    return std::nullopt;
  }
  // Skips statistics-free noise until a message of `kind` to `node`.
  Message expect(unsigned node, Kind kind) {
    for (;;) {
      auto m = next();
      if (!m) {
        ADD_FAILURE() << "no message of kind " << static_cast<int>(kind) << " to node " << node;
        return {};
      }
      if (m->first == node && m->second.kind == kind) return m->second;
      EXPECT_FALSE(m->second.kind == Kind::go) << "an unexpected go to node " << m->first;
    }
  }

 private:
  keel::cluster::Waker& driver_;
  keel::Mutex m_;
  std::deque<std::pair<unsigned, std::string>> to_nodes_;
  std::deque<std::pair<unsigned, std::string>> to_driver_;
};

ScriptedFabric* scripted = nullptr;
std::unique_ptr<keel::cluster::Fabric> make_scripted(keel::cluster::Waker& w, const keel::ClusterOptions&) {
  auto f = std::make_unique<ScriptedFabric>(w);
  scripted = f.get();
  return f;
}

Message ready(unsigned capacity) {
  Message m;
  m.kind = Kind::ready;
  m.capacity = capacity;
  m.text = "scripted";
  return m;
}
Message task_msg(Kind k, std::uint64_t task, std::uint64_t gen) {
  Message m;
  m.kind = k;
  m.task = task;
  m.gen = gen;
  return m;
}

// Both nodes are told to close, say closed, and the supervisor ends.
void close_both(ScriptedFabric& f, keel::detail::ClusterDriver& d) {
  f.expect(0, Kind::close);
  f.expect(1, Kind::close);
  f.node_says(0, Message{Kind::closed});
  f.node_says(1, Message{Kind::closed});
  EXPECT_TRUE(d.wait_terminated(keel::platform::Deadline::after(5s)));
}

keel::detail::PoolCallPtr call_of(keel::Future<int>& out, int arg) {
  auto c = keel::detail::new_call<int>();
  c->set_payload(cd_square_t.name(), keel::detail::encode_args<int>(arg));
  out = c->future();
  return c;
}

TEST(ClusterDriver, AClaimThatCrossedAWithdrawIsDroppedAndTheTaskRunsOnceElsewhere) {
  keel::ClusterOptions o;
  o.ahead = 1;
  keel::detail::ClusterDriver d(o, &make_scripted);
  ScriptedFabric& f = *scripted;
  f.expect(0, Kind::open);
  f.expect(1, Kind::open);
  f.node_says(0, ready(1));
  // t1 takes node 0's worker.
  keel::Future<int> f1, f2;
  d.submit(call_of(f1, 3), std::nullopt);
  const Message o1 = f.expect(0, Kind::offer);
  f.node_says(0, task_msg(Kind::claim, o1.task, o1.gen));
  f.expect(0, Kind::go);
  // t2 is offered ahead to node 0, behind t1.
  d.submit(call_of(f2, 4), std::nullopt);
  const Message o2 = f.expect(0, Kind::offer);
  // Node 1 comes up idle: t2 is withdrawn from node 0 and offered to node 1.
  f.node_says(1, ready(1));
  const Message w = f.expect(0, Kind::withdraw);
  EXPECT_EQ(w.task, o2.task);
  EXPECT_EQ(w.gen, o2.gen);
  const Message o2b = f.expect(1, Kind::offer);
  EXPECT_EQ(o2b.task, o2.task);
  EXPECT_NE(o2b.gen, o2.gen) << "a new offer";
  // Node 0's claim of the old offer crossed the withdraw: dropped, not run.
  f.node_says(0, task_msg(Kind::claim, o2.task, o2.gen));
  const Message drop = f.expect(0, Kind::drop);
  EXPECT_EQ(drop.gen, o2.gen);
  f.node_says(1, task_msg(Kind::claim, o2b.task, o2b.gen));
  const Message go = f.expect(1, Kind::go);
  EXPECT_EQ(go.gen, o2b.gen);
  EXPECT_TRUE(keel_test::eventually([&] { return f2.running(); }));
  Message ans;
  ans.kind = Kind::answer;
  ans.task = o2b.task;
  ans.ok = true;
  ans.text = keel::encode(16);
  f.node_says(1, ans);
  EXPECT_EQ(f2.result(), 16);
  ans.task = o1.task;
  ans.text = keel::encode(9);
  f.node_says(0, ans);
  EXPECT_EQ(f1.result(), 9);
  d.shutdown(false);
  close_both(f, d);
  EXPECT_EQ(d.stats().moved, 1u);
}

TEST(ClusterDriver, AStaleClaimOfAnOfferMadeAgainToTheSameNodeIsNotTakenForTheNewOne) {
  // Node 0 claims chunk t2 (first offer), but rank 0 had already moved t2 to
  // node 1; a call of t2 is cancelled, node 1's claim fails, and t2 (cut to
  // the call still wanted) is offered to node 0 again. Node 0's old claim
  // arrives only now: taking it for the new offer would run the old payload,
  // cancelled call and all. It is dropped; the new offer runs.
  keel::ClusterOptions o;
  o.ahead = 1;
  keel::detail::ClusterDriver d(o, &make_scripted);
  ScriptedFabric& f = *scripted;
  f.node_says(0, ready(1));
  keel::Future<int> f1;
  d.submit(call_of(f1, 3), std::nullopt);
  const Message o1 = f.expect(0, Kind::offer);
  f.node_says(0, task_msg(Kind::claim, o1.task, o1.gen));
  f.expect(0, Kind::go);
  std::vector<int> in{5, 6};
  auto chunk = keel::detail::submit_chunks(cd_square_t, in, 2, "test", [&](keel::detail::PoolCallPtr c) {
                 d.submit(std::move(c), std::nullopt);
               }).split();  // each call's own future, split once the chunk was offered to node 0
  const Message g1 = f.expect(0, Kind::offer);
  f.node_says(1, ready(1));
  f.expect(0, Kind::withdraw);
  const Message g2 = f.expect(1, Kind::offer);
  EXPECT_TRUE(chunk[0].cancel());
  Message ans;
  ans.kind = Kind::answer;
  ans.task = o1.task;
  ans.ok = true;
  ans.text = keel::encode(9);
  f.node_says(0, ans);  // node 0 is free now ...
  EXPECT_EQ(f1.result(), 9);
  f.node_says(1, task_msg(Kind::claim, g2.task, g2.gen));  // ... node 1's claim loses to the cancel
  f.expect(1, Kind::drop);
  const Message g3 = f.expect(0, Kind::offer);  // t2 again, to node 0, cut
  EXPECT_NE(g3.gen, g1.gen);
  EXPECT_LT(g3.text.size(), g1.text.size()) << "the cancelled call was cut from the payload";
  f.node_says(0, task_msg(Kind::claim, g1.task, g1.gen));  // the stale claim
  const Message drop = f.expect(0, Kind::drop);
  EXPECT_EQ(drop.gen, g1.gen);
  f.node_says(0, task_msg(Kind::claim, g3.task, g3.gen));
  const Message go = f.expect(0, Kind::go);
  EXPECT_EQ(go.gen, g3.gen);
  ans.task = g3.task;
  ans.text = keel::encode(std::vector<std::pair<bool, std::string>>{{true, keel::encode(36)}});
  f.node_says(0, ans);
  EXPECT_EQ(chunk[1].result(), 36);
  EXPECT_TRUE(chunk[0].cancelled());
  d.shutdown(false);
  close_both(f, d);
}

TEST(ClusterDriver, ACancelBeforeTheClaimWinsAndTheNodeIsToldToDrop) {
  keel::detail::ClusterDriver d(keel::ClusterOptions{}, &make_scripted);
  ScriptedFabric& f = *scripted;
  f.node_says(0, ready(1));
  f.node_says(1, ready(1));
  keel::Future<int> fut;
  d.submit(call_of(fut, 5), std::nullopt);
  Message o;
  for (;;) {
    auto m = f.next();
    ASSERT_TRUE(m.has_value());
    if (m->second.kind == Kind::offer) {
      o = m->second;
      break;
    }
  }
  const unsigned node = 0;  // ties go to the lowest node
  EXPECT_TRUE(fut.cancel()) << "offered, not let run: cancel wins";
  f.node_says(node, task_msg(Kind::claim, o.task, o.gen));
  const Message drop = f.expect(node, Kind::drop);
  EXPECT_EQ(drop.task, o.task);
  EXPECT_TRUE(fut.cancelled());
  d.terminate();
  close_both(f, d);
}

TEST(ClusterDriver, AMalformedMessageFromANodeBreaksTheClusterWithItsName) {
  keel::detail::ClusterDriver d(keel::ClusterOptions{}, &make_scripted);
  ScriptedFabric& f = *scripted;
  keel::Future<int> fut;
  d.submit(call_of(fut, 5), std::nullopt);
  Message m;
  m.kind = Kind::ready;
  m.capacity = 1;
  std::string bytes = keel::cluster::proto::encode(m);
  bytes.resize(bytes.size() - 1);  // truncated
  f.node_sends_raw(1, bytes);
  try {
    (void)fut.result();
    FAIL();
  } catch (const keel::BrokenProcessPool& e) {
    EXPECT_NE(std::string(e.what()).find("scripted node 1 sent a malformed message"), std::string::npos) << e.what();
  }
  EXPECT_THROW(d.submit(call_of(fut, 1), std::nullopt), keel::BrokenProcessPool);
  close_both(f, d);
}

// The next message of `kind` to `node` (others skipped), for code that runs
// outside a test (a child process): nothing within the hang limit throws.
Message cd_next_of(ScriptedFabric& f, unsigned node, Kind kind) {
  const auto end = std::chrono::steady_clock::now() + keel_test::hang_limit;
  while (std::chrono::steady_clock::now() < end) {
    if (auto m = f.next(100ms); m && m->first == node && m->second.kind == kind) return m->second;
  }
  throw std::runtime_error("no message of kind " + std::to_string(static_cast<int>(kind)) + " to node " +
                           std::to_string(node));
}

// Claims of offers a node was never made, in the process this runs in
// (a child: a supervisor that read one past a task's offer table would
// crash it). Throws on a wrong answer.
void cd_claims_of_offers_never_made() {
  keel::detail::ClusterDriver d(keel::ClusterOptions{}, &make_scripted);
  ScriptedFabric& f = *scripted;
  keel::Future<int> fut;
  d.submit(call_of(fut, 5), std::nullopt);
  // Task 1 is taken in, and waits: no node is ready, so it was never offered.
  if (!keel_test::eventually([&] { return d.stats().submitted == 1; })) throw std::runtime_error("not taken in");
  // Offer numbers start at 2: a claim numbered 0 names no offer.
  f.node_says(0, task_msg(Kind::claim, 1, 0));
  if (const Message m = cd_next_of(f, 0, Kind::drop); m.task != 1 || m.gen != 0) throw std::runtime_error("drop 1");
  // Offered to node 0; node 1 claims it by that offer's number.
  f.node_says(0, ready(1));
  const Message o = cd_next_of(f, 0, Kind::offer);
  f.node_says(1, task_msg(Kind::claim, o.task, o.gen));
  if (const Message m = cd_next_of(f, 1, Kind::drop); m.task != o.task) throw std::runtime_error("drop 2");
  f.node_says(0, task_msg(Kind::claim, o.task, o.gen));
  if (const Message m = cd_next_of(f, 0, Kind::go); m.gen != o.gen) throw std::runtime_error("go");
  Message ans;
  ans.kind = Kind::answer;
  ans.task = o.task;
  ans.ok = true;
  ans.text = keel::encode(25);
  f.node_says(0, ans);
  if (fut.result(keel_test::hang_limit) != 25) throw std::runtime_error("the result");
  d.shutdown(false);
  (void)cd_next_of(f, 0, Kind::close);
  (void)cd_next_of(f, 1, Kind::close);
  f.node_says(0, Message{Kind::closed});
  f.node_says(1, Message{Kind::closed});
  if (!d.wait_terminated(keel::platform::Deadline::after(keel_test::hang_limit))) throw std::runtime_error("the end");
}
inline const auto cd_claims_of_offers_never_made_t =
    keel::register_task("cd.claims_of_offers_never_made", cd_claims_of_offers_never_made);

TEST(ClusterDriver, AClaimOfAnOfferTheNodeWasNeverMadeIsDropped) {
  keel::Process p(cd_claims_of_offers_never_made_t);
  p.start();
  ASSERT_TRUE(keel_test::joined_within(p)) << "the child never ended";
  EXPECT_EQ(p.exitcode().value_or(-2000), 0) << "1: a wrong answer (on its stderr); < 0: killed by a signal";
}

TEST(ClusterDriver, UnderAnMpiWorldAPoolTakesItsNodesFromItAndRefusesLocalNodes) {
  // cluster::init sets the world; a scripted fabric stands in for MPI here.
  keel::detail::set_cluster_world(&make_scripted);
  struct NoWorld {
    ~NoWorld() { keel::detail::set_cluster_world(nullptr); }
  } no_world;
  keel::ClusterOptions o;
  o.local_nodes = 1;
  EXPECT_THROW({ keel::ClusterPool refused(o); }, keel::ValueError);
  o.local_nodes = 0;
  std::optional<keel::ClusterPool> pool;
  ASSERT_NO_THROW(pool.emplace(o));
  EXPECT_EQ(pool->nodes(), 2u);
  ScriptedFabric& f = *scripted;
  f.expect(0, Kind::open);
  f.expect(1, Kind::open);
  pool->shutdown({.wait = false});
  f.expect(0, Kind::close);
  f.expect(1, Kind::close);
  f.node_says(0, Message{Kind::closed});
  f.node_says(1, Message{Kind::closed});
  EXPECT_TRUE(pool->await_termination(keel_test::hang_limit));
}

TEST(ClusterProtocol, EveryFailureKindRoundTripsAndNoOtherByteDecodes) {
  using keel::cluster::proto::Error;
  for (int e = static_cast<int>(Error::lost); e <= static_cast<int>(Error::other); ++e) {
    Message m;
    m.kind = Kind::failure;
    m.task = 9;
    m.error = static_cast<Error>(e);
    m.text = "why";
    const Message back = keel::cluster::proto::decode(keel::cluster::proto::encode(m));
    EXPECT_EQ(back.error, m.error) << "kind " << e;
  }
  for (int e : {0, static_cast<int>(Error::other) + 1, 255}) {
    Message m;
    m.kind = Kind::failure;
    m.error = static_cast<Error>(e);
    EXPECT_THROW(keel::cluster::proto::decode(keel::cluster::proto::encode(m)), keel::ProtocolError) << "kind " << e;
  }
}

TEST(ClusterProtocol, EveryMessageRoundTripsAndBadBytesAreProtocolErrors) {
  for (int k = static_cast<int>(Kind::open); k <= static_cast<int>(Kind::finish); ++k) {
    Message m;
    m.kind = static_cast<Kind>(k);
    m.task = 77;
    m.gen = 12;
    m.text = "payload";
    m.capacity = 3;
    m.error = keel::cluster::proto::Error::lost;
    m.stats.workers = 2;
    m.stats.pids = {101, 202};  // a node's snapshot keeps its pids (POOL-12 on rank 0)
    const std::string b = keel::cluster::proto::encode(m);
    const Message back = keel::cluster::proto::decode(b);
    EXPECT_EQ(back.kind, m.kind);
    if (m.kind == Kind::stats) {
      EXPECT_EQ(back.stats.workers, 2u);
      EXPECT_EQ(back.stats.pids, m.stats.pids);
    }
    EXPECT_EQ(keel::cluster::proto::encode(back), b) << "canonical, kind " << k;
    if (b.size() > 1) {
      EXPECT_THROW(keel::cluster::proto::decode(b.substr(0, b.size() - 1)), keel::ProtocolError) << "kind " << k;
    }
    EXPECT_THROW(keel::cluster::proto::decode(b + "x"), keel::ProtocolError) << "kind " << k;
  }
  EXPECT_THROW(keel::cluster::proto::decode(""), keel::ProtocolError);
  EXPECT_THROW(keel::cluster::proto::decode(std::string(1, '\0')), keel::ProtocolError);
  EXPECT_THROW(keel::cluster::proto::decode(std::string(1, '\x7f')), keel::ProtocolError);
}

}  // namespace
