// INTERIM: registration only, until the issue that owns `mxward accounts` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddAccountsCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("accounts", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'accounts' is not built yet"); });
}

}  // namespace mxward::cli
