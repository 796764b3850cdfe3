// Fuzz target pool_machine: keel::pool::Machine, the ProcessPool supervisor's
// pure state machine, driven by long, strange event sequences that a real
// driver could produce, with every action carried out in a simulated world.
//
// The target plays the driver, the start slots (the StartGate) and every
// worker process. Its world knows what the actions said: which workers live,
// which sent `ready`, which were closed or killed, the parent's FIFO queue,
// the clock, and for each worker the frames it was sent in order, the start
// slot of each (sent, started, dead), the task it runs, the messages it wrote
// that the driver has not read yet, and the list of tasks the machine must
// hold for it (which of them it knows to have started, since when) and the
// frames it took back. Workers behave as real ones can: a worker takes its
// frames in order, wins a frame's slot (sent -> started) before running it
// or finds it dead and writes `skipped`; writes `started` before it runs the
// task and its result after; the driver reads those messages in order, maybe
// much later (so the parent can try to take back a task the worker already
// started: its revoke fails). A worker sends `ready` once, may fail its
// initializer, and dies at any moment with any status (after winning a slot
// and before saying so, too); the driver reads its channel to the end before
// it reports the exit. A faulty one writes a result, start or skip for a task
// that is not its first, after which the driver stops reading it. The user
// cancels futures: a queued one (the gate says no when it comes to the
// front), or a sent one by winning its slot (sent -> dead); cancelling one
// call of a chunk kills the slot but leaves the task wanted. Time never goes
// back and stays below Nanos::max(); timeouts include 0, negatives, 1 ns and
// values up to Nanos::max().
//
// The world is tests/support/sim_pool_world.hpp, shared with the RapidCheck
// property test and the Relacy pool model; this file drives it.
//
// Input: config bytes (workers 1-4, depth 1-4 and the pipeline target,
// max_tasks_per_child 0-3, retries 0-2, restart_limit 0-4, restart_window
// small/large/max/any, initializer, start time, how the run ends), then up to
// 400 operations, one opcode byte each plus operands: submit, submit burst,
// ready, worker steps (run the first task to its report; win the next slot
// and say so; win it silently; the driver reads one message), bad report
// (result, start or skip), exit as told, crash (maybe just after winning a
// slot), tick, advance clock, init failed, cancel (one, all, or one call of a
// chunk), shutdown, discard_oldest, terminate, ready all. At the end the pool
// is shut down or terminated and every worker finishes and exits as told
// until the machine terminates.
//
// Checked as each gate question and action is applied, after every event and
// at the end:
// - POOL-1: every resolve names a known, pending task, with an outcome the
//   event allows (value only for the reporting worker's first task, lost only
//   for a dying worker's started task, timed out only for a started task past
//   its timeout, cancelled only for queued or revoked tasks at
//   shutdown(cancel_futures)/terminate, the front at discard_oldest, or a
//   dying worker's unstarted tasks while terminating, broken only when the
//   pool broke); Terminated once, only with no worker and no queue; at the
//   end every task is final exactly once; the machine's counts agree.
// - POOL-2: the gate is asked about the queue's front only, never about a
//   final task or one still held; a send follows each yes; a task runs at
//   most 1 + retries times, and never after its user's cancel succeeded.
// - POOL-3: active workers at the target while running or while work is
//   queued during a shutdown; idle workers closed once a shutdown drained.
// - POOL-5: initializer failure and the restart limit, exactly as an
//   independent record of replacement times says.
// - POOL-6: depth (the adaptive one too: 1 until a run was measured, then
//   from the mean, which the world computes itself), max_tasks_per_child,
//   nothing sent behind a timed task nor behind a straggler; timeouts count
//   from the start the machine learned of (notice or failed revoke), and
//   next_deadline() says so.
// - POOL-7: the machine knows a task started exactly when the world told it
//   (a notice, a failed revoke); it revokes only tasks it does not know to
//   have started; a task resolved lost or retried had won its slot; one that
//   never started is never lost nor retried; a start notice is accepted only
//   for the worker's first task, and never refused when legitimate.
// - POOL-8: after a death every held task that had not started is queued
//   again at the front, in order, uncounted (retried/requeued counters).
// - POOL-9: after every event, a ready worker with nothing in flight means an
//   empty queue (unless it holds a stale frame of the front task) and no
//   other worker (not being killed) holding two or more whose youngest is not
//   known to have started (unless it holds a stale frame of that one).
// Why a fuzzer next to the RapidCheck model test: coverage guidance reaches
// long, rare interleavings (a break while killed workers still report, a
// revoke racing a start, a stale frame holding a task back), and the clock
// and timeouts go to their limits, where the deadline sums once overflowed.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fuzz/fuzz.hpp"

