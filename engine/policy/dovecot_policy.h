// DovecotPolicy: what mxward answers to Dovecot's authentication policy requests
// (auth_policy_server_url; src/auth/auth-policy.c in dovecot/core), without the transport.
//
//   POST <url>?command=allow   before the password is checked. Body: Dovecot's JSON, by default
//     {"login","pwhash","remote","device_id","protocol","session_id","fail_type","tls"}.
//     Answer {"status":S,"msg":M}: S = -1 refuses the login (Dovecot logs "Authentication failure
//     due to policy server refusal"), 0 lets the check go on, N > 0 delays it N seconds.
//   POST <url>?command=report  after the check, with "success" and "policy_reject" added. The
//     answer is not read. A failed or successful login becomes an event (auth_failure,
//     auth_success) with source "dovecot-policy" that enters the same playbook windows as log
//     events; only playbooks whose [match] names that source count it (docs/policy.md).
//
// Allow refuses an address some ban in force covers and an account under `suspend`; delays an
// attempt a playbook's [policy] soft threshold has been reached for (PlaybookEngine::
// PolicyDelaySeconds: the attempt, as a failure, probed both as a log event and as a report);
// everything else is let through (0). Nothing here writes to the store or waits: an answer is a
// lookup in the DecisionTable. Attacker-chosen text (login, remote) is parsed (remote into binary)
// and never chooses a decision; the msg is fixed text.
//
// Owned by the daemon; called on the pipeline's thread (decisions and windows without locks).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/policy/decision_table.h"
#include "mxward/allow_set.h"
#include "mxward/event.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

enum class DovecotPolicyCommand : std::uint8_t { kAllow, kReport };

struct DovecotPolicyRequest {
  DovecotPolicyCommand command = DovecotPolicyCommand::kAllow;
  std::string login;
  std::string pwhash;
  std::string remote;
  std::string device_id;
  std::string protocol;
  std::string session_id;
  std::string fail_type;  // "", credentials, account, expired, disabled, internal, policy
  bool tls = false;
  bool success = false;        // report only
  bool policy_reject = false;  // report only
};

// The command in a request target: "/?command=allow", "/policy?x=1&command=report".
// InvalidArgument naming what is wrong otherwise.
Result<DovecotPolicyCommand> ParseDovecotPolicyTarget(std::string_view target);
// Dovecot's JSON body: an object whose string and boolean members named above are read; others,
// and nested objects (attributes written "a/b"), are ignored. Strings longer than
// kMaxDovecotValueBytes are cut. InvalidArgument on anything that is not a JSON object.
Result<DovecotPolicyRequest> ParseDovecotPolicyBody(DovecotPolicyCommand command,
                                                    std::string_view body);
inline constexpr std::size_t kMaxDovecotValueBytes = 512;

struct DovecotPolicyAnswer {
  int status = 0;  // -1 refuse, 0 go on, N delay N seconds
  std::string msg;
  std::string ToJson() const;  // {"status":-1,"msg":"..."}
};

struct DovecotPolicyCounters {
  std::uint64_t allow = 0;
  std::uint64_t refused = 0;
  std::uint64_t delayed = 0;
  std::uint64_t reports = 0;
  std::uint64_t events = 0;  // reports that became an event
};

class DovecotPolicy {
 public:
  // feed: where report events go (the playbook engine on the pipeline's thread). The event's
  // string fields point into the request and are valid during the call only.
  using EventFn = std::function<void(const Event&)>;
  // delay: seconds to make an attempt wait (the running engine's PolicyDelaySeconds); may be
  // empty (no delays).
  using DelayFn = std::function<std::int64_t(const Event&)>;

  DovecotPolicy(const DecisionTable* decisions, EventFn feed, const Clock* clock,
                DelayFn delay = {})
      : decisions_(decisions), feed_(std::move(feed)), delay_(std::move(delay)), clock_(clock) {}

  DovecotPolicyAnswer Answer(const DovecotPolicyRequest& request);
  // The daemon's compiled address allowlist ([allow] plus `mxward allow`): an address it covers
  // is answered as if nothing were decided (no refusal, no delay), whatever bans are in force.
  void SetAllowSet(std::shared_ptr<const AllowSetHandle> allow) { allow_ = std::move(allow); }
  // Whether the server admits only requests carrying the shared secret ([policy.dovecot]
  // secret_file): then only Dovecot can have sent them, and the events fed from them are
  // verified (Event::verified) and count for playbooks that act on mailboxes. Without a secret,
  // any local process could have posted a report.
  void SetRequestsAuthenticated(bool authenticated) { authenticated_ = authenticated; }
  const DovecotPolicyCounters& counters() const { return counters_; }

 private:
  DovecotPolicyAnswer Allow(const DovecotPolicyRequest& request);
  void Report(const DovecotPolicyRequest& request);
  // The request as the event it would be, `failed` or not; string fields point into `request`.
  Event EventOf(const DovecotPolicyRequest& request, bool failed, std::string_view protocol) const;

  const DecisionTable* decisions_;
  std::shared_ptr<const AllowSetHandle> allow_;
  EventFn feed_;
  DelayFn delay_;
  const Clock* clock_;
  bool authenticated_ = false;
  DovecotPolicyCounters counters_;
};

}  // namespace mxward
