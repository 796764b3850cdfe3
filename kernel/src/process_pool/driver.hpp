// keel::detail::PoolDriver: the ProcessPool's I/O driver around the
// supervisor state machine (private to kernel/src/process_pool).
//
// One supervisor thread owns everything that touches the workers: their
// channels (nonblocking stream sockets, which carry tasks to the worker),
// their answer rings and pipes (which carry its frames back: the ring in the
// worker's shared page without a system call, the pipe what does not fit
// and the bell that wakes this thread; answer_ring.hpp), their start slots,
// their pidfds and the Machine. Each turn it polls the doorbell (an eventfd
// the Edge rings), every answer pipe, channel and pidfd, with the machine's
// next deadline as the timeout, unless a ring holds a frame (then it only
// looks); feeds what it saw to the machine as events, taking each worker's
// ring before each frame from its pipe; carries out the actions; and writes
// what is pending. It reports a worker's exit only once the worker's answer
// pipe was read to its end, its pidfd said it exited and its ring was taken
// after that, so every notice and answer the worker sent reaches the machine
// before its death does (the machine relies on it; POOL-13). Spare workers
// (ProcessPoolOptions::spare_workers) live here alone, below the machine:
// started ahead, their pidfds polled, each handed out by spawn() as the
// worker the machine asked for, so the machine sees a worker that came up
// fast, and a spare's own death never reaches it (POOL-14).
#pragma once

#include <poll.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../process/fd.hpp"
#include "edge.hpp"
#include "keel/platform/thread.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "keel/sync/mutex.hpp"
#include "machine.hpp"
#include "protocol.hpp"

namespace keel::detail {

// Whether the calling thread is some pool's supervisor (done callbacks run
// there, and must not wait for a pool).
bool on_pool_supervisor() noexcept;
// The CPUs this process may run on (at least 1).
unsigned usable_cpus();

class PoolDriver final : public pool::StartGate, public pool::Doorbell {
 public:
  PoolDriver(const ProcessPoolOptions& o, unsigned workers);
  ~PoolDriver();
  PoolDriver(const PoolDriver&) = delete;
  PoolDriver& operator=(const PoolDriver&) = delete;

  pool::Edge& edge() { return edge_; }
  void join() {
    LockGuard<Mutex> g(join_m_);
    if (thread_.joinable()) thread_.join();
  }

  ProcessPoolStats stats() const {
    LockGuard<Mutex> g(stats_m_);
    return stats_;
  }
  std::vector<int> pids() const {
    LockGuard<Mutex> g(stats_m_);
    return stats_.pids;
  }

  // Doorbell: the edge rings when its inbox turns non-empty.
  void ring() override;
  // StartGate: arm a start slot on the worker, or take one back.
  bool dispatch(pool::TaskId t, pool::WorkerId w) override;
  bool revoke(pool::TaskId t, pool::WorkerId w) override;

 private:
  struct WorkerIo {
    pool::WorkerId id = 0;
    ChildHandle child;
    int pid = -1;
    detail::UniqueFd fd;  // the channel: tasks go out here (a stream socket)
    detail::UniqueFd in;  // the answer pipe: the worker's frames come in here
    FrameReader reader;
    // Its answer ring (answer_ring.hpp) and the frames taken from it.
    pool::ring::Reader ring;
    FrameReader ring_frames;
    bool armed = false;  // its ring was armed for this turn's poll
    std::string out;
    std::size_t out_off = 0;
    pool::proto::SlotPage slots;
    // Per slot: the task armed there (or taken back, until skipped); 0 free.
    // One entry for every index a frame's flags byte can name
    // (proto::max_slots), not only the worker's `depth` slots: a forged index
    // past them finds 0, never a task, with no bound to check first.
    std::vector<pool::TaskId> occupant;
    std::vector<std::uint32_t> free;  // free slot indices
    bool eof = false;                 // the answer pipe was read to its end
    bool exited = false;              // the pidfd says the process is gone
    bool faulty = false;              // it broke the protocol and was killed
    explicit WorkerIo(std::size_t max) : reader(max + 64), ring_frames(max + 64) {}
  };
  // The answer being handled: resolve(value) completes its call with it.
  struct Answer {
    bool ok = false;
    std::string_view bytes{};
  };

  void run();
  void turn();
  void wind_down(const std::string& why);
  void take_commands();
  void read_worker(WorkerIo& w);
  void drain_ring(WorkerIo& w);
  void handle_frame(WorkerIo& w, const FrameView& f);
  void signal_worker(const WorkerIo& w, int signal) const;
  std::string exit_text(int code) const;
  bool settle_slot(WorkerIo& w, const FrameView& f);
  void free_slot(WorkerIo& w, std::uint32_t s);
  void flush(WorkerIo& w);
  void apply();
  void spawn(pool::WorkerId id);
  bool start_process(WorkerIo& w, std::string& why);
  bool take_spare(pool::WorkerId id);
  void keep_spares();
  void end_spares();
  int end_spare(WorkerIo& s);
  void spare_died(WorkerIo& s);
  static std::string spare_error(WorkerIo& s);
  void resolve(const pool::Action& a);
  void reap_exited();
  void publish();
  WorkerIo* io(pool::WorkerId id) {
    auto it = io_.find(id);
    return it == io_.end() ? nullptr : &it->second;
  }
  PoolCall* call(pool::TaskId t) {
    auto it = calls_.find(t);
    return it == calls_.end() ? nullptr : it->second.get();
  }
  std::string broken_message() const;

  ProcessPoolOptions opts_;
  unsigned slots_per_worker_ = 1;
  std::string spawn_payload_;
  detail::UniqueFd bell_fd_;
  pool::Edge edge_{*this};
  std::unique_ptr<pool::Machine> machine_;
  std::unordered_map<pool::TaskId, PoolCallPtr> calls_;
  std::unordered_map<pool::WorkerId, WorkerIo> io_;
  std::vector<pool::Command> commands_;
  std::vector<pool::WorkerId> failed_spawns_;
  std::string init_error_;        // what a failed initializer raised
  std::string supervisor_error_;  // why the loop could not go on (BrokenReason::supervisor_failed)
  std::string spawn_error_;       // why the last worker that could not be started was not
  Answer answer_;
  platform::Thread thread_;
  Mutex join_m_;
  mutable Mutex stats_m_;
  ProcessPoolStats stats_ KEEL_GUARDED_BY(stats_m_);  // one snapshot: the pids with the counts (POOL-12)
  std::vector<pollfd> pfds_;
  std::vector<pool::WorkerId> order_;        // turn(): the workers polled, in pfds_ order
  std::vector<pool::Action> spare_actions_;  // apply(): storage handed back to the machine
  // Spare workers (ProcessPoolOptions::spare_workers): started, not yet
  // known to the machine; spawn() hands one out as the worker it asked for.
  std::vector<std::unique_ptr<WorkerIo>> spares_;
  bool spare_taken_ = false;       // this turn promoted a spare: its restock waits a turn
  pool::Nanos spare_retry_at_{0};  // no spare starts before this (one died unused, or failed to start)
  unsigned spare_deaths_ = 0;      // spares that died unused since one was taken alive
  // After this many died unused in a row, no spare starts any more.
  static constexpr unsigned spare_death_limit = 3;
  bool spares_stopped() const { return spare_deaths_ >= spare_death_limit; }
};

}  // namespace keel::detail
