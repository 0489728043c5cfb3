// PluginLoader: finds plugins on the search path, opens them with Boost.DLL, validates their
// manifest and calls their tasks through the C ABI (plexus/abi.h).
#include <plexus/worker/plugin_loader.hpp>

#include <plexus/abi.h>
#include <plexus/common/logging.hpp>

#include <boost/dll/shared_library.hpp>
#include <boost/dll/shared_library_load_mode.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace plexus::worker {

namespace {

constexpr auto kRetryInterval = std::chrono::seconds(1);
constexpr const char* kUnknownTaskType = "plexus::UnknownTask";
constexpr const char* kPluginErrorType = "plexus::PluginError";

// Transparent hashing, so that lookups by std::string_view allocate nothing.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

ErrorInfo make_error(ErrorKind kind, const char* type, std::string message) {
  ErrorInfo e;
  e.kind = kind;
  e.type = type;
  e.message = std::move(message);
  return e;
}

CallResult failed(ErrorInfo error) {
  CallResult r;
  r.ok = false;
  r.error = std::make_unique<ErrorInfo>(std::move(error));
  return r;
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

// Plugin names come from PLEXUS_PLUGIN(NAME, ...), an identifier. Anything else (a '/', "..")
// must never reach a file name.
bool valid_plugin_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::vector<std::string> candidate_files(std::string_view plugin) {
  std::string p(plugin);
  return {"libplexus_" + p + ".so", "lib" + p + ".so", p + ".so"};
}

// The host side of plexus_output: collects what the plugin reports. The callbacks copy and never
// let an exception escape into plugin code.
struct HostOutput {
  const RefSource* deps = nullptr;
  bool has_result = false;
  bool has_error = false;
  bool out_of_memory = false;
  std::string value;
  std::string type;
  std::string message;
};

void host_set_result(void* host, const unsigned char* data, std::size_t size) noexcept {
  auto* h = static_cast<HostOutput*>(host);
  try {
    h->value.assign(reinterpret_cast<const char*>(data), data ? size : 0);
    h->has_result = true;
  } catch (...) {
    h->out_of_memory = true;
  }
}

int host_resolve(void* host, const char* key, std::size_t key_size, const unsigned char** data,
                 std::size_t* size) noexcept {
  const auto* h = static_cast<HostOutput*>(host);
  if (!h->deps || !h->deps->resolve || !data || !size) return 1;
  std::string_view value;
  try {
    if (!h->deps->resolve(h->deps->context, std::string_view(key, key_size), &value)) return 1;
  } catch (...) {
    return 1;
  }
  *data = reinterpret_cast<const unsigned char*>(value.data());
  *size = value.size();
  return 0;
}

void host_set_error(void* host, int /*status*/, const char* type, const char* message) noexcept {
  auto* h = static_cast<HostOutput*>(host);
  try {
    h->type = type ? type : "";
    h->message = message ? message : "";
    h->has_error = true;
  } catch (...) {
    h->out_of_memory = true;
  }
}

}  // namespace

// A plugin that loaded and passed validation. Immutable after construction; `library` keeps the
// code and the manifest (which `tasks` point into) mapped.
struct LoadedPlugin {
  boost::dll::shared_library library;
  PluginInfo info;
  StringMap<const plexus_task_entry*> tasks;  // short task name -> entry in the manifest
};

struct PluginLoader::Impl {
  struct Failure {
    std::chrono::steady_clock::time_point at;
    bool not_found = false;  // then `error` is rebuilt for each call, which names its task
    ErrorInfo error;
  };
  // Where a plugin was found, or why it could not be loaded.
  struct LoadOutcome {
    const LoadedPlugin* plugin = nullptr;
    ErrorInfo error;
  };

  std::vector<std::string> search_path;
  Clock clock;

  // Serializes loading, and guards `failures`. Never taken on the call path of a loaded task.
  std::mutex load_mutex;
  StringMap<Failure> failures;

  // Guards the two tables below: written (briefly) only when a plugin has finished loading.
  mutable std::shared_mutex table_mutex;
  StringMap<std::unique_ptr<LoadedPlugin>> plugins;  // plugin name -> plugin
  StringMap<const plexus_task_entry*> task_table;    // "plugin.task" -> entry: the hot path

  const LoadedPlugin* find_loaded(std::string_view plugin) const {
    std::shared_lock lock(table_mutex);
    auto it = plugins.find(plugin);
    return it == plugins.end() ? nullptr : it->second.get();
  }

