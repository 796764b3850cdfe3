// keel::pool::Machine. See machine.hpp for the contract and
// the facts about workers and the driver that it relies on.
#include "machine.hpp"

#include <algorithm>

namespace keel::pool {

namespace {
// t + d, saturating at Nanos::max(): "no limit" is written as Nanos::max().
Nanos later(Nanos t, Nanos d) { return d >= Nanos::max() - t ? Nanos::max() : t + d; }
}  // namespace

Machine::Machine(const MachineConfig& config, StartGate& gate) : cfg_(config), gate_(gate) {
  cfg_.workers = std::max(1u, cfg_.workers);
  cfg_.depth = std::max(1u, cfg_.depth);
  if (cfg_.pipeline < Nanos::zero()) cfg_.pipeline = Nanos::zero();
}

Machine::Worker* Machine::find(WorkerId w) {
  for (auto& x : workers_)
    if (x.id == w) return &x;
  return nullptr;
}
const Machine::Worker* Machine::find(WorkerId w) const { return const_cast<Machine*>(this)->find(w); }

std::size_t Machine::in_flight() const {
  std::size_t n = 0;
  for (const auto& w : workers_) n += w.in_flight.size();
  return n;
}
std::size_t Machine::in_flight(WorkerId w) const {
  const Worker* x = find(w);
  return x ? x->in_flight.size() : 0;
}
bool Machine::known_started(WorkerId w, TaskId task) const {
  const Worker* x = find(w);
  if (!x) return false;
  for (const Task& t : x->in_flight)
    if (t.id == task) return t.started;
  return false;
}
unsigned Machine::active_workers() const {
  return static_cast<unsigned>(std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) {
    return w.state == WorkerState::starting || w.state == WorkerState::ready;
  }));
}
unsigned Machine::ready_workers() const {
  return static_cast<unsigned>(
      std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) { return w.state == WorkerState::ready; }));
}
unsigned Machine::live_workers() const { return static_cast<unsigned>(workers_.size()); }
Machine::WorkerState Machine::state_of(WorkerId w) const {
  const Worker* x = find(w);
  return x ? x->state : WorkerState::exited;
}
unsigned Machine::sent_to(WorkerId w) const {
  const Worker* x = find(w);
  return x ? x->sent : 0;
}

// One running task, plus about `pipeline` of expected work behind it. Until a
// run time was measured nothing is sent ahead: the first tasks spread over
// the workers that are ready, one each.
unsigned Machine::depth_now() const {
  if (cfg_.pipeline == Nanos::zero()) return cfg_.depth;
  if (mean_ <= Nanos::zero()) return 1;
  const auto p = cfg_.pipeline.count();
  const auto m = mean_.count();
  const std::int64_t ahead = p / m + (p % m != 0 ? 1 : 0);
  if (ahead >= static_cast<std::int64_t>(cfg_.depth)) return cfg_.depth;
  return std::min(cfg_.depth, std::max(2u, 1u + static_cast<unsigned>(ahead)));
}

void Machine::start(Nanos now) {
  for (unsigned i = 0; i < cfg_.workers; ++i) spawn(false, now);
}

void Machine::spawn(bool replacement, Nanos now) {
  Worker w;
  w.id = next_worker_++;
  w.counts_restart = replacement;
  workers_.push_back(std::move(w));
  ++c_.spawned;
  if (replacement) {
    ++c_.replacements;
    restarts_.push_back(now);
  }
  emit({Action::spawn, workers_.back().id});
}

void Machine::submit(TaskId task, Nanos timeout, Nanos now) {
  ++c_.submitted;
  if (phase_ == Phase::broken) {
    // Only a submission that raced the break gets here; it fails like the rest.
    resolve(task, Outcome::broken);
    return;
  }
  queue_.push_back(Task{task, timeout});
  dispatch(now);
}

void Machine::worker_ready(WorkerId id, Nanos now) {
  Worker* w = find(id);
  if (!w || w->state != WorkerState::starting) return;  // killed or closed meanwhile
  w->state = WorkerState::ready;
  dispatch(now);
  close_idle();
}

