#include "mill/base/progress.hpp"

#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fmt/format.h>
#include <iostream>
#include <vector>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/base/host.hpp"

namespace mill {

namespace {

std::atomic<bool> g_line_visible{false};

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string percent(std::size_t done, std::size_t total) {
  if (total == 0) return "0%";
  // Floor, so 100% means every sample is done.
  return fmt::format("{}%", done >= total ? 100 : done * 100 / total);
}

std::optional<double> eta_seconds(const ProgressSnapshot& snapshot) {
  if (!snapshot.rate || *snapshot.rate <= 0 || snapshot.done > snapshot.total) return std::nullopt;
  return static_cast<double>(snapshot.total - snapshot.done) / *snapshot.rate;
}

std::string job_words(const ProgressJob& job) {
  return fmt::format("{} {}-shot", one_line(job.task), job.n_shot);
}

// A styled piece of the live line.
struct Segment {
  std::string text;
  bool bold = false;
};

// Log lines (spdlog) written while the live line is shown would be appended to it: each sink of the default logger
// is wrapped so that it writes with the line cleared, and the line comes back after.
class ClearingSink : public spdlog::sinks::sink {
 public:
  ClearingSink(spdlog::sink_ptr inner, ProgressDisplay* display) : inner_(std::move(inner)), display_(display) {}
  void log(const spdlog::details::log_msg& message) override {
    if (!inner_->should_log(message.level)) return;
    display_->around([&] {
      inner_->log(message);
      inner_->flush();
    });
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }

 private:
  spdlog::sink_ptr inner_;
  ProgressDisplay* display_;
};

struct LogSinkGuard {
  std::shared_ptr<spdlog::logger> logger;
  std::vector<spdlog::sink_ptr> original;
  LogSinkGuard(ProgressDisplay* display) : logger(spdlog::default_logger()) {
    if (!logger) return;
    original = logger->sinks();
    for (auto& sink : logger->sinks()) sink = std::make_shared<ClearingSink>(sink, display);
  }
  ~LogSinkGuard() {
    if (logger) logger->sinks() = original;
  }
};

}  // namespace

ProgressSettings choose_progress_settings(bool stderr_is_terminal, std::string_view term, std::string_view no_color,
                                          std::string_view interval, bool quiet) {
  ProgressSettings settings;
  if (!interval.empty()) {
    const std::string text(interval);
    char* end = nullptr;
    errno = 0;
    const long seconds = std::strtol(text.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || seconds < 1 || seconds > 86400) {
      throw Error(fmt::format("MILL_PROGRESS_INTERVAL: {} is not a whole number of seconds in 1..86400 (e.g. 30)",
                              quote_value(text)));
    }
    settings.interval = std::chrono::seconds(seconds);
  }
  if (quiet) {
    settings.style = ProgressStyle::off;
    return settings;
  }
  settings.style = stderr_is_terminal && term != "dumb" ? ProgressStyle::live : ProgressStyle::lines;
  settings.colour = settings.style == ProgressStyle::live && no_color.empty();
  return settings;
}

ProgressSettings progress_settings_for_stderr(bool quiet) {
  auto settings = choose_progress_settings(::isatty(STDERR_FILENO) == 1, environment("TERM"), environment("NO_COLOR"),
                                           environment("MILL_PROGRESS_INTERVAL"), quiet);
  settings.terminal_fd = STDERR_FILENO;
  return settings;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  const auto hours = total / 3600, minutes = total / 60 % 60, rest = total % 60;
  return hours > 0 ? fmt::format("{}:{:02}:{:02}", hours, minutes, rest) : fmt::format("{}:{:02}", minutes, rest);
}

std::string format_rate(double samples_per_second) {
  if (!std::isfinite(samples_per_second) || samples_per_second < 0) return "? samples/s";
  if (samples_per_second >= 100) return fmt::format("{:.0f} samples/s", samples_per_second);
  if (samples_per_second >= 10) return fmt::format("{:.1f} samples/s", samples_per_second);
  return fmt::format("{:.2f} samples/s", samples_per_second);
}

namespace {
// The last `columns` columns of `text`, at a character boundary.
std::string tail_of_width(std::string_view text, std::size_t columns) {
  std::size_t start = text.size();
  while (start > 0) {
    std::size_t previous = start - 1;
    while (previous > 0 && (static_cast<unsigned char>(text[previous]) & 0xC0) == 0x80) --previous;
    if (display_width(text.substr(previous)) > columns) break;
    start = previous;
  }
  return std::string(text.substr(start));
}
}  // namespace

std::string format_live_line(const ProgressSnapshot& snapshot, std::size_t columns, bool colour) {
  const auto& job = snapshot.job;
  const auto eta = eta_seconds(snapshot);
  std::vector<Segment> segments;
  if (job.jobs > 1) segments.push_back({fmt::format("job {}/{}", job.position, job.jobs), true});
  const std::size_t model_index = segments.size();
  segments.push_back({one_line(job.model), true});
  segments.push_back({job_words(job), false});
  segments.push_back({fmt::format("{}/{} ({})", snapshot.done, snapshot.total, percent(snapshot.done, snapshot.total)), false});
  segments.push_back({snapshot.rate ? format_rate(*snapshot.rate) : std::string("-- samples/s"), false});
  segments.push_back({"ETA " + (eta ? format_duration(*eta) : std::string("--")), false});

  constexpr std::size_t kSeparator = 2;
  std::size_t others = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (i != model_index) others += display_width(segments[i].text) + kSeparator;
  }
  // The numbers matter most: a long model name (a checkpoint path) gives way first, keeping its informative end.
  auto& model = segments[model_index].text;
  const std::size_t room = columns > others ? columns - others : 0;
  if (display_width(model) > room) {
    constexpr std::size_t kShortestUsefulName = 8;
    if (room >= kShortestUsefulName) {
      model = "…" + tail_of_width(model, room - 1);
    } else {
      segments.erase(segments.begin() + static_cast<std::ptrdiff_t>(model_index));
    }
  }

