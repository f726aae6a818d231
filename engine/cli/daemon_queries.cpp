#include "engine/cli/daemon_queries.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "mxward/action_types.h"
#include "mxward/control_protocol.h"
#include "mxward/playbook_engine.h"
#include "mxward/version.h"

namespace mxward::cli {

namespace {

constexpr std::int64_t kMaxTop = 100;

nlohmann::json PlaybookJson(const PlaybookEngine& engine, std::size_t i, const Playbook& pb,
                            bool global_dry_run, std::size_t top, UnixMicros now) {
  const Trigger& tr = pb.trigger;
  nlohmann::json trigger = {{"type", TriggerTypeName(tr.type)}, {"threshold", tr.threshold}};
  if (tr.window_seconds > 0) {
    trigger["window_s"] = tr.window_seconds;
    trigger["window"] = FormatDurationSeconds(tr.window_seconds);
  }
  if (tr.type == TriggerType::kDistinct || tr.type == TriggerType::kNovel) {
    trigger["field"] = FieldName(tr.field.field);
  }
  if (tr.min_addresses > 0) trigger["min_addresses"] = tr.min_addresses;
  std::vector<std::string> events;
  for (int t = 0; t < kEventTypeCount; ++t) {
    if (pb.match.types[t]) events.emplace_back(EventTypeName(static_cast<EventType>(t)));
  }
  nlohmann::json actions = nlohmann::json::array();
  for (const ActionSpec& a : pb.actions) actions.push_back(a.type);
  // The mode actions are taken in: the playbook's own, unless the whole daemon runs dry.
  const std::string_view mode =
      global_dry_run ? std::string_view("dry-run") : PlaybookModeName(pb.mode);
  nlohmann::json building = nlohmann::json::array();
  for (const KeyStanding& k : engine.ClosestKeys(i, top, now)) {
    building.push_back(
        {{"key", k.key},
         {"count", k.count},
         {"threshold", k.threshold},
         {"last_seen", FormatRfc3339(k.last_seen)},
         {"last_seen_age_s", std::max<std::int64_t>(0, (now - k.last_seen) / kMicrosPerSecond)}});
  }
  return {{"name", pb.name},
          {"description", pb.description},
          {"severity", SeverityName(pb.severity)},
          {"key", pb.key_kind},
          {"events", events},
          {"trigger", std::move(trigger)},
          {"mode", mode},
          {"actions", std::move(actions)},
          {"keys_held", engine.window_keys(i)},
          {"building", std::move(building)}};
}

// This node's link and the log as it last read them: nodes, their cursors and how far behind
// the log's head each was at its last heartbeat.
nlohmann::json ClusterJson(const ClusterLink& link) {
  const ClusterLinkCounters& c = link.counters();
  const ClusterLink::View v = link.view();
  nlohmann::json j = {
      {"node", link.options().node},
      {"role", link.options().role == ClusterRole::kEnforcer ? "enforcer" : "full"},
      // The database that holds the log; mariadb is polled every poll_interval_ms.
      {"engine", ClusterEngineName(link.options().engine)},
      {"poll_interval_ms",
       link.options().engine == ClusterEngine::kMariadb ? link.options().poll_interval_ms : 0},
      {"connected", c.connected.load() == 1},
      {"cursor", c.cursor.load()},
      {"unpublished", c.unpublished.load()},
      {"published", c.published.load()},
      {"queued", c.queued.load()},
      // Received bans refused here (allowlisted; a port group this node does not define).
      {"refused", c.refused.load()},
      {"pruned", c.pruned.load()},
      // Shared windows (docs/cluster.md): this node's events out, the others' in, and who
      // opened the incidents its shared playbooks triggered.
      {"window_events",
       {{"published", c.window_events_published.load()},
        {"unpublished", c.window_events_unpublished.load()},
        {"received", c.window_events_received.load()},
        {"read_back", c.window_events_read_back.load()},
        {"claims_won", c.claims_won.load()},
        {"claims_lost", c.claims_lost.load()},
        {"claims_alone", c.claims_alone.load()}}},
      // Cluster-wide incidents: this node's published, waiting, and other nodes' requests
      // applied here.
      {"incidents",
       {{"published", c.incidents_published.load()},
        {"unpublished", c.incidents_unpublished.load()},
        {"requests_applied", c.incident_requests.load()}}},
  };
  if (v.read) {
    j["head"] = v.log.head;
    j["lag"] = std::max<std::int64_t>(0, v.log.head - c.cursor.load());
    j["log_rows"] = v.log.rows;
    nlohmann::json nodes = nlohmann::json::array();
    for (const ClusterNodeRow& n : v.log.nodes) {
      nodes.push_back({{"node", n.node},
                       {"role", n.role},
                       {"cursor", n.cursor},
                       {"lag", std::max<std::int64_t>(0, v.log.head - n.cursor)},
                       {"seen_ago_s", n.seen_ago_s},
                       {"up_s", n.up_s}});
    }
    j["nodes"] = std::move(nodes);
  }
  return j;
}

nlohmann::json StatusResponse(const nlohmann::json& request, const DaemonView& view,
                              UnixMicros now) {
  std::int64_t top = 5;
  if (auto it = request.find("top"); it != request.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0 ||
        it->get<std::int64_t>() > kMaxTop) {
      return ControlError(
          Status::InvalidArgument(fmt::format("'top' must be an integer from 0 to {}", kMaxTop)));
    }
    top = it->get<std::int64_t>();
  }
  const PlaybookEngine& engine = view.pipeline->engine();
  nlohmann::json playbooks = nlohmann::json::array();
  const std::vector<std::string> names = engine.playbook_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const Playbook* pb = engine.FindPlaybook(names[i]);
    if (!pb) continue;
    playbooks.push_back(
        PlaybookJson(engine, i, *pb, view.config->dry_run, static_cast<std::size_t>(top), now));
  }
  nlohmann::json inputs = nlohmann::json::array();
  for (const InputSpec& in : *view.inputs) {
    inputs.push_back({{"name", in.name}, {"address", in.Describe()}});
  }
  nlohmann::json executors = nlohmann::json::array();
  for (const ExecutorMode& e : *view.executors) {
    nlohmann::json j = {
        {"type", e.type}, {"section", e.section}, {"mode", e.live ? "live" : "dry-run"}};
    if (!e.live) j["reason"] = e.reason;
    executors.push_back(std::move(j));
  }
  nlohmann::json cluster = nullptr;
  if (view.cluster) cluster = ClusterJson(*view.cluster);
  nlohmann::json reload = nullptr;
  if (view.last_reload != nullptr && view.last_reload->at != 0) {
    reload = {{"at", FormatRfc3339(view.last_reload->at)},
              {"outcome", view.last_reload->outcome},
              {"message", view.last_reload->message},
              {"needs_restart", view.last_reload->needs_restart}};
  }
  return ControlOk(
      {{"version", kVersion},
       {"cluster", std::move(cluster)},
       {"last_reload", std::move(reload)},
       {"pid", static_cast<std::int64_t>(::getpid())},
       {"started", FormatRfc3339(view.started_at)},
       {"uptime_s", std::max<std::int64_t>(0, (now - view.started_at) / kMicrosPerSecond)},
       {"now", FormatRfc3339(now)},
       {"dry_run", view.config->dry_run},
       {"store", view.config->store_path},
       {"playbooks", std::move(playbooks)},
       {"inputs", std::move(inputs)},
       {"executors", std::move(executors)},
       {"policy_servers", view.policy_servers},
       {"allowlist", {{"static", view.allow_static}, {"runtime", view.allow_runtime}}}});
}

