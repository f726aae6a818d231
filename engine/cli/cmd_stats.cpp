// `mxward stats [--since 24h]`: the daily summary. Events per type (hourly counts the pipeline
// writes), incidents per playbook, top offenders and a sparkline of incidents per hour.
//
// The hour in progress: a running daemon hands its event counts to the store once an hour (and at
// shutdown), so the store alone misses up to an hour. `stats` asks the daemon for the counts it
// holds (op stats.pending, daemon_queries.h) and adds them, rather than making the daemon write
// every minute: the answer is exact to the line, costs the daemon nothing when nobody asks, and
// the store keeps one row per hour and type. Incidents are written as they happen and need no
// such help. Without a daemon nothing is pending (it flushed at shutdown); a daemon that cannot
// be asked (no permission on the socket) is named, with what is missing.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cli/admin_request.h"
#include "engine/cli/commands.h"
#include "engine/cli/table_printer.h"
#include "mxward/control_protocol.h"

namespace mxward::cli {
namespace {

constexpr UnixMicros kHour = 3600 * kMicrosPerSecond;
constexpr std::size_t kMaxSparkline = 72;

struct StatsOptions {
  std::string since = "24h";
  int top = 10;
  bool json = false;
};

// Adds the counts a running daemon holds for the hour in progress. True when a daemon answered;
// false when none runs (nothing pending) or it could not be asked (said on stderr).
bool AddPendingCounts(const Config& config, UnixMicros since_hour,
                      std::vector<std::pair<std::string, std::int64_t>>* events) {
  auto response =
      CallControl(config.control_socket, {{"op", "stats.pending"}}, std::chrono::seconds(5));
  if (!response.ok()) {
    if (response.status().code() != Status::Code::kNotFound) {
      std::fprintf(stderr,
                   "mxward: events of the current hour not written yet are missing: cannot ask "
                   "the daemon: %s\n",
                   response.status().message().c_str());
    }
    return false;
  }
  auto result = ControlResult(*response);
  if (!result.ok()) {
    std::fprintf(stderr, "mxward: events of the current hour not written yet are missing: %s\n",
                 result.status().message().c_str());
    return false;
  }
  // Counts of a daemon that writes another store (`--db other.db`) are not this store's.
  std::error_code ec1, ec2;
  const auto theirs = std::filesystem::weakly_canonical(result->value("store", std::string()), ec1);
  const auto ours = std::filesystem::weakly_canonical(config.store_path, ec2);
  if (ec1 || ec2 || theirs != ours) {
    std::fprintf(stderr,
                 "mxward: the daemon on %s writes %s, not %s: its current hour is not added\n",
                 config.control_socket.c_str(), result->value("store", std::string("?")).c_str(),
                 config.store_path.c_str());
    return false;
  }
  const auto hour = result->value("hour", std::int64_t{-1});
  if (hour < since_hour) return true;
  const nlohmann::json pending = result->value("events", nlohmann::json::object());
  if (!pending.is_object()) return true;
  for (const auto& [type, n] : pending.items()) {
    if (!n.is_number_integer()) continue;
    auto it = std::find_if(events->begin(), events->end(),
                           [&, &type = type](const auto& e) { return e.first == type; });
    if (it == events->end()) {
      events->emplace_back(type, n.get<std::int64_t>());
    } else {
      it->second += n.get<std::int64_t>();
    }
  }
  // As the store orders them: most first, then by name.
  std::sort(events->begin(), events->end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  return true;
}

void RunStats(const GlobalOptions& globals, const StatsOptions& o) {
  const Config config = LoadEffectiveConfig(globals);
  const UnixMicros now = CliNow();
  const UnixMicros since = now - *ParseDurationSeconds(o.since) * kMicrosPerSecond;
  // Hourly counts are keyed by the hour's start: include the hour `since` falls in.
  const UnixMicros since_hour = since - ((since % kHour) + kHour) % kHour;
  auto store = OpenStoreOrExit(config, StoreUse::kRead);
  auto events = store->EventCountsSince(since_hour);
  if (!events.ok()) ExitWith(events.status());
  const bool live = AddPendingCounts(config, since_hour, &*events);
  auto playbooks = store->IncidentsPerPlaybook(since);
  if (!playbooks.ok()) ExitWith(playbooks.status());
  auto top = store->TopOffenders(since, o.top);
  if (!top.ok()) ExitWith(top.status());
  auto hourly = store->IncidentsPerHour(since_hour);
  if (!hourly.ok()) ExitWith(hourly.status());

  // Buckets from the hour of `since` to the hour of now, merged so the line stays short.
  const std::int64_t hours = (now - since_hour) / kHour + 1;
  const std::int64_t per_bucket = std::max<std::int64_t>(
      1, (hours + kMaxSparkline - 1) / static_cast<std::int64_t>(kMaxSparkline));
  std::vector<std::int64_t> buckets(
      static_cast<std::size_t>((hours + per_bucket - 1) / per_bucket));
  std::int64_t total = 0;
  for (const auto& [hour, n] : *hourly) {
    const std::int64_t b = (hour - since_hour) / kHour / per_bucket;
    if (b >= 0 && b < static_cast<std::int64_t>(buckets.size()))
      buckets[static_cast<std::size_t>(b)] += n;
    total += n;
  }

  if (o.json) {
    nlohmann::json j;
    j["since"] = FormatRfc3339(since);
    j["until"] = FormatRfc3339(now);
    j["events"] = nlohmann::json::object();
    j["includes_daemon_pending"] = live;
    for (const auto& [type, n] : *events) j["events"][type] = n;
    j["incidents"] = total;
    j["incidents_per_playbook"] = nlohmann::json::object();
    for (const auto& p : *playbooks) j["incidents_per_playbook"][p.name] = p.count;
    j["top_offenders"] = nlohmann::json::array();
    for (const auto& t : *top) {
      const auto space = t.name.find(' ');
      j["top_offenders"].push_back({{"key_kind", t.name.substr(0, space)},
                                    {"key", t.name.substr(space + 1)},
                                    {"incidents", t.count}});
    }
    j["hours_per_bucket"] = per_bucket;
    j["incidents_per_bucket"] = buckets;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  const bool color = StdoutWantsColor();
  std::string out = fmt::format("Since {} ({})\n", FormatLocalTime(since), FormatAge(since, now));
  out += "\nEvents by type:\n";
  if (events->empty()) out += "  (none recorded)\n";
  std::size_t w = 0;
  for (const auto& [type, n] : *events) w = std::max(w, type.size());
  for (const auto& [type, n] : *events) out += fmt::format("  {:<{}}  {:>8}\n", type, w, n);

  out += "\nIncidents by playbook:\n";
  if (playbooks->empty()) out += "  (none)\n";
  w = 0;
  for (const auto& p : *playbooks) w = std::max(w, p.name.size());
  for (const auto& p : *playbooks) out += fmt::format("  {:<{}}  {:>8}\n", p.name, w, p.count);

  out += "\nTop offenders:\n";
  if (top->empty()) out += "  (none)\n";
  w = 0;
  for (const auto& t : *top) w = std::max(w, t.name.size());
  for (const auto& t : *top) out += fmt::format("  {:<{}}  {:>8}\n", t.name, w, t.count);

  const std::int64_t peak = buckets.empty() ? 0 : *std::max_element(buckets.begin(), buckets.end());
  out += fmt::format("\nIncidents per {}: {} incidents, peak {}\n",
                     per_bucket == 1 ? std::string("hour") : fmt::format("{} hours", per_bucket),
                     total, peak);
  out += "  " + Colorize(Sparkline(buckets), Color::kBlue, color) + "\n";
  std::fputs(out.c_str(), stdout);
}

}  // namespace

void AddStatsCommand(CLI::App& app, GlobalOptions& globals) {
  auto o = std::make_shared<StatsOptions>();
  CLI::App* cmd = app.add_subcommand("stats", "Summary: events, incidents, top offenders");
  cmd->add_option("--since", o->since, "how far back (default 24h)")
      ->check([](const std::string& s) -> std::string {
        auto d = ParseDurationSeconds(s);
        if (!d.ok()) return d.status().message();
        return *d > 0 ? "" : "must be longer than 0s";
      });
  cmd->add_option("--top", o->top, "how many offenders (default 10)")->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", o->json, "JSON object (fields in docs/cli.md)");
  cmd->callback([&globals, o] { RunStats(globals, *o); });
}

}  // namespace mxward::cli
