// platform::current_cpu(): the CPU hint behind the semaphore's choice to spin
// or yield (keel/platform/thread.hpp).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <thread>
#include <vector>

#include "keel/platform/thread.hpp"

namespace {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return {};
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

TEST(CurrentCpu, NamesTheCpuAThreadIsPinnedTo) {
  const std::vector<int> cpus = allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  for (const int cpu : cpus) {
    int seen = -2;
    bool pinned = false;
    std::thread t([&] {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pinned = pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
      // Setting the affinity moves the thread before the call returns.
      seen = keel::platform::current_cpu();
    });
    t.join();
    ASSERT_TRUE(pinned) << "cpu " << cpu;
    EXPECT_EQ(seen, cpu);
  }
}

}  // namespace
