// A SentencePiece tokenizer.model through Google's libsentencepiece, for checkpoints that ship no
// tokenizer.json. Behaves like the tokenizer transformers converts from it (the "legacy" Llama behaviour):
// control pieces such as <s> written in the text are recognised, every other stretch of text is encoded by
// SentencePiece on its own (so it gets the dummy-prefix space), and decoding renders the pieces the way the
// converted tokenizer's decoder does.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "tokenizer_internal.hpp"

namespace mill::detail {
namespace {

class SentencePieceTokenizer final : public ConfiguredTokenizer {
 public:
  SentencePieceTokenizer(const std::filesystem::path& file, TokenizerConfig config)
      : ConfiguredTokenizer(std::move(config)) {
    const auto status = processor_.Load(file.string());
    if (!status.ok()) throw Error(fmt::format("{}: is not a SentencePiece model ({})", file.string(), status.ToString()));
    const int size = processor_.GetPieceSize();
    for (int id = 0; id < size; ++id) {
      if (processor_.IsControl(id) || processor_.IsUnknown(id)) {
        const std::string piece = processor_.IdToPiece(id);
        if (!piece.empty()) specials_.push_back({piece, id});
      }
    }
    for (const auto& special : specials_) starts_special_[static_cast<unsigned char>(special.first[0])] = true;
    // Longest first, so that matching at a position takes the longest special piece.
    std::sort(specials_.begin(), specials_.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    auto lookup = [&](const std::optional<std::string>& piece, int fallback) -> std::optional<TokenId> {
      if (piece) {
        const int id = processor_.PieceToId(*piece);
        if (id != processor_.unk_id() || *piece == processor_.IdToPiece(processor_.unk_id())) return id;
      }
      if (fallback >= 0) return fallback;
      return std::nullopt;
    };
    bos_id_ = lookup(config_.bos_token, processor_.bos_id());
    eos_id_ = lookup(config_.eos_token, processor_.eos_id());
    // transformers' Llama tokenizer defaults: BOS yes, EOS no.
    if (config_.add_bos_token.value_or(true) && bos_id_) prefix_.push_back(*bos_id_);
    if (config_.add_eos_token.value_or(false) && eos_id_) suffix_.push_back(*eos_id_);
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<TokenId> ids;
    if (add_special_tokens) ids = prefix_;
    std::size_t start = 0, pos = 0;
    std::vector<int> piece_ids;
    auto flush = [&](std::size_t end) {
      if (end <= start) return;
      piece_ids.clear();
      // (pointer, length): Debian's libsentencepiece takes a std::string_view here, the upstream release (built from
      // source when not installed) its own absl::string_view; both construct from these two.
      const auto status = processor_.Encode({text.data() + start, end - start}, &piece_ids);
      if (!status.ok()) throw Error(fmt::format("SentencePiece cannot encode the text: {}", status.ToString()));
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    };
    while (pos < text.size()) {
      const auto* hit = match_special(text, pos);
      if (!hit) {
        ++pos;
        continue;
      }
      flush(pos);
      ids.push_back(hit->second);
      pos += hit->first.size();
      start = pos;
    }
    flush(text.size());
    if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const override {
    std::string text, bytes;
    auto flush_bytes = [&] {
      text += byte_run_text(bytes);
      bytes.clear();
    };
    const int size = processor_.GetPieceSize();
    for (const TokenId id : ids) {
      if (id < 0 || id >= size) continue;
      const bool special = processor_.IsControl(id) || processor_.IsUnknown(id);
      if (skip_special_tokens && special) continue;
      const std::string piece = processor_.IdToPiece(id);
      if (processor_.IsByte(id) && piece.size() == 6) {
        bytes.push_back(static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
        continue;
      }
      flush_bytes();
      text += replace_all(piece, "\xE2\x96\x81", " ");  // U+2581 stands for a space
    }
    flush_bytes();
    if (!text.empty() && text[0] == ' ') text.erase(0, 1);
    return text;
  }

  std::size_t vocab_size() const override { return static_cast<std::size_t>(processor_.GetPieceSize()); }

 private:
  const std::pair<std::string, TokenId>* match_special(std::string_view text, std::size_t pos) const {
    if (!starts_special_[static_cast<unsigned char>(text[pos])]) return nullptr;
    for (const auto& special : specials_)
      if (text.compare(pos, special.first.size(), special.first) == 0) return &special;
    return nullptr;
  }

  sentencepiece::SentencePieceProcessor processor_;
  std::vector<std::pair<std::string, TokenId>> specials_;
  std::array<bool, 256> starts_special_{};
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& model_file, TokenizerConfig config) {
  return std::make_unique<SentencePieceTokenizer>(model_file, std::move(config));
}

}  // namespace mill::detail
