// `mill serve MODEL_SPEC --port N`: one loaded model behind the OpenAI-compatible protocol on loopback, for
// several evaluations to share (and for testing the api/vllm clients against a real server). docs/backends.md.
#include <iostream>

#include "commands.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model.hpp"
#include "mill/model/remote_plugin.hpp"

namespace mill::cli {

void register_serve_command(CLI::App& app, const GlobalOptions&) {
  struct Options {
    std::string model;
    ServeOptions serve;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("serve",
                                     "Serve a model over the OpenAI-compatible HTTP protocol: /v1/completions "
                                     "(per-token logprobs, echo), /v1/chat/completions (the model's chat template), "
                                     "stream, temperature/top_p/seed sampling, /health (docs/backends.md)");
  command->add_option("model_spec", options->model, "NAME_OR_PATH[key=value,...], e.g. mill-demo")->required();
  add_option(*command, "port", options->serve.port, "TCP port (default 8000; 0 picks a free one and prints it)");
  add_option(*command, "host", options->serve.host, "Address to listen on (default 127.0.0.1, loopback only)");
  add_option(*command, "served_model_name", options->serve.served_model_name,
             "The model id clients send (default: MODEL_SPEC as typed)");
  add_option(*command, "max_batch", options->serve.max_batch, "Requests per backend call (default 64)");
  add_option(*command, "threads", options->serve.threads, "HTTP connections served at once (default 128)");
  command->callback([options] {
    auto& serve = options->serve;
    if (serve.port < 0 || serve.port > 65535) throw Error("--port must be in 0..65535");
    if (serve.max_batch < 1 || serve.threads < 1) throw Error("--max_batch and --threads must be at least 1");
    const auto spec = ModelSpec::parse(options->model);
    if (serve.served_model_name.empty()) serve.served_model_name = options->model;
    auto backend = make_backend(spec);
    serve.on_listening = [](const std::string& host, int port) {
      // The one stdout line: scripts (and tests) read the port from it when --port 0.
      std::cout << "mill serve: listening on http://" << host << ":" << port << std::endl;
    };
    serve_backend(*backend, serve);
  });
}

}  // namespace mill::cli