// A broken invariant fails the run with its ID, where and what was seen.
#define POOL_CHECK(invariant, cond, what) KEEL_FUZZ_CHECK(invariant, cond, what)

#include "tests/support/sim_pool_world.hpp"

namespace {

// The world: tests/support/sim_pool_world.hpp.
using namespace keel::pool_sim;

constexpr int kMaxEvents = 400;
constexpr std::size_t kMaxTasks = 256;

// now + d (d >= 0), clamped to the clock's range.
Nanos clock_add(Nanos now, Nanos d) { return d >= kClockMax - now ? kClockMax : now + d; }

Nanos pick_timeout(keel::fuzz::Input& in, Nanos now) {
  const std::uint8_t b = in.byte();
  if (b < 128) return Nanos::zero();  // most tasks are untimed
  switch (b % 14) {
    case 0:
      return Nanos(-1);
    case 1:
      return Nanos::min();
    case 2:
      return Nanos(1);
    case 3:
      return ms(1);
    case 4:
      return ms(5);
    case 5:
      return ms(20);
    case 6:
      return std::chrono::seconds(1);
    case 7:
      return kMax;
    case 8:
      return kMax - Nanos(1);
    case 9:
      return kMax - now;  // the deadline is exactly Nanos::max()
    case 10:
      return kMax - now - Nanos(1);
    case 11:
      return Nanos(in.integral<std::uint32_t>());
    case 12:
      return Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>()));
    default:
      return ms(in.below(100));
  }
}

Nanos pick_time(keel::fuzz::Input& in, const World& w, const MachineConfig& cfg) {
  const Nanos now = w.now();
  const Nanos deadline = w.machine().next_deadline();
  switch (in.byte() % 16) {
    case 0:
      return now;
    case 1:
      return clock_add(now, Nanos(1));
    case 2:
    case 3:
      return clock_add(now, ms(1));
    case 4:
    case 5:
      return clock_add(now, ms(10));
    case 6:
      return clock_add(now, std::chrono::seconds(1));
    case 7:
      return clock_add(now, std::chrono::hours(1));
    case 8:
      return deadline == kMax ? clock_add(now, ms(5)) : deadline - Nanos(1);
    case 9:
    case 10:
      return deadline == kMax ? clock_add(now, ms(5)) : deadline;
    case 11:
      return deadline == kMax ? clock_add(now, ms(5)) : clock_add(deadline, Nanos(1));
    case 12:
      return kClockMax;
    case 13:
      return clock_add(now, cfg.restart_window);
    case 14:
      return clock_add(now, cfg.restart_window - Nanos(1));
    default:
      return clock_add(now, Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>() >> 1)));
  }
}

int pick_code(keel::fuzz::Input& in) {
  static constexpr int codes[] = {0, 1, -9, -11, -15, 127, 255, -6};
  const std::uint8_t b = in.byte();
  return b < 200 ? codes[b % std::size(codes)] : static_cast<int>(static_cast<std::int8_t>(in.byte()));
}

}  // namespace

