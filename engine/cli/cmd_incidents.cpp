// INTERIM: registration only, until the issue that owns `mxward incidents` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddIncidentsCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("incidents", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'incidents' is not built yet"); });
}

}  // namespace mxward::cli
