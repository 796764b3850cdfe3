// keel::ProcessQueue: FIFO, bounds, timeouts, the codec, MPMC between
// fork()ed processes, and IPC-2: a process killed at the worst moments (while
// holding the queue's lock mid-put or mid-get, or after publishing but before
// waking) never wedges the others, never loses a completed put and never
// delivers a message twice.
//
// Deterministic kills use keel::detail::process_queue_test_hook, set only in
// the child, which parks the child at a chosen step until the parent kills it.
// Every test uses queue names unique to this process and unlinks them (a guard
// does it when a test fails early); children leave with _exit and are reaped.
#include "keel/process/queue.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/process/shared_memory.hpp"
#include "kernel/src/process/queue_ring.hpp"

using namespace std::chrono_literals;

namespace {

using keel_test::Children;
using keel_test::os_error_code;
using keel_test::SharedMapping;

// A queue name unique to this process and test, unlinked on scope exit.
struct QueueName : keel_test::ShmName {
  QueueName() : ShmName("queue-test") {}
};

// Parent-side operations that a bug could block use this bound instead of the
// untimed forms (which children exercise), so a bug fails instead of hanging.
constexpr auto limit = keel_test::hang_limit;

// The child-side hook: park at one step, after saying so, until killed.
std::atomic<int>* parked_flag = nullptr;
keel::detail::QueueStep park_step = keel::detail::QueueStep::put_before_publish;
void park_at_step(keel::detail::QueueStep step) {
  if (step != park_step) return;
  parked_flag->store(1);
  for (;;) ::pause();
}
// In a child: park at `step` of the next queue operation.
void park_next_operation_at(keel::detail::QueueStep step, std::atomic<int>* flag) {
  parked_flag = flag;
  park_step = step;
  keel::detail::process_queue_test_hook = &park_at_step;
}

std::string message_for(std::uint64_t id, std::size_t padding) {
  std::string m(sizeof id, '\0');
  std::memcpy(m.data(), &id, sizeof id);
  for (std::size_t i = 0; i < padding; ++i) m.push_back(static_cast<char>('a' + (id + i) % 26));
  return m;
}
// The id of a message made by message_for, or nullopt if its bytes are wrong.
std::optional<std::uint64_t> id_of(const std::string& m) {
  if (m.size() < sizeof(std::uint64_t)) return std::nullopt;
  std::uint64_t id = 0;
  std::memcpy(&id, m.data(), sizeof id);
  for (std::size_t i = sizeof id; i < m.size(); ++i) {
    if (m[i] != static_cast<char>('a' + (id + (i - sizeof id)) % 26)) return std::nullopt;
  }
  return id;
}

}  // namespace

// A queue is tracked by default: one that a process leaves behind is
// unlinked by that process's cleanup tracker once it ends. The process is a
// fresh fork (no tracker yet, so this is its registry's first name) with a
// bounded life: a crash or a hang in the first registration fails this test
// by name. First in the file: every other test here registers names too.
TEST(ProcessQueue, AQueueThatAFreshProcessLeavesBehindIsUnlinkedByItsTracker) {
  QueueName name;
  const int code = keel_test::exit_code_in_child_within(limit, [&name] {
    auto q = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 16});
    q.put_bytes("left behind", limit);
    return q.is_tracked() ? 0 : 2;
  });
  ASSERT_EQ(code, 0) << "the child that creates a queue " << keel_test::child_outcome(code) << " (2: not tracked)";
  EXPECT_TRUE(keel_test::eventually([&name] { return !name.exists(); })) << name.str() << " was never unlinked";
}

// A getter with nothing to take sleeps in a futex wait, woken by the put or
// by its recheck interval, and never spins (a recheck interval of zero made
// every waiter of the suite spin: the layer's tests ran past their limit).
// First in the file, so that such a spin fails here, by name.
TEST(ProcessQueue, AGetterOnAnEmptyQueueSleepsInTheKernelUntilAPut) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 16});
  std::string got;
  // Its own limit is longer than the wait for it to sleep, and an error is
  // kept, not thrown: a getter that never sleeps fails the check below.
  keel_test::TidThread getter([&] {
    try {
      got = q.get_bytes(2 * limit);
    } catch (const std::exception& e) {
      got = e.what();
    }
  });
  if (!keel_test::syscall_state(getter.tid()).known) {
    q.put_bytes("wake", limit);
    getter.join();
    GTEST_SKIP() << "/proc/<tid>/syscall cannot say where a thread sleeps here";
  }
  EXPECT_TRUE(getter.wait_blocked()) << "the getter never slept in the kernel";
  q.put_bytes("wake", limit);
  getter.join();
  EXPECT_EQ(got, "wake");
}

