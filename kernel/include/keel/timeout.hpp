// keel's one rule for timeouts, stated once; every timed call and option in
// keel follows it (the headers that take a timeout refer here).
//
// Contract:
// - "No timeout" is explicit, never a number: the overload without a timeout
//   (wait(), result(), join(), ...), or, in an option struct, an empty
//   std::optional (std::nullopt, or keel::no_timeout, which reads better).
//   A zero duration never means "no timeout" anywhere.
// - Zero means zero: a call given a timeout <= 0 does not block. It checks
//   once and, if the thing is not ready, reports a timeout the way that call
//   always does (false, or TimeoutError / RejectedError(timed_out)).
// - A negative timeout behaves exactly as zero (Java's rule: a timeout <= 0
//   means "do not wait"). It is never a ValueError. A floating-point NaN is
//   treated the same: it is not a time anybody could wait for.
// - A timeout or a time point the steady clock cannot reach (hours::max(),
//   a time_point 150 billion years ahead in seconds) is "for ever", never a
//   wrap-around into the past; a time point at or before now, time_point::min()
//   of any unit included, has passed. Any clock (steady, system, a user clock),
//   unit and representation (integer or floating) is accepted.
// - Option fields that are timeouts are std::optional<std::chrono::nanoseconds>
//   with nullopt for none: ThreadPoolOptions::block_timeout,
//   ProcessPoolOptions::task_timeout and block_timeout, SubmitOptions::timeout,
//   MapOptions::timeout, ProcessMapOptions::timeout, Barrier's default
//   timeout. A process-pool task whose timeout is <= 0 has no time at all: its
//   future fails with TimeoutError at once and it is never sent to a worker
//   (no worker is killed for it). A block_timeout <= 0 refuses at once when
//   the queue is full.
// - Intervals that are not waits (keep_alive, restart_window, a Timer's
//   interval) keep their own validation.
//
// The conversion itself lives in keel/platform/clock.hpp (Deadline::after and
// Deadline::at), which every timed call goes through once, at entry.
//
// Invariants: TIME-1 (deadlines saturate, never wrap), TIME-2 (one timeout
// rule: <= 0 checks once and never blocks, negative == zero, none is explicit).
#pragma once

#include <chrono>
#include <optional>

namespace keel {

/// A timeout in an option struct: nullopt is none.
using Timeout = std::optional<std::chrono::nanoseconds>;

/// "No timeout", for option fields of type keel::Timeout (any std::optional):
/// `ProcessPoolOptions{.task_timeout = keel::no_timeout}`.
inline constexpr std::nullopt_t no_timeout = std::nullopt;

}  // namespace keel
