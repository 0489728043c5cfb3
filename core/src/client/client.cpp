#include <plexus/client.hpp>

#include "client/graph_data.hpp"

#include <plexus/abi.h>
#include <plexus/client/local_cluster.hpp>
#include <plexus/worker/plugin_loader.hpp>
#include <plexus/common/hex.hpp>
#include <plexus/common/key_map.hpp>

#include <nlohmann/json.hpp>
#include <tsl/robin_set.h>
#include <plexus/common/logging.hpp>
#include <plexus/common/task_key.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/comm_options.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <new>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace plexus {

namespace fb = flatbuffers;
using Clock = std::chrono::steady_clock;

const char* to_string(FutureStatus s) {
  switch (s) {
    case FutureStatus::pending: return "pending";
    case FutureStatus::finished: return "finished";
    case FutureStatus::error: return "error";
    case FutureStatus::cancelled: return "cancelled";
    case FutureStatus::lost: return "lost";
  }
  return "unknown";
}

namespace {
std::string describe(TaskError::Kind kind, const std::string& key, const std::string& worker,
                     const std::string& type, const std::string& message) {
  std::string s = key + ": ";
  if (!type.empty()) s += type + ": ";
  s += message;
  if (!worker.empty()) s += " (on worker " + worker + ")";
  (void)kind;
  return s;
}
}  // namespace

TaskError::TaskError(Kind kind, std::string key, std::string worker, std::string remote_type,
                     std::string remote_message, std::string traceback)
    : Error(describe(kind, key, worker, remote_type, remote_message)),
      kind_(kind),
      key_(std::move(key)),
      worker_(std::move(worker)),
      remote_type_(std::move(remote_type)),
      remote_message_(std::move(remote_message)),
      traceback_(std::move(traceback)) {}

namespace {

template <class E>
std::exception_ptr make_error(const std::string& key, const ErrorInfo& e) {
  return std::make_exception_ptr(E(static_cast<TaskError::Kind>(e.kind), key, e.worker, e.type,
                                   e.message, e.traceback));
}

// The typed exception for a remote failure, by kind.
std::exception_ptr make_task_error(const std::string& key, const ErrorInfo& e) {
  switch (e.kind) {
    case ErrorKind::exception: return make_error<TaskError>(key, e);
    case ErrorKind::unknown_task: return make_error<UnknownTaskError>(key, e);
    case ErrorKind::bad_arguments: return make_error<TypeMismatchError>(key, e);
    case ErrorKind::plugin_error: return make_error<PluginError>(key, e);
    case ErrorKind::killed_worker: return make_error<KilledWorker>(key, e);
    case ErrorKind::lost: return make_error<DataLostError>(key, e);
    case ErrorKind::cancelled: return make_error<CancelledError>(key, e);
    case ErrorKind::scheduler_error: return make_error<SchedulerError>(key, e);
  }
  return make_error<TaskError>(key, e);
}

// A task spec as queued for the I/O thread.
struct PendingTask {
  // Its key, wanted by this client; lives at least until the submit is sent (ClientCore). Null
  // for a task the client does not want (a graph's intermediate node): then `key` is its key.
  detail::FutureState* state;
  std::string key;
  std::string name;
  std::string args;
  std::vector<std::string> deps;
  // Its per-task options (client_detail::task_options); the tasks of one call share the block.
  std::shared_ptr<const SubmitOptions> options;
  // Whether a Submit message may end after this task. False inside a chunk of a graph: an
  // unwanted task must reach the scheduler in the same message as its dependents.
  bool split_after = true;
};

struct Command {
  enum class Type {
    submit, fetch, cancel, info, retry, fire_and_forget, worker_logs, want,
    put,        // values to one worker's data address (scatter)
    scatter,    // tells the scheduler where the put values are
    replicate,  // requests answered by an InfoReply once done
    rebalance,
    restart,
  } type;
  // Built with designated initializers; what a command type does not use stays empty.
  std::vector<PendingTask> tasks{};  // submit
  std::string key{};                   // fetch, cancel, want
  std::vector<std::string> holders{};  // fetch: where; info and others: the keys or workers
  wire::InfoKind info_kind = wire::InfoKind::scheduler_info;
  std::uint64_t count = 0;                             // info (logs), worker_logs: lines
  std::shared_ptr<std::promise<std::string>> reply{};  // info, worker_logs: the JSON answer
  // put: `key` is the worker's data address, `holders` the keys and `values` their values.
  std::vector<std::string> values{};
  // scatter: `holders` are the keys, each with its size and the workers that have it.
  std::vector<std::uint64_t> sizes{};
  std::vector<std::vector<std::string>> where{};
  std::vector<std::string> workers{};  // replicate, rebalance: names or data addresses
};

// Submitters wait while this many tasks are queued for the I/O thread, so a client that maps
// faster than the wire drains holds a bounded backlog of encoded calls.
constexpr std::size_t kMaxQueuedTasks = 8192;

// Tasks per Submit message, about: the I/O thread ends a message once it holds this many (where
// a task allows it, PendingTask::split_after), so the scheduler starts on a large submission while
// the rest streams in. A graph is cut into chunks of this size (Impl::submit_graph).
constexpr std::size_t kSubmitChunk = 8192;

}  // namespace

struct ClientCore;

namespace detail {

// One per key the client holds, allocated with the key inline after it (one allocation).
//
// Lifetime: Future handles count in `handles`. The last handle to go queues the state on
// ClientCore::released (under cmd_mu); the I/O thread later erases and frees it, after sending
// any submit queued before, unless a submit of the same key revived it meanwhile (0 -> 1, only
// under ClientCore::mu). Only the I/O thread (or, once it stopped, the thread dropping the last
// handle) frees a state, and only while holding mu and cmd_mu with handles == 0 and the state not
// queued: then no thread can be between its last decrement and its push.
class FutureState {
 public:
  static FutureState* create(std::string_view key, ClientCore* core);
  static void destroy(FutureState* s) noexcept;

  std::string_view key() const {
    return {reinterpret_cast<const char*>(this + 1), key_size};
  }

  std::atomic<std::uint32_t> handles{1};
  const std::uint32_t key_size;
  ClientCore* const core;
  // Guarded by core->mu.
  FutureStatus status = FutureStatus::pending;
  bool fetching = false;
  bool has_value = false;  // `value` is set once and then never changes
  // Guarded by core->cmd_mu.
  bool release_queued = false;
  // Guarded by core->mu until has_value; immutable after.
  std::string value;
  // Guarded by core->mu. Rarely needed parts live out of line to keep a future small.
  std::unique_ptr<std::vector<std::string>> holders;  // when the value must be fetched
  std::unique_ptr<ErrorInfo> error;                   // when status is not finished

  void fail(ErrorInfo e) { error = std::make_unique<ErrorInfo>(std::move(e)); }
  const ErrorInfo& error_info() const {
    static const ErrorInfo unknown{ErrorKind::scheduler_error, "", "no error details", "", ""};
    return error ? *error : unknown;
  }
  void set_value(std::string_view v) {
    if (has_value) return;
    value.assign(v);
    has_value = true;
  }

 private:
  FutureState(ClientCore* c, std::uint32_t n) : key_size(n), core(c) {}
  ~FutureState() = default;
};

}  // namespace detail

namespace {
using detail::FutureState;

// Finds a FutureState by its key; the state itself is the set's element (8 bytes a slot).
struct StateHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view k) const noexcept { return KeyHash{}(k); }
  std::size_t operator()(const FutureState* s) const noexcept { return KeyHash{}(s->key()); }
};
struct StateEq {
  using is_transparent = void;
  static std::string_view k(std::string_view v) { return v; }
  static std::string_view k(const FutureState* s) { return s->key(); }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const noexcept {
    return k(a) == k(b);
  }
};
using StateSet = tsl::robin_set<FutureState*, StateHash, StateEq, std::allocator<FutureState*>,
                                /*StoreHash=*/true>;
}  // namespace

// Shared by the Client, its I/O thread and every FutureState, so that futures outlive the client:
// counted (the Client plus one per FutureState) and deleted by the last.
struct ClientCore {
  ClientCore() { futures.max_load_factor(0.8f); }

  // Guards every FutureState's mutable fields and `futures`. Taken before cmd_mu, never after.
  std::mutex mu;
  std::condition_variable cv;
  StateSet futures;
  bool closed = false;
  std::string closed_reason;

  std::mutex cmd_mu;
  std::condition_variable room;            // submitters waiting for queued_tasks to drop
  std::vector<Command> commands;           // guarded by cmd_mu
  std::size_t queued_tasks = 0;            // tasks in `commands`; guarded by cmd_mu
  std::vector<FutureState*> released;      // states whose last handle went; guarded by cmd_mu
  bool io_stopped = false;                 // guarded by cmd_mu
  comm::Wakeup wake;
  std::chrono::milliseconds fetch_timeout{10000};

  std::atomic<std::uint32_t> refs{1};
  void retain() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void unref() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Caller holds cmd_mu. The I/O thread takes the whole queue at once: only the first entry needs
  // a wake-up.
  bool queues_empty() const { return commands.empty() && released.empty(); }

