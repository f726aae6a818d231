#include "engine/cli/engine_assembly.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "engine/cli/commands.h"
#include "engine/policy/dovecot_policy_server.h"
#include "engine/policy/postfix_policy_server.h"
#include "mxward/action_registry.h"
#include "mxward/incident_store.h"
#include "mxward/playbook.h"

namespace mxward::cli {

namespace {
[[noreturn]] void ExitWithDiagnostics(const std::vector<Diagnostic>& diags, const Status& st) {
  for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
  throw CliExit(kExitFailure, st.message());
}
}  // namespace

std::vector<std::string> ParserDirs(const Config& config) {
  std::vector<std::string> dirs;
  for (const auto& d : config.rule_dirs) {
    std::error_code ec;
    auto p = std::filesystem::path(d) / "parsers";
    if (std::filesystem::is_directory(p, ec)) dirs.push_back(p.string());
  }
  return dirs;
}

Result<std::shared_ptr<const ParserPack>> LoadParserPack(const std::vector<std::string>& dirs,
                                                         const Config& config,
                                                         std::vector<Diagnostic>* diagnostics) {
  if (dirs.empty()) {
    return Status::NotFound("no parser directory found (expected <rules dir>/parsers)");
  }
  ParserPackOptions options;
  options.trusted_proxies = config.trusted_proxies;
  auto pack = ParserPack::Load(dirs, diagnostics, options);
  if (!pack.ok()) return pack.status();
  return std::shared_ptr<const ParserPack>(std::move(*pack));
}

std::shared_ptr<const ParserPack> LoadParserPackOrExit(const std::vector<std::string>& dirs,
                                                       const Config& config) {
  if (dirs.empty()) {
    throw CliExit(kExitUsage, "no parser directory found (expected <rules dir>/parsers)");
  }
  std::vector<Diagnostic> diags;
  auto pack = LoadParserPack(dirs, config, &diags);
  if (!pack.ok()) ExitWithDiagnostics(diags, pack.status());
  return std::move(*pack);
}

Result<std::unique_ptr<PlaybookEngine>> LoadCheckedPlaybooks(const Config& config,
                                                             std::vector<Diagnostic>* diagnostics) {
  auto engine = PlaybookEngine::Load(config, diagnostics);
  if (!engine.ok()) return engine.status();
  std::vector<PlaybookActionUse> uses;
  for (const auto& name : (*engine)->playbook_names()) {
    const Playbook* pb = (*engine)->FindPlaybook(name);
    if (pb == nullptr) continue;
    for (const ActionSpec& a : pb->actions) {
      PlaybookActionUse use{a.type, {}, pb->file, a.line, a.column};
      for (const auto& [param, tpl] : a.params) {
        const bool literal = std::all_of(tpl.parts.begin(), tpl.parts.end(), [](const auto& p) {
          return p.kind == Template::Kind::kLiteral;
        });
        std::string text;
        for (const auto& p : tpl.parts) text += p.literal;
        use.params[param] = literal ? std::optional<std::string>(text) : std::nullopt;
      }
      uses.push_back(std::move(use));
    }
  }
  if (!CheckPlaybookActions(config, uses, diagnostics)) {
    return Status::InvalidArgument("a playbook action would fail when it runs");
  }
  return engine;
}

Config WithBackendDomains(const Config& config) {
  auto extra = LocalDomainsFromBackends(config);
  if (!extra.ok()) {
    spdlog::warn("[rules] local_domains_from_postfixadmin: {}; using [rules] local_domains alone",
                 extra.status().ToString());
    return config;
  }
  if (extra->empty()) return config;
  Config out = config;
  out.local_domains.insert(out.local_domains.end(), extra->begin(), extra->end());
  spdlog::info("local domains: {} from PostfixAdmin, {} from [rules] local_domains", extra->size(),
               config.local_domains.size());
  return out;
}

std::unique_ptr<PlaybookEngine> LoadPlaybooksOrExit(const Config& config) {
  for (const auto& d : config.rule_dirs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(d, ec)) {
      throw CliExit(kExitUsage, "rules directory " + d + " does not exist");
    }
  }
  std::vector<Diagnostic> diags;
  auto engine = LoadCheckedPlaybooks(WithBackendDomains(config), &diags);
  if (!engine.ok()) ExitWithDiagnostics(diags, engine.status());
  return std::move(*engine);
}

}  // namespace mxward::cli

