// The Plexus client: submit tasks by name to a cluster and get futures back.
//
//   #include <plexus/client.hpp>
//   plexus::Client client;                                  // no address: starts a LocalCluster
//   auto x  = client.submit<int>("math.inc", 10);           // returns at once: Future<int>
//   auto y  = client.submit<int>("math.inc", x);            // a future as argument: a dependency
//   auto xs = client.map<int>("math.inc", std::vector{1, 2, 3});
//   int v   = y.result();                                   // 12
//   std::vector<int> all = client.gather(xs);               // {2, 3, 4}
//
// Keys: a pure task (the default) gets "<task>-<hash of name and arguments>", the same on every
// machine, and a key the cluster already holds is reused, not recomputed. SubmitOptions{.pure =
// false} gives a fresh random key instead.
//
// Lifetime: the result of a key stays on the cluster while any Future for it (or a task that
// depends on it) exists; dropping the last Future releases it. Futures outlive their Client
// safely: after close() they can still report what they already know.
//
// Thread safety: a Client and its Futures may be used from any number of threads at once.
#pragma once

#include <plexus/codec.hpp>
#include <plexus/errors.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace plexus {

enum class FutureStatus : std::uint8_t { pending, finished, error, cancelled, lost };
const char* to_string(FutureStatus status);

namespace detail {
class FutureState;
using Timeout = std::optional<std::chrono::nanoseconds>;

void future_retain(FutureState* s) noexcept;
/// Drops one handle; the last one queues the key's release with the client.
void future_drop(FutureState* s) noexcept;

/// A counted handle on a FutureState (one small allocation per key, holding the key inline).
/// Copies are an atomic increment; when the last handle of a key goes, the client releases it.
class FutureRef {
 public:
  FutureRef() = default;
  /// Adopts a handle already counted in `s`.
  explicit FutureRef(FutureState* s) noexcept : s_(s) {}
  FutureRef(const FutureRef& o) noexcept : s_(o.s_) {
    if (s_) future_retain(s_);
  }
  FutureRef(FutureRef&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  FutureRef& operator=(FutureRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~FutureRef() {
    if (s_) future_drop(s_);
  }
  FutureState& operator*() const noexcept { return *s_; }
  FutureState* get() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  FutureState* s_ = nullptr;
};

std::string_view future_key(const FutureState& s);
FutureStatus future_status(const FutureState& s);
/// Waits until the future is no longer pending; false on timeout.
bool future_wait(const FutureState& s, Timeout timeout);
/// The encoded result, fetched from the cluster if needed; valid while the future lives. Throws
/// the task's typed error, TimeoutError or ConnectionError.
const std::string& future_value(const FutureState& s, Timeout timeout);
std::exception_ptr future_exception(const FutureState& s, Timeout timeout);
void future_cancel(const FutureState& s);
[[noreturn]] void throw_result_type_error(const FutureState& s, const std::string& type,
                                          const std::string& what);
}  // namespace detail

/// A handle on a task's result. Cheap to copy; copies share the result.
template <class T>
class Future {
 public:
  Future() = default;
  explicit Future(detail::FutureRef state) : state_(std::move(state)) {}

  /// The task key, e.g. "math.inc-3f2a..."; valid while this future (or a copy) lives.
  std::string_view key() const { return detail::future_key(*state_); }
  FutureStatus status() const { return detail::future_status(*state_); }
  /// True once finished, erred, cancelled or lost.
  bool done() const { return status() != FutureStatus::pending; }
  bool valid() const { return static_cast<bool>(state_); }

  /// Blocks until the result is available and returns it. Throws the remote failure as a
  /// plexus::TaskError subclass, ResultTypeError if it does not decode as T.
  T result() const { return decode_value(detail::future_value(*state_, std::nullopt)); }
  /// As result(), but throws plexus::TimeoutError after `timeout`.
  template <class Rep, class Period>
  T result(std::chrono::duration<Rep, Period> timeout) const {
    return decode_value(detail::future_value(
        *state_, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout)));
  }

  /// Blocks until done; returns the failure, or nullptr if the task succeeded.
  std::exception_ptr exception() const { return detail::future_exception(*state_, std::nullopt); }

  /// Blocks until done, or until `timeout`; returns whether it is done.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return detail::future_wait(*state_,
                               std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  void wait() const { detail::future_wait(*state_, std::nullopt); }

  /// Cancels the task for every client; waiting calls then throw CancelledError.
  void cancel() const { detail::future_cancel(*state_); }

  const detail::FutureRef& state() const { return state_; }

 private:
  T decode_value(const std::string& bytes) const {
    try {
      return plexus::decode<T>(std::string_view(bytes));
    } catch (const DecodeError& e) {
      detail::throw_result_type_error(*state_, codec<T>::type_name(), e.what());
    }
  }

