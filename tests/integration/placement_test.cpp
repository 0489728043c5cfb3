// Placement end to end (issue 4): restrictions to workers and resources, locality, balance and
// work stealing, on clusters of real daemons. Every check counts where results live (who_has,
// has_what) or which tasks overlapped; none depends on how fast the machine is.
#include "support/process_cluster.hpp"
#include "support/subprocess.hpp"

#include <plexus/client.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using I64 = std::int64_t;

/// Data address of the worker named `name`.
std::string address_of(Client& client, const std::string& name) {
  for (const auto& w : client.scheduler_info().workers) {
    if (w.name == name) return w.address;
  }
  ADD_FAILURE() << "no worker named " << name;
  return {};
}

/// The single holder of each future's result.
template <class T>
std::vector<std::string> holders(Client& client, const std::vector<Future<T>>& fs) {
  std::vector<std::string> out;
  const auto where = client.who_has(fs);
  for (const auto& f : fs) {
    const auto& hs = where.at(std::string(f.key()));
    out.push_back(hs.size() == 1 ? hs[0] : "holders: " + std::to_string(hs.size()));
  }
  return out;
}

TEST(PlacementTest, TasksRestrictedToAWorkerRunThereAndLooseOnesRunAnywhere) {
  ProcessCluster cluster({.transport = "tcp", .n_workers = 3, .nthreads = 2});
  Client client(cluster.address());
  client.wait_for_workers(3, 10s);
  const std::string w1 = address_of(client, "w1");

  std::vector<I64> xs(24);
  for (I64 i = 0; i < 24; ++i) xs[static_cast<std::size_t>(i)] = i;
  auto by_name = client.map<I64>(SubmitOptions{.workers = {"w1"}}, "math.square", xs);
  auto by_address = client.map<I64>(SubmitOptions{.pure = false, .workers = {w1}}, "math.inc", xs);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(by_name[i].result(10s), xs[i] * xs[i]);
    EXPECT_EQ(by_address[i].result(10s), xs[i] + 1);
  }
  for (const auto& h : holders(client, by_name)) EXPECT_EQ(h, w1);
  for (const auto& h : holders(client, by_address)) EXPECT_EQ(h, w1);

  // A worker that is not there: allow_other_workers runs it anyway.
  auto loose = client.submit<I64>(
      SubmitOptions{.workers = {"nobody"}, .allow_other_workers = true}, "math.inc", I64{41});
  EXPECT_EQ(loose.result(10s), 42);
  // Without it the task waits for such a worker, and runs once it joins.
  auto strict = client.submit<I64>(SubmitOptions{.workers = {"w3"}}, "math.inc", I64{1});
  EXPECT_FALSE(strict.wait(300ms));
  cluster.add_worker();  // named w3
  EXPECT_EQ(strict.result(10s), 2);
  EXPECT_THAT(holders(client, std::vector{strict}), ElementsAre(address_of(client, "w3")));
}

TEST(PlacementTest, ResourceTasksRunOnlyWhereOfferedAndNeverMoreAtOnceThanOffered) {
  ProcessCluster cluster({.transport = "tcp", .n_workers = 1, .nthreads = 4});
  cluster.add_worker({"--resources", "GPU=1"});  // w1, 4 threads but one GPU
  Client client(cluster.address());
  client.wait_for_workers(2, 10s);
  const auto info = client.scheduler_info();
  for (const auto& w : info.workers) {
    if (w.name == "w1") {
      EXPECT_EQ(w.resources, (std::map<std::string, double>{{"GPU", 1}}));
    } else {
      EXPECT_TRUE(w.resources.empty());
    }
  }

  TempDir dir;
  const std::string log = dir.file("intervals.log");
  std::vector<I64> xs{1, 2, 3, 4, 5, 6};
  auto fs = client.map<I64>(SubmitOptions{.resources = {{"GPU", 1}}}, "testing.timed_interval",
                            xs, std::vector<I64>(xs.size(), 60),
                            std::vector<std::string>(xs.size(), log));
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(fs[i].result(20s), xs[i]);
  for (const auto& h : holders(client, fs)) EXPECT_EQ(h, address_of(client, "w1"));

  // The intervals, sorted by start: each begins after the previous one ended.
  std::vector<std::pair<I64, I64>> spans;
  std::istringstream in(read_file(log));
  I64 pid = 0, start = 0, end = 0;
  while (in >> pid >> start >> end) spans.emplace_back(start, end);
  ASSERT_EQ(spans.size(), xs.size());
  std::sort(spans.begin(), spans.end());
  for (std::size_t i = 1; i < spans.size(); ++i) {
    EXPECT_GE(spans[i].first, spans[i - 1].second) << "two GPU=1 tasks overlapped on one GPU";
  }
}

