// keel::Encoder / Decoder / Codec: round trips of every built-in (fixed cases
// and RapidCheck properties), the exact wire format, user-type customization,
// and hostile input (IPC-1): truncation at every prefix length, trailing
// bytes, counts the input cannot hold (refused before any allocation), bad
// bool/optional/variant/marker bytes, and random garbage, which either decodes
// canonically or is a ProtocolError.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/process/codec.hpp"

using namespace std::string_literals;

// ---- user types ----------------------------------------------------------------

namespace codec_test {

// Customized by specializing keel::Codec.
struct Point {
  std::int32_t x = 0;
  std::int32_t y = 0;
  bool operator==(const Point&) const = default;
};

// Customized with members; declares no minimum size.
struct Tagged {
  std::string tag;
  std::vector<std::int16_t> values;
  bool operator==(const Tagged&) const = default;
  void encode(keel::Encoder& e) const {
    e.put(tag);
    e.put(values);
  }
  static Tagged decode(keel::Decoder& d) {
    Tagged t;
    t.tag = d.get<std::string>();
    t.values = d.get<std::vector<std::int16_t>>();
    return t;
  }
};

// Members plus a declared minimum size: vectors of it need no marker bytes.
struct Sized {
  std::uint16_t v = 0;
  static constexpr std::size_t codec_min_size = 2;
  bool operator==(const Sized&) const = default;
  void encode(keel::Encoder& e) const { e.put(v); }
  static Sized decode(keel::Decoder& d) { return Sized{d.get<std::uint16_t>()}; }
};

// No default constructor: arrays and tuples of it must still decode.
struct NoDefault {
  explicit NoDefault(std::int8_t v) : v(v) {}
  std::int8_t v;
  bool operator==(const NoDefault&) const = default;
  void encode(keel::Encoder& e) const { e.put(v); }
  static NoDefault decode(keel::Decoder& d) { return NoDefault(d.get<std::int8_t>()); }
};

// An encoding that fails after writing part of itself.
struct Explodes {
  bool explode = false;
  void encode(keel::Encoder& e) const {
    e.put(std::uint32_t{0xDEADBEEF});
    if (explode) throw std::runtime_error("boom");
  }
  static Explodes decode(keel::Decoder& d) {
    (void)d.get<std::uint32_t>();
    return Explodes{};
  }
};

enum class Color : std::uint8_t { red = 1, green = 2 };
enum Plain : std::int16_t { plain_a = -3, plain_b = 7 };
enum Unfixed { unfixed_a, unfixed_b };  // no fixed underlying type: not encodable
struct NoCodec {};

// Counts what decoding allocates.
struct AllocStats {
  std::size_t calls = 0;
  std::size_t largest = 0;
};
inline AllocStats alloc_stats;

template <class T>
struct CountingAlloc {
  using value_type = T;
  CountingAlloc() = default;
  template <class U>
  CountingAlloc(const CountingAlloc<U>&) noexcept {}
  T* allocate(std::size_t n) {
    ++alloc_stats.calls;
    alloc_stats.largest = std::max(alloc_stats.largest, n * sizeof(T));
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }
  template <class U>
  bool operator==(const CountingAlloc<U>&) const noexcept {
    return true;
  }
};

}  // namespace codec_test

// RapidCheck has no generator for std::optional.
template <class T>
struct rc::Arbitrary<std::optional<T>> {
  static rc::Gen<std::optional<T>> arbitrary() {
    return rc::gen::oneOf(rc::gen::just(std::optional<T>{}),
                          rc::gen::map(rc::gen::arbitrary<T>(), [](T v) { return std::optional<T>(std::move(v)); }));
  }
};

template <>
struct keel::Codec<codec_test::Point> {
  static constexpr std::size_t min_size = 8;
  static void encode(keel::Encoder& e, const codec_test::Point& p) {
    e.put(p.x);
    e.put(p.y);
  }
  static codec_test::Point decode(keel::Decoder& d) {
    codec_test::Point p;
    p.x = d.get<std::int32_t>();
    p.y = d.get<std::int32_t>();
    return p;
  }
};

