#include "engine/cli/policy_assembly.h"

#include <spdlog/spdlog.h>

namespace mxward::cli {

namespace {

bool DecidesSomething(std::string_view type) {
  AccountDecisionKind kind;
  return type == "ban" || ParseAccountDecisionKind(type, &kind);
}

ActionRequest RequestOf(const ActionRecord& a) {
  ActionRequest r;
  r.type = a.type;
  r.params = a.params;
  return r;
}

}  // namespace

std::size_t LoadDecisionsFromStore(IncidentStore* store, DecisionTable* table, UnixMicros now,
                                   std::int64_t lookback_seconds) {
  std::size_t loaded = 0;
  auto bans = store->ActiveBans(now);
  if (!bans.ok()) {
    spdlog::error("policy: cannot read the active bans: {}", bans.status().ToString());
  } else {
    for (const BanRecord& b : *bans) {
      IpPrefix prefix;
      if (!IpPrefix::Parse(b.prefix, &prefix) || !BanScopeCoversMail(b.ports)) continue;
      table->Ban(prefix, b.until, b.reason);
      ++loaded;
    }
  }
  auto suspensions = store->ActiveSuspensions();
  if (!suspensions.ok()) {
    spdlog::error("policy: cannot read the suspensions: {}", suspensions.status().ToString());
  } else {
    for (const SuspensionRecord& s : *suspensions) {
      AccountDecisionKind kind;
      if (!ParseAccountDecisionKind(s.kind, &kind) || (s.until != 0 && s.until <= now)) continue;
      table->SetAccount(s.user, kind, s.until, "suspended");
      ++loaded;
    }
  }
  IncidentQuery q;
  q.since = now - lookback_seconds * kMicrosPerSecond;
  q.limit = 100'000;
  auto incidents = store->ListIncidents(q);
  if (!incidents.ok()) {
    spdlog::error("policy: cannot read recent incidents: {}", incidents.status().ToString());
    return loaded;
  }
  for (const Incident& inc : *incidents) {
    if (inc.mode != PlaybookMode::kEnforce || inc.status == IncidentStatus::kResolved) continue;
    auto actions = store->ActionsForIncident(inc.id);
    if (!actions.ok()) continue;
    for (const ActionRecord& a : *actions) {
      if (a.revert || !DecidesSomething(a.type)) continue;
      // Pending: not run yet. dry_run with a reason: no executor is configured for the type (a
      // playbook's own dry-run has none). hold_queue leaves no row elsewhere once done.
      const bool unapplied = a.status == ActionStatus::kPending ||
                             (a.status == ActionStatus::kDryRun && !a.last_error.empty()) ||
                             (a.status == ActionStatus::kDone && a.type == "hold_queue");
      if (!unapplied) continue;
      if (table->Apply(RequestOf(a), /*revert=*/false, a.created_at, inc.playbook)) ++loaded;
    }
  }
  table->Expire(now);
  return loaded;
}

void ApplyQueuedActions(IncidentStore* store, const std::vector<std::int64_t>& action_ids,
                        DecisionTable* table, UnixMicros now) {
  for (std::int64_t id : action_ids) {
    auto a = store->GetAction(id);
    if (!a.ok()) continue;
    (void)table->Apply(RequestOf(*a), a->revert, now, a->incident_id == 0 ? "by hand" : "incident");
  }
}

}  // namespace mxward::cli
