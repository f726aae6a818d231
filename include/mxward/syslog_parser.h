// SyslogParser: turns one syslog line into a SyslogMessage. Pure: no I/O, no allocation.
//
// Formats: RFC 3164 with or without <PRI>, with or without hostname, `program[pid]:` and
// `program:` (rsyslog's TraditionalForwardFormat and TraditionalFileFormat, /var/log/mail.log);
// RFC 5424 (SyslogProtocol23Format, SyslogRFC5424Format; structured data, BOM, NILVALUEs); and the
// ISO-8601 high-precision time rsyslog writes to files ("2025-02-27T07:14:47.545612+00:00 host
// prog[1]: msg"). Year-less RFC 3164 times are placed in the year that puts them closest to the
// reference time (so "Dec 31 23:59:59" read on Jan 1 is last year's), in the configured time zone.
//
// What counts as syslog (anything else is InvalidArgument, counted as malformed by the caller):
//   - a line starting with a valid <PRI> (0..191): RFC 5424 when followed by "1 ", otherwise
//     RFC 3164; a 3164 line whose timestamp is missing or broken keeps has_time = false and the
//     rest is read as `tag: message` (what some devices and `logger` without time send);
//   - a line without <PRI> that starts with an RFC 3164 time ("Feb  7 07:14:47") or an ISO-8601
//     time ("2025-02-27T07:14:47.545612+00:00"): the file formats.
// The hostname is optional in 3164: a first token shaped like a tag (`name:` or `name[pid]:`)
// is the tag, otherwise it is the hostname and the tag follows. A line without a recognisable
// tag keeps program empty and the whole rest as message.
//
// Other headers (log_format.h): Dovecot's own log file (log_timestamp "%b %d %H:%M:%S ", or
// "%Y-%m-%d %H:%M:%S " with optional fraction and zone, or none), multilog's TAI64N stamp
// ("@4000000067c58a2b1c2d3e4f "), Roundcube's "[03-Mar-2025 10:12:01 +0100]: " file lines, and
// clamd's LogFile ("Mon Dec  7 09:35:15 2026 -> text", only with LogFormat::kClamdLog).
// A Dovecot line has no syslog tag: program is "dovecot" and the message starts with Dovecot's
// process prefix ("imap-login: Info: Login: ..."), the shape Dovecot's syslog lines have after
// their "dovecot:" tag (plus the level word). Roundcube's lines get program "roundcube". Without
// a format hint (LogFormat::kSyslog) these are still recognised when unambiguous: a Roundcube
// bracket header, a TAI64N stamp, and a tag followed by a Dovecot level word ("Info: ",
// "Warning: ", "Error: ", "Fatal: ", "Panic: ", "Debug: ") on a line without a hostname.
//
// Time zones: times with an offset (ISO-8601, RFC 5424) are converted with it. Zone-less times
// (RFC 3164, ISO-8601 without offset) are local time of the configured zone. The zone's offsets
// are tabulated once at construction (a few years around "now"), so Parse() makes no tz database
// call in the common path; times outside the table fall back to the C library.
//
// Thread-safety: Parse() is const and touches no shared state; one parser may be used from many
// threads. Copying a parser is cheap (no heap).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "mxward/log_format.h"
#include "mxward/status.h"
#include "mxward/syslog_message.h"
#include "mxward/time.h"

namespace mxward {

struct SyslogParserOptions {
  // Offset of local time from UTC in seconds, applied to RFC 3164 times (which carry no zone).
  // Default: the process's time zone at construction (see SyslogParser::LocalUtcOffset()).
  bool use_local_zone = true;
  long utc_offset_seconds = 0;  // used when use_local_zone is false
  // RFC 3164 lines of the usual shape ("Mmm dd hh:mm:ss host tag[pid]: msg") are read by a
  // fixed-offset fast path with the same result. Tests set this false to compare it against the
  // general scanners on the same lines.
  bool header_fast_path = true;
};

class SyslogParser {
 public:
  explicit SyslogParser(SyslogParserOptions options = {});

  // Parses line. reference is "about now" for year inference: the receive time for live input,
  // or the last event time seen for replay. Returns InvalidArgument for a line that is not syslog
  // (the caller counts it as malformed and skips it); *out is then unspecified.
  // Every string_view in *out points into line. Trailing CR/LF of line are ignored.
  Status Parse(std::string_view line, UnixMicros reference, SyslogMessage* out) const {
    return Parse(line, reference, out, LogFormat::kSyslog);
  }
  // As above, for a line of an input whose lines are written in `format`. With kDovecotLog,
  // kRoundcubeLog and kClamdLog every non-empty line is accepted (a header that is not recognised
  // leaves has_time false and the whole line is the message).
  Status Parse(std::string_view line, UnixMicros reference, SyslogMessage* out,
               LogFormat format) const;

  // Roundcube's file header "[23-Nov-2026 10:00:00 +0100]: message": program "roundcube", the
  // time from the bracket, the message after "]: ". False for anything else.
  static bool ParseRoundcubeLine(std::string_view line, SyslogMessage* out);

  // The local zone's offset from UTC in seconds at time t (uses the C library's tz database).
  static long LocalUtcOffset(UnixMicros t);

  // The offset (seconds) this parser applies to zone-less times at UTC second utc_seconds.
  long UtcOffsetAt(std::int64_t utc_seconds) const;

 private:
  // Offsets of the local zone between two UTC instants, as a list of transitions. Tabulated at
  // construction so that Parse() needs no tz database (localtime_r locks and may stat files).
  struct ZoneTable {
    static constexpr int kMaxTransitions = 24;
    std::int64_t from = 0, to = 0;                   // valid for UTC seconds in [from, to)
    int count = 0;                                   // transitions in use
    long initial_offset = 0;                         // offset before the first transition
    std::array<std::int64_t, kMaxTransitions> at{};  // UTC second a new offset starts
    std::array<long, kMaxTransitions> offset{};
    bool valid = false;
  };

  Status ParseSyslog(std::string_view line, UnixMicros reference, SyslogMessage* out) const;
  Status ParseDovecot(std::string_view line, UnixMicros reference, SyslogMessage* out) const;
  // clamd's LogFile: program "clamd", the ctime stamp of LogTime when there is one.
  Status ParseClamd(std::string_view line, SyslogMessage* out) const;
  // A year-less "Mmm dd" date: the year that puts it nearest the reference, as UTC seconds.
  bool PlaceBsdTime(int month, int day, std::int64_t seconds_of_day, int micros,
                    UnixMicros reference, UnixMicros* out) const;

  // Converts a zone-less local time (seconds since the epoch as if it were UTC) to UTC seconds.
  std::int64_t LocalToUtc(std::int64_t local_seconds) const;

  // Tells parsers apart in PlaceBsdTime's per-thread memo (an address can be reused). A copy
  // keeps it: same options and zone table, same answers.
  static std::uint64_t NextGeneration();

  SyslogParserOptions options_;
  ZoneTable zone_;
  std::uint64_t generation_ = 0;
};

}  // namespace mxward
