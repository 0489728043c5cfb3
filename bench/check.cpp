#include "check.hpp"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

namespace plexus::bench {

namespace {

enum class Kind { time, rate };  // time: lower is better; rate: higher is better

struct Metric {
  const char* scenario;
  const char* pointer;  // JSON pointer into the scenario's output
  Kind kind;
};

// Margins are wide on purpose: --check catches regressions of several times, not noise.
constexpr double kMargin = 3.0;

const std::vector<Metric>& metrics() {
  static const std::vector<Metric> m = {
      {"latency", "/median_us", Kind::time},
      {"latency", "/p99_us", Kind::time},
      {"throughput_map", "/n100000/tasks_per_s", Kind::rate},
      {"throughput_map", "/n100000/submit_s", Kind::time},
      {"fanin_tree", "/tasks_per_s", Kind::rate},
      {"fanin_tree", "/submit_s", Kind::time},
      {"chain", "/us_per_task", Kind::time},
  };
  return m;
}

std::string metric_name(const Metric& m) {
  std::string name = std::string(m.scenario) + m.pointer;
  for (char& c : name) c = c == '/' ? '.' : c;
  return name;
}

// Runs the subset; returns metric name -> value.
std::map<std::string, double> measure(ScenarioArgs args) {
  args.n = {100000};
  std::map<std::string, Json> runs;
  for (const char* s : {"latency", "throughput_map", "fanin_tree", "chain"}) {
    std::cerr << "plexus-bench --check: running " << s << "...\n";
    runs[s] = run_scenario(s, args);
  }
  std::map<std::string, double> out;
  for (const auto& m : metrics()) {
    out[metric_name(m)] = runs.at(m.scenario).at(Json::json_pointer(m.pointer)).get<double>();
  }
  return out;
}

}  // namespace

int run_check(const ScenarioArgs& args, const std::string& baseline_path) {
  std::ifstream in(baseline_path);
  if (!in) {
    std::cerr << "plexus-bench --check: cannot read " << baseline_path << "\n";
    return 1;
  }
  Json baseline = Json::parse(in).at("metrics");
  auto now = measure(args);
  int failures = 0;
  for (const auto& m : metrics()) {
    const std::string name = metric_name(m);
    const double v = now.at(name);
    if (!baseline.contains(name)) {
      std::printf("FAIL %-36s %12.6g  (no baseline)\n", name.c_str(), v);
      ++failures;
      continue;
    }
    const double base = baseline.at(name).get<double>();
    const bool time = m.kind == Kind::time;
    const double limit = time ? base * kMargin : base / kMargin;
    const bool ok = time ? v <= limit : v >= limit;
    failures += ok ? 0 : 1;
    // cost ratio: > 1 means slower than the baseline, whichever way the metric points
    std::printf("%s %-36s %12.6g  baseline %12.6g  limit %s %12.6g  (cost %.2fx)\n",
                ok ? "ok  " : "FAIL", name.c_str(), v, base, time ? "<=" : ">=", limit,
                time ? v / base : base / v);
  }
  std::printf("%s: %d of %zu metrics regressed beyond %.0fx\n", failures ? "FAIL" : "ok", failures,
              metrics().size(), kMargin);
  return failures ? 1 : 0;
}

int write_baseline(const ScenarioArgs& args, const std::string& baseline_path) {
  auto now = measure(args);
  Json out;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::time_t t = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&t));
  out["comment"] =
      "plexus-bench --check figures; refresh with plexus-bench --write-baseline (README: "
      "Benchmarks). Times fail above 3x, rates below 1/3.";
  out["written"] = date;
  out["host"] = host;
  out["nproc"] = std::thread::hardware_concurrency();
  out["metrics"] = Json::object();
  for (const auto& [k, v] : now) out["metrics"][k] = v;
  std::ofstream f(baseline_path);
  f << out.dump(2) << "\n";
  if (!f) {
    std::cerr << "plexus-bench: cannot write " << baseline_path << "\n";
    return 1;
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace plexus::bench
