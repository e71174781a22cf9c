#pragma once
// Whether the process that wrote a record (a local sweep's submission.json, a heartbeat) still runs. A pid alone
// can be reused, so the record also keeps the kernel's start time of that pid; and a pid means something only on
// the host that wrote it. `mill status` uses this for sweeps run with `schedule --local` (docs/status.md).
#include <nlohmann/json.hpp>
#include <string>

namespace mill {

struct ProcessRecord {
  long long pid = 0;
  std::string host;
  long long start_ticks = -1;  // /proc/<pid>/stat's starttime (clock ticks after boot); -1 when unknown
};

ProcessRecord this_process();

// {"pid", "host", "process_start"} into `record`; the reverse ignores absent or mistyped fields.
void add_process_fields(nlohmann::json& record, const ProcessRecord& process);
ProcessRecord process_from_fields(const nlohmann::json& record);

enum class Liveness {
  alive,    // runs on this host (the same process: same pid and start time)
  gone,     // this host, and no such process (or the pid now belongs to another)
  unknown,  // another host, or no pid recorded
};
Liveness process_liveness(const ProcessRecord& process);
std::string to_string(Liveness liveness);  // "running", "ended", "unknown"

}  // namespace mill
