// Playbook: the compiled, plain-object form of one rules.d/<name>.toml.
//
// CompilePlaybook() reads the TOML once and turns every name into an enum or a pre-built object:
// event types into a bitmap, field names into Field, regexes into RE2 (full match), CIDRs into
// IpPrefix, durations into seconds and action parameters into templates split into literal and
// placeholder parts. The playbook engine then evaluates events against these objects without any
// string lookup. docs/playbooks.md describes the file format; this header is its contract.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/diagnostic.h"
#include "mxward/event.h"
#include "mxward/incident.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"

namespace re2 {
class RE2;
}

namespace mxward {

enum class ConditionOp : std::uint8_t {
  kEquals,  // ASCII case-insensitive
  kNotEquals,
  kIn,  // any of a list, case-insensitive
  kNotIn,
  kRegex,  // RE2 full match (anchored at both ends)
  kNotRegex,
  kCidr,  // client_ip (binary) inside one of the prefixes
  kNotCidr,
  kLess,  // numeric: spam_score from Event::spam_score, other fields parsed as numbers
  kLessEqual,
  kGreater,
  kGreaterEqual,
  kExists,  // the field is present (true) or absent (false)
  // The field's domain (the part after '@' of an address, else the whole value) is one of the
  // platform's own domains ([rules] local_domains in mxward.toml) or a subdomain of one. The
  // engine fills `values` from the config when it takes the playbook; until then, and with no
  // local domains configured, kLocalDomain matches nothing. Absent field: not local.
  kLocalDomain,
  kNotLocalDomain,
};

struct Condition {
  Field field = Field::kClientIp;
  ConditionOp op = ConditionOp::kEquals;
  std::vector<std::string> values;  // lower-cased (equals, in)
  std::shared_ptr<const re2::RE2> regex;
  std::vector<IpPrefix> cidrs;
  double number = 0;
  bool exists = true;

  bool Matches(const Event& e) const;
};

// Which events a playbook (or its reset rule) takes: a type bitmap plus conditions, all of which
// must hold.
struct EventMatcher {
  std::array<bool, kEventTypeCount> types{};
  std::vector<Condition> conditions;

  bool empty() const;
  bool Matches(const Event& e) const;
};

// The unit of one client: an IPv4 address, or an IPv6 /64. A /64 is what one subscriber, one
// server or one LAN gets (RFC 6177, RIPE-690), and whoever holds one can give every attempt a new
// address (privacy addresses, or 2^64 of them by hand): counting and banning IPv6 per /128 let one
// /64 open an incident and a ban per address (issue 21: 700 addresses of one /64 filled the safety
// valve). A playbook that wants single IPv6 addresses says client_ip/128.
inline constexpr int kIpv6ClientPrefix = 64;
int ClientPrefixLength(const IpAddress& a);

// One part of the key (or the value a distinct/novel trigger counts): a field, or client_ip masked
// to a prefix length. Bare client_ip is one client (ClientPrefixLength: an IPv4 address or an IPv6
// /64). A length written for IPv4 (<= 32) applies to IPv6 doubled: client_ip/24 is an IPv4 /24 or
// an IPv6 /48, client_ip/16 an IPv4 /16 or an IPv6 /32. A longer length applies to IPv6 as written
// and leaves IPv4 whole: client_ip/128 is one IPv6 or one IPv4 address.
struct KeyPart {
  Field field = Field::kClientIp;
  int prefix_len = -1;  // client_ip only; -1 = one client (ClientPrefixLength)

  // The prefix length for this address under the rule above.
  int LengthFor(const IpAddress& a) const;
};

enum class TriggerType : std::uint8_t { kCount, kDistinct, kConsecutive, kNovel };
std::string_view TriggerTypeName(TriggerType t);

struct BaselineSettings {
  std::int64_t ttl_seconds = 30 * 86400;    // a value unused this long is forgotten
  std::int64_t warmup_seconds = 7 * 86400;  // learn this long before judging anything
  std::uint32_t max_values = 1000;          // per key
  std::size_t max_keys = 100'000;
};

// The absolute rule a `novel` trigger judges by while a key's baseline, or the whole install's,
// is still warming up ([trigger.fallback]): the key fires when it used more than `over` distinct
// `field` values within `window`. Without it a cold baseline judges nothing, so a fresh install
// (or a new account) would have no protection for the length of the warm-up.
struct WarmupFallback {
  bool enabled = false;
  KeyPart field{Field::kUser, -1};  // the values counted ("recipient_domain")
  std::uint32_t over = 0;           // fires at over + 1 distinct values
  std::int64_t window_seconds = 0;
};

struct Trigger {
  TriggerType type = TriggerType::kCount;
  std::uint32_t threshold = 1;
  std::int64_t window_seconds = 0;  // count, distinct, novel; consecutive: run forgotten after
  KeyPart field{Field::kUser, -1};  // distinct: the values counted; novel: the baseline values
  EventMatcher reset;               // events that clear a key's state (empty: none)
  // Keys on a network (client_ip/N): the trigger fires only once at least this many distinct
  // addresses of it were counted in the window, so one address cannot get its whole network
  // banned. 0: no such condition.
  std::uint32_t min_addresses = 0;
  BaselineSettings baseline;  // novel
  WarmupFallback fallback;    // novel, optional
};

struct Allowlist {
  std::vector<IpPrefix> cidrs;
  // users and domains apply only to events where the server vouches for them (auth_success,
  // submission, queue, delivery, dkim, spam, rate limit): never to failures or rejects, whose
  // user names and domains the client chose.
  std::vector<std::string> users;  // lower-cased; compared with sasl_user
  std::vector<std::string>
      domains;  // lower-cased; recipient, dkim or sasl_user domain, or a subdomain

