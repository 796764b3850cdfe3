// Connection and Pipe over AF_UNIX stream sockets. All socket calls are
// non-blocking per call (MSG_DONTWAIT), and waiting is a ppoll bounded by the
// caller's deadline, so every blocking operation has a timed form and the fd's
// own flags (shared with any copy in a child) are never changed.
#include "keel/process/pipe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "fd.hpp"
#include "keel/error.hpp"
#include "keel/process/child.hpp"

namespace keel {
namespace {

using detail::throw_os;

// Large enough that a multi-MiB message needs few reads, small enough to keep
// an idle connection's buffer modest.
constexpr std::size_t read_chunk = std::size_t{64} * 1024;

[[noreturn]] void throw_peer_closed() {
  throw OsError(EPIPE, "keel::Connection: the peer closed the connection (end of stream)");
}

using detail::wait_fd;

}  // namespace

Connection::Connection() noexcept = default;

Connection::Connection(int fd, std::size_t max_message) : max_message_(max_message), reader_(max_message) {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) throw ValueError("keel::Connection: fd " + std::to_string(fd) + " is not open");
  if (!S_ISSOCK(st.st_mode)) throw ValueError("keel::Connection: fd " + std::to_string(fd) + " is not a socket");
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    throw ValueError("keel::Connection: fd " + std::to_string(fd) + " is not a stream socket");
  }
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  fd_ = fd;
  readable_ = writable_ = true;
}

Connection::Connection(Connection&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      max_message_(o.max_message_),
      readable_(std::exchange(o.readable_, false)),
      writable_(std::exchange(o.writable_, false)),
      reader_(std::move(o.reader_)),
      pending_(std::exchange(o.pending_, std::nullopt)),
      eof_(std::exchange(o.eof_, false)),
      next_id_(o.next_id_),
      send_broken_(std::exchange(o.send_broken_, false)) {}

Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    max_message_ = o.max_message_;
    readable_ = std::exchange(o.readable_, false);
    writable_ = std::exchange(o.writable_, false);
    reader_ = std::move(o.reader_);
    pending_ = std::exchange(o.pending_, std::nullopt);
    eof_ = std::exchange(o.eof_, false);
    next_id_ = o.next_id_;
    send_broken_ = std::exchange(o.send_broken_, false);
  }
  return *this;
}

Connection::~Connection() { close(); }

int Connection::detach() noexcept {
  readable_ = writable_ = false;
  return std::exchange(fd_, -1);
}

void Connection::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Connection::check_open(const char* op, bool want_read) const {
  if (fd_ < 0) throw MisuseError(std::string("keel::Connection::") + op + ": the connection is closed");
  if (want_read && !readable_) throw MisuseError(std::string("keel::Connection::") + op + ": this end only sends");
  if (!want_read && !writable_) throw MisuseError(std::string("keel::Connection::") + op + ": this end only receives");
}

void Connection::send_impl(std::string_view message, const platform::Deadline& deadline) {
  check_open("send", false);
  if (send_broken_) {
    throw OsError(EPIPE, "keel::Connection::send: an earlier send stopped inside a message; the stream is unusable");
  }
  if (message.size() > max_message_) {
    throw ProtocolError("keel::Connection::send: message of " + std::to_string(message.size()) +
                        " bytes exceeds the maximum of " + std::to_string(max_message_));
  }
  std::string frame;
  append_frame(frame, message_frame_kind, next_id_, message, max_message_);
  std::size_t off = 0;
  while (off < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    const int err = n < 0 ? errno : EPIPE;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      if (wait_fd(fd_, POLLOUT, deadline)) continue;
      if (off == 0) throw TimeoutError("keel::Connection::send: timed out (nothing was sent)");
      send_broken_ = true;
      throw TimeoutError("keel::Connection::send: timed out inside a message; the connection can no longer send");
    }
    if (off > 0) send_broken_ = true;
    if (err == EPIPE || err == ECONNRESET) {
      throw OsError(EPIPE, "keel::Connection::send: the peer closed the connection");
    }
    throw_os("keel::Connection", "send", err);
  }
  ++next_id_;
}

std::optional<std::string> Connection::take_buffered() {
  if (pending_) return std::exchange(pending_, std::nullopt);
  const std::optional<FrameView> f = reader_.next();
  if (!f) return std::nullopt;
  if (f->kind != message_frame_kind) {
    throw ProtocolError("keel::Connection::recv: unexpected frame kind " + std::to_string(f->kind));
  }
  return std::string(f->payload);
}

void Connection::fill() {
  const std::span<char> room = reader_.prepare(read_chunk);
  for (;;) {
    const ssize_t n = ::recv(fd_, room.data(), room.size(), MSG_DONTWAIT);
    if (n > 0) {
      reader_.commit(static_cast<std::size_t>(n));
      return;
    }
    if (n == 0) {
      eof_ = true;
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == ECONNRESET) {  // the peer closed with our data unread: also the end
      eof_ = true;
      return;
    }
    throw_os("keel::Connection", "recv", errno);
  }
}

std::string Connection::recv_impl(const platform::Deadline& deadline) {
  check_open("recv", true);
  for (;;) {
    if (auto m = take_buffered()) return std::move(*m);
    if (eof_) {
      if (reader_.has_partial()) {
        throw ProtocolError("keel::Connection::recv: the peer closed the connection inside a message");
      }
      throw_peer_closed();
    }
    if (!wait_fd(fd_, POLLIN, deadline)) throw TimeoutError("keel::Connection::recv: timed out");
    fill();
  }
}

bool Connection::poll_impl(const platform::Deadline& deadline) {
  check_open("poll", true);
  for (;;) {
    if (pending_ || eof_) return true;
    pending_ = take_buffered();  // a malformed frame is a ProtocolError here already
    if (pending_) return true;
    if (!wait_fd(fd_, POLLIN, deadline)) return false;
    fill();
  }
}

Pipe::Pipe(PipeOptions options) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw_os("keel::Connection", "socketpair", errno);
  try {
    first = Connection(sv[0], options.max_message);
  } catch (...) {
    ::close(sv[0]);
    ::close(sv[1]);
    throw;
  }
  try {
    second = Connection(sv[1], options.max_message);
  } catch (...) {
    ::close(sv[1]);  // first closes its own end
    throw;
  }
  if (!options.duplex) {
    // Python's Pipe(duplex=False): the first end receives, the second sends.
    ::shutdown(sv[0], SHUT_WR);
    ::shutdown(sv[1], SHUT_RD);
    first.writable_ = false;
    second.readable_ = false;
  }
}

}  // namespace keel
