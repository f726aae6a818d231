#include "engine/policy/postfix_policy.h"

#include <charconv>
#include <utility>

#include <fmt/format.h>

#include "engine/base/one_line.h"

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
    std::uint32_t n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    current_.recipient_count = ec == std::errc() && p == value.data() + value.size() ? n : 0;
  }
  line_.clear();
  return Status::Ok();
}

std::string PostfixPolicy::Answer(const PostfixPolicyRequest& request) {
  ++counters_.requests;
  if (request.request != "smtpd_access_policy") return "DUNNO";
  const UnixMicros now = clock_->Now();
  IpAddress client;
  if (IpAddress::Parse(request.client_address, &client) &&
      decisions_->FindBan(client, now) != nullptr) {
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
  if (!data && !StateIs(request, "MAIL") && !StateIs(request, "RCPT")) return "DUNNO";
  if (data) Feed(request, now);
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

void PostfixPolicy::Feed(const PostfixPolicyRequest& request, UnixMicros now) {
  if (!feed_) return;
  Event e;
  e.type = EventType::kMessageSubmitted;
  e.time = now;
  IpAddress client;
  if (IpAddress::Parse(request.client_address, &client)) {
    e.client_ip = client;
    e.set(Field::kClientIp, request.client_address);
  }
  const std::string nrcpt = std::to_string(request.recipient_count);
  const std::string line = fmt::format(
      "postfix-policy: DATA from sasl_username={}, client={}, sender=<{}>, nrcpt={}, "
      "queue_id={}",
      OneLine(request.sasl_username), OneLine(request.client_address), OneLine(request.sender),
      nrcpt, OneLine(request.queue_id));
  e.line = line;
  e.program = "postfix-policy";
  e.parser = "postfix-policy";
  e.set(Field::kSaslUser, request.sasl_username);
  e.set(Field::kSender, request.sender);
  e.set(Field::kSenderDomain, DomainOf(request.sender));
  e.set(Field::kQueueId, request.queue_id);
  e.set(Field::kNrcpt, nrcpt);
  e.set(Field::kService, "smtpd");
  e.set(Field::kSource, "postfix-policy");
  ++counters_.events;
  feed_(e);
}

}  // namespace mxward
