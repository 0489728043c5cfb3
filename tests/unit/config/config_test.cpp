#include <plexus/config/config.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace plexus::config {
extern const std::string_view kDefaultsToml;  // generated from config/plexus.toml
}  // namespace plexus::config

namespace {

namespace fs = std::filesystem;
using plexus::config::Config;
using plexus::config::ConfigError;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Env = std::map<std::string, std::string>;

// The message of the ConfigError that `action` throws; fails the test if it throws nothing.
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return {};
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "plexus-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes `text` to `name` under the temp dir (creating parent directories); returns its path.
  std::string write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  // An environment in which load() finds no user file of the person running the tests.
  Env clean_env() const { return {{"HOME", (dir_ / "home").string()}}; }

  fs::path dir_;
};

TEST_F(ConfigTest, DefaultsHaveEveryDocumentedSettingWithItsTypeAndValue) {
  const Config c = Config::defaults();

  EXPECT_EQ(c.get_string("scheduler.address"), "tcp://127.0.0.1:8786");
  EXPECT_EQ(c.get_string("scheduler.scheduler-file"), "");
  EXPECT_EQ(c.get_int("scheduler.heartbeat-interval-ms"), 500);
  EXPECT_EQ(c.get_int("scheduler.worker-ttl-ms"), 10000);
  EXPECT_EQ(c.get_int("scheduler.allowed-failures"), 3);
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.worker-saturation"), 1.1);
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.queue-target-ms"), 2.0);
  EXPECT_EQ(c.get_int("scheduler.max-tasks-per-worker"), 10000);
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.default-task-duration-ms"), 1.0);
  EXPECT_EQ(c.get_int("scheduler.bandwidth-bytes-per-s"), 100000000);

  EXPECT_EQ(c.get_int("worker.nthreads"), 0);
  EXPECT_EQ(c.get_string("worker.name"), "");
  EXPECT_TRUE(c.get_string_list("worker.plugin-path").empty());
  EXPECT_EQ(c.get_string("worker.data-address"), "");
  EXPECT_EQ(c.get_int("worker.connect-timeout-ms"), 10000);
  EXPECT_EQ(c.get_int("worker.shutdown-timeout-ms"), 10000);
  EXPECT_EQ(c.get_int("worker.death-timeout-ms"), 60000);

  EXPECT_TRUE(c.get_bool("nanny.enabled"));
  EXPECT_EQ(c.get_int("nanny.max-crashes"), 5);
  EXPECT_EQ(c.get_int("nanny.crash-window-ms"), 60000);
  EXPECT_EQ(c.get_int("nanny.restart-backoff-ms"), 100);
  EXPECT_EQ(c.get_int("nanny.stop-timeout-ms"), 15000);

  EXPECT_EQ(c.get_int("client.connect-timeout-ms"), 10000);

  EXPECT_EQ(c.get_int("comm.inline-threshold-bytes"), 65536);
  EXPECT_EQ(c.get_int("comm.max-message-bytes"), 4294967296LL);
  EXPECT_EQ(c.get_int("comm.verify-max-depth"), 64);
  EXPECT_EQ(c.get_int("comm.verify-max-tables"), 1000000);
  EXPECT_EQ(c.get_int("comm.linger-ms"), 1000);

  EXPECT_EQ(c.get_int("local-cluster.n-workers"), 2);
  EXPECT_EQ(c.get_int("local-cluster.threads-per-worker"), 1);
  EXPECT_EQ(c.get_string("local-cluster.transport"), "tcp");
  EXPECT_TRUE(c.get_bool("local-cluster.processes"));
  EXPECT_EQ(c.get_string("local-cluster.bin-dir"), "");
  EXPECT_EQ(c.get_int("local-cluster.startup-timeout-ms"), 10000);
  EXPECT_EQ(c.get_int("local-cluster.shutdown-timeout-ms"), 5000);

  EXPECT_EQ(c.get_string("logging.level"), "info");
}

