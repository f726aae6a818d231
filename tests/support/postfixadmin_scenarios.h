// Test support: the PostfixAdmin account scenarios every backend must pass (SQLite in a unit
// test, MariaDB and PostgreSQL against real servers). Each scenario seeds PostfixAdmin rows,
// runs PostfixAdminAccounts actions, and reads the rows back through a second, independent
// SqlConnection, so what is checked is what Dovecot and Postfix would see.
// Header-only: include "support/postfixadmin_scenarios.h".
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "actions/postfixadmin/postfixadmin_accounts.h"
#include "actions/postfixadmin/sql_connection.h"
#include "mxward/incident_store.h"
#include "support/subprocess.h"

namespace mxward::testing {

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const char* kAlice = "alice@example.org";
inline const char* kBob = "bob@example.org";  // already inactive before mxward acts
inline const char* kSeedModified = "2020-01-02 03:04:05";
inline const char* kSeedExpiry = "2030-01-01 00:00:00";

// Seeds a domain, two mailboxes and their alias rows through prepared statements.
inline void SeedPostfixAdmin(SqlConnection* db) {
  const SqlDialect& d = db->dialect();
  auto exec = [&](const std::string& sql, const std::vector<SqlValue>& params) {
    auto r = db->Execute(sql, params);
    ASSERT_TRUE(r.ok()) << r.status().ToString() << " in " << sql;
  };
  exec(
      "INSERT INTO domain (domain, description, transport, created, modified, active) "
      "VALUES (?, ?, ?, ?, ?, ?)",
      {"example.org", "test", "virtual", kSeedModified, kSeedModified, d.bool_true});
  struct Box {
    const char* user;
    const char* local;
    const char* active;
  };
  for (const Box& b : {Box{kAlice, "alice", d.bool_true}, Box{kBob, "bob", d.bool_false}}) {
    exec(
        "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, "
        "created, modified, active, password_expiry, smtp_active) "
        "VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
        {b.user, "{SHA512-CRYPT}x", b.local, std::string("example.org/") + b.local + "/", b.local,
         "example.org", kSeedModified, kSeedModified, b.active, kSeedExpiry, d.bool_true});
    exec(
        "INSERT INTO alias (address, goto, domain, created, modified, active) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {b.user, b.user, "example.org", kSeedModified, kSeedModified, b.active});
  }
}

inline bool SqlTrue(const SqlValue& v) { return v && (*v == "1" || *v == "t"); }

struct MailboxRow {
  bool active = false;
  bool smtp_active = false;
  std::string modified;
  std::string password_expiry;
  bool alias_active = false;
  std::string alias_modified;
  bool expired = false;  // password_expiry <= now, as the database sees it
};

inline MailboxRow ReadMailbox(SqlConnection* db, const std::string& user) {
  MailboxRow row;
  auto m = db->Query(std::string("SELECT active, smtp_active, modified, password_expiry, CASE WHEN "
                                 "password_expiry <= ") +
                         db->dialect().now + " THEN 1 ELSE 0 END FROM mailbox WHERE username = ?",
                     {user});
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (!m.ok() || m->empty()) return row;
  const SqlRow& r = (*m)[0];
  row.active = SqlTrue(r[0]);
  row.smtp_active = SqlTrue(r[1]);
  row.modified = r[2].value_or("NULL");
  row.password_expiry = r[3].value_or("NULL");
  row.expired = SqlTrue(r[4]);
  auto a = db->Query("SELECT active, modified FROM alias WHERE address = ?", {user});
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  if (a.ok() && !a->empty()) {
    row.alias_active = SqlTrue((*a)[0][0]);
    row.alias_modified = (*a)[0][1].value_or("NULL");
  }
  return row;
}

struct LogRow {
  std::string username, domain, action, data;
};

inline std::vector<LogRow> ReadLog(SqlConnection* db) {
  std::vector<LogRow> out;
  auto rows = db->Query("SELECT username, domain, action, data FROM log ORDER BY id", {});
  EXPECT_TRUE(rows.ok()) << rows.status().ToString();
  if (!rows.ok()) return out;
  for (const auto& r : *rows) {
    out.push_back({r[0].value_or(""), r[1].value_or(""), r[2].value_or(""), r[3].value_or("")});
  }
  return out;
}

inline ActionRecord AccountAction(const std::string& type, const std::string& user,
                                  std::int64_t incident_id = 42) {
  ActionRecord a;
  a.id = 9;
  a.incident_id = incident_id;
  a.type = type;
  a.params = {{"user", user}};
  return a;
}

// Runs the scenarios against a database that has PostfixAdmin's schema and nothing else.
class PostfixAdminScenarios {
 public:
  // `open` opens a new connection to the database (for the executor and for checking).
  PostfixAdminScenarios(PostfixAdminOptions options, std::string store_path)
      : options_(std::move(options)), store_path_(std::move(store_path)) {}

  std::unique_ptr<SqlConnection> OpenChecker() {
    auto c = SqlConnection::Open(options_.database);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  std::unique_ptr<PostfixAdminAccounts> MakeAccounts() {
    return std::make_unique<PostfixAdminAccounts>(options_, store_path_, &clock_);
  }

  std::unique_ptr<IncidentStore> OpenStore() {
    auto s = IncidentStore::Open(store_path_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // Every scenario, in order, on freshly seeded rows.
  void RunAll(SqlConnection* db) {
    SeedPostfixAdmin(db);
    if (::testing::Test::HasFatalFailure()) return;
    SuspendSendingAndRestore(db);
    SuspendAndRestoreExactly(db);
    RequirePasswordChangeAndRestore(db);
    ApplyingTwiceKeepsTheFirstPreviousValues(db);
    RestoreLeavesHandEditsAlone(db);
    AlreadyInactiveStaysInactive(db);
    UnknownOrHostileUserTouchesNothing(db);
  }

  void SuspendSendingAndRestore(SqlConnection* db) {
    SCOPED_TRACE("suspend_sending");
    const MailboxRow before = ReadMailbox(db, kAlice);
    const std::size_t logs_before = ReadLog(db).size();
    auto accounts = MakeAccounts();
    ASSERT_TRUE(accounts->Start().ok());
    const ActionRecord action = AccountAction("suspend_sending", kAlice);
    ASSERT_TRUE(accounts->Apply(action).ok());

    const MailboxRow during = ReadMailbox(db, kAlice);
    EXPECT_FALSE(during.smtp_active);
    EXPECT_TRUE(during.active) << "only sending is stopped";
    EXPECT_TRUE(during.alias_active);
    auto check = accounts->Check(action);
    ASSERT_TRUE(check.ok()) << check.status().ToString();
    EXPECT_TRUE(*check);

    auto logs = ReadLog(db);
    ASSERT_EQ(logs.size(), logs_before + 1);
    EXPECT_EQ(logs.back().username, "mxward (incident 42)");
    EXPECT_EQ(logs.back().domain, "example.org");
    EXPECT_EQ(logs.back().action, "edit_mailbox");
    EXPECT_EQ(logs.back().data, kAlice);

    auto store = OpenStore();
    auto suspensions = store->ActiveSuspensions();
    ASSERT_TRUE(suspensions.ok());
    ASSERT_EQ(suspensions->size(), 1u);
    EXPECT_EQ((*suspensions)[0].kind, "suspend_sending");
    EXPECT_EQ((*suspensions)[0].previous["smtp_active"], true);
    EXPECT_EQ((*suspensions)[0].incident_id, 42);

    ASSERT_TRUE(accounts->Revert(action).ok());
    const MailboxRow after = ReadMailbox(db, kAlice);
    EXPECT_TRUE(after.smtp_active);
    EXPECT_EQ(after.modified, before.modified) << "restored exactly";
    check = accounts->Check(action);
    ASSERT_TRUE(check.ok());
    EXPECT_FALSE(*check);
    EXPECT_TRUE(store->ActiveSuspensions()->empty());
    // Reverting again changes nothing and is not an error.
    EXPECT_TRUE(accounts->Revert(action).ok());
  }

  void SuspendAndRestoreExactly(SqlConnection* db) {
    SCOPED_TRACE("suspend");
    const MailboxRow before = ReadMailbox(db, kAlice);
    ASSERT_TRUE(before.active);
    auto accounts = MakeAccounts();
    const ActionRecord action = AccountAction("suspend", kAlice);
    ASSERT_TRUE(accounts->Apply(action).ok());

    const MailboxRow during = ReadMailbox(db, kAlice);
    EXPECT_FALSE(during.active);
    EXPECT_FALSE(during.alias_active);
    EXPECT_TRUE(during.smtp_active);
    EXPECT_NE(during.modified, before.modified) << "modified = now(), as PostfixAdmin's UI does";
    EXPECT_NE(during.alias_modified, before.alias_modified);
    EXPECT_TRUE(*accounts->Check(action));
    EXPECT_EQ(ReadLog(db).back().action, "edit_mailbox");

    ASSERT_TRUE(accounts->Revert(action).ok());
    const MailboxRow after = ReadMailbox(db, kAlice);
    EXPECT_TRUE(after.active);
    EXPECT_TRUE(after.alias_active);
    EXPECT_EQ(after.modified, before.modified);
    EXPECT_EQ(after.alias_modified, before.alias_modified);
    EXPECT_FALSE(*accounts->Check(action));
  }

  void RequirePasswordChangeAndRestore(SqlConnection* db) {
    SCOPED_TRACE("require_password_change");
    const MailboxRow before = ReadMailbox(db, kAlice);
    ASSERT_FALSE(before.expired);
    auto accounts = MakeAccounts();
    const ActionRecord action = AccountAction("require_password_change", kAlice);
    ASSERT_TRUE(accounts->Apply(action).ok());
    const MailboxRow during = ReadMailbox(db, kAlice);
    EXPECT_TRUE(during.expired);
    EXPECT_TRUE(during.active);
    EXPECT_TRUE(*accounts->Check(action));
    ASSERT_TRUE(accounts->Revert(action).ok());
    const MailboxRow after = ReadMailbox(db, kAlice);
    EXPECT_EQ(after.password_expiry, before.password_expiry);
    EXPECT_FALSE(after.expired);
    EXPECT_FALSE(*accounts->Check(action));
  }

  void ApplyingTwiceKeepsTheFirstPreviousValues(SqlConnection* db) {
    SCOPED_TRACE("apply twice");
    const MailboxRow before = ReadMailbox(db, kAlice);
    auto accounts = MakeAccounts();
    const ActionRecord action = AccountAction("suspend", kAlice);
    ASSERT_TRUE(accounts->Apply(action).ok());
    ASSERT_TRUE(accounts->Apply(action).ok());  // the outbox re-ran it
    ASSERT_TRUE(accounts->Revert(action).ok());
    const MailboxRow after = ReadMailbox(db, kAlice);
    EXPECT_TRUE(after.active) << "the second apply must not save 'inactive' as previous";
    EXPECT_EQ(after.modified, before.modified);
  }

  void RestoreLeavesHandEditsAlone(SqlConnection* db) {
    SCOPED_TRACE("hand edit");
    auto accounts = MakeAccounts();
    const ActionRecord action = AccountAction("suspend", kAlice);
    ASSERT_TRUE(accounts->Apply(action).ok());
    // An admin re-enables the mailbox in PostfixAdmin's UI before mxward restores it.
    const char* hand = "2021-06-07 08:09:10";
    ASSERT_TRUE(db->Execute("UPDATE mailbox SET active = ?, modified = ? WHERE username = ?",
                            {db->dialect().bool_true, hand, kAlice})
                    .ok());
    const std::string hand_modified = ReadMailbox(db, kAlice).modified;
    ASSERT_TRUE(accounts->Revert(action).ok());
    const MailboxRow after = ReadMailbox(db, kAlice);
    EXPECT_TRUE(after.active);
    EXPECT_EQ(after.modified, hand_modified) << "the admin's edit is kept";
    EXPECT_TRUE(after.alias_active) << "the alias row mxward disabled is restored";
    EXPECT_TRUE(OpenStore()->ActiveSuspensions()->empty());
  }

  void AlreadyInactiveStaysInactive(SqlConnection* db) {
    SCOPED_TRACE("already inactive");
    auto accounts = MakeAccounts();
    const ActionRecord action = AccountAction("suspend", kBob);
    ASSERT_TRUE(accounts->Apply(action).ok());
    ASSERT_TRUE(accounts->Revert(action).ok());
    const MailboxRow after = ReadMailbox(db, kBob);
    EXPECT_FALSE(after.active) << "restore puts back what was there, an inactive mailbox";
    EXPECT_FALSE(after.alias_active);
  }

  void UnknownOrHostileUserTouchesNothing(SqlConnection* db) {
    SCOPED_TRACE("unknown user");
    auto accounts = MakeAccounts();
    const std::size_t logs_before = ReadLog(db).size();
    Status s = accounts->Apply(AccountAction("suspend", "nobody@example.org"));
    EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
    // Text an attacker could put in a log line is a parameter, never SQL.
    s = accounts->Apply(AccountAction("suspend", "x'OR'1'='1@example.org"));
    EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
    s = accounts->Apply(AccountAction("suspend", "no address"));
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(ReadMailbox(db, kAlice).active);
    EXPECT_EQ(ReadLog(db).size(), logs_before);
  }

 private:
  PostfixAdminOptions options_;
  std::string store_path_;
  ManualClock clock_{1'800'000'000LL * kMicrosPerSecond};
};

}  // namespace mxward::testing
