// ArgvCommand: runs a program with an argument vector, never through a shell, with a timeout.
//
// The program is started with posix_spawn (argv[0] must be an absolute path: no PATH search, so
// the environment cannot choose what runs), stdin from /dev/null or the given input, stdout and
// stderr captured (bounded). When the timeout passes, the child gets SIGTERM, then SIGKILL after
// a short grace period, and the result says it timed out. Safe to call from several threads.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "mxward/status.h"

namespace mxward {

struct ArgvCommand {
  std::vector<std::string> argv;  // argv[0]: absolute path of the program
  std::vector<std::string> env;   // "NAME=value"; empty: a minimal PATH-only env
  std::string input;              // written to stdin, then closed
  std::chrono::milliseconds timeout{10000};
  std::size_t max_output = 64 * 1024;  // per stream; the rest is discarded
};

struct ArgvOutcome {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that ended it, 0 if it exited
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs the command. An error Status only when it could not be started (IoError for a missing
// program); a non-zero exit or a timeout is reported in ArgvOutcome.
Result<ArgvOutcome> RunArgvCommand(const ArgvCommand& command);

// Ok when the outcome is exit 0; otherwise an error naming the program and saying what happened
// (exit code and the first line of stderr, or timeout: Unavailable, so it is retried).
Status CheckArgvOutcome(const ArgvCommand& command, const ArgvOutcome& outcome);

}  // namespace mxward
