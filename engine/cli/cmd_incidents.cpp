// `mxward incidents list|show|ack|resolve`: review what the playbooks opened, and close it.
// Reads go to the store directly (WAL: never blocks the daemon); ack and resolve go through the
// daemon's control socket when it runs. The --json shapes are documented in docs/cli.md and are
// a stable interface: add fields, never rename or remove them.
//
// In a cluster (docs/cluster.md "Cluster-wide incidents"), `list --cluster` reads every node's
// published incidents from the cluster's PostgreSQL, and show/ack/resolve take NODE:ID for
// another node's incident: show reads its published copy, ack and resolve write a request that
// the owning node's link applies to its own store (this command waits for the outcome, --wait).
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/base/parse_number.h"
#include "engine/cli/action_outcome.h"
#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"
#include "engine/cluster/cluster_incidents.h"
#include "engine/cluster/cluster_options.h"
#include "engine/cluster/decision_log.h"
#include "mxward/incident_store.h"

namespace mxward::cli {
namespace {

Color StatusColor(IncidentStatus s) {
  switch (s) {
    case IncidentStatus::kOpen:
      return Color::kRed;
    case IncidentStatus::kAcknowledged:
      return Color::kYellow;
    case IncidentStatus::kResolved:
      return Color::kGreen;
  }
  return Color::kNone;
}

Color SeverityColor(Severity s) {
  return s >= Severity::kHigh     ? Color::kRed
         : s == Severity::kMedium ? Color::kYellow
                                  : Color::kNone;
}

Color ActionColor(ActionStatus s) {
  switch (s) {
    case ActionStatus::kDone:
      return Color::kGreen;
    case ActionStatus::kFailed:
    case ActionStatus::kRefused:
      return Color::kRed;
    case ActionStatus::kPending:
      return Color::kYellow;
    default:
      return Color::kDim;
  }
}

nlohmann::json ActionJson(const ActionRecord& a, bool detail) {
  nlohmann::json j = {
      {"id", a.id}, {"type", a.type}, {"status", ActionStatusName(a.status)}, {"revert", a.revert}};
  if (detail) {
    j["params"] = a.params;
    j["attempts"] = a.attempts;
    j["last_error"] = a.last_error;
    j["updated_at"] = FormatRfc3339(a.updated_at);
  }
  return j;
}

nlohmann::json IncidentJson(const Incident& inc, const std::vector<ActionRecord>& actions,
                            bool detail) {
  nlohmann::json acts = nlohmann::json::array();
  for (const auto& a : actions) acts.push_back(ActionJson(a, detail));
  return {{"id", inc.id},
          {"playbook", inc.playbook},
          {"description", inc.description},
          {"key_kind", inc.key_kind},
          {"key", inc.key},
          {"status", IncidentStatusName(inc.status)},
          {"severity", SeverityName(inc.severity)},
          {"count", inc.count},
          {"triggers", inc.triggers},
          {"first_seen", FormatRfc3339(inc.first_seen)},
          {"last_seen", FormatRfc3339(inc.last_seen)},
          {"mode", PlaybookModeName(inc.mode)},
          {"origin", IncidentOriginName(inc.origin)},
          {"trigger", inc.trigger},
          {"window_seconds", inc.window_seconds},
          {"actions", std::move(acts)}};
}

// "ban:done webhook:failed", with "(dry-run)" for a dry-run incident.
std::string ActionSummary(const Incident& inc, const std::vector<ActionRecord>& actions) {
  std::string s;
  for (const auto& a : actions) {
    if (!s.empty()) s += ' ';
    s += fmt::format("{}{}:{}", a.revert ? "undo-" : "", a.type, ActionStatusName(a.status));
  }
  if (s.empty()) s = "-";
  if (inc.mode == PlaybookMode::kDryRun) s += " (dry-run)";
  if (inc.origin == IncidentOrigin::kReplay) s += " (replay)";
  return s;
}

std::vector<ActionRecord> ActionsOrExit(IncidentStore* store, std::int64_t id) {
  auto a = store->ActionsForIncident(id);
  if (!a.ok()) ExitWith(a.status());
  return std::move(*a);
}

struct ListOptions {
  std::string status;
  std::string playbook;
  std::string since;
  std::string key;
  int limit = 100;
  bool json = false;
  bool cluster = false;  // every node's published incidents, from the cluster's database
  std::string node;      // with --cluster: only this node's
};

// The [cluster] section and a connection to its database; a clear exit when the config has no
// [cluster] or the database cannot be reached.
struct ClusterConnection {
  ClusterOptions options;
  std::unique_ptr<DecisionLog> log;
};

ClusterConnection ConnectClusterOrExit(const Config& config, const GlobalOptions& globals) {
  std::vector<Diagnostic> diags;
  auto options = ClusterOptions::FromConfig(config, &diags);
  if (!options.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    throw CliExit(kExitUsage, fmt::format("[cluster]: {}", options.status().message()));
  }
  if (!options->enabled) {
    throw CliExit(kExitUsage,
                  fmt::format("no [cluster] section in {}: other nodes' incidents are in the "
                              "cluster's database, which [cluster] names (docs/cluster.md)",
                              globals.config_given ? globals.config_path : "the configuration"));
  }
  ClusterConnection c;
  c.options = std::move(*options);
  c.log = MakeDecisionLog(c.options);
  if (Status st = c.log->Connect(); !st.ok()) {
    throw CliExit(kExitRuntime,
                  fmt::format("cannot reach the cluster's database: {}", st.message()));
  }
  return c;
}

std::string Ref(const std::string& node, std::int64_t id) { return fmt::format("{}:{}", node, id); }

nlohmann::json SharedIncidentJson(const SharedIncident& s, bool detail) {
  nlohmann::json j = IncidentJson(s.incident, s.actions, detail);
  j["node"] = s.node;
  j["ref"] = Ref(s.node, s.incident.id);
  j["uuid"] = s.uuid;
  j["published_ago_s"] = s.published_ago_s;
  return j;
}

// The table `incidents list` prints, this node's (ID first) or the cluster's (NODE first).
TablePrinter IncidentTable(bool with_node) {
  std::vector<std::string> columns = {"ID",    "LAST SEEN", "PLAYBOOK", "KEY",
                                      "COUNT", "SEVERITY",  "STATUS",   "ACTIONS"};
  if (with_node) columns.insert(columns.begin(), "NODE");
  TablePrinter t(std::move(columns), StdoutWantsColor());
  const std::size_t first = with_node ? 1 : 0;
  t.AlignRight(first);      // ID
  t.AlignRight(first + 4);  // COUNT
  return t;
}

// One incident's cells in IncidentTable's order (without the node).
std::vector<TablePrinter::Cell> IncidentRow(const Incident& inc,
                                            const std::vector<ActionRecord>& actions,
                                            UnixMicros now) {
  return {{std::to_string(inc.id)},
          {FormatWhen(inc.last_seen, now)},
          {inc.playbook},
          {inc.key},
          {std::to_string(inc.count)},
          {std::string(SeverityName(inc.severity)), SeverityColor(inc.severity)},
          {std::string(IncidentStatusName(inc.status)), StatusColor(inc.status)},
          {ActionSummary(inc, actions)}};
}

void RunClusterList(const GlobalOptions& globals, const ListOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  SharedIncidentQuery q;
  q.node = o.node;
  q.status = o.status;
  q.playbook = o.playbook;
  q.key = o.key;
  q.limit = o.limit;
  if (!o.since.empty()) q.since = now - *ParseDurationSeconds(o.since) * kMicrosPerSecond;
  ClusterConnection c = ConnectClusterOrExit(config, globals);
  auto list = c.log->ListIncidents(q);
  if (!list.ok()) ExitWith(list.status());
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : *list) out.push_back(SharedIncidentJson(s, false));
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (list->empty()) {
    std::printf("no incidents in the cluster\n");
    return;
  }
  TablePrinter t = IncidentTable(/*with_node=*/true);
  for (const auto& s : *list) {
    std::vector<TablePrinter::Cell> row = IncidentRow(s.incident, s.actions, now);
    row.insert(row.begin(), TablePrinter::Cell{s.node});
    t.AddRow(std::move(row));
  }
  t.Print(stdout);
}

void RunList(const GlobalOptions& globals, const ListOptions& o) {
  if (o.cluster) return RunClusterList(globals, o);
  if (!o.node.empty()) throw CliExit(kExitUsage, "--node goes with --cluster");
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  IncidentQuery q;
  if (!o.status.empty()) {
    IncidentStatus s;
    ParseIncidentStatus(o.status, &s);  // validated by the option's check
    q.status = s;
  }
  q.playbook = o.playbook;
  q.key = o.key;
  q.limit = o.limit;
  if (!o.since.empty()) q.since = now - *ParseDurationSeconds(o.since) * kMicrosPerSecond;
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto list = store->ListIncidents(q);
  if (!list.ok()) ExitWith(list.status());

  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& inc : *list)
      out.push_back(IncidentJson(inc, ActionsOrExit(store.get(), inc.id), false));
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (list->empty()) {
    std::printf("no incidents\n");
    return;
  }
  TablePrinter t = IncidentTable(/*with_node=*/false);
  for (const auto& inc : *list) t.AddRow(IncidentRow(inc, ActionsOrExit(store.get(), inc.id), now));
  t.Print(stdout);
}

