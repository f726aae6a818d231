// `mxward explain` through the real binary: JSON lines in input order with the documented fields,
// folding visible, --unmatched, --parsers, and file:line:col diagnostics for a broken parser.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";

const char* kLog =
    "Nov 23 09:00:00 mx1 postfix/submission/smtpd[4101]: warning: unknown[203.0.113.7]: SASL "
    "LOGIN authentication failed: UGFzc3dvcmQ6\n"
    "Nov 23 09:00:01 mx1 postfix/smtpd[4606]: table hash:/etc/postfix/relay has changed -- "
    "restarting\n"
    "Nov 23 09:00:02 mx1 dovecot: auth-worker(24544): pam(toto,192.0.2.10): unknown user\n"
    "Nov 23 09:00:03 mx1 dovecot: imap-login: Disconnected (auth failed, 2 attempts in 6 secs): "
    "user=<toto>, method=PLAIN, rip=::ffff:192.0.2.10, lip=192.0.2.1, TLS, session=<a>\n"
    "this is not syslog\n"
    "[23-Nov-2026 10:00:00 +0100]: <8r1pu4bh> IMAP Error: Login failed for admin from 6.6.6.6 "
    "against localhost from 203.0.113.9. AUTHENTICATE PLAIN: Authentication failed. in "
    "/r/rcube_imap.php on line 1 (POST /)\n"
    "Nov 23 09:00:04 mx1 postfix/qmgr[1200]: ABCDEF0000: from=<news@example.org>, size=2345, "
    "nrcpt=1 (queue active)\n";

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line));
  return v;
}

class ExplainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_ = dir_.file("mail.log");
    std::ofstream(log_) << kLog;
  }
  TempDir dir_;
  std::string log_;
};

TEST_F(ExplainTest, JsonLinesOnePerInputLineInOrder) {
  auto r =
      RunCommand({kBinary, "explain", "--jsonl", log_, "--config", "/dev/null", "--rules", kRules});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = JsonLines(r.out);
  ASSERT_EQ(j.size(), 7u) << r.out;
  for (std::size_t i = 0; i < j.size(); ++i) EXPECT_EQ(j[i].at("line_no"), i + 1);

  EXPECT_EQ(j[0].at("event"), "auth_failure");
  EXPECT_EQ(j[0].at("matched"), true);
  EXPECT_EQ(j[0].at("ip"), "203.0.113.7");
  EXPECT_EQ(j[0].at("service"), "submission");
  EXPECT_EQ(j[0].at("parser"), "postfix");
  // Which shipped playbooks count it (names, in order).
  const auto counting = j[0].at("playbooks").get<std::vector<std::string>>();
  EXPECT_NE(std::find(counting.begin(), counting.end(), "postfix-sasl"), counting.end())
      << j[0].dump();
  EXPECT_TRUE(std::is_sorted(counting.begin(), counting.end()));
  EXPECT_TRUE(j[1].at("playbooks").empty());

  EXPECT_TRUE(j[1].at("event").is_null());
  EXPECT_EQ(j[1].at("matched"), false);
  EXPECT_EQ(j[1].at("outcome"), "unmatched");

  EXPECT_EQ(j[2].at("outcome"), "held");  // passdb line: held until the login line counts it
  EXPECT_EQ(j[2].at("matched"), false);
  EXPECT_TRUE(j[2].at("event").is_null());

  EXPECT_EQ(j[3].at("event"), "auth_failure");
  EXPECT_EQ(j[3].at("ip"), "192.0.2.10");  // ::ffff: normalised
  EXPECT_EQ(j[3].at("user"), "toto");
  EXPECT_EQ(j[3].at("weight"), 2);
  EXPECT_EQ(j[3].at("matched"), true);

  EXPECT_EQ(j[4].at("outcome"), "malformed");
  EXPECT_TRUE(j[4].at("ip").is_null());

  EXPECT_EQ(j[5].at("ip"), "203.0.113.9");  // not the 6.6.6.6 in the user name
  EXPECT_EQ(j[5].at("service"), "webmail");

  EXPECT_EQ(j[6].at("event"), "message_queued");
  EXPECT_EQ(j[6].at("matched"), false);
  EXPECT_EQ(j[6].at("sender_domain"), "example.org");
}

