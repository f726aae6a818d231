// PostfixAdminAccounts against a real MariaDB server the test starts in a temp dir (Debian's
// mariadb-server), with PostfixAdmin's MySQL schema and a password-authenticated user that has
// only SELECT, INSERT and UPDATE on the database, over TCP on 127.0.0.1.
#include <gtest/gtest.h>

#include "actions/postfixadmin/postfixadmin_accounts.h"
#include "support/postfixadmin_scenarios.h"
#include "support/sql_servers.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

class PostfixAdminMariadbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(testing::StartPostfixAdminDatabase(server_, &options_.database), "");
  }

  testing::MariadbServer server_;
  testing::TempDir dir_;
  PostfixAdminOptions options_;
};

TEST_F(PostfixAdminMariadbTest, AllScenarios) {
  testing::PostfixAdminScenarios scenarios(options_, dir_.file("mxward.db"));
  auto db = scenarios.OpenChecker();
  ASSERT_NE(db, nullptr);
  scenarios.RunAll(db.get());
  // What PostfixAdmin's own queries see: booleans stored as 1/0 in tinyint(1).
  auto r = server_.Sql(
      "SELECT active, smtp_active FROM mailbox WHERE username = "
      "'alice@example.org'",
      "postfixadmin");
  EXPECT_EQ(r.out, "1\t1\n");
}

TEST_F(PostfixAdminMariadbTest, ServerDownIsTransientAndRecoversAfterRestart) {
  testing::PostfixAdminScenarios scenarios(options_, dir_.file("mxward.db"));
  {
    auto db = scenarios.OpenChecker();
    ASSERT_NE(db, nullptr);
    testing::SeedPostfixAdmin(db.get());
  }
  auto accounts = scenarios.MakeAccounts();
  ASSERT_OK(accounts->Start());
  const ActionRecord action = testing::AccountAction("suspend_sending", testing::kAlice);

  server_.Stop();
  Status down = accounts->Apply(action);
  EXPECT_EQ(down.code(), Status::Code::kUnavailable) << down.ToString();
  EXPECT_TRUE(down.transient());
  // Still down: connection refused on a fresh connection is transient too.
  down = accounts->Apply(action);
  EXPECT_EQ(down.code(), Status::Code::kUnavailable) << down.ToString();
  EXPECT_NE(down.message().find("MariaDB"), std::string::npos) << down.ToString();

  ASSERT_EQ(server_.Start(), "");
  Status up = accounts->Apply(action);  // the dispatcher's retry
  ASSERT_OK(up);
  auto check = accounts->Check(action);
  ASSERT_OK(check);
  EXPECT_TRUE(*check);
}

TEST_F(PostfixAdminMariadbTest, WrongPasswordIsPermissionDeniedNotRetried) {
  options_.database.password = "wrong";
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  Status s = accounts.Start();
  EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
  EXPECT_FALSE(s.transient());
  EXPECT_NE(s.message().find("Access denied"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace mxward
