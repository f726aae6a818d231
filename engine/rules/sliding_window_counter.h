// SlidingWindowCounter: an exact sliding-window count of attempts per key, in event time.
//
// The counter is the policy (threshold N, window W, tick); the per-key state is a small array of
// uint32 words the caller owns (a KeyTable record), so one counter serves every key of a playbook
// and a key costs 3 + N words: a 64-bit base time, a head/size word and a ring of the N newest
// attempt times stored as uint32 tick offsets from the base. For N = 20 that is 92 bytes.
//
// Window boundary (decided and tested): the window is closed. An attempt at time t counts every
// attempt at s with t - W <= s <= t. With W = 10m, 20 attempts whose first and 20th are exactly
// 10:00 apart are 20 within the window; 10:01 apart they are 19. This is how a person reads
// "20 failures within 10 minutes" and matches the skeleton's annotated log.
//
// Only the N newest attempts are kept: "at least N in the window" holds exactly when the N-th
// newest attempt is inside it, so older ones never matter. A weighted event (Dovecot's
// "3 attempts") adds min(weight, N) ring entries at the same time.
//
// Ticks: 1 µs when W fits 2^31 µs (about 35 minutes), 1 ms up to about 24 days, 1 s beyond. Times
// are compared after truncation to the tick, so windows over 35 minutes are exact to the ms (and
// syslog times are whole seconds anyway). When an offset would overflow 32 bits the ring is rebased
// to t - W, which always fits because only attempts inside the window are kept.
//
// Event times can arrive slightly out of order (several hosts, several inputs). An attempt older
// than the key's newest is counted at the newest time: never lost, at worst kept a little longer.
#pragma once

#include <cstdint>

#include "mxward/time.h"

namespace mxward {

class SlidingWindowCounter {
 public:
  // threshold: 1..65535; window_seconds > 0.
  SlidingWindowCounter(std::uint32_t threshold, std::int64_t window_seconds);

  // uint32 words of state per key.
  std::uint32_t state_words() const { return 3 + threshold_; }
  std::uint32_t threshold() const { return threshold_; }
  std::int64_t window_seconds() const { return window_us_ / kMicrosPerSecond; }
  std::int64_t tick_micros() const { return tick_us_; }

  // Empties a key's state (all zero words are an empty state too).
  void Reset(std::uint32_t* state) const;
  // Drops the attempts at or before t (a reset at t, known after newer attempts were counted:
  // those stay). Returns how many remain.
  std::uint32_t DropThrough(std::uint32_t* state, UnixMicros t) const;
  // Records `weight` attempts at t. Returns the attempts inside the window [t - W, t] including
  // these (exact while it is below N + weight; capped by the ring beyond that).
  std::uint64_t Add(std::uint32_t* state, UnixMicros t, std::uint32_t weight) const;
  // Attempts inside [t - W, t] without recording anything (at most N).
  std::uint32_t CountAt(const std::uint32_t* state, UnixMicros t) const;
  // Time of the oldest attempt still held inside [t - W, t], or 0 when none.
  UnixMicros OldestAt(const std::uint32_t* state, UnixMicros t) const;
  // Time of the newest attempt held, or 0 when none.
  UnixMicros Newest(const std::uint32_t* state) const;
  bool Empty(const std::uint32_t* state) const;

 private:
  // Drops attempts older than t - W; returns how many remain.
  std::uint32_t Expire(std::uint32_t* state, UnixMicros t) const;

  std::uint32_t threshold_;
  UnixMicros window_us_;
  UnixMicros tick_us_;
};

}  // namespace mxward
