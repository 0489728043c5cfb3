// Crash reports: what a worker writes when a plugin kills it (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGABRT), so that the KilledWorker error a client gets shows where it crashed.
//
//   crash::install(fd);                        // once, at worker start (fd: the nanny's file)
//   { crash::TaskScope running(key, name);     // around each task call, on the executor thread
//     loader.call(...); }
//   std::string report = crash::take_report(path);   // in the nanny, after the worker died
//
// The handler writes the signal, the task the crashing thread was running and a stack trace
// (module, symbol where the module exports one, offset) with async-signal-safe calls only,
// then dies of the same signal so that the nanny sees the real cause. It runs on an alternate
// stack, so a stack overflow is reported too.
//
// Thread safety: install() once before tasks run; TaskScope on any thread.
#pragma once

#include <string>
#include <string_view>

namespace plexus::worker::crash {

/// Installs the fatal-signal handlers, writing reports to `fd` (kept open; not closed here).
void install(int fd);

/// Marks the calling thread as running task `key` (function `name`) while it lives; both views
/// must outlive it. Gives the thread an alternate signal stack the first time.
class TaskScope {
 public:
  TaskScope(std::string_view key, std::string_view name) noexcept;
  ~TaskScope();
  TaskScope(const TaskScope&) = delete;
  TaskScope& operator=(const TaskScope&) = delete;
};

/// The report a crashed worker wrote to `path`, with C++ symbol names demangled; "" if there is
/// none. Empties the file for the next incarnation.
std::string take_report(const std::string& path);

}  // namespace plexus::worker::crash
