// keel::cluster start slots (private to kernel/src/cluster): the word on rank
// 0 that decides whether a task offered to a node starts (its node's claim
// won) or not (its user's cancel() won first). One word per task, re-armed
// for every offer of it.
//
// Contract: the supervisor arms the word with the offer's number `gen` (even,
// from 2 up) before it dispatches the task's future on the slot {word, sent =
// gen, dead = gen + 1} (FutureCore::dispatch); the user's cancel() then moves
// it gen -> gen + 1, and the supervisor's try_start, when the node claims that
// offer, gen -> started. The first move decides; neither overwrites the other
// (CLUSTER-2). A withdrawn offer's word is moved to dead by the future's
// undispatch, so a later arm is what makes the next offer startable.
//
// Every order is relaxed: only who wins the word matters. Nothing is
// published through it. The supervisor is the only thread that arms or
// starts, and it owns the call; the user's cancel() reaches the word only
// through the slot it reads under the future's hook lock, which dispatch
// wrote after the arm, so the lock orders the arm before the cancel's CAS;
// what each side learns of the other's move (the future cancelled, or
// running) it reads under that same lock, in undispatch. (The future's own
// CASes on the word are relaxed for the same reasons; so are the process
// pool's, in kernel/src/process_pool/protocol.hpp.)
//
// Checked by models/cluster/start_slot_model.cpp.
//
// Invariants: CLUSTER-2.
#pragma once

#include <cstdint>

#include "keel/platform/atomic.hpp"
#include "keel/platform/inject.hpp"

namespace keel::cluster::slot {

using Word = platform::Atomic<std::uint64_t>;

// Started: neither an offer's number (even, >= 2) nor a dead one (odd).
inline constexpr std::uint64_t started = 0;

// The offer numbered `gen` may start now, until a cancel kills it.
inline void arm(Word& word, std::uint64_t gen) {
  if (KEEL_INJECTED(cluster_arm_keeps_old_word)) {
    return;  // the word keeps what it held: a withdrawn offer's dead value
  } else {
    word.store(gen, std::memory_order_relaxed);
  }
}

// The claim of offer `gen`: gen -> started. False if the word holds anything
// else (its user cancelled it: gen + 1).
inline bool try_start(Word& word, std::uint64_t gen) {
  std::uint64_t seen = gen;
  if (KEEL_INJECTED(cluster_start_blind)) {
    word.store(started, std::memory_order_relaxed);
    return true;
  } else {
    return word.compare_exchange_strong(seen, started, std::memory_order_relaxed, std::memory_order_relaxed);
  }
}

}  // namespace keel::cluster::slot
