// Fuzz target pool_worker: the ProcessPool worker loop (the "pool" child
// role) fed a hostile supervisor: valid and malformed calls, chunks, errors
// longer than the message limit, unknown kinds, garbage bytes, oversized
// frames, a bad spawn payload and initializers that fail.
//
// The worker runs in this process on one end of a socketpair, as it would in
// a fresh image; a thread writes the script's bytes to the other end and
// another collects the answers. A sequential model predicts every answer
// and the exit status. Input: a limit and an initializer choice, then up to
// 32 operations, each an opcode byte and its operands.
// Checks, after every run:
// - POOL-2 (what the machine relies on): one answer per call or chunk, in the
//   order sent, each with its task's id, and nothing after `close`;
// - IPC-1: every answer is a well-formed frame within the limit; a malformed
//   call, chunk or argument is an error answer (ProtocolError, ValueError for
//   an unknown name), and garbage or an oversized frame ends the worker with
//   its documented status, never a crash or a hang;
// - a task's error always reaches the parent as an error answer, however long
//   its message: a worker that cannot report it would die, and the pool would
//   count a lost task instead of the task's own error.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
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

namespace {

// The frame kinds of the pool's private protocol (kernel/src/process_pool/protocol.hpp).
constexpr std::uint8_t k_call = 2, k_chunk = 3, k_close = 4, k_ready = 10, k_init_failed = 11, k_ok = 12, k_error = 13;
// The worker's exit statuses (kernel/src/process_pool/worker.cpp).
constexpr int exit_ok = 0, exit_init_failed = 3, exit_bad_spawn = 71, exit_garbage = 72, exit_bad_kind = 73;

const auto add_task =
    keel::register_task("fuzz.pool_worker.add", [](std::uint64_t a, std::uint64_t b) { return a + b; });
const auto throw_task = keel::register_task(
    "fuzz.pool_worker.throw", [](std::uint32_t n) -> int { throw std::runtime_error(std::string(n, 'e')); });
const auto big_task = keel::register_task("fuzz.pool_worker.big", [](std::uint32_t n) { return std::string(n, 'b'); });
const auto init_ok = keel::register_task("fuzz.pool_worker.init_ok", [] {});
const auto init_throws = keel::register_task("fuzz.pool_worker.init_throws",
                                             [](std::uint32_t n) { throw std::length_error(std::string(n, 'i')); });

struct Expected {
  std::uint8_t kind;
  std::uint64_t id;
  std::string ok_payload;  // for k_ok
  std::string error_type;  // for k_error / k_init_failed
  std::optional<std::string> error_message;
};

std::string call_payload(std::string_view name, std::string_view args) {
  std::string p = keel::encode(static_cast<std::uint32_t>(name.size()));
  p.append(name);
  p.append(args);
  return p;
}

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

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace

KEEL_FUZZ_TARGET(pool_worker) {
  // The pool's worker role lives in process_pool.cpp: referring to the pool
  // links it in.
  [[maybe_unused]] volatile auto keep = &keel::ProcessPool::worker_pids;
  const keel::detail::ChildRole worker = keel::detail::find_child_role("pool");
  KEEL_FUZZ_CHECK("harness", worker != nullptr, "the pool's worker role is not registered");

  static constexpr std::size_t limits[] = {keel::min_max_message, 300, 4096, 65536, keel::default_max_frame};
  const std::size_t max = limits[in.below(std::size(limits))];

  keel::detail::ChildContext ctx;
  ctx.role = "pool";
  std::vector<Expected> want;
  int want_exit = exit_ok;
  bool ended = false;  // the model's worker has stopped reading

  const std::uint8_t init = in.byte() % 8;
  std::string init_name, init_args;
  if (init == 1) init_name = init_ok.name();
  if (init == 2 || init == 3) {
    init_name = init_throws.name();
    const std::uint32_t n = in.integral<std::uint16_t>() % (2 * max + 100);
    init_args = keel::encode(n);
    want.push_back({k_init_failed, 0, {}, "std::length_error", std::nullopt});
    want_exit = exit_init_failed;
    ended = true;
  }
  if (init == 4) {
    init_name = "fuzz.pool_worker.no_such_init";
    want.push_back({k_init_failed, 0, {}, "keel::ValueError", std::nullopt});
    want_exit = exit_init_failed;
    ended = true;
  }
  if (init == 5) {
    ctx.payload = std::string(in.bytes(12));  // not a spawn payload: at most 12 bytes cannot hold one
    want_exit = exit_bad_spawn;
    ended = true;
  } else {
    ctx.payload = keel::encode(init_name, init_args, static_cast<std::uint64_t>(max));
  }
  if (!ended) want.push_back({k_ready, 0, {}, {}, std::nullopt});

  std::string stream;
  const std::size_t ops = in.below(33);
  for (std::size_t i = 0; i < ops && !in.empty(); ++i) {
    const std::uint64_t id = i + 1;
    const std::uint8_t op = in.byte() % 12;
    Expected e{k_ok, id, {}, {}, std::nullopt};
    std::uint8_t kind = k_call;
    std::string payload;
    bool raw = false;
    switch (op) {
      case 0: {
        const auto a = in.integral<std::uint64_t>(), b = in.integral<std::uint64_t>();
        payload = call_payload(add_task.name(), keel::encode(a, b));
        e.ok_payload = keel::encode(a + b);
        break;
      }
      case 1: {
        const std::uint32_t n = in.integral<std::uint16_t>() % (2 * max + 100);
        payload = call_payload(throw_task.name(), keel::encode(n));
        e.kind = k_error;
        e.error_type = "std::runtime_error";
        break;
      }
      case 2: {
        const std::uint32_t n = in.integral<std::uint16_t>() % (2 * max + 100);
        payload = call_payload(big_task.name(), keel::encode(n));
        const std::string result = keel::encode(std::string(n, 'b'));
        if (result.size() <= max) {
          e.ok_payload = result;
        } else {
          e.kind = k_error;
          e.error_type = "keel::ProtocolError";
        }
        break;
      }
      case 3:  // the right name, arguments that do not decode exactly
        payload = call_payload(add_task.name(), in.bytes(20));
        if (payload.size() == 4 + add_task.name().size() + 16) payload.push_back('x');
        e.kind = k_error;
        e.error_type = "keel::ProtocolError";
        break;
      case 4:
        payload = call_payload("fuzz.pool_worker.no_such_task", keel::encode(std::uint32_t{1}));
        e.kind = k_error;
        e.error_type = "keel::ValueError";
        break;
      case 5: {  // a name length beyond the payload
        payload = keel::encode(static_cast<std::uint32_t>(1000 + in.byte()));
        payload.append(in.bytes(8));
        e.kind = k_error;
        e.error_type = "keel::ProtocolError";
        break;
      }
      case 6: {
        kind = k_chunk;
        std::vector<std::string> calls;
        std::vector<std::pair<bool, std::string>> answers;
        const std::size_t n = in.below(5);
        for (std::size_t c = 0; c < n; ++c) {
          const auto a = in.integral<std::uint32_t>(), b = in.integral<std::uint32_t>();
          calls.push_back(keel::encode(std::uint64_t{a}, std::uint64_t{b}));
          answers.emplace_back(true, keel::encode(std::uint64_t{a} + b));
        }
        payload = keel::encode(add_task.name(), calls);
        e.ok_payload = keel::encode(answers);
        if (e.ok_payload.size() > max) {
          e.kind = k_error;
          e.error_type = "keel::ProtocolError";
        }
        break;
      }
      case 7:  // a task name longer than the chunk
        kind = k_chunk;
        payload = keel::encode(std::uint32_t{0xFFFFFFF0}) + in.bytes(16);
        e.kind = k_error;
        e.error_type = "keel::ProtocolError";
        break;
      case 8:
        kind = k_close;
        break;
      case 9:
        kind = static_cast<std::uint8_t>(20 + in.byte() % 200);
        break;
      case 10:  // bytes that are not a frame (bad magic first)
        raw = true;
        payload = "X" + in.bytes(24);
        break;
      default: {  // a frame longer than the worker's reader accepts: the header alone says so
        raw = true;
        std::string header;
        keel::append_frame(header, k_call, id, "");
        const std::uint32_t length = static_cast<std::uint32_t>(max + 65);
        for (int b = 0; b < 4; ++b) header[4 + b] = static_cast<char>((length >> (8 * b)) & 0xff);
        payload = header;
        break;
      }
    }
    if (raw) {
      stream += payload;
    } else {
      keel::append_frame(stream, kind, id, payload, max + 64);
    }
    if (ended) continue;
    if (raw) {
      want_exit = exit_garbage;
      ended = true;
    } else if (kind == k_close) {
      want_exit = exit_ok;
      ended = true;
    } else if (kind != k_call && kind != k_chunk) {
      want_exit = exit_bad_kind;
      ended = true;
    } else {
      want.push_back(std::move(e));
    }
  }

  int sv[2];
  KEEL_FUZZ_CHECK("harness", ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair failed");
  ctx.fds = {sv[1]};
  std::thread writer([&] {
    send_all(sv[0], stream);
    ::shutdown(sv[0], SHUT_WR);
  });
  std::string answers;
  std::thread reader([&] { answers = read_all(sv[0]); });
  const int status = worker(ctx);
  ::close(sv[1]);  // the worker's process would exit here; the reader sees EOF
  writer.join();
  reader.join();
  ::close(sv[0]);

  KEEL_FUZZ_CHECK("IPC-1", status == want_exit,
                  "worker exit status " + std::to_string(status) + ", expected " + std::to_string(want_exit));
  keel::FrameReader frames(max + 64);
  frames.feed(answers);
  std::size_t got = 0;
  for (;;) {
    std::optional<keel::FrameView> f;
    try {
      f = frames.next();
    } catch (const keel::ProtocolError& e) {
      KEEL_FUZZ_CHECK("IPC-1", false, std::string("the worker wrote a malformed frame: ") + e.what());
    }
    if (!f) break;
    KEEL_FUZZ_CHECK("POOL-2", got < want.size(), "an answer nobody asked for (kind " + std::to_string(f->kind) + ")");
    const Expected& e = want[got++];
    const std::string where = "answer " + std::to_string(got) + " (id " + std::to_string(e.id) + ")";
    KEEL_FUZZ_CHECK("POOL-2", f->kind == e.kind && f->id == e.id,
                    where + ": kind " + std::to_string(f->kind) + " id " + std::to_string(f->id) + ", expected kind " +
                        std::to_string(e.kind));
    KEEL_FUZZ_CHECK("IPC-1", f->payload.size() <= max, where + ": payload above the limit");
    if (e.kind == k_ok) {
      KEEL_FUZZ_CHECK("POOL-2", f->payload == e.ok_payload, where + ": wrong result");
    } else if (e.kind == k_error || e.kind == k_init_failed) {
      try {
        const keel::RemoteError r = keel::detail::decode_error(f->payload);
        KEEL_FUZZ_CHECK("IPC-1", r.type() == e.error_type,
                        where + ": error type " + r.type() + ", expected " + e.error_type);
      } catch (const keel::ProtocolError& x) {
        KEEL_FUZZ_CHECK("IPC-1", false, where + ": the error report does not decode: " + x.what());
      }
    }
  }
  KEEL_FUZZ_CHECK("POOL-2", got == want.size(),
                  "the worker gave " + std::to_string(got) + " answers, expected " + std::to_string(want.size()));
  KEEL_FUZZ_CHECK("IPC-1", !frames.has_partial(), "the worker's last frame is incomplete");
}
