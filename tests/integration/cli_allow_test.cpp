// `mxward allow` against the real daemon (`mxward serve` in a network namespace of the test's
// own, real nftables there, a Postfix policy socket): an address banned by a real brute force is
// allowlisted with --lift (its element leaves the kernel set, its failures open nothing, the
// policy server answers DUNNO), removing the entry lets the next brute force ban again, --for
// ends an entry on its own, and a restart keeps what was added.
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/daemon.h"
#include "support/eventually.h"
#include "support/nft_sets.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

const std::string kBinary = MXWARD_BINARY;
constexpr int kSyslogPort = 5514;

class CliAllowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string problem = testing::EnterNamespaceWithNft();
    ASSERT_EQ(problem, "");
    rules_ = testing::WriteSaslBanRules(dir_.path());
    db_ = dir_.file("state.db");
    socket_ = dir_.file("control.sock");
    std::filesystem::create_directories(dir_.file("spool/private"));
    policy_socket_ = dir_.file("spool/private/mxward-policy");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "[nftables]\nenabled = true\n"
                           << "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:" << kSyslogPort
                           << "\"\nallowed_senders = [\"127.0.0.1\"]\n"
                           << "[policy.postfix]\nenabled = true\nsocket = \"" << policy_socket_
                           << "\"\n";
    Start("serve.log");
  }

  void TearDown() override { EXPECT_TRUE(daemon_.Stop()) << daemon_.Log(); }

  void Start(const std::string& log) {
    ASSERT_TRUE(daemon_.Start(
        kBinary, {"--db", db_, "--config", config_, "--rules", rules_, "--socket", socket_},
        dir_.file(log)));
    ASSERT_TRUE(daemon_.WaitForLog(" ready: ")) << daemon_.Log();
  }

  testing::CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {kBinary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--db", db_, "--config", config_, "--socket", socket_});
    return testing::RunCommand(argv, "", {"TZ=UTC", "NO_COLOR=1"});
  }

  // n Postfix SASL failures from each address, in this order, on one connection.
  static void SendFailures(const std::vector<std::string>& addrs, int n = 20) {
    const std::string stamp = testing::SyslogStampNow();
    std::string data;
    for (const auto& addr : addrs) {
      for (int i = 0; i < n; ++i) {
        data += "<22>" + stamp + " mx1 postfix/submission/smtpd[4101]: warning: unknown[" + addr +
                "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n";
      }
    }
    ASSERT_TRUE(testing::SendTcp(kSyslogPort, data));
  }

  std::size_t Incidents(const std::string& key) {
    auto store = IncidentStore::Open(db_);
    if (!store.ok()) return 0;
    IncidentQuery q;
    q.key = key;
    auto list = (*store)->ListIncidents(q);
    return list.ok() ? list->size() : 0;
  }

  bool Banned(const std::string& addr) {
    return testing::KernelSetAddresses("banned_v4").count(addr) > 0;
  }

  // One Postfix policy request (CONNECT) for client; the action line.
  std::string AskPostfix(const std::string& client) {
    return testing::AskPostfixPolicy(policy_socket_,
                                     "request=smtpd_access_policy\nprotocol_state=CONNECT\n"
                                     "client_address=" +
                                         client + "\nrecipient_count=0\n");
  }

  testing::TempDir dir_;
  std::string rules_, db_, socket_, config_, policy_socket_;
  testing::ServeProcess daemon_;
};

