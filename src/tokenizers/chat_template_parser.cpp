// The chat-template parser: recursive descent from tokens into the expression and statement tree.
#include "chat_template_tree.hpp"

#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

#include <algorithm>
#include <optional>

namespace mill::jinja {
namespace {

class ExpressionParser {
 public:
  ExpressionParser(const std::string& source, Location where) : where_(where), tokens_(tokenize(source, where)) {}

  bool at_end() const { return peek().kind == Token::Kind::end; }
  const Token& peek(std::size_t ahead = 0) const { return tokens_[std::min(index_ + ahead, tokens_.size() - 1)]; }
  bool is_name(std::string_view name, std::size_t ahead = 0) const {
    return peek(ahead).kind == Token::Kind::name && peek(ahead).text == name;
  }
  bool is_op(std::string_view op) const { return peek().kind == Token::Kind::op && peek().text == op; }
  bool accept_name(std::string_view name) {
    if (!is_name(name)) return false;
    ++index_;
    return true;
  }
  bool accept_op(std::string_view op) {
    if (!is_op(op)) return false;
    ++index_;
    return true;
  }
  // The operator at the cursor, consumed, when it is one of `ops`.
  std::optional<std::string> accept_any_op(std::initializer_list<std::string_view> ops) {
    for (const auto op : ops)
      if (accept_op(op)) return std::string(op);
    return std::nullopt;
  }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) fail_at(where_, fmt::format("expected '{}' but found {}", op, describe(peek())));
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::name) fail_at(where_, fmt::format("expected a name but found {}", describe(peek())));
    return tokens_[index_++].text;
  }
  void expect_end() {
    if (!at_end()) fail_at(where_, fmt::format("unexpected {}", describe(peek())));
  }
  // Items parsed by `parse_item` until `close`, with commas between them (a trailing one allowed).
  template <typename ParseItem>
  void parse_list(std::string_view close, ParseItem&& parse_item) {
    while (!accept_op(close)) {
      parse_item();
      if (!accept_op(",")) {
        expect_op(close);
        break;
      }
    }
  }
  static std::string describe(const Token& token) {
    if (token.kind == Token::Kind::end) return "the end of the tag";
    return quote_value(token.text);
  }

  ExprPtr parse_expression(bool allow_conditional = true) {
    auto node = parse_or();
    while (allow_conditional && is_name("if")) {
      ++index_;
      auto conditional = make_expr(Expr::Kind::conditional, where_);
      auto condition = parse_or();
      ExprPtr otherwise = accept_name("else") ? parse_expression() : make_expr(Expr::Kind::literal, where_);
      conditional->children.push_back(std::move(condition));
      conditional->children.push_back(std::move(node));
      conditional->children.push_back(std::move(otherwise));
      node = std::move(conditional);
    }
    return node;
  }

 private:
  ExprPtr binary(std::string op, ExprPtr left, ExprPtr right) {
    auto node = make_expr(Expr::Kind::binary, where_);
    node->name = std::move(op);
    node->children.push_back(std::move(left));
    node->children.push_back(std::move(right));
    return node;
  }

  ExprPtr parse_or() {
    auto node = parse_and();
    while (accept_name("or")) node = binary("or", std::move(node), parse_and());
    return node;
  }
  ExprPtr parse_and() {
    auto node = parse_not();
    while (accept_name("and")) node = binary("and", std::move(node), parse_not());
    return node;
  }
  ExprPtr parse_not() {
    if (accept_name("not")) {
      auto node = make_expr(Expr::Kind::unary, where_);
      node->name = "not";
      node->children.push_back(parse_not());
      return node;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    auto node = parse_math1();
    while (true) {
      auto op = accept_any_op({"==", "!=", "<", ">", "<=", ">="});
      if (!op && accept_name("in")) {
        op = "in";
      } else if (!op && is_name("not") && is_name("in", 1)) {
        index_ += 2;
        op = "not in";
      }
      if (!op) break;
      node = binary(*op, std::move(node), parse_math1());
    }
    return node;
  }
  ExprPtr parse_math1() {
    auto node = parse_concat();
    while (auto op = accept_any_op({"+", "-"})) node = binary(*op, std::move(node), parse_concat());
    return node;
  }
  ExprPtr parse_concat() {
    auto node = parse_math2();
    while (accept_op("~")) node = binary("~", std::move(node), parse_math2());
    return node;
  }
  ExprPtr parse_math2() {
    auto node = parse_pow();
    while (auto op = accept_any_op({"*", "/", "//", "%"})) node = binary(*op, std::move(node), parse_pow());
    return node;
  }
  ExprPtr parse_pow() {
    auto node = parse_unary();
    while (accept_op("**")) node = binary("**", std::move(node), parse_unary());
    return node;
  }
  ExprPtr parse_unary() {
    if (is_op("-") || is_op("+")) {
      auto node = make_expr(Expr::Kind::unary, where_);
      node->name = tokens_[index_++].text;
      node->children.push_back(parse_unary());
      return node;
    }
    auto node = parse_primary();
    node = parse_postfix(std::move(node));
    return parse_filters(std::move(node));
  }

  ExprPtr parse_primary() {
    const Token token = peek();
    if (token.kind == Token::Kind::end) fail_at(where_, "expected an expression but the tag ended");
    ++index_;
    auto literal = [&](Value v) {
      auto node = make_expr(Expr::Kind::literal, where_);
      node->literal = std::move(v);
      return node;
    };
    switch (token.kind) {
      case Token::Kind::string: {
        std::string text = token.text;
        while (peek().kind == Token::Kind::string) text += tokens_[index_++].text;  // adjacent literals join
        return literal(Value::of(text));
      }
      case Token::Kind::integer: return literal(Value::of(token.integer));
      case Token::Kind::number: return literal(Value::of(token.number));
      case Token::Kind::name: {
        if (token.text == "true" || token.text == "True") return literal(Value::of(true));
        if (token.text == "false" || token.text == "False") return literal(Value::of(false));
        if (token.text == "none" || token.text == "None") return literal(Value::none());
        auto node = make_expr(Expr::Kind::name, where_);
        node->name = token.text;
        return node;
      }
      case Token::Kind::op: {
        if (token.text == "(") {
          auto first = parse_expression();
          if (accept_op(")")) return first;
          auto tuple = make_expr(Expr::Kind::list, where_);
          tuple->children.push_back(std::move(first));
          while (accept_op(",")) {
            if (is_op(")")) break;
            tuple->children.push_back(parse_expression());
          }
          expect_op(")");
          return tuple;
        }
        if (token.text == "[") {
          auto list = make_expr(Expr::Kind::list, where_);
          parse_list("]", [&] { list->children.push_back(parse_expression()); });
          return list;
        }
        if (token.text == "{") {
          auto dict = make_expr(Expr::Kind::dict, where_);
          parse_list("}", [&] {
            dict->children.push_back(parse_expression());
            expect_op(":");
            dict->children.push_back(parse_expression());
          });
          return dict;
        }
        break;
      }
      default: break;
    }
    fail_at(where_, fmt::format("unexpected {} in expression", describe(token)));
  }

  void parse_arguments(Expr& call) {  // after '(': positional and keyword arguments until ')'
    parse_list(")", [&] {
      if (peek().kind == Token::Kind::name && peek(1).kind == Token::Kind::op && peek(1).text == "=") {
        std::string name = tokens_[index_].text;
        index_ += 2;
        call.keywords.emplace_back(std::move(name), parse_expression());
      } else {
        call.children.push_back(parse_expression());
      }
    });
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (accept_op(".")) {
        auto attribute = make_expr(Expr::Kind::attribute, where_);
        if (peek().kind == Token::Kind::integer) {
          attribute->kind = Expr::Kind::item;
          auto index = make_expr(Expr::Kind::literal, where_);
          index->literal = Value::of(tokens_[index_++].integer);
          attribute->children.push_back(std::move(node));
          attribute->children.push_back(std::move(index));
        } else {
          attribute->name = expect_name();
          attribute->children.push_back(std::move(node));
        }
        node = std::move(attribute);
      } else if (accept_op("[")) {
        auto item = make_expr(Expr::Kind::item, where_);
        item->children.push_back(std::move(node));
        ExprPtr parts[3];
        bool is_slice = false;
        for (int part = 0; part < 3; ++part) {
          if (!is_op(":") && !is_op("]")) parts[part] = parse_expression();
          if (part < 2 && accept_op(":")) {
            is_slice = true;
            continue;
          }
          break;
        }
        expect_op("]");
        if (is_slice) {
          item->kind = Expr::Kind::slice;
          for (int part = 0; part < 3; ++part) {
            item->has_slice_part[part] = parts[part] != nullptr;
            item->children.push_back(parts[part] ? std::move(parts[part]) : make_expr(Expr::Kind::literal, where_));
          }
        } else {
          if (!parts[0]) fail_at(where_, "empty subscript");
          item->children.push_back(std::move(parts[0]));
        }
        node = std::move(item);
      } else if (accept_op("(")) {
        auto call = make_expr(Expr::Kind::call, where_);
        call->children.push_back(std::move(node));
        parse_arguments(*call);
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filters(ExprPtr node) {
    while (true) {
      if (accept_op("|")) {
        auto filter = make_expr(Expr::Kind::filter, where_);
        filter->name = expect_name();
        filter->children.push_back(std::move(node));
        if (accept_op("(")) parse_arguments(*filter);
        node = std::move(filter);
      } else if (accept_name("is")) {
        auto test = make_expr(Expr::Kind::test, where_);
        test->negated = accept_name("not");
        test->name = expect_name();
        test->children.push_back(std::move(node));
        if (accept_op("(")) {
          parse_arguments(*test);
        } else if (peek().kind == Token::Kind::string || peek().kind == Token::Kind::integer ||
                   peek().kind == Token::Kind::number ||
                   (peek().kind == Token::Kind::name && !is_name("and") && !is_name("or") && !is_name("if") &&
                    !is_name("else") && !is_name("in") && !is_name("not") && !is_name("is"))) {
          test->children.push_back(parse_primary());  // `is divisibleby 3`, `is sameas none`
        }
        node = std::move(test);
      } else {
        return node;
      }
    }
  }

  Location where_;
  std::vector<Token> tokens_;
  std::size_t index_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Statement parsing

class TemplateParser {
 public:
  TemplateParser(std::vector<Chunk> chunks, const std::string* origin) : chunks_(std::move(chunks)), origin_(origin) {}

  Body parse_all() {
    Body body;
    const std::string end = parse_body(body, {});
    if (!end.empty()) fail_at({origin_, line_}, fmt::format("unexpected {{% {} %}}", end));
    return body;
  }

 private:
  // Parses nodes until one of the `ends` keywords; returns the keyword found (its parser positioned after it).
  std::string parse_body(Body& body, const std::vector<std::string>& ends) {
    while (index_ < chunks_.size()) {
      const Chunk& chunk = chunks_[index_++];
      line_ = chunk.line;
      const Location where{origin_, chunk.line};
      if (chunk.kind != Chunk::Kind::statement) {
        auto node = std::make_unique<Node>();
        node->where = where;
        if (chunk.kind == Chunk::Kind::text) {
          node->kind = Node::Kind::text;
          node->text = chunk.text;
        } else {
          ExpressionParser parser(chunk.text, where);
          node->kind = Node::Kind::output;
          node->expr = parser.parse_expression();
          parser.expect_end();
        }
        body.push_back(std::move(node));
        continue;
      }
      current_ = std::make_unique<ExpressionParser>(chunk.text, where);
      const std::string keyword = current_->expect_name();
      if (std::find(ends.begin(), ends.end(), keyword) != ends.end()) return keyword;
      body.push_back(parse_statement(keyword, where));
    }
    if (!ends.empty())
      fail_at({origin_, line_}, fmt::format("the template ends before {{% {} %}}", ends.back()));
    return {};
  }

  std::unique_ptr<Node> parse_statement(const std::string& keyword, const Location& where) {
    auto node = std::make_unique<Node>();
    node->where = where;
    ExpressionParser& p = *current_;
    if (keyword == "if") {
      node->kind = Node::Kind::if_;
      auto condition = p.parse_expression();
      p.expect_end();
      while (true) {
        Body branch;
        const std::string end = parse_body(branch, {"elif", "else", "endif"});
        node->branches.emplace_back(std::move(condition), std::move(branch));
        if (end == "elif") {
          condition = current_->parse_expression();
          current_->expect_end();
          continue;
        }
        if (end == "else") {
          current_->expect_end();
          if (parse_body(node->else_body, {"endif"}) != "endif") fail_at(where, "if without endif");
        }
        current_->expect_end();
        break;
      }
      return node;
    }
    if (keyword == "for") {
      node->kind = Node::Kind::for_;
      const bool parenthesized = p.accept_op("(");
      do node->targets.push_back(p.expect_name());
      while (p.accept_op(","));
      if (parenthesized) p.expect_op(")");
      if (!p.accept_name("in")) fail_at(where, "expected 'in' in for loop");
      node->expr = p.parse_expression(false);
      if (p.accept_name("if")) node->condition = p.parse_expression(false);
      if (p.is_name("recursive")) fail_at(where, "unsupported construct 'for ... recursive'");
      p.expect_end();
      const std::string end = parse_body(node->body, {"else", "endfor"});
      if (end == "else") {
        current_->expect_end();
        parse_body(node->else_body, {"endfor"});
      }
      current_->expect_end();
      return node;
    }
    if (keyword == "set") {
      node->targets.push_back(p.expect_name());
      if (p.accept_op(".")) {
        node->attribute = p.expect_name();
      } else {
        while (p.accept_op(",")) node->targets.push_back(p.expect_name());
      }
      if (p.accept_op("=")) {
        node->kind = Node::Kind::set;
        node->expr = p.parse_expression();
        p.expect_end();
        return node;
      }
      if (node->targets.size() != 1 || !node->attribute.empty()) fail_at(where, "expected '=' in set");
      p.expect_end();
      node->kind = Node::Kind::set_block;
      parse_body(node->body, {"endset"});
      current_->expect_end();
      return node;
    }
    if (keyword == "macro") {
      node->kind = Node::Kind::macro;
      node->text = p.expect_name();
      p.expect_op("(");
      p.parse_list(")", [&] {
        std::string name = p.expect_name();
        ExprPtr default_value = p.accept_op("=") ? p.parse_expression() : nullptr;
        node->parameters.emplace_back(std::move(name), std::move(default_value));
      });
      p.expect_end();
      parse_body(node->body, {"endmacro"});
      return node;
    }
    if (keyword == "break" || keyword == "continue") {
      node->kind = keyword == "break" ? Node::Kind::break_ : Node::Kind::continue_;
      p.expect_end();
      return node;
    }
    if (keyword == "generation") {  // transformers' marker for assistant spans: renders its body
      node->kind = Node::Kind::block;
      p.expect_end();
      parse_body(node->body, {"endgeneration"});
      return node;
    }
    fail_at(where, fmt::format("unsupported construct '{{% {} %}}' (supported: if/elif/else, for/else, set, "
                               "macro, break, continue, raw, generation)",
                               keyword));
  }

  std::vector<Chunk> chunks_;
  const std::string* origin_;
  std::size_t index_ = 0;
  int line_ = 1;
  std::unique_ptr<ExpressionParser> current_;
};

}  // namespace

Body parse_template(std::vector<Chunk> chunks, const std::string* origin) {
  TemplateParser parser(std::move(chunks), origin);
  return parser.parse_all();
}

}  // namespace mill::jinja
