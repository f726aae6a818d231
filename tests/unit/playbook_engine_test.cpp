// PlaybookEngine: triggers, keys, allowlists, cooldown, escalation, evidence, templates and
// baselines, on Events built by hand with event times set explicitly.
#include "mxward/playbook_engine.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/status_matchers.h"

#include <deque>
#include <set>
#include <string>
#include <vector>

namespace mxward {
namespace {

constexpr UnixMicros kSec = kMicrosPerSecond;
constexpr UnixMicros kT0 = 1'795'000'000 * kSec;

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

// Owns the text the Events point into.
class Events {
 public:
  Event Make(EventType type, UnixMicros t, std::string_view ip,
             std::initializer_list<std::pair<Field, std::string>> fields = {}) {
    Event e;
    e.type = type;
    e.time = t;
    // Hand-built events stand for lines whose writer was checked; the evidence tests below
    // clear it where they mean a line nobody vouches for.
    e.verified = true;
    if (!ip.empty()) {
      EXPECT_TRUE(IpAddress::Parse(ip, &e.client_ip)) << ip;
      e.set(Field::kClientIp, Keep(std::string(ip)));
    }
    std::string line =
        FormatRfc3339(t) + " " + std::string(EventTypeName(type)) + " " + std::string(ip);
    for (const auto& [f, v] : fields) {
      e.set(f, Keep(v));
      line += " " + std::string(FieldName(f)) + "=" + v;
    }
    e.line = Keep(line);
    return e;
  }

 private:
  std::string_view Keep(std::string s) { return store_.emplace_back(std::move(s)); }
  std::deque<std::string> store_;
};

std::unique_ptr<PlaybookEngine> EngineFor(std::vector<std::pair<std::string, std::string>> tomls,
                                          Config config = Config::Defaults()) {
  std::vector<Playbook> pbs;
  for (const auto& [name, text] : tomls) {
    std::vector<Diagnostic> diags;
    auto pb = CompilePlaybookText(text, "rules.d/" + name + ".toml", &diags);
    for (const auto& d : diags) ADD_FAILURE() << d.ToString();
    if (pb.ok()) pbs.push_back(std::move(*pb));
  }
  PlaybookEngineOptions o;
  o.hash_seed = 42;
  return PlaybookEngine::Create(std::move(pbs), config, o);
}

constexpr char kSasl[] = R"(
description = "SASL brute force"
severity = "high"
key = "client_ip"
[match]
events = ["auth_failure"]
service = ["smtpd", "submission", "smtps"]
[trigger]
type = "count"
threshold = 20
window = "10m"
[[action]]
type = "ban"
address = "{client_ip}"
duration = "1h"
[[action]]
type = "mail"
to = "postmaster@example.org"
subject = "{playbook}: {key} made {count} failures in {window}"
)";

class SaslTest : public ::testing::Test {
 protected:
  std::unique_ptr<PlaybookEngine> engine_ = EngineFor({{"postfix-sasl", kSasl}});
  Events ev_;
  Collect sink_;
  void Fail(std::string_view ip, UnixMicros t, std::string service = "smtpd") {
    engine_->OnEvent(ev_.Make(EventType::kAuthFailure, t, ip, {{Field::kService, service}}),
                     &sink_);
  }
};

TEST_F(SaslTest, TwentyInTenMinutesOpensOneIncidentWithEverything) {
  for (int i = 0; i < 20; ++i) Fail("203.0.113.7", kT0 + i * 30 * kSec, "submission");
  ASSERT_EQ(sink_.incidents.size(), 1u);
  const Incident& inc = sink_.incidents[0];
  EXPECT_EQ(inc.playbook, "postfix-sasl");
  EXPECT_EQ(inc.description, "SASL brute force");
  EXPECT_EQ(inc.severity, Severity::kHigh);
  EXPECT_EQ(inc.key_kind, "client_ip");
  EXPECT_EQ(inc.key, "203.0.113.7");
  EXPECT_EQ(inc.count, 20u);
  EXPECT_EQ(inc.window_seconds, 600);
  EXPECT_EQ(inc.first_seen, kT0);
  EXPECT_EQ(inc.last_seen, kT0 + 19 * 30 * kSec);
  EXPECT_EQ(inc.trigger, "20 auth_failure in 10m (count >= 20)");
  ASSERT_EQ(inc.evidence.size(), 10u);  // first five and last five
  EXPECT_EQ(inc.evidence[0].time, kT0);
  EXPECT_NE(inc.evidence[0].text.find("auth_failure 203.0.113.7"), std::string::npos);
  EXPECT_EQ(inc.evidence[4].time, kT0 + 4 * 30 * kSec);
  EXPECT_EQ(inc.evidence[5].time, kT0 + 15 * 30 * kSec);
  EXPECT_EQ(inc.evidence[9].time, kT0 + 19 * 30 * kSec);
  ASSERT_EQ(inc.actions.size(), 2u);
  EXPECT_EQ(inc.actions[0].type, "ban");
  EXPECT_EQ(inc.actions[0].params["address"], "203.0.113.7");
  EXPECT_EQ(inc.actions[0].params["duration_s"], 3600);
  EXPECT_FALSE(inc.actions[0].dry_run);
  EXPECT_EQ(inc.actions[1].params["subject"], "postfix-sasl: 203.0.113.7 made 20 failures in 10m");
  EXPECT_EQ(engine_->stats().triggers, 1u);
}

TEST_F(SaslTest, NineteenIsBelowTheThreshold) {
  for (int i = 0; i < 19; ++i) Fail("198.51.100.23", kT0 + i * 15 * kSec);
  EXPECT_TRUE(sink_.incidents.empty());
}

TEST_F(SaslTest, ExactlyTenMinutesApartFiresTenMinutesOneSecondDoesNot) {
  for (int i = 0; i < 19; ++i) Fail("192.0.2.50", kT0 + i * 30 * kSec);
  Fail("192.0.2.50", kT0 + 601 * kSec);
  EXPECT_TRUE(sink_.incidents.empty()) << "first and 20th are 10:01 apart";
  for (int i = 0; i < 19; ++i) Fail("192.0.2.51", kT0 + i * 30 * kSec);
  Fail("192.0.2.51", kT0 + 600 * kSec);
  ASSERT_EQ(sink_.incidents.size(), 1u) << "first and 20th are exactly 10:00 apart";
  EXPECT_EQ(sink_.incidents[0].key, "192.0.2.51");
}

TEST_F(SaslTest, OtherServicesAndEventTypesDoNotCount) {
  for (int i = 0; i < 30; ++i) Fail("192.0.2.60", kT0 + i * kSec, "imap");
  for (int i = 0; i < 30; ++i) {
    engine_->OnEvent(ev_.Make(EventType::kAuthSuccess, kT0 + i * kSec, "192.0.2.61",
                              {{Field::kService, "smtpd"}}),
                     &sink_);
  }
  EXPECT_TRUE(sink_.incidents.empty());
  EXPECT_FALSE(engine_->Watches(
      ev_.Make(EventType::kAuthFailure, kT0, "192.0.2.60", {{Field::kService, "imap"}})));
  EXPECT_TRUE(engine_->Watches(
      ev_.Make(EventType::kAuthFailure, kT0, "192.0.2.60", {{Field::kService, "SMTPD"}})));
}

TEST_F(SaslTest, LoopbackIsNeverCountedByDefault) {
  for (int i = 0; i < 50; ++i) Fail("127.0.0.1", kT0 + i * kSec);
  for (int i = 0; i < 50; ++i) Fail("::1", kT0 + i * kSec);
  EXPECT_TRUE(sink_.incidents.empty());
  EXPECT_EQ(engine_->stats().allowlisted, 100u);
}

// IPv6 clients are /64s: two /64s interleaved are two attackers, two addresses of one /64 one.
TEST_F(SaslTest, IpV6AndInterleavedAttackersAreKeptApart) {
  for (int i = 0; i < 25; ++i) {
    Fail("2001:db8:dead:1::7", kT0 + i * 10 * kSec, "smtps");
    Fail("2001:db8:dead:2::8", kT0 + i * 10 * kSec + 1, "smtps");
  }
  ASSERT_EQ(sink_.incidents.size(), 2u);
  EXPECT_EQ(sink_.incidents[0].key, "2001:db8:dead:1::/64");
  EXPECT_EQ(sink_.incidents[1].key, "2001:db8:dead:2::/64");
  for (int i = 0; i < 10; ++i) {
    Fail("2001:db8:beef::7", kT0 + i * 10 * kSec, "smtps");
    Fail("2001:db8:beef::8", kT0 + i * 10 * kSec + 1, "smtps");
  }
  ASSERT_EQ(sink_.incidents.size(), 3u) << "20 failures of one /64, 10 from each of two addresses";
  EXPECT_EQ(sink_.incidents[2].key, "2001:db8:beef::/64");
}

TEST_F(SaslTest, CooldownHoldsOneIncidentPerKeyThenCountsAfresh) {
  for (int i = 0; i < 40; ++i) Fail("203.0.113.9", kT0 + i * kSec);
  EXPECT_EQ(sink_.incidents.size(), 1u);
  EXPECT_EQ(engine_->stats().suppressed, 20u);
  // Cooldown defaults to the ban's hour. After it, 19 more do nothing, the 20th fires.
  for (int i = 0; i < 19; ++i) Fail("203.0.113.9", kT0 + 3600 * kSec + 19 * kSec + i * kSec);
  EXPECT_EQ(sink_.incidents.size(), 1u);
  Fail("203.0.113.9", kT0 + 3700 * kSec);
  EXPECT_EQ(sink_.incidents.size(), 2u);
}

TEST_F(SaslTest, AnAllowlistEntryForgetsTheWindowTheKeyHadBuilt) {
  auto allow = std::make_shared<AllowSetHandle>();
  engine_->UseAllowSet(allow);
  for (int i = 0; i < 15; ++i) Fail("203.0.113.7", kT0 + i * kSec);
  // Another address, never allowlisted, keeps its window (checked at the end).
  for (int i = 0; i < 15; ++i) Fail("198.51.100.9", kT0 + i * kSec);
  IpPrefix entry;
  ASSERT_TRUE(IpPrefix::Parse("203.0.113.7", &entry));
  allow->Set(AllowSet::Compile({}, {{entry, 0, true}}));  // `mxward allow add 203.0.113.7`
  Fail("203.0.113.7", kT0 + 20 * kSec);                   // exempt, and forgets the 15
  allow->Set(AllowSet::Compile({}, {}));                  // `mxward allow remove`
  for (int i = 0; i < 19; ++i) Fail("203.0.113.7", kT0 + (30 + i) * kSec);
  EXPECT_TRUE(sink_.incidents.empty()) << "the 15 failures from before the allowlist came back";
  Fail("203.0.113.7", kT0 + 60 * kSec);
  ASSERT_EQ(sink_.incidents.size(), 1u);
  EXPECT_EQ(sink_.incidents[0].count, 20u);
  EXPECT_EQ(sink_.incidents[0].first_seen, kT0 + 30 * kSec);
  // 198.51.100.9 was never allowlisted: its 15 still count.
  for (int i = 0; i < 5; ++i) Fail("198.51.100.9", kT0 + (70 + i) * kSec);
  EXPECT_EQ(sink_.incidents.size(), 2u);
}

TEST(PlaybookEngineTest, DryRunComesFromThePlaybookOrTheConfig) {
  const std::string dry = "mode = \"dry-run\"\n" + std::string(kSasl);
  Events ev;
  for (int variant = 0; variant < 3; ++variant) {
    Config config = Config::Defaults();
    config.dry_run = variant == 2;
    auto engine = EngineFor({{"p", variant == 1 ? dry : std::string(kSasl)}}, config);
    Collect sink;
    for (int i = 0; i < 20; ++i) {
      engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i * kSec, "192.0.2.1",
                              {{Field::kService, "smtpd"}}),
                      &sink);
    }
    ASSERT_EQ(sink.incidents.size(), 1u);
    EXPECT_EQ(sink.incidents[0].actions[0].dry_run, variant != 0) << variant;
    EXPECT_EQ(sink.incidents[0].mode,
              variant == 1 ? PlaybookMode::kDryRun : PlaybookMode::kEnforce);
  }
}

