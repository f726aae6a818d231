// ParseNumber: text that is exactly one number of type T (std::from_chars: no sign for unsigned
// types, no leading '+' or spaces, no trailing bytes), or nothing. Every place that reads a number
// from a log field, a config string, a CLI argument or a file name wants the whole text to be the
// number: "12abc", "" and "99999999999" into an int are refusals, not 12, 0 or a wrapped value.
// Range checks beyond T's (a port, a uid below 2^32-1) stay with the caller, which knows them.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace mxward {

template <typename T>
requires std::is_integral_v<T> std::optional<T> ParseNumber(std::string_view text, int base = 10) {
  T value{};
  const char* last = text.data() + text.size();
  const auto [end, ec] = std::from_chars(text.data(), last, value, base);
  if (text.empty() || ec != std::errc() || end != last) return std::nullopt;
  return value;
}

// The floating-point form (std::from_chars' general format: "4.5", "1e3", "-2").
template <typename T>
requires std::is_floating_point_v<T> std::optional<T> ParseNumber(std::string_view text) {
  T value{};
  const char* last = text.data() + text.size();
  const auto [end, ec] = std::from_chars(text.data(), last, value);
  if (text.empty() || ec != std::errc() || end != last) return std::nullopt;
  return value;
}

}  // namespace mxward
