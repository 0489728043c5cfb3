// A private scratch directory (mkdtemp under $TMPDIR, else /tmp, or a given directory), removed with its contents when
// the object goes. Used by the LocalCluster, the benchmarks and the tests.
//
// Thread safety: a plain value owner; not copyable.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace plexus {

class TempDir {
 public:
  /// Creates "<tmp>/<prefix>-XXXXXX". Throws std::runtime_error naming the path on failure.
  explicit TempDir(std::string_view prefix = "plexus");
  /// Creates "<base>/<prefix>-XXXXXX"; an empty `base` is <tmp>. Throws as above.
  TempDir(const std::filesystem::path& base, std::string_view prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  /// The path of `name` inside the directory.
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace plexus