TEST(ProcessQueue, DeliversMessagesWholeAndInFifoOrder) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 4, .max_message = 16});
  EXPECT_EQ(q.capacity(), 4u);
  EXPECT_EQ(q.max_message(), 16u);
  EXPECT_TRUE(q.empty());
  q.put_bytes("one", limit);
  q.put_bytes(std::string("t\0o", 3), limit);
  q.put_bytes("", limit);
  q.put_bytes(std::string(16, 'x'), limit);
  EXPECT_EQ(q.size(), 4u);
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.try_put_bytes("more"));
  EXPECT_EQ(q.get_bytes(limit), "one");
  EXPECT_EQ(q.get_bytes(limit), std::string("t\0o", 3));
  EXPECT_EQ(q.get_bytes(10ms), "");
  EXPECT_TRUE(q.try_put_bytes("five"));
  EXPECT_EQ(q.try_get_bytes(), std::string(16, 'x'));
  EXPECT_EQ(q.get_bytes(limit), "five");
  EXPECT_EQ(q.try_get_bytes(), std::nullopt);
  EXPECT_TRUE(q.empty());
  // Wrapping the ring many times keeps the order.
  for (int i = 0; i < 100; ++i) {
    q.put_bytes(std::to_string(i), limit);
    q.put_bytes(std::to_string(i) + "b", limit);
    EXPECT_EQ(q.get_bytes(limit), std::to_string(i));
    EXPECT_EQ(q.get_bytes(limit), std::to_string(i) + "b");
  }
  EXPECT_EQ(q.recoveries(), 0u);
  q.unlink();
}

TEST(ProcessQueue, OversizeMessagesAreProtocolErrorsAndChangeNothing) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 8});
  q.put_bytes("keep", limit);
  EXPECT_THROW(q.put_bytes(std::string(9, 'x'), limit), keel::ProtocolError);
  EXPECT_THROW(q.put_bytes(std::string(9, 'x'), 10ms), keel::ProtocolError);
  EXPECT_THROW((void)q.try_put_bytes(std::string(1000, 'x')), keel::ProtocolError);
  EXPECT_THROW(q.put(std::string(8, 'x'), limit), keel::ProtocolError);  // 4-byte length prefix + 8
  EXPECT_EQ(q.size(), 1u);
  q.put_bytes(std::string(8, 'y'), limit);  // exactly max_message fits
  EXPECT_EQ(q.get_bytes(limit), "keep");
  EXPECT_EQ(q.get_bytes(limit), std::string(8, 'y'));
  q.unlink();
}

TEST(ProcessQueue, TimedOperationsTimeOutAndChangeNothing) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 1, .max_message = 8});
  {
    keel_test::Stopwatch sw;
    EXPECT_THROW(q.get_bytes(20ms), keel::TimeoutError);
    EXPECT_GE(sw.elapsed(), 20ms);
  }
  EXPECT_THROW(q.get_bytes(0ms), keel::TimeoutError);
  EXPECT_THROW(q.get<int>(-1ms), keel::TimeoutError);
  q.put_bytes("a", limit);
  {
    keel_test::Stopwatch sw;
    EXPECT_THROW(q.put_bytes("b", 20ms), keel::TimeoutError);
    EXPECT_GE(sw.elapsed(), 20ms);
  }
  EXPECT_THROW(q.put(7, 0ms), keel::TimeoutError);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.get_bytes(0ms), "a");  // available now: no wait needed
  q.unlink();
}

TEST(ProcessQueue, CarriesValuesThroughTheCodec) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 8, .max_message = 256});
  q.put(42, limit);
  q.put(std::string("hello"), limit);
  q.put(std::vector<std::int64_t>{1, -2, 3}, limit);
  q.put(std::pair<int, std::string>(7, "seven"), 10ms);
  EXPECT_EQ(q.get<int>(limit), 42);
  EXPECT_EQ(q.get<std::string>(limit), "hello");
  EXPECT_EQ(q.get<std::vector<std::int64_t>>(10ms), (std::vector<std::int64_t>{1, -2, 3}));
  EXPECT_EQ((q.get<std::pair<int, std::string>>(limit)), (std::pair<int, std::string>(7, "seven")));
  // A message that does not decode as the asked type stays in the queue.
  q.put_bytes("xyz", limit);
  EXPECT_THROW(q.get<std::int64_t>(limit), keel::ProtocolError);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.get_bytes(limit), "xyz");
  q.unlink();
}

