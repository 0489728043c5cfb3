// PluginLoader against the real in-tree plugins (math, testing) and the purpose-built bad plugins
// of tests/plugins/.
#include <plexus/common/temp_dir.hpp>
#include <plexus/worker/plugin_loader.hpp>

#include <plexus/abi.h>
#include <plexus/codec.hpp>
#include <plexus/sdk.hpp>  // PLEXUS_SDK_VERSION

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace plexus::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;

const std::string kPluginDir = PLEXUS_TEST_PLUGIN_DIR;
const std::string kBadPluginDir = PLEXUS_TEST_BAD_PLUGIN_DIR;

// Encodes an argument list the way a client does.
template <class... T>
std::string args(const T&... values) {
  Writer w;
  w.list(sizeof...(T));
  (encode(w, values), ...);
  return w.take();
}

// Calls a task that must succeed and decodes its result.
template <class R>
R call_ok(PluginLoader& loader, std::string_view task, const std::string& encoded) {
  CallResult r = loader.call(task, encoded);
  EXPECT_TRUE(r.ok) << task << ": " << (r.error ? r.error->type + ": " + r.error->message : "");
  if (!r.ok) return R{};
  return decode<R>(r.value);
}

// Calls a task that must fail, and returns its error.
ErrorInfo call_error(PluginLoader& loader, std::string_view task, const std::string& encoded) {
  CallResult r = loader.call(task, encoded);
  EXPECT_FALSE(r.ok) << task << " unexpectedly succeeded";
  EXPECT_TRUE(r.ok || r.error) << task << ": a failed call carries no error";
  return r.error ? *r.error : ErrorInfo{};
}

using plexus::TempDir;

// A clock that moves only when told to. Reads happen under the loader's load mutex.
struct ManualClock {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  PluginLoader::Clock fn() {
    return [this] { return now; };
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class PluginLoaderTest : public ::testing::Test {
 protected:
  PluginLoader loader_{{kPluginDir, kBadPluginDir}};
};

// ---- loading ----

TEST_F(PluginLoaderTest, LoadsLazilyOnFirstCall) {
  EXPECT_THAT(loader_.loaded(), IsEmpty());
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "math.inc", args(std::int64_t{41})), 42);

  auto loaded = loader_.loaded();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].name, "math");
  EXPECT_EQ(loaded[0].version, "1.0.0");
  EXPECT_EQ(loaded[0].sdk_version, PLEXUS_SDK_VERSION);
  EXPECT_EQ(fs::path(loaded[0].path).filename(), "libplexus_math.so");
  EXPECT_TRUE(fs::path(loaded[0].path).is_absolute());

  EXPECT_EQ(call_ok<std::string>(loader_, "testing.echo", args(std::string("hi"))), "hi");
  loaded = loader_.loaded();
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].name, "math");
  EXPECT_EQ(loaded[1].name, "testing");
}

TEST_F(PluginLoaderTest, KeepsTheSearchPath) {
  EXPECT_EQ(loader_.search_path(), (std::vector<std::string>{kPluginDir, kBadPluginDir}));
}

TEST_F(PluginLoaderTest, DescribeListsTasksWithSignatures) {
  PluginInfo math = loader_.describe("math");
  EXPECT_EQ(math.name, "math");
  EXPECT_EQ(math.version, "1.0.0");
  EXPECT_EQ(math.sdk_version, PLEXUS_SDK_VERSION);
  EXPECT_THAT(math.tasks, Contains(Pair("inc", "int64(int64)")));
  EXPECT_THAT(math.tasks, Contains(Pair("add", "float64(float64, float64)")));
  EXPECT_THAT(math.tasks, Contains(Pair("sum", "int64(list<int64>)")));
  EXPECT_TRUE(std::is_sorted(math.tasks.begin(), math.tasks.end()));
  ASSERT_EQ(loader_.loaded().size(), 1u);  // describe loads

  PluginInfo testing = loader_.describe("testing");
  EXPECT_THAT(testing.tasks, Contains(Pair("point_norm", "float64(Point)")));
  EXPECT_THAT(testing.tasks, Contains(Pair("void_task", "void(int64)")));
  EXPECT_THAT(testing.tasks,
              Contains(Pair("roundtrip", "map<string, list<optional<int64>>>"
                                         "(map<string, list<optional<int64>>>)")));
  EXPECT_THAT(testing.tasks, Contains(Pair("swap", "pair<string, int64>(pair<int64, string>)")));
}

