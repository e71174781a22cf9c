#pragma once
// Lenient field access for the JSON files mill itself writes (manifests, status files, results, records): a
// missing field, a field of another type or a document that is not an object gives the fallback, because a file
// from an older or interrupted run must be read as far as it goes, never crash a reader. User input (task files,
// requests) is checked strictly where it is parsed instead.
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mill {

// The field itself, or a null value when the document is not an object or lacks it.
const nlohmann::json& member(const nlohmann::json& document, std::string_view name);
std::string string_field(const nlohmann::json& document, std::string_view name, std::string fallback = {});
std::optional<long long> integer_field(const nlohmann::json& document, std::string_view name);
std::optional<double> finite_number_field(const nlohmann::json& document, std::string_view name);

}  // namespace mill
