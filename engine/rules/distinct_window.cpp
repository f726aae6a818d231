#include "engine/rules/distinct_window.h"

#include <algorithm>

namespace mxward {

namespace {

// State layout: base time (2 words), size (1), then `size` (value, tick offset) pairs.
constexpr std::uint32_t kSizeWord = 2;
constexpr std::uint32_t kPairsWord = 3;

UnixMicros Base(const std::uint32_t* s) {
  return static_cast<UnixMicros>((static_cast<std::uint64_t>(s[1]) << 32) | s[0]);
}
void SetBase(std::uint32_t* s, UnixMicros v) {
  const auto u = static_cast<std::uint64_t>(v);
  s[0] = static_cast<std::uint32_t>(u);
  s[1] = static_cast<std::uint32_t>(u >> 32);
}

}  // namespace

DistinctWindow::DistinctWindow(std::uint32_t threshold, std::int64_t window_seconds)
    : n_(threshold), window_us_(window_seconds * kMicrosPerSecond) {
  tick_us_ = window_us_ < (std::int64_t{1} << 31)          ? 1
             : window_us_ / 1000 < (std::int64_t{1} << 31) ? 1000
                                                           : kMicrosPerSecond;
}

std::uint32_t DistinctWindow::Add(std::uint32_t* s, UnixMicros t, std::uint32_t value) const {
  std::uint32_t size = Expire(s, t);
  UnixMicros base = Base(s);
  std::uint32_t* pairs = s + kPairsWord;
  if (size == 0) {
    base = t;
    SetBase(s, base);
  }
  if (t < base) t = base;
  std::int64_t off = (t - base) / tick_us_;
  if (off > 0xffffffffll) {
    // Every value held is inside [t - W, t] (Expire above), so offsets from t - W fit.
    const std::int64_t shift = (t - window_us_ - base) / tick_us_;
    for (std::uint32_t i = 0; i < size; ++i) pairs[2 * i + 1] -= static_cast<std::uint32_t>(shift);
    base += shift * tick_us_;
    SetBase(s, base);
    off -= shift;
  }
  for (std::uint32_t i = 0; i < size; ++i) {
    if (pairs[2 * i] == value) {
      pairs[2 * i + 1] = std::max(pairs[2 * i + 1], static_cast<std::uint32_t>(off));
      return size;
    }
  }
  std::uint32_t slot = size;
  if (size == n_) {  // replace the one used longest ago
    slot = 0;
    for (std::uint32_t i = 1; i < size; ++i) {
      if (pairs[2 * i + 1] < pairs[2 * slot + 1]) slot = i;
    }
  } else {
    ++size;
  }
  pairs[2 * slot] = value;
  pairs[2 * slot + 1] = static_cast<std::uint32_t>(off);
  s[kSizeWord] = size;
  return size;
}

UnixMicros DistinctWindow::Oldest(const std::uint32_t* s) const {
  if (s[kSizeWord] == 0) return 0;
  std::uint32_t m = 0xffffffffu;
  for (std::uint32_t i = 0; i < s[kSizeWord]; ++i) m = std::min(m, s[kPairsWord + 2 * i + 1]);
  return Base(s) + static_cast<UnixMicros>(m) * tick_us_;
}

std::uint32_t DistinctWindow::CountAt(const std::uint32_t* s, UnixMicros t) const {
  const std::uint32_t size = s[kSizeWord];
  const UnixMicros base = Base(s);
  const UnixMicros from = t - window_us_;
  if (size == 0 || from <= base) return size;
  const std::int64_t cutoff = (from - base) / tick_us_;
  std::uint32_t in = 0;
  for (std::uint32_t i = 0; i < size; ++i) {
    in += static_cast<std::int64_t>(s[kPairsWord + 2 * i + 1]) >= cutoff ? 1 : 0;
  }
  return in;
}

std::uint32_t DistinctWindow::Expire(std::uint32_t* s, UnixMicros t) const {
  std::uint32_t size = s[kSizeWord];
  const UnixMicros base = Base(s);
  const UnixMicros from = t - window_us_;
  if (size == 0 || from <= base) return size;
  const std::int64_t cutoff = (from - base) / tick_us_;
  std::uint32_t* pairs = s + kPairsWord;
  std::uint32_t kept = 0;
  for (std::uint32_t i = 0; i < size; ++i) {
    if (static_cast<std::int64_t>(pairs[2 * i + 1]) >= cutoff) {
      pairs[2 * kept] = pairs[2 * i];
      pairs[2 * kept + 1] = pairs[2 * i + 1];
      ++kept;
    }
  }
  s[kSizeWord] = kept;
  return kept;
}

}  // namespace mxward
