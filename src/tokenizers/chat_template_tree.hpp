#pragma once
// The parts of the chat-template interpreter (chat_template.hpp) shared by its lexer, parser and renderer:
// Python-like values, the template's tree, and the three steps. Private to the tokenizers stage.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mill::jinja {

// ---------------------------------------------------------------------------------------------------------
// Values: Python semantics as Jinja exposes them. Lists and dicts are shared (reference semantics).

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python dicts
using Arguments = std::vector<Value>;
using KeywordArguments = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(Arguments&, KeywordArguments&)>;

struct Value {
  enum class Kind { undefined, none, boolean, integer, number, string, list, dict, function };
  Kind kind = Kind::undefined;
  bool boolean = false;
  std::int64_t integer = 0;
  double number = 0;
  std::string string;  // the string, or for undefined the name that was missing
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Function> function;
  bool is_namespace = false;

  static Value undefined(std::string name = {}) { return {.string = std::move(name)}; }
  static Value none() { return {.kind = Kind::none}; }
  static Value of(bool b) { return {.kind = Kind::boolean, .boolean = b}; }
  static Value of(std::int64_t i) { return {.kind = Kind::integer, .integer = i}; }
  static Value of(double d) { return {.kind = Kind::number, .number = d}; }
  static Value of(const char* s) { return of(std::string(s)); }
  static Value of(std::string s) { return {.kind = Kind::string, .string = std::move(s)}; }
  static Value of(List l) { return {.kind = Kind::list, .list = std::make_shared<List>(std::move(l))}; }
  static Value of(Dict d) { return {.kind = Kind::dict, .dict = std::make_shared<Dict>(std::move(d))}; }
  static Value of(Function f) { return {.kind = Kind::function, .function = std::make_shared<Function>(std::move(f))}; }

  bool is(Kind k) const { return kind == k; }
  bool is_numeric() const { return kind == Kind::integer || kind == Kind::number || kind == Kind::boolean; }
  double as_double() const {
    return kind == Kind::number ? number : kind == Kind::boolean ? (boolean ? 1 : 0) : static_cast<double>(integer);
  }
  const Value* find(std::string_view key) const {
    if (!dict) return nullptr;
    for (const auto& [k, v] : *dict)
      if (k == key) return &v;
    return nullptr;
  }
};

Value from_json(const nlohmann::ordered_json& node);
bool truthy(const Value& v);
std::string to_string(const Value& v);
std::string repr(const Value& v);  // Python's repr(): strings quoted
void to_json(const Value& v, std::string& out, int indent, int depth);
bool equal(const Value& a, const Value& b);

// ---------------------------------------------------------------------------------------------------------
// Errors

struct Location {
  const std::string* origin;
  int line;
};
[[noreturn]] void fail_at(const Location& where, const std::string& what);

// ---------------------------------------------------------------------------------------------------------
// The expression tree

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind { literal, name, attribute, item, slice, call, filter, test, unary, binary, conditional, list, dict };
  Kind kind;
  Location where;
  Value literal;
  std::string name;  // variable, attribute, filter, test, operator
  std::vector<ExprPtr> children;  // operands, call/filter positional arguments (children[0] is the subject)
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  bool negated = false;  // `is not`
  bool has_slice_part[3] = {false, false, false};
};
inline ExprPtr make_expr(Expr::Kind kind, Location where) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->where = where;
  return e;
}

// ---------------------------------------------------------------------------------------------------------
// Statements

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind { text, output, if_, for_, set, set_block, macro, break_, continue_, block };
  Kind kind;
  Location where;
  std::string text;                       // text; macro name
  ExprPtr expr;                           // output, set value, for iterable
  std::vector<std::string> targets;       // for / set names (set: "ns.attr" allowed as two parts)
  std::string attribute;                  // set ns.attribute
  ExprPtr condition;                      // for ... if condition
  std::vector<std::pair<ExprPtr, Body>> branches;  // if / elif
  Body body, else_body;
  std::vector<std::pair<std::string, ExprPtr>> parameters;  // macro parameters with optional defaults
};

// ---------------------------------------------------------------------------------------------------------
// Lexing the template into text and tags, applying trim_blocks, lstrip_blocks and the - markers.

struct Chunk {
  enum class Kind { text, output, statement } kind;
  std::string text;
  int line;
};
std::vector<Chunk> split_template(std::string_view source, const std::string& origin);

// ---------------------------------------------------------------------------------------------------------
// Expression tokens

struct Token {
  enum class Kind { name, string, integer, number, op, end } kind;
  std::string text;
  std::int64_t integer = 0;
  double number = 0;
};
std::vector<Token> tokenize(const std::string& source, const Location& where);

// The template's statements, from split_template's chunks (parser).
Body parse_template(std::vector<Chunk> chunks, const std::string* origin);

// The template rendered with `variables` as its globals (renderer).
std::string render_template(const Body& body, const nlohmann::ordered_json& variables);

}  // namespace mill::jinja
