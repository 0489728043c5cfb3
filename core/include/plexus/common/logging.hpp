// Logging: one named spdlog logger per module; only daemons (and the LocalCluster) configure sinks.
#pragma once

#include <spdlog/spdlog.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace plexus {

/// The logger for a module ("scheduler", "worker", "client", "comm", ...), created on first use
/// with the default sink and the process-wide level.
std::shared_ptr<spdlog::logger> logger(const std::string& module);

/// Sets the level of every Plexus logger, present and future: trace, debug, info, warning,
/// error, critical or off. Throws std::invalid_argument naming the accepted levels otherwise.
void set_log_level(const std::string& level);

/// Routes every Plexus logger to stderr with a "[time] [process] [module] [level] message" format.
void configure_daemon_logging(const std::string& process_name, const std::string& level);

/// How many recent log lines each process keeps in memory (get_worker_logs, get_scheduler_logs).
// (2,000: the ring preallocates ~370 bytes per line, so 10,000 would cost every process ~3.7 MB.)
inline constexpr std::size_t kLogRingLines = 2000;

/// This process's most recent log lines, oldest first: at most `n`, from the named modules only
/// ("scheduler", "worker", ...; every module when empty). Kept at info level or more verbose,
/// whatever stderr shows, as "[time] [module] [level] message".
std::vector<std::string> recent_log_lines(std::size_t n, const std::vector<std::string>& modules = {});

}  // namespace plexus
