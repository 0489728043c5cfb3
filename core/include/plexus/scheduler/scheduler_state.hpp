// The scheduler's logic, sans I/O: events in, messages out through a SchedulerOutbox.
//
// It owns every task, worker and client record and decides placement, reference counting and
// recovery. It holds no sockets and reads no clock: times are passed in with each event (seconds
// on a monotonic clock), so unit tests drive it deterministically and benchmarks measure it alone.
//
// Task states follow dask.distributed:
//   released   known (spec kept for lineage) but neither running nor holding data
//   waiting    wanted, some dependency not in memory yet
//   queued     ready to run, held on the scheduler because every worker is saturated or none exists
//   processing sent to a worker
//   memory     result held by one or more workers
//   erred      failed; the error is kept and reported to every client that wants the key
//   forgotten  removed entirely (not a stored state: the record is gone)
//
// Reference counting: a task's data is kept while a client wants the key or a dependent that is
// not yet in memory needs it; a task's record (its lineage) is kept while a client wants it or any
// dependent record exists. Releasing the last want of a task that is waiting/queued/processing
// cancels it and, recursively, the dependencies nobody else needs.
//
// Placement: a ready task goes to the worker with the earliest expected start, estimated as
// (expected duration of the work already assigned to it / its threads) + (bytes of dependencies it
// lacks / bandwidth), using per-task-name duration estimates learned from finished tasks. A worker
// is saturated when it holds max(ceil(worker_saturation * nthreads), tasks covering
// queue_target_s of expected work per thread) tasks, capped at max_tasks_per_worker; tasks beyond
// that wait in the scheduler's queue by (priority desc, submission order), so memory stays
// bounded on wide graphs while tiny tasks still pipeline deeply enough to amortize round trips.
//
// Restrictions (rare, kept beside the task): a task may name the workers it runs on (by name or
// data address; with allow_other_workers, any worker when none of them is connected) and the
// resources it holds while running; only workers offering enough free resources qualify, so a
// worker never runs more of them at once than its amounts allow. A ready restricted task no
// worker can take is held, grouped by restriction, and placed as soon as one can.
//
// Work stealing (on_steal_tick): while some worker has idle threads and nothing ready waits for
// it, workers with a backlog are asked to hand back unstarted tasks (on_steal_reply), which are
// then placed like any ready task; a paused worker (memory) is asked for everything it has not
// started. A task moves only if fetching its inputs costs less than running it, and restricted
// tasks never move.
//
// Failure: when a worker leaves, its processing tasks go back to waiting (counting a suspicious
// death when it did not leave gracefully; past allowed_failures the task errs with
// ErrorKind::killed_worker, naming each worker and how it died), and keys that only it held are
// recomputed from their lineage if anyone still needs them. Tasks that were on a dying worker
// ("suspects") never share a worker with each other, so the bystanders of a task that crashes
// its worker are beside it at most once instead of following it into KilledWorker.
//
// Reports from peers that are not (or no longer) workers are ignored; a worker removed for
// missing heartbeats that is heard from again is told to shut down (once). A worker that rejects
// work (on_reject) is taken to be closing and gets no new tasks until it leaves; a paused worker
// (on_worker_paused: its memory is high) gets none until it resumes.
//
// Thread safety: none; one thread (the scheduler's event loop) owns a SchedulerState. The outbox
// must not call back into the state.
#pragma once

#include <plexus/common/errors.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plexus::sched {

/// A connected peer, numbered by the I/O layer. Clients and workers share the number space.
using PeerId = std::uint32_t;
/// The scheduler's own wanter of fire-and-forget keys; never a connected peer (the I/O layer
/// drops reports addressed to it).
inline constexpr PeerId kFireAndForgetPeer = 0xffffffffu;
/// The scheduler's own wanter of published datasets' keys; never a connected peer either.
inline constexpr PeerId kDatasetsPeer = 0xfffffffeu;
/// Peers at or above this are the scheduler's own wanters.
inline constexpr PeerId kFirstInternalPeer = 0xfffffff0u;

enum class TaskState : std::uint8_t { released, waiting, queued, processing, memory, erred };
const char* to_string(TaskState s);

/// An amount of an abstract resource: what a worker offers or what a task holds while it runs.
struct ResourceView {
  std::string_view name;
  double amount = 0;
};
struct Resource {
  std::string name;
  double amount = 0;
};

