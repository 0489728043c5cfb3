// Values on the wire: how task arguments and results are encoded.
//
// The encoding is self-describing (every value starts with a one-byte tag), compact (integers are
// varints) and stable across machines (little-endian, no padding), so that the same call gives the
// same bytes, and therefore the same task key, everywhere. A value encoded by one type can be
// decoded by another compatible one (an int32 into an int64, an integer into a double), and a
// mismatch is reported as "expected int32, received string" rather than undefined behaviour.
//
//   plexus::Writer w;
//   plexus::encode(w, std::vector<int>{1, 2, 3});
//   auto v = plexus::decode<std::vector<long>>(w.view());
//
// User types join by specializing plexus::codec<T> with three static members:
//
//   template <> struct plexus::codec<Point> {
//     static std::string type_name() { return "Point"; }
//     static void encode(plexus::Writer& w, const Point& p) {
//       w.list(2); plexus::encode(w, p.x); plexus::encode(w, p.y);
//     }
//     static Point decode(plexus::Reader& r) {
//       r.expect_list(2, "Point");
//       Point p; p.x = plexus::decode<double>(r); p.y = plexus::decode<double>(r); return p;
//     }
//   };
//
// Thread safety: Writer and Reader are plain values; use one per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace plexus {

/// The tag byte that starts every encoded value.
enum class Tag : std::uint8_t {
  null = 0,
  false_ = 1,
  true_ = 2,
  integer = 3,   // zigzag varint, int64 range
  uinteger = 4,  // varint, used only above INT64_MAX
  float64 = 5,   // 8 bytes, IEEE-754, little-endian
  string = 6,    // varint length + UTF-8 bytes
  bytes = 7,     // varint length + raw bytes
  list = 8,      // varint count + items
  map = 9,       // varint count + key, value pairs
  ref = 10,      // varint length + task key: a future, replaced by its value before the call
};

/// Human name of what a tag holds, as used in error messages ("received string").
inline const char* tag_name(Tag tag) {
  switch (tag) {
    case Tag::null: return "null";
    case Tag::false_:
    case Tag::true_: return "bool";
    case Tag::integer:
    case Tag::uinteger: return "integer";
    case Tag::float64: return "float";
    case Tag::string: return "string";
    case Tag::bytes: return "bytes";
    case Tag::list: return "list";
    case Tag::map: return "map";
    case Tag::ref: return "future";
  }
  return "invalid value";
}

/// Thrown when bytes cannot be decoded as the requested type, or are malformed.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A byte buffer that travels as raw bytes (not as a list of integers).
using Bytes = std::vector<std::byte>;
/// The same bytes read in place: a task parameter of this type sees its argument without a copy
/// (a 100 MB input costs nothing to decode). Valid for the duration of the task call only.
using BytesView = std::span<const std::byte>;

/// Appends encoded values to a byte string.
class Writer {
 public:
  void null() { put(Tag::null); }
  void boolean(bool v) { put(v ? Tag::true_ : Tag::false_); }
  void integer(std::int64_t v) {
    put(Tag::integer);
    varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void uinteger(std::uint64_t v) {
    if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      integer(static_cast<std::int64_t>(v));
    } else {
      put(Tag::uinteger);
      varint(v);
    }
  }
  void float64(double v) {
    put(Tag::float64);
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 8; ++i) buf_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  }
  void string(std::string_view s) { sized(Tag::string, s.data(), s.size()); }
  void bytes(const void* data, std::size_t size) { sized(Tag::bytes, data, size); }
  /// Starts a list of `count` items; encode exactly that many values next.
  void list(std::size_t count) { put(Tag::list); varint(count); }
  /// Starts a map of `count` entries; encode key, value, key, value... next.
  void map(std::size_t count) { put(Tag::map); varint(count); }
  /// A reference to another task's result, by key. The key is also recorded in refs().
  void ref(std::string_view key) {
    sized(Tag::ref, key.data(), key.size());
    refs_.emplace_back(key);
  }
  /// Reserves room for `bytes` more bytes (avoids regrowth when the total size is known).
  void reserve(std::size_t bytes) { buf_.reserve(buf_.size() + bytes); }
  /// Appends an already encoded value verbatim.
  void raw(std::string_view encoded) { buf_.append(encoded); }

  const std::string& buffer() const { return buf_; }
  std::string take() { return std::move(buf_); }
  std::string_view view() const { return buf_; }
  /// Keys of the futures encoded so far, in order of appearance (may repeat).
  const std::vector<std::string>& refs() const { return refs_; }
  std::vector<std::string> take_refs() { return std::move(refs_); }

  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }

 private:
  void put(Tag t) { buf_.push_back(static_cast<char>(t)); }
  void sized(Tag t, const void* data, std::size_t size) {
    put(t);
    varint(size);
    buf_.append(static_cast<const char*>(data), size);
  }

  std::string buf_;
  std::vector<std::string> refs_;
};

