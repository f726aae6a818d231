#include "engine/rules/sliding_window_counter.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace mxward {

namespace {

constexpr std::int64_t kMaxTicks = std::int64_t{1} << 31;

UnixMicros Base(const std::uint32_t* s) {
  std::uint64_t v = (static_cast<std::uint64_t>(s[1]) << 32) | s[0];
  return static_cast<UnixMicros>(v);
}
void SetBase(std::uint32_t* s, UnixMicros b) {
  auto v = static_cast<std::uint64_t>(b);
  s[0] = static_cast<std::uint32_t>(v);
  s[1] = static_cast<std::uint32_t>(v >> 32);
}
std::uint32_t Head(const std::uint32_t* s) { return s[2] & 0xffff; }
std::uint32_t Size(const std::uint32_t* s) { return s[2] >> 16; }
void SetHeadSize(std::uint32_t* s, std::uint32_t head, std::uint32_t size) {
  s[2] = (size << 16) | head;
}

}  // namespace

SlidingWindowCounter::SlidingWindowCounter(std::uint32_t threshold, std::int64_t window_seconds)
    : threshold_(std::clamp<std::uint32_t>(threshold, 1, 65535)),
      window_us_(std::max<std::int64_t>(window_seconds, 1) * kMicrosPerSecond) {
  if (window_us_ < kMaxTicks) {
    tick_us_ = 1;
  } else if (window_us_ / 1000 < kMaxTicks) {
    tick_us_ = 1000;
  } else {
    tick_us_ = kMicrosPerSecond;
  }
}

void SlidingWindowCounter::Reset(std::uint32_t* state) const {
  std::memset(state, 0, state_words() * sizeof(std::uint32_t));
}

std::uint32_t SlidingWindowCounter::DropThrough(std::uint32_t* s, UnixMicros t) const {
  std::uint32_t head = Head(s), size = Size(s);
  if (size == 0) return 0;
  const UnixMicros base = Base(s);
  if (t < base) return size;
  // Held attempts are in time order (a late one is held at the newest time), oldest at head.
  const std::int64_t last = (t - base) / tick_us_;
  const std::uint32_t* ring = s + 3;
  while (size > 0 && static_cast<std::int64_t>(ring[head]) <= last) {
    head = (head + 1) % threshold_;
    --size;
  }
  SetHeadSize(s, size == 0 ? 0 : head, size);
  return size;
}

bool SlidingWindowCounter::Empty(const std::uint32_t* state) const { return Size(state) == 0; }

std::uint32_t SlidingWindowCounter::Expire(std::uint32_t* s, UnixMicros t) const {
  std::uint32_t head = Head(s), size = Size(s);
  if (size == 0) return 0;
  const UnixMicros base = Base(s);
  const UnixMicros from = t - window_us_;
  if (from <= base) return size;
  const std::int64_t cutoff = (from - base) / tick_us_;
  const std::uint32_t* ring = s + 3;
  while (size > 0 && static_cast<std::int64_t>(ring[head]) < cutoff) {
    head = (head + 1) % threshold_;
    --size;
  }
  SetHeadSize(s, size == 0 ? 0 : head, size);
  return size;
}

std::uint64_t SlidingWindowCounter::Add(std::uint32_t* s, UnixMicros t,
                                        std::uint32_t weight) const {
  if (weight == 0) return CountAt(s, t);
  std::uint32_t size = Expire(s, t);
  std::uint32_t* ring = s + 3;
  UnixMicros base = Base(s);
  std::uint32_t head = Head(s);
  if (size == 0) {
    base = t;
    head = 0;
    SetBase(s, base);
  } else {
    const UnixMicros newest =
        base + static_cast<UnixMicros>(ring[(head + size - 1) % threshold_]) * tick_us_;
    if (t < newest) t = newest;  // out of order: counted at the key's newest time
  }
  std::int64_t off = (t - base) / tick_us_;
  if (off > std::numeric_limits<std::uint32_t>::max()) {
    // Rebase to the window start; every held attempt is inside the window, so offsets stay >= 0.
    const std::int64_t shift = (t - window_us_ - base) / tick_us_;
    for (std::uint32_t i = 0; i < size; ++i) {
      std::uint32_t& e = ring[(head + i) % threshold_];
      e = static_cast<std::uint32_t>(static_cast<std::int64_t>(e) - shift);
    }
    base += shift * tick_us_;
    SetBase(s, base);
    off -= shift;
  }
  const std::uint32_t before = size;
  const std::uint32_t k = std::min(weight, threshold_);
  for (std::uint32_t i = 0; i < k; ++i) {
    if (size == threshold_) {
      head = (head + 1) % threshold_;  // the oldest no longer decides anything
      --size;
    }
    ring[(head + size) % threshold_] = static_cast<std::uint32_t>(off);
    ++size;
  }
  SetHeadSize(s, head, size);
  return static_cast<std::uint64_t>(before) + weight;
}

std::uint32_t SlidingWindowCounter::CountAt(const std::uint32_t* s, UnixMicros t) const {
  const std::uint32_t head = Head(s), size = Size(s);
  if (size == 0) return 0;
  const UnixMicros base = Base(s);
  const UnixMicros from = t - window_us_;
  if (from <= base) return size;
  const std::int64_t cutoff = (from - base) / tick_us_;
  const std::uint32_t* ring = s + 3;
  std::uint32_t n = size;
  for (std::uint32_t i = 0; i < size; ++i) {
    if (static_cast<std::int64_t>(ring[(head + i) % threshold_]) >= cutoff) break;
    --n;
  }
  return n;
}

UnixMicros SlidingWindowCounter::OldestAt(const std::uint32_t* s, UnixMicros t) const {
  const std::uint32_t n = CountAt(s, t);
  if (n == 0) return 0;
  const std::uint32_t size = Size(s);
  const std::uint32_t idx = (Head(s) + (size - n)) % threshold_;
  return Base(s) + static_cast<UnixMicros>(s[3 + idx]) * tick_us_;
}

UnixMicros SlidingWindowCounter::Newest(const std::uint32_t* s) const {
  const std::uint32_t size = Size(s);
  if (size == 0) return 0;
  const std::uint32_t idx = (Head(s) + size - 1) % threshold_;
  return Base(s) + static_cast<UnixMicros>(s[3 + idx]) * tick_us_;
}

}  // namespace mxward
