// Event: what the parser pack extracts from one log line. A named type plus typed fields.
//
// Field values are string_views into the log line (or, for fields filled in by queue-id
// correlation, into the correlator's table); an Event is valid only while the line it came from
// is, and is consumed synchronously by the playbook engine. client_ip is kept in binary form.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

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
  kDkimVerify,        // one signature's verdict: dkim_result for dkim_domain
  kSpamVerdict,
  kVirusFound,
  kRateLimited,
  // Sender authentication (docs/parsers.md, "Sender authentication"). An SPF check of one identity
  // (spf_identity mailfrom or helo) of spf_domain for client_ip: spf_result is pass, fail,
  // softfail, neutral, none, temperror or permerror.
  kSpfCheck,
  // A DMARC evaluation of the RFC5322.From domain (header_from_domain): dmarc_result pass, fail,
  // none or temperror; dmarc_policy and dmarc_disposition when the program logs them.
  kDmarcCheck,
  // An authenticated client asking to send to one recipient, before Postfix accepts it (the
  // Postfix policy service at RCPT; source postfix-policy): sasl_user, client_ip, sender,
  // recipient, recipient_domain. What recipient-domain novelty and rate playbooks count at the
  // moment of sending rather than from the log afterwards.
  kRecipientSubmitted,
};
inline constexpr int kEventTypeCount = static_cast<int>(EventType::kRecipientSubmitted) + 1;

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
  // Sender authentication. Results are the RFC 8601 words (pass, fail, softfail, neutral, none,
  // temperror, permerror), in the case the program wrote them: playbooks compare them
  // case-insensitively (policyd-spf writes "Softfail").
  kSpfResult,
  kSpfIdentity,       // mailfrom or helo: which identity spf_domain is
  kSpfDomain,         // the domain checked: the envelope sender's, or the HELO name
  kHeaderFromDomain,  // the RFC5322.From domain DMARC evaluated (the sender's own text)
  kDmarcResult,
  kDmarcPolicy,       // the domain's published policy: none, quarantine, reject
  kDmarcDisposition,  // what the receiver applied: none, quarantine, reject
  // Whom an SPF check was for, as the checker logged it: policyd-spf's receiver= is the
  // recipient's domain (the whole address with Per_User, "<UNKNOWN>" with Hide_Receiver).
  kReceiver,
  // Dovecot's auth policy request: its hash of the login and the password tried (auth-policy.c,
  // salted with auth_policy_hash_nonce), so a `distinct` trigger counts passwords, not attempts.
  kPwhash,
  // Where an event came from when it is not a log line: "dovecot-policy" (a Dovecot policy
  // report), "postfix-policy" (a Postfix policy request). Empty for log lines. A playbook counts
  // only log events unless its [match] names a source (docs/policy.md).
  kSource,
  // Dovecot's passdb lines (auth_verbose): the login process's session id, "<...>" in the line's
  // prefix (one per client connection, so every attempt on that connection shares it), and the
  // passdb that wrote the line ("passwd-file", "sql", or its configured name). Together with the
  // user they tell the lines of one attempt through chained passdbs (each passdb that does not
  // know the user writes its own line) from the next attempt (pending_attempts.h).
  kSession,
  kPassdb,
};
inline constexpr int kFieldCount = static_cast<int>(Field::kPassdb) + 1;

// "auth_failure" etc.; ParseEventType accepts exactly these names.
std::string_view EventTypeName(EventType t);
bool ParseEventType(std::string_view name, EventType* out);
// "client_ip" etc.; ParseFieldName accepts exactly these names.
std::string_view FieldName(Field f);
bool ParseFieldName(std::string_view name, Field* out);

struct Event {
  EventType type = EventType::kAuthFailure;
  UnixMicros time = 0;
  std::string_view line;     // the raw log line, as it arrived (any framing)
  std::string_view program;  // syslog program, "postfix/submission/smtpd"
  // The rest of the header and the message, for the evidence an incident shows ("host
  // program[pid]: message", whatever framing the line came in); empty when unknown.
  std::string_view host;
  std::string_view pid;
  std::string_view message;
  std::string_view parser;  // name of the parser that produced the event ("postfix")
  // The authenticated sender the line came from (a tls input's client certificate name), empty
  // when the input does not authenticate senders. Never the HOSTNAME the line claims.
  std::string_view node;
  // The line's writer was checked and is one of the users its program's lines may come from
  // (provenance.h): journald's _UID, a unix socket's peer, or what a trusted forwarder stated.
  // False for lines whose writer nobody vouches for (udp, tcp, files, replay) unless their input
  // says `trusted = true`. Counted per input; account-level actions do not refuse unverified
  // evidence yet (docs/reliability.md, "Provenance").
  bool verified = false;
  IpAddress client_ip;       // invalid when the line has none
  std::uint32_t weight = 1;  // attempts this event stands for; counts add weight, not 1
  double spam_score = 0;     // valid when fields[kSpamScore] is set
  std::array<std::string_view, kFieldCount> fields{};

  std::string_view get(Field f) const { return fields[static_cast<int>(f)]; }
  void set(Field f, std::string_view v) { fields[static_cast<int>(f)] = v; }
  bool has(Field f) const { return !fields[static_cast<int>(f)].empty(); }
  // Member by member: `*this = Event()` built a ~700-byte temporary and copied it (~200
  // instructions an event). Keep in step with the members above.
  void Clear() {
    type = EventType::kAuthFailure;
    time = 0;
    line = program = host = pid = message = parser = node = {};
    verified = false;
    client_ip = IpAddress();
    weight = 1;
    spam_score = 0;
    // An empty view is all zero bytes; one memset of 528 bytes, not 33 two-store iterations.
    static_assert(std::is_trivially_copyable_v<std::string_view>);
    std::memset(static_cast<void*>(fields.data()), 0, sizeof(fields));
  }
};

}  // namespace mxward
