// keel::Encoder, keel::Decoder and keel::Codec<T>: the byte encoding that task
// arguments, results and messages use between processes.
//
// Contract: Encoder appends fixed-width little-endian encodings to a string;
// Decoder reads them back and treats its input as hostile: a truncated value,
// trailing bytes, a bool byte other than 0/1, a bad optional/variant tag or a
// count the remaining bytes cannot hold is a ProtocolError, never undefined
// behaviour. A count is checked against the bytes left before anything is
// allocated, so memory use stays proportional to the input, whatever it
// claims (IPC-1). The encoding is canonical: bytes that decode re-encode to
// themselves, so a decoded container never holds elements out of its order or
// duplicates that its type forbids: they are a ProtocolError, never silently
// merged. A type becomes encodable by specializing keel::Codec<T> (static
// encode/decode, optionally `static constexpr std::size_t min_size`), by
// giving T `void encode(keel::Encoder&) const` and `static T decode(keel::Decoder&)`,
// or, for a plain aggregate whose fields are all encodable, by nothing at all:
// its fields travel in declaration order (a user's codec, either kind, wins).
// Pointers, references, unions and C arrays are refused at compile time
// with a static_assert that says why. Beyond the scalars, strings, vectors,
// arrays, pairs, tuples, optionals and variants: std::map/set/multimap/
// multiset (elements in key order), their unordered forms (elements sorted by
// their encoded bytes), std::chrono durations (the count) and time points
// (the duration since the epoch).
//
// Invariants: IPC-1 (a malformed encoding is a ProtocolError: no crash, hang
// or unbounded allocation).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "keel/error.hpp"
#include "keel/process/detail/codec_fields.hpp"

namespace keel {

class Encoder;
class Decoder;

// The customization point. The primary template serves types that carry their
// own encode/decode members; everything else is a specialization below or the
// user's own.
template <class T, class Enable = void>
struct Codec;

namespace detail {

// u with its bytes in little-endian order (the wire's), from and to the host's:
// a byte swap on a big-endian host, nothing on the others. Both directions are
// the same function. One copy of the bytes either way, and no loop whose bound
// only a big-endian build would exercise.
template <class U>
constexpr U little_endian(U u) noexcept {
  static_assert(std::is_unsigned_v<U>);
  if constexpr (std::endian::native == std::endian::little || sizeof(U) == 1) {
    return u;
  } else if constexpr (sizeof(U) == 2) {
    return __builtin_bswap16(u);
  } else if constexpr (sizeof(U) == 4) {
    return __builtin_bswap32(u);
  } else {
    static_assert(sizeof(U) == 8, "the codec's fixed-width integers are 1, 2, 4 or 8 bytes");
    return __builtin_bswap64(u);
  }
}

// T has `void encode(Encoder&) const` and `static T decode(Decoder&)`.
template <class T>
concept member_codec = requires(const T& v, Encoder& e, Decoder& d) {
  v.encode(e);
  { T::decode(d) } -> std::same_as<T>;
};

// keel::Codec<T> is usable: both directions exist.
template <class T>
concept has_codec = requires(const T& v, Encoder& e, Decoder& d) {
  Codec<T>::encode(e, v);
  { Codec<T>::decode(d) } -> std::same_as<T>;
};

// The fewest bytes any value of T encodes to; 0 when unknown or when the
// encoding can be empty. Vectors use it to bound a claimed count.
template <class T>
constexpr std::size_t codec_min_size() {
  if constexpr (requires {
                  { Codec<T>::min_size } -> std::convertible_to<std::size_t>;
                }) {
    return Codec<T>::min_size;
  } else {
    return 0;
  }
}

// Member-protocol types may declare `static constexpr std::size_t codec_min_size`.
template <class T>
constexpr std::size_t member_min_size() {
  if constexpr (requires {
                  { T::codec_min_size } -> std::convertible_to<std::size_t>;
                }) {
    return T::codec_min_size;
  } else {
    return 0;
  }
}

template <class T>
inline constexpr bool always_false = false;

template <class List>
struct all_fields_encodable;

template <class... F>
struct all_fields_encodable<type_list<F...>>
    : std::bool_constant<((!std::is_reference_v<F> && has_codec<std::remove_cv_t<F>>)&&...)> {};

// A plain aggregate that the codec encodes field by field: it has no member
// codec (which would win), its fields can be listed (codec_fields.hpp), and
// every one is an encodable value, not a reference.
template <class T>
concept aggregate_codec = !member_codec<T> && fields_listable<T> && all_fields_encodable<field_types<T>>::value;

template <class... F>
constexpr std::size_t fields_min_size(type_list<F...>) {
  return (std::size_t{0} + ... + codec_min_size<std::remove_cv_t<F>>());
}

template <class T>
constexpr bool missing_codec_reported();

template <class... F>
constexpr bool field_missing_codec_reported(type_list<F...>) {
  return (missing_codec_reported<std::remove_cv_t<F>>() || ...);
}

// For a T without a codec, a static_assert that says why, where the reason is
// known; returns whether one was made. The compiler's note on the failing
// instantiation names the type (and, for an aggregate's field, the aggregate).
template <class T>
constexpr bool missing_codec_reported_why() {
  if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T>) {
    static_assert(always_false<T>, "keel codec: a pointer cannot be encoded (its target stays here): send the value");
    return true;
  } else if constexpr (std::is_reference_v<T>) {
    static_assert(always_false<T>, "keel codec: a reference member cannot be decoded (it would dangle): hold a value");
    return true;
  } else if constexpr (std::is_union_v<T>) {
    static_assert(always_false<T>,
                  "keel codec: a union cannot be encoded (its active member is unknown): use std::variant");
    return true;
  } else if constexpr (std::is_array_v<T>) {
    static_assert(always_false<T>, "keel codec: a C array cannot be encoded: use std::array");
    return true;
  } else if constexpr (std::is_class_v<T> && std::is_aggregate_v<T> && !member_codec<T>) {
    if constexpr (!fields_listable<T>) {
      static_assert(always_false<T>,
                    "keel codec: cannot list this aggregate's fields (a C-array member, a field neither default-"
                    "constructible nor made from one value, or over 24 fields): give it a keel::Codec");
      return true;
    } else {
      return field_missing_codec_reported(field_types<T>{});
    }
  } else {
    return false;
  }
}

template <class T>
constexpr bool missing_codec_reported() {
  if constexpr (has_codec<T>) {
    return false;  // and nothing instantiated that could assert
  } else {
    return missing_codec_reported_why<T>();
  }
}

// An enum with a fixed underlying type: every value of that type is a valid
// enumerator value, so decoding any bit pattern is defined. (Only such enums
// can be list-initialized from their underlying type.)
template <class E>
concept fixed_enum = std::is_enum_v<E> && requires(std::underlying_type_t<E> u) {
  E{u};
};

// Integers (bool excluded) and IEEE floats: vectors of them copy as one block
// on a little-endian host.
template <class T>
inline constexpr bool block_copyable = std::endian::native == std::endian::little &&
                                       ((std::is_integral_v<T> && !std::is_same_v<T, bool>) ||
                                        std::is_same_v<T, float> || std::is_same_v<T, double>);

[[noreturn]] inline void codec_error(const std::string& what) { throw ProtocolError("keel codec: " + what); }

}  // namespace detail

