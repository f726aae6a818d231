// mxward: the executable. Parses the command line and runs one subcommand; all logic lives in the
// libraries.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "engine/cli/commands.h"
#include "mxward/version.h"

namespace {

// systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to our stderr;
// if stderr is still that stream, the journal is where our lines go.
bool StderrIsTheJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  unsigned long long dev = 0, ino = 0;
  if (stream == nullptr || std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mxward::cli;
  // Under systemd every line goes to the journal with its own priority (spdlog's systemd sink), so
  // `journalctl -u mxward -p warning` shows the warnings and errors alone; elsewhere stderr.
  // (spdlog's own default logger writes to stdout, which is the commands' result: `mxward
  // incidents list --json | jq` must never read a log line.)
  if (StderrIsTheJournal()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "mxward", std::make_shared<spdlog::sinks::systemd_sink_mt>("mxward")));
  } else {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "mxward", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  }
  CLI::App app{"mxward: abuse response for self-hosted mail servers", "mxward"};
  app.set_version_flag("--version", std::string("mxward ") + mxward::kVersion);
  app.require_subcommand(1);
  app.fallthrough();  // global options are accepted after the subcommand too

  GlobalOptions globals;
  app.add_option("--config", globals.config_path, "mxward.toml to read")
      ->capture_default_str()
      ->each([&](const std::string&) { globals.config_given = true; });
  app.add_option("--db", globals.db_path, "SQLite state file (overrides [store] path)");
  // One directory per --rules, so `--rules DIR FILE` never reads FILE as a second directory.
  app.add_option("--rules", globals.rule_dirs,
                 "playbook directory, repeatable (overrides [rules] dirs)")
      ->allow_extra_args(false);
  app.add_option("--socket", globals.control_socket,
                 "daemon control socket (overrides [control] socket)");
  app.add_option("--wait", globals.wait,
                 "write commands: how long to wait for the action's outcome (default 5s)");
  app.add_flag("--no-wait", globals.no_wait, "write commands: do not wait for the outcome");

  AddServeCommand(app, globals);
  AddReplayCommand(app, globals);
  AddExplainCommand(app, globals);
  AddCheckCommand(app, globals);
  AddIncidentsCommand(app, globals);
  AddBansCommand(app, globals);
  AddAllowCommand(app, globals);
  AddAccountsCommand(app, globals);
  AddStatsCommand(app, globals);
  AddImportCommand(app, globals);
  AddLearnCommand(app, globals);
  AddStatusCommand(app, globals);
  AddActionsCommand(app, globals);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "mxward: %s (see mxward --help)\n", e.what());
    return kExitUsage;
  } catch (const CliExit& e) {
    if (e.what()[0] != '\0') std::fprintf(stderr, "mxward: %s\n", e.what());
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mxward: %s\n", e.what());
    return kExitRuntime;
  }
  return 0;
}
