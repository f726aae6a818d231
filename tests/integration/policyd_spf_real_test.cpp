// Real policyd-spf (Debian's postfix-policyd-spf-python), real DNS: the test runs in its own
// network and mount namespace, where dnsmasq (Debian's dnsmasq-base) answers the test's SPF
// records on 127.0.0.1 and a resolv.conf bind-mounted over /etc/resolv.conf points at it. /dev is
// a private tmpfs (null, zero, random, urandom bound from the real one) whose /dev/log is the
// test's own datagram socket, so policyd-spf's syslog lines come to the test and nowhere else
// (tests/support/dns_sandbox.h, shared with sender_auth_milters_real_test).
//
// The test speaks the Postfix policy protocol to policyd-spf on its stdin (one request per
// client: pass, fail, softfail, none, temperror, for our domain and others), checks the actions
// it answers, and puts every line it logged through the real SyslogParser, the shipped parser
// pack and the EventExtractor: each client address must come out as one spf_check event with the
// result, identity, domain, sender and receiver of its request. Needs root (namespaces) and the
// two packages (packaging/install-deps.sh test); skips without them. About 5 s (one temperror
// lookup waits for Lookup_Time = 2 s).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "mxward/parser_pack.h"
#include "mxward/syslog_parser.h"
#include "support/dns_sandbox.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::DnsSandbox;
using testing::DnsZones;
using testing::RunCommand;
using testing::TempDir;

const std::string kParsers = std::string(MXWARD_SOURCE_DIR) + "/rules.d/parsers";
constexpr char kPolicyd[] = "/usr/bin/policyd-spf";
constexpr char kPolicydPerl[] = "/usr/sbin/postfix-policyd-spf-perl";

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

// One SMTP client's RCPT-stage request, and what must come of it.
struct Request {
  std::string client, helo, sender, recipient;
  std::string action_prefix;  // what policyd-spf answers
  std::string result, identity, domain;
};

std::string PolicyRequest(const Request& r, int instance) {
  return "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
         "helo_name=" +
         r.helo + "\nqueue_id=\nsender=" + r.sender + "\nrecipient=" + r.recipient +
         "\nclient_address=" + r.client +
         "\nclient_name=unknown\ninstance=" + std::to_string(1000 + instance) + ".1\n\n";
}

class PolicydSpfRealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = DnsSandbox::WhyNotRunnable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_EQ(sandbox_.Enter(dir_.path()), "");
    // The zones: our domain example.org and four others. temp.example is delegated to a server
    // that does not exist, so its lookups time out: a temperror.
    DnsZones zones;
    zones.local_domains = {"example.org", "pass.example", "soft.example", "none.example",
                           "sender.example"};
    zones.txt = {{"example.org", "v=spf1 ip4:192.0.2.20 -all"},
                 {"pass.example", "v=spf1 ip4:192.0.2.10 -all"},
                 {"soft.example", "v=spf1 ip4:192.0.2.30 ~all"}};
    zones.extra_args = {"--server=/temp.example/127.0.0.9"};
    ASSERT_EQ(sandbox_.StartDns(zones), "");

    ASSERT_TRUE(WriteFile(dir_.file("policyd-spf.conf"),
                          "debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\n"
                          "Mail_From_reject = Fail\nPermError_reject = False\n"
                          "TempError_Defer = False\nLookup_Time = 2\n"
                          "skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1\n"));
  }

  TempDir dir_;
  DnsSandbox sandbox_;  // after dir_: its mounts go before the directory
};

// Postfix's answers, one per request, in order.
std::vector<std::string> Actions(const std::string& out) {
  std::vector<std::string> actions;
  for (std::size_t at = 0; (at = out.find("action=", at)) != std::string::npos;) {
    const std::size_t end = out.find('\n', at);
    actions.push_back(out.substr(at + 7, end - at - 7));
    at = end;
  }
  return actions;
}

// One spf_check event as the engine made it from a logged line.
struct Seen {
  std::string client, result, identity, domain, sender, receiver;
};

// Every line `program` logged through the real SyslogParser, the shipped parser pack and the
// EventExtractor, in order: each must be an spf_check event (a line that is not fails the test).
// Other programs' lines (Sys::Hostname::Long runs su for the perl script) are left out.
std::vector<Seen> SpfEvents(const std::vector<std::string>& lines, const std::string& program) {
  std::vector<Seen> out;
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  if (!pack.ok()) {
    ADD_FAILURE() << "parser pack did not load";
    return out;
  }
  auto extractor = EventExtractor::Create(*pack);
  SyslogParser parser;
  for (const std::string& raw : lines) {
    SyslogMessage msg;
    if (!parser.Parse(raw, SystemClock::Instance()->Now(), &msg).ok()) {
      ADD_FAILURE() << "not syslog: " << raw;
      continue;
    }
    if (msg.program != program) continue;
    Event e;
    if (!extractor->Extract(msg, &e) || e.type != EventType::kSpfCheck) {
      ADD_FAILURE() << "no spf_check event from " << raw;
      continue;
    }
    Seen s;
    s.client = e.client_ip.valid() ? e.client_ip.ToString() : "";
    s.result = e.get(Field::kSpfResult);
    s.identity = e.get(Field::kSpfIdentity);
    s.domain = e.get(Field::kSpfDomain);
    s.sender = e.get(Field::kSender);
    s.receiver = e.get(Field::kReceiver);
    out.push_back(s);
  }
  return out;
}