  void push(Command c) {
    bool was_empty;
    {
      std::lock_guard lock(cmd_mu);
      was_empty = queues_empty();
      queued_tasks += c.tasks.size();
      Command* last = commands.empty() ? nullptr : &commands.back();
      if (c.type == Command::Type::submit && last && last->type == Command::Type::submit) {
        // Task-by-task submits join one command: one vector for the I/O thread, not one each.
        last->tasks.insert(last->tasks.end(), std::make_move_iterator(c.tasks.begin()),
                           std::make_move_iterator(c.tasks.end()));
      } else {
        commands.push_back(std::move(c));
      }
    }
    if (was_empty) wake.notify();
  }

  // Blocks while the I/O thread's backlog is full.
  void wait_for_room() {
    std::unique_lock lock(cmd_mu);
    room.wait(lock, [&] { return queued_tasks < kMaxQueuedTasks || io_stopped; });
  }

  // The last handle of `s` is going.
  void drop_last(FutureState* s) noexcept {
    std::unique_lock lock(cmd_mu);
    if (s->handles.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (io_stopped) {
      lock.unlock();
      forget_after_close(s);
      return;
    }
    if (s->release_queued) return;
    const bool was_empty = queues_empty();
    try {
      released.push_back(s);
    } catch (...) {
      return;  // out of memory: the key stays held until the client closes
    }
    s->release_queued = true;
    lock.unlock();
    if (was_empty) wake.notify();
  }

  // No I/O thread any more and no submit can revive `s` (the client is closed).
  void forget_after_close(FutureState* s) noexcept {
    {
      std::lock_guard lock(mu);
      futures.erase(s->key());
    }
    FutureState::destroy(s);  // may delete this core: nothing of it is touched after
  }
};

namespace detail {

FutureState* FutureState::create(std::string_view key, ClientCore* core) {
  void* mem = ::operator new(sizeof(FutureState) + key.size());
  auto* s = new (mem) FutureState(core, static_cast<std::uint32_t>(key.size()));
  std::memcpy(reinterpret_cast<char*>(s + 1), key.data(), key.size());
  core->retain();
  return s;
}

void FutureState::destroy(FutureState* s) noexcept {
  ClientCore* core = s->core;
  s->~FutureState();
  ::operator delete(s);
  core->unref();
}

void future_retain(FutureState* s) noexcept { s->handles.fetch_add(1, std::memory_order_relaxed); }

void future_drop(FutureState* s) noexcept {
  std::uint32_t n = s->handles.load(std::memory_order_relaxed);
  while (n > 1) {
    if (s->handles.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) return;
  }
  s->core->drop_last(s);
}

std::string_view future_key(const FutureState& s) { return s.key(); }


FutureStatus future_status(const FutureState& s) {
  std::lock_guard lock(s.core->mu);
  return s.status;
}

namespace {
// Waits on core->cv until `ready` or the deadline; false on timeout.
template <class Pred>
bool wait_until(std::unique_lock<std::mutex>& lock, const FutureState& s, Timeout timeout,
                Pred ready) {
  if (!timeout) {
    s.core->cv.wait(lock, ready);
    return true;
  }
  return s.core->cv.wait_for(lock, *timeout, ready);
}

[[noreturn]] void throw_timeout(const FutureState& s, Timeout timeout) {
  throw TimeoutError("timed out after " +
                     std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        timeout.value_or(std::chrono::nanoseconds(0)))
                                        .count()) +
                     " ms waiting for " + std::string(s.key()));
}
}  // namespace

bool future_wait(const FutureState& s, Timeout timeout) {
  std::unique_lock lock(s.core->mu);
  return wait_until(lock, s, timeout, [&] { return s.status != FutureStatus::pending; });
}

const std::string& future_value(const FutureState& cs, Timeout timeout) {
  auto& s = const_cast<FutureState&>(cs);
  std::unique_lock lock(s.core->mu);
  const Clock::time_point deadline = timeout ? Clock::now() + *timeout : Clock::time_point::max();
  auto left = [&]() -> Timeout {
    if (!timeout) return std::nullopt;
    return std::max(std::chrono::nanoseconds(0),
                    std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()));
  };
  if (!wait_until(lock, s, left(), [&] { return s.status != FutureStatus::pending; })) {
    throw_timeout(s, timeout);
  }
  if (s.status == FutureStatus::finished && !s.has_value) {
    if (!s.fetching) {
      s.fetching = true;
      Command c{.type = Command::Type::fetch,
                .key = std::string(s.key()),
                .holders = s.holders ? *s.holders : std::vector<std::string>{}};
      lock.unlock();
      s.core->push(std::move(c));
      lock.lock();
    }
    if (!wait_until(lock, s, left(),
                    [&] { return s.has_value || s.status != FutureStatus::finished; })) {
      throw_timeout(s, timeout);
    }
  }
  if (s.status == FutureStatus::finished && s.has_value) return s.value;
  std::rethrow_exception(make_task_error(std::string(s.key()), s.error_info()));
}

std::exception_ptr future_exception(const FutureState& s, Timeout timeout) {
  std::unique_lock lock(s.core->mu);
  if (!wait_until(lock, s, timeout, [&] { return s.status != FutureStatus::pending; })) {
    throw_timeout(s, timeout);
  }
  if (s.status == FutureStatus::finished) return nullptr;
  return make_task_error(std::string(s.key()), s.error_info());
}

namespace {
bool is_failed(FutureStatus st) {
  return st == FutureStatus::error || st == FutureStatus::cancelled || st == FutureStatus::lost;
}
// Waits on `core` until `ready` (which the caller evaluates under core->mu); false on timeout.
template <class Pred>
bool wait_core(ClientCore& core, Timeout timeout, Pred ready) {
  std::unique_lock lock(core.mu);
  if (!timeout) {
    core.cv.wait(lock, ready);
    return true;
  }
  return core.cv.wait_for(lock, *timeout, ready);
}
// The one client all `states` belong to; throws if they belong to several.
ClientCore* one_core(const std::vector<const FutureState*>& states) {
  ClientCore* core = nullptr;
  for (const FutureState* s : states) {
    if (!s) throw std::invalid_argument("wait: an empty (default-constructed) future");
    if (core && s->core != core) {
      throw std::invalid_argument("wait: the futures belong to different clients");
    }
    core = s->core;
  }
  return core;
}
}  // namespace

bool futures_wait(const std::vector<const FutureState*>& states, WaitFor what, Timeout timeout) {
  if (states.empty()) return true;
  const Clock::time_point deadline =
      timeout ? Clock::now() + *timeout : Clock::time_point::max();
  if (what == WaitFor::all) {
    // One future after the other (any clients), so n futures cost O(n) checks in all.
    for (const FutureState* s : states) {
      if (!s) throw std::invalid_argument("wait: an empty (default-constructed) future");
      Timeout left;
      if (timeout) left = std::max(std::chrono::nanoseconds(0), deadline - Clock::now());
      if (!future_wait(*s, left)) return false;
    }
    return true;
  }
  ClientCore* core = one_core(states);
  return wait_core(*core, timeout, [&] {
    bool all_done = true;
    for (const FutureState* s : states) {
      if (s->status == FutureStatus::pending) {
        all_done = false;
      } else if (what == WaitFor::any || is_failed(s->status)) {
        return true;
      }
    }
    return all_done;
  });
}

std::size_t wait_any(const std::vector<const FutureState*>& states, Timeout timeout) {
  constexpr std::size_t npos = static_cast<std::size_t>(-1);
  if (states.empty()) return npos;
  ClientCore* core = one_core(states);
  std::size_t found = npos;
  wait_core(*core, timeout, [&] {
    for (std::size_t i = 0; i < states.size(); ++i) {
      if (states[i]->status != FutureStatus::pending) {
        found = i;
        return true;
      }
    }
    return false;
  });
  return found;
}

void future_cancel(const FutureState& s) {
  s.core->push(Command{.type = Command::Type::cancel, .key = std::string(s.key())});
}

