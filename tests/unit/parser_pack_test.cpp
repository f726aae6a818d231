// ParserPack: the shipped parsers against annotated sample lines (tests/data/parsers/*.jsonl),
// and the loader's diagnostics for bad parser files.
#include "mxward/parser_pack.h"
#include "support/syslog_line.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace mxward {
namespace {

using testing::SyslogLine;

namespace fs = std::filesystem;

const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";
const std::string kSamples = std::string(MXWARD_TEST_DATA) + "/parsers";

std::shared_ptr<const ParserPack> LoadShipped() {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  std::string all;
  for (const auto& d : diags) all += d.ToString() + "\n";
  EXPECT_TRUE(pack.ok()) << pack.status().ToString() << "\n" << all;
  return pack.ok() ? *pack : nullptr;
}

TEST(ParserPackTest, LoadsEveryShippedParser) {
  auto pack = LoadShipped();
  ASSERT_NE(pack, nullptr);
  auto names = pack->parser_names();
  std::set<std::string> got(names.begin(), names.end());
  EXPECT_EQ(got, (std::set<std::string>{"amavis", "clamav", "dovecot", "opendkim", "opendmarc",
                                        "policyd-spf", "policyd-spf-perl", "postfix", "roundcube",
                                        "rspamd"}));
}

// Every annotated line: the event type (or none), the pattern, the fields and the weight.
TEST(ParserPackTest, AnnotatedSamples) {
  auto pack = LoadShipped();
  ASSERT_NE(pack, nullptr);
  int checked = 0, events = 0, negatives = 0;
  std::set<std::string> parsers_with_samples;
  std::set<std::string> patterns_with_samples;  // "parser/pattern"
  for (const auto& entry : fs::directory_iterator(kSamples)) {
    if (entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    std::string text;
    int line_no = 0;
    while (std::getline(in, text)) {
      ++line_no;
      if (text.empty()) continue;
      const auto j = nlohmann::json::parse(text);
      const std::string where = entry.path().filename().string() + ":" + std::to_string(line_no);
      const std::string program = j.at("program");
      const std::string message = j.at("message");
      SCOPED_TRACE(where + ": " + program + ": " + message);
      Event ev;
      const PatternInfo* info = nullptr;
      const bool matched = pack->Match(SyslogLine(program, message), &ev, &info);
      const bool emits = matched && info->emits;
      if (matched) patterns_with_samples.insert(info->parser + "/" + info->name);
      if (j.at("event").is_null()) {
        EXPECT_FALSE(emits) << "unexpected " << EventTypeName(ev.type) << " from "
                            << (info ? info->name : "");
        ++negatives;
      } else {
        ASSERT_TRUE(emits) << "expected " << j.at("event");
        EXPECT_EQ(EventTypeName(ev.type), j.at("event").get<std::string>());
        parsers_with_samples.insert(info->parser);
        ++events;
      }
      if (j.contains("pattern")) {
        ASSERT_TRUE(matched);
        EXPECT_EQ(info->name, j.at("pattern").get<std::string>());
      }
      if (j.contains("weight")) {
        EXPECT_EQ(ev.weight, j.at("weight").get<std::uint32_t>());
      }
      if (j.contains("fields")) {
        for (const auto& [name, want] : j.at("fields").items()) {
          Field f;
          ASSERT_TRUE(ParseFieldName(name, &f)) << name;
          if (want.is_null()) {
            EXPECT_FALSE(ev.has(f)) << name << " = " << ev.get(f);
            if (f == Field::kClientIp) {
              EXPECT_FALSE(ev.client_ip.valid());
            }
            continue;
          }
          if (f == Field::kClientIp) {
            // Compare the parsed, re-printed address: that is what reaches a ban.
            ASSERT_TRUE(ev.client_ip.valid()) << "no client_ip";
            EXPECT_EQ(ev.client_ip.ToString(), want.get<std::string>());
          } else {
            EXPECT_EQ(ev.get(f), want.get<std::string>()) << name;
          }
        }
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 90);
  EXPECT_GE(negatives, 20);
  EXPECT_GT(events, 50);
  EXPECT_EQ(parsers_with_samples.size(), 10u);

  // Every pattern of these parsers (a row of docs/parsers.md's source table) has at least one
  // annotated line that it recognises.
  for (const std::string parser : {"postfix", "roundcube", "rspamd", "amavis", "clamav"}) {
    std::ifstream toml(kParsers + "/" + parser + ".toml");
    std::string text;
    bool in_pattern = false;
    int patterns = 0;
    while (std::getline(toml, text)) {
      if (text.starts_with("[[pattern]]")) in_pattern = true;
      if (!in_pattern || !text.starts_with("name = \"")) continue;
      const std::string name = text.substr(8, text.rfind('"') - 8);
      EXPECT_TRUE(patterns_with_samples.count(parser + "/" + name))
          << parser << " pattern '" << name << "' has no annotated sample line";
      ++patterns;
      in_pattern = false;
    }
    EXPECT_GE(patterns, 3) << parser;
  }
}

// The shipped parser files with every template pattern named "*_fast" left out: what the regexes
// alone make of a line. Written to `dir`; a block runs from its "[[pattern]]" to the next.
// Amavis's verdict_fast is kept: it is not a stand-in for one regex but reads, on purpose, lines
// the `verdict` regex does not (amavis.jsonl, "Message-ID cannot move the score").
std::shared_ptr<const ParserPack> LoadWithoutFastTemplates(const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  int dropped = 0;
  for (const auto& entry : fs::directory_iterator(kParsers)) {
    if (entry.path().extension() != ".toml") continue;
    std::ifstream in(entry.path());
    std::ofstream out(dir / entry.path().filename());
    std::string line, block;
    auto flush = [&] {
      const bool fast = block.starts_with("[[pattern]]") &&
                        block.find("_fast\"\n") != std::string::npos &&
                        block.find("name = \"verdict_fast\"") == std::string::npos &&
                        block.find("\ntemplate = ") != std::string::npos;
      if (fast) {
        ++dropped;
      } else {
        out << block;
      }
      block.clear();
    };
    while (std::getline(in, line)) {
      if (line.starts_with("[[pattern]]")) flush();
      block += line + "\n";
    }
    flush();
  }
  EXPECT_GE(dropped, 10);
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir.string()}, &diags);
  EXPECT_TRUE(pack.ok()) << (diags.empty() ? pack.status().ToString() : diags[0].ToString());
  return pack.ok() ? *pack : nullptr;
}

// What the shipped pack makes of a line equals what the regexes alone make of it: the same
// match, event type, every field, address, weight and fold. Returns the shipped pattern's name.
std::string ExpectSameAsRegexes(const ParserPack& shipped, const ParserPack& regexes,
                                const std::string& program, const std::string& message) {
  SCOPED_TRACE(program + ": " + message);
  Event a, b;
  const PatternInfo* pa = nullptr;
  const PatternInfo* pb = nullptr;
  const bool ma = shipped.Match(SyslogLine(program, message), &a, &pa);
  const bool mb = regexes.Match(SyslogLine(program, message), &b, &pb);
  EXPECT_EQ(ma, mb) << (ma ? pa->name : pb->name);
  if (!ma || !mb) return ma ? pa->name : "(none)";
  EXPECT_EQ(pa->emits, pb->emits);
  EXPECT_EQ(pa->fold, pb->fold);
  EXPECT_EQ(pa->settles_held, pb->settles_held);
  EXPECT_EQ(pa->forget_queue_id, pb->forget_queue_id);
  EXPECT_EQ(pa->parser, pb->parser);
  EXPECT_EQ(a.type, b.type) << pa->name << " / " << pb->name;
  for (int f = 0; f < kFieldCount; ++f) {
    EXPECT_EQ(a.get(static_cast<Field>(f)), b.get(static_cast<Field>(f)))
        << FieldName(static_cast<Field>(f)) << " (" << pa->name << " / " << pb->name << ")";
  }
  EXPECT_EQ(a.client_ip.valid(), b.client_ip.valid());
  if (a.client_ip.valid() && b.client_ip.valid()) {
    EXPECT_EQ(a.client_ip.ToString(), b.client_ip.ToString());
  }
  EXPECT_EQ(a.weight, b.weight);
  return pa->name;
}

// Each template that stands for a regex ("*_fast", docs/parsers.md) gives exactly the regex's
// event on every annotated sample line, and on lines made to trip it: user names holding the
// text a template ends a field at, forwarding headers, other shapes of the same message. Those
// must make the template decline (the regex then decides), never read the line differently.
TEST(ParserPackTest, TemplatesGiveTheirRegexsEvent) {
  auto shipped = LoadShipped();
  ASSERT_NE(shipped, nullptr);
  const fs::path dir =
      fs::temp_directory_path() / ("mxward_parser_pack_regexes_" + std::to_string(::getpid()));
  auto regexes = LoadWithoutFastTemplates(dir);
  ASSERT_NE(regexes, nullptr);
  int samples = 0, by_template = 0;
  for (const auto& entry : fs::directory_iterator(kSamples)) {
    if (entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    std::string text;
    while (std::getline(in, text)) {
      if (text.empty()) continue;
      const auto j = nlohmann::json::parse(text);
      const std::string name =
          ExpectSameAsRegexes(*shipped, *regexes, j.at("program"), j.at("message"));
      ++samples;
      if (name.ends_with("_fast")) ++by_template;
    }
  }
  EXPECT_GE(samples, 90);
  EXPECT_GE(by_template, 15);

  // Lines the named template must read (and read as its regex does).
  std::vector<std::tuple<std::string, std::string, std::string>> read = {
      {"postfix/smtpd",
       "warning: unknown[192.0.2.20]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
       "sasl_auth_failed_fast"},
      {"postfix/submission/smtpd",
       "warning: mail.example.net[2001:db8::20]: SASL CRAM-MD5 authentication failed: "
       "authentication failure",
       "sasl_auth_failure_fast"},
      {"postfix/smtpd",
       "warning: unknown[192.0.2.21]: SASL " + std::string(100, 'X') +
           " authentication failed: authentication failure",
       "sasl_auth_failure_fast"},
      {"dovecot",
       "auth-worker(33404): sql(user@example.org,192.0.2.22,<UD6N3vjldAEyqoaS>): Password mismatch",
       "passdb_mismatch_fast"},
      {"dovecot", "auth-worker(1): pam(,192.0.2.23,<s>): unknown user", "passdb_unknown_user_fast"},
      {"dovecot", "auth: passwd-file(a b@example.org,2001:db8::23,<kT4fQ>): Password mismatch",
       "passdb_auth_mismatch_fast"},
      {"dovecot", "auth: ldap(ghost,192.0.2.24,<>): unknown user", "passdb_auth_unknown_user_fast"},
      // Debian 12's 2.3.19: the worker's connection prefix, and a log_path file's level.
      {"dovecot",
       "auth-worker(12872): conn unix:auth-worker (pid=12860,uid=106): auth-worker<1>: "
       "sql(a@example.org,192.0.2.27,<CHF/JA1iUcnGM2QY>): Password mismatch",
       "passdb_worker_conn_mismatch_fast"},
      {"dovecot",
       "auth-worker(1): Info: conn unix:auth-worker (pid=2,uid=106): auth-worker<3>: "
       "passwd(b,2001:db8::27,<s>): unknown user",
       "passdb_worker_info_conn_unknown_user_fast"},
      {"dovecot", "auth: Info: passwd-file(c,192.0.2.28,<x>): unknown user",
       "passdb_auth_info_unknown_user_fast"},
      // Without a session (SMTP AUTH through Postfix).
      {"dovecot", "auth: passwd-file(c,2001:db8::29): Password mismatch",
       "passdb_auth_nosession_mismatch_fast"},
      {"dovecot",
       "auth-worker(1): conn unix:auth-worker (pid=2,uid=106): auth-worker<3>: "
       "passwd(b,192.0.2.29): unknown user",
       "passdb_worker_conn_nosession_unknown_user_fast"},
      {"dovecot",
       "auth-worker(14864): conn unix:auth-worker (pid=1,uid=109): auth-worker<6>: "
       "sql(bob,192.0.2.44): unknown user",
       "passdb_worker_conn_nosession_unknown_user_fast"},
      // The user holds what the template stops at ("> from", " against "): the last " against "
      // is Roundcube's, as in the regex.
      {"roundcube",
       "<o2vf3wjb> IMAP Error: Login failed for x from 6.6.6.6 against evil from 6.6.6.7. y "
       "against localhost from 192.0.2.25. AUTHENTICATE PLAIN: Authentication failed. in "
       "/usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST "
       "/?_task=login&_action=login)",
       "imap_login_failed_fast"},
      {"roundcube",
       "<> IMAP Error: Login failed for  against localhost from 2001:db8::25. LOGIN: "
       "Authentication failed. in rcube_imap.php on line 1 (GET /)",
       "imap_login_failed_fast"},
      {"dovecot",
       "imap-login: Disconnected: Connection closed (auth failed, 3 attempts in 9 secs): "
       "user=<a>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, x>, method=PLAIN, rip=192.0.2.26, "
       "lip=192.0.2.1, TLS, session=<kT4fQm9x>",
       "login_auth_failed_imap_fast"},
      // A successful login's session (Debian 12's line without "Info: "), also when the user
      // holds ">, method=... session=<...": the session is the one after Dovecot's lip=.
      {"dovecot",
       "imap-login: Login: user=<carol@chained.example>, method=PLAIN, rip=198.51.100.28, "
       "lip=192.0.2.1, mpid=29025, session=<chW7ORBi4cXGM2Qc>",
       "login_success_session_imap_fast"},
      {"dovecot",
       "pop3-login: Login: user=<a>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, session=<evil>, "
       "method=PLAIN, rip=2001:db8::30, lip=2001:db8::1, mpid=1, TLS, "
       "session=<AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==>",
       "login_success_session_pop3_fast"},
      // Not a session the template can tell from other text ('<' before it, text after it):
      // the template without one reads it, as the regex does.
      {"dovecot",
       "managesieve-login: Login: user=<a>, method=PLAIN, rip=192.0.2.31, lip=192.0.2.1, "
       "x<y, session=<kT4fQm9x>",
       "login_success_managesieve_fast"},
      {"dovecot",
       "submission-login: Login: user=<a>, method=PLAIN, rip=192.0.2.32, lip=192.0.2.1, "
       "session=<kT4fQm9x>, lport=587",
       "login_success_submission_fast"},
  };
  read.push_back({"postfix/smtpd",
                  "NOQUEUE: reject: RCPT from unknown[192.0.2.89]: 550 5.1.1 <a@example.org>: "
                  "Recipient address rejected: User unknownx; from=<> to=<a@example.org>",
                  "reject_unknown_recipient_fast"});
  read.push_back({"postfix/submission/smtpd",
                  "NOQUEUE: reject: RCPT from host.example[2001:db8::90]: 450 4.7.1 Client host "
                  "rejected: cannot find your hostname, [2001:db8::90];",
                  "reject_client_fast"});
  for (const auto& [program, message, pattern] : read) {
    EXPECT_EQ(ExpectSameAsRegexes(*shipped, *regexes, program, message), pattern) << message;
  }

  // Lines every template must decline: the regexes (or nothing) decide.
  const std::vector<std::pair<std::string, std::string>> declined = {
      // Dovecot passdb lines: a master user login without a session, a user with a ','.
      {"dovecot", "auth: passwd-file(bob,192.0.2.36,master): Password mismatch"},
      {"dovecot", "auth: Info: passwd-file(a,b,192.0.2.37): unknown user"},
      // SASL: a mechanism over the regex's 100 bytes, a client port, 3.9's sasl_username=, a
      // server fault, an empty reason, a reason with blanks.
      {"postfix/smtpd", "warning: unknown[192.0.2.30]: SASL " + std::string(101, 'X') +
                            " authentication failed: authentication failure"},
      {"postfix/smtpd", "warning: unknown[192.0.2.30]: SASL " + std::string(101, 'X') +
                            " authentication failed: UGFzc3dvcmQ6"},
      {"postfix/smtpd",
       "warning: unknown[192.0.2.31]:55729: SASL LOGIN authentication failed: authentication "
       "failure"},
      {"postfix/smtpd",
       "warning: unknown[192.0.2.32]: SASL LOGIN authentication failed: authentication failure, "
       "sasl_username=bob"},
      {"postfix/smtpd",
       "warning: unknown[192.0.2.33]: SASL LOGIN authentication failed: Connection lost to "
       "authentication server"},
      {"postfix/smtpd", "warning: unknown[192.0.2.34]: SASL PLAIN authentication failed: "},
      {"postfix/smtpd",
       "warning: unknown[192.0.2.35]: SASL PLAIN authentication failed: authentication failure "},
      // Postfix NOQUEUE rejects: what follows from=<...> does not start with ';' or ' ' (the
      // regex then leaves the sender out), a client port, a queue id, no ';' after the reason,
      // a line feed, a recipient before "Client host rejected".
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.80]: 550 5.1.1 <a@example.org>: Recipient "
       "address rejected: User unknown in virtual mailbox table; from=<x@y.example>x"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.81]:5000: 550 5.1.1 <a@example.org>: "
       "Recipient address rejected: User unknown; from=<x@y.example> to=<a@example.org>"},
      {"postfix/smtpd",
       "4Xz1Ab2CdE: reject: RCPT from unknown[192.0.2.82]: 550 5.1.1 <a@example.org>: Recipient "
       "address rejected: User unknown; from=<x@y.example> to=<a@example.org>"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.83]: 550 5.1.1 <a@example.org>: Recipient "
       "address rejected: User unknown; from=<x@y.example> to=<a@exa\nmple.org>"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.84]: 550 5.1.1 <a@example.org>: Recipient "
       "address rejected: User unknown; to=<a@example.org> proto=SMTP"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.84]: 550 5.1.1 <a>b@example.org>: Recipient "
       "address rejected: User unknown; from=<> to=<a@example.org>"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.85]: 450 4.7.1 Client host rejected: cannot "
       "find your hostname, [192.0.2.85]"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.86]: 450 4.7.1 <a@example.org>: Client host "
       "rejected: cannot find your hostname, [192.0.2.86]; from=<x@y.example>"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.87]: 450 4.7.12 Client host rejected: x; "
       "from=<x@y.example>\n"},
      {"postfix/smtpd",
       "NOQUEUE: reject: RCPT from unknown[192.0.2.88]: 4500 4.7.1 Client host rejected: x; "
       "from=<x@y.example>"},
      // Dovecot passdb: a user with ',' '(' ')', ",master", no session, "Info: " before a
      // worker line without its connection, a given password, a passdb name the regex does not
      // take, text after; the 2.3.19 worker prefix with a ')' or a blank where the regex has
      // none, and ",master" after "auth: Info: ".
      {"dovecot",
       "auth-worker(1): sql(a,6.6.6.6,<x>): Password mismatch,192.0.2.40,<s>): Password mismatch"},
      {"dovecot", "auth-worker(1): sql(a(b,192.0.2.41,<s>): Password mismatch"},
      {"dovecot", "auth-worker(1): sql(a)b,192.0.2.41,<s>): unknown user"},
      {"dovecot", "auth: passwd-file(bob,192.0.2.42,master,<s>): Password mismatch"},
      {"dovecot", "auth-worker(1): pam(bob,192.0.2.43): Password mismatch"},
      {"dovecot",
       "auth-worker(14864): conn unix:auth-worker (pid=1)x,uid=109): auth-worker<6>: "
       "sql(bob,192.0.2.44,<s>): Password mismatch"},
      {"dovecot",
       "auth-worker(14864): conn unix: auth-worker (pid=1,uid=109): auth-worker<6>: "
       "sql(bob,192.0.2.44,<s>): Password mismatch"},
      {"dovecot", "auth: Info: passwd-file(bob,192.0.2.42,master,<s>): Password mismatch"},
      {"dovecot", "auth-worker(1): Info: sql(bob,192.0.2.45,<s>): unknown user"},
      {"dovecot", "auth: sql(bob,192.0.2.46,<s>): unknown user (given password: x)"},
      {"dovecot", "auth: SQL(bob,192.0.2.47,<s>): Password mismatch"},
      {"dovecot", "auth: 1sql(bob,192.0.2.47,<s>): Password mismatch"},
      {"dovecot", "auth: sql(bob,192.0.2.48,<s>x>): Password mismatch"},
      {"dovecot", "auth: sql(bob,192.0.2.49,<s>): password mismatch"},
      // Roundcube: a forwarding header (or a user that looks like one), a reason or URI that
      // the regex splits elsewhere, no session id, a line feed, no " in FILE on line N".
      {"roundcube",
       "<abc> IMAP Error: Login failed for a from 6.6.6.6 (X-Real-IP: b from 6.6.6.7 against "
       "localhost from 192.0.2.50. AUTHENTICATE PLAIN: Authentication failed. in "
       "/usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 211 (POST /)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for bob against localhost from 127.0.0.1 "
       "(X-Forwarded-For: 192.0.2.51). AUTHENTICATE PLAIN: Authentication failed. in "
       "rcube_imap.php on line 211 (POST /)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for bob against localhost from 192.0.2.52. Failed in x. "
       "in rcube_imap.php on line 211 (POST /)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for bob against localhost from 192.0.2.53. Failed. in "
       "rcube_imap.php on line 211 (POST /a)b)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for bob against localhost from 192.0.2.54. Empty startup "
       "greeting (localhost:143) in rcube_imap.php on line 211 (POST /)"},
      {"roundcube",
       "IMAP Error: Login failed for bob against localhost from 192.0.2.55. Failed. in "
       "rcube_imap.php on line 211 (POST /)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for b\nob against localhost from 192.0.2.56. Failed. in "
       "rcube_imap.php on line 211 (POST /)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for bob against localhost from 192.0.2.57. Failed. "
       "(POST /)"},
      {"roundcube",
       "<abc> IMAP Error: Login failed for bob against localhost from 192.0.2.58. Failed. in "
       "rcube_imap.php on line 2111111111111111111111 (POST /)"},
      // OpenDKIM / OpenDMARC: a class the regex does not take, more text after the result.
      {"opendkim", "ABCDEF0050: signature=a domain=b; selector=c result=\"no signature error\""},
      {"opendkim", "ABCDEF0051: signature=a domain=b selector=c result=\"no signature error\" "},
      {"opendkim", "ABCDEF0052: host [192.0.2.70] x] not internal"},
      {"opendkim", "ABC: host [192.0.2.71] not internal"},
      {"opendmarc", "ABCDEF0053: a b.example pass"},
      {"opendmarc", "ABCDEF0054: example.org pass "},
      {"opendmarc", "ABCDEF0055: SPF(mailfrom): example.org pass"},
      // Roundcube's upper-case form: a forwarding header, or a user imitating one; text after
      // the address; a line feed in the user.
      {"roundcube", "FAILED login for a from 6.6.6.6 (X-Real-IP: b from 192.0.2.90"},
      {"roundcube", "FAILED login for bob from 127.0.0.1 (X-Forwarded-For: 192.0.2.91)"},
      {"roundcube", "FAILED login for bob from 192.0.2.92 (error: -1)"},
      {"roundcube", "FAILED login for b\nob from 192.0.2.93"},
      {"roundcube", "FAILED login for bob from 192.0.2.94 "},
      // Dovecot login lines: a service the regexes do not take, a line feed in the user.
      {"dovecot",
       "doveadm-login: Login: user=<a>, method=PLAIN, rip=192.0.2.63, lip=192.0.2.1, mpid=1, TLS"},
      {"dovecot",
       "foo-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=PLAIN, "
       "rip=192.0.2.64, lip=192.0.2.1, TLS, session=<s>"},
      {"dovecot",
       "pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a\nb>, "
       "method=PLAIN, rip=192.0.2.65, lip=192.0.2.1, TLS, session=<s>"},
      // Dovecot login lines: parentheses in the reason, a method the regex does not take.
      {"dovecot",
       "imap-login: Disconnected: read(size=1) failed (auth failed, 1 attempts in 2 secs): "
       "user=<a>, method=PLAIN, rip=192.0.2.60, lip=192.0.2.1, TLS, session=<s>"},
      {"dovecot",
       "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<a>, method=X+Y, "
       "rip=192.0.2.61, lip=192.0.2.1, TLS, session=<s>"},
      {"dovecot",
       "imap-login: Login: user=<a>, method=X+Y, rip=192.0.2.62, lip=192.0.2.1, mpid=1, TLS, "
       "session=<s>"},
  };
  for (const auto& [program, message] : declined) {
    const std::string name = ExpectSameAsRegexes(*shipped, *regexes, program, message);
    EXPECT_FALSE(name.ends_with("_fast")) << name << " read: " << message;
  }
  fs::remove_all(dir);
}

