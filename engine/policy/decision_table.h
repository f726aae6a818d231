// DecisionTable: the decisions in force that the policy servers answer from: banned addresses
// and prefixes, and accounts whose login or sending is stopped, each until its expiry.
//
// What feeds it: the incidents the playbook engine opens (DecisionFeed wraps the pipeline's
// IncidentSink), the store's active bans and suspensions at start (so a restart forgets nothing),
// and the admin's control requests (bans add/remove, accounts suspend/restore). Only actions that
// will run count: a dry-run action decides nothing.
//
// Which answer: an address is banned when some prefix in force covers it; the longest covering
// prefix is the one reported (its reason and expiry are the most specific). An account's
// decisions are per kind: `suspend` stops its logins and its mail, `suspend_sending` defers its
// mail (a temporary refusal: the client keeps the message), `hold_queue` accepts its mail into
// Postfix's hold queue for review. Account names compare ASCII case-insensitively.
//
// Threading: owned by one thread, the pipeline's io thread, where both the feed and the policy
// servers run, so reads need no lock and no request waits. Memory: one entry per decision; expired
// entries are dropped by Expire() (the daemon calls it once a second) and on lookup.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mxward/incident.h"
#include "mxward/ip_address.h"
#include "mxward/time.h"

namespace mxward {

struct BanDecision {
  IpPrefix prefix;
  UnixMicros until = 0;  // 0: until removed
  std::string reason;    // the playbook or "by hand"
};

enum class AccountDecisionKind : std::uint8_t { kSuspend, kSuspendSending, kHoldQueue };
inline constexpr int kAccountDecisionKinds = 3;

// "suspend", "suspend_sending", "hold_queue" (the action types that make them).
std::string_view AccountDecisionKindName(AccountDecisionKind kind);
bool ParseAccountDecisionKind(std::string_view name, AccountDecisionKind* out);

// Whether a ban of these `ports` (its scope: docs/actions.md, "Port scopes") keeps the address
// off the mail services the policy servers answer for: "" or "mail", "all", "*" (a revert of every
// scope), or a port list holding one of the default mail ports (25, 465, 587, 110, 143, 993, 995,
// 4190). "web" and the other named groups do not: a webmail ban must not refuse the address's
// mail (issue 15).
bool BanScopeCoversMail(std::string_view ports);

struct AccountDecision {
  bool active = false;
  UnixMicros until = 0;  // 0: until restored
  std::string reason;
};

class DecisionTable {
 public:
  // Adds or extends a ban: a later `until` (or 0) replaces an earlier one.
  void Ban(const IpPrefix& prefix, UnixMicros until, std::string reason);
  void Unban(const IpPrefix& prefix);
  void SetAccount(std::string_view user, AccountDecisionKind kind, UnixMicros until,
                  std::string reason);
  void ClearAccount(std::string_view user, AccountDecisionKind kind);

  // An incident's action as the dispatcher will run it (ban {address, duration_s}; suspend,
  // suspend_sending, hold_queue {user, duration_s}); revert undoes it. Other types and dry-run
  // actions change nothing. Returns true when it changed the table.
  bool Apply(const ActionRequest& action, bool revert, UnixMicros now, std::string_view reason);

  // The longest prefix in force at `now` covering address, or nullptr.
  const BanDecision* FindBan(const IpAddress& address, UnixMicros now) const;
  // The account's decision of that kind in force at `now`, or nullptr.
  const AccountDecision* FindAccount(std::string_view user, AccountDecisionKind kind,
                                     UnixMicros now) const;

  // Drops what expired by now. Returns how many entries went.
  std::size_t Expire(UnixMicros now);
  std::size_t ban_count() const;
  std::size_t account_count() const { return accounts_.size(); }

 private:
  struct Accounts {
    AccountDecision kinds[kAccountDecisionKinds];
  };

  // Prefix length -> masked address -> ban; longest lengths first.
  std::map<int, std::unordered_map<IpAddress, BanDecision>, std::greater<>> bans_v4_;
  std::map<int, std::unordered_map<IpAddress, BanDecision>, std::greater<>> bans_v6_;
  std::unordered_map<std::string, Accounts> accounts_;
};

}  // namespace mxward
