// NovelBaseline: warm-up, the known/novel judgement (a window to become known, the ttl to be
// forgotten), the bounds, import from the store and the export of dirty entries.
#include "engine/rules/novel_baseline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace mxward {
namespace {

constexpr UnixMicros kSec = kMicrosPerSecond;
constexpr UnixMicros kHour = 3600 * kSec;
constexpr UnixMicros kDay = 86400 * kSec;
constexpr UnixMicros kT0 = 1'795'000'000 * kSec;

// Names key k and value v "key<k>" and "value<v>", and counts how often it was asked.
struct Text final : NovelBaseline::EntryText {
  std::uint64_t key = 0, value = 0;
  mutable int asked = 0;
  Text(std::uint64_t k, std::uint64_t v) : key(k), value(v) {}
  std::string Key() const override {
    ++asked;
    return "key" + std::to_string(key);
  }
  std::string Value() const override {
    ++asked;
    return "value" + std::to_string(value);
  }
};

BaselineSettings Settings() {
  BaselineSettings s;
  s.warmup_seconds = 86400;  // 1 d
  s.ttl_seconds = 30 * 86400;
  s.max_values = 4;
  s.max_keys = 2;
  return s;
}

class NovelBaselineTest : public ::testing::Test {
 protected:
  NovelBaseline baseline_{Settings(), 3600};  // a value is known an hour after its first use
  // Judges and learns value v of key k at t.
  bool Novel(std::uint64_t k, std::uint64_t v, UnixMicros t) {
    return baseline_.JudgeAndLearn(k, v, t, Text(k, v));
  }
  // Learns values 1..n of key k at kT0, then waits out the warm-up.
  UnixMicros Warm(std::uint64_t k, std::uint64_t n) {
    for (std::uint64_t v = 1; v <= n; ++v) EXPECT_FALSE(Novel(k, v, kT0));
    return kT0 + kDay;
  }
  std::vector<BaselineEntry> Dirty() {
    std::vector<BaselineEntry> out;
    baseline_.TakeDirty(&out);
    return out;
  }
};

TEST_F(NovelBaselineTest, NothingIsNovelDuringTheWarmup) {
  for (std::uint64_t v = 1; v <= 2; ++v) EXPECT_FALSE(Novel(1, v, kT0 + v * kSec));
  EXPECT_EQ(baseline_.learning_since(), kT0 + kSec);
  EXPECT_FALSE(Novel(1, 10, kT0 + kSec + kDay - 1)) << "one µs before the warm-up ends";
  EXPECT_TRUE(Novel(1, 11, kT0 + kSec + kDay)) << "the warm-up is over";
  EXPECT_EQ(baseline_.values_held(), 4u) << "everything was learned";
}

TEST_F(NovelBaselineTest, AValueBecomesKnownAWindowAfterItsFirstUse) {
  const UnixMicros t = Warm(1, 1);
  EXPECT_FALSE(Novel(1, 1, t)) << "learned during the warm-up";
  EXPECT_TRUE(Novel(1, 2, t)) << "never used";
  EXPECT_TRUE(Novel(1, 2, t + kHour - 1)) << "first used less than a window ago";
  EXPECT_FALSE(Novel(1, 2, t + kHour));
}

TEST_F(NovelBaselineTest, KeysLearnApart) {
  const UnixMicros t = Warm(1, 1);
  EXPECT_TRUE(Novel(2, 1, t)) << "value 1 is known to key 1 only";
  EXPECT_FALSE(Novel(1, 1, t));
}

TEST_F(NovelBaselineTest, AValueUnusedForTheTtlIsForgottenAndNewAgain) {
  Warm(1, 1);
  const UnixMicros ttl = 30 * kDay;
  EXPECT_FALSE(Novel(1, 1, kT0 + ttl)) << "last used exactly a ttl ago";
  EXPECT_TRUE(Novel(1, 1, kT0 + 2 * ttl + 1)) << "unused for longer than the ttl";
  EXPECT_TRUE(Novel(1, 1, kT0 + 2 * ttl + kHour - 1)) << "and relearned from its new first use";
  EXPECT_FALSE(Novel(1, 1, kT0 + 2 * ttl + kHour + 1));
}

TEST_F(NovelBaselineTest, AtMaxValuesTheValueUnusedLongestIsForgotten) {
  const UnixMicros t = Warm(1, 4);  // values 1-4 at kT0
  for (std::uint64_t v : {1, 3, 4}) EXPECT_FALSE(Novel(1, v, t));
  EXPECT_TRUE(Novel(1, 5, t + kSec)) << "a fifth value pushes out 2";
  EXPECT_EQ(baseline_.values_held(), 4u);
  EXPECT_TRUE(Novel(1, 2, t + kHour + kSec)) << "2 was forgotten";
  EXPECT_FALSE(Novel(1, 5, t + kHour + kSec));
}

TEST_F(NovelBaselineTest, AtMaxKeysFurtherKeysAreJudgedButNotLearned) {
  const UnixMicros t = Warm(1, 1);
  EXPECT_FALSE(Novel(2, 1, kT0));
  EXPECT_EQ(baseline_.keys_held(), 2u);
  EXPECT_TRUE(Novel(3, 1, t));
  EXPECT_TRUE(Novel(3, 1, t + kHour)) << "key 3 never learns";
  EXPECT_EQ(baseline_.keys_held(), 2u);
  EXPECT_EQ(baseline_.overflow(), 2u);
  EXPECT_EQ(baseline_.values_held(), 2u);
}

TEST_F(NovelBaselineTest, TextIsBuiltOnlyWhenAKeyOrValueIsStored) {
  Text first(1, 1);
  baseline_.JudgeAndLearn(1, 1, kT0, first);
  EXPECT_EQ(first.asked, 2) << "a new key and a new value";
  Text again(1, 1);
  baseline_.JudgeAndLearn(1, 1, kT0 + kSec, again);
  EXPECT_EQ(again.asked, 0) << "known key and value: no string built";
  Text other_value(1, 2);
  baseline_.JudgeAndLearn(1, 2, kT0 + kSec, other_value);
  EXPECT_EQ(other_value.asked, 1);
}

TEST_F(NovelBaselineTest, DirtyEntriesAreExportedOnceThenHourly) {
  Novel(1, 1, kT0);
  Novel(1, 2, kT0 + kSec);
  auto dirty = Dirty();
  ASSERT_EQ(dirty.size(), 2u);
  std::sort(dirty.begin(), dirty.end(),
            [](const BaselineEntry& a, const BaselineEntry& b) { return a.value < b.value; });
  EXPECT_EQ(dirty[0].key, "key1");
  EXPECT_EQ(dirty[0].value, "value1");
  EXPECT_EQ(dirty[0].last_seen, kT0);
  EXPECT_EQ(dirty[1].value, "value2");
  EXPECT_TRUE(Dirty().empty()) << "exported marks are kept";
  Novel(1, 1, kT0 + kHour - 1);
  EXPECT_TRUE(Dirty().empty()) << "used again within the hour";
  Novel(1, 1, kT0 + kHour);
  dirty = Dirty();
  ASSERT_EQ(dirty.size(), 1u);
  EXPECT_EQ(dirty[0].last_seen, kT0 + kHour);
}

TEST_F(NovelBaselineTest, ImportedEntriesAreKnownAtOnceAndNotDirty) {
  baseline_.Import(1, 1, 0, kT0 - 2 * kDay, Text(1, 1));
  baseline_.Import(1, 2, 0, kT0 - 3 * kDay, Text(1, 2));
  EXPECT_EQ(baseline_.learning_since(), kT0 - 3 * kDay) << "the oldest entry";
  EXPECT_TRUE(Dirty().empty());
  EXPECT_FALSE(Novel(1, 1, kT0)) << "known, and already warm";
  EXPECT_TRUE(Novel(1, 3, kT0));
}

TEST_F(NovelBaselineTest, AnEntryLastSeenAMomentAgoIsKnownAtOnce) {
  baseline_.Import(1, 9, 0, kT0 - 2 * kDay, Text(1, 9));  // warm
  baseline_.Import(1, 1, 0, kT0, Text(1, 1));
  EXPECT_FALSE(Novel(1, 1, kT0)) << "first seen taken as a window before last_seen";
  EXPECT_TRUE(Novel(1, 2, kT0));
}

TEST_F(NovelBaselineTest, EachKeyWarmsUpFromItsOwnFirstUse) {
  Novel(1, 1, kT0);
  EXPECT_FALSE(baseline_.InstallWarm(kT0 + kHour));
  EXPECT_FALSE(baseline_.KeyWarm(1, kT0 + kHour));
  EXPECT_TRUE(baseline_.InstallWarm(kT0 + kDay));
  EXPECT_TRUE(baseline_.KeyWarm(1, kT0 + kDay));
  // A key first seen after the install warmed up is cold for its own warm-up.
  Novel(2, 1, kT0 + 2 * kDay);
  EXPECT_FALSE(baseline_.KeyWarm(2, kT0 + 2 * kDay + kHour));
  EXPECT_TRUE(baseline_.KeyWarm(2, kT0 + 3 * kDay));
  EXPECT_FALSE(baseline_.KeyWarm(7, kT0 + 3 * kDay)) << "a key not held is cold";
  EXPECT_EQ(baseline_.KeyLearningSince(2), kT0 + 2 * kDay);
}

TEST_F(NovelBaselineTest, ImportedFirstUseDatesTheKeysWarmupAndIsExportedAgain) {
  // Used daily since two days ago: the last use alone would make it an hour old.
  baseline_.Import(1, 1, kT0 - 2 * kDay, kT0 - kHour, Text(1, 1));
  EXPECT_EQ(baseline_.KeyLearningSince(1), kT0 - 2 * kDay);
  EXPECT_EQ(baseline_.learning_since(), kT0 - 2 * kDay);
  EXPECT_TRUE(baseline_.KeyWarm(1, kT0));
  Novel(1, 1, kT0 + 2 * kHour);  // used again beyond the re-export interval
  auto dirty = Dirty();
  ASSERT_EQ(dirty.size(), 1u);
  EXPECT_EQ(dirty[0].first_seen, kT0 - 2 * kDay);
  EXPECT_EQ(dirty[0].last_seen, kT0 + 2 * kHour);
}

}  // namespace
}  // namespace mxward
