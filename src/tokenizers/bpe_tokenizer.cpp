// A Hugging Face tokenizer.json reader and encoder for BPE models: byte-level BPE with regex pre-tokenization
// (GPT-2, Llama-3, Qwen2) and SentencePiece-style BPE with byte fallback and the metaspace (Llama-2, Mistral).
// The pipeline mirrors the tokenizers library (its parts: tokenizer_json_pipeline.cpp): added tokens are cut out first, the rest is normalized,
// pre-tokenized into words, each word is encoded by the BPE model, and the post-processor adds BOS/EOS.
#include <algorithm>
#include <array>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <set>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "tokenizer_internal.hpp"
#include "tokenizer_json_pipeline.hpp"

namespace mill::detail {
namespace {

// ---------------------------------------------------------------------------------------------------------
// The BPE model

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class BpeModel {
 public:
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> vocab;
  std::vector<std::string> id_to_token;  // may have holes ("") where ids are unused
  std::optional<TokenId> unk;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;

  void add_merge(TokenId left, TokenId right, int rank, TokenId merged) {
    merges_.emplace(key(left, right), MergeTarget{rank, merged});
  }

  void prepare_byte_fallback() {
    for (int b = 0; b < 256; ++b) {
      const auto found = vocab.find(fmt::format("<0x{:02X}>", b));
      byte_ids_[b] = found == vocab.end() ? -1 : found->second;
    }
  }

  std::optional<TokenId> find(std::string_view token) const {
    const auto found = vocab.find(token);
    if (found == vocab.end()) return std::nullopt;
    return found->second;
  }

  void encode_word(std::string_view word, std::vector<TokenId>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
      if (const auto id = find(word)) {
        out.push_back(*id);
        return;
      }
    }
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    bool previous_unk = false;
    for_each_char(word, [&](std::size_t pos, std::size_t length, char32_t) {
      if (const auto id = find(word.substr(pos, length))) {
        symbols.push_back({*id});
        previous_unk = false;
        return;
      }
      const auto bytes = word.substr(pos, length);
      if (byte_fallback && std::all_of(bytes.begin(), bytes.end(), [&](char b) { return byte_id(b) >= 0; })) {
        for (const char b : bytes) symbols.push_back({byte_id(b)});
        previous_unk = false;
        return;
      }
      if (!unk) return;  // the tokenizers library drops characters it cannot represent when there is no unk
      if (!(fuse_unk && previous_unk)) symbols.push_back({*unk});
      previous_unk = true;
    });
    merge(symbols);
    for (const auto& symbol : symbols)
      if (symbol.alive) out.push_back(symbol.id);
  }

 private:
  struct MergeTarget {
    int rank;
    TokenId merged;
  };
  struct Symbol {
    TokenId id;
    int previous = -1, next = -1;
    bool alive = true;
  };
  struct Candidate {
    int rank;
    int position;
    TokenId merged;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };

  TokenId byte_id(char byte) const { return byte_ids_[static_cast<unsigned char>(byte)]; }

  static std::uint64_t key(TokenId left, TokenId right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }

  const MergeTarget* lookup(TokenId left, TokenId right) const {
    const auto found = merges_.find(key(left, right));
    return found == merges_.end() ? nullptr : &found->second;
  }

  // Repeatedly applies the lowest-ranked merge present (leftmost first on ties), as the tokenizers library.
  void merge(std::vector<Symbol>& symbols) const {
    const int n = static_cast<int>(symbols.size());
    if (n < 2) return;
    for (int i = 0; i < n; ++i) {
      symbols[i].previous = i - 1;
      symbols[i].next = i + 1 < n ? i + 1 : -1;
    }
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    for (int i = 0; i + 1 < n; ++i)
      if (const auto* m = lookup(symbols[i].id, symbols[i + 1].id)) queue.push({m->rank, i, m->merged});
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.position];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = symbols[left.next];
      const auto* current = lookup(left.id, right.id);
      if (!current || current->merged != top.merged || current->rank != top.rank) continue;
      left.id = top.merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].previous = top.position;
      if (left.previous >= 0)
        if (const auto* m = lookup(symbols[left.previous].id, left.id)) queue.push({m->rank, left.previous, m->merged});
      if (left.next >= 0)
        if (const auto* m = lookup(left.id, symbols[left.next].id)) queue.push({m->rank, top.position, m->merged});
    }
  }

  std::unordered_map<std::uint64_t, MergeTarget> merges_;
  std::array<TokenId, 256> byte_ids_{};
};

