// PostfixAdminAccounts against a real PostgreSQL 15 server the test starts in a temp dir (Debian's
// postgresql-15, run as nobody), with PostfixAdmin's PostgreSQL schema (booleans t/f, timestamps
// with time zone, foreign keys) and a scram-sha-256 password-authenticated role that has only
// SELECT, INSERT and UPDATE, over TCP on 127.0.0.1.
#include <gtest/gtest.h>

#include "actions/postfixadmin/postfixadmin_accounts.h"
#include "support/postfixadmin_scenarios.h"
#include "support/sql_servers.h"
#include "support/status_matchers.h"

namespace mxward {
namespace {

class PostfixAdminPostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(testing::StartPostfixAdminDatabase(server_, &options_.database), "");
  }

  testing::PostgresServer server_;
  testing::TempDir dir_;
  PostfixAdminOptions options_;
};

TEST_F(PostfixAdminPostgresTest, AllScenarios) {
  testing::PostfixAdminScenarios scenarios(options_, dir_.file("mxward.db"));
  auto db = scenarios.OpenChecker();
  ASSERT_NE(db, nullptr);
  scenarios.RunAll(db.get());
  // What Dovecot's documented PostgreSQL query compares against: booleans read t/f.
  auto r = server_.Sql(
      "SELECT active, smtp_active FROM mailbox WHERE username = "
      "'alice@example.org'",
      "postfixadmin");
  EXPECT_EQ(r.out, "t|t\n");
}

TEST_F(PostfixAdminPostgresTest, SuspendWritesFalseNotZero) {
  testing::PostfixAdminScenarios scenarios(options_, dir_.file("mxward.db"));
  auto db = scenarios.OpenChecker();
  ASSERT_NE(db, nullptr);
  testing::SeedPostfixAdmin(db.get());
  auto accounts = scenarios.MakeAccounts();
  ASSERT_TRUE(accounts->Apply(testing::AccountAction("suspend", testing::kAlice)).ok());
  auto r = server_.Sql(
      "SELECT m.active, a.active, m.active = 'f' FROM mailbox m JOIN alias a ON "
      "a.address = m.username WHERE m.username = 'alice@example.org'",
      "postfixadmin");
  EXPECT_EQ(r.out, "f|f|t\n");
}

TEST_F(PostfixAdminPostgresTest, ServerDownIsTransientAndRecoversAfterRestart) {
  testing::PostfixAdminScenarios scenarios(options_, dir_.file("mxward.db"));
  {
    auto db = scenarios.OpenChecker();
    ASSERT_NE(db, nullptr);
    testing::SeedPostfixAdmin(db.get());
  }
  auto accounts = scenarios.MakeAccounts();
  ASSERT_OK(accounts->Start());
  const ActionRecord action = testing::AccountAction("require_password_change", testing::kAlice);

  server_.Stop();
  Status down = accounts->Apply(action);
  EXPECT_EQ(down.code(), Status::Code::kUnavailable) << down.ToString();
  down = accounts->Apply(action);  // a fresh connection: refused
  EXPECT_EQ(down.code(), Status::Code::kUnavailable) << down.ToString();
  EXPECT_NE(down.message().find("PostgreSQL"), std::string::npos) << down.ToString();

  ASSERT_EQ(server_.Start(), "");
  Status up = accounts->Apply(action);
  ASSERT_OK(up);
  auto check = accounts->Check(action);
  ASSERT_OK(check);
  EXPECT_TRUE(*check);
}

TEST_F(PostfixAdminPostgresTest, WrongPasswordIsPermissionDeniedNotRetried) {
  options_.database.password = "wrong";
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  Status s = accounts.Start();
  EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
  EXPECT_FALSE(s.transient());
}

}  // namespace
}  // namespace mxward
