// keel::cluster::serve_node. See node_agent.hpp.
#include "node_agent.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <utility>

#include "keel/error.hpp"
#include "keel/platform/clock.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "protocol.hpp"

namespace keel::detail {

// The node agent hands its local pool calls it built itself (RawCall).
struct PoolAccess {
  static void enqueue(ProcessPool& p, PoolCallPtr c, std::optional<std::chrono::nanoseconds> t) {
    p.enqueue(std::move(c), t);
  }
};

}  // namespace keel::detail

namespace keel::cluster {

namespace {

using proto::Kind;
using proto::Message;

// What the local pool said about tasks, on its supervisor thread, for the
// agent's thread to forward.
class Outbox {
 public:
  explicit Outbox(Waker& w) : w_(w) {}
  void push(Message m) {
    {
      LockGuard<Mutex> g(m_);
      q_.push_back(std::move(m));
    }
    w_.ring();
  }
  std::deque<Message> take() {
    LockGuard<Mutex> g(m_);
    std::deque<Message> out;
    out.swap(q_);
    return out;
  }

 private:
  Waker& w_;
  Mutex m_;
  std::deque<Message> q_ KEEL_GUARDED_BY(m_);
};

Message failure_of(std::uint64_t task, const std::exception_ptr& e) {
  Message m;
  m.kind = Kind::failure;
  m.task = task;
  try {
    std::rethrow_exception(e);
  } catch (const WorkerLost& x) {
    m.error = proto::Error::lost;
    m.pid = x.pid();
    m.code = x.exit_code();
    m.text = detail::what_of(x);
  } catch (const TimeoutError& x) {
    m.error = proto::Error::timed_out;
    m.text = detail::what_of(x);
  } catch (const BrokenProcessPool& x) {
    m.error = proto::Error::broken;
    m.text = detail::what_of(x);
  } catch (const CancelledError& x) {
    m.error = proto::Error::cancelled;
    m.text = detail::what_of(x);
  } catch (const std::exception& x) {
    m.error = proto::Error::other;
    m.text = detail::what_of(x);
  } catch (...) {
    m.error = proto::Error::other;
    m.text = "an exception that is not a std::exception";
  }
  return m;
}

// One task rank 0 let this node run, as its local pool sees it: the answer
// goes to the outbox as it is, undecoded (rank 0 decodes it for its future).
class RawCall final : public detail::PoolCall {
 public:
  RawCall(std::shared_ptr<Outbox> out, std::uint64_t task, std::string payload)
      : out_(std::move(out)), task_(task), payload_(std::move(payload)) {}
  bool dispatch(const StartSlot& slot) override { return detail::state_of(future_)->dispatch(slot); }
  bool undispatch() override { return detail::state_of(future_)->undispatch(); }
  bool start_here() override { return promise_.set_running_or_notify_cancel(); }
  void complete(bool ok, std::string_view bytes) override {
    (void)undispatch();
    Message m;
    m.kind = Kind::answer;
    m.task = task_;
    m.ok = ok;
    m.text = std::string(bytes);
    out_->push(std::move(m));
    try {
      promise_.set_result(0);
    } catch (const InvalidStateError&) {
    }
  }
  void fail(std::exception_ptr e) override {
    (void)undispatch();
    out_->push(failure_of(task_, e));
    detail::settle(promise_, e);
  }
  void cancel() override {
    (void)undispatch();
    (void)future_.cancel();
    out_->push(failure_of(task_, std::make_exception_ptr(CancelledError("cancelled on its node before it started"))));
  }
  void discard() noexcept override { delete this; }
  std::string_view payload() const noexcept override { return payload_; }

 private:
  std::shared_ptr<Outbox> out_;
  std::uint64_t task_;
  std::string payload_;
  Promise<int> promise_;
  Future<int> future_ = promise_.get_future();
};

struct Offer {
  std::uint64_t task = 0;
  std::uint64_t gen = 0;
  bool chunk = false;
  std::optional<std::int64_t> timeout_ns{};
  std::string payload{};
};

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

class Agent {
 public:
  Agent(Endpoint& ep, std::string where, bool one_pool)
      : ep_(ep), where_(std::move(where)), one_pool_(one_pool), out_(std::make_shared<Outbox>(ep.waker())) {}

