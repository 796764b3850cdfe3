// keel platform configuration: the one switch between the native world and the
// Relacy model-checking world.
//
// Contract: every kernel header includes this first (through the other shim
// headers). With KEEL_MODEL_RELACY defined, it pulls in the standard headers the
// kernel uses *before* Relacy, then Relacy itself, and removes the macros Relacy
// defines for its own examples (memory_order_*, new, delete, malloc, ...) so the
// kernel source compiles unchanged in both worlds. Nothing outside
// keel/platform/ may include <atomic>, <thread>, <mutex>, <condition_variable>
// or <semaphore>, or call the futex syscall (checked by tests/platform/shim_boundary).
//
// Invariants: PLAT-1 (one switch selects the backend for all kernel code).
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#if defined(KEEL_MODEL_RELACY)
// <stop_token> pulls in libstdc++'s own waiting code, which Relacy's macros
// would break: it must come first (platform/stop.hpp includes it natively).
#include <iostream>
#include <sstream>
#include <stop_token>

#include <relacy/relacy.hpp>
#undef memory_order_relaxed
#undef memory_order_consume
#undef memory_order_acquire
#undef memory_order_release
#undef memory_order_acq_rel
#undef memory_order_seq_cst
#undef new
#undef delete
#undef malloc
#undef calloc
#undef realloc
#undef free
#undef assert
#undef errno
#undef pthread_create
#undef pthread_join
#undef pthread_t
#undef pthread_attr_t
#undef sched_yield
#undef pthread_yield
#undef sem_t
#define KEEL_MODEL 1
#else
#define KEEL_MODEL 0
#endif

// Clang thread-safety annotations; empty elsewhere.
#if defined(__clang__) && !defined(SWIG)
#define KEEL_TSA(x) __attribute__((x))
#else
#define KEEL_TSA(x)
#endif
#define KEEL_CAPABILITY(x) KEEL_TSA(capability(x))
#define KEEL_ACQUIRE(...) KEEL_TSA(acquire_capability(__VA_ARGS__))
#define KEEL_RELEASE(...) KEEL_TSA(release_capability(__VA_ARGS__))
#define KEEL_TRY_ACQUIRE(...) KEEL_TSA(try_acquire_capability(__VA_ARGS__))
#define KEEL_GUARDED_BY(x) KEEL_TSA(guarded_by(x))
#define KEEL_REQUIRES(...) KEEL_TSA(requires_capability(__VA_ARGS__))
#define KEEL_NO_TSA KEEL_TSA(no_thread_safety_analysis)

#if defined(__GNUC__)
#define KEEL_LIKELY(x) __builtin_expect(!!(x), 1)
#define KEEL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define KEEL_NOINLINE __attribute__((noinline))
#define KEEL_COLD __attribute__((cold, noinline))
#else
#define KEEL_LIKELY(x) (x)
#define KEEL_UNLIKELY(x) (x)
#define KEEL_NOINLINE
#define KEEL_COLD
#endif

// Starts a member (or a type) on a cache line of its own, so that data two
// threads write in turn does not share a line with data one of them only
// reads. Empty under the model: an over-aligned type is allocated by the
// aligned operator new, which Relacy does not replace, and the model's
// checks of use after free cover only what its own operator new allocated.
// Layout is all it changes; the code is the same.
#if KEEL_MODEL
#define KEEL_CACHE_ALIGNED
#else
#define KEEL_CACHE_ALIGNED alignas(64)
#endif
