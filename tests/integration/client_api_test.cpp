// The client API end to end, over every transport: tcp and ipc against real daemon processes,
// inproc against a LocalCluster of threads in this process.
#include "support/process_cluster.hpp"
#include "support/transport_cluster.hpp"
#include "support/subprocess.hpp"

#include <plexus/client.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr const char* kHexKey = "-[0-9a-f]{32}$";
constexpr const char* kUuidKey = "-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";

bool key_matches(std::string_view key, const std::string& task, const char* tail) {
  std::string escaped;
  for (char c : task) {
    if (c == '.') escaped += '\\';
    escaped += c;
  }
  return std::regex_search(std::string(key), std::regex("^" + escaped + tail));
}

// One cluster per test on each transport (support/transport_cluster.hpp).
class ClientApiTest : public TransportClusterTest {};

TEST_P(ClientApiTest, SubmitAndResult) {
  auto f = client().submit<std::int64_t>("math.square", std::int64_t{7});
  EXPECT_EQ(f.result(10s), 49);
  EXPECT_EQ(client().submit<std::string>("testing.echo", std::string("ann")).result(10s), "ann");
}

TEST_P(ClientApiTest, ResultTimeoutThrowsAndFutureStaysUsable) {
  auto f = client().submit<std::int64_t>("testing.sleep_ms", std::int64_t{2000});
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(f.result(50ms), TimeoutError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  EXPECT_EQ(f.status(), FutureStatus::pending);
  EXPECT_FALSE(f.done());
}

TEST_P(ClientApiTest, DoneStatusAndKey) {
  auto f = client().submit<std::int64_t>("math.inc", std::int64_t{41});
  EXPECT_TRUE(key_matches(f.key(), "math.inc", kHexKey)) << f.key();
  EXPECT_EQ(f.result(10s), 42);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.status(), FutureStatus::finished);

  auto bad = client().submit<std::int64_t>("testing.fail", std::string("nope"));
  EXPECT_TRUE(bad.wait(10s));
  EXPECT_TRUE(bad.done());
  EXPECT_EQ(bad.status(), FutureStatus::error);
  EXPECT_NE(bad.exception(), nullptr);
}

TEST_P(ClientApiTest, MapAndGatherKeepOrder) {
  std::vector<std::int64_t> xs(50);
  std::iota(xs.begin(), xs.end(), std::int64_t{0});
  auto futures = client().map<std::int64_t>("math.inc", xs);
  ASSERT_EQ(futures.size(), xs.size());
  auto values = client().gather(futures);
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(values[i], xs[i] + 1) << i;
}

TEST_P(ClientApiTest, FutureAsArgument) {
  auto x = client().submit<std::int64_t>("math.inc", std::int64_t{10});
  auto y = client().submit<std::int64_t>("math.inc", x);
  auto z = client().submit<std::int64_t>("math.mul", x, y);
  EXPECT_EQ(y.result(10s), 12);
  EXPECT_EQ(z.result(10s), 11 * 12);
}

TEST_P(ClientApiTest, VectorOfFuturesAsArgument) {
  std::vector<std::int64_t> xs{1, 2, 3, 4, 5};
  auto squares = client().map<std::int64_t>("math.square", xs);
  auto total = client().submit<std::int64_t>("math.sum", squares);
  EXPECT_EQ(total.result(10s), 1 + 4 + 9 + 16 + 25);
}

TEST_P(ClientApiTest, EqualCallsGiveEqualKeysAcrossClients) {
  auto a = client().submit<std::int64_t>("math.add_int", std::int64_t{2}, std::int64_t{3});
  auto b = second().submit<std::int64_t>("math.add_int", std::int64_t{2}, std::int64_t{3});
  auto c = second().submit<std::int64_t>("math.add_int", std::int64_t{3}, std::int64_t{2});
  EXPECT_TRUE(key_matches(a.key(), "math.add_int", kHexKey)) << a.key();
  EXPECT_EQ(a.key(), b.key());
  EXPECT_NE(a.key(), c.key());
  EXPECT_EQ(a.result(10s), 5);
  EXPECT_EQ(b.result(10s), 5);
}

TEST_P(ClientApiTest, PureTaskRunsOnceForTwoClients) {
  const std::string path = tmp_.file("runs.txt");
  auto a = client().submit<std::string>("testing.append_line", path, std::string("x"));
  auto b = second().submit<std::string>("testing.append_line", path, std::string("x"));
  ASSERT_EQ(a.key(), b.key());
  EXPECT_EQ(a.result(10s), "x");
  EXPECT_EQ(b.result(10s), "x");
  EXPECT_EQ(count_lines(path), 1u) << read_file(path);
}