/// Where a Reader finds the value a future reference names: `resolve` sets `value` to the encoded
/// value of `key` (which must stay valid while the Reader is used) and returns false if unknown.
struct RefSource {
  void* context = nullptr;
  bool (*resolve)(void* context, std::string_view key, std::string_view* value) = nullptr;
};

/// Reads encoded values from a byte range it does not own. Every read checks bounds and tags and
/// throws DecodeError with what was expected and what was found.
///
/// Given a RefSource, a future reference is read as the value it names, in place: the reader
/// continues in that value's bytes and comes back after it (so a task reads a 100 MB dependency
/// without anything copying it into its argument list).
class Reader {
 public:
  Reader(const void* data, std::size_t size, const RefSource* refs = nullptr)
      : p_(static_cast<const std::uint8_t*>(data)), end_(p_ + size), refs_(refs) {}
  explicit Reader(std::string_view s, const RefSource* refs = nullptr)
      : Reader(s.data(), s.size(), refs) {}

  bool at_end() const {
    if (p_ != end_) return false;
    for (const Frame& f : outer_) {
      if (f.p != f.end) return false;
    }
    return true;
  }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  const std::uint8_t* position() const { return p_; }

  /// The tag of the next value, without consuming it. With a RefSource, a reference is followed
  /// and the tag is that of the value it names.
  Tag peek() {
    while (p_ == end_ && !outer_.empty()) leave();
    if (p_ == end_) throw DecodeError("truncated value: expected more bytes");
    if (*p_ > static_cast<std::uint8_t>(Tag::ref)) {
      throw DecodeError("invalid value tag " + std::to_string(*p_));
    }
    if (*p_ == static_cast<std::uint8_t>(Tag::ref) && refs_) {
      follow();
      return peek();
    }
    return static_cast<Tag>(*p_);
  }

