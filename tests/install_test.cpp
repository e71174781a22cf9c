// `cmake --install` of this build into a temporary prefix that is then moved: the moved copy must plan, run and
// load its plugins with nothing pointing back at where it was installed (docs/install.md).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "mill/model/demo_backend.hpp"
#include "mill/model/model_spec.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

test::RunResult run_in(const fs::path& prefix, std::vector<std::string> args,
                       const std::map<std::string, std::string>& env = {}) {
  args.insert(args.begin(), (prefix / "bin" / "mill").string());
  return test::run_program(args, env);
}

// A loopback port that accepts TCP connections (the kernel completes them) and never answers; closed on scope exit.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port_ = ntohs(address.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace

TEST_CASE("an installed prefix works after it is moved: help, a 114-job dry run, a local sweep, both plugins",
          "[install]") {
  test::TempDir dir;
  const auto build_dir = fs::path(test::mill_binary()).parent_path();
  const auto installed = dir / "installed";
  const auto install = test::run_program({"cmake", "--install", build_dir.string(), "--prefix", installed.string()});
  INFO(install.out << install.err);
  REQUIRE(install.exit_code == 0);

  // Moved one level deeper under another name: a path relative to the old prefix would now point at nothing.
  const auto moved = dir / "elsewhere" / "mill-copy";
  fs::create_directories(moved.parent_path());
  fs::rename(installed, moved);
  REQUIRE_FALSE(fs::exists(installed));
  CHECK(fs::exists(moved / "lib" / "mill" / "libmill_remote.so"));
  CHECK_FALSE(fs::exists(moved / "bin" / "libmill_remote.so"));
  CHECK(fs::exists(moved / "share" / "man" / "man1" / "mill.1"));
  CHECK(fs::exists(moved / "share" / "bash-completion" / "completions" / "mill"));
  CHECK(fs::exists(moved / "share" / "zsh" / "site-functions" / "_mill"));
  CHECK(fs::exists(moved / "share" / "fish" / "vendor_completions.d" / "mill.fish"));
  CHECK(fs::exists(moved / "share" / "doc" / "mill" / "docs" / "install.md"));

  const auto help = run_in(moved, {"--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Contains("schedule") && Contains("collect"));

  // DESIGN's example, planned for SLURM: the array script runs the moved binary.
  const std::map<std::string, std::string> env = {{"HF_HUB_CACHE", (dir / "hub").string()},
                                                  {"MILL_HOSTNAME", "testhost"},
                                                  {"MILL_DATA_DIR", (dir / "data").string()},
                                                  {"MILL_REMOTE_DIR", (dir / "remote").string()}};
  test::write_task_data(dir / "data", {"mmlu"});
  const auto out = (dir / "out").string();
  const auto cache = (dir / "cache").string();
  const auto dry_run = run_in(moved,
                              {"--output_dir", out, "--cache_dir", cache, "schedule",
                               "meta-llama/Meta-Llama-3-8B-Instruct", "mmlu", "--n_shots", "0,5", "--dry_run",
                               "--cluster", "local", "--skip_model_check"},
                              env);
  INFO(dry_run.err);
  CHECK(dry_run.exit_code == 0);
  CHECK_THAT(dry_run.out, Contains("114 job(s)") && Contains("dry run: nothing submitted") &&
                              Contains((moved / "bin" / "mill").string()));

  const auto sweep = run_in(moved, {"--output_dir", out, "--cache_dir", cache, "schedule", "mill-demo", "demo",
                                    "--n_shots", "0,1", "--local", "--limit", "4"},
                            env);
  INFO(sweep.err);
  REQUIRE(sweep.exit_code == 0);
  const auto collected = run_in(moved, {"--output_dir", out, "--cache_dir", cache, "collect", "--json"}, env);
  INFO(collected.err);
  CHECK(collected.exit_code == 0);
  const auto collect = nlohmann::json::parse(collected.out);
  CHECK(collect["results"] == 2);
  CHECK(collect["check"]["missing"].empty());

  // The remote plugin, loaded from lib/mill of the moved tree, evaluates against a server in this process.
  DemoBackend served(ModelSpec::parse("mill-demo"));
  test::ServerThread server(served, "mill-demo");
  const auto remote = run_in(moved, {"--output_dir", (dir / "remote-out").string(), "--cache_dir", cache, "eval",
                                     "api[base_url=" + server.base_url() + ",model=mill-demo]", "demo", "--limit",
                                     "4", "--quiet"},
                             env);
  INFO(remote.err);
  CHECK(remote.exit_code == 0);

  // The runtime plugin goes along when this build has one (a build without libtorch or a sanitized one has none).
  if (!test::runtime_plugin_path().empty()) {
    CHECK(fs::exists(moved / "lib" / "mill" / "libmill_runtime.so"));
    const auto model = (dir / "demo_model").string();
    REQUIRE(run_in(moved, {"demo-model", model}).exit_code == 0);
    const auto local = run_in(moved, {"--output_dir", (dir / "runtime-out").string(), "--cache_dir", cache, "eval",
                                      model, "demo", "--limit", "2", "--quiet"},
                              env);
    INFO(local.err);
    CHECK(local.exit_code == 0);
  }

  // A tree missing its plugin says which file it looked for, in the moved prefix.
  fs::remove(moved / "lib" / "mill" / "libmill_remote.so");
  const auto missing = run_in(moved, {"--output_dir", (dir / "missing-out").string(), "--cache_dir", cache, "eval",
                                      "api[base_url=" + server.base_url() + ",model=mill-demo]", "demo", "--quiet"},
                              env);
  CHECK(missing.exit_code != 0);
  CHECK_THAT(missing.err, Contains((moved / "lib" / "mill" / "libmill_remote.so").string()));
}

// The release tarball carries Debian's libcurl, which looks for /etc/ssl/certs/ca-certificates.crt; other hosts keep
// their CA bundle elsewhere, and CURL_CA_BUNDLE / SSL_CERT_FILE name it (docs/install.md).
TEST_CASE("CURL_CA_BUNDLE names the CA certificates that https:// servers are verified against", "[install][remote]") {
  test::TempDir dir;
  SilentListener listener;
  const auto bundle = (dir / "no-such-ca.pem").string();
  const auto spec = "api[base_url=https://127.0.0.1:" + std::to_string(listener.port()) + "/v1,model=m,max_retries=0]";
  const auto result = test::run_mill({"--output_dir", (dir / "out").string(), "eval", spec, "demo", "--quiet"},
                                     {{"CURL_CA_BUNDLE", bundle}});
  INFO(result.err);
  CHECK(result.exit_code != 0);
  CHECK_THAT(result.err, Contains(bundle));
}
