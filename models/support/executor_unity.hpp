// The kernel's out-of-line future and executor code, compiled into the models
// of futures and the executor under the Relacy backend (after harness.hpp,
// which brings the sync code they build on); and the task codec's error
// encoding (process/task.cpp), which a process-pool call's answers decode.
#pragma once
#include "../../kernel/src/error/report.cpp"
#include "../../kernel/src/executor/decisions.cpp"
#include "../../kernel/src/executor/task_queue.cpp"
#include "../../kernel/src/executor/thread_pool.cpp"
#include "../../kernel/src/future/future.cpp"
#include "../../kernel/src/future/wait.cpp"
#include "../../kernel/src/process/task.cpp"
