#include <plexus/common/task_key.hpp>

#include <plexus/common/hex.hpp>

#include <unistd.h>
#include <xxhash.h>

#include <pthread.h>

#include <atomic>

#include <cstdint>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <string_view>

namespace plexus {
namespace {

// Writes the 36 characters of a random (version 4) UUID at `out`.
void put_uuid4(char* out);

struct XxhStateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

// Counts forks (in the child), so generators notice a fork without a getpid() syscall per key.
std::atomic<std::uint64_t> g_fork_generation{0};
void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

// A per-thread generator, reseeded when the process has forked since it was seeded: a child
// must not repeat its parent's sequence (and so its parent's keys).
class ThreadRandom {
 public:
  std::uint64_t next() {
    if (!seeded_ || generation_ != g_fork_generation.load(std::memory_order_relaxed)) seed();
    return engine_();
  }

 private:
  void seed() {
    static const bool registered = (::pthread_atfork(nullptr, nullptr, &on_fork_child), true);
    (void)registered;
    generation_ = g_fork_generation.load(std::memory_order_relaxed);
    std::random_device device;
    std::seed_seq seq{device(), device(), device(), device(),
                      device(), device(), device(), device()};
    engine_.seed(seq);
    seeded_ = true;
  }

  std::mt19937_64 engine_;
  std::uint64_t generation_ = 0;
  bool seeded_ = false;
};

}  // namespace

std::string task_key(std::string_view task_name, std::string_view encoded_args) {
  // Streamed, so that large arguments are not copied: the digest equals XXH3-128 over
  // name + '\0' + args. The '\0' keeps ("ab", "c...") apart from ("a", "bc...").
  // One hashing state per thread: XXH3_createState() allocates, and keys are made per task.
  thread_local std::unique_ptr<XXH3_state_t, XxhStateDeleter> state(XXH3_createState());
  if (!state) throw std::bad_alloc();
  const unsigned char separator = 0;
  XXH3_128bits_reset(state.get());
  XXH3_128bits_update(state.get(), task_name.data(), task_name.size());
  XXH3_128bits_update(state.get(), &separator, 1);
  XXH3_128bits_update(state.get(), encoded_args.data(), encoded_args.size());
  XXH128_hash_t hash = XXH3_128bits_digest(state.get());

  // The canonical form is big-endian high64 then low64 on every machine.
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, hash);
  std::string key(task_name.size() + 1 + 2 * sizeof canonical.digest, '-');
  task_name.copy(key.data(), task_name.size());
  put_hex(canonical.digest, sizeof canonical.digest, key.data() + task_name.size() + 1);
  return key;
}

std::string random_task_key(std::string_view task_name) {
  std::string key(task_name.size() + 1 + 36, '-');
  task_name.copy(key.data(), task_name.size());
  put_uuid4(key.data() + task_name.size() + 1);
  return key;
}

std::string uuid4() {
  std::string out(36, '-');
  put_uuid4(out.data());
  return out;
}

namespace {
void put_uuid4(char* out) {
  thread_local ThreadRandom random;
  unsigned char b[16];
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = random.next();
    for (int i = 0; i < 8; ++i) b[8 * half + i] = static_cast<unsigned char>(v >> (8 * i));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // variant 10 (RFC 4122)
  // 8-4-4-4-12 hex digits; the dashes are already in place.
  out = put_hex(b, 4, out) + 1;
  out = put_hex(b + 4, 2, out) + 1;
  out = put_hex(b + 6, 2, out) + 1;
  out = put_hex(b + 8, 2, out) + 1;
  put_hex(b + 10, 6, out);
}
}  // namespace

}  // namespace plexus
