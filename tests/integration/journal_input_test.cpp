// The journal input against real journal files: systemd-journal-remote (Debian's package) writes
// them from export-format text the test makes, with the fields Postfix, Dovecot and Roundcube
// entries carry under systemd on Debian 12. The JournalFollower reads them through journal_dirs:
// matching by unit, slice and identifier; entries appended while it runs; resuming at a saved
// cursor; a cursor whose file was deleted (vacuum); a rotated (renamed) file; a file vacuumed
// while reading; the listener's wiring (cursor hooks, metrics). Then `mxward serve` with a
// journal input, stopped (SIGTERM, and kill -9) and restarted in the middle: every attempt is
// counted once across the restart. Last, the live journald with `logger`, where one runs.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "mxward/incident_store.h"
#include "mxward/journal_follower.h"
#include "mxward/metrics_registry.h"
#include "mxward/pipeline.h"
#include "mxward/provenance.h"
#include "mxward/syslog_listener.h"
#include "mxward/syslog_parser.h"
#include "support/daemon.h"
#include "support/eventually.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::Eventually;
using testing::RunCommand;
using testing::TempDir;

const std::string kJournalRemote = "/lib/systemd/systemd-journal-remote";
const std::string kBoot = "0123456789abcdef0123456789abcdef";

// One journal entry as systemd-journal-remote reads it (export format: FIELD=value lines, an
// empty line after each entry; a value with a newline in the binary form).
struct Entry {
  std::uint64_t realtime = 0;  // __REALTIME_TIMESTAMP, µs
  std::vector<std::pair<std::string, std::string>> fields;
};

std::uint64_t NowMicros() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// A Postfix smtpd SASL failure as Debian 12 logs it: postfix@-.service, ident postfix/smtpd.
Entry SaslFailure(std::uint64_t t, const std::string& ip, int pid = 4101) {
  return {t,
          {{"_SYSTEMD_UNIT", "postfix@-.service"},
           {"_SYSTEMD_SLICE", "system-postfix.slice"},
           {"_HOSTNAME", "mx1"},
           {"_COMM", "smtpd"},
           {"_PID", std::to_string(pid)},
           {"SYSLOG_FACILITY", "2"},
           {"PRIORITY", "4"},
           {"SYSLOG_IDENTIFIER", "postfix/submission/smtpd"},
           {"SYSLOG_PID", std::to_string(pid)},
           {"_SOURCE_REALTIME_TIMESTAMP", std::to_string(t - 7)},
           {"MESSAGE",
            "warning: unknown[" + ip + "]: SASL LOGIN authentication failed: " + "UGFzc3dvcmQ6"}}};
}

