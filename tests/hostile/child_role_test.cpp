// Hostile callers against keel's child roles (SEC-1, SEC-2): KEEL_CHILD and
// forged fds, set up exactly as an attacker would, against this very binary
// and (as root) against a setuid-root copy of it run as nobody. Each forgery
// differs from one that passes in a single point, so each refusal is pinned to
// its own check; the refusal's exit status (refused_child_status) and its
// stderr line are asserted, and the role (which writes a file chosen by its
// payload) must not have run. Normal spawns still run their role.
//
// Process shapes. The test process T forks an attacker A (which may drop to
// nobody); either A execs the target itself (its parent is then T), or A forks
// B, which execs it (its parent is then A). The hello is written by the
// target's parent, the hello socket made by whoever the case names. Between
// fork and exec only async-signal-safe calls are made: everything is built
// before the fork.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "keel/error.hpp"
#include "keel/process/child.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "tests/support/test_support.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace hs = keel::detail::handshake;
using keel::detail::refused_child_status;
using keel_test::hang_limit;

constexpr const char* write_role = "hostile-test.write-file";
constexpr int role_ran = 42;  // the write role's status when it wrote its file

// The role an attacker wants to run: its payload is "<path>\n<content>", and it
// creates that file. Any file it leaves behind shows that it ran.
int write_file_role(const keel::detail::ChildContext& ctx) {
  const auto nl = ctx.payload.find('\n');
  if (nl == std::string::npos) return 2;
  const std::string path = ctx.payload.substr(0, nl);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return 3;
  const std::string content = ctx.payload.substr(nl + 1);
  const bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  return ok ? role_ran : 4;
}

constexpr const char* exit_role = "hostile-test.exit-43";
int exit_role_fn(const keel::detail::ChildContext&) { return 43; }

const bool roles_registered = [] {
  keel::detail::register_child_role(write_role, &write_file_role);
  keel::detail::register_child_role(exit_role, &exit_role_fn);
  return true;
}();

