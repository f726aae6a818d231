// The shipped playbooks (rules.d/*.toml) replayed on their annotated sample logs
// (tests/data/playbooks/<name>.log, written by make_samples.py): every line goes through the real
// SyslogParser, parser pack (rules.d/parsers) and EventExtractor into the engine with ALL shipped
// playbooks loaded, and the test asserts the exact incidents: the attacks each log describes and
// nothing for the below-threshold, slow, interleaved and legitimate bulk traffic around them.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mxward/parser_pack.h"
#include "mxward/playbook_engine.h"
#include "mxward/syslog_parser.h"

namespace mxward {
namespace {

const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
const std::string kData = std::string(MXWARD_TEST_DATA) + "/playbooks/";

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

std::vector<Incident> ReplayLines(std::istream& in, EngineStats* stats = nullptr,
                                  Config config = Config::Defaults()) {
  std::vector<Diagnostic> diags;
  auto pack = ParserPack::Load({kRules + "/parsers"}, &diags);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  if (!pack.ok()) return {};
  config.rule_dirs = {kRules};
  PlaybookEngineOptions options;
  options.hash_seed = 7;
  auto engine = PlaybookEngine::Load(config, &diags, options);
  for (const auto& d : diags) ADD_FAILURE() << d.ToString();
  if (!engine.ok()) return {};
  auto extractor = EventExtractor::Create(*pack);
  SyslogParserOptions popts;
  popts.use_local_zone = false;  // the samples are written in UTC
  SyslogParser parser(popts);
  UnixMicros reference = (DaysFromCivil(2026, 11, 23) * 86400 + 12 * 3600) * kMicrosPerSecond;

  Collect sink;
  std::string line;
  Event event;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;  // annotations
    SyslogMessage msg;
    EXPECT_TRUE(parser.Parse(line, reference, &msg).ok()) << line;
    msg.verified = true;  // a replay: the files it is given are vouched for (docs/cli.md)
    reference = msg.time;
    if (extractor->Extract(msg, &event)) (*engine)->OnEvent(event, &sink);
    while (extractor->NextReleased(&event)) (*engine)->OnEvent(event, &sink);
  }
  extractor->ReleaseAll();  // as the pipeline does at the end of a replay
  while (extractor->NextReleased(&event)) (*engine)->OnEvent(event, &sink);
  if (stats) *stats = (*engine)->stats();
  return sink.incidents;
}

std::vector<Incident> Replay(const std::string& name, EngineStats* stats = nullptr,
                             std::vector<std::string> local_domains = {}) {
  std::ifstream in(kData + name + ".log");
  EXPECT_TRUE(in) << name;
  Config config = Config::Defaults();
  config.local_domains = std::move(local_domains);
  return ReplayLines(in, stats, std::move(config));
}

using Keys = std::vector<std::pair<std::string, std::string>>;
Keys KeysOf(const std::vector<Incident>& incidents) {
  Keys out;
  for (const auto& i : incidents) out.emplace_back(i.playbook, i.key);
  return out;
}

const ActionRequest* FindAction(const Incident& i, const std::string& type) {
  for (const auto& a : i.actions) {
    if (a.type == type) return &a;
  }
  return nullptr;
}

TEST(ShippedPlaybooksTest, PostfixSasl) {
  EngineStats stats;
  auto inc = Replay("postfix-sasl", &stats);
  EXPECT_EQ(KeysOf(inc), (Keys{{"postfix-sasl", "203.0.113.7"},
                               {"postfix-sasl", "2001:db8:dead::/64"},
                               {"postfix-sasl", "192.0.2.51"}}));
  ASSERT_EQ(inc.size(), 3u);
  EXPECT_EQ(inc[0].count, 20u);
  EXPECT_EQ(inc[0].key_kind, "client_ip");
  EXPECT_EQ(inc[0].last_seen - inc[0].first_seen, 570 * kMicrosPerSecond);
  EXPECT_EQ(inc[0].evidence.size(), 10u);
  EXPECT_NE(inc[0].evidence[0].text.find("postfix/submission/smtpd[4101]: warning: "
                                         "unknown[203.0.113.7]: SASL LOGIN authentication failed"),
            std::string::npos);
  const ActionRequest* ban = FindAction(inc[0], "ban");
  ASSERT_NE(ban, nullptr);
  EXPECT_EQ(ban->params["address"], "203.0.113.7");
  EXPECT_EQ(ban->params["duration_s"], 3600);
  EXPECT_EQ(inc[2].last_seen - inc[2].first_seen, 600 * kMicrosPerSecond);
  // 127.0.0.1's 40 failures, exempted in each of the four playbooks keyed on the address that
  // watch SMTP AUTH failures (postfix-sasl, slow-bruteforce, user-enumeration and -net).
  EXPECT_EQ(stats.allowlisted, 4 * 40u);
}

// Evidence is the message with its header, "host program[pid]: message", whatever framing the
// line came in: rsyslog's RFC 5424 forwarding frame is not what an admin wants in an incident or
// a mail. [rules] evidence = "raw" keeps the frame.
TEST(ShippedPlaybooksTest, EvidenceIsTheMessageWhateverTheFraming) {
  const std::string message =
      "warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: "
      "UGFzc3dvcmQ6";
  std::string log;
  for (int i = 0; i < 20; ++i) {
    log += fmt::format(
        "<20>1 2026-11-23T10:{:02}:{:02}.000000+00:00 mx1 "
        "postfix/submission/smtpd {} - -  {}\n",
        i * 25 / 60, i * 25 % 60, 5000 + i, message);
  }
  std::istringstream framed(log);
  auto inc = ReplayLines(framed);
  ASSERT_EQ(inc.size(), 1u);
  ASSERT_FALSE(inc[0].evidence.empty());
  EXPECT_EQ(inc[0].evidence[0].text, "mx1 postfix/submission/smtpd[5000]: " + message);
  EXPECT_EQ(inc[0].evidence[0].time,
            (DaysFromCivil(2026, 11, 23) * 86400 + 10 * 3600) * kMicrosPerSecond);

  Config raw = Config::Defaults();
  raw.evidence_raw = true;
  std::istringstream again(log);
  inc = ReplayLines(again, nullptr, raw);
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].evidence[0].text, log.substr(0, log.find('\n')));
}
TEST(ShippedPlaybooksTest, PostfixRblActsOnClientsThatComeBack) {
  // One listed connection (198.51.100.31) or two hours apart (198.51.100.32): postscreen's job.
  auto inc = Replay("postfix-rbl");
  EXPECT_EQ(KeysOf(inc), (Keys{{"postfix-rbl", "192.0.2.10"}, {"postfix-rbl", "198.51.100.30"}}));
  ASSERT_EQ(inc.size(), 2u);
  EXPECT_EQ(inc[1].count, 2u);
  EXPECT_EQ(inc[1].last_seen - inc[1].first_seen, 20 * 60 * kMicrosPerSecond);
}

