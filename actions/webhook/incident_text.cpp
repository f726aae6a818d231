#include "incident_text.h"

#include <fmt/format.h>

namespace mxward {

std::string IncidentSummaryLine(const Incident& incident) {
  return OneLine(fmt::format("mxward: {} ({}): {} {}: {}", incident.playbook,
                             SeverityName(incident.severity), incident.key_kind, incident.key,
                             incident.trigger));
}

std::string OneLine(std::string_view text, std::size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (char c : text) {
    if (out.size() >= max) break;
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return out;
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

}  // namespace mxward
