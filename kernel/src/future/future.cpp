// FutureCore's transitions. Every transition is one atomic operation on the
// word; see keel/future/detail/core.hpp for the encoding and why no hook or wake can be lost.
#include "keel/future/future.hpp"

namespace keel {

namespace detail {

FutureStatus FutureCore::status() const {
  switch (phase()) {
    case pending:
      return FutureStatus::pending;
    case running:
    case completing:
      return FutureStatus::running;
    case cancelled:
      return FutureStatus::cancelled;
    case dispatched:
      return FutureStatus::pending;
    default:
      return FutureStatus::finished;
  }
}

bool FutureCore::cancel() {
  std::int32_t v = word_.load(std::memory_order_relaxed);
  for (;;) {
    if ((v & phase_mask) == dispatched) {
      const int r = cancel_dispatched();
      if (r >= 0) return r == 1;
      v = word_.load(std::memory_order_relaxed);  // no longer dispatched: look again
      continue;
    }
    if ((v & phase_mask) != pending) return false;
    if (KEEL_INJECTED(future_cancel_blind_store)) {
      // Seeded bug: decides on a stale read, then stores without a CAS.
      word_.store(cancelled, std::memory_order_release);
      after_final(v);
      return true;
    }
    // release: what the canceller wrote before cancel() is visible to whoever
    // sees the future cancelled (EXEC-9). No acquire: the bits acted on come
    // with the RMW itself, and the hook list is read under hook_lock_.
    if (word_.compare_exchange_weak(v, cancelled, std::memory_order_release, std::memory_order_relaxed)) {
      after_final(v);
      return true;
    }
  }
}

FutureCore::Start FutureCore::start(bool owned) {
  const std::int32_t to = owned ? completing : running;
  std::int32_t v = word_.load(std::memory_order_relaxed);
  for (;;) {
    const std::int32_t p = v & phase_mask;
    if (p == cancelled) return Start::was_cancelled;
    if (p != pending) return Start::not_pending;
    if (KEEL_INJECTED(future_start_blind_store)) {
      // Seeded bug: a plain store after the check lets a racing cancel also win.
      word_.store((v & ~phase_mask) | to, std::memory_order_release);
      return Start::started;
    }
    // relaxed: only which thread wins matters (the RMW decides it against
    // cancel()); the starter reads nothing published through the word, and
    // the result is published later by finish().
    if (word_.compare_exchange_weak(v, (v & ~phase_mask) | to, std::memory_order_relaxed, std::memory_order_relaxed)) {
      return Start::started;
    }
  }
}

bool FutureCore::begin_completion() {
  std::int32_t v = word_.load(std::memory_order_relaxed);
  for (;;) {
    const std::int32_t p = v & phase_mask;
    if (p != pending && p != running) return false;
    // relaxed: only who wins matters (against cancel()); the completer reads
    // nothing published through the word, and finish() publishes its result.
    if (word_.compare_exchange_weak(v, (v & ~phase_mask) | completing, std::memory_order_relaxed,
                                    std::memory_order_relaxed)) {
      return true;
    }
  }
}

void FutureCore::finish(std::exception_ptr error) {
  error_ = std::move(error);
  error_mark_.written();
  std::int32_t old;
  if (KEEL_INJECTED(future_finish_drops_flags)) {
    // Seeded bug: reads the flags, then stores: a sleeper or hook that
    // registers in between is forgotten.
    old = word_.load(std::memory_order_relaxed);
    word_.store(finished, std::memory_order_release);
  } else {
    // One exchange: release publishes the result, and the old value says,
    // atomically with the transition, who must be woken or called. No
    // acquire: nothing this thread reads afterwards was published through
    // the word (the hook list is read under hook_lock_).
    old = word_.exchange(finished, std::memory_order_release);
  }
  after_final(old);
}

std::int32_t FutureCore::move_phase(std::int32_t from, std::int32_t to) {
  std::int32_t v = word_.load(std::memory_order_relaxed);
  // Under the hook lock a dispatched word changes only in its flag bits
  // (sleepers_bit); a pending one may also be cancelled or completed.
  // release: dispatched -> cancelled is final, and publishes what the
  // canceller wrote before cancel() (EXEC-9), as cancel()'s own CAS does. No
  // acquire: the callers hold the hook lock, and read nothing else through
  // the word.
  const std::memory_order order =
      KEEL_INJECTED(future_move_phase_relaxed) ? std::memory_order_relaxed : std::memory_order_release;
  while ((v & phase_mask) == from) {
    if (word_.compare_exchange_weak(v, (v & ~phase_mask) | to, order, std::memory_order_relaxed)) {
      break;
    }
  }
  return v;
}

// The slow path of cancel() for a task sent to another process: it wins only
// by killing the start slot before the starter claims it.
// 1: cancelled; 0: it started there; -1: no longer dispatched (look again).
int FutureCore::cancel_dispatched() {
  std::int32_t old;
  {
    LockGuard g(hook_lock_);
    if (phase() != dispatched) return -1;
    const StartSlot s = slot_.load();
    if (!KEEL_INJECTED(future_cancel_ignores_slot)) {
      std::uint64_t seen = s.sent;
      // relaxed: only who wins the slot matters. Nothing is published
      // through it: the task and its answer travel by pipe (or message), and
      // the slot's reuse is ordered by its own modification order.
      if (!s.word->compare_exchange_strong(seen, s.dead, std::memory_order_relaxed, std::memory_order_relaxed) &&
          seen != s.dead) {
        return 0;  // the task started there
      }
    }
    old = move_phase(dispatched, cancelled);
  }
  after_final(old);  // outside the lock: the hooks take it
  return 1;
}

bool FutureCore::dispatch(const StartSlot& slot) {
  LockGuard g(hook_lock_);
  const std::int32_t p = phase();
  if (p == running) return true;
  if (p != pending && p != dispatched) return false;
  slot_.store(slot);
  // A pending future can still be cancelled without the lock: then it must
  // not be sent.
  if (p == pending && (move_phase(pending, dispatched) & phase_mask) != pending) return false;
  return true;
}

bool FutureCore::undispatch() {
  LockGuard g(hook_lock_);
  const std::int32_t p = phase();
  if (p != dispatched) return p != cancelled && p != pending;
  const StartSlot s = slot_.load();
  std::uint64_t seen = s.sent;
  // relaxed, as in cancel_dispatched(): only who wins the slot matters.
  if (s.word->compare_exchange_strong(seen, s.dead, std::memory_order_relaxed, std::memory_order_relaxed) ||
      seen == s.dead) {
    move_phase(dispatched, pending);
    return false;
  }
  move_phase(dispatched, running);
  return true;
}

void FutureCore::after_final(std::int32_t old) {
  // Every sleeper: they all wait for this one transition.
  if (old & sleepers_bit) platform::futex_wake(word_, KEEL_INJECTED(future_wake_one_waiter) ? 1 : platform::wake_all);
  if (old & hooked_bit) run_hooks();
}

void FutureCore::throw_unless_finished(const char* what) const {
  const std::int32_t p = phase();
  if (p == cancelled) throw CancelledError(std::string("future was cancelled (") + what + ")");
  if (p != finished) throw InvalidStateError(std::string("future is not done (") + what + ")");
}

bool FutureCore::wait_until(const platform::Deadline& deadline) const {
  // acquire, here and below: a wait that returns true publishes the result
  // to its caller (EXEC-9), also when the caller then reads no result.
  std::int32_t v =
      word_.load(KEEL_INJECTED(future_wait_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire);
  if (is_final(v)) return true;
  // Tiny tasks finish within microseconds: a short spin saves a sleep and wake.
  if (platform::spin_then_yield_until([&] { return is_final(word_.load(std::memory_order_acquire)); })) return true;
  v = word_.load(std::memory_order_acquire);
  while (!is_final(v)) {
    if ((v & sleepers_bit) == 0) {
      if (!word_.compare_exchange_weak(v, v | sleepers_bit, std::memory_order_acquire, std::memory_order_acquire)) {
        continue;
      }
      v |= sleepers_bit;
    }
    if (platform::futex_wait(word_, v, deadline) == platform::WaitResult::timed_out) {
      return is_final(word_.load(std::memory_order_acquire));
    }
    v = word_.load(std::memory_order_acquire);
  }
  return true;
}

bool FutureCore::add_hook(Hook* hook) {
  LockGuard g(hook_lock_);
  // acquire: false (already final) makes the caller run the callback itself,
  // which must see what the completer wrote (EXEC-9).
  std::int32_t v =
      word_.load(KEEL_INJECTED(future_add_hook_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire);
  for (;;) {
    if (is_final(v)) return false;
    if (v & hooked_bit) break;
    // Acquire on failure: the word may have become final, and then the
    // caller runs the callback itself (as above). Success needs no order
    // (the bit only sends the completer to the hook lock, which orders the
    // list), but C++11 and Relacy forbid a failure order stronger than it.
    // No release: the list is written under the lock, after the CAS.
    if (word_.compare_exchange_weak(v, v | hooked_bit, std::memory_order_acquire, std::memory_order_acquire)) break;
  }
  // The list is circular, so the head's prev_ is the tail: appending there
  // keeps the order added (EXEC-7) without a tail pointer in every future.
  Hook* const head = hooks_head_.load();
  if (head) {
    Hook* const tail = head->prev_.load();
    hook->prev_.store(tail);
    hook->next_.store(head);
    tail->next_.store(hook);
    head->prev_.store(hook);
  } else {
    hook->prev_.store(hook);
    hook->next_.store(hook);
    hooks_head_.store(hook);
  }
  hook->linked_.store(true);
  return true;
}

void FutureCore::remove_hook(Hook* hook) {
  if (KEEL_INJECTED(future_remove_hook_unlocked)) {
    unlink(hook);  // seeded bug: races a completer walking the list
    return;
  }
  LockGuard g(hook_lock_);
  unlink(hook);
}

void FutureCore::unlink(Hook* hook) {
  if (!hook->linked_.load()) return;
  Hook* const prev = hook->prev_.load();
  Hook* const next = hook->next_.load();
  if (next == hook) {
    hooks_head_.store(nullptr);  // it was the only one
  } else {
    prev->next_.store(next);
    next->prev_.store(prev);
    if (hooks_head_.load() == hook) hooks_head_.store(next);
  }
  hook->linked_.store(false);
}

void FutureCore::run_hooks() {
  Hook* users_head = nullptr;
  Hook* users_tail = nullptr;
  {
    LockGuard g(hook_lock_);
    Hook* const head = hooks_head_.load();
    hooks_head_.store(nullptr);
    Hook* h = head;
    while (h) {
      Hook* next = h->next_.load();
      if (next == head) next = nullptr;  // back at the start of the circle
      h->linked_.store(false);
      h->next_.store(nullptr);
      if (h->internal()) {
        h->fire(*this);  // must not throw; its owner may unlink it once we unlock
      } else if (users_tail) {
        users_tail->next_.store(h);
        users_tail = h;
      } else {
        users_head = users_tail = h;
      }
      h = next;
    }
  }
  // User callbacks run outside the lock, in the order added, each exactly once.
  while (users_head) {
    Hook* next = users_head->next_.load();
    try {
      users_head->fire(*this);
    } catch (...) {
      report_error("done callback", std::current_exception());
    }
    delete users_head;
    users_head = next;
  }
}

}  // namespace detail
}  // namespace keel
