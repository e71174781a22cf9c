// Hostile input without SLURM: names, paths and clusters.yaml values with quotes, $(), backticks, spaces, newlines,
// control bytes, non-UTF-8 bytes and very long strings. Every error mill prints stays one clean line; values that
// cannot be valid are refused with exit 2 before anything is written; a script rendered from hostile values runs
// under bash with SLURM's environment and executes nothing but mill. (The same through a real SLURM cluster is in
// slurm_test.cpp.)
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "mill/sweep/cluster.hpp"
#include "mill/base/text.hpp"
#include "support.hpp"

using namespace mill;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// Valid UTF-8 (any length of sequence), as a terminal or log reader would need.
bool valid_utf8(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
    }
    i += length;
  }
  return true;
}

// Each line of `err` is a clean "mill: ..." line: no control bytes, valid UTF-8. Returns the number of lines.
std::size_t clean_mill_lines(const std::string& err) {
  INFO("stderr: " << quote_value(err));
  if (err.empty()) return 0;
  CHECK(err.back() == '\n');
  std::size_t lines = 0;
  for (std::size_t start = 0; start < err.size();) {
    const auto end = err.find('\n', start);
    const auto line = err.substr(start, end - start);
    CHECK(line.rfind("mill: ", 0) == 0);
    for (unsigned char c : line) CHECK((c >= 0x20 && c != 0x7f));
    CHECK(valid_utf8(line));
    ++lines;
    start = end + 1;
  }
  return lines;
}

std::vector<fs::path> files_under(const fs::path& root) {
  std::vector<fs::path> found;
  if (!fs::exists(root)) return found;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) found.push_back(entry.path());
  }
  return found;
}

// The values a hostile or careless user can put anywhere. `canary` must never appear.
std::vector<std::pair<std::string, std::string>> hostile_values(const fs::path& canary) {
  return {
      {"shell", "it's \"q\" $(touch " + canary.string() + ") `touch " + canary.string() + "` ;touch " + canary.string()},
      {"newline", "first\nsecond\r\nthird"},
      {"control", std::string("esc\x1b[31mred\x07 tab\tnul-free\x7f")},
      {"non-utf8", std::string("bad\xff\xfe bytes \xc3(")},
      {"long", std::string(5000, 'a')},
      {"long-hostile", std::string(2000, 'x') + "\n$(touch " + canary.string() + ")\xff" + std::string(3000, 'y')},
  };
}

}  // namespace

TEST_CASE("one_line escapes control bytes and non-UTF-8 bytes so every message prints as one line") {
  CHECK(one_line("a\nb\rc\td") == "a b c d");
  CHECK(one_line(std::string("x\x1b[0my\x07", 7)) == "x\\x1b[0my\\x07");
  CHECK(one_line(std::string("bad\xff\xfe", 5)) == "bad\\xff\\xfe");
  CHECK(one_line(std::string("cut \xc3", 5)) == "cut \\xc3");  // a truncated sequence
  CHECK(one_line("héllo → ok") == "héllo → ok");                // valid UTF-8 is kept
  const std::string long_value(5000, 'z');
  CHECK(one_line(long_value) == long_value);
  for (const auto& text : {one_line(std::string("a\xff\nb\x01", 5)), quote_value(std::string("a\xff\nb\x01", 5))}) {
    CHECK(valid_utf8(text));
    for (unsigned char c : text) CHECK(c >= 0x20);
  }
}

