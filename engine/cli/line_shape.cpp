#include "engine/cli/line_shape.h"

#include <re2/re2.h>

namespace mxward::cli {
namespace {

struct Rule {
  RE2 pattern;
  const char* replacement;
};

RE2::Options Latin1() {
  RE2::Options o;
  o.set_encoding(RE2::Options::EncodingLatin1);  // bytes, like the parser pack
  o.set_log_errors(false);
  return o;
}

// In order: later rules see the placeholders of earlier ones.
const Rule* RedactRules(std::size_t* count) {
  static const Rule kRules[] = {
      {RE2(R"(<[^<>]*>)", Latin1()), "<*>"},
      {RE2(R"([^\s@()<>,;=\[\]"']+@[^\s()<>,;\[\]"']+)", Latin1()), "<email>"},
      {RE2(R"(\b(user|ruser|rhost|sasl_username|username|login|account)=[^\s,;)]*)", Latin1()),
       "\\1=<user>"},
      {RE2(R"([^\s\[\]]+\[[0-9A-Fa-f:.]+\])", Latin1()), "<host>[<ip>]"},
      {RE2(R"(\b\d{1,3}(?:\.\d{1,3}){3}\b)", Latin1()), "<ip>"},
      {RE2(R"((?:\b[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{0,4}){2,7}(?:[0-9A-Fa-f]{1,4}\b)?)", Latin1()),
       "<ip>"},
      // Dovecot passdb "pam(bob,<ip>..." and 2.4 "auth(bob,<ip>,sasl:plain)".
      {RE2(R"(\b([a-z][a-z0-9_-]*)\([^,()]*,<ip>)", Latin1()), "\\1(<user>,<ip>"},
      // Roundcube "Login failed for bob against ..." / "Failed login for bob from ...".
      {RE2(R"(\bfor .*? (against|from) )", Latin1()), "for <user> \\1 "},
  };
  *count = sizeof(kRules) / sizeof(kRules[0]);
  return kRules;
}

}  // namespace

std::string RedactLine(std::string_view message) {
  std::string out(message.substr(0, 2000));
  std::size_t n = 0;
  const Rule* rules = RedactRules(&n);
  for (std::size_t i = 0; i < n; ++i)
    RE2::GlobalReplace(&out, rules[i].pattern, rules[i].replacement);
  return out;
}

std::string LineShape(std::string_view message) {
  std::string out = RedactLine(message);
  // A leading Postfix queue id: 5-20 letters and digits before ": " (NOQUEUE is kept).
  const std::size_t colon = out.find(": ");
  if (colon >= 5 && colon <= 20 && out.compare(0, colon, "NOQUEUE") != 0) {
    bool alnum = true;
    for (std::size_t i = 0; i < colon && alnum; ++i) {
      const char c = out[i];
      alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    }
    bool digit = false;
    for (std::size_t i = 0; i < colon; ++i) digit = digit || (out[i] >= '0' && out[i] <= '9');
    if (alnum && digit) out.replace(0, colon, "<qid>");
  }
  static const RE2 kNumber(R"(\b\d+(?:\.\d+)?\b)", Latin1());
  RE2::GlobalReplace(&out, kNumber, "<n>");
  if (out.size() > 300) out.resize(300);
  return out;
}

}  // namespace mxward::cli
