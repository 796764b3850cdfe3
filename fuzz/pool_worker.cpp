// Fuzz target pool_worker: the ProcessPool worker loop (the "pool" child
// role) fed a hostile supervisor: valid and malformed calls and chunks,
// errors longer than the message limit, unknown kinds, garbage bytes,
// oversized frames, bad slot indices, bad spawn payloads and slot pages,
// initializers that fail, and start slots that were cancelled, never armed,
// hold a stale word, or are taken back while the worker is busy.
//
// The worker runs in this process on one end of a socketpair, as it would in
// a fresh image, with a page of start slots (proto::SlotPage) the harness
// shares with it, and in half the runs an answer ring in that page (tiny, so
// frames wrap and overflow to the socket); a thread arms the slots and writes the script's frames to
// the other end, and another collects what the worker writes. The frames go
// in bursts: every slot a burst uses is written before the burst is sent,
// and the next burst waits until the worker has answered everything before
// it (it is idle then), so a slot is only reused once its last task is
// settled and every slot decision is deterministic. A task (revoke) that
// kills the slot of a task sent behind it models the supervisor taking a
// task back after sending it, before the worker reaches it. A sequential
// model predicts every frame the worker writes, every task run, the slot
// words left behind and the exit status. Input: a limit, a spawn choice, a
// slot count, then up to 32 operations, each an opcode byte and its operands.
// Checks, after every run:
// - POOL-13 (with a ring; POOL-2 without): every frame the model predicts
//   arrives once, in order, whichever of the ring and the socket carried it;
// - POOL-2 (what the machine relies on): the worker writes ready, then for
//   each task it reads either `skipped` or `started` followed at once by
//   that task's one answer, in the order sent, each with its task's id and
//   slot index in the flags; nothing after `close`; every started task is
//   answered, however the worker ends;
// - POOL-2, POOL-7 (a cancelled task never runs; the start is the slot): the worker starts a task exactly
//   when its slot holds sent(id) for that id, and then moves the slot to
//   started(id) and touches no other; `skipped` is sent exactly for the
//   tasks whose slot it lost (dead, never armed, stale, taken back), and the
//   tasks that run are exactly those the model predicts (every fuzz task
//   records its runs);
// - IPC-1: every frame is well formed and within the limit, notices carry no
//   payload; a malformed call, chunk or argument is an error answer
//   (ProtocolError, ValueError for an unknown name); garbage, an oversized
//   frame or a slot index outside the page end the worker with 72, an
//   unknown kind with 73, a bad spawn payload (or slot count, or a limit
//   below the error reports' room) with 71, fewer than two fds with 70 and a
//   slot page that cannot be mapped with 74: never a crash or a hang;
// - a task's error always reaches the parent as an error answer, however long
//   its message: a worker that cannot report it would die, and the pool would
//   count a lost task instead of the task's own error.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/error.hpp"
#include "keel/process/child.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/frame.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "kernel/src/process_pool/protocol.hpp"

namespace keel::pool {
// The "pool" child role (kernel/src/process_pool/worker.cpp).
int pool_worker_main(const detail::ChildContext& ctx);
}  // namespace keel::pool