TEST(ProcessQueue, CreateAndAttachValidateTheirInput) {
  QueueName name;
  EXPECT_THROW(keel::ProcessQueue::create(name.str(), {.capacity = 0}), keel::ValueError);
  EXPECT_THROW(keel::ProcessQueue::create(name.str(), {.max_message = 0}), keel::ValueError);
  EXPECT_THROW(keel::ProcessQueue::create(name.str(), {.capacity = (std::size_t{1} << 31) + 1}), keel::ValueError);
  EXPECT_THROW(keel::ProcessQueue::create(name.str(), {.max_message = (std::size_t{1} << 30) + 1}), keel::ValueError);
  EXPECT_THROW(keel::ProcessQueue::create("bad/name"), keel::ValueError);
  EXPECT_EQ(os_error_code([&] { keel::ProcessQueue::attach(name.str()); }), ENOENT);  // nothing was created

  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 8});
  EXPECT_EQ(os_error_code([&] { keel::ProcessQueue::create(name.str()); }), EEXIST);
  q.put_bytes("still", limit);
  auto other = keel::ProcessQueue::attach(name.str());
  EXPECT_EQ(other.capacity(), 2u);
  EXPECT_EQ(other.get_bytes(limit), "still");

  QueueName plain;
  auto raw = keel::SharedMemory::create(plain.str(), 8192);  // zero bytes: no queue header
  EXPECT_THROW(keel::ProcessQueue::attach(plain.str()), keel::ValueError);
  raw.unlink();
  QueueName tiny;
  auto small = keel::SharedMemory::create(tiny.str(), 8);
  EXPECT_THROW(keel::ProcessQueue::attach(tiny.str()), keel::ValueError);
  small.unlink();
  // Exactly a header's bytes is enough to read the header: refused for what
  // it holds (zeros), not for its size.
  QueueName exact;
  auto header_only = keel::SharedMemory::create(exact.str(), sizeof(keel::detail::QueueHeader));
  try {
    keel::ProcessQueue::attach(exact.str());
    ADD_FAILURE() << "a zeroed segment attached as a queue";
  } catch (const keel::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos) << e.what();
  }
  header_only.unlink();
  q.unlink();
}

// The limits are inclusive: 2^31 slots and 2^30-byte messages are a queue
// (its segment is sized, and a header with them attaches), one more of either
// is a ValueError. A segment of those sizes (2^61 bytes) cannot be mapped, so
// the ring's sizing and validation are checked on a header in plain memory.
TEST(ProcessQueue, TheLimitsAreInclusiveAndOneBeyondEitherIsAValueError) {
  constexpr std::size_t max_capacity = std::size_t{1} << 31;
  constexpr std::size_t max_message = std::size_t{1} << 30;
  const std::size_t largest = keel::detail::queue_bytes(max_capacity, max_message);
  EXPECT_GT(largest, max_capacity * max_message);
  EXPECT_GT(keel::detail::queue_bytes(max_capacity, 1), max_capacity * 8);
  EXPECT_THROW(keel::detail::queue_bytes(max_capacity + 1, 1), keel::ValueError);
  EXPECT_THROW(keel::detail::queue_bytes(1, max_message + 1), keel::ValueError);

  alignas(keel::detail::QueueHeader) unsigned char storage[sizeof(keel::detail::QueueHeader)];
  auto* h = new (storage) keel::detail::QueueHeader;
  keel::detail::init_queue(*h, max_capacity, max_message);
  EXPECT_NO_THROW(keel::detail::validate_queue(*h, largest, "largest"));
  EXPECT_THROW(keel::detail::validate_queue(*h, largest - 1, "short"), keel::ValueError);
  h->~QueueHeader();
  h = new (storage) keel::detail::QueueHeader;
  keel::detail::init_queue(*h, max_capacity + 1, 1);
  EXPECT_THROW(keel::detail::validate_queue(*h, SIZE_MAX, "too many slots"), keel::ValueError);
  h->~QueueHeader();
  h = new (storage) keel::detail::QueueHeader;
  keel::detail::init_queue(*h, 1, max_message + 1);
  EXPECT_THROW(keel::detail::validate_queue(*h, SIZE_MAX, "too long"), keel::ValueError);
  h->~QueueHeader();
}

