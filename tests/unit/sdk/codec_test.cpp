#include <plexus/codec.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace demo {

struct Point {
  double x = 0;
  double y = 0;
  bool operator==(const Point&) const = default;
};

enum class Color : std::uint8_t { red = 1, green = 2, blue = 200 };
enum Legacy { legacy_a = -5, legacy_b = 7 };

}  // namespace demo

template <>
struct plexus::codec<demo::Point> {
  static std::string type_name() { return "Point"; }
  static void encode(plexus::Writer& w, const demo::Point& p) {
    w.list(2);
    plexus::encode(w, p.x);
    plexus::encode(w, p.y);
  }
  static demo::Point decode(plexus::Reader& r) {
    r.expect_list(2, "Point");
    demo::Point p;
    p.x = plexus::decode<double>(r);
    p.y = plexus::decode<double>(r);
    return p;
  }
};

namespace plexus {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using namespace std::string_literals;

template <class T>
T round_trip(const T& v) {
  return decode<T>(encode_to_string(v));
}

template <class T, class U>
void expect_error(const U& value, const std::string& message) {
  EXPECT_THAT([&] { decode<T>(encode_to_string(value)); },
              ThrowsMessage<DecodeError>(::testing::StrEq(message)));
}

template <class T>
void expect_int_limits() {
  SCOPED_TRACE(type_name<T>());
  for (T v : {std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), T{0}, T{1}}) {
    EXPECT_EQ(round_trip(v), v);
  }
}

// Every strict prefix of an encoding is malformed, and random damage is either decoded or
// reported, never a crash (or another exception type).
template <class T>
void expect_robust(const T& value) {
  SCOPED_TRACE(type_name<T>());
  const std::string encoded = encode_to_string(value);
  ASSERT_EQ(decode<T>(encoded), value);
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    std::string_view prefix(encoded.data(), n);
    EXPECT_THROW(decode<T>(prefix), DecodeError) << "prefix of " << n << " bytes";
    Reader r(prefix);
    EXPECT_THROW(r.skip(), DecodeError) << "prefix of " << n << " bytes";
  }
  std::mt19937 rng(2024);
  for (int i = 0; i < 3000; ++i) {
    std::string bad = encoded;
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
    try {
      (void)decode<T>(bad);
    } catch (const DecodeError&) {
    }
    try {
      Reader r(bad);
      r.skip();
    } catch (const DecodeError&) {
    }
  }
}

TEST(CodecTest, BoolAndNull) {
  EXPECT_TRUE(round_trip(true));
  EXPECT_FALSE(round_trip(false));
  EXPECT_EQ(round_trip(nullptr), nullptr);
  EXPECT_EQ(encode_to_string(true), "\x02");
  EXPECT_EQ(encode_to_string(nullptr), "\x00"s);
}

TEST(CodecTest, IntegersOfEveryWidth) {
  expect_int_limits<std::int8_t>();
  expect_int_limits<std::int16_t>();
  expect_int_limits<std::int32_t>();
  expect_int_limits<std::int64_t>();
  expect_int_limits<std::uint8_t>();
  expect_int_limits<std::uint16_t>();
  expect_int_limits<std::uint32_t>();
  expect_int_limits<std::uint64_t>();
  expect_int_limits<char>();
  EXPECT_EQ(round_trip(std::int64_t{-1}), -1);
}