TEST(PlaybookEngineTest, WeightedEventsCountAsSeveralAttempts) {
  auto engine = EngineFor({{"dovecot", R"(
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 10
window = "10m"
)"}});
  Events ev;
  Collect sink;
  Event e = ev.Make(EventType::kAuthFailure, kT0, "192.0.2.9");
  e.weight = 6;
  engine->OnEvent(e, &sink);
  EXPECT_TRUE(sink.incidents.empty());
  e.time += kSec;
  e.weight = 4;
  engine->OnEvent(e, &sink);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].count, 10u);
}

TEST(PlaybookEngineTest, PrefixKeysGroupANetwork) {
  auto engine = EngineFor({{"net", R"(
key = "client_ip/24"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 5
window = "1h"
[[action]]
type = "ban"
)"}});
  Events ev;
  Collect sink;
  for (int i = 0; i < 5; ++i) {
    engine->OnEvent(
        ev.Make(EventType::kAuthFailure, kT0 + i * kSec, "198.51.100." + std::to_string(10 + i)),
        &sink);
    engine->OnEvent(
        ev.Make(EventType::kAuthFailure, kT0 + i * kSec, "2001:db8:1:" + std::to_string(i) + "::1"),
        &sink);
  }
  ASSERT_EQ(sink.incidents.size(), 2u);
  EXPECT_EQ(sink.incidents[0].key, "198.51.100.0/24");
  EXPECT_EQ(sink.incidents[0].key_kind, "client_ip/24");
  EXPECT_EQ(sink.incidents[0].actions[0].params["address"], "198.51.100.0/24");
  EXPECT_EQ(sink.incidents[1].key, "2001:db8:1::/48");  // /24 for IPv4 is /48 for IPv6
}

TEST(PlaybookEngineTest, ConditionsRegexCidrAndNumbers) {
  auto engine = EngineFor({{"spam", R"(
key = "sasl_user"
[match]
events = ["spam_verdict"]
spam_score = { gte = 6.5 }
client_ip = { not_cidr = ["10.0.0.0/8"] }
sasl_user = { regex = "(?i)[a-z]+@example\\.org" }
[trigger]
type = "count"
threshold = 3
window = "1h"
)"}});
  Events ev;
  Collect sink;
  auto verdict = [&](std::string ip, std::string user, double score, int i) {
    Event e = ev.Make(EventType::kSpamVerdict, kT0 + i * kSec, ip,
                      {{Field::kSaslUser, user}, {Field::kSpamScore, std::to_string(score)}});
    e.spam_score = score;
    engine->OnEvent(e, &sink);
  };
  for (int i = 0; i < 5; ++i) verdict("10.1.2.3", "bob@example.org", 9, i);      // inside cidr
  for (int i = 0; i < 5; ++i) verdict("192.0.2.1", "bob@example.org", 6.4, i);   // below
  for (int i = 0; i < 5; ++i) verdict("192.0.2.1", "x@example.org.evil", 9, i);  // anchored
  EXPECT_TRUE(sink.incidents.empty());
  for (int i = 0; i < 3; ++i) verdict("192.0.2.1", "Bob@Example.org", 6.5, i);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].key, "bob@example.org");
}

TEST(PlaybookEngineTest, DistinctUsersPerAddress) {
  auto engine = EngineFor({{"enum", R"(
[match]
events = ["auth_failure"]
[trigger]
type = "distinct"
field = "user"
threshold = 10
window = "6h"
)"}});
  Events ev;
  Collect sink;
  // One address retrying the same three users all day: not enumeration.
  for (int i = 0; i < 300; ++i) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i * 60 * kSec, "192.0.2.1",
                            {{Field::kUser, "user" + std::to_string(i % 3)}}),
                    &sink);
  }
  EXPECT_TRUE(sink.incidents.empty());
  // Another trying ten different users over five hours.
  for (int i = 0; i < 10; ++i) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i * 1800 * kSec, "192.0.2.2",
                            {{Field::kUser, "name" + std::to_string(i)}}),
                    &sink);
  }
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].count, 10u);
  EXPECT_EQ(sink.incidents[0].first_seen, kT0);
  EXPECT_EQ(sink.incidents[0].trigger, "10 distinct user in 6h of auth_failure (distinct >= 10)");
}