/// A task as submitted by a client, viewed in place (e.g. in the received message); the views are
/// read during on_submit only.
struct TaskSpecView {
  std::string_view key;
  std::string_view name;
  std::string_view args;
  std::span<const std::string_view> deps;  // no repeats
  std::uint32_t retries = 0;
  std::int32_t priority = 0;
  std::span<const std::string_view> workers{};  // names or data addresses; empty: any worker
  bool allow_other_workers = false;
  std::span<const ResourceView> resources{};
  /// False: the client does not want this key (a graph's intermediate task); it is kept only
  /// while dependents need it.
  bool wanted = true;
};

/// A task as submitted by a client, owning its strings (tests, benchmarks).
struct TaskSpec {
  std::string key;
  std::string name;               // "plugin.task"
  std::string args;               // encoded argument list
  std::vector<std::string> deps;  // keys of futures among the arguments, no repeats
  std::uint32_t retries = 0;
  std::int32_t priority = 0;
  std::vector<std::string> workers{};
  bool allow_other_workers = false;
  std::vector<Resource> resources{};
  bool wanted = true;  // as TaskSpecView::wanted
};

struct WorkerInfo {
  std::string name;
  std::string data_address;  // where peers fetch its data
  std::uint32_t nthreads = 1;
  std::vector<Resource> resources{};  // what it offers; a resource it lacks counts as 0
};

/// How a worker left.
enum class WorkerExit : std::uint8_t {
  graceful,   // said goodbye after handing back its queued work
  timed_out,  // no heartbeat within worker_ttl
  lost,       // the I/O layer knows it is gone (e.g. its process died)
};

/// A dependency as a worker needs it to fetch: key, where it lives, how big it is.
struct DepLocation {
  std::string_view key;
  std::vector<std::string_view> holders;  // data addresses
  std::uint64_t nbytes = 0;
};

/// What a worker is asked to run. Views point into the state and are valid only during the call.
struct ComputeRequest {
  std::string_view key;
  std::string_view name;
  std::string_view args;
  std::int32_t priority = 0;
  std::vector<DepLocation> deps;
};

enum class KeyStatus : std::uint8_t { memory, erred, cancelled, lost };

/// What a client is told about a key it wants. Views valid only during the call.
struct KeyReport {
  std::string_view key;
  KeyStatus status = KeyStatus::memory;
  std::uint64_t nbytes = 0;
  std::optional<std::string_view> inline_data;  // the value, when the worker sent it along
  std::vector<std::string_view> holders;       // data addresses holding the value
  const ErrorInfo* error = nullptr;            // for erred / cancelled / lost
};

/// Where the state's decisions go. The I/O layer batches them per peer; tests record them.
class SchedulerOutbox {
 public:
  virtual ~SchedulerOutbox() = default;
  virtual void compute(PeerId worker, const ComputeRequest& request) = 0;
  /// The worker should drop this key: free its data, or forget it if queued or running.
  virtual void free_key(PeerId worker, std::string_view key) = 0;
  virtual void report(PeerId client, const KeyReport& report) = 0;
  /// The worker must shut down (e.g. it came back after being declared dead).
  virtual void shutdown_worker(PeerId worker, std::string_view reason) = 0;
  /// Work stealing: the worker should hand back these keys if they have not started yet; it
  /// answers with on_steal_reply.
  virtual void steal(PeerId worker, std::span<const std::string_view> keys) = 0;
  /// The worker should fetch `what.key` from one of `what.holders` and keep it, then say so
  /// (on_keys_copied / on_copy_failed). Replicate and rebalance.
  virtual void copy_key(PeerId worker, const DepLocation& what) = 0;
  /// The cluster restarts: the worker exits for its nanny to start a fresh process (`exit`), or
  /// drops every task and value it has in place.
  virtual void restart_worker(PeerId worker, bool exit) = 0;
  /// The answer to a client's request `request_id` (replicate, rebalance, restart) that finished
  /// after the event that asked for it: a JSON document, or an error message instead.
  virtual void reply(PeerId client, std::uint64_t request_id, std::string_view json,
                     std::string_view error) = 0;
};

/// A value a client put on workers itself (scatter), viewed in the received message.
struct ScatteredKeyView {
  std::string_view key;
  std::uint64_t nbytes = 0;
  std::span<const std::string_view> holders;  // data addresses of the workers it was put on
};