  void read_null(const char* expected = "null") {
    check(Tag::null, expected);
  }
  bool read_bool(const char* expected = "bool") {
    Tag t = peek();
    if (t != Tag::true_ && t != Tag::false_) mismatch(expected, t);
    ++p_;
    return t == Tag::true_;
  }
  /// Reads an integer; `expected` names the C++ type for errors.
  std::int64_t read_int(const char* expected = "int64") {
    Tag t = peek();
    if (t == Tag::uinteger) {
      throw DecodeError(std::string("expected ") + expected + ", received integer out of range");
    }
    check(Tag::integer, expected);
    std::uint64_t z = varint();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  std::uint64_t read_uint(const char* expected = "uint64") {
    Tag t = peek();
    if (t == Tag::uinteger) {
      ++p_;
      return varint();
    }
    std::int64_t v = read_int(expected);
    if (v < 0) {
      throw DecodeError(std::string("expected ") + expected + ", received negative integer " +
                        std::to_string(v));
    }
    return static_cast<std::uint64_t>(v);
  }
  /// Reads a float; an integer is accepted and converted.
  double read_float(const char* expected = "float64") {
    Tag t = peek();
    if (t == Tag::integer) return static_cast<double>(read_int(expected));
    if (t == Tag::uinteger) return static_cast<double>(read_uint(expected));
    check(Tag::float64, expected);
    need(8);
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits |= static_cast<std::uint64_t>(p_[i]) << (8 * i);
    p_ += 8;
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  std::string_view read_string(const char* expected = "string") {
    check(Tag::string, expected);
    return sized();
  }
  std::string_view read_bytes(const char* expected = "bytes") {
    check(Tag::bytes, expected);
    return sized();
  }
  std::string_view read_ref() {
    check(Tag::ref, "future");
    return sized();
  }
  std::size_t read_list(const char* expected = "list") {
    check(Tag::list, expected);
    return count();
  }
  std::size_t read_map(const char* expected = "map") {
    check(Tag::map, expected);
    return count();
  }
  /// Reads a list header and checks that it has exactly `n` items.
  void expect_list(std::size_t n, const char* expected) {
    std::size_t got = read_list(expected);
    if (got != n) {
      throw DecodeError(std::string("expected ") + expected + " (a list of " + std::to_string(n) +
                        "), received a list of " + std::to_string(got));
    }
  }
  /// Skips one whole value, checking its structure.
  void skip(int depth = 0) {
    if (depth > kMaxDepth) throw DecodeError("value nested deeper than 64 levels");
    switch (peek()) {
      case Tag::null:
      case Tag::false_:
      case Tag::true_: ++p_; return;
      case Tag::integer:
      case Tag::uinteger: ++p_; varint(); return;
      case Tag::float64: ++p_; need(8); p_ += 8; return;
      case Tag::string:
      case Tag::bytes:
      case Tag::ref: ++p_; sized(); return;
      case Tag::list: {
        ++p_;
        std::size_t n = count();
        for (std::size_t i = 0; i < n; ++i) skip(depth + 1);
        return;
      }
      case Tag::map: {
        ++p_;
        std::size_t n = count();
        for (std::size_t i = 0; i < 2 * n; ++i) skip(depth + 1);
        return;
      }
    }
  }

  [[noreturn]] static void mismatch(const char* expected, Tag got) {
    throw DecodeError(std::string("expected ") + expected + ", received " + tag_name(got));
  }

  static constexpr int kMaxDepth = 64;

 private:
  void check(Tag want, const char* expected) {
    Tag t = peek();
    if (t != want) mismatch(expected, t);
    ++p_;
  }
  void need(std::size_t n) const {
    if (remaining() < n) throw DecodeError("truncated value: expected more bytes");
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      std::uint8_t b = *p_++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw DecodeError("malformed varint");
  }
  std::size_t count() {
    std::uint64_t n = varint();
    // Every item takes at least one byte: a count beyond the remaining bytes is malformed.
    if (n > remaining()) throw DecodeError("truncated value: count exceeds the bytes left");
    return static_cast<std::size_t>(n);
  }
  std::string_view sized() {
    std::uint64_t n = varint();
    need(n);
    std::string_view s(reinterpret_cast<const char*>(p_), static_cast<std::size_t>(n));
    p_ += n;
    return s;
  }

  struct Frame {
    const std::uint8_t* p;
    const std::uint8_t* end;
  };
  // Continues in the value a reference names, remembering where to come back.
  void follow() {
    ++p_;
    std::string_view key = sized();
    if (outer_.size() >= kMaxDepth) throw DecodeError("references nested deeper than 64 levels");
    std::string_view value;
    if (!refs_->resolve || !refs_->resolve(refs_->context, key, &value)) {
      throw DecodeError("argument refers to unknown future '" + std::string(key) + "'");
    }
    if (value.empty()) throw DecodeError("future '" + std::string(key) + "' has an empty value");
    outer_.push_back({p_, end_});
    p_ = reinterpret_cast<const std::uint8_t*>(value.data());
    end_ = p_ + value.size();
  }
  void leave() {
    p_ = outer_.back().p;
    end_ = outer_.back().end;
    outer_.pop_back();
  }

  const std::uint8_t* p_;
  const std::uint8_t* end_;
  const RefSource* refs_ = nullptr;
  std::vector<Frame> outer_;  // where to continue after each followed reference
};

/// The customization point: specialize for user types (see the top of this file).
template <class T, class Enable = void>
struct codec {
  static_assert(sizeof(T) == 0,
                "no plexus::codec<T> for this type: specialize plexus::codec<T> with type_name(), "
                "encode(Writer&, const T&) and decode(Reader&)");
};

template <class T>
void encode(Writer& w, const T& v) {
  codec<T>::encode(w, v);
}
template <class T>
T decode(Reader& r) {
  return codec<T>::decode(r);
}
/// Decodes one whole value and checks that nothing follows it.
template <class T>
T decode(std::string_view bytes) {
  Reader r(bytes);
  T v = codec<T>::decode(r);
  if (!r.at_end()) throw DecodeError("trailing bytes after the value");
  return v;
}
template <class T>
std::string encode_to_string(const T& v) {
  Writer w;
  codec<T>::encode(w, v);
  return w.take();
}
template <class T>
std::string type_name() {
  return codec<T>::type_name();
}

namespace detail {
// Prefixes an element's position to a decode error raised inside a container.
template <class F>
auto at(const std::string& where, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const DecodeError& e) {
    throw DecodeError(where + ": " + e.what());
  }
}
}  // namespace detail

/// An already encoded value, passed through untouched: for programs that do not know a task's
/// types at compile time (the command line). Decoding captures the next whole value's bytes.
struct Encoded {
  std::string bytes;
};

template <>
struct codec<Encoded> {
  static std::string type_name() { return "any"; }
  static void encode(Writer& w, const Encoded& v) { w.raw(v.bytes); }
  static Encoded decode(Reader& r) {
    const auto* start = r.position();
    r.skip();
    return Encoded{std::string(reinterpret_cast<const char*>(start),
                               static_cast<std::size_t>(r.position() - start))};
  }
};

template <>
struct codec<bool> {
  static std::string type_name() { return "bool"; }
  static void encode(Writer& w, bool v) { w.boolean(v); }
  static bool decode(Reader& r) { return r.read_bool(); }
};

template <class T>
struct codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static std::string type_name() {
    return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
  }
  static void encode(Writer& w, T v) {
    if constexpr (std::is_signed_v<T>) {
      w.integer(static_cast<std::int64_t>(v));
    } else {
      w.uinteger(static_cast<std::uint64_t>(v));
    }
  }
  static T decode(Reader& r) {
    static const std::string name = type_name();
    if constexpr (std::is_signed_v<T>) {
      std::int64_t v = r.read_int(name.c_str());
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
        throw DecodeError("expected " + name + ", received " + std::to_string(v) +
                          " (out of range)");
      }
      return static_cast<T>(v);
    } else {
      std::uint64_t v = r.read_uint(name.c_str());
      if (v > std::numeric_limits<T>::max()) {
        throw DecodeError("expected " + name + ", received " + std::to_string(v) +
                          " (out of range)");
      }
      return static_cast<T>(v);
    }
  }
};

