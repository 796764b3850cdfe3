// The wire protocol between the ProcessPool supervisor and its workers
// (private to kernel/src/process_pool): frame kinds, payloads, and the start
// slots they share.
//
//   submitters --Edge--> supervisor (Machine + driver) ==channel==> worker
//                                  ^   \                          /  |
//                                  |    `-- start slots, answer -'   |
//                                  |        ring (shm)              |
//                                  `===== answer pipe (+ bell) ======'
//
// Each worker has its own channel for what the parent sends (a stream
// socket, its reading side shut in the parent), its own answer ring and
// answer pipe for what the worker sends back (every message on any of them
// is one frame, keel/process/frame.hpp), and its own page (a memfd both
// map) that holds its start slots and then its ring. A worker's frames go
// into the ring when they fit; what does not fit goes by pipe, and after a
// ring frame the worker writes a `bell` frame on the pipe only if the
// supervisor said it may sleep (answer_ring.hpp has the rules that keep the
// two paths one ordered stream). A pipe write per tiny task was most of the
// worker's CPU on the bench's 2-CPU VM (1.7-2.0 us of it per task; with
// the ring, 0.3 us). A task sent to a worker carries its slot's index in
// the frame flags, and the slot holds (task id << 2) | state: sent, started
// or dead.
//
// parent -> worker: call (payload: u32 name length, name, encoded arguments),
//                   chunk (the task name, then a list of encoded argument
//                   sets), close (finish what was sent before, then exit 0).
// worker -> parent: ready (initializer done), init_failed (an encoded error),
//                   started (it won the task's slot and runs it now),
//                   skipped (it lost the slot: the task never runs there),
//                   ok / error (the task's result or encoded error),
//                   bell (pipe only: a frame waits in the ring).
//
// The worker takes frames in order. Before running a task it moves the
// slot from sent to started (the start), then sends `started`, batched
// with the previous task's answer when the next task is already buffered,
// or alone after being idle; either way it is sent before the task runs,
// so the parent can say the future is running while it runs. It sends a
// task's answer before it starts the next, so a task that kills the worker
// costs no earlier answer. The parent
// revokes a sent task, or the user cancels it, by moving the slot from sent
// to dead; whoever moves it first decides. The spawn payload carries the
// initializer, the message size limit, the number of slots and the ring's
// size.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "answer_ring.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/inject.hpp"

