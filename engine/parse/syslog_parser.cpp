// SyslogParser: hand-written scanners over string_views. Every step checks bounds, because the
// input is whatever an attacker can get into a log line; nothing here allocates.
#include "mxward/syslog_parser.h"

#include <array>
#include <atomic>
#include <ctime>
#include <limits>

namespace mxward {

namespace {

constexpr std::int64_t kSecondsPerDay = 86400;

// A cursor over the line. All reads are bounds-checked.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool done() const { return pos_ >= s_.size(); }
  std::size_t pos() const { return pos_; }
  void set_pos(std::size_t p) { pos_ = p; }
  char peek(std::size_t ahead = 0) const {
    return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0';
  }
  bool has(std::size_t n) const { return s_.size() - pos_ >= n; }
  bool Eat(char c) {
    if (!done() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  // Reads exactly n decimal digits.
  bool Digits(int n, int* value) {
    if (!has(static_cast<std::size_t>(n))) return false;
    int v = 0;
    for (int i = 0; i < n; ++i) {
      const char c = s_[pos_ + static_cast<std::size_t>(i)];
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    pos_ += static_cast<std::size_t>(n);
    *value = v;
    return true;
  }
  // A run of non-space characters (possibly empty).
  std::string_view Token() {
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ' ') ++pos_;
    return s_.substr(start, pos_ - start);
  }
  std::string_view Rest() const { return pos_ < s_.size() ? s_.substr(pos_) : std::string_view(); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

constexpr std::uint32_t Pack3(char a, char b, char c) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(a)) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b)) << 8 |
         static_cast<unsigned char>(c);
}

// Runs for every line: one switch on the three letters packed, no string compares.
int MonthFromName(std::string_view m) {
  if (m.size() != 3) return 0;
  switch (Pack3(m[0], m[1], m[2])) {
    case Pack3('J', 'a', 'n'):
      return 1;
    case Pack3('F', 'e', 'b'):
      return 2;
    case Pack3('M', 'a', 'r'):
      return 3;
    case Pack3('A', 'p', 'r'):
      return 4;
    case Pack3('M', 'a', 'y'):
      return 5;
    case Pack3('J', 'u', 'n'):
      return 6;
    case Pack3('J', 'u', 'l'):
      return 7;
    case Pack3('A', 'u', 'g'):
      return 8;
    case Pack3('S', 'e', 'p'):
      return 9;
    case Pack3('O', 'c', 't'):
      return 10;
    case Pack3('N', 'o', 'v'):
      return 11;
    case Pack3('D', 'e', 'c'):
      return 12;
    default:
      return 0;
  }
}

bool IsLeap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(std::int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Year of a day count since 1970-01-01 (Howard Hinnant's civil_from_days, year only).
std::int64_t YearFromDays(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  return yoe + era * 400 + (m <= 2 ? 1 : 0);
}

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

struct ClockTime {
  int hour = 0, minute = 0, second = 0;
  int micros = 0;
};

// "hh:mm:ss" with an optional ".fraction" (any number of digits, microseconds kept).
bool ParseClock(Cursor& c, ClockTime* t) {
  if (!c.Digits(2, &t->hour) || !c.Eat(':') || !c.Digits(2, &t->minute) || !c.Eat(':') ||
      !c.Digits(2, &t->second)) {
    return false;
  }
  if (t->hour > 23 || t->minute > 59 || t->second > 60) return false;  // 60: leap second
  t->micros = 0;
  if (c.peek() == '.' && IsDigit(c.peek(1))) {
    c.Eat('.');
    int scale = 100000;
    while (IsDigit(c.peek())) {
      if (scale > 0) {
        t->micros += (c.peek() - '0') * scale;
        scale /= 10;
      }
      c.set_pos(c.pos() + 1);
    }
  }
  return true;
}

std::int64_t SecondsOfDay(const ClockTime& t) { return t.hour * 3600 + t.minute * 60 + t.second; }

// A date and clock time as written, in seconds since the epoch as if they were UTC: the caller
// subtracts the line's offset, or converts a zone-less local time with LocalToUtc.
std::int64_t CivilSeconds(int year, int month, int day, const ClockTime& t) {
  return DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) *
             kSecondsPerDay +
         SecondsOfDay(t);
}

// Zone suffix: "Z", "+hh:mm", "-hh:mm", "+hhmm". Absent: *has_zone = false.
bool ParseZone(Cursor& c, bool* has_zone, long* offset) {
  *has_zone = false;
  *offset = 0;
  if (c.Eat('Z') || c.Eat('z')) {
    *has_zone = true;
    return true;
  }
  const char sign = c.peek();
  if (sign != '+' && sign != '-') return true;
  c.set_pos(c.pos() + 1);
  int hh = 0, mm = 0;
  if (!c.Digits(2, &hh)) return false;
  c.Eat(':');
  if (!c.Digits(2, &mm)) return false;
  if (hh > 23 || mm > 59) return false;
  *offset = (sign == '-' ? -1 : 1) * static_cast<long>(hh * 3600 + mm * 60);
  *has_zone = true;
  return true;
}

// ISO-8601 / RFC 3339 date-time: "2025-02-27T07:14:47.545612+00:00". Local seconds (as if UTC)
// plus the zone, if any.
// allow_space: "2025-03-03 10:12:01" (Dovecot's log_timestamp "%Y-%m-%d %H:%M:%S").
bool ParseIsoTime(Cursor& c, std::int64_t* local_seconds, int* micros, bool* has_zone, long* offset,
                  bool allow_space = false) {
  int y = 0, mo = 0, d = 0;
  if (!c.Digits(4, &y) || !c.Eat('-') || !c.Digits(2, &mo) || !c.Eat('-') || !c.Digits(2, &d)) {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo)) return false;
  if (!c.Eat('T') && !c.Eat('t') && !(allow_space && IsDigit(c.peek(1)) && c.Eat(' '))) {
    return false;
  }
  ClockTime t;
  if (!ParseClock(c, &t)) return false;
  if (!ParseZone(c, has_zone, offset)) return false;
  *local_seconds = CivilSeconds(y, mo, d, t);
  *micros = t.micros;
  return true;
}

// RFC 3164 time "Mmm dd hh:mm:ss" (day space-padded or not, optional fraction), or with a year
// "Mmm dd yyyy hh:mm:ss" (syslog-ng, network devices): *year is 0 when absent.
bool ParseBsdTime(Cursor& c, int* month, int* day, ClockTime* t, int* year = nullptr) {
  if (!c.has(3)) return false;
  const std::size_t start = c.pos();
  *month = MonthFromName(c.Rest().substr(0, 3));
  if (*month == 0) return false;
  c.set_pos(start + 3);
  if (!c.Eat(' ')) return false;
  c.Eat(' ');  // "Feb  7"
  int d = 0;
  if (!IsDigit(c.peek())) return false;
  d = c.peek() - '0';
  c.set_pos(c.pos() + 1);
  if (IsDigit(c.peek())) {
    d = d * 10 + (c.peek() - '0');
    c.set_pos(c.pos() + 1);
  }
  if (d < 1 || d > 31) return false;
  *day = d;
  if (!c.Eat(' ')) return false;
  if (year != nullptr) *year = 0;
  if (year != nullptr && IsDigit(c.peek()) && IsDigit(c.peek(2)) && c.peek(4) == ' ') {
    int y = 0;
    if (!c.Digits(4, &y) || !c.Eat(' ') || y < 1970 || y > 9999) return false;
    *year = y;
  }
  return ParseClock(c, t);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// TAI64N label as multilog/tai64n write it: "@" and 24 hex digits, 2^62 + 10 + Unix seconds
// (daemontools' fixed TAI-UTC offset) and nanoseconds.
bool ParseTai64n(Cursor& c, UnixMicros* out) {
  if (c.peek() != '@' || !c.has(25)) return false;
  const std::string_view hex = c.Rest().substr(1, 24);
  std::uint64_t label = 0, nanos = 0;
  for (std::size_t i = 0; i < 24; ++i) {
    const int v = HexValue(hex[i]);
    if (v < 0) return false;
    if (i < 16) {
      label = label << 4 | static_cast<std::uint64_t>(v);
    } else {
      nanos = nanos << 4 | static_cast<std::uint64_t>(v);
    }
  }
  constexpr std::uint64_t kUnixEpochLabel = (std::uint64_t{1} << 62) + 10;
  constexpr std::uint64_t kMaxSeconds = 253402300799;  // 9999-12-31
  if (label < kUnixEpochLabel || label - kUnixEpochLabel > kMaxSeconds || nanos > 999'999'999) {
    return false;
  }
  c.set_pos(c.pos() + 25);
  *out = static_cast<UnixMicros>(label - kUnixEpochLabel) * kMicrosPerSecond +
         static_cast<UnixMicros>(nanos / 1000);
  return true;
}

// Dovecot's level word after its log prefix ("Info: "): the syslog severity, or -1.
int DovecotLevel(std::string_view s, std::size_t* length) {
  static constexpr std::pair<std::string_view, int> kLevels[] = {{"Info: ", 6},  {"Warning: ", 4},
                                                                 {"Error: ", 3}, {"Fatal: ", 2},
                                                                 {"Panic: ", 0}, {"Debug: ", 7}};
  for (const auto& [word, severity] : kLevels) {
    if (s.substr(0, word.size()) == word) {
      *length = word.size();
      return severity;
    }
  }
  return -1;
}

// A Dovecot log-file body: "<prefix>: <Level>: text" where the prefix has no blank
// ("imap-login", "auth-worker(123)", "imap(user)<4711><sess>", 2.4's "auth(u,ip,sasl:login)<s>").
// Returns the severity, or -1 when rest does not have that shape.
int DovecotBody(std::string_view rest) {
  // One pass to the first ": "; a blank before it (a hostname) ends the check at once.
  std::size_t colon = 0;
  for (;; ++colon) {
    if (colon + 1 >= rest.size() || rest[colon] == ' ') return -1;
    if (rest[colon] == ':' && rest[colon + 1] == ' ') break;
  }
  if (colon == 0) return -1;
  std::size_t length = 0;
  return DovecotLevel(rest.substr(colon + 2), &length);
}

// `name:`, `name[pid]:` and, when allow_no_colon, `name[pid]`. name is any run without space,
// '[' or ':'; the colon must end the token (so an IPv6 hostname like "fe80::1" is not a tag).
bool SplitTag(std::string_view token, bool allow_no_colon, std::string_view* program,
              std::string_view* pid) {
  std::size_t i = 0;
  while (i < token.size() && token[i] != '[' && token[i] != ':') ++i;
  if (i == 0 || i == token.size()) return false;
  const std::string_view name = token.substr(0, i);
  if (token[i] == ':') {
    if (i + 1 != token.size()) return false;
    *program = name;
    *pid = {};
    return true;
  }
  const std::size_t close = token.find(']', i + 1);
  if (close == std::string_view::npos || close == i + 1) return false;
  const std::string_view p = token.substr(i + 1, close - i - 1);
  if (p.find('[') != std::string_view::npos) return false;
  const std::size_t after = close + 1;
  if (after == token.size()) {
    if (!allow_no_colon) return false;
  } else if (!(after + 1 == token.size() && token[after] == ':')) {
    return false;
  }
  *program = name;
  *pid = p;
  return true;
}

// After the time of an RFC 3164 / file line: [hostname SP] [tag SP] message.
void ParseBsdBody(Cursor& c, bool may_have_host, SyslogMessage* out) {
  std::string_view program, pid;
  const std::size_t first_start = c.pos();
  const std::string_view first = c.Token();
  if (SplitTag(first, false, &program, &pid)) {
    out->program = program;
    out->pid = pid;
    c.Eat(' ');
    out->message = c.Rest();
    return;
  }
  if (!may_have_host || first.empty()) {
    c.set_pos(first_start);
    out->message = c.Rest();
    return;
  }
  out->hostname = first;
  c.Eat(' ');
  const std::size_t second_start = c.pos();
  const std::string_view second = c.Token();
  if (SplitTag(second, true, &program, &pid)) {
    out->program = program;
    out->pid = pid;
    c.Eat(' ');
  } else {
    c.set_pos(second_start);
  }
  out->message = c.Rest();
}

// After the time of a file line: Dovecot's own log file ("imap-login: Info: ..."), else the
// RFC 3164 body.
void ParseBody(Cursor& c, SyslogMessage* out) {
  const std::size_t start = c.pos();
  ParseBsdBody(c, true, out);
  // Cheap test first (this runs for every file line): a Dovecot level word starts with one of
  // these letters and follows either the tag ("imap-login: Info: ", no hostname) or, for a
  // prefix the tag splitter refuses (2.4's "auth(u,ip,sasl:login)<s>:"), stands where the tag
  // would be.
  const char m = out->message.empty() ? '\0' : out->message.front();
  const char p = out->program.empty() ? '\0' : out->program.front();
  const bool maybe = (out->hostname.empty() &&
                      (m == 'I' || m == 'W' || m == 'E' || m == 'F' || m == 'P' || m == 'D')) ||
                     (!out->hostname.empty() && out->pid.empty() &&
                      (p == 'I' || p == 'W' || p == 'E' || p == 'F' || p == 'P' || p == 'D'));
  if (!maybe) return;
  c.set_pos(start);
  const int severity = DovecotBody(c.Rest());
  if (severity < 0) return;
  const UnixMicros time = out->time;
  const bool has_time = out->has_time;
  const std::string_view raw = out->raw;
  const int facility = out->facility;
  out->hostname = out->program = out->pid = {};
  out->program = kImpliedProgramDovecot;
  out->message = c.Rest();
  out->severity = severity;
  out->time = time;
  out->has_time = has_time;
  out->raw = raw;
  out->facility = facility;
}

// RFC 5424 header field: NILVALUE "-" is empty. Fields are non-empty runs without space.
bool Field5424(Cursor& c, std::size_t max_len, std::string_view* value) {
  const std::string_view tok = c.Token();
  if (tok.empty() || tok.size() > max_len) return false;
  for (char ch : tok) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 33 || u > 126) return false;  // PRINTUSASCII
  }
  *value = tok == "-" ? std::string_view() : tok;
  return c.Eat(' ');
}

