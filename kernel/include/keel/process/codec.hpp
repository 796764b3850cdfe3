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
// themselves. A type becomes encodable by specializing keel::Codec<T> (static
// encode/decode, optionally `static constexpr std::size_t min_size`), or by
// giving T `void encode(keel::Encoder&) const` and `static T decode(keel::Decoder&)`.
//
// Invariants: IPC-1 (a malformed encoding is a ProtocolError: no crash, hang
// or unbounded allocation).
#pragma once

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "keel/error.hpp"

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

// Appends encodings to a std::string. If an encoding throws part way, put()
// removes what it had appended, so the bytes hold only whole values.
class Encoder {
 public:
  Encoder() = default;
  // Appends after `initial` (e.g. a reserved header).
  explicit Encoder(std::string initial) noexcept : bytes_(std::move(initial)) {}

  void put_raw(const void* p, std::size_t n) {
    if (n != 0) bytes_.append(static_cast<const char*>(p), n);
  }

  template <class T>
  void put(const T& v) {
    using U = std::remove_cvref_t<T>;
    static_assert(detail::has_codec<U>,
                  "keel: no keel::Codec for this type: specialize keel::Codec<T>, or give T "
                  "`void encode(keel::Encoder&) const` and `static T decode(keel::Decoder&)` "
                  "(enums need a fixed underlying type, e.g. `enum E : int`)");
    const std::size_t mark = bytes_.size();
    try {
      Codec<U>::encode(*this, v);
    } catch (...) {
      bytes_.resize(mark);
      throw;
    }
  }

  // A u32 count. ProtocolError (nothing appended) if n does not fit.
  void put_size(std::size_t n) {
    if (n > std::numeric_limits<std::uint32_t>::max()) {
      detail::codec_error("count " + std::to_string(n) + " does not fit in 32 bits");
    }
    put_le(static_cast<std::uint32_t>(n));
  }

  // Fixed-width little-endian unsigned integer.
  template <class U>
  void put_le(U u) {
    static_assert(std::is_unsigned_v<U>);
    u = detail::little_endian(u);
    put_raw(&u, sizeof u);
  }

  std::string& bytes() noexcept { return bytes_; }
  const std::string& bytes() const noexcept { return bytes_; }
  std::size_t size() const noexcept { return bytes_.size(); }
  // The bytes; the encoder is left empty.
  std::string take() noexcept {
    std::string out = std::move(bytes_);
    bytes_.clear();
    return out;
  }

 private:
  std::string bytes_;
};

// Reads what Encoder wrote from a borrowed buffer. Every failure is a
// ProtocolError; after one, the decoder's position is unspecified.
class Decoder {
 public:
  explicit Decoder(std::string_view bytes) noexcept : rest_(bytes) {}

  void get_raw(void* p, std::size_t n) {
    need(n);
    if (n != 0) std::memcpy(p, rest_.data(), n);
    rest_.remove_prefix(n);
  }

  // The next n bytes, borrowed from the input.
  std::string_view get_view(std::size_t n) {
    need(n);
    const std::string_view v = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return v;
  }

  template <class T>
  T get() {
    using U = std::remove_cvref_t<T>;
    static_assert(detail::has_codec<U>, "keel: no keel::Codec for this type (see Encoder::put)");
    return Codec<U>::decode(*this);
  }

  // A u32 count of elements that each encode to at least min_element_bytes
  // (taken as 1 when 0). ProtocolError unless the bytes left can hold them,
  // so a caller may allocate `count` elements safely.
  std::size_t get_size(std::size_t min_element_bytes) {
    const std::uint32_t n = get_le<std::uint32_t>();
    const std::size_t per = min_element_bytes == 0 ? 1 : min_element_bytes;
    if (n > remaining() / per) {
      detail::codec_error("count " + std::to_string(n) + " of elements of at least " + std::to_string(per) +
                          " bytes, but only " + std::to_string(remaining()) + " bytes left");
    }
    return n;
  }

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

  std::size_t remaining() const noexcept { return rest_.size(); }

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

// ---- the primary template: T's own members ---------------------------------

template <class T, class Enable>
struct Codec {
  static constexpr std::size_t min_size = detail::member_min_size<T>();
  static void encode(Encoder& e, const T& v) requires detail::member_codec<T> { v.encode(e); }
  static T decode(Decoder& d) requires detail::member_codec<T> { return T::decode(d); }
};

// ---- built-ins ---------------------------------------------------------------

template <>
struct Codec<bool> {
  static constexpr std::size_t min_size = 1;
  static void encode(Encoder& e, bool v) { e.put_le(static_cast<std::uint8_t>(v ? 1 : 0)); }
  static bool decode(Decoder& d) {
    const std::uint8_t b = d.get_le<std::uint8_t>();
    if (b > 1) detail::codec_error("bool byte " + std::to_string(b) + " is neither 0 nor 1");
    return b == 1;
  }
};

template <class T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  using U = std::make_unsigned_t<T>;
  static constexpr std::size_t min_size = sizeof(T);
  static void encode(Encoder& e, T v) { e.put_le(static_cast<U>(v)); }
  static T decode(Decoder& d) { return static_cast<T>(d.get_le<U>()); }
};

