#include "mill/eval/dataset.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/preprocess.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::optional<std::filesystem::path> resolve_data_dir(const std::optional<std::filesystem::path>& flag) {
  if (flag && !flag->empty()) return *flag;
  if (const char* value = std::getenv("MILL_DATA_DIR"); value && *value) return std::filesystem::path(value);
  return std::nullopt;
}

std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& source) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  bool field_started = false;
  std::size_t line = 1;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 byte-order mark
  auto end_field = [&] {
    row.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto end_row = [&] {
    end_field();
    if (!(row.size() == 1 && row[0].empty())) rows.push_back(std::move(row));  // blank lines are skipped
    row.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"' && !field_started) {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_row();
      ++line;
    } else {
      field += c;
      field_started = true;
    }
  }
  if (quoted) throw Error(fmt::format("{}: a quoted CSV field is not closed (opened before line {})", source, line));
  if (field_started || !field.empty() || !row.empty()) end_row();
  return rows;
}

std::vector<nlohmann::json> parse_mmlu_csv(std::string_view text, const std::string& source) {
  auto rows = parse_csv(text, source);
  std::vector<nlohmann::json> documents;
  bool header = !rows.empty() && !rows[0].empty() && rows[0][0] == "question";
  if (header) {
    const std::vector<std::string> expected = {"question", "choice0", "choice1", "choice2", "choice3", "answer"};
    if (rows[0] != expected) {
      throw Error(fmt::format("{}: MMLU CSV header is {}; expected {} (or no header with an answer letter)", source,
                              quote_value(join(rows[0], ",")), join(expected, ",")));
    }
  }
  for (std::size_t r = header ? 1 : 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const auto where = fmt::format("{}: row {}", source, r + 1);
    if (row.size() != 6) {
      throw Error(fmt::format("{} has {} fields; MMLU rows have 6 (question, 4 choices, answer)", where, row.size()));
    }
    const auto answer_text = trim(row[5]);
    int answer = -1;
    if (answer_text.size() == 1 && answer_text[0] >= 'A' && answer_text[0] <= 'D') {
      answer = answer_text[0] - 'A';
    } else if (answer_text.size() == 1 && answer_text[0] >= '0' && answer_text[0] <= '3') {
      answer = answer_text[0] - '0';
    } else {
      throw Error(fmt::format("{}: answer {} is neither a letter A-D nor an index 0-3", where, quote_value(answer_text)));
    }
    documents.push_back({{"question", row[0]}, {"choices", {row[1], row[2], row[3], row[4]}}, {"answer", answer}});
  }
  return documents;
}

namespace {

// The lines of `text`, split at '\n' (a last line without one included).
std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start < text.size();) {
    const auto end = std::min(text.find('\n', start), text.size());
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// Records from rows whose first is the header; `fields` names the kind of field in the error ("tab-separated ").
std::vector<nlohmann::json> documents_from_rows(const std::vector<std::vector<std::string>>& rows,
                                                const std::string& source, const char* fields) {
  std::vector<nlohmann::json> documents;
  if (rows.empty()) return documents;
  const auto& header = rows[0];
  for (std::size_t r = 1; r < rows.size(); ++r) {
    if (rows[r].size() != header.size()) {
      throw Error(fmt::format("{}: {} {} has {} {}fields but the header has {}", source, *fields ? "line" : "row", r + 1,
                              rows[r].size(), fields, header.size()));
    }
    nlohmann::json document = nlohmann::json::object();
    for (std::size_t c = 0; c < header.size(); ++c) document[header[c]] = rows[r][c];
    documents.push_back(std::move(document));
  }
  return documents;
}

std::vector<nlohmann::json> parse_generic_csv(std::string_view text, const std::string& source) {
  return documents_from_rows(parse_csv(text, source), source, "");
}

// Tab-separated values with a header row and no quoting (AI2's OpenBookQA release): every line is one record.
std::vector<nlohmann::json> parse_tsv(std::string_view text, const std::string& source) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::vector<std::vector<std::string>> rows;
  for (auto line : lines_of(text)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::vector<std::string> row;
    std::size_t from = 0;
    for (std::size_t tab; (tab = line.find('\t', from)) != std::string_view::npos; from = tab + 1) {
      row.emplace_back(line.substr(from, tab - from));
    }
    row.emplace_back(line.substr(from));
    rows.push_back(std::move(row));
  }
  return documents_from_rows(rows, source, "tab-separated ");
}

