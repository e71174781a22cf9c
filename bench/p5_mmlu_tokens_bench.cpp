// P5: forward tokens per MMLU question when the four letter options share one context and the few-shot prefix
// is computed once per subject, against one request per option. Bar: ≤ 0.3×.
// Usage: p5_mmlu_tokens_bench [SUBJECTS] [QUESTIONS_PER_SUBJECT] [N_SHOT]
// Uses the real MMLU CSVs in ../shared/data/mmlu (header question,choice0..3,answer) and the demo checkpoint; the
// prompt is the reference harness's MMLU format. Also checks that both ways give the same scores.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mill/model/demo_model.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/eval/dataset.hpp"
#include "mill/base/atomic_file.hpp"

namespace {

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path) {
  return mill::parse_csv(mill::read_file(path, "MMLU csv"), path.string());
}

std::string format_question(const std::vector<std::string>& row) {
  std::string out = row[0];
  for (int i = 0; i < 4; ++i) out += "\n" + std::string(1, static_cast<char>('A' + i)) + ". " + row[1 + i];
  return out + "\nAnswer:";
}

}  // namespace

int main(int argc, char** argv) {
  const int subjects = argc > 1 ? std::atoi(argv[1]) : 4;
  const int questions = argc > 2 ? std::atoi(argv[2]) : 25;
  const int shots = argc > 3 ? std::atoi(argv[3]) : 5;
  const std::filesystem::path data = std::filesystem::path(MILL_SHARED_DIR) / "data" / "mmlu";
  if (!std::filesystem::exists(data / "dev")) {
    std::cout << "p5: " << data.string() << " is absent; skipped\n";
    return 0;
  }
  ::setenv("MILL_RUNTIME_PLUGIN", MILL_RUNTIME_PLUGIN_PATH, 0);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(data / "dev")) {
    names.push_back(entry.path().filename().string().substr(0, entry.path().filename().string().size() - 8));
  }
  std::sort(names.begin(), names.end());
  names.resize(std::min<std::size_t>(names.size(), subjects));

  std::vector<mill::LoglikelihoodRequest> requests;
  for (const auto& subject : names) {
    auto dev = read_csv(data / "dev" / (subject + "_dev.csv"));
    auto test = read_csv(data / "test" / (subject + "_test.csv"));
    std::string pretty = subject;
    std::replace(pretty.begin(), pretty.end(), '_', ' ');
    std::string prefix = "The following are multiple choice questions (with answers) about " + pretty + ".\n\n";
    for (int s = 1; s <= shots && s < static_cast<int>(dev.size()); ++s) {
      prefix += format_question(dev[s]) + " " + std::string(1, static_cast<char>('A' + std::stoi(dev[s][5]))) + "\n\n";
    }
    for (int q = 1; q <= questions && q < static_cast<int>(test.size()); ++q) {
      for (const char* letter : {" A", " B", " C", " D"}) requests.push_back({prefix + format_question(test[q]), letter});
    }
  }
  const auto folder = std::filesystem::temp_directory_path() / "mill-p5-demo";
  mill::write_demo_model(folder, {});
  try {
    auto run = [&](const std::string& share) {
      auto backend = mill::load_runtime_backend(
          mill::ModelSpec::parse(folder.string() + "[dtype=float32,device=cpu,share_prefixes=" + share + "]"));
      const auto start = std::chrono::steady_clock::now();
      auto results = backend->loglikelihood(requests);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return std::make_tuple(results, backend->provenance()["forward_tokens"].get<double>(), seconds);
    };
    const auto [shared, shared_tokens, shared_seconds] = run("true");
    const auto [separate, separate_tokens, separate_seconds] = run("false");
    double max_difference = 0;
    for (std::size_t i = 0; i < shared.size(); ++i) max_difference = std::max(max_difference, std::abs(shared[i].logprob - separate[i].logprob));
    const double n_questions = static_cast<double>(requests.size()) / 4;
    const double ratio = shared_tokens / separate_tokens;
    std::cout << names.size() << " subjects, " << n_questions << " questions, " << shots << "-shot\n"
              << "one request per option: " << separate_tokens / n_questions << " forward tokens per question ("
              << separate_seconds << " s)\n"
              << "shared context + prefix: " << shared_tokens / n_questions << " forward tokens per question ("
              << shared_seconds << " s)\n"
              << "ratio " << ratio << " (bar <= 0.3: " << (ratio <= 0.3 ? "met" : "NOT met")
              << "), largest score difference " << max_difference << "\n";
  } catch (const mill::Error& e) {
    std::cerr << "p5: " << e.what() << "\n";
    return 1;
  }
  std::filesystem::remove_all(folder);
  return 0;
}
