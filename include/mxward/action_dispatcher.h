// ActionDispatcher: runs the actions in the store's outbox on its own worker threads.
//
// The playbook engine never runs an action: incidents are written with their actions pending
// (IncidentStore::RecordIncidents), then Notify() wakes the dispatcher, which claims due actions,
// runs them through the ActionExecutor that handles their type, and records done / retry (with
// exponential backoff and jitter) / failed. Because the outbox is in SQLite, a crash or restart
// re-runs whatever was pending. A per-type cap on actions per minute refuses the excess (status
// refused, reported in the incident) so a flood of incidents cannot flood the firewall or an
// admin's inbox. A stuck executor blocks only its own worker, never the hot path.
//
// Threads: one claimer thread reads the outbox and hands claimed actions to one worker thread per
// executor (executors are used from one thread at a time, and one queue per executor keeps the
// order of actions of one type), so a webhook receiver that never answers delays only webhooks.
// Claiming is one BEGIN IMMEDIATE transaction that moves next_attempt_at of each claimed row to
// now + claim_lease: no other worker or process (a CLI `RunDueOnce` next to the daemon) can take
// the same action (IncidentStore::ClaimDueActions holds the protocol).
//
// Crash recovery: each claim also records the claimer's owner token (actions.claimed_by). Every
// dispatcher holds, for its whole life, an OFD lock (fcntl F_OFD_SETLK) on the byte at offset
// <token> of "<store>-claims.lock". At Start, RunDueOnce and about once a second, a dispatcher
// asks the kernel (F_OFD_GETLK) about every owner with unexpired claims: a free lock means that
// owner is dead, and its claims are due again at once. So the next `serve` re-runs what was in
// flight when the last one was killed, without waiting out the 5-minute lease, while claims of a
// live dispatcher (the daemon, a CLI next to it, another dispatcher in the same process) are
// never taken. Why a kernel lock and not a pid or a heartbeat: the kernel releases it however
// the owner dies (kill -9, OOM), pids are reused and shared by dispatchers of one process, and a
// heartbeat would have to be renewed by a process that may be stuck in a long action. If the
// lock file cannot be created, the owner is 0 and only the lease recovers its claims.
//
// Timed suspensions: about once a second (and in RunDueOnce) the dispatcher queues the revert of
// every suspension whose `until` passed (IncidentStore::QueueExpiredSuspensionReverts): one
// durable revert action per suspension, never two, across restarts.
//
// Order: actions of one type about one subject (the same webhook target, address, user or mail
// recipient) run in id order: while one waits for a retry, later ones of the same subject wait
// behind it, so "ban" then "undo ban" never runs the wrong way round and notifications to one
// receiver arrive in the order the incidents were opened.
//
// Maintenance: each worker calls its executor's Maintain() every maintain_interval (about once a
// second), between actions, so it never runs concurrently with Apply/Revert and a stuck executor
// delays only its own maintenance. An executor is started (Start()) at its worker's first tick
// rather than at its first action, so the nftables table and its bans are back as soon as the
// daemon starts. A failing Start or Maintain is logged (rate-limited) and tried again next tick.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/action_executor.h"
#include "mxward/allow_set.h"
#include "mxward/config.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

struct DispatcherOptions {
  // Kept for configuration compatibility: the dispatcher runs one worker thread per executor
  // (executors are not thread-safe and one queue per executor keeps order), so this is only
  // checked to be >= 1.
  int workers = 2;
  int max_attempts = 10;
  std::int64_t base_backoff_ms = 1000;
  std::int64_t max_backoff_ms = 10 * 60 * 1000;
  // The safety valve (actions/dispatch/action_valve.h): incident actions started per minute per
  // (type, playbook) and per (type, /24 or /48 of the target); beyond, deferred. 0 = no cap.
  int default_per_minute_cap = 600;
  std::map<std::string, int> per_minute_cap;  // overrides by type
  int per_prefix_cap = 60;
  // How long a claimed action stays invisible to other claimers. Must exceed the longest run of
  // one action (executor timeouts); after a crash, the action is re-run when it expires.
  std::int64_t claim_lease_ms = 5 * 60 * 1000;
  // How often the claimer looks at the outbox without a Notify() (retries coming due, actions
  // queued by another process such as the CLI).
  std::int64_t poll_interval_ms = 1000;
  int claim_batch = 64;  // actions claimed per transaction
  // How often each executor's Maintain() runs on its worker thread (between actions, never
  // during one): the nftables table flushed by someone else is re-created within this time.
  std::int64_t maintain_interval_ms = 1000;
  // Defence in depth behind the playbook engine's allowlist: incident actions aimed at these are
  // refused (status refused). From the global [allow] settings.
  std::vector<IpPrefix> allow_addresses;
  std::vector<std::string> allow_users;    // compared case-insensitively
  std::vector<std::string> allow_domains;  // a user "x@<domain>" or the domain itself
  // The daemon's compiled address allowlist (the [allow] addresses plus the runtime `mxward
  // allow` entries), swapped by the daemon while the dispatcher runs. When given it is the one
  // the dispatcher asks (it holds allow_addresses too, and follows a reload); null:
  // allow_addresses only.
  std::shared_ptr<const AllowSetHandle> allow_set;

