// Benchmark plumbing: the cluster a scenario runs on, process memory readings, timing helpers.
//
// By default BenchCluster starts plexus-scheduler and two plexus-worker processes itself (with
// plexus::ChildProcess), so that it knows their pids and can read their memory from /proc; with
// `local_cluster` it uses Client(LocalClusterOptions) instead and finds the daemons among its
// child processes. Either way the constructor returns once every worker has run a task.
//
// Thread safety: none; one scenario thread owns a BenchCluster.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>

#include <plexus/common/temp_dir.hpp>
#include <memory>
#include <optional>
#include <plexus/client.hpp>
#include <plexus/common/process.hpp>
#include <string>
#include <vector>

namespace plexus::bench {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0);
double round_to(double v, int digits);
/// Percentile with linear interpolation between closest ranks (numpy's default, and what
/// dask_bench.py computes); q in [0, 100]. 0 for an empty input.
double percentile(std::vector<double> v, double q);

/// A field of /proc/<pid>/status in bytes ("VmRSS", "VmHWM"), or nothing if unreadable.
std::optional<std::uint64_t> proc_status_bytes(pid_t pid, const std::string& field);
/// Resets the peak RSS (VmHWM) of `pid` to its current RSS (/proc/<pid>/clear_refs, Linux 4.0+).
/// Returns false if the kernel or permissions do not allow it.
bool reset_peak_rss(pid_t pid);
/// Direct children of this process whose command name (/proc/<pid>/comm) starts with `prefix`.
std::vector<pid_t> child_pids(const std::string& prefix);


struct ClusterOptions {
  std::uint32_t workers = 2;
  std::uint32_t threads = 1;
  bool local_cluster = false;  // Client(LocalClusterOptions) instead of daemons started here
  std::string transport = "tcp";
};

/// SubmitOptions{.pure = false}: a fresh key per call, as dask's pure=False.
SubmitOptions impure();

class BenchCluster {
 public:
  /// Starts the cluster, connects, and waits (30 s at most) until every worker has run a task.
  /// Throws std::runtime_error on failure.
  explicit BenchCluster(const ClusterOptions& options);
  ~BenchCluster();
  BenchCluster(const BenchCluster&) = delete;
  BenchCluster& operator=(const BenchCluster&) = delete;

  Client& client() { return *client_; }
  pid_t scheduler_pid() const { return scheduler_pid_; }
  const std::vector<pid_t>& worker_pids() const { return worker_pids_; }
  /// "daemons" or "local_cluster".
  const char* mode() const { return options_.local_cluster ? "local_cluster" : "daemons"; }
  /// Closes the client and stops the processes. Idempotent.
  void close();

 private:
  void wait_for_workers(std::chrono::seconds timeout);

  ClusterOptions options_;
  TempDir dir_;
  std::unique_ptr<ChildProcess> scheduler_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  std::unique_ptr<Client> client_;
  pid_t scheduler_pid_ = -1;
  std::vector<pid_t> worker_pids_;
};

/// 200 sequential math.inc and a map of 1,000 math.noop, as dask_bench.py's warm_up().
void warm_up(Client& client);

}  // namespace plexus::bench
