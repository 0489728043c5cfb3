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

/// Closes the process-wide context when it goes out of scope, so that messages still queued on
/// closed sockets (a Goodbye, the last results, a Shutdown) leave within their linger before the
/// process exits; without it they are dropped. Waits at most `max_wait`, even if a socket is still
/// open somewhere. For a daemon's main: declare it before the objects that own sockets.
class ContextCloser {
 public:
  explicit ContextCloser(std::chrono::milliseconds max_wait) : max_wait_(max_wait) {}
  ContextCloser(const ContextCloser&) = delete;
  ContextCloser& operator=(const ContextCloser&) = delete;
  ~ContextCloser();

 private:
  std::chrono::milliseconds max_wait_;
};

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
