// Worker memory management end to end: results worth several times the workers' memory limits
// are spilled to disk and read back right (by tasks, and by the client), in worker processes and
// in an in-process LocalCluster; a task that allocates past the terminate threshold gets its
// worker killed and restarted by the nanny, and fails with KilledWorker naming the memory limit.
#include "support/process_cluster.hpp"
#include "support/subprocess.hpp"

#include <plexus/client.hpp>
#include <plexus/common/temp_dir.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// make_bytes(n, seed)'s pattern, as the testing plugin computes it.
std::byte pattern_byte(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (i >> 3) * 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 31;
  return static_cast<std::byte>((x >> ((i & 7) * 8)) & 0xff);
}

std::size_t pattern_errors(const Bytes& b, std::uint64_t seed) {
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < b.size(); ++i) wrong += b[i] != pattern_byte(seed, i) ? 1 : 0;
  return wrong;
}

std::size_t files_under(const std::filesystem::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    n += it->is_regular_file(ec) ? 1 : 0;
  }
  return n;
}

// Polls scheduler_info until the workers' heartbeats report `n` values spilled in all (they
// come every heartbeat interval); returns the last figures.
SchedulerInfo await_spills(Client& client, std::uint64_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    SchedulerInfo info = client.scheduler_info(10s);
    std::uint64_t spilled = 0;
    for (const auto& w : info.workers) spilled += w.spill_count;
    if (spilled >= n || Clock::now() >= deadline) return info;
    std::this_thread::sleep_for(50ms);
  }
}

// 2 workers with a 128 MB limit hold 40 results of 8 MB (320 MB): most are spilled. Tasks that
// read every one of them, and the client fetching some directly, see every byte right; the spill
// directories hold files meanwhile and are gone after the cluster stops.
TEST(MemoryTest, ResultsWorthSeveralMemoryLimitsAreSpilledAndReadBackRight) {
  TempDir local("plexus-memory-test");
  ProcessCluster cluster({.n_workers = 2,
                          .nthreads = 2,
                          .config_toml = "[worker]\n"
                                         "memory-limit = \"128MB\"\n"
                                         "memory-terminate = false\n"
                                         "local-directory = \"" + local.str() + "\"\n"
                                         "[scheduler]\n"
                                         "heartbeat-interval-ms = 100\n"});
  Client client(cluster.address());
  constexpr std::int64_t kN = 40;
  constexpr std::int64_t kSize = 8'000'000;
  std::vector<Future<Bytes>> blobs;
  for (std::int64_t i = 0; i < kN; ++i) {
    blobs.push_back(client.submit<Bytes>("testing.make_bytes", kSize, i));
  }
  const auto made = wait(blobs, 120s);
  ASSERT_EQ(made.not_done.size(), 0u);

  // At most 0.6 * 128 MB of results stay in each worker's memory: at least 320 - 2 * 76.8 MB
  // went to disk.
  const std::uint64_t at_least = (kN * kSize - 2 * 76'800'000) / kSize;
  SchedulerInfo info = await_spills(client, at_least, 20s);
  std::uint64_t spilled = 0;
  for (const auto& w : info.workers) {
    spilled += w.spill_count;
    EXPECT_EQ(w.memory_limit, 128'000'000u) << w.name;
    EXPECT_LE(w.managed_bytes, 76'800'000u) << w.name;
    EXPECT_GT(w.process_bytes, 0u) << w.name;
  }
  EXPECT_GE(spilled, at_least);
  EXPECT_GT(files_under(local.path()), 0u) << "no spilled file under " << local.str();

  // Every result, read by a task where it lives (or fetched to another worker).
  std::vector<Future<std::int64_t>> checks;
  for (std::int64_t i = 0; i < kN; ++i) {
    checks.push_back(client.submit<std::int64_t>("testing.pattern_errors", blobs[i], i));
  }
  for (std::int64_t i = 0; i < kN; ++i) {
    EXPECT_EQ(checks[static_cast<std::size_t>(i)].result(120s), 0) << "result " << i;
  }
  // The oldest results (spilled first) fetched by the client.
  for (std::size_t i : {0u, 1u, 2u}) {
    const Bytes b = blobs[i].result(60s);
    ASSERT_EQ(b.size(), static_cast<std::size_t>(kSize));
    EXPECT_EQ(pattern_errors(b, i), 0u) << "result " << i;
  }
  info = client.scheduler_info(10s);
  for (const auto& w : info.workers) EXPECT_FALSE(w.paused) << w.name;

  client.close();
  EXPECT_TRUE(cluster.stop_and_list_left().empty());
  EXPECT_EQ(files_under(local.path()), 0u) << "spilled files left behind under " << local.str();
}

