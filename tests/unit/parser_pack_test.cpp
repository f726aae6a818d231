// ParserPack: the shipped parsers against annotated sample lines (tests/data/parsers/*.jsonl),
// and the loader's diagnostics for bad parser files.
#include "mxward/parser_pack.h"
#include "support/syslog_line.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

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

}  // namespace
}  // namespace mxward