TEST(ProcessQueue, UnlinkRemovesTheNameWhileHandlesKeepWorking) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 2, .max_message = 8});
  auto other = keel::ProcessQueue::attach(name.str());
  q.unlink();
  EXPECT_EQ(os_error_code([&] { keel::ProcessQueue::attach(name.str()); }), ENOENT);
  q.put_bytes("after", limit);
  EXPECT_EQ(other.get_bytes(limit), "after");
  q.close();
  EXPECT_FALSE(q.is_open());
  EXPECT_THROW(q.put_bytes("x"), keel::MisuseError);
  EXPECT_THROW((void)q.size(), keel::MisuseError);
  keel::ProcessQueue moved = std::move(other);
  EXPECT_FALSE(other.is_open());  // NOLINT(bugprone-use-after-move): moved-from is closed
  moved.put_bytes("y", limit);
  EXPECT_EQ(moved.get_bytes(limit), "y");
}

TEST(ProcessQueue, ABlockedGetIsWokenByAPutInAnotherProcessAndViceVersa) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 1, .max_message = 32});
  Children children;
  const pid_t pid = children.spawn([&name] {
    auto mine = keel::ProcessQueue::attach(name.str());
    ::usleep(20000);  // the parent is asleep in get by now (usually)
    mine.put_bytes("wake up");
    // Then fill the queue so the parent's put must wait for our get.
    mine.put_bytes("full");
    ::usleep(20000);
    if (mine.get_bytes(keel_test::hang_limit) != "full") return 2;
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_EQ(q.get_bytes(keel_test::hang_limit), "wake up");
  ASSERT_TRUE(keel_test::eventually([&] { return q.full(); }));
  q.put_bytes("parent", keel_test::hang_limit);  // blocks until the child's get
  EXPECT_EQ(children.reap(pid), 0);
  EXPECT_EQ(q.get_bytes(0ms), "parent");
  q.unlink();
}

TEST(ProcessQueue, UntimedFormsWaitAsLongAsNeeded) {
  // The untimed forms run in a child; the parent's bounded reap (then kill)
  // turns a hang into a failure.
  QueueName up_name;
  QueueName down_name;
  auto up = keel::ProcessQueue::create(up_name.str(), {.capacity = 1, .max_message = 64});
  auto down = keel::ProcessQueue::create(down_name.str(), {.capacity = 1, .max_message = 64});
  Children children;
  const pid_t pid = children.spawn([&up_name, &down_name] {
    auto to_parent = keel::ProcessQueue::attach(up_name.str());
    auto from_parent = keel::ProcessQueue::attach(down_name.str());
    to_parent.put_bytes("x1");
    to_parent.put(7);  // waits: capacity 1
    to_parent.put(std::string("eight"));
    if (from_parent.get_bytes() != "back") return 2;
    if (from_parent.get<int>() != 9) return 3;
    return 0;
  });
  ASSERT_GT(pid, 0);
  EXPECT_EQ(up.get_bytes(limit), "x1");
  EXPECT_EQ(up.get<int>(limit), 7);
  EXPECT_EQ(up.get<std::string>(limit), "eight");
  down.put_bytes("back", limit);
  down.put(9, limit);
  EXPECT_EQ(children.reap(pid), 0);
  EXPECT_TRUE(up.empty());
  EXPECT_TRUE(down.empty());
  up.unlink();
  down.unlink();
}

TEST(ProcessQueue, ManyProducerAndConsumerProcessesConserveMessages) {
  constexpr int producers = 3;
  constexpr int consumers = 3;
  const int per_producer = std::min(keel_test::scaled(2000, 200), 20000);
  const int total = producers * per_producer;
  struct Tally {
    std::atomic<int> received[3 * 20000];  // indexed by message id
    std::atomic<int> order_violations{0};
    std::atomic<int> corrupt{0};
  };
  ASSERT_LE(total, 3 * 20000);
  SharedMapping<Tally> tally;
  ASSERT_NE(tally.get(), nullptr);
  Tally* t = tally.get();
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 16, .max_message = 64});
  Children children;
  std::vector<pid_t> pids;
  for (int p = 0; p < producers; ++p) {
    pids.push_back(children.spawn([&name, p, per_producer] {
      auto mine = keel::ProcessQueue::attach(name.str());
      for (int i = 0; i < per_producer; ++i) {
        mine.put_bytes(message_for(static_cast<std::uint64_t>(p * per_producer + i), static_cast<std::size_t>(i % 40)),
                       keel_test::hang_limit);
      }
      return 0;
    }));
  }
  for (int c = 0; c < consumers; ++c) {
    pids.push_back(children.spawn([&name, t, per_producer] {
      auto mine = keel::ProcessQueue::attach(name.str());
      std::vector<long> last(producers, -1);  // FIFO: each producer's ids arrive increasing
      for (;;) {
        const std::string m = mine.get_bytes(keel_test::hang_limit);
        if (m == "stop") return 0;
        const auto id = id_of(m);
        if (!id) {
          t->corrupt.fetch_add(1);
          continue;
        }
        const auto producer = static_cast<std::size_t>(*id / static_cast<std::uint64_t>(per_producer));
        if (static_cast<long>(*id) <= last[producer]) t->order_violations.fetch_add(1);
        last[producer] = static_cast<long>(*id);
        t->received[*id].fetch_add(1);
      }
    }));
  }
  for (pid_t pid : pids) ASSERT_GT(pid, 0);
  for (int p = 0; p < producers; ++p) EXPECT_EQ(children.reap(pids[p]), 0) << "producer " << p;
  for (int c = 0; c < consumers; ++c) q.put_bytes("stop", keel_test::hang_limit);
  for (int c = 0; c < consumers; ++c) EXPECT_EQ(children.reap(pids[producers + c]), 0) << "consumer " << c;
  EXPECT_TRUE(q.empty());
  int missing = 0;
  int duplicated = 0;
  for (int id = 0; id < total; ++id) {
    const int n = t->received[id].load();
    missing += n == 0 ? 1 : 0;
    duplicated += n > 1 ? 1 : 0;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
  EXPECT_EQ(t->order_violations.load(), 0);
  EXPECT_EQ(t->corrupt.load(), 0);
  EXPECT_EQ(q.recoveries(), 0u);
  q.unlink();
}