  void run() {
    const Nanos min_poll = std::chrono::microseconds(20);
    Nanos poll = min_poll;
    for (;;) {
      bool busy = false;
      std::string bytes;
      while (!done_ && ep_.receive(bytes)) {
        busy = true;
        handle(bytes);
      }
      if (done_) return;
      busy = forward() || busy;
      if (pool_ && !said_broken_) {
        // A pool can break with no task in it (its initializer failed).
        if (auto why = pool_->broken()) say_broken(*why);
      }
      busy = claim() || busy;
      report_stats(false);
      if (busy) {
        poll = min_poll;
      } else {
        ep_.idle(poll);
        poll = std::min(poll * 2, max_poll_);
      }
    }
  }

 private:
  void send(const Message& m) { ep_.send(proto::encode(m)); }

  void handle(const std::string& bytes) {
    Message m;
    try {
      m = proto::decode(bytes);
    } catch (const Error& e) {
      // Rank 0 speaks the same protocol; a message that does not decode means
      // this node cannot trust what it holds: it stops serving this pool.
      std::fprintf(stderr, "keel cluster (%s): a message from rank 0 is malformed: %s\n", where_.c_str(), e.what());
      say_broken(std::string("a message from rank 0 was malformed: ") + e.what());
      return;
    }
    switch (m.kind) {
      case Kind::open:
        open(m.options);
        break;
      case Kind::offer:
        offers_.push_back(Offer{m.task, m.gen, m.chunk, m.timeout_ns, std::move(m.text)});
        break;
      case Kind::withdraw:
        offers_.erase(std::remove_if(offers_.begin(), offers_.end(),
                                     [&](const Offer& o) { return o.task == m.task && o.gen == m.gen; }),
                      offers_.end());
        break;
      case Kind::go:
        go(m.task, m.gen);
        break;
      case Kind::drop:
        claimed_.erase({m.task, m.gen});
        break;
      case Kind::terminate:
        if (pool_) pool_->terminate_workers();
        break;
      case Kind::close:
        close();
        if (one_pool_) done_ = true;
        break;
      case Kind::finish:
        if (pool_) close();
        done_ = true;
        break;
      default:
        say_broken("rank 0 sent a message only a node sends");
        break;
    }
  }

  void open(const ClusterOptions& c) {
    ProcessPoolOptions o;
    o.workers = c.workers_per_node;
    o.max_tasks_per_child = c.max_tasks_per_child;
    o.retries = c.retries;
    o.restart_limit = c.restart_limit;
    o.restart_window = c.restart_window;
    o.task_timeout = c.task_timeout;
    o.initializer = c.initializer;
    o.max_message = c.max_message;
    o.terminate_grace = c.terminate_grace;
    o.spare_workers = c.spare_workers;
    max_poll_ = c.idle_poll > Nanos::zero() ? c.idle_poll : std::chrono::milliseconds(2);
    said_broken_ = false;
    try {
      pool_ = std::make_unique<ProcessPool>(o);
    } catch (const std::exception& e) {
      Message m;
      m.kind = Kind::open_failed;
      m.text = where_ + ": " + detail::what_of(e);
      send(m);
      return;
    }
    Message m;
    m.kind = Kind::ready;
    m.capacity = pool_->workers();
    m.pid = static_cast<std::int32_t>(::getpid());
    m.text = where_ + " on " + host_name() + " (pid " + std::to_string(::getpid()) + ")";
    send(m);
  }

