// Shared wiring for the daemons: config from flags, logging, and SIGINT/SIGTERM handling.
#pragma once

#include <plexus/common/logging.hpp>
#include <plexus/config/config.hpp>

#include <CLI/CLI.hpp>

#include <signal.h>

#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace plexus::daemon {

/// Flags every program accepts.
struct CommonFlags {
  std::string config_file;
  std::string log_level;
  void add_to(CLI::App& app) {
    app.add_option("--config", config_file, "TOML configuration file (see config/plexus.toml)")
        ->check(CLI::ExistingFile);
    app.add_option("--log-level", log_level,
                   "trace, debug, info, warning, error, critical or off (default: logging.level)");
    app.set_version_flag("--version", std::string("Plexus ") + PLEXUS_VERSION);
  }
  config::Config load() const {
    return config::Config::load(config_file.empty() ? std::nullopt
                                                    : std::optional<std::string>(config_file));
  }
  std::string level(const config::Config& c) const {
    return log_level.empty() ? c.get_string("logging.level") : log_level;
  }
};

/// Blocks SIGINT and SIGTERM in every thread started afterwards and runs `on_signal` on a
/// dedicated thread when one arrives (a second signal exits at once). Call before any thread.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void(int)> on_signal) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    thread_ = std::thread([set, f = std::move(on_signal)] {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) return;
      f(sig);
      if (sigwait(&set, &sig) == 0) std::_Exit(128 + sig);
    });
    thread_.detach();
  }

 private:
  std::thread thread_;
};

}  // namespace plexus::daemon
