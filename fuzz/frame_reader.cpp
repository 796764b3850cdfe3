// Fuzz target frame_reader: FrameReader fed hostile byte streams, split
// anywhere, through feed() or prepare()/commit(), against an independent
// reference parser of the same bytes.
//
// Input: a small header (limit, split seed, read style), then the stream.
// Checks after every read and at the end (IPC-1):
// - the reader hands out exactly the reference's frames, in order, and each
//   re-encodes with append_frame to the bytes it came from;
// - bad magic or a length above the limit is a ProtocolError as soon as those
//   header bytes arrived (not later, not earlier), and every later call throws
//   the same; no other exception type ever escapes;
// - the buffer never grows past one frame plus one read, however large a
//   length the bytes claim; buffered() and has_partial() match the reference;
// - commit() of more than prepare() offered is a MisuseError and changes nothing.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/error.hpp"
#include "keel/process/frame.hpp"

namespace {

struct RefFrame {
  std::uint8_t kind, flags;
  std::uint64_t id;
  std::string payload;
  std::size_t end;  // stream offset one past the frame
};

template <class T>
T load_le(const std::string& s, std::size_t at) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(static_cast<T>(static_cast<unsigned char>(s[at + i])) << (8 * i));
  return v;
}

// The reference: the frames in `s`, and the offset at which the reader must
// have failed (the byte count after which bad header bytes are visible).
struct Reference {
  std::vector<RefFrame> frames;
  std::optional<std::size_t> fail_at;  // bytes needed to see the bad header field
  std::size_t consumed = 0;            // bytes of whole frames
};

Reference parse(const std::string& s, std::size_t max) {
  Reference r;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t avail = s.size() - pos;
    if (avail == 0) break;
    if (static_cast<unsigned char>(s[pos]) != 0x4C) {
      r.fail_at = pos + 1;
      break;
    }
    if (avail < 2) break;
    if (static_cast<unsigned char>(s[pos + 1]) != 0x4B) {
      r.fail_at = pos + 2;
      break;
    }
    if (avail < 8) break;
    const std::uint32_t length = load_le<std::uint32_t>(s, pos + 4);
    if (length > max) {
      r.fail_at = pos + 8;
      break;
    }
    if (avail < keel::frame_header_size + length) break;
    RefFrame f{static_cast<std::uint8_t>(s[pos + 2]), static_cast<std::uint8_t>(s[pos + 3]),
               load_le<std::uint64_t>(s, pos + 8), s.substr(pos + keel::frame_header_size, length), 0};
    pos += keel::frame_header_size + length;
    f.end = pos;
    r.frames.push_back(std::move(f));
  }
  r.consumed = pos;
  return r;
}

}  // namespace

