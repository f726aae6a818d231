#include "engine/policy/dovecot_policy.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/base/ascii_lower.h"
#include "engine/base/one_line.h"

namespace mxward {

Result<DovecotPolicyCommand> ParseDovecotPolicyTarget(std::string_view target) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) {
    return Status::InvalidArgument("no ?command= in the request target");
  }
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair == "command=allow") return DovecotPolicyCommand::kAllow;
    if (pair == "command=report") return DovecotPolicyCommand::kReport;
    if (pair.starts_with("command=")) {
      return Status::InvalidArgument("unknown command: expected allow or report");
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return Status::InvalidArgument("no ?command= in the request target");
}

Result<DovecotPolicyRequest> ParseDovecotPolicyBody(DovecotPolicyCommand command,
                                                    std::string_view body) {
  // No exceptions: a malformed body is an answer, not an unwinding.
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument("the body is not JSON");
  if (!doc.is_object()) return Status::InvalidArgument("the body is not a JSON object");
  DovecotPolicyRequest r;
  r.command = command;
  auto text = [&doc](const char* name, std::string* out) {
    auto it = doc.find(name);
    if (it == doc.end() || !it->is_string()) return;
    const auto& s = it->get_ref<const std::string&>();
    out->assign(s, 0, std::min(s.size(), kMaxDovecotValueBytes));
  };
  auto flag = [&doc](const char* name, bool* out) {
    auto it = doc.find(name);
    if (it != doc.end() && it->is_boolean()) *out = it->get<bool>();
  };
  text("login", &r.login);
  text("pwhash", &r.pwhash);
  text("remote", &r.remote);
  text("device_id", &r.device_id);
  text("protocol", &r.protocol);
  text("session_id", &r.session_id);
  text("fail_type", &r.fail_type);
  flag("tls", &r.tls);
  flag("success", &r.success);
  flag("policy_reject", &r.policy_reject);
  return r;
}

std::string DovecotPolicyAnswer::ToJson() const {
  nlohmann::json j = {{"status", status}, {"msg", msg}};
  return j.dump();
}

DovecotPolicyAnswer DovecotPolicy::Answer(const DovecotPolicyRequest& request) {
  if (request.command == DovecotPolicyCommand::kReport) {
    Report(request);
    return {0, ""};
  }
  return Allow(request);
}

DovecotPolicyAnswer DovecotPolicy::Allow(const DovecotPolicyRequest& request) {
  ++counters_.allow;
  const UnixMicros now = clock_->Now();
  IpAddress remote;
  const bool parsed = IpAddress::Parse(request.remote, &remote);
  if (parsed && allow_ && allow_->Get()->Contains(remote, now)) return {0, ""};
  if (parsed && decisions_->FindBan(remote, now) != nullptr) {
    ++counters_.refused;
    return {-1, "blocked by policy"};
  }
  if (decisions_->FindAccount(request.login, AccountDecisionKind::kSuspend, now) != nullptr) {
    ++counters_.refused;
    return {-1, "account suspended"};
  }
  if (delay_) {
    // Were this attempt to fail, which windows would count it? Playbooks count log lines unless
    // their [match] names a source, so probe both ways.
    const std::string protocol = AsciiLower(request.protocol);
    Event probe = EventOf(request, /*failed=*/true, protocol);
    std::int64_t seconds = delay_(probe);
    probe.set(Field::kSource, "dovecot-policy");
    seconds = std::max(seconds, delay_(probe));
    if (seconds > 0) {
      ++counters_.delayed;
      return {static_cast<int>(seconds), ""};
    }
  }
  return {0, ""};
}

Event DovecotPolicy::EventOf(const DovecotPolicyRequest& request, bool failed,
                             std::string_view protocol) const {
  Event e;
  e.type = failed ? EventType::kAuthFailure : EventType::kAuthSuccess;
  e.time = clock_->Now();
  IpAddress remote;
  if (IpAddress::Parse(request.remote, &remote)) {
    e.client_ip = remote;
    e.set(Field::kClientIp, request.remote);
  }
  e.set(Field::kUser, request.login);
  if (!failed) e.set(Field::kSaslUser, request.login);
  e.set(Field::kService, protocol);
  e.set(Field::kPwhash, request.pwhash);
  e.set(Field::kReason, request.fail_type);
  e.program = "dovecot-policy";
  e.parser = "dovecot-policy";
  e.verified = authenticated_;
  return e;
}

void DovecotPolicy::Report(const DovecotPolicyRequest& request) {
  ++counters_.reports;
  if (!feed_) return;
  // A login refused by our own answer is not another attempt to count (the ban is in force
  // already); internal errors are Dovecot's, not the client's.
  if (request.policy_reject || request.fail_type == "policy" || request.fail_type == "internal") {
    return;
  }
  const std::string protocol = AsciiLower(request.protocol);
  Event e = EventOf(request, !request.success, protocol);
  const std::string line =
      fmt::format("dovecot-policy: {} login {}: user=<{}>, rip={}, fail_type={}, session={}{}",
                  OneLine(protocol), request.success ? "succeeded" : "failed",
                  OneLine(request.login), OneLine(request.remote), OneLine(request.fail_type),
                  OneLine(request.session_id), request.tls ? ", TLS" : "");
  e.line = line;
  e.set(Field::kSource, "dovecot-policy");
  ++counters_.events;
  feed_(e);
}

}  // namespace mxward
