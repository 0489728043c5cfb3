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
// Task graphs built on the client and sent in one go (Graph, Node, compute, persist) are in
// plexus/graph.hpp.
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
#include <cstddef>
#include <deque>
#include <exception>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <stdexcept>
#include <string_view>
#include <tuple>
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
enum class WaitFor : std::uint8_t { all, any, any_failed };
/// Waits until every state (`all`), any (`any`), or any failed one or all (`any_failed`) is done;
/// false on timeout. The states must belong to one client unless `for` is `all`.
bool futures_wait(const std::vector<const FutureState*>& states, WaitFor what, Timeout timeout);
/// Index of the first done state, waiting for one; npos on timeout or if `states` is empty.
std::size_t wait_any(const std::vector<const FutureState*>& states, Timeout timeout);
[[noreturn]] void throw_result_type_error(const FutureState& s, const std::string& type,
                                          const std::string& what);

/// Encodes one task argument (a string literal as a string).
template <class A>
void encode_arg(Writer& w, const A& a) {
  if constexpr (std::is_array_v<A>) {
    codec<const char*>::encode(w, a);
  } else {
    codec<A>::encode(w, a);
  }
}
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

enum class ReturnWhen { all_completed, first_completed, first_exception };

template <class T>
struct WaitResult {
  std::vector<Future<T>> done;
  std::vector<Future<T>> not_done;
};

/// Blocks until the futures are done (all of them, the first one, or the first that fails, as
/// `when` says) and splits them into done and not done, each in the given order. Throws
/// plexus::TimeoutError when `timeout` passes first.
template <class T>
WaitResult<T> wait(const std::vector<Future<T>>& futures,
                   std::optional<std::chrono::milliseconds> timeout = std::nullopt,
                   ReturnWhen when = ReturnWhen::all_completed) {
  std::vector<const detail::FutureState*> states;
  states.reserve(futures.size());
  for (const auto& f : futures) states.push_back(f.state().get());
  const auto what = when == ReturnWhen::all_completed     ? detail::WaitFor::all
                    : when == ReturnWhen::first_completed ? detail::WaitFor::any
                                                          : detail::WaitFor::any_failed;
  if (!detail::futures_wait(states, what, timeout)) {
    throw TimeoutError("wait: the futures were not done within " +
                       std::to_string(timeout->count()) + " ms");
  }
  WaitResult<T> out;
  for (const auto& f : futures) (f.done() ? out.done : out.not_done).push_back(f);
  return out;
}

/// Futures in the order they finish (dask's as_completed):
///
///   plexus::AsCompleted<int> ac(client.map<int>("math.inc", xs));
///   for (auto& f : ac) use(f.result());     // each future once, as soon as it is done
///   ac.add(client.submit<int>(...));        // more may be added while iterating
///
/// Futures that finish together come in the order they were added. Thread safety: one thread
/// iterates; add() may be called from that thread only.
template <class T>
class AsCompleted {
 public:
  AsCompleted() = default;
  explicit AsCompleted(std::vector<Future<T>> futures) : pending_(std::move(futures)) {}

  void add(Future<T> f) { pending_.push_back(std::move(f)); }
  /// Futures not yet returned.
  std::size_t size() const { return pending_.size() + ready_.size(); }
  bool empty() const { return size() == 0; }

