// The command line's own behaviour: errors that say what was meant, the version, colour decisions, shell
// completion scripts loaded in real shells, the man page rendered by man, and connection errors that name the
// server. Everything runs the built mill binary.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>

#include "mill/base/version.hpp"
#include "support.hpp"

using Catch::Matchers::Contains;
namespace test = mill::test;

namespace {

// A usage error: exit 2, nothing on stdout, one line on stderr.
std::string usage_error(const std::vector<std::string>& args) {
  const auto result = test::run_mill(args);
  INFO(result.err);
  CHECK(result.exit_code == 2);
  CHECK(result.out.empty());
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  CHECK_THAT(result.err, Catch::StartsWith("mill: error: "));
  return result.err;
}

bool installed(const std::string& program) {
  return test::run_program({"sh", "-c", "command -v " + program}).exit_code == 0;
}

// A loopback port nothing listens on: bound, then closed (the kernel does not hand it out again at once).
int closed_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  socklen_t length = sizeof address;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

// `mill ARGS` quoted for sh -c.
std::string shell_words(const std::vector<std::string>& args) {
  std::string out = std::string("'") + test::mill_binary() + "'";
  for (const auto& arg : args) out += " '" + arg + "'";
  return out;
}

}  // namespace

TEST_CASE("an unknown command names the closest commands", "[cli]") {
  CHECK_THAT(usage_error({"evl", "mill-demo", "demo"}),
             Contains("unknown command \"evl\"; did you mean eval?") && Contains("schedule, "));
  CHECK_THAT(usage_error({"--output_dir", "/tmp/x", "shedule"}), Contains("did you mean schedule?"));
  CHECK_THAT(usage_error({"frobnicate"}), Contains("unknown command \"frobnicate\" (commands: ") && !Contains("did you mean"));
  CHECK_THAT(usage_error({}), Contains("a command is required: schedule, ") && Contains("eval"));
}

TEST_CASE("an unknown option names the closest options of the command being parsed", "[cli]") {
  CHECK_THAT(usage_error({"eval", "mill-demo", "demo", "--nshots", "0"}),
             Contains("mill eval: unknown option \"--nshots\"; did you mean --n_shots?") &&
                 Contains("mill eval --help lists them"));
  CHECK_THAT(usage_error({"eval", "mill-demo", "demo", "--docs-per-bach", "4"}), Contains("did you mean --docs_per_batch?"));
  CHECK_THAT(usage_error({"schedule", "mill-demo", "demo", "--dry-rn"}),
             Contains("mill schedule: unknown option \"--dry-rn\"; did you mean --dry_run?"));
  CHECK_THAT(usage_error({"schedule", "mill-demo", "demo", "--minutes_per_evl=3"}),
             Contains("did you mean --minutes_per_eval?"));
  // A global option misspelled after the command is found among the global ones.
  CHECK_THAT(usage_error({"eval", "mill-demo", "demo", "--ouput_dir", "x"}), Contains("did you mean --output_dir?"));
  // A command's option given before the command: where it belongs.
  CHECK_THAT(usage_error({"--dry_run", "schedule", "mill-demo", "demo"}),
             Contains("unknown option \"--dry_run\": it is an option of mill schedule"));
}

TEST_CASE("lm-evaluation-harness spellings are answered with mill's", "[cli]") {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"eval", "mill-demo", "demo", "--num_fewshot", "5"}, "--num_fewshot\": mill uses --n_shots (a list: --n_shots 0,5)"},
      {{"schedule", "mill-demo", "demo", "--num-fewshot=5"}, "mill uses --n_shots"},
      {{"eval", "--model", "hf", "--model_args", "pretrained=org/m", "--tasks", "mmlu"},
       "mill takes model specs as positional arguments, NAME_OR_PATH[key=value,...], e.g. `mill eval "
       "'org/model[dtype=bfloat16]' TASKS`"},
      {{"eval", "--model_args", "pretrained=org/m"}, "lm-eval's --model hf --model_args pretrained=org/model"},
      {{"schedule", "--model", "hf"}, "`mill schedule 'org/model[dtype=bfloat16]',other/model TASKS`"},
      {{"eval", "mill-demo", "--tasks", "mmlu"}, "tasks are the positional argument after the model: `mill eval MODEL"},
      {{"schedule", "mill-demo", "--tasks", "mmlu"}, "(or --tasks_file FILE)"},
      {{"eval", "mill-demo", "demo", "--limit", "0.1"},
       "--limit \"0.1\": mill's --limit is a whole number of documents per task (e.g. --limit 100)"},
      {{"schedule", "mill-demo", "demo", "--limit=0.5"}, "--limit \"0.5\": mill's --limit is a whole number"},
      {{"eval", "mill-demo", "demo", "--batch_size", "8"}, "the batch size is a model argument in mill: 'org/model[batch_size=8]'"},
      {{"eval", "mill-demo", "demo", "--device", "cuda:0"}, "the device is a model argument in mill: 'org/model[device=cuda:0]'"},
      {{"eval", "mill-demo", "demo", "--output_path", "out"}, "mill writes into a results tree: --output_dir DIR"},
      {{"eval", "mill-demo", "demo", "--include_path", "t"}, "--extra_task_paths DIR[,DIR...]"},
      {{"eval", "mill-demo", "demo", "--apply_chat_template"}, "'org/model[use_chat_template=true]'"},
      {{"eval", "mill-demo", "demo", "--verbosity", "DEBUG"}, "mill uses --log_level"},
  };
  for (const auto& c : cases) {
    INFO(c.args.front() << " ... " << c.args.back());
    CHECK_THAT(usage_error(c.args), Contains(c.expected));
  }
  // Where mill has the option (collect --tasks), it is simply accepted.
  test::TempDir dir;
  const auto collect = test::run_mill({"--output_dir", (dir / "out").string(), "collect", "--tasks", "demo", "--no-check"});
  INFO(collect.err);
  CHECK_THAT(collect.err, !Contains("unknown option"));
}