KEEL_FUZZ_TARGET(pool_machine) {
  MachineConfig cfg;
  cfg.workers = static_cast<unsigned>(in.in_range(1, 4));
  // The depth byte's high bits choose the pipeline target (0: fixed depth).
  const std::uint8_t depth_byte = in.byte();
  cfg.depth = 1u + depth_byte % 4u;
  switch (depth_byte >> 2 & 7) {
    case 1:
      cfg.pipeline = ms(5);
      break;
    case 2:
      cfg.pipeline = ms(50);
      break;
    case 3:
      cfg.pipeline = Nanos(1);
      break;
    case 4:
      cfg.pipeline = kMax;
      break;
    case 5:
      cfg.pipeline = ms(1);
      break;
    case 7:
      cfg.pipeline = ms(20);
      break;
    default:
      break;
  }
  cfg.max_tasks_per_child = static_cast<unsigned>(in.below(4));
  cfg.retries = static_cast<unsigned>(in.below(3));
  cfg.restart_limit = static_cast<unsigned>(in.below(5));
  switch (in.byte() % 5) {
    case 0:
      cfg.restart_window = ms(10);
      break;
    case 1:
      cfg.restart_window = std::chrono::seconds(10);
      break;
    case 2:
      cfg.restart_window = kMax;
      break;
    case 3:
      cfg.restart_window = Nanos(1);
      break;
    default:
      cfg.restart_window = Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>() >> 2) + 1);
      break;
  }
  cfg.has_initializer = in.boolean();
  Nanos t0{0};
  switch (in.byte() % 5) {
    case 1:
      t0 = std::chrono::hours(24 * 365);
      break;
    case 2:
      t0 = kClockMax - std::chrono::seconds(1);
      break;
    case 3:
      t0 = kClockMax;
      break;
    case 4:
      t0 = Nanos(static_cast<std::int64_t>(in.integral<std::uint64_t>() >> 1));
      break;
    default:
      break;
  }
  const int finale = static_cast<int>(in.below(4));

  World world(cfg, std::min(t0, kClockMax));
  for (int n = 0; n < kMaxEvents && !in.empty(); ++n) {
    const std::uint8_t op = in.byte();
    switch (op % 16) {
      case 0:
      case 1:
        if (!world.closed() && world.task_count() < kMaxTasks) world.submit(pick_timeout(in, world.now()));
        break;
      case 2: {
        const std::size_t burst = in.in_range(1, 8);
        const Nanos timeout = pick_timeout(in, world.now());
        for (std::size_t i = 0; i < burst && !world.closed() && world.task_count() < kMaxTasks; ++i) {
          world.submit(timeout);
        }
        break;
      }
      case 3:
        world.ready(in.byte());
        break;
      case 4:
      case 5:
        // Worker steps: the first task runs to its report; the next slot is
        // won and said so; one silent step; the driver reads one message.
        switch (op >> 4 & 3) {
          case 0:
            world.advance(in.byte());
            break;
          case 1:
            world.start_next(in.byte());
            break;
          case 2:
            world.step_silently(in.byte());
            break;
          default:
            world.read_one(in.byte());
            break;
        }
        break;
      case 6: {
        const unsigned sel = in.byte();
        world.bad_report(sel, in.byte(), (op >> 4) % 3);
        break;
      }
      case 7:
        world.natural_exit(in.byte());
        break;
      case 8: {
        const unsigned sel = in.byte();
        const int code = pick_code(in);
        world.crash(sel, code, in.byte());
        break;
      }
      case 9:
        world.set_clock(pick_time(in, world, cfg));
        world.tick();
        break;
      case 10:
        world.set_clock(pick_time(in, world, cfg));
        break;
      case 11:
        world.init_failed(in.byte());
        break;
      case 12: {
        const unsigned sel = in.byte();
        world.cancel(sel, (sel & 0xc0) == 0xc0, (op & 0x10) != 0);
        break;
      }
      case 13:
        // Rare: the script runs long before the pool closes.
        if ((op & 0x30) == 0x30) {
          world.shutdown(in.boolean());
        } else if ((op & 0x30) == 0x10 && !world.closed()) {
          world.discard_oldest();
        }
        break;
      case 14:
        if ((op & 0x30) == 0x30) world.terminate(in.boolean() ? 9 : 15);
        break;
      default:
        world.ready_all();
        break;
    }
  }
  world.drive_to_termination(finale);
}