  /// The next done future; nothing once all were returned. Throws TimeoutError after `timeout`.
  std::optional<Future<T>> next(std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    if (ready_.empty()) {
      if (pending_.empty()) return std::nullopt;
      std::vector<const detail::FutureState*> states;
      states.reserve(pending_.size());
      for (const auto& f : pending_) states.push_back(f.state().get());
      if (detail::wait_any(states, timeout) >= pending_.size()) {
        throw TimeoutError("as_completed: no future was done within " +
                           std::to_string(timeout ? timeout->count() : 0) + " ms");
      }
      // Take every future done by now in one pass, so n futures cost one scan per wake-up,
      // not one per future.
      std::vector<Future<T>> still;
      for (auto& f : pending_) {
        if (f.done()) {
          ready_.push_back(std::move(f));
        } else {
          still.push_back(std::move(f));
        }
      }
      pending_ = std::move(still);
    }
    Future<T> f = std::move(ready_.front());
    ready_.pop_front();
    return f;
  }
  /// The next done future with its result (throws the task's failure, like result()).
  std::optional<std::pair<Future<T>, T>> next_with_result(
      std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    auto f = next(timeout);
    if (!f) return std::nullopt;
    T value = f->result();
    return std::make_pair(std::move(*f), std::move(value));
  }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Future<T>;
    using difference_type = std::ptrdiff_t;
    using pointer = Future<T>*;
    using reference = Future<T>&;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { ++*this; }
    Future<T>& operator*() { return *current_; }
    Future<T>* operator->() { return &*current_; }
    iterator& operator++() {
      current_ = owner_->next();
      if (!current_) owner_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return owner_ == o.owner_; }

   private:
    AsCompleted* owner_ = nullptr;
    std::optional<Future<T>> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  std::vector<Future<T>> pending_;
  std::deque<Future<T>> ready_;  // done, not yet returned, in the order they were added
};

class AnyNode;
class Graph;
template <class T>
class Node;

namespace detail {
struct GraphData;
/// What Graph::add collects while it encodes a task's arguments on this thread: the futures and
/// the graph's nodes among them, at any depth (a vector of futures counts). Set only for the
/// duration of that encoding, by ArgCaptureScope.
struct ArgCapture {
  const GraphData* graph = nullptr;
  std::vector<FutureRef> futures;
  std::vector<std::uint32_t> nodes;  // indices in `graph`
};
inline thread_local ArgCapture* arg_capture = nullptr;
}  // namespace detail

/// A future as a task argument: it travels as a reference to its key, and the worker receives
/// the value. Throws std::invalid_argument for an empty (default-constructed) future.
template <class T>
struct codec<Future<T>> {
  static std::string type_name() { return "future<" + codec<T>::type_name() + ">"; }
  static void encode(Writer& w, const Future<T>& f) {
    if (!f.valid()) {
      throw std::invalid_argument(
          "an empty (default-constructed) Future cannot be a task argument");
    }
    // Inside Graph::add: the graph holds the future, so its key stays on the cluster while the
    // graph may still need it.
    if (detail::ArgCapture* c = detail::arg_capture) c->futures.push_back(f.state());
    w.ref(f.key());
  }
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
  /// Run only on these workers, named by worker name or data address; empty: any worker. A
  /// task restricted to workers that are not connected waits until one joins.
  std::vector<std::string> workers;
  /// With `workers`: when none of them is connected, run on any worker instead of waiting.
  bool allow_other_workers = false;
  /// Resources the task holds while it runs, e.g. {{"GPU", 1}}: it runs only on workers
  /// offering them (plexus-worker --resources "GPU=2"), and no more such tasks run on a worker
  /// at once than its amounts allow.
  std::map<std::string, double> resources;

  bool operator==(const SubmitOptions&) const = default;
};

