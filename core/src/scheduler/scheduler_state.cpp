// SchedulerState: the scheduler's transition engine over interned task records.
//
// Representation (see scheduler_state.hpp for the contract):
//  - Tasks live in fixed chunks (stable addresses) and are named by dense ids; forgotten ids are
//    reused lowest first. An open-addressing index maps keys to ids (it stores ids only and
//    compares against the records' keys). Task names are interned once (they also carry the learned
//    duration).
//  - Every many-to-many relation (task deps <-> dependents, task holders <-> worker has_what,
//    task wanters <-> client wants) is a pair of lists of `Link`s, each link holding the index of
//    its mirror in the other list, so either side is removed in O(1) by swap-remove.
//  - Per-task lists are small vectors with inline room for the common case, and the key and the
//    encoded arguments share one heap block, so a task costs one heap allocation. An erred
//    task's error lives in a side table (errors are rare and need not cost every record).
//  - Ready tasks wait in a binary heap ordered by (priority desc, submission seq asc) with lazy
//    deletion; unsaturated workers sit in an indexed min-heap ordered by expected start.
//
// Invariants (checked by validate()):
//  - needed(t) := a client wants t, or a dependent of t is waiting/queued/processing ("active").
//  - every record has a wanter or a dependent; otherwise it is forgotten.
//  - active and memory tasks are needed; released tasks are not.
//  - queued and processing tasks have every dependency in memory; a waiting task counts its
//    dependencies not in memory (n_waiting > 0), each of which is active itself.
//  - a task has holders iff it is in memory; a task is in its worker's processing list iff it
//    is processing.
#include <plexus/scheduler/scheduler_state.hpp>

// Inlined: keys are short and hashed once or twice per event.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace plexus::sched {

const char* to_string(TaskState s) {
  switch (s) {
    case TaskState::released:
      return "released";
    case TaskState::waiting:
      return "waiting";
    case TaskState::queued:
      return "queued";
    case TaskState::processing:
      return "processing";
    case TaskState::memory:
      return "memory";
    case TaskState::erred:
      return "erred";
  }
  return "?";
}

namespace {

using Index = std::uint32_t;
using TaskId = Index;
constexpr Index kNone = std::numeric_limits<Index>::max();

/// One end of a two-sided link: the other end's id, and where this link's mirror sits in the
/// other end's list.
struct Link {
  Index id;
  Index back;
};

/// A vector of trivially copyable values with room for N of them inline, aligned like T and
/// 4 + max(N * sizeof(T), 8) bytes in size: the size and the capacity (N << shift, shift 0 while
/// inline) share one word, and the heap pointer is stored unaligned. A Task holds four of them.
template <class T, std::uint32_t N>
class SmallVec {
  static_assert(std::is_trivially_copyable_v<T> && N >= 1);

 public:
  /// The most entries a list may hold (growing beyond throws std::length_error, as std::vector
  /// does beyond max_size()); far past what a scheduler's memory holds in tasks.
  static constexpr std::uint32_t kMaxCapacity = std::uint32_t{1} << 26;

  SmallVec() noexcept {}
  ~SmallVec() { release(); }
  SmallVec(const SmallVec&) = delete;
  SmallVec& operator=(const SmallVec&) = delete;
  SmallVec(SmallVec&& other) noexcept { steal(other); }
  SmallVec& operator=(SmallVec&& other) noexcept {
    if (this != &other) {
      release();
      steal(other);
    }
    return *this;
  }

  std::uint32_t size() const { return bits_ & kSizeMask; }
  bool empty() const { return size() == 0; }
  T* begin() { return data(); }
  T* end() { return data() + size(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }
  T& operator[](std::uint32_t i) { return data()[i]; }
  const T& operator[](std::uint32_t i) const { return data()[i]; }
  T& back() { return data()[size() - 1]; }
  void push_back(T value) {  // by value: `value` may live in this vector
    const std::uint32_t n = size();
    if (n == capacity()) grow();
    data()[n] = value;
    ++bits_;
  }
  void pop_back() { --bits_; }  // the size is non-zero, so this never borrows from the shift
  /// Empties the vector and gives back any heap storage.
  void release() {
    if (on_heap()) ::operator delete(heap());
    bits_ = 0;
  }

 private:
  static constexpr std::uint32_t kShiftAt = 27;  // sizes up to kMaxCapacity need 27 bits
  static constexpr std::uint32_t kSizeMask = (std::uint32_t{1} << kShiftAt) - 1;
  static_assert(kMaxCapacity <= kSizeMask);

  bool on_heap() const { return bits_ > kSizeMask; }
  std::uint32_t capacity() const { return N << (bits_ >> kShiftAt); }
  T* heap() const {
    T* p;
    std::memcpy(&p, heap_, sizeof p);
    return p;
  }
  T* data() { return on_heap() ? heap() : inline_; }
  const T* data() const { return on_heap() ? heap() : inline_; }
  void grow() {
    const std::uint32_t shift = (bits_ >> kShiftAt) + 1;
    if (std::uint64_t{N} << shift > kMaxCapacity) throw std::length_error("SmallVec too long");
    const std::uint32_t n = size();
    T* p = static_cast<T*>(::operator new(sizeof(T) * (std::size_t{N} << shift)));
    std::memcpy(p, data(), sizeof(T) * n);
    if (on_heap()) ::operator delete(heap());
    std::memcpy(heap_, &p, sizeof p);
    bits_ = (shift << kShiftAt) | n;
  }
  void steal(SmallVec& other) {
    bits_ = other.bits_;
    if (on_heap()) {
      std::memcpy(heap_, other.heap_, sizeof heap_);
    } else {
      std::memcpy(inline_, other.inline_, sizeof(T) * size());
    }
    other.bits_ = 0;
  }

  union {
    T inline_[N];
    unsigned char heap_[sizeof(T*)];  // a T*, unaligned so the vector is aligned like T
  };
  std::uint32_t bits_ = 0;  // size | log2(capacity / N) << kShiftAt
};
static_assert(sizeof(SmallVec<Link, 1>) == 12 && sizeof(SmallVec<Link, 2>) == 20);

template <class List>
Index list_size(const List& list) {
  return static_cast<Index>(list.size());
}

/// Links a and b: appends to list_of_a(a) and list_of_b(b), each pointing at the other.
template <class ListOfA, class ListOfB>
void add_link(ListOfA list_of_a, Index a, ListOfB list_of_b, Index b) {
  auto& la = list_of_a(a);
  auto& lb = list_of_b(b);
  la.push_back(Link{b, list_size(lb)});
  lb.push_back(Link{a, list_size(la) - 1});
}

/// Removes link i of list_of_a(a) and its mirror, by swap-remove on both sides.
template <class ListOfA, class ListOfB>
void remove_link(ListOfA list_of_a, Index a, Index i, ListOfB list_of_b) {
  auto& la = list_of_a(a);
  const Link l = la[i];
  auto& lb = list_of_b(l.id);
  const Index j = l.back;
  const Index jl = list_size(lb) - 1;
  if (j != jl) {
    lb[j] = lb[jl];
    list_of_a(lb[j].id)[lb[j].back].back = j;
  }
  lb.pop_back();
  const Index il = list_size(la) - 1;
  if (i != il) {
    la[i] = la[il];
    list_of_b(la[i].id)[la[i].back].back = i;
  }
  la.pop_back();
}

/// A task's key and encoded arguments in one heap block ([key][args], no terminators): one
/// allocation per task instead of two, and 16 bytes in the record instead of two std::strings.
/// Lengths fit 32 bits: a task arrives in one wire message, and FlatBuffers are below 2 GiB.
class TaskText {
 public:
  TaskText() noexcept = default;
  TaskText(std::string_view key, std::string_view args)
      : key_len_(static_cast<std::uint32_t>(key.size())),
        args_len_(static_cast<std::uint32_t>(args.size())) {
    const std::size_t n = key.size() + args.size();
    if (n == 0) return;
    data_ = std::make_unique_for_overwrite<char[]>(n);
    if (!key.empty()) std::memcpy(data_.get(), key.data(), key.size());
    if (!args.empty()) std::memcpy(data_.get() + key.size(), args.data(), args.size());
  }
  TaskText(TaskText&& other) noexcept
      : data_(std::move(other.data_)),
        key_len_(std::exchange(other.key_len_, 0)),
        args_len_(std::exchange(other.args_len_, 0)) {}
  TaskText& operator=(TaskText&& other) noexcept {
    data_ = std::move(other.data_);
    key_len_ = std::exchange(other.key_len_, 0);
    args_len_ = std::exchange(other.args_len_, 0);
    return *this;
  }

  std::string_view key() const { return {data_.get(), key_len_}; }
  std::string_view args() const { return {data_.get() + key_len_, args_len_}; }
  /// Frees the block.
  void reset() { *this = TaskText(); }

 private:
  std::unique_ptr<char[]> data_;
  std::uint32_t key_len_ = 0;
  std::uint32_t args_len_ = 0;
};

/// Where a processing task runs.
struct RunSlot {
  Index worker;
  Index pos;  // index in that worker's processing list
};

// Hot fields first: a transition mostly reads the first cache line. Data that a task needs in one
// state only lives elsewhere when that state is rare (the error of an erred task in
// Impl::errors, the expected duration of a processing task in its worker's processing list), and
// shares one slot with the other states' data otherwise: a field of the slot is written on
// entering its state and read only in that state.
struct Task {
  TaskState state = TaskState::released;
  bool alive : 1 = false;
  bool restricted : 1 = false;  // has an entry in Impl::restrictions
  std::uint16_t retries = 0;  // saturated at 65535 (TaskSpec::retries is wider than needed)
  std::int32_t priority = 0;
  std::uint32_t active_dependents = 0;  // dependents waiting, queued or processing
  Index name = 0;
  union {
    std::uint64_t nbytes = 0;  // memory: size of the result
    std::uint32_t n_waiting;   // waiting: dependencies not in memory
    RunSlot run;               // processing
  };
  std::uint64_t seq = 0;         // submission order
  SmallVec<Link, 1> wanted_by;   // {client, index in its wants}
  SmallVec<Link, 2> deps;        // {dependency, index in its dependents}, in spec order
  SmallVec<Link, 1> dependents;  // {dependent, index in its deps}
  SmallVec<Link, 1> holders;     // {worker, index in its has_what}; non-empty iff memory
  TaskText text;                 // key and args
};
// 104 bytes (was 208 with two std::strings, a shared_ptr error, est_ns, 16-byte lists and a field
// per state): the per-pending-task memory that plexus-bench --scenario sched_memory measures is
// mostly this record and its text block.
static_assert(sizeof(Task) == 104, "Task grew: check field order and padding");

/// Task records in fixed chunks: stable addresses and cheap indexing (a std::deque of records
/// this size holds two per block and divides on every access).
class TaskStore {
 public:
  Task& operator[](Index i) { return chunks_[i >> kShift][i & kMask]; }
  const Task& operator[](Index i) const { return chunks_[i >> kShift][i & kMask]; }
  Index size() const { return size_; }
  /// Appends a default record; returns its id.
  Index emplace_back() {
    if ((size_ & kMask) == 0) chunks_.push_back(std::make_unique<Task[]>(kChunk));
    return size_++;
  }

 private:
  static constexpr Index kShift = 8;
  static constexpr Index kChunk = Index{1} << kShift;
  static constexpr Index kMask = kChunk - 1;
  std::vector<std::unique_ptr<Task[]>> chunks_;
  Index size_ = 0;
};

/// A task processing on a worker, and the expected duration charged to the worker for it.
struct Running {
  TaskId id;
  bool steal_pending = false;  // asked back from the worker; its answer has not come yet
  std::int64_t est_ns;
};

/// Where a task may run, when its submitter said so (rare: kept beside the task, not in it).
/// Tasks submitted together with equal restrictions share one.
struct Restriction {
  std::vector<std::string> workers;  // names or data addresses; empty: any
  bool loose = false;                // allow_other_workers: any worker when none of them is here
  std::vector<std::pair<Index, double>> resources;  // {resource id, amount held while running}
  bool operator==(const Restriction&) const = default;
};
using RestrictionPtr = std::shared_ptr<const Restriction>;

struct Worker {
  PeerId peer = 0;
  std::string name;
  std::string address;
  std::uint32_t nthreads = 1;
  bool alive = false;
  bool closing = false;  // handed work back: gets no new tasks
  bool paused = false;   // over its memory pause threshold: gets no new tasks until it resumes
  bool touched = false;  // placement scratch
  double last_seen = 0;
  std::vector<Running> processing;  // Task::run.pos indexes this
  std::vector<Link> has_what;       // {task, index in its holders}
  std::int64_t occupancy_ns = 0;    // sum of est_ns of its processing list
  double start_s = 0;               // occupancy per thread, seconds
  std::uint32_t min_tasks = 1;      // ceil(worker_saturation * nthreads), capped
  std::uint32_t max_tasks = 1;      // max_tasks_per_worker
  std::int64_t target_ns = 0;       // queue_target_s * nthreads
  Index heap_pos = kNone;  // in the placement heap iff alive, not closing or paused, unsaturated
  std::uint64_t acc_bytes = 0;      // placement scratch
  double bandwidth = 0;             // measured by the worker (bytes/s); 0: not yet
  // Resources by id (Impl::resource_names): offered, and not held by its processing tasks.
  std::vector<double> resources_total;
  std::vector<double> resources_free;
};

struct Client {
  PeerId peer = 0;
  std::string name;
  std::vector<Link> wants;  // {task, index in its wanted_by}
  bool alive = false;
};

struct NameInfo {
  std::string name;
  double duration_s = 0;
  bool measured = false;
};

struct ReadyEntry {
  std::int32_t priority;
  TaskId id;
  std::uint64_t seq;
};

/// Heap order: the entry to run first is the greatest.
struct ReadyLess {
  bool operator()(const ReadyEntry& a, const ReadyEntry& b) const {
    if (a.priority != b.priority) return a.priority < b.priority;
    return a.seq > b.seq;
  }
};

/// Ready restricted tasks that no unsaturated worker could take, grouped by restriction so that
/// one failed check answers for the whole group; each group is a heap in ReadyLess order.
struct HeldGroup {
  RestrictionPtr restriction;
  std::vector<ReadyEntry> heap;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

/// Open-addressing (linear probing, backward-shift deletion) map from key to task id. Keys are
/// not stored: `key_of(id)` reads them from the task records.
class KeyIndex {
 public:
  KeyIndex() : slots_(16) {}

