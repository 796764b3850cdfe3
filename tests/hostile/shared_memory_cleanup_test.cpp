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
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

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
    int code = 99;
    try {
      code = body(*r);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "creator: %s\n", e.what());
      code = 99;
    } catch (...) {
      code = 99;
    }
    if (code != 0) r->value.store(code);
    r->state.store(code == 0 ? 1 : 2);
    for (;;) ::pause();
    return 0;
  });
  if (pid <= 0) {
    ADD_FAILURE() << "fork failed: " << std::strerror(errno);
    return -1;
  }
  if (!eventually([&] { return r->state.load() != 0; })) {
    ADD_FAILURE() << "the creator did not report";
    return -1;
  }
  if (r->state.load() != 1) {
    ADD_FAILURE() << "the creator failed at step " << r->value.load();
    return -1;
  }
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

// "pid (comm) state ppid pgrp session ..." of a process; empty when it is gone.
struct ProcStat {
  std::string comm;
  char state = '?';
  long ppid = 0;
  long pgrp = 0;
  long session = 0;
};
bool proc_stat(pid_t pid, ProcStat& out) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!f || !std::getline(f, line)) return false;
  const auto open = line.find('(');
  const auto close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return false;
  out.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  return static_cast<bool>(rest >> out.state >> out.ppid >> out.pgrp >> out.session);
}

// Gone, or a zombie waiting for init to reap it.
bool dead(pid_t pid) {
  ProcStat st;
  return !proc_stat(pid, st) || st.state == 'Z' || st.state == 'X';
}

int open_fd_count() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
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

