// Entry points for libFuzzer and for AFL++'s libFuzzer-compatible driver: the
// binary holds exactly one target. keel::bootstrap runs first, because the
// process pool targets start workers that are fresh images of this binary; in
// such a worker it never returns, so libFuzzer never starts there.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz.hpp"
#include "keel/process/bootstrap.hpp"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  keel::bootstrap(*argc, *argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  keel::fuzz::run({}, data, size);
  return 0;
}
