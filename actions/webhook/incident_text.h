// What the notification executors (webhook, mail, exec) share: finding the incident an action is
// about and describing it in one line. Internal to actions/.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mxward/incident.h"
#include "mxward/incident_store.h"
#include "mxward/status.h"

namespace mxward {

// "mxward: <playbook> (<severity>): <key_kind> <key>: <trigger>"
std::string IncidentSummaryLine(const Incident& incident);

// The incident of action.incident_id, or params.incident_id for an action queued by hand, with
// its evidence and actions. A missing incident is permanent (InvalidArgument / NotFound); a store
// that cannot be read is transient (Unavailable).
Result<std::pair<Incident, std::vector<ActionRecord>>> LoadIncidentForAction(
    const ActionRecord& action, const std::function<Result<IncidentStore*>()>& store);

// Text safe for one header line or environment value: control characters become spaces, at
// most max bytes.
std::string OneLine(std::string_view text, std::size_t max = 900);

}  // namespace mxward
