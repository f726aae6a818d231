// Test support: PostfixAdmin's database on a real MariaDB or PostgreSQL server the test starts
// (tests/support/{mariadb,postgres}_server.h), set up the way an admin would: the
// database, PostfixAdmin's own schema (tests/data/postfixadmin), and a password-authenticated user
// with only SELECT, INSERT and UPDATE, reached over TCP on 127.0.0.1. One place for what the
// MariaDB and PostgreSQL tests (integration and fault tests) used to repeat.
//
//   testing::MariadbServer server;
//   SqlConnectionOptions db;
//   ASSERT_EQ(testing::StartPostfixAdminDatabase(server, &db), "");
//
// Header-only.
#pragma once

#include <string>

#include "actions/postfixadmin/sql_connection.h"
#include "support/mariadb_server.h"
#include "support/postgres_server.h"

namespace mxward::testing {

inline constexpr const char* kPostfixAdminDbUser = "pfa_mxward";
inline constexpr const char* kPostfixAdminDbPassword = "Pfa-test-pw-1";

// Fills the connection options every backend shares.
inline void PostfixAdminConnection(SqlConnectionOptions::Backend backend, int port,
                                   SqlConnectionOptions* db) {
  db->backend = backend;
  db->host = "127.0.0.1";
  db->port = port;
  db->user = kPostfixAdminDbUser;
  db->password = kPostfixAdminDbPassword;
  db->database = "postfixadmin";
  db->connect_timeout_s = 5;
}

// Starts `server` and creates PostfixAdmin's database on it. "" or what went wrong.
inline std::string StartPostfixAdminDatabase(MariadbServer& server, SqlConnectionOptions* db) {
  std::string error = server.Start();
  if (!error.empty()) return "a real MariaDB is required for this test: " + error;
  auto r =
      server.Sql(std::string("CREATE DATABASE postfixadmin; CREATE USER '") + kPostfixAdminDbUser +
                 "'@'127.0.0.1' IDENTIFIED BY '" + kPostfixAdminDbPassword +
                 "'; GRANT SELECT, INSERT, UPDATE ON postfixadmin.* " + "TO '" +
                 kPostfixAdminDbUser + "'@'127.0.0.1';");
  if (r.exit_code != 0) return "creating the database and user: " + r.err;
  r = server.SqlFile(std::string(MXWARD_TEST_DATA) + "/postfixadmin/mysql.sql", "postfixadmin");
  if (r.exit_code != 0) return "loading PostfixAdmin's schema: " + r.err;
  PostfixAdminConnection(SqlConnectionOptions::Backend::kMysql, server.port(), db);
  return "";
}

inline std::string StartPostfixAdminDatabase(PostgresServer& server, SqlConnectionOptions* db) {
  std::string error = server.Start();
  if (!error.empty()) return "a real PostgreSQL is required for this test: " + error;
  auto r = server.Sql("CREATE DATABASE postfixadmin");
  if (r.exit_code != 0) return "creating the database: " + r.err;
  r = server.SqlFile(std::string(MXWARD_TEST_DATA) + "/postfixadmin/pgsql.sql", "postfixadmin");
  if (r.exit_code != 0) return "loading PostfixAdmin's schema: " + r.err;
  r = server.Sql(std::string("CREATE ROLE ") + kPostfixAdminDbUser + " LOGIN PASSWORD '" +
                     kPostfixAdminDbPassword + "'; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN " +
                     "SCHEMA public TO " + kPostfixAdminDbUser +
                     "; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO " + kPostfixAdminDbUser +
                     ";",
                 "postfixadmin");
  if (r.exit_code != 0) return "creating the role: " + r.err;
  PostfixAdminConnection(SqlConnectionOptions::Backend::kPostgres, server.port(), db);
  return "";
}

}  // namespace mxward::testing