  static std::uint32_t hash(std::string_view key) {
    return static_cast<std::uint32_t>(XXH3_64bits(key.data(), key.size()));
  }

  template <class KeyOf>
  Index find(std::string_view key, KeyOf key_of) const {
    return find(key, hash(key), key_of);
  }

  /// `h` is hash(key).
  template <class KeyOf>
  Index find(std::string_view key, std::uint32_t h, KeyOf key_of) const {
    for (std::size_t i = h & mask();; i = (i + 1) & mask()) {
      const Slot& s = slots_[i];
      if (s.id == kNone) return kNone;
      if (s.hash == h && key_of(s.id) == key) return s.id;
    }
  }

  /// The key (with hash `h`) must not be present.
  void insert(std::uint32_t h, Index id) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    place(Slot{id, h});
    ++size_;
  }

  template <class KeyOf>
  void erase(std::string_view key, KeyOf key_of) {
    const std::uint32_t h = hash(key);
    std::size_t i = h & mask();
    for (;; i = (i + 1) & mask()) {
      const Slot& s = slots_[i];
      if (s.id == kNone) return;
      if (s.hash == h && key_of(s.id) == key) break;
    }
    // Backward shift: pull later entries of the probe run into the gap where they may live.
    for (std::size_t j = (i + 1) & mask();; j = (j + 1) & mask()) {
      if (slots_[j].id == kNone) break;
      const std::size_t home = slots_[j].hash & mask();
      if (((j - home) & mask()) >= ((j - i) & mask())) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
    --size_;
  }

  std::size_t size() const { return size_; }

 private:
  struct Slot {
    Index id = kNone;
    std::uint32_t hash = 0;
  };
  std::size_t mask() const { return slots_.size() - 1; }
  void place(Slot s) {
    std::size_t i = s.hash & mask();
    while (slots_[i].id != kNone) i = (i + 1) & mask();
    slots_[i] = s;
  }
  void rehash(std::size_t n) {
    std::vector<Slot> old(n);
    old.swap(slots_);
    for (const Slot& s : old) {
      if (s.id != kNone) place(s);
    }
  }

  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

bool is_active(TaskState s) {
  return s == TaskState::waiting || s == TaskState::queued || s == TaskState::processing;
}

std::int64_t to_ns(double seconds) {
  if (!(seconds > 0)) return 0;
  if (seconds > 1e9) return std::int64_t{1} << 62;
  return std::llround(seconds * 1e9);
}

}  // namespace

struct SchedulerState::Impl {
  Impl(SchedulerOptions o, SchedulerOutbox& ob) : opt(o), out(ob) { update_bandwidth(); }

  SchedulerOptions opt;
  SchedulerOutbox& out;
  SchedulerCounters counters;

  TaskStore tasks;
  // Forgotten ids, smallest first (a min-heap): new tasks fill the lowest free slots, so a batch
  // gets mostly ascending, dense ids and the records stay compact in memory.
  std::vector<TaskId> free_tasks;
  KeyIndex keys;
  std::uint64_t next_seq = 0;

  std::vector<NameInfo> names;
  std::unordered_map<std::string, Index, StringHash, std::equal_to<>> name_index;
  Index last_name = kNone;

  std::vector<Worker> workers;
  std::vector<Index> free_workers;
  std::unordered_map<PeerId, Index> worker_index;
  std::unordered_set<PeerId> timed_out;  // removed for silence; told to shut down if heard again
  std::vector<Index> worker_heap;        // unsaturated running workers, earliest start first

  // Bytes/s for transfer-time estimates: the mean of the workers' measurements, or the option.
  double bandwidth = 0;

  /// After a worker's measurement came or went.
  void update_bandwidth() {
    double sum = 0;
    std::size_t n = 0;
    for (const auto& [peer, wi] : worker_index) {
      if (workers[wi].bandwidth > 0) {
        sum += workers[wi].bandwidth;
        ++n;
      }
    }
    const double fallback = opt.bandwidth_bytes_per_s > 0 ? opt.bandwidth_bytes_per_s : 1e300;
    bandwidth = n > 0 ? sum / static_cast<double>(n) : fallback;
  }

  std::vector<Client> clients;
  std::vector<Index> free_clients;
  std::unordered_map<PeerId, Index> client_index;

  std::vector<ReadyEntry> ready;  // lazy deletion: an entry is live iff its task is queued
  std::size_t queued = 0;
  // Suspects (see suspect_free_worker) taken from `ready` while every worker had one; a heap in
  // the same order. A queued task's live entry is in `ready` or here. Empty unless workers died.
  std::vector<ReadyEntry> parked;
  // Restricted tasks (Task::restricted) and the ready ones among them no worker could take yet.
  // A queued restricted task's live entry is in `ready` or `held`.
  std::unordered_map<TaskId, RestrictionPtr> restrictions;
  std::vector<HeldGroup> held;
  std::vector<std::string> resource_names;  // resource id -> name
  std::unordered_map<std::string, Index, StringHash, std::equal_to<>> resource_index;

  // Workers each task was running on when they died (suspicious deaths); rare.
  std::unordered_map<TaskId, std::vector<std::string>> died_on;
  // The last crash report naming the task (it crashed its worker); rare.
  std::unordered_map<TaskId, std::string> crash_reports;
  // Published datasets: name -> keys, and how many datasets hold each key (the datasets
  // pseudo-client wants a key while this is non-zero).
  std::map<std::string, std::vector<std::string>, std::less<>> datasets;
  std::unordered_map<std::string, std::uint32_t> dataset_refs;
  // The fire-and-forget pseudo-client once there is one (it never leaves): looked up on every
  // finished task, so kept here rather than found in client_index.
  Index fire_and_forget_client = kNone;
  // The error of every erred task (and of no other); an erred chain shares one ErrorInfo.
  std::unordered_map<TaskId, std::shared_ptr<const ErrorInfo>> errors;

  // Scratch, kept to reuse capacity.
  std::vector<TaskId> release_work;  // tasks whose need may have dropped
  std::vector<TaskId> recompute_stack;
  std::vector<TaskId> err_stack;
  std::vector<Index> touched;
  std::vector<TaskId> scratch_ids;
  std::vector<TaskId> provisional;  // on_submit: new unwanted tasks held until the batch is in
  std::vector<TaskId> confirmed;    // on_submit: of those, the ones a later spec wants
  ComputeRequest request;
  std::vector<DepLocation> spare_deps;
  std::vector<std::string_view> report_holders;

  // ---- accessors for the link helpers ----
  auto deps_of() {
    return [this](Index i) -> SmallVec<Link, 2>& { return tasks[i].deps; };
  }
  auto dependents_of() {
    return [this](Index i) -> SmallVec<Link, 1>& { return tasks[i].dependents; };
  }
  auto holders_of() {
    return [this](Index i) -> SmallVec<Link, 1>& { return tasks[i].holders; };
  }
  auto has_what_of() {
    return [this](Index i) -> std::vector<Link>& { return workers[i].has_what; };
  }
  auto wanted_by_of() {
    return [this](Index i) -> SmallVec<Link, 1>& { return tasks[i].wanted_by; };
  }
  auto wants_of() {
    return [this](Index i) -> std::vector<Link>& { return clients[i].wants; };
  }
  auto key_of() const {
    return [this](Index i) -> std::string_view { return tasks[i].text.key(); };
  }

  TaskId find_task(std::string_view key) const { return keys.find(key, key_of()); }
  Index find_worker(PeerId peer) const {
    auto it = worker_index.find(peer);
    return it == worker_index.end() ? kNone : it->second;
  }
  Index find_client(PeerId peer) const {
    auto it = client_index.find(peer);
    return it == client_index.end() ? kNone : it->second;
  }
  static bool needed(const Task& t) { return !t.wanted_by.empty() || t.active_dependents > 0; }
  /// The error of an erred task.
  const std::shared_ptr<const ErrorInfo>& error_of(TaskId id) const { return errors.at(id); }

  // ---- records ----

  Index intern_name(std::string_view name) {
    // Graphs come in runs of the same function.
    if (last_name < names.size() && names[last_name].name == name) return last_name;
    auto it = name_index.find(name);
    if (it != name_index.end()) return last_name = it->second;
    const auto id = last_name = static_cast<Index>(names.size());
    names.push_back(NameInfo{std::string(name), 0, false});
    name_index.emplace(std::string(name), id);
    return id;
  }

  double expected_duration(Index name) const {
    const NameInfo& n = names[name];
    return n.measured ? n.duration_s : opt.default_task_duration_s;
  }

  Index intern_resource(std::string_view name) {
    auto it = resource_index.find(name);
    if (it != resource_index.end()) return it->second;
    const auto id = static_cast<Index>(resource_names.size());
    resource_names.emplace_back(name);
    resource_index.emplace(std::string(name), id);
    return id;
  }

  /// The restriction of a submitted task, or null if it has none; equal to `last` (the previous
  /// one of the same submission) means shared with it.
  RestrictionPtr make_restriction(const TaskSpecView& spec, const RestrictionPtr& last) {
    if (spec.workers.empty() && spec.resources.empty()) return nullptr;
    Restriction r;
    r.workers.assign(spec.workers.begin(), spec.workers.end());
    r.loose = spec.allow_other_workers && !spec.workers.empty();
    for (const ResourceView& res : spec.resources) {
      if (!(res.amount > 0)) continue;  // holding nothing restricts nothing
      const Index rid = intern_resource(res.name);
      auto same = std::find_if(r.resources.begin(), r.resources.end(),
                               [rid](const auto& p) { return p.first == rid; });
      if (same == r.resources.end()) {
        r.resources.emplace_back(rid, res.amount);
      } else {
        same->second += res.amount;
      }
    }
    std::sort(r.resources.begin(), r.resources.end());
    if (r.workers.empty() && r.resources.empty()) return nullptr;
    if (last && *last == r) return last;
    return std::make_shared<const Restriction>(std::move(r));
  }

  const Restriction& restriction_of(TaskId id) const { return *restrictions.at(id); }

  /// `key_hash` is KeyIndex::hash(spec.key); the key must be new.
  TaskId new_task(const TaskSpecView& spec, std::uint32_t key_hash) {
    TaskId id;
    if (!free_tasks.empty()) {
      std::pop_heap(free_tasks.begin(), free_tasks.end(), std::greater<>{});
      id = free_tasks.back();
      free_tasks.pop_back();
    } else {
      id = tasks.emplace_back();
    }
    Task& t = tasks[id];
    t.text = TaskText(spec.key, spec.args);
    t.name = intern_name(spec.name);
    t.retries = static_cast<std::uint16_t>(
        std::min<std::uint32_t>(spec.retries, std::numeric_limits<std::uint16_t>::max()));
    t.priority = spec.priority;
    t.seq = next_seq++;
    t.nbytes = 0;
    t.active_dependents = 0;
    t.state = TaskState::released;
    t.alive = true;
    keys.insert(key_hash, id);
    ++counters.transitions;
    return id;
  }

  /// Precondition: no wanters, no dependents, not active, no holders.
  void forget(TaskId id) {
    Task& t = tasks[id];
    while (!t.deps.empty()) {
      const Index d = t.deps.back().id;
      remove_link(deps_of(), id, t.deps.size() - 1, dependents_of());
      release_work.push_back(d);
    }
    keys.erase(t.text.key(), key_of());
    died_on.erase(id);
    crash_reports.erase(id);
    if (t.restricted) {
      restrictions.erase(id);
      t.restricted = false;
    }
    if (!scattered.empty()) scattered.erase(id);
    if (t.state == TaskState::erred) errors.erase(id);
    t.text.reset();
    t.deps.release();
    t.dependents.release();
    t.holders.release();
    t.wanted_by.release();
    t.alive = false;
    free_tasks.push_back(id);
    std::push_heap(free_tasks.begin(), free_tasks.end(), std::greater<>{});
    ++counters.transitions;
  }

  Index ensure_client(PeerId peer, std::string_view name) {
    Index c = find_client(peer);
    if (c != kNone) return c;
    if (!free_clients.empty()) {
      c = free_clients.back();
      free_clients.pop_back();
    } else {
      c = static_cast<Index>(clients.size());
      clients.emplace_back();
    }
    Client& cl = clients[c];
    cl.peer = peer;
    cl.name = name;
    cl.wants.clear();
    cl.alive = true;
    client_index.emplace(peer, c);
    return c;
  }

  // ---- state changes ----

  void set_state(TaskId id, TaskState s) {
    Task& t = tasks[id];
    const TaskState old = t.state;
    if (old == TaskState::erred && s != TaskState::erred) errors.erase(id);
    if (old == TaskState::queued) --queued;
    if (s == TaskState::queued) ++queued;
    t.state = s;
    ++counters.transitions;
    const bool was = is_active(old);
    const bool now = is_active(s);
    if (was == now) return;
    for (const Link& l : t.deps) {
      Task& d = tasks[l.id];
      if (now) {
        ++d.active_dependents;
      } else if (--d.active_dependents == 0) {
        release_work.push_back(l.id);
      }
    }
  }

  std::uint32_t count_missing(const Task& t) const {
    std::uint32_t n = 0;
    for (const Link& l : t.deps) n += tasks[l.id].state != TaskState::memory;
    return n;
  }

  void make_ready(TaskId id) {
    set_state(id, TaskState::queued);
    const Task& t = tasks[id];
    ready.push_back(ReadyEntry{t.priority, id, t.seq});
    std::push_heap(ready.begin(), ready.end(), ReadyLess{});
  }