TEST(PlacementTest, BadResourcesAreRefusedClearly) {
  const auto r = run_command({bin("plexus-worker"), "tcp://127.0.0.1:1", "--no-nanny",
                              "--resources", "GPU"},
                             {.timeout = 20s});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("'GPU' is not NAME=AMOUNT"));
  const auto neg = run_command({bin("plexus-worker"), "tcp://127.0.0.1:1", "--resources",
                                "GPU=-1"},
                               {.timeout = 20s});
  EXPECT_EQ(neg.exit_code, 1);
  EXPECT_THAT(neg.err, HasSubstr("is not a number >= 0"));

  Client client(LocalClusterOptions{
      .n_workers = 1, .threads_per_worker = 1, .transport = "inproc", .processes = false});
  EXPECT_THROW(client.submit<I64>(SubmitOptions{.resources = {{"GPU", -1}}}, "math.inc", I64{1}),
               std::invalid_argument);
  EXPECT_THROW(client.submit<I64>(SubmitOptions{.workers = {""}}, "math.inc", I64{1}),
               std::invalid_argument);
}

// Locality: a consumer runs where its large input already is, instead of moving 100 MB.
TEST(PlacementTest, TaskRunsWhereItsLargeInputLives) {
  ProcessCluster cluster({.transport = "tcp", .n_workers = 4, .nthreads = 1});
  Client client(cluster.address());
  client.wait_for_workers(4, 10s);
  const std::string a = address_of(client, "w2");
  constexpr I64 kBytes = 100 * 1000 * 1000;
  auto big = client.submit<Bytes>(SubmitOptions{.workers = {"w2"}}, "testing.bytes", kBytes);
  ASSERT_TRUE(big.wait(30s));
  EXPECT_THAT(holders(client, std::vector{big}), ElementsAre(a));

  std::vector<Future<I64>> lens;
  for (int i = 0; i < 4; ++i) {  // one after another: each finds every worker idle
    lens.push_back(client.submit<I64>(SubmitOptions{.pure = false}, "testing.bytes_len", big));
    EXPECT_EQ(lens.back().result(30s), kBytes);
  }
  for (const auto& h : holders(client, lens)) EXPECT_EQ(h, a);
  EXPECT_THAT(holders(client, std::vector{big}), ElementsAre(a)) << "the input was copied";
}

// Balance: independent tasks spread evenly (counts of results per worker, not timings).
TEST(PlacementTest, IndependentTasksSpreadEvenlyOverWorkers) {
  ProcessCluster cluster({.transport = "tcp", .n_workers = 4, .nthreads = 1});
  Client client(cluster.address());
  client.wait_for_workers(4, 10s);
  constexpr int kTasks = 1000;
  std::vector<I64> xs(kTasks);
  for (int i = 0; i < kTasks; ++i) xs[static_cast<std::size_t>(i)] = i;
  auto fs = client.map<I64>("testing.slow_square", xs, std::vector<I64>(kTasks, 10));
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_EQ(fs[static_cast<std::size_t>(i)].result(60s), I64{i} * i);
  }
  std::map<std::string, int> per_worker;
  for (const auto& h : holders(client, fs)) ++per_worker[h];
  ASSERT_EQ(per_worker.size(), 4u);
  int total = 0;
  for (const auto& [worker, n] : per_worker) {
    total += n;
    EXPECT_LE(n, kTasks * 35 / 100) << worker << " ran " << n << " of " << kTasks;
  }
  EXPECT_EQ(total, kTasks);
}

// Work stealing: a worker that joins after the work was handed out takes tasks another worker
// had queued but not started.
TEST(PlacementTest, LateWorkerStealsQueuedWork) {
  ProcessCluster cluster({.transport = "tcp", .n_workers = 1, .nthreads = 1});
  Client client(cluster.address());
  client.wait_for_workers(1, 10s);
  // Teach the scheduler how long these take, so a queue of two counts as a backlog.
  ASSERT_EQ(client.submit<I64>("testing.slow_square", I64{0}, I64{300}).result(10s), 0);
  // Both go to w0 (its saturation is two tasks on one thread); nothing waits on the scheduler.
  auto a = client.submit<I64>("testing.slow_square", I64{1}, I64{1500});
  auto b = client.submit<I64>("testing.slow_square", I64{2}, I64{1500});
  cluster.add_worker();  // w1: idle, with nothing queued for it but what it steals
  EXPECT_EQ(a.result(20s), 1);
  EXPECT_EQ(b.result(20s), 4);
  const auto where = holders(client, std::vector{a, b});
  EXPECT_NE(where[0], where[1]) << "both ran on " << where[0];
}

}  // namespace
}  // namespace plexus::testing