TEST_P(ClientApiTest, ImpureTaskGetsUuidKeyAndRunsAgain) {
  const std::string path = tmp_.file("runs.txt");
  const SubmitOptions impure{.pure = false};
  auto a = client().submit<std::string>(impure, "testing.append_line", path, std::string("x"));
  auto b = client().submit<std::string>(impure, "testing.append_line", path, std::string("x"));
  EXPECT_TRUE(key_matches(a.key(), "testing.append_line", kUuidKey)) << a.key();
  EXPECT_TRUE(key_matches(b.key(), "testing.append_line", kUuidKey)) << b.key();
  EXPECT_NE(a.key(), b.key());
  EXPECT_EQ(a.result(10s), "x");
  EXPECT_EQ(b.result(10s), "x");
  EXPECT_EQ(count_lines(path), 2u) << read_file(path);
}

TEST_P(ClientApiTest, LargeResultIsFetchedFromTheWorker) {
  constexpr std::int64_t kSize = 20'000'000;  // far above comm.inline-threshold-bytes (64 KiB)
  std::uint64_t expected = 0;
  for (std::int64_t i = 0; i < kSize; ++i) expected += static_cast<std::uint64_t>(i % 251);

  auto big = client().submit<Bytes>("testing.bytes", kSize);
  auto remote_sum = client().submit<std::uint64_t>("testing.checksum", big);
  EXPECT_EQ(remote_sum.result(30s), expected);

  Bytes local = big.result(30s);
  ASSERT_EQ(local.size(), static_cast<std::size_t>(kSize));
  std::uint64_t sum = 0;
  for (std::byte b : local) sum += std::to_integer<std::uint64_t>(b);
  EXPECT_EQ(sum, expected);
}

TEST_P(ClientApiTest, ManyProducersOneConsumerAcrossWorkers) {
  // Sleeping producers keep both workers busy, so the inputs of the consumer end up on both
  // and at least some must move worker to worker.
  std::vector<std::int64_t> ms(16);
  std::iota(ms.begin(), ms.end(), std::int64_t{20});
  auto producers = client().map<std::int64_t>("testing.sleep_ms", ms);
  auto total = client().submit<std::int64_t>("math.sum", producers);
  EXPECT_EQ(total.result(30s), std::accumulate(ms.begin(), ms.end(), std::int64_t{0}));
}

// Regression: the client once sent a release ahead of submits taken in the same I/O turn, so a
// task depending on a just-dropped future could reach the scheduler after its dependency had
// been forgotten ("depends on unknown key"). A large batch makes the turn flush mid-way.
TEST_P(ClientApiTest, DroppingADependencyRightAfterSubmittingItsDependentIsSafe) {
  const SubmitOptions impure{.pure = false};
  for (int round = 0; round < 8; ++round) {
    auto a = client().submit<std::int64_t>(impure, "math.inc", std::int64_t{1});
    ASSERT_EQ(a.result(10s), 2);
    std::vector<EncodedCall> calls;
    for (std::int64_t i = 0; i < 8192; ++i) calls.push_back(Client::encode_call("math.noop", i));
    calls.push_back(Client::encode_call("math.inc", a));  // the last one depends on `a`
    auto states = client().submit_encoded_many(impure, std::move(calls));
    a = Future<std::int64_t>();  // drop the dependency at once
    EXPECT_EQ(Future<std::int64_t>(states.back()).result(20s), 3) << "round " << round;
    for (std::size_t i = 0; i + 1 < states.size(); ++i) {
      ASSERT_EQ(Future<std::int64_t>(states[i]).result(20s), static_cast<std::int64_t>(i));
    }
  }
}

TEST_P(ClientApiTest, MapWithKeyOptionNamesEachElement) {
  SubmitOptions options;
  options.key = "squares-" + GetParam();
  std::vector<std::int64_t> xs(1500);  // more than one of map's encoding slices
  std::iota(xs.begin(), xs.end(), std::int64_t{0});
  auto futures = client().map<std::int64_t>(options, "math.square", xs);
  ASSERT_EQ(futures.size(), xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(futures[i].key(), options.key + "-" + std::to_string(i));
  }
  auto values = client().gather(futures);
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(values[i], xs[i] * xs[i]) << i;
}