TEST(ShippedPlaybooksTest, PostfixRejects) {
  auto inc = Replay("postfix");
  EXPECT_EQ(KeysOf(inc), (Keys{{"postfix", "203.0.113.20"}, {"postfix", "203.0.113.22"}}));
  ASSERT_EQ(inc.size(), 2u);
  EXPECT_EQ(inc[1].trigger,
            "5 relay_denied/unknown_recipient/helo_reject/sender_reject in 10m (count >= 5)");
}

TEST(ShippedPlaybooksTest, DovecotAuthCountsAttemptsAndNeverLoopback) {
  auto inc = Replay("dovecot-auth");
  EXPECT_EQ(KeysOf(inc), (Keys{{"dovecot-auth", "203.0.113.30"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].count, 12u);
  EXPECT_EQ(inc[0].evidence.size(), 4u);
}

TEST(ShippedPlaybooksTest, SieveAuth) {
  EXPECT_EQ(KeysOf(Replay("sieve-auth")), (Keys{{"sieve-auth", "203.0.113.40"}}));
}

TEST(ShippedPlaybooksTest, RoundcubeLoginActsOnTheAccountNeverBans) {
  auto inc = Replay("roundcube-login");
  EXPECT_EQ(KeysOf(inc), (Keys{{"roundcube-login", "alice@example.org"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].key_kind, "user");
  EXPECT_EQ(FindAction(inc[0], "ban"), nullptr);
  const ActionRequest* mail = FindAction(inc[0], "mail");
  ASSERT_NE(mail, nullptr);
  EXPECT_EQ(mail->params["subject"],
            "[mxward] webmail account alice@example.org under attack: 10 auth_failure in 10m "
            "(count >= 10)");
}

// Issue 15: 42 webmail failures in 7 minutes from one browser, rotating between two accounts,
// end in ONE ban of the browser's address (after the trusted-proxy rules) on the web ports; the
// per-account playbook still mails; a forged X-Forwarded-For from an untrusted peer bans the peer.
TEST(ShippedPlaybooksTest, RoundcubeBruteForceBansTheBrowserFromTheWebPorts) {
  auto inc = Replay("roundcube-bruteforce");
  Keys keys = KeysOf(inc);
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (Keys{{"roundcube-bruteforce", "198.51.100.66"},
                        {"roundcube-bruteforce", "203.0.113.77"},
                        {"roundcube-enumeration", "198.51.100.90"},
                        {"roundcube-login", "alice@example.org"},
                        {"roundcube-login", "bob@example.org"},
                        {"roundcube-login", "carol@example.org"}}));
  int bans = 0;
  for (const Incident& i : inc) {
    const ActionRequest* ban = FindAction(i, "ban");
    if (i.playbook == "roundcube-login") {
      EXPECT_EQ(ban, nullptr) << i.key;
      continue;
    }
    ASSERT_NE(ban, nullptr) << i.playbook << " " << i.key;
    ++bans;
    EXPECT_EQ(ban->params["address"], i.key);
    EXPECT_EQ(ban->params["ports"], "web");
    if (i.key == "203.0.113.77") {
      EXPECT_EQ(i.count, 20u);  // the 20th failure, 3m10s in
      EXPECT_EQ(ban->params["duration_s"], 3600);
    }
    if (i.playbook == "roundcube-enumeration") {
      EXPECT_EQ(ban->params["duration_s"], 86400);
    }
  }
  EXPECT_EQ(bans, 3);
}

TEST(ShippedPlaybooksTest, SlowBruteForce) {
  auto inc = Replay("slow-bruteforce");
  EXPECT_EQ(KeysOf(inc), (Keys{{"slow-bruteforce", "203.0.113.60"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].last_seen - inc[0].first_seen, 29 * 600 * kMicrosPerSecond);
}

TEST(ShippedPlaybooksTest, UserEnumeration) {
  auto inc = Replay("user-enumeration");
  EXPECT_EQ(KeysOf(inc), (Keys{{"user-enumeration", "203.0.113.70"}}));
}

TEST(ShippedPlaybooksTest, UserEnumerationAcrossANetwork) {
  auto inc = Replay("user-enumeration-net");
  EXPECT_EQ(KeysOf(inc), (Keys{{"user-enumeration-net", "203.0.113.0/24"}}));
  ASSERT_EQ(inc.size(), 1u);
  const ActionRequest* ban = FindAction(inc[0], "ban");
  ASSERT_NE(ban, nullptr);
  EXPECT_EQ(ban->params["address"], "203.0.113.0/24");
}

TEST(ShippedPlaybooksTest, Ipv6AddressRotationInsideOneSlash64) {
  auto inc = Replay("ipv6-net-bruteforce");
  EXPECT_EQ(KeysOf(inc), (Keys{{"ipv6-net-bruteforce", "2001:db8:99:6400::/64"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].last_seen - inc[0].first_seen, 9 * 120 * kMicrosPerSecond);
  const ActionRequest* ban = FindAction(inc[0], "ban");
  ASSERT_NE(ban, nullptr);
  EXPECT_EQ(ban->params["address"], "2001:db8:99:6400::/64");
}

TEST(ShippedPlaybooksTest, OutboundAnomalyCatchesTheWebmailAccountNotTheNewsletter) {
  auto inc = Replay("outbound-anomaly");
  EXPECT_EQ(KeysOf(inc), (Keys{{"outbound-anomaly", "bob@example.org"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].count, 101u);
  std::vector<std::string> types;
  for (const auto& a : inc[0].actions) types.push_back(a.type);
  EXPECT_EQ(types, (std::vector<std::string>{"suspend_sending", "hold_queue",
                                             "require_password_change", "mail"}));
  EXPECT_EQ(inc[0].actions[0].params["user"], "bob@example.org");
  EXPECT_EQ(inc[0].actions[1].params["queue_ids"].size(), 1u);
}

// Issue 22: a run resets only on a pass for the same domain, from whichever program saw it; a
// flaky domain (failures interleaved with passes) never fires, 10 failures in a row do, and
// failures from an OpenDKIM that cannot show passes are not counted at all.
TEST(ShippedPlaybooksTest, DkimFailuresResetOnlyByAPassForTheSameDomain) {
  EngineStats stats;
  auto inc = Replay("dkim-failures", &stats);
  EXPECT_EQ(KeysOf(inc), (Keys{{"dkim-failures", "forged.example.net"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].count, 10u);
  EXPECT_EQ(inc[0].trigger, "10 consecutive dkim_verify (consecutive >= 10)");
  for (const auto& line : inc[0].evidence) {
    EXPECT_NE(line.text.find("domain=forged.example.net"), std::string::npos) << line.text;
  }
}

// Spoofing of our domain from outside is caught per client and per domain, our user's mail
// failing SPF is reported per sender; a forwarder, a foreign domain's DMARC failures and ordinary
// mail are not.
TEST(ShippedPlaybooksTest, SenderAuthenticationForOurDomains) {
  auto inc = Replay("sender-auth", nullptr, {"example.org"});
  EXPECT_EQ(KeysOf(inc), (Keys{{"spoofing-own-domain", "203.0.113.66"},
                               {"dmarc-own-domain", "example.org"},
                               {"internal-spf-fail", "bob@example.org"}}));
  ASSERT_EQ(inc.size(), 3u);
  EXPECT_EQ(inc[0].count, 3u);
  EXPECT_EQ(inc[1].count, 5u);
  // The DMARC line names no client: the queue id joins smtpd's, so the sources are addresses.
  ASSERT_NE(FindAction(inc[1], "mail"), nullptr);
  EXPECT_NE(FindAction(inc[1], "mail")->params.dump().find("198.51.100.77"), std::string::npos);
  EXPECT_EQ(inc[2].count, 3u);
}

TEST(ShippedPlaybooksTest, SenderAuthenticationIsSilentWithoutLocalDomains) {
  EXPECT_TRUE(Replay("sender-auth").empty());
}

TEST(ShippedPlaybooksTest, OutboundSpamScores) {
  auto inc = Replay("outbound-spam-scores");
  EXPECT_EQ(KeysOf(inc), (Keys{{"outbound-spam-scores", "mallory@example.org"}}));
}

TEST(ShippedPlaybooksTest, LoginSpread) {
  auto inc = Replay("login-spread");
  EXPECT_EQ(KeysOf(inc), (Keys{{"login-spread", "erin@example.org"}}));
  ASSERT_EQ(inc.size(), 1u);
  EXPECT_EQ(inc[0].trigger, "4 distinct client_ip in 1h of auth_success (distinct >= 4)");
}

// Issue 14: infected mail from one of our authenticated accounts mails the postmaster once a day
// per account and never suspends on one message (a help-desk forward resent three times); an
// account spreading it to 10 different recipients within an hour is suspended; inbound viruses and
// clamd's own lines (no account) open nothing.
TEST(ShippedPlaybooksTest, OutboundVirusMailsOnceAndSuspendsOnlyASpread) {
  EngineStats stats;
  auto inc = Replay("outbound-virus", &stats);
  EXPECT_EQ(KeysOf(inc), (Keys{{"outbound-virus", "eve@example.org"},
                               {"outbound-virus", "frank@example.org"},
                               {"outbound-virus", "dave@example.org"},
                               {"outbound-virus-spread", "eve@example.org"}}));
  ASSERT_EQ(inc.size(), 4u);
  for (std::size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(inc[i].key);
    EXPECT_EQ(inc[i].count, 1u);
    EXPECT_EQ(inc[i].actions.size(), 1u);
    EXPECT_EQ(FindAction(inc[i], "suspend_sending"), nullptr);
    ASSERT_NE(FindAction(inc[i], "mail"), nullptr);
  }
  EXPECT_EQ(FindAction(inc[0], "mail")->params["subject"],
            "[mxward] virus sent by eve@example.org: Win.Trojan.Emotet-9953338-0");
  const Incident& spread = inc[3];
  EXPECT_EQ(spread.count, 10u);
  EXPECT_EQ(spread.trigger, "10 distinct recipient in 1h of virus_found (distinct >= 10)");
  EXPECT_EQ(spread.last_seen - spread.first_seen, 9 * 120 * kMicrosPerSecond);
  const ActionRequest* suspend = FindAction(spread, "suspend_sending");
  ASSERT_NE(suspend, nullptr);
  EXPECT_EQ(suspend->params["user"], "eve@example.org");
  EXPECT_EQ(FindAction(spread, "require_password_change"), nullptr);
}

// Issue 14: Postfix's connection limits on port 25, one warning per refused connection: a client
// that reconnects at once is banned at the 100th refusal in 10 minutes (smtpd's rate limit or
// postscreen's count limit); a legitimate MTA backing off between waves, 99 refusals, the message
// rate limit and our own user on the submission port are not.
TEST(ShippedPlaybooksTest, PostfixConnectionLimitsBanOnlyClientsThatIgnoreThe421) {
  auto inc = Replay("postfix-connection-limits");
  EXPECT_EQ(KeysOf(inc), (Keys{{"postfix-connection-limits", "203.0.113.90"},
                               {"postfix-connection-limits", "203.0.113.91"}}));
  ASSERT_EQ(inc.size(), 2u);
  EXPECT_EQ(inc[0].count, 100u);
  EXPECT_EQ(inc[0].last_seen - inc[0].first_seen,
            148 * kMicrosPerSecond);  // 99 x 1.5 s, whole-second stamps
  EXPECT_EQ(inc[1].count, 100u);
  for (const Incident& i : inc) {
    const ActionRequest* ban = FindAction(i, "ban");
    ASSERT_NE(ban, nullptr) << i.key;
    EXPECT_EQ(ban->params["address"], i.key);
    EXPECT_EQ(ban->params["duration_s"], 3600);
  }
}

TEST(ShippedPlaybooksTest, SkeletonLogStillGivesItsTwoIncidents) {
  // tests/data/skeleton/mail.log (issue 2's walking skeleton) through the same path.
  auto inc = Replay("../skeleton/mail");
  EXPECT_EQ(KeysOf(inc),
            (Keys{{"postfix-sasl", "203.0.113.7"}, {"postfix-sasl", "2001:db8:dead::/64"}}));
}

}  // namespace
}  // namespace mxward
