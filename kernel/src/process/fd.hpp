// File descriptors in the process layer and the pools: one owner type, one
// way to write a whole buffer, one way to turn an errno into an OsError.
//
// Contract: UniqueFd closes the descriptor it owns exactly once (on
// destruction or reset) unless release() hands it on; a moved-from UniqueFd
// owns nothing. write_all writes every byte, retrying EINTR and short writes,
// and reports the errno of a write that failed instead of throwing, so the
// worker side (which must not throw on a dead parent) and the parent side
// (which throws) share it. throw_os builds the message "who: what: <strerror>".
//
// Invariants: IPC-1 (a broken pipe is an error, never a crash), POOL-4 (a
// worker's descriptors are closed when it is reaped, none leak).
#pragma once

#include <string_view>

namespace keel::detail {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ != -1; }
  // Gives the descriptor up without closing it.
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the owned descriptor (if any) and owns fd instead.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Writes all of bytes to fd (blocking or not: EAGAIN is reported like any
// other error). Returns 0, or the errno of the write that failed.
int write_all(int fd, std::string_view bytes) noexcept;

// Throws OsError(code, "who: what: <strerror(code)>").
[[noreturn]] void throw_os(std::string_view who, std::string_view what, int code);

}  // namespace keel::detail