// Metric labels: bounded names from the parser files, never the program text of a line.
TEST(ParserPackTest, ProgramLabelsAreBoundedByTheParserFiles) {
  auto pack = LoadShipped();
  ASSERT_NE(pack, nullptr);
  const auto labels = pack->program_labels();
  auto label_of = [&](std::string_view program) -> std::string {
    const int i = pack->ProgramLabel(program);
    if (i < 0) return "other";
    EXPECT_LT(static_cast<std::size_t>(i), labels.size());
    return static_cast<std::size_t>(i) < labels.size() ? labels[i] : "?";
  };
  EXPECT_EQ(label_of("postfix/smtpd"), "postfix/smtpd");
  EXPECT_EQ(label_of("postfix/submission/smtpd"), "postfix/smtpd");
  EXPECT_EQ(label_of("postfix/postscreen"), "postfix/postscreen");
  // A process the postfix parser has no patterns for: the parser's own name, not the text.
  EXPECT_EQ(label_of("postfix/attacker-chosen-name"), "postfix");
  EXPECT_EQ(label_of("opendkim"), "opendkim");
  EXPECT_EQ(label_of("CRON"), "other");
  EXPECT_EQ(label_of(std::string(300, 'x')), "other");
  for (const auto& l : labels) {
    EXPECT_EQ(l.find(' '), std::string::npos) << l;
    EXPECT_EQ(l.find('@'), std::string::npos) << l;
  }

  // Events know their parser's position in parser_names() (events per parser).
  const auto names = pack->parser_names();
  Event e;
  const PatternInfo* pattern = nullptr;
  ASSERT_TRUE(
      pack->Match(SyslogLine("postfix/smtpd", "connect from unknown[203.0.113.9]"), &e, &pattern) ||
      pack->Match(SyslogLine("postfix/postscreen", "DNSBL rank 4 for [203.0.113.9]:51234"), &e,
                  &pattern));
  ASSERT_NE(pattern, nullptr);
  ASSERT_GE(pattern->parser_index, 0);
  ASSERT_LT(static_cast<std::size_t>(pattern->parser_index), names.size());
  EXPECT_EQ(names[pattern->parser_index], "postfix");
}

