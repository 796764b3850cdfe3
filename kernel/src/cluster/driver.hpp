// keel::detail::ClusterDriver: the ClusterPool's supervisor on rank 0
// (private to kernel/src/cluster).
//
// One thread owns the cluster::Machine, the call records and the Fabric (so
// all MPI calls of rank 0 are made by it). Each turn it takes submissions
// and commands from the pool's callers, reads every message the nodes sent,
// feeds them to the machine as events, carries out the actions (sends,
// resolutions) and, when nothing happened, sleeps on its Waker for a poll
// interval that doubles up to idle_poll. It is the Gate: a task's start slot
// is a word here, which the user's cancel() and the node's claim race for.
//
// Invariants: CLUSTER-1 (each call is resolved once, then erased),
// CLUSTER-2 (the gate), CLUSTER-6 (the break reaches submitters before
// any future reports it), CLUSTER-7 (one thread drives the fabric).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "keel/cluster/cluster_pool.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/thread.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/mutex.hpp"
#include "machine.hpp"
#include "protocol.hpp"
#include "transport.hpp"

namespace keel::detail {

// Whether the calling thread is a ClusterPool's supervisor (done callbacks
// run there and must not wait for the pool).
bool on_cluster_supervisor() noexcept;

using FabricFactory = std::unique_ptr<cluster::Fabric> (*)(cluster::Waker& driver, const ClusterOptions& o);
// Set by keel::cluster::init (the MPI world); null without it.
void set_cluster_world(FabricFactory f) noexcept;
FabricFactory cluster_world() noexcept;
// The nodes serve one pool at a time: a ClusterPool claims them before it
// starts anything (false: another pool is open) and releases them once its
// supervisor has ended. Both go through the lock that also guards the world
// and the live driver, so a pool opened on another thread after one closed
// sees everything the closed pool's supervisor did (its MPI calls included).
bool claim_cluster() noexcept;
void release_cluster() noexcept;
// At rank 0's exit (cluster::init's handler): terminates the open pool, if
// any, and waits until its supervisor has stopped calling MPI.
void terminate_live_cluster();

class ClusterDriver final : public cluster::Gate {
 public:
  ClusterDriver(const ClusterOptions& o, FabricFactory world);
  ~ClusterDriver();
  ClusterDriver(const ClusterDriver&) = delete;
  ClusterDriver& operator=(const ClusterDriver&) = delete;

  unsigned nodes() const { return nodes_; }
  // Queues a call: throws BrokenProcessPool once the cluster broke,
  // RejectedError(shutdown) after shutdown or terminate.
  void submit(PoolCallPtr call, std::optional<std::int64_t> timeout_ns);
  void shutdown(bool cancel_futures);
  void terminate();
  bool wait_terminated(const platform::Deadline& d);
  void join();
  ClusterStats stats() const;

  // Gate.
  bool arm(cluster::TaskId t, cluster::NodeId n) override;
  Start start(cluster::TaskId t, cluster::NodeId n) override;
  void revoke(cluster::TaskId t, cluster::NodeId n) override;

 private:
  struct Record {
    PoolCallPtr call;
    std::optional<std::int64_t> timeout_ns;
    std::unique_ptr<platform::Atomic<std::uint64_t>> word = std::make_unique<platform::Atomic<std::uint64_t>>(0);
    std::uint64_t gen = 0;  // the slot's current `sent` value (and offer, from 2 up); gen + 1 is dead
    // Per node, the offer it was last made of this task (0: none): what a
    // withdraw names.
    std::vector<std::uint64_t> offer_to;
  };
  struct NodeInfo {
    std::string name;
    unsigned capacity = 0;
    ProcessPoolStats local{};
  };
  enum class Refuse : std::uint8_t { no, shutdown, broken };

  void run();
  bool take_commands();
  void handle(cluster::NodeId n, const std::string& bytes);
  void apply();
  void resolve(const cluster::Action& a);
  void publish();
  void tell_broken();
  std::string broken_message() const;
  std::exception_ptr failure(cluster::NodeId n, const cluster::proto::Message& m) const;
  Record* record(cluster::TaskId t) {
    auto it = calls_.find(t);
    return it == calls_.end() ? nullptr : &it->second;
  }

  ClusterOptions opts_;
  cluster::Waker waker_;
  std::unique_ptr<cluster::Fabric> fabric_;
  unsigned nodes_ = 0;
  std::unique_ptr<cluster::Machine> machine_;
  std::unordered_map<cluster::TaskId, Record> calls_;
  std::vector<NodeInfo> info_;
  std::string broken_text_;  // why the cluster broke
  // The answer being handled: resolve(answered) settles its call with it.
  struct Answer {
    bool ok = false;
    std::string bytes{};
    std::exception_ptr error{};
  };
  Answer answer_;
  std::uint64_t claim_gen_ = 0;  // the offer named by the claim being handled (go and drop answer it)
  cluster::TaskId next_id_ = 1;  // the supervisor's; ids are given at take_commands

  mutable Mutex m_;
  Condition done_cv_{m_};
  std::vector<Record> inbox_ KEEL_GUARDED_BY(m_);
  Refuse refuse_ KEEL_GUARDED_BY(m_) = Refuse::no;
  std::string refuse_text_ KEEL_GUARDED_BY(m_);
  bool want_shutdown_ KEEL_GUARDED_BY(m_) = false;
  bool want_cancel_ KEEL_GUARDED_BY(m_) = false;
  bool want_terminate_ KEEL_GUARDED_BY(m_) = false;
  bool done_ KEEL_GUARDED_BY(m_) = false;
  ClusterStats stats_ KEEL_GUARDED_BY(m_);

  Mutex join_m_;
  platform::Thread thread_;
};

}  // namespace keel::detail
