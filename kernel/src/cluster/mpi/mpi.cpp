// keel::cluster::init and the MPI transports: the only code of keel that
// calls MPI. Each process's MPI calls are made by one thread at a time
// (MPI_THREAD_SERIALIZED): on rank 0 the ClusterPool's supervisor while a
// pool is open, and the main thread at init and exit; on a node, the agent
// (the main thread). Nothing blocks inside MPI while waiting for a message:
// every wait is a probe, then a sleep on the owner's Waker (transport.hpp).
#include "keel/cluster/mpi.hpp"

#include <mpi.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <memory>
#include <string>

#include "../driver.hpp"
#include "../node_agent.hpp"
#include "../protocol.hpp"
#include "../transport.hpp"
#include "keel/error.hpp"
#include "keel/process/bootstrap.hpp"

namespace keel::cluster {

namespace {

constexpr int tag = 0x6b65;  // "ke"
MPI_Comm comm = MPI_COMM_NULL;
int my_rank = 0;
int world_size = 1;
bool initialized = false;

[[noreturn]] void fatal(const char* what, int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  std::fprintf(stderr, "keel cluster (rank %d): %s failed: %s\n", my_rank, what, text);
  MPI_Abort(MPI_COMM_WORLD, 70);
  std::_Exit(70);
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fatal(what, rc);
}

// Sends in flight, each with the buffer MPI reads from until it completes.
class Sends {
 public:
  void post(int to, std::string bytes) {
    if (bytes.size() > static_cast<std::size_t>(INT_MAX)) {
      throw ProtocolError("keel cluster: a message of " + std::to_string(bytes.size()) + " bytes is too large for MPI");
    }
    pending_.emplace_back();
    Pending& p = pending_.back();
    p.bytes = std::move(bytes);
    check(MPI_Isend(p.bytes.data(), static_cast<int>(p.bytes.size()), MPI_BYTE, to, tag, comm, &p.req), "MPI_Isend");
  }
  void progress() {
    for (auto it = pending_.begin(); it != pending_.end();) {
      int done = 0;
      check(MPI_Test(&it->req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      it = done ? pending_.erase(it) : std::next(it);
    }
  }
  void complete() {
    for (auto& p : pending_) check(MPI_Wait(&p.req, MPI_STATUS_IGNORE), "MPI_Wait");
    pending_.clear();
  }

 private:
  struct Pending {
    std::string bytes;
    MPI_Request req = MPI_REQUEST_NULL;
  };
  std::list<Pending> pending_;
};

// One message from `from` (MPI_ANY_SOURCE: any rank), if one arrived.
bool probe(int from, int& source, std::string& bytes) {
  int flag = 0;
  MPI_Status st;
  check(MPI_Iprobe(from, tag, comm, &flag, &st), "MPI_Iprobe");
  if (!flag) return false;
  int count = 0;
  check(MPI_Get_count(&st, MPI_BYTE, &count), "MPI_Get_count");
  bytes.assign(static_cast<std::size_t>(count), '\0');
  check(MPI_Recv(bytes.data(), count, MPI_BYTE, st.MPI_SOURCE, tag, comm, MPI_STATUS_IGNORE), "MPI_Recv");
  source = st.MPI_SOURCE;
  return true;
}

// A node rank's line to rank 0.
class RankEndpoint final : public Endpoint {
 public:
  void send(std::string bytes) override {
    sends_.post(0, std::move(bytes));
    sends_.progress();
  }
  bool receive(std::string& bytes) override {
    int source = 0;
    return probe(0, source, bytes);
  }
  void idle(Nanos max) override {
    sends_.progress();
    waker_.sleep(max);
  }
  void complete() { sends_.complete(); }

 private:
  Sends sends_;
};

// Rank 0's lines: ranks 1 .. size-1, after rank 0 itself as node 0 when it
// runs work (an in-process node).
class RankFabric final : public Fabric {
 public:
  RankFabric(Waker& driver, bool rank0_node) {
    if (rank0_node) self_ = std::make_unique<LoopbackFabric>(1, driver);
  }
  ~RankFabric() override {
    try {
      sends_.complete();
    } catch (...) {
    }
  }
  unsigned nodes() const override { return offset() + static_cast<unsigned>(world_size - 1); }
  std::string where(unsigned node) const override {
    if (node < offset()) return "rank 0";
    return "rank " + std::to_string(node - offset() + 1);
  }
  void send(unsigned node, std::string bytes) override {
    if (node < offset()) {
      self_->send(node, std::move(bytes));
      return;
    }
    sends_.post(static_cast<int>(node - offset() + 1), std::move(bytes));
  }
  bool receive(unsigned& node, std::string& bytes) override {
    if (self_ && self_->receive(node, bytes)) return true;
    int source = 0;
    if (!probe(MPI_ANY_SOURCE, source, bytes)) return false;
    node = static_cast<unsigned>(source - 1) + offset();
    return true;
  }
  void idle(Waker& w, Nanos max) override {
    sends_.progress();
    w.sleep(max);
  }
  void finish() override {
    sends_.complete();
    if (self_) self_->finish();
  }

 private:
  unsigned offset() const { return self_ ? 1u : 0u; }
  std::unique_ptr<LoopbackFabric> self_;
  Sends sends_;
};

std::unique_ptr<Fabric> make_world(Waker& driver, const ClusterOptions& o) {
  return std::make_unique<RankFabric>(driver, o.rank0_runs_work);
}

// Rank 0 at exit: a pool still open is terminated (its supervisor is the
// only other thread that calls MPI), every node is told to exit, and MPI
// ends.
void finish_world() {
  detail::terminate_live_cluster();
  detail::set_cluster_world(nullptr);
  Sends sends;
  const std::string bye = proto::bare_message(proto::Kind::finish);
  for (int r = 1; r < world_size; ++r) sends.post(r, bye);
  sends.complete();
  MPI_Comm_free(&comm);
  MPI_Finalize();
}

}  // namespace

int rank() noexcept { return my_rank; }
int size() noexcept { return world_size; }

void init(int& argc, char**& argv) {
  if (initialized) throw MisuseError("keel::cluster::init called twice");
  keel::bootstrap(argc, argv);  // a node's pool worker runs its role here and never returns
  int already = 0;
  MPI_Initialized(&already);
  if (already) throw MisuseError("keel::cluster::init: MPI was initialized before; let keel initialize it");
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  if (provided < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr, "keel cluster: this MPI provides thread level %d; keel needs MPI_THREAD_SERIALIZED\n",
                 provided);
    MPI_Abort(MPI_COMM_WORLD, 70);
  }
  initialized = true;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &my_rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &world_size), "MPI_Comm_size");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  if (my_rank == 0) {
    detail::set_cluster_world(&make_world);
    std::atexit(&finish_world);
    return;
  }
  {
    RankEndpoint ep;
    serve_node(ep, "rank " + std::to_string(my_rank), false);
    ep.complete();
  }
  MPI_Comm_free(&comm);
  MPI_Finalize();
  std::exit(0);
}

}  // namespace keel::cluster