/// Appends encodings to a std::string. If an encoding throws part way, put()
/// removes what it had appended, so the bytes hold only whole values.
class Encoder {
 public:
  /// An encoder with no bytes yet.
  Encoder() = default;
  /// Appends after `initial` (e.g. a reserved header).
  explicit Encoder(std::string initial) noexcept : bytes_(std::move(initial)) {}

  /// Appends the n bytes at p as they are: no count, no byte-order change.
  void put_raw(const void* p, std::size_t n) {
    if (n != 0) bytes_.append(static_cast<const char*>(p), n);
  }

  /// Appends v by keel::Codec (a compile error saying why if T has none); if that throws, nothing of v stays.
  template <class T>
  void put(const T& v) {
    using U = std::remove_cvref_t<T>;
    static_assert(detail::has_codec<U> || detail::missing_codec_reported<U>(),
                  "keel: no keel::Codec for this type: specialize keel::Codec<T>, or give T "
                  "`void encode(keel::Encoder&) const` and `static T decode(keel::Decoder&)` "
                  "(enums need a fixed underlying type, e.g. `enum E : int`)");
    if constexpr (detail::has_codec<U>) {  // else the static_assert has said why, once
      const std::size_t mark = bytes_.size();
      try {
        Codec<U>::encode(*this, v);
      } catch (...) {
        bytes_.resize(mark);
        throw;
      }
    }
  }

  /// A u32 count. ProtocolError (nothing appended) if n does not fit.
  void put_size(std::size_t n) {
    if (n > std::numeric_limits<std::uint32_t>::max()) {
      detail::codec_error("count " + std::to_string(n) + " does not fit in 32 bits");
    }
    put_le(static_cast<std::uint32_t>(n));
  }

  /// Fixed-width little-endian unsigned integer.
  template <class U>
  void put_le(U u) {
    static_assert(std::is_unsigned_v<U>);
    u = detail::little_endian(u);
    put_raw(&u, sizeof u);
  }