// `dataset.ordered_mappings`: these fields are mappings whose key order is data (TruthfulQA's mc1_targets lists
// its answers in order); each becomes {"choices": [keys in file order], "labels": [values]}, Hugging Face's shape.
void unfold_ordered_mappings(const nlohmann::ordered_json& parsed, const std::vector<std::string>& fields,
                             nlohmann::json& document) {
  for (const auto& field : fields) {
    const auto it = parsed.find(field);
    if (it == parsed.end() || !it->is_object()) continue;
    auto choices = nlohmann::json::array();
    auto labels = nlohmann::json::array();
    for (const auto& item : it->items()) {
      choices.push_back(item.key());
      labels.push_back(nlohmann::json::parse(item.value().dump()));
    }
    document[field] = {{"choices", std::move(choices)}, {"labels", std::move(labels)}};
  }
}

std::vector<nlohmann::json> parse_json_documents(const std::string& text, const std::string& source) {
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded()) throw Error(fmt::format("{}: not valid JSON", source));
  if (!parsed.is_array()) throw Error(fmt::format("{}: expected a JSON array of objects", source));
  std::vector<nlohmann::json> documents;
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    if (!parsed[i].is_object()) throw Error(fmt::format("{}: element {} is not an object", source, i));
    documents.push_back(std::move(parsed[i]));
  }
  return documents;
}

std::vector<nlohmann::json> parse_jsonl_documents(const std::string& text, const std::string& source) {
  std::vector<nlohmann::json> documents;
  const auto lines = lines_of(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto content = trim(lines[i]);
    if (content.empty()) continue;
    auto parsed = nlohmann::json::parse(content, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      throw Error(fmt::format("{}: line {} is not a JSON object", source, i + 1));
    }
    documents.push_back(std::move(parsed));
  }
  return documents;
}


std::string task_where(const TaskInfo& task) { return fmt::format("task {} ({})", task.name, task.source); }

const nlohmann::json& dataset_of(const TaskInfo& task) {
  const auto& definition = task.definition;
  if (!definition.contains("dataset") || !definition["dataset"].is_object()) {
    throw Error(fmt::format("{}: field `dataset` is missing (see docs/tasks.md)", task_where(task)));
  }
  return definition["dataset"];
}

// The documents of one data file's text in the task's format.
std::vector<nlohmann::json> parse_documents(const TaskInfo& task, std::string_view text, const std::string& source) {
  const auto& dataset = dataset_of(task);
  const auto format = dataset.value("format", std::string());
  if (format == "tsv") return parse_tsv(text, source);
  const auto ordered = dataset.value("ordered_mappings", std::vector<std::string>());
  if (!ordered.empty() && (format == "json" || format == "jsonl")) {
    // Parsed twice: once as usual, once keeping key order for the named fields.
    auto documents = format == "json" ? parse_json_documents(std::string(text), source)
                                      : parse_jsonl_documents(std::string(text), source);
    std::vector<nlohmann::ordered_json> in_order;
    if (format == "json") {
      for (auto& item : nlohmann::ordered_json::parse(text)) in_order.push_back(std::move(item));
    } else {
      for (const auto line : lines_of(text)) {
        const auto content = trim(line);
        if (!content.empty()) in_order.push_back(nlohmann::ordered_json::parse(content));
      }
    }
    for (std::size_t i = 0; i < documents.size() && i < in_order.size(); ++i) {
      unfold_ordered_mappings(in_order[i], ordered, documents[i]);
    }
    return documents;
  }
  if (format == "json") return parse_json_documents(std::string(text), source);
  if (format == "jsonl") return parse_jsonl_documents(std::string(text), source);
  const auto layout = dataset.value("layout", std::string());
  if (layout == "mmlu") return parse_mmlu_csv(text, source);
  if (layout.empty() || layout == "header") return parse_generic_csv(text, source);
  throw Error(fmt::format("{}: field `dataset.layout`: {} is not one of mmlu, header", task_where(task), quote_value(layout)));
}

