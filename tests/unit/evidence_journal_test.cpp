// EvidenceJournal and EvidenceRing: lines leave the journal as it wraps, references survive the
// 2^32 wrap, a key keeps its first and last five lines, and lines that left are counted.
#include "engine/rules/evidence_journal.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mxward {
namespace {

constexpr UnixMicros kT0 = 1'795'000'000 * kMicrosPerSecond;

std::string LineFor(int i) { return "line " + std::to_string(i); }

std::vector<std::string> Texts(const std::vector<EvidenceLine>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back(l.text);
  return out;
}

TEST(EvidenceJournalTest, GetReturnsTheLineAndTimeAppended) {
  EvidenceJournal journal(16, 64);
  const std::uint32_t a = journal.Append("first", kT0);
  const std::uint32_t b = journal.Append("second", kT0 + 1);
  EXPECT_NE(a, b);
  EvidenceLine line;
  ASSERT_TRUE(journal.Get(a, &line));
  EXPECT_EQ(line.text, "first");
  EXPECT_EQ(line.time, kT0);
  ASSERT_TRUE(journal.Get(b, &line));
  EXPECT_EQ(line.text, "second");
  EXPECT_EQ(line.time, kT0 + 1);
}

TEST(EvidenceJournalTest, ARefNeverAppendedIsNotFound) {
  EvidenceJournal journal(16, 64);
  EvidenceLine line;
  EXPECT_FALSE(journal.Get(0, &line));  // all-zero record words
  EXPECT_FALSE(journal.Get(1, &line));  // not appended yet
  journal.Append("only", kT0);
  EXPECT_TRUE(journal.Get(1, &line));
  EXPECT_FALSE(journal.Get(2, &line));
}

TEST(EvidenceJournalTest, SizesHaveAFloor) {
  EvidenceJournal journal(1, 1);
  EXPECT_EQ(journal.capacity(), 16u);
  EXPECT_EQ(journal.line_bytes(), 64u);
}

TEST(EvidenceJournalTest, ALongLineIsCutAndMarked) {
  EvidenceJournal journal(16, 64);
  const std::string exact(64, 'x');
  const std::string longer(65, 'y');
  const std::uint32_t a = journal.Append(exact, kT0);
  const std::uint32_t b = journal.Append(longer, kT0);
  EvidenceLine line;
  ASSERT_TRUE(journal.Get(a, &line));
  EXPECT_EQ(line.text, exact);
  ASSERT_TRUE(journal.Get(b, &line));
  EXPECT_EQ(line.text, std::string(64, 'y') + "...");
}

TEST(EvidenceJournalTest, WrappingOverwritesTheOldestLines) {
  EvidenceJournal journal(16, 64);
  std::vector<std::uint32_t> refs;
  for (int i = 0; i < 20; ++i) refs.push_back(journal.Append(LineFor(i), kT0 + i));
  EvidenceLine line;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(journal.Get(refs[i], &line)) << i;
  for (int i = 4; i < 20; ++i) {
    ASSERT_TRUE(journal.Get(refs[i], &line)) << i;
    EXPECT_EQ(line.text, LineFor(i));
    EXPECT_EQ(line.time, kT0 + i);
  }
}

TEST(EvidenceJournalTest, ReferencesStayExactAcrossThe32BitWrap) {
  // Sequence numbers 2^32 - 8 ... 2^32 + 7: the references wrap through 0 in the middle.
  EvidenceJournal journal(16, 64, 0x100000000ull - 8);
  std::vector<std::uint32_t> refs;
  for (int i = 0; i < 16; ++i) refs.push_back(journal.Append(LineFor(i), kT0 + i));
  EXPECT_EQ(refs[7], 0xffffffffu);
  EXPECT_EQ(refs[8], 0u);
  EvidenceLine line;
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(journal.Get(refs[i], &line)) << i;
    EXPECT_EQ(line.text, LineFor(i));
  }
  // One more line pushes out the oldest, from before the wrap.
  journal.Append("next", kT0 + 16);
  EXPECT_FALSE(journal.Get(refs[0], &line));
  ASSERT_TRUE(journal.Get(refs[1], &line));
  EXPECT_EQ(line.text, LineFor(1));
}

class EvidenceRingTest : public ::testing::Test {
 protected:
  EvidenceJournal journal_{16, 64};
  std::uint32_t words_[EvidenceRing::kWords] = {};
  EvidenceRing ring_{words_};

  void Count(int from, int to) {
    for (int i = from; i < to; ++i) ring_.Add(journal_.Append(LineFor(i), kT0 + i));
  }
  std::vector<std::string> Copied(std::size_t* dropped = nullptr) {
    std::vector<EvidenceLine> out;
    const std::size_t d = ring_.Copy(journal_, &out);
    if (dropped) *dropped = d;
    return Texts(out);
  }
};

TEST_F(EvidenceRingTest, ZeroWordsAreAnEmptyRing) {
  EXPECT_EQ(ring_.first_count(), 0u);
  EXPECT_EQ(ring_.last_count(), 0u);
  std::size_t dropped = 1;
  EXPECT_TRUE(Copied(&dropped).empty());
  EXPECT_EQ(dropped, 0u);
}

TEST_F(EvidenceRingTest, FewLinesAreAllFirstLines) {
  Count(0, 3);
  EXPECT_EQ(ring_.first_count(), 3u);
  EXPECT_EQ(ring_.last_count(), 0u);
  EXPECT_EQ(Copied(), (std::vector<std::string>{"line 0", "line 1", "line 2"}));
}

TEST_F(EvidenceRingTest, KeepsTheFirstFiveAndTheLastFiveInOrder) {
  Count(0, 13);  // 0-4 first; 5-12 through the last ring, which wraps: 8-12 remain
  EXPECT_EQ(ring_.first_count(), 5u);
  EXPECT_EQ(ring_.last_count(), 5u);
  EXPECT_EQ(Copied(),
            (std::vector<std::string>{"line 0", "line 1", "line 2", "line 3", "line 4", "line 8",
                                      "line 9", "line 10", "line 11", "line 12"}));
}

TEST_F(EvidenceRingTest, LinesThatLeftTheJournalAreCountedBetweenFirstAndLast) {
  Count(0, 5);                                                     // the first five
  for (int i = 5; i < 30; ++i) journal_.Append("other key", kT0);  // pushes them out
  Count(30, 33);
  std::size_t dropped = 0;
  EXPECT_EQ(Copied(&dropped), (std::vector<std::string>{"(5 evidence line(s) no longer held)",
                                                        "line 30", "line 31", "line 32"}));
  EXPECT_EQ(dropped, 5u);
}

TEST_F(EvidenceRingTest, TheDroppedMarkerFollowsTheFirstLinesStillHeld) {
  Count(0, 5);
  for (int i = 0; i < 12; ++i) journal_.Append("other key", kT0);  // lines 0-2 leave
  Count(5, 7);
  std::vector<EvidenceLine> out;
  EXPECT_EQ(ring_.Copy(journal_, &out), 3u);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].text, "line 3");
  EXPECT_EQ(out[1].text, "line 4");
  EXPECT_EQ(out[2].text, "(3 evidence line(s) no longer held)");
  EXPECT_EQ(out[2].time, 0);
  EXPECT_EQ(out[3].text, "line 5");
  EXPECT_EQ(out[4].time, kT0 + 6);
}

TEST_F(EvidenceRingTest, ClearStartsANewEpisode) {
  Count(0, 12);
  ring_.Clear();
  Count(12, 14);
  EXPECT_EQ(Copied(), (std::vector<std::string>{"line 12", "line 13"}));
}

}  // namespace
}  // namespace mxward