template <class T>
struct Codec<T, std::enable_if_t<std::is_same_v<T, float> || std::is_same_v<T, double>>> {
  static_assert(std::numeric_limits<T>::is_iec559, "keel codec: floats must be IEEE 754");
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(T) == sizeof(U));
  static constexpr std::size_t min_size = sizeof(T);
  // Bit-exact: NaN payloads and -0.0 survive.
  static void encode(Encoder& e, T v) { e.put_le(std::bit_cast<U>(v)); }
  static T decode(Decoder& d) { return std::bit_cast<T>(d.get_le<U>()); }
};

template <class T>
struct Codec<T, std::enable_if_t<detail::fixed_enum<T>>> {
  using U = std::underlying_type_t<T>;
  static constexpr std::size_t min_size = sizeof(U);
  static void encode(Encoder& e, T v) { e.put(static_cast<U>(v)); }
  static T decode(Decoder& d) { return static_cast<T>(d.get<U>()); }
};

template <>
struct Codec<std::monostate> {
  static constexpr std::size_t min_size = 0;
  static void encode(Encoder&, std::monostate) {}
  static std::monostate decode(Decoder&) { return {}; }
};

template <class Traits, class A>
struct Codec<std::basic_string<char, Traits, A>> {
  using S = std::basic_string<char, Traits, A>;
  static constexpr std::size_t min_size = 4;
  static void encode(Encoder& e, const S& s) {
    e.put_size(s.size());
    e.put_raw(s.data(), s.size());
  }
  static S decode(Decoder& d) {
    const std::size_t n = d.get_size(1);
    const std::string_view v = d.get_view(n);
    return S(v.data(), v.size());
  }
};

// u32 count, then the elements. Where an element's encoding can be empty, each
// is preceded by a 0 byte, so the count stays bounded by the input size.
template <class T, class A>
struct Codec<std::vector<T, A>, std::enable_if_t<detail::has_codec<T>>> {
  using V = std::vector<T, A>;
  static constexpr std::size_t element_min = detail::codec_min_size<T>();
  static constexpr bool marked = element_min == 0;
  static constexpr std::size_t min_size = 4;

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

template <class T, std::size_t N>
struct Codec<std::array<T, N>, std::enable_if_t<detail::has_codec<T>>> {
  static constexpr std::size_t min_size = N * detail::codec_min_size<T>();
  static void encode(Encoder& e, const std::array<T, N>& a) {
    for (const T& x : a) e.put(x);
  }
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

template <class A, class B>
struct Codec<std::pair<A, B>, std::enable_if_t<detail::has_codec<A> && detail::has_codec<B>>> {
  static constexpr std::size_t min_size = detail::codec_min_size<A>() + detail::codec_min_size<B>();
  static void encode(Encoder& e, const std::pair<A, B>& p) {
    e.put(p.first);
    e.put(p.second);
  }
  static std::pair<A, B> decode(Decoder& d) {
    A a = d.get<A>();
    B b = d.get<B>();
    return std::pair<A, B>(std::move(a), std::move(b));
  }
};

template <class... T>
struct Codec<std::tuple<T...>, std::enable_if_t<(detail::has_codec<T> && ...)>> {
  static constexpr std::size_t min_size = (std::size_t{0} + ... + detail::codec_min_size<T>());
  static void encode(Encoder& e, const std::tuple<T...>& t) { encode_each(e, t, std::index_sequence_for<T...>{}); }
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

// u8 tag (0 = empty, 1 = a value follows).
template <class T>
struct Codec<std::optional<T>, std::enable_if_t<detail::has_codec<T>>> {
  static constexpr std::size_t min_size = 1;
  static void encode(Encoder& e, const std::optional<T>& o) {
    e.put_le(static_cast<std::uint8_t>(o.has_value() ? 1 : 0));
    if (o) e.put(*o);
  }
  static std::optional<T> decode(Decoder& d) {
    const std::uint8_t tag = d.get_le<std::uint8_t>();
    if (tag == 0) return std::nullopt;
    if (tag != 1) detail::codec_error("optional tag " + std::to_string(tag) + " is neither 0 nor 1");
    return std::optional<T>(d.get<T>());
  }
};

// u32 alternative index, then the value.
template <class... T>
struct Codec<std::variant<T...>, std::enable_if_t<(detail::has_codec<T> && ...)>> {
  using V = std::variant<T...>;
  static constexpr std::size_t min_size = 4;
  static void encode(Encoder& e, const V& v) {
    if (v.valueless_by_exception()) detail::codec_error("cannot encode a valueless variant");
    e.put_le(static_cast<std::uint32_t>(v.index()));
    std::visit([&e](const auto& x) { e.put(x); }, v);
  }
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

// ---- whole buffers -----------------------------------------------------------

// All values, in order, in one buffer.
template <class... T>
std::string encode(const T&... v) {
  Encoder e;
  (e.put(v), ...);
  return e.take();
}

// Exactly one value: ProtocolError if the bytes do not hold exactly one.
template <class T>
T decode(std::string_view bytes) {
  Decoder d(bytes);
  T v = d.get<T>();
  d.expect_end();
  return v;
}

// The values encode(a, b, ...) wrote, as a std::tuple<A, B, ...>.
template <class Tuple>
Tuple decode_tuple(std::string_view bytes) {
  Decoder d(bytes);
  Tuple t = Codec<Tuple>::decode(d);
  d.expect_end();
  return t;
}

}  // namespace keel
