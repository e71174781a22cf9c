// Progress on stderr (progress.hpp), Ctrl-C (stop_signal.hpp) and what `mill status` says of local sweeps: the
// formatters and the display with a fake clock, then the real binary in a pipe and on a real terminal (tmux:
// new-session -d, send-keys, capture-pane), interrupted with C-c and resumed.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fmt/format.h>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "mill/collect/collect.hpp"
#include "mill/eval/job.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/base/process_liveness.hpp"
#include "mill/base/progress.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/sweep/sweep_status.hpp"
#include "mill/base/text.hpp"
#include "support.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

using namespace mill;
using Catch::Matchers::Contains;
using mill::test::read_text;
using mill::test::run_mill;
using mill::test::run_program;
using mill::test::TempDir;

namespace {

ProgressSnapshot demo_snapshot(std::size_t done, std::optional<double> rate) {
  ProgressSnapshot snapshot;
  snapshot.job = {"mill-demo[delay_ms=50]", "demo", 0, 2, 3};
  snapshot.done = done;
  snapshot.total = 52;
  snapshot.rate = rate;
  snapshot.elapsed_seconds = 4;
  return snapshot;
}

// A clock the test moves by hand.
struct FakeClock {
  std::chrono::steady_clock::time_point now{};
  ProgressDisplay::Clock function() {
    return [this] { return now; };
  }
  void advance(double seconds) {
    now += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool wait_until(const std::function<bool()>& condition, double seconds = 60) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

bool have_tmux() { return run_program({"sh", "-c", "command -v tmux"}).exit_code == 0; }

// A real terminal: a detached tmux session on a private socket running a plain bash.
class TmuxPane {
 public:
  explicit TmuxPane(const std::filesystem::path& dir) : socket_((dir / "tmux.sock").string()) {
    const auto started = tmux({"new-session", "-d", "-s", "t", "-x", "150", "-y", "40", "bash --norc --noprofile"});
    REQUIRE(started.exit_code == 0);
  }
  ~TmuxPane() { tmux({"kill-server"}); }
  void type(const std::string& line) {
    tmux({"send-keys", "-t", "t", "-l", line});
    tmux({"send-keys", "-t", "t", "Enter"});
  }
  void press(const std::string& key) { tmux({"send-keys", "-t", "t", key}); }
  // The visible screen, wrapped lines joined.
  std::string screen() { return tmux({"capture-pane", "-p", "-J", "-t", "t"}).out; }
  // Waits for `pattern` on the screen; returns the screen it was found on.
  std::string wait_for(const std::regex& pattern, double seconds = 60) {
    std::string seen;
    wait_until([&] { return std::regex_search(seen = screen(), pattern); }, seconds);
    return seen;
  }

 private:
  test::RunResult tmux(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"env", "-u", "TMUX", "tmux", "-u", "-S", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv);
  }
  std::string socket_;
};

std::string shell_line(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  for (const auto& word : argv) words.push_back(shell_word(word));
  return join(words, " ");
}

int count_matching(const std::string& screen, const std::regex& pattern) {
  int count = 0;
  for (const auto& line : lines_of(screen)) count += std::regex_search(line, pattern) ? 1 : 0;
  return count;
}

std::size_t journal_lines(const std::filesystem::path& journal) {
  const auto text = std::filesystem::exists(journal) ? read_text(journal) : std::string();
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

std::filesystem::path result_file(const std::filesystem::path& out, const std::string& model, int n_shot) {
  return out / "results" / path_component(ModelSpec::parse(model).identity()) / "demo" / fmt::format("{}shot.json", n_shot);
}

}  // namespace

TEST_CASE("progress numbers read as durations, rates and terminal columns", "[progress]") {
  CHECK(format_duration(7) == "0:07");
  CHECK(format_duration(125) == "2:05");
  CHECK(format_duration(3723) == "1:02:03");
  CHECK(format_duration(-1) == "?");
  CHECK(format_rate(9.84) == "9.84 samples/s");
  CHECK(format_rate(12.34) == "12.3 samples/s");
  CHECK(format_rate(1234) == "1234 samples/s");
  CHECK(display_width("abc") == 3);
  CHECK(display_width("日本") == 4);  // wide characters take two columns
  CHECK(display_width("é") == 1);
  CHECK(fit_to_columns("日本語", 5) == "日本");  // never half a character
  CHECK(fit_to_columns("abc", 10) == "abc");
}

TEST_CASE("the live line shows model, task, n_shot, done/total, rate and ETA, and never outgrows the terminal",
          "[progress]") {
  const auto line = format_live_line(demo_snapshot(26, 13.0), 200, false);
  CHECK(line == "job 2/3  mill-demo[delay_ms=50]  demo 0-shot  26/52 (50%)  13.0 samples/s  ETA 0:02");
  CHECK_THAT(format_live_line(demo_snapshot(0, std::nullopt), 200, false), Contains("-- samples/s  ETA --"));
  // Colour marks the job number and model only, and only when asked for.
  CHECK_THAT(format_live_line(demo_snapshot(26, 13.0), 200, true), Contains("\x1b[1mmill-demo[delay_ms=50]\x1b[0m"));
  for (std::size_t columns = 1; columns <= 120; ++columns) {
    auto snapshot = demo_snapshot(26, 13.0);
    snapshot.job.model = "/scratch/team/checkpoints/llama-3-8b-instruct-step-12000-日本";
    const auto fitted = format_live_line(snapshot, columns, false);
    INFO(columns << ": " << fitted);
    CHECK(display_width(fitted) <= columns);
    CHECK(fitted.find('\n') == std::string::npos);
    // A narrow terminal shortens the model name before it loses the numbers.
    if (columns >= 80) CHECK_THAT(fitted, Contains("ETA 0:02") && Contains("…") && Contains("step-12000-日本"));
  }
  // Control characters in a name cannot move the cursor.
  auto hostile = demo_snapshot(1, 1.0);
  hostile.job.model = "evil\r\x1b[2Jname";
  CHECK(format_live_line(hostile, 200, false).find_first_of("\r\x1b") == std::string::npos);
}

TEST_CASE("in a pipe the display writes timestamped lines at its interval and at each job's end", "[progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressSettings settings;
  settings.style = ProgressStyle::lines;
  settings.interval = std::chrono::seconds(30);
  ProgressDisplay display(settings, out, clock.function());
  display.number_jobs(3, 9);  // schedule --local: this element's first job is the sweep's fourth
  display.begin_job({"mill-demo", "demo", 0, 1, 2});
  display.update(10, 52);  // the first update of a run prints: the log shows it is alive
  clock.advance(10);
  display.update(20, 52);  // within the interval: nothing
  clock.advance(25);
  display.update(40, 52);  // 35 s after the last line
  clock.advance(1);
  display.update(52, 52);
  display.end_job(true);
  const auto lines = lines_of(out.str());
  REQUIRE(lines.size() == 3);
  const std::regex stamp(R"(^mill: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ job 4/9 mill-demo demo 0-shot: )");
  for (const auto& line : lines) CHECK(std::regex_search(line, stamp));
  CHECK_THAT(lines[0], Contains("10/52 samples (19%)"));
  CHECK_THAT(lines[1], Contains("40/52 samples (76%), 0.86 samples/s, ETA 0:14"));
  CHECK_THAT(lines[2], Contains("52/52 samples (100%) in 36.0 s, 1.17 samples/s"));
  CHECK(out.str().find_first_of("\r\x1b") == std::string::npos);
  CHECK(display.where().empty());  // the job completed: nothing was cut short
}

TEST_CASE("on a terminal the display redraws one line in place and clears it around other output", "[progress]") {
  std::ostringstream out;
  FakeClock clock;
  ProgressSettings settings;
  settings.style = ProgressStyle::live;
  settings.columns = 80;
  ProgressDisplay display(settings, out, clock.function());
  display.begin_job({"mill-demo", "demo", 1, 1, 1});
  display.update(0, 52);
  clock.advance(1);
  display.update(8, 52);
  const auto drawn = out.str();
  CHECK(drawn.find('\n') == std::string::npos);  // redrawn, not scrolled
  CHECK(std::count(drawn.begin(), drawn.end(), '\r') == 2);
  CHECK_THAT(drawn, Contains("\rmill-demo  demo 1-shot  8/52 (15%)  8.00 samples/s  ETA 0:06\x1b[K"));
  CHECK(display.where() == "demo 1-shot at 8/52 samples");
  CHECK(progress_line_visible());

  out.str("");
  std::ostringstream result;
  display.print(result, "a result line");
  CHECK(result.str() == "a result line\n");
  CHECK(out.str().rfind("\r\x1b[K", 0) == 0);          // cleared first
  CHECK_THAT(out.str(), Contains("8/52 (15%)"));       // then drawn again
  out.str("");
  display.end_job(false);
  CHECK(out.str() == "\r\x1b[K");
  CHECK_FALSE(progress_line_visible());
  CHECK(display.where() == "demo 1-shot at 8/52 samples");  // stopped short: a stop message names it
}

TEST_CASE("the progress form follows the terminal, TERM, NO_COLOR and MILL_PROGRESS_INTERVAL", "[progress]") {
  auto settings = choose_progress_settings(true, "xterm-256color", "", "", false);
  CHECK(settings.style == ProgressStyle::live);
  CHECK(settings.colour);
  CHECK(settings.interval == kDefaultProgressInterval);
  CHECK_FALSE(choose_progress_settings(true, "xterm", "1", "", false).colour);  // NO_COLOR
  CHECK(choose_progress_settings(true, "dumb", "", "", false).style == ProgressStyle::lines);  // no cursor control
  settings = choose_progress_settings(false, "xterm", "", "5", false);  // a pipe or a SLURM log
  CHECK(settings.style == ProgressStyle::lines);
  CHECK_FALSE(settings.colour);
  CHECK(settings.interval == std::chrono::seconds(5));
  CHECK(choose_progress_settings(true, "xterm", "", "", true).style == ProgressStyle::off);  // --quiet
  CHECK_THROWS_WITH(choose_progress_settings(false, "", "", "30s", false),
                    Contains("MILL_PROGRESS_INTERVAL: \"30s\" is not a whole number of seconds in 1..86400"));
}

TEST_CASE("log lines written while the live line is shown clear it first and bring it back", "[progress]") {
  std::ostringstream out;
  const auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("progress-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_pattern("mill: %l: %v");
  spdlog::set_default_logger(logger);
  {
    FakeClock clock;
    ProgressSettings settings;
    settings.style = ProgressStyle::live;
    settings.columns = 100;
    ProgressDisplay display(settings, out, clock.function());
    display.begin_job({"mill-demo", "demo", 0, 1, 1});
    display.update(4, 52);
    spdlog::warn("a warning");
    display.end_job(true);
  }
  spdlog::set_default_logger(previous);
  CHECK_THAT(out.str(), Contains("4/52 (7%)") && Contains("\x1b[K\r\x1b[Kmill: warning: a warning\n\rmill-demo"));
  CHECK(logger->sinks().size() == 1);  // the display's wrapper is gone with it
  CHECK(std::dynamic_pointer_cast<spdlog::sinks::ostream_sink_mt>(logger->sinks().front()) != nullptr);
}

TEST_CASE("a bad MILL_PROGRESS_INTERVAL is refused in one line before anything runs", "[progress]") {
  TempDir out;
  for (const std::string value : {"abc", "0", "-5", "99999999999"}) {
    const auto run = run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "demo"},
                              {{"MILL_PROGRESS_INTERVAL", value}});
    INFO(value << ": " << run.err);
    CHECK(run.exit_code == 2);
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
    CHECK_THAT(run.err, Contains("MILL_PROGRESS_INTERVAL") && Contains("1..86400"));
  }
  CHECK_FALSE(std::filesystem::exists(out / "results"));
}

TEST_CASE("mill eval in a pipe writes plain timestamped progress lines", "[progress]") {
  TempDir out;
  const std::string model = "mill-demo[delay_ms=20]";
  const auto run = run_mill({"--output_dir", out.path().string(), "eval", model, "demo", "--n_shots", "0,1",
                             "--docs_per_batch", "13"},
                            {{"MILL_PROGRESS_INTERVAL", "1"}});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.err.find_first_of("\r\x1b") == std::string::npos);  // no redraws into a file
  const std::regex line(R"(^mill: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ job [12]/2 mill-demo\[delay_ms=20\] demo [01]-shot: \d+/52 samples \(\d+%\))");
  const auto lines = lines_of(run.err);
  REQUIRE(lines.size() >= 2);
  for (const auto& text : lines) CHECK(std::regex_search(text, line));
  CHECK(count_matching(run.err, std::regex("job 1/2 .*: 52/52 samples \\(100%\\) in [0-9.]+ s, [0-9.]+ samples/s$")) == 1);
  CHECK(count_matching(run.err, std::regex("job 2/2 .*: 52/52 samples \\(100%\\) in ")) == 1);
  CHECK(std::count(run.out.begin(), run.out.end(), '\n') == 2);  // stdout keeps one result line per job
}

