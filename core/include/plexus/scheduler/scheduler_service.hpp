// The scheduler daemon's event loop: one ROUTER socket for clients and workers around a
// SchedulerState. Each turn it drains every waiting message, verifies it, feeds the state, and
// sends what the state decided as one batch per peer.
//
//   plexus::sched::SchedulerService service(plexus::sched::service_options(config));
//   std::thread loop([&] { service.run(); });
//   ...
//   service.stop();  // from any thread: tells workers and clients, then run() returns
//   loop.join();
//
// Thread safety: construct, then call run() on exactly one thread; stop(), address() and
// stats() may be called from any thread.
#pragma once

#include <plexus/protocol/comm_options.hpp>
#include <plexus/scheduler/scheduler_state.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace plexus::config {
class Config;
}

namespace plexus::sched {

struct ServiceOptions {
  std::string address = "tcp://127.0.0.1:0";
  std::string scheduler_file;  // when set, the bound address is written there
  SchedulerOptions state;
  std::uint32_t heartbeat_interval_ms = 500;
  std::uint32_t steal_interval_ms = 100;  // how often work stealing runs (state.work_stealing)
  comm::CommOptions comm;
};

/// Reads [scheduler] and [comm] from a config.
ServiceOptions service_options(const config::Config& config);

struct ServiceStats {
  std::uint64_t messages_received = 0;
  std::uint64_t malformed_dropped = 0;
  std::uint64_t batches_sent = 0;
};

class SchedulerService {
 public:
  /// Binds the socket (throws std::runtime_error naming the address when it cannot) and writes
  /// the scheduler file.
  explicit SchedulerService(ServiceOptions options);
  ~SchedulerService();
  SchedulerService(const SchedulerService&) = delete;
  SchedulerService& operator=(const SchedulerService&) = delete;

  /// The address peers connect to (tcp port 0 resolved to the real port).
  const std::string& address() const;

  /// Runs the event loop until stop(). On the way out, workers get Shutdown and clients are told
  /// the scheduler is closing; the scheduler file is removed.
  void run();

  /// Asks run() to return. Thread-safe, idempotent.
  void stop();

  ServiceStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::sched
