#include <catch2/catch.hpp>
#include <set>

#include "mill/base/text.hpp"

using namespace mill;

TEST_CASE("split_list drops empty items and surrounding spaces") {
  CHECK(split_list("mmlu, mmlu_pro,,") == std::vector<std::string>{"mmlu", "mmlu_pro"});
  CHECK(split_list("").empty());
  CHECK(split_list("0,5") == std::vector<std::string>{"0", "5"});
}

TEST_CASE("closest_names suggests near misses and substrings, not unrelated names") {
  const std::vector<std::string> known = {"mmlu", "mmlu_pro", "mmlu_anatomy", "gsm8k", "hellaswag"};
  const auto near = closest_names("mmlu_pr", known);
  REQUIRE(!near.empty());
  CHECK(near.front() == "mmlu_pro");
  CHECK(closest_names("helaswag", known) == std::vector<std::string>{"hellaswag"});
  CHECK(closest_names("zzzzzzzzzz", known).empty());
}

TEST_CASE("path_component is injective on tricky names and yields one safe component") {
  const std::vector<std::string> names = {"a/b", "a__b", "a_/b", "a/_b", "a___b", "a%2Fb", "meta-llama/Llama-3",
                                          "x y", "x$(y)", ".", "..", ".hidden", "a\nb", ""};
  std::set<std::string> seen;
  for (const auto& name : names) {
    const auto component = path_component(name);
    INFO(name << " -> " << component);
    CHECK(component.find('/') == std::string::npos);
    CHECK(component != ".");
    CHECK(component != "..");
    CHECK(component.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%") ==
          std::string::npos);
    CHECK(seen.insert(component).second);
    CHECK(name_from_path_component(component) == name);
  }
  CHECK(path_component("meta-llama/Meta-Llama-3-8B") == "meta-llama__Meta-Llama-3-8B");
}

TEST_CASE("glob_match follows shell globs") {
  CHECK(glob_match("jwlogin*", "jwlogin03"));
  CHECK(glob_match("login[0-9].cluster", "login4.cluster"));
  CHECK_FALSE(glob_match("jwlogin*", "xjwlogin03"));
  CHECK(glob_match("*", "anything"));
}

TEST_CASE("one_line and quote_value keep messages on one line") {
  CHECK(one_line("a\nb\rc") == "a b c");
  CHECK(quote_value("x\ny\"z") == "\"x\\ny\\\"z\"");
  CHECK(quote_value(std::string("bad\xff", 4)) == "\"bad\\xff\"");
  CHECK(quote_value("héllo") == "\"héllo\"");
}

TEST_CASE("content_hash is stable and sensitive") {
  CHECK(content_hash("abc") == content_hash("abc"));
  CHECK(content_hash("abc") != content_hash("abd"));
  CHECK(content_hash("").size() == 32);
}
