// Configuration: the built-in defaults (config/plexus.toml, compiled in as kDefaultsToml) are both
// the initial values and the schema. Every overlay (file, TOML text, environment, flag) is parsed
// with toml++, checked against that schema as a whole, and applied only when it has no problem, so
// a failed merge leaves the Config unchanged.
#include <plexus/config/config.hpp>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>
#include <variant>

extern char** environ;  // NOLINT: POSIX; the process environment when load() is given none

namespace plexus::config {

extern const std::string_view kDefaultsToml;  // generated from config/plexus.toml

namespace {

constexpr std::string_view kDefaultsSource = "<built-in defaults>";
constexpr std::string_view kFlagSource = "command line";
constexpr std::string_view kEnvPrefix = "PLEXUS__";
constexpr std::string_view kSystemFile = "/etc/plexus/plexus.toml";

// The types a setting can have; an empty array in the defaults means a list of strings.
enum class Kind { string, integer, floating, boolean, string_list, float_or_false };

// Float settings that may also be `false` to disable what they set (dask's memory thresholds).
// TOML has no such type, so the schema names them here; their defaults are floats.
constexpr std::string_view kFloatOrFalse[] = {
    "worker.memory-target",
    "worker.memory-spill",
    "worker.memory-pause",
    "worker.memory-terminate",
};

using Value = std::variant<std::string, std::int64_t, double, bool, std::vector<std::string>>;

struct Entry {
  std::string section;
  std::string key;
  std::string dotted;  // "section.key"
  Kind kind;
  Value value;
};

// A checked value waiting to be applied to entries[index].
struct Update {
  std::size_t index;
  Value value;
};

// The problems found in one overlay, reported together (sorted by line) in one ConfigError.
class Problems {
 public:
  void add(std::uint32_t line, std::string message) {
    items_.emplace_back(line, std::move(message));
  }
  void throw_if_any() {
    if (items_.empty()) return;
    std::stable_sort(items_.begin(), items_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string text;
    for (const auto& [line, message] : items_) {
      if (!text.empty()) text += '\n';
      text += message;
    }
    throw ConfigError(text);
  }

 private:
  std::vector<std::pair<std::uint32_t, std::string>> items_;
};

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::string: return "string";
    case Kind::integer: return "integer";
    case Kind::floating: return "float";
    case Kind::boolean: return "boolean";
    case Kind::string_list: return "array of strings";
    case Kind::float_or_false: return "float or false";
  }
  return "?";
}

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
  }
  return "?";
}

// What a value is, for "expected X, got Y": arrays say what they hold when that is not strings.
std::string describe(const toml::node& node) {
  if (const toml::array* array = node.as_array()) {
    for (const toml::node& element : *array) {
      if (!element.is_string()) return "array containing " + std::string(type_name(element.type()));
    }
    return array->empty() ? "empty array" : "array of strings";
  }
  return std::string(type_name(node.type()));
}

// `node` as a value of `kind`, or nullopt when its type does not fit (an integer fits a float).
std::optional<Value> convert(const toml::node& node, Kind kind) {
  switch (kind) {
    case Kind::string:
      if (const auto* s = node.as_string()) return Value{s->get()};
      break;
    case Kind::integer:
      if (const auto* i = node.as_integer()) return Value{i->get()};
      break;
    case Kind::floating:
      if (const auto* f = node.as_floating_point()) return Value{f->get()};
      if (const auto* i = node.as_integer()) return Value{static_cast<double>(i->get())};
      break;
    case Kind::float_or_false:
      if (const auto* b = node.as_boolean(); b != nullptr && !b->get()) return Value{false};
      return convert(node, Kind::floating);
    case Kind::boolean:
      if (const auto* b = node.as_boolean()) return Value{b->get()};
      break;
    case Kind::string_list:
      if (const auto* array = node.as_array()) {
        std::vector<std::string> items;
        for (const toml::node& element : *array) {
          const auto* s = element.as_string();
          if (s == nullptr) return std::nullopt;
          items.push_back(s->get());
        }
        return Value{std::move(items)};
      }
      break;
  }
  return std::nullopt;
}

