// Fuzz target codec: the byte encoding between processes fed hostile bytes,
// as every built-in shape, a user type, task arguments and error reports.
//
// Input: one selector byte, then the bytes to decode. Selectors pick a type
// (scalars, strings, vectors incl. vector<bool> and element-marked vectors,
// optionals, variants, tuples, pairs, arrays, a member-codec user type, plain
// aggregates incl. bit-fields, ordered and unordered maps and sets and their
// multi forms, std::chrono durations and time points), a registered task to
// invoke with the bytes as its arguments, or the error report decoder.
// Checks (IPC-1), for every input:
// - decoding gives a value or a ProtocolError; no other exception, no crash;
// - a value re-encodes to exactly the input (the encoding is canonical), so
//   no two byte strings decode to the same value and nothing is ignored;
// - a task runs only when its arguments decode exactly, and then with them
//   (it re-encodes its arguments and the result proves it); an error report
//   decodes to a RemoteError whose type and message re-encode to the input;
// - under a sanitizer, no single allocation made while decoding is larger
//   than a fixed multiple of the input, whatever count or length it claims.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "keel/error.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/task.hpp"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#include <sanitizer/allocator_interface.h>
#define KEEL_FUZZ_MALLOC_HOOKS 1
#endif
#endif

namespace {

// ---- allocation bound ----------------------------------------------------------
// The largest single allocation on the fuzzing thread while armed. Sanitizer
// malloc hooks see every allocation, operator new included, without replacing
// the global allocator (the test binary links this file too).
std::atomic<std::size_t> largest_allocation{0};
thread_local bool armed = false;

#ifdef KEEL_FUZZ_MALLOC_HOOKS
void on_malloc(const volatile void*, std::size_t size) {
  if (armed && size > largest_allocation.load(std::memory_order_relaxed)) {
    largest_allocation.store(size, std::memory_order_relaxed);
  }
}
void on_free(const volatile void*) {}
[[maybe_unused]] const bool hooks_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
#endif

struct Armed {
  Armed() {
    largest_allocation.store(0, std::memory_order_relaxed);
    armed = true;
  }
  ~Armed() { armed = false; }
};

#ifdef KEEL_FUZZ_MALLOC_HOOKS
// A value's heap footprint per input byte: the widest element (an
// optional<vector<string>> is 32 bytes and encodes to at least 1) times the
// input, plus slack for exception messages and small strings.
constexpr std::size_t bytes_per_input_byte = 64;
constexpr std::size_t allocation_slack = 4096;
#endif

// ---- a user type with the member protocol ---------------------------------------

enum class Colour : std::int16_t { red = 1, green = 2 };

struct Point {
  std::int32_t x = 0;
  std::string label;
  std::optional<Colour> colour;
  static constexpr std::size_t codec_min_size = 4 + 4 + 1;
  void encode(keel::Encoder& e) const {
    e.put(x);
    e.put(label);
    e.put(colour);
  }
  static Point decode(keel::Decoder& d) {
    Point p;
    p.x = d.get<std::int32_t>();
    p.label = d.get<std::string>();
    p.colour = d.get<std::optional<Colour>>();
    return p;
  }
};

// ---- plain aggregates: no codec of their own ---------------------------------------

struct Record {
  std::int32_t id = 0;
  std::string name;
  std::optional<Colour> colour;
  std::map<std::string, std::vector<Point>> points;
  std::chrono::milliseconds timeout{0};
};

struct Bits {
  std::uint8_t low : 3;
  std::uint8_t high : 5;
};

// Decode as T; on success the value must re-encode to the same bytes.
template <class T>
void round_trip(std::string_view bytes) {
  std::optional<T> value;
  {
    Armed a;
    try {
      value = keel::decode<T>(bytes);
    } catch (const keel::ProtocolError&) {
      return;
    }
  }
#ifdef KEEL_FUZZ_MALLOC_HOOKS
  const std::size_t largest = largest_allocation.load(std::memory_order_relaxed);
  KEEL_FUZZ_CHECK(
      "IPC-1", largest <= bytes_per_input_byte * bytes.size() + allocation_slack,
      "decoding " + std::to_string(bytes.size()) + " bytes allocated " + std::to_string(largest) + " bytes at once");
#endif
  const std::string again = keel::encode(*value);
  KEEL_FUZZ_CHECK("IPC-1", again == bytes,
                  "decoded " + std::to_string(bytes.size()) + " bytes re-encode to " + std::to_string(again.size()) +
                      " different bytes (not canonical)");
}

// ---- tasks: each proves it got exactly the bytes it was invoked with --------------

std::string task_received;  // the re-encoded arguments of the last task run

const auto echo_task = keel::register_task("fuzz.codec.echo", [](std::int32_t a, std::string b) {
  task_received = keel::encode(a, b);
  return b;
});
const auto shapes_task = keel::register_task("fuzz.codec.shapes", [](const std::vector<std::optional<std::string>>& v,
                                                                     std::variant<std::monostate, double, Point> w) {
  task_received = keel::encode(v, w);
  return v.size();
});
const auto none_task = keel::register_task("fuzz.codec.none", [] { task_received = keel::encode(); });
const auto record_task =
    keel::register_task("fuzz.codec.record", [](Record r, std::unordered_map<std::string, std::set<std::int16_t>> m) {
      task_received = keel::encode(r, m);
      return m.size();
    });

void invoke(const std::string& name, std::string_view args) {
  task_received.assign("\xff unset");
  std::string result;
  try {
    Armed a;
    result = keel::detail::invoke_task(name, args);
  } catch (const keel::ProtocolError&) {
    KEEL_FUZZ_CHECK("IPC-1", task_received == "\xff unset", "task " + name + " ran although its arguments failed");
    return;
  }
  KEEL_FUZZ_CHECK("IPC-1", task_received == args, "task " + name + " ran with arguments other than its input");
}

void error_report(std::string_view bytes) {
  try {
    const keel::RemoteError e = keel::detail::decode_error(bytes);
    KEEL_FUZZ_CHECK("IPC-1", keel::encode(e.type(), e.message()) == bytes,
                    "an error report does not re-encode to its bytes");
  } catch (const keel::ProtocolError&) {
  }
}

using Variant = std::variant<std::monostate, std::int64_t, std::string, std::vector<double>, bool>;

}  // namespace

