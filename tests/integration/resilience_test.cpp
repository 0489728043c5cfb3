// Failure end to end (issue 4): workers killed with SIGKILL in the middle of a map and of a sum
// tree, a task that crashes every worker it runs on, a worker stopped past worker-ttl, and the
// nanny that supervises each worker process.
//
// Real daemons on loopback TCP (free ports). Short heartbeats and TTLs come from a config file
// given to every daemon. Random kill points are seeded; the seed is printed with any failure.
#include "support/process_cluster.hpp"
#include "support/subprocess.hpp"

#include <plexus/client.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kMapSize = 10000;
std::int64_t duration_ms(std::int64_t i) { return 1 + (i * 7) % 20; }  // 1 to 20 ms

// Short heartbeats, so that silent workers are noticed within a second and a half.
constexpr const char* kShortTtl =
    "[scheduler]\n"
    "heartbeat-interval-ms = 100\n"
    "worker-ttl-ms = 1500\n";

std::uint32_t fresh_seed() {
  std::random_device rd;
  return rd();
}

// Rounds of one sleeping task per worker thread until `n` distinct worker processes have run one:
// every worker has joined. Returns their pids.
std::set<std::int64_t> await_workers(Client& client, std::size_t n, std::size_t threads,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::set<std::int64_t> seen;
  SubmitOptions impure;
  impure.pure = false;
  while (seen.size() < n) {
    if (Clock::now() > deadline) {
      ADD_FAILURE() << "only " << seen.size() << " of " << n << " workers joined";
      break;
    }
    std::vector<std::int64_t> ms(n * threads, 20);
    for (auto& f : client.map<std::int64_t>(impure, "testing.worker_pid", ms)) {
      seen.insert(f.result(10s));
    }
  }
  return seen;
}

// Waits for a daemon to exit; its wait status, or nothing at the deadline.
std::optional<int> wait_exit(ChildProcess& p, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (p.running()) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
  return p.exit_status();
}

std::vector<std::string> lines_of(const std::string& path) {
  std::istringstream in(read_file(path));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Polls until `path` holds at least `n` lines starting with `prefix`; false at the deadline.
bool wait_for_lines(const std::string& path, const std::string& prefix, std::size_t n,
                    std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    std::size_t count = 0;
    for (const auto& l : lines_of(path)) count += l.starts_with(prefix) ? 1 : 0;
    if (count >= n) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// ---- the product owner's scenarios ----

// kill -9 of 2 of 4 workers (each under a nanny, which reports the death at once and restarts
// the worker) at random points of a 10,000-task map of 1-20 ms tasks: every result is correct
// and arrives once.
TEST(ResilienceTest, KillNineOfTwoOfFourWorkersDuringAMap) {
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  ProcessCluster cluster({.n_workers = 4, .nthreads = 8});
  Client client(cluster.address());
  await_workers(client, 4, 8, 20s);
  std::vector<int> pids;
  for (std::size_t i = 0; i < 4; ++i) {
    auto pid = cluster.worker_pid(i);
    ASSERT_TRUE(pid) << "worker " << i;
    pids.push_back(*pid);
  }
  // Two distinct victims, each killed once result number `at` has arrived.
  std::vector<std::size_t> order{0, 1, 2, 3};
  std::shuffle(order.begin(), order.end(), rng);
  std::uniform_int_distribution<std::int64_t> point(500, kMapSize - 1500);
  std::vector<std::int64_t> at{point(rng), point(rng)};
  std::sort(at.begin(), at.end());
  if (at[1] - at[0] < 200) at[1] = at[0] + 200;

  std::vector<std::int64_t> xs(kMapSize), ms(kMapSize);
  for (std::int64_t i = 0; i < kMapSize; ++i) {
    xs[static_cast<std::size_t>(i)] = i;
    ms[static_cast<std::size_t>(i)] = duration_ms(i);
  }
  const auto t0 = Clock::now();
  auto futures = client.map<std::int64_t>("testing.slow_square", xs, ms);
  std::multiset<std::int64_t> seen;
  std::size_t next_kill = 0;
  for (std::int64_t i = 0; i < kMapSize; ++i) {
    const std::int64_t v = futures[static_cast<std::size_t>(i)].result(60s);
    EXPECT_EQ(v, i * i) << "result " << i;
    seen.insert(v);
    if (next_kill < 2 && i == at[next_kill]) {
      ASSERT_EQ(::kill(pids[order[next_kill]], SIGKILL), 0);
      ++next_kill;
    }
  }
  const auto took = Clock::now() - t0;
  EXPECT_EQ(next_kill, 2u);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kMapSize));
  EXPECT_EQ(std::set<std::int64_t>(seen.begin(), seen.end()).size(),
            static_cast<std::size_t>(kMapSize));
  // Their nannies started them again.
  for (std::size_t k = 0; k < 2; ++k) {
    EXPECT_TRUE(cluster.worker_pid(order[k], 10s, pids[order[k]])) << "worker " << order[k];
  }
  std::cout << "[ resilience ] 10,000-task map with 2 of 4 workers killed at results " << at[0]
            << " and " << at[1] << ": "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  client.close();
  cluster.stop();
}

