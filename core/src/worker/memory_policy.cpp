#include <plexus/worker/memory_policy.hpp>

#include <plexus/config/config.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace plexus::worker {

namespace {

// The first line of `path` as a number of bytes, or nothing ("max", missing file, garbage).
std::optional<std::uint64_t> read_limit_file(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
  if (ec != std::errc() || end == line.data()) return std::nullopt;
  return v;
}

std::string lower_trimmed(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Bytes per unit, lower-cased; nothing for an unknown unit.
std::optional<double> unit_bytes(std::string_view unit) {
  struct Unit {
    std::string_view name;
    double bytes;
  };
  static constexpr Unit kUnits[] = {
      {"b", 1},       {"k", 1e3},           {"kb", 1e3},          {"m", 1e6},
      {"mb", 1e6},    {"g", 1e9},           {"gb", 1e9},          {"t", 1e12},
      {"tb", 1e12},   {"ki", 1024.0},       {"kib", 1024.0},      {"mi", 1048576.0},
      {"mib", 1048576.0}, {"gi", 1073741824.0}, {"gib", 1073741824.0}, {"ti", 1099511627776.0},
      {"tib", 1099511627776.0},
  };
  for (const Unit& u : kUnits) {
    if (u.name == unit) return u.bytes;
  }
  return std::nullopt;
}

[[noreturn]] void bad_limit(std::string_view text, std::string_view why) {
  throw std::invalid_argument(
      "memory limit '" + std::string(text) + "': " + std::string(why) +
      " (expected bytes like 4000000000, a size like 2GB or 512MiB, a fraction of the machine's "
      "memory like 0.5, auto, or 0/none for no limit)");
}

std::optional<double> fraction(const config::Config& c, std::string_view key) {
  const std::optional<double> f = c.get_double_or_false(key);
  if (f && !(*f > 0 && *f <= 1)) {
    throw config::ConfigError(std::string(key) + " = " + std::to_string(*f) +
                              ": expected a fraction of the memory limit above 0 and at most 1, "
                              "or false to disable it");
  }
  return f;
}

}  // namespace

std::optional<std::uint64_t> MemoryPolicy::bytes(const std::optional<double>& f) const {
  if (limit == 0 || !f) return std::nullopt;
  return static_cast<std::uint64_t>(static_cast<double>(limit) * *f);
}

std::uint64_t system_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  std::uint64_t total = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) *
                                                    static_cast<std::uint64_t>(page)
                                              : 0;
  // A container's limit (cgroup v2, else v1) is what the kernel enforces on this process.
  for (const char* path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (auto cg = read_limit_file(path); cg && *cg > 0 && (total == 0 || *cg < total)) {
      total = *cg;
      break;
    }
  }
  return total;
}

std::uint64_t parse_memory_limit(std::string_view text, std::uint32_t nthreads) {
  const std::string s = lower_trimmed(text);
  if (s.empty() || s == "none" || s == "0") return 0;
  const std::uint64_t system = system_memory_bytes();
  if (s == "auto") {
    const std::uint32_t cores = std::max(1u, std::thread::hardware_concurrency());
    const std::uint32_t threads = nthreads == 0 ? cores : nthreads;
    const double share = std::min(1.0, static_cast<double>(threads) / cores);
    return static_cast<std::uint64_t>(static_cast<double>(system) * share);
  }
  double number = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
  if (ec != std::errc() || end == s.data()) bad_limit(text, "not a number");
  if (!std::isfinite(number)) bad_limit(text, "not a finite number");
  if (number < 0) bad_limit(text, "negative");
  std::string_view unit(end, static_cast<std::size_t>(s.data() + s.size() - end));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  double bytes = 0;
  if (unit.empty()) {
    bytes = number <= 1 ? number * static_cast<double>(system) : number;
  } else {
    const auto per = unit_bytes(unit);
    if (!per) bad_limit(text, "unknown unit '" + std::string(unit) + "'");
    bytes = number * *per;
  }
  if (bytes >= 9.2e18) bad_limit(text, "too large");
  const auto limit = static_cast<std::uint64_t>(bytes);
  if (limit == 0 && number > 0) bad_limit(text, "less than one byte");
  return system > 0 ? std::min(limit, system) : limit;
}

MemoryPolicy memory_policy(const config::Config& c, std::uint32_t nthreads) {
  MemoryPolicy p;
  try {
    p.limit = parse_memory_limit(c.get_string("worker.memory-limit"), nthreads);
  } catch (const std::invalid_argument& e) {
    throw config::ConfigError(std::string("worker.memory-limit: ") + e.what());
  }
  p.target = fraction(c, "worker.memory-target");
  p.spill = fraction(c, "worker.memory-spill");
  p.pause = fraction(c, "worker.memory-pause");
  p.terminate = fraction(c, "worker.memory-terminate");
  const std::int64_t interval = c.get_int("worker.memory-monitor-interval-ms");
  if (interval < 1 || interval > 60000) {
    throw config::ConfigError("worker.memory-monitor-interval-ms = " + std::to_string(interval) +
                              ": expected 1 to 60000");
  }
  p.monitor_interval_ms = static_cast<std::uint32_t>(interval);
  return p;
}

std::optional<std::uint64_t> process_rss_bytes(pid_t pid) {
  const std::string path =
      pid == 0 ? std::string("/proc/self/statm") : "/proc/" + std::to_string(pid) + "/statm";
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return std::nullopt;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return std::nullopt;
  const long page = ::sysconf(_SC_PAGE_SIZE);
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(page > 0 ? page : 4096);
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(bytes);
  std::size_t u = 0;
  while (v >= 1000 && u + 1 < std::size(kUnits)) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (v < 10) {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[u]);
  }
  return buf;
}

}  // namespace plexus::worker