// A passdb line whose login line never comes is counted at the end of the input, as an extra
// object with outcome "released" (its own line stays "held").
TEST_F(ExplainTest, HeldLineWithoutItsLoginLineIsReleasedAtTheEnd) {
  std::ofstream(log_) << "Nov 23 09:00:02 mx1 dovecot: auth: passwd-file(eve,198.51.100.3): "
                         "unknown user\n";
  auto r =
      RunCommand({kBinary, "explain", "--jsonl", log_, "--config", "/dev/null", "--rules", kRules});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = JsonLines(r.out);
  ASSERT_EQ(j.size(), 2u) << r.out;
  EXPECT_EQ(j[0].at("outcome"), "held");
  EXPECT_EQ(j[1].at("outcome"), "released");
  EXPECT_EQ(j[1].at("event"), "auth_failure");
  EXPECT_EQ(j[1].at("ip"), "198.51.100.3");
  EXPECT_EQ(j[1].at("service"), "auth");
  EXPECT_EQ(j[1].at("weight"), 1);
  EXPECT_EQ(j[1].at("matched"), true);
  EXPECT_NE(j[1].at("evidence").get<std::string>().find("passwd-file(eve"), std::string::npos);
}

TEST_F(ExplainTest, TextSummaryAndUnmatched) {
  auto r = RunCommand({kBinary, "explain", log_, "--config", "/dev/null", "--rules", kRules});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("postfix/sasl_auth_failed_fast -> auth_failure"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("[counted by "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("postfix-sasl"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Lines: 7 (not syslog: 1)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Unmatched per program:"), std::string::npos);
  EXPECT_NE(r.out.find("Time: "), std::string::npos);

  auto u = RunCommand(
      {kBinary, "explain", "--unmatched", "-", "--config", "/dev/null", "--rules", kRules}, kLog);
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_NE(u.out.find("table hash:/etc/postfix/relay has changed"), std::string::npos) << u.out;
  EXPECT_NE(u.out.find("this is not syslog"), std::string::npos);
  EXPECT_EQ(u.out.find("SASL LOGIN"), std::string::npos);
}

// --unknown: unrecognised lines of known programs, grouped by shape, redacted; lines of programs
// no parser knows and recognised lines are left out.
TEST_F(ExplainTest, UnknownGroupsUnrecognisedLinesByShapeWithoutTheirData) {
  const char* log =
      "Mar  3 10:00:00 mx1 postfix/smtpd[1]: warning: alice.example[192.0.2.7]: odd thing 42 "
      "from <alice@example.org>\n"
      "Mar  3 10:00:01 mx1 postfix/smtpd[1]: warning: bob.example[2001:db8::9]: odd thing 7 from "
      "<bob@example.org>\n"
      "Mar  3 10:00:02 mx1 dovecot: imap-login: Something new: user=<carol>, rip=198.51.100.4, "
      "lip=192.0.2.1\n"
      "Mar  3 10:00:03 mx1 dovecot: imap-login: Something new: user=<dave>, rip=198.51.100.5, "
      "lip=192.0.2.1\n"
      "Mar  3 10:00:04 mx1 sshd[9]: Failed password for erin from 203.0.113.1 port 22 ssh2\n"
      "Mar  3 10:00:05 mx1 postfix/smtpd[1]: warning: unknown[203.0.113.2]: SASL LOGIN "
      "authentication failed: x\n";
  auto r = RunCommand(
      {kBinary, "explain", "--unknown", "--jsonl", "-", "--config", "/dev/null", "--rules", kRules},
      log);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = JsonLines(r.out);
  ASSERT_EQ(j.size(), 2u) << r.out;  // two shapes, each seen twice
  EXPECT_EQ(j[0].at("count"), 2);
  EXPECT_EQ(j[1].at("count"), 2);
  std::set<std::string> programs = {j[0].at("program"), j[1].at("program")};
  EXPECT_EQ(programs, (std::set<std::string>{"postfix/smtpd", "dovecot"}));
  for (const char* secret : {"alice", "bob", "carol", "dave", "erin", "192.0.2.7", "2001:db8::9",
                             "198.51.100.4", "203.0.113", "sshd"}) {
    EXPECT_EQ(r.out.find(secret), std::string::npos) << secret << " in " << r.out;
  }
  EXPECT_NE(r.out.find("odd thing <n> from <*>"), std::string::npos) << r.out;
}

TEST_F(ExplainTest, BrokenParserDirectoryGivesLocatedErrors) {
  const std::string parsers = dir_.file("parsers");
  ASSERT_EQ(RunCommand({"mkdir", parsers}).exit_code, 0);
  std::ofstream(parsers + "/bad.toml") << "[parser]\nname = \"x\"\nprograms = [\"x\"]\n"
                                          "[[pattern]]\nname = \"p\"\nevent = \"auth_failure\"\n"
                                          "regex = '^foo (bar'\n";
  auto r = RunCommand(
      {kBinary, "explain", log_, "--parsers", parsers, "--config", "/dev/null", "--rules", kRules});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(parsers + "/bad.toml:7:9:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("missing )"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mxward