TEST(ParserPackTest, FieldsAreViewsIntoTheMessage) {
  auto pack = LoadShipped();
  ASSERT_NE(pack, nullptr);
  const std::string line =
      "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6";
  Event ev;
  ASSERT_TRUE(pack->Parse(SyslogLine("postfix/submission/smtpd", line), &ev));
  const auto reason = ev.get(Field::kReason);
  EXPECT_GE(reason.data(), line.data());
  EXPECT_LE(reason.data() + reason.size(), line.data() + line.size());
  EXPECT_EQ(ev.parser, "postfix");
  EXPECT_EQ(ev.program, "postfix/submission/smtpd");
  EXPECT_EQ(ev.time, 1'700'000'000 * kMicrosPerSecond);
}

TEST(ParserPackTest, RoutesByProgramNotByMessage) {
  auto pack = LoadShipped();
  ASSERT_NE(pack, nullptr);
  Event ev;
  // A Postfix message under another program's name is not Postfix's.
  EXPECT_FALSE(pack->Parse(
      SyslogLine("myapp", "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x"),
      &ev));
  EXPECT_FALSE(
      pack->Parse(SyslogLine("postfixadmin",
                             "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x"),
                  &ev));
  // Instances: postfix-<name>/...
  EXPECT_TRUE(
      pack->Parse(SyslogLine("postfix-in/smtpd",
                             "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x"),
                  &ev));
  // Process routing: an smtpd message under qmgr is not matched.
  EXPECT_FALSE(
      pack->Parse(SyslogLine("postfix/qmgr",
                             "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x"),
                  &ev));
}

TEST(ParserPackTest, RoundcubeFileLine) {
  SyslogMessage m;
  ASSERT_TRUE(ParseRoundcubeFileLine(
      "[23-Nov-2026 10:00:00 +0100]: <8r1pu4bh> IMAP Error: Login failed for a against h from "
      "203.0.113.9. AUTHENTICATE PLAIN: Authentication failed. in /r/rcube_imap.php on line 1 "
      "(POST /)",
      &m));
  EXPECT_EQ(m.program, "roundcube");
  EXPECT_EQ(m.time, (DaysFromCivil(2026, 11, 23) * 86400 + 9 * 3600) * kMicrosPerSecond);
  EXPECT_TRUE(m.message.starts_with("<8r1pu4bh> IMAP Error"));
  auto pack = LoadShipped();
  ASSERT_NE(pack, nullptr);
  Event ev;
  ASSERT_TRUE(pack->Parse(m, &ev));
  EXPECT_EQ(ev.client_ip.ToString(), "203.0.113.9");
  EXPECT_FALSE(ParseRoundcubeFileLine("Nov 23 10:00:00 host prog: x", &m));
  EXPECT_FALSE(ParseRoundcubeFileLine("[23-Foo-2026 10:00:00 +0100]: x", &m));
}

// trusted_proxies: forwarding headers name the client only behind a configured proxy.
TEST(ParserPackTest, ForwardingHeadersCountOnlyFromTrustedProxies) {
  ParserPackOptions options;
  options.trusted_proxies.clear();
  IpPrefix proxies;
  ASSERT_TRUE(IpPrefix::Parse("192.0.2.0/28", &proxies));
  options.trusted_proxies.push_back(proxies);
  std::vector<Diagnostic> diags;
  auto loaded = ParserPack::Load({kParsers}, &diags, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const auto& pack = *loaded;
  auto client_of = [&](const std::string& from) {
    const std::string line = "IMAP Error: Login failed for bob against localhost from " + from +
                             ". AUTHENTICATE PLAIN: Authentication failed. in /r/rcube_imap.php "
                             "on line 205 (POST /?_task=login&_action=login)";
    Event ev;
    EXPECT_TRUE(pack->Parse(SyslogLine("roundcube", line), &ev)) << line;
    return ev.client_ip.valid() ? ev.client_ip.ToString() : std::string("none");
  };
  // The proxy appended the client: the right-most entry that is not a proxy of ours.
  EXPECT_EQ(client_of("192.0.2.10 (X-Forwarded-For: 6.6.6.6, 203.0.113.5)"), "203.0.113.5");
  EXPECT_EQ(client_of("192.0.2.10 (X-Forwarded-For: 203.0.113.5, 192.0.2.11)"), "203.0.113.5");
  EXPECT_EQ(client_of("192.0.2.10 (X-Real-IP: 203.0.113.6)"), "203.0.113.6");
  // Forged headers from an untrusted address: the connecting address counts.
  EXPECT_EQ(client_of("198.51.100.9 (X-Forwarded-For: 203.0.113.5)"), "198.51.100.9");
  EXPECT_EQ(client_of("198.51.100.9 (X-Real-IP: 192.0.2.10,X-Forwarded-For: 192.0.2.10)"),
            "198.51.100.9");
  // Loopback is no longer trusted once the list is configured without it.
  EXPECT_EQ(client_of("127.0.0.1 (X-Forwarded-For: 203.0.113.5)"), "127.0.0.1");
  // A trusted proxy whose headers name nobody but proxies: no address, never the proxy's.
  EXPECT_EQ(client_of("192.0.2.10 (X-Forwarded-For: 192.0.2.11)"), "none");
  // Without headers a proxy is just the peer.
  EXPECT_EQ(client_of("192.0.2.10"), "192.0.2.10");
}

// --- loader diagnostics ----------------------------------------------------------------------

class ParserPackLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mxward_parser_pack_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<Diagnostic> LoadBad(const std::string& toml) {
    std::ofstream(dir_ / "bad.toml") << toml;
    std::vector<Diagnostic> diags;
    auto pack = ParserPack::Load({dir_.string()}, &diags);
    EXPECT_FALSE(pack.ok());
    EXPECT_EQ(pack.status().code(), Status::Code::kInvalidArgument);
    EXPECT_FALSE(diags.empty());
    return diags;
  }

  fs::path dir_;
};

constexpr const char* kHeader =
    "[parser]\n"
    "name = \"x\"\n"
    "programs = [\"x\"]\n";

TEST_F(ParserPackLoadTest, BadRegexReportsRe2ErrorWithLocation) {
  auto d = LoadBad(std::string(kHeader) +
                   "[[pattern]]\n"
                   "name = \"p\"\n"
                   "event = \"auth_failure\"\n"
                   "regex = '^foo (bar'\n");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].file, (dir_ / "bad.toml").string());
  EXPECT_EQ(d[0].line, 7);
  EXPECT_EQ(d[0].column, 9);
  EXPECT_NE(d[0].message.find("missing )"), std::string::npos) << d[0].message;
}

