// The answer ring (kernel/src/process_pool/answer_ring.hpp) in one process,
// over a real slot page: both ends of it, the rules that order the ring
// against the pipe, the bell, and a worker's page that lies (IPC-1, POOL-13).
// The concurrent protocol is model-checked (models/process_pool/ring_model.cpp);
// these pin down the sequential contract both ends rely on.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../kernel/src/process_pool/protocol.hpp"
#include "gtest/gtest.h"
#include "keel/error.hpp"
#include "keel/process/frame.hpp"

namespace {

namespace rp = keel::pool::proto;
namespace ring = keel::pool::ring;

// Everything a Reader holds, taken into a string.
std::string take_all(ring::Reader& r) {
  std::string got;
  r.take([&](std::size_t n) {
    got.resize(n);
    return got.data();
  });
  return got;
}

// A writer's pipe: what it was handed, write by write.
struct FakePipe {
  std::vector<std::string> writes;
  bool write(std::string_view b) {
    writes.emplace_back(b);
    return true;
  }
};

std::string bytes_of(char c, std::size_t n) { return std::string(n, c); }

// A slot page with a ring of `bytes`, both of the ring's ends, and the pipe
// the writer's overflow and bells go to.
struct Ends {
  explicit Ends(std::uint32_t bytes)
      : page(rp::SlotPage::create(4, bytes)), w(page.ring_writer()), r(page.ring_reader()) {}
  bool send(std::string_view frames) {
    return ring::send(w, frames, "BELL", [this](std::string_view b) { return pipe.write(b); });
  }
  rp::SlotPage page;
  ring::Writer w;
  ring::Reader r;
  FakePipe pipe;
};

TEST(AnswerRing, FramesWrapAroundAndComeOutWholeInOrder) {
  rp::SlotPage page = rp::SlotPage::create(4, 64);
  ring::Writer w = page.ring_writer();
  ring::Reader r = page.ring_reader();
  ASSERT_TRUE(w.attached());
  ASSERT_TRUE(r.attached());
  // 40 + 20 bytes, then 30 more: the third batch crosses the ring's end.
  ASSERT_TRUE(w.put(bytes_of('a', 40)));
  ASSERT_TRUE(w.put(bytes_of('b', 20)));
  EXPECT_FALSE(w.put(bytes_of('c', 30))) << "60 of 64 bytes are unread: 30 more do not fit";
  EXPECT_EQ(take_all(r), bytes_of('a', 40) + bytes_of('b', 20));
  ASSERT_TRUE(w.put(bytes_of('c', 30)));
  ASSERT_TRUE(w.put(bytes_of('d', 34)));
  EXPECT_FALSE(w.put("e")) << "the ring is full";
  EXPECT_EQ(take_all(r), bytes_of('c', 30) + bytes_of('d', 34));
  EXPECT_EQ(take_all(r), "") << "nothing is taken twice";
  // Real frames survive the wrap byte for byte.
  std::string frames;
  keel::append_frame(frames, rp::ok, 77, "0123456789abcdef", 1024, 3);
  ASSERT_TRUE(w.put(frames));
  keel::FrameReader fr(1024);
  fr.feed(take_all(r));
  const auto f = fr.next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->kind, rp::ok);
  EXPECT_EQ(f->id, 77u);
  EXPECT_EQ(f->flags, 3);
  EXPECT_EQ(f->payload, "0123456789abcdef");
}

TEST(AnswerRing, AFrameThatDoesNotFitGoesByPipeAndTheRingWaitsUntilItIsHandled) {
  Ends e(64);
  ring::Reader& r = e.r;
  const FakePipe& pipe = e.pipe;
  r.disarm();  // the supervisor is awake: no bells in this test
  ASSERT_TRUE(e.send(bytes_of('a', 10)));
  ASSERT_TRUE(e.send(bytes_of('b', 100)));  // larger than the ring
  ASSERT_EQ(pipe.writes.size(), 1u);
  EXPECT_EQ(pipe.writes[0], bytes_of('b', 100));
  // A small batch now would be newer than an unhandled pipe frame: it goes
  // by pipe too, whatever room the ring has.
  ASSERT_TRUE(e.send(bytes_of('c', 5)));
  ASSERT_EQ(pipe.writes.size(), 2u);
  EXPECT_EQ(pipe.writes[1], bytes_of('c', 5));
  // The supervisor: each pipe frame after the ring's bytes.
  std::string order;
  auto drain = [&] { order += take_all(r); };
  ring::on_pipe_frame(r, false, 100, drain, [&] { order += pipe.writes[0]; });
  ASSERT_TRUE(e.send(bytes_of('x', 3))) << "one pipe frame is still unhandled";
  EXPECT_EQ(pipe.writes.size(), 3u);
  ring::on_pipe_frame(r, false, 5, drain, [&] { order += pipe.writes[1]; });
  ring::on_pipe_frame(r, false, 3, drain, [&] { order += pipe.writes[2]; });
  // Every pipe frame handled: the ring again.
  ASSERT_TRUE(e.send(bytes_of('d', 7)));
  EXPECT_EQ(pipe.writes.size(), 3u);
  drain();
  EXPECT_EQ(order, bytes_of('a', 10) + bytes_of('b', 100) + bytes_of('c', 5) + bytes_of('x', 3) + bytes_of('d', 7));
  // A bell read from the pipe counts for nothing.
  ring::on_pipe_frame(r, true, 16, drain, [&] { ADD_FAILURE() << "a bell is not handled"; });
  ASSERT_TRUE(e.send(bytes_of('e', 2)));
  EXPECT_EQ(pipe.writes.size(), 3u);
}

