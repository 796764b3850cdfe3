// Exhaustive exploration of the shipped keel::pool::Machine: every order of
// the events a ProcessPool supervisor can see, up to the bounds each row
// states, with the machine's and the world's state hashed (models/support/
// explore.hpp), and every check below after every event.
//
// The world plays the driver and the workers: it is the machine's StartGate
// (one start slot per frame sent: sent, started by the worker, or dead when
// the parent or the task's user won it first) and carries out its actions. A
// worker takes its frames in order, wins a frame's slot and writes `started`
// in one step (or finds it dead and writes `skipped`), then writes the
// result; the driver reads a worker's messages one at a time, at any later
// point, and all of them before it reports the worker's exit. Events, each
// enabled whenever it could happen: submit (with or without a timeout), the
// user's cancel of any task not started, ready, initializer failure, take,
// finish, read, a death at any point (also just after winning a slot, before
// saying so), a natural exit (killed, closed with nothing left, failed
// initializer), a faulty report (a task that is not the worker's first),
// tick (when the machine's deadline has come), the clock moving one unit,
// discard_oldest, shutdown(wait), shutdown(cancel_futures), terminate with
// SIGTERM or SIGKILL (also after a shutdown), and the supervisor failing.
// Time is discrete: the clock moves by one unit at a time, a bounded number
// of times; timeouts, the restart window and terminate's grace are a few units.
//
// Checks (invariant IDs from proofs/INVARIANTS.md): POOL-1 each task resolved
// at most once, only with an outcome the event allows, and at every end state
// exactly once, with the pool Terminated and every worker reaped; POOL-2 a
// task never starts after its user's cancel won, runs at most 1 + retries
// times, the gate is asked about the queue's front and each yes is sent;
// POOL-3 active workers at the target while running (or shutting down with
// work queued), no idle worker left open once a shutdown drained the queue;
// POOL-5 the restart limit and initializer failures break the pool (from the
// world's own record), a broken pool has every task final and every worker
// killed; POOL-6 depth, max_tasks_per_child, nothing behind a timed task,
// timeouts from the first knowledge of the start, next_deadline, the kill of
// a timed-out task's worker; POOL-7 the machine knows a task started exactly
// when the world told it, a sent task not started is cancelled by
// shutdown(cancel_futures), a faulty report is refused and its worker
// killed; POOL-8 after a death, only started tasks are lost or retried and
// every unstarted one is queued again, uncounted; POOL-9 no ready worker
// idles while the queue's front or another worker's unstarted pipeline could
// go to it; LIFE-6 terminate's SIGKILL after the grace; POOL-11 the break
// is published to submitters (the machine's `broken` action, once, when it
// breaks) before the first future says broken, and a task cancelled by a
// shutdown or terminate is resolved only once the machine's phase says shut
// down (its submits are refused).
//
// Every Machine twin of pool_model.cpp is declared here too (the pool_edge_*
// ones belong to the threaded Relacy models):
// KEEL-TWIN pool_retry_unbounded pool.explore.w1-mtpc1
// KEEL-TWIN pool_respawn_unlimited pool.explore.w1d2
// KEEL-TWIN pool_no_replace_in_shutdown pool.explore.w1-mtpc1
// KEEL-TWIN pool_result_accepts_non_head pool.explore.w1d2
// KEEL-TWIN pool_late_result_resolved pool.explore.w1-mtpc1-timed
// KEEL-TWIN pool_gate_not_consulted pool.explore.w1-mtpc1
// KEEL-TWIN pool_no_close_at_max_tasks pool.explore.w1-mtpc1
// KEEL-TWIN pool_notice_restarts_clock pool.explore.w1-mtpc1-timed
// KEEL-TWIN pool_revoke_without_gate pool.explore.w1-mtpc1
// KEEL-TWIN pool_exit_loses_unstarted pool.explore.w1-mtpc1
// KEEL-TWIN pool_cancel_spares_sent pool.explore.w1-mtpc1
// KEEL-TWIN pool_send_behind_timed pool.explore.w1d2
// KEEL-TWIN pool_no_steal pool.explore.w2d2
// and two that only this explorer's checks judge (initializer deaths, LIFE-6):
// KEEL-TWIN pool_init_death_respawns pool.explore.w2-init
// KEEL-TWIN pool_escalation_skips_signalled pool.explore.w2-init
// and the old order of a break (futures before submitters, POOL-11):
// KEEL-TWIN pool_break_published_after_resolve pool.explore.w1-mtpc1
// The Machine halves of Spin twins (proofs/spin-code-twins.md):
// KEEL-TWIN pool_requeue_only_head pool.explore.w1d2
// KEEL-TWIN pool_tick_only_ready pool.explore.w1-mtpc1-timed
// KEEL-TWIN pool_send_to_retiring pool.explore.w1-mtpc1
// KEEL-TWIN pool_mark_started_through pool.explore.w1d2
// KEEL-TWIN pool_cancel_futures_stops_at_started pool.explore.w1d2
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "../../kernel/src/process_pool/machine.cpp"
#include "../../tests/support/sim_pool.hpp"
#include "explore.hpp"

