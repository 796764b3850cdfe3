// Frames: how messages are delimited on a byte stream between processes.
//
// A frame is a 16-byte header, then `length` payload bytes, all little-endian:
// u16 magic 0x4B4C (bytes 'L','K'), u8 kind, u8 flags, u32 length, u64 id. The
// frame layer does not interpret kind, flags or id.
//
// Contract: append_frame refuses (ProtocolError, nothing appended) a payload
// above the limit. FrameReader takes bytes split anywhere and hands out whole
// frames; bad magic or a claimed length above the limit is a ProtocolError as
// soon as those header bytes arrive, and the reader then stays failed (every
// later call throws the same). A claimed length never causes an allocation: the
// buffer holds only bytes actually received (and the room prepare() was asked
// for), and while the caller drains next() between reads it stays within
// header + max_payload plus one read (IPC-1).
//
// Invariants: IPC-1 (a malformed or oversized frame is a ProtocolError: no
// crash, hang or unbounded allocation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace keel {

/// The bytes of a frame's header.
inline constexpr std::size_t frame_header_size = 16;
inline constexpr std::size_t default_max_frame = 64u << 20;  ///< 64 MiB
/// The first two bytes of every frame ('L','K' as little-endian u16).
inline constexpr std::uint16_t frame_magic = 0x4B4C;

/// One frame as FrameReader::next hands it out.
struct FrameView {
  std::uint8_t kind = 0;       ///< the header's kind byte, for the layer above
  std::uint8_t flags = 0;      ///< the header's flags byte, for the layer above
  std::uint64_t id = 0;        ///< the header's id, for the layer above
  std::string_view payload{};  ///< the payload bytes, valid until the reader's next call
};

/// Appends one frame to `out`. ProtocolError, with `out` unchanged, if
/// payload.size() > max_payload (or does not fit the u32 length field).
void append_frame(std::string& out, std::uint8_t kind, std::uint64_t id, std::string_view payload,
                  std::size_t max_payload = default_max_frame, std::uint8_t flags = 0);

/// Incremental frame parser: bytes in (any split), whole frames out.
/// Not thread-safe: one reader per stream, used by one thread at a time.
class FrameReader {
 public:
  /// A reader that refuses frames with a payload above `max_payload` (ProtocolError).
  explicit FrameReader(std::size_t max_payload = default_max_frame);
  /// A moved-from reader is empty and usable.
  FrameReader(FrameReader&& other) noexcept;
  /// Takes other's buffer and state; other is left empty and usable.
  FrameReader& operator=(FrameReader&& other) noexcept;
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;
  /// Frees the buffer.
  ~FrameReader();

  /// Writable space at the end of the buffer, at least `at_least` bytes (for
  /// read(2)). Invalidates the previous frame's payload view.
  std::span<char> prepare(std::size_t at_least);
  /// n bytes were written at the start of prepare()'s span. MisuseError (and
  /// nothing changes) if n exceeds that span or no prepare() preceded it.
  void commit(std::size_t n);
  /// prepare + copy + commit.
  void feed(std::string_view bytes);
  /// The next whole frame, or nullopt if more bytes are needed. The payload
  /// view is valid until the next call of next/prepare/feed. Bad magic or a
  /// length above max_payload -> ProtocolError, and the reader stays failed.
  std::optional<FrameView> next();
  /// Bytes of an incomplete frame are buffered (e.g. at EOF: the peer stopped
  /// mid-frame). True for a failed reader that holds bytes.
  bool has_partial() const;
  /// Bytes received and not yet handed out by next().
  std::size_t buffered() const noexcept { return end_ - begin_; }
  /// The allocated buffer size (for tests of the bound above).
  std::size_t capacity() const noexcept { return cap_; }
  /// The largest payload it accepts.
  std::size_t max_payload() const noexcept { return max_; }
  /// Whether it met a malformed frame (every later call throws that ProtocolError again).
  bool failed() const noexcept { return failed_; }

 private:
  [[noreturn]] void fail(std::string what);
  [[noreturn]] void rethrow_failure() const;
  void reserve_room(std::size_t at_least);

  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;     // first byte not yet handed out
  std::size_t end_ = 0;       // one past the last byte received
  std::size_t prepared_ = 0;  // size of the span the last prepare() returned; 0 after commit
  std::size_t max_;
  bool failed_ = false;
  std::string error_;
};

}  // namespace keel