TEST_F(PolicydSpfRealTest, EveryResultBecomesItsSpfCheckEvent) {
  if (access(kPolicyd, X_OK) != 0) {
    GTEST_SKIP() << "needs postfix-policyd-spf-python (packaging/install-deps.sh test)";
  }
  const std::vector<Request> requests = {
      {"192.0.2.10", "mx.pass.example", "news@pass.example", "alice@example.org", "prepend ",
       "Pass", "mailfrom", "pass.example"},
      {"203.0.113.66", "mx.sender.example", "ceo@example.org", "bob@example.org", "550 5.7.23 ",
       "fail", "mailfrom", "example.org"},
      {"203.0.113.67", "mx.sender.example", "x@soft.example", "bob@example.org", "prepend ",
       "Softfail", "mailfrom", "soft.example"},
      {"192.0.2.40", "mx.sender.example", "y@none.example", "carol@example.org", "prepend ", "None",
       "mailfrom", "none.example"},
      {"192.0.2.50", "mx.sender.example", "z@temp.example", "carol@example.org", "prepend ",
       "Temperror", "mailfrom", "temp.example"},
  };
  std::string input;
  for (std::size_t i = 0; i < requests.size(); ++i) input += PolicyRequest(requests[i], i);
  const auto run = RunCommand({kPolicyd, dir_.file("policyd-spf.conf")}, input);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> actions = Actions(run.out);
  ASSERT_EQ(actions.size(), requests.size()) << run.out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(actions[i].rfind(requests[i].action_prefix, 0), 0u) << actions[i];
  }

  // syslog() wrote each line before policyd-spf answered, so they are all in the socket by now.
  const std::vector<Seen> events = SpfEvents(sandbox_.LogLines(), "policyd-spf");
  ASSERT_EQ(events.size(), requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    const Seen& s = events[i];
    SCOPED_TRACE(r.client);
    EXPECT_EQ(s.client, r.client);
    EXPECT_EQ(s.result, r.result);
    EXPECT_EQ(s.identity, r.identity);
    EXPECT_EQ(s.domain, r.domain);
    EXPECT_EQ(s.sender, r.sender);
    // Hide_Receiver = No (the default): the recipient's domain.
    EXPECT_EQ(s.receiver, r.recipient.substr(r.recipient.find('@') + 1));
  }
}

// Debian's postfix-policyd-spf-perl logs one "Policy action=..." line per request: the
// Received-SPF field it prepends (client, sender, identity), or its 550 for a fail. A fail's text
// is the sender domain's own exp= when it publishes one, so the fail event takes no client and
// no sender from it (rules.d/parsers/policyd-spf-perl.toml). Its temperror (DEFER_IF_PERMIT)
// waits for Net::DNS's 10 s timeout: left to the annotated sample, which is this program's real
// line.
TEST_F(PolicydSpfRealTest, PerlPolicyServerResultsBecomeSpfCheckEvents) {
  if (access(kPolicydPerl, X_OK) != 0) {
    GTEST_SKIP() << "needs postfix-policyd-spf-perl (packaging/install-deps.sh test)";
  }
  const std::vector<Request> requests = {
      {"192.0.2.10", "mx.pass.example", "news@pass.example", "alice@example.org", "PREPEND ",
       "pass", "mailfrom", "pass.example"},
      {"203.0.113.66", "mx.sender.example", "ceo@example.org", "bob@example.org", "550 ", "fail",
       "mailfrom", "example.org"},
      {"203.0.113.67", "mx.sender.example", "x@soft.example", "bob@example.org", "PREPEND ",
       "softfail", "mailfrom", "soft.example"},
      {"192.0.2.40", "mx.sender.example", "y@none.example", "carol@example.org", "PREPEND ", "none",
       "mailfrom", "none.example"},
      // The null sender: the HELO identity is the one checked and prepended.
      {"192.0.2.41", "mx.sender.example", "", "carol@example.org", "PREPEND ", "none", "helo",
       "mx.sender.example"},
  };
  std::string input;
  for (std::size_t i = 0; i < requests.size(); ++i) input += PolicyRequest(requests[i], i);
  const auto run = RunCommand({kPolicydPerl}, input);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> actions = Actions(run.out);
  ASSERT_EQ(actions.size(), requests.size()) << run.out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(actions[i].rfind(requests[i].action_prefix, 0), 0u) << actions[i];
  }

  const std::vector<Seen> events = SpfEvents(sandbox_.LogLines(), "postfix/policy-spf");
  ASSERT_EQ(events.size(), requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    const Seen& s = events[i];
    SCOPED_TRACE(r.client);
    EXPECT_EQ(s.result, r.result);
    EXPECT_EQ(s.identity, r.identity);
    EXPECT_EQ(s.domain, r.domain);
    if (r.result == "fail") {  // the 550's text: neither client nor sender taken from it
      EXPECT_EQ(s.client, "");
      EXPECT_EQ(s.sender, "");
    } else {
      EXPECT_EQ(s.client, r.client);
      EXPECT_EQ(s.sender, r.sender);
      EXPECT_FALSE(s.receiver.empty());  // the checking host's name
    }
  }
}

}  // namespace
}  // namespace mxward
