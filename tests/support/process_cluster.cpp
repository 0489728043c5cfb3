#include "support/process_cluster.hpp"

#include <sys/wait.h>

#include <stdexcept>

namespace plexus::testing {

ProcessCluster::ProcessCluster(ProcessClusterOptions options)
    : options_(std::move(options)), scheduler_file_(dir_.file("scheduler.addr")) {
  std::string bind;
  if (options_.transport == "tcp") {
    bind = "tcp://127.0.0.1:0";
  } else if (options_.transport == "ipc") {
    bind = "ipc://" + dir_.file("scheduler.sock");
  } else {
    throw std::invalid_argument("ProcessCluster: transport must be tcp or ipc, got '" +
                                options_.transport + "'");
  }
  scheduler_ = std::make_unique<ChildProcess>(std::vector<std::string>{
      bin("plexus-scheduler"), "--address", bind, "--scheduler-file", scheduler_file_,
      "--log-level", options_.log_level});
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
  argv.insert(argv.end(), {"--nthreads", std::to_string(options_.nthreads), "--log-level",
                           options_.log_level, "--name",
                           "w" + std::to_string(workers_.size())});
  for (const auto& p : options_.plugin_path) argv.insert(argv.end(), {"--plugin-path", p});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  workers_.push_back(std::make_unique<ChildProcess>(argv));
  pids_.push_back(workers_.back()->pid());
}

std::vector<int> ProcessCluster::pids() const { return pids_; }

std::vector<int> ProcessCluster::stop(std::chrono::milliseconds grace) {
  std::vector<int> statuses;
  for (auto& w : workers_) statuses.push_back(w->stop(grace));
  if (scheduler_) statuses.push_back(scheduler_->stop(grace));
  return statuses;
}

}  // namespace plexus::testing
