// SyslogMessage: one syslog record split into its header fields, as views into the caller's line.
//
// Produced by SyslogParser (syslog_parser.h) from RFC 3164, RFC 5424 and rsyslog's file formats.
// Owns nothing: every string_view points into the buffer the caller passed to Parse() and is valid
// only as long as that buffer is. One exception: a line in a form that names no program but
// implies one (Dovecot's own log_path lines, Roundcube's and clamd's log files) gets `program`
// set to one of the static names below, which are valid forever.
#pragma once

#include <string_view>

#include "mxward/time.h"

namespace mxward {

inline constexpr std::string_view kImpliedProgramDovecot = "dovecot";
inline constexpr std::string_view kImpliedProgramRoundcube = "roundcube";
inline constexpr std::string_view kImpliedProgramClamd = "clamd";

struct SyslogMessage {
  UnixMicros time = 0;               // event time from the header (UTC); see has_time
  bool has_time = false;             // false for RFC 5424 NILVALUE or a header without time
  int facility = -1;                 // 0..23, -1 when the line had no <PRI> (a file line)
  int severity = -1;                 // 0..7, -1 when no <PRI>
  std::string_view hostname;         // may be empty (RFC 3164 without hostname, NILVALUE)
  std::string_view program;          // full tag without pid: "postfix/submission/smtpd", "dovecot"
  std::string_view pid;              // "1234", or empty
  std::string_view msgid;            // RFC 5424 MSGID, empty otherwise or for NILVALUE
  std::string_view structured_data;  // RFC 5424 SD, empty for NILVALUE
  std::string_view message;          // the MSG part, BOM stripped, trailing CR/LF stripped
  std::string_view raw;              // the whole line as given (trailing CR/LF stripped)
  // Not from the line: the Pipeline's provenance verdict (provenance.h), which the extractor
  // copies into Event::verified. The parser leaves it false.
  bool verified = false;
  // Not from the line: the authenticated sender (a tls input's certificate name), which the
  // extractor copies into Event::node, so a line the extractor holds keeps it when released.
  std::string_view node;
};

}  // namespace mxward
