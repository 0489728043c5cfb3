// Running programs from integration tests: a one-shot command with captured output and a
// deadline, and scratch directories that clean up after themselves.
//
// Thread safety: none of these is shared between threads; each test owns its objects.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <plexus/common/temp_dir.hpp>

#include <string>
#include <vector>

namespace plexus::testing {

using plexus::TempDir;  // core/common/temp_dir.hpp


/// What a finished (or killed) command left behind.
struct CommandResult {
  /// The exit code; nullopt if it was killed by a signal (including by the timeout).
  std::optional<int> exit_code;
  bool timed_out = false;
  std::string out;  // everything written to stdout
  std::string err;  // everything written to stderr
  std::chrono::milliseconds elapsed{0};
};

struct CommandOptions {
  std::string stdin_text;
  /// Extra environment variables, on top of this process's environment.
  std::map<std::string, std::string> env;
  /// After this the command gets SIGKILL and `timed_out` is set.
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
};

/// Runs `argv` (argv[0] is a path) to completion or to the timeout; never throws for a command
/// that fails, only if it cannot be started at all.
CommandResult run_command(const std::vector<std::string>& argv, const CommandOptions& options = {});

/// Polls until `path` exists and is non-empty, or the deadline passes. Returns its first line,
/// or nullopt on timeout.
std::optional<std::string> wait_for_file(const std::string& path, std::chrono::milliseconds timeout);

/// The whole content of a file, or empty if it does not exist.
std::string read_file(const std::string& path);

/// How many '\n'-terminated lines the file holds (0 if it does not exist).
std::size_t count_lines(const std::string& path);

/// A TCP port on 127.0.0.1 that nothing listens on: bound, then closed again.
int closed_tcp_port();

/// Whether a process with this id still exists (not reaped or not ours counts as existing).
bool process_exists(int pid);

/// Whether it exists and is not a zombie: an orphan that has exited counts as gone even while
/// nobody has reaped it yet.
bool process_alive(int pid);

/// Polls until process_alive(pid) is false; false if it is still alive at the deadline.
bool wait_until_gone(int pid, std::chrono::milliseconds timeout);

/// Process ids whose parent is this process (from /proc), running, not zombies.
std::vector<int> child_pids();
/// The same for the children of `parent`.
std::vector<int> child_pids(int parent);

/// The directory of the daemons and the CLI in the build tree.
std::string bin_dir();
std::string bin(const std::string& program);

}  // namespace plexus::testing