TEST_CASE("mill --version, mill -V and mill version print the version", "[cli]") {
  const std::string expected = std::string("mill ") + mill::version() + "\n";
  for (const auto& args : std::vector<std::vector<std::string>>{{"--version"}, {"-V"}, {"version"}}) {
    const auto result = test::run_mill(args);
    INFO(args.front() << ": " << result.err);
    CHECK(result.exit_code == 0);
    CHECK(result.out == expected);
    CHECK(result.err.empty());
  }
}

TEST_CASE("colour only on a terminal that can show it", "[cli]") {
  if (!installed("script")) {
    WARN("script (bsdutils) is not installed; skipped");
    return;
  }
  test::TempDir dir;
  // The dry run's job table is coloured on a terminal; `script` gives mill a pseudo-terminal.
  const auto command = shell_words({"--output_dir", (dir / "out").string(), "schedule", "mill-demo", "demo",
                                    "--dry_run", "--local"});
  auto run_on_terminal = [&](const std::string& environment) {
    const auto result =
        test::run_program({"script", "-qec", "env -u NO_COLOR " + environment + " " + command, "/dev/null"});
    INFO(result.out << result.err);
    CHECK(result.exit_code == 0);
    CHECK_THAT(result.out, Contains("demo"));
    return result.out.find("\x1b[") != std::string::npos;
  };
  CHECK(run_on_terminal("TERM=xterm"));
  CHECK_FALSE(run_on_terminal("TERM=dumb"));
  CHECK_FALSE(run_on_terminal("TERM=xterm NO_COLOR=1"));
  CHECK_FALSE(run_on_terminal("-u TERM"));
  // Not a terminal: never.
  const auto piped = test::run_mill({"--output_dir", (dir / "out").string(), "schedule", "mill-demo", "demo",
                                     "--dry_run", "--local"},
                                    {{"TERM", "xterm"}});
  CHECK(piped.exit_code == 0);
  CHECK(piped.out.find("\x1b[") == std::string::npos);
}

TEST_CASE("an API server that is not running is named, with host, port and curl's reason", "[cli][remote]") {
  test::TempDir dir;
  const int port = closed_loopback_port();
  // demo needs log-likelihoods: the capability probe is what fails first, and it must say why.
  const auto result = test::run_mill(
      {"--output_dir", (dir / "out").string(), "eval",
       "api[base_url=http://127.0.0.1:" + std::to_string(port) + "/v1,model=m,max_retries=0]", "demo", "--quiet"});
  INFO(result.err);
  CHECK(result.exit_code == 4);
  CHECK_THAT(result.err, Contains("cannot connect to 127.0.0.1 port " + std::to_string(port)) &&
                             Contains("Couldn't connect to server") &&
                             Contains("GET http://127.0.0.1:" + std::to_string(port) + "/v1/models"));
  CHECK_THAT(result.err, !Contains("supports only"));
}

TEST_CASE("bash loads the completion script and completes commands, options and task names", "[cli][completion]") {
  if (!installed("bash")) {
    WARN("bash is not installed; skipped");
    return;
  }
  // Each line: the words so far (the last one being completed), then what _mill offered.
  const std::string script = std::string("source <('") + test::mill_binary() + "' completion bash) || exit 1\n" +
                             R"(complete -p mill
offer() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _mill; echo "$* => ${COMPREPLY[*]}"; }
offer mill ev
offer mill eval --n_
offer mill eval mill-demo mmlu_pro_m
offer mill eval mill-demo demo,mmlu_pro_ec
offer mill --log_level d
offer mill --log_level = w
offer mill schedule --dry
offer mill --output_dir /tmp sch
offer mill completion z
offer mill schedule --dry_run --n_shots 0 mill-demo de
offer mill eval --output_dir = /tmp mill-demo mmlu_pro_ph
)";
  const auto result = test::run_program({"bash", "--norc", "--noprofile", "-c", script});
  INFO(result.out << result.err);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("complete -F _mill mill"));
  CHECK_THAT(result.out, Contains("mill ev => eval\n"));
  CHECK_THAT(result.out, Contains("mill eval --n_ => --n_shots\n"));
  CHECK_THAT(result.out, Contains("mill eval mill-demo mmlu_pro_m => mmlu_pro_math\n"));
  CHECK_THAT(result.out, Contains("demo,mmlu_pro_ec => demo,mmlu_pro_economics\n"));
  CHECK_THAT(result.out, Contains("mill --log_level d => debug\n"));
  CHECK_THAT(result.out, Contains("mill --log_level = w => warn\n"));
  CHECK_THAT(result.out, Contains("mill schedule --dry => --dry_run --dry-run\n"));
  CHECK_THAT(result.out, Contains("mill --output_dir /tmp sch => schedule\n"));
  CHECK_THAT(result.out, Contains("mill completion z => zsh\n"));
  // Flags take no value, options one: the positionals are counted right after both.
  CHECK_THAT(result.out, Contains("mill schedule --dry_run --n_shots 0 mill-demo de => demo\n"));
  CHECK_THAT(result.out, Contains("mill eval --output_dir = /tmp mill-demo mmlu_pro_ph => mmlu_pro_philosophy mmlu_pro_physics\n"));
}

