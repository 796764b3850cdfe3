// The kernel's out-of-line code, compiled into each model binary under the
// Relacy backend. The shim itself is header-only in both worlds.
#pragma once
#include "../../kernel/src/executor/task_queue.cpp"
#include "../../kernel/src/executor/thread_pool.cpp"
#include "../../kernel/src/future/future.cpp"
#include "../../kernel/src/future/wait.cpp"
#include "../../kernel/src/sync/barrier.cpp"
#include "../../kernel/src/sync/condition.cpp"
#include "../../kernel/src/sync/event.cpp"
#include "../../kernel/src/sync/mutex.cpp"
#include "../../kernel/src/sync/semaphore.cpp"
#include "../../kernel/src/sync/timer.cpp"
