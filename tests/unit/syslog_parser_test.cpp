#include "mxward/syslog_parser.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mxward {
namespace {

UnixMicros Utc(int y, unsigned mo, unsigned d, int h, int mi, int s, int us = 0) {
  return (DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * kMicrosPerSecond + us;
}

SyslogParser UtcParser() {
  SyslogParserOptions o;
  o.use_local_zone = false;
  o.utc_offset_seconds = 0;
  return SyslogParser(o);
}

// Sets TZ for the test's lifetime and restores it after.
class ScopedTz {
 public:
  explicit ScopedTz(const char* tz) {
    if (const char* old = std::getenv("TZ")) {
      had_ = true;
      old_ = old;
    }
    setenv("TZ", tz, 1);
    tzset();
  }
  ~ScopedTz() {
    if (had_) {
      setenv("TZ", old_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  bool had_ = false;
  std::string old_;
};

const UnixMicros kRef = Utc(2025, 6, 15, 12, 0, 0);

TEST(SyslogParserTest, Rfc3164FileLineWithHostAndPid) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser()
                  .Parse("Feb 27 07:14:47 mail postfix/submission/smtpd[1234]: connect from "
                         "unknown[192.0.2.1]\n",
                         kRef, &m)
                  .ok());
  EXPECT_TRUE(m.has_time);
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 7, 14, 47));
  EXPECT_EQ(m.facility, -1);
  EXPECT_EQ(m.severity, -1);
  EXPECT_EQ(m.hostname, "mail");
  EXPECT_EQ(m.program, "postfix/submission/smtpd");
  EXPECT_EQ(m.pid, "1234");
  EXPECT_EQ(m.message, "connect from unknown[192.0.2.1]");
  EXPECT_EQ(m.raw,
            "Feb 27 07:14:47 mail postfix/submission/smtpd[1234]: connect from "
            "unknown[192.0.2.1]");
}

TEST(SyslogParserTest, Rfc3164WithPriForwardFormat) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser()
                  .Parse("<22>Feb  7 07:14:47 mx1 postfix-out/smtp[77]: 4Xyz: to=<a@b>", kRef, &m)
                  .ok());
  EXPECT_EQ(m.facility, 2);  // mail
  EXPECT_EQ(m.severity, 6);
  EXPECT_EQ(m.time, Utc(2025, 2, 7, 7, 14, 47));
  EXPECT_EQ(m.hostname, "mx1");
  EXPECT_EQ(m.program, "postfix-out/smtp");
  EXPECT_EQ(m.pid, "77");
  EXPECT_EQ(m.message, "4Xyz: to=<a@b>");
}

TEST(SyslogParserTest, Rfc3164SingleDigitDayWithoutPadding) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("Feb 7 07:14:47 mx1 dovecot: imap-login: Login", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 7, 7, 14, 47));
  EXPECT_EQ(m.program, "dovecot");
  EXPECT_EQ(m.pid, "");
  EXPECT_EQ(m.message, "imap-login: Login");
}

TEST(SyslogParserTest, Rfc3164WithoutHostnameAsDevLogReceivesIt) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("<38>Mar  1 10:00:00 sshd[99]: Accepted publickey", kRef, &m).ok());
  EXPECT_EQ(m.facility, 4);
  EXPECT_EQ(m.hostname, "");
  EXPECT_EQ(m.program, "sshd");
  EXPECT_EQ(m.pid, "99");
  EXPECT_EQ(m.message, "Accepted publickey");

  ASSERT_TRUE(UtcParser().Parse("<13>Mar  1 10:00:00 roundcube: Failed login", kRef, &m).ok());
  EXPECT_EQ(m.hostname, "");
  EXPECT_EQ(m.program, "roundcube");
  EXPECT_EQ(m.message, "Failed login");
}

TEST(SyslogParserTest, Rfc3164WithoutTag) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("Mar  1 10:00:00 host some free text", kRef, &m).ok());
  EXPECT_EQ(m.hostname, "host");
  EXPECT_EQ(m.program, "");
  EXPECT_EQ(m.message, "some free text");
}

TEST(SyslogParserTest, Ipv6HostnameIsNotMistakenForATag) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("Mar  1 10:00:00 fe80:: postfix/smtpd[1]: x", kRef, &m).ok());
  EXPECT_EQ(m.hostname, "fe80::");
  EXPECT_EQ(m.program, "postfix/smtpd");
  ASSERT_TRUE(UtcParser().Parse("Mar  1 10:00:00 2001:db8::1 dovecot: y", kRef, &m).ok());
  EXPECT_EQ(m.hostname, "2001:db8::1");
  EXPECT_EQ(m.program, "dovecot");
  EXPECT_EQ(m.message, "y");
}

TEST(SyslogParserTest, TagWithPidButNoColonAfterHostname) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("Mar  1 10:00:00 host amavis[12] (12-01) Passed", kRef, &m).ok());
  EXPECT_EQ(m.program, "amavis");
  EXPECT_EQ(m.pid, "12");
  EXPECT_EQ(m.message, "(12-01) Passed");
}

TEST(SyslogParserTest, PriWithoutTimestampKeepsTagAndMessage) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("<14>myapp[5]: hello there", kRef, &m).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.program, "myapp");
  EXPECT_EQ(m.pid, "5");
  EXPECT_EQ(m.message, "hello there");
  ASSERT_TRUE(UtcParser().Parse("<14>just text", kRef, &m).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.program, "");
  EXPECT_EQ(m.message, "just text");
  ASSERT_TRUE(UtcParser().Parse("<14>", kRef, &m).ok());
  EXPECT_EQ(m.message, "");
}

