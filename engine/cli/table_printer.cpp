#include "engine/cli/table_printer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include <fmt/format.h>

#include "engine/cli/commands.h"

namespace mxward::cli {

bool StdoutWantsColor() {
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color && *no_color) return false;
  const char* term = std::getenv("TERM");
  if (term && std::string_view(term) == "dumb") return false;
  return isatty(STDOUT_FILENO) == 1;
}

std::string Colorize(std::string_view text, Color c, bool enabled) {
  if (!enabled || c == Color::kNone) return std::string(text);
  const char* code = "";
  switch (c) {
    case Color::kRed:
      code = "31";
      break;
    case Color::kGreen:
      code = "32";
      break;
    case Color::kYellow:
      code = "33";
      break;
    case Color::kBlue:
      code = "34";
      break;
    case Color::kDim:
      code = "2";
      break;
    case Color::kBold:
      code = "1";
      break;
    case Color::kNone:
      break;
  }
  return fmt::format("\x1b[{}m{}\x1b[0m", code, text);
}

namespace {

// "2026-11-23T12:00:00Z" (or with +hh:mm / -hh:mm) -> UnixMicros.
bool ParseRfc3339(std::string_view s, UnixMicros* out) {
  int y, mo, d, h, mi, sec, n = 0;
  const std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) {
    return false;
  }
  std::string_view rest = s.substr(static_cast<std::size_t>(n));
  std::int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int oh = 0, om = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &oh, &om) != 2) return false;
    offset = (oh * 3600 + om * 60) * (rest[0] == '-' ? -1 : 1);
  } else {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return false;
  const std::int64_t days = DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  *out = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset) * kMicrosPerSecond;
  return true;
}

}  // namespace

UnixMicros CliNow() {
  const char* env = std::getenv("MXWARD_NOW");
  if (!env || !*env) return SystemClock::Instance()->Now();
  std::string_view v(env);
  if (v.find_first_not_of("0123456789") == std::string_view::npos && v.size() < 15) {
    return std::stoll(std::string(v)) * kMicrosPerSecond;
  }
  UnixMicros t = 0;
  if (ParseRfc3339(v, &t)) return t;
  throw CliExit(kExitUsage, fmt::format("MXWARD_NOW='{}' is neither Unix seconds nor RFC 3339 "
                                        "(2026-11-23T12:00:00Z)",
                                        v));
}

std::string FormatLocalTime(UnixMicros t) {
  std::time_t secs = static_cast<std::time_t>(t / kMicrosPerSecond);
  if (t < 0 && t % kMicrosPerSecond != 0) --secs;
  std::tm tm{};
  localtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string FormatAge(UnixMicros t, UnixMicros now) {
  const std::int64_t diff = (now - t) / kMicrosPerSecond;
  const std::int64_t a = diff < 0 ? -diff : diff;
  std::string amount;
  if (a < 5) return "just now";
  if (a < 60) {
    amount = fmt::format("{}s", a);
  } else if (a < 3600) {
    amount = fmt::format("{}m", a / 60);
  } else if (a < 48 * 3600) {
    amount = fmt::format("{}h", a / 3600);
  } else {
    amount = fmt::format("{}d", a / 86400);
  }
  return diff < 0 ? "in " + amount : amount + " ago";
}

std::string FormatWhen(UnixMicros t, UnixMicros now) {
  return fmt::format("{} ({})", FormatLocalTime(t), FormatAge(t, now));
}

std::string Sparkline(const std::vector<std::int64_t>& values) {
  static constexpr const char* kBars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  const std::int64_t max = values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  std::string out;
  for (std::int64_t v : values) {
    // Zero is the lowest bar; anything above zero gets at least the second, so one incident in
    // an hour is visible next to a busy hour.
    std::size_t level = 0;
    if (v > 0 && max > 0) level = 1 + static_cast<std::size_t>(v * 6 / max);
    out += kBars[std::min<std::size_t>(level, 7)];
  }
  return out;
}

std::size_t DisplayWidth(std::string_view text) {
  std::size_t w = 0;
  for (unsigned char c : text) {
    if ((c & 0xC0) != 0x80) ++w;
  }
  return w;
}

TablePrinter::TablePrinter(std::vector<std::string> headers, bool color)
    : headers_(std::move(headers)), right_(headers_.size(), false), color_(color) {}

void TablePrinter::AddRow(std::vector<Cell> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void TablePrinter::AlignRight(std::size_t column) {
  if (column < right_.size()) right_[column] = true;
}

void TablePrinter::Print(std::FILE* out) const {
  std::vector<std::size_t> width(headers_.size());
  for (std::size_t c = 0; c < headers_.size(); ++c) width[c] = DisplayWidth(headers_[c]);
  for (const auto& row : rows_) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      width[c] = std::max(width[c], DisplayWidth(row[c].text));
    }
  }
  auto line = [&](const std::vector<Cell>& cells, bool header) {
    std::string s;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const std::size_t pad = width[c] - DisplayWidth(cells[c].text);
      const bool last = c + 1 == cells.size();
      std::string text = Colorize(cells[c].text, header ? Color::kBold : cells[c].color, color_);
      if (right_[c]) {
        s.append(pad, ' ');
        s += text;
      } else {
        s += text;
        if (!last) s.append(pad, ' ');
      }
      if (!last) s += "  ";
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    s += '\n';
    std::fputs(s.c_str(), out);
  };
  std::vector<Cell> header;
  for (const auto& h : headers_) header.push_back({h, Color::kNone});
  line(header, true);
  for (const auto& row : rows_) line(row, false);
}

}  // namespace mxward::cli