namespace {

namespace proto = keel::pool::proto;

// The worker's exit statuses (kernel/src/process_pool/worker.cpp).
constexpr int exit_ok = 0, exit_init_failed = 3, exit_few_fds = 70, exit_bad_spawn = 71, exit_garbage = 72,
              exit_bad_kind = 73, exit_no_slot_page = 74;

// Every run of a fuzz task, in order: (which task, its first argument). The
// worker runs tasks on the target's own thread, so a plain vector does.
enum : std::uint64_t { ran_add = 1, ran_throw, ran_big, ran_revoke, ran_init_ok, ran_init_throws };
using Run = std::pair<std::uint64_t, std::uint64_t>;
std::vector<Run> g_runs;
// The supervisor's mapping of the worker's slot page, for the revoke task.
proto::SlotPage* g_page = nullptr;

const auto add_task = keel::register_task("fuzz.pool_worker.add", [](std::uint64_t a, std::uint64_t b) {
  g_runs.emplace_back(ran_add, a);
  return a + b;
});
const auto throw_task = keel::register_task("fuzz.pool_worker.throw", [](std::uint32_t n) -> int {
  g_runs.emplace_back(ran_throw, n);
  throw std::runtime_error(std::string(n, 'e'));
});
const auto big_task = keel::register_task("fuzz.pool_worker.big", [](std::uint32_t n) {
  g_runs.emplace_back(ran_big, n);
  return std::string(n, 'b');
});
// The supervisor taking a sent task back (sent -> dead, as the driver does on
// a cancel): run by the worker, it kills the slot of a task sent behind it
// that the worker has not reached yet. Returns how many slots it killed.
const auto revoke_task = keel::register_task("fuzz.pool_worker.revoke", [](std::uint64_t target) {
  g_runs.emplace_back(ran_revoke, target);
  std::uint32_t killed = 0;
  for (unsigned i = 0; g_page != nullptr && i < g_page->size(); ++i) {
    std::uint64_t seen = proto::slot_sent(target);
    if ((*g_page)[i].compare_exchange_strong(seen, proto::slot_dead(target), std::memory_order_seq_cst,
                                             std::memory_order_seq_cst))
      ++killed;
  }
  return killed;
});
const auto init_ok = keel::register_task("fuzz.pool_worker.init_ok", [] { g_runs.emplace_back(ran_init_ok, 0); });
const auto init_throws = keel::register_task("fuzz.pool_worker.init_throws", [](std::uint32_t n) {
  g_runs.emplace_back(ran_init_throws, n);
  throw std::length_error(std::string(n, 'i'));
});

// A frame the worker is expected to write.
struct Expected {
  std::uint8_t kind;
  std::uint64_t id;
  std::uint8_t flags;
  std::string ok_payload;  // for ok
  std::string error_type;  // for error / init_failed
};

// One thing the supervisor sends.
struct Op {
  std::uint64_t id = 0;
  std::string bytes;  // appended to the stream
  bool live = false;  // the model's worker still reads when it arrives
  enum { task, close, bad_kind, garbage } what = garbage;
  // For a task (call or chunk):
  std::uint8_t slot = 0;
  std::optional<std::uint64_t> arm;  // the slot's word, written before its burst is sent
  std::uint8_t answer = proto::ok;
  std::string ok_payload;
  std::string error_type;
  std::vector<Run> runs;                // what it runs if it starts
  std::optional<std::uint64_t> revoke;  // the revoke task's target
};

// What the harness sends at once: the slot words first, then the bytes.
struct Burst {
  std::vector<Op> ops;
  std::size_t wait_for = 0;  // frames the worker must have written before it goes
};

bool send_all(int fd, const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

struct GotFrame {
  std::uint8_t kind;
  std::uint8_t flags;
  std::uint64_t id;
  std::string payload;
};

// The supervisor's end: collects the worker's frames as they come, so the
// writer can wait for the worker to be idle. With an answer ring it follows
// PoolDriver's rules (answer_ring.hpp): the ring is taken before each frame
// read from the pipe, bells are not frames, and it sleeps in poll() only
// after arm() said the ring holds nothing; after the pipe's end, the ring is
// taken once more.
class Collector {
 public:
  explicit Collector(std::size_t max) : reader_(max + 64), ring_frames_(max + 64) {}

  void run(int fd, keel::pool::ring::Reader ring = {}) {
    ring_ = ring;
    char buf[65536];
    for (;;) {
      take_ring();
      pollfd p{fd, POLLIN, 0};
      const bool sleep = ring_.arm();
      const int ready = ::poll(&p, 1, sleep ? -1 : 0);
      ring_.disarm();
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) continue;
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (!malformed_.empty()) continue;  // keep draining: the worker must never block on a write
      reader_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
      try {
        while (auto f = reader_.next()) {
          keel::pool::ring::on_pipe_frame(
              ring_, f->kind == proto::bell, keel::frame_header_size + f->payload.size(), [&] { take_ring(); },
              [&] {
                add({f->kind, f->flags, f->id, std::string(f->payload)});
              });
        }
      } catch (const keel::ProtocolError& e) {
        std::lock_guard<std::mutex> lock(m_);
        malformed_ = e.what();
      }
      cv_.notify_all();
    }
    take_ring();
    std::lock_guard<std::mutex> lock(m_);
    eof_ = true;
    partial_ = malformed_.empty() && (reader_.has_partial() || ring_frames_.has_partial());
    cv_.notify_all();
  }

  // Waits until the worker has written `count` frames or its end closed.
  bool wait_for(std::size_t count, std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(m_);
    return cv_.wait_for(lock, limit, [&] { return eof_ || frames_.size() >= count || !malformed_.empty(); });
  }

  // After the reading thread is joined.
  const std::vector<GotFrame>& frames() const { return frames_; }
  const std::string& malformed() const { return malformed_; }
  bool partial() const { return partial_; }

 private:
  void add(GotFrame f) {
    std::lock_guard<std::mutex> lock(m_);
    frames_.push_back(std::move(f));
  }
  // Everything the ring holds, as frames (a malformed one ends the collecting).
  void take_ring() {
    try {
      const std::size_t n = ring_.take([&](std::size_t k) { return ring_frames_.prepare(k).data(); });
      if (n == 0) return;
      ring_frames_.commit(n);
      while (auto f = ring_frames_.next()) add({f->kind, f->flags, f->id, std::string(f->payload)});
    } catch (const keel::ProtocolError& e) {
      std::lock_guard<std::mutex> lock(m_);
      if (malformed_.empty()) malformed_ = std::string("in the answer ring: ") + e.what();
    }
    cv_.notify_all();
  }

  keel::FrameReader reader_;
  keel::pool::ring::Reader ring_;
  keel::FrameReader ring_frames_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<GotFrame> frames_;
  std::string malformed_;
  bool eof_ = false;
  bool partial_ = false;
};

std::string kind_name(std::uint8_t k) {
  switch (k) {
    case proto::ready:
      return "ready";
    case proto::init_failed:
      return "init_failed";
    case proto::ok:
      return "ok";
    case proto::error:
      return "error";
    case proto::started:
      return "started";
    case proto::skipped:
      return "skipped";
    default:
      return "kind " + std::to_string(k);
  }
}

std::string describe(const Expected& e) {
  return kind_name(e.kind) + " id " + std::to_string(e.id) + " slot " + std::to_string(e.flags);
}
std::string describe(const GotFrame& f) {
  return kind_name(f.kind) + " id " + std::to_string(f.id) + " slot " + std::to_string(f.flags);
}

std::string describe(const std::vector<Run>& runs) {
  static const char* names[] = {"?", "add", "throw", "big", "revoke", "init_ok", "init_throws"};
  std::string s = "[";
  for (const auto& [task, arg] : runs) {
    if (s.size() > 1) s += ", ";
    s += std::string(task < std::size(names) ? names[task] : "?") + "(" + std::to_string(arg) + ")";
  }
  return s + "]";
}

}  // namespace