// The same through `plexus map`, with workers that have no nanny: the scheduler notices the two
// deaths through missing heartbeats (worker-ttl 1.5 s).
TEST(ResilienceTest, KillNineDuringACommandLineMap) {
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  ProcessCluster cluster(
      {.n_workers = 4, .nthreads = 8, .nanny = false, .config_toml = kShortTtl});
  {
    Client client(cluster.address());
    await_workers(client, 4, 8, 20s);
    client.close();
  }
  std::string input;
  for (std::int64_t i = 0; i < kMapSize; ++i) {
    input.append("[").append(std::to_string(i)).append(", ");
    input.append(std::to_string(duration_ms(i))).append("]\n");
  }
  CommandResult result;
  std::thread runner([&] {
    result = run_command({bin("plexus"), "map", "--scheduler", cluster.address(), "--timeout",
                          "60", "testing.slow_square"},
                         {.stdin_text = input, .timeout = 80s});
  });
  std::vector<std::size_t> order{0, 1, 2, 3};
  std::shuffle(order.begin(), order.end(), rng);
  std::uniform_int_distribution<int> point_ms(300, 1500);
  std::vector<int> at{point_ms(rng), point_ms(rng)};
  std::sort(at.begin(), at.end());
  const auto t0 = Clock::now();
  for (std::size_t k = 0; k < 2; ++k) {
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(at[k]));
    ::kill(cluster.workers()[order[k]]->pid(), SIGKILL);
  }
  runner.join();
  ASSERT_FALSE(result.timed_out);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::istringstream out(result.out);
  std::int64_t i = 0;
  for (std::string line; std::getline(out, line); ++i) {
    ASSERT_LT(i, kMapSize) << "more lines than inputs";
    EXPECT_EQ(line, std::to_string(i * i)) << "line " << i;
  }
  EXPECT_EQ(i, kMapSize);
  for (std::size_t k = 0; k < 2; ++k) {
    auto status = wait_exit(*cluster.workers()[order[k]], 5s);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
  }
  std::cout << "[ resilience ] plexus map of 10,000 tasks with kills at " << at[0] << " and "
            << at[1] << " ms: " << result.elapsed.count() << " ms\n";
  cluster.stop();
}

// A 1,024-leaf sum tree whose top-level intermediate L is computed, then its holder killed before
// the root may run: L is recomputed from its lineage (leaves and adds long released) and the
// root equals the closed form.
TEST(ResilienceTest, SumTreeSurvivesTheDeathOfAnIntermediateHolder) {
  ProcessCluster cluster({.n_workers = 3, .nthreads = 2});
  Client client(cluster.address());
  await_workers(client, 3, 2, 20s);
  TempDir tmp;
  const std::string log = tmp.file("adds.log");
  const std::string gate_file = tmp.file("gate");
  constexpr std::int64_t kLeaves = 1024;

  std::optional<Future<std::int64_t>> left, right, root;
  {
    std::vector<std::int64_t> xs(kLeaves);
    for (std::int64_t i = 0; i < kLeaves; ++i) xs[static_cast<std::size_t>(i)] = i;
    auto level = client.map<std::int64_t>("math.inc", xs);  // 1 .. 1024
    while (level.size() > 4) {
      std::vector<Future<std::int64_t>> next;
      for (std::size_t j = 0; j + 1 < level.size(); j += 2) {
        next.push_back(client.submit<std::int64_t>("math.add_int", level[j], level[j + 1]));
      }
      level = std::move(next);
    }
    left = client.submit<std::int64_t>("testing.add_logged", level[0], level[1], "L", log);
    right = client.submit<std::int64_t>("testing.add_logged", level[2], level[3], "R", log);
    SubmitOptions impure;
    impure.pure = false;
    auto gate = client.submit<std::int64_t>(impure, "testing.wait_file", gate_file,
                                            std::int64_t{30000});
    root = client.submit<std::int64_t>("testing.gated_add", *left, *right, gate);
  }  // the leaves and lower sums are released by the client: only their lineage is kept
  constexpr std::int64_t kHalf = kLeaves / 2;
  ASSERT_EQ(left->result(30s), kHalf * (kHalf + 1) / 2);
  ASSERT_EQ(right->result(30s), kLeaves * (kLeaves + 1) / 2 - kHalf * (kHalf + 1) / 2);

  std::string holder;
  for (const auto& l : lines_of(log)) {
    if (l.starts_with("L ")) holder = l.substr(2);
  }
  ASSERT_FALSE(holder.empty()) << read_file(log);
  ASSERT_EQ(::kill(std::stoi(holder), SIGKILL), 0);
  // Its nanny reports the death: L, held nowhere else and needed by the root, is recomputed.
  EXPECT_TRUE(wait_for_lines(log, "L ", 2, 20s)) << read_file(log);
  std::ofstream(gate_file) << "open\n";
  EXPECT_EQ(root->result(30s), kLeaves * (kLeaves + 1) / 2);
  client.close();
  cluster.stop();
}

