// keel's fuzz harness: how a target is declared, how it reads its input, and
// how it reports a broken invariant.
//
// A target is a function over bytes, declared once with KEEL_FUZZ_TARGET(name).
// The same object file serves three binaries: the libFuzzer (or AFL++) binary
// build/<san>/fuzz/<name>, whose entry point (fuzz/main/libfuzzer.cpp) runs the
// one target linked into it; the standalone reproducer (fuzz/main/standalone.cpp,
// any compiler); and keel_tests, which replays every committed seed and crash
// input of every target (tests/fuzz/corpus_replay_test.cpp).
//
// Contract for targets: every byte string is a valid input (Input returns zeros
// past the end), so the fuzzer never wastes executions on parse errors of the
// harness itself. Nothing a target does may block without a bound: a hang is a
// finding (libFuzzer's -timeout). Invariants are checked on the thread that
// runs the target, after every operation where the interpreter can know the
// answer and always once everything is quiet at the end; a broken one calls
// KEEL_FUZZ_CHECK, which reports the invariant's ID from proofs/INVARIANTS.md.
// Everything a target starts (threads, pools, processes, fds) is finished and
// released before it returns: a leak is a finding too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace keel::fuzz {

// The fuzzer's bytes, consumed front to back as a script. Past the end every
// read gives zero, so a short input is a short, valid script.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) noexcept : p_(data), n_(size) {}

  bool empty() const noexcept { return n_ == 0; }
  std::size_t remaining() const noexcept { return n_; }

  std::uint8_t byte() noexcept {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }

  // Little-endian unsigned integer of sizeof(T) bytes (zero-padded at the end).
  template <class T>
  requires std::is_unsigned_v<T> T integral()
  noexcept {
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(byte()) << (8 * i));
    return v;
  }

  bool boolean() noexcept { return (byte() & 1) != 0; }

  // Uniform enough for a fuzzer: a value in [0, n); 0 when n == 0.
  std::size_t below(std::size_t n) noexcept {
    if (n <= 1) return 0;
    const std::uint64_t raw = n <= 256 ? byte() : n <= 65536 ? integral<std::uint16_t>() : integral<std::uint32_t>();
    return static_cast<std::size_t>(raw % n);
  }

  // A value in [lo, hi].
  std::size_t in_range(std::size_t lo, std::size_t hi) noexcept { return lo + below(hi - lo + 1); }

  // Up to max_len bytes, length first (one byte, or two if max_len > 255).
  std::string bytes(std::size_t max_len) {
    const std::size_t want = below(max_len + 1);
    const std::size_t len = want < n_ ? want : n_;
    std::string s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return s;
  }

  // Everything left; the input is then empty.
  std::string_view rest() noexcept {
    std::string_view s(reinterpret_cast<const char*>(p_), n_);
    p_ += n_;
    n_ = 0;
    return s;
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

using TargetFn = void (*)(Input&);

struct Target {
  std::string name;
  TargetFn fn;
};

// Every target linked into this binary, in registration order.
std::vector<Target>& targets();

struct Registration {
  Registration(const char* name, TargetFn fn);
};

// Runs the named target (or the only one, when name is empty) over the bytes.
// MisuseError-free by design: an unknown name is reported and aborts.
void run(std::string_view name, const std::uint8_t* data, std::size_t size);

// Reports a broken invariant: the invariant ID, where, and what was seen.
// By default prints to stderr and aborts, which libFuzzer records as a crash
// with the input that caused it. The replay test installs a handler that
// throws instead, so one bad input fails one test and names its file.
[[noreturn]] void fail(const char* invariant, const char* file, int line, const std::string& what);
using FailureHandler = std::function<void(const std::string& message)>;
void set_failure_handler(FailureHandler handler);

// True when built with AddressSanitizer or ThreadSanitizer (slower: targets
// scale their sizes down).
constexpr bool sanitized() {
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return true;
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

}  // namespace keel::fuzz

// KEEL_FUZZ_CHECK("POOL-1", cond, what): what is any expression convertible to
// std::string, evaluated only when cond is false.
#define KEEL_FUZZ_CHECK(invariant, cond, what)                                \
  do {                                                                        \
    if (!(cond)) ::keel::fuzz::fail((invariant), __FILE__, __LINE__, (what)); \
  } while (0)

#define KEEL_FUZZ_CAT2(a, b) a##b
#define KEEL_FUZZ_CAT(a, b) KEEL_FUZZ_CAT2(a, b)

// Declares and registers a target: KEEL_FUZZ_TARGET(codec) { ...uses `in`... }
#define KEEL_FUZZ_TARGET(name)                                                          \
  static void KEEL_FUZZ_CAT(keel_fuzz_target_, name)(::keel::fuzz::Input & in);         \
  static const ::keel::fuzz::Registration KEEL_FUZZ_CAT(keel_fuzz_registration_, name){ \
      #name, &KEEL_FUZZ_CAT(keel_fuzz_target_, name)};                                  \
  static void KEEL_FUZZ_CAT(keel_fuzz_target_, name)(::keel::fuzz::Input & in)