void throw_result_type_error(const FutureState& s, const std::string& type,
                             const std::string& what) {
  throw ResultTypeError("result of " + std::string(s.key()) + " does not decode as " + type + ": " +
                        what);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------

struct Client::Impl {
  Impl(const config::Config& cfg, std::string addr)
      : config(cfg), address(std::move(addr)), core(new ClientCore), log(logger("client")) {
    connect_timeout = std::chrono::milliseconds(config.get_int("client.connect-timeout-ms"));
    death_timeout = std::chrono::milliseconds(config.get_int("client.death-timeout-ms"));
    core->fetch_timeout = connect_timeout;
    std::promise<void> ready;
    auto connected = ready.get_future();
    io = std::thread([this, p = std::move(ready)]() mutable { io_main(p); });
    if (connected.wait_for(connect_timeout + std::chrono::seconds(1)) !=
        std::future_status::ready) {
      stop_io();
      throw ConnectionError("no answer from the scheduler at " + address);
    }
    try {
      connected.get();
    } catch (...) {
      stop_io();
      throw;
    }
  }

  ~Impl() { close(); }

  void close() {
    stop_io();
    std::vector<FutureState*> gone;
    {
      std::lock_guard lock(core->mu);
      fail_pending_locked("the client was closed");
      std::lock_guard cmd_lock(core->cmd_mu);
      core->io_stopped = true;
      core->commands.clear();
      core->queued_tasks = 0;
      for (FutureState* s : core->released) {
        s->release_queued = false;
        if (s->handles.load(std::memory_order_acquire) == 0) {
          core->futures.erase(s->key());
          gone.push_back(s);
        }
      }
      core->released.clear();
    }
    core->room.notify_all();
    for (FutureState* s : gone) FutureState::destroy(s);
    if (cluster) cluster.reset();
  }

  void stop_io() {
    if (io.joinable()) {
      stopping = true;
      core->wake.notify();
      io.join();
    }
  }

  // Marks every pending future failed; caller holds core->mu, and is the I/O thread or runs after
  // it stopped.
  void fail_pending_locked(const std::string& reason) {
    core->closed = true;
    core->closed_reason = reason;
    for (auto& [id, reply] : infos) {
      reply->set_exception(std::make_exception_ptr(ConnectionError(reason)));
    }
    infos.clear();
    for (auto& [id, request] : log_requests) {
      auto& gather = request.second;
      if (gather->waiting > 0) {
        gather->waiting = 0;
        gather->reply->set_exception(std::make_exception_ptr(ConnectionError(reason)));
      }
    }
    log_requests.clear();
    for (auto& [id, put] : puts) {
      put.reply->set_exception(std::make_exception_ptr(ConnectionError(reason)));
    }
    puts.clear();
    for (FutureState* s : core->futures) {
      if (s->status == FutureStatus::pending ||
          (s->status == FutureStatus::finished && !s->has_value)) {
        s->status = FutureStatus::error;
        s->fail(ErrorInfo{ErrorKind::scheduler_error, "plexus::ConnectionError", reason, "", ""});
      }
    }
    core->cv.notify_all();
  }

  // ---- user threads ----
  std::vector<detail::FutureRef> submit(const SubmitOptions& o, std::vector<EncodedCall> calls,
                                        bool single) {
    client_detail::check_options(o);
    std::vector<std::string> keys;
    keys.reserve(calls.size());
    // map's calls share o (its key, if any, is in each call): the key comes from the call.
    SubmitOptions per_call = o;
    if (!single) per_call.key.clear();
    for (auto& c : calls) {
      client_detail::check_task_name(c.name);
      keys.push_back(!c.key.empty() ? std::move(c.key)
                                    : client_detail::call_key(per_call, c.name, c.args));
    }
    core->wait_for_room();
    std::vector<detail::FutureRef> result;
    result.reserve(calls.size());
    std::vector<PendingTask> fresh;
    std::lock_guard lock(core->mu);
    check_open_locked();
    const auto options = task_options_locked(o);
    for (std::size_t i = 0; i < calls.size(); ++i) {
      bool created = false;
      FutureState* s = acquire_locked(keys[i], created);
      result.emplace_back(s);
      if (!created) continue;
      auto& c = calls[i];
      std::sort(c.refs.begin(), c.refs.end());
      c.refs.erase(std::unique(c.refs.begin(), c.refs.end()), c.refs.end());
      fresh.push_back({.state = s,
                       .key = {},
                       .name = std::move(c.name),
                       .args = std::move(c.args),
                       .deps = std::move(c.refs),
                       .options = options});
    }
    // Queued under core->mu, so submits reach the scheduler in the order their keys were
    // registered: a task using a future that another thread has just created comes after it.
    if (!fresh.empty()) {
      core->push(Command{.type = Command::Type::submit, .tasks = std::move(fresh)});
    }
    return result;
  }

  // Sends the nodes `outputs` of `g` and the ancestors they need that this client holds no
  // future for, in one command, in the graph's order (a dependency order: a node refers only to
  // nodes added before it). Only the outputs are wanted; the scheduler keeps every other node
  // while its dependents need it. Caller holds g.mu.
  //
  // An unwanted task must reach the scheduler in the same Submit message as its dependents (it
  // releases an unwanted task nobody needs once the message is read). A graph of more than
  // kSubmitChunk tasks goes in chunks of that size: the I/O thread ends a message only at a
  // chunk's end (split_after), so a message holds whole chunks (and perhaps tasks queued before
  // the graph). A node needed by a later chunk is wanted by this client until the whole graph is
  // queued: its future (a "bridge") is dropped here after the push, so its Release follows every
  // chunk.
  std::vector<detail::FutureRef> submit_graph(const detail::GraphData& g,
                                              const std::vector<std::uint32_t>& outputs) {
    enum Mark : std::uint8_t { unseen, send, held };
    const std::size_t n = g.nodes.size();
    core->wait_for_room();
    std::vector<detail::FutureRef> result;
    result.reserve(outputs.size());
    std::vector<detail::FutureRef> keep;  // held ancestors and bridges: dropped after the push
    std::lock_guard lock(core->mu);
    check_open_locked();
    std::vector<std::uint8_t> mark(n, unseen);
    std::vector<FutureState*> wanted(n, nullptr);
    std::vector<std::uint32_t> stack;
    for (const std::uint32_t i : outputs) {
      bool created = false;
      FutureState* s = acquire_locked(g.nodes[i].key, created);
      result.emplace_back(s);
      if (mark[i] != unseen) continue;  // an output listed twice
      if (!created) {
        mark[i] = held;  // submitted (or wanted) before: the cluster knows it
        continue;
      }
      mark[i] = send;
      wanted[i] = s;
      stack.push_back(i);
    }
    while (!stack.empty()) {
      const std::uint32_t i = stack.back();
      stack.pop_back();
      for (const std::uint32_t d : g.nodes[i].node_deps) {
        if (mark[d] != unseen) continue;
        if (auto it = core->futures.find(std::string_view(g.nodes[d].key));
            it != core->futures.end()) {
          // Held: not sent again. Taken here too, so that a release of it already queued cannot
          // overtake the dependents' submit.
          (*it)->handles.fetch_add(1, std::memory_order_relaxed);
          keep.emplace_back(*it);
          mark[d] = held;
          continue;
        }
        mark[d] = send;
        stack.push_back(d);
      }
    }
    std::vector<std::uint32_t> order;
    for (std::uint32_t i = 0; i < n; ++i) {
      if (mark[i] == send) order.push_back(i);
    }
    if (order.size() > kSubmitChunk) {
      std::vector<std::uint32_t> chunk(n, 0);
      for (std::size_t p = 0; p < order.size(); ++p) {
        chunk[order[p]] = static_cast<std::uint32_t>(p / kSubmitChunk);
      }
      for (const std::uint32_t i : order) {
        for (const std::uint32_t d : g.nodes[i].node_deps) {
          if (mark[d] != send || wanted[d] != nullptr || chunk[d] == chunk[i]) continue;
          bool created = false;
          wanted[d] = acquire_locked(g.nodes[d].key, created);  // new: it was not held
          keep.emplace_back(wanted[d]);
        }
      }
    }
    std::vector<PendingTask> tasks;
    tasks.reserve(order.size());
    for (std::size_t p = 0; p < order.size(); ++p) {
      const detail::GraphNode& node = g.nodes[order[p]];
      FutureState* s = wanted[order[p]];
      tasks.push_back({.state = s,
                       .key = s ? std::string() : node.key,
                       .name = node.task,
                       .args = node.args,
                       .deps = node.deps,
                       .options = node.options,
                       .split_after = (p + 1) % kSubmitChunk == 0 || p + 1 == order.size()});
    }
    if (!tasks.empty()) {
      core->push(Command{.type = Command::Type::submit, .tasks = std::move(tasks)});
    }
    return result;
  }

  // The per-task options of a call under `o`, shared with the previous call when equal (one
  // block for a stream of submits with the same options). Caller holds core->mu.
  std::shared_ptr<const SubmitOptions> task_options_locked(const SubmitOptions& o) {
    SubmitOptions t = client_detail::task_options(o);
    if (!last_options || !(*last_options == t)) {
      last_options = std::make_shared<const SubmitOptions>(std::move(t));
    }
    return last_options;
  }

  // A future for a key this client may not have submitted: the scheduler is told it is wanted
  // (and recomputes it if released; an unknown key is reported lost).
  detail::FutureRef want(std::string key) {
    std::lock_guard lock(core->mu);
    check_open_locked();
    bool created = false;
    detail::FutureRef ref(acquire_locked(key, created));
    if (created) core->push(Command{.type = Command::Type::want, .key = std::move(key)});
    return ref;
  }

  // Caller holds core->mu.
  void check_open_locked() const {
    if (core->closed) throw ConnectionError("client is closed: " + core->closed_reason);
  }

  // One more handle on the state of `key` (which the caller adopts), made if there is none;
  // `created` says which. A state whose release is still queued is revived. Caller holds
  // core->mu.
  FutureState* acquire_locked(std::string_view key, bool& created) {
    auto it = core->futures.find(key);
    if (it != core->futures.end()) {
      (*it)->handles.fetch_add(1, std::memory_order_relaxed);
      created = false;
      return *it;
    }
    FutureState* s = FutureState::create(key, core.get());
    core->futures.insert(s);
    created = true;
    return s;
  }

  // Queues a command for the I/O thread, unless the client is closed.
  void push_if_open(Command c) {
    std::lock_guard lock(core->mu);
    check_open_locked();
    core->push(std::move(c));
  }

  // Sends `type` for the keys of `futures` (retry, fire_and_forget).
  void key_command(Command::Type type, std::vector<std::string> keys) {
    if (keys.empty()) return;
    push_if_open(Command{.type = type, .holders = std::move(keys)});
  }

  // Asks the scheduler; returns its JSON answer.
  std::string info(wire::InfoKind kind, std::vector<std::string> keys,
                   std::chrono::milliseconds timeout, std::uint64_t count = 0,
                   Command::Type type = Command::Type::info) {
    auto reply = std::make_shared<std::promise<std::string>>();
    auto answer = reply->get_future();
    push_if_open(Command{.type = type,
                         .holders = std::move(keys),
                         .info_kind = kind,
                         .count = count,
                         .reply = std::move(reply)});
    if (answer.wait_for(timeout) != std::future_status::ready) {
      throw TimeoutError("no answer from the scheduler at " + address + " within " +
                         std::to_string(timeout.count()) + " ms");
    }
    return answer.get();
  }

  // Sends a request that the scheduler answers when it is done (replicate, rebalance, restart);
  // returns its JSON answer. A refusal throws plexus::Error with the scheduler's message.
  std::string request(Command c, std::chrono::milliseconds timeout, const std::string& what) {
    auto reply = std::make_shared<std::promise<std::string>>();
    auto answer = reply->get_future();
    c.reply = std::move(reply);
    push_if_open(std::move(c));
    if (answer.wait_for(timeout) != std::future_status::ready) {
      throw TimeoutError(what + ": not done within " + std::to_string(timeout.count()) + " ms");
    }
    try {
      return answer.get();
    } catch (const SchedulerError& e) {
      throw Error(e.remote_message());
    }
  }

  // A scattered key is in memory on `where`: its future is finished (the value is fetched from
  // there when asked for). Caller holds core->mu.
  void mark_scattered_locked(std::string_view key, std::vector<std::string> where) {
    auto it = core->futures.find(key);
    if (it == core->futures.end()) return;
    FutureState* s = *it;
    s->status = FutureStatus::finished;
    s->error.reset();
    s->fetching = false;
    if (!s->has_value) s->holders = std::make_unique<std::vector<std::string>>(std::move(where));
    core->cv.notify_all();
  }

  // The workers a scatter may use, by data address, with the bytes each holds; waits (until
  // `deadline`) for one to join when there is none.
  std::vector<std::pair<std::string, std::uint64_t>> scatter_targets(
      const std::vector<std::string>& wanted, Clock::time_point deadline) {
    while (true) {
      const auto left = std::max(std::chrono::milliseconds(0),
                                 std::chrono::duration_cast<std::chrono::milliseconds>(
                                     deadline - Clock::now()));
      const auto j = nlohmann::json::parse(info(wire::InfoKind::scheduler_info, {}, left));
      std::vector<std::pair<std::string, std::uint64_t>> found;
      const auto& workers = j.at("workers");
      if (wanted.empty()) {
        for (const auto& [worker_address, w] : workers.items()) {
          if (!w.value("closing", false)) {
            found.emplace_back(worker_address, w.value("held_bytes", std::uint64_t{0}));
          }
        }
      } else {
        for (const auto& name : wanted) {
          bool matched = false;
          for (const auto& [worker_address, w] : workers.items()) {
            if (worker_address != name && w.value("name", "") != name) continue;
            matched = true;
            if (std::none_of(found.begin(), found.end(),
                             [&](const auto& f) { return f.first == worker_address; })) {
              found.emplace_back(worker_address, w.value("held_bytes", std::uint64_t{0}));
            }
          }
          if (!matched) {
            throw std::invalid_argument("scatter: no worker named or at '" + name + "'");
          }
        }
      }
      if (!found.empty()) return found;
      if (Clock::now() + std::chrono::milliseconds(20) >= deadline) {
        throw TimeoutError("scatter: no worker joined the cluster to put the values on");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::vector<detail::FutureRef> scatter(const std::string& type_name,
                                         std::vector<std::string> values,
                                         const ScatterOptions& o) {
    if (values.empty()) return {};
    const auto deadline = Clock::now() + o.timeout;
    auto left = [&] {
      return std::max(std::chrono::milliseconds(0),
                      std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                            Clock::now()));
    };
    // "list<int64>" values get "list-..." keys: short, and without characters a shell minds.
    const std::string prefix = type_name.substr(0, type_name.find('<'));
    std::vector<std::string> keys;
    keys.reserve(values.size());
    for (const auto& v : values) {
      keys.push_back(o.hash ? prefix + task_key(type_name, v).substr(type_name.size())
                            : random_task_key(prefix));
    }
    // The futures first: while they are held, no release of these keys can overtake this call.
    std::vector<detail::FutureRef> refs;
    refs.reserve(keys.size());
    {
      std::lock_guard lock(core->mu);
      check_open_locked();
      for (const auto& k : keys) {
        bool created = false;
        refs.emplace_back(acquire_locked(k, created));
      }
    }
    std::map<std::string, std::size_t> first;  // each key once, with the index of its value
    for (std::size_t i = 0; i < keys.size(); ++i) first.emplace(keys[i], i);
    std::vector<std::uint64_t> sizes(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) sizes[i] = values[i].size();
    std::vector<std::string> todo;
    if (o.hash) {
      std::vector<std::string> unique;
      for (const auto& [k, i] : first) unique.push_back(k);
      const auto held = nlohmann::json::parse(info(wire::InfoKind::hold, unique, left()));
      std::lock_guard lock(core->mu);
      for (const auto& [k, where] : held.items()) {
        mark_scattered_locked(k, where.get<std::vector<std::string>>());
      }
      for (const auto& k : unique) {
        if (!held.contains(k)) todo.push_back(k);
      }
    } else {
      for (const auto& [k, i] : first) todo.push_back(k);
    }
    if (todo.empty()) return refs;

    // Each value to the worker holding the fewest bytes so far, or everywhere (broadcast).
    auto targets = scatter_targets(o.workers, deadline);
    std::map<std::string, std::vector<std::string>> plan;  // worker address -> keys
    for (const auto& k : todo) {
      if (o.broadcast) {
        for (const auto& [worker_address, bytes] : targets) plan[worker_address].push_back(k);
        continue;
      }
      auto least = std::min_element(targets.begin(), targets.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
      plan[least->first].push_back(k);
      least->second += sizes[first[k]];
    }
    std::vector<std::pair<std::string, std::future<std::string>>> answers;
    for (const auto& [worker_address, ks] : plan) {
      std::vector<std::string> vs;
      vs.reserve(ks.size());
      // A value sent to one worker only is moved into its message, not copied.
      for (const auto& k : ks) {
        std::string& v = values[first[k]];
        vs.push_back(o.broadcast ? v : std::move(v));
      }
      auto reply = std::make_shared<std::promise<std::string>>();
      answers.emplace_back(worker_address, reply->get_future());
      push_if_open(Command{.type = Command::Type::put,
                           .key = worker_address,
                           .holders = ks,
                           .reply = std::move(reply),
                           .values = std::move(vs)});
    }
    std::map<std::string, std::vector<std::string>> where;  // key -> workers that kept it
    std::string failure;
    bool timed_out = false;
    for (auto& [worker_address, answer] : answers) {
      if (answer.wait_until(deadline) != std::future_status::ready) {
        timed_out = true;
        failure = "no answer from the worker at " + worker_address + " within " +
                  std::to_string(o.timeout.count()) + " ms";
        continue;
      }
      try {
        answer.get();
        for (const auto& k : plan[worker_address]) where[k].push_back(worker_address);
      } catch (const std::exception& e) {
        failure = "the worker at " + worker_address + " did not keep the values: " + e.what();
      }
    }
    // What arrived is registered even if some did not: the scheduler then frees it when these
    // futures go, instead of leaving it on the workers unknown. Once the scheduler has answered,
    // every client (e.g. another one scattering the same value) finds the keys there.
    if (!where.empty()) {
      auto reply = std::make_shared<std::promise<std::string>>();
      auto registered = reply->get_future();
      Command c{.type = Command::Type::scatter, .reply = std::move(reply)};
      for (auto& [k, ws] : where) {
        c.holders.push_back(k);
        c.sizes.push_back(sizes[first[k]]);
        c.where.push_back(ws);
      }
      {
        std::lock_guard lock(core->mu);
        check_open_locked();
        for (const auto& [k, ws] : where) mark_scattered_locked(k, ws);
        core->push(std::move(c));  // under mu: before any submit that uses these futures
      }
      if (registered.wait_until(deadline) != std::future_status::ready) {
        throw TimeoutError("scatter: the scheduler did not register the values within " +
                           std::to_string(o.timeout.count()) + " ms");
      }
      registered.get();
    }
    if (timed_out) throw TimeoutError("scatter: " + failure);
    if (!failure.empty()) throw Error("scatter: " + failure);
    return refs;
  }

  // The keys of `states`, once each finished (waited for until `timeout`); invalid_argument for
  // one that failed.
  std::vector<std::string> finished_keys(const std::vector<const FutureState*>& states,
                                         Clock::time_point deadline, const char* what) {
    const auto left = std::max(std::chrono::nanoseconds(0), deadline - Clock::now());
    if (!detail::futures_wait(states, detail::WaitFor::all, left)) {
      throw TimeoutError(std::string(what) + ": the futures were not done in time");
    }
    std::vector<std::string> keys;
    std::lock_guard lock(core->mu);
    for (const FutureState* s : states) {
      if (s->core != core.get()) {
        throw std::invalid_argument(std::string(what) + ": a future of another client");
      }
      if (s->status != FutureStatus::finished) {
        throw std::invalid_argument(std::string(what) + ": " + std::string(s->key()) + " is " +
                                    to_string(s->status) + ", not in memory");
      }
      keys.emplace_back(s->key());
    }
    return keys;
  }

  // ---- I/O thread ----
  void io_main(std::promise<void>& ready) {
    try {
      sched.emplace(comm::context(), zmq::socket_type::dealer);
      comm::configure(*sched, comm_opts.linger_ms, comm_opts.max_message_bytes);
      sched->connect(address);
      handshake();
      ready.set_value();
    } catch (...) {
      sched.reset();
      ready.set_exception(std::current_exception());
      return;
    }
    try {
      loop();
    } catch (const std::exception& e) {
      log->error("client I/O thread failed: {}", e.what());
      std::lock_guard lock(core->mu);
      fail_pending_locked(std::string("client I/O failed: ") + e.what());
    }
    if (!scheduler_gone) {
      out.add(wire::CreateGoodbye(out.fbb(), out.str("client closing")));
      flush();
    }
    peer_sockets.clear();
    sched.reset();
  }

  void handshake() {
    wire::OutBatch b;
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    auto name = b.str("client-" + std::to_string(::getpid()));
    auto h = b.str(host);
    b.add(wire::CreateHello(b.fbb(), wire::Role::client, wire::kProtocolVersion,
                            PLEXUS_SDK_ABI_VERSION, name, ::getpid(), 0, 0, h));
    auto bytes = b.finish();
    sched->send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    auto deadline = Clock::now() + connect_timeout;
    std::vector<zmq::message_t> frames;
    while (!stopping) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      zmq::pollitem_t items[1] = {{sched->handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::min(left, std::chrono::milliseconds(50)));
      if (!comm::recv_multipart(*sched, frames, true)) continue;
      const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), limits);
      if (!batch || !batch->messages() || batch->messages()->size() == 0) continue;
      const auto* first = batch->messages()->Get(0);
      if (first->msg_type() == wire::Msg::Refused) {
        throw ConnectionError("the scheduler at " + address + " refused this client: " +
                              std::string(wire::view(first->msg_as_Refused()->reason())));
      }
      if (first->msg_type() == wire::Msg::Welcome) {
        heartbeat = std::chrono::milliseconds(std::max(10u, first->msg_as_Welcome()->heartbeat_ms()));
        return;
      }
    }
    throw ConnectionError("could not reach the scheduler at " + address + " within " +
                          std::to_string(connect_timeout.count()) + " ms");
  }

  void loop() {
    std::vector<zmq::message_t> frames;
    std::vector<zmq::pollitem_t> items;
    std::vector<zmq::socket_t*> peer_list;
    peers_changed = true;
    last_heard = Clock::now();
    auto next_heartbeat = Clock::now() + heartbeat;
    while (!stopping) {
      if (peers_changed) {
        items = {{sched->handle(), 0, ZMQ_POLLIN, 0}, {nullptr, core->wake.fd(), ZMQ_POLLIN, 0}};
        peer_list.clear();
        for (auto& [a, s] : peer_sockets) {
          items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
          peer_list.push_back(&s);
        }
        peers_changed = false;
      }
      long timeout = fetches.empty() && puts.empty() ? static_cast<long>(heartbeat.count()) : 50;
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout));
      if (items[1].revents & ZMQ_POLLIN) core->wake.drain();
      for (int i = 0; i < 1024; ++i) {
        if (!comm::recv_multipart(*sched, frames, true)) break;
        on_scheduler(frames);
      }
      for (std::size_t p = 0; p < peer_list.size(); ++p) {
        if (!(items[2 + p].revents & ZMQ_POLLIN)) continue;
        while (comm::recv_multipart(*peer_list[p], frames, true)) on_data(frames);
      }
      run_commands();
      expire_fetches();
      auto now = Clock::now();
      if (!scheduler_gone && now >= next_heartbeat) {
        out.add(wire::CreateHeartbeat(out.fbb(), 0, 0, 0));
        next_heartbeat = now + heartbeat;
      }
      if (!scheduler_gone && now - last_heard > death_timeout) {
        scheduler_gone = true;
        log->error("no message from the scheduler at {} for {} ms", address, death_timeout.count());
        std::lock_guard lock(core->mu);
        fail_pending_locked("lost contact with the scheduler at " + address + " (no message for " +
                            std::to_string(death_timeout.count()) + " ms)");
      }
      flush();
    }
  }

  void run_commands() {
    std::vector<Command> cmds;
    {
      std::lock_guard lock(core->cmd_mu);
      cmds.swap(core->commands);
      released.swap(core->released);
      for (FutureState* s : released) s->release_queued = false;
      core->queued_tasks = 0;
    }
    core->room.notify_all();
    for (auto& c : cmds) {
      switch (c.type) {
        case Command::Type::submit: {
          std::string_view last_name;
          fb::Offset<fb::String> n;
          for (auto& t : c.tasks) {
            if (t.name != last_name || n.IsNull()) {  // a map repeats one name
              n = out.str(t.name);
              last_name = t.name;
            }
            specs.push_back(task_spec(t, n));
            if (t.split_after && specs.size() >= kSubmitChunk) {
              flush();
              n = {};
            }
          }
          break;
        }
        case Command::Type::cancel:
          cancels.push_back(out.str(c.key));
          break;
        case Command::Type::want:
          wants.push_back(out.str(c.key));
          break;
        case Command::Type::retry:
        case Command::Type::fire_and_forget: {
          const auto v = out.strs(c.holders);
          // In order with this turn's submits (already in `specs`, sent first) and before its
          // releases (sent after): flush the submits into the batch now.
          flush_specs();
          if (c.type == Command::Type::retry) {
            out.add(wire::CreateRetry(out.fbb(), v));
          } else {
            out.add(wire::CreateFireAndForget(out.fbb(), v));
          }
          break;
        }
        case Command::Type::fetch:
          start_fetch(c.key, std::move(c.holders), 0);
          break;
        case Command::Type::info: {
          const std::uint64_t id = next_request++;
          const auto kv = out.strs(c.holders);
          flush_specs();  // after this turn's submits: a request may name keys just submitted
          out.add(wire::CreateInfoRequest(out.fbb(), id, c.info_kind, kv, c.count));
          infos.emplace(id, std::move(c.reply));
          break;
        }
        case Command::Type::put:
          send_put(c);
          break;
        case Command::Type::scatter: {
          std::vector<fb::Offset<wire::ScatteredKey>> ks;
          for (std::size_t i = 0; i < c.holders.size(); ++i) {
            auto k = out.str(c.holders[i]);
            auto w = out.strs(c.where[i]);
            ks.push_back(wire::CreateScatteredKey(out.fbb(), k, c.sizes[i], w));
          }
          const std::uint64_t id = next_request++;
          flush_specs();  // in order with this turn's submits
          out.add(wire::CreateScatter(out.fbb(), id, out.fbb().CreateVector(ks)));
          infos.emplace(id, std::move(c.reply));
          break;
        }
        case Command::Type::replicate:
        case Command::Type::rebalance:
        case Command::Type::restart: {
          const std::uint64_t id = next_request++;
          const auto kv = out.strs(c.holders);
          const auto wv = out.strs(c.workers);
          flush_specs();  // after this turn's submits: the request may name keys just submitted
          if (c.type == Command::Type::replicate) {
            out.add(wire::CreateReplicate(out.fbb(), id, kv, static_cast<std::uint32_t>(c.count),
                                          wv));
          } else if (c.type == Command::Type::rebalance) {
            out.add(wire::CreateRebalance(out.fbb(), id, kv, wv));
          } else {
            out.add(wire::CreateRestart(out.fbb(), id));
          }
          infos.emplace(id, std::move(c.reply));
          break;
        }
        case Command::Type::worker_logs: {
          auto gather = std::make_shared<LogGather>();
          gather->reply = std::move(c.reply);
          gather->waiting = c.holders.size();
          if (gather->waiting == 0) {
            gather->reply->set_value("{}");
            break;
          }
          for (const auto& worker_address : c.holders) {
            const std::uint64_t id = next_request++;
            wire::OutBatch b;
            b.add(wire::CreateGetLogs(b.fbb(), id, c.count));
            auto bytes = b.finish();
            peer(worker_address)
                .send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
            log_requests.emplace(id, std::make_pair(worker_address, gather));
          }
          break;
        }
      }
    }
    // Releases go after this turn's submits (taken in the same critical section): a submit taken
    // now may depend on a released key, and the scheduler must see the dependent first.
    if (!released.empty()) {
      std::lock_guard lock(core->mu);
      std::lock_guard cmd_lock(core->cmd_mu);
      for (FutureState* s : released) {
        // Revived by a submit, or queued again (then handled next turn): keep it.
        if (s->handles.load(std::memory_order_acquire) != 0 || s->release_queued) continue;
        core->futures.erase(s->key());
        releases.push_back(out.str(s->key()));
        FutureState::destroy(s);
      }
      released.clear();
    }
  }

  // The wire form of a queued task: where its SubmitOptions reach the scheduler, for submit, map
  // and graph nodes alike.
  fb::Offset<wire::TaskSpec> task_spec(const PendingTask& t, fb::Offset<fb::String> name) {
    const SubmitOptions& o = *t.options;
    auto k = out.str(t.state ? t.state->key() : std::string_view(t.key));
    auto a = out.bytes(t.args);
    fb::Offset<fb::Vector<fb::Offset<fb::String>>> d;
    if (!t.deps.empty()) d = out.strs(t.deps);
    fb::Offset<fb::Vector<fb::Offset<fb::String>>> ws;
    fb::Offset<fb::Vector<fb::Offset<wire::Resource>>> rs;
    bool loose = false;
    if (!o.workers.empty() || !o.resources.empty()) {  // rare: the scheduler dedupes equal ones
      if (!o.workers.empty()) ws = out.strs(o.workers);
      if (!o.resources.empty()) {
        std::vector<fb::Offset<wire::Resource>> items;
        for (const auto& [rname, amount] : o.resources) {
          items.push_back(wire::CreateResource(out.fbb(), out.str(rname), amount));
        }
        rs = out.fbb().CreateVector(items);
      }
      loose = o.allow_other_workers;
    }
    return wire::CreateTaskSpec(out.fbb(), k, name, a, d, o.retries, o.priority, ws, loose, rs,
                                /*wanted=*/t.state != nullptr);
  }

  void flush_specs() {
    if (specs.empty()) return;
    out.add(wire::CreateSubmit(out.fbb(), out.fbb().CreateVector(specs)));
    specs.clear();
  }

  void flush() {
    flush_specs();
    if (!wants.empty()) {  // after the submits, before the releases
      out.add(wire::CreateWant(out.fbb(), out.fbb().CreateVector(wants)));
      wants.clear();
    }
    if (!releases.empty()) {
      out.add(wire::CreateRelease(out.fbb(), out.fbb().CreateVector(releases)));
      releases.clear();
    }
    if (!cancels.empty()) {
      out.add(wire::CreateCancel(out.fbb(), out.fbb().CreateVector(cancels)));
      cancels.clear();
    }
    if (out.empty() || !sched) return;
    auto bytes = out.finish();
    sched->send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    out.reset();
  }

  void on_scheduler(std::vector<zmq::message_t>& frames) {
    last_heard = Clock::now();
    const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), limits);
    if (!batch || !batch->messages()) {
      log->warn("malformed message from the scheduler dropped ({} bytes)", frames[0].size());
      return;
    }
    std::lock_guard lock(core->mu);
    for (const wire::Envelope* env : *batch->messages()) {
      if (!env) continue;
      switch (env->msg_type()) {
        case wire::Msg::Reports:
          if (const auto* items = env->msg_as_Reports()->items()) {
            for (const wire::KeyReport* r : *items) {
              if (r) on_report(*r);
            }
          }
          break;
        case wire::Msg::Shutdown:
          scheduler_gone = true;
          fail_pending_locked("the scheduler at " + address + " shut down");
          break;
        case wire::Msg::ProtocolError:
          log->warn("the scheduler dropped a message from this client: {}",
                    wire::view(env->msg_as_ProtocolError()->reason()));
          break;
        case wire::Msg::InfoReply: {
          const auto* r = env->msg_as_InfoReply();
          auto it = infos.find(r->request_id());
          if (it == infos.end()) break;
          if (r->error() && r->error()->size() > 0) {
            it->second->set_exception(std::make_exception_ptr(
                SchedulerError(TaskError::Kind::scheduler_error, "", "", "plexus::SchedulerError",
                               std::string(wire::view(r->error())), "")));
          } else {
            it->second->set_value(std::string(wire::view(r->json())));
          }
          infos.erase(it);
          break;
        }
        default:
          break;
      }
    }
    core->cv.notify_all();
  }

  // Caller holds core->mu.
  void on_report(const wire::KeyReport& r) {
    auto it = core->futures.find(wire::view(r.key()));
    if (it == core->futures.end()) return;
    FutureState* s = *it;
    switch (r.status()) {
      case wire::KeyStatus::memory:
        s->status = FutureStatus::finished;
        s->fetching = false;  // a value reported again may be fetched again
        if (r.inline_data()) {
          s->set_value(wire::view(r.data()));
        } else if (!s->has_value) {  // where to fetch it from
          s->holders = std::make_unique<std::vector<std::string>>(wire::strings(r.holders()));
        }
        break;
      case wire::KeyStatus::erred:
        s->status = FutureStatus::error;
        s->fail(wire::to_error_info(r.error()));
        break;
      case wire::KeyStatus::cancelled:
        s->status = FutureStatus::cancelled;
        s->fail(r.error() ? wire::to_error_info(r.error())
                          : ErrorInfo{ErrorKind::cancelled, "plexus::CancelledError",
                                      "the task was cancelled", "", ""});
        s->error->kind = ErrorKind::cancelled;
        break;
      case wire::KeyStatus::lost:
        s->status = FutureStatus::lost;
        s->fail(r.error() ? wire::to_error_info(r.error())
                          : ErrorInfo{ErrorKind::lost, "plexus::DataLostError", "the data is lost",
                                      "", ""});
        s->error->kind = ErrorKind::lost;
        break;
    }
  }

  // ---- fetching results held on workers ----
  struct Fetch {
    std::vector<std::string> holders;
    std::size_t index = 0;
    Clock::time_point deadline;
  };

  void start_fetch(const std::string& key, std::vector<std::string> holders, std::size_t index) {
    if (index >= holders.size()) {
      fetch_lost(key, holders);
      return;
    }
    wire::OutBatch b;
    auto k = b.str(key);
    std::uint64_t id = next_request++;
    b.add(wire::CreateGetData(b.fbb(), id, b.fbb().CreateVector(&k, 1)));
    auto bytes = b.finish();
    zmq::socket_t& s = peer(holders[index]);
    s.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    fetches[id] = {key, Fetch{std::move(holders), index, Clock::now() + core->fetch_timeout}};
  }

  // PutData to one worker: the batch, then the values as frames of their own (not copied again:
  // each frame owns its string until ZeroMQ has sent it).
  void send_put(Command& c) {
    const std::uint64_t id = next_request++;
    wire::OutBatch b;
    b.add(wire::CreatePutData(b.fbb(), id, b.strs(c.holders)));
    auto bytes = b.finish();
    zmq::socket_t& s = peer(c.key);
    s.send(zmq::buffer(bytes.data(), bytes.size()),
           c.values.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore);
    for (std::size_t i = 0; i < c.values.size(); ++i) {
      auto* owned = new std::string(std::move(c.values[i]));
      zmq::message_t frame(owned->data(), owned->size(),
                           [](void*, void* hint) { delete static_cast<std::string*>(hint); },
                           owned);
      s.send(frame, i + 1 < c.values.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    puts.emplace(id, Put{std::move(c.reply), Clock::now() + core->fetch_timeout});
  }

  void fetch_lost(const std::string& key, const std::vector<std::string>& holders) {
    std::string where;
    for (const auto& h : holders) where += (where.empty() ? "" : ", ") + h;
    std::lock_guard lock(core->mu);
    auto it = core->futures.find(std::string_view(key));
    if (it == core->futures.end()) return;
    FutureState* s = *it;
    s->status = FutureStatus::lost;
    s->fail(ErrorInfo{ErrorKind::lost, "plexus::DataLostError",
                      "the result could not be fetched from any worker holding it (" +
                          (where.empty() ? std::string("none") : where) + ")",
                      "", ""});
    core->cv.notify_all();
  }

  void expire_fetches() {
    auto now = Clock::now();
    for (auto it = puts.begin(); it != puts.end();) {
      if (it->second.deadline <= now) {
        it->second.reply->set_exception(
            std::make_exception_ptr(TimeoutError("no answer from the worker")));
        it = puts.erase(it);
      } else {
        ++it;
      }
    }
    std::vector<std::pair<std::string, Fetch>> retry;
    for (auto it = fetches.begin(); it != fetches.end();) {
      if (it->second.second.deadline <= now) {
        log->warn("no answer from {} for {}", it->second.second.holders[it->second.second.index],
                  it->second.first);
        retry.push_back(std::move(it->second));
        it = fetches.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [key, f] : retry) start_fetch(key, std::move(f.holders), f.index + 1);
  }

  zmq::socket_t& peer(const std::string& address_) {
    auto it = peer_sockets.find(address_);
    if (it != peer_sockets.end()) return it->second;
    zmq::socket_t s(comm::context(), zmq::socket_type::dealer);
    comm::configure(s, 0, comm_opts.max_message_bytes);
    s.connect(address_);
    peers_changed = true;
    return peer_sockets.emplace(address_, std::move(s)).first->second;
  }

  void on_data(std::vector<zmq::message_t>& frames) {
    const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), limits);
    if (!batch || !batch->messages()) return;
    for (const wire::Envelope* env : *batch->messages()) {
      if (env && env->msg_type() == wire::Msg::Logs) {
        const auto* m = env->msg_as_Logs();
        auto it = log_requests.find(m->request_id());
        if (it == log_requests.end()) continue;
        auto [worker_address, gather] = std::move(it->second);
        log_requests.erase(it);
        gather->lines[worker_address] = wire::strings(m->lines());
        if (--gather->waiting == 0) gather->reply->set_value(gather->lines.dump());
        continue;
      }
      if (env && env->msg_type() == wire::Msg::DataStored) {
        const auto* m = env->msg_as_DataStored();
        auto it = puts.find(m->request_id());
        if (it == puts.end()) continue;
        if (m->error() && m->error()->size() > 0) {
          it->second.reply->set_exception(
              std::make_exception_ptr(Error(std::string(wire::view(m->error())))));
        } else {
          it->second.reply->set_value("");
        }
        puts.erase(it);
        continue;
      }
      if (!env || env->msg_type() != wire::Msg::DataReply) continue;
      const auto* reply = env->msg_as_DataReply();
      auto it = fetches.find(reply->request_id());
      if (it == fetches.end()) continue;
      auto [key, f] = std::move(it->second);
      fetches.erase(it);
      auto found = wire::strings(reply->found());
      if (found.size() == 1 && frames.size() >= 2 && found[0] == key) {
        std::lock_guard lock(core->mu);
        auto fit = core->futures.find(std::string_view(key));
        if (fit != core->futures.end()) {
          (*fit)->set_value(std::string_view(static_cast<const char*>(frames[1].data()),
                                             frames[1].size()));
        }
        core->cv.notify_all();
      } else {
        start_fetch(key, std::move(f.holders), f.index + 1);
      }
    }
  }

  config::Config config;
  std::string address;
  struct CoreUnref {
    void operator()(ClientCore* c) const noexcept { c->unref(); }
  };
  std::unique_ptr<ClientCore, CoreUnref> core;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<LocalCluster> cluster;
  std::shared_ptr<const SubmitOptions> last_options;  // guarded by core->mu
  std::vector<std::string> local_plugin_path;  // plugin directories given to the LocalCluster
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds death_timeout{60000};
  std::chrono::milliseconds heartbeat{500};
  Clock::time_point last_heard = Clock::now();
  const comm::CommOptions comm_opts = comm::comm_options(config);
  const wire::VerifyLimits& limits = comm_opts.limits;
  std::thread io;
  std::atomic<bool> stopping{false};

  // I/O thread only.
  std::optional<zmq::socket_t> sched;
  bool scheduler_gone = false;
  wire::OutBatch out;
  std::vector<fb::Offset<wire::TaskSpec>> specs;
  std::vector<fb::Offset<fb::String>> releases;
  std::vector<FutureState*> released;  // swapped with core->released each turn
  std::vector<fb::Offset<fb::String>> cancels;
  std::vector<fb::Offset<fb::String>> wants;
  std::unordered_map<std::uint64_t, std::pair<std::string, Fetch>> fetches;
  // PutData sent, by request id, until the worker's DataStored.
  struct Put {
    std::shared_ptr<std::promise<std::string>> reply;
    Clock::time_point deadline;
  };
  std::unordered_map<std::uint64_t, Put> puts;
  std::unordered_map<std::uint64_t, std::shared_ptr<std::promise<std::string>>> infos;
  // One get_worker_logs call: answered once every worker it asked has replied.
  struct LogGather {
    std::shared_ptr<std::promise<std::string>> reply;
    std::size_t waiting = 0;
    nlohmann::json lines = nlohmann::json::object();  // worker address -> its lines
  };
  std::unordered_map<std::uint64_t, std::pair<std::string, std::shared_ptr<LogGather>>>
      log_requests;
  std::uint64_t next_request = 1;
  std::unordered_map<std::string, zmq::socket_t> peer_sockets;
  bool peers_changed = true;
};

