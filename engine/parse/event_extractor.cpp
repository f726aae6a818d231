// EventExtractor: ParserPack match, then folding and queue-id correlation.
//
// Folding (one attempt, one event) is decided per pattern in the parser TOML:
//  - fold = "superseded": Dovecot's auth-worker/auth passdb lines ("pam(user,ip): unknown user",
//    "sql(user,ip): Password mismatch"). Every attempt they describe is also logged by the client
//    of the auth service: the login process ("Disconnected (auth failed, N attempts ...)", which
//    Dovecot writes whatever auth_verbose says, and which counts as weight N) or Postfix's
//    "SASL ... authentication failed" warning for SMTP AUTH via Dovecot. Counting the passdb line
//    too would count each try two or three times, so these lines are recognised (explain shows
//    them) and folded: never counted, no state kept, nothing to bound.
//  - fold = "loopback_is_webmail": a Dovecot failure from 127.0.0.1/::1 is a webmail's own IMAP
//    login; Roundcube's line carries the browser's address and is the one counted.
#include <memory>

#include "engine/parse/queue_id_correlator.h"
#include "mxward/parser_pack.h"

namespace mxward {
namespace {

class EventExtractorImpl final : public EventExtractor {
 public:
  EventExtractorImpl(std::shared_ptr<const ParserPack> pack, const EventExtractorOptions& options)
      : pack_(std::move(pack)),
        correlator_(options.queue_id_capacity, options.queue_id_ttl_seconds) {}

  bool Extract(const SyslogMessage& msg, Event* event) override {
    ++stats_.messages;
    outcome_ = ExtractOutcome();
    const PatternInfo* pattern = nullptr;
    if (!pack_->Match(msg, event, &pattern)) {
      ++stats_.unmatched;
      return false;
    }
    outcome_.pattern = pattern;
    if (pattern->fold == FoldRule::kSuperseded ||
        (pattern->fold == FoldRule::kLoopbackIsWebmail && event->client_ip.IsLoopback())) {
      ++stats_.folded;
      outcome_.kind = ExtractOutcome::kFolded;
      return false;
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

  const ExtractorStats& stats() const override { return stats_; }
  const ParserPack* pack() const override { return pack_.get(); }
  const ExtractOutcome& last_outcome() const override { return outcome_; }

 private:
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
