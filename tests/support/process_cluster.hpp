// A cluster of real daemons for integration tests: one `plexus-scheduler` and N `plexus-worker`
// child processes, on tcp (a free port on 127.0.0.1) or ipc (a socket in a fresh temp dir).
//
//   plexus::testing::ProcessCluster cluster({.transport = "tcp", .n_workers = 2});
//   plexus::Client client(cluster.address());
//   ...
//   cluster.stop();   // SIGTERM every daemon, workers first; returns their wait statuses
//
// Workers run under a nanny by default (as plexus-worker does): workers() are then the nannies,
// and worker_pid(i) finds the real worker process, their child.
//
// Every wait has a deadline. The destructor stops whatever is still running.
// Thread safety: owned and used by one test thread.
#pragma once

#include "support/subprocess.hpp"

#include <plexus/common/process.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace plexus::testing {

struct ProcessClusterOptions {
  std::string transport = "tcp";  // "tcp" or "ipc"
  int n_workers = 1;
  int nthreads = 2;
  /// Extra --plugin-path directories for every worker (searched before the defaults).
  std::vector<std::string> plugin_path;
  /// Workers find the scheduler through --scheduler-file instead of the address.
  bool workers_use_scheduler_file = false;
  std::string log_level = "warning";
  std::chrono::milliseconds startup_timeout{std::chrono::seconds(10)};
  /// Workers run under a nanny (plexus-worker's default); false passes --no-nanny.
  bool nanny = true;
  /// TOML given to every daemon with --config (e.g. a short scheduler.worker-ttl-ms); "" = none.
  std::string config_toml;
};

class ProcessCluster {
 public:
  /// Starts the scheduler, waits for its --scheduler-file, then starts the workers. Throws
  /// std::runtime_error if the scheduler does not come up in time.
  explicit ProcessCluster(ProcessClusterOptions options);
  ~ProcessCluster();
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;

  const std::string& address() const { return address_; }
  const std::string& scheduler_file() const { return scheduler_file_; }
  std::string dir() const { return dir_.str(); }

  /// Starts one more worker with these extra arguments.
  void add_worker(const std::vector<std::string>& extra_args = {});

  ChildProcess& scheduler() { return *scheduler_; }
  std::vector<std::unique_ptr<ChildProcess>>& workers() { return workers_; }
  /// Process ids of every daemon started, running or not.
  std::vector<int> pids() const;

  /// The process running worker `i`'s tasks: the nanny's child (waiting up to `timeout` for it
  /// to be started, e.g. after a restart, and for a pid other than `not_pid`), or the worker
  /// itself without a nanny. Nothing if there is none by then.
  std::optional<int> worker_pid(std::size_t i,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                int not_pid = 0) const;

  /// SIGTERM to every worker, then to the scheduler, each with `grace` before SIGKILL. Returns
  /// the wait statuses, workers first. Idempotent: a second call returns the same statuses.
  std::vector<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  /// stop(), then the pids of the daemons that still exist: empty when every one went away (the
  /// fixtures' teardown check).
  std::vector<int> stop_and_list_left(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  ProcessClusterOptions options_;
  TempDir dir_;
  std::string scheduler_file_;
  std::string config_file_;  // "" = no --config
  std::string address_;
  std::unique_ptr<ChildProcess> scheduler_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::vector<int> pids_;
};

}  // namespace plexus::testing