// What `show` prints of one incident: from this node's store, or another node's published copy
// (then what is in effect there is not known here, and the node is named).
struct ShowParts {
  const Incident* inc = nullptr;
  const std::vector<ActionRecord>* actions = nullptr;
  const std::vector<IncidentNote>* notes = nullptr;
  const std::vector<BanRecord>* bans = nullptr;  // null for another node's incident
  const std::vector<SuspensionRecord>* suspensions = nullptr;
  const SharedIncident* shared = nullptr;  // another node's incident
};

void PrintIncident(const ShowParts& p, bool json, UnixMicros now) {
  const Incident* inc = p.inc;
  if (json) {
    nlohmann::json j =
        p.shared ? SharedIncidentJson(*p.shared, true) : IncidentJson(*inc, *p.actions, true);
    nlohmann::json ev = nlohmann::json::array();
    for (const auto& e : inc->evidence) {
      ev.push_back({{"time", FormatRfc3339(e.time)}, {"line", e.text}});
    }
    j["evidence"] = std::move(ev);
    nlohmann::json ns = nlohmann::json::array();
    for (const auto& n : *p.notes) {
      ns.push_back({{"time", FormatRfc3339(n.time)}, {"kind", n.kind}, {"text", n.text}});
    }
    j["notes"] = std::move(ns);
    if (p.bans) {
      nlohmann::json effect = nlohmann::json::array();
      for (const auto& b : *p.bans) {
        effect.push_back({{"type", "ban"},
                          {"address", b.prefix},
                          {"ports", b.ports},
                          {"until", b.until ? nlohmann::json(FormatRfc3339(b.until)) : nullptr}});
      }
      for (const auto& s : *p.suspensions) {
        effect.push_back({{"type", s.kind},
                          {"user", s.user},
                          {"until", s.until ? nlohmann::json(FormatRfc3339(s.until)) : nullptr}});
      }
      j["in_effect"] = std::move(effect);
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  const bool color = StdoutWantsColor();
  std::string out;
  out += fmt::format("Incident {}  {}  {}  {}\n",
                     p.shared ? Ref(p.shared->node, inc->id) : std::to_string(inc->id),
                     Colorize(inc->playbook, Color::kBold, color),
                     Colorize(SeverityName(inc->severity), SeverityColor(inc->severity), color),
                     Colorize(IncidentStatusName(inc->status), StatusColor(inc->status), color));
  if (!inc->description.empty()) out += fmt::format("  {}\n", inc->description);
  if (p.shared) {
    out += fmt::format("  node:     {} (published {} ago)\n", p.shared->node,
                       FormatDurationSeconds(p.shared->published_ago_s));
  }
  out += fmt::format("  key:      {} {}\n", inc->key_kind, inc->key);
  out += fmt::format("  why:      {}\n", inc->trigger.empty() ? "-" : inc->trigger);
  out += fmt::format("  first:    {}\n", FormatWhen(inc->first_seen, now));
  out += fmt::format("  last:     {}\n", FormatWhen(inc->last_seen, now));
  out += fmt::format("  events:   {}{}\n", inc->count,
                     inc->window_seconds
                         ? fmt::format(" (window {})", FormatDurationSeconds(inc->window_seconds))
                         : "");
  // Repeats of the trigger while this incident was open updated it instead of opening others.
  if (inc->triggers > 1) {
    out += fmt::format(
        "  triggers: {} (repeats while open, no new actions{})\n", inc->triggers,
        inc->open_until ? fmt::format("; open until {}", FormatWhen(inc->open_until, now)) : "");
  }
  // A replayed incident says so first: it came from old logs, not from what happens now.
  out += fmt::format("  mode:     {}{}\n",
                     inc->origin == IncidentOrigin::kReplay ? "replay, playbook " : "",
                     PlaybookModeName(inc->mode));

  out += fmt::format("\nEvidence ({} lines kept):\n", inc->evidence.size());
  if (inc->evidence.empty()) out += "  (none)\n";
  for (const auto& e : inc->evidence) {
    out += fmt::format("  {}  {}\n", Colorize(FormatLocalTime(e.time), Color::kDim, color), e.text);
  }

  out += "\nActions:\n";
  if (p.actions->empty()) out += "  (none)\n";
  for (const auto& a : *p.actions) {
    std::string params;
    for (const auto& [k, v] : a.params.items()) {
      params += fmt::format(" {}={}", k, v.is_string() ? v.get<std::string>() : v.dump());
    }
    out += fmt::format("  #{} {}{}{}  {}", a.id, a.revert ? "undo " : "", a.type, params,
                       Colorize(ActionStatusName(a.status), ActionColor(a.status), color));
    if (a.attempts > 0) out += fmt::format("  attempts {}", a.attempts);
    out += fmt::format("  {}", FormatAge(a.updated_at, now));
    if (!a.last_error.empty()) out += fmt::format("\n      error: {}", a.last_error);
    out += '\n';
  }

  if (p.bans) {
    out += "\nIn effect:\n";
    if (p.bans->empty() && p.suspensions->empty()) out += "  (nothing)\n";
    for (const auto& b : *p.bans) {
      // The scope only when it is not the default, so a mail ban reads as it always did.
      out += fmt::format("  ban {}{} {}\n", b.prefix,
                         b.ports == "mail" ? std::string() : " (ports " + b.ports + ")",
                         b.until ? "until " + FormatWhen(b.until, now) : std::string("permanent"));
    }
    for (const auto& s : *p.suspensions) {
      out += fmt::format(
          "  {} {} {}\n", s.kind, s.user,
          s.until ? "until " + FormatWhen(s.until, now) : std::string("until restored"));
    }
  }

  if (!p.notes->empty()) {
    out += "\nNotes:\n";
    for (const auto& n : *p.notes) {
      out += fmt::format("  {}  {}  {}\n", FormatLocalTime(n.time), n.kind, n.text);
    }
  }
  std::fputs(out.c_str(), stdout);
}

// Another node's incident, as it last published it.
void RunClusterShow(const GlobalOptions& globals, const std::string& node, std::int64_t id,
                    bool json) {
  const Config config = LoadEffectiveConfig(globals);
  ClusterConnection c = ConnectClusterOrExit(config, globals);
  auto shared = c.log->GetIncident(node, id);
  if (!shared.ok()) ExitWith(shared.status());
  ShowParts p;
  p.inc = &shared->incident;
  p.actions = &shared->actions;
  p.notes = &shared->notes;
  p.shared = &*shared;
  PrintIncident(p, json, CliNow());
}

// The local id of "17", or of "NODE:17" when NODE is this node; 0 with *node set for another
// node's incident. Exits on anything else.
std::int64_t ResolveRef(const Config& config, const std::string& ref, std::string* node) {
  node->clear();
  std::int64_t id = 0;
  if (ParseIncidentRef(ref, node, &id)) {
    std::vector<Diagnostic> diags;
    auto options = ClusterOptions::FromConfig(config, &diags);
    if (options.ok() && options->enabled && options->node == *node) {
      node->clear();  // this node's own: its store is the truth, no database needed
      return id;
    }
    return 0;
  }
  id = ParseNumber<std::int64_t>(ref).value_or(0);
  if (id <= 0) {
    throw CliExit(kExitUsage,
                  fmt::format("'{}' is not an incident: an id (17), or NODE:ID for another "
                              "cluster node's (mx2:17, as `incidents list --cluster` shows)",
                              ref));
  }
  return id;
}

void RunShow(const GlobalOptions& globals, const std::string& ref, bool json) {
  const Config config = LoadEffectiveConfig(globals);
  std::string node;
  const std::int64_t id = ResolveRef(config, ref, &node);
  if (!node.empty()) {
    std::int64_t remote = 0;
    ParseIncidentRef(ref, &node, &remote);
    return RunClusterShow(globals, node, remote, json);
  }
  const UnixMicros now = CliNow();
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto inc = store->GetIncident(id);
  if (!inc.ok()) ExitWith(inc.status());
  const auto actions = ActionsOrExit(store.get(), id);
  auto notes = store->NotesForIncident(id);
  if (!notes.ok()) ExitWith(notes.status());
  auto bans = store->ActiveBans(now);
  if (!bans.ok()) ExitWith(bans.status());
  auto suspensions = store->ActiveSuspensions();
  if (!suspensions.ok()) ExitWith(suspensions.status());
  std::vector<BanRecord> my_bans;
  for (auto& b : *bans) {
    if (b.incident_id == id) my_bans.push_back(b);
  }
  std::vector<SuspensionRecord> my_suspensions;
  for (auto& s : *suspensions) {
    if (s.incident_id == id) my_suspensions.push_back(s);
  }
  ShowParts p;
  p.inc = &*inc;
  p.actions = &actions;
  p.notes = &*notes;
  p.bans = &my_bans;
  p.suspensions = &my_suspensions;
  PrintIncident(p, json, now);
}

// The name of the user running this command, for the owner's note and log.
std::string ThisUser() {
  if (const passwd* pw = getpwuid(geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    return pw->pw_name;
  }
  return std::to_string(geteuid());
}

// ack / resolve of another node's incident: a request its link applies to its own store. Waits
// (--wait, default 5s) for the owner's outcome.
void RunClusterRequest(const GlobalOptions& globals, const Config& config, const std::string& ref,
                       const std::string& kind, const std::string& note, bool revert) {
  std::string node;
  std::int64_t id = 0;
  ParseIncidentRef(ref, &node, &id);
  ClusterConnection c = ConnectClusterOrExit(config, globals);
  // The owner must have published it: a reference to nothing is refused here, not queued.
  if (auto shared = c.log->GetIncident(node, id); !shared.ok()) ExitWith(shared.status());
  IncidentRequest r;
  r.node = node;
  r.incident_id = id;
  r.kind = kind;
  r.revert = revert;
  r.note = note;
  r.requested_user = ThisUser();
  auto request_id = c.log->RequestIncidentChange(r);
  if (!request_id.ok()) ExitWith(request_id.status());
  const auto deadline = std::chrono::steady_clock::now() + OutcomeWait(globals);
  auto pause = std::chrono::milliseconds(5);
  for (;;) {
    auto now = c.log->ReadIncidentRequest(*request_id);
    if (!now.ok()) ExitWith(now.status());
    if (now->done) {
      if (!now->ok) {
        throw CliExit(kExitFailure, fmt::format("node {} refused: {}", node, now->outcome));
      }
      std::printf("incident %s %s on node %s\n", ref.c_str(), now->outcome.c_str(), node.c_str());
      if (revert) {
        std::printf(
            "its bans are lifted on every node as node %s runs the undo (mxward incidents "
            "show %s)\n",
            node.c_str(), ref.c_str());
      }
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    // Polling the request row with a back-off (a read each time), bounded by --wait.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
  std::printf(
      "incident %s: %s asked of node %s (request %lld); it is applied when node %s's "
      "link reads it\n",
      ref.c_str(), kind == "ack" ? "acknowledgement" : "resolution", node.c_str(),
      static_cast<long long>(*request_id), node.c_str());
  throw CliExit(kExitPending);
}

void RunAck(const GlobalOptions& globals, const std::string& ref, const std::string& note) {
  const Config config = LoadEffectiveConfig(globals);
  std::string node;
  const std::int64_t id = ResolveRef(config, ref, &node);
  if (!node.empty()) return RunClusterRequest(globals, config, ref, "ack", note, false);
  SendOrAct(config, {{"op", "incidents.ack"}, {"id", id}, {"note", note}});
  std::printf("incident %lld acknowledged\n", static_cast<long long>(id));
}

void RunResolve(const GlobalOptions& globals, const std::string& ref, const std::string& note,
                bool revert) {
  const Config config = LoadEffectiveConfig(globals);
  std::string node;
  const std::int64_t id = ResolveRef(config, ref, &node);
  if (!node.empty()) return RunClusterRequest(globals, config, ref, "resolve", note, revert);
  auto outcome = SendOrAct(
      config, {{"op", "incidents.resolve"}, {"id", id}, {"note", note}, {"revert", revert}});
  std::printf("incident %lld resolved\n", static_cast<long long>(id));
  if (!revert) return;
  ReportOutcome(config, globals, outcome, "");
}

std::string CheckStatus(const std::string& s) {
  IncidentStatus out;
  return ParseIncidentStatus(s, &out) ? "" : "must be open, acknowledged or resolved";
}

std::string CheckDuration(const std::string& s) {
  auto d = ParseDurationSeconds(s);
  return d.ok() ? "" : d.status().message();
}

}  // namespace

void AddIncidentsCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd = app.add_subcommand("incidents", "Review, acknowledge and resolve incidents");
  cmd->require_subcommand(1);

  auto list = std::make_shared<ListOptions>();
  CLI::App* l = cmd->add_subcommand("list", "Incidents, most recent first");
  l->add_option("--status", list->status, "open, acknowledged or resolved")->check(CheckStatus);
  l->add_option("--playbook", list->playbook, "only this playbook");
  l->add_option("--since", list->since, "last seen within this long (2h, 7d)")
      ->check(CheckDuration);
  l->add_option("--key", list->key, "only this key (an address, a user, a domain)");
  l->add_option("--limit", list->limit, "at most this many (default 100)")
      ->check(CLI::Range(1, 1'000'000));
  l->add_flag("--json", list->json, "JSON array (fields in docs/cli.md)");
  l->add_flag("--cluster", list->cluster,
              "every cluster node's incidents, from the cluster's database ([cluster])");
  l->add_option("--node", list->node, "with --cluster: only this node's");
  l->callback([&globals, list] { RunList(globals, *list); });

  struct ShowOptions {
    std::string ref;
    bool json = false;
  };
  auto show = std::make_shared<ShowOptions>();
  CLI::App* s = cmd->add_subcommand(
      "show", "One incident: why it fired, evidence, actions, what is still in effect");
  s->add_option("id", show->ref, "incident id, or NODE:ID for another cluster node's")->required();
  s->add_flag("--json", show->json, "JSON object (fields in docs/cli.md)");
  s->callback([&globals, show] { RunShow(globals, show->ref, show->json); });

  struct AckOptions {
    std::string ref;
    std::string note;
    bool revert = false;
  };
  auto ack = std::make_shared<AckOptions>();
  CLI::App* a = cmd->add_subcommand("ack", "Acknowledge an incident (seen, being handled)");
  a->add_option("id", ack->ref, "incident id, or NODE:ID for another cluster node's")->required();
  a->add_option("--note", ack->note, "a note kept with the incident");
  a->callback([&globals, ack] { RunAck(globals, ack->ref, ack->note); });

  auto resolve = std::make_shared<AckOptions>();
  CLI::App* r = cmd->add_subcommand("resolve", "Resolve an incident; --revert undoes its effects");
  r->add_option("id", resolve->ref, "incident id, or NODE:ID for another cluster node's")
      ->required();
  r->add_option("--note", resolve->note, "a note kept with the incident");
  r->add_flag("--revert", resolve->revert, "lift its bans and restore its suspended accounts");
  r->callback(
      [&globals, resolve] { RunResolve(globals, resolve->ref, resolve->note, resolve->revert); });
}

}  // namespace mxward::cli