TEST(CodecTest, IntegerWireFormatIsPinned) {
  // Zigzag varints: a change here changes every task key.
  EXPECT_EQ(encode_to_string(std::int64_t{0}), "\x03\x00"s);
  EXPECT_EQ(encode_to_string(std::int64_t{-1}), "\x03\x01");
  EXPECT_EQ(encode_to_string(std::int64_t{1}), "\x03\x02");
  EXPECT_EQ(encode_to_string(std::int64_t{64}), "\x03\x80\x01");
  EXPECT_EQ(encode_to_string(std::vector<std::int64_t>{10}), "\x08\x01\x03\x14");
  EXPECT_EQ(encode_to_string(std::numeric_limits<std::uint64_t>::max()),
            "\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
  EXPECT_EQ(encode_to_string(1.0), "\x05\x00\x00\x00\x00\x00\x00\xf0\x3f"s);
  EXPECT_EQ(encode_to_string("ab"s), (std::string{'\x06', '\x02', 'a', 'b'}));
}

TEST(CodecTest, SameValueSameBytesWhateverTheType) {
  EXPECT_EQ(encode_to_string(std::uint64_t{5}), encode_to_string(std::int8_t{5}));
  EXPECT_EQ(encode_to_string(std::uint32_t{7}), encode_to_string(std::int64_t{7}));
  EXPECT_EQ(encode_to_string(std::vector<int>{1, 2}), encode_to_string(std::set<long>{1, 2}));
  EXPECT_EQ(encode_to_string(std::make_pair(1, "a"s)), encode_to_string(std::make_tuple(1, "a"s)));
}

TEST(CodecTest, IntegersWiden) {
  EXPECT_EQ(decode<std::int64_t>(encode_to_string(std::int32_t{-7})), -7);
  EXPECT_EQ(decode<std::uint64_t>(encode_to_string(std::uint8_t{200})), 200u);
  EXPECT_EQ(decode<std::int16_t>(encode_to_string(std::uint64_t{300})), 300);
}

TEST(CodecTest, IntegersOutOfRange) {
  expect_error<std::int8_t>(std::int64_t{300}, "expected int8, received 300 (out of range)");
  expect_error<std::int8_t>(std::int64_t{-129}, "expected int8, received -129 (out of range)");
  expect_error<std::int32_t>(std::int64_t{1} << 40,
                             "expected int32, received 1099511627776 (out of range)");
  expect_error<std::uint8_t>(std::int64_t{256}, "expected uint8, received 256 (out of range)");
  expect_error<std::uint32_t>(std::int64_t{-1}, "expected uint32, received negative integer -1");
  expect_error<std::uint32_t>(std::numeric_limits<std::uint64_t>::max(),
                              "expected uint32, received 18446744073709551615 (out of range)");
  expect_error<std::int64_t>(std::numeric_limits<std::uint64_t>::max(),
                             "expected int64, received integer out of range");
  expect_error<std::int32_t>("x"s, "expected int32, received string");
  expect_error<std::uint16_t>(1.5, "expected uint16, received float");
}

TEST(CodecTest, Floats) {
  for (double v : {0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, std::numeric_limits<double>::max(),
                   std::numeric_limits<double>::infinity()}) {
    double back = round_trip(v);
    EXPECT_EQ(back, v);
    EXPECT_EQ(std::signbit(back), std::signbit(v));
  }
  EXPECT_TRUE(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_EQ(round_trip(1.25f), 1.25f);
  EXPECT_EQ(type_name<float>(), "float32");
  EXPECT_EQ(type_name<double>(), "float64");
}

TEST(CodecTest, FloatFromInteger) {
  EXPECT_EQ(decode<double>(encode_to_string(3)), 3.0);
  EXPECT_EQ(decode<double>(encode_to_string(std::int64_t{-4})), -4.0);
  EXPECT_EQ(decode<double>(encode_to_string(std::numeric_limits<std::uint64_t>::max())),
            18446744073709551615.0);
  EXPECT_EQ(decode<float>(encode_to_string(2)), 2.0f);
  expect_error<double>("1"s, "expected float64, received string");
  expect_error<float>(true, "expected float32, received bool");
}

TEST(CodecTest, Strings) {
  EXPECT_EQ(round_trip(""s), "");
  EXPECT_EQ(round_trip("hello"s), "hello");
  EXPECT_EQ(round_trip("a\0b"s), "a\0b"s);
  EXPECT_EQ(round_trip(std::string(100000, 'x')), std::string(100000, 'x'));
  expect_error<std::string>(5, "expected string, received integer");
}

TEST(CodecTest, StringViewPointsIntoTheBuffer) {
  std::string encoded = encode_to_string(std::string_view("view"));
  EXPECT_EQ(encoded, encode_to_string("view"s));
  std::string_view v = decode<std::string_view>(encoded);
  EXPECT_EQ(v, "view");
  EXPECT_EQ(v.data(), encoded.data() + 2);
}

TEST(CodecTest, BytesViewPointsIntoTheBuffer) {
  Bytes b{std::byte{7}, std::byte{0}, std::byte{255}};
  std::string encoded = encode_to_string(b);
  BytesView v = decode<BytesView>(encoded);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(static_cast<const void*>(v.data()), encoded.data() + 2);
  EXPECT_EQ(v[2], std::byte{255});
  EXPECT_EQ(encode_to_string(v), encoded);  // encodes as bytes, like the vector it views
  auto u = decode<std::span<const std::uint8_t>>(encoded);
  EXPECT_EQ(u[0], 7);
  EXPECT_TRUE(decode<BytesView>(encode_to_string(Bytes{})).empty());
  EXPECT_EQ(type_name<BytesView>(), "bytes");
  expect_error<BytesView>("s"s, "expected bytes, received string");
}

// A RefSource over a fixed table of encoded values.
struct RefTable {
  std::map<std::string, std::string, std::less<>> values;
  RefSource source() {
    return {this, [](void* c, std::string_view key, std::string_view* out) {
              auto& t = static_cast<RefTable*>(c)->values;
              auto it = t.find(key);
              if (it == t.end()) return false;
              *out = it->second;
              return true;
            }};
  }
};

TEST(CodecTest, ReaderFollowsReferencesInPlace) {
  RefTable table;
  table.values["big"] = encode_to_string(Bytes(1000, std::byte{9}));
  table.values["xs"] = encode_to_string(std::vector<std::int64_t>{2, 3});
  Writer w;
  w.list(4);
  encode(w, std::int64_t{1});
  w.ref("big");
  w.ref("xs");
  encode(w, std::string("tail"));
  const std::string args = w.take();
  const RefSource refs = table.source();
  Reader r(args, &refs);
  ASSERT_EQ(r.read_list(), 4u);
  EXPECT_EQ(r.read_int(), 1);
  BytesView big = decode<BytesView>(r);
  ASSERT_EQ(big.size(), 1000u);
  EXPECT_EQ(static_cast<const void*>(big.data()), table.values["big"].data() + 3);  // in place
  EXPECT_EQ(decode<std::vector<std::int64_t>>(r), (std::vector<std::int64_t>{2, 3}));
  EXPECT_FALSE(r.at_end());
  EXPECT_EQ(r.read_string(), "tail");
  EXPECT_TRUE(r.at_end());

  // A reference inside a list, skipped, and as the last item.
  Writer w2;
  w2.list(2);
  w2.ref("xs");
  w2.ref("xs");
  const std::string two = w2.take();
  Reader s(two, &refs);
  ASSERT_EQ(s.read_list(), 2u);
  s.skip();
  EXPECT_FALSE(s.at_end());
  EXPECT_EQ(decode<std::vector<std::int64_t>>(s).size(), 2u);
  EXPECT_TRUE(s.at_end());
}

TEST(CodecTest, ReaderReportsUnknownAndCyclicReferences) {
  RefTable table;
  Writer self;
  self.ref("loop");
  table.values["loop"] = self.take();  // a value that is a reference to itself
  const RefSource refs = table.source();
  Writer w;
  w.ref("nope");
  std::string unknown = w.take();
  Reader r(unknown, &refs);
  try {
    r.read_int();
    FAIL() << "an unknown reference was read";
  } catch (const DecodeError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown future 'nope'"));
  }
  Writer l;
  l.ref("loop");
  std::string cyclic = l.take();
  Reader c(cyclic, &refs);
  EXPECT_THROW(c.read_int(), DecodeError);
  // Without a RefSource a reference is just a value of its own kind.
  EXPECT_THAT([&] { decode<std::int64_t>(unknown); },
              ThrowsMessage<DecodeError>(HasSubstr("received future")));
  Reader plain(unknown);
  EXPECT_EQ(plain.read_ref(), "nope");
}

TEST(CodecTest, CStringsAndLiterals) {
  const char* c = "cstr";
  EXPECT_EQ(encode_to_string(c), encode_to_string("cstr"s));
  Writer w;
  encode(w, "literal");
  EXPECT_EQ(w.buffer(), encode_to_string("literal"s));
  char buffer[16] = "short";
  EXPECT_EQ(encode_to_string(buffer), encode_to_string("short"s));
  EXPECT_EQ(type_name<char[8]>(), "string");
}

TEST(CodecTest, BytesOfBothKinds) {
  Bytes b{std::byte{0}, std::byte{1}, std::byte{255}};
  std::vector<std::uint8_t> u{0, 1, 255};
  EXPECT_EQ(round_trip(b), b);
  EXPECT_EQ(round_trip(u), u);
  EXPECT_EQ(encode_to_string(b), encode_to_string(u));
  EXPECT_EQ(encode_to_string(b), "\x07\x03\x00\x01\xff"s);
  EXPECT_EQ(decode<Bytes>(encode_to_string(u)), b);
  EXPECT_EQ(round_trip(Bytes{}), Bytes{});
  EXPECT_EQ(type_name<Bytes>(), "bytes");
  EXPECT_EQ(type_name<std::vector<std::uint8_t>>(), "bytes");
  expect_error<Bytes>("s"s, "expected bytes, received string");
  expect_error<std::string>(b, "expected string, received bytes");
}

TEST(CodecTest, Containers) {
  EXPECT_EQ(round_trip(std::vector<int>{}), std::vector<int>{});
  EXPECT_EQ(round_trip(std::vector<int>{1, -2, 3}), (std::vector<int>{1, -2, 3}));
  EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "c"}),
            (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(round_trip(std::vector<bool>{true, false, true}),
            (std::vector<bool>{true, false, true}));
  EXPECT_EQ(round_trip(std::set<int>{3, 1, 2}), (std::set<int>{1, 2, 3}));
  EXPECT_EQ(round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}}),
            (std::map<std::string, int>{{"a", 1}, {"b", 2}}));
  std::unordered_map<int, std::string> um{{1, "one"}, {2, "two"}, {3, "three"}};
  EXPECT_EQ(round_trip(um), um);
  // A map can be read as another kind of map.
  EXPECT_EQ((decode<std::map<int, std::string>>(encode_to_string(um))),
            (std::map<int, std::string>{{1, "one"}, {2, "two"}, {3, "three"}}));
}

