#include "mxward/input_config.h"
#include "support/status_matchers.h"

#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mxward {
namespace {

Result<std::vector<InputSpec>> Parse(const std::string& toml, std::vector<Diagnostic>* diags) {
  Config c = Config::Defaults();
  c.source = "mxward.toml";
  c.store_path = "/var/lib/mxward/mxward.db";
  c.document = toml::parse(toml);
  return ParseInputSpecs(c, diags);
}

TEST(InputConfigTest, DefaultsAreUdpAndTcpOnLoopback5514) {
  setenv("MXWARD_DEFAULT_JOURNAL", "0", 1);  // as on a host with rsyslog
  std::vector<Diagnostic> d;
  auto r = Parse("", &d);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].Describe(), "udp 127.0.0.1:5514");
  EXPECT_EQ((*r)[1].Describe(), "tcp 127.0.0.1:5514");
}

TEST(InputConfigTest, EveryType) {
  std::vector<Diagnostic> d;
  auto r = Parse(R"(
[[input]]
type = "udp"
address = "[::1]:514"
receive_buffer = 33554432
[[input]]
type = "tcp"
address = "0.0.0.0:5514"
name = "rsyslog"
max_message_size = 131072
max_connections = 10
[[input]]
type = "unix-dgram"
path = "/run/mxward/log.sock"
mode = "0660"
owner = "root"
group = "adm"
[[input]]
type = "unix-stream"
path = "/run/mxward/stream.sock"
[[input]]
type = "file"
path = "/var/log/mail.log"
start_at = "beginning"
[[input]]
type = "file"
path = "/var/log/dovecot.log"
format = "dovecot-log"
)",
                 &d);
  ASSERT_TRUE(r.ok()) << (d.empty() ? r.status().message() : d[0].ToString());
  const auto& s = *r;
  ASSERT_EQ(s.size(), 6u);
  EXPECT_EQ(s[0].type, InputType::kUdp);
  EXPECT_EQ(s[0].host, "::1");
  EXPECT_EQ(s[0].port, 514);
  EXPECT_EQ(s[0].receive_buffer, 33554432);
  EXPECT_EQ(s[0].Describe(), "udp [::1]:514");
  EXPECT_EQ(s[1].name, "rsyslog");
  EXPECT_EQ(s[1].max_message_size, 131072u);
  EXPECT_EQ(s[1].max_connections, 10u);
  EXPECT_EQ(s[2].type, InputType::kUnixDgram);
  ASSERT_TRUE(s[2].mode.has_value());
  EXPECT_EQ(*s[2].mode, 0660u);
  EXPECT_EQ(s[2].owner, "root");
  EXPECT_EQ(s[2].group, "adm");
  EXPECT_EQ(s[3].type, InputType::kUnixStream);
  EXPECT_EQ(s[4].type, InputType::kFile);
  EXPECT_FALSE(s[4].start_at_end);
  EXPECT_EQ(s[4].state_file, "/var/lib/mxward/follow-var_log_mail.log.pos");
  EXPECT_EQ(s[4].name, "file:/var/log/mail.log");
  EXPECT_EQ(s[4].format, LogFormat::kSyslog);
  EXPECT_EQ(s[5].format, LogFormat::kDovecotLog);
}

// Each bad config gives one located diagnostic that says what is wrong.
struct BadCase {
  const char* toml;
  const char* expect;
  int line;
};

