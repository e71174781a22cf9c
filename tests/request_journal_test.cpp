// The remote backends' request journal (include/mill/remote/request_journal.hpp): answers survive a new process.
#include <catch2/catch.hpp>

#include <fstream>

#include "mill/remote/request_journal.hpp"
#include "support.hpp"

using mill::RequestJournal;

TEST_CASE("request journal answers are found by a later process, also after a torn line left under the same pid",
          "[remote]") {
  mill::test::TempDir dir;
  const std::string scope = "model@rev";
  const nlohmann::json first_request = {{"kind", "generate"}, {"context", "one"}};
  const nlohmann::json second_request = {{"kind", "generate"}, {"context", "two"}};
  std::filesystem::path file;
  {
    RequestJournal journal(dir.path(), scope);
    journal.record(journal.key(first_request), "first answer");
    file = journal.file();
  }
  // A process that had this pid on this host was killed in the middle of a line.
  { std::ofstream(file, std::ios::app) << R"({"key":"0123","answer":"cut sh)"; }
  {
    RequestJournal journal(dir.path(), scope);
    REQUIRE(journal.file().empty());  // nothing written yet
    journal.record(journal.key(second_request), "second answer");
    REQUIRE(journal.file() == file);  // the same pid writes to the same file
  }
  RequestJournal rerun(dir.path(), scope);
  const auto* first = rerun.find(rerun.key(first_request));
  const auto* second = rerun.find(rerun.key(second_request));
  REQUIRE(first != nullptr);
  CHECK(*first == "first answer");
  REQUIRE(second != nullptr);
  CHECK(*second == "second answer");
  CHECK(rerun.size() == 2);  // the torn line is skipped
}
