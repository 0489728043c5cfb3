// Task graphs: build a graph of named tasks on the client, then compute or persist it as one
// submission (dask.delayed with Client.compute, Client.persist and futures_of).
//
//   #include <plexus/graph.hpp>
//   auto x = client.submit<std::int64_t>("math.inc", 10);
//   plexus::Graph g;
//   auto a = g.add<std::int64_t>("math.inc", 1);              // a node: nothing runs yet
//   auto b = g.add<std::int64_t>("math.add_int", a, 5);       // a node as argument: a dependency
//   auto c = g.add<std::int64_t>(plexus::SubmitOptions{.priority = 2}, "math.mul", b, x);
//   auto s = g.add<std::int64_t>("math.sum", std::vector{a, b, c});   // fan-in
//   plexus::Future<std::int64_t> fs = client.compute(s);     // s, c, b and a in one message
//   auto m = g.add<double>("math.mean", std::vector<double>{1, 2});
//   auto [fa, fm] = client.compute(a, m);                     // outputs of different types
//   client.persist(b);                                        // b's result stays on the cluster
//   auto d = g.add<std::int64_t>("math.inc", b);              // ... and d uses it, not a again
//
// Nodes: Graph::add returns a typed handle, Node<T>, where T is the task's result type (as in
// Client::submit<T>). A node's arguments may be plain values, other nodes of the same Graph and
// Futures, also inside containers (a std::vector of nodes is a fan-in). A node can refer only to
// nodes that exist when it is added, so a Graph is acyclic by construction, and the order of
// adding is a dependency order.
//
// Keys: a node gets its key when added, the way Client::submit would: for a pure task (the
// default) a hash of the task name and the encoded arguments, in which argument nodes and
// futures appear as their keys. So the same graph built twice has the same keys, a node equals
// the submit of the same call, and the cluster reuses results it holds under those keys. Adding
// the same pure call twice to a Graph returns the same node. SubmitOptions work per node: key,
// pure, retries, priority and every other per-task field submit sends.
//
// Compute: only the outputs and the ancestors they need are sent, in one Submit message (past
// 8,192 tasks, in several of that size, the client's usual batch: nodes a later message needs
// are held for the client until it is sent), and ancestors whose keys the client holds a future
// for (persisted nodes among them) are not sent again. Only the outputs are
// wanted by the client: every other node sent is kept on the cluster while tasks that depend on it
// need it, then released (dask's behaviour). A node that fails fails its dependents with its
// error; an unknown task name fails the node (and its dependents) as submit does.
//
// Lifetime: a Graph is a handle; copies share the nodes, and nodes keep their Graph alive. The
// futures among the arguments and those of persisted nodes are held by the graph while it lives.
//
// Thread safety: Graph, Node and the compute/persist calls may be used from any threads at once.
#pragma once

#include <plexus/client.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace plexus {

namespace detail {
/// Installs `capture` as this thread's argument capture for one Graph::add; restores the
/// previous one (normally none) on exit, also when an argument fails to encode.
class ArgCaptureScope {
 public:
  explicit ArgCaptureScope(ArgCapture* capture) : previous_(arg_capture) { arg_capture = capture; }
  ~ArgCaptureScope() { arg_capture = previous_; }
  ArgCaptureScope(const ArgCaptureScope&) = delete;
  ArgCaptureScope& operator=(const ArgCaptureScope&) = delete;

 private:
  ArgCapture* previous_;
};
/// Encodes `node` as a reference to its key and records it in `capture`. Throws
/// std::invalid_argument for an empty node, outside Graph::add (capture null), or for a node of
/// another Graph.
void encode_node(Writer& w, const AnyNode& node, ArgCapture* capture);
}  // namespace detail

/// A node of a Graph, of any result type. Cheap to copy; copies name the same node.
class AnyNode {
 public:
  AnyNode() = default;
  /// False for a default-constructed node (one that no Graph::add returned).
  bool valid() const noexcept { return graph_ != nullptr; }
  /// The task key, e.g. "math.inc-3f2a..."; valid while the node (or its Graph) lives. Throws
  /// std::invalid_argument for an empty node, as do the other accessors.
  std::string_view key() const;
  /// The task name, e.g. "math.inc".
  std::string_view task() const;
  /// Whether Client::persist has backed this node with a future.
  bool persisted() const;
  /// The Graph this node belongs to.
  Graph graph() const;

 protected:
  AnyNode(std::shared_ptr<detail::GraphData> graph, std::uint32_t index)
      : graph_(std::move(graph)), index_(index) {}
  /// The future persist gave this node; empty if none.
  detail::FutureRef persisted_future() const;

 private:
  friend class Graph;
  friend class Client;
  friend void detail::encode_node(Writer&, const AnyNode&, detail::ArgCapture*);

  std::shared_ptr<detail::GraphData> graph_;
  std::uint32_t index_ = 0;
};

/// A node whose task returns T (a label the client trusts, as in Client::submit<T>).
template <class T>
class Node : public AnyNode {
 public:
  Node() = default;
  /// The future Client::persist gave this node, or an invalid Future (valid() is false) if it
  /// was not persisted.
  Future<T> future() const { return Future<T>(persisted_future()); }

 private:
  friend class Graph;
  explicit Node(AnyNode node) : AnyNode(std::move(node)) {}
};

