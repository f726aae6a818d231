#include "engine/ingest/stream_framer.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mxward {
namespace {

struct Outcome {
  std::vector<std::string> lines;
  int empty = 0;
  bool bad = false;
  std::string why;
  bool lost = false;
  std::size_t max_capacity = 0;
};

// Feeds `data` in chunks of `chunk` bytes (0 = all at once), frames everything, then Finish().
Outcome FrameAll(std::string_view data, std::size_t max_message_size, std::size_t chunk = 0,
                 bool finish = true) {
  StreamFramer f(max_message_size);
  Outcome out;
  auto drain = [&] {
    for (;;) {
      Frame fr = f.Next();
      out.max_capacity = std::max(out.max_capacity, f.capacity());
      if (fr.kind == Frame::kLine) {
        out.lines.emplace_back(fr.line);
      } else if (fr.kind == Frame::kEmpty) {
        ++out.empty;
      } else if (fr.kind == Frame::kBad) {
        out.bad = true;
        out.why = fr.why;
        return;
      } else {
        return;
      }
    }
  };
  while (!data.empty() && !out.bad) {
    const std::string_view piece = chunk == 0 ? data : data.substr(0, chunk);
    const std::size_t took = f.Feed(piece);
    out.max_capacity = std::max(out.max_capacity, f.capacity());
    data.remove_prefix(took);
    drain();
    if (took == 0 && !out.bad) {
      ADD_FAILURE() << "Feed took nothing while not bad";
      break;
    }
  }
  if (finish && !out.bad) {
    Frame fr = f.Finish();
    if (fr.kind == Frame::kLine) out.lines.emplace_back(fr.line);
    if (fr.kind == Frame::kLost) out.lost = true;
  }
  return out;
}

std::string Octet(std::string_view msg) {
  return std::to_string(msg.size()) + " " + std::string(msg);
}

TEST(StreamFramerTest, OctetCountedSplitAtEveryByte) {
  std::string stream;
  std::vector<std::string> want;
  for (int i = 0; i < 12; ++i) {
    std::string m = "<22>1 2025-02-27T07:14:47Z mail postfix/smtpd " + std::to_string(i) +
                    " - - line " + std::to_string(i) + (i % 5 == 0 ? " multi\nline" : "") + "\n";
    stream += Octet(m);
    m.pop_back();
    want.push_back(m);
  }
  // Every split point of the stream into two reads, and one byte at a time.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    StreamFramer f(1024);
    std::vector<std::string> got;
    for (std::string_view part :
         {std::string_view(stream).substr(0, cut), std::string_view(stream).substr(cut)}) {
      while (!part.empty()) {
        part.remove_prefix(f.Feed(part));
        for (Frame fr = f.Next(); fr.kind != Frame::kNeedMore; fr = f.Next()) {
          ASSERT_EQ(fr.kind, Frame::kLine) << "cut " << cut << ": " << fr.why;
          got.emplace_back(fr.line);
        }
      }
    }
    ASSERT_EQ(got, want) << "cut at " << cut;
    EXPECT_EQ(f.framing(), StreamFramer::Framing::kOctetCounted);
  }
  EXPECT_EQ(FrameAll(stream, 1024, 1).lines, want);
}

TEST(StreamFramerTest, LineFramingLfCrlfNulAndLastLineWithoutTerminator) {
  const std::string data("<13>a\n<13>b\r\n<13>c\0<13>d\n\n<13>e", 31);
  for (std::size_t chunk : {0, 1, 2, 3, 7}) {
    const Outcome o = FrameAll(data, 1024, chunk);
    EXPECT_EQ(o.lines, (std::vector<std::string>{"<13>a", "<13>b", "<13>c", "<13>d", "<13>e"}))
        << "chunk " << chunk;
    EXPECT_FALSE(o.bad);
  }
  // Without Finish the unterminated last line is still waiting.
  EXPECT_EQ(FrameAll(data, 1024, 0, /*finish=*/false).lines.size(), 4u);
}

TEST(StreamFramerTest, FramingIsDecidedOncePerStream) {
  // Starts octet-counted: a later LF line is not a frame header, so the stream turns bad.
  Outcome o = FrameAll(Octet("<13>one") + "<13>two\n", 1024);
  EXPECT_EQ(o.lines, std::vector<std::string>{"<13>one"});
  EXPECT_TRUE(o.bad);
  // Starts LF-terminated: a later "5 <13>x" is just a line.
  o = FrameAll("<13>one\n" + Octet("<13>x") + "\n", 1024);
  EXPECT_EQ(o.lines, (std::vector<std::string>{"<13>one", "5 <13>x"}));
  EXPECT_FALSE(o.bad);
  // Octet-counted frames with LF/CR/NUL separators between them, and an empty frame.
  o = FrameAll(Octet("<13>a") + "\n" + Octet("<13>b\n") + "\r\n" + std::string("\0", 1) + "1 \n" +
                   Octet("<13>c"),
               1024);
  EXPECT_EQ(o.lines, (std::vector<std::string>{"<13>a", "<13>b", "<13>c"}));
  EXPECT_EQ(o.empty, 1);
  // A long leading number is a line, not a count.
  o = FrameAll("12345678901 x\n", 1024, 1);
  EXPECT_EQ(o.lines, std::vector<std::string>{"12345678901 x"});
}