// STRUCTURED-DATA: "-" or one or more [id param="value" ...] with \" \\ \] escapes in values.
bool ParseStructuredData(Cursor& c, std::string_view* sd) {
  const std::size_t start = c.pos();
  if (c.peek() == '-') {
    c.Eat('-');
    *sd = {};
    return c.done() || c.peek() == ' ';
  }
  if (c.peek() != '[') return false;
  while (c.peek() == '[') {
    c.Eat('[');
    bool in_quotes = false;
    bool closed = false;
    while (!c.done()) {
      const char ch = c.peek();
      c.set_pos(c.pos() + 1);
      if (in_quotes) {
        if (ch == '\\') {
          if (c.done()) return false;
          c.set_pos(c.pos() + 1);
        } else if (ch == '"') {
          in_quotes = false;
        }
      } else if (ch == '"') {
        in_quotes = true;
      } else if (ch == ']') {
        closed = true;
        break;
      }
    }
    if (!closed) return false;
  }
  const std::size_t end = c.pos();
  c.set_pos(start);
  *sd = c.Rest().substr(0, end - start);
  c.set_pos(end);
  return c.done() || c.peek() == ' ';
}

// The shape nearly every mail log line has: "Mmm dd hh:mm:ss host tag[pid]: message" (or
// "tag: message"), read at fixed offsets and in one pass over the host and the tag, with the
// same result as ParseBsdTime + ParseBody would give (syslog_parser_test.cpp holds the two to
// each other). Declines (false, *out untouched) on anything else, which then takes the general
// path: a single-digit day without padding, a year, a fraction, a first token that could be a
// tag, a tag that is not `name[pid]:`, `name[pid]` or `name:`, a possible Dovecot level word.
struct BsdHeader {
  int month = 0, day = 0;
  std::int64_t seconds_of_day = 0;
  std::string_view hostname, program, pid, message;
};