TEST_F(PluginLoaderTest, DescribeThrowsWithTheSameMessages) {
  try {
    loader_.describe("nosuch");
    FAIL() << "describe of a missing plugin did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("no plugin 'nosuch'"), HasSubstr("libplexus_nosuch.so"),
                                HasSubstr(kPluginDir)));
  }
  EXPECT_THROW(loader_.describe("badabi"), std::runtime_error);
  EXPECT_THROW(loader_.describe("../math"), std::runtime_error);
}

// ---- calls and values ----

TEST_F(PluginLoaderTest, CallsMathTasks) {
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "math.square", args(std::int64_t{-7})), 49);
  EXPECT_DOUBLE_EQ(call_ok<double>(loader_, "math.add", args(1.5, 2.25)), 3.75);
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "math.sum",
                                  args(std::vector<std::int64_t>{1, 2, 3, 4})),
            10);
  EXPECT_EQ(call_ok<std::vector<std::int64_t>>(loader_, "math.range", args(std::int64_t{4})),
            (std::vector<std::int64_t>{0, 1, 2, 3}));
}

TEST_F(PluginLoaderTest, BytesTravelAsBytes) {
  auto b = call_ok<Bytes>(loader_, "testing.bytes", args(std::int64_t{1000}));
  ASSERT_EQ(b.size(), 1000u);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    ASSERT_EQ(std::to_integer<std::size_t>(b[i]), i % 251) << "byte " << i;
    sum += std::to_integer<std::uint64_t>(b[i]);
  }
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "testing.bytes_len", args(b)), 1000);
  EXPECT_EQ(call_ok<std::uint64_t>(loader_, "testing.checksum", args(b)), sum);
  EXPECT_EQ(call_ok<Bytes>(loader_, "testing.bytes", args(std::int64_t{0})), Bytes{});
}

TEST_F(PluginLoaderTest, ContainersRoundTrip) {
  EXPECT_EQ(call_ok<std::string>(loader_, "testing.concat",
                                 args(std::vector<std::string>{"ab", "", "cd"})),
            "abcd");

  using NestedMap = std::map<std::string, std::vector<std::optional<std::int64_t>>>;
  NestedMap m{{"a", {1, std::nullopt, -3}}, {"b", {}}, {"", {std::nullopt}}};
  EXPECT_EQ(call_ok<NestedMap>(loader_, "testing.roundtrip", args(m)), m);

  EXPECT_EQ((call_ok<std::pair<std::string, std::int64_t>>(
                loader_, "testing.swap", args(std::pair<std::int64_t, std::string>{7, "seven"}))),
            (std::pair<std::string, std::int64_t>{"seven", 7}));

  using Tuple3 = std::tuple<std::int32_t, double, std::string>;
  Tuple3 t{-5, 0.5, "t"};
  EXPECT_EQ(call_ok<Tuple3>(loader_, "testing.tuple3", args(t)), t);

  EXPECT_EQ(call_ok<std::int32_t>(loader_, "testing.add_i32",
                                  args(std::int32_t{40}, std::int32_t{2})),
            42);
}

TEST_F(PluginLoaderTest, UserTypeWithItsOwnCodec) {
  // A Point is encoded as a list of two floats; the client needs no C++ type for it.
  Writer w;
  w.list(1);
  w.list(2);
  w.float64(3.0);
  w.float64(4.0);
  EXPECT_DOUBLE_EQ(call_ok<double>(loader_, "testing.point_norm", w.take()), 5.0);

  ErrorInfo e = call_error(loader_, "testing.point_norm", args(std::vector<double>{1, 2, 3}));
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  EXPECT_THAT(e.message, AllOf(HasSubstr("float64(Point)"), HasSubstr("Point")));
}

TEST_F(PluginLoaderTest, VoidTaskReturnsNull) {
  CallResult r = loader_.call("testing.void_task", args(std::int64_t{1}));
  ASSERT_TRUE(r.ok) << (r.error ? r.error->message : "");
  EXPECT_EQ(decode<std::nullptr_t>(r.value), nullptr);
}

TEST_F(PluginLoaderTest, AppendLineAppends) {
  TempDir dir;
  const std::string file = (dir.path() / "count.txt").string();
  EXPECT_EQ(call_ok<std::string>(loader_, "testing.append_line", args(file, std::string("a"))),
            "a");
  EXPECT_EQ(call_ok<std::string>(loader_, "testing.append_line", args(file, std::string("b"))),
            "b");
  EXPECT_EQ(read_file(file), "a\nb\n");
}

