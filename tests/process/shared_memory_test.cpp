// keel::SharedMemory and keel::SharedList<T>: named segments across fork()ed
// processes, exclusive creation, permissions, name validation, unlink, header
// validation on attach, bounds checks, and no descriptor kept open.
//
// Every test uses names unique to this process and removes them (a guard
// unlinks them even when a test fails early); children only touch the shared
// memory, leave with _exit, and are reaped.
#include "keel/process/shared_memory.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"

namespace {

using keel_test::os_error_code;
using keel_test::ShmName;

int open_fds() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

struct ShmPoint {
  std::int32_t x;
  std::int32_t y;
  explicit ShmPoint(std::int32_t a, std::int32_t b) : x(a), y(b) {}  // no default constructor
};

}  // namespace

// create_unique's suffix is 64 bits drawn from getrandom. The draw runs in a
// bounded child, first in the file: a draw loop that never ends (or a crash in
// it) fails this test by name, where it would hang the suite's first caller.
TEST(SharedMemory, CreateUniqueDrawsSixteenFreshHexDigitsInABoundedChild) {
  const std::string prefix = "keel-cu-" + std::to_string(::getpid()) + "-";
  const int code = keel_test::exit_code_in_child_within(keel_test::hang_limit, [&prefix] {
    auto a = keel::SharedMemory::create_unique(prefix, 64, {.track = false});
    auto b = keel::SharedMemory::create_unique(prefix, 64, {.track = false});
    const std::string na = a.name();
    const std::string nb = b.name();
    a.unlink();
    b.unlink();
    for (const std::string& n : {na, nb}) {
      if (n.size() != 1 + prefix.size() + 16 || n.compare(1, prefix.size(), prefix) != 0) return 2;
      if (n.find_first_not_of("0123456789abcdef", 1 + prefix.size()) != std::string::npos) return 3;
    }
    return na != nb ? 0 : 4;
  });
  EXPECT_EQ(code, 0) << "the child making two unique segments " << keel_test::child_outcome(code)
                     << " (2: wrong shape, 3: not hex, 4: the same name twice)";
}

TEST(SharedMemory, ChildAttachesByNameAndSeesAndChangesTheParentsBytes) {
  ShmName name;
  auto shm = keel::SharedMemory::create(name.str(), 4096);
  ASSERT_TRUE(shm.is_open());
  EXPECT_EQ(shm.size(), 4096u);
  EXPECT_EQ(shm.name(), name.str());
  auto* bytes = static_cast<char*>(shm.data());
  for (std::size_t i = 0; i < shm.size(); ++i) ASSERT_EQ(bytes[i], 0) << "not zero-filled at " << i;
  std::strcpy(bytes, "from the parent");
  const int code = keel_test::exit_code_in_child([&] {
    auto mine = keel::SharedMemory::attach(name.str());
    if (mine.size() != 4096) return 2;
    auto* b = static_cast<char*>(mine.data());
    if (std::strcmp(b, "from the parent") != 0) return 3;
    std::strcpy(b + 100, "from the child");
    return 0;
  });
  EXPECT_EQ(code, 0);
  EXPECT_STREQ(bytes + 100, "from the child");
  shm.unlink();
  EXPECT_FALSE(name.exists());
}

TEST(SharedMemory, CreateIsExclusiveByDefault) {
  ShmName name;
  auto first = keel::SharedMemory::create(name.str(), 64);
  static_cast<char*>(first.data())[0] = 'x';
  EXPECT_EQ(os_error_code([&] { keel::SharedMemory::create(name.str(), 64); }), EEXIST);
  EXPECT_EQ(static_cast<char*>(first.data())[0], 'x');  // untouched
  first.unlink();
}

TEST(SharedMemory, NonExclusiveCreateReusesAndGrowsAnExistingSegment) {
  ShmName name;
  auto first = keel::SharedMemory::create(name.str(), 100);
  static_cast<char*>(first.data())[7] = 'k';
  auto second = keel::SharedMemory::create(name.str(), 50, {.exclusive = false});
  EXPECT_EQ(second.size(), 100u);  // existing and larger: used as it is
  EXPECT_EQ(static_cast<char*>(second.data())[7], 'k');
  auto third = keel::SharedMemory::create(name.str(), 8192, {.exclusive = false});
  EXPECT_EQ(third.size(), 8192u);  // grown
  EXPECT_EQ(static_cast<char*>(third.data())[7], 'k');
  EXPECT_EQ(static_cast<char*>(third.data())[8000], 0);
  first.unlink();
  auto fresh = keel::SharedMemory::create(name.str(), 10, {.exclusive = false});  // missing: created
  EXPECT_EQ(fresh.size(), 10u);
  EXPECT_EQ(static_cast<char*>(fresh.data())[7], 0);
  fresh.unlink();
}