TEST_F(CliAllowTest, LiftStopsBansUntilRemovedAndSurvivesARestart) {
  // A real brute force, banned in the kernel and refused by the policy server.
  SendFailures({"203.0.113.7"});
  ASSERT_TRUE(daemon_.WaitFor([&] { return Banned("203.0.113.7"); })) << daemon_.Log();
  EXPECT_EQ(AskPostfix("203.0.113.7"), "action=REJECT 5.7.1 Access denied by policy");

  auto r = Mxward({"allow", "add", "203.0.113.0/24", "--note", "office NAT", "--lift"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("allowlist: added 203.0.113.0/24 permanently by root: office NAT"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("undo ban 203.0.113.7: done"), std::string::npos) << r.out;
  EXPECT_FALSE(Banned("203.0.113.7"));
  EXPECT_TRUE(daemon_.WaitForLog("allowlist: added 203.0.113.0/24 permanently by root"));
  EXPECT_EQ(AskPostfix("203.0.113.7"), "action=DUNNO");

  // Failures from inside the prefix open nothing; a later address on the same connection is
  // the marker that the engine has read them all.
  SendFailures({"203.0.113.7", "203.0.113.8", "198.51.100.20"});
  ASSERT_TRUE(daemon_.WaitFor([&] { return Banned("198.51.100.20"); })) << daemon_.Log();
  EXPECT_EQ(Incidents("203.0.113.7"), 1u);
  EXPECT_EQ(Incidents("203.0.113.8"), 0u);
  // Nor does a ban by hand get through the dispatcher.
  r = Mxward({"bans", "add", "203.0.113.9", "--for", "5m"});
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_NE(r.out.find("203.0.113.0/24, mxward allow"), std::string::npos) << r.out;

  r = Mxward({"allow", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = nlohmann::json::parse(r.out);
  ASSERT_EQ(list.size(), 1u) << r.out;
  EXPECT_EQ(list[0].at("address"), "203.0.113.0/24");
  EXPECT_EQ(list[0].at("created_by"), "root");
  EXPECT_EQ(list[0].at("expires_at"), nullptr);

  // A restart keeps the entry.
  ASSERT_TRUE(daemon_.Stop()) << daemon_.Log();
  Start("serve2.log");
  r = Mxward({"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("allowlist").at("runtime"), 1) << r.out;
  EXPECT_EQ(AskPostfix("203.0.113.7"), "action=DUNNO");
  SendFailures({"203.0.113.8", "198.51.100.21"});
  ASSERT_TRUE(daemon_.WaitFor([&] { return Banned("198.51.100.21"); })) << daemon_.Log();
  EXPECT_EQ(Incidents("203.0.113.8"), 0u);

  // Removed: the next brute force bans again.
  r = Mxward({"allow", "remove", "203.0.113.0/24"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "allowlist: removed 203.0.113.0/24 by root\n");
  SendFailures({"203.0.113.8"});
  ASSERT_TRUE(daemon_.WaitFor([&] { return Banned("203.0.113.8"); })) << daemon_.Log();
  EXPECT_EQ(Incidents("203.0.113.8"), 1u);
}

TEST_F(CliAllowTest, AnEntryForAWhileEndsOnItsOwn) {
  auto r = Mxward({"allow", "add", "192.0.2.50", "--for", "5s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("allowlist: added 192.0.2.50 for 5s by root"), std::string::npos) << r.out;
  // While it holds, a brute force opens nothing (the marker address shows the engine read it).
  SendFailures({"192.0.2.50", "198.51.100.30"});
  ASSERT_TRUE(daemon_.WaitFor([&] { return Banned("198.51.100.30"); })) << daemon_.Log();
  // (Unless the 5 seconds were already over when the engine read them: a loaded machine.)
  const bool still_listed = !nlohmann::json::parse(Mxward({"allow", "list", "--json"}).out).empty();
  if (still_listed) {
    EXPECT_EQ(Incidents("192.0.2.50"), 0u);
  }
  // Then, with no restart and no change, it stops applying: a brute force bans again.
  ASSERT_TRUE(testing::Eventually(
      [&] {
        SendFailures({"192.0.2.50"});
        return Banned("192.0.2.50");
      },
      std::chrono::seconds(20), std::chrono::milliseconds(250)))
      << daemon_.Log();
  r = Mxward({"allow", "list", "--all", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto all = nlohmann::json::parse(r.out);
  ASSERT_EQ(all.size(), 1u) << r.out;
  EXPECT_EQ(all[0].at("state"), "expired");
  EXPECT_TRUE(nlohmann::json::parse(Mxward({"allow", "list", "--json"}).out).empty());
}

}  // namespace
}  // namespace mxward