TEST_CASE("every error mill prints for hostile names and values is one clean line, and nothing runs") {
  test::TempDir root;
  const auto canary = root / "pwned";
  const auto out = root / "out";
  const auto cache = root / "cache";
  // The first schedule copies the bundled profiles and says so in a line of its own: done before the checks.
  REQUIRE(test::run_mill({"--output_dir", out.string(), "--cache_dir", cache.string(), "schedule", "mill-demo", "demo",
                          "--dry_run", "--cluster", "local"})
              .exit_code == 0);
  for (const auto& [kind, value] : hostile_values(canary)) {
    // Each command, and whether it must fail for every hostile value (others may accept some: a model name with
    // quotes is a legal hub-style name for a dry run).
    const std::vector<std::pair<bool, std::vector<std::string>>> commands = {
        {false, {"schedule", value, "demo", "--dry_run", "--cluster", "local"}},
        {false, {"schedule", "mill-demo[" + value + "=1]", "demo", "--dry_run", "--cluster", "local"}},
        {true, {"schedule", "mill-demo", value, "--dry_run", "--cluster", "local"}},
        {true, {"schedule", "mill-demo", "demo", "--n_shots", value, "--dry_run", "--cluster", "local"}},
        {true, {"schedule", "mill-demo", "demo", "--dry_run", "--cluster", value}},
        {true, {"schedule", "mill-demo", "demo", "--dry_run", "--cluster", "local", "--extra_task_paths", (root / value).string()}},
        {true, {"schedule", "mill-demo", "demo", "--local", "--data_dir", (root / value).string()}},
        {true, {"schedule", "mill-demo", "demo", "--dry_run", "--venv_path", (root / value).string()}},
        {true, {"schedule", "mill-demo", "demo", "--limit", value}},
        {true, {"eval", value, "demo"}},
        {true, {"eval", "mill-demo[seed=" + value + "]", "demo"}},
        {true, {"eval", "mill-demo", value}},
        {true, {"eval", "mill-demo", "demo", "--extra_task_paths", (root / value).string()}},
        {true, {"eval", "--manifest", (root / value).string(), "--element", "0"}},
        {false, {"collect", "--models", value, "--tasks", "demo"}},
        {true, {"collect", "--tasks", value}},
        {false, {"collect", "--metric", value}},
        {true, {"collect", "--n_shots", value}},
        {true, {"status", value}},  // an unknown sweep id: exit 2, one line
        {true, {value}},
        {true, {"--log_level", value, "status"}},
    };
    for (const auto& [must_fail, command] : commands) {
      std::vector<std::string> args = {"--output_dir", out.string(), "--cache_dir", cache.string()};
      args.insert(args.end(), command.begin(), command.end());
      const auto run = test::run_mill(args);
      INFO(kind << ": mill " << quote_value(join(command, " ")) << " → exit " << run.exit_code);
      if (must_fail) CHECK(run.exit_code != 0);
      CHECK(run.exit_code != 1);  // never an internal error: the input is recognised as wrong
      const auto lines = clean_mill_lines(run.err);
      if (run.exit_code == 2) CHECK(lines == 1);  // a refused input: one line says why
      if (run.exit_code != 0) CHECK(lines >= 1);
    }
  }
  CHECK_FALSE(fs::exists(canary));
  // Nothing was evaluated or recorded for any of these inputs.
  for (const auto& file : files_under(out)) {
    INFO(file);
    CHECK(file.string().find("/results/") == std::string::npos);
  }
}

namespace {

// A clusters.yaml with one profile `p` (valid for the local test cluster) in which `field` is set to the raw
// YAML text `value_yaml` (replacing the field when it is one of the defaults).
std::string profile_yaml(const std::string& field, const std::string& value_yaml) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"hostname_pattern", "\"no-such-host\""}, {"partition", "debug"}, {"gpus_per_node", "4"},
      {"gpus_per_task", "1"}, {"mem", "1G"}, {"queue_limit", "50"}, {"max_array_len", "3"},
      {"max_time", "\"1:00:00\""}, {"cpus_per_task", "1"}};
  bool replaced = false;
  for (auto& [name, value] : fields) {
    if (name == field) {
      value = value_yaml;
      replaced = true;
    }
  }
  if (!replaced) fields.emplace_back(field, value_yaml);
  std::string text = "profiles:\n  p:\n";
  for (const auto& [name, value] : fields) text += "    " + name + ": " + value + "\n";
  return text;
}

}  // namespace

