// OneLine: text from outside (a user name, a log key, an error from a server) made safe for one
// line of a log, a mail header or an environment value: control characters (CR, LF, ESC, NUL,
// ...) become spaces and the result is at most max bytes. The audit log lines and the notifiers
// use it so that no text an attacker chose can start a line of its own.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mxward {

std::string OneLine(std::string_view text, std::size_t max = 900);

}  // namespace mxward
