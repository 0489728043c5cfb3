#include <plexus/scheduler/scheduler_service.hpp>

#include <plexus/common/hex.hpp>
#include <plexus/common/logging.hpp>
#include <plexus/config/config.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>

#include <plexus/abi.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace plexus::sched {

namespace fb = flatbuffers;

ServiceOptions service_options(const config::Config& c) {
  ServiceOptions o;
  o.address = c.get_string("scheduler.address");
  o.scheduler_file = c.get_string("scheduler.scheduler-file");
  o.heartbeat_interval_ms = static_cast<std::uint32_t>(c.get_int("scheduler.heartbeat-interval-ms"));
  o.state.worker_ttl_s = static_cast<double>(c.get_int("scheduler.worker-ttl-ms")) / 1000.0;
  o.state.allowed_failures = static_cast<std::uint32_t>(c.get_int("scheduler.allowed-failures"));
  o.state.worker_saturation = c.get_double("scheduler.worker-saturation");
  o.state.queue_target_s = c.get_double("scheduler.queue-target-ms") / 1000.0;
  o.state.max_tasks_per_worker =
      static_cast<std::uint32_t>(c.get_int("scheduler.max-tasks-per-worker"));
  o.state.default_task_duration_s = c.get_double("scheduler.default-task-duration-ms") / 1000.0;
  o.state.bandwidth_bytes_per_s =
      static_cast<double>(c.get_int("scheduler.bandwidth-bytes-per-s"));
  o.state.work_stealing = c.get_bool("scheduler.work-stealing");
  o.steal_interval_ms = static_cast<std::uint32_t>(
      std::max<std::int64_t>(1, c.get_int("scheduler.work-stealing-interval-ms")));
  o.comm = comm::comm_options(c);
  return o;
}

namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

enum class Role : std::uint8_t { unknown, client, worker, nanny, removed };

const char* role_name(Role r) {
  switch (r) {
    case Role::client: return "client";
    case Role::worker: return "worker";
    case Role::nanny: return "nanny";
    case Role::removed: return "removed worker";
    case Role::unknown: break;
  }
  return "peer";
}

// What a worker's last heartbeat said about its memory (scheduler_info shows it).
struct WorkerMemory {
  std::uint64_t managed_bytes = 0;
  std::uint64_t spilled_bytes = 0;
  std::uint64_t spill_count = 0;
  std::uint64_t process_bytes = 0;
  std::uint64_t limit = 0;
};

struct Peer {
  std::string routing_id;
  Role role = Role::unknown;
  std::string name;
  bool warned_malformed = false;
  WorkerMemory memory;  // workers only
};

// Messages for one peer, gathered during a turn and sent as one batch. A worker must see compute
// and free requests in the order they were made (a key freed and then computed again must not
// arrive as compute-then-free): at most one of `computes` and `frees` is open at a time, and
// switching closes the other into its envelope.
struct Pending {
  wire::OutBatch batch;
  std::vector<fb::Offset<wire::ComputeTask>> computes;
  std::vector<fb::Offset<wire::KeyReport>> reports;
  std::vector<fb::Offset<fb::String>> frees;
  bool queued = false;  // in the dirty list
};

}  // namespace

struct SchedulerService::Impl final : SchedulerOutbox {
  explicit Impl(ServiceOptions o)
      : options(std::move(o)),
        log(logger("scheduler")),
        socket(comm::context(), zmq::socket_type::router),
        state(options.state, *this) {
    comm::configure(socket, options.comm.linger_ms, options.comm.max_message_bytes);
    socket.set(zmq::sockopt::router_mandatory, 1);
    bound = comm::bind(socket, options.address);
    if (!options.scheduler_file.empty()) write_scheduler_file();
    scheduler_id = bound + "#" + std::to_string(::getpid());
  }

