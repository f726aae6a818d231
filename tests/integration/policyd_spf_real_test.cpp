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
#include <map>
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
    if (access(kPolicyd, X_OK) != 0) {
      GTEST_SKIP() << "needs postfix-policyd-spf-python (packaging/install-deps.sh test)";
    }
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

TEST_F(PolicydSpfRealTest, EveryResultBecomesItsSpfCheckEvent) {
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

  // One answer per request, in order.
  std::vector<std::string> actions;
  for (std::size_t at = 0; (at = run.out.find("action=", at)) != std::string::npos;) {
    const std::size_t end = run.out.find('\n', at);
    actions.push_back(run.out.substr(at + 7, end - at - 7));
    at = end;
  }
  ASSERT_EQ(actions.size(), requests.size()) << run.out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(actions[i].rfind(requests[i].action_prefix, 0), 0u) << actions[i];
  }

  // syslog() wrote each line before policyd-spf answered, so they are all queued by now.
  const std::vector<std::string> lines = sandbox_.LogLines();
  ASSERT_GE(lines.size(), requests.size());

  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kParsers}, &diags);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  ASSERT_TRUE(pack.ok());
  auto extractor = EventExtractor::Create(*pack);
  SyslogParser parser;
  struct Seen {
    int events = 0;
    std::string result, identity, domain, sender, receiver, program;
  };
  std::map<std::string, Seen> by_client;
  for (const std::string& raw : lines) {
    SyslogMessage msg;
    ASSERT_TRUE(parser.Parse(raw, SystemClock::Instance()->Now(), &msg).ok()) << raw;
    Event e;
    if (!extractor->Extract(msg, &e)) {
      ADD_FAILURE() << "no event from " << raw;
      continue;
    }
    ASSERT_EQ(e.type, EventType::kSpfCheck) << raw;
    ASSERT_TRUE(e.client_ip.valid()) << raw;
    Seen& s = by_client[e.client_ip.ToString()];
    ++s.events;
    s.result = e.get(Field::kSpfResult);
    s.identity = e.get(Field::kSpfIdentity);
    s.domain = e.get(Field::kSpfDomain);
    s.sender = e.get(Field::kSender);
    s.receiver = e.get(Field::kReceiver);
    s.program = msg.program;
  }
  for (const Request& r : requests) {
    SCOPED_TRACE(r.client);
    const Seen& s = by_client[r.client];
    EXPECT_EQ(s.events, 1);
    EXPECT_EQ(s.program, "policyd-spf");
    EXPECT_EQ(s.result, r.result);
    EXPECT_EQ(s.identity, r.identity);
    EXPECT_EQ(s.domain, r.domain);
    EXPECT_EQ(s.sender, r.sender);
    // Hide_Receiver = No (the default): the recipient's domain.
    EXPECT_EQ(s.receiver, r.recipient.substr(r.recipient.find('@') + 1));
  }
  EXPECT_EQ(by_client.size(), requests.size());
}

}  // namespace
}  // namespace mxward
