// ProcessPool end to end: real worker processes, and faults injected at the
// points CPython's pools hang on: workers killed idle, mid-task, while a large
// argument is being sent and during shutdown; tasks and initializers that
// throw, abort and exit; a worker that writes garbage on its channel; the
// parent dying. Every test ends with every future resolved, and the suite's
// listener (tests/main.cpp) fails any test that leaves a child process, a
// zombie or a file descriptor behind (POOL-1..POOL-6, IPC-1).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "../../kernel/src/process_pool/protocol.hpp"
#include "../support/process_support.hpp"
#include "../support/test_support.hpp"
#include "keel/process/pipe.hpp"
#include "keel/process/process.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"
#include "keel/sync/event.hpp"

namespace {

using namespace std::chrono_literals;
using keel::Future;
using keel::ProcessPool;
using keel::ProcessPoolOptions;
using keel_test::eventually;
using keel_test::note_run;
using keel_test::RunFile;
using keel_test::runs_in;

// ---- tasks (registered at namespace scope: parent and workers agree) ----

int square(int x) { return x * x; }
std::string greet(std::string who, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "hello " + who + ";";
  return s;
}
std::vector<int> reverse_all(std::vector<int> v) { return {v.rbegin(), v.rend()}; }
std::tuple<int, std::string> pair_up(int a, std::string b) { return {a, b}; }
int throws_runtime(int) { throw std::runtime_error("bad input"); }
int throws_value(int) { throw keel::ValueError("value is wrong"); }
int die_by_signal(int sig) {
  ::raise(sig);
  ::pause();
  return 0;
}
int exit_with(int code) { std::exit(code); }
int sleep_ms(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}
int my_pid(int) { return static_cast<int>(::getpid()); }
std::size_t length_of(std::string s) { return s.size(); }

// Dies by SIGKILL on its first `deaths` runs, then returns 42.
int die_first(std::string path, int deaths) {
  note_run(path);
  if (runs_in(path) <= deaths) ::raise(SIGKILL);
  return 42;
}
int counted_square(std::string path, int x) {
  note_run(path);
  return x * x;
}
// For map: one argument, the run file of this call and its value.
int counted_value(std::pair<std::string, int> p) {
  note_run(p.first);
  return p.second;
}
// Writes bytes that are not a frame where the worker's frames go back: its
// answer pipe (fd 5; fd 3 is the channel its tasks come in on, fd 4 its
// start slots).
int corrupt_channel(int) {
  const char junk[32] = "this is not a keel frame header";
  [[maybe_unused]] auto n = ::write(5, junk, sizeof junk);
  ::usleep(200 * 1000);
  return 1;
}
// Writes onto the channel the worker's tasks come in on (fd 3), which the
// supervisor never reads: its reading side is shut.
int write_inbound(int) {
  const char junk[32] = "this is not a keel frame header";
  [[maybe_unused]] auto n = ::write(3, junk, sizeof junk);
  ::usleep(200 * 1000);
  return 1;
}

// A string of n bytes: its encoded result is n plus the codec's length prefix.
std::string filled(std::uint32_t n) { return std::string(n, 'r'); }
// Runs until the file at `path` exists, then returns 1 with errno left at
// EINTR, as a task whose last failed call was interrupted may leave it.
int wait_file_then_eintr(std::string path) {
  while (::access(path.c_str(), F_OK) != 0) ::usleep(1000);
  errno = EINTR;
  return 1;
}
// A worker that lies: a well-formed `skipped` notice for task 1 on slot
// `slot`, written on its answer pipe (fd 5), while it runs this task.
int forge_skipped(int slot) {
  std::string frame;
  keel::append_frame(frame, keel::pool::proto::skipped, 1, {}, keel::default_max_frame,
                     static_cast<std::uint8_t>(slot));
  [[maybe_unused]] auto n = ::write(5, frame.data(), frame.size());
  for (;;) ::pause();  // the supervisor kills a worker that lies
}

// This worker's answer ring: its page is the "keel-slots" memfd in its
// maps, the ring's header 64 bytes in (a pool of 4 slots). Null if none.
keel::pool::ring::Header* my_ring_header() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("keel-slots") == std::string::npos) continue;
    auto* base = reinterpret_cast<char*>(std::stoull(line.substr(0, line.find('-')), nullptr, 16));
    return reinterpret_cast<keel::pool::ring::Header*>(base + 64);
  }
  return nullptr;
}
// A worker whose task scribbles on its own answer ring. how 0: a tail far past the ring; 1: a tail behind what the
// parent took (0: it took at least the `ready` frame before it sent a
// task); 2: 16 bytes that are no frame, published as if they were.
// Then a bell on the answer pipe (fd 5), so the parent looks now, and
// nothing more: the task's own answer would overwrite the lie.
int corrupt_ring(int how) {
  auto* header = my_ring_header();
  if (!header) return -1;  // no ring: the test's check of WorkerLost fails
  const std::uint64_t tail = header->tail.load(std::memory_order_seq_cst);
  if (how == 0) {
    header->tail.store(tail + (std::uint64_t{1} << 40), std::memory_order_seq_cst);
  } else if (how == 1) {
    header->tail.store(0, std::memory_order_seq_cst);
  } else {
    char* data = reinterpret_cast<char*>(header) + sizeof(keel::pool::ring::Header);
    for (std::uint64_t i = 0; i < 16; ++i) data[(tail + i) % keel::pool::proto::ring_bytes] = 'X';
    header->tail.store(tail + 16, std::memory_order_seq_cst);
  }
  std::string bell;
  keel::append_frame(bell, keel::pool::proto::bell, 0, {});
  [[maybe_unused]] auto n = ::write(5, bell.data(), bell.size());
  for (;;) ::pause();  // the supervisor kills a worker that lies
}

int init_value = 0;
void init_ok(int v) { init_value = v; }
int read_init(int) { return init_value; }
void init_throws(int) { throw std::logic_error("initializer refused"); }
void init_throws_long(int n) { throw std::logic_error("initializer refused" + std::string(n, '!')); }
int throws_long(int n) { throw std::runtime_error(std::string(n, 'e')); }
void init_aborts(int) { std::abort(); }
void init_exits(int) { std::exit(3); }

// The parent in the parent-death test: a pool of `n` workers, their pids sent
// to the test, then nothing until it is killed.
int middle_parent(int n) {
  ProcessPool pool({.workers = static_cast<unsigned>(n)});
  while (pool.stats().ready < static_cast<unsigned>(n)) ::usleep(1000);
  keel::this_process::connection(0).send(pool.worker_pids());
  for (;;) ::pause();
}

inline const auto square_t = keel::register_task("pp.square", square);
inline const auto middle_parent_t = keel::register_task("pp.middle_parent", middle_parent);
inline const auto greet_t = keel::register_task("pp.greet", greet);
inline const auto reverse_t = keel::register_task("pp.reverse", reverse_all);
inline const auto pair_t = keel::register_task("pp.pair", pair_up);
inline const auto throws_runtime_t = keel::register_task("pp.throws_runtime", throws_runtime);
inline const auto throws_value_t = keel::register_task("pp.throws_value", throws_value);
inline const auto die_by_signal_t = keel::register_task("pp.die_by_signal", die_by_signal);
inline const auto exit_with_t = keel::register_task("pp.exit_with", exit_with);
inline const auto sleep_t = keel::register_task("pp.sleep", sleep_ms);
inline const auto pid_t_ = keel::register_task("pp.pid", my_pid);
inline const auto length_t = keel::register_task("pp.length", length_of);
inline const auto die_first_t = keel::register_task("pp.die_first", die_first);
inline const auto counted_t = keel::register_task("pp.counted_square", counted_square);
inline const auto counted_value_t = keel::register_task("pp.counted_value", counted_value);
inline const auto corrupt_t = keel::register_task("pp.corrupt_channel", corrupt_channel);
inline const auto write_inbound_t = keel::register_task("pp.write_inbound", write_inbound);
inline const auto init_ok_t = keel::register_task("pp.init_ok", init_ok);
inline const auto read_init_t = keel::register_task("pp.read_init", read_init);
inline const auto init_throws_t = keel::register_task("pp.init_throws", init_throws);
inline const auto init_throws_long_t = keel::register_task("pp.init_throws_long", init_throws_long);
inline const auto throws_long_t = keel::register_task("pp.throws_long", throws_long);
inline const auto init_aborts_t = keel::register_task("pp.init_aborts", init_aborts);
inline const auto init_exits_t = keel::register_task("pp.init_exits", init_exits);
inline const auto filled_t = keel::register_task("pp.filled", filled);
inline const auto wait_file_eintr_t = keel::register_task("pp.wait_file_then_eintr", wait_file_then_eintr);
inline const auto forge_skipped_t = keel::register_task("pp.forge_skipped", forge_skipped);
inline const auto corrupt_ring_t = keel::register_task("pp.corrupt_ring", corrupt_ring);

// Every future must be final: resolved, never left pending (POOL-1).
template <class T>
void expect_all_final(const std::vector<Future<T>>& fs) {
  for (const auto& f : fs) {
    ASSERT_TRUE(f.wait_for(keel_test::hang_limit)) << "a future never resolved";
  }
}