TEST(ProcessQueue, AChildKilledHoldingTheLockMidPutLeavesNoTraceAndIsRecovered) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 4, .max_message = 16});
  q.put_bytes("before", limit);
  SharedMapping<std::atomic<int>> parked;
  ASSERT_NE(parked.get(), nullptr);
  std::atomic<int>* flag = parked.get();
  Children children;
  const pid_t pid = children.spawn([&name, flag] {
    auto mine = keel::ProcessQueue::attach(name.str());
    park_next_operation_at(keel::detail::QueueStep::put_before_publish, flag);
    mine.put_bytes("half-written");  // parks with the slot written, not published
    return 2;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return flag->load() == 1; }));
  EXPECT_THROW(q.put_bytes("blocked", 20ms), keel::TimeoutError);  // the lock is held
  ASSERT_TRUE(children.kill(pid));
  EXPECT_EQ(q.size(), 1u);  // the dead put never happened
  q.put_bytes("after", keel_test::hang_limit);
  EXPECT_EQ(q.recoveries(), 1u);
  EXPECT_EQ(q.get_bytes(0ms), "before");
  EXPECT_EQ(q.get_bytes(0ms), "after");
  EXPECT_THROW(q.get_bytes(0ms), keel::TimeoutError);
  EXPECT_EQ(q.recoveries(), 1u);
  q.unlink();
}

TEST(ProcessQueue, AChildKilledHoldingTheLockMidGetLeavesTheMessageQueued) {
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 4, .max_message = 16});
  q.put_bytes("first", limit);
  q.put_bytes("second", limit);
  SharedMapping<std::atomic<int>> parked;
  ASSERT_NE(parked.get(), nullptr);
  std::atomic<int>* flag = parked.get();
  Children children;
  const pid_t pid = children.spawn([&name, flag] {
    auto mine = keel::ProcessQueue::attach(name.str());
    park_next_operation_at(keel::detail::QueueStep::get_before_publish, flag);
    (void)mine.get_bytes();  // parks with "first" copied out, not consumed
    return 2;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return flag->load() == 1; }));
  ASSERT_TRUE(children.kill(pid));
  EXPECT_EQ(q.get_bytes(keel_test::hang_limit), "first");
  EXPECT_EQ(q.recoveries(), 1u);
  q.put_bytes("third", limit);
  EXPECT_EQ(q.get_bytes(0ms), "second");
  EXPECT_EQ(q.get_bytes(0ms), "third");
  q.unlink();
}