// A scattered value has no lineage: when its only holder is SIGKILLed (its nanny reports the
// death at once), its future and the future of a task waiting for it fail with DataLostError
// instead of hanging, and nothing tries to compute it.
TEST(ResilienceTest, ScatteredValueLostWithItsOnlyHolderFailsItsFutureAndItsDependents) {
  ProcessCluster cluster({.n_workers = 2, .nthreads = 2});
  Client client(cluster.address());
  client.wait_for_workers(2, 20s);
  TempDir tmp;
  const std::string gate_file = tmp.file("gate");
  auto x = client.scatter(std::int64_t{41}, {.workers = {"w0"}});
  ASSERT_EQ(x.status(), FutureStatus::finished);
  SubmitOptions impure;
  impure.pure = false;
  auto gate = client.submit<std::int64_t>(impure, "testing.wait_file", gate_file,
                                          std::int64_t{30000});
  auto y = client.submit<std::int64_t>("testing.gated_add", x, std::int64_t{1}, gate);
  EXPECT_EQ(y.status(), FutureStatus::pending);  // waits for the gate
  const auto pid = cluster.worker_pid(0);
  ASSERT_TRUE(pid);
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);

  const std::string expected = "scattered data " + std::string(x.key()) +
                               " was lost with worker w0 (killed by signal SIGKILL); it cannot "
                               "be recomputed: scatter it again";
  for (const auto* f : {&x, &y}) {
    ASSERT_TRUE(f->wait(20s)) << f->key() << " still pending";
    try {
      f->result(1s);
      ADD_FAILURE() << "no error for " << f->key();
    } catch (const DataLostError& e) {
      EXPECT_EQ(e.kind(), TaskError::Kind::lost);
      EXPECT_EQ(e.remote_message(), expected) << f->key();
    }
  }
  // The cluster goes on: the gate opens, and the value scattered again is usable.
  std::ofstream(gate_file) << "open\n";
  EXPECT_GE(gate.result(30s), 0);
  auto again = client.scatter(std::int64_t{41});
  EXPECT_EQ(again.key(), x.key());
  EXPECT_EQ(client.submit<std::int64_t>("math.inc", again).result(30s), 42);
  client.close();
  cluster.stop();
}

