// keel::RobustMutex: turning the shim's errno results into acquisitions and
// typed errors. See keel/process/robust_mutex.hpp for the contract.
#include "keel/process/robust_mutex.hpp"

#include <cerrno>
#include <cstring>
#include <string>

namespace keel {

namespace {

[[noreturn]] void fail(int code, const char* op) {
  const std::string what = std::string("keel::RobustMutex::") + op + ": ";
  if (code == EDEADLK) throw MisuseError(what + "the calling thread already holds it");
  throw OsError(code, what + std::strerror(code));
}

}  // namespace

RobustMutex::RobustMutex() {
  if (const int e = core_.init_error(); e != 0) {
    throw OsError(e,
                  std::string("keel::RobustMutex: cannot create a robust process-shared mutex: ") + std::strerror(e));
  }
}

LockResult RobustMutex::result(int code, const char* op) {
  if (code == 0) {
    owner_died_ = false;
    return LockResult::acquired;
  }
  if (code == EOWNERDEAD) {
    owner_died_ = true;
    recoveries_.fetch_add(1, std::memory_order_relaxed);
    return LockResult::owner_died;
  }
  fail(code, op);
}

bool RobustMutex::taken(int code, const char* op) {
  if (code == EBUSY || code == ETIMEDOUT) return false;
  result(code, op);
  return true;
}

void RobustMutex::unlock() {
  const int code = core_.unlock();
  if (code == EPERM) throw LockNotHeldError("keel::RobustMutex::unlock: the calling thread does not hold it");
  if (code != 0) fail(code, "unlock");
}

}  // namespace keel