template <class E, class F>
E expect_throw(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong error: " << e.what();
    throw;
  }
  ADD_FAILURE() << "did not throw";
  throw std::logic_error("no throw");
}

// The error a future failed with.
template <class E, class T>
E failure_of(const Future<T>& f) {
  try {
    f.result();
  } catch (const E& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "failed with the wrong error: " << e.what();
    throw;
  }
  ADD_FAILURE() << "did not fail";
  throw std::logic_error("no failure");
}

bool process_gone(int pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// ---- results and errors ----

TEST(ProcessPool, ReturnsResultsOfEveryCodecType) {
  ProcessPool pool({.workers = 2});
  EXPECT_EQ(pool.submit(square_t, 12).result(), 144);
  EXPECT_EQ(pool.submit(greet_t, std::string("keel"), 2).result(), "hello keel;hello keel;");
  EXPECT_EQ(pool.submit(reverse_t, std::vector<int>{1, 2, 3}).result(), (std::vector<int>{3, 2, 1}));
  EXPECT_EQ(pool.submit(pair_t, 5, std::string("five")).result(), (std::tuple<int, std::string>{5, "five"}));
}

// A task in another process never receives a std::stop_token, so asking its
// future to stop makes no request (Future::request_stop: false for a task
// that takes none), for submit and map alike; the result is unaffected.
TEST(ProcessPool, RequestStopOnAPoolFutureMakesNoRequest) {
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(square_t, 3);
  EXPECT_FALSE(f.request_stop());
  EXPECT_FALSE(f.stop_requested());
  EXPECT_EQ(f.result(), 9);
  auto results = pool.map(square_t, std::vector<int>{1, 2, 3}, {.chunksize = 2});
  for (auto g : results.futures()) {
    EXPECT_FALSE(g.request_stop());
    EXPECT_FALSE(g.stop_requested());
  }
  EXPECT_EQ(results.get(), (std::vector<int>{1, 4, 9}));
}

TEST(ProcessPool, RunsTasksInOtherProcessesFromAFreshImage) {
  ProcessPool pool({.workers = 2});
  const int pid = pool.submit(pid_t_, 0).result();
  EXPECT_NE(pid, ::getpid());
  const auto pids = pool.worker_pids();
  EXPECT_NE(std::find(pids.begin(), pids.end(), pid), pids.end());
  // A fresh image: the worker runs this very binary, not a fork of this process.
  char self[4096] = {}, theirs[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  ASSERT_GT(::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), theirs, sizeof theirs - 1), 0);
  EXPECT_STREQ(self, theirs);
}

TEST(ProcessPool, TaskExceptionComesBackAsRemoteErrorWithTypeAndMessage) {
  ProcessPool pool({.workers = 1});
  auto e = failure_of<keel::RemoteError>(pool.submit(throws_runtime_t, 1));
  EXPECT_EQ(e.type(), "std::runtime_error");
  EXPECT_EQ(e.message(), "bad input");
  auto v = failure_of<keel::RemoteError>(pool.submit(throws_value_t, 1));
  EXPECT_EQ(v.type(), "keel::ValueError");
  EXPECT_EQ(v.message(), "value is wrong");
  // The worker survived both.
  EXPECT_EQ(pool.stats().deaths, 0u);
  EXPECT_EQ(pool.submit(square_t, 3).result(), 9);
}

TEST(ProcessPool, DefaultWorkersIsTheUsableCpuCount) {
  ProcessPool pool;
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(pool.workers(), static_cast<unsigned>(CPU_COUNT(&set)));
  EXPECT_TRUE(eventually([&] { return pool.stats().ready == pool.workers(); }));
}

TEST(ProcessPool, BadUseIsATypedErrorAndChangesNothing) {
  EXPECT_THROW(ProcessPool({.workers = 1, .max_message = 0}), keel::ValueError);
  EXPECT_THROW(ProcessPool({.workers = 1, .max_message = keel::min_max_message - 1}), keel::ValueError);
  EXPECT_THROW(ProcessPool({.workers = 1, .restart_window = 0ns}), keel::ValueError);
  EXPECT_THROW(ProcessPool({.workers = 1, .initializer = keel::BoundCall{"pp.not_registered", {}}}), keel::ValueError);
  ProcessPool pool({.workers = 1, .max_message = 1024});
  // Arguments above max_message are refused in the caller; nothing is queued.
  EXPECT_THROW(pool.submit(length_t, std::string(4096, 'x')), keel::ProtocolError);
  EXPECT_EQ(pool.stats().submitted, 0u);
  EXPECT_EQ(pool.submit(length_t, std::string(100, 'x')).result(), 100u);
}

TEST(ProcessPool, ResultAboveMaxMessageIsARemoteProtocolError) {
  ProcessPool pool({.workers = 1, .max_message = 1024});
  auto e = failure_of<keel::RemoteError>(pool.submit(greet_t, std::string("x"), 500));
  EXPECT_EQ(e.type(), "keel::ProtocolError");
  EXPECT_EQ(pool.submit(square_t, 2).result(), 4);
}

// IPC-1 at the boundary: a result whose encoding is exactly max_message
// bytes is an answer; one byte more is the task's ProtocolError
// (worker.cpp, answer: `>` not `>=`).
TEST(ProcessPool, AResultOfExactlyMaxMessageBytesIsAnAnswer) {
  constexpr std::size_t max = 1024;
  const std::size_t prefix = keel::encode(std::string()).size();
  const auto n = static_cast<std::uint32_t>(max - prefix);
  ASSERT_EQ(keel::encode(std::string(n, 'r')).size(), max);
  ProcessPool pool({.workers = 1, .max_message = max});
  EXPECT_EQ(pool.submit(filled_t, n).result(), std::string(n, 'r'));
  EXPECT_EQ(failure_of<keel::RemoteError>(pool.submit(filled_t, n + 1)).type(), "keel::ProtocolError");
}

// The same boundary for a chunk: its answers travel as one encoded list, which
// may be exactly max_message bytes (worker.cpp, answer_chunk).
TEST(ProcessPool, AChunkWhoseAnswersEncodeToExactlyMaxMessageBytesIsAnswered) {
  constexpr std::uint32_t n = 400;
  using Answers = std::vector<std::pair<bool, std::string>>;
  const std::string one = keel::encode(std::string(n, 'r'));
  const std::size_t max = keel::encode(Answers{{true, one}, {true, one}}).size();
  ASSERT_GE(max, keel::min_max_message);
  {
    ProcessPool pool({.workers = 1, .max_message = max});
    auto results = pool.map(filled_t, std::vector<std::uint32_t>{n, n}, {.chunksize = 2});
    EXPECT_EQ(results.next(), std::string(n, 'r'));
    EXPECT_EQ(results.next(), std::string(n, 'r'));
  }
  // One byte less and the chunk's answers are its error.
  ProcessPool pool({.workers = 1, .max_message = max - 1});
  auto results = pool.map(filled_t, std::vector<std::uint32_t>{n, n}, {.chunksize = 2});
  EXPECT_THROW(results.next(), keel::RemoteError);
}

// POOL-6 at the boundary: max_in_flight may be exactly proto::max_slots (the
// slot index is one byte); every worker gets that many start slots.
TEST(ProcessPool, MaxInFlightOfExactlyTheSlotLimitRunsTasks) {
  EXPECT_THROW(ProcessPool({.workers = 1, .max_in_flight = keel::pool::proto::max_slots + 1}), keel::ValueError);
  ProcessPool pool({.workers = 1, .max_in_flight = keel::pool::proto::max_slots});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 300; ++i) fs.push_back(pool.submit(square_t, i));
  for (int i = 0; i < 300; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(), i * i);
  EXPECT_EQ(pool.stats().deaths, 0u);
}

// Found by fuzz/pool_worker: an error report longer than max_message could not
// be sent, and the worker died of it (or, for an initializer, exited without a
// word), so the caller saw a lost worker instead of the task's own error.
TEST(ProcessPool, AnErrorLongerThanMaxMessageComesBackCutWithItsType) {
  ProcessPool pool({.workers = 1, .max_message = keel::min_max_message});
  auto e = failure_of<keel::RemoteError>(pool.submit(throws_long_t, 10000));
  EXPECT_EQ(e.type(), "std::runtime_error");
  EXPECT_NE(e.message().find("[cut from 10000 bytes]"), std::string::npos) << e.message();
  EXPECT_EQ(e.message().substr(0, 100), std::string(100, 'e'));
  EXPECT_EQ(pool.stats().deaths, 0u);
  EXPECT_EQ(pool.submit(square_t, 5).result(), 25);
}

// ---- options and arguments exactly at their limits ----

// The fds open in this process, counted as ProcessPool counts them
// (process_pool.cpp, checked_workers): the directory stream's own fd too.
std::size_t fds_open_now() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

// What a ProcessPool constructor threw for options that are invalid only in
// max_message (0), which it checks after the worker count and the process's
// limits: "passed" says those were accepted; no worker is started.
std::string limits_verdict(unsigned workers, unsigned spares = 0) {
  try {
    ProcessPool pool({.workers = workers, .spare_workers = spares, .max_message = 0});
    return "constructed";
  } catch (const keel::ValueError& e) {
    return std::string(e.what()).find("max_message") != std::string::npos ? "passed" : "ValueError";
  } catch (const keel::OsError& e) {
    return e.code() == EMFILE ? "EMFILE" : e.code() == EAGAIN ? "EAGAIN" : "OsError";
  } catch (...) {
    return "other";
  }
}