// Optimal string alignment distance: insertions, deletions, substitutions and transpositions.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The candidate closest to `typed`, if close enough to be a plausible typo.
std::optional<std::string> closest(std::string_view typed, const std::vector<std::string>& candidates) {
  const std::size_t limit = std::max<std::size_t>(2, typed.size() / 4);
  std::optional<std::string> best;
  std::size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    const std::size_t distance = edit_distance(typed, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

std::string did_you_mean(const std::optional<std::string>& suggestion) {
  return suggestion ? " (did you mean '" + *suggestion + "'?)" : std::string();
}

// "file:line" when the line is known, else "file".
std::string where(std::string_view source, std::uint32_t line) {
  std::string text(source);
  if (line > 0) text += ":" + std::to_string(line);
  return text;
}

std::uint32_t line_of(const toml::key& key, const toml::node& node) {
  if (key.source().begin.line > 0) return key.source().begin.line;
  return node.source().begin.line;
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789ABCDEF";
          const auto u = static_cast<unsigned char>(c);
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string format_double(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string text(buffer, ec == std::errc() ? end : buffer);
  // TOML tells floats from integers by a fraction or an exponent.
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

std::string format_value(const Value& value) {
  struct Formatter {
    std::string operator()(const std::string& s) const { return quote(s); }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return format_double(d); }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(const std::vector<std::string>& items) const {
      std::string out = "[";
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += ", ";
        out += quote(items[i]);
      }
      return out + "]";
    }
  };
  return std::visit(Formatter{}, value);
}

// "LOCAL_CLUSTER" -> "local-cluster".
std::string env_name_to_key(std::string_view name) {
  std::string key(name);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    } else if (c == '_') {
      c = '-';
    }
  }
  return key;
}

// Parses `text` as a single TOML value; nullopt when it is not one.
std::optional<toml::table> parse_single_value(std::string_view text) {
  std::string document = "v = ";
  document += text;
  try {
    toml::table table = toml::parse(document);
    if (table.size() == 1 && table.contains("v")) return table;
  } catch (const toml::parse_error&) {
    // Not a TOML value: the caller takes it as text.
  }
  return std::nullopt;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    vars.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  return vars;
}

std::string read_file(const std::string& path) {
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                             &std::fclose);
  if (!file) {
    throw ConfigError(path + ": cannot open config file: " +
                      std::error_code(errno, std::generic_category()).message());
  }
  std::string text;
  char buffer[8192];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, n);
  if (std::ferror(file.get()) != 0) {
    throw ConfigError(path + ": cannot read config file: " +
                      std::error_code(errno, std::generic_category()).message());
  }
  return text;
}

toml::table parse_document(std::string_view text, std::string_view source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    throw ConfigError(std::string(source) + ":" + std::to_string(at.line) + ":" +
                      std::to_string(at.column) + ": TOML syntax error: " +
                      std::string(e.description()));
  }
}

}  // namespace

struct Config::Impl {
  std::vector<std::string> sections;  // in the order of the defaults file
  std::vector<Entry> entries;         // grouped by section, in the order of the defaults file

  // The defaults, parsed once. Throws ConfigError if the compiled-in file is not a valid schema.
  static const Impl& builtin() {
    static const Impl impl = from_defaults(kDefaultsToml);
    return impl;
  }