  std::string line;
  std::size_t used = 0;
  for (std::size_t i = 0; i < segments.size() && used < columns; ++i) {
    std::string piece = i == 0 ? segments[i].text : "  " + segments[i].text;
    piece = fit_to_columns(piece, columns - used);
    used += display_width(piece);
    const auto lead = piece.find_first_not_of(' ');
    if (colour && segments[i].bold && lead != std::string::npos) {
      line += piece.substr(0, lead) + "\x1b[1m" + piece.substr(lead) + "\x1b[0m";
    } else {
      line += piece;
    }
  }
  return line;
}

std::string format_progress_line(const ProgressSnapshot& snapshot, std::chrono::system_clock::time_point now,
                                 bool finished) {
  const auto stamp = utc_time(now);
  const auto& job = snapshot.job;
  std::string line = fmt::format("mill: {} ", stamp);
  if (job.jobs > 1) line += fmt::format("job {}/{} ", job.position, job.jobs);
  line += fmt::format("{} {}: {}/{} samples ({})", one_line(job.model), job_words(job), snapshot.done, snapshot.total,
                      percent(snapshot.done, snapshot.total));
  if (finished) {
    // A short job's time in seconds: "in 0:00" would say nothing.
    line += " in " + (snapshot.elapsed_seconds < 60 ? fmt::format("{:.1f} s", snapshot.elapsed_seconds)
                                                     : format_duration(snapshot.elapsed_seconds));
    if (snapshot.rate) line += ", " + format_rate(*snapshot.rate);
    return line;
  }
  if (snapshot.rate) {
    line += ", " + format_rate(*snapshot.rate);
    if (const auto eta = eta_seconds(snapshot)) line += ", ETA " + format_duration(*eta);
  }
  return line;
}

bool progress_line_visible() noexcept { return g_line_visible.load(); }

ProgressDisplay::ProgressDisplay(ProgressSettings settings)
    : ProgressDisplay(std::move(settings), std::cerr, [] { return std::chrono::steady_clock::now(); }) {}

ProgressDisplay::ProgressDisplay(ProgressSettings settings, std::ostream& out, Clock clock)
    : settings_(std::move(settings)), out_(out), clock_(std::move(clock)) {
  if (settings_.style == ProgressStyle::live) log_guard_ = std::make_shared<LogSinkGuard>(this);
}

ProgressDisplay::~ProgressDisplay() {
  log_guard_.reset();
  std::lock_guard lock(mutex_);
  clear_locked();
}

void ProgressDisplay::number_jobs(std::size_t before, std::size_t total) {
  std::lock_guard lock(mutex_);
  numbered_before_ = before;
  numbered_total_ = total;
}