// Submitting a key again while the release of its last future is still queued revives it: the
// scheduler keeps the key, and the new future gets the value.
TEST_P(ClientApiTest, ResubmittingAKeyRightAfterDroppingItKeepsIt) {
  SubmitOptions options;
  options.key = "revived-" + GetParam();
  for (int round = 0; round < 200; ++round) {
    {
      auto first = client().submit<std::int64_t>(options, "math.inc", std::int64_t{1});
      if (round % 2 == 0) {
        ASSERT_EQ(first.result(10s), 2);
      }
    }
    auto again = client().submit<std::int64_t>(options, "math.inc", std::int64_t{1});
    std::int64_t v = 0;
    try {
      v = again.result(10s);
    } catch (const std::exception& e) {
      FAIL() << "round " << round << ": " << e.what();
    }
    ASSERT_EQ(v, 2) << "round " << round;
    ASSERT_EQ(again.key(), options.key);
  }
}

// Threads that submit, pass futures to each other and drop them at once: every dependent sees
// its dependency (submits reach the scheduler in the order their keys were registered) and no
// key is freed while a future for it lives.
TEST_P(ClientApiTest, ThreadsSharingAndDroppingFuturesConcurrently) {
  const SubmitOptions impure{.pure = false};
  constexpr int kThreads = 4;
  constexpr int kRounds = 150;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  std::mutex handoff_mu;
  std::vector<Future<std::int64_t>> handoff;  // futures made by one thread, used by another
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        auto a = client().submit<std::int64_t>(impure, "math.inc", std::int64_t{r});
        Future<std::int64_t> other;
        {
          std::lock_guard lock(handoff_mu);
          handoff.push_back(a);
          if (handoff.size() > 8) {
            other = handoff.front();
            handoff.erase(handoff.begin());
          }
        }
        auto b = client().submit<std::int64_t>(impure, "math.inc", a);
        a = Future<std::int64_t>();  // dropped right after its dependent was submitted
        try {
          if (b.result(20s) != r + 2) ++failures[t];
          if (other.valid()) {
            auto c = client().submit<std::int64_t>(impure, "math.inc", other);
            const std::int64_t base = other.result(20s);
            other = Future<std::int64_t>();
            if (c.result(20s) != base + 1) ++failures[t];
          }
        } catch (const std::exception& e) {
          ADD_FAILURE() << "thread " << t << " round " << r << ": " << e.what();
          ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  handoff.clear();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

// Futures outlive their client: what they know stays readable, and dropping them later is safe.
TEST_P(ClientApiTest, FuturesOutliveTheirClient) {
  auto done = client().submit<std::int64_t>("math.inc", std::int64_t{5});
  ASSERT_EQ(done.result(10s), 6);
  auto pending = client().submit<std::int64_t>("testing.sleep_ms", std::int64_t{5000});
  auto copy = pending;
  client().close();
  client_.reset();
  EXPECT_EQ(done.result(1s), 6);
  EXPECT_EQ(pending.status(), FutureStatus::error);
  EXPECT_THROW(copy.result(1s), TaskError);
}

TEST_P(ClientApiTest, SchedulerInfoListsTheWorkers) {
  client().wait_for_workers(2, 10s);
  SchedulerInfo info = client().scheduler_info();
  EXPECT_EQ(info.address, client().scheduler_address());
  EXPECT_FALSE(info.id.empty());
  ASSERT_EQ(info.workers.size(), 2u);
  for (const auto& w : info.workers) {
    EXPECT_EQ(w.nthreads, 2u) << w.address;
    EXPECT_FALSE(w.name.empty());
    EXPECT_FALSE(w.closing);
  }
  EXPECT_LT(info.workers[0].address, info.workers[1].address);
  auto threads = client().nthreads();
  ASSERT_EQ(threads.size(), 2u);
  for (const auto& w : info.workers) EXPECT_EQ(threads.at(w.address), 2u);
  EXPECT_THROW(client().wait_for_workers(3, 200ms), TimeoutError);
}

TEST_P(ClientApiTest, WhoHasAndHasWhatAgree) {
  client().wait_for_workers(2, 10s);
  auto xs = client().map<std::int64_t>("math.square", std::vector<std::int64_t>{1, 2, 3, 4});
  client().gather(xs);
  auto where = client().who_has(xs);
  ASSERT_EQ(where.size(), xs.size());
  auto held = client().has_what();
  ASSERT_EQ(held.size(), 2u);  // both workers, even one holding nothing
  for (const auto& f : xs) {
    const auto& holders = where.at(std::string(f.key()));
    ASSERT_EQ(holders.size(), 1u) << f.key();
    const auto& keys = held.at(holders[0]);
    EXPECT_NE(std::find(keys.begin(), keys.end(), std::string(f.key())), keys.end()) << f.key();
  }
  auto unknown = client().who_has(std::vector<std::string>{"no-such-key"});
  EXPECT_TRUE(unknown.at("no-such-key").empty());
  auto one = client().has_what({where.begin()->second[0]});
  EXPECT_EQ(one.size(), 1u);
}

TEST_P(ClientApiTest, ClusterQueriesOnAClosedClientThrow) {
  client().close();
  EXPECT_THROW(client().scheduler_info(), ConnectionError);
}

TEST_P(ClientApiTest, WaitAllFirstCompletedAndFirstException) {
  using Ms = std::int64_t;
  const SubmitOptions impure{.pure = false};
  std::vector<Future<Ms>> fs{client().submit<Ms>(impure, "testing.sleep_ms", Ms{0}),
                             client().submit<Ms>(impure, "testing.sleep_ms", Ms{1500})};
  auto first = wait(fs, 10s, ReturnWhen::first_completed);
  ASSERT_EQ(first.done.size(), 1u);
  EXPECT_EQ(first.done[0].key(), fs[0].key());
  ASSERT_EQ(first.not_done.size(), 1u);
  EXPECT_EQ(first.not_done[0].key(), fs[1].key());
  EXPECT_THROW(wait(fs, 100ms), TimeoutError);
  fs[1].cancel();  // cancelled counts as done
  auto all = wait(fs, 10s);
  EXPECT_EQ(all.done.size(), 2u);
  EXPECT_TRUE(all.not_done.empty());

  std::vector<Future<Ms>> gs{client().submit<Ms>(impure, "testing.sleep_ms", Ms{1500}),
                             client().submit<Ms>(impure, "testing.fail", std::string("early"))};
  auto failed = wait(gs, 10s, ReturnWhen::first_exception);
  ASSERT_EQ(failed.done.size(), 1u);
  EXPECT_EQ(failed.done[0].status(), FutureStatus::error);
  EXPECT_EQ(failed.done[0].key(), gs[1].key());
  EXPECT_TRUE(wait(std::vector<Future<Ms>>{}, 1ms).done.empty());
  client().cancel(gs);
  EXPECT_EQ(wait(gs, 10s).done.size(), 2u);
}

TEST_P(ClientApiTest, AsCompletedYieldsEachFutureOnceAsItFinishes) {
  using Ms = std::int64_t;
  const SubmitOptions impure{.pure = false};
  AsCompleted<Ms> ac(std::vector<Future<Ms>>{
      client().submit<Ms>(impure, "testing.sleep_ms", Ms{800}),
      client().submit<Ms>(impure, "testing.sleep_ms", Ms{0})});
  EXPECT_EQ(ac.size(), 2u);
  std::vector<Ms> order;
  bool added = false;
  for (auto& f : ac) {
    ASSERT_TRUE(f.done());
    order.push_back(f.result());
    if (!added) {  // added while iterating: yielded too
      ac.add(client().submit<Ms>(impure, "testing.sleep_ms", Ms{1}));
      added = true;
    }
  }
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order.front(), 0);  // the quick one first
  EXPECT_EQ(std::count(order.begin(), order.end(), 800), 1);
  EXPECT_EQ(std::count(order.begin(), order.end(), 1), 1);
  EXPECT_TRUE(ac.empty());

  AsCompleted<std::int64_t> squares(
      client().map<std::int64_t>("math.square", std::vector<std::int64_t>{1, 2, 3}));
  std::int64_t total = 0;
  while (auto next = squares.next_with_result(10s)) total += next->second;
  EXPECT_EQ(total, 1 + 4 + 9);

  AsCompleted<Ms> slow(std::vector<Future<Ms>>{
      client().submit<Ms>(impure, "testing.sleep_ms", Ms{800})});
  EXPECT_THROW(slow.next(50ms), TimeoutError);
}

TEST_P(ClientApiTest, RetryComputesAFailedTaskAgain) {
  const std::string flag = tmp_.file("flag");
  auto f = client().submit<std::int64_t>("testing.wait_file", flag, std::int64_t{1});
  auto g = client().submit<std::int64_t>("math.inc", f);  // fails through f
  EXPECT_THROW(g.result(10s), TaskError);
  EXPECT_EQ(f.status(), FutureStatus::error);
  { std::ofstream(flag) << "now it exists\n"; }
  client().retry(g);  // g and the failed dependency it failed through
  EXPECT_GE(g.result(10s), 1);
  EXPECT_EQ(f.status(), FutureStatus::finished);
  client().retry(g);  // not failed: nothing happens
  EXPECT_EQ(g.status(), FutureStatus::finished);
}

TEST_P(ClientApiTest, FireAndForgetRunsTheTaskAfterItsFutureIsDropped) {
  const std::string log = tmp_.file("side-effect.txt");
  const SubmitOptions impure{.pure = false};
  {
    auto slow = client().submit<std::int64_t>(impure, "testing.sleep_ms", std::int64_t{200});
    auto f = client().submit<std::string>(impure, "testing.append_line", log, std::string("ran"));
    client().fire_and_forget(f);
  }  // both futures dropped at once: only the fire-and-forget task must still run
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string line;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(log);
    if (std::getline(in, line) && line == "ran") break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(line, "ran");
  // Done, it is released by the scheduler itself: nothing is left.
  const auto quiet = std::chrono::steady_clock::now() + 10s;
  while (client().scheduler_info().tasks != 0 && std::chrono::steady_clock::now() < quiet) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(client().scheduler_info().tasks, 0u);
}

TEST_P(ClientApiTest, SchedulerAndWorkerLogsAreReadRemotely) {
  client().wait_for_workers(2, 10s);
  auto sched = client().get_scheduler_logs();
  ASSERT_FALSE(sched.empty());
  // Info lines are kept even where stderr shows warnings only; the joins are among them.
  EXPECT_TRUE(std::any_of(sched.begin(), sched.end(), [](const std::string& l) {
    return l.find("[scheduler]") != std::string::npos && l.find("worker joined") != std::string::npos;
  })) << sched.back();
  EXPECT_EQ(client().get_scheduler_logs(1).size(), 1u);
  EXPECT_TRUE(client().get_scheduler_logs(0).empty());

  client().submit<std::int64_t>("math.inc", std::int64_t{1}).result(10s);  // loads a plugin
  auto workers = client().get_worker_logs();
  ASSERT_EQ(workers.size(), 2u);
  // Each worker's lines include its own start. (Workers sharing a process, as inproc ones do,
  // share that process's lines.)
  for (const auto& w : client().scheduler_info().workers) {
    const auto& lines = workers.at(w.address);
    EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
      return l.find("[worker]") != std::string::npos && l.find("connected") != std::string::npos &&
             l.find("name='" + w.name + "'") != std::string::npos;
    })) << w.address;
  }
}