class JournalFiles {
 public:
  // Appends entries to dir/name (created if missing) through systemd-journal-remote.
  static void Write(const std::string& path, const std::vector<Entry>& entries) {
    static std::atomic<std::uint64_t> monotonic{1000};
    std::string text;
    for (const Entry& e : entries) {
      text += "__REALTIME_TIMESTAMP=" + std::to_string(e.realtime) + "\n";
      text += "__MONOTONIC_TIMESTAMP=" + std::to_string(monotonic.fetch_add(1000)) + "\n";
      text += "_BOOT_ID=" + kBoot + "\n";
      for (const auto& [k, v] : e.fields) {
        if (v.find('\n') == std::string::npos) {
          text += k + "=" + v + "\n";
          continue;
        }
        // A value with a newline: the name, a newline, its size (64-bit little endian), the bytes.
        text += k + "\n";
        for (int b = 0; b < 8; ++b) text += static_cast<char>((v.size() >> (8 * b)) & 0xff);
        text += v + "\n";
      }
      text += "\n";
    }
    auto r = RunCommand({kJournalRemote, "--output=" + path, "-"}, text);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
};

// Collects the lines; the io thread writes, the test reads.
class Lines final : public LineSink {
 public:
  void OnLine(std::string_view line, UnixMicros, int) override {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.emplace_back(line);
  }
  std::vector<std::string> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }
  std::size_t Count() const { return Get().size(); }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

// An io_context on a thread of its own, with a follower built and started there.
class RunningFollower {
 public:
  RunningFollower(JournalFollowerOptions options, LineSink* sink)
      : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {
    std::promise<Status> started;
    auto done = started.get_future();
    boost::asio::post(io_, [&] {
      follower_ = std::make_unique<JournalFollower>(io_, std::move(options), sink);
      started.set_value(follower_->Start());
    });
    start_status_ = done.get();
  }
  ~RunningFollower() {
    std::promise<void> stopped;
    auto done = stopped.get_future();
    boost::asio::post(io_, [&] {
      follower_.reset();
      stopped.set_value();
    });
    done.get();
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  const Status& start_status() const { return start_status_; }
  const JournalFollower& follower() const { return *follower_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::unique_ptr<JournalFollower> follower_;
  Status start_status_;
  std::thread thread_;
};

class JournalInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kJournalRemote.c_str(), X_OK) != 0) {
      GTEST_SKIP() << kJournalRemote << " is missing: install Debian's systemd-journal-remote "
                   << "(packaging/install-deps.sh test)";
    }
    journal_dir_ = dir_.file("journal");
    std::filesystem::create_directories(journal_dir_);
  }

  JournalFollowerOptions Options() const {
    JournalFollowerOptions o;
    o.name = "journal";
    o.units = DefaultJournalUnits();
    o.slices = DefaultJournalSlices();
    o.identifiers = DefaultJournalIdentifiers();
    o.journal_dirs = {journal_dir_};
    o.start_at = JournalStart::kBeginning;
    return o;
  }

  // Reads synchronously until nothing is left; the follower is stopped afterwards.
  std::vector<std::string> ReadAll(JournalFollowerOptions o, std::string* cursor = nullptr,
                                   JournalCounters* counters = nullptr) {
    boost::asio::io_context io;
    Lines sink;
    JournalFollower f(io, std::move(o), &sink);
    EXPECT_OK(f.Start());
    while (f.ReadBatch()) {
    }
    if (cursor != nullptr) *cursor = f.cursor();
    if (counters != nullptr) {
      counters->cursor_lost = f.journal_counters().cursor_lost.load();
      counters->skipped_seconds = f.journal_counters().skipped_seconds.load();
    }
    return sink.Get();
  }

  TempDir dir_;
  std::string journal_dir_;
};

