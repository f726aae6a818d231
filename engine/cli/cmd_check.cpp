// `mxward check`: validates mxward.toml, the playbooks and the parser pack, and prints every
// problem at once as `file:line:col: error: message` (stderr), exit 1 on errors. Without errors it
// prints one summary line (stdout) and exits 0. Nothing is started and no state is touched, so it
// is safe to run before `systemctl reload mxward`: every section `serve` reads is validated by the
// same reader `serve` uses (inputs, metrics, control, dispatcher, policy servers, each action
// type), without connecting to anything.
#include <cstdio>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "engine/cli/commands.h"
#include "engine/cli/engine_assembly.h"
#include "engine/cluster/cluster_options.h"
#include "engine/policy/dovecot_policy_server.h"
#include "engine/policy/postfix_policy_server.h"
#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "mxward/control_protocol.h"
#include "mxward/input_config.h"
#include "mxward/metrics_server.h"
#include "mxward/parser_pack.h"
#include "mxward/playbook_engine.h"
#include "mxward/provenance.h"

namespace mxward::cli {

namespace {

void RunCheck(const GlobalOptions& g) {
  std::vector<Diagnostic> diags;
  Config config = Config::Defaults();
  std::string config_note = "built-in defaults";
  std::error_code ec;
  const bool exists = std::filesystem::exists(g.config_path, ec);
  if (g.config_given && !exists) {
    throw CliExit(kExitUsage, "config file " + g.config_path + " does not exist");
  }
  bool loaded_ok = false;
  // What serve would open and answer, for the evidence warning below; unset after a config error.
  std::optional<std::vector<InputSpec>> inputs;
  DovecotPolicyServerOptions dovecot;
  bool cluster = false;  // a valid [cluster]: shared playbooks share
  PostfixPolicyServerOptions postfix;
  if (exists) {
    auto loaded = Config::Load(g.config_path, &diags);
    loaded_ok = loaded.ok();
    if (loaded_ok) config = std::move(*loaded);
    config_note = g.config_path;
  }
  if (loaded_ok) {
    // The readers serve runs at start; each adds located diagnostics and touches nothing.
    if (auto parsed = ParseInputSpecs(config, &diags); parsed.ok()) {
      // Warnings do not fail the check: an open input may be what the admin wants.
      for (const auto& w : InputWarnings(*parsed)) std::fprintf(stderr, "%s\n", w.c_str());
      inputs = std::move(*parsed);
    }
    ProvenanceSettings provenance;
    if (ReadProvenanceSettings(config, &provenance, &diags).ok()) {
      std::vector<std::string> warnings;
      (void)ProvenancePolicy::Resolve(provenance, &warnings);
      for (const auto& w : warnings) std::fprintf(stderr, "%s\n", w.c_str());
    }
    (void)MetricsServerOptions::FromConfig(config, &diags);
    (void)ControlServerOptions::FromConfig(config, &diags);
    (void)DispatcherOptions::FromConfig(config, &diags);
    if (auto d = DovecotPolicyServerOptions::FromConfig(config, &diags); d.ok()) dovecot = *d;
    if (auto p = PostfixPolicyServerOptions::FromConfig(config, &diags); p.ok()) postfix = *p;
    if (auto c = ClusterOptions::FromConfig(config, &diags); c.ok()) {
      cluster = c->enabled;
    }
    (void)CheckActionSections(config, &diags);
  } else if (!exists) {
    std::vector<Diagnostic> none;  // the built-in defaults have nothing to report
    if (auto parsed = ParseInputSpecs(config, &none); parsed.ok()) inputs = std::move(*parsed);
  }
  // Keep going after config errors: the playbooks' problems are reported in the same run.
  if (!g.db_path.empty()) config.store_path = g.db_path;
  if (!g.rule_dirs.empty()) config.rule_dirs = g.rule_dirs;

  std::size_t playbooks = 0, parsers = 0;
  bool dirs_ok = true;
  for (const auto& d : config.rule_dirs) {
    if (!std::filesystem::is_directory(d, ec)) {
      diags.push_back(Diagnostic{d, 0, 0, "rules directory does not exist"});
      dirs_ok = false;
    }
  }
  if (dirs_ok) {
    auto engine = LoadCheckedPlaybooks(config, &diags);
    if (engine.ok()) playbooks = (*engine)->playbook_count();
    if (engine.ok() && inputs) {
      const std::string w = UnverifiableEvidenceWarning(**engine, *inputs, dovecot, postfix);
      if (!w.empty()) std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
    if (engine.ok()) {
      for (const auto& w : SharedWithoutClusterWarnings(**engine, cluster)) {
        std::fprintf(stderr, "warning: %s\n", w.c_str());
      }
    }
  }
  const auto parser_dirs = ParserDirs(config);
  if (parser_dirs.empty() && dirs_ok) {
    // serve refuses to start without one; check must not call the same directories ok.
    diags.push_back(Diagnostic{
        config.rule_dirs.empty() ? std::string("[rules] dirs") : config.rule_dirs.front(), 0, 0,
        "no parser directory found (expected <rules dir>/parsers): serve would refuse to "
        "start; add the shipped rules directory too (--rules /etc/mxward/rules.d --rules DIR)"});
  }
  if (!parser_dirs.empty()) {
    auto pack = ParserPack::Load(parser_dirs, &diags);
    if (pack.ok()) parsers = (*pack)->parser_count();
  }

  for (const auto& d : diags) std::fprintf(stderr, "%s\n", d.ToString().c_str());
  if (!diags.empty()) {
    throw CliExit(kExitFailure, fmt::format("{} error(s)", diags.size()));
  }
  std::string dirs;
  for (const auto& d : config.rule_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
  std::printf("ok: %zu playbooks and %zu parsers in %s; config: %s\n", playbooks, parsers,
              dirs.c_str(), config_note.c_str());
}

}  // namespace

void AddCheckCommand(CLI::App& app, GlobalOptions& globals) {
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Validate mxward.toml, the playbooks and the parser pack; print every problem as "
      "file:line:col: error: message and exit 1 when there is any");
  cmd->callback([&globals] { RunCheck(globals); });
}

}  // namespace mxward::cli