  /// Brings a released task that is needed back to work (waiting or ready), and recursively the
  /// released dependencies it then needs; a task with an erred dependency errs instead.
  void compute_released(TaskId root, bool after_loss) {
    recompute_stack.push_back(root);
    while (!recompute_stack.empty()) {
      const TaskId id = recompute_stack.back();
      recompute_stack.pop_back();
      Task& t = tasks[id];
      if (!t.alive || t.state != TaskState::released || !needed(t)) continue;
      if (is_scattered_task(id)) {  // no lineage: it cannot be computed
        set_erred(id, scattered_lost(id, "after it was released (no future held it)"));
        continue;
      }
      if (after_loss) ++counters.tasks_recomputed;
      std::shared_ptr<const ErrorInfo> err;
      for (const Link& l : t.deps) {
        if (tasks[l.id].state == TaskState::erred) {
          err = error_of(l.id);
          break;
        }
      }
      if (err) {
        set_erred(id, std::move(err));
        continue;
      }
      const std::uint32_t n = count_missing(t);
      if (n == 0) {
        make_ready(id);
        continue;
      }
      set_state(id, TaskState::waiting);
      t.n_waiting = n;
      for (const Link& l : t.deps) {
        if (tasks[l.id].state == TaskState::released) recompute_stack.push_back(l.id);
      }
    }
  }

  /// Errs the task (released, waiting or queued; detached from any worker) and, transitively,
  /// its waiting dependents, reporting to every wanter.
  void set_erred(TaskId root, std::shared_ptr<const ErrorInfo> err) {
    err_stack.push_back(root);
    while (!err_stack.empty()) {
      const TaskId id = err_stack.back();
      err_stack.pop_back();
      Task& t = tasks[id];
      if (!t.alive || t.state == TaskState::erred) continue;
      set_state(id, TaskState::erred);
      errors.insert_or_assign(id, err);
      KeyReport r;
      r.key = t.text.key();
      r.status = KeyStatus::erred;
      r.error = err.get();
      for (const Link& w : t.wanted_by) out.report(clients[w.id].peer, r);
      finish_fire_and_forget(id);
      for (const Link& l : t.dependents) {
        if (tasks[l.id].state == TaskState::waiting) err_stack.push_back(l.id);
      }
    }
  }

  /// A memory task lost its last holder: it becomes released and its dependents that counted on
  /// it wait again (pulled back from their workers when processing).
  void leave_memory(TaskId id, bool after_loss) {
    set_state(id, TaskState::released);
    Task& t = tasks[id];
    for (const Link& l : t.dependents) {
      Task& d = tasks[l.id];
      switch (d.state) {
        case TaskState::waiting:
          ++d.n_waiting;
          break;
        case TaskState::processing:
          out.free_key(workers[d.run.worker].peer, d.text.key());
          detach(l.id);
          if (after_loss) ++counters.tasks_recomputed;
          [[fallthrough]];
        case TaskState::queued:
          set_state(l.id, TaskState::waiting);
          d.n_waiting = count_missing(d);
          break;
        default:
          break;
      }
    }
  }

  /// Gives back what a task that nobody needs holds (data, a worker slot), and forgets the
  /// record when nothing refers to it.
  void maybe_release(TaskId id) {
    Task& t = tasks[id];
    if (needed(t)) return;
    switch (t.state) {
      case TaskState::memory:
        while (!t.holders.empty()) {
          out.free_key(workers[t.holders.back().id].peer, t.text.key());
          remove_link(holders_of(), id, t.holders.size() - 1, has_what_of());
        }
        set_state(id, TaskState::released);
        break;
      case TaskState::processing:
        out.free_key(workers[t.run.worker].peer, t.text.key());
        detach(id);
        set_state(id, TaskState::released);
        break;
      case TaskState::waiting:
      case TaskState::queued:
        set_state(id, TaskState::released);
        break;
      case TaskState::released:
      case TaskState::erred:
        break;
    }
    if (t.wanted_by.empty() && t.dependents.empty()) forget(id);
  }

  void drain_releases() {
    // Nothing creates tasks while draining, so a dead id stays dead.
    while (!release_work.empty()) {
      const TaskId id = release_work.back();
      release_work.pop_back();
      if (tasks[id].alive) maybe_release(id);
    }
  }

  // ---- clients' wants ----

  void report_memory(TaskId id, PeerId client, std::optional<std::string_view> inline_data) {
    const Task& t = tasks[id];
    report_holders.clear();
    for (const Link& h : t.holders) report_holders.push_back(workers[h.id].address);
    KeyReport r;
    r.key = t.text.key();
    r.status = KeyStatus::memory;
    r.nbytes = t.nbytes;
    r.inline_data = inline_data;
    r.holders = std::move(report_holders);
    out.report(client, r);
    report_holders = std::move(r.holders);
  }

  /// A fire-and-forget task is done (memory or erred): the scheduler's own want of it goes.
  void finish_fire_and_forget(TaskId id) {
    if (fire_and_forget_client != kNone) unwant(fire_and_forget_client, id);
  }

  /// Client `c` no longer wants task `id` (if it did); the task is then checked for release.
  void unwant(Index c, TaskId id) {
    const Task& t = tasks[id];
    for (Index i = 0; i < t.wanted_by.size(); ++i) {
      if (t.wanted_by[i].id == c) {
        remove_link(wanted_by_of(), id, i, wants_of());
        release_work.push_back(id);
        return;
      }
    }
  }

  /// Client c wants an existing task: add the want (once), tell it at once what is known, and
  /// bring a released task back.
  void want(Index c, TaskId id) {
    Task& t = tasks[id];
    bool has = false;
    for (const Link& w : t.wanted_by) has = has || w.id == c;
    if (!has) add_link(wanted_by_of(), id, wants_of(), c);
    switch (t.state) {
      case TaskState::memory:
        report_memory(id, clients[c].peer, std::nullopt);
        break;
      case TaskState::erred: {
        KeyReport r;
        r.key = t.text.key();
        r.status = KeyStatus::erred;
        r.error = error_of(id).get();
        out.report(clients[c].peer, r);
        break;
      }
      case TaskState::released:
        compute_released(id, false);
        break;
      default:
        break;
    }
  }

  // ---- workers ----

  bool saturated(const Worker& w) const {
    const auto n = static_cast<std::uint32_t>(w.processing.size());
    return n >= w.max_tasks || (n >= w.min_tasks && w.occupancy_ns >= w.target_ns);
  }

  bool heap_less(Index a, Index b) const {
    const Worker& wa = workers[a];
    const Worker& wb = workers[b];
    if (wa.start_s != wb.start_s) return wa.start_s < wb.start_s;
    if (wa.processing.size() != wb.processing.size()) {
      return wa.processing.size() < wb.processing.size();
    }
    return wa.peer < wb.peer;
  }
  void heap_set(std::size_t i, Index w) {
    worker_heap[i] = w;
    workers[w].heap_pos = static_cast<Index>(i);
  }
  void heap_up(std::size_t i) {
    const Index w = worker_heap[i];
    while (i > 0) {
      const std::size_t p = (i - 1) / 2;
      if (!heap_less(w, worker_heap[p])) break;
      heap_set(i, worker_heap[p]);
      i = p;
    }
    heap_set(i, w);
  }
  void heap_down(std::size_t i) {
    const Index w = worker_heap[i];
    const std::size_t n = worker_heap.size();
    for (;;) {
      std::size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && heap_less(worker_heap[c + 1], worker_heap[c])) ++c;
      if (!heap_less(worker_heap[c], w)) break;
      heap_set(i, worker_heap[c]);
      i = c;
    }
    heap_set(i, w);
  }
  void heap_remove(Index w) {
    const std::size_t i = workers[w].heap_pos;
    workers[w].heap_pos = kNone;
    const Index last = worker_heap.back();
    worker_heap.pop_back();
    if (i == worker_heap.size()) return;
    heap_set(i, last);
    heap_up(i);
    heap_down(workers[last].heap_pos);
  }

  /// After a worker's load changed: recompute its start estimate and heap membership.
  void refresh_worker(Index wi) {
    Worker& w = workers[wi];
    w.start_s = static_cast<double>(w.occupancy_ns) / 1e9 / w.nthreads;
    const bool in = w.alive && !w.closing && !w.paused && !saturated(w);
    if (in && w.heap_pos == kNone) {
      worker_heap.push_back(wi);
      w.heap_pos = static_cast<Index>(worker_heap.size() - 1);
      heap_up(w.heap_pos);
    } else if (!in && w.heap_pos != kNone) {
      heap_remove(wi);
    } else if (in) {
      heap_up(w.heap_pos);
      heap_down(w.heap_pos);
    }
  }

  void assign(TaskId id, Index wi) {
    Task& t = tasks[id];
    Worker& w = workers[wi];
    const std::int64_t est_ns = to_ns(expected_duration(t.name));
    t.run = RunSlot{wi, static_cast<Index>(w.processing.size())};
    w.processing.push_back(Running{id, false, est_ns});
    w.occupancy_ns += est_ns;
    if (t.restricted) hold_resources(w, restriction_of(id), -1);
    refresh_worker(wi);
  }

  /// Takes (sign -1) or gives back (+1) the resources a task holds while it runs on `w`.
  static void hold_resources(Worker& w, const Restriction& r, double sign) {
    for (const auto& [rid, amount] : r.resources) {
      if (rid < w.resources_free.size()) w.resources_free[rid] += sign * amount;
    }
  }

  void detach(TaskId id) {
    Task& t = tasks[id];
    const Index wi = t.run.worker;
    Worker& w = workers[wi];
    w.occupancy_ns -= w.processing[t.run.pos].est_ns;
    if (t.restricted) hold_resources(w, restriction_of(id), +1);
    const Running last = w.processing.back();
    w.processing[t.run.pos] = last;
    tasks[last.id].run.pos = t.run.pos;
    w.processing.pop_back();
    t.run.worker = kNone;  // the caller moves it to another state
    refresh_worker(wi);
  }

  /// The unsaturated worker with the earliest expected start for `id`: its queued work per
  /// thread plus the time to fetch the dependency bytes it lacks. Ties: lowest load, then PeerId.
  Index choose_worker(TaskId id) {
    const Task& t = tasks[id];
    Index best = worker_heap.front();
    if (t.deps.empty()) return best;
    std::uint64_t total = 0;
    for (const Link& l : t.deps) {
      const Task& d = tasks[l.id];
      total += d.nbytes;
      for (const Link& h : d.holders) {
        Worker& w = workers[h.id];
        if (!w.touched) {
          w.touched = true;
          touched.push_back(h.id);
        }
        w.acc_bytes += d.nbytes;
      }
    }
    const double bw = bandwidth;
    auto cost = [&](const Worker& w) {
      return w.start_s + static_cast<double>(total - w.acc_bytes) / bw;
    };
    double best_cost = cost(workers[best]);
    for (const Index wi : touched) {
      const Worker& w = workers[wi];
      if (w.heap_pos == kNone || wi == best) continue;
      const double c = cost(w);
      const Worker& b = workers[best];
      if (c < best_cost ||
          (c == best_cost && (w.processing.size() < b.processing.size() ||
                              (w.processing.size() == b.processing.size() && w.peer < b.peer)))) {
        best = wi;
        best_cost = c;
      }
    }
    for (const Index wi : touched) {
      workers[wi].touched = false;
      workers[wi].acc_bytes = 0;
    }
    touched.clear();
    return best;
  }

  static bool names_worker(const Restriction& r, const Worker& w) {
    return std::any_of(r.workers.begin(), r.workers.end(), [&w](const std::string& n) {
      return n == w.name || n == w.address;
    });
  }

  /// Whether `w` may run a task restricted by `r` now: allowed by name (or any worker, for loose
  /// restrictions none of whose workers is connected: `anywhere`) and with the resources free.
  static bool may_run(const Restriction& r, const Worker& w, bool anywhere) {
    if (!r.workers.empty() && !anywhere && !names_worker(r, w)) return false;
    for (const auto& [rid, amount] : r.resources) {
      // A small tolerance: amounts are sums and differences of doubles.
      if (rid >= w.resources_free.size() || w.resources_free[rid] < amount - 1e-9) return false;
    }
    return true;
  }

  /// The unsaturated worker allowed to run restricted task `id` now with the earliest expected
  /// start (queued work per thread plus fetching the dependency bytes it lacks), or kNone.
  Index restricted_worker(TaskId id, const Restriction& r) const {
    bool anywhere = false;
    if (r.loose) {
      anywhere = std::none_of(worker_index.begin(), worker_index.end(), [&](const auto& pw) {
        const Worker& w = workers[pw.second];
        return !w.closing && names_worker(r, w);
      });
    }
    const Task& t = tasks[id];
    const double bw = bandwidth;
    Index best = kNone;
    double best_cost = 0;
    for (const Index wi : worker_heap) {
      const Worker& w = workers[wi];
      if (!may_run(r, w, anywhere)) continue;
      std::uint64_t lacking = 0;
      for (const Link& l : t.deps) {
        const Task& d = tasks[l.id];
        const bool here = std::any_of(d.holders.begin(), d.holders.end(),
                                      [wi](const Link& h) { return h.id == wi; });
        if (!here) lacking += d.nbytes;
      }
      const double c = w.start_s + static_cast<double>(lacking) / bw;
      if (best == kNone || c < best_cost || (c == best_cost && heap_less(wi, best))) {
        best = wi;
        best_cost = c;
      }
    }
    return best;
  }

  /// Keeps a ready restricted task that no worker can take now, until place_held finds one.
  void hold(const ReadyEntry& e) {
    const RestrictionPtr& r = restrictions.at(e.id);
    auto g = std::find_if(held.begin(), held.end(),
                          [&r](const HeldGroup& h) { return h.restriction == r; });
    if (g == held.end()) g = held.insert(held.end(), HeldGroup{r, {}});
    g->heap.push_back(e);
    std::push_heap(g->heap.begin(), g->heap.end(), ReadyLess{});
  }

  /// Sends held restricted tasks, best first within each group, while a worker can take them.
  /// Groups are tried in turn (priorities are honoured within a group, not across groups).
  void place_held() {
    for (HeldGroup& g : held) {
      auto& heap = g.heap;
      while (!heap.empty() && !worker_heap.empty()) {
        const ReadyEntry e = heap.front();
        if (ready_live(e)) {
          const Index wi = restricted_worker(e.id, *g.restriction);
          if (wi == kNone) break;  // the group's best cannot run now: neither can the rest
          send(e.id, wi);
        }
        std::pop_heap(heap.begin(), heap.end(), ReadyLess{});
        heap.pop_back();
      }
    }
    std::erase_if(held, [](const HeldGroup& g) { return g.heap.empty(); });
  }

