// ZeroMQ plumbing shared by the scheduler, workers and clients: the process-wide context (inproc
// needs one context), address handling, multipart send/receive and a cross-thread wake-up.
//
// Thread safety: context() may be called from any thread. A zmq::socket_t belongs to exactly one
// thread. Wakeup::notify() may be called from any thread; wait/drain from the owning loop only.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::comm {

/// The process-wide ZeroMQ context.
zmq::context_t& context();

enum class Transport { tcp, ipc, inproc };

/// Parses the scheme of an address; throws std::invalid_argument naming the address otherwise.
Transport transport_of(std::string_view address);

/// Binds `socket` to `address`, where tcp port 0 means "any free port", and returns the address
/// peers should connect to. Throws std::runtime_error naming the address on failure.
std::string bind(zmq::socket_t& socket, const std::string& address);

/// A fresh address for a worker's data socket on the same transport as `scheduler_address`.
std::string data_address_like(const std::string& scheduler_address, const std::string& tag);

/// Applies the common options: linger, max message size, no high-water-mark drops.
void configure(zmq::socket_t& socket, int linger_ms, std::int64_t max_message_bytes);

/// Receives every frame of one multipart message (non-blocking when `dontwait`); empty when
/// nothing was available.
bool recv_multipart(zmq::socket_t& socket, std::vector<zmq::message_t>& frames, bool dontwait);

/// A level-triggered cross-thread wake-up (eventfd), pollable alongside ZeroMQ sockets.
class Wakeup {
 public:
  Wakeup();
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;
  void notify();
  void drain();
  int fd() const { return fd_; }

 private:
  int fd_;
};

/// Hex form of a ZeroMQ routing id, for logs.
std::string hex_id(const zmq::message_t& id);

}  // namespace plexus::comm
