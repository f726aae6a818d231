// What became of the actions a write command queued: the CLI waits, bounded, until each has
// settled in the outbox (done, dry-run, refused, failed) and says so, with the exit code that
// tells a script the same thing. Reads the store only; the daemon (or RunDueOnce without one)
// is what settles the actions.
//
// Exit codes (the highest applies when a command queued several actions): 0 every action done,
// 4 dry-run (nothing applied, by configuration), 5 still pending when the wait ended, 6 refused
// (an allowlist, a valve), 7 failed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "mxward/incident.h"
#include "mxward/incident_store.h"

namespace mxward::cli {

inline constexpr int kExitDryRun = 4;
inline constexpr int kExitPending = 5;
inline constexpr int kExitRefused = 6;
inline constexpr int kExitActionFailed = 7;

// How long a write command waits for its actions: --wait DURATION (default 5s), --no-wait (0).
inline constexpr std::chrono::milliseconds kDefaultOutcomeWait = std::chrono::seconds(5);

// Re-reads the actions from the store until none is pending or `wait` has passed, polling with a
// back-off from 5 ms to 200 ms (a store read each time; no fixed sleep). Returns them in the
// order of ids. NotFound when an id is not in this store.
Result<std::vector<ActionRecord>> WaitForOutcomes(IncidentStore* store,
                                                  const std::vector<std::int64_t>& ids,
                                                  std::chrono::milliseconds wait);

// "done", "dry-run, not applied: no [postfixadmin] section", "refused: 127.0.0.1 is allowlisted
// (...)", "failed after 3 attempts: ...", "still pending (attempt 1 failed: ...; next try in 4s)".
std::string OutcomeText(const ActionRecord& a, UnixMicros now);
// "#7 ban 192.0.2.7" / "#8 undo suspend alice@example.org".
std::string ActionLabel(const ActionRecord& a);
// 0 when every action is done (or there are none), else the highest exit code above.
int ExitCodeForOutcomes(const std::vector<ActionRecord>& actions);

}  // namespace mxward::cli