  /// The bytes encoded so far, to read or to extend in place.
  std::string& bytes() noexcept { return bytes_; }
  /// The bytes encoded so far.
  const std::string& bytes() const noexcept { return bytes_; }
  /// How many bytes have been encoded so far.
  std::size_t size() const noexcept { return bytes_.size(); }
  /// The bytes; the encoder is left empty.
  std::string take() noexcept {
    std::string out = std::move(bytes_);
    bytes_.clear();
    return out;
  }

 private:
  std::string bytes_;
};

/// Reads what Encoder wrote from a borrowed buffer. Every failure is a
/// ProtocolError; after one, the decoder's position is unspecified.
class Decoder {
 public:
  /// Reads `bytes`, which must outlive the decoder and every view it returns.
  explicit Decoder(std::string_view bytes) noexcept : rest_(bytes) {}

  /// Copies the next n bytes to p; ProtocolError if fewer than n are left.
  void get_raw(void* p, std::size_t n) {
    need(n);
    if (n != 0) std::memcpy(p, rest_.data(), n);
    rest_.remove_prefix(n);
  }

  /// The next n bytes, borrowed from the input.
  std::string_view get_view(std::size_t n) {
    need(n);
    const std::string_view v = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return v;
  }

  /// The next value, by keel::Codec (a compile error if T has none); ProtocolError if it is malformed or truncated.
  template <class T>
  T get() {
    using U = std::remove_cvref_t<T>;
    static_assert(detail::has_codec<U> || detail::missing_codec_reported<U>(),
                  "keel: no keel::Codec for this type (see Encoder::put)");
    if constexpr (detail::has_codec<U>) {
      return Codec<U>::decode(*this);
    } else {
      std::abort();  // unreachable: the static_assert above has failed
    }
  }

  /// A u32 count of elements that each encode to at least min_element_bytes
  /// (taken as 1 when 0). ProtocolError unless the bytes left can hold them,
  /// so a caller may allocate `count` elements safely.
  std::size_t get_size(std::size_t min_element_bytes) {
    const std::uint32_t n = get_le<std::uint32_t>();
    const std::size_t per = min_element_bytes == 0 ? 1 : min_element_bytes;
    if (n > remaining() / per) {
      detail::codec_error("count " + std::to_string(n) + " of elements of at least " + std::to_string(per) +
                          " bytes, but only " + std::to_string(remaining()) + " bytes left");
    }
    return n;
  }

  /// The next fixed-width little-endian unsigned integer; ProtocolError if truncated.
  template <class U>
  U get_le() {
    static_assert(std::is_unsigned_v<U>);
    need(sizeof(U));
    U u;
    std::memcpy(&u, rest_.data(), sizeof u);
    u = detail::little_endian(u);
    rest_.remove_prefix(sizeof u);
    return u;
  }

  /// How many bytes are left to read.
  std::size_t remaining() const noexcept { return rest_.size(); }
  /// The bytes not read yet, borrowed from the input.
  std::string_view rest() const noexcept { return rest_; }

  /// ProtocolError unless every byte has been read (no trailing bytes).
  void expect_end() const {
    if (!rest_.empty()) detail::codec_error(std::to_string(rest_.size()) + " trailing bytes after the value");
  }

 private:
  void need(std::size_t n) const {
    if (n > rest_.size()) [[unlikely]] {
      detail::codec_error("truncated input: need " + std::to_string(n) + " bytes, " + std::to_string(rest_.size()) +
                          " left");
    }
  }

  std::string_view rest_;
};

// ---- the primary template: T's own members, or a plain aggregate's fields ----

namespace detail {

// A field whose decoded value did not survive being stored (a bit-field too
// narrow for it) would re-encode differently: only integers and enums can be
// bit-fields.
template <class F>
bool field_kept(const F& decoded, const F& stored) {
  if constexpr (std::is_integral_v<F> || std::is_enum_v<F>) {
    return decoded == stored;
  } else {
    (void)decoded;
    (void)stored;
    return true;
  }
}

template <class T>
constexpr std::size_t primary_min_size() {
  if constexpr (member_codec<T>) {
    return member_min_size<T>();
  } else if constexpr (aggregate_codec<T>) {
    return fields_min_size(field_types<T>{});
  } else {
    return 0;
  }
}

}  // namespace detail

/// An aggregate's fields travel in declaration order with nothing around them,
/// as a tuple of them would: a struct {int32 a; string b;} is the bytes of
/// encode(a, b). User codecs win: a specialization of Codec<T> is chosen over
/// this primary template, and member encode/decode over the fields.
template <class T, class Enable>
struct Codec {
  /// Fewest bytes a value takes: T's `codec_min_size` if declared, else its fields' sum; 0 when unknown.
  static constexpr std::size_t min_size = detail::primary_min_size<T>();
  /// Encodes by T's own `void encode(keel::Encoder&) const`.
  static void encode(Encoder& e, const T& v) requires detail::member_codec<T> { v.encode(e); }
  /// Decodes by T's own `static T decode(keel::Decoder&)`.
  static T decode(Decoder& d) requires detail::member_codec<T> { return T::decode(d); }

