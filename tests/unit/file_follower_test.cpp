#include "mxward/file_follower.h"
#include "support/status_matchers.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>

namespace mxward {
namespace {

namespace fs = std::filesystem;

class VectorSink final : public LineSink {
 public:
  void OnLine(std::string_view line, UnixMicros, int input_index) override {
    lines.emplace_back(line);
    last_input = input_index;
  }
  std::vector<std::string> lines;
  int last_input = -1;
};

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mxward-follow-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void Append(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << text;
}

TEST(ReadLinesTest, LinesAndMissingFinalNewline) {
  std::istringstream in("one\ntwo\r\n\nthree");
  VectorSink sink;
  ReadLinesOptions o;
  o.input_index = 4;
  ASSERT_TRUE(ReadLines(in, &sink, o).ok());
  EXPECT_EQ(sink.lines, (std::vector<std::string>{"one", "two\r", "", "three"}));
  EXPECT_EQ(sink.last_input, 4);
}

TEST(ReadLinesTest, VeryLongLinesAreWhole) {
  const std::string long_line(5 * 1024 * 1024 + 17, 'L');
  std::istringstream in("a\n" + long_line + "\nb\n");
  VectorSink sink;
  ASSERT_TRUE(ReadLines(in, &sink).ok());
  ASSERT_EQ(sink.lines.size(), 3u);
  EXPECT_EQ(sink.lines[1], long_line);
  EXPECT_EQ(sink.lines[2], "b");
}

TEST(ReadLinesTest, LinesOverTheCapAreCutAndCounted) {
  std::istringstream in("short\n" + std::string(1000, 'x') + "\nnext\n" + std::string(300, 'y'));
  VectorSink sink;
  InputCounters counters;
  ReadLinesOptions o;
  o.max_line_bytes = 100;
  o.counters = &counters;
  ASSERT_TRUE(ReadLines(in, &sink, o).ok());
  ASSERT_EQ(sink.lines.size(), 4u);
  EXPECT_EQ(sink.lines[0], "short");
  EXPECT_EQ(sink.lines[1], std::string(100, 'x'));
  EXPECT_EQ(sink.lines[2], "next");
  EXPECT_EQ(sink.lines[3], std::string(100, 'y'));
  EXPECT_EQ(InputCounters::Get(counters.malformed), 2u);
  EXPECT_EQ(InputCounters::Get(counters.messages), 4u);
}

TEST(ReadLinesTest, FromAPipe) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::thread writer([fd = p[1]] {
    for (int i = 0; i < 10000; ++i) {
      const std::string l = "line " + std::to_string(i) + "\n";
      if (write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) break;
    }
    close(fd);
  });
  VectorSink sink;
  ASSERT_TRUE(ReadLines(p[0], &sink).ok());
  writer.join();
  close(p[0]);
  ASSERT_EQ(sink.lines.size(), 10000u);
  EXPECT_EQ(sink.lines[9999], "line 9999");
}

TEST(ReadLinesTest, ReadErrorIsReported) {
  VectorSink sink;
  const Status st = ReadLines(-1, &sink);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kIoError);
}

struct Follow {
  explicit Follow(FileFollowerOptions o) : follower(io, std::move(o), &sink) {}
  boost::asio::io_context io;
  VectorSink sink;
  FileFollower follower;
};

FileFollowerOptions Options(const std::string& path) {
  FileFollowerOptions o;
  o.path = path;
  o.input_index = 2;
  return o;
}

TEST(FileFollowerTest, StartsAtEndAndReadsAppendedLines) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "old 1\nold 2\n");
  Follow f(Options(log));
  ASSERT_OK(f.follower.Start());
  f.follower.PollOnce();
  EXPECT_TRUE(f.sink.lines.empty());
  Append(log, "new 1\nnew ");
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"new 1"}));
  // The incomplete line is not delivered (nor counted in the position) until it is complete.
  EXPECT_EQ(f.follower.position().offset, 18u);
  Append(log, "2\n");
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"new 1", "new 2"}));
  EXPECT_EQ(f.sink.last_input, 2);
  EXPECT_EQ(f.follower.position().offset, 24u);
}

TEST(FileFollowerTest, StartAtBeginning) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "a\nb\n");
  FileFollowerOptions o = Options(log);
  o.start_at_end = false;
  Follow f(o);
  ASSERT_OK(f.follower.Start());
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"a", "b"}));
}

