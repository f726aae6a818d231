#include "engine/policy/postfix_policy.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "engine/base/ascii_lower.h"
#include "engine/base/one_line.h"
#include "engine/base/parse_number.h"

namespace mxward {

namespace {

std::string_view DomainOf(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

bool StateIs(const PostfixPolicyRequest& r, std::string_view state) {
  if (r.protocol_state.size() != state.size()) return false;
  for (std::size_t i = 0; i < state.size(); ++i) {
    char c = r.protocol_state[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != state[i]) return false;
  }
  return true;
}

}  // namespace

Status PostfixPolicyReader::Feed(std::string_view bytes, std::vector<PostfixPolicyRequest>* out) {
  if (!failed_.ok()) return failed_;
  for (char c : bytes) {
    if (c == '\n') {
      if (Status st = EndLine(out); !st.ok()) return failed_ = st;
      continue;
    }
    if (c == '\0') return failed_ = Status::InvalidArgument("a NUL byte in a request");
    if (line_.size() >= kMaxPostfixLineBytes) {
      return failed_ = Status::InvalidArgument(
                 fmt::format("a line longer than {} bytes", kMaxPostfixLineBytes));
    }
    line_.push_back(c);
  }
  return Status::Ok();
}

Status PostfixPolicyReader::EndLine(std::vector<PostfixPolicyRequest>* out) {
  std::string_view line(line_);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    // The empty line ends a request; an empty line before any attribute is not one.
    if (current_.attributes > 0) out->push_back(std::move(current_));
    current_ = PostfixPolicyRequest{};
    line_.clear();
    return Status::Ok();
  }
  if (++current_.attributes > kMaxPostfixAttributes) {
    return Status::InvalidArgument(
        fmt::format("more than {} attributes in one request", kMaxPostfixAttributes));
  }
  const auto eq = line.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Status::InvalidArgument("a line that is not name=value");
  }
  const std::string_view name = line.substr(0, eq);
  const std::string_view value = line.substr(eq + 1);
  if (name == "request") {
    current_.request = value;
  } else if (name == "protocol_state") {
    current_.protocol_state = value;
  } else if (name == "client_address") {
    current_.client_address = value;
  } else if (name == "sasl_username") {
    current_.sasl_username = value;
  } else if (name == "sender") {
    current_.sender = value;
  } else if (name == "recipient") {
    current_.recipient = value;
  } else if (name == "queue_id") {
    current_.queue_id = value;
  } else if (name == "instance") {
    current_.instance = value;
  } else if (name == "recipient_count") {
    current_.recipient_count = ParseNumber<std::uint32_t>(value).value_or(0);
  }
  line_.clear();
  return Status::Ok();
}

std::string PostfixPolicy::Answer(const PostfixPolicyRequest& request) {
  ++counters_.requests;
  if (request.request != "smtpd_access_policy") return "DUNNO";
  const UnixMicros now = clock_->Now();
  IpAddress client;
  const bool parsed = IpAddress::Parse(request.client_address, &client);
  if (parsed && allow_ && allow_->Get()->Contains(client, now)) return "DUNNO";
  if (parsed && decisions_->FindBan(client, now) != nullptr) {
    ++counters_.reject;
    return "REJECT 5.7.1 Access denied by policy";
  }
  const std::string& user = request.sasl_username;
  if (user.empty()) return "DUNNO";
  if (decisions_->FindAccount(user, AccountDecisionKind::kSuspend, now) != nullptr) {
    ++counters_.reject;
    return "REJECT 5.7.1 Account suspended, contact your administrator";
  }
  const bool data = StateIs(request, "DATA");
  const bool rcpt = StateIs(request, "RCPT");
  if (!data && !rcpt && !StateIs(request, "MAIL")) return "DUNNO";
  // Into the windows first: the request that crosses a threshold gets its incident's answer.
  if (data) Feed(request, EventType::kMessageSubmitted, now);
  if (rcpt && !request.recipient.empty() && FirstAsk(request)) {
    Feed(request, EventType::kRecipientSubmitted, now);
  }
  if (decisions_->FindAccount(user, AccountDecisionKind::kSuspendSending, now) != nullptr) {
    ++counters_.defer;
    return "DEFER_IF_PERMIT 4.7.1 Sending from this account is paused, try again later";
  }
  if (decisions_->FindAccount(user, AccountDecisionKind::kHoldQueue, now) != nullptr) {
    ++counters_.hold;
    return "HOLD mxward: held for review";
  }
  return "DUNNO";
}

bool PostfixPolicy::FirstAsk(const PostfixPolicyRequest& request) {
  if (request.instance.empty()) return true;  // nothing ties two requests together
  std::uint64_t h = std::hash<std::string_view>{}(request.instance);
  h ^= std::hash<std::string>{}(AsciiLower(request.recipient)) + 0x9e3779b97f4a7c15ull + (h << 6) +
       (h >> 2);
  h |= 1;  // 0 marks an empty slot
  if (std::find(recent_.begin(), recent_.end(), h) != recent_.end()) return false;
  recent_[recent_next_] = h;
  recent_next_ = (recent_next_ + 1) % kRecentRecipients;
  return true;
}

void PostfixPolicy::Feed(const PostfixPolicyRequest& request, EventType type, UnixMicros now) {
  if (!feed_) return;
  Event e;
  e.type = type;
  e.time = now;
  IpAddress client;
  if (IpAddress::Parse(request.client_address, &client)) {
    e.client_ip = client;
    e.set(Field::kClientIp, request.client_address);
  }
  const std::string nrcpt = std::to_string(request.recipient_count);
  const bool data = type == EventType::kMessageSubmitted;
  const std::string line =
      data ? fmt::format(
                 "postfix-policy: DATA from sasl_username={}, client={}, sender=<{}>, nrcpt={}, "
                 "queue_id={}",
                 OneLine(request.sasl_username), OneLine(request.client_address),
                 OneLine(request.sender), nrcpt, OneLine(request.queue_id))
           : fmt::format(
                 "postfix-policy: RCPT from sasl_username={}, client={}, sender=<{}>, "
                 "recipient=<{}>",
                 OneLine(request.sasl_username), OneLine(request.client_address),
                 OneLine(request.sender), OneLine(request.recipient));
  e.line = line;
  e.program = "postfix-policy";
  e.parser = "postfix-policy";
  e.verified = request.verified;
  e.set(Field::kSaslUser, request.sasl_username);
  e.set(Field::kSender, request.sender);
  e.set(Field::kSenderDomain, DomainOf(request.sender));
  e.set(Field::kQueueId, request.queue_id);
  if (data) {
    e.set(Field::kNrcpt, nrcpt);
  } else {
    e.set(Field::kRecipient, request.recipient);
    e.set(Field::kRecipientDomain, DomainOf(request.recipient));
  }
  e.set(Field::kService, "smtpd");
  e.set(Field::kSource, "postfix-policy");
  ++counters_.events;
  feed_(e);
}

}  // namespace mxward
