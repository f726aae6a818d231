// SqlConnection for PostfixAdmin on PostgreSQL, through libpq's PQprepare / PQexecPrepared:
// each statement is prepared once per connection, parameters are sent separately as text, and
// the server infers their types from the columns (so "f" binds as boolean false).
#include <libpq-fe.h>

#include <cstring>
#include <map>

#include <fmt/format.h>

#include "actions/postfixadmin/sql_backends.h"

namespace mxward {
namespace {

constexpr SqlDialect kPostgresDialect = {"t", "f", "now()"};

// Connection problems (SQLSTATE class 08), serialization failures and deadlocks (40001, 40P01),
// operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now)
// and too many connections (53300) are worth retrying.
bool IsTransientState(std::string_view state) {
  return state.rfind("08", 0) == 0 || state == "40001" || state == "40P01" ||
         state.rfind("57P0", 0) == 0 || state == "53300";
}

std::string FirstLine(const char* text) {
  std::string s = text ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  return s;
}

class PostgresConnection final : public SqlConnection {
 public:
  explicit PostgresConnection(PGconn* conn) : conn_(conn) {}
  ~PostgresConnection() override { PQfinish(conn_); }

  const SqlDialect& dialect() const override { return kPostgresDialect; }

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

  Status Begin() override { return Simple("BEGIN"); }
  Status Commit() override { return Simple("COMMIT"); }
  // Best effort: a failed ROLLBACK leaves nothing to undo that the failed statement did not
  // already report, and the connection is reset on its next error.
  void Rollback() override { (void)Simple("ROLLBACK"); }

 private:
  Status ResultError(PGresult* res, std::string_view doing) {
    const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    std::string msg =
        fmt::format("PostgreSQL: {} ({})",
                    FirstLine(res ? PQresultErrorMessage(res) : PQerrorMessage(conn_)), doing);
    if (state && IsTransientState(state)) return Status::Unavailable(std::move(msg));
    if (PQstatus(conn_) != CONNECTION_OK) {
      return Status::Unavailable(msg + " (connection lost)");
    }
    if (state && (std::strncmp(state, "28", 2) == 0 || std::strcmp(state, "42501") == 0)) {
      return Status::PermissionDenied(std::move(msg));
    }
    return Status::Internal(std::move(msg));
  }

  Status Simple(const char* sql) {
    PGresult* res = PQexec(conn_, sql);
    Status s = PQresultStatus(res) == PGRES_COMMAND_OK ? Status::Ok() : ResultError(res, sql);
    PQclear(res);
    return s;
  }

  // PostfixAdminAccounts writes `?` placeholders; PostgreSQL numbers them. The statements are
  // mxward's own constants, which never contain '?' inside a string literal.
  static std::string Renumber(std::string_view sql) {
    std::string out;
    int n = 0;
    for (char c : sql) {
      if (c == '?') {
        out += fmt::format("${}", ++n);
      } else {
        out += c;
      }
    }
    return out;
  }

  Result<std::string> Prepare(std::string_view sql, int nparams) {
    auto it = statements_.find(std::string(sql));
    if (it != statements_.end()) return it->second;
    std::string name = fmt::format("mxward_{}", statements_.size() + 1);
    PGresult* res = PQprepare(conn_, name.c_str(), Renumber(sql).c_str(), nparams, nullptr);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      Status s = ResultError(res, "preparing");
      PQclear(res);
      return s;
    }
    PQclear(res);
    statements_.emplace(std::string(sql), name);
    return name;
  }

  Result<std::int64_t> Run(std::string_view sql, const std::vector<SqlValue>& params,
                           std::vector<SqlRow>* rows) {
    auto name = Prepare(sql, static_cast<int>(params.size()));
    if (!name.ok()) return name.status();
    std::vector<const char*> values;
    for (const SqlValue& p : params) values.push_back(p ? p->c_str() : nullptr);
    PGresult* res = PQexecPrepared(conn_, name->c_str(), static_cast<int>(values.size()),
                                   values.data(), nullptr, nullptr, 0);
    const ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      Status s = ResultError(res, "executing");
      PQclear(res);
      return s;
    }
    std::int64_t count = 0;
    if (status == PGRES_TUPLES_OK) {
      count = PQntuples(res);
      if (rows) {
        const int columns = PQnfields(res);
        for (int r = 0; r < PQntuples(res); ++r) {
          SqlRow row;
          for (int c = 0; c < columns; ++c) {
            if (PQgetisnull(res, r, c)) {
              row.emplace_back(std::nullopt);
            } else {
              row.emplace_back(std::string(PQgetvalue(res, r, c),
                                           static_cast<std::size_t>(PQgetlength(res, r, c))));
            }
          }
          rows->push_back(std::move(row));
        }
      }
    } else {
      const char* affected = PQcmdTuples(res);
      count = (affected && *affected) ? std::strtoll(affected, nullptr, 10) : 0;
    }
    PQclear(res);
    return count;
  }

  PGconn* conn_;
  std::map<std::string, std::string> statements_;
};

}  // namespace

Result<std::unique_ptr<SqlConnection>> OpenPostgresConnection(const SqlConnectionOptions& o) {
  const std::string port = o.port > 0 ? std::to_string(o.port) : "";
  const std::string timeout = std::to_string(o.connect_timeout_s);
  // A socket directory, when given, is the host (libpq's convention for unix sockets).
  const std::string& host = o.socket.empty() ? o.host : o.socket;
  const char* keys[] = {"host",
                        "port",
                        "user",
                        "password",
                        "dbname",
                        "connect_timeout",
                        "application_name",
                        "client_encoding",
                        nullptr};
  const char* values[] = {host.c_str(),
                          port.empty() ? nullptr : port.c_str(),
                          o.user.c_str(),
                          o.password.empty() ? nullptr : o.password.c_str(),
                          o.database.c_str(),
                          timeout.c_str(),
                          "mxward",
                          "UTF8",
                          nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 0);
  if (!conn) return Status::ResourceExhausted("PostgreSQL: out of memory creating a connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg =
        fmt::format("PostgreSQL: cannot connect to {}: {}", host, FirstLine(PQerrorMessage(conn)));
    PQfinish(conn);
    if (msg.find("password authentication failed") != std::string::npos ||
        msg.find("no pg_hba.conf entry") != std::string::npos ||
        msg.find("permission denied") != std::string::npos) {
      return Status::PermissionDenied(std::move(msg));
    }
    return Status::Unavailable(std::move(msg));
  }
  return std::unique_ptr<SqlConnection>(std::make_unique<PostgresConnection>(conn));
}

}  // namespace mxward
