// SchedulerState, driven event by event through a recording outbox; validate() after every step.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <ostream>
#include <plexus/scheduler/scheduler_state.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace plexus::sched {

void PrintTo(TaskState s, std::ostream* os) { *os << to_string(s); }

namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// ---- recording outbox ----

struct ComputeCall {
  PeerId worker;
  std::string key;
  std::string name;
  std::string args;
  std::int32_t priority;
  std::vector<std::string> dep_keys;
  std::vector<std::vector<std::string>> dep_holders;
  std::vector<std::uint64_t> dep_nbytes;
};

struct FreeCall {
  PeerId worker;
  std::string key;
  bool operator==(const FreeCall&) const = default;
};

std::ostream& operator<<(std::ostream& os, const FreeCall& f) {
  return os << "free(" << f.worker << ", " << f.key << ")";
}

struct ReportCall {
  PeerId client;
  std::string key;
  KeyStatus status;
  std::uint64_t nbytes;
  std::optional<std::string> inline_data;
  std::vector<std::string> holders;
  std::optional<ErrorInfo> error;
};

struct ShutdownCall {
  PeerId worker;
  std::string reason;
};

struct CopyCall {
  PeerId worker;
  std::string key;
  std::vector<std::string> holders;
};

struct ReplyCall {
  PeerId client;
  std::uint64_t request_id;
  std::string json;
  std::string error;
};

class RecordingOutbox : public SchedulerOutbox {
 public:
  void compute(PeerId worker, const ComputeRequest& r) override {
    ComputeCall c{
        worker, std::string(r.key), std::string(r.name), std::string(r.args), r.priority, {}, {},
        {}};
    for (const DepLocation& d : r.deps) {
      c.dep_keys.emplace_back(d.key);
      c.dep_holders.emplace_back(d.holders.begin(), d.holders.end());
      c.dep_nbytes.push_back(d.nbytes);
    }
    computes.push_back(std::move(c));
    log.push_back(Call::compute);
  }
  void free_key(PeerId worker, std::string_view key) override {
    frees.push_back(FreeCall{worker, std::string(key)});
    log.push_back(Call::free_key);
  }
  void report(PeerId client, const KeyReport& r) override {
    ReportCall c{client, std::string(r.key), r.status, r.nbytes, std::nullopt, {}, std::nullopt};
    if (r.inline_data) c.inline_data = std::string(*r.inline_data);
    for (auto h : r.holders) c.holders.emplace_back(h);
    if (r.error != nullptr) c.error = *r.error;
    reports.push_back(std::move(c));
    log.push_back(Call::report);
  }
  void shutdown_worker(PeerId worker, std::string_view reason) override {
    shutdowns.push_back(ShutdownCall{worker, std::string(reason)});
    log.push_back(Call::shutdown);
  }
  void steal(PeerId worker, std::span<const std::string_view> keys) override {
    auto& asked = steals[worker];
    asked.insert(asked.end(), keys.begin(), keys.end());
    log.push_back(Call::steal);
  }

  // Data movement (scatter, replicate, rebalance, restart): recorded in the order made.
  void copy_key(PeerId worker, const DepLocation& d) override {
    copies.push_back(CopyCall{worker, std::string(d.key), {d.holders.begin(), d.holders.end()}});
    log.push_back(Call::copy);
  }
  void restart_worker(PeerId worker, bool exit) override {
    restarts.emplace_back(worker, exit);
    log.push_back(Call::restart);
  }
  void reply(PeerId client, std::uint64_t request_id, std::string_view json,
             std::string_view error) override {
    replies.push_back(ReplyCall{client, request_id, std::string(json), std::string(error)});
    log.push_back(Call::reply);
  }

  void clear() {
    log.clear();
    computes.clear();
    frees.clear();
    reports.clear();
    shutdowns.clear();
    steals.clear();
    copies.clear();
    restarts.clear();
    replies.clear();
  }
  std::vector<std::string> computed(PeerId worker) const {
    std::vector<std::string> keys;
    for (const auto& c : computes) {
      if (c.worker == worker) keys.push_back(c.key);
    }
    return keys;
  }
  std::vector<std::string> computed() const {
    std::vector<std::string> keys;
    for (const auto& c : computes) keys.push_back(c.key);
    return keys;
  }
  std::vector<ReportCall> reports_of(std::string_view key) const {
    std::vector<ReportCall> out;
    for (const auto& r : reports) {
      if (r.key == key) out.push_back(r);
    }
    return out;
  }
  std::vector<std::string> reported_keys(PeerId client, KeyStatus status) const {
    std::vector<std::string> out;
    for (const auto& r : reports) {
      if (r.client == client && r.status == status) out.push_back(r.key);
    }
    return out;
  }

  enum class Call { compute, free_key, report, shutdown, steal, copy, restart, reply };
  std::vector<Call> log;  // the order of all calls
  std::vector<ComputeCall> computes;
  std::map<PeerId, std::vector<std::string>> steals;  // keys asked back, by worker
  std::vector<FreeCall> frees;
  std::vector<ReportCall> reports;
  std::vector<ShutdownCall> shutdowns;
  std::vector<CopyCall> copies;
  std::vector<std::pair<PeerId, bool>> restarts;  // {worker, exit}
  std::vector<ReplyCall> replies;
};

// ---- builders ----

TaskSpec task(std::string key, std::vector<std::string> deps = {}, std::int32_t priority = 0,
              std::uint32_t retries = 0, std::string name = "math.inc") {
  TaskSpec s;
  s.key = std::move(key);
  s.name = std::move(name);
  s.args = "args";
  s.deps = std::move(deps);
  s.retries = retries;
  s.priority = priority;
  return s;
}

ErrorInfo error(ErrorKind kind, std::string message) {
  ErrorInfo e;
  e.kind = kind;
  e.type = "ValueError";
  e.message = std::move(message);
  return e;
}

constexpr PeerId kC1 = 1;
constexpr PeerId kC2 = 2;
constexpr PeerId kC3 = 3;
constexpr PeerId kW1 = 11;
constexpr PeerId kW2 = 12;

std::string addr(PeerId w) { return "tcp://w" + std::to_string(w); }
std::string wname(PeerId w) { return "w" + std::to_string(w); }

class SchedulerStateTest : public ::testing::Test {
 protected:
  explicit SchedulerStateTest(SchedulerOptions o = {}) : state(o, out) {
    state.on_client_joined(kC1, "c1");
    state.on_client_joined(kC2, "c2");
  }

  void check() {
    if (auto v = state.validate()) ADD_FAILURE() << "invariant: " << *v;
  }
  void worker(PeerId w, std::uint32_t nthreads = 1) {
    state.on_worker_joined(w, WorkerInfo{wname(w), addr(w), nthreads}, now);
    check();
  }
  void submit(PeerId c, std::vector<TaskSpec> ts) {
    state.on_submit(c, std::move(ts));
    check();
  }
  void done(PeerId w, const std::string& key, std::uint64_t nbytes = 8,
            std::optional<std::string_view> inline_data = std::nullopt, double duration = 0.001) {
    state.on_task_done(w, key, nbytes, inline_data, duration, now);
    check();
  }
  void fail(PeerId w, const std::string& key, ErrorKind kind = ErrorKind::exception,
            std::string message = "boom") {
    state.on_task_failed(w, key, error(kind, std::move(message)), 0.001, now);
    check();
  }
  void release(PeerId c, std::vector<std::string> keys) {
    state.on_release(c, keys);
    check();
  }
  void cancel(PeerId c, std::vector<std::string> keys) {
    state.on_cancel(c, keys);
    check();
  }
  void want(PeerId c, std::vector<std::string> keys) {
    state.on_want(c, keys);
    check();
  }
  void leave(PeerId w, WorkerExit how = WorkerExit::lost) {
    state.on_worker_left(w, how, now);
    check();
  }
  void missing(PeerId w, const std::string& key, std::vector<std::string> deps) {
    state.on_missing_deps(w, key, deps);
    check();
  }
  void reject(PeerId w, std::vector<std::string> keys) {
    state.on_reject(w, keys);
    check();
  }
  std::optional<TaskState> st(std::string_view key) const { return state.state_of(key); }

  RecordingOutbox out;  // before state: the state refers to it
  SchedulerState state;
  double now = 0;
};

// ---- submit, done, chains ----

TEST_F(SchedulerStateTest, ChainRunsInDependencyOrder) {
  worker(kW1);
  submit(kC1, {task("a"), task("b", {"a"}), task("c", {"b"})});
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_EQ(st("c"), TaskState::waiting);
  EXPECT_EQ(out.computes[0].name, "math.inc");
  EXPECT_EQ(out.computes[0].args, "args");
  EXPECT_THAT(out.computes[0].dep_keys, IsEmpty());

  out.clear();
  done(kW1, "a", 100, "inline-a");
  EXPECT_EQ(st("a"), TaskState::memory);
  ASSERT_EQ(out.reports.size(), 1u);
  EXPECT_EQ(out.reports[0].client, kC1);
  EXPECT_EQ(out.reports[0].key, "a");
  EXPECT_EQ(out.reports[0].status, KeyStatus::memory);
  EXPECT_EQ(out.reports[0].nbytes, 100u);
  EXPECT_EQ(out.reports[0].inline_data, "inline-a");
  EXPECT_THAT(out.reports[0].holders, ElementsAre(addr(kW1)));
  ASSERT_EQ(out.computes.size(), 1u);
  EXPECT_EQ(out.computes[0].key, "b");
  EXPECT_THAT(out.computes[0].dep_keys, ElementsAre("a"));
  EXPECT_THAT(out.computes[0].dep_holders, ElementsAre(ElementsAre(addr(kW1))));
  EXPECT_THAT(out.computes[0].dep_nbytes, ElementsAre(100u));
  EXPECT_THAT(state.who_has("a"), ElementsAre(wname(kW1)));

  out.clear();
  done(kW1, "b");
  EXPECT_THAT(out.computed(), ElementsAre("c"));
  EXPECT_EQ(st("a"), TaskState::memory);  // still wanted by the client
  EXPECT_THAT(out.frees, IsEmpty());
  done(kW1, "c");
  EXPECT_EQ(st("c"), TaskState::memory);
  EXPECT_EQ(state.counters().tasks_submitted, 3u);
  EXPECT_EQ(state.counters().tasks_computed, 3u);
  EXPECT_EQ(state.counters().tasks_finished, 3u);
  EXPECT_GT(state.counters().transitions, 0u);
}

TEST_F(SchedulerStateTest, DiamondReleasesSharedInputAfterLastDependent) {
  worker(kW1, 4);
  submit(kC1, {task("a"), task("b", {"a"}), task("c", {"a"}), task("d", {"b", "c"})});
  release(kC1, {"a", "b", "c"});  // the client keeps only d
  EXPECT_EQ(st("a"), TaskState::processing);
  done(kW1, "a");
  EXPECT_THAT(out.computed(), ElementsAre("a", "b", "c"));
  out.clear();
  done(kW1, "b");
  EXPECT_EQ(st("a"), TaskState::memory);  // c still needs it
  EXPECT_THAT(out.frees, IsEmpty());
  done(kW1, "c");
  EXPECT_EQ(st("a"), TaskState::released);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_THAT(out.computed(), ElementsAre("d"));
  out.clear();
  done(kW1, "d");
  EXPECT_THAT(out.frees, UnorderedElementsAre(FreeCall{kW1, "b"}, FreeCall{kW1, "c"}));
  EXPECT_EQ(st("b"), TaskState::released);
  EXPECT_EQ(state.task_count(), 4u);  // lineage kept while d exists
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("d"));
  out.clear();
  release(kC1, {"d"});
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "d"}));
  EXPECT_EQ(state.task_count(), 0u);
}

TEST_F(SchedulerStateTest, FanInReleasesIntermediates) {
  worker(kW1, 8);
  std::vector<TaskSpec> ts;
  std::vector<std::string> parts;
  for (int i = 0; i < 5; ++i) {
    parts.push_back("x" + std::to_string(i));
    ts.push_back(task(parts.back()));
  }
  ts.push_back(task("sum", parts));
  submit(kC1, std::move(ts));
  release(kC1, parts);
  for (const auto& p : parts) EXPECT_EQ(st(p), TaskState::processing);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) done(kW1, parts[i]);
  EXPECT_EQ(st("sum"), TaskState::waiting);
  done(kW1, parts.back());
  EXPECT_EQ(st("sum"), TaskState::processing);
  EXPECT_THAT(out.frees, IsEmpty());
  done(kW1, "sum");
  EXPECT_EQ(out.frees.size(), parts.size());
  for (const auto& p : parts) EXPECT_EQ(st(p), TaskState::released);
  release(kC1, {"sum"});
  EXPECT_EQ(state.task_count(), 0u);
}

TEST_F(SchedulerStateTest, UnknownDependencyErrsTheTask) {
  worker(kW1);
  submit(kC1, {task("b", {"nope"}), task("c", {"b"})});
  EXPECT_THAT(out.computes, IsEmpty());
  EXPECT_EQ(st("b"), TaskState::erred);
  EXPECT_EQ(st("c"), TaskState::erred);
  auto rb = out.reports_of("b");
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(rb[0].status, KeyStatus::erred);
  ASSERT_TRUE(rb[0].error);
  EXPECT_EQ(rb[0].error->kind, ErrorKind::scheduler_error);
  EXPECT_THAT(rb[0].error->message, HasSubstr("nope"));
  auto rc = out.reports_of("c");
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].error->message, rb[0].error->message);
  release(kC1, {"b", "c"});
  EXPECT_EQ(state.task_count(), 0u);
}

// ---- deduplication ----

TEST_F(SchedulerStateTest, DedupComputesOnceAndReportsEveryWanter) {
  worker(kW1);
  submit(kC1, {task("a")});
  submit(kC2, {task("a")});
  submit(kC1, {task("a")});  // the same client again: one want
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  EXPECT_EQ(state.counters().tasks_deduplicated, 2u);
  done(kW1, "a", 5);
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("a"));
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::memory), ElementsAre("a"));

  out.clear();
  state.on_client_joined(kC3, "c3");
  submit(kC3, {task("a")});  // memory: told at once, not recomputed
  EXPECT_THAT(out.computes, IsEmpty());
  ASSERT_EQ(out.reports.size(), 1u);
  EXPECT_EQ(out.reports[0].client, kC3);
  EXPECT_EQ(out.reports[0].nbytes, 5u);
  EXPECT_THAT(out.reports[0].holders, ElementsAre(addr(kW1)));

  release(kC1, {"a"});  // one release is enough for c1's single want
  release(kC2, {"a"});
  EXPECT_EQ(st("a"), TaskState::memory);
  EXPECT_THAT(out.frees, IsEmpty());
  release(kC3, {"a"});
  EXPECT_FALSE(st("a"));
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
}