TEST_P(ClientApiTest, FutureForAnExistingKey) {
  auto x = client().submit<std::int64_t>("math.inc", std::int64_t{41});
  ASSERT_EQ(x.result(10s), 42);  // known to the scheduler before another client asks for it
  auto again = second().future<std::int64_t>(std::string(x.key()));
  EXPECT_EQ(again.result(10s), 42);
  EXPECT_EQ(client().future<std::int64_t>(std::string(x.key())).result(10s), 42);
  auto unknown = client().future<std::int64_t>("math.inc-no-such-key");
  EXPECT_THROW(unknown.result(10s), DataLostError);
}

TEST_P(ClientApiTest, RecreateTaskAndErrorLocally) {
  auto x = client().submit<std::int64_t>("math.inc", std::int64_t{1});
  auto y = client().submit<std::int64_t>("math.mul", x, std::int64_t{5});
  ASSERT_EQ(y.result(10s), 10);
  x = Future<std::int64_t>();  // its value is fetched (or recomputed) for the local run
  EXPECT_EQ(client().recreate_task_locally(y), 10);
  EXPECT_THROW(client().recreate_error_locally(y), std::invalid_argument);

  auto bad = client().submit<std::int64_t>("testing.fail", std::string("local boom"));
  try {
    client().recreate_error_locally(bad);
    FAIL() << "no error raised";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.kind(), TaskError::Kind::exception);
    EXPECT_EQ(e.remote_type(), "std::runtime_error");
    EXPECT_THAT(e.remote_message(), HasSubstr("local boom"));
    EXPECT_EQ(e.key(), bad.key());
    EXPECT_TRUE(e.worker().empty());  // it ran here, not on a worker
  }
}