TEST(PlaybookEngineTest, ConsecutiveRunsResetByAnotherEvent) {
  auto engine = EngineFor({{"dkim", R"(
key = "dkim_domain"
[match]
events = ["dkim_verify"]
dkim_result = "fail"
[trigger]
type = "consecutive"
threshold = 3
[trigger.reset]
events = ["dkim_verify"]
dkim_result = "pass"
)"}});
  Events ev;
  Collect sink;
  auto dkim = [&](std::string result, int i) {
    engine->OnEvent(ev.Make(EventType::kDkimVerify, kT0 + i * kSec, "",
                            {{Field::kDkimDomain, "example.com"}, {Field::kDkimResult, result}}),
                    &sink);
  };
  dkim("fail", 0);
  dkim("fail", 1);
  dkim("pass", 2);
  dkim("fail", 3);
  dkim("fail", 4);
  EXPECT_TRUE(sink.incidents.empty());
  dkim("fail", 5);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].key, "example.com");
  EXPECT_EQ(sink.incidents[0].first_seen, kT0 + 3 * kSec);
  EXPECT_EQ(sink.incidents[0].evidence.size(), 3u);
}

// { local = true }: the field's domain (after '@' in an address) is one of [rules]
// local_domains or a subdomain of one; { local = false } the opposite.
TEST(PlaybookEngineTest, LocalDomainConditionUsesTheConfiguredDomains) {
  constexpr char kToml[] = R"(
key = "client_ip"
[match]
events = ["spf_check"]
sender = { local = true }
spf_result = "fail"
[trigger]
type = "count"
threshold = 1
window = "1h"
)";
  constexpr char kForeign[] = R"(
key = "sender"
[match]
events = ["spf_check"]
sender = { local = false }
[trigger]
type = "count"
threshold = 1
window = "1h"
)";
  Config config = Config::Defaults();
  config.local_domains = {"Example.ORG"};
  auto engine = EngineFor({{"ours", kToml}, {"foreign", kForeign}}, config);
  Events ev;
  Collect sink;
  int i = 0;
  auto spf = [&](std::string ip, std::string sender) {
    engine->OnEvent(ev.Make(EventType::kSpfCheck, kT0 + (i++) * kSec, ip,
                            {{Field::kSender, sender}, {Field::kSpfResult, "Fail"}}),
                    &sink);
  };
  spf("192.0.2.1", "ceo@example.org");
  spf("192.0.2.2", "x@lists.example.org");
  spf("192.0.2.3", "x@notexample.org");
  spf("192.0.2.4", "x@example.org.evil.example");
  spf("192.0.2.5", "example.org");  // a bare domain (a HELO name) is its own domain
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& inc : sink.incidents) got.emplace_back(inc.playbook, inc.key);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"ours", "192.0.2.1"},
                     {"ours", "192.0.2.2"},
                     {"foreign", "x@notexample.org"},
                     {"foreign", "x@example.org.evil.example"},
                     {"ours", "192.0.2.5"}}));

  // No local domains configured: `local = true` matches nothing, `local = false` everything.
  auto inert = EngineFor({{"ours", kToml}}, Config::Defaults());
  Collect none;
  inert->OnEvent(ev.Make(EventType::kSpfCheck, kT0, "192.0.2.1",
                         {{Field::kSender, "ceo@example.org"}, {Field::kSpfResult, "fail"}}),
                 &none);
  EXPECT_TRUE(none.incidents.empty());
}

TEST(PlaybookEngineTest, EscalationLengthensRepeatBansUpToTheMaximum) {
  auto engine = EngineFor({{"esc", R"(
cooldown = "10m"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 2
window = "1m"
[escalation]
factor = 3
max = "5h"
lookback = "1d"
[[action]]
type = "ban"
duration = "1h"
)"}});
  Events ev;
  Collect sink;
  std::vector<std::int64_t> durations;
  for (int round = 0; round < 4; ++round) {
    const UnixMicros t = kT0 + round * 6 * 3600 * kSec;  // after each (escalated) cooldown
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t, "192.0.2.3"), &sink);
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t + kSec, "192.0.2.3"), &sink);
  }
  ASSERT_EQ(sink.incidents.size(), 4u);
  for (const auto& inc : sink.incidents) {
    durations.push_back(inc.actions[0].params["duration_s"].get<std::int64_t>());
  }
  EXPECT_EQ(durations, (std::vector<std::int64_t>{3600, 3 * 3600, 5 * 3600, 5 * 3600}));
  EXPECT_NE(sink.incidents[1].trigger.find("repeat offender: 1 earlier"), std::string::npos);
}

// A playbook whose cooldown is shorter than its ban fires again while the ban stands. Those
// repeats carry the first incident's life (open_until, which the store uses to fold them into
// it) and are no new offence: the first incident after that life is escalated for one earlier
// incident, not for every repeat (a flood of repeats must not make the next ban a week long).
TEST(PlaybookEngineTest, RepeatsWithinAnIncidentsLifeShareItAndAreNoNewOffence) {
  auto engine = EngineFor({{"esc", R"(
cooldown = "1m"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 2
window = "1m"
[escalation]
factor = 2
max = "1w"
lookback = "1d"
[[action]]
type = "ban"
duration = "1h"
)"}});
  Events ev;
  Collect sink;
  auto pair = [&](UnixMicros t) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t, "192.0.2.9"), &sink);
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t + kSec, "192.0.2.9"), &sink);
  };
  for (int i = 0; i < 5; ++i) pair(kT0 + i * 2 * 60 * kSec);  // every 2 minutes: 5 triggers
  pair(kT0 + 2 * 3600 * kSec);                                // after the first ban's hour
  ASSERT_EQ(sink.incidents.size(), 6u);
  const UnixMicros life = kT0 + kSec + 3600 * kSec;  // the first trigger, plus its 1 h ban
  for (int i = 0; i < 5; ++i) EXPECT_EQ(sink.incidents[i].open_until, life) << i;
  EXPECT_EQ(sink.incidents[0].actions[0].params["duration_s"], 3600);
  const Incident& after = sink.incidents[5];
  EXPECT_EQ(after.actions[0].params["duration_s"], 2 * 3600);  // 1 earlier incident, not 5
  EXPECT_NE(after.trigger.find("repeat offender: 1 earlier"), std::string::npos) << after.trigger;
  EXPECT_EQ(after.open_until, kT0 + 2 * 3600 * kSec + kSec + 2 * 3600 * kSec);
}

