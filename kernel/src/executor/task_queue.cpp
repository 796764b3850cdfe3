// TaskQueue: intrusive list for fifo/lifo, a binary heap for priority.
#include "keel/executor/task_queue.hpp"

namespace keel::detail {

bool TaskQueue::offer(Task* t) {
  if (full()) return false;
  if (kind_ == QueueKind::priority) {
    heap_.push_back(t);
    std::push_heap(heap_.begin(), heap_.end(), HeapOrder{});
  } else if (kind_ == QueueKind::lifo) {
    t->q_next = head_;
    head_ = t;
    if (!tail_) tail_ = t;
  } else {
    t->q_next = nullptr;
    if (tail_) {
      tail_->q_next = t;
    } else {
      head_ = t;
    }
    tail_ = t;
  }
  ++size_;
  return true;
}

void TaskQueue::unlink_after(Task* prev, Task* t) {
  if (prev) {
    prev->q_next = t->q_next;
  } else {
    head_ = t->q_next;
  }
  if (tail_ == t) tail_ = prev;
  t->q_next = nullptr;
  --size_;
}

bool TaskQueue::unlink(Task* t) {
  for (Task *prev = nullptr, *p = head_; p; prev = p, p = p->q_next) {
    if (p == t) {
      unlink_after(prev, t);
      return true;
    }
  }
  return false;
}

Task* TaskQueue::pop() {
  if (size_ == 0) return nullptr;
  if (kind_ == QueueKind::priority) {
    std::pop_heap(heap_.begin(), heap_.end(), HeapOrder{});
    Task* t = heap_.back();
    heap_.pop_back();
    --size_;
    return t;
  }
  // Both list disciplines run the head first.
  Task* t = head_;
  unlink_after(nullptr, t);
  return t;
}

Task* TaskQueue::pop_oldest() {
  if (size_ == 0) return nullptr;
  if (kind_ == QueueKind::priority) {
    auto it =
        std::min_element(heap_.begin(), heap_.end(), [](const Task* a, const Task* b) { return a->seq < b->seq; });
    Task* t = *it;
    heap_.erase(it);
    std::make_heap(heap_.begin(), heap_.end(), HeapOrder{});
    --size_;
    return t;
  }
  // fifo: the head; lifo: the tail, reached by a walk (discard_oldest on a
  // lifo queue, a saturated path, pays it).
  Task* t = kind_ == QueueKind::lifo ? tail_ : head_;
  unlink(t);
  return t;
}

bool TaskQueue::remove(Task* t) {
  if (kind_ == QueueKind::priority) {
    auto it = std::find(heap_.begin(), heap_.end(), t);
    if (it == heap_.end()) return false;
    heap_.erase(it);
    std::make_heap(heap_.begin(), heap_.end(), HeapOrder{});
    --size_;
    return true;
  }
  return unlink(t);
}

std::vector<Task*> TaskQueue::drain() {
  std::vector<Task*> out;
  out.reserve(size_);
  while (Task* t = pop()) out.push_back(t);
  return out;
}

}  // namespace keel::detail
