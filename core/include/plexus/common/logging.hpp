// Logging: one named spdlog logger per module; only daemons (and the LocalCluster) configure sinks.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace plexus {

/// The logger for a module ("scheduler", "worker", "client", "comm", ...), created on first use
/// with the default sink and the process-wide level.
std::shared_ptr<spdlog::logger> logger(const std::string& module);

/// Sets the level of every Plexus logger, present and future: trace, debug, info, warning,
/// error, critical or off. Throws std::invalid_argument naming the accepted levels otherwise.
void set_log_level(const std::string& level);

/// Routes every Plexus logger to stderr with a "[time] [process] [module] [level] message" format.
void configure_daemon_logging(const std::string& process_name, const std::string& level);

}  // namespace plexus