namespace {

using keel::explore::Violation;
// The vocabulary every simulated pool world speaks (Slot, Msg, name_of, str
// and the machine's names): tests/support/sim_pool.hpp. This world is not the
// one the fuzz target, the property test and the Relacy model share: it keeps
// each worker's frames in one vector and its state hashable.
using namespace keel::pool_sim;

constexpr Nanos kNever = Nanos::max();

std::string tn(TaskId t) { return "t" + str(t); }
std::string wn(WorkerId w) { return "w" + str(w); }

#define EXPECT(invariant, cond, what)        \
  if (!(cond)) throw Violation {             \
      std::string(invariant) + ": " + (what) \
    }

// The bounds of one row.
struct Bounds {
  MachineConfig machine;
  unsigned tasks = 2;       // submissions, ids 1..tasks in order
  unsigned timed = 0;       // bit t: task t carries a timeout of one unit
  unsigned deaths = 1;      // unplanned deaths (crashes), in all
  unsigned clock = 1;       // clock moves of one unit, in all
  bool cancels = true;      // the user's cancel
  bool discard = false;     // discard_oldest
  bool bad_report = false;  // one faulty report
  bool terminate = true;    // terminate(SIGTERM), terminate(SIGKILL)
  bool supervisor = false;  // supervisor_failed
  std::string describe() const {
    const auto& m = machine;
    std::string s = "exhaustive(workers=" + str(m.workers) + ",depth=" + str(m.depth) + ",tasks=" + str(tasks) +
                    ",retries=" + str(m.retries) + ",mtpc=" + str(m.max_tasks_per_child) + ",deaths<=" + str(deaths) +
                    ",restart_limit=" + str(m.restart_limit) +
                    ",window=" + str(static_cast<std::uint64_t>(m.restart_window.count())) + ",clock<=" + str(clock);
    for (unsigned t = 1; t <= tasks; ++t)
      if ((timed >> t & 1) != 0) s += ",t" + str(t) + ".timeout=1";
    if (m.has_initializer) s += ",initializer";
    if (m.terminate_grace != kNever) s += ",grace=" + str(static_cast<std::uint64_t>(m.terminate_grace.count()));
    if (cancels) s += ",cancel";
    if (discard) s += ",discard_oldest";
    if (bad_report) s += ",faulty<=1";
    if (supervisor) s += ",supervisor_failed";
    return s + ")";
  }
};

// A frame the machine sent to a worker, until the driver read its answer or skip.
struct Frame {
  TaskId task;
  Slot slot = Slot::sent;
  bool taken = false;     // the worker took it: won its slot (and wrote started) or wrote skipped
  bool answered = false;  // it wrote the result
  bool revoked = false;   // the machine took it back: a stale frame until its skip is read
  bool gone = false;      // the machine let go of it otherwise (timed out, resolved at a break)
  bool known = false;     // the machine knows it started (its notice was read, or a revoke lost)
  Nanos known_at{0};
  bool held() const { return !revoked && !gone; }
};

struct Wk {
  WorkerId id = 0;
  bool ready = false, closed = false, killed = false, init_failed = false, mute = false, dying = false;
  int signal = 0;
  unsigned sent = 0;
  TaskId timed_out = 0;
  std::vector<Frame> frames;  // in the order sent
  std::vector<Msg> channel;   // written, not read yet
  bool active() const { return !closed && !killed; }
  // The task it won and has not answered; frames.size() if none.
  std::size_t running() const {
    for (std::size_t i = 0; i < frames.size(); ++i)
      if (frames[i].taken && frames[i].slot == Slot::started && !frames[i].answered) return i;
    return frames.size();
  }
  std::size_t next_untaken() const {
    for (std::size_t i = 0; i < frames.size(); ++i)
      if (!frames[i].taken) return i;
    return frames.size();
  }
  std::size_t held_count() const {
    return static_cast<std::size_t>(
        std::count_if(frames.begin(), frames.end(), [](const Frame& f) { return f.held(); }));
  }
  std::size_t stale_count() const {
    return static_cast<std::size_t>(
        std::count_if(frames.begin(), frames.end(), [](const Frame& f) { return f.revoked; }));
  }
  bool has_stale(TaskId t) const {
    return std::any_of(frames.begin(), frames.end(), [&](const Frame& f) { return f.revoked && f.task == t; });
  }
  const Frame* first_held() const {
    for (const Frame& f : frames)
      if (f.held()) return &f;
    return nullptr;
  }
  const Frame* last_held() const {
    for (auto f = frames.rbegin(); f != frames.rend(); ++f)
      if (f->held()) return &*f;
    return nullptr;
  }
};

struct Tk {
  bool submitted = false, cancelled = false, final = false;
  Nanos timeout{0};
  Outcome outcome = Outcome::value;
  unsigned starts = 0;  // slots it won: its runs
  unsigned lost = 0;    // runs on a worker that died holding it
};

struct Ev {
  enum Kind : std::uint8_t {
    submit,
    cancel,
    ready,
    init_fail,
    take,
    finish,
    read,
    exit,
    crash,
    crash_won,
    bad,
    tick,
    clock,
    discard,
    shutdown,
    terminate,
    supervisor_failed
  } kind;
  WorkerId w = 0;
  TaskId t = 0;
  int x = 0;  // submit: the timeout; bad: what is reported; shutdown: cancel_futures; terminate: the signal
};

class World;

// The one StartGate every copy of the machine holds; it answers for the world
// playing an event now.
struct Gate final : keel::pool::StartGate {
  World* world = nullptr;
  bool dispatch(TaskId t, WorkerId w) override;
  bool revoke(TaskId t, WorkerId w) override;
};
Gate gate;

class World {
 public:
  explicit World(const Bounds& b) : b_(&b), m_(b.machine, gate), tasks_(b.tasks + 1) {
    gate.world = this;
    begin(Ev::tick);  // the start
    m_.start(now_);
    settle();
    EXPECT("POOL-3", live() == b.machine.workers, "start spawned " + str(live()) + " workers");
    check();
  }

  // ---- the explorer's interface

  std::vector<Ev> events() const {
    std::vector<Ev> e;
    const bool broken = m_.phase() == Phase::broken;
    if (!closed_ && submitted_ < b_->tasks) {
      e.push_back({Ev::submit, 0, submitted_ + 1, (b_->timed >> (submitted_ + 1) & 1) != 0 ? 1 : 0});
    }
    if (b_->cancels) {
      for (TaskId t = 1; t <= submitted_; ++t)
        if (cancellable(t)) e.push_back({Ev::cancel, 0, t});
    }
    for (const Wk& w : workers_) {
      if (!w.ready && !w.init_failed && !w.mute && !w.killed) {
        e.push_back({Ev::ready, w.id});
        if (b_->machine.has_initializer) e.push_back({Ev::init_fail, w.id});
      }
      const bool running = w.running() < w.frames.size();
      if (!running && w.next_untaken() < w.frames.size()) e.push_back({Ev::take, w.id});
      if (running) e.push_back({Ev::finish, w.id});
      if (!w.channel.empty()) e.push_back({Ev::read, w.id});
      if (w.killed || w.init_failed || (w.closed && !running && w.next_untaken() == w.frames.size())) {
        e.push_back({Ev::exit, w.id});
      }
      if (deaths_ < b_->deaths && !w.killed) {
        e.push_back({Ev::crash, w.id});
        const std::size_t n = w.next_untaken();
        if (!running && n < w.frames.size() && w.frames[n].slot == Slot::sent) e.push_back({Ev::crash_won, w.id});
      }
      if (b_->bad_report && !bad_used_ && !w.mute && !w.frames.empty()) {
        for (int kind = 0; kind < 3; ++kind) e.push_back({Ev::bad, w.id, 0, kind});
      }
    }
    if (m_.next_deadline() <= now_) e.push_back({Ev::tick});
    if (clock_used_ < b_->clock) e.push_back({Ev::clock});
    if (b_->discard && !closed_ && !broken && !queue_.empty()) e.push_back({Ev::discard});
    if (!closed_) {
      e.push_back({Ev::shutdown, 0, 0, 0});
      e.push_back({Ev::shutdown, 0, 0, 1});
    }
    if (b_->terminate && !terminating_) {
      e.push_back({Ev::terminate, 0, 0, 15});
      e.push_back({Ev::terminate, 0, 0, 9});
    }
    if (b_->supervisor && !supervisor_used_ && !broken) e.push_back({Ev::supervisor_failed});
    return e;
  }

