// The chat-template renderer: walks the tree over Python-like values, with Jinja's filters, tests and the
// Python string, list and dict methods templates call.
#include "chat_template_tree.hpp"
#include "tokenizer_internal.hpp"

#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>

namespace mill::jinja {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Rendering

struct LoopControl {
  enum class Kind { none, break_, continue_ } kind = Kind::none;
};

struct Scope {
  std::map<std::string, Value, std::less<>> variables;
  Scope* parent = nullptr;
  Value* find(std::string_view name) {
    for (Scope* s = this; s; s = s->parent) {
      const auto found = s->variables.find(name);
      if (found != s->variables.end()) return &found->second;
    }
    return nullptr;
  }
};

std::string strip_chars(const std::string& s, const std::string& chars, bool left, bool right) {
  std::size_t begin = 0, end = s.size();
  auto stripped = [&](char c) {
    return chars.empty() ? std::isspace(static_cast<unsigned char>(c)) != 0 : chars.find(c) != std::string::npos;
  };
  while (left && begin < end && stripped(s[begin])) ++begin;
  while (right && end > begin && stripped(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

std::string title_case(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
      start = false;
    } else {
      start = true;
    }
  }
  return out;
}

std::string to_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string to_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

class Renderer {
 public:
  void render(const Body& body, Scope& scope, std::string& out, LoopControl& control) {
    for (const auto& node : body) {
      render(*node, scope, out, control);
      if (control.kind != LoopControl::Kind::none) return;
    }
  }

 private:
  void render(const Node& node, Scope& scope, std::string& out, LoopControl& control) {
    switch (node.kind) {
      case Node::Kind::text: out += node.text; return;
      case Node::Kind::output: out += to_string(eval(*node.expr, scope)); return;
      case Node::Kind::block: render(node.body, scope, out, control); return;
      case Node::Kind::break_: control.kind = LoopControl::Kind::break_; return;
      case Node::Kind::continue_: control.kind = LoopControl::Kind::continue_; return;
      case Node::Kind::if_:
        for (const auto& [condition, branch] : node.branches) {
          if (truthy(eval(*condition, scope))) {
            render(branch, scope, out, control);
            return;
          }
        }
        render(node.else_body, scope, out, control);
        return;
      case Node::Kind::set: {
        Value value = eval(*node.expr, scope);
        if (!node.attribute.empty()) {
          Value* target = scope.find(node.targets[0]);
          if (!target || !target->is_namespace)
            fail_at(node.where, fmt::format("cannot set attribute {} of {}: it is not a namespace()", node.attribute,
                                         node.targets[0]));
          for (auto& [key, existing] : *target->dict)
            if (key == node.attribute) {
              existing = std::move(value);
              return;
            }
          target->dict->emplace_back(node.attribute, std::move(value));
          return;
        }
        assign(node.targets, std::move(value), scope, node.where);
        return;
      }
      case Node::Kind::set_block: {
        std::string captured;
        LoopControl inner;
        render(node.body, scope, captured, inner);
        scope.variables[node.targets[0]] = Value::of(captured);
        return;
      }
      case Node::Kind::macro: {
        const Node* macro = &node;
        Scope* definition_scope = &scope;
        scope.variables[node.text] = Value::of(Function([this, macro, definition_scope](Arguments& args, KeywordArguments& kwargs) {
          Scope local;
          local.parent = definition_scope;
          for (std::size_t i = 0; i < macro->parameters.size(); ++i) {
            const auto& [name, default_value] = macro->parameters[i];
            Value value = Value::undefined(name);
            if (i < args.size()) value = args[i];
            else if (default_value) value = eval(*default_value, local);
            for (auto& [key, given] : kwargs)
              if (key == name) value = given;
            local.variables[name] = value;
          }
          std::string captured;
          LoopControl inner;
          render(macro->body, local, captured, inner);
          return Value::of(captured);
        }));
        return;
      }
      case Node::Kind::for_: render_for(node, scope, out); return;
    }
  }

  void assign(const std::vector<std::string>& targets, Value value, Scope& scope, const Location& where) {
    if (targets.size() == 1) {
      scope.variables[targets[0]] = std::move(value);
      return;
    }
    if (!value.is(Value::Kind::list) || value.list->size() != targets.size())
      fail_at(where, fmt::format("cannot unpack {} into {} names", repr(value), targets.size()));
    for (std::size_t i = 0; i < targets.size(); ++i) scope.variables[targets[i]] = (*value.list)[i];
  }

  List iterate(const Value& value, const Location& where) {
    switch (value.kind) {
      case Value::Kind::undefined:
      case Value::Kind::none:
        if (value.is(Value::Kind::none)) fail_at(where, "cannot iterate over None");
        return {};
      case Value::Kind::list: return *value.list;
      case Value::Kind::dict: {
        List keys;
        for (const auto& [key, v] : *value.dict) keys.push_back(Value::of(key));
        return keys;
      }
      case Value::Kind::string: {
        List chars;
        std::size_t i = 0;
        while (i < value.string.size()) {
          std::size_t length = 1;
          const auto lead = static_cast<unsigned char>(value.string[i]);
          if (lead >= 0xF0) length = 4;
          else if (lead >= 0xE0) length = 3;
          else if (lead >= 0xC0) length = 2;
          chars.push_back(Value::of(value.string.substr(i, length)));
          i += length;
        }
        return chars;
      }
      default: fail_at(where, fmt::format("cannot iterate over {}", repr(value)));
    }
  }

  void render_for(const Node& node, Scope& scope, std::string& out) {
    List items = iterate(eval(*node.expr, scope), node.where);
    if (node.condition) {  // `for x in xs if cond` filters before the loop variables are computed
      List kept;
      for (auto& item : items) {
        Scope probe;
        probe.parent = &scope;
        assign(node.targets, item, probe, node.where);
        if (truthy(eval(*node.condition, probe))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      LoopControl control;
      render(node.else_body, scope, out, control);
      return;
    }
    const auto length = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < length; ++i) {
      Scope iteration;  // Jinja gives every iteration a fresh scope over the enclosing one
      iteration.parent = &scope;
      assign(node.targets, items[static_cast<std::size_t>(i)], iteration, node.where);
      Dict loop{{"index", Value::of(i + 1)},
                {"index0", Value::of(i)},
                {"revindex", Value::of(length - i)},
                {"revindex0", Value::of(length - i - 1)},
                {"first", Value::of(i == 0)},
                {"last", Value::of(i + 1 == length)},
                {"length", Value::of(length)},
                {"previtem", i > 0 ? items[static_cast<std::size_t>(i - 1)] : Value::undefined("loop.previtem")},
                {"nextitem", i + 1 < length ? items[static_cast<std::size_t>(i + 1)] : Value::undefined("loop.nextitem")}};
      loop.emplace_back("cycle", Value::of(Function([i](Arguments& args, KeywordArguments&) {
                          return args.empty() ? Value::none() : args[static_cast<std::size_t>(i) % args.size()];
                        })));
      iteration.variables["loop"] = Value::of(std::move(loop));
      LoopControl control;
      render(node.body, iteration, out, control);
      if (control.kind == LoopControl::Kind::break_) break;
    }
  }

  // --- expressions -------------------------------------------------------------------------------------

  Value eval(const Expr& e, Scope& scope) {
    switch (e.kind) {
      case Expr::Kind::literal: return e.literal;
      case Expr::Kind::name: {
        if (Value* v = scope.find(e.name)) return *v;
        if (Value builtin = builtin_function(e.name, e.where); !builtin.is(Value::Kind::undefined)) return builtin;
        return Value::undefined(e.name);
      }
      case Expr::Kind::attribute: {
        Value object = eval(*e.children[0], scope);
        return attribute(object, e.name, e.where);
      }
      case Expr::Kind::item: {
        Value object = eval(*e.children[0], scope);
        Value index = eval(*e.children[1], scope);
        return item(object, index, e.where);
      }
      case Expr::Kind::slice: return slice(e, scope);
      case Expr::Kind::call: return call(e, scope);
      case Expr::Kind::filter: return filter(e, scope);
      case Expr::Kind::test: {
        Value subject = eval(*e.children[0], scope);
        const bool result = apply_test(e.name, subject, evaluate_arguments(e, scope, 1).positional, e.where);
        return Value::of(e.negated ? !result : result);
      }
      case Expr::Kind::unary: {
        Value operand = eval(*e.children[0], scope);
        if (e.name == "not") return Value::of(!truthy(operand));
        if (!operand.is_numeric())
          fail_at(e.where, fmt::format("unary {} needs a number, not {}", e.name, repr(operand)));
        if (e.name == "+") return operand;
        if (operand.is(Value::Kind::number)) return Value::of(-operand.number);
        return Value::of(-(operand.is(Value::Kind::boolean) ? std::int64_t(operand.boolean) : operand.integer));
      }
      case Expr::Kind::binary: return binary(e, scope);
      case Expr::Kind::conditional:
        return truthy(eval(*e.children[0], scope)) ? eval(*e.children[1], scope) : eval(*e.children[2], scope);
      case Expr::Kind::list: {
        List list;
        for (const auto& child : e.children) list.push_back(eval(*child, scope));
        return Value::of(std::move(list));
      }
      case Expr::Kind::dict: {
        Dict dict;
        for (std::size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value key = eval(*e.children[i], scope);
          if (!key.is(Value::Kind::string)) fail_at(e.where, "dictionary keys must be strings");
          dict.emplace_back(key.string, eval(*e.children[i + 1], scope));
        }
        return Value::of(std::move(dict));
      }
    }
    return Value::undefined();
  }

  void require_defined(const Value& v, const Location& where, std::string_view action) {
    if (v.is(Value::Kind::undefined))
      fail_at(where, fmt::format("{} of an undefined value{}", action, v.string.empty() ? "" : " '" + v.string + "'"));
  }

  Value attribute(const Value& object, const std::string& name, const Location& where) {
    require_defined(object, where, fmt::format("attribute '{}'", name));
    if (object.is(Value::Kind::dict))
      if (const Value* found = object.find(name)) return *found;
    return Value::undefined(name);
  }

  Value item(const Value& object, const Value& index, const Location& where) {
    require_defined(object, where, "subscript");
    if (object.is(Value::Kind::dict)) {
      if (index.is(Value::Kind::string))
        if (const Value* found = object.find(index.string)) return *found;
      return Value::undefined(to_string(index));
    }
    if ((object.is(Value::Kind::list) || object.is(Value::Kind::string)) && index.is(Value::Kind::integer)) {
      const auto size = static_cast<std::int64_t>(object.is(Value::Kind::list) ? object.list->size() : object.string.size());
      std::int64_t i = index.integer < 0 ? index.integer + size : index.integer;
      if (i < 0 || i >= size) return Value::undefined("index " + std::to_string(index.integer));
      if (object.is(Value::Kind::list)) return (*object.list)[static_cast<std::size_t>(i)];
      return Value::of(object.string.substr(static_cast<std::size_t>(i), 1));
    }
    return Value::undefined(to_string(index));
  }

  Value slice(const Expr& e, Scope& scope) {
    Value object = eval(*e.children[0], scope);
    require_defined(object, e.where, "slice");
    std::int64_t bounds[3] = {0, 0, 1};
    bool given[3];
    for (int i = 0; i < 3; ++i) {
      given[i] = e.has_slice_part[i];
      if (!given[i]) continue;
      Value v = eval(*e.children[static_cast<std::size_t>(i + 1)], scope);
      if (v.is(Value::Kind::none)) {
        given[i] = false;
        continue;
      }
      if (!v.is(Value::Kind::integer)) fail_at(e.where, "slice bounds must be integers");
      bounds[i] = v.integer;
    }
    const std::int64_t step = given[2] ? bounds[2] : 1;
    if (step == 0) fail_at(e.where, "slice step cannot be zero");
    const bool is_list = object.is(Value::Kind::list);
    if (!is_list && !object.is(Value::Kind::string)) fail_at(e.where, fmt::format("cannot slice {}", repr(object)));
    const auto size = static_cast<std::int64_t>(is_list ? object.list->size() : object.string.size());
    auto clamp = [&](std::int64_t v, bool is_given, std::int64_t fallback) {
      if (!is_given) return fallback;
      if (v < 0) v += size;
      if (step > 0) return std::clamp<std::int64_t>(v, 0, size);
      return std::clamp<std::int64_t>(v, -1, size - 1);
    };
    const std::int64_t start = clamp(bounds[0], given[0], step > 0 ? 0 : size - 1);
    const std::int64_t stop = clamp(bounds[1], given[1], step > 0 ? size : -1);
    List list;
    std::string text;
    for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (is_list) list.push_back((*object.list)[static_cast<std::size_t>(i)]);
      else text += object.string[static_cast<std::size_t>(i)];
    }
    return is_list ? Value::of(std::move(list)) : Value::of(text);
  }

  Value binary(const Expr& e, Scope& scope) {
    const std::string& op = e.name;
    if (op == "and") {
      Value left = eval(*e.children[0], scope);
      return truthy(left) ? eval(*e.children[1], scope) : left;
    }
    if (op == "or") {
      Value left = eval(*e.children[0], scope);
      return truthy(left) ? left : eval(*e.children[1], scope);
    }
    Value a = eval(*e.children[0], scope);
    Value b = eval(*e.children[1], scope);
    if (op == "~") return Value::of(to_string(a) + to_string(b));
    if (op == "==") return Value::of(equal(a, b));
    if (op == "!=") return Value::of(!equal(a, b));
    if (op == "in" || op == "not in") {
      const bool found = contains(b, a, e.where);
      return Value::of(op == "in" ? found : !found);
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int order;
      if (a.is_numeric() && b.is_numeric()) {
        order = a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
      } else if (a.is(Value::Kind::string) && b.is(Value::Kind::string)) {
        order = a.string.compare(b.string);
      } else {
        fail_at(e.where, fmt::format("cannot compare {} {} {}", repr(a), op, repr(b)));
      }
      if (op == "<") return Value::of(order < 0);
      if (op == ">") return Value::of(order > 0);
      if (op == "<=") return Value::of(order <= 0);
      return Value::of(order >= 0);
    }
    if (op == "+") {
      if (a.is(Value::Kind::string) && b.is(Value::Kind::string)) return Value::of(a.string + b.string);
      if (a.is(Value::Kind::list) && b.is(Value::Kind::list)) {
        List joined = *a.list;
        joined.insert(joined.end(), b.list->begin(), b.list->end());
        return Value::of(std::move(joined));
      }
    }
    if (op == "*" && a.is(Value::Kind::string) && b.is(Value::Kind::integer)) {
      std::string repeated;
      for (std::int64_t i = 0; i < b.integer; ++i) repeated += a.string;
      return Value::of(repeated);
    }
    if (!a.is_numeric() || !b.is_numeric()) {
      require_defined(a, e.where, fmt::format("operator {}", op));
      require_defined(b, e.where, fmt::format("operator {}", op));
      fail_at(e.where, fmt::format("unsupported operands for {}: {} and {}", op, repr(a), repr(b)));
    }
    const bool integral = !a.is(Value::Kind::number) && !b.is(Value::Kind::number);
    const std::int64_t ia = a.is(Value::Kind::boolean) ? a.boolean : a.integer;
    const std::int64_t ib = b.is(Value::Kind::boolean) ? b.boolean : b.integer;
    const double da = a.as_double(), db = b.as_double();
    if (op == "+") return integral ? Value::of(ia + ib) : Value::of(da + db);
    if (op == "-") return integral ? Value::of(ia - ib) : Value::of(da - db);
    if (op == "*") return integral ? Value::of(ia * ib) : Value::of(da * db);
    if (op == "**") return integral && ib >= 0 ? Value::of(static_cast<std::int64_t>(std::pow(ia, ib))) : Value::of(std::pow(da, db));
    if (db == 0) fail_at(e.where, "division by zero");
    if (op == "/") return Value::of(da / db);
    if (op == "//") {
      if (integral) {
        std::int64_t q = ia / ib;
        if ((ia % ib != 0) && ((ia < 0) != (ib < 0))) --q;
        return Value::of(q);
      }
      return Value::of(std::floor(da / db));
    }
    if (op == "%") {
      if (integral) {
        std::int64_t r = ia % ib;
        if (r != 0 && ((r < 0) != (ib < 0))) r += ib;
        return Value::of(r);
      }
      return Value::of(da - db * std::floor(da / db));
    }
    fail_at(e.where, fmt::format("unsupported operator {}", op));
  }

  bool contains(const Value& container, const Value& needle, const Location& where) {
    switch (container.kind) {
      case Value::Kind::string:
        if (!needle.is(Value::Kind::string)) fail_at(where, "'in <string>' needs a string on the left");
        return container.string.find(needle.string) != std::string::npos;
      case Value::Kind::list:
        return std::any_of(container.list->begin(), container.list->end(), [&](const Value& v) { return equal(v, needle); });
      case Value::Kind::dict: return needle.is(Value::Kind::string) && container.find(needle.string) != nullptr;
      case Value::Kind::undefined: fail_at(where, fmt::format("'in' of an undefined value '{}'", container.string));
      default: fail_at(where, fmt::format("'in' needs a string, list or mapping, not {}", repr(container)));
    }
  }

  struct CallArguments {
    Arguments positional;
    KeywordArguments keywords;
  };

  CallArguments evaluate_arguments(const Expr& e, Scope& scope, std::size_t first) {
    CallArguments args;
    for (std::size_t i = first; i < e.children.size(); ++i) args.positional.push_back(eval(*e.children[i], scope));
    for (const auto& [name, value] : e.keywords) args.keywords.emplace_back(name, eval(*value, scope));
    return args;
  }

  static const Value* keyword(const KeywordArguments& kwargs, std::string_view name) {
    for (const auto& [key, value] : kwargs)
      if (key == name) return &value;
    return nullptr;
  }

  // Positional argument i, else keyword `name`, else the fallback.
  static Value argument(const CallArguments& args, std::size_t i, std::string_view name, Value fallback = Value::undefined()) {
    if (i < args.positional.size()) return args.positional[i];
    if (const Value* v = keyword(args.keywords, name)) return *v;
    return fallback;
  }

  Value builtin_function(const std::string& name, const Location& where) {
    if (name == "raise_exception") {
      return Value::of(Function([where](Arguments& args, KeywordArguments&) -> Value {
        fail_at(where, "the chat template raised an error: " + (args.empty() ? std::string() : to_string(args[0])));
      }));
    }
    if (name == "namespace" || name == "dict") {
      const bool is_namespace = name == "namespace";
      return Value::of(Function([is_namespace](Arguments& args, KeywordArguments& kwargs) {
        Dict dict;
        if (!args.empty() && args[0].is(Value::Kind::dict)) dict = *args[0].dict;
        for (auto& [key, value] : kwargs) dict.emplace_back(key, value);
        Value v = Value::of(std::move(dict));
        v.is_namespace = is_namespace;
        return v;
      }));
    }
    if (name == "range") {
      return Value::of(Function([where](Arguments& args, KeywordArguments&) {
        std::int64_t start = 0, stop = 0, step = 1;
        for (const auto& a : args)
          if (!a.is(Value::Kind::integer)) fail_at(where, "range() needs integers");
        if (args.size() == 1) stop = args[0].integer;
        else if (args.size() >= 2) {
          start = args[0].integer;
          stop = args[1].integer;
          if (args.size() > 2) step = args[2].integer;
        }
        if (step == 0) fail_at(where, "range() step cannot be zero");
        List list;
        for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) list.push_back(Value::of(i));
        return Value::of(std::move(list));
      }));
    }
    if (name == "strftime_now") {
      return Value::of(Function([](Arguments& args, KeywordArguments&) {
        const std::string format = args.empty() ? std::string("%Y-%m-%d") : to_string(args[0]);
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        char buffer[256];
        const std::size_t length = std::strftime(buffer, sizeof buffer, format.c_str(), &local);
        return Value::of(std::string(buffer, length));
      }));
    }
    return Value::undefined();
  }

  Value call(const Expr& e, Scope& scope) {
    const Expr& callee = *e.children[0];
    if (callee.kind == Expr::Kind::attribute) {
      Value object = eval(*callee.children[0], scope);
      if (object.is(Value::Kind::dict)) {
        if (const Value* member = object.find(callee.name); member && member->is(Value::Kind::function)) {
          CallArguments args = evaluate_arguments(e, scope, 1);
          return (*member->function)(args.positional, args.keywords);
        }
      }
      CallArguments args = evaluate_arguments(e, scope, 1);
      return method(object, callee.name, args, e.where);
    }
    Value function = eval(callee, scope);
    if (!function.is(Value::Kind::function)) {
      if (function.is(Value::Kind::undefined))
        fail_at(e.where, fmt::format("unsupported construct: call of unknown function '{}'", function.string));
      fail_at(e.where, fmt::format("{} is not callable", repr(function)));
    }
    CallArguments args = evaluate_arguments(e, scope, 1);
    return (*function.function)(args.positional, args.keywords);
  }

  Value method(const Value& object, const std::string& name, const CallArguments& args, const Location& where) {
    require_defined(object, where, fmt::format("method '{}'", name));
    if (object.is(Value::Kind::string)) {
      const std::string& s = object.string;
      const std::string chars = args.positional.empty() || args.positional[0].is(Value::Kind::none) ? "" : to_string(args.positional[0]);
      if (name == "strip") return Value::of(strip_chars(s, chars, true, true));
      if (name == "lstrip") return Value::of(strip_chars(s, chars, true, false));
      if (name == "rstrip") return Value::of(strip_chars(s, chars, false, true));
      if (name == "upper") return Value::of(to_upper(s));
      if (name == "lower") return Value::of(to_lower(s));
      if (name == "title") return Value::of(title_case(s));
      if (name == "capitalize") return Value::of(s.empty() ? s : to_upper(s.substr(0, 1)) + to_lower(s.substr(1)));
      if (name == "startswith" || name == "endswith") {
        List candidates;
        const Value prefix = argument(args, 0, "prefix");
        if (prefix.is(Value::Kind::list)) candidates = *prefix.list;
        else candidates.push_back(prefix);
        for (const auto& candidate : candidates) {
          const std::string c = to_string(candidate);
          if (name == "startswith" ? s.starts_with(c) : s.ends_with(c)) return Value::of(true);
        }
        return Value::of(false);
      }
      if (name == "split") {
        const Value separator = argument(args, 0, "sep", Value::none());
        const Value limit = argument(args, 1, "maxsplit", Value::of(std::int64_t(-1)));
        List parts;
        std::int64_t splits = 0;
        if (separator.is(Value::Kind::none)) {  // runs of whitespace, no empty parts
          std::size_t i = 0;
          while (i < s.size()) {
            while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
            if (i >= s.size()) break;
            if (limit.integer >= 0 && splits == limit.integer) {
              parts.push_back(Value::of(strip_chars(s.substr(i), "", false, true)));
              break;
            }
            std::size_t j = i;
            while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
            parts.push_back(Value::of(s.substr(i, j - i)));
            ++splits;
            i = j;
          }
        } else {
          const std::string sep = to_string(separator);
          if (sep.empty()) fail_at(where, "split() separator cannot be empty");
          std::size_t start = 0;
          while (true) {
            const auto hit = s.find(sep, start);
            if (hit == std::string::npos || (limit.integer >= 0 && splits == limit.integer)) break;
            parts.push_back(Value::of(s.substr(start, hit - start)));
            start = hit + sep.size();
            ++splits;
          }
          parts.push_back(Value::of(s.substr(start)));
        }
        return Value::of(std::move(parts));
      }
      if (name == "replace") {
        const std::string from = to_string(argument(args, 0, "old")), to = to_string(argument(args, 1, "new"));
        return Value::of(detail::replace_all(s, from, to));
      }
      if (name == "find") {
        const auto hit = s.find(to_string(argument(args, 0, "sub")));
        return Value::of(hit == std::string::npos ? std::int64_t(-1) : static_cast<std::int64_t>(hit));
      }
      if (name == "count") {
        const std::string needle = to_string(argument(args, 0, "sub"));
        std::int64_t count = 0;
        if (!needle.empty())
          for (std::size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + needle.size())) ++count;
        return Value::of(count);
      }
      if (name == "join") {
        std::string out;
        const auto items = iterate(argument(args, 0, "iterable"), where);
        for (std::size_t i = 0; i < items.size(); ++i) out += (i ? s : "") + to_string(items[i]);
        return Value::of(out);
      }
    } else if (object.is(Value::Kind::dict)) {
      if (name == "items" || name == "keys" || name == "values") {
        List list;
        for (const auto& [key, value] : *object.dict) {
          if (name == "items") list.push_back(Value::of(List{Value::of(key), value}));
          else list.push_back(name == "keys" ? Value::of(key) : value);
        }
        return Value::of(std::move(list));
      }
      if (name == "get") {
        const Value key = argument(args, 0, "key");
        if (key.is(Value::Kind::string))
          if (const Value* found = object.find(key.string)) return *found;
        return argument(args, 1, "default", Value::none());
      }
    }
    fail_at(where, fmt::format("unsupported construct: method '{}' on {}", name, repr(object).substr(0, 40)));
  }