TEST_F(JournalInputTest, MatchesUnitsSlicesAndIdentifiersAndWritesSyslogLines) {
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  std::vector<Entry> entries;
  entries.push_back(SaslFailure(t0, "203.0.113.7"));
  // A second Postfix instance: its own unit and syslog_name, in system-postfix.slice.
  entries.push_back({t0 + 1000,
                     {{"_SYSTEMD_UNIT", "postfix@out.service"},
                      {"_SYSTEMD_SLICE", "system-postfix.slice"},
                      {"_HOSTNAME", "mx1"},
                      {"SYSLOG_IDENTIFIER", "postfix-out/smtp"},
                      {"SYSLOG_PID", "77"},
                      {"MESSAGE", "connect to mx.example.net[192.0.2.1]:25: Connection refused"}}});
  entries.push_back({t0 + 2000,
                     {{"_SYSTEMD_UNIT", "dovecot.service"},
                      {"_SYSTEMD_SLICE", "system.slice"},
                      {"_HOSTNAME", "mx1"},
                      {"SYSLOG_IDENTIFIER", "dovecot"},
                      {"MESSAGE",
                       "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "
                       "user=<alice@example.org>, method=PLAIN, rip=198.51.100.4, "
                       "lip=192.0.2.25, TLS"}}});
  // Roundcube under PHP-FPM: only its identifier says what it is. The message has two lines.
  entries.push_back({t0 + 3000,
                     {{"_SYSTEMD_UNIT", "php8.2-fpm.service"},
                      {"_HOSTNAME", "web1"},
                      {"SYSLOG_IDENTIFIER", "roundcube"},
                      {"SYSLOG_PID", "900"},
                      {"MESSAGE", "Failed login for bob from 198.51.100.9\nsecond line"}}});
  // Not ours: sshd and a cron job.
  entries.push_back({t0 + 4000,
                     {{"_SYSTEMD_UNIT", "ssh.service"},
                      {"_HOSTNAME", "mx1"},
                      {"SYSLOG_IDENTIFIER", "sshd"},
                      {"MESSAGE", "Failed password for root from 192.0.2.99 port 22 ssh2"}}});
  entries.push_back({t0 + 5000,
                     {{"_SYSTEMD_UNIT", "cron.service"},
                      {"SYSLOG_IDENTIFIER", "CRON"},
                      {"MESSAGE", "pam_unix(cron:session): session opened"}}});
  JournalFiles::Write(journal_dir_ + "/remote-mx1.journal", entries);

  const std::vector<std::string> lines = ReadAll(Options());
  ASSERT_EQ(lines.size(), 4u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find(" mx1 postfix/submission/smtpd[4101]: warning: unknown[203.0.113.7]: "
                          "SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find(" mx1 postfix-out/smtp[77]: connect to"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find(" mx1 dovecot: imap-login: Disconnected"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find(" web1 roundcube[900]: Failed login for bob from 198.51.100.9 second "
                          "line"),
            std::string::npos)
      << lines[3];
  // The lines take the parser's path: header fields and the program's own time.
  SyslogParser parser;
  SyslogMessage m;
  ASSERT_OK(parser.Parse(lines[0], static_cast<UnixMicros>(t0), &m));
  EXPECT_EQ(m.hostname, "mx1");
  EXPECT_EQ(m.program, "postfix/submission/smtpd");
  EXPECT_EQ(m.pid, "4101");
  EXPECT_TRUE(m.has_time);
  EXPECT_EQ(m.time, static_cast<UnixMicros>(t0 - 7)) << "_SOURCE_REALTIME_TIMESTAMP first";
  ASSERT_OK(parser.Parse(lines[2], static_cast<UnixMicros>(t0), &m));
  EXPECT_EQ(m.time, static_cast<UnixMicros>(t0 + 2000)) << "else the entry's realtime";
  EXPECT_EQ(m.pid, "");
}

// Provenance: journald's _UID is the writer, and a SYSLOG_IDENTIFIER anyone may set does not make
// a line Postfix's. Three SASL failures claiming postfix/submission/smtpd: one written by the
// uid the policy lists for postfix (daemon here, so the test holds on any host), one by nobody
// (`logger -t postfix/smtpd` as a local user: what journald records), one without _UID (a
// remote journal that did not keep it). Through the real Pipeline: the first is a verified
// event, the second is dropped and counted, the third is an unverified event.
TEST_F(JournalInputTest, TheEntrysUidIsHeldToTheProgramItClaims) {
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  auto with_uid = [](Entry e, const std::string& uid, const std::string& comm) {
    e.fields.push_back({"_UID", uid});
    e.fields.push_back({"_GID", uid});
    e.fields.push_back({"_COMM", comm});
    e.fields.push_back({"_EXE", "/usr/bin/" + comm});
    return e;
  };
  Entry forged = with_uid(SaslFailure(t0 + 1000, "198.51.100.66", 5000), "65534", "logger");
  for (auto& [k, v] : forged.fields) {
    if (k == "_SYSTEMD_UNIT") v = "session-4.scope";
    if (k == "_SYSTEMD_SLICE") v = "user-65534.slice";
  }
  JournalFiles::Write(journal_dir_ + "/p.journal",
                      {with_uid(SaslFailure(t0, "203.0.113.7"), "1", "smtpd"), forged,
                       SaslFailure(t0 + 2000, "192.0.2.44")});

  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers"}, &diags);
  ASSERT_OK(pack);
  struct Drop : IncidentSink {
    void OnIncident(Incident) override {}
  } incidents;
  ProvenanceSettings settings = DefaultProvenanceSettings();
  settings.writers = {{"postfix", {"daemon"}}};
  PipelineOptions popts;
  popts.provenance =
      std::make_shared<const ProvenancePolicy>(ProvenancePolicy::Resolve(settings, nullptr));
  popts.input_names = {"journal"};
  popts.input_formats = {LogFormat::kSyslog};
  Pipeline pipeline(SyslogParser(), EventExtractor::Create(*pack),
                    PlaybookEngine::Create({}, Config::Defaults()), &incidents, nullptr, popts);

  boost::asio::io_context io;
  JournalFollowerOptions o = Options();
  o.input_index = 0;
  JournalFollower f(io, std::move(o), &pipeline);
  ASSERT_OK(f.Start());
  while (f.ReadBatch()) {
  }
  const PipelineCounters& c = pipeline.counters();
  EXPECT_EQ(c.lines.load(), 3u);
  EXPECT_EQ(c.events.load(), 2u);
  EXPECT_EQ(c.forged_by_input[0].load(), 1u);
  EXPECT_EQ(c.verified_by_input[0].load(), 1u);
  EXPECT_EQ(c.unverified_by_input[0].load(), 1u);
}

