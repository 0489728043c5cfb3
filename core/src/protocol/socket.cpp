#include <plexus/protocol/socket.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

namespace plexus::comm {

zmq::context_t& context() {
  // Never destroyed: sockets owned by detached or late threads must not outlive it.
  static auto* ctx = new zmq::context_t(1);
  return *ctx;
}

ContextCloser::~ContextCloser() {
  auto done = std::make_shared<std::promise<void>>();
  auto closed = done->get_future();
  // zmq_ctx_term waits for every socket to close and its linger to pass; a socket still open in
  // some thread would make it wait forever, so it runs aside and is waited for at most max_wait_.
  std::thread([done] {
    context().close();
    done->set_value();
  }).detach();
  closed.wait_for(max_wait_);
}

Transport transport_of(std::string_view address) {
  if (address.starts_with("tcp://")) return Transport::tcp;
  if (address.starts_with("ipc://")) return Transport::ipc;
  if (address.starts_with("inproc://")) return Transport::inproc;
  throw std::invalid_argument("unsupported address '" + std::string(address) +
                              "': expected tcp://host:port, ipc:///path or inproc://name");
}

std::string bind(zmq::socket_t& socket, const std::string& address) {
  std::string target = address;
  if (transport_of(address) == Transport::tcp) {
    auto colon = target.rfind(':');
    if (colon == std::string::npos || colon < 6) {
      throw std::invalid_argument("address '" + address + "' has no port (tcp://host:port)");
    }
    if (target.substr(colon + 1) == "0") target = target.substr(0, colon + 1) + "*";
  }
  try {
    socket.bind(target);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind " + address + ": " + e.what());
  }
  return socket.get(zmq::sockopt::last_endpoint);
}

std::string data_address_like(const std::string& scheduler_address, const std::string& tag) {
  static std::atomic<unsigned> counter{0};
  unsigned n = counter++;
  switch (transport_of(scheduler_address)) {
    case Transport::tcp: {
      std::string rest = scheduler_address.substr(6);
      auto colon = rest.rfind(':');
      std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
      if (host == "*" || host == "0.0.0.0") host = "127.0.0.1";
      return "tcp://" + host + ":0";
    }
    case Transport::ipc: {
      std::string path = scheduler_address.substr(6);
      auto slash = path.rfind('/');
      std::string dir = slash == std::string::npos ? std::string("/tmp") : path.substr(0, slash);
      if (dir.empty()) dir = "/tmp";
      return "ipc://" + dir + "/plexus-" + tag + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(n) + ".ipc";
    }
    case Transport::inproc:
      return "inproc://plexus-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(n);
  }
  return {};
}

void configure(zmq::socket_t& socket, int linger_ms, std::int64_t max_message_bytes) {
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  if (max_message_bytes > 0) socket.set(zmq::sockopt::maxmsgsize, max_message_bytes);
}

bool recv_multipart(zmq::socket_t& socket, std::vector<zmq::message_t>& frames, bool dontwait) {
  frames.clear();
  while (true) {
    zmq::message_t msg;
    auto flags = (frames.empty() && dontwait) ? zmq::recv_flags::dontwait : zmq::recv_flags::none;
    auto got = socket.recv(msg, flags);
    if (!got) return false;  // EAGAIN before the first frame
    bool more = msg.more();
    frames.push_back(std::move(msg));
    if (!more) return true;
  }
}

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error("eventfd failed");
}
Wakeup::~Wakeup() { ::close(fd_); }
void Wakeup::notify() {
  std::uint64_t one = 1;
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}
void Wakeup::drain() {
  std::uint64_t v;
  while (::read(fd_, &v, sizeof v) > 0) {
  }
}

std::string hex_id(const zmq::message_t& id) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  const auto* p = static_cast<const unsigned char*>(id.data());
  for (std::size_t i = 0; i < id.size(); ++i) {
    s.push_back(digits[p[i] >> 4]);
    s.push_back(digits[p[i] & 15]);
  }
  return s;
}

}  // namespace plexus::comm
