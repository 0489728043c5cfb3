// Conversion between JSON text and encoded values (sdk/codec.hpp), for the command line and logs.
//
// JSON -> value: null -> null, true/false -> bool, integers -> integer (uint64 above INT64_MAX),
// other numbers -> float64, strings -> string, arrays -> list, objects -> map with string keys,
// except the object {"$bytes": "<base64>"} -> bytes and {"$future": "<key>"} -> a future ref.
// value -> JSON is the inverse; a map whose keys are not all strings becomes an array of
// [key, value] pairs; non-finite floats become the strings "nan", "inf", "-inf".
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace plexus {

/// Encodes one JSON text as a value. Throws plexus::DecodeError naming the position on bad JSON.
std::string json_to_value(std::string_view json);

/// Encodes several JSON texts as one list value (the arguments of a task call).
std::string json_args_to_value(const std::string* json_args, std::size_t count);

/// Renders an encoded value as compact JSON. Throws plexus::DecodeError on malformed bytes.
std::string value_to_json(std::string_view encoded);

}  // namespace plexus