inline int Digit(char c) { return static_cast<unsigned char>(c) - '0'; }

// The bytes that end a token of the header (the host, a tag's name, a pid) or may turn it into
// something else: one table lookup a byte instead of four compares.
constexpr std::array<bool, 256> kHeaderStop = [] {
  std::array<bool, 256> t{};
  for (const char c : {' ', '[', ':', ']'}) t[static_cast<unsigned char>(c)] = true;
  return t;
}();
inline bool HeaderStop(char c) { return kHeaderStop[static_cast<unsigned char>(c)]; }
inline bool TwoDigits(std::string_view s, std::size_t at, int* v) {
  const int a = Digit(s[at]), b = Digit(s[at + 1]);
  if (static_cast<unsigned>(a) > 9 || static_cast<unsigned>(b) > 9) return false;
  *v = a * 10 + b;
  return true;
}

bool ParseBsdHeaderFast(std::string_view s, BsdHeader* h) {
  // 0         1
  // 0123456789012345
  // Feb  7 07:14:47 host
  if (s.size() < 17 || s[3] != ' ' || s[6] != ' ' || s[9] != ':' || s[12] != ':' || s[15] != ' ') {
    return false;
  }
  const int month = MonthFromName(s.substr(0, 3));
  if (month == 0) return false;
  int day = 0;
  if (s[4] == ' ') {
    day = Digit(s[5]);
    if (static_cast<unsigned>(day) > 9) return false;
  } else if (!TwoDigits(s, 4, &day)) {
    return false;
  }
  int hour = 0, minute = 0, second = 0;
  if (day < 1 || day > 31 || !TwoDigits(s, 7, &hour) || !TwoDigits(s, 10, &minute) ||
      !TwoDigits(s, 13, &second) || hour > 23 || minute > 59 || second > 60) {
    return false;
  }
  // The host: a non-empty token without '[' or ':' (one with them might be a tag).
  const std::size_t n = s.size();
  std::size_t i = 16;
  while (i < n && !HeaderStop(s[i])) ++i;
  if (i == 16 || i == n || s[i] != ' ') return false;  // ']' in a host: the general path
  const std::size_t host_end = i;
  // The tag: name up to '[' or ':'.
  const std::size_t tag = host_end + 1;
  i = tag;
  while (i < n && !HeaderStop(s[i])) ++i;
  if (i == tag || i == n || s[i] == ' ' || s[i] == ']') return false;
  const std::size_t name_end = i;
  std::string_view pid;
  if (s[i] == '[') {
    const std::size_t pid_start = i + 1;
    i = pid_start;
    while (i < n && !HeaderStop(s[i])) ++i;  // a ':' in the pid: the general path
    if (i == n || s[i] != ']' || i == pid_start) return false;
    pid = std::string_view(s.data() + pid_start, i - pid_start);
    ++i;                            // past ']'
    if (i < n && s[i] == ':') ++i;  // `name[pid]` without a colon is a tag too (after a host)
  } else {
    ++i;  // past ':'
  }
  if (i < n && s[i] != ' ') return false;  // the tag must end the token
  const std::string_view program(s.data() + tag, name_end - tag);
  if (pid.empty()) {
    // ParseBody's Dovecot check: a level word where the tag stands.
    const char p = program.front();
    if (p == 'I' || p == 'W' || p == 'E' || p == 'F' || p == 'P' || p == 'D') return false;
  }
  h->month = month;
  h->day = day;
  h->seconds_of_day = hour * 3600 + minute * 60 + second;
  h->hostname = std::string_view(s.data() + 16, host_end - 16);
  h->program = program;
  h->pid = pid;
  // As Cursor::Rest(): a null view at the end of the line.
  h->message = i + 1 < n ? std::string_view(s.data() + i + 1, n - i - 1) : std::string_view();
  return true;
}

}  // namespace

