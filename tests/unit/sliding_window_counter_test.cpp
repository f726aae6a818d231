// SlidingWindowCounter and KeyTable: exact boundaries, weights, rebasing, bounded tables.
#include "engine/rules/sliding_window_counter.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/rules/key_table.h"

namespace mxward {
namespace {

constexpr UnixMicros kSec = kMicrosPerSecond;
constexpr UnixMicros kT0 = 1'795'000'000 * kSec;  // 2026-11-18, an arbitrary event time

class CounterTest : public ::testing::Test {
 protected:
  SlidingWindowCounter counter_{20, 600};
  std::vector<std::uint32_t> state_ = std::vector<std::uint32_t>(counter_.state_words());
  std::uint32_t* s() { return state_.data(); }
  // n attempts, the first at kT0 and the last at kT0 + span, evenly spread; returns the last Add.
  std::uint64_t Spread(int n, UnixMicros span) {
    std::uint64_t c = 0;
    for (int i = 0; i < n; ++i) c = counter_.Add(s(), kT0 + span * i / (n - 1), 1);
    return c;
  }
};

// A shared reset at t known after newer attempts were counted (docs/cluster.md "Resets"): the
// attempts at or before t go, the newer ones stay and keep counting.
TEST_F(CounterTest, DropThroughKeepsOnlyWhatIsNewer) {
  for (int i = 0; i < 5; ++i) counter_.Add(s(), kT0 + i * kSec, 1);
  EXPECT_EQ(counter_.DropThrough(s(), kT0 - kSec), 5u);  // before all of them: nothing goes
  EXPECT_EQ(counter_.DropThrough(s(), kT0 + 2 * kSec), 2u);
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 4 * kSec), 2u);
  EXPECT_EQ(counter_.Add(s(), kT0 + 5 * kSec, 1), 3u);
  EXPECT_EQ(counter_.DropThrough(s(), kT0 + 5 * kSec), 0u);
  EXPECT_TRUE(counter_.Empty(s()));
  EXPECT_EQ(counter_.Add(s(), kT0 + 6 * kSec, 1), 1u);
}

TEST_F(CounterTest, StateIsSmall) {
  EXPECT_EQ(counter_.state_words() * sizeof(std::uint32_t), 92u);
}

TEST_F(CounterTest, TwentyExactlyTenMinutesApartAreInsideTheWindow) {
  EXPECT_EQ(Spread(20, 600 * kSec), 20u);
}

TEST_F(CounterTest, TwentyTenMinutesAndOneSecondApartAreNineteen) {
  EXPECT_EQ(Spread(20, 601 * kSec), 19u);
}

TEST_F(CounterTest, OneMicrosecondPastTheWindowDropsTheFirst) {
  EXPECT_EQ(Spread(20, 600 * kSec + 19), 19u);  // 19 µs over, spread evenly: first one is out
}

TEST_F(CounterTest, NineteenIsBelowAndTwentiethReachesThreshold) {
  EXPECT_EQ(Spread(19, 300 * kSec), 19u);
  EXPECT_EQ(counter_.Add(s(), kT0 + 301 * kSec, 1), 20u);
}

TEST_F(CounterTest, CountAtAndOldestFollowTheWindow) {
  Spread(20, 190 * kSec);  // one every 10 s from kT0
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 600 * kSec), 20u);
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 601 * kSec), 19u);
  EXPECT_EQ(counter_.OldestAt(s(), kT0 + 601 * kSec), kT0 + 10 * kSec);
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 790 * kSec), 1u);
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 791 * kSec), 0u);
  EXPECT_EQ(counter_.Newest(s()), kT0 + 190 * kSec);
}

TEST_F(CounterTest, WeightCountsAsSeveralAttempts) {
  EXPECT_EQ(counter_.Add(s(), kT0, 5), 5u);
  EXPECT_EQ(counter_.Add(s(), kT0 + kSec, 14), 19u);
  EXPECT_EQ(counter_.Add(s(), kT0 + 2 * kSec, 3), 22u);     // exact even past N
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 600 * kSec), 20u);  // the ring holds N
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 601 * kSec), 17u);  // 14 at +1s and 3 at +2s
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 602 * kSec), 3u);
}

TEST_F(CounterTest, SlowAttemptsNeverAccumulate) {
  std::uint64_t max = 0;
  for (int i = 0; i < 200; ++i) max = std::max(max, counter_.Add(s(), kT0 + i * 40 * kSec, 1));
  EXPECT_EQ(max, 16u);  // 600 / 40 + 1: one every 40 s never reaches 20 in 10 minutes
}

TEST_F(CounterTest, OutOfOrderEventsCountAtTheNewestTime) {
  counter_.Add(s(), kT0 + 100 * kSec, 1);
  EXPECT_EQ(counter_.Add(s(), kT0, 1), 2u);
  EXPECT_EQ(counter_.Newest(s()), kT0 + 100 * kSec);
  EXPECT_EQ(counter_.CountAt(s(), kT0 + 700 * kSec), 2u);
}

