// The worker daemon: a DEALER to the scheduler, a ROUTER serving its data to peers and clients,
// DEALERs to the peers it fetches dependencies from (all owned by the I/O thread running run()),
// and a pool of executor threads that call plugin tasks.
//
//   plexus::worker::WorkerService worker(plexus::worker::worker_options(config, scheduler));
//   std::thread loop([&] { worker.run(); });   // handshake, then serve until shut down
//   worker.stop();                              // graceful: hand back queued work, finish running
//   loop.join();
//
// Results stay on the worker that computed them; results up to the inline threshold also ride
// along with the task-done message so that clients usually need no second round trip.
//
// Memory (WorkerOptions::memory, see memory_policy.hpp): results are spilled to disk, least
// recently used first, when managed memory passes the target or the process's memory passes the
// spill threshold, and read back when a task, a peer or a client needs them; past the pause
// threshold the worker starts no new tasks and fetches nothing, and tells the scheduler, until
// its memory is below it again.
//
// Thread safety: run() on one thread; stop(), data_address() and name() from any thread.
#pragma once

#include <plexus/protocol/comm_options.hpp>
#include <plexus/worker/memory_policy.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus::config {
class Config;
}

namespace plexus::worker {

struct WorkerOptions {
  std::string scheduler_address;
  std::string name;           // "" = <host>-<pid>
  std::uint32_t nthreads = 1;
  std::string data_address;   // "" = same transport as the scheduler, free port or path
  std::vector<std::string> plugin_path;  // searched first, then the default path
  std::uint32_t connect_timeout_ms = 10000;
  std::uint32_t shutdown_timeout_ms = 10000;
  std::uint32_t death_timeout_ms = 60000;  // exit after this long without a word from the scheduler
  /// Abstract resources offered to tasks that ask for them, e.g. {{"GPU", 2}}.
  std::vector<std::pair<std::string, double>> resources;
  comm::CommOptions comm;
  MemoryPolicy memory;  // no limit unless set (worker_options reads worker.memory-*)
  /// Spilled results go to a fresh subdirectory of this one, removed when the service goes.
  /// "" = $TMPDIR, else /tmp.
  std::string local_directory;
};

/// Parses worker resources as written on the command line and in worker.resources: "GPU=2
/// MEM=64e9" (spaces or commas between entries). Throws std::invalid_argument naming the bad
/// entry: no '=', an empty name, an amount that is not a finite number >= 0, or a repeated name.
std::vector<std::pair<std::string, double>> parse_resources(std::string_view text);

/// Reads [worker] and [comm] from a config; `scheduler_address` as given. Throws
/// config::ConfigError for a bad worker.memory-* setting, std::invalid_argument for bad
/// worker.resources.
WorkerOptions worker_options(const config::Config& config, std::string scheduler_address);

/// Why run() returned.
enum class WorkerExit {
  stopped,             // stop() was called (a signal)
  scheduler_shutdown,  // the scheduler said it is shutting down
  removed,             // the scheduler removed this worker (missed heartbeats)
  scheduler_lost,      // no word from the scheduler within death_timeout
  restart,             // the cluster restarts: a nanny starts this worker again at once
};

class WorkerService {
 public:
  /// Binds the data socket and prepares the executor; throws std::runtime_error naming the
  /// address when binding fails.
  explicit WorkerService(WorkerOptions options);
  ~WorkerService();
  WorkerService(const WorkerService&) = delete;
  WorkerService& operator=(const WorkerService&) = delete;

  /// Handshakes with the scheduler and serves until stop() or a Shutdown from the scheduler.
  /// Throws std::runtime_error when the scheduler cannot be reached within connect_timeout or
  /// refuses this worker (the message says why, e.g. both ABI versions).
  WorkerExit run();

  /// Graceful stop: hand back tasks not started, wait up to shutdown_timeout for running ones,
  /// report them, say goodbye. Thread-safe, idempotent.
  void stop();

  const std::string& data_address() const;
  const std::string& name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::worker
