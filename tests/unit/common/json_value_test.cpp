#include <plexus/common/json_value.hpp>

#include <plexus/codec.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace plexus {
namespace {

using ::testing::HasSubstr;
using namespace std::string_literals;

// Parses, renders, and checks that the rendering is the (compact) input again.
void expect_round_trip(const std::string& json) {
  SCOPED_TRACE(json);
  EXPECT_EQ(value_to_json(json_to_value(json)), json);
}

Tag tag_of(const std::string& encoded) { return Reader(encoded).peek(); }

std::string nested_arrays(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

std::string nested_lists_value(int depth) {
  Writer w;
  for (int i = 0; i < depth; ++i) w.list(i + 1 < depth ? 1 : 0);
  return w.take();
}

void expect_decode_error(const std::string& json, const std::string& fragment) {
  SCOPED_TRACE(json);
  try {
    json_to_value(json);
    ADD_FAILURE() << "no error";
  } catch (const DecodeError& e) {
    EXPECT_THAT(e.what(), HasSubstr(fragment));
  }
}

TEST(JsonValueTest, ScalarsRoundTrip) {
  for (const char* json : {"null", "true", "false", "0", "-1", "42", "\"\"", "\"text\""}) {
    expect_round_trip(json);
  }
  EXPECT_EQ(tag_of(json_to_value("null")), Tag::null);
  EXPECT_EQ(decode<bool>(json_to_value("true")), true);
  EXPECT_EQ(decode<std::string>(json_to_value("\"text\"")), "text");
}

TEST(JsonValueTest, IntegersAndFloatsStayApart) {
  EXPECT_EQ(tag_of(json_to_value("2")), Tag::integer);
  EXPECT_EQ(tag_of(json_to_value("-2")), Tag::integer);
  EXPECT_EQ(tag_of(json_to_value("2.0")), Tag::float64);
  EXPECT_EQ(tag_of(json_to_value("2e0")), Tag::float64);
  EXPECT_EQ(tag_of(json_to_value("-0")), Tag::integer);
  EXPECT_EQ(value_to_json(encode_to_string(2.0)), "2.0");
  EXPECT_EQ(value_to_json(encode_to_string(-0.0)), "-0.0");
  EXPECT_EQ(value_to_json(encode_to_string(std::int64_t{2})), "2");
  expect_round_trip("2.0");
  expect_round_trip("0.1");
  expect_round_trip("-1.5");
  expect_round_trip("1e+300");
  expect_round_trip("5e-324");
  EXPECT_EQ(decode<std::int64_t>(json_to_value("7")), 7);
  EXPECT_EQ(decode<double>(json_to_value("0.25")), 0.25);
}

TEST(JsonValueTest, IntegerLimits) {
  expect_round_trip("9223372036854775807");
  expect_round_trip("-9223372036854775808");
  expect_round_trip("18446744073709551615");
  EXPECT_EQ(tag_of(json_to_value("9223372036854775807")), Tag::integer);
  EXPECT_EQ(tag_of(json_to_value("9223372036854775808")), Tag::uinteger);
  EXPECT_EQ(decode<std::uint64_t>(json_to_value("18446744073709551615")),
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(decode<std::int64_t>(json_to_value("-9223372036854775808")),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(value_to_json(encode_to_string(std::numeric_limits<std::uint64_t>::max())),
            "18446744073709551615");
}

TEST(JsonValueTest, IntegerLiteralsOutOfRangeAreErrorsNotFloats) {
  expect_decode_error("18446744073709551616", "integer 18446744073709551616 is out of range");
  expect_decode_error("-9223372036854775809", "is out of range");
  expect_decode_error("1e999", "invalid JSON at byte");
}

TEST(JsonValueTest, FloatsRoundTripBitForBit) {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 2000; ++i) {
    std::uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (!std::isfinite(v)) continue;
    std::string encoded = encode_to_string(v);
    std::string json = value_to_json(encoded);
    ASSERT_EQ(json_to_value(json), encoded) << json;
  }
}

TEST(JsonValueTest, NonFiniteFloatsBecomeStrings) {
  EXPECT_EQ(value_to_json(encode_to_string(std::numeric_limits<double>::quiet_NaN())), "\"nan\"");
  EXPECT_EQ(value_to_json(encode_to_string(std::numeric_limits<double>::infinity())), "\"inf\"");
  EXPECT_EQ(value_to_json(encode_to_string(-std::numeric_limits<double>::infinity())), "\"-inf\"");
}

TEST(JsonValueTest, StringsWithEscapesAndUnicode) {
  expect_round_trip(R"("quote \" backslash \\ newline \n tab \t")");
  expect_round_trip("\"h\xc3\xa9llo \xe2\x82\xac\"");
  EXPECT_EQ(decode<std::string>(json_to_value(R"("\u00e9\u0000x")")),
            std::string("\xc3\xa9\0x", 4));
  EXPECT_EQ(value_to_json(encode_to_string(std::string("a\0b", 3))), R"("a\u0000b")");
}

TEST(JsonValueTest, InvalidUtf8IsReplacedWhenRendering) {
  EXPECT_EQ(value_to_json(encode_to_string(std::string("a\xff"))), "\"a\xef\xbf\xbd\"");
}

TEST(JsonValueTest, ListsAndNesting) {
  expect_round_trip("[]");
  expect_round_trip("[1,2,3]");
  expect_round_trip(R"([1,[2.5,[true,[null,[]]]],{"a":"b"},"s"])");
  EXPECT_EQ(decode<std::vector<std::int32_t>>(json_to_value("[1, 2, 3]")),
            (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_EQ(value_to_json(encode_to_string(std::vector<std::vector<int>>{{1}, {}, {2, 3}})),
            "[[1],[],[2,3]]");
}

TEST(JsonValueTest, ObjectsKeepKeyOrder) {
  expect_round_trip("{}");
  expect_round_trip(R"({"z":1,"a":2,"m":{"y":[],"b":null}})");
  std::string encoded = json_to_value(R"({"z": 1, "a": 2, "m": 3})");
  Reader r(encoded);
  ASSERT_EQ(r.read_map(), 3u);
  std::vector<std::string> keys;
  for (int i = 0; i < 3; ++i) {
    keys.emplace_back(r.read_string());
    r.skip();
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"z", "a", "m"}));
  EXPECT_EQ((decode<std::map<std::string, int>>(json_to_value(R"({"b":2,"a":1})"))),
            (std::map<std::string, int>{{"a", 1}, {"b", 2}}));
}

TEST(JsonValueTest, DuplicateObjectKeysAreRejected) {
  expect_decode_error(R"({"a":1,"b":2,"a":3})", "duplicate key \"a\"");
  // The same key in different objects is fine.
  expect_round_trip(R"([{"a":1},{"a":2}])");
}

TEST(JsonValueTest, Bytes) {
  std::string encoded = json_to_value(R"({"$bytes":"AAEC/w=="})");
  EXPECT_EQ(tag_of(encoded), Tag::bytes);
  EXPECT_EQ(decode<std::vector<std::uint8_t>>(encoded),
            (std::vector<std::uint8_t>{0x00, 0x01, 0x02, 0xff}));
  expect_round_trip(R"({"$bytes":"AAEC/w=="})");
  expect_round_trip(R"({"$bytes":""})");
  // RFC 4648 test vectors.
  const std::vector<std::pair<std::string, std::string>> vectors = {{"", ""},
                                                                    {"f", "Zg=="},
                                                                    {"fo", "Zm8="},
                                                                    {"foo", "Zm9v"},
                                                                    {"foob", "Zm9vYg=="},
                                                                    {"fooba", "Zm9vYmE="},
                                                                    {"foobar", "Zm9vYmFy"}};
  for (const auto& [raw, b64] : vectors) {
    Writer w;
    w.bytes(raw.data(), raw.size());
    EXPECT_EQ(value_to_json(w.view()), R"({"$bytes":")" + b64 + R"("})");
    EXPECT_EQ(json_to_value(R"({"$bytes":")" + b64 + R"("})"), w.buffer());
  }
}

TEST(JsonValueTest, AllByteValuesRoundTrip) {
  for (std::size_t n = 0; n < 300; n += 7) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 37 + n) & 0xff);
    std::string encoded = encode_to_string(b);
    EXPECT_EQ(json_to_value(value_to_json(encoded)), encoded);
  }
}

