#include <plexus/sdk.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace demo {

struct Weird {
  int v = 0;
};

struct MyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace demo

// A user codec that throws something that is not a std::exception.
template <>
struct plexus::codec<demo::Weird> {
  static std::string type_name() { return "Weird"; }
  static void encode(plexus::Writer& w, const demo::Weird& x) { w.integer(x.v); }
  static demo::Weird decode(plexus::Reader& r) {
    std::int64_t v = r.read_int("Weird");
    if (v < 0) throw 42;
    return demo::Weird{static_cast<int>(v)};
  }
};

namespace {

using ::testing::HasSubstr;
using namespace std::string_literals;

std::atomic<std::int64_t> g_side_effect{0};

std::int64_t square(std::int64_t x) { return x * x; }
std::string greet(const std::string& who) { return "hello " + who; }
void record(std::int64_t x) { g_side_effect = x; }
double weighted(const std::vector<double>& xs, const std::map<std::string, std::int32_t>& w) {
  double total = 0;
  for (double x : xs) total += x;
  return total * w.at("scale");
}
std::int32_t answer() noexcept { return 42; }
std::size_t length(std::string_view s) { return s.size(); }
std::int64_t fails(std::int64_t) { throw std::invalid_argument("bad input"); }
std::int64_t fails_custom(std::int64_t) { throw demo::MyError("custom failure"); }
std::int64_t throws_int(std::int64_t) { throw 7; }
std::string concat(const std::string& a, std::int64_t n) { return a + std::to_string(n); }
std::int64_t weird(demo::Weird w) { return w.v; }

// Encodes an argument list.
template <class... A>
std::string args(const A&... a) {
  plexus::Writer w;
  w.list(sizeof...(A));
  (plexus::encode(w, a), ...);
  return w.take();
}

// The host side of a call: records what the plugin reports.
struct Outcome {
  int status = -1;
  int result_calls = 0;
  int error_calls = 0;
  int error_status = -1;
  std::string result;
  std::string type;
  std::string message;
};

Outcome call(const plexus_task_entry& entry, const std::string& encoded) {
  Outcome o;
  plexus_output out{
      &o,
      [](void* host, const unsigned char* data, std::size_t size) {
        auto* h = static_cast<Outcome*>(host);
        ++h->result_calls;
        h->result.assign(reinterpret_cast<const char*>(data), size);
      },
      [](void* host, int status, const char* type, const char* message) {
        auto* h = static_cast<Outcome*>(host);
        ++h->error_calls;
        h->error_status = status;
        h->type = type;
        h->message = message;
      },
      nullptr,  // resolve: these calls pass no futures
  };
  o.status = entry.invoke(entry.context, reinterpret_cast<const unsigned char*>(encoded.data()),
                          encoded.size(), &out);
  EXPECT_EQ(o.result_calls + o.error_calls, 1) << "exactly one callback per call";
  if (o.error_calls) {
    EXPECT_EQ(o.error_status, o.status);
  }
  return o;
}

void register_demo(plexus::Registry& r) {
  r.add("square", &square)
      .add("greet", &greet)
      .add("record", &record)
      .add("weighted", &weighted)
      .add("answer", &answer)
      .add("length", &length)
      .add("fails", &fails)
      .add("fails_custom", &fails_custom)
      .add("throws_int", &throws_int)
      .add("concat", &concat)
      .add("weird", &weird)
      .add("add", [](std::int32_t a, std::int32_t b) { return a + b; })
      .add("is_even", [](std::int64_t x) noexcept { return x % 2 == 0; });
  std::int64_t offset = 100;
  r.add("offset", [offset](std::int64_t x) { return x + offset; });
}

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : holder_("demo", "1.2.3", &register_demo) {}

  const plexus_manifest& manifest() const { return *holder_.manifest(); }
  const plexus_task_entry& entry(std::string_view name) const {
    for (std::size_t i = 0; i < manifest().task_count; ++i) {
      if (manifest().tasks[i].name == name) return manifest().tasks[i];
    }
    throw std::out_of_range("no task " + std::string(name));
  }

  plexus::detail::PluginHolder holder_;
};

TEST_F(RegistryTest, ManifestFields) {
  const plexus_manifest& m = manifest();
  EXPECT_EQ(m.abi_version, PLEXUS_SDK_ABI_VERSION);
  EXPECT_EQ(m.struct_size, sizeof(plexus_manifest));
  EXPECT_STREQ(m.plugin_name, "demo");
  EXPECT_STREQ(m.plugin_version, "1.2.3");
  EXPECT_STREQ(m.sdk_version, PLEXUS_SDK_VERSION);
  EXPECT_EQ(m.error, nullptr);
  ASSERT_EQ(m.task_count, 14u);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < m.task_count; ++i) names.emplace_back(m.tasks[i].name);
  EXPECT_EQ(names, (std::vector<std::string>{"square", "greet", "record", "weighted", "answer",
                                             "length", "fails", "fails_custom", "throws_int",
                                             "concat", "weird", "add", "is_even", "offset"}));
}

