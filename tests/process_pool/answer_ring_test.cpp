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
  rp::SlotPage page = rp::SlotPage::create(4, 64);
  ring::Writer w = page.ring_writer();
  ring::Reader r = page.ring_reader();
  FakePipe pipe;
  auto write = [&](std::string_view b) { return pipe.write(b); };
  r.disarm();  // the supervisor is awake: no bells in this test
  ASSERT_TRUE(ring::send(w, bytes_of('a', 10), "BELL", write));
  ASSERT_TRUE(ring::send(w, bytes_of('b', 100), "BELL", write));  // larger than the ring
  ASSERT_EQ(pipe.writes.size(), 1u);
  EXPECT_EQ(pipe.writes[0], bytes_of('b', 100));
  // A small batch now would be newer than an unhandled pipe frame: it goes
  // by pipe too, whatever room the ring has.
  ASSERT_TRUE(ring::send(w, bytes_of('c', 5), "BELL", write));
  ASSERT_EQ(pipe.writes.size(), 2u);
  EXPECT_EQ(pipe.writes[1], bytes_of('c', 5));
  // The supervisor: each pipe frame after the ring's bytes.
  std::string order;
  auto drain = [&] { order += take_all(r); };
  ring::on_pipe_frame(r, false, 100, drain, [&] { order += pipe.writes[0]; });
  ASSERT_TRUE(ring::send(w, bytes_of('x', 3), "BELL", write)) << "one pipe frame is still unhandled";
  EXPECT_EQ(pipe.writes.size(), 3u);
  ring::on_pipe_frame(r, false, 5, drain, [&] { order += pipe.writes[1]; });
  ring::on_pipe_frame(r, false, 3, drain, [&] { order += pipe.writes[2]; });
  // Every pipe frame handled: the ring again.
  ASSERT_TRUE(ring::send(w, bytes_of('d', 7), "BELL", write));
  EXPECT_EQ(pipe.writes.size(), 3u);
  drain();
  EXPECT_EQ(order, bytes_of('a', 10) + bytes_of('b', 100) + bytes_of('c', 5) + bytes_of('x', 3) + bytes_of('d', 7));
  // A bell read from the pipe counts for nothing.
  ring::on_pipe_frame(r, true, 16, drain, [&] { ADD_FAILURE() << "a bell is not handled"; });
  ASSERT_TRUE(ring::send(w, bytes_of('e', 2), "BELL", write));
  EXPECT_EQ(pipe.writes.size(), 3u);
}

TEST(AnswerRing, ABellIsClaimedOncePerArmAndOnlyWhenArmed) {
  rp::SlotPage page = rp::SlotPage::create(4, 256);
  ring::Writer w = page.ring_writer();
  ring::Reader r = page.ring_reader();
  FakePipe pipe;
  auto write = [&](std::string_view b) { return pipe.write(b); };
  // A fresh ring says the supervisor may be asleep: the first frame rings.
  ASSERT_TRUE(ring::send(w, "one", "BELL", write));
  ASSERT_TRUE(ring::send(w, "two", "BELL", write));
  ASSERT_EQ(pipe.writes, std::vector<std::string>{"BELL"});
  EXPECT_FALSE(r.arm()) << "six bytes wait: the supervisor must not sleep";
  EXPECT_EQ(take_all(r), "onetwo");
  EXPECT_TRUE(r.arm());
  ASSERT_TRUE(ring::send(w, "three", "BELL", write));
  ASSERT_TRUE(ring::send(w, "four", "BELL", write));
  EXPECT_EQ(pipe.writes, (std::vector<std::string>{"BELL", "BELL"})) << "one bell per sleep";
  r.disarm();
  ASSERT_TRUE(ring::send(w, "five", "BELL", write));
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
  rp::SlotPage page = rp::SlotPage::create(4);
  ring::Writer w = page.ring_writer();
  ring::Reader r = page.ring_reader();
  EXPECT_FALSE(w.attached());
  EXPECT_FALSE(r.attached());
  FakePipe pipe;
  ASSERT_TRUE(ring::send(w, "frame", "BELL", [&](std::string_view b) { return pipe.write(b); }));
  EXPECT_EQ(pipe.writes, std::vector<std::string>{"frame"});
  EXPECT_TRUE(r.arm());
  EXPECT_EQ(take_all(r), "");
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
