// DovecotPolicy: Dovecot's auth policy requests (src/auth/auth-policy.c) parsed and answered from
// the decision table; reports counted by a real PlaybookEngine only where a playbook names the
// source, with pwhash as a `distinct` value.
#include "engine/policy/dovecot_policy.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/policy/decision_feed.h"
#include "mxward/playbook.h"
#include "mxward/playbook_engine.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

constexpr UnixMicros kT0 = 1'795'000'000 * kMicrosPerSecond;

TEST(DovecotPolicyParseTest, TargetCarriesTheCommand) {
  EXPECT_EQ(*ParseDovecotPolicyTarget("/?command=allow"), DovecotPolicyCommand::kAllow);
  EXPECT_EQ(*ParseDovecotPolicyTarget("/policy?x=1&command=report"), DovecotPolicyCommand::kReport);
  EXPECT_FALSE(ParseDovecotPolicyTarget("/").ok());
  EXPECT_FALSE(ParseDovecotPolicyTarget("/?command=drop").ok());
  EXPECT_FALSE(ParseDovecotPolicyTarget("/?commandx=allow").ok());
}

TEST(DovecotPolicyParseTest, ReadsDovecotsDefaultAttributesAndIgnoresTheRest) {
  // The body auth-policy.c writes with the 2.3 default auth_policy_request_attributes.
  const std::string body =
      R"({"login":"alice@example.org","pwhash":"4b1f","remote":"192.0.2.7","device_id":"",)"
      R"("protocol":"imap","session_id":"AbCdEf","fail_type":"credentials","extra":{"a":1},)"
      R"("success":false,"policy_reject":false,"tls":true})";
  auto r = ParseDovecotPolicyBody(DovecotPolicyCommand::kReport, body);
  ASSERT_OK(r);
  EXPECT_EQ(r->login, "alice@example.org");
  EXPECT_EQ(r->pwhash, "4b1f");
  EXPECT_EQ(r->remote, "192.0.2.7");
  EXPECT_EQ(r->protocol, "imap");
  EXPECT_EQ(r->session_id, "AbCdEf");
  EXPECT_EQ(r->fail_type, "credentials");
  EXPECT_TRUE(r->tls);
  EXPECT_FALSE(r->success);
}

TEST(DovecotPolicyParseTest, MalformedBodiesAreRefusedAndLongValuesCut) {
  static constexpr char kNul[] = "{\"login\":\"a\0b\"}";  // a raw NUL inside a string
  for (std::string_view bad :
       {std::string_view(""), std::string_view("{"), std::string_view("[1,2]"),
        std::string_view("\"x\""), std::string_view("{\"login\":}"),
        std::string_view(kNul, sizeof kNul - 1)}) {
    EXPECT_FALSE(ParseDovecotPolicyBody(DovecotPolicyCommand::kAllow, bad).ok()) << bad;
  }
  const std::string huge = R"({"login":")" + std::string(100'000, 'x') + R"("})";
  auto r = ParseDovecotPolicyBody(DovecotPolicyCommand::kAllow, huge);
  ASSERT_OK(r);
  EXPECT_EQ(r->login.size(), kMaxDovecotValueBytes);
  // Wrong types are ignored, not trusted.
  r = ParseDovecotPolicyBody(DovecotPolicyCommand::kAllow, R"({"remote":7,"tls":"yes"})");
  ASSERT_OK(r);
  EXPECT_TRUE(r->remote.empty());
  EXPECT_FALSE(r->tls);
}

TEST(DovecotPolicyAnswerTest, JsonIsWhatDovecotReads) {
  const auto j = nlohmann::json::parse(DovecotPolicyAnswer{-1, "blocked"}.ToJson());
  EXPECT_EQ(j["status"], -1);
  EXPECT_EQ(j["msg"], "blocked");
}

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

std::unique_ptr<PlaybookEngine> Engine(std::vector<std::pair<std::string, std::string>> tomls) {
  std::vector<Playbook> pbs;
  for (const auto& [name, text] : tomls) {
    std::vector<Diagnostic> diags;
    auto pb = CompilePlaybookText(text, "rules.d/" + name + ".toml", &diags);
    for (const auto& d : diags) ADD_FAILURE() << d.ToString();
    if (pb.ok()) pbs.push_back(std::move(*pb));
  }
  PlaybookEngineOptions o;
  o.hash_seed = 7;
  Config config = Config::Defaults();
  return PlaybookEngine::Create(std::move(pbs), config, o);
}

// 5 distinct passwords from one address in 10 minutes ban it, from policy reports only.
constexpr const char* kPasswords = R"(
description = "distinct passwords from one address"
key = "client_ip"
[match]
events = ["auth_failure"]
source = "dovecot-policy"
[trigger]
type = "distinct"
field = "pwhash"
threshold = 5
window = "10m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

// A log playbook that fires at the first failure: reports must never reach it.
constexpr const char* kLogs = R"(
description = "log failures"
key = "client_ip"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 1
window = "10m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