// The same across a restart: the new engine learns from the store which incidents are still in
// their life. A trigger within that life is a repeat of the open incident (its open_until, no
// escalation), and the first incident after it is escalated for one earlier incident, as it
// would have been without the restart (before: for two, one step too far).
TEST(PlaybookEngineTest, AfterARestartARepeatWithinAnOpenIncidentsLifeIsNoNewOffence) {
  constexpr char kEsc[] = R"(
cooldown = "1m"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 2
window = "1m"
[escalation]
factor = 2
max = "1w"
lookback = "1d"
[[action]]
type = "ban"
duration = "1h"
)";
  const UnixMicros opened = kT0 + kSec;
  const UnixMicros life = opened + 3600 * kSec;
  auto restarted = [&](bool with_open) {
    auto engine = EngineFor({{"esc", kEsc}});
    // What PrimeEngineFromStore reads: the incident as an earlier one, and (now) its life.
    engine->ImportPriorIncidents({{"esc", "client_ip", "192.0.2.9", opened}});
    if (with_open) {
      EXPECT_EQ(engine->ImportOpenIncidents({{"esc", "client_ip", "192.0.2.9", life},
                                             {"esc", "sasl_user", "192.0.2.9", life},
                                             {"gone", "client_ip", "192.0.2.9", life}}),
                1u)
          << "another key kind or a playbook no longer loaded is not taken";
    }
    Events ev;
    Collect sink;
    auto pair = [&](UnixMicros t) {
      engine->OnEvent(ev.Make(EventType::kAuthFailure, t, "192.0.2.9"), &sink);
      engine->OnEvent(ev.Make(EventType::kAuthFailure, t + kSec, "192.0.2.9"), &sink);
    };
    pair(kT0 + 10 * 60 * kSec);   // within the open incident's life
    pair(kT0 + 3 * 3600 * kSec);  // after it (and after a wrongly escalated 2 h one)
    return sink.incidents;
  };
  const auto incidents = restarted(true);
  ASSERT_EQ(incidents.size(), 2u);
  EXPECT_EQ(incidents[0].open_until, life);  // the store folds it into the open incident
  EXPECT_EQ(incidents[0].actions[0].params["duration_s"], 3600);      // escalated as that one was
  EXPECT_EQ(incidents[1].actions[0].params["duration_s"], 2 * 3600);  // 1 earlier incident
  // Without the import the repeat is a new offence, escalated itself, and the next ban escalates
  // for two earlier incidents.
  const auto before = restarted(false);
  ASSERT_EQ(before.size(), 2u);
  EXPECT_EQ(before[0].actions[0].params["duration_s"], 2 * 3600);
  EXPECT_EQ(before[1].actions[0].params["duration_s"], 4 * 3600);
}

TEST(PlaybookEngineTest, EscalationCountsImportedAndOtherPlaybooksIncidentsWhenAsked) {
  auto engine = EngineFor({{"esc", R"(
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 1
window = "1m"
[escalation]
factor = 2
max = "1w"
lookback = "1d"
across_playbooks = true
[[action]]
type = "ban"
duration = "1h"
)"}});
  engine->ImportPriorIncidents({{"postfix-rbl", "client_ip", "192.0.2.4", kT0 - 3600 * kSec},
                                {"gone", "client_ip", "192.0.2.4", kT0 - 7200 * kSec},
                                {"gone", "client_ip", "192.0.2.4", kT0 - 3 * 86400 * kSec}});
  Events ev;
  Collect sink;
  engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0, "192.0.2.4"), &sink);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].actions[0].params["duration_s"], 4 * 3600);
}

TEST(PlaybookEngineTest, PlaybookAllowlistAndAuthenticatedUsersOnly) {
  auto engine = EngineFor({{"p", R"(
key = "sasl_user"
[match]
events = ["auth_failure", "auth_success"]
[trigger]
type = "count"
threshold = 2
window = "1h"
[allow]
cidrs = ["192.0.2.0/24"]
users = ["monitor@example.org"]
)"}});
  Events ev;
  Collect sink;
  for (int i = 0; i < 5; ++i) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i, "192.0.2.77",
                            {{Field::kSaslUser, "a@example.org"}}),
                    &sink);
    engine->OnEvent(ev.Make(EventType::kAuthSuccess, kT0 + i, "198.51.100.1",
                            {{Field::kSaslUser, "monitor@example.org"}}),
                    &sink);
  }
  EXPECT_TRUE(sink.incidents.empty());
  // A failure naming the allowed user is the client's claim: it still counts.
  for (int i = 0; i < 2; ++i) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i, "198.51.100.1",
                            {{Field::kSaslUser, "monitor@example.org"}}),
                    &sink);
  }
  EXPECT_EQ(sink.incidents.size(), 1u);
}

TEST(PlaybookEngineTest, EventsWithoutTheKeyAreSkipped) {
  auto engine = EngineFor({{"p", R"(
key = ["sasl_user", "client_ip/16"]
[match]
events = ["auth_success"]
[trigger]
type = "count"
threshold = 2
window = "1h"
)"}});
  Events ev;
  Collect sink;
  engine->OnEvent(ev.Make(EventType::kAuthSuccess, kT0, "192.0.2.1"), &sink);
  EXPECT_EQ(engine->stats().no_key, 1u);
  engine->OnEvent(ev.Make(EventType::kAuthSuccess, kT0, "192.0.2.1", {{Field::kSaslUser, "A@x"}}),
                  &sink);
  engine->OnEvent(ev.Make(EventType::kAuthSuccess, kT0, "192.0.99.1", {{Field::kSaslUser, "a@x"}}),
                  &sink);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].key, "a@x,192.0.0.0/16");
}

constexpr char kNovel[] = R"(
key = "sasl_user"
[match]
events = ["delivery"]
[trigger]
type = "novel"
field = "recipient_domain"
threshold = 5
window = "1h"
[trigger.baseline]
warmup = "1d"
ttl = "30d"
[[action]]
type = "suspend_sending"
[[action]]
type = "hold_queue"
user = "{sasl_user}"
)";

TEST(PlaybookEngineNovelTest, NothingIsJudgedDuringWarmup) {
  auto engine = EngineFor({{"out", kNovel}});
  Events ev;
  Collect sink;
  for (int i = 0; i < 50; ++i) {
    engine->OnEvent(ev.Make(EventType::kDelivery, kT0 + i * kSec, "",
                            {{Field::kSaslUser, "alice@example.org"},
                             {Field::kRecipientDomain, "d" + std::to_string(i) + ".example"}}),
                    &sink);
  }
  EXPECT_TRUE(sink.incidents.empty());
  EXPECT_EQ(engine->stats().baseline_values, 50u);
}

// kNovel with the absolute rule a cold baseline judges by.
const std::string kNovelWithFallback = std::string(kNovel) + R"(
[trigger.fallback]
distinct = "recipient_domain"
over = 10
window = "1h"
)";

