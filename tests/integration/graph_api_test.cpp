// Task graphs end to end (plexus/graph.hpp: Graph, Node, Client::compute/persist, futures_of),
// over every transport like client_api_test: tcp and ipc against real daemon processes, inproc
// against a LocalCluster of threads in this process.
#include "support/process_cluster.hpp"
#include "support/transport_cluster.hpp"

#include <plexus/graph.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using I64 = std::int64_t;

class GraphApiTest : public TransportClusterTest {
 protected:
  /// Keys whose results some worker holds, according to the scheduler.
  std::vector<std::string> held(const std::vector<std::string>& keys) {
    std::vector<std::string> out;
    for (const auto& [key, where] : client().who_has(keys)) {
      if (!where.empty()) out.push_back(key);
    }
    return out;
  }

  /// Lines of a file written by testing.add_logged (one per run).
  std::vector<std::string> lines(const std::string& path) {
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) out.push_back(line.substr(0, line.find(' ')));
    return out;
  }
};

// a = 1 + 1; b = a + 10; c = a * 3; d = b + c.
struct Diamond {
  Graph g;
  Node<I64> a, b, c, d;
  Diamond() {
    a = g.add<I64>("math.inc", I64{1});
    b = g.add<I64>("math.add_int", a, I64{10});
    c = g.add<I64>("math.mul", a, I64{3});
    d = g.add<I64>("math.add_int", b, c);
  }
};

TEST_P(GraphApiTest, DiamondComputesAndOnlyTheOutputIsKept) {
  Diamond t;
  EXPECT_EQ(t.g.size(), 4u);
  ASSERT_EQ(t.g.sinks().size(), 1u);
  EXPECT_EQ(t.g.sinks()[0].key(), t.d.key());
  std::vector<Future<I64>> fs = client().compute(t.g, {t.d});
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].key(), t.d.key());
  EXPECT_EQ(fs[0].result(10s), 12 + 6);
  // The intermediates were released once d had them; d stays while its future lives.
  const std::vector<std::string> keys{std::string(t.a.key()), std::string(t.b.key()),
                                      std::string(t.c.key()), std::string(t.d.key())};
  EXPECT_THAT(held(keys), ::testing::ElementsAre(std::string(t.d.key())));
  fs.clear();
  // Released with the last future (the release travels asynchronously).
  for (int i = 0; i < 500 && !held(keys).empty(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_THAT(held(keys), IsEmpty());
}

TEST_P(GraphApiTest, NodeKeysEqualSubmitKeysAndIntermediatesAreNotSentTwice) {
  Diamond t;
  auto direct = client().submit<I64>("math.inc", I64{1});
  EXPECT_EQ(direct.key(), t.a.key());  // a node's key is the key of the same submit
  // a is held by `direct`: compute sends b, c and d only, which use a's result.
  EXPECT_EQ(client().compute(t.d).result(10s), 18);
  EXPECT_THAT(held({std::string(t.a.key())}), ::testing::ElementsAre(std::string(t.a.key())));
  EXPECT_EQ(client().compute(t.a).key(), direct.key());  // the same future
}

TEST_P(GraphApiTest, SameGraphBuiltTwiceReusesKeysAndResults) {
  const std::string log = (tmp_.path() / "runs").string();
  auto build = [&](Graph& g) {
    auto x = g.add<I64>("testing.add_logged", I64{1}, I64{2}, std::string("x"), log);
    auto y = g.add<I64>("testing.add_logged", x, I64{3}, std::string("y"), log);
    return g.add<I64>("testing.add_logged", x, y, std::string("z"), log);
  };
  Graph g1, g2;
  Node<I64> z1 = build(g1);
  Node<I64> z2 = build(g2);
  EXPECT_EQ(z1.key(), z2.key());
  auto f1 = client().compute(z1);
  EXPECT_EQ(f1.result(10s), 3 + 6);
  auto f2 = client().compute(z2);           // this client holds it: the same future
  auto f3 = second().compute(z2);           // another client: the scheduler's result
  EXPECT_EQ(f2.result(10s), 9);
  EXPECT_EQ(f3.result(10s), 9);
  EXPECT_THAT(lines(log), ::testing::UnorderedElementsAre("x", "y", "z"));  // each ran once
  // The same pure call twice in one Graph is one node.
  EXPECT_EQ(build(g1).key(), z1.key());
  EXPECT_EQ(g1.size(), 3u);
}

TEST_P(GraphApiTest, FuturesAndNodesMixAsArguments) {
  auto f = client().submit<I64>("math.inc", I64{5});  // 6
  Graph g;
  auto a = g.add<I64>("math.inc", I64{1});             // 2
  auto b = g.add<I64>(SubmitOptions{.priority = 2}, "math.add_int", a, f);  // 8
  auto squares = client().map<I64>("math.square", std::vector<I64>{1, 2});  // 1, 4
  auto s = g.add<I64>("math.sum", std::vector<Node<I64>>{a, b});            // 10
  auto t = g.add<I64>("math.sum", squares);                                 // 5
  auto u = g.add<I64>("math.add_int", s, t);                                // 15
  const std::string fkey(f.key());
  f = Future<I64>();  // the graph holds it while it may need it
  squares.clear();
  EXPECT_EQ(client().compute(g, {u})[0].result(10s), 15);
  EXPECT_EQ(client().compute(b).result(10s), 8);
  EXPECT_THAT(held({fkey}), ::testing::ElementsAre(fkey));
}

TEST_P(GraphApiTest, OutputsOfDifferentTypesAndUntypedSinks) {
  Graph g;
  auto n = g.add<I64>("math.inc", I64{41});
  auto s = g.add<std::string>("testing.echo", std::string("ann"));
  auto [fn, fs] = client().compute(n, s);
  EXPECT_EQ(fn.result(10s), 42);
  EXPECT_EQ(fs.result(10s), "ann");
  std::vector<Future<Encoded>> all = client().compute(g);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].key(), n.key());
  EXPECT_EQ(decode<I64>(all[0].result(10s).bytes), 42);
  EXPECT_EQ(Future<std::string>(all[1].state()).result(10s), "ann");
  EXPECT_THAT(client().compute(Graph()), IsEmpty());
}

