// Cost of a checkpoint's content fingerprint (checkpoint_files.hpp checkpoint_fingerprint), which `mill schedule`
// and every worker compute once per local checkpoint folder: on a single 2 GB model.safetensors and on a 30-shard
// index of 4.5 GB shards (a 70B-class checkpoint's layout). Weight files are sparse (truncate): the fingerprint
// reads headers and 16 sampled 4 KiB blocks per file, never the whole file. Each figure is the median of the runs,
// warm (pages cached) and after POSIX_FADV_DONTNEED on every file (the kernel drops their cached pages).
// Usage: fingerprint_bench [scratch_dir] [runs]   (scratch defaults to $TMPDIR)
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "mill/model/checkpoint_files.hpp"
#include "mill/model/demo_model.hpp"

namespace fs = std::filesystem;

namespace {

// A safetensors file of `size` bytes: a real header describing `tensors` bf16 tensors that fill it, then a hole.
void write_sparse_safetensors(const fs::path& path, std::uint64_t size, int tensors, const std::string& prefix) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  const std::uint64_t reserve = 1 << 16;  // room for the header
  const std::uint64_t per_tensor = (size - reserve) / static_cast<std::uint64_t>(tensors) / 2 * 2;
  for (int i = 0; i < tensors; ++i) {
    header[fmt::format("{}.layers.{}.weight", prefix, i)] = {
        {"dtype", "BF16"},
        {"shape", {per_tensor / 2 / 4096, 4096}},
        {"data_offsets", {per_tensor * static_cast<std::uint64_t>(i), per_tensor * static_cast<std::uint64_t>(i + 1)}}};
  }
  auto text = header.dump();
  text.resize(reserve - 8, ' ');  // the format allows trailing spaces in the header
  std::ofstream out(path, std::ios::binary);
  std::uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(length >> (8 * i) & 0xff));
  out << text;
  out.close();
  fs::resize_file(path, size);
}

void drop_cached_pages(const fs::path& folder) {
  for (const auto& entry : fs::directory_iterator(folder)) {
    const int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

double median_ms(const fs::path& folder, int runs, bool cold) {
  std::vector<double> times;
  for (int r = 0; r < runs; ++r) {
    if (cold) drop_cached_pages(folder);
    const auto start = std::chrono::steady_clock::now();
    const auto digest = mill::checkpoint_fingerprint(folder);
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (digest.size() != 32) throw std::runtime_error("bad digest");
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path scratch = fs::path(argc > 1 ? argv[1] : fs::temp_directory_path().string()) / "mill-fingerprint-bench";
  const int runs = argc > 2 ? std::stoi(argv[2]) : 21;
  fs::remove_all(scratch);

  // The tokenizer and config files come from the demo checkpoint; its small weights are replaced.
  const auto single = scratch / "single-2GB";
  mill::write_demo_model(single, {});
  write_sparse_safetensors(single / "model.safetensors", 2ull << 30, 64, "model");

  const auto sharded = scratch / "sharded-30";
  mill::write_demo_model(sharded, {});
  fs::remove(sharded / "model.safetensors");
  nlohmann::json index = {{"metadata", {{"total_size", 30ull * 4500000000ull}}}, {"weight_map", nlohmann::json::object()}};
  for (int shard = 1; shard <= 30; ++shard) {
    const auto name = fmt::format("model-{:05d}-of-00030.safetensors", shard);
    write_sparse_safetensors(sharded / name, 4500000000ull, 96, fmt::format("shard{}", shard));
    for (int i = 0; i < 96; ++i) index["weight_map"][fmt::format("shard{}.layers.{}.weight", shard, i)] = name;
  }
  std::ofstream(sharded / "model.safetensors.index.json") << index.dump(2);

  fmt::print("checkpoint            warm (median ms)  after FADV_DONTNEED (median ms)   runs={}\n", runs);
  for (const auto& [label, folder] : {std::pair{"2 GB, one file", single}, std::pair{"30 shards x 4.5 GB", sharded}}) {
    fmt::print("{:<20}  {:>16.2f}  {:>31.2f}\n", label, median_ms(folder, runs, false), median_ms(folder, runs, true));
  }
  fs::remove_all(scratch);
  return 0;
}