KEEL_FUZZ_TARGET(pool_worker) {
  static constexpr std::size_t limits[] = {keel::min_max_message, 300, 4096, 65536, keel::default_max_frame};
  const std::size_t max = limits[in.below(std::size(limits))];

  std::vector<Expected> want;
  std::vector<Run> want_runs;
  int want_exit = exit_ok;
  std::string why_exit = "the script ended";
  bool ended = false;  // the model's worker has stopped reading

  // ---- the spawn: payload, fds, initializer ----
  enum { two_fds, one_fd, pipe_as_page } fds_choice = two_fds;
  const std::uint8_t spawn = in.byte() % 12;
  proto::SpawnConfig cfg;
  cfg.max_message = max;
  std::string payload_override;
  bool use_override = false;
  std::uint32_t bad_slot_count = 0;
  bool bad_count = false;
  switch (spawn) {
    case 1:
      cfg.init_task = init_ok.name();
      want_runs.emplace_back(ran_init_ok, 0);
      break;
    case 2:
    case 3: {
      cfg.init_task = init_throws.name();
      const std::uint32_t n = in.integral<std::uint16_t>() % (2 * max + 100);
      cfg.init_args = keel::encode(n);
      want_runs.emplace_back(ran_init_throws, n);
      want.push_back({proto::init_failed, 0, 0, {}, "std::length_error"});
      want_exit = exit_init_failed;
      why_exit = "the initializer threw";
      ended = true;
      break;
    }
    case 4:
      cfg.init_task = "fuzz.pool_worker.no_such_init";
      want.push_back({proto::init_failed, 0, 0, {}, "keel::ValueError"});
      want_exit = exit_init_failed;
      why_exit = "the initializer is not registered";
      ended = true;
      break;
    case 5:
      payload_override = std::string(in.bytes(12));  // at most 12 bytes cannot hold a spawn payload
      use_override = true;
      want_exit = exit_bad_spawn;
      why_exit = "the spawn payload does not decode";
      ended = true;
      break;
    case 6: {  // no slots, or more than a flags byte can name
      const std::uint8_t b = in.byte();
      bad_slot_count = b < 128 ? 0u : proto::max_slots + 1u + (b - 128u) * 0x1000000u;
      bad_count = true;
      want_exit = exit_bad_spawn;
      why_exit = "the spawn payload asks for " + std::to_string(bad_slot_count) + " slots";
      ended = true;
      break;
    }
    case 7:  // a limit the worker's error reports do not fit in
      cfg.max_message = in.below(keel::detail::min_error_bytes);
      want_exit = exit_bad_spawn;
      why_exit = "max_message is below min_error_bytes";
      ended = true;
      break;
    case 8:
      fds_choice = one_fd;
      want_exit = exit_few_fds;
      why_exit = "the worker was given one fd";
      ended = true;
      break;
    case 9:
      fds_choice = pipe_as_page;
      want_exit = exit_no_slot_page;
      why_exit = "the slot page's fd cannot be mapped";
      ended = true;
      break;
    default:
      break;
  }
  const unsigned slots = static_cast<unsigned>(in.byte()) + 1;  // 1..256
  cfg.slots = bad_count ? bad_slot_count : slots;
  // With an even slot count, an answer ring in the page, small enough that
  // batches wrap around its end and overflow to the pipe (whose frames the
  // ring then waits for); else every frame goes by pipe.
  static constexpr std::uint32_t ring_sizes[] = {64, 256, 4096};
  const std::uint32_t ring_size = fds_choice == two_fds && slots % 2 == 0 ? ring_sizes[(slots / 2) % 3] : 0;
  cfg.ring = ring_size;
  if (!ended) want.push_back({proto::ready, 0, 0, {}, {}});

  // ---- the script, cut into bursts ----
  std::vector<Burst> bursts(1);
  std::vector<bool> armed_in_burst(slots, false);
  auto next_burst = [&] {
    if (bursts.back().ops.empty()) return;
    bursts.emplace_back();
    armed_in_burst.assign(slots, false);
  };
  const std::size_t ops = in.below(33);
  for (std::size_t i = 0; i < ops && !in.empty(); ++i) {
    Op op;
    op.id = i + 1;
    const std::uint64_t id = op.id;
    op.what = Op::task;
    std::uint8_t kind = proto::call;
    std::string payload;
    enum { armed, dead, stale, bad_index } slot_kind = armed;
    const std::uint8_t opcode = in.byte() % 17;
    switch (opcode) {
      case 0: {
        const auto a = in.integral<std::uint64_t>(), b = in.integral<std::uint64_t>();
        payload = proto::call_payload(add_task.name(), keel::encode(a, b));
        op.ok_payload = keel::encode(a + b);
        op.runs = {{ran_add, a}};
        break;
      }
      case 1: {
        const std::uint32_t n = in.integral<std::uint16_t>() % (2 * max + 100);
        payload = proto::call_payload(throw_task.name(), keel::encode(n));
        op.answer = proto::error;
        op.error_type = "std::runtime_error";
        op.runs = {{ran_throw, n}};
        break;
      }
      case 2: {
        const std::uint32_t n = in.integral<std::uint16_t>() % (2 * max + 100);
        payload = proto::call_payload(big_task.name(), keel::encode(n));
        const std::string result = keel::encode(std::string(n, 'b'));
        if (result.size() <= max) {
          op.ok_payload = result;
        } else {
          op.answer = proto::error;
          op.error_type = "keel::ProtocolError";
        }
        op.runs = {{ran_big, n}};
        break;
      }
      case 3:  // the right name, arguments that do not decode exactly: the task does not run
        payload = proto::call_payload(add_task.name(), in.bytes(20));
        if (payload.size() == 4 + add_task.name().size() + 16) payload.push_back('x');
        op.answer = proto::error;
        op.error_type = "keel::ProtocolError";
        break;
      case 4:
        payload = proto::call_payload("fuzz.pool_worker.no_such_task", keel::encode(std::uint32_t{1}));
        op.answer = proto::error;
        op.error_type = "keel::ValueError";
        break;
      case 5: {  // a name length beyond the payload
        payload = keel::encode(static_cast<std::uint32_t>(1000 + in.byte()));
        payload.append(in.bytes(8));
        op.answer = proto::error;
        op.error_type = "keel::ProtocolError";
        break;
      }
      case 6: {
        kind = proto::chunk;
        std::vector<std::string> calls;
        std::vector<std::pair<bool, std::string>> answers;
        const std::size_t n = in.below(5);
        for (std::size_t c = 0; c < n; ++c) {
          const auto a = in.integral<std::uint32_t>(), b = in.integral<std::uint32_t>();
          calls.push_back(keel::encode(std::uint64_t{a}, std::uint64_t{b}));
          answers.emplace_back(true, keel::encode(std::uint64_t{a} + b));
          op.runs.emplace_back(ran_add, a);
        }
        payload = proto::chunk_payload(add_task.name(), calls);
        op.ok_payload = keel::encode(answers);
        if (op.ok_payload.size() > max) {
          op.answer = proto::error;
          op.error_type = "keel::ProtocolError";
        }
        break;
      }
      case 7:  // a task name longer than the chunk
        kind = proto::chunk;
        payload = keel::encode(std::uint32_t{0xFFFFFFF0}) + in.bytes(16);
        op.answer = proto::error;
        op.error_type = "keel::ProtocolError";
        break;
      case 8:
        kind = proto::close;
        op.what = Op::close;
        break;
      case 9:
        kind = static_cast<std::uint8_t>(20 + in.byte() % 200);
        op.what = Op::bad_kind;
        break;
      case 10:  // bytes that are not a frame (bad magic first)
        op.what = Op::garbage;
        op.bytes = "X" + in.bytes(24);
        break;
      case 11: {  // a frame longer than the worker's reader accepts: the header alone says so
        op.what = Op::garbage;
        keel::append_frame(op.bytes, proto::call, id, "");
        const std::uint32_t length = static_cast<std::uint32_t>(max + 65);
        for (int b = 0; b < 4; ++b) op.bytes[4 + b] = static_cast<char>((length >> (8 * b)) & 0xff);
        break;
      }
      case 12:    // an add whose slot was cancelled (dead) before the worker reached it
      case 13:    // an add whose slot holds a word other than sent(id): never armed, started, stale, anything
      case 16: {  // an add sent with a slot index outside the page
        const auto a = in.integral<std::uint32_t>(), b = in.integral<std::uint32_t>();
        payload = proto::call_payload(add_task.name(), keel::encode(std::uint64_t{a}, std::uint64_t{b}));
        op.ok_payload = keel::encode(std::uint64_t{a} + b);
        op.runs = {{ran_add, a}};
        slot_kind = opcode == 12 ? dead : opcode == 13 ? stale : bad_index;
        break;
      }
      case 14: {  // takes back the task sent 1..4 places behind it
        const std::uint64_t target = id + in.in_range(1, 4);
        payload = proto::call_payload(revoke_task.name(), keel::encode(target));
        op.runs = {{ran_revoke, target}};
        op.revoke = target;
        break;
      }
      default:  // 15: the next frames wait until the worker is idle
        if (!ended) next_burst();
        continue;
    }
    if (op.what == Op::task) {
      if (slot_kind == bad_index) {  // none is left when the page has 256: then it is the last one
        const std::uint8_t past = in.byte();
        op.slot = slots < proto::max_slots ? static_cast<std::uint8_t>(slots + past % (proto::max_slots - slots))
                                           : std::uint8_t{255};
      } else {
        op.slot = static_cast<std::uint8_t>(in.byte() % slots);
      }
      if (op.slot < slots) {
        op.arm = proto::slot_sent(id);
        if (slot_kind == dead) op.arm = proto::slot_dead(id);
        if (slot_kind == stale) {
          switch (in.byte() % 5) {
            case 0:
              op.arm = 0;  // never armed
              break;
            case 1:
              op.arm = proto::slot_started(id);  // the same task sent twice
              break;
            case 2:
              op.arm = proto::slot_sent(id + 1);  // another task's word
              break;
            case 3:
              op.arm = proto::slot_sent(id - 1);
              break;
            default:
              op.arm = in.integral<std::uint64_t>();  // anything (sent(id) runs)
              break;
          }
        }
      }
    } else if (op.what != Op::garbage) {
      op.slot = in.byte();  // the worker ignores the flags of close and of unknown kinds
    }
    if (op.what != Op::garbage) keel::append_frame(op.bytes, kind, id, payload, max + 64, op.slot);

    op.live = !ended;
    if (op.live) {
      if (op.what == Op::close) {
        ended = true;
        want_exit = exit_ok;
        why_exit = "the worker was told to close";
      } else if (op.what == Op::bad_kind) {
        ended = true;
        want_exit = exit_bad_kind;
        why_exit = "frame id " + std::to_string(id) + " has an unknown kind";
      } else if (op.what == Op::garbage) {
        ended = true;
        want_exit = exit_garbage;
        why_exit = "op " + std::to_string(id) + " is garbage or an oversized frame";
      } else if (op.slot >= slots) {
        ended = true;
        want_exit = exit_garbage;
        why_exit = "frame id " + std::to_string(id) + " names slot " + std::to_string(op.slot) + " of " +
                   std::to_string(slots);
      } else {
        // A slot is armed once per burst: its next task waits until the worker is idle.
        if (armed_in_burst[op.slot]) next_burst();
        armed_in_burst[op.slot] = true;
      }
    }
    bursts.back().ops.push_back(std::move(op));
  }

  // ---- the model: the worker's frames, runs and slot words, burst by burst ----
  std::vector<std::uint64_t> model_slots(slots, 0);
  for (Burst& burst : bursts) {
    burst.wait_for = want.size();
    for (const Op& op : burst.ops) {
      if (op.live && op.arm) model_slots[op.slot] = *op.arm;
    }
    for (const Op& op : burst.ops) {
      if (!op.live || op.what != Op::task || op.slot >= slots) {
        continue;
      }
      if (model_slots[op.slot] != proto::slot_sent(op.id)) {
        want.push_back({proto::skipped, op.id, op.slot, {}, {}});
        continue;
      }
      model_slots[op.slot] = proto::slot_started(op.id);
      want.push_back({proto::started, op.id, op.slot, {}, {}});
      want_runs.insert(want_runs.end(), op.runs.begin(), op.runs.end());
      Expected e{op.answer, op.id, op.slot, op.ok_payload, op.error_type};
      if (op.revoke) {
        std::uint32_t killed = 0;
        for (auto& w : model_slots) {
          if (w == proto::slot_sent(*op.revoke)) {
            w = proto::slot_dead(*op.revoke);
            ++killed;
          }
        }
        e.ok_payload = keel::encode(killed);
      }
      want.push_back(std::move(e));
    }
  }

  // ---- the run ----
  g_runs.clear();
  proto::SlotPage page = proto::SlotPage::create(slots, ring_size);
  int sv[2];
  KEEL_FUZZ_CHECK("harness", ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair failed");
  int page_fd = -1, pipe_end = -1;
  if (fds_choice == two_fds) {
    page_fd = ::fcntl(page.fd(), F_DUPFD_CLOEXEC, 0);  // the worker takes it
  } else if (fds_choice == pipe_as_page) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      page_fd = p[0];  // the worker takes it
      pipe_end = p[1];
    }
  }
  const bool fds_ok = fds_choice == one_fd || page_fd >= 0;
  if (!fds_ok) {
    ::close(sv[0]);
    ::close(sv[1]);
    KEEL_FUZZ_CHECK("harness", false, "could not make the slot page's fd");
  }
  keel::detail::ChildContext ctx;
  ctx.role = "pool";
  ctx.payload = use_override ? payload_override : proto::encode_spawn(cfg);
  ctx.fds = {sv[1]};
  if (fds_choice != one_fd) ctx.fds.push_back(page_fd);

  g_page = &page;
  Collector collector(max);
  bool gave_up_waiting = false;
  std::thread writer([&] {
    for (std::size_t b = 0; b < bursts.size(); ++b) {
      const Burst& burst = bursts[b];
      if (b > 0 && !gave_up_waiting && !collector.wait_for(burst.wait_for, std::chrono::seconds(5))) {
        gave_up_waiting = true;  // the worker is stuck or wrote less: the checks below say what
      }
      std::string bytes;
      for (const Op& op : burst.ops) {
        if (op.live && op.arm) page[op.slot].store(*op.arm, std::memory_order_seq_cst);
        bytes += op.bytes;
      }
      if (!send_all(sv[0], bytes)) break;
    }
    ::shutdown(sv[0], SHUT_WR);
  });
  std::thread reader([&] { collector.run(sv[0], page.ring_reader()); });
  const int status = keel::pool::pool_worker_main(ctx);
  ::close(sv[1]);  // the worker's process would exit here; the reader sees EOF
  writer.join();
  reader.join();
  ::close(sv[0]);
  g_page = nullptr;
  if (status == exit_bad_spawn && page_fd >= 0) ::close(page_fd);  // refused before it took the page
  if (pipe_end >= 0) ::close(pipe_end);
  std::vector<std::uint64_t> final_slots(slots);
  for (unsigned i = 0; i < slots; ++i) final_slots[i] = page[i].load(std::memory_order_seq_cst);
  const std::vector<Run> runs = std::move(g_runs);
  g_runs.clear();

  // ---- the checks ----
  KEEL_FUZZ_CHECK("IPC-1", status == want_exit,
                  "worker exit status " + std::to_string(status) + ", expected " + std::to_string(want_exit) + " (" +
                      why_exit + ")");
  KEEL_FUZZ_CHECK("IPC-1", collector.malformed().empty(),
                  "the worker wrote a malformed frame: " + collector.malformed());
  const auto& got = collector.frames();

  // The shape, whatever the model says: notices and answers pair up.
  for (std::size_t i = 0; i < got.size(); ++i) {
    const GotFrame& f = got[i];
    const std::string where = "frame " + std::to_string(i + 1) + " (" + describe(f) + ")";
    KEEL_FUZZ_CHECK("IPC-1", f.payload.size() <= max, where + ": payload above the limit");
    if (f.kind == proto::started || f.kind == proto::skipped) {
      KEEL_FUZZ_CHECK("IPC-1", f.payload.empty(), where + ": a notice with a payload");
    }
    if (f.kind == proto::started) {
      KEEL_FUZZ_CHECK(
          "POOL-2", i + 1 < got.size(),
          where + ": a started task was never answered (the worker exited with " + std::to_string(status) + ")");
      const GotFrame& a = got[i + 1];
      KEEL_FUZZ_CHECK("POOL-2", (a.kind == proto::ok || a.kind == proto::error) && a.id == f.id && a.flags == f.flags,
                      where + ": followed by " + describe(a) + ", not its answer");
    }
    if (f.kind == proto::ok || f.kind == proto::error) {
      KEEL_FUZZ_CHECK("POOL-2", i > 0 && got[i - 1].kind == proto::started && got[i - 1].id == f.id,
                      where + ": an answer to a task the worker did not say it started");
    }
  }

  // The model, frame by frame. Through an answer ring, a frame missing,
  // repeated or out of order is the ring's failure (POOL-13) before the
  // worker's (POOL-2).
  const char* const order = ring_size ? "POOL-13" : "POOL-2";
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const GotFrame& f = got[i];
    const Expected& e = want[i];
    const std::string where = "frame " + std::to_string(i + 1) + " (" + describe(f) + ")";
    if (e.kind == proto::skipped && f.kind == proto::started && f.id == e.id) {
      KEEL_FUZZ_CHECK("POOL-7", false,
                      where + ": the worker started a task whose slot did not hold sent(" + std::to_string(e.id) + ")");
    }
    if (e.kind == proto::started && f.kind == proto::skipped && f.id == e.id) {
      KEEL_FUZZ_CHECK("POOL-7", false,
                      where + ": the worker skipped a task whose slot held sent(" + std::to_string(e.id) + ")");
    }
    KEEL_FUZZ_CHECK(order, f.kind == e.kind && f.id == e.id && f.flags == e.flags,
                    where + ": expected " + describe(e) +
                        (ring_size ? " (answer ring of " + std::to_string(ring_size) + " bytes)" : ""));
    if (e.kind == proto::ok) {
      KEEL_FUZZ_CHECK("POOL-2", f.payload == e.ok_payload, where + ": wrong result");
    } else if (e.kind == proto::error || e.kind == proto::init_failed) {
      try {
        const keel::RemoteError r = keel::detail::decode_error(f.payload);
        KEEL_FUZZ_CHECK("IPC-1", r.type() == e.error_type,
                        where + ": error type " + r.type() + ", expected " + e.error_type);
      } catch (const keel::ProtocolError& x) {
        KEEL_FUZZ_CHECK("IPC-1", false, where + ": the error report does not decode: " + x.what());
      }
    }
  }
  KEEL_FUZZ_CHECK(order, got.size() <= want.size(),
                  "frame " + std::to_string(want.size() + 1) + " (" + describe(got[want.size()]) +
                      "): a frame nobody asked for (" + why_exit + ")");
  KEEL_FUZZ_CHECK(order, got.size() == want.size(),
                  "the worker wrote " + std::to_string(got.size()) + " frames, expected " +
                      std::to_string(want.size()) + "; the first missing is " + describe(want[got.size()]) +
                      (gave_up_waiting ? " (the harness gave up waiting for it)" : ""));
  KEEL_FUZZ_CHECK("IPC-1", !collector.partial(), "the worker's last frame is incomplete");

  // What ran: a task whose slot the worker did not win never runs.
  KEEL_FUZZ_CHECK("POOL-2", runs == want_runs,
                  "the tasks that ran were " + describe(runs) + ", expected " + describe(want_runs));
  // The slot words: the worker moved exactly the slots it won, sent -> started.
  for (unsigned i = 0; i < slots; ++i) {
    KEEL_FUZZ_CHECK("POOL-7", final_slots[i] == model_slots[i],
                    "slot " + std::to_string(i) + " holds " + std::to_string(final_slots[i]) + ", expected " +
                        std::to_string(model_slots[i]));
  }
}
