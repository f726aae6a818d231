// The allow.add / allow.remove control requests (control_protocol.h) on a real store: what is
// refused and why, who is recorded, and the unban queued per covered ban with "lift".
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "mxward/control_protocol.h"
#include "mxward/incident_store.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;

class AllowRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/allow_requests_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db";
    std::remove(path_.c_str());
    auto s = IncidentStore::Open(path_);
    ASSERT_OK(s);
    store_ = std::move(*s);
  }

  nlohmann::json Run(nlohmann::json req) {
    if (!req.contains("peer")) req["peer"] = PeerIdentity(0);
    return ExecuteControlRequest(store_.get(), req, kT0);
  }

  std::string Error(nlohmann::json req) {
    auto r = ControlResult(Run(std::move(req)));
    return r.ok() ? std::string("(accepted)") : r.status().message();
  }

  std::string path_;
  std::unique_ptr<IncidentStore> store_;
};

TEST_F(AllowRequestsTest, RefusesNonsense) {
  EXPECT_NE(
      Error({{"op", "allow.add"}, {"address", "0.0.0.0/0"}, {"force", true}}).find("every address"),
      std::string::npos);
  EXPECT_NE(Error({{"op", "allow.add"}, {"address", "::/0"}, {"force", true}}).find("every"),
            std::string::npos);
  EXPECT_NE(Error({{"op", "allow.add"}, {"address", "10.0.0.0/7"}}).find("--force"),
            std::string::npos);
  EXPECT_NE(Error({{"op", "allow.add"}, {"address", "2001:db8::/31"}}).find("wider than /32"),
            std::string::npos);
  EXPECT_NE(Error({{"op", "allow.add"}, {"address", "192.0.2.0/33"}}).find("not an IP"),
            std::string::npos);
  EXPECT_NE(Error({{"op", "allow.add"}, {"address", "192.0.2.9/24"}}).find("did you mean"),
            std::string::npos);
  EXPECT_NE(Error({{"op", "allow.add"}, {"address", "192.0.2.7"}, {"for_s", 0}}).find("positive"),
            std::string::npos);
  EXPECT_NE(
      Error({{"op", "allow.add"}, {"address", "192.0.2.7"}, {"note", "a\nb"}}).find("one line"),
      std::string::npos);
  EXPECT_NE(Error({{"op", "allow.remove"}, {"address", "192.0.2.7"}}).find("not on the runtime"),
            std::string::npos);
  // Forced, a wide prefix is fine.
  EXPECT_EQ(Error({{"op", "allow.add"}, {"address", "10.0.0.0/7"}, {"force", true}}), "(accepted)");
  auto rows = store_->ListAllow(kT0);
  ASSERT_OK(rows);
  EXPECT_EQ(rows->size(), 1u);
}

TEST_F(AllowRequestsTest, RecordsThePeerNotAClientString) {
  nlohmann::json req = {{"op", "allow.add"},       {"address", "2001:db8:0:0:0:0:0:7"},
                        {"for_s", 7 * 86400},      {"note", "monitoring"},
                        {"created_by", "mallory"}, {"peer", PeerIdentity(0)}};
  auto r = ControlResult(Run(req));
  ASSERT_OK(r);
  EXPECT_EQ((*r)["address"], "2001:db8::7");  // exactly what was typed, canonical
  EXPECT_EQ((*r)["created_by"], "root");
  EXPECT_EQ((*r)["audit"], "allowlist: added 2001:db8::7 for 7d by root: monitoring");
  auto rows = store_->ListAllow(kT0);
  ASSERT_OK(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].created_by, "root");
  EXPECT_EQ((*rows)[0].expires_at, kT0 + 7 * 86400 * kMicrosPerSecond);
  auto removed = ControlResult(Run({{"op", "allow.remove"}, {"address", "2001:db8::7"}}));
  ASSERT_OK(removed);
  EXPECT_EQ((*removed)["audit"], "allowlist: removed 2001:db8::7 by root");
}

TEST_F(AllowRequestsTest, LiftQueuesAnUnbanPerCoveredBan) {
  ASSERT_OK(store_->UpsertBan({"198.51.100.7", kT0, 0, 0, "brute force", "mail"}));
  ASSERT_OK(store_->UpsertBan({"198.51.100.9", kT0, 0, 0, "brute force", "web"}));
  ASSERT_OK(store_->UpsertBan({"198.51.0.0/16", kT0, 0, 0, "wide", "mail"}));
  ASSERT_OK(store_->UpsertBan({"192.0.2.1", kT0, 0, 0, "elsewhere", "mail"}));
  auto without = ControlResult(Run({{"op", "allow.add"}, {"address", "198.51.100.0/24"}}));
  ASSERT_OK(without);
  EXPECT_TRUE((*without)["action_ids"].empty());
  auto r =
      ControlResult(Run({{"op", "allow.add"}, {"address", "198.51.100.0/24"}, {"lift", true}}));
  ASSERT_OK(r);
  ASSERT_EQ((*r)["action_ids"].size(), 2u);
  EXPECT_EQ((*r)["wider_bans"], nlohmann::json::array({"198.51.0.0/16"}));
  std::set<std::string> lifted;
  for (const auto& id : (*r)["action_ids"]) {
    auto a = store_->GetAction(id.get<std::int64_t>());
    ASSERT_OK(a);
    EXPECT_TRUE(a->revert);
    EXPECT_EQ(a->type, "ban");
    lifted.insert(a->params["address"].get<std::string>() + " " +
                  a->params["ports"].get<std::string>());
  }
  EXPECT_EQ(lifted, (std::set<std::string>{"198.51.100.7 mail", "198.51.100.9 web"}));
}

}  // namespace
}  // namespace mxward
