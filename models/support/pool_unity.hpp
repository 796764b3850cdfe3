// The kernel's out-of-line ProcessPool supervisor code, compiled into the
// ProcessPool models under the Relacy backend (after harness.hpp, which brings
// the sync code the edge builds on): the pure state machine, and the threaded
// edge between submitters and the supervisor thread. The I/O driver around
// them (pipes, pidfds, poll) is not modelled; the models play it.
#pragma once
#include "../../kernel/src/process_pool/edge.cpp"
#include "../../kernel/src/process_pool/machine.cpp"
