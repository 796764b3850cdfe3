// The frames between the ProcessPool supervisor and a worker (private to
// kernel/src/process_pool). A worker's channel is a stream socket; every
// message is one frame (keel/process/frame.hpp) whose id is the task id.
//
// parent -> worker: call (payload: task name, then its encoded arguments),
//                   chunk (task name, then a list of encoded argument sets),
//                   close (finish what was sent before, then exit 0).
// worker -> parent: ready (initializer done), init_failed (an encoded error),
//                   ok / error (the head task's result or encoded error).
// The spawn payload carries the initializer and the message size limit.
// The worker writes each answer before it starts the next task: the
// supervisor's state machine relies on it (only the head can have started).
#pragma once

#include <cstdint>

namespace keel::pool::proto {

inline constexpr std::uint8_t call = 2;
inline constexpr std::uint8_t chunk = 3;
inline constexpr std::uint8_t close = 4;
inline constexpr std::uint8_t ready = 10;
inline constexpr std::uint8_t init_failed = 11;
inline constexpr std::uint8_t ok = 12;
inline constexpr std::uint8_t error = 13;

}  // namespace keel::pool::proto
