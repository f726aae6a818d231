// Fuzz target: SyslogParser::Parse on arbitrary bytes, with every format hint (log_format.h),
// must never crash, read out of bounds or return views outside the input (but for the static
// implied program names). The first 8 bytes (when present) pick the reference time so year
// inference is fuzzed too.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "mxward/syslog_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mxward::SyslogParser kLocal;  // the process's zone, tabulated once
  static const mxward::SyslogParser kFixed([] {
    mxward::SyslogParserOptions o;
    o.use_local_zone = false;
    o.utc_offset_seconds = -5 * 3600;
    return o;
  }());
  mxward::UnixMicros reference = 1'750'000'000LL * mxward::kMicrosPerSecond;
  if (size >= 9 && data[0] == 0xFF) {
    std::int64_t r = 0;
    std::memcpy(&r, data + 1, sizeof r);
    reference = r;
    data += 9;
    size -= 9;
  }
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  using mxward::LogFormat;
  for (const auto* parser : {&kLocal, &kFixed}) {
    for (LogFormat format : {LogFormat::kSyslog, LogFormat::kDovecotLog, LogFormat::kRoundcubeLog,
                             LogFormat::kClamdLog}) {
      mxward::SyslogMessage m;
      if (!parser->Parse(line, reference, &m, format).ok()) continue;
      const char* b = line.data();
      const char* e = b + line.size();
      for (std::string_view v : {m.hostname, m.pid, m.msgid, m.structured_data, m.message, m.raw}) {
        if (v.empty()) continue;
        if (v.data() < b || v.data() + v.size() > e) std::abort();
      }
      // program is in the line or one of the static names a line's form implies (syslog_message.h;
      // compared by value: a constexpr's literal may have another address in each library).
      if (!m.program.empty() && (m.program.data() < b || m.program.data() + m.program.size() > e) &&
          m.program != mxward::kImpliedProgramDovecot &&
          m.program != mxward::kImpliedProgramRoundcube &&
          m.program != mxward::kImpliedProgramClamd) {
        std::abort();
      }
      if (m.facility > 23 || m.severity > 7) std::abort();
    }
  }
  return 0;
}