TEST_F(SchedulerStateTest, DedupOfErredKeyReportsAtOnce) {
  worker(kW1);
  submit(kC1, {task("a")});
  fail(kW1, "a", ErrorKind::exception, "bad input");
  out.clear();
  submit(kC2, {task("a")});
  EXPECT_THAT(out.computes, IsEmpty());
  ASSERT_EQ(out.reports.size(), 1u);
  EXPECT_EQ(out.reports[0].client, kC2);
  EXPECT_EQ(out.reports[0].status, KeyStatus::erred);
  EXPECT_EQ(out.reports[0].error->message, "bad input");
  EXPECT_EQ(out.reports[0].error->worker, wname(kW1));
}

TEST_F(SchedulerStateTest, DedupOfReleasedKeyRecomputesItAndItsReleasedDeps) {
  worker(kW1);
  submit(kC1, {task("a"), task("b", {"a"}), task("c", {"b"})});
  release(kC1, {"a", "b"});
  done(kW1, "a");
  done(kW1, "b");
  done(kW1, "c");
  EXPECT_EQ(st("a"), TaskState::released);
  EXPECT_EQ(st("b"), TaskState::released);
  out.clear();
  submit(kC2, {task("b", {"a"})});
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  done(kW1, "a");
  EXPECT_THAT(out.computed(), ElementsAre("a", "b"));
  done(kW1, "b");
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::memory), ElementsAre("b"));
  EXPECT_EQ(st("a"), TaskState::released);  // freed again once b is back
}

TEST_F(SchedulerStateTest, WantOfExistingAndUnknownKeys) {
  worker(kW1);
  submit(kC1, {task("a")});
  done(kW1, "a");
  out.clear();
  want(kC2, {"a", "ghost"});
  ASSERT_EQ(out.reports.size(), 2u);
  EXPECT_EQ(out.reports[0].status, KeyStatus::memory);
  EXPECT_EQ(out.reports[1].key, "ghost");
  EXPECT_EQ(out.reports[1].status, KeyStatus::lost);
  ASSERT_TRUE(out.reports[1].error);
  EXPECT_EQ(out.reports[1].error->kind, ErrorKind::lost);
  release(kC1, {"a"});
  EXPECT_EQ(st("a"), TaskState::memory);  // c2 wants it now
}

// ---- failure ----

TEST_F(SchedulerStateTest, ErrorPropagatesToWaitingDependents) {
  worker(kW1, 2);
  submit(kC1, {task("a"), task("b", {"a"}), task("c", {"b"}), task("d")});
  submit(kC2, {task("c", {"b"})});
  out.clear();
  fail(kW1, "a", ErrorKind::exception, "division by zero");
  EXPECT_EQ(st("a"), TaskState::erred);
  EXPECT_EQ(st("b"), TaskState::erred);
  EXPECT_EQ(st("c"), TaskState::erred);
  EXPECT_EQ(st("d"), TaskState::processing);
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::erred), UnorderedElementsAre("a", "b", "c"));
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::erred), ElementsAre("c"));
  for (const auto& r : out.reports) {
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->message, "division by zero");
  }
  EXPECT_EQ(state.counters().tasks_failed, 1u);
  // A new task on an erred key errs at once.
  out.clear();
  submit(kC2, {task("e", {"b"})});
  EXPECT_EQ(st("e"), TaskState::erred);
  EXPECT_THAT(out.computes, IsEmpty());
}

TEST_F(SchedulerStateTest, RetriesThenErr) {
  worker(kW1);
  submit(kC1, {task("a", {}, 0, /*retries=*/2)});
  fail(kW1, "a");
  fail(kW1, "a");
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.reports, IsEmpty());
  fail(kW1, "a");
  EXPECT_EQ(st("a"), TaskState::erred);
  EXPECT_THAT(out.computed(), ElementsAre("a", "a", "a"));
  EXPECT_EQ(state.counters().tasks_failed, 3u);
}

TEST_F(SchedulerStateTest, NonExceptionErrorsAreNotRetried) {
  worker(kW1);
  submit(kC1, {task("a", {}, 0, 5)});
  fail(kW1, "a", ErrorKind::unknown_task, "no such task");
  EXPECT_EQ(st("a"), TaskState::erred);
  EXPECT_THAT(out.computed(), ElementsAre("a"));
}

TEST_F(SchedulerStateTest, RetryThenSuccess) {
  worker(kW1);
  submit(kC1, {task("a", {}, 0, 1), task("b", {"a"})});
  fail(kW1, "a");
  done(kW1, "a");
  done(kW1, "b");
  EXPECT_EQ(st("b"), TaskState::memory);
}

// ---- release and cancel ----

TEST_F(SchedulerStateTest, ReleasingProcessingTaskFreesItAndTheSlot) {
  worker(kW1);
  submit(kC1, {task("a"), task("b"), task("c")});
  EXPECT_THAT(out.computed(), ElementsAre("a", "b"));  // 1 thread: 2 slots
  EXPECT_EQ(state.queued_count(), 1u);
  release(kC1, {"a"});
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_FALSE(st("a"));
  EXPECT_THAT(out.computed(), ElementsAre("a", "b", "c"));
  // A late result for the forgotten key is freed on the worker.
  out.clear();
  done(kW1, "a");
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_THAT(out.reports, IsEmpty());
}

TEST_F(SchedulerStateTest, ReleasingWaitingTaskForgetsUnneededDeps) {
  submit(kC1, {task("a"), task("b", {"a"})});  // no worker: a queued
  submit(kC2, {task("x"), task("y", {"x"})});
  release(kC1, {"a"});
  EXPECT_EQ(st("a"), TaskState::queued);  // b needs it
  release(kC1, {"b"});
  EXPECT_FALSE(st("a"));
  EXPECT_FALSE(st("b"));
  EXPECT_EQ(state.queued_count(), 1u);
  worker(kW1);
  EXPECT_THAT(out.computed(), ElementsAre("x"));
}

TEST_F(SchedulerStateTest, ReleaseOfKeyNeverWantedIsIgnored) {
  worker(kW1);
  submit(kC1, {task("a")});
  release(kC2, {"a", "ghost"});
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.frees, IsEmpty());
}

TEST_F(SchedulerStateTest, CancelReportsAndForgetsDependentsToo) {
  worker(kW1);
  submit(kC1, {task("a"), task("b", {"a"}), task("z")});
  submit(kC2, {task("b", {"a"})});
  out.clear();
  cancel(kC1, {"a"});
  EXPECT_FALSE(st("a"));
  EXPECT_FALSE(st("b"));
  EXPECT_EQ(st("z"), TaskState::processing);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::cancelled), UnorderedElementsAre("a", "b"));
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::cancelled), ElementsAre("b"));
  for (const auto& r : out.reports) EXPECT_EQ(r.error->kind, ErrorKind::cancelled);
  EXPECT_EQ(state.task_count(), 1u);
}

TEST_F(SchedulerStateTest, CancelOfMemoryKeyFreesIt) {
  worker(kW1);
  submit(kC1, {task("a")});
  done(kW1, "a");
  out.clear();
  cancel(kC2, {"a"});
  EXPECT_FALSE(st("a"));
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::cancelled), ElementsAre("a"));
}

TEST_F(SchedulerStateTest, ClientLeavingReleasesItsWants) {
  worker(kW1);
  submit(kC1, {task("a"), task("b")});
  submit(kC2, {task("a")});
  done(kW1, "a");
  out.clear();
  state.on_client_left(kC1);
  check();
  EXPECT_FALSE(state.is_client(kC1));
  EXPECT_FALSE(st("b"));
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "b"}));
  EXPECT_EQ(st("a"), TaskState::memory);
  state.on_client_left(kC2);
  check();
  EXPECT_EQ(state.task_count(), 0u);
}

// ---- workers: placement, saturation, queueing ----

TEST_F(SchedulerStateTest, NoWorkersTasksWaitInQueueThenFlow) {
  submit(kC1, {task("a"), task("b"), task("c")});
  EXPECT_EQ(state.queued_count(), 3u);
  EXPECT_EQ(st("a"), TaskState::queued);
  worker(kW1, 4);
  EXPECT_THAT(out.computed(kW1), ElementsAre("a", "b", "c"));
  EXPECT_EQ(state.queued_count(), 0u);
}

TEST_F(SchedulerStateTest, SaturationCapsTasksPerWorker) {
  worker(kW1, 1);
  std::vector<TaskSpec> ts;
  for (int i = 0; i < 20; ++i) ts.push_back(task("t" + std::to_string(i)));
  submit(kC1, std::move(ts));
  // max(ceil(1.1 * 1 thread), 2 ms per thread / 1 ms default) = 2.
  EXPECT_THAT(out.computed(), ElementsAre("t0", "t1"));
  EXPECT_EQ(state.processing_on(kW1), 2u);
  EXPECT_EQ(state.queued_count(), 18u);
  done(kW1, "t0");
  EXPECT_THAT(out.computed(), ElementsAre("t0", "t1", "t2"));
  EXPECT_EQ(state.queued_count(), 17u);
  // A second worker takes its share at once: max(ceil(1.1 * 4), 4 * 2 ms / 1 ms) = 8.
  worker(kW2, 4);
  EXPECT_EQ(state.processing_on(kW2), 8u);
  EXPECT_EQ(state.queued_count(), 9u);
}

TEST_F(SchedulerStateTest, WorkerSaturationScalesWithThreads) {
  SchedulerOptions o;
  o.worker_saturation = 3.0;
  RecordingOutbox ob;
  SchedulerState s(o, ob);
  s.on_worker_joined(kW1, WorkerInfo{"w", "tcp://w", 4}, 0);
  std::vector<TaskSpec> ts;
  for (int i = 0; i < 20; ++i) ts.push_back(task("t" + std::to_string(i)));
  s.on_submit(kC1, std::move(ts));
  EXPECT_EQ(s.processing_on(kW1), 12u);  // ceil(3.0 * 4) > 8 tasks of 1 ms
  EXPECT_EQ(s.validate(), std::nullopt);
}

TEST_F(SchedulerStateTest, ShortLearnedDurationsPipelineDeeper) {
  worker(kW1, 1);
  submit(kC1, {task("warm")});
  done(kW1, "warm", 8, std::nullopt, /*duration=*/0.0001);
  EXPECT_DOUBLE_EQ(state.expected_duration("math.inc"), 0.0001);
  std::vector<TaskSpec> ts;
  for (int i = 0; i < 100; ++i) ts.push_back(task("t" + std::to_string(i)));
  submit(kC1, std::move(ts));
  // 2 ms of 0.1 ms tasks per thread.
  EXPECT_EQ(state.processing_on(kW1), 20u);
}

TEST_F(SchedulerStateTest, DurationIsAMovingAverage) {
  worker(kW1, 4);
  EXPECT_DOUBLE_EQ(state.expected_duration("math.inc"), 0.001);
  submit(kC1, {task("a"), task("b")});
  done(kW1, "a", 8, std::nullopt, 0.004);
  EXPECT_DOUBLE_EQ(state.expected_duration("math.inc"), 0.004);
  done(kW1, "b", 8, std::nullopt, 0.002);
  EXPECT_DOUBLE_EQ(state.expected_duration("math.inc"), 0.003);
}

TEST_F(SchedulerStateTest, MaxTasksPerWorkerIsAHardCap) {
  SchedulerOptions o;
  o.worker_saturation = 1e9;
  o.max_tasks_per_worker = 3;
  RecordingOutbox ob;
  SchedulerState s(o, ob);
  s.on_worker_joined(kW1, WorkerInfo{"w", "tcp://w", 8}, 0);
  std::vector<TaskSpec> ts;
  for (int i = 0; i < 10; ++i) ts.push_back(task("t" + std::to_string(i)));
  s.on_submit(kC1, std::move(ts));
  EXPECT_EQ(s.processing_on(kW1), 3u);
  EXPECT_EQ(s.validate(), std::nullopt);
}

TEST_F(SchedulerStateTest, QueueOrderIsPriorityThenSubmission) {
  submit(kC1, {task("low1", {}, 0), task("low2", {}, 0), task("high", {}, 5), task("mid", {}, 1),
               task("high2", {}, 5)});
  worker(kW1, 1);  // two slots
  EXPECT_THAT(out.computed(), ElementsAre("high", "high2"));
  done(kW1, "high");
  done(kW1, "high2");
  EXPECT_THAT(out.computed(), ElementsAre("high", "high2", "mid", "low1"));
  EXPECT_THAT(out.computes.back().priority, 0);
  done(kW1, "mid");
  EXPECT_EQ(out.computes.back().key, "low2");
}

TEST_F(SchedulerStateTest, TiesGoToLowestLoadThenLowestPeer) {
  worker(kW2, 2);
  worker(kW1, 2);
  submit(kC1, {task("a")});
  EXPECT_THAT(out.computed(kW1), ElementsAre("a"));
  submit(kC1, {task("b")});
  EXPECT_THAT(out.computed(kW2), ElementsAre("b"));
  submit(kC1, {task("c")});
  EXPECT_THAT(out.computed(kW1), ElementsAre("a", "c"));
}

