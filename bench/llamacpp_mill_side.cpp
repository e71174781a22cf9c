// The mill side of bench/llamacpp_side_by_side.sh.
//   llamacpp_mill_side prepare MODEL_DIR MMLU_DIR WORKLOAD.json   writes the workload (token ids) both sides run
//   llamacpp_mill_side run MODEL_DIR WORKLOAD.json DTYPE THREADS OUT.json
// The workload: six random-id documents (4,431 tokens) scored at every position in 512-token windows (the windows
// of a rolling log-likelihood) and whole; 20 MMLU questions 5-shot (the reference harness's prompt, one subject's
// dev examples as the shots, real questions from MMLU_DIR, or made-up ones when it is absent), four options each.
// `run` loads the model through the runtime plugin as `mill eval` does, warms up, times each part, and writes the
// times, the window log-probabilities and the process's peak resident set (from provenance).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mill/model/model.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/eval/dataset.hpp"
#include "mill/base/atomic_file.hpp"

namespace {

using Ids = std::vector<mill::TokenId>;

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path) {
  return mill::parse_csv(mill::read_file(path, "MMLU csv"), path.string());
}

std::string format_question(const std::vector<std::string>& row) {
  std::string out = row[0];
  for (int i = 0; i < 4; ++i) out += "\n" + std::string(1, static_cast<char>('A' + i)) + ". " + row[1 + i];
  return out + "\nAnswer:";
}

std::unique_ptr<mill::ModelBackend> load(const std::string& folder, const std::string& args) {
  return mill::load_runtime_backend(mill::ModelSpec::parse(folder + "[" + args + "]"));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int prepare(const std::string& folder, const std::filesystem::path& mmlu, const std::string& out) {
  auto backend = load(folder, "dtype=float32,device=cpu");
  auto* tokens = backend->token_model();
  const auto vocab = static_cast<std::uint64_t>(tokens->vocab_size());
  const auto bos = static_cast<mill::TokenId>(vocab - 1);
  std::uint64_t state = 20;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<mill::TokenId>((state >> 33) % (vocab - 1));
  };
  nlohmann::json workload;
  const std::vector<int> lengths = {612, 1023, 540, 905, 700, 651};  // 4,431 tokens
  for (const int n : lengths) {
    Ids document{bos};
    for (int i = 0; i < n; ++i) document.push_back(next());
    workload["documents"].push_back(document);
    // Rolling windows: each predicts the next 512 tokens and sees as much preceding text as fits.
    for (int first = 1; first <= n; first += 512) {
      const int last = std::min(n, first + 511), window_start = std::max(0, last - 512);
      workload["windows"].push_back(Ids(document.begin() + window_start, document.begin() + last + 1));
    }
  }
  std::vector<std::vector<std::string>> dev, test;
  std::string subject = "high school geography";
  if (std::filesystem::exists(mmlu / "dev" / "high_school_geography_dev.csv")) {
    dev = read_csv(mmlu / "dev" / "high_school_geography_dev.csv");
    test = read_csv(mmlu / "test" / "high_school_geography_test.csv");
    dev.erase(dev.begin());  // header
    test.erase(test.begin());
  } else {
    for (int q = 0; q < 25; ++q) {
      dev.push_back({"Which of these is question " + std::to_string(q) + " about rivers and their deltas?", "The first river",
                     "The second river", "The third river", "The fourth river", std::to_string(q % 4)});
    }
    test = dev;
  }
  std::string prefix = "The following are multiple choice questions (with answers) about " + subject + ".\n\n";
  for (int s = 0; s < 5; ++s) prefix += format_question(dev[s]) + " " + std::string(1, static_cast<char>('A' + std::stoi(dev[s][5]))) + "\n\n";
  std::vector<Ids> contexts;
  for (int q = 0; q < 20; ++q) {
    const auto context = prefix + format_question(test[q]);
    contexts.push_back(tokens->encode(context, true));
    for (const char* letter : {" A", " B", " C", " D"}) workload["mmlu"]["texts"].push_back({{"context", context}, {"continuation", letter}});
  }
  std::size_t shared = contexts[0].size();
  for (const auto& c : contexts) {
    std::size_t i = 0;
    while (i < shared && i < c.size() && c[i] == contexts[0][i]) ++i;
    shared = i;
  }
  workload["mmlu"]["prefix"] = Ids(contexts[0].begin(), contexts[0].begin() + static_cast<std::ptrdiff_t>(shared));
  for (const auto& c : contexts) {
    nlohmann::json question{{"context", Ids(c.begin() + static_cast<std::ptrdiff_t>(shared), c.end())}};
    for (const char* letter : {" A", " B", " C", " D"}) question["options"].push_back(tokens->encode(letter, false));
    workload["mmlu"]["questions"].push_back(question);
  }
  std::ofstream(out) << workload.dump();
  std::cout << "workload: " << workload["windows"].size() << " windows, " << lengths.size() << " documents, MMLU prefix "
            << shared << " tokens + 20 questions\n";
  return 0;
}