  bool empty() const { return cidrs.empty() && users.empty() && domains.empty(); }
  // True when the event's address, user or domains are on the list.
  bool Allows(const Event& e) const;
};

// [policy]: what a playbook answers before the attempt, to Dovecot's authentication policy
// (docs/policy.md). Once a key holds `delay_from` counted events in the window (a soft threshold
// below the trigger's), Dovecot's `allow` for an attempt this playbook would count is answered
// "wait `delay_seconds`" (Dovecot's status N), slowing a guesser before the ban. 0: no delay.
struct PolicyDelay {
  std::uint32_t from = 0;
  std::int64_t seconds = 0;
  bool enabled() const { return from > 0 && seconds > 0; }
};
struct Escalation {
  bool enabled = false;
  double factor = 2.0;                    // duration x factor^(earlier incidents)
  std::int64_t max_seconds = 7 * 86400;   // never longer than this
  std::int64_t lookback_seconds = 86400;  // earlier incidents counted within this
  bool across_playbooks = false;          // count the same key's incidents of every playbook
};

// An action parameter value: literal text and placeholders, expanded when an incident opens.
struct Template {
  enum class Kind : std::uint8_t {
    kLiteral,
    kField,
    kKey,
    kKeyKind,
    kCount,
    kWindow,
    kEvidence,
    kPlaybook,
    kDescription,
    kSeverity,
    kTrigger,
    kFirstSeen,
    kLastSeen,
  };
  struct Part {
    Kind kind = Kind::kLiteral;
    std::string literal;
    Field field = Field::kClientIp;
  };
  std::vector<Part> parts;
  std::string source;  // as written, for messages
};

struct ActionSpec {
  std::string type;  // ban, suspend_sending, suspend, require_password_change, hold_queue,
                     // webhook, mail, exec
  std::vector<std::pair<std::string, Template>> params;  // string parameters
  std::int64_t duration_seconds = -1;                    // "duration", -1 when not given
  bool dry_run = false;
  int line = 0;  // where the [[action]] table is written, for messages
  int column = 0;
};

struct Playbook {
  std::string name;  // the file's stem: rules.d/postfix-sasl.toml -> "postfix-sasl"
  std::string file;
  std::string description;
  Severity severity = Severity::kMedium;
  PlaybookMode mode = PlaybookMode::kEnforce;
  EventMatcher match;
  std::vector<KeyPart> key;
  std::string key_kind;  // "client_ip", "sasl_user", "client_ip/24", "sasl_user,client_ip"
  Trigger trigger;
  Allowlist allow;
  std::int64_t cooldown_seconds = 0;
  Escalation escalation;
  PolicyDelay policy_delay;
  std::vector<ActionSpec> actions;
  std::size_t max_keys = 250'000;
  // Whether only verified events count or reset (Event::verified: the line's writer was checked
  // against its program's users, or its input is `trusted`; docs/ingest.md "Provenance").
  // `evidence = "verified" | "any"`; the default is "verified" for a playbook with an action on a
  // mailbox (ActsOnMailbox: suspensions, password change, held queue), "any" otherwise. A line any
  // local user could have written must not lock somebody's mailbox, nor (as a reset or as the
  // count that opens the incident early) keep a real compromise from being acted on.
  bool verified_evidence_only = false;
  // `shared = true` (docs/cluster.md, "Shared windows"): with [cluster], this playbook's counted
  // events are published to the other nodes and theirs are folded into its windows, so the
  // threshold applies to the cluster's total, and a claim in the database lets one node open the
  // incident. Only count triggers without min_addresses (the loader refuses the rest). Where it
  // is written, for `check`'s warning when there is no [cluster].
  bool shared = false;
  int shared_line = 0;
  int shared_column = 0;
  // Hash of what defines the counting (key, max_keys, [match], [trigger]; playbook_loader.cpp):
  // a reload keeps the window state of a playbook whose name and identity are unchanged, so
  // editing its description, actions or comments does not forget an attack in progress.
  std::uint64_t identity = 0;
};

// Compiles one playbook file. Every problem is appended to diagnostics (file:line:col), not just
// the first; returns InvalidArgument when there was any.
Result<Playbook> CompilePlaybook(const std::string& path, std::vector<Diagnostic>* diagnostics);
// The same from text already read (tests, `mxward import` self-check); path names it in messages.
Result<Playbook> CompilePlaybookText(std::string_view text, const std::string& path,
                                     std::vector<Diagnostic>* diagnostics);

}  // namespace mxward
