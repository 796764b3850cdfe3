// Frames: the header codec, append_frame and FrameReader's buffer management.
#include "keel/process/frame.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include "keel/error.hpp"

namespace keel {

namespace {

// The length field is a u32: no limit above that means anything.
constexpr std::size_t length_field_max = std::numeric_limits<std::uint32_t>::max();
// A drained buffer larger than this is given back, so one big message does not
// pin its memory for the rest of the connection.
constexpr std::size_t keep_capacity = std::size_t{1} << 20;
constexpr std::size_t min_capacity = 4096;

constexpr unsigned char magic_lo = frame_magic & 0xFF;  // 'L'
constexpr unsigned char magic_hi = frame_magic >> 8;    // 'K'

template <class U>
void store_le(unsigned char* p, U v) {
  for (std::size_t i = 0; i < sizeof v; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

template <class U>
U load_le(const unsigned char* p) {
  U v = 0;
  for (std::size_t i = 0; i < sizeof v; ++i) v = static_cast<U>(v | static_cast<U>(p[i]) << (8 * i));
  return v;
}

std::string hex_byte(unsigned char b) {
  char s[8];
  std::snprintf(s, sizeof s, "0x%02x", b);
  return s;
}

}  // namespace

void append_frame(std::string& out, std::uint8_t kind, std::uint64_t id, std::string_view payload,
                  std::size_t max_payload, std::uint8_t flags) {
  if (payload.size() > std::min(max_payload, length_field_max)) {
    throw ProtocolError("keel frame: payload of " + std::to_string(payload.size()) + " bytes is above the limit of " +
                        std::to_string(std::min(max_payload, length_field_max)));
  }
  unsigned char h[frame_header_size];
  h[0] = magic_lo;
  h[1] = magic_hi;
  h[2] = kind;
  h[3] = flags;
  store_le(h + 4, static_cast<std::uint32_t>(payload.size()));
  store_le(h + 8, id);
  // Reserve first, so the appends cannot throw and leave half a frame behind.
  out.reserve(out.size() + frame_header_size + payload.size());
  out.append(reinterpret_cast<const char*>(h), frame_header_size);
  out.append(payload);
}

FrameReader::FrameReader(std::size_t max_payload) : max_(std::min(max_payload, length_field_max)) {}

FrameReader::~FrameReader() = default;

FrameReader::FrameReader(FrameReader&& other) noexcept
    : buf_(std::move(other.buf_)),
      cap_(std::exchange(other.cap_, 0)),
      begin_(std::exchange(other.begin_, 0)),
      end_(std::exchange(other.end_, 0)),
      prepared_(std::exchange(other.prepared_, 0)),
      max_(other.max_),
      failed_(std::exchange(other.failed_, false)),
      error_(std::move(other.error_)) {
  other.error_.clear();
}

FrameReader& FrameReader::operator=(FrameReader&& other) noexcept {
  if (this != &other) {
    buf_ = std::move(other.buf_);
    cap_ = std::exchange(other.cap_, 0);
    begin_ = std::exchange(other.begin_, 0);
    end_ = std::exchange(other.end_, 0);
    prepared_ = std::exchange(other.prepared_, 0);
    max_ = other.max_;
    failed_ = std::exchange(other.failed_, false);
    error_ = std::move(other.error_);
    other.error_.clear();
  }
  return *this;
}

void FrameReader::fail(std::string what) {
  failed_ = true;
  error_ = std::move(what);
  throw ProtocolError(error_);
}

void FrameReader::rethrow_failure() const { throw ProtocolError(error_); }

void FrameReader::reserve_room(std::size_t at_least) {
  const std::size_t unread = end_ - begin_;
  if (unread == 0) {
    begin_ = end_ = 0;
    if (cap_ > keep_capacity && at_least <= keep_capacity) {
      buf_.reset();
      cap_ = 0;
    }
  }
  if (cap_ - end_ >= at_least) return;
  if (at_least > std::numeric_limits<std::size_t>::max() - unread) {
    throw ValueError("keel frame: prepare(" + std::to_string(at_least) + ") is too large");
  }
  if (cap_ - unread >= at_least) {
    // Enough room once the handed-out bytes are dropped from the front.
    std::memmove(buf_.get(), buf_.get() + begin_, unread);
  } else {
    // Doubling, but not past the largest frame unless the caller asks for more:
    // growth follows bytes actually received, never a claimed length.
    const std::size_t frame_limit = frame_header_size + max_;
    const std::size_t doubled = std::min(std::max(cap_ * 2, min_capacity), frame_limit);
    const std::size_t new_cap = std::max(unread + at_least, doubled);
    std::unique_ptr<char[]> fresh(new char[new_cap]);
    if (unread != 0) std::memcpy(fresh.get(), buf_.get() + begin_, unread);
    buf_ = std::move(fresh);
    cap_ = new_cap;
  }
  begin_ = 0;
  end_ = unread;
}

std::span<char> FrameReader::prepare(std::size_t at_least) {
  if (failed_) rethrow_failure();
  prepared_ = 0;
  reserve_room(at_least);
  prepared_ = cap_ - end_;
  return {buf_.get() + end_, prepared_};
}

void FrameReader::commit(std::size_t n) {
  if (failed_) rethrow_failure();
  if (n > prepared_) {
    throw MisuseError("keel frame: commit(" + std::to_string(n) + ") but prepare() offered " +
                      std::to_string(prepared_) + " bytes");
  }
  end_ += n;
  prepared_ = 0;
}

void FrameReader::feed(std::string_view bytes) {
  if (failed_) rethrow_failure();
  if (bytes.empty()) return;
  const std::span<char> room = prepare(bytes.size());
  std::memcpy(room.data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

std::optional<FrameView> FrameReader::next() {
  if (failed_) rethrow_failure();
  const std::size_t avail = end_ - begin_;
  if (avail == 0) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(buf_.get() + begin_);
  // Each header field is checked as soon as its bytes are here, so garbage
  // fails at once instead of waiting for a length that will never come.
  if (p[0] != magic_lo || (avail >= 2 && p[1] != magic_hi)) {
    fail("keel frame: bad magic " + hex_byte(p[0]) + (avail >= 2 ? " " + hex_byte(p[1]) : std::string()) +
         " (expected 0x4c 0x4b): not a keel frame stream");
  }
  if (avail < 8) return std::nullopt;
  const std::uint32_t length = load_le<std::uint32_t>(p + 4);
  if (length > max_) {
    fail("keel frame: length " + std::to_string(length) + " is above the limit of " + std::to_string(max_));
  }
  if (avail < frame_header_size || avail - frame_header_size < length) return std::nullopt;
  FrameView f;
  f.kind = p[2];
  f.flags = p[3];
  f.id = load_le<std::uint64_t>(p + 8);
  f.payload = std::string_view(buf_.get() + begin_ + frame_header_size, length);
  begin_ += frame_header_size + length;
  return f;
}

bool FrameReader::has_partial() const {
  if (failed_) return end_ != begin_;
  std::size_t pos = begin_;
  for (;;) {
    const std::size_t avail = end_ - pos;
    if (avail == 0) return false;
    if (avail < frame_header_size) return true;
    const auto* p = reinterpret_cast<const unsigned char*>(buf_.get() + pos);
    const std::uint32_t length = load_le<std::uint32_t>(p + 4);
    // A bad header is left for next() to report; its bytes are not a frame.
    if (p[0] != magic_lo || p[1] != magic_hi || length > max_) return true;
    if (avail - frame_header_size < length) return true;
    pos += frame_header_size + length;
  }
}

}  // namespace keel
