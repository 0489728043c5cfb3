// The [comm] settings every process applies to its sockets and to what it receives.
#pragma once

#include <plexus/protocol/wire.hpp>

#include <cstdint>

namespace plexus::config {
class Config;
}

namespace plexus::comm {

struct CommOptions {
  wire::VerifyLimits limits;                    // checks on every received buffer
  int linger_ms = 1000;                         // how long close() may wait for unsent messages
  std::int64_t max_message_bytes = 4294967296;  // larger incoming messages are refused
  std::uint64_t inline_threshold = 65536;       // results up to this size ride with "done"
};

/// Reads [comm] from a config.
CommOptions comm_options(const config::Config& config);

}  // namespace plexus::comm
