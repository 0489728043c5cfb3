// plexus-worker: a worker daemon that runs plugin tasks for a scheduler.
#include "daemon.hpp"

#include <plexus/worker/worker_service.hpp>

#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"Plexus worker: runs plugin tasks for a scheduler"};
  plexus::daemon::CommonFlags flags;
  flags.add_to(app);
  std::string scheduler, scheduler_file, name, data_address;
  std::vector<std::string> plugin_path;
  int nthreads = -1;
  app.add_option("scheduler", scheduler, "scheduler address, e.g. tcp://127.0.0.1:8786");
  app.add_option("--scheduler-file", scheduler_file, "read the scheduler address from this file");
  app.add_option("--nthreads", nthreads, "executor threads (default: worker.nthreads; 0 = cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--name", name, "worker name (default: host-pid)");
  app.add_option("--plugin-path", plugin_path, "directory searched for plugins (repeatable)");
  app.add_option("--data-address", data_address, "address serving this worker's results");
  CLI11_PARSE(app, argc, argv);
  try {
    auto config = flags.load();
    plexus::configure_daemon_logging("worker", flags.level(config));
    if (scheduler.empty() && !scheduler_file.empty()) {
      std::ifstream in(scheduler_file);
      if (!in || !std::getline(in, scheduler) || scheduler.empty()) {
        throw std::runtime_error("cannot read a scheduler address from '" + scheduler_file + "'");
      }
    }
    if (scheduler.empty()) scheduler = config.get_string("scheduler.address");
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
      default: return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "plexus-worker: " << e.what() << "\n";
    return 1;
  }
}
