// The LocalCluster behind `plexus::Client client;`: a scheduler and workers on this machine, as
// child processes (tcp or ipc) or as threads of this process (inproc, or processes = false).
//
// Thread safety: construct and destroy on one thread; scheduler_address() from any thread.
#pragma once

#include <plexus/client.hpp>

#include <memory>
#include <string>

namespace plexus::config {
class Config;
}

namespace plexus {

class LocalCluster {
 public:
  /// Starts the cluster and waits until the scheduler is listening. Throws ConnectionError with
  /// the reason (daemon binary not found, scheduler failed to start within the timeout, ...).
  LocalCluster(const config::Config& config, const LocalClusterOptions& options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::string& scheduler_address() const;
  /// Stops workers, then the scheduler; waits for every process or thread. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Finds a daemon program ("plexus-scheduler", "plexus-worker"): `bin_dir` if set, then
/// $PLEXUS_BIN_DIR, the running program's directory, the directory of libplexus.so and its
/// ../bin, the build tree, the install prefix, and PATH. Throws ConnectionError listing them.
std::string find_daemon(const std::string& program, const std::string& bin_dir);

}  // namespace plexus
