// keel::SharedMemory and SharedList's non-template half. See
// keel/process/shared_memory.hpp for the contract.
#include "keel/process/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "fd.hpp"
#include "resource_tracker.hpp"

namespace keel {

namespace {

constexpr std::size_t max_name_chars = 200;

[[noreturn]] void os_fail(int code, const std::string& what) { detail::throw_os("keel::SharedMemory", what, code); }

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

constexpr std::size_t unique_digits = 16;  // 64 random bits
constexpr int unique_attempts = 64;

// Closes a descriptor and, for a segment this call created, removes the name
// again (and its registration), unless released: a failed create leaves
// nothing behind.
class CreateGuard {
 public:
  CreateGuard(int fd, const std::string& name, bool created) : fd_(fd), name_(name), created_(created) {}
  CreateGuard(const CreateGuard&) = delete;
  CreateGuard& operator=(const CreateGuard&) = delete;
  ~CreateGuard() {
    ::close(fd_);
    if (!ok_ && created_) {
      ::shm_unlink(name_.c_str());
      detail::shm_tracker::untrack(name_);
    }
  }
  void succeed() { ok_ = true; }

 private:
  int fd_;
  const std::string& name_;
  bool created_;
  bool ok_ = false;
};

void* map_segment(int fd, std::size_t size, const std::string& name) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) os_fail(errno, "cannot map " + name);
  return p;
}

struct stat segment_stat(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) os_fail(errno, "cannot stat " + name);
  return st;
}

std::size_t segment_size(int fd, const std::string& name) {
  return static_cast<std::size_t>(segment_stat(fd, name).st_size);
}

std::string octal(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777u);
  return buf;
}

// 64 bits from the kernel's random source, as 16 hex digits.
std::string random_suffix() {
  unsigned char bytes[unique_digits / 2];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      os_fail(errno, "getrandom failed");
    }
    got += static_cast<std::size_t>(n);
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 0xf];
  }
  return out;
}

// The prefix of a unique name, without its optional leading '/'.
std::string_view unique_prefix(std::string_view prefix) {
  std::string_view bare = prefix;
  if (!bare.empty() && bare.front() == '/') bare.remove_prefix(1);
  bool ok = bare.size() <= max_name_chars - unique_digits;
  for (char c : bare) ok = ok && name_char(c);
  if (!ok) {
    throw ValueError("keel::SharedMemory::create_unique: invalid prefix '" + std::string(prefix) +
                     "': use 0 to 184 characters of [A-Za-z0-9._-], optionally after one leading '/'");
  }
  return bare;
}

}  // namespace

std::string SharedMemory::normalize_name(std::string_view name) {
  std::string_view bare = name;
  if (!bare.empty() && bare.front() == '/') bare.remove_prefix(1);
  bool ok = !bare.empty() && bare.size() <= max_name_chars && bare != "." && bare != "..";
  for (char c : bare) ok = ok && name_char(c);
  if (!ok) {
    throw ValueError("keel::SharedMemory: invalid name '" + std::string(name) +
                     "': use 1 to 200 characters of [A-Za-z0-9._-], optionally after one leading '/'");
  }
  return "/" + std::string(bare);
}

