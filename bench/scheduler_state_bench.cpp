// plexus-sched-bench: the sans-I/O SchedulerState alone, driven as the scheduler's event loop
// would drive it, with an outbox that only remembers which worker must compute which key.
//
// Each iteration submits a graph, plays every compute request back as on_task_done (in the order
// they were sent), then releases every key, leaving the state empty for the next iteration.
// items_per_second counts tasks; "transitions" counts SchedulerCounters::transitions per second.
//
//   build-bench/bench/plexus-sched-bench --benchmark_filter=WideMap
#include <benchmark/benchmark.h>

#include <cstdint>
#include <deque>
#include <plexus/scheduler/scheduler_state.hpp>
#include <string>
#include <utility>
#include <vector>

namespace plexus::sched {
namespace {

constexpr PeerId kClient = 1;
constexpr PeerId kFirstWorker = 100;

// Keeps the compute requests to play back; everything else is dropped.
class QueueOutbox : public SchedulerOutbox {
 public:
  void compute(PeerId worker, const ComputeRequest& r) override {
    pending.emplace_back(worker, std::string(r.key));
  }
  void free_key(PeerId, std::string_view) override {}
  void report(PeerId, const KeyReport&) override {}
  void shutdown_worker(PeerId, std::string_view) override {}
  void steal(PeerId, std::span<const std::string_view>) override {}
  void copy_key(PeerId, const DepLocation&) override {}
  void restart_worker(PeerId, bool) override {}
  void reply(PeerId, std::uint64_t, std::string_view, std::string_view) override {}

  std::deque<std::pair<PeerId, std::string>> pending;
};

struct Harness {
  explicit Harness(std::uint32_t workers) : state(SchedulerOptions{}, outbox) {
    state.on_client_joined(kClient, "bench");
    for (std::uint32_t w = 0; w < workers; ++w) {
      state.on_worker_joined(kFirstWorker + w,
                             WorkerInfo{"w" + std::to_string(w), "tcp://w" + std::to_string(w), 1},
                             now);
    }
  }

  // Completes every compute request, including those that completions release.
  void drain() {
    static const std::string kValue(8, 'x');
    while (!outbox.pending.empty()) {
      auto [worker, key] = std::move(outbox.pending.front());
      outbox.pending.pop_front();
      now += 1e-6;
      state.on_task_done(worker, key, kValue.size(), std::string_view(kValue), 1e-6, now);
    }
  }

  QueueOutbox outbox;
  SchedulerState state;
  double now = 0;
};

TaskSpec spec(std::string key, std::vector<std::string> deps = {}) {
  TaskSpec s;
  s.key = std::move(key);
  s.name = "math.inc";
  s.args = "args";
  s.deps = std::move(deps);
  return s;
}

// Submit -> run -> done -> release for `keys`; reports the per-iteration counters.
void run_graph(benchmark::State& st, Harness& h, const std::vector<TaskSpec>& graph,
               const std::vector<std::string>& keys) {
  const std::uint64_t t0 = h.state.counters().transitions;
  for (auto _ : st) {
    st.PauseTiming();
    std::vector<TaskSpec> copy = graph;  // on_submit consumes its argument
    st.ResumeTiming();
    h.state.on_submit(kClient, std::move(copy));
    h.drain();
    h.state.on_release(kClient, keys);
  }
  if (h.state.task_count() != 0) st.SkipWithError("tasks left after release");
  if (auto bad = h.state.validate()) st.SkipWithError(bad->c_str());
  const auto transitions = static_cast<double>(h.state.counters().transitions - t0);
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(graph.size()));
  st.counters["transitions"] = benchmark::Counter(transitions, benchmark::Counter::kIsRate);
  st.counters["transitions_per_task"] =
      transitions / static_cast<double>(st.iterations() * graph.size());
}

// N independent tasks.
void BM_WideMap(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  Harness h(static_cast<std::uint32_t>(st.range(1)));
  std::vector<TaskSpec> graph;
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < n; ++i) {
    keys.push_back("noop-" + std::to_string(i));
    graph.push_back(spec(keys.back()));
  }
  run_graph(st, h, graph, keys);
}
BENCHMARK(BM_WideMap)
    ->ArgNames({"tasks", "workers"})
    ->Args({10000, 2})
    ->Args({100000, 2})
    ->Args({100000, 16})
    ->Unit(benchmark::kMillisecond);

// A binary sum tree over `leaves` leaves (2 * leaves - 1 tasks), every key wanted, as in
// plexus-bench's fanin_tree.
void BM_FaninTree(benchmark::State& st) {
  const auto leaves = static_cast<std::size_t>(st.range(0));
  Harness h(static_cast<std::uint32_t>(st.range(1)));
  std::vector<TaskSpec> graph;
  std::vector<std::string> level;
  for (std::size_t i = 0; i < leaves; ++i) {
    level.push_back("inc-" + std::to_string(i));
    graph.push_back(spec(level.back()));
  }
  std::size_t next_id = 0;
  while (level.size() > 1) {
    std::vector<std::string> up;
    for (std::size_t j = 0; j < level.size(); j += 2) {
      up.push_back("add-" + std::to_string(next_id++));
      graph.push_back(spec(up.back(), {level[j], level[j + 1]}));
    }
    level = std::move(up);
  }
  std::vector<std::string> keys;
  for (const auto& t : graph) keys.push_back(t.key);
  run_graph(st, h, graph, keys);
}
BENCHMARK(BM_FaninTree)
    ->ArgNames({"leaves", "workers"})
    ->Args({8192, 2})
    ->Args({65536, 2})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace plexus::sched

BENCHMARK_MAIN();