struct SchedulerOptions {
  double worker_saturation = 1.1;
  double queue_target_s = 0.002;           // keep this much expected work queued per thread
  std::uint32_t max_tasks_per_worker = 10000;
  double default_task_duration_s = 0.001;  // before a task name has been measured
  double bandwidth_bytes_per_s = 100e6;    // for transfer-time estimates until measured
  std::uint32_t allowed_failures = 3;
  double worker_ttl_s = 10.0;
  /// Work stealing (on_tick): take queued, unstarted tasks back from workers whose queue would
  /// keep them waiting longer than moving them to an idle worker costs.
  bool work_stealing = true;
  /// Only a queue expected to last longer than this per thread is stolen from (seconds).
  double steal_min_backlog_s = 0.02;
};

/// Counters for tests, logs and the benchmarks.
struct SchedulerCounters {
  std::uint64_t tasks_submitted = 0;
  std::uint64_t tasks_deduplicated = 0;  // submissions answered by an existing key
  std::uint64_t tasks_computed = 0;      // compute requests sent
  std::uint64_t tasks_finished = 0;
  std::uint64_t tasks_failed = 0;
  std::uint64_t tasks_recomputed = 0;    // sent again after a worker loss
  std::uint64_t transitions = 0;
  std::uint64_t steal_requests = 0;  // keys asked back from workers
  std::uint64_t tasks_stolen = 0;    // keys a worker handed back unstarted
};

class SchedulerState {
 public:
  SchedulerState(SchedulerOptions options, SchedulerOutbox& outbox);
  ~SchedulerState();
  SchedulerState(const SchedulerState&) = delete;
  SchedulerState& operator=(const SchedulerState&) = delete;

  // ---- clients ----
  void on_client_joined(PeerId client, std::string_view name);
  /// Releases everything the client wanted.
  void on_client_left(PeerId client);
  /// Tasks in dependency order. A key that already exists is not recomputed: the client is added
  /// to its wanters (and told at once if it is in memory or erred; a released key is recomputed).
  /// A dependency that is unknown errs the task (ErrorKind::scheduler_error, naming the key).
  /// Tasks not `wanted` (a graph's intermediates) add no want: a new one is held for the client
  /// until the whole batch is in, so that its dependents later in the batch find it, and then
  /// kept only while they need it (released at once if none does); an existing one is left as it
  /// is.
  void on_submit(PeerId client, std::span<const TaskSpecView> tasks);
  void on_submit(PeerId client, const std::vector<TaskSpec>& tasks);
  /// The client wants existing keys (e.g. a future it rebuilt from a key). Unknown keys are
  /// reported lost.
  void on_want(PeerId client, std::span<const std::string_view> keys);
  void on_release(PeerId client, std::span<const std::string_view> keys);
  /// Cancels the keys for every client: they are reported cancelled and forgotten.
  void on_cancel(PeerId client, std::span<const std::string_view> keys);
  /// Erred keys (and the erred dependencies they failed through) are computed again; their
  /// wanters hear the new outcome. Keys that are not erred are left alone.
  void on_retry(PeerId client, std::span<const std::string_view> keys);
  /// The keys stay wanted (by the scheduler itself) until each is in memory or erred, whatever
  /// the client does: dask's fire_and_forget.
  void on_fire_and_forget(PeerId client, std::span<const std::string_view> keys);
  /// Names `keys` as dataset `name`; they stay wanted (by the scheduler) until it is
  /// unpublished. Returns an error message instead if the name exists and not `replace`, or a
  /// key is unknown.
  std::optional<std::string> on_publish(PeerId client, std::string_view name,
                                        std::span<const std::string_view> keys, bool replace);
  /// Forgets dataset `name` (its keys go unless another dataset or a client wants them).
  /// Returns false if there is no such dataset.
  bool on_unpublish(std::string_view name);
  std::vector<std::string> datasets() const;
  /// The keys of dataset `name`, or nothing if there is none.
  std::optional<std::vector<std::string>> dataset(std::string_view name) const;
  // The same taking std::string keys (tests, benchmarks).
  void on_want(PeerId client, std::span<const std::string> keys) { on_want(client, views(keys)); }
  void on_release(PeerId client, std::span<const std::string> keys) {
    on_release(client, views(keys));
  }
  void on_cancel(PeerId client, std::span<const std::string> keys) {
    on_cancel(client, views(keys));
  }

