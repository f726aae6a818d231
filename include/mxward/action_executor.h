// ActionExecutor: one kind of action (nftables ban, PostfixAdmin suspension, webhook, mail, exec)
// with its lifecycle. The ActionDispatcher owns the executors and calls them from its worker
// threads, never from the ingest/parse thread.
//
// Apply and Revert must be idempotent: the outbox re-runs an action whose completion was not
// recorded (crash between apply and commit), so applying twice must leave one effect. A returned
// Status with transient() == true is retried with backoff; any other error fails the action.
#pragma once

#include <string_view>

#include "mxward/incident_store.h"
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

}  // namespace mxward