TEST(AnswerRing, ABellIsClaimedOncePerArmAndOnlyWhenArmed) {
  Ends e(256);
  ring::Reader& r = e.r;
  const FakePipe& pipe = e.pipe;
  // A fresh ring says the supervisor may be asleep: the first frame rings.
  ASSERT_TRUE(e.send("one"));
  ASSERT_TRUE(e.send("two"));
  ASSERT_EQ(pipe.writes, std::vector<std::string>{"BELL"});
  EXPECT_FALSE(r.arm()) << "six bytes wait: the supervisor must not sleep";
  EXPECT_EQ(take_all(r), "onetwo");
  EXPECT_TRUE(r.arm());
  ASSERT_TRUE(e.send("three"));
  ASSERT_TRUE(e.send("four"));
  EXPECT_EQ(pipe.writes, (std::vector<std::string>{"BELL", "BELL"})) << "one bell per sleep";
  r.disarm();
  ASSERT_TRUE(e.send("five"));
  EXPECT_EQ(pipe.writes.size(), 2u) << "no bell while the supervisor is awake";
  EXPECT_EQ(take_all(r), "threefourfive");
}

TEST(AnswerRing, ATailOutOfRangeIsAProtocolErrorAndNothingIsTaken) {
  rp::SlotPage page = rp::SlotPage::create(4, 64);
  ring::Writer w = page.ring_writer();
  ring::Reader r = page.ring_reader();
  ASSERT_TRUE(w.put("abc"));
  EXPECT_EQ(take_all(r), "abc");
  // The worker's end of the page is the worker's to scribble on: a tail
  // more than the ring ahead of what was taken, or behind it.
  auto* header = reinterpret_cast<ring::Header*>(reinterpret_cast<char*>(&page[0]) + 64);
  for (const std::uint64_t lie : {std::uint64_t{3 + 65}, std::uint64_t{2}, ~std::uint64_t{0}}) {
    header->tail.store(lie, std::memory_order_seq_cst);
    bool asked = false;
    char scratch[64];
    EXPECT_THROW(r.take([&](std::size_t) {
      asked = true;
      return scratch;
    }),
                 keel::ProtocolError)
        << "tail " << lie;
    EXPECT_FALSE(asked) << "no room is asked for, no byte copied, for tail " << lie;
    EXPECT_FALSE(r.arm()) << "a lying tail is not an empty ring";
  }
  // Exactly a full ring is not a lie.
  header->tail.store(3 + 64, std::memory_order_seq_cst);
  EXPECT_EQ(take_all(r).size(), 64u);
}

TEST(AnswerRing, AWorkerRefusesAPageSmallerThanItsSlotsAndRing) {
  rp::SlotPage small = rp::SlotPage::create(4, 64);
  const int fd = ::dup(small.fd());
  ASSERT_GE(fd, 0);
  // The page has a 64-byte ring: attaching it as one of 4096 would map past
  // its end, and the first byte touched there would be a SIGBUS.
  EXPECT_THROW(rp::SlotPage::attach(fd, 4, 4096), keel::OsError);
  const int fd2 = ::dup(small.fd());
  ASSERT_GE(fd2, 0);
  rp::SlotPage same = rp::SlotPage::attach(fd2, 4, 64);
  ring::Writer w = same.ring_writer();
  ring::Reader r = small.ring_reader();
  ASSERT_TRUE(w.put("shared"));
  EXPECT_EQ(take_all(r), "shared") << "two mappings of one page share the ring";
}

TEST(AnswerRing, APageWithoutARingSendsEverythingByPipe) {
  Ends e(0);
  EXPECT_FALSE(e.w.attached());
  EXPECT_FALSE(e.r.attached());
  ASSERT_TRUE(e.send("frame"));
  EXPECT_EQ(e.pipe.writes, std::vector<std::string>{"frame"});
  EXPECT_TRUE(e.r.arm());
  EXPECT_EQ(take_all(e.r), "");
}

TEST(AnswerRing, ASpawnPayloadWithABadRingSizeIsRefused) {
  rp::SpawnConfig c;
  c.max_message = 1 << 20;
  c.slots = 4;
  for (const std::uint32_t bad : {std::uint32_t{1}, std::uint32_t{63}, rp::max_ring_bytes + 1}) {
    c.ring = bad;
    EXPECT_THROW(rp::decode_spawn(rp::encode_spawn(c)), keel::ProtocolError) << bad;
  }
  c.ring = rp::ring_bytes;
  EXPECT_EQ(rp::decode_spawn(rp::encode_spawn(c)).ring, rp::ring_bytes);
  c.ring = 0;
  EXPECT_EQ(rp::decode_spawn(rp::encode_spawn(c)).ring, 0u);
}

}  // namespace