// max_message's upper limit (process_pool.cpp: frame lengths are 32-bit):
// exactly 0xFFFFFFF0 is accepted and the pool works; one more is a ValueError.
// max_in_flight's: exactly max_slots (a slot page's size) likewise.
TEST(ProcessPoolLimits, OptionsExactlyAtTheirMaximumAreAcceptedOneMoreIsAValueError) {
  {
    ProcessPool pool({.workers = 1, .max_message = 0xFFFFFFF0u});
    EXPECT_EQ(pool.submit(square_t, 3).result(), 9);
  }
  EXPECT_THROW(ProcessPool({.workers = 1, .max_message = 0xFFFFFFF1u}), keel::ValueError);
  {
    ProcessPool pool({.workers = 1, .max_in_flight = keel::pool::proto::max_slots});
    auto results = pool.map(square_t, std::vector<int>{1, 2, 3, 4});
    EXPECT_EQ(results.get(), (std::vector<int>{1, 4, 9, 16}));
  }
  EXPECT_THROW(ProcessPool({.workers = 1, .max_in_flight = keel::pool::proto::max_slots + 1}), keel::ValueError);
}

// A call writes its payload itself, in its block when it fits (96 bytes)
// and on the heap when not: either way the bytes are the protocol's
// call_payload, which the worker decodes, and name() reads the name back.
// A payload too short for its name's count (another rank's, malformed)
// names nothing rather than read past its end.
TEST(ProcessPoolCalls, ACallsOwnPayloadIsTheProtocolsCallPayload) {
  for (std::size_t name_len : {0, 1, 12, 40, 60, 91, 92, 93, 100}) {
    for (std::size_t args_len : {0, 1, 4, 5, 16, 200}) {
      const std::string name(name_len, 'n'), args(args_len, 'a');
      auto c = keel::detail::new_call<int>();
      c->set_payload(name, args);
      EXPECT_EQ(c->payload(), keel::detail::call_payload(name, args)) << name_len << " + " << args_len;
      EXPECT_EQ(c->name(), name);
      // Written again, shorter or longer: the call holds only the new bytes.
      c->set_payload("x", args);
      EXPECT_EQ(c->payload(), keel::detail::call_payload("x", args));
      c->set_payload(name, std::string(200, 'b'));
      EXPECT_EQ(c->payload(), keel::detail::call_payload(name, std::string(200, 'b')));
    }
  }
  struct Raw final : keel::detail::PoolCall {
    std::string bytes;
    bool dispatch(const StartSlot&) override { return false; }
    bool undispatch() override { return false; }
    bool start_here() override { return false; }
    void complete(bool, std::string_view) override {}
    void fail(std::exception_ptr) override {}
    void cancel() override {}
    void discard() noexcept override { delete this; }
    std::string_view payload() const noexcept override { return bytes; }
  };
  keel::detail::OwnedCall<Raw> raw(new Raw);
  for (std::string bytes : {std::string(), std::string("\x05\x00\x00", 3),
                            std::string("\x05\x00\x00\x00"
                                        "abcd",
                                        8)}) {
    raw->bytes = bytes;
    EXPECT_EQ(raw->name(), "") << bytes.size();
  }
  raw->bytes = std::string(
      "\x03\x00\x00\x00"
      "abcd",
      8);
  EXPECT_EQ(raw->name(), "abc");
}

// Arguments of exactly max_message bytes (the encoded call: name and
// arguments, as make_call builds it) are sent and run; one byte more is
// refused in the caller with a ProtocolError and nothing is submitted.
TEST(ProcessPoolLimits, ArgumentsOfExactlyMaxMessageBytesRunOneByteMoreIsAProtocolError) {
  const std::size_t max = keel::min_max_message;
  const auto payload_of = [](std::size_t n) {
    return keel::detail::make_call(length_t, std::string(n, 'a'))->payload().size();
  };
  const std::size_t n = max - payload_of(0);
  ASSERT_EQ(payload_of(n), max);
  ProcessPool pool({.workers = 1, .max_message = max});
  EXPECT_EQ(pool.submit(length_t, std::string(n, 'a')).result(), n);
  EXPECT_THROW(pool.submit(length_t, std::string(n + 1, 'a')), keel::ProtocolError);
  EXPECT_EQ(pool.stats().submitted, 1u);
}

// A timeout of exactly 0 is no time at all (process_pool.hpp: <= 0 fails at
// submit): the future fails with TimeoutError before submit returns and the
// task never reaches a worker, where a timeout <= 0 would mean none.
TEST(ProcessPoolLimits, ATimeoutOfExactlyZeroFailsAtSubmit) {
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(keel::SubmitOptions{.timeout = 0ns}, square_t, 3);
  EXPECT_TRUE(f.done());
  failure_of<keel::TimeoutError>(f);
  ProcessPool zero({.workers = 1, .task_timeout = 0ns});
  auto g = zero.submit(square_t, 4);
  EXPECT_TRUE(g.done());
  failure_of<keel::TimeoutError>(g);
  EXPECT_EQ(zero.submit(keel::SubmitOptions{.timeout = keel_test::hang_limit}, square_t, 5).result(), 25);
}

// Exactly max_pool_workers is a worker count the pool accepts (one more is a
// ValueError): in a child whose RLIMIT_NOFILE cannot hold that many, it is
// the fd check that refuses it, with OsError(EMFILE).
TEST(ProcessPoolLimits, ExactlyMaxPoolWorkersPassesTheCountCheck) {
  const int code = keel_test::exit_code_in_child([] {
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 3;
    if (limits_verdict(keel::max_pool_workers + 1) != "ValueError") return 1;
    return limits_verdict(keel::max_pool_workers) == "EMFILE" ? 0 : 2;
  });
  EXPECT_EQ(code, 0) << "1: max + 1 was not a ValueError; 2: max was not refused for fds only; 3: setrlimit";
}

// RLIMIT_NOFILE exactly at what the pool counts it needs (the fds open now,
// three per worker and per spare, and 16 for a spawn) is enough; one fd less
// is OsError(EMFILE). In a child, which lowers its own soft limit.
TEST(ProcessPoolLimits, AFileLimitExactlyAtTheNeedIsEnoughOneLessIsEmfile) {
  const int code = keel_test::exit_code_in_child([] {
    constexpr unsigned workers = 2;
    unsigned spares = 0;
    const auto verdict_at = [&spares](rlim_t room) {
      rlimit rl{};
      ::getrlimit(RLIMIT_NOFILE, &rl);
      rl.rlim_cur = fds_open_now() + room;  // the count is taken as the pool takes it
      if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return std::string("setrlimit");
      return limits_verdict(workers, spares);
    };
    if (verdict_at(3 * workers + 16) != "passed") return 1;
    if (verdict_at(3 * workers + 15) != "EMFILE") return 2;
    spares = 1;  // a spare holds what a worker holds
    if (verdict_at(3 * (workers + 1) + 16) != "passed") return 3;
    return verdict_at(3 * (workers + 1) + 15) == "EMFILE" ? 0 : 4;
  });
  EXPECT_EQ(code, 0) << "1: refused exactly at the need; 2: one fd less was not EMFILE; 3, 4: the same with a spare";
}

// RLIMIT_NPROC: n workers need n processes besides this one, so a limit of
// exactly n refuses them with OsError(EAGAIN) and n + 1 allows them. Root is
// not held to the limit: a child running as root first becomes nobody.
TEST(ProcessPoolLimits, AProcessLimitOfExactlyTheWorkerCountIsEagain) {
  const int code = keel_test::exit_code_in_child([] {
    constexpr unsigned workers = 3;
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 3;
    const auto verdict_at = [](rlim_t limit) {
      rlimit rl{};
      ::getrlimit(RLIMIT_NPROC, &rl);
      rl.rlim_cur = limit;
      if (::setrlimit(RLIMIT_NPROC, &rl) != 0) return std::string("setrlimit");
      return limits_verdict(workers);
    };
    // Raising the soft limit again needs a hard limit above it.
    rlimit rl{};
    ::getrlimit(RLIMIT_NPROC, &rl);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= workers) return 4;
    if (verdict_at(workers) != "EAGAIN") return 1;
    return verdict_at(workers + 1) == "passed" ? 0 : 2;
  });
  if (code == 3) GTEST_SKIP() << "running as root without the right to become nobody";
  if (code == 4) GTEST_SKIP() << "RLIMIT_NPROC's hard limit is below the test's worker count";
  EXPECT_EQ(code, 0) << "1: a limit of exactly the worker count was not EAGAIN; 2: one more was refused";
}

TEST(ProcessPoolInit, AnInitializerErrorLongerThanMaxMessageIsStillReported) {
  ProcessPool pool(
      {.workers = 1, .initializer = keel::bind_task(init_throws_long_t, 5000), .max_message = keel::min_max_message});
  auto f = pool.submit(square_t, 2);
  auto e = expect_throw<keel::BrokenProcessPool>([&] { f.result(); });
  EXPECT_NE(std::string(e.what()).find("initializer raised std::logic_error: initializer refused!!!"),
            std::string::npos)
      << e.what();
  EXPECT_TRUE(pool.await_termination(keel_test::hang_limit));
}