TEST(SharedMemory, NewSegmentsHaveExactlyTheRequestedModeWhateverTheUmask) {
  const mode_t old_umask = ::umask(0);  // would widen nothing: the default mode is 0600
  ShmName a;
  ShmName b;
  auto wide = keel::SharedMemory::create(a.str(), 64);
  ::umask(0077);  // would narrow 0640 to 0600
  auto narrow = keel::SharedMemory::create(b.str(), 64, {.mode = 0640});
  ::umask(old_umask);
  for (const auto& [n, expected] : {std::pair{a.str(), 0600u}, std::pair{b.str(), 0640u}}) {
    const int fd = ::shm_open(n.c_str(), O_RDONLY, 0);
    ASSERT_GE(fd, 0) << n;
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    ::close(fd);
    EXPECT_EQ(st.st_mode & 07777, expected) << n;
    EXPECT_EQ(st.st_uid, ::geteuid());
  }
  wide.unlink();
  narrow.unlink();
}

TEST(SharedMemory, AttachToAMissingNameIsOsErrorEnoent) {
  ShmName name;
  EXPECT_EQ(os_error_code([&] { keel::SharedMemory::attach(name.str()); }), ENOENT);
  EXPECT_FALSE(name.exists());  // attach never creates
}

TEST(SharedMemory, UnlinkRemovesTheNameButKeepsExistingMappings) {
  ShmName name;
  auto shm = keel::SharedMemory::create(name.str(), 64);
  auto other = keel::SharedMemory::attach(name.str());
  shm.unlink();
  EXPECT_EQ(os_error_code([&] { keel::SharedMemory::attach(name.str()); }), ENOENT);
  static_cast<char*>(shm.data())[3] = 'q';
  EXPECT_EQ(static_cast<char*>(other.data())[3], 'q');  // same memory, still mapped
  EXPECT_EQ(os_error_code([&] { shm.unlink(); }), ENOENT);
  EXPECT_EQ(os_error_code([&] { keel::SharedMemory::unlink(name.str()); }), ENOENT);
  // The name is free again.
  auto again = keel::SharedMemory::create(name.str(), 64);
  EXPECT_EQ(static_cast<char*>(again.data())[3], 0);
  keel::SharedMemory::unlink(name.str());
}

TEST(SharedMemory, InvalidNamesSizesAndModesAreValueErrorsAndCreateNothing) {
  const std::string too_long = "/" + std::string(201, 'a');
  for (const std::string& bad :
       {std::string(""), std::string("/"), std::string("a/b"), std::string("//a"), std::string("."), std::string("/.."),
        std::string("has space"), std::string("tab\t"), std::string("nul\0x", 5), too_long}) {
    EXPECT_THROW(keel::SharedMemory::create(bad, 64), keel::ValueError) << "'" << bad << "'";
    EXPECT_THROW(keel::SharedMemory::attach(bad), keel::ValueError) << "'" << bad << "'";
  }
  EXPECT_EQ(keel::SharedMemory::normalize_name("abc"), "/abc");
  EXPECT_EQ(keel::SharedMemory::normalize_name("/a.b-c_9"), "/a.b-c_9");
  EXPECT_EQ(keel::SharedMemory::normalize_name(std::string(200, 'z')), "/" + std::string(200, 'z'));
  ShmName name;
  EXPECT_THROW(keel::SharedMemory::create(name.str(), 0), keel::ValueError);
  EXPECT_THROW(keel::SharedMemory::create(name.str(), 64, {.mode = 01600}), keel::ValueError);
  EXPECT_FALSE(name.exists());
}

