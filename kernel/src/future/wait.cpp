// MultiWait: the waiter behind wait() and as_completed().
#include "keel/future/wait.hpp"

namespace keel::detail {

MultiWait::MultiWait(std::size_t n) : slots_(new Slot[n]), n_(n) {
  for (std::size_t i = 0; i < n; ++i) {
    slots_[i].owner = this;
    slots_[i].index = i;
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
  Slot* head = ready_.load(std::memory_order_relaxed);
  // Release: the waiter that takes the list reads next_ready, possibly before
  // it touches signal_.
  do {
    s->next_ready.store(head);
  } while (!ready_.compare_exchange_weak(
      head, s, KEEL_INJECTED(multiwait_push_relaxed) ? std::memory_order_relaxed : std::memory_order_release,
      std::memory_order_relaxed));
  if (KEEL_INJECTED(multiwait_push_skips_signal)) {
    return;  // seeded bug: the waiter is never told
  }
  if (signal_.exchange(1, std::memory_order_acq_rel) == 2) platform::futex_wake(signal_, 1);
}

std::vector<std::size_t> MultiWait::take(const platform::Deadline& deadline) {
  for (;;) {
    if (Slot* s = ready_.exchange(nullptr, std::memory_order_acquire)) {
      std::vector<std::size_t> out;
      for (; s; s = s->next_ready.load()) out.push_back(s->index);
      std::reverse(out.begin(), out.end());  // the stack holds the newest first
      return out;
    }
    std::int32_t v = signal_.load(std::memory_order_acquire);
    if (v == 1) {
      // Consumed (or about to be rechecked): clear and look again.
      signal_.store(0, std::memory_order_relaxed);
      continue;
    }
    if (v == 0 && !signal_.compare_exchange_strong(v, 2, std::memory_order_acq_rel, std::memory_order_acquire)) {
      continue;
    }
    if (platform::futex_wait(signal_, 2, deadline) == platform::WaitResult::timed_out) {
      if (ready_.load(std::memory_order_acquire) != nullptr) continue;
      return {};
    }
  }
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
  // The sets reflect the moment of return, as Python's do.
  for (std::size_t i = 0; i < n; ++i) {
    if (!done[i] && cores[i]->done()) done[i] = true;
  }
  return done;
}

}  // namespace keel::detail