TEST(CodecTest, OptionalTuplePairEnum) {
  EXPECT_EQ(round_trip(std::optional<int>{}), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<int>{4}), 4);
  EXPECT_EQ(encode_to_string(std::optional<int>{}), encode_to_string(nullptr));
  EXPECT_EQ(decode<std::optional<int>>(encode_to_string(9)), 9);
  auto t = std::make_tuple(1, "two"s, 3.5, false);
  EXPECT_EQ(round_trip(t), t);
  EXPECT_EQ(round_trip(std::tuple<>{}), std::tuple<>{});
  EXPECT_EQ(round_trip(std::make_pair("k"s, 2u)), std::make_pair("k"s, 2u));
  EXPECT_EQ(round_trip(demo::Color::blue), demo::Color::blue);
  EXPECT_EQ(round_trip(demo::legacy_a), demo::legacy_a);
  EXPECT_EQ(encode_to_string(demo::Color::green), encode_to_string(2));
  expect_error<demo::Color>(300, "expected uint8, received 300 (out of range)");
}

TEST(CodecTest, Nested) {
  using Nested = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string>>>>;
  Nested v{{"a", {std::make_tuple(1, "x"s), std::nullopt}}, {"b", {}}};
  EXPECT_EQ(round_trip(v), v);
  std::vector<std::vector<std::vector<int>>> deep{{{1}, {}}, {{2, 3}}};
  EXPECT_EQ(round_trip(deep), deep);
}

