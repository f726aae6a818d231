// `mxward bans list|add|remove`: the bans mxward keeps (in nftables, recorded in the store).
// add/remove go through the daemon when it runs, else act directly through the outbox.
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"

namespace mxward::cli {
namespace {

void RunList(const GlobalOptions& globals, bool json) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto bans = store->ActiveBans(now);
  if (!bans.ok()) ExitWith(bans.status());
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& b : *bans) {
      out.push_back({{"address", b.prefix},
                     {"created_at", FormatRfc3339(b.created_at)},
                     {"until", b.until ? nlohmann::json(FormatRfc3339(b.until)) : nullptr},
                     {"ports", b.ports},
                     {"incident_id", b.incident_id ? nlohmann::json(b.incident_id) : nullptr},
                     {"reason", b.reason}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (bans->empty()) {
    std::printf("no active bans\n");
    return;
  }
  TablePrinter t({"ADDRESS", "PORTS", "SINCE", "UNTIL", "INCIDENT", "REASON"}, StdoutWantsColor());
  for (const auto& b : *bans) {
    t.AddRow({{b.prefix},
              {b.ports},
              {FormatWhen(b.created_at, now)},
              {b.until ? FormatWhen(b.until, now) : "permanent"},
              {b.incident_id ? std::to_string(b.incident_id) : "-"},
              {b.reason}});
  }
  t.Print(stdout);
}

struct AddOptions {
  std::string address;
  std::string duration;
  std::string reason;
  std::string ports = "mail";
};

void RunAdd(const GlobalOptions& globals, const AddOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  const std::int64_t seconds = *ParseDurationSeconds(o.duration);
  auto outcome = SendOrAct(config, {{"op", "bans.add"},
                                    {"address", o.address},
                                    {"duration_s", seconds},
                                    {"reason", o.reason},
                                    {"ports", o.ports}});
  const std::string address = outcome.result.value("address", o.address);
  ReportOutcome(
      config, globals, outcome,
      fmt::format("ban {} for {} (ports: {})", address, FormatDurationSeconds(seconds), o.ports));
}

struct RemoveOptions {
  std::string address;
  std::string ports;  // empty: every scope the address is banned in
};

void RunRemove(const GlobalOptions& globals, const RemoveOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  auto outcome =
      SendOrAct(config, {{"op", "bans.remove"}, {"address", o.address}, {"ports", o.ports}});
  ReportOutcome(config, globals, outcome,
                "unban " + outcome.result.value("address", o.address) +
                    (o.ports.empty() ? "" : " (ports: " + o.ports + ")"));
}

}  // namespace

void AddBansCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd = app.add_subcommand("bans", "List, add and lift address bans");
  cmd->require_subcommand(1);

  auto json = std::make_shared<bool>(false);
  CLI::App* l = cmd->add_subcommand("list", "Bans in effect");
  l->add_flag("--json", *json, "JSON array (fields in docs/cli.md)");
  l->callback([&globals, json] { RunList(globals, *json); });

  auto add = std::make_shared<AddOptions>();
  CLI::App* a = cmd->add_subcommand("add", "Ban an address or prefix for a while");
  a->add_option("address", add->address, "192.0.2.7, 198.51.100.0/24, 2001:db8::/64")->required();
  a->add_option("--for", add->duration, "how long (10m, 1h, 7d)")
      ->required()
      ->check([](const std::string& s) -> std::string {
        auto d = ParseDurationSeconds(s);
        if (!d.ok()) return d.status().message();
        return *d > 0 ? "" : "must be longer than 0s";
      });
  a->add_option("--reason", add->reason, "why, kept with the ban");
  a->add_option("--ports", add->ports,
                "what the ban covers: mail (default), web, all, a [nftables.port_groups] name, "
                "port numbers, or a comma-separated list of those");
  a->callback([&globals, add] { RunAdd(globals, *add); });

  auto remove = std::make_shared<RemoveOptions>();
  CLI::App* r = cmd->add_subcommand("remove", "Lift a ban (from nftables too)");
  r->add_option("address", remove->address, "the address or prefix as listed")->required();
  r->add_option("--ports", remove->ports,
                "lift only the ban of this scope (as listed under PORTS); default: every scope");
  r->callback([&globals, remove] { RunRemove(globals, *remove); });
}

}  // namespace mxward::cli