  LoadOutcome ensure_loaded(std::string_view plugin, std::string_view task_name) {
    if (const LoadedPlugin* p = find_loaded(plugin)) return {p, {}};
    std::lock_guard load_lock(load_mutex);
    // Another thread may have loaded it while this one waited for the lock.
    if (const LoadedPlugin* p = find_loaded(plugin)) return {p, {}};
    auto now = clock();
    auto failure = failures.find(plugin);
    if (failure != failures.end() && now - failure->second.at < kRetryInterval) {
      if (failure->second.not_found) return {nullptr, not_found(plugin, task_name)};
      return {nullptr, failure->second.error};
    }
    std::string name(plugin);
    auto found = find_file(name);
    if (!found) {
      failures[name] = Failure{now, true, {}};
      ErrorInfo error = not_found(plugin, task_name);
      logger("worker")->warn("plugin not found plugin={} error=\"{}\"", name, error.message);
      return {nullptr, std::move(error)};
    }
    auto loaded = load(name, found->string());
    if (!loaded.first) {
      failures[name] = Failure{now, false, loaded.second};
      logger("worker")->warn("plugin load failed plugin={} error=\"{}\"", name,
                             loaded.second.message);
      return {nullptr, std::move(loaded.second)};
    }
    if (failure != failures.end()) failures.erase(failure);
    const LoadedPlugin* raw = loaded.first.get();
    logger("worker")->info("plugin loaded plugin={} version={} sdk={} path={} tasks={}", name,
                           raw->info.version, raw->info.sdk_version, raw->info.path,
                           raw->info.tasks.size());
    std::unique_lock table_lock(table_mutex);
    for (const auto& [task, entry] : raw->tasks) task_table.emplace(name + "." + task, entry);
    plugins.emplace(std::move(name), std::move(loaded.first));
    return {raw, {}};
  }

  // `task_name` is empty when the plugin itself, not one of its tasks, was asked for.
  ErrorInfo not_found(std::string_view plugin, std::string_view task_name) const {
    std::string p(plugin);
    return make_error(
        ErrorKind::unknown_task, kUnknownTaskType,
        "no plugin '" + p + "'" +
            (task_name.empty() ? std::string() : " for task '" + std::string(task_name) + "'") +
            ": looked for " + join(candidate_files(p), ", ") + " in " +
            (search_path.empty() ? std::string("no directory (the plugin path is empty)")
                                 : join(search_path, ", ")));
  }

  // Finds the plugin's file: the first candidate name that exists in the first directory that
  // has one. Absence of the plugin is std::nullopt.
  std::optional<std::filesystem::path> find_file(const std::string& plugin) const {
    const auto candidates = candidate_files(plugin);
    for (const auto& dir : search_path) {
      for (const auto& file : candidates) {
        std::error_code ec;
        std::filesystem::path p = std::filesystem::path(dir) / file;
        if (std::filesystem::is_regular_file(p, ec)) {
          auto abs = std::filesystem::absolute(p, ec);
          return ec ? p : abs.lexically_normal();
        }
      }
    }
    return std::nullopt;
  }