TEST_F(SchedulerStateTest, LocalityPrefersWorkerHoldingBigDependency) {
  worker(kW1, 4);
  worker(kW2, 4);
  submit(kC1, {task("big"), task("small")});
  EXPECT_THAT(out.computed(kW1), ElementsAre("big"));
  EXPECT_THAT(out.computed(kW2), ElementsAre("small"));
  done(kW1, "big", 1'000'000'000);
  done(kW2, "small", 10);
  submit(kC1, {task("busy")});  // lands on w1 (tie on start, lowest peer): w1 is now busier
  EXPECT_EQ(state.processing_on(kW1), 1u);
  out.clear();
  submit(kC1, {task("uses-big", {"big"})});
  EXPECT_THAT(out.computed(kW1), ElementsAre("uses-big"));  // 10 s of transfer saved
  out.clear();
  submit(kC1, {task("uses-small", {"small"})});
  EXPECT_THAT(out.computed(kW2), ElementsAre("uses-small"));
  out.clear();
  submit(kC1, {task("uses-both", {"big", "small"})});
  EXPECT_THAT(out.computed(kW1), ElementsAre("uses-both"));
  EXPECT_THAT(out.computes[0].dep_holders,
              ElementsAre(ElementsAre(addr(kW1)), ElementsAre(addr(kW2))));
}

// ---- restrictions: workers, resources ----

TaskSpec restricted(std::string key, std::vector<std::string> workers, bool loose = false,
                    std::vector<Resource> resources = {}) {
  TaskSpec t = task(std::move(key));
  t.workers = std::move(workers);
  t.allow_other_workers = loose;
  t.resources = std::move(resources);
  return t;
}

class RestrictionTest : public SchedulerStateTest {
 protected:
  void worker_with(PeerId w, std::uint32_t nthreads, std::vector<Resource> resources) {
    state.on_worker_joined(w, WorkerInfo{wname(w), addr(w), nthreads, std::move(resources)}, now);
    check();
  }
};

TEST_F(RestrictionTest, TaskRunsOnlyOnTheNamedWorker) {
  worker(kW1, 4);
  worker(kW2, 4);
  // By name and by data address; kW1 is idle and would win otherwise.
  submit(kC1, {restricted("a", {wname(kW2)}), restricted("b", {addr(kW2)})});
  EXPECT_THAT(out.computed(kW2), UnorderedElementsAre("a", "b"));
  EXPECT_THAT(out.computed(kW1), IsEmpty());
}

TEST_F(RestrictionTest, TaskForAnAbsentWorkerWaitsUntilItJoins) {
  worker(kW1);
  submit(kC1, {restricted("a", {wname(kW2)}), task("b")});
  EXPECT_THAT(out.computed(), ElementsAre("b"));
  EXPECT_EQ(st("a"), TaskState::queued);
  out.clear();
  done(kW1, "b");  // kW1 free again: still not allowed
  EXPECT_THAT(out.computed(), IsEmpty());
  worker(kW2);
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
}

TEST_F(RestrictionTest, AllowOtherWorkersRunsElsewhereOnlyWhenNoneOfThemIsHere) {
  worker(kW1);
  submit(kC1, {restricted("a", {"absent"}, /*loose=*/true)});
  EXPECT_THAT(out.computed(kW1), ElementsAre("a"));
  out.clear();
  worker(kW2);
  // kW2 is named and connected but busy: the task waits for it rather than going to kW1.
  submit(kC1, {restricted("b", {wname(kW2)}, true), restricted("c", {wname(kW2)}, true),
               restricted("d", {wname(kW2)}, true)});
  EXPECT_THAT(out.computed(kW1), IsEmpty());
  EXPECT_FALSE(out.computed(kW2).empty());
}

TEST_F(RestrictionTest, ResourcesBoundHowManyRunAtOnce) {
  worker_with(kW1, 8, {{"GPU", 2}});
  worker(kW2, 8);
  std::vector<TaskSpec> ts;
  for (int i = 0; i < 5; ++i) ts.push_back(restricted("g" + std::to_string(i), {}, false, {{"GPU", 1}}));
  ts.push_back(task("plain"));
  submit(kC1, std::move(ts));
  // Two GPU tasks on the only worker offering GPU; the plain task anywhere.
  auto on1 = out.computed(kW1);
  EXPECT_EQ(std::count_if(on1.begin(), on1.end(), [](auto& k) { return k[0] == 'g'; }), 2);
  auto on2 = out.computed(kW2);
  EXPECT_EQ(std::count_if(on2.begin(), on2.end(), [](auto& k) { return k[0] == 'g'; }), 0);
  EXPECT_EQ(state.queued_count(), 3u);
  // Each finished GPU task frees one GPU for the next, in submission order.
  for (int next = 2; next < 5; ++next) {
    const std::string finished = out.computed(kW1).front() == "plain" ? out.computed(kW1)[1]
                                                                      : out.computed(kW1).front();
    out.clear();
    done(kW1, finished);
    EXPECT_THAT(out.computed(kW1), ElementsAre("g" + std::to_string(next)));
  }
}

TEST_F(RestrictionTest, ResourceNobodyOffersWaitsForAWorkerThatDoes) {
  worker(kW1);
  submit(kC1, {restricted("a", {}, false, {{"TPU", 1}})});
  EXPECT_THAT(out.computed(), IsEmpty());
  worker_with(kW2, 1, {{"TPU", 4}});
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  // A failing restricted task gives its resources back.
  out.clear();
  fail(kW2, "a", ErrorKind::exception);
  submit(kC1, {restricted("b", {}, false, {{"TPU", 4}})});
  EXPECT_THAT(out.computed(kW2), ElementsAre("b"));
}

TEST_F(RestrictionTest, RestrictedTasksGoBackToWaitingWhenTheirWorkerDies) {
  worker_with(kW1, 1, {{"GPU", 1}});
  submit(kC1, {restricted("a", {}, false, {{"GPU", 1}})});
  EXPECT_THAT(out.computed(kW1), ElementsAre("a"));
  leave(kW1);
  EXPECT_EQ(st("a"), TaskState::queued);
  out.clear();
  worker_with(kW2, 1, {{"GPU", 1}});
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  done(kW2, "a");
  EXPECT_EQ(st("a"), TaskState::memory);
}

TEST_F(RestrictionTest, HeldTasksKeepTheirPriorityOrderAndCanBeReleased) {
  worker_with(kW1, 4, {{"GPU", 1}});
  submit(kC1, {restricted("first", {}, false, {{"GPU", 1}})});
  TaskSpec low = restricted("low", {}, false, {{"GPU", 1}});
  TaskSpec high = restricted("high", {}, false, {{"GPU", 1}});
  high.priority = 5;
  TaskSpec gone = restricted("gone", {}, false, {{"GPU", 1}});
  gone.priority = 9;
  submit(kC1, {low, high, gone});
  release(kC1, {"gone"});  // forgotten while held
  EXPECT_FALSE(st("gone"));
  out.clear();
  done(kW1, "first");
  EXPECT_THAT(out.computed(kW1), ElementsAre("high"));
  out.clear();
  done(kW1, "high");
  EXPECT_THAT(out.computed(kW1), ElementsAre("low"));
}

TEST_F(RestrictionTest, WorkersSummaryListsOfferedResources) {
  worker_with(kW1, 1, {{"GPU", 2}, {"MEM", 1e9}});
  const auto ws = state.workers();
  ASSERT_EQ(ws.size(), 1u);
  ASSERT_EQ(ws[0].resources.size(), 2u);
  EXPECT_EQ(ws[0].resources[0].name, "GPU");
  EXPECT_EQ(ws[0].resources[0].amount, 2);
  EXPECT_EQ(ws[0].resources[1].name, "MEM");
}

TEST_F(SchedulerStateTest, TransferEstimatesUseTheWorkersMeasuredBandwidth) {
  EXPECT_EQ(state.bandwidth(), SchedulerOptions{}.bandwidth_bytes_per_s);
  worker(kW1);
  worker(kW2);
  state.on_bandwidth(kW1, 1e9);
  EXPECT_EQ(state.bandwidth(), 1e9);
  state.on_bandwidth(kW2, 3e9);
  EXPECT_EQ(state.bandwidth(), 2e9);
  state.on_bandwidth(kW2, -1);  // nonsense is ignored
  state.on_bandwidth(99, 5e9);  // so is a peer that is not a worker
  EXPECT_EQ(state.bandwidth(), 2e9);
  leave(kW1);
  EXPECT_EQ(state.bandwidth(), 3e9);
  leave(kW2);
  EXPECT_EQ(state.bandwidth(), SchedulerOptions{}.bandwidth_bytes_per_s);
}

TEST_F(SchedulerStateTest, MeasuredFastNetworkMovesWorkRatherThanQueueingItBesideItsInput) {
  worker(kW1, 4);
  worker(kW2, 4);
  submit(kC1, {task("in")});
  ASSERT_THAT(out.computed(kW1), ElementsAre("in"));
  done(kW1, "in", 50'000'000, std::nullopt, 0.5);  // math.inc takes 0.5 s
  // kW1 gets two more of those: 0.25 s of work per thread ahead of anything new.
  TaskSpec s1 = task("s1"), s2 = task("s2");
  s1.workers = s2.workers = {wname(kW1)};
  submit(kC1, {s1, s2});
  out.clear();
  // Assumed 100 MB/s: fetching 50 MB (0.5 s) costs more than waiting on kW1.
  submit(kC1, {task("use1", {"in"})});
  EXPECT_THAT(out.computed(kW1), ElementsAre("use1"));
  // Measured 10 GB/s: 5 ms to fetch beats waiting.
  state.on_bandwidth(kW1, 10e9);
  state.on_bandwidth(kW2, 10e9);
  out.clear();
  submit(kC1, {task("use2", {"in"})});
  EXPECT_THAT(out.computed(kW2), ElementsAre("use2"));
}

// ---- work stealing ----

class StealTest : public SchedulerStateTest {
 protected:
  static SchedulerOptions options() {
    SchedulerOptions o;
    o.default_task_duration_s = 0.5;  // a backlog of two is 1 s: worth stealing
    return o;
  }
  StealTest() : SchedulerStateTest(options()) {}
  void tick() {
    state.on_steal_tick();
    check();
  }
  void steal_reply(PeerId w, std::vector<std::string> stolen, std::vector<std::string> kept) {
    std::vector<std::string_view> s(stolen.begin(), stolen.end()), k(kept.begin(), kept.end());
    state.on_steal_reply(w, s, k);
    check();
  }
};

TEST_F(StealTest, IdleWorkerGetsTasksHandedBackByABackloggedOne) {
  worker(kW1);
  submit(kC1, {task("a"), task("b")});
  ASSERT_THAT(out.computed(kW1), ElementsAre("a", "b"));  // saturation: 2 on one thread
  worker(kW2);
  EXPECT_THAT(out.computed(kW2), IsEmpty());  // nothing queued on the scheduler to give it
  out.clear();
  tick();
  ASSERT_EQ(out.steals.size(), 1u);
  ASSERT_THAT(out.steals[kW1], ElementsAre("b"));  // the most recently assigned
  EXPECT_EQ(state.counters().steal_requests, 1u);
  tick();  // already asked: not asked again
  EXPECT_EQ(state.counters().steal_requests, 1u);
  steal_reply(kW1, {"b"}, {});
  EXPECT_THAT(out.computed(kW2), ElementsAre("b"));
  EXPECT_EQ(state.processing_on(kW1), 1u);
  EXPECT_EQ(state.counters().tasks_stolen, 1u);
  done(kW2, "b");
  done(kW1, "a");
  EXPECT_EQ(st("b"), TaskState::memory);
}

TEST_F(StealTest, PausedWorkersUnstartedTasksGoToOthers) {
  SchedulerOptions o;  // 1 ms tasks: no backlog worth stealing from a running worker
  RecordingOutbox ob;
  SchedulerState s(o, ob);
  s.on_client_joined(kC1, "c");
  s.on_worker_joined(kW1, WorkerInfo{wname(kW1), addr(kW1), 1}, 0);
  s.on_submit(kC1, std::vector<TaskSpec>{task("a"), task("b")});
  ASSERT_THAT(ob.computed(kW1), ElementsAre("a", "b"));
  s.on_worker_paused(kW1, true);
  s.on_worker_joined(kW2, WorkerInfo{wname(kW2), addr(kW2), 1}, 0);
  s.on_steal_tick();
  ASSERT_EQ(s.validate(), std::nullopt);
  EXPECT_THAT(ob.steals[kW1], UnorderedElementsAre("a", "b"));  // whichever has not started
  std::vector<std::string_view> stolen{"b"}, kept{"a"};
  s.on_steal_reply(kW1, stolen, kept);
  ASSERT_EQ(s.validate(), std::nullopt);
  EXPECT_THAT(ob.computed(kW2), ElementsAre("b"));
}

TEST_F(StealTest, TaskAlreadyRunningStaysAndIsNotAskedForTwice) {
  worker(kW1);
  submit(kC1, {task("a"), task("b")});
  worker(kW2);
  out.clear();
  tick();
  ASSERT_THAT(out.steals[kW1], ElementsAre("b"));
  steal_reply(kW1, {}, {"b"});  // it had started
  EXPECT_THAT(out.computed(), IsEmpty());
  EXPECT_EQ(state.processing_on(kW1), 2u);
  done(kW1, "b");
  EXPECT_EQ(st("b"), TaskState::memory);
  // A stale "stolen" for a key no longer processing there is ignored.
  steal_reply(kW1, {"b"}, {});
  EXPECT_EQ(st("b"), TaskState::memory);
}

TEST_F(StealTest, NoStealingWithoutABacklogOrForRestrictedOrCostlyTasks) {
  SchedulerOptions o;  // 1 ms tasks: a backlog of two is not worth a round trip
  RecordingOutbox ob;
  SchedulerState s(o, ob);
  s.on_client_joined(kC1, "c");
  s.on_worker_joined(kW1, WorkerInfo{wname(kW1), addr(kW1), 1}, 0);
  s.on_submit(kC1, std::vector<TaskSpec>{task("a"), task("b")});
  s.on_worker_joined(kW2, WorkerInfo{wname(kW2), addr(kW2), 1}, 0);
  s.on_steal_tick();
  EXPECT_TRUE(ob.steals.empty());

  // Restricted to kW1: never moved.
  worker(kW1);
  submit(kC1, {restricted("r1", {wname(kW1)}), restricted("r2", {wname(kW1)})});
  worker(kW2);
  tick();
  EXPECT_TRUE(out.steals.empty());
}

TEST_F(StealTest, TaskWhoseInputsTakeLongerToMoveThanToRunStays) {
  worker(kW1);
  submit(kC1, {task("big")});
  done(kW1, "big", /*nbytes=*/std::uint64_t{1} << 40, std::nullopt, 0.5);  // ~3 hours at 100 MB/s
  submit(kC1, {task("x", {"big"}), task("y", {"big"})});
  ASSERT_THAT(out.computed(kW1), ElementsAre("big", "x", "y"));
  worker(kW2);
  tick();
  EXPECT_TRUE(out.steals.empty());
}

TEST_F(StealTest, DisabledByOption) {
  SchedulerOptions o = options();
  o.work_stealing = false;
  RecordingOutbox ob;
  SchedulerState s(o, ob);
  s.on_client_joined(kC1, "c");
  s.on_worker_joined(kW1, WorkerInfo{wname(kW1), addr(kW1), 1}, 0);
  s.on_submit(kC1, std::vector<TaskSpec>{task("a"), task("b")});
  s.on_worker_joined(kW2, WorkerInfo{wname(kW2), addr(kW2), 1}, 0);
  s.on_steal_tick();
  EXPECT_TRUE(ob.steals.empty());
}

// ---- worker failure ----

TEST_F(SchedulerStateTest, WorkerDeathRecomputesLostIntermediatesFromLineage) {
  worker(kW1, 2);
  submit(kC1, {task("a"), task("b", {"a"}), task("c", {"b"})});
  release(kC1, {"a", "b"});
  done(kW1, "a");
  done(kW1, "b");  // a released: b holds what c needs
  EXPECT_EQ(st("a"), TaskState::released);
  worker(kW2, 2);
  EXPECT_EQ(st("c"), TaskState::processing);
  out.clear();
  leave(kW1, WorkerExit::lost);
  // c was on w1 and needs b, which only w1 held; b needs a, which was released.
  EXPECT_EQ(st("c"), TaskState::waiting);
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  EXPECT_THAT(out.frees, IsEmpty());  // nothing is said to the dead worker
  EXPECT_THAT(state.who_has("b"), IsEmpty());
  EXPECT_GE(state.counters().tasks_recomputed, 3u);
  done(kW2, "a");
  done(kW2, "b");
  done(kW2, "c");
  EXPECT_EQ(st("c"), TaskState::memory);
  EXPECT_EQ(st("a"), TaskState::released);
  EXPECT_EQ(st("b"), TaskState::released);
}

TEST_F(SchedulerStateTest, LostKeyPullsBackDependentsRunningElsewhere) {
  worker(kW1, 1);
  submit(kC1, {task("a")});
  done(kW1, "a", 0);
  submit(kC1, {task("z")});  // keeps w1 busy
  worker(kW2, 1);
  submit(kC1, {task("b", {"a"})});
  EXPECT_THAT(out.computed(kW2), ElementsAre("b"));
  out.clear();
  leave(kW1, WorkerExit::lost);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW2, "b"}));
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_THAT(out.computed(kW2), ElementsAre("a", "z"));
}

