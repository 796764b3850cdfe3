// keel::Connection and keel::Pipe (Python's multiprocessing.Pipe): messages
// in order and whole, typed values through the codec, poll and recv
// timeouts, the size limit in both directions, malformed bytes on the raw
// socket (IPC-1: a ProtocolError, never a crash or hang), the peer closing
// (a clear error, no SIGPIPE), one-way pipes, and multi-MiB messages read
// concurrently.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/process/frame.hpp"
#include "keel/process/pipe.hpp"

using namespace std::chrono_literals;
using keel_test::hang_limit;

namespace {

// Writes raw bytes on a Connection's socket, bypassing its framing.
void write_raw(const keel::Connection& c, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(c.fileno(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string frame_of(std::string_view payload, std::uint8_t kind = keel::message_frame_kind) {
  std::string out;
  keel::append_frame(out, kind, 0, payload);
  return out;
}

// Cheap pseudo-random bytes (xorshift64*), different for each seed.
std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    const std::uint64_t v = x * 0x2545F4914F6CDD1Dull;
    std::memcpy(s.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return s;
}

TEST(Pipe, MessagesArriveWholeAndInOrder) {
  keel::Pipe p;
  std::vector<std::string> sent;
  for (int i = 0; i < 200; ++i) sent.push_back(std::string(static_cast<std::size_t>(i % 17) * 11, char('a' + i % 26)));
  for (const auto& m : sent) p.first.send_bytes(m);
  for (const auto& m : sent) EXPECT_EQ(p.second.recv_bytes(hang_limit), m);
  // And the other way: the pipe is duplex.
  p.second.send_bytes("back");
  EXPECT_EQ(p.first.recv_bytes(), "back");
}

// A process started with stdin closed gets fd 0 from its next socket: that
// Connection is open like any other (fd 0 is a valid descriptor).
TEST(Pipe, AConnectionOnFdZeroIsOpenAndWorks) {
  const int code = keel_test::exit_code_in_child([] {
    ::close(0);
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 2;
    if (sv[0] != 0) return 3;
    keel::Connection a(sv[0]);
    keel::Connection b(sv[1]);
    if (a.closed() || a.fileno() != 0) return 4;
    a.send_bytes("from fd 0");
    if (b.recv_bytes() != "from fd 0") return 5;
    b.send_bytes("to fd 0");
    if (a.recv_bytes() != "to fd 0") return 6;
    a.close();
    return a.closed() ? 0 : 7;
  });
  EXPECT_EQ(code, 0);
}

TEST(Pipe, TypedValuesGoThroughTheCodec) {
  keel::Pipe p;
  p.first.send(std::vector<std::int64_t>{1, -2, 3});
  p.first.send(std::string("text"));
  p.first.send(std::int32_t{5});
  EXPECT_EQ(p.second.recv<std::vector<std::int64_t>>(), (std::vector<std::int64_t>{1, -2, 3}));
  EXPECT_EQ(p.second.recv<std::string>(hang_limit), "text");
  EXPECT_THROW(p.second.recv<std::int64_t>(), keel::ProtocolError);  // 4 bytes are not an int64
}

TEST(Pipe, MessagesSplitIntoSingleBytesArriveWhole) {
  keel::Pipe p;
  const std::string bytes = frame_of("assembled from pieces");
  std::thread writer([&] {
    for (char c : bytes) {
      write_raw(p.first, std::string_view(&c, 1));
      std::this_thread::sleep_for(100us);
    }
  });
  EXPECT_EQ(p.second.recv_bytes(hang_limit), "assembled from pieces");
  writer.join();
}

TEST(Pipe, PollWaitsUpToItsTimeout) {
  keel::Pipe p;
  EXPECT_FALSE(p.second.poll());
  const keel_test::Stopwatch sw;
  EXPECT_FALSE(p.second.poll(20ms));
  EXPECT_GE(sw.elapsed(), 20ms);
  p.first.send_bytes("x");
  EXPECT_TRUE(p.second.poll(hang_limit));
  EXPECT_TRUE(p.second.poll());  // still there until received
  EXPECT_EQ(p.second.recv_bytes(0ms), "x");
  EXPECT_FALSE(p.second.poll());
}

TEST(Pipe, PollIsFalseForAPartialMessage) {
  keel::Pipe p;
  const std::string bytes = frame_of("half and half");
  write_raw(p.first, std::string_view(bytes).substr(0, 10));
  EXPECT_FALSE(p.second.poll(20ms));
  write_raw(p.first, std::string_view(bytes).substr(10));
  EXPECT_TRUE(p.second.poll(hang_limit));
  EXPECT_EQ(p.second.recv_bytes(), "half and half");
}

TEST(Pipe, RecvTimesOutAndKeepsAPartialMessage) {
  keel::Pipe p;
  const keel_test::Stopwatch sw;
  EXPECT_THROW(p.second.recv_bytes(20ms), keel::TimeoutError);
  EXPECT_GE(sw.elapsed(), 20ms);
  const std::string bytes = frame_of("later");
  write_raw(p.first, std::string_view(bytes).substr(0, 5));
  EXPECT_THROW(p.second.recv_bytes(10ms), keel::TimeoutError);
  write_raw(p.first, std::string_view(bytes).substr(5));
  EXPECT_EQ(p.second.recv_bytes(hang_limit), "later");
}

TEST(Pipe, OversizedSendIsRefusedAndNothingIsSent) {
  keel::Pipe p(keel::PipeOptions{.max_message = 1024});
  EXPECT_EQ(p.first.max_message(), 1024u);
  EXPECT_THROW(p.first.send_bytes(std::string(1025, 'x')), keel::ProtocolError);
  EXPECT_FALSE(p.second.poll(10ms));
  p.first.send_bytes(std::string(1024, 'y'));  // the limit itself is fine
  EXPECT_EQ(p.second.recv_bytes(hang_limit), std::string(1024, 'y'));
}

TEST(Pipe, OversizedIncomingFrameIsAProtocolError) {
  keel::Pipe p(keel::PipeOptions{.max_message = 1024});
  write_raw(p.first, frame_of(std::string(2000, 'x')));
  EXPECT_THROW(p.second.recv_bytes(hang_limit), keel::ProtocolError);
  EXPECT_THROW(p.second.recv_bytes(hang_limit), keel::ProtocolError);  // and stays failed
}

TEST(Pipe, AHugeClaimedLengthAllocatesNothingAndFails) {
  keel::Pipe p;  // default limit: 64 MiB
  std::string header = frame_of("");
  header[4] = header[5] = header[6] = header[7] = '\xff';  // length 4 GiB - 1
  write_raw(p.first, header);
  EXPECT_THROW(p.second.recv_bytes(hang_limit), keel::ProtocolError);
}

TEST(Pipe, GarbageBytesAreAProtocolError) {
  keel::Pipe p;
  write_raw(p.first, "this is not a keel frame at all, just text");
  EXPECT_THROW(p.second.poll(hang_limit), keel::ProtocolError);
  EXPECT_THROW(p.second.recv_bytes(hang_limit), keel::ProtocolError);
}

TEST(Pipe, AFrameOfAnotherKindIsAProtocolError) {
  keel::Pipe p;
  write_raw(p.first, frame_of("x", 9));
  p.first.send_bytes("next");
  EXPECT_THROW(p.second.recv_bytes(hang_limit), keel::ProtocolError);
  EXPECT_EQ(p.second.recv_bytes(hang_limit), "next");
}

TEST(Pipe, PeerClosedIsAClearErrorNotASignal) {
  keel::Pipe p;
  p.first.send_bytes("last words");
  p.first.close();
  EXPECT_EQ(p.second.recv_bytes(hang_limit), "last words");  // what was sent still arrives
  EXPECT_TRUE(p.second.poll(hang_limit));                    // recv will not block: it reports the end
  try {
    p.second.recv_bytes(hang_limit);
    ADD_FAILURE() << "recv after the peer closed must throw";
  } catch (const keel::OsError& e) {
    EXPECT_EQ(e.code(), EPIPE);
    EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos);
  }
  // Sending to a closed peer: OsError(EPIPE), and no SIGPIPE kills the test.
  try {
    p.second.send_bytes(std::string(1 << 20, 'x'));
    ADD_FAILURE() << "send after the peer closed must throw";
  } catch (const keel::OsError& e) {
    EXPECT_EQ(e.code(), EPIPE);
  }
  // A send refused before its first byte left no message half-sent: the
  // next one is refused for the same reason, not as a broken stream.
  try {
    p.second.send_bytes("again");
    ADD_FAILURE() << "send after the peer closed must throw";
  } catch (const keel::OsError& e) {
    EXPECT_EQ(e.code(), EPIPE);
    EXPECT_NE(std::string(e.what()).find("the peer closed the connection"), std::string::npos) << e.what();
  }
}

TEST(Pipe, PeerClosingInsideAMessageIsAProtocolError) {
  keel::Pipe p;
  const std::string bytes = frame_of("cut short");
  write_raw(p.first, std::string_view(bytes).substr(0, bytes.size() - 2));
  p.first.close();
  EXPECT_THROW(p.second.recv_bytes(hang_limit), keel::ProtocolError);
}

TEST(Pipe, ATimedSendWithNoReaderTimesOut) {
  keel::Pipe p;
  // A message far larger than the socket buffer: part of it leaves, then the
  // send times out and the stream can no longer carry messages.
  const keel_test::Stopwatch sw;
  EXPECT_THROW(p.first.send_bytes(std::string(8 << 20, 'x'), 20ms), keel::TimeoutError);
  EXPECT_GE(sw.elapsed(), 20ms);
  EXPECT_THROW(p.first.send_bytes("more"), keel::OsError);

  // With the buffer already full, nothing of the next message leaves: the
  // connection stays usable and times out again instead of failing.
  keel::Pipe q;
  const std::string chunk(64 << 10, 'f');
  while (::send(q.first.fileno(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
  }
  EXPECT_THROW(q.first.send_bytes("small", 10ms), keel::TimeoutError);
  EXPECT_THROW(q.first.send_bytes("small", 10ms), keel::TimeoutError);
}

TEST(Pipe, OneWayPipeSendsFromSecondToFirstOnly) {
  keel::Pipe p(false);
  EXPECT_TRUE(p.first.readable());
  EXPECT_FALSE(p.first.writable());
  EXPECT_FALSE(p.second.readable());
  EXPECT_TRUE(p.second.writable());
  EXPECT_THROW(p.first.send_bytes("x"), keel::MisuseError);
  EXPECT_THROW(p.second.recv_bytes(), keel::MisuseError);
  EXPECT_THROW(p.second.poll(), keel::MisuseError);
  p.second.send_bytes("one way");
  EXPECT_EQ(p.first.recv_bytes(hang_limit), "one way");
}

TEST(Pipe, AClosedOrMovedFromConnectionIsMisuse) {
  keel::Pipe p;
  keel::Connection moved = std::move(p.first);
  EXPECT_TRUE(p.first.closed());
  EXPECT_EQ(p.first.fileno(), -1);
  EXPECT_THROW(p.first.send_bytes("x"), keel::MisuseError);
  EXPECT_THROW(p.first.recv_bytes(), keel::MisuseError);
  moved.send_bytes("still works");
  EXPECT_EQ(p.second.recv_bytes(hang_limit), "still works");
  moved.close();
  moved.close();  // idempotent
  EXPECT_THROW(moved.poll(), keel::MisuseError);
  keel::Connection none;
  EXPECT_TRUE(none.closed());
}

TEST(Pipe, ConnectionAdoptsOnlyStreamSockets) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  EXPECT_THROW(keel::Connection c(fds[0]), keel::ValueError);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_THROW(keel::Connection c(-1), keel::ValueError);
  int dg[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg), 0);
  EXPECT_THROW(keel::Connection c(dg[0]), keel::ValueError);
  ::close(dg[0]);
  ::close(dg[1]);
}

TEST(Pipe, EveryFdIsCloseOnExec) {
  keel::Pipe p;
  EXPECT_NE(::fcntl(p.first.fileno(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(::fcntl(p.second.fileno(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(Pipe, LargeMessagesWhileThePeerReadsConcurrently) {
  keel::Pipe p;
  const std::vector<std::size_t> sizes = {4u << 20, 1, 8u << 20, 0, 3u << 20};
  std::vector<std::string> received;
  std::thread reader([&] {
    for (std::size_t i = 0; i < sizes.size(); ++i) received.push_back(p.second.recv_bytes(hang_limit));
  });
  for (std::size_t i = 0; i < sizes.size(); ++i)
    p.first.send_bytes(random_bytes(sizes[i], static_cast<std::uint32_t>(i)));
  reader.join();
  ASSERT_EQ(received.size(), sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_TRUE(received[i] == random_bytes(sizes[i], static_cast<std::uint32_t>(i))) << "message " << i;
  }
}

TEST(Pipe, OneThreadSendsWhileAnotherReceivesOnEachEnd) {
  keel::Pipe p;
  const std::string big = random_bytes(2u << 20, 7);
  std::string at_second, at_first;
  {
    keel_test::Threads threads;
    threads.spawn([&] { p.first.send_bytes(big); });
    threads.spawn([&] { p.second.send_bytes(big); });
    threads.spawn([&] { at_first = p.first.recv_bytes(hang_limit); });
    threads.spawn([&] { at_second = p.second.recv_bytes(hang_limit); });
  }
  EXPECT_TRUE(at_first == big);
  EXPECT_TRUE(at_second == big);
}

}  // namespace