TEST(InputConfigTest, ErrorsAreLocatedAndActionable) {
  const BadCase cases[] = {
      {"[[input]]\ntype = \"tcp\"\nadress = \"127.0.0.1:1\"\n", "unknown key 'adress' in [[input]]",
       3},
      {"[[input]]\ntype = \"sctp\"\n", "unknown type 'sctp'", 2},
      {"[[input]]\naddress = \"127.0.0.1:1\"\n", "'type' is required", 1},
      {"[[input]]\ntype = \"tcp\"\naddress = \"mail.example.org:514\"\n", "not an IP address", 3},
      {"[[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:70000\"\n", "port must be", 3},
      {"[[input]]\ntype = \"udp\"\naddress = \"::1:514\"\n", "IPv6 in brackets", 3},
      {"[[input]]\ntype = \"file\"\n", "needs 'path'", 1},
      {"[[input]]\ntype = \"file\"\npath = \"mail.log\"\n", "must be absolute", 3},
      {"[[input]]\ntype = \"unix-dgram\"\npath = \"/run/x\"\nmode = \"rw\"\n", "octal", 4},
      {"[[input]]\ntype = \"tcp\"\npath = \"/run/x\"\n", "applies only to", 3},
      {"[[input]]\ntype = \"file\"\npath = \"/x\"\nstart_at = \"middle\"\n", "\"end\" or", 4},
      {"[[input]]\ntype = \"file\"\npath = \"/x\"\nformat = \"dovecot\"\n", "\"dovecot-log\"", 4},
      {"[[input]]\ntype = \"file\"\npath = \"/x\"\nformat = \"clamd\"\n", "\"clamd-log\"", 4},
      {"[[input]]\ntype = \"udp\"\nformat = \"dovecot-log\"\n", "applies only to file", 3},
      {"[[input]]\ntype = \"tcp\"\nmax_message_size = 1\n", "expected an integer from 64 to", 3},
      {"[[input]]\ntype = \"tcp\"\nname = \"has space\"\n", "printable", 3},
      {"[input]\ntype = \"tcp\"\n", "array of tables", 1},
      {"[[input]]\ntype = \"tcp\"\n[[input]]\ntype = \"tcp\"\n", "configured twice", 3},
  };
  for (const auto& c : cases) {
    std::vector<Diagnostic> d;
    auto r = Parse(c.toml, &d);
    ASSERT_FALSE(r.ok()) << c.toml;
    ASSERT_FALSE(d.empty()) << c.toml;
    EXPECT_NE(d[0].message.find(c.expect), std::string::npos) << d[0].ToString();
    EXPECT_EQ(d[0].file, "mxward.toml");
    EXPECT_EQ(d[0].line, c.line) << d[0].ToString();
  }
}

TEST(InputConfigTest, WithoutRsyslogTheDefaultsAddTheJournal) {
  setenv("MXWARD_DEFAULT_JOURNAL", "1", 1);
  std::vector<Diagnostic> d;
  auto r = Parse("", &d);
  unsetenv("MXWARD_DEFAULT_JOURNAL");
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 3u);
  const InputSpec& j = (*r)[2];
  EXPECT_EQ(j.type, InputType::kJournal);
  EXPECT_EQ(j.name, "journal");
  EXPECT_EQ(j.Describe(), "journal (local)");
  EXPECT_EQ(j.journal.units, DefaultJournalUnits());
  EXPECT_EQ(j.journal.start_at, JournalStart::kEnd);
}

TEST(InputConfigTest, JournalInput) {
  std::vector<Diagnostic> d;
  auto r = Parse(R"(
[[input]]
type = "journal"
[[input]]
type = "journal"
name = "remote"
units = ["@default", "postfix@out.service"]
slices = []
identifiers = ["myfilter"]
journal_dirs = ["/var/log/journal/remote"]
start_at = "-2h"
)",
                 &d);
  ASSERT_TRUE(r.ok()) << (d.empty() ? r.status().message() : d[0].ToString());
  ASSERT_EQ(r->size(), 2u);
  const InputSpec& local = (*r)[0];
  EXPECT_EQ(local.name, "journal");
  EXPECT_EQ(local.journal.units, DefaultJournalUnits());
  EXPECT_EQ(local.journal.slices, DefaultJournalSlices());
  EXPECT_EQ(local.journal.identifiers, DefaultJournalIdentifiers());
  EXPECT_TRUE(local.journal.dirs.empty());
  EXPECT_EQ(local.journal.start_at, JournalStart::kEnd);
  const InputSpec& remote = (*r)[1];
  std::vector<std::string> units = DefaultJournalUnits();
  units.push_back("postfix@out.service");
  EXPECT_EQ(remote.journal.units, units);
  EXPECT_TRUE(remote.journal.slices.empty());
  EXPECT_EQ(remote.journal.identifiers, std::vector<std::string>{"myfilter"});
  EXPECT_EQ(remote.journal.dirs, std::vector<std::string>{"/var/log/journal/remote"});
  EXPECT_EQ(remote.journal.start_at, JournalStart::kBack);
  EXPECT_EQ(remote.journal.start_back_seconds, 7200);
  EXPECT_EQ(remote.Describe(), "journal /var/log/journal/remote");
  // A directory that does not exist is a warning, not an error (it may be mounted later).
  auto warnings = InputWarnings(*r);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("mxward.toml:4:1: warning: [[input]] journal_dirs"), std::string::npos)
      << warnings[0];
}

