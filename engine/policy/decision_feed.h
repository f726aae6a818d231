// DecisionFeed: the IncidentSink the pipeline hands incidents to when policy servers run. It
// records in the DecisionTable what each incident's actions decide (a ban, a suspension, a hold)
// and then hands the incident, unchanged, to the next sink (the IncidentRecorder), so the store
// and the outbox still receive every incident.
//
// Why here: the decision is in force for the policy servers from the moment the engine opens the
// incident, on the same thread, before the dispatcher has run anything; a policy request that
// caused the incident (a Postfix request at DATA) is answered with it.
//
// Owned by the daemon; called on the pipeline's thread. Holds pointers to the table, the next
// sink and the clock, which must outlive it.
#pragma once

#include "engine/policy/decision_table.h"
#include "mxward/incident.h"
#include "mxward/time.h"

namespace mxward {

class DecisionFeed final : public IncidentSink {
 public:
  DecisionFeed(DecisionTable* table, IncidentSink* next, const Clock* clock)
      : table_(table), next_(next), clock_(clock) {}

  void OnIncident(Incident incident) override;

 private:
  DecisionTable* table_;
  IncidentSink* next_;
  const Clock* clock_;
};

}  // namespace mxward