// Keeps the documents whose fields equal every value of the task's `dataset.filter`.
void apply_filter(const TaskInfo& task, std::vector<nlohmann::json>& documents) {
  const auto& dataset = dataset_of(task);
  if (!dataset.contains("filter")) return;
  const auto& filter = dataset["filter"];
  if (!filter.is_object()) throw Error(fmt::format("{}: field `dataset.filter` must map field names to values", task_where(task)));
  std::vector<nlohmann::json> kept;
  for (auto& document : documents) {
    bool keep = true;
    for (const auto& [field, value] : filter.items()) {
      if (!document.contains(field) || scalar_text(document[field]) != scalar_text(value)) {
        keep = false;
        break;
      }
    }
    if (keep) kept.push_back(std::move(document));
  }
  documents = std::move(kept);
}

// `dataset.labels_path`: a file of one label per line, aligned with the documents (PIQA's valid-labels.lst); each
// line becomes the field `dataset.labels_field` (an integer when it is one).
void attach_labels(const TaskInfo& task, const std::string& text, const std::string& source,
                   std::vector<nlohmann::json>& documents) {
  const auto field = dataset_of(task).value("labels_field", std::string("label"));
  std::vector<std::string> lines;
  for (const auto line : lines_of(text)) lines.push_back(trim(line));
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.size() != documents.size()) {
    throw Error(fmt::format("{}: {} has {} labels for {} documents (one label per line, in document order)",
                            task_where(task), source, lines.size(), documents.size()));
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    const bool integer = !line.empty() && line.size() < 10 && line.find_first_not_of("0123456789") == std::string::npos;
    documents[i][field] = integer ? nlohmann::json(std::stoi(line)) : nlohmann::json(line);
  }
}

std::string missing_file_message(const TaskInfo& task, const std::string& split, const std::filesystem::path& path,
                                 const std::optional<std::filesystem::path>& data_dir) {
  return fmt::format("{}: data file for split {} not found: looked for {} (dataset.path {}) under data directory {}",
                     task_where(task), quote_value(split), path.string(),
                     quote_value(dataset_of(task).value("path", std::string())),
                     data_dir ? data_dir->string() : std::string("(none: the path is absolute)"));
}

// Up to `limit` bytes from the start of a file, and whether that is all of it.
std::pair<std::string, bool> read_prefix(const std::filesystem::path& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(fmt::format("{}: cannot be read ({})", path.string(), std::strerror(errno)));
  std::string text(limit, '\0');
  std::size_t filled = 0;
  while (filled < limit) {
    const auto got = ::read(fd, text.data() + filled, limit - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error = errno;
      ::close(fd);
      throw Error(fmt::format("{}: cannot be read ({})", path.string(), std::strerror(error)));
    }
    if (got == 0) break;
    filled += static_cast<std::size_t>(got);
  }
  char extra = 0;
  const bool whole = filled < limit || ::read(fd, &extra, 1) == 0;
  ::close(fd);
  text.resize(filled);
  return {std::move(text), whole};
}

// The longest prefix of `text` that ends at a record boundary: after a line break outside quotes (CSV) or after
// any line break (JSON Lines).
std::size_t complete_records(std::string_view text, bool csv) {
  std::size_t end = 0;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (csv && text[i] == '"') quoted = !quoted;
    if (text[i] == '\n' && !quoted) end = i + 1;
  }
  return end;
}

}  // namespace

std::filesystem::path data_file_path(const TaskInfo& task, const std::string& split,
                                     const std::optional<std::filesystem::path>& data_dir) {
  const auto& dataset = dataset_of(task);
  const auto pattern = dataset.value("path", std::string());
  if (pattern.empty()) throw Error(fmt::format("{}: field `dataset.path` is missing", task_where(task)));
  return split_file_path(task, pattern, split, data_dir);
}

std::filesystem::path split_file_path(const TaskInfo& task, const std::string& pattern, const std::string& split,
                                      const std::optional<std::filesystem::path>& data_dir) {
  std::string relative = pattern;
  for (std::size_t at; (at = relative.find("{split}")) != std::string::npos;) relative.replace(at, 7, split);
  if (std::filesystem::path(relative).is_absolute()) return relative;
  if (!data_dir) {
    throw Error(fmt::format("{} reads {} but no data directory is set: pass --data_dir DIR or set MILL_DATA_DIR "
                            "(docs/tasks.md)",
                            task_where(task), quote_value(relative)));
  }
  return *data_dir / relative;
}

