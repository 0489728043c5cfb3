// The math plugin: small arithmetic tasks used by the examples, the benchmarks and the tests.
#include <plexus/sdk.hpp>

#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace {

std::int64_t inc(std::int64_t x) { return x + 1; }
std::int64_t dec(std::int64_t x) { return x - 1; }
double add(double a, double b) { return a + b; }
std::int64_t add_int(std::int64_t a, std::int64_t b) { return a + b; }
std::int64_t mul(std::int64_t a, std::int64_t b) { return a * b; }
std::int64_t square(std::int64_t x) { return x * x; }
std::int64_t sum(const std::vector<std::int64_t>& xs) {
  return std::accumulate(xs.begin(), xs.end(), std::int64_t{0});
}
double mean(const std::vector<double>& xs) {
  if (xs.empty()) throw std::domain_error("mean of an empty list");
  return std::accumulate(xs.begin(), xs.end(), 0.0) / static_cast<double>(xs.size());
}
std::int64_t noop(std::int64_t x) { return x; }
std::vector<std::int64_t> range(std::int64_t n) {
  if (n < 0) throw std::invalid_argument("range of a negative count");
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

}  // namespace

PLEXUS_PLUGIN(math, "1.0.0", registry) {
  registry.add("inc", &inc)
      .add("dec", &dec)
      .add("add", &add)
      .add("add_int", &add_int)
      .add("mul", &mul)
      .add("square", &square)
      .add("sum", &sum)
      .add("mean", &mean)
      .add("noop", &noop)
      .add("range", &range);
}
