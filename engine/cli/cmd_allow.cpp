// `mxward allow add|remove|list`: the runtime allowlist. Addresses and prefixes an admin exempts
// while the daemon runs (after reverting a false positive: a customer's NAT, the office, a
// monitoring host), kept in the store with who added them, why and until when. add/remove go
// through the daemon when it runs (it applies the change to the next event, action and policy
// request), else act on the store directly (the daemon reads it when it starts).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"

namespace mxward::cli {
namespace {

std::string Until(UnixMicros expires_at, UnixMicros now) {
  return expires_at ? FormatWhen(expires_at, now) : "permanent";
}

void RunList(const GlobalOptions& globals, bool json, bool all) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto rows = store->ListAllow(now, all);
  if (!rows.ok()) ExitWith(rows.status());
  auto state = [now](const AllowRecord& r) -> std::string {
    if (r.removed_at) return "removed";
    if (r.expires_at && r.expires_at <= now) return "expired";
    return "active";
  };
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    auto when = [](UnixMicros t) { return t ? nlohmann::json(FormatRfc3339(t)) : nullptr; };
    for (const auto& r : *rows) {
      out.push_back({{"address", r.prefix},
                     {"created_at", FormatRfc3339(r.created_at)},
                     {"expires_at", when(r.expires_at)},
                     {"note", r.note},
                     {"created_by", r.created_by},
                     {"removed_at", when(r.removed_at)},
                     {"removed_by", r.removed_at ? nlohmann::json(r.removed_by) : nullptr},
                     {"state", state(r)}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (rows->empty()) {
    std::printf("%s\n",
                all ? "no runtime allowlist entries, ever"
                    : "no runtime allowlist entries ([allow] in mxward.toml still applies)");
    return;
  }
  std::vector<std::string> header = {"ADDRESS", "SINCE", "UNTIL", "BY", "NOTE"};
  if (all) header.push_back("STATE");
  TablePrinter t(header, StdoutWantsColor());
  for (const auto& r : *rows) {
    std::vector<TablePrinter::Cell> row = {{r.prefix},
                                           {FormatWhen(r.created_at, now)},
                                           {Until(r.expires_at, now)},
                                           {r.created_by},
                                           {r.note}};
    if (all) row.push_back({state(r)});
    t.AddRow(row);
  }
  t.Print(stdout);
}

struct AddOptions {
  std::string address;
  std::string duration;
  std::string note;
  bool lift = false;
  bool force = false;
};

void RunAdd(const GlobalOptions& globals, const AddOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  nlohmann::json request = {{"op", "allow.add"},
                            {"address", o.address},
                            {"note", o.note},
                            {"lift", o.lift},
                            {"force", o.force}};
  if (!o.duration.empty()) request["for_s"] = *ParseDurationSeconds(o.duration);
  auto outcome = SendOrAct(config, request);
  const nlohmann::json& r = outcome.result;
  const std::string address = r.value("address", o.address);
  // What the daemon logged (or would have): the effective prefix, how long, by whom.
  std::printf("%s\n", r.value("audit", std::string()).c_str());
  for (const auto& wider : r.value("wider_bans", nlohmann::json::array())) {
    std::printf("note: the wider ban %s still covers %s; lift it with `mxward bans remove %s`\n",
                wider.get<std::string>().c_str(), address.c_str(),
                wider.get<std::string>().c_str());
  }
  if (o.lift) {
    if (r.value("action_ids", nlohmann::json::array()).empty()) {
      std::printf("no ban in force under %s to lift\n", address.c_str());
    } else {
      ReportOutcome(config, globals, outcome, "");  // "#21 undo ban 203.0.113.7: done", each
    }
  }
}

void RunRemove(const GlobalOptions& globals, const std::string& address) {
  const Config config = LoadEffectiveConfig(globals);
  auto outcome = SendOrAct(config, {{"op", "allow.remove"}, {"address", address}});
  std::printf("%s\n", outcome.result.value("audit", std::string()).c_str());
}

}  // namespace

void AddAllowCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd =
      app.add_subcommand("allow", "Exempt addresses at runtime (kept in the store; see [allow])");
  cmd->require_subcommand(1);

  auto json = std::make_shared<bool>(false);
  auto all = std::make_shared<bool>(false);
  CLI::App* l = cmd->add_subcommand("list", "Runtime allowlist entries in force");
  l->add_flag("--json", *json, "JSON array (fields in docs/cli.md)");
  l->add_flag("--all", *all, "also the expired and removed entries");
  l->callback([&globals, json, all] { RunList(globals, *json, *all); });

  auto add = std::make_shared<AddOptions>();
  CLI::App* a = cmd->add_subcommand("add", "Never act on an address or prefix from now on");
  a->add_option("address", add->address, "192.0.2.7, 198.51.100.0/24, 2001:db8::/64 (exactly)")
      ->required();
  a->add_option("--for", add->duration, "how long (10m, 1h, 7d); default: until removed")
      ->check([](const std::string& s) -> std::string {
        auto d = ParseDurationSeconds(s);
        if (!d.ok()) return d.status().message();
        return *d > 0 ? "" : "must be longer than 0s";
      });
  a->add_option("--note", add->note, "why, and for whom (kept with the entry)");
  a->add_flag("--lift", add->lift, "also lift every ban in force that the prefix covers");
  a->add_flag("--force", add->force, "allow a prefix wider than /8 (IPv4) or /32 (IPv6)");
  a->callback([&globals, add] { RunAdd(globals, *add); });

  auto remove = std::make_shared<std::string>();
  CLI::App* r = cmd->add_subcommand("remove", "End a runtime allowlist entry");
  r->add_option("address", *remove, "the address or prefix as listed")->required();
  r->callback([&globals, remove] { RunRemove(globals, *remove); });
}

}  // namespace mxward::cli
