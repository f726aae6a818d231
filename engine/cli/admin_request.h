// What the state-changing admin commands (incidents ack/resolve, bans add/remove, accounts
// suspend/restore) share: send the request to the daemon's control socket when it answers,
// otherwise carry it out here (ExecuteControlRequest, then run the outbox once) and say so.
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "engine/cli/commands.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"

namespace mxward::cli {

// Exit code for a failed Status: not found 1, invalid argument 2, anything else 3.
int ExitCodeFor(const Status& status);
[[noreturn]] void ExitWith(const Status& status);

// How a command uses the store. kRead opens it read-only and never creates it: a command that only
// shows something must not leave a root-owned store behind that the daemon, running as its own
// user, then cannot write. kWrite creates a missing store; created by root, the new files are
// given to the owner of the store's directory (the package's /var/lib/mxward is mxward's).
enum class StoreUse { kRead, kWrite };
std::unique_ptr<IncidentStore> OpenStoreOrExit(const Config& config,
                                               StoreUse use = StoreUse::kWrite);

struct AdminOutcome {
  nlohmann::json result;              // the "result" object of the control response
  bool direct = false;                // no daemon: acted in this process
  std::vector<ActionRecord> actions;  // direct only: the queued actions after running them
};

// Throws CliExit on errors, with the exit code from ExitCodeFor.
AdminOutcome SendOrAct(const Config& config, const nlohmann::json& request);

// Prints what happened ("queued in the daemon as action [7]", or one line per action run here)
// and throws CliExit(kExitRuntime) when an action run here did not take effect.
void ReportOutcome(const AdminOutcome& outcome, const std::string& what);

// One line per action for people: "ban 192.0.2.7: done", "ban 192.0.2.7: failed: <error>".
std::string DescribeAction(const ActionRecord& a);

}  // namespace mxward::cli
