// DistinctWindow: distinct counting, the closed window boundary, expiry, replacement at N, the
// rebase when a tick offset would overflow 32 bits, and the tick chosen for long windows.
#include "engine/rules/distinct_window.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace mxward {
namespace {

constexpr UnixMicros kSec = kMicrosPerSecond;
constexpr UnixMicros kMin = 60 * kSec;
constexpr UnixMicros kT0 = 1'795'000'000 * kSec;

class DistinctWindowTest : public ::testing::Test {
 protected:
  void Use(std::uint32_t threshold, std::int64_t window_seconds) {
    window_.emplace(threshold, window_seconds);
    state_.assign(window_->state_words(), 0);
  }
  std::uint32_t Add(UnixMicros t, std::uint32_t value) { return window_->Add(s(), t, value); }
  std::uint32_t* s() { return state_.data(); }

  std::optional<DistinctWindow> window_{std::in_place, 5, 600};
  std::vector<std::uint32_t> state_ = std::vector<std::uint32_t>(window_->state_words());
};

TEST_F(DistinctWindowTest, StateIsThreePlusTwoWordsPerValue) {
  EXPECT_EQ(window_->state_words(), 13u);
}

TEST_F(DistinctWindowTest, EmptyStateHoldsNothing) {
  EXPECT_EQ(window_->Oldest(s()), 0);
  EXPECT_EQ(window_->Expire(s(), kT0), 0u);
}

TEST_F(DistinctWindowTest, ARepeatedValueCountsOnce) {
  EXPECT_EQ(Add(kT0, 7), 1u);
  EXPECT_EQ(Add(kT0 + kSec, 7), 1u);
  EXPECT_EQ(Add(kT0 + 2 * kSec, 8), 2u);
  EXPECT_EQ(Add(kT0 + 3 * kSec, 7), 2u);
  EXPECT_EQ(Add(kT0 + 4 * kSec, 9), 3u);
}

TEST_F(DistinctWindowTest, TheWindowIsClosed) {
  Add(kT0, 1);
  EXPECT_EQ(Add(kT0 + 600 * kSec, 2), 2u) << "exactly W apart: both inside";
  EXPECT_EQ(window_->Expire(s(), kT0 + 600 * kSec + 1), 1u) << "one µs later the first is out";
  EXPECT_EQ(window_->Oldest(s()), kT0 + 600 * kSec);
}

TEST_F(DistinctWindowTest, ValuesExpireByTheirLastUse) {
  Add(kT0, 1);
  Add(kT0 + 100 * kSec, 2);
  Add(kT0 + 300 * kSec, 1);  // 1 used again
  EXPECT_EQ(window_->Oldest(s()), kT0 + 100 * kSec);
  EXPECT_EQ(window_->Expire(s(), kT0 + 700 * kSec), 2u);
  EXPECT_EQ(window_->Expire(s(), kT0 + 701 * kSec), 1u) << "2 was last used at +100 s";
  EXPECT_EQ(window_->Oldest(s()), kT0 + 300 * kSec);
  EXPECT_EQ(Add(kT0 + 901 * kSec, 3), 1u) << "1 was last used at +300 s";
}

TEST_F(DistinctWindowTest, AtTheThresholdANewValueReplacesTheOneUsedLongestAgo) {
  for (std::uint32_t v = 1; v <= 5; ++v) EXPECT_EQ(Add(kT0 + v * kSec, v), v);
  Add(kT0 + 10 * kSec, 1);  // 2 is now the one used longest ago
  EXPECT_EQ(Add(kT0 + 11 * kSec, 6), 5u);
  EXPECT_EQ(window_->Oldest(s()), kT0 + 3 * kSec);
  EXPECT_EQ(Add(kT0 + 12 * kSec, 1), 5u) << "1 was kept";
  EXPECT_EQ(Add(kT0 + 13 * kSec, 2), 5u) << "2 was replaced: new again, replacing 3";
  EXPECT_EQ(window_->Oldest(s()), kT0 + 4 * kSec);
}

TEST_F(DistinctWindowTest, AnOutOfOrderValueIsRecordedAtTheBase) {
  Add(kT0 + 10 * kSec, 1);
  EXPECT_EQ(Add(kT0, 2), 2u);
  EXPECT_EQ(window_->Oldest(s()), kT0 + 10 * kSec);
}

TEST_F(DistinctWindowTest, TickGrowsWithTheWindow) {
  EXPECT_EQ(window_->tick_micros(), 1);
  Use(5, 3600);
  EXPECT_EQ(window_->tick_micros(), 1000);
  Use(5, 30 * 86400);
  EXPECT_EQ(window_->tick_micros(), kSec);
}

TEST_F(DistinctWindowTest, OffsetsPast32BitsMoveTheBaseAndStayExact) {
  Use(5, 30 * 60);  // 1.8e9 µs: 1 µs ticks, so offsets overflow after about 71.6 minutes
  ASSERT_EQ(window_->tick_micros(), 1);
  Add(kT0, 1);
  Add(kT0 + 25 * kMin, 2);
  Add(kT0 + 50 * kMin, 3);
  EXPECT_EQ(Add(kT0 + 75 * kMin, 4), 2u) << "1 and 2 left; 3 and 4 inside";
  EXPECT_EQ(window_->Oldest(s()), kT0 + 50 * kMin);
  EXPECT_EQ(Add(kT0 + 76 * kMin, 3), 2u);
  EXPECT_EQ(window_->Expire(s(), kT0 + 105 * kMin + 1), 1u);
  EXPECT_EQ(window_->Oldest(s()), kT0 + 76 * kMin);
}

TEST_F(DistinctWindowTest, AKeyEmptiedByExpiryStartsAfresh) {
  Add(kT0, 1);
  Add(kT0 + kSec, 2);
  EXPECT_EQ(Add(kT0 + 10 * 86400 * kSec, 3), 1u);
  EXPECT_EQ(window_->Oldest(s()), kT0 + 10 * 86400 * kSec);
}

}  // namespace
}  // namespace mxward
