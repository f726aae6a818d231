// INTERIM: registration only, until the issue that owns `mxward replay` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddReplayCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("replay", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'replay' is not built yet"); });
}

}  // namespace mxward::cli
