// `mxward actions list|show`: the outbox, row by row. Every effect mxward has (bans, suspensions,
// webhooks, mails, their undoing) is one numbered action there; the write commands print the
// number, and these commands say what became of it. Read-only: the store is opened read-only and
// never created.
#include <cstdio>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/action_outcome.h"
#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"

namespace mxward::cli {
namespace {

nlohmann::json ActionJson(const ActionRecord& a) {
  auto time = [](UnixMicros t) { return t ? nlohmann::json(FormatRfc3339(t)) : nullptr; };
  return {
      {"id", a.id},
      {"incident_id", a.incident_id ? nlohmann::json(a.incident_id) : nullptr},
      {"type", a.type},
      {"revert", a.revert},
      {"params", a.params},
      {"state", ActionStatusName(a.status)},
      {"attempts", a.attempts},
      {"last_error", a.last_error},
      {"created_at", time(a.created_at)},
      {"updated_at", time(a.updated_at)},
      {"next_attempt_at", a.status == ActionStatus::kPending ? time(a.next_attempt_at) : nullptr}};
}

// The first string parameter that names what the action acts on (address, user, target, to).
std::string Target(const ActionRecord& a) {
  // "summary": a cluster_batch (decisions of other nodes applied together) names its batch.
  for (const char* k : {"address", "user", "target", "to", "summary"}) {
    if (a.params.contains(k) && a.params[k].is_string()) return a.params[k].get<std::string>();
  }
  return "-";
}

struct ListOptions {
  std::optional<std::int64_t> incident;
  std::string state;
  int limit = 50;
  bool json = false;
};

void RunList(const GlobalOptions& globals, const ListOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  ActionQuery query;
  query.incident_id = o.incident;
  query.limit = o.limit;
  if (!o.state.empty()) {
    ActionStatus status;
    ParseActionStatus(o.state, &status);  // checked by the option
    query.status = status;
  }
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto actions = store->ListActions(query);
  if (!actions.ok()) ExitWith(actions.status());
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : *actions) out.push_back(ActionJson(a));
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (actions->empty()) {
    std::printf("no actions\n");
    return;
  }
  TablePrinter t(
      {"ID", "INCIDENT", "EXECUTOR", "TARGET", "STATE", "TRIES", "UPDATED", "LAST ERROR"},
      StdoutWantsColor());
  for (const auto& a : *actions) {
    t.AddRow({{std::to_string(a.id)},
              {a.incident_id ? std::to_string(a.incident_id) : "-"},
              {(a.revert ? "undo " : "") + a.type},
              {Target(a)},
              {std::string(ActionStatusName(a.status))},
              {std::to_string(a.attempts)},
              {FormatWhen(a.updated_at ? a.updated_at : a.created_at, now)},
              {a.last_error.empty() ? "-" : a.last_error}});
  }
  t.Print(stdout);
}

void RunShow(const GlobalOptions& globals, std::int64_t id, bool json) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto a = store->GetAction(id);
  if (!a.ok()) ExitWith(a.status());
  if (json) {
    std::printf("%s\n", ActionJson(*a).dump(2).c_str());
    return;
  }
  std::string out = fmt::format("Action {}  {}{}  {}\n", a->id, a->revert ? "undo " : "", a->type,
                                ActionStatusName(a->status));
  out += fmt::format("  outcome:   {}\n", OutcomeText(*a, now));
  out += fmt::format(
      "  incident:  {}\n",
      a->incident_id ? fmt::format("#{} (mxward incidents show {})", a->incident_id, a->incident_id)
      : a->type == "cluster_batch" ? std::string("none (decisions of other cluster nodes)")
                                   : std::string("none (queued by hand)"));
  out += fmt::format("  params:    {}\n", a->params.dump());
  out += fmt::format("  attempts:  {}\n", a->attempts);
  if (!a->last_error.empty()) out += fmt::format("  last note: {}\n", a->last_error);
  out += fmt::format("  queued:    {}\n", FormatWhen(a->created_at, now));
  if (a->updated_at) out += fmt::format("  updated:   {}\n", FormatWhen(a->updated_at, now));
  if (a->status == ActionStatus::kPending && a->next_attempt_at) {
    out += fmt::format("  next try:  {}\n", FormatWhen(a->next_attempt_at, now));
  }
  std::fputs(out.c_str(), stdout);
}

std::string CheckState(const std::string& s) {
  ActionStatus out;
  return ParseActionStatus(s, &out) ? ""
                                    : "must be pending, done, failed, reverted, dry_run or refused";
}

}  // namespace

void AddActionsCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd =
      app.add_subcommand("actions", "The outbox: every effect mxward queued and what became of it");
  cmd->require_subcommand(1);

  auto list = std::make_shared<ListOptions>();
  CLI::App* l = cmd->add_subcommand("list", "Actions, newest first");
  l->add_option("--incident", list->incident, "only this incident's actions (0: queued by hand)");
  l->add_option("--state", list->state, "pending, done, failed, reverted, dry_run or refused")
      ->check(CheckState);
  l->add_option("--limit", list->limit, "at most this many (default 50)")
      ->check(CLI::PositiveNumber);
  l->add_flag("--json", list->json, "JSON array (fields in docs/cli.md)");
  l->callback([&globals, list] { RunList(globals, *list); });

  struct ShowOptions {
    std::int64_t id = 0;
    bool json = false;
  };
  auto show = std::make_shared<ShowOptions>();
  CLI::App* s = cmd->add_subcommand("show", "One action: its parameters, attempts and outcome");
  s->add_option("id", show->id, "the action's number")->required();
  s->add_flag("--json", show->json, "one JSON object");
  s->callback([&globals, show] { RunShow(globals, show->id, show->json); });
}

}  // namespace mxward::cli
