// Child processes for the LocalCluster: start a program, stop it politely, then firmly.
//
// Children get PR_SET_PDEATHSIG=SIGTERM so that they never outlive the process that started
// them, even when it is killed.
//
// Thread safety: functions may be called from any thread; one ChildProcess per owner.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace plexus {

/// Starts `program` with `argv` (argv[0] included) and returns its pid. The child gets SIGTERM
/// when the parent dies (PR_SET_PDEATHSIG), starts with no signal blocked and, if
/// `own_process_group`, leads a process group of its own (a terminal's Ctrl-C then reaches only
/// the parent). Throws std::runtime_error naming the program if it cannot be executed.
pid_t spawn_process(const std::string& program, const std::vector<std::string>& argv,
                    bool own_process_group);

class ChildProcess {
 public:
  /// Starts `argv[0]` (a path) with `argv`. Throws std::runtime_error naming the program.
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();  // stop(1 s) if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  /// Whether it is still running (reaps it if it exited).
  bool running();
  /// Its wait status once it has exited.
  std::optional<int> exit_status() const { return status_; }
  /// SIGTERM, then SIGKILL after `grace`; waits until it is gone. Returns the wait status.
  int stop(std::chrono::milliseconds grace);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// Directory of the running executable (/proc/self/exe), or empty.
std::string executable_dir();

/// Directory of the shared object that contains this function (libplexus.so), or empty.
std::string library_dir();

/// Describes a wait status: "exited with code 3", "killed by SIGSEGV".
std::string describe_wait_status(int status);

}  // namespace plexus
