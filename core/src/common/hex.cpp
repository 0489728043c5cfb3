#include <plexus/common/hex.hpp>

#include <stdexcept>

namespace plexus {
namespace {
constexpr char kHexDigits[] = "0123456789abcdef";

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

char* put_hex(const void* data, std::size_t size, char* out) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    *out++ = kHexDigits[p[i] >> 4];
    *out++ = kHexDigits[p[i] & 0xf];
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  std::string out(2 * bytes.size(), '\0');
  put_hex(bytes.data(), bytes.size(), out.data());
  return out;
}

std::string from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) throw std::invalid_argument("odd number of hex digits");
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = digit_value(hex[2 * i]);
    const int lo = digit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) throw std::invalid_argument("not a hex digit in '" + std::string(hex) + "'");
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

}  // namespace plexus
