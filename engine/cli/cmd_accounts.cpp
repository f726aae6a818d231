// `mxward accounts list|suspend|restore`: mail accounts mxward suspended (PostfixAdmin), and
// doing it by hand. suspend/restore go through the daemon when it runs.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"
#include "mxward/action_types.h"

namespace mxward::cli {
namespace {

void RunList(const GlobalOptions& globals, bool json) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto list = store->ActiveSuspensions();
  if (!list.ok()) ExitWith(list.status());
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : *list) {
      out.push_back({{"user", s.user},
                     {"kind", s.kind},
                     {"created_at", FormatRfc3339(s.created_at)},
                     {"until", s.until ? nlohmann::json(FormatRfc3339(s.until)) : nullptr},
                     {"incident_id", s.incident_id ? nlohmann::json(s.incident_id) : nullptr},
                     {"previous", s.previous}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (list->empty()) {
    std::printf("no suspended accounts\n");
    return;
  }
  TablePrinter t({"USER", "KIND", "SINCE", "UNTIL", "INCIDENT"}, StdoutWantsColor());
  for (const auto& s : *list) {
    t.AddRow({{s.user},
              {s.kind, Color::kRed},
              {FormatWhen(s.created_at, now)},
              {s.until ? FormatWhen(s.until, now) : "until restored"},
              {s.incident_id ? std::to_string(s.incident_id) : "-"}});
  }
  t.Print(stdout);
}

void Run(const GlobalOptions& globals, const nlohmann::json& request, const std::string& what) {
  ReportOutcome(SendOrAct(LoadEffectiveConfig(globals), request), what);
}

std::string CheckKind(const std::string& k) {
  return IsAccountActionType(k) ? "" : "must be one of: " + AccountActionTypes();
}

}  // namespace

void AddAccountsCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd = app.add_subcommand("accounts", "Suspended mail accounts: list, suspend, restore");
  cmd->require_subcommand(1);

  auto json = std::make_shared<bool>(false);
  CLI::App* l = cmd->add_subcommand("list", "Accounts mxward has suspended");
  l->add_flag("--json", *json, "JSON array (fields in docs/cli.md)");
  l->callback([&globals, json] { RunList(globals, *json); });

  struct Options {
    std::string user;
    std::string kind;
  };
  auto suspend = std::make_shared<Options>();
  suspend->kind = "suspend";
  CLI::App* s = cmd->add_subcommand("suspend", "Suspend a mailbox (all of it, or sending only)");
  s->add_option("user", suspend->user, "the mailbox, alice@example.org")->required();
  s->add_option("--kind", suspend->kind, AccountActionTypes() + " (default: suspend)")
      ->check(CheckKind);
  s->callback([&globals, suspend] {
    Run(globals, {{"op", "accounts.suspend"}, {"user", suspend->user}, {"kind", suspend->kind}},
        fmt::format("{} {}", suspend->kind, suspend->user));
  });

  auto restore = std::make_shared<Options>();
  CLI::App* r = cmd->add_subcommand("restore", "Undo mxward's suspension of a mailbox");
  r->add_option("user", restore->user, "the mailbox")->required();
  r->add_option("--kind", restore->kind, "only this kind (default: every suspension on record)")
      ->check(CheckKind);
  r->callback([&globals, restore] {
    nlohmann::json req = {{"op", "accounts.restore"}, {"user", restore->user}};
    if (!restore->kind.empty()) req["kind"] = restore->kind;
    Run(globals, req, "restore " + restore->user);
  });
}

}  // namespace mxward::cli
