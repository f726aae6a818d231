// INTERIM: registration only, until the issue that owns `mxward explain` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddExplainCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("explain", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'explain' is not built yet"); });
}

}  // namespace mxward::cli