TEST(InputConfigTest, JournalErrorsAreLocated) {
  const BadCase cases[] = {
      {"[[input]]\ntype = \"journal\"\nstart_at = \"yesterday\"\n", "like \"-2h\"", 3},
      {"[[input]]\ntype = \"journal\"\nstart_at = \"-0s\"\n", "\"end\" or", 3},
      {"[[input]]\ntype = \"journal\"\npath = \"/var/log/journal\"\n", "applies only to", 3},
      {"[[input]]\ntype = \"tcp\"\nunits = [\"x.service\"]\n", "applies only to journal", 3},
      {"[[input]]\ntype = \"file\"\npath = \"/x\"\njournal_dirs = [\"/y\"]\n",
       "applies only to journal", 4},
      {"[[input]]\ntype = \"journal\"\nunits = [\"a=b\"]\n", "is not a name", 3},
      {"[[input]]\ntype = \"journal\"\nidentifiers = 3\n", "expected", 3},
      {"[[input]]\ntype = \"journal\"\njournal_dirs = [\"relative\"]\n", "absolute", 3},
      {"[[input]]\ntype = \"journal\"\njournal_dirs = []\n", "is empty", 3},
      {"[[input]]\ntype = \"journal\"\nunits = []\nslices = []\nidentifiers = []\n",
       "reads nothing", 1},
      {"[[input]]\ntype = \"journal\"\n[[input]]\ntype = \"journal\"\njournal_dirs = [\"/r\"]\n",
       "two journal inputs are named 'journal'", 3},
  };
  for (const auto& c : cases) {
    std::vector<Diagnostic> d;
    auto r = Parse(c.toml, &d);
    ASSERT_FALSE(r.ok()) << c.toml;
    ASSERT_FALSE(d.empty()) << c.toml;
    EXPECT_NE(d[0].message.find(c.expect), std::string::npos) << d[0].ToString();
    EXPECT_EQ(d[0].file, "mxward.toml");
    EXPECT_EQ(d[0].line, c.line) << d[0].ToString();
  }
}

TEST(InputConfigTest, StreamConnectionLimits) {
  std::vector<Diagnostic> d;
  auto r = Parse(R"(
[[input]]
type = "tcp"
idle_timeout = "2m"
max_connections_per_peer = 0
[[input]]
type = "unix-stream"
path = "/run/mxward/log.sock"
)",
                 &d);
  ASSERT_TRUE(r.ok()) << (d.empty() ? "" : d[0].ToString());
  EXPECT_EQ((*r)[0].idle_timeout_seconds, 120);
  EXPECT_EQ((*r)[0].max_connections_per_peer, 0u);
  EXPECT_EQ((*r)[1].idle_timeout_seconds, 600) << "the default";
  EXPECT_EQ((*r)[1].max_connections_per_peer, 32u) << "the default";
}

