// The test suite's per-test time limit: a hang is a named failure, never an
// opaque CI timeout.
//
// Contract: install() starts one watchdog thread (in the test process only:
// call it after keel::bootstrap) and returns the GoogleTest listener that arms
// it at each test's start and disarms it at the end. A test still running after
// its limit makes the watchdog print
//   [  TIMEOUT ] Suite.Name did not end within N s
// then where every thread of the process is (one backtrace per thread, with
// function names and source lines where the binary has them), then
//   [  FAILED  ] Suite.Name (timed out)
// and end the process with exit status `timeout_status`, so the run is red and
// names the test. A hung test cannot be unwound, so no later test runs.
//
// The limit is KEEL_TEST_TIMEOUT seconds (default_limit_seconds when unset;
// 0 turns the watchdog off). A value that is not a whole number of seconds
// ends the run at once with a message naming the variable: a typo must not
// silently turn the limit off.
//
// Invariants: TEST-1 (every hang in make test / make sanitize is a named
// failure).
#pragma once

#include <gtest/gtest.h>

namespace keel::test {

inline constexpr int default_limit_seconds = 300;
inline constexpr int timeout_status = 124;  // the status timeout(1) uses

// Reads KEEL_TEST_TIMEOUT and starts the watchdog thread; the returned listener
// belongs to GoogleTest once appended. Exits with status 2 on a bad value.
::testing::TestEventListener* install_watchdog();

// The per-test limit in force, in seconds; 0 when the watchdog is off or not
// installed. A test that gives a child process a time limit of its own keeps
// it below this one, so that a child that hangs fails the test by name (with
// what the child printed) rather than ending the run as a timeout.
int watchdog_limit_seconds();

}  // namespace keel::test
