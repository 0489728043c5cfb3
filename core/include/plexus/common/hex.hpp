// Lowercase hexadecimal: task keys' digests, and bytes carried in JSON answers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace plexus {

/// Writes the 2 * size hex digits of `data` at `out`; returns the end of what it wrote.
char* put_hex(const void* data, std::size_t size, char* out);

std::string to_hex(std::string_view bytes);

/// The bytes `hex` spells. Throws std::invalid_argument unless it is an even number of hex digits.
std::string from_hex(std::string_view hex);

}  // namespace plexus