TEST_F(PluginLoaderTest, WaitFileReturnsOnceTheFileExists) {
  TempDir dir;
  const std::string file = (dir.path() / "go").string();
  std::ofstream(file).put('x');
  EXPECT_GE(call_ok<std::int64_t>(loader_, "testing.wait_file", args(file, std::int64_t{1000})),
            0);
}

TEST_F(PluginLoaderTest, WaitFileThrowsOnTimeout) {
  TempDir dir;
  const std::string file = (dir.path() / "never").string();
  ErrorInfo e = call_error(loader_, "testing.wait_file", args(file, std::int64_t{5}));
  EXPECT_THAT(e.message, AllOf(HasSubstr(file), HasSubstr("5 ms")));
}

// Futures among the arguments are read through the RefSource the worker passes, in place.
TEST_F(PluginLoaderTest, FuturesAmongTheArgumentsAreResolvedByTheHost) {
  std::map<std::string, std::string, std::less<>> values{
      {"a", encode_to_string(Bytes(30))},
      {"b", encode_to_string(Bytes(12))},
      {"n", encode_to_string(std::int64_t{5})}};
  RefSource deps{&values, [](void* c, std::string_view key, std::string_view* out) {
                   auto& m = *static_cast<std::map<std::string, std::string, std::less<>>*>(c);
                   auto it = m.find(key);
                   if (it == m.end()) return false;
                   *out = it->second;
                   return true;
                 }};
  Writer w;
  w.list(2);
  w.ref("a");
  w.ref("b");
  CallResult r = loader_.call("testing.total_len_view", w.take(), &deps);
  ASSERT_TRUE(r.ok) << (r.error ? r.error->message : "");
  EXPECT_EQ(decode<std::int64_t>(r.value), 42);
  Writer s;  // math.sum over a list of three futures
  s.list(1);
  s.list(3);
  s.ref("n");
  s.ref("n");
  s.ref("n");
  r = loader_.call("math.sum", s.take(), &deps);
  ASSERT_TRUE(r.ok) << (r.error ? r.error->message : "");
  EXPECT_EQ(decode<std::int64_t>(r.value), 15);
  Writer u;
  u.list(1);
  u.ref("missing");
  r = loader_.call("math.inc", u.take(), &deps);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error->kind, ErrorKind::bad_arguments);
  EXPECT_THAT(r.error->message, HasSubstr("unknown future 'missing'"));
}

TEST_F(PluginLoaderTest, BenchmarkHelperTasks) {
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "testing.dep_inc",
                                  args(std::int64_t{41}, std::int64_t{7})),
            42);
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "testing.total_len", args(Bytes(3), Bytes(1000))),
            1003);
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "testing.total_len_view", args(Bytes(3), Bytes(1000))),
            1003);
  EXPECT_EQ(call_error(loader_, "testing.total_len_view", args(Bytes(3), std::string("x"))).kind,
            ErrorKind::bad_arguments);
  EXPECT_EQ(call_ok<std::int64_t>(loader_, "testing.worker_pid", args(std::int64_t{0})),
            ::getpid());
}

// ---- task failures ----

TEST_F(PluginLoaderTest, ExceptionCarriesTypeAndMessage) {
  ErrorInfo e = call_error(loader_, "testing.fail", args(std::string("boom")));
  EXPECT_EQ(e.kind, ErrorKind::exception);
  EXPECT_EQ(e.type, "std::runtime_error");
  EXPECT_EQ(e.message, "boom");

  e = call_error(loader_, "math.mean", args(std::vector<double>{}));
  EXPECT_EQ(e.kind, ErrorKind::exception);
  EXPECT_EQ(e.type, "std::domain_error");
  EXPECT_EQ(e.message, "mean of an empty list");

  e = call_error(loader_, "testing.add_i32",
                 args(std::int32_t{2147483647}, std::int32_t{1}));
  EXPECT_EQ(e.kind, ErrorKind::exception);
  EXPECT_EQ(e.type, "std::overflow_error");
}

TEST_F(PluginLoaderTest, CustomExceptionTypeIsNamed) {
  ErrorInfo e = call_error(loader_, "testing.throw_custom", args(std::string("custom boom")));
  EXPECT_EQ(e.kind, ErrorKind::exception);
  EXPECT_THAT(e.type, HasSubstr("CustomError"));
  EXPECT_EQ(e.message, "custom boom");
}

