// The nanny: a parent process that supervises one worker process (dask's Nanny).
//
// It starts the worker as a child (`worker_argv`, normally `plexus-worker ... --no-nanny --name
// <name>`), keeps its own DEALER connection to the scheduler (Hello with role nanny and the
// worker's name, then heartbeats), and waits for the child:
//   - the child dies of a signal or exits with a failure status: the nanny sends
//     WorkerDied{name, cause} at once, so the scheduler reschedules the child's tasks without
//     waiting for worker-ttl and names the cause in KilledWorker errors; then it starts the child
//     again after a backoff, and gives up (NannyExit::gave_up) after max_crashes deaths within
//     crash_window;
//   - the child was removed by the scheduler (exit status 3, e.g. it was stopped past
//     worker-ttl): started again, without a WorkerDied (the scheduler already knows);
//   - the child exited with status 6 (the cluster restarts, Client::restart): started again at
//     once, neither reported nor counted as a death;
//   - the child exited with status 0 (the scheduler shut down) or 4 (it lost the scheduler): the
//     nanny leaves too;
//   - the child's memory (RSS, polled every memory_monitor_interval_ms) passed memory_terminate
//     of memory_limit: the nanny kills it (SIGKILL, as dask terminates) and reports it as a death
//     with the cause "exceeded its memory limit (RSS 1.9 GB of 2.0 GB; ...)", then restarts it as
//     after a crash.
// After every death the nanny empties scratch_directory (what the dead worker spilled).
// stop() forwards a signal to the child, waits stop_timeout for it to finish its running tasks
// and exit, then kills it. Without a word from the scheduler for death_timeout the nanny stops
// the child the same way and returns NannyExit::scheduler_lost. The child runs in its own process
// group, so a terminal's Ctrl-C reaches only the nanny, which passes it on once; and it gets
// SIGTERM (PR_SET_PDEATHSIG) if the thread that started it ends, so it never outlives a nanny
// that was SIGKILLed.
//
//   plexus::worker::Nanny nanny(plexus::worker::nanny_options(config, scheduler, name, argv));
//   SignalWatcher signals([&](int sig) { nanny.stop(sig); });
//   return plexus::worker::exit_code(nanny.run());
//
// Thread safety: run() on one thread, which must live as long as the child should (it is the
// child's parent thread for PR_SET_PDEATHSIG); stop() and worker_pid() from any thread.
#pragma once

#include <plexus/protocol/comm_options.hpp>

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace plexus::config {
class Config;
}

namespace plexus::worker {

struct NannyOptions {
  std::string scheduler_address;
  /// The worker's name: fixed, so that every incarnation of the child has it and WorkerDied can
  /// name it. Must not be empty.
  std::string worker_name;
  /// The child's command line; worker_argv[0] is shown in `ps`. Must not be empty.
  std::vector<std::string> worker_argv;
  /// The program executed for the child; "" = worker_argv[0]. "/proc/self/exe" runs the nanny's
  /// own binary, even if the file was replaced since it started.
  std::string program;
  std::uint32_t connect_timeout_ms = 10000;  // to the scheduler's Welcome
  std::uint32_t death_timeout_ms = 60000;    // silence from the scheduler before giving up
  std::uint32_t max_crashes = 5;             // deaths within crash_window_ms that end the nanny
  std::uint32_t crash_window_ms = 60000;
  std::uint32_t restart_backoff_ms = 100;  // doubled for each further death in the window
  std::uint32_t stop_timeout_ms = 15000;   // after forwarding a signal, before SIGKILL
  /// Where the worker writes a crash report when a fatal signal kills it (its --crash-file; see
  /// crash_report.hpp): sent along with WorkerDied, so KilledWorker errors show the stack.
  /// Removed when the nanny ends. "" = none.
  std::string crash_file;
  comm::CommOptions comm;
  std::uint64_t memory_limit = 0;             // the worker's, in bytes; 0 = no limit
  std::optional<double> memory_terminate;     // fraction of memory_limit; nothing = never kill
  std::uint32_t memory_monitor_interval_ms = 100;
  /// A directory given to the child as its local directory; its contents are removed after each
  /// death of the child ("" = none).
  std::string scratch_directory;
};

/// Reads [nanny], the worker's connect and death timeouts, its memory limit and terminate
/// threshold (for worker.nthreads threads), and [comm] from a config. Throws config::ConfigError
/// for a value out of range (max-crashes = 0, a bad memory limit).
NannyOptions nanny_options(const config::Config& config, std::string scheduler_address,
                           std::string worker_name, std::vector<std::string> worker_argv);

/// Why run() returned.
enum class NannyExit {
  stopped,             // stop() was called (a signal); the child was stopped
  scheduler_shutdown,  // the worker exited with status 0 (the scheduler shut down, or someone
                       // stopped the worker itself), or the scheduler told the nanny to stop
  scheduler_lost,      // no word from the scheduler within death_timeout (or the worker said so)
  gave_up,             // the worker died max_crashes times within crash_window
  failed,              // the scheduler refused or could not be reached; the worker cannot start
};

/// The exit status plexus-worker returns for a NannyExit: 0, 0, 4, 5, 1.
int exit_code(NannyExit how);

/// A wait status as a cause of death: "exited with status 3", "killed by signal SIGKILL",
/// "killed by signal SIGSEGV (segmentation fault)" (crash signals say what they mean).
std::string death_cause(int wait_status);

class Nanny {
 public:
  /// Checks the options; throws std::invalid_argument naming what is missing.
  explicit Nanny(NannyOptions options);
  /// Kills a child that is still running (SIGKILL) and waits for it.
  ~Nanny();
  Nanny(const Nanny&) = delete;
  Nanny& operator=(const Nanny&) = delete;

  /// Starts the child, connects to the scheduler and supervises until one of NannyExit. Throws
  /// std::runtime_error if the child program cannot be executed at all.
  NannyExit run();

  /// Graceful stop: `signal` (SIGTERM, SIGINT) goes to the child, which finishes its running
  /// tasks; after stop_timeout it is killed. Thread-safe; later calls do nothing.
  void stop(int signal);

  /// The running child's process id, or 0 between incarnations.
  pid_t worker_pid() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::worker