bool task_reads_files(const TaskInfo& task) { return dataset_of(task).value("format", std::string()) != "inline"; }

std::size_t check_split(const TaskInfo& task, const std::string& split, const std::optional<std::filesystem::path>& data_dir,
                        std::size_t needed, bool filtered) {
  const auto& dataset = dataset_of(task);
  const auto format = dataset.value("format", std::string());
  if (format == "inline" || format == "json" || dataset.contains("labels_path") || dataset.contains("ordered_mappings")) {
    auto documents = load_split(task, split, data_dir).documents;
    return documents.size();  // load_split filters
  }
  const auto path = data_file_path(task, split, data_dir);
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) throw Error(missing_file_message(task, split, path, data_dir));
  if (!S_ISREG(info.st_mode)) throw Error(fmt::format("{}: {} is not a file", task_where(task), path.string()));
  // Read a growing prefix until it holds enough documents: planning stays fast on large files. Tasks of one
  // benchmark often share a file (MMLU-Pro's categories), so parsed prefixes are kept for the next task.
  struct Prefix {
    std::vector<nlohmann::json> documents;
    bool whole = false;
  };
  static std::map<std::string, Prefix> parsed;  // file identity and prefix length → its documents
  const auto identity = fmt::format("{}\n{}\n{}.{}\n{}", path.string(), info.st_size, info.st_mtim.tv_sec,
                                    info.st_mtim.tv_nsec, format);
  for (std::size_t limit = 4 * 1024;; limit *= 8) {
    auto& prefix = parsed[identity + "\n" + std::to_string(limit)];
    if (prefix.documents.empty() && !prefix.whole) {
      auto [text, whole] = read_prefix(path, limit);
      const auto usable = whole ? text.size() : complete_records(text, format == "csv");
      prefix.documents = parse_documents(task, std::string_view(text).substr(0, usable), path.string());
      prefix.whole = whole;
    }
    auto documents = prefix.documents;
    if (filtered) apply_filter(task, documents);
    if (documents.size() >= needed || prefix.whole) return documents.size();
  }
}

SplitData load_split(const TaskInfo& task, const std::string& split, const std::optional<std::filesystem::path>& data_dir) {
  const auto& dataset = dataset_of(task);
  const auto where = task_where(task);
  const auto format = dataset.value("format", std::string());
  SplitData data;
  if (format == "inline") {
    const auto documents = dataset.value("documents", nlohmann::json::object());
    if (!documents.is_object() || !documents.contains(split) || !documents[split].is_array()) {
      throw Error(fmt::format("{}: field `dataset.documents.{}` is missing (inline documents are keyed by split)", where,
                              split));
    }
    for (const auto& document : documents[split]) {
      if (!document.is_object()) throw Error(fmt::format("{}: every entry of dataset.documents.{} must be a mapping", where, split));
      data.documents.push_back(document);
    }
    data.origin = "inline";
    data.fingerprint = content_hash(documents[split].dump());
  } else if (format == "csv" || format == "tsv" || format == "json" || format == "jsonl") {
    const auto path = data_file_path(task, split, data_dir);
    auto content = read_file_if_exists(path);
    if (!content) throw Error(missing_file_message(task, split, path, data_dir));
    data.documents = parse_documents(task, *content, path.string());
    data.origin = path.string();
    data.fingerprint = content_hash(*content);
    if (dataset.contains("labels_path")) {
      const auto labels_file = split_file_path(task, dataset["labels_path"].get<std::string>(), split, data_dir);
      auto labels = read_file_if_exists(labels_file);
      if (!labels) throw Error(missing_file_message(task, split, labels_file, data_dir));
      attach_labels(task, *labels, labels_file.string(), data.documents);
      data.fingerprint = content_hash(data.fingerprint + content_hash(*labels));
    }
  } else {
    throw Error(fmt::format("{}: field `dataset.format`: {} is not one of csv, tsv, json, jsonl, inline", where,
                            format.empty() ? std::string("missing") : quote_value(format)));
  }
  apply_filter(task, data.documents);
  const Preprocessor preprocess(task);
  if (!preprocess.empty()) {
    for (auto& document : data.documents) preprocess.apply(document);
  }
  return data;
}

}  // namespace mill
