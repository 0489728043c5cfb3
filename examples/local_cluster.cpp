// The main job: start a LocalCluster, run example plugin tasks on it, print the results.
#include <plexus/client.hpp>

#include <cstdint>
#include <iostream>
#include <vector>

int main() {
  try {
    plexus::Client client;  // no address: a LocalCluster of scheduler and worker processes
    std::cout << "LocalCluster scheduler at " << client.scheduler_address() << "\n";

    auto x = client.submit<std::int64_t>("math.inc", 10);
    auto y = client.submit<std::int64_t>("math.inc", x);  // depends on x, runs on a worker
    std::cout << "math.inc(10) = " << x.result() << "\n";
    std::cout << "math.inc(math.inc(10)) = " << y.result() << "\n";

    std::vector<std::int64_t> xs(100);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<std::int64_t>(i);
    auto squares = client.map<std::int64_t>("math.square", xs);
    auto total = client.submit<std::int64_t>("math.sum", squares);  // a list of futures
    std::cout << "sum of squares 0..99 = " << total.result() << "\n";

    auto mean = client.submit<double>("math.mean", std::vector<double>{1.5, 2.5, 3.5});
    std::cout << "math.mean([1.5, 2.5, 3.5]) = " << mean.result() << "\n";

    try {
      client.submit<std::int64_t>("math.nope", 1).result();
    } catch (const plexus::UnknownTaskError& e) {
      std::cout << "unknown task, as expected: " << e.remote_message() << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "example failed: " << e.what() << "\n";
    return 1;
  }
}
