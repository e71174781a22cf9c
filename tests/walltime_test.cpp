#include <catch2/catch.hpp>

#include "mill/sweep/walltime.hpp"

using namespace mill;

TEST_CASE("SLURM time strings parse to minutes") {
  CHECK(parse_slurm_time("90") == 90);
  CHECK(parse_slurm_time("90:30") == 91);  // seconds round up
  CHECK(parse_slurm_time("24:00:00") == 1440);
  CHECK(parse_slurm_time("1-12") == 36 * 60);
  CHECK(parse_slurm_time("2-00:30") == 2 * 1440 + 30);
  CHECK(parse_slurm_time("1-00:00:01") == 1441);
  CHECK(parse_slurm_time("30:00:00") == 30 * 60);   // the leading field may pass its clock range
  CHECK(parse_slurm_time("90:59") == 91);
  CHECK(parse_slurm_time("1-23:59:59") == 2 * 1440);
  for (const char* bad : {"", "abc", "1:2:3:4", "-5", "1-", "12:", "1.5", "25:99:99", "24:60:00", "24:00:60",
                          "90:60", "1-24", "1-24:00:00", "1-12:60", "2-00:00:75"}) {
    INFO(bad);
    CHECK(parse_slurm_time(bad) == -1);
  }
}

TEST_CASE("minutes format as SLURM times") {
  CHECK(format_slurm_time(55) == "00:55:00");
  CHECK(format_slurm_time(1440) == "1-00:00:00");
  CHECK(format_slurm_time(1441 + 60) == "1-01:01:00");
  CHECK(parse_slurm_time(format_slurm_time(2 * 1440 + 7)) == 2 * 1440 + 7);
}