TEST_F(SchedulerStateTest, KilledWorkerAfterAllowedFailuresPlusOneDeaths) {
  SchedulerOptions o;
  ASSERT_EQ(o.allowed_failures, 3u);
  submit(kC1, {task("poison"), task("after", {"poison"})});
  for (PeerId w = 100; w < 104; ++w) {
    worker(w);
    EXPECT_EQ(st("poison"), TaskState::processing);
    leave(w, WorkerExit::lost);
  }
  EXPECT_EQ(st("poison"), TaskState::erred);
  EXPECT_EQ(st("after"), TaskState::erred);
  auto r = out.reports_of("poison");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].error);
  EXPECT_EQ(r[0].error->kind, ErrorKind::killed_worker);
  for (PeerId w = 100; w < 104; ++w) EXPECT_THAT(r[0].error->message, HasSubstr(wname(w)));
}

// ---- causes of death (nanny reports, heartbeats, lost connections) ----

TEST_F(SchedulerStateTest, KilledWorkerNamesEveryDeathWithTheCauseItsNannyReported) {
  submit(kC1, {task("poison"), task("after", {"poison"})});
  for (PeerId w = 100; w < 104; ++w) {
    worker(w);
    ASSERT_EQ(st("poison"), TaskState::processing);
    EXPECT_EQ(state.on_worker_died(wname(w), "killed by signal SIGSEGV (segmentation fault)", now),
              w);
    check();
    EXPECT_FALSE(state.is_worker(w));
  }
  EXPECT_EQ(st("poison"), TaskState::erred);
  EXPECT_EQ(st("after"), TaskState::erred);
  auto r = out.reports_of("poison");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].error);
  EXPECT_EQ(r[0].error->kind, ErrorKind::killed_worker);
  EXPECT_EQ(r[0].error->type, "KilledWorker");
  EXPECT_EQ(r[0].error->worker, "w103");
  EXPECT_EQ(r[0].error->message,
            "task poison was running on 4 workers that died: "
            "w100 (killed by signal SIGSEGV (segmentation fault)), "
            "w101 (killed by signal SIGSEGV (segmentation fault)), "
            "w102 (killed by signal SIGSEGV (segmentation fault)), "
            "w103 (killed by signal SIGSEGV (segmentation fault)) (allowed-failures = 3)");
}

TEST_F(SchedulerStateTest, KilledWorkerCarriesTheCrashReportThatNamesTheTask) {
  auto report = [](const std::string& key, PeerId w) {
    return "killed by signal SIGSEGV (segmentation fault) in task " + key +
           " (math.inc)\nstack trace:\nlibmath.so(+0x" + std::to_string(w) + ") [0x1]";
  };
  // The culprit: every report names it; its error carries the last one.
  submit(kC1, {task("poison")});
  PeerId w = 100;
  for (; w < 104; ++w) {
    worker(w);
    ASSERT_EQ(state.on_worker_died(wname(w), "killed by signal SIGSEGV", now, report("poison", w)),
              w);
    check();
  }
  auto poison = out.reports_of("poison");
  ASSERT_EQ(poison.size(), 1u);
  ASSERT_TRUE(poison[0].error);
  EXPECT_EQ(poison[0].error->traceback, report("poison", 103));
  // A bystander: the reports name another task, so its error carries none.
  submit(kC1, {task("bystander")});
  for (; w < 108; ++w) {
    worker(w);
    ASSERT_EQ(state.on_worker_died(wname(w), "killed by signal SIGSEGV", now, report("poisoned", w)),
              w);
    check();
  }
  auto bystander = out.reports_of("bystander");
  ASSERT_EQ(bystander.size(), 1u);
  ASSERT_TRUE(bystander[0].error);
  EXPECT_EQ(bystander[0].error->kind, ErrorKind::killed_worker);
  EXPECT_EQ(bystander[0].error->traceback, "");
}

// Without a nanny, the cause is how the scheduler noticed; each death keeps its own cause, in
// order, whoever reported it.
TEST_F(SchedulerStateTest, DeathCausesWithoutANannyAreHowTheDeathWasNoticed) {
  submit(kC1, {task("poison")});
  worker(100);
  now = 1;
  EXPECT_THAT(state.on_tick(now + 11), ElementsAre(PeerId{100}));  // silent past worker_ttl
  check();
  now = 20;
  worker(101);
  leave(101, WorkerExit::lost);
  worker(102);
  ASSERT_EQ(state.on_worker_died(wname(102), "killed by signal SIGKILL", now), PeerId{102});
  check();
  worker(103);
  ASSERT_EQ(state.on_worker_died(wname(103), "", now), PeerId{103});  // a nanny that says nothing
  check();
  auto r = out.reports_of("poison");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].error);
  EXPECT_EQ(r[0].error->message,
            "task poison was running on 4 workers that died: "
            "w100 (no heartbeat within worker-ttl), w101 (connection lost), "
            "w102 (killed by signal SIGKILL), w103 (reported dead by its nanny) "
            "(allowed-failures = 3)");
}

TEST_F(SchedulerStateTest, GracefulDeparturesAreNotListedAmongTheDeaths) {
  submit(kC1, {task("poison")});
  worker(100);
  ASSERT_TRUE(state.on_worker_died(wname(100), "exited with status 1", now));
  check();
  worker(101);
  leave(101, WorkerExit::graceful);  // handed it back: not a death
  for (PeerId w = 102; w < 105; ++w) {
    worker(w);
    ASSERT_TRUE(state.on_worker_died(wname(w), "killed by signal SIGBUS (bus error)", now));
    check();
  }
  auto r = out.reports_of("poison");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].error);
  EXPECT_THAT(r[0].error->message, HasSubstr("on 4 workers that died: w100 (exited with status 1), "
                                             "w102 (killed by signal SIGBUS (bus error)), w103"));
  EXPECT_THAT(r[0].error->message, ::testing::Not(HasSubstr("w101")));
}

TEST_F(SchedulerStateTest, WorkerDiedReschedulesAtOnceAndIgnoresLateReports) {
  worker(kW1);
  worker(kW2);
  submit(kC1, {task("a")});
  ASSERT_THAT(out.computed(kW1), ElementsAre("a"));
  out.clear();
  EXPECT_EQ(state.on_worker_died(wname(kW1), "killed by signal SIGKILL", now), kW1);
  check();
  EXPECT_FALSE(state.is_worker(kW1));
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));  // no wait for worker_ttl
  EXPECT_THAT(out.frees, IsEmpty());
  EXPECT_THAT(out.shutdowns, IsEmpty());  // the service marks the peer removed
  out.clear();
  done(kW1, "a");  // a late report from the dead process
  state.on_heartbeat(kW1, now);
  check();
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.reports, IsEmpty());
  done(kW2, "a");
  EXPECT_EQ(st("a"), TaskState::memory);
  EXPECT_THAT(state.who_has("a"), ElementsAre(wname(kW2)));
  // A second report of the same death finds nobody.
  EXPECT_EQ(state.on_worker_died(wname(kW1), "killed by signal SIGKILL", now), std::nullopt);
  check();
}

TEST_F(SchedulerStateTest, WorkerDiedOfUnknownNameChangesNothing) {
  worker(kW1);
  submit(kC1, {task("a")});
  out.clear();
  EXPECT_EQ(state.on_worker_died("nobody", "killed by signal SIGKILL", now), std::nullopt);
  check();
  EXPECT_TRUE(state.is_worker(kW1));
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_TRUE(out.log.empty());
}

// A nanny restarts its worker under the same name; if the new process's Hello arrives before the
// report of the old one's death, the report removes the old one (the earlier peer).
TEST_F(SchedulerStateTest, WorkerDiedRemovesTheOlderOfTwoWorkersWithTheName) {
  state.on_worker_joined(kW1, WorkerInfo{"same", addr(kW1), 1}, now);
  submit(kC1, {task("a")});
  state.on_worker_joined(kW2, WorkerInfo{"same", addr(kW2), 1}, now);
  check();
  ASSERT_THAT(out.computed(kW1), ElementsAre("a"));
  EXPECT_EQ(state.on_worker_died("same", "killed by signal SIGKILL", now), kW1);
  check();
  EXPECT_FALSE(state.is_worker(kW1));
  EXPECT_TRUE(state.is_worker(kW2));
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
}

TEST_F(SchedulerStateTest, WorkerDiedRecomputesWhatOnlyItHeld) {
  worker(kW1, 2);
  submit(kC1, {task("a"), task("b", {"a"})});
  release(kC1, {"a"});
  done(kW1, "a");
  ASSERT_EQ(st("b"), TaskState::processing);
  worker(kW2, 2);
  out.clear();
  ASSERT_TRUE(state.on_worker_died(wname(kW1), "killed by signal SIGKILL", now));
  check();
  EXPECT_EQ(st("a"), TaskState::processing);  // from its lineage, for b
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  done(kW2, "a");
  done(kW2, "b");
  EXPECT_EQ(st("b"), TaskState::memory);
}

// Tasks that were on a worker when it died (suspects) never share a worker, so the tasks that
// ran beside one that crashes every worker do not follow it to KilledWorker.
TEST_F(SchedulerStateTest, SuspectsRunOnePerWorkerSoBystandersSurvive) {
  auto crash = [&](PeerId w) {
    ASSERT_TRUE(state.on_worker_died(wname(w), "killed by signal SIGSEGV", now));
    check();
  };
  worker(100, 4);
  submit(kC1, {task("poison"), task("b"), task("c"), task("d")});
  ASSERT_EQ(out.computed(100).size(), 4u);
  crash(100);  // all four were there: all four are suspects now
  out.clear();
  worker(101, 4);
  EXPECT_THAT(out.computed(101), ElementsAre("poison"));  // one suspect, although it has 4 threads
  worker(102, 4);
  EXPECT_THAT(out.computed(102), ElementsAre("b"));
  submit(kC1, {task("e")});  // not a suspect: it may run beside one
  EXPECT_THAT(out.computed(101), ElementsAre("poison", "e"));
  done(102, "b");
  EXPECT_THAT(out.computed(102), ElementsAre("b", "c"));
  crash(101);  // the poison again, and e beside it (its first death)
  EXPECT_EQ(st("poison"), TaskState::queued);
  EXPECT_EQ(st("e"), TaskState::queued);
  worker(103, 4);
  EXPECT_THAT(out.computed(103), ElementsAre("poison"));
  done(102, "c");
  EXPECT_THAT(out.computed(102), ElementsAre("b", "c", "d"));
  crash(103);
  worker(104, 4);
  EXPECT_THAT(out.computed(104), ElementsAre("poison"));
  done(102, "d");
  EXPECT_THAT(out.computed(102), ElementsAre("b", "c", "d", "e"));
  crash(104);
  EXPECT_EQ(st("poison"), TaskState::erred);
  done(102, "e");
  for (const char* k : {"b", "c", "d", "e"}) EXPECT_EQ(st(k), TaskState::memory) << k;
  auto r = out.reports_of("poison");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].error);
  EXPECT_THAT(r[0].error->message,
              HasSubstr("4 workers that died: w100 (killed by signal SIGSEGV), w101 (killed by "
                        "signal SIGSEGV), w103 (killed by signal SIGSEGV), w104 (killed by signal "
                        "SIGSEGV)"));
}

TEST_F(SchedulerStateTest, GracefulDeparturesAreNotSuspicious) {
  submit(kC1, {task("a")});
  for (PeerId w = 100; w < 110; ++w) {
    worker(w);
    leave(w, WorkerExit::graceful);
  }
  EXPECT_EQ(st("a"), TaskState::queued);
  worker(kW1);
  EXPECT_EQ(st("a"), TaskState::processing);
}

TEST_F(SchedulerStateTest, LateResultsFromRemovedWorkerAreIgnored) {
  worker(kW1);
  worker(kW2);
  submit(kC1, {task("a")});
  EXPECT_THAT(out.computed(kW1), ElementsAre("a"));
  leave(kW1, WorkerExit::lost);
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  out.clear();
  done(kW1, "a");
  fail(kW1, "a");
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.frees, IsEmpty());
  EXPECT_THAT(out.reports, IsEmpty());
  EXPECT_THAT(out.shutdowns, IsEmpty());
  done(kW2, "a");
  EXPECT_EQ(st("a"), TaskState::memory);
  EXPECT_THAT(state.who_has("a"), ElementsAre(wname(kW2)));
}

TEST_F(SchedulerStateTest, DuplicateResultFromAnotherWorkerIsFreedThere) {
  worker(kW1);
  worker(kW2);
  submit(kC1, {task("a")});
  reject(kW1, {"a"});
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  done(kW2, "a");
  out.clear();
  done(kW1, "a");  // it ran it anyway
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_THAT(state.who_has("a"), ElementsAre(wname(kW2)));
}

