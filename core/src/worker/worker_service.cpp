#include <plexus/worker/worker_service.hpp>

#include <plexus/abi.h>
#include <plexus/codec.hpp>
#include <plexus/common/key_map.hpp>
#include <plexus/common/logging.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>
#include <plexus/worker/plugin_loader.hpp>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace plexus::worker {

namespace fb = flatbuffers;

WorkerOptions worker_options(const config::Config& c, std::string scheduler_address) {
  WorkerOptions o;
  o.scheduler_address = std::move(scheduler_address);
  o.name = c.get_string("worker.name");
  auto n = c.get_int("worker.nthreads");
  o.nthreads = n > 0 ? static_cast<std::uint32_t>(n)
                     : std::max(1u, std::thread::hardware_concurrency());
  o.data_address = c.get_string("worker.data-address");
  o.plugin_path = c.get_string_list("worker.plugin-path");
  o.connect_timeout_ms = static_cast<std::uint32_t>(c.get_int("worker.connect-timeout-ms"));
  o.shutdown_timeout_ms = static_cast<std::uint32_t>(c.get_int("worker.shutdown-timeout-ms"));
  o.death_timeout_ms = static_cast<std::uint32_t>(c.get_int("worker.death-timeout-ms"));
  o.comm = comm::comm_options(c);
  return o;
}

namespace {

using Clock = std::chrono::steady_clock;
// A stored value: bytes owned either as a string (computed here) or as the ZeroMQ message they
// arrived in from a peer, kept as is so that a fetched value is never copied.
class Blob {
 public:
  explicit Blob(std::string bytes) : str_(std::move(bytes)), view_(str_) {}
  explicit Blob(zmq::message_t msg)
      : msg_(std::move(msg)), view_(static_cast<const char*>(msg_.data()), msg_.size()) {}
  Blob(Blob&&) = delete;  // view_ points into this object
  Blob& operator=(Blob&&) = delete;
  std::string_view view() const { return view_; }
  const char* data() const { return view_.data(); }
  std::size_t size() const { return view_.size(); }

 private:
  std::string str_;
  zmq::message_t msg_;
  std::string_view view_;  // into str_ or msg_; a Blob never moves (always behind shared_ptr)
};
using Value = std::shared_ptr<const Blob>;

// Received values up to this size are copied out of their frame (see on_data_reply).
constexpr std::size_t kCopyBelow = 64 * 1024;

std::string default_name() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + "-" + std::to_string(::getpid());
}

struct Job {
  std::string key;
  std::string name;
  std::string args;
  KeyMap<Value> deps;  // the values of the futures among `args`, read in place by the task
};

// RefSource over a job's dependency values.
bool resolve_dep(void* context, std::string_view key, std::string_view* value) {
  const auto& deps = *static_cast<const KeyMap<Value>*>(context);
  auto it = deps.find(key);
  if (it == deps.end()) return false;
  *value = it->second->view();
  return true;
}

struct JobResult {
  std::string key;
  CallResult result;
  std::uint64_t duration_us = 0;
};

// Zero-copy frames: the message keeps a reference to the stored value until ZeroMQ is done.
void release_value(void*, void* hint) { delete static_cast<Value*>(hint); }
zmq::message_t frame_of(const Value& v) {
  auto* hold = new Value(v);
  return zmq::message_t(const_cast<char*>(v->data()), v->size(), &release_value, hold);
}

enum class TaskPhase : std::uint8_t { fetching, queued, executing };

struct TaskRec {
  std::string name;
  std::string args;
  std::vector<std::string> deps;  // all dependency keys
  std::size_t missing = 0;        // deps not yet in the store
  TaskPhase phase = TaskPhase::fetching;
  bool freed = false;             // the scheduler no longer wants it (executing only)
};

// Everything executor threads touch. They co-own it, so that a thread still running a task
// after a shutdown timeout never outlives the queue, the wake-up or the loaded plugin it uses.
struct Shared {
  explicit Shared(std::vector<std::string> plugin_path) : loader(std::move(plugin_path)) {}
  PluginLoader loader;
  comm::Wakeup wake;
  std::mutex jobs_mu;
  std::condition_variable jobs_cv;
  std::deque<Job> jobs;          // guarded by jobs_mu
  std::size_t executing = 0;     // guarded by jobs_mu
  bool pool_stop = false;        // guarded by jobs_mu
  std::mutex results_mu;
  std::vector<JobResult> results;  // guarded by results_mu
};

