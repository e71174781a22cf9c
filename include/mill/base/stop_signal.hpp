#pragma once
// How a running worker is asked to stop, and how it says to resume. SIGUSR1 (SLURM's pre-walltime signal),
// SIGTERM (scancel, preemption, the time limit) and SIGINT (Ctrl-C) set one flag: the current batch finishes and
// is journaled, the worker writes its status and returns. The exit code tells them apart: 75 after SIGUSR1/SIGTERM
// (resumable; requeue.hpp decides on SLURM), 130 after SIGINT (128 + SIGINT, what shells report for Ctrl-C). A
// second SIGINT ends the process at once, also with 130: journal lines are appended and fsynced batch by batch and
// every other file is replaced atomically, so nothing is damaged; the rerun evaluates the batch in flight again.
// docs/eval.md, "Interruption".
#include <atomic>
#include <string>
#include <vector>

#include "mill/base/error.hpp"

namespace mill {

// Installs the SIGUSR1, SIGTERM and SIGINT handlers that set the returned flag (idempotent).
const std::atomic<bool>& install_stop_signal_handlers();

// The signal that set that flag, 0 before any. Once several arrived, SIGTERM wins (the job is being ended: no
// requeue), then SIGINT (the user wants out: no requeue either), then SIGUSR1.
int stop_signal();

// 130 after SIGINT, else 75 (ExitCode::preempted).
int stop_exit_code(int signal);
inline ExitCode interrupted_exit_code() { return static_cast<ExitCode>(130); }  // 128 + SIGINT

// This process's argv (from /proc/self/cmdline).
std::vector<std::string> own_command_line();
// The same, as words for a POSIX shell: what a user types to run this command again (and so to resume it).
std::string own_command_text();

}  // namespace mill