TEST(CodecTest, UserTypeThroughCodecSpecialization) {
  demo::Point p{1.5, -2};
  EXPECT_EQ(round_trip(p), p);
  std::vector<demo::Point> ps{{1, 2}, {3, 4}};
  EXPECT_EQ(round_trip(ps), ps);
  EXPECT_EQ(type_name<std::vector<demo::Point>>(), "list<Point>");
  // Integers are accepted for the coordinates, as for any double.
  EXPECT_EQ(decode<demo::Point>(encode_to_string(std::make_pair(1, 2))), (demo::Point{1, 2}));
  expect_error<demo::Point>(std::vector<int>{1, 2, 3},
                            "expected Point (a list of 2), received a list of 3");
  expect_error<std::vector<demo::Point>>(std::vector<std::vector<int>>{{1, 2}, {1}},
                                         "[1]: expected Point (a list of 2), received a list of 1");
}

TEST(CodecTest, TypeNames) {
  EXPECT_EQ(type_name<bool>(), "bool");
  EXPECT_EQ(type_name<std::int8_t>(), "int8");
  EXPECT_EQ(type_name<std::uint16_t>(), "uint16");
  EXPECT_EQ(type_name<std::int32_t>(), "int32");
  EXPECT_EQ(type_name<std::uint64_t>(), "uint64");
  EXPECT_EQ(type_name<std::string>(), "string");
  EXPECT_EQ(type_name<std::string_view>(), "string");
  EXPECT_EQ(type_name<std::vector<double>>(), "list<float64>");
  EXPECT_EQ(type_name<std::set<std::int16_t>>(), "set<int16>");
  EXPECT_EQ((type_name<std::map<std::string, std::int32_t>>()), "map<string, int32>");
  EXPECT_EQ((type_name<std::unordered_map<std::int64_t, bool>>()), "map<int64, bool>");
  EXPECT_EQ(type_name<std::optional<std::string>>(), "optional<string>");
  EXPECT_EQ((type_name<std::tuple<std::int64_t, std::string>>()), "tuple<int64, string>");
  EXPECT_EQ(type_name<std::tuple<>>(), "tuple<>");
  EXPECT_EQ((type_name<std::pair<std::int32_t, bool>>()), "pair<int32, bool>");
  EXPECT_EQ(type_name<demo::Color>(), "uint8");
  EXPECT_EQ(type_name<std::nullptr_t>(), "null");
}