TEST_CASE("a local run's liveness comes from its pid and start time on this host", "[progress][status]") {
  const auto self = this_process();
  CHECK(self.start_ticks >= 0);
  CHECK(process_liveness(self) == Liveness::alive);
  auto reused = self;
  reused.start_ticks += 1;  // the same pid started at another time: another process
  CHECK(process_liveness(reused) == Liveness::gone);
  auto elsewhere = self;
  elsewhere.host = "another-host";
  CHECK(process_liveness(elsewhere) == Liveness::unknown);
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  ProcessRecord ended{child, self.host, -1};
  wait_until([&] { return process_liveness(ended) == Liveness::gone; }, 10);  // a zombie counts as ended too
  CHECK(process_liveness(ended) == Liveness::gone);
  ::waitpid(child, nullptr, 0);
  CHECK(process_liveness(ended) == Liveness::gone);
}

TEST_CASE("a local sweep's elements are running, queued, interrupted or done by a later run", "[progress][status]") {
  const long long now = 1'800'000'000;
  constexpr auto none = std::nullopt;
  const auto beat = heartbeat_from_json({{"job_index", 0},     {"jobs_total", 2},       {"task", "demo"},
                                         {"n_shot", 0},        {"done_samples", 20},    {"total_samples", 52},
                                         {"updated_at", now - 900}});
  const auto status_file = [](const nlohmann::json& document) { return element_status_from_json(document); };
  // A live run: an old heartbeat is still running (a slow batch), later elements wait.
  auto status = combine_local_element_status(0, none, beat, Liveness::alive, false, now);
  CHECK(status.state == ElementState::running);
  CHECK_THAT(status.detail, Contains("20/52 samples"));
  CHECK(combine_local_element_status(1, none, none, Liveness::alive, false, now).state == ElementState::queued);
  // The run ended: what it did not finish is interrupted, with where it stopped.
  status = combine_local_element_status(0, none, beat, Liveness::gone, false, now);
  CHECK(status.state == ElementState::interrupted);
  CHECK_THAT(status.detail, Contains("ended during job 1/2, demo 0-shot, 20/52 samples"));
  CHECK(combine_local_element_status(1, none, none, Liveness::gone, false, now).state == ElementState::interrupted);
  status = combine_local_element_status(0, status_file({{"state", "interrupted"}, {"exit_code", 130}}), beat, Liveness::gone, false, now);
  CHECK(status.state == ElementState::interrupted);
  CHECK_THAT(status.detail, Contains("Ctrl-C"));
  CHECK(combine_local_element_status(0, status_file({{"state", "preempted"}}), none, Liveness::gone, false, now).state ==
        ElementState::interrupted);
  // ... unless a later run wrote every job's result.
  status = combine_local_element_status(0, status_file({{"state", "interrupted"}}), beat, Liveness::gone, true, now);
  CHECK(status.state == ElementState::completed);
  CHECK_THAT(status.detail, Contains("later run"));
  CHECK(combine_local_element_status(1, none, none, Liveness::gone, true, now).state == ElementState::completed);
  // Failures stay failures; a run on another host is judged by its heartbeat as before.
  CHECK(combine_local_element_status(0, status_file({{"state", "failed"}, {"exit_code", 4}}), none, Liveness::gone, false, now).state ==
        ElementState::failed);
  CHECK(combine_local_element_status(0, none, beat, Liveness::unknown, false, now).state == ElementState::unknown);
}