TEST_F(ParserPackLoadTest, UnanchoredRegexIsRejected) {
  auto d = LoadBad(
      std::string(kHeader) +
      "[[pattern]]\nname = \"p\"\nevent = \"auth_failure\"\nregex = 'from (?P<client_ip>\\S+)'\n");
  EXPECT_NE(d[0].message.find("anchored"), std::string::npos) << d[0].message;
}

TEST_F(ParserPackLoadTest, UnknownCaptureEventAndKey) {
  auto d = LoadBad(std::string(kHeader) +
                   "[[pattern]]\nname = \"p\"\nevent = \"auth_failure\"\n"
                   "regex = '^(?P<ip>\\S+)'\n"
                   "[[pattern]]\nname = \"q\"\nevent = \"brute_force\"\nregex = '^a'\n"
                   "[[pattern]]\nname = \"r\"\nevent = \"none\"\nregex = '^a'\nwindw = 3\n");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_NE(d[0].message.find("capture 'ip' is not a field"), std::string::npos) << d[0].message;
  EXPECT_NE(d[1].message.find("unknown event type 'brute_force'"), std::string::npos);
  EXPECT_EQ(d[1].line, 10);
  EXPECT_NE(d[2].message.find("unknown key 'windw'"), std::string::npos);
  EXPECT_EQ(d[2].line, 16);
}