TEST(CodecTest, ErrorsNameTheElement) {
  Writer w;
  w.list(3);
  w.integer(1);
  w.integer(2);
  w.string("x");
  EXPECT_THAT([&] { decode<std::vector<std::int32_t>>(w.view()); },
              ThrowsMessage<DecodeError>(::testing::StrEq("[2]: expected int32, received string")));
  expect_error<std::vector<std::vector<int>>>(std::vector<std::vector<std::string>>{{}, {"a"}},
                                              "[1]: [0]: expected int32, received string");
  expect_error<std::set<int>>(std::vector<std::string>{"a"},
                              "[0]: expected int32, received string");
  expect_error<std::map<std::string, int>>(std::map<int, int>{{1, 1}},
                                           "key 0: expected string, received integer");
  expect_error<std::map<std::string, int>>(std::map<std::string, std::string>{{"a", "b"}},
                                           "value 0: expected int32, received string");
  expect_error<std::tuple<int, std::string>>(std::make_tuple(1, 2),
                                             "[1]: expected string, received integer");
  expect_error<std::pair<int, int>>(
      std::make_tuple(1, 2, 3), "expected pair<int32, int32> (a list of 2), received a list of 3");
  expect_error<std::vector<int>>(std::map<int, int>{}, "expected list<int32>, received map");
  expect_error<std::map<int, int>>(std::vector<int>{}, "expected map<int32, int32>, received list");
  expect_error<std::optional<int>>("s"s, "expected int32, received string");
  expect_error<std::vector<int>>(Bytes{}, "expected list<int32>, received bytes");
}

