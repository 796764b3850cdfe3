// keel::detail's ProcessQueue ring: the segment's header and the locked ring
// operations over it, apart from the named segment that holds them, so that
// models/process/queue_model.cpp runs the shipped put, get, size and header
// publication over plain memory under Relacy (ProcessQueue, in queue.cpp, is
// the named segment around them).
//
// Contract: construct a QueueHeader in the segment's first bytes, then
// init_queue() writes its layout and publishes it (the magic word last, with
// release); validate_queue() (acquire) accepts only a header so published and
// consistent with the segment's size. queue_give/queue_take/queue_size are
// ProcessQueue's put, get and size() over such a header, with its errors and
// messages (see keel/process/queue.hpp for the crash-safety argument).
//
// Invariants: IPC-1 (a message above max_message is refused before anything
// changes), IPC-2 (state changes only under the robust lock, each operation
// published by one store; a takeover wakes every waiter), IPC-3 (a waiter is
// woken by the publish that lets it on or by the next locker after a death;
// an attacher sees the whole header or none; size() is a count the queue had).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "keel/platform/atomic.hpp"
#include "keel/platform/clock.hpp"
#include "keel/platform/futex.hpp"
#include "keel/platform/var.hpp"
#include "keel/process/robust_mutex.hpp"

namespace keel::detail {

// Segment layout: this header, then `capacity` slots of slot_size bytes from
// slots_offset. A slot is a u64 length, then the message bytes.
//
// head and tail count messages consumed and published since creation (they
// never wrap in practice: 2^64); message n lives in slot n % capacity, and
// 0 <= tail - head <= capacity. Both change only under `lock`, each by one
// store, which is what makes a kill at any instruction harmless. They are
// atomics so size() can read them without the lock. The layout fields are
// Vars: written once by the creator before `magic`, read by every attacher
// after it, so a weakened publication is a data race in the model.
struct QueueHeader {
  platform::Atomic<std::uint64_t> magic{0};  // stored last by init_queue (release)
  platform::Var<std::uint64_t> version;
  platform::Var<std::uint64_t> capacity;
  platform::Var<std::uint64_t> max_message;
  platform::Var<std::uint64_t> slot_size;
  platform::Var<std::uint64_t> slots_offset;
  platform::Var<std::uint64_t> total_size;
  RobustMutex lock;
  platform::Atomic<std::uint64_t> head{0};
  platform::Atomic<std::uint64_t> tail{0};
  platform::FutexWord put_seq{0};  // bumped after each publish: getters sleep on it
  platform::FutexWord get_seq{0};  // bumped after each consume: putters sleep on it
  // Sleepers on each word, so an operation skips the wake syscall when nobody
  // sleeps. A process killed while asleep leaves its count behind: that only
  // costs spare wakes.
  platform::Atomic<std::uint32_t> getters_waiting{0};
  platform::Atomic<std::uint32_t> putters_waiting{0};
};

// The segment size of a queue of `capacity` messages of up to `max_message`
// bytes; ValueError (ProcessQueue::create's) for sizes out of range.
std::size_t queue_bytes(std::size_t capacity, std::size_t max_message);

// Writes the layout into a freshly constructed header at the start of a
// segment of queue_bytes(capacity, max_message) bytes, then publishes it.
void init_queue(QueueHeader& h, std::size_t capacity, std::size_t max_message);

// ValueError naming `name` unless h is a published queue that fits in
// segment_size bytes.
void validate_queue(const QueueHeader& h, std::size_t segment_size, const std::string& name);

// Called with a message's bytes under the lock; throwing leaves the message queued.
using QueueVisitor = void (*)(void* ctx, std::string_view bytes);

// One attempt (wait = false) or a wait until the deadline: true when the
// message was appended (give) or handed to visit and removed (take).
bool queue_give(QueueHeader& h, std::string_view message, const platform::Deadline& deadline, bool wait);
bool queue_take(QueueHeader& h, const platform::Deadline& deadline, bool wait, QueueVisitor visit, void* ctx);

// Messages queued (a snapshot), at most the capacity.
std::size_t queue_size(const QueueHeader& h);

}  // namespace keel::detail
