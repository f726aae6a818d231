// PendingAttempts: one failed login, counted once, when two programs each log it.
//
// Dovecot's auth service writes a passdb line per failed attempt ("pam(user,ip): unknown user",
// with auth_verbose); its client writes the line that counts the attempt: the login process
// ("Disconnected (auth failed, N attempts ...)", weight N, whatever auth_verbose says) or Postfix
// ("SASL LOGIN authentication failed", SMTP AUTH through Dovecot). Either line may be missing (a
// shape we do not know, another file, another host, auth_verbose off) and they may arrive in
// either order. The invariant: every attempt is counted exactly once, by the counting line when
// it arrives within `hold_seconds` of the passdb line, else by the passdb line itself.
//
// Per client address (never per user: Dovecot logs the normalised name, its client the typed one):
//  - held:     passdb lines waiting for their counting line. Hold() keeps a copy of the newest;
//              when the hold ends (event time passed hold_until) it is released as one event of
//              weight `held`.
//  - released: attempts counted by such a release that no counting line has matched yet; a late
//              counting line subtracts them from its weight (and is folded when nothing is left).
//  - credit:   attempts a counting line counted whose passdb lines have not arrived; a later
//              passdb line consumes one and is folded.
//  - attempts: the last few (session, user) pairs seen from the address and the passdbs that
//              logged each one's current attempt. With several passdbs chained, every passdb that
//              refuses writes its own line for the same attempt ("passwd(u,ip,<s>): unknown user",
//              then "passwd-file(u,ip,<s>): unknown user"). The session is the login process's
//              connection, shared by every attempt made on it, so a line is the same attempt as
//              an earlier one only when the session and user match and its passdb has not logged
//              that attempt yet; a passdb logging again starts the next attempt. Such a line is
//              folded (Hold returns false) whether the attempt's first line is held, released or
//              was met by credit. Lines without a session (Postfix's SASL requests to
//              Dovecot's auth socket carry none: "AUTH\t%u\t%s\tservice=%s\tnologin\tlip=%s\t
//              rip=%s", xsasl_dovecot_server.c) have only (address, user) and time: one user's
//              attempts may run side by side on several connections. Such a line continues the
//              least recently touched attempt of its user, touched within `hold_seconds`, that its
//              passdb has not logged (every passdb of one request logs within moments); else it
//              starts an attempt. Each attempt is counted by its first line, so parallel
//              attempts count apart, and a line can fold wrongly only when its attempt skipped a
//              passdb an earlier recent attempt of the same user did not log.
//              A new pair or sessionless attempt takes the least recently touched slot.
//  - held_sessionless / Succeeded(): an SMTP AUTH that succeeded through the chain after an
//              earlier passdb refused it (Postfix's "disconnect from ... auth=1") leaves that
//              passdb's line held with nothing to settle it; Succeeded() drops that many held
//              attempts without a session. Should a dropped one be a failure after all, its own
//              counting line (Postfix's SASL warning, in the same log as the disconnect line)
//              still counts it: Settle() counts whatever no held line stands for.
//  - LoggedIn(): a login that succeeded through the chain after earlier passdbs refused it
//              (IMAP/POP3/...: "passwd(u,ip,<S>): unknown user", then the login process's
//              "Login: user=<u>, ..., session=<S>", and no line of the passdb that accepted)
//              leaves the refusal held with nothing to settle it. The login line names its
//              session: the session's last attempt (attempts on one connection run one after
//              another) is the one that succeeded when it stopped at a passdb that chains on,
//              one seen followed by another passdb's line in an attempt (`chaining`, learned
//              from every address: the refusals of a failed attempt through the chain). Then
//              its held line is dropped. An attempt that stopped at the chain's last passdb
//              failed (a login the first passdb accepted logs no line of its own, so the last
//              attempt is an earlier one), and is still counted. Not compared: the user (the
//              login line writes the name the passdb returned, the passdb line the name asked,
//              cut at 64 bytes).
// Entries untouched for `memory_seconds` of event time are dropped (what they held released
// first). Bounded: at most `capacity` addresses; the least recently touched is evicted, its held
// attempts released, so an eviction can at worst count an attempt twice, never lose one.
//
// Owned by one thread (the extractor's). No heap allocation in steady state: slots, their event
// copies and the release queue keep their capacity. Time only moves forward (the newest event
// time seen), so a line with an older stamp from another source does not rewind the holds.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/event.h"
#include "mxward/ip_address.h"
#include "mxward/time.h"

namespace mxward {

// An Event with its own copy of the text its views point to. Reusable: Assign() keeps capacity.
class OwnedEvent {
 public:
  void Assign(const Event& e);
  const Event& event() const { return event_; }
  Event& event() { return event_; }

 private:
  Event event_;
  std::string storage_;
};

struct PendingAttemptsOptions {
  std::size_t capacity = 4096;
  std::int64_t hold_seconds = 20;     // how long a passdb line waits for its counting line
  std::int64_t memory_seconds = 600;  // how long credit / released counts are remembered
};

struct PendingAttemptsStats {
  std::uint64_t held = 0;       // passdb lines held (not folded on arrival)
  std::uint64_t matched = 0;    // held attempts a counting line took over
  std::uint64_t released = 0;   // held attempts counted by their own line (no counting line came)
  std::uint64_t evictions = 0;  // addresses evicted for capacity
  std::uint64_t same_attempt = 0;  // passdb lines folded as another passdb's line of an attempt
  std::uint64_t succeeded = 0;     // held attempts dropped as logins that succeeded
  std::uint64_t logged_in = 0;     // of those, dropped by a login line naming their session
};

class PendingAttempts {
 public:
  explicit PendingAttempts(const PendingAttemptsOptions& options);