// ---------------------------------------------------------------------------------------------

namespace {
config::Config load_config(const std::optional<std::string>& file) {
  return config::Config::load(file);
}
}  // namespace

Client::Client() : Client(LocalClusterOptions{}) {}

Client::Client(LocalClusterOptions options) {
  auto cfg = load_config(options.config_file);
  auto cluster = std::make_unique<LocalCluster>(cfg, options);
  impl_ = std::make_unique<Impl>(cfg, cluster->scheduler_address());
  impl_->cluster = std::move(cluster);
  impl_->local_plugin_path = options.plugin_path;
}

Client::Client(const std::string& address) {
  auto cfg = load_config(std::nullopt);
  comm::transport_of(address);  // throws a clear error for a malformed address
  impl_ = std::make_unique<Impl>(cfg, address);
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client Client::from_scheduler_file(const std::string& path) {
  std::ifstream in(path);
  std::string address;
  if (!in || !std::getline(in, address) || address.empty()) {
    throw ConnectionError("cannot read a scheduler address from '" + path + "'");
  }
  return Client(address);
}

Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() {
  if (impl_) impl_->close();
}

void Client::close() {
  if (impl_) impl_->close();
}

const std::string& Client::scheduler_address() const { return impl_->address; }

void Client::retry_states(const std::vector<const detail::FutureState*>& states) {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(impl_->core->mu);
    for (const detail::FutureState* cs : states) {
      auto* s = const_cast<detail::FutureState*>(cs);
      if (!s || s->core != impl_->core.get() || s->status != FutureStatus::error) continue;
      s->status = FutureStatus::pending;  // until the scheduler reports the new outcome
      s->error.reset();
      keys.emplace_back(s->key());
    }
  }
  impl_->key_command(Command::Type::retry, std::move(keys));
}