namespace {

using namespace codec_test;

static_assert(keel::detail::has_codec<Point>);
static_assert(keel::detail::has_codec<Tagged>);
static_assert(keel::detail::has_codec<Color>);
static_assert(keel::detail::has_codec<std::byte>);
static_assert(!keel::detail::has_codec<Unfixed>, "an enum without a fixed type could decode to UB");
static_assert(!keel::detail::has_codec<NoCodec>);
static_assert(!keel::detail::has_codec<int*>);
static_assert(!keel::detail::has_codec<std::vector<NoCodec>>);
static_assert(keel::detail::codec_min_size<std::tuple<std::int32_t, std::string, bool>>() == 9);
static_assert(keel::detail::codec_min_size<std::array<std::uint16_t, 3>>() == 6);

template <class T>
T round_trip(const T& v) {
  return keel::decode<T>(keel::encode(v));
}

// Every strict prefix of `bytes` is a ProtocolError when decoded as T, and so
// is `bytes` with one more byte.
template <class T>
void expect_prefixes_and_trailing_rejected(const std::string& bytes) {
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW((void)keel::decode<T>(std::string_view(bytes).substr(0, n)), keel::ProtocolError)
        << "prefix of " << n << " of " << bytes.size() << " bytes";
  }
  EXPECT_THROW((void)keel::decode<T>(bytes + "\x00"s), keel::ProtocolError);
  EXPECT_NO_THROW((void)keel::decode<T>(bytes));
}

// ---- fixed round trips and wire format -------------------------------------------

TEST(Codec, IntegersRoundTripAtTheirLimits) {
  auto check = [](auto v) {
    using T = decltype(v);
    EXPECT_EQ(round_trip(std::numeric_limits<T>::min()), std::numeric_limits<T>::min());
    EXPECT_EQ(round_trip(std::numeric_limits<T>::max()), std::numeric_limits<T>::max());
    EXPECT_EQ(round_trip(T{0}), T{0});
    EXPECT_EQ(round_trip(v), v);
    EXPECT_EQ(keel::encode(v).size(), sizeof(T));
  };
  check(std::int8_t{-5});
  check(std::uint8_t{200});
  check(std::int16_t{-12345});
  check(std::uint16_t{54321});
  check(std::int32_t{-123456789});
  check(std::uint32_t{4000000000u});
  check(std::int64_t{-1234567890123456789});
  check(std::uint64_t{18000000000000000000ull});
  check('x');
  check(static_cast<signed char>(-7));
  check(static_cast<unsigned char>(250));
  check(u'\u263A');
  check(U'\U0001F600');
  check(L'w');
  check(1234L);
  check(5678ULL);
}