TEST_F(ParserPackLoadTest, TomlSyntaxErrorHasLocation) {
  auto d = LoadBad("[parser]\nname = \"x\nprograms = []\n");
  EXPECT_EQ(d[0].line, 2);
  EXPECT_GT(d[0].column, 0);
}

TEST_F(ParserPackLoadTest, MissingDirectoryAndDuplicateParser) {
  std::ofstream(dir_ / "a.toml") << kHeader
                                 << "[[pattern]]\nname=\"p\"\nevent=\"none\"\nregex='^a'\n";
  std::ofstream(dir_ / "b.toml") << kHeader
                                 << "[[pattern]]\nname=\"p\"\nevent=\"none\"\nregex='^a'\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string(), (dir_ / "nope").string()}, &diags);
  ASSERT_FALSE(pack.ok());
  ASSERT_EQ(diags.size(), 2u);
  EXPECT_NE(diags[0].message.find("no such parser file"), std::string::npos);
  EXPECT_NE(diags[1].message.find("defined twice"), std::string::npos);
  EXPECT_EQ(diags[1].file, (dir_ / "b.toml").string());
}

TEST_F(ParserPackLoadTest, HeldNeedsSettledByAndOnlyHeldHasIt) {
  auto d = LoadBad(std::string(kHeader) +
                   "[[pattern]]\nname = \"p\"\nevent = \"auth_failure\"\nfold = \"held\"\n"
                   "regex = '^a'\n"
                   "[[pattern]]\nname = \"q\"\nevent = \"auth_failure\"\n"
                   "settled_by = [\"x\"]\nregex = '^b'\n"
                   "[[pattern]]\nname = \"r\"\nevent = \"auth_failure\"\nfold = \"later\"\n"
                   "regex = '^c'\n");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_NE(d[0].message.find("fold = \"held\" needs 'settled_by'"), std::string::npos)
      << d[0].message;
  EXPECT_NE(d[1].message.find("'settled_by' goes with fold = \"held\""), std::string::npos)
      << d[1].message;
  EXPECT_NE(d[2].message.find("unknown fold 'later'"), std::string::npos) << d[2].message;
}

