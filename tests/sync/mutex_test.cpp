// keel::Mutex semantics: locking, timeouts, misuse, standard lock adaptors.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "keel/sync/mutex.hpp"

using namespace std::chrono_literals;

TEST(Mutex, LockUnlockTryLock) {
  keel::Mutex m;
  EXPECT_FALSE(m.is_locked());
  m.lock();
  EXPECT_TRUE(m.is_locked());
  EXPECT_FALSE(m.try_lock());
  m.unlock();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  EXPECT_FALSE(m.is_locked());
}

TEST(Mutex, UnlockingUnlockedIsAnErrorAndChangesNothing) {
  keel::Mutex m;
  EXPECT_THROW(m.unlock(), keel::LockNotHeldError);
  EXPECT_FALSE(m.is_locked());
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}
