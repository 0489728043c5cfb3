// plexus-scheduler: the scheduler daemon.
#include "daemon.hpp"

#include <plexus/protocol/socket.hpp>
#include <plexus/scheduler/scheduler_service.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"Plexus scheduler: routes tasks between clients and workers"};
  plexus::daemon::CommonFlags flags;
  flags.add_to(app);
  std::string address, scheduler_file;
  app.add_option("--address", address,
                 "bind address: tcp://host:port (port 0 = any free port), ipc:///path or "
                 "inproc://name (default: scheduler.address)");
  app.add_option("--scheduler-file", scheduler_file, "write the bound address to this file");
  CLI11_PARSE(app, argc, argv);
  try {
    auto config = flags.load();
    if (!address.empty()) config.set("scheduler.address", address);
    if (!scheduler_file.empty()) config.set("scheduler.scheduler-file", scheduler_file);
    plexus::configure_daemon_logging("scheduler", flags.level(config));
    // Closed last: the Shutdowns the service sends on its way out still leave.
    plexus::comm::ContextCloser closer(
        std::chrono::milliseconds(config.get_int("comm.linger-ms") + 100));
    std::atomic<plexus::sched::SchedulerService*> target{nullptr};
    std::atomic<bool> signalled{false};
    plexus::daemon::SignalWatcher signals([&](int sig) {
      plexus::logger("scheduler")->info("signal {} received: shutting down", sig);
      signalled = true;
      if (auto* t = target.load()) t->stop();
    });
    plexus::sched::SchedulerService service(plexus::sched::service_options(config));
    target = &service;
    if (signalled) service.stop();  // a signal that came before the service existed
    service.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "plexus-scheduler: " << e.what() << "\n";
    return 1;
  }
}