  void set_request_deps(std::size_t n) {
    auto& deps = request.deps;
    while (deps.size() > n) {
      spare_deps.push_back(std::move(deps.back()));
      deps.pop_back();
    }
    while (deps.size() < n) {
      if (spare_deps.empty()) {
        deps.emplace_back();
      } else {
        deps.push_back(std::move(spare_deps.back()));
        spare_deps.pop_back();
      }
    }
  }

  void send(TaskId id, Index wi) {
    set_state(id, TaskState::processing);
    assign(id, wi);
    ++counters.tasks_computed;
    const Task& t = tasks[id];
    request.key = t.text.key();
    request.name = names[t.name].name;
    request.args = t.text.args();
    request.priority = t.priority;
    set_request_deps(t.deps.size());
    for (std::uint32_t i = 0; i < t.deps.size(); ++i) {
      const Task& d = tasks[t.deps[i].id];
      DepLocation& loc = request.deps[i];
      loc.key = d.text.key();
      loc.nbytes = d.nbytes;
      loc.holders.clear();
      for (const Link& h : d.holders) loc.holders.push_back(workers[h.id].address);
    }
    out.compute(workers[wi].peer, request);
  }

  bool ready_live(const ReadyEntry& e) const {
    const Task& t = tasks[e.id];
    return t.alive && t.state == TaskState::queued && t.seq == e.seq;
  }

  /// Sends ready tasks, best first, while some worker is unsaturated.
  void schedule() {
    if (!parked.empty()) place_parked();
    if (!held.empty()) place_held();
    while (!worker_heap.empty()) {
      while (!ready.empty() && !ready_live(ready.front())) {
        std::pop_heap(ready.begin(), ready.end(), ReadyLess{});
        ready.pop_back();
      }
      if (ready.empty()) break;
      const ReadyEntry head = ready.front();
      std::pop_heap(ready.begin(), ready.end(), ReadyLess{});
      ready.pop_back();
      if (tasks[head.id].restricted) {  // rare: only some workers may run it
        const Index wi = restricted_worker(head.id, restriction_of(head.id));
        if (wi == kNone) {
          hold(head);
        } else {
          send(head.id, wi);
        }
        continue;
      }
      if (!died_on.empty() && died_on.count(head.id) > 0) {  // rare: see suspect_free_worker
        const Index wi = parked.empty() ? suspect_free_worker() : kNone;
        if (wi == kNone) {
          parked.push_back(head);
          std::push_heap(parked.begin(), parked.end(), ReadyLess{});
        } else {
          send(head.id, wi);
        }
        continue;
      }
      send(head.id, choose_worker(head.id));
    }
    if (ready.size() > 2 * queued + 1024) compact_ready();
  }

  /// A suspect is a task that was on a worker when it died (it has a died_on entry). Two suspects
  /// never share a worker: the tasks that happened to run beside a task that crashes its worker
  /// would otherwise follow it from worker to worker and fail with KilledWorker too. With one
  /// suspect per worker, a task is beside the crashing one at most once. Returns the unsaturated
  /// worker with the earliest start among those processing no suspect, or kNone.
  Index suspect_free_worker() const {
    Index best = kNone;
    for (const Index wi : worker_heap) {
      const Worker& w = workers[wi];
      if (best != kNone && !heap_less(wi, best)) continue;
      const bool clean = std::none_of(w.processing.begin(), w.processing.end(),
                                      [this](const Running& r) { return died_on.count(r.id) > 0; });
      if (clean) best = wi;
    }
    return best;
  }

  /// Sends parked suspects, best first, while some worker is free of suspects.
  void place_parked() {
    while (!parked.empty()) {
      const ReadyEntry e = parked.front();
      if (ready_live(e)) {
        const Index wi = suspect_free_worker();
        if (wi == kNone) return;
        send(e.id, wi);
      }
      std::pop_heap(parked.begin(), parked.end(), ReadyLess{});
      parked.pop_back();
    }
  }

  void compact_ready() {
    std::erase_if(ready, [this](const ReadyEntry& e) { return !ready_live(e); });
    // A task queued, pulled back and queued again has two identical live entries.
    std::sort(ready.begin(), ready.end(),
              [](const ReadyEntry& a, const ReadyEntry& b) { return a.id < b.id; });
    ready.erase(std::unique(ready.begin(), ready.end(),
                            [](const ReadyEntry& a, const ReadyEntry& b) { return a.id == b.id; }),
                ready.end());
    std::make_heap(ready.begin(), ready.end(), ReadyLess{});
  }

  /// Work stealing. A paused worker (memory) starts no new tasks, so everything it has not
  /// started is asked back as soon as another worker has room. Otherwise: idle threads get nothing from the scheduler's queue when it is empty (or
  /// holds only tasks they may not run), while another worker may still have a backlog assigned
  /// when estimates were lower, or before they joined. Asks each backlogged worker (expected work
  /// per thread above steal_min_backlog_s, more tasks than threads) to hand back its most
  /// recently assigned tasks that are worth moving: unrestricted, and whose dependencies take no
  /// longer to fetch than the task takes to run. Handed-back tasks are placed again like any
  /// ready task, so they land on the idle workers.
  void steal_work() {
    if (!opt.work_stealing || worker_index.size() < 2) return;
    std::size_t room = 0;  // tasks the idle workers would take
    for (const auto& [peer, wi] : worker_index) {
      const Worker& w = workers[wi];
      if (w.heap_pos == kNone || w.processing.size() >= w.nthreads) continue;
      room += std::max<std::size_t>(w.min_tasks, w.nthreads) - w.processing.size();
    }
    if (room == 0) return;
    std::vector<Index> victims;
    for (const auto& [peer, wi] : worker_index) {
      const Worker& w = workers[wi];
      // A paused worker starts nothing new: all it has not started is worth taking.
      const bool backlog = w.processing.size() > w.nthreads && w.start_s > opt.steal_min_backlog_s;
      if (backlog || (w.paused && !w.processing.empty())) victims.push_back(wi);
    }
    std::sort(victims.begin(), victims.end(), [this](Index a, Index b) {
      return workers[a].start_s > workers[b].start_s ||
             (workers[a].start_s == workers[b].start_s && workers[a].peer < workers[b].peer);
    });
    const double bw = bandwidth;
    constexpr std::size_t kMaxPerVictim = 1024;  // per call: the next call takes more
    std::vector<std::string_view> asked;
    for (const Index vi : victims) {
      if (room == 0) break;
      Worker& v = workers[vi];
      // At most half of what is beyond its threads (those it has not started), counting what
      // was asked already.
      const auto pending = static_cast<std::size_t>(std::count_if(
          v.processing.begin(), v.processing.end(), [](const Running& r) { return r.steal_pending; }));
      const std::size_t half = v.paused ? v.processing.size()
                                        : (v.processing.size() - v.nthreads + 1) / 2;
      if (half <= pending) continue;
      const std::size_t want = std::min({room, half - pending, kMaxPerVictim});
      asked.clear();
      for (std::size_t i = v.processing.size(); i-- > 0 && asked.size() < want;) {
        Running& r = v.processing[i];
        const Task& t = tasks[r.id];
        if (r.steal_pending || t.restricted || (!died_on.empty() && died_on.count(r.id) > 0)) {
          continue;
        }
        std::uint64_t bytes = 0;
        for (const Link& l : t.deps) bytes += tasks[l.id].nbytes;
        if (static_cast<double>(bytes) / bw > static_cast<double>(r.est_ns) / 1e9) continue;
        r.steal_pending = true;
        asked.push_back(t.text.key());
      }
      if (asked.empty()) continue;
      room -= asked.size();
      counters.steal_requests += asked.size();
      out.steal(v.peer, asked);
    }
  }

  /// Worker `wi` gave `key` back unstarted (a reject or a steal): if it is processing there, it
  /// is ready again, to be placed anew. Returns whether it was.
  bool hand_back(Index wi, std::string_view key) {
    const TaskId id = find_task(key);
    if (id == kNone) return false;
    const Task& t = tasks[id];
    if (t.state != TaskState::processing || t.run.worker != wi) return false;
    detach(id);
    make_ready(id);
    return true;
  }

  /// The live worker a report comes from; a worker removed for silence is told to shut down.
  Index reporting_worker(PeerId peer, double now) {
    const Index wi = find_worker(peer);
    if (wi != kNone) {
      workers[wi].last_seen = now;
      return wi;
    }
    if (timed_out.erase(peer) > 0) {
      out.shutdown_worker(peer, "removed by the scheduler: no heartbeat within worker_ttl");
    }
    return kNone;
  }

  /// Notes that task `id` was on worker `w` when it died of `cause`: "w1 (killed by signal
  /// SIGSEGV)", in the order of the deaths, for the KilledWorker message.
  void record_death(TaskId id, const Worker& w, std::string_view cause) {
    std::string& entry = died_on[id].emplace_back(w.name);
    entry.append(" (").append(cause).append(")");
  }

  /// "task K was running on 4 workers that died: w0 (killed by signal SIGSEGV), w1 (no
  /// heartbeat within worker-ttl), ... (allowed-failures = 3)", naming every death in order.
  std::shared_ptr<const ErrorInfo> killed_worker_error(TaskId id, const Worker& w) {
    auto e = std::make_shared<ErrorInfo>();
    e->kind = ErrorKind::killed_worker;
    e->type = "KilledWorker";
    const auto& deaths = died_on[id];
    e->message = "task " + std::string(tasks[id].text.key()) + " was running on " +
                 std::to_string(deaths.size()) + " workers that died:";
    for (std::size_t i = 0; i < deaths.size(); ++i) {
      e->message += (i == 0 ? " " : ", ") + deaths[i];
    }
    e->message += " (allowed-failures = " + std::to_string(opt.allowed_failures) + ")";
    e->worker = w.name;
    if (auto it = crash_reports.find(id); it != crash_reports.end()) e->traceback = it->second;
    return e;
  }

  /// Why a worker that left as `how` died, when nobody said: its nanny's report is passed in as
  /// `cause` instead.
  static std::string_view default_death_cause(WorkerExit how) {
    switch (how) {
      case WorkerExit::timed_out: return "no heartbeat within worker-ttl";
      case WorkerExit::lost: return "connection lost";
      case WorkerExit::graceful: break;
    }
    return "left";
  }

  void worker_left(Index wi, WorkerExit how, std::string_view cause = {},
                   std::string_view traceback = {}) {
    if (cause.empty()) cause = default_death_cause(how);
    Worker& w = workers[wi];
    if (!transfers.empty()) fail_transfers_to(w.peer);
    if (w.heap_pos != kNone) heap_remove(wi);
    w.alive = false;
    if (how == WorkerExit::timed_out) timed_out.insert(w.peer);

    // Its running tasks wait again (n_waiting counts the deps lost below).
    std::vector<TaskId> pulled;
    pulled.reserve(w.processing.size());
    for (const Running& r : w.processing) {
      pulled.push_back(r.id);
      set_state(r.id, TaskState::waiting);
      tasks[r.id].n_waiting = 0;
    }
    std::vector<Running>().swap(w.processing);
    w.occupancy_ns = 0;

    // Keys only it held are lost.
    std::vector<TaskId> lost;
    while (!w.has_what.empty()) {
      const TaskId id = w.has_what.back().id;
      remove_link(has_what_of(), wi, list_size(w.has_what) - 1, holders_of());
      if (tasks[id].holders.empty()) {
        leave_memory(id, true);
        lost.push_back(id);
      }
    }

    for (const TaskId id : pulled) {
      Task& t = tasks[id];
      if (!t.alive || t.state != TaskState::waiting) continue;
      if (how != WorkerExit::graceful) {
        record_death(id, w, cause);
        // The report names the task whose thread crashed: the culprit, not its bystanders.
        const std::string_view key = t.text.key();
        if (!traceback.empty() && traceback.find(" in task " + std::string(key) + " (") !=
                                      std::string_view::npos) {
          crash_reports.insert_or_assign(id, std::string(traceback));
        }
        if (died_on[id].size() > opt.allowed_failures) {
          set_erred(id, killed_worker_error(id, w));
          continue;
        }
      }
      ++counters.tasks_recomputed;
      if (t.n_waiting == 0) make_ready(id);
    }

    for (const TaskId id : lost) {
      const Task& t = tasks[id];
      if (!t.alive || t.state != TaskState::released) continue;
      if (is_scattered_task(id)) {
        lose_scattered(id, "with worker " + w.name + " (" + std::string(cause) + ")");
        continue;
      }
      if (needed(t)) {
        compute_released(id, true);
      } else {
        release_work.push_back(id);
      }
    }

    worker_index.erase(w.peer);
    if (w.bandwidth > 0) {
      w.bandwidth = 0;
      update_bandwidth();
    }
    w.name.clear();
    w.address.clear();
    std::vector<Link>().swap(w.has_what);
    free_workers.push_back(wi);
    drain_releases();
    schedule();
  }

  // ---- data movement: scatter, replicate, rebalance, restart ----
  //
  // Kept apart from the task hot path: the hooks elsewhere are a check of `scattered` where a
  // task would be computed or recovered, and of `transfers` when a worker leaves.

  // Scattered tasks: their data came from a client, so they have no lineage and are never
  // computed. An id leaves the set when its record is forgotten.
  std::unordered_set<TaskId> scattered;

  // A client's replicate, rebalance or restart request, answered through out.reply() once done.
  enum class OpKind : std::uint8_t { replicate, rebalance, restart };
  struct Op {
    OpKind kind = OpKind::replicate;
    PeerId client = 0;
    std::uint64_t request_id = 0;
    std::uint32_t outstanding = 0;  // copies asked for that have not ended
    std::uint32_t copied = 0;
    std::uint32_t failed = 0;       // no holder could serve the copy, or its receiver left
    std::uint32_t dropped = 0;      // replicate: extra copies freed
    std::size_t workers = 0;        // restart: connected workers to wait for
  };
  std::map<std::uint64_t, Op> ops;  // by op id, in the order they were asked
  std::uint64_t next_op = 1;
  // A copy that op `op` waits for; a move (rebalance) frees the copy on `from` once the receiver
  // has one.
  struct Transfer {
    std::uint64_t op = 0;
    bool move = false;
    PeerId from = 0;
  };
  // Copies asked of workers, by (receiving worker, key): one copy_key each, however many ops wait
  // on it. Keyed by the key's text, not its id, so a key forgotten meanwhile cannot alias another.
  std::map<std::pair<PeerId, std::string>, std::vector<Transfer>> transfers;

