// Mutex, Semaphore and Event placed in memory shared between processes
// (mmap MAP_SHARED|MAP_ANONYMOUS, then fork): their futex words are not
// process-private, so they synchronize processes as they do threads.
//
// Children only touch the shared primitives and leave with _exit (no gtest,
// no destructors, no atexit handlers); the parent reaps every child, and a
// guard kills and reaps any child still alive if the test fails early.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <new>
#include <thread>
#include <vector>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/sync/event.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/semaphore.hpp"

// Locks taken in one process and released in another, and held across
// lambdas: beyond what the static analysis can follow.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wthread-safety-analysis"
#endif

using namespace std::chrono_literals;

namespace {

// Generous bound for anything a child waits for: a hang fails, never blocks CI.
constexpr auto child_limit = std::chrono::seconds(20);

struct Shared {
  keel::Mutex mutex;
  keel::Semaphore done{0};   // children release one unit each when finished
  keel::Semaphore token{0};  // parent -> child hand-off
  keel::Event go;            // parent -> all children start signal
  keel::Event reply;         // child -> parent
  long counter = 0;          // guarded by mutex
  int inside = 0;            // guarded by mutex: detects overlap
  int overlap = 0;           // guarded by mutex
};

using keel_test::Children;
using keel_test::SharedMapping;

}  // namespace

TEST(ProcessShared, PrimitivesFitInSharedMemory) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  EXPECT_FALSE(shm->mutex.is_locked());
  EXPECT_EQ(shm->done.value(), 0);
  EXPECT_FALSE(shm->go.is_set());
}

TEST(ProcessShared, ChildrenContendOnAMutexAndSignalThroughSemaphoreAndEvent) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  constexpr int kids = 4;
  const int rounds = keel_test::scaled(2000, 100);
  Children children;
  for (int k = 0; k < kids; ++k) {
    const pid_t pid = children.spawn([s, rounds] {
      if (!s->go.wait_for(child_limit)) return 2;  // the parent's start signal
      for (int i = 0; i < rounds; ++i) {
        s->mutex.lock();
        if (++s->inside != 1) ++s->overlap;
        ++s->counter;
        --s->inside;
        s->mutex.unlock();
      }
      s->done.release();
      return 0;
    });
    ASSERT_GT(pid, 0) << "fork failed";
  }
  std::this_thread::sleep_for(10ms);  // let some children sleep on the event
  s->go.set();
  for (int k = 0; k < kids; ++k) {
    ASSERT_TRUE(s->done.try_acquire_for(child_limit)) << "only " << k << " children finished";
  }
  EXPECT_TRUE(children.reap_all_ok());
  s->mutex.lock();
  EXPECT_EQ(s->counter, static_cast<long>(kids) * rounds);
  EXPECT_EQ(s->overlap, 0);
  s->mutex.unlock();
  EXPECT_FALSE(s->mutex.is_locked());
  EXPECT_EQ(s->done.value(), 0);
}

TEST(ProcessShared, MutexHeldByParentBlocksChildUntilReleased) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  s->mutex.lock();
  Children children;
  const pid_t pid = children.spawn([s] {
    if (s->mutex.try_lock()) return 2;  // held by the parent
    s->reply.set();                     // "I am about to block"
    if (!s->mutex.try_lock_for(child_limit)) return 3;
    ++s->counter;
    s->mutex.unlock();
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(s->reply.wait_for(child_limit));
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(s->counter, 0);  // still blocked
  s->mutex.unlock();
  EXPECT_EQ(children.reap(pid), 0);
  EXPECT_EQ(s->counter, 1);
  EXPECT_FALSE(s->mutex.is_locked());
}

TEST(ProcessShared, ChildMayReleaseAMutexThatTheParentLocked) {
  // Python's Lock has no owner, across processes as across threads.
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  s->mutex.lock();
  Children children;
  const pid_t pid = children.spawn([s] {
    try {
      s->mutex.unlock();
    } catch (const keel::LockNotHeldError&) {
      return 2;
    }
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_EQ(children.reap(pid), 0);
  EXPECT_FALSE(s->mutex.is_locked());
}

TEST(ProcessShared, SemaphorePingPongBetweenParentAndChild) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  const int rounds = keel_test::scaled(200, 20);
  Children children;
  const pid_t pid = children.spawn([s, rounds] {
    for (int i = 0; i < rounds; ++i) {
      if (!s->token.try_acquire_for(child_limit)) return 2;
      ++s->counter;  // ordered by the semaphore hand-off
      s->done.release();
    }
    return 0;
  });
  ASSERT_GT(pid, 0);
  for (int i = 0; i < rounds; ++i) {
    s->token.release();
    ASSERT_TRUE(s->done.try_acquire_for(child_limit)) << "round " << i;
    ASSERT_EQ(s->counter, i + 1);
  }
  EXPECT_EQ(children.reap(pid), 0);
  EXPECT_EQ(s->token.value(), 0);
  EXPECT_EQ(s->done.value(), 0);
}

TEST(ProcessShared, EventSetByAChildWakesTheParent) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  Children children;
  const pid_t pid = children.spawn([s] {
    if (!s->go.wait_for(child_limit)) return 2;
    s->counter = 99;
    s->reply.set();
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_FALSE(s->reply.wait_for(10ms));  // nothing before the go signal
  s->go.set();
  ASSERT_TRUE(s->reply.wait_for(child_limit));
  EXPECT_EQ(s->counter, 99);
  EXPECT_EQ(children.reap(pid), 0);
}

TEST(ProcessShared, ChildKilledWhileWaitingLeavesThePrimitivesUsable) {
  SharedMapping<Shared> shm;
  ASSERT_NE(shm.get(), nullptr);
  Shared* s = shm.get();
  Children children;
  const pid_t pid = children.spawn([s] {
    s->reply.set();
    s->token.acquire();  // sleeps until killed
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(s->reply.wait_for(child_limit));
  std::this_thread::sleep_for(10ms);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(children.reap(pid), -1);  // killed, not exited
  s->token.release();
  EXPECT_TRUE(s->token.try_acquire());
  EXPECT_FALSE(s->token.try_acquire());
}
