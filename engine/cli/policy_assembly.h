// Joins the policy servers (engine/policy/) to the store for `mxward serve`: what the decision
// table starts from, and what the admin's control requests change in it. The policy floor never
// reads the store itself; these run on the daemon's io thread, never on a request's path.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/policy/decision_table.h"
#include "mxward/incident_store.h"
#include "mxward/time.h"

namespace mxward::cli {

// Fills the table with what is in force according to the store: its active bans and suspensions
// (what the executors applied), plus the decisions of incidents of the last `lookback_seconds`
// whose actions no executor ran (pending in the outbox, or recorded dry-run because no section
// configures their type: the policy servers still enforce those), each until its own expiry
// counted from when it was recorded. Returns how many decisions were loaded; errors are logged.
std::size_t LoadDecisionsFromStore(IncidentStore* store, DecisionTable* table, UnixMicros now,
                                   std::int64_t lookback_seconds = 7 * 86400);

// After a control request: applies the outbox rows it queued (bans.add/remove,
// accounts.suspend/restore, incidents.resolve with revert) to the table.
void ApplyQueuedActions(IncidentStore* store, const std::vector<std::int64_t>& action_ids,
                        DecisionTable* table, UnixMicros now);

}  // namespace mxward::cli