TEST_F(SchedulerStateTest, HeartbeatTimeoutRemovesSilentWorkers) {
  worker(kW1);
  worker(kW2);
  submit(kC1, {task("a")});
  EXPECT_THAT(out.computed(kW1), ElementsAre("a"));
  now = 8;
  state.on_heartbeat(kW2, now);
  EXPECT_THAT(state.on_tick(9), IsEmpty());
  check();
  std::vector<PeerId> gone = state.on_tick(12);
  check();
  EXPECT_THAT(gone, ElementsAre(kW1));
  EXPECT_FALSE(state.is_worker(kW1));
  EXPECT_TRUE(state.is_worker(kW2));
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  // It comes back: told to shut down, and its result is ignored.
  now = 13;
  done(kW1, "a");
  EXPECT_EQ(st("a"), TaskState::processing);
  ASSERT_EQ(out.shutdowns.size(), 1u);
  EXPECT_EQ(out.shutdowns[0].worker, kW1);
  state.on_heartbeat(kW1, now);
  EXPECT_EQ(out.shutdowns.size(), 1u);
  // A timed-out death is suspicious.
  EXPECT_THAT(state.on_tick(30), ElementsAre(kW2));
  check();
  EXPECT_EQ(st("a"), TaskState::queued);
}

TEST_F(SchedulerStateTest, MissingDepsDropHoldersAndRecompute) {
  worker(kW1, 1);
  submit(kC1, {task("a")});
  done(kW1, "a", 0);
  submit(kC1, {task("z")});  // keeps w1 busy
  worker(kW2, 1);
  submit(kC1, {task("b", {"a"})});
  EXPECT_THAT(out.computed(kW2), ElementsAre("b"));
  out.clear();
  missing(kW2, "b", {"a"});
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  PeerId where = out.computes[0].worker;
  out.clear();
  done(where, "a");
  EXPECT_THAT(out.computed(), ElementsAre("b"));
  EXPECT_EQ(st("b"), TaskState::processing);
}

TEST_F(SchedulerStateTest, MissingDepsFromStaleReportIgnored) {
  worker(kW1, 2);
  submit(kC1, {task("a"), task("b", {"a"})});
  done(kW1, "a");
  out.clear();
  missing(kW2, "b", {"a"});  // not a worker
  missing(kW1, "a", {"x"});  // a is not processing
  EXPECT_EQ(st("a"), TaskState::memory);
  EXPECT_EQ(st("b"), TaskState::processing);
  EXPECT_THAT(out.frees, IsEmpty());
}

TEST_F(SchedulerStateTest, RejectedTasksGoElsewhereWithoutSuspicion) {
  worker(kW1);
  submit(kC1, {task("a")});
  reject(kW1, {"a"});
  EXPECT_EQ(st("a"), TaskState::queued);  // w1 is closing: it gets nothing new
  EXPECT_EQ(state.processing_on(kW1), 0u);
  worker(kW2);
  EXPECT_THAT(out.computed(kW2), ElementsAre("a"));
  leave(kW1, WorkerExit::graceful);
  // Three deaths are still allowed: the rejection did not count.
  for (PeerId w = 100; w < 102; ++w) worker(w);
  leave(kW2, WorkerExit::lost);
  leave(100, WorkerExit::lost);
  leave(101, WorkerExit::lost);
  EXPECT_EQ(st("a"), TaskState::queued);
}

// ---- randomized ----

// Drives random events against a model of what workers run and hold; validate() after each.
class RandomRun {
 public:
  explicit RandomRun(std::uint32_t seed) : rng_(seed), state_(options(), out_) {}

  static SchedulerOptions options() {
    SchedulerOptions o;
    o.allowed_failures = 1;
    o.worker_ttl_s = 5;
    o.steal_min_backlog_s = 0;  // any queue is stolen from: steals happen often
    return o;
  }

  void run(int steps) {
    for (PeerId c : clients_) state_.on_client_joined(c, "c");
    add_worker();
    for (int i = 0; i < steps; ++i) {
      step();
      absorb();
      if (auto v = state_.validate()) {
        FAIL() << "seed step " << i << ": " << *v;
      }
    }
    // Drain: a fresh worker (offering every resource tasks ask for), no more faults; everything
    // wanted must settle.
    add_worker(true);
    absorb();
    for (int round = 0; round < 100000; ++round) {
      auto it = std::find_if(running_.begin(), running_.end(),
                             [](const auto& kv) { return !kv.second.empty(); });
      if (it == running_.end()) break;
      const std::string key = *it->second.begin();
      it->second.erase(it->second.begin());
      state_.on_task_done(it->first, key, 8, std::nullopt, 0.001, now_);
      absorb();
      ASSERT_EQ(state_.validate(), std::nullopt);
    }
    for (const auto& k : keys_) {
      auto s = state_.state_of(k);
      if (!s) continue;
      EXPECT_NE(*s, TaskState::waiting) << k;
      EXPECT_NE(*s, TaskState::queued) << k;
      EXPECT_NE(*s, TaskState::processing) << k;
    }
    for (PeerId c : clients_) {
      state_.on_client_left(c);
      ASSERT_EQ(state_.validate(), std::nullopt);
    }
    EXPECT_EQ(state_.task_count(), 0u);
    EXPECT_EQ(state_.queued_count(), 0u);
  }

 private:
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  void add_worker(bool with_gpu = false) {
    const PeerId w = next_worker_++;
    live_.push_back(w);
    running_[w];
    std::vector<Resource> offers;
    if (with_gpu || chance(0.5)) offers.push_back({"GPU", static_cast<double>(1 + pick(2))});
    state_.on_worker_joined(w,
                            WorkerInfo{"w" + std::to_string(w), "addr" + std::to_string(w),
                                       static_cast<std::uint32_t>(1 + pick(3)), offers},
                            now_);
  }

  void drop_worker(std::size_t i) {
    const PeerId w = live_[i];
    live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(i));
    running_.erase(w);
    gone_.push_back(w);
  }

  /// Applies the outbox to the model of the workers.
  void absorb() {
    std::size_t nc = 0;
    std::size_t nf = 0;
    for (const auto call : out_.log) {
      if (call == RecordingOutbox::Call::compute) {
        const auto& c = out_.computes[nc++];
        ASSERT_TRUE(running_.count(c.worker)) << "compute sent to a dead worker";
        ASSERT_FALSE(running_[c.worker].count(c.key)) << "sent twice: " << c.key;
        running_[c.worker].insert(c.key);
        deps_[c.key] = c.dep_keys;
      } else if (call == RecordingOutbox::Call::free_key) {
        const auto& f = out_.frees[nf++];
        if (running_.count(f.worker)) running_[f.worker].erase(f.key);
      }
    }
    for (const auto& [w, ks] : out_.steals) {
      for (const auto& k : ks) steals_.emplace_back(w, k);
    }
    out_.clear();
  }

  std::optional<std::pair<PeerId, std::string>> pick_running() {
    std::vector<std::pair<PeerId, std::string>> all;
    for (const auto& [w, keys] : running_) {
      for (const auto& k : keys) all.emplace_back(w, k);
    }
    if (all.empty()) return std::nullopt;
    return all[pick(all.size())];
  }

  void step() {
    now_ += 0.1;
    const std::size_t op = pick(100);
    const PeerId client = clients_[pick(clients_.size())];
    if (op < 25) {  // submit a small graph
      std::vector<TaskSpec> ts;
      const std::size_t n = 1 + pick(3);
      for (std::size_t i = 0; i < n; ++i) {
        if (!keys_.empty() && chance(0.15)) {
          ts.push_back(task(keys_[pick(keys_.size())]));  // dedup
          continue;
        }
        std::vector<std::string> deps;
        const std::size_t nd = keys_.empty() ? 0 : pick(4);
        for (std::size_t d = 0; d < nd; ++d) {
          const std::string& k = keys_[pick(keys_.size())];
          if (std::find(deps.begin(), deps.end(), k) == deps.end()) deps.push_back(k);
        }
        if (chance(0.02)) deps.push_back("ghost");
        keys_.push_back("k" + std::to_string(keys_.size()));
        ts.push_back(task(keys_.back(), deps, static_cast<std::int32_t>(pick(3)),
                          static_cast<std::uint32_t>(pick(2))));
        if (chance(0.1)) ts.back().resources = {{"GPU", 1}};
        if (chance(0.1)) {  // loose: must settle even when the worker is gone
          ts.back().workers = {"w" + std::to_string(100 + pick(next_worker_ - 99))};
          ts.back().allow_other_workers = true;
        }
      }
      state_.on_submit(client, std::move(ts));
    } else if (op < 55) {  // a task finishes
      if (auto r = pick_running()) {
        running_[r->first].erase(r->second);
        state_.on_task_done(r->first, r->second, pick(1000),
                            chance(0.5) ? std::optional<std::string_view>("v") : std::nullopt,
                            0.0005 + 0.001 * static_cast<double>(pick(4)), now_);
      }
    } else if (op < 62) {  // a task fails
      if (auto r = pick_running()) {
        running_[r->first].erase(r->second);
        state_.on_task_failed(
            r->first, r->second,
            error(chance(0.7) ? ErrorKind::exception : ErrorKind::plugin_error, "x"), 0.001, now_);
      }
    } else if (op < 74) {  // release
      if (!keys_.empty()) {
        std::vector<std::string> ks{keys_[pick(keys_.size())]};
        state_.on_release(client, ks);
      }
    } else if (op < 76) {  // cancel
      if (!keys_.empty()) {
        std::vector<std::string> ks{keys_[pick(keys_.size())]};
        state_.on_cancel(client, ks);
      }
    } else if (op < 78) {  // want
      if (!keys_.empty()) {
        std::vector<std::string> ks{keys_[pick(keys_.size())], "ghost"};
        state_.on_want(client, ks);
      }
    } else if (op < 82) {  // a worker joins
      if (live_.size() < 4) add_worker();
    } else if (op < 86) {  // a worker leaves
      if (!live_.empty()) {
        const std::size_t i = pick(live_.size());
        const PeerId w = live_[i];
        const auto how = static_cast<WorkerExit>(pick(3));
        drop_worker(i);
        state_.on_worker_left(w, how, now_);
      }
    } else if (op < 89) {  // a worker cannot fetch a dependency
      if (auto r = pick_running()) {
        const auto& deps = deps_[r->second];
        if (!deps.empty()) {
          running_[r->first].erase(r->second);
          std::vector<std::string> ms{deps[pick(deps.size())]};
          state_.on_missing_deps(r->first, r->second, ms);
        }
      }
    } else if (op < 90) {  // a worker hands its work back and leaves
      if (!live_.empty()) {
        const std::size_t i = pick(live_.size());
        const PeerId w = live_[i];
        std::vector<std::string> ks(running_[w].begin(), running_[w].end());
        running_[w].clear();
        state_.on_reject(w, ks);
        absorb();
        drop_worker(i);
        state_.on_worker_left(w, WorkerExit::graceful, now_);
      }
    } else if (op < 93) {  // stale reports
      if (!gone_.empty() && !keys_.empty()) {
        const PeerId w = gone_[pick(gone_.size())];
        state_.on_task_done(w, keys_[pick(keys_.size())], 1, std::nullopt, 0.001, now_);
      } else if (!live_.empty() && !keys_.empty()) {
        const PeerId w = live_[pick(live_.size())];
        const std::string& k = keys_[pick(keys_.size())];
        if (!running_[w].count(k)) state_.on_task_done(w, k, 1, std::nullopt, 0.001, now_);
      }
    } else if (op < 96) {  // heartbeats and a tick; sometimes one worker stays silent
      const PeerId silent = live_.empty() || chance(0.7) ? 0 : live_[pick(live_.size())];
      for (PeerId w : live_) {
        if (w != silent) state_.on_heartbeat(w, now_);
      }
      now_ += 3;
      for (PeerId w : state_.on_tick(now_)) {
        auto it = std::find(live_.begin(), live_.end(), w);
        ASSERT_NE(it, live_.end());
        drop_worker(static_cast<std::size_t>(it - live_.begin()));
      }
    } else if (op < 99) {  // work stealing: ask, or answer one request (3%)
      if (steals_.empty() || chance(0.3)) {
        state_.on_steal_tick();
      } else {
        const std::size_t i = pick(steals_.size());
        const auto [w, k] = steals_[i];
        steals_.erase(steals_.begin() + static_cast<std::ptrdiff_t>(i));
        auto it = running_.find(w);
        if (it != running_.end() && it->second.count(k) && chance(0.6)) {  // not started yet
          it->second.erase(k);
          std::vector<std::string_view> stolen{k};
          state_.on_steal_reply(w, stolen, {});
        } else if (it != running_.end()) {  // running, or no longer there
          std::vector<std::string_view> kept{k};
          state_.on_steal_reply(w, {}, kept);
        }
      }
    } else {  // a client leaves and comes back
      state_.on_client_left(client);
      state_.on_client_joined(client, "c");
    }
  }

  std::mt19937 rng_;
  RecordingOutbox out_;
  SchedulerState state_;
  double now_ = 0;
  std::vector<PeerId> clients_{1, 2, 3};
  PeerId next_worker_ = 100;
  std::vector<PeerId> live_;
  std::vector<PeerId> gone_;
  std::map<PeerId, std::set<std::string>> running_;  // what each live worker was asked to run
  std::map<std::string, std::vector<std::string>> deps_;
  std::vector<std::string> keys_;
  std::vector<std::pair<PeerId, std::string>> steals_;  // asked back, not answered yet
};

