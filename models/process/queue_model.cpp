// Relacy models of keel::ProcessQueue's ring: the shipped put, get, size()
// and header publication (kernel/src/process/queue_ring.cpp), through the
// shim, over plain memory instead of a named segment, with threads standing
// for processes. A process's death is a thread unwound from the queue's test
// hook at the step where the test kills a child, with the shim's robust
// mutex doing what Linux does for a dead owner (see
// keel/platform/robust_mutex.hpp). The recheck slice is made endless
// (process_queue_test_recheck), so a lost wake-up is a waiter asleep for ever:
// a deadlock here, not a waiter 50 ms late as in the real queue. The same
// file runs a SharedList header's publication against an attacher's check
// (kernel/src/process/shared_list_header.cpp).
//
// KEEL-TWIN queue_signal_skips_wake queue.handoff.2t
// KEEL-TWIN queue_sleeper_check_relaxed queue.handoff.2t
// KEEL-TWIN queue_takeover_skips_wake queue.takeover-wakes-getter.3t
// KEEL-TWIN queue_size_reads_tail_first queue.size-snapshot.3t
// KEEL-TWIN queue_magic_relaxed queue.attach-sees-whole.2t
// KEEL-TWIN shared_list_magic_relaxed list.attach-sees-whole.2t
// KEEL-TWIN robust_lock_blind queue.handoff.2t
#include <chrono>
#include <new>
#include <string_view>

#include "harness.hpp"
#include "keel/platform/robust_mutex.hpp"
#include "keel/process/queue.hpp"
// The shipped ring and robust lock, compiled into this model.
#include "../../kernel/src/process/queue_ring.cpp"
#include "../../kernel/src/process/robust_mutex.cpp"
#include "../../kernel/src/process/shared_list_header.cpp"

namespace {

using keel::detail::QueueHeader;
using keel::detail::QueueStep;
namespace platform = keel::platform;

// A process dying at a hook step: thrown through the queue's code, so the
// dying thread's unlock is the kernel's cleanup of a dead owner.
struct Died {};

// A segment in plain memory, large enough for the queues below.
struct Segment {
  static constexpr std::size_t bytes = 4096;
  alignas(64) unsigned char storage[bytes];
  QueueHeader* h = nullptr;

