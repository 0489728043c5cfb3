// Error kinds shared by the scheduler, worker and client; mirrors plexus.wire.ErrorKind.
#pragma once

#include <cstdint>
#include <string>

namespace plexus {

enum class ErrorKind : std::uint8_t {
  exception = 0,
  unknown_task = 1,
  bad_arguments = 2,
  plugin_error = 3,
  killed_worker = 4,
  lost = 5,
  cancelled = 6,
  scheduler_error = 7,
};

/// A task failure as it travels: what kind, the remote exception type, message, traceback and
/// the worker it happened on.
struct ErrorInfo {
  ErrorKind kind = ErrorKind::exception;
  std::string type;
  std::string message;
  std::string traceback;
  std::string worker;
};

}  // namespace plexus