TEST(SchedulerStateRandomTest, InvariantsHoldUnderRandomEvents) {
  for (std::uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RandomRun(seed).run(1500);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// ---- cost ----

class QueueOutbox : public SchedulerOutbox {
 public:
  void compute(PeerId worker, const ComputeRequest& r) override {
    pending.emplace_back(worker, std::string(r.key));
  }
  void free_key(PeerId, std::string_view) override { ++frees; }
  void report(PeerId, const KeyReport&) override { ++reports; }
  void shutdown_worker(PeerId, std::string_view) override {}
  void steal(PeerId, std::span<const std::string_view>) override {}
  void copy_key(PeerId, const DepLocation&) override {}
  void restart_worker(PeerId, bool) override {}
  void reply(PeerId, std::uint64_t, std::string_view, std::string_view) override {}
  std::deque<std::pair<PeerId, std::string>> pending;
  std::size_t frees = 0;
  std::size_t reports = 0;
};

// Not a benchmark (bench/ has those): runs a wide map + pairwise reduce graph through the state,
// finishing tasks in the order they were sent, and prints the cost per task (submit, send, done,
// report, release of the inputs).
TEST(SchedulerStateCostTest, WideGraphCostPerTask) {
  QueueOutbox ob;
  SchedulerState s(SchedulerOptions{}, ob);
  constexpr int kWorkers = 8;
  for (int w = 0; w < kWorkers; ++w) {
    s.on_worker_joined(static_cast<PeerId>(100 + w), WorkerInfo{"w", "addr", 4}, 0);
  }
  constexpr int kInputs = 100000;
  std::vector<TaskSpec> ts;
  std::vector<std::string> keys;
  for (int i = 0; i < kInputs; ++i) {
    keys.push_back("inc-0123456789abcdef0123456789abcdef-" + std::to_string(i));
    ts.push_back(task(keys.back()));
  }
  for (int i = 0; i < kInputs; i += 2) {
    ts.push_back(task("add-0123456789abcdef0123456789abcdef-" + std::to_string(i),
                      {keys[static_cast<std::size_t>(i)], keys[static_cast<std::size_t>(i) + 1]}));
  }
  const std::size_t total = ts.size();
  const auto t0 = std::chrono::steady_clock::now();
  s.on_submit(kC1, std::move(ts));
  s.on_release(kC1, keys);
  std::size_t finished = 0;
  while (!ob.pending.empty()) {
    auto [worker, key] = std::move(ob.pending.front());
    ob.pending.pop_front();
    s.on_task_done(worker, key, 8, std::nullopt, 0.0001, 0);
    ++finished;
  }
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(finished, total);
  EXPECT_EQ(ob.frees, static_cast<std::size_t>(kInputs));
  EXPECT_EQ(ob.reports, total - kInputs);
  EXPECT_EQ(s.validate(), std::nullopt);
  std::printf(
      "[ cost ] %zu tasks: %.0f ns/task (submit to release, state only)\n", total,
      std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(total));
}

// ---- retry and fire-and-forget ----

TEST_F(SchedulerStateTest, RetryComputesAnErredChainAgainFromItsFailedRoot) {
  worker(kW1);
  submit(kC1, {task("a"), task("b", {"a"})});
  fail(kW1, "a");
  EXPECT_EQ(st("a"), TaskState::erred);
  EXPECT_EQ(st("b"), TaskState::erred);
  release(kC1, {"a"});  // the client only keeps b
  out.computes.clear();
  state.on_retry(kC1, std::vector<std::string_view>{"b"});
  check();
  EXPECT_THAT(out.computed(), ElementsAre("a"));  // the root that failed runs again
  EXPECT_EQ(st("b"), TaskState::waiting);
  done(kW1, "a");
  EXPECT_THAT(out.computed(), ElementsAre("a", "b"));
  done(kW1, "b");
  EXPECT_EQ(st("b"), TaskState::memory);
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("b"));
  // Retrying a key that is not erred, or unknown, changes nothing.
  state.on_retry(kC1, std::vector<std::string_view>{"b", "nope"});
  check();
  EXPECT_EQ(st("b"), TaskState::memory);
}

TEST_F(SchedulerStateTest, FireAndForgetKeepsTheTaskUntilItIsDone) {
  worker(kW1);
  submit(kC1, {task("a"), task("b", {"a"})});
  state.on_fire_and_forget(kC1, std::vector<std::string_view>{"b"});
  check();
  release(kC1, {"a", "b"});  // the client lets go of both
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_EQ(st("b"), TaskState::waiting);
  done(kW1, "a");
  done(kW1, "b");
  // Done: the scheduler's own want goes, and with nobody else wanting them both are forgotten.
  EXPECT_EQ(st("a"), std::nullopt);
  EXPECT_EQ(st("b"), std::nullopt);
  EXPECT_TRUE(out.reported_keys(kFireAndForgetPeer, KeyStatus::memory).size() <= 1);

  submit(kC1, {task("c")});
  state.on_fire_and_forget(kC1, std::vector<std::string_view>{"c"});
  release(kC1, {"c"});
  fail(kW1, "c");  // an error ends it too
  EXPECT_EQ(st("c"), std::nullopt);
}

TEST_F(SchedulerStateTest, DatasetsHoldTheirKeysUntilUnpublished) {
  worker(kW1);
  submit(kC1, {task("a"), task("b")});
  done(kW1, "a");
  done(kW1, "b");
  const std::vector<std::string_view> ab{"a", "b"}, b{"b"};
  EXPECT_EQ(state.on_publish(kC1, "one", ab, false), std::nullopt);
  EXPECT_EQ(state.on_publish(kC1, "two", b, false), std::nullopt);
  EXPECT_NE(state.on_publish(kC1, "two", b, false), std::nullopt);  // taken
  EXPECT_NE(state.on_publish(kC1, "three", std::vector<std::string_view>{"nope"}, false),
            std::nullopt);  // unknown key
  check();
  release(kC1, {"a", "b"});
  EXPECT_EQ(st("a"), TaskState::memory);  // held by the datasets
  EXPECT_EQ(state.datasets(), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(state.dataset("one"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(state.on_unpublish("one"));
  check();
  EXPECT_EQ(st("a"), std::nullopt);         // only "one" held it
  EXPECT_EQ(st("b"), TaskState::memory);    // "two" still does
  EXPECT_FALSE(state.on_unpublish("one"));
  EXPECT_EQ(state.on_publish(kC1, "two", std::vector<std::string_view>{"b"}, true), std::nullopt);
  EXPECT_EQ(st("b"), TaskState::memory);    // replaced by the same key: kept throughout
  EXPECT_TRUE(state.on_unpublish("two"));
  check();
  EXPECT_EQ(st("b"), std::nullopt);
  EXPECT_EQ(state.dataset("two"), std::nullopt);
}

// ---- graph submission: tasks the client does not want (TaskSpec::wanted = false) ----

// A graph's intermediate task: submitted for its dependents, not wanted by the client.
TaskSpec intermediate(std::string key, std::vector<std::string> deps = {}) {
  TaskSpec s = task(std::move(key), std::move(deps));
  s.wanted = false;
  return s;
}

TEST_F(SchedulerStateTest, GraphIntermediatesLiveOnlyWhileDependentsNeedThem) {
  worker(kW1, 4);
  submit(kC1, {intermediate("a"), intermediate("b", {"a"}), intermediate("c", {"a"}),
               task("d", {"b", "c"})});
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_EQ(st("d"), TaskState::waiting);
  done(kW1, "a");
  EXPECT_THAT(out.computed(), ElementsAre("a", "b", "c"));
  done(kW1, "b");
  EXPECT_EQ(st("a"), TaskState::memory);  // c still needs it
  EXPECT_THAT(out.frees, IsEmpty());
  done(kW1, "c");
  EXPECT_EQ(st("a"), TaskState::released);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  EXPECT_THAT(out.computed(), ElementsAre("a", "b", "c", "d"));
  done(kW1, "d");
  EXPECT_THAT(out.frees,
              UnorderedElementsAre(FreeCall{kW1, "a"}, FreeCall{kW1, "b"}, FreeCall{kW1, "c"}));
  // Only the output was ever reported: the client holds no future for the rest.
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("d"));
  EXPECT_EQ(out.reports.size(), 1u);
  EXPECT_EQ(state.task_count(), 4u);  // lineage kept while d exists
  release(kC1, {"d"});
  EXPECT_EQ(state.task_count(), 0u);
}

TEST_F(SchedulerStateTest, UnwantedTaskThatNothingNeedsIsDroppedBeforeItRuns) {
  worker(kW1);
  submit(kC1, {intermediate("x"), task("y")});
  EXPECT_THAT(out.computed(), ElementsAre("y"));
  EXPECT_EQ(st("x"), std::nullopt);
  EXPECT_EQ(state.task_count(), 1u);
  EXPECT_THAT(out.reports, IsEmpty());
}

TEST_F(SchedulerStateTest, UnwantedTaskWaitsForItsDependentLaterInTheBatch) {
  // Many intermediates before the one task that uses them all: none is released on the way.
  worker(kW1, 2);
  std::vector<TaskSpec> ts;
  std::vector<std::string> parts;
  for (int i = 0; i < 20; ++i) {
    parts.push_back("p" + std::to_string(i));
    ts.push_back(intermediate(parts.back()));
  }
  ts.push_back(task("total", parts));
  submit(kC1, std::move(ts));
  EXPECT_EQ(state.task_count(), 21u);
  for (const auto& p : parts) ASSERT_TRUE(st(p).has_value()) << p;
  // The worker runs a few at a time (the rest wait queued on the scheduler).
  while (st("total") == TaskState::waiting) {
    std::vector<std::string> running;
    for (const auto& p : parts) {
      if (st(p) == TaskState::processing) running.push_back(p);
    }
    ASSERT_FALSE(running.empty()) << "no part is running";
    for (const auto& r : running) done(kW1, r);
  }
  EXPECT_EQ(st("total"), TaskState::processing);
  done(kW1, "total");
  for (const auto& p : parts) EXPECT_EQ(st(p), TaskState::released) << p;
  EXPECT_EQ(out.frees.size(), parts.size());
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("total"));
}

TEST_F(SchedulerStateTest, KeyUnwantedThenWantedInOneBatchStaysWanted) {
  worker(kW1);
  submit(kC1, {intermediate("x"), task("y", {"x"}), task("x")});
  done(kW1, "x");
  done(kW1, "y");
  EXPECT_EQ(st("x"), TaskState::memory);  // wanted by the third spec
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("x", "y"));
  EXPECT_THAT(out.frees, IsEmpty());
}

TEST_F(SchedulerStateTest, UnwantedSpecOfAWantedKeyLeavesTheWant) {
  worker(kW1);
  submit(kC1, {task("a")});
  done(kW1, "a");
  submit(kC1, {intermediate("a"), task("b", {"a"})});
  done(kW1, "b");
  EXPECT_EQ(st("a"), TaskState::memory);  // the first submission still wants it
  EXPECT_THAT(out.frees, IsEmpty());
  EXPECT_EQ(state.counters().tasks_deduplicated, 1u);
  release(kC1, {"a"});
  EXPECT_EQ(st("a"), TaskState::released);  // lineage of b
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
}

TEST_F(SchedulerStateTest, UnwantedKeyHeldByAnotherClientIsReused) {
  worker(kW1);
  submit(kC2, {task("a")});
  done(kW1, "a");
  out.clear();
  submit(kC1, {intermediate("a"), task("b", {"a"})});
  EXPECT_THAT(out.computed(), ElementsAre("b"));  // a is not computed again
  EXPECT_THAT(out.reports, IsEmpty());            // and c1 is not told about it
  done(kW1, "b");
  release(kC2, {"a"});
  EXPECT_EQ(st("a"), TaskState::released);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
}

TEST_F(SchedulerStateTest, FailedIntermediateErrsItsDependents) {
  worker(kW1);
  submit(kC1, {intermediate("a"), intermediate("b", {"a"}), task("c", {"b"})});
  fail(kW1, "a", ErrorKind::exception, "bad input");
  EXPECT_EQ(st("a"), TaskState::erred);
  EXPECT_EQ(st("b"), TaskState::erred);
  EXPECT_EQ(st("c"), TaskState::erred);
  ASSERT_EQ(out.reports.size(), 1u);  // to the one wanter, about the output
  EXPECT_EQ(out.reports[0].key, "c");
  EXPECT_EQ(out.reports[0].status, KeyStatus::erred);
  ASSERT_TRUE(out.reports[0].error.has_value());
  EXPECT_EQ(out.reports[0].error->message, "bad input");
  release(kC1, {"c"});
  EXPECT_EQ(state.task_count(), 0u);
}

TEST_F(SchedulerStateTest, IntermediateWithUnknownDependencyErrsTheOutput) {
  worker(kW1);
  submit(kC1, {intermediate("a", {"nope"}), task("b", {"a"})});
  EXPECT_THAT(out.computes, IsEmpty());
  EXPECT_EQ(st("b"), TaskState::erred);
  const auto rb = out.reports_of("b");
  ASSERT_EQ(rb.size(), 1u);
  ASSERT_TRUE(rb[0].error.has_value());
  EXPECT_THAT(rb[0].error->message, HasSubstr("nope"));
  EXPECT_EQ(st("a"), TaskState::erred);  // kept as b's lineage, not wanted
  release(kC1, {"b"});
  EXPECT_EQ(state.task_count(), 0u);
}

TEST_F(SchedulerStateTest, ClientLeavingMidGraphReleasesItsIntermediates) {
  worker(kW1);
  submit(kC1, {intermediate("a"), intermediate("b", {"a"}), task("c", {"b"})});
  EXPECT_EQ(st("a"), TaskState::processing);
  state.on_client_left(kC1);
  check();
  EXPECT_EQ(state.task_count(), 0u);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
}

}  // namespace
}  // namespace plexus::sched

// ---- memory: paused workers, data lost on a worker ----