TEST_F(JournalInputTest, OwnMatchesReplaceTheDefaults) {
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  JournalFiles::Write(journal_dir_ + "/x.journal",
                      {SaslFailure(t0, "203.0.113.7"),
                       {t0 + 1, {{"SYSLOG_IDENTIFIER", "myfilter"}, {"MESSAGE", "mine"}}}});
  JournalFollowerOptions o = Options();
  o.units.clear();
  o.slices.clear();
  o.identifiers = {"myfilter"};
  const auto lines = ReadAll(o);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(" localhost myfilter: mine"), std::string::npos) << lines[0];
}

TEST_F(JournalInputTest, StartAtEndReadsOnlyNewEntriesAndReportsTheStart) {
  const std::string file = journal_dir_ + "/x.journal";
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  JournalFiles::Write(file, {SaslFailure(t0, "203.0.113.1"), SaslFailure(t0 + 1, "203.0.113.2")});
  JournalFollowerOptions o = Options();
  o.start_at = JournalStart::kEnd;
  std::vector<std::string> reported;
  o.on_cursor = [&](std::string_view c) { reported.emplace_back(c); };
  std::string cursor;
  EXPECT_TRUE(ReadAll(o, &cursor).empty());
  ASSERT_EQ(reported.size(), 1u) << "the start (the last entry) is saved at once";
  EXPECT_EQ(reported[0], cursor);
  // Back from now: only what is newer than 30 s ago.
  JournalFiles::Write(file, {SaslFailure(NowMicros(), "203.0.113.3")});
  o.start_at = JournalStart::kBack;
  o.start_back_seconds = 30;
  o.on_cursor = nullptr;
  const auto lines = ReadAll(o);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("203.0.113.3"), std::string::npos);
}

TEST_F(JournalInputTest, EntriesAppendedWhileRunningArriveOnceEach) {
  const std::string file = journal_dir_ + "/remote-mx1.journal";
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  JournalFiles::Write(file, {SaslFailure(t0, "203.0.113.1")});
  Lines sink;
  RunningFollower running(Options(), &sink);
  ASSERT_OK(running.start_status());
  ASSERT_TRUE(Eventually([&] { return sink.Count() == 1; })) << sink.Count();
  // More into the same file, then a new file (another host) in the directory.
  std::vector<Entry> more;
  for (int i = 0; i < 50; ++i) more.push_back(SaslFailure(t0 + 10 + i, "203.0.113.2"));
  JournalFiles::Write(file, more);
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 51; })) << sink.Count();
  JournalFiles::Write(journal_dir_ + "/remote-mx2.journal", {SaslFailure(t0 + 100, "203.0.113.3")});
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 52; })) << sink.Count();
  const auto lines = sink.Get();
  EXPECT_EQ(lines.size(), 52u);
  EXPECT_NE(lines.back().find("203.0.113.3"), std::string::npos);
}

