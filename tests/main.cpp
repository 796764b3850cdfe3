// The test binary's main: keel::bootstrap first (children that keel spawns are
// fresh images of this binary and must not run the tests), then GoogleTest
// with a listener that fails any test which leaves a child process (zombies
// included) or a file descriptor behind (the runner's own, such as TSan's
// symbolizer, started before the first test, do not count), and the per-test
// time limit (tests/support/watchdog.hpp).
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "keel/process/bootstrap.hpp"
#include "tests/support/test_support.hpp"
#include "tests/support/watchdog.hpp"

#if KEEL_TEST_TSAN  // test_support.hpp: 1 under ThreadSanitizer, else 0
#include <sanitizer/common_interface_defs.h>
#endif

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

// TSan starts llvm-symbolizer, a child process with two pipes that lives as
// long as the run, the first time it must name a frame: for a report, or to
// match a stack against tools/tsan.supp, which a suppressed report does in
// whichever test first meets it (CI saw it in a cluster test, whose worker
// failures share exception objects across threads). Starting it here, before
// any test, makes it part of every test's baseline instead of a leak charged
// to (and killed by) that test.
void warm_symbolizer() {
#if KEEL_TEST_TSAN
  char name[256];
  __sanitizer_symbolize_pc(reinterpret_cast<void*>(&warm_symbolizer), "%F", name, sizeof name);
#endif
  for (const keel_test::ChildProcess& c : keel_test::child_processes()) keel_test::runner_children().push_back(c.pid);
}

class LeakListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override { fds_before_ = open_fds(); }

  // Runs before the result printer's OnTestEnd (end events go to listeners
  // in reverse order), so a failure added here shows in the test's result.
  void OnTestEnd(const ::testing::TestInfo&) override {
    const std::vector<keel_test::ChildProcess> children = keel_test::child_processes();
    if (!children.empty()) {
      std::ostringstream msg;
      msg << "the test left " << children.size() << " child process(es) behind:";
      for (const keel_test::ChildProcess& c : children)
        msg << " pid " << c.pid << " (" << c.comm << ", state " << c.state << ")";
      ADD_FAILURE() << msg.str();
      // Clean up so that the next tests are judged on their own.
      for (const keel_test::ChildProcess& c : children) {
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
  warm_symbolizer();
  ::testing::UnitTest::GetInstance()->listeners().Append(new LeakListener);
  if (auto* watchdog = keel::test::install_watchdog()) ::testing::UnitTest::GetInstance()->listeners().Append(watchdog);
  return RUN_ALL_TESTS();
}
