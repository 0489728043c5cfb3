// Exceptions thrown by the client API. Every one derives from plexus::Error.
//
//   try {
//     client.submit<int>("mylib.square", 7).result();
//   } catch (const plexus::UnknownTaskError& e) {   // the task name is not known to the worker
//   } catch (const plexus::TaskError& e) {          // any remote failure: e.key(), e.worker(),
//   }                                               // e.remote_type(), e.remote_message()
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

namespace plexus {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A wait with a timeout ran out; the future is still pending and usable.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The scheduler could not be reached, refused this client, or went away.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

/// The result exists but does not decode as the type the future was declared with.
class ResultTypeError : public Error {
 public:
  using Error::Error;
};

/// A task failed remotely, or could not run. what() reads
/// "<key>: <remote_type>: <remote_message> (on worker <worker>)".
class TaskError : public Error {
 public:
  enum class Kind {
    exception,        // the task threw
    unknown_task,     // no such plugin or task
    bad_arguments,    // arguments do not match the task's signature
    plugin_error,     // the plugin failed to load (e.g. SDK ABI mismatch)
    killed_worker,    // the task was running on too many workers that died
    lost,             // the data is gone and cannot be recomputed
    cancelled,        // cancelled by a client
    scheduler_error,  // refused by the scheduler (e.g. unknown dependency, scheduler closed)
  };
  TaskError(Kind kind, std::string key, std::string worker, std::string remote_type,
            std::string remote_message, std::string traceback);

  Kind kind() const { return kind_; }
  const std::string& key() const { return key_; }
  const std::string& worker() const { return worker_; }
  const std::string& remote_type() const { return remote_type_; }
  const std::string& remote_message() const { return remote_message_; }
  const std::string& traceback() const { return traceback_; }

 private:
  Kind kind_;
  std::string key_;
  std::string worker_;
  std::string remote_type_;
  std::string remote_message_;
  std::string traceback_;
};

class UnknownTaskError : public TaskError {
 public:
  using TaskError::TaskError;
};
class TypeMismatchError : public TaskError {
 public:
  using TaskError::TaskError;
};
class PluginError : public TaskError {
 public:
  using TaskError::TaskError;
};
class KilledWorker : public TaskError {
 public:
  using TaskError::TaskError;
};
class DataLostError : public TaskError {
 public:
  using TaskError::TaskError;
};
class CancelledError : public TaskError {
 public:
  using TaskError::TaskError;
};
class SchedulerError : public TaskError {
 public:
  using TaskError::TaskError;
};

}  // namespace plexus
