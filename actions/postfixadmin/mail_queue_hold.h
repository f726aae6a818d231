// MailQueueHold: holds (and releases) a suspended account's mail already in Postfix's queue with
// `postsuper -h <queue id>` / `postsuper -H <queue id>`, run as an argv (argv_command.h), never
// through a shell. Queue ids come from correlation of Postfix's log, so each is checked against
// Postfix's queue-id alphabet (short: hex; long: [0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]) before it
// becomes an argument (so none can start with '-' and be read as an option).
//
// Used by PostfixAdminAccounts for the "hold_queue" action (params user, queue_ids).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/status.h"

namespace mxward {

class MailQueueHold {
 public:
  MailQueueHold(std::string postsuper, std::chrono::milliseconds timeout)
      : postsuper_(std::move(postsuper)), timeout_(timeout) {}

  // True for a Postfix queue id (short or long form); false for anything else.
  static bool IsQueueId(std::string_view id);

  // postsuper -h for each id. Invalid ids are an InvalidArgument error and nothing is run.
  // A non-zero exit of postsuper is an error naming it, with the first line it printed.
  Status Hold(const std::vector<std::string>& queue_ids);
  Status Release(const std::vector<std::string>& queue_ids);  // postsuper -H

  // The argv Hold/Release would run (for dry-run logs and tests).
  std::vector<std::string> HoldArgv(const std::vector<std::string>& queue_ids, bool release) const;

 private:
  Status Run(const std::vector<std::string>& queue_ids, bool release);

  std::string postsuper_;
  std::chrono::milliseconds timeout_;
};

}  // namespace mxward