  bool is_scattered_task(TaskId id) const { return !scattered.empty() && scattered.count(id) > 0; }

  std::shared_ptr<const ErrorInfo> scattered_lost(TaskId id, std::string_view how) const {
    auto e = std::make_shared<ErrorInfo>();
    e->kind = ErrorKind::lost;
    e->type = "LostScatteredData";
    e->message = "scattered data " + std::string(tasks[id].text.key()) + " was lost " +
                 std::string(how) + "; it cannot be recomputed: scatter it again";
    return e;
  }

  /// A scattered task lost its last holder (leave_memory made it released): it errs, with the
  /// dependents waiting for it, if anything still needs it; otherwise it simply goes.
  void lose_scattered(TaskId id, std::string_view how) {
    if (needed(tasks[id])) {
      set_erred(id, scattered_lost(id, how));
    } else {
      release_work.push_back(id);
    }
  }

  bool holds(TaskId id, Index wi) const {
    for (const Link& h : tasks[id].holders) {
      if (h.id == wi) return true;
    }
    return false;
  }

  void add_holder(TaskId id, Index wi) {
    if (!holds(id, wi)) add_link(holders_of(), id, has_what_of(), wi);
  }

  /// Drops worker wi's copy of a memory task that has another holder. The wanters hear where
  /// the value is now: their futures fetch it from the holders they were told.
  void drop_holder(TaskId id, Index wi) {
    const Task& t = tasks[id];
    for (Index i = 0; i < t.holders.size(); ++i) {
      if (t.holders[i].id == wi) {
        out.free_key(workers[wi].peer, t.text.key());
        remove_link(holders_of(), id, i, has_what_of());
        for (const Link& w : t.wanted_by) report_memory(id, clients[w.id].peer, std::nullopt);
        return;
      }
    }
  }

  std::uint64_t held_bytes(Index wi) const {
    std::uint64_t n = 0;
    for (const Link& l : workers[wi].has_what) n += tasks[l.id].nbytes;
    return n;
  }

  /// The live workers named by `who` (names or data addresses; empty: every live worker that is
  /// not closing), in peer order; or the message naming one that is not connected.
  std::optional<std::string> resolve_workers(std::span<const std::string_view> who,
                                             std::vector<Index>& found) const {
    found.clear();
    if (who.empty()) {
      for (const auto& [peer, wi] : worker_index) {
        if (!workers[wi].closing) found.push_back(wi);
      }
    } else {
      for (const std::string_view name : who) {
        Index match = kNone;
        for (const auto& [peer, wi] : worker_index) {
          if (workers[wi].address == name || workers[wi].name == name) match = wi;
        }
        if (match == kNone) return "no worker named or at '" + std::string(name) + "'";
        if (std::find(found.begin(), found.end(), match) == found.end()) found.push_back(match);
      }
    }
    std::sort(found.begin(), found.end(),
              [this](Index a, Index b) { return workers[a].peer < workers[b].peer; });
    return std::nullopt;
  }

  /// The ids of `keys`, each in memory and listed once; or the message naming one that is not.
  std::optional<std::string> memory_tasks(std::span<const std::string_view> asked,
                                          std::vector<TaskId>& ids) const {
    ids.clear();
    for (const std::string_view key : asked) {
      const TaskId id = find_task(key);
      if (id == kNone) return "the scheduler does not know key " + std::string(key);
      if (tasks[id].state != TaskState::memory) {
        return "key " + std::string(key) + " is not in memory (it is " +
               to_string(tasks[id].state) + ")";
      }
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
    return std::nullopt;
  }

  std::uint64_t new_op(OpKind kind, PeerId client, std::uint64_t request_id) {
    const std::uint64_t id = next_op++;
    Op& op = ops[id];
    op.kind = kind;
    op.client = client;
    op.request_id = request_id;
    return id;
  }

  bool copy_pending(TaskId id, Index to) const {
    return transfers.count({workers[to].peer, std::string(tasks[id].text.key())}) > 0;
  }

  /// Asks worker `to` for a copy of memory task `id` for op `op`; a move frees the copy on
  /// `from` once it has arrived.
  void request_copy(std::uint64_t op, TaskId id, Index to, Index from = kNone) {
    const Task& t = tasks[id];
    auto& waiting = transfers[{workers[to].peer, std::string(t.text.key())}];
    waiting.push_back(Transfer{op, from != kNone, from != kNone ? workers[from].peer : 0});
    ++ops.at(op).outstanding;
    if (waiting.size() > 1) return;  // asked already, for another op
    DepLocation loc;
    loc.key = t.text.key();
    loc.nbytes = t.nbytes;
    if (from != kNone) loc.holders.push_back(workers[from].address);  // the sender serves it
    for (const Link& h : t.holders) {
      if (h.id != from) loc.holders.push_back(workers[h.id].address);
    }
    out.copy_key(workers[to].peer, loc);
  }

  enum class CopyEnd : std::uint8_t { copied, failed, gone };

  /// One copy that an op waited for has ended.
  void end_transfer(const Transfer& tr, CopyEnd how) {
    auto it = ops.find(tr.op);
    if (it == ops.end()) return;
    Op& op = it->second;
    if (how == CopyEnd::copied) ++op.copied;
    if (how == CopyEnd::failed) ++op.failed;
    if (--op.outstanding == 0) finish_op(tr.op);
  }

  void finish_op(std::uint64_t id) {
    auto it = ops.find(id);
    if (it == ops.end()) return;
    const Op op = it->second;
    ops.erase(it);
    std::string json;
    switch (op.kind) {
      case OpKind::replicate:
        json = "{\"copied\":" + std::to_string(op.copied) + ",\"failed\":" +
               std::to_string(op.failed) + ",\"dropped\":" + std::to_string(op.dropped) + "}";
        break;
      case OpKind::rebalance:
        json = "{\"moved\":" + std::to_string(op.copied) + ",\"failed\":" +
               std::to_string(op.failed) + "}";
        break;
      case OpKind::restart:
        json = "{\"workers\":" + std::to_string(worker_index.size()) + "}";
        break;
    }
    out.reply(op.client, op.request_id, json, {});
  }

  /// Worker `peer` is leaving: the copies asked of it fail.
  void fail_transfers_to(PeerId peer) {
    auto it = transfers.lower_bound({peer, std::string()});
    while (it != transfers.end() && it->first.first == peer) {
      const std::vector<Transfer> waiting = std::move(it->second);
      it = transfers.erase(it);
      for (const Transfer& tr : waiting) end_transfer(tr, CopyEnd::failed);
    }
  }

  /// Answers the restarts whose workers are back.
  void check_restarts() {
    std::vector<std::uint64_t> back;
    for (const auto& [id, op] : ops) {
      if (op.kind == OpKind::restart && worker_index.size() >= op.workers) back.push_back(id);
    }
    for (const std::uint64_t id : back) finish_op(id);
  }

  // ---- validation ----

  std::optional<std::string> validate() const;
};

namespace {
// Whether link `i` of `owner` (pointing at `l`) is mirrored: entry `l.back` of the other end's
// list points back at `owner` and at position `i`.
template <class List>
bool mirrored(const Link& l, Index i, Index owner, const List& other) {
  return l.back < other.size() && other[l.back].id == owner && other[l.back].back == i;
}
// Whether entry `i` of `links` names the same other end as an earlier entry.
template <class Links>
bool listed_before(const Links& links, Index i) {
  for (Index j = 0; j < i; ++j) {
    if (links[j].id == links[i].id) return true;
  }
  return false;
}
}  // namespace

std::optional<std::string> SchedulerState::Impl::validate() const {
  auto bad = [](const std::string& what) { return std::optional<std::string>(what); };
  auto tk = [this](TaskId id) {
    return "task " + std::string(tasks[id].text.key()) + " (" + to_string(tasks[id].state) + "): ";
  };
  std::size_t live = 0;
  std::size_t nqueued = 0;
  std::size_t nerred = 0;
  std::vector<char> has_entry(tasks.size(), 0);
  for (const ReadyEntry& e : ready) {
    if (e.id >= tasks.size()) return bad("ready entry out of range");
    if (ready_live(e)) has_entry[e.id] = 1;
  }
  for (const ReadyEntry& e : parked) {
    if (e.id >= tasks.size() || !tasks[e.id].alive) continue;  // stale: dropped when reached
    if (ready_live(e)) has_entry[e.id] = 1;
  }
  for (const HeldGroup& g : held) {
    if (g.heap.empty()) return bad("empty held group");
    for (const ReadyEntry& e : g.heap) {
      if (e.id >= tasks.size() || !tasks[e.id].alive || !ready_live(e)) continue;  // stale
      if (!tasks[e.id].restricted || restrictions.at(e.id) != g.restriction) {
        return bad(tk(e.id) + "held under another restriction");
      }
      has_entry[e.id] = 1;
    }
  }
  for (const auto& [id, r] : restrictions) {
    if (id >= tasks.size() || !tasks[id].alive || !tasks[id].restricted || !r) {
      return bad("restriction of a dead or unrestricted task " + std::to_string(id));
    }
  }
  for (TaskId id = 0; id < tasks.size(); ++id) {
    const Task& t = tasks[id];
    if (!t.alive) {
      if (!t.deps.empty() || !t.dependents.empty() || !t.holders.empty() || !t.wanted_by.empty()) {
        return bad("dead record " + std::to_string(id) + " has links");
      }
      if (died_on.count(id)) return bad("dead record " + std::to_string(id) + " in died_on");
      if (crash_reports.count(id)) {
        return bad("dead record " + std::to_string(id) + " in crash_reports");
      }
      continue;
    }
    ++live;
    if (find_task(t.text.key()) != id) return bad(tk(id) + "key index does not map to it");
    if (t.wanted_by.empty() && t.dependents.empty()) {
      return bad(tk(id) + "no wanter and no dependent: should be forgotten");
    }
    // Links and their mirrors.
    for (Index i = 0; i < t.deps.size(); ++i) {
      const Link& l = t.deps[i];
      if (l.id >= tasks.size() || !tasks[l.id].alive) return bad(tk(id) + "dead dependency");
      if (!mirrored(l, i, id, tasks[l.id].dependents)) {
        return bad(tk(id) + "dependency link mirror broken");
      }
    }
    std::uint32_t active = 0;
    for (Index i = 0; i < t.dependents.size(); ++i) {
      const Link& l = t.dependents[i];
      if (l.id >= tasks.size() || !tasks[l.id].alive) return bad(tk(id) + "dead dependent");
      if (!mirrored(l, i, id, tasks[l.id].deps)) {
        return bad(tk(id) + "dependent link mirror broken");
      }
      active += is_active(tasks[l.id].state);
    }
    if (active != t.active_dependents) return bad(tk(id) + "active_dependents count wrong");
    for (Index i = 0; i < t.holders.size(); ++i) {
      const Link& l = t.holders[i];
      if (l.id >= workers.size() || !workers[l.id].alive) return bad(tk(id) + "dead holder");
      if (!mirrored(l, i, id, workers[l.id].has_what)) {
        return bad(tk(id) + "holder link mirror broken");
      }
      if (listed_before(t.holders, i)) return bad(tk(id) + "holder listed twice");
    }
    for (Index i = 0; i < t.wanted_by.size(); ++i) {
      const Link& l = t.wanted_by[i];
      if (l.id >= clients.size() || !clients[l.id].alive) return bad(tk(id) + "dead wanter");
      if (!mirrored(l, i, id, clients[l.id].wants)) return bad(tk(id) + "want link mirror broken");
      if (listed_before(t.wanted_by, i)) return bad(tk(id) + "client wants it twice");
    }
    // State.
    const bool need = needed(t);
    if ((t.state == TaskState::memory) != !t.holders.empty()) {
      return bad(tk(id) + "holders iff memory violated");
    }
    if ((is_active(t.state) || t.state == TaskState::memory) && !need) {
      return bad(tk(id) + "nobody needs it");
    }
    if (t.state == TaskState::erred) {  // (entries for other ids: see the count check below)
      ++nerred;
      auto e = errors.find(id);
      if (e == errors.end() || e->second == nullptr) return bad(tk(id) + "erred without an error");
    }
    switch (t.state) {
      case TaskState::released:
        if (need) return bad(tk(id) + "needed but released");
        break;
      case TaskState::waiting: {
        std::uint32_t missing = 0;
        for (const Link& l : t.deps) {
          const TaskState ds = tasks[l.id].state;
          if (ds == TaskState::memory) continue;
          ++missing;
          if (!is_active(ds)) {
            return bad(tk(id) + "waits on " + std::string(tasks[l.id].text.key()) + " which is " +
                       to_string(ds));
          }
        }
        if (missing == 0) return bad(tk(id) + "waiting with every dependency in memory");
        if (missing != t.n_waiting) return bad(tk(id) + "n_waiting wrong");
        break;
      }
      case TaskState::queued:
      case TaskState::processing:
        if (count_missing(t) != 0) return bad(tk(id) + "runnable with a dependency not in memory");
        if (t.state == TaskState::queued) {
          ++nqueued;
          if (!has_entry[id]) return bad(tk(id) + "queued without a ready entry");
        } else {
          if (t.run.worker >= workers.size() || !workers[t.run.worker].alive) {
            return bad(tk(id) + "processing on a dead worker");
          }
          const auto& p = workers[t.run.worker].processing;
          if (t.run.pos >= p.size() || p[t.run.pos].id != id) {
            return bad(tk(id) + "not in its worker's processing set");
          }
        }
        break;
      case TaskState::memory:
      case TaskState::erred:
        break;
    }
  }
  if (live != keys.size()) return bad("key index size differs from live tasks");
  if (nqueued != queued) return bad("queued count wrong");
  // Every erred task has its own entry, so equal counts leave none for other (or dead) ids.
  if (nerred != errors.size()) return bad("an error is kept for a task that is not erred");

  std::size_t nworkers = 0;
  for (Index wi = 0; wi < workers.size(); ++wi) {
    const Worker& w = workers[wi];
    if (!w.alive) {
      if (w.heap_pos != kNone) return bad("dead worker in placement heap");
      continue;
    }
    ++nworkers;
    const std::string wn = "worker " + w.name + ": ";
    auto it = worker_index.find(w.peer);
    if (it == worker_index.end() || it->second != wi) return bad(wn + "not indexed");
    std::int64_t occ = 0;
    for (Index i = 0; i < w.processing.size(); ++i) {
      const TaskId id = w.processing[i].id;
      if (id >= tasks.size() || !tasks[id].alive || tasks[id].state != TaskState::processing ||
          tasks[id].run.worker != wi || tasks[id].run.pos != i) {
        return bad(wn + "processing set holds a task not processing there");
      }
      occ += w.processing[i].est_ns;
    }
    if (occ != w.occupancy_ns) return bad(wn + "occupancy wrong");
    std::vector<double> free = w.resources_total;
    for (const Running& r : w.processing) {
      if (!tasks[r.id].restricted) continue;
      for (const auto& [rid, amount] : restrictions.at(r.id)->resources) {
        if (rid < free.size()) free[rid] -= amount;
      }
    }
    if (free.size() != w.resources_free.size()) return bad(wn + "resource vectors differ");
    for (std::size_t i = 0; i < free.size(); ++i) {
      if (std::abs(free[i] - w.resources_free[i]) > 1e-6) {
        return bad(wn + "free " + resource_names[i] + " wrong");
      }
    }
    for (Index i = 0; i < w.has_what.size(); ++i) {
      const Link& l = w.has_what[i];
      if (l.id >= tasks.size() || !tasks[l.id].alive) return bad(wn + "holds a dead task");
      if (!mirrored(l, i, wi, tasks[l.id].holders)) return bad(wn + "has_what link mirror broken");
    }
    const bool in = !w.closing && !w.paused && !saturated(w);
    if (in != (w.heap_pos != kNone)) return bad(wn + "placement heap membership wrong");
    if (in && (w.heap_pos >= worker_heap.size() || worker_heap[w.heap_pos] != wi)) {
      return bad(wn + "placement heap position wrong");
    }
  }
  if (nworkers != worker_index.size()) return bad("worker index size wrong");
  for (std::size_t i = 1; i < worker_heap.size(); ++i) {
    if (heap_less(worker_heap[i], worker_heap[(i - 1) / 2])) return bad("placement heap order");
  }
  std::size_t nclients = 0;
  for (Index ci = 0; ci < clients.size(); ++ci) {
    const Client& c = clients[ci];
    if (!c.alive) continue;
    ++nclients;
    for (Index i = 0; i < c.wants.size(); ++i) {
      const Link& l = c.wants[i];
      if (l.id >= tasks.size() || !tasks[l.id].alive) return bad("client wants a dead task");
      if (!mirrored(l, i, ci, tasks[l.id].wanted_by)) return bad("client want link mirror broken");
    }
  }
  if (nclients != client_index.size()) return bad("client index size wrong");
  for (const auto& [id, list] : died_on) {
    if (id >= tasks.size() || !tasks[id].alive) return bad("died_on names a dead task");
  }
  for (const TaskId id : scattered) {
    if (id >= tasks.size() || !tasks[id].alive) return bad("scattered set names a dead task");
    if (is_active(tasks[id].state)) return bad(tk(id) + "scattered but computing");
  }
  for (const auto& [where, waiting] : transfers) {
    if (waiting.empty()) return bad("empty transfer list for " + where.second);
    if (worker_index.count(where.first) == 0) return bad("copy pending on a worker that left");
    for (const Transfer& tr : waiting) {
      if (ops.count(tr.op) == 0) return bad("copy of " + where.second + " for a finished op");
    }
  }
  return std::nullopt;
}

// ---- public API ----

SchedulerState::SchedulerState(SchedulerOptions options, SchedulerOutbox& outbox)
    : impl_(std::make_unique<Impl>(options, outbox)) {}

SchedulerState::~SchedulerState() = default;

void SchedulerState::on_client_joined(PeerId client, std::string_view name) {
  impl_->ensure_client(client, name);
}

void SchedulerState::on_client_left(PeerId client) {
  Impl& s = *impl_;
  const Index c = s.find_client(client);
  if (c == kNone) return;
  Client& cl = s.clients[c];
  while (!cl.wants.empty()) {
    s.release_work.push_back(cl.wants.back().id);
    remove_link(s.wants_of(), c, list_size(cl.wants) - 1, s.wanted_by_of());
  }
  s.client_index.erase(client);
  cl.alive = false;
  cl.name.clear();
  std::vector<Link>().swap(cl.wants);
  s.free_clients.push_back(c);
  s.drain_releases();
  s.schedule();
}

void SchedulerState::on_submit(PeerId client, const std::vector<TaskSpec>& tasks) {
  // Views into `tasks`, gathered first so that the spans stay valid.
  std::vector<std::string_view> deps, workers;
  std::vector<ResourceView> resources;
  for (const TaskSpec& t : tasks) {
    deps.insert(deps.end(), t.deps.begin(), t.deps.end());
    workers.insert(workers.end(), t.workers.begin(), t.workers.end());
    for (const Resource& r : t.resources) resources.push_back({r.name, r.amount});
  }
  std::vector<TaskSpecView> views;
  views.reserve(tasks.size());
  std::size_t at_dep = 0, at_worker = 0, at_resource = 0;
  for (const TaskSpec& t : tasks) {
    views.push_back({.key = t.key,
                     .name = t.name,
                     .args = t.args,
                     .deps = std::span(deps).subspan(at_dep, t.deps.size()),
                     .retries = t.retries,
                     .priority = t.priority,
                     .workers = std::span(workers).subspan(at_worker, t.workers.size()),
                     .allow_other_workers = t.allow_other_workers,
                     .resources = std::span(resources).subspan(at_resource, t.resources.size()),
                     .wanted = t.wanted});
    at_dep += t.deps.size();
    at_worker += t.workers.size();
    at_resource += t.resources.size();
  }
  on_submit(client, views);
}

void SchedulerState::on_submit(PeerId client, std::span<const TaskSpecView> tasks) {
  Impl& s = *impl_;
  const Index c = s.ensure_client(client, "");
  auto& dep_ids = s.scratch_ids;
  RestrictionPtr last_restriction;
  // New tasks the client does not want (a graph's intermediates) are held by a provisional want
  // of the client while the batch is read: during on_submit wants are only added, so no record
  // is forgotten before its dependents later in the batch link to it.
  auto& provisional = s.provisional;
  auto& confirmed = s.confirmed;  // provisional ones that a later spec of the batch wants
  provisional.clear();
  confirmed.clear();
  for (const TaskSpecView& spec : tasks) {
    ++s.counters.tasks_submitted;
    const std::uint32_t h = KeyIndex::hash(spec.key);
    const TaskId existing = s.keys.find(spec.key, h, s.key_of());
    if (existing != kNone) {
      ++s.counters.tasks_deduplicated;
      if (!spec.wanted) continue;  // known already: it needs no holding, and gains no want
      if (!provisional.empty()) confirmed.push_back(existing);
      s.want(c, existing);
      s.drain_releases();
      continue;
    }
    dep_ids.clear();
    std::shared_ptr<ErrorInfo> err;
    for (const std::string_view dk : spec.deps) {
      const TaskId d = s.find_task(dk);
      if (d == kNone) {
        err = std::make_shared<ErrorInfo>();
        err->kind = ErrorKind::scheduler_error;
        err->type = "MissingDependency";
        err->message =
            "task " + std::string(spec.key) + " depends on unknown key " + std::string(dk);
        break;
      }
      dep_ids.push_back(d);
    }
    const TaskId id = s.new_task(spec, h);
    if (RestrictionPtr r = s.make_restriction(spec, last_restriction)) {
      s.tasks[id].restricted = true;
      s.restrictions.emplace(id, r);
      last_restriction = std::move(r);
    }
    add_link(s.wanted_by_of(), id, s.wants_of(), c);
    if (!spec.wanted) provisional.push_back(id);
    if (err) {
      s.set_erred(id, std::move(err));
      continue;
    }
    for (const TaskId d : dep_ids) add_link(s.deps_of(), id, s.dependents_of(), d);
    s.compute_released(id, false);
    s.drain_releases();
  }
  // The whole batch is in: the provisional wants go, and each unwanted task stays only while a
  // dependent needs it (before schedule(), so one nobody needs never reaches a worker).
  if (!provisional.empty()) {
    std::sort(confirmed.begin(), confirmed.end());
    for (const TaskId id : provisional) {
      if (std::binary_search(confirmed.begin(), confirmed.end(), id)) continue;
      s.unwant(c, id);
    }
    provisional.clear();
    confirmed.clear();
  }
  s.drain_releases();
  s.schedule();
}

void SchedulerState::on_want(PeerId client, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  const Index c = s.ensure_client(client, "");
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone) {
      ErrorInfo err;
      err.kind = ErrorKind::lost;
      err.type = "LostKey";
      err.message = "the scheduler does not know key " + std::string(key);
      KeyReport r;
      r.key = key;
      r.status = KeyStatus::lost;
      r.error = &err;
      s.out.report(client, r);
      continue;
    }
    s.want(c, id);
    s.drain_releases();
  }
  s.schedule();
}

void SchedulerState::on_retry(PeerId client, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  if (s.find_client(client) == kNone) return;
  std::vector<TaskId> stack;
  std::vector<TaskId> reset;
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone || s.tasks[id].state != TaskState::erred) continue;
    // The key and every erred dependency it failed through start over as released.
    stack.push_back(id);
    reset.clear();
    while (!stack.empty()) {
      const TaskId x = stack.back();
      stack.pop_back();
      Task& t = s.tasks[x];
      // A lost scattered key stays erred: only scattering it again brings it back.
      if (t.state != TaskState::erred || s.is_scattered_task(x)) continue;
      s.set_state(x, TaskState::released);
      s.died_on.erase(x);
      s.crash_reports.erase(x);
      reset.push_back(x);
      for (const Link& l : t.deps) stack.push_back(l.id);
    }
    s.compute_released(id, false);
    // The key errs again at once when a lost scattered key is among its dependencies; the
    // dependencies reset with it that a client wants still run.
    if (!s.scattered.empty()) {
      for (const TaskId x : reset) s.compute_released(x, false);
    }
    s.drain_releases();
  }
  s.schedule();
}