  /// Encodes a plain aggregate's fields in declaration order, nothing around them.
  static void encode(Encoder& e, const T& v) requires detail::aggregate_codec<T> {
    detail::for_each_field(v, [&e](auto, const auto&... f) { (e.put(f), ...); });
  }
  /// Decodes the fields in order and builds T of them; ProtocolError if a value does not fit its bit-field.
  static T decode(Decoder& d) requires detail::aggregate_codec<T> { return decode_fields(d, detail::field_types<T>{}); }

 private:
  template <class... F>
  static T decode_fields(Decoder& d, detail::type_list<F...>) {
    // A braced list evaluates its elements left to right.
    std::tuple<std::remove_cv_t<F>...> fields{d.get<std::remove_cv_t<F>>()...};
    T v = std::apply([](auto&... f) { return T{std::move(f)...}; }, fields);
    const bool kept = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return detail::for_each_field(v, [&](auto, const auto&... stored) {
        return (detail::field_kept<std::remove_cv_t<F>>(std::get<I>(fields), stored) && ...);
      });
    }
    (std::index_sequence_for<F...>{});
    if (!kept) detail::codec_error("a field's value does not fit its bit-field");
    return v;
  }
};

// ---- built-ins ---------------------------------------------------------------

/// bool: one byte, 0 or 1.
template <>
struct Codec<bool> {
  /// A bool always takes one byte.
  static constexpr std::size_t min_size = 1;
  /// Writes 1 for true, 0 for false.
  static void encode(Encoder& e, bool v) { e.put_le(static_cast<std::uint8_t>(v ? 1 : 0)); }
  /// true for 1, false for 0; ProtocolError for any other byte.
  static bool decode(Decoder& d) {
    const std::uint8_t b = d.get_le<std::uint8_t>();
    if (b > 1) detail::codec_error("bool byte " + std::to_string(b) + " is neither 0 nor 1");
    return b == 1;
  }
};

/// Integers and character types (bool aside): fixed width, little-endian, two's complement.
template <class T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  /// The unsigned type of T's width, whose bits travel.
  using U = std::make_unsigned_t<T>;
  /// Every value takes exactly sizeof(T) bytes.
  static constexpr std::size_t min_size = sizeof(T);
  /// Writes v's bits, little-endian.
  static void encode(Encoder& e, T v) { e.put_le(static_cast<U>(v)); }
  /// Every bit pattern is a value, so only truncation is refused.
  static T decode(Decoder& d) { return static_cast<T>(d.get_le<U>()); }
};

/// float and double (IEEE 754 required): their bits as a little-endian u32 or u64.
template <class T>
struct Codec<T, std::enable_if_t<std::is_same_v<T, float> || std::is_same_v<T, double>>> {
  static_assert(std::numeric_limits<T>::is_iec559, "keel codec: floats must be IEEE 754");
  /// The unsigned integer of T's width that carries its bits.
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(T) == sizeof(U));
  /// Every value takes exactly sizeof(T) bytes: 4 for float, 8 for double.
  static constexpr std::size_t min_size = sizeof(T);
  /// Bit-exact: NaN payloads and -0.0 survive.
  static void encode(Encoder& e, T v) { e.put_le(std::bit_cast<U>(v)); }
  /// The value of the bits read; any pattern is accepted, so only truncation is refused.
  static T decode(Decoder& d) { return std::bit_cast<T>(d.get_le<U>()); }
};

/// Enums with a fixed underlying type (`enum class E : int`): as that type.
template <class T>
struct Codec<T, std::enable_if_t<detail::fixed_enum<T>>> {
  /// The underlying type the value travels as.
  using U = std::underlying_type_t<T>;
  /// Every value takes the underlying type's size.
  static constexpr std::size_t min_size = sizeof(U);
  /// Writes the underlying value.
  static void encode(Encoder& e, T v) { e.put(static_cast<U>(v)); }
  /// Any underlying value, an enumerator's or not: a fixed enum holds them all.
  static T decode(Decoder& d) { return static_cast<T>(d.get<U>()); }
};

/// std::monostate: no bytes at all.
template <>
struct Codec<std::monostate> {
  /// Zero: it encodes to nothing.
  static constexpr std::size_t min_size = 0;
  /// Writes nothing.
  static void encode(Encoder&, std::monostate) {}
  /// Reads nothing; never fails.
  static std::monostate decode(Decoder&) { return {}; }
};