// drops_held reads how many logins succeeded from the pattern's weight field; without one (or on
// a pattern that is itself folded) it is refused.
TEST_F(ParserPackLoadTest, DropsHeldNeedsAWeightAndNoFold) {
  auto d = LoadBad(std::string(kHeader) +
                   "[[pattern]]\nname = \"p\"\nevent = \"none\"\ndrops_held = true\n"
                   "regex = '^a (?P<client_ip>\\S+)$'\n"
                   "[[pattern]]\nname = \"q\"\nevent = \"auth_failure\"\nfold = \"superseded\"\n"
                   "weight = \"attempts\"\ndrops_held = true\n"
                   "regex = '^b (?P<client_ip>\\S+) (?P<attempts>[0-9]+)$'\n");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_NE(d[0].message.find("drops_held needs 'weight'"), std::string::npos) << d[0].message;
  EXPECT_NE(d[1].message.find("drops_held needs 'weight'"), std::string::npos) << d[1].message;
}

// settled_by names parsers: every auth_failure pattern of those parsers settles held lines.
TEST_F(ParserPackLoadTest, SettledByMarksTheNamedParsersAuthFailures) {
  std::ofstream(dir_ / "a.toml")
      << "[parser]\nname = \"a\"\nprograms = [\"a\"]\n"
         "[[pattern]]\nname = \"held\"\nevent = \"auth_failure\"\nfold = \"held\"\n"
         "settled_by = [\"a\", \"b\", \"absent\"]\nregex = '^h (?P<client_ip>\\S+)$'\n"
         "[[pattern]]\nname = \"login\"\nevent = \"auth_failure\"\n"
         "regex = '^l (?P<client_ip>\\S+)$'\n"
         "[[pattern]]\nname = \"ok\"\nevent = \"auth_success\"\n"
         "regex = '^s (?P<client_ip>\\S+)$'\n";
  std::ofstream(dir_ / "b.toml") << "[parser]\nname = \"b\"\nprograms = [\"b\"]\n"
                                    "[[pattern]]\nname = \"sasl\"\nevent = \"auth_failure\"\n"
                                    "regex = '^f (?P<client_ip>\\S+)$'\n";
  std::ofstream(dir_ / "c.toml") << "[parser]\nname = \"c\"\nprograms = [\"c\"]\n"
                                    "[[pattern]]\nname = \"other\"\nevent = \"auth_failure\"\n"
                                    "regex = '^f (?P<client_ip>\\S+)$'\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(pack.ok()) << (diags.empty() ? "" : diags[0].ToString());
  auto settles = [&](std::string_view program, std::string_view message) {
    Event ev;
    const PatternInfo* info = nullptr;
    EXPECT_TRUE((*pack)->Match(SyslogLine(program, message), &ev, &info)) << message;
    return info != nullptr && info->settles_held;
  };
  EXPECT_FALSE(settles("a", "h 192.0.2.1"));  // the held line itself
  EXPECT_TRUE(settles("a", "l 192.0.2.1"));
  EXPECT_FALSE(settles("a", "s 192.0.2.1"));  // not a failure
  EXPECT_TRUE(settles("b", "f 192.0.2.1"));
  EXPECT_FALSE(settles("c", "f 192.0.2.1"));  // not named
}

TEST_F(ParserPackLoadTest, WeightConstantsAndGlobRoutes) {
  std::ofstream(dir_ / "w.toml")
      << "[parser]\nname = \"w\"\nprograms = [\"svc-*/login\", \"exact\"]\n"
         "[[pattern]]\nname = \"p\"\nevent = \"auth_failure\"\nweight = \"attempts\"\n"
         "fields = { service = \"imap\" }\n"
         "regex = '^fail (?P<attempts>[0-9]+) from (?P<client_ip>\\S+)$'\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(pack.ok()) << (diags.empty() ? "" : diags[0].ToString());
  Event ev;
  ASSERT_TRUE((*pack)->Parse(SyslogLine("svc-a/login", "fail 7 from ::ffff:192.0.2.1"), &ev));
  EXPECT_EQ(ev.weight, 7u);
  EXPECT_EQ(ev.get(Field::kService), "imap");
  EXPECT_EQ(ev.client_ip.ToString(), "192.0.2.1");
  EXPECT_TRUE((*pack)->Parse(SyslogLine("exact", "fail 1 from 2001:db8::1"), &ev));
  EXPECT_FALSE((*pack)->Parse(SyslogLine("svc-a/other", "fail 1 from 192.0.2.1"), &ev));
  EXPECT_FALSE((*pack)->Parse(SyslogLine("exact2", "fail 1 from 192.0.2.1"), &ev));
  // Unparseable address: the event stays, the address does not.
  ASSERT_TRUE((*pack)->Parse(SyslogLine("exact", "fail 1 from unknown"), &ev));
  EXPECT_FALSE(ev.client_ip.valid());
  EXPECT_FALSE(ev.has(Field::kClientIp));
}

// Candidates are narrowed by the message's first byte before any pattern runs; what matches must
// still be the first pattern in file order that fits, whatever the first pattern starts with (a
// literal, a field, a case-insensitive word, an optional group, a repetition, anything).
TEST_F(ParserPackLoadTest, FirstByteDispatchKeepsFileOrder) {
  std::ofstream(dir_ / "f.toml")
      << "[parser]\nname = \"f\"\nprograms = [\"f\"]\n"
         "[[pattern]]\nname = \"qid\"\nevent = \"auth_failure\"\n"
         "template = \"{queue_id:qid}: reject {client_ip:ip}\"\n"
         "[[pattern]]\nname = \"noqueue\"\nevent = \"none\"\nliteral = \": \"\n"
         "regex = '^(?:NOQUEUE|[0-9A-Z]{5,20}): (?P<reason>.*)$'\n"
         "[[pattern]]\nname = \"warning\"\nevent = \"auth_failure\"\n"
         "regex = '^(?i:warning): (?P<client_ip>\\S+) failed$'\n"
         "[[pattern]]\nname = \"optional\"\nevent = \"auth_failure\"\n"
         "regex = '^(?:a|b)?tail (?P<client_ip>\\S+)$'\n"
         "[[pattern]]\nname = \"repeat\"\nevent = \"auth_failure\"\n"
         "regex = '^x*y (?P<client_ip>\\S+)$'\n"
         "[[pattern]]\nname = \"empty\"\nevent = \"none\"\nregex = '^$'\n"
         "[[pattern]]\nname = \"rest\"\nevent = \"none\"\ntemplate = \"{_:rest}\"\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(pack.ok()) << (diags.empty() ? "" : diags[0].ToString());
  auto winner = [&](std::string_view message) -> std::string {
    Event ev;
    const PatternInfo* info = nullptr;
    if (!(*pack)->Match(SyslogLine("f", message), &ev, &info)) return "(none)";
    return info->name + (ev.client_ip.valid() ? " " + ev.client_ip.ToString() : "");
  };
  EXPECT_EQ(winner("ABCDE12345: reject 192.0.2.1"), "qid 192.0.2.1");
  EXPECT_EQ(winner("ABCDE12345: reject later"), "noqueue");
  EXPECT_EQ(winner("NOQUEUE: reject 192.0.2.1"), "qid 192.0.2.1");  // NOQUEUE is 7 letters
  EXPECT_EQ(winner("NOQUEUE: reject later"), "noqueue");
  EXPECT_EQ(winner("warning: 192.0.2.2 failed"), "warning 192.0.2.2");
  EXPECT_EQ(winner("Warning: 192.0.2.3 failed"), "warning 192.0.2.3");
  EXPECT_EQ(winner("WARNING: 192.0.2.3 failed"), "noqueue");  // [0-9A-Z]{5,20}: comes first
  EXPECT_EQ(winner("wARNING: 192.0.2.4 failed"), "warning 192.0.2.4");
  EXPECT_EQ(winner("tail 192.0.2.5"), "optional 192.0.2.5");
  EXPECT_EQ(winner("btail 192.0.2.6"), "optional 192.0.2.6");
  EXPECT_EQ(winner("y 192.0.2.7"), "repeat 192.0.2.7");
  EXPECT_EQ(winner("xxxy 192.0.2.8"), "repeat 192.0.2.8");
  EXPECT_EQ(winner(""), "empty");
  EXPECT_EQ(winner("ctail 192.0.2.9"), "rest");
  EXPECT_EQ(winner("\xff\x01"), "rest");
}

