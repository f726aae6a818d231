// `mxward bans add|remove` and `incidents resolve --revert` without a daemon, against the real
// kernel: the test process moves into a network namespace of its own (unshare(CLONE_NEWNET)), so
// the binary it runs and `nft` see that namespace's ruleset and the host's is never touched.
#include <sched.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxward/incident_store.h"
#include "support/nft_sets.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::CommandResult;
using testing::KernelSetAddresses;
using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;

class CliBansNftTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (unshare(CLONE_NEWNET) != 0) {
      unshare_error_ = std::strerror(errno);
      return;
    }
    in_own_netns_ = true;
  }

  void SetUp() override {
    ASSERT_TRUE(in_own_netns_) << "unshare(CLONE_NEWNET) failed (integration tests run as root): "
                               << unshare_error_;
    ASSERT_EQ(RunCommand({"nft", "--version"}).exit_code, 0) << "nft is not installed";
    RunCommand({"nft", "flush", "ruleset"});
    db_ = dir_.file("state.db");
    config_ = dir_.file("mxward.toml");
    std::ofstream(config_) << "[nftables]\nenabled = true\n";
  }

  CommandResult Mxward(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        kBinary, "--db", db_, "--config", config_, "--socket", dir_.file("none.sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", {"TZ=UTC"});
  }

  // Addresses and prefixes in the kernel's set, as `nft -j` prints them.
  std::set<std::string> Elements(const std::string& set) { return KernelSetAddresses(set); }

  static inline bool in_own_netns_ = false;
  static inline std::string unshare_error_;
  TempDir dir_;
  std::string db_, config_;
};

TEST_F(CliBansNftTest, AddAndRemoveReachTheKernel) {
  auto r = Mxward({"bans", "add", "198.51.100.0/24", "--for", "1h", "--reason", "cli test"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("daemon not running: acting directly"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("ban 198.51.100.0/24 for 1h (ports: mail): done (action #1)\n"),
            std::string::npos)
      << r.out;
  // Prefixes go to the interval set, single addresses to the hash sets.
  EXPECT_EQ(Elements("banned_v4_net"), (std::set<std::string>{"198.51.100.0/24"}));
  EXPECT_TRUE(Elements("banned_v4").empty());

  r = Mxward({"bans", "add", "2001:db8:bad::1", "--for", "10m"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v6"), (std::set<std::string>{"2001:db8:bad::1"}));

  r = Mxward({"bans", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> listed;
  for (const auto& b : nlohmann::json::parse(r.out)) listed.insert(b.at("address"));
  EXPECT_EQ(listed, (std::set<std::string>{"198.51.100.0/24", "2001:db8:bad::1"}));

  r = Mxward({"bans", "remove", "198.51.100.0/24"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(Elements("banned_v4_net").empty());
  EXPECT_EQ(Elements("banned_v6"), (std::set<std::string>{"2001:db8:bad::1"}));
  r = Mxward({"bans", "list", "--json"});
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 1u) << r.out;
}

// Issue 15: `bans add --ports` chooses the scope; one address may be banned in two scopes, each
// listed; `bans remove --ports` lifts one, `bans remove` every one.
TEST_F(CliBansNftTest, PortScopesFromAddToListToRemove) {
  auto r = Mxward({"bans", "add", "203.0.113.9", "--for", "1h", "--ports", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v4_web"), (std::set<std::string>{"203.0.113.9"}));
  EXPECT_TRUE(Elements("banned_v4").empty());
  r = Mxward({"bans", "add", "203.0.113.9", "--for", "2h"});  // default: mail
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v4"), (std::set<std::string>{"203.0.113.9"}));
  r = Mxward({"bans", "add", "2001:db8:bad::/64", "--for", "1h", "--ports", "all"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v6_all_64"), (std::set<std::string>{"2001:db8:bad::"}));
  r = Mxward({"bans", "add", "192.0.2.5", "--for", "1h", "--ports", "443, 80"});  // = web
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v4_web"), (std::set<std::string>{"192.0.2.5", "203.0.113.9"}));

  r = Mxward({"bans", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> listed;
  for (const auto& b : nlohmann::json::parse(r.out)) {
    listed.insert(b.at("address").get<std::string>() + " " + b.at("ports").get<std::string>());
  }
  EXPECT_EQ(listed, (std::set<std::string>{"203.0.113.9 web", "203.0.113.9 mail",
                                           "2001:db8:bad::/64 all", "192.0.2.5 web"}));
  r = Mxward({"bans", "list"});
  EXPECT_NE(r.out.find("PORTS"), std::string::npos) << r.out;

  r = Mxward({"bans", "remove", "203.0.113.9", "--ports", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v4_web"), (std::set<std::string>{"192.0.2.5"}));
  EXPECT_EQ(Elements("banned_v4"), (std::set<std::string>{"203.0.113.9"}));
  r = Mxward({"bans", "add", "203.0.113.9", "--for", "1h", "--ports", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Mxward({"bans", "remove", "203.0.113.9"});  // every scope
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v4_web"), (std::set<std::string>{"192.0.2.5"}));
  EXPECT_TRUE(Elements("banned_v4").empty());
  r = Mxward({"bans", "list", "--json"});
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 2u) << r.out;

  // A group nobody configured is refused, not widened.
  r = Mxward({"bans", "add", "192.0.2.6", "--for", "1h", "--ports", "imaps"});
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("unknown port group 'imaps'"), std::string::npos)
      << r.out << r.err;
}

TEST_F(CliBansNftTest, ResolveWithRevertLiftsTheIncidentsBan) {
  {
    auto store = IncidentStore::Open(db_);
    ASSERT_OK(store);
    Incident inc;
    inc.playbook = "postfix-sasl";
    inc.key_kind = "client_ip";
    inc.key = "203.0.113.7";
    inc.first_seen = inc.last_seen = SystemClock::Instance()->Now();
    inc.actions = {{"ban", {{"address", "203.0.113.7"}, {"duration_s", 3600}}, false}};
    std::vector<Incident> batch{inc};
    ASSERT_TRUE((*store)->RecordIncidents(&batch, inc.first_seen).ok());
  }
  // Run the incident's pending ban the way the CLI does when no daemon runs: any admin command
  // that acts runs the outbox, so a harmless one suffices.
  auto r = Mxward({"bans", "add", "192.0.2.1", "--for", "1m"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Elements("banned_v4"), (std::set<std::string>{"192.0.2.1", "203.0.113.7"}));

  r = Mxward({"incidents", "show", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto shown = nlohmann::json::parse(r.out);
  ASSERT_EQ(shown.at("in_effect").size(), 1u) << r.out;
  EXPECT_EQ(shown.at("in_effect")[0].at("address"), "203.0.113.7");

  r = Mxward({"incidents", "resolve", "1", "--revert"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("undo ban 203.0.113.7: done"), std::string::npos) << r.out;
  EXPECT_EQ(Elements("banned_v4"), (std::set<std::string>{"192.0.2.1"}));
  r = Mxward({"incidents", "show", "1", "--json"});
  EXPECT_TRUE(nlohmann::json::parse(r.out).at("in_effect").empty()) << r.out;
}

}  // namespace
}  // namespace mxward