KEEL_FUZZ_TARGET(frame_reader) {
  static constexpr std::size_t limits[] = {0, 1, 7, 16, 100, 4096, 65536, keel::default_max_frame};
  const std::size_t max = (in.byte() & 0x80) != 0 ? limits[in.below(std::size(limits))] : in.below(300);
  const bool use_prepare = in.boolean();
  const std::size_t max_chunk = in.in_range(1, 512);
  std::uint32_t seed = in.integral<std::uint32_t>() | 1;
  const std::string stream(in.rest());

  const Reference ref = parse(stream, max);
  keel::FrameReader reader(max);
  std::size_t fed = 0, next_frame = 0, largest_read = 0;
  bool failed = false;
  std::string failure;

  auto rng = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
  };

  auto drain = [&] {
    for (;;) {
      std::optional<keel::FrameView> f;
      try {
        f = reader.next();
      } catch (const keel::ProtocolError& e) {
        KEEL_FUZZ_CHECK(
            "IPC-1", ref.fail_at && fed >= *ref.fail_at && next_frame == ref.frames.size(),
            "ProtocolError at byte " + std::to_string(fed) + " of a stream the reference accepts there: " + e.what());
        failed = true;
        failure = e.what();
        return;
      }
      if (!f) {
        KEEL_FUZZ_CHECK("IPC-1", !(ref.fail_at && fed >= *ref.fail_at && next_frame == ref.frames.size()),
                        "no ProtocolError after the bad header bytes at " + std::to_string(*ref.fail_at));
        return;
      }
      KEEL_FUZZ_CHECK("IPC-1", next_frame < ref.frames.size(), "a frame the reference does not have");
      const RefFrame& want = ref.frames[next_frame];
      KEEL_FUZZ_CHECK("IPC-1", want.end <= fed, "a frame handed out before its last byte arrived");
      KEEL_FUZZ_CHECK("IPC-1",
                      f->kind == want.kind && f->flags == want.flags && f->id == want.id && f->payload == want.payload,
                      "frame " + std::to_string(next_frame) + " differs from the reference");
      std::string again;
      keel::append_frame(again, f->kind, f->id, f->payload, max, f->flags);
      KEEL_FUZZ_CHECK("IPC-1", again == stream.substr(want.end - again.size(), again.size()),
                      "append_frame does not reproduce the bytes of frame " + std::to_string(next_frame));
      ++next_frame;
    }
  };

  while (fed < stream.size() && !failed) {
    const std::size_t n = std::min<std::size_t>(1 + rng() % max_chunk, stream.size() - fed);
    try {
      if (use_prepare) {
        // Sometimes ask for far more room than is written, as read(2) does.
        const std::size_t ask = (rng() & 7) == 0 ? n + (rng() % 65536) : n;
        auto span = reader.prepare(ask);
        KEEL_FUZZ_CHECK("IPC-1", span.size() >= ask, "prepare() gave less room than asked");
        largest_read = std::max(largest_read, ask);
        if ((rng() & 15) == 0) {
          const std::size_t before = reader.buffered();
          bool refused = false;
          try {
            reader.commit(span.size() + 1);
          } catch (const keel::MisuseError&) {
            refused = true;
          }
          KEEL_FUZZ_CHECK("IPC-1", refused && reader.buffered() == before,
                          "commit() past the prepared room was accepted or changed the buffer");
          span = reader.prepare(ask);
        }
        std::memcpy(span.data(), stream.data() + fed, n);
        reader.commit(n);
      } else {
        largest_read = std::max(largest_read, n);
        reader.feed(std::string_view(stream).substr(fed, n));
      }
    } catch (const keel::ProtocolError& e) {
      KEEL_FUZZ_CHECK("IPC-1", false, std::string("feed/prepare threw on a reader that had not failed: ") + e.what());
    }
    fed += n;
    drain();
    // One frame plus one read: never a claimed length.
    KEEL_FUZZ_CHECK("IPC-1", reader.capacity() <= keel::frame_header_size + reader.max_payload() + largest_read,
                    "capacity " + std::to_string(reader.capacity()) + " above one frame (" +
                        std::to_string(keel::frame_header_size + reader.max_payload()) + ") plus one read (" +
                        std::to_string(largest_read) + ")");
  }

  if (failed) {
    KEEL_FUZZ_CHECK("IPC-1", reader.failed(), "failed() is false after a ProtocolError");
    for (int i = 0; i < 2; ++i) {
      std::string again;
      try {
        if (i == 0) {
          reader.next();
        } else {
          reader.feed("LK");
        }
      } catch (const keel::ProtocolError& e) {
        again = e.what();
      }
      KEEL_FUZZ_CHECK("IPC-1", again == failure, "a failed reader did not repeat its ProtocolError");
    }
    KEEL_FUZZ_CHECK("IPC-1", reader.has_partial() == (reader.buffered() != 0), "has_partial() of a failed reader");
    return;
  }
  KEEL_FUZZ_CHECK("IPC-1", !ref.fail_at, "the stream has a bad header but the reader never failed");
  KEEL_FUZZ_CHECK("IPC-1", next_frame == ref.frames.size(), "frames missing at the end of the stream");
  KEEL_FUZZ_CHECK("IPC-1", reader.buffered() == stream.size() - ref.consumed,
                  "buffered() is not the incomplete frame's bytes");
  KEEL_FUZZ_CHECK("IPC-1", reader.has_partial() == (ref.consumed != stream.size()), "has_partial() is wrong");
}
