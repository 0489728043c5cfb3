#include <plexus/common/temp_dir.hpp>

#include <stdlib.h>
#include <string.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace plexus {

TempDir::TempDir(std::string_view prefix) : TempDir(std::filesystem::path(), prefix) {}

TempDir::TempDir(const std::filesystem::path& base, std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string root = !base.empty() ? base.string() : tmp && *tmp ? tmp : "/tmp";
  std::string tmpl = root + "/" + std::string(prefix) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw std::runtime_error("cannot create a directory like " + tmpl + ": " +
                             ::strerror(errno));
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace plexus