  detail::FutureRef state_;
};

/// A future as a task argument: it travels as a reference to its key, and the worker receives
/// the value.
template <class T>
struct codec<Future<T>> {
  static std::string type_name() { return "future<" + codec<T>::type_name() + ">"; }
  static void encode(Writer& w, const Future<T>& f) { w.ref(f.key()); }
};

struct SubmitOptions {
  /// Deterministic key from name and arguments (reused if already computed); false: random key.
  bool pure = true;
  /// Explicit key; overrides `pure`. For map, a prefix: element i gets "<key>-<i>".
  std::string key;
  /// How many times to rerun the task after it throws.
  std::uint32_t retries = 0;
  /// Higher runs first among tasks that are ready.
  std::int32_t priority = 0;
};

/// How a Client() without an address starts its cluster. Unset fields come from the config
/// ([local-cluster]).
struct LocalClusterOptions {
  std::optional<std::uint32_t> n_workers;
  std::optional<std::uint32_t> threads_per_worker;
  std::optional<std::string> transport;  // "tcp", "ipc" or "inproc"
  std::optional<bool> processes;         // false: scheduler and workers as threads in-process
  std::vector<std::string> plugin_path;  // extra plugin directories for the workers
  std::optional<std::string> config_file;
};

/// A task ready to be sent: name, encoded arguments and the keys of futures among them.
struct EncodedCall {
  std::string name;
  std::string args;
  std::vector<std::string> refs;
  std::string key;  // explicit key; empty: from SubmitOptions
};

class Client {
 public:
  /// Starts a LocalCluster from the configuration defaults and connects to it. The cluster stops
  /// when the client is closed or destroyed.
  Client();
  explicit Client(LocalClusterOptions options);
  /// Connects to a running scheduler, e.g. "tcp://127.0.0.1:8786". Throws ConnectionError if
  /// it does not answer within client.connect-timeout-ms.
  explicit Client(const std::string& address);
  explicit Client(const char* address) : Client(std::string(address)) {}
  /// Reads the address a scheduler wrote with --scheduler-file.
  static Client from_scheduler_file(const std::string& path);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  /// Disconnects (and stops the LocalCluster it started). Idempotent.
  void close();

  /// The scheduler's address.
  const std::string& scheduler_address() const;

  /// Submits task `task` ("plugin.name") with `args`; returns at once.
  template <class R, class... A>
  Future<R> submit(std::string_view task, const A&... args) {
    return submit<R>(SubmitOptions{}, task, args...);
  }
  template <class R, class... A>
  Future<R> submit(const SubmitOptions& options, std::string_view task, const A&... args) {
    return Future<R>(submit_encoded(options, encode_call(task, args...)));
  }

  /// One task per element (or per row of several equally long vectors, zipped).
  template <class R, class T, class... More>
  std::vector<Future<R>> map(std::string_view task, const std::vector<T>& first,
                             const std::vector<More>&... more) {
    return map<R>(SubmitOptions{}, task, first, more...);
  }
  template <class R, class T, class... More>
  std::vector<Future<R>> map(const SubmitOptions& options, std::string_view task,
                             const std::vector<T>& first, const std::vector<More>&... more) {
    if (((more.size() != first.size()) || ...)) {
      throw std::invalid_argument("Client::map: argument vectors differ in length");
    }
    // Encoded and handed over in slices, so a large map never holds all its encoded calls at
    // once: the client's memory is the futures, not a copy of every argument list.
    constexpr std::size_t kSlice = 1024;
    std::vector<Future<R>> out;
    out.reserve(first.size());
    std::vector<EncodedCall> calls;
    for (std::size_t begin = 0; begin < first.size(); begin += kSlice) {
      const std::size_t end = std::min(first.size(), begin + kSlice);
      calls.clear();
      calls.reserve(end - begin);
      for (std::size_t i = begin; i < end; ++i) {
        calls.push_back(encode_call(task, first[i], more[i]...));
        if (!options.key.empty()) calls.back().key = options.key + "-" + std::to_string(i);
      }
      for (auto& s : submit_encoded_many(options, std::move(calls))) out.emplace_back(std::move(s));
    }
    return out;
  }

  /// Waits for every future and returns the values in order; throws the first failure.
  template <class T>
  std::vector<T> gather(const std::vector<Future<T>>& futures) {
    std::vector<T> out;
    out.reserve(futures.size());
    for (const auto& f : futures) out.push_back(f.result());
    return out;
  }

  /// Untyped submission of already encoded arguments (an encoded list), as the CLI does.
  /// submit_encoded_many ignores SubmitOptions::key (give each call its own key instead).
  detail::FutureRef submit_encoded(const SubmitOptions& options, EncodedCall call);
  std::vector<detail::FutureRef> submit_encoded_many(const SubmitOptions& options,
                                                     std::vector<EncodedCall> calls);

  /// Encodes a call: the argument list, with futures recorded as dependencies.
  template <class... A>
  static EncodedCall encode_call(std::string_view task, const A&... args) {
    Writer w;
    w.list(sizeof...(A));
    (encode_arg(w, args), ...);
    EncodedCall call;
    call.name = std::string(task);
    call.refs = w.take_refs();
    call.args = w.take();
    return call;
  }

  struct Impl;

 private:
  template <class A>
  static void encode_arg(Writer& w, const A& a) {
    if constexpr (std::is_array_v<A>) {
      codec<const char*>::encode(w, a);
    } else {
      codec<A>::encode(w, a);
    }
  }

  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus
