// Memory limits and thresholds as plexus-worker --memory-limit and worker.memory-* give them.
#include <plexus/config/config.hpp>
#include <plexus/worker/memory_policy.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace plexus::worker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string limit_error(const std::string& text) {
  try {
    parse_memory_limit(text, 1);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "'" << text << "' was accepted";
  return {};
}

TEST(MemoryPolicyTest, ParsesBytesUnitsFractionsAutoAndNone) {
  const std::uint64_t ram = system_memory_bytes();
  ASSERT_GT(ram, 64u << 20);
  EXPECT_EQ(parse_memory_limit("4000000", 1), 4000000u);
  EXPECT_EQ(parse_memory_limit("64MB", 1), 64000000u);
  EXPECT_EQ(parse_memory_limit("64 mb", 1), 64000000u);
  EXPECT_EQ(parse_memory_limit("512MiB", 1), 512ull << 20);
  EXPECT_EQ(parse_memory_limit("1.5KiB", 1), 1536u);
  EXPECT_EQ(parse_memory_limit(" 800kB ", 1), 800000u);
  EXPECT_EQ(parse_memory_limit("2k", 1), 2000u);
  EXPECT_EQ(parse_memory_limit("100B", 1), 100u);
  EXPECT_EQ(parse_memory_limit("1e6", 1), 1000000u);
  EXPECT_EQ(parse_memory_limit("0.5", 1), ram / 2);
  EXPECT_EQ(parse_memory_limit("1", 1), ram);
  EXPECT_EQ(parse_memory_limit("0", 1), 0u);
  EXPECT_EQ(parse_memory_limit("none", 1), 0u);
  EXPECT_EQ(parse_memory_limit("None", 1), 0u);
  EXPECT_EQ(parse_memory_limit("", 1), 0u);
  // A limit above the machine's memory is lowered to it.
  EXPECT_EQ(parse_memory_limit("1000TB", 1), ram);
  // auto: the worker's share by threads.
  const std::uint32_t cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(parse_memory_limit("auto", 1),
            static_cast<std::uint64_t>(static_cast<double>(ram) * std::min(1.0, 1.0 / cores)));
  EXPECT_EQ(parse_memory_limit("AUTO", 0), ram);  // 0 threads = one per core: all of it
  EXPECT_EQ(parse_memory_limit("auto", cores * 4), ram);
}

TEST(MemoryPolicyTest, BadLimitsSayWhatIsAccepted) {
  EXPECT_THAT(limit_error("lots"), AllOf(HasSubstr("memory limit 'lots'"),
                                         HasSubstr("not a number"), HasSubstr("512MiB"),
                                         HasSubstr("auto")));
  EXPECT_THAT(limit_error("-1GB"), HasSubstr("negative"));
  EXPECT_THAT(limit_error("2 parsecs"), HasSubstr("unknown unit 'parsecs'"));
  EXPECT_THAT(limit_error("2GBB"), HasSubstr("unknown unit 'gbb'"));
  EXPECT_THAT(limit_error("inf"), HasSubstr("not a finite number"));
  EXPECT_THAT(limit_error("0.1B"), HasSubstr("less than one byte"));
  EXPECT_THAT(limit_error("1e30"), HasSubstr("too large"));
}

TEST(MemoryPolicyTest, ReadsTheConfigAndChecksFractions) {
  auto c = config::Config::defaults();
  c.set("worker.memory-limit", "100MB");
  c.set("worker.memory-target", "false");
  c.set("worker.memory-pause", "0.5");
  MemoryPolicy p = memory_policy(c, 1);
  EXPECT_EQ(p.limit, 100000000u);
  EXPECT_EQ(p.target, std::nullopt);
  EXPECT_EQ(p.spill, 0.70);
  EXPECT_EQ(p.pause, 0.5);
  EXPECT_EQ(p.terminate, 0.95);
  EXPECT_EQ(p.monitor_interval_ms, 100u);
  EXPECT_TRUE(p.measure_process);
  EXPECT_EQ(p.bytes(p.target), std::nullopt);
  EXPECT_EQ(p.bytes(p.pause), 50000000u);
  EXPECT_EQ(p.bytes(p.spill), 70000000u);
  p.limit = 0;  // no limit: no threshold applies
  EXPECT_EQ(p.bytes(p.pause), std::nullopt);

  c.set("worker.memory-spill", "1.5");
  try {
    memory_policy(c, 1);
    ADD_FAILURE() << "a fraction above 1 was accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("worker.memory-spill"), HasSubstr("at most 1")));
  }
  c.set("worker.memory-spill", "0.7");
  c.set("worker.memory-limit", "12 apples");
  try {
    memory_policy(c, 1);
    ADD_FAILURE() << "a bad limit was accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("worker.memory-limit"), HasSubstr("unknown unit 'apples'")));
  }
  c.set("worker.memory-limit", "auto");
  c.set("worker.memory-monitor-interval-ms", "0");
  EXPECT_THROW(memory_policy(c, 1), config::ConfigError);
}

TEST(MemoryPolicyTest, MeasuresProcessMemoryAndFormatsSizes) {
  const auto rss = process_rss_bytes();
  ASSERT_TRUE(rss);
  EXPECT_GT(*rss, 0u);
  const auto by_pid = process_rss_bytes(::getpid());
  ASSERT_TRUE(by_pid);
  EXPECT_GT(*by_pid, 0u);
  // A block written page by page shows up in the process's memory.
  std::vector<char> block(64 << 20);
  for (std::size_t i = 0; i < block.size(); i += 4096) block[i] = 1;
  const auto after = process_rss_bytes();
  ASSERT_TRUE(after);
  EXPECT_GE(*after, *rss + (48u << 20));
  EXPECT_EQ(process_rss_bytes(999999999), std::nullopt);

  EXPECT_EQ(format_bytes(12), "12 B");
  EXPECT_EQ(format_bytes(900000), "900 kB");
  EXPECT_EQ(format_bytes(2100000000), "2.1 GB");
  EXPECT_EQ(format_bytes(2000000000), "2.0 GB");
  EXPECT_EQ(format_bytes(134217728), "134 MB");
}

}  // namespace
}  // namespace plexus::worker
