// The mxward command line: one Add*Command per subcommand, each in its own cmd_<name>.cpp.
//
// Subcommands report failure by throwing CliExit(code) after printing a one-line message to
// stderr; main() turns it into the exit status. Exit codes: 0 ok, 1 a check or lookup failed
// (errors in playbooks, no such incident), 2 usage error (unknown flag, missing file, a --db of
// another store than the running daemon's), 3 runtime failure (database unavailable, daemon
// unreachable); write commands add 4-7 for an action's outcome (action_outcome.h).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "mxward/config.h"

namespace mxward::cli {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRuntime = 3;

struct CliExit : std::runtime_error {
  explicit CliExit(int code, const std::string& message = "")
      : std::runtime_error(message), code(code) {}
  int code;
};

// Options every subcommand accepts, before or after the subcommand name.
struct GlobalOptions {
  std::string config_path = "/etc/mxward/mxward.toml";
  bool config_given = false;           // --config was on the command line
  std::string db_path;                 // --db: overrides [store] path
  std::vector<std::string> rule_dirs;  // --rules: overrides [rules] dirs
  std::string control_socket;          // --socket: overrides [control] socket
  std::string wait;                    // --wait: how long write commands wait for the outcome
  bool no_wait = false;                // --no-wait: report what is queued and return
};

// The config the globals name: the --config file (an error if given and missing), else the
// default path if it exists, else the embedded defaults; then --db and --rules applied. Prints
// diagnostics and throws CliExit on errors.
Config LoadEffectiveConfig(const GlobalOptions& globals);

void AddServeCommand(CLI::App& app, GlobalOptions& globals);
void AddReplayCommand(CLI::App& app, GlobalOptions& globals);
void AddExplainCommand(CLI::App& app, GlobalOptions& globals);
void AddCheckCommand(CLI::App& app, GlobalOptions& globals);
void AddIncidentsCommand(CLI::App& app, GlobalOptions& globals);
void AddBansCommand(CLI::App& app, GlobalOptions& globals);
void AddAllowCommand(CLI::App& app, GlobalOptions& globals);
void AddAccountsCommand(CLI::App& app, GlobalOptions& globals);
void AddStatsCommand(CLI::App& app, GlobalOptions& globals);
void AddImportCommand(CLI::App& app, GlobalOptions& globals);
void AddLearnCommand(CLI::App& app, GlobalOptions& globals);
void AddStatusCommand(CLI::App& app, GlobalOptions& globals);
void AddActionsCommand(CLI::App& app, GlobalOptions& globals);

}  // namespace mxward::cli
