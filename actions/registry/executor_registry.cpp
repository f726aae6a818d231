// BuildExecutors: the executors mxward.toml enables, in routing order, and a DryRunExecutor for
// the known action types nothing is configured to run. Also the factories of the notifiers and
// exec (webhook_notifier.h, mail_notifier.h, exec_action.h), which share one preamble.
//
// Decision: an action whose type has no executor is not left pending (it would sit in the outbox
// forever) and not failed (nothing went wrong: the site simply has no firewall or PostfixAdmin
// configured); it is recorded as dry_run with the reason as its note, visible in
// `mxward incidents show`. An unknown type still fails ("no executor handles ...").
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "actions/exec/exec_action.h"
#include "actions/mail/mail_notifier.h"
#include "actions/nftables/nftables_blocker.h"
#include "actions/postfixadmin/postfixadmin_accounts.h"
#include "actions/webhook/webhook_notifier.h"
#include "mxward/action_registry.h"
#include "mxward/action_types.h"

namespace mxward {

namespace {

// What MakeWebhookNotifier, MakeMailNotifier and MakeExecAction have in common: read the
// options (errors go to diagnostics); nothing configured -> no executor; the global dry_run -> no
// executor and a note (BuildExecutors then records their actions as dry_run with the reason);
// otherwise `make` builds the executor, adding its own notes.
template <typename Options, typename Configured, typename Make>
Result<std::unique_ptr<ActionExecutor>> MakeConfiguredExecutor(std::string_view name,
                                                               const Config& config,
                                                               std::vector<Diagnostic>* diagnostics,
                                                               std::vector<std::string>* notes,
                                                               Configured configured, Make make) {
  auto options = Options::FromConfig(config, diagnostics);
  if (!options.ok()) return options.status();
  if (!configured(*options)) return std::unique_ptr<ActionExecutor>();
  if (config.dry_run) {
    notes->push_back(fmt::format("{}: dry-run (dry_run = true in the config)", name));
    return std::unique_ptr<ActionExecutor>();
  }
  return std::unique_ptr<ActionExecutor>(make(std::move(*options)));
}

}  // namespace

Result<std::unique_ptr<ActionExecutor>> MakeWebhookNotifier(const Config& config,
                                                            const std::string& store_path,
                                                            std::vector<Diagnostic>* diagnostics,
                                                            std::vector<std::string>* notes) {
  return MakeConfiguredExecutor<WebhookOptions>(
      "webhook", config, diagnostics, notes,
      [](const WebhookOptions& o) { return !o.targets.empty(); },
      [&](WebhookOptions o) {
        for (const auto& [name, t] : o.targets) {
          if (!t.verify_tls)
            notes->push_back(fmt::format("webhook.{}: TLS verification is off", name));
        }
        return std::make_unique<WebhookNotifier>(std::move(o), store_path);
      });
}

Result<std::unique_ptr<ActionExecutor>> MakeMailNotifier(const Config& config,
                                                         const std::string& store_path,
                                                         std::vector<Diagnostic>* diagnostics,
                                                         std::vector<std::string>* notes) {
  // Without [mail] the options are the defaults, whose url is empty (a [mail] must have one).
  return MakeConfiguredExecutor<MailOptions>(
      "mail", config, diagnostics, notes, [](const MailOptions& o) { return !o.url.empty(); },
      [&](MailOptions o) {
        if (o.url.rfind("smtp://", 0) == 0 && !o.starttls && !o.password.empty()) {
          notes->push_back(
              "mail: the SMTP password would cross the network in clear text; set "
              "starttls = true or use smtps://");
        }
        return std::make_unique<MailNotifier>(std::move(o), store_path, SystemClock::Instance());
      });
}

Result<std::unique_ptr<ActionExecutor>> MakeExecAction(const Config& config,
                                                       const std::string& store_path,
                                                       std::vector<Diagnostic>* diagnostics,
                                                       std::vector<std::string>* notes) {
  return MakeConfiguredExecutor<ExecOptions>(
      "exec", config, diagnostics, notes, [](const ExecOptions& o) { return !o.targets.empty(); },
      [&](ExecOptions o) { return std::make_unique<ExecAction>(std::move(o), store_path); });
}

Result<std::vector<std::unique_ptr<ActionExecutor>>> BuildExecutors(
    const Config& config, const std::string& store_path, std::vector<Diagnostic>* diagnostics,
    std::vector<std::string>* notes) {
  using Factory = Result<std::unique_ptr<ActionExecutor>> (*)(
      const Config&, const std::string&, std::vector<Diagnostic>*, std::vector<std::string>*);
  // One factory per mxward.toml section; the types each runs are the catalogue's rows that name
  // the section (action_types.h).
  struct Source {
    Factory make;
    std::string_view section;
    const char* missing;  // why the types run dry when the factory builds nothing
  };
  const char* const kGlobalDryRun = "dry-run: dry_run = true in mxward.toml";
  const Source sources[] = {
      {&MakeNftablesBlocker, "nftables", "dry-run: no [nftables] section in mxward.toml"},
      {&MakePostfixAdminAccounts, "postfixadmin",
       "dry-run: no [postfixadmin] section in mxward.toml"},
      {&MakeWebhookNotifier, "webhook", "dry-run: no [webhook.NAME] section in mxward.toml"},
      {&MakeMailNotifier, "mail", "dry-run: no [mail] section in mxward.toml"},
      {&MakeExecAction, "exec", "dry-run: no [exec.NAME] section in mxward.toml"},
  };

  std::vector<std::unique_ptr<ActionExecutor>> executors;
  std::map<std::string, std::string, std::less<>> dry;
  std::vector<std::string> errors;
  for (const Source& source : sources) {
    auto made = source.make(config, store_path, diagnostics, notes);
    if (!made.ok()) {
      errors.push_back(made.status().message());
      continue;
    }
    if (*made) {
      executors.push_back(std::move(*made));
      continue;
    }
    for (const ActionTypeInfo& info : kActionTypes) {
      if (info.section != source.section) continue;
      dry[std::string(info.type)] = config.dry_run ? kGlobalDryRun : source.missing;
    }
  }
  if (!errors.empty()) {
    return Status::InvalidArgument(
        fmt::format("cannot set up actions: {}", fmt::join(errors, "; ")));
  }
  if (!dry.empty()) {
    std::vector<std::string> types;
    for (const auto& [type, why] : dry) types.push_back(type);
    notes->push_back(fmt::format("actions recorded as dry_run (nothing configured to run them): {}",
                                 fmt::join(types, ", ")));
    executors.push_back(std::make_unique<DryRunExecutor>(std::move(dry)));
  }
  return executors;
}

bool CheckActionSections(const Config& config, std::vector<Diagnostic>* diagnostics) {
  const std::size_t before = diagnostics->size();
  bool ok = NftablesOptions::FromConfig(config, diagnostics).ok();
  ok = PostfixAdminOptions::FromConfig(config, diagnostics).ok() && ok;
  ok = WebhookOptions::FromConfig(config, diagnostics).ok() && ok;
  ok = MailOptions::FromConfig(config, diagnostics).ok() && ok;
  ok = ExecOptions::FromConfig(config, diagnostics).ok() && ok;
  return ok && diagnostics->size() == before;
}

namespace {

// The named-target rule webhook and exec share with their Apply: a literal target must be a
// configured section; no target is fine only when exactly one is configured.
template <typename Targets>
std::optional<std::string> TargetProblem(const PlaybookActionUse& use, const Targets& targets,
                                         std::string_view section) {
  auto it = use.params.find("target");
  if (it == use.params.end()) {
    if (targets.size() > 1) {
      return fmt::format("{} action names no target and several [{}.NAME] are configured", use.type,
                         section);
    }
    return std::nullopt;
  }
  if (!it->second) return std::nullopt;  // a template: known when the action runs
  if (targets.find(*it->second) == targets.end()) {
    std::vector<std::string> names;
    for (const auto& [name, t] : targets) names.push_back(name);
    return fmt::format("{} action: no [{}.{}] in mxward.toml (configured: {})", use.type, section,
                       *it->second, fmt::join(names, ", "));
  }
  return std::nullopt;
}

}  // namespace

bool CheckPlaybookActions(const Config& config, std::span<const PlaybookActionUse> uses,
                          std::vector<Diagnostic>* diagnostics) {
  // Sections with errors are reported by CheckActionSections; here they count as absent.
  std::vector<Diagnostic> ignored;
  const auto webhook = WebhookOptions::FromConfig(config, &ignored);
  const auto exec = ExecOptions::FromConfig(config, &ignored);
  const auto nftables = NftablesOptions::FromConfig(config, &ignored);
  const std::size_t before = diagnostics->size();
  for (const PlaybookActionUse& use : uses) {
    auto report = [&](std::string message) {
      diagnostics->push_back(Diagnostic{use.file, use.line, use.column, std::move(message)});
    };
    if (use.type == "mail") {
      // [mail] itself must name a recipient (MailOptions), so only the action's own can be wrong.
      auto to = use.params.find("to");
      if (to != use.params.end() && to->second && !PlausibleMailAddress(*to->second)) {
        report(
            fmt::format("mail action: to = \"{}\" is not an address like admin@example.org "
                        "(the mail executor would refuse it); leave 'to' out to use [mail] to",
                        *to->second));
      }
    } else if (use.type == "ban" && nftables.ok()) {
      // A port group mxward.toml does not define would fail every ban of the playbook.
      auto ports = use.params.find("ports");
      if (ports != use.params.end() && ports->second) {
        auto scope = ResolveBanScope(*nftables, *ports->second);
        if (!scope.ok()) report("ban action: ports: " + scope.status().message());
      }
    } else if (use.type == "webhook" && webhook.ok() && !webhook->targets.empty()) {
      if (auto problem = TargetProblem(use, webhook->targets, "webhook")) report(*problem);
    } else if (use.type == "exec" && exec.ok() && !exec->targets.empty()) {
      if (auto problem = TargetProblem(use, exec->targets, "exec")) report(*problem);
    }
  }
  return diagnostics->size() == before;
}

Result<std::vector<std::string>> LocalDomainsFromBackends(const Config& config) {
  if (!config.local_domains_from_postfixadmin) return std::vector<std::string>{};
  if (!config.document.contains("postfixadmin")) {
    return Status::InvalidArgument(
        "local_domains_from_postfixadmin needs a [postfixadmin] section");
  }
  std::vector<Diagnostic> diags;
  auto options = PostfixAdminOptions::FromConfig(config, &diags);
  if (!options.ok()) return options.status();
  auto connection = SqlConnection::Open(options->database);
  if (!connection.ok()) return connection.status();
  return ReadPostfixAdminDomains(connection->get(), *options);
}

}  // namespace mxward