TEST_CASE("on a terminal mill eval redraws one live line, C-c exits 130 with the resume command, and the rerun "
          "gives the uninterrupted results", "[progress][tmux]") {
  if (!have_tmux()) {
    WARN("tmux is not installed (scripts/setup.sh installs it): terminal test skipped");
    return;
  }
  TempDir dir;
  const auto out = dir / "out";
  const std::string model = "mill-demo[delay_ms=40]";  // 13 batches of 4 documents: C-c lands mid-job
  const auto command = shell_line({test::mill_binary(), "--output_dir", out.string(), "eval", model, "demo",
                                   "--docs_per_batch", "4"});
  TmuxPane pane(dir.path());
  pane.type("cd " + shell_word(dir.path().string()) + " && " + command + "; echo EXIT=$?");

  // The live line: model, task, n_shot, done/total, rate and ETA, drawn again in place as batches finish.
  const std::regex live(R"(mill-demo\[delay_ms=40\]  demo 0-shot  (\d+)/52 \(\d+%\)  [0-9.]+ samples/s  ETA \d+:\d\d)");
  std::smatch match;
  auto screen = pane.wait_for(live);
  REQUIRE(std::regex_search(screen, match, live));
  const int first = std::stoi(match[1]);
  std::string later;
  REQUIRE(wait_until([&] {
    later = pane.screen();
    std::smatch again;
    return std::regex_search(later, again, live) && std::stoi(again[1]) > first;
  }));
  CHECK(count_matching(later, std::regex("samples/s")) == 1);  // one line, redrawn: not a scroll of lines

  pane.press("C-c");
  screen = pane.wait_for(std::regex("EXIT=\\d+"));
  INFO(screen);
  CHECK_THAT(screen, Contains("EXIT=130"));
  const std::regex hint(R"(mill: interrupted \(Ctrl-C\) during demo 0-shot at (\d+)/52 samples; the journal is flushed; resume with: (.*))");
  REQUIRE(std::regex_search(screen, match, hint));
  CHECK(std::stoi(match[1]) < 52);
  const std::string resume = match[2];
  CHECK(resume == command);
  CHECK(count_matching(screen, std::regex("samples/s")) == 0);  // the live line is gone, not left behind
  CHECK_FALSE(std::filesystem::exists(result_file(out, model, 0)));

  // The hint, typed as shown, finishes the job.
  pane.type("clear; " + resume + "; echo RERUN_EXIT=$?");
  screen = pane.wait_for(std::regex("RERUN_EXIT=\\d+"));
  INFO(screen);
  CHECK_THAT(screen, Contains("RERUN_EXIT=0"));
  const auto resumed = nlohmann::json::parse(read_text(result_file(out, model, 0)));
  CHECK(resumed["counts"]["resumed"].get<long long>() > 0);

  const auto clean = dir / "clean";
  REQUIRE(run_mill({"--output_dir", clean.string(), "eval", model, "demo", "--docs_per_batch", "13", "--quiet"}).exit_code == 0);
  const auto undisturbed = nlohmann::json::parse(read_text(result_file(clean, model, 0)));
  CHECK(resumed["key"] == undisturbed["key"]);
  CHECK(resumed["metrics"] == undisturbed["metrics"]);
  CHECK(resumed["n_samples"] == undisturbed["n_samples"]);
}

