#include "engine/rules/key_table.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace mxward {

KeyTable::KeyTable(std::uint32_t record_words, std::size_t max_keys, UnixMicros idle_micros)
    : words_(std::max<std::uint32_t>(record_words, 1)),
      max_keys_(std::clamp<std::size_t>(max_keys, 1, kNone - 1)),
      idle_us_(idle_micros) {}

std::uint32_t KeyTable::Find(std::uint64_t hash) const {
  if (index_.empty()) return kNone;
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = Slot(hash);; i = (i + 1) & mask) {
    const std::uint32_t rec = index_[i];
    if (rec == kNone) return kNone;
    if (nodes_[rec].hash == hash) return rec;
  }
}

void KeyTable::Unlink(std::uint32_t rec) {
  Node& n = nodes_[rec];
  if (n.prev != kNone)
    nodes_[n.prev].next = n.next;
  else
    lru_head_ = n.next;
  if (n.next != kNone)
    nodes_[n.next].prev = n.prev;
  else
    lru_tail_ = n.prev;
  n.prev = n.next = kNone;
}

void KeyTable::LinkTail(std::uint32_t rec) {
  Node& n = nodes_[rec];
  n.prev = lru_tail_;
  n.next = kNone;
  if (lru_tail_ != kNone)
    nodes_[lru_tail_].next = rec;
  else
    lru_head_ = rec;
  lru_tail_ = rec;
}

void KeyTable::Touch(std::uint32_t rec, UnixMicros t) {
  Node& n = nodes_[rec];
  // Event time may step back a little (several inputs); last_seen never does.
  if (t > n.last_seen) n.last_seen = t;
  if (lru_tail_ == rec) return;
  Unlink(rec);
  LinkTail(rec);
}

void KeyTable::Grow() {
  const std::size_t cap = index_.empty() ? 16 : index_.size() * 2;
  index_.assign(cap, kNone);
  shift_ = 64 - std::countr_zero(cap);
  const std::size_t mask = cap - 1;
  for (std::uint32_t rec = lru_head_; rec != kNone; rec = nodes_[rec].next) {
    std::size_t i = Slot(nodes_[rec].hash);
    while (index_[i] != kNone) i = (i + 1) & mask;
    index_[i] = rec;
  }
}

void KeyTable::RemoveFromIndex(std::uint32_t rec) {
  const std::size_t mask = index_.size() - 1;
  std::size_t i = Slot(nodes_[rec].hash);
  while (index_[i] != rec) i = (i + 1) & mask;
  // Backward-shift deletion: no tombstones, probe chains stay short.
  std::size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    const std::uint32_t r = index_[j];
    if (r == kNone) break;
    const std::size_t ideal = Slot(nodes_[r].hash);
    // Move r into the hole at i when its ideal slot is not in (i, j] cyclically.
    const bool in_range = (i <= j) ? (ideal > i && ideal <= j) : (ideal > i || ideal <= j);
    if (!in_range) {
      index_[i] = r;
      i = j;
    }
  }
  index_[i] = kNone;
}

void KeyTable::Erase(std::uint32_t rec) {
  RemoveFromIndex(rec);
  Unlink(rec);
  nodes_[rec].next = free_;
  free_ = rec;
  --size_;
}

std::size_t KeyTable::ExpireIdle(UnixMicros now, std::size_t budget) {
  std::size_t n = 0;
  while (n < budget && lru_head_ != kNone && nodes_[lru_head_].last_seen < now - idle_us_) {
    Erase(lru_head_);
    ++n;
  }
  expirations_ += n;
  return n;
}

std::uint32_t KeyTable::FindOrInsert(std::uint64_t hash, UnixMicros t, bool* inserted) {
  std::uint32_t rec = Find(hash);
  if (rec != kNone) {
    *inserted = false;
    Touch(rec, t);
    return rec;
  }
  *inserted = true;
  ExpireIdle(t, 2);
  if (size_ >= max_keys_) {
    Erase(lru_head_);
    ++evictions_;
  }
  if ((size_ + 1) * 4 > index_.size() * 3) Grow();
  if (free_ != kNone) {
    rec = free_;
    free_ = nodes_[rec].next;
  } else {
    rec = static_cast<std::uint32_t>(nodes_.size());
    nodes_.emplace_back();
    arena_.resize(arena_.size() + words_);
  }
  std::memset(record(rec), 0, words_ * sizeof(std::uint32_t));
  Node& n = nodes_[rec];
  n.hash = hash;
  n.last_seen = t;
  LinkTail(rec);
  const std::size_t mask = index_.size() - 1;
  std::size_t i = Slot(hash);
  while (index_[i] != kNone) i = (i + 1) & mask;
  index_[i] = rec;
  ++size_;
  return rec;
}

double KeyTable::bytes_per_key() const {
  const double index_share =
      size_ == 0 ? 0.0 : static_cast<double>(index_.size() * sizeof(std::uint32_t)) / size_;
  return static_cast<double>(words_ * sizeof(std::uint32_t) + sizeof(Node)) + index_share;
}

std::size_t KeyTable::memory_bytes() const {
  return index_.capacity() * sizeof(std::uint32_t) + nodes_.capacity() * sizeof(Node) +
         arena_.capacity() * sizeof(std::uint32_t);
}

}  // namespace mxward
