// ActionRegistry: the one place that knows every action backend (nftables, PostfixAdmin, webhook,
// mail, exec). The daemon and the CLI build and validate executors through it and never name a
// backend themselves; a new backend is added here and in actions/registry/executor_registry.cpp.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/status.h"

namespace mxward {

// The executors mxward.toml enables ([nftables], [postfixadmin], [webhook.NAME], [mail],
// [exec.NAME]); each opens its own connection to store_path when it needs the store.
// `notes` receives one line per executor that runs in dry-run and why ("nftables: dry-run, no
// CAP_NET_ADMIN"), for the start-up message. Known types with nothing configured go to a
// DryRunExecutor (last in the list).
Result<std::vector<std::unique_ptr<ActionExecutor>>> BuildExecutors(
    const Config& config, const std::string& store_path, std::vector<Diagnostic>* diagnostics,
    std::vector<std::string>* notes);

// [rules] local_domains_from_postfixadmin: PostfixAdmin's active domains, read once through the
// [postfixadmin] connection settings (an empty list when the setting is off). An error when the
// setting is on and [postfixadmin] is absent or its database cannot be read; the caller then keeps
// [rules] local_domains alone and says so.
Result<std::vector<std::string>> LocalDomainsFromBackends(const Config& config);

// Validates every action section of mxward.toml ([nftables], [postfixadmin], [webhook.NAME],
// [mail], [exec.NAME]) with the readers BuildExecutors uses, without opening a connection or
// touching the kernel: problems go to `diagnostics` as file:line:col. False if any was found.
bool CheckActionSections(const Config& config, std::vector<Diagnostic>* diagnostics);

// One [[action]] of a playbook as the CLI hands it over for checking (the action floor does not
// read playbooks): its type, each parameter's literal value or nullopt when the value is a
// template ("{sasl_user}") known only when the action runs, and where it is written.
struct PlaybookActionUse {
  std::string type;
  std::map<std::string, std::optional<std::string>> params;
  std::string file;
  int line = 0;
  int column = 0;
};

// Asks of every playbook action what its executor will ask when it runs, so `mxward check`, the
// start and a reload refuse what would fail at 3 a.m. instead: a mail recipient that is not an
// address, a webhook or exec target with no section of that name (or none named where several
// exist), a ban's `ports` naming a port group [nftables] does not define. Types whose section is
// absent run as dry-run and only their literal values are checked. False if any problem was
// reported (file:line:col).
bool CheckPlaybookActions(const Config& config, std::span<const PlaybookActionUse> uses,
                          std::vector<Diagnostic>* diagnostics);

}  // namespace mxward