void SchedulerState::on_fire_and_forget(PeerId client, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  if (s.find_client(client) == kNone) return;
  if (s.fire_and_forget_client == kNone) {
    s.fire_and_forget_client = s.ensure_client(kFireAndForgetPeer, "fire-and-forget");
  }
  const Index ff = s.fire_and_forget_client;
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone) continue;
    const TaskState st = s.tasks[id].state;
    if (st == TaskState::memory || st == TaskState::erred) continue;  // done already
    s.want(ff, id);
    s.drain_releases();
  }
  s.schedule();
}

std::optional<std::string> SchedulerState::on_publish(PeerId client, std::string_view name,
                                                      std::span<const std::string_view> keys,
                                                      bool replace) {
  Impl& s = *impl_;
  if (s.find_client(client) == kNone) return "unknown client";
  const auto existing = s.datasets.find(name);
  if (existing != s.datasets.end() && !replace) {
    return "dataset '" + std::string(name) + "' already exists";
  }
  for (const std::string_view key : keys) {
    if (s.find_task(key) == kNone) {
      return "cannot publish dataset '" + std::string(name) + "': unknown key " + std::string(key);
    }
  }
  // The new keys are held before the old ones go, so keys in both stay.
  const Index ds = s.ensure_client(kDatasetsPeer, "datasets");
  std::vector<std::string> held(keys.begin(), keys.end());
  for (const std::string& key : held) {
    if (s.dataset_refs[key]++ == 0) {
      s.want(ds, s.find_task(key));
      s.drain_releases();
    }
  }
  if (existing != s.datasets.end()) on_unpublish(name);
  s.datasets.emplace(std::string(name), std::move(held));
  s.schedule();
  return std::nullopt;
}

bool SchedulerState::on_unpublish(std::string_view name) {
  Impl& s = *impl_;
  const auto it = s.datasets.find(name);
  if (it == s.datasets.end()) return false;
  std::vector<std::string_view> gone;
  for (const std::string& key : it->second) {
    auto r = s.dataset_refs.find(key);
    if (r != s.dataset_refs.end() && --r->second == 0) {
      s.dataset_refs.erase(r);
      gone.push_back(key);
    }
  }
  on_release(kDatasetsPeer, gone);  // before the keys' strings go with the entry
  s.datasets.erase(it);
  return true;
}

std::vector<std::string> SchedulerState::datasets() const {
  std::vector<std::string> out;
  for (const auto& [name, keys] : impl_->datasets) out.push_back(name);
  return out;
}

std::optional<std::vector<std::string>> SchedulerState::dataset(std::string_view name) const {
  const auto it = impl_->datasets.find(name);
  if (it == impl_->datasets.end()) return std::nullopt;
  return it->second;
}

void SchedulerState::on_release(PeerId client, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  const Index c = s.find_client(client);
  if (c == kNone) return;
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone) continue;
    s.unwant(c, id);
    s.drain_releases();
  }
  s.schedule();
}

void SchedulerState::on_cancel(PeerId client, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  // The keys and everything depending on them.
  std::vector<TaskId> closure;
  std::vector<char> seen(s.tasks.size(), 0);
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone || seen[id]) continue;
    seen[id] = 1;
    closure.push_back(id);
  }
  for (std::size_t i = 0; i < closure.size(); ++i) {
    for (const Link& l : s.tasks[closure[i]].dependents) {
      if (!seen[l.id]) {
        seen[l.id] = 1;
        closure.push_back(l.id);
      }
    }
  }
  if (closure.empty()) return;
  ErrorInfo err;
  err.kind = ErrorKind::cancelled;
  err.type = "CancelledError";
  const Index c = s.find_client(client);
  err.message =
      "cancelled by client " +
      (c != kNone && !s.clients[c].name.empty() ? s.clients[c].name : std::to_string(client));
  for (const TaskId id : closure) {
    Task& t = s.tasks[id];
    KeyReport r;
    r.key = t.text.key();
    r.status = KeyStatus::cancelled;
    r.error = &err;
    while (!t.wanted_by.empty()) {
      s.out.report(s.clients[t.wanted_by.back().id].peer, r);
      remove_link(s.wanted_by_of(), id, t.wanted_by.size() - 1, s.wants_of());
    }
    s.release_work.push_back(id);
  }
  s.drain_releases();
  s.schedule();
}

