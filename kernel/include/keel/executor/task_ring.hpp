// keel::detail::TaskRing<T>: a bounded multi-producer multi-consumer FIFO of
// pointers, for a thread pool's hot path without its lock
// (proofs/design/executor_ring.pml's ring).
//
// Contract: try_push(p) appends a non-null p and returns true, or returns
// false and changes nothing when the ring is full; try_pop() removes and
// returns the oldest pointer, or null when the ring is empty. Pops return the
// pointers in the order their pushes claimed positions, so each pusher's
// pointers come out in its own order. A pop sees every write its pusher made
// before the push. The capacity is a power of two, at least 2, fixed when the
// ring is made.
//
// Each cell carries a sequence word: pos while it waits for the push at
// position pos, pos + 1 once that push published its pointer, pos + capacity
// once a pop took it (free for the push a lap later). A push or a pop claims
// its position with a CAS on its end's counter and then owns the cell until
// it stores the next sequence value. So a thread stopped between its claim
// and that store makes the others see that one cell as full or empty; it
// never hands a pointer out twice or loses one. That is why "empty" can be
// answered while a later position is already published: the push that
// claimed the earlier position publishes and then wakes, as an event count's
// notifier must (EventCount, SYNC-16).
//
// The publishing store and the look at a cell are seq_cst, not just release
// and acquire: a pusher then reads an event count's waiters, and a worker
// registers as a waiter and then looks at the ring. Those two are a Dekker
// pair (SYNC-16), which release and acquire do not order.
//
// Invariants: EXEC-13.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/config.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/var.hpp"

namespace keel::detail {

template <class T>
class TaskRing {
 public:
  static constexpr std::size_t max_capacity = std::size_t{1} << 30;

  // Rounds min_capacity up to a power of two (at least 2).
  explicit TaskRing(std::size_t min_capacity)
      : mask_(round_up(min_capacity) - 1), cells_(std::make_unique<Cell[]>(mask_ + 1)) {
    for (std::size_t i = 0; i <= mask_; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }
  TaskRing(const TaskRing&) = delete;
  TaskRing& operator=(const TaskRing&) = delete;

  std::size_t capacity() const { return mask_ + 1; }

  bool try_push(T* p) {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const std::uint64_t seq = c.seq.load(std::memory_order_acquire);
      const auto lag = static_cast<std::int64_t>(seq - pos);
      if (lag == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed, std::memory_order_relaxed)) {
          c.value.store(p);
          if (KEEL_INJECTED(task_ring_publish_relaxed)) {
            c.seq.store(pos + 1, std::memory_order_relaxed);
          } else if (KEEL_INJECTED(task_ring_publish_release)) {
            c.seq.store(pos + 1, std::memory_order_release);
          } else {
            c.seq.store(pos + 1, std::memory_order_seq_cst);
          }
          return true;
        }
      } else if (lag < 0) {
        return false;  // the cell still holds the pointer pushed a lap ago
      } else {
        pos = tail_.load(std::memory_order_relaxed);  // another push took pos
      }
    }
  }

  T* try_pop() {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const std::uint64_t seq =
          c.seq.load(KEEL_INJECTED(task_ring_look_acquire) ? std::memory_order_acquire : std::memory_order_seq_cst);
      // Planted bug: a claimed cell whose pointer is not yet published is taken too.
      const std::uint64_t published = KEEL_INJECTED(task_ring_pop_unpublished) ? pos : pos + 1;
      const auto lag = static_cast<std::int64_t>(seq - published);
      if (lag == 0 || (lag == 1 && published == pos)) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed, std::memory_order_relaxed)) {
          T* p = c.value.load();
          c.seq.store(pos + mask_ + 1,
                      KEEL_INJECTED(task_ring_free_relaxed) ? std::memory_order_relaxed : std::memory_order_release);
          return p;
        }
      } else if (lag < 0) {
        return nullptr;  // nothing published at the head
      } else {
        pos = head_.load(std::memory_order_relaxed);  // another pop took pos
      }
    }
  }

  // Whether no pointer is published at the head: the seq_cst look of a
  // try_pop() without the pop, for a watcher that must pair with pushes
  // (SYNC-16's Dekker pair) and leave the tasks to the workers.
  bool looks_empty() const {
    const std::uint64_t pos = head_.load(std::memory_order_relaxed);
    return cells_[pos & mask_].seq.load(std::memory_order_seq_cst) != pos + 1;
  }

  // Positions claimed so far: pushes and pops. Their difference is the number
  // of pointers in the ring or being moved; a monitor that sees `popped()` stand
  // still while pushes wait knows no worker took a task since it last looked.
  std::uint64_t pushed() const { return tail_.load(std::memory_order_relaxed); }
  std::uint64_t popped() const { return head_.load(std::memory_order_relaxed); }

 private:
  // A line each: a pusher and a popper working on neighbouring positions
  // would otherwise move one line back and forth for every task.
  struct KEEL_CACHE_ALIGNED Cell {
    platform::Atomic<std::uint64_t> seq;
    platform::Var<T*> value;
  };

  static std::size_t round_up(std::size_t n) {
    if (n > max_capacity) {
      throw ValueError("TaskRing capacity " + std::to_string(n) + " exceeds " + std::to_string(max_capacity));
    }
    std::size_t c = 2;
    while (c < n) c <<= 1;
    return c;
  }

  const std::size_t mask_;
  const std::unique_ptr<Cell[]> cells_;
  // Each end on a line of its own: pushers and pops write them in turn.
  KEEL_CACHE_ALIGNED platform::Atomic<std::uint64_t> tail_{0};
  KEEL_CACHE_ALIGNED platform::Atomic<std::uint64_t> head_{0};
};

}  // namespace keel::detail