// ---------------------------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  TokenId id;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Finds added tokens in text the way the tokenizers library does: leftmost-longest, honouring the flags.
class AddedTokenMatcher {
 public:
  void add(const AddedToken* token, std::string pattern) {
    if (pattern.empty()) return;
    by_first_byte_[static_cast<unsigned char>(pattern[0])].push_back({token, std::move(pattern)});
  }
  void finish() {
    for (auto& list : by_first_byte_)
      std::stable_sort(list.begin(), list.end(),
                       [](const Entry& a, const Entry& b) { return a.pattern.size() > b.pattern.size(); });
  }

  struct Segment {
    std::size_t begin, end;
    const AddedToken* token;  // null for plain text
  };

  std::vector<Segment> split(std::string_view text) const {
    std::vector<Segment> segments;
    std::size_t start_offset = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
      const Entry* hit = nullptr;
      for (const auto& entry : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
        if (text.compare(pos, entry.pattern.size(), entry.pattern) == 0) {
          hit = &entry;
          break;
        }
      }
      if (!hit) {
        ++pos;
        continue;
      }
      std::size_t begin = pos, end = pos + hit->pattern.size();
      pos = end;
      const AddedToken& token = *hit->token;
      if (token.single_word) {
        auto word_char = [](char32_t c) { return c != char32_t(-1) && (is_alphanumeric(c) || c == '_'); };
        if (word_char(last_char(text.substr(0, begin))) || word_char(first_char(text.substr(end)))) continue;
      }
      if (token.lstrip)
        begin = start_offset + strip_end(text.substr(start_offset, begin - start_offset), is_unicode_whitespace);
      if (token.rstrip) pos = end = strip_start(text, end, is_unicode_whitespace);
      if (begin > start_offset) segments.push_back({start_offset, begin, nullptr});
      segments.push_back({begin, end, &token});
      start_offset = end;
    }
    if (start_offset < text.size()) segments.push_back({start_offset, text.size(), nullptr});
    return segments;
  }

 private:
  struct Entry {
    const AddedToken* token;
    std::string pattern;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;
};

// ---------------------------------------------------------------------------------------------------------