TEST_CASE("clusters.yaml values that cannot be valid are refused with one line naming the field, before anything is written") {
  test::TempDir root;
  const auto canary = root / "pwned";
  // A stand-in sbatch and squeue that leave a mark: a refused profile must never reach them.
  const auto bin = root / "bin";
  test::write_text(bin / "sbatch", "#!/bin/sh\ntouch " + (root / "sbatch-ran").string() + "\necho 1\n");
  test::write_text(bin / "squeue", "#!/bin/sh\ntouch " + (root / "squeue-ran").string() + "\n");
  fs::permissions(bin / "sbatch", fs::perms::owner_all);
  fs::permissions(bin / "squeue", fs::perms::owner_all);
  const std::map<std::string, std::string> env = {{"PATH", bin.string() + ":/usr/bin:/bin"}};
  const std::string shell = "\"$(touch " + canary.string() + ") `touch " + canary.string() + "`\"";
  const std::string newline = "\"a\\nb\"";                // YAML escapes: a real line break in the value
  const std::string control = "\"a\\e[31m\\x07b\"";      // ESC and BEL
  const std::string raw_bytes = "'bad\xff\xfe'";          // not UTF-8, written raw
  const std::string long_word = std::string(5000, 'a');
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"partition", {shell, newline, control, raw_bytes, "\"has space\"", "'it''s'"}},
      {"account", {shell, newline, control, raw_bytes, "\"a;b\""}},
      {"gpu_type", {shell, newline, control, raw_bytes, "\"a100:2\""}},
      {"mem", {shell, newline, control, raw_bytes, long_word, "\"64 G\"", "64GiB"}},
      {"mem_per_gpu", {shell, newline, "4G"}},  // 4G: given together with mem
      {"max_time", {shell, newline, control, raw_bytes, long_word, "\"25:99:99\""}},
      {"gpus_per_node", {shell, newline, raw_bytes, long_word, "\"4 $(id)\""}},
      {"cpus_per_task", {shell, "\"-1\"", "99999999999999999999"}},
      {"max_array_len", {shell, "0"}},
      {"signal_minutes", {shell, newline}},
      {"hostname_pattern", {newline, control}},
      {"extra_sbatch", {"[" + newline + "]", "[" + control + "]", "[\"qos=normal\"]", "[\"$(touch x)\"]", "\"--qos=high\""}},
      {"setup_lines", {"[" + newline + "]", "[\"module load a\\rb\"]", "[" + control + "]", "\"not a list\""}},
      {"venv_path", {shell, newline, control, raw_bytes, "relative/venv"}},
      {"container_image", {shell, newline, control, raw_bytes, "image.sif"}},
      {"container_runtime", {shell, "apptainer"}},  // without container_image
      {"bind_paths", {"[" + newline + "]", "[\"/a,/b\"]", "\"/not-a-list\""}},
      {"no_such_field", {"1"}},
  };
  for (const auto& [field, values] : cases) {
    for (const auto& value : values) {
      const auto yaml = profile_yaml(field, value);
      INFO("field " << field << " = " << quote_value(value));
      const auto cache = root / "cache";
      test::write_text(cache / "clusters.yaml", yaml);
      const auto out = root / "out";
      const auto run = test::run_mill({"--output_dir", out.string(), "--cache_dir", cache.string(), "schedule",
                                       "mill-demo", "demo", "--cluster", "p"},
                                      env);
      CHECK(run.exit_code == 2);
      CHECK(clean_mill_lines(run.err) == 1);
      CHECK_THAT(run.err, Contains("profile p") && Contains("`" + field + "`"));
      CHECK(test::read_text(cache / "clusters.yaml") == yaml);  // the user's file is untouched
      CHECK_FALSE(fs::exists(out));
      CHECK(run.out.empty());
    }
  }
  // A hostile profile name is refused too, with its bytes shown escaped.
  const auto cache = root / "cache";
  test::write_text(cache / "clusters.yaml", "profiles:\n  \"p $(touch " + canary.string() + ")\\n\\xff\":\n    partition: debug\n");
  const auto named = test::run_mill({"--output_dir", (root / "out").string(), "--cache_dir", cache.string(), "schedule",
                                     "mill-demo", "demo", "--cluster", "p"},
                                    env);
  CHECK(named.exit_code == 2);
  CHECK(clean_mill_lines(named.err) == 1);
  CHECK_THAT(named.err, Contains("profile name"));
  CHECK_FALSE(fs::exists(root / "out"));
  CHECK_FALSE(fs::exists(canary));
  CHECK_FALSE(fs::exists(root / "sbatch-ran"));
  CHECK_FALSE(fs::exists(root / "squeue-ran"));
}