TEST(JsonValueTest, BadBase64IsRejected) {
  expect_decode_error(R"({"$bytes":"Zg="})", "length 3 is not a multiple of 4");
  expect_decode_error(R"({"$bytes":"Zm9v Zg=="})", "not a multiple of 4");
  expect_decode_error(R"({"$bytes":"Zm9!"})", "unexpected character '!' at offset 3");
  expect_decode_error(R"({"$bytes":"Zg=a"})", "unexpected character '=' at offset 2");
  expect_decode_error(R"({"$bytes":"Zg==Zm9v"})", "unexpected character '=' at offset 2");
  expect_decode_error(R"({"$bytes":"===="})", "unexpected character '='");
  expect_decode_error(R"({"$bytes":"Zh=="})", "non-zero padding bits");
  expect_decode_error(R"({"$bytes":"Zm9="})", "non-zero padding bits");
  expect_decode_error(R"({"$bytes":5})", "must hold a string, not number");
}

TEST(JsonValueTest, Futures) {
  std::string encoded = json_to_value(R"({"$future":"math.inc-0123"})");
  EXPECT_EQ(tag_of(encoded), Tag::ref);
  Reader r(encoded);
  EXPECT_EQ(r.read_ref(), "math.inc-0123");
  expect_round_trip(R"({"$future":"math.inc-0123"})");
  expect_round_trip(R"([1,{"$future":"a-1"},{"x":{"$future":"b-2"}}])");
  Writer w;
  w.list(2);
  w.ref("k-1");
  w.integer(3);
  EXPECT_EQ(value_to_json(w.view()), R"([{"$future":"k-1"},3])");
  expect_decode_error(R"({"$future":""})", "non-empty task key");
  expect_decode_error(R"({"$future":null})", "must hold a string, not null");
}

