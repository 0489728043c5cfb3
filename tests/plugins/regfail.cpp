// Registration fails: the same task name is registered twice, so the manifest carries an error
// and no tasks.
#include <plexus/sdk.hpp>

#include <cstdint>

namespace {
std::int64_t one(std::int64_t) { return 1; }
std::int64_t two(std::int64_t) { return 2; }
}  // namespace

PLEXUS_PLUGIN(regfail, "1.0.0", registry) { registry.add("dup", &one).add("dup", &two); }