// "[23-Nov-2026 10:00:00 +0100]: message"
bool SyslogParser::ParseRoundcubeLine(std::string_view line, SyslogMessage* msg) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  // 0         1         2
  // 012345678901234567890123456789
  // [23-Nov-2026 10:00:00 +0100]:
  if (line.size() < 30 || line[0] != '[' || line[3] != '-' || line[7] != '-' || line[12] != ' ' ||
      line[15] != ':' || line[18] != ':' || line[21] != ' ' || line[27] != ']' || line[28] != ':' ||
      line[29] != ' ' || (line[22] != '+' && line[22] != '-')) {
    return false;
  }
  Cursor c(line);
  int day = 0, year = 0, zone_h = 0, zone_m = 0;
  ClockTime t;
  c.set_pos(1);
  if (!c.Digits(2, &day)) return false;
  const int month = MonthFromName(line.substr(4, 3));
  c.set_pos(8);
  if (!c.Digits(4, &year)) return false;
  c.set_pos(13);
  if (!ParseClock(c, &t) || c.pos() != 21) return false;
  c.set_pos(23);
  if (!c.Digits(2, &zone_h) || !c.Digits(2, &zone_m)) return false;
  if (month == 0 || day < 1 || day > DaysInMonth(year, month) || zone_h > 23 || zone_m > 59) {
    return false;
  }
  const long offset = (zone_h * 3600L + zone_m * 60L) * (line[22] == '-' ? -1 : 1);
  *msg = SyslogMessage();
  msg->time = (CivilSeconds(year, month, day, t) - offset) * kMicrosPerSecond;
  msg->has_time = true;
  msg->program = kImpliedProgramRoundcube;
  msg->message = line.substr(30);
  msg->raw = line;
  return true;
}

