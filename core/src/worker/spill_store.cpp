#include <plexus/worker/spill_store.hpp>

#include <plexus/common/logging.hpp>

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace plexus::worker {

namespace {

// Closes a descriptor when it goes out of scope.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

}  // namespace

SpillStore::SpillStore(std::filesystem::path directory) : directory_(std::move(directory)) {}

SpillStore::~SpillStore() {
  std::error_code ec;
  if (created_directory_) {
    std::filesystem::remove_all(directory_, ec);
    return;
  }
  for (const Node& n : disk_) std::filesystem::remove(file_path(n.file), ec);
}

std::filesystem::path SpillStore::file_path(std::uint64_t file) const {
  // Numbered, not named after keys: keys may hold any bytes.
  return directory_ / (std::to_string(file) + ".bin");
}

void SpillStore::put(std::string_view key, Value value) {
  if (auto it = index_.find(key); it != index_.end()) drop(it->second);
  const std::uint64_t n = value->size();
  memory_.push_back(Node{std::string(key), std::move(value), n, 0});
  const auto node = std::prev(memory_.end());
  index_.emplace(std::string_view(node->key), node);
  memory_bytes_ += n;
}

SpillStore::Got SpillStore::get(std::string_view key) {
  const auto it = index_.find(key);
  if (it == index_.end()) return {};
  const Nodes::iterator node = it->second;
  if (node->value) {
    memory_.splice(memory_.end(), memory_, node);  // most recently used now
    return {node->value, {}};
  }
  // Read back from disk.
  const std::filesystem::path path = file_path(node->file);
  std::string error;
  std::string bytes;
  {
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    struct stat st {};
    if (f.fd < 0) {
      error = "cannot open " + path.string() + ": " + errno_text(errno);
    } else if (::fstat(f.fd, &st) != 0) {
      error = "cannot stat " + path.string() + ": " + errno_text(errno);
    } else if (static_cast<std::uint64_t>(st.st_size) != node->nbytes) {
      error = path.string() + " holds " + std::to_string(st.st_size) + " bytes, expected " +
              std::to_string(node->nbytes);
    } else {
      bytes.resize(node->nbytes);
      std::size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t r = ::read(f.fd, bytes.data() + done, bytes.size() - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          error = "cannot read " + path.string() + ": " +
                  (r < 0 ? errno_text(errno) : std::string("unexpected end of file"));
          break;
        }
        done += static_cast<std::size_t>(r);
      }
    }
  }
  if (!error.empty()) {
    ++counters_.read_failures;
    logger("worker")->error("spilled value lost key={}: {}", key, error);
    drop(node);
    return {nullptr, std::move(error)};
  }
  std::error_code ec;
  std::filesystem::remove(path, ec);
  node->value = std::make_shared<const Blob>(std::move(bytes));
  node->file = 0;
  disk_bytes_ -= node->nbytes;
  memory_bytes_ += node->nbytes;
  memory_.splice(memory_.end(), disk_, node);
  ++counters_.unspilled;
  counters_.unspilled_bytes += node->nbytes;
  return {node->value, {}};
}

bool SpillStore::erase(std::string_view key) {
  const auto it = index_.find(key);
  if (it == index_.end()) return false;
  drop(it->second);
  return true;
}

std::size_t SpillStore::clear() {
  const std::size_t n = index_.size();
  while (!memory_.empty()) drop(memory_.begin());
  while (!disk_.empty()) drop(disk_.begin());
  return n;
}

void SpillStore::drop(Nodes::iterator node) {
  index_.erase(std::string_view(node->key));
  if (node->value) {
    memory_bytes_ -= node->nbytes;
    memory_.erase(node);
  } else {
    std::error_code ec;
    std::filesystem::remove(file_path(node->file), ec);
    disk_bytes_ -= node->nbytes;
    disk_.erase(node);
  }
}

bool SpillStore::is_spilled(std::string_view key) const {
  const auto it = index_.find(key);
  return it != index_.end() && !it->second->value;
}

std::uint64_t SpillStore::nbytes(std::string_view key) const {
  const auto it = index_.find(key);
  return it == index_.end() ? 0 : it->second->nbytes;
}

bool SpillStore::write_file(const Node& node, std::uint64_t file) {
  std::string error;
  if (!created_directory_) {
    std::error_code ec;
    if (std::filesystem::create_directories(directory_, ec)) {
      created_directory_ = true;
    } else if (ec) {
      error = "cannot create " + directory_.string() + ": " + ec.message();
    }
  }
  const std::filesystem::path path = file_path(file);
  if (error.empty()) {
    Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    if (f.fd < 0) {
      error = "cannot create " + path.string() + ": " + errno_text(errno);
    } else {
      const std::string_view bytes = node.value->view();
      std::size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t w = ::write(f.fd, bytes.data() + done, bytes.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          error = "cannot write " + path.string() + ": " +
                  (w < 0 ? errno_text(errno) : std::string("no progress"));
          break;
        }
        done += static_cast<std::size_t>(w);
      }
      const int fd = f.fd;
      f.fd = -1;
      if (::close(fd) != 0 && error.empty()) {  // e.g. EDQUOT or EIO reported at close
        error = "cannot write " + path.string() + ": " + errno_text(errno);
      }
    }
    if (!error.empty()) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
  if (error.empty()) return true;
  ++counters_.write_failures;
  auto log = logger("worker");
  if (!warned_write_) {
    warned_write_ = true;
    log->warn("cannot spill to disk, results stay in memory: {} (further failures are logged "
              "at debug level)",
              error);
  } else {
    log->debug("spill failed: {}", error);
  }
  return false;
}

SpillStore::SpillOutcome SpillStore::spill(std::uint64_t bytes) {
  SpillOutcome out;
  auto node = memory_.begin();
  while (out.bytes < bytes && node != memory_.end()) {
    const auto next = std::next(node);
    // Held elsewhere too (a running task, a message being sent), or empty: writing it frees
    // nothing.
    if (node->value.use_count() > 1 || node->nbytes == 0) {
      node = next;
      continue;
    }
    const std::uint64_t file = next_file_++;
    if (!write_file(*node, file)) {
      out.failed = true;
      break;
    }
    node->value.reset();
    node->file = file;
    memory_bytes_ -= node->nbytes;
    disk_bytes_ += node->nbytes;
    disk_.splice(disk_.end(), memory_, node);
    ++counters_.spilled;
    counters_.spilled_bytes += node->nbytes;
    out.bytes += node->nbytes;
    ++out.count;
    node = next;
  }
  return out;
}

}  // namespace plexus::worker