namespace keel::pool::proto {

inline constexpr std::uint8_t call = 2;
inline constexpr std::uint8_t chunk = 3;
inline constexpr std::uint8_t close = 4;
inline constexpr std::uint8_t ready = 10;
inline constexpr std::uint8_t init_failed = 11;
inline constexpr std::uint8_t ok = 12;
inline constexpr std::uint8_t error = 13;
inline constexpr std::uint8_t started = 14;
inline constexpr std::uint8_t skipped = 15;
// worker -> parent, on the pipe only: a frame waits in the answer ring and
// the parent may be asleep (answer_ring.hpp). No payload.
inline constexpr std::uint8_t bell = 16;

// The answer ring's size in each worker's page (answer_ring.hpp): a few
// hundred small answers, and one answer of up to 64 KiB, go without a
// system call. A larger frame goes by pipe.
inline constexpr std::uint32_t ring_bytes = 64u << 10;
inline constexpr std::uint32_t max_ring_bytes = 16u << 20;

// Slots per worker: the index travels in the frame's flags byte.
inline constexpr unsigned max_slots = 256;

using Slot = platform::Atomic<std::uint64_t>;
inline constexpr std::uint64_t slot_sent(std::uint64_t task) { return (task << 2) | 1u; }
inline constexpr std::uint64_t slot_started(std::uint64_t task) { return (task << 2) | 2u; }
inline constexpr std::uint64_t slot_dead(std::uint64_t task) { return (task << 2) | 3u; }

// The two moves out of sent(task), one per side; the first to move the word
// decides (POOL-7), and neither may overwrite the other's move.
//
// Every order is relaxed: only who wins the word matters. Nothing is
// published through it: the task travels to the worker on its channel and
// the answer back on its pipe, and those syscalls (the kernel's socket and
// pipe locks) order the parent's sent(task) store before the worker's read
// of the frame, as they would a relaxed one; what the parent's threads share
// about a call (its future) is ordered by the future's hook lock, which both
// a user's cancel and the supervisor's undispatch take. The word's reuse
// (dead or started, then 0, then another sent) is ordered by its own
// modification order, which every RMW reads the end of. (The future's own
// cancel CAS on the same word is relaxed for the same reasons.)

// The worker starts the task: sent(task) -> started(task). False if the
// slot holds anything else (dead: revoked or cancelled; or not this task's).
inline bool try_start(Slot& slot, std::uint64_t task) {
  std::uint64_t seen = slot_sent(task);
  if (KEEL_INJECTED(pool_start_blind)) {
    slot.store(slot_started(task), std::memory_order_relaxed);
    return true;
  } else {
    return slot.compare_exchange_strong(seen, slot_started(task), std::memory_order_relaxed, std::memory_order_relaxed);
  }
}

// The parent takes a sent task back: sent(task) -> dead(task). False if the
// word had already moved; `seen` then says to what (started: the worker
// runs it; dead: a user's cancel won it first).
inline bool try_revoke(Slot& slot, std::uint64_t task, std::uint64_t& seen) {
  seen = slot_sent(task);
  if (KEEL_INJECTED(pool_revoke_blind)) {
    slot.store(slot_dead(task), std::memory_order_relaxed);
    return true;
  } else {
    return slot.compare_exchange_strong(seen, slot_dead(task), std::memory_order_relaxed, std::memory_order_relaxed);
  }
}

std::string call_payload(std::string_view name, std::string_view args);
std::string chunk_payload(const std::string& name, const std::vector<std::string>& args);
// Runs every call of a chunk payload in this process (a worker's answer, and
// the parent's caller_runs): the encoded list of (ok, result or error) pairs,
// each error report cut to max_error bytes. The task is looked up once; an
// unknown name is every call's error. ProtocolError if the payload does not
// decode.
std::string run_chunk(std::string_view payload, std::size_t max_error);
// ProtocolError on a malformed payload. The views point into `payload`.
struct CallView {
  std::string_view name;
  std::string_view args;
};
CallView decode_call(std::string_view payload);

struct SpawnConfig {
  std::string init_task;  // empty: no initializer
  std::string init_args;
  std::uint64_t max_message = 0;
  std::uint32_t slots = 0;
  std::uint32_t ring = 0;  // the answer ring's bytes in the slot page; 0: none (frames go by pipe)
};
std::string encode_spawn(const SpawnConfig& c);
SpawnConfig decode_spawn(std::string_view payload);

// A worker's page of start slots, then its answer ring (`ring_size` bytes, none
// when 0), mapped from a memfd: created by the parent (zeroed, close-on-exec),
// attached by the worker. Unmapped on destruction.
class SlotPage {
 public:
  SlotPage() = default;
  static SlotPage create(unsigned count, std::uint32_t ring_size = 0);  // OsError on failure
  // Takes the fd; OsError on failure, also when the fd holds fewer bytes
  // than the page and its ring (touching them would be a SIGBUS).
  static SlotPage attach(int fd, unsigned count, std::uint32_t ring_size = 0);
  SlotPage(SlotPage&& o) noexcept;
  SlotPage& operator=(SlotPage&& o) noexcept;
  SlotPage(const SlotPage&) = delete;
  SlotPage& operator=(const SlotPage&) = delete;
  ~SlotPage();
  Slot& operator[](unsigned i) { return slots_[i]; }
  unsigned size() const { return count_; }
  int fd() const { return fd_; }  // the parent's memfd, for the spawn; -1 once closed
  void close_fd();
  // The answer ring's ends over this page (unattached when it has none).
  ring::Writer ring_writer();
  ring::Reader ring_reader();

 private:
  void reset() noexcept;
  Slot* slots_ = nullptr;
  unsigned count_ = 0;
  std::uint32_t ring_ = 0;
  std::size_t bytes_ = 0;
  int fd_ = -1;
};

}  // namespace keel::pool::proto