// The schema has exactly the agreed sections and keys, in the file's order, and nothing else.
TEST_F(ConfigTest, DumpListsExactlyTheSchemaInFileOrder) {
  std::vector<std::string> sections;
  std::vector<std::string> keys;
  std::istringstream lines(Config::defaults().dump());
  std::string section;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    if (line.front() == '[') {
      section = line.substr(1, line.size() - 2);
      sections.push_back(section);
    } else {
      keys.push_back(section + "." + line.substr(0, line.find(" = ")));
    }
  }
  EXPECT_THAT(sections,
              ElementsAre("scheduler", "worker", "nanny", "client", "comm", "local-cluster",
                          "logging"));
  EXPECT_THAT(keys,
              ElementsAre("scheduler.address", "scheduler.scheduler-file",
                          "scheduler.heartbeat-interval-ms", "scheduler.worker-ttl-ms",
                          "scheduler.allowed-failures", "scheduler.worker-saturation",
                          "scheduler.queue-target-ms", "scheduler.max-tasks-per-worker",
                          "scheduler.default-task-duration-ms", "scheduler.bandwidth-bytes-per-s",
                          "scheduler.work-stealing", "scheduler.work-stealing-interval-ms",
                          "worker.nthreads", "worker.name", "worker.plugin-path",
                          "worker.data-address", "worker.resources", "worker.connect-timeout-ms",
                          "worker.shutdown-timeout-ms", "worker.death-timeout-ms",
                          "worker.memory-limit", "worker.memory-target", "worker.memory-spill",
                          "worker.memory-pause", "worker.memory-terminate",
                          "worker.memory-monitor-interval-ms", "worker.local-directory",
                          "nanny.enabled", "nanny.max-crashes", "nanny.crash-window-ms",
                          "nanny.restart-backoff-ms", "nanny.stop-timeout-ms",
                          "client.connect-timeout-ms", "client.death-timeout-ms",
                          "comm.inline-threshold-bytes", "comm.max-message-bytes",
                          "comm.verify-max-depth", "comm.verify-max-tables", "comm.linger-ms",
                          "local-cluster.n-workers", "local-cluster.threads-per-worker",
                          "local-cluster.transport", "local-cluster.processes",
                          "local-cluster.bin-dir", "local-cluster.startup-timeout-ms",
                          "local-cluster.shutdown-timeout-ms", "local-cluster.log-level",
                          "logging.level"));
}

// The binary carries config/plexus.toml verbatim, and every key in it has a comment just above.
TEST_F(ConfigTest, CompiledInDefaultsAreTheSourceFileAndEveryKeyIsDocumented) {
  std::ifstream file(std::string(PLEXUS_SOURCE_DIR) + "/config/plexus.toml");
  ASSERT_TRUE(file) << "cannot open config/plexus.toml";
  const std::string source((std::istreambuf_iterator<char>(file)), {});
  EXPECT_EQ(source, plexus::config::kDefaultsToml);

  std::istringstream lines{std::string(plexus::config::kDefaultsToml)};
  std::string previous;
  int keys = 0;
  for (std::string line; std::getline(lines, line); previous = line) {
    if (line.empty() || line.front() == '#' || line.front() == '[') continue;
    ++keys;
    EXPECT_EQ(previous.substr(0, 1), "#") << "no comment above: " << line;
  }
  EXPECT_EQ(keys, 48);
}

TEST_F(ConfigTest, MergeFileOverlaysOnlyTheKeysItSets) {
  Config c = Config::defaults();
  c.merge_file(write("a.toml",
                     "[scheduler]\n"
                     "address = \"ipc:///tmp/s.ipc\"\n"
                     "worker-ttl-ms = 2500\n"
                     "[worker]\n"
                     "plugin-path = [\"/opt/p\", \"/usr/p\"]\n"
                     "[local-cluster]\n"
                     "processes = false\n"));
  EXPECT_EQ(c.get_string("scheduler.address"), "ipc:///tmp/s.ipc");
  EXPECT_EQ(c.get_int("scheduler.worker-ttl-ms"), 2500);
  EXPECT_THAT(c.get_string_list("worker.plugin-path"), ElementsAre("/opt/p", "/usr/p"));
  EXPECT_FALSE(c.get_bool("local-cluster.processes"));
  // Untouched keys keep their defaults.
  EXPECT_EQ(c.get_int("scheduler.heartbeat-interval-ms"), 500);
  EXPECT_EQ(c.get_int("local-cluster.n-workers"), 2);
}

TEST_F(ConfigTest, DottedKeysAtTopLevelAreAccepted) {
  Config c = Config::defaults();
  c.merge_string("logging.level = \"debug\"\ncomm.linger-ms = 0\n", "inline");
  EXPECT_EQ(c.get_string("logging.level"), "debug");
  EXPECT_EQ(c.get_int("comm.linger-ms"), 0);
}

