// collect --check: the jobs the sweeps under an output dir planned (or a model and task list) against what is
// on disk: missing, stale, corrupt, unreadable or in flight, and the schedule commands that finish them.
#include "mill/collect/collect.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <tuple>
#include <unordered_map>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model_list.hpp"
#include "mill/sweep/plan.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"
#include "mill/base/shell.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/sweep/manifest.hpp"
#include "mill/eval/job.hpp"

namespace mill {

namespace {

struct ExpectedJob {
  std::string spec;
  const TaskInfo* task = nullptr;
  int n_shot = 0;
  std::optional<int> limit;
  std::shared_ptr<const ScheduleSettings> settings;
};

CheckEntry entry_for(const ExpectedJob& job, ResultState state, std::string reason, std::filesystem::path result) {
  return CheckEntry{job.spec, job.task->name, job.n_shot, job.limit, state, std::move(reason), std::move(result),
                    job.settings};
}

void file_entry(CheckReport& report, CheckEntry entry) {
  switch (entry.state) {
    case ResultState::done: ++report.done; break;
    case ResultState::missing: report.missing.push_back(std::move(entry)); break;
    case ResultState::stale: report.stale.push_back(std::move(entry)); break;
    case ResultState::corrupt: report.corrupt.push_back(std::move(entry)); break;
  }
}

// One job a sweep's manifest planned, with the settings it was planned with.
struct SweepJob {
  std::string spec;  // as the sweep had it (execution arguments kept)
  std::string task;
  int n_shot = 0;
  std::optional<int> limit;
  std::shared_ptr<const ScheduleSettings> settings;
  std::string manifest;  // where it was read, for warnings
};

// Every job of every sweep under <output_dir>/sweeps, newest sweep first (ids sort by time), so that the first
// sweep naming a job is the one whose settings a resubmission repeats.
std::vector<SweepJob> read_sweep_jobs(const std::filesystem::path& output_dir, std::vector<std::string>& warnings) {
  std::error_code ec;
  std::vector<std::filesystem::path> manifests;
  for (const auto& sweep : std::filesystem::directory_iterator(output_dir / "sweeps", ec)) {
    if (std::filesystem::is_regular_file(sweep.path() / "manifest.json", ec)) manifests.push_back(sweep.path() / "manifest.json");
  }
  std::sort(manifests.rbegin(), manifests.rend());
  std::vector<SweepJob> jobs;
  for (const auto& manifest_path : manifests) {
    Manifest manifest;
    try {
      manifest = read_manifest(manifest_path);
    } catch (const Error& e) {
      warnings.push_back(fmt::format("{}; sweep skipped", e.what()));
      continue;
    }
    const auto settings =
        std::make_shared<const ScheduleSettings>(ScheduleSettings::from_manifest(manifest, output_dir));
    for (const auto& element : manifest.elements) {
      for (const auto& job : element.jobs) {
        jobs.push_back({element.model, job.task, job.n_shot, job.limit, settings, manifest_path.string()});
      }
    }
  }
  return jobs;
}

// Jobs that are not done but cannot be judged (their file or directory is unreadable) or need no resubmission
// (queued or running in a sweep) leave the missing/stale/corrupt lists, and so the resubmit lines.
void set_aside_unreadable_and_in_flight(CheckReport& report, const ResultScan& scan, const CheckRequest& request,
                                        const TaskRegistry& registry) {
  std::unordered_map<std::string, const SkippedFile*> unreadable;
  for (const auto& entry : scan.unreadable) unreadable.emplace(entry.path.string(), &entry);
  std::map<std::string, std::string> revisions;  // model spec → revision, resolved once
  const auto in_flight_reason = [&](const CheckEntry& entry) -> std::string {
    if (request.in_flight.empty()) return {};
    const auto* task = registry.find(entry.task);
    if (!task) return {};
    try {
      const auto spec = ModelSpec::parse(entry.model);
      auto [it, inserted] = revisions.try_emplace(entry.model);
      if (inserted) it->second = resolve_model_revision(spec);
      const auto key = make_job_key(Job{spec, task, entry.n_shot, entry.limit}, it->second);
      const auto found = request.in_flight.find(key.digest);
      return found == request.in_flight.end() ? std::string() : found->second;
    } catch (const Error&) {
      return {};
    }
  };
  for (auto* list : {&report.missing, &report.stale, &report.corrupt}) {
    std::vector<CheckEntry> kept;
    for (auto& entry : *list) {
      const SkippedFile* blocked = nullptr;
      for (auto path = entry.result; !blocked && path.has_relative_path() && path != request.output_dir;
           path = path.parent_path()) {
        if (const auto it = unreadable.find(path.string()); it != unreadable.end()) blocked = it->second;
      }
      if (blocked) {
        entry.reason = fmt::format("{}: {}", blocked->path.string(), blocked->reason);
        report.unreadable.push_back(std::move(entry));
      } else if (auto where = in_flight_reason(entry); !where.empty()) {
        entry.reason = std::move(where);
        report.in_flight.push_back(std::move(entry));
      } else {
        kept.push_back(std::move(entry));
      }
    }
    *list = std::move(kept);
  }
}

}  // namespace

CheckReport check_results(const CheckRequest& request, const ResultScan& scan, const StaleResults& stale,
                          const TaskRegistry& registry) {
  CheckReport report;
  const auto sweep_jobs = read_sweep_jobs(request.output_dir, report.warnings);
  // The result path a planned job writes → its sweep job (the newest sweep's), or null when it names a task mill
  // does not know or a spec it cannot parse (warned about once, here).
  std::unordered_map<std::string, const SweepJob*> sweep_job_at;
  std::vector<std::pair<std::string, ExpectedJob>> planned;  // result path → job, newest sweep's first
  std::unordered_map<std::string, std::optional<ModelSpec>> specs;  // parsed once per model, not per job
  std::unordered_map<std::string, std::string> results_models;     // spec as written → its results directory's model
  for (const auto& job : sweep_jobs) {
    const auto* task = registry.find(job.task);
    if (!task) {
      report.warnings.push_back(fmt::format("{} names task {} which mill does not know (pass --extra_task_paths?); "
                                            "not checked",
                                            job.manifest, quote_value(job.task)));
      continue;
    }
    auto [parsed, first] = specs.try_emplace(job.spec);
    if (first) {
      try {
        parsed->second = ModelSpec::parse(job.spec);
      } catch (const Error& e) {
        report.warnings.push_back(fmt::format("{}: {}; not checked", job.manifest, e.what()));
      }
    }
    if (!parsed->second) continue;
    // A checkpoint folder's results may live under the name of the path they were first written for.
    auto [where, first_time] = results_models.try_emplace(job.spec);
    if (first_time) {
      where->second = local_checkpoint_folder(*parsed->second)
                          ? results_model(request.output_dir, identify_model(*parsed->second))
                          : parsed->second->identity();
    }
    const auto path =
        result_path(request.output_dir, Job{*parsed->second, task, job.n_shot, job.limit, where->second}).string();
    if (sweep_job_at.emplace(path, &job).second) {
      planned.push_back({path, ExpectedJob{job.spec, task, job.n_shot, job.limit, job.settings}});
    }
  }

  if (!request.models.empty() && !request.tasks.empty()) {
    PlanRequest plan_request{request.models, request.tasks, request.n_shots, std::nullopt, request.output_dir};
    const auto plan = build_plan(plan_request, registry);
    for (const auto& job : plan.jobs) {
      ++report.expected;
      ExpectedJob expected{job.job.model.to_string(), job.job.task, job.job.n_shot, job.job.limit, nullptr};
      if (const auto it = sweep_job_at.find(job.result.string()); it != sweep_job_at.end()) {
        expected.settings = it->second->settings;
      }
      auto entry = entry_for(expected, job.check.state, job.check.reason, job.result);
      entry.from_newer_scorer = job.check.newer_scoring_version.has_value();
      file_entry(report, std::move(entry));
    }
  } else {
    // Narrowing by whatever was given.
    std::set<std::string> model_filter, task_filter;
    for (const auto& model : request.models) model_filter.insert(ModelSpec::parse(model).identity());
    if (!request.tasks.empty()) {
      for (const auto* task : registry.expand(request.tasks)) task_filter.insert(task->name);
    }
    std::set<int> shot_filter;
    if (request.n_shots) shot_filter.insert(request.n_shots->begin(), request.n_shots->end());
    const auto wanted = [&](const std::string& identity, const std::string& task, int n_shot) {
      return (model_filter.empty() || model_filter.count(identity)) && (task_filter.empty() || task_filter.count(task)) &&
             (shot_filter.empty() || shot_filter.count(n_shot));
    };

    std::unordered_map<std::string, const CollectedResult*> found;
    for (const auto& result : scan.results) found.emplace(result.path.string(), &result);
    std::unordered_map<std::string, const SkippedFile*> damaged;
    for (const auto& skipped : scan.skipped) damaged.emplace(skipped.path.string(), &skipped);

    // One entry per job, whatever its sources: keyed by the result path the job writes.
    std::unordered_map<std::string, ExpectedJob> expected;
    // Sweeps first: their specs carry the execution arguments and settings a resubmission should keep.
    for (const auto& [path, entry] : planned) {
      if (wanted(model_identity_of(entry.spec), entry.task->name, entry.n_shot)) expected.try_emplace(path, entry);
    }
    // Results found: their own path is the job's (no spec parsing per file: 100k of them is common).
    std::map<std::string, std::size_t> unknown_tasks;  // one warning per task, not per file
    for (const auto& result : scan.results) {
      const auto* task = registry.find(result.task);
      if (!task) {
        ++unknown_tasks[result.task];
        continue;
      }
      if (!wanted(result.model, result.task, result.n_shot)) continue;
      expected.try_emplace(result.path.string(), ExpectedJob{result.model, task, result.n_shot, result.limit, nullptr});
    }
    for (const auto& [task, count] : unknown_tasks) {
      report.warnings.push_back(fmt::format("{} result(s) of task {}, which mill does not know (pass "
                                            "--extra_task_paths?), are aggregated but not checked",
                                            count, quote_value(task)));
    }
    std::vector<SkippedFile> named_by_path = scan.skipped;
    named_by_path.insert(named_by_path.end(), scan.unreadable.begin(), scan.unreadable.end());
    for (const auto& skipped : named_by_path) {
      // A damaged or unreadable file still says, through its path, which job it was meant to be.
      int n_shot = 0;
      std::optional<int> limit;
      if (!parse_result_file_stem(skipped.path.stem().string(), n_shot, limit)) continue;
      const auto spec_text = name_from_path_component(skipped.path.parent_path().parent_path().filename().string());
      const auto task_name = skipped.path.parent_path().filename().string();
      const auto* task = registry.find(task_name);
      if (!task) {
        report.warnings.push_back(fmt::format("{} names task {} which mill does not know (pass --extra_task_paths?); "
                                              "not checked",
                                              skipped.path.string(), quote_value(task_name)));
        continue;
      }
      ModelSpec spec;
      try {
        spec = ModelSpec::parse(spec_text);
      } catch (const Error& e) {
        report.warnings.push_back(fmt::format("{}: {}; not checked", skipped.path.string(), e.what()));
        continue;
      }
      if (!wanted(spec.identity(), task->name, n_shot)) continue;
      expected.try_emplace(result_path(request.output_dir, Job{spec, task, n_shot, limit}).string(),
                           ExpectedJob{spec_text, task, n_shot, limit, nullptr});
    }

    for (const auto& [path, job] : expected) {
      ++report.expected;
      ResultState state = ResultState::missing;
      std::string reason;
      bool newer = false;
      if (const auto result = found.find(path); result != found.end()) {
        const auto it = stale.find(path);
        state = it == stale.end() ? ResultState::done : ResultState::stale;
        if (it != stale.end()) reason = it->second;
        newer = state == ResultState::stale &&
                newer_scoring_version(result->second->key_inputs, {{"scoring_version", kScoringVersion}}).has_value();
      } else if (const auto bad = damaged.find(path); bad != damaged.end()) {
        state = ResultState::corrupt;
        reason = bad->second->reason;
      }
      if (state == ResultState::done) {  // most jobs of a big tree: counted without building an entry
        ++report.done;
        continue;
      }
      auto entry = entry_for(job, state, reason, path);
      entry.from_newer_scorer = newer;
      file_entry(report, std::move(entry));
    }
    const auto by_job = [](const CheckEntry& a, const CheckEntry& b) {
      return std::make_tuple(std::cref(a.model), std::cref(a.task), a.n_shot, a.limit.value_or(-1)) <
             std::make_tuple(std::cref(b.model), std::cref(b.task), b.n_shot, b.limit.value_or(-1));
    };
    for (auto* list : {&report.missing, &report.stale, &report.corrupt}) std::sort(list->begin(), list->end(), by_job);
  }
  set_aside_unreadable_and_in_flight(report, scan, request, registry);
  std::vector<const CheckEntry*> pending;
  for (const auto* list : {&report.missing, &report.stale, &report.corrupt}) {
    for (const auto& entry : *list) {
      if (!entry.from_newer_scorer) pending.push_back(&entry);  // this mill would refuse to overwrite it
    }
  }
  ScheduleSettings fallback;
  fallback.output_dir = request.output_dir;
  fallback.extra_task_paths = request.extra_task_paths;
  report.resubmit_commands = resubmit_commands(pending, fallback, registry, request.list_files_dir);
  return report;
}

namespace {

// A list word too long for one argument goes to a file named by its content (so rerunning collect reuses it),
// one item per line; `option` is --models_file or --tasks_file. Items with a line break cannot be listed so.
std::vector<std::string> list_argument(const std::vector<std::string>& items, const std::string& joined,
                                       const char* option, const std::filesystem::path& list_files_dir) {
  const bool fits = joined.size() <= kLongListBytes;
  const bool one_per_line = std::none_of(items.begin(), items.end(), [](const std::string& item) {
    return item.find_first_of("\r\n") != std::string::npos;
  });
  if (fits || list_files_dir.empty() || !one_per_line) return {joined};
  const auto content = join(items, "\n") + "\n";
  const auto kind = std::string(option) == "--models_file" ? "models" : "tasks";
  const auto path = list_files_dir / fmt::format("{}-{}.txt", kind, content_hash(content).substr(0, 16));
  std::error_code ec;
  std::filesystem::create_directories(list_files_dir, ec);
  write_file_atomically(path, content);
  return {option, path.string()};
}

}  // namespace

std::vector<ResubmitCommand> resubmit_commands(const std::vector<const CheckEntry*>& pending,
                                               const ScheduleSettings& fallback, const TaskRegistry& registry,
                                               const std::filesystem::path& list_files_dir) {
  std::map<std::string, std::size_t> task_order;
  for (std::size_t i = 0; i < registry.tasks().size(); ++i) task_order[registry.tasks()[i].name] = i;
  const auto by_registry_order = [&](const std::string& a, const std::string& b) {
    const auto ia = task_order.count(a) ? task_order[a] : task_order.size();
    const auto ib = task_order.count(b) ? task_order[b] : task_order.size();
    return std::tie(ia, a) < std::tie(ib, b);
  };

  // 0. jobs planned with the same settings may share a command; the settings' JSON text is their grouping key.
  std::map<std::string, const ScheduleSettings*> settings_of;
  const auto settings_key = [&](const CheckEntry& entry) {
    const auto* settings = entry.settings ? entry.settings.get() : &fallback;
    auto key = settings->to_json().dump();
    settings_of.emplace(key, settings);
    return key;
  };

  // 1. tasks per (settings, limit, n_shot, model).
  std::map<std::tuple<std::string, int, int, std::string>, std::set<std::string>> tasks_of;
  for (const auto* entry : pending) {
    tasks_of[{settings_key(*entry), entry->limit.value_or(-1), entry->n_shot, entry->model}].insert(entry->task);
  }

  // 2. a task set as the user would type it: a benchmark whose every task is pending is written by its name.
  const auto task_words = [&](const std::set<std::string>& tasks) {
    std::vector<std::string> names(tasks.begin(), tasks.end());
    std::sort(names.begin(), names.end(), by_registry_order);
    std::vector<std::string> words;
    std::set<std::string> covered;
    for (const auto& benchmark : registry.benchmarks()) {
      bool all = true, any = false;
      for (const auto& task : registry.tasks()) {
        if (task.benchmark != benchmark) continue;
        any = true;
        if (!tasks.count(task.name)) all = false;
      }
      if (any && all) covered.insert(benchmark);
    }
    std::set<std::string> written;
    for (const auto& name : names) {
      const auto* task = registry.find(name);
      if (task && covered.count(task->benchmark)) {
        if (written.insert(task->benchmark).second) words.push_back(task->benchmark);
      } else {
        words.push_back(name);
      }
    }
    return words;
  };

  // 3. models with the same (settings, limit, n_shot, tasks) share a command (list items never run together:
  // model_list.hpp).
  std::map<std::tuple<std::string, int, int, std::vector<std::string>>, std::vector<std::string>> models_of;
  for (const auto& [key, tasks] : tasks_of) {
    const auto& [settings, limit, n_shot, model] = key;
    models_of[{settings, limit, n_shot, task_words(tasks)}].push_back(model);
  }

  // 4. n_shots with the same (settings, limit, models, tasks) share a command.
  std::map<std::tuple<std::string, int, std::vector<std::string>, std::vector<std::string>>, std::vector<int>> shots_of;
  for (const auto& [key, models] : models_of) {
    const auto& [settings, limit, n_shot, tasks] = key;
    shots_of[{settings, limit, models, tasks}].push_back(n_shot);
  }

  std::vector<ResubmitCommand> commands;
  for (const auto& [key, shots] : shots_of) {
    const auto& [settings_text, limit, models, tasks] = key;
    const auto& settings = *settings_of.at(settings_text);
    std::vector<std::string> model_items;
    for (const auto& model : models) model_items.push_back(model_list_item(model));
    std::vector<std::string> shot_text;
    for (int n : shots) shot_text.push_back(std::to_string(n));

    ResubmitCommand command;
    auto& argv = command.argv;
    argv.push_back("mill");
    for (auto& word : settings.global_arguments()) argv.push_back(std::move(word));
    argv.push_back("schedule");
    const auto model_words = list_argument(models, join(model_items, ","), "--models_file", list_files_dir);
    const auto task_list = list_argument(tasks, join(tasks, ","), "--tasks_file", list_files_dir);
    // Positional lists first (MODELS TASKS), then the files that stand for the others.
    if (model_words.size() == 1) argv.push_back(model_words.front());
    if (task_list.size() == 1) argv.push_back(task_list.front());
    if (model_words.size() == 2) argv.insert(argv.end(), model_words.begin(), model_words.end());
    if (task_list.size() == 2) argv.insert(argv.end(), task_list.begin(), task_list.end());
    argv.insert(argv.end(), {"--n_shots", join(shot_text, ",")});
    if (limit >= 0) argv.insert(argv.end(), {"--limit", std::to_string(limit)});
    for (auto& word : settings.schedule_arguments()) argv.push_back(std::move(word));

    std::vector<std::string> quoted;
    for (const auto& word : argv) quoted.push_back(shell_word(word));
    command.line = join(quoted, " ");
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace mill
