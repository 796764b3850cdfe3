// The ProcessPool wire protocol. See protocol.hpp.
#include "protocol.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "../process/fd.hpp"
#include "keel/error.hpp"
#include "keel/process/codec.hpp"

namespace keel::pool::proto {

std::string call_payload(std::string_view name, std::string_view args) {
  Encoder e;
  e.put(static_cast<std::uint32_t>(name.size()));
  e.put_raw(name.data(), name.size());
  e.put_raw(args.data(), args.size());
  return e.take();
}

std::string chunk_payload(const std::string& name, const std::vector<std::string>& args) { return encode(name, args); }

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
  return e.take();
}

SpawnConfig decode_spawn(std::string_view payload) {
  Decoder d(payload);
  SpawnConfig c;
  c.init_task = d.get<std::string>();
  c.init_args = d.get<std::string>();
  c.max_message = d.get<std::uint64_t>();
  c.slots = d.get<std::uint32_t>();
  d.expect_end();
  if (c.slots == 0 || c.slots > max_slots) throw ProtocolError("keel: bad slot count in a worker's spawn payload");
  return c;
}

namespace {
[[noreturn]] void fail(const char* what) { detail::throw_os("ProcessPool", what, errno); }
std::size_t bytes_for(unsigned count) { return count * sizeof(Slot); }
}  // namespace

SlotPage SlotPage::create(unsigned count) {
  SlotPage p;
  p.fd_ = ::memfd_create("keel-slots", MFD_CLOEXEC);
  if (p.fd_ < 0) fail("memfd_create");
  if (::ftruncate(p.fd_, static_cast<off_t>(bytes_for(count))) < 0) fail("ftruncate");
  void* m = ::mmap(nullptr, bytes_for(count), PROT_READ | PROT_WRITE, MAP_SHARED, p.fd_, 0);
  if (m == MAP_FAILED) fail("mmap");
  p.slots_ = static_cast<Slot*>(m);
  p.count_ = count;
  for (unsigned i = 0; i < count; ++i) ::new (static_cast<void*>(&p.slots_[i])) Slot(0);
  return p;
}

SlotPage SlotPage::attach(int fd, unsigned count) {
  SlotPage p;
  p.fd_ = fd;
  void* m = ::mmap(nullptr, bytes_for(count), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) fail("mmap");
  p.slots_ = static_cast<Slot*>(m);
  p.count_ = count;
  p.close_fd();
  return p;
}

SlotPage::SlotPage(SlotPage&& o) noexcept
    : slots_(std::exchange(o.slots_, nullptr)), count_(std::exchange(o.count_, 0)), fd_(std::exchange(o.fd_, -1)) {}

SlotPage& SlotPage::operator=(SlotPage&& o) noexcept {
  if (this != &o) {
    reset();
    slots_ = std::exchange(o.slots_, nullptr);
    count_ = std::exchange(o.count_, 0);
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
  if (slots_) ::munmap(slots_, bytes_for(count_));
  slots_ = nullptr;
  count_ = 0;
  close_fd();
}

}  // namespace keel::pool::proto
