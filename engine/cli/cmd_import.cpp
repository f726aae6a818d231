// INTERIM: registration only, until the issue that owns `mxward import` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddImportCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("import", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'import' is not built yet"); });
}

}  // namespace mxward::cli