class DovecotPolicyTest : public ::testing::Test {
 protected:
  DovecotPolicyTest()
      : engine_(Engine({{"passwords", kPasswords}, {"logs", kLogs}})),
        feed_(&decisions_, &recorded_, &clock_),
        policy_(
            &decisions_, [this](const Event& e) { engine_->OnEvent(e, &feed_); }, &clock_) {}

  DovecotPolicyAnswer Send(DovecotPolicyCommand command, const std::string& remote,
                           const std::string& pwhash, bool success = false) {
    DovecotPolicyRequest r;
    r.command = command;
    r.login = "alice@example.org";
    r.remote = remote;
    r.pwhash = pwhash;
    r.protocol = "imap";
    r.fail_type = success ? "" : "credentials";
    r.success = success;
    clock_.Advance(kMicrosPerSecond);
    return policy_.Answer(r);
  }

  ManualClock clock_{kT0};
  DecisionTable decisions_;
  Collect recorded_;
  std::unique_ptr<PlaybookEngine> engine_;
  DecisionFeed feed_;
  DovecotPolicy policy_;
};

TEST_F(DovecotPolicyTest, OnePasswordRepeatedIsOneGuessManyPasswordsAreABan) {
  // A phone retrying yesterday's password 200 times.
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(Send(DovecotPolicyCommand::kAllow, "198.51.100.10", "stale").status, 0) << i;
    (void)Send(DovecotPolicyCommand::kReport, "198.51.100.10", "stale");
  }
  EXPECT_TRUE(recorded_.incidents.empty()) << "one distinct pwhash, and the log playbook "
                                              "never sees a report";
  // A dictionary: five different passwords.
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(
        Send(DovecotPolicyCommand::kAllow, "203.0.113.20", "guess" + std::to_string(i)).status, 0)
        << i;
    (void)Send(DovecotPolicyCommand::kReport, "203.0.113.20", "guess" + std::to_string(i));
  }
  ASSERT_EQ(recorded_.incidents.size(), 1u);
  EXPECT_EQ(recorded_.incidents[0].playbook, "passwords");
  EXPECT_EQ(recorded_.incidents[0].key, "203.0.113.20");
  // The next attempt is refused at once, before the password is checked.
  const auto answer = Send(DovecotPolicyCommand::kAllow, "203.0.113.20", "right");
  EXPECT_EQ(answer.status, -1);
  EXPECT_EQ(answer.msg, "blocked by policy");
  EXPECT_EQ(Send(DovecotPolicyCommand::kAllow, "198.51.100.10", "stale").status, 0);
  EXPECT_EQ(policy_.counters().refused, 1u);
  EXPECT_EQ(policy_.counters().events, 205u);
}

TEST_F(DovecotPolicyTest, OurOwnRefusalsAndSuccessesAreNotCountedAsGuesses) {
  for (int i = 0; i < 10; ++i) {
    DovecotPolicyRequest r;
    r.command = DovecotPolicyCommand::kReport;
    r.remote = "203.0.113.30";
    r.pwhash = "p" + std::to_string(i);
    r.fail_type = "policy";
    r.policy_reject = true;
    (void)policy_.Answer(r);
    (void)Send(DovecotPolicyCommand::kReport, "203.0.113.31", "p" + std::to_string(i),
               /*success=*/true);
  }
  EXPECT_TRUE(recorded_.incidents.empty());
}

TEST_F(DovecotPolicyTest, SuspendedAccountIsRefusedFromAnyAddress) {
  decisions_.SetAccount("alice@example.org", AccountDecisionKind::kSuspend, 0, "by hand");
  const auto answer = Send(DovecotPolicyCommand::kAllow, "192.0.2.1", "x");
  EXPECT_EQ(answer.status, -1);
  EXPECT_EQ(answer.msg, "account suspended");
  decisions_.ClearAccount("alice@example.org", AccountDecisionKind::kSuspend);
  EXPECT_EQ(Send(DovecotPolicyCommand::kAllow, "192.0.2.1", "x").status, 0);
}

// [policy] delay_from / delay: the soft threshold answered as Dovecot's "wait N seconds".
constexpr const char* kDelayedPasswords = R"(
description = "distinct passwords from one address, slowed from the third"
key = "client_ip"
[match]
events = ["auth_failure"]
source = "dovecot-policy"
[trigger]
type = "distinct"
field = "pwhash"
threshold = 5
window = "10m"
[policy]
delay_from = 3
delay = "2s"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

// Log lines (no source) count too: four failures in the log slow the fifth attempt.
constexpr const char* kDelayedLogs = R"(
description = "log failures, slowed from the fourth"
key = "client_ip"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 10
window = "10m"
[policy]
delay_from = 4
delay = "1s"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
)";

