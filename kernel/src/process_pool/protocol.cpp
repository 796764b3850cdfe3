// The ProcessPool wire protocol. See protocol.hpp.
#include "protocol.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <utility>
#include <vector>

#include "../process/fd.hpp"
#include "keel/error.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/task.hpp"

namespace keel::pool::proto {

std::string call_payload(std::string_view name, std::string_view args) {
  Encoder e;
  e.put(static_cast<std::uint32_t>(name.size()));
  e.put_raw(name.data(), name.size());
  e.put_raw(args.data(), args.size());
  return e.take();
}

// encode(name, args), in one allocation of the exact size: a chunk's payload
// is kilobytes, and growing it by doubling copied it several times over.
std::string chunk_payload(const std::string& name, const std::vector<std::string>& args) {
  std::size_t size = 4 + name.size() + 4;
  for (const auto& a : args) size += 4 + a.size();
  std::string bytes;
  bytes.reserve(size);
  Encoder e(std::move(bytes));
  e.put(name);
  e.put(args);
  return e.take();
}

std::string run_chunk(std::string_view payload, std::size_t max_error) {
  Decoder d(payload);
  const auto name = d.get<std::string>();
  const auto calls = d.get<std::vector<std::string>>();
  d.expect_end();
  detail::TaskInvoker* task = nullptr;
  std::exception_ptr unknown;
  try {
    task = &detail::find_task(name);
  } catch (...) {
    unknown = std::current_exception();
  }
  std::vector<std::pair<bool, std::string>> answers;
  answers.reserve(calls.size());
  for (const auto& args : calls) {
    try {
      if (task == nullptr) std::rethrow_exception(unknown);
      answers.emplace_back(true, task->invoke(name, args));
    } catch (...) {
      answers.emplace_back(false, detail::encode_error(std::current_exception(), max_error));
    }
  }
  return encode(answers);
}

CallView decode_call(std::string_view payload) {
  Decoder d(payload);
  const std::size_t n = d.get<std::uint32_t>();
  CallView v;
  v.name = d.get_view(n);
  v.args = d.get_view(d.remaining());
  return v;
}

std::string encode_spawn(const SpawnConfig& c) {
  Encoder e;
  e.put(c.init_task);
  e.put(c.init_args);
  e.put(c.max_message);
  e.put(c.slots);
  e.put(c.ring);
  return e.take();
}

SpawnConfig decode_spawn(std::string_view payload) {
  Decoder d(payload);
  SpawnConfig c;
  c.init_task = d.get<std::string>();
  c.init_args = d.get<std::string>();
  c.max_message = d.get<std::uint64_t>();
  c.slots = d.get<std::uint32_t>();
  c.ring = d.get<std::uint32_t>();
  d.expect_end();
  if (c.slots == 0 || c.slots > max_slots) throw ProtocolError("keel: bad slot count in a worker's spawn payload");
  if (c.ring != 0 && (c.ring < 64 || c.ring > max_ring_bytes)) {
    throw ProtocolError("keel: bad answer ring size in a worker's spawn payload");
  }
  return c;
}

namespace {
[[noreturn]] void fail(const char* what) { detail::throw_os("ProcessPool", what, errno); }
// The slots, then (from a cache line of its own) the ring's header, then its bytes.
std::size_t ring_offset(unsigned count) { return (count * sizeof(Slot) + 63) / 64 * 64; }
std::size_t bytes_for(unsigned count, std::uint32_t ring_size) {
  return ring_size ? ring_offset(count) + sizeof(ring::Header) + ring_size : count * sizeof(Slot);
}
}  // namespace

SlotPage SlotPage::create(unsigned count, std::uint32_t ring_size) {
  SlotPage p;
  const std::size_t bytes = bytes_for(count, ring_size);
  p.fd_ = ::memfd_create("keel-slots", MFD_CLOEXEC);
  if (p.fd_ < 0) fail("memfd_create");
  if (::ftruncate(p.fd_, static_cast<off_t>(bytes)) < 0) fail("ftruncate");
  void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, p.fd_, 0);
  if (m == MAP_FAILED) fail("mmap");
  p.slots_ = static_cast<Slot*>(m);
  p.count_ = count;
  p.ring_ = ring_size;
  p.bytes_ = bytes;
  for (unsigned i = 0; i < count; ++i) ::new (static_cast<void*>(&p.slots_[i])) Slot(0);
  if (ring_size) {
    char* base = static_cast<char*>(m) + ring_offset(count);
    ::new (static_cast<void*>(base)) ring::Header();
    ::new (static_cast<void*>(base + sizeof(ring::Header))) platform::Byte[ring_size];
  }
  return p;
}

SlotPage SlotPage::attach(int fd, unsigned count, std::uint32_t ring_size) {
  SlotPage p;
  p.fd_ = fd;
  const std::size_t bytes = bytes_for(count, ring_size);
  struct stat st {};
  if (::fstat(fd, &st) < 0) fail("fstat");
  if (static_cast<std::uint64_t>(st.st_size) < bytes) {
    detail::throw_os("ProcessPool", "the slot page is smaller than its slots and ring", EINVAL);
  }
  void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) fail("mmap");
  p.slots_ = static_cast<Slot*>(m);
  p.count_ = count;
  p.ring_ = ring_size;
  p.bytes_ = bytes;
  p.close_fd();
  return p;
}

ring::Writer SlotPage::ring_writer() {
  if (!ring_) return {};
  char* base = reinterpret_cast<char*>(slots_) + ring_offset(count_);
  return {reinterpret_cast<ring::Header*>(base), reinterpret_cast<platform::Byte*>(base + sizeof(ring::Header)), ring_};
}

ring::Reader SlotPage::ring_reader() {
  if (!ring_) return {};
  char* base = reinterpret_cast<char*>(slots_) + ring_offset(count_);
  return {reinterpret_cast<ring::Header*>(base), reinterpret_cast<platform::Byte*>(base + sizeof(ring::Header)), ring_};
}

SlotPage::SlotPage(SlotPage&& o) noexcept
    : slots_(std::exchange(o.slots_, nullptr)),
      count_(std::exchange(o.count_, 0)),
      ring_(std::exchange(o.ring_, 0)),
      bytes_(std::exchange(o.bytes_, 0)),
      fd_(std::exchange(o.fd_, -1)) {}

SlotPage& SlotPage::operator=(SlotPage&& o) noexcept {
  if (this != &o) {
    reset();
    slots_ = std::exchange(o.slots_, nullptr);
    count_ = std::exchange(o.count_, 0);
    ring_ = std::exchange(o.ring_, 0);
    bytes_ = std::exchange(o.bytes_, 0);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

SlotPage::~SlotPage() { reset(); }

void SlotPage::close_fd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void SlotPage::reset() noexcept {
  if (slots_) ::munmap(slots_, bytes_);
  slots_ = nullptr;
  count_ = 0;
  ring_ = 0;
  bytes_ = 0;
  close_fd();
}

}  // namespace keel::pool::proto
