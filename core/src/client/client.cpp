#include <plexus/client.hpp>

#include <plexus/abi.h>
#include <plexus/client/local_cluster.hpp>
#include <plexus/common/key_map.hpp>
#include <plexus/common/logging.hpp>
#include <plexus/common/task_key.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/comm_options.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>

#include <unistd.h>

#include <algorithm>
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
  std::shared_ptr<detail::FutureState> state;  // its key; held until the task is sent
  std::string name;
  std::string args;
  std::vector<std::string> deps;
};

struct Command {
  enum class Type { submit, fetch, cancel } type;
  std::vector<PendingTask> tasks;  // submit
  std::uint32_t retries = 0;
  std::int32_t priority = 0;
  std::string key;                 // fetch, cancel
  std::vector<std::string> holders;  // fetch
};

}  // namespace

// Shared by the Client, its I/O thread and every FutureState, so that futures outlive the client.
struct ClientCore {
  // Guards every FutureState's mutable fields and `futures`.
  std::mutex mu;
  std::condition_variable cv;
  // One entry per key with a live future, or whose release the I/O thread has not sent yet.
  struct Entry {
    std::weak_ptr<detail::FutureState> state;
    // FutureStates created for this key minus releases processed: the scheduler is told to
    // release the key only when this reaches zero, so a future re-created for a key while the
    // old one's release is still queued keeps the key alive.
    std::uint32_t refs = 0;
  };
  KeyMap<Entry> futures;
  bool closed = false;
  std::string closed_reason;

  std::mutex cmd_mu;
  std::vector<Command> commands;    // guarded by cmd_mu
  std::vector<std::string> released;  // keys of destroyed FutureStates; guarded by cmd_mu
  comm::Wakeup wake;
  std::chrono::milliseconds fetch_timeout{10000};

  void push(Command c) {
    bool was_empty;
    {
      std::lock_guard lock(cmd_mu);
      was_empty = commands.empty() && released.empty();
      commands.push_back(std::move(c));
    }
    // The I/O thread takes the whole queue at once: only the first entry needs a wake-up.
    if (was_empty) wake.notify();
  }
  void push_release(const std::string& key) {
    bool was_empty;
    {
      std::lock_guard lock(cmd_mu);
      was_empty = commands.empty() && released.empty();
      released.push_back(key);
    }
    if (was_empty) wake.notify();
  }
};

namespace detail {

class FutureState {
 public:
  FutureState(std::string k, std::shared_ptr<ClientCore> c) : key(std::move(k)), core(std::move(c)) {}
  ~FutureState() {
    // Never lock core->mu here: the last reference may drop while it is held.
    core->push_release(key);
  }

  const std::string key;
  const std::shared_ptr<ClientCore> core;
  // Guarded by core->mu. Rarely needed parts live out of line to keep a future small.
  FutureStatus status = FutureStatus::pending;
  bool fetching = false;
  std::shared_ptr<const std::string> value;
  std::unique_ptr<std::vector<std::string>> holders;  // when the value must be fetched
  std::unique_ptr<ErrorInfo> error;                   // when status is not finished

  void fail(ErrorInfo e) { error = std::make_unique<ErrorInfo>(std::move(e)); }
  const ErrorInfo& error_info() const {
    static const ErrorInfo unknown{ErrorKind::scheduler_error, "", "no error details", "", ""};
    return error ? *error : unknown;
  }
};

const std::string& future_key(const FutureState& s) { return s.key; }

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
                     " ms waiting for " + s.key);
}
}  // namespace

bool future_wait(const FutureState& s, Timeout timeout) {
  std::unique_lock lock(s.core->mu);
  return wait_until(lock, s, timeout, [&] { return s.status != FutureStatus::pending; });
}

std::shared_ptr<const std::string> future_value(const FutureState& cs, Timeout timeout) {
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
  if (s.status == FutureStatus::finished && !s.value) {
    if (!s.fetching) {
      s.fetching = true;
      Command c{Command::Type::fetch, {}, 0, 0, s.key,
                s.holders ? *s.holders : std::vector<std::string>{}};
      lock.unlock();
      s.core->push(std::move(c));
      lock.lock();
    }
    if (!wait_until(lock, s, left(),
                    [&] { return s.value != nullptr || s.status != FutureStatus::finished; })) {
      throw_timeout(s, timeout);
    }
  }
  if (s.status == FutureStatus::finished && s.value) return s.value;
  std::rethrow_exception(make_task_error(s.key, s.error_info()));
}