TEST_F(RegistryTest, Signatures) {
  EXPECT_STREQ(entry("square").signature, "int64(int64)");
  EXPECT_STREQ(entry("greet").signature, "string(string)");
  EXPECT_STREQ(entry("record").signature, "void(int64)");
  EXPECT_STREQ(entry("weighted").signature, "float64(list<float64>, map<string, int32>)");
  EXPECT_STREQ(entry("answer").signature, "int32()");
  EXPECT_STREQ(entry("length").signature, "uint64(string)");
  EXPECT_STREQ(entry("concat").signature, "string(string, int64)");
  EXPECT_STREQ(entry("weird").signature, "int64(Weird)");
  EXPECT_STREQ(entry("add").signature, "int32(int32, int32)");
  EXPECT_STREQ(entry("is_even").signature, "bool(int64)");
}

TEST_F(RegistryTest, CallsReturnEncodedResults) {
  Outcome o = call(entry("square"), args(std::int64_t{7}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::int64_t>(o.result), 49);

  o = call(entry("greet"), args("world"s));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::string>(o.result), "hello world");

  o = call(entry("weighted"),
           args(std::vector<double>{1, 2.5}, std::map<std::string, std::int32_t>{{"scale", 2}}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<double>(o.result), 7.0);

  o = call(entry("answer"), args());
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::int32_t>(o.result), 42);

  o = call(entry("length"), args("four"s));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::uint64_t>(o.result), 4u);

  // Arguments convert like any decode: an int32 argument accepts a small int64.
  o = call(entry("add"), args(std::int64_t{2}, std::int64_t{3}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::int32_t>(o.result), 5);

  o = call(entry("offset"), args(std::int64_t{1}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::int64_t>(o.result), 101);

  o = call(entry("is_even"), args(std::int64_t{4}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_TRUE(plexus::decode<bool>(o.result));
}

TEST_F(RegistryTest, VoidTaskReturnsNull) {
  Outcome o = call(entry("record"), args(std::int64_t{17}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(o.result, plexus::encode_to_string(nullptr));
  EXPECT_EQ(g_side_effect.load(), 17);
}

TEST_F(RegistryTest, ExceptionsBecomeTaskErrors) {
  Outcome o = call(entry("fails"), args(std::int64_t{1}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_EXCEPTION);
  EXPECT_EQ(o.type, "std::invalid_argument");
  EXPECT_EQ(o.message, "bad input");

  o = call(entry("fails_custom"), args(std::int64_t{1}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_EXCEPTION);
  EXPECT_EQ(o.type, "demo::MyError");
  EXPECT_EQ(o.message, "custom failure");

  o = call(entry("throws_int"), args(std::int64_t{1}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_EXCEPTION);
  EXPECT_EQ(o.type, "int");
  EXPECT_EQ(o.message, "a non-std::exception was thrown");
}

TEST_F(RegistryTest, BadArguments) {
  Outcome o = call(entry("square"), args(std::int64_t{1}, std::int64_t{2}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_EQ(o.type, "plexus::TypeMismatch");
  EXPECT_EQ(o.message, "task 'square' has signature int64(int64): expects 1 argument, received 2");

  o = call(entry("concat"), args("a"s));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_EQ(o.message,
            "task 'concat' has signature string(string, int64): expects 2 arguments, received 1");

  o = call(entry("square"), args("x"s));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_EQ(
      o.message,
      "task 'square' has signature int64(int64): argument 1: expected int64, received string");

  o = call(entry("concat"), args("a"s, "b"s));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_EQ(o.message,
            "task 'concat' has signature string(string, int64): argument 2: expected int64, "
            "received string");

  o = call(entry("weighted"), args(std::vector<std::string>{"a"}, std::map<std::string, int>{}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_THAT(o.message, HasSubstr("argument 1: [0]: expected float64, received string"));

  o = call(entry("add"), args(std::int64_t{1} << 40, std::int64_t{1}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_THAT(o.message, HasSubstr("argument 1: expected int32, received 1099511627776"));

  o = call(entry("square"), plexus::encode_to_string(std::int64_t{3}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_THAT(o.message, HasSubstr("int64(int64): expected an argument list, received integer"));

  o = call(entry("square"), args(std::int64_t{3}) + "\x00"s);
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_THAT(o.message, HasSubstr("trailing bytes after the arguments"));

  o = call(entry("square"), "");
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_THAT(o.message, HasSubstr("truncated"));
}

// Regression: a user codec throwing a non-std::exception while the arguments are decoded used
// to escape the trampoline, across the plugin boundary.
TEST_F(RegistryTest, NonStandardExceptionWhileDecodingArguments) {
  Outcome o = call(entry("weird"), args(std::int64_t{-1}));
  EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS);
  EXPECT_THAT(o.message, HasSubstr("task 'weird' has signature int64(Weird): "));
  EXPECT_THAT(o.message, HasSubstr("a non-std::exception (int) was thrown while decoding"));
  o = call(entry("weird"), args(std::int64_t{5}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::int64_t>(o.result), 5);
}

TEST_F(RegistryTest, TruncatedArgumentsNeverCrash) {
  const std::string full =
      args(std::vector<double>{1, 2.5}, std::map<std::string, std::int32_t>{{"scale", 2}});
  for (std::size_t n = 0; n < full.size(); ++n) {
    Outcome o = call(entry("weighted"), full.substr(0, n));
    EXPECT_EQ(o.status, PLEXUS_STATUS_BAD_ARGUMENTS) << n;
  }
}

TEST_F(RegistryTest, ConcurrentCalls) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::int64_t i = 0; i < 500; ++i) {
        std::int64_t x = t * 1000 + i;
        Outcome o = call(entry("square"), args(x));
        if (o.status != PLEXUS_STATUS_OK || plexus::decode<std::int64_t>(o.result) != x * x) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(RegistryNamesTest, InvalidNamesAreRejected) {
  plexus::Registry r;
  for (const char* bad : {"", "a.b", "a@b", "a b", "."}) {
    EXPECT_THAT([&] { r.add(bad, &square); },
                ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("invalid task name")))
        << '"' << bad << '"';
  }
  EXPECT_TRUE(r.tasks().empty());
}

TEST(RegistryNamesTest, DuplicateNamesAreRejected) {
  plexus::Registry r;
  r.add("square", &square);
  EXPECT_THAT([&] { r.add("square", &greet); },
              ::testing::ThrowsMessage<std::invalid_argument>(
                  ::testing::StrEq("task 'square' is registered twice")));
  EXPECT_EQ(r.tasks().size(), 1u);
}

TEST(PluginHolderTest, FailedRegistrationIsReportedInTheManifest) {
  plexus::detail::PluginHolder holder("bad", "0.0.1", [](plexus::Registry& r) {
    r.add("square", &square);
    r.add("square", &square);
  });
  const plexus_manifest* m = holder.manifest();
  EXPECT_EQ(m->abi_version, PLEXUS_SDK_ABI_VERSION);
  EXPECT_STREQ(m->plugin_name, "bad");
  ASSERT_NE(m->error, nullptr);
  EXPECT_STREQ(m->error, "registration of plugin 'bad' failed: task 'square' is registered twice");
  EXPECT_EQ(m->task_count, 0u);

  plexus::detail::PluginHolder unknown("odd", "1", [](plexus::Registry&) { throw 1; });
  ASSERT_NE(unknown.manifest()->error, nullptr);
  EXPECT_STREQ(unknown.manifest()->error, "registration of plugin 'odd' failed: unknown exception");
  EXPECT_EQ(unknown.manifest()->task_count, 0u);
}

// The macro path: one plugin per binary, registered on first use.
int g_registrations = 0;

}  // namespace

PLEXUS_PLUGIN(macro_demo, "9.9.9", registry) {
  ++g_registrations;
  registry.add("square", &square);
}

namespace {

TEST(PluginMacroTest, ManifestIsBuiltOnceOnFirstUse) {
  EXPECT_EQ(g_registrations, 0);
  const plexus_manifest* m = plexus_plugin_manifest();
  EXPECT_EQ(g_registrations, 1);
  EXPECT_EQ(plexus_plugin_manifest(), m);
  EXPECT_EQ(g_registrations, 1);
  EXPECT_STREQ(m->plugin_name, "macro_demo");
  EXPECT_STREQ(m->plugin_version, "9.9.9");
  ASSERT_EQ(m->task_count, 1u);
  EXPECT_STREQ(m->tasks[0].name, "square");
  Outcome o = call(m->tasks[0], args(std::int64_t{9}));
  ASSERT_EQ(o.status, PLEXUS_STATUS_OK) << o.message;
  EXPECT_EQ(plexus::decode<std::int64_t>(o.result), 81);
}

}  // namespace
