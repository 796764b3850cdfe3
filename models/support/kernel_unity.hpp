// The kernel's out-of-line sync code, compiled into each model binary under the
// Relacy backend. The shim itself is header-only in both worlds. Models of the
// futures and the executor also include executor_unity.hpp; keeping it apart
// keeps the sync models (and their twins) quick to build.
#pragma once
#include "../../kernel/src/sync/barrier.cpp"
#include "../../kernel/src/sync/condition.cpp"
#include "../../kernel/src/sync/event.cpp"
#include "../../kernel/src/sync/mutex.cpp"
#include "../../kernel/src/sync/semaphore.cpp"
#include "../../kernel/src/sync/timer.cpp"