  // Read from [dispatcher] in mxward.toml (and the allowlist from the core config).
  static Result<DispatcherOptions> FromConfig(const Config& config,
                                              std::vector<Diagnostic>* diagnostics);
};

struct DispatcherStats {
  std::uint64_t applied = 0;
  std::uint64_t retried = 0;
  std::uint64_t failed = 0;
  std::uint64_t refused = 0;
  std::uint64_t reverted = 0;
  std::uint64_t dry_run = 0;        // handled by a DryRunExecutor
  std::uint64_t deferred = 0;       // times the safety valve held an action back
  UnixMicros last_deferred_at = 0;  // the last of those; 0: never
  std::uint64_t maintained = 0;     // Maintain() ticks (Start + Maintain), all executors
  // From the store, refreshed by the claimer about once a second (never on a scrape's or the
  // ingest thread's time); -1 until the first refresh.
  std::int64_t outbox_depth = -1;
  std::int64_t outbox_oldest_age_seconds = -1;
  std::int64_t active_bans = -1;
};

// How an action ended (or, for retried, one attempt): the `outcome` label of
// mxward_actions_total.
enum class ActionOutcome : std::uint8_t {
  kApplied,
  kReverted,
  kFailed,
  kRefused,
  kDryRun,
  kRetried,
  kDeferred  // one hold-back by the safety valve; the action runs later
};
inline constexpr int kActionOutcomeCount = 7;
std::string_view ActionOutcomeName(ActionOutcome outcome);

class ActionDispatcher {
 public:
  ActionDispatcher(std::string store_path, std::vector<std::unique_ptr<ActionExecutor>> executors,
                   DispatcherOptions options, const Clock* clock);
  ~ActionDispatcher();  // Stop(0) if still running
  ActionDispatcher(const ActionDispatcher&) = delete;
  ActionDispatcher& operator=(const ActionDispatcher&) = delete;

  Status Start();  // starts workers; they run what is already pending at once
  void Notify();   // new actions are in the outbox
  // Called on a worker thread, after the store records an action done (the cluster link wakes
  // to publish a ban). Must be quick and must not call back into the dispatcher. Before Start().
  void SetDoneHook(std::function<void(const ActionRecord&)> hook);
  // Stops taking new work, waits up to drain for running actions, stops executors. Claimed
  // actions that did not start are handed back to the outbox at once; an action still running
  // after drain is left to its (detached) worker and re-run by the next start if it never
  // finished.
  void Stop(std::chrono::milliseconds drain);
  // Runs every due action once on the calling thread (the CLI without a daemon; tests). An action
  // that fails transiently is scheduled for retry, not retried here. Only on a dispatcher whose
  // workers never ran (Start() was never called): a worker Stop() detached may still own a lane.
  Status RunDueOnce();
  DispatcherStats stats() const;
  // Actions of this type (a catalogue type; anything else is counted as "other") that ended so.
  // Any thread.
  std::uint64_t outcome_count(std::string_view type, ActionOutcome outcome) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- parts of the dispatcher with no threads or I/O, exposed for tests --------------------------

// The ceiling of the delay before the retry that follows failed attempt number `attempt` (1 for
// the first): min(max_backoff_ms, base_backoff_ms * 2^(attempt-1)).
std::int64_t BackoffCeilingMs(const DispatcherOptions& options, int attempt);
// "Full jitter": a delay uniformly spread over [0, ceiling], from a uniform random value in
// [0, 1). Spreads the retries of many actions that failed together (a receiver came back).
std::int64_t JitteredBackoffMs(const DispatcherOptions& options, int attempt, double uniform01);

// The key that orders actions: same type and same subject (target, address, user or to).
std::string ActionOrderKey(const ActionRecord& action);

// Why an action aimed at an allowlisted address or user must be refused; nullopt otherwise.
// `now` decides whether a runtime entry with an expiry is still in force.
std::optional<std::string> AllowlistRefusal(const DispatcherOptions& options,
                                            const ActionRecord& action, UnixMicros now = 0);

}  // namespace mxward
