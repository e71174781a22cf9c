// Values of the chat-template interpreter: Python semantics as Jinja exposes them (truth, repr, str, JSON, ==).
#include "chat_template_tree.hpp"

#include <fmt/format.h>

#include "mill/base/error.hpp"

#include <algorithm>
#include <cmath>

namespace mill::jinja {

Value from_json(const nlohmann::ordered_json& node) {
  switch (node.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::of(node.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return Value::of(node.get<std::int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Value::of(node.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::of(node.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List list;
      for (const auto& item : node) list.push_back(from_json(item));
      return Value::of(std::move(list));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      for (const auto& [key, item] : node.items()) dict.emplace_back(key, from_json(item));
      return Value::of(std::move(dict));
    }
    default: return Value::undefined();
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::undefined:
    case Value::Kind::none: return false;
    case Value::Kind::boolean: return v.boolean;
    case Value::Kind::integer: return v.integer != 0;
    case Value::Kind::number: return v.number != 0;
    case Value::Kind::string: return !v.string.empty();
    case Value::Kind::list: return !v.list->empty();
    case Value::Kind::dict: return !v.dict->empty();
    case Value::Kind::function: return true;
  }
  return false;
}

namespace {

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string text = fmt::format("{}", d);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

std::string python_repr_string(const std::string& s) {
  const char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (const char c : s) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string to_string(const Value& v) {
  switch (v.kind) {
    case Value::Kind::undefined: return "";
    case Value::Kind::none: return "None";
    case Value::Kind::boolean: return v.boolean ? "True" : "False";
    case Value::Kind::integer: return std::to_string(v.integer);
    case Value::Kind::number: return python_float(v.number);
    case Value::Kind::string: return v.string;
    case Value::Kind::list: {
      std::string out = "[";
      for (std::size_t i = 0; i < v.list->size(); ++i) out += (i ? ", " : "") + repr((*v.list)[i]);
      return out + "]";
    }
    case Value::Kind::dict: {
      std::string out = "{";
      for (std::size_t i = 0; i < v.dict->size(); ++i)
        out += (i ? ", " : "") + python_repr_string((*v.dict)[i].first) + ": " + repr((*v.dict)[i].second);
      return out + "}";
    }
    case Value::Kind::function: return "<function>";
  }
  return "";
}

std::string repr(const Value& v) { return v.is(Value::Kind::string) ? python_repr_string(v.string) : to_string(v); }

// json.dumps(value, ensure_ascii=False, indent=indent) as transformers' tojson filter does it.
void to_json(const Value& v, std::string& out, int indent, int depth) {
  auto newline = [&](int level) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent * level), ' ');
  };
  switch (v.kind) {
    case Value::Kind::undefined:
    case Value::Kind::none: out += "null"; break;
    case Value::Kind::boolean: out += v.boolean ? "true" : "false"; break;
    case Value::Kind::integer: out += std::to_string(v.integer); break;
    case Value::Kind::number: out += python_float(v.number) == "inf" ? "Infinity" : python_float(v.number); break;
    case Value::Kind::string: {
      nlohmann::json s = v.string;
      out += s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      break;
    }
    case Value::Kind::list:
    case Value::Kind::dict: {
      const bool is_list = v.is(Value::Kind::list);
      const std::size_t size = is_list ? v.list->size() : v.dict->size();
      out += is_list ? '[' : '{';
      for (std::size_t i = 0; i < size; ++i) {
        if (i) out += indent < 0 ? ", " : ",";
        newline(depth + 1);
        if (!is_list) {
          to_json(Value::of((*v.dict)[i].first), out, indent, depth + 1);
          out += ": ";
        }
        to_json(is_list ? (*v.list)[i] : (*v.dict)[i].second, out, indent, depth + 1);
      }
      if (size > 0) newline(depth);
      out += is_list ? ']' : '}';
      break;
    }
    case Value::Kind::function: out += "null"; break;
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_numeric() && b.is_numeric()) {
    if (a.is(Value::Kind::number) || b.is(Value::Kind::number)) return a.as_double() == b.as_double();
    return (a.is(Value::Kind::boolean) ? a.boolean : a.integer) == (b.is(Value::Kind::boolean) ? b.boolean : b.integer);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::undefined:
    case Value::Kind::none: return true;
    case Value::Kind::string: return a.string == b.string;
    case Value::Kind::list: return std::equal(a.list->begin(), a.list->end(), b.list->begin(), b.list->end(), equal);
    case Value::Kind::dict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [key, value] : *a.dict) {
        const Value* other = b.find(key);
        if (!other || !equal(value, *other)) return false;
      }
      return true;
    default: return a.function == b.function;
  }
}

[[noreturn]] void fail_at(const Location& where, const std::string& what) {
  throw Error(fmt::format("{} line {}: {}", *where.origin, where.line, what));
}

}  // namespace mill::jinja
