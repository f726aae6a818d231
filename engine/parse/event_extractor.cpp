// EventExtractor: ParserPack match, then folding and queue-id correlation.
//
// Folding (one attempt, one event) is decided per pattern in the parser TOML:
//  - fold = "held": Dovecot's auth-worker/auth passdb lines ("pam(user,ip): unknown user",
//    "sql(user,ip): Password mismatch"). Every attempt they describe is normally also logged by
//    the client of the auth service: the login process ("Disconnected (auth failed, N attempts
//    ...)", weight N) or Postfix's "SASL ... authentication failed" warning for SMTP AUTH via
//    Dovecot; those lines carry the service playbooks match on, so they are the ones counted. But
//    the client's line may never arrive (a shape no pattern knows, another file or host), so a
//    passdb line is held in a bounded table (PendingAttempts) and counted itself when its hold
//    ends unmatched. Each attempt is counted exactly once in either order, and with either half
//    alone: see pending_attempts.h.
//    A line saying logins succeeded (drops_held: Postfix's "disconnect ... auth=N") drops as
//    many held attempts without a session: an SMTP AUTH that a later chained passdb accepted.
//    A login line naming its session (drops_session_held: Dovecot's "Login: ... session=<S>")
//    drops the held refusal of that session's last attempt when a later chained passdb accepted
//    it (PendingAttempts::LoggedIn).
//  - fold = "superseded": recognised (explain shows it) and never counted; no state.
//  - fold = "loopback_is_webmail": a Dovecot failure from 127.0.0.1/::1 is a webmail's own IMAP
//    login; Roundcube's line carries the browser's address and is the one counted.
#include <memory>

#include "engine/parse/pending_attempts.h"
#include "engine/parse/queue_id_correlator.h"
#include "mxward/parser_pack.h"

namespace mxward {
namespace {

class EventExtractorImpl final : public EventExtractor {
 public:
  EventExtractorImpl(std::shared_ptr<const ParserPack> pack, const EventExtractorOptions& options)
      : pack_(std::move(pack)),
        correlator_(options.queue_id_capacity, options.queue_id_ttl_seconds),
        pending_(PendingAttemptsOptions{options.held_capacity, options.held_hold_seconds,
                                        options.held_memory_seconds}) {}

  bool Extract(const SyslogMessage& msg, Event* event) override {
    // The match reads nothing of the extractor's state, so matching before the held attempts
    // advance (ExtractMatched's order) changes nothing.
    const PatternInfo* pattern = nullptr;
    const bool matched = pack_->Match(msg, event, &pattern);
    return ExtractMatched(msg, matched, pattern, event);
  }

  bool ExtractMatched(const SyslogMessage& msg, bool matched, const PatternInfo* pattern,
                      Event* event) override {
    ++stats_.messages;
    outcome_ = ExtractOutcome();
    if (pending_.size() > 0) pending_.Advance(msg.time);
    if (!matched) {
      ++stats_.unmatched;
      return false;
    }
    outcome_.pattern = pattern;
    event->verified = msg.verified;
    event->node = msg.node;
    if (pattern->fold == FoldRule::kSuperseded ||
        (pattern->fold != FoldRule::kNone && event->client_ip.IsLoopback())) {
      return Fold();
    }
    if (pattern->fold == FoldRule::kHeld && event->client_ip.valid()) {
      pending_.Advance(event->time);
      if (!pending_.Hold(*event)) return Fold();
      ++stats_.held;
      UpdatePendingStats();
      outcome_.kind = ExtractOutcome::kHeld;
      return false;
    }
    if (pattern->drops_held && event->client_ip.valid() && pending_.size() > 0) {
      pending_.Succeeded(event->client_ip, event->weight, event->time);
      UpdatePendingStats();
    }
    if (pattern->drops_session_held && event->client_ip.valid() && pending_.size() > 0) {
      pending_.LoggedIn(event->client_ip, event->get(Field::kSession), event->time);
      UpdatePendingStats();
    }
    if (pattern->settles_held && event->client_ip.valid()) {
      event->weight = pending_.Settle(event->client_ip, event->weight, event->time);
      UpdatePendingStats();
      if (event->weight == 0) return Fold();  // a released passdb line counted it already
    }
    if (event->has(Field::kQueueId)) {
      // Expire by event time, at most once per second of it: the head check is cheap anyway.
      if (event->time / kMicrosPerSecond != last_expire_second_) {
        last_expire_second_ = event->time / kMicrosPerSecond;
        correlator_.Expire(event->time);
      }
      if (pattern->forget_queue_id) {
        correlator_.Forget(event->get(Field::kQueueId));
      } else {
        // smtpd's "client=" line is the first of a message. Postfix reuses a queue id once its
        // file is gone, and the "removed" line may never reach us (another host's log, postsuper
        // on a queue we do not read): the new message must not inherit the old one's user.
        if (event->type == EventType::kMessageSubmitted) {
          correlator_.Forget(event->get(Field::kQueueId));
        }
        correlator_.Correlate(event, StartsStory(*pattern, *event));
      }
      stats_.queue_ids = correlator_.size();
      stats_.queue_id_evictions = correlator_.evictions();
    }
    if (!pattern->emits) {
      outcome_.kind = ExtractOutcome::kNoEvent;
      return false;
    }
    ++stats_.events;
    outcome_.kind = ExtractOutcome::kEvent;
    return true;
  }

  void Advance(UnixMicros now) override {
    if (pending_.size() > 0) pending_.Advance(now);
  }
  void ReleaseAll() override { pending_.ReleaseAll(); }
  bool NextReleased(Event* event) override {
    const Event* released = pending_.NextReleased();
    if (released == nullptr) return false;
    *event = *released;
    ++stats_.events;
    UpdatePendingStats();
    return true;
  }

  const ExtractorStats& stats() const override { return stats_; }
  const ParserPack* pack() const override { return pack_.get(); }
  void UsePack(std::shared_ptr<const ParserPack> pack) override {
    if (!pack) return;
    pack_ = std::move(pack);
    outcome_ = ExtractOutcome();  // its pattern pointed into the old pack
  }
  const ExtractOutcome& last_outcome() const override { return outcome_; }

 private:
  bool Fold() {
    ++stats_.folded;
    outcome_.kind = ExtractOutcome::kFolded;
    return false;
  }

  void UpdatePendingStats() {
    stats_.released = pending_.stats().released;
    stats_.held_now = pending_.size();
  }

  // Lines that describe where a message came from open a correlation entry; the rest (delivery,
  // verdicts) only read one, so outbound traffic from pickup does not fill the table.
  static bool StartsStory(const PatternInfo& pattern, const Event& event) {
    if (!pattern.emits) return true;  // e.g. OpenDKIM's "s=... d=..." line
    switch (event.type) {
      case EventType::kMessageSubmitted:
      case EventType::kMessageQueued:
      case EventType::kDkimVerify:
        return true;
      default:
        return false;
    }
  }

  std::shared_ptr<const ParserPack> pack_;
  QueueIdCorrelator correlator_;
  PendingAttempts pending_;
  ExtractorStats stats_;
  ExtractOutcome outcome_;
  std::int64_t last_expire_second_ = -1;
};

}  // namespace

std::unique_ptr<EventExtractor> EventExtractor::Create(std::shared_ptr<const ParserPack> pack,
                                                       const EventExtractorOptions& options) {
  return std::make_unique<EventExtractorImpl>(std::move(pack), options);
}

}  // namespace mxward