// ---- worker deaths (POOL-1, POOL-2, POOL-3) ----

TEST(ProcessPoolDeath, TaskKilledBySignalFailsWithWorkerLostAndIsReplaced) {
  ProcessPool pool({.workers = 2});
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 2; }));
  const auto before = pool.worker_pids();
  auto lost = failure_of<keel::WorkerLost>(pool.submit(die_by_signal_t, SIGKILL));
  EXPECT_EQ(lost.exit_code(), -SIGKILL);
  EXPECT_TRUE(lost.signaled());
  EXPECT_EQ(lost.signal(), SIGKILL);
  EXPECT_NE(std::find(before.begin(), before.end(), lost.pid()), before.end());
  EXPECT_NE(std::string(lost.what()).find("pp.die_by_signal"), std::string::npos);
  // Back to the target, with a new process in place of the dead one.
  EXPECT_TRUE(eventually([&] { return pool.stats().ready == 2; }));
  const auto after = pool.worker_pids();
  EXPECT_EQ(std::find(after.begin(), after.end(), lost.pid()), after.end());
  EXPECT_EQ(pool.stats().deaths, 1u);
  EXPECT_EQ(pool.stats().replacements, 1u);
  EXPECT_EQ(pool.submit(square_t, 5).result(), 25);
}

TEST(ProcessPoolDeath, ExitAndAbortReportTheirStatus) {
  ProcessPool pool({.workers = 1});
  EXPECT_EQ(failure_of<keel::WorkerLost>(pool.submit(exit_with_t, 7)).exit_code(), 7);
  // Even a clean exit(0) in the middle of a task loses the task. Status 0 is
  // an exit, not a signal (make mutate: `exit_code_ < 0` made `<= 0` passed).
  const auto clean = failure_of<keel::WorkerLost>(pool.submit(exit_with_t, 0));
  EXPECT_EQ(clean.exit_code(), 0);
  EXPECT_FALSE(clean.signaled());
  EXPECT_EQ(clean.signal(), 0);
  // The supervisor's words too (driver.cpp describe_exit: code 0 is a status).
  EXPECT_NE(std::string(clean.what()).find("exited with status 0"), std::string::npos) << clean.what();
  EXPECT_EQ(failure_of<keel::WorkerLost>(pool.submit(die_by_signal_t, SIGABRT)).exit_code(), -SIGABRT);
  EXPECT_EQ(pool.submit(square_t, 6).result(), 36);
}

TEST(ProcessPoolDeath, TasksQueuedBehindADeadTaskStillRunExactlyOnce) {
  RunFile runs;
  ProcessPool pool({.workers = 1, .max_in_flight = 8});
  std::vector<Future<int>> fs;
  auto doomed = pool.submit(die_by_signal_t, SIGKILL);
  for (int i = 0; i < 20; ++i) fs.push_back(pool.submit(counted_t, runs.path(), i));
  EXPECT_THROW(doomed.result(), keel::WorkerLost);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(), i * i);
  EXPECT_EQ(runs.runs(), 20);  // none lost, none run twice
  // Only the task that started is lost; any sent behind it went back, uncounted.
  EXPECT_EQ(pool.stats().lost, 1u);
  EXPECT_EQ(pool.stats().retried, 0u);
}

TEST(ProcessPoolDeath, RetriesRunALostTaskAgainUpToTheLimit) {
  {
    RunFile runs;
    ProcessPool pool({.workers = 1, .retries = 2});
    EXPECT_EQ(pool.submit(die_first_t, runs.path(), 2).result(), 42);
    EXPECT_EQ(runs.runs(), 3);
    EXPECT_EQ(pool.stats().retried, 2u);
  }
  {
    RunFile runs;
    ProcessPool pool({.workers = 1, .retries = 2});
    auto e = failure_of<keel::WorkerLost>(pool.submit(die_first_t, runs.path(), 100));
    EXPECT_EQ(e.exit_code(), -SIGKILL);
    EXPECT_EQ(runs.runs(), 3);  // 1 + retries, never more
  }
}

TEST(ProcessPoolDeath, WorkerKilledFromOutsideWhileIdleIsReplaced) {
  ProcessPool pool({.workers = 2});
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 2; }));
  const int victim = pool.worker_pids().front();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  EXPECT_TRUE(eventually([&] {
    const auto p = pool.worker_pids();
    return pool.stats().ready == 2 && std::find(p.begin(), p.end(), victim) == p.end();
  }));
  std::vector<Future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(pool.submit(square_t, i));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(), i * i);
}

TEST(ProcessPoolDeath, WorkerKilledMidTaskFromOutsideLosesOnlyThatTask) {
  ProcessPool pool({.workers = 1, .max_in_flight = 4});
  auto slow = pool.submit(sleep_t, 5000);
  std::vector<Future<int>> behind;
  for (int i = 0; i < 3; ++i) behind.push_back(pool.submit(square_t, i));
  ASSERT_TRUE(eventually([&] { return slow.running(); }));
  const int victim = pool.worker_pids().front();
  ::usleep(20 * 1000);  // let it start sleeping
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  auto e = expect_throw<keel::WorkerLost>([&] { slow.result(); });
  EXPECT_EQ(e.pid(), victim);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(behind[static_cast<std::size_t>(i)].result(), i * i);
}

TEST(ProcessPoolDeath, WorkerKilledWhileALargeArgumentIsBeingSent) {
  ProcessPool pool({.workers = 1, .max_message = 64u << 20});
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 1; }));
  const int victim = pool.worker_pids().front();
  auto big = pool.submit(length_t, std::string(48u << 20, 'k'));
  ::kill(victim, SIGKILL);
  // Either the worker died before it answered (lost) or it answered first.
  try {
    EXPECT_EQ(big.result(), 48u << 20);
  } catch (const keel::WorkerLost& e) {
    EXPECT_EQ(e.pid(), victim);
  }
  EXPECT_EQ(pool.submit(length_t, std::string(1u << 20, 'k')).result(), 1u << 20);
}

TEST(ProcessPoolDeath, RandomKillsNeverLeaveAFutureUnresolved) {
  ProcessPool pool({.workers = 2, .max_in_flight = 4, .retries = 1, .restart_limit = 1000});
  std::vector<Future<int>> fs;
  const int n = keel_test::scaled(300, 60);
  std::srand(12345);
  for (int i = 0; i < n; ++i) {
    fs.push_back(pool.submit(sleep_t, i % 3));
    if (i % 25 == 10) {
      const auto pids = pool.worker_pids();
      if (!pids.empty()) ::kill(pids[static_cast<std::size_t>(std::rand()) % pids.size()], SIGKILL);
    }
  }
  expect_all_final(fs);
  int ok = 0, lost = 0;
  for (auto& f : fs) {
    try {
      f.result();
      ++ok;
    } catch (const keel::WorkerLost&) {
      ++lost;
    }
  }
  EXPECT_EQ(ok + lost, n);
  EXPECT_TRUE(eventually([&] {
    const auto s = pool.stats();
    return s.completed + s.lost == static_cast<std::uint64_t>(n);
  }));
  EXPECT_TRUE(eventually([&] { return pool.stats().ready == 2; }));
}

TEST(ProcessPoolDeath, KillsDuringShutdownStillResolveEveryFuture) {
  ProcessPool pool({.workers = 2, .max_in_flight = 2, .retries = 0});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 40; ++i) fs.push_back(pool.submit(sleep_t, 2));
  pool.shutdown({.wait = false});
  for (int k = 0; k < 3; ++k) {
    for (int pid : pool.worker_pids()) ::kill(pid, SIGKILL);
    ::usleep(5000);
  }
  EXPECT_TRUE(pool.await_termination(keel_test::hang_limit));
  expect_all_final(fs);
  for (auto& f : fs) {
    try {
      EXPECT_EQ(f.result(), 2);
    } catch (const keel::WorkerLost&) {
    }
  }
  EXPECT_EQ(pool.stats().workers, 0u);
}

TEST(ProcessPoolDeath, WorkerWritingGarbageOnItsChannelIsKilledAndReplaced) {
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(corrupt_t, 0);
  auto e = expect_throw<keel::WorkerLost>([&] { f.result(); });
  EXPECT_EQ(e.exit_code(), -SIGKILL);
  EXPECT_EQ(pool.submit(square_t, 4).result(), 16);
}

// A worker's answer ring is in a page its tasks can write: a tail out of
// range, or bytes that are no frame, make it a faulty worker like garbage on
// its pipe (IPC-1): killed, its task lost, a replacement started.
TEST(ProcessPoolDeath, AWorkerThatCorruptsItsAnswerRingIsKilledAndReplaced) {
  ProcessPool pool({.workers = 1, .max_in_flight = 4});
  for (int how = 0; how < 3; ++how) {
    auto f = pool.submit(corrupt_ring_t, how);
    auto e = expect_throw<keel::WorkerLost>([&] { f.result(); });
    EXPECT_EQ(e.exit_code(), -SIGKILL) << "how " << how;
    EXPECT_EQ(pool.submit(square_t, 4).result(), 16) << "how " << how;
  }
  EXPECT_EQ(pool.stats().lost, 3u);
}

