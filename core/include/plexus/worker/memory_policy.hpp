// A worker's memory limit and what happens as memory grows towards it (dask's worker memory
// management, distributed.worker.memory.*):
//
//   target     managed memory (bytes of results held in memory) above target * limit: the
//              least recently used results are spilled to disk until it is below again
//   spill      process memory (RSS) above spill * limit: results are spilled, least recently used
//              first, until the RSS is estimated to be below target * limit
//   pause      RSS above pause * limit: the worker starts no new tasks and fetches no data, and
//              tells the scheduler, which stops assigning it tasks; it resumes below
//   terminate  RSS above terminate * limit: the nanny kills the worker and starts it again
//
// Each threshold is a fraction of the limit, or disabled (false in the configuration). With no
// limit (0) nothing of this applies.
//
//   auto policy = plexus::worker::memory_policy(config, nthreads);  // throws ConfigError
//   std::uint64_t limit = plexus::worker::parse_memory_limit("2GiB", nthreads);
//
// Thread safety: free functions; any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace plexus::config {
class Config;
}

namespace plexus::worker {

struct MemoryPolicy {
  std::uint64_t limit = 0;  // bytes; 0 = no limit (and no threshold applies)
  std::optional<double> target = 0.60;
  std::optional<double> spill = 0.70;
  std::optional<double> pause = 0.80;
  std::optional<double> terminate = 0.95;
  std::uint32_t monitor_interval_ms = 100;  // how often the process memory is measured
  /// false for workers that share their process (in-process LocalCluster workers): the RSS is
  /// the whole process's, so only managed memory (target) counts for them.
  bool measure_process = true;

  /// `fraction` of the limit in bytes, or nothing if there is no limit or it is disabled.
  std::optional<std::uint64_t> bytes(const std::optional<double>& fraction) const;
};

/// The memory this machine gives a process: physical RAM, or the cgroup's memory.max if lower.
std::uint64_t system_memory_bytes();

/// Reads a memory limit as dask does:
///   "4000000000"          bytes
///   "2GB", "512MiB", "1.5 GiB", "800kB"   with a unit (k/M/G/T = 1000^n, Ki/Mi/Gi/Ti = 1024^n,
///                         B optional, case-insensitive)
///   "0.5"                 a number up to 1: that fraction of system_memory_bytes()
///   "auto"                system_memory_bytes() * min(1, nthreads / cores): this worker's share
///   "0", "none", ""       no limit (returns 0)
/// A limit above the system's memory is lowered to it. Throws std::invalid_argument naming the
/// text and what is accepted for anything else (negative, unknown unit, garbage).
std::uint64_t parse_memory_limit(std::string_view text, std::uint32_t nthreads);

/// worker.memory-* from a config, for a worker with `nthreads` threads (0 = one per core).
/// Throws config::ConfigError naming the key for a bad limit or a fraction outside (0, 1].
MemoryPolicy memory_policy(const config::Config& config, std::uint32_t nthreads);

/// The resident set size of process `pid` (0 = this process) from /proc/<pid>/statm, or nothing
/// if it cannot be read (the process is gone).
std::optional<std::uint64_t> process_rss_bytes(pid_t pid = 0);

/// "2.1 GB", "512 MB", "900 kB", "12 B" (decimal units, one decimal below 10).
std::string format_bytes(std::uint64_t bytes);

}  // namespace plexus::worker
