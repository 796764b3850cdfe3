// TaskQueue: intrusive list for fifo/lifo, a binary heap for priority.
#include "keel/executor/task_queue.hpp"

namespace keel::detail {

bool TaskQueue::offer(FutureCore* t) {
  if (full()) return false;
  if (kind_ == QueueKind::priority) {
    heap_.push_back(t);
    std::push_heap(heap_.begin(), heap_.end(), HeapOrder{});
  } else {
    t->q_next = nullptr;
    t->q_prev = tail_;
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

void TaskQueue::unlink(FutureCore* t) {
  if (t->q_prev) {
    t->q_prev->q_next = t->q_next;
  } else {
    head_ = t->q_next;
  }
  if (t->q_next) {
    t->q_next->q_prev = t->q_prev;
  } else {
    tail_ = t->q_prev;
  }
  t->q_next = t->q_prev = nullptr;
  --size_;
}

FutureCore* TaskQueue::pop() {
  if (size_ == 0) return nullptr;
  if (kind_ == QueueKind::priority) {
    std::pop_heap(heap_.begin(), heap_.end(), HeapOrder{});
    FutureCore* t = heap_.back();
    heap_.pop_back();
    --size_;
    return t;
  }
  FutureCore* t = kind_ == QueueKind::lifo ? tail_ : head_;
  unlink(t);
  return t;
}

FutureCore* TaskQueue::pop_oldest() {
  if (size_ == 0) return nullptr;
  if (kind_ == QueueKind::priority) {
    auto it = std::min_element(heap_.begin(), heap_.end(),
                               [](const FutureCore* a, const FutureCore* b) { return a->seq < b->seq; });
    FutureCore* t = *it;
    heap_.erase(it);
    std::make_heap(heap_.begin(), heap_.end(), HeapOrder{});
    --size_;
    return t;
  }
  FutureCore* t = head_;
  unlink(t);
  return t;
}

bool TaskQueue::remove(FutureCore* t) {
  if (kind_ == QueueKind::priority) {
    auto it = std::find(heap_.begin(), heap_.end(), t);
    if (it == heap_.end()) return false;
    heap_.erase(it);
    std::make_heap(heap_.begin(), heap_.end(), HeapOrder{});
    --size_;
    return true;
  }
  for (FutureCore* p = head_; p; p = p->q_next) {
    if (p == t) {
      unlink(t);
      return true;
    }
  }
  return false;
}

std::vector<FutureCore*> TaskQueue::drain() {
  std::vector<FutureCore*> out;
  out.reserve(size_);
  while (FutureCore* t = pop()) out.push_back(t);
  return out;
}

}  // namespace keel::detail
