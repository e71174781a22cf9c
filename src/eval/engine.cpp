#include "mill/eval/engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "mill/eval/dataset.hpp"
#include "mill/eval/fewshot.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/journal.hpp"
#include "mill/eval/metrics.hpp"
#include "mill/eval/prompt.hpp"
#include "mill/eval/results.hpp"
#include "mill/base/text.hpp"
#include "mill/base/host.hpp"
#include "mill/eval/job_work.hpp"
#include "mill/eval/batch_scorer.hpp"

namespace mill {

namespace {

std::string task_where(const TaskInfo& task) { return fmt::format("task {} ({})", task.name, task.source); }

nlohmann::json env_or_null(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? nlohmann::json(value) : nlohmann::json();
}

double perplexity_of(double mean_nll) { return std::exp(mean_nll); }
double bits_of(double nats_per_byte) { return nats_per_byte / std::log(2.0); }

// The request kind a task needs, in words.
std::string request_kind(OutputType type) {
  switch (type) {
    case OutputType::logprobs: return "log-likelihood";
    case OutputType::generative: return "generation";
    case OutputType::perplexity: return "rolling log-likelihood";
  }
  return "?";
}

}  // namespace

void require_capability(const BackendCapabilities& capabilities, const TaskInfo& task, const std::string& model) {
  const bool ok = (task.output_type == OutputType::logprobs && capabilities.loglikelihood) ||
                  (task.output_type == OutputType::generative && capabilities.generation) ||
                  (task.output_type == OutputType::perplexity && capabilities.rolling);
  if (ok) return;
  std::vector<std::string> can;
  if (capabilities.loglikelihood) can.push_back("log-likelihood (logprobs tasks)");
  if (capabilities.generation) can.push_back("generation (generative tasks)");
  if (capabilities.rolling) can.push_back("rolling log-likelihood (perplexity tasks)");
  throw Error(fmt::format("model {} cannot run task {}: it needs {} ({} task) but this backend supports only {}", model,
                          task.name, request_kind(task.output_type), to_string(task.output_type),
                          can.empty() ? std::string("nothing") : join(can, ", ")));
}

PreparedTask prepare_task(const TaskInfo& task, int n_shot, std::optional<int> limit,
                          const std::optional<std::filesystem::path>& data_dir) {
  check_task_definition(task);
  const auto where = task_where(task);
  const auto eval_split = task.definition.value("eval_split", std::string("test"));
  const auto fewshot_split = task.definition.value("fewshot_split", std::string());
  PromptBuilder prompt(task);
  PreparedTask prepared;
  auto eval = load_split(task, eval_split, data_dir);
  prepared.data["eval"] = {{"split", eval_split},
                           {"origin", eval.origin},
                           {"fingerprint", eval.fingerprint},
                           {"documents", eval.documents.size()}};
  if (eval.documents.empty()) {
    throw Error(fmt::format("{}: split {} has no documents in {} (check dataset.filter)", where, quote_value(eval_split),
                            eval.origin));
  }
  SplitData shots_data;
  const SplitData* shots = &eval;
  const auto settings = fewshot_settings(task);
  const bool inline_shots = task.definition.contains("fewshot_documents");
  if (n_shot > 0 && task.output_type != OutputType::perplexity) {
    if (inline_shots) {
      shots_data.documents = fewshot_documents(task);
      shots_data.origin = "inline";
      shots_data.fingerprint = content_hash(task.definition["fewshot_documents"].dump());
      shots = &shots_data;
    } else if (fewshot_split.empty()) {
      throw Error(fmt::format("{}: --n_shots {} needs few-shot examples but the task has no `fewshot_split`", where, n_shot));
    } else if (fewshot_split != eval_split) {
      shots_data = load_split(task, fewshot_split, data_dir);
      shots = &shots_data;
    }
    prepared.data["fewshot"] = {{"split", inline_shots ? std::string("fewshot_documents") : fewshot_split},
                                {"origin", shots->origin},
                                {"fingerprint", shots->fingerprint},
                                {"documents", shots->documents.size()}};
    const bool same = shots == &eval;
    const auto needed = fewshot_pool_needed(settings, static_cast<std::size_t>(n_shot), same);
    if (needed > shots->documents.size()) {
      const auto extra = needed - static_cast<std::size_t>(n_shot);  // the evaluated document, drawn or skipped
      throw Error(fmt::format("{}: --n_shots {} is more than the {} few-shot example(s) in split {}", where, n_shot,
                              shots->documents.size() > extra ? shots->documents.size() - extra : 0,
                              quote_value(inline_shots ? std::string("fewshot_documents") : fewshot_split)));
    }
  }
  FewshotSampler sampler(settings, shots->documents, shots == &eval);
  std::size_t count = eval.documents.size();
  if (limit && static_cast<std::size_t>(*limit) < count) count = static_cast<std::size_t>(*limit);
  for (std::size_t i = 0; i < count; ++i) {
    Sample sample;
    sample.doc_id = static_cast<long long>(i);
    sample.doc = eval.documents[i];
    if (task.output_type == OutputType::perplexity) {
      sample.text = prompt.text(sample.doc);
    } else {
      const auto examples = sampler.next(n_shot > 0 ? static_cast<std::size_t>(n_shot) : 0, i, sample.doc);
      if (prompt.has_options()) {
        sample.golds = prompt.answer_indices(sample.doc);
        sample.gold = sample.golds.front();
      }
      if (task.output_type == OutputType::logprobs) {
        sample.contexts = prompt.request_contexts(examples, sample.doc);
        sample.context = sample.contexts.front();
        sample.continuations = prompt.continuations(sample.doc);
        // Options in the context (partial evaluation) give one context per option; otherwise one is shared.
        sample.contexts.resize(sample.continuations.size(), sample.context);
        if (prompt.continuation() == ContinuationKind::target) {
          sample.target = sample.continuations.front();
          sample.gold = 0;
          sample.golds = {0};
        }
      } else {
        sample.context = prompt.context(examples, sample.doc);
        sample.target = prompt.has_target() ? prompt.target(sample.doc) : prompt.answer_label(sample.doc);
      }
    }
    prepared.samples.push_back(std::move(sample));
  }
  return prepared;
}

std::vector<nlohmann::json> fewshot_documents(const TaskInfo& task) {
  const auto where = task_where(task);
  const auto& list = task.definition.at("fewshot_documents");
  if (!list.is_array() || list.empty()) {
    throw Error(fmt::format("{}: field `fewshot_documents` must be a non-empty list of documents (mappings)", where));
  }
  std::vector<nlohmann::json> out;  // written in final form: not preprocessed (as lm-eval's fewshot_config.samples)
  for (const auto& document : list) {
    if (!document.is_object()) throw Error(fmt::format("{}: every entry of `fewshot_documents` must be a mapping", where));
    out.push_back(document);
  }
  return out;
}

nlohmann::json aggregate_scores(const std::vector<std::string>& metrics, const std::vector<nlohmann::json>& entries) {
  nlohmann::json out = nlohmann::json::object();
  auto column = [&](const std::string& name) {
    std::vector<double> values;
    values.reserve(entries.size());
    for (const auto& entry : entries) values.push_back(entry.at("scores").at(name).get<double>());
    return values;
  };
  auto number_or_null = [](double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(); };
  for (const auto& metric : metrics) {
    if (metric == "perplexity" || metric == "bits_per_byte") {
      const auto nll = column("nll");
      // A rolling perplexity divides by tokens; a target's (logprobs `continuation: target`, LAMBADA) averages over
      // documents, as lm-eval's loglikelihood perplexity exp(-mean(ll)).
      const bool per_document = metric == "perplexity" && !entries.empty() && !entries.front().at("scores").contains("tokens");
      const auto denominator = per_document ? std::vector<double>(entries.size(), 1.0)
                                            : column(metric == "perplexity" ? "tokens" : "bytes");
      double top = 0;
      double bottom = 0;
      for (std::size_t i = 0; i < nll.size(); ++i) {
        top += nll[i];
        bottom += denominator[i];
      }
      const auto transform = metric == "perplexity" ? &perplexity_of : &bits_of;
      const double value = bottom > 0 ? transform(top / bottom) : std::nan("");
      out[metric] = {{"value", number_or_null(value)},
                     {"stderr", number_or_null(bootstrap_stderr_of_ratio(nll, denominator, transform))},
                     {"n", entries.size()}};
    } else {
      const auto values = column(metric);
      out[metric] = {{"value", number_or_null(mean(values))},
                     {"stderr", number_or_null(bootstrap_stderr_of_mean(values))},
                     {"n", entries.size()}};
    }
  }
  return out;
}

namespace {
// One fingerprint of everything the job reads: the evaluation split's and the few-shot split's bytes. A journal
// is resumed only for the same data.
std::string data_fingerprint(const nlohmann::json& data) {
  std::string parts;
  for (const char* split : {"eval", "fewshot"}) {
    const auto it = data.find(split);
    parts += it != data.end() && it->is_object() ? it->value("fingerprint", std::string()) : std::string();
    parts += ';';
  }
  return content_hash(parts);
}

std::unique_ptr<BatchScorer> make_batch_scorer(const TaskInfo& task) {
  switch (task.output_type) {
    case OutputType::logprobs: return make_loglikelihood_scorer(task);
    case OutputType::generative: return make_generation_scorer(task);
    case OutputType::perplexity: return make_perplexity_scorer(task);
  }
  throw Error(fmt::format("{}: unknown output type", task_where(task)), ExitCode::internal);
}
}  // namespace

void require_answers(std::size_t got, std::size_t sent, const char* what) {
  if (got != sent) throw Error(fmt::format("backend returned {} {} for {} requests", got, what, sent), ExitCode::eval_failed);
}

JobOutcome run_job(ModelBackend& backend, const Job& job, const JobKey& key, const EvalSettings& settings) {
  const auto& task = *job.task;
  const auto started = std::chrono::system_clock::now();
  const auto steady_start = std::chrono::steady_clock::now();
  const auto model_name = job.model.to_string();
  require_capability(backend.capabilities(), task, model_name);
  const auto metrics = task_metrics(task);
  const auto prepared = prepare_task(task, job.n_shot, job.limit, settings.data_dir);
  const auto scorer = make_batch_scorer(task);

  JobOutcome outcome;
  outcome.result_path = result_path(settings.output_dir, job);
  outcome.total = prepared.samples.size();
  refuse_to_overwrite_newer_result(outcome.result_path, key);
  JournalExpectations expect;
  expect.scoring_version = key.inputs.value("scoring_version", kScoringVersion);
  expect.data_fingerprint = data_fingerprint(prepared.data);
  Journal journal(journal_path(settings.output_dir, job), key.digest, expect);
  if (!journal.note().empty()) spdlog::warn("{}", journal.note());
  // Entries for documents beyond this run's samples cannot exist with the same key (the key holds the limit).
  std::vector<const Sample*> pending;
  for (const auto& sample : prepared.samples) {
    if (!journal.has(sample.doc_id)) pending.push_back(&sample);
  }
  outcome.resumed = prepared.samples.size() - pending.size();
  if (outcome.resumed > 0) {
    spdlog::info("{}: resuming, {} of {} samples already in the journal", task.name, outcome.resumed, outcome.total);
  }
  std::size_t done = outcome.resumed;
  long long tokens_this_run = 0;
  if (settings.on_progress) settings.on_progress({done, outcome.total});

  const std::size_t per_batch = std::max<std::size_t>(1, settings.docs_per_batch);
  for (std::size_t start = 0; start < pending.size(); start += per_batch) {
    if (settings.stop && settings.stop->load()) {
      outcome.state = JobState::preempted;
      return outcome;
    }
    const auto end = std::min(pending.size(), start + per_batch);
    const std::vector<const Sample*> batch(pending.begin() + static_cast<std::ptrdiff_t>(start),
                                           pending.begin() + static_cast<std::ptrdiff_t>(end));
    const auto entries = scorer->score(backend, batch);
    for (const auto& entry : entries) tokens_this_run += entry.value("n_tokens", 0LL);
    journal.append(entries);
    done += end - start;
    outcome.evaluated += end - start;
    if (settings.on_progress) settings.on_progress({done, outcome.total});
  }

  // Every number comes from the journal, so a resumed run and an uninterrupted one agree exactly.
  std::vector<nlohmann::json> ordered;
  ordered.reserve(prepared.samples.size());
  long long tokens_total = 0;
  std::size_t unparsed = 0;
  std::size_t hit_limit = 0;
  for (const auto& sample : prepared.samples) {
    const auto& entry = journal.entries().at(sample.doc_id);
    tokens_total += entry.value("n_tokens", 0LL);
    if (task.output_type == OutputType::generative) {
      unparsed += entry["scores"].value("unparsed_rate", 0.0) > 0;
      hit_limit += entry["scores"].value("hit_token_limit_rate", 0.0) > 0;
    }
    ordered.push_back(entry);
  }
  const auto finished = std::chrono::system_clock::now();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - steady_start).count();
  const auto backend_facts = backend.provenance();
  // What this run sent through the model, in the cost model's units (cost_model.hpp), so later plans learn from it.
  auto work = work_of_samples(pending);
  if (task.output_type == OutputType::generative) work.output_tokens = static_cast<double>(tokens_this_run);
  nlohmann::json counts = {{"samples", ordered.size()}, {"resumed", outcome.resumed}, {"evaluated", outcome.evaluated}};
  if (task.output_type == OutputType::generative) {
    counts["unparsed"] = unparsed;
    counts["hit_token_limit"] = hit_limit;
  }
  nlohmann::json result = {
      {"schema", kResultSchema},
      {"key", key.digest},
      {"key_inputs", key.inputs},
      {"task", task.name},
      {"benchmark", task.benchmark.empty() ? nlohmann::json() : nlohmann::json(task.benchmark)},
      {"model", model_name},
      {"model_identity", results_model_of(job)},
      {"n_shot", job.n_shot},
      {"limit", job.limit ? nlohmann::json(*job.limit) : nlohmann::json()},
      {"output_type", to_string(task.output_type)},
      {"n_samples", ordered.size()},
      {"primary_metric", metrics.front()},
      {"metrics", aggregate_scores(metrics, ordered)},
      {"counts", counts},
      {"data", prepared.data},
      {"journal", journal.path().filename().string()},
      {"provenance",
       {{"mill_version", version()},
        {"scoring_version", kScoringVersion},
        {"host", host_name()},
        {"device", backend_facts.value("device", nlohmann::json())},
        {"dtype", backend_facts.value("dtype", nlohmann::json())},
        {"batch_size", backend_facts.value("batch_size", nlohmann::json())},
        {"backend", backend_facts},
        {"slurm",
         {{"job_id", env_or_null("SLURM_JOB_ID")},
          {"array_job_id", env_or_null("SLURM_ARRAY_JOB_ID")},
          {"array_task_id", env_or_null("SLURM_ARRAY_TASK_ID")}}},
        {"started_at", utc_time(started)},
        {"finished_at", utc_time(finished)},
        {"wall_seconds", wall},
        {"tokens", {{"total", tokens_total}, {"this_run", tokens_this_run}}},
        {"work", {{"documents", work.documents}, {"input_bytes", work.input_bytes}, {"output_tokens", work.output_tokens}}},
        {"gpu_type", settings.gpu_type.empty() ? nlohmann::json() : nlohmann::json(settings.gpu_type)},
        {"load_seconds", settings.model_load_seconds},
        {"bootstrap", {{"resamples", kBootstrapResamples}, {"seed", kBootstrapSeed}}}}},
  };
  if (!settings.model_checkpoint.is_null()) result["model_checkpoint"] = settings.model_checkpoint;
  write_result(outcome.result_path, result);
  outcome.result = std::move(result);
  outcome.state = JobState::completed;
  return outcome;
}

}  // namespace mill