TEST(Codec, IntegersAreLittleEndianFixedWidth) {
  EXPECT_EQ(keel::encode(std::uint32_t{0x01020304}), "\x04\x03\x02\x01"s);
  EXPECT_EQ(keel::encode(std::int16_t{-2}), "\xfe\xff"s);
  EXPECT_EQ(keel::encode(std::uint64_t{1}), "\x01\x00\x00\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(keel::encode(std::int8_t{-1}), "\xff"s);
  EXPECT_EQ(keel::decode<std::int32_t>("\xff\xff\xff\x7f"s), std::numeric_limits<std::int32_t>::max());
}

TEST(Codec, BoolIsOneByteAndOnlyZeroOrOneDecode) {
  EXPECT_EQ(keel::encode(true), "\x01"s);
  EXPECT_EQ(keel::encode(false), "\x00"s);
  EXPECT_TRUE(round_trip(true));
  EXPECT_FALSE(round_trip(false));
  for (int b = 2; b < 256; ++b) {
    EXPECT_THROW((void)keel::decode<bool>(std::string(1, static_cast<char>(b))), keel::ProtocolError) << b;
  }
  EXPECT_THROW((void)keel::decode<std::vector<bool>>("\x02\x00\x00\x00\x01\x07"s), keel::ProtocolError);
}

TEST(Codec, FloatsRoundTripBitExactly) {
  for (double v : {0.0, -0.0, 1.5, -3.25e300, std::numeric_limits<double>::denorm_min(),
                   std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    EXPECT_EQ(std::bit_cast<std::uint64_t>(round_trip(v)), std::bit_cast<std::uint64_t>(v)) << v;
  }
  const double nan = std::bit_cast<double>(std::uint64_t{0x7ff8000000000abcull});
  EXPECT_EQ(std::bit_cast<std::uint64_t>(round_trip(nan)), 0x7ff8000000000abcull);
  // Signalling NaNs too (nothing quiets them on the way), alone and in a container.
  const double snan = std::bit_cast<double>(std::uint64_t{0x7ff0000000000001ull});
  EXPECT_EQ(std::bit_cast<std::uint64_t>(round_trip(snan)), 0x7ff0000000000001ull);
  const auto in_vector = round_trip(std::vector<double>{snan, nan});
  ASSERT_EQ(in_vector.size(), 2u);
  EXPECT_EQ(std::bit_cast<std::uint64_t>(in_vector[0]), 0x7ff0000000000001ull);
  EXPECT_EQ(std::bit_cast<std::uint64_t>(in_vector[1]), 0x7ff8000000000abcull);
  EXPECT_EQ(std::bit_cast<std::uint32_t>(round_trip(std::bit_cast<float>(std::uint32_t{0x7f800001u}))), 0x7f800001u);
  EXPECT_TRUE(std::signbit(round_trip(-0.0f)));
  EXPECT_EQ(round_trip(3.5f), 3.5f);
  EXPECT_EQ(keel::encode(1.0), "\x00\x00\x00\x00\x00\x00\xf0\x3f"s);
  EXPECT_EQ(keel::encode(1.0f), "\x00\x00\x80\x3f"s);
}

TEST(Codec, EnumsTravelAsTheirUnderlyingType) {
  EXPECT_EQ(keel::encode(Color::green), "\x02"s);
  EXPECT_EQ(round_trip(Color::red), Color::red);
  EXPECT_EQ(keel::encode(plain_a), "\xfd\xff"s);
  EXPECT_EQ(round_trip(plain_b), plain_b);
  EXPECT_EQ(round_trip(std::byte{0xAB}), std::byte{0xAB});
  // Any value of the fixed underlying type is a valid enum value.
  EXPECT_EQ(static_cast<int>(keel::decode<Color>("\x63"s)), 0x63);
}

TEST(Codec, StringsKeepEveryByte) {
  EXPECT_EQ(keel::encode(""s), "\x00\x00\x00\x00"s);
  EXPECT_EQ(keel::encode("ab"s),
            "\x02\x00\x00\x00"
            "ab"s);
  const std::string binary("a\0b\xff\x80\n"s);
  EXPECT_EQ(round_trip(binary), binary);
  const std::string big(100000, 'z');
  EXPECT_EQ(round_trip(big), big);
}

TEST(Codec, ContainersRoundTrip) {
  const std::vector<std::int32_t> ints{1, -2, 3, std::numeric_limits<std::int32_t>::min()};
  EXPECT_EQ(round_trip(ints), ints);
  EXPECT_EQ(keel::encode(std::vector<std::uint16_t>{1, 2}), "\x02\x00\x00\x00\x01\x00\x02\x00"s);
  const std::vector<std::string> strings{"", "one", std::string(3, '\0')};
  EXPECT_EQ(round_trip(strings), strings);
  const std::vector<bool> bools{true, false, true, true};
  EXPECT_EQ(round_trip(bools), bools);
  const std::vector<std::vector<double>> nested{{}, {1.0}, {2.0, -3.0}};
  EXPECT_EQ(round_trip(nested), nested);
  EXPECT_EQ(round_trip(std::vector<std::string>{}), std::vector<std::string>{});
  const std::array<std::int64_t, 3> arr{-1, 0, 1};
  EXPECT_EQ(round_trip(arr), arr);
  EXPECT_EQ(keel::encode(arr).size(), 24u) << "arrays carry no count";
  const std::array<std::string, 2> sarr{"x", "yz"};
  EXPECT_EQ(round_trip(sarr), sarr);
  EXPECT_EQ(round_trip(std::array<int, 0>{}), (std::array<int, 0>{}));
  const std::array<NoDefault, 2> nd{NoDefault(1), NoDefault(-2)};
  EXPECT_EQ(round_trip(nd), nd);
}

TEST(Codec, PairsTuplesOptionalsAndVariantsRoundTrip) {
  const std::pair<std::string, std::int8_t> p{"k", -1};
  EXPECT_EQ(round_trip(p), p);
  const std::tuple<std::int8_t, std::int32_t, std::string, bool> t{1, -70000, "three", true};
  EXPECT_EQ(round_trip(t), t);
  EXPECT_EQ(keel::encode(t), keel::encode(std::int8_t{1}, std::int32_t{-70000}, "three"s, true))
      << "a tuple is its elements in order";
  EXPECT_EQ(round_trip(std::tuple<>{}), std::tuple<>{});
  EXPECT_EQ(keel::encode(std::tuple<>{}), "");
  EXPECT_EQ(round_trip(std::tuple<NoDefault, NoDefault>{NoDefault(3), NoDefault(4)}),
            (std::tuple<NoDefault, NoDefault>{NoDefault(3), NoDefault(4)}));
  EXPECT_EQ(keel::encode(std::optional<std::int16_t>{}), "\x00"s);
  EXPECT_EQ(keel::encode(std::optional<std::int16_t>{5}), "\x01\x05\x00"s);
  EXPECT_EQ(round_trip(std::optional<std::string>{}), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<std::string>{"v"}), std::optional<std::string>{"v"});
  EXPECT_EQ(round_trip(std::optional<std::optional<bool>>{std::optional<bool>{}}),
            std::optional<std::optional<bool>>{std::optional<bool>{}});
  EXPECT_EQ(keel::encode(std::monostate{}), "");
  EXPECT_EQ(round_trip(std::monostate{}), std::monostate{});
  using V = std::variant<std::monostate, std::int32_t, std::string>;
  EXPECT_EQ(round_trip(V{}), V{});
  EXPECT_EQ(round_trip(V{7}), V{7});
  EXPECT_EQ(round_trip(V{"s"s}), V{"s"s});
  EXPECT_EQ(keel::encode(V{"s"s}), "\x02\x00\x00\x00\x01\x00\x00\x00s"s);
}

TEST(Codec, ElementsThatCanEncodeEmptyGetAMarkerByte) {
  const std::vector<std::monostate> ms(5);
  EXPECT_EQ(keel::encode(ms), "\x05\x00\x00\x00\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(round_trip(ms), ms);
  const std::vector<std::tuple<>> empties(3);
  EXPECT_EQ(round_trip(empties), empties);
  EXPECT_THROW((void)keel::decode<std::vector<std::monostate>>("\x01\x00\x00\x00\x01"s), keel::ProtocolError);
}

// ---- user types --------------------------------------------------------------------

TEST(Codec, SpecializedUserTypeRoundTrips) {
  const Point p{-3, 9};
  EXPECT_EQ(round_trip(p), p);
  EXPECT_EQ(keel::encode(p), keel::encode(std::int32_t{-3}, std::int32_t{9}));
  const std::vector<Point> ps{{1, 2}, {3, 4}};
  EXPECT_EQ(round_trip(ps), ps);
  EXPECT_EQ(keel::encode(ps).size(), 4u + 16u) << "a declared min_size needs no marker";
  // The declared minimum bounds the count: 2 points cannot fit in 12 bytes.
  EXPECT_THROW((void)keel::decode<std::vector<Point>>("\x02\x00\x00\x00"s + std::string(12, '\0')),
               keel::ProtocolError);
}

TEST(Codec, MemberProtocolUserTypeRoundTrips) {
  const Tagged t{"tag", {1, -1, 300}};
  EXPECT_EQ(round_trip(t), t);
  const std::vector<Tagged> ts{t, Tagged{}};
  EXPECT_EQ(round_trip(ts), ts);
  EXPECT_EQ(keel::encode(ts).size(), 4 + 2 + keel::encode(t).size() + keel::encode(Tagged{}).size())
      << "one marker byte per element of unknown minimum size";
  const std::vector<Sized> ss{{1}, {2}};
  EXPECT_EQ(keel::encode(ss).size(), 4u + 4u);
  EXPECT_EQ(round_trip(ss), ss);
  EXPECT_EQ(round_trip(std::optional<Tagged>{t}), std::optional<Tagged>{t});
}

TEST(Codec, AFailedEncodingLeavesTheEncoderAsItWas) {
  keel::Encoder e;
  e.put(std::uint8_t{7});
  EXPECT_THROW(e.put(std::vector<Explodes>{{false}, {false}, {true}}), std::runtime_error);
  EXPECT_EQ(e.bytes(), "\x07"s);
  EXPECT_THROW(e.put(std::make_tuple(std::string("abc"), Explodes{true})), std::runtime_error);
  EXPECT_EQ(e.bytes(), "\x07"s);
  e.put(true);
  EXPECT_EQ(e.take(), "\x07\x01"s);
  EXPECT_EQ(e.size(), 0u);
}

TEST(Codec, PutSizeAboveThirtyTwoBitsIsAProtocolErrorAndAppendsNothing) {
  keel::Encoder e;
  e.put_size(std::numeric_limits<std::uint32_t>::max());
  EXPECT_EQ(e.bytes(), "\xff\xff\xff\xff"s);
  EXPECT_THROW(e.put_size(std::size_t{1} << 32), keel::ProtocolError);
  EXPECT_EQ(e.size(), 4u);
}

// ---- decoder primitives and whole buffers ----------------------------------------

TEST(Codec, DecoderReadsRawBytesViewsAndReportsWhatIsLeft) {
  const std::string bytes = "abcdef";
  keel::Decoder d(bytes);
  char two[2];
  d.get_raw(two, 2);
  EXPECT_EQ(std::string(two, 2), "ab");
  EXPECT_EQ(d.remaining(), 4u);
  EXPECT_EQ(d.get_view(3), "cde");
  EXPECT_THROW(d.expect_end(), keel::ProtocolError);
  EXPECT_THROW(d.get_view(2), keel::ProtocolError);
  EXPECT_THROW(d.get_raw(two, 2), keel::ProtocolError);
  EXPECT_EQ(d.get_view(1), "f");
  EXPECT_NO_THROW(d.expect_end());
  EXPECT_EQ(d.get_view(0), "");
}

TEST(Codec, EncodeWritesEveryValueAndDecodeTupleReadsThemInOrder) {
  const std::string bytes = keel::encode(std::int8_t{1}, "two"s, std::uint64_t{3}, false);
  const auto t = keel::decode_tuple<std::tuple<std::int8_t, std::string, std::uint64_t, bool>>(bytes);
  EXPECT_EQ(t, std::make_tuple(std::int8_t{1}, "two"s, std::uint64_t{3}, false));
  EXPECT_EQ(keel::encode(), "");
  EXPECT_NO_THROW(keel::decode_tuple<std::tuple<>>(""));
  EXPECT_THROW(keel::decode_tuple<std::tuple<>>("x"), keel::ProtocolError);
  EXPECT_THROW((keel::decode_tuple<std::tuple<std::int8_t, std::string>>(bytes)), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::int8_t>(bytes), keel::ProtocolError) << "decode wants exactly one value";
}

// ---- hostile input -----------------------------------------------------------------

TEST(Codec, EveryTruncationAndTrailingByteIsAProtocolError) {
  using Big = std::tuple<std::int32_t, std::string, std::vector<std::optional<std::string>>, std::pair<bool, double>,
                         std::array<std::uint16_t, 2>, std::variant<std::int8_t, std::string>, Tagged,
                         std::vector<std::monostate>>;
  const Big v{-1, "hello", {std::nullopt, "x", ""}, {true, 2.5}, {7, 8}, "alt"s, Tagged{"t", {1, 2}}, {{}, {}}};
  expect_prefixes_and_trailing_rejected<Big>(keel::encode(v));
  expect_prefixes_and_trailing_rejected<std::string>(keel::encode("abc"s));
  expect_prefixes_and_trailing_rejected<std::uint64_t>(keel::encode(std::uint64_t{9}));
}

TEST(Codec, AHugeClaimedCountIsRefusedBeforeAllocating) {
  // 4e9 strings claimed, 4 bytes of them present.
  const std::string claim = "\x00\x28\x6b\xee"s + "\x00\x00\x00\x00"s;
  ASSERT_EQ(claim.size(), 8u);
  EXPECT_THROW((void)keel::decode<std::vector<std::string>>(claim), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::vector<std::uint64_t>>("\xff\xff\xff\xff\x00\x00\x00\x00"s),
               keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::string>("\xff\xff\xff\xff"
                                               "abc"s),
               keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::vector<std::monostate>>("\xff\xff\xff\xff\x00\x00\x00"s), keel::ProtocolError);
  EXPECT_THROW(
      (void)keel::decode<std::vector<std::vector<std::vector<int>>>>("\xff\xff\xff\xff"s + std::string(64, '\0')),
      keel::ProtocolError);

  // With a counting allocator: a refused count allocates nothing; a valid one
  // allocates no more elements than the input has bytes for.
  using Strings = std::vector<std::string, CountingAlloc<std::string>>;
  alloc_stats = {};
  EXPECT_THROW((void)keel::decode<Strings>("\x40\x42\x0f\x00"s + std::string(64, '\0')), keel::ProtocolError);
  EXPECT_EQ(alloc_stats.calls, 0u);
  using Bytes = std::basic_string<char, std::char_traits<char>, CountingAlloc<char>>;
  alloc_stats = {};
  EXPECT_THROW((void)keel::decode<Bytes>("\x00\x00\x00\x10"s + std::string(1000, 'a')), keel::ProtocolError);
  EXPECT_EQ(alloc_stats.calls, 0u);
  alloc_stats = {};
  const Strings ok = keel::decode<Strings>(keel::encode(std::vector<std::string>(16)));
  EXPECT_EQ(ok.size(), 16u);
  EXPECT_LE(alloc_stats.largest, 16 * sizeof(std::string));
}

TEST(Codec, BadTagsAreProtocolErrors) {
  EXPECT_THROW((void)keel::decode<std::optional<std::int8_t>>("\x02\x01"s), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::optional<std::int8_t>>("\xff"s), keel::ProtocolError);
  EXPECT_EQ(keel::decode<std::optional<std::int8_t>>("\x01\x05"s), std::optional<std::int8_t>{5});
  using V = std::variant<std::int8_t, bool>;
  EXPECT_THROW((void)keel::decode<V>("\x02\x00\x00\x00\x01"s), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<V>("\x01\x00\x00\x00\x02"s), keel::ProtocolError) << "a bad bool inside";
  EXPECT_THROW((void)(keel::decode<std::pair<bool, bool>>("\x01\x03"s)), keel::ProtocolError);
}

// ---- properties ----------------------------------------------------------------------

// Round trip, canonical bytes, and rejection of every truncation and of a
// trailing byte, for a random value of T.
template <class T>
void check_round_trip(const T& v) {
  const std::string bytes = keel::encode(v);
  const T back = keel::decode<T>(bytes);
  RC_ASSERT(keel::encode(back) == bytes);
  if constexpr (!std::is_floating_point_v<T>) RC_ASSERT(back == v);
  const std::size_t cut = *rc::gen::inRange<std::size_t>(0, bytes.size() + 1);
  if (cut < bytes.size()) {
    RC_ASSERT_THROWS_AS((void)keel::decode<T>(std::string_view(bytes).substr(0, cut)), keel::ProtocolError);
  }
  RC_ASSERT_THROWS_AS((void)keel::decode<T>(bytes + static_cast<char>(*rc::gen::arbitrary<char>())),
                      keel::ProtocolError);
}

TEST(CodecProperties, RandomValuesRoundTrip) {
  EXPECT_TRUE(keel_test::rc_check("integers round trip", 200, 100,
                                  [](std::int64_t a, std::uint8_t b, std::int16_t c, std::uint32_t d, bool e, char f) {
                                    check_round_trip(a);
                                    check_round_trip(b);
                                    check_round_trip(c);
                                    check_round_trip(d);
                                    check_round_trip(e);
                                    check_round_trip(f);
                                    check_round_trip(std::make_tuple(a, b, c, d, e, f));
                                  }));
  EXPECT_TRUE(
      keel_test::rc_check("floats round trip bit-exactly", 200, 100, [](std::uint64_t bits, std::uint32_t fbits) {
        const double v = std::bit_cast<double>(bits);
        RC_ASSERT(std::bit_cast<std::uint64_t>(keel::decode<double>(keel::encode(v))) == bits);
        const float f = std::bit_cast<float>(fbits);
        RC_ASSERT(std::bit_cast<std::uint32_t>(keel::decode<float>(keel::encode(f))) == fbits);
        // Element by element, bit by bit: a vector's == says NaN != NaN.
        const std::vector<double> vs{v, 1.0};
        const auto back = keel::decode<std::vector<double>>(keel::encode(vs));
        RC_ASSERT(back.size() == 2u);
        RC_ASSERT(std::bit_cast<std::uint64_t>(back[0]) == bits);
        RC_ASSERT(back[1] == 1.0);
      }));
  EXPECT_TRUE(keel_test::rc_check("strings and containers round trip", 200, 60,
                                  [](const std::string& s, const std::vector<std::int32_t>& ints,
                                     const std::vector<std::string>& strings, const std::vector<bool>& bools) {
                                    check_round_trip(s);
                                    check_round_trip(ints);
                                    check_round_trip(strings);
                                    check_round_trip(bools);
                                  }));
  EXPECT_TRUE(keel_test::rc_check(
      "nested types round trip", 200, 40,
      [](const std::vector<std::optional<std::pair<std::int16_t, std::string>>>& a,
         const std::optional<std::vector<std::vector<std::uint8_t>>>& b, const std::array<std::string, 3>& c,
         const std::tuple<std::string, std::optional<bool>, std::int64_t>& d) {
        check_round_trip(a);
        check_round_trip(b);
        check_round_trip(c);
        check_round_trip(d);
        check_round_trip(std::make_tuple(a, b, c, d));
      }));
  EXPECT_TRUE(keel_test::rc_check("user types round trip", 200, 40,
                                  [](std::int32_t x, std::int32_t y, const std::string& tag,
                                     const std::vector<std::int16_t>& values, std::size_t n) {
                                    check_round_trip(Point{x, y});
                                    check_round_trip(Tagged{tag, values});
                                    check_round_trip(std::vector<Tagged>(n % 5, Tagged{tag, values}));
                                    check_round_trip(std::vector<std::monostate>(n % 50));
                                  }));
}

// Bytes that decode re-encode to exactly themselves (the encoding is
// canonical); all other bytes are a ProtocolError, never anything else.
// Returns whether they decoded.
template <class T>
bool check_garbage(const std::string& bytes) {
  try {
    const T v = keel::decode<T>(bytes);
    RC_ASSERT(keel::encode(v) == bytes);
    return true;
  } catch (const keel::ProtocolError&) {
    return false;
  }
}

// The encoding of a random T, then one random mutation: a byte changed, a
// byte removed, a byte inserted, or nothing.
template <class T>
std::string mutated_encoding() {
  std::string bytes = keel::encode(*rc::gen::arbitrary<T>());
  const int how = *rc::gen::inRange(0, 4);
  const std::size_t at = *rc::gen::inRange<std::size_t>(0, bytes.size() + 1);
  const char c = *rc::gen::arbitrary<char>();
  if (how == 0 && at < bytes.size()) bytes[at] = c;
  if (how == 1 && at < bytes.size()) bytes.erase(at, 1);
  if (how == 2) bytes.insert(at, 1, c);
  return bytes;
}

TEST(CodecProperties, MutatedEncodingsDecodeCanonicallyOrFailCleanly) {
  int decoded = 0;
  int refused = 0;
  auto tally = [&](bool ok) { ++(ok ? decoded : refused); };
  EXPECT_TRUE(keel_test::rc_check("mutated bytes: canonical or ProtocolError", 1000, 30, [&] {
    tally(check_garbage<std::vector<std::string>>(mutated_encoding<std::vector<std::string>>()));
    using Opts = std::vector<std::optional<std::int8_t>>;
    tally(check_garbage<Opts>(mutated_encoding<Opts>()));
    using Tup = std::tuple<bool, std::string, std::uint16_t>;
    tally(check_garbage<Tup>(mutated_encoding<Tup>()));
    using Nested = std::pair<std::vector<bool>, std::optional<std::vector<std::int32_t>>>;
    tally(check_garbage<Nested>(mutated_encoding<Nested>()));
  }));
  // Both outcomes occur, so the property tests something either way.
  EXPECT_GT(decoded, 100);
  EXPECT_GT(refused, 100);
}

TEST(CodecProperties, RandomBytesDecodeCanonicallyOrFailCleanly) {
  EXPECT_TRUE(keel_test::rc_check("random bytes: canonical or ProtocolError", 500, 60, [](const std::string& bytes) {
    check_garbage<std::vector<std::string>>(bytes);
    check_garbage<std::vector<std::optional<std::int8_t>>>(bytes);
    check_garbage<std::tuple<bool, std::string>>(bytes);
    check_garbage<std::variant<std::monostate, std::uint16_t, std::vector<bool>>>(bytes);
    check_garbage<std::vector<std::monostate>>(bytes);
    check_garbage<std::pair<Tagged, std::optional<Point>>>(bytes);
    check_garbage<std::optional<bool>>(bytes);
  }));
}

}  // namespace