TEST(ProcessQueue, ASleepingGetterIsNotStrandedByAPutterKilledBeforeItsWake) {
  // The putter publishes, releases the lock, then dies before waking anyone:
  // the sleeping getter must still receive the message (it looks again after
  // at most recheck_interval).
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 4, .max_message = 16});
  SharedMapping<std::atomic<int>> parked;
  ASSERT_NE(parked.get(), nullptr);
  std::atomic<int>* flag = parked.get();
  Children children;
  const pid_t pid = children.spawn([&name, flag] {
    auto mine = keel::ProcessQueue::attach(name.str());
    while (flag->load() != 2) ::usleep(1000);  // the parent's getter sleeps
    park_next_operation_at(keel::detail::QueueStep::put_before_wake, flag);
    mine.put_bytes("unannounced");
    return 2;
  });
  ASSERT_GT(pid, 0);
  std::optional<std::string> got;
  keel_test::TidThread getter([&] { got = q.get_bytes(keel_test::hang_limit); });
  getter.wait_blocked();
  flag->store(2);
  ASSERT_TRUE(keel_test::eventually([&] { return flag->load() == 1; }));
  ASSERT_TRUE(children.kill(pid));
  getter.join();
  EXPECT_EQ(got, "unannounced");
  EXPECT_EQ(q.recoveries(), 0u);  // the putter had released the lock
  q.unlink();
}

TEST(ProcessQueue, ASleepingGetterRecoversALockWhoseHolderDiedAndWaitsOn) {
  // The putter dies holding the lock mid-put while the parent's getter
  // sleeps: the getter takes the lock over, finds nothing, and still receives
  // the next message.
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 4, .max_message = 16});
  SharedMapping<std::atomic<int>> parked;
  ASSERT_NE(parked.get(), nullptr);
  std::atomic<int>* flag = parked.get();
  Children children;
  const pid_t pid = children.spawn([&name, flag] {
    auto mine = keel::ProcessQueue::attach(name.str());
    while (flag->load() != 2) ::usleep(1000);
    park_next_operation_at(keel::detail::QueueStep::put_before_publish, flag);
    mine.put_bytes("never");
    return 2;
  });
  ASSERT_GT(pid, 0);
  // Whether the getter has returned is an atomic of its own: `got` is
  // written through this mapping of the queue and the message below is put
  // through another, and TSan cannot see that the two alias, so a read of
  // `got` before the join would be reported as a race with the getter's write.
  std::optional<std::string> got;
  std::atomic<bool> returned{false};
  keel_test::TidThread getter([&] {
    got = q.get_bytes(keel_test::hang_limit);
    returned.store(true);
  });
  getter.wait_blocked();
  flag->store(2);
  ASSERT_TRUE(keel_test::eventually([&] { return flag->load() == 1; }));
  ASSERT_TRUE(children.kill(pid));
  ASSERT_TRUE(keel_test::eventually([&] { return q.recoveries() == 1; }));
  EXPECT_FALSE(returned.load());
  auto other = keel::ProcessQueue::attach(name.str());
  other.put_bytes("real", limit);
  getter.join();
  EXPECT_EQ(got, "real");
  EXPECT_EQ(q.recoveries(), 1u);
  q.unlink();
}

// For the scope of a test: waiters sleep an hour between looks, so a wake-up
// is the only thing that ends their sleep, and a lost one leaves them asleep
// (in the real queue it costs at most recheck_interval, which no test sees).
class NoRecheck {
 public:
  NoRecheck() { keel::detail::process_queue_test_recheck = std::chrono::hours(1); }
  ~NoRecheck() { keel::detail::process_queue_test_recheck = std::chrono::milliseconds(0); }
  NoRecheck(const NoRecheck&) = delete;
  NoRecheck& operator=(const NoRecheck&) = delete;
};

// A waiter thread that records what it got and whether it returned. Its own
// deadline (hang_limit) is twice the window the test gives its wake-up, so a
// waiter that was never woken is seen as still asleep (at its deadline it
// would look again and find the message), and a failing test still ends,
// by name, well within the per-test time limit.
struct Waiter {
  std::atomic<bool> done{false};
  std::optional<std::string> got;
  keel_test::TidThread thread;
  template <class F>
  explicit Waiter(F op)
      : thread([this, op] {
          try {
            got = op(keel_test::hang_limit);
          } catch (const keel::TimeoutError&) {
          }
          done = true;
        }) {}
  bool woken() const {
    return keel_test::eventually([this] { return done.load(); }, keel_test::hang_limit / 2);
  }
};

