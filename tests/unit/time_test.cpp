#include "mxward/time.h"

#include <gtest/gtest.h>

namespace mxward {
namespace {

TEST(DurationTest, ParsesUnitsAndCombinations) {
  EXPECT_EQ(*ParseDurationSeconds("600"), 600);
  EXPECT_EQ(*ParseDurationSeconds("10m"), 600);
  EXPECT_EQ(*ParseDurationSeconds("1h30m"), 5400);
  EXPECT_EQ(*ParseDurationSeconds("2d"), 172800);
  EXPECT_EQ(*ParseDurationSeconds("1w"), 604800);
}

TEST(DurationTest, RejectsGarbageWithAMessage) {
  auto r = ParseDurationSeconds("10x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown unit"), std::string::npos);
  EXPECT_FALSE(ParseDurationSeconds("").ok());
  EXPECT_FALSE(ParseDurationSeconds("-5m").ok());
  EXPECT_FALSE(ParseDurationSeconds("1h30").ok());
  EXPECT_FALSE(ParseDurationSeconds("99999999999999999999s").ok());
}

TEST(DurationTest, FormatsCompactly) {
  EXPECT_EQ(FormatDurationSeconds(600), "10m");
  EXPECT_EQ(FormatDurationSeconds(5400), "1h30m");
  EXPECT_EQ(FormatDurationSeconds(0), "0s");
}

TEST(TimeTest, CivilDaysAndRfc3339) {
  EXPECT_EQ(DaysFromCivil(1970, 1, 1), 0);
  EXPECT_EQ(DaysFromCivil(2000, 3, 1), 11017);
  const UnixMicros t = (DaysFromCivil(2026, 11, 23) * 86400 + 12 * 3600 + 5) * kMicrosPerSecond;
  EXPECT_EQ(FormatRfc3339(t), "2026-11-23T12:00:05Z");
}

}  // namespace
}  // namespace mxward
