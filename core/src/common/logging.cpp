// The Plexus logger registry. Every Plexus logger writes to one shared distribution sink, so that
// configure_daemon_logging can swap the real sinks under a lock while other threads log, instead
// of editing each logger's sink list (which spdlog does not protect).
#include <plexus/common/logging.hpp>

#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace plexus {
namespace {

constexpr const char* kDefaultPattern = "[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v";

struct Registry {
  Registry() : dist(std::make_shared<spdlog::sinks::dist_sink_mt>()) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern(kDefaultPattern);
    dist->set_sinks({std::move(sink)});
  }

  std::mutex mutex;
  // Guarded by `mutex`.
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;  // by module
  spdlog::level::level_enum level = spdlog::level::info;                        // for new ones
  std::shared_ptr<spdlog::sinks::dist_sink_mt> dist;  // the one sink of every Plexus logger
};

// Never destroyed: threads and static destructors may still log while the process exits.
Registry& registry() {
  static Registry* r = new Registry;
  return *r;
}

spdlog::level::level_enum parse_level(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "trace") return spdlog::level::trace;
  if (n == "debug") return spdlog::level::debug;
  if (n == "info") return spdlog::level::info;
  if (n == "warning" || n == "warn") return spdlog::level::warn;
  if (n == "error") return spdlog::level::err;
  if (n == "critical") return spdlog::level::critical;
  if (n == "off") return spdlog::level::off;
  throw std::invalid_argument("unknown log level '" + name +
                              "': expected one of trace, debug, info, warning (or warn), error, "
                              "critical, off");
}

// '%' starts a pattern flag; a process name is meant literally.
std::string escape_pattern(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '%') out += '%';
  }
  return out;
}

void apply_level(spdlog::level::level_enum level) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);  // so that a logger created meanwhile cannot miss the new level
  r.level = level;
  for (auto& [module, log] : r.loggers) log->set_level(level);
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& module) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.loggers.find(module);
  if (it != r.loggers.end()) return it->second;
  auto created = std::make_shared<spdlog::logger>(module, r.dist);
  created->set_level(r.level);
  r.loggers.emplace(module, created);
  return created;
}

void set_log_level(const std::string& level) { apply_level(parse_level(level)); }

void configure_daemon_logging(const std::string& process_name, const std::string& level) {
  spdlog::level::level_enum parsed = parse_level(level);  // validate before changing anything
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [" + escape_pattern(process_name) + "] [%n] [%l] %v");
  registry().dist->set_sinks({std::move(sink)});
  apply_level(parsed);
}

}  // namespace plexus