namespace plexus::sched {
namespace {

bool paused_flag(const SchedulerState& s, PeerId w) {
  for (const auto& ws : s.workers()) {
    if (ws.peer == w) return ws.paused;
  }
  ADD_FAILURE() << "no worker " << w;
  return false;
}

// A paused worker keeps what it runs and holds but gets nothing new; it gets work again when it
// resumes. Event by event, with the invariants checked after each.
TEST_F(SchedulerStateTest, PausedWorkerGetsNoNewTasksUntilItResumes) {
  worker(kW1, 1);
  submit(kC1, {task("x")});
  EXPECT_THAT(out.computed(kW1), ElementsAre("x"));
  out.clear();

  state.on_worker_paused(kW1, true);
  check();
  EXPECT_TRUE(paused_flag(state, kW1));
  submit(kC1, {task("a"), task("b")});
  EXPECT_THAT(out.computes, IsEmpty());
  EXPECT_EQ(state.queued_count(), 2u);
  EXPECT_EQ(st("x"), TaskState::processing);  // what it runs stays there

  // Its running task finishes as usual; still nothing new while paused.
  done(kW1, "x");
  EXPECT_EQ(st("x"), TaskState::memory);
  EXPECT_THAT(out.computes, IsEmpty());
  state.on_worker_paused(kW1, true);  // repeated: no change
  check();
  EXPECT_THAT(out.computes, IsEmpty());

  state.on_worker_paused(kW1, false);
  check();
  EXPECT_FALSE(paused_flag(state, kW1));
  EXPECT_THAT(out.computed(kW1), ElementsAre("a", "b"));
  EXPECT_EQ(state.queued_count(), 0u);
}

// While one worker is paused the others take all new work, including the dependents of data
// the paused worker holds (they fetch it from there); unknown peers change nothing.
TEST_F(SchedulerStateTest, OtherWorkersTakeTheWorkOfAPausedOne) {
  worker(kW1, 4);
  worker(kW2, 4);
  submit(kC1, {task("a")});
  const PeerId holder = out.computes.at(0).worker;
  const PeerId other = holder == kW1 ? kW2 : kW1;
  done(holder, "a");
  out.clear();
  state.on_worker_paused(holder, true);
  check();
  state.on_worker_paused(99, true);  // not a worker
  check();
  submit(kC1, {task("b", {"a"}), task("c", {"a"}), task("d")});
  EXPECT_THAT(out.computed(holder), IsEmpty());
  EXPECT_THAT(out.computed(other), ElementsAre("b", "c", "d"));
  EXPECT_THAT(out.computes.at(0).dep_holders, ElementsAre(ElementsAre(addr(holder))));

  // A worker that leaves while paused and joins again starts unpaused.
  leave(holder, WorkerExit::graceful);
  worker(holder, 4);
  EXPECT_FALSE(paused_flag(state, holder));
}

// Data lost on its only holder (a spilled file that could not be read back) is recomputed, and
// the holder's task that needed it waits for it again.
TEST_F(SchedulerStateTest, DataLostOnItsOnlyHolderIsRecomputed) {
  worker(kW1, 2);
  submit(kC1, {task("a"), task("b", {"a"})});
  done(kW1, "a");
  EXPECT_THAT(out.computed(kW1), ElementsAre("a", "b"));
  out.clear();
  state.on_data_lost(kW1, std::vector<std::string>{"a"});
  check();
  EXPECT_THAT(state.who_has("a"), IsEmpty());
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  out.clear();
  done(kW1, "a");
  EXPECT_THAT(out.computed(kW1), ElementsAre("b"));
  done(kW1, "b");
  EXPECT_EQ(st("b"), TaskState::memory);
}

// Data lost that nobody needs any more is released, not recomputed; reports of keys the worker
// does not hold, and from peers that are not workers, change nothing.
TEST_F(SchedulerStateTest, DataLostThatNobodyNeedsIsReleasedAndStaleReportsAreIgnored) {
  worker(kW1, 2);
  submit(kC1, {task("a"), task("b", {"a"})});
  done(kW1, "a");
  done(kW1, "b");  // a is no longer needed by b; c1 still wants it
  out.clear();
  state.on_data_lost(99, std::vector<std::string>{"a"});          // not a worker
  state.on_data_lost(kW1, std::vector<std::string>{"unknown"});   // unknown key
  check();
  EXPECT_EQ(st("a"), TaskState::memory);
  EXPECT_THAT(out.computes, IsEmpty());

  release(kC1, {"a"});  // b still holds a's record (lineage); its data was freed
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  out.clear();
  // a's data is gone already (no longer held: ignored); b, which c1 wants, is recomputed, and
  // a with it, since b needs it.
  state.on_data_lost(kW1, std::vector<std::string>{"a", "b"});
  check();
  EXPECT_THAT(state.who_has("b"), IsEmpty());
  EXPECT_EQ(st("b"), TaskState::waiting);
  EXPECT_EQ(st("a"), TaskState::processing);
  EXPECT_THAT(out.computed(kW1), ElementsAre("a"));
  out.clear();
  done(kW1, "a");
  EXPECT_THAT(out.computed(kW1), ElementsAre("b"));
}

}  // namespace
}  // namespace plexus::sched

// ---- data movement: scatter, replicate, rebalance, restart ----

namespace plexus::sched {
namespace {

constexpr PeerId kW3 = 13;

class SchedulerDataTest : public SchedulerStateTest {
 protected:
  void scatter(PeerId c, const std::string& key, std::vector<PeerId> on, std::uint64_t nbytes = 100) {
    std::vector<std::string> where;
    for (PeerId w : on) where.push_back(addr(w));
    std::vector<std::string_view> views(where.begin(), where.end());
    const ScatteredKeyView k{key, nbytes, views};
    state.on_scatter(c, std::span(&k, 1));
    check();
  }
  void copied(PeerId w, const std::string& key, std::uint64_t nbytes = 100) {
    state.on_keys_copied(w, key, nbytes, now);
    check();
  }
  void copy_failed(PeerId w, const std::string& key) {
    state.on_copy_failed(w, key, now);
    check();
  }
  void replicate(std::uint64_t id, std::vector<std::string_view> keys, std::uint32_t n,
                 std::vector<std::string_view> workers = {}) {
    state.on_replicate(kC1, id, keys, n, workers);
    check();
  }
  void rebalance(std::uint64_t id, std::vector<std::string_view> keys = {},
                 std::vector<std::string_view> workers = {}) {
    state.on_rebalance(kC1, id, keys, workers);
    check();
  }
  std::uint64_t held_bytes(PeerId w) const {
    for (const auto& s : state.workers()) {
      if (s.peer == w) return s.held_bytes;
    }
    return 0;
  }
  std::vector<std::string> copies_to(PeerId w) const {
    std::vector<std::string> keys;
    for (const auto& c : out.copies) {
      if (c.worker == w) keys.push_back(c.key);
    }
    return keys;
  }
};

TEST_F(SchedulerDataTest, ScatteredKeyIsInMemoryWithoutLineageAndUsableAsADependency) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1}, 64);
  EXPECT_EQ(st("x"), TaskState::memory);
  EXPECT_TRUE(state.is_scattered("x"));
  EXPECT_THAT(state.who_has("x"), ElementsAre(wname(kW1)));
  ASSERT_EQ(out.reports_of("x").size(), 1u);
  EXPECT_EQ(out.reports_of("x")[0].status, KeyStatus::memory);
  EXPECT_EQ(out.reports_of("x")[0].nbytes, 64u);
  EXPECT_THAT(out.reports_of("x")[0].holders, ElementsAre(addr(kW1)));
  EXPECT_THAT(out.computes, IsEmpty());  // never computed

  submit(kC1, {task("y", {"x"})});
  ASSERT_EQ(out.computes.size(), 1u);
  EXPECT_EQ(out.computes[0].key, "y");
  EXPECT_THAT(out.computes[0].dep_holders, ElementsAre(ElementsAre(addr(kW1))));
  done(out.computes[0].worker, "y");
  release(kC1, {"x", "y"});
  EXPECT_EQ(state.task_count(), 0u);
  EXPECT_THAT(out.frees, ::testing::Contains(FreeCall{kW1, "x"}));
  EXPECT_FALSE(state.is_scattered("x"));
}

TEST_F(SchedulerDataTest, ScatteredKeyLostWithItsOnlyHolderErrsItAndItsWaitingDependents) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1});
  submit(kC1, {task("gate"), task("y", {"x", "gate"})});  // y waits for gate
  EXPECT_EQ(st("y"), TaskState::waiting);
  out.clear();
  ASSERT_TRUE(state.on_worker_died(wname(kW1), "killed by signal SIGKILL", now));
  check();
  EXPECT_EQ(st("x"), TaskState::erred);
  EXPECT_EQ(st("y"), TaskState::erred);
  for (const char* key : {"x", "y"}) {
    auto rs = out.reports_of(key);
    ASSERT_EQ(rs.size(), 1u) << key;
    EXPECT_EQ(rs[0].status, KeyStatus::erred);
    ASSERT_TRUE(rs[0].error);
    EXPECT_EQ(rs[0].error->kind, ErrorKind::lost);
    EXPECT_EQ(rs[0].error->message,
              "scattered data x was lost with worker w11 (killed by signal SIGKILL); it cannot be "
              "recomputed: scatter it again");
  }
  EXPECT_THAT(out.computed(), ::testing::Not(::testing::Contains("x")));
  // Retrying the dependent does not compute the scattered key: it fails the same way.
  out.clear();
  state.on_retry(kC1, std::vector<std::string_view>{"y"});
  check();
  EXPECT_EQ(st("y"), TaskState::erred);
  EXPECT_EQ(st("x"), TaskState::erred);
  EXPECT_THAT(out.computed(), ::testing::Not(::testing::Contains("x")));
}

TEST_F(SchedulerDataTest, DependentRunningElsewhereIsPulledBackAndErredWhenTheScatteredKeyIsLost) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1}, 1);
  // Busy W1 so that y goes to W2.
  submit(kC1, {task("busy")});
  submit(kC1, {task("y", {"x"})});
  PeerId ran_on = 0;
  for (const auto& c : out.computes) {
    if (c.key == "y") ran_on = c.worker;
  }
  ASSERT_EQ(ran_on, kW2);  // W1 is busy and fetching one byte costs next to nothing
  out.clear();
  leave(kW1);
  EXPECT_EQ(st("y"), TaskState::erred);
  EXPECT_THAT(out.frees, ::testing::Contains(FreeCall{kW2, "y"}));
  EXPECT_THAT(out.computed(), ::testing::Not(::testing::Contains("y")));
}

TEST_F(SchedulerDataTest, ReleasedScatteredKeyNeededForARecomputationErrsInsteadOfRunning) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW2});
  submit(kC1, {task("y", {"x"})});
  done(out.computes.at(0).worker, "y");
  const PeerId y_on = out.computes.at(0).worker;
  release(kC1, {"x"});  // the client keeps y only: x's data goes, its record stays as lineage
  EXPECT_EQ(st("x"), TaskState::released);
  out.clear();
  leave(y_on);  // y is lost and must be recomputed, which needs x
  EXPECT_EQ(st("y"), TaskState::erred);
  EXPECT_THAT(out.computed(), IsEmpty());
  auto rs = out.reports_of("y");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].error->kind, ErrorKind::lost);
  EXPECT_THAT(rs[0].error->message, HasSubstr("scattered data x was lost after it was released"));
}

TEST_F(SchedulerDataTest, UnservableScatteredKeyIsLostNotRecomputed) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1}, 1);
  submit(kC1, {task("busy")});
  submit(kC1, {task("y", {"x"})});
  PeerId ran_on = 0;
  for (const auto& c : out.computes) {
    if (c.key == "y") ran_on = c.worker;
  }
  ASSERT_EQ(ran_on, kW2);  // W1 is busy
  out.clear();
  missing(ran_on, "y", {"x"});
  EXPECT_EQ(st("x"), TaskState::erred);
  EXPECT_EQ(st("y"), TaskState::erred);
  EXPECT_THAT(out.reports_of("x").at(0).error->message,
              HasSubstr("when no worker holding it could serve it to worker"));
}

TEST_F(SchedulerDataTest, ScatteringALostKeyAgainBringsItBack) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1});
  want(kC2, {"x"});
  leave(kW1);
  EXPECT_EQ(st("x"), TaskState::erred);
  out.clear();
  scatter(kC1, "x", {kW2}, 50);
  EXPECT_EQ(st("x"), TaskState::memory);
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::memory), ElementsAre("x"));
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::memory), ElementsAre("x"));  // told as well
  EXPECT_THAT(state.who_has("x"), ElementsAre(wname(kW2)));
}

TEST_F(SchedulerDataTest, ScatterOnWorkersThatLeftOrUnderATaskKeyIsRefused) {
  worker(kW1);
  scatter(kC1, "x", {kW2});  // kW2 never joined
  EXPECT_EQ(st("x"), std::nullopt);
  ASSERT_EQ(out.reports_of("x").size(), 1u);
  EXPECT_EQ(out.reports_of("x")[0].status, KeyStatus::lost);
  EXPECT_THAT(out.reports_of("x")[0].error->message, HasSubstr("scatter it again"));

  submit(kC1, {task("t")});  // processing
  out.clear();
  scatter(kC2, "t", {kW1});
  EXPECT_EQ(st("t"), TaskState::processing);
  ASSERT_EQ(out.reports_of("t").size(), 1u);
  EXPECT_EQ(out.reports_of("t")[0].status, KeyStatus::erred);
  EXPECT_EQ(out.reports_of("t")[0].error->kind, ErrorKind::scheduler_error);
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "t"}));
}

TEST_F(SchedulerDataTest, HoldPinsTheKeysInMemoryForTheClient) {
  worker(kW1);
  scatter(kC1, "x", {kW1});
  submit(kC1, {task("t")});  // not in memory
  const std::vector<std::string_view> asked{"x", "t", "nope"};
  const auto held = state.on_hold(kC2, asked);
  check();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].first, "x");
  EXPECT_THAT(held[0].second, ElementsAre(addr(kW1)));
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::memory), ElementsAre("x"));
  release(kC1, {"x"});
  EXPECT_EQ(st("x"), TaskState::memory);  // C2 holds it now
  release(kC2, {"x"});
  EXPECT_EQ(st("x"), std::nullopt);
}

TEST_F(SchedulerDataTest, ReplicateCopiesToTheLeastLoadedWorkersAndAnswersWhenDone) {
  worker(kW1);
  worker(kW2);
  worker(kW3);
  scatter(kC1, "big", {kW2}, 1000);
  scatter(kC1, "x", {kW1}, 100);
  replicate(7, {"x"}, 2);
  EXPECT_THAT(copies_to(kW3), ElementsAre("x"));  // W2 holds more bytes than W3
  EXPECT_THAT(copies_to(kW2), IsEmpty());
  EXPECT_THAT(out.copies.at(0).holders, ElementsAre(addr(kW1)));
  EXPECT_THAT(out.replies, IsEmpty());  // not before the copy ended
  copied(kW3, "x");
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].client, kC1);
  EXPECT_EQ(out.replies[0].request_id, 7u);
  EXPECT_EQ(out.replies[0].json, R"({"copied":1,"failed":0,"dropped":0})");
  EXPECT_THAT(state.who_has("x"), ElementsAre(wname(kW1), wname(kW3)));

  // To every worker; one copy fails.
  out.clear();
  replicate(8, {"x"}, 0);
  EXPECT_THAT(copies_to(kW2), ElementsAre("x"));
  copy_failed(kW2, "x");
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"copied":0,"failed":1,"dropped":0})");

  // Down to one copy: the extra goes from the most loaded holder, never the last one.
  out.clear();
  replicate(9, {"x"}, 1);
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"copied":0,"failed":0,"dropped":1})");
  EXPECT_EQ(state.who_has("x").size(), 1u);
  EXPECT_EQ(out.frees.size(), 1u);
}

