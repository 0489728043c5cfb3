// The testing plugin: tasks that exercise the worker and the whole cluster in tests (sleeping,
// failing in every way a task can, crashing the process, every kind of value the codec carries,
// and a user type with its own codec). Built into the build tree only; never installed.
#include <plexus/sdk.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace testing_plugin {

/// Thrown by throw_custom, so that tests can check that a plugin's own exception type reaches the
/// client by name.
class CustomError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A user type with its own codec: a list of two floats.
struct Point {
  double x = 0;
  double y = 0;
};

}  // namespace testing_plugin

template <>
struct plexus::codec<testing_plugin::Point> {
  static std::string type_name() { return "Point"; }
  static void encode(plexus::Writer& w, const testing_plugin::Point& p) {
    w.list(2);
    plexus::encode(w, p.x);
    plexus::encode(w, p.y);
  }
  static testing_plugin::Point decode(plexus::Reader& r) {
    r.expect_list(2, "Point");
    testing_plugin::Point p;
    p.x = plexus::decode<double>(r);
    p.y = plexus::decode<double>(r);
    return p;
  }
};

namespace testing_plugin {
namespace {

std::int64_t sleep_ms(std::int64_t ms) {
  if (ms < 0) throw std::invalid_argument("sleep_ms of a negative duration");
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

std::int64_t fail(const std::string& message) { throw std::runtime_error(message); }

std::int64_t throw_custom(const std::string& message) { throw CustomError(message); }

std::int64_t throw_int() { throw 42; }

plexus::Bytes bytes(std::int64_t n) {
  if (n < 0) throw std::invalid_argument("bytes of a negative count");
  plexus::Bytes out(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i % 251);
  return out;
}

std::int64_t bytes_len(const plexus::Bytes& b) { return static_cast<std::int64_t>(b.size()); }

std::uint64_t checksum(const plexus::Bytes& b) {
  std::uint64_t sum = 0;
  for (std::byte x : b) sum += std::to_integer<std::uint64_t>(x);
  return sum;
}

std::string echo(const std::string& s) { return s; }

std::string concat(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += p;
  return out;
}

using NestedMap = std::map<std::string, std::vector<std::optional<std::int64_t>>>;
NestedMap roundtrip(const NestedMap& m) { return m; }

std::pair<std::string, std::int64_t> swap(const std::pair<std::int64_t, std::string>& p) {
  return {p.second, p.first};
}

using Tuple3 = std::tuple<std::int32_t, double, std::string>;
Tuple3 tuple3(const Tuple3& t) { return t; }

double point_norm(const Point& p) { return std::hypot(p.x, p.y); }

// Appends one line with a single write(2) on an O_APPEND descriptor, so that lines written by
// several processes at once never interleave: tests count executions by counting lines.
std::string append_line(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  const std::string line = text + "\n";
  ssize_t written = ::write(fd, line.data(), line.size());
  int write_errno = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(line.size())) {
    throw std::runtime_error("cannot append to " + path + ": " +
                             (written < 0 ? std::strerror(write_errno) : "short write"));
  }
  return text;
}

void void_task(std::int64_t) {}

std::int64_t segfault() {
  std::raise(SIGSEGV);
  return 0;
}

std::int64_t abort_task() { std::abort(); }

// Blocks until `path` exists, polling every millisecond; throws after `timeout_ms`. Returns the
// milliseconds waited. The benchmarks hold tasks pending behind it without a sleep of fixed length.
std::int64_t wait_file(const std::string& path, std::int64_t timeout_ms) {
  if (timeout_ms < 0) throw std::invalid_argument("wait_file with a negative timeout");
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(timeout_ms);
  while (::access(path.c_str(), F_OK) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("wait_file: " + path + " did not appear within " +
                               std::to_string(timeout_ms) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

// The worker's process id, after sleeping `ms`: submitted several at once, these tell which
// workers have joined (a sleeping task keeps its thread busy, so the next one goes elsewhere).
std::int64_t worker_pid(std::int64_t ms) {
  sleep_ms(ms);
  return static_cast<std::int64_t>(::getpid());
}

// The same, after appending "<pid>" to `path` at the start: which processes started it.
std::int64_t logged_worker_pid(std::int64_t ms, const std::string& path) {
  append_line(path, std::to_string(::getpid()));
  return worker_pid(ms);
}

// x + 1, once `blocker` (a dependency whose value is ignored) is in memory.
std::int64_t dep_inc(std::int64_t x, std::int64_t /*blocker*/) { return x + 1; }

// The summed lengths of two byte buffers: a consumer that needs two inputs, for transfer tests.
std::int64_t total_len(const plexus::Bytes& a, const plexus::Bytes& b) {
  return static_cast<std::int64_t>(a.size() + b.size());
}

// The same, reading both inputs in place (no copy of either).
std::int64_t total_len_view(plexus::BytesView a, plexus::BytesView b) {
  return static_cast<std::int64_t>(a.size() + b.size());
}

// x * x after sleeping `ms`: a map of these is work that takes a while and whose every result
// can be checked (the resilience tests kill workers in the middle of one).
std::int64_t slow_square(std::int64_t x, std::int64_t ms) {
  sleep_ms(ms);
  return x * x;
}

// Sleeps `ms`, then appends "<pid> <start ns> <end ns>" (steady clock) to `path`: intervals
// that tell which tasks ran at the same time on one machine. Returns x.
std::int64_t timed_interval(std::int64_t x, std::int64_t ms, const std::string& path) {
  const auto now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  const auto start = now_ns();
  sleep_ms(ms);
  append_line(path, std::to_string(::getpid()) + " " + std::to_string(start) + " " +
                        std::to_string(now_ns()));
  return x;
}

// x * x, except for x == crash_at: then one line "<pid>" is appended to `path` and the process
// dies of SIGSEGV. Counting the lines counts the attempts at the poison task.
std::int64_t square_or_segfault(std::int64_t x, std::int64_t crash_at, const std::string& path) {
  if (x != crash_at) return x * x;
  append_line(path, std::to_string(::getpid()));
  // A real invalid write, as a buggy plugin makes: the worker's crash handler reports it.
  *static_cast<volatile std::int64_t*>(nullptr) = x;
  return 0;
}

// a + b, after appending "<label> <pid>" to `path`: tells which process holds the result, and
// how many times it was computed.
std::int64_t add_logged(std::int64_t a, std::int64_t b, const std::string& label,
                        const std::string& path) {
  append_line(path, label + " " + std::to_string(::getpid()));
  return a + b;
}

// a + b once `gate` (a dependency whose value is ignored) is in memory.
std::int64_t gated_add(std::int64_t a, std::int64_t b, std::int64_t /*gate*/) { return a + b; }

// Byte `i` of make_bytes(n, seed): a cheap hash of both, so that every result and every position
// differs and a value read back wrong is caught.
std::byte pattern_byte(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (i >> 3) * 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 31;
  return static_cast<std::byte>((x >> ((i & 7) * 8)) & 0xff);
}

// n bytes of a pattern given by `seed`: results of a known size and content (memory tests).
plexus::Bytes make_bytes(std::int64_t n, std::int64_t seed) {
  if (n < 0) throw std::invalid_argument("make_bytes of a negative count");
  plexus::Bytes out(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = pattern_byte(static_cast<std::uint64_t>(seed), i);
  }
  return out;
}

// How many bytes of `b` differ from make_bytes(b.size(), seed): 0 when it is intact. Reads `b`
// in place.
std::int64_t pattern_errors(plexus::BytesView b, std::int64_t seed) {
  std::int64_t wrong = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    wrong += b[i] != pattern_byte(static_cast<std::uint64_t>(seed), i) ? 1 : 0;
  }
  return wrong;
}

// Allocates n bytes and writes every page, so that they count in the process's memory; frees
// them when `hold` returns. Returns n: a task's own memory, which the worker does not manage.
template <class Hold>
std::int64_t hold_bytes(std::int64_t n, Hold hold) {
  if (n < 0) throw std::invalid_argument("hog of a negative count");
  std::vector<char> block(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < block.size(); i += 4096) block[i] = 1;
  hold();
  std::int64_t touched = 0;
  for (std::size_t i = 0; i < block.size(); i += 4096) touched += block[i];
  return touched > 0 || n == 0 ? n : -1;
}

// Holds n bytes for `ms`.
std::int64_t hog(std::int64_t n, std::int64_t ms) {
  return hold_bytes(n, [ms] { sleep_ms(ms); });
}

// Holds n bytes until `path` exists (at most `timeout_ms`): tests release it when they are done
// observing the worker meanwhile.
std::int64_t hog_until_file(std::int64_t n, const std::string& path, std::int64_t timeout_ms) {
  return hold_bytes(n, [&] { wait_file(path, timeout_ms); });
}

std::int32_t add_i32(std::int32_t a, std::int32_t b) {
  std::int64_t sum = std::int64_t{a} + std::int64_t{b};
  if (sum < std::numeric_limits<std::int32_t>::min() ||
      sum > std::numeric_limits<std::int32_t>::max()) {
    throw std::overflow_error("add_i32 overflows int32");
  }
  return static_cast<std::int32_t>(sum);
}

}  // namespace
}  // namespace testing_plugin

PLEXUS_PLUGIN(testing, "1.0.0", registry) {
  namespace t = testing_plugin;
  registry.add("sleep_ms", &t::sleep_ms)
      .add("fail", &t::fail)
      .add("throw_custom", &t::throw_custom)
      .add("throw_int", &t::throw_int)
      .add("bytes", &t::bytes)
      .add("bytes_len", &t::bytes_len)
      .add("checksum", &t::checksum)
      .add("echo", &t::echo)
      .add("concat", &t::concat)
      .add("roundtrip", &t::roundtrip)
      .add("swap", &t::swap)
      .add("tuple3", &t::tuple3)
      .add("point_norm", &t::point_norm)
      .add("append_line", &t::append_line)
      .add("void_task", &t::void_task)
      .add("segfault", &t::segfault)
      .add("abort_task", &t::abort_task)
      .add("add_i32", &t::add_i32)
      .add("wait_file", &t::wait_file)
      .add("worker_pid", &t::worker_pid)
      .add("dep_inc", &t::dep_inc)
      .add("total_len", &t::total_len)
      .add("total_len_view", &t::total_len_view)
      .add("slow_square", &t::slow_square)
      .add("timed_interval", &t::timed_interval)
      .add("square_or_segfault", &t::square_or_segfault)
      .add("add_logged", &t::add_logged)
      .add("gated_add", &t::gated_add)
      .add("logged_worker_pid", &t::logged_worker_pid)
      .add("make_bytes", &t::make_bytes)
      .add("pattern_errors", &t::pattern_errors)
      .add("hog", &t::hog)
      .add("hog_until_file", &t::hog_until_file);
}
