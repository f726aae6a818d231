// Time in mxward: event time is microseconds since the Unix epoch, UTC (UnixMicros). It comes from
// the log line, never from the wall clock, so a replay of yesterday's log behaves as it did live.
// Clock is injected wherever "now" matters (expiry, retry backoff) so tests control it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "mxward/status.h"

namespace mxward {

using UnixMicros = std::int64_t;
inline constexpr UnixMicros kMicrosPerSecond = 1'000'000;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual UnixMicros Now() const = 0;
};

// The real clock (CLOCK_REALTIME).
class SystemClock final : public Clock {
 public:
  UnixMicros Now() const override;
  static const SystemClock* Instance();
};

// A clock tests set by hand. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(UnixMicros start = 0) : now_(start) {}
  UnixMicros Now() const override { return now_.load(std::memory_order_relaxed); }
  void Set(UnixMicros t) { now_.store(t, std::memory_order_relaxed); }
  void Advance(UnixMicros d) { now_.fetch_add(d, std::memory_order_relaxed); }

 private:
  std::atomic<UnixMicros> now_;
};

// Parses "600", "90s", "10m", "1h30m", "2d", "1w" into seconds. Rejects negatives and overflow.
Result<std::int64_t> ParseDurationSeconds(std::string_view text);
// 600 -> "10m", 5400 -> "1h30m", 0 -> "0s".
std::string FormatDurationSeconds(std::int64_t seconds);
// RFC 3339 in UTC with second precision ("2026-11-23T12:00:05Z"), or with the local offset.
std::string FormatRfc3339(UnixMicros t, bool local = false);
// Days since 1970-01-01 for a proleptic Gregorian date (no time zone, no I/O).
std::int64_t DaysFromCivil(int year, unsigned month, unsigned day);

}  // namespace mxward