TEST(SyslogParserTest, RsyslogHighPrecisionFileTime) {
  SyslogMessage m;
  ASSERT_TRUE(
      UtcParser()
          .Parse("2025-02-27T07:14:47.545612+01:00 mail postfix/smtpd[1]: disconnect", kRef, &m)
          .ok());
  EXPECT_TRUE(m.has_time);
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 6, 14, 47, 545612));
  EXPECT_EQ(m.hostname, "mail");
  EXPECT_EQ(m.program, "postfix/smtpd");
  EXPECT_EQ(m.message, "disconnect");

  ASSERT_TRUE(UtcParser().Parse("2025-02-27T07:14:47Z mail x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 7, 14, 47));
  ASSERT_TRUE(UtcParser().Parse("2025-02-27T07:14:47.5-05:30 mail x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 12, 44, 47, 500000));
  // Nanoseconds are truncated to microseconds.
  ASSERT_TRUE(UtcParser().Parse("2025-02-27T07:14:47.123456789+00:00 mail x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 7, 14, 47, 123456));
}

TEST(SyslogParserTest, ForwardFormatWithPriAndIsoTime) {
  SyslogMessage m;
  ASSERT_TRUE(
      UtcParser().Parse("<22>2025-02-27T07:14:47.545612+00:00 mx opendkim[3]: ok", kRef, &m).ok());
  EXPECT_EQ(m.facility, 2);
  EXPECT_EQ(m.program, "opendkim");
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 7, 14, 47, 545612));
}

TEST(SyslogParserTest, Rfc5424Full) {
  SyslogMessage m;
  const std::string line =
      "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 99 ID47 "
      "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"][x@1 a=\"q\\]\\\"\"] "
      "\xEF\xBB\xBF"
      "An application event log entry";
  ASSERT_TRUE(UtcParser().Parse(line, kRef, &m).ok());
  EXPECT_EQ(m.facility, 20);
  EXPECT_EQ(m.severity, 5);
  EXPECT_TRUE(m.has_time);
  EXPECT_EQ(m.time, Utc(2003, 10, 11, 22, 14, 15, 3000));
  EXPECT_EQ(m.hostname, "mymachine.example.com");
  EXPECT_EQ(m.program, "evntslog");
  EXPECT_EQ(m.pid, "99");
  EXPECT_EQ(m.msgid, "ID47");
  EXPECT_EQ(m.structured_data,
            "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"][x@1 a=\"q\\]\\\"\"]");
  EXPECT_EQ(m.message, "An application event log entry");
}

TEST(SyslogParserTest, Rfc5424NilValues) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("<13>1 - - - - - -", kRef, &m).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.hostname, "");
  EXPECT_EQ(m.program, "");
  EXPECT_EQ(m.pid, "");
  EXPECT_EQ(m.msgid, "");
  EXPECT_EQ(m.structured_data, "");
  EXPECT_EQ(m.message, "");

  ASSERT_TRUE(UtcParser().Parse("<13>1 - host app - - - hello", kRef, &m).ok());
  EXPECT_EQ(m.hostname, "host");
  EXPECT_EQ(m.program, "app");
  EXPECT_EQ(m.message, "hello");
}

TEST(SyslogParserTest, Rfc5424AsRsyslogProtocol23WritesIt) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser()
                  .Parse("<22>1 2025-02-27T07:14:47.545612+00:00 mail postfix/submission/smtpd "
                         "1234 - - lost connection after AUTH from unknown[198.51.100.7]\n",
                         kRef, &m)
                  .ok());
  EXPECT_EQ(m.program, "postfix/submission/smtpd");
  EXPECT_EQ(m.pid, "1234");
  EXPECT_EQ(m.message, "lost connection after AUTH from unknown[198.51.100.7]");
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 7, 14, 47, 545612));
}

TEST(SyslogParserTest, Rfc5424FromRsyslogKeepsNoLeadingSpace) {
  SyslogMessage m;
  ASSERT_TRUE(
      UtcParser()
          .Parse("<14>1 2026-02-27T07:14:48+00:00 vm dovecot - - -  imap-login: two", kRef, &m)
          .ok());
  EXPECT_EQ(m.program, "dovecot");
  EXPECT_EQ(m.message, "imap-login: two");
}

