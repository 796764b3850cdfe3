// What a user sees when a call is wrong: misuse that the compiler can catch
// must fail to compile with one error that says, in one line, what is wrong
// (the compiler's instantiation notes around it name the types). Each case
// compiles a small program with the compiler that built this test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

struct Compiled {
  int status = -1;
  std::string output;
};

Compiled compile(const std::string& name, const std::string& program) {
  const auto dir = std::filesystem::temp_directory_path() / ("keel_diag_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto src = dir / (name + ".cpp");
  std::ofstream(src) << program;
  const std::string cmd = std::string(KEEL_TEST_CXX) +
                          " -std=c++20 -fsyntax-only -I" KEEL_SOURCE_DIR "/kernel/include " + src.string() + " 2>&1";
  Compiled c;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return c;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) c.output.append(buf.data(), n);
  c.status = ::pclose(p);
  std::filesystem::remove_all(dir);
  return c;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// The programs are compiled with -fsyntax-only and no sanitizer flags, so the
// ASan and the TSan trees (both clang++-14) would compile the very same
// programs with the very same compiler: the TSan tree skips them, which takes
// about half a minute of compiler time off each `make sanitize`.
class Diagnostics : public ::testing::Test {
 protected:
  void SetUp() override {
#if defined(__SANITIZE_THREAD__)
    constexpr bool tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    constexpr bool tsan = true;
#else
    constexpr bool tsan = false;
#endif
#else
    constexpr bool tsan = false;
#endif
    if (tsan) GTEST_SKIP() << "the ASan tree compiles the same programs with the same clang++-14";
  }
};

}  // namespace

// The control: the same program with the right arguments compiles, so the
// failure below is the misuse's, not the harness's.
TEST_F(Diagnostics, ARightSubmitCompiles) {
  const auto c = compile("right_submit", R"(#include <keel/executor/thread_pool.hpp>
int main() {
  keel::ThreadPoolExecutor pool;
  (void)pool.submit([](int x) { return x; }, 1);
  (void)pool.submit([](std::stop_token, int x) { return x; }, 1);
}
)");
  EXPECT_EQ(c.status, 0) << c.output;
}

TEST_F(Diagnostics, WrongSubmitArgumentsGiveOneErrorThatSaysSo) {
  const auto c = compile("wrong_submit", R"(#include <keel/executor/thread_pool.hpp>
int main() {
  keel::ThreadPoolExecutor pool;
  (void)pool.submit([](int x) { return x; }, "text");
}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("keel::ThreadPoolExecutor::submit: fn cannot be called with these arguments"),
            std::string::npos)
      << c.output;
  EXPECT_NE(c.output.find("const char"), std::string::npos) << c.output;  // the note names the argument's type
}

TEST_F(Diagnostics, ARightProcessTaskCompiles) {
  const auto c = compile("right_task", R"(#include <keel/keel.hpp>
#include <map>
#include <string>
struct Point { int x; double y; };
int twice(int x) { return 2 * x; }
Point moved(Point p, std::map<std::string, int> by) { return {p.x + by["x"], p.y}; }
inline const auto twice_task = keel::register_task("twice", twice);
inline const auto moved_task = keel::register_task("moved", moved);
int main() {
  keel::ProcessPool pool({.workers = 1});
  (void)pool.submit(twice_task, 1);
  (void)pool.submit(moved_task, Point{1, 2.0}, std::map<std::string, int>{{"x", 1}});
}
)");
  EXPECT_EQ(c.status, 0) << c.output;
}

TEST_F(Diagnostics, WrongProcessSubmitArgumentCountGivesOneError) {
  const auto c = compile("wrong_argc", R"(#include <keel/keel.hpp>
int twice(int x) { return 2 * x; }
inline const auto twice_task = keel::register_task("twice", twice);
int main() {
  keel::ProcessPool pool({.workers = 1});
  (void)pool.submit(twice_task, 1, 2);
}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("submit: wrong number of arguments for this task"), std::string::npos) << c.output;
}