/// A node as an argument of another node of its Graph: a reference to its key, the dependency
/// the worker receives as a value.
template <class T>
struct codec<Node<T>> {
  static std::string type_name() { return "node<" + codec<T>::type_name() + ">"; }
  static void encode(Writer& w, const Node<T>& n) {
    detail::encode_node(w, n, detail::arg_capture);
  }
};

/// A graph of tasks, built on the client and sent by Client::compute or Client::persist.
class Graph {
 public:
  Graph();

  /// Adds task `task` ("plugin.name") with `args` (values, nodes of this Graph, futures) and
  /// returns its node; nothing is sent. Throws std::invalid_argument for a malformed task name,
  /// a node of another Graph or an empty node or future among the arguments, and for an explicit
  /// SubmitOptions::key that already names a different node of this Graph.
  template <class R, class... A>
  Node<R> add(std::string_view task, const A&... args) {
    return add<R>(SubmitOptions{}, task, args...);
  }
  template <class R, class... A>
  Node<R> add(const SubmitOptions& options, std::string_view task, const A&... args) {
    detail::ArgCapture capture;
    capture.graph = prepare();
    Writer w;
    w.list(sizeof...(A));
    {
      detail::ArgCaptureScope scope(&capture);
      (detail::encode_arg(w, args), ...);
    }
    std::vector<std::string> refs = w.take_refs();
    return Node<R>(add_encoded(options, task, w.take(), std::move(refs), std::move(capture)));
  }

  /// How many nodes the graph has.
  std::size_t size() const;
  bool empty() const { return size() == 0; }
  /// Every node, in the order added (a dependency order).
  std::vector<AnyNode> nodes() const;
  /// The nodes no other node takes as argument, in the order added: what compute(graph) and
  /// persist(graph) take as outputs.
  std::vector<AnyNode> sinks() const;

 private:
  friend class AnyNode;
  friend class Client;
  friend std::vector<Future<Encoded>> futures_of(const Graph& graph);
  explicit Graph(std::shared_ptr<detail::GraphData> data) : data_(std::move(data)) {}

  /// The graph's data (made again if this Graph was moved from).
  detail::GraphData* prepare();
  AnyNode add_encoded(const SubmitOptions& options, std::string_view task, std::string args,
                      std::vector<std::string> refs, detail::ArgCapture capture);

  std::shared_ptr<detail::GraphData> data_;
};

/// The futures of every persisted node of `graph`, in the order the nodes were added (dask's
/// futures_of), untyped: `Future<T>(f.state())` gives a typed one.
std::vector<Future<Encoded>> futures_of(const Graph& graph);

/// The futures of persisted `nodes`, in order. Throws std::invalid_argument naming the first
/// node that was not persisted.
template <class T>
std::vector<Future<T>> futures_of(const std::vector<Node<T>>& nodes) {
  std::vector<Future<T>> out;
  out.reserve(nodes.size());
  for (const auto& n : nodes) {
    Future<T> f = n.future();
    if (!f.valid()) {
      throw std::invalid_argument("futures_of: node " + std::string(n.key()) +
                                  " was not persisted");
    }
    out.push_back(std::move(f));
  }
  return out;
}

// ---- Client's graph calls (declared in client.hpp) ----

template <class T>
Future<T> Client::compute(const Node<T>& output) {
  return Future<T>(std::move(compute_nodes(nullptr, {&output}, false, "compute").front()));
}

template <class A, class B, class... More>
std::tuple<Future<A>, Future<B>, Future<More>...> Client::compute(const Node<A>& a,
                                                                  const Node<B>& b,
                                                                  const Node<More>&... more) {
  std::vector<detail::FutureRef> refs =
      compute_nodes(nullptr, {&a, &b, &more...}, false, "compute");
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple<Future<A>, Future<B>, Future<More>...>(std::move(refs[I])...);
  }(std::index_sequence_for<A, B, More...>{});
}

template <class T>
std::vector<Future<T>> Client::compute(const std::vector<Node<T>>& outputs) {
  std::vector<const AnyNode*> nodes;
  nodes.reserve(outputs.size());
  for (const auto& n : outputs) nodes.push_back(&n);
  std::vector<Future<T>> out;
  out.reserve(outputs.size());
  for (auto& r : compute_nodes(nullptr, nodes, false, "compute")) out.emplace_back(std::move(r));
  return out;
}

template <class T>
std::vector<Future<T>> Client::compute(const Graph& graph, const std::vector<Node<T>>& outputs) {
  std::vector<const AnyNode*> nodes;
  nodes.reserve(outputs.size());
  for (const auto& n : outputs) nodes.push_back(&n);
  std::vector<Future<T>> out;
  out.reserve(outputs.size());
  for (auto& r : compute_nodes(&graph, nodes, false, "compute")) out.emplace_back(std::move(r));
  return out;
}

template <class T>
std::vector<Future<T>> Client::compute(const Graph& graph, std::initializer_list<Node<T>> outputs) {
  return compute(graph, std::vector<Node<T>>(outputs));
}

template <class T>
Node<T> Client::persist(const Node<T>& node) {
  compute_nodes(nullptr, {&node}, true, "persist");
  return node;
}

template <class T>
std::vector<Node<T>> Client::persist(const std::vector<Node<T>>& nodes) {
  std::vector<const AnyNode*> outputs;
  outputs.reserve(nodes.size());
  for (const auto& n : nodes) outputs.push_back(&n);
  compute_nodes(nullptr, outputs, true, "persist");
  return nodes;
}

}  // namespace plexus
