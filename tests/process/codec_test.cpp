// keel::Encoder / Decoder / Codec: round trips of every built-in (fixed cases
// and RapidCheck properties), the exact wire format, user-type customization,
// plain aggregates without user code, ordered and unordered associative
// containers, std::chrono durations and time points, and hostile input
// (IPC-1): truncation at every prefix length, trailing bytes, counts the input
// cannot hold (refused before any allocation), bad bool/optional/variant/
// marker bytes, keys out of order or repeated, and random garbage, which
// either decodes canonically or is a ProtocolError. One test sends aggregates
// and maps through a real ProcessPool.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
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

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/task.hpp"
#include "keel/process_pool/process_pool.hpp"

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
class NoCodec {                         // not an aggregate (a private member), no codec
  int v_ = 0;

 public:
  int v() const { return v_; }
};

// Flat aggregates: encodable with no user code.
struct Flat {
  std::int32_t a = 0;
  std::string b;
  std::optional<std::int16_t> c;
  bool operator==(const Flat&) const = default;
};
struct Nested {
  Flat plain;
  const std::uint8_t version = 1;  // const fields decode too
  std::vector<Flat> more;
  Color color = Color::red;
  std::chrono::milliseconds timeout{0};
  bool operator==(const Nested&) const = default;
};
struct Empty {
  bool operator==(const Empty&) const = default;
};
struct Bits {
  std::uint8_t low : 3;
  std::uint8_t high : 5;
  bool operator==(const Bits&) const = default;
};
// The task argument and result that travel through a ProcessPool.
struct Order {
  std::string customer;
  std::map<std::string, std::int32_t> items;
  std::chrono::system_clock::time_point placed;
  bool operator==(const Order&) const = default;
};
struct Receipt {
  std::string customer;
  std::int64_t units = 0;
  std::set<std::string> kinds;
  std::chrono::system_clock::time_point placed;
  bool operator==(const Receipt&) const = default;
};

// Aggregates the codec refuses (each has_codec is false, and put/get
// static_assert with the reason).
struct WithPointer {
  int x;
  int* p;
};
union Either {
  std::int32_t i;
  float f;
};
struct WithUnion {
  Either e;
};
struct WithReference {
  const int& r;
};
struct WithCArray {
  int a[2];
};
struct WithNoCodecField {
  NoCodec n;
};

// The most fields the codec lists, and one more.
struct Fields24 {
  std::int32_t f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22,
      f23;
};
struct Fields25 {  // one more than the codec lists
  std::int32_t f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22,
      f23, f24;
};

// Aggregates with a user codec: the user's wins over the fields.
struct Reversed {  // specialized below: b travels before a
  std::int32_t a = 0;
  std::int32_t b = 0;
  bool operator==(const Reversed&) const = default;
};
struct FirstOnly {  // member codec: only a travels
  std::int8_t a = 0;
  std::int8_t b = 0;
  void encode(keel::Encoder& e) const { e.put(a); }
  static FirstOnly decode(keel::Decoder& d) { return FirstOnly{d.get<std::int8_t>(), 0}; }
};

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

// Random aggregates, field by field.
template <>
struct rc::Arbitrary<codec_test::Flat> {
  static rc::Gen<codec_test::Flat> arbitrary() {
    return rc::gen::map(rc::gen::tuple(rc::gen::arbitrary<std::int32_t>(), rc::gen::arbitrary<std::string>(),
                                       rc::gen::arbitrary<std::int16_t>(), rc::gen::arbitrary<bool>()),
                        [](const std::tuple<std::int32_t, std::string, std::int16_t, bool>& t) {
                          const auto& [a, b, c, has_c] = t;
                          return codec_test::Flat{a, b, has_c ? std::optional<std::int16_t>(c) : std::nullopt};
                        });
  }
};

// RapidCheck has no generator for std::optional.
template <class T>
struct rc::Arbitrary<std::optional<T>> {
  static rc::Gen<std::optional<T>> arbitrary() {
    return rc::gen::oneOf(rc::gen::just(std::optional<T>{}),
                          rc::gen::map(rc::gen::arbitrary<T>(), [](T v) { return std::optional<T>(std::move(v)); }));
  }
};

