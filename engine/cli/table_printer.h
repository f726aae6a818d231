// Output for people: aligned tables, colour only on a terminal (and never with NO_COLOR), times in
// local time with relative ages ("2026-11-23 09:09 (3m ago)"), and text sparklines.
//
// "Now" for ages comes from CliNow(): the MXWARD_NOW environment variable when set (Unix seconds
// or RFC 3339 "2026-11-23T12:00:00Z"), so tests and docs get stable output, else the real clock.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/time.h"

namespace mxward::cli {

enum class Color { kNone, kRed, kGreen, kYellow, kBlue, kDim, kBold };

// Colour on stdout: a TTY, NO_COLOR unset or empty, TERM not "dumb".
bool StdoutWantsColor();
// text wrapped in the ANSI sequence for c when enabled.
std::string Colorize(std::string_view text, Color c, bool enabled);

// MXWARD_NOW or the system clock. Throws CliExit(kExitUsage) on a malformed MXWARD_NOW.
UnixMicros CliNow();
// "2026-11-23 09:09:30" in local time (TZ applies).
std::string FormatLocalTime(UnixMicros t);
// "just now", "45s ago", "3m ago", "5h ago", "2d ago"; future times read "in 3m".
std::string FormatAge(UnixMicros t, UnixMicros now);
// "2026-11-23 09:09:30 (3m ago)".
std::string FormatWhen(UnixMicros t, UnixMicros now);
// Unicode block sparkline, one character per value, scaled to the largest (▁ for zero).
std::string Sparkline(const std::vector<std::int64_t>& values);
// Display width in terminal columns of UTF-8 text (one column per code point).
std::size_t DisplayWidth(std::string_view text);

// Columns sized to their widest cell; the last column is not padded (no trailing spaces).
class TablePrinter {
 public:
  struct Cell {
    std::string text;
    Color color = Color::kNone;
  };
  explicit TablePrinter(std::vector<std::string> headers, bool color);
  void AddRow(std::vector<Cell> cells);
  // Right-aligns a column (numbers).
  void AlignRight(std::size_t column);
  void Print(std::FILE* out) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<Cell>> rows_;
  bool color_;
};

}  // namespace mxward::cli