void ProgressDisplay::begin_job(const ProgressJob& job) {
  std::lock_guard lock(mutex_);
  job_ = job;
  if (numbered_total_ > 0) {
    job_.position = numbered_before_ + job.position;
    job_.jobs = numbered_total_;
  }
  in_job_ = true;
  started_ = true;
  completed_ = false;
  done_ = 0;
  total_ = 0;
  first_done_.reset();
  job_started_ = clock_();
}

void ProgressDisplay::update(std::size_t done, std::size_t total) {
  std::lock_guard lock(mutex_);
  if (!in_job_) return;
  done_ = done;
  total_ = total;
  const auto now = clock_();
  if (!first_done_) {
    first_done_ = done;
    first_update_ = now;
  }
  if (settings_.style == ProgressStyle::live) {
    redraw_locked(done == total || !visible_);
  } else if (settings_.style == ProgressStyle::lines && done < total &&
             (!line_written_ || now - last_line_ >= settings_.interval)) {
    out_ << format_progress_line(snapshot_locked(), std::chrono::system_clock::now(), false) << std::endl;
    line_written_ = true;
    last_line_ = now;
  }
}

void ProgressDisplay::end_job(bool completed) {
  std::lock_guard lock(mutex_);
  if (!in_job_) return;
  clear_locked();
  if (completed && settings_.style == ProgressStyle::lines) {
    out_ << format_progress_line(snapshot_locked(), std::chrono::system_clock::now(), true) << std::endl;
    line_written_ = true;
    last_line_ = clock_();
  }
  completed_ = completed;
  in_job_ = false;
}

void ProgressDisplay::print(std::ostream& stream, std::string_view line) {
  around([&] { stream << line << std::endl; });
}

void ProgressDisplay::result(std::string_view line) { print(std::cout, line); }
void ProgressDisplay::message(std::string_view line) { print(out_, line); }

void ProgressDisplay::around(const std::function<void()>& write) {
  std::lock_guard lock(mutex_);
  const bool was_visible = visible_;
  clear_locked();
  write();
  if (was_visible) redraw_locked(true);
}

std::string ProgressDisplay::where() const {
  std::lock_guard lock(mutex_);
  if (!started_ || completed_) return {};
  auto text = job_words(job_);
  if (total_ > 0) text += fmt::format(" at {}/{} samples", done_, total_);
  return text;
}

ProgressSnapshot ProgressDisplay::snapshot_locked() const {
  ProgressSnapshot snapshot;
  snapshot.job = job_;
  snapshot.done = done_;
  snapshot.total = total_;
  const auto now = clock_();
  snapshot.elapsed_seconds = std::chrono::duration<double>(now - job_started_).count();
  if (first_done_ && done_ > *first_done_) {
    const double seconds = std::chrono::duration<double>(now - first_update_).count();
    if (seconds > 0) snapshot.rate = static_cast<double>(done_ - *first_done_) / seconds;
  }
  return snapshot;
}

std::size_t ProgressDisplay::columns() const {
  if (settings_.columns) return static_cast<std::size_t>(std::max(1, *settings_.columns));
  winsize size{};
  if (::ioctl(settings_.terminal_fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  const auto columns = std::atoi(environment("COLUMNS").c_str());
  return columns > 0 ? static_cast<std::size_t>(columns) : 80;
}

void ProgressDisplay::redraw_locked(bool force) {
  if (settings_.style != ProgressStyle::live || !in_job_ || total_ == 0) return;
  const auto now = clock_();
  constexpr auto kLeastRedrawInterval = std::chrono::milliseconds(100);  // a fast backend must not flood the terminal
  if (!force && visible_ && now - last_drawn_ < kLeastRedrawInterval) return;
  // One column is left free: writing the last one makes some terminals wrap.
  const auto width = columns();
  out_ << '\r' << format_live_line(snapshot_locked(), width > 1 ? width - 1 : 1, settings_.colour) << "\x1b[K"
       << std::flush;
  visible_ = true;
  g_line_visible.store(true);
  last_drawn_ = now;
}

void ProgressDisplay::clear_locked() {
  if (!visible_) return;
  out_ << "\r\x1b[K" << std::flush;
  visible_ = false;
  g_line_visible.store(false);
}

}  // namespace mill