TEST_F(JournalInputTest, ResumesAfterTheSavedCursorWithNothingLostOrRepeated) {
  const std::string file = journal_dir_ + "/remote-mx1.journal";
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  std::vector<Entry> first, second;
  for (int i = 0; i < 5; ++i) first.push_back(SaslFailure(t0 + i, "203.0.113.1", 100 + i));
  for (int i = 0; i < 7; ++i) second.push_back(SaslFailure(t0 + 10 + i, "203.0.113.2", 200 + i));
  JournalFiles::Write(file, first);
  std::string cursor;
  ASSERT_EQ(ReadAll(Options(), &cursor).size(), 5u);
  ASSERT_FALSE(cursor.empty());
  JournalFiles::Write(file, second);
  JournalFollowerOptions o = Options();  // start_at beginning: the cursor must win
  o.saved_cursor = cursor;
  JournalCounters counters;
  const auto lines = ReadAll(o, nullptr, &counters);
  ASSERT_EQ(lines.size(), 7u) << ::testing::PrintToString(lines);
  for (int i = 0; i < 7; ++i) {
    EXPECT_NE(lines[i].find("smtpd[" + std::to_string(200 + i) + "]"), std::string::npos)
        << lines[i];
  }
  EXPECT_EQ(counters.cursor_lost.load(), 0u);
}

TEST_F(JournalInputTest, AVacuumedCursorResumesAtTheOldestLaterEntryAndSaysHowMuchWasSkipped) {
  const std::uint64_t t0 = NowMicros() - 3'600'000'000ULL;
  std::vector<Entry> old_entries, new_entries;
  for (int i = 0; i < 3; ++i) old_entries.push_back(SaslFailure(t0 + i, "203.0.113.1"));
  // 20 minutes later, in another file (journald rotated, then vacuumed the archive).
  const std::uint64_t t1 = t0 + 1'200'000'000ULL;
  for (int i = 0; i < 4; ++i) new_entries.push_back(SaslFailure(t1 + i, "203.0.113.2"));
  const std::string archived = journal_dir_ + "/system@0001.journal";
  JournalFiles::Write(archived, old_entries);
  std::string cursor;
  ASSERT_EQ(ReadAll(Options(), &cursor).size(), 3u);
  JournalFiles::Write(journal_dir_ + "/system.journal", new_entries);
  std::filesystem::remove(archived);  // journalctl --vacuum-time would do this
  JournalFollowerOptions o = Options();
  o.saved_cursor = cursor;
  JournalCounters counters;
  const auto lines = ReadAll(o, nullptr, &counters);
  ASSERT_EQ(lines.size(), 4u) << ::testing::PrintToString(lines);
  for (const auto& l : lines) EXPECT_NE(l.find("203.0.113.2"), std::string::npos) << l;
  EXPECT_EQ(counters.cursor_lost.load(), 1u);
  EXPECT_GE(counters.skipped_seconds.load(), 1199u);
  EXPECT_LE(counters.skipped_seconds.load(), 1200u);
}

TEST_F(JournalInputTest, ARotatedFileIsNotReadTwiceAndTheNewOneIsRead) {
  const std::string active = journal_dir_ + "/system.journal";
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  std::vector<Entry> before;
  for (int i = 0; i < 10; ++i) before.push_back(SaslFailure(t0 + i, "203.0.113.1"));
  JournalFiles::Write(active, before);
  Lines sink;
  RunningFollower running(Options(), &sink);
  ASSERT_OK(running.start_status());
  ASSERT_TRUE(Eventually([&] { return sink.Count() == 10; })) << sink.Count();
  // journald's rotation: the active file is renamed to an archive name, a new one is started.
  std::filesystem::rename(active, journal_dir_ +
                                      "/system@0123456789abcdef-0000000000000001-"
                                      "0005f1c2d3e4f5a6.journal");
  std::vector<Entry> after;
  for (int i = 0; i < 5; ++i) after.push_back(SaslFailure(t0 + 100 + i, "203.0.113.2"));
  JournalFiles::Write(active, after);
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 15; })) << sink.Count();
  // Give a duplicate every chance to show: one more entry, and it must be the 16th line.
  JournalFiles::Write(active, {SaslFailure(t0 + 200, "203.0.113.3")});
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 16; })) << sink.Count();
  const auto lines = sink.Get();
  ASSERT_EQ(lines.size(), 16u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[15].find("203.0.113.3"), std::string::npos);
  EXPECT_GE(running.follower().journal_counters().invalidations.load(), 1u);
}