void SchedulerState::on_worker_joined(PeerId worker, WorkerInfo info, double now) {
  Impl& s = *impl_;
  Index wi = s.find_worker(worker);
  if (wi != kNone) {  // a repeated hello
    s.workers[wi].last_seen = now;
    return;
  }
  s.timed_out.erase(worker);
  if (!s.free_workers.empty()) {
    wi = s.free_workers.back();
    s.free_workers.pop_back();
  } else {
    wi = static_cast<Index>(s.workers.size());
    s.workers.emplace_back();
  }
  Worker& w = s.workers[wi];
  w.peer = worker;
  w.name = std::move(info.name);
  w.address = std::move(info.data_address);
  w.nthreads = std::max<std::uint32_t>(1, info.nthreads);
  w.alive = true;
  w.closing = false;
  w.paused = false;
  w.touched = false;
  w.last_seen = now;
  w.processing.clear();
  w.has_what.clear();
  w.occupancy_ns = 0;
  w.acc_bytes = 0;
  w.bandwidth = 0;
  w.heap_pos = kNone;
  w.max_tasks = std::max<std::uint32_t>(1, s.opt.max_tasks_per_worker);
  const double min_tasks = std::ceil(s.opt.worker_saturation * w.nthreads);
  w.min_tasks = !(min_tasks >= 1)          ? 1
                : min_tasks >= w.max_tasks ? w.max_tasks
                                           : static_cast<std::uint32_t>(min_tasks);
  w.target_ns = to_ns(s.opt.queue_target_s * w.nthreads);
  w.resources_total.assign(s.resource_names.size(), 0.0);
  for (const Resource& r : info.resources) {
    const Index rid = s.intern_resource(r.name);
    if (rid >= w.resources_total.size()) w.resources_total.resize(rid + 1, 0.0);
    w.resources_total[rid] += std::max(0.0, r.amount);
  }
  w.resources_free = w.resources_total;
  s.worker_index.emplace(worker, wi);
  s.refresh_worker(wi);
  s.schedule();
  if (!s.ops.empty()) s.check_restarts();
}

void SchedulerState::on_worker_left(PeerId worker, WorkerExit how, double /*now*/) {
  const Index wi = impl_->find_worker(worker);
  if (wi != kNone) impl_->worker_left(wi, how);
}

std::optional<PeerId> SchedulerState::on_worker_died(std::string_view worker_name,
                                                     std::string_view cause, double /*now*/,
                                                     std::string_view traceback) {
  // A nanny restarts its worker under the same name. Should the new process's Hello overtake the
  // report of the old one's death, two live workers have that name: the dead one joined first,
  // and peers are numbered in joining order.
  std::optional<PeerId> dead;
  for (const auto& [peer, wi] : impl_->worker_index) {
    if (impl_->workers[wi].name == worker_name && (!dead || peer < *dead)) dead = peer;
  }
  if (!dead) return std::nullopt;
  impl_->worker_left(impl_->find_worker(*dead), WorkerExit::lost,
                     cause.empty() ? std::string_view("reported dead by its nanny") : cause,
                     traceback);
  return dead;
}

void SchedulerState::on_heartbeat(PeerId worker, double now) {
  impl_->reporting_worker(worker, now);
}

void SchedulerState::on_bandwidth(PeerId worker, double bytes_per_s) {
  const Index wi = impl_->find_worker(worker);
  if (wi == kNone || !(bytes_per_s > 0) || !std::isfinite(bytes_per_s)) return;
  impl_->workers[wi].bandwidth = bytes_per_s;
  impl_->update_bandwidth();
}

double SchedulerState::bandwidth() const { return impl_->bandwidth; }

void SchedulerState::on_task_done(PeerId worker, std::string_view key, std::uint64_t nbytes,
                                  std::optional<std::string_view> inline_data, double duration_s,
                                  double now) {
  Impl& s = *impl_;
  const Index wi = s.reporting_worker(worker, now);
  if (wi == kNone) return;
  const TaskId id = s.find_task(key);
  if (id == kNone) {
    s.out.free_key(worker, key);
    return;
  }
  Task& t = s.tasks[id];
  if (t.state != TaskState::processing || t.run.worker != wi) {
    // Late or duplicate: keep the data only where the records say it is.
    bool holder = false;
    for (const Link& h : t.holders) holder = holder || h.id == wi;
    if (!holder) s.out.free_key(worker, key);
    return;
  }
  s.detach(id);
  ++s.counters.tasks_finished;
  if (duration_s >= 0 && std::isfinite(duration_s)) {
    NameInfo& n = s.names[t.name];
    n.duration_s = n.measured ? 0.5 * n.duration_s + 0.5 * duration_s : duration_s;
    n.measured = true;
  }
  t.nbytes = nbytes;
  add_link(s.holders_of(), id, s.has_what_of(), wi);
  s.set_state(id, TaskState::memory);
  for (const Link& c : t.wanted_by) s.report_memory(id, s.clients[c.id].peer, inline_data);
  s.finish_fire_and_forget(id);
  for (const Link& l : t.dependents) {
    Task& d = s.tasks[l.id];
    if (d.state == TaskState::waiting && --d.n_waiting == 0) s.make_ready(l.id);
  }
  s.drain_releases();
  s.schedule();
}

void SchedulerState::on_task_failed(PeerId worker, std::string_view key, ErrorInfo error,
                                    double /*duration_s*/, double now) {
  Impl& s = *impl_;
  const Index wi = s.reporting_worker(worker, now);
  if (wi == kNone) return;
  const TaskId id = s.find_task(key);
  if (id == kNone) return;
  Task& t = s.tasks[id];
  if (t.state != TaskState::processing || t.run.worker != wi) return;
  s.detach(id);
  ++s.counters.tasks_failed;
  if (error.worker.empty()) error.worker = s.workers[wi].name;
  if (error.kind == ErrorKind::exception && t.retries > 0) {
    --t.retries;
    s.make_ready(id);
  } else {
    s.set_erred(id, std::make_shared<const ErrorInfo>(std::move(error)));
  }
  s.drain_releases();
  s.schedule();
}

void SchedulerState::on_missing_deps(PeerId worker, std::string_view key,
                                     std::span<const std::string_view> missing) {
  Impl& s = *impl_;
  const Index wi = s.find_worker(worker);
  if (wi == kNone) return;
  const TaskId id = s.find_task(key);
  if (id == kNone) return;
  Task& t = s.tasks[id];
  if (t.state != TaskState::processing || t.run.worker != wi) return;
  s.detach(id);
  s.set_state(id, TaskState::waiting);
  t.n_waiting = 0;
  std::vector<TaskId> lost;
  for (const std::string_view mk : missing) {
    const TaskId m = s.find_task(mk);
    if (m == kNone) continue;
    bool is_dep = false;
    for (const Link& l : t.deps) is_dep = is_dep || l.id == m;
    Task& mt = s.tasks[m];
    if (!is_dep || mt.state != TaskState::memory) continue;
    for (Index i = mt.holders.size(); i-- > 0;) {
      const Index h = mt.holders[i].id;
      if (h == wi) continue;
      s.out.free_key(s.workers[h].peer, mt.text.key());
      remove_link(s.holders_of(), m, i, s.has_what_of());
    }
    if (mt.holders.empty()) {
      s.leave_memory(m, true);
      lost.push_back(m);
    }
  }
  t.n_waiting = s.count_missing(t);
  if (t.n_waiting == 0) s.make_ready(id);
  for (const TaskId m : lost) {
    const Task& mt = s.tasks[m];
    if (!mt.alive || mt.state != TaskState::released) continue;
    if (s.is_scattered_task(m)) {
      s.lose_scattered(m, "when no worker holding it could serve it to worker " +
                              s.workers[wi].name);
      continue;
    }
    if (Impl::needed(mt)) {
      s.compute_released(m, true);
    } else {
      s.release_work.push_back(m);
    }
  }
  s.drain_releases();
  s.schedule();
}

void SchedulerState::on_reject(PeerId worker, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  const Index wi = s.find_worker(worker);
  if (wi == kNone) return;
  s.workers[wi].closing = true;
  s.refresh_worker(wi);
  for (const std::string_view key : keys) s.hand_back(wi, key);
  s.schedule();
}

void SchedulerState::on_steal_tick() { impl_->steal_work(); }

void SchedulerState::on_steal_reply(PeerId worker, std::span<const std::string_view> stolen,
                                    std::span<const std::string_view> kept) {
  Impl& s = *impl_;
  const Index wi = s.find_worker(worker);
  if (wi == kNone) return;
  // The worker no longer has these, whatever it was asked: place them again.
  for (const std::string_view key : stolen) s.counters.tasks_stolen += s.hand_back(wi, key);
  for (const std::string_view key : kept) {
    const TaskId id = s.find_task(key);
    if (id == kNone) continue;
    const Task& t = s.tasks[id];
    if (t.state == TaskState::processing && t.run.worker == wi) {
      s.workers[wi].processing[t.run.pos].steal_pending = false;
    }
  }
  s.schedule();
}

void SchedulerState::on_worker_paused(PeerId worker, bool paused) {
  Impl& s = *impl_;
  const Index wi = s.find_worker(worker);
  if (wi == kNone || s.workers[wi].paused == paused) return;
  s.workers[wi].paused = paused;
  s.refresh_worker(wi);
  if (!paused) s.schedule();
}

void SchedulerState::on_data_lost(PeerId worker, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  const Index wi = s.find_worker(worker);
  if (wi == kNone) return;
  std::vector<TaskId> lost;
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone) continue;
    Task& t = s.tasks[id];
    bool held = false;
    for (Index i = 0; i < t.holders.size() && !held; ++i) {
      if (t.holders[i].id != wi) continue;
      remove_link(s.holders_of(), id, i, s.has_what_of());
      held = true;
    }
    if (!held || t.state != TaskState::memory) continue;
    if (t.holders.empty()) {
      s.leave_memory(id, true);  // its processing dependents, here or elsewhere, wait again
      lost.push_back(id);
      continue;
    }
    // Still held elsewhere: the dependents that could not read it here start over.
    for (const Link& l : t.dependents) {
      Task& d = s.tasks[l.id];
      if (d.state != TaskState::processing || d.run.worker != wi) continue;
      s.detach(l.id);
      s.set_state(l.id, TaskState::waiting);
      d.n_waiting = s.count_missing(d);
      if (d.n_waiting == 0) s.make_ready(l.id);
    }
  }
  for (const TaskId id : lost) {
    const Task& t = s.tasks[id];
    if (!t.alive || t.state != TaskState::released) continue;
    if (Impl::needed(t)) {
      s.compute_released(id, true);
    } else {
      s.release_work.push_back(id);
    }
  }
  s.drain_releases();
  s.schedule();
}

std::vector<PeerId> SchedulerState::on_tick(double now) {
  Impl& s = *impl_;
  std::vector<PeerId> expired;
  for (const auto& [peer, wi] : s.worker_index) {
    if (now - s.workers[wi].last_seen > s.opt.worker_ttl_s) expired.push_back(peer);
  }
  std::sort(expired.begin(), expired.end());
  for (const PeerId peer : expired) s.worker_left(s.find_worker(peer), WorkerExit::timed_out);
  return expired;
}

// ---- data movement: scatter, replicate, rebalance, restart ----

void SchedulerState::on_scatter(PeerId client, std::span<const ScatteredKeyView> keys) {
  Impl& s = *impl_;
  const Index c = s.ensure_client(client, "");
  std::vector<Index> where;
  for (const ScatteredKeyView& k : keys) {
    where.clear();
    for (const std::string_view address : k.holders) {
      for (const auto& [peer, wi] : s.worker_index) {
        if (s.workers[wi].address == address &&
            std::find(where.begin(), where.end(), wi) == where.end()) {
          where.push_back(wi);
        }
      }
    }
    const std::uint32_t h = KeyIndex::hash(k.key);
    TaskId id = s.keys.find(k.key, h, s.key_of());
    if (id == kNone) {
      if (where.empty()) {
        ErrorInfo err;
        err.kind = ErrorKind::lost;
        err.type = "LostScatteredData";
        err.message = "scattered data " + std::string(k.key) +
                      " was lost: none of the workers it was put on is in the cluster any more; "
                      "scatter it again";
        KeyReport r;
        r.key = k.key;
        r.status = KeyStatus::lost;
        r.error = &err;
        s.out.report(client, r);
        continue;
      }
      id = s.new_task(TaskSpecView{k.key, "scatter", {}, {}, 0, 0}, h);
      s.scattered.insert(id);
      add_link(s.wanted_by_of(), id, s.wants_of(), c);
      s.tasks[id].nbytes = k.nbytes;
      for (const Index wi : where) s.add_holder(id, wi);
      s.set_state(id, TaskState::memory);
      s.report_memory(id, client, std::nullopt);
      continue;
    }
    Task& t = s.tasks[id];
    if (t.state == TaskState::memory) {  // held already: one more copy
      for (const Index wi : where) s.add_holder(id, wi);
      s.want(c, id);
    } else if (s.is_scattered_task(id) && !where.empty()) {  // lost or released: back again
      t.nbytes = k.nbytes;
      for (const Index wi : where) s.add_holder(id, wi);
      s.set_state(id, TaskState::memory);
      bool wanted = false;
      for (const Link& w : t.wanted_by) wanted = wanted || w.id == c;
      if (!wanted) add_link(s.wanted_by_of(), id, s.wants_of(), c);
      for (const Link& w : t.wanted_by) s.report_memory(id, s.clients[w.id].peer, std::nullopt);
    } else if (s.is_scattered_task(id)) {
      s.want(c, id);  // errs (lost) or stays erred: the client hears which
    } else {
      ErrorInfo err;
      err.kind = ErrorKind::scheduler_error;
      err.type = "KeyInUse";
      err.message = "cannot scatter under key " + std::string(k.key) + ": it is a task's key (" +
                    to_string(t.state) + ")";
      KeyReport r;
      r.key = k.key;
      r.status = KeyStatus::erred;
      r.error = &err;
      s.out.report(client, r);
      for (const Index wi : where) s.out.free_key(s.workers[wi].peer, k.key);
    }
    s.drain_releases();
  }
  s.schedule();
}