class JsonTokenizer final : public ConfiguredTokenizer {
 public:
  JsonTokenizer(const std::filesystem::path& file, TokenizerConfig config) : ConfiguredTokenizer(std::move(config)) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail(file, "cannot be read");
    json root;
    try {
      root = json::parse(in);
    } catch (const json::exception& e) {
      fail(file, fmt::format("is not valid JSON ({})", e.what()));
    }
    try {
      read(root, file);
    } catch (const json::exception& e) {
      fail(file, fmt::format("unexpected structure ({})", e.what()));
    }
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<TokenId> ids;
    if (add_special_tokens) ids = prefix_;
    std::vector<Word> words;
    for (const auto& raw : raw_matcher_.split(text)) {
      if (raw.token) {
        ids.push_back(raw.token->id);
        continue;
      }
      std::string normalized(text.substr(raw.begin, raw.end - raw.begin));
      if (normalizer_) normalized = normalizer_->normalize(std::move(normalized));
      for (const auto& piece : normalized_matcher_.split(normalized)) {
        if (piece.token) {
          ids.push_back(piece.token->id);
          continue;
        }
        words.clear();
        words.push_back({normalized.substr(piece.begin, piece.end - piece.begin), raw.begin == 0 && piece.begin == 0});
        if (pre_tokenizer_) pre_tokenizer_->split(words);
        for (const auto& word : words) encode_word_cached(word.text, ids);
      }
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const TokenId id : ids) {
      if (id < 0 || static_cast<std::size_t>(id) >= id_to_token_.size()) continue;  // unknown ids are dropped
      if (skip_special_tokens && special_ids_.count(id)) continue;
      tokens.push_back(id_to_token_[id]);
    }
    if (!decoder_) return join(tokens, " ");  // what the tokenizers library does without a decoder
    decoder_->decode(tokens);
    return join(tokens, "");
  }

  std::size_t vocab_size() const override { return id_to_token_.size(); }

 private:
  void read(const json& root, const std::filesystem::path& file) {
    const json& model = root.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE")
      fail(file, fmt::format("model type {} is not supported (supported: BPE)", quote_value(type)));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && model.at(key).is_string() && !model.at(key).get<std::string>().empty())
        fail(file, fmt::format("model.{} is not supported (only empty)", key));

    for (const auto& [token, id] : model.at("vocab").items()) {
      const TokenId value = read_token_id(id, file, fmt::format("model.vocab id of {}", quote_value(token)));
      model_.vocab.emplace(token, value);
      if (static_cast<std::size_t>(value) >= model_.id_to_token.size()) model_.id_to_token.resize(value + 1);
      model_.id_to_token[value] = token;
    }
    int rank = 0;
    for (const auto& merge : model.at("merges")) {
      std::string left, right;
      if (merge.is_string()) {
        const auto text = merge.get<std::string>();
        const auto space = text.find(' ', 1);  // the first symbol may not start with a space
        if (space == std::string::npos) fail(file, fmt::format("merge {} is not \"left right\"", quote_value(text)));
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else {
        left = merge.at(0).get<std::string>();
        right = merge.at(1).get<std::string>();
      }
      const auto l = model_.find(left), r = model_.find(right), m = model_.find(left + right);
      if (!l || !r || !m)
        fail(file, fmt::format("merge {} {} refers to a token missing from model.vocab", quote_value(left),
                               quote_value(right)));
      model_.add_merge(*l, *r, rank++, *m);
    }
    model_.byte_fallback = model.value("byte_fallback", false);
    model_.fuse_unk = model.value("fuse_unk", false);
    model_.ignore_merges = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model.at("unk_token").is_string()) model_.unk = model_.find(model.at("unk_token").get<std::string>());
    model_.prepare_byte_fallback();

    id_to_token_ = model_.id_to_token;
    if (root.contains("added_tokens")) {
      for (const auto& node : root.at("added_tokens")) {
        AddedToken token;
        token.content = node.at("content").get<std::string>();
        // The tokenizers library keeps the model's id for a token the vocabulary already has.
        token.id = model_.find(token.content).value_or(read_token_id(node.at("id"), file, "added_tokens id"));
        token.special = node.value("special", false);
        token.lstrip = node.value("lstrip", false);
        token.rstrip = node.value("rstrip", false);
        token.single_word = node.value("single_word", false);
        token.normalized = node.value("normalized", !token.special);
        added_.push_back(std::move(token));
      }
    }
    normalizer_ = read_normalizer(root.value("normalizer", json()), file);
    pre_tokenizer_ = read_pre_tokenizer(root.value("pre_tokenizer", json()), file);
    decoder_ = read_decoder(root.value("decoder", json()), file);

    for (const auto& token : added_) {
      if (static_cast<std::size_t>(token.id) >= id_to_token_.size()) id_to_token_.resize(token.id + 1);
      id_to_token_[token.id] = token.content;
      if (token.special) special_ids_.insert(token.id);
      if (token.normalized) {
        normalized_matcher_.add(&token, normalizer_ ? normalizer_->normalize(token.content) : token.content);
      } else {
        raw_matcher_.add(&token, token.content);
      }
    }
    raw_matcher_.finish();
    normalized_matcher_.finish();

    auto token_id = [&](const std::optional<std::string>& content) -> std::optional<TokenId> {
      if (!content) return std::nullopt;
      for (const auto& token : added_)
        if (token.content == *content) return token.id;
      return model_.find(*content);
    };
    bos_id_ = token_id(config_.bos_token);
    eos_id_ = token_id(config_.eos_token);

    // transformers 5 lets the post_processor alone decide; add_bos_token/add_eos_token in tokenizer_config.json
    // do not change a tokenizer.json's encoding (checked: tests/data/tokenizer/transformers-special-tokens.json).
    read_post_processor(root.value("post_processor", json()), file);
  }

  void read_post_processor(const json& node, const std::filesystem::path& file) {
    if (node.is_null()) return;
    const std::string type = node.value("type", "");
    if (type == "Sequence") {
      for (const auto& step : node.at("processors")) read_post_processor(step, file);
    } else if (type == "ByteLevel") {
      // Only adjusts offsets.
    } else if (type == "TemplateProcessing") {
      bool after_sequence = false;
      for (const auto& item : node.at("single")) {
        if (item.contains("Sequence")) {
          after_sequence = true;
          continue;
        }
        const std::string name = item.at("SpecialToken").at("id").get<std::string>();
        const auto& special = node.at("special_tokens");
        if (!special.contains(name))
          fail(file, fmt::format("post_processor names special token {} but does not define it", quote_value(name)));
        for (const auto& id : special.at(name).at("ids"))
          (after_sequence ? suffix_ : prefix_).push_back(known_id(id, file, "post_processor special token id"));
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      prefix_.push_back(known_id(node.at("cls").at(1), file, "post_processor cls id"));
      suffix_.push_back(known_id(node.at("sep").at(1), file, "post_processor sep id"));
    } else {
      fail(file, fmt::format("post_processor type {} is not supported (supported: Sequence, ByteLevel, "
                             "TemplateProcessing, BertProcessing, RobertaProcessing)",
                             quote_value(type)));
    }
  }

  // An id the post-processor adds must be one of this tokenizer's (a model would index its embeddings with it).
  TokenId known_id(const json& node, const std::filesystem::path& file, std::string_view what) const {
    const TokenId id = read_token_id(node, file, what);
    if (static_cast<std::size_t>(id) >= id_to_token_.size())
      fail(file, fmt::format("{} {} is outside the vocabulary of {} tokens", what, id, id_to_token_.size()));
    return id;
  }

  BpeModel model_;
  std::vector<AddedToken> added_;  // stable: the matchers point into it
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  NormalizerPtr normalizer_;
  PreTokenizerPtr pre_tokenizer_;
  DecoderPtr decoder_;
  std::vector<std::string> id_to_token_;
  std::set<TokenId> special_ids_;

  // Words repeat a lot in text, and BPE on a word is the expensive step: remember recent results.
  void encode_word_cached(const std::string& word, std::vector<TokenId>& ids) const {
    if (word.size() > max_cached_word_bytes) {
      model_.encode_word(word, ids);
      return;
    }
    {
      std::shared_lock lock(cache_mutex_);
      const auto found = cache_.find(word);
      if (found != cache_.end()) {
        ids.insert(ids.end(), found->second.begin(), found->second.end());
        return;
      }
    }
    const std::size_t before = ids.size();
    model_.encode_word(word, ids);
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= max_cached_words) cache_.clear();
    cache_.emplace(word, std::vector<TokenId>(ids.begin() + static_cast<std::ptrdiff_t>(before), ids.end()));
  }
  static constexpr std::size_t max_cached_words = 100000;
  static constexpr std::size_t max_cached_word_bytes = 256;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_json_tokenizer(const std::filesystem::path& tokenizer_json, TokenizerConfig config) {
  return std::make_unique<JsonTokenizer>(tokenizer_json, std::move(config));
}

}  // namespace mill::detail
