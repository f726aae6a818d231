// NftablesBlocker without a kernel: [nftables] parsing and its diagnostics, the factory's
// null / dry-run decisions, parameter validation, and the exact commands dry-run records.
// The kernel side is tests/integration/nftables_netns_test.cpp.
#include "actions/nftables/nftables_blocker.h"

#include <gtest/gtest.h>

#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

Config ConfigFrom(const std::string& toml_text) {
  Config c = Config::Defaults();
  c.source = "mxward.toml";
  c.document = toml::parse(std::string_view(toml_text), std::string_view("mxward.toml"));
  return c;
}

ActionRecord Ban(const std::string& address, std::int64_t duration_s = 600) {
  ActionRecord a;
  a.id = 3;
  a.type = "ban";
  a.params = {{"address", address}, {"duration_s", duration_s}};
  return a;
}

TEST(NftablesOptionsTest, DefaultsWhenSectionHasOnlyEnabled) {
  std::vector<Diagnostic> diags;
  auto o = NftablesOptions::FromConfig(ConfigFrom("[nftables]\nenabled = true\n"), &diags);
  ASSERT_OK(o);
  EXPECT_EQ(o->family, "inet");
  EXPECT_EQ(o->table, "mxward");
  EXPECT_EQ(o->hook, "input");
  EXPECT_EQ(o->ports, (std::vector<int>{25, 465, 587, 110, 143, 993, 995, 4190}));
  EXPECT_TRUE(diags.empty());
}

// Issue 15: port groups and the canonical scope of a ban's `ports`.
TEST(NftablesOptionsTest, PortGroupsAndTheScopeOfABansPorts) {
  std::vector<Diagnostic> diags;
  auto o = NftablesOptions::FromConfig(ConfigFrom(R"(
[nftables]
[nftables.port_groups]
web = [443, 80, 8443]
imaps = [993]
)"),
                                       &diags);
  ASSERT_TRUE(o.ok()) << (diags.empty() ? "" : diags[0].ToString());
  const auto groups = o->Groups();
  EXPECT_EQ(groups.at("web"), (std::vector<int>{80, 443, 8443}));
  EXPECT_EQ(groups.at("mail"), (std::vector<int>{25, 110, 143, 465, 587, 993, 995, 4190}));
  EXPECT_EQ(groups.at("imaps"), (std::vector<int>{993}));
  auto scope = [&](std::string_view text) {
    auto r = ResolveBanScope(*o, text);
    return r.ok() ? *r : "error: " + r.status().message();
  };
  EXPECT_EQ(scope(""), "mail");
  EXPECT_EQ(scope("web"), "web");
  EXPECT_EQ(scope("8443, 443 ,80"), "web");  // exactly a group's ports: that group
  EXPECT_EQ(scope("993"), "imaps");
  EXPECT_EQ(scope("web,all"), "all");
  EXPECT_EQ(scope("443,8080"), "443,8080");
  EXPECT_EQ(scope("imaps,443"), "443,993");
  EXPECT_EQ(scope("smtp"),
            "error: unknown port group 'smtp' (known: all, imaps, mail, web, or port numbers)");
  EXPECT_EQ(scope("70000"), "error: port 70000 is not in 1-65535");

  for (const char* bad : {"all = [1]", "Web = [80]", "web_2 = [80]", "net = [80]"}) {
    diags.clear();
    EXPECT_FALSE(NftablesOptions::FromConfig(
                     ConfigFrom(std::string("[nftables.port_groups]\n") + bad + "\n"), &diags)
                     .ok())
        << bad;
  }
}

TEST(NftablesOptionsTest, ReadsEverySetting) {
  std::vector<Diagnostic> diags;
  auto o = NftablesOptions::FromConfig(ConfigFrom(R"(
[nftables]
family = "ip"
table = "abuse"
chain = "pre"
set_v4 = "v4"
set_v6 = "v6"
hook = "prerouting"
priority = -200
ports = []
aggregate_v4 = 24
aggregate_v6 = 64
aggregate_threshold = 5
default_duration = "2h"
)"),
                                       &diags);
  ASSERT_TRUE(o.ok()) << (diags.empty() ? "" : diags[0].ToString());
  EXPECT_EQ(o->family, "ip");
  EXPECT_EQ(o->table, "abuse");
  EXPECT_EQ(o->priority, -200);
  EXPECT_TRUE(o->ports.empty());
  EXPECT_EQ(o->aggregate_v4, 24);
  EXPECT_EQ(o->aggregate_threshold, 5);
  EXPECT_EQ(o->default_duration_s, 7200);
}