TEST_P(ClientApiTest, PublishedDatasetsOutliveTheirFuturesAndReachOtherClients) {
  const std::string name = "squares-" + GetParam();
  {
    auto xs = client().map<std::int64_t>("math.square", std::vector<std::int64_t>{1, 2, 3});
    client().publish_dataset(name, xs);  // right after submitting: ordered after the submits
    EXPECT_THROW(client().publish_dataset(name, xs), std::invalid_argument);
  }  // the client's own futures are gone: the dataset keeps the results
  EXPECT_EQ(second().list_datasets(), std::vector<std::string>{name});
  auto got = second().get_dataset<std::int64_t>(name);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(second().gather(got), (std::vector<std::int64_t>{1, 4, 9}));

  auto one = client().submit<std::int64_t>("math.inc", std::int64_t{0});
  client().publish_dataset(name, one, /*replace=*/true);
  EXPECT_EQ(client().get_dataset<std::int64_t>(name).at(0).result(10s), 1);
  client().unpublish_dataset(name);
  EXPECT_TRUE(client().list_datasets().empty());
  EXPECT_THROW(client().get_dataset<std::int64_t>(name), std::out_of_range);
  EXPECT_THROW(client().unpublish_dataset(name), std::out_of_range);
  EXPECT_THROW(client().publish_dataset("bad", std::vector<Future<std::int64_t>>{
                                                   client().future<std::int64_t>("no-such-key")}),
               std::invalid_argument);
}

