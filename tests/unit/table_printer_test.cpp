// The CLI's human output helpers: ages, local times, sparklines, tables, colour, MXWARD_NOW.
#include "engine/cli/table_printer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "engine/cli/commands.h"

namespace mxward::cli {
namespace {

constexpr UnixMicros kS = kMicrosPerSecond;

TEST(FormatAgeTest, PicksTheLargestSensibleUnit) {
  const UnixMicros now = 1'000'000 * kS;
  EXPECT_EQ(FormatAge(now - 2 * kS, now), "just now");
  EXPECT_EQ(FormatAge(now - 45 * kS, now), "45s ago");
  EXPECT_EQ(FormatAge(now - 180 * kS, now), "3m ago");
  EXPECT_EQ(FormatAge(now - 5 * 3600 * kS, now), "5h ago");
  EXPECT_EQ(FormatAge(now - 47 * 3600 * kS, now), "47h ago");
  EXPECT_EQ(FormatAge(now - 3 * 86400 * kS, now), "3d ago");
  EXPECT_EQ(FormatAge(now + 600 * kS, now), "in 10m");
}

TEST(FormatLocalTimeTest, FollowsTz) {
  const char* old = std::getenv("TZ");
  std::string saved = old ? old : "";
  setenv("TZ", "UTC", 1);
  tzset();
  EXPECT_EQ(FormatLocalTime(1795435200 * kS), "2026-11-23 12:00:00");
  setenv("TZ", "XXX-1", 1);  // POSIX rule: UTC+1, no tzdata needed
  tzset();
  EXPECT_EQ(FormatLocalTime(1795435200 * kS), "2026-11-23 13:00:00");
  if (old) {
    setenv("TZ", saved.c_str(), 1);
  } else {
    unsetenv("TZ");
  }
  tzset();
}

TEST(SparklineTest, ScalesToThePeakAndKeepsSmallValuesVisible) {
  EXPECT_EQ(Sparkline({}), "");
  EXPECT_EQ(Sparkline({0, 0}), "▁▁");
  EXPECT_EQ(Sparkline({0, 1, 100}), "▁▂█");
  EXPECT_EQ(Sparkline({50, 100}), "▅█");
  EXPECT_EQ(DisplayWidth(Sparkline({1, 2, 3})), 3u);
}

TEST(CliNowTest, ReadsMxwardNowInBothForms) {
  setenv("MXWARD_NOW", "2026-11-23T12:00:00Z", 1);
  EXPECT_EQ(CliNow(), 1795435200 * kS);
  setenv("MXWARD_NOW", "2026-11-23T13:00:00+01:00", 1);
  EXPECT_EQ(CliNow(), 1795435200 * kS);
  setenv("MXWARD_NOW", "1795435200", 1);
  EXPECT_EQ(CliNow(), 1795435200 * kS);
  setenv("MXWARD_NOW", "tomorrow", 1);
  EXPECT_THROW(CliNow(), CliExit);
  unsetenv("MXWARD_NOW");
  EXPECT_GT(CliNow(), 1795435200 * kS - 365LL * 86400 * kS * 10);
}

TEST(ColorTest, OnlyWhenEnabled) {
  EXPECT_EQ(Colorize("open", Color::kRed, false), "open");
  EXPECT_EQ(Colorize("open", Color::kRed, true), "\x1b[31mopen\x1b[0m");
  setenv("NO_COLOR", "1", 1);
  EXPECT_FALSE(StdoutWantsColor());
  unsetenv("NO_COLOR");
}

TEST(TablePrinterTest, AlignsColumnsWithoutTrailingSpaces) {
  TablePrinter t({"ID", "NAME", "NOTE"}, false);
  t.AlignRight(0);
  t.AddRow({{"7"}, {"alpha"}, {""}});
  t.AddRow({{"123"}, {"b"}, {"x"}});
  char* buf = nullptr;
  std::size_t len = 0;
  std::FILE* f = open_memstream(&buf, &len);
  t.Print(f);
  std::fclose(f);
  EXPECT_EQ(std::string(buf, len),
            " ID  NAME   NOTE\n"
            "  7  alpha\n"
            "123  b      x\n");
  std::free(buf);
}

}  // namespace
}  // namespace mxward::cli