void Client::fire_and_forget_states(const std::vector<const detail::FutureState*>& states) {
  std::vector<std::string> keys;
  for (const detail::FutureState* s : states) {
    if (s && s->core == impl_->core.get()) keys.emplace_back(s->key());
  }
  impl_->key_command(Command::Type::fire_and_forget, std::move(keys));
}

SchedulerInfo Client::scheduler_info(std::chrono::milliseconds timeout) {
  const auto j = nlohmann::json::parse(impl_->info(wire::InfoKind::scheduler_info, {}, timeout));
  SchedulerInfo out;
  out.id = j.value("id", "");
  out.address = j.value("address", "");
  out.tasks = j.value("tasks", std::size_t{0});
  out.queued = j.value("queued", std::size_t{0});
  for (const auto& [address, w] : j.at("workers").items()) {
    WorkerState ws;
    ws.address = address;
    ws.name = w.value("name", "");
    ws.nthreads = w.value("nthreads", 0u);
    ws.processing = w.value("processing", std::size_t{0});
    ws.held = w.value("held", std::size_t{0});
    ws.held_bytes = w.value("held_bytes", std::uint64_t{0});
    ws.closing = w.value("closing", false);
    if (auto r = w.find("resources"); r != w.end() && r->is_object()) {
      for (const auto& [rname, amount] : r->items()) {
        if (amount.is_number()) ws.resources[rname] = amount.get<double>();
      }
    }
    ws.paused = w.value("paused", false);
    ws.managed_bytes = w.value("managed_bytes", std::uint64_t{0});
    ws.spilled_bytes = w.value("spilled_bytes", std::uint64_t{0});
    ws.spill_count = w.value("spill_count", std::uint64_t{0});
    ws.process_bytes = w.value("process_bytes", std::uint64_t{0});
    ws.memory_limit = w.value("memory_limit", std::uint64_t{0});
    out.workers.push_back(std::move(ws));
  }
  return out;
}

