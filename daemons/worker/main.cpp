// plexus-worker: a worker daemon that runs plugin tasks for a scheduler; by default under a nanny
// (a parent process that restarts it when it dies and tells the scheduler why).
#include "daemon.hpp"

#include <plexus/protocol/socket.hpp>
#include <plexus/worker/nanny.hpp>
#include <plexus/worker/worker_service.hpp>

#include <unistd.h>

#include <fstream>
#include <iostream>

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
  std::string scheduler, scheduler_file, name, data_address;
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

    if (use_nanny) {
      // The child is this program with the same arguments, --no-nanny, and a name fixed here.
      std::string worker_name = !name.empty() ? name : config.get_string("worker.name");
      if (worker_name.empty()) worker_name = host_name() + "-" + std::to_string(::getpid());
      std::vector<std::string> child(argv, argv + argc);
      child.emplace_back("--no-nanny");
      if (name.empty()) child.insert(child.end(), {"--name", worker_name});
      auto options = plexus::worker::nanny_options(config, scheduler, worker_name, child);
      options.program = "/proc/self/exe";
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

    if (nthreads >= 0) config.set("worker.nthreads", std::to_string(nthreads));
    if (!name.empty()) config.set("worker.name", name);
    if (!data_address.empty()) config.set("worker.data-address", data_address);
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
