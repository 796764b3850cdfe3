// append_frame and FrameReader: the exact header layout, frames split at every
// byte boundary and several in one feed, prepare/commit, and hostile streams
// (IPC-1): bad magic and a length above the limit are ProtocolErrors as soon
// as the header bytes arrive, the reader stays failed, and its buffer never
// grows past header + limit whatever the stream claims.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/process/frame.hpp"

using namespace std::string_literals;

namespace {

struct Frame {
  std::uint8_t kind = 0;
  std::uint8_t flags = 0;
  std::uint64_t id = 0;
  std::string payload;
  bool operator==(const Frame&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Frame& f) {
  return os << "Frame{kind=" << int(f.kind) << " flags=" << int(f.flags) << " id=" << f.id
            << " payload=" << f.payload.size() << " bytes}";
}

std::string wire(const std::vector<Frame>& frames, std::size_t max = keel::default_max_frame) {
  std::string out;
  for (const auto& f : frames) keel::append_frame(out, f.kind, f.id, f.payload, max, f.flags);
  return out;
}

// Every frame the reader has whole right now.
std::vector<Frame> drain(keel::FrameReader& r) {
  std::vector<Frame> out;
  while (auto f = r.next()) out.push_back(Frame{f->kind, f->flags, f->id, std::string(f->payload)});
  return out;
}

// A header with the given fields, written by hand.
std::string header(std::uint32_t length, std::uint8_t kind = 1, std::uint64_t id = 0, char m0 = 'L', char m1 = 'K') {
  std::string h;
  h += m0;
  h += m1;
  h += static_cast<char>(kind);
  h += '\0';
  for (int i = 0; i < 4; ++i) h += static_cast<char>((length >> (8 * i)) & 0xFF);
  for (int i = 0; i < 8; ++i) h += static_cast<char>((id >> (8 * i)) & 0xFF);
  return h;
}

const std::vector<Frame> sample{
    {1, 0, 7, "hello"},
    {2, 3, 0xFFFFFFFFFFFFFFFFull, ""},
    {255, 255, 1ull << 40, std::string(300, '\xAB')},
};

TEST(Frame, HeaderIsMagicKindFlagsLengthIdLittleEndian) {
  std::string out = "prefix";
  keel::append_frame(out, 0x11, 0x0102030405060708ull, "xyz", keel::default_max_frame, 0x22);
  EXPECT_EQ(out,
            "prefix"
            "\x4c\x4b\x11\x22\x03\x00\x00\x00\x08\x07\x06\x05\x04\x03\x02\x01xyz"s);
  EXPECT_EQ(keel::frame_header_size, 16u);
  EXPECT_EQ(header(3, 0x11, 0x0102030405060708ull).substr(4), out.substr(6 + 4, 12));
}

TEST(Frame, AppendAboveTheLimitThrowsAndAppendsNothing) {
  std::string out = "keep";
  EXPECT_THROW(keel::append_frame(out, 1, 1, std::string(101, 'x'), 100), keel::ProtocolError);
  EXPECT_EQ(out, "keep");
  EXPECT_NO_THROW(keel::append_frame(out, 1, 1, std::string(100, 'x'), 100));
  EXPECT_EQ(out.size(), 4u + 16u + 100u);
  std::string empty;
  EXPECT_THROW(keel::append_frame(empty, 1, 1, "x", 0), keel::ProtocolError);
  EXPECT_TRUE(empty.empty());
  EXPECT_NO_THROW(keel::append_frame(empty, 1, 1, "", 0));
}

TEST(Frame, OneFeedOfSeveralFramesYieldsThemInOrder) {
  keel::FrameReader r;
  r.feed(wire(sample));
  EXPECT_EQ(drain(r), sample);
  EXPECT_FALSE(r.has_partial());
  EXPECT_EQ(r.buffered(), 0u);
  EXPECT_EQ(r.next(), std::nullopt);
}

TEST(Frame, FramesSplitAtEveryByteBoundaryReassemble) {
  const std::string bytes = wire(sample);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    keel::FrameReader r;
    r.feed(std::string_view(bytes).substr(0, cut));
    std::vector<Frame> got = drain(r);
    EXPECT_EQ(r.has_partial(), cut != 0 && cut != 16 + 5 && cut != 16 + 5 + 16 && cut != bytes.size()) << cut;
    r.feed(std::string_view(bytes).substr(cut));
    for (auto& f : drain(r)) got.push_back(f);
    ASSERT_EQ(got, sample) << "split at " << cut;
    EXPECT_FALSE(r.has_partial());
  }
}

TEST(Frame, WholeFramesStillBufferedAreNoPartialFrame) {
  // has_partial() walks the frames not yet handed out: one of exactly the
  // largest payload, then an empty one that is exactly a header.
  const std::size_t max = 8;
  keel::FrameReader r(max);
  const std::vector<Frame> frames{{1, 0, 1, "x"}, {2, 0, 2, std::string(max, 'm')}, {3, 0, 3, ""}};
  r.feed(wire(frames, max));
  EXPECT_FALSE(r.has_partial());
  r.feed(header(0).substr(0, keel::frame_header_size - 1));
  EXPECT_TRUE(r.has_partial());
  EXPECT_EQ(drain(r), frames);
}

TEST(Frame, BadMagicNamesBothBytesOnceTwoAreHere) {
  keel::FrameReader r;
  r.feed(std::string("L\x01", 2));
  try {
    (void)r.next();
    ADD_FAILURE() << "no ProtocolError";
  } catch (const keel::ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic 0x4c 0x01 "), std::string::npos) << e.what();
  }
}

TEST(Frame, RoomMadeByDroppingHandedOutBytesDoesNotGrowTheBuffer) {
  // 4096 bytes: a whole frame of 4000, then 96 of the next. After next(),
  // asking for exactly the 4000 bytes handed out moves the 96 to the front.
  keel::FrameReader r;
  const std::string bytes =
      wire({{1, 0, 1, std::string(4000 - keel::frame_header_size, 'a')}, {2, 0, 2, std::string(200, 'b')}});
  const std::span<char> room = r.prepare(4096);
  ASSERT_EQ(room.size(), 4096u);
  std::memcpy(room.data(), bytes.data(), 4096);
  r.commit(4096);
  ASSERT_EQ(r.next()->payload.size(), 4000 - keel::frame_header_size);
  EXPECT_EQ(r.prepare(4000).size(), 4000u);
  EXPECT_EQ(r.capacity(), 4096u);
  r.commit(0);
  r.feed(std::string_view(bytes).substr(4096));
  EXPECT_EQ(r.next()->payload, std::string(200, 'b'));
}

TEST(Frame, ADrainedBufferIsKeptUpToOneMebibyteAndShrinksToWhatIsAskedAbove) {
  constexpr std::size_t kept = std::size_t{1} << 20;
  keel::FrameReader r;
  r.prepare(kept);
  r.commit(0);
  ASSERT_EQ(r.capacity(), kept);
  r.prepare(4096);  // drained and at the kept size: kept for reuse
  EXPECT_EQ(r.capacity(), kept);
  r.prepare(4 * kept);
  r.commit(0);
  ASSERT_EQ(r.capacity(), 4 * kept);
  r.prepare(kept);  // drained, above the kept size, and asked for exactly it: given back
  EXPECT_EQ(r.capacity(), kept);
}

TEST(Frame, ByteByByteFeedKeepsTheBufferWithinOneFrame) {
  const std::size_t max = 1000;
  const std::vector<Frame> frames{{1, 0, 1, std::string(1000, 'a')}, {2, 0, 2, "b"}, {3, 0, 3, std::string(999, 'c')}};
  const std::string bytes = wire(frames, max);
  keel::FrameReader r(max);
  std::vector<Frame> got;
  for (char c : bytes) {
    r.feed(std::string_view(&c, 1));
    for (auto& f : drain(r)) got.push_back(f);
    ASSERT_LE(r.capacity(), keel::frame_header_size + max);
  }
  EXPECT_EQ(got, frames);
}

TEST(Frame, PrepareAndCommitCarryReads) {
  const std::string bytes = wire(sample);
  keel::FrameReader r;
  std::size_t at = 0;
  std::vector<Frame> got;
  while (at < bytes.size()) {
    const std::span<char> room = r.prepare(7);
    ASSERT_GE(room.size(), 7u);
    const std::size_t n = std::min<std::size_t>(7, bytes.size() - at);
    std::memcpy(room.data(), bytes.data() + at, n);
    r.commit(n);
    at += n;
    for (auto& f : drain(r)) got.push_back(f);
  }
  EXPECT_EQ(got, sample);
  r.prepare(1);
  r.commit(0);  // a read that returned nothing
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(Frame, CommitBeyondPrepareIsMisuseAndChangesNothing) {
  keel::FrameReader r;
  EXPECT_THROW(r.commit(1), keel::MisuseError);
  const std::span<char> room = r.prepare(4);
  EXPECT_THROW(r.commit(room.size() + 1), keel::MisuseError);
  EXPECT_EQ(r.buffered(), 0u);
  room[0] = 'L';
  r.commit(1);
  EXPECT_EQ(r.buffered(), 1u);
  EXPECT_THROW(r.commit(1), keel::MisuseError) << "one commit per prepare";
  EXPECT_EQ(r.buffered(), 1u);
  EXPECT_TRUE(r.has_partial());
  EXPECT_EQ(r.next(), std::nullopt);
}

TEST(Frame, PayloadAtExactlyTheLimitIsAccepted) {
  keel::FrameReader r(64);
  r.feed(wire({{9, 0, 9, std::string(64, 'm')}}, 64));
  const auto f = r.next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, std::string(64, 'm'));
}

TEST(Frame, BadMagicFailsAtOnceAndTheReaderStaysFailed) {
  for (const std::string& bad : {"X"s, "LX"s, header(0, 1, 0, 'K', 'L'), "\x00\x00"s}) {
    keel::FrameReader r;
    r.feed(bad);
    std::string first;
    try {
      (void)r.next();
      ADD_FAILURE() << "no error for " << bad.size() << " bytes";
    } catch (const keel::ProtocolError& e) {
      first = e.what();
    }
    EXPECT_NE(first.find("magic"), std::string::npos) << first;
    EXPECT_TRUE(r.failed());
    for (int i = 0; i < 3; ++i) {
      try {
        (void)r.next();
        ADD_FAILURE() << "the reader recovered";
      } catch (const keel::ProtocolError& e) {
        EXPECT_EQ(std::string(e.what()), first);
      }
    }
    EXPECT_THROW(r.feed(wire(sample)), keel::ProtocolError);
    EXPECT_THROW(r.prepare(10), keel::ProtocolError);
    EXPECT_THROW(r.commit(0), keel::ProtocolError);
    EXPECT_EQ(r.buffered(), bad.size()) << "nothing more is taken in";
  }
}

TEST(Frame, BadMagicAfterGoodFramesFailsAfterThem) {
  keel::FrameReader r;
  r.feed(wire(sample) + "garbage");
  EXPECT_EQ(r.next()->id, sample[0].id);
  EXPECT_EQ(r.next()->id, sample[1].id);
  EXPECT_EQ(r.next()->id, sample[2].id);
  EXPECT_THROW((void)r.next(), keel::ProtocolError);
}

TEST(Frame, LengthAboveTheLimitFailsWithoutGrowingTheBuffer) {
  const std::size_t max = 100;
  for (std::uint32_t claim : {101u, 1000000u, 0xFFFFFFFFu}) {
    keel::FrameReader r(max);
    const std::string h = header(claim);
    // Only the first 8 header bytes are needed to know.
    r.feed(h.substr(0, 7));
    EXPECT_EQ(r.next(), std::nullopt);
    r.feed(h.substr(7, 1));
    EXPECT_THROW((void)r.next(), keel::ProtocolError);
    EXPECT_THROW(r.feed(std::string(4096, 'x')), keel::ProtocolError);
    EXPECT_THROW((void)r.next(), keel::ProtocolError);
    EXPECT_LE(r.capacity(), keel::frame_header_size + max);
    EXPECT_LE(r.buffered(), keel::frame_header_size + max);
    EXPECT_TRUE(r.has_partial());
  }
}

TEST(Frame, AClaimedLengthWithinTheLimitIsNotAllocatedAhead) {
  keel::FrameReader r;  // 64 MiB limit
  r.feed(header(60u << 20));
  EXPECT_EQ(r.next(), std::nullopt);
  EXPECT_TRUE(r.has_partial());
  EXPECT_LT(r.capacity(), std::size_t{1} << 20) << "the buffer follows bytes received, not the claim";
}

TEST(Frame, ADrainedBigBufferIsGivenBack) {
  keel::FrameReader r;
  r.feed(wire({{1, 0, 1, std::string(4 << 20, 'q')}}));
  EXPECT_EQ(r.next()->payload.size(), std::size_t{4} << 20);
  EXPECT_GE(r.capacity(), std::size_t{4} << 20);
  r.prepare(4096);
  EXPECT_LT(r.capacity(), std::size_t{4} << 20);
}

TEST(Frame, AMovedFromReaderIsEmptyAndUsable) {
  keel::FrameReader a;
  a.feed(wire(sample).substr(0, 30));
  keel::FrameReader b = std::move(a);
  EXPECT_EQ(b.buffered(), 30u);
  EXPECT_EQ(a.buffered(), 0u);  // NOLINT(bugprone-use-after-move)
  a.feed(wire(sample));
  EXPECT_EQ(drain(a), sample);
  b.feed(wire(sample).substr(30));
  EXPECT_EQ(drain(b), sample);
}

TEST(FrameProperties, RandomFramesInRandomChunksComeOutWhole) {
  EXPECT_TRUE(keel_test::rc_check("frames survive any chunking", 200, 60, [] {
    const auto n = *rc::gen::inRange<std::size_t>(0, 8);
    std::vector<Frame> frames;
    for (std::size_t i = 0; i < n; ++i) {
      frames.push_back(Frame{*rc::gen::arbitrary<std::uint8_t>(), *rc::gen::arbitrary<std::uint8_t>(),
                             *rc::gen::arbitrary<std::uint64_t>(), *rc::gen::arbitrary<std::string>()});
    }
    const std::string bytes = wire(frames);
    keel::FrameReader r(*rc::gen::inRange<std::size_t>(200, 1000));
    std::vector<Frame> got;
    std::size_t at = 0;
    while (at < bytes.size()) {
      const std::size_t k = std::min(bytes.size() - at, *rc::gen::inRange<std::size_t>(1, 64));
      if (*rc::gen::arbitrary<bool>()) {
        r.feed(std::string_view(bytes).substr(at, k));
      } else {
        const auto room = r.prepare(k);
        std::memcpy(room.data(), bytes.data() + at, k);
        r.commit(k);
      }
      at += k;
      for (auto& f : drain(r)) got.push_back(f);
    }
    RC_ASSERT(got == frames);
    RC_ASSERT(!r.has_partial());
  }));
}

TEST(FrameProperties, RandomBytesGiveFramesOrAProtocolErrorWithABoundedBuffer) {
  EXPECT_TRUE(keel_test::rc_check("garbage never crashes or grows the buffer", 300, 100, [] {
    const std::size_t max = *rc::gen::inRange<std::size_t>(0, 300);
    keel::FrameReader r(max);
    // Mostly valid headers with random lengths, kinds and payloads, sometimes noise.
    std::string bytes;
    const auto pieces = *rc::gen::inRange(1, 6);
    for (int i = 0; i < pieces; ++i) {
      if (*rc::gen::weightedElement<int>({{4, 0}, {1, 1}}) == 0) {
        const auto len = *rc::gen::inRange<std::uint32_t>(0, 400);
        bytes += header(len, *rc::gen::arbitrary<std::uint8_t>());
        bytes += std::string(*rc::gen::inRange<std::size_t>(0, 400), 'p');
      } else {
        bytes += *rc::gen::arbitrary<std::string>();
      }
    }
    const std::size_t chunk = *rc::gen::inRange<std::size_t>(1, 32);
    bool failed = false;
    try {
      for (std::size_t at = 0; at < bytes.size(); at += chunk) {
        r.feed(std::string_view(bytes).substr(at, chunk));
        while (auto f = r.next()) RC_ASSERT(f->payload.size() <= max);
        RC_ASSERT(r.capacity() <= keel::frame_header_size + max + chunk);
      }
    } catch (const keel::ProtocolError&) {
      failed = true;
    }
    RC_ASSERT(r.failed() == failed);
    RC_ASSERT(r.capacity() <= keel::frame_header_size + max + chunk);
  }));
}

}  // namespace