// An answer in the ring is the parent's once published, as one in the pipe
// is: the task sent behind it kills the worker at once, and the answer still
// arrives, whether the parent took it before the death or after (POOL-13;
// POOL-8: only the started task is lost). A worker that kept its answer
// until it next had nothing to do would lose it here.
TEST(ProcessPoolDeath, AnAnswerInTheRingOutlivesTheWorkerThatWroteIt) {
  ProcessPool pool({.workers = 1, .max_in_flight = 4});
  for (int i = 0; i < 10; ++i) {
    // Runs measured: the two below are sent together.
    for (int k = 0; k < 3; ++k) ASSERT_EQ(pool.submit(square_t, k).result(), k * k);
    auto a = pool.submit(square_t, i);
    auto b = pool.submit(die_by_signal_t, SIGKILL);
    EXPECT_EQ(a.result(), i * i) << "round " << i;
    expect_throw<keel::WorkerLost>([&] { b.result(); });
  }
  EXPECT_EQ(pool.stats().lost, 10u);
}

// Answers larger than the ring go by pipe between small ones in the ring: every
// one arrives whole, in the order the worker sent them (an answer out of
// order would be a faulty worker, killed), and none is lost.
TEST(ProcessPoolWorker, AnswersLargerThanTheRingInterleaveWithSmallOnesInOrder) {
  ProcessPool pool({.workers = 1});
  std::vector<keel::Future<std::string>> fs;
  std::vector<std::uint32_t> sizes;
  for (std::uint32_t i = 0; i < 40; ++i) {
    sizes.push_back(i % 3 == 1 ? keel::pool::proto::ring_bytes + 1000 * i : 10 + i);
    fs.push_back(pool.submit(filled_t, sizes.back()));
  }
  for (std::size_t i = 0; i < fs.size(); ++i) EXPECT_EQ(fs[i].result(), filled(sizes[i])) << "task " << i;
  const auto st = pool.stats();
  EXPECT_EQ(st.deaths, 0u);
  EXPECT_EQ(st.lost, 0u);
  EXPECT_EQ(st.completed, 40u);
}

// The inbound channel carries tasks one way: a task that writes on it is not
// read as frames, nor left to fill a buffer nobody reads; its write fails
// (EPIPE), so it dies of SIGPIPE unless it ignores the signal.
TEST(ProcessPoolDeath, WorkerWritingOnItsInboundChannelIsLost) {
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(write_inbound_t, 0);
  auto e = expect_throw<keel::WorkerLost>([&] { f.result(); });
  EXPECT_EQ(e.exit_code(), -SIGPIPE);
  EXPECT_EQ(pool.submit(square_t, 4).result(), 16);
}

// ---- timeouts ----

TEST(ProcessPoolTimeout, TaskPastItsTimeoutFailsAndItsWorkerIsReplaced) {
  ProcessPool pool({.workers = 1, .task_timeout = 50ms});
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 1; }));
  const int first = pool.worker_pids().front();
  const auto t0 = std::chrono::steady_clock::now();
  failure_of<keel::TimeoutError>(pool.submit(sleep_t, 10000));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  EXPECT_EQ(pool.stats().timed_out, 1u);
  EXPECT_EQ(pool.submit(sleep_t, 1).result(), 1);
  const auto pids = pool.worker_pids();
  EXPECT_EQ(std::find(pids.begin(), pids.end(), first), pids.end());
}

TEST(ProcessPoolTimeout, PerTaskTimeoutOverridesThePoolsAndQueuedTasksAreNotCharged) {
  ProcessPool pool({.workers = 1, .max_in_flight = 8});
  // Untimed tasks ahead do not eat the timed task's time: its clock starts
  // when it starts.
  std::vector<Future<int>> ahead;
  for (int i = 0; i < 3; ++i) ahead.push_back(pool.submit(sleep_t, 40));
  auto timed = pool.submit(keel::SubmitOptions{.timeout = 100ms}, sleep_t, 10);
  for (auto& f : ahead) EXPECT_EQ(f.result(), 40);
  EXPECT_EQ(timed.result(), 10);
  failure_of<keel::TimeoutError>(pool.submit(keel::SubmitOptions{.timeout = 20ms}, sleep_t, 5000));
}

// ---- max_tasks_per_child ----

TEST(ProcessPoolRetire, MaxTasksPerChildReplacesWorkersAndStrandsNothing) {
  ProcessPool pool({.workers = 2, .max_tasks_per_child = 3});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 30; ++i) fs.push_back(pool.submit(pid_t_, i));
  std::map<int, int> per_pid;
  for (auto& f : fs) ++per_pid[f.result()];
  for (const auto& [pid, n] : per_pid) EXPECT_LE(n, 3) << "pid " << pid;
  EXPECT_GE(per_pid.size(), 10u);
  EXPECT_EQ(pool.stats().deaths, 0u);
  // Ten workers were each sent three tasks; each exits after its third.
  EXPECT_TRUE(eventually([&] { return pool.stats().retirements == 10; })) << pool.stats().retirements;
}

TEST(ProcessPoolRetire, OneTaskPerChildWithWorkQueued) {
  ProcessPool pool({.workers = 1, .max_tasks_per_child = 1});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(pool.submit(square_t, i));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(), i * i);
  EXPECT_GE(pool.stats().spawned, 8u);
}

// ---- initializer and restart limit (POOL-5) ----

TEST(ProcessPoolInit, InitializerRunsInEveryWorkerBeforeItsTasks) {
  ProcessPool pool({.workers = 2, .initializer = keel::bind_task(init_ok_t, 77)});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pool.submit(read_init_t, 0).result(), 77);
}

TEST(ProcessPoolInit, ThrowingInitializerBreaksThePoolWithoutARespawnLoop) {
  ProcessPool pool({.workers = 2, .initializer = keel::bind_task(init_throws_t, 0)});
  auto f = pool.submit(square_t, 2);
  auto e = expect_throw<keel::BrokenProcessPool>([&] { f.result(); });
  EXPECT_NE(std::string(e.what()).find("initializer refused"), std::string::npos) << e.what();
  EXPECT_TRUE(pool.await_termination(keel_test::hang_limit));
  EXPECT_LE(pool.stats().spawned, 2u);
  EXPECT_THROW(pool.submit(square_t, 3), keel::BrokenProcessPool);
}

TEST(ProcessPoolInit, BrokenSaysWhyOnceThePoolBrokeEvenWithNoTaskInIt) {
  ProcessPool healthy({.workers = 1});
  EXPECT_EQ(healthy.submit(square_t, 3).result(), 9);
  EXPECT_FALSE(healthy.broken().has_value());
  ProcessPool pool({.workers = 1, .initializer = keel::bind_task(init_throws_t, 0)});
  ASSERT_TRUE(keel_test::eventually([&] { return pool.broken().has_value(); }));
  EXPECT_NE(pool.broken()->find("initializer refused"), std::string::npos) << *pool.broken();
  EXPECT_THROW(pool.submit(square_t, 3), keel::BrokenProcessPool);
}

TEST(ProcessPoolInit, QueuedTasksCancelledWhileThePoolBreaksStayFinal) {
  ProcessPool pool({.workers = 1, .initializer = keel::bind_task(init_throws_t, 0)});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 40; ++i) fs.push_back(pool.submit(square_t, i));
  int cancelled = 0;
  for (std::size_t i = 0; i < fs.size(); i += 2) cancelled += fs[i].cancel() ? 1 : 0;
  // The pool breaks and fails its queue, cancelled futures included: those
  // answers go nowhere, and the supervisor carries on.
  EXPECT_TRUE(pool.await_termination(keel_test::hang_limit));
  expect_all_final(fs);
  int broken = 0;
  for (auto& f : fs) {
    if (f.cancelled()) continue;
    failure_of<keel::BrokenProcessPool>(f);
    ++broken;
  }
  EXPECT_EQ(broken + cancelled, 40);
}

TEST(ProcessPoolInit, InitializerThatAbortsOrExitsBreaksThePool) {
  for (const auto& init : {keel::bind_task(init_aborts_t, 0), keel::bind_task(init_exits_t, 0)}) {
    ProcessPool pool({.workers = 1, .initializer = init});
    failure_of<keel::BrokenProcessPool>(pool.submit(square_t, 2));
    EXPECT_TRUE(pool.await_termination(keel_test::hang_limit));
    EXPECT_EQ(pool.stats().spawned, 1u);
  }
}

TEST(ProcessPoolInit, CrashLoopBeyondTheRestartLimitBreaksThePool) {
  ProcessPool pool({.workers = 1, .restart_limit = 2, .restart_window = std::chrono::seconds(60)});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(pool.submit(die_by_signal_t, SIGKILL));
  auto later = pool.submit(square_t, 1);
  expect_all_final(fs);
  int lost = 0, broken = 0;
  for (auto& f : fs) {
    try {
      f.result();
    } catch (const keel::WorkerLost&) {
      ++lost;
    } catch (const keel::BrokenProcessPool&) {
      ++broken;
    }
  }
  EXPECT_EQ(lost, 3);  // the first death and two replacements, then the limit
  EXPECT_EQ(broken, 2);
  EXPECT_THROW(later.result(), keel::BrokenProcessPool);
  EXPECT_TRUE(pool.await_termination(keel_test::hang_limit));
  EXPECT_EQ(pool.stats().replacements, 2u);
  EXPECT_THROW(pool.submit(square_t, 1), keel::BrokenProcessPool);
}