TEST(SharedMemory, NamesTakeEveryCharacterOfTheirClassAndNoNeighbourOfOne) {
  EXPECT_EQ(keel::SharedMemory::normalize_name("AZaz09._-"), "/AZaz09._-");
  for (const char* bad : {"at@", "bracket[", "grave`", "brace{", "colon:"}) {
    EXPECT_THROW((void)keel::SharedMemory::normalize_name(bad), keel::ValueError) << bad;
  }
}

TEST(SharedMemory, WorksInAProcessWhoseStdinIsClosedAndCleansUpAfterIt) {
  // There the first descriptor opened is fd 0: the tracker's pidfd of its
  // creator, then each shm_open. All must take it as a descriptor; the
  // tracked segment goes when that process ends, and fd 0 is free again.
  ShmName tracked, tracked_later, untracked;
  const int code = keel_test::exit_code_in_child([&tracked, &tracked_later, &untracked] {
    ::close(0);
    auto a = keel::SharedMemory::create(tracked.str(), 64);
    if (!a.is_tracked()) return 2;
    static_cast<char*>(a.data())[0] = 'a';
    // The tracker is running: this create first asks whether it is alive,
    // which reads its /proc entry through fd 0.
    auto later = keel::SharedMemory::create(tracked_later.str(), 64);
    if (!later.is_tracked()) return 6;
    const keel::SharedMemoryOptions reuse{.exclusive = false, .track = false};
    // A new segment at fd 0 is created, whatever errno a caller left behind
    // (EEXIST here is what the reuse path looks for).
    errno = EEXIST;
    auto b = keel::SharedMemory::create(untracked.str(), 64, reuse);
    auto seen = keel::SharedMemory::attach(tracked.str());
    if (static_cast<const char*>(seen.data())[0] != 'a') return 3;
    auto grown = keel::SharedMemory::create(untracked.str(), 128, reuse);
    if (grown.size() != 128) return 4;
    b.unlink();
    if (::fcntl(0, F_GETFD) != -1) return 5;  // every descriptor was closed after its mapping
    return 0;
  });
  EXPECT_EQ(code, 0);  // 101: an operation threw
  EXPECT_TRUE(keel_test::eventually([&] { return !tracked.exists(); })) << "the tracker did not remove the segment";
  EXPECT_TRUE(keel_test::eventually([&] { return !tracked_later.exists(); })) << "nor the later one";
  EXPECT_FALSE(untracked.exists());
}

TEST(SharedMemory, SizesUpToTheLargestOffTAreTheSystemsToRefuse) {
  // Up to off_t's largest, keel asks the system (a sparse tmpfs file of that
  // size is made, and its mapping is what fails); one more is a ValueError.
  // Either way nothing is left.
  ShmName name;
  const auto largest = static_cast<std::size_t>(std::numeric_limits<off_t>::max());
  EXPECT_THROW(keel::SharedMemory::create(name.str(), largest + 1), keel::ValueError);
  EXPECT_THROW(keel::SharedMemory::create(name.str(), largest), keel::OsError);
  EXPECT_FALSE(name.exists());
  // A list's length limit keeps its segment's bytes within that size.
  const std::size_t chars = largest - keel::detail::shared_list_data_offset;
  EXPECT_THROW(keel::SharedList<char>::create(name.str(), chars + 1), keel::ValueError);
  EXPECT_THROW(keel::SharedList<char>::create(name.str(), chars), keel::OsError);
  const std::size_t words = (largest - keel::detail::shared_list_data_offset) / sizeof(std::uint64_t);
  EXPECT_THROW(keel::SharedList<std::uint64_t>::create(name.str(), words + 1), keel::ValueError);
  EXPECT_THROW(keel::SharedList<std::uint64_t>::create(name.str(), words), keel::OsError);
  EXPECT_FALSE(name.exists());
}

TEST(SharedMemory, CreateUniqueGivesUpAfterSixtyFourCollisionsInARow) {
  static int calls = 0;
  calls = 0;
  std::string (*const fixed)() = [] {
    ++calls;
    return std::string("00000000deadbeef");
  };
  ShmName taken("unique");
  auto occupant = keel::SharedMemory::create(taken.str() + "00000000deadbeef", 64, {.track = false});
  // Put back however the call ends (another error type escapes
  // os_error_code): later tests' unique names must be random again.
  struct Seam {
    explicit Seam(std::string (*f)()) { keel::detail::shared_memory_test_unique_suffix = f; }
    Seam(const Seam&) = delete;
    Seam& operator=(const Seam&) = delete;
    ~Seam() { keel::detail::shared_memory_test_unique_suffix = nullptr; }
  };
  int code = 0;
  {
    const Seam seam(fixed);
    code = os_error_code([&] { (void)keel::SharedMemory::create_unique(taken.str(), 64); });
  }
  EXPECT_EQ(code, EEXIST);
  EXPECT_EQ(calls, 64);  // every name drawn was tried, and no more
  occupant.unlink();
}