template <class T>
struct codec<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static std::string type_name() { return sizeof(T) == 4 ? "float32" : "float64"; }
  static void encode(Writer& w, T v) { w.float64(static_cast<double>(v)); }
  static T decode(Reader& r) {
    return static_cast<T>(r.read_float(sizeof(T) == 4 ? "float32" : "float64"));
  }
};

template <class T>
struct codec<T, std::enable_if_t<std::is_enum_v<T>>> {
  using U = std::underlying_type_t<T>;
  static std::string type_name() { return codec<U>::type_name(); }
  static void encode(Writer& w, T v) { codec<U>::encode(w, static_cast<U>(v)); }
  static T decode(Reader& r) { return static_cast<T>(codec<U>::decode(r)); }
};

template <>
struct codec<std::string> {
  static std::string type_name() { return "string"; }
  static void encode(Writer& w, const std::string& v) { w.string(v); }
  static std::string decode(Reader& r) { return std::string(r.read_string()); }
};

// A view decodes into the encoded buffer: valid while that buffer lives (for a task, the call).
template <>
struct codec<std::string_view> {
  static std::string type_name() { return "string"; }
  static void encode(Writer& w, std::string_view v) { w.string(v); }
  static std::string_view decode(Reader& r) { return r.read_string(); }
};

