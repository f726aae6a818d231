// INTERIM: registration only, until the issue that owns `mxward stats` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddStatsCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("stats", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'stats' is not built yet"); });
}

}  // namespace mxward::cli