TEST(SharedMemory, TheTrackerStartsWhileSignalsKeepInterruptingItsCreator) {
  // A handler without SA_RESTART, run over and over (a process of its own
  // sends the signals, so the creator stays single-threaded): every blocking
  // call of the tracker's start sees EINTR. The start still succeeds, and the
  // middle process it forks is reaped, not left a zombie. Ten starts, each in
  // a fresh child: a wait that happens not to block sees no signal.
  for (int round = 0; round < 10; ++round) {
    ShmName name;
    const int code = keel_test::exit_code_in_child([&name] {
      struct sigaction sa {};
      sa.sa_handler = [](int) {};
      ::sigemptyset(&sa.sa_mask);
      if (::sigaction(SIGUSR1, &sa, nullptr) != 0) return 2;
      const pid_t creator = ::getpid();
      const pid_t spammer = ::fork();
      if (spammer < 0) return 3;
      if (spammer == 0) {
        for (;;) ::kill(creator, SIGUSR1);
      }
      int result = 0;
      try {
        auto shm = keel::SharedMemory::create(name.str(), 64);
        if (!shm.is_tracked()) result = 4;
      } catch (const keel::Error&) {
        result = 5;
      }
      ::kill(spammer, SIGKILL);
      int status = 0;
      while (::waitpid(spammer, &status, 0) < 0 && errno == EINTR) {
      }
      if (result != 0) return result;
      if (::waitpid(-1, &status, WNOHANG) != -1 || errno != ECHILD) return 6;  // a child left unreaped
      return 0;
    });
    ASSERT_EQ(code, 0) << "round " << round;
    EXPECT_TRUE(keel_test::eventually([&] { return !name.exists(); })) << "the tracker did not remove the segment";
  }
}

// A tracked create registers its segment under the tracker's lock: a child
// forked while other threads create and unlink tracked segments must be able
// to track its own (it starts a tracker of its own for them).
TEST(SharedMemory, ForkWhileOtherThreadsTrackSegmentsLeavesTrackingUsableInTheChild) {
  if (KEEL_TEST_TSAN) GTEST_SKIP() << "ThreadSanitizer cannot run a forked child of a multi-threaded process";
  const auto churn = [] {
    auto m = keel::SharedMemory::create_unique("keel-fork-test", 64);
    m.unlink();
  };
  const int hung = keel_test::children_hung_while_forking(
      churn,
      [&] {
        churn();
        return 0;
      },
      keel_test::scaled(50, 10));
  EXPECT_EQ(hung, 0) << "a forked child hung on the shared-memory tracker's lock";
}

TEST(SharedMemory, ATrackerThatCannotBeForkedFailsTheCreateAndLeavesNothing) {
  // In a child under a uid of its own that may have two processes: the
  // tracker's middle process starts, and its fork of the tracker fails
  // (EAGAIN). The create is an OsError that names the step and leaves no
  // segment; with SIGCHLD ignored (so the middle's status is lost) it still
  // fails, as "the tracker did not start", rather than wait for a tracker
  // that does not exist.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to take a uid with a process limit of its own";
  ShmName forked, ignored;
  const int code = keel_test::exit_code_in_child([&forked, &ignored] {
    ::alarm(30);  // a wait for a tracker that never started ends the child
    const auto uid = static_cast<uid_t>(2000000000 + ::getpid());
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) return 2;
    const rlimit two{2, 2};
    if (::setrlimit(RLIMIT_NPROC, &two) != 0) return 3;
    const auto refused = [](const ShmName& name, int code, const char* step) {
      try {
        (void)keel::SharedMemory::create(name.str(), 64);
      } catch (const keel::OsError& e) {
        return e.code() == code && std::string(e.what()).find(step) != std::string::npos && !name.exists();
      }
      return false;
    };
    if (!refused(forked, EAGAIN, "(fork of the tracker: ")) return 4;
    if (::signal(SIGCHLD, SIG_IGN) == SIG_ERR) return 5;
    if (!refused(ignored, ECHILD, "(the tracker did not start: ")) return 6;
    return 0;
  });
  EXPECT_EQ(code, 0);  // 142: the second create waited for a tracker that never started
  EXPECT_FALSE(forked.exists());
  EXPECT_FALSE(ignored.exists());
}

