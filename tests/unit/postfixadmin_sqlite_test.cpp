// PostfixAdminAccounts on SQLite (PostfixAdmin's SQLite schema from tests/data/postfixadmin),
// the [postfixadmin] section, dry-run, hold_queue's argv, and the factory. The same scenarios run
// against real MariaDB and PostgreSQL servers in tests/integration/postfixadmin_*_test.cpp.
#include <sqlite3.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "actions/postfixadmin/postfixadmin_accounts.h"
#include "mxward/action_dispatcher.h"
#include "mxward/action_registry.h"
#include "support/postfixadmin_scenarios.h"
#include "support/status_matchers.h"
#include "support/subprocess.h"

namespace mxward {
namespace {

using testing::TempDir;

Config ConfigFrom(const std::string& toml_text) {
  Config c = Config::Defaults();
  c.source = "mxward.toml";
  c.document = toml::parse(std::string_view(toml_text), std::string_view("mxward.toml"));
  return c;
}

class PostfixAdminSqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.file("postfixadmin.db").c_str(), &db), SQLITE_OK);
    const std::string schema =
        testing::ReadTextFile(std::string(MXWARD_TEST_DATA) + "/postfixadmin/sqlite.sql");
    ASSERT_FALSE(schema.empty());
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(db, schema.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
    sqlite3_close(db);
    options_.database.backend = SqlConnectionOptions::Backend::kSqlite;
    options_.database.path = dir_.file("postfixadmin.db");
  }

  TempDir dir_;
  PostfixAdminOptions options_;
};

TEST_F(PostfixAdminSqliteTest, AllScenarios) {
  testing::PostfixAdminScenarios scenarios(options_, dir_.file("mxward.db"));
  auto db = scenarios.OpenChecker();
  ASSERT_NE(db, nullptr);
  scenarios.RunAll(db.get());
}