  // Opens the file at `path` and validates its manifest.
  static std::pair<std::unique_ptr<LoadedPlugin>, ErrorInfo> load(const std::string& plugin,
                                                                  const std::string& path) {
    auto plugin_error = [](std::string message) {
      return std::pair<std::unique_ptr<LoadedPlugin>, ErrorInfo>{
          nullptr, make_error(ErrorKind::plugin_error, kPluginErrorType, std::move(message))};
    };

    auto out = std::make_unique<LoadedPlugin>();
    boost::dll::fs::error_code ec;
    dlerror();  // clear any stale message so that the one read below is this load's
    out->library.load(boost::dll::fs::path(path),
                      boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec || !out->library.is_loaded()) {
      // Boost.DLL reports only a generic error code; the loader's own text says what went wrong
      // (missing dependency, undefined symbol, not an ELF file...).
      const char* why = dlerror();
      return plugin_error("cannot load plugin '" + plugin + "' from " + path + ": " +
                          (why ? std::string(why) : ec.message()));
    }

    if (!out->library.has(PLEXUS_MANIFEST_SYMBOL)) {
      return plugin_error("plugin file " + path + " does not export the symbol '" +
                          PLEXUS_MANIFEST_SYMBOL +
                          "': it is not a Plexus plugin (build it with PLEXUS_PLUGIN() and "
                          "plexus_add_plugin())");
    }
    const plexus_manifest* manifest = nullptr;
    try {
      manifest = out->library.get<const plexus_manifest*()>(PLEXUS_MANIFEST_SYMBOL)();
    } catch (...) {
      return plugin_error("plugin '" + plugin + "' (" + path + "): " + PLEXUS_MANIFEST_SYMBOL +
                          "() threw an exception");
    }
    if (manifest == nullptr) {
      return plugin_error("plugin '" + plugin + "' (" + path + "): " + PLEXUS_MANIFEST_SYMBOL +
                          "() returned no manifest");
    }
    // abi_version is the one field every ABI keeps first: nothing else is read before it matches.
    if (manifest->abi_version != PLEXUS_SDK_ABI_VERSION) {
      return plugin_error("plugin '" + plugin + "' (" + path + ") was built with SDK ABI " +
                          std::to_string(manifest->abi_version) + "; this worker has SDK ABI " +
                          std::to_string(PLEXUS_SDK_ABI_VERSION));
    }
    if (manifest->struct_size < sizeof(plexus_manifest)) {
      return plugin_error("plugin '" + plugin + "' (" + path + ") has a truncated manifest (" +
                          std::to_string(manifest->struct_size) + " bytes, expected at least " +
                          std::to_string(sizeof(plexus_manifest)) + ")");
    }
    const std::string declared = manifest->plugin_name ? manifest->plugin_name : "";
    if (declared != plugin) {
      return plugin_error("plugin file " + path + " declares plugin name '" + declared +
                          "', but was looked up as '" + plugin + "' (a plugin named P must be " +
                          "built as libplexus_P.so from PLEXUS_PLUGIN(P, ...))");
    }
    const std::string version = manifest->plugin_version ? manifest->plugin_version : "";
    if (manifest->error != nullptr) {
      return plugin_error("plugin '" + plugin + "' " + version + " (" + path + "): " +
                          manifest->error);
    }
    if (manifest->task_count > 0 && manifest->tasks == nullptr) {
      return plugin_error("plugin '" + plugin + "' (" + path + ") has a malformed manifest: " +
                          std::to_string(manifest->task_count) + " tasks but no task table");
    }

    out->info.name = plugin;
    out->info.version = version;
    out->info.sdk_version = manifest->sdk_version ? manifest->sdk_version : "";
    out->info.path = path;
    for (std::size_t i = 0; i < manifest->task_count; ++i) {
      const plexus_task_entry& entry = manifest->tasks[i];
      if (entry.name == nullptr || entry.invoke == nullptr) {
        return plugin_error("plugin '" + plugin + "' (" + path +
                            ") has a malformed manifest: task entry " + std::to_string(i) +
                            " has no name or no function");
      }
      if (!out->tasks.emplace(entry.name, &entry).second) {
        return plugin_error("plugin '" + plugin + "' (" + path + ") declares task '" +
                            entry.name + "' twice");
      }
      out->info.tasks.emplace_back(entry.name, entry.signature ? entry.signature : "");
    }
    std::sort(out->info.tasks.begin(), out->info.tasks.end());
    return {std::move(out), ErrorInfo{}};
  }
};

PluginLoader::PluginLoader(std::vector<std::string> search_path)
    : PluginLoader(std::move(search_path), [] { return std::chrono::steady_clock::now(); }) {}

PluginLoader::PluginLoader(std::vector<std::string> search_path, Clock clock)
    : impl_(std::make_unique<Impl>()) {
  impl_->search_path = std::move(search_path);
  impl_->clock = std::move(clock);
}

PluginLoader::~PluginLoader() {
  // Entries point into the libraries: drop them first, then unload.
  impl_->task_table.clear();
  impl_->plugins.clear();
}

namespace {

CallResult invoke(std::string_view task_name, const plexus_task_entry& entry,
                  std::string_view encoded_args, const RefSource* deps) {
  HostOutput host;
  host.deps = deps;
  const plexus_output output{&host, &host_set_result, &host_set_error, &host_resolve};
  int status = 0;
  try {
    status = entry.invoke(entry.context, reinterpret_cast<const unsigned char*>(encoded_args.data()),
                          encoded_args.size(), &output);
  } catch (...) {
    return failed(make_error(ErrorKind::plugin_error, kPluginErrorType,
                             "task '" + std::string(task_name) +
                                 "' let an exception escape the plugin boundary"));
  }
  if (host.out_of_memory) {
    return failed(make_error(ErrorKind::plugin_error, kPluginErrorType,
                             "out of memory copying the outcome of task '" +
                                 std::string(task_name) + "'"));
  }
  switch (status) {
    case PLEXUS_STATUS_OK:
      if (!host.has_result) break;
      {
        CallResult r;
        r.ok = true;
        r.value = std::move(host.value);
        return r;
      }
    case PLEXUS_STATUS_EXCEPTION:
      return failed(make_error(
          ErrorKind::exception, host.has_error ? host.type.c_str() : "unknown",
          host.has_error ? std::move(host.message)
                         : "task '" + std::string(task_name) + "' failed without an error message"));
    case PLEXUS_STATUS_BAD_ARGUMENTS:
      return failed(make_error(
          ErrorKind::bad_arguments, host.has_error ? host.type.c_str() : "plexus::TypeMismatch",
          host.has_error ? std::move(host.message)
                         : "task '" + std::string(task_name) + "' rejected its arguments"));
    default:
      break;
  }
  std::string message = "task '" + std::string(task_name) + "' returned status " +
                        std::to_string(status) +
                        (status == PLEXUS_STATUS_OK ? " without a result" : "");
  if (host.has_error) message += ": " + host.type + ": " + host.message;
  return failed(make_error(ErrorKind::plugin_error, kPluginErrorType, std::move(message)));
}

}  // namespace

CallResult PluginLoader::call(std::string_view task_name, std::string_view encoded_args,
                              const RefSource* deps) {
  {
    std::shared_lock lock(impl_->table_mutex);
    auto it = impl_->task_table.find(task_name);
    if (it != impl_->task_table.end()) {
      const plexus_task_entry* entry = it->second;
      lock.unlock();  // the entry lives until the loader is destroyed
      return invoke(task_name, *entry, encoded_args, deps);
    }
  }

  const auto dot = task_name.find('.');
  const std::string_view plugin =
      dot == std::string_view::npos ? std::string_view{} : task_name.substr(0, dot);
  const std::string_view task =
      dot == std::string_view::npos ? std::string_view{} : task_name.substr(dot + 1);
  if (!valid_plugin_name(plugin) || task.empty()) {
    return failed(make_error(ErrorKind::unknown_task, kUnknownTaskType,
                             "invalid task name '" + std::string(task_name) +
                                 "': expected '<plugin>.<task>', where <plugin> is a plugin "
                                 "name (letters, digits, '_')"));
  }

  auto outcome = impl_->ensure_loaded(plugin, task_name);
  if (!outcome.plugin) return failed(std::move(outcome.error));
  const LoadedPlugin& p = *outcome.plugin;
  auto it = p.tasks.find(task);
  if (it == p.tasks.end()) {
    std::vector<std::string> names;
    names.reserve(p.info.tasks.size());
    for (const auto& t : p.info.tasks) names.push_back(t.first);
    return failed(make_error(ErrorKind::unknown_task, kUnknownTaskType,
                             "plugin '" + p.info.name + "' " + p.info.version + " (" +
                                 p.info.path + ") has no task '" + std::string(task) +
                                 "'; it has: " +
                                 (names.empty() ? std::string("no tasks") : join(names, ", "))));
  }
  return invoke(task_name, *it->second, encoded_args, deps);
}

PluginInfo PluginLoader::describe(std::string_view plugin_name) {
  if (!valid_plugin_name(plugin_name)) {
    throw std::runtime_error("invalid plugin name '" + std::string(plugin_name) +
                             "': a plugin name has only letters, digits and '_'");
  }
  auto outcome = impl_->ensure_loaded(plugin_name, {});
  if (!outcome.plugin) throw std::runtime_error(outcome.error.message);
  return outcome.plugin->info;
}

std::vector<PluginInfo> PluginLoader::loaded() const {
  std::vector<PluginInfo> out;
  {
    std::shared_lock lock(impl_->table_mutex);
    out.reserve(impl_->plugins.size());
    for (const auto& [name, plugin] : impl_->plugins) out.push_back(plugin->info);
  }
  std::sort(out.begin(), out.end(),
            [](const PluginInfo& a, const PluginInfo& b) { return a.name < b.name; });
  return out;
}

const std::vector<std::string>& PluginLoader::search_path() const { return impl_->search_path; }

std::vector<std::string> default_plugin_path(const std::vector<std::string>& extra) {
  std::vector<std::string> path;
  auto add = [&](std::string dir) {
    if (!dir.empty() && std::find(path.begin(), path.end(), dir) == path.end()) {
      path.push_back(std::move(dir));
    }
  };
  for (const auto& dir : extra) add(dir);
  if (const char* env = std::getenv("PLEXUS_PLUGIN_PATH")) {
    std::string_view rest(env);
    while (!rest.empty()) {
      auto colon = rest.find(':');
      add(std::string(rest.substr(0, colon)));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  std::error_code ec;
  if (std::filesystem::is_directory(PLEXUS_BUILD_PLUGIN_DIR, ec)) add(PLEXUS_BUILD_PLUGIN_DIR);
  add(PLEXUS_INSTALL_PLUGIN_DIR);
  return path;
}

}  // namespace plexus::worker
