#include "engine/policy/decision_table.h"

#include <algorithm>
#include <utility>

#include "engine/base/ascii_lower.h"

namespace mxward {

namespace {

constexpr std::string_view kKindNames[kAccountDecisionKinds] = {"suspend", "suspend_sending",
                                                                "hold_queue"};

bool Active(UnixMicros until, UnixMicros now) { return until == 0 || until > now; }

// A later expiry (or none) wins when the same decision is made twice.
UnixMicros LaterOf(UnixMicros a, UnixMicros b) {
  if (a == 0 || b == 0) return 0;
  return std::max(a, b);
}

// duration_s of an action, in microseconds after now; 0 (until undone) when absent or not a
// positive whole number.
UnixMicros UntilOf(const ActionRequest& action, UnixMicros now) {
  auto it = action.params.find("duration_s");
  if (it == action.params.end() || !it->is_number_integer()) return 0;
  const std::int64_t seconds = it->get<std::int64_t>();
  if (seconds <= 0) return 0;
  return now + seconds * kMicrosPerSecond;
}

std::string StringParam(const ActionRequest& action, const char* name) {
  auto it = action.params.find(name);
  if (it == action.params.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

}  // namespace

std::string_view AccountDecisionKindName(AccountDecisionKind kind) {
  return kKindNames[static_cast<int>(kind)];
}

bool ParseAccountDecisionKind(std::string_view name, AccountDecisionKind* out) {
  for (int i = 0; i < kAccountDecisionKinds; ++i) {
    if (kKindNames[i] == name) {
      *out = static_cast<AccountDecisionKind>(i);
      return true;
    }
  }
  return false;
}

void DecisionTable::Ban(const IpPrefix& prefix, UnixMicros until, std::string reason) {
  if (!prefix.address().valid()) return;
  auto& by_len = prefix.address().is_v4() ? bans_v4_ : bans_v6_;
  auto [it, inserted] = by_len[prefix.length()].try_emplace(prefix.address());
  BanDecision& d = it->second;
  d.until = inserted ? until : LaterOf(d.until, until);
  d.prefix = prefix;
  d.reason = std::move(reason);
}

void DecisionTable::Unban(const IpPrefix& prefix) {
  auto& by_len = prefix.address().is_v4() ? bans_v4_ : bans_v6_;
  auto it = by_len.find(prefix.length());
  if (it == by_len.end()) return;
  it->second.erase(prefix.address());
  if (it->second.empty()) by_len.erase(it);
}

void DecisionTable::SetAccount(std::string_view user, AccountDecisionKind kind, UnixMicros until,
                               std::string reason) {
  if (user.empty()) return;
  AccountDecision& d = accounts_[AsciiLower(user)].kinds[static_cast<int>(kind)];
  d.until = d.active ? LaterOf(d.until, until) : until;
  d.active = true;
  d.reason = std::move(reason);
}

void DecisionTable::ClearAccount(std::string_view user, AccountDecisionKind kind) {
  auto it = accounts_.find(AsciiLower(user));
  if (it == accounts_.end()) return;
  it->second.kinds[static_cast<int>(kind)] = AccountDecision{};
  if (std::none_of(std::begin(it->second.kinds), std::end(it->second.kinds),
                   [](const AccountDecision& d) { return d.active; })) {
    accounts_.erase(it);
  }
}

bool BanScopeCoversMail(std::string_view ports) {
  if (ports.empty() || ports == "mail" || ports == "all" || ports == "*") return true;
  if (ports[0] < '0' || ports[0] > '9') return false;  // a named group other than mail
  static constexpr int kMailPorts[] = {25, 465, 587, 110, 143, 993, 995, 4190};
  int port = 0;
  for (std::size_t i = 0; i <= ports.size(); ++i) {
    if (i < ports.size() && ports[i] >= '0' && ports[i] <= '9') {
      port = std::min(port * 10 + (ports[i] - '0'), 1 << 20);
      continue;
    }
    if (std::find(std::begin(kMailPorts), std::end(kMailPorts), port) != std::end(kMailPorts)) {
      return true;
    }
    port = 0;
  }
  return false;
}

bool DecisionTable::Apply(const ActionRequest& action, bool revert, UnixMicros now,
                          std::string_view reason) {
  if (action.dry_run) return false;
  if (action.type == "ban") {
    if (!BanScopeCoversMail(StringParam(action, "ports"))) return false;
    IpPrefix prefix;
    // The engine re-prints ban addresses from binary; parse again rather than trust text.
    if (!IpPrefix::Parse(StringParam(action, "address"), &prefix)) return false;
    if (revert) {
      Unban(prefix);
    } else {
      Ban(prefix, UntilOf(action, now), std::string(reason));
    }
    return true;
  }
  AccountDecisionKind kind;
  if (!ParseAccountDecisionKind(action.type, &kind)) return false;
  const std::string user = StringParam(action, "user");
  if (user.empty()) return false;
  if (revert) {
    ClearAccount(user, kind);
  } else {
    SetAccount(user, kind, UntilOf(action, now), std::string(reason));
  }
  return true;
}

const BanDecision* DecisionTable::FindBan(const IpAddress& address, UnixMicros now) const {
  if (!address.valid()) return nullptr;
  const auto& by_len = address.is_v4() ? bans_v4_ : bans_v6_;
  for (const auto& [len, bans] : by_len) {  // longest first
    auto it = bans.find(address.Masked(len));
    if (it != bans.end() && Active(it->second.until, now)) return &it->second;
  }
  return nullptr;
}

const AccountDecision* DecisionTable::FindAccount(std::string_view user, AccountDecisionKind kind,
                                                  UnixMicros now) const {
  if (user.empty() || accounts_.empty()) return nullptr;
  auto it = accounts_.find(AsciiLower(user));
  if (it == accounts_.end()) return nullptr;
  const AccountDecision& d = it->second.kinds[static_cast<int>(kind)];
  return d.active && Active(d.until, now) ? &d : nullptr;
}

std::size_t DecisionTable::Expire(UnixMicros now) {
  std::size_t dropped = 0;
  for (auto* by_len : {&bans_v4_, &bans_v6_}) {
    for (auto it = by_len->begin(); it != by_len->end();) {
      dropped += std::erase_if(it->second,
                               [now](const auto& kv) { return !Active(kv.second.until, now); });
      it = it->second.empty() ? by_len->erase(it) : std::next(it);
    }
  }
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    bool any = false;
    for (AccountDecision& d : it->second.kinds) {
      if (d.active && !Active(d.until, now)) {
        d = AccountDecision{};
        ++dropped;
      }
      any = any || d.active;
    }
    it = any ? std::next(it) : accounts_.erase(it);
  }
  return dropped;
}

std::size_t DecisionTable::ban_count() const {
  std::size_t n = 0;
  for (const auto* by_len : {&bans_v4_, &bans_v6_}) {
    for (const auto& [len, bans] : *by_len) n += bans.size();
  }
  return n;
}

}  // namespace mxward
