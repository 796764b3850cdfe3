// keel::ProcessQueue's ring: the header's layout and publication, and the
// locked put, get and size over it. See queue_ring.hpp and
// keel/process/queue.hpp for the contract and the crash-safety argument.
#include "queue_ring.hpp"

#include <cstring>
#include <string>

#include "keel/error.hpp"
#include "keel/platform/inject.hpp"
#include "keel/process/queue.hpp"

namespace keel::detail {

namespace {

constexpr std::uint64_t queue_magic = 0x455545555130454BULL;  // "KE0QUEUE" as LE bytes
constexpr std::uint64_t queue_version = 1;
constexpr std::size_t slot_header = sizeof(std::uint64_t);
constexpr std::size_t max_capacity = std::size_t{1} << 31;
constexpr std::size_t max_message_limit = std::size_t{1} << 30;

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

constexpr std::size_t slot_size_for(std::size_t max_message) { return round_up(slot_header + max_message, 8); }
constexpr std::size_t slots_offset() { return round_up(sizeof(QueueHeader), 64); }

char* slot_at(QueueHeader& h, std::uint64_t index) {
  return reinterpret_cast<char*>(&h) + h.slots_offset.load() + (index % h.capacity.load()) * h.slot_size.load();
}

// Bounded bytes: the queue's layout came from another process.
[[noreturn]] void corrupt(const std::string& what) {
  throw ProtocolError("keel::ProcessQueue: corrupt segment: " + what);
}

// Unlocks on scope exit (also when a visitor or an allocation throws).
class Held {
 public:
  explicit Held(RobustMutex& m) : m_(m) {}
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  ~Held() KEEL_NO_TSA { m_.unlock(); }

