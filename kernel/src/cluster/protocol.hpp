// keel::cluster::proto: the messages between rank 0's ClusterPool driver and
// the node agents, one message per transport message (an MPI message, or a
// string in the in-process fabric). Private to kernel/src/cluster.
//
// Contract: encode() writes a kind byte and the kind's fields with keel's
// codec (canonical, sizes checked before anything is allocated); decode()
// returns the message or throws ProtocolError for bytes that are not exactly
// one, so a corrupted message is a named failure, never undefined behaviour.
//
// Invariants: IPC-1 (every message is checked before it is believed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "keel/cluster/cluster_pool.hpp"

namespace keel::cluster::proto {

enum class Kind : std::uint8_t {
  open = 1,     // 0 -> node: serve a pool with these options
  ready,        // node -> 0: serving; capacity, host, pid
  open_failed,  // node -> 0: its pool would not open; text
  offer,        // 0 -> node: task, chunk, timeout, payload
  claim,        // node -> 0: task (a worker is free for it)
  go,           // 0 -> node: task (run it)
  drop,         // 0 -> node: task (discard the claimed offer)
  withdraw,     // 0 -> node: task (discard the offer, unclaimed)
  answer,       // node -> 0: task, ok, bytes (the worker's answer)
  failure,      // node -> 0: task, error, pid, code, text (its local pool failed it)
  broken,       // node -> 0: its local pool broke; text
  stats,        // node -> 0: its local pool's statistics
  terminate,    // 0 -> node: kill the workers now
  close,        // 0 -> node: finish this pool
  closed,       // node -> 0: the pool is gone
  finish,       // 0 -> node: the program ends; exit
};

// How a node's local pool failed a task it was let run.
enum class Error : std::uint8_t { lost = 1, timed_out, broken, cancelled, other };

struct Message {
  Kind kind = Kind::finish;
  std::uint64_t task = 0;
  // offer, claim, go, drop, withdraw: which offer of the task. A task taken
  // back and offered again (to this node or another) gets a new one, so a
  // claim that crossed a withdraw is never taken for the new offer (whose
  // payload may differ: a chunk cut down to the calls still wanted).
  std::uint64_t gen = 0;
  bool chunk = false;                        // offer
  std::optional<std::int64_t> timeout_ns{};  // offer
  bool ok = false;                           // answer
  Error error = Error::other;                // failure
  std::int32_t pid = 0;                      // ready, failure(lost)
  std::int32_t code = 0;                     // failure(lost): the exit code, or -signal
  std::uint32_t capacity = 0;                // ready
  std::string text{};                        // payload, answer bytes, error text, host
  ProcessPoolStats stats{};                  // stats
  ClusterOptions options{};                  // open
};

std::string encode(const Message& m);
Message decode(std::string_view bytes);

// Shorthands for the frequent ones.
inline std::string task_message(Kind k, std::uint64_t task, std::uint64_t gen) {
  Message m;
  m.kind = k;
  m.task = task;
  m.gen = gen;
  return encode(m);
}
inline std::string bare_message(Kind k) {
  Message m;
  m.kind = k;
  return encode(m);
}

}  // namespace keel::cluster::proto