  std::string describe(const Ev& e) const {
    switch (e.kind) {
      case Ev::submit:
        return "submit " + tn(e.t) + (e.x ? " (timeout 1)" : "");
      case Ev::cancel:
        return "the user cancels " + tn(e.t);
      case Ev::ready:
        return wn(e.w) + " ready";
      case Ev::init_fail:
        return wn(e.w) + "'s initializer fails";
      case Ev::take: {
        const Wk& w = *find(e.w);
        const Frame& f = w.frames[w.next_untaken()];
        return wn(e.w) + (f.slot == Slot::sent ? " wins " + tn(f.task) + "'s slot, writes started"
                                               : " finds " + tn(f.task) + "'s slot dead, writes skipped");
      }
      case Ev::finish:
        return wn(e.w) + " writes the result of " + tn(find(e.w)->frames[find(e.w)->running()].task);
      case Ev::read: {
        static const char* const k[] = {"started", "skipped", "result"};
        std::string s = "the driver reads " + wn(e.w) + "'s";
        for (const Msg& m : find(e.w)->channel) s += std::string(" ") + k[m.kind] + " " + tn(m.task) + ",";
        s.pop_back();
        return s;
      }
      case Ev::exit:
        return wn(e.w) + " exits (" + exit_reason(*find(e.w)) + ")";
      case Ev::crash:
        return wn(e.w) + " dies";
      case Ev::crash_won:
        return wn(e.w) + " wins its next slot and dies before saying so";
      case Ev::bad: {
        static const char* const k[] = {"a result", "a start", "a skip"};
        return wn(e.w) + " (faulty) reports " + k[e.x] + " of " + tn(bogus(*find(e.w)));
      }
      case Ev::tick:
        return "tick";
      case Ev::clock:
        return "the clock moves to " + str(static_cast<std::uint64_t>(now_.count() + 1));
      case Ev::discard:
        return "discard_oldest";
      case Ev::shutdown:
        return e.x ? "shutdown(cancel_futures)" : "shutdown(wait)";
      case Ev::terminate:
        return e.x == 9 ? "terminate(SIGKILL)" : "terminate(SIGTERM)";
      case Ev::supervisor_failed:
        return "the supervisor fails";
    }
    return "?";
  }

  std::string log() const { return log_; }

  void apply(const Ev& e) {
    gate.world = this;
    log_.clear();
    switch (e.kind) {
      case Ev::submit:
        submit(e.t, Nanos(e.x));
        break;
      case Ev::cancel:
        cancel(e.t);
        break;
      case Ev::ready:
        ready(e.w);
        break;
      case Ev::init_fail:
        init_fail(e.w);
        break;
      case Ev::take:
        take(*find(e.w), true);
        break;
      case Ev::finish: {
        Wk& w = *find(e.w);
        Frame& f = w.frames[w.running()];
        f.answered = true;
        write(w, {Msg::result, f.task});
        break;
      }
      case Ev::read:
        // The driver reads what the channel holds now, in order.
        while (!find(e.w)->channel.empty()) {
          deliver(e.w);
          if (!find(e.w)->channel.empty()) check();
        }
        break;
      case Ev::exit:
        exited(e.w, exit_code(*find(e.w)));
        break;
      case Ev::crash:
        ++deaths_;
        exited(e.w, -9);
        break;
      case Ev::crash_won:
        ++deaths_;
        take(*find(e.w), false);
        exited(e.w, -9);
        break;
      case Ev::bad:
        bad(e.w, e.x);
        break;
      case Ev::tick:
        tick();
        break;
      case Ev::clock:
        ++clock_used_;
        now_ += Nanos(1);
        break;
      case Ev::discard:
        discard();
        break;
      case Ev::shutdown:
        shutdown(e.x != 0);
        break;
      case Ev::terminate:
        terminate(e.x);
        break;
      case Ev::supervisor_failed:
        supervisor_failed();
        break;
    }
    check();
  }

  // No event is left: every task resolved exactly once, every worker reaped, Terminated.
  void at_end() const {
    EXPECT("POOL-1", m_.terminated() && terminated_,
           "nothing more can happen, but the pool has not terminated (" + str(live()) + " workers, " +
               str(queue_.size()) + " queued, phase " + str(static_cast<int>(m_.phase())) + ")");
    EXPECT("POOL-4", workers_.empty(), "terminated with workers left");
    for (TaskId t = 1; t <= submitted_; ++t) EXPECT("POOL-1", tasks_[t].final, tn(t) + " never resolved");
  }