TEST(ProcessQueue, SleepersAreWokenByThePublishThatLetsThemOnWithoutLookingAgain) {
  QueueName name;
  NoRecheck no_recheck;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 1, .max_message = 16});
  {
    Waiter getter([&q](auto timeout) { return q.get_bytes(timeout); });
    ASSERT_TRUE(getter.thread.wait_blocked());
    q.put_bytes("wake", limit);
    EXPECT_TRUE(getter.woken()) << "the put did not wake the sleeping getter";
    getter.thread.join();
    EXPECT_EQ(getter.got, "wake");
  }
  q.put_bytes("full", limit);
  {
    Waiter putter([&q](auto timeout) {
      q.put_bytes("next", timeout);
      return std::string("put");
    });
    ASSERT_TRUE(putter.thread.wait_blocked());
    EXPECT_EQ(q.get_bytes(limit), "full");
    EXPECT_TRUE(putter.woken()) << "the get did not wake the sleeping putter";
    putter.thread.join();
  }
  EXPECT_EQ(q.get_bytes(0ms), "next");
  q.unlink();
}

TEST(ProcessQueue, AGetterAsleepWhenAPutterDiesAfterPublishingIsWokenByTheNextLocker) {
  // The putter dies holding the lock after its publishing store, before any
  // wake-up. The next locker here is a put that finds the queue full and
  // publishes nothing: only its takeover's wake-up reaches the getter.
  QueueName name;
  NoRecheck no_recheck;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 1, .max_message = 16});
  SharedMapping<std::atomic<int>> parked;
  ASSERT_NE(parked.get(), nullptr);
  std::atomic<int>* flag = parked.get();
  Children children;
  Waiter getter([&q](auto timeout) { return q.get_bytes(timeout); });
  ASSERT_TRUE(getter.thread.wait_blocked());
  const pid_t pid = children.spawn([&name, flag] {
    auto mine = keel::ProcessQueue::attach(name.str());
    park_next_operation_at(keel::detail::QueueStep::put_after_publish, flag);
    mine.put_bytes("orphaned");
    return 2;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return flag->load() == 1; }));
  ASSERT_TRUE(children.kill(pid));
  EXPECT_FALSE(q.try_put_bytes("extra"));  // takes the lock over; the queue is full
  EXPECT_EQ(q.recoveries(), 1u);
  EXPECT_TRUE(getter.woken()) << "the takeover did not wake the sleeping getter";
  getter.thread.join();
  EXPECT_EQ(getter.got, "orphaned");
  q.unlink();
}

