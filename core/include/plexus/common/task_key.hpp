// Task keys: "<task-name>-<32 hex digits>", the hex being XXH3-128 of the task name and the
// encoded arguments (which carry the keys of any futures among them). The same call gives the
// same key on every machine. Impure tasks get "<task-name>-<uuid4>" instead.
//
// Thread safety: pure functions; random_task_key uses a thread-local generator.
#pragma once

#include <string>
#include <string_view>

namespace plexus {

/// Deterministic key of a pure task.
std::string task_key(std::string_view task_name, std::string_view encoded_args);

/// Fresh random key (uuid4, RFC 4122 text form) for an impure task.
std::string random_task_key(std::string_view task_name);

/// A random uuid4 in its 36-character text form.
std::string uuid4();

}  // namespace plexus