  static Impl from_defaults(std::string_view text) {
    const toml::table root = parse_document(text, kDefaultsSource);
    struct Placed {
      std::uint32_t section_line;
      std::uint32_t line;
      Entry entry;
    };
    std::vector<std::pair<std::uint32_t, std::string>> sections;
    std::vector<Placed> placed;
    for (auto&& [name, node] : root) {
      const toml::table* table = node.as_table();
      const std::string section(name.str());
      if (table == nullptr) {
        throw ConfigError(where(kDefaultsSource, line_of(name, node)) + ": '" + section +
                          "' is not a section");
      }
      const std::uint32_t section_line = line_of(name, node);
      sections.emplace_back(section_line, section);
      for (auto&& [key, value] : *table) {
        const std::string dotted = section + "." + std::string(key.str());
        std::optional<Kind> kind;
        // Integer comes before float: an integer default makes an integer setting.
        for (const Kind k : {Kind::string, Kind::integer, Kind::floating, Kind::boolean,
                             Kind::string_list}) {
          if (convert(value, k)) {
            kind = k;
            break;
          }
        }
        if (!kind) {
          throw ConfigError(where(kDefaultsSource, line_of(key, value)) + ": '" + dotted +
                            "' has unsupported type " + describe(value));
        }
        if (*kind == Kind::floating &&
            std::find(std::begin(kFloatOrFalse), std::end(kFloatOrFalse), dotted) !=
                std::end(kFloatOrFalse)) {
          kind = Kind::float_or_false;
        }
        placed.push_back({section_line, line_of(key, value),
                          Entry{section, std::string(key.str()), dotted, *kind,
                                *convert(value, *kind)}});
      }
    }
    std::sort(sections.begin(), sections.end());
    std::sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
      return std::pair(a.section_line, a.line) < std::pair(b.section_line, b.line);
    });
    Impl impl;
    for (auto& [line, section] : sections) impl.sections.push_back(std::move(section));
    for (Placed& p : placed) impl.entries.push_back(std::move(p.entry));
    return impl;
  }

  std::optional<std::size_t> find(std::string_view dotted) const {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].dotted == dotted) return i;
    }
    return std::nullopt;
  }

  bool has_section(std::string_view section) const {
    return std::find(sections.begin(), sections.end(), section) != sections.end();
  }

  // The known key `dotted` most likely meant: a close spelling, else the same key name in
  // another section (a key put in the wrong section, or outside any section).
  std::optional<std::string> suggest_key(std::string_view dotted) const {
    std::vector<std::string> names;
    for (const Entry& e : entries) names.push_back(e.dotted);
    if (auto close = closest(dotted, names)) return close;
    const auto dot = dotted.rfind('.');
    const std::string_view key = dot == std::string_view::npos ? dotted : dotted.substr(dot + 1);
    for (const Entry& e : entries) {
      if (e.key == key) return e.dotted;
    }
    return std::nullopt;
  }

  std::string unknown_key(std::string_view dotted) const {
    return "unknown key '" + std::string(dotted) + "'" + did_you_mean(suggest_key(dotted));
  }

  static std::string wrong_type(std::string_view dotted, Kind expected, std::string_view got) {
    return "wrong type for '" + std::string(dotted) + "': expected " +
           std::string(kind_name(expected)) + ", got " + std::string(got);
  }

  // Checks a parsed document against the schema; throws ConfigError listing every problem.
  std::vector<Update> check_document(const toml::table& root, std::string_view source) const {
    Problems problems;
    std::vector<Update> updates;
    for (auto&& [name, node] : root) {
      const std::string section(name.str());
      const std::uint32_t line = line_of(name, node);
      const std::string at = where(source, line) + ": ";
      if (!has_section(section)) {
        if (node.is_table()) {
          problems.add(line, at + "unknown section '" + section + "'" +
                                 did_you_mean(closest(section, sections)));
        } else {
          problems.add(line, at + unknown_key(section));
        }
        continue;
      }
      const toml::table* table = node.as_table();
      if (table == nullptr) {
        problems.add(line, at + "'" + section + "' must be a section (table), got " +
                               describe(node));
        continue;
      }
      for (auto&& [key, value] : *table) {
        const std::string dotted = section + "." + std::string(key.str());
        const std::uint32_t key_line = line_of(key, value);
        const std::string key_at = where(source, key_line) + ": ";
        const auto index = find(dotted);
        if (!index) {
          if (value.is_table()) {
            problems.add(key_line, key_at + "unknown key '" + dotted +
                                       "': nested tables are not allowed, a section holds only "
                                       "key = value pairs");
          } else {
            problems.add(key_line, key_at + unknown_key(dotted));
          }
          continue;
        }
        const Entry& entry = entries[*index];
        auto converted = convert(value, entry.kind);
        if (!converted) {
          problems.add(key_line, key_at + wrong_type(dotted, entry.kind, describe(value)));
          continue;
        }
        updates.push_back({*index, std::move(*converted)});
      }
    }
    problems.throw_if_any();
    return updates;
  }

  // A value for `entry` from text given in the environment or on the command line. String
  // settings take the text as is when `raw_strings`, else a TOML string if it is one, else the
  // text as is. Other settings parse it as TOML. Returns the error message on a type mismatch.
  static std::variant<Value, std::string> value_from_text(const Entry& entry, std::string_view text,
                                                          bool raw_strings) {
    if (entry.kind == Kind::string && raw_strings) return Value{std::string(text)};
    const std::optional<toml::table> parsed = parse_single_value(text);
    const toml::node* node = parsed ? parsed->get("v") : nullptr;
    if (entry.kind == Kind::string) {
      if (node != nullptr && node->is_string()) return Value{node->as_string()->get()};
      return Value{std::string(text)};
    }
    if (node != nullptr) {
      if (auto converted = convert(*node, entry.kind)) return std::move(*converted);
    }
    const std::string got = node != nullptr ? describe(*node) : "string";
    return wrong_type(entry.dotted, entry.kind, got) + " (value '" + std::string(text) + "')";
  }

  void apply(std::vector<Update>& updates) {
    for (Update& u : updates) entries[u.index].value = std::move(u.value);
  }

  const Entry& get(std::string_view dotted, Kind wanted) const {
    const auto index = find(dotted);
    if (!index) throw ConfigError("config: " + unknown_key(dotted));
    const Entry& entry = entries[*index];
    const bool fits =
        entry.kind == wanted || (wanted == Kind::floating && entry.kind == Kind::integer);
    if (!fits) {
      throw ConfigError("config: '" + entry.dotted + "' is a " +
                        std::string(kind_name(entry.kind)) + " setting, read as " +
                        std::string(kind_name(wanted)));
    }
    return entry;
  }
};

