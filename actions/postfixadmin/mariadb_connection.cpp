// SqlConnection for PostfixAdmin on MariaDB/MySQL, through libmariadb's prepared-statement API
// (mysql_stmt_*): parameters travel separately from the statement text, as strings the server
// converts to the column types.
#include <mysql.h>

#include <map>

#include <fmt/format.h>

#include "actions/postfixadmin/sql_backends.h"
#include "engine/base/mariadb_statement.h"

namespace mxward {
namespace {

constexpr SqlDialect kMariadbDialect = {"1", "0", "NOW()"};

class MariadbConnection final : public SqlConnection {
 public:
  explicit MariadbConnection(MYSQL* mysql) : mysql_(mysql) {}
  ~MariadbConnection() override {
    for (auto& [sql, stmt] : statements_) mysql_stmt_close(stmt);
    mysql_close(mysql_);
  }

  const SqlDialect& dialect() const override { return kMariadbDialect; }

  Result<std::vector<SqlRow>> Query(std::string_view sql,
                                    const std::vector<SqlValue>& params) override {
    std::vector<SqlRow> rows;
    auto r = Run(sql, params, &rows);
    if (!r.ok()) return r.status();
    return rows;
  }

  Result<std::int64_t> Execute(std::string_view sql, const std::vector<SqlValue>& params) override {
    return Run(sql, params, nullptr);
  }

  Status Begin() override { return Simple("START TRANSACTION"); }
  Status Commit() override { return Simple("COMMIT"); }
  void Rollback() override { mysql_rollback(mysql_); }

 private:
  Status Simple(const char* sql) {
    if (mysql_query(mysql_, sql) != 0) {
      return MariadbStatus(mysql_errno(mysql_), mysql_error(mysql_), sql);
    }
    return Status::Ok();
  }

  // The prepared statement for sql, prepared once per connection.
  Result<MYSQL_STMT*> Prepare(std::string_view sql) {
    auto it = statements_.find(std::string(sql));
    if (it != statements_.end()) return it->second;
    MYSQL_STMT* stmt = mysql_stmt_init(mysql_);
    if (!stmt) return MariadbStatus(mysql_errno(mysql_), mysql_error(mysql_), "preparing");
    if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
      Status s = MariadbStatus(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "preparing");
      mysql_stmt_close(stmt);
      return s;
    }
    statements_.emplace(std::string(sql), stmt);
    return stmt;
  }

  Result<std::int64_t> Run(std::string_view sql, const std::vector<SqlValue>& params,
                           std::vector<SqlRow>* rows) {
    auto prepared = Prepare(sql);
    if (!prepared.ok()) return prepared.status();
    MYSQL_STMT* stmt = *prepared;
    std::vector<MariadbParam> bound;
    bound.reserve(params.size());
    for (const SqlValue& p : params) {
      bound.push_back(p ? MariadbParam::Text(*p) : MariadbParam::Null());
    }
    return RunMariadbStatement(stmt, bound, rows);
  }

  MYSQL* mysql_;
  std::map<std::string, MYSQL_STMT*> statements_;
};

}  // namespace

Result<std::unique_ptr<SqlConnection>> OpenMariadbConnection(const SqlConnectionOptions& o) {
  MYSQL* mysql = mysql_init(nullptr);
  if (!mysql) return Status::ResourceExhausted("MariaDB: out of memory creating a connection");
  const unsigned int timeout = static_cast<unsigned int>(o.connect_timeout_s);
  mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  mysql_options(mysql, MYSQL_OPT_READ_TIMEOUT, &timeout);
  mysql_options(mysql, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
  mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  // Never read ~/.my.cnf or /etc/mysql: the connection is exactly what mxward.toml says.
  const char* socket = o.socket.empty() ? nullptr : o.socket.c_str();
  // CLIENT_FOUND_ROWS: UPDATE reports rows matched, not only rows changed.
  if (!mysql_real_connect(mysql, o.host.c_str(), o.user.c_str(), o.password.c_str(),
                          o.database.c_str(), static_cast<unsigned int>(o.port), socket,
                          CLIENT_FOUND_ROWS)) {
    Status s = MariadbStatus(mysql_errno(mysql), mysql_error(mysql),
                             fmt::format("connecting to {}", socket ? o.socket : o.host));
    mysql_close(mysql);
    return s;
  }
  return std::unique_ptr<SqlConnection>(std::make_unique<MariadbConnection>(mysql));
}

}  // namespace mxward
