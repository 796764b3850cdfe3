// The spawn path's building blocks (kernel/src/process/child.cpp and
// Process::start), checked first in the process layer's run and each in a
// way that fails by name when it breaks: wait_fd's deadline, and a Process
// started (its nonce drawn, its connections handed over) in a forked child
// under a bounded wait, so a draw that never ends or a read past the
// connection list fails this test instead of hanging or crashing the suite.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "../support/test_support.hpp"
#include "keel/platform/clock.hpp"
#include "keel/process/child.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/process.hpp"

using namespace std::chrono_literals;

namespace {

void child_test_nothing() {}
const auto child_nothing = keel::register_task("child_test.nothing", child_test_nothing);

// Receives one message on connection 0 and sends it back.
void child_test_echo_once() {
  keel::Connection& c = keel::this_process::connection(0);
  c.send_bytes(c.recv_bytes());
}
const auto child_echo_once = keel::register_task("child_test.echo_once", child_test_echo_once);

// An AF_UNIX socket pair closed on scope exit.
struct ChildSocketPair {
  int fd[2] = {-1, -1};
  ChildSocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0); }
  ~ChildSocketPair() {
    for (const int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  ChildSocketPair(const ChildSocketPair&) = delete;
  ChildSocketPair& operator=(const ChildSocketPair&) = delete;
};

}  // namespace

// Connection::poll, recv and send, the hello wait and Process::join rest on
// wait_fd's answer: "ready" on a timeout sends them into a read that finds
// nothing and a wait that ends at once, for ever.
TEST(ChildPrimitives, WaitFdIsFalseAtItsDeadlineAndTrueOnceReady) {
  using keel::platform::Deadline;
  ChildSocketPair s;
  ASSERT_GE(s.fd[0], 0);
  EXPECT_FALSE(keel::detail::wait_fd(s.fd[1], POLLIN, Deadline::after(20ms)));
  EXPECT_FALSE(keel::detail::wait_fd(s.fd[1], POLLIN, Deadline::after(0ms)));  // an expired deadline checks once
  EXPECT_TRUE(keel::detail::wait_fd(s.fd[0], POLLOUT, Deadline::after(0ms)));
  ASSERT_EQ(::write(s.fd[0], "x", 1), 1);
  EXPECT_TRUE(keel::detail::wait_fd(s.fd[1], POLLIN, Deadline::after(0ms)));
  EXPECT_TRUE(keel::detail::wait_fd(s.fd[1], POLLIN, Deadline::never()));
  ::close(s.fd[0]);
  s.fd[0] = -1;
  char c = 0;
  ASSERT_EQ(::read(s.fd[1], &c, 1), 1);
  EXPECT_TRUE(keel::detail::wait_fd(s.fd[1], POLLIN, Deadline::after(20ms)));  // a hang-up counts as ready
}

// Starting a child draws its handshake nonce from getrandom and hands over
// its connections; both run here in a forked child that is given
// hang_limit to start two processes (one with no connection, one with one)
// and see them end with code 0.
TEST(ChildPrimitives, AProcessStartsWithAndWithoutConnectionsInABoundedChild) {
  if (KEEL_TEST_TSAN) GTEST_SKIP() << "ThreadSanitizer cannot run a forked child of a multi-threaded process";
  const int code = keel_test::exit_code_in_child_within(keel_test::hang_limit, [] {
    keel::Process bare(child_nothing);
    bare.start();
    if (!bare.join(keel_test::hang_limit) || bare.exitcode() != 0) return 2;
    keel::Pipe pipe;
    keel::Process echo(keel::ProcessOptions{.connections = {pipe.second}}, child_echo_once);
    echo.start();
    pipe.first.send_bytes("ping");
    if (pipe.first.recv_bytes(keel_test::hang_limit) != "ping") return 3;
    if (!echo.join(keel_test::hang_limit) || echo.exitcode() != 0) return 4;
    return 0;
  });
  EXPECT_EQ(code, 0) << "the child that starts two processes " << keel_test::child_outcome(code)
                     << " (2: the bare one failed, 3: no echo, 4: the echo child failed)";
}

// Starting a child looks its role up under the role table's lock, and a
// daemon's start opens the lifeline under another: a process forked while
// other threads looked roles up must still start a daemon child of its own.
TEST(ChildPrimitives, ForkWhileOtherThreadsFindRolesLeavesTheRoleTableUsableInTheChild) {
  if (KEEL_TEST_TSAN) GTEST_SKIP() << "ThreadSanitizer cannot run a forked child of a multi-threaded process";
  const int hung =
      keel_test::children_hung_while_forking([] { (void)keel::detail::find_child_role("child_test.nobody"); },
                                             [] {
                                               if (keel::detail::find_child_role("child_test.nobody") != nullptr)
                                                 return 2;
                                               keel::Process p(keel::ProcessOptions{.daemon = true}, child_nothing);
                                               p.start();
                                               return p.join(keel_test::hang_limit) && p.exitcode() == 0 ? 0 : 3;
                                             },
                                             keel_test::scaled(100, 10));
  EXPECT_EQ(hung, 0) << "a forked child hung on the child-role table's or the lifeline's lock";
}
