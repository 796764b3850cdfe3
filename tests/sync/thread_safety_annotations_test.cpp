// Clang thread-safety annotations on keel's locks: correct code that uses them
// the way kernel code does must build warning-free under -Wthread-safety (the
// clang build of this file is the real test; it has no pragma turning the
// analysis off). At run time the same code is an ordinary smoke test.
#include <gtest/gtest.h>

#include <thread>

#include "keel/sync/condition.hpp"
#include "keel/sync/mutex.hpp"
#include "keel/sync/recursive_mutex.hpp"

namespace {

class Account {
 public:
  void deposit(int n) {
    keel::LockGuard<keel::Mutex> g(mu_);
    add_locked(n);
  }
  bool try_withdraw(int n) {
    if (!mu_.try_lock()) return false;
    const bool ok = balance_ >= n;
    if (ok) balance_ -= n;
    mu_.unlock();
    return ok;
  }
  int balance() {
    mu_.lock();
    const int b = balance_;
    mu_.unlock();
    return b;
  }

 private:
  void add_locked(int n) KEEL_REQUIRES(mu_) { balance_ += n; }

  keel::Mutex mu_;
  int balance_ KEEL_GUARDED_BY(mu_) = 0;
};

class Registry {
 public:
  // Re-entry happens through a call (clang 14's analysis has no notion of a
  // reentrant capability, so two guards in one scope would be flagged).
  void add() {
    keel::LockGuard<keel::RecursiveMutex> g(mu_);
    ++entries_;
    add_one_more();
  }
  void add_one_more() {
    keel::LockGuard<keel::RecursiveMutex> g(mu_);
    ++entries_;
  }
  int entries() {
    keel::LockGuard<keel::RecursiveMutex> g(mu_);
    return entries_;
  }

 private:
  keel::RecursiveMutex mu_;
  int entries_ KEEL_GUARDED_BY(mu_) = 0;
};

class Mailbox {
 public:
  void put(int v) {
    keel::LockGuard<keel::Mutex> g(mu_);
    value_ = v;
    full_ = true;
    cond_.notify();
  }
  int take() {
    keel::LockGuard<keel::Mutex> g(mu_);
    cond_.wait([this]() KEEL_NO_TSA { return full_; });
    full_ = false;
    return value_;
  }

 private:
  keel::Mutex mu_;
  keel::Condition cond_{mu_};
  int value_ KEEL_GUARDED_BY(mu_) = 0;
  bool full_ KEEL_GUARDED_BY(mu_) = false;
};

}  // namespace

TEST(ThreadSafetyAnnotations, GuardedMembersUnderMutex) {
  Account a;
  a.deposit(5);
  EXPECT_TRUE(a.try_withdraw(3));
  EXPECT_FALSE(a.try_withdraw(3));
  EXPECT_EQ(a.balance(), 2);
}

TEST(ThreadSafetyAnnotations, GuardedMembersUnderRecursiveMutex) {
  Registry r;
  r.add();
  r.add();
  EXPECT_EQ(r.entries(), 4);
}

TEST(ThreadSafetyAnnotations, ConditionOverAnnotatedMutex) {
  Mailbox m;
  std::thread t([&] { m.put(9); });
  EXPECT_EQ(m.take(), 9);
  t.join();
}
