// keel::Condition. See keel/sync/condition.hpp for the protocol.
#include "keel/sync/condition.hpp"

namespace keel {

void Condition::check_held(const char* op) const {
  const bool held = is_recursive_ ? rlock()->is_owned() : mlock()->is_locked();
  if (!held) throw LockNotHeldError(std::string("keel::Condition::") + op + ": the condition's lock is not held");
}

void Condition::push_back(Waiter* w) {
  Waiter* t = tail_.load();
  w->prev.store(t);
  w->next.store(nullptr);
  if (t != nullptr) {
    t->next.store(w);
  } else {
    head_.store(w);
  }
  tail_.store(w);
}

void Condition::unlink(Waiter* w) {
  Waiter* p = w->prev.load();
  Waiter* n = w->next.load();
  if (p != nullptr) {
    p->next.store(n);
  } else {
    head_.store(n);
  }
  if (n != nullptr) {
    n->prev.store(p);
  } else {
    tail_.store(p);
  }
}

bool Condition::wait_impl(const platform::Deadline& deadline) {
  check_held("wait");
  Waiter w;
  std::uint32_t depth = 0;
  // Linking the record before the lock is dropped is what makes a notify that
  // follows the unlock find us (SYNC-2).
  if (!KEEL_INJECTED(condition_enqueue_after_release)) push_back(&w);
  if (is_recursive_) {
    depth = rlock()->release_all();
  } else {
    mlock()->unlock();
  }
  if (KEEL_INJECTED(condition_enqueue_after_release)) push_back(&w);

  bool timed_out = false;
  // Acquire pairs with notify's release store: what the notifier wrote before
  // notifying is visible once we see the signal (we also re-take the lock).
  while (w.signaled.load(std::memory_order_acquire) == 0) {
    if (platform::futex_wait(w.signaled, 0, deadline) == platform::WaitResult::timed_out) {
      timed_out = true;
      break;
    }
  }

  if (is_recursive_) {
    rlock()->restore(depth);
  } else {
    mlock()->lock();
  }
  if (!timed_out) return true;
  // A notify may have chosen us between the timeout and re-locking: it has
  // already unlinked us, so take the notification rather than lose it.
  if (!KEEL_INJECTED(condition_timeout_drops_signal) && w.signaled.load(std::memory_order_relaxed) != 0) return true;
  unlink(&w);
  return false;
}

void Condition::notify(int n) {
  if (n < 0) throw ValueError("keel::Condition::notify: n must be >= 0");
  check_held("notify");
  const bool ignore_n = KEEL_INJECTED(condition_notify_ignores_n);
  for (int i = 0; ignore_n || i < n; ++i) {
    Waiter* w = head_.load();
    if (w == nullptr) break;
    if (KEEL_INJECTED(condition_pop_keeps_tail)) {
      // Planted bug: pop the head without fixing tail_ when the list
      // empties; the next round's waiter links behind a record that left.
      Waiter* n = w->next.load();
      head_.store(n);
      if (n != nullptr) n->prev.store(nullptr);
    } else {
      unlink(w);
    }
    w->signaled.store(1, std::memory_order_release);
    if (!KEEL_INJECTED(condition_notify_skip_wake)) platform::futex_wake(w->signaled, 1);
  }
}

void Condition::notify_all() { notify(std::numeric_limits<int>::max()); }

std::size_t Condition::waiting() const {
  check_held("waiting");
  std::size_t n = 0;
  for (Waiter* w = head_.load(); w != nullptr; w = w->next.load()) ++n;
  return n;
}

}  // namespace keel