TEST_F(PluginLoaderTest, NonStdExceptionIsNamedByType) {
  ErrorInfo e = call_error(loader_, "testing.throw_int", args());
  EXPECT_EQ(e.kind, ErrorKind::exception);
  EXPECT_EQ(e.type, "int");
  EXPECT_THAT(e.message, HasSubstr("non-std::exception"));
}

TEST_F(PluginLoaderTest, WrongArgumentTypeIsBadArguments) {
  ErrorInfo e = call_error(loader_, "math.inc", args(std::string("x")));
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  EXPECT_EQ(e.type, "plexus::TypeMismatch");
  EXPECT_THAT(e.message, AllOf(HasSubstr("task 'inc'"), HasSubstr("int64(int64)"),
                               HasSubstr("argument 1"), HasSubstr("received string")));
}

TEST_F(PluginLoaderTest, WrongArgumentCountIsBadArguments) {
  ErrorInfo e = call_error(loader_, "math.inc", args(std::int64_t{1}, std::int64_t{2}));
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  EXPECT_THAT(e.message, AllOf(HasSubstr("int64(int64)"), HasSubstr("expects 1 argument"),
                               HasSubstr("received 2")));

  e = call_error(loader_, "testing.throw_int", args(std::int64_t{1}));
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  EXPECT_THAT(e.message, AllOf(HasSubstr("int64()"), HasSubstr("expects 0 arguments")));
}

TEST_F(PluginLoaderTest, OutOfRangeAndMalformedArgumentsAreBadArguments) {
  ErrorInfo e =
      call_error(loader_, "testing.add_i32", args(std::int64_t{1} << 40, std::int32_t{1}));
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  EXPECT_THAT(e.message, AllOf(HasSubstr("int32(int32, int32)"), HasSubstr("out of range")));

  e = call_error(loader_, "math.inc", std::string("\x08\x05", 2));  // a list that is cut short
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  e = call_error(loader_, "math.inc", std::string());  // not even a list
  EXPECT_EQ(e.kind, ErrorKind::bad_arguments);
  EXPECT_THAT(e.message, HasSubstr("int64(int64)"));
}

TEST(PluginLoaderDeathTest, CrashingTasksKillTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        PluginLoader loader({kPluginDir});
        loader.call("testing.segfault", args());
      },
      ::testing::KilledBySignal(SIGSEGV), "");
  EXPECT_EXIT(
      {
        PluginLoader loader({kPluginDir});
        loader.call("testing.abort_task", args());
      },
      ::testing::KilledBySignal(SIGABRT), "");
}

// ---- unknown names ----

TEST_F(PluginLoaderTest, UnknownPluginNamesFilesAndDirectories) {
  ErrorInfo e = call_error(loader_, "nosuch.task", args());
  EXPECT_EQ(e.kind, ErrorKind::unknown_task);
  EXPECT_THAT(e.message,
              AllOf(HasSubstr("no plugin 'nosuch' for task 'nosuch.task'"),
                    HasSubstr("libplexus_nosuch.so, libnosuch.so, nosuch.so"),
                    HasSubstr(kPluginDir + ", " + kBadPluginDir)));

  // Within the retry interval the failure is remembered, but still names the task asked for.
  e = call_error(loader_, "nosuch.other", args());
  EXPECT_THAT(e.message, HasSubstr("for task 'nosuch.other'"));
  EXPECT_THAT(loader_.loaded(), IsEmpty());
}

TEST(PluginLoaderNoPathTest, EmptySearchPathIsExplained) {
  PluginLoader loader({});
  ErrorInfo e = call_error(loader, "math.inc", args(std::int64_t{1}));
  EXPECT_EQ(e.kind, ErrorKind::unknown_task);
  EXPECT_THAT(e.message, HasSubstr("plugin path is empty"));
}

TEST_F(PluginLoaderTest, UnknownTaskListsWhatThePluginHas) {
  ErrorInfo e = call_error(loader_, "math.nope", args());
  EXPECT_EQ(e.kind, ErrorKind::unknown_task);
  EXPECT_THAT(e.message, AllOf(HasSubstr("plugin 'math' 1.0.0"),
                               HasSubstr(kPluginDir + "/libplexus_math.so"),
                               HasSubstr("has no task 'nope'"),
                               HasSubstr("it has: add, add_int, dec, inc, mean")));
  // The plugin itself loaded fine.
  ASSERT_EQ(loader_.loaded().size(), 1u);
}

