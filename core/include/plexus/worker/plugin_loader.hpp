// Finds, loads and calls plugins (Boost.DLL), lazily: a plugin is opened the first time one of its
// tasks is asked for, and stays loaded.
//
// Task names are "<plugin>.<task>"; a plugin named P is looked for as libplexus_P.so, then
// libP.so, then P.so in each directory of the search path, in order. The manifest's plugin name
// must equal P and its abi_version must equal PLEXUS_SDK_ABI_VERSION.
//
// A plugin that cannot be found or loaded is looked for again on a later call (it may be installed
// in the meantime), but at most once per second per plugin name: calls within that second get the
// last failure back without touching the file system.
//
// Thread safety: all member functions may be called from any thread (loading is serialized
// internally; calls into already-loaded plugins run concurrently, and the lookup of an already
// loaded task is one hash lookup under a shared lock). Plugins stay loaded until the loader is
// destroyed; no call may be in flight then.
#pragma once

#include <plexus/codec.hpp>
#include <plexus/common/errors.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace plexus::worker {

/// Result of one task call: encoded result bytes, or an error.
struct CallResult {
  bool ok = false;
  std::string value;  // encoded result when ok
  // Otherwise (kind exception / bad_arguments / unknown_task / plugin_error); out of line, so a
  // successful call moves one string.
  std::unique_ptr<ErrorInfo> error;
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::string sdk_version;
  std::string path;
  /// (task name without the plugin prefix, signature such as "int64(int64)"), sorted by name.
  std::vector<std::pair<std::string, std::string>> tasks;
};

class PluginLoader {
 public:
  /// The time source of the retry limit; tests inject a manual clock.
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  explicit PluginLoader(std::vector<std::string> search_path);
  PluginLoader(std::vector<std::string> search_path, Clock clock);
  ~PluginLoader();
  PluginLoader(const PluginLoader&) = delete;
  PluginLoader& operator=(const PluginLoader&) = delete;

  /// Calls task `task_name` ("plugin.task") with an encoded argument list. Never throws for a
  /// task's failure: unknown names, load failures, bad arguments and exceptions are all returned
  /// as CallResult errors with messages that say what was looked for and where:
  ///  - unknown plugin: "no plugin 'foo' for task 'foo.bar': looked for libplexus_foo.so, libfoo.so,
  ///    foo.so in /a, /b"
  ///  - unknown task: "plugin 'math' 1.0.0 (/path/libplexus_math.so) has no task 'nope'; it has:
  ///    add, inc, ..."
  ///  - ABI mismatch: "plugin 'bad' (/path) was built with SDK ABI 999; this worker has SDK ABI 2"
  /// Kinds: unknown_task for a malformed name, an unknown plugin or an unknown task; plugin_error
  /// for a plugin that cannot be loaded (or breaks the ABI during a call); bad_arguments and
  /// exception as reported by the plugin, with the exception's type and message.
  /// `deps` resolves the futures among the arguments (their values are read in place); without
  /// it, an argument that is a future fails the call as a bad argument.
  CallResult call(std::string_view task_name, std::string_view encoded_args,
                  const RefSource* deps = nullptr);

  /// Loads (if needed) and describes a plugin; throws std::runtime_error with the same messages.
  PluginInfo describe(std::string_view plugin_name);

  /// Plugins loaded so far.
  std::vector<PluginInfo> loaded() const;

  const std::vector<std::string>& search_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The default search path: `extra` first, then $PLEXUS_PLUGIN_PATH (colon-separated), then the
/// build tree's plugin directory (if it exists) and the installed plugin directory.
std::vector<std::string> default_plugin_path(const std::vector<std::string>& extra);

}  // namespace plexus::worker