// Spilled files that vanish (a cleaner, a damaged disk): the worker reports those results lost,
// the scheduler recomputes them, and the tasks that read them still see every byte right.
TEST(MemoryTest, SpilledFilesThatVanishAreRecomputed) {
  TempDir local("plexus-memory-test");
  ProcessCluster cluster({.n_workers = 1,
                          .nthreads = 2,
                          .config_toml = "[worker]\n"
                                         "memory-limit = \"64MB\"\n"
                                         "memory-terminate = false\n"
                                         "local-directory = \"" + local.str() + "\"\n"
                                         "[scheduler]\n"
                                         "heartbeat-interval-ms = 100\n"});
  Client client(cluster.address());
  constexpr std::int64_t kN = 16;
  constexpr std::int64_t kSize = 4'000'000;
  std::vector<Future<Bytes>> blobs;
  for (std::int64_t i = 0; i < kN; ++i) {
    blobs.push_back(client.submit<Bytes>("testing.make_bytes", kSize, i));
  }
  ASSERT_EQ(wait(blobs, 60s).not_done.size(), 0u);
  await_spills(client, 6, 20s);  // 64 MB of results, at most 38.4 MB in memory
  std::size_t removed = 0;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(local.path())) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  for (const auto& f : files) removed += std::filesystem::remove(f) ? 1 : 0;
  ASSERT_GE(removed, 6u);

  std::vector<Future<std::int64_t>> checks;
  for (std::int64_t i = 0; i < kN; ++i) {
    checks.push_back(client.submit<std::int64_t>("testing.pattern_errors", blobs[i], i));
  }
  for (std::int64_t i = 0; i < kN; ++i) {
    EXPECT_EQ(checks[static_cast<std::size_t>(i)].result(60s), 0) << "result " << i;
  }
  std::size_t lost_reports = 0;
  for (const auto& line : client.get_scheduler_logs()) {
    lost_reports += line.find("worker lost data") != std::string::npos ? 1 : 0;
  }
  EXPECT_GE(lost_reports, 1u);
  client.close();
  EXPECT_TRUE(cluster.stop_and_list_left().empty());
}

// An in-process LocalCluster with a memory limit spills by managed memory alone (the process's
// memory is not the workers' own) and reads the results back right.
TEST(MemoryTest, InProcessLocalClusterSpillsByManagedMemory) {
  Client client(LocalClusterOptions{.n_workers = 1,
                                    .threads_per_worker = 1,
                                    .transport = "inproc",
                                    .processes = false,
                                    .memory_limit = "20MB"});
  constexpr std::int64_t kN = 10;
  constexpr std::int64_t kSize = 2'000'000;
  std::vector<Future<Bytes>> blobs;
  for (std::int64_t i = 0; i < kN; ++i) {
    blobs.push_back(client.submit<Bytes>("testing.make_bytes", kSize, i));
  }
  std::vector<Future<std::int64_t>> checks;
  for (std::int64_t i = 0; i < kN; ++i) {
    checks.push_back(client.submit<std::int64_t>("testing.pattern_errors", blobs[i], i));
  }
  for (auto& c : checks) EXPECT_EQ(c.result(60s), 0);
  const SchedulerInfo info = await_spills(client, 4, 20s);
  ASSERT_EQ(info.workers.size(), 1u);
  const WorkerState& w = info.workers[0];
  EXPECT_EQ(w.memory_limit, 20'000'000u);
  EXPECT_GE(w.spill_count, 4u);  // 20 MB of results, at most 12 MB in memory
  EXPECT_LE(w.managed_bytes, 12'000'000u);
  EXPECT_EQ(w.process_bytes, 0u) << "in-process workers do not measure the process";
  const Bytes first = blobs[0].result(30s);
  EXPECT_EQ(pattern_errors(first, 0), 0u);
}

TEST(MemoryTest, BadMemoryLimitForALocalClusterIsAClearError) {
  try {
    Client client(LocalClusterOptions{.n_workers = 1,
                                      .transport = "inproc",
                                      .processes = false,
                                      .memory_limit = "lots"});
    ADD_FAILURE() << "a LocalCluster started with memory_limit 'lots'";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("LocalClusterOptions::memory_limit"));
    EXPECT_THAT(std::string(e.what()), HasSubstr("memory limit 'lots': not a number"));
  }
}

