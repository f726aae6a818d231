// Evaluation of the compiled playbook objects against an Event: no allocation, no string lookup.
#include "mxward/playbook.h"

#include <cstdlib>

#include <re2/re2.h>

#include "engine/base/parse_number.h"

namespace mxward {

namespace {

bool EqualsLower(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

bool InList(std::string_view text, const std::vector<std::string>& values) {
  for (const auto& v : values) {
    if (EqualsLower(text, v)) return true;
  }
  return false;
}

// The field as a number; false when absent or not a number.
bool NumberOf(const Event& e, Field f, double* out) {
  if (!e.has(f)) return false;
  if (f == Field::kSpamScore) {
    *out = e.spam_score;
    return true;
  }
  const auto v = ParseNumber<double>(e.get(f));
  if (v) *out = *v;
  return v.has_value();
}

// "example.org" or any subdomain of it ("mx.example.org"), case-insensitively.
bool DomainMatches(std::string_view domain, const std::string& allowed) {
  if (domain.size() < allowed.size()) return false;
  std::string_view tail = domain.substr(domain.size() - allowed.size());
  if (!EqualsLower(tail, allowed)) return false;
  return domain.size() == allowed.size() || domain[domain.size() - allowed.size() - 1] == '.';
}

std::string_view DomainPart(std::string_view user) {
  const std::size_t at = user.rfind('@');
  return at == std::string_view::npos ? std::string_view() : user.substr(at + 1);
}

}  // namespace

int ClientPrefixLength(const IpAddress& a) { return a.is_v4() ? 32 : kIpv6ClientPrefix; }

int KeyPart::LengthFor(const IpAddress& a) const {
  if (prefix_len < 0) return ClientPrefixLength(a);
  if (a.is_v4()) return prefix_len > 32 ? 32 : prefix_len;
  return prefix_len > 32 ? prefix_len : prefix_len * 2;
}

std::string_view TriggerTypeName(TriggerType t) {
  switch (t) {
    case TriggerType::kCount:
      return "count";
    case TriggerType::kDistinct:
      return "distinct";
    case TriggerType::kConsecutive:
      return "consecutive";
    case TriggerType::kNovel:
      return "novel";
  }
  return "count";
}

bool Condition::Matches(const Event& e) const {
  const std::string_view v = e.get(field);
  switch (op) {
    case ConditionOp::kEquals:
      return e.has(field) && EqualsLower(v, values[0]);
    case ConditionOp::kNotEquals:
      return !(e.has(field) && EqualsLower(v, values[0]));
    case ConditionOp::kIn:
      return e.has(field) && InList(v, values);
    case ConditionOp::kNotIn:
      return !(e.has(field) && InList(v, values));
    case ConditionOp::kRegex:
      return e.has(field) && RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *regex);
    case ConditionOp::kNotRegex:
      return !(e.has(field) && RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *regex));
    case ConditionOp::kCidr:
    case ConditionOp::kNotCidr: {
      bool in = false;
      if (e.client_ip.valid()) {
        for (const auto& p : cidrs) in = in || p.Contains(e.client_ip);
      }
      return op == ConditionOp::kCidr ? in : !in;
    }
    case ConditionOp::kLess:
    case ConditionOp::kLessEqual:
    case ConditionOp::kGreater:
    case ConditionOp::kGreaterEqual: {
      double x = 0;
      if (!NumberOf(e, field, &x)) return false;
      if (op == ConditionOp::kLess) return x < number;
      if (op == ConditionOp::kLessEqual) return x <= number;
      if (op == ConditionOp::kGreater) return x > number;
      return x >= number;
    }
    case ConditionOp::kExists:
      return e.has(field) == exists;
    case ConditionOp::kLocalDomain:
    case ConditionOp::kNotLocalDomain: {
      bool local = false;
      if (e.has(field)) {
        const std::size_t at = v.rfind('@');
        const std::string_view domain = at == std::string_view::npos ? v : v.substr(at + 1);
        for (const auto& d : values) local = local || (!domain.empty() && DomainMatches(domain, d));
      }
      return op == ConditionOp::kLocalDomain ? local : !local;
    }
  }
  return false;
}

bool EventMatcher::empty() const {
  for (bool b : types) {
    if (b) return false;
  }
  return true;
}

bool EventMatcher::Matches(const Event& e) const {
  if (!types[static_cast<int>(e.type)]) return false;
  for (const auto& c : conditions) {
    if (!c.Matches(e)) return false;
  }
  return true;
}

bool Allowlist::Allows(const Event& e) const {
  if (e.client_ip.valid()) {
    for (const auto& p : cidrs) {
      if (p.Contains(e.client_ip)) return true;
    }
  }
  // User names and domains in failures, rejects and inbound mail are whatever the client wrote:
  // they never exempt anyone. Only events where the server vouches for the user or domain do.
  switch (e.type) {
    case EventType::kAuthSuccess:
    case EventType::kMessageSubmitted:
    case EventType::kMessageQueued:
    case EventType::kDelivery:
    case EventType::kDkimVerify:
    case EventType::kSpamVerdict:
    case EventType::kRateLimited:
      break;
    default:
      return false;
  }
  if (!users.empty()) {
    for (Field f : {Field::kSaslUser}) {
      if (e.has(f) && InList(e.get(f), users)) return true;
    }
  }
  if (!domains.empty()) {
    std::string_view ds[] = {e.get(Field::kRecipientDomain), e.get(Field::kDkimDomain),
                             DomainPart(e.get(Field::kSaslUser))};
    for (std::string_view d : ds) {
      if (d.empty()) continue;
      for (const auto& a : domains) {
        if (DomainMatches(d, a)) return true;
      }
    }
  }
  return false;
}

}  // namespace mxward
