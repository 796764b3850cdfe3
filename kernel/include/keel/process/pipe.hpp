// keel::Connection and keel::Pipe: framed messages between processes (Python's
// multiprocessing.connection.Connection and multiprocessing.Pipe).
//
// Contract:
// - A Connection owns one end of a stream socket (AF_UNIX, SOCK_STREAM) and
//   sends and receives whole messages: each is one frame (kind 1, see
//   frame.hpp), so message boundaries survive any split of the stream.
// - send_bytes sends all of a message or, on error, throws. A message above
//   max_message() is refused with ProtocolError and nothing is sent. A timed
//   send that times out before its first byte left throws TimeoutError and the
//   connection is intact; one that times out halfway has written a partial
//   frame, so the connection refuses every later send (OsError EPIPE).
// - recv_bytes returns the next whole message. Timed forms throw TimeoutError
//   and keep any partial message buffered for the next call. A malformed or
//   oversized incoming frame is a ProtocolError, never a crash, hang or
//   allocation beyond max_message (IPC-1); the connection then stays failed.
//   End of stream (the peer closed) is OsError with code EPIPE ("peer
//   closed"); a stream that ends inside a frame is a ProtocolError.
// - poll(timeout) is true when recv_bytes will not block: a whole message is
//   here, or the stream ended (recv_bytes then throws). A malformed frame that
//   has arrived is a ProtocolError from poll as well.
// - The process never gets SIGPIPE from a Connection (MSG_NOSIGNAL).
// - Using a closed Connection is a MisuseError, and so is sending on the
//   receive-only end (or receiving on the send-only end) of a one-way Pipe.
// - Threads: one thread may send while another receives; any other
//   concurrent use of one Connection needs the caller's lock.
// - Every fd is created O_CLOEXEC; pass a Connection to a child process with
//   ProcessOptions::connections.
//
// Invariants: IPC-1.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/platform/clock.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/frame.hpp"

namespace keel {

/// The frame kind of a Connection's messages.
inline constexpr std::uint8_t message_frame_kind = 1;

/// One end of a Pipe: whole messages over a stream socket (Python's multiprocessing Connection).
class Connection {
 public:
  /// A closed connection.
  Connection() noexcept;
  /// Adopts `fd`, which must be a stream socket (ValueError otherwise; the
  /// caller then still owns fd). The fd is made close-on-exec.
  explicit Connection(int fd, std::size_t max_message = default_max_frame);
  /// Takes other's socket and buffered bytes; other is left closed.
  Connection(Connection&& other) noexcept;
  /// Closes this connection's socket, then takes other's.
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  /// Closes the socket.
  ~Connection();

  /// Sends one whole message (ProtocolError above max_message(), nothing sent).
  void send_bytes(std::string_view message) { send_impl(message, platform::Deadline::never()); }
  /// send_bytes, or TimeoutError if `timeout` passes first.
  template <class Rep, class Period>
  void send_bytes(std::string_view message, std::chrono::duration<Rep, Period> timeout) {
    send_impl(message, platform::Deadline::after(timeout));
  }

  /// Blocks for the next whole message; OsError EPIPE once the peer closed.
  std::string recv_bytes() { return recv_impl(platform::Deadline::never()); }
  /// recv_bytes, or TimeoutError if no whole message arrives within `timeout`.
  template <class Rep, class Period>
  std::string recv_bytes(std::chrono::duration<Rep, Period> timeout) {
    return recv_impl(platform::Deadline::after(timeout));
  }

  /// Values through the codec (codec.hpp); a message that does not decode as T
  /// exactly is a ProtocolError.
  template <class T>
  void send(const T& value) {
    send_bytes(keel::encode(value));
  }
  /// send(value), or TimeoutError if `timeout` passes first.
  template <class T, class Rep, class Period>
  void send(const T& value, std::chrono::duration<Rep, Period> timeout) {
    send_bytes(keel::encode(value), timeout);
  }
  /// The next message, decoded as T.
  template <class T>
  T recv() {
    return keel::decode<T>(recv_bytes());
  }
  /// recv<T>(), or TimeoutError if no whole message arrives within `timeout`.
  template <class T, class Rep, class Period>
  T recv(std::chrono::duration<Rep, Period> timeout) {
    return keel::decode<T>(recv_bytes(timeout));
  }

  /// Whether recv_bytes would return (or throw) without blocking; waits up to
  /// `timeout` for that. poll() does not wait.
  bool poll() { return poll_impl(platform::Deadline::after(std::chrono::nanoseconds(0))); }
  /// poll(), waiting up to `timeout` for a message (or the end of the stream).
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_impl(platform::Deadline::after(timeout));
  }

  /// Closes the socket; idempotent.
  void close() noexcept;
  /// Gives up the socket without closing it (Python's detach): returns the fd
  /// (-1 if closed) and leaves this Connection closed.
  int detach() noexcept;
  /// Whether it was closed (or detached, or never opened).
  bool closed() const noexcept { return fd_ < 0; }
  /// The socket's fd (-1 when closed); it stays owned by the Connection.
  int fileno() const noexcept { return fd_; }
  /// Whether this end may receive.
  bool readable() const noexcept { return readable_; }
  /// Whether this end may send.
  bool writable() const noexcept { return writable_; }
  /// The largest message it sends or accepts.
  std::size_t max_message() const noexcept { return max_message_; }

 private:
  friend class Pipe;
  void send_impl(std::string_view message, const platform::Deadline& deadline);
  std::string recv_impl(const platform::Deadline& deadline);
  bool poll_impl(const platform::Deadline& deadline);
  void check_open(const char* op, bool want_read) const;
  // The next whole message if one is buffered (throws the reader's
  // ProtocolError, or for a wrong frame kind).
  std::optional<std::string> take_buffered();
  // One non-blocking read into the frame reader; sets eof_ at end of stream.
  void fill();

  int fd_ = -1;
  std::size_t max_message_ = default_max_frame;
  bool readable_ = false;
  bool writable_ = false;
  // Receive side.
  FrameReader reader_;
  std::optional<std::string> pending_;  // a message poll() took out of the reader
  bool eof_ = false;
  // Send side.
  std::uint64_t next_id_ = 0;
  bool send_broken_ = false;
};

/// How a Pipe is made.
struct PipeOptions {
  bool duplex = true;                           ///< false: first only receives, second only sends
  std::size_t max_message = default_max_frame;  ///< for both ends
};

/// A connected pair of Connections. With structured bindings:
///   auto [parent_end, child_end] = keel::Pipe();
class Pipe {
 public:
  /// A connected pair; duplex false: first only receives, second only sends.
  explicit Pipe(bool duplex = true) : Pipe(PipeOptions{.duplex = duplex}) {}
  /// A connected pair with `options`.
  explicit Pipe(PipeOptions options);

  /// One end (the parent's, by convention).
  Connection first;
  /// The other end (to hand to a child).
  Connection second;
};

}  // namespace keel
