// PostfixPolicy: Postfix's SMTP access policy delegation (check_policy_service; Postfix's
// SMTPD_POLICY_README), without the transport: the request reader and the answers.
//
// Protocol: a request is `name=value` lines ending with an empty line; the answer is one
// `action=...` line and an empty line. Many requests travel on one connection. Unknown
// attributes are ignored; a repeated one keeps its last value.
//
// PostfixPolicyReader takes the bytes of one connection as they arrive, in pieces of any size,
// and yields complete requests. It bounds what a client can make it hold: a line longer than
// kMaxPostfixLineBytes, more than kMaxPostfixAttributes attributes in one request, a NUL byte or a
// line without '=' is a protocol error, after which the connection is closed (Postfix then
// retries and finally applies its default_action; mxward's snippet sets DUNNO).
//
// PostfixPolicy::Answer decides, from the DecisionTable, in this order:
//   - client_address under a ban in force (any protocol_state) -> REJECT 5.7.1
//   - sasl_username under `suspend`                            -> REJECT 5.7.1
//   - at DATA with a sasl_username: a message_submitted event (source "postfix-policy", its
//     sasl_user, client_ip, sender, recipient_count as nrcpt, queue_id) goes into the playbook
//     windows first, so the message that crosses a rate playbook's threshold is answered by the
//     decision its incident makes;
//   - at RCPT with a sasl_username and a recipient: a recipient_submitted event (the same plus
//     recipient and recipient_domain) likewise, for recipient-domain novelty and per-recipient
//     rates at the moment of sending; once per (instance, recipient), however often asked;
//   - sasl_username under `suspend_sending` (MAIL, RCPT, DATA)  -> DEFER_IF_PERMIT 4.7.1
//   - sasl_username under `hold_queue` (MAIL, RCPT, DATA)       -> HOLD
//   - anything else                                             -> DUNNO
// The texts are fixed: nothing a client sent is echoed. Nothing here writes to the store or
// waits. Owned by the daemon and called on the pipeline's thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/policy/decision_table.h"
#include "mxward/allow_set.h"
#include "mxward/event.h"
#include "mxward/status.h"
#include "mxward/time.h"

namespace mxward {

inline constexpr std::size_t kMaxPostfixLineBytes = 2048;
inline constexpr std::size_t kMaxPostfixAttributes = 128;

// The attributes mxward reads; the others are ignored (but counted against the limit).
struct PostfixPolicyRequest {
  std::string request;  // "smtpd_access_policy"
  std::string protocol_state;
  std::string client_address;
  std::string sasl_username;
  std::string sender;
  std::string recipient;
  std::string queue_id;
  std::string instance;
  std::uint32_t recipient_count = 0;
  std::size_t attributes = 0;  // lines read, known or not
  // Set by the server, not read from the request: it came through the unix socket, whose mode,
  // group and directory admit Postfix only, so the events it feeds are verified (Event::verified).
  // Over TCP (loopback, no authentication in the protocol) any local process could have sent it.
  bool verified = false;
};

class PostfixPolicyReader {
 public:
  // Appends the requests `bytes` completes to *out. After an error the reader stays failed:
  // close the connection.
  Status Feed(std::string_view bytes, std::vector<PostfixPolicyRequest>* out);
  // Bytes of an unfinished request held (bounded by the limits above).
  std::size_t buffered() const { return line_.size(); }
  // Between the first byte of a request and its empty line (a partial line or attributes held).
  bool in_request() const { return !line_.empty() || current_.attributes > 0; }

 private:
  Status EndLine(std::vector<PostfixPolicyRequest>* out);

  std::string line_;
  PostfixPolicyRequest current_;
  Status failed_;
};

struct PostfixPolicyCounters {
  std::uint64_t requests = 0;
  std::uint64_t reject = 0;
  std::uint64_t defer = 0;
  std::uint64_t hold = 0;
  std::uint64_t events = 0;
};

class PostfixPolicy {
 public:
  using EventFn = std::function<void(const Event&)>;

  PostfixPolicy(const DecisionTable* decisions, EventFn feed, const Clock* clock)
      : decisions_(decisions), feed_(std::move(feed)), clock_(clock) {}

  // The answer line without "action=" and the newlines: "DUNNO", "REJECT 5.7.1 ...".
  std::string Answer(const PostfixPolicyRequest& request);
  // The daemon's compiled address allowlist ([allow] plus `mxward allow`): an address it covers
  // is answered as if nothing were decided (no refusal, no delay), whatever bans are in force.
  void SetAllowSet(std::shared_ptr<const AllowSetHandle> allow) { allow_ = std::move(allow); }
  const PostfixPolicyCounters& counters() const { return counters_; }

 private:
  void Feed(const PostfixPolicyRequest& request, EventType type, UnixMicros now);
  // True the first time this (instance, recipient) is seen among the last kRecentRecipients.
  bool FirstAsk(const PostfixPolicyRequest& request);

  const DecisionTable* decisions_;
  std::shared_ptr<const AllowSetHandle> allow_;
  EventFn feed_;
  const Clock* clock_;
  PostfixPolicyCounters counters_;
  // With smtpd_delay_reject = yes (the default) the shipped snippet asks twice per RCPT (client
  // and recipient restrictions, src/smtpd/smtpd_check.c), both with protocol_state=RCPT and the
  // same instance and recipient: the recipient is counted once.
  static constexpr std::size_t kRecentRecipients = 256;
  std::array<std::uint64_t, kRecentRecipients> recent_{};
  std::size_t recent_next_ = 0;
};

}  // namespace mxward
