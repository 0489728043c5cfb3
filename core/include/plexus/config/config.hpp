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
// Environment variables: PLEXUS__SCHEDULER__WORKER_TTL_MS=2000 sets scheduler.worker-ttl-ms
// (section and key lower-cased, '_' read as '-'); the value is parsed as a TOML value, and taken as
// a string when it does not parse as one.
//
// Thread safety: a Config is a value; const member functions may be called from any thread.
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
  /// The built-in defaults only.
  static Config defaults();

  /// The full lookup described above. `explicit_file` is --config; `env` is the environment to
  /// read (the process environment when empty).
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
  /// Overlays PLEXUS__SECTION__KEY variables from `env`; other variables are ignored.
  void apply_env(const std::map<std::string, std::string>& env);

  /// Sets one key from a command-line flag, type-checked like a file value; `value` is TOML text
  /// for non-strings ("4", "true", "[\"a\"]") and the raw text for string keys.
  void set(std::string_view dotted_key, std::string_view value);

  /// Typed getters by dotted key ("scheduler.address"). Throw ConfigError for an unknown key or
  /// a type that does not match.
  std::string get_string(std::string_view dotted_key) const;
  std::int64_t get_int(std::string_view dotted_key) const;
  double get_double(std::string_view dotted_key) const;  // accepts integers
  bool get_bool(std::string_view dotted_key) const;
  std::vector<std::string> get_string_list(std::string_view dotted_key) const;

  /// Every effective key and value, as TOML text (for `--print-config` and logs).
  std::string dump() const;

 private:
  Config();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::config
