// The in-memory ring of recent log lines that get_scheduler_logs / get_worker_logs read.
#include <plexus/common/logging.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace plexus {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(LogRingTest, KeepsInfoLinesWhateverStderrShowsNewestLastByModule) {
  set_log_level("error");  // stderr shows errors only; the ring still keeps info
  logger("ringtest-a")->info("first {}", 1);
  logger("ringtest-b")->warn("second");
  logger("ringtest-a")->debug("not kept: below info");
  logger("ringtest-a")->error("third");
  const auto a = recent_log_lines(10, {"ringtest-a"});
  ASSERT_EQ(a.size(), 2u);
  EXPECT_THAT(a[0], AllOf(HasSubstr("[ringtest-a]"), HasSubstr("[info]"), HasSubstr("first 1")));
  EXPECT_THAT(a[1], AllOf(HasSubstr("[ringtest-a]"), HasSubstr("[error]"), HasSubstr("third")));
  const auto both = recent_log_lines(10, {"ringtest-a", "ringtest-b"});
  ASSERT_EQ(both.size(), 3u);
  EXPECT_THAT(both[1], HasSubstr("second"));
  EXPECT_EQ(recent_log_lines(1, {"ringtest-a", "ringtest-b"}).back(), both.back());  // newest
  EXPECT_TRUE(recent_log_lines(0).empty());
  // A more verbose level reaches the ring too.
  set_log_level("debug");
  logger("ringtest-a")->debug("kept now");
  EXPECT_THAT(recent_log_lines(1, {"ringtest-a"}).back(), HasSubstr("kept now"));
  set_log_level("info");
}

TEST(LogRingTest, HoldsAtMostTheRingSize) {
  set_log_level("error");  // quiet on stderr
  for (std::size_t i = 0; i < kLogRingLines + 10; ++i) logger("ringtest-c")->info("line {}", i);
  const auto lines = recent_log_lines(kLogRingLines + 100, {"ringtest-c"});
  ASSERT_EQ(lines.size(), kLogRingLines);
  EXPECT_THAT(lines.back(), HasSubstr("line " + std::to_string(kLogRingLines + 9)));
  set_log_level("info");
}

}  // namespace
}  // namespace plexus
