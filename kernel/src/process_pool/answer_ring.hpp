// keel::pool's answer ring: the way a ProcessPool worker's frames (ready,
// started, skipped, answers) reach the supervisor without a system call each.
// A byte ring in the worker's shared page (SlotPage) carries whole frames;
// the worker's answer pipe carries what does not fit, and a one-frame `bell`
// when the supervisor may be asleep in poll(). The worker and the supervisor
// use the code here; models/process_pool/ring_model.cpp runs the same code
// under Relacy, with a pipe of its own.
//
// Contract:
// - The worker sends a batch of whole frames with send(): into the ring when
//   it fits and every frame it sent by pipe before was handled; else by pipe.
//   After a ring publication it rings the bell only when the supervisor said
//   it may sleep (arm()), and then once per sleep.
// - The supervisor takes what the ring holds with take() (ProtocolError when
//   the worker's tail is impossible: a worker is not trusted with its page),
//   and before it handles a frame read from the pipe it takes the ring first
//   (on_pipe_frame()): every byte in the ring then was published before that
//   pipe frame was written, because nothing goes into the ring while a pipe
//   frame is unhandled. Before poll() it arms each ring and sleeps only if
//   every arm() says nothing waits; after poll() it disarms them.
// - A frame published in the ring outlives its worker: the supervisor drains
//   the ring of a worker it saw exit before it reaps it.
//
// Invariants: POOL-13 (every frame a worker sends reaches the supervisor
// once, whole, in the order sent, over the ring or the pipe; a supervisor
// asleep while a frame waits in a ring is woken; a frame published before
// the worker died is still read), IPC-1 (a ring whose tail is out of range
// is a ProtocolError, never a read outside the ring).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "keel/error.hpp"
#include "keel/platform/atomic.hpp"
#include "keel/platform/inject.hpp"
#include "keel/platform/var.hpp"

namespace keel::pool::ring {

// The ring's counters, in the shared page before its bytes. tail counts the
// bytes the worker published, head those the supervisor took (they never
// wrap in practice: 2^64 bytes); pipe_done counts the bytes of pipe frames
// the supervisor handled (bells aside); asleep is 1 while the supervisor may
// sleep without looking at the ring again. The worker writes only tail and
// asleep (to claim a bell); the supervisor keeps its own head and pipe
// counts and never reads them back, so a worker that scribbles on them
// misleads only itself.
struct Header {
  alignas(64) platform::Atomic<std::uint64_t> tail{0};
  alignas(64) platform::Atomic<std::uint64_t> head{0};
  platform::Atomic<std::uint64_t> pipe_done{0};
  // 1 from the start: a worker's first frame may find the supervisor asleep
  // in a poll() armed before the worker existed.
  platform::Atomic<std::uint32_t> asleep{1};
};

// The worker's end.
class Writer {
 public:
  Writer() = default;
  Writer(Header* h, platform::Byte* data, std::uint64_t capacity) : h_(h), data_(data), cap_(capacity) {}

  bool attached() const { return h_ != nullptr; }

  // Publishes `frames` (whole frames, one batch) in the ring; false, with
  // nothing published, when they must go by pipe: no ring, no room, or a
  // frame sent by pipe earlier is not handled yet (the supervisor takes the
  // ring before each pipe frame, so a ring frame must never be newer than an
  // unhandled pipe frame).
  bool put(std::string_view frames) {
    if (!h_ || frames.size() > cap_) return false;
    // acquire: pairs with the supervisor's release of the handled count (its
    // handling of those frames comes first).
    if (!KEEL_INJECTED(ring_ignores_pipe_order) && h_->pipe_done.load(std::memory_order_acquire) != pipe_sent_) {
      return false;
    }
    // acquire: the supervisor's copy out of the bytes it took happens before
    // they are overwritten here.
    const std::uint64_t head =
        h_->head.load(KEEL_INJECTED(ring_head_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire);
    const std::uint64_t used = tail_ - head;
    if (used > cap_ || frames.size() > cap_ - used) return false;
    const std::uint64_t at = tail_ % cap_;
    const std::uint64_t first = frames.size() < cap_ - at ? frames.size() : cap_ - at;
    platform::store_bytes(data_ + at, frames.data(), first);
    platform::store_bytes(data_, frames.data() + first, frames.size() - first);
    tail_ += frames.size();
    // seq_cst, not only release (which publishes the bytes): with the load of
    // asleep in take_bell() and the supervisor's arm(), either it sees this
    // tail or take_bell() sees it asleep (store-load: a release store may
    // pass a later load).
    std::memory_order order = std::memory_order_seq_cst;
    if (KEEL_INJECTED(ring_publish_relaxed)) order = std::memory_order_relaxed;
    if (KEEL_INJECTED(ring_publish_release)) order = std::memory_order_release;
    h_->tail.store(tail_, order);
    return true;
  }

  // After a put(): whether the supervisor may be asleep, in which case this
  // worker claims the one bell of that sleep and must write it.
  bool take_bell() {
    if (KEEL_INJECTED(ring_skip_bell)) return false;
    const std::memory_order order =
        KEEL_INJECTED(ring_publish_release) ? std::memory_order_acquire : std::memory_order_seq_cst;
    if (h_->asleep.load(order) == 0) return false;
    return h_->asleep.exchange(0, std::memory_order_seq_cst) != 0;
  }

  // `bytes` of frames went by pipe.
  void sent_by_pipe(std::size_t bytes) { pipe_sent_ += bytes; }

 private:
  Header* h_ = nullptr;
  platform::Byte* data_ = nullptr;
  std::uint64_t cap_ = 0;
  std::uint64_t tail_ = 0;       // the worker's own: never read back from the page
  std::uint64_t pipe_sent_ = 0;  // bytes of frames sent by pipe, bells aside
};

// Sends one batch of whole frames: by ring when put() takes it (then the
// bell, if the supervisor may sleep), else by pipe. `write(bytes)` writes to
// the pipe and is false when the supervisor is gone; so is send().
template <class Write>
bool send(Writer& w, std::string_view frames, std::string_view bell, Write&& write) {
  if (frames.empty()) return true;
  if (w.put(frames)) return !w.take_bell() || write(bell);
  if (!write(frames)) return false;
  w.sent_by_pipe(frames.size());
  return true;
}

// The supervisor's end.
class Reader {
 public:
  Reader() = default;
  Reader(Header* h, platform::Byte* data, std::uint64_t capacity) : h_(h), data_(data), cap_(capacity) {}