TEST_F(PostfixAdminSqliteTest, TablePrefixIsHonoured) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(options_.database.path.c_str(), &raw), SQLITE_OK);
  for (const char* t : {"mailbox", "alias", "log"}) {
    const std::string sql = std::string("ALTER TABLE ") + t + " RENAME TO pfa_" + t;
    ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  }
  ASSERT_EQ(sqlite3_exec(raw,
                         "INSERT INTO pfa_mailbox (username, password, name, maildir, local_part, "
                         "domain) VALUES ('carol@example.org', '', '', '', 'carol', "
                         "'example.org')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  options_.table_prefix = "pfa_";
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  ASSERT_OK(accounts.Start());
  ASSERT_TRUE(accounts.Apply(testing::AccountAction("suspend_sending", "carol@example.org")).ok());
  auto check = accounts.Check(testing::AccountAction("suspend_sending", "carol@example.org"));
  ASSERT_OK(check);
  EXPECT_TRUE(*check);
}

TEST_F(PostfixAdminSqliteTest, StartReportsASchemaWithoutSmtpActive) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(options_.database.path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(raw, "ALTER TABLE mailbox DROP COLUMN smtp_active", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(raw);
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  Status s = accounts.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("smtp_active"), std::string::npos) << s.ToString();
}

TEST_F(PostfixAdminSqliteTest, MissingDatabaseIsTransientAndNotCreated) {
  options_.database.path = dir_.file("absent.db");
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  Status s = accounts.Apply(testing::AccountAction("suspend", "alice@example.org"));
  EXPECT_TRUE(s.transient()) << s.ToString();
  struct stat st;
  EXPECT_NE(stat(options_.database.path.c_str(), &st), 0);
}

TEST_F(PostfixAdminSqliteTest, DryRunRecordsAndChangesNothing) {
  options_.dry_run = true;
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  ASSERT_OK(accounts.Start());
  ASSERT_TRUE(accounts.Apply(testing::AccountAction("suspend", "alice@example.org")).ok());
  ASSERT_EQ(accounts.dry_run_log().size(), 1u);
  EXPECT_NE(accounts.dry_run_log()[0].find("alice@example.org: mailbox.active = 0"),
            std::string::npos)
      << accounts.dry_run_log()[0];
  struct stat st;
  EXPECT_NE(stat(dir_.file("mxward.db").c_str(), &st), 0) << "no store writes in dry-run";
}

TEST_F(PostfixAdminSqliteTest, HoldQueueRunsPostsuperWithValidatedIds) {
  // A stand-in for postsuper (Postfix is not installed here) that records its argv.
  const std::string fake = dir_.file("postsuper");
  {
    std::ofstream out(fake);
    out << "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done >> " << dir_.file("calls") << "\n";
  }
  chmod(fake.c_str(), 0755);
  options_.postsuper = fake;
  PostfixAdminAccounts accounts(options_, dir_.file("mxward.db"), SystemClock::Instance());
  ActionRecord hold = testing::AccountAction("hold_queue", "alice@example.org");
  hold.params["queue_ids"] = {"4ZqXj61Xz9z1Vyr", "3F2A1B0C9D"};
  ASSERT_TRUE(accounts.Apply(hold).ok());
  ASSERT_TRUE(accounts.Revert(hold).ok());
  EXPECT_EQ(testing::ReadTextFile(dir_.file("calls")),
            "-h\n4ZqXj61Xz9z1Vyr\n-h\n3F2A1B0C9D\n-H\n4ZqXj61Xz9z1Vyr\n-H\n3F2A1B0C9D\n");

  hold.params["queue_ids"] = {"-d ALL"};
  EXPECT_EQ(accounts.Apply(hold).code(), Status::Code::kInvalidArgument);
  hold.params["queue_ids"] = {"ABCDE12345; rm"};
  EXPECT_EQ(accounts.Apply(hold).code(), Status::Code::kInvalidArgument);
}

TEST(PostfixAdminOptionsTest, ReadsEverySetting) {
  TempDir dir;
  {
    std::ofstream out(dir.file("pw"));
    out << "s3cret\n";
  }
  ASSERT_EQ(chmod(dir.file("pw").c_str(), 0600), 0);  // a secret file others may read is refused
  std::vector<Diagnostic> diags;
  auto o = PostfixAdminOptions::FromConfig(ConfigFrom(R"(
[postfixadmin]
backend = "pgsql"
host = "127.0.0.1"
port = 5433
user = "pfa"
password_file = ")" + dir.file("pw") + R"("
database = "mail"
table_prefix = "pfa_"
log_admin = "abuse-bot"
flush_auth_cache = true
kick = true
command_timeout = "30s"
connect_timeout = 3
)"),
                                           &diags);
  ASSERT_TRUE(o.ok()) << (diags.empty() ? "" : diags[0].ToString());
  EXPECT_EQ(o->database.backend, SqlConnectionOptions::Backend::kPostgres);
  EXPECT_EQ(o->database.port, 5433);
  EXPECT_EQ(o->database.password, "s3cret");
  EXPECT_EQ(o->database.database, "mail");
  EXPECT_EQ(o->table_prefix, "pfa_");
  EXPECT_EQ(o->command_timeout_ms, 30000);
  EXPECT_EQ(o->database.connect_timeout_s, 3);
  EXPECT_TRUE(o->kick);
}

TEST(PostfixAdminOptionsTest, DiagnosticsAreLocated) {
  std::vector<Diagnostic> diags;
  auto o = PostfixAdminOptions::FromConfig(ConfigFrom("[postfixadmin]\n"
                                                      "backend = \"oracle\"\n"
                                                      "table_prefix = \"x; DROP TABLE\"\n"
                                                      "doveadm = \"doveadm\"\n"
                                                      "hots = \"db\"\n"),
                                           &diags);
  ASSERT_FALSE(o.ok());
  std::string all;
  for (const auto& d : diags) all += d.ToString() + "\n";
  EXPECT_NE(all.find("mxward.toml:2:11: error: 'backend' must be one of"), std::string::npos)
      << all;
  EXPECT_NE(all.find("mxward.toml:3:16: error: 'table_prefix' must be a name"), std::string::npos)
      << all;
  EXPECT_NE(all.find("mxward.toml:4:11: error: 'doveadm' must be an absolute path"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("unknown key 'hots' in [postfixadmin]"), std::string::npos) << all;
}

TEST(PostfixAdminOptionsTest, SqliteNeedsPath) {
  std::vector<Diagnostic> diags;
  EXPECT_FALSE(
      PostfixAdminOptions::FromConfig(ConfigFrom("[postfixadmin]\nbackend = \"sqlite\"\n"), &diags)
          .ok());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_NE(diags[0].message.find("needs 'path'"), std::string::npos);
}

TEST(MakePostfixAdminAccountsTest, NullWhenAbsentOrDisabledAndDryRunNoted) {
  std::vector<Diagnostic> diags;
  std::vector<std::string> notes;
  auto absent = MakePostfixAdminAccounts(ConfigFrom(""), "/x", &diags, &notes);
  ASSERT_OK(absent);
  EXPECT_EQ(absent->get(), nullptr);
  auto disabled = MakePostfixAdminAccounts(ConfigFrom("[postfixadmin]\nenabled = false\n"), "/x",
                                           &diags, &notes);
  ASSERT_OK(disabled);
  EXPECT_EQ(disabled->get(), nullptr);
  EXPECT_TRUE(notes.empty());

  Config global = ConfigFrom("[postfixadmin]\nbackend = \"mysql\"\n");
  global.dry_run = true;
  auto e = MakePostfixAdminAccounts(global, "/x", &diags, &notes);
  ASSERT_OK(e);
  ASSERT_NE(e->get(), nullptr);
  EXPECT_TRUE((*e)->Handles("suspend"));
  EXPECT_TRUE((*e)->Handles("hold_queue"));
  EXPECT_FALSE((*e)->Handles("ban"));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("postfixadmin: dry-run"), std::string::npos);
}

// Timed suspensions end by themselves: the dispatcher's periodic pass queues one durable revert
// when `until` passes, and the revert puts back exactly the values from before.
TEST_F(PostfixAdminSqliteTest, TimedSuspensionsAreRevertedOnceWhenTheirTimeIsUp) {
  constexpr UnixMicros kT0 = 1'800'000'000LL * kMicrosPerSecond;
  ManualClock clock(kT0);
  const std::string store_path = dir_.file("mxward.db");
  testing::PostfixAdminScenarios scenarios(options_, store_path);
  auto db = scenarios.OpenChecker();
  ASSERT_NE(db, nullptr);
  testing::SeedPostfixAdmin(db.get());
  const testing::MailboxRow before = testing::ReadMailbox(db.get(), testing::kAlice);
  auto store = scenarios.OpenStore();
  ASSERT_NE(store, nullptr);
  for (const char* kind : {"suspend", "suspend_sending", "require_password_change"}) {
    ActionRequest r{kind, {{"user", testing::kAlice}, {"duration_s", 3600}}, false};
    ASSERT_TRUE(store->EnqueueAction(42, r, false, clock.Now()).ok());
  }
  auto dispatcher = [&] {
    std::vector<std::unique_ptr<ActionExecutor>> e;
    e.push_back(std::make_unique<PostfixAdminAccounts>(options_, store_path, &clock));
    return std::make_unique<ActionDispatcher>(store_path, std::move(e), DispatcherOptions{},
                                              &clock);
  };
  ASSERT_TRUE(dispatcher()->RunDueOnce().ok());
  testing::MailboxRow row = testing::ReadMailbox(db.get(), testing::kAlice);
  EXPECT_FALSE(row.active);
  EXPECT_FALSE(row.smtp_active);
  EXPECT_TRUE(row.expired);
  auto suspensions = store->ActiveSuspensions();
  ASSERT_EQ(suspensions->size(), 3u);
  for (const auto& s : *suspensions) EXPECT_EQ(s.until, kT0 + 3600 * kMicrosPerSecond);

  // Not yet: nothing is queued.
  clock.Advance(3599 * kMicrosPerSecond);
  ASSERT_TRUE(dispatcher()->RunDueOnce().ok());
  EXPECT_FALSE(testing::ReadMailbox(db.get(), testing::kAlice).active);

  // Time is up. The reverts are queued once, even if two passes (a restart) look at it.
  clock.Advance(2 * kMicrosPerSecond);
  ASSERT_EQ(store->QueueExpiredSuspensionReverts(clock.Now())->size(), 3u);
  ASSERT_TRUE(dispatcher()->RunDueOnce().ok());
  ASSERT_TRUE(dispatcher()->RunDueOnce().ok());
  row = testing::ReadMailbox(db.get(), testing::kAlice);
  EXPECT_EQ(row.active, before.active);
  EXPECT_EQ(row.smtp_active, before.smtp_active);
  EXPECT_EQ(row.password_expiry, before.password_expiry);
  EXPECT_EQ(row.modified, before.modified);
  EXPECT_EQ(row.alias_active, before.alias_active);
  EXPECT_EQ(row.alias_modified, before.alias_modified);
  EXPECT_TRUE(store->ActiveSuspensions()->empty());
  int reverts = 0;
  auto actions = store->ActionsForIncident(42);
  ASSERT_OK(actions);
  for (const auto& a : *actions) {
    if (!a.revert) continue;
    ++reverts;
    EXPECT_EQ(a.status, ActionStatus::kDone) << a.type << ": " << a.last_error;
  }
  EXPECT_EQ(reverts, 3);
  // Three changes and three restores in PostfixAdmin's log.
  EXPECT_EQ(testing::ReadLog(db.get()).size(), 6u);
}

// [rules] local_domains_from_postfixadmin: the active domains of PostfixAdmin's domain table,
// never its 'ALL' row or an inactive domain; nothing when the setting is off.
TEST_F(PostfixAdminSqliteTest, LocalDomainsAreTheActiveDomains) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(options_.database.path.c_str(), &raw), SQLITE_OK);
  for (const char* sql : {"INSERT INTO domain (domain, description, transport, active) VALUES "
                          "('example.org', '', 'virtual', 1)",
                          "INSERT INTO domain (domain, description, transport, active) VALUES "
                          "('example.net', '', 'virtual', 1)",
                          "INSERT INTO domain (domain, description, transport, active) VALUES "
                          "('old.example', '', 'virtual', 0)",
                          "INSERT INTO domain (domain, description, transport, active) VALUES "
                          "('ALL', '', 'virtual', 1)"}) {
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(raw, sql, nullptr, nullptr, &error), SQLITE_OK) << error;
  }
  sqlite3_close(raw);

  auto conn = SqlConnection::Open(options_.database);
  ASSERT_OK(conn);
  auto domains = ReadPostfixAdminDomains(conn->get(), options_);
  ASSERT_OK(domains);
  EXPECT_EQ(*domains, (std::vector<std::string>{"example.net", "example.org"}));

  const std::string section =
      "[postfixadmin]\nbackend = \"sqlite\"\npath = \"" + options_.database.path + "\"\n";
  Config on = ConfigFrom(section);
  on.local_domains_from_postfixadmin = true;
  auto from_registry = LocalDomainsFromBackends(on);
  ASSERT_OK(from_registry);
  EXPECT_EQ(*from_registry, (std::vector<std::string>{"example.net", "example.org"}));

  Config off = ConfigFrom(section);
  auto none = LocalDomainsFromBackends(off);
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());

  Config missing = ConfigFrom("");
  missing.local_domains_from_postfixadmin = true;
  EXPECT_FALSE(LocalDomainsFromBackends(missing).ok());
}

}  // namespace
}  // namespace mxward
