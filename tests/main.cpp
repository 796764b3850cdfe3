// The test binary's main: keel::bootstrap first (children that keel spawns are
// fresh images of this binary and must not run the tests), then GoogleTest
// with a listener that fails any test which leaves a child process (zombies
// included) or a file descriptor behind, and the per-test time limit
// (tests/support/watchdog.hpp).
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "keel/process/bootstrap.hpp"
#include "tests/support/watchdog.hpp"

namespace {

std::string fd_target(int fd) {
  char buf[512];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n < 0 ? std::string("?") : std::string(buf, static_cast<std::size_t>(n));
}

// This process's open fds and what each refers to (the directory stream used
// to list them is left out).
std::map<int, std::string> open_fds() {
  std::map<int, std::string> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    if (fd != own) fds.emplace(fd, fd_target(fd));
  }
  ::closedir(d);
  return fds;
}

struct Child {
  pid_t pid;
  char state;
  std::string comm;
};

// Every process whose parent is this one, zombies included (from /proc/<pid>/stat:
// "pid (comm) state ppid ...", where comm may itself hold spaces and parentheses).
std::vector<Child> child_processes() {
  std::vector<Child> out;
  const pid_t self = ::getpid();
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!f || !std::getline(f, line)) continue;  // it ended meanwhile
    const auto open = line.find('(');
    const auto close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = '?';
    long ppid = -1;
    if (!(rest >> state >> ppid) || ppid != self) continue;
    out.push_back(Child{static_cast<pid_t>(std::atol(e->d_name)), state, line.substr(open + 1, close - open - 1)});
  }
  ::closedir(d);
  return out;
}

class LeakListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override { fds_before_ = open_fds(); }

  // Runs before the result printer's OnTestEnd (end events go to listeners
  // in reverse order), so a failure added here shows in the test's result.
  void OnTestEnd(const ::testing::TestInfo&) override {
    const std::vector<Child> children = child_processes();
    if (!children.empty()) {
      std::ostringstream msg;
      msg << "the test left " << children.size() << " child process(es) behind:";
      for (const Child& c : children) msg << " pid " << c.pid << " (" << c.comm << ", state " << c.state << ")";
      ADD_FAILURE() << msg.str();
      // Clean up so that the next tests are judged on their own.
      for (const Child& c : children) {
        ::kill(c.pid, SIGKILL);
        while (::waitpid(c.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
    }
    const std::map<int, std::string> after = open_fds();
    std::ostringstream leaked;
    int count = 0;
    for (const auto& [fd, target] : after) {
      const auto it = fds_before_.find(fd);
      if (it == fds_before_.end() || it->second != target) {
        leaked << " fd " << fd << " -> " << target;
        ++count;
      }
    }
    if (count > 0) ADD_FAILURE() << "the test left " << count << " file descriptor(s) open:" << leaked.str();
  }

 private:
  std::map<int, std::string> fds_before_;
};

}  // namespace

int main(int argc, char** argv) {
  keel::bootstrap(argc, argv);  // in a child keel started, this never returns
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new LeakListener);
  if (auto* watchdog = keel::test::install_watchdog()) ::testing::UnitTest::GetInstance()->listeners().Append(watchdog);
  return RUN_ALL_TESTS();
}
