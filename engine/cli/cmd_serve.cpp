// INTERIM: registration only, until the issue that owns `mxward serve` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddServeCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("serve", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'serve' is not built yet"); });
}

}  // namespace mxward::cli
