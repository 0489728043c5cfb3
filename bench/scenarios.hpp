// The plexus-bench scenarios. Each one builds its own cluster, checks every result it gets
// (throwing std::runtime_error on a wrong one) and returns its figures as a JSON object whose
// field names mirror ../shared/peer/dask/dask_bench.py.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_cluster.hpp"

namespace plexus::bench {

using Json = nlohmann::ordered_json;

struct ScenarioArgs {
  ClusterOptions cluster;
  int calls = 2000;                                        // latency
  std::vector<std::int64_t> n = {10000, 100000, 1000000};  // throughput_map
  std::int64_t leaves = 8192;                              // fanin_tree
  std::int64_t length = 2000;                              // chain
  std::int64_t n_pending = 100000;                         // sched_memory
  std::int64_t mb = 100;                                   // transfer: total moved per rep
  int reps = 5;                                            // transfer
};

/// Names accepted by run_scenario, in the order compare-dask runs them.
const std::vector<std::string>& scenario_names();
/// Runs one scenario; throws std::invalid_argument for an unknown name.
Json run_scenario(const std::string& name, const ScenarioArgs& args);

}  // namespace plexus::bench
