// ArgvCommand: runs a program with an argument vector, never through a shell, with a timeout. The
// one way mxward starts a program: the exec action, doveadm follow-ups, postsuper.
//
// The program is started with posix_spawn (argv[0] must be an absolute path: no PATH search, so
// the environment cannot choose what runs) in a process group of its own, with default signal
// handling, no descriptor of mxward beyond 0-2, exactly the given environment, stdin from
// /dev/null or the given input, stdout and stderr captured (bounded). When the timeout passes, the
// whole group gets SIGTERM, then SIGKILL after kill_grace, so a script's own children die with it,
// and the outcome says it timed out. The run ends when the program exits: a grandchild that keeps
// the output pipe open cannot hold mxward. Safe to call from several threads.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "mxward/status.h"

namespace mxward {

struct ArgvCommand {
  std::vector<std::string> argv;  // argv[0]: absolute path of the program
  // The child's whole environment, "NAME=value"; PATH=/usr/sbin:/usr/bin:/sbin:/bin is added
  // when it has no PATH. Nothing is inherited from mxward.
  std::vector<std::string> env;
  std::string input;  // written to stdin, then closed
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds kill_grace{2000};  // between SIGTERM and SIGKILL at the timeout
  std::size_t max_output = 64 * 1024;          // per stream; the rest is discarded
  bool merge_stderr = false;                   // stderr into `out`, interleaved as written
};

struct ArgvOutcome {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that ended it, 0 if it exited
  bool timed_out = false;
  std::string out;
  std::string err;  // empty with merge_stderr
};

// Runs the command. An error Status only when it could not be started (InvalidArgument for a
// relative path, IoError for a missing program); a non-zero exit or a timeout is reported in
// ArgvOutcome.
Result<ArgvOutcome> RunArgvCommand(const ArgvCommand& command);

// Ok when the outcome is exit 0; otherwise an error naming the program and saying what happened
// (exit code and the first line of stderr, or timeout: Unavailable, so it is retried).
Status CheckArgvOutcome(const ArgvCommand& command, const ArgvOutcome& outcome);

}  // namespace mxward
