// DistinctWindow: how many distinct values a key used inside a sliding window, in event time.
//
// What: the state of a `distinct` trigger ("10 distinct user names from one address in 10m").
// Like SlidingWindowCounter, the window is the policy (threshold N, window W, tick) and the per-key
// state is an array of uint32 words the caller owns (a KeyTable record), so one DistinctWindow
// serves every key of a playbook. A key costs 3 + 2N words: a 64-bit base time, a size word, then
// up to N (value, tick offset from the base) pairs, the offset being when the value was last used.
//
// Who uses it: the PlaybookEngine, on its one thread; the object is immutable after construction
// and never allocates. Values are 32-bit hashes the caller computes (seeded, so a client cannot
// aim collisions at a key); the window never sees text.
//
// Why it exists: counting distinct values exactly needs a set, and a set per key would allocate
// per event. N pairs are enough: the count is exact while fewer than N distinct values are in the
// window, and at N the trigger fires and the key starts over, so more are never needed. Should a
// value arrive when N are held, it replaces the one used longest ago.
//
// Window boundary: closed, as in SlidingWindowCounter. A value used at s is inside the window of
// t while t - W <= s (after truncation to the tick). Ticks: 1 µs when W fits 2^31 µs, 1 ms up to
// about 24 days, 1 s beyond; when an offset would overflow 32 bits the base moves up to t - W.
// A value used at a time before the key's base (out-of-order input) is recorded at the base.
#pragma once

#include <cstdint>

#include "mxward/time.h"

namespace mxward {

class DistinctWindow {
 public:
  // threshold: N >= 1; window_seconds > 0.
  DistinctWindow(std::uint32_t threshold, std::int64_t window_seconds);

  // uint32 words of state per key (all zero words are an empty state).
  std::uint32_t state_words() const { return 3 + 2 * n_; }
  std::int64_t tick_micros() const { return tick_us_; }

  // Drops values last used before t - W, then records `value` as used at t. Returns the distinct
  // values inside the window, this one included.
  std::uint32_t Add(std::uint32_t* state, UnixMicros t, std::uint32_t value) const;
  // Drops values last used before t - W. Returns the distinct values left.
  std::uint32_t Expire(std::uint32_t* state, UnixMicros t) const;
  // The distinct values inside the window of t, without dropping the older ones.
  std::uint32_t CountAt(const std::uint32_t* state, UnixMicros t) const;
  // The earliest last-use time among the values held (as of the last Add or Expire), 0 if none.
  UnixMicros Oldest(const std::uint32_t* state) const;

 private:
  std::uint32_t n_;
  UnixMicros window_us_;
  UnixMicros tick_us_;
};

}  // namespace mxward