TEST_F(ConfigTest, MissingExplicitFileNamesTheFile) {
  const std::string path = (dir_ / "nope.toml").string();
  Config c = Config::defaults();
  const std::string message = error_of([&] { c.merge_file(path); });
  EXPECT_THAT(message, AllOf(HasSubstr(path), HasSubstr("No such file")));
}

TEST_F(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  const std::string path = write("bad.toml", "[scheduler]\nworker-ttl-ms = 10\naddress = \"open\n");
  Config c = Config::defaults();
  const std::string message = error_of([&] { c.merge_file(path); });
  EXPECT_THAT(message, AllOf(HasSubstr(path + ":3:"), HasSubstr("syntax error")));
}

TEST_F(ConfigTest, UnknownKeyNamesFileLineKeyAndSuggestion) {
  const std::string path = write("typo.toml", "[scheduler]\n\nadress = \"tcp://h:1\"\n");
  Config c = Config::defaults();
  const std::string message = error_of([&] { c.merge_file(path); });
  EXPECT_EQ(message, path +
                         ":3: unknown key 'scheduler.adress' (did you mean "
                         "'scheduler.address'?)");
}

TEST_F(ConfigTest, UnknownKeyWithNothingCloseHasNoSuggestion) {
  Config c = Config::defaults();
  const std::string message =
      error_of([&] { c.merge_string("[worker]\ncompletely-unrelated = 1\n", "x.toml"); });
  EXPECT_EQ(message, "x.toml:2: unknown key 'worker.completely-unrelated'");
}

TEST_F(ConfigTest, KeyInTheWrongPlaceSuggestsWhereItBelongs) {
  Config c = Config::defaults();
  EXPECT_THAT(error_of([&] { c.merge_string("[scheduler]\nnthreads = 4\n", "x.toml"); }),
              HasSubstr("x.toml:2: unknown key 'scheduler.nthreads' (did you mean "
                        "'worker.nthreads'?)"));
  EXPECT_THAT(error_of([&] { c.merge_string("nthreads = 4\n", "y.toml"); }),
              HasSubstr("y.toml:1: unknown key 'nthreads' (did you mean 'worker.nthreads'?)"));
}

TEST_F(ConfigTest, UnknownSectionSuggestsTheSection) {
  Config c = Config::defaults();
  const std::string message =
      error_of([&] { c.merge_string("\n[schedular]\naddress = \"x\"\n", "x.toml"); });
  EXPECT_EQ(message, "x.toml:2: unknown section 'schedular' (did you mean 'scheduler'?)");
}

TEST_F(ConfigTest, WrongTypeNamesFileLineKeyExpectedAndReceived) {
  Config c = Config::defaults();
  EXPECT_EQ(error_of([&] { c.merge_string("[scheduler]\nworker-ttl-ms = \"10s\"\n", "t.toml"); }),
            "t.toml:2: wrong type for 'scheduler.worker-ttl-ms': expected integer, got string");
  EXPECT_EQ(error_of([&] { c.merge_string("[comm]\nlinger-ms = 1.5\n", "t.toml"); }),
            "t.toml:2: wrong type for 'comm.linger-ms': expected integer, got float");
  EXPECT_EQ(error_of([&] { c.merge_string("[worker]\nplugin-path = [\"a\", 1]\n", "t.toml"); }),
            "t.toml:2: wrong type for 'worker.plugin-path': expected array of strings, got "
            "array containing integer");
  EXPECT_EQ(error_of([&] { c.merge_string("[local-cluster]\nprocesses = \"yes\"\n", "t.toml"); }),
            "t.toml:2: wrong type for 'local-cluster.processes': expected boolean, got string");
}

TEST_F(ConfigTest, SectionThatIsNotATableIsAnError) {
  Config c = Config::defaults();
  EXPECT_EQ(error_of([&] { c.merge_string("scheduler = 5\n", "s.toml"); }),
            "s.toml:1: 'scheduler' must be a section (table), got integer");
  EXPECT_THAT(error_of([&] { c.merge_string("[[worker]]\nnthreads = 1\n", "s.toml"); }),
              HasSubstr("'worker' must be a section (table), got array"));
}

