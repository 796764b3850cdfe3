// keel::pool::Edge. See edge.hpp.
#include "edge.hpp"

#include "keel/error.hpp"

namespace keel::pool {

void Edge::set_bound(const Bound& b) {
  LockGuard<Mutex> g(m_);
  bound_ = b;
}

void Edge::push(const Command& c) {
  inbox_.push_back(c);
  if (c.kind == Command::submit) ++inbox_submits_;
}

std::size_t Edge::waiting_locked() const { return queued_ + inbox_submits_; }

bool Edge::has_room() const { return bound_.capacity == 0 || waiting_locked() < bound_.capacity; }

Admission Edge::submit(Nanos timeout, void* payload, bool may_block) {
  bool ring = false;
  Admission a;
  {
    LockGuard<Mutex> g(m_);
    // The deadline of a block is taken at the first wait, not before: a
    // submission that finds room never reads the clock.
    bool waited = false;
    bool timed_out = false;
    platform::Deadline deadline = platform::Deadline::never();
    bool evict = false;
    for (;;) {
      if (KEEL_INJECTED(pool_edge_blocked_skips_recheck)) {
        if (waited) break;  // the mistake: taking a wake-up for room, whatever woke it
      }
      if (broken_) throw BrokenProcessPool(broken_message_);
      if (closed_ && !KEEL_INJECTED(pool_edge_submit_after_close)) {
        ++rejected_;
        throw RejectedError(RejectedError::Reason::shutdown, "ProcessPool: cannot submit after shutdown");
      }
      if (has_room()) break;
      if (bound_.policy == RejectPolicy::block) {
        if (timed_out) {
          ++rejected_;
          throw RejectedError(RejectedError::Reason::timed_out,
                              "ProcessPool: no room in the queue before the block timeout");
        }
        if (!may_block) {
          throw MisuseError(
              "ProcessPool: a submission that must wait for room (RejectPolicy::block) from the supervisor "
              "thread (a done callback) would wait for itself");
        }
        if (!waited) deadline = platform::Deadline::after(bound_.block_timeout);
        waited = true;
        // Wait for room, a shutdown or a break, then look again; once the
        // timeout has passed, the look after it is the last.
        ++blocked_;
        timed_out = !room_.wait_deadline(deadline);
        --blocked_;
        continue;
      }
      ++rejected_;
      switch (bound_.policy) {
        case RejectPolicy::caller_runs:
          return Admission{Admission::run_here, 0};
        case RejectPolicy::discard:
          return Admission{Admission::discard, 0};
        case RejectPolicy::discard_oldest:
          evict = true;
          break;
        default:
          if (bound_.handler) return Admission{Admission::handle, 0};
          throw RejectedError(
              RejectedError::Reason::saturated,
              "ProcessPool: the queue is full (queue_capacity " + std::to_string(bound_.capacity) + " tasks waiting)");
      }
      break;
    }
    ring = inbox_.empty();
    if (KEEL_INJECTED(pool_edge_ring_when_nonempty)) ring = !ring;
    if (evict) {
      // Before the submit: it reaches the machine after every earlier submit.
      Command d;
      d.kind = Command::discard_oldest;
      push(d);
    }
    a.task = next_id_++;
    Command c;
    c.kind = Command::submit;
    c.task = a.task;
    c.timeout = timeout;
    c.payload = payload;
    push(c);
  }
  // Rung outside the lock: the bell is a level (a counter), so a supervisor
  // that takes the command before the ring lands only wakes once for nothing.
  if (ring) bell_.ring();
  return a;
}

void Edge::expire() {
  LockGuard<Mutex> g(m_);
  if (broken_) throw BrokenProcessPool(broken_message_);
  if (closed_) {
    ++rejected_;
    throw RejectedError(RejectedError::Reason::shutdown, "ProcessPool: cannot submit after shutdown");
  }
  ++expired_;
}

void Edge::request(const Command& c) {
  bool ring = false;
  if (KEEL_INJECTED(pool_edge_closes_after_command)) {
    // The old order: the supervisor may take the command, and a future may
    // say cancelled by shutdown, before submit refuses.
    {
      LockGuard<Mutex> g(m_);
      ring = inbox_.empty();
      push(c);
    }
    if (ring) bell_.ring();
    ring = false;
  }
  {
    LockGuard<Mutex> g(m_);
    // Closed before the command is queued: no future can say cancelled by
    // this shutdown while submit still accepts (POOL-11).
    closed_ = true;
    if (!KEEL_INJECTED(pool_edge_closes_after_command)) {
      ring = inbox_.empty();
      push(c);
    }
    // Every blocked submitter looks again and is refused: each one woken
    // leaves with its error and wakes nobody, so a wake of one would strand
    // the others.
    if (KEEL_INJECTED(pool_edge_close_wakes_one)) {
      room_.notify(1);
    } else if (!KEEL_INJECTED(pool_edge_close_not_notified)) {
      room_.notify_all();
    }
  }
  if (ring) bell_.ring();
}

void Edge::take(std::vector<Command>& out) {
  LockGuard<Mutex> g(m_);
  // What leaves the inbox is in the machine now: counted as queued until the
  // supervisor's next report says how many still are.
  if (!KEEL_INJECTED(pool_edge_take_uncounted)) queued_ += inbox_submits_;
  inbox_submits_ = 0;
  if (out.empty()) {
    out.swap(inbox_);
  } else {
    out.insert(out.end(), inbox_.begin(), inbox_.end());
    inbox_.clear();
  }
}

void Edge::set_queued(std::size_t n) {
  LockGuard<Mutex> g(m_);
  queued_ = n;
  if (blocked_ > 0 && has_room()) {
    if (!KEEL_INJECTED(pool_edge_room_not_notified)) room_.notify_all();
  }
}

void Edge::set_broken(std::string message) {
  LockGuard<Mutex> g(m_);
  broken_ = true;
  closed_ = true;
  broken_message_ = std::move(message);
  // Every blocked submitter, as for a shutdown (see request()).
  if (KEEL_INJECTED(pool_edge_break_wakes_one)) {
    room_.notify(1);
  } else if (!KEEL_INJECTED(pool_edge_break_not_notified)) {
    room_.notify_all();
  }
}

std::optional<std::string> Edge::broken_message() const {
  LockGuard<Mutex> g(m_);
  if (!broken_) return std::nullopt;
  return broken_message_;
}

bool Edge::closed() const {
  LockGuard<Mutex> g(m_);
  return closed_;
}

std::size_t Edge::waiting() const {
  LockGuard<Mutex> g(m_);
  return waiting_locked();
}

std::size_t Edge::blocked() const {
  LockGuard<Mutex> g(m_);
  return blocked_;
}

std::uint64_t Edge::expired() const {
  LockGuard<Mutex> g(m_);
  return expired_;
}

std::uint64_t Edge::rejected() const {
  LockGuard<Mutex> g(m_);
  return rejected_;
}

bool Edge::wait_terminated(const platform::Deadline& d) {
  if (d.is_never()) {
    terminated_.wait();
    return true;
  }
  return terminated_.wait_until(d.point());
}

}  // namespace keel::pool