TEST(HostileShmCleanup, SegmentsHandedOnSurviveTheirCreatorsDeathAndTheOthersDoNot) {
  ShmName kept("hostile");
  ShmName untracked("hostile");
  ShmName queue("hostile");
  ShmName list("hostile");
  ShmName control("hostile");
  Children children;
  const pid_t pid = start_creator(children, [&](Report&) {
    auto a = keel::SharedMemory::create(kept.str(), 64);
    if (!a.is_tracked() || !a.keep() || a.is_tracked()) return 1;
    auto b = keel::SharedMemory::create(untracked.str(), 64, {.track = false});
    if (b.is_tracked()) return 2;
    auto q = keel::ProcessQueue::create(queue.str(), {.capacity = 2, .max_message = 32});
    q.put_bytes("for whoever comes next");
    if (!q.keep()) return 3;
    auto l = keel::SharedList<std::int32_t>::create(list.str(), 4);
    l.set(2, 22);
    if (!l.keep()) return 4;
    keel::SharedMemory::create(control.str(), 64);  // tracked: goes with the creator
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(children.kill(pid));
  ASSERT_TRUE(eventually([&] { return !control.exists(); })) << "the tracked control segment outlived its creator";
  // The tracker is done (it removes everything in one pass): the others stay.
  EXPECT_TRUE(kept.exists());
  EXPECT_TRUE(untracked.exists());
  auto q = keel::ProcessQueue::attach(queue.str());
  EXPECT_EQ(q.try_get_bytes().value_or(""), "for whoever comes next");
  EXPECT_EQ(keel::SharedList<std::int32_t>::attach(list.str()).get(2), 22);
}

TEST(HostileShmCleanup, ANameSomeoneElseUnlinkedAndRecreatedIsNotRemovedByTheDeadCreatorsTracker) {
  ShmName name("hostile");
  ShmName marker("hostile");
  Children children;
  const pid_t pid = start_creator(children, [&](Report&) {
    keel::SharedMemory::create(name.str(), 64);
    keel::SharedMemory::create(marker.str(), 64);
    return 0;
  });
  ASSERT_GT(pid, 0);
  // Someone else takes the name over behind the creator's back.
  ASSERT_EQ(::shm_unlink(name.str().c_str()), 0);
  const int fd = ::shm_open(name.str().c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  ASSERT_TRUE(children.kill(pid));
  ASSERT_TRUE(eventually([&] { return !marker.exists(); })) << "the creator's own segment outlived it";
  EXPECT_TRUE(name.exists()) << "the tracker removed a segment its creator did not make";
}

TEST(HostileShmCleanup, AForkedChildCleansUpOnlyItsOwnSegmentsNotItsParents) {
  ShmName parents("hostile");
  ShmName childs("hostile");
  auto mine = keel::SharedMemory::create(parents.str(), 64);
  ASSERT_TRUE(mine.is_tracked());
  const int parent_tracker = keel::detail::shared_memory_tracker_pid();
  ASSERT_GT(parent_tracker, 0);
  Children children;
  SharedMapping<Report> report;
  ASSERT_NE(report.get(), nullptr);
  const pid_t pid = start_creator(
      children,
      [&](Report& r) {
        // Nothing of the parent's registry reached the child.
        if (keel::SharedMemory::attach(parents.str()).is_tracked()) return 1;
        if (keel::detail::shared_memory_tracker_pid() != 0) return 2;
        keel::SharedMemory::create(childs.str(), 64);
        r.value.store(keel::detail::shared_memory_tracker_pid());
        return 0;
      },
      report.get());
  ASSERT_GT(pid, 0);
  EXPECT_GT(report->value.load(), 0);
  EXPECT_NE(report->value.load(), parent_tracker);  // its own tracker
  ASSERT_TRUE(children.kill(pid));
  ASSERT_TRUE(eventually([&] { return !childs.exists(); })) << "the child's segment outlived the child";
  EXPECT_TRUE(parents.exists()) << "the child's death removed its parent's segment";
  EXPECT_TRUE(mine.is_tracked());
  EXPECT_EQ(keel::detail::shared_memory_tracker_pid(), parent_tracker);
  mine.unlink();
  EXPECT_FALSE(mine.is_tracked());
}

TEST(HostileShmTracker, IsNoChildOfTheCreatorHoldsNoDescriptorThereAndIgnoresSignalsToTheJob) {
  ShmName name("hostile");
  Children children;
  SharedMapping<Report> report;
  ASSERT_NE(report.get(), nullptr);
  const pid_t pid = start_creator(
      children,
      [&](Report& r) {
        const int fds = open_fd_count();
        keel::SharedMemory::create(name.str(), 64);  // starts this child's tracker
        if (open_fd_count() != fds) return 1;
        errno = 0;
        if (::waitpid(-1, nullptr, WNOHANG) != -1 || errno != ECHILD) return 2;  // no child at all, not even a zombie
        r.value.store(keel::detail::shared_memory_tracker_pid());
        return 0;
      },
      report.get());
  ASSERT_GT(pid, 0);
  const pid_t tracker = report->value.load();
  ASSERT_GT(tracker, 0);
  ProcStat st;
  ASSERT_TRUE(proc_stat(tracker, st));
  EXPECT_EQ(st.comm, "keel-shm-track");
  EXPECT_NE(st.ppid, pid);
  EXPECT_NE(st.pgrp, ::getpgrp());  // a kill of the job's process group does not reach it
  EXPECT_EQ(st.session, tracker);   // its own session: no controlling terminal
  // What a Ctrl-C, a hang-up or a polite kill would send: it stays to clean up.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ASSERT_EQ(::kill(tracker, sig), 0);
  ASSERT_TRUE(children.kill(pid));
  EXPECT_TRUE(eventually([&] { return !name.exists(); })) << "the signalled tracker did not clean up";
  EXPECT_TRUE(eventually([&] { return dead(tracker); })) << "the tracker outlived its work";
}

TEST(HostileShmTracker, AKilledTrackerIsReplacedByTheNextCreateAndTheReplacementCleansUpEverything) {
  ShmName before("hostile");
  ShmName after("hostile");
  Children children;
  SharedMapping<Report> report;
  ASSERT_NE(report.get(), nullptr);
  Report* r = report.get();
  const pid_t pid = children.spawn([&, r] {
    keel::SharedMemory::create(before.str(), 64);
    r->value.store(keel::detail::shared_memory_tracker_pid());
    r->state.store(1);
    while (r->state.load() != 2) ::usleep(1000);  // until the parent killed the tracker
    keel::SharedMemory::create(after.str(), 64);
    r->value.store(keel::detail::shared_memory_tracker_pid());
    r->state.store(3);
    for (;;) ::pause();
    return 0;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(eventually([&] { return r->state.load() == 1; }));
  const pid_t first = r->value.load();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return dead(first); }));
  r->state.store(2);
  ASSERT_TRUE(eventually([&] { return r->state.load() == 3; }));
  const pid_t second = r->value.load();
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
  ASSERT_TRUE(children.kill(pid));
  EXPECT_TRUE(eventually([&] { return !after.exists(); })) << "the replacement tracker did not clean up";
  EXPECT_FALSE(before.exists()) << "the replacement tracker left the first tracker's name";
}

TEST(HostileShmTracker, WithoutPidfdOpenATrackedCreateIsOsErrorAndCreatesNothingButTrackFalseWorks) {
  ShmName tracked("hostile");
  ShmName untracked("hostile");
  const int code = keel_test::exit_code_in_child([&] {
    // As on a kernel before 5.3: pidfd_open is ENOSYS.
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 10;
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 11;
    try {
      keel::SharedMemory::create(tracked.str(), 64);
      return 1;
    } catch (const keel::OsError& e) {
      if (e.code() != ENOSYS) return 2;
      if (std::string(e.what()).find("track = false") == std::string::npos) return 3;
    }
    if (tracked.exists()) return 4;
    auto plain = keel::SharedMemory::create(untracked.str(), 64, {.track = false});
    if (plain.is_tracked() || !untracked.exists()) return 5;
    return 0;
  });
  EXPECT_EQ(code, 0);
  EXPECT_FALSE(tracked.exists());
  EXPECT_TRUE(untracked.exists());  // no tracker: it stays until unlinked (the guard does it)
}

TEST(HostileShmTracking, OnlyWhatThisProcessCreatedIsTrackedAndUnlinkOrKeepEndsIt) {
  ShmName name("hostile");
  ShmName foreign("hostile");
  auto shm = keel::SharedMemory::create(name.str(), 64);
  EXPECT_TRUE(shm.is_tracked());
  EXPECT_TRUE(keel::SharedMemory::attach(name.str()).is_tracked());  // same name, same fate
  shm.unlink();
  EXPECT_FALSE(shm.is_tracked());
  EXPECT_FALSE(shm.keep());  // nothing left to hand on
  // Made by someone else: reusing it non-exclusively does not make it ours.
  const int fd = ::shm_open(foreign.str().c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 64), 0);
  ::close(fd);
  auto reused = keel::SharedMemory::create(foreign.str(), 64, {.exclusive = false});
  EXPECT_FALSE(reused.is_tracked());
  EXPECT_FALSE(reused.keep());
  auto again = keel::SharedMemory::create(name.str(), 64);
  EXPECT_TRUE(again.keep());
  EXPECT_FALSE(again.is_tracked());
  EXPECT_FALSE(again.keep());
  keel::SharedMemory moved = std::move(again);
  EXPECT_THROW(again.keep(), keel::MisuseError);  // NOLINT(bugprone-use-after-move): moved-from has no segment
  moved.unlink();
}

TEST(HostileShmUnique, NamesAreDistinctValidExclusiveAndTracked) {
  std::vector<keel::SharedMemory> made;
  std::set<std::string> names;
  for (int i = 0; i < 64; ++i) {
    made.push_back(keel::SharedMemory::create_unique("hostile-u-", 64));
    const std::string& n = made.back().name();
    names.insert(n);
    EXPECT_EQ(n.rfind("/hostile-u-", 0), 0u) << n;
    ASSERT_EQ(n.size(), std::string("/hostile-u-").size() + 16) << n;
    EXPECT_EQ(n.find_first_not_of("0123456789abcdef", std::string("/hostile-u-").size()), std::string::npos) << n;
    EXPECT_EQ(keel::SharedMemory::normalize_name(n), n);
    EXPECT_TRUE(made.back().is_tracked());
  }
  EXPECT_EQ(names.size(), made.size());
  auto bare = keel::SharedMemory::create_unique("", 64);  // no prefix: 16 digits
  EXPECT_EQ(bare.name().size(), 17u);
  auto slash = keel::SharedMemory::create_unique("/hostile-s", 64);  // one leading '/' is allowed, as in names
  EXPECT_EQ(slash.name().rfind("/hostile-s", 0), 0u);
  auto longest = keel::SharedMemory::create_unique(std::string(184, 'p'), 64);
  EXPECT_EQ(longest.name().size(), 201u);
  for (const std::string& bad : {std::string("a/b"), std::string("has space"), std::string(185, 'p'),
                                 std::string("//x"), std::string("nul\0x", 5)}) {
    EXPECT_THROW(keel::SharedMemory::create_unique(bad, 64), keel::ValueError) << "'" << bad << "'";
  }
  EXPECT_THROW(keel::SharedMemory::create_unique("hostile-u-", 64, {.exclusive = false}), keel::ValueError);
  EXPECT_THROW(keel::SharedMemory::create_unique("hostile-u-", 0), keel::ValueError);
  for (auto* m : {&bare, &slash, &longest}) m->unlink();
  for (auto& m : made) m.unlink();
  for (const std::string& n : names) {
    const int fd = ::shm_open(n.c_str(), O_RDONLY, 0);
    EXPECT_LT(fd, 0) << n << " still exists";
    if (fd >= 0) ::close(fd);
  }
}

TEST(HostileShmUnique, QueuesAndListsGetUniqueNamesToo) {
  auto q = keel::ProcessQueue::create_unique("hostile-q-", {.capacity = 2, .max_message = 16});
  auto q2 = keel::ProcessQueue::create_unique("hostile-q-", {.capacity = 2, .max_message = 16});
  EXPECT_NE(q.name(), q2.name());
  EXPECT_EQ(q.name().rfind("/hostile-q-", 0), 0u);
  EXPECT_TRUE(q.is_tracked());
  q.put_bytes("hello");
  EXPECT_EQ(keel::ProcessQueue::attach(q.name()).get_bytes(keel_test::hang_limit), "hello");
  auto l = keel::SharedList<double>::create_unique("hostile-l-", 3);
  EXPECT_EQ(l.name().rfind("/hostile-l-", 0), 0u);
  EXPECT_TRUE(l.is_tracked());
  l.set(1, 1.5);
  EXPECT_EQ(keel::SharedList<double>::attach(l.name()).get(1), 1.5);
  EXPECT_THROW(keel::SharedList<double>::create_unique("hostile-l-", 3, {.exclusive = false}), keel::ValueError);
  q.unlink();
  q2.unlink();
  l.unlink();
}