/// Where Client::scatter puts values, and under which keys.
struct ScatterOptions {
  /// The workers to put the values on, by name or data address; empty: any worker. A name that
  /// is not connected is an error (std::invalid_argument).
  std::vector<std::string> workers;
  /// Every value goes to every worker (of `workers`, or of the cluster); otherwise each value
  /// goes to one worker, the one holding the fewest bytes at that point (so equal values go
  /// round robin).
  bool broadcast = false;
  /// Deterministic keys "<type>-<hash of the encoded value>": a value the cluster already holds
  /// (from any client) is not sent again, and its future refers to the copies that exist
  /// wherever they are. false: a fresh random key "<type>-<uuid4>" for every value.
  bool hash = true;
  /// For the whole call (waiting for a worker, sending, the scheduler's answers); TimeoutError.
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

/// How a Client() without an address starts its cluster. Unset fields come from the config
/// ([local-cluster]).
struct LocalClusterOptions {
  std::optional<std::uint32_t> n_workers;
  std::optional<std::uint32_t> threads_per_worker;
  std::optional<std::string> transport;  // "tcp", "ipc" or "inproc"
  std::optional<bool> processes;         // false: scheduler and workers as threads in-process
  std::optional<bool> nanny;             // processes: run each worker under a nanny ([nanny] enabled)
  /// Each worker's memory limit, as for plexus-worker --memory-limit: "2GB", "512MiB", bytes,
  /// a fraction of the machine's memory ("0.5"), "auto" or "0"/"none" (worker.memory-limit).
  /// "auto" gives each worker its share by threads. An invalid value makes the Client
  /// constructor throw std::invalid_argument saying what is accepted. In-process workers apply
  /// only worker.memory-target to it (their process's memory is not theirs alone).
  std::optional<std::string> memory_limit;
  std::vector<std::string> plugin_path;  // extra plugin directories for the workers
  std::optional<std::string> config_file;
  /// Resources every worker offers, e.g. {{"GPU", 1}} (default: worker.resources).
  std::map<std::string, double> resources;
};

/// One worker, as the scheduler sees it.
struct WorkerState {
  std::string address;  // its data address; identifies the worker
  std::string name;
  std::uint32_t nthreads = 0;
  std::size_t processing = 0;  // tasks assigned to it and not finished
  std::size_t held = 0;        // results it holds
  std::uint64_t held_bytes = 0;
  bool closing = false;        // leaving: it gets no new work
  std::map<std::string, double> resources;  // what it offers (plexus-worker --resources)
  // Memory, from its last heartbeat (see worker.memory-* in config/plexus.toml):
  bool paused = false;               // over its pause threshold: it gets no new work meanwhile
  std::uint64_t managed_bytes = 0;   // results it holds in memory
  std::uint64_t spilled_bytes = 0;   // results it has spilled to disk
  std::uint64_t spill_count = 0;     // values it has written to disk since it started
  std::uint64_t process_bytes = 0;   // its process's resident memory; 0 = not measured
  std::uint64_t memory_limit = 0;    // 0 = no limit
};

/// The scheduler and its workers (Client::scheduler_info()).
struct SchedulerInfo {
  std::string id;
  std::string address;
  std::size_t tasks = 0;   // keys the scheduler knows
  std::size_t queued = 0;  // ready tasks held back because every worker is busy
  std::vector<WorkerState> workers;  // by address
};

/// A task ready to be sent: name, encoded arguments and the keys of futures among them.
struct EncodedCall {
  std::string name;
  std::string args;
  std::vector<std::string> refs;
  std::string key{};  // explicit key; empty: from SubmitOptions (optional in {name, args, refs})
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

