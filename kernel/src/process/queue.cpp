// keel::ProcessQueue: the segment layout and the locked ring. See
// keel/process/queue.hpp for the contract and the crash-safety argument.
#include "keel/process/queue.hpp"

#include <cstring>
#include <new>
#include <string>

#include "keel/platform/atomic.hpp"
#include "keel/platform/futex.hpp"
#include "keel/process/robust_mutex.hpp"

namespace keel {

namespace detail {

// Segment layout: this header, then `capacity` slots of slot_size bytes from
// slots_offset. A slot is a u64 length, then the message bytes.
//
// head and tail count messages consumed and published since creation (they
// never wrap in practice: 2^64); message n lives in slot n % capacity, and
// 0 <= tail - head <= capacity. Both change only under `lock`, each by one
// store, which is what makes a kill at any instruction harmless. They are
// atomics so size() can read them without the lock.
struct QueueHeader {
  platform::Atomic<std::uint64_t> magic{0};  // stored last by create (release)
  std::uint64_t version = 0;
  std::uint64_t capacity = 0;
  std::uint64_t max_message = 0;
  std::uint64_t slot_size = 0;
  std::uint64_t slots_offset = 0;
  std::uint64_t total_size = 0;
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

}  // namespace detail

namespace {

using detail::QueueHeader;

constexpr std::uint64_t queue_magic = 0x455545555130454BULL;  // "KE0QUEUE" as LE bytes
constexpr std::uint64_t queue_version = 1;
constexpr std::size_t slot_header = sizeof(std::uint64_t);
constexpr std::size_t max_capacity = std::size_t{1} << 31;
constexpr std::size_t max_message_limit = std::size_t{1} << 30;

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

char* slot_at(QueueHeader& h, std::uint64_t index) {
  return reinterpret_cast<char*>(&h) + h.slots_offset + (index % h.capacity) * h.slot_size;
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
  if (h.lock.owner_died()) {
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
  if (waiting.load(std::memory_order_seq_cst) != 0) platform::futex_wake(seq, platform::wake_all);
}

// Sleeps while seq still holds `seen`, at most until the deadline and at most
// one recheck interval. Returns false (without sleeping) once the deadline passed.
bool sleep_on(platform::FutexWord& seq, std::int32_t seen, platform::Atomic<std::uint32_t>& waiting,
              const platform::Deadline& deadline) {
  if (deadline.expired()) return false;
  const auto recheck = detail::process_queue_test_recheck.count() > 0 ? detail::process_queue_test_recheck
                                                                      : ProcessQueue::recheck_interval;
  platform::Deadline slice = platform::Deadline::after(recheck);
  if (!deadline.is_never() && deadline.point() < slice.point()) slice = deadline;
  waiting.fetch_add(1, std::memory_order_seq_cst);
  platform::futex_wait(seq, seen, slice);
  waiting.fetch_sub(1, std::memory_order_seq_cst);
  return true;
}

void validate(const QueueHeader& h, std::size_t segment_size, const std::string& name) {
  const auto bad = [&](const char* what) {
    throw ValueError("keel::ProcessQueue::attach: " + name + " is not a ProcessQueue (" + what + ")");
  };
  if (h.magic.load(std::memory_order_acquire) != queue_magic) bad("bad magic");
  if (h.version != queue_version) bad("unknown version");
  if (h.capacity == 0 || h.capacity > max_capacity) bad("bad capacity");
  if (h.max_message == 0 || h.max_message > max_message_limit) bad("bad message size");
  if (h.slot_size != round_up(slot_header + h.max_message, 8)) bad("bad slot size");
  if (h.slots_offset != round_up(sizeof(QueueHeader), 64)) bad("bad layout");
  if (h.total_size != h.slots_offset + h.capacity * h.slot_size || h.total_size > segment_size) bad("bad size");
}

}  // namespace

ProcessQueue::ProcessQueue(SharedMemory memory, detail::QueueHeader* header) noexcept
    : memory_(std::move(memory)), header_(header) {}

ProcessQueue::ProcessQueue(ProcessQueue&& other) noexcept
    : memory_(std::move(other.memory_)), header_(std::exchange(other.header_, nullptr)) {}

ProcessQueue& ProcessQueue::operator=(ProcessQueue&& other) noexcept {
  if (this != &other) {
    memory_ = std::move(other.memory_);
    header_ = std::exchange(other.header_, nullptr);
  }
  return *this;
}

ProcessQueue ProcessQueue::create(std::string_view name, ProcessQueueOptions options) {
  return make(name, options, false);
}

ProcessQueue ProcessQueue::create_unique(std::string_view prefix, ProcessQueueOptions options) {
  return make(prefix, options, true);
}

ProcessQueue ProcessQueue::make(std::string_view name, const ProcessQueueOptions& options, bool unique) {
  if (options.capacity == 0 || options.capacity > max_capacity) {
    throw ValueError("keel::ProcessQueue::create: capacity must be 1 .. 2^31");
  }
  if (options.max_message == 0 || options.max_message > max_message_limit) {
    throw ValueError("keel::ProcessQueue::create: max_message must be 1 .. 2^30");
  }
  const std::size_t slot_size = round_up(slot_header + options.max_message, 8);
  const std::size_t slots_offset = round_up(sizeof(QueueHeader), 64);
  if (options.capacity > (SIZE_MAX / 2 - slots_offset) / slot_size) {
    throw ValueError("keel::ProcessQueue::create: capacity * max_message too large");
  }
  const std::size_t total = slots_offset + options.capacity * slot_size;
  const SharedMemoryOptions shm{.exclusive = true, .mode = options.mode, .track = options.track};
  SharedMemory memory = unique ? SharedMemory::create_unique(name, total, shm) : SharedMemory::create(name, total, shm);
  QueueHeader* h = nullptr;
  try {
    h = new (memory.data()) QueueHeader;
  } catch (...) {
    memory.close();
    SharedMemory::unlink(memory.name());
    throw;
  }
  h->version = queue_version;
  h->capacity = options.capacity;
  h->max_message = options.max_message;
  h->slot_size = slot_size;
  h->slots_offset = slots_offset;
  h->total_size = total;
  h->magic.store(queue_magic, std::memory_order_release);
  return ProcessQueue(std::move(memory), h);
}

ProcessQueue ProcessQueue::attach(std::string_view name) {
  SharedMemory memory = SharedMemory::attach(name);
  if (memory.size() < sizeof(QueueHeader)) {
    throw ValueError("keel::ProcessQueue::attach: " + memory.name() + " is not a ProcessQueue (too small)");
  }
  auto* h = std::launder(static_cast<QueueHeader*>(memory.data()));
  validate(*h, memory.size(), memory.name());
  return ProcessQueue(std::move(memory), h);
}

const detail::QueueHeader& ProcessQueue::header() const {
  if (header_ == nullptr) throw MisuseError("keel::ProcessQueue: the queue is closed");
  return *header_;
}

bool ProcessQueue::give(std::string_view message, const platform::Deadline& deadline, bool wait) {
  header();  // closed: MisuseError
  QueueHeader& h = *header_;
  if (message.size() > h.max_message) {
    throw ProtocolError("keel::ProcessQueue::put: message of " + std::to_string(message.size()) +
                        " bytes exceeds max_message " + std::to_string(h.max_message));
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
      if (tail - head > h.capacity) corrupt("tail - head exceeds capacity");
      if (tail - head < h.capacity) {
        char* slot = slot_at(h, tail);
        const std::uint64_t length = message.size();
        std::memcpy(slot, &length, sizeof length);
        if (!message.empty()) std::memcpy(slot + slot_header, message.data(), message.size());
        if (auto hook = detail::process_queue_test_hook) hook(detail::QueueStep::put_before_publish);
        // The publishing store: before it the put did not happen, after it it did.
        h.tail.store(tail + 1, std::memory_order_release);
        if (auto hook = detail::process_queue_test_hook) hook(detail::QueueStep::put_after_publish);
        done = true;
      }
    }
    if (done) {
      if (auto hook = detail::process_queue_test_hook) hook(detail::QueueStep::put_before_wake);
      signal(h.put_seq, h.getters_waiting);
      return true;
    }
    if (!wait) return false;
    if (!sleep_on(h.get_seq, seen, h.putters_waiting, deadline)) {
      throw TimeoutError("keel::ProcessQueue::put: timed out: the queue stayed full");
    }
  }
}

bool ProcessQueue::take(const platform::Deadline& deadline, bool wait, Visitor visit, void* ctx) {
  header();
  QueueHeader& h = *header_;
  for (;;) {
    const std::int32_t seen = h.put_seq.load(std::memory_order_seq_cst);
    if (!acquire(h, deadline)) throw TimeoutError("keel::ProcessQueue::get: timed out waiting for the lock");
    bool done = false;
    {
      Held held(h.lock);
      const std::uint64_t head = h.head.load(std::memory_order_relaxed);
      const std::uint64_t tail = h.tail.load(std::memory_order_relaxed);
      if (tail - head > h.capacity) corrupt("tail - head exceeds capacity");
      if (tail != head) {
        const char* slot = slot_at(h, head);
        std::uint64_t length = 0;
        std::memcpy(&length, slot, sizeof length);
        if (length > h.max_message) corrupt("a message longer than max_message");
        // May throw (a decode error, bad_alloc): the message stays queued.
        visit(ctx, std::string_view(slot + slot_header, static_cast<std::size_t>(length)));
        if (auto hook = detail::process_queue_test_hook) hook(detail::QueueStep::get_before_publish);
        h.head.store(head + 1, std::memory_order_release);
        if (auto hook = detail::process_queue_test_hook) hook(detail::QueueStep::get_after_publish);
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

void ProcessQueue::put_until(std::string_view message, const platform::Deadline& deadline) {
  give(message, deadline, true);
}

bool ProcessQueue::try_put_bytes(std::string_view message) { return give(message, platform::Deadline::never(), false); }

namespace {
void copy_out(void* ctx, std::string_view bytes) { static_cast<std::string*>(ctx)->assign(bytes); }
}  // namespace

std::string ProcessQueue::get_until(const platform::Deadline& deadline) {
  std::string out;
  take(deadline, true, &copy_out, &out);
  return out;
}

std::optional<std::string> ProcessQueue::try_get_bytes() {
  std::string out;
  if (!take(platform::Deadline::never(), false, &copy_out, &out)) return std::nullopt;
  return out;
}

std::size_t ProcessQueue::size() const {
  const QueueHeader& h = header();
  // head first: tail only grows and never falls below head, so the
  // difference is never negative; it may overshoot under concurrent gets.
  const std::uint64_t head = h.head.load(std::memory_order_acquire);
  const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
  const std::uint64_t n = tail - head;
  return static_cast<std::size_t>(n > h.capacity ? h.capacity : n);
}

std::size_t ProcessQueue::capacity() const { return static_cast<std::size_t>(header().capacity); }

std::size_t ProcessQueue::max_message() const { return static_cast<std::size_t>(header().max_message); }

std::uint64_t ProcessQueue::recoveries() const { return header().lock.recoveries(); }

void ProcessQueue::close() noexcept {
  header_ = nullptr;
  memory_.close();
}

void ProcessQueue::unlink() {
  if (memory_.name().empty()) throw MisuseError("keel::ProcessQueue::unlink: no queue");
  memory_.unlink();
}

}  // namespace keel
