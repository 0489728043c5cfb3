// plexus-worker: a worker daemon that runs plugin tasks for a scheduler; by default under a nanny
// (a parent process that restarts it when it dies and tells the scheduler why).
#include "daemon.hpp"

#include <plexus/common/temp_dir.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/worker/crash_report.hpp>
#include <plexus/worker/memory_policy.hpp>
#include <plexus/worker/nanny.hpp>
#include <plexus/worker/worker_service.hpp>

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <filesystem>

#include <fstream>
#include <iostream>
#include <optional>

namespace {

constexpr const char* kFooter = R"(Nanny (the default; --no-nanny or nanny.enabled = false turns it off):
  plexus-worker then runs as a nanny that starts the real worker as its child (the same program
  and options, plus --no-nanny and a fixed --name). When the child dies (a crash, kill -9, the
  OOM killer) the nanny tells the scheduler at once and how it died, so its tasks are rescheduled
  without waiting for scheduler.worker-ttl-ms and KilledWorker errors name the cause; then it
  starts the child again after nanny.restart-backoff-ms (doubling), and gives up after
  nanny.max-crashes deaths within nanny.crash-window-ms. SIGINT/SIGTERM are passed on to the
  child, which finishes its running tasks; after nanny.stop-timeout-ms it is killed. The child
  runs in its own process group; under systemd use KillMode=mixed so that only the nanny gets
  the stop signal.

Memory (--memory-limit, worker.memory-limit; fractions of it in worker.memory-*): past
worker.memory-target of the limit in results held, or worker.memory-spill in process memory,
results are spilled to disk under --local-directory (least recently used first) and read back
when needed; past worker.memory-pause the worker starts no new tasks until its memory is lower;
past worker.memory-terminate the nanny kills it and starts it again (KilledWorker errors then
say "exceeded its memory limit").

Exit status: 0 stopped (signal or scheduler shutdown); 1 error (e.g. the scheduler cannot be
reached within worker.connect-timeout-ms); 3 removed by the scheduler (no heartbeat within
scheduler.worker-ttl-ms; --no-nanny only, a nanny restarts it); 4 the scheduler was lost (silent
for worker.death-timeout-ms); 5 the nanny gave up after nanny.max-crashes deaths; 6 the cluster
restarted (--no-nanny only when run by a nanny: the nanny starts it again at once).)";

