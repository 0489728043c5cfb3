// KeyMap<V>: the hash map for task keys on hot paths (client futures, worker store and tasks).
//
// Open addressing (tsl::robin_map, Debian's robin-map-dev) with the hash stored beside each
// entry, so a probe compares hashes before strings; transparent lookup, so a std::string_view
// taken from a received message finds its entry without building a std::string.
// Values move on rehash: keep no reference into the map across an insertion.
#pragma once

#include <tsl/robin_map.h>
#include <xxhash.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace plexus {

struct KeyHash {
  using is_transparent = void;
  // XXH3: about a third of the instructions of std::hash for a 48-byte task key.
  std::size_t operator()(std::string_view s) const noexcept {
    return static_cast<std::size_t>(XXH3_64bits(s.data(), s.size()));
  }
};

template <class V>
using KeyMap = tsl::robin_map<std::string, V, KeyHash, std::equal_to<>,
                              std::allocator<std::pair<std::string, V>>, /*StoreHash=*/true>;

}  // namespace plexus
