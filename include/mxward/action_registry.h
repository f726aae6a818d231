// ActionRegistry: the one place that knows every action backend (nftables, PostfixAdmin, webhook,
// mail, exec). The daemon and the CLI build and validate executors through it and never name a
// backend themselves; a new backend is added here and in actions/registry/executor_registry.cpp.
#pragma once

#include <memory>
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

// Validates every action section of mxward.toml ([nftables], [postfixadmin], [webhook.NAME],
// [mail], [exec.NAME]) with the readers BuildExecutors uses, without opening a connection or
// touching the kernel: problems go to `diagnostics` as file:line:col. False if any was found.
bool CheckActionSections(const Config& config, std::vector<Diagnostic>* diagnostics);

}  // namespace mxward