// ---- data movement: scatter, replicate, rebalance, restart ----

// Data addresses of the workers, in the scheduler's order, once both have joined.
std::vector<std::string> worker_addresses(Client& c) {
  c.wait_for_workers(2, 20s);
  std::vector<std::string> out;
  for (const auto& w : c.scheduler_info().workers) out.push_back(w.address);
  return out;
}

std::uint64_t held_bytes_of(Client& c, const std::string& address) {
  for (const auto& w : c.scheduler_info().workers) {
    if (w.address == address) return w.held_bytes;
  }
  return 0;
}

TEST_P(ClientApiTest, ScatteredValuesAreTaskArgumentsAndComeBack) {
  auto xs = client().scatter(std::vector<std::int64_t>{1, 2, 3});
  ASSERT_EQ(xs.size(), 3u);
  for (const auto& x : xs) {
    EXPECT_EQ(x.status(), FutureStatus::finished);  // on the workers when scatter returns
    EXPECT_TRUE(key_matches(x.key(), "int64", kHexKey)) << x.key();
  }
  EXPECT_EQ(client().submit<std::int64_t>("math.sum", xs).result(10s), 6);
  EXPECT_EQ(client().submit<std::int64_t>("math.inc", xs[1]).result(10s), 3);
  EXPECT_EQ(xs[2].result(10s), 3);
  // A large value travels to a worker and back in frames of its own.
  const std::string big(300000, 'z');
  auto b = client().scatter(big);
  EXPECT_TRUE(key_matches(b.key(), "string", kHexKey)) << b.key();
  EXPECT_EQ(client().submit<std::string>("testing.echo", b).result(10s).size(), big.size());
  EXPECT_EQ(b.result(10s), big);
  // Vectors scatter element by element; wrapped, one vector is one value (key "list-...").
  auto v = client().scatter(std::vector<std::vector<std::int64_t>>{{4, 5, 6}});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_TRUE(key_matches(v[0].key(), "list", kHexKey)) << v[0].key();
  EXPECT_EQ(client().submit<std::int64_t>("math.sum", v[0]).result(10s), 15);
  EXPECT_TRUE(client().scatter(std::vector<std::int64_t>{}).empty());
}