  bool attached() const { return h_ != nullptr; }

  // Takes every byte published since the last take: room(n) returns where n
  // bytes go, and take() returns n (0: nothing new). ProtocolError, with
  // nothing taken, if the worker's tail is behind the bytes already taken or
  // more than the ring's size ahead of them.
  template <class Room>
  std::size_t take(Room&& room) {
    if (!h_) return 0;
    // acquire: the bytes up to tail were written before it was published.
    const std::uint64_t tail = h_->tail.load(std::memory_order_acquire);
    const std::uint64_t n = tail - head_;
    if (n == 0) return 0;
    if (n > cap_) {
      throw ProtocolError("ProcessPool: a worker's answer ring claims " + std::to_string(n) +
                          " unread bytes in a ring of " + std::to_string(cap_));
    }
    char* out = room(static_cast<std::size_t>(n));
    const std::uint64_t at = head_ % cap_;
    const std::uint64_t first = n < cap_ - at ? n : cap_ - at;
    platform::load_bytes(out, data_ + at, first);
    platform::load_bytes(out + first, data_, n - first);
    head_ = tail;
    // release: the copy above is done before the worker may overwrite.
    h_->head.store(head_, KEEL_INJECTED(ring_head_relaxed) ? std::memory_order_relaxed : std::memory_order_release);
    return static_cast<std::size_t>(n);
  }

  // A frame of `bytes` read from the pipe was handled (not a bell).
  void handled_by_pipe(std::size_t bytes) {
    pipe_done_ += bytes;
    // release: its handling comes before any frame the worker then puts in
    // the ring (Writer::put's acquire).
    if (h_) h_->pipe_done.store(pipe_done_, std::memory_order_release);
  }

  // Before sleeping in poll(): true when the ring holds nothing untaken; a
  // frame published from now on rings the bell.
  bool arm() {
    if (!h_) return true;
    h_->asleep.store(1, std::memory_order_seq_cst);
    if (KEEL_INJECTED(ring_arm_skips_recheck)) return true;
    return h_->tail.load(std::memory_order_seq_cst) == head_;
  }

  // Awake again: frames need no bell until the next arm().
  void disarm() {
    if (h_) h_->asleep.store(0, std::memory_order_relaxed);
  }

 private:
  Header* h_ = nullptr;
  platform::Byte* data_ = nullptr;
  std::uint64_t cap_ = 0;
  std::uint64_t head_ = 0;       // the supervisor's own: never read back from the page
  std::uint64_t pipe_done_ = 0;  // likewise
};

// The supervisor's rule for one frame read from the pipe, of `bytes` bytes:
// the ring is taken and handled first (drain()), then the frame itself
// (handle()), unless it is a bell, which only woke the supervisor.
template <class Drain, class Handle>
void on_pipe_frame(Reader& r, bool bell, std::size_t bytes, Drain&& drain, Handle&& handle) {
  if (!KEEL_INJECTED(ring_pipe_frame_first)) drain();
  if (bell) return;
  handle();
  r.handled_by_pipe(bytes);
  if (KEEL_INJECTED(ring_pipe_frame_first)) drain();
}

}  // namespace keel::pool::ring
