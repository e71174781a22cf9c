#pragma once
// Turns a SentencePiece BPE tokenizer.model (Llama-2, Mistral) into the equivalent Hugging Face tokenizer.json,
// the way transformers' converter does: the pieces become the vocabulary, every split of a piece into two
// pieces becomes a merge ranked by the merged piece's score, control and unknown pieces become special added
// tokens, byte pieces give byte fallback, and BOS is added by the post-processor.
#include <filesystem>
#include <string>

namespace mill {

enum class SentencePieceJsonStyle {
  prepend_normalizer,  // normalizer Prepend("▁") + Replace(" ", "▁"): most Llama-2/Mistral tokenizer.json files
  metaspace,           // pre_tokenizer Metaspace(prepend_scheme "first"): transformers' legacy=False form
};

// The tokenizer.json text. Throws mill::Error naming the file when it is not a SentencePiece model.
std::string sentencepiece_to_tokenizer_json(const std::filesystem::path& model_file, SentencePieceJsonStyle style);

}  // namespace mill