void Machine::init_failed(WorkerId id, Nanos now) {
  (void)now;
  Worker* w = find(id);
  if (!w || phase_ == Phase::broken) return;
  break_pool(BrokenReason::initializer_failed, id, 0);
}

// A worker that breaks the protocol is killed (once); its tasks are handled as
// for any death, and its replacement starts now.
bool Machine::faulty(Worker& w, Nanos now) {
  if (w.state != WorkerState::killing) kill(w, 9);
  fill(now);
  dispatch(now);
  return false;
}

bool Machine::started(WorkerId id, TaskId task, Nanos now) {
  Worker* w = find(id);
  if (!w) return false;
  if (phase_ == Phase::broken) return true;  // in-flight lists were resolved at the break
  // The first task the worker holds: every one before it was answered or skipped.
  if (!w->in_flight.empty() && w->in_flight.front().id == task) {
    Task& t = w->in_flight.front();
    if (!t.noticed) {
      t.noticed = true;
      if (!t.started || KEEL_INJECTED(pool_notice_restarts_clock)) t.started_at = now;
      t.started = true;
    }
    return true;
  }
  // A task it started whose timeout ran out before its notice came (the
  // machine learned of the start from a revoke that lost): no fault.
  if (task != 0 && task == w->timed_out) return true;
  return faulty(*w, now);
}

bool Machine::skipped(WorkerId id, TaskId task, Nanos now) {
  Worker* w = find(id);
  if (!w) return false;
  // A frame the machine took back: the worker caught up with it.
  if (auto s = std::find(w->stale.begin(), w->stale.end(), task); s != w->stale.end()) {
    w->stale.erase(s);
    // pick() kept that task from this worker until now: it may take it.
    dispatch(now);
    close_idle();
    return true;
  }
  if (phase_ == Phase::broken) return true;
  if (!w->in_flight.empty() && w->in_flight.front().id == task && !w->in_flight.front().started) {
    // Its user won the slot (a chunk may still hold calls that nobody
    // cancelled): back to the front of the queue, where dispatch asks the
    // gate whether anything of it is still wanted.
    Task t = w->in_flight.front();
    w->in_flight.erase(w->in_flight.begin());
    ++c_.skipped;
    t.started = false;
    t.noticed = false;
    queue_.push_front(t);
    fill(now);  // queued work during a shutdown needs an active worker
    dispatch(now);
    close_idle();
    check_terminated();
    return true;
  }
  return faulty(*w, now);
}

bool Machine::result(WorkerId id, TaskId task, Nanos now) {
  Worker* w = find(id);
  if (!w) return false;
  if (!w->in_flight.empty() && (KEEL_INJECTED(pool_result_accepts_non_head) || w->in_flight.front().id == task)) {
    const Task t = w->in_flight.front();
    w->in_flight.erase(w->in_flight.begin());
    if (t.noticed && now > t.started_at) {
      const Nanos ran = now - t.started_at;
      mean_ = mean_ == Nanos::zero() ? ran : mean_ + (ran - mean_) / 8;
      if (mean_ <= Nanos::zero()) mean_ = Nanos(1);
    }
    resolve(task, Outcome::value);
    ++c_.completed;
    dispatch(now);
    close_idle();
    return true;
  }
  if (task != 0 && task == w->timed_out) {
    w->timed_out = 0;  // its outcome was already reported: timed out
    if (KEEL_INJECTED(pool_late_result_resolved)) resolve(task, Outcome::value);
    return true;
  }
  if (phase_ == Phase::broken) return true;  // in-flight lists were resolved at the break
  return faulty(*w, now);
}