TEST_CASE("on a terminal schedule --local prints its plan first, numbers jobs across the sweep, stops on C-c, and "
          "mill status tells interrupted from done", "[progress][tmux][status]") {
  if (!have_tmux()) {
    WARN("tmux is not installed (scripts/setup.sh installs it): terminal test skipped");
    return;
  }
  TempDir dir;
  const auto out = dir / "out";
  const std::string model = "mill-demo[delay_ms=150]";  // two batches of 32 documents per job: 0.3 s a job
  const auto command = shell_line({test::mill_binary(), "--output_dir", out.string(), "schedule", model, "demo",
                                   "--n_shots", "0,1", "--local"});
  TmuxPane pane(dir.path());
  pane.type("cd " + shell_word(dir.path().string()) + " && " + command + "; echo EXIT=$?");

  const std::regex live(R"(job 1/2  mill-demo\[delay_ms=150\]  demo 0-shot  32/52 \(61%\)  [0-9.]+ samples/s  ETA \d+:\d\d)");
  auto screen = pane.wait_for(live);
  INFO(screen);
  REQUIRE(std::regex_search(screen, live));
  // The plan came first, above the live line.
  const auto plan_at = screen.find("2 to run (2 missing, 0 stale, 0 corrupt), 0 done (skipped)");
  const auto listing_at = screen.find("element 0: mill-demo[delay_ms=150]: demo 0-shot, demo 1-shot");
  REQUIRE(plan_at != std::string::npos);
  REQUIRE(listing_at != std::string::npos);
  CHECK(plan_at < screen.find("job 1/2"));

  pane.press("C-c");
  screen = pane.wait_for(std::regex("EXIT=\\d+"));
  INFO(screen);
  CHECK_THAT(screen, Contains("EXIT=130"));
  // Stopped in a job's last batch, that job completes and the stop comes before the next one.
  std::smatch match;
  REQUIRE(std::regex_search(screen, match, std::regex(R"(mill: --local: interrupted \(Ctrl-C\)( during demo [01]-shot at \d+/52 samples)?; the journal is flushed; resume with: (.*))")));
  CHECK(match[2] == command);
  const std::string resume = match[2];

  // The run is gone and its jobs are unfinished: interrupted, with the command that resumes it.
  auto status_run = run_mill({"--output_dir", out.string(), "status", "--json"});
  REQUIRE(status_run.exit_code == 0);
  auto report = nlohmann::json::parse(status_run.out);
  REQUIRE(report["sweeps"].size() == 1);
  const auto first_sweep = report["sweeps"][0]["id"].get<std::string>();
  CHECK(report["sweeps"][0]["counts"]["interrupted"] == 1);
  CHECK(report["sweeps"][0]["local_run"]["state"] == "ended");
  CHECK(report["sweeps"][0]["resume_command"] == "cd " + shell_word(dir.path().string()) + " && " + command);
  const auto text = run_mill({"--output_dir", out.string(), "status"}).out;
  CHECK_THAT(text, Contains("interrupted") && Contains("resume with: cd ") && Contains("Ctrl-C"));

  pane.type("clear; " + resume + "; echo RERUN_EXIT=$?");
  screen = pane.wait_for(std::regex("RERUN_EXIT=\\d+"));
  INFO(screen);
  CHECK_THAT(screen, Contains("RERUN_EXIT=0"));
  CHECK_THAT(screen, Contains("1 to run") || Contains("2 to run"));  // only what the first run left
  CHECK(std::filesystem::exists(result_file(out, model, 1)));

  // A later run finished everything: both sweeps are done, the first one by that later run.
  status_run = run_mill({"--output_dir", out.string(), "status", "--json", "--all"});
  report = nlohmann::json::parse(status_run.out);
  REQUIRE(report["sweeps"].size() == 2);
  for (const auto& sweep : report["sweeps"]) {
    INFO(sweep.dump());
    CHECK(sweep["counts"]["interrupted"] == 0);
    CHECK(sweep["counts"]["completed"] == sweep["elements"].size());
    CHECK(sweep["finished"] == true);
  }
  CHECK(report["sweeps"][0]["id"] == first_sweep);
  CHECK_THAT(report["sweeps"][0]["elements"][0]["detail"].get<std::string>(), Contains("later run"));
}

