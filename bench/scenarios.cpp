#include "scenarios.hpp"

#include <plexus/graph.hpp>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <thread>

namespace plexus::bench {

namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

Json median_and_tail(std::vector<double> us) {
  Json out;
  out["median_us"] = round_to(percentile(us, 50), 1);
  out["p99_us"] = round_to(percentile(us, 99), 1);
  out["p90_us"] = round_to(percentile(us, 90), 1);
  out["mean_us"] =
      round_to(std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size()), 1);
  out["min_us"] = round_to(*std::min_element(us.begin(), us.end()), 1);
  out["max_us"] = round_to(*std::max_element(us.begin(), us.end()), 1);
  return out;
}

std::uint64_t rss_of(pid_t pid) {
  auto v = proc_status_bytes(pid, "VmRSS");
  if (!v) throw std::runtime_error("cannot read VmRSS of pid " + std::to_string(pid));
  return *v;
}

// Polls the RSS of `pid` every 50 ms until it moved less than 256 KiB over the last 10 samples
// (0.5 s); returns that RSS. Throws after `timeout`.
std::uint64_t wait_rss_stable(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::uint64_t> window;
  while (true) {
    window.push_back(rss_of(pid));
    if (window.size() > 10) window.erase(window.begin());
    if (window.size() == 10) {
      auto [lo, hi] = std::minmax_element(window.begin(), window.end());
      if (*hi - *lo < 256 * 1024) return window.back();
    }
    if (Clock::now() > deadline) throw std::runtime_error("RSS of pid did not settle");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Json latency(BenchCluster& cluster, const ScenarioArgs& args) {
  Client& client = cluster.client();
  warm_up(client);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(args.calls));
  for (int i = 0; i < args.calls; ++i) {
    auto t0 = Clock::now();
    auto v = client.submit<std::int64_t>(impure(), "math.inc", std::int64_t{i}).result();
    us.push_back(seconds_since(t0) * 1e6);
    require(v == i + 1, "latency: wrong result from math.inc");
  }
  Json out;
  out["calls"] = args.calls;
  out["warmup_calls"] = 200;
  out.update(median_and_tail(std::move(us)));
  return out;
}

Json throughput_map(BenchCluster& cluster, const ScenarioArgs& args) {
  Client& client = cluster.client();
  warm_up(client);
  const pid_t sched = cluster.scheduler_pid();
  Json out;
  std::uint64_t peak = 0;
  bool per_run_peak = true;
  for (std::int64_t n : args.n) {
    std::vector<std::int64_t> xs(static_cast<std::size_t>(n));
    std::iota(xs.begin(), xs.end(), 0);
    per_run_peak = reset_peak_rss(sched) && per_run_peak;
    auto t0 = Clock::now();
    auto futures = client.map<std::int64_t>(impure(), "math.noop", xs);
    double submit_s = seconds_since(t0);
    auto results = client.gather(futures);
    double wall_s = seconds_since(t0);
    require(results == xs, "throughput_map: wrong results from math.noop");
    Json r;
    r["tasks"] = n;
    r["submit_s"] = round_to(submit_s, 4);
    r["wall_s"] = round_to(wall_s, 4);
    r["tasks_per_s"] = round_to(static_cast<double>(n) / wall_s, 1);
    r["us_per_task"] = round_to(wall_s / static_cast<double>(n) * 1e6, 2);
    std::uint64_t hwm = proc_status_bytes(sched, "VmHWM").value_or(0);
    r["sched_peak_rss_bytes"] = hwm;
    peak = std::max(peak, hwm);
    out["n" + std::to_string(n)] = r;
  }
  out["sched_peak_rss_bytes"] = peak;
  out["sched_peak_rss_method"] =
      per_run_peak ? "VmHWM of the scheduler, reset (clear_refs 5) before each n"
                   : "VmHWM of the scheduler since it started (reset not permitted)";
  return out;
}

// A fan-in tree's figures, once its root is checked against the closed form 1 + ... + leaves.
Json tree_result(const char* scenario, std::int64_t leaves, std::int64_t root, double submit_s,
                 double wall_s) {
  require(root == leaves * (leaves + 1) / 2, std::string(scenario) + ": root is " +
                                                 std::to_string(root) + ", expected " +
                                                 std::to_string(leaves * (leaves + 1) / 2));
  const std::int64_t tasks = 2 * leaves - 1;
  Json out;
  out["leaves"] = leaves;
  out["tasks"] = tasks;
  out["submit_s"] = round_to(submit_s, 4);
  out["wall_s"] = round_to(wall_s, 4);
  out["tasks_per_s"] = round_to(static_cast<double>(tasks) / wall_s, 1);
  out["us_per_task"] = round_to(wall_s / static_cast<double>(tasks) * 1e6, 2);
  return out;
}

Json fanin_tree(BenchCluster& cluster, const ScenarioArgs& args) {
  const std::int64_t leaves = args.leaves;
  require(leaves > 0 && (leaves & (leaves - 1)) == 0, "fanin_tree: leaves must be a power of 2");
  Client& client = cluster.client();
  warm_up(client);
  auto t0 = Clock::now();
  std::vector<Future<std::int64_t>> level;
  level.reserve(static_cast<std::size_t>(leaves));
  for (std::int64_t i = 0; i < leaves; ++i) {
    level.push_back(client.submit<std::int64_t>(impure(), "math.inc", i));
  }
  while (level.size() > 1) {
    std::vector<Future<std::int64_t>> next;
    next.reserve(level.size() / 2);
    for (std::size_t j = 0; j < level.size(); j += 2) {
      next.push_back(client.submit<std::int64_t>(impure(), "math.add_int", level[j], level[j + 1]));
    }
    level = std::move(next);
  }
  double submit_s = seconds_since(t0);
  std::int64_t root = level[0].result();
  return tree_result("fanin_tree", leaves, root, submit_s, seconds_since(t0));
}

// fanin_tree's tree, built as a plexus::Graph and sent by one compute: the client wants only the
// root, so the scheduler releases each inner sum as soon as its parent has it.
Json graph_fanin_tree(BenchCluster& cluster, const ScenarioArgs& args) {
  const std::int64_t leaves = args.leaves;
  require(leaves > 0 && (leaves & (leaves - 1)) == 0,
          "graph_fanin_tree: leaves must be a power of 2");
  Client& client = cluster.client();
  warm_up(client);
  auto t0 = Clock::now();
  Graph g;
  std::vector<Node<std::int64_t>> level;
  level.reserve(static_cast<std::size_t>(leaves));
  for (std::int64_t i = 0; i < leaves; ++i) {
    level.push_back(g.add<std::int64_t>(impure(), "math.inc", i));
  }
  while (level.size() > 1) {
    std::vector<Node<std::int64_t>> next;
    next.reserve(level.size() / 2);
    for (std::size_t j = 0; j < level.size(); j += 2) {
      next.push_back(g.add<std::int64_t>(impure(), "math.add_int", level[j], level[j + 1]));
    }
    level = std::move(next);
  }
  const double build_s = seconds_since(t0);
  Future<std::int64_t> root_future = client.compute(level[0]);
  const double submit_s = seconds_since(t0);
  const std::int64_t root = root_future.result();
  Json out = tree_result("graph_fanin_tree", leaves, root, submit_s, seconds_since(t0));
  out["build_s"] = round_to(build_s, 4);
  return out;
}

Json chain(BenchCluster& cluster, const ScenarioArgs& args) {
  require(args.length >= 1, "chain: length must be at least 1");
  Client& client = cluster.client();
  warm_up(client);
  auto t0 = Clock::now();
  auto f = client.submit<std::int64_t>(impure(), "math.inc", std::int64_t{0});
  for (std::int64_t i = 1; i < args.length; ++i) {
    f = client.submit<std::int64_t>(impure(), "math.inc", f);
  }
  double submit_s = seconds_since(t0);
  std::int64_t r = f.result();
  double wall_s = seconds_since(t0);
  require(r == args.length,
          "chain: result " + std::to_string(r) + ", expected " + std::to_string(args.length));
  Json out;
  out["tasks"] = args.length;
  out["submit_s"] = round_to(submit_s, 4);
  out["wall_s"] = round_to(wall_s, 4);
  out["us_per_task"] = round_to(wall_s / static_cast<double>(args.length) * 1e6, 1);
  out["tasks_per_s"] = round_to(static_cast<double>(args.length) / wall_s, 1);
  return out;
}

Json sched_memory(BenchCluster& cluster, const ScenarioArgs& args) {
  const std::int64_t n = args.n_pending;
  Client& client = cluster.client();
  warm_up(client);
  const pid_t sched = cluster.scheduler_pid();
  const pid_t self = ::getpid();
  TempDir dir;
  const std::string go = (dir.path() / "go").string();
  auto blocker =
      client.submit<std::int64_t>(impure(), "testing.wait_file", go, std::int64_t{300000});
  std::vector<std::int64_t> xs(static_cast<std::size_t>(n));
  std::iota(xs.begin(), xs.end(), 0);
  std::vector<Future<std::int64_t>> blockers(static_cast<std::size_t>(n), blocker);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the blocker reaches a worker
  const std::uint64_t sched_before = wait_rss_stable(sched, std::chrono::seconds(30));
  const std::uint64_t client_before = rss_of(self);

  auto t0 = Clock::now();
  auto futures = client.map<std::int64_t>(impure(), "testing.dep_inc", xs, blockers);
  double map_s = seconds_since(t0);
  const std::uint64_t sched_after = wait_rss_stable(sched, std::chrono::seconds(300));
  double settled_s = seconds_since(t0);
  const std::uint64_t client_after = rss_of(self);
  require(!blocker.done(), "sched_memory: the blocker finished before the file existed");
  for (std::size_t i = 0; i < futures.size(); i += futures.size() / 100 + 1) {
    require(!futures[i].done(), "sched_memory: a dependent finished before its blocker");
  }

  std::ofstream(go).put('x');
  auto t1 = Clock::now();
  auto results = client.gather(futures);
  double drain_s = seconds_since(t1);
  require(blocker.result() >= 0, "sched_memory: wait_file returned a negative wait");
  for (std::size_t i = 0; i < results.size(); ++i) {
    require(results[i] == xs[i] + 1, "sched_memory: wrong result from testing.dep_inc");
  }
  auto per = [n](std::uint64_t after, std::uint64_t before) {
    return round_to(
        (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(n), 1);
  };
  Json out;
  out["pending_tasks"] = n;
  out["sched_rss_before"] = sched_before;
  out["sched_rss_after"] = sched_after;
  out["sched_bytes_per_pending_task"] = per(sched_after, sched_before);
  out["client_rss_before"] = client_before;
  out["client_rss_after"] = client_after;
  out["client_bytes_per_future"] = per(client_after, client_before);
  out["map_call_s"] = round_to(map_s, 3);
  out["until_sched_rss_settled_s"] = round_to(settled_s, 3);
  out["release_and_gather_s"] = round_to(drain_s, 3);
  out["sched_peak_rss_bytes"] = proc_status_bytes(sched, "VmHWM").value_or(0);
  out["method"] =
      "one testing.wait_file blocker, then n testing.dep_inc(i, blocker); scheduler VmRSS "
      "(its own process) read when stable (<256 KiB change over 0.5 s) before and after the map; "
      "client VmRSS growth includes the futures and the map's encoded calls";
  return out;
}

Json transfer(BenchCluster& cluster, const ScenarioArgs& args) {
  Client& client = cluster.client();
  warm_up(client);
  require(cluster.worker_pids().size() == 2, "transfer: needs the pids of exactly 2 workers");
  const std::int64_t half = args.mb * 1000000 / 2;
  const auto wpids = cluster.worker_pids();
  struct Rep {
    double consumer_s = 0;
    double local_s = 0;
    int placement_retries = 0;
  };
  auto one = [&]() {
    Rep rep;
    for (int attempt = 0;; ++attempt) {
      require(attempt < 5, "transfer: both producers kept landing on the same worker");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // earlier frees land
      std::vector<std::uint64_t> before;
      for (pid_t p : wpids) before.push_back(rss_of(p));
      auto a = client.submit<Bytes>(impure(), "testing.bytes", half);
      auto b = client.submit<Bytes>(impure(), "testing.bytes", half);
      a.wait();
      b.wait();
      require(a.status() == FutureStatus::finished && b.status() == FutureStatus::finished,
              "transfer: a producer failed");
      // Each worker holding one 50 MB result has grown by about that much.
      bool crossed = true;
      for (std::size_t i = 0; i < wpids.size(); ++i) {
        crossed = crossed && rss_of(wpids[i]) > before[i] + static_cast<std::uint64_t>(half) / 2;
      }
      if (!crossed) {
        ++rep.placement_retries;
        continue;
      }
      auto t0 = Clock::now();
      auto c = client.submit<std::int64_t>(impure(), "testing.total_len_view", a, b).result();
      rep.consumer_s = seconds_since(t0);
      require(c == 2 * half, "transfer: wrong total_len");
      // The same consumer on data already local (both arguments are the same key).
      auto t1 = Clock::now();
      auto d = client.submit<std::int64_t>(impure(), "testing.total_len_view", a, a).result();
      rep.local_s = seconds_since(t1);
      require(d == 2 * half, "transfer: wrong total_len on local data");
      return rep;
    }
  };
  Rep first = one();  // connection set-up and fresh heaps: reported, not in the medians
  std::vector<double> consumer, local, moved;
  int retries = first.placement_retries;
  for (int i = 0; i < args.reps; ++i) {
    Rep r = one();
    consumer.push_back(r.consumer_s);
    local.push_back(r.local_s);
    moved.push_back(std::max(r.consumer_s - r.local_s, 1e-9));
    retries += r.placement_retries;
  }
  auto rounded = [](const std::vector<double>& v) {
    Json a = Json::array();
    for (double x : v) a.push_back(round_to(x, 4));
    return a;
  };
  const double mb = static_cast<double>(half) / 1e6;
  Json out;
  out["payload_bytes"] = 2 * half;
  out["moved_bytes_per_rep"] = half;
  out["payload"] = "testing.bytes (pattern i % 251; plexus does not compress)";
  out["first_consumer_task_s"] = round_to(first.consumer_s, 4);
  out["first_local_baseline_s"] = round_to(first.local_s, 4);
  out["reps"] = args.reps;
  out["consumer_task_s"] = rounded(consumer);
  out["local_baseline_s"] = rounded(local);
  out["worker_transfer_s"] = rounded(moved);
  out["worker_transfer_MBps_median"] = round_to(mb / percentile(moved, 50), 1);
  out["consumer_task_MBps_median"] = round_to(mb / percentile(consumer, 50), 1);
  out["worker_transfer_s_median"] = round_to(percentile(moved, 50), 4);
  out["consumer_task_s_median"] = round_to(percentile(consumer, 50), 4);
  out["local_baseline_s_median"] = round_to(percentile(local, 50), 4);
  out["placement_retries"] = retries;
  out["method"] =
      "per rep: two testing.bytes(" + std::to_string(half) +
      ") producers submitted together land one per idle worker (checked: both workers' VmRSS "
      "grow by > half the payload, else retried); consumer testing.total_len_view(a, b) (reads "
      "its inputs in place) submit->result must fetch one input from the other worker; local "
      "baseline = testing.total_len_view(a, a) on "
      "a's holder (same bytes decoded, nothing fetched). worker_transfer_s = consumer - baseline; "
      "MBps = moved MB / its median";
  return out;
}

Json startup(const ScenarioArgs& args) {
  LocalClusterOptions o;
  o.n_workers = args.cluster.workers;
  o.threads_per_worker = args.cluster.threads;
  o.transport = args.cluster.transport;
  o.processes = args.cluster.transport != "inproc";
  auto t0 = Clock::now();
  Client client(o);
  double ready_s = seconds_since(t0);
  auto r = client.submit<std::int64_t>(impure(), "math.inc", std::int64_t{1}).result();
  double first_s = seconds_since(t0);
  require(r == 2, "startup: wrong result from math.inc");
  const auto spawned = child_pids("plexus-");
  auto t1 = Clock::now();
  client.close();
  double close_s = seconds_since(t1);
  const auto alive = child_pids("plexus-");
  Json out;
  out["client_ready_s"] = round_to(ready_s, 4);
  out["first_result_s"] = round_to(first_s, 4);
  out["close_s"] = round_to(close_s, 4);
  out["total_s"] = round_to(ready_s + (first_s - ready_s) + close_s, 4);
  out["processes_spawned"] = spawned.size();
  out["processes_alive_after_close"] = alive.size();
  require(alive.empty(), "startup: cluster processes still running after close()");
  return out;
}

}  // namespace

const std::vector<std::string>& scenario_names() {
  static const std::vector<std::string> names = {
      "latency",  "throughput_map", "fanin_tree", "chain",           "sched_memory",
      "transfer", "startup",        "graph_fanin_tree"};
  return names;
}

Json run_scenario(const std::string& name, const ScenarioArgs& args) {
  if (name == "startup") return startup(args);
  using Fn = Json (*)(BenchCluster&, const ScenarioArgs&);
  Fn fn = nullptr;
  if (name == "latency") fn = &latency;
  if (name == "throughput_map") fn = &throughput_map;
  if (name == "fanin_tree") fn = &fanin_tree;
  if (name == "graph_fanin_tree") fn = &graph_fanin_tree;
  if (name == "chain") fn = &chain;
  if (name == "sched_memory") fn = &sched_memory;
  if (name == "transfer") fn = &transfer;
  if (fn == nullptr) throw std::invalid_argument("unknown scenario '" + name + "'");
  BenchCluster cluster(args.cluster);
  Json out;
  out["cluster"] = cluster.mode();
  out.update(fn(cluster, args));
  cluster.close();
  return out;
}

}  // namespace plexus::bench
