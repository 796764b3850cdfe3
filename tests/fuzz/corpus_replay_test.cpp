// Replays every committed fuzz input through its target: the seed corpus
// (fuzz/corpus/<target>/) and every input that once found a bug
// (fuzz/regressions/<target>/). A broken invariant fails the test and names
// the file, instead of aborting the binary as it does under libFuzzer. So
// `make test`, `make asan` and `make tsan` run every fuzz target over its
// corpus, and a fixed crash stays fixed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"

namespace {

namespace fs = std::filesystem;

struct InvariantBroken : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<fs::path> inputs_of(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* dir : {"fuzz/corpus/", "fuzz/regressions/"}) {
    const fs::path d = fs::path(KEEL_SOURCE_DIR) / (std::string(dir) + target);
    if (!fs::is_directory(d)) continue;
    for (const auto& e : fs::directory_iterator(d)) {
      if (e.is_regular_file() && e.path().filename().string().front() != '.') files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

class FuzzCorpus : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    keel::fuzz::set_failure_handler([](const std::string& m) { throw InvariantBroken(m); });
  }
  void TearDown() override { keel::fuzz::set_failure_handler(nullptr); }
};

TEST_P(FuzzCorpus, EveryCommittedInputKeepsEveryInvariant) {
  const auto files = inputs_of(GetParam());
  ASSERT_FALSE(files.empty()) << "no seed corpus in fuzz/corpus/" << GetParam();
  for (const auto& file : files) {
    const std::string bytes = slurp(file);
    try {
      keel::fuzz::run(GetParam(), reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    } catch (const InvariantBroken& e) {
      ADD_FAILURE() << file.string() << ": " << e.what();
    }
  }
}

std::vector<std::string> target_names() {
  std::vector<std::string> names;
  for (const auto& t : keel::fuzz::targets()) names.push_back(t.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzCorpus, ::testing::ValuesIn(target_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Every fuzz/<name>.cpp registers exactly one target called <name>, and every
// target has a seed corpus: a target the replay cannot see is never run by
// make test, and a misnamed one is never run by make fuzz.
TEST(FuzzTargets, EachSourceFileRegistersOneTargetOfItsNameWithASeedCorpus) {
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(fs::path(KEEL_SOURCE_DIR) / "fuzz")) {
    if (e.path().extension() == ".cpp" && e.path().stem() != "harness") files.insert(e.path().stem().string());
  }
  std::multiset<std::string> registered;
  for (const auto& t : keel::fuzz::targets()) registered.insert(t.name);
  EXPECT_EQ(std::set<std::string>(registered.begin(), registered.end()), files);
  EXPECT_EQ(registered.size(), files.size()) << "a target is registered twice";
  for (const auto& name : files) {
    EXPECT_FALSE(inputs_of(name).empty()) << "fuzz/corpus/" << name << " is empty";
  }
}

}  // namespace
