// keel::cluster::serve_node: a node of a ClusterPool. It runs a local
// keel::ProcessPool for each pool rank 0 opens, holds the tasks rank 0
// offers it, claims one for each worker it has free, runs a task only when
// rank 0 says go, and answers each such task exactly once with what its
// local pool said (a value, a remote error, WorkerLost, TimeoutError, ...).
//
// Contract (what cluster::Machine relies on, machine.hpp): claims only
// offers it holds, at most one per free worker; discards withdrawn and
// dropped offers; answers every task it was let run; says broken when its
// pool broke; reports closed once, after close, with nothing running.
// A task that crashes a worker costs that worker only (POOL-8 of the local
// pool): the agent and its rank live on.
//
// Invariants: CLUSTER-2, CLUSTER-3, CLUSTER-5 (the node's half), POOL-1..9
// (its local pool).
#pragma once

#include <string>

#include "transport.hpp"

namespace keel::cluster {

// Serves on `ep` until rank 0 says finish, or, with `one_pool`, until the
// first pool closed. `where` names this node in messages ("rank 2").
void serve_node(Endpoint& ep, const std::string& where, bool one_pool);

}  // namespace keel::cluster
