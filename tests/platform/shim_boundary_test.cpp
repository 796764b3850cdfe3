// PLAT-1: tools/check_shim.sh keeps kernel code behind the platform shim.
//
// The script passes on the real tree, fails on a fake tree whose kernel code
// (outside keel/platform/) includes a threading header or calls the futex
// syscall, and allows the same code inside the shim itself.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct ScriptResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

fs::path script() { return fs::path(KEEL_SOURCE_DIR) / "tools" / "check_shim.sh"; }

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

ScriptResult run_script(const fs::path& root, const fs::path& out_file) {
  const std::string cmd =
      quote(script().string()) + " " + quote(root.string()) + " >" + quote(out_file.string()) + " 2>&1";
  const int status = std::system(cmd.c_str());
  ScriptResult r;
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  std::ifstream in(out_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

// A scratch tree with a kernel/ directory, removed afterwards.
class FakeTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "keel-shim-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "tree";
    fs::create_directories(root_ / "kernel" / "include" / "keel" / "platform");
    fs::create_directories(root_ / "kernel" / "include" / "keel" / "sync");
    fs::create_directories(root_ / "kernel" / "src" / "platform");
    fs::create_directories(root_ / "kernel" / "src" / "sync");
    // Harmless content, as in the real tree.
    write("kernel/include/keel/sync/ok.hpp",
          "#pragma once\n#include <vector>\n#include \"keel/platform/atomic.hpp\"\n");
    write("kernel/src/sync/ok.cpp", "#include <string>\nint ok() { return 0; }\n");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& rel, const std::string& text) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  ScriptResult check() { return run_script(root_, dir_ / "out.txt"); }

  fs::path dir_;
  fs::path root_;
};

}  // namespace

TEST(ShimBoundary, RealTreePasses) {
  std::string tmpl = (fs::temp_directory_path() / "keel-shim-out-XXXXXX").string();
  const int fd = ::mkstemp(tmpl.data());
  ASSERT_GE(fd, 0);
  ::close(fd);
  const ScriptResult r = run_script(KEEL_SOURCE_DIR, tmpl);
  fs::remove(tmpl);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(FakeTree, CleanTreePasses) {
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(FakeTree, AtomicIncludeInSyncSourceFails) {
  write("kernel/src/sync/x.cpp", "#include <atomic>\nstd::atomic<int> a;\n");
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("kernel/src/sync/x.cpp"), std::string::npos) << r.output;
}

TEST_F(FakeTree, FutexSyscallInSyncSourceFails) {
  write("kernel/src/sync/x.cpp",
        "#include <sys/syscall.h>\n#include <unistd.h>\n"
        "long f(int* w) { return syscall(SYS_futex, w, 0, 0, nullptr, nullptr, 0); }\n");
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("kernel/src/sync/x.cpp"), std::string::npos) << r.output;
}

TEST_F(FakeTree, RawFutexNumberInSyncSourceFails) {
  write("kernel/src/sync/x.cpp", "long f(int* w) { return syscall(__NR_futex, w, 0, 0, nullptr, nullptr, 0); }\n");
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST_F(FakeTree, EveryForbiddenHeaderInAPublicSyncHeaderFails) {
  for (const char* h : {"atomic", "thread", "mutex", "condition_variable", "semaphore", "shared_mutex", "stop_token",
                        "barrier", "latch"}) {
    SCOPED_TRACE(h);
    write("kernel/include/keel/sync/bad.hpp", std::string("#pragma once\n#include <") + h + ">\n");
    const ScriptResult r = check();
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("kernel/include/keel/sync/bad.hpp"), std::string::npos) << r.output;
  }
}

TEST_F(FakeTree, SpacedIncludeDirectiveFails) {
  write("kernel/src/sync/x.cpp", "#  include   <thread>\n");
  EXPECT_EQ(check().exit_code, 1);
}

TEST_F(FakeTree, AtomicIncludeInsidePlatformHeaderIsAllowed) {
  write("kernel/include/keel/platform/x.hpp", "#pragma once\n#include <atomic>\n#include <thread>\n");
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(FakeTree, FutexSyscallInsideNativeBackendIsAllowed) {
  write("kernel/include/keel/platform/native/futex_linux.hpp",
        "#include <atomic>\n#include <sys/syscall.h>\n"
        "inline long f(int* w) { return syscall(SYS_futex, w, 0, 0, nullptr, nullptr, 0); }\n");
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(FakeTree, FutexSyscallInKernelSrcPlatformFails) {
  // Only the shim's header directory is exempt, not a source directory that
  // happens to be called platform.
  write("kernel/src/platform/futex_linux.cpp",
        "#include <sys/syscall.h>\n"
        "long f(int* w) { return syscall(SYS_futex, w, 0, 0, nullptr, nullptr, 0); }\n");
  EXPECT_EQ(check().exit_code, 1);
}

TEST_F(FakeTree, ViolationIsReportedEvenNextToAllowedFiles) {
  write("kernel/include/keel/platform/x.hpp", "#include <atomic>\n");
  write("kernel/src/sync/y.cpp", "#include <mutex>\n");
  const ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("kernel/src/sync/y.cpp"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("platform/x.hpp"), std::string::npos) << r.output;
}

TEST_F(FakeTree, CopyOfTheRealKernelPassesUntilOneFileBreaksTheRule) {
  fs::remove_all(root_ / "kernel");
  fs::copy(fs::path(KEEL_SOURCE_DIR) / "kernel", root_ / "kernel", fs::copy_options::recursive);
  ScriptResult r = check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  write("kernel/src/sync/x.cpp", "#include <atomic>\n");
  r = check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("kernel/src/sync/x.cpp"), std::string::npos) << r.output;
}
