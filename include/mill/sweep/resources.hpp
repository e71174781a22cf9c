#pragma once
// What one array element of a model asks SLURM for: its GPUs (from the backend and its arguments), CPUs and memory
// scaled with them, and whether the model fits in the memory of those GPUs (docs/schedule.md, "Resources per
// model"). Reads only config.json and safetensors headers, never weights.
#include <optional>
#include <string>
#include <vector>

#include "mill/sweep/cluster.hpp"
#include "mill/model/model_spec.hpp"

namespace mill {

// The resources of one array: every element of an array asks for the same.
struct ResourceShape {
  int gpus = 0;
  int cpus = 1;
  std::string mem;          // --mem ("" when mem_per_gpu is used)
  std::string mem_per_gpu;  // --mem-per-gpu ("" when mem is used)
  bool operator==(const ResourceShape&) const = default;
  std::string to_string() const;  // e.g. "4 GPU(s), 32 CPU(s), 256G"
};

// A checkpoint's size as read from its files.
struct ModelFootprint {
  double parameters = 0;
  std::string dtype;         // the dtype the model will run in
  double weight_bytes = 0;   // parameters × the dtype's bytes
  double kv_cache_bytes = 0; // one request of the longest context the model is run with
  double needed_bytes = 0;   // weights + KV cache + activations and runtime overhead, over all of its GPUs
};

struct ModelResources {
  int gpus = 0;
  std::string gpus_reason;                  // why that many, e.g. "tensor_parallel_size=4 × pipeline_parallel_size=1"
  std::optional<ModelFootprint> footprint;  // absent when the checkpoint was not read (--skip_model_check, api, demo)
  ResourceShape shape;
};

// A hub id or folder the worker will read, for the backends that read one (the api backend and mill-demo read none).
std::optional<std::string> checkpoint_of(const ModelSpec& spec);

// The shape of an element with `gpus` GPUs on `profile`: its cpus_per_task and mem are for gpus_per_task GPUs
// and scale with them (an element without GPUs gets the profile's values; mem 0 stays 0; mem_per_gpu scales by
// itself and becomes --mem without GPUs).
ResourceShape resource_shape(int gpus, const ClusterProfile& profile);

// GPUs, shape and (when `read_checkpoint` and the backend has a local checkpoint) footprint of `spec` on
// `profile`. Unreadable checkpoints leave the footprint out: the preflight's file checks report them.
ModelResources model_resources(const ModelSpec& spec, const ClusterProfile& profile, bool read_checkpoint);

// The memory of one GPU of the profile: its `gpu_memory`, else what its gpu_type is known to have (a100 → 80 GiB,
// h100 → 80 GiB, ...; a label with a size such as a100_40g says it), else 0 (unknown: fit not checked).
double profile_gpu_memory_bytes(const ClusterProfile& profile);

// Why `resources` cannot run on `profile` (more GPUs than a node has, or a model larger than its GPUs hold), with
// what would work; nothing when it can.
std::optional<std::string> resources_problem(const ModelSpec& spec, const ModelResources& resources,
                                             const ClusterProfile& profile);

}  // namespace mill
