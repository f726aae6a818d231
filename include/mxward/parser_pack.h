// ParserPack and EventExtractor: turn SyslogMessages into typed mail Events.
//
// ParserPack is the compiled, immutable form of rules.d/parsers/*.toml: parsers routed by program
// name, a literal prefilter, an RE2::Set of anchored patterns and, per pattern, the captures that
// map to Event fields. Shared read-only between threads. The file format is in docs/parsers.md.
//
// EventExtractor is the stateful part, owned by one thread: Postfix queue-id correlation (so a
// delivery carries the sasl_user and client_ip of its submission), and folding the several lines
// Dovecot writes for one failed login into one event. Views in the Event point into the message's
// line or into the extractor's tables and are valid until the next Extract() call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/diagnostic.h"
#include "mxward/event.h"
#include "mxward/ip_address.h"
#include "mxward/status.h"
#include "mxward/syslog_message.h"

namespace mxward {

// What a pattern asks the extractor to do with the event it produced.
enum class FoldRule : std::uint8_t {
  kNone,
  // A line that repeats an attempt another line counts (Dovecot's auth-worker/passdb lines: the
  // login process's "auth failed, N attempts" line or Postfix's SASL warning always follows).
  kSuperseded,
  // Dropped when client_ip is loopback: a webmail's own IMAP login (Roundcube logs the browser).
  kLoopbackIsWebmail,
  // Held for the line that counts the same attempt (Dovecot's passdb lines, settled by the login
  // process's or Postfix's line); counted itself when none comes in time. Loopback is webmail's
  // and folded. See engine/parse/pending_attempts.h for the invariant.
  kHeld,
};

// The pattern that recognised a line: for `explain` and for the extractor's folding rules.
struct PatternInfo {
  std::string parser;  // "postfix"
  std::string name;    // "sasl_auth_failed"
  bool emits = true;   // false: recognised, but yields no event (event = "none" in the TOML)
  FoldRule fold = FoldRule::kNone;
  bool forget_queue_id = false;  // the message left the queue: drop its correlation entry
  // An auth_failure line that counts attempts a held line (fold = "held") also logs: it settles
  // them. Set for every auth_failure pattern of the parsers a held pattern's `settled_by` names.
  bool settles_held = false;
  // A line saying `weight` logins from its address succeeded (Postfix's "disconnect from ...
  // auth=N"): as many held attempts without a session are dropped, the passdb lines of an SMTP
  // AUTH that an earlier chained passdb refused before a later one accepted it (drops_held in the
  // TOML; pending_attempts.h).
  bool drops_held = false;
  // A line saying the login of its connection (field `session`) succeeded (Dovecot's login
  // processes' "Login: ... session=<S>"): the held passdb line of that session's last attempt is
  // dropped when the attempt stopped at a passdb that is followed by another in a chain, the
  // refusals logged before a later chained passdb accepted the login (drops_session_held in the
  // TOML; pending_attempts.h).
  bool drops_session_held = false;
  int parser_index = -1;  // position of parser in ParserPack::parser_names() (-1: unknown)
};

// Settings of mxward.toml the pack applies while filling events.
struct ParserPackOptions {
  // Reverse proxies in front of a webmail ([rules] trusted_proxies). A line's forwarding headers
  // (X-Forwarded-For, X-Real-IP: the forwarded_for / real_ip fields a pattern captures) name the
  // client only when the connecting address is inside one of these; otherwise they are the
  // client's own text and the connecting address counts. With a trusted proxy, the client is the
  // right-most X-Forwarded-For entry that is not itself a trusted proxy (what the proxy appended),
  // else X-Real-IP; when neither names a valid address the event has no client_ip (never the
  // proxy's). Default: loopback, a proxy on the webmail's own host.
  std::vector<IpPrefix> trusted_proxies = DefaultTrustedProxies();
  static std::vector<IpPrefix> DefaultTrustedProxies();
};

class ParserPack {
 public:
  // Loads every *.toml in the given directories (or files). On errors, fills diagnostics with
  // file:line:col and returns InvalidArgument.
  static Result<std::shared_ptr<const ParserPack>> Load(const std::vector<std::string>& paths,
                                                        std::vector<Diagnostic>* diagnostics,
                                                        const ParserPackOptions& options = {});
  virtual ~ParserPack() = default;

  // Stateless match of one message. Returns true and fills *event when a pattern that yields an
  // event matched.
  virtual bool Parse(const SyslogMessage& msg, Event* event) const = 0;
  // As Parse, but also true for recognised lines that yield no event (event = "none"); *pattern
  // (never null on true) says which pattern took the line. Thread-safe, no heap allocation on
  // lines no pattern matches. (The default, for test doubles, forwards to Parse.)
  virtual bool Match(const SyslogMessage& msg, Event* event, const PatternInfo** pattern) const {
    static const PatternInfo kUnnamed{"unnamed", "unnamed"};
    if (!Parse(msg, event)) return false;
    *pattern = &kUnnamed;
    return true;
  }
  virtual std::size_t parser_count() const = 0;
  virtual std::vector<std::string> parser_names() const = 0;

