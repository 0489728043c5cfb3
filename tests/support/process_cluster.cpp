#include "support/process_cluster.hpp"

#include <sys/wait.h>

#include <fstream>
#include <stdexcept>
#include <thread>

namespace plexus::testing {

ProcessCluster::ProcessCluster(ProcessClusterOptions options)
    : options_(std::move(options)), scheduler_file_(dir_.file("scheduler.addr")) {
  if (!options_.config_toml.empty()) {
    config_file_ = dir_.file("plexus.toml");
    std::ofstream(config_file_) << options_.config_toml;
  }
  std::string bind;
  if (options_.transport == "tcp") {
    bind = "tcp://127.0.0.1:0";
  } else if (options_.transport == "ipc") {
    bind = "ipc://" + dir_.file("scheduler.sock");
  } else {
    throw std::invalid_argument("ProcessCluster: transport must be tcp or ipc, got '" +
                                options_.transport + "'");
  }
  std::vector<std::string> argv{bin("plexus-scheduler"), "--address", bind,
                                "--scheduler-file", scheduler_file_, "--log-level",
                                options_.log_level};
  if (!config_file_.empty()) argv.insert(argv.end(), {"--config", config_file_});
  scheduler_ = std::make_unique<ChildProcess>(argv);
  pids_.push_back(scheduler_->pid());
  auto address = wait_for_file(scheduler_file_, options_.startup_timeout);
  if (!address) {
    scheduler_->stop(std::chrono::seconds(1));
    throw std::runtime_error("the scheduler did not write " + scheduler_file_ + " within " +
                             std::to_string(options_.startup_timeout.count()) + " ms");
  }
  address_ = *address;
  for (int i = 0; i < options_.n_workers; ++i) add_worker();
}

ProcessCluster::~ProcessCluster() { stop(std::chrono::seconds(2)); }

void ProcessCluster::add_worker(const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv{bin("plexus-worker")};
  if (options_.workers_use_scheduler_file) {
    argv.insert(argv.end(), {"--scheduler-file", scheduler_file_});
  } else {
    argv.push_back(address_);
  }
  std::string name = "w";
  name += std::to_string(workers_.size());
  argv.insert(argv.end(), {"--nthreads", std::to_string(options_.nthreads), "--log-level",
                           options_.log_level, "--name", name});
  for (const auto& p : options_.plugin_path) argv.insert(argv.end(), {"--plugin-path", p});
  if (!config_file_.empty()) argv.insert(argv.end(), {"--config", config_file_});
  if (!options_.nanny) argv.emplace_back("--no-nanny");
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  workers_.push_back(std::make_unique<ChildProcess>(argv));
  pids_.push_back(workers_.back()->pid());
}

std::vector<int> ProcessCluster::pids() const { return pids_; }

std::optional<int> ProcessCluster::worker_pid(std::size_t i, std::chrono::milliseconds timeout,
                                              int not_pid) const {
  if (i >= workers_.size()) return std::nullopt;
  const int pid = workers_[i]->pid();
  if (!options_.nanny) return pid != not_pid ? std::optional<int>(pid) : std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    for (int child : child_pids(pid)) {
      if (child != not_pid) return child;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<int> ProcessCluster::stop_and_list_left(std::chrono::milliseconds grace) {
  const std::vector<int> started = pids();
  stop(grace);
  std::vector<int> left;
  for (int pid : started) {
    if (process_exists(pid)) left.push_back(pid);
  }
  return left;
}

std::vector<int> ProcessCluster::stop(std::chrono::milliseconds grace) {
  std::vector<int> statuses;
  for (auto& w : workers_) statuses.push_back(w->stop(grace));
  if (scheduler_) statuses.push_back(scheduler_->stop(grace));
  return statuses;
}

}  // namespace plexus::testing