TEST_P(GraphApiTest, PerNodeKeyAndPurity) {
  Graph g;
  auto named = g.add<I64>(SubmitOptions{.key = "my-answer"}, "math.inc", I64{41});
  auto impure = g.add<I64>(SubmitOptions{.pure = false}, "math.inc", named);
  auto again = g.add<I64>(SubmitOptions{.pure = false}, "math.inc", named);
  EXPECT_EQ(named.key(), "my-answer");
  EXPECT_NE(impure.key(), again.key());  // impure calls are separate nodes
  auto [fi, fa] = client().compute(impure, again);
  EXPECT_EQ(fi.result(10s), 43);
  EXPECT_EQ(fa.result(10s), 43);
  EXPECT_THAT(held({"my-answer"}), IsEmpty());  // an intermediate, though named
}

TEST_P(GraphApiTest, PlacementOptionsApplyPerNode) {
  client().wait_for_workers(2, 10s);
  const std::string there = client().scheduler_info().workers.at(1).address;
  Graph g;
  auto a = g.add<I64>(SubmitOptions{.workers = {there}}, "math.inc", I64{1});
  auto b = g.add<I64>(SubmitOptions{.workers = {there}}, "math.inc", a);
  auto c = g.add<I64>(SubmitOptions{.workers = {there}}, "math.inc", I64{10});
  auto [fb, fc] = client().compute(b, c);
  EXPECT_EQ(fb.result(10s), 3);
  EXPECT_EQ(fc.result(10s), 11);
  for (const auto& [key, where] : client().who_has(std::vector<Future<I64>>{fb, fc})) {
    EXPECT_THAT(where, ::testing::ElementsAre(there)) << key;
  }
  EXPECT_THROW(g.add<I64>(SubmitOptions{.workers = {""}}, "math.inc", I64{1}),
               std::invalid_argument);
  EXPECT_THROW(g.add<I64>(SubmitOptions{.resources = {{"GPU", -1}}}, "math.inc", I64{1}),
               std::invalid_argument);
  EXPECT_EQ(g.size(), 3u);
}