  // Bounded names for the programs the pack knows, for metric labels (unmatched lines per
  // program): "<parser>" for a program a parser takes, "<parser>/<process>" when the parser has
  // patterns for that process ("postfix/smtpd"). Every name comes from the parser TOML, never
  // from a log line. ProgramLabel() is the index of msg.program's name in program_labels(), or
  // -1 ("other") for a program no parser takes. Thread-safe, no allocation.
  virtual std::vector<std::string> program_labels() const { return {}; }
  virtual int ProgramLabel(std::string_view /*program*/) const { return -1; }
  // The parser (index in parser_names()) a line with this program is routed to, -1 for none:
  // the program a line claims picks its patterns, so this is whose writers provenance asks for.
  // Thread-safe, no allocation.
  virtual int ParserIndex(std::string_view /*program*/) const { return -1; }
};

// For log files that are not syslog: Roundcube's own logs/errors.log and logs/userlogins lines,
// "[23-Nov-2026 10:00:00 +0100]: <sess> IMAP Error: ...". Fills msg with program "roundcube",
// the message after "]: " and the time from the bracket. False for anything else.
bool ParseRoundcubeFileLine(std::string_view line, SyslogMessage* msg);

struct EventExtractorOptions {
  std::size_t queue_id_capacity = 200'000;  // correlation table size cap (evicts oldest)
  std::int64_t queue_id_ttl_seconds = 3 * 86400;
  // Held auth lines (engine/parse/pending_attempts.h): addresses kept, how long a passdb line
  // waits for its login line, how long counts are remembered to match late lines.
  std::size_t held_capacity = 4096;
  std::int64_t held_hold_seconds = 20;
  std::int64_t held_memory_seconds = 600;
};

struct ExtractorStats {
  std::uint64_t messages = 0;
  std::uint64_t events = 0;
  std::uint64_t unmatched = 0;
  std::uint64_t folded = 0;     // lines whose attempt another line counts (Dovecot)
  std::uint64_t held = 0;       // lines held for the line that counts their attempt
  std::uint64_t released = 0;   // held attempts counted by their own line (none came in time)
  std::uint64_t held_now = 0;   // addresses in the held table
  std::uint64_t queue_ids = 0;  // current correlation table size
  std::uint64_t queue_id_evictions = 0;
};

// Why the last Extract() returned what it did (for `explain`).
struct ExtractOutcome {
  // kHeld: the line's attempt waits for its counting line; NextReleased() yields it if none comes.
  enum Kind : std::uint8_t { kUnmatched, kEvent, kNoEvent, kFolded, kHeld };
  Kind kind = kUnmatched;
  const PatternInfo* pattern = nullptr;  // null when unmatched
};

class EventExtractor {
 public:
  static std::unique_ptr<EventExtractor> Create(std::shared_ptr<const ParserPack> pack,
                                                const EventExtractorOptions& options = {});
  virtual ~EventExtractor() = default;
  // Returns true when msg yielded an event (after folding and correlation). Afterwards, call
  // NextReleased() until it returns false: held lines whose hold ended (msg.time moved past it)
  // are counted then, as their own events.
  virtual bool Extract(const SyslogMessage& msg, Event* event) = 0;
  // As Extract, with the pack's match already done (on another thread, prepared_line.h): matched
  // and pattern are what pack()->Match(msg, event, &pattern) returned, and *event holds what it
  // filled. The default (test doubles) matches again.
  virtual bool ExtractMatched(const SyslogMessage& msg, bool matched, const PatternInfo* pattern,
                              Event* event) {
    (void)matched;
    (void)pattern;
    return Extract(msg, event);
  }
  // Ends holds that ended by `now` (the daemon's clock, once a second, so a quiet log still
  // releases them); then drain NextReleased().
  virtual void Advance(UnixMicros /*now*/) {}
  // Ends every hold (end of replay, shutdown, end of explain); then drain NextReleased().
  virtual void ReleaseAll() {}
  // The next released event (views valid until the next call on the extractor); false when none.
  virtual bool NextReleased(Event* /*event*/) { return false; }
  // The pack it matches with (for metric labels); null for test doubles without one.
  virtual const ParserPack* pack() const { return nullptr; }
  // Matches with `pack` from the next line on (a reload). The state that outlives a line stays:
  // queue-id correlations and held attempts own copies of their text, so nothing refers to the
  // old pack afterwards, and a message in flight keeps its SASL user across the reload. On the
  // extractor's thread, between two lines. Test doubles without a pack ignore it.
  virtual void UsePack(std::shared_ptr<const ParserPack> /*pack*/) {}
  virtual const ExtractorStats& stats() const = 0;
  // The outcome of the last Extract() call. When kind is kFolded or kNoEvent, the Event passed to
  // Extract() still holds what the pattern extracted.
  virtual const ExtractOutcome& last_outcome() const {
    static const ExtractOutcome kUnknown;
    return kUnknown;
  }
};

}  // namespace mxward