template <>
struct keel::Codec<codec_test::Reversed> {
  static void encode(keel::Encoder& e, const codec_test::Reversed& r) {
    e.put(r.b);
    e.put(r.a);
  }
  static codec_test::Reversed decode(keel::Decoder& d) {
    codec_test::Reversed r;
    r.b = d.get<std::int32_t>();
    r.a = d.get<std::int32_t>();
    return r;
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
static_assert(keel::detail::has_codec<Flat> && keel::detail::has_codec<Nested> && keel::detail::has_codec<Empty>);
static_assert(!keel::detail::has_codec<WithPointer>, "a pointer's target is not in the other process");
static_assert(!keel::detail::has_codec<Either> && !keel::detail::has_codec<WithUnion>, "a union's member is unknown");
static_assert(!keel::detail::has_codec<WithReference>, "a decoded reference would dangle");
static_assert(!keel::detail::has_codec<WithCArray>, "C arrays cannot be listed as fields");
static_assert(!keel::detail::has_codec<WithNoCodecField>);
static_assert(!keel::detail::has_codec<std::map<std::string, NoCodec>>);
static_assert(!keel::detail::has_codec<std::unordered_set<int*>>);
static_assert(!keel::detail::has_codec<std::set<int, bool (*)(int, int)>>,
              "a decoded set's default comparator would be a null function pointer");
static_assert(!keel::detail::has_codec<std::unordered_set<int, std::size_t (*)(int)>>);
static_assert(keel::detail::codec_min_size<Flat>() == 4 + 4 + 1);
static_assert(keel::detail::has_codec<Fields24> && keel::detail::codec_min_size<Fields24>() == 24 * 4);
static_assert(!keel::detail::has_codec<Fields25>);
static_assert(keel::detail::codec_min_size<std::chrono::seconds>() == 8);
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

// ---- plain aggregates ------------------------------------------------------------

TEST(Codec, AggregatesTravelFieldByFieldInDeclarationOrder) {
  const Flat p{-7, "bee", std::int16_t{3}};
  EXPECT_EQ(keel::encode(p), keel::encode(std::int32_t{-7}, "bee"s, std::optional<std::int16_t>{3}))
      << "an aggregate is its fields, nothing around them";
  EXPECT_EQ(round_trip(p), p);
  const Nested n{p, 1, {Flat{}, Flat{1, "x", std::nullopt}}, Color::green, std::chrono::milliseconds(250)};
  EXPECT_EQ(round_trip(n), n);
  EXPECT_EQ(keel::encode(std::vector<Flat>{p, p}).size(), 4 + 2 * keel::encode(p).size())
      << "the fields' minimum sizes add up, so a vector of them needs no marker";
  EXPECT_EQ(keel::encode(Empty{}), "");
  EXPECT_EQ(round_trip(std::vector<Empty>(3)), std::vector<Empty>(3));
  EXPECT_EQ(keel::encode(std::vector<Empty>(3)), "\x03\x00\x00\x00\x00\x00\x00"s) << "empty: marked";
  expect_prefixes_and_trailing_rejected<Nested>(keel::encode(n));
  Fields24 wide{};
  wide.f0 = -1;
  wide.f23 = 23;
  const Fields24 back = round_trip(wide);
  EXPECT_EQ(back.f0, -1);
  EXPECT_EQ(back.f23, 23);
  EXPECT_EQ(keel::encode(wide).size(), 96u);
}

TEST(Codec, ABitFieldTakesOnlyTheValuesItHolds) {
  EXPECT_EQ(keel::encode(Bits{5, 17}), "\x05\x11"s);
  EXPECT_EQ(round_trip(Bits{7, 31}), (Bits{7, 31}));
  // 9 does not fit in 3 bits: stored, it would re-encode as 1.
  EXPECT_THROW((void)keel::decode<Bits>("\x09\x00"s), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<Bits>("\x00\x20"s), keel::ProtocolError);
}

TEST(Codec, AUserCodecWinsOverTheFields) {
  EXPECT_EQ(keel::encode(Reversed{1, 2}), keel::encode(std::int32_t{2}, std::int32_t{1}));
  EXPECT_EQ(round_trip(Reversed{1, 2}), (Reversed{1, 2}));
  EXPECT_EQ(keel::encode(FirstOnly{4, 5}), "\x04"s);
  EXPECT_EQ(keel::decode<FirstOnly>("\x04"s).b, 0);
  EXPECT_EQ(keel::encode(Point{1, 2}), keel::encode(std::int32_t{1}, std::int32_t{2}));
}

// ---- ordered associative containers ------------------------------------------------

TEST(Codec, OrderedContainersTravelInKeyOrder) {
  const std::map<std::int16_t, std::string> m{{2, "b"}, {-1, "a"}};
  EXPECT_EQ(keel::encode(m),
            "\x02\x00\x00\x00"
            "\xff\xff\x01\x00\x00\x00"
            "a"
            "\x02\x00\x01\x00\x00\x00"
            "b"s);
  EXPECT_EQ(round_trip(m), m);
  const std::set<std::string> s{"pear", "apple", ""};
  EXPECT_EQ(round_trip(s), s);
  EXPECT_EQ(keel::encode(s), keel::encode(std::vector<std::string>{"", "apple", "pear"}))
      << "a set is its elements in order, as a vector of them";
  const std::multimap<std::int8_t, std::string> mm{{1, "z"}, {0, "y"}, {1, "a"}};
  EXPECT_EQ(round_trip(mm), mm);
  EXPECT_EQ(keel::decode<decltype(mm)>(keel::encode(mm)).find(1)->second, "z") << "equal keys keep their order";
  const std::multiset<std::uint8_t> ms{3, 1, 3, 3};
  EXPECT_EQ(round_trip(ms), ms);
  // The container's own comparator sets the order.
  const std::set<std::int8_t, std::greater<>> down{1, 3, 2};
  EXPECT_EQ(keel::encode(down), "\x03\x00\x00\x00\x03\x02\x01"s);
  EXPECT_EQ(round_trip(down), down);
  EXPECT_EQ(round_trip(std::map<std::string, bool>{}), (std::map<std::string, bool>{}));
  expect_prefixes_and_trailing_rejected<std::map<std::int16_t, std::string>>(keel::encode(m));
  expect_prefixes_and_trailing_rejected<std::multiset<std::uint8_t>>(keel::encode(ms));
}

TEST(Codec, OrderedContainersRefuseKeysOutOfOrderOrRepeated) {
  using M = std::map<std::uint8_t, bool>;
  EXPECT_EQ(keel::decode<M>("\x02\x00\x00\x00\x01\x00\x02\x01"s), (M{{1, false}, {2, true}}));
  EXPECT_THROW((void)keel::decode<M>("\x02\x00\x00\x00\x02\x01\x01\x00"s), keel::ProtocolError) << "descending";
  EXPECT_THROW((void)keel::decode<M>("\x02\x00\x00\x00\x01\x00\x01\x01"s), keel::ProtocolError)
      << "a repeated key is refused, not merged";
  using S = std::set<std::uint8_t>;
  EXPECT_THROW((void)keel::decode<S>("\x03\x00\x00\x00\x01\x02\x02"s), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<S>("\x02\x00\x00\x00\x02\x01"s), keel::ProtocolError);
  using MS = std::multiset<std::uint8_t>;
  EXPECT_EQ(keel::decode<MS>("\x03\x00\x00\x00\x01\x02\x02"s), (MS{1, 2, 2}));
  EXPECT_THROW((void)keel::decode<MS>("\x03\x00\x00\x00\x01\x02\x01"s), keel::ProtocolError);
  using MM = std::multimap<std::uint8_t, std::uint8_t>;
  EXPECT_THROW((void)keel::decode<MM>("\x02\x00\x00\x00\x02\x00\x01\x00"s), keel::ProtocolError);
  using Down = std::set<std::int8_t, std::greater<>>;
  EXPECT_THROW((void)keel::decode<Down>("\x02\x00\x00\x00\x01\x02"s), keel::ProtocolError)
      << "ascending is out of order for a descending set";
}

TEST(Codec, ElementsOfAssociativeContainersThatCanEncodeEmptyGetAMarkerByte) {
  const std::map<std::int8_t, std::monostate> m{{1, {}}, {2, {}}};
  EXPECT_EQ(keel::encode(m).size(), 4u + 2u) << "a key of 1 byte: no marker";
  const std::multiset<std::tuple<>> ms{{}, {}, {}};
  EXPECT_EQ(keel::encode(ms), "\x03\x00\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(round_trip(ms), ms);
  EXPECT_THROW((void)keel::decode<std::multiset<std::tuple<>>>("\x01\x00\x00\x00\x07"s), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::multiset<std::tuple<>>>("\xff\xff\xff\xff\x00\x00"s), keel::ProtocolError)
      << "one byte per element at least, so the count is bounded";
  const std::unordered_multiset<std::monostate> us{{}, {}};
  EXPECT_EQ(keel::encode(us), "\x02\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(round_trip(us), us);
}

// ---- unordered associative containers ----------------------------------------------

TEST(Codec, UnorderedContainersTravelInTheOrderOfTheirEncodedElements) {
  // Equal containers with different bucket counts and insertion histories
  // iterate differently, but encode alike.
  std::unordered_set<std::string> a;
  std::unordered_set<std::string> b;
  b.reserve(1000);
  for (int i = 0; i < 50; ++i) a.insert(std::to_string(i));
  for (int i = 49; i >= 0; --i) b.insert(std::to_string(i));
  ASSERT_EQ(a, b);
  EXPECT_EQ(keel::encode(a), keel::encode(b));
  EXPECT_EQ(round_trip(a), a);
  const std::unordered_set<std::uint16_t> u{0x0102, 0x0201, 0x0003};
  EXPECT_EQ(keel::encode(u),
            "\x03\x00\x00\x00"
            "\x01\x02"
            "\x02\x01"
            "\x03\x00"s)
      << "ordered by the bytes (little-endian), not by the numbers";
  const std::unordered_map<std::string, std::vector<std::int32_t>> m{{"b", {1}}, {"a", {}}, {"c", {2, 3}}};
  EXPECT_EQ(round_trip(m), m);
  const std::unordered_multimap<std::uint8_t, std::string> mm{{1, "x"}, {1, "x"}, {0, "y"}};
  EXPECT_EQ(round_trip(mm), mm);
  const std::unordered_multiset<std::int32_t> ms{5, 5, -1};
  EXPECT_EQ(round_trip(ms), ms);
  expect_prefixes_and_trailing_rejected<std::unordered_map<std::string, std::vector<std::int32_t>>>(keel::encode(m));
}

TEST(Codec, UnorderedContainersRefuseElementsOutOfOrderOrRepeated) {
  using S = std::unordered_set<std::uint8_t>;
  EXPECT_EQ(keel::decode<S>("\x02\x00\x00\x00\x01\x02"s), (S{1, 2}));
  EXPECT_THROW((void)keel::decode<S>("\x02\x00\x00\x00\x02\x01"s), keel::ProtocolError);
  try {
    (void)keel::decode<S>("\x02\x00\x00\x00\x01\x01"s);
    ADD_FAILURE() << "repeated, not merged";
  } catch (const keel::ProtocolError& e) {
    // Refused by the byte-order check, before any element is inserted.
    EXPECT_NE(std::string(e.what()).find("out of order or repeated"), std::string::npos) << e.what();
  }
  using M = std::unordered_map<std::uint8_t, std::uint8_t>;
  EXPECT_THROW((void)keel::decode<M>("\x02\x00\x00\x00\x01\x00\x01\x01"s), keel::ProtocolError)
      << "one key twice, with two values: in byte order, but a duplicate key";
  using MS = std::unordered_multiset<std::uint8_t>;
  EXPECT_EQ(keel::decode<MS>("\x02\x00\x00\x00\x01\x01"s), (MS{1, 1}));
  EXPECT_THROW((void)keel::decode<MS>("\x02\x00\x00\x00\x02\x01"s), keel::ProtocolError);
  // 0.0 and -0.0 encode differently but are one key of an unordered_set<double>.
  const std::string zeros = "\x02\x00\x00\x00"s + keel::encode(0.0) + keel::encode(-0.0);
  EXPECT_THROW((void)keel::decode<std::unordered_set<double>>(zeros), keel::ProtocolError);
  EXPECT_EQ(keel::decode<std::unordered_multiset<double>>(zeros).size(), 2u);
  // Two NaNs with one bit pattern are two elements of a set that would encode
  // alike: refused when encoding, since the bytes could not decode.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW((void)keel::encode(std::unordered_set<double>{nan, nan}), keel::ProtocolError);
}

TEST(Codec, AHugeClaimedCountOfAContainerIsRefusedBeforeAllocating) {
  using Map =
      std::map<std::string, std::int32_t, std::less<>, CountingAlloc<std::pair<const std::string, std::int32_t>>>;
  using Hash = std::unordered_map<std::string, std::int32_t, std::hash<std::string>, std::equal_to<>,
                                  CountingAlloc<std::pair<const std::string, std::int32_t>>>;
  const std::string claim = "\xff\xff\xff\x0f"s + std::string(64, '\0');
  alloc_stats = {};
  EXPECT_THROW((void)keel::decode<Map>(claim), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<Hash>(claim), keel::ProtocolError);
  EXPECT_THROW((void)keel::decode<std::set<std::uint64_t>>("\x09\x00\x00\x00"s + std::string(64, '\0')),
               keel::ProtocolError);
  EXPECT_EQ(alloc_stats.calls, 0u);
  // A count the bytes can hold allocates in proportion to it.
  alloc_stats = {};
  const Hash ok = keel::decode<Hash>(keel::encode(std::unordered_map<std::string, std::int32_t>{{"a", 1}, {"b", 2}}));
  EXPECT_EQ(ok.size(), 2u);
  EXPECT_LE(alloc_stats.largest, 64u);
}

// ---- std::chrono ---------------------------------------------------------------------

TEST(Codec, DurationsTravelAsTheirCount) {
  using namespace std::chrono;
  EXPECT_EQ(keel::encode(milliseconds(1500)), keel::encode(milliseconds::rep{1500})) << "the period stays in the type";
  EXPECT_EQ(round_trip(nanoseconds::min()), nanoseconds::min());
  EXPECT_EQ(round_trip(hours(-3)), hours(-3));
  const duration<double> half(0.5);
  EXPECT_EQ(round_trip(half), half);
  EXPECT_EQ(keel::encode(duration<std::uint8_t, std::ratio<60>>(200)), "\xc8"s);
  const auto nan = std::bit_cast<double>(std::uint64_t{0x7ff8000000000abcull});
  EXPECT_EQ(std::bit_cast<std::uint64_t>(round_trip(duration<double>(nan)).count()), 0x7ff8000000000abcull);
  expect_prefixes_and_trailing_rejected<seconds>(keel::encode(seconds(9)));
}

TEST(Codec, TimePointsTravelAsTheDurationSinceTheirClocksEpoch) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  EXPECT_EQ(round_trip(now), now);
  EXPECT_EQ(keel::encode(now), keel::encode(now.time_since_epoch()));
  const auto t = steady_clock::now();
  EXPECT_EQ(round_trip(t), t);
  const time_point<system_clock, seconds> s(seconds(1700000000));
  EXPECT_EQ(keel::encode(s), keel::encode(std::int64_t{1700000000}));
  EXPECT_EQ(round_trip(s), s);
}

TEST(Codec, NestedContainersOfAggregatesRoundTrip) {
  const std::map<std::string, std::vector<Flat>> m{{"k", {Flat{1, "a", {}}, Flat{2, "b", std::int16_t{7}}}}, {"", {}}};
  EXPECT_EQ(round_trip(m), m);
  const std::unordered_map<std::int32_t, std::set<std::chrono::seconds>> u{{1, {std::chrono::seconds(2)}}, {-4, {}}};
  EXPECT_EQ(round_trip(u), u);
  const std::vector<std::map<std::uint8_t, Nested>> v{{{1, Nested{}}}, {}};
  EXPECT_EQ(round_trip(v), v);
  expect_prefixes_and_trailing_rejected<std::map<std::string, std::vector<Flat>>>(keel::encode(m));
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

TEST(CodecProperties, RandomContainersAndAggregatesRoundTrip) {
  EXPECT_TRUE(
      keel_test::rc_check("ordered containers round trip", 200, 40,
                          [](const std::map<std::string, std::int32_t>& m, const std::set<std::int16_t>& s,
                             const std::multimap<std::uint8_t, std::string>& mm, const std::multiset<std::int8_t>& ms) {
                            check_round_trip(m);
                            check_round_trip(s);
                            check_round_trip(mm);
                            check_round_trip(ms);
                          }));
  EXPECT_TRUE(keel_test::rc_check(
      "unordered containers round trip, one encoding per value", 200, 40,
      [](const std::unordered_map<std::int32_t, std::string>& m, const std::unordered_set<std::string>& s,
         const std::unordered_multiset<std::uint8_t>& ms) {
        check_round_trip(m);
        check_round_trip(s);
        check_round_trip(ms);
        // The same elements inserted in another order, into more buckets.
        std::unordered_set<std::string> again;
        again.reserve(4 * s.size() + 7);
        std::vector<std::string> elements(s.begin(), s.end());
        for (auto it = elements.rbegin(); it != elements.rend(); ++it) again.insert(*it);
        RC_ASSERT(keel::encode(again) == keel::encode(s));
      }));
  EXPECT_TRUE(keel_test::rc_check(
      "aggregates and durations round trip", 200, 40,
      [](const Flat& p, const std::vector<Flat>& ps, std::int64_t ticks, double secs) {
        check_round_trip(p);
        check_round_trip(ps);
        check_round_trip(std::map<std::string, std::vector<Flat>>{{p.b, ps}});
        check_round_trip(std::chrono::nanoseconds(ticks));
        check_round_trip(std::chrono::system_clock::time_point(std::chrono::system_clock::duration(ticks)));
        const std::chrono::duration<double> d(secs);
        RC_ASSERT(std::bit_cast<std::uint64_t>(keel::decode<std::chrono::duration<double>>(keel::encode(d)).count()) ==
                  std::bit_cast<std::uint64_t>(secs));
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
    using Map = std::map<std::uint8_t, std::string>;
    tally(check_garbage<Map>(mutated_encoding<Map>()));
    using Hashed = std::unordered_set<std::int16_t>;
    tally(check_garbage<Hashed>(mutated_encoding<Hashed>()));
    using Multi = std::multiset<std::uint8_t>;
    tally(check_garbage<Multi>(mutated_encoding<Multi>()));
    tally(check_garbage<Flat>(mutated_encoding<Flat>()));
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
    check_garbage<std::map<std::uint8_t, bool>>(bytes);
    check_garbage<std::set<std::int8_t>>(bytes);
    check_garbage<std::unordered_map<std::uint8_t, std::uint8_t>>(bytes);
    check_garbage<std::unordered_multiset<std::uint8_t>>(bytes);
    check_garbage<std::multimap<std::uint8_t, std::monostate>>(bytes);
    check_garbage<Nested>(bytes);
    check_garbage<Bits>(bytes);
  }));
}

// ---- through a ProcessPool -----------------------------------------------------------

Receipt fill(Order o) {
  Receipt r{o.customer, 0, {}, o.placed};
  for (const auto& [kind, units] : o.items) {
    r.units += units;
    r.kinds.insert(kind);
  }
  return r;
}
std::map<std::string, std::vector<Flat>> regroup(std::map<std::string, std::vector<Flat>> m) {
  std::map<std::string, std::vector<Flat>> out;
  for (auto& [k, v] : m) {
    for (Flat& p : v) out[p.b].push_back(Flat{p.a, k, p.c});
  }
  return out;
}
std::chrono::steady_clock::time_point steady_now() { return std::chrono::steady_clock::now(); }
inline const auto fill_t = keel::register_task("codec.fill", fill);
inline const auto regroup_t = keel::register_task("codec.regroup", regroup);
inline const auto steady_now_t = keel::register_task("codec.steady_now", steady_now);

TEST(CodecThroughProcessPool, AggregatesAndMapsTravelToAWorkerAndBack) {
  keel::ProcessPool pool({.workers = 1});
  const Order o{"ada", {{"bolt", 3}, {"nut", 4}}, std::chrono::system_clock::now()};
  EXPECT_EQ(pool.submit(fill_t, o).result(), (Receipt{"ada", 7, {"bolt", "nut"}, o.placed}));
  const std::map<std::string, std::vector<Flat>> m{{"x", {Flat{1, "p", {}}, Flat{2, "q", std::int16_t{5}}}},
                                                   {"y", {Flat{3, "p", {}}}}};
  const std::map<std::string, std::vector<Flat>> want{{"p", {Flat{1, "x", {}}, Flat{3, "y", {}}}},
                                                      {"q", {Flat{2, "x", std::int16_t{5}}}}};
  EXPECT_EQ(pool.submit(regroup_t, m).result(), want);
  // steady_clock shares its epoch between processes of one host
  // (CLOCK_MONOTONIC): the worker's reading falls between two of ours.
  const auto before = std::chrono::steady_clock::now();
  const auto there = pool.submit(steady_now_t).result();
  const auto after = std::chrono::steady_clock::now();
  EXPECT_LE(before, there);
  EXPECT_LE(there, after);
  pool.shutdown();
}

}  // namespace