TEST_F(ConfigTest, TablesNestedInASectionAreErrors) {
  Config c = Config::defaults();
  EXPECT_THAT(error_of([&] { c.merge_string("[scheduler.extra]\nx = 1\n", "n.toml"); }),
              AllOf(HasSubstr("n.toml:1: unknown key 'scheduler.extra'"),
                    HasSubstr("nested tables are not allowed")));
  EXPECT_EQ(error_of([&] { c.merge_string("[scheduler.address]\nhost = \"h\"\n", "n.toml"); }),
            "n.toml:1: wrong type for 'scheduler.address': expected string, got table");
  EXPECT_EQ(error_of([&] { c.merge_string("[comm]\nlinger-ms = { ms = 1 }\n", "n.toml"); }),
            "n.toml:2: wrong type for 'comm.linger-ms': expected integer, got table");
}

TEST_F(ConfigTest, EveryProblemOfAFileIsReportedInLineOrder) {
  Config c = Config::defaults();
  const std::string message = error_of([&] {
    c.merge_string("[worker]\nnthreads = \"four\"\n[scheduler]\nadress = \"x\"\n", "m.toml");
  });
  EXPECT_EQ(message,
            "m.toml:2: wrong type for 'worker.nthreads': expected integer, got string\n"
            "m.toml:4: unknown key 'scheduler.adress' (did you mean 'scheduler.address'?)");
}

TEST_F(ConfigTest, FailedMergeLeavesTheConfigUnchanged) {
  Config c = Config::defaults();
  EXPECT_THROW(c.merge_string("[worker]\nnthreads = 8\nbogus = 1\n", "f.toml"), ConfigError);
  EXPECT_EQ(c.get_int("worker.nthreads"), 0);
  EXPECT_THROW(c.apply_env({{"PLEXUS__WORKER__NTHREADS", "8"}, {"PLEXUS__WORKER__BOGUS", "1"}}),
               ConfigError);
  EXPECT_EQ(c.get_int("worker.nthreads"), 0);
}

TEST_F(ConfigTest, IntegerIsAcceptedWhereAFloatIsExpected) {
  Config c = Config::defaults();
  c.merge_string("[scheduler]\nworker-saturation = 2\n", "i.toml");
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.worker-saturation"), 2.0);
  c.apply_env({{"PLEXUS__SCHEDULER__QUEUE_TARGET_MS", "5"}});
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.queue-target-ms"), 5.0);
  c.set("scheduler.default-task-duration-ms", "3");
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.default-task-duration-ms"), 3.0);
  // The setting stays a float: it prints as one and cannot be read as an integer.
  EXPECT_THAT(c.dump(), HasSubstr("worker-saturation = 2.0\n"));
  EXPECT_THROW(c.get_int("scheduler.worker-saturation"), ConfigError);
  // get_double also reads integer settings.
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.bandwidth-bytes-per-s"), 1e8);
}

TEST_F(ConfigTest, EnvOverridesMapNamesAndParseValuesAsToml) {
  Config c = Config::defaults();
  c.apply_env({
      {"PLEXUS__SCHEDULER__WORKER_TTL_MS", "2000"},
      {"PLEXUS__LOCAL_CLUSTER__N_WORKERS", "4"},
      {"PLEXUS__LOCAL_CLUSTER__PROCESSES", "false"},
      {"PLEXUS__SCHEDULER__WORKER_SATURATION", "1.5"},
      {"PLEXUS__WORKER__PLUGIN_PATH", "[\"/a\", \"/b\"]"},
      {"PLEXUS__SCHEDULER__ADDRESS", "tcp://0.0.0.0:9000"},  // not TOML: taken as text
      {"PLEXUS__LOGGING__LEVEL", "\"debug\""},               // a TOML string
      {"PLEXUS__WORKER__NAME", "42"},  // a string setting takes non-strings as text
      {"PLEXUS_CONFIG", "/ignored/by/apply_env"},
      {"PATH", "/usr/bin"},
  });
  EXPECT_EQ(c.get_int("scheduler.worker-ttl-ms"), 2000);
  EXPECT_EQ(c.get_int("local-cluster.n-workers"), 4);
  EXPECT_FALSE(c.get_bool("local-cluster.processes"));
  EXPECT_DOUBLE_EQ(c.get_double("scheduler.worker-saturation"), 1.5);
  EXPECT_THAT(c.get_string_list("worker.plugin-path"), ElementsAre("/a", "/b"));
  EXPECT_EQ(c.get_string("scheduler.address"), "tcp://0.0.0.0:9000");
  EXPECT_EQ(c.get_string("logging.level"), "debug");
  EXPECT_EQ(c.get_string("worker.name"), "42");
}

