// `mxward status [--json] [--top N]`: a running daemon's own view, asked over the control socket
// (daemon_queries.h): what it has loaded and what is building up towards a trigger. Only the
// daemon knows the second (its windows live in memory), so without one this says so and fails.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"
#include "mxward/control_protocol.h"

namespace mxward::cli {
namespace {

struct StatusOptions {
  bool json = false;
  int top = 5;
};

std::string Ago(std::int64_t seconds) {
  if (seconds < 1) return "just now";
  return FormatDurationSeconds(seconds) + " ago";
}

// "count >= 20 auth_failure in 10m", "distinct >= 10 sasl_user in 5m of auth_failure".
std::string TriggerSummary(const nlohmann::json& pb) {
  const nlohmann::json& tr = pb.at("trigger");
  std::string events;
  for (const auto& e : pb.value("events", nlohmann::json::array())) {
    if (!events.empty()) events += '/';
    events += e.get<std::string>();
  }
  const std::string type = tr.value("type", "");
  std::string s = fmt::format("{} >= {}", type, tr.value("threshold", 0));
  if (tr.contains("field")) s += " " + tr.at("field").get<std::string>();
  s += " " + events;
  if (tr.contains("window")) s += " in " + tr.at("window").get<std::string>();
  if (tr.contains("min_addresses")) {
    s += fmt::format(" from >= {} addresses", tr.at("min_addresses").get<int>());
  }
  return s;
}

void PrintText(const nlohmann::json& s) {
  const bool color = StdoutWantsColor();
  std::string out = fmt::format(
      "mxward {}, pid {}, up {} (since {})\n", s.value("version", "?"), s.value("pid", 0),
      FormatDurationSeconds(s.value("uptime_s", std::int64_t{0})), s.value("started", "?"));
  if (s.value("dry_run", false)) {
    out += Colorize("DRY-RUN: every action is only recorded", Color::kYellow, color) + "\n";
  }
  out += fmt::format("store {}\n", s.value("store", "?"));
  if (s.contains("last_reload") && s.at("last_reload").is_object()) {
    const auto& r = s.at("last_reload");
    const std::string outcome = r.value("outcome", "");
    out += fmt::format("last reload {}: {}\n", r.value("at", "?"),
                       Colorize(outcome + ": " + r.value("message", ""),
                                outcome == "reloaded"  ? Color::kGreen
                                : outcome == "refused" ? Color::kRed
                                                       : Color::kYellow,
                                color));
  }
  std::fputs(out.c_str(), stdout);

  std::printf("\nInputs:\n");
  for (const auto& in : s.at("inputs")) {
    std::printf("  %s\n", in.value("address", "").c_str());
  }
  std::printf("\nPolicy servers:%s\n", s.at("policy_servers").empty() ? " none" : "");
  for (const auto& p : s.at("policy_servers")) std::printf("  %s\n", p.get<std::string>().c_str());

  if (s.contains("allowlist")) {
    const auto& a = s.at("allowlist");
    std::printf("\nAllowlist: %lld from [allow], %lld runtime (mxward allow list)\n",
                static_cast<long long>(a.value("static", std::int64_t{0})),
                static_cast<long long>(a.value("runtime", std::int64_t{0})));
  }

  if (s.contains("cluster") && s.at("cluster").is_object()) {
    const auto& c = s.at("cluster");
    const bool up = c.value("connected", false);
    // The engine: PostgreSQL rings a doorbell; MariaDB is read every poll interval.
    std::string engine = c.value("engine", "postgresql");
    if (const std::int64_t poll = c.value("poll_interval_ms", std::int64_t{0}); poll > 0) {
      engine += ", polled every " + std::to_string(poll) + " ms";
    }
    std::printf("\nCluster: node %s (%s), %s; %lld decision(s) waiting to be published\n",
                c.value("node", "").c_str(), c.value("role", "").c_str(),
                Colorize(up ? "connected" : "NOT connected to the decision log",
                         up ? Color::kGreen : Color::kRed, color)
                    .c_str(),
                static_cast<long long>(c.value("unpublished", std::int64_t{0})));
    std::printf("  engine: %s\n", engine.c_str());
    if (c.contains("incidents") && c.at("incidents").is_object() &&
        c.value("engine", "postgresql") == "postgresql") {
      // Cluster-wide incidents (docs/cluster.md): this node's published, and other nodes'
      // requests applied here.
      const auto& i = c.at("incidents");
      std::printf(
          "  incidents: %lld publication(s), %lld waiting; %lld request(s) of other "
          "nodes applied (mxward incidents list --cluster)\n",
          static_cast<long long>(i.value("published", std::int64_t{0})),
          static_cast<long long>(i.value("unpublished", std::int64_t{0})),
          static_cast<long long>(i.value("requests_applied", std::int64_t{0})));
    }
    if (c.contains("head")) {
      std::printf("  decision log at %lld (%lld rows), this node at %lld\n",
                  static_cast<long long>(c.value("head", std::int64_t{0})),
                  static_cast<long long>(c.value("log_rows", std::int64_t{0})),
                  static_cast<long long>(c.value("cursor", std::int64_t{0})));
      TablePrinter nodes({"  NODE", "ROLE", "CURSOR", "BEHIND", "LAST SEEN"}, color);
      for (const auto& n : c.at("nodes")) {
        const std::int64_t seen = n.value("seen_ago_s", std::int64_t{0});
        nodes.AddRow({{"  " + n.value("node", "")},
                      {n.value("role", "")},
                      {std::to_string(n.value("cursor", std::int64_t{0}))},
                      {std::to_string(n.value("lag", std::int64_t{0}))},
                      {Ago(seen)}});
      }
      nodes.Print(stdout);
    } else {
      std::printf("  the decision log has not been read yet\n");
    }
  }

  std::printf("\nExecutors (by action type):\n");
  TablePrinter ex({"  TYPE", "MODE", "WHY"}, color);
  for (const auto& e : s.at("executors")) {
    const bool live = e.value("mode", "") == "live";
    ex.AddRow({{"  " + e.value("type", "")},
               {e.value("mode", ""), live ? Color::kGreen : Color::kYellow},
               {live ? "[" + e.value("section", "") + "]" : e.value("reason", "")}});
  }
  ex.Print(stdout);

  std::printf("\nPlaybooks (and the keys closest to their trigger):\n");
  for (const auto& pb : s.at("playbooks")) {
    std::string actions;
    for (const auto& a : pb.at("actions")) {
      if (!actions.empty()) actions += ", ";
      actions += a.get<std::string>();
    }
    const std::string mode = pb.value("mode", "");
    std::printf("  %s  %s  key %s  %s  -> %s\n", pb.value("name", "").c_str(),
                Colorize(mode, mode == "enforce" ? Color::kGreen : Color::kYellow, color).c_str(),
                pb.value("key", "").c_str(), TriggerSummary(pb).c_str(),
                actions.empty() ? "(no actions)" : actions.c_str());
    const std::string window = pb.at("trigger").value("window", "");
    for (const auto& k : pb.at("building")) {
      std::printf("      %-40s %s%s  last %s\n", k.value("key", "").c_str(),
                  fmt::format("{}/{}", k.value("count", 0), k.value("threshold", 0)).c_str(),
                  window.empty() ? "" : (" in " + window).c_str(),
                  Ago(k.value("last_seen_age_s", std::int64_t{0})).c_str());
    }
  }
}

void RunStatus(const GlobalOptions& globals, const StatusOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  auto response = CallControl(config.control_socket, {{"op", "status"}, {"top", o.top}},
                              std::chrono::seconds(10));
  if (!response.ok()) {
    if (response.status().code() == Status::Code::kNotFound) {
      throw CliExit(kExitRuntime,
                    fmt::format("no daemon answers on {}: `status` shows a running daemon's view "
                                "(start it: systemctl start mxward; --socket names another)",
                                config.control_socket));
    }
    throw CliExit(kExitRuntime, "daemon: " + response.status().message());
  }
  auto result = ControlResult(*response);
  if (!result.ok()) ExitWith(result.status());
  if (o.json) {
    std::printf("%s\n", result->dump(2).c_str());
    return;
  }
  PrintText(*result);
}

}  // namespace

void AddStatusCommand(CLI::App& app, GlobalOptions& globals) {
  auto o = std::make_shared<StatusOptions>();
  CLI::App* cmd = app.add_subcommand(
      "status",
      "The running daemon: playbooks, inputs, executors (live or dry-run) and the keys closest "
      "to a trigger");
  cmd->add_flag("--json", o->json, "JSON object (fields in docs/cli.md)");
  cmd->add_option("--top", o->top, "keys shown per playbook (default 5)")
      ->check(CLI::Range(0, 100));
  cmd->callback([&globals, o] { RunStatus(globals, *o); });
}

}  // namespace mxward::cli
