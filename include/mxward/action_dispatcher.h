// ActionDispatcher: runs the actions in the store's outbox on its own worker threads.
//
// The playbook engine never runs an action: incidents are written with their actions pending
// (IncidentStore::RecordIncidents), then Notify() wakes the dispatcher, which claims due actions,
// runs them through the ActionExecutor that handles their type, and records done / retry (with
// exponential backoff and jitter) / failed. Because the outbox is in SQLite, a crash or restart
// re-runs whatever was pending. A per-type cap on actions per minute refuses the excess (status
// refused, reported in the incident) so a flood of incidents cannot flood the firewall or an
// admin's inbox. A stuck executor blocks only its own worker, never the hot path.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mxward/action_executor.h"
#include "mxward/config.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

struct DispatcherOptions {
  int workers = 2;
  int max_attempts = 10;
  std::int64_t base_backoff_ms = 1000;
  std::int64_t max_backoff_ms = 10 * 60 * 1000;
  int default_per_minute_cap = 600;           // per action type
  std::map<std::string, int> per_minute_cap;  // overrides by type
  // Read from [dispatcher] in mxward.toml.
  static Result<DispatcherOptions> FromConfig(const Config& config,
                                              std::vector<Diagnostic>* diagnostics);
};

struct DispatcherStats {
  std::uint64_t applied = 0;
  std::uint64_t retried = 0;
  std::uint64_t failed = 0;
  std::uint64_t refused = 0;
  std::uint64_t reverted = 0;
};

class ActionDispatcher {
 public:
  ActionDispatcher(std::string store_path, std::vector<std::unique_ptr<ActionExecutor>> executors,
                   DispatcherOptions options, const Clock* clock);
  ~ActionDispatcher();

  Status Start();  // starts workers; they run what is already pending at once
  void Notify();   // new actions are in the outbox
  // Stops taking new work, waits up to drain for running actions, stops executors.
  void Stop(std::chrono::milliseconds drain);
  // Runs every due action once on the calling thread (the CLI without a daemon; tests).
  Status RunDueOnce();
  DispatcherStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The executors mxward.toml enables ([nftables], [postfixadmin], [webhook.NAME], [mail],
// [exec.NAME]); each opens its own connection to store_path when it needs the store.
// `notes` receives one line per executor that runs in dry-run and why ("nftables: dry-run, no
// CAP_NET_ADMIN"), for the start-up message.
Result<std::vector<std::unique_ptr<ActionExecutor>>> BuildExecutors(
    const Config& config, const std::string& store_path, std::vector<Diagnostic>* diagnostics,
    std::vector<std::string>* notes);

}  // namespace mxward