// Two journal_dirs: one position each in the input's cursor, each resumed on its own.
TEST_F(JournalInputTest, SeveralDirectoriesKeepOnePositionEach) {
  const std::string second = dir_.file("journal2");
  std::filesystem::create_directories(second);
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  JournalFiles::Write(journal_dir_ + "/a.journal", {SaslFailure(t0, "203.0.113.1")});
  JournalFiles::Write(second + "/b.journal",
                      {SaslFailure(t0 + 1, "203.0.113.2"), SaslFailure(t0 + 2, "203.0.113.2")});
  JournalFollowerOptions o = Options();
  o.journal_dirs = {journal_dir_, second};
  std::string cursor;
  ASSERT_EQ(ReadAll(o, &cursor).size(), 3u);
  EXPECT_EQ(cursor.rfind(journal_dir_ + "\t", 0), 0u) << cursor;
  EXPECT_NE(cursor.find("\n" + second + "\t"), std::string::npos) << cursor;
  JournalFiles::Write(second + "/b.journal", {SaslFailure(t0 + 3, "203.0.113.3")});
  o.saved_cursor = cursor;
  const auto lines = ReadAll(o);
  ASSERT_EQ(lines.size(), 1u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("203.0.113.3"), std::string::npos);
}

// A first start at the end of an empty journal directory: the files that appear are read.
TEST_F(JournalInputTest, AtTheEndOfAnEmptyDirectoryNewFilesAreRead) {
  JournalFollowerOptions o = Options();
  o.start_at = JournalStart::kEnd;
  Lines sink;
  RunningFollower running(o, &sink);
  ASSERT_OK(running.start_status());
  const std::uint64_t t0 = NowMicros();
  JournalFiles::Write(journal_dir_ + "/system.journal",
                      {SaslFailure(t0, "203.0.113.1"), SaslFailure(t0 + 1, "203.0.113.2")});
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 2; })) << sink.Count();
  JournalFiles::Write(journal_dir_ + "/system.journal", {SaslFailure(t0 + 2, "203.0.113.3")});
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 3; })) << sink.Count();
  EXPECT_EQ(sink.Count(), 3u);
}

// Vacuum while reading: an archived file already read is deleted; reading goes on in the others.
TEST_F(JournalInputTest, AFileVacuumedWhileRunningChangesNothingForTheRest) {
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  const std::string archived = journal_dir_ + "/system@0001.journal";
  JournalFiles::Write(archived,
                      {SaslFailure(t0, "203.0.113.1"), SaslFailure(t0 + 1, "203.0.113.1")});
  JournalFiles::Write(journal_dir_ + "/system.journal", {SaslFailure(t0 + 10, "203.0.113.2")});
  Lines sink;
  RunningFollower running(Options(), &sink);
  ASSERT_OK(running.start_status());
  ASSERT_TRUE(Eventually([&] { return sink.Count() == 3; })) << sink.Count();
  std::filesystem::remove(archived);
  JournalFiles::Write(journal_dir_ + "/system.journal", {SaslFailure(t0 + 20, "203.0.113.3")});
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 4; })) << sink.Count();
  const auto lines = sink.Get();
  ASSERT_EQ(lines.size(), 4u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[3].find("203.0.113.3"), std::string::npos);
  EXPECT_EQ(running.follower().journal_counters().cursor_lost.load(), 0u);
}