// ---- shutdown, cancel, terminate (POOL-1, POOL-4) ----

TEST(ProcessPoolShutdown, SubmitAfterShutdownIsRejected) {
  ProcessPool pool({.workers = 1});
  pool.shutdown();
  try {
    pool.submit(square_t, 1);
    FAIL() << "accepted after shutdown";
  } catch (const keel::RejectedError& e) {
    EXPECT_EQ(e.reason(), keel::RejectedError::Reason::shutdown);
  }
}

TEST(ProcessPoolShutdown, ShutdownWaitRunsQueuedWorkAndReapsEveryWorker) {
  RunFile runs;
  std::vector<int> pids;
  std::vector<Future<int>> fs;
  {
    ProcessPool pool({.workers = 2});
    for (int i = 0; i < 30; ++i) fs.push_back(pool.submit(counted_t, runs.path(), i));
    ASSERT_TRUE(eventually([&] { return pool.worker_pids().size() == 2; }));
    pids = pool.worker_pids();
    pool.shutdown({.wait = true});
    for (auto& f : fs) EXPECT_TRUE(f.done());
    EXPECT_EQ(pool.stats().workers, 0u);
  }
  for (int i = 0; i < 30; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].result(), i * i);
  EXPECT_EQ(runs.runs(), 30);
  for (int pid : pids) EXPECT_TRUE(process_gone(pid)) << pid;
}

TEST(ProcessPoolShutdown, CancelFuturesCancelsQueuedTasksWhichNeverRun) {
  RunFile runs;
  ProcessPool pool({.workers = 1, .max_in_flight = 1});
  auto first = pool.submit(sleep_t, 100);
  std::vector<Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(pool.submit(counted_t, runs.path(), i));
  ASSERT_TRUE(eventually([&] { return first.running(); }));
  pool.shutdown({.wait = true, .cancel_futures = true});
  EXPECT_EQ(first.result(), 100);
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  EXPECT_EQ(runs.runs(), 0);
}

TEST(ProcessPoolShutdown, CancelledQueuedFutureNeverRuns) {
  RunFile runs;
  ProcessPool pool({.workers = 1, .max_in_flight = 1});
  auto blocker = pool.submit(sleep_t, 100);
  auto victim = pool.submit(counted_t, runs.path(), 3);
  auto after = pool.submit(square_t, 3);
  EXPECT_TRUE(victim.cancel());
  EXPECT_EQ(after.result(), 9);
  EXPECT_EQ(blocker.result(), 100);
  EXPECT_THROW(victim.result(), keel::CancelledError);
  EXPECT_EQ(runs.runs(), 0);
  EXPECT_FALSE(blocker.cancel());  // running or done: too late
}

// Found by fuzz/process_pool_ops: a map chunk was sent whole when any of its
// calls was still wanted, so a call whose cancel() had returned true ran anyway.
TEST(ProcessPoolShutdown, CancelledCallsOfAQueuedMapChunkNeverRun) {
  RunFile first, second, third;
  ProcessPool pool({.workers = 1, .max_in_flight = 1});
  auto blocker = pool.submit(sleep_t, 100);  // keeps the chunk queued in the parent
  auto results =
      pool.map(counted_value_t,
               std::vector<std::pair<std::string, int>>{{first.path(), 1}, {second.path(), 2}, {third.path(), 3}},
               {.chunksize = 3});
  auto fs = results.futures();
  EXPECT_TRUE(fs[1].cancel());
  EXPECT_EQ(fs[0].result(), 1);
  EXPECT_EQ(fs[2].result(), 3);
  EXPECT_TRUE(fs[1].cancelled());
  EXPECT_EQ(first.runs(), 1);
  EXPECT_EQ(second.runs(), 0);
  EXPECT_EQ(third.runs(), 1);
  EXPECT_EQ(blocker.result(), 100);
}

TEST(ProcessPoolShutdown, TerminateWorkersFailsRunningTasksAndCancelsQueuedOnes) {
  std::vector<int> pids;
  ProcessPool pool({.workers = 2, .max_in_flight = 1});
  std::vector<Future<int>> running, queued;
  for (int i = 0; i < 2; ++i) running.push_back(pool.submit(sleep_t, 10000));
  for (int i = 0; i < 5; ++i) queued.push_back(pool.submit(sleep_t, 10000));
  ASSERT_TRUE(eventually([&] { return running[0].running() && running[1].running(); }));
  pids = pool.worker_pids();
  const auto t0 = std::chrono::steady_clock::now();
  pool.terminate_workers();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (auto& f : running) {
    auto e = expect_throw<keel::WorkerLost>([&] { f.result(); });
    EXPECT_EQ(e.exit_code(), -SIGTERM);
  }
  for (auto& f : queued) EXPECT_TRUE(f.cancelled());
  for (int pid : pids) EXPECT_TRUE(process_gone(pid));
  EXPECT_THROW(pool.submit(square_t, 1), keel::RejectedError);
}

TEST(ProcessPoolShutdown, KillWorkersUsesSigkill) {
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(sleep_t, 10000);
  ASSERT_TRUE(eventually([&] { return f.running(); }));
  pool.kill_workers();
  EXPECT_EQ(expect_throw<keel::WorkerLost>([&] { f.result(); }).exit_code(), -SIGKILL);
}

TEST(ProcessPoolShutdown, ShutdownWaitFromADoneCallbackIsMisuse) {
  ProcessPool pool({.workers = 1});
  auto f = pool.submit(square_t, 2);
  std::atomic<int> misuse{0};
  keel::Event seen;
  f.add_done_callback([&](const Future<int>&) {
    try {
      pool.shutdown({.wait = true});
    } catch (const keel::MisuseError&) {
      misuse = 1;
    }
    seen.set();
  });
  ASSERT_TRUE(seen.wait_for(keel_test::hang_limit));
  EXPECT_EQ(misuse.load(), 1);
}

// ---- map ----

TEST(ProcessPoolMap, ResultsInInputOrderForEveryChunksize) {
  ProcessPool pool({.workers = 2});
  std::vector<int> in(257);
  std::iota(in.begin(), in.end(), 0);
  for (std::size_t chunk : {1u, 7u, 64u, 1000u}) {
    auto out = pool.map(square_t, in, {.chunksize = chunk}).get();
    ASSERT_EQ(out.size(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i) EXPECT_EQ(out[i], in[i] * in[i]);
  }
  std::vector<int> got;
  for (int v : pool.map(square_t, std::vector<int>{3, 4})) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{9, 16}));
}

TEST(ProcessPoolMap, UnorderedYieldsEveryResultOnce) {
  ProcessPool pool({.workers = 2});
  std::vector<int> in{50, 1, 30, 2, 10};
  std::multiset<int> got;
  for (auto& f : pool.map_unordered(sleep_t, in, {.chunksize = 1})) got.insert(f.result());
  EXPECT_EQ(got, std::multiset<int>(in.begin(), in.end()));
}

TEST(ProcessPoolMap, AFailingCallRaisesAtItsPlace) {
  ProcessPool pool({.workers = 1});
  std::vector<int> in{1, 2, 3};
  auto results = pool.map(throws_value_t, in, {.chunksize = 2});
  EXPECT_THROW(results.next(), keel::RemoteError);
  EXPECT_THROW(pool.map(square_t, in, {.chunksize = 0}), keel::ValueError);
}

TEST(ProcessPoolMap, TimeoutCoversTheWholeMap) {
  ProcessPool pool({.workers = 1});
  // A worker started (a fresh image takes long under a sanitizer): the
  // timeout is about the map's calls.
  ASSERT_TRUE(eventually([&] { return pool.stats().ready == 1; }));
  auto results = pool.map(sleep_t, std::vector<int>{1, 3000}, {.timeout = 100ms});
  EXPECT_EQ(results.next(), 1);
  EXPECT_THROW(results.next(), keel::TimeoutError);
  pool.kill_workers();
}

TEST(ProcessPoolMap, ChunkWhoseWorkerDiesFailsEveryCallInIt) {
  ProcessPool pool({.workers = 1});
  auto results = pool.map(die_by_signal_t, std::vector<int>{SIGKILL, SIGKILL}, {.chunksize = 2});
  EXPECT_THROW(results.next(), keel::WorkerLost);
  EXPECT_THROW(results.next(), keel::WorkerLost);
}

// ---- stats ----

TEST(ProcessPoolStats, CountersAddUp) {
  ProcessPool pool({.workers = 2});
  std::vector<Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(pool.submit(square_t, i));
  failure_of<keel::RemoteError>(pool.submit(throws_runtime_t, 0));
  failure_of<keel::WorkerLost>(pool.submit(die_by_signal_t, SIGKILL));
  for (auto& f : fs) f.result();
  EXPECT_TRUE(eventually([&] { return pool.stats().ready == 2 && pool.stats().completed == 21; }));
  const auto s = pool.stats();
  EXPECT_EQ(s.submitted, 22u);
  EXPECT_EQ(s.completed, 21u);
  EXPECT_EQ(s.lost, 1u);
  EXPECT_EQ(s.deaths, 1u);
  EXPECT_EQ(s.replacements, 1u);
  EXPECT_EQ(s.spawned, 3u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.workers, 2u);
}