  // ---- the cluster ----
  /// The scheduler and every worker. Throws TimeoutError or ConnectionError.
  SchedulerInfo scheduler_info(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Threads per worker, by worker address.
  std::map<std::string, std::uint32_t> nthreads(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Where each key's result lives: key -> addresses of the workers holding it (empty while not
  /// computed, or if unknown).
  std::map<std::string, std::vector<std::string>> who_has(
      const std::vector<std::string>& keys,
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  template <class T>
  std::map<std::string, std::vector<std::string>> who_has(
      const std::vector<Future<T>>& futures,
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::vector<std::string> keys;
    keys.reserve(futures.size());
    for (const auto& f : futures) keys.emplace_back(f.key());
    return who_has(keys, timeout);
  }
  /// What each worker holds: worker address -> keys (every worker when `workers` is empty).
  std::map<std::string, std::vector<std::string>> has_what(
      const std::vector<std::string>& workers = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// The scheduler's last `n` log lines, oldest first (each process keeps the last 2,000, at
  /// info level or more verbose, whatever its stderr shows).
  std::vector<std::string> get_scheduler_logs(
      std::size_t n = 2000, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Every worker's last `n` log lines, by worker address.
  std::map<std::string, std::vector<std::string>> get_worker_logs(
      std::size_t n = 2000, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Blocks until at least `n` workers have joined; throws TimeoutError after `timeout`.
  void wait_for_workers(std::size_t n,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

  /// Computes failed futures again (with the failed dependencies they failed through); they are
  /// pending until the new outcome arrives. Futures that did not fail are left alone.
  template <class T>
  void retry(const std::vector<Future<T>>& futures) {
    retry_states(states_of(futures));
  }
  template <class T>
  void retry(const Future<T>& future) {
    retry(std::vector<Future<T>>{future});
  }
  /// The cluster computes these futures' tasks to the end even if every future for them is
  /// dropped (for tasks run for their side effects); the results are then released.
  template <class T>
  void fire_and_forget(const std::vector<Future<T>>& futures) {
    fire_and_forget_states(states_of(futures));
  }
  template <class T>
  void fire_and_forget(const Future<T>& future) {
    fire_and_forget(std::vector<Future<T>>{future});
  }

  /// A future for an existing key (submitted by any client): the cluster keeps it for this
  /// future too, and computes it again if it was released. An unknown key's future is lost.
  template <class T>
  Future<T> future(std::string key) {
    return Future<T>(future_of_key(std::move(key)));
  }

  /// Runs the task of `future` again in this process, on this thread, with the same arguments
  /// (its dependencies fetched from the cluster) and the same plugin, loaded here: a debugger can
  /// stop inside it. Returns its result or throws its error, typed as on the cluster.
  template <class T>
  T recreate_task_locally(const Future<T>& future,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    const std::string bytes = run_locally(future.key(), timeout);
    try {
      return plexus::decode<T>(std::string_view(bytes));
    } catch (const DecodeError& e) {
      throw ResultTypeError("result of " + std::string(future.key()) + " does not decode as " +
                            codec<T>::type_name() + ": " + e.what());
    }
  }
  /// For a failed future: reruns its task here (as recreate_task_locally) and throws the error
  /// it raises. Throws std::invalid_argument if the future did not fail.
  template <class T>
  [[noreturn]] void recreate_error_locally(
      const Future<T>& future, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    future.wait();
    recreate_error_locally_key(future.key(), future.status(), timeout);
  }

  // ---- datasets: futures named on the scheduler, for any client ----
  /// Names `futures` as dataset `name`: the cluster keeps their results until the dataset is
  /// unpublished, and any client can get them by name. Throws std::invalid_argument if the name
  /// is taken (unless `replace`) or a future is unknown to the scheduler.
  template <class T>
  void publish_dataset(const std::string& name, const std::vector<Future<T>>& futures,
                       bool replace = false) {
    std::vector<std::string> keys;
    keys.reserve(futures.size());
    for (const auto& f : futures) keys.emplace_back(f.key());
    publish_keys(name, std::move(keys), replace);
  }
  template <class T>
  void publish_dataset(const std::string& name, const Future<T>& future, bool replace = false) {
    publish_dataset(name, std::vector<Future<T>>{future}, replace);
  }
  /// The futures of dataset `name`, in the order published. Throws std::out_of_range if there
  /// is none.
  template <class T>
  std::vector<Future<T>> get_dataset(const std::string& name) {
    std::vector<Future<T>> out;
    for (auto& ref : dataset_refs(name)) out.emplace_back(std::move(ref));
    return out;
  }
  std::vector<std::string> list_datasets();
  /// Throws std::out_of_range if there is no such dataset.
  void unpublish_dataset(const std::string& name);

  /// Cancels the tasks for every client (as Future::cancel on each).
  template <class T>
  void cancel(const std::vector<Future<T>>& futures) {
    for (const auto& f : futures) f.cancel();
  }

  // ---- data movement (dask's scatter, replicate, rebalance, restart) ----
  /// Puts values on workers directly (client to worker, not through the scheduler) and returns
  /// a future for each, already finished: use them as task arguments or get them back with
  /// result(). The scheduler holds them like results, released when their futures go, but with
  /// no lineage: if every worker holding a value dies, its future and the tasks waiting for it
  /// fail with DataLostError ("scattered data K was lost with worker W ...; scatter it again").
  /// Blocks until the workers have the values and the scheduler knows where. Throws
  /// TimeoutError, std::invalid_argument for an unknown worker in options.workers, plexus::Error
  /// when a worker refuses the values.
  ///
  ///   auto parts = client.scatter(std::vector<std::int64_t>{1, 2, 3});   // three futures
  ///   auto total = client.submit<std::int64_t>("math.sum", parts);       // 6
  ///
  /// A vector is scattered element by element; to scatter one vector as a single value, wrap it:
  /// scatter(std::vector<std::vector<int>>{v})[0].
  template <class T>
  std::vector<Future<T>> scatter(const std::vector<T>& values, const ScatterOptions& options = {}) {
    std::vector<std::string> encoded;
    encoded.reserve(values.size());
    for (const auto& v : values) encoded.push_back(encode_to_string(v));
    std::vector<Future<T>> out;
    out.reserve(values.size());
    for (auto& ref : scatter_encoded(codec<T>::type_name(), std::move(encoded), options)) {
      out.emplace_back(std::move(ref));
    }
    return out;
  }
  template <class T>
  Future<T> scatter(const T& value, const ScatterOptions& options = {}) {
    return std::move(scatter(std::vector<T>{value}, options).front());
  }

  /// Copies the futures' values (waiting for them first) until each lives on `n` workers (all of
  /// them if unset or more than there are), among `workers` (names or data addresses; empty: the
  /// whole cluster); a value on more than n of them loses the extra copies. Receivers are the
  /// workers holding the fewest bytes; they fetch from a holder, as for a dependency. Blocks
  /// until done. Throws TimeoutError, std::invalid_argument (a future that failed, n = 0),
  /// plexus::Error if the scheduler refuses (an unknown worker, a value no longer in memory) or
  /// some copies could not be made.
  template <class T>
  void replicate(const std::vector<Future<T>>& futures, std::optional<std::size_t> n = std::nullopt,
                 const std::vector<std::string>& workers = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    replicate_states(states_of(futures), n, workers, timeout);
  }
  /// Evens out the bytes the workers hold (dask's rebalance): values move from the workers above
  /// the mean to those below, biggest first, each move only while it narrows the gap; the
  /// receiver copies a value, then the sender frees it. Only the futures' values move (waited for
  /// first), among `workers` (empty: all). Blocks until done. Throws as replicate().
  template <class T>
  void rebalance(const std::vector<Future<T>>& futures, const std::vector<std::string>& workers = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    rebalance_states(states_of(futures), workers, timeout, true);
  }
  /// As above for every value the cluster holds.
  void rebalance(const std::vector<std::string>& workers = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    rebalance_states({}, workers, timeout, false);
  }
  /// Restarts the cluster: every task is forgotten, and every future of every client that is not
  /// done yet or holds a result becomes cancelled (CancelledError: "the cluster restarted ...");
  /// workers under a nanny exit and their nannies start fresh processes at once, other workers
  /// (--no-nanny, an inproc LocalCluster) drop all their tasks and data in place. Returns once as
  /// many workers are connected as before; throws TimeoutError otherwise.
  void restart(std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // ---- task graphs (declared here, defined in plexus/graph.hpp: include it to use them) ----
  /// Computes `output` and the ancestors this client does not hold already, sent together in
  /// one submission; returns at once. Only the output is wanted: the ancestors' results stay on
  /// the cluster while tasks that depend on them need them, then are released. Throws
  /// std::invalid_argument for an empty node.
  template <class T>
  Future<T> compute(const Node<T>& output);
  /// Several outputs of one Graph, of different types: `auto [x, s] = client.compute(a, b);`.
  /// Throws std::invalid_argument if they belong to different Graphs.
  template <class A, class B, class... More>
  std::tuple<Future<A>, Future<B>, Future<More>...> compute(const Node<A>& a, const Node<B>& b,
                                                           const Node<More>&... more);
  template <class T>
  std::vector<Future<T>> compute(const std::vector<Node<T>>& outputs);
  /// As compute(outputs), checking that every output is a node of `graph`.
  template <class T>
  std::vector<Future<T>> compute(const Graph& graph, const std::vector<Node<T>>& outputs);
  template <class T>
  std::vector<Future<T>> compute(const Graph& graph, std::initializer_list<Node<T>> outputs);
  /// Every sink of `graph` (a node no other node takes as argument), in the order added, as
  /// untyped futures (`Future<T>(f.state())` gives a typed one). Nothing for an empty graph.
  std::vector<Future<Encoded>> compute(const Graph& graph);

  /// As compute, and the node keeps its future: the result stays on the cluster while the node
  /// (or its Graph) lives, and graphs built on the node from then on use the held result rather
  /// than recompute its ancestors. Returns the node, now backed by a future (Node::future(),
  /// plexus::futures_of).
  template <class T>
  Node<T> persist(const Node<T>& node);
  template <class T>
  std::vector<Node<T>> persist(const std::vector<Node<T>>& nodes);
  /// Persists every sink of `graph`; returns the graph.
  Graph persist(const Graph& graph);

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
    (detail::encode_arg(w, args), ...);
    EncodedCall call;
    call.name = std::string(task);
    call.refs = w.take_refs();
    call.args = w.take();
    return call;
  }

  struct Impl;

 private:

  explicit Client(std::unique_ptr<Impl> impl);
  template <class T>
  static std::vector<const detail::FutureState*> states_of(const std::vector<Future<T>>& fs) {
    std::vector<const detail::FutureState*> out;
    out.reserve(fs.size());
    for (const auto& f : fs) out.push_back(f.state().get());
    return out;
  }
  void retry_states(const std::vector<const detail::FutureState*>& states);
  detail::FutureRef future_of_key(std::string key);
  void publish_keys(const std::string& name, std::vector<std::string> keys, bool replace);
  std::vector<detail::FutureRef> dataset_refs(const std::string& name);
  std::string run_locally(std::string_view key, std::chrono::milliseconds timeout);
  [[noreturn]] void recreate_error_locally_key(std::string_view key, FutureStatus status,
                                               std::chrono::milliseconds timeout);
  void fire_and_forget_states(const std::vector<const detail::FutureState*>& states);
  std::vector<detail::FutureRef> scatter_encoded(const std::string& type_name,
                                                 std::vector<std::string> values,
                                                 const ScatterOptions& options);
  void replicate_states(const std::vector<const detail::FutureState*>& states,
                        std::optional<std::size_t> n, const std::vector<std::string>& workers,
                        std::chrono::milliseconds timeout);
  void rebalance_states(const std::vector<const detail::FutureState*>& states,
                        const std::vector<std::string>& workers, std::chrono::milliseconds timeout,
                        bool some);

  /// Sends the `outputs` (nodes of `graph`, or of one Graph whichever it is when `graph` is null)
  /// and the ancestors this client does not hold, in one submission; a future per output. With
  /// `persist`, each output node keeps its future. `what` names the caller in errors.
  std::vector<detail::FutureRef> compute_nodes(const Graph* graph,
                                               const std::vector<const AnyNode*>& outputs,
                                               bool persist, const char* what);
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus
