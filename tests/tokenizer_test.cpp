// Tokenizers against references computed elsewhere: OpenAI's GPT-2 encoder, Google's SentencePiece (the
// committed file and spm_encode at test time), the Hugging Face tokenizers library (ids committed in
// tests/data/tokenizer), and Python's Jinja2 for chat templates.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdlib>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mill/tokenizers/chat_template.hpp"
#include "mill/base/error.hpp"
#include "mill/tokenizers/sentencepiece_conversion.hpp"
#include "mill/tokenizers/tokenizer.hpp"
#include "support.hpp"

using mill::TokenId;
using mill::Tokenizer;
using nlohmann::json;
namespace fs = std::filesystem;
namespace test = mill::test;

namespace {

const fs::path data_dir = fs::path(mill::test::source_dir()) / "tests" / "data";

std::vector<json> read_jsonl(const fs::path& file) {
  std::vector<json> rows;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

json read_json(const fs::path& file) {
  std::ifstream in(file);
  return json::parse(in);
}

// The variant of the GPT-2 tokenizer.json described by tests/data/tokenizer/variants.json.
json make_variant(const json& base, const json& patch) {
  json result = base;
  if (patch.contains("set"))
    for (const auto& [key, value] : patch.at("set").items()) result[key] = value;
  if (patch.contains("model"))
    for (const auto& [key, value] : patch.at("model").items()) result["model"][key] = value;
  if (patch.contains("added_tokens"))
    for (const auto& token : patch.at("added_tokens")) result["added_tokens"].push_back(token);
  return result;
}

std::vector<TokenId> ids_of(const json& node) { return node.get<std::vector<TokenId>>(); }

// A SentencePiece-style tokenizer.json made from a tokenizer.model by mill::sentencepiece_to_tokenizer_json.
json tokenizer_json_from_sentencepiece(const fs::path& model_file, bool legacy_normalizer) {
  return json::parse(mill::sentencepiece_to_tokenizer_json(
      model_file, legacy_normalizer ? mill::SentencePieceJsonStyle::prepend_normalizer : mill::SentencePieceJsonStyle::metaspace));
}

void write_json(const fs::path& file, const json& value) { mill::test::write_text(file, value.dump()); }

// Ids that Google's spm_encode gives for each single-line text (empty map when spm_encode is missing).
std::map<std::string, std::vector<TokenId>> spm_encode_ids(const fs::path& model, const std::vector<std::string>& texts,
                                                           const fs::path& scratch) {
  std::map<std::string, std::vector<TokenId>> result;
  std::vector<std::string> lines;
  for (const auto& text : texts)
    if (!text.empty() && text.find_first_of("\r\n") == std::string::npos) lines.push_back(text);
  std::string input;
  for (const auto& line : lines) input += line + "\n";
  mill::test::write_text(scratch / "spm-input.txt", input);
  const auto run = mill::test::run_program({"spm_encode", "--model=" + model.string(), "--output_format=id",
                                            "--input=" + (scratch / "spm-input.txt").string()});
  if (run.exit_code != 0) return result;
  std::istringstream out(run.out);
  std::string line;
  std::size_t index = 0;
  while (std::getline(out, line) && index < lines.size()) {
    std::istringstream numbers(line);
    std::vector<TokenId> ids;
    TokenId id;
    while (numbers >> id) ids.push_back(id);
    result[lines[index++]] = ids;
  }
  return result;
}

std::vector<std::string> probe_texts() {
  return read_json(data_dir / "tokenizer" / "probe_texts.json").get<std::vector<std::string>>();
}

}  // namespace

TEST_CASE("GPT-2 tokenizer.json reproduces OpenAI's reference encoder token for token", "[tokenizer]") {
  const auto folder = mill::test::shared_path("models/gpt2-tokenizer");
  if (folder.empty()) {
    WARN("../shared/models/gpt2-tokenizer is absent; skipped");
    return;
  }
  const auto tokenizer = Tokenizer::load(folder);
  const auto rows = read_jsonl(folder / "reference-encodings.jsonl");
  REQUIRE(rows.size() >= 10);
  for (const auto& row : rows) {
    const std::string text = row.at("text");
    INFO("text: " << text);
    const auto ids = tokenizer->encode(text, false);
    CHECK(ids == ids_of(row.at("ids")));
    CHECK(tokenizer->decode(ids) == text);
    CHECK(tokenizer->encode(text, true) == ids);  // GPT-2 adds no BOS
  }
  CHECK(tokenizer->bos_id() == 50256);
  CHECK(tokenizer->eos_id() == 50256);
  CHECK(tokenizer->vocab_size() == 50257);
}

TEST_CASE("Llama-2 tokenizer.model through libsentencepiece reproduces the reference encodings", "[tokenizer]") {
  const auto folder = mill::test::shared_path("models/llama2-tokenizer");
  if (folder.empty()) {
    WARN("../shared/models/llama2-tokenizer is absent; skipped");
    return;
  }
  const auto tokenizer = Tokenizer::load(folder);
  CHECK(tokenizer->bos_id() == 1);
  CHECK(tokenizer->eos_id() == 2);
  CHECK(tokenizer->vocab_size() == 32000);
  const auto rows = read_jsonl(folder / "reference-encodings.jsonl");
  REQUIRE(rows.size() >= 10);
  for (const auto& row : rows) {
    const std::string text = row.at("text");
    INFO("text: " << text);
    const auto expected = ids_of(row.at("ids"));
    CHECK(tokenizer->encode(text, false) == expected);
    auto with_bos = expected;
    with_bos.insert(with_bos.begin(), 1);
    CHECK(tokenizer->encode(text, true) == with_bos);
    CHECK(tokenizer->decode(with_bos, true) == text);
  }
  // Control pieces written in the text are recognised, as the converted tokenizer does.
  const auto ids = tokenizer->encode("<s>Hi</s>", false);
  REQUIRE(ids.size() >= 3);
  CHECK(ids.front() == 1);
  CHECK(ids.back() == 2);
}

TEST_CASE("tokenizer.json variants agree with the Hugging Face tokenizers library", "[tokenizer][agreement]") {
  const auto gpt2 = mill::test::shared_path("models/gpt2-tokenizer/tokenizer.json");
  if (gpt2.empty()) {
    WARN("../shared/models/gpt2-tokenizer is absent; skipped");
    return;
  }
  // Catch runs the case once per SECTION: the inputs are read once, not once per variant.
  static const json base = read_json(gpt2);
  static const json variants = read_json(data_dir / "tokenizer" / "variants.json");
  static const auto references = [] {
    std::map<std::string, std::vector<json>> by_variant;
    for (const auto& row : read_jsonl(data_dir / "tokenizer" / "hf-reference-encodings.jsonl"))
      by_variant[row.at("variant").get<std::string>()].push_back(row);
    return by_variant;
  }();
  mill::test::TempDir dir;
  std::size_t checked = 0;
  for (const auto& [name, patch] : variants.items()) {
    if (name[0] == '_') continue;
    SECTION(name) {
      fs::create_directories(dir / name);
      if (patch.value("base", "") == "llama2-metaspace") {
        const auto model = mill::test::shared_path("models/llama2-tokenizer/tokenizer.model");
        if (model.empty()) {
          WARN("../shared/models/llama2-tokenizer is absent; variant skipped");
          continue;
        }
        write_json(dir / name / "tokenizer.json", make_variant(tokenizer_json_from_sentencepiece(model, false), patch));
      } else {
        write_json(dir / name / "tokenizer.json", make_variant(base, patch));
      }
      const auto tokenizer = Tokenizer::load(dir / name);
      REQUIRE(references.count(name) == 1);
      REQUIRE(references.at(name).size() > 50);
      for (const auto& row : references.at(name)) {
        const std::string text = row.at("text");
        INFO("variant " << name << ", text: " << text);
        const auto ids = tokenizer->encode(text, false);
        CHECK(ids == ids_of(row.at("ids")));
        const auto ids_special = tokenizer->encode(text, true);
        CHECK(ids_special == ids_of(row.at("ids_special")));
        CHECK(tokenizer->decode(ids) == row.at("decoded").get<std::string>());
        CHECK(tokenizer->decode(ids_special, true) == row.at("decoded_skip").get<std::string>());
        ++checked;
      }
    }
  }
  CHECK(checked > 0);
}

TEST_CASE("SentencePiece-style tokenizer.json built from tokenizer.model agrees with SentencePiece", "[tokenizer][agreement]") {
  const auto model = mill::test::shared_path("models/llama2-tokenizer/tokenizer.model");
  if (model.empty()) {
    WARN("../shared/models/llama2-tokenizer is absent; skipped");
    return;
  }
  // References: the committed spm_encode output, plus spm_encode run now on the probe texts.
  std::map<std::string, std::vector<TokenId>> expected;
  for (const auto& row : read_jsonl(model.parent_path() / "reference-encodings.jsonl"))
    expected[row.at("text").get<std::string>()] = ids_of(row.at("ids"));
  mill::test::TempDir dir;
  const auto probes = probe_texts();
  const auto from_spm = spm_encode_ids(model, probes, dir.path());
  if (from_spm.empty()) WARN("spm_encode (Debian package sentencepiece) is missing; only the committed references are used");
  expected.insert(from_spm.begin(), from_spm.end());

  for (const bool legacy : {true, false}) {
    SECTION(legacy ? "Prepend+Replace normalizer" : "Metaspace pre-tokenizer") {
      write_json(dir / "tokenizer.json", tokenizer_json_from_sentencepiece(model, legacy));
      const auto tokenizer = Tokenizer::load(dir / "tokenizer.json");
      const auto through_library = Tokenizer::load(model.parent_path());
      std::size_t checked = 0;
      for (const auto& [text, ids] : expected) {
        // spm_encode reads "<s>" as text where a tokenizer.json has an added token; and the Metaspace
        // pre-tokenizer, unlike SentencePiece, adds no prefix to text already starting with a space or U+2581.
        if (text.find("<s>") != std::string::npos || text.find("</s>") != std::string::npos) continue;
        if (!legacy && (text.rfind("\xE2\x96\x81", 0) == 0 || text.rfind(" ", 0) == 0)) continue;
        INFO("text: " << text);
        CHECK(tokenizer->encode(text, false) == ids);
        CHECK(through_library->encode(text, false) == ids);
        auto with_bos = ids;
        with_bos.insert(with_bos.begin(), 1);
        CHECK(tokenizer->encode(text, true) == with_bos);
        CHECK(tokenizer->decode(ids) == through_library->decode(ids));
        ++checked;
      }
      CHECK(checked >= 15);

      // And the Hugging Face tokenizers library on this very file, special tokens and decoding included.
      const std::string variant = legacy ? "llama2-json-legacy" : "llama2-json-metaspace";
      std::size_t compared = 0;
      for (const auto& row : read_jsonl(data_dir / "tokenizer" / "hf-reference-encodings.jsonl")) {
        if (row.at("variant") != variant) continue;
        const std::string text = row.at("text");
        INFO("Hugging Face reference, text: " << text);
        const auto ids = tokenizer->encode(text, false);
        CHECK(ids == ids_of(row.at("ids")));
        const auto ids_special = tokenizer->encode(text, true);
        CHECK(ids_special == ids_of(row.at("ids_special")));
        CHECK(tokenizer->decode(ids) == row.at("decoded").get<std::string>());
        CHECK(tokenizer->decode(ids_special, true) == row.at("decoded_skip").get<std::string>());
        ++compared;
      }
      CHECK(compared > 50);
    }
  }
}

TEST_CASE("SentencePiece-style tokenizer.json agrees with libsentencepiece on every MMLU test line", "[tokenizer][agreement]") {
  const auto model = mill::test::shared_path("models/llama2-tokenizer/tokenizer.model");
  const auto mmlu = mill::test::shared_path("data/mmlu/test");
  if (model.empty() || mmlu.empty()) {
    WARN("../shared/models/llama2-tokenizer or ../shared/data/mmlu is absent; skipped");
    return;
  }
  mill::test::TempDir dir;
  write_json(dir / "tokenizer.json", tokenizer_json_from_sentencepiece(model, true));
  const auto tokenizer = Tokenizer::load(dir / "tokenizer.json");
  sentencepiece::SentencePieceProcessor processor;
  REQUIRE(processor.Load(model.string()).ok());
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(mmlu)) files.push_back(entry.path());
  std::size_t lines = 0, mismatches = 0;
  std::vector<int> expected;
  // Under the sanitizers every 32nd line: they look for memory errors, which a sample finds as well; the plain
  // suite compares every line.
#ifdef MILL_SANITIZED
  constexpr std::size_t kStride = 32;
#else
  constexpr std::size_t kStride = 1;
#endif
  for (const auto& file : files) {
    std::istringstream in(mill::test::read_text(file));
    std::string line;
    for (std::size_t number = 0; std::getline(in, line); ++number) {
      if (number % kStride != 0) continue;
      expected.clear();
      REQUIRE(processor.Encode(line, &expected).ok());
      const auto ids = tokenizer->encode(line, false);
      if (!std::equal(ids.begin(), ids.end(), expected.begin(), expected.end())) {
        if (++mismatches <= 3) FAIL_CHECK("differs from libsentencepiece on: " << line);
      }
      ++lines;
    }
  }
  CHECK(lines * kStride > 10000);
  CHECK(mismatches == 0);
}

TEST_CASE("decode(encode(x)) gives x back for the lossless tokenizers", "[tokenizer]") {
  const auto gpt2 = mill::test::shared_path("models/gpt2-tokenizer");
  const auto llama2 = mill::test::shared_path("models/llama2-tokenizer");
  if (gpt2.empty() || llama2.empty()) {
    WARN("../shared/models is absent; skipped");
    return;
  }
  const auto byte_level = Tokenizer::load(gpt2);
  const auto sentencepiece = Tokenizer::load(llama2);
  mill::test::TempDir dir;
  write_json(dir / "tokenizer.json", tokenizer_json_from_sentencepiece(llama2 / "tokenizer.model", true));
  const auto sentencepiece_json = Tokenizer::load(dir / "tokenizer.json");
  for (const auto& text : probe_texts()) {
    INFO("text: " << text);
    CHECK(byte_level->decode(byte_level->encode(text, false)) == text);
    // SentencePiece decoding drops the one leading space its encoding added, so only texts without one; and
    // skipping special tokens drops a literal <s>.
    if (!text.empty() && text[0] != ' ' && text.rfind("\xE2\x96\x81", 0) != 0 && text.find("<s>") == std::string::npos &&
        text.find("</s>") == std::string::npos) {
      CHECK(sentencepiece->decode(sentencepiece->encode(text, true), true) == text);
      CHECK(sentencepiece_json->decode(sentencepiece_json->encode(text, true), true) == text);
    }
  }
}

TEST_CASE("invalid UTF-8 is encoded byte by byte and decodes with replacement characters", "[tokenizer]") {
  const auto gpt2 = mill::test::shared_path("models/gpt2-tokenizer");
  const auto llama2 = mill::test::shared_path("models/llama2-tokenizer/tokenizer.model");
  if (gpt2.empty() || llama2.empty()) {
    WARN("../shared/models is absent; skipped");
    return;
  }
  const std::string invalid = "ok \xFF\xFE bad \xC3( and \xE2\x82 cut";
  // One U+FFFD per maximal invalid subpart (Unicode's recommended practice, as Python and Rust decode).
  const std::string replaced = "ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD( and \xEF\xBF\xBD cut";
  const auto byte_level = Tokenizer::load(gpt2);
  const auto ids = byte_level->encode(invalid, false);
  CHECK(byte_level->decode(ids) == replaced);
  // The valid parts tokenize as they would alone.
  const auto head = byte_level->encode("ok", false);
  CHECK(std::equal(head.begin(), head.end(), ids.begin()));

  mill::test::TempDir dir;
  write_json(dir / "tokenizer.json", tokenizer_json_from_sentencepiece(llama2, true));
  const auto sentencepiece_json = Tokenizer::load(dir / "tokenizer.json");
  const auto fallback_ids = sentencepiece_json->encode("a\xFF", false);
  REQUIRE(!fallback_ids.empty());
  CHECK(fallback_ids.back() == 3 + 0xFF);  // the <0xFF> byte piece
  CHECK(sentencepiece_json->decode(fallback_ids) == "a\xEF\xBF\xBD");
}

TEST_CASE("encode_pair splits context and continuation like lm-evaluation-harness", "[tokenizer]") {
  const auto gpt2 = mill::test::shared_path("models/gpt2-tokenizer");
  const auto llama2 = mill::test::shared_path("models/llama2-tokenizer");
  if (gpt2.empty() || llama2.empty()) {
    WARN("../shared/models is absent; skipped");
    return;
  }
  for (const auto& folder : {gpt2, llama2}) {
    const auto tokenizer = Tokenizer::load(folder);
    INFO("tokenizer " << folder.string());
    // The trailing space of "Answer: " moves to the continuation, so " B" is one token as in "Answer: B".
    const auto whole = tokenizer->encode("Answer: B", false);
    const auto pair = mill::encode_pair(*tokenizer, "Answer: ", "B", false);
    CHECK(pair.context == tokenizer->encode("Answer:", false));
    CHECK(pair.continuation == std::vector<TokenId>(whole.begin() + static_cast<std::ptrdiff_t>(pair.context.size()), whole.end()));
    CHECK(pair.continuation.size() == 1);
    // In general the continuation is the whole encoding after the context's own token count.
    const std::string context = "Question: what is 12+30?\nAnswer:";
    const std::string continuation = " 42 (forty-two)";
    const auto split = mill::encode_pair(*tokenizer, context, continuation, false);
    const auto all = tokenizer->encode(context + continuation, false);
    CHECK(split.context == tokenizer->encode(context, false));
    CHECK(split.continuation == std::vector<TokenId>(all.begin() + static_cast<std::ptrdiff_t>(split.context.size()), all.end()));
    // An empty context scores against the prefix token (BOS, else EOS).
    const auto empty = mill::encode_pair(*tokenizer, "", "Hello", false);
    REQUIRE(empty.context.size() == 1);
    CHECK(empty.context[0] == *tokenizer->bos_id());
    CHECK(empty.continuation == tokenizer->encode("Hello", false));
  }
  // With add_special_tokens the BOS stays on the context side.
  const auto llama = Tokenizer::load(llama2);
  const auto with_bos = mill::encode_pair(*llama, "Answer:", " B", true);
  REQUIRE(!with_bos.context.empty());
  CHECK(with_bos.context.front() == 1);
  CHECK(with_bos.continuation == std::vector<TokenId>{350});
}

TEST_CASE("tokenizer loading names the file and what is unsupported", "[tokenizer]") {
  mill::test::TempDir dir;
  CHECK_THROWS_WITH(Tokenizer::load(dir / "missing"), Catch::Contains("missing") && Catch::Contains("does not exist"));
  CHECK_THROWS_WITH(Tokenizer::load(dir.path()), Catch::Contains("neither tokenizer.json nor tokenizer.model"));
  mill::test::write_text(dir / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  CHECK_THROWS_WITH(Tokenizer::load(dir.path()), Catch::Contains("tokenizer.json") && Catch::Contains("WordPiece"));
  mill::test::write_text(dir / "tokenizer.json",
                         R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Precompiled"}})");
  CHECK_THROWS_WITH(Tokenizer::load(dir.path()), Catch::Contains("Precompiled"));
  mill::test::write_text(dir / "tokenizer.json", "{not json");
  CHECK_THROWS_WITH(Tokenizer::load(dir.path()), Catch::Contains("not valid JSON"));
}

// Found by fuzz/fuzz_tokenizer_json: these ids sized or indexed the id table unchecked (a float cast, a
// negative index, a multi-gigabyte table), and a post-processor could add an id no embedding row has.
TEST_CASE("token ids in tokenizer.json must be integers inside the vocabulary", "[tokenizer]") {
  mill::test::TempDir dir;
  const auto load_with = [&](const std::string& vocab_id, const std::string& rest) {
    mill::test::write_text(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": )" + vocab_id +
                                                       R"(}, "merges": []})" + rest + "}");
    return Tokenizer::load(dir.path());
  };
  CHECK(load_with("1", "")->encode("ab", true) == std::vector<TokenId>{0, 1});
  for (const std::string id : {"4.4e80", "-1", "2147483648", "4294967297", "\"1\""})
    CHECK_THROWS_WITH(load_with(id, ""), Catch::Contains("model.vocab id of \"b\" must be an integer from 0 to"));
  CHECK_THROWS_WITH(load_with("1", R"(, "added_tokens": [{"id": -1, "content": "<x>"}])"),
                    Catch::Contains("added_tokens id must be an integer"));
  const auto with_bos = [](int id) {
    return R"(, "added_tokens": [{"id": 2, "content": "<s>", "special": true}], "post_processor": {"type": )"
           R"("TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], )"
           R"("special_tokens": {"<s>": {"id": "<s>", "ids": [)" + std::to_string(id) + "]}}}";
  };
  CHECK(load_with("1", with_bos(2))->encode("b", true) == std::vector<TokenId>{2, 1});
  CHECK_THROWS_WITH(load_with("1", with_bos(3)), Catch::Contains("id 3 is outside the vocabulary of 3 tokens"));
  CHECK_THROWS_WITH(load_with("1", R"(, "decoder": {"type": "Strip", "start": 1e300})"),
                    Catch::Contains("Strip decoder start must be an integer"));
}

