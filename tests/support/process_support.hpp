// Helpers for keel's tests across processes (shared memory, robust mutexes,
// process queues, primitives in MAP_SHARED memory): an anonymous shared
// mapping holding one object, forked children that never outlive the test,
// shm names unique to this process that never outlive the test either, and
// the errno an OsError carries.
//
// Children only touch shared memory and leave with _exit; the parent reaps
// them with bounded waits, and whatever is still alive when the Children
// guard goes away (a test that failed early) is killed and reaped, so no test
// leaves a child or a zombie behind (POOL-4's listener checks this).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "keel/error.hpp"
#include "test_support.hpp"

namespace keel_test {

// An anonymous MAP_SHARED mapping holding one T, built with placement new: a
// child forked after construction shares it with the parent. get() is null
// when mmap failed (tests ASSERT_NE it).
template <class T>
class SharedMapping {
 public:
  SharedMapping() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) obj_ = new (p) T();
  }
  ~SharedMapping() {
    if (obj_ != nullptr) {
      obj_->~T();
      ::munmap(obj_, sizeof(T));
    }
  }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  T* get() const { return obj_; }
  T* operator->() const { return obj_; }

 private:
  T* obj_ = nullptr;
};

// Forked children that never outlive the test: whatever has not been reaped
// when the guard goes away is SIGKILLed and reaped.
class Children {
 public:
  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() {
    for (pid_t pid : live_) {
      ::kill(pid, SIGKILL);
      wait_for(pid);
    }
  }

  // Runs body in a child (fork_child): its return value is the exit code, an
  // exception 101. Returns the pid, or -1 when fork failed.
  template <class F>
  pid_t spawn(F body) {
    const pid_t pid = fork_child(std::move(body));
    if (pid > 0) live_.push_back(pid);
    return pid;
  }

  // SIGKILLs pid and reaps it; true when that signal (not an exit) ended it.
  bool kill(pid_t pid) {
    const int status = kill_status(pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }
  // The same, returning the wait status.
  int kill_status(pid_t pid) {
    ::kill(pid, SIGKILL);
    const int status = wait_for(pid);
    std::erase(live_, pid);
    return status;
  }

  // The children not reaped yet.
  const std::vector<pid_t>& live() const { return live_; }

  // Waits (bounded) for pid to exit; its exit code, or -1 when it did not
  // exit normally or in time (the destructor then kills it).
  int reap(pid_t pid, std::chrono::milliseconds limit = hang_limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        std::erase(live_, pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if ((r < 0 && errno != EINTR) || std::chrono::steady_clock::now() >= end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Reaps every child; true when all exited with code 0 (each other one is
  // a test failure, named).
  bool reap_all_ok() {
    bool ok = true;
    for (pid_t pid : std::vector<pid_t>(live_)) {
      const int code = reap(pid);
      if (code != 0) {
        ADD_FAILURE() << "child " << pid << " exited with " << code;
        ok = false;
      }
    }
    return ok;
  }

 private:
  static int wait_for(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }
  std::vector<pid_t> live_;
};

// A POSIX shm name unique to this process and object,
// "/keel-<prefix>-<pid>-<n>", unlinked on scope exit (also when a test fails
// early).
class ShmName {
 public:
  explicit ShmName(const std::string& prefix = "shm-test") {
    static std::atomic<int> counter{0};
    name_ = "/keel-" + prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  }
  ShmName(const ShmName&) = delete;
  ShmName& operator=(const ShmName&) = delete;
  ~ShmName() { ::shm_unlink(name_.c_str()); }
  const std::string& str() const { return name_; }
  // Whether a segment of this name exists now.
  bool exists() const {
    const int fd = ::shm_open(name_.c_str(), O_RDONLY, 0);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }

 private:
  std::string name_;
};

// The errno of the keel::OsError that f throws; 0 when it throws none.
template <class F>
int os_error_code(F f) {
  try {
    f();
  } catch (const keel::OsError& e) {
    return e.code();
  }
  return 0;
}

// Appends one byte to `path` per run: how a test counts the runs of a task
// across worker processes (the worker appends, the test reads the size).
inline void note_run(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    [[maybe_unused]] auto n = ::write(fd, "x", 1);
    ::close(fd);
  }
}

inline long runs_in(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : 0;
}

// A scratch file for run counting, unique to this process, removed at the
// end of the test.
class RunFile {
 public:
  RunFile() {
    static std::atomic<int> n{0};
    path_ = "/tmp/keel-runs-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
    ::unlink(path_.c_str());
  }
  RunFile(const RunFile&) = delete;
  RunFile& operator=(const RunFile&) = delete;
  ~RunFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }
  long runs() const { return runs_in(path_); }

 private:
  std::string path_;
};

}  // namespace keel_test