TEST(NftablesOptionsTest, RejectsNamesThatCouldInjectCommandsWithLocation) {
  std::vector<Diagnostic> diags;
  auto o = NftablesOptions::FromConfig(ConfigFrom("[nftables]\n"
                                                  "table = \"mx; flush ruleset\"\n"
                                                  "ports = [25, 70000]\n"
                                                  "hook = \"output\"\n"
                                                  "priorty = 3\n"),
                                       &diags);
  ASSERT_FALSE(o.ok());
  ASSERT_EQ(diags.size(), 4u);
  std::string all;
  for (const auto& d : diags) all += d.ToString() + "\n";
  EXPECT_NE(all.find("mxward.toml:2:9: error: 'table' must be a name"), std::string::npos) << all;
  EXPECT_NE(
      all.find("mxward.toml:3:14: error: 'ports': expected integers from 1 to 65535, got 70000"),
      std::string::npos)
      << all;
  EXPECT_NE(all.find("mxward.toml:4:8: error: 'hook' must be one of: input, forward, prerouting"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("unknown key 'priorty' in [nftables]"), std::string::npos) << all;
}

TEST(NftablesOptionsTest, RejectsTooWideAggregation) {
  std::vector<Diagnostic> diags;
  auto o = NftablesOptions::FromConfig(ConfigFrom("[nftables]\naggregate_v4 = 4\n"), &diags);
  ASSERT_FALSE(o.ok());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_EQ(diags[0].line, 2);
}

TEST(NftablesOptionsTest, RejectsSetNamesWhoseDerivedSetsCollide) {
  std::vector<Diagnostic> diags;
  auto o = NftablesOptions::FromConfig(
      ConfigFrom("[nftables]\nset_v4 = \"bans\"\nset_v6 = \"bans_net\"\n"), &diags);
  ASSERT_FALSE(o.ok());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_NE(diags[0].ToString().find("bans_net"), std::string::npos) << diags[0].ToString();
}

TEST(MakeNftablesBlockerTest, NullWhenAbsentOrDisabled) {
  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  auto absent =
      MakeNftablesBlocker(ConfigFrom("dry_run = false\n"), "/nonexistent", &diags, &notes);
  ASSERT_OK(absent);
  EXPECT_EQ(absent->get(), nullptr);
  auto disabled = MakeNftablesBlocker(ConfigFrom("[nftables]\nenabled = false\n"), "/nonexistent",
                                      &diags, &notes);
  ASSERT_OK(disabled);
  EXPECT_EQ(disabled->get(), nullptr);
  EXPECT_TRUE(notes.empty());
}

TEST(MakeNftablesBlockerTest, DryRunIsAnnounced) {
  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  Config c = ConfigFrom("[nftables]\ndry_run = true\n");
  auto e = MakeNftablesBlocker(c, "/nonexistent", &diags, &notes);
  ASSERT_OK(e);
  ASSERT_NE(e->get(), nullptr);
  EXPECT_TRUE((*e)->Handles("ban"));
  EXPECT_FALSE((*e)->Handles("suspend"));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("nftables: dry-run"), std::string::npos);

  notes.clear();
  Config global = ConfigFrom("[nftables]\n");
  global.dry_run = true;
  ASSERT_TRUE(MakeNftablesBlocker(global, "/nonexistent", &diags, &notes).ok());
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("dry-run"), std::string::npos);
}

TEST(MakeNftablesBlockerTest, BadSectionIsAnError) {
  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  auto e =
      MakeNftablesBlocker(ConfigFrom("[nftables]\npriority = \"high\"\n"), "/x", &diags, &notes);
  EXPECT_FALSE(e.ok());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_EQ(diags[0].line, 2);
}