 private:
  RobustMutex& m_;
};

// Takes the queue's lock, or returns false when the deadline passes first. A
// takeover from a dead holder needs no repair (see the header), but that
// holder may have died between publishing and waking: wake everyone.
bool acquire(QueueHeader& h, const platform::Deadline& deadline) KEEL_NO_TSA {
  if (deadline.is_never()) {
    h.lock.lock();
  } else if (!h.lock.try_lock_until(deadline.point())) {
    return false;
  }
  if (h.lock.owner_died() && !KEEL_INJECTED(queue_takeover_skips_wake)) {
    h.put_seq.fetch_add(1, std::memory_order_seq_cst);
    h.get_seq.fetch_add(1, std::memory_order_seq_cst);
    platform::futex_wake(h.put_seq, platform::wake_all);
    platform::futex_wake(h.get_seq, platform::wake_all);
  }
  return true;
}

// After a publish: bump the counter the other side sleeps on, then wake them
// if any sleep. seq_cst on both sides (bump, then read the sleeper count;
// count, then the kernel reads the word) so one of them sees the other.
void signal(platform::FutexWord& seq, platform::Atomic<std::uint32_t>& waiting) {
  seq.fetch_add(1, std::memory_order_seq_cst);
  if (KEEL_INJECTED(queue_signal_skips_wake)) return;
  const auto order = KEEL_INJECTED(queue_sleeper_check_relaxed) ? std::memory_order_relaxed : std::memory_order_seq_cst;
  if (waiting.load(order) != 0) platform::futex_wake(seq, platform::wake_all);
}

// Sleeps while seq still holds `seen`, at most until the deadline and at most
// one recheck interval. Returns false (without sleeping) once the deadline passed.
bool sleep_on(platform::FutexWord& seq, std::int32_t seen, platform::Atomic<std::uint32_t>& waiting,
              const platform::Deadline& deadline) {
  if (deadline.expired()) return false;
  const auto recheck =
      process_queue_test_recheck.count() > 0 ? process_queue_test_recheck : ProcessQueue::recheck_interval;
  platform::Deadline slice = platform::Deadline::after(recheck);
  if (!deadline.is_never() && deadline.point() < slice.point()) slice = deadline;
  waiting.fetch_add(1, std::memory_order_seq_cst);
  platform::futex_wait(seq, seen, slice);
  waiting.fetch_sub(1, std::memory_order_seq_cst);
  return true;
}

}  // namespace

std::size_t queue_bytes(std::size_t capacity, std::size_t max_message) {
  if (capacity == 0 || capacity > max_capacity) {
    throw ValueError("keel::ProcessQueue::create: capacity must be 1 .. 2^31");
  }
  if (max_message == 0 || max_message > max_message_limit) {
    throw ValueError("keel::ProcessQueue::create: max_message must be 1 .. 2^30");
  }
  const std::size_t slot_size = slot_size_for(max_message);
  if (capacity > (SIZE_MAX / 2 - slots_offset()) / slot_size) {
    throw ValueError("keel::ProcessQueue::create: capacity * max_message too large");
  }
  return slots_offset() + capacity * slot_size;
}

void init_queue(QueueHeader& h, std::size_t capacity, std::size_t max_message) {
  h.version.store(queue_version);
  h.capacity.store(capacity);
  h.max_message.store(max_message);
  h.slot_size.store(slot_size_for(max_message));
  h.slots_offset.store(slots_offset());
  h.total_size.store(slots_offset() + capacity * slot_size_for(max_message));
  h.magic.store(queue_magic,
                KEEL_INJECTED(queue_magic_relaxed) ? std::memory_order_relaxed : std::memory_order_release);
}

void validate_queue(const QueueHeader& h, std::size_t segment_size, const std::string& name) {
  const auto bad = [&](const char* what) {
    throw ValueError("keel::ProcessQueue::attach: " + name + " is not a ProcessQueue (" + what + ")");
  };
  if (h.magic.load(std::memory_order_acquire) != queue_magic) bad("bad magic");
  if (h.version.load() != queue_version) bad("unknown version");
  const std::uint64_t capacity = h.capacity.load();
  const std::uint64_t max_message = h.max_message.load();
  if (capacity == 0 || capacity > max_capacity) bad("bad capacity");
  if (max_message == 0 || max_message > max_message_limit) bad("bad message size");
  if (h.slot_size.load() != slot_size_for(max_message)) bad("bad slot size");
  if (h.slots_offset.load() != slots_offset()) bad("bad layout");
  const std::uint64_t total = h.total_size.load();
  if (total != slots_offset() + capacity * h.slot_size.load() || total > segment_size) bad("bad size");
}

bool queue_give(QueueHeader& h, std::string_view message, const platform::Deadline& deadline, bool wait) {
  const std::uint64_t capacity = h.capacity.load();
  if (message.size() > h.max_message.load()) {
    throw ProtocolError("keel::ProcessQueue::put: message of " + std::to_string(message.size()) +
                        " bytes exceeds max_message " + std::to_string(h.max_message.load()));
  }
  for (;;) {
    // Read before looking: a consume after our look changes it, so the sleep
    // below returns at once instead of missing that wake-up.
    const std::int32_t seen = h.get_seq.load(std::memory_order_seq_cst);
    if (!acquire(h, deadline)) throw TimeoutError("keel::ProcessQueue::put: timed out waiting for the lock");
    bool done = false;
    {
      Held held(h.lock);
      // Relaxed: the lock orders them (only lock holders store them).
      const std::uint64_t head = h.head.load(std::memory_order_relaxed);
      const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
      if (tail - head > capacity) corrupt("tail - head exceeds capacity");
      if (tail - head < capacity) {
        char* slot = slot_at(h, tail);
        const std::uint64_t length = message.size();
        std::memcpy(slot, &length, sizeof length);
        if (!message.empty()) std::memcpy(slot + slot_header, message.data(), message.size());
        if (auto hook = process_queue_test_hook) hook(QueueStep::put_before_publish);
        // The publishing store: before it the put did not happen, after it it did.
        h.tail.store(tail + 1, std::memory_order_release);
        if (auto hook = process_queue_test_hook) hook(QueueStep::put_after_publish);
        done = true;
      }
    }
    if (done) {
      if (auto hook = process_queue_test_hook) hook(QueueStep::put_before_wake);
      signal(h.put_seq, h.getters_waiting);
      return true;
    }
    if (!wait) return false;
    if (!sleep_on(h.get_seq, seen, h.putters_waiting, deadline)) {
      throw TimeoutError("keel::ProcessQueue::put: timed out: the queue stayed full");
    }
  }
}

bool queue_take(QueueHeader& h, const platform::Deadline& deadline, bool wait, QueueVisitor visit, void* ctx) {
  const std::uint64_t capacity = h.capacity.load();
  const std::uint64_t max_message = h.max_message.load();
  for (;;) {
    const std::int32_t seen = h.put_seq.load(std::memory_order_seq_cst);
    if (!acquire(h, deadline)) throw TimeoutError("keel::ProcessQueue::get: timed out waiting for the lock");
    bool done = false;
    {
      Held held(h.lock);
      const std::uint64_t head = h.head.load(std::memory_order_relaxed);
      const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
      if (tail - head > capacity) corrupt("tail - head exceeds capacity");
      if (tail != head) {
        const char* slot = slot_at(h, head);
        std::uint64_t length = 0;
        std::memcpy(&length, slot, sizeof length);
        if (length > max_message) corrupt("a message longer than max_message");
        // May throw (a decode error, bad_alloc): the message stays queued.
        visit(ctx, std::string_view(slot + slot_header, static_cast<std::size_t>(length)));
        if (auto hook = process_queue_test_hook) hook(QueueStep::get_before_publish);
        h.head.store(head + 1, std::memory_order_release);
        if (auto hook = process_queue_test_hook) hook(QueueStep::get_after_publish);
        done = true;
      }
    }
    if (done) {
      signal(h.get_seq, h.putters_waiting);
      return true;
    }
    if (!wait) return false;
    if (!sleep_on(h.put_seq, seen, h.getters_waiting, deadline)) {
      throw TimeoutError("keel::ProcessQueue::get: timed out: the queue stayed empty");
    }
  }
}

std::size_t queue_size(const QueueHeader& h) {
  // head first: tail only grows and never falls below head, so the
  // difference is never negative; it may overshoot under concurrent gets.
  std::uint64_t head = 0;
  std::uint64_t tail = 0;
  if (KEEL_INJECTED(queue_size_reads_tail_first)) {
    tail = h.tail.load(std::memory_order_acquire);
    head = h.head.load(std::memory_order_acquire);
  } else {
    head = h.head.load(std::memory_order_acquire);
    tail = h.tail.load(std::memory_order_acquire);
  }
  const std::uint64_t n = tail - head;
  const std::uint64_t capacity = h.capacity.load();
  return static_cast<std::size_t>(n > capacity ? capacity : n);
}

}  // namespace keel::detail