TEST_CASE("a second SIGINT ends mill eval at once with 130, and the rerun resumes from the journal", "[progress]") {
  TempDir dir;
  const auto out = dir / "out";
  const std::string model = "mill-demo[delay_ms=600]";  // a long batch: the first SIGINT alone would wait for it
  const std::vector<std::string> args = {"--output_dir", out.string(), "eval", model, "demo", "--limit", "4",
                                         "--docs_per_batch", "2"};
  const auto journal = out / "results" / path_component(ModelSpec::parse(model).identity()) / "demo" /
                       "0shot-limit4.journal.jsonl";
  test::BackgroundMill first(args, dir / "first");
  REQUIRE(wait_until([&] { return journal_lines(journal) >= 2; }, 60));  // the first batch is journaled
  // The second batch is under way (it starts as soon as the first is journaled; a SIGINT before it would stop
  // there at once): the first SIGINT waits for it, the second does not.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ::kill(first.pid(), SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto second = std::chrono::steady_clock::now();
  ::kill(first.pid(), SIGINT);
  CHECK(first.wait() == 130);
  CHECK(std::chrono::steady_clock::now() - second < std::chrono::milliseconds(350));  // the batch had 450 ms left
  const auto err = first.err();
  INFO(err);
  CHECK_THAT(err, Contains("mill: interrupted again: exiting now; every finished batch is journaled; resume with: ") &&
                      Contains("'mill-demo[delay_ms=600]' demo --limit 4 --docs_per_batch 2"));
  CHECK(journal_lines(journal) == 2);

  const auto rerun = run_mill(args);
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  const auto result = nlohmann::json::parse(read_text(journal.parent_path() / "0shot-limit4.json"));
  CHECK(result["counts"]["resumed"] == 2);
  CHECK(result["n_samples"] == 4);
}