TEST(CodecTest, MalformedInput) {
  EXPECT_THAT([] { decode<int>(std::string_view()); },
              ThrowsMessage<DecodeError>(HasSubstr("truncated")));
  EXPECT_THAT([] { decode<int>("\x0b"s); },
              ThrowsMessage<DecodeError>(::testing::StrEq("invalid value tag 11")));
  EXPECT_THAT([] { decode<int>("\x03\x02\x00"s); },
              ThrowsMessage<DecodeError>(::testing::StrEq("trailing bytes after the value")));
  EXPECT_THAT([] { decode<std::int64_t>("\x03" + std::string(10, '\xff') + "\x01"); },
              ThrowsMessage<DecodeError>(::testing::StrEq("malformed varint")));
  EXPECT_THAT([] { decode<std::vector<int>>("\x08\xe8\x07\x03\x02"s); },
              ThrowsMessage<DecodeError>(HasSubstr("count exceeds the bytes left")));
  EXPECT_THAT(
      [] {
        decode<std::string>(std::string{'\x06', '\x05', 'a', 'b'});
      },
      ThrowsMessage<DecodeError>(HasSubstr("truncated")));
  // A huge count never allocates before it is checked.
  EXPECT_THROW(decode<std::vector<int>>("\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f"s), DecodeError);
  EXPECT_THROW(decode<std::string>("\x06\xff\xff\xff\xff\xff\xff\xff\xff\x7f"s), DecodeError);
}

TEST(CodecTest, TruncatedOrDamagedInputNeverCrashes) {
  expect_robust(std::int64_t{-123456789});
  expect_robust(std::numeric_limits<std::uint64_t>::max());
  expect_robust(3.25);
  expect_robust("hello world"s);
  expect_robust(Bytes{std::byte{1}, std::byte{2}, std::byte{3}});
  expect_robust(std::vector<std::int32_t>{1, 2, 3, 1000000});
  expect_robust(std::map<std::string, std::vector<double>>{{"a", {1.5, 2}}, {"bb", {}}});
  expect_robust(std::make_tuple(std::optional<std::string>("x"), std::set<std::int8_t>{-1, 1},
                                std::make_pair(true, 2.5), demo::Point{1, 2}));
  using Nested = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string>>>>;
  expect_robust(Nested{{"a", {std::make_tuple(1, "x"s), std::nullopt}}, {"b", {}}});
}

TEST(CodecTest, ReaderSkip) {
  Writer w;
  encode(w, std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}});
  encode(w, 2.5);
  encode(w, Bytes{std::byte{9}});
  w.ref("k-1");
  encode(w, "last"s);
  Reader r(w.view());
  for (int i = 0; i < 4; ++i) r.skip();
  EXPECT_EQ(decode<std::string>(r), "last");
  EXPECT_TRUE(r.at_end());
  EXPECT_THROW(r.skip(), DecodeError);

  Writer deep;
  for (int i = 0; i < 70; ++i) deep.list(1);
  deep.null();
  Reader dr(deep.view());
  EXPECT_THAT([&] { dr.skip(); },
              ThrowsMessage<DecodeError>(HasSubstr("nested deeper than 64 levels")));
  Writer ok;
  for (int i = 0; i < 64; ++i) ok.list(1);
  ok.null();
  Reader okr(ok.view());
  EXPECT_NO_THROW(okr.skip());
  EXPECT_TRUE(okr.at_end());
}

TEST(CodecTest, WriterRecordsRefs) {
  Writer w;
  w.list(3);
  w.ref("a-1");
  w.integer(5);
  w.ref("b-2");
  EXPECT_EQ(w.refs(), (std::vector<std::string>{"a-1", "b-2"}));
  Reader r(w.view());
  EXPECT_EQ(r.read_list(), 3u);
  EXPECT_EQ(r.read_ref(), "a-1");
  EXPECT_EQ(r.peek(), Tag::integer);
  EXPECT_STREQ(tag_name(Tag::ref), "future");
  r.skip();
  EXPECT_EQ(r.read_ref(), "b-2");
  // A future where a value is expected is a type error like any other.
  expect_error<int>(nullptr, "expected int32, received null");
  EXPECT_THAT([] { decode<int>("\x0a\x01k"s); },
              ThrowsMessage<DecodeError>(::testing::StrEq("expected int32, received future")));
}

}  // namespace
}  // namespace plexus
