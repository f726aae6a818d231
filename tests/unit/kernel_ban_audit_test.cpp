// KernelBanAudit's pure half: FindMissingBans() against hand-written nft JSON listings (the shape
// nft 1.0.6 prints for `-j list table`), and ConfirmedMissingBans(), which keeps only what two
// listings both miss. The real kernel's side is in tests/integration/nftables_netns_test.cpp.
#include "actions/nftables/kernel_ban_audit.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mxward {
namespace {

constexpr UnixMicros kNow = 1'800'000'000LL * kMicrosPerSecond;

BanRecord Stored(const std::string& prefix, std::int64_t seconds_left) {
  BanRecord b;
  b.prefix = prefix;
  b.until = seconds_left == 0 ? 0 : kNow + seconds_left * kMicrosPerSecond;
  return b;
}

// Every ban of scope "mail" goes to banned_v4 / banned_v4_net as nft would name them.
std::string SetOf(const std::string& scope, const IpPrefix& prefix) {
  if (scope != "mail") return "";
  return std::string(prefix.address().is_v4() ? "banned_v4" : "banned_v6") +
         (prefix.IsHost() ? "" : "_net");
}

// A listing with banned_v4 holding `hosts` (with timeouts) and banned_v4_net holding `ranges`.
std::string Listing(const std::string& hosts, const std::string& ranges) {
  return R"({"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "mxward", "handle": 1}},
    {"set": {"family": "inet", "name": "banned_v4", "table": "mxward", "type": "ipv4_addr",
             "handle": 2, "flags": ["timeout"], "elem": [)" +
         hosts + R"(]}},
    {"set": {"family": "inet", "name": "banned_v4_net", "table": "mxward", "type": "ipv4_addr",
             "handle": 3, "flags": ["interval", "timeout"], "elem": [)" +
         ranges + "]}}]}";
}

std::string Host(const std::string& address) {
  return R"({"elem": {"val": ")" + address + R"(", "timeout": 3600, "expires": 3500}})";
}

TEST(KernelBanAuditTest, ReportsTheHostsAndPrefixesTheSetsDoNotHold) {
  const std::vector<BanRecord> bans = {Stored("192.0.2.7", 3600), Stored("192.0.2.8", 3600),
                                       Stored("198.51.100.0/24", 0),
                                       Stored("203.0.113.0/25", 3600)};
  const std::string listing = Listing(
      Host("192.0.2.7"), R"({"elem": {"val": {"prefix": {"addr": "198.51.100.0", "len": 24}}}},)"
                         R"({"elem": {"val": {"range": ["203.0.113.0", "203.0.113.63"]}}})");
  auto found = FindMissingBans(bans, listing, SetOf, kNow);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  ASSERT_EQ(found->hosts.size(), 1u);
  EXPECT_EQ(found->hosts[0].prefix.ToString(), "192.0.2.8");
  EXPECT_EQ(found->hosts[0].timeout_s, 3600);
  // 203.0.113.64-127 is in no range: the whole (mail, IPv4) interval set is to be rewritten.
  EXPECT_EQ(found->nets, (std::set<std::pair<std::string, int>>{{"mail", 4}}));
  EXPECT_EQ(found->compared, 4u);
  EXPECT_EQ(found->store_read_at, kNow);
}

TEST(KernelBanAuditTest, BansEndingWithinSecondsAndUnknownScopesAreNotReported) {
  BanRecord web = Stored("192.0.2.9", 3600);
  web.ports = "web";  // not a scope this SetOf resolves: a port group no longer configured
  const std::vector<BanRecord> bans = {Stored("192.0.2.7", kSoonSeconds - 1), web};
  auto found = FindMissingBans(bans, Listing("", ""), SetOf, kNow);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->hosts.empty());
  EXPECT_EQ(found->compared, 0u);
}

TEST(KernelBanAuditTest, AListingThatIsNotNftJsonIsAnError) {
  auto found = FindMissingBans({Stored("192.0.2.7", 3600)}, "table inet mxward {", SetOf, kNow);
  EXPECT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), Status::Code::kInvalidArgument);
}

// One dump of a large hash set can skip elements when the kernel resizes the table under it; a
// second listing confirms. Only what both miss is repaired.
TEST(KernelBanAuditTest, OnlyWhatBothListingsMissIsConfirmed) {
  const std::vector<BanRecord> bans = {Stored("192.0.2.1", 3600), Stored("192.0.2.2", 3600),
                                       Stored("192.0.2.3", 3600), Stored("198.51.100.0/24", 0)};
  // First dump: .1 and .2 skipped, the prefix set's range skipped too.
  auto first = FindMissingBans(bans, Listing(Host("192.0.2.3"), ""), SetOf, kNow);
  // Second dump: .1 and the prefix really are gone; .2 was there all along.
  auto second = FindMissingBans(bans, Listing(Host("192.0.2.2") + "," + Host("192.0.2.3"), ""),
                                SetOf, kNow + kMicrosPerSecond);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(first->hosts.size(), 2u);
  const MissingBans confirmed = ConfirmedMissingBans(*first, *second);
  ASSERT_EQ(confirmed.hosts.size(), 1u);
  EXPECT_EQ(confirmed.hosts[0].prefix.ToString(), "192.0.2.1");
  EXPECT_EQ(confirmed.nets.size(), 1u);
  EXPECT_EQ(confirmed.store_read_at, kNow);  // the snapshot's time, for the lane's touch margin

  // A prefix range the second dump does show is not rewritten.
  auto third = FindMissingBans(
      bans,
      Listing(Host("192.0.2.1") + "," + Host("192.0.2.2") + "," + Host("192.0.2.3"),
              R"({"elem": {"val": {"prefix": {"addr": "198.51.100.0", "len": 24}}}})"),
      SetOf, kNow);
  ASSERT_TRUE(third.ok());
  const MissingBans none = ConfirmedMissingBans(*first, *third);
  EXPECT_TRUE(none.hosts.empty());
  EXPECT_TRUE(none.nets.empty());
}

}  // namespace
}  // namespace mxward
