// SqlConnection: one connection to PostfixAdmin's database (MariaDB/MySQL, PostgreSQL or SQLite)
// that runs prepared statements only.
//
// Statements are written once, as constants, with `?` placeholders; values (user names, domains,
// saved column values) are always bound parameters, never spliced into the SQL text. The
// PostgreSQL backend renumbers `?` to `$1..$n`. Values travel as text (NULL as std::nullopt), which
// every backend converts to and from its column types; SqlDialect says how a backend spells
// booleans and the current time.
//
// Errors: a server that is down, refuses the connection, drops it, or a deadlock gives
// Status::Unavailable (transient: retry later; the next call reconnects); bad credentials give
// PermissionDenied; anything else Internal with the server's message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxward/status.h"

namespace mxward {

using SqlValue = std::optional<std::string>;  // nullopt = SQL NULL
using SqlRow = std::vector<SqlValue>;

struct SqlDialect {
  const char* bool_true;   // "1" on MySQL and SQLite, "t" on PostgreSQL
  const char* bool_false;  // "0" / "f"
  const char* now;         // SQL expression for the current time: NOW() / datetime('now')
};

struct SqlConnectionOptions {
  enum class Backend { kMysql, kPostgres, kSqlite };
  Backend backend = Backend::kMysql;
  std::string host = "localhost";  // MySQL: "localhost" means the unix socket
  int port = 0;                    // 0: the backend's default
  std::string socket;              // unix socket path (MySQL) or directory (PostgreSQL)
  std::string user;
  std::string password;
  std::string database = "postfixadmin";
  std::string path;  // SQLite file
  int connect_timeout_s = 5;
};

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;

  virtual const SqlDialect& dialect() const = 0;
  // Rows of the result, each column as text or NULL.
  virtual Result<std::vector<SqlRow>> Query(std::string_view sql,
                                            const std::vector<SqlValue>& params) = 0;
  // Number of rows the statement matched (not only those it changed).
  virtual Result<std::int64_t> Execute(std::string_view sql,
                                       const std::vector<SqlValue>& params) = 0;
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;

  // Connects now. Errors as described above.
  static Result<std::unique_ptr<SqlConnection>> Open(const SqlConnectionOptions& options);
};

}  // namespace mxward
