#include <plexus/protocol/comm_options.hpp>

#include <plexus/config/config.hpp>

namespace plexus::comm {

CommOptions comm_options(const config::Config& c) {
  CommOptions o;
  o.limits.max_depth = static_cast<std::uint32_t>(c.get_int("comm.verify-max-depth"));
  o.limits.max_tables = static_cast<std::uint32_t>(c.get_int("comm.verify-max-tables"));
  o.linger_ms = static_cast<int>(c.get_int("comm.linger-ms"));
  o.max_message_bytes = c.get_int("comm.max-message-bytes");
  o.inline_threshold = static_cast<std::uint64_t>(c.get_int("comm.inline-threshold-bytes"));
  return o;
}

}  // namespace plexus::comm
