// Event: what the parser pack extracts from one log line. A named type plus typed fields.
//
// Field values are string_views into the log line (or, for fields filled in by queue-id
// correlation, into the correlator's table); an Event is valid only while the line it came from
// is, and is consumed synchronously by the playbook engine. client_ip is kept in binary form.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "mxward/ip_address.h"
#include "mxward/time.h"

namespace mxward {

enum class EventType : std::uint8_t {
  kAuthFailure,
  kAuthSuccess,
  kRblReject,
  kRelayDenied,
  kUnknownRecipient,
  kHeloReject,
  kSenderReject,
  kProtocolAbuse,     // pregreet, non-SMTP command, too many errors, lost after AUTH with auth=0/N
  kMessageSubmitted,  // sasl user + queue id (smtpd's client=..., sasl_username=... line)
  kMessageQueued,     // qmgr's from=<>, size=, nrcpt=
  kDelivery,          // smtp/lmtp/local to=<>, relay=, status=sent|deferred|bounced
  kDkimVerify,        // pass/fail per signing domain
  kSpamVerdict,
  kVirusFound,
  kRateLimited,
};
inline constexpr int kEventTypeCount = static_cast<int>(EventType::kRateLimited) + 1;

enum class Field : std::uint8_t {
  kClientIp,  // text as written; the parsed form is Event::client_ip
  kClientHost,
  kSaslUser,
  kUser,
  kSender,
  kSenderDomain,
  kRecipient,
  kRecipientDomain,
  kQueueId,
  kService,  // smtpd, submission, smtps, postscreen, imap, pop3, managesieve, webmail
  kDkimResult,
  kDkimDomain,
  kSpamScore,
  kVirus,
  kReason,
  kStatus,  // delivery status: sent, deferred, bounced
  kRelay,
  kSize,
  kNrcpt,
  kAttempts,  // how many tries this event stands for (Dovecot's "N attempts")
  kHelo,
  // The forwarding headers a webmail logged after the connecting address (client text unless a
  // trusted proxy set them). The parser pack replaces client_ip with the client they name only
  // when the connecting address is one of the trusted_proxies (ParserPackOptions).
  kForwardedFor,  // X-Forwarded-For list as logged: "198.51.100.7, 192.0.2.10"
  kRealIp,        // X-Real-IP as logged
  // Dovecot's auth policy request: its hash of the login and the password tried (auth-policy.c,
  // salted with auth_policy_hash_nonce), so a `distinct` trigger counts passwords, not attempts.
  kPwhash,
  // Where an event came from when it is not a log line: "dovecot-policy" (a Dovecot policy
  // report), "postfix-policy" (a Postfix policy request). Empty for log lines. A playbook counts
  // only log events unless its [match] names a source (docs/policy.md).
  kSource,
};
inline constexpr int kFieldCount = static_cast<int>(Field::kSource) + 1;

// "auth_failure" etc.; ParseEventType accepts exactly these names.
std::string_view EventTypeName(EventType t);
bool ParseEventType(std::string_view name, EventType* out);
// "client_ip" etc.; ParseFieldName accepts exactly these names.
std::string_view FieldName(Field f);
bool ParseFieldName(std::string_view name, Field* out);

struct Event {
  EventType type = EventType::kAuthFailure;
  UnixMicros time = 0;
  std::string_view line;     // the raw log line: the evidence shown in incidents
  std::string_view program;  // syslog program, "postfix/submission/smtpd"
  std::string_view parser;   // name of the parser that produced the event ("postfix")
  // The authenticated sender the line came from (a tls input's client certificate name), empty
  // when the input does not authenticate senders. Never the HOSTNAME the line claims.
  std::string_view node;
  IpAddress client_ip;       // invalid when the line has none
  std::uint32_t weight = 1;  // attempts this event stands for; counts add weight, not 1
  double spam_score = 0;     // valid when fields[kSpamScore] is set
  std::array<std::string_view, kFieldCount> fields{};

  std::string_view get(Field f) const { return fields[static_cast<int>(f)]; }
  void set(Field f, std::string_view v) { fields[static_cast<int>(f)] = v; }
  bool has(Field f) const { return !fields[static_cast<int>(f)].empty(); }
  void Clear() { *this = Event(); }
};

}  // namespace mxward
