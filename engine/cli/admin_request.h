// What the state-changing admin commands (incidents ack/resolve, bans add/remove, accounts
// suspend/restore) share: send the request to the daemon's control socket when it answers,
// otherwise carry it out here (ExecuteControlRequest, then run the outbox once) and say so.
#pragma once

#include <chrono>
#include <memory>

#include <nlohmann/json.hpp>

#include "engine/cli/action_outcome.h"
#include "engine/cli/commands.h"
#include "mxward/allow_set.h"
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

// The compiled address allowlist: static_prefixes (the [allow] addresses) plus the store's
// runtime entries in force at `now` (`mxward allow`). What the daemon hands its engine,
// dispatcher and policy servers, and what the CLI's own outbox run refuses by.
Result<AllowSet> CompileAllowlist(const std::vector<IpPrefix>& static_prefixes,
                                  IncidentStore* store, UnixMicros now);

struct AdminOutcome {
  nlohmann::json result;  // the "result" object of the control response
  bool direct = false;    // no daemon: acted in this process (and ran the outbox once)
};

// Sends the request to the daemon when one answers on the control socket, naming the store this
// command means (CanonicalStorePath of [store] path / --db, and its StoreId when it exists), so a
// daemon serving another store refuses it; else carries it out on the store here and runs the
// outbox once. Throws CliExit on errors, with the exit code from ExitCodeFor.
AdminOutcome SendOrAct(const Config& config, const nlohmann::json& request);

// How long a write command waits for its outcome: --wait DURATION (default 5s), --no-wait (0).
// Throws CliExit for a --wait that is not a duration.
std::chrono::milliseconds OutcomeWait(const GlobalOptions& globals);

// Waits for the queued actions' outcome (up to --wait, default 5s; none with --no-wait; none
// needed when acting directly: the outbox already ran) and prints it, "ban 192.0.2.7 for 1h:
// done (action #7)" or a line per action (always, each with its label, when `what` is empty);
// throws CliExit with the code from
// ExitCodeForOutcomes (action_outcome.h) unless every action is done.
void ReportOutcome(const Config& config, const GlobalOptions& globals, const AdminOutcome& outcome,
                   const std::string& what);

}  // namespace mxward::cli