// A pattern set's RE2::Set is compiled when a line first needs it: threads that all start on a
// fresh pack, each needing every set at once, get the events one thread gets.
TEST_F(ParserPackLoadTest, RegexSetsCompiledOnFirstUseAgreeAcrossThreads) {
  std::ofstream(dir_ / "l.toml")
      << "[parser]\nname = \"l\"\nprograms = [\"l/*\"]\n"
         "[[pattern]]\nname = \"a\"\nevent = \"auth_failure\"\nprocesses = [\"one\"]\n"
         "regex = '^bad login from (?P<client_ip>[0-9.]+)$'\n"
         "[[pattern]]\nname = \"b\"\nevent = \"auth_failure\"\nprocesses = [\"two\"]\n"
         "regex = '^(?:denied|refused) (?P<client_ip>[0-9.]+) for (?P<user>\\S+)$'\n"
         "[[pattern]]\nname = \"c\"\nevent = \"none\"\n"
         "regex = '^[a-z]+ (?P<client_ip>[0-9.]+) ok$'\n";
  const std::vector<std::pair<std::string, std::string>> lines = {
      {"l/one", "bad login from 192.0.2.1"},   {"l/two", "refused 192.0.2.2 for bob"},
      {"l/two", "denied 192.0.2.3 for eve"},   {"l/three", "fine 192.0.2.4 ok"},
      {"l/one", "fine 192.0.2.5 ok"},          {"l/one", "refused 192.0.2.6 for bob"},
      {"l/three", "bad login from 192.0.2.7"}, {"l/two", "nothing"}};
  auto run = [&](const ParserPack& pack) {
    std::string out;
    for (const auto& [program, message] : lines) {
      Event ev;
      const PatternInfo* info = nullptr;
      if (!pack.Match(SyslogLine(program, message), &ev, &info)) {
        out += "(none)\n";
        continue;
      }
      out += info->name + " " + ev.client_ip.ToString() + " " + std::string(ev.get(Field::kUser)) +
             "\n";
    }
    return out;
  };
  std::vector<Diagnostic> diags;
  auto once = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(once.ok()) << (diags.empty() ? "" : diags[0].ToString());
  const std::string want = run(**once);
  EXPECT_EQ(want,
            "a 192.0.2.1 \nb 192.0.2.2 bob\nb 192.0.2.3 eve\nc 192.0.2.4 \nc 192.0.2.5 \n"
            "(none)\n(none)\n(none)\n");
  for (int round = 0; round < 20; ++round) {
    auto pack = ParserPack::Load({dir_.string()}, &diags);
    ASSERT_TRUE(pack.ok());
    std::vector<std::string> got(4);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < got.size(); ++t) {
      threads.emplace_back([&, t] { got[t] = run(**pack); });
    }
    for (auto& th : threads) th.join();
    for (const auto& g : got) ASSERT_EQ(g, want) << "round " << round;
  }
}

// A set too large to be sure it compiles is compiled at load, so that its failure stays a load
// error: 30 patterns of ~40,000 instructions each are past RE2::Set's 64 MiB.
TEST_F(ParserPackLoadTest, RegexSetTooLargeIsALoadError) {
  std::string toml = "[parser]\nname = \"big\"\nprograms = [\"big\"]\n";
  for (int i = 0; i < 30; ++i) {
    std::string re = "^p" + std::to_string(i);
    for (int k = 0; k < 10; ++k) re += "(?:[a-f]x[0-9]y){1000}";
    toml += "[[pattern]]\nname = \"p" + std::to_string(i) +
            "\"\nevent = \"auth_failure\"\nregex = '" + re + "'\n";
  }
  const auto d = LoadBad(toml);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].message.find("patterns too large to compile"), std::string::npos) << d[0].message;
}

// Byte sets after a template class hold a capture to what a regex's classes accept: one byte
// per leading set, then the count of the last; "greedy" keeps its search, the sets only check.
TEST_F(ParserPackLoadTest, TemplateByteSetsBoundACapture) {
  std::ofstream(dir_ / "s.toml")
      << "[parser]\nname = \"s\"\nprograms = [\"s\"]\n"
         "[[pattern]]\nname = \"sets\"\nevent = \"auth_failure\"\n"
         "template = '''id {_:[a-z][a-z0-9_-]*}({user:greedy[^(\\n]*}) n={_:[^\\s]{2,3}}} ip "
         "{client_ip:ip}'''\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(pack.ok()) << (diags.empty() ? "" : diags[0].ToString());
  auto user = [&](std::string_view message) -> std::string {
    Event ev;
    if (!(*pack)->Parse(SyslogLine("s", message), &ev)) return "(none)";
    return "[" + std::string(ev.get(Field::kUser)) + "]";
  };
  EXPECT_EQ(user("id sql(bob) n=ab} ip 192.0.2.1"), "[bob]");
  EXPECT_EQ(user("id s(a) b) n=abc} ip 192.0.2.1"), "[a) b]");  // greedy: the last ") n="
  EXPECT_EQ(user("id s() n=ab} ip 192.0.2.1"), "[]");
  EXPECT_EQ(user("id 1sql(bob) n=ab} ip 192.0.2.1"), "(none)");  // [a-z] first
  EXPECT_EQ(user("id sQl(bob) n=ab} ip 192.0.2.1"), "(none)");
  EXPECT_EQ(user("id s(a(b) n=ab} ip 192.0.2.1"), "(none)");  // '(' is not in the set
  EXPECT_EQ(user("id s(a\nb) n=ab} ip 192.0.2.1"), "(none)");
  EXPECT_EQ(user("id s(b) n=a} ip 192.0.2.1"), "(none)");  // {2,3}
  EXPECT_EQ(user("id s(b) n=abcd} ip 192.0.2.1"), "(none)");
  EXPECT_EQ(user("id s(b) n=a\tb} ip 192.0.2.1"), "(none)");  // \s

  for (const char* bad : {"{_:[a-z}", "{_:[a-z]{3,1}}", "{_:[\\q]}", "{_:[a-z]x}", "{_:[z-a]}"}) {
    SCOPED_TRACE(bad);
    auto d = LoadBad(std::string(kHeader) + "[[pattern]]\nname = \"p\"\nevent = \"none\"\n" +
                     "template = '''x " + bad + " y'''\n");
    ASSERT_FALSE(d.empty());
    EXPECT_NE(d[0].message.find("bad template"), std::string::npos) << d[0].ToString();
  }
}

