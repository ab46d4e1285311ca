#pragma once
// A fresh folder under the system temp directory, removed with everything in it at scope end.
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

namespace specontext::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "specontext-test") {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace specontext::testing
