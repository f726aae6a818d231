// SqlConnection for PostfixAdmin on SQLite.
#include <sqlite3.h>

#include <fmt/format.h>

#include "actions/postfixadmin/sql_backends.h"

namespace mxward {
namespace {

constexpr SqlDialect kSqliteDialect = {"1", "0", "datetime('now')"};

class SqliteConnection final : public SqlConnection {
 public:
  SqliteConnection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteConnection() override { sqlite3_close_v2(db_); }

  const SqlDialect& dialect() const override { return kSqliteDialect; }

  Result<std::vector<SqlRow>> Query(std::string_view sql,
                                    const std::vector<SqlValue>& params) override {
    std::vector<SqlRow> rows;
    Status s = Run(sql, params, &rows);
    if (!s.ok()) return s;
    return rows;
  }

  Result<std::int64_t> Execute(std::string_view sql, const std::vector<SqlValue>& params) override {
    Status s = Run(sql, params, nullptr);
    if (!s.ok()) return s;
    return static_cast<std::int64_t>(sqlite3_changes(db_));
  }

  Status Begin() override { return Run("BEGIN IMMEDIATE", {}, nullptr); }
  Status Commit() override { return Run("COMMIT", {}, nullptr); }
  // Best effort, as for the other backends: the statement that failed already said why.
  void Rollback() override { (void)Run("ROLLBACK", {}, nullptr); }

 private:
  Status Error(int rc, std::string_view doing) const {
    std::string msg = fmt::format("SQLite {}: {} ({})", path_, sqlite3_errmsg(db_), doing);
    const int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_IOERR ||
        primary == SQLITE_CANTOPEN || primary == SQLITE_FULL) {
      return Status::Unavailable(std::move(msg));
    }
    if (primary == SQLITE_READONLY || primary == SQLITE_PERM || primary == SQLITE_AUTH) {
      return Status::PermissionDenied(std::move(msg));
    }
    return Status::Internal(std::move(msg));
  }

  Status Run(std::string_view sql, const std::vector<SqlValue>& params, std::vector<SqlRow>* rows) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(rc, "preparing a statement");
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i + 1);
      rc = params[i] ? sqlite3_bind_text(stmt, index, params[i]->data(),
                                         static_cast<int>(params[i]->size()), SQLITE_TRANSIENT)
                     : sqlite3_bind_null(stmt, index);
      if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return Error(rc, "binding a parameter");
      }
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (!rows) continue;
      SqlRow row;
      const int n = sqlite3_column_count(stmt);
      for (int c = 0; c < n; ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
          row.emplace_back(std::nullopt);
        } else {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
          row.emplace_back(
              std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt, c))));
        }
      }
      rows->push_back(std::move(row));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) return Error(rc, "running a statement");
    return Status::Ok();
  }

  sqlite3* db_;
  std::string path_;
};

}  // namespace

Result<std::unique_ptr<SqlConnection>> OpenSqliteConnection(const SqlConnectionOptions& options) {
  if (options.path.empty()) {
    return Status::InvalidArgument(
        "the SQLite backend needs 'path' (PostfixAdmin's database file)");
  }
  sqlite3* db = nullptr;
  // Never create the file: a missing PostfixAdmin database is a configuration error to report.
  const int rc = sqlite3_open_v2(options.path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = fmt::format("cannot open PostfixAdmin's SQLite database {}: {}", options.path,
                                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return Status::Unavailable(std::move(msg));
  }
  sqlite3_busy_timeout(db, options.connect_timeout_s * 1000);
  return std::unique_ptr<SqlConnection>(std::make_unique<SqliteConnection>(db, options.path));
}

}  // namespace mxward