// Asks the gate for `t` back from `w`. True: taken back (it never started
// there; the worker will skip its frame). False: it had started. Each task
// sent before it was answered or skipped (its user may have won its slot),
// which the worker's messages will tell: nothing more is known of those.
bool Machine::revoke(Worker& w, Task& t, Nanos now) {
  if (KEEL_INJECTED(pool_revoke_without_gate) || gate_.revoke(t.id, w.id)) {
    ++c_.revoked;
    w.stale.push_back(t.id);
    return true;
  }
  if (!t.started) {
    t.started = true;
    t.started_at = now;
  }
  if (KEEL_INJECTED(pool_mark_started_through)) {
    // The old mistake: what was sent before it is not known to have started.
    for (Task& u : w.in_flight) {
      if (&u == &t) break;
      if (!u.started) {
        u.started = true;
        u.started_at = now;
      }
    }
  }
  return false;
}

void Machine::requeue_front(std::vector<Task>& tasks) {
  // Back to the front in their order: they were first in line before.
  queue_.insert(queue_.begin(), tasks.begin(), tasks.end());
  tasks.clear();
}

void Machine::worker_exited(WorkerId id, int exit_code, Nanos now) {
  auto it = std::find_if(workers_.begin(), workers_.end(), [&](const Worker& x) { return x.id == id; });
  if (it == workers_.end()) return;
  Worker w = std::move(*it);
  workers_.erase(it);

  if (phase_ == Phase::broken) {
    check_terminated();
    return;
  }
  if (w.state == WorkerState::starting && cfg_.has_initializer && !KEEL_INJECTED(pool_init_death_respawns)) {
    // A worker that dies in its initializer would die again: never respawn it.
    break_pool(BrokenReason::initializer_died, id, exit_code);
    return;
  }
  const bool planned =
      (w.state == WorkerState::retiring || w.state == WorkerState::closing) && w.in_flight.empty() && exit_code == 0;
  const bool killed_by_us = w.state == WorkerState::killing;
  if (planned) ++c_.retirements;
  if (!planned && !killed_by_us) ++c_.deaths;

  // Each task it held either started (it is lost, or retried) or did not:
  // then its slot is taken back, so it can never start there, and it goes
  // back to the queue uncounted. The slot decides, not the position.
  std::vector<Task> back;
  for (Task& t : w.in_flight) {
    if (KEEL_INJECTED(pool_requeue_only_head) && &t != &w.in_flight.front()) continue;
    bool started = t.started;
    if (!started) {
      if (KEEL_INJECTED(pool_exit_loses_unstarted)) {
        started = true;
      } else {
        started = !gate_.revoke(t.id, w.id);
        if (!started) ++c_.revoked;
      }
    }
    if (!started) {
      if (terminating_) {
        resolve(t.id, Outcome::cancelled);
      } else {
        ++c_.requeued;
        back.push_back(Task{t.id, t.timeout, t.lost});
      }
      continue;
    }
    ++t.lost;
    const bool retry = !terminating_ && (KEEL_INJECTED(pool_retry_unbounded) || t.lost <= cfg_.retries);
    if (retry) {
      ++c_.retried;
      back.push_back(Task{t.id, t.timeout, t.lost});
    } else {
      resolve(t.id, Outcome::lost, id, exit_code);
    }
  }
  w.in_flight.clear();
  requeue_front(back);

  // A replacement for an unplanned death counts against the restart limit;
  // retirements and our own kills (timeouts) were replaced when they began.
  const bool unplanned_active =
      !planned && !killed_by_us && (w.state == WorkerState::starting || w.state == WorkerState::ready);
  if (unplanned_active && spawn_useful() && active_workers() < cfg_.workers) {
    while (!restarts_.empty() && later(restarts_.front(), cfg_.restart_window) <= now)
      restarts_.erase(restarts_.begin());
    if (!KEEL_INJECTED(pool_respawn_unlimited) && restarts_.size() >= cfg_.restart_limit) {
      break_pool(BrokenReason::restart_limit, id, exit_code);
      return;
    }
    spawn(true, now);
  }
  fill(now);
  dispatch(now);
  close_idle();
  check_terminated();
}