TEST(InputConfigTest, HostPort) {
  std::string host;
  std::uint16_t port = 0;
  ASSERT_TRUE(ParseHostPort("localhost:514", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 514);
  ASSERT_TRUE(ParseHostPort("[::]:0", &host, &port).ok());
  EXPECT_EQ(host, "::");
  EXPECT_EQ(port, 0);
  EXPECT_FALSE(ParseHostPort("127.0.0.1", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("[::1]", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:5x", &host, &port).ok());
}

TEST(InputConfigTest, AllowedSendersAndTheOpenInputWarning) {
  std::vector<Diagnostic> d;
  auto r = Parse(R"(
[[input]]
type = "udp"
address = "0.0.0.0:5514"
allowed_senders = ["192.0.2.0/24", "2001:db8::7"]
[[input]]
type = "tcp"
address = "0.0.0.0:5514"
[[input]]
type = "tcp"
address = "127.0.0.1:5515"
)",
                 &d);
  ASSERT_TRUE(r.ok()) << (d.empty() ? r.status().message() : d[0].ToString());
  ASSERT_EQ((*r)[0].allowed_senders.size(), 2u);
  EXPECT_EQ((*r)[0].allowed_senders[0].ToString(), "192.0.2.0/24");
  EXPECT_EQ((*r)[0].allowed_senders[1].ToString(), "2001:db8::7");
  EXPECT_TRUE((*r)[1].allowed_senders.empty());
  // Only the non-loopback input without a sender list is warned about, at its table.
  const auto warnings = InputWarnings(*r);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind("mxward.toml:6:1: warning: [[input]] tcp 0.0.0.0:5514", 0), 0u)
      << warnings[0];
  EXPECT_NE(warnings[0].find("allowed_senders"), std::string::npos);
}

TEST(InputConfigTest, TlsInput) {
  std::vector<Diagnostic> d;
  auto r = Parse(R"(
[[input]]
type = "tls"
cert_file = "/etc/mxward/tls/server.crt"
key_file = "/etc/mxward/tls/server.key"
ca_file = "/etc/mxward/tls/ca.crt"
allowed_peers = ["MX1.Example.NET", "*.mx.example.net"]
allowed_fingerprints = ["sha256:AB:cd:ef:01:23:45:67:89:AB:cd:ef:01:23:45:67:89:AB:cd:ef:01:23:45:67:89:AB:cd:ef:01:23:45:67:89"]
)",
                 &d);
  ASSERT_TRUE(r.ok()) << (d.empty() ? r.status().message() : d[0].ToString());
  const InputSpec& s = (*r)[0];
  EXPECT_EQ(s.type, InputType::kTls);
  EXPECT_EQ(s.Describe(), "tls 0.0.0.0:6514");  // the RFC 5425 port by default
  EXPECT_EQ(s.tls.allowed_peers, (std::vector<std::string>{"mx1.example.net", "*.mx.example.net"}));
  ASSERT_EQ(s.tls.allowed_fingerprints.size(), 1u);
  EXPECT_EQ(s.tls.allowed_fingerprints[0],
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_TRUE(InputWarnings(*r).empty());  // authenticated: no open-input warning
}

TEST(InputConfigTest, SenderAndTlsErrorsAreLocated) {
  const std::string tls =
      "[[input]]\ntype = \"tls\"\ncert_file = \"/c\"\nkey_file = \"/k\"\nca_file = \"/ca\"\n";
  struct Case {
    std::string toml;
    const char* expect;
    int line;
  };
  const Case cases[] = {
      {"[[input]]\ntype = \"udp\"\nallowed_senders = [\"192.0.2.1/24\"]\n",
       "did you mean 192.0.2.0/24?", 3},
      {"[[input]]\ntype = \"udp\"\nallowed_senders = [\"300.0.2.1\"]\n", "not an address", 3},
      {tls + "allowed_peers = [\"a\"]\nhandshake_timeout = 0\n", "handshake_timeout", 7},
      {"[[input]]\ntype = \"tcp\"\nallowed_senders = []\n", "nobody could send", 3},
      {"[[input]]\ntype = \"file\"\npath = \"/x\"\nallowed_senders = [\"::1\"]\n",
       "applies only to udp, tcp and tls", 4},
      {"[[input]]\ntype = \"tcp\"\nca_file = \"/ca\"\n", "only to tls", 3},
      {"[[input]]\ntype = \"tls\"\nallowed_peers = [\"a.example\"]\n", "needs 'cert_file'", 1},
      {tls, "authorises no one", 1},
      {tls + "allowed_peers = [\"mx.*.example\"]\n", "wildcard", 6},
      {tls + "allowed_fingerprints = [\"sha256:abcd\"]\n", "SHA-256", 6},
      {tls + "allowed_peers = []\n", "nobody could send", 6},
      {tls + "allowed_peers = [\"a\"]\ncert_file2 = 1\n", "unknown key", 7},
      {"[[input]]\ntype = \"udp\"\nidle_timeout = \"1m\"\n", "only to stream", 3},
      {"[[input]]\ntype = \"tcp\"\nidle_timeout = \"soon\"\n", "idle_timeout", 3},
      {"[[input]]\ntype = \"file\"\npath = \"/x\"\nmax_connections_per_peer = 4\n",
       "only to stream", 4},
  };
  for (const auto& c : cases) {
    std::vector<Diagnostic> d;
    auto r = Parse(c.toml, &d);
    ASSERT_FALSE(r.ok()) << c.toml;
    ASSERT_FALSE(d.empty()) << c.toml;
    EXPECT_NE(d[0].message.find(c.expect), std::string::npos) << d[0].ToString();
    EXPECT_EQ(d[0].line, c.line) << d[0].ToString();
  }
}

}  // namespace
}  // namespace mxward