Config::Config() : impl_(std::make_unique<Impl>()) {}
Config::Config(const Config& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Config& Config::operator=(const Config& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
Config::Config(Config&&) noexcept = default;
Config& Config::operator=(Config&&) noexcept = default;
Config::~Config() = default;

Config Config::defaults() {
  Config config;
  *config.impl_ = Impl::builtin();
  return config;
}

Config Config::load(const std::optional<std::string>& explicit_file,
                    const std::optional<std::map<std::string, std::string>>& env) {
  const std::map<std::string, std::string> vars = env ? *env : process_environment();
  const auto var = [&vars](const char* name) {
    const auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  };
  const auto merge_if_present = [](Config& config, const std::string& path) {
    std::error_code ec;
    // A missing file is skipped; one that exists but cannot be read is reported by merge_file.
    if (!std::filesystem::exists(path, ec) && !ec) return;
    config.merge_file(path);
  };

  Config config = defaults();
  merge_if_present(config, std::string(kSystemFile));
  if (const std::string xdg = var("XDG_CONFIG_HOME"); !xdg.empty()) {
    merge_if_present(config, xdg + "/plexus/plexus.toml");
  } else if (const std::string home = var("HOME"); !home.empty()) {
    merge_if_present(config, home + "/.config/plexus/plexus.toml");
  }
  if (const std::string named = var("PLEXUS_CONFIG"); !named.empty()) config.merge_file(named);
  if (explicit_file) config.merge_file(*explicit_file);
  config.apply_env(vars);
  return config;
}

void Config::merge_file(const std::string& path) { merge_string(read_file(path), path); }

void Config::merge_string(std::string_view toml, std::string_view source) {
  const toml::table root = parse_document(toml, source);
  std::vector<Update> updates = impl_->check_document(root, source);
  impl_->apply(updates);
}

void Config::apply_env(const std::map<std::string, std::string>& env) {
  Problems problems;
  std::vector<Update> updates;
  for (const auto& [name, text] : env) {
    if (!name.starts_with(kEnvPrefix)) continue;
    const std::string at = "environment variable " + name + ": ";
    const std::string_view rest = std::string_view(name).substr(kEnvPrefix.size());
    const auto separator = rest.find("__");
    if (separator == std::string_view::npos || separator == 0 || separator + 2 == rest.size() ||
        rest.find("__", separator + 2) != std::string_view::npos) {
      problems.add(0, at + "expected the form PLEXUS__SECTION__KEY");
      continue;
    }
    const std::string dotted = env_name_to_key(rest.substr(0, separator)) + "." +
                               env_name_to_key(rest.substr(separator + 2));
    const auto index = impl_->find(dotted);
    if (!index) {
      problems.add(0, at + impl_->unknown_key(dotted));
      continue;
    }
    auto value = Impl::value_from_text(impl_->entries[*index], text, /*raw_strings=*/false);
    if (auto* error = std::get_if<std::string>(&value)) {
      problems.add(0, at + *error);
      continue;
    }
    updates.push_back({*index, std::get<Value>(std::move(value))});
  }
  problems.throw_if_any();
  impl_->apply(updates);
}

void Config::set(std::string_view dotted_key, std::string_view value) {
  const std::string at = std::string(kFlagSource) + ": ";
  const auto index = impl_->find(dotted_key);
  if (!index) throw ConfigError(at + impl_->unknown_key(dotted_key));
  auto parsed = Impl::value_from_text(impl_->entries[*index], value, /*raw_strings=*/true);
  if (auto* error = std::get_if<std::string>(&parsed)) throw ConfigError(at + *error);
  impl_->entries[*index].value = std::get<Value>(std::move(parsed));
}

std::string Config::get_string(std::string_view dotted_key) const {
  return std::get<std::string>(impl_->get(dotted_key, Kind::string).value);
}

std::int64_t Config::get_int(std::string_view dotted_key) const {
  return std::get<std::int64_t>(impl_->get(dotted_key, Kind::integer).value);
}

double Config::get_double(std::string_view dotted_key) const {
  const Entry& entry = impl_->get(dotted_key, Kind::floating);
  if (const auto* i = std::get_if<std::int64_t>(&entry.value)) return static_cast<double>(*i);
  return std::get<double>(entry.value);
}

std::optional<double> Config::get_double_or_false(std::string_view dotted_key) const {
  const auto index = impl_->find(dotted_key);
  if (index && impl_->entries[*index].kind == Kind::float_or_false) {
    const Value& value = impl_->entries[*index].value;
    if (std::holds_alternative<bool>(value)) return std::nullopt;
    return std::get<double>(value);
  }
  return get_double(dotted_key);
}

bool Config::get_bool(std::string_view dotted_key) const {
  return std::get<bool>(impl_->get(dotted_key, Kind::boolean).value);
}

std::vector<std::string> Config::get_string_list(std::string_view dotted_key) const {
  return std::get<std::vector<std::string>>(impl_->get(dotted_key, Kind::string_list).value);
}

std::string Config::dump() const {
  std::string out;
  for (const std::string& section : impl_->sections) {
    if (!out.empty()) out += '\n';
    out += "[" + section + "]\n";
    for (const Entry& entry : impl_->entries) {
      if (entry.section == section) out += entry.key + " = " + format_value(entry.value) + "\n";
    }
  }
  return out;
}

}  // namespace plexus::config