/// std::string (any traits and allocator): a u32 byte count, then the bytes.
template <class Traits, class A>
struct Codec<std::basic_string<char, Traits, A>> {
  /// Shorthand for the string type.
  using S = std::basic_string<char, Traits, A>;
  /// The count alone: 4 bytes (an empty string).
  static constexpr std::size_t min_size = 4;
  /// Writes the length, then the bytes; ProtocolError (nothing appended) if the length does not fit in 32 bits.
  static void encode(Encoder& e, const S& s) {
    e.put_size(s.size());
    e.put_raw(s.data(), s.size());
  }
  /// ProtocolError if the count claims more bytes than are left.
  static S decode(Decoder& d) {
    const std::size_t n = d.get_size(1);
    const std::string_view v = d.get_view(n);
    return S(v.data(), v.size());
  }
};

/// u32 count, then the elements. Where an element's encoding can be empty, each
/// is preceded by a 0 byte, so the count stays bounded by the input size.
template <class T, class A>
struct Codec<std::vector<T, A>, std::enable_if_t<detail::has_codec<T>>> {
  /// Shorthand for the vector type.
  using V = std::vector<T, A>;
  /// Fewest bytes one element takes (0: unknown, or its encoding can be empty).
  static constexpr std::size_t element_min = detail::codec_min_size<T>();
  /// Whether each element is preceded by a 0 marker byte (its encoding can be empty).
  static constexpr bool marked = element_min == 0;
  /// The count alone: 4 bytes (an empty vector).
  static constexpr std::size_t min_size = 4;

  /// Writes the count, then the elements (integers and floats as one block on a little-endian host).
  static void encode(Encoder& e, const V& v) {
    e.put_size(v.size());
    if constexpr (detail::block_copyable<T>) {
      e.put_raw(v.data(), v.size() * sizeof(T));
    } else {
      for (const auto& x : v) {
        if constexpr (marked) e.put_le(std::uint8_t{0});
        e.put(static_cast<const T&>(x));
      }
    }
  }

  /// ProtocolError for a count the bytes left cannot hold (checked before allocating) or a marker other than 0.
  static V decode(Decoder& d) {
    const std::size_t n = d.get_size(marked ? 1 : element_min);
    V v;
    if constexpr (detail::block_copyable<T>) {
      v.resize(n);
      d.get_raw(v.data(), n * sizeof(T));
    } else {
      v.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        if constexpr (marked) {
          const std::uint8_t m = d.get_le<std::uint8_t>();
          if (m != 0) detail::codec_error("bad element marker " + std::to_string(m));
        }
        v.push_back(d.get<T>());
      }
    }
    return v;
  }
};

/// std::array: the N elements in order, no count.
template <class T, std::size_t N>
struct Codec<std::array<T, N>, std::enable_if_t<detail::has_codec<T>>> {
  /// N times an element's minimum.
  static constexpr std::size_t min_size = N * detail::codec_min_size<T>();
  /// Writes the elements in index order.
  static void encode(Encoder& e, const std::array<T, N>& a) {
    for (const T& x : a) e.put(x);
  }
  /// Reads N elements in index order; ProtocolError if one is malformed or truncated.
  static std::array<T, N> decode(Decoder& d) {
    if constexpr (std::is_default_constructible_v<T>) {
      std::array<T, N> a{};
      for (T& x : a) x = d.get<T>();
      return a;
    } else {
      return decode_each(d, std::make_index_sequence<N>{});
    }
  }

 private:
  template <std::size_t... I>
  static std::array<T, N> decode_each(Decoder& d, std::index_sequence<I...>) {
    // A braced list evaluates its elements left to right.
    return std::array<T, N>{{((void)I, d.get<T>())...}};
  }
};

/// std::pair: first, then second, nothing around them.
template <class A, class B>
struct Codec<std::pair<A, B>, std::enable_if_t<detail::has_codec<A> && detail::has_codec<B>>> {
  /// The sum of both members' minimum sizes.
  static constexpr std::size_t min_size = detail::codec_min_size<A>() + detail::codec_min_size<B>();
  /// Writes first, then second.
  static void encode(Encoder& e, const std::pair<A, B>& p) {
    e.put(p.first);
    e.put(p.second);
  }
  /// Reads first, then second; ProtocolError if either is malformed or truncated.
  static std::pair<A, B> decode(Decoder& d) {
    A a = d.get<A>();
    B b = d.get<B>();
    return std::pair<A, B>(std::move(a), std::move(b));
  }
};

/// std::tuple: the elements in order, no count (what encode(a, b, ...) writes).
template <class... T>
struct Codec<std::tuple<T...>, std::enable_if_t<(detail::has_codec<T> && ...)>> {
  /// The sum of the elements' minimum sizes.
  static constexpr std::size_t min_size = (std::size_t{0} + ... + detail::codec_min_size<T>());
  /// Writes the elements in order.
  static void encode(Encoder& e, const std::tuple<T...>& t) { encode_each(e, t, std::index_sequence_for<T...>{}); }
  /// Reads the elements in order; ProtocolError if one is malformed or truncated.
  static std::tuple<T...> decode(Decoder& d) {
    (void)d;
    // A braced list evaluates its elements left to right.
    return std::tuple<T...>{d.get<T>()...};
  }

