// keel::detail::ClusterDriver. See driver.hpp.
#include "driver.hpp"

#include <algorithm>
#include <cstdio>

#include "keel/error.hpp"
#include "start_slot.hpp"

namespace keel::detail {

namespace {

thread_local bool on_supervisor = false;

using cluster::Action;
using cluster::Outcome;
using cluster::proto::Kind;
using cluster::proto::Message;

// The open pool's driver, for the exit handler; whether a pool is open; and
// the MPI world's fabric factory (set by cluster::init, read by every
// ClusterPool constructor). Never destroyed: exit handlers may read it after
// static destructors began (LIFE-5).
struct Live {
  Mutex m;
  ClusterDriver* driver KEEL_GUARDED_BY(m) = nullptr;
  bool open KEEL_GUARDED_BY(m) = false;
  FabricFactory world KEEL_GUARDED_BY(m) = nullptr;
};
Live& live() {
  static Live* l = new Live;
  return *l;
}

}  // namespace

void terminate_live_cluster() {
  ClusterDriver* d = nullptr;
  {
    LockGuard<Mutex> g(live().m);
    d = live().driver;
  }
  if (!d) return;
  d->terminate();
  (void)d->wait_terminated(platform::Deadline::never());
  d->join();
}

bool on_cluster_supervisor() noexcept { return on_supervisor; }
void set_cluster_world(FabricFactory f) noexcept {
  LockGuard<Mutex> g(live().m);
  live().world = f;
}
FabricFactory cluster_world() noexcept {
  LockGuard<Mutex> g(live().m);
  return live().world;
}
bool claim_cluster() noexcept {
  LockGuard<Mutex> g(live().m);
  if (live().open) return false;
  live().open = true;
  return true;
}
void release_cluster() noexcept {
  LockGuard<Mutex> g(live().m);
  live().open = false;
}

ClusterDriver::ClusterDriver(const ClusterOptions& o, FabricFactory factory) : opts_(o) {
  if (factory) {
    fabric_ = factory(waker_, o);
  } else {
    fabric_ = std::make_unique<cluster::LoopbackFabric>(o.local_nodes, waker_);
  }
  nodes_ = fabric_->nodes();
  if (nodes_ == 0) {
    fabric_->finish();
    throw ValueError(
        "ClusterPool: no nodes: launch with mpirun -n 2 or more, or set rank0_runs_work so rank 0 serves too");
  }
  info_.resize(nodes_);
  for (unsigned n = 0; n < nodes_; ++n) info_[n].name = fabric_->where(n);
  machine_ = std::make_unique<cluster::Machine>(cluster::MachineConfig{nodes_, o.ahead}, *this);
  {
    LockGuard<Mutex> g(m_);
    stats_.nodes.resize(nodes_);
  }
  publish();
  thread_.start([this] { run(); });
  LockGuard<Mutex> g(live().m);
  live().driver = this;
}

ClusterDriver::~ClusterDriver() {
  {
    LockGuard<Mutex> g(live().m);
    if (live().driver == this) live().driver = nullptr;
  }
  terminate();
  (void)wait_terminated(platform::Deadline::never());
  join();
}

void ClusterDriver::join() {
  LockGuard<Mutex> g(join_m_);
  if (thread_.joinable()) thread_.join();
}

void ClusterDriver::submit(PoolCallPtr call, std::optional<std::int64_t> timeout_ns) {
  {
    LockGuard<Mutex> g(m_);
    if (refuse_ == Refuse::broken) throw BrokenProcessPool(refuse_text_);
    if (refuse_ == Refuse::shutdown) {
      throw RejectedError(RejectedError::Reason::shutdown, "ClusterPool: cannot submit after shutdown");
    }
    Record r;
    r.call = std::move(call);
    r.timeout_ns = timeout_ns;
    inbox_.push_back(std::move(r));
  }
  waker_.ring();
}

void ClusterDriver::shutdown(bool cancel_futures) {
  {
    LockGuard<Mutex> g(m_);
    if (refuse_ == Refuse::no) refuse_ = Refuse::shutdown;
    want_shutdown_ = true;
    want_cancel_ = want_cancel_ || cancel_futures;
  }
  waker_.ring();
}

void ClusterDriver::terminate() {
  {
    LockGuard<Mutex> g(m_);
    if (refuse_ == Refuse::no) refuse_ = Refuse::shutdown;
    want_terminate_ = true;
  }
  waker_.ring();
}

bool ClusterDriver::wait_terminated(const platform::Deadline& d) {
  LockGuard<Mutex> g(m_);
  while (!done_) {
    if (d.is_never()) {
      done_cv_.wait();
    } else if (!done_cv_.wait_until(d.point()) && !done_) {
      return false;
    }
  }
  return true;
}

ClusterStats ClusterDriver::stats() const {
  LockGuard<Mutex> g(m_);
  return stats_;
}

// ---------------------------------------------------------------- the gate

bool ClusterDriver::arm(cluster::TaskId t, cluster::NodeId n) {
  Record* r = record(t);
  if (!r) return false;
  r->gen += 2;
  if (r->offer_to.size() <= n) r->offer_to.resize(n + 1, 0);
  r->offer_to[n] = r->gen;
  cluster::slot::arm(*r->word, r->gen);
  return r->call->dispatch(FutureCore::StartSlot{r->word.get(), r->gen, r->gen + 1});
}

cluster::Gate::Start ClusterDriver::start(cluster::TaskId t, cluster::NodeId) {
  Record* r = record(t);
  if (!r) return Start::cancelled;
  // The claim races the user's cancel() for the slot: one CAS decides.
  const bool won = cluster::slot::try_start(*r->word, r->gen);
  (void)r->call->undispatch();  // won: running; lost: cancelled (or, in a chunk, pending again)
  if (won) return Start::started;
  return r->call->chunk ? Start::again : Start::cancelled;
}

void ClusterDriver::revoke(cluster::TaskId t, cluster::NodeId) {
  if (Record* r = record(t)) (void)r->call->undispatch();
}

// ---------------------------------------------------------------- the loop

void ClusterDriver::run() {
  on_supervisor = true;
  const cluster::Nanos min_poll = std::chrono::microseconds(20);
  cluster::Nanos poll = min_poll;
  try {
    machine_->start();
    apply();
  } catch (const std::exception& e) {
    broken_text_ = std::string("ClusterPool: the supervisor could not start: ") + detail::what_of(e);
    machine_->supervisor_failed();
    apply();
  }
  while (!machine_->terminated()) {
    bool busy = false;
    try {
      busy = take_commands();
      cluster::NodeId n = 0;
      std::string bytes;
      while (fabric_->receive(n, bytes)) {
        busy = true;
        handle(n, bytes);
      }
      publish();
    } catch (const std::exception& e) {
      // Out of memory, or a fabric that failed: the cluster breaks rather
      // than hang its futures or abort the program.
      if (broken_text_.empty()) broken_text_ = std::string("ClusterPool: the supervisor failed: ") + detail::what_of(e);
      machine_->supervisor_failed();
      apply();
      busy = true;
    }
    if (machine_->terminated()) break;
    if (busy) {
      poll = min_poll;
    } else {
      fabric_->idle(waker_, poll);
      poll = std::min(poll * 2, opts_.idle_poll);
    }
  }
  fabric_->finish();
  publish();
  on_supervisor = false;
  LockGuard<Mutex> g(m_);
  done_ = true;
  done_cv_.notify_all();
}

bool ClusterDriver::take_commands() {
  std::vector<Record> in;
  bool shut = false, cancel = false, term = false;
  {
    LockGuard<Mutex> g(m_);
    in.swap(inbox_);
    shut = want_shutdown_;
    cancel = want_cancel_;
    term = want_terminate_;
    want_shutdown_ = want_cancel_ = want_terminate_ = false;
  }
  for (Record& r : in) {
    const cluster::TaskId id = next_id_++;
    calls_.emplace(id, std::move(r));
    machine_->submit(id);
    apply();
  }
  if (shut) {
    machine_->shutdown(cancel);
    apply();
  }
  if (term) {
    machine_->terminate();
    apply();
  }
  return !in.empty() || shut || term;
}

void ClusterDriver::handle(cluster::NodeId n, const std::string& bytes) {
  Message m;
  try {
    m = cluster::proto::decode(bytes);
  } catch (const Error& e) {
    if (broken_text_.empty()) {
      broken_text_ = "ClusterPool: " + info_[n].name + " sent a malformed message: " + e.what();
    }
    machine_->node_failed(n);
    apply();
    return;
  }
  switch (m.kind) {
    case Kind::ready:
      info_[n].name = m.text;
      info_[n].capacity = m.capacity;
      machine_->node_ready(n, m.capacity);
      break;
    case Kind::open_failed:
    case Kind::broken:
      if (broken_text_.empty()) broken_text_ = "ClusterPool: a node's pool broke: " + m.text;
      machine_->node_failed(n);
      break;
    case Kind::claim: {
      // A claim of an offer that was since withdrawn and made again (here or
      // elsewhere) is not a claim of the new offer: it is dropped here.
      const Record* r = record(m.task);
      if (r && r->gen == m.gen && n < r->offer_to.size() && r->offer_to[n] == m.gen) {
        claim_gen_ = m.gen;
        machine_->claim(n, m.task);
      } else {
        fabric_->send(n, cluster::proto::task_message(Kind::drop, m.task, m.gen));
      }
      break;
    }
    case Kind::answer:
      answer_ = Answer{m.ok, std::move(m.text), nullptr};
      machine_->answer(n, m.task);
      break;
    case Kind::failure:
      answer_ = Answer{false, {}, failure(n, m)};
      machine_->answer(n, m.task);
      break;
    case Kind::stats:
      info_[n].local = m.stats;
      break;
    case Kind::closed:
      machine_->node_closed(n);
      break;
    default:
      if (broken_text_.empty()) broken_text_ = "ClusterPool: " + info_[n].name + " sent a message only rank 0 sends";
      machine_->node_failed(n);
      break;
  }
  apply();
  answer_ = {};
}

std::exception_ptr ClusterDriver::failure(cluster::NodeId n, const Message& m) const {
  const std::string text = m.text + " [on " + info_[n].name + "]";
  switch (m.error) {
    case cluster::proto::Error::lost:
      return std::make_exception_ptr(WorkerLost(m.pid, m.code, text));
    case cluster::proto::Error::timed_out:
      return std::make_exception_ptr(TimeoutError(text));
    case cluster::proto::Error::broken:
      return std::make_exception_ptr(BrokenProcessPool(text));
    case cluster::proto::Error::cancelled:
      return std::make_exception_ptr(CancelledError(text));
    case cluster::proto::Error::other:
      break;
  }
  return std::make_exception_ptr(RemoteError("keel node error", text));
}

void ClusterDriver::apply() {
  std::vector<Action> batch;
  batch.swap(machine_->actions());
  // A break reaches submitters before any future reports it (CLUSTER-6).
  if (machine_->phase() == cluster::Machine::Phase::broken) tell_broken();
  // Statistics are published before any future is resolved, so a thread
  // woken by one finds its outcome counted in stats().
  for (const Action& a : batch) {
    if (a.kind == Action::resolve) {
      publish();
      break;
    }
  }
  for (const Action& a : batch) {
    switch (a.kind) {
      case Action::open: {
        Message m;
        m.kind = Kind::open;
        m.options = opts_;
        fabric_->send(a.node, cluster::proto::encode(m));
        break;
      }
      case Action::offer:
        if (Record* r = record(a.task)) {
          Message m;
          m.kind = Kind::offer;
          m.task = a.task;
          m.gen = r->gen;
          m.chunk = r->call->chunk;
          m.timeout_ns = r->timeout_ns;
          m.text = r->call->payload();
          fabric_->send(a.node, cluster::proto::encode(m));
        }
        break;
      case Action::go:
        fabric_->send(a.node, cluster::proto::task_message(Kind::go, a.task, claim_gen_));
        break;
      case Action::drop:
        fabric_->send(a.node, cluster::proto::task_message(Kind::drop, a.task, claim_gen_));
        break;
      case Action::withdraw:
        if (Record* r = record(a.task); r && a.node < r->offer_to.size()) {
          fabric_->send(a.node, cluster::proto::task_message(Kind::withdraw, a.task, r->offer_to[a.node]));
        }
        break;
      case Action::terminate:
        fabric_->send(a.node, cluster::proto::bare_message(Kind::terminate));
        break;
      case Action::close:
        fabric_->send(a.node, cluster::proto::bare_message(Kind::close));
        break;
      case Action::resolve:
        resolve(a);
        break;
      case Action::terminated:
        break;
    }
  }
}

void ClusterDriver::resolve(const Action& a) {
  auto it = calls_.find(a.task);
  if (it == calls_.end()) return;
  PoolCall& c = *it->second.call;
  switch (a.outcome) {
    case Outcome::answered:
      if (answer_.error) {
        c.fail(answer_.error);
      } else {
        c.complete(answer_.ok, answer_.bytes);
      }
      break;
    case Outcome::cancelled:
      c.cancel();
      break;
    case Outcome::broken:
      c.fail(std::make_exception_ptr(BrokenProcessPool(broken_message())));
      break;
  }
  calls_.erase(it);
}

std::string ClusterDriver::broken_message() const {
  return broken_text_.empty() ? std::string("ClusterPool: the cluster is broken") : broken_text_;
}

void ClusterDriver::tell_broken() {
  LockGuard<Mutex> g(m_);
  if (refuse_ == Refuse::broken) return;
  refuse_ = Refuse::broken;
  refuse_text_ = broken_message();
}

void ClusterDriver::publish() {
  const auto& c = machine_->counters();
  LockGuard<Mutex> g(m_);
  stats_.queued = machine_->queued();
  stats_.submitted = c.submitted;
  stats_.answered = c.answered;
  stats_.cancelled = c.cancelled;
  stats_.broken = c.broken;
  stats_.moved = c.moved;
  for (unsigned n = 0; n < nodes_; ++n) {
    ClusterNodeStats& s = stats_.nodes[n];
    s.node = n;
    s.name = info_[n].name;
    s.capacity = info_[n].capacity;
    s.offered = machine_->offered_to(n);
    s.running = machine_->running_on(n);
    s.local = info_[n].local;
  }
}

}  // namespace keel::detail