  // Rank 0 let `task` run: it goes to the local pool now, which has a free
  // worker for it (this node claimed it only then).
  void go(std::uint64_t task, std::uint64_t gen) {
    auto it = claimed_.find({task, gen});
    if (it == claimed_.end()) return;  // never claimed: not rank 0's to give
    Offer o = std::move(it->second);
    claimed_.erase(it);
    ++running_;
    detail::OwnedCall<RawCall> call(new RawCall(out_, task, std::move(o.payload)));
    call->chunk = o.chunk;
    try {
      if (!pool_) throw BrokenProcessPool("keel cluster: " + where_ + " has no pool open");
      // A payload must open with the task's name (ProtocolError if not).
      Decoder head(call->payload());
      (void)head.get_view(head.get<std::uint32_t>());
      std::optional<std::chrono::nanoseconds> t;
      if (o.timeout_ns) t = std::chrono::nanoseconds(*o.timeout_ns);
      detail::PoolAccess::enqueue(*pool_, std::move(call), t);
    } catch (...) {
      // Refused locally (the pool broke, a bad payload): that is its answer.
      out_->push(failure_of(task, std::current_exception()));
    }
  }

  bool forward() {
    std::deque<Message> q = out_->take();
    for (Message& m : q) {
      if (running_ > 0) --running_;
      const bool broke = m.kind == Kind::failure && m.error == proto::Error::broken;
      const std::string why = m.text;
      send(m);
      if (broke) say_broken(why);
    }
    return !q.empty();
  }

  // One claim per worker that is ready (started, initializer done) and not
  // taken: a task rank 0 lets run here goes straight to a worker, so
  // "running" on rank 0 is at most a local hand-over ahead of the start.
  bool claim() {
    if (!pool_ || offers_.empty()) return false;
    const std::size_t ready = pool_->stats().ready;
    bool any = false;
    while (!offers_.empty() && claimed_.size() + running_ < ready) {
      Offer o = std::move(offers_.front());
      offers_.pop_front();
      const std::uint64_t t = o.task;
      const std::uint64_t g = o.gen;
      claimed_.emplace(std::make_pair(t, g), std::move(o));
      ep_.send(proto::task_message(Kind::claim, t, g));
      any = true;
    }
    return any;
  }

  void report_stats(bool now) {
    if (!pool_) return;
    const auto t = platform::SteadyClock::now();
    if (!now && t - last_stats_at_ < std::chrono::milliseconds(100)) return;
    last_stats_at_ = t;
    Message m;
    m.kind = Kind::stats;
    m.stats = pool_->stats();
    send(m);
  }

  void say_broken(const std::string& why) {
    if (said_broken_) return;
    said_broken_ = true;
    Message m;
    m.kind = Kind::broken;
    m.text = where_ + ": " + why;
    send(m);
  }

  void close() {
    if (pool_) {
      if (running_ > 0) pool_->terminate_workers();
      report_stats(true);
      pool_.reset();  // shuts down and waits: every call it held was answered
    }
    (void)forward();
    offers_.clear();
    claimed_.clear();
    running_ = 0;
    send(Message{Kind::closed});
  }

  Endpoint& ep_;
  std::string where_;
  bool one_pool_;
  std::shared_ptr<Outbox> out_;
  std::unique_ptr<ProcessPool> pool_;
  std::deque<Offer> offers_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, Offer> claimed_;  // by task and offer
  std::size_t running_ = 0;
  bool done_ = false;
  bool said_broken_ = false;
  Nanos max_poll_ = std::chrono::milliseconds(2);
  std::chrono::steady_clock::time_point last_stats_at_{};
};

}  // namespace

void serve_node(Endpoint& ep, const std::string& where, bool one_pool) {
  try {
    Agent(ep, where, one_pool).run();
  } catch (const std::exception& e) {
    // Out of memory, most likely. Rank 0 breaks the cluster and ends it;
    // this node says so and stops, rather than take its process down.
    std::fprintf(stderr, "keel cluster (%s): the node agent failed: %s\n", where.c_str(), detail::what_of(e));
    try {
      Message m;
      m.kind = Kind::broken;
      m.text = where + ": the node agent failed: " + detail::what_of(e);
      ep.send(proto::encode(m));
      ep.send(proto::bare_message(Kind::closed));
    } catch (...) {
    }
  }
}

}  // namespace keel::cluster