nlohmann::json PendingCounts(const DaemonView& view) {
  nlohmann::json events = nlohmann::json::object();
  for (const auto& [type, n] : view.pipeline->PendingCounts()) events[type] = n;
  return ControlOk({{"hour", view.pipeline->pending_hour()},
                    {"events", std::move(events)},
                    {"store", view.config->store_path}});
}

}  // namespace

std::vector<ExecutorMode> DescribeExecutors(
    const std::vector<std::unique_ptr<ActionExecutor>>& executors) {
  std::vector<ExecutorMode> out;
  for (const ActionTypeInfo& info : kActionTypes) {
    ExecutorMode m;
    m.type = std::string(info.type);
    m.section = std::string(info.section);
    m.reason = "dry-run: nothing configured to run it";
    // The dispatcher routes an action to the first executor that handles its type.
    for (const auto& e : executors) {
      if (!e->Handles(info.type)) continue;
      if (const auto* dry = dynamic_cast<const DryRunExecutor*>(e.get())) {
        m.reason = dry->Reason(info.type);
      } else {
        m.live = true;
        m.reason.clear();
      }
      break;
    }
    out.push_back(std::move(m));
  }
  return out;
}

bool IsDaemonQuery(const nlohmann::json& request) {
  if (!request.is_object()) return false;
  const auto op = request.find("op");
  return op != request.end() && op->is_string() && (*op == "status" || *op == "stats.pending");
}

nlohmann::json AnswerDaemonQuery(const nlohmann::json& request, const DaemonView& view,
                                 UnixMicros now) {
  try {
    if (request.value("op", "") == "status") return StatusResponse(request, view, now);
    return PendingCounts(view);
  } catch (const std::exception& e) {
    return ControlError(Status::Internal(e.what()));
  }
}

}  // namespace mxward::cli