class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// A fresh directory, removed with its contents at scope exit. Mode 0755, so
// that nobody can enter it but not write in it.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = "/tmp") {
    std::string tmpl = parent + "/keel-hostile-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
      ::chmod(path_.c_str(), 0755);
    }
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Reaps one child with a bounded wait; kills and reaps it at scope exit if it
// is still there (a test that failed early leaves no process behind).
class Reaper {
 public:
  explicit Reaper(pid_t pid) : pid_(pid) {}
  ~Reaper() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  // Its exit status; -1 if a signal ended it or it still runs after hang_limit.
  int wait() {
    const auto end = std::chrono::steady_clock::now() + hang_limit;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if ((r < 0 && errno != EINTR) || std::chrono::steady_clock::now() >= end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

 private:
  pid_t pid_;
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string this_binary() { return fs::read_symlink("/proc/self/exe").string(); }

constexpr std::array<char, hs::nonce_bytes> nonce_a{'n', 'o', 'n', 'c', 'e', '-', 'o', 'f',
                                                    '-', 't', 'h', 'e', '-', 'f', 'd', '!'};
constexpr std::array<char, hs::nonce_bytes> nonce_b{'a', 'n', 'o', 't', 'h', 'e', 'r', '-',
                                                    'n', 'o', 'n', 'c', 'e', '.', '.', '.'};
// nonce_a but for its last byte: a comparison that stops one byte short takes it.
constexpr std::array<char, hs::nonce_bytes> nonce_a_last{'n', 'o', 'n', 'c', 'e', '-', 'o', 'f',
                                                         '-', 't', 'h', 'e', '-', 'f', 'd', '?'};

enum class PayloadKind { regular_file, pipe, memfd, sealed_memfd };
enum class Channel {
  none,       // nothing at the hello slot
  pipe,       // a pipe at the hello slot
  by_parent,  // a socketpair made by the target's parent
  by_test,    // a socketpair made by the test process (the target's grandparent when exec_in_b)
};
enum class Hello {
  right,
  wrong_pid,
  wrong_nonce,
  wrong_last_nonce_byte,
  silent,
  in_two_pieces,  // right, but its last byte sent 50 ms after the rest
  cut_short,      // all but its last byte, then the channel closes
};

struct Attack {
  std::string program;  // the image to exec
  std::string role_payload;
  std::string tag = std::string("0,0,") + write_role;
  PayloadKind payload = PayloadKind::regular_file;
  bool header = false;  // the payload starts with the handshake header (magic, nonce_a)
  Channel channel = Channel::none;
  Hello hello = Hello::right;
  bool as_nobody = false;
  bool exec_in_b = true;  // the target is the attacker's child B (else the attacker A itself)
  // A daemon's lifeline pipe at the slot after the hello channel, which its
  // parent (A, exec_in_b only) closes 200 ms after the hello: a parent that
  // dies while the hello is under way.
  bool late_lifeline = false;
  std::vector<std::string> args{"--gtest_filter=-*"};  // if main() ever ran: no tests
};

struct Outcome {
  int status = -1;     // the target's exit status (-1: did not exit in time)
  std::string output;  // its stderr (and stdout)
};

struct Nobody {
  uid_t uid;
  gid_t gid;
};
std::optional<Nobody> nobody() {
  const passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr) return std::nullopt;
  return Nobody{pw->pw_uid, pw->pw_gid};
}

// The environment of the target: ours without KEEL_CHILD and GTEST_* (a
// target that ran main() must not write our test reports), plus `extra`.
std::vector<std::string> target_env(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view v(*e);
    if (v.starts_with("KEEL_CHILD=") || v.starts_with("GTEST_")) continue;
    env.emplace_back(v);
  }
  for (const std::string& x : extra) env.push_back(x);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& v) {
  std::vector<char*> p;
  for (std::string& s : v) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

Fd make_payload_fd(PayloadKind kind, const std::string& bytes, const std::string& dir) {
  switch (kind) {
    case PayloadKind::regular_file: {
      const std::string path = dir + "/payload";
      ::unlink(path.c_str());
      {
        std::ofstream f(path, std::ios::binary);
        f << bytes;
      }
      return Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    }
    case PayloadKind::pipe: {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) return Fd();
      Fd r(p[0]), w(p[1]);
      if (::write(w.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) return Fd();
      return r;
    }
    case PayloadKind::memfd:
    case PayloadKind::sealed_memfd: {
      Fd m(static_cast<int>(::memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
      if (m.get() < 0 || ::write(m.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        return Fd();
      if (::lseek(m.get(), 0, SEEK_SET) != 0) return Fd();  // as a careful attacker would
      if (kind == PayloadKind::sealed_memfd &&
          ::fcntl(m.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
        return Fd();
      return m;
    }
  }
  return Fd();
}

// Sends a hello naming `pid` (async-signal-safe: the buffer is built before
// the fork); split: all but its last byte, then that byte 50 ms later.
void send_hello(int fd, std::array<char, hs::hello_bytes>& m, pid_t pid, bool split = false, bool cut = false) {
  const auto p = static_cast<std::int32_t>(pid);
  std::memcpy(m.data() + hs::magic_bytes, &p, sizeof p);
  std::size_t sent = 0;
  while (sent < m.size() - (cut ? 1 : 0)) {
    const std::size_t piece = (split || cut) && sent < m.size() - 1 ? m.size() - 1 - sent : m.size() - sent;
    if (split && sent == m.size() - 1) ::usleep(50000);
    const ssize_t r = ::send(fd, m.data() + sent, piece, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;
    sent += static_cast<std::size_t>(r);
  }
}

// In the target, before exec: the payload at 3, the hello end (if any) at 4,
// a lifeline (if any, after a hello end) at 5, output at 1 and 2, nothing
// else above 2.
[[noreturn]] void exec_target(const char* program, char** argv, char** envp, int payload, int hello, int out,
                              int lifeline = -1) {
  const int p = ::fcntl(payload, F_DUPFD, 100);
  const int h = hello >= 0 ? ::fcntl(hello, F_DUPFD, 100) : -1;
  const int l = hello >= 0 && lifeline >= 0 ? ::fcntl(lifeline, F_DUPFD, 100) : -1;
  if (p < 0 || (hello >= 0 && h < 0) || (lifeline >= 0 && l < 0)) ::_exit(121);
  if (::dup2(out, 1) < 0 || ::dup2(out, 2) < 0 || ::dup2(p, 3) < 0) ::_exit(122);
  if (h >= 0 && ::dup2(h, 4) < 0) ::_exit(122);
  if (l >= 0 && ::dup2(l, 5) < 0) ::_exit(122);
  ::syscall(SYS_close_range, l >= 0 ? 6u : h >= 0 ? 5u : 4u, ~0u, 0u);
  ::execve(program, argv, envp);
  ::_exit(126);
}

Outcome run_attack(const Attack& a, const std::string& dir) {
  Outcome out;
  std::string bytes;
  if (a.header) {
    bytes.append(hs::payload_magic, hs::magic_bytes);
    bytes.append(nonce_a.data(), nonce_a.size());
  }
  bytes += a.role_payload;
  Fd payload = make_payload_fd(a.payload, bytes, dir);
  EXPECT_GE(payload.get(), 0) << "cannot make the forged payload";
  if (payload.get() < 0) return out;

  std::array<char, hs::hello_bytes> hello{};
  std::memcpy(hello.data(), hs::hello_magic, hs::magic_bytes);
  const auto& nonce = a.hello == Hello::wrong_nonce             ? nonce_b
                      : a.hello == Hello::wrong_last_nonce_byte ? nonce_a_last
                                                                : nonce_a;
  std::memcpy(hello.data() + hs::magic_bytes + 4, nonce.data(), nonce.size());

  // Made here before the fork: a pipe at the hello slot, or the test process's socketpair.
  Fd test_end, target_end;
  if (a.channel == Channel::pipe) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return out;
    target_end.reset(p[0]);
    test_end.reset(p[1]);
  } else if (a.channel == Channel::by_test || (a.channel == Channel::by_parent && !a.exec_in_b)) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return out;
    test_end.reset(sv[0]);
    target_end.reset(sv[1]);
  }
  const bool a_makes_socket = a.channel == Channel::by_parent && a.exec_in_b;
  const bool a_writes_hello = a.exec_in_b && (a.channel == Channel::by_parent || a.channel == Channel::by_test);
  const bool test_writes_hello = !a.exec_in_b && (a.channel == Channel::by_test || a.channel == Channel::by_parent);

  std::optional<Nobody> who;
  if (a.as_nobody) {
    who = nobody();
    EXPECT_TRUE(who.has_value()) << "no user nobody";
    if (!who) return out;
  }

  int o[2];
  if (::pipe2(o, O_CLOEXEC) != 0) return out;
  Fd out_r(o[0]), out_w(o[1]);

  std::vector<std::string> argv_s{"keel-hostile-target"};
  argv_s.insert(argv_s.end(), a.args.begin(), a.args.end());
  std::vector<std::string> env_s =
      target_env(a.tag.empty() ? std::vector<std::string>{} : std::vector<std::string>{"KEEL_CHILD=" + a.tag});
  std::vector<char*> argv = pointers(argv_s);
  std::vector<char*> envp = pointers(env_s);
  const char* program = a.program.c_str();

  std::fflush(nullptr);
  const pid_t attacker = ::fork();
  if (attacker == 0) {
    if (who && (::setgroups(0, nullptr) != 0 || ::setgid(who->gid) != 0 || ::setuid(who->uid) != 0)) ::_exit(120);
    if (!a.exec_in_b) exec_target(program, argv.data(), envp.data(), payload.get(), target_end.get(), out_w.get());
    int mine = a_writes_hello ? test_end.get() : -1;
    int theirs = target_end.get();
    if (a_makes_socket) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) ::_exit(123);
      mine = sv[0];
      theirs = sv[1];
    }
    int lifeline[2] = {-1, -1};
    if (a.late_lifeline && ::pipe2(lifeline, O_CLOEXEC) != 0) ::_exit(123);
    const pid_t b = ::fork();
    if (b < 0) ::_exit(124);
    if (b == 0) exec_target(program, argv.data(), envp.data(), payload.get(), theirs, out_w.get(), lifeline[0]);
    ::close(out_w.get());
    if (theirs >= 0) ::close(theirs);
    if (lifeline[0] >= 0) ::close(lifeline[0]);
    if (mine >= 0) {
      if (a.hello != Hello::silent)
        send_hello(mine, hello, a.hello == Hello::wrong_pid ? ::getpid() : b, a.hello == Hello::in_two_pieces,
                   a.hello == Hello::cut_short);
      if (a.hello != Hello::silent) ::close(mine);
    }
    if (lifeline[1] >= 0) {
      ::usleep(200000);
      ::close(lifeline[1]);
    }
    int status = 0;
    while (::waitpid(b, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125);
  }
  EXPECT_GT(attacker, 0) << "fork: " << std::strerror(errno);
  if (attacker < 0) return out;
  Reaper reaper(attacker);
  out_w.reset();
  target_end.reset();
  if (test_writes_hello && a.hello != Hello::silent)
    send_hello(test_end.get(), hello, a.hello == Hello::wrong_pid ? ::getpid() : attacker);
  if (a.hello != Hello::silent) test_end.reset();

  // Everything the target writes, until every writer is gone (bounded).
  const auto deadline = std::chrono::steady_clock::now() + hang_limit;
  char buf[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out_r.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(out_r.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.output.append(buf, static_cast<std::size_t>(n));
  }
  out.status = reaper.wait();
  return out;
}

// The same user forges KEEL_CHILD and the fds.
class HostileChildRole : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()) << "mkdtemp: " << std::strerror(errno); }

  // An attack on this binary whose role would create `target()`.
  Attack attack() const { return Attack{.program = this_binary(), .role_payload = target() + "\nowned"}; }
  std::string target() const { return dir_.path() + "/written-by-the-role"; }

  // The attack was refused for `reason`, and the role did not run.
  void expect_refused(const Attack& a, const std::string& reason) {
    ::unlink(target().c_str());  // each attack is judged on its own
    const Outcome o = run_attack(a, dir_.path());
    EXPECT_EQ(o.status, refused_child_status) << o.output;
    EXPECT_NE(o.output.find("keel: refusing to run as a keel child: " + reason), std::string::npos) << o.output;
    EXPECT_FALSE(exists(target())) << "the role ran";
  }

  TempDir dir_;
};

TEST_F(HostileChildRole, TheEnvironmentWithAForgedPayloadAloneRunsNoRole) {
  // The attack: KEEL_CHILD plus a payload on fd 3, in every kind of fd.
  for (const auto kind :
       {PayloadKind::regular_file, PayloadKind::pipe, PayloadKind::memfd, PayloadKind::sealed_memfd}) {
    SCOPED_TRACE(static_cast<int>(kind));
    Attack a = attack();
    a.payload = kind;
    a.header = kind == PayloadKind::sealed_memfd;
    expect_refused(a, "no hello channel at its fd");
  }
}

TEST_F(HostileChildRole, AHelloChannelThatIsNoSocketIsRefused) {
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::pipe;
  expect_refused(a, "the hello channel is not a socket");
}

TEST_F(HostileChildRole, AHelloSocketMadeByAnotherProcessThanTheParentIsRefused) {
  // Made by the test process, the target's grandparent; its parent writes a correct hello.
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_test;
  expect_refused(a, "the hello channel was not made by the parent process");
}

TEST_F(HostileChildRole, AHelloWithAnotherNonceThanThePayloadIsRefused) {
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::wrong_nonce;
  expect_refused(a, "the payload's nonce is not the hello's");
}

TEST_F(HostileChildRole, AHelloWhoseNonceDiffersOnlyInItsLastByteIsRefused) {
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::wrong_last_nonce_byte;
  expect_refused(a, "the payload's nonce is not the hello's");
}

TEST_F(HostileChildRole, AHelloNamingAnotherProcessIsRefused) {
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::wrong_pid;
  expect_refused(a, "the hello names another process");
}

TEST_F(HostileChildRole, AnUnsealedPayloadIsRefused) {
  for (const auto kind : {PayloadKind::memfd, PayloadKind::regular_file, PayloadKind::pipe}) {
    SCOPED_TRACE(static_cast<int>(kind));
    Attack a = attack();
    a.payload = kind;
    a.header = true;
    a.channel = Channel::by_parent;
    expect_refused(a, "the payload is not a sealed memfd");
  }
}

TEST_F(HostileChildRole, ASilentHelloPeerIsRefusedAfterABoundedWait) {
  // The parent holds the socket open and never writes: the child gives up
  // after hello_timeout instead of waiting for ever.
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::silent;
  expect_refused(a, "no hello from the parent in time");
}

TEST_F(HostileChildRole, AMalformedChildTagIsRefusedAndTheLargestFdCountIsNot) {
  // "<fds>,<daemon>,<role>" with 0 to 4096 fds: anything else leaves with
  // status 127 before a descriptor is touched. 4096 itself parses, and fails
  // the handshake (nothing at its hello slot, fd 4100).
  for (const std::string& tag :
       {std::string("4097,0,") + write_role, std::string("-1,0,") + write_role, std::string("x,0,") + write_role,
        std::string("0,2,") + write_role, std::string("0"), std::string("0,1")}) {
    SCOPED_TRACE(tag);
    ::unlink(target().c_str());
    Attack a = attack();
    a.tag = tag;
    const Outcome o = run_attack(a, dir_.path());
    EXPECT_EQ(o.status, 127) << o.output;
    EXPECT_NE(o.output.find("keel child: malformed KEEL_CHILD=" + tag), std::string::npos) << o.output;
    EXPECT_FALSE(exists(target())) << "the role ran";
  }
  Attack a = attack();
  a.tag = std::string("4096,0,") + write_role;
  expect_refused(a, "no hello channel at its fd");
}

TEST_F(HostileChildRole, AHelloCutShortIsRefusedAsSuch) {
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::cut_short;
  expect_refused(a, "the hello channel closed before a whole hello");
}

TEST_F(HostileChildRole, ADaemonWhoseParentDiesDuringTheHelloLeavesWithStatusOneOnceItsLifelineHangsUp) {
  // What a real parent's death looks like: the hello cut short, then (a
  // moment later, as a multi-threaded parent's exit may come) its lifeline
  // hangs up. The daemon leaves as its lifeline watcher would have: status
  // 1, no refusal, no role.
  Attack a = attack();
  a.tag = std::string("0,1,") + write_role;
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::cut_short;
  a.late_lifeline = true;
  const Outcome o = run_attack(a, dir_.path());
  EXPECT_EQ(o.status, 1) << o.output;
  EXPECT_EQ(o.output.find("refusing"), std::string::npos) << o.output;
  EXPECT_FALSE(exists(target())) << "the role ran";
  // Without a lifeline that hangs up, the same cut is a refusal.
  a.late_lifeline = false;
  expect_refused(a, "the hello channel closed before a whole hello");
}

TEST_F(HostileChildRole, AForgerThatIsTheParentAndGetsEverythingRightIsAccepted) {
  // The baseline every refusal above differs from in one point. A parent of
  // the same user that chooses the child's fds can pass: it could as well
  // ptrace the child. (Shows that the forgeries are faithful, not that this
  // is an attack.)
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  const Outcome o = run_attack(a, dir_.path());
  EXPECT_EQ(o.status, role_ran) << o.output;
  EXPECT_EQ(read_file(target()), "owned");
}

TEST_F(HostileChildRole, AHelloThatArrivesInTwoPiecesIsReadWhole) {
  Attack a = attack();
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  a.hello = Hello::in_two_pieces;
  const Outcome o = run_attack(a, dir_.path());
  EXPECT_EQ(o.status, role_ran) << o.output;
  EXPECT_EQ(read_file(target()), "owned");
}

TEST_F(HostileChildRole, ANormalSpawnStillRunsItsRoleAndReturnsItsStatus) {
  int n = 0;
  for (const bool daemon : {false, true}) {
    for (const auto how : {keel::detail::StartMethod::spawn, keel::detail::StartMethod::fork}) {
      // TSan cannot start threads in a child forked from a multi-threaded
      // process (the child's lifeline watcher); fork is tested in the other builds.
      if (KEEL_TEST_TSAN && how == keel::detail::StartMethod::fork) continue;
      const std::string path = dir_.path() + "/normal-" + std::to_string(n++);
      keel::detail::ChildHandle h = keel::detail::spawn_child(
          {.role = write_role, .fds = {}, .daemon = daemon, .start = how, .payload = path + "\nfrom a real spawn"});
      Reaper reaper(h.pid);
      EXPECT_EQ(reaper.wait(), role_ran);
      if (h.pidfd >= 0) ::close(h.pidfd);
      EXPECT_EQ(read_file(path), "from a real spawn");
    }
  }
}

// Root makes a setuid- and setgid-root copy of this binary and attacks it as nobody.
class HostileChildRoleRoot : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    // A directory on a filesystem that honours setuid bits and allows exec.
    for (const char* parent : {"/tmp", "/var/tmp", "/dev/shm"}) {
      struct statvfs v {};
      if (::statvfs(parent, &v) != 0 || (v.f_flag & (ST_NOSUID | ST_NOEXEC)) != 0) continue;
      auto dir = std::make_unique<TempDir>(parent);
      if (!dir->ok()) continue;
      std::error_code ec;
      const std::string suid = dir->path() + "/keel-suid";
      const std::string plain = dir->path() + "/keel-plain";
      if (!fs::copy_file(this_binary(), suid, ec) || !fs::copy_file(this_binary(), plain, ec)) continue;
      // setuid and setgid root: the target's effective ids are then all root's.
      if (::chown(suid.c_str(), 0, 0) != 0 || ::chmod(suid.c_str(), 06755) != 0 || ::chmod(plain.c_str(), 0755) != 0)
        continue;
      dir_ = dir.release();
      return;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to make a setuid-root copy of this binary";
    if (!nobody()) GTEST_SKIP() << "needs a user named nobody";
    if (dir_ == nullptr)
      GTEST_SKIP() << "found no directory (/tmp, /var/tmp, /dev/shm) on a filesystem mounted without nosuid and "
                      "noexec to hold a setuid copy";
    ::unlink(target().c_str());
  }
  void TearDown() override { ::unlink(target().c_str()); }

  static std::string suid_copy() { return dir_->path() + "/keel-suid"; }
  static std::string plain_copy() { return dir_->path() + "/keel-plain"; }
  // Where the role would write: a root-owned directory that nobody cannot write in.
  static std::string target() { return dir_->path() + "/written-as-root"; }
  static Attack attack(const std::string& program) {
    return Attack{.program = program, .role_payload = target() + "\nowned", .as_nobody = true};
  }

  void expect_refused(const Attack& a, const std::string& reason) {
    ::unlink(target().c_str());  // each attack is judged on its own
    const Outcome o = run_attack(a, dir_->path());
    EXPECT_EQ(o.status, refused_child_status) << o.output;
    EXPECT_NE(o.output.find("keel: refusing to run as a keel child: " + reason), std::string::npos) << o.output;
    EXPECT_FALSE(exists(target())) << "the role ran, as root";
  }

  static TempDir* dir_;
};
TempDir* HostileChildRoleRoot::dir_ = nullptr;

const std::string secure_mode = "this program runs in secure-execution mode";

TEST_F(HostileChildRoleRoot, NobodyRunningASetuidCopyWithAForgedEnvironmentRunsNoRole) {
  // The exploit: as nobody, KEEL_CHILD and a payload in a file or a
  // pipe, then exec of the setuid-root copy.
  for (const auto kind : {PayloadKind::regular_file, PayloadKind::pipe}) {
    SCOPED_TRACE(static_cast<int>(kind));
    Attack a = attack(suid_copy());
    a.payload = kind;
    expect_refused(a, secure_mode);
  }
}

TEST_F(HostileChildRoleRoot, NobodyForgingTheWholeHandshakeForASetuidCopyIsRefused) {
  // Nobody makes the socket, the sealed payload and a correct hello itself.
  Attack a = attack(suid_copy());
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_parent;
  expect_refused(a, secure_mode);
}

TEST_F(HostileChildRoleRoot, SecureExecutionIsRefusedEvenWhenTheHandshakeChecksOut) {
  // The target's parent is the test process (root), which made the socket
  // and writes a correct hello: SO_PEERCRED names the parent under the
  // target's effective ids (root). Only secure-execution mode is wrong.
  Attack a = attack(suid_copy());
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_test;
  a.exec_in_b = false;
  expect_refused(a, secure_mode);
}

TEST_F(HostileChildRoleRoot, AHelloSocketMadeUnderAnotherUserIsRefused) {
  // No setuid: root's socket and hello, a target running as nobody.
  Attack a = attack(plain_copy());
  a.payload = PayloadKind::sealed_memfd;
  a.header = true;
  a.channel = Channel::by_test;
  a.exec_in_b = false;
  expect_refused(a, "the hello channel was made under another user or group");
}

TEST_F(HostileChildRoleRoot, ASecureExecutionParentSpawnsNoFreshImageButForks) {
  // Runs HostileChildRoleSecureParent in the setuid copy, as nobody.
  Attack a = attack(suid_copy());
  a.tag.clear();
  a.args = {"--gtest_filter=HostileChildRoleSecureParent.*", "--gtest_brief=0"};
  const Outcome o = run_attack(a, dir_->path());
  EXPECT_EQ(o.status, 0) << o.output;
  EXPECT_NE(o.output.find("[  PASSED  ] 1 test."), std::string::npos) << o.output;
  EXPECT_EQ(o.output.find("SKIPPED"), std::string::npos) << o.output;
}

// The check HostileChildRoleRoot.ASecureExecutionParentSpawnsNoFreshImageButForks
// runs inside the setuid copy. Registered only in secure-execution mode, so
// that it neither runs nor shows as skipped anywhere else.
class SecureParent : public ::testing::Test {
 public:
  void TestBody() override {
    ASSERT_TRUE(keel::detail::secure_execution());
    EXPECT_THROW(keel::detail::spawn_child({.role = exit_role}), keel::MisuseError);
    EXPECT_THROW(keel::ProcessPool({.workers = 1}), keel::MisuseError);
    keel::detail::ChildHandle h =
        keel::detail::spawn_child({.role = exit_role, .daemon = false, .start = keel::detail::StartMethod::fork});
    Reaper reaper(h.pid);
    EXPECT_EQ(reaper.wait(), 43);
    if (h.pidfd >= 0) ::close(h.pidfd);
  }
};
const bool secure_parent_registered =
    keel::detail::secure_execution() &&
    (::testing::RegisterTest("HostileChildRoleSecureParent", "SpawnIsMisuseForkStillWorks", nullptr, nullptr, __FILE__,
                             __LINE__, []() -> ::testing::Test* { return new SecureParent; }),
     true);

}  // namespace