  // A passdb line (valid client_ip). Returns true when it is held (not counted yet), false when a
  // counting line already counted its attempt, or when it is a later passdb's line of an attempt
  // already seen (fold it).
  bool Hold(const Event& event);
  // A counting line for `weight` attempts from `ip` at `now`. Returns the weight it must still
  // count: `weight` less the attempts a release already counted.
  std::uint32_t Settle(const IpAddress& ip, std::uint32_t weight, UnixMicros now);
  // `successes` logins from `ip` succeeded (an SMTP AUTH whose passdb chain refused before it
  // accepted): drops up to that many held attempts of the address, which then count nothing
  // unless a counting line arrives for them.
  void Succeeded(const IpAddress& ip, std::uint32_t successes, UnixMicros now);
  // The login of `session` (a login process's connection) from `ip` succeeded: drops the held
  // line of the session's last attempt when that attempt stopped at a chaining passdb (the
  // refusals before the passdb that accepted). Returns whether it dropped one.
  bool LoggedIn(const IpAddress& ip, std::string_view session, UnixMicros now);
  // Releases holds that ended at or before `now` and drops entries past memory.
  void Advance(UnixMicros now);
  // Releases every hold (end of replay, shutdown).
  void ReleaseAll();
  // The next released event, or null. Valid until the next call of any method.
  const Event* NextReleased();

  std::size_t size() const { return live_; }
  const PendingAttemptsStats& stats() const { return stats_; }

 private:
  static constexpr std::uint32_t kNil = 0xffffffffu;
  // Chained passdbs: how many (session, user) pairs an address remembers (its parallel
  // connections), and how many passdbs one attempt can go through before a further line counts
  // as a new attempt (a longer chain counts such an attempt more than once, never less).
  static constexpr std::size_t kSessionsPerAddress = 4;
  static constexpr std::size_t kPassdbsPerAttempt = 6;
  struct SessionAttempt {
    std::uint64_t session_user = 0;                           // hash of session and user; 0: unused
    std::array<std::uint32_t, kPassdbsPerAttempt> passdbs{};  // hashes of the passdbs that
    std::uint8_t passdb_count = 0;                            // logged the current attempt
    UnixMicros last = 0;        // the attempt's newest line (bounds a sessionless attempt)
    std::uint64_t session = 0;  // hash of the session alone (0: no session), for LoggedIn()
    bool held = false;  // the attempt's first line is held (not released, not met by credit)
  };
  struct Entry {
    IpAddress ip;
    std::uint32_t held = 0, released = 0, credit = 0;
    // Of `held`, attempts whose lines had no session (what Succeeded() may drop). A lower bound:
    // a settled attempt is taken from these first, so a success never drops a session's attempt
    // (its login line may be in another file); at worst a success is counted.
    std::uint32_t held_sessionless = 0;
    UnixMicros hold_until = 0;
    UnixMicros touched = 0;
    OwnedEvent newest;  // the newest held line, when held > 0
    std::array<SessionAttempt, kSessionsPerAddress> attempts{};
    std::uint32_t prev = kNil, next = kNil;  // recency list, oldest at head_
    bool live = false;
  };

  std::uint32_t Find(const IpAddress& ip) const;
  std::uint32_t Insert(const IpAddress& ip);
  void Erase(std::uint32_t slot);
  void Touch(std::uint32_t slot, UnixMicros now);
  void Unlink(std::uint32_t slot);
  void Release(Entry& e);
  // Notes the passdb line `event` in e.attempts; true when it is a later passdb's line of the
  // attempt already noted for its session and user (for a line without a session: its user, and
  // within hold_seconds of that attempt's last line).
  // *attempt: the attempt the line was noted in.
  bool ContinuesAttempt(Entry& e, const Event& event, SessionAttempt** attempt);
  void NoteChaining(std::uint32_t passdb);
  bool Chains(std::uint32_t passdb) const;
  void Tick(UnixMicros now);

  PendingAttemptsOptions options_;
  std::vector<Entry> entries_;             // capacity slots
  std::vector<std::uint32_t> free_;        // free slots
  std::vector<std::uint32_t> index_;       // open addressing (linear probing): slot or kNil
  std::vector<OwnedEvent> release_queue_;  // released events, read from release_read_
  std::size_t release_count_ = 0, release_read_ = 0;
  std::uint32_t head_ = kNil, tail_ = kNil;
  std::size_t live_ = 0;
  UnixMicros now_ = 0;
  std::int64_t last_scan_second_ = -1;
  // No held entry's hold ends before this (a lower bound: settling and evictions only end holds
  // early). Advance() skips its walk of the entries until event time reaches it.
  static constexpr UnixMicros kNoHold = INT64_MAX;
  UnixMicros next_hold_end_ = kNoHold;
  PendingAttemptsStats stats_;
  // Passdbs seen followed by another passdb's line in one attempt (they chain on when they
  // refuse), over every address: a chain is the server's configuration, not a client's. Bounded;
  // when full the oldest learned is forgotten.
  static constexpr std::size_t kChainingPassdbs = 16;
  std::array<std::uint32_t, kChainingPassdbs> chaining_{};
  std::size_t chaining_count_ = 0, chaining_next_ = 0;
};

}  // namespace mxward