TEST_F(ConfigTest, UnknownEnvKeyNamesTheVariable) {
  Config c = Config::defaults();
  EXPECT_EQ(error_of([&] { c.apply_env({{"PLEXUS__SCHEDULER__ADRESS", "x"}}); }),
            "environment variable PLEXUS__SCHEDULER__ADRESS: unknown key 'scheduler.adress' "
            "(did you mean 'scheduler.address'?)");
  EXPECT_THAT(error_of([&] { c.apply_env({{"PLEXUS__NTHREADS", "2"}}); }),
              AllOf(HasSubstr("PLEXUS__NTHREADS"), HasSubstr("PLEXUS__SECTION__KEY")));
  EXPECT_THAT(error_of([&] { c.apply_env({{"PLEXUS__WORKER__NTHREADS__X", "2"}}); }),
              HasSubstr("PLEXUS__WORKER__NTHREADS__X"));
}

TEST_F(ConfigTest, EnvValueOfTheWrongTypeNamesVariableKeyAndValue) {
  Config c = Config::defaults();
  EXPECT_EQ(error_of([&] { c.apply_env({{"PLEXUS__WORKER__NTHREADS", "four"}}); }),
            "environment variable PLEXUS__WORKER__NTHREADS: wrong type for 'worker.nthreads': "
            "expected integer, got string (value 'four')");
  EXPECT_THAT(error_of([&] { c.apply_env({{"PLEXUS__WORKER__PLUGIN_PATH", "/a:/b"}}); }),
              HasSubstr("expected array of strings, got string"));
}

TEST_F(ConfigTest, SetTypeChecksFlagValues) {
  Config c = Config::defaults();
  c.set("worker.nthreads", "8");
  c.set("local-cluster.processes", "false");
  c.set("worker.plugin-path", "[\"/x\"]");
  c.set("worker.name", "w-1");
  c.set("scheduler.address", "\"quoted\"");  // string settings take the text as is
  EXPECT_EQ(c.get_int("worker.nthreads"), 8);
  EXPECT_FALSE(c.get_bool("local-cluster.processes"));
  EXPECT_THAT(c.get_string_list("worker.plugin-path"), ElementsAre("/x"));
  EXPECT_EQ(c.get_string("worker.name"), "w-1");
  EXPECT_EQ(c.get_string("scheduler.address"), "\"quoted\"");

  EXPECT_EQ(error_of([&] { c.set("worker.nthreads", "many"); }),
            "command line: wrong type for 'worker.nthreads': expected integer, got string "
            "(value 'many')");
  EXPECT_EQ(error_of([&] { c.set("local-cluster.processes", "1"); }),
            "command line: wrong type for 'local-cluster.processes': expected boolean, got "
            "integer (value '1')");
  EXPECT_EQ(error_of([&] { c.set("worker.nthread", "1"); }),
            "command line: unknown key 'worker.nthread' (did you mean 'worker.nthreads'?)");
  EXPECT_EQ(c.get_int("worker.nthreads"), 8);
}

TEST_F(ConfigTest, LaterLayersWinFileThenEnvThenSet) {
  const std::string file = write("layer.toml",
                                 "[worker]\nnthreads = 1\n"
                                 "connect-timeout-ms = 1\n"
                                 "shutdown-timeout-ms = 1\n");
  Env env = clean_env();
  env["PLEXUS__WORKER__CONNECT_TIMEOUT_MS"] = "2";
  env["PLEXUS__WORKER__SHUTDOWN_TIMEOUT_MS"] = "2";
  Config c = Config::load(file, env);
  c.set("worker.shutdown-timeout-ms", "3");
  EXPECT_EQ(c.get_int("worker.nthreads"), 1);
  EXPECT_EQ(c.get_int("worker.connect-timeout-ms"), 2);
  EXPECT_EQ(c.get_int("worker.shutdown-timeout-ms"), 3);
}

