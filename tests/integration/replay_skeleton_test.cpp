// The walking skeleton, end to end through the real binary: replay an annotated Postfix log
// (tests/data/skeleton/README.md), then read the incidents back with `mxward incidents list`.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::RunCommand;
using testing::TempDir;

const std::string kBinary = MXWARD_BINARY;
const std::string kRules = std::string(MXWARD_SOURCE_DIR) + "/rules.d";
const std::string kLog = std::string(MXWARD_TEST_DATA) + "/skeleton/mail.log";

class ReplaySkeletonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.file("state.db");
    auto r = RunCommand(
        {kBinary, "replay", "--db", db_, "--rules", kRules, "--config", "/dev/null", kLog});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    replay_stderr_ = r.err;
  }

  nlohmann::json ListIncidents(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {kBinary, "incidents", "list", "--json", "--limit", "1000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"--db", db_});  // global option after the subcommand
    auto r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  TempDir dir_;
  std::string db_;
  std::string replay_stderr_;
};

TEST_F(ReplaySkeletonTest, OpensOneIncidentPerOffendingAddressAndNoneBelowThreshold) {
  nlohmann::json all = ListIncidents({"--playbook", "postfix-sasl"});
  ASSERT_TRUE(all.is_array());
  std::multiset<std::string> keys;
  for (const auto& inc : all) {
    keys.insert(inc.at("key").get<std::string>());
    EXPECT_EQ(inc.at("playbook"), "postfix-sasl");
    EXPECT_EQ(inc.at("key_kind"), "client_ip");
    EXPECT_GE(inc.at("count").get<int>(), 20);
    EXPECT_EQ(inc.at("status"), "open");
  }
  EXPECT_EQ(keys, (std::multiset<std::string>{"203.0.113.7", "2001:db8:dead::/64"}));
}

TEST_F(ReplaySkeletonTest, IncidentCarriesEventTimeAndADryRunBan) {
  nlohmann::json all = ListIncidents({"--key", "203.0.113.7", "--playbook", "postfix-sasl"});
  ASSERT_EQ(all.size(), 1u);
  const auto& inc = all[0];
  // Event time comes from the line (Nov 23 09:00:00 .. 09:09:30 local time), never from now.
  const std::string first = inc.at("first_seen");
  const std::string last = inc.at("last_seen");
  EXPECT_NE(first, last);
  EXPECT_EQ(first.substr(0, 4), last.substr(0, 4));
  bool ban = false;
  for (const auto& a : inc.at("actions")) {
    if (a.at("type") == "ban") {
      ban = true;
      EXPECT_EQ(a.at("status"), "dry_run");
    }
  }
  EXPECT_TRUE(ban) << inc.dump();
}

TEST_F(ReplaySkeletonTest, ServerSideFaultsAndOrdinaryTrafficNeverBecomeIncidents) {
  for (const auto& inc : ListIncidents()) {
    const std::string key = inc.at("key");
    EXPECT_NE(key, "192.0.2.99") << "Connection lost to authentication server is not an attack";
    EXPECT_EQ(key.rfind("198.51.100.1", 0), std::string::npos) << inc.dump();
  }
}

TEST_F(ReplaySkeletonTest, TableOutputListsTheIncidents) {
  auto r = RunCommand({kBinary, "--db", db_, "incidents", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("203.0.113.7"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2001:db8:dead::/64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("postfix-sasl"), std::string::npos) << r.out;
}

TEST(ReplayCliTest, MissingFileIsAUsageError) {
  TempDir dir;
  auto r = RunCommand({kBinary, "replay", "--db", dir.file("x.db"), "/nonexistent/mail.log"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent/mail.log"), std::string::npos) << r.err;
}

TEST(ReplayCliTest, UnknownFlagIsAUsageError) {
  auto r = RunCommand({kBinary, "replay", "--no-such-flag", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace mxward