void Machine::tick(Nanos now) {
  if (escalate_at_ <= now) {
    escalate_at_ = Nanos::max();
    for (auto& w : workers_) {
      // Those terminate signalled (its signal may be ignored); not those a
      // timeout or a break already sent SIGKILL.
      const bool signalled = KEEL_INJECTED(pool_escalation_skips_signalled) ? w.signal == 0 : w.signal != 9;
      if (w.state == WorkerState::killing && signalled) {
        kill(w, 9);
      }
    }
  }
  if (phase_ == Phase::broken) return;
  for (auto& w : workers_) {
    if (w.state != WorkerState::ready &&
        (KEEL_INJECTED(pool_tick_only_ready) || (w.state != WorkerState::retiring && w.state != WorkerState::closing)))
      continue;
    for (auto t = w.in_flight.begin(); t != w.in_flight.end(); ++t) {
      if (!t->started || t->timeout <= Nanos::zero() || later(t->started_at, t->timeout) > now) continue;
      // Nothing was sent behind it, and what was sent before it has
      // answered, so the kill costs no other task.
      const TaskId id = t->id;
      w.in_flight.erase(t);
      w.timed_out = id;
      resolve(id, Outcome::timed_out);
      ++c_.timed_out;
      kill(w, 9);
      break;
    }
  }
  fill(now);
  dispatch(now);
  close_idle();
}

Nanos Machine::next_deadline() const {
  Nanos best = escalate_at_;
  for (const auto& w : workers_) {
    if (w.state == WorkerState::killing || w.state == WorkerState::starting) continue;
    for (const Task& t : w.in_flight) {
      if (t.started && t.timeout > Nanos::zero()) best = std::min(best, later(t.started_at, t.timeout));
    }
  }
  return best;
}

void Machine::discard_oldest(Nanos now) {
  if (queue_.empty() || phase_ == Phase::broken) return;
  resolve(queue_.front().id, Outcome::cancelled);
  queue_.pop_front();
  // The new front may fit where the old one could not (a stale frame), and
  // an empty queue lets balance() move work to an idle worker.
  dispatch(now);
  check_terminated();
}