 private:
  template <std::size_t... I>
  static void encode_each(Encoder& e, const std::tuple<T...>& t, std::index_sequence<I...>) {
    (void)e;
    (void)t;
    (e.put(std::get<I>(t)), ...);
  }
};

/// u8 tag (0 = empty, 1 = a value follows).
template <class T>
struct Codec<std::optional<T>, std::enable_if_t<detail::has_codec<T>>> {
  /// The tag alone: 1 byte (an empty optional).
  static constexpr std::size_t min_size = 1;
  /// Writes tag 0 when empty, else tag 1 and the value.
  static void encode(Encoder& e, const std::optional<T>& o) {
    e.put_le(static_cast<std::uint8_t>(o.has_value() ? 1 : 0));
    if (o) e.put(*o);
  }
  /// ProtocolError for a tag other than 0 or 1.
  static std::optional<T> decode(Decoder& d) {
    const std::uint8_t tag = d.get_le<std::uint8_t>();
    if (tag == 0) return std::nullopt;
    if (tag != 1) detail::codec_error("optional tag " + std::to_string(tag) + " is neither 0 nor 1");
    return std::optional<T>(d.get<T>());
  }
};

/// u32 alternative index, then the value.
template <class... T>
struct Codec<std::variant<T...>, std::enable_if_t<(detail::has_codec<T> && ...)>> {
  /// Shorthand for the variant type.
  using V = std::variant<T...>;
  /// The index alone: 4 bytes.
  static constexpr std::size_t min_size = 4;
  /// Writes the index of the active alternative, then its value; ProtocolError for a valueless variant.
  static void encode(Encoder& e, const V& v) {
    if (v.valueless_by_exception()) detail::codec_error("cannot encode a valueless variant");
    e.put_le(static_cast<std::uint32_t>(v.index()));
    std::visit([&e](const auto& x) { e.put(x); }, v);
  }
  /// ProtocolError for an index not below the number of alternatives.
  static V decode(Decoder& d) {
    const std::uint32_t i = d.get_le<std::uint32_t>();
    if (i >= sizeof...(T)) {
      detail::codec_error("variant index " + std::to_string(i) + " out of " + std::to_string(sizeof...(T)));
    }
    return decode_at(d, i, std::index_sequence_for<T...>{});
  }

 private:
  template <std::size_t I>
  static V decode_one(Decoder& d) {
    return V(std::in_place_index<I>, d.get<std::variant_alternative_t<I, V>>());
  }
  template <std::size_t... I>
  static V decode_at(Decoder& d, std::uint32_t index, std::index_sequence<I...>) {
    using Fn = V (*)(Decoder&);
    static constexpr Fn table[] = {&decode_one<I>...};
    return table[index](d);
  }
};

// ---- associative containers ----------------------------------------------------
//
// All carry a u32 count, then the elements (a map's as key then value), each
// preceded by a 0 byte where an element's encoding can be empty, as in vectors.
// The count is checked against the bytes left before anything is allocated.