// The codec says why a type cannot travel, and the note above names the type.
TEST_F(Diagnostics, ATaskTakingAPointerGivesOneErrorNamingTheType) {
  const auto c = compile("pointer_task", R"(#include <keel/keel.hpp>
int deref(const int* p) { return *p; }
inline const auto deref_task = keel::register_task("deref", deref);
int main() {}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("a pointer cannot be encoded"), std::string::npos) << c.output;
  // g++ writes the type as "const int*", clang as "const int *".
  EXPECT_TRUE(c.output.find("const int*") != std::string::npos || c.output.find("const int *") != std::string::npos)
      << c.output;
}

TEST_F(Diagnostics, ATaskTakingATypeWithoutACodecGivesOneErrorNamingTheTask) {
  const auto c = compile("opaque_task", R"(#include <keel/keel.hpp>
class Opaque {
 public:
  explicit Opaque(int v) : v_(v) {}
  int get() const { return v_; }
 private:
  int v_;
};
int use(Opaque o) { return o.get(); }
inline const auto use_task = keel::register_task("use", use);
int main() {}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("keel::register_task: a parameter or the result of this task has no keel::Codec"),
            std::string::npos)
      << c.output;
  EXPECT_NE(c.output.find("Opaque"), std::string::npos) << c.output;
}

// starmap: the control, then tuples that do not fit the callable or task.
TEST_F(Diagnostics, ARightStarmapCompiles) {
  const auto c = compile("right_starmap", R"(#include <keel/keel.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>
int label(int n, std::string s) { return n + static_cast<int>(s.size()); }
inline const auto label_task = keel::register_task("label", label);
int main() {
  keel::ThreadPoolExecutor pool;
  std::vector<std::pair<int, std::string>> in{{1, "a"}};
  std::vector<int> a{1};
  std::vector<std::string> b{"x"};
  (void)pool.starmap([](int n, std::string s) { return s.size() + n; }, in);
  (void)pool.starmap([](int n, std::string s) { return s.size() + n; }, keel::zip(a, b));
  keel::ProcessPool procs({.workers = 1});
  (void)procs.starmap(label_task, in);
  (void)procs.starmap(label_task, keel::zip(a, b));
}
)");
  EXPECT_EQ(c.status, 0) << c.output;
}

TEST_F(Diagnostics, AStarmapTupleThatDoesNotFitTheCallableGivesOneError) {
  const auto c = compile("wrong_starmap", R"(#include <keel/executor/thread_pool.hpp>
#include <tuple>
#include <vector>
int main() {
  keel::ThreadPoolExecutor pool;
  std::vector<std::tuple<int, int, int>> in{{1, 2, 3}};
  (void)pool.starmap([](int a, int b) { return a + b; }, in);
}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("starmap: fn cannot be called with the elements of an input tuple"), std::string::npos)
      << c.output;
}

TEST_F(Diagnostics, AStarmapOverInputsThatAreNotTuplesGivesOneError) {
  const auto c = compile("flat_starmap", R"(#include <keel/executor/thread_pool.hpp>
#include <vector>
int main() {
  keel::ThreadPoolExecutor pool;
  std::vector<int> in{1, 2};
  (void)pool.starmap([](int a) { return a; }, in);
}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("starmap: each input must be a tuple, pair or array of arguments"), std::string::npos)
      << c.output;
}

TEST_F(Diagnostics, AProcessStarmapTupleOfTheWrongShapeGivesOneError) {
  const auto c = compile("wrong_process_starmap", R"(#include <keel/keel.hpp>
#include <string>
#include <utility>
#include <vector>
int label(int n, std::string s) { return n + static_cast<int>(s.size()); }
inline const auto label_task = keel::register_task("label", label);
int main() {
  keel::ProcessPool pool({.workers = 1});
  (void)pool.starmap(label_task, std::vector<std::pair<std::string, int>>{{"a", 1}});
}
)");
  EXPECT_NE(c.status, 0);
  EXPECT_EQ(count(c.output, "error:"), 1u) << c.output;
  EXPECT_NE(c.output.find("ProcessPool::starmap: each input must be a tuple of as many elements as the task has"),
            std::string::npos)
      << c.output;
}