KEEL_FUZZ_TARGET(codec) {
#ifdef KEEL_FUZZ_MALLOC_HOOKS
  KEEL_FUZZ_CHECK("IPC-1", hooks_installed, "the sanitizer's malloc hooks could not be installed");
#endif
  const std::uint8_t selector = in.byte();
  const std::string_view b = in.rest();
  try {
    switch (selector % 40) {
      case 0:
        return round_trip<bool>(b);
      case 1:
        return round_trip<std::int8_t>(b);
      case 2:
        return round_trip<std::uint16_t>(b);
      case 3:
        return round_trip<std::int64_t>(b);
      case 4:
        return round_trip<double>(b);
      case 5:
        return round_trip<float>(b);
      case 6:
        return round_trip<Colour>(b);
      case 7:
        return round_trip<std::string>(b);
      case 8:
        return round_trip<std::vector<std::int32_t>>(b);
      case 9:
        return round_trip<std::vector<std::string>>(b);
      case 10:
        return round_trip<std::vector<bool>>(b);
      case 11:
        return round_trip<std::optional<std::string>>(b);
      case 12:
        return round_trip<Variant>(b);
      case 13:
        return round_trip<std::tuple<std::uint8_t, std::string, std::optional<std::int32_t>>>(b);
      case 14:
        return round_trip<std::pair<std::string, std::vector<std::pair<std::int16_t, std::string>>>>(b);
      case 15:
        return round_trip<std::array<std::uint16_t, 3>>(b);
      case 16:
        return round_trip<std::vector<std::monostate>>(b);
      case 17:
        return round_trip<std::vector<std::optional<std::vector<std::string>>>>(b);
      case 18:
        return round_trip<std::vector<Variant>>(b);
      case 19:
        return round_trip<Point>(b);
      case 20:
        return round_trip<std::vector<Point>>(b);
      case 21:
        return round_trip<std::vector<std::tuple<>>>(b);
      case 22:
        return invoke(echo_task.name(), b);
      case 23:
        return invoke(shapes_task.name(), b);
      case 24:
        return invoke(none_task.name(), b);
      case 25:
        return error_report(b);
      case 26:
        return round_trip<std::map<std::uint8_t, std::string>>(b);
      case 27:
        return round_trip<std::set<std::int16_t>>(b);
      case 28:
        return round_trip<std::multimap<std::uint8_t, std::optional<std::uint8_t>>>(b);
      case 29:
        return round_trip<std::multiset<std::string>>(b);
      case 30:
        return round_trip<std::unordered_map<std::string, std::int32_t>>(b);
      case 31:
        return round_trip<std::unordered_set<std::uint16_t>>(b);
      case 32:
        return round_trip<std::unordered_multiset<std::string>>(b);
      case 33:
        return round_trip<std::unordered_set<double>>(b);
      case 34:
        return round_trip<std::multiset<std::tuple<>>>(b);
      case 35:
        return round_trip<
            std::tuple<std::chrono::milliseconds, std::chrono::duration<double>, std::chrono::steady_clock::time_point,
                       std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>>>(b);
      case 36:
        return round_trip<Record>(b);
      case 37:
        return round_trip<Bits>(b);
      case 38:
        return round_trip<std::map<std::string, std::vector<Record>>>(b);
      default:
        return invoke(record_task.name(), b);
    }
  } catch (const keel::ProtocolError&) {
    KEEL_FUZZ_CHECK("IPC-1", false, "a ProtocolError escaped where the target expects none");
  } catch (const std::exception& e) {
    KEEL_FUZZ_CHECK("IPC-1", false, std::string("decoding threw something other than ProtocolError: ") + e.what());
  }
}