namespace detail {

// What a container's elements are, for encoding and decoding them.
template <class C>
struct assoc_traits;

template <class K, class V>
struct map_elements {
  static constexpr bool is_map = true;
  static constexpr std::size_t element_min = codec_min_size<K>() + codec_min_size<V>();
  static constexpr bool encodable = has_codec<K> && has_codec<V>;
  static void put(Encoder& e, const std::pair<const K, V>& kv) {
    e.put(kv.first);
    e.put(kv.second);
  }
};

template <class K>
struct set_elements {
  static constexpr bool is_map = false;
  static constexpr std::size_t element_min = codec_min_size<K>();
  static constexpr bool encodable = has_codec<K>;
  static void put(Encoder& e, const K& k) { e.put(k); }
};

template <class K, class V, class C, class A>
struct assoc_traits<std::map<K, V, C, A>> : map_elements<K, V> {
  static constexpr bool multi = false;
};
template <class K, class V, class C, class A>
struct assoc_traits<std::multimap<K, V, C, A>> : map_elements<K, V> {
  static constexpr bool multi = true;
};
template <class K, class C, class A>
struct assoc_traits<std::set<K, C, A>> : set_elements<K> {
  static constexpr bool multi = false;
};
template <class K, class C, class A>
struct assoc_traits<std::multiset<K, C, A>> : set_elements<K> {
  static constexpr bool multi = true;
};
template <class K, class V, class H, class E, class A>
struct assoc_traits<std::unordered_map<K, V, H, E, A>> : map_elements<K, V> {
  static constexpr bool multi = false;
};
template <class K, class V, class H, class E, class A>
struct assoc_traits<std::unordered_multimap<K, V, H, E, A>> : map_elements<K, V> {
  static constexpr bool multi = true;
};
template <class K, class H, class E, class A>
struct assoc_traits<std::unordered_set<K, H, E, A>> : set_elements<K> {
  static constexpr bool multi = false;
};
template <class K, class H, class E, class A>
struct assoc_traits<std::unordered_multiset<K, H, E, A>> : set_elements<K> {
  static constexpr bool multi = true;
};

// The decoder builds the container with default-constructed comparator, hash
// and equality: a function pointer there would be null, so such containers
// have no codec.
template <class C>
concept encodable_assoc = assoc_traits<C>::encodable;

template <class C>
concept ordered_assoc = encodable_assoc<C> && requires {
  typename C::key_compare;
} && !std::is_pointer_v<typename C::key_compare>;

template <class C>
concept unordered_assoc = encodable_assoc<C> && requires {
  typename C::hasher;
  typename C::key_equal;
} && !std::is_pointer_v<typename C::hasher> && !std::is_pointer_v<typename C::key_equal>;

// An element's key (a set's element is its own key, whatever its type).
template <bool IsMap, class X>
const auto& key_of(const X& x) noexcept {
  if constexpr (IsMap) {
    return x.first;
  } else {
    return x;
  }
}

// The 0 byte before an element whose encoding can be empty.
template <class C>
void get_marker(Decoder& d) {
  if constexpr (assoc_traits<C>::element_min == 0) {
    const std::uint8_t m = d.get_le<std::uint8_t>();
    if (m != 0) codec_error("bad element marker " + std::to_string(m));
  }
}

// One element of C: a map's as a pair of key and value.
template <class C>
auto get_element(Decoder& d) {
  if constexpr (assoc_traits<C>::is_map) {
    auto k = d.get<typename C::key_type>();
    auto v = d.get<typename C::mapped_type>();
    return std::pair<typename C::key_type, typename C::mapped_type>(std::move(k), std::move(v));
  } else {
    return d.get<typename C::key_type>();
  }
}

}  // namespace detail

/// std::map, std::set, std::multimap, std::multiset: the elements in the
/// container's own order. Decoding requires each key to come strictly after the
/// one before by the container's comparator (multi: not before it), so an
/// out-of-order key or a duplicate is a ProtocolError, and each element is
/// appended at the end in constant time.
template <class C>
requires detail::ordered_assoc<C>
struct Codec<C> {
  /// What the elements are: a map's or a set's, multi or not.
  using T = detail::assoc_traits<C>;
  /// Whether each element is preceded by a 0 marker byte (its encoding can be empty).
  static constexpr bool marked = T::element_min == 0;
  /// The count alone: 4 bytes (an empty container).
  static constexpr std::size_t min_size = 4;

  /// Writes the count, then the elements in the container's key order.
  static void encode(Encoder& e, const C& c) {
    e.put_size(c.size());
    for (const auto& x : c) {
      if constexpr (marked) e.put_le(std::uint8_t{0});
      T::put(e, x);
    }
  }

  /// ProtocolError for a key out of order or repeated (multi: out of order), a bad marker or too large a count.
  static C decode(Decoder& d) {
    const std::size_t n = d.get_size(marked ? 1 : T::element_min);
    C c;
    const auto comp = c.key_comp();
    for (std::size_t i = 0; i < n; ++i) {
      detail::get_marker<C>(d);
      auto x = detail::get_element<C>(d);
      if (i != 0) {
        const auto& key = detail::key_of<T::is_map>(x);
        const auto& last = detail::key_of<T::is_map>(*std::prev(c.end()));
        const bool in_order = T::multi ? !comp(key, last) : comp(last, key);
        if (!in_order) {
          detail::codec_error(T::multi ? "a key is out of order" : "a key is out of order or repeated");
        }
      }
      c.emplace_hint(c.end(), std::move(x));
    }
    return c;
  }
};

/// std::unordered_map, std::unordered_set and their multi forms. Their
/// iteration order depends on the hash, the bucket count and the history of
/// inserts, so two equal containers could iterate (and would encode)
/// differently, and the decoder could not tell a repeated element from a new
/// one without the container. The canonical order is therefore that of the
/// elements' encodings, compared as bytes: it needs nothing of the key type
/// beyond its codec, the same value always gives the same bytes, and the
/// decoder checks it by comparing each element's bytes with the previous
/// one's: strictly greater (multi: not smaller). Keys that are equal by the
/// container yet encode differently (0.0 and -0.0 as doubles) pass that check,
/// so the decoder also refuses any element the container does not take
/// (multi containers take all). Decoding costs what inserting does: with
/// adversarial keys and a weak hash (std::hash of an integer is the integer),
/// quadratic in the count.
template <class C>
requires detail::unordered_assoc<C>
struct Codec<C> {
  /// What the elements are: a map's or a set's, multi or not.
  using T = detail::assoc_traits<C>;
  /// Whether each element is preceded by a 0 marker byte (its encoding can be empty).
  static constexpr bool marked = T::element_min == 0;
  /// The count alone: 4 bytes (an empty container).
  static constexpr std::size_t min_size = 4;