namespace mxward::cli {

std::vector<std::string> SharedWithoutClusterWarnings(const PlaybookEngine& engine,
                                                      bool cluster_enabled) {
  std::vector<std::string> out;
  if (cluster_enabled) return out;
  for (const std::string& name : engine.playbook_names()) {
    const Playbook* pb = engine.FindPlaybook(name);
    if (pb == nullptr || !pb->shared) continue;
    out.push_back(
        fmt::format("{}:{}:{}: 'shared = true' without [cluster] in mxward.toml: "
                    "playbook {} counts this node's events only",
                    pb->file, pb->shared_line, pb->shared_column, name));
  }
  return out;
}

std::string UnverifiableEvidenceWarning(const PlaybookEngine& engine,
                                        const std::vector<InputSpec>& inputs,
                                        const DovecotPolicyServerOptions& dovecot,
                                        const PostfixPolicyServerOptions& postfix) {
  std::vector<std::string> strict;
  for (const auto& name : engine.playbook_names()) {
    const Playbook* pb = engine.FindPlaybook(name);
    if (pb != nullptr && pb->verified_evidence_only) strict.push_back(name);
  }
  // Requests only Dovecot (the secret) or Postfix (the socket's mode and group) can send.
  const bool verified_policy_requests = (dovecot.enabled && !dovecot.secret.empty()) ||
                                        (postfix.enabled && !postfix.socket_path.empty());
  if (strict.empty() || verified_policy_requests) return "";
  for (const InputSpec& in : inputs) {
    // The writer of these inputs' lines is known (journald's _UID, the peer's credentials).
    if (in.trusted || in.type == InputType::kJournal || in.type == InputType::kUnixDgram ||
        in.type == InputType::kUnixStream) {
      return "";
    }
  }
  return fmt::format(
      "playbook(s) {} act on mailboxes and count only verified lines, but no input gives "
      "any (udp, tcp, tls and file lines have no known writer): they will open nothing. Read the "
      "journal or a unix socket input (packaging/rsyslog/60-mxward-trusted.conf), mark an input "
      "whose writers you vouch for `trusted = true`, or set `evidence = \"any\"` in the "
      "playbook (docs/playbooks.md, \"Evidence\")",
      fmt::join(strict, ", "));
}

void PrimeEngineFromStore(PlaybookEngine* engine, IncidentStore* store, UnixMicros now,
                          bool with_history) {
  for (const auto& name : engine->BaselinePlaybooks()) {
    const Playbook* pb = engine->FindPlaybook(name);
    const std::int64_t ttl = pb ? pb->trigger.baseline.ttl_seconds : 30 * 86400;
    auto entries = store->LoadBaselines(name, now - ttl * kMicrosPerSecond);
    if (!entries.ok()) {
      spdlog::warn("cannot load the learned baseline of {}: {}", name, entries.status().ToString());
      continue;
    }
    Status st = engine->ImportBaselines(name, *entries);
    if (!st.ok()) spdlog::warn("baseline of {}: {}", name, st.ToString());
  }
  if (!with_history) return;
  // The incidents still in their life: a trigger of one of them after a restart updates it, as
  // before the restart, instead of counting as another offence (and escalating) in the engine.
  if (auto open = store->IncidentsInTheirLife(now, 1'000'000); open.ok()) {
    std::vector<PriorIncident> live;
    live.reserve(open->size());
    for (const auto& i : *open) live.push_back({i.playbook, i.key_kind, i.key, i.open_until});
    const std::size_t taken = engine->ImportOpenIncidents(live);
    if (taken > 0) spdlog::info("engine: {} incident(s) still in their life", taken);
  } else {
    spdlog::warn("cannot load the incidents still in their life: {}", open.status().ToString());
  }
  std::int64_t lookback = 0;
  for (const auto& name : engine->playbook_names()) {
    const Playbook* pb = engine->FindPlaybook(name);
    if (pb && pb->escalation.enabled)
      lookback = std::max(lookback, pb->escalation.lookback_seconds);
  }
  if (lookback == 0) return;
  IncidentQuery q;
  q.since = now - lookback * kMicrosPerSecond;
  q.limit = 1'000'000;
  auto incidents = store->ListIncidents(q);
  if (!incidents.ok()) {
    spdlog::warn("cannot load recent incidents for escalation: {}", incidents.status().ToString());
    return;
  }
  std::vector<PriorIncident> prior;
  prior.reserve(incidents->size());
  for (const auto& i : *incidents) {
    // A replay of old logs is no offence of today's: escalation counts live incidents only.
    if (i.origin == IncidentOrigin::kReplay) continue;
    prior.push_back({i.playbook, i.key_kind, i.key, i.last_seen});
  }
  engine->ImportPriorIncidents(prior);
}

}  // namespace mxward::cli