TEST(SharedMemory, AFullTrackerRegistryRefusesTrackedCreatesAndReadsNoSlotPastItsEnd) {
  // A registry of three names (a test seam), first mapped in a child: the
  // fourth tracked create is OsError ENOSPC and leaves nothing; a kept name's
  // slot is reused. Every pass over the slots stops at the last one built:
  // the registry ends against a guard page, so one more read is a SIGSEGV.
  ShmName a, b, c, d;
  const int code = keel_test::exit_code_in_child([&] {
    keel::detail::shared_memory_test_tracker_capacity = 3;
    auto sa = keel::SharedMemory::create(a.str(), 64);
    auto sb = keel::SharedMemory::create(b.str(), 64);
    auto sc = keel::SharedMemory::create(c.str(), 64);
    if (os_error_code([&] { (void)keel::SharedMemory::create(d.str(), 64); }) != ENOSPC) return 2;
    if (d.exists()) return 3;
    auto untracked = keel::SharedMemory::create(d.str(), 64, {.track = false});
    if (untracked.is_tracked()) return 4;  // a miss reads every slot
    untracked.unlink();
    if (!sa.keep() || sa.is_tracked()) return 5;
    auto sd = keel::SharedMemory::create(d.str(), 64);  // in the slot `a` gave back
    if (!sd.is_tracked() || !sb.is_tracked() || !sc.is_tracked()) return 6;
    return 0;
  });
  EXPECT_EQ(code, 0);  // 139: a read past the registry's last slot
  for (const ShmName* gone : {&b, &c, &d}) {
    EXPECT_TRUE(keel_test::eventually([&] { return !gone->exists(); })) << gone->str() << " outlived its creator";
  }
  EXPECT_TRUE(a.exists()) << "a kept segment was removed";
}

TEST(SharedMemory, AFailedCreateLeavesNoSegmentBehind) {
  ShmName name;
  // Larger than any tmpfs can map: the mapping fails after the segment was made.
  const std::size_t huge = std::size_t{1} << 60;
  EXPECT_THROW(keel::SharedMemory::create(name.str(), huge), keel::OsError);
  EXPECT_FALSE(name.exists());
}

TEST(SharedMemory, HoldsNoFileDescriptorAndCloseIsIdempotent) {
  ShmName name;
  const int before = open_fds();
  {
    auto shm = keel::SharedMemory::create(name.str(), 64);
    auto other = keel::SharedMemory::attach(name.str());
    EXPECT_EQ(open_fds(), before);
    other.close();
    other.close();
    EXPECT_FALSE(other.is_open());
    EXPECT_EQ(other.data(), nullptr);
    EXPECT_EQ(other.name(), name.str());  // kept for unlink
    keel::SharedMemory moved = std::move(shm);
    EXPECT_FALSE(shm.is_open());  // NOLINT(bugprone-use-after-move): moved-from is closed
    EXPECT_TRUE(moved.is_open());
    moved.unlink();
  }
  EXPECT_EQ(open_fds(), before);
  keel::SharedMemory closed;
  EXPECT_THROW(closed.unlink(), keel::MisuseError);
}

TEST(SharedList, ElementsAreSharedWithAChildThatAttaches) {
  ShmName name;
  auto list = keel::SharedList<std::int64_t>::create(name.str(), 10);
  ASSERT_EQ(list.size(), 10u);
  for (std::size_t i = 0; i < list.size(); ++i) EXPECT_EQ(list.get(i), 0);
  list.set(0, 41);
  const int code = keel_test::exit_code_in_child([&] {
    auto mine = keel::SharedList<std::int64_t>::attach(name.str());
    if (mine.size() != 10) return 2;
    if (mine.get(0) != 41) return 3;
    for (std::size_t i = 0; i < mine.size(); ++i) mine.set(i, static_cast<std::int64_t>(i * i) + 1000);
    return 0;
  });
  ASSERT_EQ(code, 0);
  for (std::size_t i = 0; i < list.size(); ++i) EXPECT_EQ(list.get(i), static_cast<std::int64_t>(i * i) + 1000);
  list.unlink();
}

