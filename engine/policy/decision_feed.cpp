#include "engine/policy/decision_feed.h"

#include <utility>

namespace mxward {

void DecisionFeed::OnIncident(Incident incident) {
  if (incident.mode == PlaybookMode::kEnforce) {
    const UnixMicros now = clock_->Now();
    for (const ActionRequest& action : incident.actions) {
      (void)table_->Apply(action, /*revert=*/false, now, incident.playbook);
    }
  }
  next_->OnIncident(std::move(incident));
}

}  // namespace mxward