// ---------------------------------------------------------------------------------------------------------
// Chat templates

namespace {

json conversation(std::initializer_list<std::pair<const char*, const char*>> turns) {
  json messages = json::array();
  for (const auto& [role, content] : turns) messages.push_back({{"role", role}, {"content", content}});
  return messages;
}

}  // namespace

TEST_CASE("chat templates render as Python's Jinja2 renders them for transformers", "[tokenizer][chat_template]") {
  const auto python = fs::path("/usr/bin/python3");
  const auto check = mill::test::run_program({python.string(), "-c", "import jinja2"});
  if (check.exit_code != 0) {
    WARN("/usr/bin/python3 with jinja2 (Debian python3-jinja2) is missing; skipped");
    return;
  }
  const std::vector<json> conversations = {
      conversation({{"user", "Hello there!"}}),
      conversation({{"system", "You are terse."}, {"user", "Hello, who are you?"}}),
      conversation({{"user", "  What is 2+2?  "}, {"assistant", " 4 "}, {"user", "And 3+3? é 中文 🙂"}}),
      conversation({{"system", "Rules"}, {"user", "Hi"}, {"assistant", "Hey"}, {"user", "please stop now"}, {"assistant", "ok?"}}),
      conversation({{"user", "one"}, {"user", "two"}}),  // breaks role alternation
      conversation({{"assistant", "I start"}, {"tool", "ignored"}, {"user", "quote ' and \" and \\n"}}),
  };
  std::vector<std::string> templates;
  for (const auto& entry : fs::directory_iterator(data_dir / "chat_templates"))
    if (entry.path().extension() == ".jinja") templates.push_back(entry.path().string());
  std::sort(templates.begin(), templates.end());
  REQUIRE(templates.size() >= 7);

  json cases = json::array();
  for (const auto& path : templates)
    for (const auto& messages : conversations)
      for (const bool prompt : {false, true})
        cases.push_back({{"template", path},
                         {"context",
                          {{"messages", messages},
                           {"add_generation_prompt", prompt},
                           {"bos_token", "<s>"},
                           {"eos_token", "</s>"},
                           {"tools", nullptr}}}});
  mill::test::TempDir dir;
  write_json(dir / "cases.json", cases);
  const auto run = mill::test::run_program(
      {python.string(), (data_dir / "chat_templates" / "render_reference.py").string(), (dir / "cases.json").string()});
  REQUIRE(run.exit_code == 0);
  const json expected = json::parse(run.out);
  REQUIRE(expected.size() == cases.size());
  std::size_t errors = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& path = cases[i].at("template").get<std::string>();
    INFO("template " << path << " context " << cases[i].at("context").dump());
    const auto chat_template = mill::ChatTemplate::parse(mill::test::read_text(path), path);
    const nlohmann::ordered_json context = nlohmann::ordered_json::parse(cases[i].at("context").dump());
    if (expected[i].contains("error")) {
      ++errors;
      CHECK_THROWS_WITH(chat_template.render(context), Catch::Contains(expected[i].at("error").get<std::string>()));
    } else {
      CHECK(chat_template.render(context) == expected[i].at("text").get<std::string>());
    }
  }
  CHECK(errors > 0);  // the role checks of the Llama-2, Mistral and Gemma templates did fire
}

TEST_CASE("unsupported template constructs fail with the construct and line named", "[tokenizer][chat_template]") {
  CHECK_THROWS_WITH(mill::ChatTemplate::parse("hi\n{% include 'other.jinja' %}", "t.json"),
                    Catch::Contains("t.json line 2") && Catch::Contains("include"));
  CHECK_THROWS_WITH(mill::ChatTemplate::parse("{% for x in y %}", "t.json"), Catch::Contains("endfor"));
  CHECK_THROWS_WITH(mill::ChatTemplate::parse("{{ x ", "t.json"), Catch::Contains("never closed"));
  const auto filter = mill::ChatTemplate::parse("{{ messages | wordwrap }}", "t.json");
  CHECK_THROWS_WITH(filter.render({{"messages", "x"}}), Catch::Contains("filter 'wordwrap'"));
  const auto method = mill::ChatTemplate::parse("{{ messages.append(1) }}", "t.json");
  CHECK_THROWS_WITH(method.render({{"messages", nlohmann::ordered_json::array()}}), Catch::Contains("method 'append'"));
}

