// keel: the whole public API in one include.
//
// Invariants: those of each included header (see proofs/INVARIANTS.md).
#pragma once

#include "keel/cluster/cluster_pool.hpp"
#include "keel/error.hpp"
#include "keel/executor/thread_pool.hpp"
#include "keel/future/coroutine.hpp"
#include "keel/future/future.hpp"
#include "keel/future/wait.hpp"
#include "keel/process/bootstrap.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/process.hpp"
#include "keel/process/queue.hpp"
#include "keel/process/robust_mutex.hpp"
#include "keel/process/shared_memory.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "keel/shutdown.hpp"
#include "keel/sync/barrier.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/recursive_mutex.hpp"
#include "keel/sync/semaphore.hpp"
#include "keel/sync/timer.hpp"
#include "keel/timeout.hpp"