TEST(PlaybookEngineNovelTest, WarmupFallbackFiresOnTooManyDistinctDomainsWhileCold) {
  auto engine = EngineFor({{"out", kNovelWithFallback}});
  Events ev;
  Collect sink;
  auto send = [&](std::string user, std::string domain, UnixMicros t) {
    engine->OnEvent(ev.Make(EventType::kDelivery, t, "",
                            {{Field::kSaslUser, user}, {Field::kRecipientDomain, domain}}),
                    &sink);
  };
  // A bulk sender on a cold install: 300 messages to its 8 usual domains, nothing.
  for (int i = 0; i < 300; ++i) {
    send("news@example.org", "d" + std::to_string(i % 8) + ".example", kT0 + i * kSec);
  }
  // Ten distinct domains in the hour: not more than `over`.
  for (int i = 0; i < 10; ++i) {
    send("alice@example.org", "n" + std::to_string(i) + ".example", kT0 + i * kSec);
  }
  EXPECT_TRUE(sink.incidents.empty());
  send("alice@example.org", "n10.example", kT0 + 20 * kSec);
  ASSERT_EQ(sink.incidents.size(), 1u);
  const Incident& inc = sink.incidents[0];
  EXPECT_EQ(inc.key, "alice@example.org");
  EXPECT_EQ(inc.count, 11u);
  EXPECT_EQ(inc.window_seconds, 3600);
  EXPECT_EQ(inc.first_seen, kT0);
  EXPECT_EQ(inc.trigger,
            "warm-up fallback: 11 distinct recipient_domain in 1h of delivery (distinct > 10; "
            "this sasl_user has learned for 20s of 1d)");
  EXPECT_EQ(inc.actions[0].type, "suspend_sending");
}

TEST(PlaybookEngineNovelTest, ANewAccountIsColdAfterTheInstallWarmedUp) {
  auto engine = EngineFor({{"out", kNovelWithFallback}});
  Events ev;
  Collect sink;
  auto send = [&](std::string user, std::string domain, UnixMicros t) {
    engine->OnEvent(ev.Make(EventType::kDelivery, t, "",
                            {{Field::kSaslUser, user}, {Field::kRecipientDomain, domain}}),
                    &sink);
  };
  for (int d = 0; d < 2; ++d) {
    send("alice@example.org", "known.example", kT0 + d * 86400 * kSec);
  }
  const UnixMicros later = kT0 + 2 * 86400 * kSec;
  // bob was never seen: five new domains would be novel, but his baseline is cold, so the
  // fallback (more than 10) judges him.
  for (int i = 0; i < 5; ++i) send("bob@example.org", "b" + std::to_string(i), later + i * kSec);
  EXPECT_TRUE(sink.incidents.empty());
  // alice is warm: five new domains are novelty.
  for (int i = 0; i < 5; ++i) send("alice@example.org", "a" + std::to_string(i), later + i * kSec);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].key, "alice@example.org");
  EXPECT_NE(sink.incidents[0].trigger.find("never used before"), std::string::npos)
      << sink.incidents[0].trigger;
}

TEST(PlaybookEngineNovelTest, NewDomainsAfterWarmupFireKnownOnesDoNot) {
  auto engine = EngineFor({{"out", kNovel}});
  Events ev;
  Collect sink;
  auto send = [&](std::string user, std::string domain, UnixMicros t) {
    engine->OnEvent(ev.Make(EventType::kDelivery, t, "",
                            {{Field::kSaslUser, user},
                             {Field::kRecipientDomain, domain},
                             {Field::kQueueId, "4XyZ1"}}),
                    &sink);
  };
  // Two days of ordinary mail teach the baseline.
  for (int d = 0; d < 2; ++d) {
    for (int i = 0; i < 10; ++i) {
      send("alice@example.org", "known" + std::to_string(i) + ".example",
           kT0 + d * 86400 * kSec + i * kSec);
    }
  }
  const UnixMicros later = kT0 + 2 * 86400 * kSec + 3600 * kSec;
  // A bulk run to known domains: nothing.
  for (int i = 0; i < 200; ++i) {
    send("alice@example.org", "known" + std::to_string(i % 10) + ".example", later + i * kSec);
  }
  EXPECT_TRUE(sink.incidents.empty());
  // Four new domains: below; the fifth fires.
  for (int i = 0; i < 4; ++i)
    send("alice@example.org", "new" + std::to_string(i), later + 300 * kSec);
  EXPECT_TRUE(sink.incidents.empty());
  send("alice@example.org", "new4", later + 301 * kSec);
  ASSERT_EQ(sink.incidents.size(), 1u);
  const Incident& inc = sink.incidents[0];
  EXPECT_EQ(inc.key, "alice@example.org");
  EXPECT_EQ(inc.actions[0].type, "suspend_sending");
  EXPECT_EQ(inc.actions[0].params["user"], "alice@example.org");
  EXPECT_EQ(inc.actions[1].params["queue_ids"], nlohmann::json::array({"4XyZ1"}));
}

TEST(PlaybookEngineNovelTest, BaselinesExportDirtyEntriesAndImportIntoAFreshEngine) {
  auto engine = EngineFor({{"out", kNovel}});
  EXPECT_EQ(engine->BaselinePlaybooks(), std::vector<std::string>{"out"});
  Events ev;
  Collect sink;
  for (int i = 0; i < 10; ++i) {
    engine->OnEvent(ev.Make(EventType::kDelivery, kT0 + i * kSec, "",
                            {{Field::kSaslUser, "Alice@Example.org"},
                             {Field::kRecipientDomain, "k" + std::to_string(i % 3) + ".example"}}),
                    &sink);
  }
  auto dirty = engine->TakeDirtyBaselines();
  ASSERT_EQ(dirty.size(), 1u);
  EXPECT_EQ(dirty[0].playbook, "out");
  ASSERT_EQ(dirty[0].entries.size(), 3u);
  EXPECT_EQ(dirty[0].entries[0].key, "alice@example.org");
  EXPECT_TRUE(engine->TakeDirtyBaselines().empty()) << "marks are cleared";

  // Restart: the stored baseline makes the engine warm and the domains known at once.
  auto fresh = EngineFor({{"out", kNovel}});
  std::vector<BaselineEntry> stored = dirty[0].entries;
  for (auto& e : stored) e.last_seen = kT0 - 3 * 86400 * kSec;
  ASSERT_TRUE(fresh->ImportBaselines("out", stored).ok());
  EXPECT_FALSE(fresh->ImportBaselines("nope", stored).ok());
  EXPECT_TRUE(fresh->TakeDirtyBaselines().empty());
  Collect sink2;
  for (int i = 0; i < 20; ++i) {
    fresh->OnEvent(ev.Make(EventType::kDelivery, kT0 + i * kSec, "",
                           {{Field::kSaslUser, "alice@example.org"},
                            {Field::kRecipientDomain, "k" + std::to_string(i % 3) + ".example"}}),
                   &sink2);
  }
  EXPECT_TRUE(sink2.incidents.empty());
  for (int i = 0; i < 5; ++i) {
    fresh->OnEvent(ev.Make(EventType::kDelivery, kT0 + 100 * kSec, "",
                           {{Field::kSaslUser, "alice@example.org"},
                            {Field::kRecipientDomain, "n" + std::to_string(i)}}),
                   &sink2);
  }
  EXPECT_EQ(sink2.incidents.size(), 1u);
}