TEST_P(ClientApiTest, ScatterPlacesValuesWhereAskedOrEverywhere) {
  const auto addresses = worker_addresses(client());
  ASSERT_EQ(addresses.size(), 2u);
  // Without a choice, equal values go to the worker holding the least: round robin here.
  auto spread = client().scatter(std::vector<std::int64_t>{20, 21, 22, 23}, {.hash = false});
  std::map<std::string, int> per_worker;
  for (const auto& [key, where] : client().who_has(spread)) {
    ASSERT_EQ(where.size(), 1u) << key;
    ++per_worker[where[0]];
  }
  EXPECT_THAT(per_worker, ElementsAre(::testing::Pair(addresses[0], 2), ::testing::Pair(addresses[1], 2)));

  auto everywhere = client().scatter(std::int64_t{5}, {.broadcast = true});
  auto holders = client().who_has(std::vector<Future<std::int64_t>>{everywhere});
  EXPECT_THAT(holders[std::string(everywhere.key())], ::testing::UnorderedElementsAreArray(addresses));

  auto there = client().scatter(std::vector<std::int64_t>{10, 11, 12}, {.workers = {addresses[1]}});
  for (const auto& [key, where] : client().who_has(there)) {
    EXPECT_THAT(where, ElementsAre(addresses[1])) << key;
  }
  EXPECT_THROW(client().scatter(std::int64_t{1}, {.workers = {"no-such-worker"}}),
               std::invalid_argument);
}

TEST_P(ClientApiTest, ScatterWithHashReusesAValueTheClusterHolds) {
  const auto addresses = worker_addresses(client());
  ASSERT_EQ(addresses.size(), 2u);
  auto a = client().scatter(std::string("shared"), {.workers = {addresses[0]}});
  // Another client scatters the same value elsewhere: same key, and the copy that exists is used.
  auto b = second().scatter(std::string("shared"), {.workers = {addresses[1]}});
  EXPECT_EQ(a.key(), b.key());
  EXPECT_EQ(b.status(), FutureStatus::finished);
  EXPECT_THAT(second().who_has(std::vector<std::string>{std::string(b.key())})[std::string(b.key())],
              ElementsAre(addresses[0]));
  // The first client lets go: the second client's future keeps it.
  const std::string key(a.key());
  a = Future<std::string>();
  EXPECT_EQ(b.result(10s), "shared");
  EXPECT_EQ(second().submit<std::string>("testing.echo", b).result(10s), "shared");
  // hash = false: a fresh key every time.
  auto c1 = client().scatter(std::string("shared"), {.hash = false});
  auto c2 = client().scatter(std::string("shared"), {.hash = false});
  EXPECT_NE(c1.key(), c2.key());
  EXPECT_NE(c1.key(), key);
  EXPECT_TRUE(key_matches(c1.key(), "string", kUuidKey)) << c1.key();
}

TEST_P(ClientApiTest, ReplicateCopiesValuesToNWorkers) {
  const auto addresses = worker_addresses(client());
  ASSERT_EQ(addresses.size(), 2u);
  auto xs = client().scatter(std::vector<std::int64_t>{1, 2}, {.workers = {addresses[0]}});
  auto y = client().submit<std::int64_t>("math.inc", std::int64_t{100});
  std::vector<Future<std::int64_t>> all{xs[0], xs[1], y};
  client().replicate(all);  // every worker
  for (const auto& [key, where] : client().who_has(all)) {
    EXPECT_THAT(where, ::testing::UnorderedElementsAreArray(addresses)) << key;
  }
  client().replicate(all, 1);  // back to one copy each
  for (const auto& [key, where] : client().who_has(all)) EXPECT_EQ(where.size(), 1u) << key;
  EXPECT_EQ(client().gather(all), (std::vector<std::int64_t>{1, 2, 101}));
  EXPECT_THROW(client().replicate(all, 0), std::invalid_argument);
  EXPECT_THROW(client().replicate(all, 2, {"no-such-worker"}), Error);
  auto bad = client().submit<std::int64_t>("testing.fail", std::string("no"));
  EXPECT_THROW(client().replicate(std::vector<Future<std::int64_t>>{bad}), std::invalid_argument);
}

TEST_P(ClientApiTest, RebalanceEvensOutHeldBytes) {
  const auto addresses = worker_addresses(client());
  ASSERT_EQ(addresses.size(), 2u);
  std::vector<std::string> values;
  for (int i = 0; i < 10; ++i) values.push_back(std::string(20000, static_cast<char>('a' + i)));
  auto fs = client().scatter(values, {.workers = {addresses[0]}});
  const std::uint64_t total = held_bytes_of(client(), addresses[0]);
  ASSERT_GE(total, 200000u);
  EXPECT_EQ(held_bytes_of(client(), addresses[1]), 0u);
  client().rebalance(fs);
  for (const auto& a : addresses) {
    EXPECT_EQ(held_bytes_of(client(), a), total / 2) << a;  // ten equal values: five each
  }
  for (const auto& [key, where] : client().who_has(fs)) EXPECT_EQ(where.size(), 1u) << key;
  EXPECT_EQ(client().gather(fs), values);
  client().rebalance();  // every value; already even: nothing moves
  for (const auto& a : addresses) EXPECT_EQ(held_bytes_of(client(), a), total / 2) << a;
}

