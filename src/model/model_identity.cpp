#include "mill/model/model_identity.hpp"

#include <spdlog/spdlog.h>

#include "mill/base/atomic_file.hpp"
#include "mill/model/checkpoint_files.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {
constexpr const char* kCheckpointPlaceholder = "<checkpoint>";
constexpr const char* kRecordSchema = "mill.checkpoint/1";

std::filesystem::path record_path(const std::filesystem::path& output_dir, const std::string& content) {
  return output_dir / "checkpoints" / (content + ".json");
}

bool is_fingerprint(const std::string& content) {
  return content.size() == 32 && content.find_first_not_of("0123456789abcdef") == std::string::npos;
}
}  // namespace

nlohmann::json ModelIdentity::checkpoint_record() const {
  if (!is_checkpoint_folder()) return nullptr;
  return {{"folder", folder.string()}, {"fingerprint", content}};
}

std::optional<std::filesystem::path> local_checkpoint_folder(const ModelSpec& spec) {
  if (spec.name == "mill-demo") return std::nullopt;
  const auto backend = spec.backend();
  if (backend == "api") return std::nullopt;
  const auto location = backend == "vllm" ? spec.arg("path").value_or("") : spec.arg("path").value_or(spec.name);
  std::error_code ec;
  if (location.empty() || !std::filesystem::is_directory(location, ec)) return std::nullopt;
  return std::filesystem::path(location);
}

ModelIdentity identify_model(const ModelSpec& spec) {
  ModelIdentity identity;
  identity.spec = spec.identity();
  identity.key_model = identity.spec;
  identity.revision = resolve_model_revision(spec);
  const auto folder = local_checkpoint_folder(spec);
  if (!folder) return identity;
  identity.folder = *folder;
  // The path is not part of the identity: the same weights anywhere are the same model.
  auto located = spec;
  if (located.arg("path")) {
    for (auto& [key, value] : located.args) {
      if (key == "path") value = kCheckpointPlaceholder;
    }
  } else {
    located.name = kCheckpointPlaceholder;
  }
  identity.key_model = located.identity();
  try {
    identity.content = checkpoint_fingerprint(*folder);
  } catch (const Error& e) {
    identity.content = "unreadable";
    identity.problem = e.what();
  }
  return identity;
}

std::string results_model(const std::filesystem::path& output_dir, const ModelIdentity& identity) {
  if (!is_fingerprint(identity.content)) return identity.spec;
  std::optional<std::string> text;
  try {
    text = read_file_if_exists(record_path(output_dir, identity.content));
  } catch (const Error& e) {
    spdlog::warn("{}", e.what());
  }
  if (!text) return identity.spec;
  const auto record = nlohmann::json::parse(*text, nullptr, false);
  if (!record.is_object() || record.value("schema", "") != kRecordSchema || !record.contains("results_model") ||
      !record["results_model"].is_string()) {
    return identity.spec;
  }
  const auto model = record["results_model"].get<std::string>();
  std::error_code ec;
  if (model.empty() || !std::filesystem::is_directory(output_dir / "results" / path_component(model), ec)) {
    return identity.spec;  // those results are gone: start afresh under today's name
  }
  return model;
}

void remember_results_model(const std::filesystem::path& output_dir, const ModelIdentity& identity,
                            const std::string& results_model) {
  if (!is_fingerprint(identity.content)) return;
  const auto path = record_path(output_dir, identity.content);
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return;
  const nlohmann::json record = {{"schema", kRecordSchema},
                                 {"fingerprint", identity.content},
                                 {"results_model", results_model},
                                 {"folder", identity.folder.string()}};
  try {
    write_file_atomically(path, record.dump(2) + "\n");
  } catch (const Error& e) {
    // Only a later move of the folder needs the record; the result itself is written.
    spdlog::warn("cannot record where the results of {} live: {}", identity.folder.string(), e.what());
  }
}

}  // namespace mill
