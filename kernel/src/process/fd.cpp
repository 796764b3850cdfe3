// UniqueFd, write_all and throw_os (fd.hpp).
#include "fd.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "keel/error.hpp"

namespace keel::detail {

void UniqueFd::reset(int fd) noexcept {
  // close() is not retried on EINTR: on Linux the descriptor is released
  // whatever it returns, and a retry could close a descriptor another thread
  // has just been given.
  if (fd_ != -1) ::close(fd_);
  fd_ = fd;
}

int write_all(int fd, std::string_view bytes) noexcept {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

void throw_os(std::string_view who, std::string_view what, int code) {
  std::string msg;
  msg.reserve(who.size() + what.size() + 64);
  msg.append(who).append(": ").append(what).append(": ").append(std::strerror(code));
  throw OsError(code, msg);
}

}  // namespace keel::detail
