#include "mxward/time.h"

#include <ctime>
#include <limits>

#include <fmt/format.h>

namespace mxward {

UnixMicros SystemClock::Now() const {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<UnixMicros>(ts.tv_sec) * kMicrosPerSecond + ts.tv_nsec / 1000;
}

const SystemClock* SystemClock::Instance() {
  static const SystemClock clock;
  return &clock;
}

Result<std::int64_t> ParseDurationSeconds(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("empty duration");
  std::int64_t total = 0;
  std::size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    if (text[i] < '0' || text[i] > '9') {
      return Status::InvalidArgument(
          fmt::format("bad duration '{}': expected a number followed by s, m, h, d or w", text));
    }
    std::int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > (std::numeric_limits<std::int64_t>::max() - 9) / 10) {
        return Status::InvalidArgument(fmt::format("duration '{}' is too large", text));
      }
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    std::int64_t unit = 1;
    if (i < text.size()) {
      switch (text[i]) {
        case 's':
          unit = 1;
          break;
        case 'm':
          unit = 60;
          break;
        case 'h':
          unit = 3600;
          break;
        case 'd':
          unit = 86400;
          break;
        case 'w':
          unit = 7 * 86400;
          break;
        default:
          return Status::InvalidArgument(fmt::format(
              "bad duration '{}': unknown unit '{}' (use s, m, h, d or w)", text, text[i]));
      }
      ++i;
    } else if (any) {
      return Status::InvalidArgument(fmt::format("bad duration '{}': missing unit", text));
    }
    if (n > std::numeric_limits<std::int64_t>::max() / unit / 1'000'000 - total) {
      return Status::InvalidArgument(fmt::format("duration '{}' is too large", text));
    }
    total += n * unit;
    any = true;
  }
  return total;
}

std::string FormatDurationSeconds(std::int64_t s) {
  if (s <= 0) return "0s";
  std::string out;
  const std::int64_t d = s / 86400, h = (s % 86400) / 3600, m = (s % 3600) / 60, sec = s % 60;
  if (d) out += fmt::format("{}d", d);
  if (h) out += fmt::format("{}h", h);
  if (m) out += fmt::format("{}m", m);
  if (sec) out += fmt::format("{}s", sec);
  return out;
}

std::string FormatRfc3339(UnixMicros t, bool local) {
  std::time_t secs = static_cast<std::time_t>(t / kMicrosPerSecond);
  if (t < 0 && t % kMicrosPerSecond != 0) --secs;
  std::tm tm{};
  if (local) {
    localtime_r(&secs, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    // %z gives +0100; RFC 3339 wants +01:00.
    const long off = tm.tm_gmtoff;
    const long a = off < 0 ? -off : off;
    return fmt::format("{}{}{:02}:{:02}", buf, off < 0 ? '-' : '+', a / 3600, (a % 3600) / 60);
  }
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::int64_t DaysFromCivil(int y, unsigned m, unsigned d) {
  // Howard Hinnant's days_from_civil.
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace mxward
