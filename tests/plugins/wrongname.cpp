// Built as libplexus_wrongname.so but declares itself "othername": a worker asked for plugin
// "wrongname" must refuse it and name both.
#include <plexus/sdk.hpp>

#include <cstdint>

namespace {
std::int64_t identity(std::int64_t x) { return x; }
}  // namespace

PLEXUS_PLUGIN(othername, "1.0.0", registry) { registry.add("identity", &identity); }
