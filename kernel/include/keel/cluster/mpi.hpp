// keel::cluster::init: the start of a keel program launched by mpirun.
//
// Contract: call it first thing in main, instead of keel::bootstrap (it calls
// it: a worker process of a node's pool never returns from it). It
// initializes MPI (MPI_THREAD_SERIALIZED: one thread at a time calls MPI)
// and sends keel's messages on a duplicate of MPI_COMM_WORLD. While a
// ClusterPool is open its supervisor is the thread that calls MPI on rank 0:
// the program makes no MPI calls of its own then. On rank 0 it returns and
// main goes on: ClusterPools opened there have every other rank as a node.
// On every other rank it never returns: the rank serves the pools rank 0
// opens, one after another, and exits 0 (after MPI_Finalize) when rank 0's
// program ends. At rank 0's exit a pool still open is terminated, the nodes
// are told to exit, and MPI is finalized. A program that does not reach its
// end (rank 0 crashed, a rank was killed) is ended by mpirun within seconds,
// with its message naming the rank: Open MPI 4.1 cannot recover a lost rank
// (no ULFM), and keel never waits for one.
//
// Link with libkeel_mpi.a and Open MPI (`mpicxx`, or `pkg-config
// keel-mpi`). Calling it twice is a MisuseError.
//
// Invariants: CLUSTER-5 (every rank ends), CLUSTER-7 (one thread drives MPI;
// no busy polling).
#pragma once

namespace keel::cluster {

/// Starts a keel program under mpirun (the contract above); returns on rank 0 only.
void init(int& argc, char**& argv);
/// This process's rank (0 before init).
int rank() noexcept;
/// The world's size (1 before init).
int size() noexcept;

}  // namespace keel::cluster