TEST_F(CounterTest, ResetEmpties) {
  Spread(5, 10 * kSec);
  counter_.Reset(s());
  EXPECT_TRUE(counter_.Empty(s()));
  EXPECT_EQ(counter_.Add(s(), kT0 + 20 * kSec, 1), 1u);
}

TEST(SlidingWindowCounterLongTest, RebasesOverMonthsWithoutLosingTheWindow) {
  // 10-minute window with µs ticks overflows 32 bits after ~71 minutes: keep counting for days.
  SlidingWindowCounter c(3, 600);
  std::vector<std::uint32_t> st(c.state_words());
  std::uint64_t n = 0;
  for (int i = 0; i < 2000; ++i) n = c.Add(st.data(), kT0 + i * 299 * kSec, 1);
  EXPECT_EQ(n, 3u);  // t-598, t-299, t
  EXPECT_EQ(c.OldestAt(st.data(), kT0 + 1999 * 299 * kSec), kT0 + 1997 * 299 * kSec);
  EXPECT_EQ(c.Add(st.data(), kT0 + 1999 * 299 * kSec + 599 * kSec, 1), 2u);
}

TEST(SlidingWindowCounterLongTest, LongWindowsUseCoarserTicksAndStayExactForSeconds) {
  SlidingWindowCounter day(4, 86400);
  EXPECT_EQ(day.tick_micros(), 1000);
  SlidingWindowCounter month(4, 40 * 86400);
  EXPECT_EQ(month.tick_micros(), kSec);
  std::vector<std::uint32_t> st(day.state_words());
  day.Add(st.data(), kT0, 1);
  EXPECT_EQ(day.Add(st.data(), kT0 + 86400 * kSec, 1), 2u);
  EXPECT_EQ(day.Add(st.data(), kT0 + 86401 * kSec, 1), 2u);
}

TEST(KeyTableTest, FindInsertEraseManyKeys) {
  KeyTable t(4, 1'000'000, 3600 * kSec);
  bool inserted = false;
  for (std::uint64_t k = 0; k < 10'000; ++k) {
    std::uint32_t r = t.FindOrInsert(k * 7919, kT0, &inserted);
    ASSERT_TRUE(inserted);
    t.record(r)[0] = static_cast<std::uint32_t>(k);
  }
  EXPECT_EQ(t.size(), 10'000u);
  for (std::uint64_t k = 0; k < 10'000; k += 2) t.Erase(t.Find(k * 7919));
  for (std::uint64_t k = 0; k < 10'000; ++k) {
    std::uint32_t r = t.Find(k * 7919);
    if (k % 2 == 0) {
      EXPECT_EQ(r, KeyTable::kNone);
    } else {
      ASSERT_NE(r, KeyTable::kNone);
      EXPECT_EQ(t.record(r)[0], k);
    }
  }
  std::uint32_t r = t.FindOrInsert(2 * 7919, kT0, &inserted);
  EXPECT_TRUE(inserted);
  EXPECT_EQ(t.record(r)[0], 0u) << "a reused record starts zeroed";
}

TEST(KeyTableTest, AtTheCapTheOldestIdleKeyIsEvictedAndCounted) {
  KeyTable t(4, 3, 3600 * kSec);
  bool ins = false;
  t.FindOrInsert(1, kT0 + 1, &ins);
  t.FindOrInsert(2, kT0 + 2, &ins);
  t.FindOrInsert(3, kT0 + 3, &ins);
  t.FindOrInsert(1, kT0 + 4, &ins);  // key 1 active again: key 2 is now the oldest idle
  EXPECT_FALSE(ins);
  t.FindOrInsert(4, kT0 + 5, &ins);
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(t.Find(2), KeyTable::kNone);
  EXPECT_NE(t.Find(1), KeyTable::kNone);
  EXPECT_NE(t.Find(3), KeyTable::kNone);
}

TEST(KeyTableTest, IdleKeysExpire) {
  KeyTable t(4, 100, 600 * kSec);
  bool ins = false;
  t.FindOrInsert(1, kT0, &ins);
  t.FindOrInsert(2, kT0 + 300 * kSec, &ins);
  EXPECT_EQ(t.ExpireIdle(kT0 + 600 * kSec, 10), 0u);  // idle exactly 10m: kept
  EXPECT_EQ(t.ExpireIdle(kT0 + 601 * kSec, 10), 1u);
  EXPECT_EQ(t.Find(1), KeyTable::kNone);
  EXPECT_EQ(t.expirations(), 1u);
  EXPECT_EQ(t.ExpireIdle(kT0 + 1000 * kSec, 10), 1u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(KeyTableTest, TwentyAttemptCountKeyCostsUnder200Bytes) {
  // The playbook engine's record for a count trigger with N = 20: the counter's 23 words plus
  // its own 13 (episode start, evidence references).
  SlidingWindowCounter c(20, 600);
  KeyTable t(c.state_words() + 13, 1'000'000, 3600 * kSec);
  bool ins = false;
  for (std::uint64_t k = 0; k < 100'000; ++k) t.FindOrInsert(k, kT0, &ins);
  EXPECT_LE(t.bytes_per_key(), 200.0);
  EXPECT_GE(t.bytes_per_key(), 150.0);
}

}  // namespace
}  // namespace mxward
