// What the notification executors (webhook, mail, exec) share: finding the incident an action is
// about, describing it in one line, and the canonical JSON of an incident (the webhook "json"
// format and the stdin of exec). Internal to actions/.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/base/one_line.h"
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

// The incident link: url_template with "{id}" replaced by the incident id.
std::string IncidentLink(const std::string& url_template, std::int64_t id);

// The actions of an incident as a JSON array (id, type, status, revert, params).
nlohmann::json IncidentActionsJson(const std::vector<ActionRecord>& actions);

// The canonical incident document: source, incident_id, playbook, severity, key, trigger, counts,
// times (RFC 3339), evidence, actions, links ({"incident": url} when incident_url is set) and a
// one-line text. Pure: no I/O. Strings from logs may not be UTF-8: dump it with
// error_handler_t::replace.
nlohmann::json IncidentJson(const Incident& incident, const std::vector<ActionRecord>& actions,
                            const std::string& incident_url);

}  // namespace mxward