class DryRunBlockerTest : public ::testing::Test {
 protected:
  DryRunBlockerTest() {
    NftablesOptions o;
    o.dry_run = true;
    blocker_ = std::make_unique<NftablesBlocker>(o, dir_.file("none.db"), &clock_);
  }
  testing::TempDir dir_;
  ManualClock clock_{1'800'000'000LL * kMicrosPerSecond};
  std::unique_ptr<NftablesBlocker> blocker_;
};

TEST_F(DryRunBlockerTest, RecordsTheTransactionItWouldRunAndChangesNothing) {
  ASSERT_OK(blocker_->Start());
  ASSERT_TRUE(blocker_->Apply(Ban("::ffff:192.0.2.7", 600)).ok());
  ASSERT_EQ(blocker_->dry_run_commands().size(), 1u);
  EXPECT_EQ(blocker_->dry_run_commands()[0],
            "add element inet mxward banned_v4 { 192.0.2.7 }\n"
            "delete element inet mxward banned_v4 { 192.0.2.7 }\n"
            "add element inet mxward banned_v4 { 192.0.2.7 timeout 600s }\n");
  // Nothing was written: not even the store file was created.
  EXPECT_NE(access(dir_.file("none.db").c_str(), F_OK), 0);
}

TEST_F(DryRunBlockerTest, AddressesAreReprintedFromBinary) {
  ASSERT_TRUE(blocker_->Apply(Ban("2001:0DB8:0000::0001", 0)).ok());
  ASSERT_TRUE(blocker_->Apply(Ban("198.51.100.77/24", 60)).ok());
  ASSERT_EQ(blocker_->dry_run_commands().size(), 2u);
  EXPECT_NE(blocker_->dry_run_commands()[0].find("banned_v6 { 2001:db8::1 }"), std::string::npos)
      << blocker_->dry_run_commands()[0];
  EXPECT_NE(blocker_->dry_run_commands()[1].find("{ 198.51.100.0/24 timeout 60s }"),
            std::string::npos)
      << blocker_->dry_run_commands()[1];
}

TEST_F(DryRunBlockerTest, RefusesTextThatIsNotAnAddress) {
  for (const char* bad : {"192.0.2.7; flush ruleset", "192.0.2.7 }", "host.example", "",
                          " 192.0.2.7", "192.0.2.300"}) {
    Status s = blocker_->Apply(Ban(bad));
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(blocker_->dry_run_commands().empty());
}

TEST_F(DryRunBlockerTest, RefusesPrefixesWiderThanTheFloor) {
  EXPECT_EQ(blocker_->Apply(Ban("0.0.0.0/0")).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(blocker_->Apply(Ban("10.0.0.0/7")).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(blocker_->Apply(Ban("::/0")).code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(blocker_->Apply(Ban("10.0.0.0/8")).ok());
}

TEST_F(DryRunBlockerTest, TimeoutsBeyondAYearAreCappedForTheKernel) {
  // nft refuses timeouts of a few years ("value too large"); the store keeps the real end.
  ASSERT_TRUE(blocker_->Apply(Ban("192.0.2.9", 10LL * 365 * 86400)).ok());
  EXPECT_NE(blocker_->dry_run_commands().back().find("192.0.2.9 timeout 31536000s"),
            std::string::npos)
      << blocker_->dry_run_commands().back();
}

TEST_F(DryRunBlockerTest, RejectsBadDuration) {
  ActionRecord a = Ban("192.0.2.1");
  a.params["duration_s"] = "forever";
  EXPECT_EQ(blocker_->Apply(a).code(), Status::Code::kInvalidArgument);
  a.params["duration_s"] = -5;
  EXPECT_EQ(blocker_->Apply(a).code(), Status::Code::kInvalidArgument);
  a.params.erase("duration_s");
  ASSERT_TRUE(blocker_->Apply(a).ok());  // the default duration
  EXPECT_NE(blocker_->dry_run_commands().back().find("timeout 3600s"), std::string::npos);
}

TEST_F(DryRunBlockerTest, RestoreBuildsTableAndLeavesOutExpiredBans) {
  const UnixMicros now = clock_.Now();
  std::vector<BanRecord> bans = {
      {"192.0.2.1", now, now + 90 * kMicrosPerSecond, 1, ""},
      {"192.0.2.2", now, now - 1, 1, ""},  // expired
      {"203.0.113.0/24", now, 0, 1, ""},   // permanent
      {"203.0.113.9", now, 0, 1, ""},      // inside the /24: kept in its own (hash) set
      {"not an address", now, 0, 1, ""},   // skipped with a warning
  };
  ASSERT_TRUE(blocker_->RestoreBans(bans, now).ok());
  ASSERT_EQ(blocker_->dry_run_commands().size(), 1u);
  const std::string& c = blocker_->dry_run_commands()[0];
  EXPECT_NE(c.find("add table inet mxward\ndelete table inet mxward\nadd table inet mxward\n"),
            std::string::npos)
      << c;
  EXPECT_NE(c.find("type filter hook input priority -10; policy accept;"), std::string::npos);
  EXPECT_NE(c.find("ip saddr @banned_v4 tcp dport { 25, 110, 143, 465, 587, 993, 995, 4190 } "
                   "counter drop"),
            std::string::npos)
      << c;
  EXPECT_NE(c.find("add set inet mxward banned_v4 { type ipv4_addr; flags timeout; }"),
            std::string::npos)
      << c;
  EXPECT_NE(
      c.find("add set inet mxward banned_v4_net { type ipv4_addr; flags interval, timeout; }"),
      std::string::npos)
      << c;
  EXPECT_NE(c.find("ip6 saddr & ffff:ffff:ffff:ffff:: @banned_v6_64"), std::string::npos) << c;
  EXPECT_NE(c.find("add element inet mxward banned_v4 { "), std::string::npos) << c;
  EXPECT_NE(c.find("192.0.2.1 timeout 90s"), std::string::npos) << c;
  EXPECT_NE(c.find("203.0.113.9"), std::string::npos) << c;
  EXPECT_NE(c.find("add element inet mxward banned_v4_net { 203.0.113.0/24 }"), std::string::npos)
      << c;
  EXPECT_EQ(c.find("192.0.2.2"), std::string::npos) << c;
  EXPECT_EQ(c.find("add element inet mxward banned_v6"), std::string::npos)
      << "no empty element list: " << c;
  EXPECT_EQ(c.find("flush set"), std::string::npos) << "a fresh table has nothing to flush: " << c;
}

TEST_F(DryRunBlockerTest, OverlappingPrefixesBecomeRangesWithTheLongestLifetime) {
  const UnixMicros now = clock_.Now();
  std::vector<BanRecord> bans = {
      {"10.0.0.0/16", now, now + 100 * kMicrosPerSecond, 1, ""},
      {"10.0.5.0/24", now, now + 700 * kMicrosPerSecond, 1, ""},
      {"10.0.9.0/24", now, now + 50 * kMicrosPerSecond, 1, ""},       // shorter: the /16 holds it
      {"10.1.0.0/24", now, 0, 1, ""},                                 // disjoint, permanent
      {"255.255.255.0/24", now, now + 10 * kMicrosPerSecond, 1, ""},  // the family's end
      {"2001:db8::/32", now, now + 60 * kMicrosPerSecond, 1, ""},
      {"2001:db8:ffff::/48", now, 0, 1, ""},  // at the end of the /32
  };
  ASSERT_TRUE(blocker_->RestoreBans(bans, now).ok());
  const std::string& c = blocker_->dry_run_commands().back();
  EXPECT_NE(c.find("add element inet mxward banned_v4_net { 10.0.0.0-10.0.4.255 timeout 100s, "
                   "10.0.5.0/24 timeout 700s, 10.0.6.0-10.0.255.255 timeout 100s, 10.1.0.0/24, "
                   "255.255.255.0/24 timeout 10s }"),
            std::string::npos)
      << c;
  EXPECT_NE(c.find("add element inet mxward banned_v6_net { 2001:db8::-2001:db8:fffe:ffff:ffff:"
                   "ffff:ffff:ffff timeout 60s, 2001:db8:ffff::/48 }"),
            std::string::npos)
      << c;
}

TEST_F(DryRunBlockerTest, ManyBansAreOneTransaction) {
  std::vector<ActionRecord> actions = {Ban("192.0.2.1"), Ban("192.0.2.2"), Ban("bad"),
                                       Ban("2001:db8::/64"), Ban("198.51.100.0/24")};
  std::vector<const ActionRecord*> pointers;
  for (const ActionRecord& a : actions) pointers.push_back(&a);
  const std::vector<Status> results = blocker_->ApplyMany(pointers);
  ASSERT_EQ(results.size(), 5u);
  EXPECT_OK(results[0]);
  EXPECT_OK(results[1]);
  EXPECT_EQ(results[2].code(), Status::Code::kInvalidArgument);
  EXPECT_OK(results[3]);
  EXPECT_OK(results[4]);
  ASSERT_EQ(blocker_->dry_run_commands().size(), 1u) << "one nftables transaction";
  const std::string& c = blocker_->dry_run_commands()[0];
  EXPECT_NE(c.find("add element inet mxward banned_v4 { 192.0.2.1 timeout 600s, 192.0.2.2 "
                   "timeout 600s }"),
            std::string::npos)
      << c;
  EXPECT_NE(c.find("add element inet mxward banned_v6_64 { 2001:db8:: timeout 600s }"),
            std::string::npos)
      << c;
  EXPECT_NE(c.find("flush set inet mxward banned_v4_net\nadd element inet mxward banned_v4_net "
                   "{ 198.51.100.0/24 timeout 600s }"),
            std::string::npos)
      << c;
}

}  // namespace
}  // namespace mxward