TEST(JsonValueTest, SpecialKeysAmongOthersMakeAnOrdinaryMap) {
  std::string encoded = json_to_value(R"({"$bytes":"Zg==","x":1})");
  EXPECT_EQ(tag_of(encoded), Tag::map);
  expect_round_trip(R"({"$bytes":"Zg==","x":1})");
}

TEST(JsonValueTest, MapsThatCannotBeObjectsBecomePairs) {
  EXPECT_EQ(value_to_json(encode_to_string(std::map<int, std::string>{{1, "a"}, {2, "b"}})),
            R"([[1,"a"],[2,"b"]])");
  // Mixed keys.
  Writer mixed;
  mixed.map(2);
  mixed.string("a");
  mixed.integer(1);
  mixed.float64(1.5);
  mixed.null();
  EXPECT_EQ(value_to_json(mixed.view()), R"([["a",1],[1.5,null]])");
  // Duplicate string keys, which an object could not hold.
  Writer dup;
  dup.map(2);
  dup.string("k");
  dup.integer(1);
  dup.string("k");
  dup.integer(2);
  EXPECT_EQ(value_to_json(dup.view()), R"([["k",1],["k",2]])");
  // A one-key map that would read back as bytes or a future.
  EXPECT_EQ(value_to_json(encode_to_string(std::map<std::string, std::string>{{"$bytes", "x"}})),
            R"([["$bytes","x"]])");
  EXPECT_EQ(value_to_json(encode_to_string(std::map<std::string, int>{{"$future", 1}})),
            R"([["$future",1]])");
  // Non-string keys that render as JSON strings or objects still force pairs.
  Writer keys;
  keys.map(1);
  keys.float64(std::numeric_limits<double>::quiet_NaN());
  keys.bytes("\x01", 1);
  EXPECT_EQ(value_to_json(keys.view()), R"([["nan",{"$bytes":"AQ=="}]])");
}