void Machine::shutdown(bool cancel_futures, Nanos now) {
  if (phase_ == Phase::running) phase_ = Phase::shutting_down;
  if (cancel_futures) {
    for (const Task& t : queue_) resolve(t.id, Outcome::cancelled);
    queue_.clear();
    // Sent and not started is not started: take those back and cancel them.
    if (!KEEL_INJECTED(pool_cancel_spares_sent)) {
      for (auto& w : workers_) {
        // A worker being killed too: it may still start what it holds until
        // the signal lands, and its exit would queue those again.
        for (std::size_t i = w.in_flight.size(); i-- > 0;) {
          Task& t = w.in_flight[i];
          // One before a started task was answered or skipped (its user won
          // its slot, and its skip is on the way): ask about each.
          if (KEEL_INJECTED(pool_cancel_futures_stops_at_started) && (t.started || w.state == WorkerState::killing)) {
            break;
          }
          if (t.started || !revoke(w, t, now)) continue;
          resolve(t.id, Outcome::cancelled);
          w.in_flight.erase(w.in_flight.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
    }
  }
  dispatch(now);
  close_idle();
  check_terminated();
}

void Machine::terminate(int signal, Nanos now) {
  terminating_ = true;
  shutdown(true, now);
  for (auto& w : workers_) {
    if (w.state != WorkerState::killing) kill(w, signal);
  }
  // A worker that ignores the signal (or was sent one before, by a timeout
  // or a break: those are SIGKILL) gets SIGKILL after the grace.
  if (signal != 9 && cfg_.terminate_grace != Nanos::max() && !workers_.empty()) {
    escalate_at_ = std::min(escalate_at_, later(now, std::max(cfg_.terminate_grace, Nanos::zero())));
  }
  check_terminated();
}

void Machine::supervisor_failed(Nanos now) {
  (void)now;
  if (phase_ == Phase::broken) return;
  break_pool(BrokenReason::supervisor_failed, 0, 0);
}

void Machine::kill(Worker& w, int signal) {
  w.state = WorkerState::killing;
  w.signal = signal;
  emit({Action::kill, w.id, 0, Outcome::value, signal});
}

void Machine::break_pool(BrokenReason why, WorkerId w, int code) {
  phase_ = Phase::broken;
  broken_reason_ = why;
  broken_worker_ = w;
  broken_code_ = code;
  // Submitters first (POOL-11): once a future says broken, submit says so too.
  const bool publish_late = KEEL_INJECTED(pool_break_published_after_resolve);
  if (!publish_late) emit({Action::broken});
  for (const Task& t : queue_) resolve(t.id, Outcome::broken);
  queue_.clear();
  for (auto& x : workers_) {
    // Unstarted tasks are taken back first, so none starts after its future
    // said broken; a started one dies with its worker.
    for (Task& t : x.in_flight) {
      if (!t.started) (void)revoke(x, t, Nanos::zero());
      resolve(t.id, Outcome::broken);
    }
    x.in_flight.clear();
    if (x.state != WorkerState::killing) kill(x, 9);
  }
  if (publish_late) emit({Action::broken});  // the old order: the futures said broken first
  check_terminated();
}

void Machine::resolve(TaskId t, Outcome o, WorkerId w, int code) {
  ++c_.resolved;
  switch (o) {
    case Outcome::lost:
      ++c_.lost;
      break;
    case Outcome::cancelled:
      ++c_.cancelled;
      break;
    case Outcome::broken:
      ++c_.broken;
      break;
    default:
      break;
  }
  emit({Action::resolve, w, t, o, code});
}

// Spawns workers until the active ones reach the target, while that is useful:
// always while running; while shutting down only for queued work.
bool Machine::spawn_useful() const {
  if (phase_ == Phase::broken || terminating_) return false;
  if (phase_ == Phase::shutting_down) {
    if (KEEL_INJECTED(pool_no_replace_in_shutdown)) return false;
    return !queue_.empty();
  }
  return true;
}

void Machine::fill(Nanos now) {
  if (!spawn_useful()) return;
  while (active_workers() < cfg_.workers) spawn(false, now);
}

Machine::Worker* Machine::pick(const Task& t, Nanos now) {
  const unsigned depth = depth_now();
  Worker* best = nullptr;
  for (auto& w : workers_) {
    const bool open =
        w.state == WorkerState::ready || (KEEL_INJECTED(pool_send_to_retiring) && w.state == WorkerState::retiring);
    if (!open || w.in_flight.size() >= depth) continue;
    // Frames taken back hold their slots until the worker skips them.
    if (w.in_flight.size() + w.stale.size() >= cfg_.depth) continue;
    // The worker still holds a frame of this task that it has not skipped.
    if (std::find(w.stale.begin(), w.stale.end(), t.id) != w.stale.end()) continue;
    if (!w.in_flight.empty()) {
      // Nothing is sent behind a timed task: its timeout kill would cost it.
      if (!KEEL_INJECTED(pool_send_behind_timed) && w.in_flight.back().timeout > Nanos::zero()) continue;
      // Nor behind a straggler, running far past the mean: it would wait for
      // nothing good.
      const Task& head = w.in_flight.front();
      if (cfg_.pipeline > Nanos::zero() && head.started &&
          later(head.started_at, later(cfg_.pipeline, later(mean_, mean_))) < now)
        continue;
    }
    if (!best || w.in_flight.size() < best->in_flight.size()) best = &w;
  }
  return best;
}

void Machine::dispatch(Nanos now) {
  send_queued(now);
  if (queue_.empty()) balance(now);
}

void Machine::send_queued(Nanos now) {
  while (!queue_.empty() && phase_ != Phase::broken) {
    Worker* w = pick(queue_.front(), now);
    if (!w) break;
    Task t = queue_.front();
    queue_.pop_front();
    if (!KEEL_INJECTED(pool_gate_not_consulted) && !gate_.dispatch(t.id, w->id)) {
      ++c_.cancelled;  // nothing of it is wanted any more; its future is already final
      continue;
    }
    t.started = false;
    t.noticed = false;
    w->in_flight.push_back(t);
    ++w->sent;
    ++c_.sent;
    emit({Action::send, w->id, t.id});
    if (!KEEL_INJECTED(pool_no_close_at_max_tasks) && cfg_.max_tasks_per_child != 0 &&
        w->sent >= cfg_.max_tasks_per_child) {
      // It finishes what it has and exits; its replacement starts now.
      w->state = WorkerState::retiring;
      emit({Action::close, w->id});
      fill(now);
    }
  }
}

// Work conservation: while a ready worker is idle, take back the youngest
// task that waits behind another on some worker, and send it there. Each
// round moves a task or learns that one started, so this ends.
void Machine::balance(Nanos now) {
  if (KEEL_INJECTED(pool_no_steal)) return;
  for (;;) {
    if (phase_ == Phase::broken || !queue_.empty()) return;
    bool moved = false;
    for (auto& to : workers_) {
      // An idle worker whose slots are all held by stale frames has no room.
      if (to.state != WorkerState::ready || !to.in_flight.empty() || to.stale.size() >= cfg_.depth) continue;
      // The most loaded worker whose youngest task is not known to have
      // started, and that `to` does not still hold a stale frame of.
      Worker* victim = nullptr;
      for (auto& w : workers_) {
        if (w.state == WorkerState::killing || w.in_flight.size() < 2 || w.in_flight.back().started) continue;
        const TaskId id = w.in_flight.back().id;
        if (std::find(to.stale.begin(), to.stale.end(), id) != to.stale.end()) continue;
        if (!victim || w.in_flight.size() > victim->in_flight.size()) victim = &w;
      }
      if (!victim) continue;
      Task& t = victim->in_flight.back();
      moved = true;  // a task moves, or one more is known to have started
      if (!revoke(*victim, t, now)) break;
      queue_.push_front(Task{t.id, t.timeout, t.lost});
      victim->in_flight.pop_back();
      ++c_.stolen;
      send_queued(now);  // the least loaded ready worker takes it: an idle one
      break;
    }
    if (!moved) return;
  }
}

// While shutting down, a worker with nothing to do is told to finish.
void Machine::close_idle() {
  if (phase_ != Phase::shutting_down || !queue_.empty()) return;
  for (auto& w : workers_) {
    if ((w.state == WorkerState::ready || w.state == WorkerState::starting) && w.in_flight.empty()) {
      w.state = WorkerState::closing;
      emit({Action::close, w.id});
    }
  }
}

void Machine::encode_state(std::string& out) const {
  const auto put = [&out](std::int64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  const auto put_task = [&put](const Task& t) {
    put(static_cast<std::int64_t>(t.id));
    put(t.timeout.count());
    put(t.lost);
    put((t.started ? 1 : 0) | (t.noticed ? 2 : 0));
    put(t.started ? t.started_at.count() : 0);
  };
  put(static_cast<std::int64_t>(phase_));
  put((terminating_ ? 1 : 0) | (terminated_ ? 2 : 0));
  put(escalate_at_.count());
  put(cfg_.pipeline > Nanos::zero() ? mean_.count() : 0);
  put(static_cast<std::int64_t>(out_.size()));
  put(static_cast<std::int64_t>(queue_.size()));
  for (const Task& t : queue_) put_task(t);
  put(static_cast<std::int64_t>(restarts_.size()));
  for (Nanos r : restarts_) put(r.count());
  put(static_cast<std::int64_t>(workers_.size()));
  for (const Worker& w : workers_) {
    put(static_cast<std::int64_t>(w.state));  // its place in workers_ is its rank; its id is not written
    put(w.signal);
    put(cfg_.max_tasks_per_child == 0 ? 0 : std::min(w.sent, cfg_.max_tasks_per_child));
    put(static_cast<std::int64_t>(w.timed_out));
    put(static_cast<std::int64_t>(w.in_flight.size()));
    for (const Task& t : w.in_flight) put_task(t);
    put(static_cast<std::int64_t>(w.stale.size()));
    for (TaskId t : w.stale) put(static_cast<std::int64_t>(t));
  }
}

void Machine::check_terminated() {
  if (terminated_ || phase_ == Phase::running) return;
  if (!workers_.empty() || !queue_.empty()) return;
  terminated_ = true;
  emit({Action::terminated});
}

}  // namespace keel::pool
