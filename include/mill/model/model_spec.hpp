#pragma once
// The model spec users type: NAME_OR_PATH[key=value,...], e.g. "meta-llama/Meta-Llama-3-8B[dtype=float16]"
// or "vllm[path=/models/llama,tensor_parallel_size=2]".
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mill {

struct ModelSpec {
  std::string name;                                        // before the brackets
  std::vector<std::pair<std::string, std::string>> args;  // in the order given; keys are unique

  // Parses a spec; a local checkpoint given as a relative path (./x, ../x, or an existing directory) becomes an
  // absolute path, in the name and in a `path=` argument. A malformed one throws mill::Error naming the spec and what is wrong. Values that contain
  // ',' or ']' are written in double quotes: name[stop="a,b"].
  static ModelSpec parse(std::string_view text);

  std::optional<std::string> arg(std::string_view key) const;

  // A numeric argument in [low, high], or `fallback` when absent; anything else throws mill::Error naming it.
  double number_arg(std::string_view key, double fallback, double low, double high) const;

  // Which backend runs it: "vllm", "api" (also spelled "litellm") or "local" (the in-process runtime).
  std::string backend() const;

  // The spec as typed, normalised: name[k=v,...] with args in the given order, quoted where needed.
  std::string to_string() const;

  // What determines the model's numbers, in one spelling: the name plus the arguments in canonical form
  // (model_args.hpp canonical_model_args: no execution-only arguments, none equal to the backend's default,
  // booleans and numbers normalised, sorted). `m`, `m[dtype=bfloat16]` and `m[batch_size=8]` are one identity.
  std::string identity() const;
};

// Arguments that do not change scores and so are left out of the identity (and the job key).
const std::vector<std::string>& execution_only_model_args();

// What resolve_model_revision returns for a model whose revision this host cannot tell (its cache lacks the model).
inline constexpr const char* kUnresolvedRevision = "unresolved";

// The revision a spec evaluates: its `revision` arg, else the commit that the Hugging Face cache's refs/main
// points to ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), else "local" for a local
// directory, else kUnresolvedRevision. The planner and the worker call this same function; when their caches
// differ, the worker keys with the plan's revision (worker.hpp planned_model_revision).
std::string resolve_model_revision(const ModelSpec& spec);

}  // namespace mill
