// The worker's data store: task results by key, in memory or spilled to disk (dask's zict
// Buffer of a fast dict and a slow on-disk one).
//
// Values in memory are kept in least-recently-used order (put and get count as uses). spill()
// writes the least recently used ones to files in the store's directory, one file per value,
// and drops them from memory; get() reads a spilled value back into memory (deleting its file)
// and returns it. A value that is also held outside the store (a running task reading it, a
// message still being sent) is never spilled, nor is an empty one: writing it would free no
// memory.
//
// Failures lose nothing: a write that fails (disk full, directory not writable) leaves the value
// in memory, removes the partial file, counts a write failure and logs a warning the first time
// only; a read that fails (file gone or damaged) drops the key and says why, so the caller can
// report it missing and have it recomputed.
//
//   plexus::worker::SpillStore store(dir / "plexus-worker-1234");
//   store.put("key", std::make_shared<const plexus::worker::Blob>(std::string(bytes)));
//   store.spill(store.memory_bytes());                 // everything not in use goes to disk
//   auto got = store.get("key");                       // read back; got.error says why not
//
// Thread safety: none; one thread (the worker's I/O thread) owns a SpillStore. The Values it
// hands out may be read from any thread.
#pragma once

#include <plexus/common/key_map.hpp>

#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <string>
#include <string_view>

namespace plexus::worker {

/// Immutable bytes of one stored value: owned as a string (computed or read back here), or by
/// another object that must stay alive while they are read (the network message they arrived
/// in, so that a fetched value is never copied).
class Blob {
 public:
  explicit Blob(std::string bytes) : str_(std::move(bytes)), view_(str_) {}
  /// `bytes` points into `owner`, which the Blob keeps alive.
  Blob(std::shared_ptr<const void> owner, std::string_view bytes)
      : owner_(std::move(owner)), view_(bytes) {}
  Blob(Blob&&) = delete;  // view_ may point into this object
  Blob& operator=(Blob&&) = delete;
  std::string_view view() const { return view_; }
  const char* data() const { return view_.data(); }
  std::size_t size() const { return view_.size(); }

 private:
  std::string str_;
  std::shared_ptr<const void> owner_;
  std::string_view view_;  // into str_ or owner_; a Blob never moves (always behind shared_ptr)
};
using Value = std::shared_ptr<const Blob>;

/// Totals since the store was made (logs, heartbeats, tests).
struct SpillCounters {
  std::uint64_t spilled = 0;         // values written to disk
  std::uint64_t spilled_bytes = 0;
  std::uint64_t unspilled = 0;       // values read back
  std::uint64_t unspilled_bytes = 0;
  std::uint64_t write_failures = 0;  // writes that failed; the value stayed in memory
  std::uint64_t read_failures = 0;   // reads that failed; the key was dropped
};

class SpillStore {
 public:
  /// Spilled values go to files in `directory`, created (with its parents) at the first spill.
  /// The destructor removes the files, and the directory if the store created it.
  explicit SpillStore(std::filesystem::path directory);
  ~SpillStore();
  SpillStore(const SpillStore&) = delete;
  SpillStore& operator=(const SpillStore&) = delete;

  /// Stores `value` under `key` in memory as the most recently used, replacing any older value
  /// (whose file, if it was spilled, is deleted).
  void put(std::string_view key, Value value);

  /// What get() found.
  struct Got {
    Value value;        // null if the key is unknown or could not be read back
    std::string error;  // why a spilled value could not be read back (the key is gone now)
  };
  /// The value of `key`, now the most recently used; a spilled value is read back into memory
  /// first and its file deleted.
  Got get(std::string_view key);

  /// Removes `key` from memory or from disk (deleting its file). Returns whether it was there.
  bool erase(std::string_view key);
  /// Removes every value (deleting the spilled files); returns how many there were.
  std::size_t clear();

  bool contains(std::string_view key) const { return index_.find(key) != index_.end(); }
  bool is_spilled(std::string_view key) const;
  /// The size of the value of `key`, in memory or on disk; 0 if unknown.
  std::uint64_t nbytes(std::string_view key) const;

  /// What spill() did.
  struct SpillOutcome {
    std::uint64_t bytes = 0;  // freed from memory
    std::size_t count = 0;    // values written
    bool failed = false;      // a write failed (that value stayed in memory); spilling stopped
  };
  /// Writes least recently used values to disk until `bytes` have left memory, none is left
  /// that is not in use elsewhere, or a write fails.
  SpillOutcome spill(std::uint64_t bytes);

  std::size_t size() const { return index_.size(); }
  std::size_t memory_count() const { return memory_.size(); }
  std::size_t disk_count() const { return disk_.size(); }
  /// Bytes of the values in memory: dask's managed memory.
  std::uint64_t memory_bytes() const { return memory_bytes_; }
  std::uint64_t disk_bytes() const { return disk_bytes_; }
  const SpillCounters& counters() const { return counters_; }
  const std::filesystem::path& directory() const { return directory_; }

 private:
  struct Node {
    std::string key;
    Value value;              // null while spilled
    std::uint64_t nbytes = 0;
    std::uint64_t file = 0;   // the file's number while spilled
  };
  using Nodes = std::list<Node>;

  void drop(Nodes::iterator node);
  std::filesystem::path file_path(std::uint64_t file) const;
  bool write_file(const Node& node, std::uint64_t file);

  std::filesystem::path directory_;
  bool created_directory_ = false;
  Nodes memory_;  // least recently used first
  Nodes disk_;
  // Keyed by views of the nodes' keys: list nodes never move, splicing included.
  tsl::robin_map<std::string_view, Nodes::iterator, KeyHash, std::equal_to<>> index_;
  std::uint64_t memory_bytes_ = 0;
  std::uint64_t disk_bytes_ = 0;
  std::uint64_t next_file_ = 1;
  SpillCounters counters_;
  bool warned_write_ = false;
};

}  // namespace plexus::worker
