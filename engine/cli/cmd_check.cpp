// INTERIM: registration only, until the issue that owns `mxward check` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddCheckCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("check", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'check' is not built yet"); });
}

}  // namespace mxward::cli
