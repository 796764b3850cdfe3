// keel::ProcessQueue: a bounded multi-producer multi-consumer message queue
// between processes, in named shared memory (Python's multiprocessing.Queue,
// but bounded and with no feeder thread).
//
// Contract: create(name, {.capacity, .max_message}) makes the segment
// (exclusively, mode 0600 by default: see SharedMemory); attach(name) opens it
// from any process and validates its header (ValueError for a segment that is
// not a ProcessQueue). Messages are byte strings of at most max_message bytes,
// delivered whole, once each, in FIFO order of their puts. put_bytes blocks
// while the queue is full, get_bytes while it is empty; the timed forms throw
// TimeoutError when the timeout passes first (and change nothing). A message
// larger than max_message is ProtocolError, and nothing changes. put<T>/get<T>
// carry values through keel's codec; a message that does not decode as T is
// ProtocolError and stays in the queue (get_bytes still removes it). Raw bytes
// and values have different names (as Connection's send_bytes and send<T>):
// one `put` for both would silently send a std::string argument raw while
// get<std::string> expects it encoded. Using a closed handle is MisuseError.
// size(), empty() and full() are snapshots. The object is a handle: closing
// or destroying it unmaps the segment but leaves the queue (and its messages)
// to the other processes until someone calls unlink(), or until the process
// that created it ends: as for SharedMemory (LIFE-1), a queue created with
// track = true (the default) is unlinked when its creator ends, SIGKILL
// included, unless the creator handed it on with keep() first.
// create_unique(prefix) names the queue prefix + 16 random hex digits.
//
// Crash safety (IPC-2): state changes only under one RobustMutex in the
// segment, and each operation publishes its effect with a single store as its
// last step while it holds the lock: a put writes its slot, then advances
// `tail`; a get copies its message out, then advances `head`. A process
// killed at any instruction therefore leaves the queue either before or after
// its operation, never between; the next locker takes the lock over (counted
// by recoveries()) and the queue works on. A get killed after its publishing
// store has consumed the message (it died holding it), as in any queue.
//
// Waiting: two process-shared futex words used as sequence counters, bumped
// after every publish (put_seq) and consume (get_seq). A waiter reads the
// counter before it looks at the queue and sleeps only while the counter still
// holds that value, so no wake-up is lost between looking and sleeping. A
// process killed after publishing but before waking others cannot strand
// them: every sleep is cut into slices of recheck_interval after which the
// waiter looks again, and a takeover of the lock wakes every waiter.
//
// Invariants: IPC-1 (oversize or malformed messages are errors, never a crash
// or an unbounded allocation), IPC-2 (a process killed while holding the
// queue's lock does not wedge the others: the next locker takes over, counted),
// IPC-3 (a waiter is woken by the publish that lets it on, or by the next
// locker after a death; an attacher sees the whole header or none; size() is a
// count the queue had: models/process/queue_model.cpp runs the ring's code),
// LIFE-1 (the queue's segment goes when its creator ends, unless handed on).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/error.hpp"
#include "keel/platform/clock.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/shared_memory.hpp"

namespace keel {

/// The size of a new ProcessQueue.
struct ProcessQueueOptions {
  std::size_t capacity = 64;       ///< messages the queue holds (1 .. 2^31)
  std::size_t max_message = 4096;  ///< bytes per message (1 .. 2^30)
  unsigned mode = 0600;            ///< permission bits of the segment
  bool track = true;               ///< unlinked when the creating process ends, unless kept (see SharedMemory)
};

namespace detail {

struct QueueHeader;  // the segment's layout, in queue.cpp

// Tests only: the steps at which process_queue_test_hook is called.
enum class QueueStep {
  put_before_publish,  // lock held, the slot written, `tail` not yet advanced
  get_before_publish,  // lock held, the message copied out, `head` not yet advanced
  put_before_wake,     // lock released, `tail` advanced, getters not yet woken
  put_after_publish,   // lock held, `tail` advanced
  get_after_publish,   // lock held, `head` advanced
};
// Tests only: when set, called at each QueueStep, so a test can kill a
// process at the worst moments deterministically.
inline void (*process_queue_test_hook)(QueueStep) = nullptr;
// Tests only: when non-zero, the longest sleep before a waiter looks again,
// in place of ProcessQueue::recheck_interval. A test that makes it long turns
// a lost wake-up into a waiter that stays asleep, rather than one 50 ms late.
inline std::chrono::milliseconds process_queue_test_recheck{0};

}  // namespace detail

/// A handle to a FIFO of messages in shared memory, usable from every process that attaches it.
class ProcessQueue {
 public:
  /// How long a waiter sleeps before it looks again without being woken; only
  /// a process killed between publishing and waking makes that matter.
  static constexpr std::chrono::milliseconds recheck_interval{50};

