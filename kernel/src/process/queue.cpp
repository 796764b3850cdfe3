// keel::ProcessQueue: the named segment around the ring (queue_ring.cpp,
// which holds the layout and the locked put and get). See
// keel/process/queue.hpp for the contract and the crash-safety argument.
#include "keel/process/queue.hpp"

#include <new>
#include <string>

#include "queue_ring.hpp"

namespace keel {

using detail::QueueHeader;

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
  const std::size_t total = detail::queue_bytes(options.capacity, options.max_message);
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
  detail::init_queue(*h, options.capacity, options.max_message);
  return ProcessQueue(std::move(memory), h);
}

ProcessQueue ProcessQueue::attach(std::string_view name) {
  SharedMemory memory = SharedMemory::attach(name);
  if (memory.size() < sizeof(QueueHeader)) {
    throw ValueError("keel::ProcessQueue::attach: " + memory.name() + " is not a ProcessQueue (too small)");
  }
  auto* h = std::launder(static_cast<QueueHeader*>(memory.data()));
  detail::validate_queue(*h, memory.size(), memory.name());
  return ProcessQueue(std::move(memory), h);
}

const detail::QueueHeader& ProcessQueue::header() const {
  if (header_ == nullptr) throw MisuseError("keel::ProcessQueue: the queue is closed");
  return *header_;
}

bool ProcessQueue::give(std::string_view message, const platform::Deadline& deadline, bool wait) {
  header();  // closed: MisuseError
  return detail::queue_give(*header_, message, deadline, wait);
}

bool ProcessQueue::take(const platform::Deadline& deadline, bool wait, Visitor visit, void* ctx) {
  header();
  return detail::queue_take(*header_, deadline, wait, visit, ctx);
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

std::size_t ProcessQueue::size() const { return detail::queue_size(header()); }

std::size_t ProcessQueue::capacity() const { return static_cast<std::size_t>(header().capacity.load()); }

std::size_t ProcessQueue::max_message() const { return static_cast<std::size_t>(header().max_message.load()); }

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
