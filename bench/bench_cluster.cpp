#include "bench_cluster.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace plexus::bench {

namespace fs = std::filesystem;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double round_to(double v, int digits) {
  double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double k = static_cast<double>(v.size() - 1) * q / 100.0;
  auto f = static_cast<std::size_t>(k);
  std::size_t c = std::min(f + 1, v.size() - 1);
  return v[f] + (v[c] - v[f]) * (k - static_cast<double>(f));
}

std::optional<std::uint64_t> proc_status_bytes(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::istringstream ss(line.substr(field.size() + 1));
      std::uint64_t kb = 0;
      if (ss >> kb) return kb * 1024;
    }
  }
  return std::nullopt;
}

bool reset_peak_rss(pid_t pid) {
  std::ofstream out("/proc/" + std::to_string(pid) + "/clear_refs");
  out << "5\n";
  out.flush();
  return static_cast<bool>(out);
}

std::vector<pid_t> child_pids(const std::string& prefix) {
  std::vector<pid_t> out;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string content;
    std::getline(stat, content);
    // pid (comm) state ppid ...: comm may contain spaces, so parse after the last ')'.
    auto close = content.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(content.substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != self) continue;
    std::ifstream comm_in(entry.path() / "comm");
    std::string comm;
    std::getline(comm_in, comm);
    if (comm.rfind(prefix, 0) == 0) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

SubmitOptions impure() {
  SubmitOptions o;
  o.pure = false;
  return o;
}

namespace {

// Where plexus-scheduler and plexus-worker are: $PLEXUS_BIN_DIR, else the build tree.
std::string daemon_path(const std::string& program) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("PLEXUS_BIN_DIR"); env && *env) dirs.emplace_back(env);
  dirs.emplace_back(PLEXUS_BENCH_BIN_DIR);
  if (auto d = executable_dir(); !d.empty()) dirs.push_back((fs::path(d) / "../daemons").string());
  for (const auto& d : dirs) {
    fs::path p = fs::path(d) / program;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  throw std::runtime_error("cannot find " + program + " (set PLEXUS_BIN_DIR)");
}

}  // namespace

BenchCluster::BenchCluster(const ClusterOptions& options) : options_(options) {
  if (options_.local_cluster) {
    LocalClusterOptions o;
    o.n_workers = options_.workers;
    o.threads_per_worker = options_.threads;
    o.transport = options_.transport;
    o.processes = options_.transport != "inproc";
    o.nanny = false;  // worker_pids() must be the workers themselves (see below)
    client_ = std::make_unique<Client>(o);
    auto scheds = child_pids("plexus-schedul");  // comm is cut at 15 characters
    if (scheds.size() == 1) scheduler_pid_ = scheds.front();
    worker_pids_ = child_pids("plexus-worker");
  } else {
    if (options_.transport == "inproc") {
      throw std::runtime_error("inproc needs --local-cluster (daemons are separate processes)");
    }
    const fs::path file = dir_.path() / "scheduler.txt";
    const std::string bind = options_.transport == "tcp"
                                 ? "tcp://127.0.0.1:0"
                                 : "ipc://" + (dir_.path() / "scheduler.ipc").string();
    const std::vector<std::string> quiet = {"--log-level", "warning"};
    std::vector<std::string> sargv = {daemon_path("plexus-scheduler"), "--address", bind,
                                      "--scheduler-file", file.string()};
    sargv.insert(sargv.end(), quiet.begin(), quiet.end());
    scheduler_ = std::make_unique<ChildProcess>(sargv);
    scheduler_pid_ = scheduler_->pid();
    std::string address;
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (true) {
      std::ifstream in(file);
      if (in && std::getline(in, address) && !address.empty()) break;
      if (!scheduler_->running()) {
        throw std::runtime_error("plexus-scheduler " +
                                 describe_wait_status(scheduler_->exit_status().value_or(0)));
      }
      if (Clock::now() > deadline) throw std::runtime_error("plexus-scheduler did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (std::uint32_t i = 0; i < options_.workers; ++i) {
      std::vector<std::string> wargv = {daemon_path("plexus-worker"),
                                        "--scheduler-file",
                                        file.string(),
                                        "--nthreads",
                                        std::to_string(options_.threads),
                                        "--name",
                                        "bench-" + std::to_string(i),
                                        // The workers themselves, so that worker_pids() (memory
                                        // and transfer scenarios) are theirs; a nanny
                                        // supervises but is not on the data path.
                                        "--no-nanny"};
      wargv.insert(wargv.end(), quiet.begin(), quiet.end());
      workers_.push_back(std::make_unique<ChildProcess>(wargv));
      worker_pids_.push_back(workers_.back()->pid());
    }
    client_ = std::make_unique<Client>(address);
  }
  wait_for_workers(std::chrono::seconds(30));
}

BenchCluster::~BenchCluster() {
  try {
    close();
  } catch (...) {  // a destructor must not throw; close() already tried its best
  }
}

void BenchCluster::close() {
  if (client_) client_->close();
  for (auto& w : workers_) w->stop(std::chrono::seconds(5));
  if (scheduler_) scheduler_->stop(std::chrono::seconds(5));
  workers_.clear();
  scheduler_.reset();
}

void BenchCluster::wait_for_workers(std::chrono::seconds timeout) {
  // Rounds of one sleeping task per worker thread, submitted together: a busy thread sends the
  // next one elsewhere, so once every worker has joined each round reaches all of them.
  const std::size_t want = options_.workers;
  const auto deadline = Clock::now() + timeout;
  std::set<std::int64_t> seen;
  while (seen.size() < want) {
    if (Clock::now() > deadline) {
      throw std::runtime_error("only " + std::to_string(seen.size()) + " of " +
                               std::to_string(want) + " workers ran a task within " +
                               std::to_string(timeout.count()) + " s");
    }
    std::vector<std::int64_t> ms(want * options_.threads, 20);
    for (auto pid :
         client_->gather(client_->map<std::int64_t>(impure(), "testing.worker_pid", ms))) {
      seen.insert(pid);
    }
  }
}

void warm_up(Client& client) {
  for (std::int64_t i = 0; i < 200; ++i) {
    if (client.submit<std::int64_t>(impure(), "math.inc", i).result() != i + 1) {
      throw std::runtime_error("warm-up: wrong result from math.inc");
    }
  }
  std::vector<std::int64_t> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);
  if (client.gather(client.map<std::int64_t>(impure(), "math.noop", xs)) != xs) {
    throw std::runtime_error("warm-up: wrong results from math.noop");
  }
}

}  // namespace plexus::bench
