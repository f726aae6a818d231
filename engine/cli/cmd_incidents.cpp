// `mxward incidents list|show|ack|resolve`: review what the playbooks opened, and close it.
// Reads go to the store directly (WAL: never blocks the daemon); ack and resolve go through the
// daemon's control socket when it runs. The --json shapes are documented in docs/cli.md and are
// a stable interface: add fields, never rename or remove them.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"
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
};

void RunList(const GlobalOptions& globals, const ListOptions& o) {
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
  const bool color = StdoutWantsColor();
  TablePrinter t({"ID", "LAST SEEN", "PLAYBOOK", "KEY", "COUNT", "SEVERITY", "STATUS", "ACTIONS"},
                 color);
  t.AlignRight(0);
  t.AlignRight(4);
  for (const auto& inc : *list) {
    auto actions = ActionsOrExit(store.get(), inc.id);
    t.AddRow({{std::to_string(inc.id)},
              {FormatWhen(inc.last_seen, now)},
              {inc.playbook},
              {inc.key},
              {std::to_string(inc.count)},
              {std::string(SeverityName(inc.severity)), SeverityColor(inc.severity)},
              {std::string(IncidentStatusName(inc.status)), StatusColor(inc.status)},
              {ActionSummary(inc, actions)}});
  }
  t.Print(stdout);
}

void RunShow(const GlobalOptions& globals, std::int64_t id, bool json) {
  const Config config = LoadEffectiveConfig(globals);
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

  if (json) {
    nlohmann::json j = IncidentJson(*inc, actions, true);
    nlohmann::json ev = nlohmann::json::array();
    for (const auto& e : inc->evidence) {
      ev.push_back({{"time", FormatRfc3339(e.time)}, {"line", e.text}});
    }
    j["evidence"] = std::move(ev);
    nlohmann::json ns = nlohmann::json::array();
    for (const auto& n : *notes) {
      ns.push_back({{"time", FormatRfc3339(n.time)}, {"kind", n.kind}, {"text", n.text}});
    }
    j["notes"] = std::move(ns);
    nlohmann::json effect = nlohmann::json::array();
    for (const auto& b : my_bans) {
      effect.push_back({{"type", "ban"},
                        {"address", b.prefix},
                        {"ports", b.ports},
                        {"until", b.until ? nlohmann::json(FormatRfc3339(b.until)) : nullptr}});
    }
    for (const auto& s : my_suspensions) {
      effect.push_back({{"type", s.kind},
                        {"user", s.user},
                        {"until", s.until ? nlohmann::json(FormatRfc3339(s.until)) : nullptr}});
    }
    j["in_effect"] = std::move(effect);
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  const bool color = StdoutWantsColor();
  std::string out;
  out += fmt::format("Incident {}  {}  {}  {}\n", inc->id,
                     Colorize(inc->playbook, Color::kBold, color),
                     Colorize(SeverityName(inc->severity), SeverityColor(inc->severity), color),
                     Colorize(IncidentStatusName(inc->status), StatusColor(inc->status), color));
  if (!inc->description.empty()) out += fmt::format("  {}\n", inc->description);
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
  if (actions.empty()) out += "  (none)\n";
  for (const auto& a : actions) {
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

  out += "\nIn effect:\n";
  if (my_bans.empty() && my_suspensions.empty()) out += "  (nothing)\n";
  for (const auto& b : my_bans) {
    // The scope only when it is not the default, so a mail ban reads as it always did.
    out += fmt::format("  ban {}{} {}\n", b.prefix,
                       b.ports == "mail" ? std::string() : " (ports " + b.ports + ")",
                       b.until ? "until " + FormatWhen(b.until, now) : std::string("permanent"));
  }
  for (const auto& s : my_suspensions) {
    out +=
        fmt::format("  {} {} {}\n", s.kind, s.user,
                    s.until ? "until " + FormatWhen(s.until, now) : std::string("until restored"));
  }

  if (!notes->empty()) {
    out += "\nNotes:\n";
    for (const auto& n : *notes) {
      out += fmt::format("  {}  {}  {}\n", FormatLocalTime(n.time), n.kind, n.text);
    }
  }
  std::fputs(out.c_str(), stdout);
}

void RunAck(const GlobalOptions& globals, std::int64_t id, const std::string& note) {
  const Config config = LoadEffectiveConfig(globals);
  SendOrAct(config, {{"op", "incidents.ack"}, {"id", id}, {"note", note}});
  std::printf("incident %lld acknowledged\n", static_cast<long long>(id));
}

void RunResolve(const GlobalOptions& globals, std::int64_t id, const std::string& note,
                bool revert) {
  const Config config = LoadEffectiveConfig(globals);
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
  l->callback([&globals, list] { RunList(globals, *list); });

  struct ShowOptions {
    std::int64_t id = 0;
    bool json = false;
  };
  auto show = std::make_shared<ShowOptions>();
  CLI::App* s = cmd->add_subcommand(
      "show", "One incident: why it fired, evidence, actions, what is still in effect");
  s->add_option("id", show->id, "incident id")->required();
  s->add_flag("--json", show->json, "JSON object (fields in docs/cli.md)");
  s->callback([&globals, show] { RunShow(globals, show->id, show->json); });

  struct AckOptions {
    std::int64_t id = 0;
    std::string note;
    bool revert = false;
  };
  auto ack = std::make_shared<AckOptions>();
  CLI::App* a = cmd->add_subcommand("ack", "Acknowledge an incident (seen, being handled)");
  a->add_option("id", ack->id, "incident id")->required();
  a->add_option("--note", ack->note, "a note kept with the incident");
  a->callback([&globals, ack] { RunAck(globals, ack->id, ack->note); });

  auto resolve = std::make_shared<AckOptions>();
  CLI::App* r = cmd->add_subcommand("resolve", "Resolve an incident; --revert undoes its effects");
  r->add_option("id", resolve->id, "incident id")->required();
  r->add_option("--note", resolve->note, "a note kept with the incident");
  r->add_flag("--revert", resolve->revert, "lift its bans and restore its suspended accounts");
  r->callback(
      [&globals, resolve] { RunResolve(globals, resolve->id, resolve->note, resolve->revert); });
}

}  // namespace mxward::cli
