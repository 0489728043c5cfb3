// A plugin from a future SDK: its manifest starts with abi_version 999 and nothing after that
// field follows ABI 1. Every later field holds an invalid pointer, so a loader that reads anything
// but abi_version before checking it crashes instead of passing the test.
#include <plexus/abi.h>

#include <cstdint>

namespace {

struct FutureManifest {
  std::uint32_t abi_version;
  std::uint32_t flags;
  std::uintptr_t fields[6];
};

const FutureManifest kManifest = {999u, 0xdeadbeefu, {1, 1, 1, 1, ~std::uintptr_t{0}, 1}};

}  // namespace

extern "C" PLEXUS_PLUGIN_EXPORT const plexus_manifest* plexus_plugin_manifest(void) {
  return reinterpret_cast<const plexus_manifest*>(&kManifest);
}