std::string host_name() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Plexus worker: runs plugin tasks for a scheduler"};
  app.footer(kFooter);
  plexus::daemon::CommonFlags flags;
  flags.add_to(app);
  std::string scheduler, scheduler_file, name, data_address, resources, crash_file;
  std::string memory_limit, local_directory;
  std::vector<std::string> plugin_path;
  int nthreads = -1;
  bool no_nanny = false;
  app.add_option("scheduler", scheduler, "scheduler address, e.g. tcp://127.0.0.1:8786");
  app.add_option("--scheduler-file", scheduler_file, "read the scheduler address from this file");
  app.add_option("--nthreads", nthreads, "executor threads (default: worker.nthreads; 0 = cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--name", name, "worker name (default: host-pid, the pid of the nanny if any)");
  app.add_option("--plugin-path", plugin_path, "directory searched for plugins (repeatable)");
  app.add_option("--data-address", data_address, "address serving this worker's results");
  app.add_option("--resources", resources,
                 "resources offered to tasks that ask for them, e.g. \"GPU=2 MEM=64e9\" "
                 "(default: worker.resources)");
  app.add_option("--crash-file", crash_file,
                 "write a crash report (signal, task, stack) here when a plugin kills the worker "
                 "(set by the nanny; default: stderr)");
  app.add_option("--memory-limit", memory_limit,
                 "memory limit: bytes (4000000000), a size (2GB, 512MiB), a fraction of the "
                 "machine's memory (0.5), auto (its share by threads) or 0/none (default: "
                 "worker.memory-limit)");
  // The last one wins: a nanny appends its own scratch directory for its child.
  app.add_option("--local-directory", local_directory,
                 "directory for spilled results (default: worker.local-directory, else the "
                 "system's temporary directory)")
      ->take_last();
  app.add_flag("--no-nanny", no_nanny,
               "run the worker in this process, without a nanny (default: nanny.enabled)");
  CLI11_PARSE(app, argc, argv);
  try {
    auto config = flags.load();
    const bool use_nanny = !no_nanny && config.get_bool("nanny.enabled");
    plexus::configure_daemon_logging(use_nanny ? "nanny" : "worker", flags.level(config));
    // Closed last: the last results, hand-backs and the Goodbye (or the nanny's reports) still
    // leave before the process exits.
    plexus::comm::ContextCloser closer(
        std::chrono::milliseconds(config.get_int("comm.linger-ms") + 100));
    if (scheduler.empty() && !scheduler_file.empty()) {
      std::ifstream in(scheduler_file);
      if (!in || !std::getline(in, scheduler) || scheduler.empty()) {
        throw std::runtime_error("cannot read a scheduler address from '" + scheduler_file + "'");
      }
    }
    if (scheduler.empty()) scheduler = config.get_string("scheduler.address");
    if (!resources.empty()) config.set("worker.resources", resources);
    // Checked here, so that a nanny refuses a bad value at once instead of restarting a child
    // that fails on it.
    (void)plexus::worker::parse_resources(config.get_string("worker.resources"));
    if (nthreads >= 0) config.set("worker.nthreads", std::to_string(nthreads));
    if (app.count("--memory-limit") > 0) config.set("worker.memory-limit", memory_limit);
    if (!local_directory.empty()) config.set("worker.local-directory", local_directory);
    // A bad limit is an error now, before any process or connection.
    plexus::worker::memory_policy(config,
                                  static_cast<std::uint32_t>(config.get_int("worker.nthreads")));

    if (use_nanny) {
      // The child is this program with the same arguments, --no-nanny, and a name fixed here.
      std::string worker_name = !name.empty() ? name : config.get_string("worker.name");
      if (worker_name.empty()) worker_name = host_name() + "-" + std::to_string(::getpid());
      std::vector<std::string> child(argv, argv + argc);
      child.emplace_back("--no-nanny");
      if (name.empty()) child.insert(child.end(), {"--name", worker_name});
      // Each incarnation writes its crash report here; the nanny sends it with WorkerDied.
      const std::string report_file =
          (std::filesystem::temp_directory_path() /
           ("plexus-crash-" + std::to_string(::getpid()) + ".txt"))
              .string();
      child.insert(child.end(), {"--crash-file", report_file});
      auto options = plexus::worker::nanny_options(config, scheduler, worker_name, child);
      options.crash_file = report_file;
      options.program = "/proc/self/exe";
      // The child spills into a directory the nanny owns and empties after each death, so that
      // a worker killed for its memory leaves nothing behind on disk.
      std::optional<plexus::TempDir> scratch;
      const std::string base = config.get_string("worker.local-directory");
      try {
        scratch.emplace(base, "plexus-nanny-" + std::to_string(::getpid()));
        options.worker_argv.insert(options.worker_argv.end(),
                                   {"--local-directory", scratch->str()});
        options.scratch_directory = scratch->str();
      } catch (const std::exception& e) {
        plexus::logger("nanny")->warn("{}; the worker spills under {} directly", e.what(),
                                      base.empty() ? "the temporary directory" : base);
      }
      std::atomic<plexus::worker::Nanny*> target{nullptr};
      std::atomic<int> signalled{0};
      plexus::daemon::SignalWatcher signals([&](int sig) {
        plexus::logger("nanny")->info("signal {} received: stopping the worker", sig);
        signalled = sig;
        if (auto* t = target.load()) t->stop(sig);
      });
      plexus::worker::Nanny supervisor(std::move(options));
      target = &supervisor;
      if (int sig = signalled.load()) supervisor.stop(sig);  // a signal that came first
      return plexus::worker::exit_code(supervisor.run());
    }

    int report_fd = STDERR_FILENO;
    if (!crash_file.empty()) {
      report_fd = ::open(crash_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (report_fd < 0) {
        throw std::runtime_error("cannot open the crash file '" + crash_file + "'");
      }
    }
    plexus::worker::crash::install(report_fd);
    if (!name.empty()) config.set("worker.name", name);
    if (!data_address.empty()) config.set("worker.data-address", data_address);
    // Results are large blocks. glibc raises its mmap threshold to the size of the first mapped
    // block freed, so later blocks come from the heap, where freeing them need not lower the
    // process's memory, which the spill and pause thresholds watch. A fixed threshold keeps
    // every block of 1 MiB or more in its own mapping, returned to the system when freed.
    ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
    auto options = plexus::worker::worker_options(config, scheduler);
    options.plugin_path.insert(options.plugin_path.begin(), plugin_path.begin(), plugin_path.end());
    std::atomic<plexus::worker::WorkerService*> target{nullptr};
    std::atomic<bool> signalled{false};
    plexus::daemon::SignalWatcher signals([&](int sig) {
      plexus::logger("worker")->info("signal {} received: finishing running tasks", sig);
      signalled = true;
      if (auto* t = target.load()) t->stop();
    });
    plexus::worker::WorkerService service(options);
    target = &service;
    if (signalled) service.stop();  // a signal that came before the service existed
    auto how = service.run();
    switch (how) {
      case plexus::worker::WorkerExit::removed: return 3;
      case plexus::worker::WorkerExit::scheduler_lost: return 4;
      case plexus::worker::WorkerExit::restart: return 6;
      default: return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "plexus-worker: " << e.what() << "\n";
    return 1;
  }
}