std::map<std::string, std::uint32_t> Client::nthreads(std::chrono::milliseconds timeout) {
  std::map<std::string, std::uint32_t> out;
  for (const auto& w : scheduler_info(timeout).workers) out[w.address] = w.nthreads;
  return out;
}

namespace {
std::map<std::string, std::vector<std::string>> string_lists(const std::string& text) {
  std::map<std::string, std::vector<std::string>> out;
  const auto j = nlohmann::json::parse(text);  // named: items() only views it
  for (const auto& [k, v] : j.items()) {
    out[k] = v.get<std::vector<std::string>>();
  }
  return out;
}
}  // namespace

std::map<std::string, std::vector<std::string>> Client::who_has(
    const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  return string_lists(impl_->info(wire::InfoKind::who_has, keys, timeout));
}

std::map<std::string, std::vector<std::string>> Client::has_what(
    const std::vector<std::string>& workers, std::chrono::milliseconds timeout) {
  return string_lists(impl_->info(wire::InfoKind::has_what, workers, timeout));
}

detail::FutureRef Client::future_of_key(std::string key) { return impl_->want(std::move(key)); }

namespace {
constexpr auto kDatasetTimeout = std::chrono::seconds(30);
}  // namespace

void Client::publish_keys(const std::string& name, std::vector<std::string> keys, bool replace) {
  keys.insert(keys.begin(), name);
  try {
    impl_->info(wire::InfoKind::publish, std::move(keys), kDatasetTimeout, replace ? 1 : 0);
  } catch (const SchedulerError& e) {
    throw std::invalid_argument("publish_dataset: " + e.remote_message());
  }
}

