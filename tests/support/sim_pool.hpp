// The vocabulary of keel's simulated ProcessPool worlds: the names, clock
// limits and small helpers that every driver-and-workers simulation of
// keel::pool::Machine speaks, shared by the full simulated world
// (sim_pool_world.hpp: the fuzz target pool_machine, the RapidCheck property
// test and the Relacy pool model) and the exhaustive explorer
// (models/process_pool/machine_explore.cpp), whose own compact, hashable
// world keeps frames in one vector per worker and so shares only this part
// (tests/process_pool/machine_test.cpp uses name_of too).
//
// Contract: no GoogleTest, RapidCheck or Relacy dependency; includes only
// standard headers and the machine, so a Relacy model can include it after
// its standard headers. Everything is inline in keel::pool_sim.
//
// Invariants: none of its own; the worlds built on it check POOL-1..POOL-9
// (proofs/INVARIANTS.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "../../kernel/src/process_pool/machine.hpp"

namespace keel::pool_sim {

using keel::pool::Action;
using keel::pool::BrokenReason;
using keel::pool::Machine;
using keel::pool::MachineConfig;
using keel::pool::Nanos;
using keel::pool::Outcome;
using keel::pool::TaskId;
using keel::pool::WorkerId;
using Phase = Machine::Phase;
using WState = Machine::WorkerState;

inline constexpr Nanos kMax = Nanos::max();
// The driver's clock is steady_clock since boot: it never reaches Nanos::max().
inline constexpr Nanos kClockMax = Nanos::max() - Nanos(1);

inline Nanos ms(std::int64_t n) { return std::chrono::milliseconds(n); }

// t + d (both >= 0), saturating at Nanos::max(): the contract's "no limit".
inline Nanos sat_add(Nanos t, Nanos d) { return d >= kMax - t ? kMax : t + d; }

inline const char* name_of(Outcome o) {
  switch (o) {
    case Outcome::value:
      return "value";
    case Outcome::lost:
      return "lost";
    case Outcome::timed_out:
      return "timed_out";
    case Outcome::cancelled:
      return "cancelled";
    case Outcome::broken:
      return "broken";
  }
  return "?";
}

inline std::string str(std::uint64_t n) { return std::to_string(n); }

// A frame's start slot: armed when sent; the worker wins it (started) before
// it runs the task; the parent or the task's user kills it (dead) first.
enum class Slot : std::uint8_t { sent, started, dead };

// A message a worker writes to its channel, read by the driver in order.
struct Msg {
  enum Kind : std::uint8_t { started, skipped, result } kind;
  TaskId task;
};

}  // namespace keel::pool_sim
