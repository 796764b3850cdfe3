// keel's error types: every failure a caller can see is one of these.
//
// Contract: misuse and bad input are reported by throwing a typed error that
// names what went wrong, after leaving the object exactly as it was (nothing is
// lost or half-changed). The hierarchy mirrors Python's exceptions so users can
// map them one to one: keel::Error is the root, MisuseError is Python's
// RuntimeError for lock misuse, ValueError is Python's ValueError,
// BrokenBarrierError and TimeoutError are Python's threading names.
//
// Invariants: SYNC-3 (misuse is reported with a typed error, state unchanged).
#pragma once

#include <stdexcept>
#include <string>

namespace keel {

// Root of every error keel throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An operation used against the object's contract (Python: RuntimeError).
class MisuseError : public Error {
 public:
  using Error::Error;
};

// Releasing a lock that is not held: Mutex::unlock on an unlocked Mutex, or a
// Condition operation without its lock.
class LockNotHeldError : public MisuseError {
 public:
  using MisuseError::MisuseError;
};

// Releasing a RecursiveMutex from a thread that does not own it.
class NotOwnerError : public MisuseError {
 public:
  using MisuseError::MisuseError;
};

// A bad argument (Python: ValueError): a negative semaphore value, a
// BoundedSemaphore released above its initial value, zero barrier parties.
class ValueError : public Error {
 public:
  using Error::Error;
};

// A Barrier was aborted, reset, timed out or its action failed while the
// caller waited on it, or it was already broken when the caller arrived.
class BrokenBarrierError : public Error {
 public:
  using Error::Error;
};

// A blocking operation's deadline passed.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

}  // namespace keel