TEST(FileFollowerTest, RenameAndCreateRotation) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "");
  Follow f(Options(log));
  ASSERT_OK(f.follower.Start());
  Append(log, "before 1\n");
  f.follower.PollOnce();
  // logrotate: the writer appends once more, the file is renamed, a new one is created.
  Append(log, "before 2\n");
  fs::rename(log, dir / "mail.log.1");
  Append(dir / "mail.log.1", "late write to old file\n");
  Write(log, "after 1\n");
  f.follower.PollOnce();
  Append(log, "after 2\n");
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines,
            (std::vector<std::string>{"before 1", "before 2", "late write to old file", "after 1",
                                      "after 2"}));
  EXPECT_EQ(InputCounters::Get(f.follower.counters().rotations), 1u);
}

TEST(FileFollowerTest, RenameWithoutCreateWaitsForTheNewFile) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "");
  Follow f(Options(log));
  ASSERT_OK(f.follower.Start());
  fs::rename(log, dir / "mail.log.1");
  f.follower.PollOnce();
  Append(dir / "mail.log.1", "still old\n");
  f.follower.PollOnce();
  Write(log, "new file\n");
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"still old", "new file"}));
}

TEST(FileFollowerTest, CopyTruncateRotation) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "");
  Follow f(Options(log));
  ASSERT_OK(f.follower.Start());
  Append(log, "line one is long enough\nline two is long enough\n");
  f.follower.PollOnce();
  fs::copy_file(log, dir / "mail.log.1");
  fs::resize_file(log, 0);
  Append(log, "fresh\n");
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"line one is long enough",
                                                    "line two is long enough", "fresh"}));
  EXPECT_EQ(InputCounters::Get(f.follower.counters().rotations), 1u);
  EXPECT_EQ(f.follower.position().offset, 6u);
}

TEST(FileFollowerTest, ResumesAtSavedPositionWithoutRereadingOrSkipping) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "1\n2\n");
  std::optional<FollowPosition> saved;
  {
    FileFollowerOptions o = Options(log);
    o.start_at_end = false;
    o.on_position = [&](const FollowPosition& p) { saved = p; };
    Follow f(o);
    ASSERT_OK(f.follower.Start());
    f.follower.PollOnce();
    EXPECT_EQ(f.sink.lines.size(), 2u);
  }
  ASSERT_TRUE(saved.has_value());
  Append(log, "3\n4\n");  // written while we were down
  FileFollowerOptions o = Options(log);
  o.saved = saved;
  Follow f(o);
  ASSERT_OK(f.follower.Start());
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"3", "4"}));
}

TEST(FileFollowerTest, SavedPositionOfAReplacedFileReadsTheNewFileFromItsStart) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "old\n");
  FollowPosition saved;
  {
    FileFollowerOptions o = Options(log);
    Follow f(o);
    ASSERT_OK(f.follower.Start());
    saved = f.follower.position();
  }
  fs::rename(log, dir / "mail.log.1");
  Write(log, "rotated while down\n");
  FileFollowerOptions o = Options(log);
  o.saved = saved;
  Follow f(o);
  ASSERT_OK(f.follower.Start());
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"rotated while down"}));
}

TEST(FileFollowerTest, StateFileKeepsThePosition) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  const std::string state = dir / "mail.pos";
  Write(log, "skipped\n");
  {
    FileFollowerOptions o = Options(log);
    o.state_file = state;
    Follow f(o);
    ASSERT_OK(f.follower.Start());  // at end: "skipped" is before us
    Append(log, "a\n");
    f.follower.PollOnce();
    EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"a"}));
  }
  ASSERT_TRUE(fs::exists(state));
  Append(log, "b\n");
  FileFollowerOptions o = Options(log);
  o.state_file = state;
  Follow f(o);
  ASSERT_OK(f.follower.Start());
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"b"}));

  Write(state, "garbage");
  FileFollowerOptions bad = Options(log);
  bad.state_file = state;
  Follow g(bad);
  const Status st = g.follower.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(state), std::string::npos);
}

TEST(FileFollowerTest, MissingFileIsWaitedFor) {
  TempDir dir;
  const std::string log = dir / "later.log";
  Follow f(Options(log));
  ASSERT_OK(f.follower.Start());
  f.follower.PollOnce();
  EXPECT_TRUE(f.sink.lines.empty());
  Write(log, "appeared\n");
  f.follower.PollOnce();
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"appeared"}));
}

TEST(FileFollowerTest, PollsOnTheIoContext) {
  TempDir dir;
  const std::string log = dir / "mail.log";
  Write(log, "");
  FileFollowerOptions o = Options(log);
  o.poll_interval = std::chrono::milliseconds(10);
  Follow f(o);
  ASSERT_OK(f.follower.Start());
  Append(log, "via timer\n");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (f.sink.lines.empty() && std::chrono::steady_clock::now() < deadline) {
    f.io.run_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(f.sink.lines, (std::vector<std::string>{"via timer"}));
  f.follower.Stop();
}

}  // namespace
}  // namespace mxward
