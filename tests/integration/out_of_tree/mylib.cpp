// The README's plugin example, verbatim: built out of tree against the installed SDK.
#include <plexus/sdk.hpp>
static int square(int x) { return x * x; }
static std::string greet(const std::string& who) { return "hello " + who; }
PLEXUS_PLUGIN(mylib, "0.1.0", registry) {
  registry.add("square", &square);      // task name "mylib.square"
  registry.add("greet", &greet);
}
