#include "mill/base/json_fields.hpp"

#include <cmath>

namespace mill {

const nlohmann::json& member(const nlohmann::json& document, std::string_view name) {
  static const nlohmann::json null;
  if (!document.is_object()) return null;
  const auto it = document.find(name);
  return it == document.end() ? null : *it;
}

std::string string_field(const nlohmann::json& document, std::string_view name, std::string fallback) {
  const auto& value = member(document, name);
  return value.is_string() ? value.get<std::string>() : fallback;
}

std::optional<long long> integer_field(const nlohmann::json& document, std::string_view name) {
  const auto& value = member(document, name);
  if (!value.is_number_integer()) return std::nullopt;
  return value.get<long long>();
}

std::optional<double> finite_number_field(const nlohmann::json& document, std::string_view name) {
  const auto& value = member(document, name);
  if (!value.is_number()) return std::nullopt;
  const double number = value.get<double>();
  return std::isfinite(number) ? std::optional<double>(number) : std::nullopt;
}

}  // namespace mill
