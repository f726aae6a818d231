// KeyTable: the bounded table of per-key window state for one playbook.
//
// Keys are 64-bit seeded hashes (of the binary address or prefix, or of the lower-cased field
// bytes), so a lookup never builds a string. Each key owns a fixed-size record of uint32 words the
// playbook's trigger lays out (a SlidingWindowCounter ring, distinct values, a run length, ...).
// Records live in one contiguous arena; the index is open addressing with linear probing over
// record numbers. Memory is allocated only when a new key is inserted (amortised vector growth).
//
// Bounds: a key idle (not touched) for longer than idle_micros is expired, oldest first, a few per
// insertion, so the table stays near the set of keys with live windows. At max_keys, inserting a
// new key evicts the least recently touched key (the oldest idle), which is counted in evictions():
// under a flood of distinct attackers we forget the quietest ones first, never refuse a new one.
// Time is event time passed in by the caller; the table never reads a clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mxward/time.h"

namespace mxward {

class KeyTable {
 public:
  static constexpr std::uint32_t kNone = 0xffffffffu;

  KeyTable(std::uint32_t record_words, std::size_t max_keys, UnixMicros idle_micros);

  // The record number of hash, or kNone.
  std::uint32_t Find(std::uint64_t hash) const;
  // Finds hash or inserts it with a zeroed record (evicting at max_keys); *inserted says which.
  // Touches the key at time t (marks it most recently used).
  std::uint32_t FindOrInsert(std::uint64_t hash, UnixMicros t, bool* inserted);
  // Marks the key most recently used at t.
  void Touch(std::uint32_t rec, UnixMicros t);
  void Erase(std::uint32_t rec);
  // Expires up to `budget` keys idle since before now - idle_micros. Returns how many.
  std::size_t ExpireIdle(UnixMicros now, std::size_t budget);

  std::uint32_t* record(std::uint32_t rec) { return &arena_[std::size_t{rec} * words_]; }
  const std::uint32_t* record(std::uint32_t rec) const {
    return &arena_[std::size_t{rec} * words_];
  }
  std::uint64_t hash(std::uint32_t rec) const { return nodes_[rec].hash; }
  UnixMicros last_seen(std::uint32_t rec) const { return nodes_[rec].last_seen; }

  // Calls f(rec) for every key held, least recently touched first. Reads only (`mxward status`).
  template <typename F>
  void ForEach(F f) const {
    for (std::uint32_t rec = lru_head_; rec != kNone; rec = nodes_[rec].next) f(rec);
  }

  std::size_t size() const { return size_; }
  std::size_t max_keys() const { return max_keys_; }
  std::uint64_t evictions() const { return evictions_; }
  std::uint64_t expirations() const { return expirations_; }
  // Bytes one key costs: its record, its node and its share of the index at the current load.
  double bytes_per_key() const;
  // Bytes held by the table's arrays (capacity, not size).
  std::size_t memory_bytes() const;

 private:
  struct Node {
    std::uint64_t hash = 0;
    UnixMicros last_seen = 0;
    std::uint32_t prev = kNone;  // LRU list; for a free node, next links the free list
    std::uint32_t next = kNone;
  };

  std::size_t Slot(std::uint64_t hash) const { return (hash * 0x9E3779B97F4A7C15ull) >> shift_; }
  void Unlink(std::uint32_t rec);
  void LinkTail(std::uint32_t rec);
  void Grow();
  void RemoveFromIndex(std::uint32_t rec);

  std::uint32_t words_;
  std::size_t max_keys_;
  UnixMicros idle_us_;
  std::vector<std::uint32_t> index_;  // record numbers, kNone = empty; size is a power of two
  int shift_ = 64;
  std::vector<Node> nodes_;
  std::vector<std::uint32_t> arena_;
  std::uint32_t lru_head_ = kNone, lru_tail_ = kNone, free_ = kNone;
  std::size_t size_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t expirations_ = 0;
};

}  // namespace mxward
