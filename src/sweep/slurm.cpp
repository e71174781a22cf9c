#include "mill/sweep/slurm.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "mill/base/text.hpp"
#include "mill/base/host.hpp"

extern char** environ;

namespace mill {

ProgramOutput run_program_captured(const std::vector<std::string>& argv) {
  ProgramOutput result;
  if (argv.empty()) return result;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.err = std::strerror(errno);
    return result;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = std::strerror(errno);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<std::string> args = argv;
  std::vector<char*> pointers;
  for (auto& arg : args) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, args[0].c_str(), &actions, nullptr, pointers.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawned != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    result.err = fmt::format("cannot run {}: {}", args[0], std::strerror(spawned));
    return result;
  }
  result.started = true;
  // Read both pipes together so that a chatty stderr never blocks the child.
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buffer[65536];
  while (open_count > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const auto n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) ::close(fd.fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string parse_sbatch_job_id(std::string_view output) {
  // --parsable prints "jobid" or "jobid;cluster"; warnings may come on earlier lines.
  std::string last;
  for (const auto& line : split_list(output, '\n')) {
    const auto id = trim(line.substr(0, line.find(';')));
    if (!id.empty() && id.find_first_not_of("0123456789") == std::string::npos) last = id;
  }
  return last;
}

std::vector<QueueEntry> parse_queue(std::string_view output) {
  std::vector<QueueEntry> entries;
  for (const auto& line : split_list(output, '\n')) {
    const auto fields = [&] {
      std::vector<std::string> parts;
      std::size_t start = 0;
      for (;;) {
        const auto bar = line.find('|', start);
        parts.push_back(trim(line.substr(start, bar == std::string::npos ? std::string::npos : bar - start)));
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      return parts;
    }();
    if (fields.size() < 4 || fields[0].empty()) continue;
    QueueEntry entry;
    entry.job_id = fields[0];
    entry.array_job_id = fields[1].empty() ? fields[0] : fields[1];
    if (!fields[2].empty() && fields[2].find_first_not_of("0123456789") == std::string::npos) {
      entry.array_task_id = std::atoi(fields[2].c_str());
    }
    entry.state = fields[3];
    entry.reason = fields.size() > 4 ? fields[4] : "";
    entries.push_back(std::move(entry));
  }
  return entries;
}

namespace {
constexpr const char* kQueueFormat = "%i|%F|%K|%T|%r";

std::optional<std::vector<QueueEntry>> query(const std::vector<std::string>& argv, std::string* error) {
  const auto output = run_program_captured(argv);
  if (!output.started || output.exit_code != 0) {
    if (error) {
      *error = output.started ? fmt::format("{} failed (exit {}): {}", join(argv, " "), output.exit_code, one_line(trim(output.err)))
                              : output.err;
    }
    return std::nullopt;
  }
  return parse_queue(output.out);
}
}  // namespace

std::optional<std::vector<QueueEntry>> query_user_queue(std::string* error) {
  return query({"squeue", "-h", "-r", "-u", current_user_name(), "-o", kQueueFormat}, error);
}

std::optional<std::vector<QueueEntry>> query_jobs_named(const std::string& job_name, std::string* error) {
  return query({"squeue", "-h", "-r", "-n", job_name, "-o", kQueueFormat}, error);
}

std::optional<std::vector<QueueEntry>> query_array_queue(const std::string& array_job_id) {
  // squeue fails for a job id it no longer knows; an empty answer then means "not queued".
  const auto output = run_program_captured({"squeue", "-h", "-r", "-j", array_job_id, "-o", kQueueFormat});
  if (!output.started) return std::nullopt;
  if (output.exit_code != 0) {
    if (output.err.find("Invalid job id") != std::string::npos) return std::vector<QueueEntry>{};
    return std::nullopt;
  }
  return parse_queue(output.out);
}

std::map<int, std::string> parse_scontrol_array_states(std::string_view output) {
  std::map<int, std::string> states;
  for (const auto& line : split_list(output, '\n')) {
    auto field = [&](const std::string& name) -> std::string {
      const auto at = line.find(" " + name + "=");
      const auto start = at == std::string::npos ? (line.rfind(name + "=", 0) == 0 ? 0 : std::string::npos) : at + 1;
      if (start == std::string::npos) return {};
      const auto value_start = start + name.size() + 1;
      return line.substr(value_start, line.find(' ', value_start) - value_start);
    };
    const auto task = field("ArrayTaskId");
    const auto state = field("JobState");
    // Pending ranges look like "3-9%3"; only single elements have a final state.
    if (task.empty() || state.empty() || task.find_first_not_of("0123456789") != std::string::npos) continue;
    states[std::atoi(task.c_str())] = state;
  }
  return states;
}

std::map<int, std::string> query_array_final_states(const std::string& array_job_id) {
  const auto output = run_program_captured({"scontrol", "-o", "show", "job", array_job_id});
  if (!output.started || output.exit_code != 0) return {};
  return parse_scontrol_array_states(output.out);
}

}  // namespace mill
