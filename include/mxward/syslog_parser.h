// SyslogParser: turns one syslog line into a SyslogMessage. Pure: no I/O, no allocation.
//
// Formats: RFC 3164 with or without <PRI>, with or without hostname, `program[pid]:` and
// `program:` (rsyslog's TraditionalForwardFormat and TraditionalFileFormat, /var/log/mail.log);
// RFC 5424 (SyslogProtocol23Format, SyslogRFC5424Format; structured data, BOM, NILVALUEs); and the
// ISO-8601 high-precision time rsyslog writes to files ("2025-02-27T07:14:47.545612+00:00 host
// prog[1]: msg"). Year-less RFC 3164 times are placed in the year that puts them closest to the
// reference time (so "Dec 31 23:59:59" read on Jan 1 is last year's), in the configured time zone.
#pragma once

#include <string_view>

#include "mxward/status.h"
#include "mxward/syslog_message.h"
#include "mxward/time.h"

namespace mxward {

struct SyslogParserOptions {
  // Offset of local time from UTC in seconds, applied to RFC 3164 times (which carry no zone).
  // Default: the process's time zone at construction (see SyslogParser::LocalUtcOffset()).
  bool use_local_zone = true;
  long utc_offset_seconds = 0;  // used when use_local_zone is false
};

class SyslogParser {
 public:
  explicit SyslogParser(SyslogParserOptions options = {});

  // Parses line. reference is "about now" for year inference: the receive time for live input,
  // or the last event time seen for replay. Returns InvalidArgument for a line that is not syslog
  // (the caller counts it as malformed and skips it); *out is then unspecified.
  Status Parse(std::string_view line, UnixMicros reference, SyslogMessage* out) const;

  // The local zone's offset from UTC in seconds at time t (uses the C library's tz database).
  static long LocalUtcOffset(UnixMicros t);

 private:
  SyslogParserOptions options_;
};

}  // namespace mxward
