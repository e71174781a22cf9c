#include "mill/base/stop_signal.hpp"

#include <unistd.h>

#include <csignal>
#include <fstream>

#include "mill/base/progress.hpp"
#include "mill/base/text.hpp"
#include "mill/base/shell.hpp"

namespace mill {

namespace {

std::atomic<bool> g_stop_requested{false};
std::atomic<int> g_stop_signal{0};
std::atomic<int> g_interrupts{0};
// Written by the handler on a second SIGINT; built before the handlers are installed (a handler may not allocate).
std::string g_exit_now_message;

int precedence(int signal_number) {
  switch (signal_number) {
    case SIGTERM: return 3;
    case SIGINT: return 2;
    case SIGUSR1: return 1;
    default: return 0;
  }
}

void write_all(const char* text, std::size_t size) {
  while (size > 0) {
    const auto written = ::write(STDERR_FILENO, text, size);
    if (written <= 0) return;
    text += written;
    size -= static_cast<std::size_t>(written);
  }
}

extern "C" void on_stop_signal(int signal_number) {
  if (signal_number == SIGINT && g_interrupts.fetch_add(1) >= 1) {
    // The live line (if shown) is cleared; otherwise the message starts below the terminal's "^C".
    if (progress_line_visible()) {
      write_all("\r\x1b[K", 4);
    } else {
      write_all("\n", 1);
    }
    write_all(g_exit_now_message.data(), g_exit_now_message.size());
    ::_exit(130);
  }
  int current = g_stop_signal.load();
  while (precedence(signal_number) > precedence(current) && !g_stop_signal.compare_exchange_weak(current, signal_number)) {
  }
  g_stop_requested.store(true);
}

}  // namespace

const std::atomic<bool>& install_stop_signal_handlers() {
  static bool installed = false;
  if (!installed) {
    g_exit_now_message = "mill: interrupted again: exiting now; every finished batch is journaled; resume with: " +
                         own_command_text() + "\n";
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGUSR1, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::sigaction(SIGINT, &action, nullptr);
    installed = true;
  }
  return g_stop_requested;
}

int stop_signal() { return g_stop_signal.load(); }

int stop_exit_code(int signal_number) {
  return signal_number == SIGINT ? static_cast<int>(interrupted_exit_code()) : static_cast<int>(ExitCode::preempted);
}

std::vector<std::string> own_command_line() {
  std::vector<std::string> argv;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string arg;
  while (std::getline(in, arg, '\0')) argv.push_back(arg);
  return argv;
}

std::string own_command_text() {
  std::vector<std::string> words;
  for (const auto& word : own_command_line()) words.push_back(shell_word(word));
  return one_line(join(words, " "));
}

}  // namespace mill