SyslogParser::SyslogParser(SyslogParserOptions options)
    : options_(options), generation_(NextGeneration()) {
  if (!options_.use_local_zone) return;
  // Tabulate the zone from three years back to two years ahead, one probe per day, and find
  // each change to the second by bisection: ~1,900 localtime_r calls once per parser.
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  zone_.from = now - 3 * 366 * kSecondsPerDay;
  zone_.to = now + 2 * 366 * kSecondsPerDay;
  zone_.initial_offset = LocalUtcOffset(zone_.from * kMicrosPerSecond);
  long prev = zone_.initial_offset;
  std::int64_t prev_t = zone_.from;
  for (std::int64_t t = zone_.from + kSecondsPerDay; t < zone_.to + kSecondsPerDay;
       t += kSecondsPerDay) {
    const std::int64_t probe = t < zone_.to ? t : zone_.to - 1;
    const long off = LocalUtcOffset(probe * kMicrosPerSecond);
    if (off != prev) {
      if (zone_.count == ZoneTable::kMaxTransitions) return;  // odd zone: use the slow path
      std::int64_t lo = prev_t, hi = probe;  // offset(lo) == prev, offset(hi) == off
      while (hi - lo > 1) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        if (LocalUtcOffset(mid * kMicrosPerSecond) == prev) {
          lo = mid;
        } else {
          hi = mid;
        }
      }
      zone_.at[static_cast<std::size_t>(zone_.count)] = hi;
      zone_.offset[static_cast<std::size_t>(zone_.count)] = off;
      ++zone_.count;
      prev = off;
    }
    prev_t = probe;
  }
  zone_.valid = true;
}

std::uint64_t SyslogParser::NextGeneration() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

long SyslogParser::LocalUtcOffset(UnixMicros t) {
  std::time_t secs = static_cast<std::time_t>(FloorDiv(t, kMicrosPerSecond));
  std::tm tm{};
  if (localtime_r(&secs, &tm) == nullptr) return 0;
  return tm.tm_gmtoff;
}

long SyslogParser::UtcOffsetAt(std::int64_t utc_seconds) const {
  if (!options_.use_local_zone) return options_.utc_offset_seconds;
  if (!zone_.valid || utc_seconds < zone_.from || utc_seconds >= zone_.to) {
    // Far from now (an old log replayed): rare, so the C library's cost is acceptable.
    if (utc_seconds > std::numeric_limits<std::int64_t>::max() / kMicrosPerSecond ||
        utc_seconds < std::numeric_limits<std::int64_t>::min() / kMicrosPerSecond) {
      return 0;
    }
    return LocalUtcOffset(utc_seconds * kMicrosPerSecond);
  }
  long off = zone_.initial_offset;
  for (int i = 0; i < zone_.count && zone_.at[static_cast<std::size_t>(i)] <= utc_seconds; ++i) {
    off = zone_.offset[static_cast<std::size_t>(i)];
  }
  return off;
}

