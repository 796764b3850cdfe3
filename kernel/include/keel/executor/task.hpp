// keel::detail::Task: one submission to a ThreadPoolExecutor, as the executor
// sees it: the queue link, the submission number and priority, and the way to
// run or fail it. TaskOf<R, Fn> is that task and its future's state in one
// heap object (one allocation per submit), so the future layer knows nothing
// of queues and the executor never allocates a second node.
//
// Contract: a Task lives exactly as long as its future state: the executor
// holds a reference (future().add_ref()) while the task is queued, handed or
// running, and gives it up with release(); the last release of any handle
// destroys the whole object. q_next, seq and priority belong to the executor's
// lock while the task is queued. execute() is called at most once, only by the
// thread whose future().start(true) returned started; the callable and its
// bound arguments are destroyed right after it (Python frees them then too),
// not when the last Future handle goes.
//
// Layout: TaskOf puts the future state first and the Task after it; the
// state ends without padding (FutureCore keeps the value flags in its own
// hole, and one pointer heads its circular hook list) and the callable's flag
// sits in Task's tail, so a task with an 8-byte result and an 8-byte callable
// is 120 bytes (thread_pool_decisions_test checks it), a 128-byte heap block.
//
// Memory: TaskOf's blocks come from the task-block cache (task_heap.hpp),
// which keeps freed blocks for the next submissions.
//
// Invariants: EXEC-1 (a task runs at most once and its future has exactly one
// final state), EXEC-2 (cancel racing start: start(true) decides), EXEC-15
// (its block has one owner at a time).
#pragma once

#include "keel/executor/task_heap.hpp"
#include "keel/future/future.hpp"

namespace keel::detail {

class Task {
 public:
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // The state of the future this task completes.
  virtual FutureCore& future() noexcept = 0;
  // Invokes the callable and completes the future. Only for the thread whose
  // future().start(true) returned started.
  virtual void execute() = 0;

  // Starts and executes the task unless it was cancelled; returns whether it ran.
  bool run() {
    if (future().start(true) != FutureCore::Start::started) return false;
    execute();
    return true;
  }
  // Completes a task that will not run (its pool broke, a hook refused it)
  // with `error`, unless it is already cancelled or final.
  void fail(std::exception_ptr error) {
    FutureCore& f = future();
    if (f.begin_completion()) f.finish(std::move(error));
  }
  bool cancel() { return future().cancel(); }
  void add_ref() noexcept { future().add_ref(); }
  void release() noexcept { future().release(); }

  // Executor bookkeeping, owned by the executor's lock while queued.
  Task* q_next = nullptr;
  std::uint64_t seq = 0;
  int priority = 0;

 protected:
  Task() = default;
  // Destroyed only as part of its TaskOf, through the future's release().
  ~Task() = default;
};

// The callable lives in raw storage with its own flag rather than in a
// std::optional: the flag then fits in the padding at the end of Task, where
// the optional's would have cost eight more bytes.
template <class R, class Fn>
class TaskOf final : public FutureState<R>, public Task {
 public:
  explicit TaskOf(Fn fn) {
    ::new (static_cast<void*>(fn_)) Fn(std::move(fn));
    live_ = true;
  }
  ~TaskOf() override {
    if (live_) callable().~Fn();
  }
  // From the task-block cache (task_heap.hpp): the last release of the
  // future's state deletes the whole object through these.
  static void* operator new(std::size_t n) { return task_block_allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { task_block_deallocate(p, n); }
  // An over-aligned callable would find the two above first: its own go to
  // the global aligned forms.
  static void* operator new(std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
  static void operator delete(void* p, std::size_t, std::align_val_t a) noexcept { ::operator delete(p, a); }

  FutureCore& future() noexcept override { return *this; }
  void execute() override {
    complete_with<R>(*this, [this]() -> R { return callable()(this->stop_token()); });
    live_ = false;
    callable().~Fn();
  }

 private:
  Fn& callable() { return *std::launder(reinterpret_cast<Fn*>(fn_)); }

  bool live_ = false;  // fn_ holds the callable
  alignas(Fn) unsigned char fn_[sizeof(Fn)];
};

// The executor's task behind a future a ThreadPoolExecutor returned (null
// for any other future): for checks that follow a task by its number.
template <class T>
Task* task_of(const Future<T>& f) noexcept {
  return dynamic_cast<Task*>(state_of(f));
}

}  // namespace keel::detail