std::string Replaced(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// A reload keeps the windows of a playbook whose counting (key, match, trigger) is unchanged,
// whatever else was edited: a new description, a comment, another action. A new threshold starts
// it afresh.
TEST(PlaybookEngineTest, ReloadKeepsTheStateOfPlaybooksWhoseCountingIsUnchanged) {
  const std::string reworded =
      Replaced(Replaced(kSasl, "description = \"SASL brute force\"",
                        "description = \"SASL password guessing\"\n# reviewed by ops"),
               "duration = \"1h\"", "duration = \"4h\"");
  const std::string changed = Replaced(kSasl, "threshold = 20", "threshold = 21");
  auto old_engine = EngineFor({{"same", kSasl}, {"reworded", kSasl}, {"edited", kSasl}});
  Events ev;
  Collect sink;
  auto fail = [&](PlaybookEngine& e, int i) {
    e.OnEvent(
        ev.Make(EventType::kAuthFailure, kT0 + i * kSec, "192.0.2.8", {{Field::kService, "smtpd"}}),
        &sink);
  };
  for (int i = 0; i < 19; ++i) fail(*old_engine, i);
  std::vector<Playbook> pbs;
  std::vector<Diagnostic> diags;
  pbs.push_back(*CompilePlaybookText(kSasl, "rules.d/same.toml", &diags));
  pbs.push_back(*CompilePlaybookText(reworded, "rules.d/reworded.toml", &diags));
  pbs.push_back(*CompilePlaybookText(changed, "rules.d/edited.toml", &diags));
  auto fresh = PlaybookEngine::Create(std::move(pbs), Config::Defaults());
  EXPECT_EQ(fresh->AdoptState(*old_engine), 2u);
  fail(*fresh, 19);
  ASSERT_EQ(sink.incidents.size(), 2u);
  EXPECT_EQ(sink.incidents[0].playbook, "reworded");
  EXPECT_EQ(sink.incidents[0].description, "SASL password guessing");
  EXPECT_EQ(sink.incidents[1].playbook, "same");
  EXPECT_EQ(sink.incidents[0].evidence.size(), 10u) << "the journal moved along";
}

TEST(PlaybookEngineTest, KeyTableCapEvictsAndCounts) {
  auto engine = EngineFor({{"p", R"(
max_keys = 1000
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 20
window = "10m"
)"}});
  Events ev;
  Collect sink;
  for (int i = 0; i < 5000; ++i) {
    IpAddress a = IpAddress::V4(0xC6336400u + static_cast<std::uint32_t>(i));  // 198.51.100.0+
    Event e = ev.Make(EventType::kAuthFailure, kT0 + i, a.ToString());
    engine->OnEvent(e, &sink);
  }
  EXPECT_EQ(engine->stats().tracked_keys, 1000u);
  EXPECT_EQ(engine->stats().evictions, 4000u);
}

// tracked_keys is kept as keys come and go (not summed over the tables per event): after every
// event it is the tables' total, through inserts, evictions at max_keys, idle expiry inside an
// insert, a key erased when it fires, and tables taken over by AdoptState.
TEST(PlaybookEngineTest, TrackedKeysIsTheTablesTotalAfterEveryEvent) {
  const std::string small = R"(
max_keys = 40
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 3
window = "1m"
)";
  const std::string wide = R"(
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 100
window = "2m"
)";
  auto engine = EngineFor({{"small", small}, {"wide", wide}});
  Events ev;
  Collect sink;
  auto total = [](const PlaybookEngine& e) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < e.playbook_count(); ++i) n += e.window_keys(i);
    return n;
  };
  std::uint64_t peak = 0;
  std::uint32_t x = 12345;
  UnixMicros t = kT0;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1103515245u + 12345u;
    // Mostly a few seconds apart, now and then minutes: keys go idle and expire.
    t += ((x >> 8) % 50 == 0 ? 200 : (x >> 12) % 4) * kSec;
    const IpAddress a = IpAddress::V4(0xC6336400u + (x >> 16) % 120);  // 198.51.100.0-119
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t, a.ToString()), &sink);
    ASSERT_EQ(engine->stats().tracked_keys, total(*engine)) << "after event " << i;
    peak = std::max(peak, total(*engine));
  }
  EXPECT_EQ(engine->stats().peak_keys, peak);
  EXPECT_GT(sink.incidents.size(), 0u) << "keys were erased when they fired";
  EXPECT_GT(engine->stats().evictions + engine->stats().expired, 0u);

  auto fresh = EngineFor({{"small", small}, {"wide", wide}});
  EXPECT_EQ(fresh->AdoptState(*engine), 2u);
  fresh->OnEvent(ev.Make(EventType::kAuthFailure, t + kSec, "192.0.2.200"), &sink);
  EXPECT_EQ(fresh->stats().tracked_keys, total(*fresh));
  EXPECT_GT(fresh->stats().tracked_keys, 2u) << "the adopted keys count";
}

TEST(PlaybookEngineTest, EvidenceLinesThatLeftTheJournalAreReportedAsDropped) {
  std::vector<Playbook> pbs;
  std::vector<Diagnostic> diags;
  pbs.push_back(*CompilePlaybookText(R"(
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 20
window = "1d"
)",
                                     "p.toml", &diags));
  PlaybookEngineOptions o;
  o.evidence_lines = 16;
  auto engine = PlaybookEngine::Create(std::move(pbs), Config::Defaults(), o);
  Events ev;
  Collect sink;
  for (int i = 0; i < 20; ++i) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i * 60 * kSec, "192.0.2.1"), &sink);
    for (int j = 0; j < 5; ++j) {
      engine->OnEvent(ev.Make(EventType::kAuthFailure, kT0 + i * 60 * kSec + j + 1,
                              "198.51.100." + std::to_string(i * 5 + j)),
                      &sink);
    }
  }
  ASSERT_EQ(sink.incidents.size(), 1u);
  const auto& evidence = sink.incidents[0].evidence;
  // The journal holds the last 16 lines: of the key's first five and last five lines only the
  // three newest remain (rounds 17..19); the other seven are reported, in their place.
  ASSERT_EQ(evidence.size(), 4u);
  EXPECT_EQ(evidence[0].text, "(7 evidence line(s) no longer held)");
  EXPECT_EQ(evidence[1].time, kT0 + 17 * 60 * kSec);
  EXPECT_EQ(evidence[3].time, kT0 + 19 * 60 * kSec);
  EXPECT_EQ(engine->stats().evidence_dropped, 7u);
}

}  // namespace
}  // namespace mxward