TEST_F(PluginLoaderTest, NamesWithoutPluginPartAreRejected) {
  for (std::string_view name : {"inc", "", ".inc", "math.", "../math.inc", "a/b.c"}) {
    ErrorInfo e = call_error(loader_, name, args());
    EXPECT_EQ(e.kind, ErrorKind::unknown_task) << name;
    EXPECT_THAT(e.message, HasSubstr("'<plugin>.<task>'")) << name;
  }
  EXPECT_THAT(loader_.loaded(), IsEmpty());
}

// ---- bad plugins ----

TEST_F(PluginLoaderTest, AbiMismatchNamesBothVersions) {
  ErrorInfo e = call_error(loader_, "badabi.anything", args());
  EXPECT_EQ(e.kind, ErrorKind::plugin_error);
  EXPECT_THAT(e.message,
              AllOf(HasSubstr("plugin 'badabi'"), HasSubstr(kBadPluginDir + "/libplexus_badabi.so"),
                    HasSubstr("built with SDK ABI 999"),
                    HasSubstr("this worker has SDK ABI " +
                              std::to_string(PLEXUS_SDK_ABI_VERSION))));
  EXPECT_THAT(loader_.loaded(), IsEmpty());
}

TEST_F(PluginLoaderTest, MissingManifestSymbolIsExplained) {
  ErrorInfo e = call_error(loader_, "nomanifest.anything", args());
  EXPECT_EQ(e.kind, ErrorKind::plugin_error);
  EXPECT_THAT(e.message, AllOf(HasSubstr(kBadPluginDir + "/libplexus_nomanifest.so"),
                               HasSubstr("does not export"), HasSubstr(PLEXUS_MANIFEST_SYMBOL)));
}

TEST_F(PluginLoaderTest, ManifestNameMustMatchFileName) {
  ErrorInfo e = call_error(loader_, "wrongname.identity", args(std::int64_t{1}));
  EXPECT_EQ(e.kind, ErrorKind::plugin_error);
  EXPECT_THAT(e.message, AllOf(HasSubstr(kBadPluginDir + "/libplexus_wrongname.so"),
                               HasSubstr("'othername'"), HasSubstr("'wrongname'")));
  EXPECT_THAT(loader_.loaded(), IsEmpty());
}

TEST_F(PluginLoaderTest, RegistrationErrorIsReported) {
  ErrorInfo e = call_error(loader_, "regfail.dup", args(std::int64_t{1}));
  EXPECT_EQ(e.kind, ErrorKind::plugin_error);
  EXPECT_THAT(e.message, AllOf(HasSubstr("plugin 'regfail' 1.0.0"),
                               HasSubstr(kBadPluginDir + "/libplexus_regfail.so"),
                               HasSubstr("task 'dup' is registered twice")));
}

TEST(PluginLoaderLoadTest, LoadFailureCarriesTheDynamicLoaderMessage) {
  TempDir dir;
  {
    std::ofstream junk(dir.path() / "libplexus_junk.so");
    junk << std::string(256, 'x');  // long enough to be judged by its header: not ELF
  }
  PluginLoader loader({dir.str()});
  ErrorInfo e = call_error(loader, "junk.task", args());
  EXPECT_EQ(e.kind, ErrorKind::plugin_error);
  EXPECT_THAT(e.message, AllOf(HasSubstr("cannot load plugin 'junk'"),
                               HasSubstr((dir.path() / "libplexus_junk.so").string()),
                               HasSubstr("ELF")));  // dlerror: "invalid ELF header"
}

TEST(PluginLoaderLoadTest, FindsAlternativeFileNamesInPathOrder) {
  TempDir first;
  TempDir second;
  // "math" as plain math.so in the first directory wins over libplexus_math.so in the second.
  fs::copy_file(fs::path(kPluginDir) / "libplexus_math.so", first.path() / "math.so");
  fs::copy_file(fs::path(kPluginDir) / "libplexus_math.so",
                second.path() / "libplexus_math.so");
  PluginLoader loader({(first.path() / "missing").string(), first.str(), second.str()});
  EXPECT_EQ(call_ok<std::int64_t>(loader, "math.inc", args(std::int64_t{1})), 2);
  ASSERT_EQ(loader.loaded().size(), 1u);
  EXPECT_EQ(loader.loaded()[0].path, (first.path() / "math.so").string());
}