// The listener's journal input: the [[input]] settings, the cursor hooks and the metrics.
TEST_F(JournalInputTest, TheListenerRunsAJournalInputWithItsCursorHooksAndMetrics) {
  const std::uint64_t t0 = NowMicros() - 60'000'000;
  JournalFiles::Write(journal_dir_ + "/remote-mx1.journal",
                      {SaslFailure(t0, "203.0.113.1"), SaslFailure(t0 + 1, "203.0.113.2")});
  InputSpec spec;
  spec.type = InputType::kJournal;
  spec.name = "remote";
  spec.journal.units = DefaultJournalUnits();
  spec.journal.dirs = {journal_dir_};
  spec.journal.start_at = JournalStart::kBeginning;
  boost::asio::io_context io;
  Lines sink;
  SyslogListener listener(io, {spec}, &sink);
  std::vector<std::string> calls;
  InputCursorHooks hooks;
  hooks.load = [&](const std::string& input) -> std::optional<std::string> {
    calls.push_back("load " + input);
    return std::nullopt;
  };
  hooks.begin = [&](const std::string& input) { calls.push_back("begin " + input); };
  hooks.save = [&](const std::string& input, std::string_view cursor) {
    calls.push_back("save " + input + " " + std::string(cursor.substr(0, journal_dir_.size())));
  };
  listener.SetCursorHooks(hooks);
  ASSERT_OK(listener.Start());
  ASSERT_TRUE(Eventually([&] {
    io.poll();
    return sink.Count() == 2;
  }));
  EXPECT_EQ(calls, (std::vector<std::string>{"load remote", "begin remote",
                                             "save remote " + journal_dir_}));
  EXPECT_EQ(listener.counters(0).messages.load(), 2u);
  EXPECT_EQ(listener.Describe(), "journal " + journal_dir_);
  MetricsRegistry registry;
  registry.DeclareStandardFamilies();
  std::vector<MetricsRegistry::Handle> handles;
  listener.RegisterMetrics(&registry, &handles);
  const std::string text = registry.Render();
  EXPECT_NE(text.find("mxward_input_messages_total{input=\"remote\"} 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("mxward_input_journal_skipped_seconds_total{input=\"remote\"} 0"),
            std::string::npos)
      << text;
  handles.clear();
  listener.Stop();
}

// The live journald: `logger` writes through /dev/log, read back from the local journal.
TEST(JournalLiveTest, LoggerLinesFromTheLocalJournal) {
  if (access("/run/systemd/journal/socket", F_OK) != 0) {
    GTEST_SKIP() << "no journald on this machine (/run/systemd/journal/socket is missing)";
  }
  const std::string ident = "mxward-test-" + std::to_string(getpid());
  JournalFollowerOptions o;
  o.name = "journal";
  o.identifiers = {ident};
  o.start_at = JournalStart::kEnd;
  Lines sink;
  RunningFollower running(o, &sink);
  ASSERT_OK(running.start_status());
  ASSERT_EQ(RunCommand({"logger", "-t", ident,
                        "warning: unknown[203.0.113.77]: SASL LOGIN "
                        "authentication failed: UGFzc3dvcmQ6"})
                .exit_code,
            0);
  ASSERT_TRUE(Eventually([&] { return sink.Count() >= 1; }, std::chrono::seconds(20)));
  EXPECT_NE(sink.Get()[0].find(ident + "["), std::string::npos) << sink.Get()[0];
  EXPECT_NE(sink.Get()[0].find("203.0.113.77"), std::string::npos) << sink.Get()[0];
}

// `mxward serve` with a journal input: stopped in the middle and started again, it resumes at
// the cursor in its store; every attempt is counted exactly once.
class JournalServeTest : public JournalInputTest {
 protected:
  void SetUp() override {
    JournalInputTest::SetUp();
    if (IsSkipped()) return;
    auto& ns = testing::NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    rules_ = testing::WriteSaslBanRules(dir_.path());
    db_ = dir_.file("state.db");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "dry_run = true\n[[input]]\ntype = \"journal\"\njournal_dirs = [\""
                           << journal_dir_ << "\"]\nstart_at = \"beginning\"\n";
  }

  bool Start(testing::ServeProcess* daemon) {
    return daemon->Start(MXWARD_BINARY,
                         {"--db", db_, "--config", config_, "--rules", rules_, "--socket",
                          dir_.file("control.sock")},
                         dir_.file("serve.log")) &&
           daemon->WaitForLog("ready:");
  }

  static std::string InputMessages() {
    const std::string m = testing::HttpGet(9580, "/metrics");
    const std::string key = "mxward_input_messages_total{input=\"journal\"} ";
    const std::size_t at = m.find(key);
    if (at == std::string::npos) return "";
    return m.substr(at + key.size(), m.find('\n', at) - at - key.size());
  }

  std::int64_t StoredAuthFailures() {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return -1;
    auto counts = (*store)->EventCountsSince(0);
    if (!counts.ok()) return -1;
    for (const auto& [type, n] : *counts) {
      if (type == "auth_failure") return n;
    }
    return 0;
  }

  std::string rules_, db_, config_;
};

TEST_F(JournalServeTest, ARestartResumesAtTheCursorAndCountsEveryAttemptOnce) {
  const std::string file = journal_dir_ + "/remote-mx1.journal";
  const std::uint64_t t0 = NowMicros() - 120'000'000;
  std::vector<Entry> first, second, third;
  for (int i = 0; i < 12; ++i) first.push_back(SaslFailure(t0 + i, "203.0.113.10"));
  for (int i = 0; i < 9; ++i) second.push_back(SaslFailure(t0 + 100 + i, "203.0.113.11"));
  for (int i = 0; i < 20; ++i) third.push_back(SaslFailure(t0 + 200 + i, "203.0.113.12"));
  JournalFiles::Write(file, first);
  {
    testing::ServeProcess daemon;
    ASSERT_TRUE(Start(&daemon)) << daemon.Log();
    ASSERT_TRUE(daemon.WaitFor([&] { return InputMessages() == "12"; })) << InputMessages();
    ASSERT_TRUE(daemon.Stop()) << daemon.Log();
  }
  EXPECT_EQ(StoredAuthFailures(), 12);
  JournalFiles::Write(file, second);  // written while mxward is down
  testing::ServeProcess daemon;
  ASSERT_TRUE(Start(&daemon)) << daemon.Log();
  ASSERT_TRUE(daemon.WaitFor([&] { return InputMessages() == "9"; })) << InputMessages();
  // Appended while it runs; 20 from one address is the playbook's threshold.
  JournalFiles::Write(file, third);
  ASSERT_TRUE(daemon.WaitFor([&] { return InputMessages() == "29"; })) << InputMessages();
  ASSERT_TRUE(daemon.WaitFor([&] {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return false;
    IncidentQuery q;
    q.key = "203.0.113.12";
    auto list = (*store)->ListIncidents(q);
    return list.ok() && list->size() == 1;
  })) << daemon.Log();
  ASSERT_TRUE(daemon.Stop()) << daemon.Log();
  EXPECT_EQ(StoredAuthFailures(), 12 + 9 + 20) << daemon.Log();
  EXPECT_NE(daemon.Log().find("resuming after the saved cursor"), std::string::npos)
      << daemon.Log();
}

// kill -9 right after an incident is in the store: the incident and the cursor after its lines
// were written in one transaction, so the restart reads none of those lines again.
TEST_F(JournalServeTest, AfterACrashTheRestartReadsOnlyWhatFollowsTheStoredIncidents) {
  const std::string file = journal_dir_ + "/remote-mx1.journal";
  const std::uint64_t t0 = NowMicros() - 120'000'000;
  std::vector<Entry> attack, later;
  for (int i = 0; i < 20; ++i) attack.push_back(SaslFailure(t0 + i, "203.0.113.20"));
  for (int i = 0; i < 5; ++i) later.push_back(SaslFailure(t0 + 100 + i, "203.0.113.21"));
  auto incidents = [&](const std::string& key) -> int {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return -1;
    IncidentQuery q;
    q.key = key;
    auto list = (*store)->ListIncidents(q);
    return list.ok() ? static_cast<int>(list->size()) : -1;
  };
  JournalFiles::Write(file, attack);
  {
    testing::ServeProcess daemon;
    ASSERT_TRUE(Start(&daemon)) << daemon.Log();
    ASSERT_TRUE(daemon.WaitFor([&] { return incidents("203.0.113.20") == 1; })) << daemon.Log();
    daemon.Kill();
  }
  JournalFiles::Write(file, later);
  testing::ServeProcess daemon;
  ASSERT_TRUE(Start(&daemon)) << daemon.Log();
  ASSERT_TRUE(daemon.WaitFor([&] { return InputMessages() == "5"; })) << InputMessages();
  ASSERT_TRUE(daemon.Stop()) << daemon.Log();
  EXPECT_EQ(incidents("203.0.113.20"), 1);
  // What the first run counted was lost with it (hourly counts are written at stop); the second
  // run counted exactly the five new lines, none of the twenty again.
  EXPECT_EQ(StoredAuthFailures(), 5);
}

}  // namespace
}  // namespace mxward