namespace mxward {
namespace {

// Evidence shows the message with its header; a line an authenticated node delivered (a tls
// input) names that node first, in brackets, before the HOSTNAME the line only claims. Without a
// parsed message (a hand-made event) the raw line stands.
TEST(EvidenceTextTest, HeaderMessageAndTheAuthenticatedNode) {
  auto engine = EngineFor({{"postfix-sasl", kSasl}});
  Events ev;
  Collect sink;
  for (int i = 0; i < 20; ++i) {
    Event e = ev.Make(EventType::kAuthFailure, kT0 + i * kSec, "203.0.113.7",
                      {{Field::kService, "smtpd"}});
    e.program = "postfix/smtpd";
    e.pid = "42";
    e.message = "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed";
    if (i % 2 == 0) e.host = "mx1";
    if (i % 4 == 0) e.node = "mx1.example.net";
    if (i == 1) e.message = {};
    engine->OnEvent(e, &sink);
  }
  ASSERT_EQ(sink.incidents.size(), 1u);
  const auto& evidence = sink.incidents[0].evidence;
  ASSERT_GE(evidence.size(), 3u);
  EXPECT_EQ(evidence[0].text,
            "[mx1.example.net] mx1 postfix/smtpd[42]: warning: unknown[203.0.113.7]: SASL LOGIN "
            "authentication failed");
  EXPECT_NE(evidence[1].text.find("auth_failure 203.0.113.7"), std::string::npos)
      << "no message: the line as received";
  EXPECT_EQ(evidence[2].text,
            "mx1 postfix/smtpd[42]: warning: unknown[203.0.113.7]: SASL LOGIN authentication "
            "failed");
}

// min_addresses: a network key fires only once enough of its addresses were counted; one address
// alone never gets its /24 banned however many names it tries.
TEST(PlaybookEngineTest, NetworkKeysNeedSeveralAddresses) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(R"(
description = "user names from one /24, from at least 3 of its addresses"
key = "client_ip/24"
[match]
events = ["auth_failure"]
[trigger]
type = "distinct"
field = "user"
threshold = 5
window = "1h"
min_addresses = 3
[[action]]
type = "ban"
address = "{key}"
duration = "1d"
)",
                                "rules.d/net.toml", &diags);
  ASSERT_OK(pb);
  std::vector<Playbook> pbs;
  pbs.push_back(std::move(*pb));
  auto engine = PlaybookEngine::Create(std::move(pbs), Config::Defaults());
  struct Sink : IncidentSink {
    std::vector<Incident> incidents;
    void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
  } sink;
  UnixMicros t = 1'795'000'000 * kMicrosPerSecond;
  auto fail = [&](const std::string& ip, const std::string& user) {
    Event e;
    e.type = EventType::kAuthFailure;
    e.time = (t += kMicrosPerSecond);
    EXPECT_TRUE(IpAddress::Parse(ip, &e.client_ip));
    e.set(Field::kUser, user);
    e.line = "x";
    engine->OnEvent(e, &sink);
  };
  for (int i = 0; i < 40; ++i) fail("198.51.100.7", "user" + std::to_string(i));
  EXPECT_TRUE(sink.incidents.empty()) << "one address, 40 names: not the network's doing";
  fail("198.51.100.8", "another");
  EXPECT_TRUE(sink.incidents.empty()) << "two addresses";
  fail("198.51.100.9", "third");
  ASSERT_EQ(sink.incidents.size(), 1u) << "the third address of the /24";
  EXPECT_EQ(sink.incidents[0].key, "198.51.100.0/24");
  EXPECT_NE(sink.incidents[0].trigger.find("from >= 3 addresses"), std::string::npos)
      << sink.incidents[0].trigger;
}

// Issue 21, point 2: bare client_ip is one client, and an IPv6 client is a /64. Twenty addresses
// of one /64 failing once each are one attacker (one incident, one ban of the /64), not twenty
// incidents and bans; client_ip/128 still counts single IPv6 addresses where a playbook asks.
TEST(PlaybookEngineTest, Ipv6ClientsAreCountedPerSlash64UnlessThePlaybookSays128) {
  auto make = [](const std::string& key) {
    std::vector<Diagnostic> diags;
    auto pb = CompilePlaybookText(fmt::format(R"(
description = "failures"
key = "{}"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 5
window = "10m"
[[action]]
type = "ban"
address = "{{key}}"
duration = "1h"
)",
                                              key),
                                  "rules.d/p.toml", &diags);
    EXPECT_OK(pb);
    std::vector<Playbook> pbs;
    pbs.push_back(std::move(*pb));
    return PlaybookEngine::Create(std::move(pbs), Config::Defaults());
  };
  struct Sink : IncidentSink {
    std::vector<Incident> incidents;
    void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
  };
  auto run = [](PlaybookEngine* engine, Sink* sink) {
    UnixMicros t = 1'795'000'000 * kMicrosPerSecond;
    for (int i = 1; i <= 20; ++i) {
      Event e;
      e.type = EventType::kAuthFailure;
      e.time = (t += kMicrosPerSecond);
      EXPECT_TRUE(IpAddress::Parse(fmt::format("2001:db8:5:6::{:x}", i), &e.client_ip));
      e.line = "x";
      engine->OnEvent(e, sink);
    }
    // IPv4 stays per address: five failures of one address, one of another.
    for (int i = 0; i < 6; ++i) {
      Event e;
      e.type = EventType::kAuthFailure;
      e.time = (t += kMicrosPerSecond);
      EXPECT_TRUE(IpAddress::Parse(i < 5 ? "192.0.2.7" : "192.0.2.8", &e.client_ip));
      e.line = "x";
      engine->OnEvent(e, sink);
    }
  };
  auto per_client = make("client_ip");
  Sink by_client;
  run(per_client.get(), &by_client);
  ASSERT_EQ(by_client.incidents.size(), 2u);
  EXPECT_EQ(by_client.incidents[0].key, "2001:db8:5:6::/64");
  EXPECT_EQ(by_client.incidents[1].key, "192.0.2.7");

  auto per_address = make("client_ip/128");
  Sink by_address;
  run(per_address.get(), &by_address);
  ASSERT_EQ(by_address.incidents.size(), 1u) << "no IPv6 address failed five times";
  EXPECT_EQ(by_address.incidents[0].key, "192.0.2.7");
}

TEST(PlaybookLoaderTest, MinAddressesNeedsANetworkKey) {
  std::vector<Diagnostic> diags;
  auto pb = CompilePlaybookText(R"(
key = "client_ip"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 5
window = "1h"
min_addresses = 3
)",
                                "rules.d/host.toml", &diags);
  EXPECT_FALSE(pb.ok());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_NE(diags[0].ToString().find("rules.d/host.toml:9:17"), std::string::npos)
      << diags[0].ToString();
  EXPECT_NE(diags[0].ToString().find("keys on a network"), std::string::npos);
}

}  // namespace
}  // namespace mxward

namespace mxward {
namespace {

// `mxward status`: the keys closest to the trigger, with the text incidents name them by, read
// without counting; a key that fired (in its cooldown) or whose window emptied is not listed.
TEST(PlaybookEngineTest, ClosestKeysReadWindowsWithoutCounting) {
  auto engine = EngineFor({{"postfix-sasl", "cooldown = \"1h\"\n" + std::string(kSasl)}});
  Events ev;
  Collect sink;
  auto fail = [&](std::string_view ip, UnixMicros t) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t, ip, {{Field::kService, "smtpd"}}), &sink);
  };
  for (int i = 0; i < 8; ++i) fail("203.0.113.7", kT0 + i * kSec);
  for (int i = 0; i < 3; ++i) fail("2001:db8::1", kT0 + i * kSec);
  for (int i = 0; i < 20; ++i) fail("198.51.100.4", kT0 + i * kSec);  // fires: cooldown
  ASSERT_EQ(sink.incidents.size(), 1u);

  const UnixMicros now = kT0 + 60 * kSec;
  auto keys = engine->ClosestKeys(0, 10, now);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].key, "203.0.113.7");
  EXPECT_EQ(keys[0].count, 8u);
  EXPECT_EQ(keys[0].threshold, 20u);
  EXPECT_EQ(keys[0].last_seen, kT0 + 7 * kSec);
  EXPECT_EQ(keys[1].key, "2001:db8::/64");  // an IPv6 client is its /64
  EXPECT_EQ(keys[1].count, 3u);
  // Reading counted nothing: the next failures still need the rest of the threshold.
  EXPECT_EQ(engine->ClosestKeys(0, 1, now).size(), 1u);
  for (int i = 0; i < 11; ++i) fail("203.0.113.7", now + i * kSec);
  EXPECT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(engine->ClosestKeys(0, 1, now + 11 * kSec)[0].count, 19u);
  // After the window (10m) nothing is held any more.
  EXPECT_TRUE(engine->ClosestKeys(0, 10, now + 3600 * kSec).empty());
  EXPECT_TRUE(engine->ClosestKeys(7, 10, now).empty()) << "no such playbook";
}