TEST_CASE("a sweep script from hostile paths and profile values runs under bash with SLURM's environment and executes only mill") {
  test::TempDir root;
  const auto canary = root / "pwned";
  const std::string hostile = " 'q' \"d\" $(touch " + canary.string() + ") `touch " + canary.string() + "` ;touch " +
                              canary.string() + "; $HOME *\nline2 " + std::string(100, 'L');
  // The profile file, the results and the virtual environment all live under hostile paths.
  const auto cache = root / ("cache" + hostile);
  const auto out = root / ("out" + hostile);
  const auto venv = root / ("venv" + hostile);
  const auto venv_marker = root / "venv-ran";
  test::write_text(venv / "bin" / "activate", "printf active > '" + venv_marker.string() + "'\n");
  // Valid profile values that carry shell syntax: sbatch reads #SBATCH lines itself (no shell), and setup lines
  // are the user's own shell code, run exactly as written (here: quoted, so they print the text).
  const std::string marker = (root / "setup-ran").string();
  test::write_text(cache / "clusters.yaml",
                   "profiles:\n  p:\n    hostname_pattern: \"no-such-host\"\n    partition: debug\n    gpus_per_node: 4\n"
                   "    gpus_per_task: 1\n    mem: 1G\n    queue_limit: 50\n    max_array_len: 3\n"
                   "    max_time: \"1:00:00\"\n    cpus_per_task: 1\n"
                   "    extra_sbatch: [\"--comment=$(touch " + canary.string() + ") `touch " + canary.string() + "` 'q'\", "
                   "\"--comment=" + std::string(5000, 'c') + "\"]\n"
                   "    setup_lines: [\"printf '%s' '$(touch " + canary.string() + ")' > '" + marker + "'\"]\n");
  // A stand-in sbatch that keeps its argv and the script, and an empty queue.
  const auto bin = root / "bin";
  const auto argv_file = root / "sbatch-argv";
  test::write_text(bin / "sbatch", "#!/bin/bash\nprintf '%s\\0' \"$@\" > '" + argv_file.string() + "'\necho 4242\n");
  test::write_text(bin / "squeue", "#!/bin/sh\nexit 0\n");
  fs::permissions(bin / "sbatch", fs::perms::owner_all);
  fs::permissions(bin / "squeue", fs::perms::owner_all);
  const std::map<std::string, std::string> env = {{"PATH", bin.string() + ":/usr/bin:/bin"}};

  const auto run = test::run_mill({"--output_dir", out.string(), "--cache_dir", cache.string(), "schedule", "mill-demo",
                                   "demo", "--cluster", "p", "--limit", "3", "--venv_path", venv.string(), "--json"},
                                  env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const auto plan = nlohmann::json::parse(run.out);
  REQUIRE(plan["submitted"] == true);
  const fs::path sweep_dir = plan["submission"]["sweep_dir"].get<std::string>();
  // sbatch got the script and the sweep directory as single argv words.
  std::vector<std::string> argv;
  const auto argv_text = test::read_text(argv_file);
  for (std::size_t start = 0; start < argv_text.size();) {
    const auto end = argv_text.find('\0', start);
    argv.push_back(argv_text.substr(start, end - start));
    start = end + 1;
  }
  REQUIRE(argv.size() == 3);
  CHECK(argv[1] == "--chdir=" + sweep_dir.string());
  CHECK(argv[2] == (sweep_dir / "job.sbatch").string());

  // Run the script as SLURM would run array element 0: bash, in the sweep directory, with SLURM's variables.
  const auto worker = test::run_program({"bash", argv[2]},
                                        {{"SLURM_ARRAY_TASK_ID", "0"}, {"SLURM_ARRAY_JOB_ID", "4242"},
                                         {"SLURM_JOB_ID", "4243"}, {"PATH", "/usr/bin:/bin"}},
                                        sweep_dir);
  INFO(worker.out << worker.err);
  CHECK(worker.exit_code == 0);
  CHECK(test::read_text(marker) == "$(touch " + canary.string() + ")");
  CHECK(test::read_text(venv_marker) == "active");
  const auto status = nlohmann::json::parse(test::read_text(sweep_dir / "status" / "element-0.json"));
  CHECK(status["state"] == "completed");
  const auto result = plan["jobs"][0]["result"].get<std::string>();
  CHECK(fs::exists(result));
  CHECK(result.rfind(out.string(), 0) == 0);
  CHECK_FALSE(fs::exists(canary));

  // Paths that cannot be recorded (mill's manifests and results are JSON, which needs UTF-8) or that the system
  // cannot take are refused in one line, before anything is written.
  auto deep = root.path();  // 25 names of 200 bytes: each fine, together past PATH_MAX
  for (int i = 0; i < 25; ++i) deep /= std::string(200, 'd');
  for (const auto& bad : {root / "out\xff\xfe", root / std::string(5000, 'o'), root / (std::string(300, 'o') + "/x"), deep}) {
    const auto refused = test::run_mill({"--output_dir", bad.string(), "--cache_dir", cache.string(), "schedule",
                                         "mill-demo", "demo", "--cluster", "p", "--limit", "3"},
                                        env);
    INFO(quote_value(bad.string()));
    CHECK(refused.exit_code == 2);
    CHECK(clean_mill_lines(refused.err) == 1);
  }
  CHECK_FALSE(fs::exists(root / std::string(200, 'd')));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(root.path())) ++entries;
  CHECK(entries == 7);  // pwned is absent; cache..., out..., venv..., bin, sbatch-argv, setup-ran, venv-ran
}

