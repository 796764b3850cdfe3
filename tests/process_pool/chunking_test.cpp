// How ProcessPool::map and starmap cut their inputs into calls: n inputs at
// chunksize c are ceil(n / c) calls (each one task in stats().submitted), the
// first n / c of them full, in input order; chunksize 0 is a ValueError. A
// chunk of one input more or less still gives the right results, so only the
// count of calls tells the chunking apart (found by make mutate: a chunk of
// c + 1 inputs passed every other test).
#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <tuple>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

namespace {

using keel::ProcessPool;

int ck_triple(int x) { return 3 * x; }
int ck_sum(int a, int b) { return a + b; }

inline const auto ck_triple_t = keel::register_task("ck.triple", ck_triple);
inline const auto ck_sum_t = keel::register_task("ck.sum", ck_sum);

std::vector<int> ck_iota(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(i);
  return v;
}

// Calls accepted by one map of n inputs at chunksize c.
std::uint64_t ck_calls_of_map(ProcessPool& pool, int n, std::size_t c) {
  const std::uint64_t before = pool.stats().submitted;
  const std::vector<int> in = ck_iota(n);
  std::vector<int> want;
  for (int x : in) want.push_back(3 * x);
  EXPECT_EQ(pool.map(ck_triple_t, in, {.chunksize = c}).get(), want) << n << " inputs, chunksize " << c;
  return pool.stats().submitted - before;
}

TEST(ProcessPoolChunks, NInputsAtChunksizeCAreCeilNOverCCalls) {
  ProcessPool pool({.workers = 2});
  // Chunksize 1 comes last: there each input is its own call, and a chunk
  // bound that gives a chunk no input would never end.
  const std::vector<std::tuple<int, std::size_t, std::uint64_t>> cases = {
      {10, 3, 4}, {10, 5, 2}, {9, 3, 3}, {6, 6, 1}, {6, 7, 1}, {2, 2, 1}, {3, 2, 2}, {7, 1, 7}, {1, 1, 1}};
  for (const auto& [n, c, calls] : cases) {
    EXPECT_EQ(ck_calls_of_map(pool, n, c), calls) << n << " inputs, chunksize " << c;
  }
  EXPECT_EQ(ck_calls_of_map(pool, 0, 4), 0u) << "no inputs, no call";
}

TEST(ProcessPoolChunks, StarmapChunksAsMapDoes) {
  ProcessPool pool({.workers = 2});
  std::vector<std::tuple<int, int>> in;
  std::vector<int> want;
  for (int i = 0; i < 10; ++i) {
    in.emplace_back(i, 100);
    want.push_back(i + 100);
  }
  const std::uint64_t before = pool.stats().submitted;
  EXPECT_EQ(pool.starmap(ck_sum_t, in, {.chunksize = 4}).get(), want);
  EXPECT_EQ(pool.stats().submitted - before, 3u);
}

TEST(ProcessPoolChunks, ChunksizeZeroIsAValueErrorAndSubmitsNothing) {
  ProcessPool pool({.workers = 1});
  EXPECT_THROW((void)pool.map(ck_triple_t, ck_iota(3), {.chunksize = 0}), keel::ValueError);
  EXPECT_EQ(pool.stats().submitted, 0u);
}

}  // namespace