SharedMemory SharedMemory::create(std::string_view name, std::size_t size, SharedMemoryOptions options) {
  std::string n = normalize_name(name);
  if (size == 0) throw ValueError("keel::SharedMemory::create: size must be positive");
  if (size > static_cast<std::size_t>(std::numeric_limits<off_t>::max())) {
    throw ValueError("keel::SharedMemory::create: size too large");
  }
  if ((options.mode & ~0777u) != 0) {
    throw ValueError("keel::SharedMemory::create: mode may only hold permission bits (0777)");
  }
  const mode_t mode = static_cast<mode_t>(options.mode);
  // Before anything exists: a tracker that cannot start fails the create
  // with nothing to clean up.
  if (options.track) detail::shm_tracker::ensure_started();
  int fd = ::shm_open(n.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  bool created = fd >= 0;
  // Not exclusive: open the existing one instead; if it vanished between the
  // two calls, create it again (bounded: a name that flickers is an error).
  for (int attempt = 0; fd < 0 && errno == EEXIST && !options.exclusive && attempt < 100; ++attempt) {
    fd = ::shm_open(n.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0 || errno != ENOENT) break;
    fd = ::shm_open(n.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    created = fd >= 0;
  }
  if (fd < 0) os_fail(errno, "cannot create " + n);
  CreateGuard guard(fd, n, created);
  // Registered first thing: a creator killed from here on leaves nothing.
  if (created && options.track) detail::shm_tracker::track(n, fd);
  std::size_t mapped = size;
  if (created) {
    // The umask narrowed shm_open's mode; the caller asked for exactly `mode`.
    if (::fchmod(fd, mode) != 0) os_fail(errno, "cannot set the mode of " + n);
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) os_fail(errno, "cannot size " + n);
  } else {
    // Reusing a segment whose permission bits differ would silently share it
    // more widely (or narrowly) than the caller asked for.
    const struct stat st = segment_stat(fd, n);
    const unsigned existing_mode = static_cast<unsigned>(st.st_mode) & 07777u;
    if (existing_mode != options.mode) {
      throw OsError(EEXIST, "keel::SharedMemory::create: " + n + " exists with mode " + octal(existing_mode) +
                                ", not the requested " + octal(options.mode) +
                                "; it was left as it is (unlink it, or ask for its mode)");
    }
    const std::size_t existing = static_cast<std::size_t>(st.st_size);
    if (existing < size && ::ftruncate(fd, static_cast<off_t>(size)) != 0) os_fail(errno, "cannot grow " + n);
    mapped = existing < size ? size : existing;
  }
  void* p = map_segment(fd, mapped, n);
  guard.succeed();
  return SharedMemory(std::move(n), p, mapped);
}

SharedMemory SharedMemory::create_unique(std::string_view prefix, std::size_t size, SharedMemoryOptions options) {
  const std::string bare(unique_prefix(prefix));
  if (!options.exclusive) throw ValueError("keel::SharedMemory::create_unique: a unique name is always exclusive");
  for (int attempt = 0;; ++attempt) {
    try {
      auto* const suffix = detail::shared_memory_test_unique_suffix;
      return create(bare + (suffix != nullptr ? suffix() : random_suffix()), size, options);
    } catch (const OsError& e) {
      if (e.code() != EEXIST || attempt + 1 >= unique_attempts) throw;
    }
  }
}

SharedMemory SharedMemory::attach(std::string_view name) {
  std::string n = normalize_name(name);
  const int fd = ::shm_open(n.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) os_fail(errno, "cannot attach " + n);
  CreateGuard guard(fd, n, false);
  const std::size_t size = segment_size(fd, n);
  if (size == 0) throw ValueError("keel::SharedMemory::attach: " + n + " is empty (not yet sized by its creator?)");
  void* p = map_segment(fd, size, n);
  guard.succeed();
  return SharedMemory(std::move(n), p, size);
}

namespace {

// Removes the name; a name that is gone (whoever removed it) is no longer
// this process's to clean up.
void unlink_name(const std::string& n) {
  if (::shm_unlink(n.c_str()) != 0) {
    const int e = errno;
    if (e == ENOENT) detail::shm_tracker::untrack(n);
    os_fail(e, "cannot unlink " + n);
  }
  detail::shm_tracker::untrack(n);
}

}  // namespace

void SharedMemory::unlink(std::string_view name) { unlink_name(normalize_name(name)); }

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : name_(std::move(other.name_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    close();
    name_ = std::move(other.name_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void SharedMemory::close() noexcept {
  if (data_ != nullptr) {
    ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
}

void SharedMemory::unlink() {
  if (name_.empty()) throw MisuseError("keel::SharedMemory::unlink: no segment");
  unlink_name(name_);
}

bool SharedMemory::keep() {
  if (name_.empty()) throw MisuseError("keel::SharedMemory::keep: no segment");
  return detail::shm_tracker::untrack(name_);
}

bool SharedMemory::is_tracked() const noexcept { return !name_.empty() && detail::shm_tracker::tracked(name_); }

namespace detail {

SharedMemory shared_list_create(std::string_view name, std::size_t element_size, std::size_t length,
                                SharedMemoryOptions options, bool unique) {
  if (element_size != 0 &&
      length > (std::numeric_limits<std::size_t>::max() / 2 - shared_list_data_offset) / element_size) {
    throw ValueError("keel::SharedList::create: length too large");
  }
  // A list is never reused under another shape: always a fresh segment.
  if (!options.exclusive) throw ValueError("keel::SharedList::create: a list is always created exclusively");
  const std::size_t bytes = shared_list_data_offset + length * element_size;
  SharedMemory m =
      unique ? SharedMemory::create_unique(name, bytes, options) : SharedMemory::create(name, bytes, options);
  shared_list_publish(*new (m.data()) SharedListHeader, element_size, length);
  return m;
}

std::pair<SharedMemory, std::size_t> shared_list_attach(std::string_view name, std::size_t element_size) {
  SharedMemory m = SharedMemory::attach(name);
  const std::string& n = m.name();
  if (m.size() < shared_list_data_offset) throw ValueError("keel::SharedList::attach: " + n + " is not a SharedList");
  const std::size_t length =
      shared_list_check(*std::launder(static_cast<SharedListHeader*>(m.data())), m.size(), element_size, n);
  return {std::move(m), length};
}

int shared_memory_tracker_pid() noexcept { return shm_tracker::tracker_pid(); }

void shared_list_index_error(std::size_t index, std::size_t length) {
  throw ValueError("keel::SharedList: index " + std::to_string(index) + " out of range (length " +
                   std::to_string(length) + ")");
}

}  // namespace detail

}  // namespace keel
