// keel::cluster transports: how rank 0's driver reaches its nodes (a
// Fabric) and how a node agent reaches rank 0 (an Endpoint), as queues of
// whole messages. Two kinds: MPI ranks (kernel/src/cluster/mpi/, the only
// code that calls MPI) and in-process nodes (the loopback below: nodes that
// are threads of this process, for ClusterOptions::local_nodes, for rank 0
// as a node, and for tests without mpirun).
//
// Contract: send never blocks (it queues); receive never blocks (false:
// nothing now); messages between two ends arrive whole, once, in the order
// sent. idle() sleeps until a message may have arrived, the Waker rang (the
// owner has local work: a submission, a task's answer), or `max` passed;
// a transport that cannot be woken by arrivals (MPI) sleeps at most `max`,
// so its owner polls without spinning a core.
//
// Invariants: CLUSTER-7 (one thread per process drives MPI; nothing spins).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "keel/sync/condition.hpp"
#include "keel/sync/mutex.hpp"

namespace keel::cluster {

using Nanos = std::chrono::nanoseconds;

// A doorbell one thread sleeps on and any thread rings. A ring while nobody
// sleeps is kept until the next sleep.
class Waker {
 public:
  void ring() {
    LockGuard<Mutex> g(m_);
    rung_ = true;
    cv_.notify_all();
  }
  // Sleeps until rung or `max` passed; clears the ring.
  void sleep(Nanos max) {
    LockGuard<Mutex> g(m_);
    if (!rung_ && max > Nanos::zero()) (void)cv_.wait_for(max);
    rung_ = false;
  }

 private:
  Mutex m_;
  Condition cv_{m_};
  bool rung_ KEEL_GUARDED_BY(m_) = false;
};

// A node's line to rank 0. Its Waker is the node agent's: arrivals ring it
// where the transport can (in-process), and so does the agent's local pool.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual void send(std::string bytes) = 0;
  virtual bool receive(std::string& bytes) = 0;
  virtual void idle(Nanos max) = 0;
  Waker& waker() { return waker_; }

 protected:
  Waker waker_;
};

class Fabric {
 public:
  virtual ~Fabric() = default;
  virtual unsigned nodes() const = 0;
  // Where node n is: "rank 2", "local node 1"; the agent adds host and pid.
  virtual std::string where(unsigned node) const = 0;
  virtual void send(unsigned node, std::string bytes) = 0;
  virtual bool receive(unsigned& node, std::string& bytes) = 0;
  virtual void idle(Waker& w, Nanos max) = 0;
  // Every node closed its pool: stop what this fabric runs (local agent
  // threads). Sends are complete when it returns.
  virtual void finish() = 0;
};

// One direction of an in-process line: a locked queue whose pushes ring the
// reader's Waker.
class Mailbox {
 public:
  explicit Mailbox(Waker& reader) : reader_(reader) {}
  void push(std::string bytes) {
    {
      LockGuard<Mutex> g(m_);
      q_.push_back(std::move(bytes));
    }
    reader_.ring();
  }
  bool pop(std::string& out) {
    LockGuard<Mutex> g(m_);
    if (q_.empty()) return false;
    out = std::move(q_.front());
    q_.pop_front();
    return true;
  }

 private:
  Waker& reader_;
  Mutex m_;
  std::deque<std::string> q_ KEEL_GUARDED_BY(m_);
};

// Nodes that run in this process: each is a thread serving a NodeAgent on
// its Endpoint. Rank 0's Waker is rung by every node's send.
class LoopbackFabric final : public Fabric {
 public:
  LoopbackFabric(unsigned nodes, Waker& driver);
  ~LoopbackFabric() override;
  unsigned nodes() const override { return static_cast<unsigned>(lines_.size()); }
  std::string where(unsigned node) const override;
  void send(unsigned node, std::string bytes) override;
  bool receive(unsigned& node, std::string& bytes) override;
  void idle(Waker& w, Nanos max) override { w.sleep(max); }
  void finish() override;

 private:
  struct Line;
  std::vector<std::unique_ptr<Line>> lines_;
  unsigned next_ = 0;  // receive() scans from here, so no node starves another
};

}  // namespace keel::cluster
