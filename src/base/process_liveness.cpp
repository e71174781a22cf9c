#include "mill/base/process_liveness.hpp"
#include "mill/base/host.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>

namespace mill {

namespace {
// The start time of `pid` in clock ticks after boot, -1 when there is no such process (or it is a zombie).
long long process_start_ticks(long long pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return -1;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted after the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  // Fields 3 (state) to 22 (starttime).
  for (int index = 3; index <= 22 && fields >> field; ++index) {
    if (index == 3 && (field == "Z" || field == "X")) return -1;  // ended, only not yet reaped
    if (index == 22) {
      try {
        return std::stoll(field);
      } catch (const std::exception&) {
        return -1;
      }
    }
  }
  return -1;
}
}  // namespace

ProcessRecord this_process() { return {static_cast<long long>(::getpid()), host_name(), process_start_ticks(::getpid())}; }

void add_process_fields(nlohmann::json& record, const ProcessRecord& process) {
  record["pid"] = process.pid;
  record["host"] = process.host;
  record["process_start"] = process.start_ticks;
}

ProcessRecord process_from_fields(const nlohmann::json& record) {
  ProcessRecord process;
  if (!record.is_object()) return process;
  if (const auto it = record.find("pid"); it != record.end() && it->is_number_integer()) process.pid = it->get<long long>();
  if (const auto it = record.find("host"); it != record.end() && it->is_string()) process.host = it->get<std::string>();
  if (const auto it = record.find("process_start"); it != record.end() && it->is_number_integer()) {
    process.start_ticks = it->get<long long>();
  }
  return process;
}

Liveness process_liveness(const ProcessRecord& process) {
  if (process.pid <= 0 || process.host.empty() || process.host != host_name()) return Liveness::unknown;
  if (::kill(static_cast<pid_t>(process.pid), 0) != 0 && errno == ESRCH) return Liveness::gone;
  const auto start = process_start_ticks(process.pid);
  if (start < 0) return Liveness::gone;
  // Without a recorded start time (an older record) the pid's existence is all there is to go by.
  return process.start_ticks < 0 || start == process.start_ticks ? Liveness::alive : Liveness::gone;
}

std::string to_string(Liveness liveness) {
  switch (liveness) {
    case Liveness::alive: return "running";
    case Liveness::gone: return "ended";
    case Liveness::unknown: return "unknown";
  }
  return "unknown";
}

}  // namespace mill
