// QueueIdCorrelator: joins the lines Postfix (and its filters) write about one message.
//
// Postfix writes `client=..., sasl_username=...` on one line and `from=`, `to=`, `status=` on
// later lines with the same queue id; OpenDKIM, Amavis and Rspamd log that queue id too. The
// correlator keeps, per queue id, the fields that describe where the message came from (client
// address and host, SASL user, sender, DKIM result and domain) and fills them into later events
// of the same message that lack them.
//
// Bounded: at most `capacity` queue ids (the least recently touched is evicted and counted),
// entries untouched for `ttl_seconds` of event time expire, and a value longer than its protocol
// allows (kMaxBytes: a domain 253, an address 254, ...) is not carried, so the table's bytes are
// bounded too (an 8 KB d= on 200,000 queue ids once took 1.66 GB). Owned by one thread (the
// extractor's). Views it writes into an Event point into its table and stay valid until the next
// call to Correlate(), Forget() or Expire().
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mxward/event.h"

namespace mxward {

class QueueIdCorrelator {
 public:
  QueueIdCorrelator(std::size_t capacity, std::int64_t ttl_seconds);

  // Joins *event with the entry for its queue id (no-op without one). Fields the event has are
  // stored (a loopback client_ip never replaces a real one: content filters reinject from
  // 127.0.0.1); fields it lacks are filled from the entry. create: make an entry when none exists
  // (lines that start a message's story); otherwise only look it up. An event that draws a field
  // from an entry some unverified line wrote to becomes unverified (Entry::verified).
  void Correlate(Event* event, bool create);
  // Drops the entry (Postfix's "removed": the message left the queue).
  void Forget(std::string_view queue_id);
  // Drops entries last touched before now - ttl.
  void Expire(UnixMicros now);

  std::size_t size() const { return index_.size(); }
  std::uint64_t evictions() const { return evictions_; }
  std::uint64_t expirations() const { return expirations_; }

 private:
  // The fields carried from line to line.
  static constexpr Field kCarried[] = {Field::kClientIp,  Field::kClientHost,   Field::kSaslUser,
                                       Field::kSender,    Field::kSenderDomain, Field::kDkimResult,
                                       Field::kDkimDomain};
  static constexpr int kCarriedCount = sizeof(kCarried) / sizeof(kCarried[0]);
  // The longest value of each carried field that a well-formed line can hold (RFC 5321 paths and
  // domains, DNS names, a SASL user as Postfix limits it); longer ones are hostile or broken.
  static constexpr std::size_t kMaxBytes[kCarriedCount] = {45, 255, 256, 256, 255, 32, 255};

  struct Entry {
    std::string queue_id;
    std::string values[kCarriedCount];
    IpAddress client_ip;
    // Every line that stored a value here was verified (Event::verified). An event that takes a
    // value from an entry with an unverified contributor is itself unverified: a forged line
    // with a real message's queue id must not lend its sasl_username to the real lines.
    bool verified = true;
    UnixMicros touched = 0;
    std::uint32_t prev = kNil, next = kNil;  // recency list, oldest at head_
    bool live = false;
  };
  static constexpr std::uint32_t kNil = 0xffffffffu;

  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  std::uint32_t Allocate();
  void Unlink(std::uint32_t i);
  void PushBack(std::uint32_t i);
  void Remove(std::uint32_t i);

  std::size_t capacity_;
  UnixMicros ttl_;
  // Entries live in a deque so their strings (and the views into them) do not move; freed slots
  // are reused, so their strings keep their capacity and steady state allocates nothing.
  std::deque<Entry> entries_;
  std::vector<std::uint32_t> free_;
  std::unordered_map<std::string_view, std::uint32_t, Hash, Eq> index_;  // key views queue_id
  std::uint32_t head_ = kNil, tail_ = kNil;
  std::uint64_t evictions_ = 0;
  std::uint64_t expirations_ = 0;
};

}  // namespace mxward