TEST_F(ConfigTest, LoadReadsTheFileNamedByPlexusConfig) {
  Env env = clean_env();
  env["PLEXUS_CONFIG"] = write("named.toml", "[client]\nconnect-timeout-ms = 42\n");
  EXPECT_EQ(Config::load(std::nullopt, env).get_int("client.connect-timeout-ms"), 42);
}

TEST_F(ConfigTest, LoadFailsWhenPlexusConfigNamesAMissingFile) {
  const std::string missing = (dir_ / "missing.toml").string();
  Env env = clean_env();
  env["PLEXUS_CONFIG"] = missing;
  EXPECT_THAT(error_of([&] { Config::load(std::nullopt, env); }), HasSubstr(missing));
  EXPECT_THAT(error_of([&] { Config::load(missing, clean_env()); }), HasSubstr(missing));
}

TEST_F(ConfigTest, LoadIgnoresAnEmptyPlexusConfig) {
  Env env = clean_env();
  env["PLEXUS_CONFIG"] = "";
  EXPECT_EQ(Config::load(std::nullopt, env).get_string("logging.level"), "info");
}

TEST_F(ConfigTest, LoadAppliesUserFilePlexusConfigAndExplicitFileInOrder) {
  write("home/.config/plexus/plexus.toml",
        "[comm]\nlinger-ms = 1\nverify-max-depth = 1\nverify-max-tables = 1\n");
  Env env = clean_env();
  env["PLEXUS_CONFIG"] = write("named.toml", "[comm]\nverify-max-depth = 2\nverify-max-tables = 2\n");
  const std::string explicit_file = write("explicit.toml", "[comm]\nverify-max-tables = 3\n");
  const Config c = Config::load(explicit_file, env);
  EXPECT_EQ(c.get_int("comm.linger-ms"), 1);
  EXPECT_EQ(c.get_int("comm.verify-max-depth"), 2);
  EXPECT_EQ(c.get_int("comm.verify-max-tables"), 3);
}

TEST_F(ConfigTest, LoadPrefersXdgConfigHomeOverHome) {
  write("home/.config/plexus/plexus.toml", "[worker]\nname = \"from-home\"\n");
  write("xdg/plexus/plexus.toml", "[worker]\nname = \"from-xdg\"\n");
  Env env = clean_env();
  EXPECT_EQ(Config::load(std::nullopt, env).get_string("worker.name"), "from-home");
  env["XDG_CONFIG_HOME"] = (dir_ / "xdg").string();
  EXPECT_EQ(Config::load(std::nullopt, env).get_string("worker.name"), "from-xdg");
}

TEST_F(ConfigTest, LoadReportsErrorsInTheUserFile) {
  const std::string user = write("home/.config/plexus/plexus.toml", "[worker]\nthreads = 2\n");
  EXPECT_THAT(error_of([&] { Config::load(std::nullopt, clean_env()); }),
              HasSubstr(user + ":2: unknown key 'worker.threads'"));
}

TEST_F(ConfigTest, GettersRejectUnknownKeysAndOtherTypes) {
  const Config c = Config::defaults();
  EXPECT_THAT(error_of([&] { c.get_string("scheduler.adress"); }),
              HasSubstr("unknown key 'scheduler.adress' (did you mean 'scheduler.address'?)"));
  EXPECT_THROW(c.get_int("scheduler"), ConfigError);
  EXPECT_THAT(error_of([&] { c.get_int("scheduler.address"); }),
              AllOf(HasSubstr("scheduler.address"), HasSubstr("string"), HasSubstr("integer")));
  EXPECT_THROW(c.get_bool("worker.nthreads"), ConfigError);
  EXPECT_THROW(c.get_string_list("worker.name"), ConfigError);
  EXPECT_THROW(c.get_string("local-cluster.processes"), ConfigError);
  EXPECT_THROW(c.get_double("logging.level"), ConfigError);
}

