// LogFormat: how the lines of an input are written, so the syslog parser knows where the header
// ends. A value type of the model floor: [[input]] (ingest) names it, SyslogParser (parse) reads
// it, neither knows the other.
//
//   syslog        RFC 3164 / RFC 5424 / rsyslog file lines (the default). Also recognised
//                 without a hint: Dovecot log_path lines whose prefix is followed by a level
//                 ("imap-login: Info: ..."), TAI64N stamps and Roundcube's "[date]: " lines.
//   dovecot-log   Dovecot's own log_path / info_log_path / debug_log_path file, or its stderr
//                 through multilog: [log_timestamp] "<process prefix>: <Level>: text". Every line
//                 is Dovecot's, whatever its prefix looks like (2.4's "auth(user,ip,sasl:login)").
//   roundcube-log Roundcube's logs/errors.log and logs/userlogins.log ("[03-Mar-2025 10:12:01
//                 +0100]: <sess> text"); every line is Roundcube's.
//   clamd-log     clamd's own LogFile (clamd.conf LogFile): with LogTime "<ctime> -> text"
//                 ("Mon Dec  7 09:35:15 2026 -> instream(local): Eicar FOUND", common/output.c
//                 logg()), without it the bare text; every line is clamd's.
#pragma once

#include <cstdint>
#include <string_view>

namespace mxward {

enum class LogFormat : std::uint8_t { kSyslog, kDovecotLog, kRoundcubeLog, kClamdLog };

inline std::string_view LogFormatName(LogFormat f) {
  switch (f) {
    case LogFormat::kSyslog:
      return "syslog";
    case LogFormat::kDovecotLog:
      return "dovecot-log";
    case LogFormat::kRoundcubeLog:
      return "roundcube-log";
    case LogFormat::kClamdLog:
      return "clamd-log";
  }
  return "syslog";
}

// Accepts exactly the names LogFormatName returns.
inline bool ParseLogFormat(std::string_view name, LogFormat* out) {
  for (LogFormat f : {LogFormat::kSyslog, LogFormat::kDovecotLog, LogFormat::kRoundcubeLog,
                      LogFormat::kClamdLog}) {
    if (name == LogFormatName(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

}  // namespace mxward