  void encode(std::string& out) const {
    m_.encode_state(out);
    const auto put = [&out](std::int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(now_.count());
    put(escalate_.count());
    put(submitted_ | deaths_ << 4 | clock_used_ << 8 | bad_used_ << 12 | closed_ << 13 | terminating_ << 14 |
        terminated_ << 15 | supervisor_used_ << 16);
    for (TaskId t = 1; t <= submitted_; ++t) {
      const Tk& k = tasks_[t];
      put(k.cancelled | k.final << 1 | static_cast<int>(k.outcome) << 2 | k.starts << 8 | k.lost << 16);
      put(k.timeout.count());
    }
    put(static_cast<std::int64_t>(queue_.size()));
    for (TaskId t : queue_) put(static_cast<std::int64_t>(t));
    put(static_cast<std::int64_t>(restarts_.size()));
    for (Nanos r : restarts_) put(r.count());
    const unsigned mtpc = b_->machine.max_tasks_per_child;
    for (const Wk& w : workers_) {
      put(w.ready | w.closed << 1 | w.killed << 2 | w.init_failed << 3 | w.mute << 4 | w.signal << 8 |
          (mtpc == 0 ? 0 : std::min(w.sent, mtpc)) << 16);
      put(static_cast<std::int64_t>(w.timed_out));
      put(static_cast<std::int64_t>(w.frames.size()));
      for (const Frame& f : w.frames) {
        put(static_cast<std::int64_t>(f.task) | static_cast<int>(f.slot) << 8 | f.taken << 10 | f.answered << 11 |
            f.revoked << 12 | f.gone << 13 | f.known << 14);
        put(f.known ? f.known_at.count() : 0);
      }
      put(static_cast<std::int64_t>(w.channel.size()));
      for (const Msg& m : w.channel) put(static_cast<std::int64_t>(m.task) | m.kind << 8);
    }
  }

  // ---- the start slots

  bool gate_dispatch(TaskId t, WorkerId wid) {
    EXPECT("POOL-2", t >= 1 && t <= submitted_, "the gate was asked about unknown task " + tn(t));
    Tk& k = tasks_[t];
    EXPECT("POOL-1", !k.final, "the gate was asked about final task " + tn(t));
    for (const Wk& o : workers_) {
      if (o.dying) continue;
      for (const Frame& f : o.frames) {
        EXPECT("POOL-2", !(f.task == t && f.held()),
               tn(t) + " dispatched to " + wn(wid) + " while " + wn(o.id) + " holds it");
      }
    }
    EXPECT("POOL-2", !queue_.empty() && queue_.front() == t,
           "the gate was asked about " + tn(t) + ", not the queue's front");
    Wk* w = find(wid);
    EXPECT("POOL-6", w && !w->dying && w->ready && w->active(),
           tn(t) + " dispatched to " + wn(wid) + ", which is not ready and open");
    EXPECT("POOL-7", std::none_of(w->frames.begin(), w->frames.end(), [&](const Frame& f) { return f.task == t; }),
           tn(t) + " dispatched to " + wn(wid) + ", which still holds a frame of it");
    const Frame* last = w->last_held();
    EXPECT("POOL-6", w->held_count() < b_->machine.depth && w->held_count() + w->stale_count() < b_->machine.depth,
           "send to " + wn(wid) + " holding " + str(w->held_count()) + " (and " + str(w->stale_count()) +
               " stale), depth " + str(b_->machine.depth));
    EXPECT("POOL-6", !last || tasks_[last->task].timeout <= Nanos::zero(),
           tn(t) + " sent behind timed task " + tn(last ? last->task : 0));
    EXPECT("POOL-2", k.lost <= b_->machine.retries, tn(t) + " sent for a run beyond 1 + retries");
    queue_.erase(queue_.begin());
    if (k.cancelled) {
      k.final = true;  // dropped: its future was already cancelled
      k.outcome = Outcome::cancelled;
      log_ += "; gate drops " + tn(t);
      return false;
    }
    w->frames.push_back(Frame{t});
    expected_sends_.emplace_back(wid, t);
    return true;
  }

  bool gate_revoke(TaskId t, WorkerId wid) {
    Wk* w = find(wid);
    EXPECT("POOL-7", w != nullptr, "revoke of " + tn(t) + " at " + wn(wid) + ", gone");
    auto f = std::find_if(w->frames.begin(), w->frames.end(), [&](const Frame& x) { return x.task == t && x.held(); });
    EXPECT("POOL-7", f != w->frames.end(), "revoke of " + tn(t) + " at " + wn(wid) + ", which it does not hold");
    EXPECT("POOL-7", !f->known, "revoke of " + tn(t) + " at " + wn(wid) + ", known to have started");
    if (f->slot == Slot::started) {
      f->known = true;
      f->known_at = now_;
      log_ += "; revoke " + tn(t) + " at " + wn(wid) + " loses";
      return false;
    }
    f->slot = Slot::dead;
    log_ += "; revoke " + tn(t) + " at " + wn(wid);
    if (w->dying) return true;  // its fate was predicted with the exit
    f->revoked = true;
    if (m_.phase() == Phase::broken) return true;  // resolved broken next
    if (cancel_all_) {
      allow_cancel_.push_back(t);
      return true;
    }
    // Work conservation: it goes to an idle worker at once.
    EXPECT("POOL-9", queue_.empty(), tn(t) + " taken back from " + wn(wid) + " while tasks are queued");
    queue_.insert(queue_.begin(), t);
    return true;
  }

 private:
  Wk* find(WorkerId id) {
    for (Wk& w : workers_)
      if (w.id == id) return &w;
    return nullptr;
  }
  const Wk* find(WorkerId id) const { return const_cast<World*>(this)->find(id); }
  unsigned live() const {
    return static_cast<unsigned>(std::count_if(workers_.begin(), workers_.end(), [](const Wk& w) { return !w.dying; }));
  }
  unsigned active() const {
    return static_cast<unsigned>(
        std::count_if(workers_.begin(), workers_.end(), [](const Wk& w) { return !w.dying && w.active(); }));
  }
  bool cancellable(TaskId t) const {
    const Tk& k = tasks_[t];
    if (k.final || k.cancelled) return false;
    for (const Wk& w : workers_)
      for (const Frame& f : w.frames)
        if (f.task == t && f.held() && f.slot == Slot::started) return false;  // too late
    return true;
  }
  static std::string exit_reason(const Wk& w) {
    return w.killed ? "killed" : w.init_failed ? "its initializer failed" : "closed, nothing left";
  }
  static int exit_code(const Wk& w) { return w.killed ? -w.signal : w.init_failed ? 1 : 0; }
  TaskId bogus(const Wk& w) const {
    // The second task it holds, else one never submitted.
    int n = 0;
    for (const Frame& f : w.frames)
      if (f.held() && n++ == 1) return f.task;
    return b_->tasks + 1;
  }

  void begin(Ev::Kind k, WorkerId w = 0) {
    ev_ = k;
    ev_worker_ = w;
    before_ = m_.phase();
    counters_ = m_.counters();
    allow_value_ = 0;
    allow_lost_.clear();
    allow_cancel_.clear();
    allow_timeout_.clear();
    to_kill_.clear();
    cancel_all_ = false;
    escalating_ = false;
    exit_code_ = 0;
  }

  void write(Wk& w, Msg m) {
    if (!w.mute) w.channel.push_back(m);
  }

  // The worker takes its next frame: wins its slot (and says so, if `say`),
  // or finds it dead and writes skipped.
  void take(Wk& w, bool say) {
    Frame& f = w.frames[w.next_untaken()];
    f.taken = true;
    if (f.slot != Slot::sent) {
      write(w, {Msg::skipped, f.task});
      return;
    }
    f.slot = Slot::started;
    Tk& k = tasks_[f.task];
    ++k.starts;
    EXPECT("POOL-7", !k.final, tn(f.task) + " started at " + wn(w.id) + " after its future was final");
    EXPECT("POOL-2", !k.cancelled, tn(f.task) + " started at " + wn(w.id) + " after its user's cancel won");
    EXPECT("POOL-2", k.starts <= 1 + b_->machine.retries, tn(f.task) + " started " + str(k.starts) + " times");
    if (say) write(w, {Msg::started, f.task});
  }

  void submit(TaskId t, Nanos timeout) {
    tasks_[t].submitted = true;
    tasks_[t].timeout = timeout;
    submitted_ = static_cast<unsigned>(t);
    queue_.push_back(t);
    const bool broken = m_.phase() == Phase::broken;
    begin(Ev::submit);
    m_.submit(t, timeout, now_);
    settle();
    if (broken)
      EXPECT("POOL-1", tasks_[t].final && tasks_[t].outcome == Outcome::broken,
             tn(t) + " submitted to a broken pool is not broken");
  }

  void cancel(TaskId t) {
    tasks_[t].cancelled = true;
    for (Wk& w : workers_)
      for (Frame& f : w.frames)
        if (f.task == t && f.held()) f.slot = Slot::dead;
  }

  void ready(WorkerId id) {
    find(id)->ready = true;
    begin(Ev::ready, id);
    m_.worker_ready(id, now_);
    settle();
  }

  void init_fail(WorkerId id) {
    find(id)->init_failed = true;
    const bool broken = m_.phase() == Phase::broken;
    begin(Ev::init_fail, id);
    m_.init_failed(id, now_);
    settle();
    EXPECT("POOL-5", m_.phase() == Phase::broken, "an initializer failure did not break the pool");
    if (!broken) {
      EXPECT("POOL-5", m_.broken_reason() == BrokenReason::initializer_failed && m_.broken_worker() == id,
             "broken for the wrong reason or worker");
    }
  }

  void deliver(WorkerId id) {
    Wk& w = *find(id);
    const Msg msg = w.channel.front();
    w.channel.erase(w.channel.begin());
    const TaskId t = msg.task;
    auto f = std::find_if(w.frames.begin(), w.frames.end(), [&](const Frame& x) { return x.task == t; });
    const Frame* first = w.first_held();
    begin(Ev::read, id);
    bool accepted = false;
    switch (msg.kind) {
      case Msg::started:
        if (f->held()) {
          EXPECT("POOL-7", first == &*f, wn(id) + " started " + tn(t) + ", which the machine should hold first");
          if (!f->known) f->known_at = now_;
          f->known = true;
        }
        accepted = m_.started(id, t, now_);
        EXPECT("POOL-7", accepted, "the machine refused a legitimate start notice");
        break;
      case Msg::skipped:
        if (f->held()) {
          EXPECT("POOL-7", first == &*f, wn(id) + " skipped " + tn(t) + ", which the machine should hold first");
          queue_.insert(queue_.begin(), t);  // its user won the slot: back to the front, the gate decides
        }
        w.frames.erase(f);
        accepted = m_.skipped(id, t, now_);
        EXPECT("POOL-7", accepted, "the machine refused a legitimate skip");
        break;
      case Msg::result:
        if (f->held()) {
          EXPECT("POOL-7", first == &*f, wn(id) + " answered " + tn(t) + ", which the machine should hold first");
          allow_value_ = t;
        } else {
          // Timed out (its late answer is ignored) or resolved at the break.
          EXPECT("POOL-7", f->gone, "an answer of " + tn(t) + " that the machine took back");
        }
        if (w.timed_out == t) w.timed_out = 0;
        w.frames.erase(f);
        accepted = m_.result(id, t, now_);
        EXPECT("POOL-1", accepted, "the machine refused a worker's report of its first task");
        break;
    }
    settle();
    if (allow_value_ != 0) {
      EXPECT("POOL-1", tasks_[t].final && tasks_[t].outcome == Outcome::value,
             tn(t) + " answered but not resolved value");
    }
  }

  void bad(WorkerId id, int kind) {
    bad_used_ = true;
    Wk& w = *find(id);
    const TaskId t = bogus(w);
    const bool broken = m_.phase() == Phase::broken;
    const bool was_killed = w.killed;
    begin(Ev::bad, id);
    const bool accepted = kind == 0   ? m_.result(id, t, now_)
                          : kind == 1 ? m_.started(id, t, now_)
                                      : m_.skipped(id, t, now_);
    EXPECT("POOL-7", accepted == broken,
           std::string("a report of a task not the worker's first was ") + (accepted ? "accepted" : "refused"));
    settle();
    if (!broken) {
      Wk& k = *find(id);
      EXPECT("POOL-7", k.killed && (was_killed || k.signal == 9), "a faulty worker was not killed with signal 9");
      k.mute = true;
      k.channel.clear();
    }
  }

  // A worker is reaped: the driver read its channel to the end first.
  void exited(WorkerId id, int code) {
    while (!find(id)->channel.empty()) {
      deliver(id);
      check();
    }
    Wk& w = *find(id);
    w.dying = true;
    begin(Ev::exit, id);
    exit_code_ = code;
    const bool broken_before = m_.phase() == Phase::broken;
    bool expect_break = false, expect_replacement = false;
    BrokenReason reason = BrokenReason::none;
    std::uint64_t retried = 0, requeued = 0;
    if (!broken_before) {
      if (!w.ready && w.active() && b_->machine.has_initializer) {
        expect_break = true;
        reason = BrokenReason::initializer_died;
      } else {
        // The slot says whether each task it held started (lost, or retried)
        // or not (back to the queue uncounted, or cancelled while terminating).
        std::vector<TaskId> back;
        for (const Frame& f : w.frames) {
          if (!f.held()) continue;
          Tk& k = tasks_[f.task];
          if (f.slot == Slot::started) {
            ++k.lost;
            if (!terminating_ && k.lost <= b_->machine.retries) {
              back.push_back(f.task);
              ++retried;
            } else {
              allow_lost_.push_back(f.task);
            }
          } else if (terminating_) {
            allow_cancel_.push_back(f.task);
          } else {
            back.push_back(f.task);
            ++requeued;
          }
        }
        const bool planned = w.closed && !w.killed && w.held_count() == 0 && code == 0;
        const bool useful = !terminating_ && (m_.phase() == Phase::running || queue_.size() + back.size() > 0);
        if (!planned && w.active() && useful && active() < b_->machine.workers) {
          while (!restarts_.empty() && now_ - restarts_.front() >= b_->machine.restart_window) {
            restarts_.erase(restarts_.begin());
          }
          if (restarts_.size() >= b_->machine.restart_limit) {
            expect_break = true;
            reason = BrokenReason::restart_limit;
          } else {
            expect_replacement = true;
            restarts_.push_back(now_);
          }
        }
        queue_.insert(queue_.begin(), back.begin(), back.end());
      }
    }
    m_.worker_exited(id, code, now_);
    settle();
    workers_.erase(std::find_if(workers_.begin(), workers_.end(), [&](const Wk& x) { return x.id == id; }));
    EXPECT("POOL-3", m_.state_of(id) == WState::exited && m_.in_flight(id) == 0, "the machine still holds " + wn(id));
    if (!broken_before) {
      EXPECT(
          "POOL-5", (m_.phase() == Phase::broken) == expect_break,
          std::string(expect_break ? "the pool should have broken (" : "the pool broke (") +
              (reason == BrokenReason::initializer_died ? "death before ready with an initializer" : "restart limit") +
              ", " + str(restarts_.size()) + " replacements in the window, limit " + str(b_->machine.restart_limit) +
              ")");
    }
    if (expect_break) {
      EXPECT("POOL-5", m_.broken_reason() == reason && m_.broken_worker() == id && m_.broken_code() == code,
             "broken with the wrong reason, worker or code");
    } else if (!broken_before) {
      EXPECT("POOL-5", m_.counters().replacements - counters_.replacements == (expect_replacement ? 1u : 0u),
             expect_replacement ? "no replacement for an unplanned death" : "a replacement nothing called for");
      for (TaskId t : allow_lost_) {
        EXPECT("POOL-2", tasks_[t].final && tasks_[t].outcome == Outcome::lost,
               "started " + tn(t) + " (" + str(tasks_[t].lost) + " lost runs, retries " + str(b_->machine.retries) +
                   ") was not resolved lost");
      }
      for (TaskId t : allow_cancel_) {
        EXPECT("POOL-1", tasks_[t].final && tasks_[t].outcome == Outcome::cancelled,
               "unstarted " + tn(t) + " of a worker dying while terminating was not cancelled");
      }
    }
    EXPECT(
        "POOL-8",
        m_.counters().retried - counters_.retried == retried && m_.counters().requeued - counters_.requeued == requeued,
        "retried/requeued +" + str(m_.counters().retried - counters_.retried) + "/+" +
            str(m_.counters().requeued - counters_.requeued) + ", expected +" + str(retried) + "/+" + str(requeued) +
            " (only a started task is retried; every unstarted one is requeued)");
  }

  void tick() {
    begin(Ev::tick);
    if (escalate_ <= now_) {
      escalating_ = true;
      escalate_ = kNever;
    }
    if (m_.phase() != Phase::broken) {
      for (const Wk& w : workers_) {
        if (w.killed || !(w.ready || w.closed)) continue;
        for (const Frame& f : w.frames) {
          const Nanos timeout = tasks_[f.task].timeout;
          if (!f.held() || !f.known || timeout <= Nanos::zero() || f.known_at + timeout > now_) continue;
          allow_timeout_.push_back(f.task);
          to_kill_.push_back(w.id);
          break;
        }
      }
    }
    m_.tick(now_);
    settle();
    for (TaskId t : allow_timeout_) {
      EXPECT("POOL-6", tasks_[t].final && tasks_[t].outcome == Outcome::timed_out,
             tn(t) + " ran past its timeout but was not resolved timed_out");
    }
    for (const Wk& w : workers_) {
      const bool due = std::find(to_kill_.begin(), to_kill_.end(), w.id) != to_kill_.end();
      EXPECT("POOL-6", !due || (w.killed && w.signal == 9),
             "the worker of a timed-out task, " + wn(w.id) + ", was not killed");
      EXPECT("LIFE-6", !escalating_ || !w.killed || w.signal == 9,
             wn(w.id) + " not sent SIGKILL after terminate's grace");
    }
  }

  void discard() {
    const TaskId front = queue_.front();
    begin(Ev::discard);
    allow_cancel_.push_back(front);
    m_.discard_oldest(now_);
    settle();
    EXPECT("POOL-1", tasks_[front].final && tasks_[front].outcome == Outcome::cancelled,
           "discard_oldest did not cancel the oldest queued task " + tn(front));
  }

  void shutdown(bool cancel_futures) {
    closed_ = true;
    begin(Ev::shutdown);
    cancel_all_ = cancel_futures;
    if (cancel_futures && m_.phase() != Phase::broken) allow_cancel_ = queue_;
    m_.shutdown(cancel_futures, now_);
    settle();
    if (cancel_futures) check_cancelled_all();
    EXPECT("POOL-1", m_.phase() != Phase::running, "still running after shutdown");
  }

  void terminate(int signal) {
    closed_ = terminating_ = true;
    begin(Ev::terminate);
    cancel_all_ = true;
    if (m_.phase() != Phase::broken) allow_cancel_ = queue_;
    const bool grace = signal != 9 && b_->machine.terminate_grace != kNever && live() > 0;
    m_.terminate(signal, now_);
    settle();
    if (grace) escalate_ = std::min(escalate_, now_ + b_->machine.terminate_grace);
    check_cancelled_all();
    for (const Wk& w : workers_) EXPECT("POOL-1", w.killed, wn(w.id) + " not killed by terminate");
  }

  void supervisor_failed() {
    supervisor_used_ = true;
    begin(Ev::supervisor_failed);
    m_.supervisor_failed(now_);
    settle();
    EXPECT("POOL-5", m_.phase() == Phase::broken && m_.broken_reason() == BrokenReason::supervisor_failed,
           "the supervisor's failure did not break the pool");
  }

  // shutdown(cancel_futures) and terminate cancel everything queued and every
  // sent task that had not started.
  void check_cancelled_all() {
    for (TaskId t : allow_cancel_) {
      EXPECT("POOL-1", tasks_[t].final && tasks_[t].outcome == Outcome::cancelled, tn(t) + " was not cancelled");
    }
    if (m_.phase() == Phase::broken) return;
    for (const Wk& w : workers_)
      for (const Frame& f : w.frames)
        EXPECT("POOL-7", !f.held() || f.slot == Slot::started,
               tn(f.task) + ", sent to " + wn(w.id) + " and not started, survived shutdown(cancel_futures)");
  }

  // Carries out and judges the actions of the event just played.
  void settle() {
    std::vector<Action> acts = std::move(m_.actions());
    m_.actions().clear();
    const bool broke_now = m_.phase() == Phase::broken && before_ != Phase::broken;
    std::uint64_t resolves = 0, sends = 0, spawns = 0;
    for (const Action& a : acts) {
      switch (a.kind) {
        case Action::spawn: {
          log_ += "; spawn " + wn(a.worker);
          EXPECT("POOL-3", a.worker > max_id_, "spawn reused worker id " + str(a.worker));
          EXPECT("POOL-3", !terminating_ && before_ != Phase::broken, "spawn while terminating or broken");
          max_id_ = a.worker;
          workers_.push_back(Wk{});
          workers_.back().id = a.worker;
          ++spawns;
          break;
        }
        case Action::send: {
          log_ += "; send " + tn(a.task) + " to " + wn(a.worker);
          ++sends;
          EXPECT("POOL-2", !expected_sends_.empty() && expected_sends_.front() == std::make_pair(a.worker, a.task),
                 "send of " + tn(a.task) + " to " + wn(a.worker) + " that the gate was not asked about");
          expected_sends_.erase(expected_sends_.begin());
          Wk* w = find(a.worker);
          EXPECT("POOL-6", w && !w->dying && w->ready && w->active(),
                 "send to " + wn(a.worker) + ", not ready and open");
          const unsigned mtpc = b_->machine.max_tasks_per_child;
          EXPECT("POOL-6", mtpc == 0 || w->sent < mtpc, "send to " + wn(a.worker) + " beyond max_tasks_per_child");
          ++w->sent;
          break;
        }
        case Action::close: {
          log_ += "; close " + wn(a.worker);
          Wk* w = find(a.worker);
          EXPECT("POOL-3", w && !w->dying && w->active(), "close of " + wn(a.worker) + ", not alive and open");
          const unsigned mtpc = b_->machine.max_tasks_per_child;
          const bool retire = mtpc != 0 && w->sent >= mtpc;
          const bool idle = m_.phase() == Phase::shutting_down && w->held_count() == 0;
          EXPECT("POOL-3", retire || idle, "close of " + wn(a.worker) + " with no reason to retire it");
          w->closed = true;
          break;
        }
        case Action::kill: {
          log_ += "; kill " + wn(a.worker) + " (" + std::to_string(a.code) + ")";
          Wk* w = find(a.worker);
          EXPECT("POOL-6", w && !w->dying, "kill of " + wn(a.worker) + ", not alive");
          const bool escalation = escalating_ && w->killed && w->signal != 9 && a.code == 9;
          EXPECT("POOL-6", !w->killed || escalation, "kill of " + wn(a.worker) + ", already killed");
          const bool timed = ev_ == Ev::tick && std::find(to_kill_.begin(), to_kill_.end(), a.worker) != to_kill_.end();
          const bool why =
              ev_ == Ev::terminate || broke_now || timed || escalation || (ev_ == Ev::bad && ev_worker_ == a.worker);
          EXPECT("POOL-6", why, "kill of " + wn(a.worker) + " for no reason");
          EXPECT("POOL-6", a.code == 9 || ev_ == Ev::terminate, "kill with signal " + std::to_string(a.code));
          w->killed = true;
          w->signal = a.code;
          break;
        }
        case Action::resolve: {
          log_ += std::string("; resolve ") + tn(a.task) + " " + name_of(a.outcome);
          ++resolves;
          EXPECT("POOL-1", a.task >= 1 && a.task <= submitted_, "resolve of unknown task " + tn(a.task));
          Tk& k = tasks_[a.task];
          EXPECT("POOL-1", !k.final,
                 tn(a.task) + " resolved " + name_of(a.outcome) + " but already final (" + name_of(k.outcome) + ")");
          EXPECT("POOL-1", !terminated_ || ev_ == Ev::submit, "resolve after Terminated");
          k.final = true;
          k.outcome = a.outcome;
          const auto in = [&](const std::vector<TaskId>& v) {
            return std::find(v.begin(), v.end(), a.task) != v.end();
          };
          bool allowed = false;
          switch (a.outcome) {
            case Outcome::value:
              allowed = ev_ == Ev::read && a.task == allow_value_;
              break;
            case Outcome::lost:
              allowed = ev_ == Ev::exit && in(allow_lost_) && a.worker == ev_worker_ && a.code == exit_code_;
              break;
            case Outcome::timed_out:
              allowed = ev_ == Ev::tick && in(allow_timeout_);
              break;
            case Outcome::cancelled:
              allowed = in(allow_cancel_);
              break;
            case Outcome::broken:
              allowed = m_.phase() == Phase::broken;
              EXPECT("POOL-11", refusing_, tn(a.task) + " resolved broken before the break was published");
              break;
          }
          if (a.outcome == Outcome::cancelled && (ev_ == Ev::shutdown || ev_ == Ev::terminate)) {
            EXPECT("POOL-11", m_.phase() != Phase::running,
                   tn(a.task) + " cancelled by a shutdown while the machine still accepts submits");
          }
          EXPECT("POOL-1", allowed,
                 tn(a.task) + " resolved " + name_of(a.outcome) + ", which this event does not allow");
          if (auto q = std::find(queue_.begin(), queue_.end(), a.task); q != queue_.end()) queue_.erase(q);
          for (Wk& w : workers_) {
            for (Frame& f : w.frames) {
              if (f.task != a.task || !f.held()) continue;
              f.gone = true;
              if (a.outcome == Outcome::timed_out) w.timed_out = a.task;
            }
          }
          break;
        }
        case Action::broken:
          log_ += "; broken";
          EXPECT("POOL-11", broke_now && !refusing_,
                 refusing_ ? "broken published twice" : "broken published, not broken");
          refusing_ = true;
          break;
        case Action::terminated:
          log_ += "; terminated";
          EXPECT("POOL-1", !terminated_, "Terminated twice");
          terminated_ = true;
          EXPECT("POOL-1", live() == 0 && queue_.empty(), "Terminated with workers or queued tasks left");
          for (TaskId t = 1; t <= submitted_; ++t)
            EXPECT("POOL-1", tasks_[t].final, "Terminated before " + tn(t) + " resolved");
          break;
      }
    }
    EXPECT("POOL-2", expected_sends_.empty(), "the gate said yes, but nothing was sent");
    EXPECT("POOL-11", refusing_ == (m_.phase() == Phase::broken), "the pool broke and submitters were not told");
    const auto& c = m_.counters();
    EXPECT("POOL-1",
           c.resolved - counters_.resolved == resolves && c.sent - counters_.sent == sends &&
               c.spawned - counters_.spawned == spawns,
           "the machine's counters disagree with the actions it emitted");
  }

  // What holds between any two events.
  void check() const {
    const Phase ph = m_.phase();
    std::size_t held = 0;
    for (const Wk& w : workers_) {
      EXPECT("POOL-6", w.held_count() <= b_->machine.depth, wn(w.id) + " holds more than depth tasks");
      held += w.held_count();
      EXPECT("POOL-6", m_.in_flight(w.id) == w.held_count() && m_.sent_to(w.id) == w.sent,
             wn(w.id) + " in flight/sent " + str(m_.in_flight(w.id)) + "/" + str(m_.sent_to(w.id)) +
                 ", the world says " + str(w.held_count()) + "/" + str(w.sent));
      for (const Frame& f : w.frames) {
        if (!f.held()) continue;
        EXPECT("POOL-7", m_.known_started(w.id, f.task) == f.known,
               std::string("the machine ") + (f.known ? "does not know" : "thinks") + " that " + tn(f.task) + " at " +
                   wn(w.id) + " started");
      }
      const WState s = m_.state_of(w.id);
      const bool ok = w.killed   ? s == WState::killing
                      : w.closed ? (s == WState::retiring || s == WState::closing)
                      : w.ready  ? s == WState::ready
                                 : s == WState::starting;
      EXPECT("POOL-3", ok, "state_of(" + wn(w.id) + ") disagrees with the world");
    }
    EXPECT("POOL-1",
           m_.live_workers() == live() && m_.active_workers() == active() && m_.queued() == queue_.size() &&
               m_.in_flight() == held,
           "machine live/active/queued/in flight " + str(m_.live_workers()) + "/" + str(m_.active_workers()) + "/" +
               str(m_.queued()) + "/" + str(m_.in_flight()) + ", the world says " + str(live()) + "/" + str(active()) +
               "/" + str(queue_.size()) + "/" + str(held));
    EXPECT("POOL-3", active() <= b_->machine.workers, str(active()) + " active workers, above the target");
    if (ph == Phase::running || (ph == Phase::shutting_down && !terminating_ && !queue_.empty())) {
      EXPECT("POOL-3", active() == b_->machine.workers,
             str(active()) + " active workers, target " + str(b_->machine.workers) +
                 (ph == Phase::running ? " (running)" : " (work queued)"));
    }
    if (ph == Phase::shutting_down && queue_.empty()) {
      for (const Wk& w : workers_) {
        EXPECT("POOL-3", !(w.active() && w.held_count() == 0),
               "idle " + wn(w.id) + " left open after the shutdown drained the queue");
      }
    }
    if (ph == Phase::broken) {
      for (TaskId t = 1; t <= submitted_; ++t) EXPECT("POOL-5", tasks_[t].final, "broken with " + tn(t) + " pending");
      for (const Wk& w : workers_) EXPECT("POOL-5", w.killed, "broken with " + wn(w.id) + " not killed");
    } else {
      check_work_conserved();
    }
    if (ph != Phase::running && workers_.empty() && queue_.empty()) {
      EXPECT("POOL-1", terminated_, "drained with no worker left but not Terminated");
    }
    EXPECT("POOL-1", m_.terminated() == terminated_, "terminated() disagrees");
    Nanos deadline = escalate_;
    for (const Wk& w : workers_) {
      if (w.killed || !(w.ready || w.closed)) continue;
      for (const Frame& f : w.frames) {
        const Nanos timeout = tasks_[f.task].timeout;
        if (f.held() && f.known && timeout > Nanos::zero()) deadline = std::min(deadline, f.known_at + timeout);
      }
    }
    EXPECT("POOL-6", m_.next_deadline() == deadline,
           "next_deadline() " + std::to_string(m_.next_deadline().count()) + ", expected " +
               std::to_string(deadline.count()));
  }

  // POOL-9: no ready worker waits for work that the queue, or another
  // worker's unstarted pipeline, holds for it.
  void check_work_conserved() const {
    const unsigned depth = b_->machine.depth;
    const auto room = [&](const Wk& w) { return w.held_count() < depth && w.held_count() + w.stale_count() < depth; };
    if (!queue_.empty()) {
      const TaskId front = queue_.front();
      for (const Wk& w : workers_) {
        if (!w.ready || !w.active()) continue;
        const Frame* last = w.last_held();
        const bool fits = room(w) && !w.has_stale(front) && (!last || tasks_[last->task].timeout <= Nanos::zero());
        EXPECT("POOL-9", !fits, tn(front) + " stays queued while " + wn(w.id) + " could take it");
      }
      return;
    }
    for (const Wk& idle : workers_) {
      if (!idle.ready || !idle.active() || idle.held_count() != 0 || !room(idle)) continue;
      for (const Wk& w : workers_) {
        const Frame* last = w.last_held();
        if (w.killed || w.held_count() < 2 || last->known) continue;
        EXPECT("POOL-9", idle.has_stale(last->task),
               wn(idle.id) + " is idle while " + wn(w.id) + " holds " + str(w.held_count()) + " with unstarted " +
                   tn(last->task) + " last");
      }
    }
  }

  const Bounds* b_;
  Machine m_;
  Nanos now_{0};
  Nanos escalate_ = kNever;      // terminate's SIGKILL, as the world predicts it
  std::vector<Tk> tasks_;        // task t is tasks_[t]
  std::vector<TaskId> queue_;    // the parent's queue as the contract predicts it
  std::vector<Wk> workers_;      // in spawn order, as the machine's
  std::vector<Nanos> restarts_;  // the world's own record of replacements
  unsigned submitted_ = 0, deaths_ = 0, clock_used_ = 0;
  bool bad_used_ = false, closed_ = false, terminating_ = false, terminated_ = false, supervisor_used_ = false;
  bool refusing_ = false;  // the machine published the break (it equals phase broken between events)
  WorkerId max_id_ = 0;

  // The event being played, and what it allows; not part of the state.
  Ev::Kind ev_ = Ev::tick;
  WorkerId ev_worker_ = 0;
  Phase before_ = Phase::running;
  keel::pool::MachineCounters counters_;
  TaskId allow_value_ = 0;
  std::vector<TaskId> allow_lost_, allow_cancel_, allow_timeout_;
  std::vector<WorkerId> to_kill_;
  bool cancel_all_ = false, escalating_ = false;
  int exit_code_ = 0;
  std::vector<std::pair<WorkerId, TaskId>> expected_sends_;
  std::string log_;
};

bool Gate::dispatch(TaskId t, WorkerId w) { return world->gate_dispatch(t, w); }
bool Gate::revoke(TaskId t, WorkerId w) { return world->gate_revoke(t, w); }

Bounds row(unsigned workers, unsigned depth, unsigned tasks) {
  Bounds b;
  b.machine.workers = workers;
  b.machine.depth = depth;
  b.machine.restart_window = Nanos(1);  // one clock move lets a replacement leave the window
  b.tasks = tasks;
  return b;
}

}  // namespace

int main() {
  // The rows run in this order; a twin stops at the first row that catches
  // it, so the small rows come first.
  std::vector<keel::explore::Row<Bounds>> rows;
  const char* const all = "POOL-1,POOL-2,POOL-3,POOL-4,POOL-5,POOL-6,POOL-7,POOL-8,POOL-9,POOL-11";
  {
    // Retirement after every task, a death, the supervisor failing.
    Bounds b = row(1, 2, 2);
    b.machine.max_tasks_per_child = 1;
    b.clock = 0;
    b.supervisor = true;
    rows.push_back({"pool.explore.w1-mtpc1", all, b});
  }
  {
    // A timed task on a retiring worker: its timeout must still be enforced
    // (a tick that looked at ready workers only would let it hang for ever).
    Bounds b = row(1, 1, 1);
    b.machine.max_tasks_per_child = 1;
    b.timed = 1u << 1;
    b.clock = 1;
    rows.push_back({"pool.explore.w1-mtpc1-timed", all, b});
  }
  {
    // An initializer: failures and deaths before ready; terminate's grace.
    Bounds b = row(2, 1, 2);
    b.machine.has_initializer = true;
    b.machine.terminate_grace = Nanos(1);
    b.clock = 1;
    rows.push_back({"pool.explore.w2-init", "POOL-1,POOL-3,POOL-4,POOL-5,POOL-7,POOL-11,LIFE-6", b});
  }
  {
    // One worker pipelining two, the second task timed: deaths at every
    // point, a retry, the restart limit and its window, a timeout,
    // discard_oldest, a faulty report, cancels, every shutdown form.
    Bounds b = row(1, 2, 3);
    b.machine.retries = 1;
    b.machine.restart_limit = 1;
    b.deaths = 2;
    b.timed = 1u << 2;
    b.clock = 1;
    b.discard = true;
    b.bad_report = true;
    rows.push_back({"pool.explore.w1d2", all, b});
  }
  {
    // Two workers pipelining two: stealing, revokes racing starts, a death, a
    // timeout behind the steals.
    Bounds b = row(2, 2, 3);
    b.timed = 1u << 3;
    b.clock = 1;
    rows.push_back({"pool.explore.w2d2", all, b});
  }
  return keel::explore::run_rows(rows, [](const Bounds& b) { return World(b); });
}