// An outcome the pool decides is in stats() by the time its future is done:
// an answer or a remote error here (deaths, timeouts and breaks were so
// already), seen by the woken caller and by a done-callback, which runs on
// the supervisor before its turn ends. (A user's own cancel() is final at
// once and counted when the supervisor next takes it.)
TEST(ProcessPoolStats, AFuturesOutcomeIsCountedByTheTimeItIsDone) {
  ProcessPool pool({.workers = 1});
  // The count a done-callback saw, plus one: 0 until it ran.
  std::atomic<std::uint64_t> seen_in_callback{0};
  for (std::uint64_t i = 0; i < 100; ++i) {
    auto f = i % 2 == 0 ? pool.submit(square_t, 3) : pool.submit(throws_runtime_t, 0);
    f.add_done_callback([&](const auto&) { seen_in_callback = pool.stats().completed + 1; });
    f.wait();
    EXPECT_EQ(pool.stats().completed, i + 1) << "round " << i;
    EXPECT_TRUE(eventually([&] { return seen_in_callback.load() != 0; }));
    EXPECT_EQ(seen_in_callback.exchange(0), i + 2) << "round " << i;
  }
  // A loss and a timeout, decided by the supervisor, likewise.
  for (std::uint64_t i = 0; i < 3; ++i) {
    auto lost = pool.submit(die_by_signal_t, SIGKILL);
    lost.wait();
    EXPECT_EQ(pool.stats().lost, i + 1) << "round " << i;
    auto late = pool.submit(keel::SubmitOptions{.timeout = 20ms}, sleep_t, 5000);
    late.wait();
    EXPECT_EQ(pool.stats().timed_out, i + 1) << "round " << i;
  }
}

// ---- a worker fed bad frames (IPC-1) and start slots (POOL-2) ----

namespace proto = keel::pool::proto;

// A worker started by hand on a socketpair with its own page of start slots,
// so a test can write anything to it and decide what each slot holds.
class RawWorker {
 public:
  static constexpr unsigned slot_count = 4;

  struct Frame {
    std::uint8_t kind;
    std::uint64_t id;
    std::uint8_t flags;
    std::string payload;
  };

  explicit RawWorker(std::uint64_t max_message = std::uint64_t{1} << 20, unsigned slots = slot_count)
      : slots_(proto::SlotPage::create(slots)) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    fd_ = sv[0];
    keel::detail::SpawnRequest req;
    req.role = "pool";
    req.fds = {sv[1], slots_.fd()};
    proto::SpawnConfig cfg;  // no initializer
    cfg.max_message = max_message;
    cfg.slots = slots;
    req.payload = proto::encode_spawn(cfg);
    child_ = keel::detail::spawn_child(req);
    ::close(sv[1]);
    slots_.close_fd();  // the worker has its own; the mapping stays
  }
  ~RawWorker() {
    ::close(fd_);
    if (child_.pid > 0) {
      ::kill(child_.pid, SIGKILL);
      keel::detail::reap_child(child_, true);
    }
  }
  // What slot `i` holds; the supervisor's side of the start.
  void set_slot(unsigned i, std::uint64_t word) { slots_[i].store(word, std::memory_order_seq_cst); }
  std::uint64_t slot(unsigned i) { return slots_[i].load(std::memory_order_seq_cst); }
  // A worker that already ended is a failed write (EPIPE), not a SIGPIPE
  // that ends the test binary.
  void write_bytes(const std::string& b) {
    ASSERT_EQ(::send(fd_, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
  }
  // The supervisor is done sending: the worker's channel ends here.
  void end_channel() { ::shutdown(fd_, SHUT_WR); }
  // The next frame from the worker, or nullopt at EOF. A worker that neither
  // writes nor ends within hang_limit is a failure, not a hang.
  std::optional<Frame> next() {
    for (;;) {
      if (auto f = reader_.next()) return Frame{f->kind, f->id, f->flags, std::string(f->payload)};
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(keel_test::hang_limit).count()));
      if (ready == 0) {
        ADD_FAILURE() << "the worker wrote nothing and did not end within hang_limit";
        return std::nullopt;
      }
      auto span = reader_.prepare(4096);
      const ssize_t n = ::read(fd_, span.data(), span.size());
      if (n <= 0) return std::nullopt;
      reader_.commit(static_cast<std::size_t>(n));
    }
  }
  // The next frame must be `kind` for task `id` on `slot`: its payload.
  std::string expect(std::uint8_t kind, std::uint64_t id, std::uint8_t slot) {
    const auto f = next();
    if (!f) {
      ADD_FAILURE() << "the worker ended; expected kind " << int{kind} << " for task " << id;
      return {};
    }
    EXPECT_EQ(int{f->kind}, int{kind}) << "task " << id;
    EXPECT_EQ(f->id, id);
    EXPECT_EQ(int{f->flags}, int{slot}) << "task " << id;
    return f->payload;
  }
  // Its exit status. The channel ends first, as when the pool closes it: a
  // worker that still waits for frames (a test's expectation failed) then
  // exits instead of hanging the test in the wait.
  int exit_code() {
    end_channel();
    return keel::detail::reap_child(child_, true);
  }

 private:
  proto::SlotPage slots_;
  int fd_ = -1;
  keel::detail::ChildHandle child_;
  keel::FrameReader reader_;
};

// A call of task `name` as the supervisor sends it: on `slot`, in the flags.
void append_call(std::string& out, std::uint64_t id, std::uint8_t slot, std::string_view name,
                 const std::string& args) {
  keel::append_frame(out, proto::call, id, proto::call_payload(name, args), keel::default_max_frame, slot);
}

TEST(ProcessPoolWorker, ABadCallPayloadIsAnsweredWithAnErrorAndTheWorkerCarriesOn) {
  RawWorker w;
  w.expect(proto::ready, 0, 0);
  std::string out;
  // A name length that runs past the payload, then an unknown task name.
  w.set_slot(0, proto::slot_sent(7));
  keel::append_frame(out, proto::call, 7,
                     std::string("\xff\xff\x00\x00"
                                 "abc",
                                 7),
                     keel::default_max_frame, 0);
  w.set_slot(1, proto::slot_sent(8));
  append_call(out, 8, 1, "pp.nobody", keel::detail::encode_args<int>(1));
  // A good call after them still runs.
  w.set_slot(2, proto::slot_sent(9));
  append_call(out, 9, 2, "pp.square", keel::detail::encode_args<int>(6));
  w.write_bytes(out);
  // Each task is started (its slot won), then answered, in the order sent.
  w.expect(proto::started, 7, 0);
  EXPECT_EQ(keel::detail::decode_error(w.expect(proto::error, 7, 0)).type(), "keel::ProtocolError");
  w.expect(proto::started, 8, 1);
  EXPECT_EQ(keel::detail::decode_error(w.expect(proto::error, 8, 1)).type(), "keel::ValueError");
  w.expect(proto::started, 9, 2);
  EXPECT_EQ(keel::detail::decode_result<int>(w.expect(proto::ok, 9, 2)), 36);
  EXPECT_EQ(w.slot(0), proto::slot_started(7));
  EXPECT_EQ(w.slot(1), proto::slot_started(8));
  EXPECT_EQ(w.slot(2), proto::slot_started(9));
}

TEST(ProcessPoolWorker, ATaskWhoseSlotWasNotSentForItIsSkippedAndNeverRuns) {
  RunFile runs;
  RawWorker w;
  w.expect(proto::ready, 0, 0);
  const std::string args = keel::detail::encode_args<std::string, int>(runs.path(), 3);
  std::string out;
  w.set_slot(0, proto::slot_sent(1));  // armed: runs
  append_call(out, 1, 0, "pp.counted_square", args);
  w.set_slot(1, proto::slot_dead(2));  // cancelled before the worker reached it
  append_call(out, 2, 1, "pp.counted_square", args);
  // slot 2 never armed
  append_call(out, 3, 2, "pp.counted_square", args);
  w.set_slot(3, proto::slot_sent(5));  // another task's word
  append_call(out, 4, 3, "pp.counted_square", args);
  w.write_bytes(out);
  w.expect(proto::started, 1, 0);
  EXPECT_EQ(keel::detail::decode_result<int>(w.expect(proto::ok, 1, 0)), 9);
  EXPECT_EQ(w.expect(proto::skipped, 2, 1), "");
  EXPECT_EQ(w.expect(proto::skipped, 3, 2), "");
  EXPECT_EQ(w.expect(proto::skipped, 4, 3), "");
  EXPECT_EQ(runs.runs(), 1);
  // The worker moved only the slot it won; the lost ones are as they were.
  EXPECT_EQ(w.slot(0), proto::slot_started(1));
  EXPECT_EQ(w.slot(1), proto::slot_dead(2));
  EXPECT_EQ(w.slot(2), 0u);
  EXPECT_EQ(w.slot(3), proto::slot_sent(5));
  // A slot is reused once its task is settled.
  out.clear();
  w.set_slot(1, proto::slot_sent(5));
  append_call(out, 5, 1, "pp.counted_square", args);
  keel::append_frame(out, proto::close, 0, "");
  w.write_bytes(out);
  w.expect(proto::started, 5, 1);
  EXPECT_EQ(keel::detail::decode_result<int>(w.expect(proto::ok, 5, 1)), 9);
  EXPECT_FALSE(w.next());
  EXPECT_EQ(w.exit_code(), 0);
  EXPECT_EQ(runs.runs(), 2);
}

