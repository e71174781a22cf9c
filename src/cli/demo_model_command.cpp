// `mill demo-model DIR`: writes the deterministic tiny checkpoint (Hugging Face formats) that the README's main
// command, the tests and the benchmarks evaluate. It writes safetensors bytes itself and never loads libtorch.
#include <iostream>

#include "commands.hpp"
#include "mill/model/demo_model.hpp"
#include "mill/base/text.hpp"

namespace mill::cli {

void register_demo_model_command(CLI::App& app, const GlobalOptions&) {
  struct Options {
    std::string folder;
    DemoModelOptions model;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("demo-model", "Write a tiny random-weight checkpoint (config.json, "
                                                   "model.safetensors, tokenizer.json) for trying mill out");
  command->add_option("folder", options->folder, "Folder to write (created if needed)")->required();
  const auto architectures = join(demo_model_architectures(), ", ");
  add_option(*command, "architecture", options->model.architecture, "One of " + architectures + " (default llama)");
  command->add_option("--arch", options->model.architecture, "Same as --architecture");
  add_option(*command, "dtype", options->model.dtype, "How weights are stored: float32 (default), bfloat16, float16");
  add_option(*command, "shards", options->model.shards, "Number of safetensors shards (default 1)");
  add_option(*command, "seed", options->model.seed, "Seed of the fixed random weights");
  add_option(*command, "hidden_size", options->model.hidden_size, "Hidden size (default 64)");
  add_option(*command, "layers", options->model.layers, "Number of layers (default 2)");
  add_option(*command, "heads", options->model.heads, "Attention heads (default 4)");
  add_option(*command, "kv_heads", options->model.kv_heads, "Key/value heads, all but gpt2 and gpt_neox (default 2)");
  add_option(*command, "intermediate_size", options->model.intermediate_size, "MLP width (default 128)");
  add_flag(*command, "llamacpp_compatible", options->model.llamacpp_compatible,
           "Write the variant llama.cpp can represent, for the llama.cpp check: qwen3_moe renormalised without a dense "
           "layer, gemma2/gemma3 with query_pre_attn_scalar = head_dim, phi3 with a sliding window as wide as its "
           "positions (other architectures unchanged)");
  command->callback([options] {
    write_demo_model(options->folder, options->model);
    std::cout << "wrote a " << options->model.architecture << " demo checkpoint to " << options->folder << "\n";
  });
}

}  // namespace mill::cli