TEST(ProcessQueue, APutterAsleepWhenAGetterDiesAfterConsumingIsWokenByTheNextLocker) {
  // As above, mirrored: the getter dies after its consuming store, and the
  // next locker is a get that finds the queue empty.
  QueueName name;
  NoRecheck no_recheck;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 1, .max_message = 16});
  q.put_bytes("taken", limit);
  SharedMapping<std::atomic<int>> parked;
  ASSERT_NE(parked.get(), nullptr);
  std::atomic<int>* flag = parked.get();
  Children children;
  Waiter putter([&q](auto timeout) {
    q.put_bytes("waited", timeout);
    return std::string("put");
  });
  ASSERT_TRUE(putter.thread.wait_blocked());
  const pid_t pid = children.spawn([&name, flag] {
    auto mine = keel::ProcessQueue::attach(name.str());
    park_next_operation_at(keel::detail::QueueStep::get_after_publish, flag);
    (void)mine.get_bytes();
    return 2;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(keel_test::eventually([&] { return flag->load() == 1; }));
  ASSERT_TRUE(children.kill(pid));
  EXPECT_EQ(q.try_get_bytes(), std::nullopt);  // takes the lock over; the queue is empty
  EXPECT_EQ(q.recoveries(), 1u);
  EXPECT_TRUE(putter.woken()) << "the takeover did not wake the sleeping putter";
  putter.thread.join();
  EXPECT_EQ(q.get_bytes(0ms), "waited");
  q.unlink();
}

TEST(ProcessQueue, ProcessesKilledAtRandomMomentsLoseNoCompletedPutAndDuplicateNothing) {
  // Each round: putter and getter children work on a small queue and are all
  // SIGKILLed at a random moment; the parent then drains the queue. A put
  // that returned must be received exactly once (by a child or the parent),
  // except that a getter killed between its get and its note may take one
  // message with it; nothing is received twice or corrupted, and the queue
  // keeps working (FIFO) after every round.
  constexpr int putters = 2;
  constexpr int getters = 2;
  constexpr int ids_per_putter = 3000;
  const int rounds = keel_test::scaled(40, 5);
  constexpr int max_rounds = 60;
  struct Ledger {
    std::atomic<std::uint8_t> attempted[max_rounds * putters * ids_per_putter];
    std::atomic<std::uint8_t> done[max_rounds * putters * ids_per_putter];
    std::atomic<std::uint8_t> received[max_rounds * putters * ids_per_putter];
    std::atomic<int> corrupt{0};
  };
  SharedMapping<Ledger> ledger;
  ASSERT_NE(ledger.get(), nullptr);
  Ledger* l = ledger.get();
  QueueName name;
  auto q = keel::ProcessQueue::create(name.str(), {.capacity = 8, .max_message = 1 << 16});
  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  int getters_killed = 0;
  const int used_rounds = std::min(rounds, max_rounds);
  for (int round = 0; round < used_rounds; ++round) {
    Children children;
    std::vector<pid_t> getter_pids;
    for (int p = 0; p < putters; ++p) {
      const std::uint64_t first = static_cast<std::uint64_t>((round * putters + p) * ids_per_putter);
      const unsigned seed = static_cast<unsigned>(rng());
      ASSERT_GT(children.spawn([&name, l, first, seed] {
        auto mine = keel::ProcessQueue::attach(name.str());
        std::minstd_rand r(seed);
        for (std::uint64_t id = first; id < first + ids_per_putter; ++id) {
          l->attempted[id].store(1);
          mine.put_bytes(message_for(id, r() % 4 == 0 ? r() % 60000 : r() % 200));  // some long copies under the lock
          l->done[id].store(1);
        }
        return 0;
      }),
                0);
    }
    for (int g = 0; g < getters; ++g) {
      const pid_t pid = children.spawn([&name, l] {
        auto mine = keel::ProcessQueue::attach(name.str());
        for (;;) {
          const std::string m = mine.get_bytes();
          const auto id = id_of(m);
          if (!id) {
            l->corrupt.fetch_add(1);
            continue;
          }
          l->received[*id].fetch_add(1);
        }
        return 0;
      });
      ASSERT_GT(pid, 0);
      getter_pids.push_back(pid);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500 + rng() % 5000));
    // Kill in a random order with short random gaps, so that kills land while
    // the others keep going.
    std::vector<pid_t> victims = children.live();
    std::shuffle(victims.begin(), victims.end(), rng);
    for (pid_t pid : victims) {
      const bool is_getter = std::find(getter_pids.begin(), getter_pids.end(), pid) != getter_pids.end();
      const int status = children.kill_status(pid);
      if (is_getter) {
        EXPECT_TRUE(WIFSIGNALED(status)) << "a getter exited by itself: " << status;
        ++getters_killed;
      } else if (!WIFSIGNALED(status)) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "putter status " << status;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    }
    // Drain what is left; nothing may hang (a dead holder's lock is taken over).
    for (int n = 0; n <= 8; ++n) {
      const auto m = q.try_get_bytes();
      if (!m) break;
      const auto id = id_of(*m);
      if (!id) {
        l->corrupt.fetch_add(1);
        continue;
      }
      l->received[*id].fetch_add(1);
    }
    ASSERT_TRUE(q.empty()) << "round " << round;
    // Still a working FIFO.
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(q.try_put_bytes(std::to_string(i))) << "round " << round;
    for (int i = 0; i < 8; ++i) ASSERT_EQ(q.try_get_bytes(), std::to_string(i)) << "round " << round;
  }
  int lost = 0;
  int duplicated = 0;
  int phantom = 0;
  int completed = 0;
  for (int id = 0; id < used_rounds * putters * ids_per_putter; ++id) {
    const int got = l->received[id].load();
    completed += l->done[id].load();
    duplicated += got > 1 ? 1 : 0;
    phantom += got > 0 && l->attempted[id].load() == 0 ? 1 : 0;
    lost += l->done[id].load() == 1 && got == 0 ? 1 : 0;
  }
  EXPECT_EQ(duplicated, 0);
  EXPECT_EQ(phantom, 0);
  EXPECT_EQ(l->corrupt.load(), 0);
  EXPECT_LE(lost, getters_killed) << "completed puts lost beyond one per killed getter";
  EXPECT_GT(completed, 0);
  std::cerr << "  " << used_rounds << " rounds: " << completed << " completed puts, " << getters_killed
            << " getters killed, " << lost << " messages taken by them, " << q.recoveries() << " lock takeovers\n";
  q.unlink();
}