TEST(ProcessPoolWorker, ASlotIndexOutsideItsPageEndsTheWorkerWithAnErrorStatus) {
  RunFile runs;
  RawWorker w;
  w.expect(proto::ready, 0, 0);
  std::string out;
  append_call(out, 1, RawWorker::slot_count, "pp.counted_square",
              keel::detail::encode_args<std::string, int>(runs.path(), 3));
  w.write_bytes(out);
  EXPECT_FALSE(w.next());  // it closed its end
  EXPECT_EQ(w.exit_code(), 72);
  EXPECT_EQ(runs.runs(), 0);
}

TEST(ProcessPoolWorker, GarbageOnItsChannelEndsTheWorkerWithAnErrorStatusNotAHang) {
  RawWorker w;
  w.expect(proto::ready, 0, 0);
  w.write_bytes(std::string("definitely not a frame header"));
  EXPECT_FALSE(w.next());  // it closed its end
  EXPECT_EQ(w.exit_code(), 72);
}

TEST(ProcessPoolWorker, AnOversizedFrameEndsTheWorkerWithoutAllocatingIt) {
  RawWorker w;
  w.expect(proto::ready, 0, 0);
  std::string header(keel::frame_header_size, '\0');
  header[0] = static_cast<char>(keel::frame_magic & 0xff);
  header[1] = static_cast<char>(keel::frame_magic >> 8);
  header[2] = static_cast<char>(proto::call);
  header[4] = header[5] = header[6] = header[7] = static_cast<char>(0xff);  // 4 GiB
  w.write_bytes(header);
  EXPECT_FALSE(w.next());
  EXPECT_EQ(w.exit_code(), 72);
}

// The spawn payload's limits at their boundaries (protocol.cpp decode_spawn,
// worker.cpp): a message limit of exactly min_error_bytes (the room an error
// report needs) and exactly proto::max_slots slots are a worker that runs.
TEST(ProcessPoolWorker, ALimitOfExactlyTheErrorReportsRoomIsEnough) {
  RawWorker w(keel::detail::min_error_bytes);
  w.expect(proto::ready, 0, 0);
  std::string out;
  w.set_slot(0, proto::slot_sent(1));
  append_call(out, 1, 0, "pp.square", keel::detail::encode_args<int>(6));
  w.set_slot(1, proto::slot_sent(2));
  append_call(out, 2, 1, "pp.throws_long", keel::detail::encode_args<int>(1000));
  keel::append_frame(out, proto::close, 0, "");
  w.write_bytes(out);
  w.expect(proto::started, 1, 0);
  EXPECT_EQ(keel::detail::decode_result<int>(w.expect(proto::ok, 1, 0)), 36);
  w.expect(proto::started, 2, 1);
  const std::string report = w.expect(proto::error, 2, 1);
  EXPECT_LE(report.size(), keel::detail::min_error_bytes);
  EXPECT_EQ(keel::detail::decode_error(report).type(), "std::runtime_error");
  EXPECT_FALSE(w.next());
  EXPECT_EQ(w.exit_code(), 0);
}

TEST(ProcessPoolWorker, ExactlyMaxSlotsSlotsAreAPageItUses) {
  RawWorker w(std::uint64_t{1} << 20, proto::max_slots);
  w.expect(proto::ready, 0, 0);
  std::string out;
  const auto last = static_cast<std::uint8_t>(proto::max_slots - 1);
  w.set_slot(last, proto::slot_sent(9));
  append_call(out, 9, last, "pp.square", keel::detail::encode_args<int>(3));
  w.write_bytes(out);
  w.expect(proto::started, 9, last);
  EXPECT_EQ(keel::detail::decode_result<int>(w.expect(proto::ok, 9, last)), 9);
  EXPECT_EQ(w.slot(last), proto::slot_started(9));
}

// IPC-1, POOL-2: a task's answer still goes out when the channel ends while
// the task runs (the supervisor closed it: the pool shut down), and then the
// worker exits 0. The worker looks for the next frame before it writes an
// answer (worker.cpp: recv with MSG_DONTWAIT); that look finds the end here,
// and must not be taken for more bytes or for an interrupted call, even with
// errno left at EINTR by the task.
TEST(ProcessPoolWorker, AnAnswerGoesOutWhenTheChannelEndedWhileItsTaskRan) {
  RunFile gate;  // the task waits until this file exists
  RawWorker w;
  w.expect(proto::ready, 0, 0);
  std::string out;
  w.set_slot(0, proto::slot_sent(4));
  append_call(out, 4, 0, "pp.wait_file_then_eintr", keel::detail::encode_args<std::string>(gate.path()));
  w.write_bytes(out);
  w.expect(proto::started, 4, 0);  // it runs now, and waits for the gate
  w.end_channel();
  note_run(gate.path());
  EXPECT_EQ(keel::detail::decode_result<int>(w.expect(proto::ok, 4, 0)), 1);
  EXPECT_FALSE(w.next());
  EXPECT_EQ(w.exit_code(), 0);
}

// POOL-7, IPC-1: a worker that reports a slot no task of its was sent on
// (any index the flags byte can carry, past its slots too) is killed; its
// task is lost, the pool goes on.
TEST(ProcessPoolWorker, ANoticeForASlotItWasNotSentIsAFaultyWorker) {
  ProcessPool pool({.workers = 1, .max_in_flight = 4});
  for (int slot : {2, 4, 255}) {
    EXPECT_EQ(failure_of<keel::WorkerLost>(pool.submit(forge_skipped_t, slot)).signal(), SIGKILL) << slot;
  }
  EXPECT_EQ(pool.submit(square_t, 7).result(), 49);
}

// A slot page's memfd numbered 0 (a process started with stdin closed gets
// fd 0 from its first open) is a page like any other, and is closed with it
// (protocol.cpp SlotPage::create, close_fd: 0 is a valid fd).
TEST(ProcessPoolSlotPage, AMemfdNumberedZeroIsAValidPageAndIsClosed) {
  const int saved = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
  ASSERT_GE(saved, 0);
  ::close(0);
  int fd = -1;
  bool created = false, zero_open_after = true;
  try {
    proto::SlotPage page = proto::SlotPage::create(4);
    created = true;
    fd = page.fd();
    page[3].store(proto::slot_sent(1), std::memory_order_relaxed);
    EXPECT_EQ(page[3].load(std::memory_order_relaxed), proto::slot_sent(1));
    page.close_fd();
    zero_open_after = ::fcntl(0, F_GETFD) != -1;
  } catch (const keel::OsError& e) {
    ADD_FAILURE() << e.what();
  }
  ::dup2(saved, 0);
  ::close(saved);
  if (created && fd != 0) GTEST_SKIP() << "another thread took fd 0 first";
  EXPECT_TRUE(created);
  EXPECT_FALSE(zero_open_after) << "close_fd left the page's fd 0 open";
}

// ---- start methods and the parent dying (POOL-4) ----

TEST(ProcessPoolStart, ForkStartMethodRunsTasks) {
#if KEEL_TEST_TSAN
  GTEST_SKIP() << "TSan cannot start threads in a child forked from a multi-threaded process (the worker's "
                  "lifeline watcher); fork start is tested in the other builds";
#endif
  ProcessPool pool({.workers = 2, .start = keel::StartMethod::fork});
  EXPECT_EQ(pool.submit(square_t, 9).result(), 81);
  failure_of<keel::WorkerLost>(pool.submit(die_by_signal_t, SIGKILL));
  EXPECT_EQ(pool.submit(square_t, 10).result(), 100);
}

TEST(ProcessPoolParent, WorkersExitWithinASecondWhenTheParentIsKilled) {
  // Orphans are re-parented to this process, so it can see and reap them.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  std::vector<int> pids;
  {
    auto [here, there] = keel::Pipe();
    keel::Process middle(keel::ProcessOptions{.connections = {std::cref(there)}}, middle_parent_t, 2);
    middle.start();
    there.close();
    pids = here.recv<std::vector<int>>(keel_test::hang_limit);
    middle.kill();
    middle.join();
    EXPECT_EQ(middle.exitcode(), -SIGKILL);
  }
  ASSERT_EQ(pids.size(), 2u);
  const auto t0 = std::chrono::steady_clock::now();
  std::set<int> left(pids.begin(), pids.end());
  int st = 0;
  while (!left.empty() && std::chrono::steady_clock::now() - t0 < 1s) {
    for (auto it = left.begin(); it != left.end();) {
      it = ::waitpid(*it, &st, WNOHANG) == *it ? left.erase(it) : std::next(it);
    }
    ::usleep(1000);
  }
  EXPECT_TRUE(left.empty()) << "a worker outlived its killed parent by a second";
  for (int pid : left) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &st, 0);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

}  // namespace