std::exception_ptr future_exception(const FutureState& s, Timeout timeout) {
  std::unique_lock lock(s.core->mu);
  if (!wait_until(lock, s, timeout, [&] { return s.status != FutureStatus::pending; })) {
    throw_timeout(s, timeout);
  }
  if (s.status == FutureStatus::finished) return nullptr;
  return make_task_error(s.key, s.error_info());
}

void future_cancel(const FutureState& s) {
  s.core->push(Command{Command::Type::cancel, {}, 0, 0, s.key, {}});
}

void throw_result_type_error(const FutureState& s, const std::string& type,
                             const std::string& what) {
  throw ResultTypeError("result of " + s.key + " does not decode as " + type + ": " + what);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------

struct Client::Impl {
  Impl(const config::Config& cfg, std::string addr)
      : config(cfg), address(std::move(addr)), core(std::make_shared<ClientCore>()),
        log(logger("client")) {
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
    std::lock_guard lock(core->mu);
    fail_pending_locked("the client was closed");
    if (cluster) cluster.reset();
  }

  void stop_io() {
    if (io.joinable()) {
      stopping = true;
      core->wake.notify();
      io.join();
    }
  }

  // Marks every pending future failed; caller holds core->mu.
  void fail_pending_locked(const std::string& reason) {
    core->closed = true;
    core->closed_reason = reason;
    for (auto& [k, entry] : core->futures) {
      if (auto s = entry.state.lock()) {
        if (s->status == FutureStatus::pending ||
            (s->status == FutureStatus::finished && !s->value)) {
          s->status = FutureStatus::error;
          s->fail(ErrorInfo{ErrorKind::scheduler_error, "plexus::ConnectionError", reason, "", ""});
        }
        dropped.push_back(std::move(s));  // destroyed outside the lock
      }
    }
    core->cv.notify_all();
  }

  // ---- user threads ----
  std::vector<std::shared_ptr<detail::FutureState>> submit(const SubmitOptions& o,
                                                           std::vector<EncodedCall> calls) {
    std::vector<PendingTask> fresh;
    std::vector<std::shared_ptr<detail::FutureState>> result;
    result.reserve(calls.size());
    std::vector<std::string> keys;
    keys.reserve(calls.size());
    for (auto& c : calls) {
      if (c.name.find('.') == std::string::npos) {
        throw std::invalid_argument("task name '" + c.name +
                                    "' must be '<plugin>.<task>', e.g. 'math.inc'");
      }
      if (!o.key.empty() && calls.size() == 1) {
        keys.push_back(o.key);
      } else if (o.pure) {
        keys.push_back(task_key(c.name, c.args));
      } else {
        keys.push_back(random_task_key(c.name));
      }
    }
    {
      std::lock_guard lock(core->mu);
      if (core->closed) throw ConnectionError("client is closed: " + core->closed_reason);
      for (std::size_t i = 0; i < calls.size(); ++i) {
        auto& entry = core->futures[keys[i]];
        auto s = entry.state.lock();
        if (!s) {
          s = std::make_shared<detail::FutureState>(std::move(keys[i]), core);
          entry.state = s;
          ++entry.refs;  // robin_map: `entry` is a reference into the slot
          auto& c = calls[i];
          std::sort(c.refs.begin(), c.refs.end());
          c.refs.erase(std::unique(c.refs.begin(), c.refs.end()), c.refs.end());
          fresh.push_back({s, std::move(c.name), std::move(c.args), std::move(c.refs)});
        }
        result.push_back(std::move(s));
      }
    }
    if (!fresh.empty()) {
      Command cmd{Command::Type::submit, std::move(fresh), o.retries, o.priority, {}, {}};
      core->push(std::move(cmd));
    }
    return result;
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
      long timeout = fetches.empty() ? static_cast<long>(heartbeat.count()) : 50;
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
      dropped.clear();
    }
  }

  void run_commands() {
    std::vector<Command> cmds;
    {
      std::lock_guard lock(core->cmd_mu);
      cmds.swap(core->commands);
      released.swap(core->released);
    }
    for (auto& c : cmds) {
      switch (c.type) {
        case Command::Type::submit: {
          for (auto& t : c.tasks) {
            auto k = out.str(t.state->key);
            auto n = out.str(t.name);
            auto a = out.bytes(t.args);
            fb::Offset<fb::Vector<fb::Offset<fb::String>>> d;
            if (!t.deps.empty()) {
              std::vector<fb::Offset<fb::String>> ds;
              for (auto& x : t.deps) ds.push_back(out.str(x));
              d = out.fbb().CreateVector(ds);
            }
            specs.push_back(wire::CreateTaskSpec(out.fbb(), k, n, a, d, c.retries, c.priority));
            // Keep messages moderate so the scheduler can start while the rest streams in.
            if (specs.size() >= 8192) flush();
          }
          break;
        }
        case Command::Type::cancel:
          cancels.push_back(out.str(c.key));
          break;
        case Command::Type::fetch:
          start_fetch(c.key, std::move(c.holders), 0);
          break;
      }
    }
    // Releases go after this turn's submits: a submit taken in the same turn may depend on a
    // released key, and the scheduler must see the dependent before the release.
    if (!released.empty()) {
      std::lock_guard lock(core->mu);
      for (const auto& key : released) release(key);
      released.clear();
    }
  }

  // One FutureState for `key` is gone; caller holds core->mu.
  void release(const std::string& key) {
    auto it = core->futures.find(key);
    if (it != core->futures.end() && --it.value().refs == 0) {
      core->futures.erase(it);
      releases.push_back(out.str(key));
    }
  }

  void flush() {
    if (!specs.empty()) {
      out.add(wire::CreateSubmit(out.fbb(), out.fbb().CreateVector(specs)));
      specs.clear();
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
    auto s = it->second.state.lock();
    if (!s) return;
    switch (r.status()) {
      case wire::KeyStatus::memory:
        s->status = FutureStatus::finished;
        s->fetching = false;  // a value reported again may be fetched again
        if (r.inline_data()) {
          s->value = std::make_shared<const std::string>(wire::view(r.data()));
        } else {  // where to fetch it from
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
    dropped.push_back(std::move(s));
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

  void fetch_lost(const std::string& key, const std::vector<std::string>& holders) {
    std::string where;
    for (const auto& h : holders) where += (where.empty() ? "" : ", ") + h;
    std::lock_guard lock(core->mu);
    auto it = core->futures.find(key);
    if (it == core->futures.end()) return;
    if (auto s = it->second.state.lock()) {
      s->status = FutureStatus::lost;
      s->fail(ErrorInfo{ErrorKind::lost, "plexus::DataLostError",
                        "the result could not be fetched from any worker holding it (" +
                            (where.empty() ? std::string("none") : where) + ")",
                        "", ""});
      dropped.push_back(std::move(s));
    }
    core->cv.notify_all();
  }

  void expire_fetches() {
    auto now = Clock::now();
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
      if (!env || env->msg_type() != wire::Msg::DataReply) continue;
      const auto* reply = env->msg_as_DataReply();
      auto it = fetches.find(reply->request_id());
      if (it == fetches.end()) continue;
      auto [key, f] = std::move(it->second);
      fetches.erase(it);
      auto found = wire::strings(reply->found());
      if (found.size() == 1 && frames.size() >= 2 && found[0] == key) {
        auto v = std::make_shared<const std::string>(static_cast<const char*>(frames[1].data()),
                                                     frames[1].size());
        std::lock_guard lock(core->mu);
        auto fit = core->futures.find(key);
        if (fit != core->futures.end()) {
          if (auto s = fit->second.state.lock()) {
            s->value = std::move(v);
            dropped.push_back(std::move(s));
          }
        }
        core->cv.notify_all();
      } else {
        start_fetch(key, std::move(f.holders), f.index + 1);
      }
    }
  }

  config::Config config;
  std::string address;
  std::shared_ptr<ClientCore> core;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<LocalCluster> cluster;
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
  std::vector<std::string> released;  // swapped with core->released each turn
  std::vector<fb::Offset<fb::String>> cancels;
  std::unordered_map<std::uint64_t, std::pair<std::string, Fetch>> fetches;
  std::uint64_t next_request = 1;
  std::unordered_map<std::string, zmq::socket_t> peer_sockets;
  bool peers_changed = true;
  // References taken under core->mu, released outside it (see ~FutureState).
  std::vector<std::shared_ptr<detail::FutureState>> dropped;
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

std::shared_ptr<detail::FutureState> Client::submit_encoded(const SubmitOptions& options,
                                                            EncodedCall call) {
  std::vector<EncodedCall> calls;
  calls.push_back(std::move(call));
  return impl_->submit(options, std::move(calls)).front();
}

std::vector<std::shared_ptr<detail::FutureState>> Client::submit_encoded_many(
    const SubmitOptions& options, std::vector<EncodedCall> calls) {
  return impl_->submit(options, std::move(calls));
}

}  // namespace plexus