  Value filter(const Expr& e, Scope& scope) {
    const std::string& name = e.name;
    Value subject = eval(*e.children[0], scope);
    CallArguments args = evaluate_arguments(e, scope, 1);
    if (name == "default" || name == "d") {
      const bool boolean = truthy(argument(args, 1, "boolean", Value::of(false)));
      if (subject.is(Value::Kind::undefined) || (boolean && !truthy(subject))) return argument(args, 0, "default_value", Value::of(std::string()));
      return subject;
    }
    if (name == "safe") return subject;
    if (name == "string") return Value::of(to_string(subject));
    if (name == "tojson") {
      std::string out;
      const Value indent = argument(args, 0, "indent", Value::none());
      to_json(subject, out, indent.is(Value::Kind::integer) ? static_cast<int>(indent.integer) : -1, 0);
      return Value::of(out);
    }
    if (name == "length" || name == "count") {
      switch (subject.kind) {
        case Value::Kind::string: return Value::of(static_cast<std::int64_t>(code_point_count(subject.string)));
        case Value::Kind::list: return Value::of(static_cast<std::int64_t>(subject.list->size()));
        case Value::Kind::dict: return Value::of(static_cast<std::int64_t>(subject.dict->size()));
        case Value::Kind::undefined: return Value::of(std::int64_t(0));
        default: fail_at(e.where, fmt::format("length of {}", repr(subject)));
      }
    }
    if (name == "list") return Value::of(iterate(subject, e.where));
    if (name == "first" || name == "last") {
      const List items = iterate(subject, e.where);
      if (items.empty()) return Value::undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "reverse") {
      if (subject.is(Value::Kind::string)) return Value::of(std::string(subject.string.rbegin(), subject.string.rend()));
      List items = iterate(subject, e.where);
      std::reverse(items.begin(), items.end());
      return Value::of(std::move(items));
    }
    if (name == "join") {
      const std::string separator = to_string(argument(args, 0, "d", Value::of(std::string())));
      const Value attribute_name = argument(args, 1, "attribute");
      std::string out;
      const List items = iterate(subject, e.where);
      for (std::size_t i = 0; i < items.size(); ++i) {
        const Value item_value = attribute_name.is(Value::Kind::undefined) ? items[i] : attribute(items[i], to_string(attribute_name), e.where);
        out += (i ? separator : "") + to_string(item_value);
      }
      return Value::of(out);
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      const bool by_attribute = name == "selectattr" || name == "rejectattr";
      const bool keep_matching = name == "selectattr" || name == "select";
      List kept;
      for (const auto& element : iterate(subject, e.where)) {
        Value probe = element;
        std::size_t next = 0;
        if (by_attribute) probe = attribute(element, to_string(argument(args, next++, "attribute")), e.where);
        bool matched;
        if (next < args.positional.size()) {
          const std::string test_name = to_string(args.positional[next]);
          Arguments rest(args.positional.begin() + static_cast<std::ptrdiff_t>(next + 1), args.positional.end());
          matched = apply_test(test_name, probe, rest, e.where);
        } else {
          matched = truthy(probe);
        }
        if (matched == keep_matching) kept.push_back(element);
      }
      return Value::of(std::move(kept));
    }
    if (name == "map") {
      List mapped;
      const Value* attribute_name = keyword(args.keywords, "attribute");
      for (const auto& element : iterate(subject, e.where)) {
        if (attribute_name) {
          Value v = attribute(element, to_string(*attribute_name), e.where);
          if (v.is(Value::Kind::undefined))
            if (const Value* fallback = keyword(args.keywords, "default")) v = *fallback;
          mapped.push_back(v);
        } else if (!args.positional.empty()) {
          const std::string filter_name = to_string(args.positional[0]);
          if (filter_name == "string") mapped.push_back(Value::of(to_string(element)));
          else if (filter_name == "lower") mapped.push_back(Value::of(to_lower(to_string(element))));
          else if (filter_name == "upper") mapped.push_back(Value::of(to_upper(to_string(element))));
          else if (filter_name == "trim") mapped.push_back(Value::of(strip_chars(to_string(element), "", true, true)));
          else fail_at(e.where, fmt::format("unsupported construct: map('{}')", filter_name));
        } else {
          fail_at(e.where, "map() needs attribute= or a filter name");
        }
      }
      return Value::of(std::move(mapped));
    }
    if (name == "items") return method(subject, "items", {}, e.where);
    if (name == "unique") {
      List unique_items;
      for (const auto& element : iterate(subject, e.where))
        if (std::none_of(unique_items.begin(), unique_items.end(), [&](const Value& v) { return equal(v, element); }))
          unique_items.push_back(element);
      return Value::of(std::move(unique_items));
    }
    if (name == "int") {
      if (subject.is(Value::Kind::integer)) return subject;
      if (subject.is_numeric()) return Value::of(static_cast<std::int64_t>(subject.as_double()));
      try {
        return Value::of(static_cast<std::int64_t>(std::stoll(trim(to_string(subject)))));
      } catch (...) {
        return argument(args, 0, "default", Value::of(std::int64_t(0)));
      }
    }
    if (name == "float") {
      if (subject.is_numeric()) return Value::of(subject.as_double());
      try {
        return Value::of(std::stod(trim(to_string(subject))));
      } catch (...) {
        return argument(args, 0, "default", Value::of(0.0));
      }
    }
    if (name == "abs") {
      if (subject.is(Value::Kind::integer)) return Value::of(subject.integer < 0 ? -subject.integer : subject.integer);
      if (subject.is_numeric()) return Value::of(std::fabs(subject.as_double()));
      fail_at(e.where, "abs of a non-number");
    }
    if (name == "round") {
      const Value precision = argument(args, 0, "precision", Value::of(std::int64_t(0)));
      const double scale = std::pow(10.0, static_cast<double>(precision.integer));
      return Value::of(std::round(subject.as_double() * scale) / scale);
    }
    if (name == "sum") {
      std::int64_t total = 0;
      double total_float = 0;
      bool is_float = false;
      for (const auto& element : iterate(subject, e.where)) {
        if (element.is(Value::Kind::number)) is_float = true;
        total += element.is(Value::Kind::integer) ? element.integer : 0;
        total_float += element.as_double();
      }
      return is_float ? Value::of(total_float) : Value::of(total);
    }
    const std::string text = to_string(subject);
    if (name == "trim") {
      const Value chars = argument(args, 0, "chars", Value::none());
      return Value::of(strip_chars(text, chars.is(Value::Kind::none) ? "" : to_string(chars), true, true));
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "replace")
      return method(Value::of(text), name, args, e.where);
    if (name == "indent") {
      const Value width = argument(args, 0, "width", Value::of(std::int64_t(4)));
      const bool first = truthy(argument(args, 1, "first", Value::of(false)));
      const bool blank = truthy(argument(args, 2, "blank", Value::of(false)));
      const std::string pad = width.is(Value::Kind::string) ? width.string : std::string(static_cast<std::size_t>(width.integer), ' ');
      std::string out;
      std::size_t start = 0;
      bool is_first = true;
      while (start <= text.size()) {
        auto end = text.find('\n', start);
        const bool last = end == std::string::npos;
        if (last) end = text.size();
        const std::string line_text = text.substr(start, end - start);
        if ((!is_first || first) && (blank || !trim(line_text).empty())) out += pad;
        out += line_text;
        if (last) break;
        out += '\n';
        start = end + 1;
        is_first = false;
      }
      return Value::of(out);
    }
    if (name == "e" || name == "escape") {
      std::string out;
      for (const char c : text) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      return Value::of(out);
    }
    fail_at(e.where, fmt::format("unsupported construct: filter '{}'", name));
  }