std::vector<std::pair<std::string, std::vector<std::string>>> SchedulerState::on_hold(
    PeerId client, std::span<const std::string_view> keys) {
  Impl& s = *impl_;
  std::vector<std::pair<std::string, std::vector<std::string>>> held;
  const Index c = s.ensure_client(client, "");
  for (const std::string_view key : keys) {
    const TaskId id = s.find_task(key);
    if (id == kNone || s.tasks[id].state != TaskState::memory) continue;
    s.want(c, id);
    std::vector<std::string> where;
    for (const Link& h : s.tasks[id].holders) where.push_back(s.workers[h.id].address);
    held.emplace_back(std::string(key), std::move(where));
  }
  return held;
}

void SchedulerState::on_replicate(PeerId client, std::uint64_t request_id,
                                  std::span<const std::string_view> keys, std::uint32_t n,
                                  std::span<const std::string_view> workers) {
  Impl& s = *impl_;
  std::vector<Index> targets;
  std::vector<TaskId> ids;
  std::optional<std::string> err = s.resolve_workers(workers, targets);
  if (!err) err = s.memory_tasks(keys, ids);
  if (!err && targets.empty()) err = "there are no workers to copy to";
  if (err) {
    s.out.reply(client, request_id, {}, "replicate: " + *err);
    return;
  }
  const std::uint64_t op = s.new_op(Impl::OpKind::replicate, client, request_id);
  std::vector<std::uint64_t> load(s.workers.size(), 0);
  for (const Index wi : targets) load[wi] = s.held_bytes(wi);
  const std::size_t want = n == 0 ? targets.size() : std::min<std::size_t>(n, targets.size());
  std::vector<Index> have, lack;
  for (const TaskId id : ids) {
    have.clear();
    lack.clear();
    std::size_t coming = 0;
    for (const Index wi : targets) {
      if (s.holds(id, wi)) {
        have.push_back(wi);
      } else if (s.copy_pending(id, wi)) {
        ++coming;
      } else {
        lack.push_back(wi);
      }
    }
    const std::uint64_t nb = s.tasks[id].nbytes;
    auto lighter = [&](Index a, Index b) {
      return load[a] != load[b] ? load[a] < load[b] : s.workers[a].peer < s.workers[b].peer;
    };
    if (have.size() + coming < want) {
      std::sort(lack.begin(), lack.end(), lighter);
      const std::size_t more = std::min(lack.size(), want - have.size() - coming);
      for (std::size_t i = 0; i < more; ++i) {
        s.request_copy(op, id, lack[i]);
        load[lack[i]] += nb;
      }
    } else if (have.size() > want) {
      // Extra copies go from the most loaded holders first; want >= 1 keeps one.
      std::sort(have.begin(), have.end(), [&](Index a, Index b) { return lighter(b, a); });
      for (std::size_t i = 0; i < have.size() - want; ++i) {
        s.drop_holder(id, have[i]);
        load[have[i]] -= std::min(load[have[i]], nb);
        ++s.ops.at(op).dropped;
      }
    }
  }
  if (s.ops.at(op).outstanding == 0) s.finish_op(op);
}

void SchedulerState::on_rebalance(PeerId client, std::uint64_t request_id,
                                  std::span<const std::string_view> keys,
                                  std::span<const std::string_view> workers) {
  Impl& s = *impl_;
  std::vector<Index> targets;
  std::vector<TaskId> ids;
  std::optional<std::string> err = s.resolve_workers(workers, targets);
  if (!err) err = s.memory_tasks(keys, ids);
  if (err) {
    s.out.reply(client, request_id, {}, "rebalance: " + *err);
    return;
  }
  // The keys that count: those asked for, or every key the workers hold.
  std::unordered_set<TaskId> in_set(ids.begin(), ids.end());
  const bool all_keys = keys.empty();
  auto counts = [&](TaskId id) { return all_keys || in_set.count(id) > 0; };
  std::vector<std::uint64_t> load(s.workers.size(), 0);
  std::uint64_t total = 0;
  for (const Index wi : targets) {
    for (const Link& l : s.workers[wi].has_what) {
      if (counts(l.id)) load[wi] += s.tasks[l.id].nbytes;
    }
    total += load[wi];
  }
  const std::uint64_t op = s.new_op(Impl::OpKind::rebalance, client, request_id);
  const double mean =
      targets.empty() ? 0 : static_cast<double>(total) / static_cast<double>(targets.size());
  std::vector<Index> senders;
  for (const Index wi : targets) {
    if (static_cast<double>(load[wi]) > mean) senders.push_back(wi);
  }
  std::sort(senders.begin(), senders.end(), [&](Index a, Index b) {
    return load[a] != load[b] ? load[a] > load[b] : s.workers[a].peer < s.workers[b].peer;
  });
  std::vector<TaskId> mine;
  for (const Index from : senders) {
    mine.clear();
    for (const Link& l : s.workers[from].has_what) {
      if (counts(l.id)) mine.push_back(l.id);
    }
    std::sort(mine.begin(), mine.end(), [&](TaskId a, TaskId b) {
      const Task& ta = s.tasks[a];
      const Task& tb = s.tasks[b];
      return ta.nbytes != tb.nbytes ? ta.nbytes > tb.nbytes : ta.text.key() < tb.text.key();
    });
    for (const TaskId id : mine) {
      if (static_cast<double>(load[from]) <= mean) break;
      const std::uint64_t nb = s.tasks[id].nbytes;
      if (nb == 0) continue;
      Index to = kNone;
      for (const Index wi : targets) {
        if (wi == from || s.workers[wi].closing || s.holds(id, wi) || s.copy_pending(id, wi)) {
          continue;
        }
        if (to == kNone || load[wi] < load[to]) to = wi;
      }
      // Only below the mean, and only while the move narrows the gap between the two.
      if (to == kNone || static_cast<double>(load[to]) >= mean || load[to] + nb >= load[from]) {
        continue;
      }
      s.request_copy(op, id, to, from);
      load[from] -= nb;
      load[to] += nb;
    }
  }
  if (s.ops.at(op).outstanding == 0) s.finish_op(op);
}

void SchedulerState::on_keys_copied(PeerId worker, std::string_view key, std::uint64_t nbytes,
                                    double now) {
  Impl& s = *impl_;
  const Index wi = s.reporting_worker(worker, now);
  if (wi == kNone) return;
  std::vector<Impl::Transfer> waiting;
  if (auto it = s.transfers.find({worker, std::string(key)}); it != s.transfers.end()) {
    waiting = std::move(it->second);
    s.transfers.erase(it);
  }
  const TaskId id = s.find_task(key);
  const bool kept = id != kNone && s.tasks[id].state == TaskState::memory;
  if (kept) {
    if (s.tasks[id].nbytes == 0) s.tasks[id].nbytes = nbytes;
    s.add_holder(id, wi);
  } else {
    s.out.free_key(worker, key);  // released meanwhile (or never asked for)
  }
  for (const Impl::Transfer& tr : waiting) {
    if (kept && tr.move) {
      const Index from = s.find_worker(tr.from);
      if (from != kNone && from != wi && s.tasks[id].holders.size() > 1) s.drop_holder(id, from);
    }
    s.end_transfer(tr, kept ? Impl::CopyEnd::copied : Impl::CopyEnd::gone);
  }
}

void SchedulerState::on_copy_failed(PeerId worker, std::string_view key, double now) {
  Impl& s = *impl_;
  if (s.reporting_worker(worker, now) == kNone) return;
  auto it = s.transfers.find({worker, std::string(key)});
  if (it == s.transfers.end()) return;
  const std::vector<Impl::Transfer> waiting = std::move(it->second);
  s.transfers.erase(it);
  for (const Impl::Transfer& tr : waiting) s.end_transfer(tr, Impl::CopyEnd::failed);
}

void SchedulerState::on_restart(PeerId client, std::uint64_t request_id,
                                std::span<const PeerId> supervised) {
  Impl& s = *impl_;
  const std::size_t before = s.worker_index.size();
  const Index requester = s.find_client(client);
  ErrorInfo err;
  err.kind = ErrorKind::cancelled;
  err.type = "CancelledError";
  err.message = "the cluster restarted (restart requested by client " +
                (requester != kNone && !s.clients[requester].name.empty()
                     ? s.clients[requester].name
                     : std::to_string(client)) +
                ")";
  // Requests still moving data end now; their copies are moot.
  s.transfers.clear();
  while (!s.ops.empty()) {
    const Impl::Op op = s.ops.begin()->second;
    s.ops.erase(s.ops.begin());
    s.out.reply(op.client, op.request_id, {}, "the cluster restarted before this request ended");
  }
  // Every want goes (told as cancelled); with no wanter left, every record is forgotten.
  for (Index ci = 0; ci < s.clients.size(); ++ci) {
    Client& cl = s.clients[ci];
    if (!cl.alive) continue;
    while (!cl.wants.empty()) {
      const TaskId id = cl.wants.back().id;
      KeyReport r;
      r.key = s.tasks[id].text.key();
      r.status = KeyStatus::cancelled;
      r.error = &err;
      s.out.report(cl.peer, r);
      s.release_work.push_back(id);
      remove_link(s.wants_of(), ci, list_size(cl.wants) - 1, s.wanted_by_of());
    }
  }
  s.datasets.clear();
  s.dataset_refs.clear();
  s.drain_releases();
  std::vector<std::pair<PeerId, Index>> live(s.worker_index.begin(), s.worker_index.end());
  std::sort(live.begin(), live.end());
  for (const auto& [peer, wi] : live) {
    const bool exits = std::find(supervised.begin(), supervised.end(), peer) != supervised.end();
    s.out.restart_worker(peer, exits);
    if (exits) s.worker_left(wi, WorkerExit::graceful, "restarting");
  }
  const std::uint64_t op = s.new_op(Impl::OpKind::restart, client, request_id);
  s.ops.at(op).workers = before;
  s.check_restarts();
  s.schedule();
}

bool SchedulerState::is_scattered(std::string_view key) const {
  const TaskId id = impl_->find_task(key);
  return id != kNone && impl_->is_scattered_task(id);
}

bool SchedulerState::is_worker(PeerId peer) const { return impl_->find_worker(peer) != kNone; }

bool SchedulerState::is_client(PeerId peer) const { return impl_->find_client(peer) != kNone; }

std::optional<SchedulerState::TaskCall> SchedulerState::call_of(std::string_view key) const {
  const TaskId id = impl_->find_task(key);
  if (id == kNone) return std::nullopt;
  const Task& t = impl_->tasks[id];
  TaskCall c;
  c.name = impl_->names[t.name].name;
  c.args = std::string(t.text.args());
  for (const Link& l : t.deps) c.deps.emplace_back(impl_->tasks[l.id].text.key());
  return c;
}

std::optional<TaskState> SchedulerState::state_of(std::string_view key) const {
  const TaskId id = impl_->find_task(key);
  if (id == kNone) return std::nullopt;
  return impl_->tasks[id].state;
}

std::vector<std::string> SchedulerState::who_has(std::string_view key) const {
  std::vector<std::string> out;
  const TaskId id = impl_->find_task(key);
  if (id == kNone) return out;
  for (const Link& h : impl_->tasks[id].holders) out.push_back(impl_->workers[h.id].name);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<SchedulerState::WorkerSummary> SchedulerState::workers() const {
  std::vector<WorkerSummary> out;
  for (const auto& [peer, wi] : impl_->worker_index) {
    const Worker& w = impl_->workers[wi];
    WorkerSummary ws;
    ws.peer = peer;
    ws.name = w.name;
    ws.address = w.address;
    ws.nthreads = w.nthreads;
    ws.closing = w.closing;
    ws.paused = w.paused;
    ws.processing = w.processing.size();
    ws.held = w.has_what.size();
    for (const Link& l : w.has_what) ws.held_bytes += impl_->tasks[l.id].nbytes;
    ws.last_seen = w.last_seen;
    for (std::size_t r = 0; r < w.resources_total.size(); ++r) {
      if (w.resources_total[r] > 0) {
        ws.resources.push_back({impl_->resource_names[r], w.resources_total[r]});
      }
    }
    out.push_back(std::move(ws));
  }
  std::sort(out.begin(), out.end(),
            [](const WorkerSummary& a, const WorkerSummary& b) { return a.address < b.address; });
  return out;
}

std::vector<std::string> SchedulerState::holders_of(std::string_view key) const {
  std::vector<std::string> out;
  const TaskId id = impl_->find_task(key);
  if (id == kNone) return out;
  for (const Link& h : impl_->tasks[id].holders) out.push_back(impl_->workers[h.id].address);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> SchedulerState::keys_held_by(std::string_view address) const {
  std::vector<std::string> out;
  for (const auto& [peer, wi] : impl_->worker_index) {
    const Worker& w = impl_->workers[wi];
    if (w.address != address) continue;
    for (const Link& l : w.has_what) out.emplace_back(impl_->tasks[l.id].text.key());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t SchedulerState::task_count() const { return impl_->keys.size(); }

std::size_t SchedulerState::worker_count() const { return impl_->worker_index.size(); }

std::size_t SchedulerState::processing_on(PeerId worker) const {
  const Index wi = impl_->find_worker(worker);
  return wi == kNone ? 0 : impl_->workers[wi].processing.size();
}

std::size_t SchedulerState::queued_count() const { return impl_->queued; }

double SchedulerState::expected_duration(std::string_view task_name) const {
  auto it = impl_->name_index.find(task_name);
  if (it == impl_->name_index.end()) return impl_->opt.default_task_duration_s;
  return impl_->expected_duration(it->second);
}

const SchedulerCounters& SchedulerState::counters() const { return impl_->counters; }

std::optional<std::string> SchedulerState::validate() const { return impl_->validate(); }

}  // namespace plexus::sched
