// plexus-bench: runs one scenario on a cluster of 2 worker processes with 1 thread each (tcp) and
// prints exactly one JSON line. Scenario and field names mirror ../shared/peer/dask/dask_bench.py
// so that bench/compare-dask can compare the two key by key.
//
//   plexus-bench --scenario latency
//   plexus-bench --scenario throughput_map --n 10000,100000
//   plexus-bench --scenario graph_fanin_tree --leaves 8192   # fanin_tree sent as one Graph
//   plexus-bench --scenario transfer --local-cluster     # Client(LocalClusterOptions) instead
//   plexus-bench --check                                 # fast subset vs bench/baseline.json
//   plexus-bench --write-baseline                        # refresh bench/baseline.json
//
// By default the scheduler and workers are started here as separate daemons (so their memory
// can be read from /proc); --local-cluster uses the client's own LocalCluster.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "check.hpp"
#include "scenarios.hpp"

namespace {

std::vector<double> loadavg() {
  std::ifstream in("/proc/loadavg");
  std::vector<double> v(3);
  in >> v[0] >> v[1] >> v[2];
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  namespace pb = plexus::bench;
  CLI::App app{"Plexus benchmarks (one JSON line per run)"};
  pb::ScenarioArgs args;
  std::string scenario;
  std::string n_list;
  bool check = false;
  bool refresh = false;
  std::string baseline = PLEXUS_BENCH_BASELINE;
  auto* sc = app.add_option("--scenario", scenario)->check(CLI::IsMember(pb::scenario_names()));
  auto* ck = app.add_flag("--check", check,
                          "run latency, throughput_map 100k, fanin_tree and chain; compare with "
                          "--baseline (fail beyond 3x)");
  auto* wb = app.add_flag("--write-baseline", refresh, "run the --check subset; write --baseline");
  sc->excludes(ck)->excludes(wb);
  ck->excludes(wb);
  app.add_option("--baseline", baseline, "baseline figures for --check")->capture_default_str();
  app.add_option("--calls", args.calls, "latency: timed calls")->capture_default_str();
  app.add_option("--n", n_list,
                 "throughput_map: comma-separated task counts "
                 "(default 10000,100000,1000000)");
  app.add_option("--leaves", args.leaves, "fanin_tree, graph_fanin_tree: leaves (power of 2)")
      ->capture_default_str();
  app.add_option("--length", args.length, "chain: length")->capture_default_str();
  app.add_option("--n-pending", args.n_pending, "sched_memory: pending tasks")
      ->capture_default_str();
  app.add_option("--mb", args.mb, "transfer: MB produced per rep (half of it crosses)")
      ->capture_default_str();
  app.add_option("--reps", args.reps, "transfer: timed reps")->capture_default_str();
  app.add_option("--workers", args.cluster.workers, "worker processes")->capture_default_str();
  app.add_option("--threads", args.cluster.threads, "threads per worker")->capture_default_str();
  app.add_option("--transport", args.cluster.transport,
                 "tcp | ipc | inproc (inproc needs "
                 "--local-cluster)")
      ->check(CLI::IsMember({"tcp", "ipc", "inproc"}))
      ->capture_default_str();
  app.add_flag("--local-cluster", args.cluster.local_cluster,
               "build the cluster with Client(LocalClusterOptions) instead of starting the "
               "daemons here");
  CLI11_PARSE(app, argc, argv);
  if (scenario.empty() && !check && !refresh) {
    std::cerr << "plexus-bench: give --scenario, --check or --write-baseline\n" << app.help();
    return 2;
  }
  try {
    if (!n_list.empty()) {
      args.n.clear();
      std::stringstream ss(n_list);
      std::string item;
      while (std::getline(ss, item, ',')) args.n.push_back(std::stoll(item));
    }
    if (check) return pb::run_check(args, baseline);
    if (refresh) return pb::write_baseline(args, baseline);
    auto t0 = pb::Clock::now();
    pb::Json out;
    out["scenario"] = scenario;
    out["impl"] = "plexus";
    out["n_workers"] = args.cluster.workers;
    out["threads_per_worker"] = args.cluster.threads;
    out["transport"] = args.cluster.transport;
    out["processes"] = args.cluster.transport != "inproc";
    out["nproc"] = std::thread::hardware_concurrency();
    out["loadavg_start"] = loadavg();
    out.update(pb::run_scenario(scenario, args));
    out["scenario_wall_s"] = pb::round_to(pb::seconds_since(t0), 3);
    out["loadavg_end"] = loadavg();
    std::cout << out.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "plexus-bench: " << e.what() << "\n";
    return 1;
  }
}
