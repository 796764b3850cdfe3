// keel::pool::Machine. See keel/process_pool/machine.hpp for the contract and
// the facts about workers and the driver that it relies on.
#include "keel/process_pool/machine.hpp"

#include <algorithm>

namespace keel::pool {

namespace {
// t + d, saturating at Nanos::max(): "no limit" is written as Nanos::max().
Nanos later(Nanos t, Nanos d) { return d >= Nanos::max() - t ? Nanos::max() : t + d; }
}  // namespace

Machine::Machine(const MachineConfig& config, StartGate& gate) : cfg_(config), gate_(gate) {
  cfg_.workers = std::max(1u, cfg_.workers);
  cfg_.depth = std::max(1u, cfg_.depth);
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

bool Machine::result(WorkerId id, TaskId task, Nanos now) {
  Worker* w = find(id);
  if (!w) return false;
  if (!w->in_flight.empty() && (KEEL_INJECTED(pool_result_accepts_non_head) || w->in_flight.front().id == task)) {
    w->in_flight.pop_front();
    resolve(task, Outcome::value);
    ++c_.completed;
    // The next task starts about now (an untimed one: timed tasks run alone).
    w->head_since = now;
    dispatch(now);
    close_idle();
    return true;
  }
  if (task != 0 && task == w->timed_out) {
    w->timed_out = 0;  // its outcome was already reported: timed out
    if constexpr (KEEL_INJECTED(pool_late_result_resolved)) resolve(task, Outcome::value);
    return true;
  }
  if (phase_ == Phase::broken) return true;  // in-flight lists were resolved at the break
  // Not the head: a worker that breaks the protocol is killed (once); its
  // tasks are handled as for any death, and its replacement starts now.
  if (w->state != WorkerState::killing) kill(*w, 9);
  fill(now);
  dispatch(now);
  return false;
}

void Machine::requeue_front(std::deque<Task>& tasks) {
  // Back to the front in their order: they were first in line before.
  c_.requeued += tasks.size();
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
  if (w.state == WorkerState::starting && cfg_.has_initializer) {
    // A worker that dies in its initializer would die again: never respawn it.
    break_pool(BrokenReason::initializer_died, id, exit_code);
    return;
  }
  const bool planned =
      (w.state == WorkerState::retiring || w.state == WorkerState::closing) && w.in_flight.empty() && exit_code == 0;
  const bool killed_by_us = w.state == WorkerState::killing;
  if (planned) ++c_.retirements;
  if (!planned && !killed_by_us) ++c_.deaths;

  if (!w.in_flight.empty()) {
    // Only the head can have started (see the header): it is lost; the rest
    // never ran and go back to the queue uncounted.
    Task head = w.in_flight.front();
    w.in_flight.pop_front();
    ++head.lost;
    if (terminating_) {
      resolve(head.id, Outcome::lost, id, exit_code);
      for (const Task& t : w.in_flight) resolve(t.id, Outcome::cancelled);
      w.in_flight.clear();
    } else {
      if constexpr (KEEL_INJECTED(pool_requeue_only_head)) {
        w.in_flight.clear();
      }
      requeue_front(w.in_flight);
      const bool retry = KEEL_INJECTED(pool_retry_unbounded) || head.lost <= cfg_.retries;
      if (retry) {
        ++c_.retried;
        queue_.push_front(head);
      } else {
        resolve(head.id, Outcome::lost, id, exit_code);
      }
    }
  }

  // A replacement for an unplanned death counts against the restart limit;
  // retirements and our own kills (timeouts) were replaced when they began.
  const bool unplanned_active =
      !planned && !killed_by_us && (w.state == WorkerState::starting || w.state == WorkerState::ready);
  if (unplanned_active && spawn_useful() && active_workers() < cfg_.workers) {
    while (!restarts_.empty() && later(restarts_.front(), cfg_.restart_window) <= now) restarts_.pop_front();
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
  if (phase_ == Phase::broken) return;
  for (auto& w : workers_) {
    if (w.state != WorkerState::ready && w.state != WorkerState::retiring && w.state != WorkerState::closing) continue;
    if (w.in_flight.empty()) continue;
    const Task& head = w.in_flight.front();
    if (head.timeout <= Nanos::zero() || later(w.head_since, head.timeout) > now) continue;
    const TaskId id = head.id;
    w.in_flight.pop_front();
    w.timed_out = id;
    resolve(id, Outcome::timed_out);
    ++c_.timed_out;
    kill(w, 9);
  }
  fill(now);
  dispatch(now);
  close_idle();
}

Nanos Machine::next_deadline() const {
  Nanos best = Nanos::max();
  for (const auto& w : workers_) {
    if (w.in_flight.empty() || w.state == WorkerState::killing || w.state == WorkerState::starting) continue;
    const Task& head = w.in_flight.front();
    if (head.timeout > Nanos::zero()) best = std::min(best, later(w.head_since, head.timeout));
  }
  return best;
}

void Machine::shutdown(bool cancel_futures, Nanos now) {
  if (phase_ == Phase::running) phase_ = Phase::shutting_down;
  if (cancel_futures) {
    for (const Task& t : queue_) resolve(t.id, Outcome::cancelled);
    queue_.clear();
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
  check_terminated();
}

void Machine::kill(Worker& w, int signal) {
  w.state = WorkerState::killing;
  emit({Action::kill, w.id, 0, Outcome::value, signal});
}

void Machine::break_pool(BrokenReason why, WorkerId w, int code) {
  phase_ = Phase::broken;
  broken_reason_ = why;
  broken_worker_ = w;
  broken_code_ = code;
  for (const Task& t : queue_) resolve(t.id, Outcome::broken);
  queue_.clear();
  for (auto& x : workers_) {
    for (const Task& t : x.in_flight) resolve(t.id, Outcome::broken);
    x.in_flight.clear();
    if (x.state != WorkerState::killing) kill(x, 9);
  }
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
    if constexpr (KEEL_INJECTED(pool_no_replace_in_shutdown)) return false;
    return !queue_.empty();
  }
  return true;
}

void Machine::fill(Nanos now) {
  if (!spawn_useful()) return;
  while (active_workers() < cfg_.workers) spawn(false, now);
}

Machine::Worker* Machine::pick(const Task& t) {
  Worker* best = nullptr;
  for (auto& w : workers_) {
    if (w.state != WorkerState::ready || w.in_flight.size() >= cfg_.depth) continue;
    // A timed task runs alone, so its clock starts when it is sent; and
    // nothing is queued behind a timed task, whose worker may be killed.
    if (!w.in_flight.empty() && (t.timeout > Nanos::zero() || w.in_flight.back().timeout > Nanos::zero())) continue;
    if (!best || w.in_flight.size() < best->in_flight.size()) best = &w;
  }
  return best;
}

void Machine::dispatch(Nanos now) {
  while (!queue_.empty() && phase_ != Phase::broken) {
    Worker* w = pick(queue_.front());
    if (!w) return;
    Task t = queue_.front();
    queue_.pop_front();
    if (!t.started) {
      if (!KEEL_INJECTED(pool_gate_not_consulted) && !gate_.try_start(t.id)) {
        ++c_.cancelled;  // cancelled while queued; its future is already final
        continue;
      }
      t.started = true;
    }
    if (w->in_flight.empty()) w->head_since = now;
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

void Machine::check_terminated() {
  if (terminated_ || phase_ == Phase::running) return;
  if (!workers_.empty() || !queue_.empty()) return;
  terminated_ = true;
  emit({Action::terminated});
}

}  // namespace keel::pool
