// PostfixAdminAccounts against a real PostgreSQL 15 server the test starts in a temp dir (Debian's
// postgresql-15, run as nobody), with PostfixAdmin's PostgreSQL schema (booleans t/f, timestamps
// with time zone, foreign keys) and a scram-sha-256 password-authenticated role that has only
// SELECT, INSERT and UPDATE, over TCP on 127.0.0.1.
#include <gtest/gtest.h>

#include "integration/support/postfixadmin_scenarios.h"
#include "integration/support/postgres_server.h"
#include "mxward/postfixadmin_accounts.h"

namespace mxward {
namespace {

constexpr const char* kUser = "pfa_mxward";
constexpr const char* kPassword = "Pfa-test-pw-1";

class PostfixAdminPostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string error = server_.Start();
    ASSERT_EQ(error, "") << "a real PostgreSQL is required for this test";
    auto r = server_.Sql("CREATE DATABASE postfixadmin");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = server_.SqlFile(std::string(MXWARD_TEST_DATA) + "/postfixadmin/pgsql.sql", "postfixadmin");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = server_.Sql(std::string("CREATE ROLE ") + kUser + " LOGIN PASSWORD '" + kPassword + "'; " +
                        "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO " + kUser +
                        "; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO " + kUser + ";",
                    "postfixadmin");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    options_.database.backend = SqlConnectionOptions::Backend::kPostgres;
    options_.database.host = "127.0.0.1";
    options_.database.port = server_.port();
    options_.database.user = kUser;
    options_.database.password = kPassword;
    options_.database.database = "postfixadmin";
    options_.database.connect_timeout_s = 5;
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
  ASSERT_TRUE(accounts->Start().ok());
  const ActionRecord action = testing::AccountAction("require_password_change", testing::kAlice);

  server_.Stop();
  Status down = accounts->Apply(action);
  EXPECT_EQ(down.code(), Status::Code::kUnavailable) << down.ToString();
  down = accounts->Apply(action);  // a fresh connection: refused
  EXPECT_EQ(down.code(), Status::Code::kUnavailable) << down.ToString();
  EXPECT_NE(down.message().find("PostgreSQL"), std::string::npos) << down.ToString();

  ASSERT_EQ(server_.Start(), "");
  Status up = accounts->Apply(action);
  ASSERT_TRUE(up.ok()) << up.ToString();
  auto check = accounts->Check(action);
  ASSERT_TRUE(check.ok()) << check.status().ToString();
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
