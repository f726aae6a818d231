// ActionTypes: the one catalogue of the action types mxward knows (docs/actions.md), with the
// parameters a playbook's [[action]] may give each, which of those it must give, the parameter
// that names what the action acts on, whether the effect lasts and can be reverted, and the
// mxward.toml section that configures the executor running it.
//
// Everything that needs to know the action types reads this table: the playbook loader (which
// parameters an [[action]] may have), the control requests (what `bans`/`accounts` may enqueue
// and revert), the CLI, the dispatcher (per-type caps, allowlists, ordering by subject) and the
// executor registry (which types each section's executor runs). A new action type is one row
// here plus its executor in actions/. Constant data, safe from any thread.
#pragma once

#include <array>
#include <span>
#include <string>
#include <string_view>

namespace mxward {

struct ActionTypeInfo {
  std::string_view type;
  // What a playbook [[action]] may set besides type, duration and dry_run. The engine adds
  // duration_s to ban and queue_ids to hold_queue when it expands an incident's actions.
  std::span<const std::string_view> params;
  std::span<const std::string_view> required;  // params a playbook must set (a subset of params)
  // The param naming what the action acts on: an address, a mailbox, a target. Actions on one
  // subject run in order; the allowlists are checked against it.
  std::string_view subject_param;
  bool revertible;           // a lasting effect, undone by a revert action of the same type
  bool account;              // a mailbox suspension that `mxward accounts` lists and restores
  std::string_view section;  // mxward.toml section of its executor ([nftables], [webhook.NAME])
};

namespace action_types_detail {
inline constexpr std::string_view kAddress[] = {"address"};
// `ports`: the ban's port scope, "mail" | "web" | "all" | an [nftables] port group | a list of
// those and port numbers (nftables_blocker.h). Literal text: never a template of event fields.
inline constexpr std::string_view kBan[] = {"address", "ports"};
inline constexpr std::string_view kUser[] = {"user"};
inline constexpr std::string_view kTarget[] = {"target"};
inline constexpr std::string_view kWebhook[] = {"target", "format"};
inline constexpr std::string_view kMail[] = {"to", "subject", "body"};
}  // namespace action_types_detail

// In the order people read them: the firewall, the mailbox, then notifications.
inline constexpr ActionTypeInfo kActionTypes[] = {
    {"ban", action_types_detail::kBan, {}, "address", true, false, "nftables"},
    {"suspend_sending", action_types_detail::kUser, {}, "user", true, true, "postfixadmin"},
    {"suspend", action_types_detail::kUser, {}, "user", true, true, "postfixadmin"},
    {"require_password_change", action_types_detail::kUser, {}, "user", true, true, "postfixadmin"},
    {"hold_queue", action_types_detail::kUser, {}, "user", true, false, "postfixadmin"},
    {"webhook", action_types_detail::kWebhook, action_types_detail::kTarget, "target", false, false,
     "webhook"},
    // `to` is optional: without it the mail goes to [mail] to (CheckPlaybookActions makes sure
    // one of the two names a recipient).
    {"mail", action_types_detail::kMail, {}, "to", false, false, "mail"},
    {"exec", action_types_detail::kTarget, action_types_detail::kTarget, "target", false, false,
     "exec"},
};

// The row of type, or nullptr for a type mxward does not know.
constexpr const ActionTypeInfo* FindActionType(std::string_view type) {
  for (const ActionTypeInfo& info : kActionTypes) {
    if (info.type == type) return &info;
  }
  return nullptr;
}

constexpr bool IsKnownActionType(std::string_view type) { return FindActionType(type) != nullptr; }

constexpr bool IsRevertibleActionType(std::string_view type) {
  const ActionTypeInfo* info = FindActionType(type);
  return info != nullptr && info->revertible;
}

// Whether the action acts on a mailbox (its subject is a user): a suspension, a password change,
// a held queue. Such actions need verified evidence by default (Playbook::verified_evidence_only).
constexpr bool ActsOnMailbox(std::string_view type) {
  const ActionTypeInfo* info = FindActionType(type);
  return info != nullptr && info->subject_param == "user";
}

constexpr bool IsAccountActionType(std::string_view type) {
  const ActionTypeInfo* info = FindActionType(type);
  return info != nullptr && info->account;
}

// "suspend_sending, suspend, require_password_change": the kinds `mxward accounts` takes.
inline std::string AccountActionTypes() {
  std::string out;
  for (const ActionTypeInfo& info : kActionTypes) {
    if (!info.account) continue;
    if (!out.empty()) out += ", ";
    out += info.type;
  }
  return out;
}

// The type names, in table order: for "known: ..." lists and per-type settings.
inline constexpr auto kActionTypeNames = [] {
  std::array<std::string_view, std::size(kActionTypes)> names{};
  for (std::size_t i = 0; i < names.size(); ++i) names[i] = kActionTypes[i].type;
  return names;
}();

}  // namespace mxward
