// LineShape / RedactLine: what `mxward explain --unknown` prints must not carry the addresses and
// user names of the lines it groups, and lines differing only in those must share a shape.
#include "engine/cli/line_shape.h"

#include <gtest/gtest.h>

namespace mxward::cli {
namespace {

TEST(LineShapeTest, RedactsAddressesUsersAndMailAddresses) {
  const std::string r = RedactLine(
      "warning: mail.example.net[192.0.2.7]:55729: SASL FOO authentication odd, "
      "sasl_username=alice@example.org");
  EXPECT_EQ(r.find("192.0.2.7"), std::string::npos) << r;
  EXPECT_EQ(r.find("mail.example.net"), std::string::npos) << r;
  EXPECT_EQ(r.find("alice"), std::string::npos) << r;
  EXPECT_NE(r.find("<host>[<ip>]"), std::string::npos) << r;

  const std::string d = RedactLine(
      "imap-login: Info: Disconnected: Something new: user=<bob>, method=PLAIN, "
      "rip=2001:db8::7, lip=192.0.2.1, session=<AbCdEf123>");
  EXPECT_EQ(d.find("bob"), std::string::npos) << d;
  EXPECT_EQ(d.find("2001:db8::7"), std::string::npos) << d;
  EXPECT_EQ(d.find("AbCdEf123"), std::string::npos) << d;

  const std::string p = RedactLine("auth-worker(42): pam(carol,198.51.100.3,<x>): odd result");
  EXPECT_EQ(p.find("carol"), std::string::npos) << p;
  EXPECT_NE(p.find("pam(<user>,<ip>"), std::string::npos) << p;

  const std::string rc =
      RedactLine("<8r1pu4bh> Odd login for dave from 203.0.113.9 in session 3f9a0c1b");
  EXPECT_EQ(rc.find("dave"), std::string::npos) << rc;
  EXPECT_EQ(rc.find("203.0.113.9"), std::string::npos) << rc;

  const std::string pr = RedactLine(
      "pam_unix(dovecot:auth): authentication failure; logname= "
      "uid=0 euid=0 tty=dovecot ruser=erin rhost=192.0.2.4 user=erin");
  EXPECT_EQ(pr.find("erin"), std::string::npos) << pr;
}

TEST(LineShapeTest, LinesThatDifferOnlyInDataShareAShape) {
  EXPECT_EQ(LineShape("4Xz1Ab2CdEz: odd thing from unknown[192.0.2.7]: 42 tries by <a@b.example>"),
            LineShape("ABCDEF0123: odd thing from mx.example.org[2001:db8::1]: 7 tries by <c@d>"));
  EXPECT_EQ(LineShape("4Xz1Ab2CdEz: odd thing from unknown[192.0.2.7]: 42 tries"),
            "<qid>: odd thing from <host>[<ip>]: <n> tries");
  // NOQUEUE is Postfix's word, not a queue id; different wording is a different shape.
  EXPECT_EQ(LineShape("NOQUEUE: odd from unknown[192.0.2.7]"), "NOQUEUE: odd from <host>[<ip>]");
  EXPECT_NE(LineShape("lost something after CONNECT from unknown[192.0.2.7]"),
            LineShape("lost something after EHLO from unknown[192.0.2.7]"));
}

}  // namespace
}  // namespace mxward::cli
