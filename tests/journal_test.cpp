// The per-sample journal: append and resume, torn lines from a killed run, journals of another job key.
#include <catch2/catch.hpp>

#include "mill/journal.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::read_text;
using mill::test::TempDir;
using mill::test::write_text;

TEST_CASE("Journal entries survive a reopen with the same key") {
  TempDir dir;
  const auto path = dir / "r/0shot.journal.jsonl";
  {
    Journal journal(path, "k1");
    CHECK(journal.resumed() == 0);
    journal.append({{{"doc_id", 0}, {"scores", {{"acc", 1.0}}}}, {{"doc_id", 1}, {"scores", {{"acc", 0.0}}}}});
  }
  Journal again(path, "k1");
  CHECK(again.resumed() == 2);
  CHECK(again.has(1));
  CHECK(again.entries().at(0)["key"] == "k1");
  again.append({{{"doc_id", 2}, {"scores", {{"acc", 1.0}}}}});
  CHECK(read_text(path).find("\"doc_id\":2") != std::string::npos);
}

TEST_CASE("A torn last line (killed mid-write) is dropped and the rest kept") {
  TempDir dir;
  const auto path = dir / "j.jsonl";
  write_text(path, "{\"doc_id\":0,\"key\":\"k\",\"scores\":{\"acc\":1}}\n{\"doc_id\":1,\"key\":\"k\",\"sco");
  {
    Journal journal(path, "k");
    CHECK(journal.resumed() == 1);
    CHECK_FALSE(journal.has(1));
    CHECK_THAT(journal.note(), Catch::Contains("damaged"));
    journal.append({{{"doc_id", 1}, {"scores", {{"acc", 0}}}}});
  }
  Journal reread(path, "k");
  CHECK(reread.resumed() == 2);
  CHECK(reread.note().empty());
}

TEST_CASE("A journal written for another job key is never reused") {
  TempDir dir;
  const auto path = dir / "j.jsonl";
  write_text(path, "{\"doc_id\":0,\"key\":\"old\",\"scores\":{\"acc\":1}}\n");
  Journal journal(path, "new");
  CHECK(journal.resumed() == 0);
  CHECK_FALSE(journal.has(0));
  CHECK_THAT(journal.note(), Catch::Contains("another job key"));
  auto stale = path;
  stale += ".stale";
  CHECK(std::filesystem::exists(stale));
}
