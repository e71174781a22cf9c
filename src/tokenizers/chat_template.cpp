// A small Jinja interpreter for chat templates: a lexer that applies Jinja's whitespace rules
// (chat_template_lexer.cpp), a recursive descent parser into a tree (chat_template_parser.cpp), and a tree-walking
// renderer over Python-like values (chat_template_renderer.cpp, chat_template_values.cpp).
#include "mill/tokenizers/chat_template.hpp"

#include "chat_template_tree.hpp"

namespace mill {

struct ChatTemplate::Program {
  std::string origin;
  jinja::Body body;
};

ChatTemplate ChatTemplate::parse(std::string_view source, std::string origin) {
  auto program = std::make_shared<Program>();
  program->origin = std::move(origin);
  program->body = jinja::parse_template(jinja::split_template(source, program->origin), &program->origin);
  return ChatTemplate(std::move(program));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& variables) const {
  return jinja::render_template(program_->body, variables);
}

}  // namespace mill
