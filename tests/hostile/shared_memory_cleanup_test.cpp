// Named shared memory under hostile lifetimes (LIFE-*): creators SIGKILLed
// right after creating a SharedMemory, ProcessQueue or SharedList; names
// handed on; names unlinked and re-created by someone else before the creator
// dies; a non-exclusive create that meets a segment with other permission bits.
//
// Every creator is a fork()ed child that is SIGKILLed by the test (so no
// destructor, atexit handler or unlink of its own runs); what is checked is
// what /dev/shm holds afterwards, polled with keel_test::hang_limit as the only
// bound. Names are unique to this process and unlinked at scope exit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/process/queue.hpp"
#include "keel/process/shared_memory.hpp"

namespace {

using keel_test::Children;
using keel_test::eventually;
using keel_test::SharedMapping;
using keel_test::ShmName;

struct Report {
  std::atomic<int> state{0};  // 0 running, 1 body done, 2 body failed
  std::atomic<int> value{0};  // whatever the body wants to tell the parent
};

// Forks a child that runs body(report) (it creates segments), says whether
// that worked, then sleeps until the test kills it. Returns the child's pid
// once it said so, or -1 when it failed or never said anything.
template <class F>
pid_t start_creator(Children& children, F body, Report* report = nullptr) {
  SharedMapping<Report> own;
  Report* r = report != nullptr ? report : own.get();
  if (r == nullptr) return -1;
  const pid_t pid = children.spawn([r, body] {
    int code = 1;
    try {
      code = body(*r);
    } catch (...) {
      code = 1;
    }
    r->state.store(code == 0 ? 1 : 2);
    for (;;) ::pause();
    return 0;
  });
  if (pid <= 0) return -1;
  if (!eventually([&] { return r->state.load() != 0; }) || r->state.load() != 1) return -1;
  return pid;
}

mode_t mode_of(const std::string& name) {
  const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return 0;
  struct stat st {};
  const int r = ::fstat(fd, &st);
  ::close(fd);
  return r == 0 ? st.st_mode & 07777 : 0;
}

off_t size_of(const std::string& name) {
  const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return -1;
  struct stat st {};
  const int r = ::fstat(fd, &st);
  ::close(fd);
  return r == 0 ? st.st_size : -1;
}

}  // namespace

TEST(HostileShmCleanup, ASharedMemoryWhoseCreatorIsKilledIsUnlinkedAndItsNameIsFreeAgain) {
  ShmName name("hostile");
  Children children;
  const pid_t pid = start_creator(children, [&name](Report&) {
    static keel::SharedMemory held;  // still mapped when the child dies
    held = keel::SharedMemory::create(name.str(), 4096);
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(name.exists());
  ASSERT_TRUE(children.kill(pid));
  EXPECT_TRUE(eventually([&] { return !name.exists(); })) << name.str() << " outlived its SIGKILLed creator";
  // The rerun with the same name: an exclusive create succeeds.
  auto again = keel::SharedMemory::create(name.str(), 4096);
  EXPECT_EQ(static_cast<char*>(again.data())[0], 0);
  again.unlink();
}

TEST(HostileShmCleanup, AProcessQueueWhoseCreatorIsKilledIsUnlinkedAndItsNameIsFreeAgain) {
  ShmName name("hostile");
  Children children;
  const pid_t pid = start_creator(children, [&name](Report&) {
    auto q = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 16});
    q.put_bytes("left behind");
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(name.exists());
  ASSERT_TRUE(children.kill(pid));
  EXPECT_TRUE(eventually([&] { return !name.exists(); })) << name.str() << " outlived its SIGKILLed creator";
  auto again = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 16});
  EXPECT_TRUE(again.empty());
  again.unlink();
}

TEST(HostileShmCleanup, ASharedListWhoseCreatorIsKilledIsUnlinkedAndItsNameIsFreeAgain) {
  ShmName name("hostile");
  Children children;
  const pid_t pid = start_creator(children, [&name](Report&) {
    auto list = keel::SharedList<std::int64_t>::create(name.str(), 8);
    list.set(3, 33);
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(name.exists());
  ASSERT_TRUE(children.kill(pid));
  EXPECT_TRUE(eventually([&] { return !name.exists(); })) << name.str() << " outlived its SIGKILLed creator";
  auto again = keel::SharedList<std::int64_t>::create(name.str(), 8);
  EXPECT_EQ(again.get(3), 0);
  again.unlink();
}

TEST(HostileShmCleanup, ACreatorThatExitsWithoutUnlinkingLeavesNothingEither) {
  ShmName name("hostile");
  const int code = keel_test::exit_code_in_child([&name] {
    keel::SharedMemory::create(name.str(), 64);
    return 0;  // _exit: no destructor of keel's runs, nothing is unlinked by hand
  });
  ASSERT_EQ(code, 0);
  EXPECT_TRUE(eventually([&] { return !name.exists(); })) << name.str() << " outlived its creator";
}

TEST(HostileShmMode, NonExclusiveCreateOfASegmentWithOtherPermissionBitsFailsNamingBothAndChangesNothing) {
  ShmName name("hostile");
  auto first = keel::SharedMemory::create(name.str(), 64, {.mode = 0600});
  static_cast<char*>(first.data())[5] = 'm';
  try {
    auto second = keel::SharedMemory::create(name.str(), 8192, {.exclusive = false, .mode = 0640});
    ADD_FAILURE() << "a segment of mode 0600 was reused for a create asking for 0640";
  } catch (const keel::OsError& e) {
    EXPECT_EQ(e.code(), EEXIST);
    const std::string what = e.what();
    EXPECT_NE(what.find("0600"), std::string::npos) << what;
    EXPECT_NE(what.find("0640"), std::string::npos) << what;
  }
  EXPECT_EQ(mode_of(name.str()), 0600u);
  EXPECT_EQ(size_of(name.str()), 64);  // not grown
  EXPECT_EQ(static_cast<char*>(first.data())[5], 'm');
  // The same bits: reused as before.
  auto same = keel::SharedMemory::create(name.str(), 64, {.exclusive = false, .mode = 0600});
  EXPECT_EQ(static_cast<char*>(same.data())[5], 'm');
  first.unlink();
}