TEST(StreamFramerTest, BadLengthsAndGarbage) {
  struct Case {
    std::string data;
    std::string why_has;
  } cases[] = {
      {"5 <13>a" + std::string("12x <13>y"), "bad octet count"},
      {"5 <13>a" + std::string("0 x"), "bad octet count"},     // a count may not start with 0
      {"5 <13>a" + std::string(" 3 abc"), "bad octet count"},  // no digits
      {"5 <13>a" + std::string("99999999999 x"), "bad octet count"},  // 11 digits
      {std::string("\x16\x03\x01\x02\x00\x01", 6), "not syslog (first byte 0x16)"},
      {std::string("\x80hello\n"), "not syslog"},
  };
  for (const auto& c : cases) {
    for (std::size_t chunk : {0, 1}) {
      const Outcome o = FrameAll(c.data, 1024, chunk);
      EXPECT_TRUE(o.bad) << c.data;
      EXPECT_NE(o.why.find(c.why_has), std::string::npos) << c.data << " -> " << o.why;
    }
  }
  // After bad, the framer stays bad and takes nothing.
  StreamFramer f(64);
  f.Feed("\x01");
  EXPECT_EQ(f.Next().kind, Frame::kBad);
  EXPECT_TRUE(f.bad());
  EXPECT_EQ(f.Feed("<13>ok\n"), 0u);
  EXPECT_EQ(f.Next().kind, Frame::kBad);
  EXPECT_TRUE(f.WritableSpace().empty());
}

TEST(StreamFramerTest, OversizeFramesAndLinesAreBadAndMemoryIsBounded) {
  const std::size_t max = 100;
  // Exactly max is fine; max + 1 is not.
  const std::string ok_msg(max, 'a');
  Outcome o = FrameAll(Octet(ok_msg), max, 7);
  EXPECT_EQ(o.lines, std::vector<std::string>{ok_msg});
  o = FrameAll(Octet(ok_msg + "a"), max, 7);
  EXPECT_TRUE(o.bad);
  EXPECT_NE(o.why.find("exceeds max_message_size 100"), std::string::npos) << o.why;
  // A huge announced count is refused from the header alone, before any body arrives.
  o = FrameAll("9999999999 ", max);
  EXPECT_TRUE(o.bad);
  // An LF line of max bytes passes, a longer one (with or without LF) is bad.
  o = FrameAll(ok_msg + "\n", max, 3);
  EXPECT_EQ(o.lines, std::vector<std::string>{ok_msg});
  o = FrameAll(ok_msg + "b\n", max);
  EXPECT_TRUE(o.bad);
  o = FrameAll(std::string(10 * max, 'c'), max, 13);
  EXPECT_TRUE(o.bad);
  EXPECT_LE(o.max_capacity, max + 32);
  // A large frame grows the buffer past 64 KiB, to at most max_message_size + 32.
  const std::size_t big = 200 * 1024;
  const std::string big_msg(big, 'z');
  o = FrameAll(Octet(big_msg) + Octet("<13>next"), big, 4096);
  ASSERT_EQ(o.lines.size(), 2u);
  EXPECT_EQ(o.lines[0], big_msg);
  EXPECT_EQ(o.lines[1], "<13>next");
  EXPECT_GT(o.max_capacity, 64u * 1024);
  EXPECT_LE(o.max_capacity, big + 32);
}

TEST(StreamFramerTest, EndOfStreamInsideAFrameIsLost) {
  Outcome o = FrameAll(Octet("<13>whole") + "20 <13>cut", 1024, 1);
  EXPECT_EQ(o.lines, std::vector<std::string>{"<13>whole"});
  EXPECT_TRUE(o.lost);
  EXPECT_FALSE(o.bad);
  // Undecided framing at the end (only digits so far) is lost too, not guessed.
  o = FrameAll("123", 1024);
  EXPECT_TRUE(o.lines.empty());
  EXPECT_TRUE(o.lost);
  // Trailing separators alone are nothing.
  o = FrameAll(Octet("<13>x") + "\n\r", 1024);
  EXPECT_EQ(o.lines, std::vector<std::string>{"<13>x"});
  EXPECT_FALSE(o.lost);
}

}  // namespace
}  // namespace mxward
