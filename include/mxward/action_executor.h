// ActionExecutor: one kind of action (nftables ban, PostfixAdmin suspension, webhook, mail, exec)
// with its lifecycle. The ActionDispatcher owns the executors and calls them from its worker
// threads, never from the ingest/parse thread.
//
// Apply and Revert must be idempotent: the outbox re-runs an action whose completion was not
// recorded (crash between apply and commit), so applying twice must leave one effect. A returned
// Status with transient() == true is retried with backoff; any other error fails the action.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/incident.h"
#include "mxward/status.h"

namespace mxward {

class ActionExecutor {
 public:
  virtual ~ActionExecutor() = default;

  // The ActionRequest::type values this executor handles ("ban", "webhook", ...).
  virtual bool Handles(std::string_view type) const = 0;
  // Prepares: connects, creates the nftables table, checks credentials. Called once before
  // the first Apply and again after a failed Check.
  virtual Status Start() = 0;
  virtual Status Apply(const ActionRecord& action) = 0;
  virtual Status Revert(const ActionRecord& action) = 0;
  // Is the effect still in place? (The ban is in the kernel set; the mailbox is still suspended.)
  virtual Result<bool> Check(const ActionRecord& action) = 0;
  virtual void Stop() = 0;
  // Called by the dispatcher about once a second on the executor's own worker thread (never
  // concurrently with Apply/Revert), to notice and repair lost state: the nftables table deleted
  // by `nft flush ruleset` is re-created with every unexpired ban. Executors with nothing to
  // watch keep the default.
  virtual Status Maintain() { return Status::Ok(); }
};

// --- optional interfaces executors may implement ------------------------------------------------

// An executor whose transient failure came with the server's own retry delay (HTTP 429/503
// Retry-After): the dispatcher waits at least that long before the next attempt.
class RetryAfterSource {
 public:
  virtual ~RetryAfterSource() = default;
  // The delay the last failed Apply/Revert of this action asked for, once; nullopt if none.
  virtual std::optional<std::chrono::milliseconds> TakeRetryAfter(std::int64_t action_id) = 0;
};

// An executor that can apply several actions of its type together (nftables: one transaction
// for a burst of bans). The dispatcher hands it the actions queued on its lane (apply only, no
// reverts), in claim order; it returns one Status per action, in the same order, each what
// Apply() would have returned for that action alone, and each is recorded as its own outcome.
// The same idempotency rule holds: applying a batch twice leaves one effect per action.
class BatchApplier {
 public:
  virtual ~BatchApplier() = default;
  virtual std::vector<Status> ApplyMany(const std::vector<const ActionRecord*>& actions) = 0;
  // Whether the action may be part of an ApplyMany batch; the worker's batch stops before one
  // that may not (a revert; an action that is a batch of its own, nftables' cluster_batch).
  virtual bool Batchable(const ActionRecord& action) const { return !action.revert; }
};

// Handles action types that are requested but have nothing configured to run them ("ban"
// without [nftables], "webhook" with no [webhook.NAME], everything under a global dry_run): the
// dispatcher records them as dry_run with the reason as the action's note, instead of failing
// them or leaving them pending forever.
class DryRunExecutor final : public ActionExecutor {
 public:
  // type -> reason ("no [nftables] section in mxward.toml").
  explicit DryRunExecutor(std::map<std::string, std::string, std::less<>> reasons)
      : reasons_(std::move(reasons)) {}
  bool Handles(std::string_view type) const override { return reasons_.count(type) > 0; }
  Status Start() override { return Status::Ok(); }
  Status Apply(const ActionRecord&) override { return Status::Ok(); }
  Status Revert(const ActionRecord&) override { return Status::Ok(); }
  Result<bool> Check(const ActionRecord&) override { return false; }
  void Stop() override {}
  std::string Reason(std::string_view type) const;

 private:
  std::map<std::string, std::string, std::less<>> reasons_;
};

}  // namespace mxward