  // ---- workers ----
  void on_worker_joined(PeerId worker, WorkerInfo info, double now);
  void on_worker_left(PeerId worker, WorkerExit how, double now);
  /// The nanny of worker `worker_name` saw it die of `cause` ("killed by signal SIGSEGV", ...):
  /// it leaves as WorkerExit::lost, and the cause is remembered for KilledWorker errors of the
  /// tasks that were running on it. Returns the worker's peer, or nothing if no live worker has
  /// that name. If two live workers have it (a restarted worker's Hello overtook the report of
  /// its predecessor's death), the one that joined first is the dead one.
  /// `traceback` is the worker's crash report, if it wrote one ("killed by signal SIGSEGV in
  /// task K (name)" and a stack): a task that fails with KilledWorker carries the last report
  /// that names it.
  std::optional<PeerId> on_worker_died(std::string_view worker_name, std::string_view cause,
                                       double now, std::string_view traceback = {});
  void on_heartbeat(PeerId worker, double now);
  /// The worker measured `bytes_per_s` fetching from peers. Transfer-time estimates use the mean
  /// of the workers' measurements (bandwidth_bytes_per_s until one arrives).
  void on_bandwidth(PeerId worker, double bytes_per_s);
  /// The bandwidth transfer-time estimates use now (bytes/s).
  double bandwidth() const;
  /// `inline_data` is the value when the worker sent it along. Late or duplicate reports are
  /// handled: a result for a key that is no longer wanted is freed on that worker.
  void on_task_done(PeerId worker, std::string_view key, std::uint64_t nbytes,
                    std::optional<std::string_view> inline_data, double duration_s, double now);
  /// Errors of kind `exception` are retried while the task has retries left.
  void on_task_failed(PeerId worker, std::string_view key, ErrorInfo error, double duration_s,
                      double now);
  /// The worker could not fetch `missing` for `key`: those holders are dropped and the task
  /// waits for the data to be recomputed or found elsewhere.
  void on_missing_deps(PeerId worker, std::string_view key,
                       std::span<const std::string_view> missing);
  void on_missing_deps(PeerId worker, std::string_view key, std::span<const std::string> missing) {
    on_missing_deps(worker, key, views(missing));
  }
  /// The worker hands back tasks it will not run (it is shutting down).
  void on_reject(PeerId worker, std::span<const std::string_view> keys);
  void on_reject(PeerId worker, std::span<const std::string> keys) { on_reject(worker, views(keys)); }
  /// Work stealing, called periodically (every few tens of milliseconds): asks workers with a
  /// backlog to hand back unstarted tasks while other workers idle (SchedulerOutbox::steal).
  void on_steal_tick();
  /// The answer to a steal request: `stolen` keys were dropped unstarted by the worker and are
  /// placed again; `kept` ones are running there.
  void on_steal_reply(PeerId worker, std::span<const std::string_view> stolen,
                      std::span<const std::string_view> kept);
  /// The worker paused (its memory passed its pause threshold) or resumed. A paused worker gets
  /// no new tasks, as a closing one, but reversibly: it keeps what it runs and holds, and
  /// placement considers it again once it resumes.
  void on_worker_paused(PeerId worker, bool paused);
  /// The worker no longer holds `keys` (a spilled value could not be read back): it stops being
  /// their holder, a key held nowhere else is recomputed if still needed, and its tasks that
  /// needed those keys start over (they could not read them).
  void on_data_lost(PeerId worker, std::span<const std::string_view> keys);
  void on_data_lost(PeerId worker, std::span<const std::string> keys) {
    on_data_lost(worker, views(keys));
  }
  /// Checks heartbeats: workers silent for longer than worker_ttl leave (timed_out). Returns them
  /// so the I/O layer can also tell them to shut down if they reappear.
  std::vector<PeerId> on_tick(double now);

  // ---- data movement: scatter, replicate, rebalance, restart ----
  //
  // Scattered keys have no lineage: the data came from a client, so when every holder is lost
  // (its worker died, or no holder could serve it) the key errs with ErrorKind::lost ("scattered
  // data K was lost with worker W (cause); it cannot be recomputed: scatter it again"), and so do
  // the dependents waiting for it; they are never recomputed. A scattered key that was released
  // (no future wanted it) and is needed again errs the same way.
  //
  // Replicate and rebalance copy keys between workers (copy_key, then on_keys_copied or
  // on_copy_failed from the receiving worker); each request is answered through reply() once
  // every copy it asked for has ended (copied, failed, or its worker left).

