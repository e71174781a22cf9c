// Encode throughput (MB/s, one thread) of mill's tokenizers on real text: every line of the MMLU test CSVs
// encoded as one request, as prompts are. Google's libsentencepiece on the same lines is the yardstick in
// the same run. Usage: tokenizer_bench [shared_dir] [repetitions]   (shared_dir defaults to ../shared)
#include <sentencepiece_processor.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mill/tokenizers/sentencepiece_conversion.hpp"
#include "mill/tokenizers/tokenizer.hpp"

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> corpus_lines(const fs::path& mmlu_test) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(mmlu_test)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> lines;
  for (const auto& file : files) {
    std::istringstream in(read_file(file));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// Best of `repetitions` runs: MB/s and tokens produced.
std::pair<double, std::size_t> measure(const std::vector<std::string>& lines, int repetitions,
                                       const std::function<std::size_t(const std::string&)>& encode) {
  std::size_t bytes = 0;
  for (const auto& line : lines) bytes += line.size();
  double best = 0;
  std::size_t tokens = 0;
  for (int r = 0; r < repetitions; ++r) {
    tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const auto& line : lines) tokens += encode(line);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(bytes) / 1e6 / seconds);
  }
  return {best, tokens};
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path shared = argc > 1 ? fs::path(argv[1]) : fs::path("../shared");
  const int repetitions = argc > 2 ? std::stoi(argv[2]) : 3;
  const auto lines = corpus_lines(shared / "data/mmlu/test");
  std::size_t bytes = 0;
  for (const auto& line : lines) bytes += line.size();
  fmt::print("corpus: {} lines, {:.1f} MB (MMLU test CSVs), best of {} runs, one thread\n", lines.size(), bytes / 1e6,
             repetitions);
  fmt::print("| tokenizer | implementation | MB/s | tokens |\n| --- | --- | --- | --- |\n");

  const fs::path gpt2 = shared / "models/gpt2-tokenizer";
  const auto byte_level = mill::Tokenizer::load(gpt2);
  auto [gpt2_speed, gpt2_tokens] =
      measure(lines, repetitions, [&](const std::string& line) { return byte_level->encode(line, false).size(); });
  fmt::print("| GPT-2 | mill tokenizer.json (byte-level BPE) | {:.2f} | {} |\n", gpt2_speed, gpt2_tokens);

  // The Llama-3 pre-tokenizer regex on the GPT-2 vocabulary (tests/data/tokenizer/variants.json).
  const auto variants = nlohmann::json::parse(read_file(fs::path(MILL_SOURCE_DIR) / "tests/data/tokenizer/variants.json"));
  auto root = nlohmann::json::parse(read_file(gpt2 / "tokenizer.json"));
  for (const auto& [key, value] : variants.at("llama3-style").at("set").items()) root[key] = value;
  for (const auto& [key, value] : variants.at("llama3-style").at("model").items()) root["model"][key] = value;
  for (const auto& token : variants.at("llama3-style").at("added_tokens")) root["added_tokens"].push_back(token);
  const fs::path scratch = fs::temp_directory_path() / fmt::format("mill-tokenizer-bench-{}", ::getpid());
  fs::create_directories(scratch);
  std::ofstream(scratch / "tokenizer.json") << root.dump();
  const auto llama3_style = mill::Tokenizer::load(scratch);
  fs::remove_all(scratch);
  auto [llama3_speed, llama3_tokens] =
      measure(lines, repetitions, [&](const std::string& line) { return llama3_style->encode(line, false).size(); });
  fmt::print("| GPT-2 vocabulary, Llama-3 regex | mill tokenizer.json (byte-level BPE) | {:.2f} | {} |\n", llama3_speed,
             llama3_tokens);

  const fs::path llama2 = shared / "models/llama2-tokenizer";
  const auto sentencepiece_tokenizer = mill::Tokenizer::load(llama2);
  auto [mill_spm_speed, mill_spm_tokens] = measure(
      lines, repetitions, [&](const std::string& line) { return sentencepiece_tokenizer->encode(line, false).size(); });
  fmt::print("| Llama-2 | mill tokenizer.model (libsentencepiece + special-token split) | {:.2f} | {} |\n", mill_spm_speed,
             mill_spm_tokens);

  fs::create_directories(scratch);
  std::ofstream(scratch / "tokenizer.json")
      << mill::sentencepiece_to_tokenizer_json(llama2 / "tokenizer.model", mill::SentencePieceJsonStyle::prepend_normalizer);
  const auto sentencepiece_json = mill::Tokenizer::load(scratch);
  fs::remove_all(scratch);
  auto [spm_json_speed, spm_json_tokens] =
      measure(lines, repetitions, [&](const std::string& line) { return sentencepiece_json->encode(line, false).size(); });
  fmt::print("| Llama-2 | mill tokenizer.json (SentencePiece-style BPE, converted from the .model) | {:.2f} | {} |\n",
             spm_json_speed, spm_json_tokens);

  sentencepiece::SentencePieceProcessor processor;
  if (!processor.Load((llama2 / "tokenizer.model").string()).ok()) return 1;
  std::vector<int> ids;
  auto [spm_speed, spm_tokens] = measure(lines, repetitions, [&](const std::string& line) {
    ids.clear();
    if (!processor.Encode(line, &ids).ok()) return std::size_t{0};
    return ids.size();
  });
  fmt::print("| Llama-2 | libsentencepiece alone (yardstick) | {:.2f} | {} |\n", spm_speed, spm_tokens);
  fmt::print("\nratios to libsentencepiece: GPT-2 byte-level {:.2f}, SentencePiece-style tokenizer.json {:.2f}\n",
             gpt2_speed / spm_speed, spm_json_speed / spm_speed);
  return 0;
}