void executor_loop(Shared& sh) {
  while (true) {
    Job job;
    {
      std::unique_lock lock(sh.jobs_mu);
      sh.jobs_cv.wait(lock, [&] { return sh.pool_stop || !sh.jobs.empty(); });
      if (sh.jobs.empty()) return;
      job = std::move(sh.jobs.front());
      sh.jobs.pop_front();
      ++sh.executing;
    }
    JobResult out;
    out.key = std::move(job.key);
    auto start = Clock::now();
    const RefSource refs{&job.deps, &resolve_dep};
    out.result = sh.loader.call(job.name, job.args, job.deps.empty() ? nullptr : &refs);
    out.duration_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
    bool was_empty;
    {
      std::lock_guard lock(sh.results_mu);
      was_empty = sh.results.empty();
      sh.results.push_back(std::move(out));
    }
    {
      std::lock_guard lock(sh.jobs_mu);
      --sh.executing;
    }
    // The I/O thread takes all results at once: only the first one needs a wake-up.
    if (was_empty) sh.wake.notify();
  }
}

struct FetchState {
  std::vector<std::string> holders;
  std::size_t next = 0;           // next holder to try
  std::vector<std::string> waiting_tasks;
  bool in_flight = false;
  bool copy = false;  // the scheduler asked for the key itself (CopyKeys): report the outcome
};

}  // namespace

struct WorkerService::Impl {
  explicit Impl(WorkerOptions o)
      : options(std::move(o)),
        log(logger("worker")),
        sh(std::make_shared<Shared>(default_plugin_path(options.plugin_path))),
        sched(comm::context(), zmq::socket_type::dealer),
        data(comm::context(), zmq::socket_type::router) {
    if (options.name.empty()) options.name = default_name();
    comm::configure(sched, options.comm.linger_ms, options.comm.max_message_bytes);
    comm::configure(data, options.comm.linger_ms, options.comm.max_message_bytes);
    std::string want = options.data_address.empty()
                           ? comm::data_address_like(options.scheduler_address, "worker")
                           : options.data_address;
    bound_data = comm::bind(data, want);
  }

  // ---- executor pool ----
  void start_pool() {
    for (std::uint32_t i = 0; i < options.nthreads; ++i) {
      pool.emplace_back([sh = sh] { executor_loop(*sh); });
    }
  }

