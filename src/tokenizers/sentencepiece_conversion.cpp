#include "mill/tokenizers/sentencepiece_conversion.hpp"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "mill/base/error.hpp"

namespace mill {

std::string sentencepiece_to_tokenizer_json(const std::filesystem::path& model_file, SentencePieceJsonStyle style) {
  using json = nlohmann::ordered_json;
  sentencepiece::SentencePieceProcessor processor;
  const auto status = processor.Load(model_file.string());
  if (!status.ok())
    throw Error(fmt::format("{}: is not a SentencePiece model ({})", model_file.string(), status.ToString()));
  const int size = processor.GetPieceSize();
  // Pieces in id order. An ordered_json object looks every key up linearly on insertion (quadratic for a 32k
  // vocabulary), so the pieces go straight into its underlying vector once the hash map has shown them unique.
  json vocab = json::object();
  std::unordered_map<std::string, int> ids;
  auto& in_id_order = static_cast<std::vector<std::pair<const std::string, json>>&>(*vocab.get_ptr<json::object_t*>());
  for (int id = 0; id < size; ++id) {
    const auto& piece = processor.IdToPiece(id);
    if (!ids.emplace(piece, id).second)
      throw Error(fmt::format("{}: the piece '{}' appears twice (ids {} and {})", model_file.string(), piece, ids.at(piece), id));
    in_id_order.emplace_back(piece, id);
  }

  // transformers' SentencePieceExtractor: per piece, its two-piece splits ordered by the halves' ids; then all
  // of them ordered by the merged piece's score, highest first (a stable sort keeps the per-piece order).
  struct Merge {
    std::string left, right;
    float score;
  };
  std::vector<Merge> merges;
  for (int id = 0; id < size; ++id) {
    const std::string piece = processor.IdToPiece(id);
    std::vector<std::pair<std::pair<int, int>, Merge>> local;
    for (std::size_t cut = 1; cut < piece.size(); ++cut) {
      if ((static_cast<unsigned char>(piece[cut]) & 0xC0) == 0x80) continue;  // split between characters only
      const auto left = ids.find(piece.substr(0, cut)), right = ids.find(piece.substr(cut));
      if (left != ids.end() && right != ids.end())
        local.push_back({{left->second, right->second}, {left->first, right->first, processor.GetScore(id)}});
    }
    std::sort(local.begin(), local.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [order, merge] : local) merges.push_back(std::move(merge));
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
  json merge_list = json::array();
  for (const auto& m : merges) merge_list.push_back(json::array({m.left, m.right}));

  json added = json::array();
  for (int id = 0; id < size; ++id) {
    if (!processor.IsControl(id) && !processor.IsUnknown(id)) continue;
    added.push_back({{"id", id}, {"content", processor.IdToPiece(id)}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  const std::string space_symbol = "\xE2\x96\x81";
  json root = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added}};
  if (style == SentencePieceJsonStyle::prepend_normalizer) {
    root["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", space_symbol}},
                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space_symbol}}})}};
    root["pre_tokenizer"] = nullptr;
  } else {
    root["normalizer"] = nullptr;
    root["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", space_symbol}, {"prepend_scheme", "first"}, {"split", false}};
  }
  json single = json::array();
  json special_tokens = json::object();
  if (processor.bos_id() >= 0) {
    const std::string bos = processor.IdToPiece(processor.bos_id());
    single.push_back({{"SpecialToken", {{"id", bos}, {"type_id", 0}}}});
    special_tokens[bos] = {{"id", bos}, {"ids", {processor.bos_id()}}, {"tokens", {bos}}};
  }
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  root["post_processor"] = {{"type", "TemplateProcessing"},
                            {"single", single},
                            {"pair", json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                  {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                            {"special_tokens", special_tokens}};
  root["decoder"] = {{"type", "Sequence"},
                     {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", space_symbol}}}, {"content", " "}},
                                               {{"type", "ByteFallback"}},
                                               {{"type", "Fuse"}},
                                               {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  json model = {{"type", "BPE"}, {"dropout", nullptr}};
  model["unk_token"] = processor.unk_id() >= 0 ? json(processor.IdToPiece(processor.unk_id())) : json(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = true;
  model["byte_fallback"] = true;
  model["ignore_merges"] = false;
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merge_list);
  root["model"] = std::move(model);
  return root.dump();
}

}  // namespace mill