std::vector<detail::FutureRef> Client::dataset_refs(const std::string& name) {
  std::string text;
  try {
    text = impl_->info(wire::InfoKind::dataset, {name}, kDatasetTimeout);
  } catch (const SchedulerError& e) {
    throw std::out_of_range("get_dataset: " + e.remote_message());
  }
  std::vector<detail::FutureRef> out;
  for (const auto& key : nlohmann::json::parse(text)) out.push_back(impl_->want(key.get<std::string>()));
  return out;
}

std::vector<std::string> Client::list_datasets() {
  return nlohmann::json::parse(impl_->info(wire::InfoKind::datasets, {}, kDatasetTimeout))
      .get<std::vector<std::string>>();
}

void Client::unpublish_dataset(const std::string& name) {
  try {
    impl_->info(wire::InfoKind::unpublish, {name}, kDatasetTimeout);
  } catch (const SchedulerError& e) {
    throw std::out_of_range("unpublish_dataset: " + e.remote_message());
  }
}

std::string Client::run_locally(std::string_view key, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  };
  const auto spec =
      nlohmann::json::parse(impl_->info(wire::InfoKind::task, {std::string(key)}, left()));
  const std::string name = spec.at("name").get<std::string>();
  const std::string args = from_hex(spec.at("args").get<std::string>());
  // The dependencies' values, fetched (recomputed if released) through futures of our own.
  std::vector<detail::FutureRef> deps;
  std::map<std::string, std::string_view, std::less<>> values;
  for (const auto& dk : spec.at("deps")) {
    deps.push_back(impl_->want(dk.get<std::string>()));
    values[dk.get<std::string>()] = detail::future_value(*deps.back(), left());
  }
  RefSource refs{&values, [](void* c, std::string_view k, std::string_view* v) {
                   auto& m = *static_cast<std::map<std::string, std::string_view, std::less<>>*>(c);
                   auto it = m.find(k);
                   if (it == m.end()) return false;
                   *v = it->second;
                   return true;
                 }};
  // Loaded here, in this process, and called on this thread: a debugger can stop inside it.
  std::vector<std::string> path = impl_->config.get_string_list("worker.plugin-path");
  path.insert(path.begin(), impl_->local_plugin_path.begin(), impl_->local_plugin_path.end());
  worker::PluginLoader loader(worker::default_plugin_path(path));
  worker::CallResult r = loader.call(name, args, &refs);
  if (r.ok) return std::move(r.value);
  std::rethrow_exception(make_task_error(std::string(key), *r.error));
}

