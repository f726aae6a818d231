// LineShape: what `mxward explain --unknown` groups unrecognised lines by, and the redacted
// example it prints for each group, so a user can send the shapes mxward misses without sending
// their users' addresses or names.
//
// Redact() replaces what identifies a person or a host: IPv4/IPv6 addresses ("<ip>"),
// "host[addr]" ("<host>[<ip>]"), anything between < and > (mail addresses, Dovecot's user=<...>,
// session ids: "<*>"), other mail addresses ("<email>"), key=value user fields (user=, ruser=,
// rhost=, sasl_username=, ...: "<user>"), the user of Dovecot's "passdb(user,ip...)" and
// Roundcube's "for USER from|against". Shape() is Redact() with numbers ("<n>") and a leading
// Postfix queue id ("<qid>") replaced too, so lines that differ only in those group together.
// Both are heuristics over free text: they may replace more than needed, and a user name in a
// position they do not know survives (hence "redacted", not "anonymised"; docs/cli.md says so).
//
// Thread-compatible (the patterns are compiled once, read-only); allocates; CLI use only.
#pragma once

#include <string>
#include <string_view>

namespace mxward::cli {

std::string RedactLine(std::string_view message);
std::string LineShape(std::string_view message);

}  // namespace mxward::cli