TEST_P(GraphApiTest, PersistKeepsResultsAndGraphsBuildOnThem) {
  const std::string log = (tmp_.path() / "runs").string();
  Graph g;
  auto x = g.add<I64>("testing.add_logged", I64{1}, I64{2}, std::string("x"), log);
  auto y = g.add<I64>("testing.add_logged", x, I64{10}, std::string("y"), log);
  EXPECT_FALSE(y.persisted());
  EXPECT_FALSE(y.future().valid());
  Node<I64> py = client().persist(y);
  EXPECT_TRUE(y.persisted());  // the same node
  EXPECT_EQ(py.key(), y.key());
  std::vector<Future<I64>> fs = futures_of(std::vector<Node<I64>>{y});
  ASSERT_EQ(fs.size(), 1u);
  EXPECT_EQ(fs[0].result(10s), 13);
  ASSERT_EQ(futures_of(g).size(), 1u);
  EXPECT_EQ(futures_of(g)[0].key(), y.key());
  EXPECT_THROW(futures_of(std::vector<Node<I64>>{x}), std::invalid_argument);
  EXPECT_THAT(held({std::string(x.key()), std::string(y.key())}),
              ::testing::ElementsAre(std::string(y.key())));
  fs.clear();
  // Built on y: x is not run again, and y's result is used.
  auto z = g.add<I64>("testing.add_logged", y, I64{100}, std::string("z"), log);
  EXPECT_EQ(client().compute(z).result(10s), 113);
  EXPECT_THAT(lines(log), ::testing::ElementsAre("x", "y", "z"));
  // A persisted graph: its sinks (z now) keep futures.
  Graph pg = client().persist(g);
  EXPECT_TRUE(z.persisted());
  EXPECT_EQ(futures_of(pg).size(), 2u);
  EXPECT_EQ(Future<I64>(futures_of(pg)[1].state()).result(10s), 113);
}