  void write_scheduler_file() {
    std::string tmp = options.scheduler_file + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream file(tmp, std::ios::trunc);
      file << bound << "\n";
      file.flush();
      if (!file) {
        throw std::runtime_error("cannot write scheduler file '" + options.scheduler_file + "'");
      }
    }
    std::filesystem::rename(tmp, options.scheduler_file);
  }

  // ---- SchedulerOutbox ----
  Pending& pending(PeerId peer) {
    Pending& p = out[peer];
    if (!p.queued) {
      p.queued = true;
      dirty.push_back(peer);
    }
    return p;
  }

  static void close_computes(Pending& p) {
    if (p.computes.empty()) return;
    p.batch.add(wire::CreateCompute(p.batch.fbb(), p.batch.fbb().CreateVector(p.computes)));
    p.computes.clear();
  }
  static void close_frees(Pending& p) {
    if (p.frees.empty()) return;
    p.batch.add(wire::CreateFreeKeys(p.batch.fbb(), p.batch.fbb().CreateVector(p.frees)));
    p.frees.clear();
  }

  void compute(PeerId worker, const ComputeRequest& r) override {
    Pending& p = pending(worker);
    close_frees(p);
    auto& b = p.batch;
    std::vector<fb::Offset<wire::DepLocation>> deps;
    deps.reserve(r.deps.size());
    for (const auto& d : r.deps) {
      auto hv = b.strs(d.holders);
      auto k = b.str(d.key);
      deps.push_back(wire::CreateDepLocation(b.fbb(), k, hv, d.nbytes));
    }
    auto key = b.str(r.key);
    auto name = b.str(r.name);
    auto args = b.bytes(r.args);
    auto dv = deps.empty() ? 0 : b.fbb().CreateVector(deps);
    p.computes.push_back(wire::CreateComputeTask(b.fbb(), key, name, args,
                                                 dv.IsNull() ? fb::Offset<fb::Vector<fb::Offset<wire::DepLocation>>>() : dv,
                                                 r.priority));
  }

  void free_key(PeerId worker, std::string_view key) override {
    Pending& p = pending(worker);
    close_computes(p);
    p.frees.push_back(p.batch.str(key));
  }

  void report(PeerId client, const KeyReport& r) override {
    if (client >= kFirstInternalPeer) return;  // the scheduler's own wants: nobody to tell
    Pending& p = pending(client);
    auto& b = p.batch;
    auto key = b.str(r.key);
    fb::Offset<fb::Vector<std::uint8_t>> data;
    if (r.inline_data) data = b.bytes(*r.inline_data);
    fb::Offset<fb::Vector<fb::Offset<fb::String>>> holders;
    if (!r.holders.empty()) holders = b.strs(r.holders);
    fb::Offset<wire::Error> err;
    if (r.error) err = b.error(*r.error);
    p.reports.push_back(wire::CreateKeyReport(b.fbb(), key, static_cast<wire::KeyStatus>(r.status),
                                              r.nbytes, r.inline_data.has_value(), data, holders,
                                              err));
  }

  void shutdown_worker(PeerId worker, std::string_view reason) override {
    Pending& p = pending(worker);
    close_computes(p);
    close_frees(p);
    p.batch.add(wire::CreateShutdown(p.batch.fbb(), p.batch.str(reason)));
  }

  void steal(PeerId worker, std::span<const std::string_view> keys) override {
    Pending& p = pending(worker);
    close_computes(p);
    close_frees(p);
    p.batch.add(wire::CreateStealRequest(p.batch.fbb(), p.batch.strs(keys)));
  }

  // In order with the computes and frees around it (a key freed and then copied back, or the
  // other way round, must arrive in that order).
  void copy_key(PeerId worker, const DepLocation& d) override {
    Pending& p = pending(worker);
    close_computes(p);
    close_frees(p);
    auto& b = p.batch;
    auto hv = b.strs(d.holders);
    auto k = b.str(d.key);
    const auto loc = wire::CreateDepLocation(b.fbb(), k, hv, d.nbytes);
    b.add(wire::CreateCopyKeys(b.fbb(), b.fbb().CreateVector(&loc, 1)));
  }

  void restart_worker(PeerId worker, bool exit) override {
    Pending& p = pending(worker);
    close_computes(p);
    close_frees(p);
    p.batch.add(wire::CreateRestartWorker(p.batch.fbb(), exit));
  }

  void reply(PeerId client, std::uint64_t request_id, std::string_view json,
             std::string_view error) override {
    if (client >= kFirstInternalPeer) return;
    Pending& p = pending(client);
    auto& b = p.batch;
    // The reports made before the answer (e.g. a restart's cancellations) go before it.
    if (!p.reports.empty()) {
      b.add(wire::CreateReports(b.fbb(), b.fbb().CreateVector(p.reports)));
      p.reports.clear();
    }
    b.add(error.empty() ? wire::CreateInfoReply(b.fbb(), request_id, b.str(json), 0)
                        : wire::CreateInfoReply(b.fbb(), request_id, 0, b.str(error)));
  }

  // ---- sending ----
  void flush() {
    for (PeerId peer : dirty) {
      Pending& p = out[peer];
      p.queued = false;
      auto& b = p.batch;
      close_computes(p);
      close_frees(p);
      if (!p.reports.empty()) {
        b.add(wire::CreateReports(b.fbb(), b.fbb().CreateVector(p.reports)));
        p.reports.clear();
      }
      if (!b.empty()) send(peer, b.finish());
      b.reset();
    }
    dirty.clear();
  }

  void send(PeerId peer, std::string_view bytes) {
    auto it = peers.find(peer);
    if (it == peers.end()) return;
    send_raw(it->second.routing_id, bytes);
  }

  void send_raw(const std::string& routing_id, std::string_view bytes) {
    try {
      socket.send(zmq::buffer(routing_id), zmq::send_flags::sndmore);
      socket.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
      ++stats.batches_sent;
    } catch (const zmq::error_t& e) {
      // EHOSTUNREACH: the peer has gone; heartbeats or its goodbye take care of its state.
      log->debug("send failed peer={} error={}", comm::hex_id(zmq::message_t(routing_id)),
                 e.what());
    }
  }

  template <class Make>
  void send_one(const std::string& routing_id, Make make) {
    wire::OutBatch b;
    b.add(make(b));
    send_raw(routing_id, b.finish());
  }

  // ---- receiving ----
  PeerId peer_for(const zmq::message_t& id) {
    std::string rid(static_cast<const char*>(id.data()), id.size());
    auto it = by_routing_id.find(rid);
    if (it != by_routing_id.end()) return it->second;
    PeerId p = next_peer++;
    by_routing_id.emplace(rid, p);
    peers[p].routing_id = std::move(rid);
    return p;
  }

  void protocol_error(PeerId peer, const std::string& reason) {
    ++stats.malformed_dropped;
    Peer& pr = peers[peer];
    if (!pr.warned_malformed) {
      pr.warned_malformed = true;
      log->warn("dropped message peer={} name='{}' reason='{}' (further ones from this peer are "
                "logged at debug level)",
                peer, pr.name, reason);
    } else {
      log->debug("dropped message peer={} reason='{}'", peer, reason);
    }
    send_one(pr.routing_id, [&](wire::OutBatch& b) {
      return wire::CreateProtocolError(b.fbb(), b.str(reason));
    });
  }

  void handle(std::vector<zmq::message_t>& frames) {
    ++stats.messages_received;
    if (frames.size() < 2) return;  // a ROUTER always prepends the id; nothing to answer
    PeerId peer = peer_for(frames[0]);
    const auto& body = frames[1];
    const wire::Batch* batch = wire::verify_batch(body.data(), body.size(), limits);
    if (!batch || !batch->messages()) {
      protocol_error(peer, "malformed message (" + std::to_string(body.size()) +
                               " bytes) failed verification and was dropped");
      return;
    }
    double now = now_s();
    for (const wire::Envelope* env : *batch->messages()) {
      if (!env) continue;
      dispatch(peer, *env, now);
      if (stopping) return;
    }
  }

  void dispatch(PeerId peer, const wire::Envelope& env, double now) {
    Peer& pr = peers[peer];
    if (env.msg_type() == wire::Msg::Hello) {
      on_hello(peer, *env.msg_as_Hello(), now);
      return;
    }
    if (pr.role == Role::removed) {
      shutdown_worker(peer, "this worker was removed from the cluster (its nanny reported it dead, "
                            "or no heartbeat within worker-ttl); restart it to rejoin");
      return;
    }
    if (pr.role == Role::unknown) {
      protocol_error(peer, std::string("message '") + wire::EnumNameMsg(env.msg_type()) +
                               "' before the Hello handshake was dropped");
      return;
    }
    const bool client = pr.role == Role::client;
    const bool worker = pr.role == Role::worker;
    switch (env.msg_type()) {
      case wire::Msg::Submit: {
        if (!client) break;
        const auto* m = env.msg_as_Submit();
        if (!m->tasks()) return;
        // Views into the message: the state copies what it keeps, once.
        spec_views.clear();
        key_views.clear();
        dep_ranges.clear();
        worker_views.clear();
        resource_views.clear();
        restriction_ranges.clear();
        for (const wire::TaskSpec* t : *m->tasks()) {
          if (!t || !t->key() || !t->name()) {
            protocol_error(peer, "task without key or name dropped");
            continue;
          }
          const std::size_t first = key_views.size();
          wire::append_views(t->deps(), key_views);
          dep_ranges.emplace_back(first, key_views.size() - first);
          spec_views.push_back({.key = wire::view(t->key()),
                                .name = wire::view(t->name()),
                                .args = wire::view(t->args()),
                                .deps = {},
                                .retries = t->retries(),
                                .priority = t->priority(),
                                .workers = {},
                                .allow_other_workers = t->allow_other_workers(),
                                .resources = {},
                                .wanted = t->wanted()});
          if (t->workers() || t->resources()) {  // rare: placement restrictions
            Restrictions r{spec_views.size() - 1, worker_views.size(), 0,
                           resource_views.size(), 0};
            wire::append_views(t->workers(), worker_views);
            r.workers = worker_views.size() - r.first_worker;
            if (t->resources()) {
              for (const wire::Resource* res : *t->resources()) {
                if (res && res->name()) {
                  resource_views.push_back({wire::view(res->name()), res->amount()});
                }
              }
            }
            r.resources = resource_views.size() - r.first_resource;
            restriction_ranges.push_back(r);
          }
        }
        // The scratch vectors have stopped growing: the spans can point into them now.
        for (std::size_t i = 0; i < spec_views.size(); ++i) {
          spec_views[i].deps =
              std::span(key_views).subspan(dep_ranges[i].first, dep_ranges[i].second);
        }
        for (const Restrictions& r : restriction_ranges) {
          spec_views[r.spec].workers = std::span(worker_views).subspan(r.first_worker, r.workers);
          spec_views[r.spec].resources =
              std::span(resource_views).subspan(r.first_resource, r.resources);
        }
        state.on_submit(peer, spec_views);
        return;
      }
      case wire::Msg::Want: {
        if (!client) break;
        state.on_want(peer, views_of(env.msg_as_Want()->keys()));
        return;
      }
      case wire::Msg::Release: {
        if (!client) break;
        state.on_release(peer, views_of(env.msg_as_Release()->keys()));
        return;
      }
      case wire::Msg::Cancel: {
        if (!client) break;
        state.on_cancel(peer, views_of(env.msg_as_Cancel()->keys()));
        return;
      }
      case wire::Msg::Done: {
        if (!worker) break;
        const auto* m = env.msg_as_Done();
        if (m->done()) {
          for (const wire::TaskDone* d : *m->done()) {
            if (!d || !d->key()) continue;
            std::optional<std::string_view> data;
            if (d->inline_data()) data = wire::view(d->data());
            state.on_task_done(peer, wire::view(d->key()), d->nbytes(), data,
                               static_cast<double>(d->duration_us()) / 1e6, now);
          }
        }
        if (m->failed()) {
          for (const wire::TaskFailed* f : *m->failed()) {
            if (!f || !f->key()) continue;
            state.on_task_failed(peer, wire::view(f->key()), wire::to_error_info(f->error()),
                                 static_cast<double>(f->duration_us()) / 1e6, now);
          }
        }
        return;
      }
      case wire::Msg::MissingDeps: {
        if (!worker) break;
        const auto* m = env.msg_as_MissingDeps();
        state.on_missing_deps(peer, wire::view(m->key()), views_of(m->missing()));
        return;
      }
      case wire::Msg::StealReply: {
        if (!worker) break;
        const auto* m = env.msg_as_StealReply();
        std::vector<std::string_view> stolen;
        wire::append_views(m->stolen(), stolen);
        state.on_steal_reply(peer, stolen, views_of(m->kept()));
        return;
      }
      case wire::Msg::Reject: {
        if (!worker) break;
        state.on_reject(peer, views_of(env.msg_as_Reject()->keys()));
        return;
      }
      case wire::Msg::Heartbeat: {
        if (worker) {
          const auto* m = env.msg_as_Heartbeat();
          pr.memory = {m->memory_bytes(), m->spilled_bytes(), m->spill_count(),
                       m->process_bytes(), m->memory_limit()};
          state.on_heartbeat(peer, now);
          state.on_worker_paused(peer, m->paused());
          if (m->bandwidth() > 0) state.on_bandwidth(peer, m->bandwidth());
        }
        // Answer so the peer knows the scheduler is alive (its death timeout).
        Pending& p = pending(peer);
        p.batch.add(wire::CreateHeartbeat(p.batch.fbb(), 0, 0, 0));
        return;
      }
      case wire::Msg::DataLost: {
        if (!worker) break;
        const auto* m = env.msg_as_DataLost();
        log->warn("worker lost data peer={} name='{}' keys={}: {}", peer, pr.name,
                  m->keys() ? m->keys()->size() : 0, wire::view(m->reason()));
        state.on_data_lost(peer, views_of(m->keys()));
        return;
      }
      case wire::Msg::Goodbye: {
        log->info("{} left peer={} name='{}' reason='{}'", role_name(pr.role), peer, pr.name,
                  wire::view(env.msg_as_Goodbye()->reason()));
        if (client) {
          state.on_client_left(peer);
        } else if (worker) {
          state.on_worker_left(peer, WorkerExit::graceful, now);
        }
        forget_peer(peer);
        return;
      }
      case wire::Msg::Retry: {
        if (!client) break;
        state.on_retry(peer, views_of(env.msg_as_Retry()->keys()));
        return;
      }
      case wire::Msg::FireAndForget: {
        if (!client) break;
        state.on_fire_and_forget(peer, views_of(env.msg_as_FireAndForget()->keys()));
        return;
      }
      case wire::Msg::InfoRequest: {
        if (!client) break;
        answer_info(peer, *env.msg_as_InfoRequest());
        return;
      }
      case wire::Msg::Scatter: {
        if (!client) break;
        on_scatter(peer, *env.msg_as_Scatter());
        return;
      }
      case wire::Msg::Replicate: {
        if (!client) break;
        const auto* m = env.msg_as_Replicate();
        views_of(m->keys());
        worker_views.clear();
        wire::append_views(m->workers(), worker_views);
        state.on_replicate(peer, m->request_id(), key_views, m->n(), worker_views);
        return;
      }
      case wire::Msg::Rebalance: {
        if (!client) break;
        const auto* m = env.msg_as_Rebalance();
        views_of(m->keys());
        worker_views.clear();
        wire::append_views(m->workers(), worker_views);
        state.on_rebalance(peer, m->request_id(), key_views, worker_views);
        return;
      }
      case wire::Msg::Restart: {
        if (!client) break;
        log->warn("restarting the cluster: requested by client peer={} name='{}'", peer, pr.name);
        state.on_restart(peer, env.msg_as_Restart()->request_id(), supervised_workers());
        return;
      }
      case wire::Msg::KeysCopied: {
        if (!worker) break;
        const auto* m = env.msg_as_KeysCopied();
        if (m->copied()) {
          for (flatbuffers::uoffset_t i = 0; i < m->copied()->size(); ++i) {
            const std::uint64_t nbytes =
                m->nbytes() && i < m->nbytes()->size() ? m->nbytes()->Get(i) : 0;
            state.on_keys_copied(peer, wire::view(m->copied()->Get(i)), nbytes, now);
          }
        }
        if (m->failed()) {
          for (const auto* k : *m->failed()) state.on_copy_failed(peer, wire::view(k), now);
        }
        return;
      }
      case wire::Msg::WorkerDied: {
        if (pr.role != Role::nanny) break;
        const auto* m = env.msg_as_WorkerDied();
        const std::string_view name = wire::view(m->name());
        const std::string_view cause = wire::view(m->cause());
        if (auto dead = state.on_worker_died(name, cause, now, wire::view(m->traceback()))) {
          log->warn("worker removed peer={} name='{}': {} (reported by its nanny)", *dead, name,
                    cause);
          if (auto it = peers.find(*dead); it != peers.end()) it->second.role = Role::removed;
        }
        return;
      }
      default:
        break;
    }
    protocol_error(peer, std::string("unexpected message '") + wire::EnumNameMsg(env.msg_type()) +
                             "' from a " + role_name(pr.role));
  }

  // A client's scattered values: views into the message (holders of every key in one vector).
  void on_scatter(PeerId peer, const wire::Scatter& m) {
    if (!m.keys()) return;
    key_views.clear();
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    for (const wire::ScatteredKey* k : *m.keys()) {
      const std::size_t first = key_views.size();
      if (k) wire::append_views(k->holders(), key_views);
      ranges.emplace_back(first, key_views.size() - first);
    }
    std::vector<ScatteredKeyView> keys;
    for (flatbuffers::uoffset_t i = 0; i < m.keys()->size(); ++i) {
      const wire::ScatteredKey* k = m.keys()->Get(i);
      if (!k || !k->key() || k->key()->size() == 0) {
        protocol_error(peer, "scattered value without a key dropped");
        continue;
      }
      keys.push_back({wire::view(k->key()), k->nbytes(),
                      std::span(key_views).subspan(ranges[i].first, ranges[i].second)});
    }
    state.on_scatter(peer, keys);
    reply(peer, m.request_id(), "null", {});
  }

  // The live workers that run under a nanny (a nanny with the worker's name is connected): a
  // restart makes them exit, for their nannies to start fresh processes.
  std::vector<PeerId> supervised_workers() const {
    std::unordered_set<std::string> nannies;
    for (const auto& [id, pr] : peers) {
      if (pr.role == Role::nanny) nannies.insert(pr.name);
    }
    std::vector<PeerId> out_peers;
    for (const auto& w : state.workers()) {
      if (nannies.count(w.name) > 0) out_peers.push_back(w.peer);
    }
    return out_peers;
  }

  // Views of a message's strings, in the reused key_views (valid until the next call).
  const std::vector<std::string_view>& views_of(
      const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
    key_views.clear();
    wire::append_views(v, key_views);
    return key_views;
  }

  // A client's request, answered in the peer's batch with JSON or an error.
  void answer_info(PeerId peer, const wire::InfoRequest& r) {
    nlohmann::json j = nlohmann::json::object();
    std::optional<std::string> error;
    views_of(r.keys());
    const std::string_view first = key_views.empty() ? std::string_view() : key_views[0];
    switch (r.kind()) {
      case wire::InfoKind::scheduler_info: {
        j["type"] = "Scheduler";
        j["id"] = scheduler_id;
        j["address"] = bound;
        j["tasks"] = state.task_count();
        j["queued"] = state.queued_count();
        nlohmann::json workers = nlohmann::json::object();
        for (const auto& w : state.workers()) {
          nlohmann::json resources = nlohmann::json::object();
          for (const auto& res : w.resources) resources[res.name] = res.amount;
          const auto p = peers.find(w.peer);
          const WorkerMemory m = p == peers.end() ? WorkerMemory{} : p->second.memory;
          workers[w.address] = {{"name", w.name},
                                {"nthreads", w.nthreads},
                                {"processing", w.processing},
                                {"held", w.held},
                                {"held_bytes", w.held_bytes},
                                {"closing", w.closing},
                                {"resources", std::move(resources)},
                                {"paused", w.paused},
                                {"managed_bytes", m.managed_bytes},
                                {"spilled_bytes", m.spilled_bytes},
                                {"spill_count", m.spill_count},
                                {"process_bytes", m.process_bytes},
                                {"memory_limit", m.limit}};
        }
        j["workers"] = std::move(workers);
        break;
      }
      case wire::InfoKind::who_has:
        for (std::string_view k : key_views) j[std::string(k)] = state.holders_of(k);
        break;
      case wire::InfoKind::task:
        if (const auto call = state.call_of(first)) {
          j = {{"name", call->name}, {"args", to_hex(call->args)}, {"deps", call->deps}};
        } else {
          error = "the scheduler does not know key " + std::string(first);
        }
        break;
      case wire::InfoKind::datasets:
        j = state.datasets();
        break;
      case wire::InfoKind::dataset:
        if (auto keys = state.dataset(first)) {
          j = std::move(*keys);
        } else {
          error = "no dataset named '" + std::string(first) + "'";
        }
        break;
      case wire::InfoKind::publish:
        if (first.empty()) {
          error = "a dataset needs a name";
        } else {
          error = state.on_publish(peer, first, std::span(key_views).subspan(1), r.count() == 1);
        }
        j = nullptr;
        break;
      case wire::InfoKind::unpublish:
        if (first.empty()) {
          error = "a dataset needs a name";
        } else if (!state.on_unpublish(first)) {
          error = "no dataset named '" + std::string(first) + "'";
        }
        j = nullptr;
        break;
      case wire::InfoKind::logs:
        j = recent_log_lines(static_cast<std::size_t>(r.count()), {"scheduler"});
        break;
      case wire::InfoKind::hold:
        for (auto& [key, where] : state.on_hold(peer, key_views)) j[key] = std::move(where);
        break;
      case wire::InfoKind::has_what:
        if (key_views.empty()) {
          for (const auto& w : state.workers()) j[w.address] = state.keys_held_by(w.address);
        } else {
          for (std::string_view a : key_views) j[std::string(a)] = state.keys_held_by(a);
        }
        break;
    }
    Pending& p = pending(peer);
    auto& b = p.batch;
    b.add(error ? wire::CreateInfoReply(b.fbb(), r.request_id(), 0, b.str(*error))
                : wire::CreateInfoReply(b.fbb(), r.request_id(), b.str(j.dump()), 0));
  }

  void on_hello(PeerId peer, const wire::Hello& h, double now) {
    Peer& pr = peers[peer];
    std::string name(wire::view(h.name()));
    if (h.protocol_version() != wire::kProtocolVersion) {
      refuse(peer, "protocol version mismatch: peer '" + name + "' speaks version " +
                       std::to_string(h.protocol_version()) + ", this scheduler speaks version " +
                       std::to_string(wire::kProtocolVersion));
      return;
    }
    if (h.role() == wire::Role::worker && h.sdk_abi() != PLEXUS_SDK_ABI_VERSION) {
      refuse(peer, "SDK ABI mismatch: worker '" + name + "' has SDK ABI " +
                       std::to_string(h.sdk_abi()) + ", this scheduler has SDK ABI " +
                       std::to_string(PLEXUS_SDK_ABI_VERSION));
      return;
    }
    if (pr.role != Role::unknown && pr.role != Role::removed) {
      protocol_error(peer, "second Hello from the same peer ignored");
      return;
    }
    pr.name = name;
    if (h.role() == wire::Role::worker) {
      if (h.nthreads() == 0 || !h.data_address() || h.data_address()->size() == 0) {
        refuse(peer, "worker '" + name + "' announced no threads or no data address");
        return;
      }
      pr.role = Role::worker;
      WorkerInfo info;
      info.name = name;
      info.data_address = wire::view(h.data_address());
      info.nthreads = h.nthreads();
      std::string offers;
      if (h.resources()) {
        for (const wire::Resource* r : *h.resources()) {
          if (!r || !r->name()) continue;
          info.resources.push_back({std::string(wire::view(r->name())), r->amount()});
          offers += fmt::format(" {}={}", info.resources.back().name, r->amount());
        }
      }
      log->info("worker joined peer={} name='{}' nthreads={} data={} pid={}{}{}", peer, name,
                info.nthreads, info.data_address, h.pid(), offers.empty() ? "" : " resources:",
                offers);
      state.on_worker_joined(peer, std::move(info), now);
    } else if (h.role() == wire::Role::nanny) {
      pr.role = Role::nanny;
      log->info("nanny joined peer={} name='{}' pid={}", peer, name, h.pid());
    } else {
      pr.role = Role::client;
      log->info("client joined peer={} name='{}' pid={}", peer, name, h.pid());
      state.on_client_joined(peer, name);
    }
    // The Welcome goes first in this peer's batch: it must precede anything the state sent.
    Pending& p = pending(peer);
    auto sid = p.batch.str(scheduler_id);
    auto welcome = wire::CreateWelcome(p.batch.fbb(), wire::kProtocolVersion, peer,
                                       options.heartbeat_interval_ms, sid);
    p.batch.add(welcome);
  }

  void refuse(PeerId peer, const std::string& reason) {
    log->warn("refused peer={} reason='{}'", peer, reason);
    send_one(peers[peer].routing_id,
             [&](wire::OutBatch& b) { return wire::CreateRefused(b.fbb(), b.str(reason)); });
    forget_peer(peer);
  }

  void forget_peer(PeerId peer) {
    auto it = peers.find(peer);
    if (it == peers.end()) return;
    by_routing_id.erase(it->second.routing_id);
    out.erase(peer);
    peers.erase(it);
  }

  void tick(double now) {
    for (PeerId w : state.on_tick(now)) {
      auto it = peers.find(w);
      if (it == peers.end()) continue;
      log->warn("worker removed peer={} name='{}': no heartbeat within {} ms", w, it->second.name,
                static_cast<long>(options.state.worker_ttl_s * 1000));
      it->second.role = Role::removed;
    }
  }

  void say_goodbye() {
    for (auto& [id, pr] : peers) {
      if (pr.role == Role::worker) {
        send_one(pr.routing_id, [&](wire::OutBatch& b) {
          return wire::CreateShutdown(b.fbb(), b.str("the scheduler is shutting down"));
        });
      } else if (pr.role == Role::client || pr.role == Role::nanny) {
        send_one(pr.routing_id, [&](wire::OutBatch& b) {
          return wire::CreateShutdown(b.fbb(), b.str("the scheduler is shutting down"));
        });
      }
    }
  }

  void run() {
    zmq::pollitem_t items[2] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, wake.fd(), ZMQ_POLLIN, 0}};
    std::vector<zmq::message_t> frames;
    double tick_every = std::max(0.05, static_cast<double>(options.heartbeat_interval_ms) / 1000.0);
    double next_tick = now_s() + tick_every;
    const double steal_every = static_cast<double>(options.steal_interval_ms) / 1000.0;
    double next_steal = now_s() + steal_every;
    log->info("scheduler listening address={}", bound);
    while (!stopping) {
      double t = now_s();
      const double next_due = options.state.work_stealing ? std::min(next_tick, next_steal) : next_tick;
      long timeout_ms = static_cast<long>(std::max(0.0, (next_due - t) * 1000.0)) + 1;
      zmq::poll(items, 2, std::chrono::milliseconds(timeout_ms));
      if (items[1].revents & ZMQ_POLLIN) wake.drain();
      // Drain a bounded number of messages per turn so that replies flow out regularly.
      for (int i = 0; i < 4096 && !stopping; ++i) {
        if (!comm::recv_multipart(socket, frames, true)) break;
        handle(frames);
      }
      t = now_s();
      if (t >= next_tick) {
        tick(t);
        next_tick = t + tick_every;
      }
      if (options.state.work_stealing && t >= next_steal) {
        state.on_steal_tick();
        next_steal = t + steal_every;
      }
      flush();
    }
    say_goodbye();
    if (!options.scheduler_file.empty()) {
      std::error_code ec;
      std::filesystem::remove(options.scheduler_file, ec);
    }
    log->info("scheduler stopped address={} received={} dropped={}", bound,
              stats.messages_received.load(), stats.malformed_dropped.load());
    socket.close();
  }

  ServiceOptions options;
  std::shared_ptr<spdlog::logger> log;
  zmq::socket_t socket;
  SchedulerState state;
  // Scratch for turning a message into views for the state (reused, so no allocation per turn).
  std::vector<TaskSpecView> spec_views;
  std::vector<std::string_view> key_views;
  std::vector<std::pair<std::size_t, std::size_t>> dep_ranges;  // {first, count} in key_views
  // Placement restrictions of the tasks that have some, by spec index.
  struct Restrictions {
    std::size_t spec, first_worker, workers, first_resource, resources;
  };
  std::vector<std::string_view> worker_views;  // also replicate's and rebalance's workers
  std::vector<ResourceView> resource_views;
  std::vector<Restrictions> restriction_ranges;
  std::string bound;
  std::string scheduler_id;
  const wire::VerifyLimits limits = options.comm.limits;
  comm::Wakeup wake;
  std::atomic<bool> stopping{false};
  std::unordered_map<std::string, PeerId> by_routing_id;
  std::unordered_map<PeerId, Peer> peers;
  std::unordered_map<PeerId, Pending> out;
  std::vector<PeerId> dirty;
  PeerId next_peer = 1;
  struct {
    std::atomic<std::uint64_t> messages_received{0};
    std::atomic<std::uint64_t> malformed_dropped{0};
    std::atomic<std::uint64_t> batches_sent{0};
  } stats;  // written by the loop, read by stats() from any thread
};

SchedulerService::SchedulerService(ServiceOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
SchedulerService::~SchedulerService() = default;
const std::string& SchedulerService::address() const { return impl_->bound; }
void SchedulerService::run() { impl_->run(); }
void SchedulerService::stop() {
  impl_->stopping = true;
  impl_->wake.notify();
}
ServiceStats SchedulerService::stats() const {
  return {impl_->stats.messages_received.load(), impl_->stats.malformed_dropped.load(),
          impl_->stats.batches_sent.load()};
}

}  // namespace plexus::sched