std::int64_t SyslogParser::LocalToUtc(std::int64_t local_seconds) const {
  // Two steps settle on the offset in force at the resulting instant, also next to a change.
  const long guess = UtcOffsetAt(local_seconds);
  const long off = UtcOffsetAt(local_seconds - guess);
  return local_seconds - off;
}

bool SyslogParser::PlaceBsdTime(int month, int day, std::int64_t seconds_of_day, int micros,
                                UnixMicros reference, UnixMicros* out) const {
  // Year inference: of last, this and next year (of the reference, in local time) take the one
  // that puts the line nearest the reference.
  // Clamped to years 1..9999 so that absurd references cannot overflow the arithmetic.
  constexpr std::int64_t kMinRef = -62135596800, kMaxRef = 253402300799;
  std::int64_t ref_seconds = FloorDiv(reference, kMicrosPerSecond);
  ref_seconds = ref_seconds < kMinRef ? kMinRef : ref_seconds > kMaxRef ? kMaxRef : ref_seconds;
  // Which year's date is nearest the reference does not change while the reference moves a few
  // days, unless the date is about half a year away: the last choice is remembered per thread,
  // with the references it holds for, and only the local-to-UTC step is done again (~185
  // instructions a line for the whole inference). Exact: a choice is kept only when its day is
  // within 150 days of the reference's local day; for any reference within 10 days of that one
  // (local offsets differ by less than two days) the line is within 163 days of it, the same
  // date in another year at least 365 - 163 - 1 days: farther. That day is always among the three
  // candidates (within a year of any such reference).
  struct Choice {
    std::uint64_t parser = 0;  // generation_: 0 is no parser's
    int month = 0, day = 0;
    std::int64_t ref_from = 0, ref_to = 0;  // references (UTC seconds) the choice holds for
    std::int64_t local_day = 0;             // the chosen date, days since the epoch
  };
  thread_local Choice last;
  if (last.parser == generation_ && last.month == month && last.day == day &&
      ref_seconds >= last.ref_from && ref_seconds <= last.ref_to) {
    *out = LocalToUtc(last.local_day * kSecondsPerDay + seconds_of_day) * kMicrosPerSecond + micros;
    return true;
  }
  const std::int64_t ref_local = ref_seconds + UtcOffsetAt(ref_seconds);
  // The candidate days depend only on the reference's local day and the line's month and day,
  // which change rarely from one line to the next: remembered per thread (the same numbers,
  // without the civil-calendar arithmetic on every line, ~250 instructions).
  struct Candidates {
    std::int64_t ref_day = std::numeric_limits<std::int64_t>::min();
    int month = 0, day = 0;
    std::array<std::int64_t, 3> days{};  // kNoDay: no such date that year (Feb 29)
  };
  constexpr std::int64_t kNoDay = std::numeric_limits<std::int64_t>::min();
  thread_local Candidates memo;
  const std::int64_t ref_day = FloorDiv(ref_local, kSecondsPerDay);
  if (memo.ref_day != ref_day || memo.month != month || memo.day != day) {
    const std::int64_t ref_year = YearFromDays(ref_day);
    for (int k = 0; k < 3; ++k) {
      const std::int64_t y = ref_year - 1 + k;
      memo.days[static_cast<std::size_t>(k)] =
          day > DaysInMonth(y, month)
              ? kNoDay
              : DaysFromCivil(static_cast<int>(y), static_cast<unsigned>(month),
                              static_cast<unsigned>(day));
    }
    memo.ref_day = ref_day;
    memo.month = month;
    memo.day = day;
  }
  std::int64_t best = 0, best_day = 0;
  std::int64_t best_distance = std::numeric_limits<std::int64_t>::max();
  for (const std::int64_t d : memo.days) {
    if (d == kNoDay) continue;  // Feb 29 outside a leap year
    const std::int64_t local = d * kSecondsPerDay + seconds_of_day;
    const std::int64_t distance = local > ref_local ? local - ref_local : ref_local - local;
    if (distance < best_distance) {
      best_distance = distance;
      best = local;
      best_day = d;
    }
  }
  if (best_distance == std::numeric_limits<std::int64_t>::max()) return false;
  if (best_day - ref_day <= 150 && ref_day - best_day <= 150) {
    constexpr std::int64_t kHolds = 10 * kSecondsPerDay;
    last = Choice{generation_, month, day, ref_seconds - kHolds, ref_seconds + kHolds, best_day};
  }
  *out = LocalToUtc(best) * kMicrosPerSecond + micros;
  return true;
}

