// keel::detail::PoolDriver. See driver.hpp.
#include "driver.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "protocol.hpp"

namespace keel {

namespace pool {
int pool_worker_main(const detail::ChildContext& ctx);
}

namespace {

const bool worker_role_registered = [] {
  detail::register_child_role("pool", &pool::pool_worker_main);
  return true;
}();

pool::Nanos now_ns() { return std::chrono::steady_clock::now().time_since_epoch(); }

// The exit code the machine is told for a worker that could not be started
// (no exit status is ever 256).
constexpr int never_started = 256;

std::string describe_exit(int code) {
  if (code == never_started) return "could not be started";
  if (code < 0) {
    const char* name = sigabbrev_np(-code);
    return "was killed by signal " + std::to_string(-code) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited with status " + std::to_string(code);
}

thread_local bool on_supervisor = false;

}  // namespace

namespace detail {

bool on_pool_supervisor() noexcept { return on_supervisor; }

unsigned usable_cpus() {
  (void)worker_role_registered;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  const unsigned n = platform::Thread::hardware_concurrency();
  return n ? n : 1;
}

// About a millisecond of expected work is pipelined to each worker: enough to
// hide the round trip behind tiny tasks, little enough that nothing waits
// long behind a slow one (and what waits can be taken back).
constexpr pool::Nanos pipeline_budget = std::chrono::milliseconds(1);
// After a spare died unused or could not start, the next waits this long: a
// spare that cannot stay alive costs at most one start a second.
constexpr pool::Nanos spare_retry = std::chrono::seconds(1);

PoolDriver::PoolDriver(const ProcessPoolOptions& o, unsigned workers) : opts_(o) {
  pool::MachineConfig mc;
  mc.workers = workers;
  mc.depth = o.max_in_flight ? o.max_in_flight : 64;
  mc.max_tasks_per_child = o.max_tasks_per_child;
  mc.retries = o.retries;
  mc.restart_limit = o.restart_limit;
  mc.restart_window = o.restart_window;
  mc.has_initializer = o.initializer.has_value();
  mc.pipeline = pipeline_budget;
  mc.terminate_grace = o.terminate_grace;
  slots_per_worker_ = mc.depth;
  pool::proto::SpawnConfig sc;
  sc.init_task = o.initializer ? o.initializer->task : std::string();
  sc.init_args = o.initializer ? o.initializer->args : std::string();
  sc.max_message = o.max_message;
  sc.slots = slots_per_worker_;
  sc.ring = pool::proto::ring_bytes;
  spawn_payload_ = pool::proto::encode_spawn(sc);
  machine_ = std::make_unique<pool::Machine>(mc, *this);
  commands_.reserve(pool::inbox_reserve);  // traded with the edge's inbox at every turn
  bell_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!bell_fd_.valid()) detail::throw_os("ProcessPool", "eventfd", errno);
  thread_.start([this] { run(); });
}

PoolDriver::~PoolDriver() {
  if (thread_.joinable()) thread_.join();
}

void PoolDriver::ring() {
  const std::uint64_t one = 1;
  while (::write(bell_fd_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

// Arms a free slot of worker w for task t (a worker holds at most `depth`
// tasks, plus the ones taken back that it has not skipped yet; the machine
// keeps the sum within the slots).
bool PoolDriver::dispatch(pool::TaskId t, pool::WorkerId wid) {
  WorkerIo* w = io(wid);
  PoolCall* c = call(t);
  if (!c) return false;
  if (!w || w->free.empty()) {
    // The machine never sends beyond a worker's slots; if it did, the task
    // fails loudly rather than run without a start slot.
    c->fail(std::make_exception_ptr(ProtocolError("ProcessPool: no free start slot on the worker (internal error)")));
    calls_.erase(t);
    return false;
  }
  const std::uint32_t s = w->free.back();
  pool::proto::Slot& word = w->slots[s];
  // relaxed: the word publishes nothing (protocol.hpp, try_start); the frame
  // that names the slot goes out on the channel after this.
  word.store(pool::proto::slot_sent(t), std::memory_order_relaxed);
  if (!c->dispatch({&word, pool::proto::slot_sent(t), pool::proto::slot_dead(t)})) {
    word.store(0, std::memory_order_relaxed);
    return false;
  }
  w->free.pop_back();
  w->occupant[s] = t;
  c->slot_worker = wid;
  c->slot = s;
  return true;
}

// Takes t back from w: its slot goes from sent to dead unless the worker
// started it first. The slot stays taken until the worker skips the frame.
bool PoolDriver::revoke(pool::TaskId t, pool::WorkerId wid) {
  WorkerIo* w = io(wid);
  PoolCall* c = call(t);
  if (!w || !c || c->slot_worker != wid || c->slot >= w->occupant.size() || w->occupant[c->slot] != t) return true;
  std::uint64_t seen = 0;
  const bool won = pool::proto::try_revoke(w->slots[c->slot], t, seen);
  // The futures follow the slot: pending again (or cancelled by their user),
  // or running if the worker won.
  const bool started = c->undispatch();
  c->slot_worker = 0;
  return won || (!started && seen == pool::proto::slot_dead(t));
}

void PoolDriver::free_slot(WorkerIo& w, std::uint32_t s) {
  if (s >= w.occupant.size() || w.occupant[s] == 0) return;
  w.occupant[s] = 0;
  w.slots[s].store(0, std::memory_order_relaxed);
  w.free.push_back(s);
}

void PoolDriver::run() {
  on_supervisor = true;
  platform::set_current_thread_name("keel-procpool");
  try {
    machine_->start(now_ns());
    apply();
    while (!machine_->terminated()) turn();
  } catch (const std::exception& e) {
    wind_down(what_of(e));
  }
  end_spares();
  // The edge is closed (shutdown, terminate or broken): anything it accepted
  // before closing and not yet taken is handed to the machine now, which
  // resolves it (only a broken pool can have such stragglers).
  take_commands();
  publish();
  edge_.set_terminated();
}

// The loop cannot go on (poll refused, say, after RLIMIT_NOFILE was lowered
// below the fds it watches): rather than let the exception end the process,
// the pool breaks, every worker is killed, and each is waited for with a
// blocking waitpid, which needs no fd.
void PoolDriver::wind_down(const std::string& why) {
  supervisor_error_ = why;
  end_spares();
  machine_->supervisor_failed(now_ns());
  apply();
  for (pool::WorkerId id : failed_spawns_) machine_->worker_exited(id, never_started, now_ns());
  failed_spawns_.clear();
  apply();
  while (!machine_->terminated() && !io_.empty()) {
    auto it = io_.begin();
    WorkerIo& w = it->second;
    signal_worker(w, SIGKILL);
    const int code = reap_child(w.child, true);
    machine_->worker_exited(w.id, code, now_ns());
    apply();
    io_.erase(it);  // closes its channel and answer pipe
  }
}

void PoolDriver::turn() {
  pfds_.clear();
  pfds_.push_back({bell_fd_.get(), POLLIN, 0});
  std::vector<pool::WorkerId>& order = order_;
  order.clear();
  for (auto& [id, w] : io_) {
    order.push_back(id);
    // The channel is watched only while tasks wait to go out: idle, a hung
    // up socket would report POLLHUP on every turn.
    const bool pending = !w.eof && w.out_off < w.out.size();
    pfds_.push_back({w.eof ? -1 : w.in.get(), POLLIN, 0});
    pfds_.push_back({pending ? w.fd.get() : -1, POLLOUT, 0});
    pfds_.push_back({w.exited ? -1 : w.child.pidfd, POLLIN, 0});
  }
  // Then each spare's pidfd: one that dies unused is reaped at once.
  const std::size_t spares_at = pfds_.size();
  for (const auto& sp : spares_) pfds_.push_back({sp->child.pidfd, POLLIN, 0});
  int timeout = -1;
  pool::Nanos deadline = machine_->next_deadline();
  if (!spares_stopped() && spares_.size() < opts_.spare_workers && machine_->phase() == pool::Machine::Phase::running) {
    // A spare is due: at the next turn, or once its retry time comes.
    deadline = std::min(deadline, std::max(spare_retry_at_, now_ns() + std::chrono::milliseconds(1)));
  }
  if (!failed_spawns_.empty()) {
    timeout = 0;
  } else if (deadline != pool::Nanos::max()) {
    const auto left = deadline - now_ns();
    timeout =
        left <= pool::Nanos::zero() ? 0 : static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
  }
  // A frame may wait in a ring: then no sleep. Else the rings are armed, and
  // a frame published from now on rings its worker's bell on its pipe.
  for (auto& [id, w] : io_) {
    if (timeout == 0) break;
    if (w.faulty) continue;
    w.armed = true;
    if (!w.ring.arm()) timeout = 0;
  }
  const int n = ::poll(pfds_.data(), pfds_.size(), timeout);
  if (n < 0 && errno != EINTR) detail::throw_os("ProcessPool", "poll", errno);
  for (auto& [id, w] : io_) {
    if (w.armed) w.ring.disarm();
    w.armed = false;
  }
  for (std::size_t i = spares_.size(); n > 0 && i-- > 0;) {
    if (!(pfds_[spares_at + i].revents & POLLIN)) continue;
    spare_died(*spares_[i]);
    spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  for (pool::WorkerId id : failed_spawns_) machine_->worker_exited(id, never_started, now_ns());
  failed_spawns_.clear();
  apply();

  if (n > 0 && (pfds_[0].revents & POLLIN)) {
    std::uint64_t v;
    while (::read(bell_fd_.get(), &v, sizeof v) < 0 && errno == EINTR) {
    }
  }
  // Commands first: submits queued before a shutdown are seen before it.
  take_commands();
  // The ids in the order their three pollfds follow the bell's.
  const pollfd* entry = pfds_.data() + 1;
  for (pool::WorkerId id : order) {
    const pollfd& in = entry[0];
    const pollfd& ch = entry[1];
    const pollfd& pid = entry[2];
    entry += 3;
    WorkerIo* w = io(id);
    if (!w) continue;
    if (in.revents & (POLLIN | POLLHUP | POLLERR)) read_worker(*w);
    if (w->child.pidfd < 0 && w->eof) w->exited = true;  // no pidfd (old kernel): EOF means gone
    if (pid.revents & POLLIN) {
      w->exited = true;
      // Whatever it wrote before dying is in the pipe: read it all now.
      if (!w->eof) read_worker(*w);
    }
    // And in its ring: once it is seen gone, this take is its last.
    drain_ring(*w);
    if (ch.revents & (POLLOUT | POLLHUP | POLLERR)) flush(*w);
  }
  apply();
  reap_exited();
  machine_->tick(now_ns());
  apply();
  for (auto& [id, w] : io_) flush(w);
  keep_spares();
  publish();
  // Blocked submitters (RejectPolicy::block) learn of room from this: once
  // per turn, when every command taken was fed to the machine, so the count
  // covers every submission the edge handed over.
  edge_.set_queued(machine_->queued());
}

void PoolDriver::take_commands() {
  commands_.clear();
  edge_.take(commands_);
  for (auto& c : commands_) {
    switch (c.kind) {
      case pool::Command::submit:
        calls_.emplace(c.task, PoolCallPtr(static_cast<PoolCall*>(c.payload)));
        machine_->submit(c.task, c.timeout, now_ns());
        break;
      case pool::Command::shutdown:
        machine_->shutdown(c.cancel_futures, now_ns());
        break;
      case pool::Command::terminate:
        machine_->terminate(c.signal, now_ns());
        break;
      case pool::Command::discard_oldest:
        machine_->discard_oldest(now_ns());
        break;
    }
    apply();
  }
}

void PoolDriver::read_worker(WorkerIo& w) {
  char scratch[4096];
  for (;;) {
    // A faulty worker's bytes are drained and dropped (its reader has failed).
    auto span = w.faulty ? std::span<char>(scratch, sizeof scratch) : w.reader.prepare(std::size_t{64} * 1024);
    const ssize_t n = ::read(w.in.get(), span.data(), span.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      w.eof = true;  // ECONNRESET and the like: nothing more will come
      return;
    }
    if (n == 0) {
      w.eof = true;
      return;
    }
    if (w.faulty) continue;
    w.reader.commit(static_cast<std::size_t>(n));
    try {
      while (auto f = w.reader.next()) {
        // What its ring holds was sent before this frame: it goes first.
        pool::ring::on_pipe_frame(
            w.ring, f->kind == pool::proto::bell, frame_header_size + f->payload.size(), [&] { drain_ring(w); },
            [&] {
              if (w.faulty) return;
              handle_frame(w, *f);
              apply();
            });
        if (w.faulty) break;
      }
    } catch (const ProtocolError&) {
      // A worker that writes garbage cannot be trusted with anything more.
      w.faulty = true;
      signal_worker(w, SIGKILL);
    }
  }
}

void PoolDriver::drain_ring(WorkerIo& w) {
  if (w.faulty || !w.ring.attached()) return;
  try {
    const std::size_t n = w.ring.take([&](std::size_t k) { return w.ring_frames.prepare(k).data(); });
    if (n == 0) return;
    w.ring_frames.commit(n);
    while (auto f = w.ring_frames.next()) {
      handle_frame(w, *f);
      apply();
      if (w.faulty) return;
    }
  } catch (const ProtocolError&) {
    // A ring out of range or a malformed frame in it: as garbage on the pipe.
    w.faulty = true;
    signal_worker(w, SIGKILL);
  }
}

void PoolDriver::signal_worker(const WorkerIo& w, int signal) const {
  // To its whole group when it leads one (its descendants too); to the worker
  // alone if the group is gone (a task moved it to another group).
  if (opts_.own_process_group && ::kill(-w.pid, signal) == 0) return;
  ::kill(w.pid, signal);
}

void PoolDriver::handle_frame(WorkerIo& w, const FrameView& f) {
  const auto now = now_ns();
  switch (f.kind) {
    case pool::proto::ready:
      machine_->worker_ready(w.id, now);
      return;
    case pool::proto::init_failed:
      if (init_error_.empty()) init_error_ = decode_error(f.payload).what();
      machine_->init_failed(w.id, now);
      return;
    case pool::proto::started: {
      if (!machine_->started(w.id, f.id, now)) {
        w.faulty = true;
        return;
      }
      // The future is running from now: the slot says started.
      if (PoolCall* c = call(f.id); c && c->slot_worker == w.id && c->slot == f.flags) (void)c->undispatch();
      return;
    }
    case pool::proto::skipped: {
      // The worker lost the slot. If the task still sits in it (its user
      // cancelled it), its futures leave the slot before the slot is freed.
      if (w.occupant[f.flags] != f.id) {
        w.faulty = true;
        machine_->result(w.id, ~pool::TaskId{0}, now);  // kills it
        return;
      }
      if (PoolCall* c = call(f.id); c && c->slot_worker == w.id && c->slot == f.flags) {
        (void)c->undispatch();
        c->slot_worker = 0;
      }
      free_slot(w, f.flags);
      if (!machine_->skipped(w.id, f.id, now)) w.faulty = true;
      return;
    }
    case pool::proto::ok:
    case pool::proto::error: {
      // resolve(value) completes the call with this answer, in apply(),
      // while the payload is still valid.
      answer_ = {f.kind == pool::proto::ok, f.payload};
      // Its slot is free before the machine sends the next task.
      if (w.occupant[f.flags] == f.id) free_slot(w, f.flags);
      if (!machine_->result(w.id, f.id, now)) w.faulty = true;
      return;
    }
    default:
      throw ProtocolError("ProcessPool: a worker sent an unknown frame kind " + std::to_string(f.kind));
  }
}

void PoolDriver::flush(WorkerIo& w) {
  while (w.out_off < w.out.size() && !w.eof) {
    const ssize_t n = ::send(w.fd.get(), w.out.data() + w.out_off, w.out.size() - w.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      // The worker is gone (EPIPE): what it had not read dies with it.
      w.out.clear();
      w.out_off = 0;
      return;
    }
    w.out_off += static_cast<std::size_t>(n);
  }
  if (w.out_off == w.out.size()) {
    w.out.clear();
    w.out_off = 0;
  }
}

void PoolDriver::apply() {
  auto& acts = machine_->actions();
  if (acts.empty()) return;
  // Actions may produce more actions only through events, which this loop
  // does not feed, so a swap is safe. The two vectors trade their storage
  // back and forth, so a turn that handles a frame at a time allocates
  // nothing here (a nested apply would find spare_actions_ empty: still
  // correct, only an allocation).
  std::vector<pool::Action> batch;
  batch.swap(spare_actions_);
  batch.clear();
  batch.swap(acts);
  // Statistics are published before any future is resolved, an answer's
  // included, so a thread woken by that future finds it counted (a caller
  // reading `completed` after its last result sees that result). (The
  // break itself reaches submitters through the machine's `broken` action,
  // which comes before the first resolve(broken): POOL-11.)
  for (const auto& a : batch) {
    if (a.kind == pool::Action::resolve) {
      publish();
      break;
    }
  }
  for (const auto& a : batch) {
    switch (a.kind) {
      case pool::Action::spawn:
        spawn(a.worker);
        break;
      case pool::Action::send: {
        WorkerIo* w = io(a.worker);
        PoolCall* c = call(a.task);
        if (w && c && c->slot_worker == a.worker) {
          append_frame(w->out, c->chunk ? pool::proto::chunk : pool::proto::call, a.task, c->payload(),
                       opts_.max_message + 64, static_cast<std::uint8_t>(c->slot));
        }
        break;
      }
      case pool::Action::close:
        if (WorkerIo* w = io(a.worker)) append_frame(w->out, pool::proto::close, 0, {});
        break;
      case pool::Action::kill:
        if (WorkerIo* w = io(a.worker); w && !w->exited) signal_worker(*w, a.code);
        break;
      case pool::Action::resolve:
        resolve(a);
        break;
      case pool::Action::broken:
        // Before any future says broken: a thread woken by one finds every
        // later submit refused (POOL-11).
        edge_.set_broken(broken_message());
        break;
      case pool::Action::terminated:
        break;
    }
  }
  batch.clear();
  spare_actions_.swap(batch);
}

void PoolDriver::spawn(pool::WorkerId id) {
  if (take_spare(id)) return;
  auto [it, inserted] = io_.try_emplace(id, opts_.max_message);
  (void)inserted;
  std::string why;
  if (!start_process(it->second, why)) {
    io_.erase(it);
    spawn_error_ = std::move(why);
    failed_spawns_.push_back(id);
    return;
  }
  it->second.id = id;
}

// Starts a worker process into w (its channel, answer pipe, slot page and
// child). Each failure leaves the reason in `why` and closes what was opened
// so far (the UniqueFds), so a worker that could not start costs no
// descriptor.
bool PoolDriver::start_process(WorkerIo& w, std::string& why) {
  auto failed = [&](std::string reason) {
    why = std::move(reason);
    return false;
  };
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
    return failed(std::string("socketpair: ") + std::strerror(errno));
  }
  detail::UniqueFd channel(sv[0]), worker_channel(sv[1]);
  // The worker's end blocks: it has nothing else to do while it waits.
  const int flags = ::fcntl(worker_channel.get(), F_GETFL);
  ::fcntl(worker_channel.get(), F_SETFL, flags & ~O_NONBLOCK);
  // Its answers come back on a pipe; only this end never blocks.
  int answers[2];
  if (::pipe2(answers, O_CLOEXEC) < 0) return failed(std::string("pipe2: ") + std::strerror(errno));
  detail::UniqueFd in(answers[0]), worker_out(answers[1]);
  ::fcntl(in.get(), F_SETFL, ::fcntl(in.get(), F_GETFL) | O_NONBLOCK);
  pool::proto::SlotPage slots;
  try {
    slots = pool::proto::SlotPage::create(slots_per_worker_, pool::proto::ring_bytes);
  } catch (const Error& e) {
    return failed(e.what());
  }
  SpawnRequest req;
  req.role = "pool";
  req.fds = {worker_channel.get(), slots.fd(), worker_out.get()};
  req.daemon = true;
  req.new_process_group = opts_.own_process_group;
  req.start = opts_.start;
  req.payload = spawn_payload_;
  ChildHandle h;
  try {
    h = spawn_child(req);
  } catch (const Error& e) {
    return failed(e.what());
  }
  worker_channel.reset();
  worker_out.reset();  // the worker's now: its exit (and its alone) ends the pipe
  // The channel carries tasks one way: nothing the worker writes on it is
  // read, so its writes fail (EPIPE) rather than fill a buffer nobody reads.
  ::shutdown(channel.get(), SHUT_RD);
  slots.close_fd();  // the worker has its own; the mapping stays
  w.child = h;
  w.pid = h.pid;
  w.fd = std::move(channel);
  w.in = std::move(in);
  w.slots = std::move(slots);
  w.ring = w.slots.ring_reader();
  static_assert(std::numeric_limits<decltype(FrameView::flags)>::max() < pool::proto::max_slots);
  w.occupant.assign(pool::proto::max_slots, 0);
  w.free.clear();
  for (std::uint32_t s = slots_per_worker_; s-- > 0;) w.free.push_back(s);
  return true;
}

// A spare alive becomes worker `id`: the machine sees it as the worker it
// asked for, which says ready as soon as its frame (most likely waiting in
// its pipe already) is read. A spare that died unused is reaped on the way.
bool PoolDriver::take_spare(pool::WorkerId id) {
  while (!spares_.empty()) {
    std::unique_ptr<WorkerIo> s = std::move(spares_.back());
    spares_.pop_back();
    pollfd p{s->child.pidfd, POLLIN, 0};
    const bool dead = s->child.pidfd >= 0 ? ::poll(&p, 1, 0) > 0 : reap_child(s->child, false) != still_running;
    if (dead) {
      end_spare(*s);
      continue;
    }
    auto [it, inserted] = io_.try_emplace(id, std::move(*s));
    if (!inserted) {  // never: the machine asks once for each id
      end_spare(*s);
      return false;
    }
    it->second.id = id;
    spare_taken_ = true;
    if (!spares_stopped()) spare_deaths_ = 0;  // stopped is for good (a spare left then may still be taken)
    return true;
  }
  return false;
}

// Keeps spare_workers spares while the pool runs, starting at most one a
// turn; none once it shuts down or breaks (they are ended then).
void PoolDriver::keep_spares() {
  if (machine_->phase() != pool::Machine::Phase::running) {
    end_spares();
    return;
  }
  if (spares_stopped() || spares_.size() >= opts_.spare_workers) return;
  // The turn after a promotion reads the new worker's ready first.
  if (std::exchange(spare_taken_, false)) return;
  const pool::Nanos now = now_ns();
  if (now < spare_retry_at_) return;
  auto s = std::make_unique<WorkerIo>(opts_.max_message);
  std::string why;
  if (!start_process(*s, why)) {
    // A spare is an optimisation: the pool goes on without it, and a worker
    // that cannot start reports why itself when the machine asks for one.
    spare_retry_at_ = now + spare_retry;
    return;
  }
  spares_.push_back(std::move(s));
}

int PoolDriver::end_spare(WorkerIo& s) {
  if (s.child.pid <= 0) return never_started;
  signal_worker(s, SIGKILL);
  return reap_child(s.child, true);
}

// A spare exited unused: reaped, and another started a second later. After
// spare_death_limit such deaths in a row (none of them taken alive in
// between) no more start, and the error reporter says why once: a spare
// whose initializer keeps raising (a worker's would have broken the pool;
// this one never became a worker) costs no start a second for ever.
void PoolDriver::spare_died(WorkerIo& s) {
  const int pid = s.pid;
  const std::string said = spare_error(s);
  const int code = end_spare(s);
  spare_retry_at_ = now_ns() + spare_retry;
  // The report comes at the limit, not again at any later death of the run.
  if (++spare_deaths_ != spare_death_limit) return;
  std::string why = "ProcessPool: no more spare workers start: " + std::to_string(spare_death_limit) +
                    " in a row exited before they were needed (the last, pid " + std::to_string(pid) + ", " +
                    describe_exit(code) + ")";
  if (!said.empty()) why += "; its initializer raised " + said;
  report_error("process pool spare worker", std::make_exception_ptr(WorkerLost(pid, code, why)));
}

// What a spare that exited said before it did: its initializer's error (an
// init_failed frame, in its pipe or its ring), or "".
std::string PoolDriver::spare_error(WorkerIo& s) {
  std::string out;
  auto look = [&](FrameReader& r) {
    while (auto f = r.next()) {
      if (f->kind == pool::proto::init_failed && out.empty()) out = decode_error(f->payload).what();
    }
  };
  try {
    for (;;) {
      auto span = s.reader.prepare(std::size_t{4096});
      const ssize_t n = ::read(s.in.get(), span.data(), span.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      s.reader.commit(static_cast<std::size_t>(n));
    }
    look(s.reader);
    if (s.ring.attached()) {
      const std::size_t n = s.ring.take([&](std::size_t k) { return s.ring_frames.prepare(k).data(); });
      if (n) s.ring_frames.commit(n);
      look(s.ring_frames);
    }
  } catch (const Error&) {
    // Garbage where frames should be: it said nothing worth quoting.
  }
  return out;
}

void PoolDriver::end_spares() {
  for (auto& s : spares_) end_spare(*s);
  spares_.clear();
}

void PoolDriver::resolve(const pool::Action& a) {
  auto it = calls_.find(a.task);
  if (it == calls_.end()) return;
  PoolCall& c = *it->second;
  switch (a.outcome) {
    case pool::Outcome::value:
      // Only a worker's answer resolves a value (handle_frame holds it).
      c.complete(answer_.ok, answer_.bytes);
      answer_ = {};
      break;
    case pool::Outcome::lost: {
      const WorkerIo* w = io(a.worker);
      const int pid = w ? w->pid : -1;
      c.fail(std::make_exception_ptr(WorkerLost(pid, a.code,
                                                "ProcessPool: the worker (pid " + std::to_string(pid) +
                                                    ") running task '" + std::string(c.name()) + "' " +
                                                    describe_exit(a.code))));
      break;
    }
    case pool::Outcome::timed_out:
      c.fail(std::make_exception_ptr(TimeoutError("ProcessPool: task '" + std::string(c.name()) +
                                                  "' ran past its timeout; its worker was killed")));
      break;
    case pool::Outcome::cancelled:
      c.cancel();
      break;
    case pool::Outcome::broken:
      c.fail(std::make_exception_ptr(BrokenProcessPool(broken_message())));
      break;
  }
  calls_.erase(it);
}

std::string PoolDriver::exit_text(int code) const {
  if (code == never_started && !spawn_error_.empty()) return describe_exit(code) + " (" + spawn_error_ + ")";
  return describe_exit(code);
}

std::string PoolDriver::broken_message() const {
  switch (machine_->broken_reason()) {
    case pool::BrokenReason::initializer_failed:
      return "ProcessPool is broken: the worker initializer raised " + init_error_;
    case pool::BrokenReason::initializer_died:
      return "ProcessPool is broken: a worker " + exit_text(machine_->broken_code()) + " in its initializer";
    case pool::BrokenReason::restart_limit:
      return "ProcessPool is broken: workers died more than " + std::to_string(opts_.restart_limit) +
             " times within the restart window (the last " + exit_text(machine_->broken_code()) + ")";
    case pool::BrokenReason::supervisor_failed:
      return "ProcessPool is broken: its supervisor could not go on: " + supervisor_error_;
    case pool::BrokenReason::none:
      break;
  }
  return "ProcessPool is broken";
}

void PoolDriver::reap_exited() {
  for (auto it = io_.begin(); it != io_.end();) {
    WorkerIo& w = it->second;
    if (!(w.exited && w.eof)) {
      ++it;
      continue;
    }
    // Its descendants go with it: until it is reaped its pid cannot be reused,
    // so the group it leads is still its own.
    if (opts_.own_process_group) ::kill(-w.pid, SIGKILL);
    const int code = reap_child(w.child, true);
    // Its unstarted tasks are taken back through its slots, so they are
    // unmapped only after this.
    machine_->worker_exited(w.id, code, now_ns());
    apply();             // resolutions may name this worker's pid: it is still here
    it = io_.erase(it);  // closes its channel and answer pipe
  }
}

void PoolDriver::publish() {
  const auto& c = machine_->counters();
  LockGuard<Mutex> g(stats_m_);
  // Workers, their pids and the ready ones by one rule, in one snapshot
  // (POOL-12): alive until the supervisor saw the process exit. (The machine
  // still counts a worker whose exit the driver has not reported yet, while
  // its pipe drains: it is not counted here.)
  stats_.workers = 0;
  stats_.ready = 0;
  stats_.pids.clear();
  for (const auto& [id, w] : io_) {
    if (w.exited) continue;
    ++stats_.workers;
    stats_.pids.push_back(w.pid);
    if (machine_->state_of(id) == pool::Machine::WorkerState::ready) ++stats_.ready;
  }
  stats_.spares = static_cast<unsigned>(spares_.size());
  stats_.queued = machine_->queued();
  stats_.in_flight = machine_->in_flight();
  stats_.submitted = c.submitted;
  stats_.completed = c.completed;
  stats_.lost = c.lost;
  stats_.timed_out = c.timed_out;
  stats_.cancelled = c.cancelled;
  stats_.broken = c.broken;
  stats_.retried = c.retried;
  stats_.requeued = c.requeued;
  stats_.spawned = c.spawned;
  stats_.deaths = c.deaths;
  stats_.replacements = c.replacements;
  stats_.retirements = c.retirements;
  stats_.revoked = c.revoked;
  stats_.stolen = c.stolen;
  stats_.skipped = c.skipped;
}

}  // namespace detail

}  // namespace keel