TEST_CASE("a task file naming a hostile task is refused in one line, and log lines about hostile paths stay one line") {
  test::TempDir root;
  const auto canary = root / "pwned";
  auto demo = test::read_text(fs::path(test::source_dir()) / "data" / "tasks" / "demo.yaml");
  const auto at = demo.find("\ntask: demo\n");
  REQUIRE(at != std::string::npos);
  // Not a first run: that one adds a line saying where the cluster profiles were copied to.
  test::write_text(root / "cache" / "clusters.yaml", std::string(bundled_cluster_config()));
  for (const std::string& name : {"\"it's $(touch " + canary.string() + ") `touch " + canary.string() + "`\"",
                                 std::string("\"line\\nbreak\""), "\"" + std::string(5000, 't') + "\""}) {
    INFO(name.substr(0, 60));
    auto text = demo;
    text.replace(at, 12, "\ntask: " + name + "\n");
    const auto tasks = root / "tasks";
    test::write_text(tasks / "evil.yaml", text);
    const auto out = root / "out";
    // Scheduled by that name when the file is accepted (a long name of letters is a valid task name).
    const auto requested = name.size() > 1000 ? std::string(5000, 't') : "demo";
    const auto run = test::run_mill({"--output_dir", out.string(), "--cache_dir", (root / "cache").string(), "schedule",
                                     "mill-demo", requested, "--extra_task_paths", tasks.string(), "--local"});
    CHECK(run.exit_code == 2);
    CHECK(clean_mill_lines(run.err) == 1);
    CHECK_THAT(run.err, Contains(name.size() > 1000 ? "too long for its results directory" : "field `task`"));
    CHECK_FALSE(fs::exists(out));
  }
  CHECK_FALSE(fs::exists(canary));
  const auto long_model = test::run_mill({"--output_dir", (root / "out").string(), "--cache_dir",
                                          (root / "cache").string(), "schedule", std::string(5000, 'm'), "demo",
                                          "--dry_run", "--cluster", "local"});
  CHECK(long_model.exit_code == 2);
  CHECK(clean_mill_lines(long_model.err) == 1);
  CHECK_THAT(long_model.err, Contains("model name \"mmm") && Contains("too long"));

  // A damaged result under an output directory whose name has a line break and an escape sequence: collect's
  // warning and error name the path on one line each.
  const auto out = root / "out\nline2 \x1b[31m";
  REQUIRE(test::run_mill({"--output_dir", out.string(), "eval", "mill-demo", "demo", "--limit", "2", "--quiet"}).exit_code == 0);
  std::vector<fs::path> results;
  for (const auto& file : files_under(out)) {
    if (file.extension() == ".json" && file.parent_path().filename() == "demo") results.push_back(file);
  }
  REQUIRE(results.size() == 1);
  test::write_text(results[0], "{damaged");
  const auto collect = test::run_mill({"--output_dir", out.string(), "collect"});
  CHECK(collect.exit_code == 3);
  CHECK(clean_mill_lines(collect.err) >= 2);  // the warning about the file, then the error
  CHECK_THAT(collect.err, Contains("warning") && Contains("line2 \\x1b[31m"));
}