// A task that segfaults every time fails with KilledWorker after exactly allowed-failures + 1
// attempts, naming each death and its cause; the other tasks of its map succeed.
TEST(ResilienceTest, PoisonTaskFailsWithKilledWorkerAfterAllowedFailuresPlusOneAttempts) {
  ProcessCluster cluster({.n_workers = 2,
                          .nthreads = 2,
                          .config_toml = "[scheduler]\nallowed-failures = 3\n"});
  Client client(cluster.address());
  TempDir tmp;
  const std::string attempts = tmp.file("attempts.log");
  constexpr std::int64_t kTasks = 200, kPoison = 100;
  std::vector<std::int64_t> xs(kTasks);
  for (std::int64_t i = 0; i < kTasks; ++i) xs[static_cast<std::size_t>(i)] = i;
  auto futures = client.map<std::int64_t>(
      "testing.square_or_segfault", xs, std::vector<std::int64_t>(kTasks, kPoison),
      std::vector<std::string>(kTasks, attempts));
  for (std::int64_t i = 0; i < kTasks; ++i) {
    auto& f = futures[static_cast<std::size_t>(i)];
    if (i != kPoison) {
      EXPECT_EQ(f.result(30s), i * i) << "task " << i;
      continue;
    }
    try {
      f.result(30s);
      ADD_FAILURE() << "the poison task succeeded";
    } catch (const KilledWorker& e) {
      const std::string message = e.what();
      EXPECT_THAT(message, HasSubstr("was running on 4 workers that died: w"));
      EXPECT_EQ(occurrences(message, " (killed by signal SIGSEGV (segmentation fault))"), 4u)
          << message;
      EXPECT_THAT(message, HasSubstr("allowed-failures = 3"));
      EXPECT_EQ(e.key(), f.key());
      // The crash report of the worker: the signal, the task, and a stack through the plugin.
      EXPECT_THAT(e.traceback(), HasSubstr("killed by signal SIGSEGV (segmentation fault) in task " +
                                           std::string(f.key()) + " (testing.square_or_segfault)"));
      EXPECT_THAT(e.traceback(), HasSubstr("stack trace:"));
      EXPECT_THAT(e.traceback(), HasSubstr("libplexus_testing.so"));
    }
  }
  EXPECT_EQ(count_lines(attempts), 4u) << read_file(attempts);
  client.close();
  cluster.stop();
}

// SIGSTOP of a worker past worker-ttl: it is removed and its tasks run elsewhere; after SIGCONT
// it is told to shut down (exit status 3) and the results it then sends are ignored.
TEST(ResilienceTest, StoppedWorkerIsRemovedAndItsLateResultsIgnored) {
  ProcessCluster cluster(
      {.n_workers = 2, .nthreads = 2, .nanny = false, .config_toml = kShortTtl});
  Client client(cluster.address());
  await_workers(client, 2, 2, 20s);
  TempDir tmp;
  const std::string started = tmp.file("started.log");
  const int stopped = cluster.workers()[0]->pid();
  const int other = cluster.workers()[1]->pid();
  SubmitOptions impure;
  impure.pure = false;
  auto futures = client.map<std::int64_t>(impure, "testing.logged_worker_pid",
                                          std::vector<std::int64_t>(4, 700),
                                          std::vector<std::string>(4, started));
  ASSERT_TRUE(wait_for_lines(started, std::to_string(stopped), 1, 5s)) << read_file(started);
  ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
  for (auto& f : futures) EXPECT_EQ(f.result(20s), other);  // rescheduled on the other worker
  ASSERT_EQ(::kill(stopped, SIGCONT), 0);
  auto status = wait_exit(*cluster.workers()[0], 10s);
  ASSERT_TRUE(status) << "the resumed worker did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << describe_wait_status(*status);
  for (auto& f : futures) EXPECT_EQ(f.result(1s), other);
  // The cluster goes on with the other worker.
  EXPECT_EQ(client.submit<std::int64_t>(impure, "testing.worker_pid", std::int64_t{0}).result(10s),
            other);
  client.close();
  cluster.stop();
}

// ---- the nanny ----

