// The data behind plexus::Graph (sdk/include/plexus/graph.hpp), shared by graph.cpp, which builds
// it, and client.cpp, which sends it. Private to the client library.
#pragma once

#include <plexus/graph.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace plexus {

namespace detail {

/// One node: a task call, ready to send.
struct GraphNode {
  std::string key;
  std::string task;  // "plugin.name"
  std::string args;  // the encoded argument list; nodes and futures appear as their keys
  std::vector<std::string> deps;  // those keys, sorted, without repeats: the TaskSpec's deps
  std::vector<std::uint32_t> node_deps;  // the argument nodes, by index (all below this node's)
  // The futures among the arguments: held so that their keys stay on the cluster while the
  // graph may send a node that needs them.
  std::vector<FutureRef> futures;
  // Its per-task options (key and pure already made the key); nodes added with equal options
  // share one block.
  std::shared_ptr<const SubmitOptions> options;
  FutureRef persisted;          // set by Client::persist
  bool has_dependents = false;  // some node takes it as argument (the others are the sinks)
};

struct GraphData {
  // Guards everything below. Taken before ClientCore::mu, never after.
  mutable std::mutex mu;
  // A deque: nodes (and the keys that `by_key` and AnyNode::key() view) never move.
  std::deque<GraphNode> nodes;
  std::unordered_map<std::string_view, std::uint32_t> by_key;
  std::shared_ptr<const SubmitOptions> last_options;
};

}  // namespace detail

namespace client_detail {

/// The options a task carries to the scheduler once its key is made: `o` without key and pure.
inline SubmitOptions task_options(const SubmitOptions& o) {
  SubmitOptions t = o;
  t.key.clear();
  t.pure = true;
  return t;
}

/// Throws std::invalid_argument unless `name` looks like "<plugin>.<task>".
void check_task_name(std::string_view name);

/// Throws std::invalid_argument for options no task can run under (an empty worker name, a
/// resource without a name or with an amount that is not a number >= 0).
void check_options(const SubmitOptions& o);

/// The key of a call under `o`: o.key if set, else a hash of name and encoded arguments (pure)
/// or a fresh random key. Client::submit and Graph::add both use it.
std::string call_key(const SubmitOptions& o, std::string_view name, std::string_view args);

}  // namespace client_detail

}  // namespace plexus
