// The Plexus logger registry. Every Plexus logger writes to one shared distribution sink, so that
// configure_daemon_logging can swap the real sinks under a lock while other threads log, instead
// of editing each logger's sink list (which spdlog does not protect). Beside stderr, the
// distribution sink feeds a ring of the last kLogRingLines messages, which clients read remotely.
// The ring records info and above even when stderr shows less, so loggers run at the more verbose
// of the two levels and the stderr sink filters.
#include <plexus/common/logging.hpp>

#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
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
  Registry()
      : dist(std::make_shared<spdlog::sinks::dist_sink_mt>()),
        ring(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(kLogRingLines)) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern(kDefaultPattern);
    sink->set_level(level);
    ring->set_level(spdlog::level::info);
    console = sink;
    dist->set_sinks({std::move(sink), ring});
  }

  std::mutex mutex;
  // Guarded by `mutex`.
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;  // by module
  spdlog::level::level_enum level = spdlog::level::info;                        // for new ones
  std::shared_ptr<spdlog::sinks::dist_sink_mt> dist;  // the one sink of every Plexus logger
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring;  // recent lines, always in `dist`
  std::shared_ptr<spdlog::sinks::sink> console;  // the stderr sink in `dist`; guarded by `mutex`

  // Loggers run at the more verbose of the stderr level and the ring's (info).
  spdlog::level::level_enum logger_level() const { return std::min(level, spdlog::level::info); }
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
  if (r.console) r.console->set_level(level);
  r.ring->set_level(std::min(level, spdlog::level::info));
  for (auto& [module, log] : r.loggers) log->set_level(r.logger_level());
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& module) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.loggers.find(module);
  if (it != r.loggers.end()) return it->second;
  auto created = std::make_shared<spdlog::logger>(module, r.dist);
  created->set_level(r.logger_level());
  r.loggers.emplace(module, created);
  return created;
}

void set_log_level(const std::string& level) { apply_level(parse_level(level)); }

void configure_daemon_logging(const std::string& process_name, const std::string& level) {
  spdlog::level::level_enum parsed = parse_level(level);  // validate before changing anything
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [" + escape_pattern(process_name) + "] [%n] [%l] %v");
  Registry& r = registry();
  {
    std::lock_guard lock(r.mutex);
    r.console = sink;
  }
  r.dist->set_sinks({std::move(sink), r.ring});
  apply_level(parsed);
}

std::vector<std::string> recent_log_lines(std::size_t n, const std::vector<std::string>& modules) {
  std::vector<std::string> out;
  if (n == 0) return out;
  auto raw = registry().ring->last_raw();
  for (const auto& m : raw) {
    const std::string_view module(m.logger_name.data(), m.logger_name.size());
    if (!modules.empty() && std::find(modules.begin(), modules.end(), module) == modules.end()) {
      continue;
    }
    const auto t = std::chrono::system_clock::to_time_t(m.time);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        m.time.time_since_epoch()).count() % 1000;
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    const auto level = spdlog::level::to_string_view(m.level);
    out.push_back(fmt::format("[{}.{:03}] [{}] [{}] {}", stamp, ms, module,
                              std::string_view(level.data(), level.size()),
                              std::string_view(m.payload.data(), m.payload.size())));
  }
  if (out.size() > n) out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(n));
  return out;
}

}  // namespace plexus
