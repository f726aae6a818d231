// Test support: a SyslogMessage as the syslog parser would hand it to the parser pack, for tests
// that feed parsers a program and a message directly (parser_pack_test, clamd_real_test). The
// time is fixed (2023-11-14 22:13:20 UTC) so field extraction never depends on the clock.
// Header-only; the views must outlive the message (they are not copied).
#pragma once

#include <string_view>

#include "mxward/syslog_message.h"
#include "mxward/time.h"

namespace mxward::testing {

inline SyslogMessage SyslogLine(std::string_view program, std::string_view message) {
  SyslogMessage m;
  m.program = program;
  m.message = message;
  m.raw = message;
  m.time = 1'700'000'000 * kMicrosPerSecond;
  m.has_time = true;
  return m;
}

}  // namespace mxward::testing
