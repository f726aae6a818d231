// Fault: someone flushes the ruleset (`nft flush ruleset`, a reload of nftables.service) or deletes
// mxward's table while `mxward serve` is running with bans in force. The daemon's nftables
// executor notices on its next maintenance tick (about once a second) and puts the table back with
// every unexpired ban, with no new event needed. Real serve, real kernel, in a network namespace
// of the test's own; bans come from SASL failures over TCP.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/daemon.h"
#include "support/nft_sets.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

const std::string kBinary = MXWARD_BINARY;
constexpr int kSyslogPort = 5514;
constexpr std::int64_t kBanSeconds = 3600;

// The elements of one of mxward's sets and their kernel timeouts; empty when the set is missing.
std::map<std::string, std::int64_t> KernelSet(const std::string& set) {
  return testing::KernelSetElements(set);
}

std::size_t Count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class NftRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& ns = testing::NetworkNamespace::Enter();
    ASSERT_TRUE(ns.ok()) << "cannot make a network namespace: " << ns.error();
    ASSERT_EQ(testing::RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
    testing::RunCommand({"nft", "flush", "ruleset"});

    const std::string rules = testing::WriteSaslBanRules(dir_.path());
    const std::string config = dir_.file("mxward.toml");
    std::ofstream(config) << fmt::format(
        "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:{}\"\n[nftables]\nenabled = true\n",
        kSyslogPort);
    ASSERT_TRUE(daemon_.Start(kBinary,
                              {"--db", dir_.file("state.db"), "--config", config, "--rules", rules,
                               "--socket", dir_.file("control.sock")},
                              dir_.file("serve.log")));
    ASSERT_TRUE(daemon_.WaitForLog("ready:")) << daemon_.Log();
  }

  void TearDown() override {
    EXPECT_TRUE(daemon_.Stop()) << daemon_.Log();
    testing::RunCommand({"nft", "flush", "ruleset"});
  }

  // Twenty SASL failures per attacker over TCP: one incident and one ban each.
  void Attack(const std::vector<std::string>& attackers) {
    const std::string stamp = testing::SyslogStampNow();
    std::string burst;
    for (const std::string& a : attackers) {
      for (int i = 0; i < 20; ++i) {
        burst += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + a +
                 "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
      }
    }
    ASSERT_TRUE(testing::SendTcp(kSyslogPort, burst));
  }

  bool AllBanned(const std::vector<std::string>& v4, const std::vector<std::string>& v6) {
    const auto set4 = KernelSet("banned_v4");
    const auto set6 = KernelSet("banned_v6");
    for (const auto& a : v4) {
      if (!set4.count(a)) return false;
    }
    for (const auto& a : v6) {
      if (!set6.count(a)) return false;
    }
    return true;
  }

  // Runs the damaging command, then polls until every ban is back; returns the seconds it took.
  double DamageAndWaitForRestore(const std::vector<std::string>& damage,
                                 const std::vector<std::string>& v4,
                                 const std::vector<std::string>& v6) {
    auto r = testing::RunCommand(damage);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(daemon_.WaitFor([&] { return AllBanned(v4, v6); }, std::chrono::seconds(20)))
        << "bans not restored after `" << fmt::format("{}", fmt::join(damage, " ")) << "`\n"
        << daemon_.Log();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  testing::TempDir dir_;
  testing::ServeProcess daemon_;
};

TEST_F(NftRestoreTest, FlushedRulesetAndDeletedTableComeBackWithEveryBan) {
  const std::vector<std::string> v4 = {"203.0.113.10", "203.0.113.11", "198.51.100.7"};
  const std::vector<std::string> v6 = {"2001:db8::66"};
  std::vector<std::string> all = v4;
  all.insert(all.end(), v6.begin(), v6.end());
  Attack(all);
  ASSERT_TRUE(daemon_.WaitFor([&] { return AllBanned(v4, v6); }, std::chrono::seconds(30)))
      << daemon_.Log();

  const double after_flush = DamageAndWaitForRestore({"nft", "flush", "ruleset"}, v4, v6);
  // The restored elements carry what is left of the hour, never more.
  for (const auto& [address, timeout] : KernelSet("banned_v4")) {
    EXPECT_GT(timeout, 0) << address;
    EXPECT_LE(timeout, kBanSeconds) << address;
  }
  const double after_delete =
      DamageAndWaitForRestore({"nft", "delete", "table", "inet", "mxward"}, v4, v6);
  // The drop rules came back with the sets (the table is rebuilt whole).
  auto chain = testing::RunCommand({"nft", "list", "chain", "inet", "mxward", "input"});
  EXPECT_NE(chain.out.find("ip saddr @banned_v4"), std::string::npos) << chain.out;
  EXPECT_NE(chain.out.find("ip6 saddr @banned_v6"), std::string::npos) << chain.out;

  // One log line per repair, with the count of bans it put back.
  const std::string log = daemon_.Log();
  EXPECT_EQ(Count(log, "table inet mxward is gone"), 2u) << log;
  EXPECT_EQ(Count(log, "re-created the table with 4 stored ban(s)"), 2u) << log;
  std::printf(
      "[ measure  ] %zu bans back in the kernel %.2f s after `nft flush ruleset`, %.2f s after "
      "`nft delete table inet mxward` (maintenance tick: 1 s)\n",
      all.size(), after_flush, after_delete);
  RecordProperty("restore_after_flush_ms", static_cast<int>(after_flush * 1000));
  RecordProperty("restore_after_delete_ms", static_cast<int>(after_delete * 1000));
}

}  // namespace
}  // namespace mxward
