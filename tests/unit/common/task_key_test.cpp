#include <plexus/common/task_key.hpp>

#include <plexus/codec.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace plexus {
namespace {

using ::testing::MatchesRegex;
using ::testing::Not;

const char* const kUuidPattern =
    "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";

std::string inc_args(std::int64_t x) {
  Writer w;
  w.list(1);
  encode(w, x);
  return w.take();
}

TEST(TaskKeyTest, Format) {
  std::string key = task_key("math.inc", inc_args(10));
  EXPECT_THAT(key, MatchesRegex(R"(^math\.inc-[0-9a-f]{32}$)"));
  // The pattern is not vacuous.
  EXPECT_THAT("mathXinc-" + std::string(32, '0'), Not(MatchesRegex(R"(^math\.inc-[0-9a-f]{32}$)")));
  EXPECT_THAT("math.inc-" + std::string(32, 'A'), Not(MatchesRegex(R"(^math\.inc-[0-9a-f]{32}$)")));
}

// Pinned once: a change to the value encoding or to the hash changes every key in the cluster
// (and any cached result), so it must be deliberate.
TEST(TaskKeyTest, GoldenValue) {
  std::string args = inc_args(10);
  ASSERT_EQ(args, std::string("\x08\x01\x03\x14", 4));
  EXPECT_EQ(task_key("math.inc", args), "math.inc-f45e06a375e2f706ca792760863716ce");
}

TEST(TaskKeyTest, Deterministic) {
  EXPECT_EQ(task_key("math.inc", inc_args(10)), task_key("math.inc", inc_args(10)));
  EXPECT_EQ(task_key("", ""), task_key("", ""));
}

TEST(TaskKeyTest, DifferentCallsGiveDifferentKeys) {
  std::set<std::string> keys;
  for (std::int64_t x = 0; x < 1000; ++x) keys.insert(task_key("math.inc", inc_args(x)));
  EXPECT_EQ(keys.size(), 1000u);
  EXPECT_NE(task_key("math.inc", inc_args(10)), task_key("math.dec", inc_args(10)));
  // The name ends where the 0 byte is: moving bytes between name and arguments changes the key.
  EXPECT_NE(task_key("ab", "c"), task_key("a", "bc"));
  // The hex part itself differs, not only the name prefix.
  EXPECT_NE(task_key("math.inc", inc_args(1)).substr(9),
            task_key("math.dec", inc_args(1)).substr(9));
}

TEST(TaskKeyTest, EqualsOneShotHashOfNameZeroArguments) {
  std::mt19937 rng(99);
  for (int i = 0; i < 50; ++i) {
    std::string name = "plugin.task" + std::to_string(i);
    std::string args(rng() % 5000, '\0');
    for (char& c : args) c = static_cast<char>(rng() & 0xff);
    std::string input = name + '\0' + args;
    XXH128_hash_t h = XXH3_128bits(input.data(), input.size());
    char hex[33];
    std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                  static_cast<unsigned long long>(h.low64));
    EXPECT_EQ(task_key(name, args), name + "-" + hex);
  }
}

TEST(TaskKeyTest, RandomTaskKey) {
  std::string key = random_task_key("io.read");
  ASSERT_EQ(key.substr(0, 8), "io.read-");
  EXPECT_THAT(key.substr(8), MatchesRegex(kUuidPattern));
  EXPECT_NE(random_task_key("io.read"), random_task_key("io.read"));
}

TEST(Uuid4Test, Format) {
  for (int i = 0; i < 1000; ++i) ASSERT_THAT(uuid4(), MatchesRegex(kUuidPattern));
}

TEST(Uuid4Test, Unique) {
  std::set<std::string> seen;
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(seen.insert(uuid4()).second);
}

TEST(Uuid4Test, UniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kEach = 10000;
  std::vector<std::vector<std::string>> out(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&out, t] {
      for (int i = 0; i < kEach; ++i) out[static_cast<std::size_t>(t)].push_back(uuid4());
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> seen;
  for (const auto& v : out) seen.insert(v.begin(), v.end());
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kThreads * kEach));
}

// A forked child must not replay its parent's generator.
TEST(Uuid4Test, ForkedChildGetsItsOwnSequence) {
  uuid4();  // seed this thread's generator before forking
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string u = uuid4();
    ssize_t n = ::write(fds[1], u.data(), u.size());
    ::_exit(n == static_cast<ssize_t>(u.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string parent = uuid4();
  char buf[64] = {};
  ssize_t n = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(n, 36);
  EXPECT_NE(std::string(buf, 36), parent);
}

}  // namespace
}  // namespace plexus
