// The ProcessPool worker: the "pool" child role. It runs in a fresh image of
// the program (or a forked child), with its channel to the supervisor at
// ctx.fds[0]. It runs the initializer, says ready, then runs the tasks it is
// sent in order, writing each answer before it reads on, until it is told to
// close or the channel ends (the parent is gone). A task that throws is an
// answer (an encoded error); one that kills the process is the supervisor's
// business.
#include <unistd.h>

#include <cerrno>
#include <string>

#include "keel/process/child.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/frame.hpp"
#include "keel/process/task.hpp"
#include "protocol.hpp"

namespace keel::pool {

namespace {

// Blocking write of the whole buffer; false if the parent is gone.
bool write_all(int fd, const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

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
void answer(std::string& out, std::uint64_t id, std::string_view name, std::string_view args, std::size_t max) {
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
  append_frame(out, ok ? proto::ok : proto::error, id, result, max);
}

void answer_chunk(std::string& out, std::uint64_t id, std::string_view payload, std::size_t max) {
  std::vector<std::pair<bool, std::string>> answers;
  try {
    Decoder d(payload);
    const auto name = d.get<std::string>();
    const auto calls = d.get<std::vector<std::string>>();
    d.expect_end();
    answers.reserve(calls.size());
    for (const auto& args : calls) {
      try {
        answers.emplace_back(true, detail::invoke_task(name, args));
      } catch (...) {
        answers.emplace_back(false, current_error(max));
      }
    }
  } catch (...) {
    append_frame(out, proto::error, id, current_error(max), max);
    return;
  }
  const std::string all = encode(answers);
  if (all.size() > max) {
    append_frame(out, proto::error, id, oversized("the results of a chunk", all.size(), max), max);
  } else {
    append_frame(out, proto::ok, id, all, max);
  }
}

}  // namespace

int pool_worker_main(const detail::ChildContext& ctx) {
  if (ctx.fds.empty()) return 70;
  const int fd = ctx.fds[0];
  std::string out;
  std::size_t max = default_max_frame;
  try {
    Decoder d(ctx.payload);
    const auto init_name = d.get<std::string>();
    const auto init_args = d.get<std::string>();
    max = static_cast<std::size_t>(d.get<std::uint64_t>());
    d.expect_end();
    // The pool never asks for less (ProcessPoolOptions::max_message); the
    // error reports below need the room.
    if (max < detail::min_error_bytes) return 71;
    if (!init_name.empty()) {
      try {
        detail::invoke_task(init_name, init_args);
      } catch (...) {
        append_frame(out, proto::init_failed, 0, current_error(max), max);
        write_all(fd, out);
        return 3;
      }
    }
  } catch (const ProtocolError&) {
    return 71;
  }
  append_frame(out, proto::ready, 0, {}, max);
  if (!write_all(fd, out)) return 0;

  FrameReader reader(max + 64);
  for (;;) {
    for (;;) {
      std::optional<FrameView> f;
      try {
        f = reader.next();
      } catch (const ProtocolError&) {
        return 72;  // the parent sent garbage: nothing sensible is left to do
      }
      if (!f) break;
      out.clear();
      if (f->kind == proto::call) {
        std::string_view name, args;
        try {
          Decoder d(f->payload);
          const std::size_t n = d.get<std::uint32_t>();
          name = d.get_view(n);
          args = d.get_view(d.remaining());
        } catch (...) {
          append_frame(out, proto::error, f->id, current_error(max), max);
          if (!write_all(fd, out)) return 0;
          continue;
        }
        answer(out, f->id, name, args, max);
      } else if (f->kind == proto::chunk) {
        answer_chunk(out, f->id, f->payload, max);
      } else if (f->kind == proto::close) {
        return 0;
      } else {
        return 73;
      }
      if (!write_all(fd, out)) return 0;
    }
    auto span = reader.prepare(std::size_t{64} * 1024);
    const ssize_t n = ::read(fd, span.data(), span.size());
    if (n == 0) return 0;  // the supervisor closed the channel: the pool is gone
    if (n < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    reader.commit(static_cast<std::size_t>(n));
  }
}

}  // namespace keel::pool
