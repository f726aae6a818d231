// `mxward accounts list|suspend|restore|baseline`: mail accounts mxward suspended (PostfixAdmin),
// and doing it by hand. suspend/restore go through the daemon when it runs. baseline shows what
// the novel playbooks have learned about an account (read from the store) and how warm it is.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/base/ascii_lower.h"
#include "engine/cli/admin_request.h"
#include "engine/cli/baseline_report.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"
#include "mxward/action_types.h"
#include "mxward/incident_store.h"
#include "mxward/playbook_engine.h"

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

// What each novel playbook keyed on accounts holds for user, and how warm it is.
void RunBaseline(const GlobalOptions& globals, const std::string& user, bool json) {
  const Config config = LoadEffectiveConfig(globals);
  std::vector<Diagnostic> diags;
  auto engine = PlaybookEngine::Load(config, &diags);
  if (!engine.ok()) {
    for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
    throw CliExit(kExitFailure, engine.status().message());
  }
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  const UnixMicros now = CliNow();
  const std::string key = AsciiLower(user);  // baselines keep keys lower-cased
  nlohmann::json out = nlohmann::json::array();
  for (const auto& name : (*engine)->BaselinePlaybooks()) {
    const Playbook* pb = (*engine)->FindPlaybook(name);
    if (pb == nullptr) continue;
    auto entries = store->BaselineOfKey(name, key);
    if (!entries.ok()) ExitWith(entries.status());
    auto install_since = store->BaselineLearningSince(name);
    if (!install_since.ok()) ExitWith(install_since.status());
    BaselineWarmth warmth{0, *install_since, pb->trigger.baseline.warmup_seconds, now};
    for (const auto& e : *entries) {
      const UnixMicros since = e.first_seen > 0 ? std::min(e.first_seen, e.last_seen) : e.last_seen;
      if (warmth.key_since == 0 || since < warmth.key_since) warmth.key_since = since;
    }
    const std::string field(FieldName(pb->trigger.field.field));
    if (json) {
      nlohmann::json values = nlohmann::json::array();
      for (const auto& e : *entries) {
        values.push_back(
            {{"value", e.value},
             {"first_seen", e.first_seen ? nlohmann::json(FormatRfc3339(e.first_seen)) : nullptr},
             {"last_seen", FormatRfc3339(e.last_seen)}});
      }
      out.push_back({{"playbook", name},
                     {"key", key},
                     {"field", field},
                     {"learning_since",
                      warmth.key_since ? nlohmann::json(FormatRfc3339(warmth.key_since)) : nullptr},
                     {"warmup_seconds", warmth.warmup_seconds},
                     {"warm", warmth.warm()},
                     {"warmth", warmth.Describe(pb->trigger)},
                     {"values", std::move(values)}});
      continue;
    }
    std::printf("%s in %s (%s values): %zu held, %s\n", key.c_str(), name.c_str(), field.c_str(),
                entries->size(), warmth.Describe(pb->trigger).c_str());
    if (entries->empty()) continue;
    TablePrinter t({"VALUE", "FIRST USED", "LAST USED"}, StdoutWantsColor());
    for (const auto& e : *entries) {
      t.AddRow({{e.value},
                {e.first_seen ? FormatWhen(e.first_seen, now) : "-"},
                {FormatWhen(e.last_seen, now)}});
    }
    t.Print(stdout);
  }
  if (json) std::printf("%s\n", out.dump(2).c_str());
}

void Run(const GlobalOptions& globals, const nlohmann::json& request, const std::string& what) {
  const Config config = LoadEffectiveConfig(globals);
  ReportOutcome(config, globals, SendOrAct(config, request), what);
}

std::string CheckKind(const std::string& k) {
  return IsAccountActionType(k) ? "" : "must be one of: " + AccountActionTypes();
}

}  // namespace

void AddAccountsCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd = app.add_subcommand(
      "accounts", "Mail accounts: list, suspend, restore; baseline (what novelty has learned)");
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

  auto baseline_user = std::make_shared<std::string>();
  auto baseline_json = std::make_shared<bool>(false);
  CLI::App* b = cmd->add_subcommand(
      "baseline", "What the novel playbooks learned about an account, and how warm it is");
  b->add_option("user", *baseline_user, "the account, alice@example.org")->required();
  b->add_flag("--json", *baseline_json, "JSON array, one object per novel playbook");
  b->callback([&globals, baseline_user, baseline_json] {
    RunBaseline(globals, *baseline_user, *baseline_json);
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
