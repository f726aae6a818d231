// DecisionTable and DecisionFeed: bans by longest covering prefix with expiry, account decisions
// per kind, incidents' actions applied (not dry-run ones) and still handed to the next sink.
#include "engine/policy/decision_table.h"

#include <gtest/gtest.h>

#include <vector>

#include "engine/policy/decision_feed.h"

namespace mxward {
namespace {

constexpr UnixMicros kSec = kMicrosPerSecond;
constexpr UnixMicros kT0 = 1'795'000'000 * kSec;

IpAddress Ip(std::string_view s) {
  IpAddress a;
  EXPECT_TRUE(IpAddress::Parse(s, &a)) << s;
  return a;
}
IpPrefix Prefix(std::string_view s) {
  IpPrefix p;
  EXPECT_TRUE(IpPrefix::Parse(s, &p)) << s;
  return p;
}

TEST(DecisionTableTest, LongestCoveringPrefixWinsAndExpiryEndsABan) {
  DecisionTable t;
  t.Ban(Prefix("198.51.100.0/24"), kT0 + 3600 * kSec, "net");
  t.Ban(Prefix("198.51.100.7"), kT0 + 60 * kSec, "host");
  const BanDecision* d = t.FindBan(Ip("198.51.100.7"), kT0);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->reason, "host");
  // The host ban expired: the /24 still covers it.
  d = t.FindBan(Ip("198.51.100.7"), kT0 + 61 * kSec);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->reason, "net");
  EXPECT_EQ(t.FindBan(Ip("198.51.101.7"), kT0), nullptr);
  EXPECT_EQ(t.FindBan(Ip("198.51.100.7"), kT0 + 3600 * kSec), nullptr) << "until is exclusive";
  EXPECT_EQ(t.Expire(kT0 + 3600 * kSec), 2u);
  EXPECT_EQ(t.ban_count(), 0u);
}

TEST(DecisionTableTest, IPv6PrefixesAndFamiliesDoNotMix) {
  DecisionTable t;
  t.Ban(Prefix("2001:db8:1::/48"), 0, "v6 net");
  EXPECT_NE(t.FindBan(Ip("2001:db8:1:2::5"), kT0), nullptr);
  EXPECT_EQ(t.FindBan(Ip("2001:db8:2::5"), kT0), nullptr);
  EXPECT_EQ(t.FindBan(Ip("32.1.13.184"), kT0), nullptr);
  EXPECT_NE(t.FindBan(Ip("2001:db8:1::1"), kT0 + 1'000'000 * kSec), nullptr) << "0: permanent";
  t.Unban(Prefix("2001:db8:1::/48"));
  EXPECT_EQ(t.FindBan(Ip("2001:db8:1:2::5"), kT0), nullptr);
}