TEST_CASE("Tokenizer::apply_chat_template uses tokenizer_config.json", "[tokenizer][chat_template]") {
  const auto gpt2 = mill::test::shared_path("models/gpt2-tokenizer/tokenizer.json");
  if (gpt2.empty()) {
    WARN("../shared/models/gpt2-tokenizer is absent; skipped");
    return;
  }
  mill::test::TempDir dir;
  fs::copy_file(gpt2, dir / "tokenizer.json");
  json config = {{"bos_token", {{"content", "<|endoftext|>"}, {"lstrip", false}}},
                 {"eos_token", "<|endoftext|>"},
                 {"chat_template", mill::test::read_text(data_dir / "chat_templates" / "chatml.jinja")}};
  write_json(dir / "tokenizer_config.json", config);
  const auto tokenizer = Tokenizer::load(dir.path());
  const std::string text = tokenizer->apply_chat_template({{"user", "Hi"}}, true);
  CHECK(text == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  config.erase("chat_template");
  write_json(dir / "tokenizer_config.json", config);
  CHECK_THROWS_WITH(Tokenizer::load(dir.path())->apply_chat_template({{"user", "Hi"}}, true),
                    Catch::Contains("no chat_template"));
}

TEST_CASE("BOS and EOS follow the tokenizer.json post_processor as in transformers", "[tokenizer][agreement]") {
  const auto gpt2 = mill::test::shared_path("models/gpt2-tokenizer/tokenizer.json");
  const auto llama2 = mill::test::shared_path("models/llama2-tokenizer/tokenizer.model");
  if (gpt2.empty() || llama2.empty()) {
    WARN("../shared/models is absent; skipped");
    return;
  }
  const json base = read_json(gpt2);
  const json variants = read_json(data_dir / "tokenizer" / "variants.json");
  const json reference = read_json(data_dir / "tokenizer" / "transformers-special-tokens.json");
  mill::test::TempDir dir;
  for (const auto& item : reference.at("cases")) {
    const std::string name = item.at("name");
    const std::string from = item.at("base");
    INFO("case " << name);
    const auto folder = dir / std::to_string(&item - &reference.at("cases")[0]);
    fs::create_directories(folder);
    if (from == "llama2-json-legacy") write_json(folder / "tokenizer.json", tokenizer_json_from_sentencepiece(llama2, true));
    else write_json(folder / "tokenizer.json", make_variant(base, variants.at(from)));
    write_json(folder / "tokenizer_config.json", item.at("config"));
    const auto tokenizer = Tokenizer::load(folder);
    CHECK(tokenizer->encode(reference.at("text").get<std::string>(), true) == ids_of(item.at("ids")));
  }
  // A tokenizer.model has no post_processor: BOS unless add_bos_token is false, EOS only when asked for.
  fs::create_directories(dir / "model");
  fs::copy_file(llama2, dir / "model" / "tokenizer.model");
  CHECK(Tokenizer::load(dir / "model")->encode("Hello world", true) == std::vector<TokenId>{1, 15043, 3186});
  write_json(dir / "model" / "tokenizer_config.json", {{"add_bos_token", false}, {"add_eos_token", true}});
  CHECK(Tokenizer::load(dir / "model")->encode("Hello world", true) == std::vector<TokenId>{15043, 3186, 2});
}

// Not run by default: writes the SentencePiece-style tokenizer.json files that tests build, so that the
// reference generator (tests/data/tokenizer/generate_references.py) can encode with exactly these files.
TEST_CASE("write the tokenizer.json files built from tokenizer.model", "[.][tokenizer-dump]") {
  const auto model = mill::test::shared_path("models/llama2-tokenizer/tokenizer.model");
  const char* target = std::getenv("MILL_TOKENIZER_DUMP_DIR");
  REQUIRE(!model.empty());
  REQUIRE(target != nullptr);
  write_json(fs::path(target) / "llama2-json-legacy.json", tokenizer_json_from_sentencepiece(model, true));
  write_json(fs::path(target) / "llama2-json-metaspace.json", tokenizer_json_from_sentencepiece(model, false));
}