Status SyslogParser::Parse(std::string_view line, UnixMicros reference, SyslogMessage* out,
                           LogFormat format) const {
  switch (format) {
    case LogFormat::kDovecotLog:
      return ParseDovecot(line, reference, out);
    case LogFormat::kRoundcubeLog: {
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
      if (line.empty()) {
        *out = SyslogMessage{};
        return Status::InvalidArgument("empty line");
      }
      if (!ParseRoundcubeLine(line, out)) {
        // Another log_date_format, or a PHP error_log line "[date zone] text": no time.
        *out = SyslogMessage{};
        out->raw = line;
        out->program = kImpliedProgramRoundcube;
        const std::size_t close = line.front() == '[' ? line.find("] ") : std::string_view::npos;
        out->message = close == std::string_view::npos ? line : line.substr(close + 2);
        if (out->message.starts_with(": ")) out->message.remove_prefix(2);
      }
      // log_driver "php"/"stdout" name the log: "errors: ...", "userlogins: ...".
      for (std::string_view name : {"errors: ", "userlogins: "}) {
        if (out->message.starts_with(name)) out->message.remove_prefix(name.size());
      }
      return Status::Ok();
    }
    case LogFormat::kClamdLog:
      return ParseClamd(line, out);
    case LogFormat::kSyslog:
      break;
  }
  return ParseSyslog(line, reference, out);
}

Status SyslogParser::ParseClamd(std::string_view line, SyslogMessage* out) const {
  *out = SyslogMessage{};
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  out->raw = line;
  if (line.empty()) return Status::InvalidArgument("empty line");
  out->program = kImpliedProgramClamd;
  // LogTime: ctime(3) without its newline, then " -> " (common/output.c logg()):
  // "Mon Dec  7 09:35:15 2026 -> ". Local time, like every zone-less stamp.
  Cursor c(line);
  int month = 0, day = 0, year = 0;
  ClockTime t;
  bool stamped = false;
  if (c.has(4) && c.peek(3) == ' ') {  // the weekday, which the date already says
    c.set_pos(4);
    stamped = ParseBsdTime(c, &month, &day, &t) && c.Eat(' ') && c.Digits(4, &year) &&
              year >= 1970 && day <= DaysInMonth(year, month) && c.Eat(' ') && c.Eat('-') &&
              c.Eat('>') && c.Eat(' ');
  }
  if (stamped) {
    out->time = LocalToUtc(CivilSeconds(year, month, day, t)) * kMicrosPerSecond + t.micros;
    out->has_time = true;
  } else {
    c.set_pos(0);  // no LogTime: the line is the message
  }
  out->message = c.Rest();
  // logg() writes the level as a prefix of the text (LOGG_ERROR, LOGG_WARNING); the rest is info.
  out->severity = out->message.starts_with("ERROR: ")     ? 3
                  : out->message.starts_with("WARNING: ") ? 4
                                                          : 6;
  return Status::Ok();
}

Status SyslogParser::ParseDovecot(std::string_view line, UnixMicros reference,
                                  SyslogMessage* out) const {
  *out = SyslogMessage{};
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  out->raw = line;
  if (line.empty()) return Status::InvalidArgument("empty line");
  Cursor c(line);
  std::int64_t local = 0;
  int micros = 0, month = 0, day = 0;
  bool has_zone = false;
  long offset = 0;
  ClockTime t;
  UnixMicros tai = 0;
  if (c.peek() == '@') {
    if (ParseTai64n(c, &tai) && c.Eat(' ')) {
      out->time = tai;
      out->has_time = true;
    } else {
      c.set_pos(0);
    }
  } else if (IsDigit(c.peek())) {
    if (ParseIsoTime(c, &local, &micros, &has_zone, &offset, /*allow_space=*/true) && c.Eat(' ')) {
      out->time = (has_zone ? local - offset : LocalToUtc(local)) * kMicrosPerSecond + micros;
      out->has_time = true;
    } else {
      c.set_pos(0);
    }
  } else if (ParseBsdTime(c, &month, &day, &t) && c.Eat(' ')) {
    out->has_time = PlaceBsdTime(month, day, SecondsOfDay(t), t.micros, reference, &out->time);
  } else {
    c.set_pos(0);
  }
  out->program = kImpliedProgramDovecot;
  out->message = c.Rest();
  out->severity = DovecotBody(out->message);
  return Status::Ok();
}

