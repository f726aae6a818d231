#include "actions/common/incident_text.h"

#include <fmt/format.h>

namespace mxward {

std::string IncidentSummaryLine(const Incident& incident) {
  return OneLine(fmt::format("mxward: {} ({}): {} {}: {}", incident.playbook,
                             SeverityName(incident.severity), incident.key_kind, incident.key,
                             incident.trigger));
}

Result<std::pair<Incident, std::vector<ActionRecord>>> LoadIncidentForAction(
    const ActionRecord& action, const std::function<Result<IncidentStore*>()>& store) {
  std::int64_t id = action.incident_id;
  if (id == 0) {
    if (auto it = action.params.find("incident_id");
        it != action.params.end() && it->is_number_integer()) {
      id = it->get<std::int64_t>();
    }
  }
  if (id == 0) {
    return Status::InvalidArgument(
        fmt::format("{} action #{} is about no incident (no incident_id)", action.type, action.id));
  }
  auto s = store();
  if (!s.ok()) return Status::Unavailable(s.status().message());
  auto incident = (*s)->GetIncident(id);
  if (!incident.ok()) {
    if (incident.status().code() == Status::Code::kNotFound) return incident.status();
    return Status::Unavailable(incident.status().message());
  }
  auto actions = (*s)->ActionsForIncident(id);
  if (!actions.ok()) return Status::Unavailable(actions.status().message());
  return std::make_pair(std::move(*incident), std::move(*actions));
}

std::string IncidentLink(const std::string& url_template, std::int64_t id) {
  std::string out = url_template;
  const auto at = out.find("{id}");
  if (at != std::string::npos) out.replace(at, 4, std::to_string(id));
  return out;
}

nlohmann::json IncidentActionsJson(const std::vector<ActionRecord>& actions) {
  using nlohmann::json;
  json out = json::array();
  for (const ActionRecord& a : actions) {
    out.push_back({{"id", a.id},
                   {"type", a.type},
                   {"status", ActionStatusName(a.status)},
                   {"revert", a.revert},
                   {"params", a.params}});
  }
  return out;
}

nlohmann::json IncidentJson(const Incident& incident, const std::vector<ActionRecord>& actions,
                            const std::string& incident_url) {
  using nlohmann::json;
  const std::string summary = IncidentSummaryLine(incident);
  const std::string link = incident_url.empty() ? "" : IncidentLink(incident_url, incident.id);
  json body;
  json evidence = json::array();
  for (const EvidenceLine& e : incident.evidence) {
    evidence.push_back({{"time", FormatRfc3339(e.time)}, {"text", e.text}});
  }
  body = {{"source", "mxward"},
          {"incident_id", incident.id},
          {"playbook", incident.playbook},
          {"description", incident.description},
          {"severity", SeverityName(incident.severity)},
          {"mode", PlaybookModeName(incident.mode)},
          {"key_kind", incident.key_kind},
          {"key", incident.key},
          {"trigger", incident.trigger},
          {"count", incident.count},
          {"window_seconds", incident.window_seconds},
          {"first_seen", FormatRfc3339(incident.first_seen)},
          {"last_seen", FormatRfc3339(incident.last_seen)},
          {"status", IncidentStatusName(incident.status)},
          {"evidence", std::move(evidence)},
          {"actions", IncidentActionsJson(actions)},
          {"links", link.empty() ? json::object() : json{{"incident", link}}},
          {"text", summary}};
  return body;
}

}  // namespace mxward