// `mxward status` names a key that is one address (its text printed when asked, not when the key
// is inserted) exactly as the incident does, also after its record was reused by another key
// (max_keys: the least recent is evicted) and for a network key.
TEST(PlaybookEngineTest, ClosestKeysNameReusedRecordsAndNetworksAsIncidentsDo) {
  auto engine = EngineFor({{"p", R"(
key = "client_ip"
max_keys = 2
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 3
window = "10m"
)"},
                           {"net", R"(
key = "client_ip/24"
[match]
events = ["auth_failure"]
[trigger]
type = "count"
threshold = 50
window = "10m"
)"}});
  Events ev;
  Collect sink;
  auto fail = [&](std::string_view ip, UnixMicros t) {
    engine->OnEvent(ev.Make(EventType::kAuthFailure, t, ip, {}), &sink);
  };
  fail("192.0.2.1", kT0);
  fail("2001:db8:1::7", kT0 + kSec);
  fail("198.51.100.200", kT0 + 2 * kSec);  // evicts 192.0.2.1: its record is reused
  fail("198.51.100.200", kT0 + 3 * kSec);
  // Playbooks are numbered in name order: 0 is "net", 1 is "p".
  auto keys = engine->ClosestKeys(1, 10, kT0 + 4 * kSec);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].key, "198.51.100.200");
  EXPECT_EQ(keys[1].key, "2001:db8:1::/64");
  fail("198.51.100.200", kT0 + 4 * kSec);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].key, "198.51.100.200");
  auto nets = engine->ClosestKeys(0, 10, kT0 + 5 * kSec);
  ASSERT_EQ(nets.size(), 3u);
  EXPECT_EQ(nets[0].key, "198.51.100.0/24");
  EXPECT_EQ(nets[0].count, 3u);
  std::set<std::string> others = {nets[1].key, nets[2].key};
  EXPECT_EQ(others, (std::set<std::string>{"192.0.2.0/24", "2001:db8:1::/48"}));
}

// --- evidence: which lines a playbook believes (issue 21, point 1) ----------------------------

constexpr char kSendingLimit[] = R"(
key = "sasl_user"
[match]
events = ["delivery"]
[trigger]
type = "count"
threshold = 3
window = "1h"
[[action]]
type = "suspend_sending"
)";

// A playbook that acts on mailboxes counts only verified lines: 104 lines any local user wrote
// once suspended the CEO's sending. They are counted as ignored, never as evidence.
TEST(PlaybookEngineEvidenceTest, AMailboxPlaybookCountsOnlyVerifiedLines) {
  auto engine = EngineFor({{"limit", kSendingLimit}});
  Events ev;
  Collect sink;
  auto send = [&](bool verified, int i) {
    Event e =
        ev.Make(EventType::kDelivery, kT0 + i * kSec, "", {{Field::kSaslUser, "ceo@example.org"}});
    e.verified = verified;
    engine->OnEvent(e, &sink);
  };
  for (int i = 0; i < 104; ++i) send(false, i);
  EXPECT_TRUE(sink.incidents.empty());
  EXPECT_EQ(engine->playbook_unverified_ignored(0), 104u);
  EXPECT_EQ(engine->stats().unverified, 104u);
  // Nothing of them is held either: two verified lines are still below the threshold.
  send(true, 200);
  send(true, 201);
  EXPECT_TRUE(sink.incidents.empty());
  send(true, 202);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(sink.incidents[0].count, 3u);
  EXPECT_EQ(sink.incidents[0].actions[0].type, "suspend_sending");
}

// Nor does an unverified line reset a mailbox playbook's run: a forged "success" would otherwise
// keep a real compromise from ever reaching its threshold.
TEST(PlaybookEngineEvidenceTest, AnUnverifiedLineDoesNotResetAMailboxPlaybook) {
  auto engine = EngineFor({{"runs", R"(
key = "user"
[match]
events = ["auth_failure"]
[trigger]
type = "consecutive"
threshold = 3
[trigger.reset]
events = ["auth_success"]
[[action]]
type = "require_password_change"
user = "{user}"
)"}});
  Events ev;
  Collect sink;
  auto login = [&](EventType type, bool verified, int i) {
    Event e = ev.Make(type, kT0 + i * kSec, "192.0.2.9", {{Field::kUser, "bob@example.org"}});
    e.verified = verified;
    engine->OnEvent(e, &sink);
  };
  login(EventType::kAuthFailure, true, 0);
  login(EventType::kAuthFailure, true, 1);
  login(EventType::kAuthSuccess, false, 2);  // forged: ignored
  login(EventType::kAuthFailure, true, 3);
  ASSERT_EQ(sink.incidents.size(), 1u);
  EXPECT_EQ(engine->playbook_unverified_ignored(0), 1u);
}

// Address playbooks believe every line by default (a ban is what fail2ban does with the same
// lines, and the allowlist and valve bound it); `evidence` says otherwise either way.
TEST(PlaybookEngineEvidenceTest, EvidenceDefaultsByActionsAndCanBeSetEitherWay) {
  // A top-level key after [[action]] would belong to the action: put it first.
  const std::string any_first = "evidence = \"any\"\n" + std::string(kSendingLimit);
  const std::string verified_ban = "evidence = \"verified\"\n" + std::string(kSasl);
  auto engine = EngineFor({{"sasl", kSasl}, {"limit", any_first}, {"strict", verified_ban}});
  Events ev;
  Collect sink;
  for (int i = 0; i < 20; ++i) {
    Event e = ev.Make(EventType::kAuthFailure, kT0 + i * kSec, "203.0.113.7",
                      {{Field::kService, "smtpd"}});
    e.verified = false;
    engine->OnEvent(e, &sink);
  }
  for (int i = 0; i < 3; ++i) {
    Event e = ev.Make(EventType::kDelivery, kT0 + i * kSec, "",
                      {{Field::kSaslUser, "alice@example.org"}});
    e.verified = false;
    engine->OnEvent(e, &sink);
  }
  std::vector<std::string> fired;
  for (const auto& inc : sink.incidents) fired.push_back(inc.playbook);
  std::sort(fired.begin(), fired.end());
  EXPECT_EQ(fired, (std::vector<std::string>{"limit", "sasl"}));
  const auto names = engine->playbook_names();
  const auto strict = std::find(names.begin(), names.end(), "strict") - names.begin();
  EXPECT_EQ(engine->playbook_unverified_ignored(static_cast<std::size_t>(strict)), 20u);
}

TEST(PlaybookEngineEvidenceTest, AnUnknownEvidenceValueIsRefusedWhereItIs) {
  std::vector<Diagnostic> diags;
  auto pb =
      CompilePlaybookText("evidence = \"signed\"\n" + std::string(kSasl), "rules.d/x.toml", &diags);
  EXPECT_FALSE(pb.ok());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_EQ(diags[0].ToString().rfind("rules.d/x.toml:1:", 0), 0u) << diags[0].ToString();
  EXPECT_NE(diags[0].ToString().find("unknown evidence 'signed'"), std::string::npos);
}

}  // namespace
}  // namespace mxward