TEST_F(ConfigTest, DumpIsTomlThatReproducesTheConfig) {
  Config c = Config::defaults();
  c.set("worker.name", "quote\" back\\slash\nnewline\ttab \xc3\xa9");
  c.set("worker.plugin-path", "[\"/a b\", \"c\\\"d\"]");
  c.set("scheduler.worker-saturation", "1e-300");
  c.set("scheduler.queue-target-ms", "12345678901234.5");
  c.set("comm.max-message-bytes", "-9223372036854775808");

  Config copy = Config::defaults();
  copy.merge_string(c.dump(), "dump");
  EXPECT_EQ(copy.dump(), c.dump());
  EXPECT_EQ(copy.get_string("worker.name"), "quote\" back\\slash\nnewline\ttab \xc3\xa9");
  EXPECT_THAT(copy.get_string_list("worker.plugin-path"), ElementsAre("/a b", "c\"d"));
  EXPECT_DOUBLE_EQ(copy.get_double("scheduler.worker-saturation"), 1e-300);
  EXPECT_DOUBLE_EQ(copy.get_double("scheduler.queue-target-ms"), 12345678901234.5);
  EXPECT_EQ(copy.get_int("comm.max-message-bytes"), std::numeric_limits<std::int64_t>::min());
}

TEST_F(ConfigTest, CopiesAreIndependentValues) {
  Config a = Config::defaults();
  Config b = a;
  b.set("worker.nthreads", "3");
  EXPECT_EQ(a.get_int("worker.nthreads"), 0);
  a = b;
  EXPECT_EQ(a.get_int("worker.nthreads"), 3);
  Config moved = std::move(b);
  EXPECT_EQ(moved.get_int("worker.nthreads"), 3);
}

// The memory thresholds are floats that may also be false (disabled), from every source; true,
// strings and false for an ordinary float setting are type errors naming the key.
TEST_F(ConfigTest, MemoryThresholdsAreFloatsOrFalse) {
  Config c = Config::defaults();
  EXPECT_EQ(c.get_string("worker.memory-limit"), "auto");
  EXPECT_EQ(c.get_double_or_false("worker.memory-target"), 0.60);
  EXPECT_EQ(c.get_double_or_false("worker.memory-spill"), 0.70);
  EXPECT_EQ(c.get_double_or_false("worker.memory-pause"), 0.80);
  EXPECT_EQ(c.get_double_or_false("worker.memory-terminate"), 0.95);
  EXPECT_EQ(c.get_int("worker.memory-monitor-interval-ms"), 100);
  EXPECT_EQ(c.get_string("worker.local-directory"), "");

  c.merge_string("[worker]\nmemory-target = false\nmemory-pause = 1\n", "t.toml");
  EXPECT_EQ(c.get_double_or_false("worker.memory-target"), std::nullopt);
  EXPECT_EQ(c.get_double_or_false("worker.memory-pause"), 1.0);
  c.set("worker.memory-spill", "false");
  EXPECT_EQ(c.get_double_or_false("worker.memory-spill"), std::nullopt);
  c.apply_env({{"PLEXUS__WORKER__MEMORY_TERMINATE", "false"},
               {"PLEXUS__WORKER__MEMORY_LIMIT", "4000000000"}});
  EXPECT_EQ(c.get_double_or_false("worker.memory-terminate"), std::nullopt);
  EXPECT_EQ(c.get_string("worker.memory-limit"), "4000000000");
  // A dump says false and reads back the same.
  Config copy = Config::defaults();
  copy.merge_string(c.dump(), "dump");
  EXPECT_EQ(copy.dump(), c.dump());
  EXPECT_EQ(copy.get_double_or_false("worker.memory-target"), std::nullopt);

  EXPECT_THAT(error_of([&] { c.merge_string("[worker]\nmemory-target = true\n", "u.toml"); }),
              AllOf(HasSubstr("u.toml:2"), HasSubstr("worker.memory-target"),
                    HasSubstr("float or false"), HasSubstr("boolean")));
  EXPECT_THAT(error_of([&] { c.set("worker.memory-pause", "\"high\""); }),
              AllOf(HasSubstr("worker.memory-pause"), HasSubstr("float or false")));
  EXPECT_THAT(error_of([&] { c.merge_string("[worker]\nmemory-limit = 4000000000\n", "v.toml"); }),
              AllOf(HasSubstr("worker.memory-limit"), HasSubstr("expected string")));
  // Only the thresholds may be false.
  EXPECT_THAT(error_of([&] { c.set("scheduler.worker-saturation", "false"); }),
              HasSubstr("expected float, got boolean"));
  // get_double does not read a setting that may be false; get_double_or_false reads any float.
  EXPECT_THROW(c.get_double("worker.memory-pause"), ConfigError);
  EXPECT_EQ(c.get_double_or_false("scheduler.worker-saturation"), 1.1);
}

}  // namespace
