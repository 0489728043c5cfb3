// Everything a user or a peer can get wrong: unknown tasks and plugins, wrong argument types,
// plugins that throw or were built for another SDK, garbage on the scheduler's socket, broken
// config files and an unreachable scheduler. Each must give a typed, informative error and leave
// the daemons serving.
#include "support/process_cluster.hpp"
#include "support/subprocess.hpp"

#include <plexus/abi.h>
#include <plexus/client.hpp>
#include <plexus/protocol/socket.hpp>
#include <plexus/protocol/wire.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace plexus::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::HasSubstr;

class BadInputTest : public ::testing::Test {
 protected:
  void start(ProcessClusterOptions options = {}) {
    cluster_ = std::make_unique<ProcessCluster>(std::move(options));
    client_ = std::make_unique<Client>(cluster_->address());
  }

  void TearDown() override {
    if (client_) client_->close();
    client_.reset();
    if (cluster_) {
      EXPECT_THAT(cluster_->stop_and_list_left(), ::testing::IsEmpty()) << "daemons left";
    }
  }

  /// Runs the future to completion and returns the exception it holds, rethrown as E.
  template <class E, class T>
  static E failure_of(const Future<T>& f) {
    try {
      f.result(10s);
    } catch (const E& e) {
      return e;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "wrong exception type: " << e.what();
      throw;
    }
    ADD_FAILURE() << "task " << f.key() << " did not fail";
    throw std::logic_error("no failure");
  }

  std::unique_ptr<ProcessCluster> cluster_;
  std::unique_ptr<Client> client_;
};

TEST_F(BadInputTest, UnknownTaskNamesTaskAndSearchedDirectories) {
  start();
  auto e = failure_of<UnknownTaskError>(
      client_->submit<std::int64_t>("math.no_such_task", std::int64_t{1}));
  EXPECT_EQ(e.kind(), TaskError::Kind::unknown_task);
  EXPECT_THAT(std::string(e.what()), HasSubstr("math.no_such_task"));
  EXPECT_THAT(std::string(e.what()), HasSubstr(PLEXUS_TEST_PLUGIN_DIR));
}

TEST_F(BadInputTest, UnknownPluginNamesPluginAndSearchedDirectories) {
  start();
  auto e = failure_of<UnknownTaskError>(
      client_->submit<std::int64_t>("nosuchplugin.f", std::int64_t{1}));
  EXPECT_THAT(std::string(e.what()), HasSubstr("nosuchplugin"));
  EXPECT_THAT(std::string(e.what()), HasSubstr(PLEXUS_TEST_PLUGIN_DIR));
}

TEST_F(BadInputTest, WrongArgumentTypeNamesExpectedAndReceived) {
  start();
  auto e = failure_of<TypeMismatchError>(
      client_->submit<std::int64_t>("math.inc", std::string("seven")));
  EXPECT_EQ(e.kind(), TaskError::Kind::bad_arguments);
  EXPECT_THAT(std::string(e.what()), AllOf(HasSubstr("int64"), HasSubstr("string")));
  // The worker survives and still serves.
  EXPECT_EQ(client_->submit<std::int64_t>("math.inc", std::int64_t{1}).result(10s), 2);
}

TEST_F(BadInputTest, PluginExceptionKeepsItsTypeAndMessage) {
  start();
  auto e = failure_of<TaskError>(
      client_->submit<std::int64_t>("testing.throw_custom", std::string("custom boom")));
  EXPECT_EQ(e.kind(), TaskError::Kind::exception);
  EXPECT_THAT(e.remote_type(), HasSubstr("CustomError"));
  EXPECT_THAT(e.remote_message(), HasSubstr("custom boom"));
  EXPECT_THAT(std::string(e.what()), HasSubstr("custom boom"));
  EXPECT_FALSE(e.worker().empty());
}

TEST_F(BadInputTest, NonStandardExceptionIsATaskError) {
  start();
  auto e = failure_of<TaskError>(client_->submit<std::int64_t>("testing.throw_int"));
  EXPECT_EQ(e.kind(), TaskError::Kind::exception);
  EXPECT_EQ(client_->submit<std::int64_t>("math.inc", std::int64_t{1}).result(10s), 2);
}

TEST_F(BadInputTest, PluginWithAnotherAbiNamesBothVersions) {
  start({.plugin_path = {PLEXUS_TEST_BAD_PLUGIN_DIR}});
  auto e = failure_of<PluginError>(client_->submit<std::int64_t>("badabi.anything"));
  EXPECT_EQ(e.kind(), TaskError::Kind::plugin_error);
  EXPECT_THAT(std::string(e.what()),
              AllOf(HasSubstr("SDK ABI 999"),
                    HasSubstr("SDK ABI " + std::to_string(PLEXUS_SDK_ABI_VERSION))));
  EXPECT_THAT(std::string(e.what()), HasSubstr("badabi"));
  EXPECT_EQ(client_->submit<std::int64_t>("math.inc", std::int64_t{1}).result(10s), 2);
}

// ---- garbage on the scheduler's ROUTER ----

class RawPeer {
 public:
  explicit RawPeer(const std::string& address) : socket_(comm::context(), zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(address);
  }
  void send(std::string_view bytes) {
    socket_.send(zmq::const_buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
  }
  /// The reasons of the ProtocolError messages in the next reply; fails the test on timeout or
  /// on a reply that does not verify.
  std::vector<std::string> protocol_errors(std::chrono::milliseconds timeout = 5s) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) {
      ADD_FAILURE() << "no reply from the scheduler within " << timeout.count() << " ms";
      return {};
    }
    std::vector<zmq::message_t> frames;
    comm::recv_multipart(socket_, frames, false);
    if (frames.empty()) {
      ADD_FAILURE() << "empty reply";
      return {};
    }
    const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), {});
    if (batch == nullptr || batch->messages() == nullptr) {
      ADD_FAILURE() << "the reply does not verify";
      return {};
    }
    std::vector<std::string> reasons;
    for (const wire::Envelope* env : *batch->messages()) {
      EXPECT_EQ(env->msg_type(), wire::Msg::ProtocolError);
      if (const auto* pe = env->msg_as_ProtocolError()) {
        reasons.emplace_back(wire::view(pe->reason()));
      }
    }
    return reasons;
  }

 private:
  zmq::socket_t socket_;
};