TEST(NannyTest, SigtermStopsTheWorkerAndTheNannyExitsZero) {
  ProcessCluster cluster({.n_workers = 1, .nthreads = 1});
  Client client(cluster.address());
  EXPECT_EQ(client.submit<std::int64_t>("math.inc", std::int64_t{1}).result(10s), 2);
  auto worker = cluster.worker_pid(0);
  ASSERT_TRUE(worker);
  ASSERT_EQ(::kill(cluster.workers()[0]->pid(), SIGTERM), 0);
  auto status = wait_exit(*cluster.workers()[0], 10s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_wait_status(*status);
  EXPECT_FALSE(process_alive(*worker));
  client.close();
  cluster.stop();
}

// A worker still busy stop-timeout after the signal is killed; the nanny still exits 0.
TEST(NannyTest, WorkerThatDoesNotStopInTimeIsKilled) {
  ProcessCluster cluster({.n_workers = 1,
                          .nthreads = 1,
                          .config_toml = "[nanny]\nstop-timeout-ms = 300\n"
                                         "[worker]\nshutdown-timeout-ms = 20000\n"});
  Client client(cluster.address());
  TempDir tmp;
  const std::string started = tmp.file("started.log");
  auto busy = client.submit<std::int64_t>("testing.logged_worker_pid", std::int64_t{20000},
                                          started);
  ASSERT_TRUE(wait_for_lines(started, "", 1, 10s));
  auto worker = cluster.worker_pid(0);
  ASSERT_TRUE(worker);
  const auto t0 = Clock::now();
  ASSERT_EQ(::kill(cluster.workers()[0]->pid(), SIGTERM), 0);
  auto status = wait_exit(*cluster.workers()[0], 10s);
  ASSERT_TRUE(status);
  EXPECT_LT(Clock::now() - t0, 5s);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_wait_status(*status);
  EXPECT_FALSE(process_alive(*worker));
  client.close();
  cluster.stop();
}

TEST(NannyTest, WorkerDiesWithItsSigkilledNanny) {
  ProcessCluster cluster({.n_workers = 1, .nthreads = 1});
  auto worker = cluster.worker_pid(0);
  ASSERT_TRUE(worker);
  ASSERT_EQ(::kill(cluster.workers()[0]->pid(), SIGKILL), 0);
  EXPECT_TRUE(wait_until_gone(*worker, 10s)) << "the worker outlived its nanny";
  cluster.stop();
}

// A worker stopped past worker-ttl is removed; when it resumes and is told to shut down (exit
// status 3), its nanny starts it again and the new process joins under the same name.
TEST(NannyTest, WorkerRemovedByTheSchedulerIsStartedAgain) {
  ProcessCluster cluster({.n_workers = 1, .nthreads = 1, .config_toml = kShortTtl});
  Client client(cluster.address());
  SubmitOptions impure;
  impure.pure = false;
  auto old = cluster.worker_pid(0);
  ASSERT_TRUE(old);
  EXPECT_EQ(client.submit<std::int64_t>(impure, "testing.worker_pid", std::int64_t{0}).result(10s),
            *old);
  ASSERT_EQ(::kill(*old, SIGSTOP), 0);
  const auto deadline = Clock::now() + 10s;
  while (!client.scheduler_info().workers.empty()) {
    ASSERT_LT(Clock::now(), deadline) << "the stopped worker was not removed";
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(::kill(*old, SIGCONT), 0);
  auto fresh = cluster.worker_pid(0, 10s, *old);
  ASSERT_TRUE(fresh) << "the nanny did not start the worker again";
  EXPECT_TRUE(wait_until_gone(*old, 5s));
  EXPECT_EQ(client.submit<std::int64_t>(impure, "testing.worker_pid", std::int64_t{0}).result(10s),
            *fresh);
  EXPECT_TRUE(cluster.workers()[0]->running());
  client.close();
  cluster.stop();
}

TEST(NannyTest, NannyGivesUpAfterMaxCrashesWithinTheWindow) {
  ProcessCluster cluster({.n_workers = 1,
                          .nthreads = 1,
                          .config_toml = "[nanny]\nmax-crashes = 3\nrestart-backoff-ms = 20\n"});
  Client client(cluster.address());
  SubmitOptions impure;
  impure.pure = false;
  auto crash = client.submit<std::int64_t>(impure, "testing.segfault");
  auto status = wait_exit(*cluster.workers()[0], 20s);
  ASSERT_TRUE(status) << "the nanny did not give up";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 5) << describe_wait_status(*status);
  EXPECT_THAT(child_pids(cluster.workers()[0]->pid()), ::testing::IsEmpty());
  client.close();
  cluster.stop();
}

TEST(NannyTest, NannyStopsItsWorkerWhenTheSchedulerIsGone) {
  ProcessCluster cluster({.n_workers = 1,
                          .nthreads = 1,
                          .config_toml = "[scheduler]\nheartbeat-interval-ms = 100\n"
                                         "[worker]\ndeath-timeout-ms = 1000\n"});
  {
    Client client(cluster.address());
    EXPECT_EQ(client.submit<std::int64_t>("math.inc", std::int64_t{1}).result(10s), 2);
    client.close();
  }
  auto worker = cluster.worker_pid(0);
  ASSERT_TRUE(worker);
  ASSERT_EQ(::kill(cluster.scheduler().pid(), SIGKILL), 0);
  auto status = wait_exit(*cluster.workers()[0], 10s);
  ASSERT_TRUE(status) << "the nanny did not notice";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 4) << describe_wait_status(*status);
  EXPECT_FALSE(process_alive(*worker));
  cluster.stop();
}

}  // namespace
}  // namespace plexus::testing
