#include <plexus/worker/worker_service.hpp>

#include <plexus/abi.h>
#include <plexus/codec.hpp>
#include <plexus/common/key_map.hpp>
#include <plexus/common/logging.hpp>
#include <plexus/common/task_key.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>
#include <plexus/worker/crash_report.hpp>
#include <plexus/worker/plugin_loader.hpp>
#include <plexus/worker/spill_store.hpp>

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
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
  o.resources = parse_resources(c.get_string("worker.resources"));
  o.comm = comm::comm_options(c);
  o.memory = memory_policy(c, o.nthreads);
  o.local_directory = c.get_string("worker.local-directory");
  return o;
}

std::vector<std::pair<std::string, double>> parse_resources(std::string_view text) {
  std::vector<std::pair<std::string, double>> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',' || text[i] == '\t')) ++i;
    std::size_t end = i;
    while (end < text.size() && text[end] != ' ' && text[end] != ',' && text[end] != '\t') ++end;
    if (end == i) break;
    const std::string_view entry = text.substr(i, end - i);
    i = end;
    const auto eq = entry.find('=');
    const std::string_view name = eq == std::string_view::npos ? entry : entry.substr(0, eq);
    if (eq == std::string_view::npos || name.empty()) {
      throw std::invalid_argument("resources: '" + std::string(entry) +
                                  "' is not NAME=AMOUNT (e.g. GPU=2)");
    }
    const std::string amount_text(entry.substr(eq + 1));
    char* parsed_end = nullptr;
    const double amount = std::strtod(amount_text.c_str(), &parsed_end);
    if (amount_text.empty() || parsed_end != amount_text.c_str() + amount_text.size() ||
        !std::isfinite(amount) || amount < 0) {
      throw std::invalid_argument("resources: the amount of " + std::string(name) + " ('" +
                                  amount_text + "') is not a number >= 0");
    }
    for (const auto& [n, a] : out) {
      if (n == name) {
        throw std::invalid_argument("resources: " + std::string(name) + " is given twice");
      }
    }
    out.emplace_back(std::string(name), amount);
  }
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

// A failed spill is not tried again for this long: a full disk stays full for a while, and each
// attempt writes (and deletes) a whole value.
constexpr std::chrono::seconds kSpillRetry{1};

// A value received from a peer, kept in the ZeroMQ message it arrived in (never copied).
Value value_of(zmq::message_t msg) {
  auto owner = std::make_shared<zmq::message_t>(std::move(msg));
  const std::string_view bytes(static_cast<const char*>(owner->data()), owner->size());
  return std::make_shared<const Blob>(std::move(owner), bytes);
}

// Received values up to this size are copied out of their frame (see value_of_frame).
constexpr std::size_t kCopyBelow = 64 * 1024;

// A value received in `frame` (a peer's reply, a client's scatter). Small frames point into
// libzmq's shared receive buffer (about 8 KiB): holding one would pin the whole buffer, so those
// are copied; large ones are kept as they arrived.
Value value_of_frame(zmq::message_t frame) {
  if (frame.size() <= kCopyBelow) {
    return std::make_shared<const Blob>(
        std::string(static_cast<const char*>(frame.data()), frame.size()));
  }
  return value_of(std::move(frame));
}

// This worker's spill directory: a fresh name under `base` (created at the first spill).
std::filesystem::path spill_directory(const std::string& base) {
  std::filesystem::path root;
  if (!base.empty()) {
    root = base;
  } else if (const char* tmp = std::getenv("TMPDIR"); tmp && *tmp) {
    root = tmp;
  } else {
    root = "/tmp";
  }
  return root / ("plexus-worker-" + std::to_string(::getpid()) + "-" + uuid4().substr(0, 8));
}

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
  bool paused = false;           // guarded by jobs_mu: memory is high, start no new job
  std::mutex results_mu;
  std::vector<JobResult> results;  // guarded by results_mu
};

