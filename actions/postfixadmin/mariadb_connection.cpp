// SqlConnection for PostfixAdmin on MariaDB/MySQL, through libmariadb's prepared-statement API
// (mysql_stmt_*): parameters travel separately from the statement text, as strings the server
// converts to the column types.
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <cstring>
#include <map>

#include <fmt/format.h>

#include "actions/postfixadmin/sql_backends.h"

namespace mxward {
namespace {

constexpr SqlDialect kMariadbDialect = {"1", "0", "NOW()"};

bool IsTransient(unsigned int code) {
  switch (code) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case CR_UNKNOWN_HOST:
    case ER_CON_COUNT_ERROR:
    case ER_SERVER_SHUTDOWN:
    case ER_LOCK_WAIT_TIMEOUT:
    case ER_LOCK_DEADLOCK:
    case ER_CONNECTION_KILLED:
    case ER_QUERY_INTERRUPTED:
    case ER_TOO_MANY_USER_CONNECTIONS:
      return true;
    default:
      return false;
  }
}

Status MakeError(unsigned int code, const char* message, std::string_view doing) {
  std::string msg = fmt::format("MariaDB: {} (error {}, {})", message, code, doing);
  if (IsTransient(code)) return Status::Unavailable(std::move(msg));
  if (code == ER_ACCESS_DENIED_ERROR || code == ER_DBACCESS_DENIED_ERROR ||
      code == ER_TABLEACCESS_DENIED_ERROR || code == ER_COLUMNACCESS_DENIED_ERROR) {
    return Status::PermissionDenied(std::move(msg));
  }
  return Status::Internal(std::move(msg));
}

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
      return MakeError(mysql_errno(mysql_), mysql_error(mysql_), sql);
    }
    return Status::Ok();
  }

  // The prepared statement for sql, prepared once per connection.
  Result<MYSQL_STMT*> Prepare(std::string_view sql) {
    auto it = statements_.find(std::string(sql));
    if (it != statements_.end()) return it->second;
    MYSQL_STMT* stmt = mysql_stmt_init(mysql_);
    if (!stmt) return MakeError(mysql_errno(mysql_), mysql_error(mysql_), "preparing");
    if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
      Status s = MakeError(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "preparing");
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
    auto fail = [&](std::string_view doing) {
      return MakeError(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), doing);
    };
    if (mysql_stmt_param_count(stmt) != params.size()) {
      return Status::Internal(fmt::format("MariaDB: statement wants {} parameters, got {}",
                                          mysql_stmt_param_count(stmt), params.size()));
    }
    std::vector<MYSQL_BIND> bind(params.size());
    std::vector<unsigned long> lengths(params.size());
    std::vector<my_bool> nulls(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
      std::memset(&bind[i], 0, sizeof bind[i]);
      bind[i].buffer_type = MYSQL_TYPE_STRING;
      nulls[i] = params[i] ? 0 : 1;
      bind[i].is_null = &nulls[i];
      if (params[i]) {
        bind[i].buffer = const_cast<char*>(params[i]->data());
        lengths[i] = static_cast<unsigned long>(params[i]->size());
        bind[i].buffer_length = lengths[i];
        bind[i].length = &lengths[i];
      }
    }
    if (!params.empty() && mysql_stmt_bind_param(stmt, bind.data())) return fail("binding");
    if (mysql_stmt_execute(stmt) != 0) return fail("executing");

    MYSQL_RES* meta = mysql_stmt_result_metadata(stmt);
    if (!meta) return static_cast<std::int64_t>(mysql_stmt_affected_rows(stmt));
    const unsigned int columns = mysql_num_fields(meta);
    mysql_free_result(meta);
    std::vector<MYSQL_BIND> out(columns);
    std::vector<std::string> buffers(columns, std::string(256, '\0'));
    std::vector<unsigned long> out_lengths(columns);
    std::vector<my_bool> out_nulls(columns);
    for (unsigned int c = 0; c < columns; ++c) {
      std::memset(&out[c], 0, sizeof out[c]);
      out[c].buffer_type = MYSQL_TYPE_STRING;  // the client converts numbers and dates to text
      out[c].buffer = buffers[c].data();
      out[c].buffer_length = buffers[c].size();
      out[c].length = &out_lengths[c];
      out[c].is_null = &out_nulls[c];
    }
    if (mysql_stmt_bind_result(stmt, out.data())) return fail("binding results");
    if (mysql_stmt_store_result(stmt)) return fail("reading results");
    std::int64_t count = 0;
    int rc;
    while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
      ++count;
      if (!rows) continue;
      SqlRow row;
      for (unsigned int c = 0; c < columns; ++c) {
        if (out_nulls[c]) {
          row.emplace_back(std::nullopt);
          continue;
        }
        std::string value;
        if (out_lengths[c] > buffers[c].size()) {
          // Longer than the buffer: fetch this column again into one that fits.
          value.resize(out_lengths[c]);
          MYSQL_BIND again;
          std::memset(&again, 0, sizeof again);
          again.buffer_type = MYSQL_TYPE_STRING;
          again.buffer = value.data();
          again.buffer_length = value.size();
          if (mysql_stmt_fetch_column(stmt, &again, c, 0)) {
            mysql_stmt_free_result(stmt);
            return fail("reading a long column");
          }
        } else {
          value.assign(buffers[c].data(), out_lengths[c]);
        }
        row.emplace_back(std::move(value));
      }
      rows->push_back(std::move(row));
    }
    const bool error = rc == 1;
    Status s = error ? fail("fetching rows") : Status::Ok();
    mysql_stmt_free_result(stmt);
    if (!s.ok()) return s;
    return count;
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
    Status s = MakeError(mysql_errno(mysql), mysql_error(mysql),
                         fmt::format("connecting to {}", socket ? o.socket : o.host));
    mysql_close(mysql);
    return s;
  }
  return std::unique_ptr<SqlConnection>(std::make_unique<MariadbConnection>(mysql));
}

}  // namespace mxward
