// The per-sample journal: append and resume, torn lines from a killed run, journals of another job key.
#include <catch2/catch.hpp>

#include "mill/base/error.hpp"
#include "mill/eval/journal.hpp"
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

TEST_CASE("Damaged lines in the middle of a journal are dropped and counted, the good ones kept") {
  TempDir dir;
  const auto path = dir / "j.jsonl";
  const std::string original = std::string("{\"doc_id\":0,\"key\":\"k\",\"scores\":{\"acc\":1}}\n") +
                               "\x01\xff garbage\n" +                                         // not JSON
                               "{\"doc_id\":2,\"key\":\"k\",\"scores\":{\"acc\":1}\n" +       // unclosed
                               "{\"doc_id\":\"3\",\"key\":\"k\",\"scores\":{\"acc\":1}}\n" +  // doc_id a string
                               "{\"doc\":4,\"key\":\"k\",\"scores\":{\"acc\":1}}\n" +         // wrong field
                               "{\"doc_id\":5,\"key\":\"k\",\"scores\":{\"acc\":\"1\"}}\n" +  // score a string
                               "{\"doc_id\":6,\"key\":\"k\",\"scores\":{\"acc\":1},\"n_tokens\":\"x\"}\n" +
                               "{\"doc_id\":7,\"key\":\"k\",\"scores\":{\"acc\":1},\"t\":\"\xc3\x28\"}\n" +  // bad UTF-8
                               "{\"doc_id\":8,\"key\":\"other\",\"scores\":{\"acc\":1}}\n" +  // another job's key
                               "{\"doc_id\":9,\"key\":\"k\",\"scores\":{\"acc\":0}}\n";
  write_text(path, original);
  {
    Journal journal(path, "k");
    CHECK(journal.resumed() == 2);
    CHECK(journal.has(0));
    CHECK(journal.has(9));
    for (long long doc : {2, 3, 4, 5, 6, 7, 8}) CHECK_FALSE(journal.has(doc));
    CHECK_THAT(journal.note(), Catch::Contains("dropped 8 damaged line(s)") && Catch::Contains("1 of another job key"));
    CHECK(journal.note().find('\n') == std::string::npos);
    journal.append({{{"doc_id", 2}, {"scores", {{"acc", 1.0}}}}});
  }
  auto stale = path;
  stale += ".stale";
  CHECK(read_text(stale) == original);  // the other key's line is not destroyed
  Journal reread(path, "k");
  CHECK(reread.resumed() == 3);
  CHECK(reread.note().empty());
}

TEST_CASE("Backups of journals set aside are numbered and never overwritten") {
  TempDir dir;
  const auto path = dir / "j.jsonl";
  const std::string first = "{\"doc_id\":0,\"key\":\"k1\",\"scores\":{\"acc\":1}}\n";
  const std::string second = "{\"doc_id\":0,\"key\":\"k2\",\"scores\":{\"acc\":0}}\n";
  write_text(path, first);
  { Journal journal(path, "k2"); }  // the first key change
  write_text(path, second);
  Journal journal(path, "k3");      // the second one
  CHECK_THAT(journal.note(), Catch::Contains(".stale.1"));
  CHECK(read_text(dir / "j.jsonl.stale") == first);
  CHECK(read_text(dir / "j.jsonl.stale.1") == second);
}

TEST_CASE("A journal line from a newer scorer stops the job in one line and the file is left as it is") {
  TempDir dir;
  const auto path = dir / "j.jsonl";
  const std::string newer = "{\"doc_id\":0,\"key\":\"future\",\"scoring_version\":99,\"scores\":{\"acc\":1}}\n";
  write_text(path, newer);
  JournalExpectations expect;
  expect.scoring_version = 1;
  try {
    Journal journal(path, "k", expect);
    FAIL("a newer journal was opened");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::eval_failed);
    CHECK_THAT(e.what(), Catch::Contains("scoring_version 99") && Catch::Contains("this mill's is 1"));
  }
  CHECK(read_text(path) == newer);
  CHECK_FALSE(std::filesystem::exists(dir / "j.jsonl.stale"));
}

TEST_CASE("Journal lines of other data are not resumed: the journal is kept aside and the job restarts") {
  TempDir dir;
  const auto path = dir / "j.jsonl";
  {
    Journal journal(path, "k", {kScoringVersion, "data-a"});
    journal.append({{{"doc_id", 0}, {"scores", {{"acc", 1.0}}}}});
  }
  CHECK(Journal(path, "k", {kScoringVersion, "data-a"}).resumed() == 1);
  Journal changed(path, "k", {kScoringVersion, "data-b"});
  CHECK(changed.resumed() == 0);
  CHECK_THAT(changed.note(), Catch::Contains("other data") && Catch::Contains("j.jsonl.stale"));
  CHECK(std::filesystem::exists(dir / "j.jsonl.stale"));
}