std::string heartbeat_batch() {
  wire::OutBatch b;
  b.add(wire::CreateHeartbeat(b.fbb(), 1, 2, 3));
  return std::string(b.finish());
}

TEST_F(BadInputTest, MalformedMessagesGetProtocolErrorAndSchedulerKeepsServing) {
  start();
  RawPeer peer(cluster_->address());

  std::mt19937 rng(12345);
  std::string noise(200, '\0');
  for (char& c : noise) c = static_cast<char>(rng() & 0xff);
  peer.send(noise);
  auto reasons = peer.protocol_errors();
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_THAT(reasons[0], HasSubstr("malformed"));

  const std::string valid = heartbeat_batch();
  peer.send(std::string_view(valid).substr(0, valid.size() / 2));
  EXPECT_EQ(peer.protocol_errors().size(), 1u);

  peer.send(std::string_view());
  EXPECT_EQ(peer.protocol_errors().size(), 1u);

  peer.send(valid);  // well formed, but before any Hello
  reasons = peer.protocol_errors();
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_THAT(reasons[0], HasSubstr("Hello"));

  // A second, independent client is served normally, and so is the one connected before.
  Client other(cluster_->address());
  EXPECT_EQ(other.submit<std::int64_t>("math.square", std::int64_t{9}).result(10s), 81);
  EXPECT_EQ(client_->submit<std::int64_t>("math.inc", std::int64_t{9}).result(10s), 10);
  EXPECT_TRUE(cluster_->scheduler().running());
}

// ---- bad scatters ----

TEST_F(BadInputTest, PutDataWithMissingValuesIsRefusedAndTheWorkerKeepsServing) {
  start();
  client_->wait_for_workers(1, 20s);
  const std::string worker = client_->scheduler_info().workers.at(0).address;
  zmq::socket_t raw(comm::context(), zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(worker);
  wire::OutBatch b;
  const std::vector<std::string> keys{"int64-a", "int64-b"};
  b.add(wire::CreatePutData(b.fbb(), 7, b.strs(keys)));
  const auto bytes = b.finish();
  raw.send(zmq::const_buffer(bytes.data(), bytes.size()), zmq::send_flags::sndmore);
  raw.send(zmq::str_buffer("one value only"), zmq::send_flags::none);
  zmq::pollitem_t item{raw.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, 10s), 1) << "no answer from the worker";
  std::vector<zmq::message_t> frames;
  comm::recv_multipart(raw, frames, false);
  ASSERT_FALSE(frames.empty());
  const wire::Batch* batch = wire::verify_batch(frames[0].data(), frames[0].size(), {});
  ASSERT_TRUE(batch && batch->messages() && batch->messages()->size() == 1);
  const auto* stored = batch->messages()->Get(0)->msg_as_DataStored();
  ASSERT_NE(stored, nullptr);
  EXPECT_EQ(stored->request_id(), 7u);
  EXPECT_EQ(wire::view(stored->error()), "PutData announces 2 values but carries 1");
  EXPECT_THAT(client_->has_what().at(worker), ::testing::IsEmpty());
  // Scattering to a worker that is not connected is refused before anything is sent.
  EXPECT_THROW(client_->scatter(std::int64_t{1}, {.workers = {"tcp://127.0.0.1:1"}}),
               std::invalid_argument);
  auto x = client_->scatter(std::int64_t{5});
  EXPECT_EQ(client_->submit<std::int64_t>("math.inc", x).result(10s), 6);
}

// ---- configuration files ----

TEST(ConfigFileTest, MissingConfigFileIsNamed) {
  auto r = run_command({bin("plexus-scheduler"), "--config", "/nonexistent/plexus.toml"},
                       {.timeout = 10s});
  ASSERT_FALSE(r.timed_out);
  ASSERT_TRUE(r.exit_code.has_value());
  EXPECT_NE(*r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/plexus.toml"));
}

TEST(ConfigFileTest, UnknownKeyNamesFileLineAndKey) {
  TempDir tmp;
  const std::string path = tmp.file("bad.toml");
  {
    std::ofstream out(path);
    out << "[scheduler]\n"
           "heartbeat-interval-ms = 500\n"
           "no-such-key = 1\n";
  }
  auto r = run_command({bin("plexus-scheduler"), "--config", path, "--address",
                        "tcp://127.0.0.1:0"},
                       {.timeout = 10s});
  ASSERT_FALSE(r.timed_out);
  ASSERT_TRUE(r.exit_code.has_value());
  EXPECT_NE(*r.exit_code, 0);
  EXPECT_THAT(r.err, AllOf(HasSubstr(path + ":3"), HasSubstr("no-such-key")));
}

// ---- an unreachable scheduler ----

TEST(ConnectTest, ClosedPortGivesConnectionErrorQuickly) {
  const std::string address = "tcp://127.0.0.1:" + std::to_string(closed_tcp_port());
  ::setenv("PLEXUS__CLIENT__CONNECT_TIMEOUT_MS", "300", 1);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(Client{address}, ConnectionError);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ::unsetenv("PLEXUS__CLIENT__CONNECT_TIMEOUT_MS");
  EXPECT_LT(elapsed, 3s);
}

}  // namespace
}  // namespace plexus::testing