// String literals and C strings encode as strings (arguments only; nothing decodes to a pointer).
template <>
struct codec<const char*> {
  static std::string type_name() { return "string"; }
  static void encode(Writer& w, const char* v) { w.string(v); }
};
// A literal reaches encode() as an array (encode(w, "abc") deduces char[4]); read up to its '\0'.
template <std::size_t N>
struct codec<char[N]> {
  static std::string type_name() { return "string"; }
  static void encode(Writer& w, const char (&v)[N]) {
    std::string_view s(v, N);
    w.string(s.substr(0, s.find('\0')));
  }
};

template <>
struct codec<std::nullptr_t> {
  static std::string type_name() { return "null"; }
  static void encode(Writer& w, std::nullptr_t) { w.null(); }
  static std::nullptr_t decode(Reader& r) {
    r.read_null();
    return nullptr;
  }
};

// Byte buffers: std::vector<std::byte> (plexus::Bytes) and std::vector<std::uint8_t>.
template <class B>
struct codec<std::vector<B>, std::enable_if_t<std::is_same_v<B, std::byte> ||
                                               std::is_same_v<B, std::uint8_t>>> {
  static std::string type_name() { return "bytes"; }
  static void encode(Writer& w, const std::vector<B>& v) { w.bytes(v.data(), v.size()); }
  static std::vector<B> decode(Reader& r) {
    std::string_view s = r.read_bytes();
    std::vector<B> out(s.size());
    if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
    return out;
  }
};

// Byte views (plexus::BytesView, std::span<const std::uint8_t>): decoded in place, pointing into
// the buffer being read, so they live only as long as it does.
template <class B>
struct codec<std::span<const B>, std::enable_if_t<std::is_same_v<B, std::byte> ||
                                                  std::is_same_v<B, std::uint8_t>>> {
  static std::string type_name() { return "bytes"; }
  static void encode(Writer& w, std::span<const B> v) { w.bytes(v.data(), v.size()); }
  static std::span<const B> decode(Reader& r) {
    std::string_view s = r.read_bytes();
    return {reinterpret_cast<const B*>(s.data()), s.size()};
  }
};

template <class T, class A>
struct codec<std::vector<T, A>, std::enable_if_t<!std::is_same_v<T, std::byte> &&
                                                  !std::is_same_v<T, std::uint8_t>>> {
  static std::string type_name() { return "list<" + codec<T>::type_name() + ">"; }
  static void encode(Writer& w, const std::vector<T, A>& v) {
    w.list(v.size());
    for (const auto& x : v) codec<T>::encode(w, x);
  }
  static std::vector<T, A> decode(Reader& r) {
    static const std::string name = type_name();
    std::size_t n = r.read_list(name.c_str());
    std::vector<T, A> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(detail::at("[" + std::to_string(i) + "]", [&] { return codec<T>::decode(r); }));
    }
    return out;
  }
};

