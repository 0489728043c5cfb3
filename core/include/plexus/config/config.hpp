// Configuration: layered TOML with every default in config/plexus.toml (compiled in).
//
// Lookup order, later wins: built-in defaults; /etc/plexus/plexus.toml; the user file
// ($XDG_CONFIG_HOME/plexus/plexus.toml, else ~/.config/plexus/plexus.toml); the file named by
// $PLEXUS_CONFIG; a file given on the command line (--config); PLEXUS__SECTION__KEY environment
// variables; command-line flags (set()). Missing system/user files are skipped; an explicitly
// named file that is missing is an error.
//
// The defaults are also the schema: a key that is not in them, or a value whose type differs from
// the default's (an integer is accepted where a float is expected), is a ConfigError whose message
// names the file, the line and the dotted key, e.g.
//   "/etc/x.toml:3: unknown key 'scheduler.adress' (did you mean 'scheduler.address'?)".
// A section that is not a table, and a table nested inside a section, are errors too. Every
// problem of one overlay is reported in the same ConfigError, one per line, sorted by line; a TOML
// syntax error instead names file:line:column and toml++'s description.
// Environment variables: PLEXUS__SCHEDULER__WORKER_TTL_MS=2000 sets scheduler.worker-ttl-ms
// (section and key lower-cased, '_' read as '-'); the value is parsed as a TOML value, and taken as
// a string when it does not parse as one. For a string setting, a value that parses as something
// other than a TOML string is taken as its text (PLEXUS__WORKER__NAME=42 names the worker "42").
//
// Every mutating call either succeeds or throws leaving the Config unchanged.
//
// Example:
//   auto config = plexus::config::Config::load(cli.config_file);  // may throw ConfigError
//   for (const auto& [key, value] : cli.overrides) config.set(key, value);
//   auto ttl = std::chrono::milliseconds(config.get_int("scheduler.worker-ttl-ms"));
//
// Thread safety: a Config is a value; const member functions may be called from any thread
// concurrently; mutating ones need exclusive access. A moved-from Config may only be assigned to
// or destroyed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Config {
 public:
  /// The built-in defaults only (config/plexus.toml as compiled in).
  static Config defaults();

  /// The full lookup described above. `explicit_file` is --config; `env` is the environment to
  /// read PLEXUS_CONFIG, XDG_CONFIG_HOME, HOME and PLEXUS__* from (the process environment when
  /// std::nullopt; an empty map is an empty environment). Empty PLEXUS_CONFIG or
  /// XDG_CONFIG_HOME count as unset. Throws ConfigError.
  static Config load(const std::optional<std::string>& explicit_file = std::nullopt,
                     const std::optional<std::map<std::string, std::string>>& env = std::nullopt);

  Config(const Config&);
  Config& operator=(const Config&);
  Config(Config&&) noexcept;
  Config& operator=(Config&&) noexcept;
  ~Config();

  /// Overlays a TOML file. Throws ConfigError (missing file, syntax error with line, unknown key,
  /// wrong type).
  void merge_file(const std::string& path);
  /// Overlays TOML text; `source` names it in errors.
  void merge_string(std::string_view toml, std::string_view source);
  /// Overlays PLEXUS__SECTION__KEY variables from `env`; other variables are ignored. Throws
  /// ConfigError naming the variable for an unknown key, a malformed name (PLEXUS__X) or a
  /// value of the wrong type.
  void apply_env(const std::map<std::string, std::string>& env);

  /// Sets one key from a command-line flag, type-checked like a file value; `value` is TOML text
  /// for non-strings ("4", "true", "[\"a\"]") and the raw text for string keys. Throws
  /// ConfigError ("command line: ...") for an unknown key or a value of the wrong type.
  void set(std::string_view dotted_key, std::string_view value);

  /// Typed getters by dotted key ("scheduler.address"). Throw ConfigError for an unknown key or
  /// a type that does not match.
  std::string get_string(std::string_view dotted_key) const;
  std::int64_t get_int(std::string_view dotted_key) const;
  double get_double(std::string_view dotted_key) const;  // accepts integers
  /// A float setting that may be `false` (e.g. worker.memory-target): nothing when it is false.
  std::optional<double> get_double_or_false(std::string_view dotted_key) const;
  bool get_bool(std::string_view dotted_key) const;
  std::vector<std::string> get_string_list(std::string_view dotted_key) const;

  /// Every effective key and value, as TOML text (for `--print-config` and logs), sections and
  /// keys in the order of the defaults file. Merging it into defaults() yields this Config.
  std::string dump() const;

 private:
  Config();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::config
