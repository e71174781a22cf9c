#pragma once
// For fuzz targets whose parser reads a file: one scratch directory per process (libFuzzer's -jobs/-fork run
// several), in memory so a long campaign does not wear a disk, removed at exit.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace mill::fuzz {

struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& target)
      : path(std::filesystem::path("/dev/shm") / ("mill-fuzz-" + target + "-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Replaces `file` with the fuzz input.
inline void write_input(const std::filesystem::path& file, const std::uint8_t* data, std::size_t size) {
  if (std::FILE* out = std::fopen(file.c_str(), "wb")) {
    if (size > 0) std::fwrite(data, 1, size, out);
    std::fclose(out);
  }
}

}  // namespace mill::fuzz