  void construct() {
    h = new (storage) QueueHeader;
    // Each execution starts with no death, no hook and endless slices.
    platform::model_dying_thread() = 0;
    keel::detail::process_queue_test_hook = nullptr;
    keel::detail::process_queue_test_recheck = std::chrono::milliseconds::max();
  }
  void make(std::size_t capacity) {
    RL_ASSERT(keel::detail::queue_bytes(capacity, 1) <= bytes);
    construct();
    keel::detail::init_queue(*h, capacity, 1);
  }
  void destroy() {
    keel::detail::process_queue_test_hook = nullptr;
    platform::model_dying_thread() = 0;
    h->~QueueHeader();
  }
  void put(char c) { keel::detail::queue_give(*h, std::string_view(&c, 1), platform::Deadline::never(), true); }
  bool try_put(char c) {
    return keel::detail::queue_give(*h, std::string_view(&c, 1), platform::Deadline::never(), false);
  }
  static void copy(void* ctx, std::string_view bytes) {
    RL_ASSERT(bytes.size() == 1);
    *static_cast<char*>(ctx) = bytes[0];
  }
  char get() {
    char c = 0;
    keel::detail::queue_take(*h, platform::Deadline::never(), true, &copy, &c);
    return c;
  }
  char try_get() {
    char c = 0;
    return keel::detail::queue_take(*h, platform::Deadline::never(), false, &copy, &c) ? c : 0;
  }
  // A queue with a history: one message through and out, so both sequence
  // words hold 1 before the threads start. A bump made blind (a store of 1
  // instead of an increment) then leaves a word unchanged, and a waiter that
  // read it before that bump sleeps through it, as on a queue in real use.
  void carry_one() {
    put('h');
    RL_ASSERT(get() == 'h');
  }
  std::uint64_t queued() const {
    return h->tail.load(std::memory_order_relaxed) - h->head.load(std::memory_order_relaxed);
  }
};

// The hook that kills model thread 1 (current_thread_id() 2) at `step`.
template <QueueStep step>
void kill_thread_1(QueueStep s) {
  if (s == step && platform::current_thread_id() == 2) {
    platform::model_dying_thread() = 2;
    throw Died{};
  }
}

// IPC-3, IPC-2: a putter and a getter through a queue of one slot, each
// blocking in turn on the other: FIFO, once each, and every sleeper is woken
// by the publish that lets it on (the slices are endless).
struct Handoff : rl::test_suite<Handoff, 2> {
  Segment seg;
  void before() { seg.make(1); }
  void thread(unsigned idx) {
    if (idx == 0) {
      seg.put('a');
      seg.put('b');
    } else {
      RL_ASSERT(seg.get() == 'a');
      RL_ASSERT(seg.get() == 'b');
    }
  }
  void after() {
    RL_ASSERT(seg.queued() == 0);
    seg.destroy();
  }
};

// IPC-2, IPC-3: a getter may be asleep on an empty queue when a putter dies
// holding the lock right after its publishing store, before it could wake
// anyone. The next locker (a try_put that finds the queue full) takes the
// lock over, and the takeover wakes the getter, which gets the message.
struct TakeoverWakesGetter : rl::test_suite<TakeoverWakesGetter, 3> {
  Segment seg;
  rl::atomic<int> third_put;
  void before() {
    seg.make(1);
    seg.carry_one();
    keel::detail::process_queue_test_hook = &kill_thread_1<QueueStep::put_after_publish>;
    third_put($).store(0, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      const char c = seg.get();
      RL_ASSERT(c == 'a' || c == 'b');
    } else if (idx == 1) {
      try {
        seg.put('a');
        RL_ASSERT(false);  // it dies after publishing
      } catch (const Died&) {
      }
    } else {
      if (seg.try_put('b')) third_put($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    // Both puts that published are there, less the one the getter took.
    RL_ASSERT(seg.queued() == static_cast<std::uint64_t>(third_put($).load(rl::mo_relaxed)));
    seg.destroy();
  }
};

// IPC-2, IPC-3: the mirror: a putter asleep on a full queue when a getter
// dies after consuming; the next locker's takeover (a try_get that finds the
// queue empty) wakes the putter.
struct TakeoverWakesPutter : rl::test_suite<TakeoverWakesPutter, 3> {
  Segment seg;
  rl::atomic<int> third_got;
  void before() {
    seg.make(1);
    seg.carry_one();
    seg.put('x');
    keel::detail::process_queue_test_hook = &kill_thread_1<QueueStep::get_after_publish>;
    third_got($).store(0, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      seg.put('y');
    } else if (idx == 1) {
      try {
        (void)seg.get();
        RL_ASSERT(false);  // it dies after consuming
      } catch (const Died&) {
      }
    } else {
      if (seg.try_get() != 0) third_got($).store(1, rl::mo_relaxed);
    }
  }
  void after() {
    RL_ASSERT(seg.queued() == static_cast<std::uint64_t>(1 - third_got($).load(rl::mo_relaxed)));
    seg.destroy();
  }
};

// IPC-3: two getters asleep on the same word at once, and a putter that lets
// each on in turn: the sleeper count must say two while two sleep, or a
// publish that reads it as none wakes nobody (the slices are endless).
struct TwoSleepers : rl::test_suite<TwoSleepers, 3> {
  Segment seg;
  rl::atomic<int> got[2];
  void before() {
    seg.make(1);
    got[0]($).store(0, rl::mo_relaxed);
    got[1]($).store(0, rl::mo_relaxed);
  }
  void thread(unsigned idx) {
    if (idx == 0) {
      seg.put('a');
      seg.put('b');
    } else {
      got[idx - 1]($).store(seg.get(), rl::mo_relaxed);
    }
  }
  void after() {
    const int a = got[0]($).load(rl::mo_relaxed);
    const int b = got[1]($).load(rl::mo_relaxed);
    RL_ASSERT((a == 'a' && b == 'b') || (a == 'b' && b == 'a'));
    RL_ASSERT(seg.queued() == 0);
    seg.destroy();
  }
};

// IPC-3: size() without the lock is a count the queue had at some moment:
// here never more than one message is queued at once, so it never says 2.
struct SizeSnapshot : rl::test_suite<SizeSnapshot, 3> {
  Segment seg;
  void before() { seg.make(2); }
  void thread(unsigned idx) {
    if (idx == 0) {
      seg.put('a');
    } else if (idx == 1) {
      RL_ASSERT(seg.get() == 'a');
    } else {
      RL_ASSERT(keel::detail::queue_size(*seg.h) <= 1);
      RL_ASSERT(keel::detail::queue_size(*seg.h) <= 1);
    }
  }
  void after() { seg.destroy(); }
};

// IPC-3: a process attaching while the creator writes the header sees no
// queue yet (bad magic) or the whole, valid layout: the magic word is
// stored last, with release, and read with acquire.
struct AttachSeesWhole : rl::test_suite<AttachSeesWhole, 2> {
  Segment seg;
  void before() { seg.construct(); }
  void thread(unsigned idx) {
    if (idx == 0) {
      keel::detail::init_queue(*seg.h, 2, 1);
    } else {
      try {
        keel::detail::validate_queue(*seg.h, Segment::bytes, "model");
        RL_ASSERT(seg.h->capacity.load() == 2);
      } catch (const keel::ValueError& e) {
        RL_ASSERT(std::string_view(e.what()).find("bad magic") != std::string_view::npos);
      }
    }
  }
  void after() { seg.destroy(); }
};

// IPC-3: the same for a SharedList's header: an attacher sees no list yet or
// its whole shape, never a length without its element size.
struct ListAttachSeesWhole : rl::test_suite<ListAttachSeesWhole, 2> {
  alignas(keel::detail::SharedListHeader) unsigned char storage[sizeof(keel::detail::SharedListHeader)];
  keel::detail::SharedListHeader* h = nullptr;
  void before() { h = new (storage) keel::detail::SharedListHeader; }
  void thread(unsigned idx) {
    if (idx == 0) {
      keel::detail::shared_list_publish(*h, 8, 3);
    } else {
      try {
        RL_ASSERT(keel::detail::shared_list_check(*h, keel::detail::shared_list_data_offset + 24, 8, "model") == 3);
      } catch (const keel::ValueError& e) {
        RL_ASSERT(std::string_view(e.what()).find("bad magic") != std::string_view::npos);
      }
    }
  }
  void after() { h->~SharedListHeader(); }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<Handoff>("queue.handoff.2t", "IPC-2,IPC-3", random(100000));
  check<TakeoverWakesGetter>("queue.takeover-wakes-getter.3t", "IPC-2,IPC-3", random(100000));
  check<TakeoverWakesPutter>("queue.takeover-wakes-putter.3t", "IPC-2,IPC-3", random(100000));
  check<TwoSleepers>("queue.two-sleepers.3t", "IPC-3", random(100000));
  check<SizeSnapshot>("queue.size-snapshot.3t", "IPC-3", random(100000));
  check<AttachSeesWhole>("queue.attach-sees-whole.2t", "IPC-3", full());
  check<ListAttachSeesWhole>("list.attach-sees-whole.2t", "IPC-3", full());
  // make verify-deep: the same executions, twenty times as many. (A context
  // bound does not end here: a futex loop that wakes spuriously costs no
  // preemption, so the bounded search space has no end.)
  deep_check<Handoff>("queue.handoff.2t", "IPC-2,IPC-3", random(2000000));
  deep_check<TakeoverWakesGetter>("queue.takeover-wakes-getter.3t", "IPC-2,IPC-3", random(2000000));
  deep_check<TakeoverWakesPutter>("queue.takeover-wakes-putter.3t", "IPC-2,IPC-3", random(2000000));
  deep_check<TwoSleepers>("queue.two-sleepers.3t", "IPC-3", random(2000000));
  deep_check<SizeSnapshot>("queue.size-snapshot.3t", "IPC-3", random(2000000));
  deep_check<AttachSeesWhole>("queue.attach-sees-whole.2t", "IPC-3", full());
  deep_check<ListAttachSeesWhole>("list.attach-sees-whole.2t", "IPC-3", full());
  return exit_code();
}
