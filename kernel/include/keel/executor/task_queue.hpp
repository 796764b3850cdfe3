// keel::detail::TaskQueue: the waiting tasks of a ThreadPoolExecutor.
//
// Contract: not thread-safe; the executor's lock guards it. Four disciplines:
// fifo (oldest first), lifo (newest first), priority (lowest priority value
// first, oldest first among equals, as Python's heapq and Java's
// PriorityBlockingQueue order them) and handoff (holds nothing: Java's
// SynchronousQueue, a task is accepted only by an idle or new worker). A
// non-zero capacity bounds fifo, lifo and priority queues. The queue holds one
// reference on every task in it; pop, pop_oldest, remove and drain pass it on.
// fifo and lifo are intrusive (no allocation per task) and singly linked, to
// keep the task small: fifo keeps the oldest at the head and appends at the
// tail; lifo pushes and pops at the head. Removing any other task (remove,
// and pop_oldest of a lifo queue) walks the list.
//
// Invariants: EXEC-5 (with the executor: a non-empty queue always has a live
// worker), EXEC-1 (no task is lost or duplicated by the queue).
#pragma once

#include "keel/executor/task.hpp"

namespace keel {

/// A ThreadPoolExecutor queue's order: fifo, lifo, priority (lower value first, FIFO among equals) or
/// handoff (holds nothing: a task is accepted only by an idle or new worker).
enum class QueueKind { fifo, lifo, priority, handoff };

namespace detail {

class TaskQueue {
 public:
  TaskQueue(QueueKind kind, std::size_t capacity) : kind_(kind), capacity_(capacity) {}
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  QueueKind kind() const { return kind_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool full() const { return kind_ == QueueKind::handoff || (capacity_ != 0 && size_ >= capacity_); }

  // Adds t unless full; returns whether it was added.
  bool offer(Task* t);
  // The next task to run, or null.
  Task* pop();
  // The task that has waited longest (smallest sequence number), or null.
  Task* pop_oldest();
  // Takes t out if it is queued; returns whether it was.
  bool remove(Task* t);
  // Every queued task, in the order they would have run.
  std::vector<Task*> drain();

 private:
  static bool runs_before(const Task* a, const Task* b) {
    return a->priority != b->priority ? a->priority < b->priority : a->seq < b->seq;
  }
  // std heap algorithms keep the "largest" at the front: invert the order.
  struct HeapOrder {
    bool operator()(const Task* a, const Task* b) const { return runs_before(b, a); }
  };
  // Unlinks t, whose predecessor is prev (null: t is the head).
  void unlink_after(Task* prev, Task* t);
  // Unlinks t if it is in the list; returns whether it was.
  bool unlink(Task* t);

  QueueKind kind_;
  std::size_t capacity_;
  std::size_t size_ = 0;
  Task* head_ = nullptr;  // fifo: oldest; lifo: newest
  Task* tail_ = nullptr;  // the last node: fifo: newest; lifo: oldest
  std::vector<Task*> heap_;
};

}  // namespace detail
}  // namespace keel