TEST(JsonValueTest, BadJsonNamesTheBytePosition) {
  try {
    json_to_value("[1, 2,, 3]");
    FAIL() << "no error";
  } catch (const DecodeError& e) {
    EXPECT_THAT(e.what(), HasSubstr("invalid JSON at byte 7: "));
    EXPECT_THAT(e.what(), HasSubstr("syntax error"));
    EXPECT_THAT(e.what(), ::testing::Not(HasSubstr("[json.exception")));
  }
  // Positions count from 1, and the end of the input is one past the last byte.
  expect_decode_error("", "invalid JSON at byte 1");
  expect_decode_error("{\"a\" 1}", "invalid JSON at byte 6");
  expect_decode_error("1 2", "invalid JSON at byte 3");
  expect_decode_error("[1, 2", "invalid JSON at byte 6");
  expect_decode_error("tru", "invalid JSON at byte");
  expect_decode_error("\"\xff\"", "invalid JSON at byte 2");
}

TEST(JsonValueTest, DepthLimit) {
  EXPECT_NO_THROW(json_to_value(nested_arrays(64)));
  expect_decode_error(nested_arrays(65), "JSON nested deeper than 64 levels");
  std::string objects;
  for (int i = 0; i < 65; ++i) objects += "{\"a\":";
  objects += "1" + std::string(65, '}');
  expect_decode_error(objects, "deeper than 64");
  // A hostile input is rejected early rather than parsed.
  expect_decode_error(std::string(1000000, '['), "deeper than 64");

  EXPECT_EQ(value_to_json(nested_lists_value(64)), nested_arrays(64));
  EXPECT_THROW(value_to_json(nested_lists_value(65)), DecodeError);
}

TEST(JsonValueTest, MalformedValuesAreDecodeErrors) {
  std::string encoded = json_to_value(R"({"a":[1,2.5,"x",{"$bytes":"AQ=="}],"b":null})");
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    EXPECT_THROW(value_to_json(encoded.substr(0, n)), DecodeError) << n;
  }
  EXPECT_THAT([&] { value_to_json(encoded + "x"); },
              ::testing::ThrowsMessage<DecodeError>(HasSubstr("trailing bytes")));
  EXPECT_THAT([] { value_to_json("\x0b"); },
              ::testing::ThrowsMessage<DecodeError>(HasSubstr("invalid value tag 11")));
  std::mt19937 rng(7);
  for (int i = 0; i < 5000; ++i) {
    std::string bad = encoded;
    bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
    try {
      value_to_json(bad);
    } catch (const DecodeError&) {
    }
  }
}

TEST(JsonValueTest, ArgumentLists) {
  const std::string args[] = {"1", "\"two\"", "[3.5]"};
  std::string encoded = json_args_to_value(args, 3);
  auto [a, b, c] = decode<std::tuple<std::int64_t, std::string, std::vector<double>>>(encoded);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, "two");
  EXPECT_EQ(c, std::vector<double>{3.5});
  EXPECT_EQ(json_args_to_value(nullptr, 0), "\x08\x00"s);

  const std::string bad[] = {"1", "[1,"};
  EXPECT_THAT([&] { json_args_to_value(bad, 2); },
              ::testing::ThrowsMessage<DecodeError>(HasSubstr("argument 2: invalid JSON at byte")));
}

}  // namespace
}  // namespace plexus