  /// Writes the count, then the elements sorted by their bytes; ProtocolError if two encode alike (a NaN key).
  static void encode(Encoder& e, const C& c) {
    std::vector<std::string> elements;
    elements.reserve(c.size());
    for (const auto& x : c) {
      Encoder one;
      T::put(one, x);
      elements.push_back(one.take());
    }
    std::sort(elements.begin(), elements.end());
    if constexpr (!T::multi) {
      // Only elements unequal to themselves (a NaN) can get here twice.
      if (std::adjacent_find(elements.begin(), elements.end()) != elements.end()) {
        detail::codec_error("two elements of an unordered container encode alike (a NaN key?)");
      }
    }
    e.put_size(elements.size());
    for (const std::string& x : elements) {
      if constexpr (marked) e.put_le(std::uint8_t{0});
      e.put_raw(x.data(), x.size());
    }
  }

  /// ProtocolError for an element out of byte order or repeated, one the container refuses, or a bad count or marker.
  static C decode(Decoder& d) {
    const std::size_t n = d.get_size(marked ? 1 : T::element_min);
    C c;
    c.reserve(n);
    std::string_view last;
    for (std::size_t i = 0; i < n; ++i) {
      detail::get_marker<C>(d);
      const std::string_view before = d.rest();
      auto x = detail::get_element<C>(d);
      const std::string_view bytes = before.substr(0, before.size() - d.remaining());
      if (i != 0 && (T::multi ? bytes < last : bytes <= last)) {
        detail::codec_error(T::multi ? "an element is out of order" : "an element is out of order or repeated");
      }
      last = bytes;
      if constexpr (T::multi) {
        c.emplace(std::move(x));
      } else if (!c.emplace(std::move(x)).second) {
        detail::codec_error("an element equals one before it");
      }
    }
    return c;
  }
};

/// std::chrono::duration<Rep, Period>: the count, as Rep. The period is part of
/// the type, which both sides compile, so it does not travel.
template <class Rep, class Period>
struct Codec<std::chrono::duration<Rep, Period>, std::enable_if_t<detail::has_codec<Rep>>> {
  /// Shorthand for the duration type.
  using D = std::chrono::duration<Rep, Period>;
  /// That of Rep: only the count travels.
  static constexpr std::size_t min_size = detail::codec_min_size<Rep>();
  /// Writes v.count() as Rep.
  static void encode(Encoder& e, const D& v) { e.put(v.count()); }
  /// The duration of the count read, in this type's period.
  static D decode(Decoder& d) { return D(d.get<Rep>()); }
};

/// std::chrono::time_point<Clock, Duration>: the duration since the clock's
/// epoch. Meaningful in another process only where both share the epoch:
/// system_clock everywhere (the Unix epoch); steady_clock between processes on
/// one Linux host, where it is CLOCK_MONOTONIC (time since boot), but not
/// across hosts or reboots.
template <class Clock, class Dur>
struct Codec<std::chrono::time_point<Clock, Dur>, std::enable_if_t<detail::has_codec<Dur>>> {
  /// Shorthand for the time point type.
  using P = std::chrono::time_point<Clock, Dur>;
  /// That of the duration: only the time since the epoch travels.
  static constexpr std::size_t min_size = detail::codec_min_size<Dur>();
  /// Writes the time since the clock's epoch, as Dur.
  static void encode(Encoder& e, const P& v) { e.put(v.time_since_epoch()); }
  /// The time point that long after the clock's epoch.
  static P decode(Decoder& d) { return P(d.get<Dur>()); }
};

// ---- whole buffers -----------------------------------------------------------

/// All values, in order, in one buffer.
template <class... T>
std::string encode(const T&... v) {
  Encoder e;
  (e.put(v), ...);
  return e.take();
}

/// Exactly one value: ProtocolError if the bytes do not hold exactly one.
template <class T>
T decode(std::string_view bytes) {
  Decoder d(bytes);
  T v = d.get<T>();
  d.expect_end();
  return v;
}

/// The values encode(a, b, ...) wrote, as a std::tuple<A, B, ...>.
template <class Tuple>
Tuple decode_tuple(std::string_view bytes) {
  Decoder d(bytes);
  Tuple t = Codec<Tuple>::decode(d);
  d.expect_end();
  return t;
}

}  // namespace keel
