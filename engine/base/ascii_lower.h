// AsciiLower: a copy of text with A-Z lower-cased and every other byte as it was. For names that
// are compared case-insensitively by protocol (DNS names, mail addresses, Dovecot's protocol
// words): no locale, so a byte above 127 never changes and the same input always gives the same
// key.
#pragma once

#include <string>
#include <string_view>

namespace mxward {

inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace mxward
