// Conversion between JSON text and encoded values (sdk/codec.hpp), for the command line and logs.
//
// JSON -> value: null -> null, true/false -> bool, integers -> integer (uint64 above INT64_MAX),
// other numbers -> float64, strings -> string, arrays -> list, objects -> map with string keys,
// except the object {"$bytes": "<base64>"} -> bytes and {"$future": "<key>"} -> a future ref.
// value -> JSON is the inverse; a map whose keys are not all strings becomes an array of
// [key, value] pairs; non-finite floats become the strings "nan", "inf", "-inf".
//
// Details of the mapping:
//  - Object keys keep the order in which they were written; a key repeated in one object is an
//    error (it would otherwise drop data silently).
//  - An integer literal outside both int64 and uint64 is an error, not a float.
//  - Only a one-member object {"$bytes": ...} or {"$future": ...} is special, and its member must
//    be a string: canonical base64 with padding (RFC 4648, strict), or a non-empty task key.
//  - Floats render as the shortest text that reads back as the same double, always with a '.' or
//    an exponent ("2.0", "1e+300"), so that a float stays a float.
//  - A map also becomes [key, value] pairs when its string keys repeat, or when it is a one-entry
//    map keyed "$bytes" or "$future" (which would read back as bytes or a future).
//  - Invalid UTF-8 inside a string value renders as U+FFFD.
//  - Containers nested deeper than 64 levels are an error in both directions.
//  - Byte positions in errors are nlohmann's: counted from 1, the end of the input being one past
//    the last byte.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
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
