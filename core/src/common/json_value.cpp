// JSON <-> encoded values. JSON is parsed with nlohmann's SAX interface into an ordered_json tree
// (so that object keys keep the order in which they were written), then encoded; values are
// rendered back to JSON text directly from the Reader, with nlohmann serializing the scalars.
#include <plexus/common/json_value.hpp>

#include <plexus/codec.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace plexus {
namespace {

using Json = nlohmann::ordered_json;

// Containers nested deeper than this are rejected in both directions.
constexpr int kMaxJsonDepth = 64;

constexpr std::string_view kBytesKey = "$bytes";
constexpr std::string_view kFutureKey = "$future";

// ---- base64 (RFC 4648, standard alphabet, with padding) ----

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<std::uint8_t>(in[k]));
  };
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += kBase64Alphabet[(n >> 6) & 63];
    out += kBase64Alphabet[n & 63];
  }
  std::size_t rest = in.size() - i;
  if (rest == 1) {
    std::uint32_t n = byte(i) << 16;
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    std::uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += kBase64Alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

// Value of a base64 digit, or -1.
int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict: the canonical form only (length a multiple of 4, padding only at the end, no
// whitespace, unused bits zero), so that each byte string has exactly one spelling.
std::string base64_decode(std::string_view in) {
  auto fail = [](const std::string& why) -> DecodeError {
    return DecodeError("invalid base64 in {\"$bytes\": ...}: " + why);
  };
  if (in.size() % 4 != 0) {
    throw fail("length " + std::to_string(in.size()) + " is not a multiple of 4");
  }
  std::size_t pad = 0;
  if (!in.empty() && in.back() == '=') pad = in[in.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    bool last = i + 4 == in.size();
    std::size_t digits = last ? 4 - pad : 4;
    std::uint32_t n = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      char c = in[i + k];
      int d = k < digits ? base64_digit(c) : (c == '=' ? 0 : -1);
      if (d < 0) {
        throw fail(std::string("unexpected character '") + c + "' at offset " +
                   std::to_string(i + k));
      }
      n = (n << 6) | static_cast<std::uint32_t>(d);
    }
    out += static_cast<char>((n >> 16) & 0xff);
    if (digits >= 3) out += static_cast<char>((n >> 8) & 0xff);
    if (digits == 4) out += static_cast<char>(n & 0xff);
    if ((digits == 2 && (n & 0xffff) != 0) || (digits == 3 && (n & 0xff) != 0)) {
      throw fail("non-zero padding bits at the end");
    }
  }
  return out;
}

// ---- JSON text -> ordered_json ----

// Builds the tree like nlohmann's own DOM parser, and also: rejects nesting deeper than
// kMaxJsonDepth while parsing (before a hostile input can grow), rejects integer literals outside
// the int64/uint64 range (nlohmann would silently turn them into floats) and rejects duplicate
// object keys (which would otherwise drop data silently). Appends object members through the
// ordered_map's vector base, so that building an object of n keys costs O(n), not O(n^2).
class DomBuilder final : public nlohmann::json_sax<Json> {
 public:
  Json take() { return std::move(root_); }

  bool null() override { return put(Json(nullptr)); }
  bool boolean(bool v) override { return put(Json(v)); }
  bool number_integer(number_integer_t v) override { return put(Json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(Json(v)); }
  bool number_float(number_float_t v, const string_t& lexeme) override {
    if (lexeme.find_first_of(".eE") == string_t::npos) {
      throw DecodeError("integer " + lexeme +
                        " is out of range (integers must fit in int64 or uint64)");
    }
    return put(Json(v));
  }
  bool string(string_t& v) override { return put(Json(std::move(v))); }
  bool binary(binary_t&) override { throw DecodeError("binary values are not JSON"); }
  bool start_object(std::size_t) override { return open(Json::object()); }
  bool key(string_t& k) override {
    Frame& f = stack_.back();
    if (!f.keys.insert(k).second) throw DecodeError("duplicate key \"" + k + "\" in a JSON object");
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t position, const std::string&, const Json::exception& e) override {
    // nlohmann's message starts with "[json.exception.parse_error.101] "; keep what follows.
    std::string_view what = e.what();
    if (auto p = what.find("] "); what.starts_with("[json.exception.") && p != what.npos) {
      what.remove_prefix(p + 2);
    }
    throw DecodeError("invalid JSON at byte " + std::to_string(position) + ": " +
                      std::string(what));
  }

 private:
  struct Frame {
    Json* node;
    std::unordered_set<std::string> keys;  // objects only: the keys seen so far
  };

  // Places `v` in the current container (or as the root) and returns where it now lives.
  Json* place(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json* top = stack_.back().node;
    if (top->is_array()) {
      top->push_back(std::move(v));
      return &top->back();
    }
    auto& members = static_cast<Json::object_t::Container&>(*top->get_ptr<Json::object_t*>());
    members.emplace_back(std::move(key_), std::move(v));
    return &members.back().second;
  }
  bool put(Json v) {
    place(std::move(v));
    return true;
  }
  bool open(Json container) {
    if (stack_.size() >= static_cast<std::size_t>(kMaxJsonDepth)) {
      throw DecodeError("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    Json* node = place(std::move(container));
    stack_.push_back(Frame{node, {}});
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  Json root_;
  // The open containers, innermost last. Pointers stay valid: only the innermost one grows, and
  // it is not an element of itself.
  std::vector<Frame> stack_;
  std::string key_;
};

Json parse_json(std::string_view text) {
  DomBuilder builder;
  Json::sax_parse(text.begin(), text.end(), &builder);
  return builder.take();
}

// ---- ordered_json -> encoded value ----

// The string member of a one-member object {"<key>": "..."}, which must be a string.
const std::string& special_string(const Json& object, std::string_view key) {
  const Json& v = object.begin().value();
  if (!v.is_string()) {
    throw DecodeError("{\"" + std::string(key) + "\": ...} must hold a string, not " +
                      std::string(v.type_name()));
  }
  return v.get_ref<const std::string&>();
}

void encode_json(const Json& j, Writer& w) {
  switch (j.type()) {
    case Json::value_t::null:
      w.null();
      return;
    case Json::value_t::boolean:
      w.boolean(j.get<bool>());
      return;
    case Json::value_t::number_integer:
      w.integer(j.get<std::int64_t>());
      return;
    case Json::value_t::number_unsigned:
      w.uinteger(j.get<std::uint64_t>());
      return;
    case Json::value_t::number_float:
      w.float64(j.get<double>());
      return;
    case Json::value_t::string:
      w.string(j.get_ref<const std::string&>());
      return;
    case Json::value_t::array:
      w.list(j.size());
      for (const Json& item : j) encode_json(item, w);
      return;
    case Json::value_t::object:
      if (j.size() == 1 && j.begin().key() == kBytesKey) {
        std::string bytes = base64_decode(special_string(j, kBytesKey));
        w.bytes(bytes.data(), bytes.size());
        return;
      }
      if (j.size() == 1 && j.begin().key() == kFutureKey) {
        const std::string& key = special_string(j, kFutureKey);
        if (key.empty()) throw DecodeError("{\"$future\": ...} must hold a non-empty task key");
        w.ref(key);
        return;
      }
      w.map(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        w.string(it.key());
        encode_json(it.value(), w);
      }
      return;
    case Json::value_t::binary:
    case Json::value_t::discarded:
      break;
  }
  throw DecodeError(std::string("cannot encode a JSON ") + j.type_name());
}

// ---- encoded value -> JSON text ----

void append_json_string(std::string_view s, std::string& out) {
  // Invalid UTF-8 (possible in a string built by a plugin) becomes U+FFFD rather than an error:
  // this output is for people and logs.
  out += Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

void append_float(double v, std::string& out) {
  if (std::isnan(v)) {
    out += "\"nan\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"inf\"" : "\"-inf\"";
  } else {
    // Shortest text that reads back as the same double, always with a '.' or an exponent
    // ("2.0", "1e+300"), so that a float stays a float.
    out += Json(v).dump();
  }
}

void render(Reader& r, std::string& out, int depth);

void render_container_start(int depth) {
  if (depth >= kMaxJsonDepth) {
    throw DecodeError("value nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
}

void render_map(Reader& r, std::string& out, int depth) {
  std::size_t n = r.read_map();
  // A map renders as an object only if its keys are distinct strings, and it cannot be mistaken
  // for {"$bytes": ...} or {"$future": ...}; otherwise as [[key, value], ...].
  std::vector<std::pair<std::string, std::string>> entries;
  entries.reserve(n);
  std::unordered_set<std::string_view> seen;
  bool as_object = true;
  std::string_view only_key;
  for (std::size_t i = 0; i < n; ++i) {
    std::string key;
    if (r.peek() == Tag::string) {
      std::string_view k = r.read_string();
      if (!seen.insert(k).second) as_object = false;
      only_key = k;
      append_json_string(k, key);
    } else {
      as_object = false;
      render(r, key, depth + 1);
    }
    std::string value;
    render(r, value, depth + 1);
    entries.emplace_back(std::move(key), std::move(value));
  }
  if (n == 1 && (only_key == kBytesKey || only_key == kFutureKey)) as_object = false;
  out += as_object ? '{' : '[';
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    if (as_object) {
      out += entries[i].first;
      out += ':';
      out += entries[i].second;
    } else {
      out += '[';
      out += entries[i].first;
      out += ',';
      out += entries[i].second;
      out += ']';
    }
  }
  out += as_object ? '}' : ']';
}

void render(Reader& r, std::string& out, int depth) {
  switch (r.peek()) {
    case Tag::null:
      r.read_null();
      out += "null";
      return;
    case Tag::false_:
    case Tag::true_:
      out += r.read_bool() ? "true" : "false";
      return;
    case Tag::integer:
      out += std::to_string(r.read_int());
      return;
    case Tag::uinteger:
      out += std::to_string(r.read_uint());
      return;
    case Tag::float64:
      append_float(r.read_float(), out);
      return;
    case Tag::string:
      append_json_string(r.read_string(), out);
      return;
    case Tag::bytes:
      out += "{\"$bytes\":\"";
      out += base64_encode(r.read_bytes());
      out += "\"}";
      return;
    case Tag::ref:
      out += "{\"$future\":";
      append_json_string(r.read_ref(), out);
      out += '}';
      return;
    case Tag::list: {
      render_container_start(depth);
      std::size_t n = r.read_list();
      out += '[';
      for (std::size_t i = 0; i < n; ++i) {
        if (i) out += ',';
        render(r, out, depth + 1);
      }
      out += ']';
      return;
    }
    case Tag::map:
      render_container_start(depth);
      render_map(r, out, depth);
      return;
  }
}

}  // namespace

std::string json_to_value(std::string_view json) {
  Writer w;
  encode_json(parse_json(json), w);
  return w.take();
}

std::string json_args_to_value(const std::string* json_args, std::size_t count) {
  Writer w;
  w.list(count);
  for (std::size_t i = 0; i < count; ++i) {
    try {
      w.raw(json_to_value(json_args[i]));
    } catch (const DecodeError& e) {
      throw DecodeError("argument " + std::to_string(i + 1) + ": " + e.what());
    }
  }
  return w.take();
}

std::string value_to_json(std::string_view encoded) {
  Reader r(encoded);
  std::string out;
  render(r, out, 0);
  if (!r.at_end()) throw DecodeError("trailing bytes after the value");
  return out;
}

}  // namespace plexus
