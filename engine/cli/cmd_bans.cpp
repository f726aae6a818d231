// INTERIM: registration only, until the issue that owns `mxward bans` lands its implementation.
#include "commands.h"

namespace mxward::cli {

void AddBansCommand(CLI::App& app, GlobalOptions& /*globals*/) {
  CLI::App* cmd = app.add_subcommand("bans", "(not built yet)");
  cmd->allow_extras();
  cmd->callback([] { throw CliExit(kExitRuntime, "'bans' is not built yet"); });
}

}  // namespace mxward::cli