TEST(DecisionTableTest, ALaterBanExtendsAnEarlierOneNeverShortensIt) {
  DecisionTable t;
  t.Ban(Prefix("192.0.2.9"), kT0 + 600 * kSec, "a");
  t.Ban(Prefix("192.0.2.9"), kT0 + 60 * kSec, "b");
  ASSERT_NE(t.FindBan(Ip("192.0.2.9"), kT0 + 300 * kSec), nullptr);
  t.Ban(Prefix("192.0.2.9"), 0, "c");
  EXPECT_NE(t.FindBan(Ip("192.0.2.9"), kT0 + 100'000 * kSec), nullptr);
}

TEST(DecisionTableTest, AccountsArePerKindAndCaseInsensitive) {
  DecisionTable t;
  t.SetAccount("Alice@Example.org", AccountDecisionKind::kHoldQueue, kT0 + 60 * kSec, "pb");
  EXPECT_NE(t.FindAccount("alice@example.org", AccountDecisionKind::kHoldQueue, kT0), nullptr);
  EXPECT_EQ(t.FindAccount("alice@example.org", AccountDecisionKind::kSuspend, kT0), nullptr);
  EXPECT_EQ(t.FindAccount("bob@example.org", AccountDecisionKind::kHoldQueue, kT0), nullptr);
  EXPECT_EQ(t.FindAccount("alice@example.org", AccountDecisionKind::kHoldQueue, kT0 + 60 * kSec),
            nullptr);
  t.ClearAccount("ALICE@example.org", AccountDecisionKind::kHoldQueue);
  EXPECT_EQ(t.account_count(), 0u);
}

TEST(DecisionTableTest, ApplyReadsTheActionCatalogueParametersAndSkipsDryRun) {
  DecisionTable t;
  ActionRequest ban{"ban", {{"address", "203.0.113.0/24"}, {"duration_s", 120}}, false};
  EXPECT_TRUE(t.Apply(ban, false, kT0, "pb"));
  EXPECT_NE(t.FindBan(Ip("203.0.113.77"), kT0 + 119 * kSec), nullptr);
  EXPECT_EQ(t.FindBan(Ip("203.0.113.77"), kT0 + 120 * kSec), nullptr);
  EXPECT_TRUE(t.Apply(ban, /*revert=*/true, kT0, "pb"));
  EXPECT_EQ(t.FindBan(Ip("203.0.113.77"), kT0), nullptr);

  ActionRequest dry{"ban", {{"address", "203.0.113.5"}}, /*dry_run=*/true};
  EXPECT_FALSE(t.Apply(dry, false, kT0, "pb"));
  ActionRequest not_an_address{"ban", {{"address", "203.0.113.5; drop"}}, false};
  EXPECT_FALSE(t.Apply(not_an_address, false, kT0, "pb"));
  ActionRequest webhook{"webhook", {{"target", "ops"}}, false};
  EXPECT_FALSE(t.Apply(webhook, false, kT0, "pb"));
  EXPECT_EQ(t.ban_count(), 0u);

  ActionRequest hold{"hold_queue", {{"user", "carol@example.org"}}, false};
  EXPECT_TRUE(t.Apply(hold, false, kT0, "pb"));
  EXPECT_NE(
      t.FindAccount("carol@example.org", AccountDecisionKind::kHoldQueue, kT0 + 1'000'000 * kSec),
      nullptr)
      << "no duration: until restored";
}

struct Collect : IncidentSink {
  std::vector<Incident> incidents;
  void OnIncident(Incident i) override { incidents.push_back(std::move(i)); }
};

// Issue 15: the policy servers answer for mail; a webmail ban (ports = "web") must not refuse
// the address's mail, and its revert must not lift a mail ban.
TEST(DecisionTableTest, OnlyBansCoveringMailPortsDecideForThePolicyServers) {
  DecisionTable t;
  ActionRequest web{"ban", {{"address", "192.0.2.7"}, {"duration_s", 60}, {"ports", "web"}}, false};
  EXPECT_FALSE(t.Apply(web, false, kT0, "roundcube-bruteforce"));
  EXPECT_EQ(t.FindBan(Ip("192.0.2.7"), kT0), nullptr);
  ActionRequest mail{"ban", {{"address", "192.0.2.7"}, {"duration_s", 60}}, false};
  EXPECT_TRUE(t.Apply(mail, false, kT0, "dovecot-auth"));
  EXPECT_FALSE(t.Apply(web, /*revert=*/true, kT0, "pb"));
  EXPECT_NE(t.FindBan(Ip("192.0.2.7"), kT0), nullptr);
  EXPECT_TRUE(BanScopeCoversMail("all"));
  EXPECT_TRUE(BanScopeCoversMail("*"));
  EXPECT_TRUE(BanScopeCoversMail("443,993"));
  EXPECT_FALSE(BanScopeCoversMail("443,8080"));
  EXPECT_FALSE(BanScopeCoversMail("imaps"));  // a named group: unknown to the policy servers
}

TEST(DecisionFeedTest, AppliesEnforcedIncidentsAndForwardsEveryIncident) {
  DecisionTable t;
  Collect next;
  ManualClock clock(kT0);
  DecisionFeed feed(&t, &next, &clock);

  Incident enforced;
  enforced.playbook = "dovecot-auth";
  enforced.actions.push_back({"ban", {{"address", "192.0.2.44"}, {"duration_s", 3600}}, false});
  feed.OnIncident(enforced);
  Incident dry = enforced;
  dry.mode = PlaybookMode::kDryRun;
  dry.actions[0].params["address"] = "192.0.2.45";
  feed.OnIncident(dry);

  ASSERT_EQ(next.incidents.size(), 2u);
  EXPECT_EQ(next.incidents[0].actions.size(), 1u) << "forwarded unchanged";
  const BanDecision* d = t.FindBan(Ip("192.0.2.44"), kT0);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->reason, "dovecot-auth");
  EXPECT_EQ(d->until, kT0 + 3600 * kSec);
  EXPECT_EQ(t.FindBan(Ip("192.0.2.45"), kT0), nullptr);
}

}  // namespace
}  // namespace mxward
