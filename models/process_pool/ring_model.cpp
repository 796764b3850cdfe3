// Relacy model of a ProcessPool worker's answer ring: the shipped Writer,
// Reader, send() and on_pipe_frame() (kernel/src/process_pool/answer_ring.hpp)
// over a ring in plain memory, the worker as one thread and the supervisor
// as another. The answer pipe is the model's own: a queue of writes under a
// keel::Mutex, with a keel::Condition for the supervisor's poll(), which it
// sleeps in only when every arm() said nothing waits, as PoolDriver::turn
// does. The ring's bytes are platform::Byte, so a byte read before its
// publication, or overwritten before the supervisor copied it out, is a
// data race at the kernel's line.
//
// The worker sends messages of several sizes into a ring smaller than their
// sum: they wrap around its end, some find no room and go by pipe, one is
// larger than the ring and always goes by pipe, and later ones return to the
// ring once the pipe's are handled. Each message carries its sequence number
// and a pattern derived from it.
//
// Checks: POOL-13 (the supervisor handles every message once, whole and in
// the order sent; it is never left asleep while a message waits: Relacy
// reports the deadlock).
//
// KEEL-TWIN ring_publish_relaxed pool.ring.messages.2t
// KEEL-TWIN ring_head_relaxed pool.ring.messages.2t
// KEEL-TWIN ring_skip_bell pool.ring.messages.2t
// KEEL-TWIN ring_arm_skips_recheck pool.ring.messages.2t
// KEEL-TWIN ring_ignores_pipe_order pool.ring.messages.2t
// KEEL-TWIN ring_pipe_frame_first pool.ring.messages.2t
// KEEL-TWIN ring_publish_release pool.ring.messages.2t
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"
// After the harness (the shim's Relacy backend first), as every model.
#include "../../kernel/src/process_pool/answer_ring.hpp"
#include "keel/sync/condition.hpp"
#include "keel/sync/mutex.hpp"

namespace {

namespace ring = keel::pool::ring;

// A message: its length, its sequence number, then a pattern of both.
std::string message(unsigned seq, unsigned size) {
  std::string m(size, '\0');
  m[0] = static_cast<char>(size);
  m[1] = static_cast<char>(seq);
  for (unsigned i = 2; i < size; ++i) m[i] = static_cast<char>(seq * 31 + i);
  return m;
}

// The bell: no message is one byte long.
const std::string& bell() {
  static const std::string b(1, '\x7f');
  return b;
}

// The answer pipe: whole writes, in order; poll() waits for one.
class Pipe {
 public:
  bool write(std::string_view bytes) {
    keel::LockGuard<keel::Mutex> g(m_);
    writes_.emplace_back(bytes);
    cv_.notify_all();
    return true;
  }
  // poll() then read(): with `sleep`, waits until a write is there; takes them all.
  std::vector<std::string> read(bool sleep) {
    keel::LockGuard<keel::Mutex> g(m_);
    if (sleep) {
      while (writes_.empty()) cv_.wait();
    }
    std::vector<std::string> out(writes_.begin(), writes_.end());
    writes_.clear();
    return out;
  }

 private:
  keel::Mutex m_;
  keel::Condition cv_{m_};
  std::deque<std::string> writes_;
};

// Capacity 16: 5 + 7 fill most of it, 6 may not fit and 20 never does; 3,
// 4 and 5 come after a pipe message and wrap around the end.
struct Long {
  static constexpr unsigned capacity = 16;
  static constexpr unsigned sizes[] = {5, 7, 6, 20, 3, 4, 5};
};
// Small enough for a context-bounded search: a message too large for the
// ring, and one after it that wraps around the ring's end.
struct Short {
  static constexpr unsigned capacity = 8;
  static constexpr unsigned sizes[] = {5, 9, 4};
};

template <unsigned Capacity>
struct Ring {
  ring::Header header;
  keel::platform::Byte data[Capacity];
  ring::Writer writer() { return {&header, data, Capacity}; }
  ring::Reader reader() { return {&header, data, Capacity}; }
};

// The worker sends Shape::sizes in order; the supervisor handles them as
// the driver does.
template <class Shape>
struct Messages : rl::test_suite<Messages<Shape>, 2> {
  static constexpr unsigned capacity = Shape::capacity;
  static constexpr auto& sizes = Shape::sizes;
  static constexpr unsigned count = sizeof Shape::sizes / sizeof Shape::sizes[0];
  Ring<capacity> shared;
  Pipe pipe;

  void thread(unsigned idx) {
    if (idx == 0) {
      worker();
    } else {
      supervisor();
    }
  }

  void worker() {
    ring::Writer w = shared.writer();
    for (unsigned i = 0; i < count; ++i) {
      RL_ASSERT(ring::send(w, message(i, sizes[i]), bell(), [&](std::string_view b) { return pipe.write(b); }));
    }
  }

  void supervisor() {
    ring::Reader r = shared.reader();
    std::string taken;  // bytes taken from the ring, not yet a whole message
    unsigned handled = 0;
    auto handle = [&](std::string_view m) {
      RL_ASSERT(handled < count);
      RL_ASSERT(m == message(handled, sizes[handled]));
      ++handled;
    };
    auto drain = [&] {
      const std::size_t n = r.take([&](std::size_t k) {
        taken.resize(taken.size() + k);
        return taken.data() + taken.size() - k;
      });
      (void)n;
      while (taken.size() >= 2 && taken.size() >= static_cast<unsigned char>(taken[0])) {
        const std::size_t len = static_cast<unsigned char>(taken[0]);
        handle(std::string_view(taken).substr(0, len));
        taken.erase(0, len);
      }
    };
    while (handled < count) {
      drain();
      if (handled == count) break;
      const bool sleep = r.arm();
      const std::vector<std::string> got = pipe.read(sleep);
      r.disarm();
      for (const std::string& b : got) {
        ring::on_pipe_frame(r, b == bell(), b.size(), drain, [&] { handle(b); });
      }
    }
    RL_ASSERT(taken.empty());
  }
};

}  // namespace

int main() {
  using namespace keel::model;
  check<Messages<Long>>("pool.ring.messages.2t", "POOL-13", random(100000));
  check<Messages<Short>>("pool.ring.messages-short.2t", "POOL-13", bounded(2));
  // Every interleaving with up to three preemptions: 2.5M of them, 16 s.
  deep_check<Messages<Short>>("pool.ring.messages-short-cb3.2t", "POOL-13", bounded(3));
  // The long messages wrap the ring, which the short ones do not: a head
  // stored without release (ring_head_relaxed) shows only there, so the deep
  // run has its own, ten times longer, random search of them.
  deep_check<Messages<Long>>("pool.ring.messages.2t", "POOL-13", random(1000000));
  return exit_code();
}