TEST_F(SchedulerDataTest, ReplicateRefusesUnknownKeysAndWorkersAndFailsCopiesToWorkersThatLeave) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1});
  submit(kC1, {task("t")});
  replicate(1, {"nope"}, 2);
  replicate(2, {"t"}, 2);
  replicate(3, {"x"}, 2, {"w99"});
  ASSERT_EQ(out.replies.size(), 3u);
  EXPECT_THAT(out.replies[0].error, HasSubstr("does not know key nope"));
  EXPECT_THAT(out.replies[1].error, HasSubstr("key t is not in memory (it is processing)"));
  EXPECT_THAT(out.replies[2].error, HasSubstr("no worker named or at 'w99'"));
  EXPECT_THAT(out.copies, IsEmpty());

  out.clear();
  replicate(4, {"x"}, 2, {wname(kW1), addr(kW2)});  // names and addresses both work
  EXPECT_THAT(copies_to(kW2), ElementsAre("x"));
  leave(kW2);
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"copied":0,"failed":1,"dropped":0})");
}

TEST_F(SchedulerDataTest, CopyOfAKeyReleasedMeanwhileIsFreedOnTheReceiver) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1});
  replicate(1, {"x"}, 2);
  release(kC1, {"x"});
  EXPECT_EQ(st("x"), std::nullopt);
  out.clear();
  copied(kW2, "x");
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW2, "x"}));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"copied":0,"failed":0,"dropped":0})");
}

TEST_F(SchedulerDataTest, RebalanceMovesBytesFromAboveTheMeanToBelowIt) {
  worker(kW1);
  worker(kW2);
  worker(kW3);
  for (int i = 0; i < 6; ++i) scatter(kC1, "k" + std::to_string(i), {kW1}, 100);
  rebalance(5);
  EXPECT_EQ(out.copies.size(), 4u);  // 600 bytes on one of three workers: 4 moves to reach 200
  EXPECT_EQ(copies_to(kW2).size(), 2u);
  EXPECT_EQ(copies_to(kW3).size(), 2u);
  for (const auto& c : out.copies) EXPECT_EQ(c.holders.front(), addr(kW1));  // the sender serves
  EXPECT_THAT(out.replies, IsEmpty());
  const auto copies = out.copies;
  for (const auto& c : copies) copied(c.worker, c.key);
  EXPECT_EQ(out.frees.size(), 4u);  // each freed on the sender after its copy arrived
  for (const auto& f : out.frees) EXPECT_EQ(f.worker, kW1);
  EXPECT_EQ(held_bytes(kW1), 200u);
  EXPECT_EQ(held_bytes(kW2), 200u);
  EXPECT_EQ(held_bytes(kW3), 200u);
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"moved":4,"failed":0})");

  // Balanced: nothing moves, and the answer comes at once.
  out.clear();
  rebalance(6);
  EXPECT_THAT(out.copies, IsEmpty());
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"moved":0,"failed":0})");
}

TEST_F(SchedulerDataTest, RebalanceOfChosenKeysAmongChosenWorkers) {
  worker(kW1);
  worker(kW2);
  worker(kW3);
  scatter(kC1, "a", {kW1}, 100);
  scatter(kC1, "b", {kW1}, 100);
  scatter(kC1, "c", {kW1}, 100);
  rebalance(1, {"a", "b"}, {wname(kW1), wname(kW3)});
  ASSERT_EQ(out.copies.size(), 1u);  // a and b: 200 bytes, 100 each between W1 and W3
  EXPECT_EQ(out.copies[0].worker, kW3);
  EXPECT_NE(out.copies[0].key, "c");
}

TEST_F(SchedulerDataTest, RestartCancelsEveryWantForgetsEveryTaskAndWaitsForTheWorkers) {
  worker(kW1);
  worker(kW2);
  submit(kC1, {task("a"), task("b", {"a"})});
  submit(kC2, {task("c")});
  scatter(kC2, "x", {kW2});
  ASSERT_EQ(state.on_publish(kC2, "ds", std::vector<std::string_view>{"x"}, false), std::nullopt);
  out.clear();
  const std::vector<PeerId> supervised{kW2};
  state.on_restart(kC1, 42, supervised);
  check();
  EXPECT_EQ(state.task_count(), 0u);
  EXPECT_THAT(state.datasets(), IsEmpty());
  EXPECT_THAT(out.reported_keys(kC1, KeyStatus::cancelled), UnorderedElementsAre("a", "b"));
  EXPECT_THAT(out.reported_keys(kC2, KeyStatus::cancelled), UnorderedElementsAre("c", "x"));
  for (const auto& r : out.reports) {
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, ErrorKind::cancelled);
    EXPECT_THAT(r.error->message, HasSubstr("the cluster restarted (restart requested by client c1)"));
  }
  EXPECT_THAT(out.restarts, ElementsAre(std::pair{kW1, false}, std::pair{kW2, true}));
  EXPECT_EQ(state.worker_count(), 1u);  // the supervised one left; its nanny starts it again
  EXPECT_THAT(out.replies, IsEmpty());
  worker(kW3);
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].request_id, 42u);
  EXPECT_EQ(out.replies[0].json, R"({"workers":2})");
  // The cluster works after: a fresh submit runs, and a late result of the old worker is ignored.
  out.clear();
  submit(kC1, {task("a")});
  EXPECT_THAT(out.computed(), ElementsAre("a"));
  done(kW2, "a");
  EXPECT_EQ(st("a"), TaskState::processing);
}

TEST_F(SchedulerDataTest, RestartWithoutNanniesAnswersAtOnce) {
  worker(kW1);
  submit(kC1, {task("a")});
  out.clear();
  state.on_restart(kC1, 1, {});
  check();
  EXPECT_THAT(out.restarts, ElementsAre(std::pair{kW1, false}));
  EXPECT_THAT(out.frees, ElementsAre(FreeCall{kW1, "a"}));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(out.replies[0].json, R"({"workers":1})");
  EXPECT_EQ(state.worker_count(), 1u);
}

}  // namespace
}  // namespace plexus::sched

namespace plexus::sched {
namespace {

// Random scatters, copies, moves, deaths and restarts mixed with tasks that use scattered keys:
// the invariants hold after every event, every request is answered exactly once, and once every
// client has left nothing is left.
class DataRandomRun {
 public:
  explicit DataRandomRun(std::uint32_t seed) : rng_(seed), state_(SchedulerOptions{}, out_) {}

  void run(int steps) {
    for (PeerId c : {kC1, kC2}) state_.on_client_joined(c, "c");
    join();
    join();
    for (int i = 0; i < steps; ++i) {
      step();
      absorb();
      if (auto v = state_.validate()) FAIL() << "step " << i << ": " << *v;
    }
    // Settle: every copy arrives, and workers join until the restarts have their workers back.
    for (int round = 0; round < 100 && (!copies_.empty() || answered_.size() < asked_); ++round) {
      while (!copies_.empty()) {
        const auto [w, key] = copies_.back();
        copies_.pop_back();
        state_.on_keys_copied(w, key, 8, now_);
        absorb();
      }
      if (answered_.size() < asked_) join();
      absorb();
      ASSERT_EQ(state_.validate(), std::nullopt);
    }
    EXPECT_EQ(answered_.size(), asked_) << "requests without an answer";
    for (PeerId c : {kC1, kC2}) state_.on_client_left(c);
    ASSERT_EQ(state_.validate(), std::nullopt);
    EXPECT_EQ(state_.task_count(), 0u);
  }

 private:
  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  void join() {
    const PeerId w = next_worker_++;
    live_.push_back(w);
    state_.on_worker_joined(w, WorkerInfo{wname(w), addr(w), 2}, now_);
  }

  const std::string& any_key() { return keys_[pick(keys_.size())]; }

  std::vector<std::string_view> some_keys() {
    std::vector<std::string_view> ks;
    for (std::size_t n = 1 + pick(3); n > 0 && !keys_.empty(); --n) ks.push_back(any_key());
    return ks;
  }

  std::vector<std::string> some_workers() {
    std::vector<std::string> ws;
    if (chance(0.5) || live_.empty()) return ws;
    ws.push_back(wname(live_[pick(live_.size())]));
    if (chance(0.1)) ws.push_back("ghost");
    return ws;
  }

  void absorb() {
    std::size_t nc = 0, nf = 0, ncopy = 0;
    for (const auto call : out_.log) {
      if (call == RecordingOutbox::Call::compute) {
        const auto& c = out_.computes[nc++];
        running_.emplace_back(c.worker, c.key);
      } else if (call == RecordingOutbox::Call::free_key) {
        const auto& f = out_.frees[nf++];
        std::erase(running_, std::pair{f.worker, f.key});
      } else if (call == RecordingOutbox::Call::copy) {
        const auto& c = out_.copies[ncopy++];
        copies_.emplace_back(c.worker, c.key);
      }
    }
    for (const auto& r : out_.replies) {
      EXPECT_TRUE(answered_.insert(r.request_id).second) << "answered twice: " << r.request_id;
    }
    out_.clear();
  }

  void leave(std::size_t i) {
    const PeerId w = live_[i];
    live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(i));
    std::erase_if(running_, [w](const auto& r) { return r.first == w; });
    std::erase_if(copies_, [w](const auto& c) { return c.first == w; });
  }

  void step() {
    now_ += 0.01;
    const std::size_t op = pick(100);
    const PeerId client = chance(0.5) ? kC1 : kC2;
    if (op < 15) {  // scatter, on live workers (and sometimes one that left)
      std::vector<std::string> where;
      for (PeerId w : live_) {
        if (chance(0.5)) where.push_back(addr(w));
      }
      if (where.empty() || chance(0.1)) where.push_back(addr(900));
      const std::string key = chance(0.2) && !keys_.empty() ? any_key()
                                                            : "s" + std::to_string(keys_.size());
      if (key[0] == 's' && std::find(keys_.begin(), keys_.end(), key) == keys_.end()) {
        keys_.push_back(key);
      }
      std::vector<std::string_view> views(where.begin(), where.end());
      const ScatteredKeyView k{key, 1 + pick(500), views};
      state_.on_scatter(client, std::span(&k, 1));
    } else if (op < 27) {  // a task on some keys
      std::vector<std::string> deps;
      for (auto k : some_keys()) {
        if (std::find(deps.begin(), deps.end(), k) == deps.end()) deps.emplace_back(k);
      }
      keys_.push_back("t" + std::to_string(keys_.size()));
      state_.on_submit(client, {task(keys_.back(), deps)});
    } else if (op < 40) {  // a task finishes
      if (!running_.empty()) {
        const auto r = running_[pick(running_.size())];
        std::erase(running_, r);
        state_.on_task_done(r.first, r.second, 1 + pick(500), std::nullopt, 0.001, now_);
      }
    } else if (op < 48) {  // replicate
      auto ws = some_workers();
      std::vector<std::string_view> wv(ws.begin(), ws.end());
      ++asked_;
      state_.on_replicate(client, next_request_++, some_keys(), static_cast<std::uint32_t>(pick(4)),
                          wv);
    } else if (op < 54) {  // rebalance
      auto ws = some_workers();
      std::vector<std::string_view> wv(ws.begin(), ws.end());
      ++asked_;
      state_.on_rebalance(client, next_request_++,
                          chance(0.5) ? std::vector<std::string_view>{} : some_keys(), wv);
    } else if (op < 70) {  // a copy ends
      if (!copies_.empty()) {
        const std::size_t i = pick(copies_.size());
        const auto [w, key] = copies_[i];
        copies_.erase(copies_.begin() + static_cast<std::ptrdiff_t>(i));
        if (chance(0.8)) {
          state_.on_keys_copied(w, key, 8, now_);
        } else {
          state_.on_copy_failed(w, key, now_);
        }
      }
    } else if (op < 80) {  // release
      if (!keys_.empty()) state_.on_release(client, std::vector<std::string>{any_key()});
    } else if (op < 84) {  // hold
      if (!keys_.empty()) state_.on_hold(client, some_keys());
    } else if (op < 88) {  // a worker joins
      if (live_.size() < 5) join();
    } else if (op < 94) {  // a worker dies
      if (!live_.empty()) {
        const std::size_t i = pick(live_.size());
        const PeerId w = live_[i];
        leave(i);
        state_.on_worker_left(w, WorkerExit::lost, now_);
      }
    } else if (op < 97) {  // a worker cannot fetch a dependency
      if (!running_.empty() && !keys_.empty()) {
        const auto r = running_[pick(running_.size())];
        std::erase(running_, r);
        state_.on_missing_deps(r.first, r.second, std::vector<std::string>{any_key()});
      }
    } else if (op < 98) {  // retry
      if (!keys_.empty()) state_.on_retry(client, some_keys());
    } else {  // restart; some workers are under a nanny
      std::vector<PeerId> supervised;
      for (PeerId w : live_) {
        if (chance(0.5)) supervised.push_back(w);
      }
      ++asked_;
      state_.on_restart(client, next_request_++, supervised);
      for (PeerId w : supervised) leave(static_cast<std::size_t>(
          std::find(live_.begin(), live_.end(), w) - live_.begin()));
      running_.clear();
    }
  }

  std::mt19937 rng_;
  RecordingOutbox out_;
  SchedulerState state_;
  double now_ = 0;
  PeerId next_worker_ = 100;
  std::vector<PeerId> live_;
  std::vector<std::string> keys_;
  std::vector<std::pair<PeerId, std::string>> running_;  // computes not yet finished
  std::vector<std::pair<PeerId, std::string>> copies_;   // copies not yet ended
  std::uint64_t next_request_ = 1;
  std::size_t asked_ = 0;
  std::set<std::uint64_t> answered_;
};

TEST_F(SchedulerDataTest, RetryThroughALostScatteredKeyStillRunsTheOtherFailedDependencies) {
  worker(kW1);
  worker(kW2);
  scatter(kC1, "x", {kW1});
  submit(kC1, {task("a"), task("gate"), task("y", {"x", "a", "gate"})});
  fail(out.computes.at(0).worker, "a");  // y errs through a
  EXPECT_EQ(st("y"), TaskState::erred);
  leave(kW1);  // and x is lost
  EXPECT_EQ(st("x"), TaskState::erred);
  out.clear();
  state.on_retry(kC1, std::vector<std::string_view>{"y"});
  check();
  EXPECT_EQ(st("y"), TaskState::erred);  // x cannot come back
  EXPECT_EQ(st("a"), TaskState::processing);  // but a, which the client wants, runs again
  EXPECT_THAT(out.computed(), ElementsAre("a"));
}

TEST(SchedulerDataRandomTest, InvariantsHoldAndEveryRequestIsAnswered) {
  for (std::uint32_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    DataRandomRun(seed).run(1500);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace plexus::sched
