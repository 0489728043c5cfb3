#include <plexus/client/local_cluster.hpp>

#include <plexus/common/logging.hpp>
#include <plexus/common/process.hpp>
#include <plexus/common/task_key.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/scheduler/scheduler_service.hpp>
#include <plexus/worker/memory_policy.hpp>
#include <plexus/worker/worker_service.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace plexus {

namespace fs = std::filesystem;

namespace {
// LocalClusterOptions::resources as plexus-worker --resources takes them: "GPU=1 MEM=2e+09".
std::string resources_arg(const LocalClusterOptions& o) {
  std::ostringstream text;
  text.precision(17);
  for (const auto& [name, amount] : o.resources) {
    if (text.tellp() > 0) text << ' ';
    text << name << '=' << amount;
  }
  return text.str();
}
}  // namespace

std::string find_daemon(const std::string& program, const std::string& bin_dir) {
  std::vector<std::string> dirs;
  if (!bin_dir.empty()) dirs.push_back(bin_dir);
  if (const char* env = std::getenv("PLEXUS_BIN_DIR"); env && *env) dirs.emplace_back(env);
  if (auto d = executable_dir(); !d.empty()) dirs.push_back(d);
  if (auto d = library_dir(); !d.empty()) {
    dirs.push_back(d);
    dirs.push_back((fs::path(d).parent_path() / "bin").string());
  }
  dirs.emplace_back(PLEXUS_BUILD_BIN_DIR);
  dirs.emplace_back(PLEXUS_INSTALL_BIN_DIR);
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string d;
    while (std::getline(ss, d, ':')) {
      if (!d.empty()) dirs.push_back(d);
    }
  }
  for (const auto& d : dirs) {
    fs::path p = fs::path(d) / program;
    if (::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p)) return p.string();
  }
  std::string tried;
  for (const auto& d : dirs) tried += (tried.empty() ? "" : ", ") + d;
  throw ConnectionError("cannot start a LocalCluster: program '" + program +
                        "' not found in " + tried +
                        " (set local-cluster.bin-dir or PLEXUS_BIN_DIR)");
}

struct LocalCluster::Impl {
  // Threads mode.
  std::unique_ptr<sched::SchedulerService> scheduler;
  std::thread scheduler_thread;
  std::vector<std::unique_ptr<worker::WorkerService>> workers;
  std::vector<std::thread> worker_threads;
  // Processes mode.
  std::unique_ptr<ChildProcess> scheduler_process;
  std::vector<std::unique_ptr<ChildProcess>> worker_processes;
  fs::path temp_dir;
  std::string address;
  std::chrono::milliseconds shutdown_timeout{5000};
  bool stopped = false;

  void start_threads(const config::Config& c, const std::string& bind_address, std::uint32_t n,
                     std::uint32_t threads, const LocalClusterOptions& o) {
    const std::vector<std::string>& plugin_path = o.plugin_path;
    auto so = sched::service_options(c);
    so.address = bind_address;
    so.scheduler_file.clear();
    scheduler = std::make_unique<sched::SchedulerService>(so);
    address = scheduler->address();
    scheduler_thread = std::thread([s = scheduler.get()] { s->run(); });
    for (std::uint32_t i = 0; i < n; ++i) {
      auto wo = worker::worker_options(c, address);
      wo.nthreads = threads;
      wo.name = "local-" + std::to_string(i);
      wo.data_address.clear();
      wo.plugin_path.insert(wo.plugin_path.begin(), plugin_path.begin(), plugin_path.end());
      if (!o.resources.empty()) wo.resources = worker::parse_resources(resources_arg(o));
      wo.memory = worker::memory_policy(c, threads);
      if (o.memory_limit) wo.memory.limit = worker::parse_memory_limit(*o.memory_limit, threads);
      // The process's memory is the client's and every worker's: only managed memory counts.
      wo.memory.measure_process = false;
      workers.push_back(std::make_unique<worker::WorkerService>(wo));
      worker_threads.emplace_back([w = workers.back().get()] {
        try {
          w->run();
        } catch (const std::exception& e) {
          logger("worker")->error("local worker failed: {}", e.what());
        }
      });
    }
  }