TEST_P(GraphApiTest, PersistedResultsGoWithTheirGraph) {
  std::string key;
  {
    Graph g;
    auto y = client().persist(g.add<I64>("math.inc", g.add<I64>("math.inc", I64{1})));
    EXPECT_EQ(y.future().result(10s), 3);
    key = y.key();
    EXPECT_THAT(held({key}), ::testing::ElementsAre(key));
  }
  for (int i = 0; i < 500 && !held({key}).empty(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_THAT(held({key}), IsEmpty());
}

TEST_P(GraphApiTest, TenThousandNodeSumTreeArrivesAndComputes) {
  // 5,000 leaves summed pairwise: 9,999 nodes, more than one Submit message's worth.
  Graph g;
  std::vector<Node<I64>> level;
  constexpr I64 kLeaves = 5000;
  for (I64 i = 0; i < kLeaves; ++i) level.push_back(g.add<I64>("math.noop", i));
  std::vector<std::string> intermediates;
  while (level.size() > 1) {
    std::vector<Node<I64>> next;
    for (std::size_t i = 0; i + 1 < level.size(); i += 2) {
      next.push_back(g.add<I64>("math.add_int", level[i], level[i + 1]));
    }
    if (level.size() % 2 == 1) next.push_back(level.back());
    for (const auto& n : level) intermediates.emplace_back(n.key());
    level = std::move(next);
  }
  ASSERT_EQ(g.size(), static_cast<std::size_t>(2 * kLeaves - 1));
  auto total = client().compute(level[0]);
  EXPECT_EQ(total.result(60s), kLeaves * (kLeaves - 1) / 2);
  std::sort(intermediates.begin(), intermediates.end());
  intermediates.erase(std::unique(intermediates.begin(), intermediates.end()),
                      intermediates.end());
  // None is kept: nodes needed across the message boundary were wanted only until it passed.
  for (int i = 0; i < 500 && !held(intermediates).empty(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_THAT(held(intermediates), IsEmpty());
  EXPECT_THAT(held({std::string(level[0].key())}), Not(IsEmpty()));
}

TEST_P(GraphApiTest, FailingNodeFailsItsDependents) {
  Graph g;
  auto bad = g.add<I64>("testing.fail", std::string("broken input"));
  auto mid = g.add<I64>("math.inc", bad);
  auto out = g.add<I64>("math.add_int", mid, g.add<I64>("math.inc", I64{1}));
  auto f = client().compute(out);
  try {
    f.result(10s);
    FAIL() << "expected the failure of " << bad.key();
  } catch (const TaskError& e) {
    EXPECT_EQ(e.key(), out.key());
    EXPECT_THAT(e.remote_message(), HasSubstr("broken input"));
  }
  // An unknown task fails its node and dependents as submit does.
  auto unknown = g.add<I64>("math.no_such_task", I64{1});
  auto after = client().compute(g.add<I64>("math.inc", unknown));
  EXPECT_THROW(after.result(10s), UnknownTaskError);
}

TEST_P(GraphApiTest, BadNodesAreClearErrors) {
  Graph g, other;
  auto a = g.add<I64>("math.inc", I64{1});
  auto foreign = other.add<I64>("math.inc", I64{2});
  auto expect_invalid = [](auto&& call, const std::string& words) {
    try {
      call();
      ADD_FAILURE() << "no error; expected one saying: " << words;
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr(words));
    }
  };
  expect_invalid([&] { g.add<I64>("math.add_int", a, foreign); }, "belongs to another Graph");
  expect_invalid([&] { client().compute(g, {foreign}); }, "belongs to another Graph");
  expect_invalid([&] { client().compute(a, foreign); }, "must share one Graph");
  expect_invalid([&] { client().compute(Node<I64>()); }, "empty (default-constructed) Node");
  expect_invalid([&] { g.add<I64>("math.inc", Node<I64>()); }, "empty (default-constructed)");
  expect_invalid([&] { g.add<I64>("math.inc", Future<I64>()); }, "empty (default-constructed)");
  expect_invalid([&] { client().submit<I64>("math.inc", a); }, "outside Graph::add");
  expect_invalid([&] { g.add<I64>("inc", I64{1}); }, "must be '<plugin>.<task>'");
  expect_invalid([&] { g.add<I64>(SubmitOptions{.key = std::string(a.key())}, "math.dec", 1); },
                 "already names");
  expect_invalid([&] { (void)Node<I64>().key(); }, "empty (default-constructed) Node");
  EXPECT_EQ(g.size(), 1u);  // nothing half-added
  EXPECT_EQ(client().compute(a).result(10s), 2);  // and the graph still works
}

TEST_P(GraphApiTest, ReadmeExample) {
  Client& client = this->client();
  // From README.md, "Task graphs".
  auto x = client.submit<std::int64_t>("math.inc", 10);
  plexus::Graph g;
  auto a = g.add<std::int64_t>("math.inc", 1);               // Node<int64_t>: nothing runs yet
  auto b = g.add<std::int64_t>("math.add_int", a, 5);        // a node as argument: a dependency
  auto c = g.add<std::int64_t>(plexus::SubmitOptions{.priority = 2}, "math.mul", b, x);
  auto s = g.add<std::int64_t>("math.sum", std::vector{a, b, c});  // fan-in
  plexus::Future<std::int64_t> fs = client.compute(s);      // s and its ancestors, one Submit
  auto m = g.add<double>("math.mean", std::vector<double>{1, 2});
  auto [fa, fm] = client.compute(a, m);                      // outputs of different types
  client.persist(b);                                         // b's result stays on the cluster...
  auto d = g.add<std::int64_t>("math.inc", b);               // ...and d uses it: a is not rerun
  std::vector<plexus::Future<std::int64_t>> held = plexus::futures_of(std::vector{b});
  // End of the README's code.
  EXPECT_EQ(fs.result(10s), 2 + 7 + 77);
  EXPECT_EQ(fa.result(10s), 2);
  EXPECT_DOUBLE_EQ(fm.result(10s), 1.5);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].result(10s), 7);
  EXPECT_EQ(client.compute(d).result(10s), 8);
}

INSTANTIATE_TEST_SUITE_P(Transports, GraphApiTest, ::testing::Values("tcp", "ipc", "inproc"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace plexus::testing
