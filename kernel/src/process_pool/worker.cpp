// The ProcessPool worker: the "pool" child role. It runs in a fresh image of
// the program (or a forked child), with its channel from the supervisor at
// ctx.fds[0], its page of start slots (and answer ring, when the spawn
// payload gives it a size) at ctx.fds[1] and the pipe its frames go back on
// at ctx.fds[2] (without one, they go back on the channel). Its frames go
// into the ring when they fit, else on the pipe (Outbox). It runs the
// initializer, says ready, then takes the frames it is sent in order: it
// starts a task only by winning its slot (sent -> started), says started,
// runs it and answers it before it takes the next; a task whose slot it lost
// (dead: cancelled or taken back) it skips and says so. It stops when told
// to close or when the channel ends (the parent is gone). A task that throws
// is an answer (an encoded error); one that kills the process is the
// supervisor's business. See protocol.hpp.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "../process/fd.hpp"
#include "keel/process/child.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/frame.hpp"
#include "keel/process/task.hpp"
#include "protocol.hpp"

namespace keel::pool {

namespace {

// Blocking write of the whole buffer; false if the parent is gone.
bool write_all(int fd, std::string_view bytes) { return detail::write_all(fd, bytes) == 0; }

// Where the worker's frames go: the answer ring when the parent gave one and
// they fit (answer_ring.hpp), with a bell on the pipe if the parent may be
// asleep; else the pipe. Either way they are the parent's once sent: a
// frame in the ring outlives this process as one in the pipe does.
class Outbox {
 public:
  Outbox(int pipe, ring::Writer ring) : pipe_(pipe), ring_(ring) { append_frame(bell_, proto::bell, 0, {}); }
  // Sends `out` and clears it; false if the parent is gone.
  bool flush(std::string& out) {
    const bool ok = ring::send(ring_, out, bell_, [this](std::string_view b) { return write_all(pipe_, b); });
    out.clear();
    return ok;
  }

 private:
  int pipe_;
  ring::Writer ring_;
  std::string bell_;
};

// The error report for the exception being handled, cut to fit the limit:
// a task's failure must reach the parent as its own error, not as a worker
// that died trying to report it.
std::string current_error(std::size_t max) { return detail::encode_error(std::current_exception(), max); }

// A result too large for the channel becomes the task's error instead.
std::string oversized(std::string_view what, std::size_t size, std::size_t max) {
  return detail::encode_error(
      std::make_exception_ptr(ProtocolError("keel: " + std::string(what) + " is " + std::to_string(size) +
                                            " bytes encoded, above the pool's max_message of " + std::to_string(max))),
      max);
}

// Appends the answer to one call: ok with the result, or the error.
void answer(std::string& out, std::uint64_t id, std::uint8_t slot, std::string_view name, std::string_view args,
            std::size_t max) {
  std::string result;
  bool ok = true;
  try {
    result = detail::invoke_task(name, args);
  } catch (...) {
    ok = false;
    result = current_error(max);
  }
  if (ok && result.size() > max) {
    ok = false;
    result = oversized("the result of task '" + std::string(name) + "'", result.size(), max);
  }
  append_frame(out, ok ? proto::ok : proto::error, id, result, max, slot);
}

void answer_chunk(std::string& out, std::uint64_t id, std::uint8_t slot, std::string_view payload, std::size_t max) {
  std::string all;
  try {
    all = proto::run_chunk(payload, max);
  } catch (...) {
    append_frame(out, proto::error, id, current_error(max), max, slot);
    return;
  }
  if (all.size() > max) {
    append_frame(out, proto::error, id, oversized("the results of a chunk", all.size(), max), max, slot);
  } else {
    append_frame(out, proto::ok, id, all, max, slot);
  }
}

}  // namespace

int pool_worker_main(const detail::ChildContext& ctx) {
  if (ctx.fds.size() < 2) return 70;
  const int fd = ctx.fds[0];
  // Frames go back on the answer pipe when the parent gave one (the pool
  // always does), else on the channel itself.
  const int back = ctx.fds.size() >= 3 ? ctx.fds[2] : fd;
  std::string out;
  std::size_t max = default_max_frame;
  proto::SlotPage slots;
  proto::SpawnConfig cfg;
  try {
    cfg = proto::decode_spawn(ctx.payload);
    max = static_cast<std::size_t>(cfg.max_message);
    // The pool never asks for less (ProcessPoolOptions::max_message); the
    // error reports below need the room.
    if (max < detail::min_error_bytes) return 71;
    slots = proto::SlotPage::attach(ctx.fds[1], cfg.slots, cfg.ring);
  } catch (const ProtocolError&) {
    return 71;
  } catch (const OsError&) {
    return 74;
  }
  Outbox box(back, slots.ring_writer());
  if (!cfg.init_task.empty()) {
    try {
      detail::invoke_task(cfg.init_task, cfg.init_args);
    } catch (...) {
      append_frame(out, proto::init_failed, 0, current_error(max), max);
      box.flush(out);
      return 3;
    }
  }
  append_frame(out, proto::ready, 0, {}, max);
  if (!box.flush(out)) return 0;

  FrameReader reader(max + 64);
  for (;;) {
    std::optional<FrameView> f;
    try {
      f = reader.next();
    } catch (const ProtocolError&) {
      // The parent sent garbage: nothing sensible is left to do, but what was
      // answered is still said.
      box.flush(out);
      return 72;
    }
    if (!f) {
      auto span = reader.prepare(std::size_t{64} * 1024);
      if (!out.empty()) {
        // An answer is waiting: if the next task is already here, its start
        // notice rides in the same write; otherwise the answer goes now.
        const ssize_t n = ::recv(fd, span.data(), span.size(), MSG_DONTWAIT);
        if (n > 0) {
          reader.commit(static_cast<std::size_t>(n));
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (!box.flush(out)) return 0;
        if (n == 0) return 0;
        span = reader.prepare(std::size_t{64} * 1024);
      }
      const ssize_t n = ::read(fd, span.data(), span.size());
      if (n == 0) return 0;  // the supervisor closed the channel: the pool is gone
      if (n < 0) {
        if (errno == EINTR) continue;
        return 0;
      }
      reader.commit(static_cast<std::size_t>(n));
      continue;
    }
    if (f->kind == proto::close) {
      box.flush(out);
      return 0;
    }
    if (f->kind != proto::call && f->kind != proto::chunk) {
      box.flush(out);
      return 73;
    }
    if (f->flags >= slots.size()) {
      box.flush(out);
      return 72;
    }
    // Winning the task's start slot is the one moment that decides whether it runs.
    if (!proto::try_start(slots[f->flags], f->id)) {
      append_frame(out, proto::skipped, f->id, {}, max, f->flags);
      continue;
    }
    append_frame(out, proto::started, f->id, {}, max, f->flags);
    if (!box.flush(out)) return 0;
    if (f->kind == proto::call) {
      proto::CallView call;
      try {
        call = proto::decode_call(f->payload);
      } catch (...) {
        append_frame(out, proto::error, f->id, current_error(max), max, f->flags);
        continue;
      }
      answer(out, f->id, f->flags, call.name, call.args, max);
    } else {
      answer_chunk(out, f->id, f->flags, f->payload, max);
    }
  }
}

}  // namespace keel::pool
