// The `plexus` command line and the daemons' own flags and signal handling, run as child
// processes with captured output.
#include "support/process_cluster.hpp"
#include "support/subprocess.hpp"

#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class CliTest : public ::testing::Test {
 protected:
  void start(ProcessClusterOptions options = {}) {
    cluster_ = std::make_unique<ProcessCluster>(std::move(options));
  }
  void TearDown() override {
    if (cluster_) {
      EXPECT_THAT(cluster_->stop_and_list_left(), ::testing::IsEmpty()) << "daemons left";
    }
  }

  CommandResult plexus(std::vector<std::string> args, const std::string& stdin_text = "") {
    args.insert(args.begin(), bin("plexus"));
    return run_command(args, {.stdin_text = stdin_text, .timeout = 20s});
  }

  std::unique_ptr<ProcessCluster> cluster_;
};

TEST_F(CliTest, SubmitPrintsResult) {
  start();
  auto r = plexus({"submit", "--scheduler", cluster_->address(), "math.square", "7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "49\n");
}

TEST_F(CliTest, SubmitStringPrintsJson) {
  start();
  auto r = plexus({"submit", "--scheduler", cluster_->address(), "testing.echo", "\"ann\""});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "\"ann\"\n");
}

TEST_F(CliTest, SchedulerFileForWorkerAndSubmit) {
  start({.workers_use_scheduler_file = true});
  auto r = plexus({"submit", "--scheduler-file", cluster_->scheduler_file(), "math.inc", "41"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
}

TEST_F(CliTest, MapPrintsResultsInInputOrder) {
  start();
  auto r = plexus({"map", "--scheduler", cluster_->address(), "math.inc"}, "[1]\n[2]\n[3]\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "2\n3\n4\n");
}

TEST_F(CliTest, FailingTaskInMapExitsNonZeroWithTheError) {
  start();
  auto r = plexus({"map", "--scheduler", cluster_->address(), "testing.fail"},
                  "[\"first failure\"]\n");
  ASSERT_FALSE(r.timed_out);
  ASSERT_TRUE(r.exit_code.has_value());
  EXPECT_NE(*r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("first failure"));
}

TEST_F(CliTest, HelpAndVersionExitZero) {
  for (const char* program : {"plexus", "plexus-scheduler", "plexus-worker"}) {
    for (const char* flag : {"--help", "--version"}) {
      auto r = run_command({bin(program), flag}, {.timeout = 10s});
      EXPECT_EQ(r.exit_code, 0) << program << " " << flag << ": " << r.err;
      EXPECT_FALSE(r.out.empty()) << program << " " << flag;
    }
  }
  auto r = run_command({bin("plexus"), "--version"}, {.timeout = 10s});
  EXPECT_THAT(r.out, HasSubstr("Plexus"));
}

TEST_F(CliTest, SigtermStopsDaemonsCleanly) {
  start({.n_workers = 2});
  // Make sure both daemons are fully up and connected before the signal.
  auto r = plexus({"submit", "--scheduler", cluster_->address(), "math.inc", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto pids = cluster_->pids();
  const auto start_time = std::chrono::steady_clock::now();
  auto statuses = cluster_->stop(5s);
  EXPECT_LT(std::chrono::steady_clock::now() - start_time, 8s);
  ASSERT_EQ(statuses.size(), 3u);
  for (int status : statuses) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << describe_wait_status(status);
  }
  for (int pid : pids) EXPECT_FALSE(process_exists(pid)) << pid;
  EXPECT_THAT(child_pids(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace plexus::testing