TEST_CASE("zsh loads the completion script after compinit", "[cli][completion]") {
  if (!installed("zsh")) {
    WARN("zsh is not installed (scripts/setup.sh installs it); skipped");
    return;
  }
  test::TempDir home;
  const std::string script = std::string("autoload -U compinit && compinit -u -D || exit 1\n") + "source <('" +
                             test::mill_binary() + "' completion zsh) || exit 1\n" +
                             R"(print -r -- "mill => $_comps[mill]"
whence -w _mill _mill_tasks
)";
  const auto result = test::run_program({"zsh", "-f", "-c", script}, {{"HOME", home.path().string()}});
  INFO(result.out << result.err);
  CHECK(result.exit_code == 0);
  CHECK(result.err.empty());
  CHECK_THAT(result.out, Contains("mill => _mill\n") && Contains("_mill: function") && Contains("_mill_tasks: function"));
}

TEST_CASE("fish loads the completion script and completes commands, options and task names", "[cli][completion]") {
  if (!installed("fish")) {
    WARN("fish is not installed (scripts/setup.sh installs it); skipped");
    return;
  }
  test::TempDir home;
  const std::string script = std::string("'") + test::mill_binary() + "' completion fish | source; or exit 1\n" +
                             R"(complete -C 'mill ev'
complete -C 'mill eval --n_'
complete -C 'mill eval mill-demo demo,mmlu_pro_ec'
complete -C 'mill --log_level d'
)";
  const auto result = test::run_program({"fish", "--no-config", "-c", script},
                                        {{"HOME", home.path().string()},
                                         {"XDG_CONFIG_HOME", (home / "config").string()},
                                         {"XDG_DATA_HOME", (home / "data").string()}});
  INFO(result.out << result.err);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("eval\tEvaluate one model"));
  CHECK_THAT(result.out, Contains("--n_shots\tFew-shot counts"));
  CHECK_THAT(result.out, Contains("demo,mmlu_pro_economics\n"));
  CHECK_THAT(result.out, Contains("debug\t"));
}

TEST_CASE("an unknown shell for completion is refused", "[cli][completion]") {
  const auto result = test::run_mill({"completion", "tcsh"});
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("\"tcsh\" is not a shell mill completes for (expected bash, zsh or fish)"));
}

TEST_CASE("the man page renders with every command and its options", "[cli][man]") {
  test::TempDir dir;
  const auto page = test::run_mill({"man"});
  REQUIRE(page.exit_code == 0);
  test::write_text(dir / "mill.1", page.out);
  if (!installed("groff")) {
    WARN("groff is not installed; rendering skipped");
    return;
  }
  // groff's warnings (-ww) catch malformed requests and escapes.
  const auto checked = test::run_program({"groff", "-man", "-Tutf8", "-ww", "-z", (dir / "mill.1").string()});
  CHECK(checked.exit_code == 0);
  CHECK(checked.err.empty());
  const bool have_man = installed("man");
  const auto rendered =
      have_man ? test::run_program({"man", "-l", (dir / "mill.1").string()},
                                   {{"MANPAGER", "cat"}, {"PAGER", "cat"}, {"MANWIDTH", "200"}, {"LC_ALL", "C"}})
               : test::run_program({"groff", "-man", "-Tascii", "-P-cbou", (dir / "mill.1").string()});
  INFO(rendered.err);
  REQUIRE(rendered.exit_code == 0);
  for (const char* command : {"schedule", "tasks", "eval", "collect", "status", "demo-model", "serve", "migrate",
                              "version", "completion", "man"}) {
    INFO(command);
    CHECK_THAT(rendered.out, Contains(std::string("mill ") + command + " [OPTIONS]"));
  }
  CHECK_THAT(rendered.out, Contains("--n_shots, --n-shots") && Contains("--output_dir, --output-dir") &&
                               Contains("EXIT STATUS") && Contains("NO_COLOR") &&
                               Contains(std::string("mill ") + mill::version()));
  CHECK_THAT(rendered.out, !Contains("--continues"));  // internal options stay out
}
