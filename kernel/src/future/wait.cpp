// MultiWait: the waiter behind wait() and as_completed().
#include "keel/future/wait.hpp"

#include <algorithm>
#include <span>
#include <string>

namespace keel::detail {

MultiWait::MultiWait(std::size_t n) : slots_(new Slot[n]), n_(n) {
  std::size_t i = 0;
  for (Slot& s : std::span(slots_.get(), n)) {  // no bound to get wrong
    s.owner = this;
    s.index = i++;
  }
}

bool MultiWait::watch(std::size_t i, FutureCore* core) {
  slots_[i].core = core;
  if (core->add_hook(&slots_[i])) return true;
  slots_[i].core = nullptr;
  return false;
}

void MultiWait::unregister_all() {
  // After remove_hook returns, the completer has either fired the slot or
  // will never see it, so the slots may be freed.
  for (std::size_t i = 0; i < n_; ++i) {
    if (slots_[i].core) {
      slots_[i].core->remove_hook(&slots_[i]);
      slots_[i].core = nullptr;
    }
  }
}

// Called by a completer under that future's hook lock.
void MultiWait::push(Slot* s) {
  // Release: the waiter that takes the stack with an acquire exchange reads
  // the slot's link (and what the completer wrote before firing) after it.
  const std::memory_order publish =
      KEEL_INJECTED(multiwait_push_relaxed) ? std::memory_order_relaxed : std::memory_order_release;
  Slot* head = ready_.load(std::memory_order_relaxed);
  do {
    s->next_ready.store(head);
  } while (!ready_.compare_exchange_weak(head, s, publish, std::memory_order_relaxed));
  if (KEEL_INJECTED(multiwait_push_skips_signal)) {
    return;  // seeded bug: the waiter is never told
  }
  // Release: a waiter whose clear (an acquire exchange) reads this 1 sees
  // the push above. No acquire: the pusher reads nothing the waiter wrote.
  if (signal_.exchange(
          1, KEEL_INJECTED(multiwait_signal_relaxed) ? std::memory_order_relaxed : std::memory_order_release) == 2)
    platform::futex_wake(signal_, 1);
}

std::vector<std::size_t> MultiWait::take_ready() {
  std::vector<std::size_t> out;
  // A plain load first: an empty stack costs no write, and the model
  // checker can show a stale read of a load (an RMW always sees the latest
  // value there, which hid the clear's missing acquire in take()). Relaxed:
  // the exchange that takes the stack is the acquire.
  if (ready_.load(std::memory_order_relaxed) == nullptr) return out;
  Slot* s = ready_.exchange(nullptr, std::memory_order_acquire);
  for (; s; s = s->next_ready.load()) out.push_back(s->index);
  std::reverse(out.begin(), out.end());  // the stack holds the newest first
  return out;
}

std::vector<std::size_t> MultiWait::take(const platform::Deadline& deadline) {
  // signal_: 0 idle, 1 a completion came since the last clear, 2 the waiter
  // sleeps (or is about to). Only what the stack holds is data; the orders
  // below make a completion that set signal_ visible on the stack.
  for (;;) {
    if (auto out = take_ready(); !out.empty()) return out;
    // Relaxed: the value only picks the branch; the exchange or the CAS
    // below is what orders.
    std::int32_t v = signal_.load(std::memory_order_relaxed);
    if (v == 1) {
      // Clear and look again. An RMW with acquire, not a store: it reads
      // the latest completion's 1 and so sees that completion's push. A
      // store could land after a completion the waiter never synchronised
      // with; the stack could then look empty and the waiter sleep on 2
      // with that completion never waking it (found by
      // future.as-completed-two-pushes.3t once the stack was read by a load).
      if (KEEL_INJECTED(multiwait_clear_by_store)) {
        signal_.store(0, std::memory_order_relaxed);
      } else {
        (void)signal_.exchange(0, std::memory_order_acquire);
      }
      continue;
    }
    // Relaxed both ways: winning only puts the waiter to sleep, and losing
    // means a completion wrote 1, which the next round reads again
    // (coherence) and clears with the acquire exchange above.
    if (v == 0 && !signal_.compare_exchange_strong(v, 2, std::memory_order_relaxed, std::memory_order_relaxed)) {
      continue;
    }
    if (platform::futex_wait(signal_, 2, deadline) == platform::WaitResult::timed_out) {
      // Relaxed: a non-empty stack only sends the waiter round again.
      if (ready_.load(std::memory_order_relaxed) != nullptr) continue;
      return {};
    }
  }
}

CompletionOrder::CompletionOrder(const std::vector<FutureCore*>& cores, const platform::Deadline& deadline)
    : n_(cores.size()), wait_(n_), deadline_(deadline) {
  for (std::size_t i = 0; i < n_; ++i) {
    if (!wait_.watch(i, cores[i])) ready_.push_back(i);
  }
  // Those done before the call come first, in input order.
  std::reverse(ready_.begin(), ready_.end());
}

std::optional<std::size_t> CompletionOrder::next() {
  if (yielded_ == n_) return std::nullopt;
  if (ready_.empty()) {
    // take() returns at least one index, or none once the deadline passed.
    auto fired = wait_.take(deadline_);
    if (fired.empty()) {
      throw TimeoutError(std::to_string(n_ - yielded_) + " (of " + std::to_string(n_) + ") futures unfinished");
    }
    ready_.insert(ready_.begin(), fired.rbegin(), fired.rend());
  }
  const std::size_t i = ready_.back();
  ready_.pop_back();
  ++yielded_;
  return i;
}

std::vector<bool> wait_cores(const std::vector<FutureCore*>& cores, const platform::Deadline& deadline,
                             ReturnWhen when) {
  const std::size_t n = cores.size();
  std::vector<bool> done(n, false);
  std::size_t n_done = 0;
  bool saw_exception = false;
  auto note = [&](std::size_t i) {
    if (done[i]) return;
    done[i] = true;
    ++n_done;
    if (cores[i]->phase() == FutureCore::finished && cores[i]->error()) saw_exception = true;
  };
  auto satisfied = [&] {
    if (n_done == n) return true;
    switch (when) {
      case ReturnWhen::first_completed:
        return n_done > 0;
      case ReturnWhen::first_exception:
        return saw_exception;
      default:
        return false;
    }
  };
  for (std::size_t i = 0; i < n; ++i) {
    if (cores[i]->done()) note(i);
  }
  if (satisfied()) return done;

  MultiWait w(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!done[i] && !w.watch(i, cores[i])) note(i);
  }
  while (!satisfied()) {
    auto fired = w.take(deadline);
    if (fired.empty()) break;  // timed out
    for (std::size_t i : fired) note(i);
  }
  w.unregister_all();
  // The sets count every future that completed while it was watched, as
  // Python's (its waiter's finished_futures): a hook that fired before
  // unregister_all took its lock is on the stack now. A completion after
  // that is concurrent with the return, and no caller can tell it apart
  // from one just after it, so it is not looked for.
  for (std::size_t i : w.take_ready()) done[i] = true;
  return done;
}

}  // namespace keel::detail