// A group that is one bounded repetition is captured with the bound lifted when RE2's program
// is large (docs/benchmarks.md); the captures must be those of the regex as written, also when
// the unbounded group would take more than the bound allows.
TEST_F(ParserPackLoadTest, BoundedGroupCapturesAsWritten) {
  std::ofstream(dir_ / "b.toml")
      << "[parser]\nname = \"b\"\nprograms = [\"b\"]\n"
         "[[pattern]]\nname = \"bounded\"\nevent = \"auth_failure\"\n"
         // (?:x{1,300})? pads the program past 512 instructions, as a long bounded class does.
         "regex = '^(?:x{1,300})?u (?P<user>[a-z]{1,3})(?P<sasl_user>[a-z]*) "
         "(?P<client_ip>\\S+)$'\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(pack.ok()) << (diags.empty() ? "" : diags[0].ToString());
  Event ev;
  ASSERT_TRUE((*pack)->Parse(SyslogLine("b", "u ab 192.0.2.1"), &ev));
  EXPECT_EQ(ev.get(Field::kUser), "ab");
  EXPECT_EQ(ev.get(Field::kSaslUser), "");
  ASSERT_TRUE((*pack)->Parse(SyslogLine("b", "xxxu abcdefg 192.0.2.2"), &ev));
  EXPECT_EQ(ev.get(Field::kUser), "abc");  // the bound holds: the rest goes to the next group
  EXPECT_EQ(ev.get(Field::kSaslUser), "defg");
  EXPECT_EQ(ev.client_ip.ToString(), "192.0.2.2");
  EXPECT_FALSE((*pack)->Parse(SyslogLine("b", "u 192.0.2.3"), &ev));
}

// Template fields end either by a scan of the bytes their class takes (when the next literal
// starts with a byte the class never holds) or by a search for the next literal (its first
// occurrence); both must read a line as the search alone did. And client_ip's dotted quads are
// read without the C library where they can be, to the same address inet_pton gives.
TEST_F(ParserPackLoadTest, TemplateFieldsEndWhereTheNextLiteralFirstOccurs) {
  std::ofstream(dir_ / "t.toml")
      << "[parser]\nname = \"t\"\nprograms = [\"t\"]\n"
         "[[pattern]]\nname = \"fields\"\nevent = \"auth_failure\"\n"
         "template = \"q {queue_id:qid}: d {size:digits} h {client_host:host}[{client_ip:ip}] w "
         "{user:word}, t {reason:text} auth={_:word} end\"\n"
         "[[pattern]]\nname = \"address\"\nevent = \"auth_failure\"\n"
         "template = \"a {client_ip:text} end\"\n";
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({dir_.string()}, &diags);
  ASSERT_TRUE(pack.ok()) << (diags.empty() ? "" : diags[0].ToString());
  auto read = [&](std::string_view message) -> std::string {
    Event ev;
    if (!(*pack)->Parse(SyslogLine("t", message), &ev)) return "(none)";
    return std::string(ev.get(Field::kQueueId)) + "|" + std::string(ev.get(Field::kSize)) + "|" +
           std::string(ev.get(Field::kClientHost)) + "|" + ev.client_ip.ToString() + "|" +
           std::string(ev.get(Field::kUser)) + "|" + std::string(ev.get(Field::kReason));
  };
  EXPECT_EQ(read("q ABCDE: d 12 h mx[192.0.2.1] w bob, t a auth b auth=x end"),
            "ABCDE|12|mx|192.0.2.1|bob|a auth b");
  // The first " auth=" ends the text, so the rest must fit `{_:word} end`.
  EXPECT_EQ(read("q ABCDE: d 12 h mx[192.0.2.1] w bob, t a auth=1 auth=x end"), "(none)");
  // A word holds ',': it ends at the first ", t ".
  // ... and only there: "b,o, t" is not a word.
  EXPECT_EQ(read("q ABCDE: d 12 h mx[192.0.2.1] w b,o, t, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDE: d 12 h mx[192.0.2.1] w b,o, t x auth=y end"),
            "ABCDE|12|mx|192.0.2.1|b,o|x");
  // Queue ids of 5 to 20 letters and digits, at most 18 digits.
  EXPECT_EQ(read("q ABCD: d 1 h mx[192.0.2.1] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDEFGHIJ0123456789: d 1 h mx[192.0.2.1] w b, t x auth=y end"),
            "ABCDEFGHIJ0123456789|1|mx|192.0.2.1|b|x");
  EXPECT_EQ(read("q ABCDEFGHIJ01234567890: d 1 h mx[192.0.2.1] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABC-E: d 1 h mx[192.0.2.1] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDE: d 123456789012345678 h mx[192.0.2.1] w b, t x auth=y end"),
            "ABCDE|123456789012345678|mx|192.0.2.1|b|x");
  EXPECT_EQ(read("q ABCDE: d 1234567890123456789 h mx[192.0.2.1] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDE: d h mx[192.0.2.1] w b, t x auth=y end"), "(none)");
  // A host ends at '[', an address at ']'; neither holds the other's bytes.
  EXPECT_EQ(read("q ABCDE: d 1 h m[x[192.0.2.1] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDE: d 1 h [192.0.2.1] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDE: d 1 h mx[192.0.2.1x] w b, t x auth=y end"), "(none)");
  EXPECT_EQ(read("q ABCDE: d 1 h mx[2001:db8::1] w b, t x auth=y end"),
            "ABCDE|1|mx|2001:db8::1|b|x");
  EXPECT_EQ(read("q ABCDE: d 1 h mx[192.0.2.1] w b end, t x auth=y end"), "(none)");

  for (const char* text :
       {"192.0.2.1", "0.0.0.0", "255.255.255.255", "10.0.0.10", "256.1.1.1", "1.2.3", "1.2.3.4.5",
        "01.2.3.4", "1.2.3.04", "0.00.0.0", "1.2.3.4.", ".1.2.3.4", "1..2.3", "1.2.3.4x",
        "1.2.3.4%eth0", "::ffff:192.0.2.1", "2001:db8::1", "1234.1.1.1", "1.2.3.2555"}) {
    SCOPED_TRACE(text);
    IpAddress expected;
    const bool valid = IpAddress::Parse(text, &expected);
    const std::string line = std::string("a ") + text + " end";
    Event ev;
    ASSERT_TRUE((*pack)->Parse(SyslogLine("t", line), &ev));
    EXPECT_EQ(ev.client_ip.valid(), valid);
    EXPECT_EQ(ev.client_ip, valid ? expected : IpAddress());
    EXPECT_EQ(ev.get(Field::kClientIp), valid ? std::string_view(text) : std::string_view());
  }
}

}  // namespace
}  // namespace mxward