void Client::recreate_error_locally_key(std::string_view key, FutureStatus status,
                                        std::chrono::milliseconds timeout) {
  if (status != FutureStatus::error) {
    throw std::invalid_argument("recreate_error_locally: " + std::string(key) +
                                " did not fail (it is " + to_string(status) + ")");
  }
  run_locally(key, timeout);
  throw Error("recreate_error_locally: " + std::string(key) +
              " succeeded when run in this process; it failed on the cluster");
}

std::vector<std::string> Client::get_scheduler_logs(std::size_t n,
                                                    std::chrono::milliseconds timeout) {
  return nlohmann::json::parse(impl_->info(wire::InfoKind::logs, {}, timeout, n))
      .get<std::vector<std::string>>();
}

std::map<std::string, std::vector<std::string>> Client::get_worker_logs(
    std::size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::string> addresses;
  for (const auto& w : scheduler_info(timeout).workers) addresses.push_back(w.address);
  const auto left = std::max(std::chrono::milliseconds(0),
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 deadline - Clock::now()));
  return string_lists(impl_->info(wire::InfoKind::logs, std::move(addresses), left, n,
                                  Command::Type::worker_logs));
}

void Client::wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t seen = 0;
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() > 0) {
      seen = scheduler_info(left).workers.size();
      if (seen >= n) return;
    }
    if (Clock::now() + std::chrono::milliseconds(20) >= deadline) {
      throw TimeoutError("waited " + std::to_string(timeout.count()) + " ms for " +
                         std::to_string(n) + " workers; " + std::to_string(seen) + " joined");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<detail::FutureRef> Client::scatter_encoded(const std::string& type_name,
                                                       std::vector<std::string> values,
                                                       const ScatterOptions& options) {
  return impl_->scatter(type_name, std::move(values), options);
}

void Client::replicate_states(const std::vector<const detail::FutureState*>& states,
                              std::optional<std::size_t> n,
                              const std::vector<std::string>& workers,
                              std::chrono::milliseconds timeout) {
  if (n && *n == 0) throw std::invalid_argument("replicate: n must be at least 1");
  if (states.empty()) return;
  const auto deadline = Clock::now() + timeout;
  auto keys = impl_->finished_keys(states, deadline, "replicate");
  const auto left = std::max(std::chrono::milliseconds(0),
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 deadline - Clock::now()));
  const auto answer = nlohmann::json::parse(impl_->request(
      Command{.type = Command::Type::replicate,
              .holders = std::move(keys),
              .count = n ? std::min<std::size_t>(*n, UINT32_MAX) : 0,
              .workers = workers},
      left, "replicate"));
  if (const auto failed = answer.value("failed", 0u); failed > 0) {
    throw Error("replicate: " + std::to_string(failed) + " of " +
                std::to_string(failed + answer.value("copied", 0u)) +
                " copies could not be made (no holder could serve them, or the receiver left)");
  }
}

void Client::rebalance_states(const std::vector<const detail::FutureState*>& states,
                              const std::vector<std::string>& workers,
                              std::chrono::milliseconds timeout, bool some) {
  if (some && states.empty()) return;
  const auto deadline = Clock::now() + timeout;
  std::vector<std::string> keys;
  if (some) keys = impl_->finished_keys(states, deadline, "rebalance");
  const auto left = std::max(std::chrono::milliseconds(0),
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 deadline - Clock::now()));
  const auto answer = nlohmann::json::parse(impl_->request(
      Command{.type = Command::Type::rebalance, .holders = std::move(keys), .workers = workers},
      left, "rebalance"));
  if (const auto failed = answer.value("failed", 0u); failed > 0) {
    throw Error("rebalance: " + std::to_string(failed) + " of " +
                std::to_string(failed + answer.value("moved", 0u)) +
                " moves could not be made (no holder could serve them, or the receiver left)");
  }
}

void Client::restart(std::chrono::milliseconds timeout) {
  impl_->request(Command{.type = Command::Type::restart}, timeout, "restart");
}

std::vector<detail::FutureRef> Client::compute_nodes(const Graph* graph,
                                                     const std::vector<const AnyNode*>& outputs,
                                                     bool persist, const char* what) {
  if (outputs.empty()) return {};
  detail::GraphData* g = nullptr;
  for (const AnyNode* node : outputs) {
    if (!node->valid()) {
      throw std::invalid_argument(std::string(what) +
                                  ": an empty (default-constructed) Node; nodes come from "
                                  "Graph::add");
    }
    if (graph && node->graph_ != graph->data_) {
      throw std::invalid_argument(std::string(what) + ": node " + std::string(node->key()) +
                                  " belongs to another Graph than the one given");
    }
    if (g && node->graph_.get() != g) {
      throw std::invalid_argument(std::string(what) + ": node " + std::string(node->key()) +
                                  " belongs to another Graph than node " +
                                  std::string(outputs.front()->key()) +
                                  "; nodes computed together must share one Graph");
    }
    g = node->graph_.get();
  }
  std::vector<std::uint32_t> indices;
  indices.reserve(outputs.size());
  for (const AnyNode* node : outputs) indices.push_back(node->index_);
  std::vector<detail::FutureRef> refs;
  std::vector<detail::FutureRef> replaced;  // dropped after g->mu is let go
  {
    std::lock_guard lock(g->mu);
    refs = impl_->submit_graph(*g, indices);
    if (persist) {
      for (std::size_t i = 0; i < indices.size(); ++i) {
        replaced.push_back(std::exchange(g->nodes[indices[i]].persisted, refs[i]));
      }
    }
  }
  return refs;
}

std::vector<Future<Encoded>> Client::compute(const Graph& graph) {
  const std::vector<AnyNode> sinks = graph.sinks();
  std::vector<const AnyNode*> outputs;
  outputs.reserve(sinks.size());
  for (const AnyNode& node : sinks) outputs.push_back(&node);
  std::vector<Future<Encoded>> out;
  out.reserve(sinks.size());
  for (auto& r : compute_nodes(&graph, outputs, false, "compute")) out.emplace_back(std::move(r));
  return out;
}

Graph Client::persist(const Graph& graph) {
  const std::vector<AnyNode> sinks = graph.sinks();
  std::vector<const AnyNode*> outputs;
  outputs.reserve(sinks.size());
  for (const AnyNode& node : sinks) outputs.push_back(&node);
  compute_nodes(&graph, outputs, true, "persist");
  return graph;
}

detail::FutureRef Client::submit_encoded(const SubmitOptions& options, EncodedCall call) {
  std::vector<EncodedCall> calls;
  calls.push_back(std::move(call));
  return std::move(impl_->submit(options, std::move(calls), /*single=*/true).front());
}

std::vector<detail::FutureRef> Client::submit_encoded_many(const SubmitOptions& options,
                                                           std::vector<EncodedCall> calls) {
  return impl_->submit(options, std::move(calls), /*single=*/false);
}

}  // namespace plexus