  /// Registers values the client put on workers: in memory on the named holders (unknown
  /// addresses are skipped), wanted by the client, with no lineage. A key none of whose holders
  /// is a live worker is reported lost. An existing key in memory gains the holders; a scattered
  /// key that had been lost or released comes back to memory; any other existing key (a task not
  /// in memory) is refused with a scheduler_error report and the holders are told to free it.
  void on_scatter(PeerId client, std::span<const ScatteredKeyView> keys);
  /// The keys among `keys` that are in memory become wanted by the client (it is told at once,
  /// as on_want does); returns them with their holders' data addresses. Other keys are left
  /// alone. Scatter with hash = true uses this to reuse values the cluster already holds.
  std::vector<std::pair<std::string, std::vector<std::string>>> on_hold(
      PeerId client, std::span<const std::string_view> keys);
  /// Copies each key (all in memory, else an error is replied at once and nothing moves) until
  /// it lives on `n` of `workers` (names or data addresses; empty: every live worker; n = 0 or
  /// more than there are: all of them), choosing receivers with the fewest held bytes; keys on
  /// more than n of them lose the extra copies (never the last one). Replies {"copied",
  /// "failed", "dropped"} once the copies have ended.
  void on_replicate(PeerId client, std::uint64_t request_id, std::span<const std::string_view> keys,
                    std::uint32_t n, std::span<const std::string_view> workers);
  /// Moves keys (empty: every key in memory) from the workers holding more than the mean of
  /// their bytes to those holding less (among `workers`, empty: all), biggest keys first, each
  /// move only while it narrows the gap between the two (dask's rebalance): the receiver copies
  /// the key, then the sender frees it. Replies {"moved", "failed"} once the moves have ended.
  void on_rebalance(PeerId client, std::uint64_t request_id, std::span<const std::string_view> keys,
                    std::span<const std::string_view> workers);
  /// The worker now holds `key` (a copy asked for by copy_key). A key that is no longer in memory
  /// is freed on it again.
  void on_keys_copied(PeerId worker, std::string_view key, std::uint64_t nbytes, double now);
  /// The worker could not fetch `key` from any holder.
  void on_copy_failed(PeerId worker, std::string_view key, double now);
  /// Restarts the cluster: every key any client (or dataset, or fire-and-forget) wanted is
  /// reported cancelled ("the cluster restarted") and every task is forgotten; every worker gets
  /// restart_worker: those in `supervised` (under a nanny) exit and are removed now (their
  /// nannies start fresh ones), the others drop their tasks and data in place. Replies
  /// {"workers"} once as many workers are connected as before.
  void on_restart(PeerId client, std::uint64_t request_id, std::span<const PeerId> supervised);
  /// Whether `key` is a scattered key (no lineage).
  bool is_scattered(std::string_view key) const;

  // ---- queries (tests, logs, scheduler_info) ----
  struct WorkerSummary {
    PeerId peer = 0;
    std::string name;
    std::string address;  // data address
    std::uint32_t nthreads = 0;
    bool closing = false;
    bool paused = false;         // over its memory pause threshold (on_worker_paused)
    std::size_t processing = 0;  // tasks assigned to it and not finished
    std::size_t held = 0;        // keys it holds in memory
    std::uint64_t held_bytes = 0;
    double last_seen = 0;
    std::vector<Resource> resources;  // offered
  };
  /// What a task runs, as submitted: name, encoded arguments, dependency keys (nothing if the key
  /// is unknown). For recreating a task in a client.
  struct TaskCall {
    std::string name;
    std::string args;
    std::vector<std::string> deps;
  };
  std::optional<TaskCall> call_of(std::string_view key) const;
  /// Live workers, by data address.
  std::vector<WorkerSummary> workers() const;
  /// Data addresses of the workers holding `key` (empty if none or unknown).
  std::vector<std::string> holders_of(std::string_view key) const;
  /// Keys held by the worker at data address `address` (empty if unknown).
  std::vector<std::string> keys_held_by(std::string_view address) const;
  bool is_worker(PeerId peer) const;
  bool is_client(PeerId peer) const;
  std::optional<TaskState> state_of(std::string_view key) const;
  std::vector<std::string> who_has(std::string_view key) const;  // worker names
  std::size_t task_count() const;
  std::size_t worker_count() const;
  std::size_t processing_on(PeerId worker) const;
  std::size_t queued_count() const;
  /// The duration the scheduler expects of a task with this name (seconds): an exponential
  /// moving average of measured durations, or default_task_duration_s before any was measured.
  double expected_duration(std::string_view task_name) const;
  const SchedulerCounters& counters() const;
  /// Checks every internal invariant (refcounts, state sets, holders); returns a description of
  /// the first violation, or nothing. Used by tests after each step.
  std::optional<std::string> validate() const;

 private:
  static std::vector<std::string_view> views(std::span<const std::string> keys) {
    return {keys.begin(), keys.end()};
  }
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::sched