TEST(PluginLoaderLoadTest, RetriesAFailedLoadAtMostOncePerSecond) {
  TempDir dir;
  ManualClock clock;
  PluginLoader loader({dir.str()}, clock.fn());
  EXPECT_EQ(call_error(loader, "math.inc", args(std::int64_t{1})).kind, ErrorKind::unknown_task);

  // The plugin is installed: within the second the loader does not look again...
  fs::copy_file(fs::path(kPluginDir) / "libplexus_math.so", dir.path() / "libplexus_math.so");
  clock.now += std::chrono::milliseconds(999);
  EXPECT_EQ(call_error(loader, "math.inc", args(std::int64_t{1})).kind, ErrorKind::unknown_task);
  EXPECT_THROW(loader.describe("math"), std::runtime_error);

  // ...and after it, it does.
  clock.now += std::chrono::milliseconds(1);
  EXPECT_EQ(call_ok<std::int64_t>(loader, "math.inc", args(std::int64_t{1})), 2);
}

TEST(PluginLoaderLoadTest, ABrokenPluginReplacedByAGoodOneLoads) {
  TempDir dir;
  ManualClock clock;
  const fs::path file = dir.path() / "libplexus_math.so";
  {
    std::ofstream junk(file);
    junk << std::string(256, 'x');
  }
  PluginLoader loader({dir.str()}, clock.fn());
  EXPECT_EQ(call_error(loader, "math.inc", args(std::int64_t{1})).kind, ErrorKind::plugin_error);
  fs::remove(file);
  fs::copy_file(fs::path(kPluginDir) / "libplexus_math.so", file);
  EXPECT_EQ(call_error(loader, "math.inc", args(std::int64_t{1})).kind, ErrorKind::plugin_error);
  clock.now += std::chrono::seconds(1);
  EXPECT_EQ(call_ok<std::int64_t>(loader, "math.inc", args(std::int64_t{1})), 2);
}

// ---- concurrency ----

TEST_F(PluginLoaderTest, ConcurrentCallsRaceTheFirstLoadAndGetCorrectResults) {
  constexpr int kThreads = 8;
  constexpr int kCalls = 300;
  std::vector<int> failures(kThreads, 0);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([this, t, &failures] {
        for (int i = 0; i < kCalls; ++i) {
          const std::int64_t x = t * 100000 + i;
          CallResult r = (i + t) % 2 == 0
                             ? loader_.call("math.inc", args(x))
                             : loader_.call("testing.echo", args(std::to_string(x)));
          bool good = r.ok && ((i + t) % 2 == 0 ? decode<std::int64_t>(r.value) == x + 1
                                                : decode<std::string>(r.value) ==
                                                      std::to_string(x));
          if (!good) ++failures[static_cast<std::size_t>(t)];
          if (i % 50 == 0) {
            // Error paths and readers run alongside.
            if (loader_.call("math.nope", args()).ok) ++failures[static_cast<std::size_t>(t)];
            (void)loader_.loaded();
          }
        }
      });
    }
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[static_cast<std::size_t>(t)], 0) << t;
  auto loaded = loader_.loaded();
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].name, "math");
  EXPECT_EQ(loaded[1].name, "testing");
}

TEST_F(PluginLoaderTest, SlowTasksRunConcurrently) {
  // Four 200 ms sleeps on four threads take far less than 800 ms when they overlap.
  ASSERT_EQ(call_ok<std::int64_t>(loader_, "testing.sleep_ms", args(std::int64_t{0})), 0);
  auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([this] {
        EXPECT_EQ(call_ok<std::int64_t>(loader_, "testing.sleep_ms", args(std::int64_t{200})),
                  200);
      });
    }
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(700));
}

// ---- default path ----

TEST(DefaultPluginPathTest, ExtraThenEnvironmentThenBuildAndInstallDirs) {
  const char* old = std::getenv("PLEXUS_PLUGIN_PATH");
  std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  ::setenv("PLEXUS_PLUGIN_PATH", "/env/a::/env/b", 1);
  auto path = default_plugin_path({"/extra", "/env/a"});
  if (saved) {
    ::setenv("PLEXUS_PLUGIN_PATH", saved->c_str(), 1);
  } else {
    ::unsetenv("PLEXUS_PLUGIN_PATH");
  }
  ASSERT_GE(path.size(), 4u);
  EXPECT_EQ(path[0], "/extra");
  EXPECT_EQ(path[1], "/env/a");
  EXPECT_EQ(path[2], "/env/b");
  // The build tree's plugin directory exists (this test's plugins are in it).
  EXPECT_EQ(path[3], kPluginDir);
  EXPECT_THAT(path.back(), HasSubstr("plexus/plugins"));
  EXPECT_THAT(path, Not(Contains(std::string())));
}

}  // namespace
}  // namespace plexus::worker