int run(const std::string& folder, const std::string& workload_file, const std::string& dtype, const std::string& threads,
        const std::string& out) {
  std::ifstream in(workload_file);
  const auto workload = nlohmann::json::parse(in);
  const auto windows = workload["windows"].get<std::vector<Ids>>();
  const auto documents = workload["documents"].get<std::vector<Ids>>();
  std::vector<mill::LoglikelihoodRequest> mmlu;
  for (const auto& t : workload["mmlu"]["texts"]) mmlu.push_back({t["context"].get<std::string>(), t["continuation"].get<std::string>()});
  // Long enough for every document in one window and every MMLU prompt untruncated.
  auto backend = load(folder, "dtype=" + dtype + ",device=cpu,threads=" + threads + ",max_context_length=2048");
  auto* tokens = backend->token_model();
  tokens->score_positions({Ids(windows[0].begin(), windows[0].begin() + 32)}, 0);  // warm-up

  auto start = std::chrono::steady_clock::now();
  const auto scored = tokens->score_positions(windows, 0);
  const double windows_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  tokens->score_positions(documents, 0);
  const double documents_seconds = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const auto answers = backend->loglikelihood(mmlu);
  const double mmlu_seconds = seconds_since(start);

  nlohmann::json result{{"windows_seconds", windows_seconds}, {"documents_seconds", documents_seconds}, {"mmlu_seconds", mmlu_seconds}};
  const auto provenance = backend->provenance();
  result["peak_rss_mb"] = provenance["peak_rss_mb"];
  result["threads"] = provenance["threads"];
  result["forward_tokens"] = provenance["forward_tokens"];
  result["padded_tokens"] = provenance["padded_tokens"];
  result["forwards"] = provenance["forwards"];
  for (const auto& window : scored) {
    std::vector<double> logprobs;
    for (const auto& position : window) logprobs.push_back(position.logprob);
    result["window_logprobs"].push_back(logprobs);
  }
  for (std::size_t q = 0; q < answers.size() / 4; ++q) {
    result["mmlu_scores"].push_back({answers[4 * q].logprob, answers[4 * q + 1].logprob, answers[4 * q + 2].logprob, answers[4 * q + 3].logprob});
  }
  std::ofstream(out) << result.dump();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::setenv("MILL_RUNTIME_PLUGIN", MILL_RUNTIME_PLUGIN_PATH, 0);
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 4 && args[0] == "prepare") return prepare(args[1], args[2], args[3]);
    if (args.size() == 6 && args[0] == "run") return run(args[1], args[2], args[3], args[4], args[5]);
  } catch (const std::exception& e) {
    std::cerr << "llamacpp_mill_side: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: llamacpp_mill_side prepare MODEL_DIR MMLU_DIR WORKLOAD.json\n"
               "       llamacpp_mill_side run MODEL_DIR WORKLOAD.json DTYPE THREADS OUT.json\n";
  return 2;
}
