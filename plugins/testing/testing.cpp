#include <plexus/sdk.hpp>
static int ok(int x) { return x; }
PLEXUS_PLUGIN(testing, "1.0.0", registry) { registry.add("ok", &ok); }
