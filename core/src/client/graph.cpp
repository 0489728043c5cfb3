// plexus::Graph and its nodes: building the graph on the client. Sending it is Client::compute
// (client.cpp).
#include "client/graph_data.hpp"

#include <plexus/common/task_key.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace plexus {

namespace client_detail {

void check_task_name(std::string_view name) {
  if (name.find('.') == std::string_view::npos) {
    throw std::invalid_argument("task name '" + std::string(name) +
                                "' must be '<plugin>.<task>', e.g. 'math.inc'");
  }
}

void check_options(const SubmitOptions& o) {
  for (const auto& w : o.workers) {
    if (w.empty()) throw std::invalid_argument("SubmitOptions::workers: an empty worker name");
  }
  for (const auto& [name, amount] : o.resources) {
    if (name.empty()) throw std::invalid_argument("SubmitOptions::resources: an empty name");
    if (!std::isfinite(amount) || amount < 0) {
      throw std::invalid_argument("SubmitOptions::resources: the amount of " + name + " (" +
                                  std::to_string(amount) + ") is not a number >= 0");
    }
  }
}

std::string call_key(const SubmitOptions& o, std::string_view name, std::string_view args) {
  if (!o.key.empty()) return o.key;
  return o.pure ? task_key(name, args) : random_task_key(name);
}

}  // namespace client_detail

namespace {

[[noreturn]] void throw_empty_node(std::string_view what) {
  throw std::invalid_argument(std::string(what) +
                              ": an empty (default-constructed) Node; nodes come from Graph::add");
}

}  // namespace

namespace detail {

void encode_node(Writer& w, const AnyNode& node, ArgCapture* capture) {
  if (!node.valid()) throw_empty_node("task argument");
  const std::string_view key = node.key();
  if (capture == nullptr) {
    throw std::invalid_argument(
        "node " + std::string(key) +
        " is an argument outside Graph::add: only nodes of its Graph can take it (compute it and "
        "pass its Future instead)");
  }
  if (capture->graph != node.graph_.get()) {
    throw std::invalid_argument("node " + std::string(key) +
                                " belongs to another Graph: a node's arguments must be nodes of "
                                "its own Graph (or futures)");
  }
  capture->nodes.push_back(node.index_);
  w.ref(key);
}

}  // namespace detail

// ---- AnyNode ----

std::string_view AnyNode::key() const {
  if (!graph_) throw_empty_node("Node::key");
  std::lock_guard lock(graph_->mu);
  return graph_->nodes[index_].key;
}

std::string_view AnyNode::task() const {
  if (!graph_) throw_empty_node("Node::task");
  std::lock_guard lock(graph_->mu);
  return graph_->nodes[index_].task;
}

bool AnyNode::persisted() const {
  if (!graph_) throw_empty_node("Node::persisted");
  std::lock_guard lock(graph_->mu);
  return static_cast<bool>(graph_->nodes[index_].persisted);
}

Graph AnyNode::graph() const {
  if (!graph_) throw_empty_node("Node::graph");
  return Graph(graph_);
}

detail::FutureRef AnyNode::persisted_future() const {
  if (!graph_) throw_empty_node("Node::future");
  std::lock_guard lock(graph_->mu);
  return graph_->nodes[index_].persisted;
}

// ---- Graph ----

Graph::Graph() : data_(std::make_shared<detail::GraphData>()) {}

detail::GraphData* Graph::prepare() {
  if (!data_) data_ = std::make_shared<detail::GraphData>();
  return data_.get();
}

std::size_t Graph::size() const {
  if (!data_) return 0;
  std::lock_guard lock(data_->mu);
  return data_->nodes.size();
}

std::vector<AnyNode> Graph::nodes() const {
  std::vector<AnyNode> out;
  if (!data_) return out;
  std::lock_guard lock(data_->mu);
  out.reserve(data_->nodes.size());
  for (std::uint32_t i = 0; i < data_->nodes.size(); ++i) out.push_back(AnyNode(data_, i));
  return out;
}

std::vector<AnyNode> Graph::sinks() const {
  std::vector<AnyNode> out;
  if (!data_) return out;
  std::lock_guard lock(data_->mu);
  for (std::uint32_t i = 0; i < data_->nodes.size(); ++i) {
    if (!data_->nodes[i].has_dependents) out.push_back(AnyNode(data_, i));
  }
  return out;
}

AnyNode Graph::add_encoded(const SubmitOptions& options, std::string_view task, std::string args,
                           std::vector<std::string> refs, detail::ArgCapture capture) {
  client_detail::check_task_name(task);
  client_detail::check_options(options);
  std::string key = client_detail::call_key(options, task, args);
  detail::GraphData& g = *data_;
  std::lock_guard lock(g.mu);
  if (auto it = g.by_key.find(key); it != g.by_key.end()) {
    // The same call again (a pure key is a hash of it): the same node, as dask's tokenize gives.
    const detail::GraphNode& n = g.nodes[it->second];
    if (n.task == task && n.args == args) return AnyNode(data_, it->second);
    throw std::invalid_argument("Graph::add: key '" + key + "' already names node " + n.task +
                                " with other arguments in this Graph");
  }
  if (g.nodes.size() >= std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("Graph::add: the graph is full (2^32 - 1 nodes)");
  }
  const auto index = static_cast<std::uint32_t>(g.nodes.size());
  detail::GraphNode& n = g.nodes.emplace_back();
  n.key = std::move(key);
  n.task = std::string(task);
  n.args = std::move(args);
  std::sort(refs.begin(), refs.end());
  refs.erase(std::unique(refs.begin(), refs.end()), refs.end());
  n.deps = std::move(refs);
  std::sort(capture.nodes.begin(), capture.nodes.end());
  capture.nodes.erase(std::unique(capture.nodes.begin(), capture.nodes.end()), capture.nodes.end());
  for (const std::uint32_t d : capture.nodes) g.nodes[d].has_dependents = true;
  n.node_deps = std::move(capture.nodes);
  n.futures = std::move(capture.futures);
  SubmitOptions per_task = client_detail::task_options(options);
  if (!g.last_options || !(*g.last_options == per_task)) {
    g.last_options = std::make_shared<const SubmitOptions>(std::move(per_task));
  }
  n.options = g.last_options;
  g.by_key.emplace(n.key, index);
  return AnyNode(data_, index);
}

std::vector<Future<Encoded>> futures_of(const Graph& graph) {
  std::vector<Future<Encoded>> out;
  if (!graph.data_) return out;
  std::lock_guard lock(graph.data_->mu);
  for (const auto& n : graph.data_->nodes) {
    if (n.persisted) out.emplace_back(n.persisted);
  }
  return out;
}

}  // namespace plexus
