// plexus-bench --check: a fast subset of the scenarios compared with committed figures
// (bench/baseline.json), and --write-baseline to refresh those figures.
#pragma once

#include <string>

#include "scenarios.hpp"

namespace plexus::bench {

/// Runs latency, throughput_map (n = 100,000), fanin_tree and chain, then prints one line per
/// metric against `baseline_path`. Returns the process exit code: 0, or 1 if any metric is worse
/// than 3x its baseline time (or 1/3 of its baseline rate) or the baseline lacks it.
int run_check(const ScenarioArgs& args, const std::string& baseline_path);

/// Runs the same subset and writes its figures to `baseline_path`. Returns the exit code.
int write_baseline(const ScenarioArgs& args, const std::string& baseline_path);

}  // namespace plexus::bench