template <class T, class C, class A>
struct codec<std::set<T, C, A>> {
  static std::string type_name() { return "set<" + codec<T>::type_name() + ">"; }
  static void encode(Writer& w, const std::set<T, C, A>& v) {
    w.list(v.size());
    for (const auto& x : v) codec<T>::encode(w, x);
  }
  static std::set<T, C, A> decode(Reader& r) {
    static const std::string name = type_name();
    std::size_t n = r.read_list(name.c_str());
    std::set<T, C, A> out;
    for (std::size_t i = 0; i < n; ++i) {
      out.insert(detail::at("[" + std::to_string(i) + "]", [&] { return codec<T>::decode(r); }));
    }
    return out;
  }
};

namespace detail {
template <class M, class K, class V>
struct map_codec {
  static std::string type_name() {
    return "map<" + codec<K>::type_name() + ", " + codec<V>::type_name() + ">";
  }
  static void encode(Writer& w, const M& m) {
    w.map(m.size());
    for (const auto& [k, v] : m) {
      codec<K>::encode(w, k);
      codec<V>::encode(w, v);
    }
  }
  static M decode(Reader& r) {
    static const std::string name = type_name();
    std::size_t n = r.read_map(name.c_str());
    M out;
    for (std::size_t i = 0; i < n; ++i) {
      K k = at("key " + std::to_string(i), [&] { return codec<K>::decode(r); });
      V v = at("value " + std::to_string(i), [&] { return codec<V>::decode(r); });
      out.emplace(std::move(k), std::move(v));
    }
    return out;
  }
};
}  // namespace detail

template <class K, class V, class C, class A>
struct codec<std::map<K, V, C, A>> : detail::map_codec<std::map<K, V, C, A>, K, V> {};
template <class K, class V, class H, class E, class A>
struct codec<std::unordered_map<K, V, H, E, A>>
    : detail::map_codec<std::unordered_map<K, V, H, E, A>, K, V> {};

template <class T>
struct codec<std::optional<T>> {
  static std::string type_name() { return "optional<" + codec<T>::type_name() + ">"; }
  static void encode(Writer& w, const std::optional<T>& v) {
    if (v) {
      codec<T>::encode(w, *v);
    } else {
      w.null();
    }
  }
  static std::optional<T> decode(Reader& r) {
    if (r.peek() == Tag::null) {
      r.read_null();
      return std::nullopt;
    }
    return codec<T>::decode(r);
  }
};

template <class... T>
struct codec<std::tuple<T...>> {
  static std::string type_name() {
    std::string s = "tuple<";
    std::size_t i = 0;
    ((s += (i++ ? ", " : "") + codec<T>::type_name()), ...);
    return s + ">";
  }
  static void encode(Writer& w, const std::tuple<T...>& v) {
    w.list(sizeof...(T));
    std::apply([&](const auto&... x) { (codec<std::decay_t<decltype(x)>>::encode(w, x), ...); }, v);
  }
  static std::tuple<T...> decode(Reader& r) {
    static const std::string name = type_name();
    r.expect_list(sizeof...(T), name.c_str());
    return decode_items(r, std::index_sequence_for<T...>{});
  }

 private:
  template <std::size_t... I>
  static std::tuple<T...> decode_items(Reader& r, std::index_sequence<I...>) {
    // Braced initialization evaluates left to right, matching the encoding order.
    return std::tuple<T...>{detail::at("[" + std::to_string(I) + "]",
                                       [&] { return codec<T>::decode(r); })...};
  }
};

template <class A, class B>
struct codec<std::pair<A, B>> {
  static std::string type_name() {
    return "pair<" + codec<A>::type_name() + ", " + codec<B>::type_name() + ">";
  }
  static void encode(Writer& w, const std::pair<A, B>& v) {
    w.list(2);
    codec<A>::encode(w, v.first);
    codec<B>::encode(w, v.second);
  }
  static std::pair<A, B> decode(Reader& r) {
    static const std::string name = type_name();
    r.expect_list(2, name.c_str());
    A a = detail::at("[0]", [&] { return codec<A>::decode(r); });
    B b = detail::at("[1]", [&] { return codec<B>::decode(r); });
    return {std::move(a), std::move(b)};
  }
};

}  // namespace plexus