  /// A new queue named `name` in shared memory (OsError if the name exists).
  static ProcessQueue create(std::string_view name, ProcessQueueOptions options = {});
  /// A new queue named prefix + 16 random hex digits (see SharedMemory::create_unique).
  static ProcessQueue create_unique(std::string_view prefix, ProcessQueueOptions options = {});
  /// Opens the queue another handle created under `name` (ValueError if it is not one).
  static ProcessQueue attach(std::string_view name);

  ProcessQueue() noexcept = default;  ///< closed
  /// Takes other's mapping; other is left closed.
  ProcessQueue(ProcessQueue&& other) noexcept;
  /// Closes this handle, then takes other's mapping.
  ProcessQueue& operator=(ProcessQueue&& other) noexcept;
  ProcessQueue(const ProcessQueue&) = delete;
  ProcessQueue& operator=(const ProcessQueue&) = delete;
  /// Closes this handle; the queue lives on for the others.
  ~ProcessQueue() = default;

  /// Appends one message, waiting for room.
  void put_bytes(std::string_view message) { put_until(message, platform::Deadline::never()); }
  /// put_bytes, or TimeoutError (nothing changed) if no room frees within `timeout`.
  template <class Rep, class Period>
  void put_bytes(std::string_view message, std::chrono::duration<Rep, Period> timeout) {
    put_until(message, platform::Deadline::after(timeout));
  }
  /// Appends only if there is room now; false (nothing changed) if full.
  bool try_put_bytes(std::string_view message);

  /// Removes and returns the oldest message, waiting for one.
  std::string get_bytes() { return get_until(platform::Deadline::never()); }
  /// get_bytes, or TimeoutError (nothing changed) if no message arrives within `timeout`.
  template <class Rep, class Period>
  std::string get_bytes(std::chrono::duration<Rep, Period> timeout) {
    return get_until(platform::Deadline::after(timeout));
  }
  /// The oldest message if there is one now.
  std::optional<std::string> try_get_bytes();

  /// Values through the codec (keel/process/codec.hpp).
  template <class T>
  void put(const T& value) {
    put_bytes(encode(value));
  }
  /// put(value), or TimeoutError if no room frees within `timeout`.
  template <class T, class Rep, class Period>
  void put(const T& value, std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = platform::Deadline::after(timeout);
    put_until(encode(value), deadline);
  }
  /// The oldest message, decoded as T (waits for one).
  template <class T>
  T get() {
    return get_value<T>(platform::Deadline::never());
  }
  /// get<T>(), or TimeoutError if no message arrives within `timeout`.
  template <class T, class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return get_value<T>(platform::Deadline::after(timeout));
  }

  std::size_t size() const;  ///< messages queued now (a snapshot)
  /// Whether no message is queued (a snapshot).
  bool empty() const { return size() == 0; }
  /// Whether it holds capacity() messages (a snapshot).
  bool full() const { return size() == capacity(); }
  /// The most messages it holds.
  std::size_t capacity() const;
  /// The largest message it accepts, in bytes.
  std::size_t max_message() const;
  /// Times a locker took the queue's lock over from a process that died
  /// holding it, over the queue's life, in all processes.
  std::uint64_t recoveries() const;

  /// The shared-memory name it lives under.
  const std::string& name() const noexcept { return memory_.name(); }
  /// Whether this handle is open (not closed or moved from).
  bool is_open() const noexcept { return header_ != nullptr; }
  void close() noexcept;  ///< unmaps; the queue lives on for the others
  void unlink();          ///< removes the name; attached handles keep working
  /// Hands the queue on: it outlives this process (see SharedMemory::keep).
  bool keep() { return memory_.keep(); }
  /// Whether this process's resource tracker will unlink it at exit (see SharedMemory::is_tracked).
  bool is_tracked() const noexcept { return memory_.is_tracked(); }

 private:
  // Called with the message's bytes under the lock; throwing leaves the
  // message in the queue.
  using Visitor = void (*)(void* ctx, std::string_view bytes);

  ProcessQueue(SharedMemory memory, detail::QueueHeader* header) noexcept;
  // create and create_unique: name is a prefix when unique.
  static ProcessQueue make(std::string_view name, const ProcessQueueOptions& options, bool unique);

  void put_until(std::string_view message, const platform::Deadline& deadline);
  std::string get_until(const platform::Deadline& deadline);
  // One attempt (wait = false) or a wait until the deadline: true when a
  // message was handed to visit and removed.
  bool take(const platform::Deadline& deadline, bool wait, Visitor visit, void* ctx);
  bool give(std::string_view message, const platform::Deadline& deadline, bool wait);
  const detail::QueueHeader& header() const;

  template <class T>
  T get_value(const platform::Deadline& deadline) {
    std::optional<T> out;
    take(
        deadline, true,
        [](void* ctx, std::string_view bytes) { *static_cast<std::optional<T>*>(ctx) = decode<T>(bytes); }, &out);
    return std::move(*out);
  }

  SharedMemory memory_;
  detail::QueueHeader* header_ = nullptr;
};

}  // namespace keel