  bool apply_test(const std::string& name, const Value& v, const Arguments& args, const Location& where) {
    using K = Value::Kind;
    auto arg = [&](std::size_t i) {
      if (i >= args.size()) fail_at(where, fmt::format("test '{}' needs an argument", name));
      return args[i];
    };
    if (name == "defined") return !v.is(K::undefined);
    if (name == "undefined") return v.is(K::undefined);
    if (name == "none") return v.is(K::none);
    if (name == "boolean") return v.is(K::boolean);
    if (name == "true") return v.is(K::boolean) && v.boolean;
    if (name == "false") return v.is(K::boolean) && !v.boolean;
    if (name == "number") return v.is(K::integer) || v.is(K::number);
    if (name == "integer") return v.is(K::integer);
    if (name == "float") return v.is(K::number);
    if (name == "string") return v.is(K::string);
    if (name == "mapping") return v.is(K::dict);
    if (name == "sequence" || name == "iterable") return v.is(K::list) || v.is(K::string) || v.is(K::dict);
    if (name == "callable") return v.is(K::function);
    if (name == "lower") return v.is(K::string) && to_lower(v.string) == v.string;
    if (name == "upper") return v.is(K::string) && to_upper(v.string) == v.string;
    if (name == "odd" || name == "even") {
      if (!v.is(K::integer)) fail_at(where, fmt::format("test '{}' needs an integer", name));
      return (v.integer % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") {
      const Value d = arg(0);
      if (!v.is(K::integer) || !d.is(K::integer) || d.integer == 0)
        fail_at(where, "divisibleby needs non-zero integers");
      return v.integer % d.integer == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==" || name == "sameas") return equal(v, arg(0));
    if (name == "ne" || name == "!=") return !equal(v, arg(0));
    if (name == "in") return contains(arg(0), v, where);
    if (name == "lt" || name == "<" || name == "le" || name == "<=" || name == "gt" || name == ">" || name == "ge" || name == ">=") {
      const Value other = arg(0);
      if (!v.is_numeric() || !other.is_numeric()) fail_at(where, fmt::format("test '{}' needs numbers", name));
      const double a = v.as_double(), b = other.as_double();
      if (name == "lt" || name == "<") return a < b;
      if (name == "le" || name == "<=") return a <= b;
      if (name == "gt" || name == ">") return a > b;
      return a >= b;
    }
    fail_at(where, fmt::format("unsupported construct: test 'is {}'", name));
  }
};

}  // namespace

std::string render_template(const Body& body, const nlohmann::ordered_json& variables) {
  Scope globals;
  if (variables.is_object())
    for (const auto& [name, value] : variables.items()) globals.variables[name] = from_json(value);
  Renderer renderer;
  std::string out;
  LoopControl control;
  renderer.render(body, globals, out, control);
  return out;
}

}  // namespace mill::jinja
