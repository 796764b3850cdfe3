// keel::pool::Edge. See keel/process_pool/edge.hpp.
#include "keel/process_pool/edge.hpp"

#include "keel/error.hpp"

namespace keel::pool {

TaskId Edge::submit(Nanos timeout, void* payload) {
  bool ring = false;
  TaskId id = 0;
  {
    LockGuard<Mutex> g(m_);
    if (broken_) throw BrokenProcessPool(broken_message_);
    if (closed_ && !KEEL_INJECTED(pool_edge_submit_after_close)) {
      throw RejectedError(RejectedError::Reason::shutdown, "ProcessPool: cannot submit after shutdown");
    }
    id = next_id_++;
    ring = inbox_.empty();
    if constexpr (KEEL_INJECTED(pool_edge_ring_when_nonempty)) ring = !ring;
    Command c;
    c.kind = Command::submit;
    c.task = id;
    c.timeout = timeout;
    c.payload = payload;
    inbox_.push_back(c);
  }
  // Rung outside the lock: the bell is a level (a counter), so a supervisor
  // that takes the command before the ring lands only wakes once for nothing.
  if (ring) bell_.ring();
  return id;
}

void Edge::request(const Command& c) {
  bool ring = false;
  {
    LockGuard<Mutex> g(m_);
    closed_ = true;
    ring = inbox_.empty();
    inbox_.push_back(c);
  }
  if (ring) bell_.ring();
}

void Edge::take(std::vector<Command>& out) {
  LockGuard<Mutex> g(m_);
  if (out.empty()) {
    out.swap(inbox_);
  } else {
    out.insert(out.end(), inbox_.begin(), inbox_.end());
    inbox_.clear();
  }
}

void Edge::set_broken(std::string message) {
  LockGuard<Mutex> g(m_);
  broken_ = true;
  closed_ = true;
  broken_message_ = std::move(message);
}

bool Edge::closed() const {
  LockGuard<Mutex> g(m_);
  return closed_;
}

bool Edge::wait_terminated(const platform::Deadline& d) {
  if (d.is_never()) {
    terminated_.wait();
    return true;
  }
  return terminated_.wait_until(d.point());
}

}  // namespace keel::pool