Status SyslogParser::ParseSyslog(std::string_view line, UnixMicros reference,
                                 SyslogMessage* out) const {
  *out = SyslogMessage{};
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  out->raw = line;
  if (line.empty()) return Status::InvalidArgument("empty line");
  Cursor c(line);

  bool has_pri = false;
  if (c.peek() == '<') {
    c.Eat('<');
    int pri = 0, digits = 0;
    while (IsDigit(c.peek()) && digits < 4) {
      pri = pri * 10 + (c.peek() - '0');
      ++digits;
      c.set_pos(c.pos() + 1);
    }
    if (digits == 0 || digits > 3 || pri > 191 || !c.Eat('>')) {
      return Status::InvalidArgument("bad <PRI>");
    }
    has_pri = true;
    out->facility = pri / 8;
    out->severity = pri % 8;
  }

  // RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
  if (has_pri && IsDigit(c.peek()) && c.peek() != '0') {
    const std::size_t version_start = c.pos();
    int digits = 0;
    while (IsDigit(c.peek()) && digits < 4) {
      c.set_pos(c.pos() + 1);
      ++digits;
    }
    if (digits <= 3 && c.Eat(' ')) {
      if (c.peek() == '-') {
        c.Eat('-');
      } else {
        std::int64_t local = 0;
        int micros = 0;
        bool has_zone = false;
        long offset = 0;
        if (!ParseIsoTime(c, &local, &micros, &has_zone, &offset)) {
          return Status::InvalidArgument("RFC 5424 line with a bad TIMESTAMP");
        }
        const std::int64_t utc = has_zone ? local - offset : LocalToUtc(local);
        out->time = utc * kMicrosPerSecond + micros;
        out->has_time = true;
      }
      if (!c.Eat(' ')) return Status::InvalidArgument("RFC 5424 line truncated after TIMESTAMP");
      if (!Field5424(c, 255, &out->hostname) || !Field5424(c, 48, &out->program) ||
          !Field5424(c, 128, &out->pid)) {
        return Status::InvalidArgument("RFC 5424 line with a bad HOSTNAME, APP-NAME or PROCID");
      }
      // MSGID is the last field before SD, so it may end the line only if SD follows.
      if (!Field5424(c, 32, &out->msgid)) {
        return Status::InvalidArgument("RFC 5424 line with a bad MSGID");
      }
      if (!ParseStructuredData(c, &out->structured_data)) {
        return Status::InvalidArgument("RFC 5424 line with bad STRUCTURED-DATA");
      }
      c.Eat(' ');
      std::string_view msg = c.Rest();
      if (msg.size() >= 3 && msg.substr(0, 3) == "\xEF\xBB\xBF") msg.remove_prefix(3);
      // rsyslog forwards a 3164 message's MSG with the space that followed its tag ("- -  text");
      // leading spaces are never meaningful to mxward's parsers, so they go.
      while (!msg.empty() && msg.front() == ' ') msg.remove_prefix(1);
      out->message = msg;
      return Status::Ok();
    }
    c.set_pos(version_start);  // "<13>15 ..." style RFC 3164 without a time: fall through
  }

  // RFC 3164 and the file formats.
  const std::size_t time_start = c.pos();
  if (BsdHeader h; options_.header_fast_path && ParseBsdHeaderFast(c.Rest(), &h)) {
    out->has_time = PlaceBsdTime(h.month, h.day, h.seconds_of_day, 0, reference, &out->time);
    out->hostname = h.hostname;
    out->program = h.program;
    out->pid = h.pid;
    out->message = h.message;
    return Status::Ok();
  }
  if (IsDigit(c.peek())) {
    std::int64_t local = 0;
    int micros = 0;
    bool has_zone = false;
    long offset = 0;
    if (ParseIsoTime(c, &local, &micros, &has_zone, &offset, /*allow_space=*/!has_pri) &&
        c.Eat(' ')) {
      const std::int64_t utc = has_zone ? local - offset : LocalToUtc(local);
      out->time = utc * kMicrosPerSecond + micros;
      out->has_time = true;
      ParseBody(c, out);
      return Status::Ok();
    }
  } else {
    int month = 0, day = 0, year = 0;
    ClockTime t;
    if (ParseBsdTime(c, &month, &day, &t, &year) && (c.done() || c.Eat(' '))) {
      if (year != 0) {
        if (day > DaysInMonth(year, month)) return Status::InvalidArgument("no such day");
        out->time = LocalToUtc(CivilSeconds(year, month, day, t)) * kMicrosPerSecond + t.micros;
        out->has_time = true;
      } else {
        out->has_time = PlaceBsdTime(month, day, SecondsOfDay(t), t.micros, reference, &out->time);
      }
      ParseBody(c, out);
      return Status::Ok();
    }
  }
  if (!has_pri) {
    if (c.peek() == '@') {  // multilog / tai64n
      UnixMicros t = 0;
      if (ParseTai64n(c, &t) && c.Eat(' ')) {
        out->time = t;
        out->has_time = true;
        if (DovecotBody(c.Rest()) >= 0) {
          out->program = kImpliedProgramDovecot;
          out->message = c.Rest();
        } else {
          ParseBsdBody(c, false, out);
        }
        return Status::Ok();
      }
    }
    if (ParseRoundcubeLine(line, out)) return Status::Ok();
    return Status::InvalidArgument("not syslog: no <PRI> and no timestamp");
  }
  // <PRI> without a usable time: the rest is `tag: message` or just a message.
  c.set_pos(time_start);
  ParseBsdBody(c, false, out);
  return Status::Ok();
}

}  // namespace mxward
