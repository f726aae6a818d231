#include "engine/parse/queue_id_correlator.h"

namespace mxward {

QueueIdCorrelator::QueueIdCorrelator(std::size_t capacity, std::int64_t ttl_seconds)
    : capacity_(capacity == 0 ? 1 : capacity), ttl_(ttl_seconds * kMicrosPerSecond) {}

void QueueIdCorrelator::Unlink(std::uint32_t i) {
  Entry& e = entries_[i];
  if (e.prev != kNil) {
    entries_[e.prev].next = e.next;
  } else {
    head_ = e.next;
  }
  if (e.next != kNil) {
    entries_[e.next].prev = e.prev;
  } else {
    tail_ = e.prev;
  }
  e.prev = e.next = kNil;
}

void QueueIdCorrelator::PushBack(std::uint32_t i) {
  Entry& e = entries_[i];
  e.prev = tail_;
  e.next = kNil;
  if (tail_ != kNil) {
    entries_[tail_].next = i;
  } else {
    head_ = i;
  }
  tail_ = i;
}

void QueueIdCorrelator::Remove(std::uint32_t i) {
  Entry& e = entries_[i];
  index_.erase(std::string_view(e.queue_id));
  Unlink(i);
  e.live = false;
  free_.push_back(i);
}

std::uint32_t QueueIdCorrelator::Allocate() {
  if (index_.size() >= capacity_ && head_ != kNil) {
    Remove(head_);
    ++evictions_;
  }
  if (!free_.empty()) {
    std::uint32_t i = free_.back();
    free_.pop_back();
    return i;
  }
  entries_.emplace_back();
  return static_cast<std::uint32_t>(entries_.size() - 1);
}

void QueueIdCorrelator::Expire(UnixMicros now) {
  while (head_ != kNil && entries_[head_].touched < now - ttl_) {
    Remove(head_);
    ++expirations_;
  }
}

void QueueIdCorrelator::Forget(std::string_view queue_id) {
  auto it = index_.find(queue_id);
  if (it != index_.end()) Remove(it->second);
}

void QueueIdCorrelator::Correlate(Event* event, bool create) {
  const std::string_view qid = event->get(Field::kQueueId);
  if (qid.empty()) return;
  std::uint32_t i;
  auto it = index_.find(qid);
  if (it != index_.end()) {
    i = it->second;
    Unlink(i);
  } else {
    if (!create) return;
    i = Allocate();
    Entry& fresh = entries_[i];
    fresh.queue_id.assign(qid);
    for (auto& v : fresh.values) v.clear();
    fresh.client_ip = IpAddress();
    fresh.verified = true;
    fresh.live = true;
    index_.emplace(std::string_view(fresh.queue_id), i);
  }
  Entry& e = entries_[i];
  e.touched = event->time;
  PushBack(i);

  // client_ip and client_host travel together (kCarried[0] and [1]). A content filter
  // reinjects from loopback: a loopback address never replaces a real one, and an event from
  // loopback gets the original client.
  const bool event_has_ip = event->client_ip.valid();
  const bool event_real = event_has_ip && !event->client_ip.IsLoopback();
  const bool entry_real = e.client_ip.valid() && !e.client_ip.IsLoopback();
  bool stored = false, drew = false;
  if (event_real || (event_has_ip && !entry_real)) {
    e.values[0].assign(event->get(Field::kClientIp));
    const std::string_view host = event->get(Field::kClientHost);
    e.values[1].assign(host.size() <= kMaxBytes[1] ? host : std::string_view());
    e.client_ip = event->client_ip;
    stored = true;
  } else if (e.client_ip.valid()) {
    event->set(Field::kClientIp, e.values[0]);
    event->set(Field::kClientHost, e.values[1]);
    event->client_ip = e.client_ip;
    drew = true;
  }
  for (int k = 2; k < kCarriedCount; ++k) {
    const Field f = kCarried[k];
    const std::string_view have = event->get(f);
    if (!have.empty()) {
      if (have.size() <= kMaxBytes[k]) {
        e.values[k].assign(have);
        stored = true;
      }
    } else if (!e.values[k].empty()) {
      event->set(f, e.values[k]);
      drew = true;
    }
  }
  if (drew && !e.verified) event->verified = false;
  if (stored && !event->verified) e.verified = false;
}

}  // namespace mxward