class DovecotPolicyDelayTest : public DovecotPolicyTest {
 protected:
  DovecotPolicyDelayTest()
      : delayed_(
            &decisions_, [this](const Event& e) { engine_->OnEvent(e, &feed_); }, &clock_,
            [this](const Event& e) { return engine_->PolicyDelaySeconds(e); }) {
    engine_ = Engine({{"passwords", kDelayedPasswords}, {"logs", kDelayedLogs}});
  }
  DovecotPolicyAnswer Ask(DovecotPolicyCommand command, const std::string& remote,
                          const std::string& pwhash) {
    DovecotPolicyRequest r;
    r.command = command;
    r.login = "alice@example.org";
    r.remote = remote;
    r.pwhash = pwhash;
    r.protocol = "imap";
    r.fail_type = "credentials";
    clock_.Advance(kMicrosPerSecond);
    return delayed_.Answer(r);
  }
  // A failed login as Dovecot's log tells it (no source): what the log playbook counts.
  void LogFailure(const std::string& remote) {
    Event e;
    e.type = EventType::kAuthFailure;
    e.time = clock_.Now();
    ASSERT_TRUE(IpAddress::Parse(remote, &e.client_ip));
    e.set(Field::kClientIp, remote);
    e.set(Field::kUser, "alice@example.org");
    e.line = "imap-login: Disconnected: auth failed";
    engine_->OnEvent(e, &feed_);
  }
  std::size_t Keys() const { return engine_->window_keys(0) + engine_->window_keys(1); }

  DovecotPolicy delayed_;
};

TEST_F(DovecotPolicyDelayTest, TheThirdDistinctPasswordSlowsTheNextAttemptTheFifthBans) {
  std::vector<int> answers;
  for (int i = 0; i < 5; ++i) {
    answers.push_back(
        Ask(DovecotPolicyCommand::kAllow, "203.0.113.20", "guess" + std::to_string(i)).status);
    (void)Ask(DovecotPolicyCommand::kReport, "203.0.113.20", "guess" + std::to_string(i));
  }
  // Guesses 1-3 go on; with three distinct passwords held, the 4th and 5th wait 2 s each.
  EXPECT_EQ(answers, (std::vector<int>{0, 0, 0, 2, 2}));
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "203.0.113.20", "right").status, -1);
  EXPECT_EQ(delayed_.counters().delayed, 2u);
  EXPECT_EQ(delayed_.counters().refused, 1u);
}

TEST_F(DovecotPolicyDelayTest, AStalePasswordIsNeverSlowed) {
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(Ask(DovecotPolicyCommand::kAllow, "198.51.100.10", "stale").status, 0) << i;
    (void)Ask(DovecotPolicyCommand::kReport, "198.51.100.10", "stale");
  }
  EXPECT_EQ(delayed_.counters().delayed, 0u);
}

TEST_F(DovecotPolicyDelayTest, LogWindowsSlowTooAndAskingCountsNothing) {
  for (int i = 0; i < 3; ++i) LogFailure("192.0.2.50");
  const std::size_t keys = Keys();
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.50", "x").status, 0) << "three held";
  LogFailure("192.0.2.50");
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.50", "x").status, 1) << "four held";
  // Another address, asked many times, builds up nothing: asking is not failing.
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.51", "x").status, 0) << i;
  }
  EXPECT_EQ(Keys(), keys) << "a policy question created window keys";
  // Ten minutes later the four have left the window.
  clock_.Advance(11 * 60 * kMicrosPerSecond);
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.50", "x").status, 0);
  EXPECT_TRUE(recorded_.incidents.empty());
}

}  // namespace
// A runtime allowlist entry (`mxward allow add`), swapped into the handle the engine and the
// policy share: the banned, slowed address is answered 0 at once, its reports count nothing,
// and when the entry ends (its expiry passes) the ban in force refuses it again.
TEST_F(DovecotPolicyDelayTest, ARuntimeAllowEntryAnswersAtOnceUntilItEnds) {
  auto allow = std::make_shared<AllowSetHandle>();
  engine_->UseAllowSet(allow);
  delayed_.SetAllowSet(allow);
  for (int i = 0; i < 4; ++i) LogFailure("192.0.2.60");
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.60", "x").status, 1) << "four held";
  decisions_.Ban(IpPrefix(IpAddress::V4(0xc000023c), 32), 0, "by hand");  // 192.0.2.60
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.60", "x").status, -1);

  IpPrefix entry;
  ASSERT_TRUE(IpPrefix::Parse("192.0.2.0/24", &entry));
  const UnixMicros ends = clock_.Now() + 60 * kMicrosPerSecond;
  allow->Set(AllowSet::Compile({{entry, ends, true}}));
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.60", "x").status, 0);
  for (int i = 0; i < 5; ++i) {
    (void)Ask(DovecotPolicyCommand::kReport, "192.0.2.60", "guess" + std::to_string(i));
    LogFailure("192.0.2.60");
  }
  EXPECT_TRUE(recorded_.incidents.empty()) << "an allowlisted address opened an incident";
  EXPECT_EQ(delayed_.counters().refused, 1u);

  clock_.Advance(61 * kMicrosPerSecond);  // the entry has ended: nothing was recompiled
  EXPECT_EQ(Ask(DovecotPolicyCommand::kAllow, "192.0.2.60", "x").status, -1);
}

}  // namespace mxward
