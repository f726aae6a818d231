#include "engine/base/mariadb_statement.h"

#include <mariadb/errmsg.h>
#include <mariadb/mysql.h>
#include <mariadb/mysqld_error.h>

#include <cstring>

#include <fmt/format.h>

namespace mxward {
namespace {

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

}  // namespace

Status MariadbStatus(unsigned int code, std::string_view message, std::string_view doing) {
  std::string msg = fmt::format("MariaDB: {} (error {}, {})", message, code, doing);
  if (IsTransient(code)) return Status::Unavailable(std::move(msg));
  if (code == ER_ACCESS_DENIED_ERROR || code == ER_DBACCESS_DENIED_ERROR ||
      code == ER_TABLEACCESS_DENIED_ERROR || code == ER_COLUMNACCESS_DENIED_ERROR) {
    return Status::PermissionDenied(std::move(msg));
  }
  return Status::Internal(std::move(msg));
}

Result<std::int64_t> RunMariadbStatement(MYSQL_STMT* stmt, const std::vector<MariadbParam>& params,
                                         std::vector<MariadbRow>* rows) {
  auto fail = [&](std::string_view doing) {
    return MariadbStatus(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), doing);
  };
  if (mysql_stmt_param_count(stmt) != params.size()) {
    return Status::Internal(fmt::format("MariaDB: statement wants {} parameters, got {}",
                                        mysql_stmt_param_count(stmt), params.size()));
  }
  std::vector<MYSQL_BIND> bind(params.size());
  std::vector<unsigned long> lengths(params.size());
  std::vector<long long> ints(params.size());
  std::vector<my_bool> nulls(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    std::memset(&bind[i], 0, sizeof bind[i]);
    switch (params[i].kind) {
      case MariadbParam::Kind::kNull:
        bind[i].buffer_type = MYSQL_TYPE_STRING;
        nulls[i] = 1;
        bind[i].is_null = &nulls[i];
        break;
      case MariadbParam::Kind::kInt:
        ints[i] = params[i].integer;
        bind[i].buffer_type = MYSQL_TYPE_LONGLONG;
        bind[i].buffer = &ints[i];
        break;
      case MariadbParam::Kind::kText:
        bind[i].buffer_type = MYSQL_TYPE_STRING;
        bind[i].buffer = const_cast<char*>(params[i].text.data());
        lengths[i] = static_cast<unsigned long>(params[i].text.size());
        bind[i].buffer_length = lengths[i];
        bind[i].length = &lengths[i];
        break;
    }
  }
  if (!params.empty() && mysql_stmt_bind_param(stmt, bind.data())) return fail("binding");
  if (mysql_stmt_execute(stmt) != 0) return fail("executing");

  MYSQL_RES* meta = mysql_stmt_result_metadata(stmt);
  if (meta == nullptr) return static_cast<std::int64_t>(mysql_stmt_affected_rows(stmt));
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
    if (rows == nullptr) continue;
    MariadbRow row;
    row.reserve(columns);
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
          Status s = fail("reading a long column");
          mysql_stmt_free_result(stmt);
          return s;
        }
      } else {
        value.assign(buffers[c].data(), out_lengths[c]);
      }
      row.emplace_back(std::move(value));
    }
    rows->push_back(std::move(row));
  }
  Status s = rc == 1 ? fail("fetching rows") : Status::Ok();
  mysql_stmt_free_result(stmt);
  if (!s.ok()) return s;
  return count;
}

}  // namespace mxward