  void start_processes(const config::Config& c, const std::string& bind_address, std::uint32_t n,
                       std::uint32_t threads, const LocalClusterOptions& o) {
    std::string bin_dir = c.get_string("local-cluster.bin-dir");
    std::string sched_bin = find_daemon("plexus-scheduler", bin_dir);
    std::string worker_bin = find_daemon("plexus-worker", bin_dir);
    std::string level = c.get_string("local-cluster.log-level");
    fs::path file = temp_dir / "scheduler.json";
    std::vector<std::string> common;
    if (o.config_file) common = {"--config", *o.config_file};
    common.insert(common.end(), {"--log-level", level});
    std::vector<std::string> sargv = {sched_bin, "--address", bind_address, "--scheduler-file",
                                      file.string()};
    sargv.insert(sargv.end(), common.begin(), common.end());
    scheduler_process = std::make_unique<ChildProcess>(sargv);
    auto timeout = std::chrono::milliseconds(c.get_int("local-cluster.startup-timeout-ms"));
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      std::ifstream in(file);
      if (in && std::getline(in, address) && !address.empty()) break;
      if (!scheduler_process->running()) {
        throw ConnectionError("LocalCluster: the scheduler (" + sched_bin + ") " +
                              describe_wait_status(scheduler_process->exit_status().value_or(0)) +
                              " before it was listening");
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw ConnectionError("LocalCluster: the scheduler did not start listening within " +
                              std::to_string(timeout.count()) + " ms");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      std::vector<std::string> wargv = {worker_bin, address, "--nthreads", std::to_string(threads),
                                        "--name", "local-" + std::to_string(i)};
      for (const auto& p : o.plugin_path) wargv.insert(wargv.end(), {"--plugin-path", p});
      if (!o.nanny.value_or(c.get_bool("nanny.enabled"))) wargv.push_back("--no-nanny");
      if (!o.resources.empty()) wargv.insert(wargv.end(), {"--resources", resources_arg(o)});
      if (o.memory_limit) wargv.insert(wargv.end(), {"--memory-limit", *o.memory_limit});
      wargv.insert(wargv.end(), common.begin(), common.end());
      worker_processes.push_back(std::make_unique<ChildProcess>(wargv));
    }
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    for (auto& w : workers) w->stop();
    for (auto& t : worker_threads) t.join();
    for (auto& w : worker_processes) w->stop(shutdown_timeout);
    if (scheduler) {
      scheduler->stop();
      scheduler_thread.join();
    }
    if (scheduler_process) scheduler_process->stop(shutdown_timeout);
    workers.clear();
    worker_processes.clear();
    scheduler.reset();
    scheduler_process.reset();
    if (!temp_dir.empty()) {
      std::error_code ec;
      fs::remove_all(temp_dir, ec);
    }
  }
};

LocalCluster::LocalCluster(const config::Config& c, const LocalClusterOptions& o)
    : impl_(std::make_unique<Impl>()) {
  std::uint32_t n = o.n_workers.value_or(static_cast<std::uint32_t>(c.get_int("local-cluster.n-workers")));
  std::uint32_t threads = o.threads_per_worker.value_or(
      static_cast<std::uint32_t>(c.get_int("local-cluster.threads-per-worker")));
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::string transport = o.transport.value_or(c.get_string("local-cluster.transport"));
  bool processes = o.processes.value_or(c.get_bool("local-cluster.processes"));
  if (o.memory_limit) {
    try {
      worker::parse_memory_limit(*o.memory_limit, threads);  // an error here, not in a worker
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("LocalClusterOptions::memory_limit: ") + e.what());
    }
  }
  impl_->shutdown_timeout =
      std::chrono::milliseconds(c.get_int("local-cluster.shutdown-timeout-ms"));
  std::string unique = std::to_string(::getpid()) + "-" + uuid4().substr(0, 8);
  impl_->temp_dir = fs::temp_directory_path() / ("plexus-" + unique);
  fs::create_directories(impl_->temp_dir);
  std::string bind_address;
  if (transport == "tcp") {
    bind_address = "tcp://127.0.0.1:0";
  } else if (transport == "ipc") {
    bind_address = "ipc://" + (impl_->temp_dir / "scheduler.ipc").string();
  } else if (transport == "inproc") {
    bind_address = "inproc://plexus-scheduler-" + unique;
    processes = false;  // inproc only reaches threads of this process
  } else {
    throw config::ConfigError("local-cluster.transport: unknown transport '" + transport +
                              "' (expected tcp, ipc or inproc)");
  }
  try {
    if (processes) {
      impl_->start_processes(c, bind_address, n, threads, o);
    } else {
      impl_->start_threads(c, bind_address, n, threads, o);
    }
  } catch (...) {
    impl_->stop();
    throw;
  }
}

LocalCluster::~LocalCluster() { impl_->stop(); }
const std::string& LocalCluster::scheduler_address() const { return impl_->address; }
void LocalCluster::stop() { impl_->stop(); }

}  // namespace plexus
