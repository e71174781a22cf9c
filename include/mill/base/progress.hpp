#pragma once
// How running jobs show their progress on stderr, in one place: the worker reports to a ProgressDisplay and never
// prints progress itself. On a terminal (stderr a TTY, TERM not "dumb") one live line — job i/N, model, task,
// n_shot, done/total, rate, ETA — is redrawn in place and cut to the terminal's width; anywhere else (a pipe, a
// file, a SLURM log, TERM=dumb) plain timestamped lines are written every `interval` and at each job's end.
// Other output (result lines, messages, log lines) goes through the display so the live line is never torn.
// The forms are described in docs/eval.md ("Progress").
#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace mill {

enum class ProgressStyle {
  live,   // a terminal: one line redrawn in place
  lines,  // a pipe, a file, a SLURM log or TERM=dumb: timestamped lines
  off,    // --quiet: nothing
};

struct ProgressSettings {
  ProgressStyle style = ProgressStyle::lines;
  bool colour = false;                // live only: bold job number and model (never with NO_COLOR)
  std::chrono::seconds interval{30};  // lines: at most one line per interval while a job runs, plus one at its end
  int terminal_fd = 2;                // live: whose width to fit (queried at each redraw, so resizing is followed)
  std::optional<int> columns;         // a fixed width instead (tests)
};

inline constexpr std::chrono::seconds kDefaultProgressInterval{30};

// The settings for stderr: live on a terminal unless TERM is "dumb"; colour unless NO_COLOR is set (non-empty);
// the line interval from MILL_PROGRESS_INTERVAL (whole seconds, 1..86400; default 30). `quiet`: off. Throws
// mill::Error (usage) naming a bad MILL_PROGRESS_INTERVAL.
ProgressSettings progress_settings_for_stderr(bool quiet);
// The same decision from given values (the environment variables' texts, empty when unset).
ProgressSettings choose_progress_settings(bool stderr_is_terminal, std::string_view term, std::string_view no_color,
                                          std::string_view interval, bool quiet);

// The job a line is about. `position` is 1-based among `jobs` (the worker's own list, or the whole sweep's under
// schedule --local, see ProgressDisplay::number_jobs).
struct ProgressJob {
  std::string model;
  std::string task;
  int n_shot = 0;
  std::size_t position = 0;
  std::size_t jobs = 0;
};

// What one line shows; the formatters below are pure so tests can pin them.
struct ProgressSnapshot {
  ProgressJob job;
  std::size_t done = 0;
  std::size_t total = 0;
  std::optional<double> rate;  // samples per second evaluated by this run (journaled ones not counted)
  double elapsed_seconds = 0;  // since the job started in this run
};

// "0:07", "2:05", "1:02:03"; negative or non-finite as "?".
std::string format_duration(double seconds);
// "9.8 samples/s", "0.25 samples/s", "123 samples/s".
std::string format_rate(double samples_per_second);
// The live line, at most `columns` wide: the model name is shortened from the left ("…llama-7b") before anything
// else is cut. (The display passes the terminal's width less one: writing the last column makes some terminals wrap.)
std::string format_live_line(const ProgressSnapshot& snapshot, std::size_t columns, bool colour);
// A plain line: "mill: 2026-11-25T08:30:12Z job 1/2 mill-demo demo 0-shot: 40/52 samples (77%), 9.8 samples/s,
// ETA 0:01"; `finished`: "... 52/52 samples (100%) in 5.3 s, 9.8 samples/s" (m:ss past a minute).
std::string format_progress_line(const ProgressSnapshot& snapshot, std::chrono::system_clock::time_point now,
                                 bool finished);

// True while a live line is on the terminal; async-signal-safe (a signal handler that writes clears it first).
bool progress_line_visible() noexcept;

class ProgressDisplay {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // `out` is where progress goes (stderr); `clock` is replaceable for tests.
  explicit ProgressDisplay(ProgressSettings settings);
  ProgressDisplay(ProgressSettings settings, std::ostream& out, Clock clock);
  ~ProgressDisplay();  // clears the live line
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  const ProgressSettings& settings() const { return settings_; }

  // Jobs numbered across a sweep (schedule --local): the next worker's job k of its own list shows as
  // `before` + k of `total`. Without it, a worker's jobs show as k of its own count.
  void number_jobs(std::size_t before, std::size_t total);

  void begin_job(const ProgressJob& job);
  // After each batch (and once before the first, with the samples already journaled).
  void update(std::size_t done, std::size_t total);
  // Clears the live line; `completed`: in line style, the job's final line.
  void end_job(bool completed);

  // Writes `line` and a newline to `stream` (stdout or stderr) without tearing the live line.
  void print(std::ostream& stream, std::string_view line);
  // The two kinds of lines library code (the worker) hands to whoever shows them: a job's outcome (stdout, what
  // scripts read) and a message for the user (stderr, beside the progress).
  void result(std::string_view line);
  void message(std::string_view line);
  // Runs `write` (e.g. a log sink writing to stderr) with the live line cleared, then redraws it.
  void around(const std::function<void()>& write);

  // The job in progress, or the last one if it did not complete, for a stop message: "demo 0-shot at 20/52
  // samples"; empty when there is none.
  std::string where() const;

 private:
  void redraw_locked(bool force);
  void clear_locked();
  ProgressSnapshot snapshot_locked() const;
  std::size_t columns() const;

  ProgressSettings settings_;
  std::ostream& out_;
  Clock clock_;
  mutable std::recursive_mutex mutex_;
  std::size_t numbered_before_ = 0;
  std::size_t numbered_total_ = 0;
  bool in_job_ = false;
  bool started_ = false;    // a job has begun
  bool completed_ = false;  // the last job ended completed
  ProgressJob job_;
  std::size_t done_ = 0;
  std::size_t total_ = 0;
  std::optional<std::size_t> first_done_;  // done at the first update: journaled samples are not this run's rate
  std::chrono::steady_clock::time_point job_started_{};
  std::chrono::steady_clock::time_point first_update_{};
  std::chrono::steady_clock::time_point last_drawn_{};
  std::chrono::steady_clock::time_point last_line_{};  // lines style: the last line written
  bool line_written_ = false;
  bool visible_ = false;  // the live line is on the terminal
  std::shared_ptr<void> log_guard_;  // live style: spdlog's sinks wrapped so log lines clear the line first
};

}  // namespace mill