void executor_loop(Shared& sh) {
  while (true) {
    Job job;
    {
      std::unique_lock lock(sh.jobs_mu);
      sh.jobs_cv.wait(lock, [&] { return sh.pool_stop || (!sh.paused && !sh.jobs.empty()); });
      if (sh.jobs.empty() || sh.paused) return;  // stopping
      job = std::move(sh.jobs.front());
      sh.jobs.pop_front();
      ++sh.executing;
    }
    JobResult out;
    out.key = std::move(job.key);
    auto start = Clock::now();
    const RefSource refs{&job.deps, &resolve_dep};
    {
      const crash::TaskScope running(out.key, job.name);  // named in a crash report
      out.result = sh.loader.call(job.name, job.args, job.deps.empty() ? nullptr : &refs);
    }
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
        data(comm::context(), zmq::socket_type::router),
        store(spill_directory(options.local_directory)) {
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
    if (store.contains(key)) {
      // Already here (e.g. recomputed elsewhere and fetched); unless it was spilled and cannot
      // be read back, then it is computed again.
      if (Value v = value_or_report_lost(key)) {
        report_done(key, v, 0);
        return;
      }
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
        if (store.contains(dk)) continue;
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
    if (ready && !paused) enqueue(it->first, it.value());  // else when it resumes
  }

  // Stages a ready task; dispatch_jobs() hands the turn's jobs to the executors in one go. The
  // task reads its dependencies in place, so spilled ones are read back into memory here (the
  // job's references keep them from being spilled again while it waits and runs). Returns false
  // if one cannot be read back: then the task is dropped here, and the scheduler, told the
  // dependency is lost, starts it over.
  bool enqueue(const std::string& key, TaskRec& rec) {
    Job job;
    for (const auto& d : rec.deps) {
      Value v = value_or_report_lost(d);
      if (!v) {
        log->debug("task dropped: its dependency could not be read back task={} key={}", key, d);
        const std::string k = key;  // `key` may be the record's own key
        tasks.erase(k);
        return false;
      }
      job.deps.emplace(d, std::move(v));
    }
    job.key = key;
    job.name = std::move(rec.name);  // the record keeps only what bookkeeping needs
    job.args = std::move(rec.args);
    rec.phase = TaskPhase::queued;
    staged_jobs.push_back(std::move(job));
    return true;
  }

  // The value of `key` from the store, read back from disk if it was spilled. A spilled value
  // that cannot be read back is gone from the store: the scheduler is told (DataLost), so it is
  // recomputed where needed, and nothing is returned.
  Value value_or_report_lost(std::string_view key) {
    SpillStore::Got got = store.get(key);
    if (!got.value && !got.error.empty()) {
      auto& b = sched_out;
      std::vector<fb::Offset<fb::String>> ks{b.str(key)};
      b.add(wire::CreateDataLost(b.fbb(), b.fbb().CreateVector(ks),
                                 b.str("spilled value unreadable: " + got.error)));
    }
    return std::move(got.value);
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

  // Work stealing: tasks not started are dropped and named `stolen` (the scheduler places them
  // elsewhere); running or unknown ones are `kept` and reported as usual.
  void on_steal(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* keys) {
    if (!keys) return;
    std::vector<std::string_view> stolen, kept;
    for (const auto* k : *keys) {
      const std::string_view key = wire::view(k);
      (drop_unstarted(key) ? stolen : kept).push_back(key);
    }
    if (!stolen.empty()) log->debug("{} tasks handed back to the scheduler", stolen.size());
    sched_out.add(wire::CreateStealReply(sched_out.fbb(), sched_out.strs(stolen),
                                         sched_out.strs(kept)));
  }

  // Drops a task that has not started (fetching its dependencies or queued); false if it is
  // running, freed or unknown.
  bool drop_unstarted(std::string_view key) {
    auto it = tasks.find(key);
    if (it == tasks.end() || it->second.freed) return false;
    if (it->second.phase == TaskPhase::fetching) {
      tasks.erase(it);  // its fetches complete into the store and are freed later
      return true;
    }
    if (it->second.phase == TaskPhase::queued) {
      if (unqueue(key)) {
        tasks.erase(it);
        return true;
      }
      it.value().phase = TaskPhase::executing;  // already picked up by an executor
    }
    return false;
  }

  // Takes a queued job out of the staged or executor queues; false if an executor has it.
  bool unqueue(std::string_view key) {
    for (auto j = staged_jobs.begin(); j != staged_jobs.end(); ++j) {
      if (j->key == key) {
        staged_jobs.erase(j);
        return true;
      }
    }
    std::lock_guard lock(jobs_mu);
    for (auto j = jobs.begin(); j != jobs.end(); ++j) {
      if (j->key == key) {
        jobs.erase(j);
        return true;
      }
    }
    return false;
  }

  void on_free(std::string_view key) {
    forget_value(key);
    auto it = tasks.find(key);
    if (it == tasks.end()) return;
    if (it->second.phase == TaskPhase::queued) {
      if (unqueue(key)) {
        tasks.erase(it);
        return;
      }
      it.value().phase = TaskPhase::executing;  // already picked up by an executor
    }
    if (it->second.phase == TaskPhase::executing) {
      it.value().freed = true;
    } else {
      tasks.erase(it);  // fetching: its fetches complete into the store and are freed later
    }
  }

  void keep_value(std::string_view key, Value v) { store.put(key, std::move(v)); }
  void forget_value(std::string_view key) { store.erase(key); }

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
        keep_value(r.key, std::move(v));
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
      requests[id] = {holder, keys, Clock::now()};
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
      const auto sent = req->second.sent;
      requests.erase(req);
      // Each reply's values follow the batch frame in order, after the previous replies' values.
      if (next_frame + found.size() > frames.size()) {
        log->warn("data reply announces {} values but carries {}", found.size(),
                  frames.size() - next_frame);
        found.resize(frames.size() - next_frame);
      }
      std::size_t reply_bytes = 0;
      for (std::size_t i = 0; i < found.size(); ++i) reply_bytes += frames[next_frame + i].size();
      note_transfer(reply_bytes, Clock::now() - sent);
      for (std::size_t i = 0; i < found.size(); ++i) {
        arrived(found[i], value_of_frame(std::move(frames[next_frame + i])));
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

  void note_transfer(std::size_t nbytes, Clock::duration took) {
    const double seconds = std::chrono::duration<double>(took).count();
    if (nbytes < kMeasuredFetchBytes || !(seconds > 0)) return;
    const double sample = static_cast<double>(nbytes) / seconds;
    bandwidth = bandwidth > 0 ? 0.7 * bandwidth + 0.3 * sample : sample;
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
      if (--t.value().missing == 0 && !paused) enqueue(tk, t.value());  // else when it resumes
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
          // A spilled value is read back into memory, as the most recently used (dask does the
          // same): whoever asked is likely to ask again, or to be followed by its dependents.
          Value v = value_or_report_lost(wire::view(k));
          if (!v) {
            missing.push_back(b.str(wire::view(k)));
          } else {
            found.push_back(b.str(wire::view(k)));
            values.push_back(std::move(v));
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
        keep_value(keys[i], value_of_frame(std::move(frames[next_frame + i])));
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
      if (store.contains(dk)) {
        copied_nbytes.push_back(store.nbytes(dk));
        copied_keys.push_back(std::move(dk));
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
    const std::size_t n = store.clear();
    log->info("the cluster restarted: dropped every task and {} values", n);
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
        case wire::Msg::StealRequest:
          on_steal(env->msg_as_StealRequest()->keys());
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
      std::vector<flatbuffers::Offset<wire::Resource>> offered;
      for (const auto& [rname, amount] : options.resources) {
        offered.push_back(wire::CreateResource(b.fbb(), b.str(rname), amount));
      }
      auto res = offered.empty() ? 0 : b.fbb().CreateVector(offered);
      b.add(wire::CreateHello(b.fbb(), wire::Role::worker, wire::kProtocolVersion,
                              PLEXUS_SDK_ABI_VERSION, name, ::getpid(), options.nthreads, addr, h,
                              res));
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
    sched_out.add(wire::CreateHeartbeat(sched_out.fbb(), exec_n, ready_n, store.memory_bytes(),
                                        store.disk_bytes(), store.counters().spilled, last_rss,
                                        options.memory.limit, paused, bandwidth));
  }

  // ---- memory ----
  void log_memory_policy() {
    const MemoryPolicy& m = options.memory;
    if (m.limit == 0) {
      log->info("no memory limit: results stay in memory");
      return;
    }
    auto percent = [](const std::optional<double>& f) {
      return f ? std::to_string(static_cast<int>(*f * 100 + 0.5)) + "%" : std::string("off");
    };
    log->info("memory limit {}: spill past target {} (results held) or spill {} (process), "
              "pause past {}, terminate past {}{}; spill directory {}",
              format_bytes(m.limit), percent(m.target), percent(m.spill), percent(m.pause),
              percent(m.terminate), m.measure_process ? "" : " (process memory not measured)",
              store.directory().string());
  }

  // Spills `bytes` worth of the least recently used results (or all that can be). After a
  // failed write nothing is tried for kSpillRetry.
  SpillStore::SpillOutcome spill(std::uint64_t bytes, Clock::time_point now) {
    SpillStore::SpillOutcome out;
    if (now < spill_retry_at) return out;
    out = store.spill(bytes);
    if (out.failed) spill_retry_at = now + kSpillRetry;
    if (out.count > 0) {
      log->debug("spilled {} results ({}) to {}", out.count, format_bytes(out.bytes),
                 store.directory().string());
    }
    return out;
  }

  // Managed memory over the target: spill the least recently used results until below it.
  // Checked every turn, as results arrive.
  void check_managed_memory(Clock::time_point now) {
    const auto target = options.memory.bytes(options.memory.target);
    if (!target || store.memory_bytes() <= *target || now < managed_retry_at) return;
    spill(store.memory_bytes() - *target, now);
    // Still above: the rest is in use by tasks (or being sent). Checking again every turn would
    // scan the store every turn; the monitor interval is soon enough.
    if (store.memory_bytes() > *target) {
      managed_retry_at = now + std::chrono::milliseconds(options.memory.monitor_interval_ms);
    }
  }

  // The process's memory, every monitor interval: spill past the spill threshold, pause past
  // the pause threshold, resume below it.
  void check_process_memory(Clock::time_point now) {
    const MemoryPolicy& m = options.memory;
    if (m.limit == 0 || !m.measure_process || now < next_memory_check) return;
    next_memory_check = now + std::chrono::milliseconds(m.monitor_interval_ms);
    const auto measured = process_rss_bytes();
    if (!measured) return;
    std::uint64_t rss = *measured;
    last_rss = rss;
    if (const auto spill_at = m.bytes(m.spill); spill_at && rss > *spill_at) {
      // As dask: spill until the process is (estimated to be) below the target.
      const std::uint64_t goal = m.bytes(m.target).value_or(*spill_at);
      const auto out = spill(rss - goal, now);
      // Freed values are mostly large blocks, given back to the system at once; malloc_trim
      // returns what smaller ones left in the heap.
      if (out.bytes > 0) ::malloc_trim(0);
      rss -= std::min(rss, out.bytes);
      if (rss > *spill_at && !out.failed && now >= next_unmanaged_warning) {
        next_unmanaged_warning = now + std::chrono::seconds(30);
        log->warn("process memory {} is above the spill threshold {} ({}% of the memory limit {}) "
                  "with {} of results left in memory that can be spilled: the rest is memory "
                  "the worker does not manage (tasks' own allocations, fragmentation)",
                  format_bytes(*measured), format_bytes(*spill_at),
                  static_cast<int>(*m.spill * 100 + 0.5), format_bytes(m.limit),
                  format_bytes(store.memory_bytes()));
      }
    }
    if (const auto pause_at = m.bytes(m.pause)) {
      const bool over = rss > *pause_at;
      if (over != paused) set_paused(over, rss);
    }
  }

  void set_paused(bool now_paused, std::uint64_t rss) {
    paused = now_paused;
    {
      std::lock_guard lock(jobs_mu);
      sh->paused = now_paused;
    }
    const int percent = static_cast<int>(100.0 * static_cast<double>(rss) /
                                         static_cast<double>(options.memory.limit) + 0.5);
    if (now_paused) {
      log->warn("worker is at {}% of its memory limit: pausing (no new tasks, no fetches) until "
                "it is below {}%; process memory {}, limit {}",
                percent, static_cast<int>(*options.memory.pause * 100 + 0.5), format_bytes(rss),
                format_bytes(options.memory.limit));
    } else {
      log->info("worker is at {}% of its memory limit: resuming", percent);
      jobs_cv.notify_all();
      // Tasks that became ready while paused were left unstaged, so that their spilled
      // dependencies were not read back meanwhile.
      std::vector<std::string> ready;
      for (const auto& [k, t] : tasks) {
        if (t.phase == TaskPhase::fetching && t.missing == 0) ready.push_back(k);
      }
      for (const auto& k : ready) {
        if (auto t = tasks.find(k); t != tasks.end()) enqueue(k, t.value());
      }
    }
    send_heartbeat();  // tells the scheduler now, not at the next heartbeat
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
    log_memory_policy();
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
      auto wake_at = next_heartbeat;
      if (options.memory.limit > 0 && options.memory.measure_process) {
        wake_at = std::min(wake_at, next_memory_check);
      }
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - Clock::now());
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
      const auto now = Clock::now();
      check_managed_memory(now);
      check_process_memory(now);  // may resume, staging the tasks held back meanwhile
      dispatch_jobs();
      if (!paused) start_fetches();  // fetched data would add to the memory that paused it
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
  SpillStore store;
  KeyMap<TaskRec> tasks;
  bool paused = false;  // mirrored in sh->paused for the executors
  std::uint64_t last_rss = 0;
  Clock::time_point next_memory_check = Clock::now();
  Clock::time_point spill_retry_at{};
  Clock::time_point managed_retry_at{};
  Clock::time_point next_unmanaged_warning{};
  std::unordered_map<std::string, FetchState> fetches;
  std::unordered_set<std::string> to_fetch;
  struct Request {
    std::string holder;
    std::vector<std::string> keys;
    Clock::time_point sent;
  };
  // Measured transfer speed from peers (bytes/s, a moving average of fetches of at least
  // kMeasuredFetchBytes: smaller ones measure latency, not bandwidth); 0 until one happened.
  // The scheduler weighs it against compute time when placing and stealing tasks.
  double bandwidth = 0;
  static constexpr std::size_t kMeasuredFetchBytes = 1 << 20;
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