// plexus-worker --memory-limit with a value it cannot read exits 1 before it starts anything,
// and says why (with or without a nanny).
TEST(MemoryTest, BadMemoryLimitFlagStopsTheWorkerWithAClearError) {
  for (const bool nanny : {true, false}) {
    std::vector<std::string> argv = {bin("plexus-worker"), "tcp://127.0.0.1:1", "--memory-limit",
                                     "12 apples"};
    if (!nanny) argv.emplace_back("--no-nanny");
    const CommandResult r = run_command(argv, {.timeout = 10s});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("worker.memory-limit: memory limit '12 apples': unknown unit "
                                 "'apples'"));
  }
}

// A task whose own memory passes memory-pause: the worker pauses, the scheduler holds new work
// back meanwhile (queued, although a thread is free), and once the task frees its memory the
// worker resumes and the held work runs.
TEST(MemoryTest, WorkerPausedByMemoryGetsNoWorkUntilItResumes) {
  TempDir tmp("plexus-pause-test");
  const std::string gate = tmp.file("release");
  ProcessCluster cluster({.n_workers = 1,
                          .nthreads = 2,
                          .config_toml = "[worker]\n"
                                         "memory-limit = \"200MB\"\n"
                                         "memory-terminate = false\n"
                                         "[scheduler]\n"
                                         "heartbeat-interval-ms = 100\n"});
  Client client(cluster.address());
  auto hog = client.submit<std::int64_t>("testing.hog_until_file", std::int64_t{180'000'000},
                                         gate, std::int64_t{60'000});
  const auto deadline = Clock::now() + 30s;
  SchedulerInfo info;
  while (true) {
    info = client.scheduler_info(10s);
    if (info.workers.size() == 1 && info.workers[0].paused) break;
    ASSERT_LT(Clock::now(), deadline) << "the worker did not pause";
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(info.workers[0].process_bytes, 160'000'000u);

  auto inc = client.submit<std::int64_t>("math.inc", std::int64_t{41});
  // The scheduler has it (the submit and this request travel in order) and holds it back.
  info = client.scheduler_info(10s);
  EXPECT_EQ(info.queued, 1u);
  ASSERT_EQ(info.workers.size(), 1u);
  EXPECT_TRUE(info.workers[0].paused);
  EXPECT_EQ(info.workers[0].processing, 1u);  // the hog only
  EXPECT_FALSE(inc.done());

  std::ofstream(gate) << "go\n";
  EXPECT_EQ(hog.result(30s), 180'000'000);
  EXPECT_EQ(inc.result(30s), 42);
  info = client.scheduler_info(10s);
  EXPECT_FALSE(info.workers.at(0).paused);
  client.close();
  EXPECT_TRUE(cluster.stop_and_list_left().empty());
}

// A task that allocates past memory-terminate: the nanny kills its worker (and restarts it) each
// time, and after allowed-failures + 1 deaths the task fails with KilledWorker naming the memory
// limit. The restarted worker runs other work.
TEST(MemoryTest, NannyKillsAWorkerPastTheTerminateThresholdAndRestartsIt) {
  ProcessCluster cluster({.n_workers = 1,
                          .nthreads = 1,
                          .config_toml = "[worker]\n"
                                         "memory-limit = \"200MB\"\n"
                                         "[scheduler]\n"
                                         "allowed-failures = 1\n"
                                         "[nanny]\n"
                                         "restart-backoff-ms = 20\n"});
  Client client(cluster.address());
  auto hog = client.submit<std::int64_t>("testing.hog", std::int64_t{400'000'000},
                                         std::int64_t{20'000});
  try {
    hog.result(60s);
    ADD_FAILURE() << "the task that uses 400 MB under a 200 MB limit succeeded";
  } catch (const KilledWorker& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr("was running on 2 workers that died"));
    EXPECT_THAT(message, HasSubstr("exceeded its memory limit (RSS "));
    EXPECT_THAT(message, HasSubstr(" of 200 MB; worker.memory-terminate = 0.95)"));
  }
  // The nanny started the worker again.
  EXPECT_EQ(client.submit<std::int64_t>("math.inc", std::int64_t{41}).result(30s), 42);
  EXPECT_TRUE(cluster.workers()[0]->running());
  client.close();
  EXPECT_TRUE(cluster.stop_and_list_left().empty());
}

}  // namespace
}  // namespace plexus::testing