TEST(SharedList, OutOfRangeIndicesAreValueErrorsAndChangeNothing) {
  ShmName name;
  auto list = keel::SharedList<double>::create(name.str(), 3);
  list.set(2, 2.5);
  EXPECT_THROW(list.get(3), keel::ValueError);
  EXPECT_THROW(list.set(3, 1.0), keel::ValueError);
  EXPECT_THROW(list.set(static_cast<std::size_t>(-1), 1.0), keel::ValueError);
  EXPECT_EQ(list.get(2), 2.5);
  auto empty_name = ShmName();
  auto empty = keel::SharedList<double>::create(empty_name.str(), 0);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_THROW(empty.get(0), keel::ValueError);
  empty.unlink();
  list.unlink();
}

TEST(SharedList, HoldsTriviallyCopyableTypesWithoutDefaultConstructors) {
  ShmName name;
  auto list = keel::SharedList<ShmPoint>::create(name.str(), 2);
  list.set(1, ShmPoint(3, -4));
  auto again = keel::SharedList<ShmPoint>::attach(name.str());
  EXPECT_EQ(again.get(1).x, 3);
  EXPECT_EQ(again.get(1).y, -4);
  EXPECT_EQ(again.get(0).x, 0);
  list.unlink();
}

TEST(SharedList, AttachRejectsSegmentsThatAreNotAListOfThatShape) {
  ShmName name;
  auto list = keel::SharedList<std::int32_t>::create(name.str(), 4);
  EXPECT_THROW(keel::SharedList<std::int64_t>::attach(name.str()), keel::ValueError);  // element size
  EXPECT_NO_THROW(keel::SharedList<std::uint32_t>::attach(name.str()));                // same size
  list.unlink();

  ShmName plain;
  auto raw = keel::SharedMemory::create(plain.str(), 4096);  // zero bytes: no magic
  EXPECT_THROW(keel::SharedList<std::int32_t>::attach(plain.str()), keel::ValueError);
  // A forged header claiming more elements than the segment holds.
  auto* h = new (raw.data()) keel::detail::SharedListHeader;
  h->element_size.store(sizeof(std::int32_t));
  h->length.store(1'000'000);
  h->magic.store(keel::detail::shared_list_magic, std::memory_order_release);
  EXPECT_THROW(keel::SharedList<std::int32_t>::attach(plain.str()), keel::ValueError);
  h->length.store((4096 - keel::detail::shared_list_data_offset) / sizeof(std::int32_t));
  EXPECT_EQ(keel::SharedList<std::int32_t>::attach(plain.str()).size(), h->length.load());
  raw.unlink();

  ShmName tiny;
  auto small = keel::SharedMemory::create(tiny.str(), 16);
  EXPECT_THROW(keel::SharedList<std::int32_t>::attach(tiny.str()), keel::ValueError);
  small.unlink();

  // Exactly a header's 64 bytes is a header to read (an empty list's
  // segment): refused for what it holds (zeros), not for its size.
  ShmName exact;
  auto header_only = keel::SharedMemory::create(exact.str(), keel::detail::shared_list_data_offset);
  try {
    keel::SharedList<std::int32_t>::attach(exact.str());
    ADD_FAILURE() << "a zeroed segment attached as a list";
  } catch (const keel::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos) << e.what();
  }
  header_only.unlink();
}

TEST(SharedList, CreateIsAlwaysExclusive) {
  ShmName name;
  auto list = keel::SharedList<std::int32_t>::create(name.str(), 4);
  list.set(1, 7);
  EXPECT_EQ(os_error_code([&] { keel::SharedList<std::int32_t>::create(name.str(), 4); }), EEXIST);
  EXPECT_THROW(keel::SharedList<std::int32_t>::create(name.str(), 4, {.exclusive = false}), keel::ValueError);
  EXPECT_EQ(list.get(1), 7);
  EXPECT_THROW(keel::SharedList<std::int32_t>::create(name.str(), std::size_t{1} << 62), keel::ValueError);
  list.unlink();
}