  void stop_pool(std::chrono::milliseconds timeout) {
    {
      std::lock_guard lock(jobs_mu);
      pool_stop = true;
    }
    jobs_cv.notify_all();
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(jobs_mu);
        if (executing == 0 && jobs.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    bool idle;
    {
      std::lock_guard lock(jobs_mu);
      idle = executing == 0;
    }
    for (auto& t : pool) {
      if (idle) {
        t.join();
      } else {
        t.detach();  // a task that does not return cannot be interrupted; it co-owns `sh`
      }
    }
    if (!idle) log->warn("tasks still running after {} ms; abandoned", timeout.count());
    pool.clear();
  }

  // ---- outgoing to the scheduler ----
  void flush_scheduler() {
    auto& b = sched_out;
    if (!done_msgs.empty() || !failed_msgs.empty()) {
      auto d = done_msgs.empty() ? fb::Offset<fb::Vector<fb::Offset<wire::TaskDone>>>()
                                 : b.fbb().CreateVector(done_msgs);
      auto f = failed_msgs.empty() ? fb::Offset<fb::Vector<fb::Offset<wire::TaskFailed>>>()
                                   : b.fbb().CreateVector(failed_msgs);
      b.add(wire::CreateDone(b.fbb(), d, f));
      done_msgs.clear();
      failed_msgs.clear();
    }
    if (!copied_keys.empty() || !copy_failed.empty()) {
      auto c = b.strs(copied_keys);
      auto n = b.fbb().CreateVector(copied_nbytes);
      auto f = b.strs(copy_failed);
      b.add(wire::CreateKeysCopied(b.fbb(), c, n, f));
      copied_keys.clear();
      copied_nbytes.clear();
      copy_failed.clear();
    }
    if (b.empty()) return;
    auto bytes = b.finish();
    sched.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    b.reset();
  }

  void report_done(std::string_view key, const Value& v, std::uint64_t duration_us) {
    auto& b = sched_out;
    bool small = v->size() <= options.comm.inline_threshold;
    auto k = b.str(key);
    fb::Offset<fb::Vector<std::uint8_t>> d;
    if (small) d = b.bytes(v->view());
    done_msgs.push_back(wire::CreateTaskDone(b.fbb(), k, v->size(), small, d, duration_us));
  }

  void report_failed(const std::string& key, ErrorInfo error, std::uint64_t duration_us) {
    auto& b = sched_out;
    error.worker = options.name;
    auto k = b.str(key);
    auto e = b.error(error);
    failed_msgs.push_back(wire::CreateTaskFailed(b.fbb(), k, e, duration_us));
  }

  // ---- task handling ----
  void on_compute(const wire::ComputeTask& t) {
    const std::string_view key = wire::view(t.key());
    if (key.empty() || !t.name()) return;
    if (auto s = store.find(key); s != store.end()) {
      report_done(key, s->second, 0);  // already here (e.g. recomputed elsewhere and fetched)
      return;
    }
    if (auto it = tasks.find(key); it != tasks.end()) {
      // Freed while running and asked for again: let the running execution report after all.
      if (it->second.freed) it.value().freed = false;
      return;  // otherwise a duplicate request
    }
    TaskRec rec;
    rec.name = wire::view(t.name());
    rec.args = wire::view(t.args());
    if (t.deps()) {
      for (const wire::DepLocation* d : *t.deps()) {
        if (!d || !d->key()) continue;
        std::string dk(wire::view(d->key()));
        rec.deps.push_back(dk);
        if (store.count(dk)) continue;
        ++rec.missing;
        FetchState& f = fetches[dk];
        f.waiting_tasks.emplace_back(key);
        for (auto& h : wire::strings(d->holders())) {
          if (h == bound_data) continue;
          if (std::find(f.holders.begin(), f.holders.end(), h) == f.holders.end()) {
            f.holders.push_back(std::move(h));
          }
        }
        if (!f.in_flight) to_fetch.insert(dk);
      }
    }
    bool ready = rec.missing == 0;
    auto it = tasks.try_emplace(std::string(key), std::move(rec)).first;
    if (ready) enqueue(it->first, it.value());
  }

  // Stages a ready task; dispatch_jobs() hands the turn's jobs to the executors in one go.
  void enqueue(const std::string& key, TaskRec& rec) {
    Job job;
    job.key = key;
    job.name = std::move(rec.name);  // the record keeps only what bookkeeping needs
    job.args = std::move(rec.args);
    for (const auto& d : rec.deps) job.deps.emplace(d, store.at(d));
    rec.phase = TaskPhase::queued;
    staged_jobs.push_back(std::move(job));
  }

  void dispatch_jobs() {
    if (staged_jobs.empty()) return;
    std::size_t n = staged_jobs.size();
    {
      std::lock_guard lock(jobs_mu);
      for (auto& j : staged_jobs) jobs.push_back(std::move(j));
    }
    staged_jobs.clear();
    if (n == 1) {
      jobs_cv.notify_one();
    } else {
      jobs_cv.notify_all();
    }
  }

  void on_free(std::string_view key) {
    forget_value(key);
    auto it = tasks.find(key);
    if (it == tasks.end()) return;
    if (it->second.phase == TaskPhase::queued) {
      for (auto j = staged_jobs.begin(); j != staged_jobs.end(); ++j) {
        if (j->key == key) {
          staged_jobs.erase(j);
          tasks.erase(it);
          return;
        }
      }
      std::lock_guard lock(jobs_mu);
      for (auto j = jobs.begin(); j != jobs.end(); ++j) {
        if (j->key == key) {
          jobs.erase(j);
          tasks.erase(it);
          return;
        }
      }
      it.value().phase = TaskPhase::executing;  // already picked up by an executor
    }
    if (it->second.phase == TaskPhase::executing) {
      it.value().freed = true;
    } else {
      tasks.erase(it);  // fetching: its fetches complete into the store and are freed later
    }
  }

  // Every change to `store` goes through these two, which keep store_bytes exact.
  template <class K>
  void keep_value(K&& key, Value v) {
    auto [it, inserted] = store.try_emplace(std::forward<K>(key), v);
    if (!inserted) {
      store_bytes -= it->second->size();
      it.value() = v;
    }
    store_bytes += v->size();
  }
  void forget_value(std::string_view key) {
    auto it = store.find(key);
    if (it == store.end()) return;
    store_bytes -= it->second->size();
    store.erase(it);
  }

  void collect_results() {
    std::vector<JobResult> ready;
    {
      std::lock_guard lock(results_mu);
      ready.swap(results);
    }
    for (auto& r : ready) {
      auto it = tasks.find(r.key);
      bool freed = it == tasks.end() || it->second.freed;
      if (it != tasks.end()) tasks.erase(it);
      if (freed) continue;
      if (r.result.ok) {
        auto v = std::make_shared<const Blob>(std::move(r.result.value));
        report_done(r.key, v, r.duration_us);
        keep_value(std::move(r.key), std::move(v));
      } else {
        report_failed(r.key, std::move(*r.result.error), r.duration_us);
      }
    }
  }

  // ---- fetching dependencies from peers ----
  zmq::socket_t& peer_socket(const std::string& address) {
    auto it = peer_sockets.find(address);
    if (it != peer_sockets.end()) return it->second;
    zmq::socket_t s(comm::context(), zmq::socket_type::dealer);
    comm::configure(s, 0, options.comm.max_message_bytes);
    s.connect(address);
    peers_changed = true;
    return peer_sockets.emplace(address, std::move(s)).first->second;
  }

  void start_fetches() {
    std::unordered_map<std::string, std::vector<std::string>> by_holder;
    for (const auto& dk : to_fetch) {
      auto it = fetches.find(dk);
      if (it == fetches.end() || it->second.in_flight) continue;
      FetchState& f = it->second;
      if (f.next >= f.holders.size()) {
        fetch_failed(dk);
        continue;
      }
      f.in_flight = true;
      by_holder[f.holders[f.next]].push_back(dk);
    }
    to_fetch.clear();
    for (auto& [holder, keys] : by_holder) {
      wire::OutBatch b;
      std::uint64_t id = next_request++;
      b.add(wire::CreateGetData(b.fbb(), id, b.strs(keys)));
      auto bytes = b.finish();
      requests[id] = {holder, keys};
      peer_socket(holder).send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    }
  }

  // No holder could give us `dk`: the tasks waiting on it go back to the scheduler.
  void fetch_failed(const std::string& dk) {
    auto it = fetches.find(dk);
    if (it == fetches.end()) return;
    if (it->second.copy) {
      copy_failed.push_back(dk);
      log->warn("copy failed key={}: no holder could serve it", dk);
    }
    std::vector<std::string> waiting = std::move(it->second.waiting_tasks);
    fetches.erase(it);
    for (const auto& tk : waiting) {
      auto t = tasks.find(tk);
      if (t == tasks.end()) continue;
      tasks.erase(t);
      auto& b = sched_out;
      auto k = b.str(tk);
      std::vector<fb::Offset<fb::String>> ms{b.str(dk)};
      b.add(wire::CreateMissingDeps(b.fbb(), k, b.fbb().CreateVector(ms)));
      log->warn("dependency unavailable key={} task={}", dk, tk);
    }
  }

  void on_data_reply(std::vector<zmq::message_t>& frames) {
    if (frames.empty()) return;
    const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), limits);
    if (!batch || !batch->messages()) {
      log->warn("malformed data reply dropped ({} bytes)", frames[0].size());
      return;
    }
    std::size_t next_frame = 1;
    for (const wire::Envelope* env : *batch->messages()) {
      if (!env || env->msg_type() != wire::Msg::DataReply) continue;
      const auto* reply = env->msg_as_DataReply();
      auto found = wire::strings(reply->found());
      auto req = requests.find(reply->request_id());
      if (req == requests.end()) {  // stale: skip its values too
        next_frame += found.size();
        continue;
      }
      requests.erase(req);
      // Each reply's values follow the batch frame in order, after the previous replies' values.
      if (next_frame + found.size() > frames.size()) {
        log->warn("data reply announces {} values but carries {}", found.size(),
                  frames.size() - next_frame);
        found.resize(frames.size() - next_frame);
      }
      for (std::size_t i = 0; i < found.size(); ++i) {
        zmq::message_t& frame = frames[next_frame + i];
        // Small frames point into libzmq's shared receive buffer (about 8 KiB): holding one would
        // pin the whole buffer, so those are copied; large ones are kept as they arrived.
        Value v = frame.size() <= kCopyBelow
                      ? std::make_shared<const Blob>(std::string(
                            static_cast<const char*>(frame.data()), frame.size()))
                      : std::make_shared<const Blob>(std::move(frame));
        arrived(found[i], std::move(v));
      }
      next_frame += found.size();
      for (const auto& m : wire::strings(reply->missing())) {
        auto f = fetches.find(m);
        if (f == fetches.end()) continue;
        f->second.in_flight = false;
        ++f->second.next;
        to_fetch.insert(m);
      }
    }
  }

  void arrived(const std::string& dk, Value v) {
    auto f = fetches.find(dk);
    if (f == fetches.end()) return;
    std::vector<std::string> waiting = std::move(f->second.waiting_tasks);
    if (f->second.copy) {
      copied_keys.push_back(dk);
      copied_nbytes.push_back(v->size());
    }
    fetches.erase(f);
    keep_value(dk, std::move(v));
    for (const auto& tk : waiting) {
      auto t = tasks.find(tk);
      if (t == tasks.end() || t->second.phase != TaskPhase::fetching) continue;
      if (--t.value().missing == 0) enqueue(tk, t.value());
    }
  }

  // ---- serving data ----
  void on_data_request(std::vector<zmq::message_t>& frames) {
    if (frames.size() < 2) return;
    const wire::Batch* batch = wire::verify_batch(frames[1].data(), frames[1].size(), limits);
    if (!batch || !batch->messages()) {
      log->warn("malformed data request dropped ({} bytes)", frames[1].size());
      return;
    }
    std::size_t next_frame = 2;  // PutData values follow the batch, request after request
    for (const wire::Envelope* env : *batch->messages()) {
      if (env && env->msg_type() == wire::Msg::PutData) {
        on_put_data(*env->msg_as_PutData(), frames, next_frame);
        continue;
      }
      if (env && env->msg_type() == wire::Msg::GetLogs) {
        const auto* req = env->msg_as_GetLogs();
        const auto lines = recent_log_lines(static_cast<std::size_t>(req->count()),
                                            {"worker"});
        wire::OutBatch b;
        b.add(wire::CreateLogs(b.fbb(), req->request_id(), b.strs(lines)));
        auto bytes = b.finish();
        data.send(zmq::message_t(frames[0].data(), frames[0].size()), zmq::send_flags::sndmore);
        data.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
        continue;
      }
      if (!env || env->msg_type() != wire::Msg::GetData) continue;
      const auto* req = env->msg_as_GetData();
      wire::OutBatch b;
      std::vector<fb::Offset<fb::String>> found, missing;
      std::vector<Value> values;
      if (req->keys()) {
        for (const auto* k : *req->keys()) {
          auto it = store.find(wire::view(k));
          if (it == store.end()) {
            missing.push_back(b.str(wire::view(k)));
          } else {
            found.push_back(b.str(wire::view(k)));
            values.push_back(it->second);
          }
        }
      }
      auto fv = b.fbb().CreateVector(found);
      auto mv = b.fbb().CreateVector(missing);
      b.add(wire::CreateDataReply(b.fbb(), req->request_id(), fv, mv));
      auto bytes = b.finish();
      data.send(zmq::message_t(frames[0].data(), frames[0].size()), zmq::send_flags::sndmore);
      data.send(zmq::buffer(bytes.data(), bytes.size()),
                values.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore);
      for (std::size_t i = 0; i < values.size(); ++i) {
        data.send(frame_of(values[i]),
                  i + 1 < values.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    }
  }

  // ---- data movement: scatter, replicate, rebalance, restart ----

  // A client's values (scatter): kept as they are, each from its frame; frames[next_frame...]
  // are this request's. Answered with DataStored; nothing is kept if frames are missing.
  void on_put_data(const wire::PutData& req, std::vector<zmq::message_t>& frames,
                   std::size_t& next_frame) {
    const auto keys = wire::strings(req.keys());
    std::string error;
    if (next_frame + keys.size() > frames.size()) {
      error = "PutData announces " + std::to_string(keys.size()) + " values but carries " +
              std::to_string(frames.size() - std::min(next_frame, frames.size()));
    } else if (std::any_of(keys.begin(), keys.end(), [](const auto& k) { return k.empty(); })) {
      error = "PutData with an empty key";
    } else {
      for (std::size_t i = 0; i < keys.size(); ++i) {
        zmq::message_t& frame = frames[next_frame + i];
        // As on_data_reply: small frames are copied out of libzmq's shared receive buffer.
        Value v = frame.size() <= kCopyBelow
                      ? std::make_shared<const Blob>(std::string(
                            static_cast<const char*>(frame.data()), frame.size()))
                      : std::make_shared<const Blob>(std::move(frame));
        keep_value(keys[i], std::move(v));
      }
      log->debug("stored {} scattered values", keys.size());
    }
    next_frame = std::min(frames.size(), next_frame + keys.size());
    if (!error.empty()) log->warn("scattered values refused: {}", error);
    wire::OutBatch b;
    b.add(wire::CreateDataStored(b.fbb(), req.request_id(), error.empty() ? 0 : b.str(error)));
    auto bytes = b.finish();
    data.send(zmq::message_t(frames[0].data(), frames[0].size()), zmq::send_flags::sndmore);
    data.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
  }

  // The scheduler wants copies of these keys here (replicate, rebalance): fetched from their
  // holders like dependencies, and reported in KeysCopied.
  void on_copy_keys(const wire::CopyKeys& m) {
    if (!m.keys()) return;
    for (const wire::DepLocation* d : *m.keys()) {
      if (!d || !d->key()) continue;
      std::string dk(wire::view(d->key()));
      if (auto s = store.find(dk); s != store.end()) {
        copied_keys.push_back(dk);
        copied_nbytes.push_back(s->second->size());
        continue;
      }
      FetchState& f = fetches[dk];
      f.copy = true;
      for (auto& h : wire::strings(d->holders())) {
        if (h == bound_data) continue;
        if (std::find(f.holders.begin(), f.holders.end(), h) == f.holders.end()) {
          f.holders.push_back(std::move(h));
        }
      }
      if (!f.in_flight) to_fetch.insert(dk);
    }
  }

  // The cluster restarts and this worker has no nanny: every task and value goes, in place.
  // Tasks already running cannot be stopped; their results are dropped when they end.
  void drop_everything() {
    staged_jobs.clear();
    {
      std::lock_guard lock(jobs_mu);
      jobs.clear();
    }
    for (auto it = tasks.begin(); it != tasks.end();) {
      if (it->second.phase == TaskPhase::executing) {
        it.value().freed = true;
        ++it;
      } else {
        it = tasks.erase(it);
      }
    }
    fetches.clear();
    to_fetch.clear();
    requests.clear();  // their replies are dropped as stale
    std::vector<std::string> keys;
    keys.reserve(store.size());
    for (const auto& [k, v] : store) keys.push_back(k);
    for (const auto& k : keys) forget_value(k);
    log->info("the cluster restarted: dropped every task and {} values", keys.size());
  }

  // ---- scheduler messages ----
  void on_scheduler(std::vector<zmq::message_t>& frames) {
    if (frames.empty()) return;
    last_heard = Clock::now();
    const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), limits);
    if (!batch || !batch->messages()) {
      log->warn("malformed message from the scheduler dropped ({} bytes)", frames[0].size());
      return;
    }
    for (const wire::Envelope* env : *batch->messages()) {
      if (!env) continue;
      switch (env->msg_type()) {
        case wire::Msg::Compute:
          if (const auto* ts = env->msg_as_Compute()->tasks()) {
            for (const wire::ComputeTask* t : *ts) {
              if (t) on_compute(*t);
            }
          }
          break;
        case wire::Msg::FreeKeys:
          if (const auto* keys = env->msg_as_FreeKeys()->keys()) {
            for (const auto* k : *keys) on_free(wire::view(k));
          }
          break;
        case wire::Msg::CopyKeys:
          on_copy_keys(*env->msg_as_CopyKeys());
          break;
        case wire::Msg::RestartWorker:
          if (env->msg_as_RestartWorker()->exit()) {
            log->info("the cluster restarts: this worker exits for its nanny to start it again");
            restarting = true;
            scheduler_gone = true;
            exit_reason = WorkerExit::restart;
          } else {
            drop_everything();
          }
          break;
        case wire::Msg::Shutdown:
          log->info("shutdown requested by the scheduler: {}",
                    wire::view(env->msg_as_Shutdown()->reason()));
          exit_reason = std::string(wire::view(env->msg_as_Shutdown()->reason()))
                                .find("removed") != std::string::npos
                            ? WorkerExit::removed
                            : WorkerExit::scheduler_shutdown;
          scheduler_gone = true;
          break;
        case wire::Msg::ProtocolError:
          log->warn("the scheduler dropped a message from this worker: {}",
                    wire::view(env->msg_as_ProtocolError()->reason()));
          break;
        default:
          log->debug("ignored message {} from the scheduler", wire::EnumNameMsg(env->msg_type()));
      }
    }
  }

  // ---- handshake ----
  // Returns false when stop() came first (not an error); throws when the scheduler cannot be
  // reached in time or refuses this worker.
  bool handshake() {
    sched.connect(options.scheduler_address);
    {
      wire::OutBatch b;
      char host[256] = {0};
      ::gethostname(host, sizeof host - 1);
      auto name = b.str(options.name);
      auto addr = b.str(bound_data);
      auto h = b.str(host);
      b.add(wire::CreateHello(b.fbb(), wire::Role::worker, wire::kProtocolVersion,
                              PLEXUS_SDK_ABI_VERSION, name, ::getpid(), options.nthreads, addr, h));
      auto bytes = b.finish();
      sched.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    }
    auto deadline = Clock::now() + std::chrono::milliseconds(options.connect_timeout_ms);
    std::vector<zmq::message_t> frames;
    while (true) {
      if (stopping) return false;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        throw std::runtime_error("could not reach the scheduler at " + options.scheduler_address +
                                 " within " + std::to_string(options.connect_timeout_ms) + " ms");
      }
      zmq::pollitem_t items[2] = {{sched.handle(), 0, ZMQ_POLLIN, 0},
                                  {nullptr, wake.fd(), ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, std::min(left, std::chrono::milliseconds(100)));
      if (items[1].revents & ZMQ_POLLIN) wake.drain();
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      if (!comm::recv_multipart(sched, frames, true)) continue;
      const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), limits);
      if (!batch || !batch->messages() || batch->messages()->size() == 0) continue;
      const wire::Envelope* first = batch->messages()->Get(0);
      if (first && first->msg_type() == wire::Msg::Refused) {
        throw std::runtime_error("the scheduler at " + options.scheduler_address +
                                 " refused this worker: " +
                                 std::string(wire::view(first->msg_as_Refused()->reason())));
      }
      if (first && first->msg_type() == wire::Msg::Welcome) {
        heartbeat_ms = std::max(10u, first->msg_as_Welcome()->heartbeat_ms());
        log->info("connected scheduler={} name='{}' data={} nthreads={}",
                  options.scheduler_address, options.name, bound_data, options.nthreads);
        on_scheduler(frames);  // the rest of the batch may already carry work
        return true;
      }
    }
  }

  void send_heartbeat() {
    std::uint32_t ready_n, exec_n;
    {
      std::lock_guard lock(jobs_mu);
      ready_n = static_cast<std::uint32_t>(jobs.size());
      exec_n = static_cast<std::uint32_t>(executing);
    }
    std::uint64_t bytes = store_bytes;
    sched_out.add(wire::CreateHeartbeat(sched_out.fbb(), exec_n, ready_n, bytes));
  }

  // Graceful departure: hand back what has not started, let running tasks finish and report.
  void depart() {
    std::vector<std::string> handed_back;
    for (auto& j : staged_jobs) handed_back.push_back(j.key);
    staged_jobs.clear();
    {
      std::lock_guard lock(jobs_mu);
      for (auto& j : jobs) handed_back.push_back(j.key);
      jobs.clear();
    }
    for (auto& [k, t] : tasks) {
      if (t.phase == TaskPhase::fetching) handed_back.push_back(k);
    }
    for (const auto& k : handed_back) tasks.erase(k);
    if (!handed_back.empty()) {
      auto& b = sched_out;
      const auto ks = b.strs(handed_back);
      b.add(wire::CreateReject(b.fbb(), ks, b.str("worker shutting down")));
      log->info("handed back {} tasks not started", handed_back.size());
    }
    flush_scheduler();
    auto deadline = Clock::now() + std::chrono::milliseconds(options.shutdown_timeout_ms);
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(jobs_mu);
        if (executing == 0) break;
      }
      zmq::pollitem_t items[1] = {{nullptr, wake.fd(), ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(20));
      wake.drain();
      collect_results();
      flush_scheduler();
    }
    collect_results();
    stop_pool(std::chrono::milliseconds(0));
    sched_out.add(wire::CreateGoodbye(sched_out.fbb(), sched_out.str("worker shutting down")));
    flush_scheduler();
  }

  WorkerExit run() {
    if (!handshake()) {
      log->info("stopped before the handshake completed name='{}'", options.name);
      sched.close();
      data.close();
      return WorkerExit::stopped;
    }
    start_pool();
    std::vector<zmq::message_t> frames;
    std::vector<zmq::pollitem_t> items;
    std::vector<zmq::socket_t*> peer_list;
    auto next_heartbeat = Clock::now();
    last_heard = Clock::now();
    peers_changed = true;
    while (!stopping && !scheduler_gone) {
      if (peers_changed) {
        items = {{sched.handle(), 0, ZMQ_POLLIN, 0},
                 {data.handle(), 0, ZMQ_POLLIN, 0},
                 {nullptr, wake.fd(), ZMQ_POLLIN, 0}};
        peer_list.clear();
        for (auto& [addr, s] : peer_sockets) {
          items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
          peer_list.push_back(&s);
        }
        peers_changed = false;
      }
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat -
                                                                         Clock::now());
      zmq::poll(items.data(), items.size(), std::max(until, std::chrono::milliseconds(0)));
      if (items[2].revents & ZMQ_POLLIN) wake.drain();
      for (int i = 0; i < 1024; ++i) {
        if (!comm::recv_multipart(sched, frames, true)) break;
        on_scheduler(frames);
      }
      for (int i = 0; i < 1024; ++i) {
        if (!comm::recv_multipart(data, frames, true)) break;
        on_data_request(frames);
      }
      for (std::size_t p = 0; p < peer_list.size(); ++p) {
        if (!(items[3 + p].revents & ZMQ_POLLIN)) continue;
        while (comm::recv_multipart(*peer_list[p], frames, true)) on_data_reply(frames);
      }
      collect_results();
      dispatch_jobs();
      start_fetches();
      if (Clock::now() - last_heard > std::chrono::milliseconds(options.death_timeout_ms)) {
        log->error("no message from the scheduler at {} for {} ms: shutting down",
                   options.scheduler_address, options.death_timeout_ms);
        scheduler_gone = true;
        exit_reason = WorkerExit::scheduler_lost;
        break;
      }
      if (Clock::now() >= next_heartbeat) {
        send_heartbeat();
        next_heartbeat = Clock::now() + std::chrono::milliseconds(heartbeat_ms);
      }
      flush_scheduler();
    }
    if (restarting) {
      // Nothing is handed back (the scheduler forgot every task); running tasks are abandoned.
      stop_pool(std::chrono::milliseconds(0));
      sched_out.add(wire::CreateGoodbye(sched_out.fbb(), sched_out.str("worker restarting")));
      flush_scheduler();
    } else if (scheduler_gone) {
      stop_pool(std::chrono::milliseconds(options.shutdown_timeout_ms));
    } else {
      depart();
    }
    sched.close();
    data.close();
    peer_sockets.clear();
    log->info("worker stopped name='{}'", options.name);
    return scheduler_gone ? exit_reason : WorkerExit::stopped;
  }

  WorkerOptions options;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<Shared> sh;
  PluginLoader& loader = sh->loader;
  comm::Wakeup& wake = sh->wake;
  std::mutex& jobs_mu = sh->jobs_mu;
  std::condition_variable& jobs_cv = sh->jobs_cv;
  std::deque<Job>& jobs = sh->jobs;
  std::size_t& executing = sh->executing;
  bool& pool_stop = sh->pool_stop;
  std::mutex& results_mu = sh->results_mu;
  std::vector<JobResult>& results = sh->results;
  zmq::socket_t sched;
  zmq::socket_t data;
  std::string bound_data;
  const wire::VerifyLimits& limits = options.comm.limits;
  std::atomic<bool> stopping{false};
  bool scheduler_gone = false;
  bool restarting = false;  // the scheduler asked this worker to exit for a restart
  WorkerExit exit_reason = WorkerExit::scheduler_shutdown;
  std::uint32_t heartbeat_ms = 500;
  Clock::time_point last_heard = Clock::now();

  // I/O thread state.
  wire::OutBatch sched_out;
  std::vector<fb::Offset<wire::TaskDone>> done_msgs;
  std::vector<fb::Offset<wire::TaskFailed>> failed_msgs;
  std::vector<std::string> copied_keys;  // KeysCopied, sent with the next flush
  std::vector<std::uint64_t> copied_nbytes;
  std::vector<std::string> copy_failed;
  KeyMap<Value> store;
  KeyMap<TaskRec> tasks;
  std::uint64_t store_bytes = 0;  // sum of the sizes in `store`
  std::unordered_map<std::string, FetchState> fetches;
  std::unordered_set<std::string> to_fetch;
  struct Request {
    std::string holder;
    std::vector<std::string> keys;
  };
  std::unordered_map<std::uint64_t, Request> requests;
  std::uint64_t next_request = 1;
  std::unordered_map<std::string, zmq::socket_t> peer_sockets;
  bool peers_changed = true;

  std::vector<std::thread> pool;
  std::vector<Job> staged_jobs;  // ready this turn, not yet handed to the executors
};

WorkerService::WorkerService(WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
WorkerService::~WorkerService() {
  if (!impl_->pool.empty()) impl_->stop_pool(std::chrono::milliseconds(0));
}
WorkerExit WorkerService::run() { return impl_->run(); }
void WorkerService::stop() {
  impl_->stopping = true;
  impl_->wake.notify();
}
const std::string& WorkerService::data_address() const { return impl_->bound_data; }
const std::string& WorkerService::name() const { return impl_->options.name; }

}  // namespace plexus::worker