TEST_P(ClientApiTest, RestartCancelsEveryFutureAndTheClusterWorksAfter) {
  client().wait_for_workers(2, 20s);
  // Under a nanny (tcp, ipc) the worker processes are replaced; inproc workers stay.
  std::optional<int> pid_before;
  if (cluster_) pid_before = cluster_->worker_pid(0);
  auto running = client().submit<std::int64_t>("testing.sleep_ms", std::int64_t{800});
  auto finished = client().submit<std::int64_t>("math.inc", std::int64_t{1});
  ASSERT_EQ(finished.result(10s), 2);
  auto scattered = client().scatter(std::int64_t{77});
  auto other = second().submit<std::int64_t>("math.inc", std::int64_t{2});
  ASSERT_EQ(other.result(10s), 3);
  client().restart(60s);
  EXPECT_EQ(client().scheduler_info().workers.size(), 2u);  // as many as before
  if (cluster_) {
    ASSERT_TRUE(pid_before);
    EXPECT_TRUE(cluster_->worker_pid(0, 10s, *pid_before)) << "worker 0 was not restarted";
  }
  for (const auto* f : {&running, &finished, &scattered}) {
    EXPECT_EQ(f->status(), FutureStatus::cancelled) << f->key();
    try {
      f->result(1s);
      ADD_FAILURE() << "no error for " << f->key();
    } catch (const CancelledError& e) {
      EXPECT_THAT(e.what(), HasSubstr("the cluster restarted"));
    }
  }
  EXPECT_TRUE(other.wait(10s));
  EXPECT_EQ(other.status(), FutureStatus::cancelled);  // every client's futures
  EXPECT_EQ(client().scheduler_info().tasks, 0u);
  for (const auto& [address, keys] : client().has_what()) EXPECT_THAT(keys, IsEmpty()) << address;
  // The cluster works after: tasks, scatter and dependencies.
  EXPECT_EQ(client().submit<std::int64_t>("math.inc", std::int64_t{41}).result(20s), 42);
  auto x = client().scatter(std::int64_t{8});
  EXPECT_EQ(client().submit<std::int64_t>("math.square", x).result(20s), 64);
}

INSTANTIATE_TEST_SUITE_P(Transports, ClientApiTest, ::testing::Values("tcp", "ipc", "inproc"),
                         [](const auto& param_info) { return param_info.param; });

TEST(LocalClusterProcessesTest, TcpChildProcesses) {
  Client client(LocalClusterOptions{
      .n_workers = 2, .threads_per_worker = 1, .transport = "tcp", .processes = true});
  EXPECT_THAT(client.scheduler_address(), ::testing::StartsWith("tcp://"));
  auto x = client.submit<std::int64_t>("math.inc", std::int64_t{1});
  auto y = client.submit<std::int64_t>("math.square", x);
  EXPECT_EQ(y.result(10s), 4);
  EXPECT_FALSE(child_pids().empty());
  client.close();
  EXPECT_THAT(child_pids(), ::testing::IsEmpty());
}

// Regression: a task freed while running (its last future dropped) and then submitted again
// under the same key used to be taken for a duplicate by the worker, whose running execution then
// threw its result away: the new future waited forever. One worker, so the resubmission meets
// the still-running execution.
TEST(ResubmitWhileRunningTest, TaskFreedWhileRunningAndSubmittedAgainCompletes) {
  ProcessCluster cluster(ProcessClusterOptions{.transport = "tcp", .n_workers = 1, .nthreads = 1});
  Client client(cluster.address());
  for (int round = 0; round < 2; ++round) {
    SubmitOptions options;
    options.key = "testing.sleep_ms-resubmit-" + std::to_string(round);
    {
      auto first = client.submit<std::int64_t>(options, "testing.sleep_ms", std::int64_t{400});
      std::this_thread::sleep_for(100ms);  // running on the worker by now
    }                                      // dropped: the scheduler frees it on the worker
    std::this_thread::sleep_for(100ms);
    auto again = client.submit<std::int64_t>(options, "testing.sleep_ms", std::int64_t{400});
    EXPECT_EQ(again.result(10s), 400) << "round " << round;
  }
  client.close();
  cluster.stop();
}

}  // namespace
}  // namespace plexus::testing
