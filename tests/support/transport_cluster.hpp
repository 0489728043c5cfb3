// A fixture base for tests run over every transport: one cluster per test on the transport named
// by the parameter ("tcp" and "ipc": real daemon processes; "inproc": a LocalCluster of threads
// in this process), with two workers of two threads each, and a client connected to it.
//
//   class MyTest : public plexus::testing::TransportClusterTest {};
//   TEST_P(MyTest, X) { client().submit<...>(...); }
//   INSTANTIATE_TEST_SUITE_P(Transports, MyTest, ::testing::Values("tcp", "ipc", "inproc"));
//
// TearDown checks that no daemon outlived the cluster.
#pragma once

#include "support/process_cluster.hpp"
#include "support/subprocess.hpp"

#include <plexus/client.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace plexus::testing {

class TransportClusterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& transport = GetParam();
    if (transport == "inproc") {
      client_ = std::make_unique<Client>(LocalClusterOptions{
          .n_workers = 2, .threads_per_worker = 2, .transport = "inproc", .processes = false});
    } else {
      cluster_ = std::make_unique<ProcessCluster>(
          ProcessClusterOptions{.transport = transport, .n_workers = 2, .nthreads = 2});
      client_ = std::make_unique<Client>(cluster_->address());
    }
  }

  void TearDown() override {
    second_.reset();
    if (client_) client_->close();
    client_.reset();
    if (cluster_) {
      EXPECT_THAT(cluster_->stop_and_list_left(), ::testing::IsEmpty()) << "daemons left";
      cluster_.reset();
    }
  }

  Client& client() { return *client_; }
  /// A second client on the same cluster.
  Client& second() {
    if (!second_) second_ = std::make_unique<Client>(client_->scheduler_address());
    return *second_;
  }

  TempDir tmp_;
  std::unique_ptr<ProcessCluster> cluster_;  // null for inproc
  std::unique_ptr<Client> client_;
  std::unique_ptr<Client> second_;
};

}  // namespace plexus::testing
