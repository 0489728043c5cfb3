// plexus-bench: runs one scenario on a LocalCluster (2 worker processes, 1 thread each, tcp
// unless flags say otherwise) and prints exactly one JSON line. Scenario and field names mirror
// ../shared/peer/dask/dask_bench.py so the two can be compared key by key.
//
//   plexus-bench --scenario latency
//   plexus-bench --scenario throughput_map --n 10000,100000
#include <plexus/client.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double round_to(double v, int digits) {
  double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

// Nearest-rank percentile, as the dask script computes it.
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  auto idx = static_cast<std::size_t>(std::ceil(q / 100.0 * static_cast<double>(v.size()))) - 1;
  return v[std::min(idx, v.size() - 1)];
}

plexus::SubmitOptions impure() {
  plexus::SubmitOptions o;
  o.pure = false;
  return o;
}

void warm_up(plexus::Client& client) {
  for (std::int64_t i = 0; i < 200; ++i) {
    client.submit<std::int64_t>(impure(), "math.inc", i).result();
  }
  std::vector<std::int64_t> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);
  client.gather(client.map<std::int64_t>(impure(), "math.noop", xs));
}

nlohmann::ordered_json latency(plexus::Client& client, int calls) {
  warm_up(client);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) {
    auto t0 = Clock::now();
    auto v = client.submit<std::int64_t>(impure(), "math.inc", std::int64_t{i}).result();
    us.push_back(seconds_since(t0) * 1e6);
    if (v != i + 1) throw std::runtime_error("wrong result from math.inc");
  }
  nlohmann::ordered_json out;
  out["calls"] = calls;
  out["warmup_calls"] = 200;
  out["median_us"] = round_to(percentile(us, 50), 1);
  out["p99_us"] = round_to(percentile(us, 99), 1);
  out["p90_us"] = round_to(percentile(us, 90), 1);
  out["mean_us"] = round_to(std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size()), 1);
  out["min_us"] = round_to(*std::min_element(us.begin(), us.end()), 1);
  out["max_us"] = round_to(*std::max_element(us.begin(), us.end()), 1);
  return out;
}

nlohmann::ordered_json throughput_map(plexus::Client& client, const std::vector<std::int64_t>& ns) {
  warm_up(client);
  nlohmann::ordered_json out;
  for (std::int64_t n : ns) {
    std::vector<std::int64_t> xs(static_cast<std::size_t>(n));
    std::iota(xs.begin(), xs.end(), 0);
    auto t0 = Clock::now();
    auto futures = client.map<std::int64_t>(impure(), "math.noop", xs);
    double submit_s = seconds_since(t0);
    auto results = client.gather(futures);
    double wall_s = seconds_since(t0);
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (results[i] != xs[i]) throw std::runtime_error("wrong result from math.noop");
    }
    nlohmann::ordered_json r;
    r["tasks"] = n;
    r["submit_s"] = round_to(submit_s, 4);
    r["wall_s"] = round_to(wall_s, 4);
    r["tasks_per_s"] = round_to(static_cast<double>(n) / wall_s, 1);
    r["us_per_task"] = round_to(wall_s / static_cast<double>(n) * 1e6, 2);
    out["n" + std::to_string(n)] = r;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Plexus benchmarks (one JSON line per run)"};
  std::string scenario;
  std::string n_list = "10000,100000";
  int calls = 2000;
  std::uint32_t workers = 2, threads = 1;
  std::string transport = "tcp";
  app.add_option("--scenario", scenario, "latency | throughput_map")
      ->required()
      ->check(CLI::IsMember({"latency", "throughput_map"}));
  app.add_option("--n", n_list, "throughput_map: comma-separated task counts");
  app.add_option("--calls", calls, "latency: number of timed calls");
  app.add_option("--workers", workers, "worker processes");
  app.add_option("--threads", threads, "threads per worker");
  app.add_option("--transport", transport, "tcp | ipc | inproc")
      ->check(CLI::IsMember({"tcp", "ipc", "inproc"}));
  CLI11_PARSE(app, argc, argv);
  try {
    plexus::LocalClusterOptions o;
    o.n_workers = workers;
    o.threads_per_worker = threads;
    o.transport = transport;
    o.processes = transport != "inproc";
    nlohmann::ordered_json out;
    out["scenario"] = scenario;
    out["impl"] = "plexus";
    out["n_workers"] = workers;
    out["threads_per_worker"] = threads;
    out["transport"] = transport;
    out["processes"] = transport != "inproc";
    plexus::Client client(o);
    if (scenario == "latency") {
      out.update(latency(client, calls));
    } else {
      std::vector<std::int64_t> ns;
      std::stringstream ss(n_list);
      std::string item;
      while (std::getline(ss, item, ',')) ns.push_back(std::stoll(item));
      out.update(throughput_map(client, ns));
    }
    client.close();
    std::cout << out.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "plexus-bench: " << e.what() << "\n";
    return 1;
  }
}