TEST(SyslogParserTest, Rfc5424Malformed) {
  SyslogMessage m;
  const SyslogParser p = UtcParser();
  EXPECT_FALSE(p.Parse("<13>1 2025-13-01T00:00:00Z h a - - -", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13>1 2025-01-01T00:00:00Z h a - -", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13>1 2025-01-01T00:00:00Z h a - - [unterminated", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13>1 2025-01-01T00:00:00Z h a - - [x a=\"]", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13>1 2025-01-01T00:00:00Z", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13>1 2025-01-01T00:00:00Z h a - - nosd", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13>1 2025-02-30T00:00:00Z h a - - -", kRef, &m).ok());
}

TEST(SyslogParserTest, BadPriIsMalformed) {
  SyslogMessage m;
  const SyslogParser p = UtcParser();
  EXPECT_FALSE(p.Parse("<192>Feb  7 07:14:47 h x: y", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<>Feb  7 07:14:47 h x: y", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<1234>x", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<13", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("<a>b", kRef, &m).ok());
  EXPECT_TRUE(p.Parse("<191>x", kRef, &m).ok());
  EXPECT_EQ(m.facility, 23);
  EXPECT_EQ(m.severity, 7);
  EXPECT_TRUE(p.Parse("<0>x", kRef, &m).ok());
  EXPECT_EQ(m.facility, 0);
}

TEST(SyslogParserTest, GarbageAndTruncatedLinesAreMalformedNotFatal) {
  SyslogMessage m;
  const SyslogParser p = UtcParser();
  EXPECT_FALSE(p.Parse("", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("\n", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("\r\n", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("hello world", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("Feb", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("Feb 2", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("Feb 27 07:1", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("Feb 27 25:00:00 h x: y", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("Feb 32 07:00:00 h x: y", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("Foo 27 07:00:00 h x: y", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("2025-02-27", kRef, &m).ok());
  EXPECT_FALSE(p.Parse("2025-02-27T07:14:47+0", kRef, &m).ok());
  EXPECT_FALSE(p.Parse(std::string_view("\0\0\0", 3), kRef, &m).ok());
  // A time alone is syslog with nothing in it.
  EXPECT_TRUE(p.Parse("Feb 27 07:14:47", kRef, &m).ok());
  EXPECT_EQ(m.program, "");
  EXPECT_EQ(m.message, "");
}

TEST(SyslogParserTest, InvalidUtf8IsCarriedAsBytes) {
  SyslogMessage m;
  const std::string line = "Feb 27 07:14:47 h dovecot: user=<\xff\xfe\xc3(> failed";
  ASSERT_TRUE(UtcParser().Parse(line, kRef, &m).ok());
  EXPECT_EQ(m.program, "dovecot");
  EXPECT_EQ(m.message, "user=<\xff\xfe\xc3(> failed");
}

TEST(SyslogParserTest, HugeLine) {
  std::string line = "Feb 27 07:14:47 h postfix/smtpd[1]: ";
  line.append(8 * 1024 * 1024, 'A');
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse(line, kRef, &m).ok());
  EXPECT_EQ(m.message.size(), 8u * 1024 * 1024);
  std::string tag(1 << 20, 'x');  // a 1 MiB "hostname" without spaces
  ASSERT_TRUE(UtcParser().Parse("Feb 27 07:14:47 " + tag, kRef, &m).ok());
  EXPECT_EQ(m.hostname.size(), tag.size());
}

TEST(SyslogParserTest, TrailingCrLfStripped) {
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse("Feb 27 07:14:47 h x: y\r\n", kRef, &m).ok());
  EXPECT_EQ(m.message, "y");
  EXPECT_EQ(m.raw, "Feb 27 07:14:47 h x: y");
}

TEST(SyslogParserTest, ViewsPointIntoTheLine) {
  const std::string line = "<22>1 2025-02-27T07:14:47Z mail app 1 m - text";
  SyslogMessage m;
  ASSERT_TRUE(UtcParser().Parse(line, kRef, &m).ok());
  const char* b = line.data();
  const char* e = line.data() + line.size();
  for (std::string_view v : {m.hostname, m.program, m.pid, m.msgid, m.message, m.raw}) {
    EXPECT_GE(v.data(), b);
    EXPECT_LE(v.data() + v.size(), e);
  }
}

TEST(SyslogParserTest, YearInferenceAcrossNewYear) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  // Read just after New Year: December is last year.
  ASSERT_TRUE(p.Parse("Dec 31 23:59:59 h x: y", Utc(2026, 1, 1, 0, 0, 5), &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 12, 31, 23, 59, 59));
  // Read just before New Year (a sender whose clock is ahead): January is next year.
  ASSERT_TRUE(p.Parse("Jan  1 00:00:01 h x: y", Utc(2025, 12, 31, 23, 59, 50), &m).ok());
  EXPECT_EQ(m.time, Utc(2026, 1, 1, 0, 0, 1));
  // Mid-year: this year.
  ASSERT_TRUE(p.Parse("Jun 14 10:00:00 h x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 6, 14, 10, 0, 0));
  // Feb 29 goes to the nearest leap year within a year; otherwise the line has no time.
  ASSERT_TRUE(p.Parse("Feb 29 10:00:00 h x: y", Utc(2025, 1, 10, 0, 0, 0), &m).ok());
  EXPECT_TRUE(m.has_time);
  EXPECT_EQ(m.time, Utc(2024, 2, 29, 10, 0, 0));
  ASSERT_TRUE(p.Parse("Feb 29 10:00:00 h x: y", Utc(2026, 6, 10, 0, 0, 0), &m).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.program, "x");
}

// PlaceBsdTime remembers its last answer per thread: a parser fed lines that repeat their date
// and reference gives what a parser that never saw the previous line gives (a new parser each
// line), across New Year, Feb 29, fractions and two parsers with different offsets taking turns.
TEST(SyslogParserTest, YearInferenceRememberedGivesTheSameTimes) {
  SyslogParserOptions plus2;
  plus2.use_local_zone = false;
  plus2.utc_offset_seconds = 7200;
  const SyslogParser utc = UtcParser();
  const SyslogParser east(plus2);
  const char* lines[] = {"Dec 31 23:59:59 h x: y",        "Jan  1 00:00:01 h x: y",
                         "Feb 29 10:00:00 h x: y",        "Jun 14 10:00:00 h x: y",
                         "Jun 14 10:00:00.250000 h x: y", "Jun 14 10:00:01 h x: y"};
  const UnixMicros refs[] = {Utc(2026, 1, 1, 0, 0, 5),
                             Utc(2025, 12, 31, 23, 59, 50),
                             Utc(2025, 1, 10, 0, 0, 0),
                             Utc(2026, 6, 10, 0, 0, 0),
                             kRef,
                             kRef + 999999,
                             Utc(2024, 12, 31, 23, 0, 0)};
  struct Case {
    const char* line;
    UnixMicros ref;
    bool east;
    SyslogMessage want;
  };
  std::vector<Case> cases;
  std::mt19937 rng(20);
  for (int i = 0; i < 4000; ++i) {
    // Runs of the same line and reference, as in a log, with the parsers taking turns.
    Case c{lines[(i / 3 + rng() % 2) % std::size(lines)],
           refs[(i / 5) % std::size(refs)],
           (i / 2) % 2 == 1,
           {}};
    SyslogParserOptions o;
    o.use_local_zone = false;
    o.utc_offset_seconds = c.east ? 7200 : 0;
    const SyslogParser fresh(o);
    ASSERT_TRUE(fresh.Parse(c.line, c.ref, &c.want).ok());
    cases.push_back(c);
  }
  int placed = 0, unplaced = 0;
  for (const Case& c : cases) {  // only the two parsers in between: the memo answers runs
    SyslogMessage got;
    ASSERT_TRUE((c.east ? east : utc).Parse(c.line, c.ref, &got).ok());
    ASSERT_EQ(got.has_time, c.want.has_time) << c.line << " " << c.ref;
    if (c.want.has_time) {
      ASSERT_EQ(got.time, c.want.time) << c.line << " " << c.ref;
      ++placed;
    } else {
      ++unplaced;
    }
  }
  EXPECT_GT(placed, 0);
  EXPECT_GT(unplaced, 0) << "Feb 29 in a year without one";
  // A reference that drifts by hours over two years, past the half-year points where a date's
  // year changes, with leap seconds and Feb 29: the remembered choice never outlives its range.
  for (const char* line : {"Jun 30 12:00:00 h x: y", "Dec 31 23:59:60 h x: y",
                           "Jan  1 00:00:00 h x: y", "Feb 29 06:00:00 h x: y"}) {
    std::vector<std::pair<UnixMicros, SyslogMessage>> wants;
    for (UnixMicros ref = Utc(2023, 11, 1, 0, 0, 0); ref < Utc(2026, 3, 1, 0, 0, 0);
         ref += 7 * 3600 * kMicrosPerSecond + 1234567) {
      SyslogMessage want;
      ASSERT_TRUE(SyslogParser(plus2).Parse(line, ref, &want).ok());
      wants.emplace_back(ref, want);
    }
    for (const auto& [ref, want] : wants) {  // east alone: its remembered choices answer
      SyslogMessage got;
      ASSERT_TRUE(east.Parse(line, ref, &got).ok());
      ASSERT_EQ(got.has_time, want.has_time) << line << " " << ref;
      if (want.has_time) {
        ASSERT_EQ(got.time, want.time) << line << " " << ref;
      }
    }
  }
  // A choice is the parser's own: one whose offset puts the reference in another season (an
  // absurd offset, but a setting) does not take the other's.
  SyslogParserOptions far;
  far.use_local_zone = false;
  far.utc_offset_seconds = -300 * 86400;
  const SyslogParser odd(far);
  SyslogMessage got_utc, got_odd;
  const UnixMicros march = Utc(2025, 3, 1, 0, 0, 0);
  ASSERT_TRUE(utc.Parse("Jul 15 12:00:00 h x: y", march, &got_utc).ok());
  ASSERT_TRUE(odd.Parse("Jul 15 12:00:00 h x: y", march, &got_odd).ok());
  EXPECT_EQ(got_utc.time, Utc(2025, 7, 15, 12, 0, 0));
  // Its reference is in May 2024 local time: July 2024, then 300 days are added back.
  EXPECT_EQ(got_odd.time, Utc(2024, 7, 15, 12, 0, 0) + 300 * 86400 * kMicrosPerSecond);
  SyslogMessage a, b;
  ASSERT_TRUE(utc.Parse("Jun 14 10:00:00 h x: y", kRef, &a).ok());
  ASSERT_TRUE(east.Parse("Jun 14 10:00:00 h x: y", kRef, &b).ok());
  EXPECT_EQ(a.time - b.time, 7200 * kMicrosPerSecond);
}

// Outside the zone table (an old log) the offset comes from the C library, which follows TZ:
// that answer is not remembered, as the parser gave before the memo.
TEST(SyslogParserTest, YearInferenceOutsideTheZoneTableFollowsTz) {
  ScopedTz berlin("Europe/Berlin");
  const SyslogParser p;
  SyslogMessage m;
  ASSERT_TRUE(p.Parse("Jul  1 12:00:00 h x: y", Utc(2010, 7, 2, 0, 0, 0), &m).ok());
  EXPECT_EQ(m.time, Utc(2010, 7, 1, 10, 0, 0));
  {
    ScopedTz new_york("America/New_York");
    ASSERT_TRUE(p.Parse("Jul  1 12:00:00 h x: y", Utc(2010, 7, 2, 0, 0, 0), &m).ok());
    EXPECT_EQ(m.time, Utc(2010, 7, 1, 16, 0, 0));
  }
}

TEST(SyslogParserTest, AbsurdReferenceTimesDoNotOverflow) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  for (UnixMicros ref : {std::numeric_limits<UnixMicros>::max(),
                         std::numeric_limits<UnixMicros>::min(), UnixMicros{-1}}) {
    ASSERT_TRUE(p.Parse("Dec 31 23:59:59 h x: y", ref, &m).ok());
    EXPECT_TRUE(m.has_time);
  }
}

TEST(SyslogParserTest, FixedOffsetAppliesToZonelessTimesOnly) {
  SyslogParserOptions o;
  o.use_local_zone = false;
  o.utc_offset_seconds = 3600;
  const SyslogParser p(o);
  SyslogMessage m;
  ASSERT_TRUE(p.Parse("Feb 27 07:14:47 h x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 6, 14, 47));
  ASSERT_TRUE(p.Parse("2025-02-27T07:14:47 h x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 6, 14, 47));
  ASSERT_TRUE(p.Parse("2025-02-27T07:14:47+00:00 h x: y", kRef, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 2, 27, 7, 14, 47));
}

TEST(SyslogParserTest, LocalZoneWithDaylightSavingTime) {
  ScopedTz tz("Europe/Berlin");
  const SyslogParser p;  // tabulates the zone around now
  SyslogMessage m;
  const auto now = static_cast<std::int64_t>(std::time(nullptr)) * kMicrosPerSecond;
  const int year = static_cast<int>(1970 + (now / kMicrosPerSecond) / 31556952);
  // Winter: CET (+01:00); summer: CEST (+02:00), in a year the table covers.
  ASSERT_TRUE(p.Parse("Jan 15 12:00:00 h x: y", Utc(year, 1, 16, 0, 0, 0), &m).ok());
  EXPECT_EQ(m.time, Utc(year, 1, 15, 11, 0, 0));
  ASSERT_TRUE(p.Parse("Jul 15 12:00:00 h x: y", Utc(year, 7, 16, 0, 0, 0), &m).ok());
  EXPECT_EQ(m.time, Utc(year, 7, 15, 10, 0, 0));
  // The table agrees with the C library on every hour of a year around now.
  for (std::int64_t t = now / kMicrosPerSecond - 200 * 86400;
       t < now / kMicrosPerSecond + 200 * 86400; t += 3600 + 17) {
    ASSERT_EQ(p.UtcOffsetAt(t), SyslogParser::LocalUtcOffset(t * kMicrosPerSecond)) << t;
  }
  // Far outside the table (an old log replayed) still right, via the C library.
  ASSERT_TRUE(p.Parse("2010-07-01T12:00:00 h x: y", 0, &m).ok());
  EXPECT_EQ(m.time, Utc(2010, 7, 1, 10, 0, 0));
}

TEST(SyslogParserTest, LocalZoneNewYork) {
  ScopedTz tz("America/New_York");
  const SyslogParser p;
  SyslogMessage m;
  ASSERT_TRUE(p.Parse("2020-01-15T12:00:00 h x: y", 0, &m).ok());
  EXPECT_EQ(m.time, Utc(2020, 1, 15, 17, 0, 0));
}

TEST(SyslogParserTest, RandomBytesNeverCrash) {
  std::mt19937 rng(1234);
  const SyslogParser p = UtcParser();
  const std::string alphabet = "<>0123456789 -:[]\"\\TZ+.JanFebDec\xEF\xBB\xBF\n\r\0x";
  SyslogMessage m;
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 80);
    for (int k = 0; k < len; ++k) s.push_back(alphabet[rng() % alphabet.size()]);
    if (p.Parse(s, kRef, &m).ok()) {
      ++ok;
      EXPECT_LE(m.message.size(), s.size());
    }
  }
  EXPECT_GT(ok, 0);
}

// --- headers that did not pass through syslog (log_format.h) ---------------------------------

const UnixMicros kRef2025 = Utc(2025, 3, 3, 12, 0, 0);

TEST(SyslogParserTest, RfcTimeWithYear) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  ASSERT_TRUE(
      p.Parse("Mar  3 2023 10:12:01 mx postfix/smtpd[7]: connect from x[192.0.2.1]", kRef2025, &m)
          .ok());
  EXPECT_EQ(m.time, Utc(2023, 3, 3, 10, 12, 1));  // the year written, not the nearest one
  EXPECT_EQ(m.hostname, "mx");
  EXPECT_EQ(m.program, "postfix/smtpd");
}

TEST(SyslogParserTest, IsoTimeWithoutZoneAndWithBlank) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  ASSERT_TRUE(p.Parse("2025-03-03T10:12:01 mx postfix/smtpd[7]: x", kRef2025, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 3, 3, 10, 12, 1));
  EXPECT_EQ(m.program, "postfix/smtpd");
  ASSERT_TRUE(p.Parse("2025-03-03 10:12:01.250 mx dovecot: imap-login: x", kRef2025, &m).ok());
  EXPECT_EQ(m.time, Utc(2025, 3, 3, 10, 12, 1, 250000));
  EXPECT_EQ(m.program, "dovecot");
  EXPECT_EQ(m.message, "imap-login: x");
}

// Dovecot's log_path file: no hostname, no syslog tag; recognised by the level word, also
// without a format hint.
TEST(SyslogParserTest, DovecotLogFileLines) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  for (LogFormat f : {LogFormat::kSyslog, LogFormat::kDovecotLog}) {
    SCOPED_TRACE(std::string(LogFormatName(f)));
    ASSERT_TRUE(p.Parse("Mar 03 10:12:01 imap-login: Info: Aborted login (no auth attempts in 0 "
                        "secs): user=<>, rip=192.0.2.7, lip=192.0.2.1",
                        kRef2025, &m, f)
                    .ok());
    EXPECT_EQ(m.time, Utc(2025, 3, 3, 10, 12, 1));
    EXPECT_EQ(m.program, "dovecot");
    EXPECT_EQ(m.hostname, "");
    EXPECT_TRUE(m.message.starts_with("imap-login: Info: Aborted login")) << m.message;
    EXPECT_EQ(m.severity, 6);

    ASSERT_TRUE(p.Parse("Mar  3 10:12:01 pop3-login: Warning: x", kRef2025, &m, f).ok());
    EXPECT_EQ(m.program, "dovecot");
    EXPECT_EQ(m.severity, 4);

    ASSERT_TRUE(p.Parse("2025-03-03 10:12:01 auth-worker(default): Info: "
                        "sql(bob,192.0.2.8,<abc>): Password mismatch",
                        kRef2025, &m, f)
                    .ok());
    EXPECT_EQ(m.time, Utc(2025, 3, 3, 10, 12, 1));
    EXPECT_EQ(m.program, "dovecot");
    EXPECT_TRUE(m.message.starts_with("auth-worker(default): Info: sql(")) << m.message;

    // 2.4's prefix holds a ':' inside: still one prefix.
    ASSERT_TRUE(p.Parse("2025-03-03 10:12:01 auth(bob,192.0.2.9,sasl:login)<Ab12>: Info: sql: "
                        "Password mismatch",
                        kRef2025, &m, f)
                    .ok());
    EXPECT_EQ(m.program, "dovecot");
    EXPECT_TRUE(m.message.starts_with("auth(bob,192.0.2.9,sasl:login)<Ab12>: Info: ")) << m.message;
  }
  // A syslog line with a hostname is never taken for Dovecot's file, whatever its text says.
  ASSERT_TRUE(p.Parse("Mar  3 10:12:01 mx postfix/smtpd[1]: Info: x", kRef2025, &m).ok());
  EXPECT_EQ(m.program, "postfix/smtpd");
  // With the hint, a line without a time is still Dovecot's (log_timestamp = "").
  ASSERT_TRUE(
      p.Parse("imap-login: Info: Login: user=<a>", kRef2025, &m, LogFormat::kDovecotLog).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.program, "dovecot");
  EXPECT_EQ(m.message, "imap-login: Info: Login: user=<a>");
  EXPECT_FALSE(p.Parse("imap-login: Info: Login: user=<a>", kRef2025, &m).ok());
}

// multilog / tai64n: "@" + 2^62 + 10 + Unix seconds, then nanoseconds, in hex.
TEST(SyslogParserTest, Tai64nStamp) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  const UnixMicros want = (0x67c58a2bLL - 10) * kMicrosPerSecond + 0x1c2d3e4f / 1000;
  for (LogFormat f : {LogFormat::kSyslog, LogFormat::kDovecotLog}) {
    ASSERT_TRUE(
        p.Parse("@4000000067c58a2b1c2d3e4f imap-login: Info: Disconnected", kRef2025, &m, f).ok());
    EXPECT_EQ(m.time, want);
    EXPECT_EQ(m.program, "dovecot");
    EXPECT_EQ(m.message, "imap-login: Info: Disconnected");
  }
  ASSERT_TRUE(p.Parse("@4000000067c58a2b1c2d3e4f sshd[12]: Failed x", kRef2025, &m).ok());
  EXPECT_EQ(m.program, "sshd");
  EXPECT_EQ(m.message, "Failed x");
  EXPECT_FALSE(p.Parse("@4000000067c58a2b1c2d3e4 x", kRef2025, &m).ok());   // 23 digits
  EXPECT_FALSE(p.Parse("@3000000067c58a2b1c2d3e4f x", kRef2025, &m).ok());  // before 1970
  EXPECT_FALSE(p.Parse("@40000000g7c58a2b1c2d3e4f x", kRef2025, &m).ok());
}

TEST(SyslogParserTest, RoundcubeFileLines) {
  const SyslogParser p = UtcParser();
  SyslogMessage m;
  const std::string line =
      "[03-Mar-2025 10:12:01 +0100]: <f3a9c1d2> Failed login for a from 192.0.2.1 in session x "
      "(error: 0)";
  for (LogFormat f : {LogFormat::kSyslog, LogFormat::kRoundcubeLog}) {
    ASSERT_TRUE(p.Parse(line, kRef2025, &m, f).ok());
    EXPECT_EQ(m.program, "roundcube");
    EXPECT_EQ(m.time, Utc(2025, 3, 3, 9, 12, 1));
    EXPECT_TRUE(m.message.starts_with("<f3a9c1d2> Failed login")) << m.message;
  }
  // log_driver = "php": PHP's own stamp and the log's name; no usable zone, so no time.
  ASSERT_TRUE(p.Parse("[03-Mar-2025 10:12:01 Europe/Berlin] userlogins: Failed login for a",
                      kRef2025, &m, LogFormat::kRoundcubeLog)
                  .ok());
  EXPECT_EQ(m.program, "roundcube");
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.message, "Failed login for a");
  EXPECT_FALSE(SyslogParser::ParseRoundcubeLine("[30-Feb-2025 10:12:01 +0100]: x", &m));
  EXPECT_FALSE(SyslogParser::ParseRoundcubeLine("[03-Mar-2025 10:12:01 +0100] x", &m));
}

// clamd's LogFile (common/output.c logg()): with LogTime "<ctime> -> text", local time, the year
// after the clock; without it the bare text. Every line is clamd's, whatever it holds.
TEST(SyslogParserTest, ClamdLogFileLines) {
  SyslogParserOptions plus_one;
  plus_one.use_local_zone = false;
  plus_one.utc_offset_seconds = 3600;
  const SyslogParser p(plus_one);
  SyslogMessage m;
  ASSERT_TRUE(p.Parse("Mon Mar  3 10:12:01 2025 -> instream(local): Eicar-Test-Signature FOUND\n",
                      kRef2025, &m, LogFormat::kClamdLog)
                  .ok());
  EXPECT_EQ(m.program, "clamd");
  EXPECT_TRUE(m.has_time);
  EXPECT_EQ(m.time, Utc(2025, 3, 3, 9, 12, 1));
  EXPECT_EQ(m.message, "instream(local): Eicar-Test-Signature FOUND");
  EXPECT_EQ(m.severity, 6);
  ASSERT_TRUE(p.Parse("Sun Dec 28 23:59:59 2025 -> WARNING: Ignoring option LogVerbose", kRef2025,
                      &m, LogFormat::kClamdLog)
                  .ok());
  EXPECT_EQ(m.time, Utc(2025, 12, 28, 22, 59, 59));
  EXPECT_EQ(m.severity, 4);
  // LogTime off: no time; the text is the message, a path with " -> " in it included.
  ASSERT_TRUE(p.Parse("/tmp/a -> b: Win.Test-1 FOUND", kRef2025, &m, LogFormat::kClamdLog).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.program, "clamd");
  EXPECT_EQ(m.message, "/tmp/a -> b: Win.Test-1 FOUND");
  // A broken stamp (no such day) is not a time: the whole line is the message.
  ASSERT_TRUE(
      p.Parse("Mon Feb 30 10:12:01 2025 -> x: y FOUND", kRef2025, &m, LogFormat::kClamdLog).ok());
  EXPECT_FALSE(m.has_time);
  EXPECT_EQ(m.message, "Mon Feb 30 10:12:01 2025 -> x: y FOUND");
  EXPECT_FALSE(p.Parse("\n", kRef2025, &m, LogFormat::kClamdLog).ok());
  // Without the hint such a line is not syslog.
  EXPECT_FALSE(p.Parse("Mon Mar  3 10:12:01 2025 -> instream(local): X FOUND", kRef2025, &m).ok());
}

// The fixed-offset fast path for "Mmm dd hh:mm:ss host tag[pid]: msg" must give what the
// general scanners give, field for field, on every header form: the ones the tests above use,
// edges around each check the fast path makes, and random mutations of their headers.
void ExpectSameAsGeneralPath(const SyslogParser& fast, const SyslogParser& general,
                             std::string_view line, UnixMicros ref) {
  SyslogMessage a, b;
  const Status sa = fast.Parse(line, ref, &a);
  const Status sb = general.Parse(line, ref, &b);
  ASSERT_EQ(sa.ok(), sb.ok()) << line;
  if (!sa.ok()) return;  // *out is unspecified after an error
  EXPECT_EQ(a.time, b.time) << line;
  EXPECT_EQ(a.has_time, b.has_time) << line;
  EXPECT_EQ(a.facility, b.facility) << line;
  EXPECT_EQ(a.severity, b.severity) << line;
  EXPECT_EQ(a.hostname, b.hostname) << line;
  EXPECT_EQ(a.program, b.program) << line;
  EXPECT_EQ(a.pid, b.pid) << line;
  EXPECT_EQ(a.msgid, b.msgid) << line;
  EXPECT_EQ(a.structured_data, b.structured_data) << line;
  EXPECT_EQ(a.message, b.message) << line;
  EXPECT_EQ(a.message.data() == nullptr, b.message.data() == nullptr) << line;
  EXPECT_EQ(a.raw, b.raw) << line;
}

TEST(SyslogParserTest, HeaderFastPathGivesTheGeneralPathsMessage) {
  SyslogParserOptions general_options;
  general_options.header_fast_path = false;
  SyslogParserOptions utc;
  utc.use_local_zone = false;
  SyslogParserOptions utc_general = utc;
  utc_general.header_fast_path = false;
  ScopedTz tz("Europe/Berlin");  // a zone with transitions: the year inference uses them
  const SyslogParser parsers[][2] = {{SyslogParser(), SyslogParser(general_options)},
                                     {SyslogParser(utc), SyslogParser(utc_general)}};
  const std::string lines[] = {
      "Feb 27 07:14:47 mail postfix/submission/smtpd[1234]: connect from unknown[192.0.2.1]\n",
      "<22>Feb  7 07:14:47 mx1 postfix-out/smtp[77]: 4Xyz: to=<a@b>",
      "<13>Mar  1 10:00:00 roundcube: Failed login",
      "<38>Mar  1 10:00:00 sshd[99]: Accepted publickey",
      "Dec 31 23:59:59 h x: y",
      "Jan  1 00:00:01 h x: y",
      "Feb 29 10:00:00 h x: y",
      "Feb 32 07:00:00 h x: y",
      "Feb 27 25:00:00 h x: y",
      "Feb 27 07:14:47 h x: y\r\n",
      "Feb 27 07:14:47 h x: ",
      "Feb 27 07:14:47 h x:",
      "Feb 27 07:14:47 h x",
      "Feb 27 07:14:47 h ",
      "Feb 27 07:14:47 h",
      "Feb 27 07:14:47  x: y",
      "Feb 27 07:14:47 ",
      "Feb 7 07:14:47 mx1 dovecot: imap-login: Login",
      "Feb 07 07:14:47 mx1 dovecot: imap-login: Login",
      "Feb 00 07:14:47 mx1 dovecot: imap-login: Login",
      "Feb  0 07:14:47 mx1 dovecot: imap-login: Login",
      "Feb 27 07:14:60 h x: y",
      "Feb 27 07:14:61 h x: y",
      "Feb 27 07:60:00 h x: y",
      "Feb 27 23:59:59.123456 h x[1]: y",
      "Mar  3 2023 10:12:01 mx postfix/smtpd[7]: connect from x[192.0.2.1]",
      "Mar  1 10:00:00 2001:db8::1 dovecot: y",
      "Mar  1 10:00:00 fe80:: postfix/smtpd[1]: x",
      "Mar  1 10:00:00 host amavis[12] (12-01) Passed",
      "Mar  1 10:00:00 host amavis[12]x (12-01) Passed",
      "Mar  1 10:00:00 host amavis[12]:: x",
      "Mar  1 10:00:00 host amavis[] x",
      "Mar  1 10:00:00 host amavis[1[2]: x",
      "Mar  1 10:00:00 host amavis[12: x",
      "Mar  1 10:00:00 host ama]vis[12]: x",
      "Mar  1 10:00:00 host [12]: x",
      "Mar  1 10:00:00 host :x",
      "Mar  1 10:00:00 host x:y z",
      "Mar  1 10:00:00 host some free text",
      "Mar  1 10:00:00 host[1]: free text",
      "Mar  1 10:00:00 host: free text",
      "Mar  3 10:12:01 mx postfix/smtpd[1]: Info: x",
      "Mar  3 10:12:01 mx Info: x",
      "Mar  3 10:12:01 mx Warning: x",
      "Mar  3 10:12:01 mx Debug[3]: x",
      "Mar  3 10:12:01 mx Debug: x",
      "Mar  3 10:12:01 mx Error: x",
      "Mar  3 10:12:01 mx Fatal: x",
      "Mar  3 10:12:01 mx Panic: x",
      "Mar  3 10:12:01 mx Dovecot: x",
      "Mar  3 10:12:01 mx imap-login: Info: x",
      "Mar  3 10:12:01 pop3-login: Warning: x",
      "Mar 03 10:12:01 imap-login: Info: Aborted login (no auth attempts in 0 secs)",
      "Jun 14 10:00:00 h x: y",
      "Jul 15 12:00:00 h x: y",
      "Oct 26 02:30:00 h x: y",  // an hour that happens twice in Berlin
      "Mar 30 02:30:00 h x: y",  // an hour that does not happen in Berlin
      "Foo 27 07:00:00 h x: y",
      "feb 27 07:00:00 h x: y",
      "Feb 27 07:14:47 h\tx: y",
      "Feb 27 07:14:47 h x[1]:\ty",
      "Feb 27 07:14:47 h x[1]:  two spaces",
      "<0>Feb 27 07:14:47 h x[1]: y",
      "<191>Feb 27 07:14:47 h x[1]: y",
  };
  const UnixMicros refs[] = {kRef, Utc(2026, 1, 1, 0, 0, 30), Utc(2025, 12, 31, 23, 59, 0),
                             Utc(2024, 2, 29, 12, 0, 0), Utc(2025, 10, 26, 1, 0, 0)};
  int compared = 0;
  for (const auto& pair : parsers) {
    for (const std::string& line : lines) {
      for (UnixMicros ref : refs) {
        ExpectSameAsGeneralPath(pair[0], pair[1], line, ref);
        ++compared;
      }
    }
  }
  // Random mutations of the header bytes of well-formed lines, from bytes each check looks at.
  std::mt19937 rng(20);
  const std::string_view bytes = " :[]0123456789aIDF\r\n\t.";
  const std::string bases[] = {"Feb 27 07:14:47 mail postfix/smtpd[1234]: connect from x",
                               "Nov  3 23:59:59 mx dovecot: imap-login: Info: Login: user=<a>",
                               "<22>Dec  1 00:00:00 h opendkim[9]: x"};
  for (int k = 0; k < 60000; ++k) {
    std::string line = bases[static_cast<std::size_t>(k) % std::size(bases)];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % std::min<std::size_t>(line.size(), 44);
      const char c = bytes[rng() % bytes.size()];
      switch (rng() % 3) {
        case 0:
          line[at] = c;
          break;
        case 1:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          line.erase(at, 1);
      }
    }
    const auto& pair = parsers[static_cast<std::size_t>(k) % 2];
    ExpectSameAsGeneralPath(pair[0], pair[1], line, refs[static_cast<std::size_t>(k) % 5]);
    ++compared;
    if (testing::Test::HasFailure()) break;
  }
  std::printf("compared %d lines\n", compared);
}

}  // namespace
}  // namespace mxward
